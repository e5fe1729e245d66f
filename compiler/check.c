/* check.c: name resolution and semantic checks; builds the sem_model.
 * Every diagnostic listed in grammar/README.md comes from this file or from
 * the parser. Checking goes on after an error, so that one run reports as
 * many as it can. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops.h"

enum { MAX_SIZE = 1000000, MAX_NETS = 256 };

typedef enum { NAME_MODALITY, NAME_LATENT, NAME_NET, NAME_HYPER } name_kind;
static const char *const kind_names[] = {"a modality", "a latent", "a network", "a hyperparameter"};

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
} checker;

/* ---------------------------------------------------------------- names -- */

static const name_entry *lookup(const checker *k, const char *text)
{
    for (int i = 0; i < k->n_names; i++)
        if (strcmp(k->names[i].text, text) == 0)
            return &k->names[i];
    return NULL;
}

static void declare(checker *k, ident id, name_kind kind, int index)
{
    const name_entry *old = lookup(k, id.text);
    if (old) {
        diag_error(k->c, id.at, "'%s' is already declared as %s at line %d", id.text, kind_names[old->kind],
                   old->at.line);
        return;
    }
    k->names[k->n_names++] = (name_entry){id.text, kind, index, id.at};
}

/* Resolves a name that must be of one kind; -1 (reported) otherwise. */
static int resolve(checker *k, ident id, name_kind want, const char *role)
{
    const name_entry *e = lookup(k, id.text);
    if (!e) {
        diag_error(k->c, id.at, "'%s' is not declared; %s must be %s", id.text, role, kind_names[want]);
        return -1;
    }
    if (e->kind != want) {
        diag_error(k->c, id.at, "'%s' is %s, but %s must be %s", id.text, kind_names[e->kind], role,
                   kind_names[want]);
        return -1;
    }
    return e->index;
}

/* "a, b or c": the n words, each once, for "expecting ..." messages. */
static const char *word_list(ctx *c, const char *const *words, int n)
{
    const char *list = "", *last = NULL;
    int count = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= strcmp(words[j], words[i]) == 0;
        if (seen)
            continue;
        if (last)
            list = arena_printf(&c->mem, "%s%s%s", list, count > 1 ? ", " : "", last);
        last = words[i];
        count++;
    }
    return count > 1 ? arena_printf(&c->mem, "%s or %s", list, last) : last ? last : "";
}

static int check_size(checker *k, const number *n, const char *what)
{
    if (n->value < 1 || n->value > MAX_SIZE) {
        diag_error(k->c, n->at, "%s %s is out of range (1 to %d)", what, n->text, MAX_SIZE);
        return 1;
    }
    return (int)n->value;
}

/* ----------------------------------------------------------- modalities -- */

static void check_modality(checker *k, const modality_node *node, sem_modality *out)
{
    out->name = node->name.text;
    out->node = node;
    long size = 1;
    for (int i = 0; i < node->dims.n; i++) { /* each factor at most MAX_SIZE: the product saturates, never overflows */
        size *= check_size(k, node->dims.items[i], "size");
        size = size > MAX_SIZE ? (long)MAX_SIZE + 1 : size;
    }
    if (node->dims.n > 2)
        diag_error(k->c, node->at, "modality '%s' has %d dimensions; write [size] or [height, width]",
                   node->name.text, node->dims.n);
    if (size > MAX_SIZE) {
        diag_error(k->c, node->at, "modality '%s' has more than %d values", node->name.text, MAX_SIZE);
        size = 1;
    }
    out->size = (int)size;
    if (node->dims.n == 2) {
        out->height = (int)((number *)node->dims.items[0])->value;
        out->width = (int)((number *)node->dims.items[1])->value;
    }
    const char *words[N_LIKELIHOODS], *with_arg[N_LIKELIHOODS];
    int n_with_arg = 0;
    for (int i = 0; i < N_LIKELIHOODS; i++) {
        words[i] = likelihood_table[i].word;
        if (likelihood_table[i].arg)
            with_arg[n_with_arg++] = likelihood_table[i].name;
    }
    int lik = find_likelihood(node->likelihood.text, NULL), known = 0;
    for (int i = 0; i < N_LIKELIHOODS; i++)
        known |= strcmp(words[i], node->likelihood.text) == 0;
    if (!known)
        diag_error(k->c, node->likelihood.at, "unknown likelihood '%s'; expecting %s", node->likelihood.text,
                   word_list(k->c, words, N_LIKELIHOODS));
    if (node->likelihood_arg.text) {
        int with = find_likelihood(node->likelihood.text, node->likelihood_arg.text);
        if (with >= 0)
            lik = with;
        else if (known)
            diag_error(k->c, node->likelihood_arg.at, "'%s(%s)' is not a likelihood; only %s takes an argument",
                       node->likelihood.text, node->likelihood_arg.text, word_list(k->c, with_arg, n_with_arg));
    }
    out->likelihood = (likelihood_kind)(lik < 0 ? 0 : lik);
    if (out->likelihood == LIK_CATEGORICAL && out->size < 2)
        diag_error(k->c, node->at, "categorical modality '%s' needs at least 2 classes", out->name);
}

/* -------------------------------------------------------------- networks -- */

static void check_layers(checker *k, const net_node *node, sem_net *net)
{
    net->n_layers = node->layers.n;
    net->layers = arena_alloc(&k->c->mem, sizeof(sem_layer) * (size_t)(node->layers.n + 1));
    for (int i = 0; i < node->layers.n; i++) {
        const layer_node *l = node->layers.items[i];
        int act = find_activation(l->activation.text);
        if (act < 0) {
            const char *words[N_ACTIVATIONS];
            for (int a = 0; a < N_ACTIVATIONS; a++)
                words[a] = activation_table[a].name;
            diag_error(k->c, l->activation.at, "unknown activation '%s'; expecting %s", l->activation.text,
                       word_list(k->c, words, N_ACTIVATIONS));
            act = 0;
        }
        int width = (int)l->width;
        if (l->width < 1 || l->width > MAX_SIZE) {
            diag_error(k->c, l->at, "layer width %ld is out of range (1 to %d)", l->width, MAX_SIZE);
            width = 1;
        }
        net->layers[i] = (sem_layer){(activation_kind)act, width, l};
    }
}

