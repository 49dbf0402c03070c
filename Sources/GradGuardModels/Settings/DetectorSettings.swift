import GradGuardSettings

/// The YOLO-style detector's own settings (`model.kind detector`): its size, head, blocks and
/// loss under `model.`, its images and augmentations under `data.`.
public struct DetectorSettings: SettingSection {
    /// The detector's size (`model.width` overrides its channels).
    public var size = DetectorSize.n
    /// The box term of the loss.
    public var boxLoss = BoxLoss.giou
    /// The box-loss gain.
    public var boxGain = YOLOLoss.defaultBoxGain
    /// The head, output scales and blocks.
    public var head = DetectorHead.coupled
    /// Output scales: 2 or 3.
    public var scales = 2
    /// Plain Conv-BN-SiLU or C2f blocks.
    public var block = DetectorBlock.conv
    /// The input side, in pixels.
    public var imageSize = 128
    /// Whether training images are augmented.
    public var augment = true
    /// Images declaring more pixels are refused before decoding.
    public var maxImagePixels = RGBImage.defaultMaxPixels
    /// Training images as mosaics of four, but for the last `closeMosaic` epochs.
    public var mosaic = false
    /// The last epochs trained on single images.
    public var closeMosaic = 10
    /// Bad labels and images: skipped and reported, or fatal.
    public var onError = DataIssuePolicy.skip

    /// The defaults.
    public init() {}

    /// The detector's settings.
    public static let settings: [Setting<DetectorSettings>] = [
        .choice("model.size", \.size, "detector size (its first-layer channels, unless model.width is set)"),
        .choice("model.box_loss", \.boxLoss, "detector box loss, 1 − GIoU or 1 − CIoU"),
        .double(
            "model.box_gain", \.boxGain, in: 0...1e6,
            "detector: weight of the box loss (YOLOv5's 0.05 with the coupled head, YOLOv8's 7.5 with the decoupled one)"),
        .choice("model.head", \.head, "detector head and its loss"),
        .int("model.scales", \.scales, in: 2...3, "detector output scales: 2 (strides 8, 16) or 3 (8, 16, 32)"),
        .choice("model.block", \.block, "detector blocks after each downsampling and in the neck"),
        .int("data.image_size", \.imageSize, in: 32...4096, "detector input side in pixels (a multiple of 16)"),
        .bool("data.augment", \.augment, "detector training augmentations (scale/translate, flip, HSV)"),
        .int(
            "data.max_image_pixels", \.maxImagePixels, in: 1...Int(Int32.max),
            "images declaring more pixels (width × height) are refused before decoding, as a decompression bomb"),
        .bool("data.mosaic", \.mosaic, "detector: train on mosaics of four images (Ultralytics' mosaic), with data.augment"),
        .int("data.close_mosaic", \.closeMosaic, in: 0...1_000_000, "detector: the last epochs train on single images again (Ultralytics' close_mosaic)"),
        .choice("data.on_error", \.onError, "bad label lines, orphan labels, unreadable images", resumable: true)
    ]

    /// The detector's recommended settings of a run, each where the run did not give one:
    /// YOLOv8's decoupled head and C2f blocks, with three scales from 256-pixel inputs (two
    /// below: at 128 pixels a stride-32 grid is 4×4 and, on the shapes data, its box branch
    /// never gets an object — BENCHMARKS.md), and Ultralytics' training defaults — SGD lr
    /// 0.01, momentum 0.937 (warmed up from 0.8), weight decay 5e-4, warm-up over max(3
    /// epochs, 100 steps) towards a rate falling linearly to 1 %, batch 16, weight EMA, mosaics
    /// but for the last 10 epochs, CIoU box loss with the head's gains, data in a `data.yaml`.
    /// Two measured departures: the gradient norm is clipped at 100, not Ultralytics' 10 (with
    /// the loss summed × batch, 10 clips every step; 100 clips the first steps' norms of
    /// thousands and later spikes); and no validation-divergence watch (under mosaics and a
    /// ramping weight average a detector's validation loss swings threefold in the first
    /// epochs while its mAP rises; the watch halved the rate twice on the shapes data and cost
    /// 0.044 mAP@0.5:0.95). Other models keep the global defaults.
    public static let runDefaults: [(key: String, value: String)] = [
        ("data.kind", "yolo"), ("model.head", "decoupled"), ("model.block", "c2f"),
        ("model.box_loss", "ciou"), ("model.ema", "true"), ("data.mosaic", "true"), ("optimizer.kind", "sgd"),
        ("optimizer.lr", "0.01"), ("optimizer.momentum", "0.937"), ("optimizer.weight_decay", "0.0005"),
        ("schedule.kind", "warmup-linear"), ("guard.clipper", "global-norm"), ("guard.max_norm", "100"), ("training.batch_size", "16"),
        ("guard.validation_divergence", "0")
    ]

    /// The coarsest stride of the chosen scales: the input side must be a multiple of it.
    public var coarsestStride: Int { scales == 3 ? 32 : 16 }
}
