/* jv_trainer_eval.c: the eval subcommand. Per test example: the objective
 * and its terms (one noisy forward pass), importance-sampled log p of the
 * joint, of each modality and (beyond two modalities) of each pair, the
 * ELBO from the same samples, conditionals log p(a|b) = log p(a,b) - log p(b),
 * and for each categorical modality the accuracy of predicting it from each
 * other modality. Means with standard errors over the examples go to a
 * table on stdout and, with --json, to a JSON file.
 *
 * A set S of modalities uses the family conditioned on exactly S as its
 * proposal; when there is none, the training family with the modalities
 * outside S fed as zeros (the JMVAE-zero rule), or with --fallback joint,
 * fed the real data (the proposal of Suzuki et al. for log p(x)).
 */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "jv_trainer_int.h"

typedef struct {
    jv_opt_list data;
    int samples, batch, limit, threads;
    uint64_t seed;
    const char *checkpoint, *json, *fallback;
} eval_opts;

/* A set of modalities whose log-likelihood is estimated. */
typedef struct {
    unsigned mask;
    int family;
    unsigned zeroed;  /* inputs the proposal reads as zeros */
    int exact;        /* the family conditions on exactly this set */
    double *log_p;    /* per example */
    jv_stat stat;
} subset;

/* Predicting categorical modality `target` from modality `from` alone. */
typedef struct {
    int target, from;
    int imputed;      /* the zero rule gave the posterior */
    unsigned char *correct; /* per example */
    jv_stat stat;
} prediction;

/* What one thread of the team works in. */
typedef struct {
    jv_work w;
    double *log_w;    /* [max(samples, batch)]: one example's K log weights, or a batch of several examples' */
    size_t *rows;     /* [batch]: example indices of a batch */
} eval_member;

typedef struct {
    const jv_model *m;
    eval_opts o;
    jv_dataset ds;
    jv_real *params;
    jv_team *team;
    eval_member *members;    /* one per thread */
    int n_subsets, n_predictions;
    subset *subsets;         /* the joint, each modality, then each pair */
    prediction *predictions;
    double *ex_loss, *ex_elbo, *ex_terms; /* per example (terms: [n_terms x examples]) */
    jv_stat elbo, loss, *terms;
    atomic_size_t next;      /* the next piece of work a member takes */
    atomic_size_t done;      /* examples finished, for the progress line */
    double start;
    jv_progress bar;
} evaluator;

static const char EVAL_ABOUT[] =
    "Estimates, over the test examples, the ELBO, the objective and its terms, the\n"
    "log-likelihood of the joint and of each modality with K importance samples,\n"
    "every conditional log p(a|b), and the accuracy of predicting each categorical\n"
    "modality from each other one. Prints a table; --json writes every number.";

/* ------------------------------------------------------------ options -- */

/* Rows a model call takes by default: up to 1000 (larger calls run the
 * GEMMs faster: 200 test images at K = 1000 took 7.0 s in calls of 100,
 * 6.2 s in calls of 250 and 5.9 s in calls of 1000), as long as a thread's
 * arena stays within 16 MiB; never fewer than the spec's batch. */
static int default_eval_batch(const jv_model *m)
{
    int spec = m->defaults.batch > 0 ? m->defaults.batch : 100;
    size_t row_bytes = (m->arena_per_example ? m->arena_per_example : 1) * sizeof(jv_real);
    size_t fit = ((size_t)16 << 20) / row_bytes;
    int rows = fit < 1000 ? (int)(fit > 0 ? fit : 1) : 1000;
    return rows > spec ? rows : spec;
}

