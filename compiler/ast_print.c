/* ast_print.c: two views of the syntax tree: `--emit=ast` (a dump of every
 * node, with locations) and `fmt` (the spec in canonical layout, comments
 * kept). fmt(fmt(s)) == fmt(s), and parse(fmt(s)) has the same dump. */
#include <stdlib.h>
#include <string.h>

#include "ast.h"

/* ------------------------------------------------------------ shared bits -- */

static void print_names(FILE *out, const vec *names)
{
    for (int i = 0; i < names->n; i++)
        fprintf(out, "%s%s", i ? ", " : "", ((ident *)names->items[i])->text);
}

void print_dist(FILE *out, const dist_ref *d)
{
    if (!d->family) { /* a loop's variable */
        fputs(d->target.text, out);
        return;
    }
    fprintf(out, "%c(%s", d->family, d->target.text);
    if (d->given.n) {
        fputs(" | ", out);
        print_names(out, &d->given);
    }
    fputc(')', out);
}

static void print_layer(FILE *out, const layer_node *l)
{
    fputs(l->word.text, out);
    if (!l->has_call)
        return;
    fputc('(', out);
    for (int i = 0; i < l->args.n; i++) {
        const layer_arg *a = l->args.items[i];
        fputs(i ? ", " : "", out);
        if (a->key.text)
            fprintf(out, "%s=", a->key.text);
        if (a->num)
            fputs(a->num->text, out);
        else if (a->word.text)
            fputs(a->word.text, out);
        else if (a->call)
            print_layer(out, a->call);
    }
    fputc(')', out);
}

static void print_net_body(FILE *out, const net_node *n)
{
    if (n->combine == COMBINE_ONE) {
        print_names(out, &n->inputs);
    } else {
        fputs(n->combine == COMBINE_CONCAT ? "concat(" : "sum(", out);
        print_names(out, &n->inputs);
        fputc(')', out);
    }
    for (int i = 0; i < n->layers.n; i++) {
        fputs(" -> ", out);
        print_layer(out, n->layers.items[i]);
    }
    if (n->head) {
        fputs(" -> ", out);
        print_dist(out, n->head);
        if (n->variance.text)
            fprintf(out, " var=%s", n->variance.text);
    }
}

static void print_dims(FILE *out, const vec *dims)
{
    for (int i = 0; i < dims->n; i++)
        fprintf(out, "%s%s", i ? ", " : "", ((number *)dims->items[i])->text);
}

static void print_term(FILE *out, const term_node *t)
{
    fprintf(out, "%s = ", t->name.text);
    if (t->weight_const)
        fprintf(out, "%s * ", t->weight_const->text);
    else if (t->weight_hyper.text)
        fprintf(out, "%s * ", t->weight_hyper.text);
    if (t->kind == TERM_NLL) {
        fputs("-log ", out);
        print_dist(out, t->a);
        return;
    }
    fputs(t->kind == TERM_KL ? "KL(" : "KLsample(", out);
    print_dist(out, t->a);
    fputs(" || ", out);
    print_dist(out, t->b);
    fputc(')', out);
}

/* A term, with its guard when it has one. */
static void print_term_line(FILE *out, const term_node *t)
{
    print_term(out, t);
    if (t->guard.text)
        fprintf(out, " if %s in %s", t->guard.text, t->guard_set.text);
}

static void print_rule(FILE *out, const rule_node *r)
{
    print_dist(out, r->target);
    fprintf(out, " = %s(", r->rule.text);
    for (int i = 0; i < r->experts.n; i++) {
        if (i)
            fputs(", ", out);
        print_dist(out, r->experts.items[i]);
    }
    fputc(')', out);
}

/* " (loop over S)" or " (given x)" after what is in a loop's body. */
static void print_loop_of(FILE *out, const loop_node *l)
{
    if (l && l->kind == LOOP_GIVEN) {
        fputs(" (given ", out);
        print_names(out, l->sets.items[0]);
        fputc(')', out);
    } else if (l) {
        fprintf(out, " (loop over %s)", l->var.text);
    }
}

