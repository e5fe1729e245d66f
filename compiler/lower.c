/* lower.c: from the checked model to forward IR graphs.
 *
 * One graph per entry point of the generated API: the training step, one
 * posterior per family of encoders, the log-densities, decoding and
 * ancestral sampling. Every graph is built by the same lower_net, which
 * turns a network into affine layers and its head. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "ops.h"

/* ------------------------------------------------------- graph building -- */

int graph_value(ctx *c, graph *g, value_kind kind, int width, int index, const char *name)
{
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? 2 * g->cap_values : 64;
        value *v = arena_alloc(&c->mem, sizeof *v * (size_t)cap);
        if (g->n_values)
            memcpy(v, g->values, sizeof *v * (size_t)g->n_values);
        g->values = v;
        g->cap_values = cap;
    }
    const char *unique = name;
    for (int suffix = 2;; suffix++) {
        int taken = 0;
        for (int i = 0; i < g->n_values && !taken; i++)
            taken = strcmp(g->values[i].name, unique) == 0;
        if (!taken)
            break;
        unique = arena_printf(&c->mem, "%s_%d", name, suffix);
    }
    value *v = &g->values[g->n_values];
    *v = (value){kind, width, 1, index, unique, NULL, -1, 0, -1, -1, -1, {0, 0, 0}};
    return g->n_values++;
}

op *graph_op(ctx *c, graph *g, op_kind kind, int line)
{
    if (g->n_ops == g->cap_ops) {
        int cap = g->cap_ops ? 2 * g->cap_ops : 64;
        op *o = arena_alloc(&c->mem, sizeof *o * (size_t)cap);
        if (g->n_ops)
            memcpy(o, g->ops, sizeof *o * (size_t)g->n_ops);
        g->ops = o;
        g->cap_ops = cap;
    }
    op *o = &g->ops[g->n_ops++];
    memset(o, 0, sizeof *o);
    graph_op_inputs(c, o, MAX_OP_INPUTS);
    o->kind = kind;
    o->line = line;
    o->tensor = o->bias = o->term = o->net = o->iw = -1;
    o->sign = 1;
    return o;
}

void graph_op_inputs(ctx *c, op *o, int n)
{
    int *in = arena_alloc(&c->mem, sizeof(int) * (size_t)(n > MAX_OP_INPUTS ? n : MAX_OP_INPUTS));
    if (o->in && o->n_in)
        memcpy(in, o->in, sizeof(int) * (size_t)o->n_in);
    o->in = in;
}

static graph *new_graph(ctx *c, program *p, graph_kind kind, const char *name, const char *purpose)
{
    graph *g = arena_alloc(&c->mem, sizeof *g);
    g->kind = kind;
    g->name = name;
    g->purpose = purpose;
    p->graphs[p->n_graphs++] = g;
    return g;
}

/* ----------------------------------------------------------- parameters -- */

static int add_tensor(ctx *c, program *p, const char *name, int rows, int cols, int is_bias, int fan_in, int line)
{
    tensor *t = &p->tensors[p->n_tensors];
    *t = (tensor){arena_strndup(&c->mem, name, strlen(name)), rows, cols, {0, 0, 0, 0}, p->n_params, fan_in, cols, is_bias, line};
    p->n_params += (long)rows * cols;
    return p->n_tensors++;
}

/* The tensors of a layer: a weight and, unless bias=no, a bias; none for flatten and reshape. */
static int layer_tensors(const sem_layer *l)
{
    return layer_table[l->kind].weights ? 1 + l->bias : 0;
}

long conv_columns(const conv_geom *g)
{
    return g->transposed ? (long)g->out_c * g->kernel * g->kernel * g->in_h * g->in_w
                         : (long)g->in_c * g->kernel * g->kernel * g->out_h * g->out_w;
}

long conv_workspace(const conv_geom *g)
{
    return conv_columns(g) + (g->transposed ? (long)g->in_c * g->in_h * g->in_w : (long)g->out_c * g->out_h * g->out_w);
}

/* Per net: each layer's weight and bias (none for flatten and reshape, no
 * bias after bias=no), then the head's (none when the last layer's image is
 * the likelihood's parameters). A dense weight is [fan_in x fan_out]; a
 * convolution's is PyTorch's [out, in, k, k] as a [out x in k k] matrix, a
 * transposed one's [in, out, k, k] as [in x out k k]. */
static void lay_out_parameters(ctx *c, program *p)
{
    const sem_model *m = p->m;
    int count = 0;
    for (int i = 0; i < m->n_nets; i++)
        count += 2 * (m->nets[i].n_layers + 1);
    p->tensors = arena_alloc(&c->mem, sizeof(tensor) * (size_t)(count + 1));
    p->net_weight = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    for (int i = 0; i < m->n_nets; i++) {
        const sem_net *n = &m->nets[i];
        p->net_weight[i] = p->n_tensors;
        int in = n->input_size;
        char name[300];
        for (int l = 0; l < n->n_layers; l++) {
            const sem_layer *L = &n->layers[l];
            int line = L->node->at.line;
            if (layer_tensors(L)) {
                snprintf(name, sizeof name, "%s.h%d.weight", n->name, l + 1);
                if (L->kind == LAYER_DENSE) {
                    add_tensor(c, p, name, in, L->width, 0, in, line);
                } else {
                    int kk = L->kernel * L->kernel, deconv = L->kind == LAYER_DECONV;
                    int first = deconv ? L->in.c : L->out.c, second = deconv ? L->out.c : L->in.c;
                    int t = add_tensor(c, p, name, first, second * kk, 0, L->in.c * kk, line);
                    tensor *tt = &p->tensors[t];
                    tt->fan_out = L->out.c * kk;
                    tt->shape[0] = first;
                    tt->shape[1] = second;
                    tt->shape[2] = tt->shape[3] = L->kernel;
                }
                if (L->bias) {
                    snprintf(name, sizeof name, "%s.h%d.bias", n->name, l + 1);
                    add_tensor(c, p, name, 1, L->kind == LAYER_DENSE ? L->width : L->out.c, 1, in, line);
                }
            }
            in = L->width;
        }
        if (n->head == HEAD_NONE || !n->head_dense)
            continue;
        int line = n->node->head->at.line;
        snprintf(name, sizeof name, "%s.head.weight", n->name);
        add_tensor(c, p, name, in, n->head_size, 0, in, line);
        snprintf(name, sizeof name, "%s.head.bias", n->name);
        add_tensor(c, p, name, 1, n->head_size, 1, in, line);
    }
}

