/* jv_trainer_eval.c: the eval subcommand. Per test example: the objective
 * and its terms as the spec names them (one noisy forward pass),
 * importance-sampled log p of the joint, of each modality and (beyond two
 * modalities) of each pair, the ELBO from the same samples, conditionals
 * log p(a|b) = log p(a,b) - log p(b), and for each categorical modality the
 * accuracy of predicting it from each other modality. Means with standard
 * errors over the examples go to a table on stdout and, with --json, to a
 * JSON file.
 *
 * Each set S of modalities gets the estimate a reviewer can trust most,
 * with its proposal stated (see plan_subset):
 *   - S one categorical modality w: p(w = c) = E_p(z)[p(w = c | z)] from
 *     prior samples shared by every example (the prior covers every
 *     posterior, and p(w | z) <= 1 bounds the weights);
 *   - S the decoded modalities but one categorical w: the discrete sum
 *     p(S) = sum_c p(S, w = c), each term with the joint's proposal fed
 *     w = c, the true class's term the joint's own estimate (so that
 *     p(S) >= p(S, w) and p(w | S) <= 1 hold example by example);
 *   - otherwise the family conditioned on exactly S; when there is none,
 *     the training family with the modalities outside S fed as zeros (the
 *     JMVAE-zero rule), or with --fallback joint the real data (the
 *     proposal of Suzuki et al. for log p(x)).
 * Where the first two apply, the family rule's estimate (the papers'
 * protocol) is reported beneath, labelled. Every estimate carries its
 * effective sample size; a value that cannot be true (log p > 0 of a
 * discrete set, a marginal below a joint) is reported as impossible, not
 * as a number.
 *
 * Test examples may lack modalities: each figure then covers the examples
 * that have every modality it involves (log p(S): those with S; log p(a|b)
 * and accuracy a|b: those with a and b; the objective and the ELBO: the
 * complete ones), and the table gives each figure's count of examples.
 * An example without the categorical w of a sum over classes sums every
 * class with class samples.
 */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "jv_comm.h"
#include "jv_trainer_int.h"

typedef struct {
    jv_opt_list data, observed;
    int samples, batch, limit, threads, class_samples, prior_samples;
    int class_given, prior_given; /* given on the command line, not following --samples */
    uint64_t seed;
    const char *checkpoint, *json, *fallback;
} eval_opts;

/* How an estimate of log p(S) is made. */
typedef enum {
    PROP_FAMILY,    /* the family conditioned on exactly S */
    PROP_ZERO_FED,  /* the training family, the modalities outside S fed as zeros (JMVAE-zero) */
    PROP_REAL_FED,  /* the training family given the real data outside S (--fallback joint) */
    PROP_PRIOR,     /* p(z): prior samples shared by every example; S is one categorical modality */
    PROP_CLASS_SUM, /* sum over the classes c of categorical modality `over` of p(S, over = c) */
} proposal;

/* Below this median effective sample size an estimate is flagged. */
#define LOW_ESS 5.0
/* The discrete estimators apply to categorical modalities of at most this many classes. */
#define MAX_CLASSES 256

typedef struct {
    proposal kind;
    int family;       /* PROP_FAMILY, PROP_*_FED and PROP_CLASS_SUM: the posterior used */
    unsigned zeroed;  /* inputs that posterior reads as zeros */
    int over;         /* PROP_PRIOR, PROP_CLASS_SUM: the categorical modality */
    double *log_p;    /* per example: log of the mean weight */
    double *log_sq;   /* per example: log of the sum of squared normalised weights (for the ESS) */
    jv_stat stat;
    double ess;       /* median over the examples */
    int impossible;   /* the mean cannot be true: 1 above 0 for a discrete set, 2 below subset `versus` */
    int versus;
} estimate;

/* A set of modalities whose log-likelihood is estimated. */
typedef struct {
    unsigned mask;
    int n_est;
    estimate est[2];  /* [0] the one reported; [1] the family rule's when [0] is another */
} subset;

/* Predicting categorical modality `target` from the modalities of `from` alone. */
typedef struct {
    int target;
    unsigned from;
    int imputed;      /* the zero rule gave the posterior */
    unsigned char *correct; /* per example */
    jv_stat stat;
} prediction;

/* What one thread of the team works in. */
typedef struct {
    jv_work w;
    double *log_w;    /* [max(samples, class samples, batch)]: one example's log weights, or a batch of several examples' */
    size_t *rows;     /* [batch]: example indices of a batch */
} eval_member;

typedef struct {
    const jv_model *m;
    eval_opts o;
    jv_dataset ds;
    jv_real *params;
    jv_team *team;
    eval_member *members;    /* one per thread */
    int n_subsets, max_subsets, n_predictions;
    subset *subsets;         /* the joint, each modality, then each pair */
    prediction *predictions;
    int *label;              /* [n_modalities x examples]: the class of a one-hot row, or -1 */
    unsigned one_hot;        /* categorical modalities whose every row is one-hot */
    double *prior_sums;      /* [chunks x 2 x classes] for the PROP_PRIOR estimate in progress */
    int prior_over;
    double *ex_loss, *ex_elbo, *ex_terms; /* per example (terms: [n_terms x examples]) */
    jv_stat elbo, loss, *terms;
    atomic_size_t next;      /* the next piece of work a member takes */
    atomic_size_t done;      /* examples finished, for the progress line */
    double start;
    jv_progress bar;
    int incomplete;          /* some example lacks a modality: each figure says how many it covers */
    /* Under MPI each process takes a contiguous share of the groups (and of
     * the prediction batches), cut where one process would cut them, and
     * process 0 gathers the per-example results and reports them. */
    int rank, ranks;
    size_t unit_lo, unit_hi;  /* this process's groups or batches in the phase in progress */
    size_t per_group;         /* examples a group (as many as a batch holds K samples of) */
} evaluator;

