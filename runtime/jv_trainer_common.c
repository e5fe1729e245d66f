/* jv_trainer_common.c: the pieces every subcommand of the trainer uses:
 * loading --data files, the batch work buffers, random streams, choosing a
 * posterior family, reading checkpoints, statistics and the progress line.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jv_trainer_int.h"

uint64_t jv_stream_id(unsigned tag, unsigned sub, uint64_t index)
{
    return (uint64_t)(tag & 0xFFu) << 56 | (uint64_t)(sub & 0xFFFFu) << 40 | (index & 0xFFFFFFFFFFull);
}

/* ------------------------------------------------------------- names -- */

int jv_find_modality(const jv_model *m, const char *name, size_t len)
{
    for (int i = 0; i < m->n_modalities; i++)
        if (strlen(m->modalities[i].name) == len && strncmp(m->modalities[i].name, name, len) == 0)
            return i;
    return -1;
}

int jv_split_assignment(const char *cmd, const char *opt, const char *item, size_t *name_len,
                        const char **value)
{
    const char *eq = strchr(item, '=');
    if (!eq || eq == item)
        return jv_fail("%s: --%s expects NAME=VALUE, got '%s'", cmd, opt, item);
    *name_len = (size_t)(eq - item);
    *value = eq + 1;
    return 0;
}

/* Appends the names of the modalities in `subset` to buf, separated by sep. */
static void join_names(const jv_model *m, unsigned subset, const char *sep, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < m->n_modalities; i++) {
        if (!(subset >> i & 1u) || used >= size)
            continue;
        int k = snprintf(buf + used, size - used, "%s%s", used ? sep : "", m->modalities[i].name);
        used += k > 0 ? (size_t)k : 0;
    }
}

void jv_modality_names(const jv_model *m, char *buf, size_t size)
{
    join_names(m, ~0u, ", ", buf, size);
}

void jv_subset_name(const jv_model *m, unsigned subset, char *buf, size_t size)
{
    join_names(m, subset, ",", buf, size);
}

/* --------------------------------------------------------------- data -- */

void jv_dataset_free(const jv_model *m, jv_dataset *ds)
{
    for (int i = 0; ds->mod && i < m->n_modalities; i++)
        jv_matrix_free(&ds->mod[i]);
    free(ds->mod);
    free(ds->path);
    free(ds->observed);
    *ds = (jv_dataset){0};
}

int jv_modality_option(const jv_model *m, const char *cmd, const char *opt, const char *item, unsigned *seen,
                       const char **value)
{
    size_t len = 0;
    if (jv_split_assignment(cmd, opt, item, &len, value) != 0)
        return -1;
    int k = jv_find_modality(m, item, len);
    if (k < 0) {
        char names[512];
        jv_modality_names(m, names, sizeof names);
        jv_fail("%s: --%s names no modality of model %s: '%.*s' (modalities: %s)", cmd, opt, m->name, (int)len, item,
                names);
        return -1;
    }
    if (*seen >> k & 1u) {
        jv_fail("%s: --%s given twice for modality '%s'", cmd, opt, m->modalities[k].name);
        return -1;
    }
    *seen |= 1u << k;
    return k;
}

/* Records the file of each NAME=FILE, refusing unknown and repeated names. */
static int assign_paths(const jv_model *m, const char *cmd, const jv_opt_list *specs, jv_dataset *ds)
{
    unsigned seen = 0;
    for (int i = 0; i < specs->n; i++) {
        const char *file = NULL;
        int k = jv_modality_option(m, cmd, "data", specs->item[i], &seen, &file);
        if (k < 0)
            return 1;
        if (!*file)
            return jv_fail("%s: --data %s= names no file", cmd, m->modalities[k].name);
        ds->path[k] = file;
        ds->present |= 1u << k;
    }
    return 0;
}

static int check_required(const jv_model *m, const char *cmd, const jv_dataset *ds, unsigned required)
{
    for (int k = 0; k < m->n_modalities; k++)
        if ((required >> k & 1u) && !ds->path[k])
            return jv_fail("%s: missing --data %s=FILE for modality '%s'", cmd, m->modalities[k].name,
                           m->modalities[k].name);
    if (!ds->present)
        return jv_fail("%s: no --data given", cmd);
    return 0;
}

