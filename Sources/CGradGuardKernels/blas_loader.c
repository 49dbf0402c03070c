// OpenBLAS loaded at first use, after its core type is chosen from CPUID features.
//
// Debian's OpenBLAS (a DYNAMIC_ARCH build) picks its kernels from a list of CPU models when
// it is loaded; a model it does not know gets the generic SSE3 ("Prescott") kernels, 4–8×
// slower on an AVX-512 Xeon. It reads OPENBLAS_CORETYPE only while loading, so the library
// is not linked but opened here, once, after setting that variable from the CPU's features
// when the user has not set it.
#include "CGradGuardKernels.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*threads_fn)(int);
typedef char *(*corename_fn)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_fn sgemm_ptr;
static threads_fn threads_ptr;
static corename_fn corename_ptr;
static const char *core_source = "OpenBLAS's own detection";
static char load_error[512];

int gg_cpu_features(void) {
    int features = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int osxsave = (ecx >> 27) & 1, fma = (ecx >> 12) & 1, avx = (ecx >> 28) & 1;
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    int ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xE6) == 0xE6;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    if (avx && ymm) features |= GG_CPU_AVX;
    if (avx && ymm && fma && ((ebx >> 5) & 1)) features |= GG_CPU_AVX2_FMA;
    // AVX-512 F, DQ, BW and VL (Skylake-SP and later; Zen 4) with the OS saving ZMM state.
    if (zmm && ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1)) features |= GG_CPU_AVX512;
    unsigned max, vb, vc, vd;
    __cpuid(0, max, vb, vc, vd);
    if (vb == 0x68747541) features |= GG_CPU_AMD;   // "AuthenticAMD"
#endif
    return features;
}

// AMD's parts are left to OpenBLAS, which detects them by features (measured on a Zen 4
// EPYC, one thread, sgemm 1024³: its own choice "Cooperlake" 100, Zen 109, SkylakeX 103,
// Haswell 98 GFLOP/s — the same within noise). Intel parts newer than the library's model
// list fall back to SSE3, so those get the family their features allow.
const char *gg_blas_core_for_features(int features) {
    if (features & GG_CPU_AMD) return NULL;
    if (features & GG_CPU_AVX512) return "SkylakeX";
    if (features & GG_CPU_AVX2_FMA) return "Haswell";
    return NULL;
}

static void load(void) {
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user && *user) {
        core_source = "OPENBLAS_CORETYPE in the environment";
    } else {
        const char *core = gg_blas_core_for_features(gg_cpu_features());
        if (core) {
            setenv("OPENBLAS_CORETYPE", core, 0);   // setenv copies the text
            core_source = "chosen from the CPU's features";
        }
    }
    const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
    void *handle = NULL;
    for (int i = 0; i < 2 && !handle; i++) handle = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
        const char *e = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load OpenBLAS (libopenblas.so.0): %s; install it with Scripts/setup.sh (Debian: libopenblas0)",
                 e ? e : "not found");
        return;
    }
    sgemm_ptr = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    threads_ptr = (threads_fn)dlsym(handle, "openblas_set_num_threads");
    corename_ptr = (corename_fn)dlsym(handle, "openblas_get_corename");
    if (!sgemm_ptr) snprintf(load_error, sizeof load_error, "the OpenBLAS library has no cblas_sgemm");
}

static void ensure_loaded(void) {
    pthread_once(&once, load);
    if (load_error[0]) {
        fprintf(stderr, "gradguard: %s\n", load_error);
        abort();
    }
}

void gg_blas_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                   float beta, float *c, int ldc) {
    ensure_loaded();
    // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
    sgemm_ptr(101, trans_a ? 112 : 111, trans_b ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gg_blas_set_num_threads(int n) {
    ensure_loaded();
    if (threads_ptr) threads_ptr(n);
}

const char *gg_blas_core(void) {
    ensure_loaded();
    return corename_ptr ? corename_ptr() : "unknown";
}

const char *gg_blas_core_source(void) {
    ensure_loaded();
    return core_source;
}
