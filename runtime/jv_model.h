/* jv_model.h: the contract between code emitted by jmvaec and the runtime.
 *
 * Everything the generated model code needs is here and is header-only
 * (static inline), so the same generated file compiles in single precision
 * (default) or double precision (-DJV_DOUBLE) against one installed runtime:
 *   - jv_real, the scalar type;
 *   - jv_gemm, a thin wrapper over CBLAS;
 *   - the counter-based random generator (Philox4x32-10), a pure function of
 *     (seed, stream, index), so streams never depend on thread count;
 *   - the numerically stable scalar helpers the emitted loops call;
 *   - jv_model, the descriptor a generated model exports for the trainer.
 *
 * Memory is always the caller's: parameters, gradients and the activation
 * arena are plain arrays of jv_real whose sizes the descriptor gives.
 */
#ifndef JV_MODEL_H
#define JV_MODEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cblas.h>

#ifdef JV_DOUBLE
typedef double jv_real;
#define JV_REAL_NAME "double"
#else
typedef float jv_real;
#define JV_REAL_NAME "float"
#endif

/* ---------------------------------------------------------------- BLAS -- */

/* When JV_GEMM_HOOK is defined, every GEMM also calls jv_gemm_hook with its
 * shape; the benchmark uses it to record and replay the GEMMs of a step. */
#ifdef JV_GEMM_HOOK
void jv_gemm_hook(int trans_a, int trans_b, int m, int n, int k, double beta);
#endif

