// im2col and its adjoint col2im for one image's channel group, written once as inline C
// bodies and compiled three times: for the baseline processor and, behind a run-time level,
// with AVX2 or AVX-512 enabled for the auto-vectoriser. In the vector copies
// (`vector_stride2`) the stride-2 gather and scatter-add run eight lanes at a time by hand:
// feature-map rows are short (8 to 64 outputs), below the block sizes the auto-vectoriser picks.
#include "CGradGuardKernels.h"
#include <string.h>

#define GG_INLINE static inline __attribute__((always_inline))

/// Output columns xo whose input column xo·stride + offset lies inside 0..<width: [lo, hi).
GG_INLINE void gg_valid_columns(long offset, long stride, long width, long out_width, long *lo, long *hi) {
    long l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    long last = width - 1 - offset;
    long h = last < 0 ? 0 : last / stride + 1;
    if (h > out_width) h = out_width;
    *lo = l;
    *hi = h > l ? h : l;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define GG_AVX2 __attribute__((target("avx2,fma")))

/// row[2·j] += s[j] for j < n, eight at a time.
GG_AVX2 static inline long gg_add_stride2_avx2(float *row, const float *s, long n) {
    long j = 0;
    const __m256 zero = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(s + j);
        __m256 lo = _mm256_unpacklo_ps(v, zero), hi = _mm256_unpackhi_ps(v, zero);   // [s0 0 s1 0 | s4 0 s5 0], [s2 0 s3 0 | s6 0 s7 0]
        __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20), second = _mm256_permute2f128_ps(lo, hi, 0x31);
        _mm256_storeu_ps(row + 2 * j, _mm256_add_ps(_mm256_loadu_ps(row + 2 * j), first));
        _mm256_storeu_ps(row + 2 * j + 8, _mm256_add_ps(_mm256_loadu_ps(row + 2 * j + 8), second));
    }
    return j;
}
/// d[j] = row[2·j] for j < n, eight at a time (reads row[0 ..< 2·(n rounded down to 8)]).
GG_AVX2 static inline long gg_copy_stride2_avx2(float *d, const float *row, long n) {
    long j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 a = _mm256_loadu_ps(row + 2 * j), b = _mm256_loadu_ps(row + 2 * j + 8);
        __m256 even = _mm256_shuffle_ps(a, b, 0x88);   // [a0 a2 b0 b2 | a4 a6 b4 b6]
        _mm256_storeu_ps(d + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8)));
    }
    return j;
}
#define GG_ADD_STRIDE2(row, s, n) gg_add_stride2_avx2(row, s, n)
#define GG_COPY_STRIDE2(d, row, n) gg_copy_stride2_avx2(d, row, n)
#endif

/// The blocks of eight at xo, xo+8, … with xo + 8 <= result touch only row[.. 2·xo + 16] inside
/// the row (input columns below w − xoff).
GG_INLINE long gg_stride2_limit(long lo, long hi, long w, long xoff) {
    const long room = w - xoff - 16;
    const long cap = room < 0 ? lo : room / 2 + 8;
    long limit = cap < hi ? cap : hi;
    return limit > lo ? limit : lo;
}

GG_INLINE void gg_im2col_body(const float *restrict x, long h, long w, long channels, const gg_window *win,
                              long oh, long ow, float *restrict out, int vector_stride2) {
    const long kh = win->kh, kw = win->kw, sh = win->sh, sw = win->sw, ph = win->ph, pw = win->pw;
    const long dh = win->dh, dw = win->dw, hw = oh * ow;
    for (long ch = 0; ch < channels; ch++) {
        const float *src = x + ch * h * w;
        for (long ki = 0; ki < kh; ki++) {
            for (long kj = 0; kj < kw; kj++) {
                const long xoff = kj * dw - pw;
                long lo, hi;
                gg_valid_columns(xoff, sw, w, ow, &lo, &hi);
                float *restrict d = out + ((ch * kh + ki) * kw + kj) * hw;
                for (long y = 0; y < oh; y++, d += ow) {
                    const long iy = y * sh - ph + ki * dh;
                    if (iy < 0 || iy >= h) {
                        memset(d, 0, (size_t)ow * sizeof(float));
                        continue;
                    }
                    const float *restrict row = src + iy * w + xoff;
                    for (long xo = 0; xo < lo; xo++) d[xo] = 0;
                    if (sw == 1) {
                        for (long xo = lo; xo < hi; xo++) d[xo] = row[xo];
                    } else if (sw == 2) {
                        long xo = lo;
#ifdef GG_COPY_STRIDE2
                        if (vector_stride2) xo += GG_COPY_STRIDE2(d + lo, row + 2 * lo, gg_stride2_limit(lo, hi, w, xoff) - lo);
#endif
                        for (; xo < hi; xo++) d[xo] = row[2 * xo];
                    } else {
                        for (long xo = lo; xo < hi; xo++) d[xo] = row[xo * sw];
                    }
                    for (long xo = hi; xo < ow; xo++) d[xo] = 0;
                }
            }
        }
    }
}


