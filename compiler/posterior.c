/* posterior.c: posteriors as records, and the rules that build them from
 * experts.
 *
 * Every q(z | ...) the spec names resolves, once, to a record: a network's
 * posterior head, the product of Gaussian experts, or a uniform mixture of
 * other posteriors. A rule `q(z | x, w) = mopoe(q(z | x), q(z | w))` makes
 * q(z | S) for every set S that is a union of its experts' conditioning
 * sets, as its row of the operation table (ops.c) says: the product of S's
 * experts (poe), their mixture (moe), or the mixture over the subsets of
 * S's experts of their products (mopoe). The records are made when a spec
 * names them (and by the families, for eval), each once: lowering lowers
 * each in one place. */
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

static int same_record(const sem_posterior *a, const sem_posterior *b)
{
    if (a->kind != b->kind || a->latent != b->latent || a->net != b->net || a->rule != b->rule ||
        a->experts != b->experts || a->prior != b->prior || a->n_components != b->n_components)
        return 0;
    for (int i = 0; i < a->n_components; i++)
        if (a->components[i] != b->components[i])
            return 0;
    return 1;
}

/* The record's index, made if it is new. */
static int add_posterior(checker *k, const sem_posterior *rec)
{
    sem_model *m = k->m;
    for (int i = 0; i < m->n_posteriors; i++)
        if (same_record(&m->posteriors[i], rec))
            return i;
    m->posteriors = arena_grow(&k->c->mem, m->posteriors, m->n_posteriors, &m->cap_posteriors, sizeof *m->posteriors);
    sem_posterior *p = &m->posteriors[m->n_posteriors];
    *p = *rec;
    if (rec->n_components) {
        p->components = arena_alloc(&k->c->mem, sizeof(int) * (size_t)rec->n_components);
        memcpy(p->components, rec->components, sizeof(int) * (size_t)rec->n_components);
    }
    return m->n_posteriors++;
}