/* "mean over S in subsets(x, w)" or "given (x)", without the brace. */
static void print_loop_head(FILE *out, const loop_node *l)
{
    if (l->kind == LOOP_GIVEN) {
        fprintf(out, "%s (", l->func.text);
        print_names(out, l->sets.items[0]);
        fputc(')', out);
        return;
    }
    fprintf(out, "%s over %s in ", l->combine.text, l->var.text);
    if (l->kind == LOOP_COMPONENTS) {
        fprintf(out, "%s(", l->func.text);
        print_dist(out, l->of);
        fputc(')', out);
        return;
    }
    if (l->kind == LOOP_SUBSETS)
        fprintf(out, "%s", l->func.text);
    for (int i = 0; i < l->sets.n; i++) {
        fputs(i ? ", (" : "(", out);
        print_names(out, l->sets.items[i]);
        fputc(')', out);
    }
}

static void print_setting(FILE *out, const setting_node *s)
{
    fprintf(out, "%s = ", s->key.text);
    if (s->value) {
        fputs(s->value->text, out);
        return;
    }
    fputs(s->word.text, out);
    if (!s->has_call)
        return;
    fputc('(', out);
    for (int i = 0; i < s->args.n; i++) {
        const setting_node *a = s->args.items[i];
        fprintf(out, "%s%s = %s", i ? ", " : "", a->key.text, a->value->text);
    }
    fputc(')', out);
}

static void print_modality(FILE *out, const modality_node *m)
{
    fprintf(out, "modality %s[", m->name.text);
    print_dims(out, &m->dims);
    fprintf(out, "] ~ %s", m->likelihood.text);
    if (m->likelihood_arg.text)
        fprintf(out, "(%s)", m->likelihood_arg.text);
}

static void print_latent(FILE *out, const latent_node *l)
{
    fprintf(out, "latent %s[%s] ~ ", l->name.text, l->size->text);
    if (l->prior)
        print_dist(out, l->prior);
    else
        fputs(l->prior_name.text, out);
}

static void print_hyper(FILE *out, const hyper_node *h)
{
    fprintf(out, "hyper %s = %s", h->name.text, h->value->text);
    if (h->warmup_from)
        fprintf(out, " warmup from %s over %s epochs", h->warmup_from->text, h->warmup_epochs->text);
}

/* ------------------------------------------------------------------- dump -- */

static void dump_loc(FILE *out, loc at, int with_locations)
{
    if (with_locations)
        fprintf(out, "  @%d:%d", at.line, at.col);
    fputc('\n', out);
}

