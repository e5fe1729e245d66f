/* jv_runtime.h: the generic part of every generated trainer (libjmvaec).
 *
 * Compiled once, in single precision. Every function that can fail returns 0
 * on success and -1 on failure, with one line (no trailing newline) naming
 * the file and what is wrong in err->msg; on failure nothing is written to
 * disk and nothing is leaked.
 */
#ifndef JV_RUNTIME_H
#define JV_RUNTIME_H

#include <stdint.h>
#include <stdio.h>

#include "jv_model.h"

typedef struct {
    char msg[1024];
} jv_error;

void jv_error_set(jv_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ------------------------------------------------------- CPU and BLAS -- */

/* What the CPU and the OS allow: avx512 means F, CD, BW, DQ and VL with the
 * ZMM state saved by the OS. */
typedef struct {
    int avx, fma, avx2, avx512;
} jv_cpu_features;

void jv_cpu_detect(jv_cpu_features *f);
/* The OpenBLAS kernel (an OPENBLAS_CORETYPE name) that fits a CPU better
 * than `current`, the library's choice, or NULL: only a kernel older than
 * AVX2 is ever replaced, and only by one the CPU runs. */
const char *jv_blas_better_kernel(const char *current, const jv_cpu_features *f);
/* Called first thing by a program linked with OpenBLAS: when the library
 * chose a generic kernel for this CPU, executes the program again (same
 * argv) with OPENBLAS_CORETYPE set; returns otherwise. A user's
 * OPENBLAS_CORETYPE wins; JMVAEC_BLAS_AUTO=0 keeps the library's choice. */
void jv_blas_auto(char **argv);
/* One line: the library, the kernel running, and why. */
const char *jv_blas_describe(void);

/* ----------------------------------------------------------- threads -- */

/* OpenBLAS's own threads for one GEMM. The trainer keeps it at 1: its
 * threads are its own (jv_team), each GEMM on the thread that calls it. */
void jv_set_threads(int threads);
/* The cores this process may run on (sched_getaffinity), at least 1. */
int jv_cpu_count(void);

/* A team: the calling thread (member 0) and threads - 1 workers. */
typedef struct jv_team jv_team;
typedef void (*jv_team_fn)(void *arg, int id, int n);

/* NULL (with the reason in err) when a thread cannot be started. */
jv_team *jv_team_new(int threads, jv_error *err);
void jv_team_free(jv_team *t);
/* The number of members; 1 for NULL, which runs everything on the caller. */
int jv_team_size(const jv_team *t);
/* Every member runs fn(arg, id, n); returns when all have returned. */
void jv_team_run(jv_team *t, jv_team_fn fn, void *arg);
/* Part id of `parts` of [0, n), cut at multiples of align. */
void jv_split_range(size_t n, size_t align, int id, int parts, size_t *begin, size_t *end);


/* ------------------------------------------------------------- random -- */

/* A stream of the counter-based generator: draws are a pure function of
 * (seed, stream, position), so they do not depend on the thread count. */
typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t position;
} jv_rng;

