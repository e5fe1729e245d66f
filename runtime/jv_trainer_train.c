/* jv_trainer_train.c: the train subcommand. Adam on the model's objective,
 * with every random draw a function of (seed, epoch, step) only, so a run
 * resumed from a checkpoint reproduces the uninterrupted run bit for bit.
 * Writes RUNDIR/train.csv (one row per epoch), RUNDIR/last.ckpt after every
 * epoch and every --ckpt-minutes within one (a checkpoint taken within an
 * epoch holds how far the epoch got, and resuming finishes it), and
 * RUNDIR/epoch-<N>.ckpt every --ckpt-every epochs. SIGINT and SIGTERM end
 * the run after the current step with last.ckpt written. Nothing is
 * written before every input has been checked.
 */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jv_comm.h"
#include "jv_trainer_int.h"

enum { BIN_NONE, BIN_THRESHOLD, BIN_RESAMPLE };

typedef struct {
    jv_opt_list data, observed, drop, binarize, hyper, lr_after;
    int epochs, batch, threads, valid, ckpt_every, limit, chunks, complete_only;
    double lr, clip, ckpt_minutes;
    uint64_t seed;
    const char *out, *resume;
} train_opts;

/* One group of a part's examples (those that observe the same subset)
 * through its step: the step's arguments and what it gives back. */
typedef struct {
    jv_step s;
    jv_real loss;
    jv_real *grads;         /* its gradient, added to the part's after the run; NULL when it always writes
                               the part's own (the first group, when all groups fit side by side) */
    jv_real *scale, *terms; /* [n_terms]: the group's share of the batch; its terms */
    const jv_real **data, **noise; /* its rows of the batch */
    double share;
} group_slot;

typedef struct {
    const jv_model *m;
    train_opts o;
    int seed_given, chunks_given;
    jv_dataset ds;
    char *binarize;         /* per modality: BIN_* */
    jv_hyper_info *hypers;  /* the spec's schedule with --hyper applied */
    struct lr_change { int after; double lr; } *lr_after; /* --lr-after, by epoch */
    int n_lr_after;
    size_t *split;          /* all examples permuted: training first, then validation */
    size_t n_train, n_valid;
    size_t *order;          /* this epoch's order of the training examples */
    jv_work w;
    jv_checkpoint ck;       /* parameters, Adam moments, completed epoch and step */
    jv_real *grads;
    jv_team *team;          /* --threads members, the calling thread one of them */
    jv_graph_runner *runner;/* the model's step graph on the team */
    double *sumsq;          /* per gradient region of the step graph */
    int adam_pending;       /* the last step's Adam update is still to be applied: */
    long pending_step;      /* inside the next step's graph, or by flush_adam */
    double pending_scale;
    jv_adam_config adam;
    char *run_dir;
    jv_buf csv;             /* train.csv as it stands on disk */
    double *sums;           /* per epoch: loss then each term, summed over the training
                             * examples; then the same over the validation examples */
    jv_progress bar;
    double run_start;
    double last_save;       /* when last.ckpt was last written */
    char **argv;            /* for the line saying how to continue */
    int argc;
    double load_seconds;    /* reading and decoding the data files */
    double step_seconds;    /* in the steps (batch, forward, backward, Adam), this invocation */
    double ckpt_seconds;    /* writing checkpoints */
    int64_t first_epoch;    /* the first epoch this invocation runs */
    /* processes and chunks (jv_trainer_chunks.c); with one process and one
     * chunk none of this is used and the step is the plain graph */
    int rank, ranks, lead;  /* lead: rank 0, which writes files and prints */
    int chunked;            /* --chunks above 1, or more than one process */
    jv_reducer red;
    group_slot *side;       /* [n_side]: the groups of a part run side by side */
    int n_side;
    double *rec;            /* every process's record of a step: its parts' loss and terms, */
    size_t *rec_bytes, *rec_displs; /* its stop and save flags, its blocks' sums of squares */
    double *block_sumsq;    /* [n_blocks], in block order */
    size_t *seg_bytes, *seg_displs; /* each process's segment of the parameter block */
    int agreed_stop, agreed_save; /* what every process decided after the last step */
    /* incomplete data: each part's examples grouped by what they observe,
     * each group through the step of its observed subset */
    int incomplete;         /* some example lacks a modality: always in parts */
    int *step_of;           /* [ds.n]: 0 the complete examples' step, k + 1 the model's subset_steps[k] */
    size_t *grouped;        /* [batch cap]: a batch with each part's examples grouped by step */
    jv_graph_runner **subset_runners; /* [n_subset_steps] */
    int64_t moments_at;     /* the step whose moments process 0 last gathered, or -1 */
} trainer;

/* Where one batch's random draws come from. */
typedef struct {
    unsigned noise_tag, binarize_tag;
    uint64_t index;
} batch_key;

static const char TRAIN_ABOUT[] =
    "Fits the model to the data with Adam. Every modality needs --data; all files must\n"
    "hold the same examples. Writes RUNDIR/train.csv, RUNDIR/epoch-<N>.ckpt and\n"
    "RUNDIR/last.ckpt. --resume continues a run up to --epochs, reproducing an\n"
    "uninterrupted run exactly when given the same data and the same --valid, --batch,\n"
    "--lr, --lr-after, --hyper and --observed (the checkpoint keeps the run's seed, --chunks,\n"
    "--drop and --complete-only). An example that lacks modalities trains on the part of the\n"
    "loss that reads only what it has.";

/* ------------------------------------------------------------ options -- */

static int parse_train_options(trainer *t, int argc, char **argv)
{
    const jv_train_defaults *d = &t->m->defaults;
    train_opts *o = &t->o;
    *o = (train_opts){.epochs = d->epochs > 0 ? d->epochs : 1, .batch = d->batch > 0 ? d->batch : 100,
                      .threads = jv_cpu_count(), .lr = d->lr, .clip = d->clip > 0 ? d->clip : 0, .seed = d->seed,
                      .ckpt_minutes = 5};
    jv_option opts[] = {
        {"data", JV_OPT_LIST, &o->data, 0, 0, "NAME=FILE", "the data file of a modality (one per modality)", 0},
        {"observed", JV_OPT_LIST, &o->observed, 0, 0, "NAME=FILE",
         "which examples have modality NAME: a 0/1 column, one an example (beside the file's own missing rows)",
         0},
        {"drop", JV_OPT_LIST, &o->drop, 0, 0, "NAME=P",
         "hide modality NAME in a fraction P of the training examples, chosen by the seed (--resume: the "
         "checkpoint's, unless given)", 0},
        {"epochs", JV_OPT_INT, &o->epochs, 1, INT_MAX, "N", "train until N epochs are complete", 0},
        {"batch", JV_OPT_INT, &o->batch, 1, INT_MAX, "B", "examples per step", 0},
        {"lr", JV_OPT_REAL, &o->lr, 0, 1e6, "X", "Adam's learning rate", 0},
        {"lr-after", JV_OPT_LIST, &o->lr_after, 0, 0, "N=X",
         "after N epochs, Adam's learning rate becomes X (repeatable: a step schedule)", 0},
        {"seed", JV_OPT_U64, &o->seed, 0, 1.8446744073709552e19, "S", "seed of every random draw", 0},
        {"threads", JV_OPT_INT, &o->threads, 1, 1024, "T",
         "threads (default: the cores this process may use); the results are the same for every T", 0},
        {"out", JV_OPT_STRING, &o->out, 0, 0, "RUNDIR",
         "folder for the log and checkpoints (default: the --resume checkpoint's folder, else 'run')", 0},
        {"resume", JV_OPT_STRING, &o->resume, 0, 0, "CKPT", "continue from this checkpoint", 0},
        {"valid", JV_OPT_INT, &o->valid, 0, INT_MAX, "N", "hold N examples out for validation", 0},
        {"ckpt-every", JV_OPT_INT, &o->ckpt_every, 0, INT_MAX, "N",
         "also write epoch-<N>.ckpt every N epochs, 0 for never", 0},
        {"ckpt-minutes", JV_OPT_REAL, &o->ckpt_minutes, 0, 1e9, "M",
         "within an epoch, bring last.ckpt up to date every M minutes (0: at epoch ends only)", 0},
        {"binarize", JV_OPT_LIST, &o->binarize, 0, 0, "NAME=MODE",
         "none, threshold (at 0.5) or resample (every step) for a bernoulli modality", 0},
        {"hyper", JV_OPT_LIST, &o->hyper, 0, 0, "NAME=X",
         "set an objective weight (NAME.from=X and NAME.warmup=EPOCHS set its warm-up)", 0},
        {"clip", JV_OPT_REAL, &o->clip, 0, 1e30, "X", "clip the gradient's total norm at X, 0 for off", 0},
        {"limit", JV_OPT_INT, &o->limit, 0, INT_MAX, "N", "use only the first N examples, 0 for all", 0},
        {"complete-only", JV_OPT_FLAG, &o->complete_only, 0, 0, NULL,
         "train on the training examples that have every modality (after --drop) alone: the baseline that "
         "discards incomplete examples", 0},
        {"chunks", JV_OPT_INT, &o->chunks, 0, 1024, "C",
         "sum each batch's gradient over C fixed parts (default 1, or the number of MPI processes); "
         "the results are the same for any number of processes up to C", 0},
    };
    int rc = jv_parse_options("train", "--data NAME=FILE ... [options]", TRAIN_ABOUT, opts,
                              (int)(sizeof opts / sizeof opts[0]), argc, argv);
    t->seed_given = opts[7].given;
    t->chunks_given = opts[(sizeof opts / sizeof opts[0]) - 1].given;
    return rc;
}