/* ------------------------------------------------------------- networks -- */

/* What a graph has computed so far. A loop instance of the training graph
 * has an environment of its own whose parent is the loss's top level: what
 * does not depend on the instance's own samples (the encoders, the experts)
 * is computed once, in the parent, and shared. */
typedef struct lowering_env {
    struct lowering_env *parent;
    unsigned own;        /* the latents sampled in this environment itself (a loop instance) */
    const char *suffix;  /* appended to the names of the values made here, or NULL */
    unsigned guard;      /* ops made now run only when the given subset holds these modalities */
    int masked;          /* a posterior given a subset at run time: experts count only when given */
    unsigned observed;   /* the modalities the graph's examples observe: products and mixtures are of those only */
    int samples;         /* the training step: K importance samples of each draw (its noise has K rows an example) */
    int modality[MAX_MODALITIES];
    int latent[MAX_LATENTS];
    int *feature;  /* per net: its last hidden layer's value, or -1 */
    int *head_a;   /* per net: mean or logits */
    int *head_b;   /* per net: log-variance, or -1 */
    int *post_mean, *post_lv; /* per Gaussian posterior record */
} lowering_env;

static lowering_env *new_env(ctx *c, const sem_model *m, lowering_env *parent)
{
    lowering_env *e = arena_alloc(&c->mem, sizeof *e);
    e->parent = parent;
    e->feature = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    e->head_a = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    e->head_b = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    e->post_mean = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_posteriors + 1));
    e->post_lv = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_posteriors + 1));
    e->samples = parent ? parent->samples : 1;
    e->observed = parent ? parent->observed : (1u << m->n_modalities) - 1;
    for (int i = 0; i < m->n_nets; i++)
        e->feature[i] = e->head_a[i] = e->head_b[i] = -1;
    for (int i = 0; i < m->n_posteriors; i++)
        e->post_mean[i] = e->post_lv[i] = -1;
    for (int i = 0; i < MAX_MODALITIES; i++)
        e->modality[i] = parent ? parent->modality[i] : -1;
    for (int i = 0; i < MAX_LATENTS; i++)
        e->latent[i] = parent ? parent->latent[i] : -1;
    return e;
}

/* A value's name, with the environment's suffix. */
static const char *vname(ctx *c, const lowering_env *e, const char *name)
{
    return e->suffix ? arena_printf(&c->mem, "%s_%s", name, e->suffix) : name;
}

/* Appends an op that runs under the environment's guard. */
static op *env_op(ctx *c, graph *g, const lowering_env *e, op_kind kind, int line)
{
    op *o = graph_op(c, g, kind, line);
    o->guard = e->guard;
    return o;
}

static int head_is_gaussian(const sem_model *m, const sem_net *n)
{
    return n->head == HEAD_POSTERIOR || n->head == HEAD_PRIOR ||
           (n->head == HEAD_LIKELIHOOD && likelihood_table[m->modalities[n->target].likelihood].has_logvar);
}

static void lower_net(ctx *c, program *p, graph *g, lowering_env *e, int ni);

/* The values a net's first layer reads (several for concat). */
static int net_inputs(ctx *c, program *p, graph *g, lowering_env *e, const sem_net *n, int *in)
{
    int count = 0;
    for (int j = 0; j < n->n_inputs; j++) {
        const sem_source *s = &n->inputs[j];
        if (s->kind == SRC_MODALITY) {
            in[count++] = e->modality[s->index];
        } else if (s->kind == SRC_LATENT) {
            in[count++] = e->latent[s->index];
        } else {
            lower_net(c, p, g, e, s->index);
            in[count++] = e->feature[s->index];
        }
    }
    if (n->combine == COMBINE_SUM && count > 1) {
        int sum = graph_value(c, g, V_ARENA, n->input_size, 0, vname(c, e, arena_printf(&c->mem, "%s_sum", n->name)));
        op *o = env_op(c, g, e, OP_ADD, n->node->at.line);
        memcpy(o->in, in, sizeof(int) * (size_t)count);
        o->n_in = count;
        o->out[o->n_out++] = sum;
        o->what = "sum of the inputs";
        in[0] = sum;
        count = 1;
    }
    return count;
}

