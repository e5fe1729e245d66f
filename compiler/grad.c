/* grad.c: reverse-mode differentiation of the training graph.
 *
 * Walks the forward ops backwards and appends, for each, the ops that carry
 * the gradient from its outputs to its inputs and parameters. A value's
 * gradient buffer is written (=) by its first contribution and accumulated
 * (+=) by the others; data and noise get no gradient. The per-example terms
 * of the loss need no buffer: their gradient is a constant seed per term. */
#include <string.h>

#include "ir.h"
#include "ops.h"

typedef struct {
    ctx *c;
    program *p;
    graph *g;
    char *written;  /* per value: its gradient has had a contribution */
    char *tensor_done;
    long *region_first, *region_count; /* the parameter gradients written so far */
    int n_regions;
} grad_state;

/* A network used by several instances of a loop (a decoder of each draw)
 * has one backward per instance; the first writes its parameters' gradient
 * and the others add to it. Marks the region written; returns 1 if it was
 * already (the op must accumulate). */
static int region_written(grad_state *s, long first, long count)
{
    for (int i = 0; i < s->n_regions; i++)
        if (s->region_first[i] == first && s->region_count[i] == count)
            return 1;
    s->region_first[s->n_regions] = first;
    s->region_count[s->n_regions++] = count;
    return 0;
}

static int grad_of(grad_state *s, int v)
{
    graph *g = s->g;
    if (g->values[v].grad < 0) {
        int d = graph_value(s->c, g, V_ARENA, g->values[v].width, 0,
                            arena_printf(&s->c->mem, "d_%s", g->values[v].name));
        g->values[v].grad = d; /* values may have moved: index again, after the call */
        g->values[d].copies = g->values[v].copies;
        g->values[d].shape = g->values[v].shape;
    }
    return g->values[v].grad;
}

/* Marks a contribution to v's gradient; returns 1 if it must accumulate. */
static int contribute(grad_state *s, int v)
{
    int acc = s->written[v];
    s->written[v] = 1;
    return acc;
}

static int wants(const grad_state *s, int v)
{
    return v >= 0 && s->g->values[v].needs_grad;
}

static void mark_needs_grad(graph *g)
{
    for (int i = 0; i < g->n_forward; i++) {
        op *o = &g->ops[i];
        int needs = o->kind == OP_AFFINE || o->kind == OP_CONV;
        for (int j = 0; j < o->n_in; j++)
            needs |= o->in[j] >= 0 && g->values[o->in[j]].needs_grad;
        if (o->kind == OP_LOSS || o->kind == OP_STD_SAMPLE || o->kind == OP_IW_BOUND)
            needs = 0;
        for (int j = 0; j < o->n_out; j++)
            g->values[o->out[j]].needs_grad = needs && g->values[o->out[j]].kind == V_ARENA;
        if (o->kind == OP_CONV)
            g->values[o->out[1]].needs_grad = 0; /* the columns: a workspace */
    }
}

/* A gradient op of kind k whose outputs are the gradients of the given
 * forward values (those that need one), reading `reads`. */
static op *grad_op(grad_state *s, op_kind k, const op *fwd, const int *of, int n_of, const int *reads, int n_reads)
{
    int outs[4], accs[4];
    for (int j = 0; j < n_of; j++) {
        outs[j] = wants(s, of[j]) ? grad_of(s, of[j]) : -1;
        accs[j] = outs[j] >= 0 ? contribute(s, of[j]) : 0;
    }
    op *o = graph_op(s->c, s->g, k, fwd->line);
    memcpy(o->in, reads, sizeof(int) * (size_t)n_reads);
    o->n_in = n_reads;
    if (fwd->iw >= 0) /* read last: the group's importance weights */
        o->in[o->n_in++] = fwd->iw;
    o->iw = fwd->iw;
    o->detach = fwd->detach;
    memcpy(o->out, outs, sizeof(int) * (size_t)n_of);
    memcpy(o->acc, accs, sizeof(int) * (size_t)n_of);
    o->n_out = n_of;
    o->term = fwd->term;
    o->sign = fwd->sign;
    o->variance = fwd->variance;
    o->likelihood = fwd->likelihood;
    o->act = fwd->act;
    o->net = fwd->net;
    o->hidden = fwd->hidden;
    o->tensor = fwd->tensor;
    o->bias = fwd->bias;
    return o;
}

/* Through a layer's activation (dY becomes dZ in place), with the bias
 * gradient; nothing for a linear layer without a bias. */
