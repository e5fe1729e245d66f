/* bench.c: the driver behind `make bench` (a plain program, not a Criterion
 * suite, hence not named test_*.c).
 *
 * Every model it is linked with (bench_models.h, written by the Makefile,
 * lists them as X(name)) is emitted with -DJV_GEMM_HOOK, so each jv_gemm
 * first calls jv_gemm_hook below. For each model, at a fixed batch on one
 * BLAS thread, with fixed random data and noise:
 *   1. one step is run with the hook recording every GEMM's shape (trans
 *      flags, m, n, k, beta) and whether forward or backward called it;
 *   2. then, repetition after repetition, interleaved (the order of step and
 *      gemm alternates):
 *        step  forward + backward; the hook stamps the time of each GEMM call
 *        gemm  a replay of exactly the recorded GEMMs, on buffers of their own
 *              with the leading dimensions the emitter uses (row-major:
 *              lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n)
 *        fwd   forward alone
 *        adam  the global gradient norm and jv_adam_step over every parameter
 *              (on a copy, so that every step computes the same thing)
 *   3. medians are reported, with step/gemm (the median of the per-repetition
 *      ratios) and the share of the step spent outside GEMMs.
 * The per-op table: a segment is one GEMM call of the step and the emitted
 * code after it, up to the next GEMM; its median less the median replay time
 * of that GEMM estimates the time of that code. Segments are named after the
 * comments of the generated source (--src-dir), when it can be read.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jv_model.h"
#include "jv_runtime.h"

#ifdef JV_DOUBLE
#error "the benchmark measures single precision (jv_adam_step takes float)"
#endif
#ifndef JV_GEMM_HOOK
#error "compile the benchmark and the models with -DJV_GEMM_HOOK"
#endif

#define X(m) extern const jv_model m##_model;
#include "bench_models.h"
#undef X

static const jv_model *const all_models[] = {
#define X(m) &m##_model,
#include "bench_models.h"
#undef X
};

#define N_MODELS (sizeof all_models / sizeof *all_models)

/* ------------------------------------------------------------ options -- */

typedef struct {
    int batch, reps, warmup, min_reps, top, threads;
    double budget; /* seconds of measurement per model, after min_reps */
    const char *src_dir, *out, *flags;
} options;

static void usage(void)
{
    fprintf(stderr, "usage: bench [--batch N] [--reps N] [--min-reps N] [--warmup N] [--budget SECONDS]\n"
                    "             [--threads N] [--top N] [--src-dir DIR] [--flags TEXT] [--out FILE]\n");
    exit(2);
}

static int int_arg(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || v < 0 || v > 1000000)
        usage();
    return (int)v;
}

static options parse_options(int argc, char **argv)
{
    options o = {100, 100, 5, 20, 12, 1, 40.0, NULL, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--batch") == 0)
            o.batch = int_arg(v);
        else if (strcmp(a, "--reps") == 0)
            o.reps = int_arg(v);
        else if (strcmp(a, "--min-reps") == 0)
            o.min_reps = int_arg(v);
        else if (strcmp(a, "--warmup") == 0)
            o.warmup = int_arg(v);
        else if (strcmp(a, "--threads") == 0)
            o.threads = int_arg(v);
        else if (strcmp(a, "--top") == 0)
            o.top = int_arg(v);
        else if (strcmp(a, "--budget") == 0)
            o.budget = atof(v);
        else if (strcmp(a, "--src-dir") == 0)
            o.src_dir = v;
        else if (strcmp(a, "--flags") == 0)
            o.flags = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else
            usage();
        i++;
    }
    if (o.batch < 1 || o.reps < 1)
        usage();
    if (o.min_reps > o.reps)
        o.min_reps = o.reps;
    return o;
}

/* ------------------------------------------------------------ helpers -- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xalloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static float *alloc_reals(size_t n)
{
    float *p = xalloc(n * sizeof *p);
    memset(p, 0, n * sizeof *p);
    return p;
}

/* Uniform in [-1, 1) from a xorshift generator: quick, and free of the
 * denormals that would slow a GEMM down. */