static int parse_binarize(trainer *t)
{
    const jv_model *m = t->m;
    static const char *const modes[] = {"none", "threshold", "resample"};
    t->binarize = calloc((size_t)m->n_modalities, 1);
    if (!t->binarize)
        return jv_fail("out of memory");
    for (int i = 0; i < t->o.binarize.n; i++) {
        const char *item = t->o.binarize.item[i], *mode = NULL;
        size_t len = 0;
        if (jv_split_assignment("train", "binarize", item, &len, &mode) != 0)
            return 1;
        int k = jv_find_modality(m, item, len);
        if (k < 0 || m->modalities[k].likelihood != JV_BERNOULLI)
            return jv_fail("train: --binarize %.*s: no bernoulli modality of that name", (int)len, item);
        int found = -1;
        for (int j = 0; j < 3; j++)
            found = strcmp(mode, modes[j]) == 0 ? j : found;
        if (found < 0)
            return jv_fail("train: --binarize %.*s=%s: the mode must be none, threshold or resample", (int)len,
                           item, mode);
        t->binarize[k] = (char)found;
    }
    return 0;
}

/* Applies one --hyper item: NAME=X, NAME.from=X or NAME.warmup=EPOCHS. */
static int apply_hyper(trainer *t, const char *item)
{
    size_t len = 0;
    const char *text = NULL;
    if (jv_split_assignment("train", "hyper", item, &len, &text) != 0)
        return 1;
    double value;
    if (jv_parse_value(text, JV_OPT_REAL, -DBL_MAX, DBL_MAX, &value) != 0)
        return jv_fail("train: --hyper %s: '%s' is not a number", item, text);
    for (int i = 0; i < t->m->n_hypers; i++) {
        jv_hyper_info *h = &t->hypers[i];
        size_t n = strlen(h->name);
        if (len < n || strncmp(item, h->name, n) != 0)
            continue;
        if (len == n)
            h->value = value;
        else if (len == n + 5 && strncmp(item + n, ".from", 5) == 0)
            h->warmup_from = value;
        else if (len == n + 7 && strncmp(item + n, ".warmup", 7) == 0 && value >= 0)
            h->warmup_epochs = value;
        else
            continue;
        return 0;
    }
    return jv_fail("train: --hyper %s: model %s has no such weight (see '%s help')", item, t->m->name,
                   jv_prog_name());
}

/* Parses --lr-after N=X items into a schedule ordered by N. */
static int parse_lr_schedule(trainer *t)
{
    int n = t->o.lr_after.n;
    t->lr_after = malloc((size_t)(n ? n : 1) * sizeof *t->lr_after);
    if (!t->lr_after)
        return jv_fail("out of memory");
    for (int i = 0; i < n; i++) {
        const char *item = t->o.lr_after.item[i], *eq = strchr(item, '=');
        if (!eq)
            return jv_fail("train: --lr-after expects N=X (after N epochs, the learning rate X), got '%s'", item);
        char epochs[32];
        snprintf(epochs, sizeof epochs, "%.*s", (int)(eq - item), item);
        double after, lr;
        if ((size_t)(eq - item) >= sizeof epochs || jv_parse_value(epochs, JV_OPT_INT, 0, INT_MAX, &after) != 0)
            return jv_fail("train: --lr-after %s: '%.*s' is not a number of epochs (0 or more)", item,
                           (int)(eq - item), item);
        /* the range of --lr */
        if (jv_parse_value(eq + 1, JV_OPT_REAL, 0, 1e6, &lr) != 0)
            return jv_fail("train: --lr-after %s: '%s' is not a learning rate (a number from 0 to 1e6)", item, eq + 1);
        int k = t->n_lr_after;
        while (k > 0 && t->lr_after[k - 1].after > after) {
            t->lr_after[k] = t->lr_after[k - 1];
            k--;
        }
        if (k > 0 && t->lr_after[k - 1].after == after)
            return jv_fail("train: --lr-after %s: epoch %.0f is given twice", item, after);
        t->lr_after[k] = (struct lr_change){(int)after, lr};
        t->n_lr_after++;
    }
    return 0;
}

/* Adam's learning rate in epoch `epoch` (1 for the first): --lr, then the
 * last --lr-after whose epoch count is behind it. */
static double lr_in_epoch(const trainer *t, int64_t epoch)
{
    double lr = t->o.lr;
    for (int i = 0; i < t->n_lr_after && epoch > t->lr_after[i].after; i++)
        lr = t->lr_after[i].lr;
    return lr;
}

static int parse_hypers(trainer *t)
{
    size_t n = (size_t)t->m->n_hypers;
    t->hypers = malloc((n ? n : 1) * sizeof *t->hypers);
    if (!t->hypers)
        return jv_fail("out of memory");
    if (n)
        memcpy(t->hypers, t->m->hypers, n * sizeof *t->hypers);
    for (int i = 0; i < t->o.hyper.n; i++)
        if (apply_hyper(t, t->o.hyper.item[i]) != 0)
            return 1;
    return 0;
}

/* --------------------------------------------------------------- state -- */

static void binarize_thresholds(trainer *t)
{
    for (int k = 0; k < t->m->n_modalities; k++) {
        if (t->binarize[k] != BIN_THRESHOLD)
            continue;
        jv_matrix *x = &t->ds.mod[k];
        for (size_t i = 0; i < x->n * x->dim; i++)
            x->x[i] = x->x[i] > 0.5f ? 1.0f : 0.0f;
    }
}

/* The seeded permutation that puts the validation examples last. */
static int make_split(trainer *t)
{
    size_t n = t->ds.n;
    if ((size_t)t->o.valid >= n)
        return jv_fail("train: --valid %d leaves no training examples (the data holds %zu)", t->o.valid, n);
    t->split = malloc(n * sizeof *t->split);
    t->order = malloc(n * sizeof *t->order);
    if (!t->split || !t->order)
        return jv_fail("out of memory");
    for (size_t i = 0; i < n; i++)
        t->split[i] = i;
    jv_rng rng = {t->o.seed, jv_stream_id(JV_TAG_SPLIT, 0, 0), 0};
    jv_rng_shuffle(&rng, t->split, n);
    t->n_valid = (size_t)t->o.valid;
    t->n_train = n - t->n_valid;
    return 0;
}

/* The fraction of the training examples each modality is hidden in:
 * --drop NAME=P, else the --resume checkpoint's (which records the run's
 * own), so that a resumed run trains on the same examples; the same for
 * --complete-only. Another --drop than the checkpoint's is the user's
 * choice, and said. The result goes into every checkpoint; *kept: the
 * modalities whose drop is the checkpoint's. */
static int choose_drops(trainer *t, unsigned *kept)
{
    const jv_model *m = t->m;
    unsigned given = 0;
    for (int i = 0; i < t->o.drop.n; i++) {
        const char *value = NULL;
        int k = jv_modality_option(m, "train", "drop", t->o.drop.item[i], &given, &value);
        if (k < 0)
            return 1;
        char *end = NULL;
        double p = strtod(value, &end);
        if (end == value || *end || !(p >= 0 && p < 1))
            return jv_fail("train: --drop %s= expects a fraction in [0, 1), got '%s'", m->modalities[k].name,
                           value);
        if (t->o.resume && p != t->ck.drop[k] && t->lead)
            printf("note: --drop %s=%g, where %s was trained with --drop %s=%g: the run goes on with other "
                   "examples than its own\n", m->modalities[k].name, p, t->o.resume, m->modalities[k].name,
                   t->ck.drop[k]);
        t->ck.drop[k] = p;
    }
    *kept = t->o.resume ? ~given : 0;
    if (t->o.resume && t->ck.complete_only && !t->o.complete_only && t->lead)
        printf("--complete-only: as in the run of %s\n", t->o.resume);
    if (t->o.resume && !t->ck.complete_only && t->o.complete_only && t->lead)
        printf("note: --complete-only, where %s was trained on every example: the run goes on with fewer\n",
               t->o.resume);
    t->o.complete_only |= t->ck.complete_only;
    t->ck.complete_only = t->o.complete_only;
    return 0;
}

