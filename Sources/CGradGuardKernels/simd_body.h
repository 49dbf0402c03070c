// The vector kernels, written once over clang/GCC generic vectors of W floats and compiled
// once per instruction set by simd_kernels.c (W = 8 with AVX2 + FMA, W = 16 with AVX-512).
// The includer defines W, GG_TARGET (the function target attribute), SFX (the name suffix)
// and MRMAX / NPMAX (the GEMM register block: rows × 16-column panels).
//
// Algorithms (the same as the portable Swift versions in VectorMath.swift):
// exp — Cody–Waite reduction and the degree-6 polynomial of Cephes expf (S. L. Moshier);
// tanh — Cephes tanhf polynomial below |x| = 0.625, 1 − 2/(e^{2|x|}+1) above;
// GEMM — a register block of C kept in vector registers, one rank-1 update per k (the
// micro-kernel of Goto & van de Geijn's GEMM, with B packed into 16-column panels).

#define GG_CAT2(a, b) a##_##b
#define GG_CAT(a, b) GG_CAT2(a, b)
#define NAME(f) GG_CAT(f, SFX)
#define VF NAME(gg_vf)
#define VI NAME(gg_vi)
#define FN static inline __attribute__((always_inline)) GG_TARGET

typedef float VF __attribute__((ext_vector_type(W)));
typedef int VI __attribute__((ext_vector_type(W)));

FN VF NAME(ld)(const float *p) { VF v; __builtin_memcpy(&v, p, sizeof v); return v; }
FN void NAME(st)(float *p, VF v) { __builtin_memcpy(p, &v, sizeof v); }
/// The first `c` (1…W) floats at p, zeros after.
FN VF NAME(ldc)(const float *p, long c) {
    if (c >= W) return NAME(ld)(p);
    VF v = (VF)0.0f;
    for (long i = 0; i < c; i++) v[i] = p[i];
    return v;
}
FN void NAME(stc)(float *p, VF v, long c) {
    if (c >= W) { NAME(st)(p, v); return; }
    for (long i = 0; i < c; i++) p[i] = v[i];
}
#define LD NAME(ld)
#define ST NAME(st)
#define LDC NAME(ldc)
#define STC NAME(stc)
#define FMA(a, b, c) __builtin_elementwise_fma(a, b, c)
#define SPLAT(x) ((VF)(float)(x))
/// Loops over register blocks unroll fully, so that the blocks stay in registers.
#define UNROLL _Pragma("clang loop unroll(full)")

FN VF NAME(vexp)(VF x) {
    const VF hi = SPLAT(88.72283f), lo = SPLAT(-87.33654f), magic = SPLAT(12582912.0f);
    VF xc = x >= lo ? x : lo;   // NaN lanes become lo here and are restored below
    xc = xc > hi ? hi : xc;
    // Round x·log₂e to an integer by adding 1.5·2²³: the sum's low mantissa bits hold n.
    VF t = FMA(xc, SPLAT(1.44269504088896341f), magic);
    VF n = t - magic;
    VF r = FMA(-n, SPLAT(0.693359375f), xc);
    r = FMA(-n, SPLAT(-2.12194440e-4f), r);
    VF p = SPLAT(1.9875691500e-4f);
    p = FMA(p, r, SPLAT(1.3981999507e-3f));
    p = FMA(p, r, SPLAT(8.3334519073e-3f));
    p = FMA(p, r, SPLAT(4.1665795894e-2f));
    p = FMA(p, r, SPLAT(1.6666665459e-1f));
    p = FMA(p, r, SPLAT(5.0000001201e-1f));
    p = FMA(p, r * r, r + 1.0f);
    // 2^n in two halves so that n = 128 does not overflow the exponent field.
    VI ni = (VI)t - (VI)magic;
    VI h = ni >> 1;
    VF s1 = (VF)((h + 127) << 23), s2 = (VF)((ni - h + 127) << 23);
    VF y = p * s1 * s2;
    y = x > hi ? SPLAT(__builtin_inff()) : y;
    y = x < lo ? SPLAT(0.0f) : y;
    return x != x ? x : y;
}

FN VF NAME(vsigmoid)(VF x) { return 1.0f / (1.0f + NAME(vexp)(-x)); }

