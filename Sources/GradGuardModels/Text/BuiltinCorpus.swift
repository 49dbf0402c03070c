/// A small corpus written for GradGuard (plain English about training networks), used when
/// no text file is given. Its regular phrasing lets a small model learn it in minutes.
public enum BuiltinCorpus {
    /// The text.
    public static let text: String = {
        let subjects = [
            "the gradient", "the loss", "the learning rate", "the recurrent weight", "the first layer", "the last layer",
            "the clipping threshold", "the optimizer", "the batch norm", "the guard"
        ]
        let verbs = ["grows", "shrinks", "explodes", "vanishes", "settles", "moves", "waits", "returns", "falls", "rises"]
        let endings = [
            "after the warm-up.", "when the weights are too large.", "through a long sequence.", "at every step.",
            "once the norm is clipped.", "before the loss turns to nan.", "while the model learns.",
            "as the schedule decays.", "when the guard backs off.", "and the run goes on."
        ]
        var lines: [String] = [
            "a network learns by following its gradient downhill, one small step at a time.",
            "when the step is too large, the loss swings and the weights run away.",
            "when the signal fades on its way back, the early layers stop learning.",
            "clipping keeps each step in bounds; a good initialisation keeps the signal alive."
        ]
        // A deterministic walk through the phrase tables: the same text on every machine.
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func next(_ n: Int) -> Int {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Int(state % UInt64(n))
        }
        for _ in 0..<600 {
            lines.append("\(subjects[next(subjects.count)]) \(verbs[next(verbs.count)]) \(endings[next(endings.count)])")
        }
        return lines.joined(separator: "\n") + "\n"
    }()
}