/* Each modality hidden in round(P n_train) training examples (P its drop
 * fraction; fewer when not enough of them have it and another modality),
 * taken in the order of a seeded permutation; the validation examples keep
 * theirs. */
static int apply_drops(trainer *t)
{
    const jv_model *m = t->m;
    unsigned kept = 0;
    if (choose_drops(t, &kept) != 0)
        return 1;
    for (int k = 0; k < m->n_modalities; k++) {
        double p = t->ck.drop[k];
        if (p == 0)
            continue;
        size_t want = (size_t)llround(p * (double)t->n_train), done = 0;
        size_t *pick = malloc((t->n_train ? t->n_train : 1) * sizeof *pick);
        if (!pick)
            return jv_fail("out of memory");
        memcpy(pick, t->split, t->n_train * sizeof *pick);
        jv_rng rng = {t->o.seed, jv_stream_id(JV_TAG_DROP, (unsigned)k, 0), 0};
        jv_rng_shuffle(&rng, pick, t->n_train);
        int failed = 0;
        for (size_t j = 0; j < t->n_train && done < want && !failed; j++) {
            unsigned o = jv_observed(&t->ds, pick[j]);
            if ((o >> k & 1u) && (o & ~(1u << k))) {
                failed = jv_dataset_hide(&t->ds, k, pick[j]) != 0;
                done++;
            }
        }
        free(pick);
        if (failed)
            return jv_fail("out of memory");
        if (t->lead)
            printf("--drop %s=%g: %s hidden in %zu of the %zu training examples%s%s%s\n", m->modalities[k].name, p,
                   m->modalities[k].name, done, t->n_train,
                   done < want ? " (every other one lacks it or has nothing else)" : "",
                   kept >> k & 1u ? ", as it was in the run of " : "", kept >> k & 1u ? t->o.resume : "");
    }
    return 0;
}

/* Counts the training and validation examples by observed subset, and
 * gives each example the step of what it observes; examples of a subset
 * that contributes nothing to the loss are refused. */
static int check_observed(trainer *t)
{
    const jv_model *m = t->m;
    unsigned all = (1u << m->n_modalities) - 1;
    if (t->o.complete_only) { /* the training examples that lack a modality leave; validation keeps its own */
        size_t kept = 0, before = t->n_train;
        for (size_t j = 0; j < t->n_train; j++)
            if (jv_observed(&t->ds, t->split[j]) == all)
                t->split[kept++] = t->split[j];
        memmove(t->split + kept, t->split + t->n_train, t->n_valid * sizeof *t->split);
        t->n_train = kept;
        if (kept == 0)
            return jv_fail("train: --complete-only leaves no training example: each of the %zu lacks a modality",
                           before);
        if (t->lead)
            printf("--complete-only: training on the %zu complete examples of the %zu training examples\n", kept,
                   before);
    }
    if (t->lead) {
        jv_dataset_print_subsets(m, &t->ds, "training examples", t->split, t->n_train);
        jv_dataset_print_subsets(m, &t->ds, "validation examples", t->split + t->n_train, t->n_valid);
    }
    if (!jv_dataset_incomplete(&t->ds, t->split, t->n_train + t->n_valid))
        return 0;
    if (!m->incomplete)
        return jv_fail("train: some examples lack a modality; model %s has %d modalities, and jmvaec derives the "
                       "loss of incomplete examples for at most 5", m->name, m->n_modalities);
    t->step_of = malloc(t->ds.n * sizeof *t->step_of);
    if (!t->step_of)
        return jv_fail("out of memory");
    for (size_t i = 0; i < t->ds.n; i++) {
        unsigned o = jv_observed(&t->ds, i);
        int step = o == all ? 0 : -1;
        for (int k = 0; k < m->n_subset_steps && step < 0; k++)
            step = m->subset_steps[k].observed == o ? k + 1 : -1;
        t->step_of[i] = step;
    }
    for (size_t j = 0; j < t->n_train + t->n_valid; j++) {
        size_t i = t->split[j];
        if (t->step_of[i] >= 0)
            continue;
        size_t count = 0;
        for (size_t q = 0; q < t->n_train + t->n_valid; q++)
            count += jv_observed(&t->ds, t->split[q]) == jv_observed(&t->ds, i);
        char names[256];
        jv_subset_name(m, jv_observed(&t->ds, i), names, sizeof names);
        return jv_fail("train: examples that observe only %s (%zu of them) contribute nothing to the loss of model "
                       "%s: every term of its loss reads a modality they lack (jmvaec --emit=model SPEC shows what "
                       "each subset keeps); leave them out, or complete them", names, count, m->name);
    }
    t->incomplete = 1;
    return 0;
}

/* Fresh parameters from the seed, or the --resume checkpoint. */
static int load_state(trainer *t)
{
    if (!t->o.resume) {
        if (jv_checkpoint_alloc(t->m, &t->ck) != 0)
            return 1;
        t->m->init(t->ck.params, t->o.seed);
        t->ck.rng_seed = t->o.seed;
        return 0;
    }
    if (jv_checkpoint_read(t->m, t->o.resume, &t->ck) != 0)
        return 1;
    if (t->seed_given && t->o.seed != t->ck.rng_seed)
        return jv_fail("train: --seed %llu differs from the seed %llu of %s", (unsigned long long)t->o.seed,
                       (unsigned long long)t->ck.rng_seed, t->o.resume);
    t->o.seed = t->ck.rng_seed;
    if (t->ck.epoch > t->o.epochs)
        return jv_fail("train: %s is already at epoch %lld, beyond --epochs %d", t->o.resume,
                       (long long)t->ck.epoch, t->o.epochs);
    if (t->ck.batches > 0 && t->ck.epoch == t->o.epochs)
        return jv_fail("train: %s stopped within epoch %lld, beyond --epochs %d", t->o.resume,
                       (long long)t->ck.epoch + 1, t->o.epochs);
    if (t->ck.batches > 0 && t->ck.n_sums != t->m->n_terms + 1)
        return jv_fail("train: %s: its progress holds %d sums, model %s has %d terms", t->o.resume, t->ck.n_sums,
                       t->m->name, t->m->n_terms);
    return 0;
}

/* The groups of a part that run side by side: one on one thread; with
 * more, as many as there are steps, up to JV_GRAPHS_MAX. Each has its own
 * gradient, but the first uses its part's when every step fits. */
static int alloc_side(trainer *t)
{
    const jv_model *m = t->m;
    int steps = t->incomplete ? m->n_subset_steps + 1 : 1;
    t->n_side = jv_team_size(t->team) == 1 ? 1 : steps < JV_GRAPHS_MAX ? steps : JV_GRAPHS_MAX;
    t->side = calloc((size_t)t->n_side, sizeof *t->side);
    if (!t->side)
        return jv_fail("out of memory");
    for (int k = 0; k < t->n_side; k++) {
        group_slot *g = &t->side[k];
        g->scale = calloc(2 * ((size_t)m->n_terms + 1), sizeof *g->scale);
        g->data = calloc((size_t)m->n_modalities + 1, sizeof *g->data);
        g->noise = calloc((size_t)m->n_draws + 1, sizeof *g->noise);
        if (k > 0 || steps > t->n_side)
            g->grads = jv_alloc_large((m->n_params ? m->n_params : 1) * sizeof *g->grads, 1);
        if (!g->scale || !g->data || !g->noise || (!g->grads && (k > 0 || steps > t->n_side)))
            return jv_fail("out of memory for the gradients of %d groups of examples", t->n_side);
        g->terms = g->scale + m->n_terms + 1;
    }
    return 0;
}

/* The parts of a batch, the tree that sums their gradients, and the
 * layout of the record every process sends after a step. */