FN VF NAME(vtanh)(VF x) {
    VF ax = (VF)((VI)x & 0x7fffffff);
    VF e = NAME(vexp)(2.0f * ax);
    VF big = 1.0f - 2.0f / (e + 1.0f);
    big = ax > 9.0f ? SPLAT(1.0f) : big;
    big = (VF)((VI)big | ((VI)x & (int)0x80000000));   // the sign of x
    VF z = x * x;
    VF p = SPLAT(-5.70498872745e-3f);
    p = FMA(p, z, SPLAT(2.06390887954e-2f));
    p = FMA(p, z, SPLAT(-5.37397155531e-2f));
    p = FMA(p, z, SPLAT(1.33314422036e-1f));
    p = FMA(p, z, SPLAT(-3.33332819422e-1f));
    VF small = FMA(x * z, p, x);
    VF y = ax < 0.625f ? small : big;
    return x != x ? x : y;
}

#define GG_MAP(FNAME, F)                                                  \
    GG_TARGET void NAME(FNAME)(const float *x, float *y, long n) {        \
        for (long i = 0; i < n; i += W) {                                 \
            long c = n - i;                                               \
            STC(y + i, F(LDC(x + i, c)), c);                              \
        }                                                                 \
    }
GG_MAP(gg_exp, NAME(vexp))
GG_MAP(gg_sigmoid, NAME(vsigmoid))
GG_MAP(gg_tanh, NAME(vtanh))

// One batch row of an LSTM step in one pass (PyTorch's equations, see Recurrent.swift).
GG_TARGET void NAME(gg_lstm_forward)(float *ig, float *fg, float *gg, float *og, const float *c_prev, float *c_next,
                                     float *tanh_c, float *h, long n) {
    for (long k = 0; k < n; k += W) {
        long c = n - k;
        VF i = NAME(vsigmoid)(LDC(ig + k, c)), f = NAME(vsigmoid)(LDC(fg + k, c));
        VF g = NAME(vtanh)(LDC(gg + k, c)), o = NAME(vsigmoid)(LDC(og + k, c));
        STC(ig + k, i, c);
        STC(fg + k, f, c);
        STC(gg + k, g, c);
        STC(og + k, o, c);
        VF cn = FMA(f, LDC(c_prev + k, c), i * g);
        STC(c_next + k, cn, c);
        VF tc = NAME(vtanh)(cn);
        STC(tanh_c + k, tc, c);
        STC(h + k, o * tc, c);
    }
}

GG_TARGET void NAME(gg_lstm_backward)(const float *ai, const float *af, const float *ag, const float *ao,
                                      const float *tanh_c, const float *c_prev, const float *d_out,
                                      const float *dh_next, float *dc, float *di, float *df, float *dg, float *d_o,
                                      long n) {
    for (long k = 0; k < n; k += W) {
        long w = n - k;
        VF i = LDC(ai + k, w), f = LDC(af + k, w), g = LDC(ag + k, w), o = LDC(ao + k, w);
        VF tc = LDC(tanh_c + k, w);
        VF dh = LDC(d_out + k, w) + LDC(dh_next + k, w);
        // dc = dc_next + dh · o · (1 − tanh²c)
        VF c = FMA(dh * o, FMA(-tc, tc, SPLAT(1.0f)), LDC(dc + k, w));
        STC(di + k, (c * g) * (i * (1.0f - i)), w);
        STC(df + k, (c * LDC(c_prev + k, w)) * (f * (1.0f - f)), w);
        STC(dg + k, (c * i) * FMA(-g, g, SPLAT(1.0f)), w);
        STC(d_o + k, (dh * tc) * (o * (1.0f - o)), w);
        STC(dc + k, c * f, w);
    }
}

// MARK: packed GEMM

#define NV (16 / W)   // vectors per 16-column panel

