/* jv_gradcheck.h: the gradient check of a generated model, header-only.
 *
 * The generated code compiles this in double precision (-DJV_DOUBLE) and
 * calls jv_gradcheck_run from its <model>_gradcheck. It uses only the inline
 * generator of jv_model.h and the option parser of jv_trainer.h, never a
 * libjmvaec function that takes float arrays (only jv_set_threads).
 *
 * With parameters from m->init(seed), random data for a small batch
 * (bernoulli targets uniform in [0,1], categorical one-hot, gaussian normal)
 * and random noise, it checks the objective and then each term alone
 * (term_scale one-hot): backward must write every gradient entry, and a
 * deterministic sample of entries of every tensor is compared with central
 * differences, step h = 1e-6 max(1, |p|). An entry passes when
 *   |a - n| <= tol * max(|a|, |n|)            (max(|a|, |n|) > 1e-7), or
 *   |a - n| <= 1e-9                           (a tiny gradient), or
 *   |a - n| <= 4 * (finite-difference noise)  estimated as the larger of
 *     |n(h) - n(2h)| and eps |f| / h, or a agrees to tol with the
 *     difference at a larger step, 10 h or 100 h (less rounding: a sum of
 *     terms much larger than itself rounds worse than eps |f|): the
 *     difference cannot be told from rounding; such entries are counted
 *     and reported; or
 *   the objective has a kink there (an activation such as relu exactly at
 *     0: the one-sided differences (f(p+h) - f(p)) / h and (f(p) - f(p-h)) / h
 *     disagree) and a agrees with one of them to 1e-4; such entries are
 *     counted and reported too (a central difference at a kink is the
 *     average of two slopes, which no gradient is).
 * With the ELBO one forward at each moved parameter serves every objective
 * (its terms are kept). The table shows, per tensor and objective, the largest relative error
 * of the entries compared relatively.
 */
#ifndef JV_GRADCHECK_H
#define JV_GRADCHECK_H

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jv_model.h"
#include "jv_runtime.h"
#include "jv_trainer.h"

typedef struct {
    uint64_t seed;
    int batch, entries, quiet, threads;
    double tol;
    const char *checkpoint, *dump;
} jv_gc_options;

typedef struct {
    const jv_model *m;
    jv_gc_options o;
    jv_real *params, *grads, *arena, *scale, *terms;
    jv_real **data, **noise;   /* noise: [n_noise], as jv_work's (jv_trainer_int.h) */
    int n_noise;
    unsigned flags;            /* of the step: JV_STEP_EXACT for the check, 0 (the model's own estimator) for --dump */
    int objective;             /* -1: the whole objective; else that term alone */
    const jv_subset_step *step;/* the step checked: complete examples' (NULL), or an observed subset's */
    long checked, noisy, kinked, failed;
    double worst;              /* the largest relative error of any entry */
    /* With the ELBO (K = 1) forward's terms do not depend on term_scale, so
     * the terms at each moved parameter are kept (jv_gc_loss_moved) and
     * serve every objective: one forward per step, not one per objective. */
    size_t cap;                /* slots of the table; 0: nothing kept */
    size_t *moved_param;       /* [cap] the parameter moved, + 1 (0: an empty slot) */
    jv_real *moved_value;      /* [cap] the value it was moved to */
    jv_real *moved_terms;      /* [cap x n_terms] forward's terms there */
} jv_gc;

/* Streams of the inline generator (jv_model.h) for the check's inputs. */
enum { JV_GC_DATA = 101, JV_GC_NOISE = 102, JV_GC_PICK = 103 };