void jv_rng_fill_normal(jv_rng *rng, float *out, size_t n);
void jv_rng_fill_uniform(jv_rng *rng, float *out, size_t n);
/* Uniform integer in [0, n). */
uint64_t jv_rng_below(jv_rng *rng, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void jv_rng_shuffle(jv_rng *rng, size_t *idx, size_t n);

/* ---------------------------------------------------------- optimiser -- */

typedef struct {
    double lr, beta1, beta2, eps, clip; /* clip <= 0: none */
} jv_adam_config;

/* Global L2 norm of g[0..n): the square root of jv_sumsq_f32. */
double jv_grad_norm(const float *g, size_t n);
/* The factor clipping multiplies the gradient by: min(1, clip / norm), or 1. */
double jv_clip_factor(double clip, double grad_norm);
/* One Adam step (step counts from 1) with the gradient scaled by
 * min(1, clip / grad_norm) when clipping is on. */
void jv_adam_step(const jv_adam_config *cfg, float *params, const float *grads, float *m, float *v,
                  size_t n, long step, double grad_norm);
/* The same on elements [begin, end) with the gradient scaled by `scale`:
 * threads update disjoint ranges, with the same result as one call. */
void jv_adam_update(const jv_adam_config *cfg, float *params, const float *grads, float *m, float *v, size_t begin,
                    size_t end, long step, double scale);

/* The vector code the two loops above run: "baseline", "avx2" or "avx512",
 * the widest the CPU runs (JMVAEC_SIMD=NAME picks a narrower one). Every
 * path gives the same bits; the tests check that through these. */
const char *jv_simd_describe(void);
int jv_simd_path_count(void);
const char *jv_simd_path_name(int path);
int jv_simd_path_supported(int path);
double jv_sumsq_path(int path, const float *x, size_t n);
void jv_adam_update_path(int path, const jv_adam_config *cfg, float *params, const float *grads, float *m, float *v,
                         size_t n, long step, double scale);
/* The value of a weight after linear warm-up (see jv_hyper_info). */
double jv_hyper_value(const jv_hyper_info *h, double epoch_progress);

/* ----------------------------------------------------- the step graph -- */

/* Runs a model's step graph (jv_model.h) on a team. */
typedef struct jv_graph_runner jv_graph_runner;

/* The optimiser step a graph run may carry out first: Adam over every
 * gradient region, with this step number and this clip factor. */
typedef struct {
    const jv_adam_config *cfg;
    float *params;
    const float *grads;
    float *m, *v;
    long step;
    double scale;
} jv_adam_pass;

jv_graph_runner *jv_graph_runner_new(const jv_task_graph *g, jv_error *err);
void jv_graph_runner_free(jv_graph_runner *r);
/* All tasks, or only the forward pass; with `adam` (not with the forward
 * pass alone), first that Adam update of the whole block, region by region,
 * each before the tasks that read its parameters or write its gradient:
 * the same bits as jv_adam_update over the block and then the step, for any
 * team size. */
void jv_team_run_graph(jv_team *t, jv_graph_runner *r, const jv_step *s, int forward_only, const jv_adam_pass *adam);
/* Runs n graphs side by side (n <= JV_GRAPHS_MAX, each runner once), graph k
 * on step s[k], without Adam: each graph's results are the bits of its own
 * run, so that the caller can sum them in a fixed order. */
#define JV_GRAPHS_MAX 4
void jv_team_run_graphs(jv_team *t, int n, jv_graph_runner *const *r, const jv_step *const *s, int forward_only);

/* ------------------------------------------------------------ memory -- */

/* Memory for a large block (parameters, moments, gradients, data): from 4 MiB
 * on, aligned to 2 MiB and advised to use transparent huge pages, which cut
 * the page faults and TLB misses of the loops that stream it. Freed with
 * free(); NULL when memory runs out. */
void *jv_alloc_large(size_t bytes, int zeroed);

/* --------------------------------------------------------------- data -- */

/* A dense matrix of examples: n rows of dim floats. */
typedef struct {
    size_t n, dim;
    float *x;
    int unit_interval; /* every value is known to lie in [0,1] (bytes scaled by 1/255) */
    unsigned char *missing; /* [n]: 1 where the example is missing (its row holds zeros); NULL: none is */
    size_t n_missing;
} jv_matrix;

void jv_matrix_free(jv_matrix *m);
/* Marks example `row` missing: its values become 0 (nothing reading them meets
 * a NaN). -1 when out of memory. */
int jv_matrix_hide_row(jv_matrix *m, size_t row);

/* Reads IDX (plain or gzip), NPY (float32, float64, uint8; C order) or CSV
 * (numbers separated by commas, one example per line; a header line is an
 * error). uint8 data is scaled to [0,1]. The result is n x dim with dim the
 * product of all but the first dimension. NaN or infinity is an error. */
int jv_load_matrix(const char *path, jv_matrix *out, jv_error *err);

/* Loads the data file for one modality and checks it against the modality:
 * categorical: class indices (dim 1, integers in [0, size)) become one-hot
 *   rows; dim == size rows are taken as one-hot or probabilities; uint8 data
 *   is not scaled here, so an IDX label file gives class indices;
 * bernoulli: values must lie in [0,1]; dim must equal size;
 * gaussian: dim must equal size.
 * Missing examples are allowed here: a row of NaN only (in CSV, fields that
 * are empty, NA or NaN) or a negative class index; out->missing marks them.
 * A row with some values missing and others not is an error. */
int jv_load_modality(const char *path, const jv_modality_info *mod, jv_matrix *out, jv_error *err);

/* --------------------------------------------------------------- PNG -- */

/* Writes an 8-bit grey (channels 1) or RGB (channels 3) PNG atomically. */
int jv_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                 jv_error *err);