/* Loads every given file and checks that all hold the same number of examples. */
static int load_files(const jv_model *m, jv_dataset *ds)
{
    int first = -1;
    for (int k = 0; k < m->n_modalities; k++) {
        if (!ds->path[k])
            continue;
        jv_error err;
        if (jv_load_modality(ds->path[k], &m->modalities[k], &ds->mod[k], &err) != 0)
            return jv_fail("%s", err.msg);
        if (first < 0)
            first = k;
        else if (ds->mod[k].n != ds->mod[first].n)
            return jv_fail("%s has %zu examples but %s has %zu; every --data file must hold the same "
                           "examples",
                           ds->path[first], ds->mod[first].n, ds->path[k], ds->mod[k].n);
    }
    ds->n = ds->mod[first].n;
    if (ds->n == 0)
        return jv_fail("%s holds no examples", ds->path[first]);
    return 0;
}

/* Applies one NAME=FILE of --observed: a column of 0 and 1, one an example of
 * the modality's file; 0 hides the example's row. */
static int apply_mask(const jv_model *m, const char *cmd, const char *item, jv_dataset *ds, unsigned *seen)
{
    const char *file = NULL;
    int k = jv_modality_option(m, cmd, "observed", item, seen, &file);
    if (k < 0)
        return 1;
    if (!ds->path[k])
        return jv_fail("%s: --observed %s= names a modality without --data", cmd, m->modalities[k].name);
    jv_matrix mask;
    jv_error err;
    if (jv_load_matrix(file, &mask, &err) != 0)
        return jv_fail("%s", err.msg);
    jv_matrix *x = &ds->mod[k];
    int rc = 0;
    if (mask.dim != 1)
        rc = jv_fail("%s: an --observed mask holds one value an example (0 or 1), not %zu", file, mask.dim);
    else if (mask.n != x->n)
        rc = jv_fail("%s has %zu values but %s has %zu examples; --observed %s= needs one 0 or 1 an example",
                     file, mask.n, ds->path[k], x->n, m->modalities[k].name);
    for (size_t i = 0; rc == 0 && i < mask.n; i++) {
        if (mask.x[i] != 0 && mask.x[i] != 1)
            rc = jv_fail("%s: example %zu has %g; an --observed mask holds 0 (missing) or 1 (observed)", file,
                         i, (double)mask.x[i]);
        else if (mask.x[i] == 1 && x->missing && x->missing[i])
            rc = jv_fail("%s says example %zu is observed, but %s has no value for it", file, i, ds->path[k]);
        else if (mask.x[i] == 0 && jv_matrix_hide_row(x, i) != 0)
            rc = jv_fail("out of memory");
    }
    jv_matrix_free(&mask);
    return rc;
}

int jv_dataset_hide(jv_dataset *ds, int k, size_t i)
{
    if (!ds->observed) { /* the first example to lack something: every one had all of `present` */
        if (!(ds->observed = malloc((ds->n ? ds->n : 1) * sizeof *ds->observed)))
            return -1;
        for (size_t e = 0; e < ds->n; e++)
            ds->observed[e] = ds->present;
    }
    if (jv_matrix_hide_row(&ds->mod[k], i) != 0)
        return -1;
    ds->observed[i] &= ~(1u << k);
    return 0;
}

/* ds->observed from the modalities' missing rows among the first ds->n;
 * refuses an example with nothing and a modality missing everywhere. */
static int make_observed(const jv_model *m, const char *cmd, jv_dataset *ds)
{
    int any = 0;
    for (int k = 0; k < m->n_modalities; k++) {
        jv_matrix *x = &ds->mod[k];
        if (!x->missing)
            continue;
        x->n_missing = 0;
        for (size_t i = 0; i < ds->n; i++)
            x->n_missing += x->missing[i];
        if (x->n_missing == ds->n)
            return jv_fail("%s: modality %s is missing in every one of the %zu examples", ds->path[k],
                           m->modalities[k].name, ds->n);
        any |= x->n_missing > 0;
    }
    if (!any)
        return 0;
    if (!(ds->observed = malloc(ds->n * sizeof *ds->observed)))
        return jv_fail("out of memory");
    for (size_t i = 0; i < ds->n; i++) {
        unsigned o = ds->present;
        for (int k = 0; k < m->n_modalities; k++)
            if (ds->mod[k].missing && ds->mod[k].missing[i])
                o &= ~(1u << k);
        if (!o) {
            char names[512];
            jv_subset_name(m, ds->present, names, sizeof names);
            return jv_fail("%s: example %zu has none of its modalities (%s): an example needs at least one", cmd,
                           i, names);
        }
        ds->observed[i] = o;
    }
    return 0;
}