static void check_net_inputs(checker *k, const net_node *node, sem_net *net, int self)
{
    net->combine = node->combine;
    for (int i = 0; i < node->inputs.n && i < MAX_MODALITIES + MAX_LATENTS; i++) {
        const ident *id = node->inputs.items[i];
        const name_entry *e = lookup(k, id->text);
        sem_source *s = &net->inputs[net->n_inputs];
        if (!e) {
            diag_error(k->c, id->at, "'%s' is not declared; a network reads modalities, latents or networks", id->text);
            net->broken = 1;
            continue;
        }
        if (e->kind == NAME_HYPER) {
            diag_error(k->c, id->at, "'%s' is a hyperparameter; a network reads modalities, latents or networks", id->text);
            net->broken = 1;
            continue;
        }
        if (e->kind == NAME_NET && e->index == self) {
            diag_error(k->c, id->at, "network '%s' reads itself", id->text);
            net->broken = 1;
            continue;
        }
        for (int j = 0; j < net->n_inputs; j++)
            if (net->inputs[j].kind == (source_kind)e->kind && net->inputs[j].index == e->index)
                diag_error(k->c, id->at, "'%s' is read twice by network '%s'", id->text, net->name);
        s->kind = e->kind == NAME_MODALITY ? SRC_MODALITY : e->kind == NAME_LATENT ? SRC_LATENT : SRC_NET;
        s->index = e->index;
        net->n_inputs++;
    }
    if (node->inputs.n > MAX_MODALITIES + MAX_LATENTS)
        diag_error(k->c, node->at, "network '%s' reads more than %d inputs", net->name, MAX_MODALITIES + MAX_LATENTS);
}

/* Orders the nets so that each follows the nets it reads; reports a cycle. */
static int order_nets(checker *k)
{
    sem_model *m = k->m;
    int *state = calloc((size_t)m->n_nets, sizeof *state); /* 0 new, 1 placed */
    int placed = 0, progress = 1;
    while (progress && placed < m->n_nets) {
        progress = 0;
        for (int i = 0; i < m->n_nets; i++) {
            if (state[i])
                continue;
            int ready = 1;
            for (int j = 0; j < m->nets[i].n_inputs; j++)
                if (m->nets[i].inputs[j].kind == SRC_NET && !state[m->nets[i].inputs[j].index])
                    ready = 0;
            if (ready) {
                state[i] = 1;
                m->net_order[placed++] = i;
                progress = 1;
            }
        }
    }
    for (int i = 0; i < m->n_nets && placed < m->n_nets; i++)
        if (!state[i]) {
            diag_error(k->c, m->nets[i].node->at, "network '%s' is part of a cycle of networks reading each other",
                       m->nets[i].name);
            break;
        }
    free(state);
    return placed == m->n_nets;
}

/* Sizes and what each net reads transitively, in dependency order. */
static void size_nets(checker *k)
{
    sem_model *m = k->m;
    for (int o = 0; o < m->n_nets; o++) {
        sem_net *n = &m->nets[m->net_order[o]];
        int total = 0, first = -1;
        for (int j = 0; j < n->n_inputs; j++) {
            sem_source *s = &n->inputs[j];
            if (s->kind == SRC_MODALITY) {
                s->size = m->modalities[s->index].size;
                n->modalities_read |= 1u << s->index;
            } else if (s->kind == SRC_LATENT) {
                s->size = m->latents[s->index].size;
                n->latents_read |= 1u << s->index;
            } else {
                const sem_net *src = &m->nets[s->index];
                s->size = src->feature_size;
                n->broken |= src->broken;
                if (src->n_layers == 0) {
                    diag_error(k->c, n->node->at, "network '%s' reads network '%s', which has no layers: no features to read",
                               n->name, src->name);
                    n->broken = 1;
                }
                n->modalities_read |= src->modalities_read;
                n->latents_read |= src->latents_read;
            }
            total += s->size;
            if (n->combine == COMBINE_SUM && first >= 0 && s->size != first)
                diag_error(k->c, n->node->at, "sum(...) in network '%s' needs inputs of one size, but they are %d and %d",
                           n->name, first, s->size);
            if (first < 0)
                first = s->size;
        }
        n->input_size = n->combine == COMBINE_SUM ? first : total;
        n->feature_size = n->n_layers ? n->layers[n->n_layers - 1].width : n->input_size;
        if (n->n_layers == 0 && !n->node->head)
            diag_error(k->c, n->node->at, "network '%s' has neither layers nor a head", n->name);
    }
}

/* The modalities and latents named after '|'. */
static void given_sets(checker *k, const dist_ref *d, unsigned *mods, unsigned *lats)
{
    *mods = *lats = 0;
    for (int i = 0; i < d->given.n; i++) {
        const ident *id = d->given.items[i];
        const name_entry *e = lookup(k, id->text);
        if (!e) {
            diag_error(k->c, id->at, "'%s' is not declared; a distribution is conditioned on modalities or latents", id->text);
        } else if (e->kind == NAME_MODALITY || e->kind == NAME_LATENT) {
            unsigned *set = e->kind == NAME_MODALITY ? mods : lats;
            if (*set & (1u << e->index))
                diag_error(k->c, id->at, "'%s' is named twice after '|'", id->text);
            *set |= 1u << e->index;
        } else {
            diag_error(k->c, id->at, "'%s' is %s; a distribution is conditioned on modalities or latents",
                       id->text, kind_names[e->kind]);
        }
    }
}

