#ifndef CGRADGUARD_KERNELS_H
#define CGRADGUARD_KERNELS_H

/// Raises glibc's mmap and trim thresholds so that freed large blocks stay in the heap
/// for reuse instead of being unmapped and faulted in again. Returns 1 when applied.
int gg_keep_freed_memory(void);

#endif
