#include "CGradGuardKernels.h"
#include <limits.h>   /* defines __GLIBC__ through <features.h> on glibc systems */

#if defined(__GLIBC__)
#include <malloc.h>

int gg_keep_freed_memory(void) {
    /* 1 GiB is above glibc's upper bound for the mmap threshold on some versions;
       fall back to that bound (32 MiB). */
    if (mallopt(M_MMAP_THRESHOLD, 1 << 30) == 0) {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
    }
    return mallopt(M_TRIM_THRESHOLD, INT_MAX);
}
#else
int gg_keep_freed_memory(void) { return 0; }
#endif