static int affine(ctx *c, graph *g, const lowering_env *e, const int *in, int n_in, int tensor_index, int bias,
                  activation_kind act, int width, const char *name, int line, int net, int hidden)
{
    int out = graph_value(c, g, V_ARENA, width, 0, name);
    op *o = env_op(c, g, e, OP_AFFINE, line);
    memcpy(o->in, in, sizeof(int) * (size_t)n_in);
    o->n_in = n_in;
    o->out[o->n_out++] = out;
    o->tensor = tensor_index;
    o->bias = bias ? tensor_index + 1 : -1;
    o->act = act;
    o->net = net;
    o->hidden = hidden;
    if (activation_table[act].reads == READS_INPUT) /* its derivative needs the pre-activation */
        o->out[o->n_out++] = graph_value(c, g, V_ARENA, width, 0, arena_printf(&c->mem, "%s_pre", name));
    return out;
}

/* A convolution layer: act(conv(x) + b), or transposed. */
static int convolution(ctx *c, graph *g, const lowering_env *e, int x, int tensor_index, const sem_layer *layer,
                       const char *name, int net, int hidden)
{
    conv_geom *geom = arena_alloc(&c->mem, sizeof *geom);
    *geom = (conv_geom){layer->kind == LAYER_DECONV, layer->in.c, layer->in.h, layer->in.w, layer->out.c,
                        layer->out.h, layer->out.w, layer->kernel, layer->stride, layer->pad};
    int out = graph_value(c, g, V_ARENA, layer->width, 0, name);
    g->values[out].shape = layer->out;
    int cols = graph_value(c, g, V_ARENA, (int)conv_workspace(geom), 0, arena_printf(&c->mem, "%s_cols", name));
    op *o = env_op(c, g, e, OP_CONV, layer->node->at.line);
    o->in[o->n_in++] = x;
    o->out[o->n_out++] = out;
    o->out[o->n_out++] = cols;
    o->tensor = tensor_index;
    o->bias = layer->bias ? tensor_index + 1 : -1;
    o->act = layer->activation;
    o->net = net;
    o->hidden = hidden;
    o->conv = geom;
    if (activation_table[layer->activation].reads == READS_INPUT) { /* its derivative needs the pre-activation */
        int pre = graph_value(c, g, V_ARENA, layer->width, 0, arena_printf(&c->mem, "%s_pre", name));
        g->values[pre].shape = layer->out;
        g->ops[g->n_ops - 1].out[g->ops[g->n_ops - 1].n_out++] = pre;
    }
    return out;
}

static void head_split(ctx *c, graph *g, lowering_env *e, const sem_model *m, int ni, int raw, int line);

static void lower_net(ctx *c, program *p, graph *g, lowering_env *e, int ni)
{
    const sem_model *m = p->m;
    const sem_net *n = &m->nets[ni];
    if (e->feature[ni] >= 0 || e->head_a[ni] >= 0)
        return;
    if (e->parent && !(n->latents_read & e->own)) { /* the same in every instance: computed once, shared */
        lower_net(c, p, g, e->parent, ni);
        e->feature[ni] = e->parent->feature[ni];
        e->head_a[ni] = e->parent->head_a[ni];
        e->head_b[ni] = e->parent->head_b[ni];
        return;
    }
    int in[MAX_OP_INPUTS];
    int n_in = net_inputs(c, p, g, e, n, in);
    int tensor_index = p->net_weight[ni];
    for (int l = 0; l < n->n_layers; l++) {
        const sem_layer *layer = &n->layers[l];
        const char *name = vname(c, e, arena_printf(&c->mem, "%s_h%d", n->name, l + 1));
        if (layer->kind == LAYER_DENSE) {
            in[0] = affine(c, g, e, in, n_in, tensor_index, layer->bias, layer->activation, layer->width, name,
                           layer->node->at.line, ni, l + 1);
        } else if (layer->kind == LAYER_CONV || layer->kind == LAYER_DECONV) {
            in[0] = convolution(c, g, e, in[0], tensor_index, layer, name, ni, l + 1);
        } /* flatten and reshape: the same values, read another way */
        n_in = 1;
        tensor_index += layer_tensors(layer);
    }
    if (n->n_layers)
        e->feature[ni] = in[0];
    if (n->head == HEAD_NONE)
        return;
    int line = n->node->head->at.line;
    if (!n->head_dense && !head_is_gaussian(m, n)) { /* the last layer's image is the likelihood's parameters */
        e->head_a[ni] = in[0];
        return;
    }
    if (!n->head_dense) {
        head_split(c, g, e, m, ni, in[0], line);
        return;
    }
    if (!head_is_gaussian(m, n)) {
        e->head_a[ni] = affine(c, g, e, in, n_in, tensor_index, 1, ACT_LINEAR, n->head_size,
                               vname(c, e, arena_printf(&c->mem, "%s_%s", n->name,
                                                        likelihood_table[m->modalities[n->target].likelihood].param)),
                               line, ni, 0);
        return;
    }
    int raw = affine(c, g, e, in, n_in, tensor_index, 1, ACT_LINEAR, n->head_size,
                     vname(c, e, arena_printf(&c->mem, "%s_out", n->name)), line, ni, 0);
    head_split(c, g, e, m, ni, raw, line);
}

/* A Gaussian head's mean and log-variance from its raw output [2n]. */
static void head_split(ctx *c, graph *g, lowering_env *e, const sem_model *m, int ni, int raw, int line)
{
    const sem_net *n = &m->nets[ni];
    int half = n->head_size / 2;
    e->head_a[ni] = graph_value(c, g, V_ARENA, half, 0, vname(c, e, arena_printf(&c->mem, "%s_mean", n->name)));
    e->head_b[ni] = graph_value(c, g, V_ARENA, half, 0, vname(c, e, arena_printf(&c->mem, "%s_logvar", n->name)));
    op *o = env_op(c, g, e, OP_GAUSS_HEAD, line);
    o->in[o->n_in++] = raw;
    o->out[o->n_out++] = e->head_a[ni];
    o->out[o->n_out++] = e->head_b[ni];
    o->variance = n->variance;
    o->net = ni;
    o->what = variance_table[n->variance].what;
}