int jv_dataset_load(const jv_model *m, const char *cmd, const jv_opt_list *specs, const jv_opt_list *observed,
                    unsigned required, int limit, jv_dataset *ds)
{
    *ds = (jv_dataset){0};
    ds->mod = calloc((size_t)m->n_modalities, sizeof *ds->mod);
    ds->path = calloc((size_t)m->n_modalities, sizeof *ds->path);
    int rc = !ds->mod || !ds->path ? jv_fail("out of memory") : 0;
    if (rc == 0)
        rc = assign_paths(m, cmd, specs, ds);
    if (rc == 0)
        rc = check_required(m, cmd, ds, required);
    if (rc == 0)
        rc = load_files(m, ds);
    unsigned seen = 0;
    for (int i = 0; rc == 0 && observed && i < observed->n; i++)
        rc = apply_mask(m, cmd, observed->item[i], ds, &seen);
    if (rc == 0 && limit > 0 && (size_t)limit < ds->n) {
        ds->n = (size_t)limit;
        for (int k = 0; k < m->n_modalities; k++) { /* give back the rows beyond the limit */
            jv_matrix *x = &ds->mod[k];
            float *kept = x->x ? realloc(x->x, ds->n * x->dim * sizeof *x->x) : NULL;
            if (kept) {
                x->x = kept;
                x->n = ds->n;
            }
        }
    }
    if (rc == 0)
        rc = make_observed(m, cmd, ds);
    if (rc != 0) {
        jv_dataset_free(m, ds);
        return 1;
    }
    return 0;
}

int jv_dataset_incomplete(const jv_dataset *ds, const size_t *examples, size_t n)
{
    for (size_t j = 0; ds->observed && j < n; j++)
        if (ds->observed[examples ? examples[j] : j] != ds->present)
            return 1;
    return 0;
}

/* Larger sets first, then in model order (the lower bits first). */
static int compare_subsets(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    int nx = __builtin_popcount(x), ny = __builtin_popcount(y);
    if (nx != ny)
        return nx > ny ? -1 : 1;
    return x < y ? -1 : x > y;
}

void jv_dataset_print_subsets(const jv_model *m, const jv_dataset *ds, const char *what, const size_t *examples,
                              size_t n)
{
    if (!jv_dataset_incomplete(ds, examples, n))
        return;
    unsigned *sets = malloc(n * sizeof *sets);
    if (!sets)
        return;
    for (size_t j = 0; j < n; j++)
        sets[j] = jv_observed(ds, examples ? examples[j] : j);
    qsort(sets, n, sizeof *sets, compare_subsets);
    printf("%s by observed modalities:", what);
    for (size_t j = 0, run; j < n; j += run) {
        for (run = 1; j + run < n && sets[j + run] == sets[j]; run++)
            ;
        char names[256];
        jv_subset_name(m, sets[j], names, sizeof names);
        printf("%s %s %zu", j ? "," : "", names, run);
    }
    printf("\n");
    free(sets);
}

/* --------------------------------------------------------- work space -- */

/* One allocation holding `count` pointers and then, for each, a block of
 * cap * sizes[i] reals; NULL on overflow or failure. */
