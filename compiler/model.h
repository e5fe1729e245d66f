/* model.h: the checked model. The checker (check.c) resolves every name of
 * the syntax tree and fills these tables; lowering (lower.c) reads only
 * them. Indices refer to the tables of the same model. */
#ifndef JMVAEC_MODEL_H
#define JMVAEC_MODEL_H

#include "ast.h"

enum { MAX_MODALITIES = 16, MAX_LATENTS = 16 };

/* A mixture of products (mopoe) over n experts has 2^n - 1 components, and a
 * loop over subsets(...) as many instances: at most this many. */
enum { MAX_SUBSETS = 31 };

/* Importance samples per draw (train { samples = K }): at most this many. */
enum { MAX_IW_SAMPLES = 256 };

/* Each likelihood, activation and variance is a row of the operation table
 * (ops.c), in this order; the last value counts them. */
typedef enum { LIK_BERNOULLI, LIK_CATEGORICAL, LIK_GAUSSIAN, LIK_GAUSSIAN_LEARNED, N_LIKELIHOODS } likelihood_kind;
typedef enum {
    ACT_LINEAR, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SOFTPLUS, ACT_TANH, ACT_SIGMOID, ACT_SILU, N_ACTIVATIONS
} activation_kind;
typedef enum { VAR_SOFTPLUS, VAR_LOGVAR, N_VARIANCES } variance_kind;
/* What a layer does (a row of ops.h's layer table each): a dense map
 * act(x W + b), a 2-D convolution or transposed convolution act(W * x + b),
 * or a change of shape that moves no value (flatten, reshape). */
typedef enum { LAYER_DENSE, LAYER_CONV, LAYER_DECONV, LAYER_FLATTEN, LAYER_RESHAPE, N_LAYER_KINDS } layer_kind;
typedef enum { HEAD_NONE, HEAD_POSTERIOR, HEAD_PRIOR, HEAD_LIKELIHOOD } head_kind;
typedef enum { SRC_MODALITY, SRC_LATENT, SRC_NET } source_kind;

/* The shape of a value per example: an image [c, h, w] (row-major, channel
 * first: PyTorch's layout), or, when h is 0, c flat values. */
typedef struct {
    int c, h, w;
} vshape;

typedef struct {
    const char *name;
    int size, height, width;
    int channels;      /* 1, or the first of three dimensions [channels, height, width] */
    likelihood_kind likelihood;
    const modality_node *node;
} sem_modality;

typedef struct {
    const char *name;
    int size;
    int prior_net;     /* -1: standard normal */
    int sample_net;    /* the network whose posterior the loss's top level samples from, or -1 */
    int sample_post;   /* the posterior the loss's top level samples from, or -1 */
    const latent_node *node;
    const sample_node *sample; /* the top level's sample, or the first loop's */
    int rule;          /* the rule that builds its posteriors from experts, or -1 */
} sem_latent;

typedef struct {
    source_kind kind;
    int index;
    int size;
} sem_source;

typedef struct {
    layer_kind kind;
    activation_kind activation;
    int width;         /* values out: the out shape's size */
    vshape in, out;
    int kernel, stride, pad; /* CONV, DECONV */
    int bias;          /* has a bias (`bias=no` drops it) */
    const layer_node *node;
} sem_layer;

typedef struct {
    const char *name;
    combine_kind combine;
    int n_inputs;
    sem_source inputs[MAX_MODALITIES + MAX_LATENTS];
    int input_size;    /* the width the first layer reads */
    vshape input_shape;/* what the first layer reads: an image for one image input (a modality or a net's) */
    int n_layers;
    sem_layer *layers;
    int feature_size;  /* what a reader of this net gets: the last layer's width */
    vshape feature_shape;
    int head_dense;    /* the head is a dense map; 0: the last layer's image is the likelihood's parameters */
    head_kind head;
    int target;        /* latent or modality index */
    variance_kind variance;
    int head_size;     /* outputs of the head's affine map */
    unsigned modalities_read; /* transitively */
    unsigned latents_read;    /* transitively */
    int used;
    int broken;        /* an input did not resolve: checks that depend on it are skipped */
    int bad_layers;    /* a layer has an error: the shapes after it are not checked */
    const net_node *node;
} sem_net;