/* ------------------------------------------------------------- posteriors -- */

/* "z_x_w": a posterior's latent and the modalities it is given, for names. */
static const char *post_label(ctx *c, const sem_model *m, const sem_posterior *r)
{
    const char *s = m->latents[r->latent].name;
    for (int i = 0; i < m->n_modalities; i++)
        if (r->condition & (1u << i))
            s = arena_printf(&c->mem, "%s_%s", s, m->modalities[i].name);
    return s;
}

/* The mean and log-variance of a Gaussian posterior record: a network's
 * head, or the product of its experts (each lowered under the guard of the
 * modalities it reads, in a posterior given a subset). */
static void lower_post(ctx *c, program *p, graph *g, lowering_env *e, int post, int *mean, int *logvar)
{
    const sem_model *m = p->m;
    const sem_posterior *r = &m->posteriors[post];
    if (e->post_mean[post] < 0 && e->parent && !(r->latents_read & e->own)) {
        lower_post(c, p, g, e->parent, post, &e->post_mean[post], &e->post_lv[post]);
    } else if (e->post_mean[post] < 0 && r->kind == POST_NET) {
        unsigned saved = e->guard;
        if (e->masked)
            e->guard = r->condition;
        lower_net(c, p, g, e, r->net);
        e->guard = saved;
        e->post_mean[post] = e->head_a[r->net];
        e->post_lv[post] = e->head_b[r->net];
    } else if (e->post_mean[post] < 0 && r->kind == POST_PRODUCT) {
        const sem_rule *rule = &m->rules[r->rule];
        int in[2 * MAX_MODALITIES];
        unsigned conds[MAX_MODALITIES], experts = product_observed_experts(m, post, e->observed);
        int n = 0;
        for (int i = 0; i < rule->n_experts; i++)
            if (experts & (1u << i)) {
                conds[n] = m->posteriors[rule->experts[i]].condition;
                lower_post(c, p, g, e, rule->experts[i], &in[2 * n], &in[2 * n + 1]);
                n++;
            }
        const char *label = vname(c, e, post_label(c, m, r));
        int size = m->latents[r->latent].size;
        e->post_mean[post] = graph_value(c, g, V_ARENA, size, 0, arena_printf(&c->mem, "poe_%s_mean", label));
        e->post_lv[post] = graph_value(c, g, V_ARENA, size, 0, arena_printf(&c->mem, "poe_%s_logvar", label));
        unsigned saved = e->guard;
        if (e->masked && rule_table[rule->kind].mixture)
            e->guard = r->condition; /* a component of a mixture: only when all its experts are given */
        op *o = env_op(c, g, e, OP_POE, r->at.line);
        e->guard = saved;
        graph_op_inputs(c, o, 2 * n);
        memcpy(o->in, in, sizeof(int) * (size_t)(2 * n));
        o->n_in = 2 * n;
        o->out[o->n_out++] = e->post_mean[post];
        o->out[o->n_out++] = e->post_lv[post];
        o->prior = r->prior;
        if (e->masked) {
            o->conds = arena_alloc(&c->mem, sizeof(unsigned) * (size_t)n);
            memcpy(o->conds, conds, sizeof(unsigned) * (size_t)n);
        }
        o->what = rule_table[rule->kind].what;
    }
    *mean = e->post_mean[post];
    *logvar = e->post_lv[post];
}

/* The components of a mixture record (those the graph's examples observe)
 * as (mean, log-variance) pairs in `in`, and the modalities each needs in
 * `conds`; their count. */
static int lower_components(ctx *c, program *p, graph *g, lowering_env *e, int post, int *in, unsigned *conds)
{
    const sem_posterior *r = &p->m->posteriors[post];
    int n = 0;
    for (int k = 0; k < r->n_components; k++) {
        if (!condition_observed(p->m, r->components[k], e->observed))
            continue; /* a component the examples cannot make */
        lower_post(c, p, g, e, r->components[k], &in[2 * n], &in[2 * n + 1]);
        conds[n++] = p->m->posteriors[r->components[k]].condition;
    }
    return n;
}

/* -------------------------------------------------------- per-example ops -- */

/* out (+)= sign * log N(z; mean, e^logvar), or N(0, I) when mean < 0. */
static op *logpdf(ctx *c, graph *g, int z, int mean, int logvar, int out, int sign, int accumulate, int line)
{
    op *o = graph_op(c, g, OP_LOGPDF, line);
    o->in[0] = z;
    o->in[1] = mean;
    o->in[2] = logvar;
    o->n_in = 3;
    o->out[o->n_out++] = out;
    o->sign = sign;
    o->accumulate = accumulate;
    return o;
}

/* An op on a mixture: `first` inputs, then the n components' (mean,
 * log-variance) pairs; given a subset, with the modalities each component needs. */
static op *mixture_op(ctx *c, graph *g, const lowering_env *e, op_kind kind, int line, const int *in, int first, int n,
                      const unsigned *conds)
{
    op *o = graph_op(c, g, kind, line);
    graph_op_inputs(c, o, 2 * n + first);
    memcpy(o->in, in, sizeof(int) * (size_t)(2 * n + first));
    o->n_in = 2 * n + first;
    o->n_components = n;
    if (e->masked) {
        o->conds = arena_alloc(&c->mem, sizeof(unsigned) * (size_t)n);
        memcpy(o->conds, conds, sizeof(unsigned) * (size_t)n);
    }
    return o;
}

