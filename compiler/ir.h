/* ir.h: the tensor IR. A graph is a list of operations, in execution order,
 * on values of shape [batch x width] (the batch is the one dimension the
 * spec does not fix). Lowering (lower.c) builds the forward graphs from the
 * checked model; differentiation (grad.c) appends the backward operations to
 * the training graph; planning (plan.c) places every arena value; emission
 * (emit.c) prints each graph as one C function. */
#ifndef JMVAEC_IR_H
#define JMVAEC_IR_H

#include "model.h"

typedef enum {
    V_ARENA,     /* an activation or gradient in the arena */
    V_DATA,      /* the caller's data[index] */
    V_NOISE,     /* the caller's noise[index] */
    V_LATENT_IN, /* the caller's latents[index], read */
    V_LATENT_OUT,/* the caller's latents[index], written */
    V_LOG_Q,     /* the caller's per-example log_q */
    V_LOG_PRIOR, /* the caller's per-example log_prior */
    V_LOG_LIK,   /* the caller's per-example log_lik[index] */
    V_OUT        /* the caller's out[index] */
} value_kind;

/* What a graph computes: the function it becomes and that function's
 * signature (emit.c dispatches on this, never on names). */
typedef enum {
    G_TRAIN,        /* the loss, with its backward pass: forward, backward, the step's tasks */
    G_POSTERIOR,    /* one family: latents and log q from the data */
    G_LOG_JOINT,    /* log p(z) and log p(m | z) */
    G_DECODE,       /* each modality's expected value */
    G_SAMPLE_PRIOR  /* ancestral sampling */
} graph_kind;

/* A convolution's geometry (OP_CONV and its gradients): the layer reads an
 * image [in_c, in_h, in_w] and gives [out_c, out_h, out_w]. Lowered to GEMMs
 * by way of columns (jv_im2col, jv_col2im): a convolution's columns hold,
 * for each output place, the kernel's window of the input [in_c * k * k x
 * out_h * out_w]; a transposed convolution is the gradient of a convolution
 * with respect to its input, so its columns are the window of its output
 * [out_c * k * k x in_h * in_w]. */
typedef struct {
    int transposed;
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int kernel, stride, pad;
} conv_geom;

/* Reals per example of a convolution's columns, and of its workspace: the
 * columns, then the image of the side that is not columns, channel-major
 * ([c x rows h w]: the GEMMs of a batch are one each). */
long conv_columns(const conv_geom *g);
long conv_workspace(const conv_geom *g);

typedef struct {
    value_kind kind;
    int width;
    int copies;         /* rows per example: 1, or the K importance samples of a draw and all that follows them */
    int index;
    const char *name;   /* readable, unique in its graph: the C identifier of the pointer */
    const char *caller; /* the caller's expression for non-arena values */
    int grad;           /* the value holding its gradient, or -1 */
    int needs_grad;
    int first, last;    /* lifetime, in op positions (planning) */
    long offset;        /* arena offset in reals per example (planning) */
    vshape shape;       /* an image [c, h, w] when a layer made one (h > 0), for the dumps; else flat */
} value;