static void fill_signed(float *p, size_t n, uint64_t *state)
{
    uint64_t x = *state;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (float)((double)(x >> 40) / (double)(1u << 23) - 1.0);
    }
    *state = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of v[0..n) with stride, by sorting a copy. */
static double quantile(const double *v, size_t n, size_t stride, double q)
{
    double *c = xalloc(n * sizeof *c);
    for (size_t i = 0; i < n; i++)
        c[i] = v[i * stride];
    qsort(c, n, sizeof *c, cmp_double);
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    double r = lo + 1 < n ? c[lo] + (pos - (double)lo) * (c[lo + 1] - c[lo]) : c[lo];
    free(c);
    return r;
}

static double median(const double *v, size_t n, size_t stride)
{
    return quantile(v, n, stride, 0.5);
}

/* ---------------------------------------------------------- the hook -- */

enum { HOOK_OFF, HOOK_RECORD, HOOK_STAMP };
enum { PHASE_FWD, PHASE_BWD };

typedef struct {
    int trans_a, trans_b, m, n, k, phase;
    double beta;
} gemm_call;

static struct {
    int mode, phase;
    size_t n, cap, stamp_cap;
    gemm_call *calls; /* HOOK_RECORD: cap entries */
    double *stamps;   /* HOOK_STAMP: stamp_cap entries */
} hook;

void jv_gemm_hook(int trans_a, int trans_b, int m, int n, int k, double beta)
{
    if (hook.mode == HOOK_STAMP) {
        if (hook.n < hook.stamp_cap)
            hook.stamps[hook.n] = now();
        hook.n++;
    } else if (hook.mode == HOOK_RECORD) {
        if (hook.n == hook.cap) {
            hook.cap = hook.cap ? 2 * hook.cap : 64;
            gemm_call *grown = realloc(hook.calls, hook.cap * sizeof *grown);
            if (!grown) {
                fprintf(stderr, "bench: out of memory\n");
                exit(1);
            }
            hook.calls = grown;
        }
        hook.calls[hook.n++] = (gemm_call){trans_a, trans_b, m, n, k, hook.phase, beta};
    }
}

/* ------------------------------------------- segment names from source -- */

/* Names for the segments of one step: [0] the forward's code before its
 * first GEMM, [1 + i] GEMM i of the forward and what follows, [1 + nf] the
 * backward's code before its first GEMM, [2 + i] GEMM i (i >= nf). */
typedef struct {
    char text[600];
} seg_name;

static size_t seg_of_call(size_t i, size_t nf)
{
    return i < nf ? 1 + i : 2 + i;
}

static void trim_comment(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '/' || s[n - 1] == '*'))
        s[--n] = 0;
    char *p = s;
    while (*p == ' ')
        p++;
    memmove(s, p, strlen(p) + 1);
    char *shape = strstr(s, ", [");
    if (shape)
        *shape = 0;
}

static void append_name(seg_name *seg, const char *what)
{
    size_t len = strlen(seg->text);
    if (len + 8 >= sizeof seg->text)
        return;
    snprintf(seg->text + len, sizeof seg->text - len, "%s%s", len ? " | " : "", what);
}

/* Reads the generated source: within <name>_forward and <name>_backward,
 * every block opens with a comment naming the spec line, then a line saying
 * what the block computes. Returns 0 when the GEMM count matches. */
