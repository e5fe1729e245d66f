/* check_loss.c: the loss block: its samples, loops and terms.
 *
 * The loss's top level is group 0; each instance of a loop (one set of
 * modalities, or one component of a mixture) is a group of its own, whose
 * terms see the samples drawn in it and, for the latents it does not draw,
 * the top level's. Every sample `z ~ q(...)` of a group is a draw: one
 * reparameterised sample with its own noise. A loop's body is checked once
 * per instance; diagnostics that are the same for every instance are given
 * once (diag.c). */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ops.h"

static int popcount(unsigned x)
{
    int n = 0;
    for (; x; x &= x - 1)
        n++;
    return n;
}

static int new_group(checker *k, const sem_group *g)
{
    sem_model *m = k->m;
    m->groups = arena_grow(&k->c->mem, m->groups, m->n_groups, &m->cap_groups, sizeof *m->groups);
    m->groups[m->n_groups] = *g;
    return m->n_groups++;
}

static int new_draw(checker *k, int latent, int post, int group, const sample_node *node)
{
    sem_model *m = k->m;
    m->draws = arena_grow(&k->c->mem, m->draws, m->n_draws, &m->cap_draws, sizeof *m->draws);
    m->draws[m->n_draws] = (sem_draw){latent, post, group, node};
    return m->n_draws++;
}

/* "x+w" (or "x_w" in C): the modalities of a set. */
static const char *set_suffix(ctx *c, const sem_model *m, unsigned set, const char *sep)
{
    const char *s = "";
    for (int i = 0; i < m->n_modalities; i++)
        if (set & (1u << i))
            s = arena_printf(&c->mem, "%s%s%s", s, *s ? sep : "", m->modalities[i].name);
    return s;
}

/* The latents whose samples a posterior's networks read. */
static unsigned post_reads(const sem_model *m, int post)
{
    return post >= 0 ? m->posteriors[post].latents_read : 0;
}

/* --------------------------------------------------------------- samples -- */

/* `z ~ q(...)` in group g: a draw, if it is a sample from a Gaussian
 * posterior of z. */
static void check_sample(checker *k, int g, const sample_node *sn)
{
    sem_model *m = k->m;
    int l = resolve(k, sn->latent, NAME_LATENT, "what is sampled");
    if (l < 0)
        return;
    sem_group *grp = &m->groups[g];
    grp->named |= 1u << l;
    if (grp->own & (1u << l)) {
        const sample_node *first = sn;
        for (int i = 0; i < k->c->spec->samples.n && first == sn; i++) {
            const sample_node *o = k->c->spec->samples.items[i];
            if (o->loop == sn->loop && strcmp(o->latent.text, sn->latent.text) == 0)
                first = o;
        }
        diag_error(k->c, sn->at, "'%s' is already sampled at line %d", sn->latent.text, first->at.line);
        return;
    }
    if (!m->latents[l].sample)
        m->latents[l].sample = sn;
    sem_dist d;
    if (resolve_dist(k, sn->from, &d) != 0)
        return;
    if (d.kind != DIST_POSTERIOR || d.latent != l) {
        diag_error(k->c, sn->from->at, "'%s' must be sampled from one of its posteriors q(%s | ...)", sn->latent.text,
                   sn->latent.text);
        return;
    }
    if (!posterior_is_gaussian(m, d.post)) {
        diag_error(k->c, sn->from->at, "%s is a mixture: a sample of it is not reparameterised; draw %s from each of "
                   "its components in turn: mean over q_c in components(%s) { %s ~ q_c ... }",
                   posterior_name(k->c, m, d.post), sn->latent.text, posterior_name(k->c, m, d.post), sn->latent.text);
        return;
    }
    grp = &m->groups[g];
    grp->draw[l] = -2 - d.post; /* the draw is made once the group's samples are ordered */
    grp->own |= 1u << l;
}

/* Orders a group's own samples (each after those its posterior reads) and
 * makes their draws. */
