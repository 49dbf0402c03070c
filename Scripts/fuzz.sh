#!/usr/bin/env bash
# Fuzzes every parser of user files with libFuzzer under AddressSanitizer (the C decoders
# too): builds Fuzz/ into .build-fuzz, then runs each target for SECONDS (default 30) on a
# copy of its seed corpus in Fuzz/Corpus/<target>. A crash leaves its input in
# fuzz-artifacts/<target>/ and makes the script fail; each target's execution count is
# printed at the end.
#   Scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(FuzzSafetensors FuzzConfig FuzzLabels FuzzDataYAML FuzzPairs FuzzText FuzzImage FuzzRunRecords FuzzReplayRecord)
fi
swift build --package-path Fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xcc -fsanitize=fuzzer-no-link,address
bin="$(swift build --package-path Fuzz --scratch-path .build-fuzz --show-bin-path \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xcc -fsanitize=fuzzer-no-link,address)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz-artifacts/$t"
    cp -r "Fuzz/Corpus/$t/." "$work/$t/"
    log="$work/$t.log"
    # -rss_limit_mb: a parser that allocates what the input declares is caught as a crash.
    if "$bin/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="fuzz-artifacts/$t/" "$work/$t" >"$log" 2>&1; then
        status="ok"
    else
        status="CRASH (input in fuzz-artifacts/$t/)"
        failed=1
        tail -40 "$log" >&2
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    summary+=("$t: $runs executions in ${seconds} s, $status")
done
printf '%s\n' "fuzz summary:" "${summary[@]}"
rmdir fuzz-artifacts/* 2>/dev/null || true
rmdir fuzz-artifacts 2>/dev/null || true
exit $failed
