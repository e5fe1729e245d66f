/* ir_print.c: `--emit=ir` and `--emit=grad`: the graphs as text. */
#include "ir.h"
#include "ops.h"

static const char *const op_names[] = {
    "affine", "add", "gauss_head", "sample", "std_sample", "kl", "logpdf", "nll", "loss", "decode_mean",
    "poe", "mix_logpdf", "mix_sample", "expand", "conv", "iw_bound",
    "seed", "act_grad", "gemm_dx", "gemm_dw", "gauss_head_grad", "sample_grad", "kl_grad", "logpdf_grad",
    "nll_grad", "add_grad", "zero_grad", "poe_grad", "mix_logpdf_grad", "expand_grad", "conv_dx", "conv_dw",
};

const char *op_kind_name(op_kind k)
{
    return op_names[k];
}

static const char *const kind_names[] = {"", "data", "noise", "latent in", "latent out", "out", "out", "out", "out"};

static void print_value(FILE *out, const graph *g, int v)
{
    if (v < 0) {
        fputs("-", out);
        return;
    }
    const value *val = &g->values[v];
    if (val->shape.h) /* an image: [c, h, w] per example */
        fprintf(out, "%s[%d,%d,%d]", val->name, val->shape.c, val->shape.h, val->shape.w);
    else if (val->copies > 1)
        fprintf(out, "%s[%dx%d]", val->name, val->copies, val->width);
    else
        fprintf(out, "%s[%d]", val->name, val->width);
}

static void print_op(FILE *out, const program *p, const graph *g, const op *o)
{
    fprintf(out, "  %-16s", op_names[o->kind]);
    for (int j = 0; j < o->n_out; j++) {
        fputs(j ? ", " : "", out);
        if (o->kind >= OP_SEED && o->acc[j])
            fputs("+", out);
        print_value(out, g, o->out[j]);
    }
    fputs(o->n_out ? " <- " : "<- ", out);
    for (int j = 0; j < o->n_in; j++) {
        fputs(j ? ", " : "", out);
        print_value(out, g, o->in[j]);
    }
    if (o->kind == OP_AFFINE || o->kind == OP_ACT_GRAD || o->kind == OP_CONV)
        fprintf(out, "  %s", activation_table[o->act].name);
    if (o->conv)
        fprintf(out, "  %s [%d,%d,%d] -> [%d,%d,%d] kernel %d stride %d pad %d", o->conv->transposed ? "deconv" : "conv",
                o->conv->in_c, o->conv->in_h, o->conv->in_w, o->conv->out_c, o->conv->out_h, o->conv->out_w,
                o->conv->kernel, o->conv->stride, o->conv->pad);
    if ((o->kind == OP_AFFINE || o->kind == OP_CONV) && o->bias < 0)
        fputs("  no bias", out);
    if (o->tensor >= 0)
        fprintf(out, "  W=%s", p->tensors[o->tensor].name);
    if (o->kind == OP_GEMM_DX || o->kind == OP_GEMM_DW)
        fprintf(out, " rows %d..", o->row_offset);
    if (o->parts > 1 && op_cuts_examples(o)) {
        fprintf(out, "  part %d of %d: examples B %d/%d..B %d/%d", o->part + 1, o->parts, o->part, o->parts, o->part + 1,
                o->parts);
    } else if (o->parts > 1) {
        int lo, hi;
        op_part_range(g, o, &lo, &hi);
        fprintf(out, "  part %d of %d: %s %d..%d", o->part + 1, o->parts, o->kind == OP_GEMM_DW ? "rows" : "columns", lo,
                hi - 1);
    }
    if (o->kind == OP_NLL || o->kind == OP_NLL_GRAD || o->kind == OP_DECODE_MEAN)
        fprintf(out, "  %s", likelihood_table[o->likelihood].name);
    if (o->term >= 0)
        fprintf(out, "  term %s", p->m->terms[o->term].name);
    if (o->sign < 0)
        fputs("  negated", out);
    if (o->accumulate)
        fputs("  accumulate", out);
    if (o->prior)
        fputs("  with the prior", out);
    if (o->kind == OP_MIX_LOGPDF_GRAD)
        fprintf(out, "  component %d of %d", o->component, o->n_components);
    if (o->detach)
        fputs("  detached", out);
    if (o->guard)
        fprintf(out, "  if given 0x%x", o->guard);
    for (int j = 0; o->conds && j < (o->kind == OP_POE ? o->n_in / 2 : o->n_components); j++)
        fprintf(out, "%s0x%x", j ? "," : "  needs ", o->conds[j]);
    fprintf(out, "  (line %d)\n", o->line);
}

void ir_dump(FILE *out, const program *p, const graph *g, int with_backward)
{
    fprintf(out, "graph %s: %s\n", g->name, g->purpose);
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].kind != V_ARENA) {
            fprintf(out, "  %-16s", kind_names[g->values[v].kind]);
            print_value(out, g, v);
            fputc('\n', out);
        }
    int end = with_backward ? g->n_ops : g->n_forward ? g->n_forward : g->n_ops;
    for (int i = 0; i < end; i++) {
        if (i == g->n_forward && g->has_backward)
            fputs("  # backward\n", out);
        print_op(out, p, g, &g->ops[i]);
    }
    fputc('\n', out);
}