/* "x, w, z": the modalities and latents of two sets, for messages (any length). */
static const char *mask_names(ctx *c, const sem_model *m, unsigned mods, unsigned lats)
{
    const char *s = "";
    for (int i = 0; i < m->n_modalities; i++)
        if (mods & (1u << i))
            s = arena_printf(&c->mem, "%s%s%s", s, *s ? ", " : "", m->modalities[i].name);
    for (int i = 0; i < m->n_latents; i++)
        if (lats & (1u << i))
            s = arena_printf(&c->mem, "%s%s%s", s, *s ? ", " : "", m->latents[i].name);
    return *s ? s : "nothing";
}

static void check_head(checker *k, sem_net *n)
{
    const dist_ref *h = n->node->head;
    sem_model *m = k->m;
    if (!h) { /* the grammar allows var= only after a head */
        n->head = HEAD_NONE;
        return;
    }
    const name_entry *e = lookup(k, h->target.text);
    if (!e || (e->kind != NAME_LATENT && e->kind != NAME_MODALITY)) {
        diag_error(k->c, h->target.at, "'%s' is %s; a head names a distribution over a latent or a modality",
                   h->target.text, e ? kind_names[e->kind] : "not declared");
        return;
    }
    n->target = e->index;
    if (h->family == 'q')
        n->head = e->kind == NAME_LATENT ? HEAD_POSTERIOR : HEAD_NONE;
    else
        n->head = e->kind == NAME_LATENT ? HEAD_PRIOR : HEAD_LIKELIHOOD;
    if (n->head == HEAD_NONE) {
        diag_error(k->c, h->at, "q(...) is a posterior over a latent, but '%s' is a modality; write p(%s | ...) for its likelihood",
                   h->target.text, h->target.text);
        return;
    }
    unsigned mods, lats;
    given_sets(k, h, &mods, &lats);
    if (n->head != HEAD_POSTERIOR && n->modalities_read)
        diag_error(k->c, h->at, "p(%s | ...) is part of the generative model and may read latents only, but network '%s' reads modalities",
                   h->target.text, n->name);
    if (n->broken || (mods == n->modalities_read && lats == n->latents_read)) {
        /* the head names exactly what the net reads */
    } else {
        diag_error(k->c, h->at, "the head conditions on %s, but network '%s' reads %s", mask_names(k->c, m, mods, lats),
                   n->name, mask_names(k->c, m, n->modalities_read, n->latents_read));
    }
    if (n->head == HEAD_PRIOR && (lats & (1u << n->target)))
        diag_error(k->c, h->at, "p(%s | ...) is conditioned on %s itself", h->target.text, h->target.text);
    if (n->head == HEAD_POSTERIOR && (n->latents_read & (1u << n->target)))
        diag_error(k->c, h->at, "q(%s | ...) reads the sample of %s itself", h->target.text, h->target.text);

    int gaussian = n->head != HEAD_LIKELIHOOD || likelihood_table[m->modalities[n->target].likelihood].has_logvar;
    int size = n->head == HEAD_LIKELIHOOD ? m->modalities[n->target].size : m->latents[n->target].size;
    n->head_size = gaussian ? 2 * size : size;
    n->variance = VAR_SOFTPLUS;
    if (n->node->variance.text) {
        int v = find_variance(n->node->variance.text);
        const char *words[N_VARIANCES];
        for (int i = 0; i < N_VARIANCES; i++)
            words[i] = variance_table[i].name;
        if (!gaussian)
            diag_error(k->c, n->node->variance.at, "this head has no variance: %s has a %s likelihood",
                       h->target.text, likelihood_table[m->modalities[n->target].likelihood].name);
        else if (v < 0)
            diag_error(k->c, n->node->variance.at, "unknown variance '%s'; expecting %s", n->node->variance.text,
                       word_list(k->c, words, N_VARIANCES));
        else
            n->variance = (variance_kind)v;
    }
}

/* The net whose head is exactly this distribution; -1 when none. */
static int find_head(const sem_model *m, head_kind head, int target, unsigned mods, unsigned lats)
{
    for (int i = 0; i < m->n_nets; i++) {
        const sem_net *n = &m->nets[i];
        if (n->head == head && n->target == target && n->latents_read == lats && n->modalities_read == mods)
            return i;
    }
    /* a net whose inputs did not resolve may be the one meant: no second error */
    for (int i = 0; i < m->n_nets; i++)
        if (m->nets[i].broken && m->nets[i].head == head && m->nets[i].target == target)
            return i;
    return -1;
}

static void check_duplicate_heads(checker *k)
{
    const sem_model *m = k->m;
    for (int i = 0; i < m->n_nets; i++)
        for (int j = 0; j < i; j++) {
            const sem_net *a = &m->nets[i], *b = &m->nets[j];
            if (a->head != HEAD_NONE && a->head == b->head && a->target == b->target &&
                a->modalities_read == b->modalities_read && a->latents_read == b->latents_read)
                diag_error(k->c, a->node->head->at, "this distribution is already the head of network '%s' (line %d)",
                           b->name, b->node->at.line);
        }
}

/* ------------------------------------------------------- distributions -- */