static int parse_eval_options(evaluator *e, int argc, char **argv)
{
    const jv_train_defaults *d = &e->m->defaults;
    eval_opts *o = &e->o;
    *o = (eval_opts){.samples = 1000, .batch = default_eval_batch(e->m), .threads = jv_cpu_count(), .seed = d->seed,
                     .fallback = "zero"};
    jv_option opts[] = {
        {"checkpoint", JV_OPT_STRING, &o->checkpoint, 0, 0, "CKPT", "the trained model (required)", 0},
        {"data", JV_OPT_LIST, &o->data, 0, 0, "NAME=FILE", "the test data of a modality (one per modality)", 0},
        {"samples", JV_OPT_INT, &o->samples, 1, INT_MAX, "K", "importance samples per example", 0},
        {"batch", JV_OPT_INT, &o->batch, 1, INT_MAX, "B",
         "samples (or examples) per model call (default: up to 1000, 16 MiB of arena a thread)", 0},
        {"limit", JV_OPT_INT, &o->limit, 0, INT_MAX, "N", "use only the first N examples, 0 for all", 0},
        {"json", JV_OPT_STRING, &o->json, 0, 0, "FILE", "also write every number to FILE as JSON", 0},
        {"seed", JV_OPT_U64, &o->seed, 0, 1.8446744073709552e19, "S", "seed of the samples", 0},
        {"threads", JV_OPT_INT, &o->threads, 1, 1024, "T",
         "threads (default: the cores this process may use); the results are the same for every T", 0},
        {"fallback", JV_OPT_STRING, &o->fallback, 0, 0, "zero|joint",
         "proposal for a set without its own family: zeros for the rest, or the real data", 0},
    };
    int rc = jv_parse_options("eval", "--checkpoint CKPT --data NAME=FILE ... [options]", EVAL_ABOUT, opts,
                              (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc != 0)
        return rc;
    if (!o->checkpoint)
        return jv_fail("eval: missing --checkpoint CKPT");
    if (strcmp(o->fallback, "zero") != 0 && strcmp(o->fallback, "joint") != 0)
        return jv_fail("eval: --fallback must be zero or joint, got '%s'", o->fallback);
    return o->json ? jv_check_output_path("eval", "json", o->json) : 0;
}

/* ------------------------------------------------------------- set up -- */

static int add_subset(evaluator *e, unsigned mask)
{
    for (int s = 0; s < e->n_subsets; s++)
        if (e->subsets[s].mask == mask)
            return 0;
    subset *s = &e->subsets[e->n_subsets++];
    s->mask = mask;
    s->family = jv_pick_family(e->m, mask, &s->zeroed);
    s->exact = e->m->families[s->family].condition == mask;
    if (strcmp(e->o.fallback, "joint") == 0)
        s->zeroed = 0;
    s->log_p = calloc(e->ds.n, sizeof *s->log_p);
    return s->log_p ? 0 : jv_fail("out of memory");
}

static int find_subset(const evaluator *e, unsigned mask)
{
    for (int s = 0; s < e->n_subsets; s++)
        if (e->subsets[s].mask == mask)
            return s;
    return -1;
}

/* The modalities a network decodes: only their likelihoods can be estimated. */
static unsigned decoded_set(const jv_model *m)
{
    unsigned set = 0;
    for (int k = 0; k < m->n_modalities; k++)
        set |= m->modalities[k].decoded ? 1u << k : 0u;
    return set;
}

/* The joint, every single modality and, beyond two modalities, every pair,
 * among the modalities with a decoder. */
static int make_subsets(evaluator *e)
{
    int n = e->m->n_modalities;
    unsigned dec = decoded_set(e->m);
    e->subsets = calloc((size_t)(1 + n + n * (n - 1) / 2), sizeof *e->subsets);
    if (!e->subsets)
        return jv_fail("out of memory");
    if (!dec)
        return jv_fail("eval: model %s decodes no modality: there is no likelihood to estimate", e->m->name);
    int rc = add_subset(e, dec);
    for (int a = 0; a < n && rc == 0; a++)
        if (dec >> a & 1u)
            rc = add_subset(e, 1u << a);
    for (int a = 0; a < n && rc == 0; a++)
        for (int b = a + 1; b < n && rc == 0; b++)
            if ((dec >> a & 1u) && (dec >> b & 1u))
                rc = add_subset(e, 1u << a | 1u << b);
    return rc;
}

static int make_predictions(evaluator *e)
{
    int n = e->m->n_modalities;
    e->predictions = calloc((size_t)(n * n), sizeof *e->predictions);
    if (!e->predictions)
        return jv_fail("out of memory");
    for (int c = 0; c < n; c++) {
        if (e->m->modalities[c].likelihood != JV_CATEGORICAL || !e->m->modalities[c].decoded)
            continue;
        for (int b = 0; b < n; b++)
            if (b != c)
                e->predictions[e->n_predictions++] = (prediction){.target = c, .from = b};
    }
    return 0;
}

static int alloc_evaluator(evaluator *e)
{
    int cap = e->o.batch, n = e->o.threads;
    size_t ex = e->ds.n ? e->ds.n : 1;
    e->members = calloc((size_t)n, sizeof *e->members);
    e->terms = calloc((size_t)e->m->n_terms + 1, sizeof *e->terms);
    e->ex_loss = calloc(ex, sizeof *e->ex_loss);
    e->ex_elbo = calloc(ex, sizeof *e->ex_elbo);
    e->ex_terms = calloc(ex * ((size_t)e->m->n_terms + 1), sizeof *e->ex_terms);
    if (!e->members || !e->terms || !e->ex_loss || !e->ex_elbo || !e->ex_terms)
        return jv_fail("out of memory");
    for (int i = 0; i < n; i++) {
        eval_member *mb = &e->members[i];
        if (jv_work_alloc(e->m, cap, &mb->w) != 0)
            return 1;
        mb->log_w = calloc((size_t)(e->o.samples > cap ? e->o.samples : cap), sizeof *mb->log_w);
        mb->rows = calloc((size_t)cap, sizeof *mb->rows);
        if (!mb->log_w || !mb->rows)
            return jv_fail("out of memory");
    }
    if (make_subsets(e) != 0 || make_predictions(e) != 0)
        return 1;
    for (int p = 0; p < e->n_predictions; p++)
        if (!(e->predictions[p].correct = calloc(ex, 1)))
            return jv_fail("out of memory");
    jv_error err;
    jv_set_threads(1);
    e->team = jv_team_new(n, &err);
    return e->team ? 0 : jv_fail("eval: %s", err.msg);
}

static void free_evaluator(evaluator *e)
{
    for (int s = 0; e->subsets && s < e->n_subsets; s++)
        free(e->subsets[s].log_p);
    free(e->subsets);
    for (int p = 0; e->predictions && p < e->n_predictions; p++)
        free(e->predictions[p].correct);
    free(e->predictions);
    for (int i = 0; e->members && i < e->o.threads; i++) {
        jv_work_free(&e->members[i].w);
        free(e->members[i].log_w);
        free(e->members[i].rows);
    }
    free(e->members);
    free(e->terms);
    free(e->ex_loss);
    free(e->ex_elbo);
    free(e->ex_terms);
    free(e->params);
    jv_team_free(e->team);
    jv_dataset_free(e->m, &e->ds);
}

/* ------------------------------------------------------------ estimates -- */

/* The objective and its terms for example i, in row `row` of the work data. */
static void forward_terms(evaluator *e, eval_member *mb, size_t i, int row)
{
    jv_work *w = &mb->w;
    const jv_real *data[64]; /* jmvaec emits at most 16 modalities */
    for (int k = 0; k < e->m->n_modalities; k++)
        data[k] = w->data[k] + (size_t)row * (size_t)e->m->modalities[k].size;
    jv_work_fill_noise(e->m, w, 1, e->o.seed, JV_TAG_EVAL_FORWARD, i, 0);
    e->ex_loss[i] = e->m->forward(e->params, w->arena, 1, data, JV_CONST_ROWS(w->noise), NULL, NULL, w->terms);
    for (int t = 0; t < e->m->n_terms; t++)
        e->ex_terms[(size_t)t * e->ds.n + i] = w->terms[t];
}

/* log w = sum over the set of log p(m|z) + log p(z) - log q(z) for a chunk. */
static void log_weights(const evaluator *e, const jv_work *w, unsigned mask, int batch, double *out)
{
    for (int b = 0; b < batch; b++) {
        double lw = (double)w->log_prior[b] - (double)w->log_q[b];
        for (int k = 0; k < e->m->n_modalities; k++)
            lw += (mask >> k & 1u) ? (double)w->log_lik[k][b] : 0.0;
        out[b] = lw;
    }
}

/* Log weights of subset s for the rows of the work data, which come in runs
 * of `copies` rows of one example (the noise is already drawn). */
static void weigh_rows(evaluator *e, jv_work *w, int s, int batch, int copies, double *out)
{
    const jv_model *m = e->m;
    const jv_family_info *f = &m->families[e->subsets[s].family];
    if (f->posterior_repeated) /* the encoders' data layers run once per run */
        f->posterior_repeated(e->params, w->arena, batch, copies, JV_CONST_ROWS(w->input), JV_CONST_ROWS(w->noise),
                              w->latents, w->log_q);
    else
        f->posterior(e->params, w->arena, batch, JV_CONST_ROWS(w->input), JV_CONST_ROWS(w->noise), w->latents,
                     w->log_q);
    m->log_joint(e->params, w->arena, batch, JV_CONST_ROWS(w->data), JV_CONST_ROWS(w->latents), w->log_prior,
                 w->log_lik, e->subsets[s].mask);
    log_weights(e, w, e->subsets[s].mask, batch, out);
}

/* Importance-sampled log p of subset s for example i from its K log
 * weights; their mean (the ELBO) counts for the joint. */
static void record(evaluator *e, int s, size_t i, const double *log_w)
{
    int k_total = e->o.samples;
    double sum = 0;
    for (int k = 0; k < k_total; k++)
        sum += log_w[k];
    e->subsets[s].log_p[i] = jv_log_mean_exp(log_w, (size_t)k_total);
    if (s == 0)
        e->ex_elbo[i] = sum / k_total;
}

/* log p of subset s for the `group` examples from i0 on, gathered in the work
 * data as runs of K rows when K fits a batch (several examples a batch), or
 * as one example's rows otherwise (K / cap batches). Example i's samples use
 * its own noise streams either way, so the results do not depend on --batch. */
static void estimate_subset(evaluator *e, eval_member *mb, int s, size_t i0, int group)
{
    const jv_model *m = e->m;
    jv_work *w = &mb->w;
    int k_total = e->o.samples;
    uint64_t stream = (uint64_t)s << 32;
    jv_work_zero_inputs(m, w, e->subsets[s].zeroed);
    if (k_total <= w->cap) {
        for (int j = 0; j < group; j++)
            jv_work_fill_noise_at(m, w, j * k_total, k_total, e->o.seed, JV_TAG_EVAL_IS, stream | (i0 + (size_t)j), 0);
        weigh_rows(e, w, s, group * k_total, k_total, mb->log_w);
        for (int j = 0; j < group; j++)
            record(e, s, i0 + (size_t)j, mb->log_w + (size_t)j * k_total);
        return;
    }
    for (int k = 0; k < k_total; k += w->cap) {
        int batch = k_total - k < w->cap ? k_total - k : w->cap;
        jv_work_fill_noise_at(m, w, 0, batch, e->o.seed, JV_TAG_EVAL_IS, stream | i0, (uint64_t)k);
        weigh_rows(e, w, s, batch, batch, mb->log_w + k);
    }
    record(e, s, i0, mb->log_w);
}

static void draw_progress(evaluator *e, const char *what, size_t done, size_t total)
{
    if (!e->bar.tty)
        return;
    double elapsed = jv_now() - e->start, rate = elapsed > 0 ? (double)done / elapsed : 0;
    char eta[32];
    jv_format_duration(rate > 0 ? (double)(total - done) / rate : 0, eta, sizeof eta);
    jv_progress_draw(&e->bar, 0, "eval: %s %3.0f%%  ETA %s  %.1f examples/s", what,
                     100.0 * (double)done / (double)total, eta, rate);
}

/* The examples come in groups (as many as a batch holds K samples of), a
 * group to a member at a time; what a group computes does not depend on
 * which member takes it. */
static void likelihood_member(void *arg, int id, int n)
{
    (void)n;
    evaluator *e = arg;
    eval_member *mb = &e->members[id];
    int k_total = e->o.samples, cap = mb->w.cap;
    size_t per = k_total <= cap ? (size_t)(cap / k_total) : 1; /* examples a group */
    for (;;) {
        size_t i0 = atomic_fetch_add(&e->next, 1) * per;
        if (i0 >= e->ds.n)
            break;
        int group = e->ds.n - i0 < per ? (int)(e->ds.n - i0) : (int)per;
        int rows = k_total <= cap ? group * k_total : cap;
        for (int b = 0; b < rows; b++)
            mb->rows[b] = i0 + (size_t)(k_total <= cap ? b / k_total : 0);
        jv_work_gather(e->m, &mb->w, &e->ds, mb->rows, rows);
        for (int j = 0; j < group; j++)
            forward_terms(e, mb, i0 + (size_t)j, k_total <= cap ? j * k_total : 0);
        for (int s = 0; s < e->n_subsets; s++)
            estimate_subset(e, mb, s, i0, group);
        size_t done = atomic_fetch_add(&e->done, (size_t)group) + (size_t)group;
        if (id == 0)
            draw_progress(e, "log-likelihoods", done, e->ds.n);
    }
}

static void estimate_likelihoods(evaluator *e)
{
    e->start = jv_now();
    atomic_store(&e->next, 0);
    atomic_store(&e->done, 0);
    jv_team_run(e->team, likelihood_member, e);
    jv_progress_clear(&e->bar);
    /* the statistics in example order: the same for any number of threads */
    for (size_t i = 0; i < e->ds.n; i++) {
        jv_stat_add(&e->loss, e->ex_loss[i]);
        jv_stat_add(&e->elbo, e->ex_elbo[i]);
        for (int t = 0; t < e->m->n_terms; t++)
            jv_stat_add(&e->terms[t], e->ex_terms[(size_t)t * e->ds.n + i]);
        for (int s = 0; s < e->n_subsets; s++)
            jv_stat_add(&e->subsets[s].stat, e->subsets[s].log_p[i]);
    }
}

/* Accuracy of argmax p(target | z), z from the posterior given `from` alone,
 * for the batch of examples from `first` on. */
static void predict_batch(evaluator *e, eval_member *mb, int p, size_t first)
{
    const jv_model *m = e->m;
    jv_work *w = &mb->w;
    prediction *pr = &e->predictions[p];
    unsigned zeroed;
    const jv_family_info *f = &m->families[jv_pick_family(m, 1u << pr->from, &zeroed)];
    int size = m->modalities[pr->target].size;
    int batch = e->ds.n - first < (size_t)w->cap ? (int)(e->ds.n - first) : w->cap;
    for (int b = 0; b < batch; b++)
        mb->rows[b] = first + (size_t)b;
    jv_work_gather(m, w, &e->ds, mb->rows, batch);
    jv_work_zero_inputs(m, w, zeroed);
    jv_work_fill_noise(m, w, batch, e->o.seed, JV_TAG_EVAL_ACCURACY, (uint64_t)p << 32, first);
    f->posterior(e->params, w->arena, batch, JV_CONST_ROWS(w->input), JV_CONST_ROWS(w->noise), w->latents, w->log_q);
    m->decode(e->params, w->arena, batch, JV_CONST_ROWS(w->latents), w->out);
    for (int b = 0; b < batch; b++) {
        int guess = jv_argmax(w->out[pr->target] + (size_t)b * size, size);
        int truth = jv_argmax(w->data[pr->target] + (size_t)b * size, size);
        pr->correct[first + (size_t)b] = guess == truth;
    }
}

static void prediction_member(void *arg, int id, int n)
{
    (void)n;
    evaluator *e = arg;
    eval_member *mb = &e->members[id];
    size_t cap = (size_t)mb->w.cap, batches = (e->ds.n + cap - 1) / cap;
    for (;;) {
        size_t job = atomic_fetch_add(&e->next, 1);
        if (job >= batches * (size_t)e->n_predictions)
            break;
        predict_batch(e, mb, (int)(job / batches), job % batches * cap);
    }
}

static void estimate_predictions(evaluator *e)
{
    atomic_store(&e->next, 0);
    jv_team_run(e->team, prediction_member, e);
    for (int p = 0; p < e->n_predictions; p++) {
        prediction *pr = &e->predictions[p];
        unsigned zeroed;
        jv_pick_family(e->m, 1u << pr->from, &zeroed);
        pr->imputed = zeroed != 0;
        for (size_t i = 0; i < e->ds.n; i++)
            jv_stat_add(&pr->stat, pr->correct[i]);
    }
}

/* ------------------------------------------------------------- report -- */

/* Calls visit for each ordered pair (a, b): the set {a,b} and {b}. */
typedef void (*pair_fn)(evaluator *e, int a, int b, int joint, int given, void *ctx);

static void for_each_conditional(evaluator *e, pair_fn visit, void *ctx)
{
    int n = e->m->n_modalities;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            int joint = find_subset(e, 1u << a | 1u << b), given = find_subset(e, 1u << b);
            if (a != b && joint >= 0 && given >= 0) /* both estimated: a and b have decoders */
                visit(e, a, b, joint, given, ctx);
        }
}