/* ------------------------------------------------------- checkpoints -- */

/* The checkpoint format, version 4, all integers little-endian:
 *   "JMVAECK1"              8 bytes magic
 *   u32 version (4)         u32 reserved (0)
 *   u64 model fingerprint   (jv_model.fingerprint)
 *   u32 name length, name bytes (the model's name)
 *   u32 tensor count; per tensor: u32 name length, name, u32 rows, u32 cols, u64 offset
 *   u64 parameter count n
 *   f32[n] parameters, f32[n] Adam m, f32[n] Adam v
 *   u64 rng seed, u64 rng position
 *   i64 epoch (completed), i64 step (optimiser steps taken)
 *   the progress within the next epoch (all 0 at an epoch's end):
 *     u64 batches of it done, u64 batch size, u64 training examples,
 *     u64 the run's parts of a batch (train --chunks; 0: unrecorded),
 *     u64 the choice of its training examples: 1 for train --complete-only, else 0,
 *     f64[32] the fraction of the training examples train --drop hid each modality in
 *       (in the model's order; 0: none, and for the places beyond its modalities),
 *     u32 count k, f64[k] the loss and each term summed over those batches
 *   u32 CRC-32 (zlib) of every byte before it
 * Versions 1 (without the progress), 2 (without the parts) and 3 (without the choice of
 * examples) are read too. Written to a
 * temporary file in the same folder, flushed (fsync), then renamed over
 * the target, so the previous checkpoint survives any failure. */
enum { JV_CK_MAX_SUMS = 1 + 256, JV_CK_MAX_MODALITIES = 32 };

typedef struct {
    float *params, *m, *v; /* each n_params long, owned by the caller */
    uint64_t rng_seed, rng_position;
    int64_t epoch, step;
    /* within epoch + 1: batches done (0 at an epoch boundary), with the batch
     * size and training set they were cut from, and their sums */
    int64_t batches, batch_size, n_train;
    int64_t chunks;        /* the run's --chunks (0 in checkpoints of format 1 and 2) */
    int complete_only;     /* the run's --complete-only, and --drop of each modality (0: none; */
    double drop[JV_CK_MAX_MODALITIES]; /* both 0 in checkpoints of formats 1 to 3) */
    int n_sums;
    double sums[JV_CK_MAX_SUMS];
} jv_checkpoint;

int jv_checkpoint_save(const char *path, const jv_model *model, const jv_checkpoint *ck, jv_error *err);
/* Refuses a damaged file, another version, or a checkpoint of another spec. */
int jv_checkpoint_load(const char *path, const jv_model *model, jv_checkpoint *ck, jv_error *err);

/* ---------------------------------------------------- NumPy archives -- */

/* A NumPy .npz archive (np.load reads it), built in memory: stored members
 * with fixed dates, so the same arrays always give the same bytes. */
typedef struct jv_npz jv_npz;
jv_npz *jv_npz_new(void); /* NULL when out of memory (then add ignores it and save fails) */
/* Adds array `name` of shape[0] x ... x shape[ndim - 1] values in C order:
 * float32 (f64 = 0, values are floats) or float64 (f64 = 1, doubles). */
void jv_npz_add(jv_npz *z, const char *name, const void *values, int f64, const size_t *shape, int ndim);
/* Writes the archive atomically, its comment "written by jmvaec <comment>",
 * and frees it. An existing file is replaced only if jmvaec wrote it
 * (jv_npz_ours). Returns 0, or 1 after one line "<prog>: <cmd>: ...". */
int jv_npz_save(jv_npz *z, const char *path, const char *comment, const char *cmd);
void jv_npz_free(jv_npz *z); /* an archive not saved */
int jv_npz_ours(const char *path);

/* ------------------------------------------------------------- files -- */

/* Writes bytes atomically (temporary file, fsync, rename). */
int jv_write_file_atomic(const char *path, const void *data, size_t size, jv_error *err);
/* mkdir -p for one folder. */
int jv_make_dir(const char *path, jv_error *err);

#endif
