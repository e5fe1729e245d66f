/* jv_trainer_draw.c: the sample and encode subcommands, which turn a
 * checkpoint into pictures and tables: grids of generated or reconstructed
 * images (expected values drawn as grey levels, 1-pixel separators), the
 * posterior means of a data set as CSV, and for a 2-D latent a scatter PNG
 * of those means coloured by class.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jv_trainer_int.h"

/* ------------------------------------------------------------- images -- */

typedef struct {
    int width, height, channels;
    uint8_t *px;
} image;

static int image_alloc(image *im, int width, int height, int channels, uint8_t fill)
{
    *im = (image){width, height, channels, NULL};
    im->px = malloc((size_t)width * (size_t)height * (size_t)channels);
    if (!im->px)
        return jv_fail("out of memory for a %dx%d image", width, height);
    memset(im->px, fill, (size_t)width * (size_t)height * (size_t)channels);
    return 0;
}

static int image_save(image *im, const char *path)
{
    jv_error err;
    int rc = jv_png_write(path, im->px, im->width, im->height, im->channels, &err);
    free(im->px);
    im->px = NULL;
    return rc == 0 ? 0 : jv_fail("%s", err.msg);
}

/* A grey grid of rows x cols tiles of the modality's shape, separated and
 * framed by 1-pixel mid-grey lines. */
static int grid_alloc(image *im, const jv_modality_info *mod, int rows, int cols)
{
    return image_alloc(im, cols * (mod->width + 1) + 1, rows * (mod->height + 1) + 1, 1, 128);
}

/* Draws expected values in [0,1] (clamped) as grey levels into tile (row, col). */
static void grid_put(image *im, const jv_modality_info *mod, int row, int col, const jv_real *values)
{
    int x0 = 1 + col * (mod->width + 1), y0 = 1 + row * (mod->height + 1);
    for (int y = 0; y < mod->height; y++) {
        for (int x = 0; x < mod->width; x++) {
            double v = values[y * mod->width + x];
            v = v > 0 ? (v < 1 ? v : 1) : 0;
            im->px[(size_t)(y0 + y) * (size_t)im->width + (size_t)(x0 + x)] = (uint8_t)lround(255 * v);
        }
    }
}

static int find_image_modality(const jv_model *m)
{
    for (int k = 0; k < m->n_modalities; k++)
        if (m->modalities[k].height > 0 && m->modalities[k].width > 0 && m->modalities[k].decoded)
            return k;
    return -1;
}

static int find_categorical(const jv_model *m, unsigned among)
{
    for (int k = 0; k < m->n_modalities; k++)
        if ((among >> k & 1u) && m->modalities[k].likelihood == JV_CATEGORICAL)
            return k;
    return -1;
}

/* Says, once, that a posterior is the JMVAE-zero rule's. */
static void note_zero_rule(const jv_model *m, unsigned subset, unsigned zeroed)
{
    if (!zeroed)
        return;
    char given[256], rest[256];
    jv_subset_name(m, subset, given, sizeof given);
    jv_subset_name(m, zeroed, rest, sizeof rest);
    printf("note: no family conditions on {%s} alone: using q(z|%s) with %s set to zero (the JMVAE-zero rule)\n",
           given, m->families[m->training_family].name, rest);
}

/* ------------------------------------------------------------- sample -- */

typedef struct {
    const char *checkpoint, *png, *mode, *csv, *csv_labels, *draw, *npy;
    jv_opt_list given, data;
    int n;
    uint64_t seed;
} sample_opts;

typedef struct {
    const jv_model *m;
    sample_opts o;
    int img;           /* the image modality */
    int *given;        /* per modality: the fixed class, or -1 */
    unsigned given_mask;
    jv_dataset ds;
    jv_real *params;
    jv_work w;
    image grid;
    jv_buf csv, labels; /* --csv: one image a line; --csv-labels: its class */
    jv_buf npy;         /* --npy: the same values as float32 */
    size_t images;      /* drawn so far */
} sampler;

