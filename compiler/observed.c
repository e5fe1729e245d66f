/* observed.c: what an example that observes only some of the modalities
 * contributes to the loss (incomplete data).
 *
 * For every non-empty subset O of the modalities, the checked loss is cut
 * down to what O allows, by these rules:
 *   - a loop's instance counts when its set (a loop over sets or subsets)
 *     or its component's condition (a loop over components) is observed;
 *     a `mean` loop divides by the instances that count;
 *   - a product of experts multiplies its observed experts (at least one
 *     besides the prior), a mixture averages its observed components (at
 *     least one), a network's posterior needs every modality it reads;
 *   - a draw counts when its group does, its posterior is available and
 *     the samples that posterior reads count;
 *   - a term counts when its group does, what its distributions read (a
 *     modality, samples, posteriors) is available, and, for -log p(m | z),
 *     when m is observed.
 * A `given (O) { ... }` block is the whole loss of examples that observe
 * exactly O (its terms read nothing else: check_loss.c), and no part of
 * any other's. With every modality observed only the given blocks are cut.
 * Lowering (lower.c) makes a training graph of each subset whose loss
 * keeps a term. */
#include "check.h"

/* Whether a posterior is available given the modalities `o`. */
int condition_observed(const sem_model *m, int post, unsigned o)
{
    return (m->posteriors[post].condition & ~o) == 0;
}

int posterior_observed(const sem_model *m, int post, unsigned o)
{
    const sem_posterior *r = &m->posteriors[post];
    switch (r->kind) {
    case POST_NET:
        return condition_observed(m, post, o);
    case POST_PRODUCT:
        return product_observed_experts(m, post, o) != 0;
    case POST_MIXTURE:
        for (int k = 0; k < r->n_components; k++)
            if (condition_observed(m, r->components[k], o))
                return 1;
        return 0;
    }
    return 0;
}

/* The experts of a product (bit i: the rule's expert i) observed in `o`. */
unsigned product_observed_experts(const sem_model *m, int post, unsigned o)
{
    const sem_posterior *r = &m->posteriors[post];
    const sem_rule *rule = &m->rules[r->rule];
    unsigned kept = 0;
    for (int i = 0; i < rule->n_experts; i++)
        if ((r->experts & (1u << i)) && condition_observed(m, rule->experts[i], o))
            kept |= 1u << i;
    return kept;
}

/* Whether the latents in `lats` have a counted sample in the group. */
static int samples_counted(const sem_model *m, const sem_subset *s, const sem_group *g, unsigned lats)
{
    for (int l = 0; l < m->n_latents; l++)
        if ((lats & (1u << l)) && (g->draw[l] < 0 || !s->draws[g->draw[l]]))
            return 0;
    return 1;
}

/* Whether a network reads only observed modalities and counted samples. */
static int net_counted(const sem_model *m, const sem_subset *s, const sem_group *g, int net)
{
    return net < 0 || ((m->nets[net].modalities_read & ~s->observed) == 0 &&
                       samples_counted(m, s, g, m->nets[net].latents_read));
}

static int dist_counted(const sem_model *m, const sem_subset *s, const sem_group *g, const sem_dist *d)
{
    switch (d->kind) {
    case DIST_POSTERIOR:
        return posterior_observed(m, d->post, s->observed) &&
               samples_counted(m, s, g, m->posteriors[d->post].latents_read);
    case DIST_LIKELIHOOD:
        return (s->observed & (1u << d->modality)) && net_counted(m, s, g, d->net);
    case DIST_PRIOR_NET:
        return net_counted(m, s, g, d->net);
    case DIST_STANDARD_NORMAL:
        return 1;
    }
    return 0;
}

/* Whether group g counts for examples observing `o`, where `replaced`
 * says that a given (o) block is their whole loss. */
static int group_counted(const sem_model *m, const sem_group *g, unsigned o, int replaced)
{
    if (g->loop && g->loop->kind == LOOP_GIVEN)
        return g->set == o;
    if (replaced)
        return 0;
    if (!g->loop)
        return 1;
    unsigned need = g->component >= 0 ? m->posteriors[g->component].condition : g->set;
    return (need & ~o) == 0;
}

static void cut_loss(ctx *c, const sem_model *m, sem_subset *s)
{
    s->groups = arena_alloc(&c->mem, (size_t)m->n_groups + 1);
    s->draws = arena_alloc(&c->mem, (size_t)m->n_draws + 1);
    s->terms = arena_alloc(&c->mem, (size_t)m->n_terms + 1);
    s->scale = arena_alloc(&c->mem, sizeof(double) * (size_t)(m->n_groups + 1));
    int replaced = 0;
    for (int g = 1; g < m->n_groups; g++)
        replaced |= m->groups[g].loop->kind == LOOP_GIVEN && m->groups[g].set == s->observed;
    for (int g = 0; g < m->n_groups; g++)
        s->groups[g] = (unsigned char)group_counted(m, &m->groups[g], s->observed, replaced);
    for (int g = 0; g < m->n_groups; g++) { /* a `mean` loop: 1 / the instances that count */
        const sem_group *grp = &m->groups[g];
        s->scale[g] = grp->scale;
        if (grp->loop && grp->scale != 1) {
            int counted = 0;
            for (int h = 0; h < m->n_groups; h++)
                counted += m->groups[h].loop == grp->loop && s->groups[h];
            s->scale[g] = counted ? 1.0 / counted : 0;
        }
    }
    /* draws group by group (the top level's first), each after the samples its posterior reads */
    for (int g = 0; g < m->n_groups; g++) {
        const sem_group *grp = &m->groups[g];
        for (int k = 0; k < grp->n_order; k++) {
            int d = grp->draw[grp->order[k]], post = m->draws[d].post;
            s->draws[d] = (unsigned char)(s->groups[g] && posterior_observed(m, post, s->observed) &&
                                          samples_counted(m, s, grp, m->posteriors[post].latents_read));
        }
    }
    s->n_terms = 0;
    for (int t = 0; t < m->n_terms; t++) {
        const sem_term *term = &m->terms[t];
        const sem_group *grp = &m->groups[term->group];
        int kept = s->groups[term->group] && dist_counted(m, s, grp, &term->a);
        if (kept && term->kind != TERM_NLL)
            kept = dist_counted(m, s, grp, &term->b);
        if (kept && term->kind == TERM_KL_SAMPLE)
            kept = samples_counted(m, s, grp, 1u << term->a.latent);
        s->terms[t] = (unsigned char)kept;
        s->n_terms += kept;
    }
}

void check_observed(checker *k)
{
    sem_model *m = k->m;
    if (m->n_modalities > MAX_OBSERVED_MODALITIES)
        return; /* the trainer refuses incomplete data for this model */
    m->n_subsets = (1 << m->n_modalities) - 1;
    m->subsets = arena_alloc(&k->c->mem, sizeof(sem_subset) * (size_t)(m->n_subsets + 1));
    for (int i = 0; i < m->n_subsets; i++) {
        m->subsets[i].observed = (unsigned)i + 1;
        cut_loss(k->c, m, &m->subsets[i]);
    }
}

const sem_subset *observed_subset(const sem_model *m, unsigned observed)
{
    return observed >= 1 && (int)observed <= m->n_subsets ? &m->subsets[observed - 1] : NULL;
}