/* The statistic of log p(a|b) = log p(a,b) - log p(b), example by example. */
static jv_stat conditional_stat(const evaluator *e, int joint, int given)
{
    jv_stat st = {0};
    for (size_t i = 0; i < e->ds.n; i++)
        jv_stat_add(&st, e->subsets[joint].log_p[i] - e->subsets[given].log_p[i]);
    return st;
}

/* Whether a set's proposal is not a family of its own (see print_notes). */
static int mark(const subset *s)
{
    return !s->exact;
}

/* Whether the zero rule served the set, for log p or for a prediction. */
static int zero_imputed(const evaluator *e, int s)
{
    int used = e->subsets[s].zeroed != 0;
    for (int p = 0; p < e->n_predictions; p++)
        used |= e->predictions[p].imputed && e->subsets[s].mask == 1u << e->predictions[p].from;
    return used;
}

static void print_row(const char *label, const jv_stat *st, const char *mark)
{
    double se = jv_stat_se(st);
    if (isfinite(se))
        printf("  %-28s %14.4f %10.4f%s\n", label, st->mean, se, mark);
    else
        printf("  %-28s %14.4f %10s%s\n", label, st->mean, "-", mark);
}

static void print_conditional(evaluator *e, int a, int b, int joint, int given, void *ctx)
{
    (void)ctx;
    char label[256];
    snprintf(label, sizeof label, "log p(%s|%s)", e->m->modalities[a].name, e->m->modalities[b].name);
    jv_stat st = conditional_stat(e, joint, given);
    print_row(label, &st, mark(&e->subsets[given]) || mark(&e->subsets[joint]) ? "  *" : "");
}

