// AVX2/FMA versions of the vectorised exp, sigmoid and tanh of VectorMath.swift, compiled
// per function with target attributes so the package needs no global compiler flags;
// callers check gg_has_avx2_fma() first. Same algorithms as the Swift versions:
// exp — Cody–Waite reduction and the degree-6 polynomial of Cephes expf (S. L. Moshier);
// tanh — Cephes tanhf polynomial below |x| = 0.625, 1 − 2/(e^{2|x|}+1) above.
#include "CGradGuardKernels.h"

// One CPU-feature reader for the whole package (blas_loader.c): CPUID with the OS state checked.
int gg_has_avx2_fma(void) { return (gg_cpu_features() & GG_CPU_AVX2_FMA) != 0; }

#if defined(__x86_64__)
#include <immintrin.h>


#define GG_TARGET __attribute__((target("avx2,fma")))

GG_TARGET static inline __m256 gg_exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283f), lo = _mm256_set1_ps(-87.33654f);
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);   // NaN lanes become lo here, restored below
    __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

GG_TARGET static inline __m256 gg_sigmoid8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = gg_exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

GG_TARGET static inline __m256 gg_tanh8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(signmask, x);
    __m256 e = gg_exp8(_mm256_mul_ps(two, ax));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)));
    big = _mm256_blendv_ps(big, one, _mm256_cmp_ps(ax, _mm256_set1_ps(9.0f), _CMP_GT_OQ));
    big = _mm256_or_ps(big, _mm256_and_ps(x, signmask));   // copy the sign of x
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, z), p, x);
    __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

#define GG_LOOP(NAME, F)                                                        \
    GG_TARGET void NAME(const float *x, float *y, long n) {                     \
        long i = 0;                                                             \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, F(_mm256_loadu_ps(x + i))); \
        if (i < n) {                                                            \
            float in[8] = {0}, out[8];                                          \
            for (long k = 0; k < n - i; k++) in[k] = x[i + k];                  \
            _mm256_storeu_ps(out, F(_mm256_loadu_ps(in)));                      \
            for (long k = 0; k < n - i; k++) y[i + k] = out[k];                 \
        }                                                                       \
    }

GG_LOOP(gg_exp_avx2, gg_exp8)
GG_LOOP(gg_sigmoid_avx2, gg_sigmoid8)
GG_LOOP(gg_tanh_avx2, gg_tanh8)

// One batch row of an LSTM step in one pass (PyTorch's equations, see Recurrent.swift).
GG_TARGET void gg_lstm_forward_avx2(float *ig, float *fg, float *gg, float *og, const float *c_prev, float *c_next,
                                    float *tanh_c, float *h, long n) {
    for (long k = 0; k + 8 <= n; k += 8) {
        __m256 i = gg_sigmoid8(_mm256_loadu_ps(ig + k)), f = gg_sigmoid8(_mm256_loadu_ps(fg + k));
        __m256 g = gg_tanh8(_mm256_loadu_ps(gg + k)), o = gg_sigmoid8(_mm256_loadu_ps(og + k));
        _mm256_storeu_ps(ig + k, i);
        _mm256_storeu_ps(fg + k, f);
        _mm256_storeu_ps(gg + k, g);
        _mm256_storeu_ps(og + k, o);
        __m256 c = _mm256_fmadd_ps(f, _mm256_loadu_ps(c_prev + k), _mm256_mul_ps(i, g));
        _mm256_storeu_ps(c_next + k, c);
        __m256 tc = gg_tanh8(c);
        _mm256_storeu_ps(tanh_c + k, tc);
        _mm256_storeu_ps(h + k, _mm256_mul_ps(o, tc));
    }
}

GG_TARGET void gg_lstm_backward_avx2(const float *ai, const float *af, const float *ag, const float *ao, const float *tanh_c,
                                     const float *c_prev, const float *d_out, const float *dh_next, float *dc,
                                     float *di, float *df, float *dg, float *d_o, long n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (long k = 0; k + 8 <= n; k += 8) {
        __m256 i = _mm256_loadu_ps(ai + k), f = _mm256_loadu_ps(af + k), g = _mm256_loadu_ps(ag + k), o = _mm256_loadu_ps(ao + k);
        __m256 tc = _mm256_loadu_ps(tanh_c + k);
        __m256 dh = _mm256_add_ps(_mm256_loadu_ps(d_out + k), _mm256_loadu_ps(dh_next + k));
        // dc = dc_next + dh · o · (1 − tanh²c)
        __m256 c = _mm256_fmadd_ps(_mm256_mul_ps(dh, o), _mm256_fnmadd_ps(tc, tc, one), _mm256_loadu_ps(dc + k));
        _mm256_storeu_ps(di + k, _mm256_mul_ps(_mm256_mul_ps(c, g), _mm256_mul_ps(i, _mm256_sub_ps(one, i))));
        _mm256_storeu_ps(df + k, _mm256_mul_ps(_mm256_mul_ps(c, _mm256_loadu_ps(c_prev + k)), _mm256_mul_ps(f, _mm256_sub_ps(one, f))));
        _mm256_storeu_ps(dg + k, _mm256_mul_ps(_mm256_mul_ps(c, i), _mm256_fnmadd_ps(g, g, one)));
        _mm256_storeu_ps(d_o + k, _mm256_mul_ps(_mm256_mul_ps(dh, tc), _mm256_mul_ps(o, _mm256_sub_ps(one, o))));
        _mm256_storeu_ps(dc + k, _mm256_mul_ps(c, f));
    }
}

#else
void gg_exp_avx2(const float *x, float *y, long n) { (void)x; (void)y; (void)n; }
void gg_sigmoid_avx2(const float *x, float *y, long n) { (void)x; (void)y; (void)n; }
void gg_tanh_avx2(const float *x, float *y, long n) { (void)x; (void)y; (void)n; }
void gg_lstm_forward_avx2(float *ig, float *fg, float *gg, float *og, const float *c_prev, float *c_next,
                          float *tanh_c, float *h, long n) {
    (void)ig; (void)fg; (void)gg; (void)og; (void)c_prev; (void)c_next; (void)tanh_c; (void)h; (void)n;
}
void gg_lstm_backward_avx2(const float *ai, const float *af, const float *ag, const float *ao, const float *tanh_c,
                           const float *c_prev, const float *d_out, const float *dh_next, float *dc,
                           float *di, float *df, float *dg, float *d_o, long n) {
    (void)ai; (void)af; (void)ag; (void)ao; (void)tanh_c; (void)c_prev; (void)d_out; (void)dh_next; (void)dc;
    (void)di; (void)df; (void)dg; (void)d_o; (void)n;
}
#endif