static const char EVAL_ABOUT[] =
    "Estimates, over the test examples, the ELBO, the objective and its terms, the\n"
    "log-likelihood of the joint and of each modality with K importance samples,\n"
    "every conditional log p(a|b), and the accuracy of predicting each categorical\n"
    "modality from each other one. Prints a table that names each estimate's\n"
    "proposal and effective sample size; --json writes every number.";

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
                     .fallback = "zero", .class_samples = 0, .prior_samples = 0};
    jv_option opts[] = {
        {"checkpoint", JV_OPT_STRING, &o->checkpoint, 0, 0, "CKPT", "the trained model (required)", 0},
        {"data", JV_OPT_LIST, &o->data, 0, 0, "NAME=FILE", "the test data of a modality (one per modality)", 0},
        {"observed", JV_OPT_LIST, &o->observed, 0, 0, "NAME=FILE",
         "which examples have modality NAME: a 0/1 column, one an example (beside the file's own missing rows)",
         0},
        {"samples", JV_OPT_INT, &o->samples, 1, INT_MAX, "K", "importance samples per example", 0},
        {"batch", JV_OPT_INT, &o->batch, 1, INT_MAX, "B",
         "samples (or examples) per model call (default: up to 1000, 16 MiB of arena a thread)", 0},
        {"limit", JV_OPT_INT, &o->limit, 0, INT_MAX, "N", "use only the first N examples, 0 for all", 0},
        {"json", JV_OPT_STRING, &o->json, 0, 0, "FILE", "also write every number to FILE as JSON", 0},
        {"seed", JV_OPT_U64, &o->seed, 0, 1.8446744073709552e19, "S", "seed of the samples", 0},
        {"threads", JV_OPT_INT, &o->threads, 1, 1024, "T",
         "threads (default: the cores this process may use); the results are the same for every T", 0},
        {"fallback", JV_OPT_STRING, &o->fallback, 0, 0, "zero|joint",
         "proposal for a set without its own family: zeros for the rest (JMVAE-zero), or the real data", 0},
        {"class-samples", JV_OPT_INT, &o->class_samples, 1, INT_MAX, "N",
         "samples for each other class in the sum over a categorical modality's classes (default: K / 10, at least "
         "1: 100 at K = 1000)", 0},
        {"prior-samples", JV_OPT_INT, &o->prior_samples, 1, INT_MAX, "N",
         "prior samples for log p of a categorical modality, shared by every example (default: 100 K, 100,000 at "
         "K = 1000)", 0},
    };
    int rc = jv_parse_options("eval", "--checkpoint CKPT --data NAME=FILE ... [options]", EVAL_ABOUT, opts,
                              (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc != 0)
        return rc;
    if (!o->checkpoint)
        return jv_fail("eval: missing --checkpoint CKPT");
    /* the sums over classes and the prior's samples follow --samples: a quick
     * evaluation stays quick, and K = 1000 gives the papers' protocol */
    o->class_given = o->class_samples > 0;
    o->prior_given = o->prior_samples > 0;
    if (!o->class_given)
        o->class_samples = o->samples / 10 > 1 ? o->samples / 10 : 1;
    if (!o->prior_given)
        o->prior_samples = o->samples <= INT_MAX / 100 ? 100 * o->samples : INT_MAX;
    if (strcmp(o->fallback, "zero") != 0 && strcmp(o->fallback, "joint") != 0)
        return jv_fail("eval: --fallback must be zero or joint, got '%s'", o->fallback);
    return o->json ? jv_check_output_path("eval", "json", o->json) : 0;
}

/* ------------------------------------------------------------- set up -- */

/* Whether example i has every modality of `mask`. */
static int covers(const evaluator *e, unsigned mask, size_t i)
{
    return (jv_observed(&e->ds, i) & mask) == mask;
}

/* The modalities a network decodes: only their likelihoods can be estimated. */
static unsigned decoded_set(const jv_model *m)
{
    unsigned set = 0;
    for (int k = 0; k < m->n_modalities; k++)
        set |= m->modalities[k].decoded ? 1u << k : 0u;
    return set;
}

/* The class of every example of each categorical modality, and which of
 * them are one-hot throughout (the discrete estimators need it). */
static int find_labels(evaluator *e)
{
    const jv_model *m = e->m;
    size_t n = e->ds.n;
    e->label = malloc((size_t)m->n_modalities * (n ? n : 1) * sizeof *e->label);
    if (!e->label)
        return jv_fail("out of memory");
    for (int k = 0; k < m->n_modalities; k++) {
        int size = m->modalities[k].size, hot = m->modalities[k].likelihood == JV_CATEGORICAL && size <= MAX_CLASSES;
        for (size_t i = 0; i < n; i++) {
            int c = -1;
            if (!covers(e, 1u << k, i)) { /* missing: no class, and no say in whether the rest are one-hot */
                e->label[(size_t)k * n + i] = -1;
                continue;
            }
            for (int j = 0; hot && j < size; j++) {
                float v = e->ds.mod[k].x[i * (size_t)size + (size_t)j];
                if (v == 1.0f && c < 0)
                    c = j;
                else if (v != 0.0f)
                    hot = 0;
            }
            hot &= c >= 0;
            e->label[(size_t)k * n + i] = hot ? c : -1;
        }
        e->one_hot |= hot && n > 0 ? 1u << k : 0u;
    }
    return 0;
}

/* The one modality in `set`, or -1. */
static int only_member(unsigned set)
{
    return set && !(set & (set - 1)) ? __builtin_ctz(set) : -1;
}

/* The family rule: the family conditioned on exactly the set, else the
 * training family with the rest fed as zeros or, with --fallback joint, as
 * the real data. */
static estimate family_estimate(const evaluator *e, unsigned mask)
{
    estimate est = {0};
    est.family = jv_pick_family(e->m, mask, &est.zeroed);
    est.kind = jv_family_serves(e->m, est.family, mask) ? PROP_FAMILY : PROP_ZERO_FED;
    if (est.kind == PROP_ZERO_FED && strcmp(e->o.fallback, "joint") == 0) {
        est.kind = PROP_REAL_FED;
        est.zeroed = 0;
    }
    return est;
}

static int add_subset(evaluator *e, unsigned mask)
{
    for (int s = 0; s < e->n_subsets; s++)
        if (e->subsets[s].mask == mask)
            return 0;
    subset *s = &e->subsets[e->n_subsets];
    unsigned dec = decoded_set(e->m);
    int alone = only_member(mask), rest = only_member(dec & ~mask);
    estimate fam = family_estimate(e, mask);
    s->mask = mask;
    if (alone >= 0 && (e->one_hot >> alone & 1u)) {
        s->est[s->n_est++] = (estimate){.kind = PROP_PRIOR, .over = alone};
    } else if (e->n_subsets > 0 && rest >= 0 && (e->one_hot >> rest & 1u)) {
        /* the terms of the sum take the joint's proposal (subset 0), fed w = c */
        const estimate *joint = &e->subsets[0].est[0];
        s->est[s->n_est++] =
            (estimate){.kind = PROP_CLASS_SUM, .over = rest, .family = joint->family, .zeroed = joint->zeroed};
    }
    s->est[s->n_est++] = fam;
    for (int k = 0; k < s->n_est; k++) {
        s->est[k].log_p = calloc(e->ds.n ? e->ds.n : 1, sizeof *s->est[k].log_p);
        s->est[k].log_sq = calloc(e->ds.n ? e->ds.n : 1, sizeof *s->est[k].log_sq);
        if (!s->est[k].log_p || !s->est[k].log_sq)
            return jv_fail("out of memory");
    }
    e->n_subsets++;
    return 0;
}

static int find_subset(const evaluator *e, unsigned mask)
{
    for (int s = 0; s < e->n_subsets; s++)
        if (e->subsets[s].mask == mask)
            return s;
    return -1;
}

/* The joint, every single modality and, beyond two modalities, every pair,
 * among the modalities with a decoder. The joint comes first: the sums
 * over classes reuse its estimates. */
static int make_subsets(evaluator *e)
{
    int n = e->m->n_modalities;
    unsigned dec = decoded_set(e->m);
    e->max_subsets = 1 + n + n * (n - 1) / 2;
    e->subsets = calloc((size_t)e->max_subsets, sizeof *e->subsets);
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

/* Each categorical modality with a decoder, from each other modality alone;
 * then, with at most four modalities, from each larger subset of the others
 * (a model of experts has a posterior for each). */
static int make_predictions(evaluator *e)
{
    int n = e->m->n_modalities, many = n <= 4 ? 1 << n : n + 1;
    e->predictions = calloc((size_t)(n * many), sizeof *e->predictions);
    if (!e->predictions)
        return jv_fail("out of memory");
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < n; c++) {
            if (e->m->modalities[c].likelihood != JV_CATEGORICAL || !e->m->modalities[c].decoded)
                continue;
            for (unsigned s = 1; s < 1u << n; s++) {
                int single = !(s & (s - 1));
                if ((s >> c & 1u) || single != (pass == 0) || (!single && n > 4))
                    continue;
                if (!single && jv_check_subset_quiet(e->m, s))
                    continue; /* no posterior given it */
                e->predictions[e->n_predictions++] = (prediction){.target = c, .from = s};
            }
        }
    return 0;
}