static void print_notes(const evaluator *e)
{
    for (int k = 0; k < e->m->n_modalities; k++)
        if (!e->m->modalities[k].decoded)
            printf("* %s has no decoder (no network gives p(%s | ...)): no likelihood or accuracy involves it\n",
                   e->m->modalities[k].name, e->m->modalities[k].name);
    const jv_family_info *train = &e->m->families[e->m->training_family];
    for (int s = 0; s < e->n_subsets; s++) {
        if (e->subsets[s].exact && !zero_imputed(e, s))
            continue;
        char name[256], rest[256];
        jv_subset_name(e->m, e->subsets[s].mask, name, sizeof name);
        jv_subset_name(e->m, train->condition & ~e->subsets[s].mask, rest, sizeof rest);
        if (zero_imputed(e, s))
            printf("* no family conditions on {%s} alone: its posterior is q(z|%s) with %s set to zero "
                   "(the JMVAE-zero rule)\n",
                   name, train->name, rest);
        if (!e->subsets[s].exact && e->subsets[s].zeroed == 0)
            printf("* no family conditions on {%s} alone: log p(%s) uses the proposal q(z|%s) given the "
                   "real %s (--fallback joint)\n",
                   name, name, train->name, rest);
    }
}

static void print_table(evaluator *e)
{
    const jv_model *m = e->m;
    char label[256], name[200];
    printf("model %s, %s: %zu examples, %d importance samples each (seed %llu)\n", m->name, e->o.checkpoint,
           e->ds.n, e->o.samples, (unsigned long long)e->o.seed);
    printf("threads %d of %d cores%s; %s\n\n", e->o.threads, jv_cpu_count(),
           e->o.threads > jv_cpu_count() ? " (more threads than cores: slower, same numbers)" : "", jv_blas_describe());
    printf("  %-28s %14s %10s\n", "quantity", "mean", "s.e.");
    print_row("ELBO", &e->elbo, "");
    print_row("loss (objective)", &e->loss, "");
    for (int t = 0; t < m->n_terms; t++) {
        snprintf(label, sizeof label, "  %s", m->term_names[t]);
        print_row(label, &e->terms[t], "");
    }
    for (int s = 0; s < e->n_subsets; s++) {
        jv_subset_name(m, e->subsets[s].mask, name, sizeof name);
        snprintf(label, sizeof label, "log p(%s)", name);
        print_row(label, &e->subsets[s].stat, mark(&e->subsets[s]) ? "  *" : "");
    }
    for_each_conditional(e, print_conditional, NULL);
    for (int p = 0; p < e->n_predictions; p++) {
        const prediction *pr = &e->predictions[p];
        snprintf(label, sizeof label, "accuracy %s|%s", m->modalities[pr->target].name,
                 m->modalities[pr->from].name);
        print_row(label, &pr->stat, pr->imputed ? "  *" : "");
    }
    print_notes(e);
}

