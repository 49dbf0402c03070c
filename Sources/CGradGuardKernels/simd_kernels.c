// The vector kernels of simd_body.h, compiled once for AVX2 + FMA and once for AVX-512
// with per-function target attributes (the package needs no global compiler flags), and
// the entry points that pick one by level. Where x86 vector extensions do not exist only
// the entry points remain: the portable Swift code is the only path there, and the level
// reported by gg_kernel_level_supported() is 0, so they are never called.
#include "CGradGuardKernels.h"

int gg_kernel_level_supported(void) {
    static int level = -1;
    if (level < 0) {
        int f = gg_cpu_features();
        level = (f & GG_CPU_AVX512) && (f & GG_CPU_AVX2_FMA) ? GG_LEVEL_AVX512 : (f & GG_CPU_AVX2_FMA) ? GG_LEVEL_AVX2 : GG_LEVEL_PORTABLE;
    }
    return level;
}

#if defined(__x86_64__) && defined(__clang__)
#define GG_HAVE_VECTORS 1

#define W 8
#define SFX avx2
#define MRMAX 6
#define NPMAX 1
#define GG_TARGET __attribute__((target("avx2,fma")))
#include "simd_body.h"
#undef W
#undef SFX
#undef MRMAX
#undef NPMAX
#undef GG_TARGET

// 32 vector registers: a 12 × 32 block of C (24 accumulators), two B vectors and a broadcast.
#define W 16
#define SFX avx512
#define MRMAX 12
#define NPMAX 2
#define GG_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#include "simd_body.h"
#undef W
#undef SFX
#undef MRMAX
#undef NPMAX
#undef GG_TARGET

#define GG_DISPATCH(level, f, ...)                                  \
    do {                                                            \
        if (level >= GG_LEVEL_AVX512) f##_avx512(__VA_ARGS__);      \
        else if (level == GG_LEVEL_AVX2) f##_avx2(__VA_ARGS__);     \
    } while (0)
#else
#define GG_DISPATCH(level, f, ...) do { (void)level; } while (0)
#endif

void gg_vexp(int level, const float *x, float *y, long n) { GG_DISPATCH(level, gg_exp, x, y, n); }
void gg_vsigmoid(int level, const float *x, float *y, long n) { GG_DISPATCH(level, gg_sigmoid, x, y, n); }
void gg_vtanh(int level, const float *x, float *y, long n) { GG_DISPATCH(level, gg_tanh, x, y, n); }

void gg_lstm_forward(int level, float *ig, float *fg, float *gg, float *og, const float *c_prev, float *c_next,
                     float *tanh_c, float *h, long n) {
    GG_DISPATCH(level, gg_lstm_forward, ig, fg, gg, og, c_prev, c_next, tanh_c, h, n);
}

void gg_lstm_backward(int level, const float *ai, const float *af, const float *ag, const float *ao,
                      const float *tanh_c, const float *c_prev, const float *d_out, const float *dh_next, float *dc,
                      float *di, float *df, float *dg, float *d_o, long n) {
    GG_DISPATCH(level, gg_lstm_backward, ai, af, ag, ao, tanh_c, c_prev, d_out, dh_next, dc, di, df, dg, d_o, n);
}

void gg_gemm_packed(int level, long M, long K, const float *A, long lda, const float *packed, long panel0,
                    long panel1, long N, float *C, long ldc, int accumulate) {
    GG_DISPATCH(level, gg_gemm_packed, M, K, A, lda, packed, panel0, panel1, N, C, ldc, accumulate);
}

long gg_sgemm_scratch_size(long K) { return 32 * K; }

void gg_sgemm_panels(int level, long M, long N, long K, const float *A, long lda, int transA, const float *B, long ldb,
                     int transB, float *C, long ldc, int accumulate, long panel0, long panel1, float *scratch) {
    GG_DISPATCH(level, gg_sgemm_panels, M, N, K, A, lda, transA, B, ldb, transB, C, ldc, accumulate, panel0, panel1, scratch);
}

void gg_adam(int level, float *p, const float *g, float *m, float *v, float *vmax, long n, const gg_adam_args *args) {
    GG_DISPATCH(level, gg_adam, p, g, m, v, vmax, n, args);
}

void gg_sgd(int level, float *p, const float *g, float *buf, long n, const gg_sgd_args *args) {
    GG_DISPATCH(level, gg_sgd, p, g, buf, n, args);
}

double gg_sum(int level, const float *x, long n, int squares) {
#ifdef GG_HAVE_VECTORS
    if (level >= GG_LEVEL_AVX512) return gg_sum_avx512(x, n, squares);
    if (level == GG_LEVEL_AVX2) return gg_sum_avx2(x, n, squares);
#endif
    (void)level; (void)x; (void)n; (void)squares;
    return 0;
}
