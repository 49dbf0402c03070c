import GradGuardSettings

/// Data-parallel training under mpirun (`distributed.*`).
public struct DistributedSettings: SettingSection {
    /// Seconds a collective waits for the other ranks before the job is ended (the watchdog).
    public var timeout = 300.0
    /// Check that every rank holds the same parameters every this many steps (0: never).
    public var checkEvery = 100
    /// Largest gradient bucket averaged in one collective, in MiB.
    public var bucketMB = 25.0

    /// The defaults.
    public init() {}

    /// The `distributed.*` settings.
    public static let settings: [Setting<DistributedSettings>] = [
        .double(
            "distributed.timeout", \.timeout, in: 1...86_400,
            "under mpirun: seconds a collective waits for every rank before the job ends (a rank died or stalled)", resumable: true),
        .int(
            "distributed.check_every", \.checkEvery, in: 0...Int(Int32.max),
            "under mpirun: check that every rank holds the same parameters every N steps (0: never)", resumable: true),
        .double(
            "distributed.bucket_mb", \.bucketMB, in: 0.001...4096, "under mpirun: largest gradient bucket averaged in one collective (MiB)",
            resumable: true)
    ]
}
