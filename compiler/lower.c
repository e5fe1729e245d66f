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
    *v = (value){kind, width, index, unique, NULL, -1, 0, -1, -1, -1};
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
    o->tensor = o->bias = o->term = o->net = -1;
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
    *t = (tensor){arena_strndup(&c->mem, name, strlen(name)), rows, cols, p->n_params, fan_in, cols, is_bias, line};
    p->n_params += (long)rows * cols;
    return p->n_tensors++;
}

/* Per net: a weight and a bias per layer, then the head's. */
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
        for (int l = 0; l <= n->n_layers; l++) {
            int is_head = l == n->n_layers;
            if (is_head && n->head == HEAD_NONE)
                break;
            int out = is_head ? n->head_size : n->layers[l].width;
            int line = is_head ? n->node->head->at.line : n->layers[l].node->at.line;
            snprintf(name, sizeof name, is_head ? "%s.head.weight" : "%s.h%d.weight", n->name, l + 1);
            add_tensor(c, p, name, in, out, 0, in, line);
            snprintf(name, sizeof name, is_head ? "%s.head.bias" : "%s.h%d.bias", n->name, l + 1);
            add_tensor(c, p, name, 1, out, 1, in, line);
            in = out;
        }
    }
}

/* ------------------------------------------------------------- networks -- */

typedef struct {
    int modality[MAX_MODALITIES];
    int latent[MAX_LATENTS];
    int *feature;  /* per net: its last hidden layer's value, or -1 */
    int *head_a;   /* per net: mean or logits */
    int *head_b;   /* per net: log-variance, or -1 */
} lowering_env;

static lowering_env *new_env(ctx *c, const sem_model *m)
{
    lowering_env *e = arena_alloc(&c->mem, sizeof *e);
    e->feature = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    e->head_a = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    e->head_b = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_nets + 1));
    for (int i = 0; i < m->n_nets; i++)
        e->feature[i] = e->head_a[i] = e->head_b[i] = -1;
    for (int i = 0; i < MAX_MODALITIES; i++)
        e->modality[i] = -1;
    for (int i = 0; i < MAX_LATENTS; i++)
        e->latent[i] = -1;
    return e;
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
        int sum = graph_value(c, g, V_ARENA, n->input_size, 0, arena_printf(&c->mem, "%s_sum", n->name));
        op *o = graph_op(c, g, OP_ADD, n->node->at.line);
        memcpy(o->in, in, sizeof(int) * (size_t)count);
        o->n_in = count;
        o->out[o->n_out++] = sum;
        o->what = "sum of the inputs";
        in[0] = sum;
        count = 1;
    }
    return count;
}

static int affine(ctx *c, graph *g, const int *in, int n_in, int tensor_index, activation_kind act, int width,
                  const char *name, int line, int net, int hidden)
{
    int out = graph_value(c, g, V_ARENA, width, 0, name);
    op *o = graph_op(c, g, OP_AFFINE, line);
    memcpy(o->in, in, sizeof(int) * (size_t)n_in);
    o->n_in = n_in;
    o->out[o->n_out++] = out;
    o->tensor = tensor_index;
    o->bias = tensor_index + 1;
    o->act = act;
    o->net = net;
    o->hidden = hidden;
    if (activation_table[act].reads == READS_INPUT) /* its derivative needs the pre-activation */
        o->out[o->n_out++] = graph_value(c, g, V_ARENA, width, 0, arena_printf(&c->mem, "%s_pre", name));
    return out;
}

