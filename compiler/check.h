/* check.h: what the checker's files share (check.c: names, networks, heads,
 * priors, settings, usage and families; posterior.c: posteriors as records
 * and the rules that build them from experts; check_loss.c: the loss, its
 * loops, draws and terms). Nothing outside the checker includes it. */
#ifndef JMVAEC_CHECK_H
#define JMVAEC_CHECK_H

#include "model.h"

enum { MAX_SIZE = 1000000, MAX_NETS = 256 };

typedef enum { NAME_MODALITY, NAME_LATENT, NAME_NET, NAME_HYPER } name_kind;
extern const char *const kind_names[]; /* "a modality", ... by name_kind */

typedef struct {
    const char *text;
    name_kind kind;
    int index;
    loc at;
} name_entry;

typedef struct {
    ctx *c;
    sem_model *m;
    name_entry *names;
    int n_names;
    int *net_post;          /* per net: its head's posterior record, or -1 */
    /* the loop instance whose body is being checked (loop_var NULL outside loops) */
    const char *loop_var;
    unsigned loop_set;      /* the variable's modalities */
    int loop_component;     /* a loop over components: the posterior the variable stands for; else -1 */
} checker;

const name_entry *lookup(const checker *k, const char *text);
/* Resolves a name that must be of one kind; -1 (reported) otherwise. */
int resolve(checker *k, ident id, name_kind want, const char *role);
/* "a, b or c": the n words, each once, for "expecting ..." messages. */
const char *word_list(ctx *c, const char *const *words, int n);
/* The modalities and latents named after '|' (a loop's set variable stands for its set). */
void given_sets(checker *k, const dist_ref *d, unsigned *mods, unsigned *lats);
/* "x, w, z": the modalities and latents of two sets, for messages. */
const char *mask_names(ctx *c, const sem_model *m, unsigned mods, unsigned lats);
/* The net whose head is exactly this distribution; -1 when none. */
int find_head(const sem_model *m, head_kind head, int target, unsigned mods, unsigned lats);
/* Resolves q(...)/p(...) (or a loop's variable) in the loss or a latent's
 * prior; -1 after reporting why not. */
int resolve_dist(checker *k, const dist_ref *d, sem_dist *out);

/* posterior.c */
/* A record for every posterior head. */
void make_head_posteriors(checker *k);
/* The rules `q(z | ...) = rule(experts)`, checked; each latent's at most one. */
void check_rules(checker *k);
/* The posterior q(latent | mods, lats): the rule's when the latent has one
 * that makes it, else a head's; -1 when none (not reported). */
int posterior_for(checker *k, int latent, unsigned mods, unsigned lats);
/* The posteriors (with their networks) a posterior record reads, marked used. */
void mark_posterior_used(sem_model *m, int post, void (*mark_net)(sem_model *, int));

/* check_loss.c: the loss's samples, loops and terms: draws, groups and
 * terms of the model. */
void check_loss(checker *k);
/* With samples = K > 1, every term is a log density at the samples. */
void check_importance_weighted(checker *k);

/* observed.c: the loss of each observed subset (sem_model.subsets). */
void check_observed(checker *k);

#endif