/* --------------------------------------------------------------- JSON -- */

static void json_string(jv_buf *b, const char *s)
{
    jv_buf_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            jv_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            jv_buf_printf(b, "\\u%04x", c);
        else
            jv_buf_printf(b, "%c", c);
    }
    jv_buf_printf(b, "\"");
}

static void json_number(jv_buf *b, double x)
{
    if (isfinite(x))
        jv_buf_printf(b, "%.10g", x);
    else
        jv_buf_printf(b, "null");
}

static void json_stat_value(jv_buf *b, const jv_stat *st)
{
    jv_buf_printf(b, "{\"mean\": ");
    json_number(b, st->mean);
    jv_buf_printf(b, ", \"se\": ");
    json_number(b, jv_stat_se(st));
    jv_buf_printf(b, "}");
}

/* One "key": {"mean": m, "se": s} of an object, a comma before all but the first. */
static void json_stat(jv_buf *b, int first, const char *key, const jv_stat *st)
{
    jv_buf_printf(b, "%s\n    ", first ? "" : ",");
    json_string(b, key);
    jv_buf_printf(b, ": ");
    json_stat_value(b, st);
}

typedef struct {
    jv_buf *buf;
    int count;
} json_list;

static void json_conditional(evaluator *e, int a, int b, int joint, int given, void *ctx)
{
    json_list *list = ctx;
    char key[256];
    snprintf(key, sizeof key, "%s|%s", e->m->modalities[a].name, e->m->modalities[b].name);
    jv_stat st = conditional_stat(e, joint, given);
    json_stat(list->buf, list->count++ == 0, key, &st);
}

