/* model.h: the checked model. The checker (check.c) resolves every name of
 * the syntax tree and fills these tables; lowering (lower.c) reads only
 * them. Indices refer to the tables of the same model. */
#ifndef JMVAEC_MODEL_H
#define JMVAEC_MODEL_H

#include "ast.h"

enum { MAX_MODALITIES = 16, MAX_LATENTS = 16 };

/* Each likelihood, activation and variance is a row of the operation table
 * (ops.c), in this order; the last value counts them. */
typedef enum { LIK_BERNOULLI, LIK_CATEGORICAL, LIK_GAUSSIAN, LIK_GAUSSIAN_LEARNED, N_LIKELIHOODS } likelihood_kind;
typedef enum {
    ACT_LINEAR, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SOFTPLUS, ACT_TANH, ACT_SIGMOID, ACT_SILU, N_ACTIVATIONS
} activation_kind;
typedef enum { VAR_SOFTPLUS, VAR_LOGVAR, N_VARIANCES } variance_kind;
typedef enum { HEAD_NONE, HEAD_POSTERIOR, HEAD_PRIOR, HEAD_LIKELIHOOD } head_kind;
typedef enum { SRC_MODALITY, SRC_LATENT, SRC_NET } source_kind;

typedef struct {
    const char *name;
    int size, height, width;
    likelihood_kind likelihood;
    const modality_node *node;
} sem_modality;

typedef struct {
    const char *name;
    int size;
    int prior_net;     /* -1: standard normal */
    int sample_net;    /* the posterior the objective samples from */
    const latent_node *node;
    const sample_node *sample;
} sem_latent;

typedef struct {
    source_kind kind;
    int index;
    int size;
} sem_source;

typedef struct {
    activation_kind activation;
    int width;
    const layer_node *node;
} sem_layer;

typedef struct {
    const char *name;
    combine_kind combine;
    int n_inputs;
    sem_source inputs[MAX_MODALITIES + MAX_LATENTS];
    int input_size;    /* the width the first layer reads */
    int n_layers;
    sem_layer *layers;
    int feature_size;  /* what a reader of this net gets: the last layer's width */
    head_kind head;
    int target;        /* latent or modality index */
    variance_kind variance;
    int head_size;     /* outputs of the head's affine map */
    unsigned modalities_read; /* transitively */
    unsigned latents_read;    /* transitively */
    int used;
    int broken;        /* an input did not resolve: checks that depend on it are skipped */
    const net_node *node;
} sem_net;

typedef enum { DIST_POSTERIOR, DIST_PRIOR_NET, DIST_STANDARD_NORMAL, DIST_LIKELIHOOD } dist_kind;

typedef struct {
    dist_kind kind;
    int net;      /* -1 for the standard normal */
    int latent;   /* for Gaussians over a latent */
    int modality; /* for likelihoods */
} sem_dist;

typedef struct {
    const char *name;
    term_kind kind;
    double weight;     /* when hyper < 0 */
    int hyper;
    sem_dist a, b;
    const term_node *node;
} sem_term;

typedef struct {
    const char *name;
    double value, warmup_from, warmup_epochs;
    int used;
    const hyper_node *node;
} sem_hyper;

typedef struct {
    double lr, beta1, beta2, eps, clip;
    long batch, epochs, seed;
} sem_train;

/* A family of posteriors: for every latent, one posterior net conditioned on
 * the same modalities (eval's proposal for that set), or the nets the
 * objective samples from when no family holds them ("train"). */
typedef struct {
    unsigned condition;     /* the modalities read */
    int nets[MAX_LATENTS];  /* per latent */
    int order[MAX_LATENTS]; /* latents in an order where each posterior's latent inputs come first */
    const char *name;       /* the C suffix: the modalities joined by '_', or "train" */
} sem_family;

typedef struct {
    const char *name;
    int n_modalities, n_latents, n_nets, n_terms, n_hypers;
    sem_modality *modalities;
    sem_latent *latents;
    sem_net *nets;
    sem_term *terms;
    sem_hyper *hypers;
    sem_train train;
    int *net_order;      /* nets in an order where every net follows what it reads */
    int *latent_order;   /* latents in the order the objective samples them */
    int *prior_order;    /* latents top-down: every latent after those its prior reads */
    int n_families;
    sem_family *families;
    int training_family; /* the family the objective samples from */
    unsigned long long fingerprint;
} sem_model;

/* Checks c->spec; returns NULL (with diagnostics) when it has errors. */
sem_model *check_spec(ctx *c);
void model_dump(FILE *out, const sem_model *m);

/* names.c: the C suffix of a family, and the check that every identifier
 * the emitted files define is spelled well and defined once. */
const char *family_suffix(ctx *c, const sem_model *m, unsigned condition);
void check_emitted_names(ctx *c, const sem_model *m);


#endif