static int alloc_evaluator(evaluator *e)
{
    int cap = e->o.batch, n = e->o.threads;
    size_t ex = e->ds.n ? e->ds.n : 1, chunks = ((size_t)e->o.prior_samples + (size_t)cap - 1) / (size_t)cap;
    e->members = calloc((size_t)n, sizeof *e->members);
    e->terms = calloc((size_t)e->m->n_terms + 1, sizeof *e->terms);
    e->ex_loss = calloc(ex, sizeof *e->ex_loss);
    e->ex_elbo = calloc(ex, sizeof *e->ex_elbo);
    e->ex_terms = calloc(ex * ((size_t)e->m->n_terms + 1), sizeof *e->ex_terms);
    e->prior_sums = calloc(chunks * 2 * jv_largest_modality(e->m), sizeof *e->prior_sums);
    if (!e->members || !e->terms || !e->ex_loss || !e->ex_elbo || !e->ex_terms || !e->prior_sums)
        return jv_fail("out of memory");
    for (int i = 0; i < n; i++) {
        eval_member *mb = &e->members[i];
        if (jv_work_alloc(e->m, cap, &mb->w) != 0)
            return 1;
        int most = e->o.samples > cap ? e->o.samples : cap;
        most = e->o.class_samples > most ? e->o.class_samples : most;
        mb->log_w = calloc((size_t)most, sizeof *mb->log_w);
        mb->rows = calloc((size_t)cap, sizeof *mb->rows);
        if (!mb->log_w || !mb->rows)
            return jv_fail("out of memory");
    }
    if (find_labels(e) != 0 || make_subsets(e) != 0 || make_predictions(e) != 0)
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
    for (int s = 0; e->subsets && s < e->max_subsets; s++)
        for (int k = 0; k < 2; k++) {
            free(e->subsets[s].est[k].log_p);
            free(e->subsets[s].est[k].log_sq);
        }
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
    free(e->prior_sums);
    free(e->label);
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
    jv_work_fill_step_noise_at(e->m, w, 0, 1, e->o.seed, JV_TAG_EVAL_FORWARD, i, 0);
    e->ex_loss[i] = e->m->forward(e->params, w->arena, 1, data, JV_CONST_ROWS(w->noise), NULL, NULL, w->terms);
    for (int t = 0; t < e->m->n_terms; t++)
        e->ex_terms[(size_t)t * e->ds.n + i] = w->terms[t];
}

/* Of n log weights: the log of their mean (the estimate) and the log of the
 * sum of their squares divided by n^2, so that the effective sample size
 * (sum w)^2 / sum w^2 is exp(2 * log_mean - log_sq). */
static void weight_stats(const double *lw, size_t n, double *log_mean, double *log_sq)
{
    double top = -INFINITY, s1 = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        top = lw[i] > top ? lw[i] : top;
    if (!isfinite(top)) {
        *log_mean = *log_sq = top;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double v = exp(lw[i] - top);
        s1 += v;
        s2 += v * v;
    }
    *log_mean = top + log(s1 / (double)n);
    *log_sq = 2 * top + log(s2) - 2 * log((double)n);
}