static inline int jv_gc_parse(jv_gc *g, int argc, char **argv)
{
    jv_gc_options *o = &g->o;
    *o = (jv_gc_options){.seed = g->m->defaults.seed, .batch = 3, .entries = 6, .tol = 1e-6, .threads = 1};
    jv_option opts[] = {
        {"seed", JV_OPT_U64, &o->seed, 0, 1.8446744073709552e19, "S", "seed of parameters, data and noise", 0},
        {"batch", JV_OPT_INT, &o->batch, 1, 1000, "B", "examples of random data", 0},
        {"entries", JV_OPT_INT, &o->entries, 1, INT_MAX, "E", "entries checked per tensor", 0},
        {"tol", JV_OPT_REAL, &o->tol, 0, 1, "X", "largest relative error that passes", 0},
        {"threads", JV_OPT_INT, &o->threads, 1, 1024, "T", "BLAS threads", 0},
        {"quiet", JV_OPT_FLAG, &o->quiet, 0, 0, NULL, "print only the verdict", 0},
        {"checkpoint", JV_OPT_STRING, &o->checkpoint, 0, 0, "CKPT", "the parameters of CKPT instead of fresh ones", 0},
        {"dump", JV_OPT_STRING, &o->dump, 0, 0, "FILE",
         "also write the check's batch and what the model computes on it, in double precision, as a NumPy .npz", 0},
    };
    return jv_parse_options("gradcheck", "[options]",
                            "Compares the analytic gradient of the objective, and of each term alone,\n"
                            "with central finite differences, in double precision, at fresh parameters\n"
                            "(init with --seed) or a checkpoint's. --dump FILE writes, as float64\n"
                            "arrays: params/<tensor>, data/<modality>, noise/<latent> (the random batch),\n"
                            "loss, terms (as the spec names them, in order) and grad/<tensor> of the\n"
                            "objective; posterior/<family>/<latent> and posterior/<family>/log_q of each\n"
                            "family of posteriors with that noise (<family> its modalities: x,w);\n"
                            "log_joint/log_prior and log_joint/<modality> and decode/<modality> at the\n"
                            "training family's sample; sample_prior/<latent> from the noise.",
                            opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
}

/* ------------------------------------------------------------- memory -- */

static inline jv_real *jv_gc_reals(size_t n)
{
    return calloc(n ? n : 1, sizeof(jv_real));
}

static inline void jv_gc_free_rows(jv_real **rows, int count)
{
    for (int i = 0; rows && i < count; i++)
        free(rows[i]);
    free(rows);
}

static inline void jv_gc_free(jv_gc *g)
{
    free(g->params);
    free(g->grads);
    free(g->arena);
    free(g->scale);
    free(g->terms);
    free(g->moved_param);
    free(g->moved_value);
    free(g->moved_terms);
    jv_gc_free_rows(g->data, g->m->n_modalities);
    jv_gc_free_rows(g->noise, g->n_noise);
}

/* The width of noise buffer i: of latent i (posteriors, the prior), of a
 * mixture's choice (n_latents + l), of draw i of the training step. */
static inline size_t jv_gc_noise_width(const jv_model *m, int i)
{
    size_t a = i < m->n_latents ? (size_t)m->latents[i].size : i < 2 * m->n_latents ? 1 : 0;
    size_t d = i < m->n_draws ? (size_t)m->latents[m->draw_latents[i]].size * (size_t)(m->samples > 1 ? m->samples : 1) : 0;
    return a > d ? a : d;
}

static inline int jv_gc_rows_ok(jv_real **rows, int count)
{
    for (int i = 0; rows && i < count; i++)
        if (!rows[i])
            return 0;
    return rows != NULL;
}

static inline int jv_gc_alloc(jv_gc *g)
{
    const jv_model *m = g->m;
    size_t n = m->n_params, b = (size_t)g->o.batch;
    g->params = jv_gc_reals(n);
    g->grads = jv_gc_reals(n);
    g->arena = jv_gc_reals(m->arena_per_example * b);
    g->scale = jv_gc_reals((size_t)m->n_terms);
    g->terms = jv_gc_reals((size_t)m->n_terms);
    g->data = calloc((size_t)m->n_modalities + 1, sizeof *g->data);
    g->n_noise = m->n_draws > 2 * m->n_latents ? m->n_draws : 2 * m->n_latents;
    g->noise = calloc((size_t)g->n_noise + 1, sizeof *g->noise);
    for (int k = 0; g->data && k < m->n_modalities; k++)
        g->data[k] = jv_gc_reals(b * (size_t)m->modalities[k].size);
    for (int i = 0; g->noise && i < g->n_noise; i++)
        g->noise[i] = jv_gc_reals(b * jv_gc_noise_width(m, i) + 1);
    /* six moves at most per checked entry (two steps each way, and once more one step each way at a kink) */
    size_t moves = 6 * (size_t)g->o.entries * (size_t)(m->n_tensors > 0 ? m->n_tensors : 1);
    for (g->cap = m->samples > 1 || m->n_terms < 1 ? 0 : 64; g->cap && g->cap < 2 * moves;)
        g->cap *= 2;
    g->moved_param = g->cap ? calloc(g->cap, sizeof *g->moved_param) : NULL;
    g->moved_value = g->cap ? jv_gc_reals(g->cap) : NULL;
    g->moved_terms = g->cap ? jv_gc_reals(g->cap * (size_t)m->n_terms) : NULL;
    if (g->cap && (!g->moved_param || !g->moved_value || !g->moved_terms))
        g->cap = 0; /* no table: every objective runs its own forwards */
    if (g->params && g->grads && g->arena && g->scale && g->terms && jv_gc_rows_ok(g->data, m->n_modalities) &&
        jv_gc_rows_ok(g->noise, g->n_noise))
        return 0;
    return jv_fail("gradcheck: out of memory");
}

/* ------------------------------------------------------------- inputs -- */

static inline void jv_gc_fill_modality(jv_gc *g, int k)
{
    const jv_modality_info *mod = &g->m->modalities[k];
    uint64_t stream = (uint64_t)JV_GC_DATA << 32 | (uint64_t)k;
    for (int b = 0; b < g->o.batch; b++) {
        jv_real *row = g->data[k] + (size_t)b * (size_t)mod->size;
        uint64_t base = (uint64_t)b * (uint64_t)mod->size;
        if (mod->likelihood == JV_CATEGORICAL) {
            memset(row, 0, (size_t)mod->size * sizeof(jv_real));
            row[(int)(jv_uniform_at(g->o.seed, stream, base) * mod->size)] = 1;
            continue;
        }
        for (int i = 0; i < mod->size; i++)
            row[i] = (jv_real)(mod->likelihood == JV_BERNOULLI ? jv_uniform_at(g->o.seed, stream, base + (uint64_t)i)
                                                               : jv_normal_at(g->o.seed, stream, base + (uint64_t)i));
    }
}

/* The parameters of --checkpoint, as doubles. (The loader reads only the
 * descriptor's name, fingerprint and tensor table, which this double
 * precision descriptor shares with the float one.) */
static inline int jv_gc_load(jv_gc *g)
{
    size_t n = g->m->n_params;
    jv_checkpoint ck = {0};
    ck.params = malloc(n * sizeof(float) + 1);
    ck.m = malloc(n * sizeof(float) + 1);
    ck.v = malloc(n * sizeof(float) + 1);
    jv_error err;
    int rc = 0;
    if (!ck.params || !ck.m || !ck.v)
        rc = jv_fail("gradcheck: out of memory");
    else if (jv_checkpoint_load(g->o.checkpoint, g->m, &ck, &err) != 0)
        rc = jv_fail("%s", err.msg);
    for (size_t i = 0; rc == 0 && i < n; i++)
        g->params[i] = (jv_real)ck.params[i];
    free(ck.params);
    free(ck.m);
    free(ck.v);
    return rc;
}

static inline void jv_gc_fill_inputs(jv_gc *g)
{
    g->m->init(g->params, g->o.seed);
    for (int k = 0; k < g->m->n_modalities; k++)
        jv_gc_fill_modality(g, k);
    for (int l = 0; l < g->n_noise; l++) {
        size_t n = (size_t)g->o.batch * jv_gc_noise_width(g->m, l);
        for (size_t i = 0; i < n; i++)
            g->noise[l][i] = (jv_real)jv_normal_at(g->o.seed, (uint64_t)JV_GC_NOISE << 32 | (uint64_t)l, i);
    }
}

/* ---------------------------------------------------------- the check -- */

static inline double jv_gc_loss(jv_gc *g)
{
    return (double)(g->step ? g->step->forward : g->m->forward)(g->params, g->arena, g->o.batch, (const jv_real *const *)g->data,
                                 (const jv_real *const *)g->noise, NULL, g->scale, g->terms);
}

/* The objective with parameter i moved to v (and back after): forward's,
 * or, with the table, its sum of the kept terms in forward's order. */
static inline double jv_gc_loss_moved(jv_gc *g, size_t i, jv_real v)
{
    jv_real p = g->params[i];
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    size_t slot = g->cap ? (size_t)(((uint64_t)i * 0x9E3779B97F4A7C15u ^ bits) * 0xBF58476D1CE4E5B9u >> 20) & (g->cap - 1) : 0;
    while (g->cap && g->moved_param[slot] && !(g->moved_param[slot] == i + 1 && g->moved_value[slot] == v))
        slot = (slot + 1) & (g->cap - 1);
    int n = g->m->n_terms;
    jv_real *terms = g->cap ? g->moved_terms + slot * (size_t)n : NULL;
    if (!g->cap || !g->moved_param[slot]) {
        g->params[i] = v;
        double f = jv_gc_loss(g);
        g->params[i] = p;
        if (!g->cap)
            return f;
        memcpy(terms, g->terms, sizeof(jv_real) * (size_t)n);
        g->moved_param[slot] = i + 1;
        g->moved_value[slot] = v;
    }
    jv_real total = 0;
    for (int t = 0; t < n; t++)
        total += g->scale[t] * terms[t];
    return (double)total;
}

/* Central difference of the objective along parameter i with step h. */
static inline double jv_gc_numeric(jv_gc *g, size_t i, double h)
{
    jv_real p = g->params[i];
    g->params[i] = (jv_real)(p + h);
    double step = (double)g->params[i], up = jv_gc_loss_moved(g, i, g->params[i]);
    g->params[i] = (jv_real)(p - h);
    step -= (double)g->params[i];
    double down = jv_gc_loss_moved(g, i, g->params[i]);
    g->params[i] = p;
    return (up - down) / step;
}

/* One-sided differences along parameter i: forward and backward, step h. */
static inline void jv_gc_one_sided(jv_gc *g, size_t i, double h, double f0, double *fwd, double *bwd)
{
    jv_real p = g->params[i];
    g->params[i] = (jv_real)(p + h);
    double hu = (double)g->params[i] - (double)p, up = jv_gc_loss_moved(g, i, g->params[i]);
    g->params[i] = (jv_real)(p - h);
    double hd = (double)p - (double)g->params[i], down = jv_gc_loss_moved(g, i, g->params[i]);
    g->params[i] = p;
    *fwd = (up - f0) / hu;
    *bwd = (f0 - down) / hd;
}

static inline int jv_gc_close(double a, double b, double tol)
{
    double scale = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) <= tol * scale || fabs(a - b) <= 1e-9;
}

