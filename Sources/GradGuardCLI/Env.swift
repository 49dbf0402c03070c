import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Env: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the machine as GradGuard sees it: cores, memory, CPU features, the BLAS kernels in use.")

    func run() throws {
        let p = ProcessInfo.processInfo
        print("cores: \(p.activeProcessorCount)")
        print("memory: \(p.physicalMemory / (1 << 20)) MiB")
        print("kernels: \(Kernels.summary)")
    }
}