static const char SAMPLE_ABOUT[] =
    "Draws the image modality's expected value as grey levels into a PNG grid.\n"
    "  conditional (the default when a categorical modality exists): one row per class,\n"
    "              N images generated from the label alone (or one row for --given);\n"
    "  prior:      N x N images decoded from the prior;\n"
    "  reconstruct: the first N examples of --data, each original above its\n"
    "              reconstruction from the posterior mean (given the modalities in\n"
    "              --data: with --draw another one, it is generated from them).\n"
    "--csv writes the same images as CSV, one a line in the grid's order (and\n"
    "--csv-labels, in conditional mode, the class each was generated from), for\n"
    "rows of more than the 100 images a PNG holds.";

static int parse_sample_options(sampler *s, int argc, char **argv)
{
    sample_opts *o = &s->o;
    *o = (sample_opts){.n = 10, .seed = s->m->defaults.seed};
    jv_option opts[] = {
        {"checkpoint", JV_OPT_STRING, &o->checkpoint, 0, 0, "CKPT", "the trained model (required)", 0},
        {"png", JV_OPT_STRING, &o->png, 0, 0, "FILE", "the PNG to write (this or --csv is required)", 0},
        {"csv", JV_OPT_STRING, &o->csv, 0, 0, "FILE", "also (or only) write the images' values as CSV", 0},
        {"npy", JV_OPT_STRING, &o->npy, 0, 0, "FILE",
         "also (or only) write them as a NumPy array [images x size] of float32", 0},
        {"csv-labels", JV_OPT_STRING, &o->csv_labels, 0, 0, "FILE",
         "conditional mode: write each CSV image's class, one a line", 0},
        {"draw", JV_OPT_STRING, &o->draw, 0, 0, "NAME", "the image modality to draw (default: the first)", 0},
        {"mode", JV_OPT_STRING, &o->mode, 0, 0, "MODE", "prior, conditional or reconstruct", 0},
        {"given", JV_OPT_LIST, &o->given, 0, 0, "NAME=CLASS", "fix a categorical modality's class", 0},
        {"n", JV_OPT_INT, &o->n, 1, 1000, "N", "images per row (prior: rows too; at most 100 in a PNG)", 0},
        {"seed", JV_OPT_U64, &o->seed, 0, 1.8446744073709552e19, "S", "seed of the samples", 0},
        {"data", JV_OPT_LIST, &o->data, 0, 0, "NAME=FILE", "examples to reconstruct", 0},
    };
    int rc = jv_parse_options("sample", "--checkpoint CKPT --png FILE [options]", SAMPLE_ABOUT, opts,
                              (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc != 0)
        return rc;
    if (!o->checkpoint || (!o->png && !o->csv && !o->npy))
        return jv_fail("sample: missing --%s", o->checkpoint ? "png FILE (or --csv FILE, --npy FILE)" : "checkpoint CKPT");
    if (!o->mode)
        o->mode = find_categorical(s->m, ~0u) >= 0 ? "conditional" : "prior";
    if (strcmp(o->mode, "prior") && strcmp(o->mode, "conditional") && strcmp(o->mode, "reconstruct"))
        return jv_fail("sample: --mode must be prior, conditional or reconstruct, got '%s'", o->mode);
    if (o->png && o->n > 100)
        return jv_fail("sample: --n %d: a PNG row holds at most 100 images (use --csv alone for more)", o->n);
    if (o->csv_labels && (!o->csv || strcmp(o->mode, "conditional") != 0))
        return jv_fail("sample: --csv-labels goes with --csv in conditional mode");
    if (o->png && jv_check_output_path("sample", "png", o->png) != 0)
        return 1;
    if (o->npy && jv_check_output_path("sample", "npy", o->npy) != 0)
        return 1;
    if (o->csv && jv_check_output_path("sample", "csv", o->csv) != 0)
        return 1;
    return o->csv_labels ? jv_check_output_path("sample", "csv-labels", o->csv_labels) : 0;
}

/* One --given NAME=CLASS. */
static int parse_given(sampler *s, const char *item)
{
    size_t len = 0;
    const char *text = NULL;
    if (jv_split_assignment("sample", "given", item, &len, &text) != 0)
        return 1;
    int k = jv_find_modality(s->m, item, len);
    if (k < 0 || s->m->modalities[k].likelihood != JV_CATEGORICAL)
        return jv_fail("sample: --given %.*s: no categorical modality of that name", (int)len, item);
    char *end;
    long c = strtol(text, &end, 10);
    if (!*text || *end || c < 0 || c >= s->m->modalities[k].size)
        return jv_fail("sample: --given %s: the class must be an integer in [0, %d]", item,
                       s->m->modalities[k].size - 1);
    if (s->given[k] >= 0)
        return jv_fail("sample: --given %s: that modality is already fixed", item);
    s->given[k] = (int)c;
    s->given_mask |= 1u << k;
    return 0;
}

/* Checks that the flags fit the mode and the model. */
static int check_sample_mode(sampler *s)
{
    const sample_opts *o = &s->o;
    int reconstruct = strcmp(o->mode, "reconstruct") == 0;
    if (o->draw) {
        s->img = jv_find_modality(s->m, o->draw, strlen(o->draw));
        const jv_modality_info *mod = s->img >= 0 ? &s->m->modalities[s->img] : NULL;
        if (!mod || mod->height <= 0 || mod->width <= 0 || !mod->decoded)
            return jv_fail("sample: --draw %s: model %s has no image modality of that name with a decoder", o->draw,
                           s->m->name);
    } else if ((s->img = find_image_modality(s->m)) < 0) {
        return jv_fail("sample: model %s has no image modality with a decoder (one with a height and width, and "
                       "a network giving p(image | latents))", s->m->name);
    }
    if (o->given.n && strcmp(o->mode, "conditional") != 0)
        return jv_fail("sample: --given only applies to --mode conditional");
    if (o->data.n && !reconstruct)
        return jv_fail("sample: --data only applies to --mode reconstruct");
    if (reconstruct && !o->data.n)
        return jv_fail("sample: --mode reconstruct needs --data %s=FILE", s->m->modalities[s->img].name);
    if (strcmp(o->mode, "conditional") == 0 && find_categorical(s->m, ~0u) < 0)
        return jv_fail("sample: --mode conditional needs a categorical modality; model %s has none", s->m->name);
    s->given = malloc((size_t)s->m->n_modalities * sizeof *s->given);
    if (!s->given)
        return jv_fail("out of memory");
    for (int k = 0; k < s->m->n_modalities; k++)
        s->given[k] = -1;
    for (int i = 0; i < o->given.n; i++)
        if (parse_given(s, o->given.item[i]) != 0)
            return 1;
    return 0;
}

/* One image into grid row `row`, column `col`, and a line of the CSV. */
static void put_image(sampler *s, int row, int col, const jv_real *values)
{
    const jv_modality_info *mod = &s->m->modalities[s->img];
    if (s->o.png)
        grid_put(&s->grid, mod, row, col, values);
    if (s->o.csv) {
        for (int j = 0; j < mod->size; j++)
            jv_buf_printf(&s->csv, "%s%.6g", j ? "," : "", (double)values[j]);
        jv_buf_printf(&s->csv, "\n");
    }
    for (int j = 0; s->o.npy && j < mod->size; j++)
        jv_buf_put_f32(&s->npy, values[j]);
    s->images++;
}

/* Decodes the work latents and draws the image of each into a grid row. */
static void decode_row(sampler *s, int batch, int row)
{
    jv_work *w = &s->w;
    const jv_modality_info *mod = &s->m->modalities[s->img];
    s->m->decode(s->params, w->arena, batch, JV_CONST_ROWS(w->latents), w->out);
    for (int b = 0; b < batch; b++)
        put_image(s, row, b, w->out[s->img] + (size_t)b * (size_t)mod->size);
}

static int grid_open(sampler *s, int rows, int cols)
{
    return s->o.png ? grid_alloc(&s->grid, &s->m->modalities[s->img], rows, cols) : 0;
}

/* Row r holds N decodings of prior samples drawn from stream (SAMPLE, r). */
static int sample_prior(sampler *s)
{
    int n = s->o.n;
    if (grid_open(s, n, n) != 0)
        return 1;
    for (int r = 0; r < n; r++) {
        jv_work_fill_noise(s->m, &s->w, n, s->o.seed, JV_TAG_SAMPLE, (uint64_t)r, 0);
        s->m->sample_prior(s->params, s->w.arena, n, JV_CONST_ROWS(s->w.noise), s->w.latents);
        decode_row(s, n, r);
    }
    return 0;
}

/* Fills the data with zeros and the one-hot classes of `given`. */
static void set_labels(sampler *s, const int *given, int batch)
{
    for (int k = 0; k < s->m->n_modalities; k++) {
        size_t size = (size_t)s->m->modalities[k].size;
        memset(s->w.data[k], 0, (size_t)batch * size * sizeof(jv_real));
        for (int b = 0; given[k] >= 0 && b < batch; b++)
            s->w.data[k][(size_t)b * size + (size_t)given[k]] = 1;
    }
}

static int sample_conditional(sampler *s)
{
    const jv_model *m = s->m;
    int vary = s->given_mask ? -1 : find_categorical(m, ~0u);
    unsigned cond = s->given_mask ? s->given_mask : 1u << vary, zeroed;
    if (jv_check_subset(m, cond, "sample") != 0)
        return 1;
    const jv_family_info *f = &m->families[jv_pick_family(m, cond, &zeroed)];
    int rows = vary >= 0 ? m->modalities[vary].size : 1;
    note_zero_rule(m, cond, zeroed);
    if (grid_open(s, rows, s->o.n) != 0)
        return 1;
    for (int r = 0; r < rows; r++) {
        if (vary >= 0)
            s->given[vary] = r;
        set_labels(s, s->given, s->o.n);
        jv_work_zero_inputs(m, &s->w, zeroed);
        jv_work_fill_noise(m, &s->w, s->o.n, s->o.seed, JV_TAG_SAMPLE, (uint64_t)r, 0);
        jv_family_sample(m, (int)(f - m->families), cond, s->params, s->w.arena, s->o.n, 1, JV_CONST_ROWS(s->w.input),
                         JV_CONST_ROWS(s->w.noise), s->w.latents, s->w.log_q);
        decode_row(s, s->o.n, r);
        for (int b = 0; s->o.csv_labels && b < s->o.n; b++)
            jv_buf_printf(&s->labels, "%d\n", vary >= 0 ? r : s->given[find_categorical(m, s->given_mask)]);
    }
    return 0;
}

/* Rows of up to ten examples: originals, then their reconstructions below. */
static int sample_reconstruct(sampler *s)
{
    const jv_model *m = s->m;
    int n = (int)s->ds.n, cols = n < 10 ? n : 10, pairs = (n + cols - 1) / cols;
    unsigned zeroed;
    if (jv_check_subset(m, s->ds.present, "sample") != 0)
        return 1;
    const jv_family_info *f = &m->families[jv_pick_family(m, s->ds.present, &zeroed)];
    note_zero_rule(m, s->ds.present, zeroed);
    if (grid_open(s, 2 * pairs, cols) != 0)
        return 1;
    size_t *rows = malloc((size_t)n * sizeof *rows);
    if (!rows)
        return jv_fail("out of memory");
    for (int i = 0; i < n; i++)
        rows[i] = (size_t)i;
    jv_work_gather(m, &s->w, &s->ds, rows, n);
    free(rows);
    jv_work_zero_inputs(m, &s->w, zeroed);
    jv_family_sample(m, (int)(f - m->families), s->ds.present, s->params, s->w.arena, n, 1, JV_CONST_ROWS(s->w.input),
                     NULL, s->w.latents, s->w.log_q);
    s->m->decode(s->params, s->w.arena, n, JV_CONST_ROWS(s->w.latents), s->w.out);
    const jv_modality_info *mod = &m->modalities[s->img];
    for (int i = 0; i < n; i++) {
        if (s->o.png) /* the CSV holds the reconstructions alone */
            grid_put(&s->grid, mod, 2 * (i / cols), i % cols, s->w.data[s->img] + (size_t)i * (size_t)mod->size);
        put_image(s, 2 * (i / cols) + 1, i % cols, s->w.out[s->img] + (size_t)i * (size_t)mod->size);
    }
    return 0;
}

static int run_sampler(sampler *s)
{
    int rc = 1;
    if (strcmp(s->o.mode, "prior") == 0)
        rc = sample_prior(s);
    else if (strcmp(s->o.mode, "conditional") == 0)
        rc = sample_conditional(s);
    else
        rc = sample_reconstruct(s);
    const char *files[4] = {s->o.png, s->o.csv, s->o.csv_labels, s->o.npy};
    if (rc == 0 && s->o.png)
        rc = image_save(&s->grid, s->o.png);
    if (rc == 0 && s->o.csv)
        rc = jv_buf_save(&s->csv, s->o.csv);
    if (rc == 0 && s->o.csv_labels)
        rc = jv_buf_save(&s->labels, s->o.csv_labels);
    if (rc == 0 && s->o.npy)
        rc = jv_npy_save(s->o.npy, s->images, (size_t)s->m->modalities[s->img].size, &s->npy);
    for (int i = 0; rc == 0 && i < 4; i++)
        if (files[i])
            printf("wrote %s\n", files[i]);
    return rc;
}

int jv_cmd_sample(const jv_model *m, int argc, char **argv)
{
    sampler s = {.m = m};
    int rc = parse_sample_options(&s, argc, argv);
    if (rc == 0)
        rc = check_sample_mode(&s);
    int reconstruct = rc == 0 && strcmp(s.o.mode, "reconstruct") == 0;
    if (reconstruct)
        rc = jv_dataset_load(m, "sample", &s.o.data, NULL, s.o.draw ? 0u : 1u << s.img, s.o.n, &s.ds);
    if (reconstruct && rc == 0 && jv_dataset_incomplete(&s.ds, NULL, s.ds.n))
        rc = jv_fail("sample: --mode reconstruct reads every example of --data, but some are missing");
    if (rc == 0)
        rc = (s.params = jv_params_read(m, s.o.checkpoint)) == NULL;
    if (rc == 0)
        rc = jv_work_alloc(m, reconstruct ? (int)s.ds.n : s.o.n, &s.w); /* one grid row at a time */
    if (rc == 0)
        rc = run_sampler(&s);
    free(s.grid.px);
    free(s.given);
    free(s.params);
    jv_buf_free(&s.csv);
    jv_buf_free(&s.npy);
    jv_buf_free(&s.labels);
    jv_work_free(&s.w);
    jv_dataset_free(m, &s.ds);
    return rc;
}

/* ------------------------------------------------------------- encode -- */

typedef struct {
    const char *checkpoint, *csv, *png, *family, *npy;
    jv_opt_list data;
    int batch, limit;
} encode_opts;

typedef struct {
    const jv_model *m;
    encode_opts o;
    jv_dataset ds;
    jv_real *params;
    jv_work w;
    int family;
    unsigned zeroed;
    int plane, color;  /* the 2-D latent and the categorical modality, or -1 */
    float *points;     /* [n x 2] means of the 2-D latent */
    int *classes;      /* [n]: the class of modality `color`, or -1 where the example lacks it */
    float *means;      /* [n x the latents' sizes] */
    size_t width;      /* the latents' sizes */
    jv_buf csv, npy;        /* --npy: the means as float32, [examples x latent sizes] */
} encoder;

static const char ENCODE_ABOUT[] =
    "Writes the posterior mean of every latent for each example as CSV (columns\n"
    "<latent>_<i>). The family is the one that conditions on the modalities the\n"
    "example has (or --family); with a 2-D latent, --png draws the means as a scatter\n"
    "plot, coloured by the class of the first categorical modality in --data.";

static int parse_encode_options(encoder *e, int argc, char **argv)
{
    encode_opts *o = &e->o;
    *o = (encode_opts){.batch = e->m->defaults.batch > 0 ? e->m->defaults.batch : 100};
    jv_option opts[] = {
        {"checkpoint", JV_OPT_STRING, &o->checkpoint, 0, 0, "CKPT", "the trained model (required)", 0},
        {"data", JV_OPT_LIST, &o->data, 0, 0, "NAME=FILE", "the data of a modality to encode", 0},
        {"csv", JV_OPT_STRING, &o->csv, 0, 0, "FILE", "the CSV to write (this or --npy is required)", 0},
        {"npy", JV_OPT_STRING, &o->npy, 0, 0, "FILE",
         "also (or only) write the means as a NumPy array [examples x latent sizes] of float32", 0},
        {"png", JV_OPT_STRING, &o->png, 0, 0, "FILE", "also draw a scatter PNG of the 2-D latent", 0},
        {"family", JV_OPT_STRING, &o->family, 0, 0, "NAME", "the posterior family to use, e.g. x,w", 0},
        {"batch", JV_OPT_INT, &o->batch, 1, INT_MAX, "B", "examples per model call", 0},
        {"limit", JV_OPT_INT, &o->limit, 0, INT_MAX, "N", "use only the first N examples, 0 for all", 0},
    };
    int rc = jv_parse_options("encode", "--checkpoint CKPT --data NAME=FILE ... --csv FILE [options]",
                              ENCODE_ABOUT, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc != 0)
        return rc;
    if (!o->checkpoint || (!o->csv && !o->npy))
        return jv_fail("encode: missing --%s", o->checkpoint ? "csv FILE (or --npy FILE)" : "checkpoint CKPT");
    if (o->npy && jv_check_output_path("encode", "npy", o->npy) != 0)
        return 1;
    if (o->csv && jv_check_output_path("encode", "csv", o->csv) != 0)
        return 1;
    return o->png ? jv_check_output_path("encode", "png", o->png) : 0;
}

/* Checks --family against the data and the 2-D latent for --png. */
static int choose_encoding(encoder *e)
{
    const jv_model *m = e->m;
    e->plane = e->color = -1;
    for (int l = m->n_latents - 1; l >= 0; l--)
        e->plane = m->latents[l].size == 2 ? l : e->plane;
    if (e->o.png && e->plane < 0)
        return jv_fail("encode: --png needs a latent of size 2; model %s has none", m->name);
    e->color = find_categorical(m, e->ds.present);
    if (!e->o.family) { /* each example's own subset: every one must have a posterior */
        unsigned checked[64];
        int n_checked = 0;
        for (size_t i = 0; i < e->ds.n; i++) {
            unsigned s = jv_observed(&e->ds, i);
            int seen = 0;
            for (int j = 0; j < n_checked && !seen; j++)
                seen = checked[j] == s;
            if (seen)
                continue;
            if (jv_check_subset(m, s, "encode") != 0)
                return 1;
            if (n_checked < 64)
                checked[n_checked++] = s;
        }
        e->family = jv_pick_family(m, e->ds.present, &e->zeroed);
        return 0;
    }
    if (jv_dataset_incomplete(&e->ds, NULL, e->ds.n))
        return jv_fail("encode: --family %s reads the same modalities for every example, but some examples lack "
                       "one; without --family each example is encoded from what it has",
                       e->o.family);
    e->family = jv_find_family(m, e->o.family);
    if (e->family < 0)
        return jv_fail("encode: model %s has no family '%s' (see '%s help')", m->name, e->o.family,
                       jv_prog_name());
    unsigned missing = m->families[e->family].condition & ~e->ds.present;
    if (missing) {
        char names[256];
        jv_subset_name(m, missing, names, sizeof names);
        return jv_fail("encode: family '%s' reads %s, which has no --data", e->o.family, names);
    }
    return 0;
}

/* Keeps the batch's means (rows[b] is the example of row b) and the scatter's points. */
static void record_batch(encoder *e, const size_t *rows, int batch)
{
    const jv_model *m = e->m;
    for (int b = 0; b < batch; b++) {
        float *out = e->means + rows[b] * e->width;
        for (int l = 0; l < m->n_latents; l++) {
            const jv_real *z = e->w.latents[l] + (size_t)b * (size_t)m->latents[l].size;
            for (int i = 0; i < m->latents[l].size; i++)
                *out++ = (float)z[i];
        }
        if (e->plane >= 0)
            memcpy(e->points + 2 * rows[b], e->w.latents[e->plane] + 2 * (size_t)b, 2 * sizeof(float));
        if (e->color >= 0)
            e->classes[rows[b]] = (jv_observed(&e->ds, rows[b]) >> e->color & 1u)
                                      ? jv_argmax(e->w.data[e->color] + (size_t)b * (size_t)m->modalities[e->color].size,
                                                  m->modalities[e->color].size)
                                      : -1;
    }
}

/* An example and the modalities it has, to sort the examples by subset. */
typedef struct {
    unsigned subset;
    size_t index;
} keyed_example;

static int by_subset(const void *a, const void *b)
{
    const keyed_example *x = a, *y = b;
    if (x->subset != y->subset)
        return x->subset < y->subset ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* The examples in order of their observed subsets, and of their index within one. */
static int order_by_subset(const jv_dataset *ds, size_t *order)
{
    keyed_example *k = malloc((ds->n ? ds->n : 1) * sizeof *k);
    if (!k)
        return 1;
    for (size_t i = 0; i < ds->n; i++)
        k[i] = (keyed_example){jv_observed(ds, i), i};
    qsort(k, ds->n, sizeof *k, by_subset);
    for (size_t i = 0; i < ds->n; i++)
        order[i] = k[i].index;
    free(k);
    return 0;
}

/* Encodes the examples a subset at a time (a model call reads one subset's
 * posterior), then writes the means in example order. */
static int encode_all(encoder *e)
{
    const jv_model *m = e->m;
    const jv_family_info *f = &m->families[e->family];
    size_t n = e->ds.n, cap = (size_t)e->w.cap;
    e->width = 0;
    for (int l = 0; l < m->n_latents; l++)
        e->width += (size_t)m->latents[l].size;
    size_t *order = malloc(n * sizeof *order);
    e->means = malloc(n * e->width * sizeof *e->means);
    e->points = malloc(2 * n * sizeof *e->points);
    e->classes = calloc(n, sizeof *e->classes);
    if (!order || !e->means || !e->points || !e->classes || order_by_subset(&e->ds, order) != 0) {
        free(order);
        return jv_fail("out of memory");
    }
    unsigned previous = 0;
    for (size_t first = 0; first < n;) {
        unsigned given = e->o.family ? f->condition : jv_observed(&e->ds, order[first]), zeroed = e->zeroed;
        int family = e->o.family ? e->family : jv_pick_family(m, given, &zeroed), batch = 0;
        if (!e->o.family && given != e->ds.present && given != previous)
            note_zero_rule(m, given, zeroed); /* the complete examples' note comes from the caller */
        previous = given;
        while (first + (size_t)batch < n && (size_t)batch < cap &&
               (e->o.family || jv_observed(&e->ds, order[first + (size_t)batch]) == given))
            batch++;
        jv_work_gather(m, &e->w, &e->ds, order + first, batch);
        jv_work_zero_inputs(m, &e->w, zeroed);
        jv_family_sample(m, family, given, e->params, e->w.arena, batch, 1, JV_CONST_ROWS(e->w.input), NULL,
                         e->w.latents, e->w.log_q);
        record_batch(e, order + first, batch);
        first += (size_t)batch;
    }
    free(order);
    for (int l = 0; l < m->n_latents; l++)
        for (int i = 0; i < m->latents[l].size; i++)
            jv_buf_printf(&e->csv, "%s%s_%d", l || i ? "," : "", m->latents[l].name, i);
    jv_buf_printf(&e->csv, "\n");
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < e->width; c++) {
            jv_buf_printf(&e->csv, "%s%.9g", c ? "," : "", (double)e->means[i * e->width + c]);
            if (e->o.npy)
                jv_buf_put_f32(&e->npy, e->means[i * e->width + c]);
        }
        jv_buf_printf(&e->csv, "\n");
    }
    return 0;
}