static void json_groups(evaluator *e, jv_buf *b)
{
    const jv_model *m = e->m;
    char name[256];
    jv_buf_printf(b, "  \"terms\": {");
    for (int t = 0; t < m->n_terms; t++)
        json_stat(b, t == 0, m->term_names[t], &e->terms[t]);
    jv_buf_printf(b, "\n  },\n  \"log_p\": {");
    for (int s = 0; s < e->n_subsets; s++) {
        jv_subset_name(m, e->subsets[s].mask, name, sizeof name);
        json_stat(b, s == 0, name, &e->subsets[s].stat);
    }
    jv_buf_printf(b, "\n  },\n  \"log_p_cond\": {");
    json_list list = {b, 0};
    for_each_conditional(e, json_conditional, &list);
    jv_buf_printf(b, "\n  },\n  \"accuracy\": {");
    for (int p = 0; p < e->n_predictions; p++) {
        snprintf(name, sizeof name, "%s|%s", m->modalities[e->predictions[p].target].name,
                 m->modalities[e->predictions[p].from].name);
        json_stat(b, p == 0, name, &e->predictions[p].stat);
    }
    jv_buf_printf(b, "\n  },\n  \"zero_imputed\": [");
    int first = 1;
    for (int s = 0; s < e->n_subsets; s++) {
        if (!zero_imputed(e, s))
            continue;
        jv_subset_name(m, e->subsets[s].mask, name, sizeof name);
        jv_buf_printf(b, "%s", first ? "" : ", ");
        json_string(b, name);
        first = 0;
    }
    jv_buf_printf(b, "]\n");
}