/* ------------------------------------------------------------- posteriors -- */

/* Each rule that builds posteriors from experts is a row of the operation
 * table (ops.c), in this order. */
typedef enum { RULE_POE, RULE_MOE, RULE_MOPOE, N_RULES } rule_kind;

/* A posterior of a latent, as the checker resolves every q(z | ...) the spec
 * names: a network's head (Gaussian), the product of Gaussian experts
 * (Gaussian), or the uniform mixture of other posteriors (not Gaussian).
 * The checker makes each record once; lowering lowers each in one place. */
typedef enum { POST_NET, POST_PRODUCT, POST_MIXTURE } posterior_kind;

typedef struct {
    posterior_kind kind;
    int latent;
    unsigned condition;    /* the modalities it is conditioned on */
    unsigned latents_read; /* the latents whose samples its networks read */
    int net;               /* POST_NET: the network whose head it is; else -1 */
    int rule;              /* PRODUCT, MIXTURE: the rule (sem_model.rules) it comes from; else -1 */
    unsigned experts;      /* PRODUCT: which of the rule's experts it multiplies (bit i: expert i) */
    int prior;             /* PRODUCT: the prior p(z) is one more expert */
    int n_components;      /* MIXTURE: the posteriors it averages, each NET or PRODUCT */
    int *components;
    loc at;                /* where the spec defines it (the head, or the rule) */
} sem_posterior;

/* q(z | x, w) = mopoe(q(z | x), q(z | w)): experts are posterior heads over
 * one latent, each conditioned on its own modalities. */
typedef struct {
    rule_kind kind;
    int latent;
    int prior;                        /* p(z) is one of the experts */
    int n_experts;
    int experts[MAX_MODALITIES];      /* POST_NET records */
    unsigned condition;               /* the union of the experts' */
    const rule_node *node;
} sem_rule;

typedef enum { DIST_POSTERIOR, DIST_PRIOR_NET, DIST_STANDARD_NORMAL, DIST_LIKELIHOOD } dist_kind;

typedef struct {
    dist_kind kind;
    int net;      /* the network whose head it is; -1 for the standard normal and posteriors not a head */
    int latent;   /* for Gaussians over a latent */
    int modality; /* for likelihoods */
    int post;     /* DIST_POSTERIOR: the posterior record */
} sem_dist;

/* ------------------------------------------------------------------- loss -- */

/* One reparameterised sample of a latent in the objective, with its own
 * noise (the step's noise[d] for draw d). */
typedef struct {
    int latent;
    int post;     /* the posterior it is drawn from (a Gaussian) */
    int group;
    const sample_node *node;
} sem_draw;

/* The loss's top level (group 0), and each instance of a loop: the draws
 * its terms see. A loop's instance sees its own draws and, for the latents
 * it does not draw, the top level's. */
typedef struct {
    const char *suffix;      /* NULL at the top level; else the instance: "x+w" */
    const char *csuffix;     /* in C: "x_w" */
    unsigned set;            /* the loop's variable: its modalities */
    int component;           /* a loop over components: the posterior its variable stands for; else -1 */
    double scale;            /* 1, or 1 / the instances of a `mean` loop */
    const loop_node *loop;
    int draw[MAX_LATENTS];   /* per latent: the draw its terms see, or -1 */
    unsigned own;            /* the latents drawn in the group itself */
    unsigned named;          /* the latents a sample statement names, here or at the top level (even one in error) */
    int n_order;
    int order[MAX_LATENTS];  /* its own draws' latents, each after the latents its posterior reads */
} sem_group;

typedef struct {
    const char *name;  /* as the trainer shows it: "kl", or in a loop "kl[x+w]" */
    const char *cname; /* in C identifiers: "kl", "kl_x_w" */
    term_kind kind;
    double weight;     /* when hyper < 0 */
    int hyper;
    double scale;      /* the group's (1 / instances in a `mean` loop), outside the weight */
    int group;
    sem_dist a, b;
    int bad;           /* a distribution did not resolve: later checks skip it */
    const term_node *node;
} sem_term;

/* What an example observing only the modalities `observed` contributes to
 * the loss (incomplete data; the rules are in observed.c): the groups,
 * draws and terms that count, and each group's scale (a `mean` loop
 * divides by its instances that count). */