/* Resolves q(...)/p(...) in the loss or a latent's prior. */
static int resolve_dist(checker *k, const dist_ref *d, sem_dist *out)
{
    const sem_model *m = k->m;
    const name_entry *e = lookup(k, d->target.text);
    out->net = -1;
    out->latent = out->modality = -1;
    if (!e || (e->kind != NAME_LATENT && e->kind != NAME_MODALITY)) {
        diag_error(k->c, d->target.at, "'%s' is %s; a distribution is over a latent or a modality", d->target.text,
                   e ? kind_names[e->kind] : "not declared");
        return -1;
    }
    unsigned mods, lats;
    int errors_before = k->c->n_errors;
    given_sets(k, d, &mods, &lats);
    if (k->c->n_errors > errors_before)
        return -1; /* already reported: no second error for the same distribution */
    if (e->kind == NAME_MODALITY) {
        if (d->family == 'q') {
            diag_error(k->c, d->at, "q(...) is a posterior over a latent, but '%s' is a modality", d->target.text);
            return -1;
        }
        out->kind = DIST_LIKELIHOOD;
        out->modality = e->index;
        out->net = find_head(m, HEAD_LIKELIHOOD, e->index, mods, lats);
    } else if (d->family == 'q') {
        out->kind = DIST_POSTERIOR;
        out->latent = e->index;
        out->net = find_head(m, HEAD_POSTERIOR, e->index, mods, lats);
    } else {
        out->latent = e->index;
        const sem_latent *l = &m->latents[e->index];
        if (mods) {
            diag_error(k->c, d->at, "p(%s | ...) is a prior and cannot be conditioned on modalities", d->target.text);
            return -1;
        }
        if (!l->node->prior && !lats) {
            out->kind = DIST_STANDARD_NORMAL;
            return 0;
        }
        out->kind = DIST_PRIOR_NET;
        if (l->node->prior && !lats) {
            diag_error(k->c, d->at, "the prior of '%s' is conditional: write p(%s | ...) as its declaration does",
                       d->target.text, d->target.text);
            return -1;
        }
        if (!l->node->prior) {
            diag_error(k->c, d->at, "the prior of '%s' is normal, written p(%s)", d->target.text, d->target.text);
            return -1;
        }
        out->net = find_head(m, HEAD_PRIOR, e->index, 0, lats);
    }
    if (out->net < 0) {
        diag_error(k->c, d->at, "no network has this distribution as its head");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- latents -- */

static void check_latent_priors(checker *k)
{
    sem_model *m = k->m;
    for (int i = 0; i < m->n_latents; i++) {
        sem_latent *l = &m->latents[i];
        l->prior_net = -1;
        if (!l->node->prior) {
            if (strcmp(l->node->prior_name.text, "normal") != 0)
                diag_error(k->c, l->node->prior_name.at, "unknown prior '%s'; expecting normal or p(%s | ...)",
                           l->node->prior_name.text, l->name);
            continue;
        }
        const dist_ref *d = l->node->prior;
        if (d->family != 'p' || strcmp(d->target.text, l->name) != 0 || d->given.n == 0) {
            diag_error(k->c, d->at, "the prior of '%s' must be normal or p(%s | higher latents)", l->name, l->name);
            continue;
        }
        sem_dist dist;
        if (resolve_dist(k, d, &dist) == 0)
            l->prior_net = dist.net;
    }
    /* top-down order: a latent after those its prior reads; a cycle is an error */
    int placed = 0, progress = 1;
    unsigned done = 0;
    while (progress && placed < m->n_latents) {
        progress = 0;
        for (int i = 0; i < m->n_latents; i++) {
            if (done & (1u << i))
                continue;
            unsigned needs = m->latents[i].prior_net >= 0 ? m->nets[m->latents[i].prior_net].latents_read : 0;
            if ((needs & ~done) == 0) {
                done |= 1u << i;
                m->prior_order[placed++] = i;
                progress = 1;
            }
        }
    }
    for (int i = 0; i < m->n_latents && placed < m->n_latents; i++)
        if (!(done & (1u << i))) {
            diag_error(k->c, m->latents[i].node->at, "the prior of '%s' is part of a cycle in the latent hierarchy",
                       m->latents[i].name);
            break;
        }
}

/* Each latent is sampled once, from one of its posteriors, in an order where
 * every posterior's inputs are sampled first. */
static void check_samples(checker *k)
{
    sem_model *m = k->m;
    const spec_node *s = k->c->spec;
    for (int i = 0; i < m->n_latents; i++)
        m->latents[i].sample_net = -1;
    for (int i = 0; i < s->samples.n; i++) {
        const sample_node *sn = s->samples.items[i];
        int l = resolve(k, sn->latent, NAME_LATENT, "what is sampled");
        if (l < 0)
            continue;
        if (m->latents[l].sample) {
            diag_error(k->c, sn->at, "'%s' is already sampled at line %d", sn->latent.text, m->latents[l].sample->at.line);
            continue;
        }
        m->latents[l].sample = sn;
        sem_dist d;
        if (resolve_dist(k, sn->from, &d) != 0)
            continue;
        if (d.kind != DIST_POSTERIOR || d.latent != l) {
            diag_error(k->c, sn->from->at, "'%s' must be sampled from one of its posteriors q(%s | ...)", sn->latent.text,
                       sn->latent.text);
            continue;
        }
        m->latents[l].sample_net = d.net;
    }
    int ok = 1;
    for (int i = 0; i < m->n_latents; i++)
        if (m->latents[i].sample_net < 0 && !m->latents[i].sample && k->c->spec->n_loss_blocks) {
            diag_error(k->c, m->latents[i].node->at, "latent '%s' is never sampled; add '%s ~ q(%s | ...)' to the loss",
                       m->latents[i].name, m->latents[i].name, m->latents[i].name);
            ok = 0;
        } else if (m->latents[i].sample_net < 0) {
            ok = 0;
        }
    if (!ok)
        return;
    unsigned done = 0;
    int placed = 0, progress = 1;
    while (progress && placed < m->n_latents) {
        progress = 0;
        for (int i = 0; i < m->n_latents; i++)
            if (!(done & (1u << i)) && (m->nets[m->latents[i].sample_net].latents_read & ~done) == 0) {
                done |= 1u << i;
                m->latent_order[placed++] = i;
                progress = 1;
            }
    }
    if (placed < m->n_latents)
        for (int i = 0; i < m->n_latents; i++)
            if (!(done & (1u << i))) {
                diag_error(k->c, m->latents[i].sample->at, "the sample of '%s' depends on itself through other samples",
                           m->latents[i].name);
                break;
            }
}

/* The latents whose training samples depend, through posteriors, on the sample of `l`. */
static unsigned samples_depending_on(const sem_model *m, int l)
{
    unsigned dep = 1u << l;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < m->n_latents; i++) {
            int net = m->latents[i].sample_net;
            if (net >= 0 && !(dep & (1u << i)) && (m->nets[net].latents_read & dep)) {
                dep |= 1u << i;
                changed = 1;
            }
        }
    }
    return dep & ~(1u << l);
}

