#!/usr/bin/env bash
# Builds the package (every library, tool and example; not the tests) and fails when the
# compiler warns about any of its own sources: a user who depends on GradGuard sees none.
# Run on a clean clone (CI) every file compiles, so every warning shows.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift build "$@" 2>&1 | tee "$log"
own=$(grep -E "^$(pwd)/(Sources|Examples)/[^:]+:[0-9]+:[0-9]+: warning:" "$log" | sort -u || true)
if [ -n "$own" ]; then
    echo "build_without_warnings: the compiler warned about GradGuard's own sources:" >&2
    echo "$own" >&2
    exit 1
fi