/// C[mr × up to np·16] (=|+=) op(A)[mr × K] · np packed panels `pstride` floats apart (rows
/// 0..<K of each). op(A) row r, column k is a[r·lda + k], or a[k·lda + r] with `ta` (A
/// transposed: the mr values of one k are then adjacent). `mr`, `np` and `ta` are constants
/// at every call, so the loops unroll and the accumulators stay in registers; `cols` is the
/// number of valid columns of the block.
FN void NAME(gemm_block)(const int mr, const int np, const int ta, long K, long pstride, long bk, const float *a,
                         long lda, const float *bp, float *c, long ldc, long cols, int accumulate) {
    VF acc[MRMAX][NPMAX * NV];
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int j = 0; j < np * NV; j++) acc[r][j] = SPLAT(0.0f);
    for (long k = 0; k < K; k++) {
        VF b[NPMAX * NV];
        UNROLL for (int q = 0; q < np; q++)
            UNROLL for (int v = 0; v < NV; v++) b[q * NV + v] = LD(bp + q * pstride + k * bk + v * W);
        const float *ak = ta ? a + k * lda : a + k;
        UNROLL for (int r = 0; r < mr; r++) {
            VF av = SPLAT(ta ? ak[r] : ak[r * lda]);
            UNROLL for (int j = 0; j < np * NV; j++) acc[r][j] = FMA(av, b[j], acc[r][j]);
        }
    }
    UNROLL for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        UNROLL for (int j = 0; j < np * NV; j++) {
            long left = cols - j * W;
            if (left <= 0) break;
            VF out = acc[r][j];
            if (accumulate) out += LDC(row + j * W, left);
            STC(row + j * W, out, left);
        }
    }
}

#define GG_ROWS_CASE(R, NP, TA)                                                                          \
    case R:                                                                                              \
        NAME(gemm_block)(R, NP, TA, K, pstride, bk, TA ? A + i : A + i * lda, lda, bp, C + i * ldc + col0, ldc, cols, \
                         accumulate);                                                                    \
        break;
#if MRMAX > 6
#define GG_ROWS_SWITCH(NP, TA)                                                                           \
    switch (mr) {                                                                                        \
    GG_ROWS_CASE(1, NP, TA) GG_ROWS_CASE(2, NP, TA) GG_ROWS_CASE(3, NP, TA) GG_ROWS_CASE(4, NP, TA)      \
    GG_ROWS_CASE(5, NP, TA) GG_ROWS_CASE(6, NP, TA) GG_ROWS_CASE(7, NP, TA) GG_ROWS_CASE(8, NP, TA)      \
    GG_ROWS_CASE(9, NP, TA) GG_ROWS_CASE(10, NP, TA) GG_ROWS_CASE(11, NP, TA) GG_ROWS_CASE(12, NP, TA)   \
    default: break;                                                                                      \
    }
#else
#define GG_ROWS_SWITCH(NP, TA)                                                                           \
    switch (mr) {                                                                                        \
    GG_ROWS_CASE(1, NP, TA) GG_ROWS_CASE(2, NP, TA) GG_ROWS_CASE(3, NP, TA) GG_ROWS_CASE(4, NP, TA)      \
    GG_ROWS_CASE(5, NP, TA) GG_ROWS_CASE(6, NP, TA)                                                      \
    default: break;                                                                                      \
    }
#endif

/// One block of `mr` (1…MRMAX) rows from row i with `np` (1 or NPMAX) panels.
GG_TARGET static void NAME(gemm_rows)(int mr, int np, int ta, long K, long pstride, long bk, const float *A, long lda,
                                      long i, const float *bp, float *C, long ldc, long col0, long cols, int accumulate) {
    if (ta) {
        if (np == NPMAX) { GG_ROWS_SWITCH(NPMAX, 1) }
#if NPMAX > 1
        else { GG_ROWS_SWITCH(1, 1) }
#endif
    } else {
        if (np == NPMAX) { GG_ROWS_SWITCH(NPMAX, 0) }
#if NPMAX > 1
        else { GG_ROWS_SWITCH(1, 0) }
#endif
    }
}

/// Every row of C against `np` packed panels at bp (columns col0 ..< col0 + cols). No K
/// blocking: slices of 128–512 rows of K measured 5–10 % slower on the shapes here.
FN void NAME(gemm_all_rows)(long M, long K, const float *A, long lda, int ta, int np, const float *bp, long pstride,
                            long bk, float *C, long ldc, long col0, long cols, int accumulate) {
    // Blocks of MRMAX rows; a short last block is merged with the one before and the two
    // split evenly, since a block of one or two rows keeps too few FMAs in flight.
    long full = M / MRMAX, rem = M % MRMAX, i = 0;
    if (rem > 0 && rem < MRMAX / 2 && full > 0) { full -= 1; rem += MRMAX; }
    for (long r = 0; r < full; r++, i += MRMAX)
        NAME(gemm_rows)(MRMAX, np, ta, K, pstride, bk, A, lda, i, bp, C, ldc, col0, cols, accumulate);
    if (rem > MRMAX) {
        const int first = (int)(rem + 1) / 2;
        NAME(gemm_rows)(first, np, ta, K, pstride, bk, A, lda, i, bp, C, ldc, col0, cols, accumulate);
        i += first;
        rem -= first;
    }
    if (rem > 0) NAME(gemm_rows)((int)rem, np, ta, K, pstride, bk, A, lda, i, bp, C, ldc, col0, cols, accumulate);
}