static int name_segments(const char *path, const char *name, seg_name *segs, size_t n_calls, size_t nf)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char fwd_head[300], bwd_head[300], line[4096];
    snprintf(fwd_head, sizeof fwd_head, "jv_real %s_forward(", name);
    snprintf(bwd_head, sizeof bwd_head, "void %s_backward(", name);
    int fn = -1, want_desc = 0, pending = 0;
    size_t counted[2] = {0, 0};
    size_t cur = 0; /* the segment the code being read belongs to */
    char desc[600] = "";
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, fwd_head, strlen(fwd_head)) == 0) {
            fn = PHASE_FWD;
            cur = 0;
            continue;
        }
        if (strncmp(line, bwd_head, strlen(bwd_head)) == 0) {
            fn = PHASE_BWD;
            cur = 1 + nf;
            continue;
        }
        if (fn < 0)
            continue;
        if (strcmp(line, "}\n") == 0) {
            fn = -1;
            continue;
        }
        if (want_desc) { /* the second line of a block's comment */
            want_desc = 0;
            snprintf(desc, sizeof desc, "%s", line);
            trim_comment(desc);
            pending = 1;
            continue;
        }
        const char *spec = strstr(line, ".spec:");
        if (strstr(line, "/* ") && spec) {
            if (strstr(line, "*/")) { /* one line: what follows "NAME.spec:LINE  " */
                const char *text = strstr(spec, "  ");
                snprintf(desc, sizeof desc, "%s", text ? text : spec);
                trim_comment(desc);
                pending = 1;
            } else {
                want_desc = 1;
            }
            continue;
        }
        if (strspn(line, " \t\n") == strlen(line))
            continue;
        if (strstr(line, "jv_gemm(")) {
            size_t i = fn == PHASE_FWD ? counted[0]++ : nf + counted[1]++;
            if (i >= n_calls)
                break;
            cur = seg_of_call(i, nf);
            append_name(&segs[cur], desc); /* the block: its GEMM(s) and their epilogue */
            pending = 0;
        } else if (pending) {
            if (cur < n_calls + 2)
                append_name(&segs[cur], desc);
            pending = 0;
        }
    }
    fclose(f);
    return counted[0] == nf && counted[0] + counted[1] == n_calls ? 0 : -1;
}

/* ------------------------------------------------------ one model -- */

typedef struct {
    const jv_model *M;
    int batch;
    float *params, *grads, *arena, *adam_params, *adam_m, *adam_v;
    const float **data, **noise;
    float **owned; /* data and noise buffers */
    int n_owned;
    float *terms;
    jv_adam_config adam;
    long adam_step;
    /* the replay */
    size_t n_calls, nf;
    float **ra, **rb, **rc;
} bench_ctx;

static void setup(bench_ctx *c, const jv_model *M, int batch)
{
    memset(c, 0, sizeof *c);
    c->M = M;
    c->batch = batch;
    size_t np = M->n_params;
    c->params = alloc_reals(np);
    c->grads = alloc_reals(np);
    c->adam_params = alloc_reals(np);
    c->adam_m = alloc_reals(np);
    c->adam_v = alloc_reals(np);
    c->arena = alloc_reals(M->arena_per_example * (size_t)batch);
    c->terms = alloc_reals((size_t)M->n_terms + 1);
    M->init(c->params, 1);
    memcpy(c->adam_params, c->params, np * sizeof *c->params);
    c->adam = (jv_adam_config){M->defaults.lr, M->defaults.beta1, M->defaults.beta2, M->defaults.eps,
                               M->defaults.clip};

    c->data = xalloc(((size_t)M->n_modalities + 1) * sizeof *c->data);
    c->noise = xalloc(((size_t)M->n_latents + 1) * sizeof *c->noise);
    c->owned = xalloc(((size_t)M->n_modalities + (size_t)M->n_latents) * sizeof *c->owned);
    jv_rng rng = {20240601, 7, 0};
    for (int m = 0; m < M->n_modalities; m++) {
        const jv_modality_info *mod = &M->modalities[m];
        size_t n = (size_t)batch * (size_t)mod->size;
        float *x = alloc_reals(n);
        if (mod->likelihood == JV_BERNOULLI) {
            jv_rng_fill_uniform(&rng, x, n); /* targets in [0, 1] */
        } else if (mod->likelihood == JV_CATEGORICAL) {
            for (int b = 0; b < batch; b++) /* one-hot labels */
                x[(size_t)b * (size_t)mod->size + jv_rng_below(&rng, (uint64_t)mod->size)] = 1;
        } else {
            jv_rng_fill_normal(&rng, x, n);
        }
        c->data[m] = x;
        c->owned[c->n_owned++] = x;
    }
    for (int l = 0; l < M->n_latents; l++) {
        size_t n = (size_t)batch * (size_t)M->latents[l].size;
        float *e = alloc_reals(n);
        jv_rng_fill_normal(&rng, e, n);
        c->noise[l] = e;
        c->owned[c->n_owned++] = e;
    }
}