static void lower_net(ctx *c, program *p, graph *g, lowering_env *e, int ni)
{
    const sem_model *m = p->m;
    const sem_net *n = &m->nets[ni];
    if (e->feature[ni] >= 0 || e->head_a[ni] >= 0)
        return;
    int in[MAX_OP_INPUTS];
    int n_in = net_inputs(c, p, g, e, n, in);
    int tensor_index = p->net_weight[ni];
    for (int l = 0; l < n->n_layers; l++) {
        const sem_layer *layer = &n->layers[l];
        in[0] = affine(c, g, in, n_in, tensor_index, layer->activation, layer->width,
                       arena_printf(&c->mem, "%s_h%d", n->name, l + 1), layer->node->at.line, ni, l + 1);
        n_in = 1;
        tensor_index += 2;
    }
    if (n->n_layers)
        e->feature[ni] = in[0];
    if (n->head == HEAD_NONE)
        return;
    int line = n->node->head->at.line;
    if (!head_is_gaussian(m, n)) {
        e->head_a[ni] = affine(c, g, in, n_in, tensor_index, ACT_LINEAR, n->head_size,
                               arena_printf(&c->mem, "%s_%s", n->name,
                                            likelihood_table[m->modalities[n->target].likelihood].param),
                               line, ni, 0);
        return;
    }
    int raw = affine(c, g, in, n_in, tensor_index, ACT_LINEAR, n->head_size, arena_printf(&c->mem, "%s_out", n->name),
                     line, ni, 0);
    int half = n->head_size / 2;
    e->head_a[ni] = graph_value(c, g, V_ARENA, half, 0, arena_printf(&c->mem, "%s_mean", n->name));
    e->head_b[ni] = graph_value(c, g, V_ARENA, half, 0, arena_printf(&c->mem, "%s_logvar", n->name));
    op *o = graph_op(c, g, OP_GAUSS_HEAD, line);
    o->in[o->n_in++] = raw;
    o->out[o->n_out++] = e->head_a[ni];
    o->out[o->n_out++] = e->head_b[ni];
    o->variance = n->variance;
    o->net = ni;
    o->what = variance_table[n->variance].what;
}

/* -------------------------------------------------------- per-example ops -- */

/* out (+)= sign * log N(z; mean, e^logvar), or N(0, I) when mean < 0. */
static void logpdf(ctx *c, graph *g, int z, int mean, int logvar, int out, int sign, int accumulate, int line)
{
    op *o = graph_op(c, g, OP_LOGPDF, line);
    o->in[0] = z;
    o->in[1] = mean;
    o->in[2] = logvar;
    o->n_in = 3;
    o->out[o->n_out++] = out;
    o->sign = sign;
    o->accumulate = accumulate;
}