void make_head_posteriors(checker *k)
{
    sem_model *m = k->m;
    k->net_post = arena_alloc(&k->c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    for (int i = 0; i < m->n_nets; i++) {
        const sem_net *n = &m->nets[i];
        k->net_post[i] = -1;
        if (n->head != HEAD_POSTERIOR)
            continue;
        sem_posterior rec = {POST_NET, n->target, n->modalities_read, n->latents_read, i, -1, 0, 0, 0, NULL,
                             n->node->head->at};
        k->net_post[i] = add_posterior(k, &rec);
    }
}

/* ------------------------------------------------------------------ rules -- */

/* The product of the rule's experts in `experts` (with its prior expert if
 * it has one): a single expert without the prior is that expert. */
static int product_of(checker *k, int r, unsigned experts)
{
    const sem_model *m = k->m;
    const sem_rule *rule = &m->rules[r];
    if (popcount(experts) == 1 && !rule->prior)
        for (int i = 0; i < rule->n_experts; i++)
            if (experts & (1u << i))
                return rule->experts[i];
    sem_posterior rec = {POST_PRODUCT, rule->latent, 0, 0, -1, r, experts, rule->prior, 0, NULL, rule->node->at};
    for (int i = 0; i < rule->n_experts; i++)
        if (experts & (1u << i)) {
            rec.condition |= m->posteriors[rule->experts[i]].condition;
            rec.latents_read |= m->posteriors[rule->experts[i]].latents_read;
        }
    return add_posterior(k, &rec);
}

/* q(z | S) of rule r, for the experts `experts` whose sets make S. */
static int rule_posterior(checker *k, int r, unsigned experts)
{
    const sem_model *m = k->m;
    const sem_rule *rule = &m->rules[r];
    const rule_def *def = &rule_table[rule->kind];
    if (!def->mixture)
        return product_of(k, r, experts);
    int parts[MAX_SUBSETS + 1], n = 0;
    if (def->of_products) {
        for (unsigned t = 1; t <= experts && n < MAX_SUBSETS; t++)
            if ((t & ~experts) == 0)
                parts[n++] = product_of(k, r, t);
    } else {
        for (int i = 0; i < rule->n_experts; i++)
            if (experts & (1u << i))
                parts[n++] = rule->experts[i];
    }
    if (n == 1)
        return parts[0];
    sem_posterior rec = {POST_MIXTURE, rule->latent, 0, 0, -1, r, experts, 0, n, parts, rule->node->at};
    for (int i = 0; i < n; i++) {
        rec.condition |= m->posteriors[parts[i]].condition;
        rec.latents_read |= m->posteriors[parts[i]].latents_read;
    }
    return add_posterior(k, &rec);
}

int posterior_for(checker *k, int latent, unsigned mods, unsigned lats)
{
    const sem_model *m = k->m;
    int r = m->latents[latent].rule;
    if (r >= 0 && mods) {
        const sem_rule *rule = &m->rules[r];
        unsigned experts = 0, covered = 0, read = 0;
        for (int i = 0; i < rule->n_experts; i++) {
            const sem_posterior *e = &m->posteriors[rule->experts[i]];
            if ((e->condition & ~mods) == 0) {
                experts |= 1u << i;
                covered |= e->condition;
                read |= e->latents_read;
            }
        }
        if (covered == mods && read == lats)
            return rule_posterior(k, r, experts);
    }
    int net = find_head(m, HEAD_POSTERIOR, latent, mods, lats);
    return net >= 0 ? k->net_post[net] : -1;
}

static void rule_error_expert(checker *k, const dist_ref *d, const char *why)
{
    diag_error(k->c, d->at, "%s", why);
}

static void check_rule(checker *k, const rule_node *node)
{
    sem_model *m = k->m;
    const dist_ref *t = node->target;
    sem_rule rule = {0};
    rule.node = node;
    if (t->family != 'q') {
        diag_error(k->c, t->at, "a rule defines a posterior q(z | ...) from experts; %s is not one",
                   t->family == 'p' ? "p(...)" : "a loop's variable");
        return;
    }
    const name_entry *e = lookup(k, t->target.text);
    if (!e || e->kind != NAME_LATENT) {
        diag_error(k->c, t->target.at, "'%s' is %s; a rule defines a posterior over a latent", t->target.text,
                   e ? kind_names[e->kind] : "not declared");
        return;
    }
    int z = e->index;
    rule.latent = z;
    const sem_latent *lat = &m->latents[z];
    int kind = find_rule(node->rule.text);
    if (kind < 0) {
        const char *words[N_RULES];
        for (int i = 0; i < N_RULES; i++)
            words[i] = rule_table[i].word;
        diag_error(k->c, node->rule.at, "unknown rule '%s'; expecting %s", node->rule.text, word_list(k->c, words, N_RULES));
        return;
    }
    rule.kind = (rule_kind)kind;
    const rule_def *def = &rule_table[kind];
    unsigned mods, lats;
    int errors = k->c->n_errors;
    given_sets(k, t, &mods, &lats);
    if (k->c->n_errors > errors)
        return;
    if (lat->rule >= 0) {
        diag_error(k->c, node->at, "'%s' already has a rule at line %d; one rule makes all its posteriors", lat->name,
                   m->rules[lat->rule].node->at.line);
        return;
    }
    unsigned covered = 0, read = 0;
    int bad = 0;
    for (int i = 0; i < node->experts.n; i++) {
        const dist_ref *d = node->experts.items[i];
        if (d->family == 'p') {
            const name_entry *pe = lookup(k, d->target.text);
            if (!pe || pe->kind != NAME_LATENT || pe->index != z || d->given.n) {
                rule_error_expert(k, d, arena_printf(&k->c->mem, "an expert of q(%s | ...) is a posterior q(%s | ...) "
                                  "or the prior p(%s)", lat->name, lat->name, lat->name));
                bad = 1;
            } else if (!def->takes_prior) {
                rule_error_expert(k, d, arena_printf(&k->c->mem, "%s takes no prior: %s is of the experts alone; "
                                  "remove p(%s)", def->word, def->what, lat->name));
                bad = 1;
            } else if (lat->prior_net >= 0 || lat->node->prior) {
                rule_error_expert(k, d, arena_printf(&k->c->mem, "only a standard normal prior can be an expert; the "
                                  "prior of '%s' is conditional", lat->name));
                bad = 1;
            } else if (rule.prior) {
                rule_error_expert(k, d, arena_printf(&k->c->mem, "p(%s) is listed twice", lat->name));
                bad = 1;
            }
            rule.prior = 1;
            continue;
        }
        if (!d->family) {
            rule_error_expert(k, d, arena_printf(&k->c->mem, "'%s' is not a distribution; an expert is a posterior "
                              "q(%s | ...)", d->target.text, lat->name));
            bad = 1;
            continue;
        }
        const name_entry *xe = lookup(k, d->target.text);
        if (!xe || xe->kind != NAME_LATENT) {
            rule_error_expert(k, d, arena_printf(&k->c->mem, "'%s' is %s; an expert is a Gaussian posterior q(%s | ...)",
                              d->target.text, xe ? kind_names[xe->kind] : "not declared", lat->name));
            bad = 1;
            continue;
        }
        if (xe->index != z) {
            const sem_latent *other = &m->latents[xe->index];
            rule_error_expert(k, d, arena_printf(&k->c->mem, "the experts of q(%s | ...) must be posteriors of %s (%d "
                              "values); this one is of %s (%d values)", lat->name, lat->name, lat->size, other->name,
                              other->size));
            bad = 1;
            continue;
        }
        unsigned emods, elats;
        errors = k->c->n_errors;
        given_sets(k, d, &emods, &elats);
        if (k->c->n_errors > errors) {
            bad = 1;
            continue;
        }
        int net = find_head(m, HEAD_POSTERIOR, z, emods, elats);
        if (net < 0) {
            rule_error_expert(k, d, "no network has this distribution as its head; an expert is a Gaussian posterior "
                              "that a network gives");
            bad = 1;
            continue;
        }
        if (!emods) {
            rule_error_expert(k, d, "an expert must be conditioned on modalities: a rule combines the experts of "
                              "the modalities it is given");
            bad = 1;
            continue;
        }
        if (emods & covered) {
            rule_error_expert(k, d, arena_printf(&k->c->mem, "the experts of a rule are conditioned on separate "
                              "modalities, but %s is also read by another expert", mask_names(k->c, m, emods & covered, 0)));
            bad = 1;
            continue;
        }
        if (rule.n_experts == MAX_MODALITIES)
            continue; /* disjoint non-empty sets: never more than the modalities */
        covered |= emods;
        read |= elats;
        rule.experts[rule.n_experts++] = k->net_post[net];
    }
    if (bad)
        return;
    if (rule.n_experts < 2) {
        diag_error(k->c, node->rule.at, "%s of %s: %s needs two experts or more%s", def->word,
                   rule.n_experts ? "one expert" : "no expert", def->what,
                   rule.n_experts ? "; with one, name that expert itself" : "");
        return;
    }
    if (def->mixture && def->of_products && (1L << rule.n_experts) - 1 > MAX_SUBSETS) {
        diag_error(k->c, node->rule.at, "%s over %d experts is a mixture of %ld products, one per subset; at most %d "
                   "(5 experts)", def->word, rule.n_experts, (1L << rule.n_experts) - 1, MAX_SUBSETS);
        return;
    }
    int head = find_head(m, HEAD_POSTERIOR, z, mods, lats);
    if (head >= 0 && !m->nets[head].broken) {
        diag_error(k->c, t->at, "this distribution is already the head of network '%s' (line %d); a rule defines "
                   "posteriors no network gives", m->nets[head].name, m->nets[head].node->at.line);
        return;
    }
    if (covered != mods || read != lats) {
        diag_error(k->c, t->at, "the left side conditions on %s, but the experts on %s", mask_names(k->c, m, mods, lats),
                   mask_names(k->c, m, covered, read));
        return;
    }
    rule.condition = covered;
    m->rules[m->n_rules] = rule;
    m->latents[z].rule = m->n_rules++;
}

void check_rules(checker *k)
{
    sem_model *m = k->m;
    const vec *rules = &k->c->spec->rules;
    m->rules = arena_alloc(&k->c->mem, sizeof(sem_rule) * (size_t)(rules->n + 1));
    for (int i = 0; i < m->n_latents; i++)
        m->latents[i].rule = -1;
    for (int i = 0; i < rules->n; i++)
        check_rule(k, rules->items[i]);
}

/* ------------------------------------------------------------------ views -- */

int posterior_is_gaussian(const sem_model *m, int post)
{
    return m->posteriors[post].kind != POST_MIXTURE;
}

static const char *given_text(ctx *c, const sem_model *m, const sem_posterior *p)
{
    return mask_names(c, m, p->condition, p->latents_read);
}

const char *posterior_name(ctx *c, const sem_model *m, int post)
{
    const sem_posterior *p = &m->posteriors[post];
    const char *name = arena_printf(&c->mem, "q(%s | %s)", m->latents[p->latent].name, given_text(c, m, p));
    if (p->kind != POST_PRODUCT || rule_table[m->rules[p->rule].kind].mixture == 0)
        return name;
    /* a component of a mixture of products: spelled as the product it is */
    const sem_rule *r = &m->rules[p->rule];
    const char *s = p->prior ? arena_printf(&c->mem, "p(%s)", m->latents[p->latent].name) : "";
    for (int i = 0; i < r->n_experts; i++)
        if (p->experts & (1u << i))
            s = arena_printf(&c->mem, "%s%s%s", s, *s ? " * " : "", posterior_name(c, m, r->experts[i]));
    return s;
}

void mark_posterior_used(sem_model *m, int post, void (*mark_net)(sem_model *, int))
{
    if (post < 0)
        return;
    const sem_posterior *p = &m->posteriors[post];
    if (p->kind == POST_NET)
        mark_net(m, p->net);
    if (p->kind == POST_PRODUCT)
        for (int i = 0; i < m->rules[p->rule].n_experts; i++)
            if (p->experts & (1u << i))
                mark_posterior_used(m, m->rules[p->rule].experts[i], mark_net);
    for (int i = 0; i < p->n_components; i++)
        mark_posterior_used(m, p->components[i], mark_net);
}
