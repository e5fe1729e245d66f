/* jv_adam.c: the optimiser: the gradient's sum of squares (for its global
 * norm), one Adam step with bias correction and norm clipping, and the
 * linear warm-up of objective weights.
 *
 * The library is built for baseline x86-64; the two loops that stream every
 * parameter come in three versions, for AVX-512, AVX2 and baseline, picked
 * once from cpuid. The versions are the same C compiled for each target
 * (this file is built with -O3 so the loops vectorise), and they compute
 * the same bits: Adam is elementwise with correctly rounded operations (no
 * fused multiply-add: ISO C mode keeps contraction off), and the sum of
 * squares keeps 16 partial sums in double whose products are exact, added
 * in the same order on every path.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "jv_runtime.h"

#define LANES 16

typedef struct {
    float scale, b1, b2, c1, c2, step_size, inv_correct2, eps;
} adam_consts;

static inline __attribute__((always_inline)) double sumsq_body(const float *restrict x, size_t n)
{
    double acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += (double)x[i + l] * (double)x[i + l];
    for (int l = 0; i + (size_t)l < n; l++)
        acc[l] += (double)x[i + l] * (double)x[i + l];
    double s = 0;
    for (int l = 0; l < LANES; l++)
        s += acc[l];
    return s;
}

static inline __attribute__((always_inline)) void adam_body(const adam_consts *k, float *restrict params,
                                                             const float *restrict grads, float *restrict m,
                                                             float *restrict v, size_t n)
{
    const float scale = k->scale, b1 = k->b1, b2 = k->b2, c1 = k->c1, c2 = k->c2;
    const float step_size = k->step_size, inv_correct2 = k->inv_correct2, eps = k->eps;
    for (size_t i = 0; i < n; i++) {
        float g = scale * grads[i];
        float mi = b1 * m[i] + c1 * g;
        float vi = b2 * v[i] + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= step_size * mi / (sqrtf(vi * inv_correct2) + eps);
    }
}

static double sumsq_base(const float *x, size_t n)
{
    return sumsq_body(x, n);
}

static void adam_base(const adam_consts *k, float *params, const float *grads, float *m, float *v, size_t n)
{
    adam_body(k, params, grads, m, v, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define AVX2_TARGET __attribute__((target("avx2")))
#ifdef __clang__
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#else /* GCC would otherwise keep to 256-bit vectors */
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")))
#endif

AVX2_TARGET static double sumsq_avx2(const float *x, size_t n)
{
    return sumsq_body(x, n);
}

AVX2_TARGET static void adam_avx2(const adam_consts *k, float *params, const float *grads, float *m, float *v,
                                  size_t n)
{
    adam_body(k, params, grads, m, v, n);
}

AVX512_TARGET static double sumsq_avx512(const float *x, size_t n)
{
    return sumsq_body(x, n);
}

AVX512_TARGET static void adam_avx512(const adam_consts *k, float *params, const float *grads, float *m, float *v,
                                      size_t n)
{
    adam_body(k, params, grads, m, v, n);
}
#define HAVE_VECTOR_PATHS 1
#endif

typedef struct {
    const char *name;
    double (*sumsq)(const float *x, size_t n);
    void (*adam)(const adam_consts *k, float *params, const float *grads, float *m, float *v, size_t n);
} simd_path;

static const simd_path paths[] = {
    {"baseline", sumsq_base, adam_base},
#ifdef HAVE_VECTOR_PATHS
    {"avx2", sumsq_avx2, adam_avx2},
    {"avx512", sumsq_avx512, adam_avx512},
#endif
};

static int path_supported(int p)
{
    jv_cpu_features f;
    jv_cpu_detect(&f);
    const char *name = paths[p].name;
    return strcmp(name, "baseline") == 0 || (strcmp(name, "avx2") == 0 && f.avx2) ||
           (strcmp(name, "avx512") == 0 && f.avx512);
}

/* The widest path the CPU runs; JMVAEC_SIMD=baseline|avx2|avx512 narrows it. */
static const simd_path *chosen;

