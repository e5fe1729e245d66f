/* names.c: the C identifiers a checked model will be emitted with, checked
 * before any later stage runs.
 *
 * Every identifier the emitted files define at file scope begins with the
 * model's name (functions and tables, <model>_...) or its capitals (macros,
 * <MODEL>_...), and is built from the spec's names: the size macro of each
 * modality and latent, the index macro of each term, the offset macro of
 * each parameter tensor, the function of each posterior family. Two of them
 * may come out the same (a modality x and a latent X both make
 * <MODEL>_X_SIZE; modalities left, right and left_right make two
 * posterior_left_right); this stage lists them all and reports each clash
 * at the spec line that makes the second, naming the first.
 *
 * Inside functions, the emitted code names its buffers after the spec
 * (in_x, enc_x_h1, z_sample, term_rec_x, d_...), unique by construction
 * and always holding an underscore; its own locals are single words or
 * begin with jv_, which no spec name may begin with. So nothing a spec
 * names can clash with them, with the runtime (jv_*, JV_*), or with a C
 * keyword (a spec name never appears alone). Names beginning with an
 * underscore are refused (C reserves them).
 */
#include <ctype.h>
#include <string.h>

#include "model.h"

typedef struct {
    const char *text;
    const char *what; /* "modality 'x'" */
    loc at;
} emitted_name;

typedef struct {
    ctx *c;
    emitted_name *names;
    int n, cap;
    loc last_clash; /* one error per spec item, for the first of its names that clashes */
} name_table;

static void add_name(name_table *t, const char *text, const char *what, loc at)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->names[i].text, text) == 0) {
            if (t->last_clash.line != at.line || t->last_clash.col != at.col)
                diag_error(t->c, at, "%s would be emitted as '%s', which %s (line %d) already is; rename one of them",
                           what, text, t->names[i].what, t->names[i].at.line);
            t->last_clash = at;
            return;
        }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        emitted_name *grown = arena_alloc(&t->c->mem, sizeof *grown * (size_t)cap);
        if (t->n)
            memcpy(grown, t->names, sizeof *grown * (size_t)t->n);
        t->names = grown;
        t->cap = cap;
    }
    t->names[t->n++] = (emitted_name){text, what, at};
}

static const char *upper_of(ctx *c, const char *s)
{
    char *u = arena_strndup(&c->mem, s, strlen(s));
    for (char *p = u; *p; p++)
        *p = (char)(*p == '.' ? '_' : toupper((unsigned char)*p));
    return u;
}

/* A spec name must not begin with an underscore or with jv_ (any case), the
 * runtime's prefix. */
static void check_spelling(ctx *c, const char *name, const char *what, loc at)
{
    if (name[0] == '_')
        diag_error(c, at, "%s begins with '_': C reserves such names; begin it with a letter", what);
    else if ((name[0] == 'j' || name[0] == 'J') && (name[1] == 'v' || name[1] == 'V') && (name[2] == '_' || !name[2]))
        diag_error(c, at, "%s begins with 'jv': the runtime's names do (jv_*, JV_*); pick another", what);
}

const char *family_suffix(ctx *c, const sem_model *m, unsigned condition)
{
    size_t len = 1;
    for (int i = 0; i < m->n_modalities; i++)
        if (condition & (1u << i))
            len += strlen(m->modalities[i].name) + 1;
    char *s = arena_alloc(&c->mem, len);
    for (int i = 0; i < m->n_modalities; i++)
        if (condition & (1u << i)) {
            if (*s)
                strcat(s, "_");
            strcat(s, m->modalities[i].name);
        }
    return s;
}

/* "x, w": the modalities of a set, for messages. */
static const char *modality_list(ctx *c, const sem_model *m, unsigned set)
{
    const char *s = "";
    for (int i = 0; i < m->n_modalities; i++)
        if (set & (1u << i))
            s = arena_printf(&c->mem, "%s%s%s", s, *s ? ", " : "", m->modalities[i].name);
    return s;
}

