#!/usr/bin/env bash
# Installs the Debian packages GradGuard builds against (OpenBLAS, libpng, libjpeg-turbo, Open MPI
# and pkg-config) and the ones its tests use (chromium renders the HTML report; Python 3 and its
# tensorboard package read the event files). Safe to run again: it does nothing when they are already installed.
set -euo pipefail
packages=(libopenblas-dev libpng-dev libjpeg62-turbo-dev libopenmpi-dev openmpi-bin pkg-config chromium)
# Python 3 with pip (the event-file test reads with TensorBoard's own reader), from Debian's
# packages when the machine has no python3 of its own.
command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || packages+=(python3 python3-pip)
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
for lib in openblas libpng libjpeg ompi-c; do
    pkg-config --exists "$lib" || { echo "setup: pkg-config cannot find $lib after installing ${packages[*]}" >&2; exit 1; }
done

# The TensorBoard event-file test reads the files with TensorBoard's own reader.
# python3 itself comes with the Debian packages above when the machine has none.
if ! python3 -c "import tensorboard" >/dev/null 2>&1; then
    echo "setup: installing the tensorboard Python package (for the event-file test)"
    python3 -m pip install -q tensorboard 2>/dev/null || python3 -m pip install -q --break-system-packages tensorboard
    python3 -c "import tensorboard" || { echo "setup: the tensorboard Python package did not install" >&2; exit 1; }
fi