static void act_grad(grad_state *s, const op *fwd, int d_out, int pre)
{
    /* act' reads the output, or the pre-activation (silu), or neither (linear) */
    derivative_reads what = activation_table[fwd->act].reads;
    if (what == READS_NOTHING && fwd->bias < 0)
        return;
    int reads[3] = {d_out, what == READS_OUTPUT ? fwd->out[0] : -1, what == READS_INPUT ? pre : -1};
    op *a = grad_op(s, OP_ACT_GRAD, fwd, NULL, 0, reads, 3);
    a->what = fwd->bias >= 0 ? "through the activation, and the bias gradient" : "through the activation";
    a->conv = fwd->conv;
    if (fwd->bias >= 0) {
        const tensor *bias = &s->p->tensors[fwd->bias];
        a->accumulate = region_written(s, bias->offset, (long)bias->rows * bias->cols);
        s->tensor_done[fwd->bias] = 1;
    }
}

/* A workspace for a gradient op: the columns of its convolution. */
static void add_columns(grad_state *s, op *o, const op *fwd)
{
    int cols = graph_value(s->c, s->g, V_ARENA, (int)conv_workspace(fwd->conv), 0,
                           arena_printf(&s->c->mem, "%s_cols", s->g->values[fwd->in[0]].name));
    s->g->values[cols].copies = s->g->values[fwd->out[1]].copies; /* K rows an example after a draw of K samples */
    o->out[o->n_out] = cols;
    o->acc[o->n_out++] = 0;
}

static void conv_grad(grad_state *s, const op *fwd)
{
    int out = fwd->out[0];
    if (!s->written[out])
        return; /* nothing downstream depends on it */
    int d_out = s->g->values[out].grad;
    act_grad(s, fwd, d_out, fwd->n_out > 2 ? fwd->out[2] : -1);
    int x = fwd->in[0];
    int rd[2] = {d_out, x};
    op *w = grad_op(s, OP_CONV_DW, fwd, NULL, 0, rd, 2);
    w->conv = fwd->conv;
    w->what = "the weight's gradient";
    const tensor *t = &s->p->tensors[fwd->tensor];
    w->accumulate = region_written(s, t->offset, (long)t->rows * t->cols);
    add_columns(s, w, fwd);
    s->tensor_done[fwd->tensor] = 1;
    if (wants(s, x)) {
        int of[1] = {x};
        int r[1] = {d_out};
        op *dx = grad_op(s, OP_CONV_DX, fwd, of, 1, r, 1);
        dx->conv = fwd->conv;
        dx->what = "the input's gradient";
        add_columns(s, dx, fwd);
    }
}

static void affine_grad(grad_state *s, const op *fwd)
{
    int out = fwd->out[0];
    if (!s->written[out])
        return; /* nothing downstream depends on it */
    int d_out = s->g->values[out].grad;
    /* act' reads the output, or the pre-activation (silu), or neither (linear) */
    act_grad(s, fwd, d_out, fwd->n_out > 1 ? fwd->out[1] : -1);
    int row = 0;
    for (int i = 0; i < fwd->n_in; i++) {
        int x = fwd->in[i];
        int rd[2] = {d_out, x};
        op *w = grad_op(s, OP_GEMM_DW, fwd, NULL, 0, rd, 2);
        w->block = i;
        w->row_offset = row;
        const tensor *t = &s->p->tensors[fwd->tensor];
        w->accumulate = region_written(s, t->offset + (long)row * t->cols, (long)s->g->values[x].width * t->cols);
        if (wants(s, x)) {
            int of[1] = {x};
            int r[1] = {d_out};
            op *dx = grad_op(s, OP_GEMM_DX, fwd, of, 1, r, 1);
            dx->block = i;
            dx->row_offset = row;
        }
        row += s->g->values[x].width;
    }
    s->tensor_done[fwd->tensor] = 1;
}