/* log(exp(a) + exp(b)) */
static double log_add(double a, double b)
{
    double top = a > b ? a : b;
    if (!isfinite(top))
        return top;
    return top + log(exp(a - top) + exp(b - top));
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

/* Log weights of the modalities in `mask` for the rows of the work data,
 * which come in runs of `copies` rows of one example (the noise is already
 * drawn and the inputs set), with the posterior of family f. */
static void weigh_rows(evaluator *e, jv_work *w, int f, unsigned mask, int batch, int copies, double *out)
{
    const jv_model *m = e->m;
    jv_family_sample(m, f, mask, e->params, w->arena, batch, copies, JV_CONST_ROWS(w->input), JV_CONST_ROWS(w->noise),
                     w->latents, w->log_q);
    m->log_joint(e->params, w->arena, batch, JV_CONST_ROWS(w->data), JV_CONST_ROWS(w->latents), w->log_prior,
                 w->log_lik, mask);
    log_weights(e, w, mask, batch, out);
}

/* Estimate k of subset s for example i from its K log weights; their mean
 * (the ELBO) counts for the joint's family estimate. */
static void record(evaluator *e, int s, int k, size_t i, const double *log_w)
{
    int k_total = e->o.samples;
    estimate *est = &e->subsets[s].est[k];
    weight_stats(log_w, (size_t)k_total, &est->log_p[i], &est->log_sq[i]);
    if (s == 0 && k == e->subsets[s].n_est - 1) {
        double sum = 0;
        for (int j = 0; j < k_total; j++)
            sum += log_w[j];
        e->ex_elbo[i] = sum / k_total;
    }
}

/* Estimate k (a posterior's) of subset s for the `group` examples from i0
 * on, gathered in the work data as runs of K rows when K fits a batch
 * (several examples a batch), or as one example's rows otherwise (K / cap
 * batches). Example i's samples use its own noise streams either way, so
 * the results do not depend on --batch. */
static void estimate_posterior(evaluator *e, eval_member *mb, int s, int k, size_t i0, int group)
{
    const jv_model *m = e->m;
    const estimate *est = &e->subsets[s].est[k];
    unsigned mask = e->subsets[s].mask;
    jv_work *w = &mb->w;
    int k_total = e->o.samples;
    uint64_t stream = (uint64_t)s << 32;
    jv_work_zero_inputs(m, w, est->zeroed);
    if (k_total <= w->cap) {
        for (int j = 0; j < group; j++)
            jv_work_fill_noise_at(m, w, j * k_total, k_total, e->o.seed, JV_TAG_EVAL_IS, stream | (i0 + (size_t)j), 0);
        weigh_rows(e, w, est->family, mask, group * k_total, k_total, mb->log_w);
        for (int j = 0; j < group; j++)
            record(e, s, k, i0 + (size_t)j, mb->log_w + (size_t)j * k_total);
        return;
    }
    for (int done = 0; done < k_total; done += w->cap) {
        int batch = k_total - done < w->cap ? k_total - done : w->cap;
        jv_work_fill_noise_at(m, w, 0, batch, e->o.seed, JV_TAG_EVAL_IS, stream | i0, (uint64_t)done);
        weigh_rows(e, w, est->family, mask, batch, batch, mb->log_w + done);
    }
    record(e, s, k, i0, mb->log_w);
}

/* Rows [row, row + n) of the work data: example i with modality `over`
 * set to class c, and their noise (class c's stream, from sample `first`). */
static void class_rows(evaluator *e, jv_work *w, size_t i, int over, int c, int row, int n, int first)
{
    const jv_model *m = e->m;
    int size = m->modalities[over].size;
    for (int b = row; b < row + n; b++) {
        jv_real *hot = w->data[over] + (size_t)b * (size_t)size;
        memset(hot, 0, (size_t)size * sizeof *hot);
        hot[c] = 1;
    }
    jv_work_fill_noise_at(m, w, row, n, e->o.seed, JV_TAG_EVAL_CLASS, (uint64_t)over << 32 | i,
                          (uint64_t)c * (uint64_t)e->o.class_samples + (uint64_t)first);
}

/* log p(S) = log sum_c p(S, w = c) for example i: the true class's term is
 * the joint's estimate; every other class's comes from class samples of the
 * joint's proposal fed w = c (every class's, when the example lacks w). */
static void estimate_class_sum(evaluator *e, eval_member *mb, int s, size_t i)
{
    const jv_model *m = e->m;
    estimate *est = &e->subsets[s].est[0];
    const estimate *joint = &e->subsets[0].est[0];
    unsigned mask = e->subsets[0].mask;
    jv_work *w = &mb->w;
    int over = est->over, classes = m->modalities[over].size, kc = e->o.class_samples, cap = w->cap;
    int truth = e->label[(size_t)over * e->ds.n + i], list[MAX_CLASSES], n_list = 0;
    for (int c = 0; c < classes; c++)
        if (c != truth)
            list[n_list++] = c;
    /* without the example's class (w missing) every class's term is sampled */
    double log_p = truth >= 0 ? joint->log_p[i] : -INFINITY, log_sq = truth >= 0 ? joint->log_sq[i] : -INFINITY;
    double lm, lsq;
    int per = kc <= cap ? cap / kc : 1; /* classes a call */
    for (int first = 0; first < n_list; first += per) {
        int count = n_list - first < per ? n_list - first : per;
        for (int b = 0; b < (kc <= cap ? count * kc : cap); b++)
            mb->rows[b] = i;
        jv_work_gather(m, w, &e->ds, mb->rows, kc <= cap ? count * kc : cap);
        jv_work_zero_inputs(m, w, est->zeroed);
        if (kc <= cap) {
            for (int r = 0; r < count; r++)
                class_rows(e, w, i, over, list[first + r], r * kc, kc, 0);
            weigh_rows(e, w, est->family, mask, count * kc, kc, mb->log_w);
            for (int r = 0; r < count; r++) {
                weight_stats(mb->log_w + (size_t)r * kc, (size_t)kc, &lm, &lsq);
                log_p = log_add(log_p, lm);
                log_sq = log_add(log_sq, lsq);
            }
            continue;
        }
        for (int done = 0; done < kc; done += cap) {
            int batch = kc - done < cap ? kc - done : cap;
            class_rows(e, w, i, over, list[first], 0, batch, done);
            weigh_rows(e, w, est->family, mask, batch, batch, mb->log_w + done);
        }
        weight_stats(mb->log_w, (size_t)kc, &lm, &lsq);
        log_p = log_add(log_p, lm);
        log_sq = log_add(log_sq, lsq);
    }
    est->log_p[i] = log_p;
    est->log_sq[i] = log_sq;
}

/* The prior's chunks of cap samples go to the members; chunk j's sums of
 * p(w = c | z) and of its square land in prior_sums[j]. */
static void prior_member(void *arg, int id, int n)
{
    (void)n;
    evaluator *e = arg;
    const jv_model *m = e->m;
    eval_member *mb = &e->members[id];
    jv_work *w = &mb->w;
    int over = e->prior_over, classes = m->modalities[over].size;
    size_t total = (size_t)e->o.prior_samples, cap = (size_t)w->cap, chunks = (total + cap - 1) / cap;
    for (;;) {
        size_t j = atomic_fetch_add(&e->next, 1);
        if (j >= chunks)
            break;
        int rows = total - j * cap < cap ? (int)(total - j * cap) : (int)cap;
        jv_work_fill_noise(m, w, rows, e->o.seed, JV_TAG_EVAL_PRIOR, (uint64_t)over, j * cap);
        m->sample_prior(e->params, w->arena, rows, JV_CONST_ROWS(w->noise), w->latents);
        m->decode(e->params, w->arena, rows, JV_CONST_ROWS(w->latents), w->out);
        double *sum = e->prior_sums + j * 2 * (size_t)classes, *sq = sum + classes;
        for (int c = 0; c < classes; c++)
            sum[c] = sq[c] = 0;
        for (int b = 0; b < rows; b++)
            for (int c = 0; c < classes; c++) {
                double p = (double)w->out[over][(size_t)b * (size_t)classes + (size_t)c];
                sum[c] += p;
                sq[c] += p * p;
            }
    }
}

/* log p(w = c) = log of the mean of p(w = c | z) over prior samples, for
 * every class at once, then each example's own class. */
static int estimate_prior(evaluator *e, int s)
{
    estimate *est = &e->subsets[s].est[0];
    int over = est->over, classes = e->m->modalities[over].size;
    size_t total = (size_t)e->o.prior_samples, cap = (size_t)e->o.batch, chunks = (total + cap - 1) / cap;
    double *table = calloc(2 * (size_t)classes, sizeof *table);
    if (!table)
        return jv_fail("out of memory");
    e->prior_over = over;
    atomic_store(&e->next, 0);
    jv_team_run(e->team, prior_member, e);
    for (size_t j = 0; j < chunks; j++) /* in chunk order: the same for any number of threads */
        for (int c = 0; c < 2 * classes; c++)
            table[c] += e->prior_sums[j * 2 * (size_t)classes + (size_t)c];
    for (size_t i = 0; i < e->ds.n; i++) {
        int c = e->label[(size_t)over * e->ds.n + i];
        if (c < 0)
            continue; /* the example lacks the modality: it does not count */
        est->log_p[i] = log(table[c] / (double)total);
        est->log_sq[i] = log(table[classes + c]) - 2 * log((double)total);
    }
    free(table);
    return 0;
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
static int is_posterior(proposal kind)
{
    return kind == PROP_FAMILY || kind == PROP_ZERO_FED || kind == PROP_REAL_FED;
}

static void likelihood_member(void *arg, int id, int n)
{
    (void)n;
    evaluator *e = arg;
    eval_member *mb = &e->members[id];
    int k_total = e->o.samples, cap = mb->w.cap;
    size_t per = e->per_group;
    for (;;) {
        size_t g = atomic_fetch_add(&e->next, 1), i0 = g * per;
        if (g >= e->unit_hi || i0 >= e->ds.n)
            break;
        int group = e->ds.n - i0 < per ? (int)(e->ds.n - i0) : (int)per;
        int rows = k_total <= cap ? group * k_total : cap;
        for (int b = 0; b < rows; b++)
            mb->rows[b] = i0 + (size_t)(k_total <= cap ? b / k_total : 0);
        jv_work_gather(e->m, &mb->w, &e->ds, mb->rows, rows);
        for (int j = 0; j < group; j++)
            forward_terms(e, mb, i0 + (size_t)j, k_total <= cap ? j * k_total : 0);
        for (int s = 0; s < e->n_subsets; s++)
            for (int k = 0; k < e->subsets[s].n_est; k++)
                if (is_posterior(e->subsets[s].est[k].kind))
                    estimate_posterior(e, mb, s, k, i0, group);
        /* last: these overwrite the group's rows, and need the joint's estimates */
        for (int s = 0; s < e->n_subsets; s++)
            if (e->subsets[s].est[0].kind == PROP_CLASS_SUM)
                for (int j = 0; j < group; j++)
                    if (covers(e, e->subsets[s].mask, i0 + (size_t)j))
                        estimate_class_sum(e, mb, s, i0 + (size_t)j);
        size_t done = atomic_fetch_add(&e->done, (size_t)group) + (size_t)group;
        if (id == 0)
            draw_progress(e, "log-likelihoods", done, (e->unit_hi - e->unit_lo) * per);
    }
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median over the examples that have the set of the effective sample size. */
static double median_ess(const evaluator *e, unsigned mask, const estimate *est, double *scratch)
{
    size_t n = 0;
    for (size_t i = 0; i < e->ds.n; i++) {
        if (!covers(e, mask, i))
            continue;
        double ess = exp(2 * est->log_p[i] - est->log_sq[i]);
        scratch[n++] = isfinite(ess) ? ess : 0;
    }
    if (n == 0)
        return NAN;
    qsort(scratch, n, sizeof *scratch, compare_doubles);
    return n % 2 ? scratch[n / 2] : 0.5 * (scratch[n / 2 - 1] + scratch[n / 2]);
}

/* Whether every modality of the set is categorical with one-hot data: its
 * probability is then at most 1. */
static int discrete(const evaluator *e, unsigned mask)
{
    return mask && (mask & ~e->one_hot) == 0;
}

/* Marks what cannot be true of the means: log p > 0 for a discrete set, a
 * marginal log p(S) below the joint log p(S, w) of a discrete w. */
static void flag_impossible(evaluator *e)
{
    const double tol = 1e-6;
    for (int s = 0; s < e->n_subsets; s++)
        for (int k = 0; k < e->subsets[s].n_est; k++) {
            estimate *est = &e->subsets[s].est[k];
            unsigned mask = e->subsets[s].mask;
            if (discrete(e, mask) && est->stat.mean > tol) {
                est->impossible = 1;
                continue;
            }
            for (int t = 0; t < e->n_subsets && !est->impossible; t++) {
                unsigned extra = e->subsets[t].mask & ~mask;
                if ((e->subsets[t].mask & mask) != mask || !extra || !discrete(e, extra))
                    continue;
                /* on the examples both cover (all of them, with complete data) */
                jv_stat mine = {0}, theirs = {0};
                for (size_t i = 0; i < e->ds.n; i++)
                    if (covers(e, e->subsets[t].mask, i)) {
                        jv_stat_add(&mine, est->log_p[i]);
                        jv_stat_add(&theirs, e->subsets[t].est[0].log_p[i]);
                    }
                if (mine.n > 0 && mine.mean < theirs.mean - tol) {
                    est->impossible = 2;
                    est->versus = t;
                }
            }
        }
}

/* Why an estimate is impossible, in words. */
static void why_impossible(const evaluator *e, int s, const estimate *est, jv_buf *b)
{
    char name[200], more[200];
    jv_subset_name(e->m, e->subsets[s].mask, name, sizeof name);
    if (est->impossible == 1) {
        jv_buf_printf(b, "%+.4f > 0, but p(%s) <= 1 for a discrete %s: the proposal misses the posterior",
                      est->stat.mean, name, name);
        return;
    }
    jv_subset_name(e->m, e->subsets[est->versus].mask, more, sizeof more);
    jv_buf_printf(b, "%.4f is below log p(%s) = %.4f, which a marginal cannot be: the proposal misses the posterior",
                  est->stat.mean, more, e->subsets[est->versus].est[0].stat.mean);
}

/* Splits `units` pieces of work of `per` examples among the processes:
 * this one's pieces into unit_lo, unit_hi; every process's examples into
 * first[p], end[p]. */
static void share_units(evaluator *e, size_t units, size_t per, size_t *first, size_t *end)
{
    for (int p = 0; p < e->ranks; p++) {
        size_t lo, hi;
        jv_split_range(units, 1, p, e->ranks, &lo, &hi);
        if (p == e->rank) {
            e->unit_lo = lo;
            e->unit_hi = hi;
        }
        first[p] = lo * per < e->ds.n ? lo * per : e->ds.n;
        end[p] = hi * per < e->ds.n ? hi * per : e->ds.n;
    }
}

/* Every process's examples [first[p], end[p]) of a per-example array of
 * `elem`-byte values to process 0. */
static void gather_examples(const evaluator *e, void *array, size_t elem, const size_t *first, const size_t *end)
{
    if (e->ranks == 1)
        return;
    size_t *bytes = malloc(2 * (size_t)e->ranks * sizeof *bytes), *displs = bytes + e->ranks;
    if (!bytes) {
        jv_fail("out of memory");
        jv_comm_abort(1);
    }
    for (int p = 0; p < e->ranks; p++) {
        bytes[p] = (end[p] - first[p]) * elem;
        displs[p] = first[p] * elem;
    }
    jv_comm_gather0(array, bytes, displs);
    free(bytes);
}

static int estimate_likelihoods(evaluator *e)
{
    for (int s = 0; s < e->n_subsets; s++)
        if (e->subsets[s].est[0].kind == PROP_PRIOR && estimate_prior(e, s) != 0)
            return 1;
    e->start = jv_now();
    int k_total = e->o.samples, cap = e->members[0].w.cap;
    size_t per = e->per_group = k_total <= cap ? (size_t)(cap / k_total) : 1, groups = (e->ds.n + per - 1) / per;
    size_t *first = calloc(2 * (size_t)e->ranks, sizeof *first), *end = first + e->ranks;
    if (!first)
        return jv_fail("out of memory");
    share_units(e, groups, per, first, end);
    atomic_store(&e->next, e->unit_lo);
    atomic_store(&e->done, 0);
    jv_team_run(e->team, likelihood_member, e);
    jv_progress_clear(&e->bar);
    gather_examples(e, e->ex_loss, sizeof(double), first, end);
    gather_examples(e, e->ex_elbo, sizeof(double), first, end);
    for (int t = 0; t < e->m->n_terms; t++)
        gather_examples(e, e->ex_terms + (size_t)t * e->ds.n, sizeof(double), first, end);
    for (int s = 0; s < e->n_subsets; s++)
        for (int k = 0; k < e->subsets[s].n_est; k++) {
            gather_examples(e, e->subsets[s].est[k].log_p, sizeof(double), first, end);
            gather_examples(e, e->subsets[s].est[k].log_sq, sizeof(double), first, end);
        }
    free(first);
    if (e->rank != 0) /* process 0 alone holds every example's numbers, and reports them */
        return 0;
    /* the statistics in example order: the same for any number of threads */
    for (size_t i = 0; i < e->ds.n; i++) {
        if (covers(e, e->ds.present, i)) { /* the objective and the ELBO: complete examples */
            jv_stat_add(&e->loss, e->ex_loss[i]);
            jv_stat_add(&e->elbo, e->ex_elbo[i]);
            for (int t = 0; t < e->m->n_terms; t++)
                jv_stat_add(&e->terms[t], e->ex_terms[(size_t)t * e->ds.n + i]);
        }
        for (int s = 0; s < e->n_subsets; s++)
            for (int k = 0; k < e->subsets[s].n_est && covers(e, e->subsets[s].mask, i); k++)
                jv_stat_add(&e->subsets[s].est[k].stat, e->subsets[s].est[k].log_p[i]);
    }
    double *scratch = malloc((e->ds.n ? e->ds.n : 1) * sizeof *scratch);
    if (!scratch)
        return jv_fail("out of memory");
    for (int s = 0; s < e->n_subsets; s++)
        for (int k = 0; k < e->subsets[s].n_est; k++)
            e->subsets[s].est[k].ess = median_ess(e, e->subsets[s].mask, &e->subsets[s].est[k], scratch);
    free(scratch);
    flag_impossible(e);
    return 0;
}

/* Accuracy of argmax p(target | z), z from the posterior given `from` alone,
 * for the batch of examples from `first` on. */
static void predict_batch(evaluator *e, eval_member *mb, int p, size_t first)
{
    const jv_model *m = e->m;
    jv_work *w = &mb->w;
    prediction *pr = &e->predictions[p];
    unsigned zeroed;
    const jv_family_info *f = &m->families[jv_pick_family(m, pr->from, &zeroed)];
    int size = m->modalities[pr->target].size;
    int batch = e->ds.n - first < (size_t)w->cap ? (int)(e->ds.n - first) : w->cap;
    for (int b = 0; b < batch; b++)
        mb->rows[b] = first + (size_t)b;
    jv_work_gather(m, w, &e->ds, mb->rows, batch);
    jv_work_zero_inputs(m, w, zeroed);
    jv_work_fill_noise(m, w, batch, e->o.seed, JV_TAG_EVAL_ACCURACY, (uint64_t)p << 32, first);
    jv_family_sample(m, (int)(f - m->families), pr->from, e->params, w->arena, batch, 1, JV_CONST_ROWS(w->input),
                     JV_CONST_ROWS(w->noise), w->latents, w->log_q);
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
    size_t cap = (size_t)mb->w.cap, batches = e->unit_hi - e->unit_lo;
    for (;;) {
        size_t job = atomic_fetch_add(&e->next, 1);
        if (job >= batches * (size_t)e->n_predictions)
            break;
        predict_batch(e, mb, (int)(job / batches), (e->unit_lo + job % batches) * cap);
    }
}

static int estimate_predictions(evaluator *e)
{
    size_t cap = (size_t)e->members[0].w.cap, batches = (e->ds.n + cap - 1) / cap;
    size_t *first = calloc(2 * (size_t)e->ranks, sizeof *first), *end = first + e->ranks;
    if (!first)
        return jv_fail("out of memory");
    share_units(e, batches, cap, first, end);
    atomic_store(&e->next, 0);
    jv_team_run(e->team, prediction_member, e);
    for (int p = 0; p < e->n_predictions; p++)
        gather_examples(e, e->predictions[p].correct, 1, first, end);
    free(first);
    for (int p = 0; e->rank == 0 && p < e->n_predictions; p++) {
        prediction *pr = &e->predictions[p];
        unsigned zeroed;
        jv_pick_family(e->m, pr->from, &zeroed);
        pr->imputed = zeroed != 0;
        for (size_t i = 0; i < e->ds.n; i++)
            if (covers(e, pr->from | 1u << pr->target, i))
                jv_stat_add(&pr->stat, pr->correct[i]);
    }
    return 0;
}

/* ------------------------------------------------------------- report -- */

/* What an estimate's proposal is, in words. */
static void describe(const evaluator *e, const subset *s, const estimate *est, jv_buf *b)
{
    const jv_model *m = e->m;
    const jv_family_info *f = &m->families[est->family];
    char rest[200], mine[200];
    jv_subset_name(m, s->mask, mine, sizeof mine);
    switch (est->kind) {
    case PROP_FAMILY:
        if (f->posterior_given) /* a family of experts: the subset's own posterior */
            jv_buf_printf(b, "q(z|%s) of the experts of %s, %d samples an example", mine, mine, e->o.samples);
        else
            jv_buf_printf(b, "q(z|%s), %d samples an example", f->name, e->o.samples);
        break;
    case PROP_ZERO_FED:
        jv_subset_name(m, est->zeroed, rest, sizeof rest);
        jv_buf_printf(b, "q(z|%s) with %s fed as zeros (the JMVAE-zero rule, the papers' protocol), %d samples",
                      f->name, rest, e->o.samples);
        break;
    case PROP_REAL_FED:
        jv_subset_name(m, f->condition & ~s->mask, rest, sizeof rest);
        jv_buf_printf(b, "q(z|%s) given the real %s (--fallback joint, as Suzuki et al.), %d samples", f->name, rest,
                      e->o.samples);
        break;
    case PROP_PRIOR:
        jv_buf_printf(b, "the prior p(z), %d samples shared by every example (p(%s=c) for each class c)",
                      e->o.prior_samples, m->modalities[est->over].name);
        break;
    case PROP_CLASS_SUM: {
        const char *w = m->modalities[est->over].name;
        jv_buf_printf(b,
                      "the sum over the %d classes c of %s of p(%s,%s=c): the true class's term is the estimate of "
                      "log p(%s,%s), the others use q(z|%s) fed %s=c, %d samples each",
                      m->modalities[est->over].size, w, mine, w, mine, w, f->name, w, e->o.class_samples);
        break;
    }
    }
}

/* The legend: each distinct proposal once, numbered as first printed. */
typedef struct {
    int n, cap;
    char **text;
} legend;

static void legend_free(legend *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->text[i]);
    free(l->text);
}

static int legend_number(legend *l, const evaluator *e, const subset *s, const estimate *est)
{
    jv_buf b = {0};
    describe(e, s, est, &b);
    if (b.failed || !b.data)
        return jv_buf_free(&b), 0;
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->text[i], (const char *)b.data) == 0)
            return jv_buf_free(&b), i + 1;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        char **more = realloc(l->text, (size_t)cap * sizeof *more);
        if (!more)
            return jv_buf_free(&b), 0;
        l->text = more;
        l->cap = cap;
    }
    l->text[l->n++] = (char *)b.data; /* the legend owns it now */
    return l->n;
}