/* The mean and log-variance of a Gaussian over a latent (-1 for N(0, I)). */
static void lower_gaussian(ctx *c, program *p, graph *g, lowering_env *e, const sem_dist *d, int *mean, int *logvar)
{
    *mean = *logvar = -1;
    if (d->kind == DIST_STANDARD_NORMAL)
        return;
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

/* z = mean + sd * eps for the latent's posterior or conditional prior. */
static int sample_latent(ctx *c, program *p, graph *g, lowering_env *e, int l, int net, value_kind kind, int line)
{
    const sem_latent *lat = &p->m->latents[l];
    lower_net(c, p, g, e, net);
    int eps = graph_value(c, g, V_NOISE, lat->size, l, arena_printf(&c->mem, "eps_%s", lat->name));
    int z = graph_value(c, g, kind, lat->size, l, arena_printf(&c->mem, "%s_sample", lat->name));
    op *o = graph_op(c, g, OP_SAMPLE, line);
    o->in[0] = e->head_a[net];
    o->in[1] = e->head_b[net];
    o->in[2] = eps;
    o->n_in = 3;
    o->out[o->n_out++] = z;
    e->latent[l] = z;
    return z;
}

/* ---------------------------------------------------------------- graphs -- */

static void bind_data(ctx *c, program *p, graph *g, lowering_env *e)
{
    for (int i = 0; i < p->m->n_modalities; i++)
        e->modality[i] = graph_value(c, g, V_DATA, p->m->modalities[i].size, i,
                                     arena_printf(&c->mem, "in_%s", p->m->modalities[i].name));
}

static void lower_training(ctx *c, program *p)
{
    const sem_model *m = p->m;
    graph *g = new_graph(c, p, G_TRAIN, "train", "one training step: the loss and its gradient");
    lowering_env *e = new_env(c, m);
    bind_data(c, p, g, e);
    for (int k = 0; k < m->n_latents; k++) {
        int l = m->latent_order[k];
        sample_latent(c, p, g, e, l, m->latents[l].sample_net, V_ARENA, m->latents[l].sample->at.line);
    }
    int *loss_in = arena_alloc(&c->mem, sizeof(int) * (size_t)(m->n_terms + 1)); /* one per term, however many */
    for (int t = 0; t < m->n_terms; t++) {
        const sem_term *term = &m->terms[t];
        int line = term->node->at.line;
        int out = graph_value(c, g, V_ARENA, 1, 0, arena_printf(&c->mem, "term_%s", term->name));
        loss_in[t] = out;
        int first = g->n_ops;
        if (term->kind == TERM_NLL) {
            nll(c, p, g, e, term->a.net, term->a.modality, out, 1, line);
        } else {
            int ma, la, mb, lb;
            lower_gaussian(c, p, g, e, &term->a, &ma, &la);
            lower_gaussian(c, p, g, e, &term->b, &mb, &lb);
            if (term->kind == TERM_KL) {
                op *o = graph_op(c, g, OP_KL, line);
                o->in[0] = ma;
                o->in[1] = la;
                o->in[2] = mb;
                o->in[3] = lb;
                o->n_in = 4;
                o->out[o->n_out++] = out;
            } else {
                int z = e->latent[term->a.latent];
                logpdf(c, g, z, ma, la, out, 1, 0, line);
                logpdf(c, g, z, mb, lb, out, -1, 1, line);
            }
        }
        for (int i = first; i < g->n_ops; i++)
            if (g->ops[i].out[0] == out)
                g->ops[i].term = t;
    }
    op *o = graph_op(c, g, OP_LOSS, m->terms[0].node->at.line);
    graph_op_inputs(c, o, m->n_terms);
    memcpy(o->in, loss_in, sizeof(int) * (size_t)m->n_terms);
    o->n_in = m->n_terms;
    g->n_forward = g->n_ops;
    g->has_backward = 1;
}

static void lower_posterior(ctx *c, program *p, const int *nets, const int *order, unsigned mods, const char *name)
{
    const sem_model *m = p->m;
    graph *g = new_graph(c, p, G_POSTERIOR, arena_printf(&c->mem, "posterior_%s", name),
                         "samples every latent from one family of posteriors, with log q of the sample");
    g->family_condition = mods;
    lowering_env *e = new_env(c, m);
    bind_data(c, p, g, e);
    int log_q = graph_value(c, g, V_LOG_Q, 1, 0, "sum_log_q");
    for (int k = 0; k < m->n_latents; k++) {
        int l = order[k];
        int line = m->nets[nets[l]].node->head->at.line;
        int z = sample_latent(c, p, g, e, l, nets[l], V_LATENT_OUT, line);
        logpdf(c, g, z, e->head_a[nets[l]], e->head_b[nets[l]], log_q, 1, k > 0, line);
    }
    p->families[p->n_families++] = g;
}

static void lower_families(ctx *c, program *p)
{
    const sem_model *m = p->m;
    p->families = arena_alloc(&c->mem, sizeof(graph *) * (size_t)(m->n_families + 1));
    for (int f = 0; f < m->n_families; f++)
        lower_posterior(c, p, m->families[f].nets, m->families[f].order, m->families[f].condition,
                        m->families[f].name);
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
    lowering_env *e = new_env(c, m);
    bind_data(c, p, g, e);
    bind_latents(c, p, g, e, V_LATENT_IN);
    int log_prior = graph_value(c, g, V_LOG_PRIOR, 1, 0, "sum_log_prior");
    for (int k = 0; k < m->n_latents; k++) {
        int l = m->prior_order[k];
        const sem_latent *lat = &m->latents[l];
        sem_dist d = {lat->prior_net < 0 ? DIST_STANDARD_NORMAL : DIST_PRIOR_NET, lat->prior_net, l, -1};
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
    lowering_env *e = new_env(c, m);
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
    lowering_env *e = new_env(c, m);
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
    p->graphs = arena_alloc(&c->mem, sizeof(graph *) * (size_t)(m->n_nets + 8));
    lay_out_parameters(c, p);
    choose_likelihoods(c, p);
    lower_training(c, p);
    lower_families(c, p);
    lower_log_joint(c, p);
    lower_decode(c, p);
    lower_sample_prior(c, p);
    for (int i = 0; i < p->n_graphs; i++)
        if (!p->graphs[i]->has_backward)
            p->graphs[i]->n_forward = p->graphs[i]->n_ops;
    return p;
}
