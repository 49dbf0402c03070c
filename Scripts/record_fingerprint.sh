#!/usr/bin/env bash
# The records of `gradguard demo lr`, `demo rnn` and a short run of every model kind, as one
# SHA-256 per file (event files, locks, run marks and environment.txt left out: they hold times and process
# ids). Run it with the binary of two commits and diff the lists: a change that must not alter
# behaviour leaves them equal.
#   Scripts/record_fingerprint.sh .build/debug/gradguard /tmp/fp-after > after.txt
set -euo pipefail
bin=$(realpath "${1:?usage: record_fingerprint.sh GRADGUARD_BINARY OUT_DIR}")
out=${2:?usage: record_fingerprint.sh GRADGUARD_BINARY OUT_DIR}
rm -rf "$out" && mkdir -p "$out" && out=$(realpath "$out")
cd "$out"
"$bin" demo lr --steps 60 --runs-directory "$out/lr" > "$out/demo-lr.txt"
"$bin" demo rnn --steps 150 --runs-directory "$out/rnn" > "$out/demo-rnn.txt"
train() { "$bin" train --quiet --set runs_directory="$out/runs" "$@" > /dev/null || echo "exit $? for $*" >> "$out/exits.txt"; }
train --name mlp --set training.max_steps=20
train --name mlp-bad --set model.init=normal --set model.layers=20 --set training.max_steps=40
train --name charlm --set model.kind=charlm --set data.kind=text --set training.max_steps=12 --set model.width=32 --set data.sequence_length=32
train --name seq2seq --set model.kind=seq2seq --set data.kind=pairs --set training.max_steps=12 --set model.width=32
train --name sequence --set model.kind=sequence --set data.kind=adding --set training.max_steps=12 --set model.width=32 --set data.sequence_length=20
train --name detector --set model.kind=detector --set data.train=16 --set data.validation=4 --set data.image_size=64 --set training.max_steps=4 --set training.batch_size=4
# Wall-clock times in the demo tables and the report's start time and command line are left out.
sed -i -E 's/ \([0-9.]+ s\)//g' demo-*.txt
find . -name report.html -exec sed -i -E '/^(started|command): /d' {} +
find . -type f ! -name 'events.out.tfevents*' ! -name .lock ! -name .gradguard-run ! -name environment.txt | LC_ALL=C sort | xargs sha256sum