/* Checks one entry; returns its relative error, or -1 when it was compared
 * absolutely (tiny) or excused as finite-difference noise or a kink. */
static inline double jv_gc_entry(jv_gc *g, size_t i, double f0, int *ok)
{
    double p = fabs((double)g->params[i]), h = 1e-6 * (p > 1 ? p : 1);
    double a = (double)g->grads[i], n = jv_gc_numeric(g, i, h);
    double scale = fabs(a) > fabs(n) ? fabs(a) : fabs(n), diff = fabs(a - n);
    double rel = scale > 1e-7 ? diff / scale : -1;
    int pass = rel >= 0 ? rel <= g->o.tol : diff <= 1e-9;
    *ok = pass;
    if (!pass) { /* the finite-difference noise, from the difference at twice the step */
        double twice = fabs(n - jv_gc_numeric(g, i, 2 * h)), floor_noise = DBL_EPSILON * fabs(f0) / h;
        double noise = twice > floor_noise ? twice : floor_noise;
        *ok = diff <= 4 * noise;
        /* rounding can move n(h) and n(2h) together (the terms' sum may be much smaller than its
           parts, so eps |f| / h underestimates it): the difference at 10 h, a tenth of the rounding
           and a hundred times the truncation error (tiny where the objective is smooth), settles it */
        for (double k = 10; !*ok && k <= 100; k *= 10)
            *ok = jv_gc_close(a, jv_gc_numeric(g, i, k * h), g->o.tol);
    }
    int kink = 0;
    if (!*ok) {
        double fwd, bwd;
        jv_gc_one_sided(g, i, h, f0, &fwd, &bwd);
        kink = !jv_gc_close(fwd, bwd, 1e-2) && (jv_gc_close(a, fwd, 1e-4) || jv_gc_close(a, bwd, 1e-4));
        *ok = kink;
    }
    g->checked++;
    g->failed += !*ok;
    if (kink) {
        g->kinked++;
        return -1;
    }
    if (!pass && *ok) {
        g->noisy++;
        return -1;
    }
    return rel;
}