/* out (+)= sign * log q(z) of a posterior record: a Gaussian's, or a
 * mixture's (with its responsibilities kept when `keep` for the backward). */
static op *post_logpdf(ctx *c, program *p, graph *g, lowering_env *e, int post, int z, int out, int sign,
                       int accumulate, int line, int keep)
{
    if (posterior_is_gaussian(p->m, post)) {
        int mean, lv;
        lower_post(c, p, g, e, post, &mean, &lv);
        return logpdf(c, g, z, mean, lv, out, sign, accumulate, line);
    }
    const sem_posterior *r = &p->m->posteriors[post];
    int in[2 * MAX_SUBSETS + 1];
    unsigned conds[MAX_SUBSETS + 1];
    int n = lower_components(c, p, g, e, post, in + 1, conds);
    in[0] = z;
    op *o = mixture_op(c, g, e, OP_MIX_LOGPDF, line, in, 1, n, conds);
    o->out[o->n_out++] = out;
    o->out[o->n_out++] = keep ? graph_value(c, g, V_ARENA, n, 0, vname(c, e, arena_printf(&c->mem, "resp_%s",
                                                                                          post_label(c, p->m, r))))
                              : -1;
    o->sign = sign;
    o->accumulate = accumulate;
    return o;
}

/* The mean and log-variance of a Gaussian over a latent (-1 for N(0, I)). */
static void lower_gaussian(ctx *c, program *p, graph *g, lowering_env *e, const sem_dist *d, int *mean, int *logvar)
{
    *mean = *logvar = -1;
    if (d->kind == DIST_STANDARD_NORMAL)
        return;
    if (d->kind == DIST_POSTERIOR) {
        lower_post(c, p, g, e, d->post, mean, logvar);
        return;
    }
    lower_net(c, p, g, e, d->net);
    *mean = e->head_a[d->net];
    *logvar = e->head_b[d->net];
}

static void nll(ctx *c, program *p, graph *g, lowering_env *e, int net, int modality, int out, int sign, int line)
{
    lower_net(c, p, g, e, net);
    op *o = graph_op(c, g, OP_NLL, line);
    o->in[0] = e->head_a[net];
    o->in[1] = e->modality[modality];
    o->in[2] = e->head_b[net];
    o->n_in = 3;
    o->out[o->n_out++] = out;
    o->likelihood = p->m->modalities[modality].likelihood;
    o->sign = sign;
}

/* z = mean + sd * eps from a Gaussian (a network's head, or mean and
 * log-variance given), with noise[noise_index]. */
static int sample_gaussian(ctx *c, graph *g, lowering_env *e, int l, int mean, int logvar, int noise_index,
                           value_kind kind, int line, const sem_model *m)
{
    const sem_latent *lat = &m->latents[l];
    int eps = graph_value(c, g, V_NOISE, lat->size, noise_index, vname(c, e, arena_printf(&c->mem, "eps_%s", lat->name)));
    g->values[eps].copies = kind == V_ARENA ? e->samples : 1; /* the training step's draws: K rows an example */
    int z = graph_value(c, g, kind, lat->size, l, vname(c, e, arena_printf(&c->mem, "%s_sample", lat->name)));
    op *o = graph_op(c, g, OP_SAMPLE, line);
    o->in[0] = mean;
    o->in[1] = logvar;
    o->in[2] = eps;
    o->n_in = 3;
    o->out[o->n_out++] = z;
    e->latent[l] = z;
    return z;
}

/* z = mean + sd * eps for the latent's conditional prior. */
static int sample_latent(ctx *c, program *p, graph *g, lowering_env *e, int l, int net, value_kind kind, int line)
{
    lower_net(c, p, g, e, net);
    return sample_gaussian(c, g, e, l, e->head_a[net], e->head_b[net], l, kind, line, p->m);
}

/* ---------------------------------------------------------------- graphs -- */

static void bind_data(ctx *c, program *p, graph *g, lowering_env *e)
{
    for (int i = 0; i < p->m->n_modalities; i++)
        e->modality[i] = graph_value(c, g, V_DATA, p->m->modalities[i].size, i,
                                     arena_printf(&c->mem, "in_%s", p->m->modalities[i].name));
}

/* One term of the loss, in its group's environment. */
static void lower_term(ctx *c, program *p, graph *g, lowering_env *e, int t, int out)
{
    const sem_model *m = p->m;
    const sem_term *term = &m->terms[t];
    int line = term->node->at.line;
    if (term->kind == TERM_NLL) {
        nll(c, p, g, e, term->a.net, term->a.modality, out, 1, line);
    } else if (term->kind == TERM_KL) {
        int ma, la, mb, lb;
        lower_gaussian(c, p, g, e, &term->a, &ma, &la);
        lower_gaussian(c, p, g, e, &term->b, &mb, &lb);
        op *o = graph_op(c, g, OP_KL, line);
        o->in[0] = ma;
        o->in[1] = la;
        o->in[2] = mb;
        o->in[3] = lb;
        o->n_in = 4;
        o->out[o->n_out++] = out;
    } else {
        int z = e->latent[term->a.latent];
        const sem_dist *d[2] = {&term->a, &term->b};
        for (int k = 0; k < 2; k++) {
            int sign = k ? -1 : 1;
            if (d[k]->kind == DIST_POSTERIOR) {
                op *o = post_logpdf(c, p, g, e, d[k]->post, z, out, sign, k, line, 1);
                o->detach = k == 0 && m->train.gradient == GRADIENT_DREG;
            } else {
                int mean, lv;
                lower_gaussian(c, p, g, e, d[k], &mean, &lv);
                logpdf(c, g, z, mean, lv, out, sign, k, line);
            }
        }
    }
}

