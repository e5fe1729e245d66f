/* split.c: the training step's large GEMMs cut into tasks of their own.
 *
 * A step of examples that observe one modality is a chain: encoder, sample,
 * decoder and back, each layer waiting for the one before. Its tasks then
 * give two threads little to share (jmvaec --emit=tasks prints the bound),
 * however the runtime orders them. So before scheduling, every dense GEMM
 * of at least SPLIT_MIN_FLOPS (at a batch of 100) becomes SPLIT_PARTS ops,
 * each a part of the weight's side of the product, never of the batch's:
 *
 *   AFFINE   y[:, c0:c1] = act(x W[:, c0:c1] + b[c0:c1])   columns of y
 *   GEMM_DX  dx[:, c0:c1] (+)= dz W[c0:c1, :]^T            columns of dx
 *   GEMM_DW  dW[c0:c1, :] = x[:, c0:c1]^T dz               rows of dW
 *
 * so that the large operand, the weight, is read once in all, and each
 * element of a result is the same dot product, in the same order, as in the
 * whole GEMM. Cuts fall on multiples of 16 reals (64 bytes).
 *
 * A convolution's large operand is its columns, whose GEMM dimension is the
 * batch's (examples x places), and its weight is small: CONV and CONV_DX
 * are cut by examples instead, examples [B p / P, B (p + 1) / P) in part p
 * of P, each part its examples' columns, GEMM and images (the columns of
 * the batch's examples sit side by side, so the parts' are disjoint).
 * CONV_DW stays whole: its GEMM sums over the examples, and it runs beside
 * CONV_DX, which needs the same dZ.
 *
 * The parts of one op write disjoint parts of their outputs and only read
 * the rest: the scheduler lets them run side by side (sched.c, conflict).
 * The split is fixed here, so every thread count runs the same GEMMs: the
 * results stay the same bits for any --threads.
 *
 * Only the training graphs are split (the others run on one thread), after
 * differentiation (grad.c sees whole layers) and only in the C back end
 * (PyTorch's module is written from the unsplit graph). */
#include "ir.h"

enum { SPLIT_PARTS = 2, SPLIT_ALIGN = 16 };
#define SPLIT_MIN_FLOPS 1e7 /* at a batch of 100: about 100 us at 100 GFLOP/s; jmvaec --split-mflop sets another */

int op_cuts_examples(const op *o)
{
    return o->kind == OP_CONV || o->kind == OP_CONV_DX;
}

int op_split_width(const graph *g, const op *o)
{
    switch (o->kind) {
    case OP_AFFINE:
    case OP_GEMM_DX:
        return g->values[o->out[0]].width;
    case OP_GEMM_DW:
        return g->values[o->in[1]].width;
    default:
        return 0;
    }
}

void op_part_range(const graph *g, const op *o, int *lo, int *hi)
{
    int w = op_split_width(g, o);
    if (o->parts <= 1) {
        *lo = 0;
        *hi = w;
        return;
    }
    int blocks = (w + SPLIT_ALIGN - 1) / SPLIT_ALIGN;
    *lo = blocks * o->part / o->parts * SPLIT_ALIGN;
    *hi = o->part + 1 == o->parts ? w : blocks * (o->part + 1) / o->parts * SPLIT_ALIGN;
}

/* The GEMM's floating-point operations at a batch of 100. */
static double gemm_flops(const graph *g, const op *o)
{
    if (op_cuts_examples(o)) {
        const conv_geom *q = o->conv; /* the weight [in_c x out_c k k] by the places of the side without columns */
        double places = q->transposed ? (double)q->in_h * q->in_w : (double)q->out_h * q->out_w;
        return 2.0 * 100 * q->in_c * q->out_c * q->kernel * q->kernel * places;
    }
    double n = op_split_width(g, o), k = 0;
    if (o->kind == OP_AFFINE)
        for (int i = 0; i < o->n_in; i++)
            k += g->values[o->in[i]].width;
    else if (o->kind == OP_GEMM_DX || o->kind == OP_GEMM_DW)
        k = g->values[o->in[0]].width;
    return 2 * 100 * n * k;
}

/* How many parts op o becomes: SPLIT_PARTS for a large GEMM (a dense one's
 * parts each at least two alignment blocks wide), else 1. */
static int parts_of(const graph *g, const op *o, double min_flops)
{
    int wide = op_cuts_examples(o) || op_split_width(g, o) >= SPLIT_PARTS * SPLIT_ALIGN * 2;
    return wide && gemm_flops(g, o) >= min_flops ? SPLIT_PARTS : 1;
}

void split_gemms(ctx *c, graph *g)
{
    double min_flops = c->split_mflop >= 0 ? c->split_mflop * 1e6 : SPLIT_MIN_FLOPS;
    int splits = 0;
    for (int i = 0; i < g->n_ops; i++)
        splits += parts_of(g, &g->ops[i], min_flops) > 1;
    if (splits == 0)
        return;
    int n = g->n_ops + splits * (SPLIT_PARTS - 1);
    op *ops = arena_alloc(&c->mem, sizeof *ops * (size_t)n);
    int at = 0, forward = 0, id = 0;
    for (int i = 0; i < g->n_ops; i++) {
        const op *o = &g->ops[i];
        int parts = parts_of(g, o, min_flops);
        id += parts > 1;
        for (int p = 0; p < parts; p++) {
            ops[at] = *o;
            if (parts > 1) {
                ops[at].part = p;
                ops[at].parts = parts;
                ops[at].split = id;
            }
            at++;
        }
        if (i + 1 == g->n_forward)
            forward = at;
    }
    g->ops = ops;
    g->n_ops = g->cap_ops = n;
    g->n_forward = forward;
}
