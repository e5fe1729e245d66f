/* bench.c: the driver behind `make bench` (a plain program, not a Criterion
 * suite, hence not named test_*.c).
 *
 * Every model it is linked with (bench_models.h, written by the Makefile,
 * lists them as X(name)) is emitted with -DJV_GEMM_HOOK, so each jv_gemm
 * first calls jv_gemm_hook below. For each model, at a fixed batch, with
 * fixed random data (Bernoulli targets in [0,1], one-hot labels) and noise,
 * and for each thread count T of --threads:
 *   1. one step is run task by task with the hook recording every GEMM's
 *      shape (trans flags, m, n, k, beta) and the task that called it;
 *   2. then, repetition after repetition, interleaved (the order rotates):
 *        step  forward + backward: the step graph on a team of T threads, as
 *              the trainer runs it (each gradient region's sum of squares
 *              included)
 *        gemm  the yardstick: exactly the recorded GEMMs, on buffers of their
 *              own (row-major: lda = trans_a ? m : k, ldb = trans_b ? k : n,
 *              ldc = n), spread over the T threads as evenly as their times
 *              allow and with no order between them
 *        adam  the optimiser step as the trainer takes it: the norm from the
 *              regions' sums, Adam on T ranges (on copies of the parameters)
 *        norm  the gradient's sum of squares over the whole block as a pass
 *              of its own, plus adam: the cost of the optimiser on its own,
 *              reported per parameter
 *   3. medians are reported, with the ratios (medians of the per-repetition
 *      ratios, with quartiles) against the targets.
 * At T = 1 the step also runs task by task with a time stamp around each;
 * a task's time less the replay time of its GEMMs is its code outside
 * GEMMs, and the tasks where most of it goes are listed.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jv_model.h"
#include "jv_runtime.h"

#ifdef JV_DOUBLE
#error "the benchmark measures single precision (jv_adam_update takes float)"
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
#define MAX_THREAD_COUNTS 8

/* ------------------------------------------------------------ options -- */

typedef struct {
    int batch, reps, warmup, min_reps, top;
    int threads[MAX_THREAD_COUNTS], n_threads;
    double budget; /* seconds of measurement per model and thread count, after min_reps */
    const char *out, *flags;
} options;

static void usage(void)
{
    fprintf(stderr, "usage: bench [--batch N] [--reps N] [--min-reps N] [--warmup N] [--budget SECONDS]\n"
                    "             [--threads T[,T...]] [--top N] [--flags TEXT] [--out FILE]\n");
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

static void thread_list(options *o, const char *s)
{
    o->n_threads = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 256 || o->n_threads == MAX_THREAD_COUNTS)
            usage();
        o->threads[o->n_threads++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            usage();
    }
    if (o->n_threads == 0)
        usage();
}

