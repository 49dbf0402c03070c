#ifndef GRADGUARD_COPENBLAS_SHIM_H
#define GRADGUARD_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