void check_emitted_names(ctx *c, const sem_model *m)
{
    name_table t = {c, NULL, 0, 0, {0, 0}};
    const spec_node *s = c->spec;
    loc model_at = s->name.at;
    const char *p = m->name, *P = upper_of(c, m->name);
    const char *model_what = arena_printf(&c->mem, "model '%s'", p);
    check_spelling(c, p, model_what, model_at);
    for (int i = 0; i < m->n_modalities; i++)
        check_spelling(c, m->modalities[i].name, arena_printf(&c->mem, "modality '%s'", m->modalities[i].name),
                       m->modalities[i].node->name.at);
    for (int i = 0; i < m->n_latents; i++)
        check_spelling(c, m->latents[i].name, arena_printf(&c->mem, "latent '%s'", m->latents[i].name),
                       m->latents[i].node->name.at);
    for (int i = 0; i < m->n_nets; i++)
        check_spelling(c, m->nets[i].name, arena_printf(&c->mem, "network '%s'", m->nets[i].name),
                       m->nets[i].node->name.at);
    for (int i = 0; i < m->n_hypers; i++)
        check_spelling(c, m->hypers[i].name, arena_printf(&c->mem, "hyperparameter '%s'", m->hypers[i].name),
                       m->hypers[i].node->name.at);
    for (int i = 0; i < m->n_terms; i++)
        check_spelling(c, m->terms[i].cname, arena_printf(&c->mem, "term '%s'", m->terms[i].name),
                       m->terms[i].node->name.at);

    /* what the header defines: the guard, the size macros, the layout, the API */
    static const char *const fixed_macros[] = {"H", "N_PARAMS", "N_MODALITIES", "N_LATENTS", "N_TERMS",
                                               "N_HYPERS", "ARENA_PER_EXAMPLE", "ARENA_REALS"};
    for (size_t i = 0; i < sizeof fixed_macros / sizeof *fixed_macros; i++)
        add_name(&t, arena_printf(&c->mem, "%s_%s", P, fixed_macros[i]), model_what, model_at);
    static const char *const fixed[] = {"model",      "init",         "forward",     "backward",    "log_joint",
                                        "decode",     "sample_prior", "gradcheck",   "modalities",  "latents",
                                        "tensors",    "hypers",       "term_names",  "families",    "train_succ",
                                        "train_reads", "train_slots", "train_tasks", "train_graph", "draw_latents"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        add_name(&t, arena_printf(&c->mem, "%s_%s", p, fixed[i]), model_what, model_at);
        add_name(&t, arena_printf(&c->mem, "%s_f64_%s", p, fixed[i]), model_what, model_at);
    }
    for (int i = 0; i < m->n_modalities; i++)
        add_name(&t, arena_printf(&c->mem, "%s_%s_SIZE", P, upper_of(c, m->modalities[i].name)),
                 arena_printf(&c->mem, "modality '%s'", m->modalities[i].name), m->modalities[i].node->name.at);
    for (int i = 0; i < m->n_latents; i++)
        add_name(&t, arena_printf(&c->mem, "%s_%s_SIZE", P, upper_of(c, m->latents[i].name)),
                 arena_printf(&c->mem, "latent '%s'", m->latents[i].name), m->latents[i].node->name.at);
    for (int i = 0; i < m->n_terms; i++)
        add_name(&t, arena_printf(&c->mem, "%s_TERM_%s", P, upper_of(c, m->terms[i].cname)),
                 arena_printf(&c->mem, "term '%s'", m->terms[i].name), m->terms[i].node->name.at);
    /* the parameter tensors, named as lower.c lays them out */
    for (int i = 0; i < m->n_nets; i++) {
        const sem_net *n = &m->nets[i];
        const char *what = arena_printf(&c->mem, "a tensor of network '%s'", n->name);
        for (int l = 0; l <= n->n_layers; l++) {
            int head = l == n->n_layers;
            if (head && n->head == HEAD_NONE)
                break;
            const char *layer = head ? "HEAD" : arena_printf(&c->mem, "H%d", l + 1);
            add_name(&t, arena_printf(&c->mem, "%s_%s_%s_WEIGHT", P, upper_of(c, n->name), layer), what, n->node->name.at);
            add_name(&t, arena_printf(&c->mem, "%s_%s_%s_BIAS", P, upper_of(c, n->name), layer), what, n->node->name.at);
        }
    }
    /* the training step of each observed subset whose loss keeps a term (lower.c) */
    for (int i = 0; i + 1 < m->n_subsets; i++) {
        if (!m->subsets[i].n_terms)
            continue;
        const char *only = family_suffix(c, m, m->subsets[i].observed);
        const char *what = arena_printf(&c->mem, "the training step of examples that observe only %s", only);
        static const char *const step[] = {"forward", "backward", "train", "f64_forward", "f64_backward"};
        for (size_t j = 0; j < sizeof step / sizeof *step; j++)
            add_name(&t, arena_printf(&c->mem, "%s_%s_%s", p, step[j], only), what, model_at);
    }
    /* a posterior family's two functions, in single and double precision */
    for (int f = 0; f < m->n_families; f++) {
        const sem_family *fam = &m->families[f];
        const char *what = fam->given ? "the family of posteriors given any subset"
                           : fam->condition ? arena_printf(&c->mem, "the family of posteriors q(... | %s)",
                                                           modality_list(c, m, fam->condition))
                                            : "the family of the training samples";
        loc at = fam->at;
        add_name(&t, arena_printf(&c->mem, "%s_posterior_%s", p, fam->name), what, at);
        add_name(&t, arena_printf(&c->mem, "%s_posterior_%s_repeated", p, fam->name), what, at);
        add_name(&t, arena_printf(&c->mem, "%s_f64_posterior_%s", p, fam->name), what, at);
        add_name(&t, arena_printf(&c->mem, "%s_f64_posterior_%s_repeated", p, fam->name), what, at);
        if (fam->given) {
            add_name(&t, arena_printf(&c->mem, "%s_posterior_%s_covers", p, fam->name), what, at);
            add_name(&t, arena_printf(&c->mem, "%s_f64_posterior_%s_covers", p, fam->name), what, at);
        }
    }
}