/* The largest relative error over the sampled entries of tensor t. */
static inline double jv_gc_tensor(jv_gc *g, int t, double f0, int *ok)
{
    const jv_tensor_info *ti = &g->m->tensors[t];
    size_t count = (size_t)ti->rows * (size_t)ti->cols, picks = (size_t)g->o.entries;
    picks = picks < count ? picks : count;
    size_t stride = count / picks;
    size_t start = (size_t)(jv_uniform_at(g->o.seed, (uint64_t)JV_GC_PICK << 32 | (uint64_t)t, 0) * (double)count);
    double worst = -1;
    *ok = 1;
    for (size_t j = 0; j < picks; j++) {
        int entry_ok;
        double rel = jv_gc_entry(g, ti->offset + (start + j * stride) % count, f0, &entry_ok);
        worst = rel > worst ? rel : worst;
        *ok &= entry_ok;
    }
    return worst;
}

/* Forward and backward at the base point; backward must write every entry. */
static inline int jv_gc_gradient(jv_gc *g, double *f0)
{
    const jv_model *m = g->m;
    for (int t = 0; t < m->n_terms; t++)
        g->scale[t] = (jv_real)(g->objective < 0 || g->objective == t);
    *f0 = jv_gc_loss(g);
    for (size_t i = 0; i < m->n_params; i++)
        g->grads[i] = (jv_real)NAN;
    /* the step's backward tasks, after forward's (jv_gc_loss): the exact gradient of
     * the objective for the check, the model's own estimator (DReG) for --dump */
    const jv_step s = {g->params, g->grads, g->arena, g->o.batch, (const jv_real *const *)g->data,
                       (const jv_real *const *)g->noise, NULL, g->scale, NULL, NULL, NULL, g->flags};
    const jv_task_graph *train = g->step ? g->step->train : m->train;
    jv_run_tasks(train, &s, train->n_forward, train->n_tasks);
    for (size_t i = 0; i < m->n_params; i++) {
        if (!isfinite((double)g->grads[i])) {
            printf("gradcheck: backward left gradient entry %zu %s (objective %s)\n", i,
                   isnan((double)g->grads[i]) ? "unwritten or NaN" : "infinite",
                   g->objective < 0 ? "total" : m->term_names[g->objective]);
            return 1;
        }
    }
    return 0;
}