/* ------------------------------------------------------------------ terms -- */

static int same_dist(const sem_dist *a, const sem_dist *b)
{
    return a->kind == b->kind && a->net == b->net && a->latent == b->latent && a->modality == b->modality;
}

static int is_gaussian_over_latent(const sem_dist *d)
{
    return d->kind == DIST_POSTERIOR || d->kind == DIST_PRIOR_NET || d->kind == DIST_STANDARD_NORMAL;
}

static void check_kl_term(checker *k, sem_term *t)
{
    const sem_model *m = k->m;
    const term_node *node = t->node;
    if (!is_gaussian_over_latent(&t->a) || !is_gaussian_over_latent(&t->b)) {
        diag_error(k->c, node->at, "KL terms are between Gaussians over latents; a modality's likelihood is not one");
        return;
    }
    if (m->latents[t->a.latent].size != m->latents[t->b.latent].size) {
        diag_error(k->c, node->at, "KL between Gaussians of different sizes: %s has %d, %s has %d",
                   m->latents[t->a.latent].name, m->latents[t->a.latent].size, m->latents[t->b.latent].name,
                   m->latents[t->b.latent].size);
        return;
    }
    if (t->a.latent != t->b.latent) {
        diag_error(k->c, node->at, "a KL term compares two distributions over one latent, but these are over %s and %s",
                   m->latents[t->a.latent].name, m->latents[t->b.latent].name);
        return;
    }
    int z = t->a.latent;
    if (same_dist(&t->a, &t->b)) {
        diag_error(k->c, node->at, "the KL of a distribution with itself is 0; this term does nothing");
        return;
    }
    if (t->kind == TERM_KL_SAMPLE) {
        if (t->a.kind != DIST_POSTERIOR || m->latents[z].sample_net != t->a.net || t->b.latent != z)
            diag_error(k->c, node->at, "KLsample(q || p) estimates log q - log p at the sample of %s, so its first "
                       "distribution must be the posterior %s is sampled from", m->latents[z].name, m->latents[z].name);
        return;
    }
    /* Analytic KL is exact only if what the two distributions are conditioned
     * on does not itself depend on the sample of z. */
    unsigned cond = (t->a.net >= 0 ? m->nets[t->a.net].latents_read : 0) |
                    (t->b.net >= 0 ? m->nets[t->b.net].latents_read : 0);
    unsigned bad = cond & samples_depending_on(m, z);
    for (int i = 0; i < m->n_latents; i++)
        if (bad & (1u << i)) {
            diag_error(k->c, node->at,
                       "the analytic KL over %s is not exact here: it is conditioned on the sample of %s, which is "
                       "drawn from a posterior that reads the sample of %s; write KLsample(...) for the Monte Carlo "
                       "estimate log q - log p at the sample",
                       m->latents[z].name, m->latents[i].name, m->latents[z].name);
            return;
        }
}

static void check_terms(checker *k)
{
    sem_model *m = k->m;
    const spec_node *s = k->c->spec;
    m->terms = arena_alloc(&k->c->mem, sizeof(sem_term) * (size_t)(s->terms.n + 1));
    for (int i = 0; i < s->terms.n; i++) {
        const term_node *node = s->terms.items[i];
        sem_term *t = &m->terms[m->n_terms];
        t->name = node->name.text;
        t->kind = node->kind;
        t->node = node;
        t->hyper = -1;
        t->weight = 1;
        for (int j = 0; j < m->n_terms; j++)
            if (strcmp(m->terms[j].name, t->name) == 0)
                diag_error(k->c, node->name.at, "a term named '%s' is already defined at line %d", t->name,
                           m->terms[j].node->at.line);
        if (node->weight_const) {
            t->weight = node->weight_const->value;
            if (!(t->weight >= 0))
                diag_error(k->c, node->weight_const->at, "weight %s must not be negative", node->weight_const->text);
        } else if (node->weight_hyper.text) {
            t->hyper = resolve(k, node->weight_hyper, NAME_HYPER, "a weight");
            if (t->hyper >= 0)
                m->hypers[t->hyper].used = 1;
        }
        int bad = resolve_dist(k, node->a, &t->a) != 0;
        if (node->kind == TERM_NLL) {
            if (!bad && t->a.kind != DIST_LIKELIHOOD) {
                diag_error(k->c, node->a->at, "-log p(...) is a reconstruction term over a modality; '%s' is a latent",
                           node->a->target.text);
                bad = 1;
            }
        } else {
            bad |= resolve_dist(k, node->b, &t->b) != 0;
            if (!bad)
                check_kl_term(k, t);
        }
        if (bad) {
            m->n_terms++;
            continue;
        }
        for (int j = 0; j < m->n_terms; j++) {
            const sem_term *o = &m->terms[j];
            if (o->kind == t->kind && same_dist(&o->a, &t->a) && (t->kind == TERM_NLL || same_dist(&o->b, &t->b)))
                diag_error(k->c, node->at, "this term repeats '%s' (line %d); merge them into one with a weight",
                           o->name, o->node->at.line);
        }
        m->n_terms++;
    }
    if (!s->n_loss_blocks)
        diag_error(k->c, (loc){s->name.at.line, s->name.at.col}, "the spec has no 'loss { ... }' block");
    else if (s->terms.n == 0)
        diag_error(k->c, s->loss_at, "the loss has no terms");
}

