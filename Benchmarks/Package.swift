// swift-tools-version:6.0
// Benchmarks live apart from the library so that its users never build them.
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its folder, which differs between clones.
let parentFolder = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "GradGuardBenchmarks",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(name: "gradguard-bench", dependencies: [.product(name: "GradGuard", package: parentFolder)]),
    ],
    swiftLanguageModes: [.v6]
)