static const simd_path *path(void)
{
    const simd_path *p = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (p)
        return p;
    int best = 0, n = (int)(sizeof paths / sizeof paths[0]);
    for (int i = 0; i < n; i++) /* the paths are listed from the narrowest */
        best = path_supported(i) ? i : best;
    const char *want = getenv("JMVAEC_SIMD");
    for (int i = 0; want && i < n; i++)
        best = strcmp(paths[i].name, want) == 0 && path_supported(i) ? i : best;
    __atomic_store_n(&chosen, &paths[best], __ATOMIC_RELEASE);
    return &paths[best];
}

int jv_simd_path_count(void)
{
    return (int)(sizeof paths / sizeof paths[0]);
}

const char *jv_simd_path_name(int p)
{
    return p >= 0 && p < jv_simd_path_count() ? paths[p].name : NULL;
}

int jv_simd_path_supported(int p)
{
    return p >= 0 && p < jv_simd_path_count() && path_supported(p);
}

const char *jv_simd_describe(void)
{
    return path()->name;
}

double jv_sumsq_f32(const float *x, size_t n)
{
    return path()->sumsq(x, n);
}

double jv_sumsq_path(int p, const float *x, size_t n)
{
    return paths[p].sumsq(x, n);
}

double jv_grad_norm(const float *g, size_t n)
{
    return sqrt(jv_sumsq_f32(g, n));
}

double jv_clip_factor(double clip, double grad_norm)
{
    if (clip <= 0 || !(grad_norm > clip))
        return 1;
    return clip / grad_norm;
}

static adam_consts constants(const jv_adam_config *cfg, long step, double scale)
{
    double t = step < 1 ? 1 : (double)step;
    return (adam_consts){
        .scale = (float)scale,
        .b1 = (float)cfg->beta1,
        .b2 = (float)cfg->beta2,
        .c1 = (float)(1 - cfg->beta1),
        .c2 = (float)(1 - cfg->beta2),
        .step_size = (float)(cfg->lr / (1 - pow(cfg->beta1, t))),
        .inv_correct2 = (float)(1 / (1 - pow(cfg->beta2, t))),
        .eps = (float)cfg->eps,
    };
}

/* The moments of a parameter whose gradient stays 0 (the weights of an
 * image's always-black border pixels, say) decay by beta each step and
 * reach the subnormal range after about 800 steps for beta1 = 0.9; from
 * then on every operation on them takes a slow microcode path (training
 * ran 60% slower from its second epoch on). Adam therefore runs with
 * subnormal inputs and results flushed to zero, on every path alike. */
static void adam_flushing(const simd_path *p, const adam_consts *k, float *params, const float *grads, float *m,
                          float *v, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u); /* FTZ (bit 15) and DAZ (bit 6) */
    p->adam(k, params, grads, m, v, n);
    _mm_setcsr(csr);
#else
    p->adam(k, params, grads, m, v, n);
#endif
}

void jv_adam_update(const jv_adam_config *cfg, float *params, const float *grads, float *m, float *v, size_t begin,
                    size_t end, long step, double scale)
{
    adam_consts k = constants(cfg, step, scale);
    adam_flushing(path(), &k, params + begin, grads + begin, m + begin, v + begin, end - begin);
}

void jv_adam_update_path(int p, const jv_adam_config *cfg, float *params, const float *grads, float *m, float *v,
                         size_t n, long step, double scale)
{
    adam_consts k = constants(cfg, step, scale);
    adam_flushing(&paths[p], &k, params, grads, m, v, n);
}

void jv_adam_step(const jv_adam_config *cfg, float *params, const float *grads, float *m, float *v, size_t n,
                  long step, double grad_norm)
{
    jv_adam_update(cfg, params, grads, m, v, 0, n, step, jv_clip_factor(cfg->clip, grad_norm));
}

double jv_hyper_value(const jv_hyper_info *h, double epoch_progress)
{
    if (!(h->warmup_epochs > 0))
        return h->value;
    double f = epoch_progress / h->warmup_epochs;
    if (f > 1)
        f = 1;
    if (f < 0)
        f = 0;
    return h->warmup_from + (h->value - h->warmup_from) * f;
}