/* Column `objective` of the table: one cell per tensor in results. */
static inline int jv_gc_objective(jv_gc *g, double *results, int *fails)
{
    double f0;
    if (jv_gc_gradient(g, &f0) != 0)
        return 1;
    for (int t = 0; t < g->m->n_tensors; t++) {
        int ok;
        results[t] = jv_gc_tensor(g, t, f0, &ok);
        fails[t] = !ok;
        g->worst = results[t] > g->worst ? results[t] : g->worst;
    }
    return 0;
}

static inline void jv_gc_print_header(const jv_gc *g)
{
    printf("gradcheck %s (%s, batch %d, %d entries per tensor, seed %llu, tol %g)\n%-24s %10s", g->m->name,
           JV_REAL_NAME, g->o.batch, g->o.entries, (unsigned long long)g->o.seed, g->o.tol, "tensor", "total");
    for (int t = 0; g->m->samples <= 1 && t < g->m->n_terms; t++)
        printf(" %10.10s", g->m->term_names[t]);
    printf("\n");
}

/* "x,w": the modalities of a subset. */
static inline void jv_gc_subset_name(const jv_model *m, unsigned s, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < m->n_modalities && len + 1 < size; k++)
        if (s >> k & 1u)
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "," : "", m->modalities[k].name);
}

/* results[o * n_tensors + t]: the cell of objective o (0: total) and tensor t. */
static inline void jv_gc_print_table(const jv_gc *g, const double *results, const int *fails)
{
    int nt = g->m->n_tensors;
    if (g->step) {
        char only[256];
        jv_gc_subset_name(g->m, g->step->observed, only, sizeof only);
        printf("\nthe step of examples that observe only %s:\n", only);
    }
    jv_gc_print_header(g);
    for (int t = 0; t < nt; t++) {
        printf("%-24.24s", g->m->tensors[t].name);
        for (int o = 0; o <= (g->m->samples > 1 ? 0 : g->m->n_terms); o++) {
            char cell[32] = "-";
            if (results[o * nt + t] >= 0)
                snprintf(cell, sizeof cell, "%.2e", results[o * nt + t]);
            printf(" %9s%c", cell, fails[o * nt + t] ? '!' : ' ');
        }
        printf("\n");
    }
}

/* Every objective of the step g->step (NULL: complete examples'). */
static inline int jv_gc_run_step(jv_gc *g)
{
    size_t cells = (size_t)(g->m->n_terms + 1) * (size_t)(g->m->n_tensors ? g->m->n_tensors : 1);
    double *results = calloc(cells, sizeof *results);
    int *fails = calloc(cells, sizeof *fails);
    int rc = results && fails ? 0 : jv_fail("gradcheck: out of memory");
    /* the importance-weighted bound (K > 1) is the log of a mean of weights made
     * of all the terms of a group: it has no share of one term to check alone */
    int last = g->m->samples > 1 ? 0 : g->m->n_terms;
    for (int o = 0; rc == 0 && o <= last; o++) {
        g->objective = o - 1;
        rc = jv_gc_objective(g, results + (size_t)o * (size_t)g->m->n_tensors, fails + (size_t)o * (size_t)g->m->n_tensors);
    }
    if (rc == 0 && !g->o.quiet)
        jv_gc_print_table(g, results, fails);
    free(results);
    free(fails);
    return rc;
}

/* The complete examples' step, then each observed subset's (another
 * forward: the kept terms are forgotten). */
static inline int jv_gc_run_all(jv_gc *g)
{
    int rc = 0;
    g->worst = -1;
    for (int k = -1; rc == 0 && k < g->m->n_subset_steps; k++) {
        g->step = k < 0 ? NULL : &g->m->subset_steps[k];
        if (g->cap)
            memset(g->moved_param, 0, g->cap * sizeof *g->moved_param);
        rc = jv_gc_run_step(g);
    }
    g->step = NULL;
    return rc;
}

/* The subsets a family given any subset serves, one after another: the
 * next one after `after` (0: the first), or 0 after the last. Other
 * families have none. */
