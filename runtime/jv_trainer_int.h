/* jv_trainer_int.h: what the trainer's subcommands share (not an interface
 * for generated code): data sets loaded from --data options, the batch work
 * buffers, random streams, the choice of posterior family for a set of
 * modalities, checkpoint reading, statistics and the progress line.
 */
#ifndef JV_TRAINER_INT_H
#define JV_TRAINER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "jv_internal.h"
#include "jv_runtime.h"
#include "jv_trainer.h"

/* The model functions take const views of the work buffers. */
#define JV_CONST_ROWS(p) ((const jv_real *const *)(p))

/* -------------------------------------------------------- subcommands -- */

int jv_cmd_train(const jv_model *m, int argc, char **argv);
int jv_cmd_eval(const jv_model *m, int argc, char **argv);
int jv_cmd_sample(const jv_model *m, int argc, char **argv);
int jv_cmd_encode(const jv_model *m, int argc, char **argv);
int jv_cmd_export(const jv_model *m, int argc, char **argv);

/* ------------------------------------------------------------ streams -- */

/* What a random stream is for; the stream id packs (tag, latent or
 * modality, index) so every draw is a function of the seed and of where
 * it is used, never of the batch size or the thread count. */
enum {
    JV_TAG_SPLIT = 1,    /* the one permutation before the validation split */
    JV_TAG_SHUFFLE,      /* index: epoch */
    JV_TAG_NOISE,        /* index: global step */
    JV_TAG_BINARIZE,     /* index: global step */
    JV_TAG_VALID_NOISE,  /* index: validation batch */
    JV_TAG_VALID_BINARIZE,
    JV_TAG_EVAL_FORWARD, /* index: example */
    JV_TAG_EVAL_IS,      /* index: subset << 32 | example */
    JV_TAG_EVAL_ACCURACY,/* index: pair << 32 */
    JV_TAG_SAMPLE,       /* index: grid row */
    JV_TAG_EVAL_CLASS,   /* index: modality summed over << 32 | example; position: class * samples */
    JV_TAG_EVAL_PRIOR,   /* index: modality; position: sample */
    JV_TAG_DROP          /* train --drop: sub: modality */
};

uint64_t jv_stream_id(unsigned tag, unsigned sub, uint64_t index);

/* --------------------------------------------------------------- data -- */

typedef struct {
    size_t n;           /* examples used (after --limit) */
    unsigned present;   /* bit m: modality m was given */
    jv_matrix *mod;     /* one per modality; empty when absent */
    const char **path;  /* one per modality; NULL when absent */
    unsigned *observed; /* [n]: bit m set where example i has modality m; NULL: every example has all of
                           `present` */
} jv_dataset;

/* Loads every NAME=FILE of --data; `required` modalities must be among them.
 * observed (may be NULL): the NAME=FILE of --observed, a 0/1 mask a
 * modality's file (1: observed) combined with its missing rows. limit > 0
 * keeps the first `limit` examples. Refuses an example with nothing
 * observed and a modality missing in every example. Prints the error and
 * returns 1 on failure (nothing is left allocated). */
int jv_dataset_load(const jv_model *m, const char *cmd, const jv_opt_list *specs, const jv_opt_list *observed,
                    unsigned required, int limit, jv_dataset *ds);
void jv_dataset_free(const jv_model *m, jv_dataset *ds);
/* The modalities example i has. */
static inline unsigned jv_observed(const jv_dataset *ds, size_t i)
{
    return ds->observed ? ds->observed[i] : ds->present;
}
/* Marks modality k missing in example i (its rows become zeros); -1 when out of memory. */
int jv_dataset_hide(jv_dataset *ds, int k, size_t i);
/* Prints, for the examples examples[0..n) (all of them when NULL), how many
 * have each set of modalities: "examples by observed modalities: x,w 900, x 100". */
void jv_dataset_print_subsets(const jv_model *m, const jv_dataset *ds, const char *what, const size_t *examples,
                              size_t n);
/* 1 when some example of examples[0..n) (all when NULL) lacks a modality the data give. */
int jv_dataset_incomplete(const jv_dataset *ds, const size_t *examples, size_t n);

/* The modality of one NAME=VALUE item of option --opt (its value in *value),
 * refusing a name that is no modality and one already in *seen (which
 * gains it); -1 after printing the error. */
int jv_modality_option(const jv_model *m, const char *cmd, const char *opt, const char *item, unsigned *seen,
                       const char **value);
/* Index of the modality called name (length len), or -1. */
int jv_find_modality(const jv_model *m, const char *name, size_t len);
/* Splits "NAME=VALUE"; prints an error naming the option if there is no '='. */
int jv_split_assignment(const char *cmd, const char *opt, const char *item, size_t *name_len,
                        const char **value);
