#ifndef CGRADGUARD_KERNELS_H
#define CGRADGUARD_KERNELS_H

/// Raises glibc's mmap and trim thresholds so that freed large blocks stay in the heap
/// for reuse instead of being unmapped and faulted in again. Returns 1 when applied.
int gg_keep_freed_memory(void);

#endif

#ifndef CGRADGUARD_VECTORMATH_H
#define CGRADGUARD_VECTORMATH_H
/// Kernel levels: the instruction sets the vector kernels below are compiled for. Level 0 is
/// the callers' portable code; the functions below take level 1 or 2 and must only be
/// given a level at most gg_kernel_level_supported().
#define GG_LEVEL_PORTABLE 0
#define GG_LEVEL_AVX2 1
#define GG_LEVEL_AVX512 2
/// The highest level this processor (and its OS) runs: AVX-512 needs F, DQ, BW and VL.
int gg_kernel_level_supported(void);
/// y[i] = exp(x[i]), sigmoid(x[i]) or tanh(x[i]) for i < n (x and y may alias).
void gg_vexp(int level, const float *x, float *y, long n);
void gg_vsigmoid(int level, const float *x, float *y, long n);
void gg_vtanh(int level, const float *x, float *y, long n);
/// One batch row of an LSTM step over n hidden units: the gate pre-activations i, f, g, o
/// are replaced by σ, σ, tanh, σ of themselves; then c' = f·c + i·g, tanh(c') and h' = o·tanh(c').
void gg_lstm_forward(int level, float *ig, float *fg, float *gg, float *og, const float *c_prev, float *c_next,
                     float *tanh_c, float *h, long n);
/// Its backward for one row: from the gate activations, tanh(c'), c, the output gradient plus
/// the recurrent one (d_out + dh_next) and the cell gradient dc (replaced by dc·f for the
/// step before), the gradients of the four gate pre-activations.
void gg_lstm_backward(int level, const float *ai, const float *af, const float *ag, const float *ao,
                      const float *tanh_c, const float *c_prev, const float *d_out, const float *dh_next, float *dc,
                      float *di, float *df, float *dg, float *d_o, long n);
/// One Adam/AdamW update of n parameters (see Adam.swift for the rule).
typedef struct {
    float step_size, bc2_sqrt, decay, c1, beta2, c2, eps, weight_decay;
    int decoupled;
} gg_adam_args;
void gg_adam(int level, float *p, const float *g, float *m, float *v, float *vmax, long n, const gg_adam_args *args);
/// One SGD update; `buf` NULL without momentum (see SGD.swift).
typedef struct {
    float lr, weight_decay, momentum, dampening;
    int first, nesterov;
} gg_sgd_args;
void gg_sgd(int level, float *p, const float *g, float *buf, long n, const gg_sgd_args *args);
/// Σ x[i] (squares = 0) or Σ x[i]² (squares = 1), float lanes summed in double.
double gg_sum(int level, const float *x, long n, int squares);
#endif

#ifndef CGRADGUARD_PACKED_GEMM_H
#define CGRADGUARD_PACKED_GEMM_H
/// Floats needed to pack a K × N right-hand operand: ceil(N/16) panels of K × 16.
long gg_packed_size(long K, long N);
/// Packs the panels [panel0, panel1) of op(B) (K × N): 16-column panels, zero-padded past N,
/// panel p at packed + p·16·K. With `transB` B is
/// N × K row-major (leading dimension ldb), otherwise K × N row-major.
void gg_pack_b_panels(const float *B, long ldb, int transB, long K, long N, long panel0, long panel1, float *packed);
/// The same panels written one after another from `out` (panel panel0 at out).
void gg_pack_b_panels_to(const float *B, long ldb, int transB, long K, long N, long panel0, long panel1, float *out);
/// C[M × N] (=|+=) A[M × K] · op(B) for the panels [panel0, panel1) of a packed B,
/// A and C row-major with leading dimensions lda and ldc (level 1 or 2).
void gg_gemm_packed(int level, long M, long K, const float *A, long lda, const float *packed,
                    long panel0, long panel1, long N, float *C, long ldc, int accumulate);
/// Floats of scratch gg_sgemm_panels needs: two 16-column panels of K rows.
long gg_sgemm_scratch_size(long K);
/// A general product for the 16-column panels [panel0, panel1) of C: C[M × N] (=|+=)
/// op(A) · op(B), all row-major: op(A) = A (M × K) or Aᵀ (A K × M), leading dimension lda;
/// op(B) = B (K × N) or Bᵀ (B N × K), leading dimension ldb. Each pair of panels of op(B)
/// is packed into `scratch` just before the blocks of rows use it, so it is read from
/// cache; A is read in place (level 1 or 2).
void gg_sgemm_panels(int level, long M, long N, long K, const float *A, long lda, int transA, const float *B, long ldb,
                     int transB, float *C, long ldc, int accumulate, long panel0, long panel1, float *scratch);
#endif

#ifndef CGRADGUARD_RELAX_H
#define CGRADGUARD_RELAX_H
/// A spin-wait hint to the processor (PAUSE on x86-64, YIELD on ARM).
static inline void gg_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
#endif

#ifndef CGRADGUARD_CONV_H
#define CGRADGUARD_CONV_H
/// A convolution or pooling window: kernel, stride, padding and dilation along y and x.
typedef struct { long kh, kw, sh, sw, ph, pw, dh, dw; } gg_window;
/// Columns of one image's channel group, [channels·kh·kw, oh·ow]: row (c, i, j) holds, for
/// every output position, the input under kernel tap (i, j) of channel c (0 in the padding).
/// `x` points at the group's first channel (h × w each); `level` as for the vector kernels.
void gg_im2col(const float *x, long h, long w, long channels, const gg_window *win, long oh, long ow, float *out,
               int level);
/// The adjoint of gg_im2col: adds each column entry to the input position it came from.
void gg_col2im(const float *cols, float *dx, long h, long w, long channels, const gg_window *win, long oh, long ow,
               int level);
// MARK: BLAS, loaded at first use (blas_loader.c)

/// CPU features: bits of gg_cpu_features().
#define GG_CPU_AVX 1
#define GG_CPU_AVX2_FMA 2
#define GG_CPU_AVX512 4
#define GG_CPU_AMD 8
int gg_cpu_features(void);
/// The OpenBLAS core type GradGuard sets for these features, or NULL to leave OpenBLAS's own detection.
const char *gg_blas_core_for_features(int features);
/// Row-major single-precision GEMM through OpenBLAS (loaded on the first call).
void gg_blas_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                   float beta, float *c, int ldc);
void gg_blas_set_num_threads(int n);
/// The kernel family OpenBLAS runs ("Haswell", "SkylakeX", "Zen", "Prescott" …) and why.
const char *gg_blas_core(void);
const char *gg_blas_core_source(void);

#endif