typedef enum {
    /* forward */
    OP_AFFINE,      /* out = act(sum_i in[i] W_i + b); W_i are row blocks of one [sum k_i, n] tensor */
    OP_ADD,         /* out = sum of in[] */
    OP_GAUSS_HEAD,  /* in[0] raw [2n] -> out[0] mean [n], out[1] log-variance [n] */
    OP_SAMPLE,      /* out[0] = in[0] + exp(in[1] / 2) * in[2]; in[2] NULL noise means the mean */
    OP_STD_SAMPLE,  /* out[0] = in[0] (a standard-normal latent is its noise) */
    OP_KL,          /* per-example KL(N(in0, e^in1) || N(in2, e^in3)); in2 = -1: N(0, I) */
    OP_LOGPDF,      /* per-example log N(in0; in1, e^in2); in1 = -1: N(0, I) */
    OP_NLL,         /* per-example -log p(target in[1] | params in[0] [, log-variance in[2]]) */
    OP_LOSS,        /* terms[t] = mean over the batch of in[t]; returns the weighted sum */
    OP_DECODE_MEAN, /* out = the expected value of a likelihood given its parameters in[0] */
    OP_POE,         /* the product of Gaussian experts: in[2i], in[2i+1] expert i's mean and log-variance
                       (and the prior expert when `prior`) -> out[0] mean, out[1] log-variance */
    OP_MIX_LOGPDF,  /* per-example log of a uniform mixture's density at in[0]: components (in[1+2c], in[2+2c]);
                       out[1] (or -1): each component's responsibility [B x C], for the backward */
    OP_MIX_SAMPLE,  /* out[0] = a sample of a uniform mixture: in[0] noise, in[1] the choice's noise [B x 1],
                       components (in[2+2c], in[3+2c]); the mixture's mean where noise is NULL */
    OP_EXPAND,      /* out[0] (K rows an example) = in[0] (one row an example), each row K times */
    OP_CONV,        /* out[0] = act(conv(in[0]) + b) (or transposed); out[1] the columns (workspace);
                       out[2] the pre-activation when act' needs it */
    OP_IW_BOUND,    /* a group's importance-weighted bound: log weights -(sum of its terms, weighted) per row of
                       the K samples; out[0] = -log of their mean per example, out[1] = each row's normalised weight */
    /* backward */
    OP_SEED,        /* the loss's seeds: d total / d term value per example */
    OP_ACT_GRAD,    /* in[0] (dY) becomes dZ = dY * act'(Z) in place; bias gradient out[0] = column sums */
    OP_GEMM_DX,     /* out[0] (+)= in[0] (dZ) W_i^T */
    OP_GEMM_DW,     /* param gradient of W_i = in[1]^T (X_i) in[0] (dZ) */
    OP_GAUSS_HEAD_GRAD, /* out[0] (d raw) from in[0] (d mean), in[1] (d log-variance), in[2] raw */
    OP_SAMPLE_GRAD, /* d mean (+)= dz; d log-variance (+)= dz * eps * exp(lv / 2) / 2 */
    OP_KL_GRAD,
    OP_LOGPDF_GRAD,
    OP_NLL_GRAD,
    OP_ADD_GRAD,
    OP_ZERO_GRAD,   /* a parameter tensor that no path reaches: its gradient is 0 */
    OP_POE_GRAD,    /* one expert's out[0] d mean, out[1] d log-variance from in: its mean, log-variance, the
                       product's mean, log-variance and their gradients */
    OP_MIX_LOGPDF_GRAD, /* component `component`'s share: out[0] d z, out[1] d mean, out[2] d log-variance from
                           in: z, its mean, log-variance, the responsibilities */
    OP_EXPAND_GRAD, /* out[0] (+)= the sum over each example's K rows of in[0] */
    OP_CONV_DX,     /* out[0] (+)= the gradient of a convolution's input from in[0] (dZ); out[1] the columns */
    OP_CONV_DW      /* the weight's gradient (+)= from in[0] (dZ) and in[1] (the input); out[0] the columns */
} op_kind;

enum { MAX_OP_INPUTS = 40 };

typedef struct {
    op_kind kind;
    int *in;             /* room for MAX_OP_INPUTS; the loss's for every term (graph_op_inputs) */
    int n_in;
    int out[4];
    int n_out;
    int tensor;          /* weight tensor (AFFINE, GEMM_DW, ZERO_GRAD) */
    int bias;            /* bias tensor, or -1 */
    int block;           /* GEMM_DX, GEMM_DW: which input's row block of the weight */
    int row_offset;      /* GEMM_DX, GEMM_DW: first row of that block */
    activation_kind act;
    variance_kind variance;
    likelihood_kind likelihood;
    int accumulate;      /* per-example ops and single-output gradients: += instead of = */
    int acc[4];          /* gradient ops: per output, += instead of = */
    int sign;            /* per-example ops: +1, or -1 to store the negation */
    int term;            /* the loss term (per-example ops of the training graph) */
    int hidden;          /* for comments: the layer number, 0 for a head */
    int net;             /* the net it comes from, or -1 */
    int line;            /* the spec line it comes from */
    const char *what;    /* a few words for the comment */
    int prior;           /* POE: the prior N(0, I) is one more expert */
    int component;       /* MIX_LOGPDF_GRAD: which component */
    int n_components;    /* MIX_LOGPDF(_GRAD), MIX_SAMPLE */
    int detach;          /* log-densities: no gradient to the distribution's parameters (DReG) */
    unsigned guard;      /* a posterior given a subset: runs only when the subset holds these modalities */
    unsigned *conds;     /* POE, MIX_*: per expert or component, the modalities it needs (given subsets) */
    const conv_geom *conv; /* CONV, CONV_DX, CONV_DW, and ACT_GRAD of a convolution (bias per channel) */
    int iw;              /* the importance weights of the op's group (a value), or -1: per-example terms' gradients
                            are weighted by them, and, with DReG, a sample's gradient once more */
    int part, parts;     /* AFFINE, GEMM_DX, GEMM_DW, CONV, CONV_DX cut into tasks (split.c): part `part` of
                            `parts` (0: whole) */
    int split;           /* the parts of one op share this number (> 0): they never conflict */
} op;

