#ifndef GRADGUARD_CPNG_SHIM_H
#define GRADGUARD_CPNG_SHIM_H
#include <png.h>
#endif