static void make_draws(checker *k, int g)
{
    sem_model *m = k->m;
    sem_group *grp = &m->groups[g];
    unsigned done = ~grp->own & ((1u << m->n_latents) - 1);
    for (int progress = 1; progress;) {
        progress = 0;
        for (int l = 0; l < m->n_latents; l++)
            if (!(done & (1u << l)) && (post_reads(m, -2 - grp->draw[l]) & ~done) == 0) {
                done |= 1u << l;
                grp->order[grp->n_order++] = l;
                progress = 1;
            }
    }
    for (int l = 0; l < m->n_latents; l++)
        if (!(done & (1u << l))) {
            diag_error(k->c, m->latents[l].sample ? m->latents[l].sample->at : m->latents[l].node->at,
                       "the sample of '%s' depends on itself through other samples", m->latents[l].name);
            grp->own = 0;
            grp->n_order = 0;
            return;
        }
    /* draws in latent order, so that a spec without loops keeps noise[l] for latent l */
    for (int l = 0; l < m->n_latents; l++)
        if (grp->own & (1u << l)) {
            int post = -2 - grp->draw[l];
            const sample_node *node = NULL;
            for (int i = 0; i < k->c->spec->samples.n && !node; i++) {
                const sample_node *sn = k->c->spec->samples.items[i];
                if (sn->loop == grp->loop && strcmp(sn->latent.text, m->latents[l].name) == 0)
                    node = sn;
            }
            grp = &m->groups[g];
            int d = new_draw(k, l, post, g, node);
            grp = &m->groups[g];
            grp->draw[l] = d;
        }
}

/* ---------------------------------------------------------------- loops -- */

typedef struct {
    unsigned set;
    int component;
} instance;