GG_INLINE void gg_col2im_body(const float *restrict cols, float *restrict dx, long h, long w, long channels,
                              const gg_window *win, long oh, long ow, int vector_stride2) {
    const long kh = win->kh, kw = win->kw, sh = win->sh, sw = win->sw, ph = win->ph, pw = win->pw;
    const long dh = win->dh, dw = win->dw, hw = oh * ow;
    for (long ch = 0; ch < channels; ch++) {
        float *dst = dx + ch * h * w;
        for (long ki = 0; ki < kh; ki++) {
            for (long kj = 0; kj < kw; kj++) {
                const long xoff = kj * dw - pw;
                long lo, hi;
                gg_valid_columns(xoff, sw, w, ow, &lo, &hi);
                const float *s = cols + ((ch * kh + ki) * kw + kj) * hw;
                for (long y = 0; y < oh; y++, s += ow) {
                    const long iy = y * sh - ph + ki * dh;
                    if (iy < 0 || iy >= h) continue;
                    float *restrict row = dst + iy * w + xoff;
                    if (sw == 1) {
                        for (long xo = lo; xo < hi; xo++) row[xo] += s[xo];
                    } else if (sw == 2) {
                        long xo = lo;
#ifdef GG_ADD_STRIDE2
                        if (vector_stride2) {
                            // Whole blocks of eight whose sixteen row floats stay inside the row.
                            xo += GG_ADD_STRIDE2(row + 2 * lo, s + lo, gg_stride2_limit(lo, hi, w, xoff) - lo);
                        }
#endif
                        for (; xo < hi; xo++) row[2 * xo] += s[xo];
                    } else {
                        for (long xo = lo; xo < hi; xo++) row[xo * sw] += s[xo];
                    }
                }
            }
        }
    }
}

#if defined(__x86_64__)
#define GG_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
GG_AVX2 static void gg_im2col_avx2(const float *x, long h, long w, long channels, const gg_window *win,
                                   long oh, long ow, float *out) {
    gg_im2col_body(x, h, w, channels, win, oh, ow, out, 1);
}
GG_AVX2 static void gg_col2im_avx2(const float *cols, float *dx, long h, long w, long channels, const gg_window *win,
                                   long oh, long ow) {
    gg_col2im_body(cols, dx, h, w, channels, win, oh, ow, 1);
}
GG_AVX512 static void gg_im2col_avx512(const float *x, long h, long w, long channels, const gg_window *win,
                                       long oh, long ow, float *out) {
    gg_im2col_body(x, h, w, channels, win, oh, ow, out, 1);
}
GG_AVX512 static void gg_col2im_avx512(const float *cols, float *dx, long h, long w, long channels,
                                       const gg_window *win, long oh, long ow) {
    gg_col2im_body(cols, dx, h, w, channels, win, oh, ow, 1);
}
#endif

void gg_im2col(const float *x, long h, long w, long channels, const gg_window *win, long oh, long ow, float *out,
               int level) {
#if defined(__x86_64__)
    if (level >= GG_LEVEL_AVX512) { gg_im2col_avx512(x, h, w, channels, win, oh, ow, out); return; }
    if (level == GG_LEVEL_AVX2) { gg_im2col_avx2(x, h, w, channels, win, oh, ow, out); return; }
#endif
    (void)level;
    gg_im2col_body(x, h, w, channels, win, oh, ow, out, 0);
}

void gg_col2im(const float *cols, float *dx, long h, long w, long channels, const gg_window *win, long oh, long ow,
               int level) {
#if defined(__x86_64__)
    if (level >= GG_LEVEL_AVX512) { gg_col2im_avx512(cols, dx, h, w, channels, win, oh, ow); return; }
    if (level == GG_LEVEL_AVX2) { gg_col2im_avx2(cols, dx, h, w, channels, win, oh, ow); return; }
#endif
    (void)level;
    gg_col2im_body(cols, dx, h, w, channels, win, oh, ow, 0);
}
