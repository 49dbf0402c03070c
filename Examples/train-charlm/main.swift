// Trains a character LSTM on a text file under a guard, prints bits per character and a sample.
// Usage: train-charlm TEXT [STEPS], or data-parallel: mpirun -np N train-charlm TEXT [STEPS]
import Foundation
import GradGuard

do {
    let args = CommandLine.arguments
    let path = args.count > 1 ? args[1] : "book.txt"
    let lm = try CharLanguageModelling(text: try CharCorpus.readText(path: path), source: path)
    var config = TrainerConfig()
    config.maxSteps = args.count > 2 ? Int(args[2]) ?? 300 : 300
    config.batchSize = 32
    let guardPolicy = GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 5))
    let world = try MPICommunicator.launchedOrSingle()  // one process without mpirun
    let trainer = try Trainer(lm, optimizer: Adam(lm.model.parameters(), lr: 0.002), policy: guardPolicy, config: config, communicator: world)
    let result = try trainer.fit(lm)
    MPICommunicator.finish()
    guard world.rank == 0 else { exit(0) }
    print(String(format: "validation bits/char %.3f", result.lastEvaluation?["bits_per_char"] ?? .nan))
    let sample = lm.model.generate(prompt: lm.corpus.encode("The "), length: 120, temperature: 0.8, topK: nil, seed: 0)
    print("The " + lm.corpus.decode(sample))
} catch {
    FileHandle.standardError.write(Data("train-charlm: \(error)\n".utf8))
    exit(1)
}