/* The instances of a loop (sets or components); their count, or -1. */
static int loop_instances(checker *k, const loop_node *l, instance *out)
{
    sem_model *m = k->m;
    int n = 0;
    if (l->kind == LOOP_COMPONENTS) {
        if (strcmp(l->func.text, "components") != 0) {
            diag_error(k->c, l->func.at, "unknown '%s(...)' of a distribution; expecting components(...)", l->func.text);
            return -1;
        }
        sem_dist d;
        if (resolve_dist(k, l->of, &d) != 0)
            return -1;
        if (d.kind != DIST_POSTERIOR || posterior_is_gaussian(m, d.post)) {
            diag_error(k->c, l->of->at, "this distribution is a Gaussian, not a mixture: it has no components");
            return -1;
        }
        const sem_posterior *p = &m->posteriors[d.post];
        for (int i = 0; i < p->n_components; i++)
            out[n++] = (instance){m->posteriors[p->components[i]].condition, p->components[i]};
        return n;
    }
    unsigned sets[MAX_SUBSETS + 1];
    int n_sets = 0;
    for (int i = 0; i < l->sets.n; i++) {
        const vec *names = l->sets.items[i];
        unsigned set = 0;
        int bad = 0;
        for (int j = 0; j < names->n; j++) {
            const ident *id = names->items[j];
            int mod = resolve(k, *id, NAME_MODALITY, "a member of a loop's set");
            if (mod < 0) {
                bad = 1;
            } else if (set & (1u << mod)) {
                diag_error(k->c, id->at, "'%s' is named twice in this set", id->text);
                bad = 1;
            }
            set |= mod >= 0 ? 1u << mod : 0;
        }
        if (bad)
            return -1;
        if (l->kind == LOOP_SETS) {
            for (int j = 0; j < n_sets; j++)
                if (sets[j] == set) {
                    diag_error(k->c, ((ident *)names->items[0])->at, "the set (%s) is listed twice",
                               set_suffix(k->c, m, set, ", "));
                    return -1;
                }
            if (n_sets == MAX_SUBSETS) {
                diag_error(k->c, ((ident *)names->items[0])->at, "a loop over more than %d sets", MAX_SUBSETS);
                return -1;
            }
        }
        sets[n_sets++] = set;
    }
    if (l->kind == LOOP_SETS) {
        for (int i = 0; i < n_sets; i++)
            out[n++] = (instance){sets[i], -1};
        return n;
    }
    if (l->kind == LOOP_GIVEN) {
        if (strcmp(l->func.text, "given") != 0) {
            diag_error(k->c, l->func.at, "unknown '%s (...) { ... }'; expecting given (...) { ... }, the loss of "
                       "examples that observe only those modalities", l->func.text);
            return -1;
        }
        unsigned all = (1u << m->n_modalities) - 1;
        if (sets[0] == all) {
            diag_error(k->c, l->at, "given (...) names every modality: the loss's own terms are what complete "
                       "examples contribute");
            return -1;
        }
        if (m->n_modalities > MAX_OBSERVED_MODALITIES) {
            diag_error(k->c, l->at, "given (...) blocks need a model of at most %d modalities; this one has %d",
                       MAX_OBSERVED_MODALITIES, m->n_modalities);
            return -1;
        }
        for (int g = 1; g < m->n_groups; g++)
            if (m->groups[g].loop->kind == LOOP_GIVEN && m->groups[g].set == sets[0]) {
                diag_error(k->c, l->at, "a second given (%s) block (the first is at line %d); write its terms in one",
                           set_suffix(k->c, m, sets[0], ", "), m->groups[g].loop->at.line);
                return -1;
            }
        out[n++] = (instance){sets[0], -1};
        return n;
    }
    if (strcmp(l->func.text, "subsets") != 0) {
        diag_error(k->c, l->func.at, "unknown '%s(...)' of modalities; expecting subsets(...)", l->func.text);
        return -1;
    }
    unsigned all = sets[0];
    if ((1L << popcount(all)) - 1 > MAX_SUBSETS) {
        diag_error(k->c, l->func.at, "subsets of %d modalities are %ld sets; at most %d (5 modalities)", popcount(all),
                   (1L << popcount(all)) - 1, MAX_SUBSETS);
        return -1;
    }
    for (unsigned s = 1; s <= all; s++) /* every non-empty subset, in the order of the modalities' bits */
        if ((s & ~all) == 0)
            out[n++] = (instance){s, -1};
    return n;
}

/* Makes a group for each instance of each loop, with its draws. */
static void check_loops(checker *k)
{
    sem_model *m = k->m;
    const spec_node *s = k->c->spec;
    for (int i = 0; i < s->loops.n; i++) {
        const loop_node *l = s->loops.items[i];
        int mean = strcmp(l->combine.text, "mean") == 0;
        if (!mean && strcmp(l->combine.text, "sum") != 0)
            diag_error(k->c, l->combine.at, "unknown '%s' before 'over'; expecting mean or sum", l->combine.text);
        const name_entry *clash = l->kind == LOOP_GIVEN ? NULL : lookup(k, l->var.text);
        if (clash) {
            diag_error(k->c, l->var.at, "'%s' is already declared as %s at line %d; name the loop's variable otherwise",
                       l->var.text, kind_names[clash->kind], clash->at.line);
            continue;
        }
        instance inst[MAX_SUBSETS + 1];
        int n = loop_instances(k, l, inst);
        if (n <= 0)
            continue;
        for (int j = 0; j < n; j++) {
            sem_group g = m->groups[0];
            g.loop = l;
            g.set = inst[j].set;
            g.component = inst[j].component;
            g.scale = mean ? 1.0 / n : 1.0;
            g.own = 0;
            g.n_order = 0;
            g.named = m->groups[0].named;
            g.suffix = set_suffix(k->c, m, inst[j].set, "+");
            g.csuffix = set_suffix(k->c, m, inst[j].set, "_");
            if (l->kind == LOOP_GIVEN) { /* rec_x[x only], rec_x_x_only in C */
                g.suffix = arena_printf(&k->c->mem, "%s only", g.suffix);
                g.csuffix = arena_printf(&k->c->mem, "%s_only", g.csuffix);
            }
            int gi = new_group(k, &g);
            k->loop_var = l->kind == LOOP_GIVEN ? NULL : l->var.text; /* a given block has no variable */
            k->loop_set = inst[j].set;
            k->loop_component = inst[j].component;
            for (int t = 0; t < s->samples.n; t++) {
                const sample_node *sn = s->samples.items[t];
                if (sn->loop == l)
                    check_sample(k, gi, sn);
            }
            k->loop_var = NULL;
            make_draws(k, gi);
        }
    }
}