/* C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C, all row-major. */
static inline void jv_gemm(int trans_a, int trans_b, int m, int n, int k, jv_real alpha,
                           const jv_real *a, int lda, const jv_real *b, int ldb, jv_real beta,
                           jv_real *c, int ldc)
{
#ifdef JV_GEMM_HOOK
    jv_gemm_hook(trans_a, trans_b, m, n, k, (double)beta);
#endif
#ifdef JV_DOUBLE
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

/* ------------------------------------------------------ scalar helpers -- */

#ifdef JV_DOUBLE
#define JV_EXP exp
#define JV_LOG log
#define JV_LOG1P log1p
#define JV_TANH tanh
#define JV_SQRT sqrt
#define JV_FABS fabs
#else
#define JV_EXP jv_exp  /* below: branch-free, so the loops calling it vectorise */
#define JV_LOG jv_log
#define JV_LOG1P log1pf
#define JV_TANH tanhf
#define JV_SQRT sqrtf
#define JV_FABS fabsf
#endif

/* JV_TASK before a function of generated code: with GCC on x86-64 Linux it
 * is built three times, for AVX-512 (x86-64-v4), AVX2 (x86-64-v3) and
 * baseline x86-64, and the program picks one for its CPU when it starts.
 * The three compute the same bits: floating-point contraction is off (the
 * generated Makefile says -ffp-contract=off), and no loop reassociates a sum. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(JV_DOUBLE) && !defined(JV_NO_CLONES)
#define JV_TASK __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define JV_TASK
#endif

#define JV_LOG_2PI ((jv_real)1.8378770664093453)

/* JV_IVDEP before an inner loop of generated code: its rows do not overlap,
 * so the compiler may vectorise it without checks. */
#if defined(__clang__)
#define JV_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define JV_IVDEP _Pragma("GCC ivdep")
#else
#define JV_IVDEP
#endif

#ifdef JV_DOUBLE
/* Double precision (the gradient check): the C library, for accuracy. */
static inline jv_real jv_exp_nonpositive(jv_real x)
{
    return exp(x);
}

static inline jv_real jv_log1p_unit(jv_real e)
{
    return log1p(e);
}
#else
/* Single precision: exp and log1p on the ranges softplus and sigmoid need,
 * branch-free so that loops calling them vectorise. Relative error about
 * 1e-7, float's own.
 *
 * e^c for c in [-87.34, 88.73]: c = n ln 2 + r with |r| <= ln 2 / 2, e^r by
 * its Taylor series to r^7, 2^n built in the exponent bits (2^128 as
 * 2 * 2^127). */
static inline float jv_exp_reduced(float c)
{
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t = c * 1.44269504f + shift;
    float n = t - shift;
    float r = c - n * 0.693145752f - n * 1.42860677e-06f; /* ln 2 in two parts */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666667e-2f +
              r * (8.3333333e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    int top = n > 127.0f;
    union { float f; uint32_t u; } bits;
    bits.f = top ? t - 1.0f : t;
    bits.u = (bits.u - 0x4B400000u + 127u) << 23; /* 2^n for n in [-126, 127] */
    return p * bits.f * (top ? 2.0f : 1.0f);
}

/* e^x for x <= 0. Below -87 the result is the smallest normal's
 * neighbourhood, not 0: callers add it to 1. */
static inline float jv_exp_nonpositive(float x)
{
    return jv_exp_reduced(x < -87.0f ? -87.0f : x);
}

/* log(1 + e) for e in [0, 1]: 2 atanh(s), s = e / (2 + e) <= 1/3. */
static inline float jv_log1p_unit(float e)
{
    float s = e / (2.0f + e), s2 = s * s;
    return 2.0f * s * (1.0f + s2 * (0.33333333f + s2 * (0.2f + s2 * (0.14285714f + s2 * (0.11111111f +
           s2 * (0.09090909f + s2 * 0.07692308f))))));
}
#endif

#ifndef JV_DOUBLE
/* e^x for any x, branch-free: e^x = e^r 2^n with n = round(x / ln 2) and
 * |r| <= ln 2 / 2. Below -87.34 (results under the smallest normal) it
 * gives 0; above 88.72, infinity. */
static inline float jv_exp(float x)
{
    float y = jv_exp_reduced(x < -87.3365479f ? -87.3365479f : x > 88.7228394f ? 88.7228394f : x);
    y = x < -87.3365479f ? 0.0f : y;
    y = x > 88.7228394f ? INFINITY : y;
    return x != x ? x : y;
}

/* log x for x > 0 (0 gives -infinity, a negative x or NaN gives NaN,
 * infinity gives infinity), branch-free: x = 2^e m with m in [sqrt(1/2),
 * sqrt(2)), log m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| < 0.172. */
static inline float jv_log(float x)
{
    int tiny = x < 1.17549435e-38f; /* below the smallest normal: scaled by 2^24 first */
    union { float f; uint32_t u; } b;
    b.f = tiny ? x * 16777216.0f : x;
    int e = (int)((b.u >> 23) & 0xffu) - 127 - (tiny ? 24 : 0);
    b.u = (b.u & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    float m = b.f;
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big;
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float p = 2.0f * s * (1.0f + s2 * (0.33333333f + s2 * (0.2f + s2 * (0.14285714f + s2 * 0.11111111f))));
    float fe = (float)e;
    float y = fe * 0.693145752f + (fe * 1.42860677e-06f + p); /* ln 2 in two parts */
    y = x == 0.0f ? -INFINITY : y;
    y = x == INFINITY ? INFINITY : y;
    return x < 0.0f || x != x ? NAN : y;
}
#endif

/* softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): no overflow. */
static inline jv_real jv_softplus(jv_real x)
{
    jv_real e = jv_exp_nonpositive(-JV_FABS(x));
    return (x + JV_FABS(x)) * (jv_real)0.5 + jv_log1p_unit(e);
}

static inline jv_real jv_sigmoid(jv_real x)
{
    jv_real e = jv_exp_nonpositive(-JV_FABS(x));
    jv_real inv = 1 / (1 + e);
    return x >= 0 ? inv : e * inv;
}

/* Rows [0, u) of a buffer of rows of `width` become u runs of `copies` equal
 * rows (row e fills rows e * copies .. e * copies + copies - 1). Going down
 * from the last run never overwrites a row still to be read. */
static inline void jv_expand_rows(jv_real *x, int u, int copies, int width)
{
    for (int e = u - 1; e >= 0 && copies > 1; e--)
        for (int c = copies - 1; c >= 0; c--)
            if (e * copies + c != e)
                memcpy(x + (size_t)(e * copies + c) * width, x + (size_t)e * width, sizeof(jv_real) * (size_t)width);
}

/* ------------------------------------------------------ convolutions -- */

/* The helpers below are always inlined where the generated code calls them
 * with constant shapes (GCC otherwise makes a clone of col2im whose shapes
 * are variables again). */
#if defined(__GNUC__)
#define JV_INLINE inline __attribute__((always_inline))
#else
#define JV_INLINE inline
#endif

/* The output places x in [*x0, *x1) whose input place x s - p + kj lies in
 * [0, w): the others read padding. */
static JV_INLINE void jv_conv_span(int w, int s, int p, int kj, int ow, int *x0, int *x1)
{
    int lo = p - kj, hi = w - 1 + p - kj; /* x s in [lo, hi] */
    int a = lo <= 0 ? 0 : (lo + s - 1) / s, b = hi < 0 ? -1 : hi / s;
    *x0 = a < ow ? a : ow;
    *x1 = b + 1 < ow ? b + 1 : ow;
    if (*x1 < *x0)
        *x1 = *x0;
}

/* A convolution as GEMMs (Chellapilla et al. 2006): the columns of an
 * image [c, h, w] for a kernel k, stride s and padding p whose output is
 * [oh, ow] hold, in row (ci k + ki) k + kj and column y ow + x, the input
 * value the kernel's element (ki, kj) meets at output place (y, x), or 0 in
 * the padding. Rows are `ld` apart, so the columns of several examples sit
 * side by side in one matrix. The generated code calls these with constant
 * shapes. */
static JV_INLINE void jv_im2col(const jv_real *restrict img, int c, int h, int w, int k, int s, int p, int oh, int ow,
                             jv_real *restrict cols, size_t ld)
{
    for (int ci = 0; ci < c; ci++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                jv_real *restrict row = cols + (size_t)((ci * k + ki) * k + kj) * ld;
                int x0, x1;
                jv_conv_span(w, s, p, kj, ow, &x0, &x1);
                for (int y = 0; y < oh; y++) {
                    int iy = y * s - p + ki;
                    jv_real *restrict dst = row + (size_t)y * ow;
                    if (iy < 0 || iy >= h) {
                        memset(dst, 0, sizeof(jv_real) * (size_t)ow);
                        continue;
                    }
                    const jv_real *restrict src = img + ((size_t)ci * h + iy) * w;
                    const int off = kj - p;
                    for (int x = 0; x < x0; x++)
                        dst[x] = 0;
                    if (s == 1)
                        memcpy(dst + x0, src + x0 + off, sizeof(jv_real) * (size_t)(x1 - x0));
                    else
                        for (int x = x0; x < x1; x++)
                            dst[x] = src[x * s + off];
                    for (int x = x1; x < ow; x++)
                        dst[x] = 0;
                }
            }
}

/* The adjoint of jv_im2col: every column value added back to the input
 * place it came from (img is set first unless accumulate). The order of the
 * sums is fixed. */
static JV_INLINE void jv_col2im(const jv_real *restrict cols, size_t ld, int c, int h, int w, int k, int s, int p, int oh,
                             int ow, jv_real *restrict img, int accumulate)
{
    if (!accumulate)
        memset(img, 0, sizeof(jv_real) * (size_t)c * h * w);
    for (int ci = 0; ci < c; ci++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const jv_real *restrict row = cols + (size_t)((ci * k + ki) * k + kj) * ld;
                int x0, x1;
                jv_conv_span(w, s, p, kj, ow, &x0, &x1);
                for (int y = 0; y < oh; y++) {
                    int iy = y * s - p + ki;
                    if (iy < 0 || iy >= h)
                        continue;
                    const jv_real *restrict src = row + (size_t)y * ow;
                    jv_real *restrict dst = img + ((size_t)ci * h + iy) * w;
                    const int off = kj - p;
                    for (int x = x0; x < x1; x++)
                        dst[x * s + off] += src[x];
                }
            }
}

/* rows images [c x n] (each `ld` apart) as the columns of one matrix [c x
 * rows n] whose rows are `dst_ld` apart (at least rows n: a part of the
 * batch writes its examples' columns), channel by channel, and back (added
 * to dst when accumulate). */
static JV_INLINE void jv_to_channels(const jv_real *restrict src, int rows, size_t ld, int c, int n, jv_real *restrict dst,
                                     size_t dst_ld)
{
    for (int ch = 0; ch < c; ch++)
        for (int b = 0; b < rows; b++)
            memcpy(dst + (size_t)ch * dst_ld + (size_t)b * n, src + (size_t)b * ld + (size_t)ch * n,
                   sizeof(jv_real) * (size_t)n);
}

static JV_INLINE void jv_from_channels(const jv_real *restrict src, size_t src_ld, int rows, int c, int n,
                                       jv_real *restrict dst, int accumulate)
{
    for (int b = 0; b < rows; b++)
        for (int ch = 0; ch < c; ch++) {
            const jv_real *restrict from = src + (size_t)ch * src_ld + (size_t)b * n;
            jv_real *restrict to = dst + ((size_t)b * c + ch) * n;
            if (accumulate)
                for (int j = 0; j < n; j++)
                    to[j] += from[j];
            else
                memcpy(to, from, sizeof(jv_real) * (size_t)n);
        }
}

/* ------------------------------------------- counter-based generator -- */

/* Philox4x32-10 (Salmon et al., SC'11): four 32-bit outputs per counter. */
static inline void jv_philox(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Uniform in (0, 1): never 0, so its logarithm is finite. */
static inline double jv_u01(uint32_t hi, uint32_t lo)
{
    uint64_t bits = ((uint64_t)hi << 21) ^ (uint64_t)(lo >> 11); /* 53 bits */
    return ((double)(bits & ((1ull << 53) - 1)) + 0.5) / 9007199254740992.0;
}

/* The index-th uniform of a stream. */
static inline double jv_uniform_at(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint32_t r[4];
    jv_philox(seed, stream, index, r);
    return jv_u01(r[0], r[1]);
}

/* The index-th standard normal of a stream (Box-Muller on one counter). */
static inline double jv_normal_at(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint32_t r[4];
    jv_philox(seed, stream, index, r);
    double u1 = jv_u01(r[0], r[1]), u2 = jv_u01(r[2], r[3]);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ------------------------------------------------- the step as tasks -- */

/* The training step is emitted as tasks: one per block of code, each a
 * function of the step's arguments. A task runs after the tasks it waits
 * for; any order that respects that computes the same bits (every GEMM is
 * called with the same shape on the same operands, every sum is taken in
 * the same order), so the number of threads never changes a result. */
typedef struct {
    const jv_real *params;
    jv_real *grads;              /* written by the backward tasks */
    jv_real *arena;
    int batch;
    const jv_real *const *data;
    const jv_real *const *noise;
    const jv_real *hyper;        /* NULL: the spec's values */
    const jv_real *term_scale;   /* NULL: all 1 */
    jv_real *terms;              /* [n_terms]: each term's batch mean, or NULL */
    jv_real *loss;               /* the weighted sum of the terms, or NULL */
    double *sumsq;               /* [n_slots]: each gradient region's sum of squares, or NULL */
    unsigned flags;              /* JV_STEP_EXACT, or 0 */
} jv_step;

/* jv_step.flags: the exact gradient of the objective, where the model's
 * gradient is an estimator of its own (DReG): the gradient check's. */
#define JV_STEP_EXACT 1u

typedef struct {
    void (*run)(const jv_step *s);
    const char *name;            /* the task's function, e.g. "t07_affine_enc_x_h1" */
    int line;                    /* the spec line it comes from */
    int n_pred;                  /* the tasks it waits for */
    int first_succ, n_succ;      /* the tasks waiting for it: succ[first_succ .. first_succ + n_succ) */
    int first_read, n_read;      /* the regions whose parameters it reads: reads[first_read ..] */
    float rank;                  /* estimated microseconds from its start to the end of the step */
} jv_task;

/* A range of the parameter block (and of the gradient and moment blocks),
 * and the backward task that writes its gradient. */
typedef struct {
    size_t first, count;
    int writer;
} jv_region;

typedef struct {
    int n_tasks, n_forward;      /* the first n_forward tasks are the forward pass */
    const jv_task *tasks;        /* in an order that runs them one after another */
    const int *succ;
    int n_slots;                 /* gradient regions: each written by one backward task, */
    const jv_region *slots;      /* together the whole block, each real once */
    const int *reads;
} jv_task_graph;

/* Runs tasks [from, to) in order on the calling thread. */
static inline void jv_run_tasks(const jv_task_graph *g, const jv_step *s, int from, int to)
{
    for (int k = from; k < to; k++)
        g->tasks[k].run(s);
}

/* The sum of squares of x[0..n) in double, for the gradient norm. */
#ifdef JV_DOUBLE
static inline double jv_sumsq(const double *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return s;
}
#else
/* The runtime's, vectorised for the CPU it runs on; the same bits on every CPU. */
double jv_sumsq_f32(const float *x, size_t n);
#define jv_sumsq jv_sumsq_f32
#endif

/* ---------------------------------------------------- the descriptor -- */

typedef enum {
    JV_BERNOULLI,        /* logits; targets in [0,1] */
    JV_CATEGORICAL,      /* logits; one-hot targets (the loader expands class indices) */
    JV_GAUSSIAN,         /* mean; unit variance */
    JV_GAUSSIAN_LEARNED  /* mean and per-dimension variance */
} jv_likelihood;

typedef struct {
    const char *name;
    int size;
    jv_likelihood likelihood;
    int height, width;  /* an image of height x width (size == height * width); 0 otherwise */
    int decoded;        /* a network gives p(m | latents): log_joint and decode compute it */
} jv_modality_info;

typedef struct {
    const char *name;
    int size;
    int mixture;        /* a posterior of it is a mixture: sampling it reads noise[n_latents + latent], one
                           standard normal a row, to choose the component */
} jv_latent_info;

/* One parameter tensor in the parameter block. */
typedef struct {
    const char *name;  /* e.g. "q_xw.h1.weight" */
    int rows, cols;    /* a weight is [fan_in x fan_out]; a bias [1 x n] */
    size_t offset;     /* in jv_real elements from the start of the block */
    int is_bias;       /* biases start at 0; weights are Glorot-uniform (even of fan-in 1) */
    int shape[4];      /* a convolution's weight: [out, in, k, k] (transposed: [in, out, k, k]), stored as
                          [rows x cols] = [shape[0] x shape[1] k k]; all 0 for the others */
} jv_tensor_info;

/* Glorot's bound sqrt(6 / (fan_in + fan_out)) of a weight: rows + cols for
 * a dense one, (in + out) k k for a convolution's. */
static inline double jv_glorot_bound(const jv_tensor_info *t)
{
    double fans = t->shape[2] ? (double)(t->shape[0] + t->shape[1]) * t->shape[2] * t->shape[3] : (double)(t->rows + t->cols);
    return sqrt(6.0 / fans);
}

/* The weight a term of the loss carries: hyper `hyper` (value: the hyper's
 * spec value, before any warm-up) or, when hyper < 0, the number `value`. */
typedef struct {
    int hyper;
    double value;
    double scale;       /* the term's loop: 1 / its instances in a `mean` loop, else 1 */
} jv_term_weight;

/* A weight of the objective: the value used is
 *   warmup_epochs > 0 ? from + (value - from) * min(1, epoch_progress / warmup_epochs) : value */
typedef struct {
    const char *name;
    double value;
    double warmup_from;
    double warmup_epochs;
} jv_hyper_info;

typedef struct {
    double lr, beta1, beta2, eps, clip; /* clip <= 0: no clipping */
    int batch, epochs;
    uint64_t seed;
} jv_train_defaults;

/* data: one pointer per modality, each [batch x size] row-major.
 * latents / noise: one pointer per latent, each [batch x size]; then, for
 * a latent whose posterior is a mixture, noise[n_latents + latent] [batch x 1]
 * chooses each row's component. */
typedef struct {
    const char *name;     /* the conditioning set, e.g. "x,w" */
    unsigned condition;   /* bit m set: the family's encoders read modality m */
    /* Samples every latent from this family's posteriors (top-down as the spec
     * orders them): z = mean + sd * noise, or the mean where noise is NULL.
     * log_q[b] = log q(z | inputs) of the returned sample. */
    void (*posterior)(const jv_real *params, jv_real *arena, int batch,
                      const jv_real *const *data, const jv_real *const *noise,
                      jv_real *const *latents, jv_real *log_q);
    /* The same when the data rows come in runs of `copies` equal rows (the
     * K samples of importance sampling): the encoders' layers that read data
     * alone run once per run. batch must be a multiple of copies. NULL when
     * a model does not provide it. */
    void (*posterior_repeated)(const jv_real *params, jv_real *arena, int batch, int copies,
                               const jv_real *const *data, const jv_real *const *noise,
                               jv_real *const *latents, jv_real *log_q);
    /* A family of posteriors built from experts serves every subset S of
     * `condition` that covers(S) accepts (posterior and posterior_repeated
     * are then NULL): posterior_given samples from q(z | S), S = given. */
    int (*covers)(unsigned given);
    void (*posterior_given)(const jv_real *params, jv_real *arena, int batch, int copies, unsigned given,
                            const jv_real *const *data, const jv_real *const *noise,
                            jv_real *const *latents, jv_real *log_q);
} jv_family_info;

/* The training step of examples that observe only the modalities of
 * `observed` (bit m: modality m): as jv_model's forward, train, backward,
 * with the loss of what these examples observe (terms they lack are 0). */
typedef struct {
    unsigned observed;
    jv_real (*forward)(const jv_real *params, jv_real *arena, int batch, const jv_real *const *data,
                       const jv_real *const *noise, const jv_real *hyper, const jv_real *term_scale, jv_real *terms);
    const jv_task_graph *train;
    void (*backward)(const jv_real *params, jv_real *grads, jv_real *arena, int batch, const jv_real *const *data,
                     const jv_real *const *noise, const jv_real *hyper, const jv_real *term_scale);
} jv_subset_step;

typedef struct jv_model {
    const char *name;
    uint64_t fingerprint;          /* of the spec's canonical form and the parameter layout */
    int n_modalities;
    const jv_modality_info *modalities;
    int n_latents;
    const jv_latent_info *latents;
    int n_tensors;
    const jv_tensor_info *tensors;
    size_t n_params;               /* jv_real elements in the parameter block */
    int n_hypers;
    const jv_hyper_info *hypers;
    int n_terms;
    const char *const *term_names;
    const jv_term_weight *term_weights; /* [n_terms] */
    jv_train_defaults defaults;
    size_t arena_per_example;      /* arena elements per example of the batch */
    int n_families;
    const jv_family_info *families;
    int training_family;           /* index of the family the objective samples from */
    /* The training step's noise: one buffer per draw of a latent (a spec
     * without loops draws each latent once: draw l is latent l), noise[d]
     * [batch x the size of latent draw_latents[d]]. */
    int n_draws;
    const int *draw_latents;
    /* K importance samples of each draw (train { samples = K }): the step's
     * noise[d] then has K rows an example, [batch x K x size], and the loss is
     * the importance-weighted bound; 1: the ELBO. */
    int samples;
    int dreg;                      /* its gradient is the doubly-reparameterised estimator */

    /* Parameters from a seed (the rule is stated in the generated header). */
    void (*init)(jv_real *params, uint64_t seed);
    /* One training step's forward pass. hyper: current value of each hyper
     * (NULL: the spec's values); term_scale: a factor per term (NULL: all 1).
     * terms[t] receives term t as the spec names it, weight_t times its
     * batch mean (kl_x = alpha * KL(...) receives alpha * KL); returns
     * sum_t scale_t * terms[t]. */
    jv_real (*forward)(const jv_real *params, jv_real *arena, int batch,
                       const jv_real *const *data, const jv_real *const *noise,
                       const jv_real *hyper, const jv_real *term_scale, jv_real *terms);
    /* The training step as tasks: forward and backward in one graph, which
     * the trainer runs on its threads (forward and backward below run the
     * same tasks in order). */
    const jv_task_graph *train;
    /* The gradient of forward's return value, written to grads (overwritten).
     * Must follow forward with the same arguments; it reads forward's arena. */
    void (*backward)(const jv_real *params, jv_real *grads, jv_real *arena, int batch,
                     const jv_real *const *data, const jv_real *const *noise,
                     const jv_real *hyper, const jv_real *term_scale);
    /* Incomplete data: the training step of the examples that observe only
     * some modalities, one per observed subset whose loss keeps a term
     * (forward, train and backward above are the complete examples').
     * Examples that observe a subset not listed contribute nothing to the
     * loss, and the trainer refuses them. incomplete: 0 when the compiler
     * did not derive these (too many modalities). */
    int incomplete;
    int n_subset_steps;
    const jv_subset_step *subset_steps;
    /* log p(z) under the top-down prior, and log p(m | z) for every modality
     * in `which` (bit m set): log_lik[m][b]; the decoders of the others do
     * not run and their log_lik rows are left as they were. */
    void (*log_joint)(const jv_real *params, jv_real *arena, int batch,
                      const jv_real *const *data, const jv_real *const *latents,
                      jv_real *log_prior, jv_real *const *log_lik, unsigned which);
    /* Each modality's expected value given the latents: probabilities for
     * Bernoulli and categorical, the mean for Gaussian. */
    void (*decode)(const jv_real *params, jv_real *arena, int batch,
                   const jv_real *const *latents, jv_real *const *out);
    /* Ancestral sample from the prior, top-down. */
    void (*sample_prior)(const jv_real *params, jv_real *arena, int batch,
                         const jv_real *const *noise, jv_real *const *latents);
} jv_model;

#endif