static void teardown(bench_ctx *c)
{
    for (size_t i = 0; i < c->n_calls; i++) {
        free(c->ra[i]);
        free(c->rb[i]);
        free(c->rc[i]);
    }
    free(c->ra);
    free(c->rb);
    free(c->rc);
    for (int i = 0; i < c->n_owned; i++)
        free(c->owned[i]);
    free(c->owned);
    free(c->data);
    free(c->noise);
    free(c->params);
    free(c->grads);
    free(c->adam_params);
    free(c->adam_m);
    free(c->adam_v);
    free(c->arena);
    free(c->terms);
}

static jv_real run_forward(bench_ctx *c)
{
    return c->M->forward(c->params, c->arena, c->batch, c->data, c->noise, NULL, NULL, c->terms);
}

static void run_backward(bench_ctx *c)
{
    c->M->backward(c->params, c->grads, c->arena, c->batch, c->data, c->noise, NULL, NULL);
}

/* Records the GEMMs of one step and allocates the replay's buffers. */
static void record(bench_ctx *c)
{
    hook.n = 0;
    hook.mode = HOOK_RECORD;
    hook.phase = PHASE_FWD;
    run_forward(c);
    size_t nf = hook.n;
    hook.phase = PHASE_BWD;
    run_backward(c);
    hook.mode = HOOK_OFF;
    c->n_calls = hook.n;
    c->nf = nf;
    c->ra = xalloc((c->n_calls + 1) * sizeof *c->ra);
    c->rb = xalloc((c->n_calls + 1) * sizeof *c->rb);
    c->rc = xalloc((c->n_calls + 1) * sizeof *c->rc);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < c->n_calls; i++) {
        const gemm_call *g = &hook.calls[i];
        size_t sa = (size_t)g->m * (size_t)g->k, sb = (size_t)g->k * (size_t)g->n,
               sc = (size_t)g->m * (size_t)g->n;
        c->ra[i] = alloc_reals(sa);
        c->rb[i] = alloc_reals(sb);
        c->rc[i] = alloc_reals(sc);
        fill_signed(c->ra[i], sa, &state);
        fill_signed(c->rb[i], sb, &state);
        fill_signed(c->rc[i], sc, &state);
    }
}

/* The replay: total seconds; per call into per_call[i], per phase into phase_s. */
static double replay(bench_ctx *c, double *per_call, double phase_s[2])
{
    phase_s[0] = phase_s[1] = 0;
    double t0 = now();
    for (size_t i = 0; i < c->n_calls; i++) {
        const gemm_call *g = &hook.calls[i];
        double t = now();
        jv_gemm(g->trans_a, g->trans_b, g->m, g->n, g->k, 1, c->ra[i], g->trans_a ? g->m : g->k, c->rb[i],
                g->trans_b ? g->k : g->n, (jv_real)g->beta, c->rc[i], g->n);
        double dt = now() - t;
        per_call[i] = dt;
        phase_s[g->phase] += dt;
    }
    return now() - t0;
}

/* One timed step; fills seg[0 .. n_calls + 2) and the two halves. */
static double timed_step(bench_ctx *c, double *seg, double *fwd_part, double *bwd_part)
{
    hook.n = 0;
    hook.mode = HOOK_STAMP;
    double t0 = now();
    run_forward(c);
    double t1 = now();
    run_backward(c);
    double t2 = now();
    hook.mode = HOOK_OFF;
    if (hook.n != c->n_calls) {
        fprintf(stderr, "bench: %s: a step called %zu GEMMs, the recorded one %zu\n", c->M->name, hook.n,
                c->n_calls);
        exit(1);
    }
    size_t n = c->n_calls, nf = c->nf;
    const double *s = hook.stamps;
    seg[0] = (nf ? s[0] : t1) - t0;
    seg[1 + nf] = (n > nf ? s[nf] : t2) - t1;
    for (size_t i = 0; i < n; i++) {
        double end;
        if (i < nf)
            end = i + 1 < nf ? s[i + 1] : t1;
        else
            end = i + 1 < n ? s[i + 1] : t2;
        seg[seg_of_call(i, nf)] = end - s[i];
    }
    *fwd_part = t1 - t0;
    *bwd_part = t2 - t1;
    return t2 - t0;
}