/* A fixed palette of ten distinguishable colours. */
static const uint8_t PALETTE[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                       {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                                       {188, 189, 34},  {23, 190, 207}};

#define SCATTER_SIZE 512

/* The range of one coordinate of the points, widened by 5% on each side. */
static void axis_range(const float *points, size_t n, int axis, double *lo, double *hi)
{
    double a = INFINITY, b = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double v = points[2 * i + (size_t)axis];
        if (isfinite(v)) {
            a = v < a ? v : a;
            b = v > b ? v : b;
        }
    }
    if (!(a < b)) {
        a = isfinite(a) ? a - 1 : -1;
        b = isfinite(b) ? b + 1 : 1;
    }
    *lo = a - 0.05 * (b - a);
    *hi = b + 0.05 * (b - a);
}

static int to_pixel(double v, double lo, double hi)
{
    return (int)lround((v - lo) / (hi - lo) * (SCATTER_SIZE - 1));
}

static void fill_rect(image *im, int x0, int y0, int x1, int y1, const uint8_t *rgb)
{
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < im->height; y++)
        for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < im->width; x++)
            memcpy(im->px + 3 * ((size_t)y * (size_t)im->width + (size_t)x), rgb, 3);
}

static int draw_scatter(encoder *e)
{
    static const uint8_t axis_grey[3] = {200, 200, 200}, black[3] = {0, 0, 0};
    image im;
    double xlo, xhi, ylo, yhi;
    if (image_alloc(&im, SCATTER_SIZE, SCATTER_SIZE, 3, 255) != 0)
        return 1;
    axis_range(e->points, e->ds.n, 0, &xlo, &xhi);
    axis_range(e->points, e->ds.n, 1, &ylo, &yhi);
    int x0 = to_pixel(0, xlo, xhi), y0 = SCATTER_SIZE - 1 - to_pixel(0, ylo, yhi);
    fill_rect(&im, x0, 0, x0, SCATTER_SIZE - 1, axis_grey);
    fill_rect(&im, 0, y0, SCATTER_SIZE - 1, y0, axis_grey);
    for (size_t i = 0; i < e->ds.n; i++) {
        double x = e->points[2 * i], y = e->points[2 * i + 1];
        if (!isfinite(x) || !isfinite(y))
            continue;
        int px = to_pixel(x, xlo, xhi), py = SCATTER_SIZE - 1 - to_pixel(y, ylo, yhi);
        fill_rect(&im, px - 1, py - 1, px + 1, py + 1,
                  e->color >= 0 && e->classes[i] >= 0 ? PALETTE[e->classes[i] % 10] : black);
    }
    return image_save(&im, e->o.png);
}

