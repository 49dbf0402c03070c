import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text with a character-model run's newest checkpoint.")
    @Argument(help: "Run name or directory.") var runName: String
    @Option(name: .long, parsing: .unconditional, help: "Text to continue.") var prompt = ""
    @Option(name: .long, parsing: .unconditional, help: "Characters to generate.") var length = 200
    @Option(name: .long, parsing: .unconditional, help: "Sampling temperature (0: always the most likely character).") var temperature = 0.8
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Sample among the k most likely characters only.") var topK: Int?
    @Option(name: .long, parsing: .unconditional, help: "Seed of the sampling.") var seed = 0

    func validate() throws {
        try Bounds.check(length, Bounds.generateLength, "--length")
        try Bounds.check(temperature, 0...100, "--temperature")
        if let topK { try Bounds.check(topK, 1...Int(UInt16.max), "--top-k") }
        try Bounds.check(seed, Bounds.seed, "--seed")
        guard prompt.count <= Bounds.promptCharacters else {
            throw ValidationError("--prompt must be at most \(Bounds.promptCharacters) characters, got \(prompt.count)")
        }
    }

    func run() throws {
        guard case let .charlm(model, corpus) = try trainedModel(runName, kind: .charlm, command: "generate", alsoKind: .transformer).trained else {
            throw fail("run \(runName) holds no character model", code: Exit.usage)
        }
        let unknown = prompt.filter { !corpus.vocabulary.contains($0) }
        if !unknown.isEmpty {
            let shown = Array(Set(unknown.unicodeScalars)).sorted().map { "'\(printable(String($0)))'" }.joined(separator: ", ")
            FileHandle.standardError.write(Data("gradguard: the prompt's characters \(shown) are not in the vocabulary; left out\n".utf8))
        }
        // The prompt as the model reads it, then each character as it is drawn (a long text
        // appears as it is written, not at the end); control characters of the prompt are
        // shown as escapes, never sent raw to a terminal.
        let ids = corpus.encode(prompt)
        var out = Data(printable(corpus.decode(ids)).utf8)
        func flush() {
            FileHandle.standardOutput.write(out)
            out.removeAll(keepingCapacity: true)
        }
        _ = model.generate(prompt: ids, length: length, temperature: temperature, topK: topK, seed: UInt64(seed)) { id in
            out.append(contentsOf: corpus.decode([id]).utf8)
            if out.count >= 4096 || out.last == 0x0A { flush() }
        }
        out.append(0x0A)
        flush()
    }
}