static double timed_forward(bench_ctx *c)
{
    double t0 = now();
    run_forward(c);
    return now() - t0;
}

static double timed_adam(bench_ctx *c)
{
    double t0 = now();
    double norm = jv_grad_norm(c->grads, c->M->n_params);
    jv_adam_step(&c->adam, c->adam_params, c->grads, c->adam_m, c->adam_v, c->M->n_params, ++c->adam_step,
                 norm);
    return now() - t0;
}

/* ---------------------------------------------------------- results -- */

typedef struct {
    const char *name;
    size_t n_params, n_calls, nf;
    int reps;
    double gflop;
    double gemm, gemm_f, gemm_b, step, step_f, step_b, fwd, adam;
    double ratio, ratio_lo, ratio_hi, ratio_adam;
    double seconds;
    char *detail; /* the per-op table */
} model_result;

/* Prints to stdout and, when given, to a second stream. */
static void out2(FILE *extra, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void out2(FILE *extra, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (extra) {
        va_start(ap, fmt);
        vfprintf(extra, fmt, ap);
        va_end(ap);
    }
}

static double ms(double s)
{
    return 1e3 * s;
}

static void print_breakdown(FILE *dst, const bench_ctx *c, const double *seg, const double *calls, int reps,
                            int top, const seg_name *names, int named)
{
    size_t n = c->n_calls, nf = c->nf, nseg = n + 2;
    double *rest = xalloc(nseg * sizeof *rest), *seg_med = xalloc(nseg * sizeof *seg_med);
    double *gemm_med = xalloc(nseg * sizeof *gemm_med);
    size_t *order = xalloc(nseg * sizeof *order);
    for (size_t j = 0; j < nseg; j++) {
        seg_med[j] = median(seg + j, (size_t)reps, nseg);
        gemm_med[j] = 0;
    }
    for (size_t i = 0; i < n; i++)
        gemm_med[seg_of_call(i, nf)] = median(calls + i, (size_t)reps, n);
    double total = 0;
    for (size_t j = 0; j < nseg; j++) {
        rest[j] = seg_med[j] - gemm_med[j];
        total += rest[j];
        order[j] = j;
    }
    for (size_t a = 1; a < nseg; a++) /* insertion sort by rest, descending */
        for (size_t b = a; b > 0 && rest[order[b]] > rest[order[b - 1]]; b--) {
            size_t t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    fprintf(
        dst,
        "\n%s: where the time outside GEMMs goes (segment = one GEMM and the code after it, up to the next;\n"
        "non-GEMM = segment median - that GEMM's replay median; sum of all %zu segments: %.3f ms)\n",
        c->M->name, nseg, ms(total));
    fprintf(dst, "  %8s %8s %8s  %-26s %s\n", "non-GEMM", "segment", "GEMM", "segment", "emitted blocks");
    for (int r = 0; r < top && (size_t)r < nseg; r++) {
        size_t j = order[r];
        char what[64];
        if (j == 0)
            snprintf(what, sizeof what, "fwd, before its 1st GEMM");
        else if (j == 1 + nf)
            snprintf(what, sizeof what, "bwd, before its 1st GEMM");
        else {
            size_t i = j < 1 + nf ? j - 1 : j - 2;
            const gemm_call *g = &hook.calls[i];
            snprintf(what, sizeof what, "%s #%-2zu %c%c %dx%dx%d%s", g->phase == PHASE_FWD ? "fwd" : "bwd",
                     g->phase == PHASE_FWD ? i : i - nf, g->trans_a ? 'T' : 'N', g->trans_b ? 'T' : 'N', g->m,
                     g->n, g->k, g->beta != 0 ? " +=" : "");
        }
        fprintf(dst, "  %8.3f %8.3f %8.3f  %-26s %s\n", ms(rest[j]), ms(seg_med[j]), ms(gemm_med[j]), what,
                named ? names[j].text : "");
    }
    free(rest);
    free(seg_med);
    free(gemm_med);
    free(order);
}

static model_result bench_model(const jv_model *M, const options *o)
{
    double began = now();
    bench_ctx c;
    setup(&c, M, o->batch);
    record(&c);
    size_t n = c.n_calls, nseg = n + 2;
    hook.stamps = xalloc((n + 1) * sizeof *hook.stamps);
    hook.stamp_cap = n + 1;

    int R = o->reps;
    double *t_step = xalloc((size_t)R * sizeof(double)), *t_sf = xalloc((size_t)R * sizeof(double));
    double *t_sb = xalloc((size_t)R * sizeof(double)), *t_gemm = xalloc((size_t)R * sizeof(double));
    double *t_gf = xalloc((size_t)R * sizeof(double)), *t_gb = xalloc((size_t)R * sizeof(double));
    double *t_fwd = xalloc((size_t)R * sizeof(double)), *t_adam = xalloc((size_t)R * sizeof(double));
    double *ratio = xalloc((size_t)R * sizeof(double)), *ratio_adam = xalloc((size_t)R * sizeof(double));
    double *seg = xalloc((size_t)R * nseg * sizeof(double)),
           *calls = xalloc((size_t)R * (n + 1) * sizeof(double));

    double phase_s[2], f, b;
    for (int w = 0; w < o->warmup; w++) {
        timed_step(&c, seg, &f, &b);
        replay(&c, calls, phase_s);
        timed_forward(&c);
        timed_adam(&c);
    }
    double start = now();
    int r = 0;
    for (; r < R; r++) {
        if (r >= o->min_reps && now() - start > o->budget)
            break;
        double *srow = seg + (size_t)r * nseg, *crow = calls + (size_t)r * n;
        if (r % 2 == 0) {
            t_step[r] = timed_step(&c, srow, &t_sf[r], &t_sb[r]);
            t_gemm[r] = replay(&c, crow, phase_s);
        } else {
            t_gemm[r] = replay(&c, crow, phase_s);
            t_step[r] = timed_step(&c, srow, &t_sf[r], &t_sb[r]);
        }
        t_gf[r] = phase_s[PHASE_FWD];
        t_gb[r] = phase_s[PHASE_BWD];
        t_fwd[r] = timed_forward(&c);
        t_adam[r] = timed_adam(&c);
        ratio[r] = t_step[r] / t_gemm[r];
        ratio_adam[r] = (t_step[r] + t_adam[r]) / t_gemm[r];
    }
    size_t reps = (size_t)r;

    model_result res;
    memset(&res, 0, sizeof res);
    res.name = M->name;
    res.n_params = M->n_params;
    res.n_calls = n;
    res.nf = c.nf;
    res.reps = r;
    for (size_t i = 0; i < n; i++) {
        const gemm_call *g = &hook.calls[i];
        res.gflop += 2e-9 * (double)g->m * (double)g->n * (double)g->k;
    }
    res.gemm = median(t_gemm, reps, 1);
    res.gemm_f = median(t_gf, reps, 1);
    res.gemm_b = median(t_gb, reps, 1);
    res.step = median(t_step, reps, 1);
    res.step_f = median(t_sf, reps, 1);
    res.step_b = median(t_sb, reps, 1);
    res.fwd = median(t_fwd, reps, 1);
    res.adam = median(t_adam, reps, 1);
    res.ratio = median(ratio, reps, 1);
    res.ratio_lo = quantile(ratio, reps, 1, 0.25);
    res.ratio_hi = quantile(ratio, reps, 1, 0.75);
    res.ratio_adam = median(ratio_adam, reps, 1);

    seg_name *names = xalloc(nseg * sizeof *names);
    memset(names, 0, nseg * sizeof *names);
    int named = 0;
    if (o->src_dir) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s/%s.c", o->src_dir, M->name, M->name);
        named = name_segments(path, M->name, names, n, c.nf) == 0;
        if (!named)
            fprintf(stderr, "bench: could not name the segments of %s from %s\n", M->name, path);
    }
    size_t detail_len = 0;
    FILE *detail = open_memstream(&res.detail, &detail_len);
    if (!detail) {
        perror("open_memstream");
        exit(1);
    }
    if (o->top > 0)
        print_breakdown(detail, &c, seg, calls, r, o->top, names, named);
    fclose(detail);

    free(names);
    free(t_step);
    free(t_sf);
    free(t_sb);
    free(t_gemm);
    free(t_gf);
    free(t_gb);
    free(t_fwd);
    free(t_adam);
    free(ratio);
    free(ratio_adam);
    free(seg);
    free(calls);
    free(hook.stamps);
    hook.stamps = NULL;
    hook.stamp_cap = 0;
    hook.cap = 0;
    free(hook.calls);
    hook.calls = NULL;
    hook.n = 0;
    teardown(&c);
    res.seconds = now() - began;
    printf("%s: %d repetitions in %.1f s\n", res.name, res.reps, res.seconds);
    return res;
}

static void cpu_name(char *buf, size_t size)
{
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 2;
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, size, "%s", colon);
            break;
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    options o = parse_options(argc, argv);
    jv_set_threads(o.threads);
    setvbuf(stdout, NULL, _IOLBF, 0);

    FILE *rf = NULL;
    if (o.out && !(rf = fopen(o.out, "w"))) {
        perror(o.out);
        return 1;
    }
    char date[64], cpu[256];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    cpu_name(cpu, sizeof cpu);
    out2(rf, "jmvaec benchmark, %s, %s\n", date, cpu);
    out2(rf,
         "one training step at batch %d on %d BLAS thread%s; models compiled with %s; "
         "up to %d repetitions after %d warm-up\n",
         o.batch, o.threads, o.threads == 1 ? "" : "s", o.flags ? o.flags : "(see Makefile)", o.reps,
         o.warmup);

    model_result res[N_MODELS];
    for (size_t i = 0; i < N_MODELS; i++)
        res[i] = bench_model(all_models[i], &o);

    out2(rf,
         "\nmedians in ms; step = forward + backward; gemm = its GEMM calls alone, replayed;\n"
         "step/gemm = median of per-repetition ratios [quartiles]; non-GEMM = 1 - gemm/step at that ratio;\n"
         "target: step/gemm <= 1.15\n\n");
    out2(rf, "%-10s %9s %5s %7s %7s %7s %6s %-18s %8s %6s\n", "model", "params", "GEMMs", "GFLOP", "gemm",
         "step", "GF/s", "step/gemm", "non-GEMM", "target");
    for (size_t i = 0; i < N_MODELS; i++) {
        const model_result *m = &res[i];
        char q[32];
        snprintf(q, sizeof q, "%.3f [%.3f-%.3f]", m->ratio, m->ratio_lo, m->ratio_hi);
        out2(rf, "%-10s %9zu %5zu %7.3f %7.2f %7.2f %6.1f %-18s %7.1f%% %6s\n", m->name, m->n_params,
             m->n_calls, m->gflop, ms(m->gemm), ms(m->step), m->gflop / m->gemm, q, 100 * (1 - 1 / m->ratio),
             m->ratio <= 1.15 ? "met" : "missed");
    }
    out2(rf, "\nparts (medians in ms): fwd = forward alone; its gemm = the forward's GEMMs in the replay;\n"
             "bwd = the backward half of step; adam = gradient norm + jv_adam_step over every parameter\n\n");
    out2(rf, "%-10s %4s %8s %7s %6s %8s %7s %6s %7s %16s\n", "model", "reps", "fwd-gemm", "fwd", "ratio",
         "bwd-gemm", "bwd", "ratio", "adam", "(step+adam)/gemm");
    for (size_t i = 0; i < N_MODELS; i++) {
        const model_result *m = &res[i];
        out2(rf, "%-10s %4d %8.2f %7.2f %6.3f %8.2f %7.2f %6.3f %7.2f %16.3f\n", m->name, m->reps,
             ms(m->gemm_f), ms(m->fwd), m->fwd / m->gemm_f, ms(m->gemm_b), ms(m->step_b),
             m->step_b / m->gemm_b, ms(m->adam), m->ratio_adam);
    }
    for (size_t i = 0; i < N_MODELS; i++) {
        out2(rf, "%s", res[i].detail);
        free(res[i].detail);
    }
    if (rf) {
        fclose(rf);
        printf("\nwritten: %s\n", o.out);
    }
    return 0;
}