/* ------------------------------------------------------------------ hypers -- */

static void check_hypers(checker *k)
{
    sem_model *m = k->m;
    const spec_node *s = k->c->spec;
    for (int i = 0; i < s->hypers.n; i++) {
        const hyper_node *h = s->hypers.items[i];
        sem_hyper *out = &m->hypers[i];
        out->name = h->name.text;
        out->node = h;
        out->value = h->value->value;
        if (!(out->value >= 0))
            diag_error(k->c, h->value->at, "weight %s must not be negative", h->value->text);
        if (h->warmup_from) {
            out->warmup_from = h->warmup_from->value;
            out->warmup_epochs = h->warmup_epochs->value;
            if (!(out->warmup_epochs > 0))
                diag_error(k->c, h->warmup_epochs->at, "warm-up length %s must be positive", h->warmup_epochs->text);
        }
    }
}

/* ---------------------------------------------------------------- training -- */

typedef struct {
    const char *key;
    double lo, hi;
    int lo_open, integer;
    double *real_out;
    long *int_out;
} setting_rule;

static void apply_setting(checker *k, const setting_node *s, const setting_rule *rules, int n_rules, const char *where)
{
    for (int i = 0; i < n_rules; i++) {
        const setting_rule *r = &rules[i];
        if (strcmp(s->key.text, r->key) != 0)
            continue;
        if (!s->value) {
            diag_error(k->c, s->at, "'%s' takes a number", s->key.text);
            return;
        }
        double v = s->value->value;
        if (v < r->lo || v > r->hi || (r->lo_open && v == r->lo) || (r->integer && !s->value->is_integer)) {
            diag_error(k->c, s->value->at, "%s = %s is out of range: expecting %s in %c%g, %g]", s->key.text,
                       s->value->text, r->integer ? "an integer" : "a number", r->lo_open ? '(' : '[', r->lo, r->hi);
            return;
        }
        if (r->real_out)
            *r->real_out = v;
        else
            *r->int_out = (long)v;
        return;
    }
    const char *list = "";
    for (int i = 0; i < n_rules; i++)
        list = arena_printf(&k->c->mem, "%s%s%s", list, i ? ", " : "", rules[i].key);
    diag_error(k->c, s->key.at, "unknown setting '%s' in %s; expecting one of %s", s->key.text, where, list);
}

static void check_duplicate_keys(checker *k, const vec *settings)
{
    for (int i = 0; i < settings->n; i++)
        for (int j = 0; j < i; j++) {
            const setting_node *a = settings->items[i], *b = settings->items[j];
            if (strcmp(a->key.text, b->key.text) == 0) {
                diag_error(k->c, a->at, "'%s' is already set at line %d", a->key.text, b->at.line);
                break;
            }
        }
}

static void check_train(checker *k)
{
    sem_train *t = &k->m->train;
    *t = (sem_train){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 0, .batch = 100, .epochs = 100, .seed = 1};
    const setting_rule top[] = {
        {"batch", 1, 1000000, 0, 1, NULL, &t->batch},
        {"epochs", 0, 1000000, 0, 1, NULL, &t->epochs},
        {"clip", 0, 1e30, 0, 0, &t->clip, NULL},
        {"seed", 0, 4294967295.0, 0, 1, NULL, &t->seed},
        {"optimizer", 0, 0, 0, 0, NULL, NULL},
    };
    const setting_rule adam[] = {
        {"lr", 0, 10, 1, 0, &t->lr, NULL},
        {"beta1", 0, 0.999999, 0, 0, &t->beta1, NULL},
        {"beta2", 0, 0.999999999, 0, 0, &t->beta2, NULL},
        {"eps", 0, 1, 1, 0, &t->eps, NULL},
    };
    const vec *settings = &k->c->spec->settings;
    check_duplicate_keys(k, settings);
    for (int i = 0; i < settings->n; i++) {
        const setting_node *s = settings->items[i];
        if (strcmp(s->key.text, "optimizer") != 0) {
            apply_setting(k, s, top, 5, "train");
            continue;
        }
        if (!s->word.text || strcmp(s->word.text, "adam") != 0) {
            diag_error(k->c, s->value ? s->value->at : s->word.at, "unknown optimizer; expecting adam(lr = ..., beta1 = ..., beta2 = ..., eps = ...)");
            continue;
        }
        check_duplicate_keys(k, &s->args);
        for (int j = 0; j < s->args.n; j++)
            apply_setting(k, s->args.items[j], adam, 4, "adam(...)");
    }
}

/* ------------------------------------------------------------------ usage -- */

static void mark_used(sem_model *m, int net)
{
    if (net < 0 || m->nets[net].used)
        return;
    m->nets[net].used = 1;
    for (int j = 0; j < m->nets[net].n_inputs; j++)
        if (m->nets[net].inputs[j].kind == SRC_NET)
            mark_used(m, m->nets[net].inputs[j].index);
}

