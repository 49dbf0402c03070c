// The umbrella module: `import GradGuard` brings in the tensor engine, the layers and
// the optimizers, and the gradient-health layer.
@_exported import GradGuardTensor
@_exported import GradGuardNN
@_exported import GradGuardOptim
@_exported import GradGuardHealth
