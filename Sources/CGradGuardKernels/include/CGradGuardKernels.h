#ifndef CGRADGUARD_KERNELS_H
#define CGRADGUARD_KERNELS_H

/// Raises glibc's mmap and trim thresholds so that freed large blocks stay in the heap
/// for reuse instead of being unmapped and faulted in again. Returns 1 when applied.
int gg_keep_freed_memory(void);

#endif

#ifndef CGRADGUARD_VECTORMATH_H
#define CGRADGUARD_VECTORMATH_H
/// 1 when the processor has AVX2 and FMA, so that the functions below may be called.
int gg_has_avx2_fma(void);
/// y[i] = exp(x[i]), sigmoid(x[i]) or tanh(x[i]) for i < n, in 8-lane AVX2 (x and y may alias).
/// Only call when gg_has_avx2_fma() returned 1.
void gg_exp_avx2(const float *x, float *y, long n);
void gg_sigmoid_avx2(const float *x, float *y, long n);
void gg_tanh_avx2(const float *x, float *y, long n);
#endif
