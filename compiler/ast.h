/* ast.h: the syntax tree of a spec, the arena that owns it, and the
 * compilation context shared by every stage of the compiler.
 *
 * Ownership: every node, string and list of a compilation lives in the
 * context's arena and is freed at once by ctx_free, on success and on every
 * error path alike. */
#ifndef JMVAEC_AST_H
#define JMVAEC_AST_H

#include <stddef.h>
#include <stdio.h>

/* ---------------------------------------------------------------- arena -- */

typedef struct arena_block arena_block;
typedef struct {
    arena_block *head;
} arena;

void *arena_alloc(arena *a, size_t size); /* zeroed; aborts only if the system is out of memory */
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(arena *a);

/* A growable array of pointers, its storage in an arena. */
typedef struct {
    void **items;
    int n, cap;
} vec;
void vec_push(arena *a, vec *v, void *item);
/* An array of n items of `size` bytes (capacity *cap) with room for one
 * more: `items` itself, or a larger copy in the arena; item n is zeroed. */
void *arena_grow(arena *a, void *items, int n, int *cap, size_t size);

/* ------------------------------------------------------------- locations -- */

typedef struct {
    int line, col; /* 1-based; col counts bytes, tabs expand when printed */
} loc;

typedef struct {
    const char *text;
    loc at;
} ident;

/* ------------------------------------------------------------------ nodes -- */

/* q(target | given...) or p(target | given...), or a distribution bound
 * by a loop of the loss (`z ~ q_s` in `mean over q_s in components(...)`):
 * then family is 0 and target names the loop's variable. */
typedef struct {
    char family; /* 'q' (a posterior), 'p' (a prior or a likelihood), or 0 (a loop's variable) */
    ident target;
    vec given; /* of ident* */
    loc at;
} dist_ref;

typedef struct {
    const char *text; /* as written */
    double value;
    int is_integer;
    loc at;
} number;

/* A layer as written: a word and, when written with parentheses, its
 * arguments: `relu(512)`, `silu(conv(64, 4, stride=2, pad=1, bias=no))`,
 * `flatten`, `reshape(128, 7, 7)`. The checker gives the words their
 * meaning (ops.h's layer table). */
typedef struct layer_node layer_node;

typedef struct {
    ident key;          /* text NULL: a positional argument */
    number *num;        /* an integer, or NULL */
    ident word;         /* a word (bias=no), text NULL when absent */
    layer_node *call;   /* a layer written inside: conv(...) in silu(conv(...)), or NULL */
    loc at;
} layer_arg;

struct layer_node {
    ident word;
    int has_call;       /* written with parentheses */
    vec args;           /* of layer_arg* */
    loc at;
};

typedef enum { COMBINE_ONE, COMBINE_CONCAT, COMBINE_SUM } combine_kind;

typedef struct {
    ident name;
    combine_kind combine;
    vec inputs; /* of ident* */
    vec layers; /* of layer_node* */
    dist_ref *head; /* NULL for a feature network */
    ident variance; /* "softplus" or "logvar"; text NULL when not written */
    loc at;
} net_node;

typedef struct {
    ident name;
    vec dims; /* of number*: [size] or [height, width] */
    ident likelihood;
    ident likelihood_arg; /* gaussian(learned); text NULL when absent */
    loc at;
} modality_node;

typedef struct {
    ident name;
    number *size;
    dist_ref *prior; /* NULL: standard normal */
    ident prior_name; /* "normal" when prior is NULL */
    loc at;
} latent_node;

typedef struct {
    ident name;
    number *value;
    number *warmup_from;   /* NULL: no warm-up */
    number *warmup_epochs;
    loc at;
} hyper_node;

/* q(z | x, w) = poe(p(z), q(z | x), q(z | w)): a posterior defined from
 * other posteriors of its latent (the experts) by a rule of ops.c's table. */
typedef struct {
    dist_ref *target;
    ident rule;
    vec experts; /* of dist_ref* */
    loc at;
} rule_node;

/* mean over S in subsets(x, w) { ... }, sum over S in (x, w), (x), (w) { ... },
 * mean over q_s in components(q(z | x, w)) { ... }: the samples and terms
 * of the body, once for each set (or mixture component). */
