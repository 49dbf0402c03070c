import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Table of a checkpoint's parameters: shape, norm, std, init diagnostics.")
    @Argument(help: "A checkpoint directory, a run (its newest checkpoint) or a .safetensors file.") var checkpoint: String

    func run() throws {
        var tensors: [String: Tensor]
        if checkpoint.hasSuffix(".safetensors") {
            do { tensors = try Safetensors.read(checkpoint) } catch { throw fail("\(error)", code: Exit.missing) }
        } else {
            let path: String
            if FileManager.default.fileExists(atPath: checkpoint + "/manifest.json") {
                path = checkpoint
            } else {
                let dir = try runDirectory(checkpoint)
                guard let newest = CheckpointStore(directory: dir + "/checkpoints").list().first?.path else {
                    throw fail("run \(checkpoint) has no checkpoint", code: Exit.checkpoint)
                }
                path = newest
            }
            do { tensors = try CheckpointStore(directory: (path as NSString).deletingLastPathComponent).load(path).tensors["model"] ?? [:] } catch let e
                as CheckpointError
            {
                throw fail(e.description, code: Exit.checkpoint)
            }
        }
        print(InspectTable.render(tensors))
    }
}
