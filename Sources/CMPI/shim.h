#ifndef GRADGUARD_CMPI_SHIM_H
#define GRADGUARD_CMPI_SHIM_H
#include <mpi.h>
#endif