/* "x, w": the modality names for messages. */
void jv_modality_names(const jv_model *m, char *buf, size_t size);
/* "x,w": the names of the modalities in a set, in model order. */
void jv_subset_name(const jv_model *m, unsigned subset, char *buf, size_t size);

/* --------------------------------------------------------- work space -- */

/* Buffers for batches of up to cap examples, each role one allocation. */
typedef struct {
    int cap;
    jv_real *arena;     /* arena_per_example * cap */
    jv_real **data;     /* per modality [cap x size]: the batch */
    jv_real **input;    /* per modality: what a posterior reads (data or zeros) */
    jv_real **out;      /* per modality [cap x size]: decode's output */
    jv_real **log_lik;  /* per modality [cap] */
    jv_real **noise;    /* [n_noise]: the posteriors' and the prior's noise per latent [cap x size], and a
                           mixture's choice, noise[n_latents + l] [cap x 1]; the training step's per draw */
    int n_noise;
    jv_real **latents;  /* per latent [cap x size] */
    jv_real *log_q;     /* [cap] */
    jv_real *log_prior; /* [cap] */
    jv_real *zeros;     /* [cap x largest modality size], all zero */
    jv_real *terms;     /* [n_terms] */
    jv_real *hyper;     /* [n_hypers] */
} jv_work;

/* The size of the model's largest modality (at least 1). */
size_t jv_largest_modality(const jv_model *m);
/* Prints the error and returns 1 when memory runs out. */
int jv_work_alloc(const jv_model *m, int cap, jv_work *w);
void jv_work_free(jv_work *w);
/* Copies rows idx[0..batch) of every given modality into w->data (absent
 * modalities become zeros) and points w->input at the data. */
void jv_work_gather(const jv_model *m, jv_work *w, const jv_dataset *ds, const size_t *idx, int batch);
/* Copies rows [from, to) of the batch only, and leaves w->input alone. */
void jv_work_gather_rows(const jv_model *m, jv_work *w, const jv_dataset *ds, const size_t *idx, int from, int to);
/* Points the inputs of the modalities in `zeroed` at zeros, the rest at the data. */
void jv_work_zero_inputs(const jv_model *m, jv_work *w, unsigned zeroed);
/* Standard normals for every latent: latent l reads stream (tag, l, index)
 * from position first * size_l on; a latent whose posterior is a mixture
 * also gets its choices, noise[n_latents + l], from stream (tag,
 * n_latents + l, index). For the posterior and prior functions. */
void jv_work_fill_noise(const jv_model *m, jv_work *w, int batch, uint64_t seed, unsigned tag,
                        uint64_t index, uint64_t first);
/* The same, written from row `row` of the noise buffers on. */
void jv_work_fill_noise_at(const jv_model *m, jv_work *w, int row, int batch, uint64_t seed, unsigned tag,
                           uint64_t index, uint64_t first);
/* K, the importance samples of each draw of the training step (1 for a
 * model without them). */
static inline int jv_samples(const jv_model *m)
{
    return m->samples > 1 ? m->samples : 1;
}

/* The training step's noise: draw d reads stream (tag, d, index) from
 * position first * size on (a spec without loops draws latent l as draw l:
 * the same streams as jv_work_fill_noise_at). */
void jv_work_fill_step_noise_at(const jv_model *m, jv_work *w, int row, int batch, uint64_t seed, unsigned tag,
                                uint64_t index, uint64_t first);

/* ---------------------------------------------- chunks and processes -- */

/* The gradient's norm is summed in blocks of this many reals (the blocks'
 * sums of squares added in block order), and the processes' segments of
 * the block are cut at multiples of it (jv_trainer_chunks.c). */
#define JV_NORM_BLOCK ((size_t)16384)

/* Writes the gradient of part `chunk` of the batch into grads (overwritten). */
typedef void (*jv_chunk_fn)(void *ctx, int chunk, jv_real *grads);

typedef struct {
    size_t n;                 /* reals in the gradient block */
    int chunks, rank, ranks;
    int fast;                 /* reduce-scatter by recursive doubling (see the file) */
    int levels, depth;        /* log2 of ranks and of chunks, rounded up */
    int *first_of;            /* [ranks + 1]: process p computes parts [first_of[p], first_of[p + 1]) */
    size_t *seg_lo, *seg_hi;  /* per process: the reals of the summed gradient it ends with */
    size_t *blk_lo, *blk_hi;  /* the same in JV_NORM_BLOCK blocks */
    size_t n_blocks;
    jv_real **pool;           /* gradient buffers, allocated when first needed */
    unsigned char *pool_free;
    int n_pool;
    jv_real *result;          /* the last run's sum (a pool buffer) */
} jv_reducer;