static jv_real **alloc_rows(int count, const size_t *sizes, size_t cap)
{
    size_t reals = 0, head = (size_t)(count > 0 ? count : 1) * sizeof(jv_real *);
    for (int i = 0; i < count; i++) {
        if (sizes[i] > (SIZE_MAX / sizeof(jv_real) - reals) / cap)
            return NULL;
        reals += sizes[i] * cap;
    }
    if (reals > (SIZE_MAX - head) / sizeof(jv_real))
        return NULL;
    jv_real **rows = calloc(1, head + reals * sizeof(jv_real));
    if (!rows)
        return NULL;
    jv_real *p = (jv_real *)((char *)rows + head);
    for (int i = 0; i < count; i++) {
        rows[i] = p;
        p += sizes[i] * cap;
    }
    return rows;
}

static jv_real *alloc_reals(size_t count, size_t cap)
{
    if (count == 0)
        count = 1;
    if (count > SIZE_MAX / sizeof(jv_real) / cap)
        return NULL;
    return jv_alloc_large(count * cap * sizeof(jv_real), 1);
}

/* The per-role sizes of one example: modality sizes, latent sizes, ones. */
static size_t *role_sizes(const jv_model *m, size_t *ones, size_t *mods, size_t *lats)
{
    for (int i = 0; i < m->n_modalities; i++) {
        mods[i] = (size_t)m->modalities[i].size;
        ones[i] = 1;
    }
    for (int i = 0; i < m->n_latents; i++)
        lats[i] = (size_t)m->latents[i].size;
    return ones;
}

size_t jv_largest_modality(const jv_model *m)
{
    size_t big = 1;
    for (int i = 0; i < m->n_modalities; i++)
        big = (size_t)m->modalities[i].size > big ? (size_t)m->modalities[i].size : big;
    return big;
}

void jv_work_free(jv_work *w)
{
    free(w->arena);
    free(w->data);
    free(w->input);
    free(w->out);
    free(w->log_lik);
    free(w->noise);
    free(w->latents);
    free(w->log_q);
    free(w->log_prior);
    free(w->zeros);
    free(w->terms);
    free(w->hyper);
    *w = (jv_work){0};
}

int jv_work_alloc(const jv_model *m, int cap, jv_work *w)
{
    size_t c = (size_t)cap, nm = (size_t)m->n_modalities, nl = (size_t)m->n_latents;
    size_t *sizes = calloc(2 * nm + nl + 1, sizeof *sizes);
    *w = (jv_work){.cap = cap};
    if (sizes) {
        size_t *ones = role_sizes(m, sizes, sizes + nm, sizes + 2 * nm);
        w->arena = alloc_reals(m->arena_per_example, c);
        w->data = alloc_rows(m->n_modalities, sizes + nm, c);
        w->input = calloc(nm + 1, sizeof *w->input);
        w->out = alloc_rows(m->n_modalities, sizes + nm, c);
        w->log_lik = alloc_rows(m->n_modalities, ones, c);
        w->n_noise = m->n_draws > 2 * m->n_latents ? m->n_draws : 2 * m->n_latents;
        size_t *widths = calloc((size_t)w->n_noise + 1, sizeof *widths);
        for (int i = 0; widths && i < w->n_noise; i++) {
            size_t a = i < m->n_latents ? (size_t)m->latents[i].size : i < 2 * m->n_latents ? 1 : 0;
            size_t d = i < m->n_draws ? (size_t)m->latents[m->draw_latents[i]].size * (size_t)jv_samples(m) : 0;
            widths[i] = a > d ? a : d;
        }
        w->noise = widths ? alloc_rows(w->n_noise, widths, c) : NULL;
        free(widths);
        w->latents = alloc_rows(m->n_latents, sizes + 2 * nm, c);
        w->log_q = alloc_reals(1, c);
        w->log_prior = alloc_reals(1, c);
        w->zeros = alloc_reals(jv_largest_modality(m), c);
        w->terms = alloc_reals((size_t)m->n_terms, 1);
        w->hyper = alloc_reals((size_t)m->n_hypers, 1);
    }
    free(sizes);
    if (!sizes || !w->arena || !w->data || !w->input || !w->out || !w->log_lik || !w->noise ||
        !w->latents || !w->log_q || !w->log_prior || !w->zeros || !w->terms || !w->hyper) {
        jv_work_free(w);
        return jv_fail("out of memory for batches of %d (the arena alone needs %.1f MB)", cap,
                       (double)m->arena_per_example * cap * sizeof(jv_real) / 1e6);
    }
    jv_work_zero_inputs(m, w, 0);
    return 0;
}

