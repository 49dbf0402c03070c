@_exported import GradGuardData
@_exported import GradGuardDistributed
@_exported import GradGuardHealth
@_exported import GradGuardMPI
@_exported import GradGuardModels
@_exported import GradGuardNN
@_exported import GradGuardOptim
@_exported import GradGuardSettings
// The umbrella module: `import GradGuard` brings in the tensor engine, the layers and
// the optimizers, the gradient-health layer, the trainer and the reference workloads.
@_exported import GradGuardTensor
@_exported import GradGuardTrain
