// A small GEMM for the skinny products of recurrent layers: C = A · op(B) where op(B) is
// packed once into 16-column panels and reused for every time step (OpenBLAS re-packs it
// on each call). The packing is here; the micro-kernels are in simd_body.h (6 × 16 blocks
// of C in twelve AVX2 registers, 12 × 32 in twenty-four AVX-512 registers).
#include "CGradGuardKernels.h"
#include <string.h>

long gg_packed_size(long K, long N) { return ((N + 15) / 16) * 16 * K; }

void gg_pack_b_panels(const float *B, long ldb, int transB, long K, long N, long panel0, long panel1, float *packed) {
    gg_pack_b_panels_to(B, ldb, transB, K, N, panel0, panel1, packed + panel0 * 16 * K);
}

void gg_pack_b_panels_to(const float *B, long ldb, int transB, long K, long N, long panel0, long panel1, float *out) {
    for (long p = panel0; p < panel1; p++) {
        float *dst = out + (p - panel0) * 16 * K;
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