void jv_work_zero_inputs(const jv_model *m, jv_work *w, unsigned zeroed)
{
    for (int k = 0; k < m->n_modalities; k++)
        w->input[k] = (zeroed >> k & 1u) ? w->zeros : w->data[k];
}

void jv_work_gather_rows(const jv_model *m, jv_work *w, const jv_dataset *ds, const size_t *idx, int from, int to)
{
    for (int k = 0; k < m->n_modalities; k++) {
        size_t size = (size_t)m->modalities[k].size;
        jv_real *dst = w->data[k] + (size_t)from * size;
        if (!(ds->present >> k & 1u)) {
            memset(dst, 0, (size_t)(to - from) * size * sizeof(jv_real));
            continue;
        }
        for (int b = from; b < to; b++, dst += size)
            memcpy(dst, ds->mod[k].x + idx[b] * size, size * sizeof(jv_real));
    }
}

void jv_work_gather(const jv_model *m, jv_work *w, const jv_dataset *ds, const size_t *idx, int batch)
{
    jv_work_gather_rows(m, w, ds, idx, 0, batch);
    jv_work_zero_inputs(m, w, 0);
}

void jv_work_fill_noise(const jv_model *m, jv_work *w, int batch, uint64_t seed, unsigned tag,
                        uint64_t index, uint64_t first)
{
    jv_work_fill_noise_at(m, w, 0, batch, seed, tag, index, first);
}

void jv_work_fill_noise_at(const jv_model *m, jv_work *w, int row, int batch, uint64_t seed, unsigned tag,
                           uint64_t index, uint64_t first)
{
    for (int l = 0; l < m->n_latents; l++) {
        size_t size = (size_t)m->latents[l].size;
        jv_rng rng = {seed, jv_stream_id(tag, (unsigned)l, index), first * size};
        jv_rng_fill_normal(&rng, w->noise[l] + (size_t)row * size, (size_t)batch * size);
        if (!m->latents[l].mixture)
            continue;
        jv_rng choice = {seed, jv_stream_id(tag, (unsigned)(m->n_latents + l), index), first};
        jv_rng_fill_normal(&choice, w->noise[m->n_latents + l] + (size_t)row, (size_t)batch);
    }
}

void jv_work_fill_step_noise_at(const jv_model *m, jv_work *w, int row, int batch, uint64_t seed, unsigned tag,
                                uint64_t index, uint64_t first)
{
    for (int d = 0; d < m->n_draws; d++) {
        size_t size = (size_t)m->latents[m->draw_latents[d]].size * (size_t)jv_samples(m); /* K rows an example */
        jv_rng rng = {seed, jv_stream_id(tag, (unsigned)d, index), first * size};
        jv_rng_fill_normal(&rng, w->noise[d] + (size_t)row * size, (size_t)batch * size);
    }
}

/* ------------------------------------------------------------ families -- */

int jv_family_serves(const jv_model *m, int f, unsigned subset)
{
    const jv_family_info *fam = &m->families[f];
    return fam->covers ? fam->covers(subset) : fam->condition == subset;
}

void jv_family_sample(const jv_model *m, int f, unsigned given, const jv_real *params, jv_real *arena, int batch,
                      int copies, const jv_real *const *data, const jv_real *const *noise, jv_real *const *latents,
                      jv_real *log_q)
{
    const jv_family_info *fam = &m->families[f];
    if (fam->posterior_given)
        fam->posterior_given(params, arena, batch, copies, fam->covers(given) ? given : fam->condition, data, noise,
                             latents, log_q);
    else if (fam->posterior_repeated) /* the encoders' data layers run once per run */
        fam->posterior_repeated(params, arena, batch, copies, data, noise, latents, log_q);
    else
        fam->posterior(params, arena, batch, data, noise, latents, log_q);
}

int jv_pick_family(const jv_model *m, unsigned subset, unsigned *zeroed)
{
    for (int f = 0; f < m->n_families; f++) {
        if (jv_family_serves(m, f, subset)) {
            *zeroed = 0;
            return f;
        }
    }
    *zeroed = m->families[m->training_family].condition & ~subset;
    return m->training_family;
}