/* A label for the family rule's estimate when another one is reported. */
static const char *second_label(proposal kind)
{
    switch (kind) {
    case PROP_ZERO_FED:
        return "  JMVAE-zero protocol";
    case PROP_REAL_FED:
        return "  Suzuki et al. protocol";
    default:
        return "  with its own family";
    }
}

/* A row of the table: with incomplete data, the examples it covers after the ESS. */
static void print_row(const evaluator *e, const char *label, const char *mean, const char *se, const char *ess,
                      double n, const char *note)
{
    char count[32] = "";
    if (e->incomplete && n < 0)
        snprintf(count, sizeof count, " %8s", "examples");
    else if (e->incomplete)
        snprintf(count, sizeof count, " %8.0f", n);
    printf("  %-30s %14s %10s %9s%s  %s\n", label, mean, se, ess, count, note);
}

static void print_value(const evaluator *e, const char *label, const jv_stat *st, double ess, const char *note)
{
    double se = jv_stat_se(st);
    char mean_text[32] = "-", se_text[32] = "-", ess_text[32] = "";
    if (st->n > 0)
        snprintf(mean_text, sizeof mean_text, "%.4f", st->mean);
    if (isfinite(se))
        snprintf(se_text, sizeof se_text, "%.4f", se);
    if (isfinite(ess))
        snprintf(ess_text, sizeof ess_text, "%.1f", ess);
    print_row(e, label, mean_text, se_text, ess_text, st->n, st->n > 0 ? note : "no example has all of them");
}