void ast_dump(FILE *out, const spec_node *s, int with_locations)
{
    fprintf(out, "Spec %s", s->name.text ? s->name.text : "?");
    dump_loc(out, s->name.at, with_locations);
    for (int i = 0; i < s->modalities.n; i++) {
        fputs("  Modality ", out);
        print_modality(out, s->modalities.items[i]);
        dump_loc(out, ((modality_node *)s->modalities.items[i])->at, with_locations);
    }
    for (int i = 0; i < s->latents.n; i++) {
        fputs("  Latent ", out);
        print_latent(out, s->latents.items[i]);
        dump_loc(out, ((latent_node *)s->latents.items[i])->at, with_locations);
    }
    for (int i = 0; i < s->nets.n; i++) {
        const net_node *n = s->nets.items[i];
        fprintf(out, "  Net %s", n->name.text);
        dump_loc(out, n->at, with_locations);
        fputs("    input ", out);
        fputs(n->combine == COMBINE_CONCAT ? "concat " : n->combine == COMBINE_SUM ? "sum " : "", out);
        print_names(out, &n->inputs);
        fputc('\n', out);
        for (int j = 0; j < n->layers.n; j++) {
            const layer_node *l = n->layers.items[j];
            fputs("    Layer ", out);
            print_layer(out, l);
            dump_loc(out, l->at, with_locations);
        }
        if (n->head) {
            fputs("    Head ", out);
            print_dist(out, n->head);
            fprintf(out, " variance %s", n->variance.text ? n->variance.text : "default");
            dump_loc(out, n->head->at, with_locations);
        }
    }
    for (int i = 0; i < s->hypers.n; i++) {
        fputs("  Hyper ", out);
        print_hyper(out, s->hypers.items[i]);
        dump_loc(out, ((hyper_node *)s->hypers.items[i])->at, with_locations);
    }
    for (int i = 0; i < s->rules.n; i++) {
        fputs("  Rule ", out);
        print_rule(out, s->rules.items[i]);
        dump_loc(out, ((rule_node *)s->rules.items[i])->at, with_locations);
    }
    if (s->n_loss_blocks) {
        fputs("  Loss", out);
        dump_loc(out, s->loss_at, with_locations);
    }
    for (int i = 0; i < s->loops.n; i++) {
        fputs("    Loop ", out);
        print_loop_head(out, s->loops.items[i]);
        dump_loc(out, ((loop_node *)s->loops.items[i])->at, with_locations);
    }
    for (int i = 0; i < s->samples.n; i++) {
        const sample_node *m = s->samples.items[i];
        fprintf(out, "    Sample %s ~ ", m->latent.text);
        print_dist(out, m->from);
        print_loop_of(out, m->loop);
        dump_loc(out, m->at, with_locations);
    }
    for (int i = 0; i < s->terms.n; i++) {
        const term_node *t = s->terms.items[i];
        fputs("    Term ", out);
        print_term_line(out, t);
        print_loop_of(out, t->loop);
        dump_loc(out, t->at, with_locations);
    }
    if (s->n_train_blocks) {
        fputs("  Train", out);
        dump_loc(out, s->train_at, with_locations);
    }
    for (int i = 0; i < s->settings.n; i++) {
        fputs("    Setting ", out);
        print_setting(out, s->settings.items[i]);
        dump_loc(out, ((setting_node *)s->settings.items[i])->at, with_locations);
    }
}

/* ----------------------------------------------------------------- format -- */

typedef enum {
    IT_MODALITY, IT_LATENT, IT_NET, IT_RULE, IT_HYPER, IT_LOSS, IT_TRAIN, IT_SAMPLE, IT_TERM, IT_SETTING, IT_LOOP
} item_kind;

typedef struct {
    item_kind kind;
    const void *node;
    loc at;
} item;

static int loc_cmp(loc a, loc b)
{
    return a.line != b.line ? (a.line < b.line ? -1 : 1) : a.col < b.col ? -1 : a.col > b.col;
}

static int item_cmp(const void *a, const void *b)
{
    return loc_cmp(((const item *)a)->at, ((const item *)b)->at);
}

/* Where the layout stands: the next comment to print. */
typedef struct {
    FILE *out;
    const ctx *c;
    int next_comment;
    int last_line; /* the source line of what was printed last */
} layout;