/* The importance-weighted bound of group gi's terms (each [B x 1] of K
 * rows an example): the bound per example, and the normalised weights that
 * the gradients of its terms (and, with DReG, of its samples) carry. */
static int iw_bound(ctx *c, program *p, graph *g, int gi, const int *term_values, int first_op, int *bound)
{
    const sem_model *m = p->m;
    const sem_group *grp = &m->groups[gi];
    int in[MAX_OP_INPUTS], n = 0, *all = NULL;
    for (int t = 0; t < m->n_terms; t++)
        n += m->terms[t].group == gi && term_values[t] >= 0;
    all = n > MAX_OP_INPUTS ? arena_alloc(&c->mem, sizeof(int) * (size_t)n) : in;
    n = 0;
    for (int t = 0; t < m->n_terms; t++)
        if (m->terms[t].group == gi && term_values[t] >= 0)
            all[n++] = term_values[t];
    const char *label = grp->csuffix ? grp->csuffix : "top";
    *bound = graph_value(c, g, V_ARENA, 1, 0, arena_printf(&c->mem, "iw_bound_%s", label));
    int weights = graph_value(c, g, V_ARENA, 1, 0, arena_printf(&c->mem, "iw_weights_%s", label));
    g->values[weights].copies = m->train.samples;
    op *o = graph_op(c, g, OP_IW_BOUND, m->terms[0].node->at.line);
    for (int t = 0; t < m->n_terms; t++)
        if (m->terms[t].group == gi && term_values[t] >= 0) {
            o->line = m->terms[t].node->at.line;
            break;
        }
    graph_op_inputs(c, o, n);
    memcpy(o->in, all, sizeof(int) * (size_t)n);
    o->n_in = n;
    o->out[o->n_out++] = *bound;
    o->out[o->n_out++] = weights;
    o->term = -1;
    o->what = arena_printf(&c->mem, "the importance-weighted bound of %d samples", (int)m->train.samples);
    /* the group's terms weigh their gradients by the weights; with DReG its samples weigh theirs once more */
    for (int i = first_op; i < g->n_ops - 1; i++) {
        op *t = &g->ops[i];
        if (t->term >= 0 && m->terms[t->term].group == gi)
            t->iw = weights;
        if (t->kind == OP_SAMPLE && m->train.gradient == GRADIENT_DREG)
            t->iw = weights;
    }
    return weights;
}

/* Every op whose inputs have K rows an example and some of one row (the
 * encoders' outputs read by a sample, the data read by a likelihood) gets
 * those expanded to K rows first: after this every op but the bound, the
 * expansion and the loss works on rows of one kind. */
static void broadcast_samples(ctx *c, graph *g)
{
    int n = g->n_ops, cap = 2 * n + 1;
    op *ops = arena_alloc(&c->mem, sizeof(op) * (size_t)cap);
    int *expanded = arena_alloc(&c->mem, sizeof(int) * (size_t)(g->n_values + 1));
    int n_values = g->n_values, count = 0;
    for (int v = 0; v < n_values; v++)
        expanded[v] = -1;
    for (int i = 0; i < n; i++) {
        op o = g->ops[i];
        int k = 1;
        for (int j = 0; j < o.n_in; j++)
            if (o.in[j] >= 0 && g->values[o.in[j]].copies > k)
                k = g->values[o.in[j]].copies;
        if (k > 1 && o.kind != OP_LOSS && o.kind != OP_IW_BOUND) {
            for (int j = 0; j < o.n_in; j++) {
                int v = o.in[j];
                if (v < 0 || g->values[v].copies == k)
                    continue;
                if (expanded[v] < 0) {
                    int w = graph_value(c, g, V_ARENA, g->values[v].width, 0, arena_printf(&c->mem, "%s_k", g->values[v].name));
                    g->values[w].copies = k;
                    expanded[v] = w;
                    op *x = &ops[count++];
                    memset(x, 0, sizeof *x);
                    graph_op_inputs(c, x, 1);
                    x->kind = OP_EXPAND;
                    x->line = o.line;
                    x->tensor = x->bias = x->term = x->net = x->iw = -1;
                    x->sign = 1;
                    x->in[x->n_in++] = v;
                    x->out[x->n_out++] = w;
                    x->what = "each example's row for each of its samples";
                }
                int *in = arena_alloc(&c->mem, sizeof(int) * (size_t)(o.n_in > MAX_OP_INPUTS ? o.n_in : MAX_OP_INPUTS));
                memcpy(in, o.in, sizeof(int) * (size_t)o.n_in);
                in[j] = expanded[v];
                o.in = in;
            }
            for (int j = 0; j < o.n_out; j++)
                if (o.out[j] >= 0 && g->values[o.out[j]].kind == V_ARENA)
                    g->values[o.out[j]].copies = k;
        }
        ops[count++] = o;
    }
    g->ops = ops;
    g->n_ops = count;
    g->cap_ops = cap;
}

/* The training graph of examples that observe the modalities of `s` only
 * (observed.c cuts the loss down), or of complete examples (s NULL). */