static int alloc_chunks(trainer *t)
{
    const jv_model *m = t->m;
    jv_reducer *r = &t->red;
    if (jv_reducer_init(r, m->n_params, t->o.chunks, t->rank, t->ranks) != 0)
        return 1;
    size_t P = (size_t)t->ranks, per_part = 1 + (size_t)m->n_terms, total = 0;
    t->rec_bytes = calloc(P, sizeof *t->rec_bytes);
    t->rec_displs = calloc(P, sizeof *t->rec_displs);
    t->seg_bytes = calloc(P, sizeof *t->seg_bytes);
    t->seg_displs = calloc(P, sizeof *t->seg_displs);
    t->block_sumsq = calloc(r->n_blocks + 1, sizeof *t->block_sumsq);
    if (alloc_side(t) != 0)
        return 1;
    if (!t->rec_bytes || !t->rec_displs || !t->seg_bytes ||
        !t->seg_displs || !t->block_sumsq)
        return jv_fail("out of memory");
    for (int p = 0; p < t->ranks; p++) {
        size_t parts = (size_t)(r->first_of[p + 1] - r->first_of[p]);
        size_t n = parts * per_part + 2 + (r->blk_hi[p] - r->blk_lo[p]);
        t->rec_displs[p] = total * sizeof(double);
        t->rec_bytes[p] = n * sizeof(double);
        total += n;
        t->seg_displs[p] = r->seg_lo[p] * sizeof(jv_real);
        t->seg_bytes[p] = (r->seg_hi[p] - r->seg_lo[p]) * sizeof(jv_real);
    }
    t->rec = calloc(total, sizeof *t->rec);
    if (!t->rec)
        return jv_fail("out of memory");
    if (!t->incomplete)
        return 0;
    t->grouped = calloc((size_t)t->w.cap + 1, sizeof *t->grouped);
    t->subset_runners = calloc((size_t)m->n_subset_steps + 1, sizeof *t->subset_runners);
    if (!t->grouped || !t->subset_runners)
        return jv_fail("out of memory");
    for (int k = 0; k < m->n_subset_steps; k++) {
        jv_error err;
        t->subset_runners[k] = jv_graph_runner_new(m->subset_steps[k].train, &err);
        if (!t->subset_runners[k])
            return jv_fail("%s", err.msg);
    }
    return 0;
}

static int alloc_buffers(trainer *t)
{
    int cap = (size_t)t->o.batch < t->ds.n ? t->o.batch : (int)t->ds.n;
    if (jv_work_alloc(t->m, cap, &t->w) != 0)
        return 1;
    t->grads = jv_alloc_large((t->m->n_params ? t->m->n_params : 1) * sizeof *t->grads, 1);
    t->sums = calloc(3 * ((size_t)t->m->n_terms + 1), sizeof *t->sums); /* train, valid, scratch */
    t->sumsq = calloc((size_t)t->m->train->n_slots + 1, sizeof *t->sumsq);
    if (!t->grads || !t->sums || !t->sumsq)
        return jv_fail("out of memory for %zu gradients", t->m->n_params);
    jv_error err;
    t->runner = jv_graph_runner_new(t->m->train, &err);
    if (!t->runner)
        return jv_fail("%s", err.msg);
    const jv_train_defaults *d = &t->m->defaults;
    t->adam = (jv_adam_config){t->o.lr, d->beta1, d->beta2, d->eps, t->o.clip};
    return t->chunked ? alloc_chunks(t) : 0;
}

static void free_trainer(trainer *t)
{
    jv_dataset_free(t->m, &t->ds);
    jv_work_free(&t->w);
    jv_checkpoint_release(&t->ck);
    jv_buf_free(&t->csv);
    free(t->binarize);
    free(t->hypers);
    free(t->lr_after);
    free(t->split);
    free(t->order);
    free(t->grads);
    free(t->run_dir);
    free(t->sums);
    free(t->sumsq);
    jv_graph_runner_free(t->runner);
    for (int k = 0; t->subset_runners && k < t->m->n_subset_steps; k++)
        jv_graph_runner_free(t->subset_runners[k]);
    free(t->subset_runners);
    free(t->step_of);
    free(t->grouped);
    jv_team_free(t->team);
    jv_reducer_free(&t->red);
    for (int k = 0; t->side && k < t->n_side; k++) {
        free(t->side[k].scale);
        free(t->side[k].data);
        free(t->side[k].noise);
        free(t->side[k].grads);
    }
    free(t->side);
    free(t->rec);
    free(t->rec_bytes);
    free(t->rec_displs);
    free(t->block_sumsq);
    free(t->seg_bytes);
    free(t->seg_displs);
}

/* ------------------------------------------------------------- run dir -- */

/* RUNDIR/name into buf; 1 (after the message) if it does not fit. */
static int run_path(const trainer *t, const char *name, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", t->run_dir, name);
    return n < 0 || (size_t)n >= size ? jv_fail("train: the path %s/%s is too long", t->run_dir, name) : 0;
}