typedef struct {
    unsigned observed;
    unsigned char *groups; /* [n_groups] */
    unsigned char *draws;  /* [n_draws] */
    unsigned char *terms;  /* [n_terms] */
    double *scale;         /* [n_groups] */
    int n_terms;           /* the terms that count; 0: such an example contributes nothing */
} sem_subset;

/* Incomplete data: models of at most this many modalities (the trainer
 * refuses incomplete data for the others). */
enum { MAX_OBSERVED_MODALITIES = 5 };

typedef struct {
    const char *name;
    double value, warmup_from, warmup_epochs;
    int used;
    const hyper_node *node;
} sem_hyper;

typedef enum { GRADIENT_REPARAM, GRADIENT_DREG } gradient_kind;

typedef struct {
    double lr, beta1, beta2, eps, clip;
    long batch, epochs, seed;
    long samples;           /* K: importance samples per draw (1: the ELBO) */
    gradient_kind gradient; /* DReG: the doubly-reparameterised gradient of the K-sample bound */
    loc samples_at;
} sem_train;

/* A family of posteriors: for every latent, one posterior given the same
 * modalities (eval's proposal for that set), or those the objective samples
 * from when no family holds them ("train"). A family of posteriors built
 * from experts (`given`) serves every subset its experts can make: its
 * functions take the subset at run time. */
typedef struct {
    unsigned condition;     /* the modalities read (all of them, for a `given` family) */
    int posts[MAX_LATENTS]; /* per latent: the posterior record (for `given`, the rule's over all of condition) */
    int nets[MAX_LATENTS];  /* per latent: its network when the posterior is a head, else -1 */
    int order[MAX_LATENTS]; /* latents in an order where each posterior's latent inputs come first */
    const char *name;       /* the C suffix: the modalities joined by '_', "train", or "given" */
    int given;              /* takes the subset at run time */
    loc at;                 /* where the spec defines its first posterior */
} sem_family;

typedef struct {
    const char *name;
    int n_modalities, n_latents, n_nets, n_terms, n_hypers;
    sem_modality *modalities;
    sem_latent *latents;
    sem_net *nets;
    sem_term *terms;
    sem_hyper *hypers;
    int n_posteriors, cap_posteriors;
    sem_posterior *posteriors;
    int n_rules;
    sem_rule *rules;
    int n_draws, cap_draws;
    sem_draw *draws;     /* the top level's in latent order first, then each loop instance's */
    int n_groups, cap_groups;
    sem_group *groups;
    sem_train train;
    int *net_order;      /* nets in an order where every net follows what it reads */
    int *latent_order;   /* latents in the order the objective samples them */
    int *prior_order;    /* latents top-down: every latent after those its prior reads */
    int n_families;
    sem_family *families;
    int training_family; /* the family the objective samples from */
    int n_subsets;       /* 2^n_modalities - 1, or 0 when there are too many modalities */
    sem_subset *subsets; /* the loss for each observed subset s: subsets[s - 1] */
    unsigned long long fingerprint;
} sem_model;

/* Checks c->spec; returns NULL (with diagnostics) when it has errors. */
sem_model *check_spec(ctx *c);
void model_dump(FILE *out, const sem_model *m);

/* observed.c: the loss of an example that observes only some modalities. */
const sem_subset *observed_subset(const sem_model *m, unsigned observed);
/* Whether every modality a posterior is conditioned on is in `o`. */
int condition_observed(const sem_model *m, int post, unsigned o);
/* Whether a posterior is available given the modalities `o`. */
int posterior_observed(const sem_model *m, int post, unsigned o);
/* The experts of a product (bit i: the rule's expert i) observed in `o`. */
unsigned product_observed_experts(const sem_model *m, int post, unsigned o);

/* "q(z | x, w)" for messages and dumps. */
const char *posterior_name(ctx *c, const sem_model *m, int post);
/* Is the posterior a Gaussian (a head or a product), not a mixture? */
int posterior_is_gaussian(const sem_model *m, int post);

/* names.c: the C suffix of a family, and the check that every identifier
 * the emitted files define is spelled well and defined once. */
const char *family_suffix(ctx *c, const sem_model *m, unsigned condition);
void check_emitted_names(ctx *c, const sem_model *m);


#endif