static void print_impossible(const evaluator *e, const char *label, double n, const char *note)
{
    print_row(e, label, "impossible", "", "", n, note);
}

static void print_estimate(evaluator *e, legend *l, const subset *s, int k, const char *label)
{
    const estimate *est = &s->est[k];
    char note[64];
    snprintf(note, sizeof note, "[%d]%s", legend_number(l, e, s, est), est->ess < LOW_ESS ? " low ESS" : "");
    if (est->impossible)
        print_impossible(e, label, est->stat.n, note);
    else
        print_value(e, label, &est->stat, est->ess, note);
}

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

/* log p(a|b) = log p(a,b) - log p(b), example by example, from estimate
 * ka of the pair and kb of b; impossible when either is, or when a is
 * discrete and the mean is above 0. */
static jv_stat conditional_stat(const evaluator *e, int a, int joint, int ka, int given, int kb, int *impossible)
{
    jv_stat st = {0};
    const estimate *j = &e->subsets[joint].est[ka], *g = &e->subsets[given].est[kb];
    for (size_t i = 0; i < e->ds.n; i++)
        if (covers(e, e->subsets[joint].mask, i))
            jv_stat_add(&st, j->log_p[i] - g->log_p[i]);
    *impossible = j->impossible || g->impossible || (discrete(e, 1u << a) && st.mean > 1e-6);
    return st;
}

typedef struct {
    legend *l;
} print_ctx;