/* ----------------------------------------------------------------- terms -- */

static int same_dist(const sem_dist *a, const sem_dist *b)
{
    return a->kind == b->kind && a->net == b->net && a->latent == b->latent && a->modality == b->modality &&
           a->post == b->post;
}

static int is_gaussian_over_latent(const sem_model *m, const sem_dist *d)
{
    return (d->kind == DIST_POSTERIOR && posterior_is_gaussian(m, d->post)) || d->kind == DIST_PRIOR_NET ||
           d->kind == DIST_STANDARD_NORMAL;
}

/* The latents whose samples a distribution's networks read. */
static unsigned dist_reads(const sem_model *m, const sem_dist *d)
{
    if (d->kind == DIST_POSTERIOR)
        return post_reads(m, d->post);
    return d->net >= 0 ? m->nets[d->net].latents_read : 0;
}

/* The latents whose samples in group g depend, through posteriors, on the sample of `l`. */
static unsigned samples_depending_on(const sem_model *m, const sem_group *g, int l)
{
    unsigned dep = 1u << l;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < m->n_latents; i++) {
            int d = g->draw[i];
            if (d >= 0 && !(dep & (1u << i)) && (post_reads(m, m->draws[d].post) & dep)) {
                dep |= 1u << i;
                changed = 1;
            }
        }
    }
    return dep & ~(1u << l);
}