GG_TARGET void NAME(gg_gemm_packed)(long M, long K, const float *A, long lda, const float *packed, long panel0,
                                    long panel1, long N, float *C, long ldc, int accumulate) {
    for (long p = panel0; p < panel1; p += NPMAX) {
        const int np = panel1 - p < NPMAX ? (int)(panel1 - p) : NPMAX;
        const long col0 = p * 16, cols = N - col0 < np * 16 ? N - col0 : np * 16;
        NAME(gemm_all_rows)(M, K, A, lda, 0, np, packed + p * 16 * K, 16 * K, 16, C, ldc, col0, cols, accumulate);
    }
}

typedef float NAME(gg_v8) __attribute__((ext_vector_type(8)));
#define V8 NAME(gg_v8)
#define SHUF __builtin_shufflevector

/// Packs the panels [panel0, panel1) of op(B) one after another into `out`, as
/// gg_pack_b_panels_to; Bᵀ by 8 × 8 register transposes (unpack, shuffle, lane swap) where
/// whole blocks fit (a 128 × 256 × 256 Bᵀ product went from 101 to 110 GFLOP/s single-thread
/// against the element loop).
FN void NAME(pack_panels)(const float *B, long ldb, int transB, long K, long N, long panel0, long panel1, float *out) {
    if (!transB) {
        gg_pack_b_panels_to(B, ldb, transB, K, N, panel0, panel1, out);
        return;
    }
    for (long p = panel0; p < panel1; p++) {
        float *dst = out + (p - panel0) * 16 * K;
        const long cols = N - p * 16 < 16 ? N - p * 16 : 16;
        if (cols < 16) {
            gg_pack_b_panels_to(B, ldb, transB, K, N, p, p + 1, dst);
            continue;
        }
        long k0 = 0;
        for (; k0 + 8 <= K; k0 += 8) {
            for (int half = 0; half < 2; half++) {
                const float *src = B + (p * 16 + half * 8) * ldb + k0;
                V8 r[8];
                for (int j = 0; j < 8; j++) __builtin_memcpy(&r[j], src + j * ldb, sizeof(V8));
                V8 t0 = SHUF(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13), t1 = SHUF(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);
                V8 t2 = SHUF(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13), t3 = SHUF(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);
                V8 t4 = SHUF(r[4], r[5], 0, 8, 1, 9, 4, 12, 5, 13), t5 = SHUF(r[4], r[5], 2, 10, 3, 11, 6, 14, 7, 15);
                V8 t6 = SHUF(r[6], r[7], 0, 8, 1, 9, 4, 12, 5, 13), t7 = SHUF(r[6], r[7], 2, 10, 3, 11, 6, 14, 7, 15);
                V8 u0 = SHUF(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13), u1 = SHUF(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
                V8 u2 = SHUF(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13), u3 = SHUF(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
                V8 u4 = SHUF(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13), u5 = SHUF(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
                V8 u6 = SHUF(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13), u7 = SHUF(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
                V8 o[8] = {SHUF(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11), SHUF(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11),
                           SHUF(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11), SHUF(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11),
                           SHUF(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15), SHUF(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15),
                           SHUF(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15), SHUF(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15)};
                for (int k = 0; k < 8; k++) __builtin_memcpy(dst + (k0 + k) * 16 + half * 8, &o[k], sizeof(V8));
            }
        }
        for (; k0 < K; k0++)
            for (long j = 0; j < 16; j++) dst[k0 * 16 + j] = B[(p * 16 + j) * ldb + k0];
    }
}

GG_TARGET void NAME(gg_sgemm_panels)(long M, long N, long K, const float *A, long lda, int transA, const float *B,
                                     long ldb, int transB, float *C, long ldc, int accumulate, long panel0, long panel1,
                                     float *scratch) {
    for (long p = panel0; p < panel1; p += NPMAX) {
        const int np = panel1 - p < NPMAX ? (int)(panel1 - p) : NPMAX;
        const long col0 = p * 16, cols = N - col0 < np * 16 ? N - col0 : np * 16;
#if NPMAX > 1
        // A pair of whole panels of a row-major B is two cache lines per k: read in place when
        // few row blocks reuse it, which saves the packing copy (a convolution's columns:
        // 16–128 output channels × K ≤ 1152 × 256–16384 positions ran 78–107 → 101–114
        // GFLOP/s single-thread). With many row blocks, or Aᵀ, the packed copy is faster.
        if (!transB && !transA && M <= 256 && cols == np * 16) {
            NAME(gemm_all_rows)(M, K, A, lda, 0, np, B + col0, 16, ldb, C, ldc, col0, cols, accumulate);
            continue;
        }
#endif
        NAME(pack_panels)(B, ldb, transB, K, N, p, p + np, scratch);
        NAME(gemm_all_rows)(M, K, A, lda, transA, np, scratch, 16 * K, 16, C, ldc, col0, cols, accumulate);
    }
}

// MARK: optimizers and reductions

GG_TARGET void NAME(gg_adam)(float *p, const float *g, float *m, float *v, float *vmax, long n, const gg_adam_args *a) {
    for (long k = 0; k < n; k += W) {
        long c = n - k;
        VF gr = LDC(g + k, c), pr = LDC(p + k, c), mr = LDC(m + k, c), vr = LDC(v + k, c);
        if (a->decoupled) pr = pr * a->decay; else gr = gr + a->weight_decay * pr;
        mr = mr + a->c1 * (gr - mr);
        vr = a->beta2 * vr + a->c2 * gr * gr;
        VF second = vr;
        if (vmax) {
            second = __builtin_elementwise_max(LDC(vmax + k, c), vr);
            STC(vmax + k, second, c);
        }
        pr = pr - a->step_size * mr / (__builtin_elementwise_sqrt(second) / a->bc2_sqrt + a->eps);
        STC(m + k, mr, c);
        STC(v + k, vr, c);
        STC(p + k, pr, c);
    }
}

GG_TARGET void NAME(gg_sgd)(float *p, const float *g, float *buf, long n, const gg_sgd_args *a) {
    for (long k = 0; k < n; k += W) {
        long c = n - k;
        VF pr = LDC(p + k, c);
        VF gr = LDC(g + k, c) + a->weight_decay * pr;
        if (!buf) {
            STC(p + k, pr - a->lr * gr, c);
            continue;
        }
        VF b = a->first ? gr : a->momentum * LDC(buf + k, c) + (1.0f - a->dampening) * gr;
        STC(buf + k, b, c);
        STC(p + k, pr - a->lr * (a->nesterov ? gr + a->momentum * b : b), c);
    }
}

/// Σ x (squares = 0) or Σ x² (squares = 1): float lanes over blocks of 4096 values, the
/// blocks added in double (so the error does not grow with n).
GG_TARGET double NAME(gg_sum)(const float *x, long n, int squares) {
    double s = 0;
    for (long start = 0; start < n; start += 4096) {
        const long end = n - start > 4096 ? start + 4096 : n;
        VF acc0 = SPLAT(0.0f), acc1 = SPLAT(0.0f);
        long k = start;
        for (; k + 2 * W <= end; k += 2 * W) {
            VF a = LD(x + k), b = LD(x + k + W);
            if (squares) { acc0 = FMA(a, a, acc0); acc1 = FMA(b, b, acc1); } else { acc0 += a; acc1 += b; }
        }
        for (; k < end; k += W) {
            VF a = LDC(x + k, end - k);
            if (squares) acc0 = FMA(a, a, acc0); else acc0 += a;
        }
        VF acc = acc0 + acc1;
        for (int i = 0; i < W; i++) s += acc[i];
    }
    return s;
}

#undef GG_MAP
#undef V8
#undef SHUF
#undef GG_ROWS_CASE
#undef GG_ROWS_SWITCH
#undef NV
#undef LD
#undef ST
#undef LDC
#undef STC
#undef FMA
#undef SPLAT
#undef UNROLL
#undef FN
#undef VF
#undef VI
#undef NAME
#undef GG_CAT
#undef GG_CAT2