static void print_conditional(evaluator *e, int a, int b, int joint, int given, void *ctx)
{
    legend *l = ((print_ctx *)ctx)->l;
    char label[256], note[64];
    snprintf(label, sizeof label, "log p(%s|%s)", e->m->modalities[a].name, e->m->modalities[b].name);
    const subset *sj = &e->subsets[joint], *sg = &e->subsets[given];
    for (int k = 0; k < sg->n_est; k++) {
        int kj = k < sj->n_est ? k : sj->n_est - 1, bad;
        jv_stat st = conditional_stat(e, a, joint, kj, given, k, &bad);
        int nj = legend_number(l, e, sj, &sj->est[kj]);
        snprintf(note, sizeof note, "[%d] - [%d]", nj, legend_number(l, e, sg, &sg->est[k]));
        const char *row = k == 0 ? label : second_label(sg->est[k].kind);
        if (bad)
            print_impossible(e, row, st.n, note);
        else
            print_value(e, row, &st, NAN, note);
    }
}

static int term_weighted(const jv_model *m, int t)
{
    return m->term_weights[t].hyper >= 0 || m->term_weights[t].value * m->term_weights[t].scale != 1;
}

/* The weight term t carries in eval (the spec's value of its hyper, and its loop's scale). */
static double term_weight(const jv_model *m, int t)
{
    const jv_term_weight *w = &m->term_weights[t];
    return (w->hyper >= 0 ? m->hypers[w->hyper].value : w->value) * w->scale;
}

/* Term t without its weight, example by example. */
static jv_stat raw_term(const evaluator *e, int t)
{
    jv_stat st = {0};
    double weight = term_weight(e->m, t);
    for (size_t i = 0; weight != 0 && i < e->ds.n; i++)
        if (covers(e, e->ds.present, i))
            jv_stat_add(&st, e->ex_terms[(size_t)t * e->ds.n + i] / weight);
    return st;
}

static void print_terms(const evaluator *e)
{
    const jv_model *m = e->m;
    char label[256];
    for (int t = 0; t < m->n_terms; t++) {
        snprintf(label, sizeof label, "  %s", m->term_names[t]);
        print_value(e, label, &e->terms[t], NAN, "");
    }
    for (int t = 0; t < m->n_terms; t++) {
        if (!term_weighted(m, t))
            continue;
        const jv_term_weight *w = &m->term_weights[t];
        char scale[64] = "";
        if (w->scale != 1)
            snprintf(scale, sizeof scale, " / %g", w->scale);
        if (w->hyper >= 0)
            snprintf(label, sizeof label, "  (%s / %s%s)", m->term_names[t], m->hypers[w->hyper].name, scale);
        else
            snprintf(label, sizeof label, "  (%s / %g)", m->term_names[t], w->value * w->scale);
        jv_stat st = raw_term(e, t);
        if (st.n > 0)
            print_value(e, label, &st, NAN, "the term without its weight");
    }
}

static void print_notes(const evaluator *e, legend *l)
{
    int numbered = l->n;
    for (int i = 0; i < numbered; i++)
        printf("[%d] %s\n", i + 1, l->text[i]);
    for (int k = 0; k < e->m->n_modalities; k++)
        if (!e->m->modalities[k].decoded)
            printf("* %s has no decoder (no network gives p(%s | ...)): no likelihood or accuracy involves it\n",
                   e->m->modalities[k].name, e->m->modalities[k].name);
    for (int k = 0; k < e->m->n_modalities; k++)
        if (e->m->modalities[k].likelihood == JV_CATEGORICAL && e->m->modalities[k].decoded &&
            !(e->one_hot >> k & 1u))
            printf("* %s's data are not all one-hot (or it has more than %d classes): its estimates use the family "
                   "rule alone\n",
                   e->m->modalities[k].name, MAX_CLASSES);
    char name[200];
    for (int s = 0; s < e->n_subsets; s++)
        for (int k = 0; k < e->subsets[s].n_est; k++)
            if (e->subsets[s].est[k].impossible) {
                jv_buf b = {0};
                why_impossible(e, s, &e->subsets[s].est[k], &b);
                jv_subset_name(e->m, e->subsets[s].mask, name, sizeof name);
                printf("* log p(%s) with [%d] is impossible: %s\n", name,
                       legend_number(l, e, &e->subsets[s], &e->subsets[s].est[k]),
                       b.data && !b.failed ? (const char *)b.data : "");
                jv_buf_free(&b);
            }
    printf("ESS: median effective sample size (sum w)^2 / sum w^2 of an example's weights; \"low ESS\" below %g\n",
           LOW_ESS);
    for (int p = 0; p < e->n_predictions; p++)
        if (e->predictions[p].imputed) {
            printf("* accuracy from a modality without a family of its own uses the training family with the rest "
                   "fed as zeros (the JMVAE-zero rule)\n");
            break;
        }
}

static void print_table(evaluator *e)
{
    const jv_model *m = e->m;
    char label[256], name[200];
    legend legend_ = {0}, *l = &legend_;
    printf("model %s, %s: %zu examples, %d importance samples each (seed %llu); %d samples for each other class "
           "of a sum over classes%s, %d prior samples%s\n", m->name, e->o.checkpoint, e->ds.n, e->o.samples,
           (unsigned long long)e->o.seed, e->o.class_samples, e->o.class_given ? "" : " (K / 10)", e->o.prior_samples,
           e->o.prior_given ? "" : " (100 K)");
    printf("threads %d of %d cores%s; %s%s%s\n\n", e->o.threads, jv_cpu_count(),
           e->o.threads > jv_cpu_count() ? " (more threads than cores: slower, same numbers)" : "", jv_blas_describe(),
           e->ranks > 1 ? "; " : "", e->ranks > 1 ? jv_comm_describe() : "");
    print_row(e, "quantity", "mean", "s.e.", "ESS", -1, "proposal");
    print_value(e, "ELBO", &e->elbo, NAN, "");
    char objective[160];
    if (m->samples > 1)
        snprintf(objective, sizeof objective, "the importance-weighted bound of K = %d training samples; the terms are "
                 "their means over the samples", m->samples);
    else
        snprintf(objective, sizeof objective, "the sum of the terms below");
    print_value(e, "loss (objective)", &e->loss, NAN, objective);
    print_terms(e);
    for (int s = 0; s < e->n_subsets; s++) {
        jv_subset_name(m, e->subsets[s].mask, name, sizeof name);
        snprintf(label, sizeof label, "log p(%s)", name);
        for (int k = 0; k < e->subsets[s].n_est; k++)
            print_estimate(e, l, &e->subsets[s], k, k == 0 ? label : second_label(e->subsets[s].est[k].kind));
    }
    print_ctx ctx = {l};
    for_each_conditional(e, print_conditional, &ctx);
    for (int p = 0; p < e->n_predictions; p++) {
        const prediction *pr = &e->predictions[p];
        jv_subset_name(m, pr->from, name, sizeof name);
        snprintf(label, sizeof label, "accuracy %s|%s", m->modalities[pr->target].name, name);
        print_value(e, label, &pr->stat, NAN, pr->imputed ? "JMVAE-zero rule" : "");
    }
    printf("\n");
    print_notes(e, l);
    legend_free(l);
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
    json_number(b, st->n > 0 ? st->mean : NAN);
    jv_buf_printf(b, ", \"se\": ");
    json_number(b, jv_stat_se(st));
    jv_buf_printf(b, ", \"examples\": %.0f}", st->n);
}

