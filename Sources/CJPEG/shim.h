#ifndef GRADGUARD_CJPEG_SHIM_H
#define GRADGUARD_CJPEG_SHIM_H
#include <stdio.h>
#include <jpeglib.h>
#endif