static void check_kl_term(checker *k, sem_term *t)
{
    const sem_model *m = k->m;
    const term_node *node = t->node;
    const sem_group *g = &m->groups[t->group];
    int a_lat = t->a.kind != DIST_LIKELIHOOD, b_lat = t->b.kind != DIST_LIKELIHOOD;
    if (!a_lat || !b_lat) {
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
        int d = g->draw[z];
        if (d < 0) {
            diag_error(k->c, node->at, "KLsample(q || p) estimates log q - log p at the sample of %s, but %s is not "
                       "sampled %s", m->latents[z].name, m->latents[z].name, g->loop ? "in this loop or at the loss's "
                       "top level" : "at the loss's top level");
            return;
        }
        int from = m->draws[d].post;
        int stratified = !posterior_is_gaussian(m, t->a.post) && g->loop && g->loop->kind == LOOP_COMPONENTS &&
                         g->component == from && g->scale < 1;
        if (stratified) { /* the loop must be over this mixture's components */
            const sem_posterior *mix = &m->posteriors[t->a.post];
            int found = 0;
            for (int i = 0; i < mix->n_components; i++)
                found |= mix->components[i] == from;
            int count = 0;
            for (int i = 1; i < m->n_groups; i++)
                count += m->groups[i].loop == g->loop;
            stratified = found && count == mix->n_components;
        }
        if (t->a.kind != DIST_POSTERIOR || (t->a.post != from && !stratified))
            diag_error(k->c, node->at, "KLsample(q || p) estimates log q - log p at the sample of %s, so its first "
                       "distribution must be the posterior %s is sampled from (or a mixture, when a 'mean' loop over "
                       "its components draws %s from each)", m->latents[z].name, m->latents[z].name, m->latents[z].name);
        return;
    }
    if (!is_gaussian_over_latent(m, &t->a) || !is_gaussian_over_latent(m, &t->b)) {
        const sem_dist *mix = is_gaussian_over_latent(m, &t->a) ? &t->b : &t->a;
        diag_error(k->c, node->at, "KL(...) is analytic only between Gaussians, and %s is a mixture; write KLsample(...) "
                   "to estimate it at the sample instead", posterior_name(k->c, m, mix->post));
        return;
    }
    /* Analytic KL is exact only if what the two distributions are conditioned
     * on does not itself depend on the sample of z. */
    unsigned cond = dist_reads(m, &t->a) | dist_reads(m, &t->b);
    unsigned bad = cond & samples_depending_on(m, g, z);
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

/* Every sample a term's distributions read is drawn in its group (or at the top level). */
static void check_term_samples(checker *k, const sem_term *t)
{
    const sem_model *m = k->m;
    const sem_group *g = &m->groups[t->group];
    unsigned need = dist_reads(m, &t->a) | (t->kind != TERM_NLL ? dist_reads(m, &t->b) : 0), drawn = 0;
    for (int d = 0; d < m->n_draws; d++)
        drawn |= 1u << m->draws[d].latent; /* a latent drawn nowhere has its own error */
    for (int l = 0; l < m->n_latents; l++)
        if ((need & drawn & (1u << l)) && g->draw[l] < 0 && !(g->named & (1u << l)))
            diag_error(k->c, t->node->at, "this term reads the sample of '%s', which is not drawn %s; add '%s ~ q(%s | "
                       "...)'", m->latents[l].name, g->loop ? "in this loop nor at the loss's top level" : "at the "
                       "loss's top level", m->latents[l].name, m->latents[l].name);
}

/* One term of the loss in group g (a loop's instance, or the top level). */
static void check_term(checker *k, const term_node *node, int g)
{
    sem_model *m = k->m;
    const sem_group *grp = &m->groups[g];
    if (node->guard.text && node->loop->kind == LOOP_GIVEN) {
        diag_error(k->c, node->guard.at, "'if %s in ...' tests a loop's variable; a given (...) block has none (its "
                   "examples observe exactly what it names)", node->guard.text);
        return;
    }
    if (node->guard.text) {
        int mod = resolve(k, node->guard, NAME_MODALITY, "what 'if ... in' tests");
        if (strcmp(node->guard_set.text, node->loop->var.text) != 0) {
            diag_error(k->c, node->guard_set.at, "'%s' is not the loop's variable; write 'if %s in %s'",
                       node->guard_set.text, node->guard.text, node->loop->var.text);
            return;
        }
        if (mod < 0 || !(grp->set & (1u << mod)))
            return; /* this instance's set does not have it: no term */
    }
    sem_term *t = &m->terms[m->n_terms];
    *t = (sem_term){0};
    t->name = grp->suffix ? arena_printf(&k->c->mem, "%s[%s]", node->name.text, grp->suffix) : node->name.text;
    t->cname = grp->suffix ? arena_printf(&k->c->mem, "%s_%s", node->name.text, grp->csuffix) : node->name.text;
    t->kind = node->kind;
    t->node = node;
    t->hyper = -1;
    t->weight = 1;
    t->scale = grp->scale;
    t->group = g;
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
    m->n_terms++;
    t->bad = bad;
    if (bad)
        return;
    check_term_samples(k, t);
    for (int j = 0; j < m->n_terms - 1; j++) {
        const sem_term *o = &m->terms[j];
        if (o->group == t->group && o->kind == t->kind && same_dist(&o->a, &t->a) &&
            (t->kind == TERM_NLL || same_dist(&o->b, &t->b)))
            diag_error(k->c, node->at, "this term repeats '%s' (line %d); merge them into one with a weight", o->name,
                       o->node->at.line);
    }
}

/* ----------------------------------------------------------- given blocks -- */

/* The modalities the samples of `lats` read in group g, through their
 * posteriors and the samples those read. */
static unsigned samples_modalities(const sem_model *m, const sem_group *g, unsigned lats)
{
    unsigned mods = 0;
    for (int l = 0; l < m->n_latents; l++)
        if ((lats & (1u << l)) && g->draw[l] >= 0) {
            const sem_posterior *p = &m->posteriors[m->draws[g->draw[l]].post];
            mods |= p->condition | samples_modalities(m, g, p->latents_read & ~(1u << l));
        }
    return mods;
}

/* The modalities a distribution of a term in group g reads. */
static unsigned dist_modalities(const sem_model *m, const sem_group *g, const sem_dist *d)
{
    unsigned mods = d->kind == DIST_LIKELIHOOD ? 1u << d->modality : 0;
    if (d->kind == DIST_POSTERIOR)
        mods |= m->posteriors[d->post].condition;
    if (d->net >= 0)
        mods |= m->nets[d->net].modalities_read;
    return mods | samples_modalities(m, g, dist_reads(m, d));
}

/* The modalities a draw from posterior `post` reads in group g: its own
 * condition and those of the samples its networks read. */
static unsigned draw_modalities(const sem_model *m, const sem_group *g, int post)
{
    const sem_dist d = {DIST_POSTERIOR, -1, m->posteriors[post].latent, -1, post};
    return dist_modalities(m, g, &d);
}

/* In a given (S) block, every sample and term reads only S: what its
 * examples observe. */
static void check_given_reads(checker *k, int gi)
{
    const sem_model *m = k->m;
    const sem_group *g = &m->groups[gi];
    for (int l = 0; l < m->n_latents; l++) {
        if (!(g->own & (1u << l)))
            continue;
        const sem_draw *d = &m->draws[g->draw[l]];
        unsigned lack = draw_modalities(m, g, d->post) & ~g->set;
        if (lack && d->node)
            diag_error(k->c, d->node->at, "%s reads %s, which the examples of given (%s) do not observe",
                       posterior_name(k->c, m, d->post), set_suffix(k->c, m, lack, ", "), set_suffix(k->c, m, g->set, ", "));
    }
    for (int t = 0; t < m->n_terms; t++) {
        const sem_term *term = &m->terms[t];
        if (term->group != gi || term->bad)
            continue;
        unsigned reads = dist_modalities(m, g, &term->a) | (term->kind != TERM_NLL ? dist_modalities(m, g, &term->b) : 0);
        unsigned lats = dist_reads(m, &term->a) | (term->kind != TERM_NLL ? dist_reads(m, &term->b) : 0);
        if (term->kind == TERM_KL_SAMPLE) {
            reads |= samples_modalities(m, g, 1u << term->a.latent);
            lats |= 1u << term->a.latent;
        }
        unsigned lack = reads & ~g->set, top = 0; /* the samples of the top level it reads that read what is lacking */
        for (int l = 0; l < m->n_latents; l++)
            if ((lats & (1u << l)) && g->draw[l] >= 0 && !(g->own & (1u << l)) && (samples_modalities(m, g, 1u << l) & lack))
                top |= 1u << l;
        if (lack)
            diag_error(k->c, term->node->at, "this term reads %s, which the examples of given (%s) do not observe%s",
                       set_suffix(k->c, m, lack, ", "), set_suffix(k->c, m, g->set, ", "),
                       top ? arena_printf(&k->c->mem, " (through the sample of %s drawn at the loss's top level: "
                                          "draw it in this block from a posterior of what it observes)",
                                          mask_names(k->c, m, 0, top)) : "");
    }
}

static void check_terms(checker *k)
{
    sem_model *m = k->m;
    const spec_node *s = k->c->spec;
    int cap = 0;
    for (int i = 0; i < s->terms.n; i++) {
        const term_node *node = s->terms.items[i];
        for (int g = 0; g < m->n_groups; g++)
            cap += m->groups[g].loop == node->loop;
    }
    m->terms = arena_alloc(&k->c->mem, sizeof(sem_term) * (size_t)(cap + 1));
    /* the top level's terms, then each loop's, instance by instance */
    for (int i = 0; i < s->terms.n; i++) {
        const term_node *node = s->terms.items[i];
        if (!node->loop)
            check_term(k, node, 0);
    }
    for (int g = 1; g < m->n_groups; g++) {
        const sem_group *grp = &m->groups[g];
        k->loop_var = grp->loop->kind == LOOP_GIVEN ? NULL : grp->loop->var.text;
        k->loop_set = grp->set;
        k->loop_component = grp->component;
        for (int i = 0; i < s->terms.n; i++) {
            const term_node *node = s->terms.items[i];
            if (node->loop == grp->loop)
                check_term(k, node, g);
        }
        k->loop_var = NULL;
    }
    if (!s->n_loss_blocks)
        diag_error(k->c, (loc){s->name.at.line, s->name.at.col}, "the spec has no 'loss { ... }' block");
    else if (s->terms.n == 0)
        diag_error(k->c, s->loss_at, "the loss has no terms");
    for (int i = 0; i < s->loops.n; i++) {
        const loop_node *l = s->loops.items[i];
        int has = 0, made = 0;
        for (int j = 0; j < s->terms.n; j++)
            has |= ((const term_node *)s->terms.items[j])->loop == l;
        for (int j = 0; j < m->n_terms; j++)
            made |= m->groups[m->terms[j].group].loop == l;
        if (!has)
            diag_error(k->c, l->at, l->kind == LOOP_GIVEN ? "this given (...) block has no terms" : "this loop has no terms");
        else if (!made && k->c->n_errors == 0)
            diag_warning(k->c, l->at, "no instance of this loop has a term: every term's 'if' test fails");
    }
}

/* ------------------------------------------------------------------ loss -- */

void check_loss(checker *k)
{
    sem_model *m = k->m;
    const spec_node *s = k->c->spec;
    for (int i = 0; i < m->n_latents; i++)
        m->latents[i].sample_net = m->latents[i].sample_post = -1;
    sem_group top = {0};
    top.component = -1;
    top.scale = 1;
    for (int l = 0; l < MAX_LATENTS; l++)
        top.draw[l] = -1;
    new_group(k, &top);
    for (int i = 0; i < s->samples.n; i++) {
        const sample_node *sn = s->samples.items[i];
        if (!sn->loop)
            check_sample(k, 0, sn);
    }
    make_draws(k, 0);
    for (int l = 0; l < m->n_latents; l++) {
        int d = m->groups[0].draw[l];
        if (d >= 0) {
            m->latents[l].sample_post = m->draws[d].post;
            m->latents[l].sample_net = m->posteriors[m->draws[d].post].net;
        }
    }
    check_loops(k);
    for (int l = 0; l < m->n_latents; l++) {
        int drawn = 0;
        for (int d = 0; d < m->n_draws; d++)
            drawn |= m->draws[d].latent == l;
        if (!drawn && !m->latents[l].sample && s->n_loss_blocks)
            diag_error(k->c, m->latents[l].node->at, "latent '%s' is never sampled; add '%s ~ q(%s | ...)' to the loss",
                       m->latents[l].name, m->latents[l].name, m->latents[l].name);
    }
    const sem_group *g0 = &m->groups[0];
    for (int i = 0; i < g0->n_order; i++)
        m->latent_order[i] = g0->order[i];
    check_terms(k);
    for (int g = 1; g < m->n_groups; g++)
        if (m->groups[g].loop->kind == LOOP_GIVEN)
            check_given_reads(k, g);
}

void check_importance_weighted(checker *k)
{
    const sem_model *m = k->m;
    if (m->train.samples <= 1)
        return;
    for (int i = 0; i < m->n_terms; i++)
        if (m->terms[i].kind == TERM_KL)
            diag_error(k->c, m->terms[i].node->at, "with samples = %ld the objective is the importance-weighted bound: "
                       "the log of the mean of weights made of log densities at the samples; KL(...) is analytic: write "
                       "KLsample(...)", m->train.samples);
}