/* Prints the error and returns 1 when memory runs out. */
int jv_reducer_init(jv_reducer *r, size_t n, int chunks, int rank, int ranks);
void jv_reducer_free(jv_reducer *r);
/* The process that computes part `chunk`. */
int jv_chunk_owner(const jv_reducer *r, int chunk);
/* Runs fn on this process's parts and sums all parts' gradients along the
 * tree; returns a buffer whose reals [seg_lo[rank], seg_hi[rank]) hold the
 * sum (valid until the next run). Every process must call it. */
jv_real *jv_reducer_run(jv_reducer *r, jv_chunk_fn fn, void *ctx);

/* ------------------------------------------------------------ families -- */

/* The family that conditions on exactly `subset`, else the training family
 * with the modalities it reads beyond the subset listed in *zeroed (the
 * JMVAE-zero rule: they are fed as zeros). */
int jv_pick_family(const jv_model *m, unsigned subset, unsigned *zeroed);
/* Does family f condition on exactly `subset` (a family of posteriors built
 * from experts: any subset it covers)? */
int jv_family_serves(const jv_model *m, int f, unsigned subset);
/* Samples every latent from family f given the modalities in `given` (a
 * family of experts uses that subset's posterior when it covers it, else
 * all of its condition; other families read what they read), rows in runs of
 * `copies` rows of one example. */
void jv_family_sample(const jv_model *m, int f, unsigned given, const jv_real *params, jv_real *arena, int batch,
                      int copies, const jv_real *const *data, const jv_real *const *noise, jv_real *const *latents,
                      jv_real *log_q);
/* For a model whose posteriors are built from experts: 0 when it has a
 * posterior given `subset`, else prints which subsets it has (for command
 * cmd) and returns 1. Always 0 for the other models (the zero rule). */
int jv_check_subset(const jv_model *m, unsigned subset, const char *cmd);
/* The same without a message: 1 when a model of experts has no posterior given subset. */
int jv_check_subset_quiet(const jv_model *m, unsigned subset);
/* Index of the family called name, or -1. */
int jv_find_family(const jv_model *m, const char *name);

/* -------------------------------------------------------- checkpoints -- */

/* Allocates zeroed parameters and Adam moments; prints the error and
 * returns 1 when memory runs out. */
int jv_checkpoint_alloc(const jv_model *m, jv_checkpoint *ck);
/* Allocates and loads every part of a checkpoint; prints the error and
 * returns 1 on failure. */
int jv_checkpoint_read(const jv_model *m, const char *path, jv_checkpoint *ck);
void jv_checkpoint_release(jv_checkpoint *ck);
/* Just the parameters; NULL (after printing the error) on failure. */
jv_real *jv_params_read(const jv_model *m, const char *path);

/* --------------------------------------------------------- statistics -- */

/* Running mean and variance (Welford), in double. */
typedef struct {
    double n, mean, m2;
} jv_stat;

void jv_stat_add(jv_stat *s, double x);
/* Standard error of the mean; NaN with fewer than two values. */
double jv_stat_se(const jv_stat *s);
/* log of the mean of exp(x[0..n)), computed stably. */
double jv_log_mean_exp(const double *x, size_t n);
int jv_argmax(const jv_real *x, int n);

/* ------------------------------------------------------------ output -- */

/* Appends printf-formatted text to a byte buffer. */
void jv_buf_printf(jv_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Writes a finished buffer atomically; prints the error and returns 1 on
 * failure (including a failed allocation while it was built). */
int jv_buf_save(jv_buf *b, const char *path);
/* A float as 4 little-endian bytes. */
void jv_buf_put_f32(jv_buf *b, float x);
/* The header of a NumPy .npy file of float32 values of this shape. */
void jv_npy_header(jv_buf *b, const size_t *shape, int ndim);
/* The same for values of NumPy type descr ("<f4", "<f8"). */
void jv_npy_header_of(jv_buf *b, const char *descr, const size_t *shape, int ndim);
/* Writes rows x cols float32 values (body, row-major) as a NumPy .npy file
 * (np.load reads it), atomically; prints the error and returns 1 on failure. */
int jv_npy_save(const char *path, size_t rows, size_t cols, jv_buf *body);
/* Refuses (printing why) an output path whose folder does not exist. */
int jv_check_output_path(const char *cmd, const char *opt, const char *path);

/* Seconds on a monotonic clock. */
double jv_now(void);
/* "1:02:03" or "2:03". */
void jv_format_duration(double seconds, char *buf, size_t size);

/* A status line redrawn in place with \r when stdout is a terminal. */
typedef struct {
    int tty, shown;
    double last;
} jv_progress;

void jv_progress_init(jv_progress *p);
/* Redraws the line (at most ten times a second unless force is set). */
void jv_progress_draw(jv_progress *p, int force, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Erases the line, if one is shown. */
void jv_progress_clear(jv_progress *p);

#endif
