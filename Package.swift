// swift-tools-version:6.0
// GradGuard: a CPU training engine with gradient health at its heart.
import PackageDescription

let package = Package(
    name: "GradGuard",
    products: [
        .library(name: "GradGuard", targets: ["GradGuard"]),
        .executable(name: "gradguard-mlp", targets: ["gradguard-mlp"]),
        .executable(name: "gradguard", targets: ["gradguard"]),
        // The command line as a library (the tests drive it), and the run settings beneath it
        // (used by the fuzz targets in Fuzz/).
        .library(name: "GradGuardCLI", targets: ["GradGuardCLI"]),
        .library(name: "GradGuardRuns", targets: ["GradGuardRuns"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // `swift package generate-documentation`: the DocC catalog of Sources/GradGuard (a
        // command plugin: nothing of it is built into the library).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // MARK: System libraries
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

        // MARK: C kernels (no unsafe flags: per-function target attributes only)
        .target(name: "CGradGuardKernels"),
        // PNG and JPEG coding with errors returned, never a process exit (libjpeg's default).
        .target(name: "CGradGuardImage", dependencies: ["CPNG", "CJPEG"]),
        // Open MPI's collectives through plain C types (its handles are macros Swift cannot import).
        .target(name: "CGradGuardMPI", dependencies: ["CMPI"]),

        // MARK: Library, bottom to top
        // OpenBLAS is opened at first use (CGradGuardKernels/blas_loader.c), not linked: its core
        // type must be chosen before it loads.
        .target(name: "GradGuardTensor", dependencies: ["CGradGuardKernels"]),
        // The vocabulary of settings: a setting's key, type, range, help and resumability
        // (`Setting`), sections of them declared beside the code they configure, and what is
        // done with every setting alike (`SettingTable`: text and typed writes, YAML, typo hints).
        .target(name: "GradGuardSettings"),
        // Data-parallel training: the communicator (a world of one, or Open MPI through
        // GradGuardMPI), bucketed gradient averaging, the ranks' statistics exchange.
        .target(name: "GradGuardDistributed", dependencies: ["GradGuardTensor", "GradGuardSettings"]),
        .target(name: "GradGuardNN", dependencies: ["GradGuardTensor", "GradGuardSettings", "GradGuardDistributed"]),
        .target(name: "GradGuardOptim", dependencies: ["CGradGuardKernels", "GradGuardTensor", "GradGuardNN", "GradGuardSettings"]),
        .target(name: "GradGuardHealth", dependencies: ["GradGuardTensor", "GradGuardNN", "GradGuardOptim", "GradGuardSettings", "GradGuardDistributed"]),
        // Datasets, batches and the loader: below both the models and the trainer.
        .target(name: "GradGuardData", dependencies: ["GradGuardTensor"]),
        .target(
            name: "GradGuardTrain",
            dependencies: ["GradGuardTensor", "GradGuardNN", "GradGuardOptim", "GradGuardHealth", "GradGuardData", "GradGuardSettings", "GradGuardDistributed"]),
        .target(name: "GradGuardModels", dependencies: ["GradGuardTensor", "GradGuardNN", "GradGuardOptim", "GradGuardHealth", "GradGuardData", "GradGuardSettings",
                                                         "CGradGuardImage", .product(name: "Yams", package: "Yams")]),
        // The Communicator over Open MPI (data-parallel training under mpirun).
        .target(name: "GradGuardMPI", dependencies: ["CGradGuardMPI", "GradGuardTensor", "GradGuardDistributed"]),
        .target(name: "GradGuard", dependencies: ["GradGuardTensor", "GradGuardSettings", "GradGuardDistributed", "GradGuardNN", "GradGuardOptim", "GradGuardHealth", "GradGuardData",
                                                  "GradGuardTrain", "GradGuardModels", "GradGuardMPI"]),

        // MARK: Executables
        .executableTarget(name: "gradguard-mlp", dependencies: ["GradGuard"]),
        // Runs from settings: the configuration (RunConfig, composed of the sections each target
        // declares), building a run of a workload from it (RunSetup), the memory budget. The
        // command line parses, dispatches and prints.
        .target(name: "GradGuardRuns", dependencies: ["GradGuard", .product(name: "Yams", package: "Yams")]),
        // The canned experiments of `gradguard demo` (their tables are the README's).
        .target(name: "GradGuardDemos", dependencies: ["GradGuard", "GradGuardRuns"]),
        // GuardBench: healthy and failing training runs the guard is measured on.
        .target(name: "GradGuardBench", dependencies: ["GradGuard"]),
        .target(name: "GradGuardCLI", dependencies: ["GradGuard", "GradGuardRuns", "GradGuardDemos", "GradGuardBench",
                                                     .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "gradguard", dependencies: ["GradGuardCLI"]),
        // The Swift programs of the README, built and run by the tests.
        .executableTarget(name: "train-detector", dependencies: ["GradGuard"], path: "Examples/train-detector"),
        .executableTarget(name: "train-charlm", dependencies: ["GradGuard"], path: "Examples/train-charlm"),
        // The code of the DocC articles (Scripts/sync_doc_examples.py writes it), built and run by the tests.
        .executableTarget(name: "doc-examples", dependencies: ["GradGuard"], path: "Examples/doc-examples"),

        // MARK: Tests
        .target(name: "_TestSupport", dependencies: ["GradGuard"], path: "Tests/_TestSupport"),
        .testTarget(name: "GradGuardTensorTests", dependencies: ["GradGuard", "_TestSupport"]),
        .testTarget(name: "GradGuardNNTests", dependencies: ["GradGuard", "_TestSupport"]),
        .testTarget(name: "GradGuardOptimTests", dependencies: ["GradGuard", "_TestSupport"]),
        .testTarget(name: "GradGuardHealthTests", dependencies: ["GradGuard", "GradGuardBench", "_TestSupport"]),
        .testTarget(name: "GradGuardTrainTests", dependencies: ["GradGuard", "_TestSupport"]),
        .testTarget(name: "GradGuardCLITests", dependencies: ["GradGuardCLI", "GradGuardRuns", "GradGuardDemos", "GradGuardBench", "_TestSupport"]),
        .testTarget(name: "GradGuardModelsTests", dependencies: ["GradGuard", "_TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