static void lower_training(ctx *c, program *p, const sem_subset *s)
{
    const sem_model *m = p->m;
    const char *only = s ? family_suffix(c, m, s->observed) : NULL;
    graph *g = s ? new_graph(c, p, G_TRAIN, arena_printf(&c->mem, "train_%s", only),
                             arena_printf(&c->mem, "one training step on examples that observe only %s: the loss and "
                                          "its gradient", only))
                 : new_graph(c, p, G_TRAIN, "train", "one training step: the loss and its gradient");
    /* what counts: the subset's cut, or the complete examples' (all but the given blocks) */
    const sem_subset *cut = s ? s : observed_subset(m, (1u << m->n_modalities) - 1);
    g->subset = s;
    g->cut = cut;
    lowering_env *top = new_env(c, m, NULL);
    top->samples = (int)m->train.samples;
    top->observed = s ? s->observed : top->observed;
    bind_data(c, p, g, top);
    int *loss_in = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_terms + m->n_groups + 1)); /* terms, then bounds */
    for (int t = 0; t < m->n_terms; t++)
        loss_in[t] = -1; /* a term the examples do not have */
    int n_bounds = 0;
    for (int gi = 0; gi < m->n_groups; gi++) {
        const sem_group *grp = &m->groups[gi];
        if (cut && !cut->groups[gi])
            continue;
        lowering_env *e = top;
        if (gi > 0) {
            e = new_env(c, m, top);
            e->own = grp->own;
            e->suffix = grp->csuffix;
        }
        int group_first = g->n_ops, has_terms = 0;
        for (int k = 0; k < grp->n_order; k++) { /* the group's own samples, each after those it reads */
            int l = grp->order[k];
            const sem_draw *d = &m->draws[grp->draw[l]];
            if (cut && !cut->draws[grp->draw[l]])
                continue;
            int mean, lv;
            lower_post(c, p, g, e, d->post, &mean, &lv);
            sample_gaussian(c, g, e, l, mean, lv, grp->draw[l], V_ARENA, d->node ? d->node->at.line : 0, m);
        }
        for (int t = 0; t < m->n_terms; t++) {
            const sem_term *term = &m->terms[t];
            if (term->group != gi || (cut && !cut->terms[t]))
                continue;
            int out = graph_value(c, g, V_ARENA, 1, 0, arena_printf(&c->mem, "term_%s", term->cname));
            loss_in[t] = out;
            has_terms = 1;
            int first = g->n_ops;
            lower_term(c, p, g, e, t, out);
            for (int i = first; i < g->n_ops; i++)
                if (g->ops[i].out[0] == out)
                    g->ops[i].term = t;
        }
        if (has_terms && m->train.samples > 1)
            iw_bound(c, p, g, gi, loss_in, group_first, &loss_in[m->n_terms + n_bounds++]);
    }
    op *o = graph_op(c, g, OP_LOSS, m->terms[0].node->at.line);
    graph_op_inputs(c, o, m->n_terms + n_bounds);
    memcpy(o->in, loss_in, sizeof(int) * (size_t)(m->n_terms + n_bounds));
    o->n_in = m->n_terms + n_bounds;
    if (m->train.samples > 1)
        broadcast_samples(c, g);
    g->n_forward = g->n_ops;
    g->has_backward = 1;
}

static void lower_posterior(ctx *c, program *p, const sem_family *fam)
{
    const sem_model *m = p->m;
    graph *g = new_graph(c, p, G_POSTERIOR, arena_printf(&c->mem, "posterior_%s", fam->name),
                         fam->given ? "samples every latent from its posterior given the subset `given`, with log q "
                                      "of the sample"
                                    : "samples every latent from one family of posteriors, with log q of the sample");
    g->family_condition = fam->condition;
    g->given = fam->given;
    lowering_env *e = new_env(c, m, NULL);
    e->masked = fam->given;
    bind_data(c, p, g, e);
    int log_q = graph_value(c, g, V_LOG_Q, 1, 0, "sum_log_q");
    for (int k = 0; k < m->n_latents; k++) {
        int l = fam->order[k];
        int post = fam->posts[l];
        int line = m->posteriors[post].at.line;
        if (posterior_is_gaussian(m, post)) {
            int mean, lv;
            lower_post(c, p, g, e, post, &mean, &lv);
            int z = sample_gaussian(c, g, e, l, mean, lv, l, V_LATENT_OUT, line, m);
            logpdf(c, g, z, mean, lv, log_q, 1, k > 0, line);
            continue;
        }
        const sem_latent *lat = &m->latents[l];
        int in[2 * MAX_SUBSETS + 2];
        unsigned conds[MAX_SUBSETS + 1];
        int n = lower_components(c, p, g, e, post, in + 2, conds);
        in[0] = graph_value(c, g, V_NOISE, lat->size, l, arena_printf(&c->mem, "eps_%s", lat->name));
        in[1] = graph_value(c, g, V_NOISE, 1, m->n_latents + l, arena_printf(&c->mem, "choice_%s", lat->name));
        int z = graph_value(c, g, V_LATENT_OUT, lat->size, l, arena_printf(&c->mem, "%s_sample", lat->name));
        op *o = mixture_op(c, g, e, OP_MIX_SAMPLE, line, in, 2, n, conds);
        o->out[o->n_out++] = z;
        e->latent[l] = z;
        post_logpdf(c, p, g, e, post, z, log_q, 1, k > 0, line, 0);
    }
    p->families[p->n_families++] = g;
}

static void lower_families(ctx *c, program *p)
{
    const sem_model *m = p->m;
    p->families = arena_alloc(&c->mem, sizeof(graph *) * (size_t)(m->n_families + 1));
    for (int f = 0; f < m->n_families; f++)
        lower_posterior(c, p, &m->families[f]);
    p->training_family = m->training_family;
}