static void check_usage(checker *k)
{
    sem_model *m = k->m;
    for (int i = 0; i < m->n_latents; i++) {
        mark_used(m, m->latents[i].prior_net);
        mark_used(m, m->latents[i].sample_net);
    }
    for (int i = 0; i < m->n_terms; i++) {
        mark_used(m, m->terms[i].a.net);
        if (m->terms[i].kind != TERM_NLL)
            mark_used(m, m->terms[i].b.net);
    }
    for (int i = 0; i < m->n_nets; i++)
        if (!m->nets[i].used)
            diag_warning(k->c, m->nets[i].node->at, "network '%s' is not used by the loss, a sample or a prior", m->nets[i].name);
    for (int i = 0; i < m->n_modalities; i++) {
        int reconstructed = 0;
        for (int t = 0; t < m->n_terms; t++)
            reconstructed |= m->terms[t].kind == TERM_NLL && m->terms[t].a.modality == i;
        if (!reconstructed)
            diag_warning(k->c, m->modalities[i].node->at, "modality '%s' is not reconstructed by any term of the loss",
                         m->modalities[i].name);
    }
    for (int i = 0; i < m->n_hypers; i++)
        if (!m->hypers[i].used)
            diag_warning(k->c, m->hypers[i].node->at, "hyperparameter '%s' is not used by the loss", m->hypers[i].name);
    /* a sample that no used network reads and no KLsample term estimates at */
    for (int l = 0; l < m->n_latents; l++) {
        int read = 0;
        for (int i = 0; i < m->n_nets; i++)
            read |= m->nets[i].used && (m->nets[i].latents_read & (1u << l));
        for (int t = 0; t < m->n_terms; t++)
            read |= m->terms[t].kind == TERM_KL_SAMPLE && m->terms[t].a.latent == l;
        if (!read && m->latents[l].sample)
            diag_warning(k->c, m->latents[l].sample->at,
                         "the sample of '%s' is read by nothing: no decoder, prior or posterior reads it, and no "
                         "KLsample term estimates at it",
                         m->latents[l].name);
    }
}

/* ------------------------------------------------------------------ size -- */

enum { MAX_PARAMS = 1000000000 };

/* A model must fit the int sizes of the generated code and plausible memory. */
static void check_parameter_count(checker *k)
{
    const sem_model *m = k->m;
    double total = 0;
    for (int i = 0; i < m->n_nets; i++) {
        const sem_net *n = &m->nets[i];
        double in = n->input_size;
        for (int l = 0; l < n->n_layers; l++) {
            total += (in + 1) * n->layers[l].width;
            in = n->layers[l].width;
        }
        if (n->head != HEAD_NONE)
            total += (in + 1) * n->head_size;
    }
    if (total > MAX_PARAMS)
        diag_error(k->c, k->c->spec->name.at, "the model has %.0f parameters; at most %d", total, MAX_PARAMS);
}

/* ------------------------------------------------------------ fingerprint -- */

/* FNV-1a over what fixes the parameters and their meaning: modalities,
 * latents and networks. The loss and the training settings are left out, so
 * a checkpoint can be fine-tuned under other weights or another schedule. */
static unsigned long long fnv(unsigned long long h, const void *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)data)[i]) * 1099511628211ull;
    return h;
}

static unsigned long long fnv_int(unsigned long long h, long v)
{
    return fnv(h, &v, sizeof v);
}

static unsigned long long fnv_str(unsigned long long h, const char *s)
{
    return fnv(h, s, strlen(s) + 1);
}

static unsigned long long fingerprint_model(const sem_model *m)
{
    unsigned long long h = fnv_str(1469598103934665603ull, m->name);
    for (int i = 0; i < m->n_modalities; i++)
        h = fnv_int(fnv_int(fnv_str(h, m->modalities[i].name), m->modalities[i].size), m->modalities[i].likelihood);
    for (int i = 0; i < m->n_latents; i++)
        h = fnv_int(fnv_int(fnv_str(h, m->latents[i].name), m->latents[i].size), m->latents[i].prior_net);
    for (int i = 0; i < m->n_nets; i++) {
        const sem_net *n = &m->nets[i];
        h = fnv_int(fnv_int(fnv_str(h, n->name), n->combine), n->n_inputs);
        for (int j = 0; j < n->n_inputs; j++)
            h = fnv_int(fnv_int(h, n->inputs[j].kind), n->inputs[j].index);
        for (int j = 0; j < n->n_layers; j++)
            h = fnv_int(fnv_int(h, n->layers[j].activation), n->layers[j].width);
        h = fnv_int(fnv_int(fnv_int(fnv_int(h, n->head), n->target), n->variance), n->head_size);
    }
    return h;
}

/* --------------------------------------------------------------- families -- */

/* The posterior net for latent l conditioned on exactly `mods`, preferring
 * the one the objective samples from; -1 when there is none. */
static int family_net(const sem_model *m, int l, unsigned mods)
{
    if (m->nets[m->latents[l].sample_net].modalities_read == mods)
        return m->latents[l].sample_net;
    for (int i = 0; i < m->n_nets; i++)
        if (m->nets[i].head == HEAD_POSTERIOR && m->nets[i].target == l && m->nets[i].modalities_read == mods)
            return i;
    return -1;
}

/* Orders latents so that each posterior's latent inputs come first. */
static int order_family(const sem_model *m, const int *nets, int *order)
{
    unsigned done = 0;
    int placed = 0;
    for (int progress = 1; progress && placed < m->n_latents;) {
        progress = 0;
        for (int l = 0; l < m->n_latents; l++)
            if (!(done & (1u << l)) && (m->nets[nets[l]].latents_read & ~done) == 0) {
                done |= 1u << l;
                order[placed++] = l;
                progress = 1;
            }
    }
    return placed == m->n_latents;
}

/* Every set of modalities some posterior conditions on for which each
 * latent has a posterior: a family; and the objective's own samples. */
static void find_families(checker *k)
{
    sem_model *m = k->m;
    m->families = arena_alloc(&k->c->mem, sizeof(sem_family) * (size_t)(m->n_nets + 2));
    m->training_family = -1;
    for (int i = 0; i < m->n_nets; i++) {
        if (m->nets[i].head != HEAD_POSTERIOR)
            continue;
        unsigned mods = m->nets[i].modalities_read;
        int dup = 0;
        for (int f = 0; f < m->n_families; f++)
            dup |= m->families[f].condition == mods;
        if (dup)
            continue;
        sem_family *fam = &m->families[m->n_families];
        int complete = 1;
        for (int l = 0; l < m->n_latents; l++)
            complete &= (fam->nets[l] = family_net(m, l, mods)) >= 0;
        if (!complete || !order_family(m, fam->nets, fam->order))
            continue;
        fam->condition = mods;
        fam->name = family_suffix(k->c, m, mods);
        int is_training = 1;
        for (int l = 0; l < m->n_latents; l++)
            is_training &= fam->nets[l] == m->latents[l].sample_net;
        if (is_training)
            m->training_family = m->n_families;
        m->n_families++;
    }
    if (m->training_family < 0) {
        sem_family *fam = &m->families[m->n_families];
        fam->condition = 0;
        for (int l = 0; l < m->n_latents; l++) {
            fam->nets[l] = m->latents[l].sample_net;
            fam->condition |= m->nets[fam->nets[l]].modalities_read;
            fam->order[l] = m->latent_order[l];
        }
        fam->name = "train";
        m->training_family = m->n_families++;
    }
}

