#!/usr/bin/env bash
# Installs the Debian packages GradGuard builds against (OpenBLAS and pkg-config).
# Safe to run again: it does nothing when they are already installed.
set -euo pipefail
packages=(libopenblas-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    echo "setup: installing ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
pkg-config --exists openblas || { echo "setup: pkg-config cannot find openblas after installing libopenblas-dev" >&2; exit 1; }