int jv_check_subset_quiet(const jv_model *m, unsigned subset)
{
    int experts = 0;
    for (int f = 0; f < m->n_families; f++) {
        experts |= m->families[f].covers != NULL;
        if (jv_family_serves(m, f, subset))
            return 0;
    }
    return experts;
}

int jv_check_subset(const jv_model *m, unsigned subset, const char *cmd)
{
    int experts = 0;
    for (int f = 0; f < m->n_families; f++) {
        experts |= m->families[f].covers != NULL;
        if (jv_family_serves(m, f, subset))
            return 0;
    }
    if (!experts)
        return 0; /* the JMVAE family: the zero rule stands in (note_zero_rule says so) */
    char name[256], list[1024] = "";
    size_t len = 0;
    int shown = 0;
    jv_subset_name(m, subset, name, sizeof name);
    unsigned all = m->n_modalities >= 32 ? ~0u : (1u << m->n_modalities) - 1;
    for (unsigned s = 1; s != 0 && s <= all && len + 64 < sizeof list; s++)
        for (int f = 0; f < m->n_families; f++)
            if (jv_family_serves(m, f, s)) {
                char one[256];
                jv_subset_name(m, s, one, sizeof one);
                len += (size_t)snprintf(list + len, sizeof list - len, "%s{%s}", shown++ ? ", " : "", one);
                break;
            }
    return jv_fail("%s: model %s has no posterior given {%s}; it has posteriors given %s", cmd, m->name, name,
                   shown ? list : "no subset");
}

int jv_find_family(const jv_model *m, const char *name)
{
    for (int f = 0; f < m->n_families; f++)
        if (strcmp(m->families[f].name, name) == 0)
            return f;
    return -1;
}

/* -------------------------------------------------------- checkpoints -- */

void jv_checkpoint_release(jv_checkpoint *ck)
{
    free(ck->params);
    free(ck->m);
    free(ck->v);
    *ck = (jv_checkpoint){0};
}

int jv_checkpoint_alloc(const jv_model *m, jv_checkpoint *ck)
{
    *ck = (jv_checkpoint){0};
    ck->params = alloc_reals(m->n_params, 1);
    ck->m = alloc_reals(m->n_params, 1);
    ck->v = alloc_reals(m->n_params, 1);
    if (ck->params && ck->m && ck->v)
        return 0;
    jv_checkpoint_release(ck);
    return jv_fail("out of memory for %zu parameters", m->n_params);
}

int jv_checkpoint_read(const jv_model *m, const char *path, jv_checkpoint *ck)
{
    if (jv_checkpoint_alloc(m, ck) != 0)
        return 1;
    jv_error err;
    if (jv_checkpoint_load(path, m, ck, &err) == 0)
        return 0;
    jv_checkpoint_release(ck);
    return jv_fail("%s", err.msg);
}

jv_real *jv_params_read(const jv_model *m, const char *path)
{
    jv_checkpoint ck;
    if (jv_checkpoint_read(m, path, &ck) != 0)
        return NULL;
    jv_real *params = ck.params;
    ck.params = NULL;
    jv_checkpoint_release(&ck);
    return params;
}

/* --------------------------------------------------------- statistics -- */

void jv_stat_add(jv_stat *s, double x)
{
    s->n += 1;
    double d = x - s->mean;
    s->mean += d / s->n;
    s->m2 += d * (x - s->mean);
}

double jv_stat_se(const jv_stat *s)
{
    if (s->n < 2)
        return NAN;
    return sqrt(s->m2 / (s->n - 1) / s->n);
}

double jv_log_mean_exp(const double *x, size_t n)
{
    double top = -INFINITY, sum = 0;
    for (size_t i = 0; i < n; i++)
        top = x[i] > top ? x[i] : top;
    if (!isfinite(top))
        return top;
    for (size_t i = 0; i < n; i++)
        sum += exp(x[i] - top);
    return top + log(sum / (double)n);
}

int jv_argmax(const jv_real *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        best = x[i] > x[best] ? i : best;
    return best;
}

/* ------------------------------------------------------------- output -- */