static void bind_latents(ctx *c, program *p, graph *g, lowering_env *e, value_kind kind)
{
    for (int l = 0; l < p->m->n_latents; l++)
        e->latent[l] = graph_value(c, g, kind, p->m->latents[l].size, l,
                                   arena_printf(&c->mem, "%s_sample", p->m->latents[l].name));
}

static void lower_log_joint(ctx *c, program *p)
{
    const sem_model *m = p->m;
    graph *g = new_graph(c, p, G_LOG_JOINT, "log_joint", "log p(z) under the prior and log p(m | z) for every modality");
    lowering_env *e = new_env(c, m, NULL);
    bind_data(c, p, g, e);
    bind_latents(c, p, g, e, V_LATENT_IN);
    int log_prior = graph_value(c, g, V_LOG_PRIOR, 1, 0, "sum_log_prior");
    for (int k = 0; k < m->n_latents; k++) {
        int l = m->prior_order[k];
        const sem_latent *lat = &m->latents[l];
        sem_dist d = {lat->prior_net < 0 ? DIST_STANDARD_NORMAL : DIST_PRIOR_NET, lat->prior_net, l, -1, -1};
        int mean, logvar;
        lower_gaussian(c, p, g, e, &d, &mean, &logvar);
        logpdf(c, g, e->latent[l], mean, logvar, log_prior, 1, k > 0, lat->node->at.line);
    }
    for (int i = 0; i < m->n_modalities; i++) {
        int net = p->likelihood_net[i];
        int out = graph_value(c, g, V_LOG_LIK, 1, i, arena_printf(&c->mem, "log_lik_%s", m->modalities[i].name));
        if (net >= 0)
            nll(c, p, g, e, net, i, out, -1, m->nets[net].node->head->at.line);
    }
}

static void lower_decode(ctx *c, program *p)
{
    const sem_model *m = p->m;
    graph *g = new_graph(c, p, G_DECODE, "decode", "the expected value of every modality given the latents");
    lowering_env *e = new_env(c, m, NULL);
    bind_latents(c, p, g, e, V_LATENT_IN);
    for (int i = 0; i < m->n_modalities; i++) {
        int net = p->likelihood_net[i];
        if (net < 0)
            continue;
        lower_net(c, p, g, e, net);
        int out = graph_value(c, g, V_OUT, m->modalities[i].size, i, arena_printf(&c->mem, "out_%s", m->modalities[i].name));
        op *o = graph_op(c, g, OP_DECODE_MEAN, m->nets[net].node->head->at.line);
        o->in[o->n_in++] = e->head_a[net];
        o->out[o->n_out++] = out;
        o->likelihood = m->modalities[i].likelihood;
    }
}

static void lower_sample_prior(ctx *c, program *p)
{
    const sem_model *m = p->m;
    graph *g = new_graph(c, p, G_SAMPLE_PRIOR, "sample_prior", "ancestral sampling from the prior, top-down");
    lowering_env *e = new_env(c, m, NULL);
    for (int k = 0; k < m->n_latents; k++) {
        int l = m->prior_order[k];
        const sem_latent *lat = &m->latents[l];
        if (lat->prior_net >= 0) {
            sample_latent(c, p, g, e, l, lat->prior_net, V_LATENT_OUT, lat->node->at.line);
            continue;
        }
        int eps = graph_value(c, g, V_NOISE, lat->size, l, arena_printf(&c->mem, "eps_%s", lat->name));
        int z = graph_value(c, g, V_LATENT_OUT, lat->size, l, arena_printf(&c->mem, "%s_sample", lat->name));
        op *o = graph_op(c, g, OP_STD_SAMPLE, lat->node->at.line);
        o->in[o->n_in++] = eps;
        o->out[o->n_out++] = z;
        e->latent[l] = z;
    }
}

/* The decoder each modality's log-likelihood uses: the one of its first
 * reconstruction term, else any. */
static void choose_likelihoods(ctx *c, program *p)
{
    const sem_model *m = p->m;
    p->likelihood_net = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_modalities + 1));
    for (int i = 0; i < m->n_modalities; i++) {
        p->likelihood_net[i] = -1;
        for (int t = m->n_terms - 1; t >= 0; t--)
            if (m->terms[t].kind == TERM_NLL && m->terms[t].a.modality == i)
                p->likelihood_net[i] = m->terms[t].a.net;
        for (int n = 0; n < m->n_nets && p->likelihood_net[i] < 0; n++)
            if (m->nets[n].head == HEAD_LIKELIHOOD && m->nets[n].target == i)
                p->likelihood_net[i] = n;
    }
}

program *lower_model(ctx *c, const sem_model *m)
{
    program *p = arena_alloc(&c->mem, sizeof *p);
    p->m = m;
    p->graphs = arena_alloc(&c->mem, sizeof(graph *) * (size_t)(m->n_nets + m->n_subsets + 8));
    lay_out_parameters(c, p);
    choose_likelihoods(c, p);
    lower_training(c, p, NULL);
    for (int i = 0; i + 1 < m->n_subsets; i++) /* the last is every modality: the graph above */
        if (m->subsets[i].n_terms)
            lower_training(c, p, &m->subsets[i]);
    lower_families(c, p);
    lower_log_joint(c, p);
    lower_decode(c, p);
    lower_sample_prior(c, p);
    for (int i = 0; i < p->n_graphs; i++)
        if (!p->graphs[i]->has_backward)
            p->graphs[i]->n_forward = p->graphs[i]->n_ops;
    return p;
}
