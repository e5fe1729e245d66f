/* check.c: name resolution and semantic checks; builds the sem_model.
 * Every diagnostic listed in grammar/README.md comes from this file or from
 * the parser. Checking goes on after an error, so that one run reports as
 * many as it can. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"

const char *const kind_names[] = {"a modality", "a latent", "a network", "a hyperparameter"};

/* ---------------------------------------------------------------- names -- */

const name_entry *lookup(const checker *k, const char *text)
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

int resolve(checker *k, ident id, name_kind want, const char *role)
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

const char *word_list(ctx *c, const char *const *words, int n)
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

/* A number in [lo, hi]; `fallback` (and an error) when it is not. */
static int check_range(checker *k, const number *n, const char *what, int lo, int hi, int fallback)
{
    if (n->value < lo || n->value > hi) {
        diag_error(k->c, n->at, "%s %s is out of range (%d to %d)", what, n->text, lo, hi);
        return fallback;
    }
    return (int)n->value;
}

static int check_size(checker *k, const number *n, const char *what)
{
    return check_range(k, n, what, 1, MAX_SIZE, 1);
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
    if (node->dims.n > 3)
        diag_error(k->c, node->at, "modality '%s' has %d dimensions; write [size], [height, width] or "
                   "[channels, height, width]", node->name.text, node->dims.n);
    if (size > MAX_SIZE) {
        diag_error(k->c, node->at, "modality '%s' has more than %d values", node->name.text, MAX_SIZE);
        size = 1;
    }
    out->size = (int)size;
    out->channels = 1;
    if (node->dims.n == 2 || node->dims.n == 3) {
        int first = node->dims.n - 2;
        out->channels = first ? (int)((number *)node->dims.items[0])->value : 1;
        out->height = (int)((number *)node->dims.items[first])->value;
        out->width = (int)((number *)node->dims.items[first + 1])->value;
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

/* Integer argument `a` of a layer, in [lo, hi]; lo - 1 after an error. */
static int layer_number(checker *k, const layer_arg *a, const char *what, int lo, int hi)
{
    if (!a->num) {
        diag_error(k->c, a->at, "%s takes a whole number here, not '%s'", what,
                   a->word.text ? a->word.text : a->call ? a->call->word.text : "?");
        return lo - 1;
    }
    return check_range(k, a->num, what, lo, hi, lo - 1);
}

/* bias=no or bias=yes; returns whether the layer has a bias. */
static int layer_bias(checker *k, const layer_arg *a)
{
    if (a->word.text && strcmp(a->word.text, "no") == 0)
        return 0;
    if (!a->word.text || strcmp(a->word.text, "yes") != 0)
        diag_error(k->c, a->at, "bias takes 'yes' or 'no'");
    return 1;
}

enum { MAX_KERNEL = 64, MAX_STRIDE = 64 };

/* conv(64, 4, stride=2, pad=1, bias=no) and deconv(...). */
static void check_conv(checker *k, const layer_node *l, layer_kind kind, sem_layer *out)
{
    const char *word = layer_table[kind].word;
    int positional = 0, seen[3] = {0, 0, 0};
    static const char *const keys[] = {"stride", "pad", "bias"};
    out->kind = kind;
    out->stride = 1;
    out->pad = 0;
    out->bias = 1;
    out->out.c = out->kernel = 1;
    for (int i = 0; i < l->args.n; i++) {
        const layer_arg *a = l->args.items[i];
        if (!a->key.text) {
            if (positional == 0)
                out->out.c = layer_number(k, a, "the channels", 1, MAX_SIZE);
            else if (positional == 1)
                out->kernel = layer_number(k, a, "the kernel size", 1, MAX_KERNEL);
            else
                diag_error(k->c, a->at, "%s takes two numbers, its output channels and kernel size; "
                           "write stride=, pad= or bias= for the others", word);
            positional++;
            continue;
        }
        int key = -1;
        for (int j = 0; j < 3; j++)
            if (strcmp(a->key.text, keys[j]) == 0)
                key = j;
        if (key < 0) {
            diag_error(k->c, a->key.at, "unknown option '%s' of %s; expecting stride, pad or bias", a->key.text, word);
            continue;
        }
        if (seen[key]++)
            diag_error(k->c, a->key.at, "%s is set twice", a->key.text);
        if (key == 0)
            out->stride = layer_number(k, a, "the stride", 1, MAX_STRIDE);
        else if (key == 1)
            out->pad = layer_number(k, a, "the padding", 0, MAX_KERNEL);
        else
            out->bias = layer_bias(k, a);
    }
    if (positional < 2)
        diag_error(k->c, l->at, "%s needs its output channels and kernel size: %s(64, 4, stride=2, pad=1)", word, word);
    out->out.c = out->out.c < 1 ? 1 : out->out.c;
    out->kernel = out->kernel < 1 ? 1 : out->kernel;
    out->stride = out->stride < 1 ? 1 : out->stride;
    out->pad = out->pad < 0 ? 0 : out->pad;
}

static const char *layer_words(checker *k)
{
    const char *words[N_ACTIVATIONS + N_LAYER_KINDS];
    int n = 0;
    for (int a = 0; a < N_ACTIVATIONS; a++)
        words[n++] = arena_printf(&k->c->mem, "%s(width)", activation_table[a].name);
    for (int i = 0; i < N_LAYER_KINDS; i++)
        if (layer_table[i].word)
            words[n++] = layer_table[i].word;
    return word_list(k->c, words, n);
}

/* One layer as written: an activation of a width or of a convolution, a
 * bare convolution (linear), flatten or reshape(c, h, w). */
static void check_layer(checker *k, const layer_node *l, sem_layer *out)
{
    *out = (sem_layer){LAYER_DENSE, ACT_LINEAR, 1, {0, 0, 0}, {0, 0, 0}, 0, 1, 0, 1, l};
    int act = find_activation(l->word.text), kind = find_layer(l->word.text);
    if (act >= 0) {
        out->activation = (activation_kind)act;
        if (!l->has_call) {
            diag_error(k->c, l->word.at, "'%s' needs what it applies to: a width, %s(512), or a convolution, "
                       "%s(conv(64, 4))", l->word.text, l->word.text, l->word.text);
            return;
        }
        const layer_arg *first = l->args.items[0];
        if (first->call) {
            int inner = find_layer(first->call->word.text);
            if (inner != LAYER_CONV && inner != LAYER_DECONV) {
                diag_error(k->c, first->at, "an activation applies to a width or to conv(...) or deconv(...), not to "
                           "'%s'", first->call->word.text);
                return;
            }
            if (!first->call->has_call)
                diag_error(k->c, first->at, "%s needs its output channels and kernel size: %s(64, 4)",
                           first->call->word.text, first->call->word.text);
            check_conv(k, first->call, (layer_kind)inner, out);
            out->activation = (activation_kind)act;
            if (l->args.n > 1)
                diag_error(k->c, ((layer_arg *)l->args.items[1])->at,
                           "write a convolution's options inside it: %s(%s(64, 4, stride=2, pad=1, bias=no))",
                           l->word.text, first->call->word.text);
            return;
        }
        if (first->key.text) {
            diag_error(k->c, first->at, "the width comes first: %s(512%s)", l->word.text,
                       strcmp(first->key.text, "bias") == 0 ? ", bias=no" : "");
            return;
        }
        out->width = layer_number(k, first, "layer width", 1, MAX_SIZE);
        out->width = out->width < 1 ? 1 : out->width;
        for (int i = 1; i < l->args.n; i++) {
            const layer_arg *a = l->args.items[i];
            if (a->key.text && strcmp(a->key.text, "bias") == 0)
                out->bias = layer_bias(k, a);
            else
                diag_error(k->c, a->at, "a dense layer takes its width and bias=no, nothing else");
        }
        return;
    }
    if (kind == LAYER_CONV || kind == LAYER_DECONV) {
        if (!l->has_call)
            diag_error(k->c, l->word.at, "%s needs its output channels and kernel size: %s(64, 4, stride=2, pad=1)",
                       l->word.text, l->word.text);
        check_conv(k, l, (layer_kind)kind, out);
        return;
    }
    if (kind == LAYER_FLATTEN) {
        out->kind = LAYER_FLATTEN;
        out->bias = 0;
        if (l->has_call)
            diag_error(k->c, l->word.at, "flatten takes no arguments: write -> flatten ->");
        return;
    }
    if (kind == LAYER_RESHAPE) {
        out->kind = LAYER_RESHAPE;
        out->bias = 0;
        int dims[3] = {1, 1, 1}, n = 0, bad = 0;
        for (int i = 0; i < l->args.n; i++) {
            const layer_arg *a = l->args.items[i];
            if (a->key.text || n == 3) {
                bad = 1;
                continue;
            }
            int d = layer_number(k, a, "a dimension", 1, MAX_SIZE);
            dims[n++] = d < 1 ? 1 : d;
        }
        if (bad || n < 2 || !l->has_call)
            diag_error(k->c, l->word.at, "reshape takes an image's dimensions: reshape(channels, height, width) or "
                       "reshape(height, width)");
        if (n == 2)
            out->out = (vshape){1, dims[0], dims[1]};
        else
            out->out = (vshape){dims[0], dims[1], dims[2]};
        return;
    }
    diag_error(k->c, l->word.at, "unknown layer '%s'; expecting %s", l->word.text, layer_words(k));
}

static void check_layers(checker *k, const net_node *node, sem_net *net)
{
    int errors = k->c->n_errors;
    net->n_layers = node->layers.n;
    net->layers = arena_alloc(&k->c->mem, sizeof(sem_layer) * (size_t)(node->layers.n + 1));
    for (int i = 0; i < node->layers.n; i++)
        check_layer(k, node->layers.items[i], &net->layers[i]);
    net->bad_layers = k->c->n_errors > errors; /* their shapes are not checked: no second error */
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

/* "[64, 14, 14]", or "512 values" for a flat shape. */
static const char *shape_text(checker *k, vshape s)
{
    return s.h ? arena_printf(&k->c->mem, "[%d, %d, %d]", s.c, s.h, s.w) : arena_printf(&k->c->mem, "%d flat values", s.c);
}

static long shape_size(vshape s)
{
    return s.h ? (long)s.c * s.h * s.w : s.c;
}

/* What layer l of net n reads, for messages: "the input of network 'p_x'"
 * or "layer 2 of network 'p_x' (deconv)". */
static const char *layer_source(checker *k, const sem_net *n, int l)
{
    if (l == 0)
        return arena_printf(&k->c->mem, "the input of network '%s'", n->name);
    const sem_layer *prev = &n->layers[l - 1];
    return arena_printf(&k->c->mem, "layer %d of network '%s' (%s)", l, n->name, layer_table[prev->kind].what);
}

/* The shapes through a net's layers, from its input's, with located errors.
 * `data`: the input is a modality's image, which a dense layer reads flat
 * (as it always has); an image a layer gives needs flatten first. */
static void shape_layers(checker *k, sem_net *n, int data)
{
    vshape cur = n->input_shape;
    int errors = k->c->n_errors;
    for (int i = 0; i < n->n_layers; i++) {
        sem_layer *L = &n->layers[i];
        const layer_node *node = L->node;
        L->in = cur;
        if (n->bad_layers || k->c->n_errors > errors) { /* after an error, shapes alone: no cascade */
            n->bad_layers = 1;
            if (L->kind == LAYER_DENSE || L->kind == LAYER_FLATTEN)
                L->out = (vshape){L->kind == LAYER_FLATTEN ? (int)shape_size(cur) : L->width, 0, 0};
            else if (L->kind != LAYER_RESHAPE)
                L->out = (vshape){L->out.c, cur.h ? cur.h : 1, cur.w ? cur.w : 1};
            L->width = (int)shape_size(L->out) > 0 ? (int)shape_size(L->out) : 1;
            cur = L->out;
            continue;
        }
        switch (L->kind) {
        case LAYER_DENSE:
            if (cur.h && !data)
                diag_error(k->c, node->at, "a dense layer reads flat values, but %s gives an image %s: write flatten "
                           "before it", layer_source(k, n, i), shape_text(k, cur));
            L->out = (vshape){L->width, 0, 0};
            break;
        case LAYER_CONV:
        case LAYER_DECONV: {
            const char *word = layer_table[L->kind].word;
            int channels = L->out.c;
            if (!cur.h) {
                diag_error(k->c, node->at, "%s reads an image [channels, height, width], but %s gives %s: write "
                           "reshape(channels, height, width) before it", word, layer_source(k, n, i),
                           shape_text(k, cur));
                L->out = (vshape){channels, 1, 1};
                break;
            }
            int transposed = L->kind == LAYER_DECONV, exact_h, exact_w;
            int ho = conv_out_size(transposed, cur.h, L->kernel, L->stride, L->pad, &exact_h);
            int wo = conv_out_size(transposed, cur.w, L->kernel, L->stride, L->pad, &exact_w);
            if (!ho || !wo) {
                diag_error(k->c, node->at, "%s of kernel %d, stride %d and padding %d gives nothing from %s: %s",
                           word, L->kernel, L->stride, L->pad, shape_text(k, cur),
                           transposed ? "(size - 1) * stride - 2 * padding + kernel is below 1"
                                      : "the kernel is larger than the padded image");
                ho = ho ? ho : 1;
                wo = wo ? wo : 1;
            } else if (!exact_h || !exact_w) {
                int size = exact_h ? cur.w : cur.h;
                diag_error(k->c, node->at, "%s of kernel %d, stride %d and padding %d does not fit %s: %d + 2 * %d - %d "
                           "= %d is not a multiple of the stride, so the last %s would be dropped; change the padding "
                           "or the kernel", word, L->kernel, L->stride, L->pad, shape_text(k, cur), size, L->pad,
                           L->kernel, size + 2 * L->pad - L->kernel, exact_h ? "columns" : "rows");
            }
            if (L->pad >= L->kernel)
                diag_error(k->c, node->at, "padding %d is not smaller than the kernel %d: some outputs would read "
                           "nothing but padding", L->pad, L->kernel);
            L->out = (vshape){channels, ho, wo};
            /* the columns of the lowering to GEMMs: kernel^2 * input channels rows, one column per output place */
            double columns = transposed ? (double)channels * L->kernel * L->kernel * cur.h * cur.w
                                        : (double)cur.c * L->kernel * L->kernel * ho * wo;
            if (columns > 16.0 * MAX_SIZE && (double)channels * ho * wo <= MAX_SIZE)
                diag_error(k->c, node->at, "this %s needs %.0f values of workspace an example; at most %d",
                           layer_table[L->kind].what, columns, 16 * MAX_SIZE);
            break;
        }
        case LAYER_FLATTEN:
            if (!cur.h)
                diag_error(k->c, node->at, "flatten reads an image, but %s gives %s, already flat", layer_source(k, n, i),
                           shape_text(k, cur));
            L->out = (vshape){(int)(shape_size(cur) > MAX_SIZE ? 1 : shape_size(cur)), 0, 0};
            break;
        case LAYER_RESHAPE:
            if (shape_size(L->out) != shape_size(cur))
                diag_error(k->c, node->at, "reshape to %s makes %ld values, but %s gives %s%s", shape_text(k, L->out),
                           shape_size(L->out), layer_source(k, n, i), shape_text(k, cur),
                           cur.h ? arena_printf(&k->c->mem, " (%ld values)", shape_size(cur)) : "");
            break;
        default:
            break;
        }
        if (shape_size(L->out) > MAX_SIZE) {
            diag_error(k->c, node->at, "this layer gives %s, more than %d values", shape_text(k, L->out), MAX_SIZE);
            L->out = (vshape){1, 0, 0};
        }
        L->width = (int)shape_size(L->out);
        cur = L->out;
        data = 0;
    }
    n->feature_shape = cur;
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
        /* one image input is read as an image; anything else flat */
        n->input_shape = (vshape){n->input_size, 0, 0};
        int data = 0;
        if (n->n_inputs == 1 && n->inputs[0].kind == SRC_MODALITY && m->modalities[n->inputs[0].index].height) {
            const sem_modality *mod = &m->modalities[n->inputs[0].index];
            n->input_shape = (vshape){mod->channels, mod->height, mod->width};
            data = 1;
        } else if (n->n_inputs == 1 && n->inputs[0].kind == SRC_NET) {
            n->input_shape = m->nets[n->inputs[0].index].feature_shape;
        } else {
            for (int j = 0; j < n->n_inputs; j++)
                if (n->inputs[j].kind == SRC_NET && m->nets[n->inputs[j].index].feature_shape.h)
                    diag_error(k->c, n->node->at, "%s(...) in network '%s' reads flat values, but network '%s' gives "
                               "an image %s: end it with flatten", n->combine == COMBINE_SUM ? "sum" : "concat",
                               n->name, m->nets[n->inputs[j].index].name,
                               shape_text(k, m->nets[n->inputs[j].index].feature_shape));
        }
        shape_layers(k, n, data);
        n->feature_size = n->n_layers ? n->layers[n->n_layers - 1].width : n->input_size;
        if (n->n_layers == 0 && !n->node->head)
            diag_error(k->c, n->node->at, "network '%s' has neither layers nor a head", n->name);
    }
}

void given_sets(checker *k, const dist_ref *d, unsigned *mods, unsigned *lats)
{
    *mods = *lats = 0;
    for (int i = 0; i < d->given.n; i++) {
        const ident *id = d->given.items[i];
        const name_entry *e = lookup(k, id->text);
        if (k->loop_var && strcmp(id->text, k->loop_var) == 0) {
            if (k->loop_component >= 0)
                diag_error(k->c, id->at, "'%s' stands for a distribution, one component of a mixture; write %s where "
                           "the distribution goes, not q(... | %s)", id->text, id->text, id->text);
            else if (*mods & k->loop_set)
                diag_error(k->c, id->at, "'%s' repeats a modality named beside it", id->text);
            *mods |= k->loop_set;
        } else if (!e) {
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

const char *mask_names(ctx *c, const sem_model *m, unsigned mods, unsigned lats)
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
    n->head_dense = 1;
    /* an image a layer gives: a likelihood's parameters as they are, never the input of a dense head */
    vshape f = n->feature_shape;
    if (f.h && (n->n_layers || (n->n_inputs == 1 && n->inputs[0].kind == SRC_NET)) && !n->broken && !n->bad_layers) {
        const char *from = n->n_layers ? arena_printf(&k->c->mem, "layer %d of network '%s'", n->n_layers, n->name)
                                       : arena_printf(&k->c->mem, "network '%s'", m->nets[n->inputs[0].index].name);
        if (n->head != HEAD_LIKELIHOOD) {
            diag_error(k->c, h->at, "a Gaussian head over a latent reads flat values, but %s gives an image [%d, %d, %d]: "
                       "write flatten before the head", from, f.c, f.h, f.w);
        } else {
            const sem_modality *mod = &m->modalities[n->target];
            int channels = gaussian ? 2 * mod->channels : mod->channels;
            n->head_dense = 0;
            if (!mod->height)
                diag_error(k->c, h->at, "%s gives an image [%d, %d, %d], but %s has %d flat values: write flatten "
                           "and a dense layer of %d before the head", from, f.c, f.h, f.w, mod->name, mod->size,
                           n->head_size);
            else if (f.c != channels || f.h != mod->height || f.w != mod->width)
                diag_error(k->c, h->at, "%s gives an image [%d, %d, %d], but p(%s | ...) reads [%d, %d, %d] from it "
                           "(%s%s): the last layer gives its modality's shape", from, f.c, f.h, f.w, mod->name,
                           channels, mod->height, mod->width, likelihood_table[mod->likelihood].param,
                           gaussian ? ", then a log-variance for each value" : "");
        }
    }
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

int find_head(const sem_model *m, head_kind head, int target, unsigned mods, unsigned lats)
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

int resolve_dist(checker *k, const dist_ref *d, sem_dist *out)
{
    const sem_model *m = k->m;
    const name_entry *e = lookup(k, d->target.text);
    out->net = -1;
    out->latent = out->modality = out->post = -1;
    if (!d->family) { /* a loop's variable */
        if (k->loop_var && strcmp(d->target.text, k->loop_var) == 0 && k->loop_component >= 0) {
            out->kind = DIST_POSTERIOR;
            out->post = k->loop_component;
            out->latent = m->posteriors[out->post].latent;
            out->net = m->posteriors[out->post].net;
            return 0;
        }
        if (k->loop_var && strcmp(d->target.text, k->loop_var) == 0)
            diag_error(k->c, d->at, "'%s' stands for a set of modalities here; a distribution is written q(... | %s)",
                       d->target.text, d->target.text);
        else
            diag_error(k->c, d->at, "'%s' is not a distribution; write q(...) or p(...)%s", d->target.text,
                       k->loop_var ? ", or the variable of a loop over components" : "");
        return -1;
    }
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
        out->post = posterior_for(k, e->index, mods, lats);
        if (out->post < 0) {
            diag_error(k->c, d->at, "no network has this distribution as its head%s",
                       m->latents[e->index].rule >= 0 ? ", and the experts of its rule do not make it" : "");
            return -1;
        }
        out->net = m->posteriors[out->post].net;
        return 0;
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
        if (strcmp(s->key.text, r->key) != 0 || (!r->real_out && !r->int_out))
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
    *t = (sem_train){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 0, .batch = 100, .epochs = 100,
                     .seed = 1, .samples = 1, .gradient = GRADIENT_REPARAM};
    const setting_rule top[] = {
        {"batch", 1, 1000000, 0, 1, NULL, &t->batch},
        {"epochs", 0, 1000000, 0, 1, NULL, &t->epochs},
        {"clip", 0, 1e30, 0, 0, &t->clip, NULL},
        {"seed", 0, 4294967295.0, 0, 1, NULL, &t->seed},
        {"samples", 1, MAX_IW_SAMPLES, 0, 1, NULL, &t->samples},
        {"optimizer", 0, 0, 0, 0, NULL, NULL},
        {"gradient", 0, 0, 0, 0, NULL, NULL},
    };
    static const char *const gradients[] = {"reparam", "dreg"};
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
        if (strcmp(s->key.text, "gradient") == 0) {
            int g = -1;
            for (int j = 0; j < 2 && s->word.text && !s->has_call; j++)
                if (strcmp(s->word.text, gradients[j]) == 0)
                    g = j;
            if (g < 0)
                diag_error(k->c, s->value ? s->value->at : s->word.at, "unknown gradient; expecting reparam (the "
                           "reparameterised gradient) or dreg (doubly reparameterised, for samples > 1)");
            else
                t->gradient = (gradient_kind)g;
            continue;
        }
        if (strcmp(s->key.text, "samples") == 0)
            t->samples_at = s->at;
        if (strcmp(s->key.text, "optimizer") != 0) {
            apply_setting(k, s, top, 7, "train");
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
    if (k->c->samples_override > 0) /* jmvaec --samples, --gradient */
        t->samples = k->c->samples_override;
    if (k->c->gradient_override >= 0)
        t->gradient = (gradient_kind)k->c->gradient_override;
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
    for (int i = 0; i < m->n_latents; i++)
        mark_used(m, m->latents[i].prior_net);
    for (int d = 0; d < m->n_draws; d++)
        mark_posterior_used(m, m->draws[d].post, mark_used);
    for (int i = 0; i < m->n_terms; i++) {
        const sem_term *t = &m->terms[i];
        mark_used(m, t->a.net);
        mark_posterior_used(m, t->a.post, mark_used);
        if (t->kind != TERM_NLL) {
            mark_used(m, t->b.net);
            mark_posterior_used(m, t->b.post, mark_used);
        }
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
            const sem_layer *L = &n->layers[l];
            if (L->kind == LAYER_DENSE)
                total += (in + L->bias) * L->width;
            else if (L->kind == LAYER_CONV || L->kind == LAYER_DECONV)
                total += ((double)L->in.c * L->kernel * L->kernel + L->bias) * L->out.c;
            in = L->width;
        }
        if (n->head != HEAD_NONE && n->head_dense)
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
        for (int j = 0; j < n->n_layers; j++) {
            const sem_layer *L = &n->layers[j];
            h = fnv_int(fnv_int(h, L->activation), L->width);
            if (L->kind != LAYER_DENSE || !L->bias) /* what dense layers with a bias add: nothing (older checkpoints) */
                h = fnv_int(fnv_int(fnv_int(fnv_int(fnv_int(fnv_int(h, L->kind), L->bias), L->kernel), L->stride), L->pad),
                            L->out.c * 1000003L + L->out.h * 1009L + L->out.w);
        }
        if (n->head != HEAD_NONE && !n->head_dense)
            h = fnv_int(h, 0x1d);
        h = fnv_int(fnv_int(fnv_int(fnv_int(h, n->head), n->target), n->variance), n->head_size);
    }
    return h;
}

/* --------------------------------------------------------------- families -- */

/* Orders latents so that each posterior's latent inputs come first. */
static int order_family(const sem_model *m, const int *posts, int *order)
{
    unsigned done = 0;
    int placed = 0;
    for (int progress = 1; progress && placed < m->n_latents;) {
        progress = 0;
        for (int l = 0; l < m->n_latents; l++)
            if (!(done & (1u << l)) && (m->posteriors[posts[l]].latents_read & ~done) == 0) {
                done |= 1u << l;
                order[placed++] = l;
                progress = 1;
            }
    }
    return placed == m->n_latents;
}

/* The family of these posteriors (made if new), or -1 when their samples
 * cannot be ordered. */
static int add_family(checker *k, unsigned condition, const int *posts, int given, const char *name)
{
    sem_model *m = k->m;
    for (int f = 0; f < m->n_families; f++) {
        int same = m->families[f].given == given;
        for (int l = 0; l < m->n_latents && same; l++)
            same = m->families[f].posts[l] == posts[l];
        if (same)
            return f;
    }
    sem_family *fam = &m->families[m->n_families];
    *fam = (sem_family){0};
    memcpy(fam->posts, posts, sizeof(int) * (size_t)m->n_latents);
    if (!order_family(m, posts, fam->order))
        return -1;
    for (int l = 0; l < m->n_latents; l++)
        fam->nets[l] = m->posteriors[posts[l]].net;
    fam->condition = condition;
    fam->given = given;
    fam->name = name ? name : family_suffix(k->c, m, condition);
    fam->at = m->posteriors[posts[0]].at;
    return m->n_families++;
}

/* The posterior of latent l given exactly `mods` for a family, preferring
 * the one the objective samples from; -1 when there is none. */
static int family_post(checker *k, int l, unsigned mods)
{
    const sem_model *m = k->m;
    int sp = m->latents[l].sample_post;
    if (sp >= 0 && m->posteriors[sp].condition == mods)
        return sp;
    if (m->latents[l].rule >= 0) {
        const sem_rule *r = &m->rules[m->latents[l].rule];
        unsigned read = 0;
        for (int i = 0; i < r->n_experts; i++)
            read |= m->posteriors[r->experts[i]].latents_read;
        return posterior_for(k, l, mods, read);
    }
    for (int i = 0; i < m->n_posteriors; i++)
        if (m->posteriors[i].kind == POST_NET && m->posteriors[i].latent == l && m->posteriors[i].condition == mods)
            return i;
    return -1;
}

/* Every set of modalities some posterior head conditions on for which each
 * latent has a posterior: a family; when every latent's posteriors come
 * from a rule, one family for every subset (`given`); and the objective's
 * own samples. */
static void find_families(checker *k)
{
    sem_model *m = k->m;
    int n_heads = m->n_posteriors;
    m->families = arena_alloc(&k->c->mem, sizeof(sem_family) * (size_t)(n_heads + m->n_nets + 3));
    m->training_family = -1;
    int posts[MAX_LATENTS];
    int all_rules = 1;
    unsigned cond = 0;
    for (int l = 0; l < m->n_latents; l++) {
        all_rules &= m->latents[l].rule >= 0;
        if (m->latents[l].rule >= 0)
            cond |= m->rules[m->latents[l].rule].condition;
    }
    if (all_rules) {
        for (int l = 0; l < m->n_latents; l++)
            posts[l] = family_post(k, l, m->rules[m->latents[l].rule].condition);
        m->training_family = add_family(k, cond, posts, 1, "given");
        return;
    }
    for (int i = 0; i < n_heads; i++) {
        if (m->posteriors[i].kind != POST_NET)
            continue;
        unsigned mods = m->posteriors[i].condition;
        int dup = 0, complete = 1;
        for (int f = 0; f < m->n_families; f++)
            dup |= m->families[f].condition == mods;
        for (int l = 0; l < m->n_latents && !dup && complete; l++)
            complete = (posts[l] = family_post(k, l, mods)) >= 0;
        if (dup || !complete)
            continue;
        int f = add_family(k, mods, posts, 0, NULL);
        int is_training = f >= 0;
        for (int l = 0; l < m->n_latents && is_training; l++)
            is_training = posts[l] == m->latents[l].sample_post;
        if (is_training)
            m->training_family = f;
    }
    if (m->training_family < 0) { /* the objective's samples (the first of each latent) */
        cond = 0;
        for (int l = 0; l < m->n_latents; l++) {
            posts[l] = m->latents[l].sample_post;
            for (int d = 0; d < m->n_draws && posts[l] < 0; d++)
                if (m->draws[d].latent == l)
                    posts[l] = m->draws[d].post;
            cond |= m->posteriors[posts[l]].condition;
        }
        m->training_family = add_family(k, cond, posts, 0, "train");
    }
}

/* ------------------------------------------------------------------ check -- */

sem_model *check_spec(ctx *c)
{
    const spec_node *s = c->spec;
    checker k = {c, arena_alloc(&c->mem, sizeof(sem_model)), NULL, 0, NULL, NULL, 0, -1};
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
        m->latents[i] = (sem_latent){node->name.text, check_size(&k, node->size, "size"), -1, -1, -1, node, NULL, -1};
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
    int ordered = order_nets(&k);
    if (ordered) {
        size_nets(&k);
        for (int i = 0; i < m->n_nets; i++)
            check_head(&k, &m->nets[i]);
        check_duplicate_heads(&k);
        make_head_posteriors(&k);
        check_latent_priors(&k);
        check_rules(&k);
        check_hypers(&k);
        check_loss(&k);
    }
    check_train(&k);
    if (ordered)
        check_importance_weighted(&k);
    if (c->n_errors == 0) {
        check_parameter_count(&k);
        check_usage(&k);
        find_families(&k);
        if (m->training_family < 0)
            diag_error(c, s->loss_at, "the samples of the loss cannot be drawn in any order: each depends on another");
        check_emitted_names(c, m);
        check_observed(&k);
    }
    if (c->n_errors)
        return NULL;
    m->fingerprint = fingerprint_model(m);
    return m;
}

/* ----------------------------------------------------------------- dump -- */

void model_dump(FILE *out, const sem_model *m)
{
    ctx scratch; /* for the names of posteriors */
    ctx_init(&scratch, "", out);
    fprintf(out, "model %s (fingerprint %016llx)\n", m->name, m->fingerprint);
    for (int i = 0; i < m->n_modalities; i++)
        fprintf(out, "  modality %d %s: %d values, %s\n", i, m->modalities[i].name, m->modalities[i].size,
                likelihood_table[m->modalities[i].likelihood].name);
    for (int i = 0; i < m->n_latents; i++) {
        fprintf(out, "  latent %d %s: %d, prior %s", i, m->latents[i].name, m->latents[i].size,
                m->latents[i].prior_net < 0 ? "normal" : m->nets[m->latents[i].prior_net].name);
        if (m->latents[i].sample_post >= 0)
            fprintf(out, ", sampled from %s", posterior_name(&scratch, m, m->latents[i].sample_post));
        if (m->latents[i].rule >= 0)
            fprintf(out, ", posteriors by %s", rule_table[m->rules[m->latents[i].rule].kind].word);
        fputc('\n', out);
    }
    for (int o = 0; o < m->n_nets; o++) {
        const sem_net *n = &m->nets[m->net_order[o]];
        fprintf(out, "  net %s: reads %d values", n->name, n->input_size);
        if (n->input_shape.h && n->n_layers && n->layers[0].kind != LAYER_DENSE) /* read as an image */
            fprintf(out, " [%d, %d, %d]", n->input_shape.c, n->input_shape.h, n->input_shape.w);
        for (int j = 0; j < n->n_layers; j++) {
            const sem_layer *L = &n->layers[j];
            const char *nobias = L->bias ? "" : ", bias=no";
            switch (L->kind) {
            case LAYER_DENSE:
                fprintf(out, " -> %s(%d%s)", activation_table[L->activation].name, L->width, nobias);
                break;
            case LAYER_CONV:
            case LAYER_DECONV:
                fprintf(out, " -> %s(%s(%d, %d, stride=%d, pad=%d%s)) [%d, %d, %d]", activation_table[L->activation].name,
                        layer_table[L->kind].word, L->out.c, L->kernel, L->stride, L->pad, nobias, L->out.c, L->out.h,
                        L->out.w);
                break;
            case LAYER_FLATTEN:
                fprintf(out, " -> flatten %d", L->width);
                break;
            default:
                fprintf(out, " -> reshape [%d, %d, %d]", L->out.c, L->out.h, L->out.w);
                break;
            }
        }
        if (n->head != HEAD_NONE)
            fprintf(out, n->head_dense ? " -> head of %d outputs" : " -> the last layer's %d values are the head's",
                    n->head_size);
        fputc('\n', out);
    }
    static const char *const kinds[] = {"head", "product", "mixture"};
    for (int i = 0; i < m->n_posteriors; i++) {
        const sem_posterior *p = &m->posteriors[i];
        fprintf(out, "  posterior %d %s: %s", i, posterior_name(&scratch, m, i), kinds[p->kind]);
        if (p->kind == POST_NET)
            fprintf(out, " of %s", m->nets[p->net].name);
        if (p->kind == POST_PRODUCT)
            fprintf(out, " of experts 0x%x%s", p->experts, p->prior ? " and the prior" : "");
        for (int c = 0; c < p->n_components; c++)
            fprintf(out, "%s%d", c ? ", " : " of posteriors ", p->components[c]);
        fputc('\n', out);
    }
    for (int g = 0; g < m->n_groups; g++) {
        const sem_group *grp = &m->groups[g];
        fprintf(out, "  group %d%s%s: scale %g, draws", g, grp->suffix ? " " : " (top level)", grp->suffix ? grp->suffix : "",
                grp->scale);
        for (int l = 0; l < m->n_latents; l++)
            if (grp->draw[l] >= 0)
                fprintf(out, " %s=%d%s", m->latents[l].name, grp->draw[l], grp->own & (1u << l) ? "" : " (top)");
        fputc('\n', out);
    }
    for (int d = 0; d < m->n_draws; d++)
        fprintf(out, "  draw %d: %s ~ %s (group %d)\n", d, m->latents[m->draws[d].latent].name,
                posterior_name(&scratch, m, m->draws[d].post), m->draws[d].group);
    for (int i = 0; i < m->n_terms; i++) {
        fprintf(out, "  term %s (group %d): weight ", m->terms[i].name, m->terms[i].group);
        if (m->terms[i].hyper >= 0)
            fprintf(out, "%s", m->hypers[m->terms[i].hyper].name);
        else
            fprintf(out, "%g", m->terms[i].weight);
        if (m->terms[i].scale != 1)
            fprintf(out, ", scale %g", m->terms[i].scale);
        fputc('\n', out);
    }
    for (int i = 0; i + 1 < m->n_subsets; i++) { /* the whole set is the loss above */
        const sem_subset *s = &m->subsets[i];
        fprintf(out, "  observing only");
        for (int k = 0; k < m->n_modalities; k++)
            if (s->observed & (1u << k))
                fprintf(out, " %s", m->modalities[k].name);
        fprintf(out, ":%s", s->n_terms ? "" : " nothing counts");
        for (int t = 0; t < m->n_terms; t++)
            if (s->terms[t])
                fprintf(out, " %s", m->terms[t].name);
        for (int g = 0; g < m->n_groups; g++)
            if (s->groups[g] && s->scale[g] != m->groups[g].scale)
                fprintf(out, ", group %d scale %g", g, s->scale[g]);
        fputc('\n', out);
    }
    for (int f = 0; f < m->n_families; f++)
        fprintf(out, "  family %s%s%s\n", m->families[f].name, m->families[f].given ? " (any subset)" : "",
                f == m->training_family ? " (training)" : "");
    ctx_free(&scratch);
}