static inline int jv_gc_next_subset(const jv_family_info *fam, int after)
{
    for (unsigned s = (unsigned)after + 1; fam->covers && s <= fam->condition && s < 1u << 12; s++)
        if ((s & ~fam->condition) == 0 && fam->covers(s))
            return (int)s;
    return 0;
}


/* Every family's repeated posterior (encoder layers once per run of equal
 * rows) against the plain one, on a batch whose rows are all example 0:
 * the samples and log q must agree. Returns the number of families that
 * do not. */
static inline long jv_gc_check_repeated(jv_gc *g)
{
    const jv_model *m = g->m;
    int batch = g->o.batch;
    long bad = 0;
    for (int k = 0; k < m->n_modalities; k++)
        for (int b = 1; b < batch; b++)
            memcpy(g->data[k] + (size_t)b * (size_t)m->modalities[k].size, g->data[k],
                   sizeof(jv_real) * (size_t)m->modalities[k].size);
    jv_real **plain = calloc((size_t)m->n_latents + 1, sizeof *plain);
    jv_real **rep = calloc((size_t)m->n_latents + 1, sizeof *rep);
    jv_real *lq_plain = jv_gc_reals((size_t)batch), *lq_rep = jv_gc_reals((size_t)batch);
    for (int l = 0; plain && rep && l < m->n_latents; l++) {
        plain[l] = jv_gc_reals((size_t)batch * (size_t)m->latents[l].size);
        rep[l] = jv_gc_reals((size_t)batch * (size_t)m->latents[l].size);
    }
    if (!jv_gc_rows_ok(plain, m->n_latents) || !jv_gc_rows_ok(rep, m->n_latents) || !lq_plain || !lq_rep)
        bad = jv_fail("gradcheck: out of memory");
    for (int f = 0; bad == 0 && f < m->n_families; f++) {
        const jv_family_info *fam = &m->families[f];
        if (!fam->posterior_repeated && !fam->posterior_given)
            continue;
        int given = jv_gc_next_subset(fam, 0);
        do {
            const jv_real *const *data = (const jv_real *const *)g->data, *const *noise = (const jv_real *const *)g->noise;
            if (fam->posterior_given) {
                fam->posterior_given(g->params, g->arena, batch, 1, (unsigned)given, data, noise, plain, lq_plain);
                fam->posterior_given(g->params, g->arena, batch, batch, (unsigned)given, data, noise, rep, lq_rep);
            } else {
                fam->posterior(g->params, g->arena, batch, data, noise, plain, lq_plain);
                fam->posterior_repeated(g->params, g->arena, batch, batch, data, noise, rep, lq_rep);
            }
            double worst = 0;
            for (int b = 0; b < batch; b++)
                worst = fmax(worst, fabs((double)lq_rep[b] - lq_plain[b]) / (1 + fabs((double)lq_plain[b])));
            for (int l = 0; l < m->n_latents; l++)
                for (size_t i = 0; i < (size_t)batch * (size_t)m->latents[l].size; i++)
                    worst = fmax(worst, fabs((double)rep[l][i] - plain[l][i]) / (1 + fabs((double)plain[l][i])));
            if (!(worst <= 1e-10)) {
                printf("gradcheck: posterior of family %s: the repeated form differs from the plain one by %.2e\n",
                       fam->name, worst);
                bad++;
            }
            given = jv_gc_next_subset(fam, given);
        } while (given && bad == 0);
    }
    jv_gc_free_rows(plain, m->n_latents);
    jv_gc_free_rows(rep, m->n_latents);
    free(lq_plain);
    free(lq_rep);
    return bad;
}

/* ---------------------------------------------------------------- dump -- */

/* n rows of `width` reals as array `name` ([rows x width], or [rows] when width is 0). */
static inline void jv_gc_add(jv_npz *z, const char *name, const jv_real *x, size_t rows, size_t width)
{
    size_t shape[2] = {rows, width};
    jv_npz_add(z, name, x, sizeof(jv_real) == sizeof(double), shape, width ? 2 : 1);
}

static inline jv_real **jv_gc_latent_rows(const jv_model *m, int batch)
{
    jv_real **rows = calloc((size_t)m->n_latents + 1, sizeof *rows);
    for (int l = 0; rows && l < m->n_latents; l++)
        rows[l] = jv_gc_reals((size_t)batch * (size_t)m->latents[l].size);
    if (jv_gc_rows_ok(rows, m->n_latents))
        return rows;
    jv_gc_free_rows(rows, m->n_latents);
    return NULL;
}

/* Every tensor of a block (parameters or gradients) as <prefix><name>:
 * [rows x cols] as the block stores it, a bias [n]. */
