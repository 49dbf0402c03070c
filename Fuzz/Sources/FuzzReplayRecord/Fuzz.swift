import Foundation
import GradGuard

/// Any bytes as a replay record's replay.json (beside valid weights, with no manifest, as a
/// record written before they had one): read back, it is a record whose numbers are in range
/// and whose examples are checked against the data, or a sentence, never a trap.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let fm = FileManager.default
    // Made on each call: a global made lazily inside the first input reads as a leak.
    let folder = NSTemporaryDirectory() + "gradguard-fuzz-replay-\(getpid())"
    let weights = Safetensors.encode(["w": Tensor.ones([4])])
    let dir = folder + "/replay/step-00000001-0"
    try? fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
    fm.createFile(atPath: dir + "/replay.json", contents: Data(UnsafeBufferPointer(start: data, count: size)))
    fm.createFile(atPath: dir + "/weights.safetensors", contents: weights)
    guard let (record, _) = try? ReplayStore(runDirectory: folder, budgetBytes: 1 << 20).load("replay/step-00000001-0") else { return 0 }
    if record.problem != nil || record.threads < 1 || record.accumulation < 1 { fatalError("accepted a record out of range: \(record)") }
    if record.examplesProblem(count: 10) == nil, record.microBatches.joined().contains(where: { $0 < 0 || $0 >= 10 }) {
        fatalError("an example index out of range passed the check: \(record.microBatches)")
    }
    return 0
}