/* Is source line `line` empty or blank? */
static int line_is_blank(const ctx *c, int line)
{
    const char *p = c->source, *end = c->source + c->source_len;
    for (int l = 1; l < line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return 0;
        p = nl + 1;
    }
    for (; p < end && *p != '\n'; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r')
            return 0;
    return 1;
}

/* Keeps one blank line where the source had one or more before `line`. */
static void keep_paragraph(layout *lo, int line)
{
    int blank = 0;
    for (int l = lo->last_line + 1; l < line && !blank; l++)
        blank = line_is_blank(lo->c, l);
    if (blank && lo->last_line > 0)
        fputc('\n', lo->out);
    lo->last_line = line;
}

/* Prints the comments that come before `at`, each on its own line. */
static void flush_comments_before(layout *lo, loc at, const char *indent)
{
    while (lo->next_comment < lo->c->comments.n) {
        const comment *k = lo->c->comments.items[lo->next_comment];
        if (at.line && loc_cmp(k->at, at) >= 0)
            break;
        keep_paragraph(lo, k->at.line);
        fprintf(lo->out, "%s%s\n", indent, k->text);
        for (const char *p = k->text; *p; p++)
            lo->last_line += *p == '\n';
        lo->next_comment++;
    }
}

/* Ends an item's line, with the comment that followed it on that line. */
static void end_line(layout *lo, loc at, loc next)
{
    if (lo->next_comment < lo->c->comments.n) {
        const comment *k = lo->c->comments.items[lo->next_comment];
        if (k->at.line == at.line && (next.line == 0 || loc_cmp(k->at, next) < 0)) {
            fprintf(lo->out, "  %s", k->text);
            lo->next_comment++;
        }
    }
    fputc('\n', lo->out);
}

static void print_item(FILE *out, const item *it)
{
    switch (it->kind) {
    case IT_MODALITY: print_modality(out, it->node); break;
    case IT_LATENT: print_latent(out, it->node); break;
    case IT_NET:
        fprintf(out, "net %s = ", ((const net_node *)it->node)->name.text);
        print_net_body(out, it->node);
        break;
    case IT_HYPER: print_hyper(out, it->node); break;
    case IT_SAMPLE:
        fprintf(out, "%s ~ ", ((const sample_node *)it->node)->latent.text);
        print_dist(out, ((const sample_node *)it->node)->from);
        break;
    case IT_TERM: print_term_line(out, it->node); break;
    case IT_SETTING: print_setting(out, it->node); break;
    case IT_RULE: print_rule(out, it->node); break;
    case IT_LOOP:
    case IT_LOSS:
    case IT_TRAIN: break;
    }
}

/* The nodes of v (those in `loop`, when loop_offset >= 0: each node's loop
 * pointer is at that offset) as items. */
static void add_items_in(item *items, int *n, const vec *v, item_kind kind, size_t loc_offset, long loop_offset,
                         const loop_node *loop)
{
    for (int i = 0; i < v->n; i++) {
        if (loop_offset >= 0) {
            const loop_node *in;
            memcpy(&in, (const char *)v->items[i] + loop_offset, sizeof in);
            if (in != loop)
                continue;
        }
        items[*n].kind = kind;
        items[*n].node = v->items[i];
        memcpy(&items[*n].at, (const char *)v->items[i] + loc_offset, sizeof(loc));
        (*n)++;
    }
}

static void add_items(item *items, int *n, const vec *v, item_kind kind, size_t loc_offset)
{
    add_items_in(items, n, v, kind, loc_offset, -1, NULL);
}

static void print_items(layout *lo, item *items, int n, loc block_end, const char *indent);

/* A loop of the loss: its head, its body one level deeper, its brace. */
static void print_loop(layout *lo, const loop_node *l, loc next)
{
    const spec_node *s = lo->c->spec;
    int cap = s->samples.n + s->terms.n + 1, m = 0;
    item *body = calloc((size_t)cap, sizeof *body);
    if (!body)
        return;
    add_items_in(body, &m, &s->samples, IT_SAMPLE, offsetof(sample_node, at), offsetof(sample_node, loop), l);
    add_items_in(body, &m, &s->terms, IT_TERM, offsetof(term_node, at), offsetof(term_node, loop), l);
    print_loop_head(lo->out, l);
    fputs(" {", lo->out);
    end_line(lo, l->at, m ? body[0].at : l->end);
    print_items(lo, body, m, l->end, "    ");
    flush_comments_before(lo, l->end, "    ");
    fputs("  }", lo->out);
    lo->last_line = l->end.line;
    end_line(lo, l->end, next);
    free(body);
}

/* Prints the items of a block (or the top level) in source order. */
static void print_items(layout *lo, item *items, int n, loc block_end, const char *indent)
{
    qsort(items, (size_t)n, sizeof *items, item_cmp);
    for (int i = 0; i < n; i++) {
        flush_comments_before(lo, items[i].at, indent);
        keep_paragraph(lo, items[i].at.line);
        fputs(indent, lo->out);
        if (items[i].kind == IT_LOOP) {
            print_loop(lo, items[i].node, i + 1 < n ? items[i + 1].at : block_end);
            continue;
        }
        print_item(lo->out, &items[i]);
        end_line(lo, items[i].at, i + 1 < n ? items[i + 1].at : block_end);
    }
}

static void print_block(layout *lo, const char *keyword, loc at, item *items, int n, loc next)
{
    flush_comments_before(lo, at, "");
    keep_paragraph(lo, at.line);
    fprintf(lo->out, "%s {", keyword);
    end_line(lo, at, n ? items[0].at : next);
    print_items(lo, items, n, next, "  ");
    flush_comments_before(lo, next, "  ");
    fputs("}\n", lo->out);
}

void ast_format(FILE *out, const ctx *c)
{
    const spec_node *s = c->spec;
    layout lo = {out, c, 0, 0};
    int cap = s->modalities.n + s->latents.n + s->nets.n + s->rules.n + s->hypers.n + 2;
    int inner_cap = s->samples.n + s->terms.n + s->settings.n + s->loops.n + 1;
    item *items = calloc((size_t)cap, sizeof *items);
    item *inner = calloc((size_t)inner_cap, sizeof *inner);
    if (!items || !inner) {
        free(items);
        free(inner);
        return;
    }
    int n = 0;
    add_items(items, &n, &s->modalities, IT_MODALITY, offsetof(modality_node, at));
    add_items(items, &n, &s->latents, IT_LATENT, offsetof(latent_node, at));
    add_items(items, &n, &s->nets, IT_NET, offsetof(net_node, at));
    add_items(items, &n, &s->rules, IT_RULE, offsetof(rule_node, at));
    add_items(items, &n, &s->hypers, IT_HYPER, offsetof(hyper_node, at));
    if (s->n_loss_blocks)
        items[n++] = (item){IT_LOSS, NULL, s->loss_at};
    if (s->n_train_blocks)
        items[n++] = (item){IT_TRAIN, NULL, s->train_at};
    qsort(items, (size_t)n, sizeof *items, item_cmp);

    flush_comments_before(&lo, s->name.at, "");
    keep_paragraph(&lo, s->name.at.line);
    fprintf(out, "model %s", s->name.text);
    end_line(&lo, s->name.at, n ? items[0].at : (loc){0, 0});
    for (int i = 0; i < n; i++) {
        loc next = i + 1 < n ? items[i + 1].at : (loc){0, 0};
        if (items[i].kind == IT_LOSS || items[i].kind == IT_TRAIN) {
            int m = 0;
            if (items[i].kind == IT_LOSS) {
                add_items_in(inner, &m, &s->samples, IT_SAMPLE, offsetof(sample_node, at), offsetof(sample_node, loop), NULL);
                add_items_in(inner, &m, &s->terms, IT_TERM, offsetof(term_node, at), offsetof(term_node, loop), NULL);
                add_items(inner, &m, &s->loops, IT_LOOP, offsetof(loop_node, at));
            } else {
                add_items(inner, &m, &s->settings, IT_SETTING, offsetof(setting_node, at));
            }
            print_block(&lo, items[i].kind == IT_LOSS ? "loss" : "train", items[i].at, inner, m, next);
            continue;
        }
        flush_comments_before(&lo, items[i].at, "");
        keep_paragraph(&lo, items[i].at.line);
        print_item(out, &items[i]);
        end_line(&lo, items[i].at, next);
    }
    flush_comments_before(&lo, (loc){0, 0}, "");
    free(items);
    free(inner);
}