int jv_cmd_encode(const jv_model *m, int argc, char **argv)
{
    encoder e = {.m = m};
    int rc = parse_encode_options(&e, argc, argv);
    if (rc == 0)
        rc = jv_dataset_load(m, "encode", &e.o.data, NULL, 0, e.o.limit, &e.ds);
    if (rc == 0)
        jv_dataset_print_subsets(m, &e.ds, "examples", NULL, e.ds.n);
    if (rc == 0)
        rc = choose_encoding(&e);
    if (rc == 0)
        rc = (e.params = jv_params_read(m, e.o.checkpoint)) == NULL;
    if (rc == 0)
        rc = jv_work_alloc(m, (size_t)e.o.batch < e.ds.n ? e.o.batch : (int)e.ds.n, &e.w);
    if (rc == 0) {
        note_zero_rule(m, e.ds.present, e.zeroed);
        rc = encode_all(&e);
    }
    if (rc == 0 && e.o.csv)
        rc = jv_buf_save(&e.csv, e.o.csv);
    if (rc == 0 && e.o.npy) {
        size_t cols = 0;
        for (int l = 0; l < m->n_latents; l++)
            cols += (size_t)m->latents[l].size;
        rc = jv_npy_save(e.o.npy, e.ds.n, cols, &e.npy);
    }
    if (rc == 0 && e.o.png)
        rc = draw_scatter(&e);
    const char *files[3] = {e.o.csv, e.o.npy, e.o.png};
    for (int i = 0; rc == 0 && i < 3; i++)
        if (files[i])
            printf("wrote %s\n", files[i]);
    jv_buf_free(&e.csv);
    jv_buf_free(&e.npy);
    free(e.points);
    free(e.classes);
    free(e.means);
    free(e.params);
    jv_work_free(&e.w);
    jv_dataset_free(m, &e.ds);
    return rc;
}