static int choose_run_dir(trainer *t)
{
    const char *dir = t->o.out ? t->o.out : "run";
    size_t len = strlen(dir);
    if (!t->o.out && t->o.resume) {
        const char *slash = strrchr(t->o.resume, '/');
        dir = slash ? t->o.resume : ".";
        len = slash ? (size_t)(slash - t->o.resume) + (slash == t->o.resume) : 1;
    }
    if (len == 0)
        return jv_fail("train: --out needs a folder name");
    t->run_dir = strndup(dir, len);
    return t->run_dir ? 0 : jv_fail("out of memory");
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void csv_header(trainer *t)
{
    jv_buf_printf(&t->csv, "epoch,step");
    for (int pass = 0; pass < 2; pass++) {
        const char *set = pass ? "valid" : "train";
        jv_buf_printf(&t->csv, ",%s_loss", set);
        for (int i = 0; i < t->m->n_terms; i++)
            jv_buf_printf(&t->csv, ",%s_%s", set, t->m->term_names[i]);
    }
    jv_buf_printf(&t->csv, ",seconds\n");
}

/* Keeps the rows of an existing train.csv up to the resumed epoch, after
 * checking that it was written for the same terms. */
static int keep_csv_rows(trainer *t, const char *path)
{
    unsigned char *text;
    size_t size;
    int gz;
    jv_error err;
    if (jv_read_file(path, &text, &size, &gz, &err) != 0)
        return jv_fail("%s", err.msg);
    size_t head = t->csv.len;
    int rc = 0;
    if (size < head || memcmp(text, t->csv.data, head) != 0)
        rc = jv_fail("train: %s has other columns than this model's log; move it away or pick another --out",
                     path);
    for (const char *line = (const char *)text + head; rc == 0 && *line;) {
        const char *next = strchr(line, '\n');
        size_t n = next ? (size_t)(next - line) + 1 : strlen(line);
        if (strtoll(line, NULL, 10) <= t->ck.epoch)
            jv_buf_put(&t->csv, line, n);
        line += n;
    }
    free(text);
    return rc;
}

static int only_a_header(trainer *t, const char *path);

/* Decides what train.csv will hold, refusing to start a fresh run over an old one. */
static int prepare_run_dir(trainer *t)
{
    char csv[4096], last[4096];
    if (choose_run_dir(t) != 0 || run_path(t, "train.csv", csv, sizeof csv) != 0 ||
        run_path(t, "last.ckpt", last, sizeof last) != 0)
        return 1;
    csv_header(t);
    if (t->o.resume)
        return file_exists(csv) ? keep_csv_rows(t, csv) : 0;
    if (file_exists(last) || (file_exists(csv) && !only_a_header(t, csv)))
        return jv_fail("train: %s already holds a run (%s); pick another --out, or continue it with --resume",
                       t->run_dir, file_exists(last) ? "last.ckpt" : "train.csv");
    return 0; /* a run stopped before its first checkpoint left only train.csv's header: start again */
}

/* train.csv exactly as a fresh run of this model begins it: the header alone. */
static int only_a_header(trainer *t, const char *path)
{
    unsigned char *text;
    size_t size;
    int gz;
    jv_error err;
    if (jv_read_file(path, &text, &size, &gz, &err) != 0)
        return 0;
    int same = !gz && size == t->csv.len && memcmp(text, t->csv.data, size) == 0;
    free(text);
    return same;
}

/* Temporary files of checkpoints and logs whose writer was killed mid-write
 * ("<name>.tmp.<pid>" of a process that is gone): they go. */
static void remove_stale_temporaries(const trainer *t)
{
    DIR *d = opendir(t->run_dir);
    if (!d)
        return;
    static const char *const names[] = {"last.ckpt.tmp.", "train.csv.tmp."};
    for (struct dirent *ent; (ent = readdir(d));)
        for (int i = 0; i < 2; i++) {
            size_t n = strlen(names[i]);
            if (strncmp(ent->d_name, names[i], n) != 0)
                continue;
            char *end;
            long pid = strtol(ent->d_name + n, &end, 10);
            if (*end || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
                char path[4096];
                if (snprintf(path, sizeof path, "%s/%s", t->run_dir, ent->d_name) < (int)sizeof path && *end == 0 &&
                    pid > 0)
                    remove(path);
            }
        }
    closedir(d);
}

static int save_csv(trainer *t)
{
    char path[4096];
    int rc = !t->lead ? 0 : run_path(t, "train.csv", path, sizeof path) != 0 ? 1 : jv_buf_save(&t->csv, path);
    return jv_comm_max(rc);
}

/* Written by process 0, after the moments of every segment have come to
 * it; every process returns its result. */
static int save_checkpoint(trainer *t, const char *name)
{
    char path[4096];
    jv_error err;
    double start = jv_now();
    if (t->ranks > 1 && t->moments_at != t->ck.step) { /* last.ckpt and epoch-N.ckpt of one step: once */
        jv_comm_gather0(t->ck.m, t->seg_bytes, t->seg_displs);
        jv_comm_gather0(t->ck.v, t->seg_bytes, t->seg_displs);
        t->moments_at = t->ck.step;
    }
    int rc = 0;
    if (t->lead && run_path(t, name, path, sizeof path) != 0)
        rc = 1;
    else if (t->lead && jv_checkpoint_save(path, t->m, &t->ck, &err) != 0)
        rc = jv_fail("%s", err.msg);
    rc = jv_comm_max(rc);
    t->ckpt_seconds += jv_now() - start;
    return rc;
}

/* --------------------------------------------------------------- steps -- */

/* Set by SIGINT or SIGTERM (see catch_stop_signals). */
static volatile sig_atomic_t stop_signal;

/* One batch's data and noise, rows split among the team. */
typedef struct {
    trainer *t;
    const size_t *idx;
    int from, to;           /* the rows to prepare (this process's parts of the batch) */
    batch_key key;
} batch_job;

static void prepare_rows(void *arg, int id, int n)
{
    const batch_job *j = arg;
    trainer *t = j->t;
    const jv_model *m = t->m;
    size_t lo, hi;
    jv_split_range((size_t)(j->to - j->from), 1, id, n, &lo, &hi);
    lo += (size_t)j->from;
    hi += (size_t)j->from;
    if (lo == hi)
        return;
    jv_work_gather_rows(m, &t->w, &t->ds, j->idx, (int)lo, (int)hi);
    for (int k = 0; k < m->n_modalities; k++) {
        if (t->binarize[k] != BIN_RESAMPLE)
            continue;
        /* each target redrawn as 1 with probability its grey level; the uniforms go
         * through w->out, unused while training */
        size_t size = (size_t)m->modalities[k].size, first = lo * size, count = (hi - lo) * size;
        jv_rng rng = {t->o.seed, jv_stream_id(j->key.binarize_tag, (unsigned)k, j->key.index), first};
        jv_real *u = t->w.out[k] + first, *x = t->w.data[k] + first;
        jv_rng_fill_uniform(&rng, u, count);
        for (size_t i = 0; i < count; i++)
            x[i] = u[i] < x[i] ? 1.0f : 0.0f;
    }
    jv_work_fill_step_noise_at(m, &t->w, (int)lo, (int)(hi - lo), t->o.seed, j->key.noise_tag, j->key.index, lo);
}

/* Gathers rows [from, to) of a batch, draws their randomness and sets the
 * weights; returns the step's arguments for the whole batch. */
static jv_step prepare_rows_of(trainer *t, const size_t *idx, int batch, int from, int to, batch_key key,
                               double progress, jv_real *loss)
{
    const jv_model *m = t->m;
    jv_work *w = &t->w;
    batch_job job = {t, idx, from, to, key};
    jv_team_run(t->team, prepare_rows, &job);
    jv_work_zero_inputs(m, w, 0);
    for (int i = 0; i < m->n_hypers; i++)
        w->hyper[i] = (jv_real)jv_hyper_value(&t->hypers[i], progress);
    *loss = 0;
    return (jv_step){t->ck.params, t->grads, w->arena, batch, JV_CONST_ROWS(w->data), JV_CONST_ROWS(w->noise),
                     w->hyper, NULL, w->terms, loss, t->sumsq, 0};
}

static jv_step prepare_batch(trainer *t, const size_t *idx, int batch, batch_key key, double progress,
                             jv_real *loss)
{
    return prepare_rows_of(t, idx, batch, 0, batch, key, progress, loss);
}

static const char *nonfinite_word(double x)
{
    return isnan(x) ? "NaN" : "infinite";
}

/* Stops the run on a NaN or infinite loss or term. */
static int check_finite(trainer *t, int64_t step, jv_real loss)
{
    for (int i = 0; i < t->m->n_terms; i++) {
        if (!isfinite(t->w.terms[i])) {
            jv_progress_clear(&t->bar);
            return jv_fail("step %lld: term '%s' is %s; stopping, last checkpoint kept", (long long)step,
                           t->m->term_names[i], nonfinite_word(t->w.terms[i]));
        }
    }
    if (isfinite(loss))
        return 0;
    jv_progress_clear(&t->bar);
    return jv_fail("step %lld: the loss is %s; stopping, last checkpoint kept", (long long)step,
                   nonfinite_word(loss));
}

static void add_to_sums(double *sums, jv_real loss, const jv_real *terms, int n_terms, int batch)
{
    sums[0] += (double)loss * batch;
    for (int i = 0; i < n_terms; i++)
        sums[1 + i] += (double)terms[i] * batch;
}

/* Adam on the team: each member a range of the parameters, cut at 64 bytes. */
typedef struct {
    trainer *t;
    long step;
    double scale;
    const jv_real *grads;
    size_t first, end;      /* the parameters to update */
} adam_job;

static void adam_rows(void *arg, int id, int n)
{
    const adam_job *j = arg;
    trainer *t = j->t;
    size_t lo, hi;
    jv_split_range(j->end - j->first, 16, id, n, &lo, &hi);
    if (lo < hi)
        jv_adam_update(&t->adam, t->ck.params, j->grads, t->ck.m, t->ck.v, j->first + lo, j->first + hi, j->step,
                       j->scale);
}

/* Applies the last step's Adam update, if it is still pending. */
static void flush_adam(trainer *t)
{
    if (!t->adam_pending)
        return;
    adam_job job = {t, t->pending_step, t->pending_scale, t->grads, 0, t->m->n_params};
    jv_team_run(t->team, adam_rows, &job);
    t->adam_pending = 0;
}

/* Stops the run on a NaN or infinite loss, term or gradient norm (the
 * square root of sumsq, into *norm). */
static int check_step(trainer *t, int64_t step, jv_real loss, double sumsq, double *norm)
{
    if (check_finite(t, step, loss) != 0)
        return 1;
    *norm = sqrt(sumsq);
    if (isfinite(*norm))
        return 0;
    jv_progress_clear(&t->bar);
    return jv_fail("step %lld: the gradient norm is %s; stopping, last checkpoint kept", (long long)step,
                   nonfinite_word(*norm));
}

/* One step: the previous step's Adam update runs inside this step's graph,
 * each region just before the tasks that need it, which fills the threads'
 * idle moments and finds the parameters in cache; the result is the same
 * bits as updating first. This step's own update waits for the next step,
 * or for flush_adam before anything reads the parameters. */
static int train_step(trainer *t, const size_t *idx, int batch, double progress)
{
    const jv_model *m = t->m;
    int64_t step = t->ck.step + 1;
    batch_key key = {JV_TAG_NOISE, JV_TAG_BINARIZE, (uint64_t)step};
    jv_real loss;
    jv_step s = prepare_batch(t, idx, batch, key, progress, &loss);
    jv_adam_pass pending = {&t->adam, t->ck.params, t->grads, t->ck.m, t->ck.v, t->pending_step, t->pending_scale};
    jv_team_run_graph(t->team, t->runner, &s, 0, t->adam_pending ? &pending : NULL);
    t->adam_pending = 0;
    double sumsq = 0, norm; /* in the emitted order of the regions: the same for every thread count */
    for (int k = 0; k < m->train->n_slots; k++)
        sumsq += t->sumsq[k];
    if (check_step(t, step, loss, sumsq, &norm) != 0)
        return 1;
    t->adam_pending = 1;
    t->pending_step = (long)step;
    t->pending_scale = jv_clip_factor(t->adam.clip, norm);
    t->ck.step = step;
    add_to_sums(t->sums, loss, t->w.terms, m->n_terms, batch);
    return 0;
}

/* ------------------------------------------------------ steps in parts -- */

typedef struct {
    trainer *t;
    int batch;
    const size_t *idx;      /* the batch's examples, as gathered */
} chunk_job;

/* The batch with the examples of each of `parts` parts grouped by step
 * (the complete examples' first, then each subset's in the model's order;
 * in batch order within a group), so that each group is one run of rows;
 * the batch itself when every example is complete. */
static const size_t *group_batch(trainer *t, const size_t *idx, int batch, int parts)
{
    if (!t->incomplete)
        return idx;
    for (int c = 0; c < parts; c++) {
        size_t lo, hi, at;
        jv_split_range((size_t)batch, 1, c, parts, &lo, &hi);
        at = lo;
        for (int step = 0; step <= t->m->n_subset_steps; step++)
            for (size_t i = lo; i < hi; i++)
                if (t->step_of[idx[i]] == step)
                    t->grouped[at++] = idx[i];
    }
    return t->grouped;
}

/* to += from, on the team. */
typedef struct {
    jv_real *to;
    const jv_real *from;
    size_t n;
} add_job;

static void add_rows(void *arg, int id, int n)
{
    const add_job *j = arg;
    size_t lo, hi;
    jv_split_range(j->n, 16, id, n, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        j->to[i] += j->from[i];
}

/* Rows [lo, hi) of the gathered batch (idx), grouped by group_batch: each
 * group through its step, every term weighted by the group's share of the
 * batch; forward only, or with the gradient into grads (the groups' summed
 * in group order). The groups run side by side, as many at once as there
 * are slots, each in its rows' place of the arena. Returns the loss;
 * terms[i] gets the groups' weighted terms summed. */
static jv_real run_groups(trainer *t, const size_t *idx, int batch, size_t lo, size_t hi, jv_real *grads,
                          int forward_only, double *terms)
{
    const jv_model *m = t->m;
    double loss = 0;
    for (int i = 0; i < m->n_terms; i++)
        terms[i] = 0;
    for (size_t a = lo, b; a < hi;) {
        jv_graph_runner *runners[JV_GRAPHS_MAX];
        const jv_step *steps[JV_GRAPHS_MAX];
        int n = 0;
        for (; a < hi && n < t->n_side; a = b, n++) {
            int step = t->incomplete ? t->step_of[idx[a]] : 0;
            for (b = a + 1; b < hi && (t->incomplete ? t->step_of[idx[b]] : 0) == step;)
                b++;
            group_slot *g = &t->side[n];
            g->share = (double)(b - a) / (double)batch;
            for (int i = 0; i < m->n_terms; i++)
                g->scale[i] = (jv_real)g->share;
            for (int k = 0; k < m->n_modalities; k++)
                g->data[k] = t->w.data[k] + a * (size_t)m->modalities[k].size;
            for (int d = 0; d < m->n_draws; d++)
                g->noise[d] = t->w.noise[d] + a * (size_t)jv_samples(m) * (size_t)m->latents[m->draw_latents[d]].size;
            g->loss = 0;
            g->s = (jv_step){t->ck.params, a == lo ? grads : g->grads, t->w.arena + (a - lo) * m->arena_per_example,
                             (int)(b - a), g->data, g->noise, t->w.hyper, g->scale, g->terms, &g->loss, NULL, 0};
            runners[n] = step ? t->subset_runners[step - 1] : t->runner;
            steps[n] = &g->s;
        }
        jv_team_run_graphs(t->team, n, runners, steps, forward_only);
        for (int k = 0; k < n; k++) { /* in group order */
            const group_slot *g = &t->side[k];
            if (!forward_only && g->s.grads != grads) {
                add_job add = {grads, g->s.grads, m->n_params};
                jv_team_run(t->team, add_rows, &add);
            }
            loss += (double)g->loss;
            for (int i = 0; i < m->n_terms; i++)
                terms[i] += g->share * (double)g->terms[i];
        }
    }
    return (jv_real)loss;
}

/* This process's record of the step in progress. */
static double *my_record(const trainer *t)
{
    return t->rec + t->rec_displs[t->rank] / sizeof(double);
}

/* Part c's gradient: its rows alone through the step graph, every term
 * weighted by the part's share of the batch; its loss and terms go to
 * this process's record. An empty part (a batch of fewer rows than parts)
 * gives zeros. */
static void run_chunk(void *arg, int c, jv_real *grads)
{
    const chunk_job *j = arg;
    trainer *t = j->t;
    const jv_model *m = t->m;
    size_t lo, hi, per_part = 1 + (size_t)m->n_terms;
    jv_split_range((size_t)j->batch, 1, c, t->red.chunks, &lo, &hi);
    double *rec = my_record(t) + (size_t)(c - t->red.first_of[t->rank]) * per_part;
    if (lo == hi) {
        memset(grads, 0, m->n_params * sizeof *grads);
        memset(rec, 0, per_part * sizeof *rec);
        return;
    }
    rec[0] = (double)run_groups(t, j->idx, j->batch, lo, hi, grads, 0, rec + 1);
}

/* A step in parts, on every process: the parts' gradients summed along the
 * tree, the records exchanged (loss and terms summed in part order, the
 * norm in block order, the stop and save decisions), Adam on this
 * process's segment, and the segments' parameters exchanged. */
static int train_step_chunked(trainer *t, const size_t *idx, int batch, double progress)
{
    const jv_model *m = t->m;
    jv_reducer *r = &t->red;
    int64_t step = t->ck.step + 1;
    batch_key key = {JV_TAG_NOISE, JV_TAG_BINARIZE, (uint64_t)step};
    int p0 = r->first_of[t->rank], p1 = r->first_of[t->rank + 1];
    size_t from, end, unused_end, unused_from; /* the rows of this process's parts */
    jv_split_range((size_t)batch, 1, p0, r->chunks, &from, &unused_end);
    jv_split_range((size_t)batch, 1, p1 - 1, r->chunks, &unused_from, &end);
    jv_real unused;
    idx = group_batch(t, idx, batch, r->chunks);
    prepare_rows_of(t, idx, batch, (int)from, (int)end, key, progress, &unused);
    chunk_job job = {t, batch, idx};
    jv_real *g = jv_reducer_run(r, run_chunk, &job);
    size_t per_part = 1 + (size_t)m->n_terms;
    double *rec = my_record(t) + (size_t)(p1 - p0) * per_part;
    rec[0] = (double)stop_signal;
    rec[1] = t->lead && t->o.ckpt_minutes > 0 && jv_now() - t->last_save > 60 * t->o.ckpt_minutes;
    for (size_t b = r->blk_lo[t->rank]; b < r->blk_hi[t->rank]; b++) {
        size_t first = b * JV_NORM_BLOCK, n = m->n_params - first < JV_NORM_BLOCK ? m->n_params - first : JV_NORM_BLOCK;
        rec[2 + b - r->blk_lo[t->rank]] = jv_sumsq(g + first, n);
    }
    jv_comm_allgatherv(t->rec, t->rec_bytes, t->rec_displs);
    double loss = 0, sumsq = 0, *terms = t->sums + 2 * ((size_t)m->n_terms + 1); /* scratch after the sums */
    memset(terms, 0, (size_t)m->n_terms * sizeof *terms);
    t->agreed_stop = 0;
    for (int p = 0; p < t->ranks; p++) { /* in part order */
        const double *q = t->rec + t->rec_displs[p] / sizeof(double);
        int parts = r->first_of[p + 1] - r->first_of[p];
        for (int c = 0; c < parts; c++, q += per_part) {
            loss += q[0];
            for (int i = 0; i < m->n_terms; i++)
                terms[i] += q[1 + i];
        }
        t->agreed_stop = q[0] > t->agreed_stop ? (int)q[0] : t->agreed_stop;
        if (p == 0)
            t->agreed_save = q[1] != 0;
        memcpy(t->block_sumsq + r->blk_lo[p], q + 2, (r->blk_hi[p] - r->blk_lo[p]) * sizeof(double));
    }
    for (size_t b = 0; b < r->n_blocks; b++) /* in block order */
        sumsq += t->block_sumsq[b];
    for (int i = 0; i < m->n_terms; i++)
        t->w.terms[i] = (jv_real)terms[i];
    double norm;
    if (check_step(t, step, (jv_real)loss, sumsq, &norm) != 0)
        return 1;
    adam_job adam = {t, (long)step, jv_clip_factor(t->adam.clip, norm), g, r->seg_lo[t->rank], r->seg_hi[t->rank]};
    if (adam.first < adam.end)
        jv_team_run(t->team, adam_rows, &adam);
    jv_comm_allgatherv(t->ck.params, t->seg_bytes, t->seg_displs);
    t->ck.step = step;
    add_to_sums(t->sums, (jv_real)loss, t->w.terms, m->n_terms, batch);
    return 0;
}

/* The validation loss and terms (batch means weighted by size) into sums. */
static void validate(trainer *t, int64_t epoch, double *sums)
{
    const size_t *idx = t->split + t->n_train;
    size_t cap = (size_t)t->w.cap;
    for (size_t first = 0, b = 0; first < t->n_valid; first += cap, b++) {
        int batch = (int)(t->n_valid - first < cap ? t->n_valid - first : cap);
        batch_key key = {JV_TAG_VALID_NOISE, JV_TAG_VALID_BINARIZE, b};
        jv_real loss;
        if (t->incomplete) { /* each group of what its examples observe through its step */
            const size_t *grouped = group_batch(t, idx + first, batch, 1);
            prepare_batch(t, grouped, batch, key, (double)epoch, &loss);
            double *terms = t->sums + 2 * ((size_t)t->m->n_terms + 1); /* scratch after the sums */
            loss = run_groups(t, grouped, batch, 0, (size_t)batch, NULL, 1, terms);
            for (int i = 0; i < t->m->n_terms; i++)
                t->w.terms[i] = (jv_real)terms[i];
            add_to_sums(sums, loss, t->w.terms, t->m->n_terms, batch);
            continue;
        }
        jv_step s = prepare_batch(t, idx + first, batch, key, (double)epoch, &loss);
        jv_team_run_graph(t->team, t->runner, &s, 1, NULL);
        add_to_sums(sums, loss, t->w.terms, t->m->n_terms, batch);
    }
}

/* ------------------------------------------------------------- report -- */

/* " loss 1.23 (a 0.5, b 0.7)" from sums over n examples. */
static void format_means(const trainer *t, const double *sums, size_t n, char *buf, size_t size)
{
    size_t used = 0;
    for (int i = -1; i < t->m->n_terms && used < size; i++) {
        const char *name = i < 0 ? "loss" : t->m->term_names[i];
        const char *sep = i < 0 ? "" : i == 0 ? " (" : ", ";
        int k = snprintf(buf + used, size - used, "%s%s %.4f", sep, name, sums[1 + i] / (double)n);
        used += k > 0 ? (size_t)k : 0;
    }
    if (t->m->n_terms > 0 && used < size)
        snprintf(buf + used, size - used, ")");
}

static void draw_bar(trainer *t, int64_t epoch, size_t done)
{
    if (!t->bar.tty)
        return;
    double elapsed = jv_now() - t->run_start;
    double seen = (double)(epoch - t->first_epoch) * (double)t->n_train + (double)done;
    double left = (double)(t->o.epochs - epoch) * (double)t->n_train + (double)(t->n_train - done);
    double rate = elapsed > 0 ? seen / elapsed : 0;
    char eta[32], means[512];
    jv_format_duration(rate > 0 ? left / rate : 0, eta, sizeof eta);
    format_means(t, t->sums, done, means, sizeof means);
    jv_progress_draw(&t->bar, 0, "epoch %lld/%d %3.0f%%  ETA %s  %.0f ex/s  %s", (long long)epoch, t->o.epochs,
                     100.0 * (double)done / (double)t->n_train, eta, rate, means);
}

static void csv_number(jv_buf *b, double x)
{
    if (isfinite(x))
        jv_buf_printf(b, ",%.9g", x);
    else
        jv_buf_printf(b, ",nan");
}

static void log_epoch(trainer *t, int64_t epoch, const double *valid, double seconds)
{
    char means[512], vmeans[512] = "";
    format_means(t, t->sums, t->n_train, means, sizeof means);
    if (t->n_valid)
        format_means(t, valid, t->n_valid, vmeans, sizeof vmeans);
    jv_progress_clear(&t->bar);
    printf("epoch %lld/%d  step %lld  %s%s%s  %.2f s\n", (long long)epoch, t->o.epochs, (long long)t->ck.step,
           means, t->n_valid ? "  valid " : "", vmeans, seconds);
    fflush(stdout);
    jv_buf_printf(&t->csv, "%lld,%lld", (long long)epoch, (long long)t->ck.step);
    for (int i = 0; i <= t->m->n_terms; i++)
        csv_number(&t->csv, t->sums[i] / (double)t->n_train);
    for (int i = 0; i <= t->m->n_terms; i++) {
        if (t->n_valid)
            csv_number(&t->csv, valid[i] / (double)t->n_valid);
        else
            jv_buf_printf(&t->csv, ",");
    }
    jv_buf_printf(&t->csv, ",%.3f\n", seconds);
}

/* -------------------------------------------------------------- epochs -- */

/* SIGINT or SIGTERM asks the run to stop after the current step. The
 * handlers are reset when they fire, so a second signal ends the program
 * at once (the checkpoint on disk is then the previous one, still whole). */
static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

typedef struct {
    struct sigaction intr, term;
} saved_handlers;

static void catch_stop_signals(saved_handlers *saved)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &saved->intr);
    sigaction(SIGTERM, &sa, &saved->term);
}