static void backward_op(grad_state *s, int i)
{
    op fwd = s->g->ops[i]; /* a copy: appending ops may move the array */
    int any_out_written = 0;
    for (int j = 0; j < fwd.n_out; j++)
        any_out_written |= s->written[fwd.out[j]];
    switch (fwd.kind) {
    case OP_LOSS: {
        op *o = graph_op(s->c, s->g, OP_SEED, fwd.line);
        o->what = "d loss / d term, per example";
        break;
    }
    case OP_NLL: {
        int of[2] = {fwd.in[0], fwd.in[2]};
        grad_op(s, OP_NLL_GRAD, &fwd, of, 2, fwd.in, 3);
        break;
    }
    case OP_KL:
        grad_op(s, OP_KL_GRAD, &fwd, fwd.in, 4, fwd.in, 4);
        break;
    case OP_LOGPDF:
        /* detached (DReG): the distribution's gradient is still derived, and
         * counts only when the step asks for the exact gradient */
        grad_op(s, OP_LOGPDF_GRAD, &fwd, fwd.in, 3, fwd.in, 3);
        break;
    case OP_MIX_LOGPDF:
        /* each component's share, weighted by its responsibility */
        for (int k = 0; k < fwd.n_components; k++) {
            int m = fwd.in[1 + 2 * k], lv = fwd.in[2 + 2 * k];
            int of[3] = {fwd.in[0], m, lv};
            int reads[4] = {fwd.in[0], m, lv, fwd.out[1]};
            op *o = grad_op(s, OP_MIX_LOGPDF_GRAD, &fwd, of, 3, reads, 4);
            o->component = k;
            o->n_components = fwd.n_components;
        }
        break;
    case OP_EXPAND: {
        if (!any_out_written)
            break;
        int reads[1] = {s->g->values[fwd.out[0]].grad};
        grad_op(s, OP_EXPAND_GRAD, &fwd, fwd.in, 1, reads, 1)->what = "the sum over each example's samples";
        break;
    }
    case OP_POE: {
        if (!any_out_written)
            break;
        int d_mean = s->written[fwd.out[0]] ? s->g->values[fwd.out[0]].grad : -1;
        int d_lv = s->written[fwd.out[1]] ? s->g->values[fwd.out[1]].grad : -1;
        for (int k = 0; k < fwd.n_in / 2; k++) {
            int of[2] = {fwd.in[2 * k], fwd.in[2 * k + 1]};
            int reads[6] = {fwd.in[2 * k], fwd.in[2 * k + 1], fwd.out[0], fwd.out[1], d_mean, d_lv};
            op *o = grad_op(s, OP_POE_GRAD, &fwd, of, 2, reads, 6);
            o->what = "one expert's share of the product's gradient";
        }
        break;
    }
    case OP_SAMPLE: {
        if (!any_out_written)
            break;
        int reads[3] = {s->g->values[fwd.out[0]].grad, fwd.in[1], fwd.in[2]};
        grad_op(s, OP_SAMPLE_GRAD, &fwd, fwd.in, 2, reads, 3);
        break;
    }
    case OP_GAUSS_HEAD: {
        if (!any_out_written)
            break;
        int d_lv = s->written[fwd.out[1]] ? s->g->values[fwd.out[1]].grad : -1;
        /* the variance's derivative may need the raw output (softplus), or not (logvar) */
        int reads[3] = {s->written[fwd.out[0]] ? s->g->values[fwd.out[0]].grad : -1, d_lv,
                        variance_table[fwd.variance].reads_raw && d_lv >= 0 ? fwd.in[0] : -1};
        grad_op(s, OP_GAUSS_HEAD_GRAD, &fwd, fwd.in, 1, reads, 3);
        break;
    }
    case OP_ADD: {
        if (!any_out_written)
            break;
        int reads[1] = {s->g->values[fwd.out[0]].grad};
        for (int j = 0; j < fwd.n_in; j++) {
            int of[1] = {fwd.in[j]};
            grad_op(s, OP_ADD_GRAD, &fwd, of, 1, reads, 1);
        }
        break;
    }
    case OP_AFFINE:
        affine_grad(s, &fwd);
        break;
    case OP_CONV:
        conv_grad(s, &fwd);
        break;
    default:
        break;
    }
}

void differentiate(ctx *c, program *p, graph *g)
{
    grad_state s = {c, p, g, NULL, NULL, NULL, NULL, 0};
    mark_needs_grad(g);
    /* gradient values are appended as they are needed: room for one per value, and the columns of convolutions */
    s.written = arena_alloc(&c->mem, (size_t)(3 * g->n_values + 1));
    s.tensor_done = arena_alloc(&c->mem, (size_t)(p->n_tensors + 1));
    int regions = 2 * g->n_ops + 1; /* at most a bias and a row block per op */
    s.region_first = arena_alloc(&c->mem, sizeof(long) * (size_t)regions);
    s.region_count = arena_alloc(&c->mem, sizeof(long) * (size_t)regions);
    for (int i = g->n_forward - 1; i >= 0; i--)
        backward_op(&s, i);
    for (int t = 0; t < p->n_tensors; t++)
        if (!s.tensor_done[t]) {
            op *o = graph_op(c, g, OP_ZERO_GRAD, p->tensors[t].line);
            o->tensor = t;
            o->what = "not on any path to the loss";
        }
}