static options parse_options(int argc, char **argv)
{
    options o = {.batch = 100, .reps = 100, .warmup = 5, .min_reps = 20, .top = 10, .budget = 20.0};
    thread_list(&o, "1,2");
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
            thread_list(&o, v);
        else if (strcmp(a, "--top") == 0)
            o.top = int_arg(v);
        else if (strcmp(a, "--budget") == 0)
            o.budget = atof(v);
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
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

/* As the trainer allocates its blocks (huge pages advised for large ones). */
static float *alloc_reals(size_t n)
{
    float *p = jv_alloc_large((n ? n : 1) * sizeof(float), 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu reals)\n", n);
        exit(1);
    }
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

static double ms(double s)
{
    return 1e3 * s;
}

/* ---------------------------------------------------------- the hook -- */

typedef struct {
    int trans_a, trans_b, m, n, k, task;
    double beta;
} gemm_call;

static struct {
    int recording, task;
    size_t n, cap;
    gemm_call *calls;
} hook;

void jv_gemm_hook(int trans_a, int trans_b, int m, int n, int k, double beta)
{
    if (!hook.recording)
        return;
    if (hook.n == hook.cap) {
        hook.cap = hook.cap ? 2 * hook.cap : 64;
        gemm_call *grown = realloc(hook.calls, hook.cap * sizeof *grown);
        if (!grown) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
        hook.calls = grown;
    }
    hook.calls[hook.n++] = (gemm_call){trans_a, trans_b, m, n, k, hook.task, beta};
}

/* ------------------------------------------------------ one model -- */

typedef struct {
    const jv_model *M;
    int batch;
    float *params, *grads, *arena, *adam_params, *adam_m, *adam_v, *terms;
    double *sumsq;
    const float **data, **noise;
    float **owned;
    int n_owned;
    jv_adam_config adam;
    long adam_step;
    /* the GEMMs of one step, and their replay */
    size_t n_calls;
    gemm_call *calls;
    float **ra, **rb, **rc;
    double *call_time;   /* one thread's replay median of each call */
    int *member_of;      /* the team member that replays each call */
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
    c->sumsq = xalloc(((size_t)M->train->n_slots + 1) * sizeof *c->sumsq);
    M->init(c->params, 1);
    memcpy(c->adam_params, c->params, np * sizeof *c->params);
    c->adam = (jv_adam_config){M->defaults.lr, M->defaults.beta1, M->defaults.beta2, M->defaults.eps,
                               M->defaults.clip};
    c->data = xalloc(((size_t)M->n_modalities + 1) * sizeof *c->data);
    c->noise = xalloc(((size_t)M->n_draws + 1) * sizeof *c->noise);
    c->owned = xalloc(((size_t)M->n_modalities + (size_t)M->n_draws) * sizeof *c->owned);
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
    for (int d = 0; d < M->n_draws; d++) { /* the step's noise: each draw's, K rows an example */
        size_t n = (size_t)batch * (size_t)(M->samples > 1 ? M->samples : 1) * (size_t)M->latents[M->draw_latents[d]].size;
        float *e = alloc_reals(n);
        jv_rng_fill_normal(&rng, e, n);
        c->noise[d] = e;
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
    free(c->calls);
    free(c->call_time);
    free(c->member_of);
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
    free(c->sumsq);
}

static jv_step step_args(bench_ctx *c, jv_real *loss)
{
    return (jv_step){c->params, c->grads, c->arena, c->batch, c->data, c->noise, NULL, NULL, c->terms, loss,
                     c->sumsq, 0};
}

/* Records the GEMMs of one step, task by task, and makes the replay's buffers. */
static void record(bench_ctx *c)
{
    const jv_task_graph *g = c->M->train;
    jv_real loss;
    jv_step s = step_args(c, &loss);
    hook.n = 0;
    hook.recording = 1;
    for (int k = 0; k < g->n_tasks; k++) {
        hook.task = k;
        g->tasks[k].run(&s);
    }
    hook.recording = 0;
    c->n_calls = hook.n;
    c->calls = xalloc((c->n_calls + 1) * sizeof *c->calls);
    memcpy(c->calls, hook.calls, c->n_calls * sizeof *c->calls);
    c->ra = xalloc((c->n_calls + 1) * sizeof *c->ra);
    c->rb = xalloc((c->n_calls + 1) * sizeof *c->rb);
    c->rc = xalloc((c->n_calls + 1) * sizeof *c->rc);
    c->call_time = xalloc((c->n_calls + 1) * sizeof *c->call_time);
    c->member_of = xalloc((c->n_calls + 1) * sizeof *c->member_of);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < c->n_calls; i++) {
        const gemm_call *q = &c->calls[i];
        size_t sa = (size_t)q->m * (size_t)q->k, sb = (size_t)q->k * (size_t)q->n, sc = (size_t)q->m * (size_t)q->n;
        c->ra[i] = alloc_reals(sa);
        c->rb[i] = alloc_reals(sb);
        c->rc[i] = alloc_reals(sc);
        fill_signed(c->ra[i], sa, &state);
        fill_signed(c->rb[i], sb, &state);
        fill_signed(c->rc[i], sc, &state);
    }
}

static void replay_call(bench_ctx *c, size_t i)
{
    const gemm_call *q = &c->calls[i];
    jv_gemm(q->trans_a, q->trans_b, q->m, q->n, q->k, 1, c->ra[i], q->trans_a ? q->m : q->k, c->rb[i],
            q->trans_b ? q->k : q->n, (jv_real)q->beta, c->rc[i], q->n);
}

/* One thread's replay time of every call (medians over reps), for the
 * spread over the team and the per-task table. */
static void time_calls(bench_ctx *c, int reps)
{
    double *t = xalloc((size_t)reps * (c->n_calls + 1) * sizeof *t);
    for (int r = 0; r < reps; r++)
        for (size_t i = 0; i < c->n_calls; i++) {
            double t0 = now();
            replay_call(c, i);
            t[(size_t)r * c->n_calls + i] = now() - t0;
        }
    for (size_t i = 0; i < c->n_calls; i++)
        c->call_time[i] = median(t + i, (size_t)reps, c->n_calls);
    free(t);
}

/* Longest first, each call to the member with the least work so far. */
static void spread_calls(bench_ctx *c, int members)
{
    double load[256] = {0};
    char *done = xalloc(c->n_calls + 1);
    for (size_t placed = 0; placed < c->n_calls; placed++) {
        size_t best = 0;
        double longest = -1;
        for (size_t i = 0; i < c->n_calls; i++)
            if (!done[i] && c->call_time[i] > longest) {
                longest = c->call_time[i];
                best = i;
            }
        int least = 0;
        for (int m = 1; m < members; m++)
            least = load[m] < load[least] ? m : least;
        c->member_of[best] = least;
        load[least] += c->call_time[best];
        done[best] = 1;
    }
    free(done);
}

static void replay_member(void *arg, int id, int n)
{
    (void)n;
    bench_ctx *c = arg;
    for (size_t i = 0; i < c->n_calls; i++)
        if (c->member_of[i] == id)
            replay_call(c, i);
}

typedef struct {
    bench_ctx *c;
    double scale;
    int with_norm;
    double part[256];
} opt_job;

static void opt_member(void *arg, int id, int n)
{
    opt_job *j = arg;
    bench_ctx *c = j->c;
    size_t lo, hi;
    jv_split_range(c->M->n_params, 16, id, n, &lo, &hi);
    if (j->with_norm)
        j->part[id] = jv_sumsq_f32(c->grads + lo, hi - lo);
    jv_adam_update(&c->adam, c->adam_params, c->grads, c->adam_m, c->adam_v, lo, hi, c->adam_step, j->scale);
}

/* The optimiser step: the norm from the regions' sums (with_norm: from a
 * pass of its own over the gradient), then Adam on the team. */
static double timed_opt(bench_ctx *c, jv_team *team, int with_norm)
{
    double t0 = now();
    double sum = 0;
    for (int k = 0; k < c->M->train->n_slots && !with_norm; k++)
        sum += c->sumsq[k];
    opt_job j = {c, with_norm ? 1.0 : jv_clip_factor(c->adam.clip, sqrt(sum)), with_norm, {0}};
    c->adam_step++;
    jv_team_run(team, opt_member, &j);
    return now() - t0;
}

/* The step graph alone, or (pipelined) with the previous step's Adam
 * update inside it, on the parameters the step reads, as the trainer runs it. */
static double timed_step(bench_ctx *c, jv_team *team, jv_graph_runner *runner, int pipelined)
{
    jv_real loss;
    jv_step s = step_args(c, &loss);
    double sum = 0;
    for (int k = 0; k < c->M->train->n_slots; k++)
        sum += c->sumsq[k];
    jv_adam_pass pass = {&c->adam, c->params, c->grads, c->adam_m, c->adam_v, ++c->adam_step,
                         jv_clip_factor(c->adam.clip, sqrt(sum))};
    double t0 = now();
    jv_team_run_graph(team, runner, &s, 0, pipelined ? &pass : NULL);
    return now() - t0;
}

static double timed_replay(bench_ctx *c, jv_team *team)
{
    double t0 = now();
    jv_team_run(team, replay_member, c);
    return now() - t0;
}

/* ---------------------------------------------------------- results -- */

typedef struct {
    int threads, reps;
    double gemm, step, opt, both, norm_adam;
    double ratio, ratio_lo, ratio_hi; /* both / gemm */
    double step_ratio;                /* step / gemm */
} thread_result;

typedef struct {
    const char *name;
    size_t n_params, n_calls;
    int n_tasks;
    double gflop, gemm1; /* the GEMMs one after another on one thread */
    thread_result t[MAX_THREAD_COUNTS];
    char *detail;
} model_result;

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

static thread_result bench_threads(bench_ctx *c, const options *o, int threads)
{
    jv_error err;
    jv_team *team = jv_team_new(threads, &err);
    jv_graph_runner *runner = jv_graph_runner_new(c->M->train, &err);
    if (!team || !runner) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    spread_calls(c, threads);
    int R = o->reps;
    double *t_step = xalloc((size_t)R * sizeof(double)), *t_gemm = xalloc((size_t)R * sizeof(double));
    double *t_opt = xalloc((size_t)R * sizeof(double)), *t_norm = xalloc((size_t)R * sizeof(double));
    double *t_both = xalloc((size_t)R * sizeof(double));
    double *ratio = xalloc((size_t)R * sizeof(double)), *step_ratio = xalloc((size_t)R * sizeof(double));
    for (int w = 0; w < o->warmup; w++) {
        timed_step(c, team, runner, 0);
        timed_step(c, team, runner, 1);
        timed_replay(c, team);
        timed_opt(c, team, 0);
        timed_opt(c, team, 1);
    }
    double start = now();
    int r = 0;
    for (; r < R; r++) {
        if (r >= o->min_reps && now() - start > o->budget)
            break;
        /* the order rotates, so that none always follows another */
        for (int part = 0; part < 4; part++)
            switch ((part + r) % 4) {
            case 0:
                t_step[r] = timed_step(c, team, runner, 0);
                t_opt[r] = timed_opt(c, team, 0);
                break;
            case 1:
                t_gemm[r] = timed_replay(c, team);
                break;
            case 2:
                t_both[r] = timed_step(c, team, runner, 1);
                break;
            default:
                t_norm[r] = timed_opt(c, team, 1);
                break;
            }
        ratio[r] = t_both[r] / t_gemm[r];
        step_ratio[r] = t_step[r] / t_gemm[r];
    }
    size_t reps = (size_t)r;
    thread_result res = {threads,
                         r,
                         median(t_gemm, reps, 1),
                         median(t_step, reps, 1),
                         median(t_opt, reps, 1),
                         median(t_both, reps, 1),
                         median(t_norm, reps, 1),
                         median(ratio, reps, 1),
                         quantile(ratio, reps, 1, 0.25),
                         quantile(ratio, reps, 1, 0.75),
                         median(step_ratio, reps, 1)};
    free(t_step);
    free(t_gemm);
    free(t_opt);
    free(t_both);
    free(t_norm);
    free(ratio);
    free(step_ratio);
    jv_graph_runner_free(runner);
    jv_team_free(team);
    return res;
}

/* One thread, task by task: where the time outside GEMMs goes. */
static void task_table(FILE *dst, bench_ctx *c, const options *o)
{
    const jv_task_graph *g = c->M->train;
    int n = g->n_tasks, reps = o->min_reps > 5 ? o->min_reps : 5;
    double *t = xalloc((size_t)reps * (size_t)n * sizeof *t), *task_ms = xalloc((size_t)n * sizeof *task_ms);
    double *gemm = xalloc((size_t)n * sizeof *gemm), *rest = xalloc((size_t)n * sizeof *rest);
    int *order = xalloc((size_t)n * sizeof *order), *calls = xalloc((size_t)n * sizeof *calls);
    jv_real loss;
    jv_step s = step_args(c, &loss);
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < n; k++) {
            double t0 = now();
            g->tasks[k].run(&s);
            t[(size_t)r * (size_t)n + (size_t)k] = now() - t0;
        }
    for (size_t i = 0; i < c->n_calls; i++) {
        gemm[c->calls[i].task] += c->call_time[i];
        calls[c->calls[i].task]++;
    }
    double total = 0, total_gemm = 0;
    for (int k = 0; k < n; k++) {
        task_ms[k] = median(t + k, (size_t)reps, (size_t)n);
        rest[k] = task_ms[k] - gemm[k];
        total += task_ms[k];
        total_gemm += gemm[k];
        order[k] = k;
    }
    for (int a = 1; a < n; a++) /* by time outside GEMMs, most first */
        for (int b = a; b > 0 && rest[order[b]] > rest[order[b - 1]]; b--) {
            int x = order[b];
            order[b] = order[b - 1];
            order[b - 1] = x;
        }
    fprintf(dst,
            "\n%s: the %d tasks run one by one on one thread, %.2f ms in all, %.2f ms of it in GEMMs (replay);\n"
            "where the rest goes (task median - its GEMMs' replay medians), most first:\n",
            c->M->name, n, ms(total), ms(total_gemm));
    fprintf(dst, "  %8s %8s %8s  %-5s %s\n", "non-GEMM", "task", "GEMMs", "line", "task");
    for (int r = 0; r < o->top && r < n; r++) {
        int k = order[r];
        fprintf(dst, "  %8.3f %8.3f %8.3f  %-5d %s (%d GEMM%s)\n", ms(rest[k]), ms(task_ms[k]), ms(gemm[k]),
                g->tasks[k].line, g->tasks[k].name, calls[k], calls[k] == 1 ? "" : "s");
    }
    free(t);
    free(task_ms);
    free(gemm);
    free(rest);
    free(order);
    free(calls);
}

