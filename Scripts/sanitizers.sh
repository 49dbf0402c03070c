#!/usr/bin/env bash
# Runs the tests of the C kernels and decoders (tensor and layer ops, recurrent and
# convolution kernels, PNG/JPEG) under AddressSanitizer, then under UndefinedBehaviorSanitizer
# (C targets; Swift has no UBSan mode on Linux) with every report fatal. Separate build
# folders (.build-asan, .build-ubsan) leave the normal build alone.
set -euo pipefail
cd "$(dirname "$0")/.."
suites='GradGuardTensorTests|GradGuardNNTests|GradGuardOptimTests|DetectionTests|DetectorTrainingTests'
# Leak checking is off: at exit it lists XCTest's own allocations.
ASAN_OPTIONS=detect_leaks=0 swift test --disable-swift-testing --scratch-path .build-asan --sanitize=address --filter "$suites"
ubsan=(-Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined -Xswiftc -Xclang-linker -Xswiftc -fsanitize=undefined)
swift test --disable-swift-testing --scratch-path .build-ubsan "${ubsan[@]}" --filter "$suites"
