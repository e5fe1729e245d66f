/* ops.h: what each operation of the IR computes, in one place for every
 * back end: the activations, the variance of a Gaussian head, the
 * likelihoods, the Gaussian densities and their KL divergence, and the
 * reparameterised sample, each with its forward formula and the gradient
 * of a loss through it (formula.h's language).
 *
 * The C back end (emit.c) prints the forward formulas in the step's loops
 * and the gradient formulas in the backward pass that differentiation
 * (grad.c) lays out; the PyTorch back end (emit_torch.c) prints the forward
 * formulas and lets autograd differentiate them, so the equality tests of
 * the two back ends check every gradient formula here against autograd.
 * Adding an activation or a likelihood means adding a row here (and its
 * enum value in model.h): the checker's words, the IR's dumps and both
 * printers read these rows.
 *
 * Names in the formulas: per-element ops see their operands by the names
 * each table states; `g` is d loss / d the op's output (per element, or
 * per example for the densities and likelihoods, whose outputs are sums
 * over dimensions). */
#ifndef JMVAEC_OPS_H
#define JMVAEC_OPS_H

#include "model.h"

enum { MAX_LETS = 3, MAX_GRADS = 4 };

/* A temporary: `name = expr`, computed once per element before the formulas
 * that use it. */
typedef struct {
    const char *name, *expr;
} let_def;

/* A per-element value, after its temporaries. */
typedef struct {
    let_def lets[MAX_LETS];
    const char *value;
} formula_def;

/* The gradient of a loss through a per-element formula: d[k] is
 * g * d value / d (operand k), for the operands in the table's order (NULL:
 * the operand takes no gradient). */
typedef struct {
    let_def lets[MAX_LETS];
    const char *d[MAX_GRADS];
} gradient_def;

/* ------------------------------------------------------------ activations -- */

/* What the derivative of an activation reads besides g. */
typedef enum { READS_NOTHING, READS_OUTPUT, READS_INPUT } derivative_reads;

typedef struct {
    const char *name;          /* the spec's word */
    const char *forward;       /* of the pre-activation v */
    const char *backward;      /* g * act'(.), of g and the output y or the pre-activation x */
    derivative_reads reads;    /* READS_INPUT: the forward pass keeps the pre-activation */
    const char *torch;         /* PyTorch's own function of v (the tests compare it with `forward`) */
} activation_def;

extern const activation_def activation_table[N_ACTIVATIONS]; /* indexed by activation_kind */

/* ----------------------------------------------------------------- layers -- */

/* The kinds of layer a network may have. A dense layer is written as its
 * activation applied to a width, `relu(512)`; a convolution as a word with
 * arguments, bare (linear) or inside an activation, `silu(conv(64, 4,
 * stride=2, pad=1))`; flatten and reshape change the shape alone. */
typedef struct {
    const char *word;          /* the spec's word; NULL for dense (an activation's word) */
    int weights;               /* has a weight and (unless bias=no) a bias */
    int activation;            /* may stand inside an activation */
    const char *what;          /* for messages and comments */
    const char *torch;         /* PyTorch's function (convolutions) */
} layer_def;

extern const layer_def layer_table[N_LAYER_KINDS]; /* indexed by layer_kind */

/* The output size along one dimension of a convolution (transposed: its
 * inverse) of kernel k, stride s and padding p; 0 when it would be empty, more
 * than 10^6 when it would be larger than that (the caller refuses both). A
 * convolution's division must be exact (*exact = 0 otherwise). */
int conv_out_size(int transposed, int in, int k, int s, int p, int *exact);

/* -------------------------------------------------- Gaussian heads' variance -- */

/* A Gaussian head's raw output is [mean, a]; its log-variance is a formula
 * of a. backward: d loss / d a from dl = d loss / d log-variance. */
typedef struct {
    const char *name;          /* the spec's word after var= */
    const char *logvar;        /* of a */
    const char *backward;      /* of dl and a */
    int reads_raw;             /* backward reads a */
    const char *what;          /* for comments */
} variance_def;

extern const variance_def variance_table[N_VARIANCES]; /* indexed by variance_kind */

/* ------------------------------------------------------------ likelihoods -- */

/* -log p(t | l [, lv]) of one modality: l the head's output (logits or the
 * mean), t the data, lv a learned log-variance. Summed over the modality's
 * values, except for a normalised likelihood (categorical: a softmax over
 * the values), whose sum the printers write out (a log-sum-exp). */