static inline void jv_gc_add_tensors(jv_npz *z, const jv_model *m, const char *prefix, const jv_real *block)
{
    char name[768];
    for (int t = 0; t < m->n_tensors; t++) {
        const jv_tensor_info *ti = &m->tensors[t];
        snprintf(name, sizeof name, "%s%s", prefix, ti->name);
        jv_gc_add(z, name, block + ti->offset, ti->is_bias ? (size_t)ti->cols : (size_t)ti->rows,
                  ti->is_bias ? 0 : (size_t)ti->cols);
    }
}

/* --dump: the batch, and what every entry point of the model computes on
 * it at the base point (see jv_gc_parse's help). */
static inline int jv_gc_dump(jv_gc *g)
{
    const jv_model *m = g->m;
    size_t b = (size_t)g->o.batch;
    const jv_real *const *data = (const jv_real *const *)g->data, *const *noise = (const jv_real *const *)g->noise;
    char name[512];
    g->objective = -1;
    double loss;
    if (jv_gc_gradient(g, &loss) != 0)
        return 1;
    jv_real loss_real = (jv_real)loss;
    jv_npz *z = jv_npz_new();
    jv_gc_add_tensors(z, m, "params/", g->params);
    jv_gc_add_tensors(z, m, "grad/", g->grads);
    for (int k = 0; k < m->n_modalities; k++) {
        snprintf(name, sizeof name, "data/%s", m->modalities[k].name);
        jv_gc_add(z, name, g->data[k], b, (size_t)m->modalities[k].size);
    }
    for (int l = 0; l < m->n_latents; l++) {
        snprintf(name, sizeof name, "noise/%s", m->latents[l].name);
        jv_gc_add(z, name, g->noise[l], b, (size_t)m->latents[l].size);
        snprintf(name, sizeof name, "choice/%s", m->latents[l].name);
        if (m->latents[l].mixture)
            jv_gc_add(z, name, g->noise[m->n_latents + l], b, 0);
    }
    for (int d = 0; d < m->n_draws; d++) { /* [batch x K x size]: K samples an example */
        snprintf(name, sizeof name, "step_noise/%d", d);
        jv_gc_add(z, name, g->noise[d], b * (size_t)(m->samples > 1 ? m->samples : 1),
                  (size_t)m->latents[m->draw_latents[d]].size);
    }
    jv_gc_add(z, "loss", &loss_real, 1, 0);
    jv_gc_add(z, "terms", g->terms, (size_t)m->n_terms, 0);
    int failed = 0;
    for (int k = 0; k < m->n_subset_steps && !failed; k++) { /* "observed/x/loss", ... of each observed subset's step */
        char only[256];
        jv_gc_subset_name(m, m->subset_steps[k].observed, only, sizeof only);
        g->step = &m->subset_steps[k];
        failed = jv_gc_gradient(g, &loss) != 0;
        loss_real = (jv_real)loss;
        snprintf(name, sizeof name, "observed/%s/loss", only);
        jv_gc_add(z, name, &loss_real, 1, 0);
        snprintf(name, sizeof name, "observed/%s/terms", only);
        jv_gc_add(z, name, g->terms, (size_t)m->n_terms, 0);
        snprintf(name, sizeof name, "observed/%s/grad/", only);
        jv_gc_add_tensors(z, m, name, g->grads);
    }
    g->step = NULL;
    jv_real **lat = jv_gc_latent_rows(m, g->o.batch), **train_lat = jv_gc_latent_rows(m, g->o.batch);
    jv_real **rows = calloc((size_t)m->n_modalities + 1, sizeof *rows), *log_q = jv_gc_reals(b), *log_prior = jv_gc_reals(b);
    int rc = failed ? 1 : lat && train_lat && rows && log_q && log_prior ? 0 : jv_fail("gradcheck: out of memory");
    for (int k = 0; rc == 0 && k < m->n_modalities; k++)
        rc = (rows[k] = jv_gc_reals(b * (size_t)m->modalities[k].size)) ? 0 : jv_fail("gradcheck: out of memory");
    for (int f = 0; rc == 0 && f < m->n_families; f++) {
        const jv_family_info *fam = &m->families[f];
        int given = jv_gc_next_subset(fam, 0);
        do { /* a family given any subset: each subset it serves ("posterior/FAMILY/x,w/z"), the last being
                the training family's sample when it is one */
            char sub[300] = "";
            if (fam->posterior_given) {
                jv_gc_subset_name(m, (unsigned)given, sub + 1, sizeof sub - 1);
                sub[0] = '/';
            }
            int train = f == m->training_family && (!fam->posterior_given || (unsigned)given == fam->condition);
            if (fam->posterior_given)
                fam->posterior_given(g->params, g->arena, g->o.batch, 1, (unsigned)given, data, noise,
                                     train ? train_lat : lat, log_q);
            else
                fam->posterior(g->params, g->arena, g->o.batch, data, noise, train ? train_lat : lat, log_q);
            for (int l = 0; l < m->n_latents; l++) {
                snprintf(name, sizeof name, "posterior/%s%s/%s", fam->name, sub, m->latents[l].name);
                jv_gc_add(z, name, (train ? train_lat : lat)[l], b, (size_t)m->latents[l].size);
            }
            snprintf(name, sizeof name, "posterior/%s%s/log_q", fam->name, sub);
            jv_gc_add(z, name, log_q, b, 0);
            given = jv_gc_next_subset(fam, given);
        } while (given);
    }
    if (rc == 0) { /* at the training family's sample, every decoded modality */
        unsigned which = 0;
        for (int k = 0; k < m->n_modalities; k++)
            which |= m->modalities[k].decoded ? 1u << k : 0;
        m->log_joint(g->params, g->arena, g->o.batch, data, (const jv_real *const *)train_lat, log_prior, rows, which);
        jv_gc_add(z, "log_joint/log_prior", log_prior, b, 0);
        for (int k = 0; k < m->n_modalities; k++) {
            snprintf(name, sizeof name, "log_joint/%s", m->modalities[k].name);
            if (m->modalities[k].decoded)
                jv_gc_add(z, name, rows[k], b, 0);
        }
        m->decode(g->params, g->arena, g->o.batch, (const jv_real *const *)train_lat, rows);
        for (int k = 0; k < m->n_modalities; k++) {
            snprintf(name, sizeof name, "decode/%s", m->modalities[k].name);
            if (m->modalities[k].decoded)
                jv_gc_add(z, name, rows[k], b, (size_t)m->modalities[k].size);
        }
        m->sample_prior(g->params, g->arena, g->o.batch, noise, lat);
        for (int l = 0; l < m->n_latents; l++) {
            snprintf(name, sizeof name, "sample_prior/%s", m->latents[l].name);
            jv_gc_add(z, name, lat[l], b, (size_t)m->latents[l].size);
        }
        char comment[300];
        snprintf(comment, sizeof comment, "gradcheck: model %s, batch %d, seed %llu%s%s", m->name, g->o.batch,
                 (unsigned long long)g->o.seed, g->o.checkpoint ? ", parameters of " : "",
                 g->o.checkpoint ? g->o.checkpoint : "");
        rc = jv_npz_save(z, g->o.dump, comment, "gradcheck");
        z = NULL;
        if (rc == 0 && !g->o.quiet)
            printf("gradcheck: wrote %s\n", g->o.dump);
    }
    jv_npz_free(z); /* when not saved */
    jv_gc_free_rows(lat, m->n_latents);
    jv_gc_free_rows(train_lat, m->n_latents);
    jv_gc_free_rows(rows, m->n_modalities);
    free(log_q);
    free(log_prior);
    return rc;
}

