import Foundation
import GradGuard
import GradGuardRuns

/// Any bytes as a run's records: the first byte picks the file (metrics.jsonl,
/// incidents.jsonl, a checkpoint's manifest.json, a data record, run.json), the rest is its contents.
/// Reading them back gives records or a sentence, never a trap; a torn last line is skipped.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    // A folder per process, reused: the fuzzed bytes become a run's record files.
    let folder = NSTemporaryDirectory() + "gradguard-fuzz-records-\(getpid())"
    let fm = FileManager.default
    try? fm.removeItem(atPath: folder)
    try? fm.createDirectory(atPath: folder + "/checkpoints/step-00000001", withIntermediateDirectories: true)
    let body = Data(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let files = ["metrics.jsonl", "incidents.jsonl", "checkpoints/step-00000001/manifest.json", DataFingerprint.fileName, RunDescription.fileName]
    let file = files[Int(data[0]) % files.count]
    fm.createFile(atPath: folder + "/" + file, contents: body)
    _ = try? RunRecords.metrics(in: folder)
    _ = try? RunRecords.incidents(in: folder)
    _ = try? RunRecords.summary(of: folder)
    _ = RunRecords.tornRecords(in: folder)
    _ = try? CheckpointStore(directory: folder + "/checkpoints").loadLatest()
    if let saved = try? DataFingerprint.saved(runDirectory: folder) { _ = saved.changes(since: saved) }
    if let described = try? RunDescription.read(in: folder) { _ = described.summary }
    return 0
}