void jv_buf_printf(jv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    jv_buf_reserve(b, (size_t)n + 1);
    if (b->failed)
        return;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int jv_buf_save(jv_buf *b, const char *path)
{
    jv_error err;
    if (b->failed)
        return jv_fail("%s: out of memory while building the file", path);
    if (jv_write_file_atomic(path, b->data, b->len, &err) != 0)
        return jv_fail("%s", err.msg);
    return 0;
}

void jv_buf_put_f32(jv_buf *b, float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    jv_buf_put_le32(b, bits);
}

/* NPY format 1.0: magic, version, header length, then a Python dict literal
 * padded with spaces to a multiple of 64 bytes and ended by a newline. */
void jv_npy_header(jv_buf *b, const size_t *shape, int ndim)
{
    jv_npy_header_of(b, "<f4", shape, ndim);
}

void jv_npy_header_of(jv_buf *b, const char *descr, const size_t *shape, int ndim)
{
    char dict[200];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim && n < 150; d++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%zu,%s", shape[d], d + 1 < ndim ? " " : "");
    if (ndim > 1)
        n--; /* (rows, cols) but (n,) */
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t head = 10 + (size_t)n + 1, padded = (head + 63) / 64 * 64;
    jv_buf_put(b, "\x93NUMPY\x01\x00", 8);
    unsigned char len[2] = {(unsigned char)((padded - 10) & 0xff), (unsigned char)((padded - 10) >> 8)};
    jv_buf_put(b, len, 2);
    jv_buf_put(b, dict, (size_t)n);
    for (size_t i = head; i < padded; i++)
        jv_buf_put(b, " ", 1);
    jv_buf_put(b, "\n", 1);
}

int jv_npy_save(const char *path, size_t rows, size_t cols, jv_buf *body)
{
    if (body->len != rows * cols * 4)
        return jv_fail("%s: internal error: %zu bytes for %zu x %zu floats", path, body->len, rows, cols);
    jv_buf b = {0};
    size_t shape[2] = {rows, cols};
    jv_npy_header(&b, shape, 2);
    if (body->failed)
        b.failed = 1;
    else
        jv_buf_put(&b, body->data, body->len);
    int rc = jv_buf_save(&b, path);
    jv_buf_free(&b);
    return rc;
}

int jv_check_output_path(const char *cmd, const char *opt, const char *path)
{
    size_t len = strlen(path);
    if (len == 0 || path[len - 1] == '/')
        return jv_fail("%s: --%s needs a file name, got '%s'", cmd, opt, path);
    char *dir = strdup(path);
    if (!dir)
        return jv_fail("out of memory");
    char *slash = strrchr(dir, '/');
    const char *folder = ".";
    if (slash) {
        slash[slash == dir] = '\0'; /* keep "/" for files at the root */
        folder = dir;
    }
    struct stat st;
    int ok = stat(folder, &st) == 0 && S_ISDIR(st.st_mode);
    int rc = ok ? 0 : jv_fail("%s: --%s %s: folder '%s' does not exist", cmd, opt, path, folder);
    if (ok && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        rc = jv_fail("%s: --%s %s: is a folder", cmd, opt, path);
    free(dir);
    return rc;
}

/* ----------------------------------------------------------- progress -- */

double jv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void jv_format_duration(double seconds, char *buf, size_t size)
{
    long s = isfinite(seconds) && seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

void jv_progress_init(jv_progress *p)
{
    *p = (jv_progress){.tty = isatty(STDOUT_FILENO), .last = -1};
}

void jv_progress_draw(jv_progress *p, int force, const char *fmt, ...)
{
    double now = jv_now();
    if (!p->tty || (!force && p->last >= 0 && now - p->last < 0.1))
        return;
    p->last = now;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct winsize ws;
    int width = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 ? ws.ws_col - 1 : 79;
    printf("\r\033[K%.*s", width, line); /* a wrapped line could not be redrawn */
    fflush(stdout);
    p->shown = 1;
}

void jv_progress_clear(jv_progress *p)
{
    if (!p->shown)
        return;
    fputs("\r\033[K", stdout);
    fflush(stdout);
    p->shown = 0;
}