static inline int jv_gradcheck_run(const jv_model *m, int argc, char **argv)
{
    jv_gc g = {.m = m};
    int rc = jv_gc_parse(&g, argc, argv);
    if (rc != 0)
        return rc == 2 ? 0 : 1;
    if (jv_gc_alloc(&g) == 0) {
        jv_set_threads(g.o.threads);
        jv_gc_fill_inputs(&g);
        if ((g.o.checkpoint && jv_gc_load(&g) != 0) || (g.o.dump && jv_gc_dump(&g) != 0)) {
            jv_gc_free(&g);
            return 1; /* said why */
        }
        g.flags = JV_STEP_EXACT;
        if (m->dreg && !g.o.quiet)
            printf("gradcheck: the model trains with the doubly-reparameterised estimator (DReG) of its gradient; "
                   "checked here is the exact gradient of its objective, which the same backward computes with the "
                   "estimator's extra weights and held parameters off\n");
        rc = jv_gc_run_all(&g);
        if (rc == 0)
            g.failed += jv_gc_check_repeated(&g);
    } else {
        rc = 1;
    }
    jv_gc_free(&g);
    int pass = rc == 0 && g.failed == 0;
    if (rc == 0) {
        printf("gradcheck: %s (%ld entries, %ld failed, %ld within finite-difference noise", pass ? "PASS" : "FAIL",
               g.checked, g.failed, g.noisy);
        if (g.kinked)
            printf(", %ld at a kink of an activation (matching a one-sided difference)", g.kinked);
        printf("; largest other relative error %.2e)\n", g.worst > 0 ? g.worst : 0.0);
    } else {
        printf("gradcheck: FAIL\n");
    }
    return pass ? 0 : 1;
}

#endif