static model_result bench_model(const jv_model *M, const options *o)
{
    double began = now();
    bench_ctx c;
    setup(&c, M, o->batch);
    record(&c);
    time_calls(&c, o->min_reps > 5 ? o->min_reps : 5);
    model_result res;
    memset(&res, 0, sizeof res);
    res.name = M->name;
    res.n_params = M->n_params;
    res.n_calls = c.n_calls;
    res.n_tasks = M->train->n_tasks;
    for (size_t i = 0; i < c.n_calls; i++) {
        res.gflop += 2e-9 * (double)c.calls[i].m * (double)c.calls[i].n * (double)c.calls[i].k;
        res.gemm1 += c.call_time[i];
    }
    for (int i = 0; i < o->n_threads; i++) {
        res.t[i] = bench_threads(&c, o, o->threads[i]);
        printf("%s, %d thread%s: %d repetitions\n", M->name, o->threads[i], o->threads[i] == 1 ? "" : "s",
               res.t[i].reps);
    }
    size_t len = 0;
    FILE *detail = open_memstream(&res.detail, &len);
    if (!detail) {
        perror("open_memstream");
        exit(1);
    }
    if (o->top > 0)
        task_table(detail, &c, o);
    fclose(detail);
    teardown(&c);
    printf("%s: %.1f s\n", M->name, now() - began);
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

static double target_for(int threads)
{
    return threads == 1 ? 1.15 : 1.25;
}

int main(int argc, char **argv)
{
    jv_blas_auto(argv); /* the kernel the trainers run: may start the benchmark again */
    options o = parse_options(argc, argv);
    jv_set_threads(1);
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
    out2(rf, "jmvaec benchmark, %s, %s, %d cores\n", date, cpu, jv_cpu_count());
    out2(rf, "BLAS: %s; optimiser: %s\n", jv_blas_describe(), jv_simd_describe());
    out2(rf,
         "one training step at batch %d; models compiled with %s; up to %d repetitions (at least %d, "
         "about %.0f s) after %d warm-up\n",
         o.batch, o.flags ? o.flags : "(see Makefile)", o.reps, o.min_reps, o.budget, o.warmup);
    model_result res[N_MODELS];
    for (size_t i = 0; i < N_MODELS; i++)
        res[i] = bench_model(all_models[i], &o);

    out2(rf, "\nmedians in ms, per step; T threads, each GEMM on the thread that calls it;\n"
             "gemm  = the step's GEMM calls alone, spread over the T threads as evenly as their times allow;\n"
             "step  = forward + backward, the step graph on T threads (the gradient norm's sums included);\n"
             "adam  = the optimiser step on its own (clipping, Adam over every parameter on T threads);\n"
             "both  = the trainer's step: the previous step's Adam update inside the step graph;\n"
             "ratio = both / gemm, median of per-repetition ratios [quartiles]; target <= 1.15 on one\n"
             "        thread, <= 1.25 on two or more;\n"
             "ns/p  = adam in ns per parameter; opt = a pass of its own for the norm + Adam, the same\n"
             "        (target for the optimiser: <= 1 ns a parameter on one thread)\n\n");
    out2(rf, "%-10s %2s %9s %5s %7s %7s %7s %7s %7s %5s %-20s %6s %5s %5s\n", "model", "T", "params", "GEMMs",
         "GFLOP", "gemm", "step", "adam", "both", "GF/s", "ratio", "target", "ns/p", "opt");
    for (size_t i = 0; i < N_MODELS; i++)
        for (int k = 0; k < o.n_threads; k++) {
            const model_result *m = &res[i];
            const thread_result *r = &m->t[k];
            char q[40];
            snprintf(q, sizeof q, "%.3f [%.3f-%.3f]", r->ratio, r->ratio_lo, r->ratio_hi);
            out2(rf, "%-10s %2d %9zu %5zu %7.3f %7.2f %7.2f %7.2f %7.2f %5.0f %-20s %6s %5.2f %5.2f\n", m->name,
                 r->threads, m->n_params, m->n_calls, m->gflop, ms(r->gemm), ms(r->step), ms(r->opt), ms(r->both),
                 m->gflop / r->both, q, r->ratio <= target_for(r->threads) ? "met" : "missed",
                 1e9 * r->opt / (double)m->n_params, 1e9 * r->norm_adam / (double)m->n_params);
        }
    if (o.n_threads > 1) {
        out2(rf, "\nspeed-up of the trainer's step (both) over %d thread%s:\n", o.threads[0],
             o.threads[0] == 1 ? "" : "s");
        for (size_t i = 0; i < N_MODELS; i++) {
            const model_result *m = &res[i];
            out2(rf, "  %-10s", m->name);
            for (int k = 1; k < o.n_threads; k++)
                out2(rf, "  T=%d: %.2fx", m->t[k].threads, m->t[0].both / m->t[k].both);
            out2(rf, "\n");
        }
    }
    for (size_t i = 0; i < N_MODELS; i++) {
        out2(rf, "%s", res[i].detail);
        free(res[i].detail);
    }
    free(hook.calls);
    if (rf) {
        fclose(rf);
        printf("\nwritten: %s\n", o.out);
    }
    return 0;
}
