// swift-tools-version:6.0
// libFuzzer targets for every parser of user files. Built apart from the library (its
// flags need a sanitizer runtime) by Scripts/fuzz.sh:
//   swift build --package-path Fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   -Xcc -fsanitize=fuzzer-no-link,address
import PackageDescription

let targets = [
    "FuzzSafetensors", "FuzzConfig", "FuzzLabels", "FuzzDataYAML", "FuzzPairs", "FuzzText", "FuzzImage", "FuzzRunRecords", "FuzzReplayRecord"
]

let package = Package(
    name: "GradGuardFuzz",
    dependencies: [.package(name: "GradGuard", path: "..")],
    targets: [.target(name: "CFuzzDriver")] + targets.map { name in
        .executableTarget(name: name, dependencies: ["CFuzzDriver", .product(name: "GradGuard", package: "GradGuard"),
                                                     .product(name: "GradGuardRuns", package: "GradGuard")],
                          path: "Sources/\(name)")
    },
    swiftLanguageModes: [.v6]
)
