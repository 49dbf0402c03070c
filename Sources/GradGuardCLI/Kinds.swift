import ArgumentParser
import GradGuard
import GradGuardRuns

// The choices are flag values too.
extension ModelKind: ExpressibleByArgument {}
extension DataKind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}
extension ClipperKind: ExpressibleByArgument {}
