import GradGuardData
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// The YOLO-style detector on a dataset in Ultralytics' layout (`data.yaml`): YOLOv5's or
/// YOLOv8's loss (with the head),
/// Ultralytics' parameter groups (BatchNorm weights and biases without weight decay, the
/// biases' warm-up from a rate of 0.1), and COCO mAP@0.5 and mAP@0.5:0.95 over the whole
/// validation set.
public struct DetectionWorkload: Workload {
    /// How the detector, its data and its loss are built.
    public struct Settings: Sendable, Equatable {
        /// Input side in pixels, a multiple of 16.
        public var imageSize = 128
        /// The first layer's channels.
        public var width = 16
        /// Training augmentations: scale and translation, flips, HSV.
        public var augment = true
        /// The box term of the loss.
        public var boxLoss = BoxLoss.giou
        /// Bad label lines, orphan labels and unreadable images: skipped and reported, or fatal.
        public var onError = DataIssuePolicy.skip
        /// Images declaring more pixels are refused before decoding.
        public var maxImagePixels = RGBImage.defaultMaxPixels
        /// The seed of the augmentations.
        public var seed: UInt64 = 0
        /// Training epochs before this one draw mosaics (0: none; Ultralytics: every epoch but
        /// the last `close_mosaic` ones).
        public var mosaicUntilEpoch = 0
        /// The box-loss gain (nil: the head's, `YOLOLoss.defaultBoxGain(for:)`).
        public var boxGain: Double? = nil
        /// YOLOv5's coupled head or YOLOv8's decoupled one (DFL, task-aligned assignment).
        public var head = DetectorHead.coupled
        /// Output scales: 2 (strides 8, 16) or 3 (8, 16, 32).
        public var scales = 2
        /// Plain Conv-BN-SiLU or C2f blocks.
        public var block = DetectorBlock.conv
        /// The defaults.
        public init() {}
    }

    /// The dataset's data.yaml.
    public let config: DetectionDataConfig
    /// The detector.
    public let model: YOLODetector
    /// The report's parts: backbone, neck, head.
    public var moduleParts: (any ModuleParts)? { DetectorParts() }
    /// The training images, augmented.
    public let train: any Dataset
    /// The validation images, letterboxed only.
    public let validation: (any Dataset)?
    /// The loss that goes with the detector's head.
    public let criterion: YOLOLoss
    /// Problems found in the data and passed over (`onError` skip).
    public let issues: [DataIssue]
    /// The class names, by index.
    public var classNames: [String] { config.names }

    /// Reads and checks the dataset `config` names and builds the detector and its loss.
    public init(config: DetectionDataConfig, settings s: Settings = Settings()) throws {
        self.config = config
        let trainSplit = try DetectionSplit.load(config, split: "train", policy: s.onError, maxPixels: s.maxImagePixels)
        let validSplit = try DetectionSplit.load(config, split: "val", policy: s.onError, maxPixels: s.maxImagePixels)
        train = DetectionDataset(
            trainSplit.samples, size: s.imageSize, augmentation: s.augment ? Augmentation() : .none, seed: s.seed,
            mosaicUntilEpoch: s.augment ? s.mosaicUntilEpoch : 0)
        validation = DetectionDataset(validSplit.samples, size: s.imageSize)
        issues = trainSplit.issues + validSplit.issues
        model = YOLODetector(
            classes: config.names.count, width: s.width, imageSize: s.imageSize, head: s.head, scales: s.scales, block: s.block)
        var criterion = YOLOLoss(for: model, imageSize: s.imageSize)
        criterion.box = s.boxLoss
        if let gain = s.boxGain { criterion.boxGain = gain }
        self.criterion = criterion
    }

    /// The dataset described by the `data.yaml` at `path`.
    public init(dataYAML path: String, settings: Settings = Settings()) throws {
        try self.init(config: try DetectionDataConfig.load(path: path), settings: settings)
    }

    /// The detector's loss on a batch.
    public func loss(_ model: YOLODetector, _ batch: Batch) -> Tensor { criterion(model(batch.inputs), targets: batch.targets).total }

    /// True: mAP needs every prediction of the validation set.
    public var evaluatesWholeDataset: Bool { true }

    /// mAP@0.5 (`map50`), mAP@0.5:0.95 (`map50_95`) and the loss over `data`.
    public func datasetMetrics(_ model: YOLODetector, _ data: any Dataset) throws -> [String: Double] {
        let r = try DetectionDataset.evaluate(model, on: data, loss: criterion)
        return ["loss": r.loss ?? .nan, "map50": r.map50, "map50_95": r.map50to95]
    }

    /// Ultralytics' three groups: weights with decay, normalisation weights and biases without.
    public func parameterGroups(weightDecay: Double) -> [ParamGroup] { model.parameterGroups(weightDecay: weightDecay) }

    /// The bias group's warm-up starts at 0.1 (Ultralytics' `warmup_bias_lr`).
    public var warmupStartLR: [Int: Double] { [YOLODetector.biasGroup: 0.1] }
}
