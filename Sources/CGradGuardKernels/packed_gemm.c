// A small GEMM for the skinny products of recurrent layers: C = A · op(B) where op(B) is
// packed once into 16-column panels and reused for every time step (OpenBLAS re-packs it
// on each call). The micro-kernel keeps a 6 × 16 block of C in twelve AVX2 registers and
// adds one rank-1 update per k with FMA (the register blocking of Goto & van de Geijn's
// GEMM; 6 × 16 is the usual shape for sixteen 256-bit registers).
#include "CGradGuardKernels.h"
#include <string.h>

long gg_packed_size(long K, long N) { return ((N + 15) / 16) * 16 * K; }

void gg_pack_b_panels(const float *B, long ldb, int transB, long K, long N, long panel0, long panel1, float *packed) {
    for (long p = panel0; p < panel1; p++) {
        float *dst = packed + p * 16 * K;
        const long cols = N - p * 16 < 16 ? N - p * 16 : 16;
        if (transB) {
            // Column j of the panel is row p·16 + j of B: read it contiguously.
            for (long j = 0; j < cols; j++) {
                const float *src = B + (p * 16 + j) * ldb;
                for (long k = 0; k < K; k++) dst[k * 16 + j] = src[k];
            }
            for (long j = cols; j < 16; j++) {
                for (long k = 0; k < K; k++) dst[k * 16 + j] = 0;
            }
        } else {
            for (long k = 0; k < K; k++) {
                const float *src = B + k * ldb + p * 16;
                long j = 0;
                for (; j < cols; j++) dst[k * 16 + j] = src[j];
                for (; j < 16; j++) dst[k * 16 + j] = 0;
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

// One block of `mr` rows (a compile-time constant at every call, so the loops over r
// unroll and the 2·mr accumulators stay in registers) times one 16-column panel.
GG_TARGET __attribute__((always_inline)) static inline void gg_block(const int mr, long K, const float *a, long lda,
                                                                     const float *bp, float *c, long ldc, long cols,
                                                                     int accumulate) {
    __m256 lo[6], hi[6];
    for (int r = 0; r < mr; r++) { lo[r] = _mm256_setzero_ps(); hi[r] = _mm256_setzero_ps(); }
    for (long k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(bp + k * 16), b1 = _mm256_loadu_ps(bp + k * 16 + 8);
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * lda + k);
            lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
        }
    }
    for (int r = 0; r < mr; r++) gg_store_row(c + r * ldc, lo[r], hi[r], cols, accumulate);
}

GG_TARGET void gg_gemm_packed_avx2(long M, long K, const float *A, long lda, const float *packed,
                                   long panel0, long panel1, long N, float *C, long ldc, int accumulate) {
    for (long p = panel0; p < panel1; p++) {
        const float *bp = packed + p * 16 * K;
        long col0 = p * 16, cols = N - col0 < 16 ? N - col0 : 16;
        // Blocks of six rows, the last rows in blocks of at least three where M allows:
        // a one- or two-row block keeps too few FMAs in flight to hide their latency.
        long rem = M % 6, full = M / 6;
        if ((rem == 1 || rem == 2) && full > 0) { full -= 1; rem += 6; }
        long i = 0;
        for (long b = 0; b < full; b++, i += 6) gg_block(6, K, A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, accumulate);
        // rem is 0…5, 7 (as 4 + 3) or 8 (as 4 + 4).
        if (rem >= 7) { gg_block(4, K, A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, accumulate); i += 4; rem -= 4; }
        switch (rem) {
        case 5: gg_block(5, K, A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, accumulate); break;
        case 4: gg_block(4, K, A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, accumulate); break;
        case 3: gg_block(3, K, A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, accumulate); break;
        case 2: gg_block(2, K, A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, accumulate); break;
        case 1: gg_block(1, K, A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, accumulate); break;
        default: break;
        }
    }
}
#else
void gg_gemm_packed_avx2(long M, long K, const float *A, long lda, const float *packed,
                         long panel0, long panel1, long N, float *C, long ldc, int accumulate) {
    (void)M; (void)K; (void)A; (void)lda; (void)packed; (void)panel0; (void)panel1; (void)N; (void)C; (void)ldc; (void)accumulate;
}
#endif
