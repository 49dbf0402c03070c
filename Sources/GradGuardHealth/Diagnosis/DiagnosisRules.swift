/// What a workload knows of its own failure modes, for the diagnosis: the causes its settings
/// explain (a detector's short warm-up, its box-loss gain), and a cause it reads in vanishing
/// findings (a detector head's scale that no object was assigned to). A workload contributes
/// its rules (`Diagnostician.rules`, `TrainerConfig.diagnosisRules`); the diagnosis knows no
/// workload itself.
public protocol DiagnosisRules: Sendable {
    /// Causes and recommendations the run's settings explain, for trouble at `step`.
    func settingCauses(step: Int) -> [(Cause, String)]
    /// A cause of these findings (some of them vanishing) that the workload recognises, or nil.
    func vanishingCause(_ findings: [Finding]) -> (Cause, String)?
}

extension DiagnosisRules {
    /// None.
    public func settingCauses(step: Int) -> [(Cause, String)] { [] }
    /// None.
    public func vanishingCause(_ findings: [Finding]) -> (Cause, String)? { nil }
}