static int write_json(evaluator *e)
{
    jv_buf b = {0};
    jv_buf_printf(&b, "{\n  \"model\": ");
    json_string(&b, e->m->name);
    jv_buf_printf(&b, ",\n  \"checkpoint\": ");
    json_string(&b, e->o.checkpoint);
    jv_buf_printf(&b, ",\n  \"examples\": %zu,\n  \"samples\": %d,\n  \"seed\": %llu,\n  \"fallback\": ", e->ds.n,
                  e->o.samples, (unsigned long long)e->o.seed);
    json_string(&b, e->o.fallback);
    jv_buf_printf(&b, ",\n  \"elbo\": ");
    json_stat_value(&b, &e->elbo);
    jv_buf_printf(&b, ",\n  \"loss\": ");
    json_stat_value(&b, &e->loss);
    jv_buf_printf(&b, ",\n");
    json_groups(e, &b);
    jv_buf_printf(&b, "}\n");
    int rc = jv_buf_save(&b, e->o.json);
    jv_buf_free(&b);
    return rc;
}

/* ---------------------------------------------------------------- eval -- */

int jv_cmd_eval(const jv_model *m, int argc, char **argv)
{
    evaluator e = {.m = m};
    unsigned all = m->n_modalities == 32 ? ~0u : (1u << m->n_modalities) - 1;
    int rc = parse_eval_options(&e, argc, argv);
    if (rc == 0)
        rc = jv_dataset_load(m, "eval", &e.o.data, all, e.o.limit, &e.ds);
    if (rc == 0)
        rc = (e.params = jv_params_read(m, e.o.checkpoint)) == NULL;
    if (rc == 0)
        rc = alloc_evaluator(&e);
    if (rc == 0) {
        jv_progress_init(&e.bar);
        estimate_likelihoods(&e);
        estimate_predictions(&e);
        print_table(&e);
        if (e.o.json)
            rc = write_json(&e);
    }
    free_evaluator(&e);
    return rc;
}