/* ------------------------------------------------------------------ check -- */

sem_model *check_spec(ctx *c)
{
    const spec_node *s = c->spec;
    checker k = {c, arena_alloc(&c->mem, sizeof(sem_model)), NULL, 0};
    sem_model *m = k.m;
    int total = s->modalities.n + s->latents.n + s->nets.n + s->hypers.n;
    k.names = arena_alloc(&c->mem, sizeof(name_entry) * (size_t)(total + 1));
    m->name = s->name.text ? s->name.text : "model";
    if (s->modalities.n == 0)
        diag_error(c, s->name.at, "the spec declares no modality");
    if (s->latents.n == 0)
        diag_error(c, s->name.at, "the spec declares no latent");
    if (s->modalities.n > MAX_MODALITIES || s->latents.n > MAX_LATENTS || s->nets.n > MAX_NETS) {
        diag_error(c, s->name.at, "too many declarations: at most %d modalities, %d latents and %d networks",
                   MAX_MODALITIES, MAX_LATENTS, MAX_NETS);
        return NULL;
    }
    m->n_modalities = s->modalities.n;
    m->n_latents = s->latents.n;
    m->n_nets = s->nets.n;
    m->n_hypers = s->hypers.n;
    m->modalities = arena_alloc(&c->mem, sizeof(sem_modality) * (size_t)(m->n_modalities + 1));
    m->latents = arena_alloc(&c->mem, sizeof(sem_latent) * (size_t)(m->n_latents + 1));
    m->nets = arena_alloc(&c->mem, sizeof(sem_net) * (size_t)(m->n_nets + 1));
    m->hypers = arena_alloc(&c->mem, sizeof(sem_hyper) * (size_t)(m->n_hypers + 1));
    m->net_order = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    m->latent_order = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_latents + 1));
    m->prior_order = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_latents + 1));

    for (int i = 0; i < m->n_modalities; i++) {
        const modality_node *node = s->modalities.items[i];
        declare(&k, node->name, NAME_MODALITY, i);
        check_modality(&k, node, &m->modalities[i]);
    }
    for (int i = 0; i < m->n_latents; i++) {
        const latent_node *node = s->latents.items[i];
        declare(&k, node->name, NAME_LATENT, i);
        m->latents[i] = (sem_latent){node->name.text, check_size(&k, node->size, "size"), -1, -1, node, NULL};
    }
    for (int i = 0; i < m->n_nets; i++) {
        const net_node *node = s->nets.items[i];
        declare(&k, node->name, NAME_NET, i);
        m->nets[i].name = node->name.text;
        m->nets[i].node = node;
    }
    for (int i = 0; i < m->n_hypers; i++)
        declare(&k, ((hyper_node *)s->hypers.items[i])->name, NAME_HYPER, i);

    for (int i = 0; i < m->n_nets; i++) {
        check_net_inputs(&k, m->nets[i].node, &m->nets[i], i);
        check_layers(&k, m->nets[i].node, &m->nets[i]);
    }
    if (order_nets(&k)) {
        size_nets(&k);
        for (int i = 0; i < m->n_nets; i++)
            check_head(&k, &m->nets[i]);
        check_duplicate_heads(&k);
        check_latent_priors(&k);
        check_hypers(&k);
        check_samples(&k);
        check_terms(&k);
    }
    check_train(&k);
    if (c->n_errors == 0) {
        check_parameter_count(&k);
        check_usage(&k);
        find_families(&k);
        check_emitted_names(c, m);
    }
    if (c->n_errors)
        return NULL;
    m->fingerprint = fingerprint_model(m);
    return m;
}

/* ----------------------------------------------------------------- dump -- */

void model_dump(FILE *out, const sem_model *m)
{
    fprintf(out, "model %s (fingerprint %016llx)\n", m->name, m->fingerprint);
    for (int i = 0; i < m->n_modalities; i++)
        fprintf(out, "  modality %d %s: %d values, %s\n", i, m->modalities[i].name, m->modalities[i].size,
                likelihood_table[m->modalities[i].likelihood].name);
    for (int i = 0; i < m->n_latents; i++)
        fprintf(out, "  latent %d %s: %d, prior %s, sampled from %s\n", i, m->latents[i].name, m->latents[i].size,
                m->latents[i].prior_net < 0 ? "normal" : m->nets[m->latents[i].prior_net].name,
                m->nets[m->latents[i].sample_net].name);
    for (int o = 0; o < m->n_nets; o++) {
        const sem_net *n = &m->nets[m->net_order[o]];
        fprintf(out, "  net %s: reads %d values", n->name, n->input_size);
        for (int j = 0; j < n->n_layers; j++)
            fprintf(out, " -> %s(%d)", activation_table[n->layers[j].activation].name, n->layers[j].width);
        if (n->head != HEAD_NONE)
            fprintf(out, " -> head of %d outputs", n->head_size);
        fputc('\n', out);
    }
    for (int i = 0; i < m->n_terms; i++) {
        fprintf(out, "  term %s: weight ", m->terms[i].name);
        if (m->terms[i].hyper >= 0)
            fprintf(out, "%s\n", m->hypers[m->terms[i].hyper].name);
        else
            fprintf(out, "%g\n", m->terms[i].weight);
    }
}
