import Foundation
import GradGuard

/// An up-front estimate of what a run will hold in memory, checked against the machine
/// before any tensor is allocated, so a setting the machine cannot hold ends in a sentence
/// ("model.width 100000 needs ≈ 41 GB …") instead of a failed allocation.
///
/// The estimate counts, in float32: the parameters four times over (weights, gradients, up
/// to two optimizer buffers) plus one rollback snapshot and one checkpoint copy, and the
/// activations that the tape keeps for one micro-batch together with their gradients. It
/// is meant to be right within a factor of two: it refuses what cannot fit, not what is
/// merely tight.
struct MemoryBudget {
    var parameters: Double
    var activations: Double  // floats held for one micro-batch (forward and backward)
    /// The curvature probe's floats: its Lanczos basis (`iterations` + 1 vectors of doubles) and
    /// four flat copies, and its batch's activations beyond a training batch's (0: no probe).
    var probe = 0.0

    var bytes: Double { 4 * (6 * parameters + activations + probe) }

    /// This machine's physical memory in bytes.
    static var physicalMemory: Double {
        Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Floats of a recurrent stack: gate count 4 (LSTM), 3 (GRU) or 1 (RNN).
    static func recurrentParameters(cell: SequenceModel.Cell, input: Int, hidden: Int, layers: Int) -> Double {
        let g = Double(cell == .lstm ? 4 : cell == .gru ? 3 : 1), h = Double(hidden)
        return (0..<layers).reduce(0.0) { sum, l in sum + g * h * (Double(l == 0 ? input : hidden) + h + 2) }
    }

    /// Floats the tape keeps per time step and example in a recurrent stack (gates, cell and
    /// hidden states, their gradients).
    static func recurrentActivations(cell: SequenceModel.Cell, hidden: Int, layers: Int) -> Double {
        Double(cell == .lstm ? 12 : cell == .gru ? 10 : 4) * Double(hidden * layers) * 2
    }

    /// The budget of run `c`, with the vocabulary sizes its data gave.
    static func of(
        _ c: RunConfig, vocabulary: Int = 0, targetVocabulary: Int = 0, sourceLength: Int = 0, targetLength: Int = 0,
        classes: Int = 0
    ) -> MemoryBudget {
        var m = model(
            c, vocabulary: vocabulary, targetVocabulary: targetVocabulary, sourceLength: sourceLength, targetLength: targetLength, classes: classes)
        if c.guard.curvatureEvery > 0 {
            let perBatch = Double(c.guard.curvatureBatch) / Double(Swift.max(c.training.batchSize, 1))
            m.probe = m.parameters * (2 * Double(c.guard.curvatureIterations + 1) + 8) + m.activations * Swift.max(0, perBatch - 1)
        }
        return m
    }

    /// The model's and training's part of the budget.
    static func model(
        _ c: RunConfig, vocabulary: Int, targetVocabulary: Int, sourceLength: Int, targetLength: Int, classes: Int
    ) -> MemoryBudget {
        let b = Double(c.training.batchSize), w = c.widthValue, layers = c.layerCount
        switch c.model.kind {
        case .charlm:
            let t = Double(c.data.sequenceLength), v = Double(vocabulary), e = Double(c.model.embedding)
            let p = v * e + recurrentParameters(cell: c.model.cell, input: c.model.embedding, hidden: w, layers: layers) + Double(w) * v + v
            let a = b * t * (2 * e + recurrentActivations(cell: c.model.cell, hidden: w, layers: layers) + 4 * v)
            return MemoryBudget(parameters: p, activations: a)
        case .transformer:
            // Per block: 4·w² attention and 8·w² feed-forward weights; per position and block ≈ 20·w
            // activations kept for backward, and the heads' T×T attention logits and weights (×3).
            let t = Double(c.data.sequenceLength), v = Double(vocabulary), wd = Double(w), l = Double(layers), h = Double(c.model.heads)
            let p = v * wd + t * wd + l * (12 * wd * wd + 13 * wd) + wd * v + v
            let a = b * t * (l * (20 * wd + 3 * h * t) + 4 * v + 2 * wd)
            return MemoryBudget(parameters: p, activations: a)
        case .seq2seq:
            let vs = Double(vocabulary), vt = Double(targetVocabulary), e = Double(c.model.embedding)
            let p =
                (vs + vt) * e + 2 * recurrentParameters(cell: .lstm, input: c.model.embedding, hidden: w, layers: layers)
                + Double(2 * w * w) + Double(w) * vt + vt
            let steps = Double(sourceLength + targetLength)
            let a =
                b * steps * (2 * e + recurrentActivations(cell: .lstm, hidden: w, layers: layers) + 4 * vt)
                + b * Double(targetLength) * Double(sourceLength) * 4  // attention weights
            return MemoryBudget(parameters: p, activations: a)
        case .sequence:
            let p = recurrentParameters(cell: c.model.cell, input: 10, hidden: w, layers: layers) + Double(w) * 10
            let data = Double(c.data.trainSize + c.data.validationSize) * Double(c.data.sequenceLength) * 12  // the generated sequences
            return MemoryBudget(
                parameters: p,
                activations: b * Double(c.data.sequenceLength) * (recurrentActivations(cell: c.model.cell, hidden: w, layers: layers) + 20) + data)
        case .detector:
            let s2 = Double(c.detector.imageSize) * Double(c.detector.imageSize), wd = Double(w)
            // Convolution weights of the backbone, neck and heads: ≈ 2 200·width².
            let p = 2_200 * wd * wd + 12 * wd * Double(5 + classes)
            // Outputs of conv, BatchNorm and SiLU at strides 2–16 (≈ 0.8·width·S² values an image), with gradients.
            let a = b * (6 * 0.8 * wd * s2 + 4 * 3 * s2)
            return MemoryBudget(parameters: p, activations: a)
        case .mlp:
            let p = Double(c.data.inputs * w + w) + Double(max(0, layers - 1)) * Double(w * w + w) + Double(w * c.data.classes + c.data.classes)
            let data = Double(c.data.trainSize + c.data.validationSize) * Double(c.data.inputs + 1)  // the generated examples
            let a = b * Double(layers) * Double(w) * 6 + b * Double(c.data.inputs + c.data.classes) * 2 + data
            return MemoryBudget(parameters: p, activations: a)
        }
    }

    /// Throws a configuration error naming the settings behind the estimate when it does not
    /// fit in `available` bytes (default: 90 % of the physical memory).
    func check(_ c: RunConfig, available: Double = 0.9 * MemoryBudget.physicalMemory) throws {
        guard bytes > available else { return }
        let keys =
            c.model.kind == .detector
            ? "model.width \(c.widthValue), data.image_size \(c.detector.imageSize), training.batch_size \(c.training.batchSize)"
            : c.model.kind == .mlp
                ? "model.width \(c.widthValue), model.layers \(c.layerCount), data.inputs \(c.data.inputs), data.classes \(c.data.classes), training.batch_size \(c.training.batchSize)"
                : "model.width \(c.widthValue), model.layers \(c.layerCount), data.sequence_length \(c.data.sequenceLength), training.batch_size \(c.training.batchSize)"
        let what =
            probe > 6 * parameters + activations
            ? "≈ \(FileContents.byteCount(Int(4 * probe))) for the curvature probe (guard.curvature.iterations \(c.guard.curvatureIterations), guard.curvature.batch \(c.guard.curvatureBatch))"
            : 24 * parameters > 4 * activations
                ? "≈ \(FileContents.byteCount(Int(24 * parameters))) of parameters and optimizer state (\(Self.count(parameters)) parameters)"
                : "≈ \(FileContents.byteCount(Int(4 * activations))) of activations for one batch"
        throw ConfigError(
            source: "settings", line: nil, key: nil,
            message:
                "\(keys) need \(what), ≈ \(FileContents.byteCount(Int(bytes))) in all, more than this machine's \(FileContents.byteCount(Int(MemoryBudget.physicalMemory))) of memory: make the model, the sequences, the images or the batch smaller"
                + (probe > 0 ? ", or the curvature probe's iterations and batch" : "")
        )
    }

    static func count(_ n: Double) -> String {
        n >= 1e9 ? String(format: "%.1f billion", n / 1e9) : n >= 1e6 ? String(format: "%.1f million", n / 1e6) : String(format: "%.0f", n)
    }
}