typedef struct {
    const char *word;          /* the spec's word */
    const char *arg;           /* its argument in parentheses, or NULL */
    const char *name;          /* word(arg), for messages and dumps */
    const char *param;         /* what the head gives: "logits" or "mean" */
    int normalised;            /* the values share one softmax */
    int has_logvar;            /* the head also gives a log-variance per value */
    formula_def nll;           /* per value (not for a normalised likelihood) */
    gradient_def nll_grad;     /* d[0]: d l, d[1]: d lv */
    const char *mean;          /* the expected value of a value given l (not normalised) */
    const char *mean_what;     /* for comments */
    const char *runtime;       /* the runtime's jv_likelihood (jv_model.h), for the descriptor */
} likelihood_def;

extern const likelihood_def likelihood_table[N_LIKELIHOODS]; /* indexed by likelihood_kind */

/* -------------------------------------------------------------- Gaussians -- */

/* Index 0: against the standard normal N(0, I); 1: against N(m, e^lv). */
enum { GAUSS_STANDARD = 0, GAUSS_GENERAL = 1 };

/* KL(N(mq, e^lq) || N(mp, e^lp)) per dimension; gradient for mq, lq, mp, lp. */
extern const formula_def kl_formula[2];
extern const gradient_def kl_gradient[2];

/* -log N(z; m, e^lv) per dimension (the printers subtract it to accumulate
 * the log-density); gradient of the log-density for z, m, lv. */
extern const formula_def neg_log_normal_formula[2];
extern const gradient_def log_normal_gradient[2];

/* The reparameterised sample of mean m and log-variance lv from noise eps;
 * its gradient for m and lv from g = d loss / d sample. */
extern const formula_def sample_formula;
extern const gradient_def sample_gradient;

/* ----------------------------------------------------- rules over experts -- */

/* How q(z | S) is made from the experts of S (the posteriors a rule lists):
 * their product (poe), their uniform mixture (moe), or the uniform mixture,
 * over the non-empty subsets T of S's experts, of the product of T's
 * (mopoe). The checker reads these rows; lowering builds products and
 * mixtures from them. */
typedef struct {
    const char *word;          /* the spec's word */
    int mixture;               /* q(z | S) is a mixture (not a Gaussian) */
    int of_products;           /* its parts are products of experts: of all of S (poe), or of each subset (mopoe) */
    int takes_prior;           /* the prior p(z) may be listed as one more expert (of every product) */
    const char *what;          /* for messages and comments */
} rule_def;

extern const rule_def rule_table[N_RULES]; /* indexed by rule_kind */

/* The product of Gaussian experts, a reduction over the experts of each
 * element: t (the precision) and s (the precision-weighted mean) start at
 * the prior expert's (1 and 0) or at 0, and each expert (m, lv) adds
 * `precision` to t and `weighted` to s; the product's log-variance and mean
 * are `logvar` and `mean` of t and s. Its gradient for one expert, from the
 * gradients gm and glv of the product's mean mo and log-variance lvo: d[0]
 * for m, d[1] for lv. */
extern const formula_def poe_precision, poe_weighted, poe_logvar, poe_mean;
extern const gradient_def poe_gradient;

/* log of the mean of exp(x_c) over n values x_c (the log-density of a
 * uniform mixture from its components'), a reduction in three steps: the
 * largest value `top` (`larger` of x and top), the sum `total` of `term`,
 * and `result` of top, total and n. The gradient of the result for x_c is
 * g times `weight` of x and the result (the component's responsibility). */
typedef struct {
    const char *larger, *term, *result, *weight;
} logmeanexp_def;

extern const logmeanexp_def logmeanexp;

/* The softmax of a normalised likelihood's logits l over its values, a
 * reduction in three steps as logmeanexp's: the largest logit `top`
 * (`larger` of x and top), the sum `total` of `term`, then the log of the
 * normaliser and each value's share. */
typedef struct {
    const char *larger, *term, *log_normaliser, *share;
} softmax_def;

extern const softmax_def softmax;

/* The operands of each formula family, in order (for the tests and the printers). */
extern const char *const activation_operands[];   /* v, g, y, x */
extern const char *const variance_operands[];     /* a, dl */
extern const char *const likelihood_operands[];   /* l, t, lv, g */
extern const char *const kl_operands[];           /* mq, lq, mp, lp, g */
extern const char *const normal_operands[];       /* z, m, lv, g */
extern const char *const sample_operands[];       /* m, lv, eps, g */
extern const char *const poe_operands[];          /* m, lv, t, s, mo, lvo, gm, glv */
extern const char *const logmeanexp_operands[];   /* x, top, total, n, result */
extern const char *const softmax_operands[];      /* x, top, total */

/* The row whose word (and argument) the spec wrote, or -1. */
int find_activation(const char *word);
int find_variance(const char *word);
int find_likelihood(const char *word, const char *arg);
int find_rule(const char *word);
int find_layer(const char *word);

#endif