static void restore_signals(const saved_handlers *saved)
{
    sigaction(SIGINT, &saved->intr, NULL);
    sigaction(SIGTERM, &saved->term, NULL);
}

/* last.ckpt, with how far epoch `epoch` got (b batches done) when b > 0. */
static int save_last(trainer *t, int64_t epoch, size_t b)
{
    double began = jv_now();
    flush_adam(t); /* the checkpoint holds the parameters after the last step */
    t->step_seconds += jv_now() - began;
    t->ck.batches = (int64_t)b;
    t->ck.batch_size = b ? t->w.cap : 0;
    t->ck.n_train = b ? (int64_t)t->n_train : 0;
    t->ck.n_sums = b ? t->m->n_terms + 1 : 0;
    for (int i = 0; i < t->ck.n_sums; i++)
        t->ck.sums[i] = t->sums[i];
    (void)epoch;
    int rc = save_checkpoint(t, "last.ckpt");
    t->last_save = jv_now();
    return rc;
}

/* The line that says how to continue: this command with --resume in place of --out and --resume. */
static void say_how_to_continue(const trainer *t)
{
    if (t->ranks > 1)
        fprintf(stderr, "%s: to continue:  mpirun -np %d %s train", jv_prog_name(), t->ranks, jv_prog_name());
    else
        fprintf(stderr, "%s: to continue:  %s train", jv_prog_name(), jv_prog_name());
    for (int i = 1; i < t->argc; i++) {
        const char *a = t->argv[i];
        if (strcmp(a, "--out") == 0 || strcmp(a, "--resume") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--out=", 6) == 0 || strncmp(a, "--resume=", 9) == 0)
            continue;
        int plain = a[0] != 0 && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./,:+") ==
                                     strlen(a);
        fprintf(stderr, plain ? " %s" : " '%s'", a);
    }
    fprintf(stderr, " --resume %s/last.ckpt\n", t->run_dir);
}

/* Runs epoch `epoch` from batch `from` on (a resumed checkpoint's progress). */
static int run_epoch(trainer *t, int64_t epoch, size_t from)
{
    double start = jv_now();
    double lr = lr_in_epoch(t, epoch);
    if (lr != t->adam.lr) {
        flush_adam(t); /* the last step's update at the rate it was taken with */
        t->adam.lr = lr;
        if (t->lead && epoch > t->first_epoch) {
            jv_progress_clear(&t->bar);
            printf("epoch %lld on: learning rate %g (--lr-after)\n", (long long)epoch, lr);
            fflush(stdout);
        }
    }
    size_t cap = (size_t)t->w.cap, n_batches = (t->n_train + cap - 1) / cap;
    memcpy(t->order, t->split, t->n_train * sizeof *t->order);
    jv_rng rng = {t->o.seed, jv_stream_id(JV_TAG_SHUFFLE, 0, (uint64_t)epoch), 0};
    jv_rng_shuffle(&rng, t->order, t->n_train);
    double *valid = t->sums + t->m->n_terms + 1;
    memset(t->sums, 0, 2 * ((size_t)t->m->n_terms + 1) * sizeof *t->sums);
    for (int i = 0; from > 0 && i < t->ck.n_sums; i++)
        t->sums[i] = t->ck.sums[i];
    for (size_t b = from; b < n_batches; b++) {
        size_t first = b * cap;
        int batch = (int)(t->n_train - first < cap ? t->n_train - first : cap);
        double progress = (double)(epoch - 1) + (double)b / (double)n_batches;
        double began = jv_now();
        int rc = t->chunked ? train_step_chunked(t, t->order + first, batch, progress)
                            : train_step(t, t->order + first, batch, progress);
        t->step_seconds += jv_now() - began;
        if (rc != 0)
            return 1;
        draw_bar(t, epoch, first + (size_t)batch);
        int more = b + 1 < n_batches;
        /* every process decides the same: from the step's records when there are parts */
        int sig = t->chunked ? t->agreed_stop : stop_signal;
        int due = t->chunked ? t->agreed_save
                             : t->o.ckpt_minutes > 0 && jv_now() - t->last_save > 60 * t->o.ckpt_minutes;
        if (more && sig) {
            jv_progress_clear(&t->bar);
            rc = save_last(t, epoch, b + 1);
            if (t->lead) {
                printf("stopped by %s in epoch %lld after %zu of %zu batches (step %lld); %s/last.ckpt holds it\n",
                       sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)epoch, b + 1, n_batches,
                       (long long)t->ck.step, t->run_dir);
                fflush(stdout);
            }
            if (rc == 0 && t->lead)
                say_how_to_continue(t);
            return rc != 0 ? 1 : 128 + sig;
        }
        if (more && due && save_last(t, epoch, b + 1) != 0)
            return 1;
    }
    double began = jv_now();
    flush_adam(t); /* before anything reads the parameters */
    t->step_seconds += jv_now() - began;
    if (t->lead) /* only process 0 logs */
        validate(t, epoch, valid);
    t->ck.epoch = epoch;
    if (t->lead)
        log_epoch(t, epoch, valid, jv_now() - start);
    int rc = save_csv(t);
    if (rc == 0)
        rc = save_last(t, epoch, 0);
    if (rc == 0 && t->o.ckpt_every > 0 && epoch % t->o.ckpt_every == 0) {
        char name[64];
        snprintf(name, sizeof name, "epoch-%lld.ckpt", (long long)epoch);
        rc = save_checkpoint(t, name);
    }
    int sig = jv_comm_max(stop_signal);
    if (rc == 0 && sig && epoch < t->o.epochs) {
        if (t->lead) {
            printf("stopped by %s at the end of epoch %lld (step %lld); %s/last.ckpt holds it\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)epoch, (long long)t->ck.step, t->run_dir);
            fflush(stdout);
            say_how_to_continue(t);
        }
        return 128 + sig;
    }
    return rc;
}

static int run_training(trainer *t)
{
    jv_error err;
    int rc = 0;
    if (t->lead && jv_make_dir(t->run_dir, &err) != 0)
        rc = jv_fail("%s", err.msg);
    if (t->lead && rc == 0)
        remove_stale_temporaries(t);
    if (jv_comm_max(rc) != 0 || save_csv(t) != 0)
        return 1;
    jv_set_threads(1);
    t->team = jv_team_new(t->o.threads, &err);
    if (!t->team)
        rc = jv_fail("train: %s", err.msg);
    if (jv_comm_max(rc) != 0)
        return 1;
    if (t->lead) {
        printf("training %s on %zu examples (%zu validation), batch %d, epochs %lld..%d, seed %llu, into %s/\n",
               t->m->name, t->n_train, t->n_valid, t->w.cap, (long long)t->ck.epoch + 1, t->o.epochs,
               (unsigned long long)t->o.seed, t->run_dir);
        if (t->n_lr_after > 0) {
            printf("learning rate %g", t->o.lr);
            for (int i = 0; i < t->n_lr_after; i++)
                printf(", %g after epoch %d", t->lr_after[i].lr, t->lr_after[i].after);
            printf("; epoch %lld starts at %g\n", (long long)t->ck.epoch + 1, lr_in_epoch(t, t->ck.epoch + 1));
        }
        if (t->ck.batches > 0)
            printf("resuming epoch %lld after %lld batches (step %lld)\n", (long long)t->ck.epoch + 1,
                   (long long)t->ck.batches, (long long)t->ck.step);
        if (t->chunked)
            printf("each batch's gradient summed over %d part%s (%s)%s; %s\n", t->red.chunks,
                   t->red.chunks == 1 ? "" : "s",
                   t->ranks == 1 ? "the same results as any number of processes up to that"
                   : t->red.fast ? "each process a share of the parts and a segment of the block"
                                 : "process 0 sums the block (the fast exchange needs powers of two)",
                   t->incomplete ? ", each part's examples in groups by what they observe, each through its step"
                                 : "",
                   jv_comm_describe());
        printf("threads %d of %d cores%s; %s; optimiser %s\n", t->o.threads, jv_cpu_count(),
               t->o.threads > jv_cpu_count() ? " (more threads than cores: slower, same results)" : "",
               jv_blas_describe(), jv_simd_describe());
    }
    jv_progress_init(&t->bar);
    t->bar.tty = t->bar.tty && !jv_comm_is_mpi();
    t->run_start = t->last_save = jv_now();
    t->first_epoch = t->ck.epoch + 1;
    saved_handlers saved;
    catch_stop_signals(&saved);
    for (int64_t e = t->first_epoch; e <= t->o.epochs && rc == 0; e++)
        rc = run_epoch(t, e, e == t->first_epoch ? (size_t)t->ck.batches : 0);
    restore_signals(&saved);
    if (rc != 0 || !t->lead)
        return rc;
    double total = jv_now() - t->run_start;
    printf("done: %lld epoch%s in %.2f s: steps %.2f s, checkpoints %.2f s, the rest %.2f s "
           "(shuffles, validation, logs); loading the data took %.2f s before\n",
           (long long)(t->o.epochs - t->first_epoch + 1), t->o.epochs - t->first_epoch == 0 ? "" : "s", total,
           t->step_seconds, t->ckpt_seconds, total - t->step_seconds - t->ckpt_seconds, t->load_seconds);
    return 0;
}

/* A checkpoint taken within an epoch resumes only into the same cut of batches. */
static int check_progress(trainer *t)
{
    if (t->ck.batches <= 0)
        return 0;
    size_t cap = (size_t)t->w.cap, n_batches = (t->n_train + cap - 1) / cap;
    if (t->ck.batch_size != t->w.cap || t->ck.n_train != (int64_t)t->n_train || (size_t)t->ck.batches >= n_batches)
        return jv_fail("train: %s stopped within epoch %lld, after %lld batches of %lld from %lld training "
                       "examples; it resumes with the same --batch, --valid, --limit and data only (this run: "
                       "batches of %d from %zu)",
                       t->o.resume, (long long)t->ck.epoch + 1, (long long)t->ck.batches, (long long)t->ck.batch_size,
                       (long long)t->ck.n_train, t->w.cap, t->n_train);
    return 0;
}

/* The processes, and the parts of a batch (see jv_trainer_chunks.c): by
 * default those of the --resume checkpoint, so that a run goes on with its
 * own sums on any number of processes; else one, or one a process. */
static int check_chunks(trainer *t)
{
    if (!t->chunks_given && t->o.resume && t->ck.chunks > 0 && t->ck.chunks <= 1024)
        t->o.chunks = (int)t->ck.chunks;
    if (t->o.chunks == 0)
        t->o.chunks = t->ranks;
    if (t->chunks_given && t->o.resume && t->ck.chunks > 0 && t->ck.chunks != t->o.chunks && t->lead)
        printf("note: --chunks %d, where %s was trained in %lld parts: the run goes on with other sums than "
               "its own (the same for any number of processes up to %d)\n",
               t->o.chunks, t->o.resume, (long long)t->ck.chunks, t->o.chunks);
    if (t->o.chunks < t->ranks && !t->chunks_given)
        return jv_fail("train: %s was trained in %d parts, fewer than the %d processes; give --chunks "
                       "(a multiple of %d is fastest), knowing that other parts make other sums",
                       t->o.resume, t->o.chunks, t->ranks, t->ranks);
    if (t->o.chunks < t->ranks)
        return jv_fail("train: --chunks %d: fewer parts than the %d processes (each needs one at least)",
                       t->o.chunks, t->ranks);
    t->chunked = t->o.chunks > 1 || t->ranks > 1 || t->incomplete;
    t->ck.chunks = t->o.chunks; /* recorded in every checkpoint */
    return 0;
}

/* Everything that can fail before a file is written. */
static int prepare(trainer *t, int argc, char **argv)
{
    int rc = parse_train_options(t, argc, argv);
    if (rc != 0)
        return rc;
    unsigned all = t->m->n_modalities == 32 ? ~0u : (1u << t->m->n_modalities) - 1;
    if (parse_binarize(t) != 0 || parse_hypers(t) != 0 || parse_lr_schedule(t) != 0)
        return 1;
    double start = jv_now();
    if (jv_dataset_load(t->m, "train", &t->o.data, &t->o.observed, all, t->o.limit, &t->ds) != 0)
        return 1;
    t->load_seconds = jv_now() - start;
    binarize_thresholds(t);
    if (load_state(t) != 0 || make_split(t) != 0 || apply_drops(t) != 0 || check_observed(t) != 0 ||
        check_chunks(t) != 0 ||
        (t->lead ? prepare_run_dir(t) : choose_run_dir(t)) != 0 || alloc_buffers(t) != 0 || check_progress(t) != 0)
        return 1;
    return 0;
}

int jv_cmd_train(const jv_model *m, int argc, char **argv)
{
    trainer t = {.m = m, .argv = argv, .argc = argc, .rank = jv_comm_rank(), .ranks = jv_comm_size(), .moments_at = -1};
    t.lead = t.rank == 0;
    int rc = prepare(&t, argc, argv);
    int agreed = jv_comm_max(rc == 1); /* a process that failed has said why; all stop */
    if (agreed && rc == 0)
        rc = 1;
    if (rc == 0 && t.ck.epoch == t.o.epochs && t.lead)
        printf("%s is already at epoch %d; nothing to do\n", t.o.resume, t.o.epochs);
    else if (rc == 0 && t.ck.epoch != t.o.epochs)
        rc = run_training(&t);
    free_trainer(&t);
    return rc;
}