typedef struct {
    const char *name;
    int rows, cols;
    int shape[4];       /* a convolution's weight: PyTorch's [out, in, k, k] (transposed: [in, out, k, k]); else 0 */
    long offset;
    int fan_in, fan_out;
    int is_bias;
    int line;
} tensor;

/* The training step as tasks (sched.c): the ops that emit code, in op
 * order, with the edges that keep every conflicting pair in that order. */
typedef struct {
    int n, n_forward;      /* tasks; the first n_forward are the forward pass */
    int *op;               /* task -> op index */
    int *task_of;          /* op index -> task, or -1 */
    int *n_pred, *n_succ;
    int **succ;            /* the transitive reduction of the order */
    double *cost, *rank;   /* estimated microseconds; longest path from the task's start */
    int *slot;             /* the gradient region the task writes, or -1 */
    int n_slots;
    long *slot_first, *slot_count; /* each region, in reals (parameters use the same layout) */
    int *n_reads, **reads; /* the regions whose parameters each task reads */
    int words;             /* of a row of reach */
    unsigned long long *reach; /* row j: bit i set when task i must finish before task j */
} task_graph;

typedef struct {
    graph_kind kind;
    const char *name;      /* the C function's suffix: train, posterior_x_w, ... */
    const char *purpose;
    op *ops;
    int n_ops, cap_ops;
    int n_forward;         /* ops before the backward pass */
    value *values;
    int n_values, cap_values;
    long arena_per_example;/* planned */
    unsigned family_condition;
    int given;             /* a posterior given the subset `given` at run time */
    int has_backward;
    const sem_subset *subset; /* G_TRAIN: the loss of examples that observe only some modalities; NULL: complete ones */
    const sem_subset *cut;    /* G_TRAIN: what of the loss counts (subset, or the complete examples'); NULL: all */
    task_graph *tasks;     /* the training graph's, after scheduling; NULL for the others */
} graph;

typedef struct {
    const sem_model *m;
    tensor *tensors;
    int n_tensors;
    long n_params;
    int *net_weight;       /* first tensor of each net */
    graph **graphs;
    int n_graphs;
    int training_family;   /* index among the posterior graphs */
    int n_families;
    graph **families;      /* posterior graphs */
    int *likelihood_net;   /* per modality: the decoder log p(m | z) uses, or -1 */
    long arena_per_example;
} program;

program *lower_model(ctx *c, const sem_model *m);
void differentiate(ctx *c, program *p, graph *g);
void plan_graph(graph *g);
void plan_program(program *p);

/* split.c */
void split_gemms(ctx *c, graph *g);
/* Is op o cut by examples when it is split (CONV, CONV_DX), rather than
 * along its weight's side? */
int op_cuts_examples(const op *o);
/* The width a split divides: AFFINE and GEMM_DX their output's, GEMM_DW its
 * input's (the weight's rows); 0 for the other ops. */
int op_split_width(const graph *g, const op *o);
/* The columns (AFFINE: of out[0]; GEMM_DX: of dX) or weight rows (GEMM_DW)
 * [*lo, *hi) an op computes: all of them unless it is a part of a split. */
void op_part_range(const graph *g, const op *o, int *lo, int *hi);

/* sched.c */
void schedule_graph(ctx *c, const program *p, graph *g);
int schedule_check_regions(const program *p, const graph *g);
void schedule_param_reads(ctx *c, const program *p, const graph *g);
int task_reaches(const task_graph *t, int from, int to);
void tasks_dump(FILE *out, const program *p, const graph *g);
int op_emits_code(const op *o);
int op_writes_input(const op *o, int j);
int op_reads_output(const op *o, int j);
int op_grad_region(const program *p, const graph *g, const op *o, long *first, long *count);
const char *op_kind_name(op_kind k);

void ir_dump(FILE *out, const program *p, const graph *g, int with_backward);
void plan_dump(FILE *out, const program *p, int batch);
int emit_program(ctx *c, const program *p, const char *dir);
void emit_source_to(ctx *c, const program *p, FILE *out);
void emit_all_to(ctx *c, const program *p, FILE *out);

/* graph building, shared by lower.c and grad.c */
int graph_value(ctx *c, graph *g, value_kind kind, int width, int index, const char *name);
op *graph_op(ctx *c, graph *g, op_kind kind, int line);
/* Gives op o room for n inputs (at least MAX_OP_INPUTS). */
void graph_op_inputs(ctx *c, op *o, int n);

#endif
