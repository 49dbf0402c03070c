// A small GEMM for the skinny products of recurrent layers: C = A · op(B) where op(B) is
// packed once into 16-column panels and reused for every time step (OpenBLAS re-packs it
// on each call). The micro-kernel keeps a 6 × 16 block of C in twelve AVX2 registers and
// adds one rank-1 update per k with FMA (the register blocking of Goto & van de Geijn's
// GEMM; 6 × 16 is the usual shape for sixteen 256-bit registers).
#include "CGradGuardKernels.h"
#include <string.h>

long gg_packed_size(long K, long N) { return ((N + 15) / 16) * 16 * K; }

void gg_pack_b(const float *B, long ldb, int transB, long K, long N, float *packed) {
    long panels = (N + 15) / 16;
    for (long p = 0; p < panels; p++) {
        float *dst = packed + p * 16 * K;
        for (long k = 0; k < K; k++) {
            for (long j = 0; j < 16; j++) {
                long col = p * 16 + j;
                float v = 0;
                if (col < N) v = transB ? B[col * ldb + k] : B[k * ldb + col];
                dst[k * 16 + j] = v;
            }
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define GG_TARGET __attribute__((target("avx2,fma")))

// Stores (or adds) a row of 16 accumulated values, only the first `cols` of them.
GG_TARGET static inline void gg_store_row(float *c, __m256 lo, __m256 hi, long cols, int accumulate) {
    if (cols == 16) {
        if (accumulate) {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(c));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + 8));
        }
        _mm256_storeu_ps(c, lo);
        _mm256_storeu_ps(c + 8, hi);
        return;
    }
    float tmp[16];
    _mm256_storeu_ps(tmp, lo);
    _mm256_storeu_ps(tmp + 8, hi);
    for (long j = 0; j < cols; j++) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
}

GG_TARGET void gg_gemm_packed_avx2(long M, long K, const float *A, long lda, const float *packed,
                                   long panel0, long panel1, long N, float *C, long ldc, int accumulate) {
    for (long p = panel0; p < panel1; p++) {
        const float *bp = packed + p * 16 * K;
        long col0 = p * 16, cols = N - col0 < 16 ? N - col0 : 16;
        long i = 0;
        for (; i + 6 <= M; i += 6) {
            __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
            __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
            __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
            const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda, *a4 = a3 + lda, *a5 = a4 + lda;
            for (long k = 0; k < K; k++) {
                __m256 b0 = _mm256_loadu_ps(bp + k * 16), b1 = _mm256_loadu_ps(bp + k * 16 + 8);
                __m256 a;
                a = _mm256_broadcast_ss(a0 + k); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
                a = _mm256_broadcast_ss(a1 + k); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
                a = _mm256_broadcast_ss(a2 + k); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
                a = _mm256_broadcast_ss(a3 + k); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
                a = _mm256_broadcast_ss(a4 + k); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
                a = _mm256_broadcast_ss(a5 + k); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
            }
            float *c = C + i * ldc + col0;
            gg_store_row(c, c00, c01, cols, accumulate);
            gg_store_row(c + ldc, c10, c11, cols, accumulate);
            gg_store_row(c + 2 * ldc, c20, c21, cols, accumulate);
            gg_store_row(c + 3 * ldc, c30, c31, cols, accumulate);
            gg_store_row(c + 4 * ldc, c40, c41, cols, accumulate);
            gg_store_row(c + 5 * ldc, c50, c51, cols, accumulate);
        }
        if (i + 4 <= M) {   // a tail of four or five rows: four at once
            __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
            __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
            const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
            for (long k = 0; k < K; k++) {
                __m256 b0 = _mm256_loadu_ps(bp + k * 16), b1 = _mm256_loadu_ps(bp + k * 16 + 8);
                __m256 a;
                a = _mm256_broadcast_ss(a0 + k); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
                a = _mm256_broadcast_ss(a1 + k); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
                a = _mm256_broadcast_ss(a2 + k); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
                a = _mm256_broadcast_ss(a3 + k); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
            }
            float *c = C + i * ldc + col0;
            gg_store_row(c, c00, c01, cols, accumulate);
            gg_store_row(c + ldc, c10, c11, cols, accumulate);
            gg_store_row(c + 2 * ldc, c20, c21, cols, accumulate);
            gg_store_row(c + 3 * ldc, c30, c31, cols, accumulate);
            i += 4;
        }
        if (i + 2 <= M) {   // then two at once
            __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
            const float *a0 = A + i * lda, *a1 = a0 + lda;
            for (long k = 0; k < K; k++) {
                __m256 b0 = _mm256_loadu_ps(bp + k * 16), b1 = _mm256_loadu_ps(bp + k * 16 + 8);
                __m256 a;
                a = _mm256_broadcast_ss(a0 + k); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
                a = _mm256_broadcast_ss(a1 + k); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
            }
            float *c = C + i * ldc + col0;
            gg_store_row(c, c00, c01, cols, accumulate);
            gg_store_row(c + ldc, c10, c11, cols, accumulate);
            i += 2;
        }
        for (; i < M; i++) {   // a last single row
            __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
            const float *a0 = A + i * lda;
            for (long k = 0; k < K; k++) {
                __m256 a = _mm256_broadcast_ss(a0 + k);
                c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(bp + k * 16), c0);
                c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(bp + k * 16 + 8), c1);
            }
            gg_store_row(C + i * ldc + col0, c0, c1, cols, accumulate);
        }
    }
}
#else
void gg_gemm_packed_avx2(long M, long K, const float *A, long lda, const float *packed,
                         long panel0, long panel1, long N, float *C, long ldc, int accumulate) {
    (void)M; (void)K; (void)A; (void)lda; (void)packed; (void)panel0; (void)panel1; (void)N; (void)C; (void)ldc; (void)accumulate;
}
#endif