/* LOOP_GIVEN: `given (x) { ... }`, the loss of examples that observe only
 * those modalities (one instance, no variable). */
typedef enum { LOOP_SETS, LOOP_SUBSETS, LOOP_COMPONENTS, LOOP_GIVEN } loop_kind;

typedef struct {
    ident combine;  /* "mean" or "sum" */
    ident var;
    loop_kind kind;
    ident func;     /* LOOP_SUBSETS, LOOP_COMPONENTS: the word before '(' */
    vec sets;       /* LOOP_SETS: of vec* (each of ident*); LOOP_SUBSETS, LOOP_GIVEN: one vec, the names */
    dist_ref *of;   /* LOOP_COMPONENTS: the mixture */
    loc at, end;    /* at: the combine word; end: the closing brace */
} loop_node;

typedef enum { TERM_NLL, TERM_KL, TERM_KL_SAMPLE } term_kind;

typedef struct {
    ident name;
    number *weight_const; /* at most one of weight_const and weight_hyper */
    ident weight_hyper;
    term_kind kind;
    dist_ref *a; /* the likelihood for NLL; the first distribution for KL */
    dist_ref *b; /* the second distribution for KL */
    const loop_node *loop; /* the loop it is in, or NULL */
    ident guard;           /* `if x in S`: the modality (text NULL without a guard) */
    ident guard_set;       /* and the loop's variable */
    loc at;
} term_node;

typedef struct {
    ident latent;
    dist_ref *from;
    const loop_node *loop; /* the loop it is in, or NULL */
    loc at;
} sample_node;

typedef struct {
    ident key;
    number *value;     /* a number, or */
    ident word;        /* a name, or */
    vec args;          /* key = number pairs of optimizer = adam(...) (of setting_node*) */
    int has_call;
    loc at;
} setting_node;

typedef struct {
    ident name;
    vec modalities; /* of modality_node* */
    vec latents;    /* of latent_node* */
    vec nets;       /* of net_node* */
    vec hypers;     /* of hyper_node* */
    vec rules;      /* of rule_node* */
    vec loops;      /* of loop_node*, in source order */
    vec samples;    /* of sample_node* */
    vec terms;      /* of term_node* */
    vec settings;   /* of setting_node* */
    int n_loss_blocks, n_train_blocks;
    loc loss_at, train_at;
} spec_node;

typedef struct {
    const char *text; /* with its '#' or slash-star delimiters */
    loc at;
} comment;

/* ---------------------------------------------------------- compilation -- */

typedef struct {
    arena mem;
    const char *path;   /* as given, for messages */
    const char *source; /* whole file, NUL-terminated copy (may contain NULs before its end) */
    size_t source_len;
    spec_node *spec;
    int n_errors, n_warnings;
    FILE *diag_out;
    int max_errors;
    loc comment_start; /* of the block comment being scanned */
    vec comments;      /* of comment*, in source order, kept for fmt */
    loop_node *loop;   /* the parser's: the loop whose body it is in, or NULL */
    vec diagnostics;   /* of char*: every diagnostic given, so that none is given twice */
    long samples_override;   /* jmvaec --samples K: instead of the spec's train { samples }, or 0 */
    int gradient_override;   /* jmvaec --gradient: a gradient_kind instead of the spec's, or -1 */
    double split_mflop;      /* jmvaec --split-mflop: the size of a GEMM cut into tasks (split.c), or -1: the default */
    size_t comment_offset, token_offset, scan_offset; /* byte offsets kept by the scanner */
} ctx;

void ctx_init(ctx *c, const char *path, FILE *diag_out);
void ctx_free(ctx *c);
/* Reads path into c->source. Returns 0, or -1 with a message printed. */
int ctx_read_file(ctx *c);
void ctx_set_source(ctx *c, const char *text, size_t len);

void diag_error(ctx *c, loc at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_warning(ctx *c, loc at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_note(ctx *c, loc at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* parser.y: parses c->source into c->spec; returns the number of errors. */
int parse_spec(ctx *c);

/* ast_print.c */
void ast_dump(FILE *out, const spec_node *s, int with_locations);
void ast_format(FILE *out, const ctx *c);
void print_dist(FILE *out, const dist_ref *d);

#endif