/* One "key": of an object, a comma before all but the first. */
static void json_key(jv_buf *b, int first, const char *key)
{
    jv_buf_printf(b, "%s\n    ", first ? "" : ",");
    json_string(b, key);
    jv_buf_printf(b, ": ");
}

static void json_stat(jv_buf *b, int first, const char *key, const jv_stat *st)
{
    json_key(b, first, key);
    json_stat_value(b, st);
}

/* {"mean", "se", "ess", "proposal"}; an impossible value's mean is null,
 * with the number and the reason beside it. */
static void json_estimate(const evaluator *e, jv_buf *b, int first, const char *key, const subset *s, int k)
{
    const estimate *est = &s->est[k];
    json_key(b, first, key);
    jv_buf_printf(b, "{\"mean\": ");
    json_number(b, est->impossible ? NAN : est->stat.mean);
    jv_buf_printf(b, ", \"se\": ");
    json_number(b, jv_stat_se(&est->stat));
    jv_buf_printf(b, ", \"ess\": ");
    json_number(b, est->ess);
    jv_buf_printf(b, ", \"examples\": %.0f", est->stat.n);
    jv_buf text = {0};
    describe(e, s, est, &text);
    jv_buf_printf(b, ", \"proposal\": ");
    json_string(b, text.data && !text.failed ? (const char *)text.data : "");
    jv_buf_free(&text);
    if (est->impossible) {
        jv_buf why = {0};
        why_impossible(e, (int)(s - e->subsets), est, &why);
        jv_buf_printf(b, ", \"impossible\": ");
        json_string(b, why.data && !why.failed ? (const char *)why.data : "");
        jv_buf_free(&why);
        jv_buf_printf(b, ", \"estimate\": ");
        json_number(b, est->stat.mean);
    }
    jv_buf_printf(b, "}");
}

typedef struct {
    jv_buf *buf;
    int count, alt;
} json_list;

static void json_conditional(evaluator *e, int a, int b, int joint, int given, void *ctx)
{
    json_list *list = ctx;
    const subset *sj = &e->subsets[joint], *sg = &e->subsets[given];
    int k = list->alt ? sg->n_est - 1 : 0, kj = list->alt ? sj->n_est - 1 : 0, bad;
    if (list->alt && sg->n_est == 1 && sj->n_est == 1)
        return;
    char key[256];
    snprintf(key, sizeof key, "%s|%s", e->m->modalities[a].name, e->m->modalities[b].name);
    jv_stat st = conditional_stat(e, a, joint, kj, given, k, &bad);
    json_key(list->buf, list->count++ == 0, key);
    jv_buf_printf(list->buf, "{\"mean\": ");
    json_number(list->buf, bad ? NAN : st.mean);
    jv_buf_printf(list->buf, ", \"se\": ");
    json_number(list->buf, jv_stat_se(&st));
    if (bad) {
        jv_buf_printf(list->buf, ", \"impossible\": true, \"estimate\": ");
        json_number(list->buf, st.mean);
    }
    jv_buf_printf(list->buf, "}");
}

static void json_groups(evaluator *e, jv_buf *b)
{
    const jv_model *m = e->m;
    char name[256];
    jv_buf_printf(b, "  \"terms\": {");
    for (int t = 0; t < m->n_terms; t++)
        json_stat(b, t == 0, m->term_names[t], &e->terms[t]);
    jv_buf_printf(b, "\n  },\n  \"terms_raw\": {");
    for (int t = 0, first = 1; t < m->n_terms; t++)
        if (term_weighted(m, t)) {
            jv_stat st = raw_term(e, t);
            json_key(b, first, m->term_names[t]);
            first = 0;
            jv_buf_printf(b, "{\"mean\": ");
            json_number(b, st.n > 0 ? st.mean : NAN);
            jv_buf_printf(b, ", \"se\": ");
            json_number(b, jv_stat_se(&st));
            jv_buf_printf(b, ", \"weight\": ");
            json_number(b, term_weight(m, t));
            jv_buf_printf(b, "}");
        }
    jv_buf_printf(b, "\n  },\n  \"log_p\": {");
    for (int s = 0; s < e->n_subsets; s++) {
        jv_subset_name(m, e->subsets[s].mask, name, sizeof name);
        json_estimate(e, b, s == 0, name, &e->subsets[s], 0);
    }
    jv_buf_printf(b, "\n  },\n  \"log_p_family_rule\": {");
    for (int s = 0, first = 1; s < e->n_subsets; s++)
        if (e->subsets[s].n_est > 1) {
            jv_subset_name(m, e->subsets[s].mask, name, sizeof name);
            json_estimate(e, b, first, name, &e->subsets[s], 1);
            first = 0;
        }
    jv_buf_printf(b, "\n  },\n  \"log_p_cond\": {");
    json_list list = {b, 0, 0};
    for_each_conditional(e, json_conditional, &list);
    jv_buf_printf(b, "\n  },\n  \"log_p_cond_family_rule\": {");
    list = (json_list){b, 0, 1};
    for_each_conditional(e, json_conditional, &list);
    jv_buf_printf(b, "\n  },\n  \"accuracy\": {");
    for (int p = 0; p < e->n_predictions; p++) {
        char from[200];
        jv_subset_name(m, e->predictions[p].from, from, sizeof from);
        snprintf(name, sizeof name, "%s|%s", m->modalities[e->predictions[p].target].name, from);
        json_stat(b, p == 0, name, &e->predictions[p].stat);
    }
    jv_buf_printf(b, "\n  }\n");
}

static int write_json(evaluator *e)
{
    jv_buf b = {0};
    jv_buf_printf(&b, "{\n  \"model\": ");
    json_string(&b, e->m->name);
    jv_buf_printf(&b, ",\n  \"checkpoint\": ");
    json_string(&b, e->o.checkpoint);
    jv_buf_printf(&b, ",\n  \"examples\": %zu,\n  \"samples\": %d,\n  \"class_samples\": %d,\n"
                  "  \"prior_samples\": %d,\n  \"seed\": %llu,\n  \"fallback\": ",
                  e->ds.n, e->o.samples, e->o.class_samples, e->o.prior_samples, (unsigned long long)e->o.seed);
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
    evaluator e = {.m = m, .rank = jv_comm_rank(), .ranks = jv_comm_size()};
    unsigned all = m->n_modalities == 32 ? ~0u : (1u << m->n_modalities) - 1;
    int rc = parse_eval_options(&e, argc, argv);
    if (rc == 0)
        rc = jv_dataset_load(m, "eval", &e.o.data, &e.o.observed, all, e.o.limit, &e.ds);
    if (rc == 0 && e.rank == 0)
        jv_dataset_print_subsets(m, &e.ds, "test examples", NULL, e.ds.n);
    e.incomplete = rc == 0 && jv_dataset_incomplete(&e.ds, NULL, e.ds.n);
    if (rc == 0)
        rc = (e.params = jv_params_read(m, e.o.checkpoint)) == NULL;
    if (rc == 0)
        rc = alloc_evaluator(&e);
    if (jv_comm_max(rc == 1) && rc == 0) /* a process that failed has said why; all stop */
        rc = 1;
    if (rc == 0) {
        jv_progress_init(&e.bar);
        e.bar.tty = e.bar.tty && !jv_comm_is_mpi();
        rc = estimate_likelihoods(&e);
    }
    if (rc == 0)
        rc = estimate_predictions(&e);
    if (rc == 0 && e.rank == 0) { /* process 0 holds every example's results */
        print_table(&e);
        if (e.o.json)
            rc = write_json(&e);
    }
    rc = rc == 2 ? 2 : jv_comm_max(rc);
    free_evaluator(&e);
    return rc;
}
