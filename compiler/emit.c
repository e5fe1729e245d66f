/* emit.c: C for people to read.
 *
 * For model M, writes into DIR:
 *   M.h        sizes as M_-prefixed macros, the parameter layout, the API;
 *   M.c        one straight-line function per graph (GEMMs through jv_gemm,
 *              fused elementwise loops with constant sizes), init, and the
 *              jv_model descriptor the trainer uses;
 *   M_f64.c    the same code in double precision, with the gradient check;
 *   M_main.c   the trainer's main;
 *   Makefile   builds the trainer DIR/M against the runtime.
 * No dates, paths or versions: the output depends on the spec alone. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "formula.h"
#include "ops.h"

typedef struct {
    FILE *out;
    ctx *c;
    const program *p;
    const char *prefix; /* the model's name, for C identifiers */
    const char *upper;  /* the same in capitals, for macros */
    const char *spec_name;
    const graph *g;
    const char *rows;   /* the rows the current op works on: "B", or "U" (once per example) */
    const char *batch;  /* the batch's variable: "B", or "batch" in a task whose rows are K samples an example */
    char *compact;      /* per op of a posterior graph: runs once per example */
    char *expand;       /* per value: computed once per example, read by ops on all rows */
} emitter;

__attribute__((format(printf, 2, 3))) static void put(emitter *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(e->out, fmt, ap);
    va_end(ap);
}

/* The spec's line, trimmed, for the comment over each block. */
static const char *spec_line(emitter *e, int line)
{
    return spec_source_line(e->c, line, 1);
}

static const value *V(emitter *e, int v)
{
    return &e->g->values[v];
}

static const char *N(emitter *e, int v)
{
    return e->g->values[v].name;
}

static int W(emitter *e, int v)
{
    return e->g->values[v].width;
}

static const char *upper(emitter *e, const char *s);

/* "M_NET_H1_WEIGHT + 262144": a tensor's offset macro, plus rows into it. */
static const char *tensor_at(emitter *e, int t, long extra)
{
    const char *macro = arena_printf(&e->c->mem, "%s_%s", e->upper, upper(e, e->p->tensors[t].name));
    return extra ? arena_printf(&e->c->mem, "%s + %ld", macro, extra) : macro;
}

/* ------------------------------------------------------------ expressions -- */

/* A formula of the operation table (ops.c) in C, each operand as the text
 * bound to it. */
static const char *c_formula(emitter *e, const char *f, const binding *vars, int n)
{
    return formula_print(&e->c->mem, LANG_C, f, vars, n);
}

/* The formula's temporaries declared at `depth` levels of indentation, as
 * `jv_real d = ..., vq = ...;` (nothing when it has none); each is then
 * bound to its own name, after the n bindings of vars (room for MAX_LETS
 * more). Returns the new count of bindings. */
static int c_lets(emitter *e, int depth, const let_def *lets, binding *vars, int n)
{
    for (int i = 0; i < MAX_LETS && lets[i].name; i++) {
        put(e, "%s%s = %s", i ? ", " : arena_printf(&e->c->mem, "%*sjv_real ", 4 * depth, ""), lets[i].name,
            c_formula(e, lets[i].expr, vars, n));
        vars[n++] = (binding){lets[i].name, lets[i].name};
        if (i + 1 == MAX_LETS || !lets[i + 1].name)
            put(e, ";\n");
    }
    return n;
}

static const char *assign(int accumulate)
{
    return accumulate ? "+=" : "=";
}

/* The scale of group gi's terms in the graph being emitted: a `mean` loop
 * divides by its instances (those its examples observe, in the graph of
 * an observed subset). */
static double group_scale(const emitter *e, int gi)
{
    return e->g && e->g->cut ? e->g->cut->scale[gi] : e->p->m->groups[gi].scale;
}

/* Whether term t is part of the graph being emitted's loss. */
static int term_counts(const emitter *e, int t)
{
    return !e->g || !e->g->cut || e->g->cut->terms[t];
}

/* The weight of term t in the loss, as a C expression. */
static const char *term_weight(emitter *e, int t)
{
    const sem_term *term = &e->p->m->terms[t];
    double group = group_scale(e, term->group);
    const char *scale = group != 1 ? arena_printf(&e->c->mem, "(jv_real)%.17g * ", group) : "";
    if (term->hyper >= 0)
        return arena_printf(&e->c->mem, "%s(hyper ? hyper[%d] : (jv_real)%.17g)", scale, term->hyper,
                            e->p->m->hypers[term->hyper].value);
    return arena_printf(&e->c->mem, "(jv_real)%.17g", group * term->weight);
}

/* --------------------------------------------------------------- comments -- */

static void block_comment(emitter *e, const op *o, const char *what)
{
    put(e, "\n    /* %s:%d  %s\n", e->spec_name, o->line, spec_line(e, o->line));
    put(e, "       %s */\n", what);
}

static const char *layer_name(emitter *e, const op *o)
{
    if (o->net < 0)
        return "";
    const char *net = e->p->m->nets[o->net].name;
    return o->hidden ? arena_printf(&e->c->mem, "%s layer %d", net, o->hidden) : arena_printf(&e->c->mem, "%s head", net);
}

/* The term of the loss whose value v is, or -1. */
static int term_of_value(emitter *e, int v)
{
    for (int t = 0; t < e->p->m->n_terms; t++)
        if (strcmp(N(e, v), arena_printf(&e->c->mem, "term_%s", e->p->m->terms[t].cname)) == 0)
            return t;
    return -1;
}

/* The rows an example has in the values an op works on: 1, or the K
 * samples of a draw (the expansion works from one row to K; the bound and the
 * loss read both kinds). */
static int op_copies(emitter *e, const op *o)
{
    int k = 1;
    for (int j = 0; j < o->n_in + o->n_out; j++) {
        int v = j < o->n_in ? o->in[j] : o->out[j - o->n_in];
        if (v >= 0 && V(e, v)->copies > k)
            k = V(e, v)->copies;
    }
    return k;
}

/* ---------------------------------------------------------------- forward -- */

/* "copies * " when value v is data read once per example (a posterior run
 * on U rows, whose data rows come in runs of `copies` equal rows), else "":
 * the prefix of its row stride. */
static const char *data_stride(emitter *e, int v)
{
    return strcmp(e->rows, "U") == 0 && V(e, v)->kind == V_DATA ? "copies * " : "";
}

/* "[:, 256:512]": the columns a part of a split GEMM (split.c) computes; "" for a whole one. */
static const char *part_cols(emitter *e, const op *o, int lo, int hi)
{
    return o->parts > 1 ? arena_printf(&e->c->mem, "[:, %d:%d]", lo, hi) : "";
}

static const char *part_note(emitter *e, const op *o)
{
    return o->parts > 1 ? arena_printf(&e->c->mem, ", part %d of %d", o->part + 1, o->parts) : "";
}

/* "ptr + k", or "ptr" when k is 0. */
static const char *offset_by(emitter *e, const char *ptr, int k)
{
    return k ? arena_printf(&e->c->mem, "%s + %d", ptr, k) : ptr;
}

static void emit_affine(emitter *e, const op *o)
{
    const program *p = e->p;
    const tensor *wt = &p->tensors[o->tensor];
    int y = o->out[0], z = o->n_out > 1 ? o->out[1] : o->out[0];
    int n = W(e, y), lo, hi;
    op_part_range(e->g, o, &lo, &hi);
    block_comment(e, o, arena_printf(&e->c->mem, "%s: %s%s = %s(x W%s), [B x %d] -> [B x %d]%s", layer_name(e, o),
                                     N(e, y), part_cols(e, o, lo, hi), activation_table[o->act].name,
                                     o->bias >= 0 ? " + b" : "", wt->rows, n, part_note(e, o)));
    int row = 0;
    for (int i = 0; i < o->n_in; i++) {
        int k = W(e, o->in[i]);
        /* once per example, the first of each run of copies is read from the data */
        put(e, "    jv_gemm(0, 0, %s, %d, %d, 1, %s, %s%d, params + %s, %d, %d, %s, %d);\n", e->rows, hi - lo, k,
            N(e, o->in[i]), data_stride(e, o->in[i]), k, tensor_at(e, o->tensor, (long)row * n + lo), n, i > 0,
            offset_by(e, N(e, z), lo), n);
        row += k;
    }
    if (o->bias < 0 && o->act == ACT_LINEAR)
        return; /* x W alone */
    put(e, "    for (int b = 0; b < %s; b++) {\n", e->rows);
    if (o->bias >= 0)
        put(e, "        const jv_real *restrict bias = params + %s;\n", tensor_at(e, o->bias, lo));
    const char *plus_bias = o->bias >= 0 ? " + bias[j]" : "";
    const char *y_row = offset_by(e, arena_printf(&e->c->mem, "%s + (size_t)b * %d", N(e, y), n), lo);
    const char *z_row = offset_by(e, arena_printf(&e->c->mem, "%s + (size_t)b * %d", N(e, z), n), lo);
    if (activation_table[o->act].reads == READS_INPUT) { /* the pre-activation is kept for the backward pass */
        put(e, "        jv_real *restrict pre = %s, *restrict dst = %s;\n", z_row, y_row);
        put(e, "        JV_IVDEP\n");
        put(e, "        for (int j = 0; j < %d; j++) {\n", hi - lo);
        put(e, "            jv_real v = pre[j]%s;\n", plus_bias);
        put(e, "            pre[j] = v;\n");
        put(e, "            dst[j] = %s;\n", c_formula(e, activation_table[o->act].forward, &(binding){"v", "v"}, 1));
    } else {
        put(e, "        jv_real *restrict row = %s;\n", y_row);
        put(e, "        JV_IVDEP\n");
        put(e, "        for (int j = 0; j < %d; j++) {\n", hi - lo);
        put(e, "            jv_real v = row[j]%s;\n", plus_bias);
        put(e, "            row[j] = %s;\n", c_formula(e, activation_table[o->act].forward, &(binding){"v", "v"}, 1));
    }
    put(e, "        }\n    }\n");
}

/* "[B x 64 x 14 x 14]": an image value's shape in comments. */
static const char *image_shape(emitter *e, int c, int h, int w)
{
    return arena_printf(&e->c->mem, "[B x %d x %d x %d]", c, h, w);
}

/* The pointer to example b's image in value v: the data of a posterior
 * run once per example (U rows) are `copies` rows apart. */
static const char *example_at(emitter *e, int v, const char *b)
{
    return arena_printf(&e->c->mem, "%s + (size_t)%s * %s%d", N(e, v), b, data_stride(e, v), W(e, v));
}

/* The two sides of a convolution's columns: the image [c, h, w] whose
 * windows they hold (a convolution's input, a transposed one's output) and
 * the places [oh, ow] they are taken at (the other side). */
typedef struct {
    int c, h, w, oh, ow;
} conv_sides;

static conv_sides sides_of(const conv_geom *g)
{
    if (g->transposed)
        return (conv_sides){g->out_c, g->out_h, g->out_w, g->in_h, g->in_w};
    return (conv_sides){g->in_c, g->in_h, g->in_w, g->out_h, g->out_w};
}

/* The examples a convolution's block computes, as C expressions: all of
 * the batch's, or a part's (split.c cuts CONV and CONV_DX by examples; the
 * block then starts with `const int b0 = ..., b1 = ...;`). */
typedef struct {
    const char *lo, *hi, *count;
} examples;

static examples examples_of(emitter *e, const op *o)
{
    if (o->parts <= 1)
        return (examples){"0", e->rows, e->rows};
    return (examples){"b0", "b1", "(b1 - b0)"};
}

static void open_examples(emitter *e, const op *o)
{
    if (o->parts > 1)
        put(e, "        const int b0 = %s * %d / %d, b1 = %s * %d / %d; /* part %d of %d: these examples */\n", e->rows,
            o->part, o->parts, e->rows, o->part + 1, o->parts, o->part + 1, o->parts);
}

/* ptr + lo n: the place of example (or column block) lo in rows n wide. */
static const char *at_example(emitter *e, const char *ptr, const char *lo, long n)
{
    return strcmp(lo, "0") == 0 ? ptr : arena_printf(&e->c->mem, "%s + (size_t)%s * %ld", ptr, lo, n);
}

/* jv_im2col of examples r of value v (the image side of the geometry) into
 * the columns, whose rows hold every example's places side by side. */
static void put_im2col(emitter *e, int depth, const conv_geom *g, int v, examples r)
{
    conv_sides d = sides_of(g);
    put(e, "%*sfor (int b = %s; b < %s; b++)\n", 4 * depth, "", r.lo, r.hi);
    put(e, "%*s    jv_im2col(%s, %d, %d, %d, %d, %d, %d, %d, %d, cols + (size_t)b * %d, (size_t)%s * %d);\n", 4 * depth, "",
        example_at(e, v, "b"), d.c, d.h, d.w, g->kernel, g->stride, g->pad, d.oh, d.ow, d.oh * d.ow, e->rows,
        d.oh * d.ow);
}

static void put_col2im(emitter *e, const conv_geom *g, const char *dst, int dst_width, const char *accumulate, examples r)
{
    conv_sides d = sides_of(g);
    put(e, "        for (int b = %s; b < %s; b++)\n", r.lo, r.hi);
    put(e, "            jv_col2im(cols + (size_t)b * %d, (size_t)%s * %d, %d, %d, %d, %d, %d, %d, %d, %d, %s + (size_t)b * %d, %s);\n",
        d.oh * d.ow, e->rows, d.oh * d.ow, d.c, d.h, d.w, g->kernel, g->stride, g->pad, d.oh, d.ow, dst, dst_width,
        accumulate);
}

/* jv_to_channels of examples r of value v [c x n] into t's columns. */
static void put_to_channels(emitter *e, int v, const char *stride, int c, int n, examples r)
{
    put(e, "        jv_to_channels(%s, %s, (size_t)%s%d, %d, %d, %s, (size_t)%s * %d);\n", at_example(e, N(e, v), r.lo, W(e, v)),
        r.count, stride, W(e, v), c, n, at_example(e, "t", r.lo, n), e->rows, n);
}

/* The pointers into a convolution's workspace: the columns, then t, the
 * image of the other side as one matrix [channels x rows places]. */
static void open_workspace(emitter *e, const conv_geom *g, int ws)
{
    put(e, "    {\n        jv_real *restrict cols = %s, *restrict t = %s + (size_t)%s * %ld;\n", N(e, ws), N(e, ws),
        e->rows, conv_columns(g));
}

static void emit_conv(emitter *e, const op *o)
{
    const conv_geom *g = o->conv;
    const tensor *wt = &e->p->tensors[o->tensor];
    int x = o->in[0], y = o->out[0], ws = o->out[1], z = o->n_out > 2 ? o->out[2] : o->out[0];
    int places_in = g->in_h * g->in_w, places = g->out_h * g->out_w, kk = g->kernel * g->kernel;
    const char *R = e->rows;
    examples r = examples_of(e, o);
    block_comment(e, o, arena_printf(&e->c->mem, "%s: %s = %s(%s(x, W)%s), kernel %d, stride %d, padding %d, %s -> %s%s",
                                     layer_name(e, o), N(e, y), activation_table[o->act].name,
                                     g->transposed ? "deconv" : "conv", o->bias >= 0 ? " + b" : "", g->kernel, g->stride,
                                     g->pad, image_shape(e, g->in_c, g->in_h, g->in_w),
                                     image_shape(e, g->out_c, g->out_h, g->out_w), part_note(e, o)));
    open_workspace(e, g, ws);
    open_examples(e, o);
    if (!g->transposed) {
        put(e, "        /* columns [%d x %s %d], then t = W [%d x %d] columns: [%d x %s %d] */\n", g->in_c * kk, R, places,
            g->out_c, g->in_c * kk, g->out_c, R, places);
        put_im2col(e, 2, g, x, r);
        put(e, "        jv_gemm(0, 0, %d, %s * %d, %d, 1, params + %s, %d, %s, %s * %d, 0, %s, %s * %d);\n", g->out_c, r.count,
            places, g->in_c * kk, tensor_at(e, o->tensor, 0), wt->cols, at_example(e, "cols", r.lo, places), R, places,
            at_example(e, "t", r.lo, places), R, places);
    } else {
        put(e, "        /* t = x as [%d x %s %d]; columns = W^T [%d x %d] t: [%d x %s %d], summed into place */\n", g->in_c,
            R, places_in, g->out_c * kk, g->in_c, g->out_c * kk, R, places_in);
        put_to_channels(e, x, data_stride(e, x), g->in_c, places_in, r);
        put(e, "        jv_gemm(1, 0, %d, %s * %d, %d, 1, params + %s, %d, %s, %s * %d, 0, %s, %s * %d);\n", g->out_c * kk,
            r.count, places_in, g->in_c, tensor_at(e, o->tensor, 0), wt->cols, at_example(e, "t", r.lo, places_in), R,
            places_in, at_example(e, "cols", r.lo, places_in), R, places_in);
        put_col2im(e, g, N(e, z), W(e, z), "0", r);
    }
    /* the bias and the activation, channel by channel */
    int reads_input = activation_table[o->act].reads == READS_INPUT;
    put(e, "        for (int b = %s; b < %s; b++)\n", r.lo, r.hi);
    put(e, "            for (int c = 0; c < %d; c++) {\n", g->out_c);
    if (!g->transposed)
        put(e, "                const jv_real *restrict src = t + ((size_t)c * %s + b) * %d;\n", R, places);
    else
        put(e, "                const jv_real *restrict src = %s + (size_t)b * %d + (size_t)c * %d;\n", N(e, z), W(e, z),
            places);
    put(e, "                jv_real *restrict dst = %s + (size_t)b * %d + (size_t)c * %d;\n", N(e, y), W(e, y), places);
    if (reads_input)
        put(e, "                jv_real *restrict pre = %s + (size_t)b * %d + (size_t)c * %d;\n", N(e, z), W(e, z), places);
    put(e, "                const jv_real bias = %s;\n",
        o->bias >= 0 ? arena_printf(&e->c->mem, "params[%s + c]", tensor_at(e, o->bias, 0)) : "0");
    put(e, "                JV_IVDEP\n");
    put(e, "                for (int j = 0; j < %d; j++) {\n", places);
    put(e, "                    jv_real v = src[j] + bias;\n");
    if (reads_input)
        put(e, "                    pre[j] = v;\n");
    put(e, "                    dst[j] = %s;\n", c_formula(e, activation_table[o->act].forward, &(binding){"v", "v"}, 1));
    put(e, "                }\n            }\n    }\n");
}

static void emit_conv_dw(emitter *e, const op *o)
{
    const conv_geom *g = o->conv;
    const tensor *wt = &e->p->tensors[o->tensor];
    int dz = o->in[0], x = o->in[1], ws = o->out[0];
    int places_in = g->in_h * g->in_w, places = g->out_h * g->out_w, kk = g->kernel * g->kernel;
    const char *R = e->rows;
    examples all = examples_of(e, o);
    block_comment(e, o, arena_printf(&e->c->mem, "%s, backward: d %s [%d x %d] %s %s", layer_name(e, o), wt->name,
                                     wt->rows, wt->cols, o->accumulate ? "+=" : "=",
                                     g->transposed ? "x (the columns of dZ)^T" : "dZ (the columns of x)^T"));
    open_workspace(e, g, ws);
    if (!g->transposed) {
        put_im2col(e, 2, g, x, all);
        put_to_channels(e, dz, "", g->out_c, places, all);
        put(e, "        jv_gemm(0, 1, %d, %d, %s * %d, 1, t, %s * %d, cols, %s * %d, %d, grads + %s, %d);%s\n", g->out_c,
            g->in_c * kk, R, places, R, places, R, places, o->accumulate, tensor_at(e, o->tensor, 0), wt->cols,
            o->accumulate ? " /* added to the other instances' */" : "");
    } else {
        put_im2col(e, 2, g, dz, all);
        put_to_channels(e, x, "", g->in_c, places_in, all);
        put(e, "        jv_gemm(0, 1, %d, %d, %s * %d, 1, t, %s * %d, cols, %s * %d, %d, grads + %s, %d);%s\n", g->in_c,
            g->out_c * kk, R, places_in, R, places_in, R, places_in, o->accumulate, tensor_at(e, o->tensor, 0),
            wt->cols, o->accumulate ? " /* added to the other instances' */" : "");
    }
    put(e, "    }\n");
}

static void emit_conv_dx(emitter *e, const op *o)
{
    const conv_geom *g = o->conv;
    const tensor *wt = &e->p->tensors[o->tensor];
    int dz = o->in[0], dx = o->out[0], ws = o->out[1];
    int places_in = g->in_h * g->in_w, places = g->out_h * g->out_w, kk = g->kernel * g->kernel;
    const char *R = e->rows;
    examples r = examples_of(e, o);
    block_comment(e, o, arena_printf(&e->c->mem, "%s, backward: %s %s the gradient of the input%s", layer_name(e, o),
                                     N(e, dx), assign(o->acc[0]), part_note(e, o)));
    open_workspace(e, g, ws);
    open_examples(e, o);
    if (!g->transposed) {
        put_to_channels(e, dz, "", g->out_c, places, r);
        put(e, "        jv_gemm(1, 0, %d, %s * %d, %d, 1, params + %s, %d, %s, %s * %d, 0, %s, %s * %d);\n", g->in_c * kk,
            r.count, places, g->out_c, tensor_at(e, o->tensor, 0), wt->cols, at_example(e, "t", r.lo, places), R, places,
            at_example(e, "cols", r.lo, places), R, places);
        put_col2im(e, g, N(e, dx), W(e, dx), o->acc[0] ? "1" : "0", r);
    } else {
        put_im2col(e, 2, g, dz, r);
        put(e, "        jv_gemm(0, 0, %d, %s * %d, %d, 1, params + %s, %d, %s, %s * %d, 0, %s, %s * %d);\n", g->in_c, r.count,
            places_in, g->out_c * kk, tensor_at(e, o->tensor, 0), wt->cols, at_example(e, "cols", r.lo, places_in), R,
            places_in, at_example(e, "t", r.lo, places_in), R, places_in);
        put(e, "        jv_from_channels(%s, (size_t)%s * %d, %s, %d, %d, %s, %d);\n", at_example(e, "t", r.lo, places_in),
            R, places_in, r.count, g->in_c, places_in, at_example(e, N(e, dx), r.lo, W(e, dx)), o->acc[0]);
    }
    put(e, "    }\n");
}

static void emit_add(emitter *e, const op *o)
{
    int n = W(e, o->out[0]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s = sum of %d inputs, [B x %d]", N(e, o->out[0]), o->n_in, n));
    put(e, "    JV_IVDEP\n");
    put(e, "    for (size_t i = 0; i < (size_t)%s * %d; i++)\n        %s[i] = ", e->rows, n, N(e, o->out[0]));
    for (int j = 0; j < o->n_in; j++)
        put(e, "%s%s[i]", j ? " + " : "", N(e, o->in[j]));
    put(e, ";\n");
}

static void emit_gauss_head(emitter *e, const op *o)
{
    int n = W(e, o->out[0]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s: %s, [B x %d] -> 2 x [B x %d]", layer_name(e, o), o->what, 2 * n, n));
    put(e, "    for (int b = 0; b < %s; b++) {\n", e->rows);
    put(e, "        const jv_real *restrict raw = %s + (size_t)b * %d;\n", N(e, o->in[0]), 2 * n);
    put(e, "        jv_real *restrict mean = %s + (size_t)b * %d, *restrict logvar = %s + (size_t)b * %d;\n", N(e, o->out[0]), n,
        N(e, o->out[1]), n);
    put(e, "        JV_IVDEP\n");
    put(e, "        for (int j = 0; j < %d; j++) {\n", n);
    put(e, "            mean[j] = raw[j];\n");
    binding a = {"a", arena_printf(&e->c->mem, "raw[%d + j]", n)};
    put(e, "            logvar[j] = %s;\n", c_formula(e, variance_table[o->variance].logvar, &a, 1));
    put(e, "        }\n    }\n");
}

static void emit_sample(emitter *e, const op *o, int noise_optional)
{
    int n = W(e, o->out[0]);
    const char *z = N(e, o->out[0]), *m = N(e, o->in[0]), *lv = N(e, o->in[1]), *eps = N(e, o->in[2]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s = mean + exp(logvar / 2) * %s, [B x %d]%s", z, eps, n,
                                     noise_optional ? " (the mean where noise is NULL)" : ""));
    binding vars[] = {{"m", arena_printf(&e->c->mem, "%s[i]", m)}, {"lv", arena_printf(&e->c->mem, "%s[i]", lv)},
                      {"eps", arena_printf(&e->c->mem, "%s[i]", eps)}};
    const char *sample = c_formula(e, sample_formula.value, vars, 3);
    put(e, "    JV_IVDEP\n");
    put(e, "    for (size_t i = 0; i < (size_t)B * %d; i++)\n", n);
    if (noise_optional)
        put(e, "        %s[i] = %s ? %s : %s[i];\n", z, eps, sample, m);
    else
        put(e, "        %s[i] = %s;\n", z, sample);
}

static void emit_std_sample(emitter *e, const op *o)
{
    int n = W(e, o->out[0]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s ~ N(0, I): the noise itself, [B x %d]", N(e, o->out[0]), n));
    put(e, "    memcpy(%s, %s, sizeof(jv_real) * (size_t)B * %d);\n", N(e, o->out[0]), N(e, o->in[0]), n);
}

/* Opens the per-example loop of a per-example op: b, and the sum s. */
static void per_example_open(emitter *e)
{
    put(e, "    for (int b = 0; b < B; b++) {\n");
    put(e, "        jv_real s = 0;\n");
}

static void per_example_close(emitter *e, const op *o)
{
    put(e, "        %s[b] %s %ss;\n    }\n", N(e, o->out[0]), assign(o->accumulate), o->sign < 0 ? "-" : "");
}

/* Row pointers `name` into value v at example b. */
/* A pointer `name` to row b of value v (none when v < 0), declared at
 * `depth` levels of indentation; writable for the gradients a loop fills. */
static void declare_row(emitter *e, int depth, int writable, const char *name, int v)
{
    if (v >= 0)
        put(e, "%*s%sjv_real *restrict %s = %s + (size_t)b * %d;\n", 4 * depth, "", writable ? "" : "const ", name,
            N(e, v), W(e, v));
}

/* Binds the first n operand names whose values exist (values[k] >= 0) to
 * their row's element, `name[j]` (the rows declare_row declared under those
 * names); returns the count of bindings. */
static int bind_elements(emitter *e, binding *vars, const char *const *names, const int *values, int n)
{
    int count = 0;
    for (int k = 0; k < n; k++)
        if (values[k] >= 0)
            vars[count++] = (binding){names[k], arena_printf(&e->c->mem, "%s[j]", names[k])};
    return count;
}

/* `s op= value;` of a per-element formula inside the loop over j, after its
 * temporaries (the loop is at depth 2). */
static void emit_elementwise_sum(emitter *e, const formula_def *f, const char *update, binding *vars, int n)
{
    n = c_lets(e, 3, f->lets, vars, n);
    put(e, "            s %s %s;\n", update, c_formula(e, f->value, vars, n));
}

/* "N(mean, e^logvar)", or "N(0, I)" for the standard normal (mean < 0). */
static const char *gaussian_name(emitter *e, int mean, int logvar)
{
    return mean < 0 ? "N(0, I)" : arena_printf(&e->c->mem, "N(%s, e^%s)", N(e, mean), N(e, logvar));
}

static void emit_kl(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s: KL(%s || %s), summed over %d dimensions", N(e, o->out[0]),
                                     gaussian_name(e, o->in[0], o->in[1]), gaussian_name(e, o->in[2], o->in[3]), n));
    per_example_open(e);
    declare_row(e, 2, 0, "mq", o->in[0]);
    declare_row(e, 2, 0, "lq", o->in[1]);
    declare_row(e, 2, 0, "mp", o->in[2]);
    declare_row(e, 2, 0, "lp", o->in[3]);
    put(e, "        JV_IVDEP\n");
    put(e, "        for (int j = 0; j < %d; j++) {\n", n);
    binding vars[4 + MAX_LETS];
    int n_vars = bind_elements(e, vars, kl_operands, o->in, 4);
    emit_elementwise_sum(e, &kl_formula[o->in[2] < 0 ? GAUSS_STANDARD : GAUSS_GENERAL], "+=", vars, n_vars);
    put(e, "        }\n");
    per_example_close(e, o);
}

static void emit_logpdf(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s %s %slog %s(%s), summed over %d dimensions", N(e, o->out[0]),
                                     assign(o->accumulate), o->sign < 0 ? "-" : "", gaussian_name(e, o->in[1], o->in[2]),
                                     N(e, o->in[0]), n));
    per_example_open(e);
    declare_row(e, 2, 0, "z", o->in[0]);
    declare_row(e, 2, 0, "m", o->in[1]);
    declare_row(e, 2, 0, "lv", o->in[2]);
    put(e, "        JV_IVDEP\n");
    put(e, "        for (int j = 0; j < %d; j++) {\n", n);
    binding vars[3 + MAX_LETS];
    int n_vars = bind_elements(e, vars, normal_operands, o->in, 3);
    emit_elementwise_sum(e, &neg_log_normal_formula[o->in[1] < 0 ? GAUSS_STANDARD : GAUSS_GENERAL], "-=", vars, n_vars);
    put(e, "        }\n");
    per_example_close(e, o);
}

static void emit_nll(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s %s %slog p(%s | %s), %s over %d values", N(e, o->out[0]),
                                     assign(o->accumulate), o->sign < 0 ? "" : "-", N(e, o->in[1]), N(e, o->in[0]),
                                     likelihood_table[o->likelihood].name, n));
    per_example_open(e);
    declare_row(e, 2, 0, "l", o->in[0]);
    declare_row(e, 2, 0, "t", o->in[1]);
    const likelihood_def *lik = &likelihood_table[o->likelihood];
    if (lik->normalised) { /* -log softmax(l)[t] = logsumexp(l) - t . l, for any mass of t (the table's softmax) */
        binding sm[] = {{"x", "l[j]"}, {"top", "top"}, {"total", "total"}};
        put(e, "        jv_real top = l[0], total = 0, mass = 0;\n");
        put(e, "        for (int j = 1; j < %d; j++)\n            top = %s;\n", n, c_formula(e, softmax.larger, sm, 3));
        put(e, "        JV_IVDEP\n");
        put(e, "        for (int j = 0; j < %d; j++) {\n", n);
        put(e, "            total += %s;\n", c_formula(e, softmax.term, sm, 3));
        put(e, "            mass += t[j];\n");
        put(e, "            s -= t[j] * l[j];\n");
        put(e, "        }\n");
        put(e, "        s += mass * (%s);\n", c_formula(e, softmax.log_normaliser, sm, 3));
        per_example_close(e, o);
        return;
    }
    if (lik->has_logvar)
        declare_row(e, 2, 0, "lv", o->in[2]);
    binding vars[3 + MAX_LETS];
    int n_vars = bind_elements(e, vars, likelihood_operands, o->in, 3);
    int braces = lik->nll.lets[0].name != NULL;
    if (n <= 4096) { /* the terms in a row first, so that loop vectorises; then their sum */
        put(e, "        jv_real v[%d];\n        JV_IVDEP\n", n);
        put(e, "        for (int j = 0; j < %d; j++)%s\n", n, braces ? " {" : "");
        n_vars = c_lets(e, 3, lik->nll.lets, vars, n_vars);
        put(e, "            v[j] = %s;\n", c_formula(e, lik->nll.value, vars, n_vars));
        put(e, "%s        for (int j = 0; j < %d; j++)\n            s += v[j];\n", braces ? "        }\n" : "", n);
    } else {
        put(e, "        JV_IVDEP\n");
        put(e, "        for (int j = 0; j < %d; j++)%s\n", n, braces ? " {" : "");
        n_vars = c_lets(e, 3, lik->nll.lets, vars, n_vars);
        put(e, "            s += %s;\n%s", c_formula(e, lik->nll.value, vars, n_vars), braces ? "        }\n" : "");
    }
    per_example_close(e, o);
}

static void emit_loss(emitter *e, const op *o)
{
    const sem_model *m = e->p->m;
    int n_bounds = o->n_in - m->n_terms;
    put(e, "\n    /* %s:%d  the loss: each term as the spec names it (its weight times its mean over\n"
           "       the batch%s), and %s */\n", e->spec_name, o->line, n_bounds ? " and the samples" : "",
        n_bounds ? "the sum of the groups' importance-weighted bounds" : "their sum");
    put(e, "    jv_real total = 0;\n");
    for (int t = 0; t < m->n_terms; t++) {
        if (!term_counts(e, t)) {
            put(e, "    if (jv_s->terms) /* %s: not in these examples' loss */\n        jv_s->terms[%d] = 0;\n",
                m->terms[t].name, t);
            continue;
        }
        put(e, "    {\n        jv_real mean = 0;\n");
        put(e, "        for (int b = 0; b < B; b++)\n            mean += %s[b];\n", N(e, o->in[t]));
        put(e, "        mean /= (jv_real)B;\n");
        if (m->terms[t].hyper < 0 && m->terms[t].weight * group_scale(e, m->terms[t].group) == 1)
            put(e, "        const jv_real term = mean; /* %s */\n", m->terms[t].name);
        else
            put(e, "        const jv_real term = %s * mean; /* %s */\n", term_weight(e, t), m->terms[t].name);
        put(e, "        if (jv_s->terms)\n            jv_s->terms[%d] = term;\n", t);
        if (!n_bounds)
            put(e, "        total += (jv_term_scale ? jv_term_scale[%d] : 1) * term;\n", t);
        put(e, "    }\n");
    }
    for (int k = 0, g = 0; k < n_bounds; k++, g++) { /* the groups with terms, in order */
        int first = -1;
        for (; first < 0 && g < m->n_groups; g += first < 0)
            for (int t = 0; t < m->n_terms && first < 0; t++)
                if (m->terms[t].group == g && term_counts(e, t))
                    first = t;
        const sem_group *grp = &m->groups[g];
        double scale = group_scale(e, g);
        put(e, "    {\n        jv_real mean = 0; /* the bound of %s */\n", grp->suffix ? grp->suffix : "the top level");
        put(e, "        for (int b = 0; b < batch; b++)\n            mean += %s[b];\n", N(e, o->in[m->n_terms + k]));
        put(e, "        mean /= (jv_real)batch;\n");
        put(e, "        total += (jv_term_scale ? jv_term_scale[%d] : 1) * %s%smean;\n", first,
            scale != 1 ? arena_printf(&e->c->mem, "(jv_real)%.17g", scale) : "", scale != 1 ? " * " : "");
        put(e, "    }\n");
    }
    put(e, "    if (jv_s->loss)\n        *jv_s->loss = total;\n");
}

static void emit_decode_mean(emitter *e, const op *o)
{
    int n = W(e, o->out[0]);
    const likelihood_def *lik = &likelihood_table[o->likelihood];
    block_comment(e, o, arena_printf(&e->c->mem, "%s = %s, [B x %d]", N(e, o->out[0]), lik->mean_what, n));
    put(e, "    for (int b = 0; b < B; b++) {\n");
    declare_row(e, 2, 0, "l", o->in[0]);
    put(e, "        jv_real *restrict dst = %s + (size_t)b * %d;\n", N(e, o->out[0]), n);
    if (!lik->normalised) {
        put(e, "        JV_IVDEP\n");
        put(e, "        for (int j = 0; j < %d; j++)\n            dst[j] = %s;\n", n,
            c_formula(e, lik->mean, &(binding){"l", "l[j]"}, 1));
    } else { /* the table's softmax: each value's term, then divided by their total */
        binding sm[] = {{"x", "l[j]"}, {"top", "top"}, {"total", "total"}};
        put(e, "        jv_real top = l[0], total = 0;\n");
        put(e, "        for (int j = 1; j < %d; j++)\n            top = %s;\n", n, c_formula(e, softmax.larger, sm, 3));
        put(e, "        JV_IVDEP\n");
        put(e, "        for (int j = 0; j < %d; j++)\n            total += dst[j] = %s;\n", n, c_formula(e, softmax.term, sm, 3));
        put(e, "        JV_IVDEP\n");
        put(e, "        for (int j = 0; j < %d; j++)\n            dst[j] /= total;\n", n);
    }
    put(e, "    }\n");
}

/* --------------------------------------------------------------- backward -- */

static void emit_seed(emitter *e, const op *o)
{
    const sem_model *m = e->p->m;
    put(e, "\n    /* %s:%d  %s */\n", e->spec_name, o->line, o->what);
    for (int t = 0; t < m->n_terms; t++)
        if (term_counts(e, t))
            put(e, "    const jv_real jv_seed_%s = (jv_term_scale ? jv_term_scale[%d] : 1) * %s / (jv_real)%s;\n",
                m->terms[t].cname, t, term_weight(e, t), e->batch);
}

/* Inside the loop over j, at `depth` levels: g[j] becomes d(pre-activation),
 * reading the output (row yrow) or the pre-activation (row pre) as the
 * activation's derivative needs. */
static void put_act_derivative(emitter *e, int depth, activation_kind act)
{
    derivative_reads reads = activation_table[act].reads;
    put(e, "%*sjv_real %s;\n", 4 * depth, "", reads == READS_INPUT ? "x = pre[j]" : "y = yrow[j]");
    binding vars[] = {{"g", "g[j]"}, {"x", "x"}, {"y", "y"}};
    put(e, "%*sg[j] = %s;\n", 4 * depth, "", c_formula(e, activation_table[act].backward, vars, 3));
}

/* Through a convolution's activation; the bias gradient sums each
 * channel over its places and the batch. */
static void emit_conv_act_grad(emitter *e, const op *o)
{
    int dy = o->in[0], y = o->in[1], pre = o->in[2];
    const conv_geom *g = o->conv;
    int places = g->out_h * g->out_w;
    const tensor *b = o->bias >= 0 ? &e->p->tensors[o->bias] : NULL;
    block_comment(e, o, arena_printf(&e->c->mem, "%s, backward: %s becomes d(pre-activation)%s%s%s", layer_name(e, o),
                                     N(e, dy), b ? "; " : "", b ? b->name : "", b ? " = sums over each channel" : ""));
    if (b && !o->accumulate) /* else added to the other instances' */
        put(e, "    memset(grads + %s, 0, sizeof(jv_real) * %d);\n", tensor_at(e, o->bias, 0), g->out_c);
    derivative_reads reads = activation_table[o->act].reads;
    put(e, "    for (int b = 0; b < B; b++)\n");
    put(e, "        for (int c = 0; c < %d; c++) {\n", g->out_c);
    put(e, "            jv_real *restrict g = %s + (size_t)b * %d + (size_t)c * %d;\n", N(e, dy), W(e, dy), places);
    if (reads != READS_NOTHING)
        put(e, "            const jv_real *restrict %s = %s + (size_t)b * %d + (size_t)c * %d;\n",
            reads == READS_INPUT ? "pre" : "yrow", N(e, reads == READS_INPUT ? pre : y), W(e, dy), places);
    if (reads != READS_NOTHING) {
        put(e, "            JV_IVDEP\n");
        put(e, "            for (int j = 0; j < %d; j++) {\n", places);
        put_act_derivative(e, 4, o->act);
        put(e, "            }\n");
    }
    if (b) {
        put(e, "            jv_real sum = 0;\n");
        put(e, "            for (int j = 0; j < %d; j++)\n                sum += g[j];\n", places);
        put(e, "            grads[%s + c] += sum;\n", tensor_at(e, o->bias, 0));
    }
    put(e, "        }\n");
}

static void emit_act_grad(emitter *e, const op *o)
{
    int dy = o->in[0], y = o->in[1], pre = o->in[2];
    int n = W(e, dy);
    if (o->conv) {
        emit_conv_act_grad(e, o);
        return;
    }
    const tensor *b = o->bias >= 0 ? &e->p->tensors[o->bias] : NULL;
    block_comment(e, o, arena_printf(&e->c->mem, "%s, backward: %s becomes d(pre-activation)%s%s%s", layer_name(e, o),
                                     N(e, dy), b ? "; " : "", b ? b->name : "", b ? " = column sums" : ""));
    if (b && !o->accumulate) /* else added to the other instances' */
        put(e, "    memset(grads + %s, 0, sizeof(jv_real) * %d);\n", tensor_at(e, o->bias, 0), n);
    put(e, "    for (int b = 0; b < B; b++) {\n");
    if (b)
        put(e, "        jv_real *restrict gbias = grads + %s;\n", tensor_at(e, o->bias, 0));
    put(e, "        jv_real *restrict g = %s + (size_t)b * %d;\n", N(e, dy), n);
    /* the derivative reads the output (y) or the pre-activation (x), or neither: then act' = 1 */
    derivative_reads reads = activation_table[o->act].reads;
    if (reads != READS_NOTHING)
        put(e, "        const jv_real *restrict %s = %s + (size_t)b * %d;\n", reads == READS_INPUT ? "pre" : "yrow",
            N(e, reads == READS_INPUT ? pre : y), n);
    put(e, "        JV_IVDEP\n");
    put(e, "        for (int j = 0; j < %d; j++) {\n", n);
    if (reads != READS_NOTHING)
        put_act_derivative(e, 3, o->act);
    if (b)
        put(e, "            gbias[j] += g[j];\n");
    put(e, "        }\n    }\n");
}

static void emit_gemm_dw(emitter *e, const op *o)
{
    const tensor *wt = &e->p->tensors[o->tensor];
    int dz = o->in[0], x = o->in[1];
    int n = W(e, dz), k = W(e, x), lo, hi;
    op_part_range(e->g, o, &lo, &hi);
    block_comment(e, o, arena_printf(&e->c->mem, "%s, backward: d %s rows %d..%d = %s%s^T %s, [%d x %d]%s",
                                     layer_name(e, o), wt->name, o->row_offset + lo, o->row_offset + hi - 1, N(e, x),
                                     part_cols(e, o, lo, hi), N(e, dz), hi - lo, n, part_note(e, o)));
    put(e, "    jv_gemm(1, 0, %d, %d, B, 1, %s, %d, %s, %d, %d, grads + %s, %d);%s\n", hi - lo, n, offset_by(e, N(e, x), lo), k,
        N(e, dz), n, o->accumulate, tensor_at(e, o->tensor, (long)(o->row_offset + lo) * n), n,
        o->accumulate ? " /* added to the other instances' */" : "");
}

static void emit_gemm_dx(emitter *e, const op *o)
{
    int dz = o->in[0], dx = o->out[0];
    int n = W(e, dz), k = W(e, dx), lo, hi;
    op_part_range(e->g, o, &lo, &hi);
    block_comment(e, o, arena_printf(&e->c->mem, "%s, backward: %s%s %s %s W^T, [B x %d] -> [B x %d]%s", layer_name(e, o),
                                     N(e, dx), part_cols(e, o, lo, hi), assign(o->acc[0]), N(e, dz), n, k,
                                     part_note(e, o)));
    put(e, "    jv_gemm(0, 1, B, %d, %d, 1, %s, %d, params + %s, %d, %d, %s, %d);\n", hi - lo, n, N(e, dz), n,
        tensor_at(e, o->tensor, (long)(o->row_offset + lo) * n), n, o->acc[0], offset_by(e, N(e, dx), lo), k);
}

static void emit_gauss_head_grad(emitter *e, const op *o)
{
    int d_mean = o->in[0], d_lv = o->in[1], raw = o->in[2], d_raw = o->out[0];
    int n = W(e, d_raw) / 2;
    block_comment(e, o, arena_printf(&e->c->mem, "%s, backward: %s from d mean and d log-variance", layer_name(e, o),
                                     N(e, d_raw)));
    put(e, "    for (int b = 0; b < B; b++) {\n");
    declare_row(e, 2, 0, "raw", raw);
    declare_row(e, 2, 0, "dm", d_mean);
    declare_row(e, 2, 0, "dl", d_lv);
    put(e, "        jv_real *restrict g = %s + (size_t)b * %d;\n", N(e, d_raw), 2 * n);
    put(e, "        JV_IVDEP\n");
    put(e, "        for (int j = 0; j < %d; j++) {\n", n);
    put(e, "            g[j] %s %s;\n", assign(o->acc[0]), d_mean >= 0 ? "dm[j]" : "0");
    if (d_lv < 0)
        put(e, "            g[%d + j] %s 0;\n", n, assign(o->acc[0]));
    else {
        binding vars[] = {{"dl", "dl[j]"}, {"a", arena_printf(&e->c->mem, "raw[%d + j]", n)}};
        put(e, "            g[%d + j] %s %s;\n", n, assign(o->acc[0]), c_formula(e, variance_table[o->variance].backward, vars, 2));
    }
    put(e, "        }\n    }\n");
}

static void emit_sample_grad(emitter *e, const op *o)
{
    int dz = o->in[0], lv = o->in[1], eps = o->in[2];
    int n = W(e, dz);
    if (o->iw >= 0) { /* DReG: the sample's gradient weighed once more by the sample's normalised weight */
        block_comment(e, o, arena_printf(&e->c->mem, "backward of the sample: %s to its mean and log-variance, times "
                                         "the sample's normalised weight (the doubly-reparameterised gradient)", N(e, dz)));
        put(e, "    for (int b = 0; b < B; b++) {\n");
        put(e, "        const jv_real w = jv_s->flags & JV_STEP_EXACT ? 1 : %s[b];\n", N(e, o->iw));
        put(e, "        JV_IVDEP\n        for (int j = 0; j < %d; j++) {\n", n);
        put(e, "            const size_t i = (size_t)b * %d + (size_t)j;\n", n);
        binding wv[] = {{"g", arena_printf(&e->c->mem, "w * %s[i]", N(e, dz))},
                        {"lv", arena_printf(&e->c->mem, "%s[i]", N(e, lv))}, {"eps", arena_printf(&e->c->mem, "%s[i]", N(e, eps))}};
        for (int k = 0; k < 2; k++)
            if (o->out[k] >= 0)
                put(e, "            %s[i] %s %s;\n", N(e, o->out[k]), assign(o->acc[k]), c_formula(e, sample_gradient.d[k], wv, 3));
        put(e, "        }\n    }\n");
        return;
    }
    block_comment(e, o, arena_printf(&e->c->mem, "backward of the sample: %s to its mean and log-variance", N(e, dz)));
    put(e, "    JV_IVDEP\n");
    put(e, "    for (size_t i = 0; i < (size_t)B * %d; i++) {\n", n);
    binding vars[] = {{"g", arena_printf(&e->c->mem, "%s[i]", N(e, dz))}, {"lv", arena_printf(&e->c->mem, "%s[i]", N(e, lv))},
                      {"eps", arena_printf(&e->c->mem, "%s[i]", N(e, eps))}};
    for (int k = 0; k < 2; k++)
        if (o->out[k] >= 0)
            put(e, "        %s[i] %s %s;\n", N(e, o->out[k]), assign(o->acc[k]), c_formula(e, sample_gradient.d[k], vars, 3));
    put(e, "    }\n");
}

/* A detached distribution's gradient (DReG): counted only when the step asks
 * for the exact gradient of the objective (the gradient check). */
static const char *detached(emitter *e, const op *o, int k, const char *formula)
{
    if (!o->detach || k == 0)
        return formula;
    return arena_printf(&e->c->mem, "(jv_s->flags & JV_STEP_EXACT ? %s : 0)", formula);
}

/* The loop over j of a per-example op's backward (at depth 3): the
 * gradient's temporaries, then `out_k[j] (+)= d_k` for each output k that
 * exists, out_k the row declared under out_names[k]; braces when it is more
 * than one statement. vars binds the operands (room for MAX_LETS more). */
static void emit_gradient_loop(emitter *e, int n, const gradient_def *gd, binding *vars, int n_vars,
                               const char *const *out_names, const op *o)
{
    int lines = 0;
    for (int k = 0; k < o->n_out; k++)
        lines += o->out[k] >= 0 && gd->d[k];
    int braces = gd->lets[0].name || lines > 1;
    put(e, "            JV_IVDEP\n");
    put(e, "            for (int j = 0; j < %d; j++)%s\n", n, braces ? " {" : "");
    n_vars = c_lets(e, 4, gd->lets, vars, n_vars);
    for (int k = 0; k < o->n_out; k++)
        if (o->out[k] >= 0 && gd->d[k])
            put(e, "                %s[j] %s %s;\n", out_names[k], assign(o->acc[k]),
                detached(e, o, k, c_formula(e, gd->d[k], vars, n_vars)));
    if (braces)
        put(e, "            }\n");
}

/* Opens the loop of a per-example op's backward; g is d loss / d its value
 * (in the importance-weighted bound, times each row's normalised weight). */
static void per_example_grad_open(emitter *e, const op *o)
{
    if (o->iw < 0) {
        put(e, "    {\n        const jv_real g = %sjv_seed_%s;\n", o->sign < 0 ? "-" : "", e->p->m->terms[o->term].cname);
        put(e, "        for (int b = 0; b < B; b++) {\n");
        return;
    }
    put(e, "    {\n        const jv_real g0 = %sjv_seed_%s;\n", o->sign < 0 ? "-" : "", e->p->m->terms[o->term].cname);
    put(e, "        for (int b = 0; b < B; b++) {\n");
    put(e, "            const jv_real g = g0 * %s[b]; /* the sample's normalised weight */\n", N(e, o->iw));
}


static void emit_kl_grad(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    int std = o->in[2] < 0;
    block_comment(e, o, "backward of the KL term");
    per_example_grad_open(e, o);
    declare_row(e, 3, 0, "mq", o->in[0]);
    declare_row(e, 3, 0, "lq", o->in[1]);
    declare_row(e, 3, 0, "mp", o->in[2]);
    declare_row(e, 3, 0, "lp", o->in[3]);
    static const char *const names[] = {"dmq", "dlq", "dmp", "dlp"};
    for (int j = 0; j < 4; j++)
        declare_row(e, 3, 1, names[j], o->out[j]);
    binding vars[5 + MAX_LETS] = {{"g", "g"}};
    int n_vars = 1 + bind_elements(e, vars + 1, kl_operands, o->in, 4);
    emit_gradient_loop(e, n, &kl_gradient[std ? GAUSS_STANDARD : GAUSS_GENERAL], vars, n_vars, names, o);
    put(e, "        }\n    }\n");
}

/* The rows of a Gaussian log-density's backward inside its per-example loop
 * (g set): d z, d mean and d log-variance of the table's gradient; closes the
 * loop and its block. */
static void log_normal_gradient_rows(emitter *e, const op *o, int n, int which)
{
    declare_row(e, 3, 0, "z", o->in[0]);
    declare_row(e, 3, 0, "m", o->in[1]);
    declare_row(e, 3, 0, "lv", o->in[2]);
    static const char *const names[] = {"dz", "dm", "dlv"};
    for (int j = 0; j < 3; j++)
        declare_row(e, 3, 1, names[j], o->out[j]);
    binding vars[4 + MAX_LETS] = {{"g", "g"}};
    int n_vars = 1 + bind_elements(e, vars + 1, normal_operands, o->in, 3);
    emit_gradient_loop(e, n, &log_normal_gradient[which], vars, n_vars, names, o);
    put(e, "        }\n    }\n");
}

static void emit_logpdf_grad(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    int std = o->in[1] < 0;
    block_comment(e, o, "backward of the log-density");
    per_example_grad_open(e, o);
    log_normal_gradient_rows(e, o, n, std ? GAUSS_STANDARD : GAUSS_GENERAL);
}

static void emit_nll_grad(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    if (o->out[0] < 0 && o->out[1] < 0)
        return;
    block_comment(e, o, arena_printf(&e->c->mem, "backward of -log p: d %s", N(e, o->in[0])));
    per_example_grad_open(e, o);
    declare_row(e, 3, 0, "l", o->in[0]);
    declare_row(e, 3, 0, "t", o->in[1]);
    declare_row(e, 3, 0, "lv", o->in[2]);
    declare_row(e, 3, 1, "dl", o->out[0]);
    declare_row(e, 3, 1, "dlv", o->out[1]);
    if (likelihood_table[o->likelihood].normalised) { /* softmax: d l = g (mass softmax(l) - t) */
        binding sm[] = {{"x", "l[j]"}, {"top", "top"}, {"total", "total"}};
        put(e, "            jv_real top = l[0], total = 0, mass = 0;\n");
        put(e, "            for (int j = 1; j < %d; j++)\n                top = %s;\n", n, c_formula(e, softmax.larger, sm, 3));
        put(e, "            JV_IVDEP\n");
        put(e, "            for (int j = 0; j < %d; j++) {\n", n);
        put(e, "                total += %s;\n                mass += t[j];\n            }\n", c_formula(e, softmax.term, sm, 3));
        put(e, "            JV_IVDEP\n");
        put(e, "            for (int j = 0; j < %d; j++)\n", n);
        put(e, "                dl[j] %s g * (mass * %s - t[j]);\n", assign(o->acc[0]), c_formula(e, softmax.share, sm, 3));
    } else {
        static const char *const names[] = {"dl", "dlv"};
        binding vars[4 + MAX_LETS] = {{"g", "g"}};
        int n_vars = 1 + bind_elements(e, vars + 1, likelihood_operands, o->in, 3);
        emit_gradient_loop(e, n, &likelihood_table[o->likelihood].nll_grad, vars, n_vars, names, o);
    }
    put(e, "        }\n    }\n");
}

static void emit_add_grad(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    if (o->out[0] < 0)
        return;
    block_comment(e, o, arena_printf(&e->c->mem, "backward of the sum: %s %s %s", N(e, o->out[0]), assign(o->acc[0]), N(e, o->in[0])));
    put(e, "    JV_IVDEP\n");
    put(e, "    for (size_t i = 0; i < (size_t)B * %d; i++)\n        %s[i] %s %s[i];\n", n, N(e, o->out[0]),
        assign(o->acc[0]), N(e, o->in[0]));
}

/* ------------------------------------------------------- experts, mixtures -- */

/* `(given & 0x3u) == 0x3u`: the subset holds every modality of `bits`. */
static const char *given_holds(emitter *e, unsigned bits)
{
    return arena_printf(&e->c->mem, "(given & 0x%xu) == 0x%xu", bits, bits);
}

/* The product of Gaussian experts, per element: the precisions and the
 * precision-weighted means summed expert by expert (into the outputs), then
 * the product's mean and log-variance (the table's poe_* formulas). Given a
 * subset, an expert counts only when the subset holds its modalities. */
static void emit_poe(emitter *e, const op *o)
{
    int n = W(e, o->out[0]), k = o->n_in / 2;
    const char *mo = N(e, o->out[0]), *lvo = N(e, o->out[1]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s, %s: %s%s, [B x %d]", mo, lvo, o->what,
                                     o->prior ? " and the prior N(0, I)" : "", n));
    put(e, "    for (int b = 0; b < %s; b++) {\n", e->rows);
    put(e, "        jv_real *restrict t = %s + (size_t)b * %d, *restrict s = %s + (size_t)b * %d;\n", lvo, n, mo, n);
    put(e, "        JV_IVDEP\n        for (int j = 0; j < %d; j++) {\n", n);
    put(e, "            t[j] = %d; /* the precision %s */\n            s[j] = 0;\n        }\n", o->prior,
        o->prior ? "of the prior" : "");
    binding vars[] = {{"m", "m[j]"}, {"lv", "lv[j]"}, {"t", "t[j]"}, {"s", "s[j]"}};
    for (int i = 0; i < k; i++) {
        int depth = 2;
        if (o->conds) {
            put(e, "        if (%s) {\n", given_holds(e, o->conds[i]));
            depth = 3;
        }
        put(e, "%*s{\n", 4 * depth, "");
        put(e, "%*sconst jv_real *restrict m = %s + (size_t)b * %d, *restrict lv = %s + (size_t)b * %d;\n", 4 * depth + 4,
            "", N(e, o->in[2 * i]), n, N(e, o->in[2 * i + 1]), n);
        put(e, "%*sJV_IVDEP\n%*sfor (int j = 0; j < %d; j++) {\n", 4 * depth + 4, "", 4 * depth + 4, "", n);
        put(e, "%*st[j] += %s;\n", 4 * depth + 8, "", c_formula(e, poe_precision.value, vars, 4));
        put(e, "%*ss[j] += %s;\n", 4 * depth + 8, "", c_formula(e, poe_weighted.value, vars, 4));
        put(e, "%*s}\n%*s}\n", 4 * depth + 4, "", 4 * depth, "");
        if (o->conds)
            put(e, "        }\n");
    }
    put(e, "        JV_IVDEP\n        for (int j = 0; j < %d; j++) {\n", n);
    put(e, "            s[j] = %s;\n", c_formula(e, poe_mean.value, vars, 4));
    put(e, "            t[j] = %s;\n        }\n    }\n", c_formula(e, poe_logvar.value, vars, 4));
}

static void emit_poe_grad(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    if (o->out[0] < 0 && o->out[1] < 0)
        return;
    block_comment(e, o, arena_printf(&e->c->mem, "backward of the product: %s, %s from %s's share", o->out[0] >= 0 ?
                                     N(e, o->out[0]) : "-", o->out[1] >= 0 ? N(e, o->out[1]) : "-", N(e, o->in[0])));
    put(e, "    for (int b = 0; b < B; b++) {\n");
    static const char *const rows[] = {"m", "lv", "mo", "lvo", "gm", "glv"};
    for (int j = 0; j < 6; j++)
        declare_row(e, 2, 0, rows[j], o->in[j]);
    static const char *const names[] = {"dm", "dlv"};
    for (int j = 0; j < 2; j++)
        declare_row(e, 2, 1, names[j], o->out[j]);
    binding vars[6 + MAX_LETS];
    int n_vars = 0;
    for (int j = 0; j < 6; j++)
        vars[n_vars++] = (binding){rows[j], o->in[j] >= 0 ? arena_printf(&e->c->mem, "%s[j]", rows[j]) : "0"};
    /* at depth 2 (emit_gradient_loop writes at depth 3): one level less */
    int lines = (o->out[0] >= 0) + (o->out[1] >= 0);
    put(e, "        JV_IVDEP\n        for (int j = 0; j < %d; j++)%s\n", n, " {");
    n_vars = c_lets(e, 3, poe_gradient.lets, vars, n_vars);
    for (int k = 0; k < 2; k++)
        if (o->out[k] >= 0)
            put(e, "            %s[j] %s %s;\n", names[k], assign(o->acc[k]), c_formula(e, poe_gradient.d[k], vars, n_vars));
    (void)lines;
    put(e, "        }\n    }\n");
}

/* The log-density of a uniform mixture at z: each component's Gaussian
 * log-density, then their log-mean-exp (the table's logmeanexp steps); the
 * responsibilities are kept for the backward when out[1] exists. Given a
 * subset, only the components whose modalities it holds count. */
static void emit_mix_logpdf(emitter *e, const op *o)
{
    int n = W(e, o->in[0]), C = o->n_components;
    block_comment(e, o, arena_printf(&e->c->mem, "%s %s %slog of the mean of %d Gaussian densities at %s (a uniform "
                                     "mixture), summed over %d dimensions", N(e, o->out[0]), assign(o->accumulate),
                                     o->sign < 0 ? "-" : "", C, N(e, o->in[0]), n));
    put(e, "    for (int b = 0; b < %s; b++) {\n", e->rows);
    declare_row(e, 2, 0, "z", o->in[0]);
    put(e, "        jv_real l[%d], n = 0, top = -INFINITY, total = 0;\n", C);
    binding vars[8 + MAX_LETS];
    for (int c = 0; c < C; c++) {
        int depth = 2;
        if (o->conds) {
            put(e, "        l[%d] = -INFINITY;\n        if (%s) {\n", c, given_holds(e, o->conds[c]));
            depth = 3;
        }
        put(e, "%*s{\n", 4 * depth, "");
        put(e, "%*sconst jv_real *restrict m = %s + (size_t)b * %d, *restrict lv = %s + (size_t)b * %d;\n", 4 * depth + 4,
            "", N(e, o->in[1 + 2 * c]), n, N(e, o->in[2 + 2 * c]), n);
        put(e, "%*sjv_real s = 0;\n%*sJV_IVDEP\n%*sfor (int j = 0; j < %d; j++) {\n", 4 * depth + 4, "", 4 * depth + 4, "",
            4 * depth + 4, "", n);
        int nv = 0;
        vars[nv++] = (binding){"z", "z[j]"};
        vars[nv++] = (binding){"m", "m[j]"};
        vars[nv++] = (binding){"lv", "lv[j]"};
        nv = c_lets(e, depth + 2, neg_log_normal_formula[GAUSS_GENERAL].lets, vars, nv);
        put(e, "%*ss -= %s;\n", 4 * depth + 8, "", c_formula(e, neg_log_normal_formula[GAUSS_GENERAL].value, vars, nv));
        put(e, "%*s}\n%*sl[%d] = s;\n%*sn += 1;\n%*s}\n", 4 * depth + 4, "", 4 * depth + 4, "", c, 4 * depth + 4, "",
            4 * depth, "");
        if (o->conds)
            put(e, "        }\n");
    }
    binding lv[] = {{"x", "l[c]"}, {"top", "top"}, {"total", "total"}, {"n", "n"}, {"result", "result"}};
    put(e, "        for (int c = 0; c < %d; c++)\n            top = %s;\n", C, c_formula(e, logmeanexp.larger, lv, 5));
    put(e, "        for (int c = 0; c < %d; c++)\n            total += %s;\n", C, c_formula(e, logmeanexp.term, lv, 5));
    put(e, "        const jv_real result = %s;\n", c_formula(e, logmeanexp.result, lv, 5));
    put(e, "        %s[b] %s %sresult;\n", N(e, o->out[0]), assign(o->accumulate), o->sign < 0 ? "-" : "");
    if (o->out[1] >= 0) {
        put(e, "        jv_real *restrict resp = %s + (size_t)b * %d;\n", N(e, o->out[1]), C);
        put(e, "        for (int c = 0; c < %d; c++)\n            resp[c] = %s;\n", C, c_formula(e, logmeanexp.weight, lv, 5));
    }
    put(e, "    }\n");
}

/* Component `component`'s share of the mixture's gradient: its Gaussian's,
 * weighted by its responsibility. */
static void emit_mix_logpdf_grad(emitter *e, const op *o)
{
    int n = W(e, o->in[0]);
    if (o->out[0] < 0 && o->out[1] < 0 && o->out[2] < 0)
        return;
    block_comment(e, o, arena_printf(&e->c->mem, "backward of the mixture's log-density: component %d of %d%s", o->component,
                                     o->n_components, o->detach ? ", to the sample only (its parameters are held)" : ""));
    put(e, "    {\n        const jv_real g0 = %sjv_seed_%s;\n", o->sign < 0 ? "-" : "", e->p->m->terms[o->term].cname);
    put(e, "        for (int b = 0; b < B; b++) {\n");
    put(e, "            const jv_real g = g0 * %s[(size_t)b * %d + %d]%s; /* the component's responsibility%s */\n",
        N(e, o->in[3]), o->n_components, o->component,
        o->iw >= 0 ? arena_printf(&e->c->mem, " * %s[b]", N(e, o->iw)) : "",
        o->iw >= 0 ? ", the sample's normalised weight" : "");
    log_normal_gradient_rows(e, o, n, GAUSS_GENERAL);
}

/* A sample of a uniform mixture: the component chosen by the choice's
 * noise (a standard normal, through its distribution function), then its
 * reparameterised sample; the mean of the components' means without noise. */
static void emit_mix_sample(emitter *e, const op *o)
{
    int n = W(e, o->out[0]), C = o->n_components;
    const char *z = N(e, o->out[0]), *eps = N(e, o->in[0]), *choice = N(e, o->in[1]);
    block_comment(e, o, arena_printf(&e->c->mem, "%s: a sample of the uniform mixture of %d Gaussians, the component "
                                     "chosen by %s (the mixture's mean where noise is NULL), [B x %d]", z, C, choice, n));
    put(e, "    for (int b = 0; b < B; b++) {\n");
    put(e, "        const jv_real *restrict m[%d], *restrict lv[%d];\n", C, C);
    put(e, "        int n = 0;\n");
    for (int c = 0; c < C; c++) {
        const char *cond = o->conds ? arena_printf(&e->c->mem, "if (%s) ", given_holds(e, o->conds[c])) : "";
        put(e, "        %s{\n            m[n] = %s + (size_t)b * %d;\n            lv[n++] = %s + (size_t)b * %d;\n        }\n",
            cond, N(e, o->in[2 + 2 * c]), n, N(e, o->in[3 + 2 * c]), n);
    }
    put(e, "        jv_real *restrict dst = %s + (size_t)b * %d;\n", z, n);
    put(e, "        if (!%s) {\n", eps);
    put(e, "            for (int j = 0; j < %d; j++) {\n                jv_real s = 0;\n", n);
    put(e, "                for (int c = 0; c < n; c++)\n                    s += m[c][j];\n");
    put(e, "                dst[j] = s / (jv_real)n;\n            }\n            continue;\n        }\n");
    put(e, "        /* the normal's distribution function makes it uniform in (0, 1) */\n");
    put(e, "        int c = (int)(0.5 * erfc(-(double)%s[b] * 0.70710678118654752) * n);\n", choice);
    put(e, "        c = c < n ? c : n - 1;\n");
    put(e, "        const jv_real *restrict noise_row = %s + (size_t)b * %d;\n", eps, n);
    binding vars[] = {{"m", "m[c][j]"}, {"lv", "lv[c][j]"}, {"eps", "noise_row[j]"}};
    put(e, "        JV_IVDEP\n        for (int j = 0; j < %d; j++)\n            dst[j] = %s;\n    }\n", n,
        c_formula(e, sample_formula.value, vars, 3));
}

static void emit_expand(emitter *e, const op *o)
{
    int n = W(e, o->out[0]), k = V(e, o->out[0])->copies;
    block_comment(e, o, arena_printf(&e->c->mem, "%s: %s's row of each example for each of its %d samples, [B x %d]",
                                     N(e, o->out[0]), N(e, o->in[0]), k, n));
    put(e, "    for (int b = 0; b < batch; b++)\n        for (int k = 0; k < %d; k++)\n", k);
    put(e, "            memcpy(%s + ((size_t)b * %d + (size_t)k) * %d, %s + (size_t)b * %d, sizeof(jv_real) * %d);\n",
        N(e, o->out[0]), k, n, N(e, o->in[0]), n, n);
}

static void emit_expand_grad(emitter *e, const op *o)
{
    int n = W(e, o->in[0]), k = V(e, o->in[0])->copies;
    if (o->out[0] < 0)
        return;
    block_comment(e, o, arena_printf(&e->c->mem, "backward of the expansion: %s %s the sum of %s over each example's %d "
                                     "samples", N(e, o->out[0]), assign(o->acc[0]), N(e, o->in[0]), k));
    put(e, "    for (int b = 0; b < batch; b++) {\n");
    put(e, "        jv_real *restrict dst = %s + (size_t)b * %d;\n", N(e, o->out[0]), n);
    put(e, "        const jv_real *restrict src = %s + (size_t)b * %d * %d;\n", N(e, o->in[0]), k, n);
    put(e, "        JV_IVDEP\n        for (int j = 0; j < %d; j++) {\n", n);
    put(e, "            jv_real s = 0;\n            for (int k = 0; k < %d; k++)\n", k);
    put(e, "                s += src[(size_t)k * %d + (size_t)j];\n", n);
    put(e, "            dst[j] %s s;\n        }\n    }\n", assign(o->acc[0]));
}

/* The weight of term t inside the bound's log weights: its hyper or number
 * (the loop's scale weighs the bound itself). */
static const char *raw_term_weight(emitter *e, int t)
{
    const sem_term *term = &e->p->m->terms[t];
    if (term->hyper >= 0)
        return arena_printf(&e->c->mem, "(hyper ? hyper[%d] : (jv_real)%.17g)", term->hyper,
                            e->p->m->hypers[term->hyper].value);
    return arena_printf(&e->c->mem, "(jv_real)%.17g", term->weight);
}

/* A group's importance-weighted bound: each sample's log weight is minus its
 * terms (weighted); the bound is minus the log of the weights' mean, and
 * each sample's normalised weight is kept for the gradients (the table's
 * logmeanexp). */
static void emit_iw_bound(emitter *e, const op *o)
{
    const sem_model *m = e->p->m;
    int k = V(e, o->out[1])->copies;
    block_comment(e, o, arena_printf(&e->c->mem, "%s: %s, with %s each sample's normalised weight", N(e, o->out[0]),
                                     o->what, N(e, o->out[1])));
    put(e, "    for (int b = 0; b < batch; b++) {\n");
    put(e, "        jv_real lw[%d], top = -INFINITY, total = 0;\n", k);
    put(e, "        for (int k = 0; k < %d; k++) {\n", k);
    put(e, "            const size_t r = (size_t)b * %d + (size_t)k;\n            lw[k] = 0", k);
    for (int j = 0; j < o->n_in; j++) {
        int t = term_of_value(e, o->in[j]);
        const char *w = t >= 0 && (m->terms[t].hyper >= 0 || m->terms[t].weight != 1)
                            ? arena_printf(&e->c->mem, "%s * ", raw_term_weight(e, t)) : "";
        put(e, " - %s%s[r]", w, N(e, o->in[j]));
    }
    put(e, ";\n        }\n");
    binding lv[] = {{"x", "lw[k]"}, {"top", "top"}, {"total", "total"}, {"n", arena_printf(&e->c->mem, "%d", k)},
                    {"result", "result"}};
    put(e, "        for (int k = 0; k < %d; k++)\n            top = %s;\n", k, c_formula(e, logmeanexp.larger, lv, 5));
    put(e, "        for (int k = 0; k < %d; k++)\n            total += %s;\n", k, c_formula(e, logmeanexp.term, lv, 5));
    put(e, "        const jv_real result = %s;\n", c_formula(e, logmeanexp.result, lv, 5));
    put(e, "        %s[b] = -result;\n", N(e, o->out[0]));
    put(e, "        for (int k = 0; k < %d; k++)\n            %s[(size_t)b * %d + (size_t)k] = %s;\n    }\n", k,
        N(e, o->out[1]), k, c_formula(e, logmeanexp.weight, lv, 5));
}

static void emit_zero_grad(emitter *e, const op *o)
{
    const tensor *t = &e->p->tensors[o->tensor];
    put(e, "\n    /* %s:%d  %s is %s: its gradient is 0 */\n", e->spec_name, o->line, t->name, o->what);
    put(e, "    memset(grads + %s, 0, sizeof(jv_real) * %d);\n", tensor_at(e, o->tensor, 0), t->rows * t->cols);
}

static void emit_op(emitter *e, const op *o, int noise_optional)
{
    switch (o->kind) {
    case OP_AFFINE: emit_affine(e, o); break;
    case OP_CONV: emit_conv(e, o); break;
    case OP_CONV_DX: emit_conv_dx(e, o); break;
    case OP_CONV_DW: emit_conv_dw(e, o); break;
    case OP_ADD: emit_add(e, o); break;
    case OP_GAUSS_HEAD: emit_gauss_head(e, o); break;
    case OP_SAMPLE: emit_sample(e, o, noise_optional); break;
    case OP_STD_SAMPLE: emit_std_sample(e, o); break;
    case OP_KL: emit_kl(e, o); break;
    case OP_LOGPDF: emit_logpdf(e, o); break;
    case OP_NLL: emit_nll(e, o); break;
    case OP_LOSS: emit_loss(e, o); break;
    case OP_DECODE_MEAN: emit_decode_mean(e, o); break;
    case OP_SEED: emit_seed(e, o); break;
    case OP_ACT_GRAD: emit_act_grad(e, o); break;
    case OP_GEMM_DX: emit_gemm_dx(e, o); break;
    case OP_GEMM_DW: emit_gemm_dw(e, o); break;
    case OP_GAUSS_HEAD_GRAD: emit_gauss_head_grad(e, o); break;
    case OP_SAMPLE_GRAD: emit_sample_grad(e, o); break;
    case OP_KL_GRAD: emit_kl_grad(e, o); break;
    case OP_LOGPDF_GRAD: emit_logpdf_grad(e, o); break;
    case OP_NLL_GRAD: emit_nll_grad(e, o); break;
    case OP_ADD_GRAD: emit_add_grad(e, o); break;
    case OP_ZERO_GRAD: emit_zero_grad(e, o); break;
    case OP_POE: emit_poe(e, o); break;
    case OP_POE_GRAD: emit_poe_grad(e, o); break;
    case OP_MIX_LOGPDF: emit_mix_logpdf(e, o); break;
    case OP_MIX_LOGPDF_GRAD: emit_mix_logpdf_grad(e, o); break;
    case OP_MIX_SAMPLE: emit_mix_sample(e, o); break;
    case OP_EXPAND: emit_expand(e, o); break;
    case OP_EXPAND_GRAD: emit_expand_grad(e, o); break;
    case OP_IW_BOUND: emit_iw_bound(e, o); break;
    }
}

/* ---------------------------------------------------------------- functions -- */

/* Declares the pointers of every value ops [from, to) touch. */
static void declare_values(emitter *e, int from, int to)
{
    const graph *g = e->g;
    char *used = calloc((size_t)g->n_values + 1, 1);
    for (int i = from; i < to; i++) {
        const op *o = &g->ops[i];
        for (int j = 0; j < o->n_in; j++)
            if (o->in[j] >= 0)
                used[o->in[j]] = 1;
        for (int j = 0; j < o->n_out; j++)
            if (o->out[j] >= 0)
                used[o->out[j]] = 1;
    }
    for (int v = 0; v < g->n_values; v++) {
        if (!used[v])
            continue;
        const value *val = V(e, v);
        const char *shape_comment = val->shape.h ? arena_printf(&e->c->mem, "/* [B x %d x %d x %d] */", val->shape.c,
                                                                val->shape.h, val->shape.w) :
                                    val->copies > 1 ? arena_printf(&e->c->mem, "/* [B x %d]: %d samples of each "
                                                                   "example */", val->width, val->copies)
                                                    : arena_printf(&e->c->mem, "/* [B x %d] */", val->width);
        switch (val->kind) {
        case V_ARENA:
            put(e, "    jv_real *const %s = arena + (size_t)%s * %ld; %s\n", val->name, e->batch, val->offset, shape_comment);
            break;
        case V_DATA:
            put(e, "    const jv_real *const %s = data[%d]; %s\n", val->name, val->index, shape_comment);
            break;
        case V_NOISE:
            put(e, "    const jv_real *const %s = %s; %s\n", val->name,
                arena_printf(&e->c->mem, g->has_backward ? "noise[%d]" : "noise ? noise[%d] : NULL", val->index), shape_comment);
            break;
        case V_LATENT_IN:
            put(e, "    const jv_real *const %s = latents[%d]; %s\n", val->name, val->index, shape_comment);
            break;
        case V_LATENT_OUT:
            put(e, "    jv_real *const %s = latents[%d]; %s\n", val->name, val->index, shape_comment);
            break;
        case V_LOG_Q:
            put(e, "    jv_real *const %s = log_q; /* [B] */\n", val->name);
            break;
        case V_LOG_PRIOR:
            put(e, "    jv_real *const %s = log_prior; /* [B] */\n", val->name);
            break;
        case V_LOG_LIK:
            put(e, "    jv_real *const %s = log_lik[%d]; /* [B] */\n", val->name, val->index);
            break;
        case V_OUT:
            put(e, "    jv_real *const %s = out[%d]; %s\n", val->name, val->index, shape_comment);
            break;
        }
    }
    free(used);
}

static const char *const sig_params = "const jv_real *params, jv_real *arena, int batch";

static int is_posterior(const graph *g)
{
    return g->kind == G_POSTERIOR;
}

/* A training graph's functions are forward and backward; those of an
 * observed subset's (graph train_x) forward_x and backward_x. */
static const char *step_suffix(const graph *g)
{
    return g->name + strlen("train");
}

/* backward: 0 the forward (for a posterior, its _repeated form), 1 the
 * backward, 2 a posterior's plain form. */
static const char *signature(emitter *e, const graph *g, int backward)
{
    const char *p = e->prefix;
    if (g->has_backward && !backward)
        return arena_printf(&e->c->mem,
                            "jv_real %s_forward%s(%s,\n    const jv_real *const *data, const jv_real *const *noise, const jv_real *hyper,\n"
                            "    const jv_real *jv_term_scale, jv_real *terms)", p, step_suffix(g), sig_params);
    if (g->has_backward)
        return arena_printf(&e->c->mem,
                            "void %s_backward%s(const jv_real *params, jv_real *grads, jv_real *arena, int batch,\n"
                            "    const jv_real *const *data, const jv_real *const *noise, const jv_real *hyper,\n"
                            "    const jv_real *jv_term_scale)", p, step_suffix(g));
    const char *given = g->given ? " unsigned given," : "";
    if (is_posterior(g) && backward == 2)
        return arena_printf(&e->c->mem,
                            "void %s_%s(%s,%s\n    const jv_real *const *data, const jv_real *const *noise, jv_real *const *latents,\n"
                            "    jv_real *log_q)", p, g->name, sig_params, given);
    if (is_posterior(g))
        return arena_printf(&e->c->mem,
                            "void %s_%s_repeated(%s, int copies,%s\n    const jv_real *const *data, const jv_real *const *noise,\n"
                            "    jv_real *const *latents, jv_real *log_q)", p, g->name, sig_params, given);
    if (g->kind == G_LOG_JOINT)
        return arena_printf(&e->c->mem,
                            "void %s_log_joint(%s,\n    const jv_real *const *data, const jv_real *const *latents,\n"
                            "    jv_real *log_prior, jv_real *const *log_lik, unsigned which)", p, sig_params);
    if (g->kind == G_DECODE)
        return arena_printf(&e->c->mem, "void %s_decode(%s,\n    const jv_real *const *latents, jv_real *const *out)", p,
                            sig_params);
    return arena_printf(&e->c->mem, "void %s_sample_prior(%s,\n    const jv_real *const *noise, jv_real *const *latents)", p,
                        sig_params);
}

/* Marks unused parameters of a signature as used, so -Wextra stays quiet. */
static void silence_unused(emitter *e, const graph *g)
{
    if (g->has_backward) {
        put(e, "    (void)hyper;\n    (void)jv_term_scale;\n    (void)noise;\n    (void)data;\n");
    } else if (is_posterior(g)) {
        put(e, "    (void)noise;\n");
        if (g->given)
            put(e, "    (void)given;\n");
    } else if (g->kind == G_LOG_JOINT) {
        put(e, "    (void)data;\n    (void)log_lik;\n    (void)which;\n");
    } else if (g->kind == G_DECODE) {
        put(e, "    (void)out;\n");
    }
}

static int reads(const op *o, int v)
{
    for (int j = 0; j < o->n_in; j++)
        if (o->in[j] == v)
            return 1;
    return 0;
}

/* Which ops of a posterior graph can run once per example when the data
 * rows come in runs of equal rows: the layers and heads that read data
 * alone. A value such an op makes is expanded to every row right after it
 * when an op on all rows reads it; an op that would read it compact after
 * that runs on all rows too (and so on, to a fixed point). */
static void mark_compact(emitter *e, const graph *g)
{
    e->compact = arena_alloc(&e->c->mem, (size_t)g->n_ops + 1);
    e->expand = arena_alloc(&e->c->mem, (size_t)g->n_values + 1);
    char *compact_value = arena_alloc(&e->c->mem, (size_t)g->n_values + 1);
    char *demoted = arena_alloc(&e->c->mem, (size_t)g->n_ops + 1);
    for (int changed = 1; changed;) {
        changed = 0;
        memset(compact_value, 0, (size_t)g->n_values);
        for (int i = 0; i < g->n_ops; i++) {
            const op *o = &g->ops[i];
            int ok = !demoted[i] && (o->kind == OP_AFFINE || o->kind == OP_ADD || o->kind == OP_GAUSS_HEAD ||
                                     o->kind == OP_POE || o->kind == OP_CONV);
            for (int j = 0; j < o->n_in && ok; j++)
                ok = o->in[j] >= 0 && (g->values[o->in[j]].kind == V_DATA || compact_value[o->in[j]]);
            e->compact[i] = (char)ok;
            for (int j = 0; j < o->n_out && ok; j++)
                compact_value[o->out[j]] = 1;
        }
        for (int v = 0; v < g->n_values; v++) {
            int full_reader = 0;
            for (int i = 0; i < g->n_ops && compact_value[v]; i++)
                full_reader |= !e->compact[i] && reads(&g->ops[i], v);
            for (int i = 0; i < g->n_ops && full_reader; i++)
                if (e->compact[i] && reads(&g->ops[i], v)) {
                    demoted[i] = 1;
                    changed = 1;
                }
        }
    }
    for (int v = 0; v < g->n_values; v++)
        for (int i = 0; i < g->n_ops && compact_value[v]; i++)
            if (!e->compact[i] && reads(&g->ops[i], v))
                e->expand[v] = 1;
}

/* An op's block inside `if (test) { ... }`, one level deeper: `which &
 * bits` (log_joint: any of the modalities asked for), or, in a posterior
 * given a subset, the subset holds all of bits. */
static void emit_op_guarded(emitter *e, const op *o, unsigned bits)
{
    const char *test = e->g->given ? given_holds(e, bits) : arena_printf(&e->c->mem, "which & 0x%xu", bits);
    char *text = NULL;
    size_t len = 0;
    FILE *saved = e->out;
    e->out = open_memstream(&text, &len);
    if (!e->out) {
        e->out = saved;
        put(e, "    if (%s) {\n", test);
        emit_op(e, o, 1);
        put(e, "    }\n");
        return;
    }
    emit_op(e, o, 1);
    fclose(e->out);
    e->out = saved;
    const char *p = text;
    while (*p == '\n')
        p++;
    put(e, "\n    if (%s) { /*", test);
    for (int m = 0; m < e->p->m->n_modalities; m++)
        if (bits & (1u << m))
            put(e, " %s", e->p->m->modalities[m].name);
    put(e, " */\n");
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        put(e, n ? "    %.*s\n" : "%.*s\n", (int)n, p);
        p += n + (nl != NULL);
    }
    put(e, "    }\n");
    free(text);
}

static void emit_function(emitter *e, const graph *g, int backward)
{
    e->g = g;
    int from = backward ? g->n_forward : 0, to = g->has_backward && !backward ? g->n_forward : g->n_ops;
    int repeated = is_posterior(g);
    put(e, "\n/* %s%s */\nJV_TASK %s\n{\n", g->purpose, backward ? " (backward; run after forward with the same arguments)" : "",
        signature(e, g, backward));
    put(e, "    const int B = batch;\n");
    if (repeated) {
        put(e, "    copies = copies > 1 ? copies : 1;\n");
        put(e, "    const int U = B / copies; /* examples: the layers that read data alone run once for each */\n");
        mark_compact(e, g);
    }
    put(e, "    (void)params;\n    (void)arena;\n");
    declare_values(e, from, to);
    silence_unused(e, g);
    unsigned *wanted = NULL;
    if (g->kind == G_LOG_JOINT) {
        for (int m = 0; m < e->p->m->n_modalities; m++)
            if (e->p->likelihood_net[m] < 0)
                put(e, "    if (which & 0x%xu)\n        memset(log_lik[%d], 0, sizeof(jv_real) * (size_t)B); /* %s has no decoder */\n",
                    1u << m, m, e->p->m->modalities[m].name);
        wanted = ops_wanted_by(&e->c->mem, g);
    }
    for (int i = from; i < to; i++) {
        const op *o = &g->ops[i];
        e->rows = repeated && e->compact[i] ? "U" : "B";
        if (wanted && wanted[i] != WANTED_BY_PRIOR)
            emit_op_guarded(e, o, wanted[i]);
        else if (o->guard)
            emit_op_guarded(e, o, o->guard);
        else
            emit_op(e, o, !g->has_backward);
        for (int j = 0; repeated && e->compact[i] && j < o->n_out; j++)
            if (e->expand[o->out[j]])
                put(e, "    jv_expand_rows(%s, U, copies, %d); /* to every row of its run */\n", N(e, o->out[j]),
                    W(e, o->out[j]));
    }
    put(e, "}\n");
    e->rows = "B";
    if (repeated) { /* the plain entry point: every row its own example */
        put(e, "\n/* %s */\n%s\n{\n", g->purpose, signature(e, g, 2));
        put(e, "    %s_%s_repeated(params, arena, batch, 1,%s data, noise, latents, log_q);\n}\n", e->prefix, g->name,
            g->given ? " given," : "");
    }
}

/* ------------------------------------------------------------------ tasks -- */

/* What a task's code refers to besides its values. */
typedef struct {
    int params, grads, hyper, term_scale, seed;
} task_needs;

static int per_example_grad(const op *o)
{
    return (o->kind == OP_KL_GRAD || o->kind == OP_LOGPDF_GRAD || o->kind == OP_NLL_GRAD ||
            o->kind == OP_MIX_LOGPDF_GRAD) && o->term >= 0;
}

static task_needs needs_of(emitter *e, const op *o, int slot)
{
    const sem_model *m = e->p->m;
    task_needs n = {0};
    n.params = o->kind == OP_AFFINE || o->kind == OP_GEMM_DX || o->kind == OP_CONV || o->kind == OP_CONV_DX;
    n.grads = slot >= 0 || (o->kind == OP_ACT_GRAD && o->bias >= 0) || o->kind == OP_GEMM_DW ||
              o->kind == OP_CONV_DW || o->kind == OP_ZERO_GRAD;
    n.seed = per_example_grad(o);
    n.term_scale = o->kind == OP_LOSS || n.seed;
    if (o->kind == OP_LOSS)
        for (int t = 0; t < m->n_terms; t++)
            n.hyper |= m->terms[t].hyper >= 0 && term_counts(e, t);
    for (int j = 0; o->kind == OP_IW_BOUND && j < o->n_in; j++) { /* the bound weighs its terms */
        int t = term_of_value(e, o->in[j]);
        n.hyper |= t >= 0 && m->terms[t].hyper >= 0;
    }
    if (n.seed)
        n.hyper = m->terms[o->term].hyper >= 0;
    return n;
}

/* "t07_affine_enc_x_h1": the task's index, its op and what it makes. */
static const char *task_name(emitter *e, const graph *g, int k)
{
    const op *o = &g->ops[g->tasks->op[k]];
    const char *what = "";
    if (o->n_out > 0 && o->out[0] >= 0)
        what = N(e, o->out[0]);
    else if (o->tensor >= 0 && (o->kind == OP_GEMM_DW || o->kind == OP_ZERO_GRAD))
        what = e->p->tensors[o->tensor].name;
    else if (o->kind == OP_ACT_GRAD)
        what = N(e, o->in[0]);
    char *name = arena_printf(&e->c->mem, "%s%st%02d_%s%s%s%s", g->subset ? g->name : "", g->subset ? "_" : "", k,
                              op_kind_name(o->kind), *what ? "_" : "", what,
                              o->parts > 1 ? arena_printf(&e->c->mem, "_part%d", o->part + 1) : "");
    for (char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c))
            *c = '_';
    return name;
}

static void emit_task(emitter *e, const graph *g, int k)
{
    const task_graph *t = g->tasks;
    int i = t->op[k];
    const op *o = &g->ops[i];
    task_needs need = needs_of(e, o, t->slot[k]);
    put(e, "\nJV_TASK static void %s(const jv_step *jv_s)\n{\n", task_name(e, g, k));
    int copies = op_copies(e, o);
    e->batch = "B";
    if (copies > 1) {
        put(e, "    const int batch = jv_s->batch;\n");
        put(e, "    const int B = batch * %d; /* rows: %d samples of each example */\n", copies, copies);
        if (o->kind == OP_EXPAND || o->kind == OP_EXPAND_GRAD || o->kind == OP_IW_BOUND)
            put(e, "    (void)B;\n");
        e->batch = "batch";
    } else if (o->kind != OP_ZERO_GRAD) { /* the one block that does not depend on the batch */
        put(e, "    const int B = jv_s->batch;\n");
    }
    int arena_used = 0, data_used = 0, noise_used = 0;
    for (int j = 0; j < o->n_in + o->n_out; j++) {
        int v = j < o->n_in ? o->in[j] : o->out[j - o->n_in];
        if (v < 0)
            continue;
        arena_used |= V(e, v)->kind == V_ARENA;
        data_used |= V(e, v)->kind == V_DATA;
        noise_used |= V(e, v)->kind == V_NOISE;
    }
    if (need.params)
        put(e, "    const jv_real *const params = jv_s->params;\n");
    if (need.grads)
        put(e, "    jv_real *const grads = jv_s->grads;\n");
    if (arena_used)
        put(e, "    jv_real *const arena = jv_s->arena;\n");
    if (data_used)
        put(e, "    const jv_real *const *const data = jv_s->data;\n");
    if (noise_used)
        put(e, "    const jv_real *const *const noise = jv_s->noise;\n");
    if (need.hyper)
        put(e, "    const jv_real *const hyper = jv_s->hyper;\n");
    if (need.term_scale)
        put(e, "    const jv_real *const jv_term_scale = jv_s->term_scale;\n");
    declare_values(e, i, i + 1);
    if (need.seed) {
        const sem_term *term = &e->p->m->terms[o->term];
        put(e, "    const jv_real jv_seed_%s = (jv_term_scale ? jv_term_scale[%d] : 1) * %s / (jv_real)%s; /* d loss / d %s, per example */\n",
            term->cname, o->term, term_weight(e, o->term), e->batch, term->name);
    }
    emit_op(e, o, 0);
    e->batch = "B";
    long first, count;
    if (t->slot[k] >= 0 && op_grad_region(e->p, g, o, &first, &count)) {
        put(e, "    if (jv_s->sumsq) /* gradient region %d, for the norm */\n", t->slot[k]);
        if (o->kind == OP_ZERO_GRAD)
            put(e, "        jv_s->sumsq[%d] = 0;\n", t->slot[k]);
        else
            put(e, "        jv_s->sumsq[%d] = jv_sumsq(grads + %s, %ld);\n", t->slot[k],
                o->kind == OP_ACT_GRAD ? tensor_at(e, o->bias, 0)
                                       : tensor_at(e, o->tensor, first - e->p->tensors[o->tensor].offset), count);
    }
    put(e, "}\n");
}

/* The training graph: its tasks, their table, and forward and backward,
 * which run the tasks in order. */
static void emit_tasks(emitter *e, const graph *g)
{
    const task_graph *t = g->tasks;
    const char *pre = e->prefix;
    e->g = g;
    e->rows = "B";
    put(e, "\n/* ------------------------------------------------------------ the step -- */\n");
    if (g->subset)
        put(e, "\n/* The training step of examples that observe only %s as %d tasks, the first %d\n",
            g->name + strlen("train_"), t->n, t->n_forward);
    else
        put(e, "\n/* The training step (the loss and its gradient) as %d tasks, the first %d\n", t->n, t->n_forward);
    put(e, " * the forward pass. Each task is one block of the step. %s_%s_tasks\n", pre, g->name);
    put(e, " * lists, for each, its name and spec line, how many tasks it waits for, the\n");
    put(e, " * tasks waiting for it, and its rank: the estimated microseconds from its\n");
    put(e, " * start to the end of the step at a batch of 100 (the runtime runs the ready\n");
    put(e, " * task of highest rank first). A task waits for every earlier one that\n");
    put(e, " * touches the same buffer or gradient rows when either writes them, so\n");
    put(e, " * every order the runtime may pick computes the same bits. */\n");
    for (int k = 0; k < t->n; k++)
        emit_task(e, g, k);
    put(e, "\nstatic const int %s_%s_succ[] = {", pre, g->name);
    int total = 0;
    for (int k = 0; k < t->n; k++)
        for (int j = 0; j < t->n_succ[k]; j++)
            put(e, "%s%d", total++ ? ", " : "", t->succ[k][j]);
    put(e, "%s};\n", total ? "" : "0");
    put(e, "\n/* The parameters each task reads, as gradient regions (below): the runtime may\n");
    put(e, " * update a region (Adam) inside the next step, before the tasks that read it. */\n");
    put(e, "static const int %s_%s_reads[] = {", pre, g->name);
    int n_reads = 0;
    for (int k = 0; k < t->n; k++)
        for (int j = 0; j < t->n_reads[k]; j++)
            put(e, "%s%d", n_reads++ ? ", " : "", t->reads[k][j]);
    put(e, "%s};\n", n_reads ? "" : "0");
    put(e, "\n/* The gradient regions {first, count, the task writing it}, in reals: together\n");
    put(e, " * the whole block, each real once. */\nstatic const jv_region %s_%s_slots[] = {\n", pre, g->name);
    for (int r = 0; r < t->n_slots; r++)
        for (int k = 0; k < t->n; k++)
            if (t->slot[k] == r)
                put(e, "    {%ld, %ld, %d}, /* %s */\n", t->slot_first[r], t->slot_count[r], k, task_name(e, g, k));
    put(e, "};\n");
    put(e, "\n/* {function, name, spec line, tasks it waits for, first of the tasks waiting for it and\n");
    put(e, " * their number, first of the regions it reads and their number, rank} */\n");
    put(e, "static const jv_task %s_%s_tasks[] = {\n", pre, g->name);
    int at = 0, read_at = 0;
    for (int k = 0; k < t->n; k++) {
        const char *name = task_name(e, g, k);
        put(e, "    {%s, \"%s\", %d, %d, %d, %d, %d, %d, %.1ff},\n", name, name, g->ops[t->op[k]].line, t->n_pred[k],
            at, t->n_succ[k], read_at, t->n_reads[k], t->rank[k]);
        at += t->n_succ[k];
        read_at += t->n_reads[k];
    }
    put(e, "};\n");
    const char *gn = g->name;
    put(e, "\nstatic const jv_task_graph %s_%s_graph = {%d, %d, %s_%s_tasks, %s_%s_succ, %d, %s_%s_slots,\n"
           "    %s_%s_reads};\n", pre, gn, t->n, t->n_forward, pre, gn, pre, gn, t->n_slots, pre, gn, pre, gn);
    put(e, "\n/* %s */\n%s\n{\n", g->purpose, signature(e, g, 0));
    put(e, "    jv_real jv_loss = 0;\n");
    put(e, "    const jv_step jv_s = {params, NULL, arena, batch, data, noise, hyper, jv_term_scale, terms, &jv_loss, NULL, 0};\n");
    put(e, "    jv_run_tasks(&%s_%s_graph, &jv_s, 0, %d);\n    return jv_loss;\n}\n", pre, gn, t->n_forward);
    put(e, "\n/* %s (backward; run after forward with the same arguments) */\n%s\n{\n", g->purpose, signature(e, g, 1));
    put(e, "    const jv_step jv_s = {params, grads, arena, batch, data, noise, hyper, jv_term_scale, NULL, NULL, NULL, 0};\n");
    put(e, "    jv_run_tasks(&%s_%s_graph, &jv_s, %d, %d);\n}\n", pre, gn, t->n_forward, t->n);
}

/* ------------------------------------------------------------------ header -- */

static const char *upper(emitter *e, const char *s)
{
    char *u = arena_strndup(&e->c->mem, s, strlen(s));
    for (char *t = u; *t; t++)
        *t = (char)(*t == '.' ? '_' : toupper((unsigned char)*t));
    return u;
}

static void emit_header(emitter *e)
{
    const program *p = e->p;
    const sem_model *m = p->m;
    const char *P = e->upper, *pre = e->prefix;
    put(e, "/* %s.h: generated by jmvaec from %s. Do not edit: change the spec and recompile.\n *\n", pre, e->spec_name);
    put(e, " * Memory is the caller's: a parameter block (and gradient block) of %s_N_PARAMS\n", P);
    put(e, " * reals, and an arena of %s_ARENA_REALS(batch) reals that every function below\n", P);
    put(e, " * uses as scratch. Data, noise and latents are row-major [batch x size].\n");
    put(e, " * jv_real is float, or double when compiled with -DJV_DOUBLE. */\n");
    put(e, "#ifndef %s_H\n#define %s_H\n\n#include \"jv_model.h\"\n\n", P, P);
    put(e, "#define %s_N_PARAMS %ld\n", P, p->n_params);
    put(e, "#define %s_N_MODALITIES %d\n", P, m->n_modalities);
    for (int i = 0; i < m->n_modalities; i++)
        put(e, "#define %s_%s_SIZE %d /* modality %d, %s */\n", P, upper(e, m->modalities[i].name), m->modalities[i].size, i,
            likelihood_table[m->modalities[i].likelihood].name);
    put(e, "#define %s_N_LATENTS %d\n", P, m->n_latents);
    for (int i = 0; i < m->n_latents; i++)
        put(e, "#define %s_%s_SIZE %d /* latent %d */\n", P, upper(e, m->latents[i].name), m->latents[i].size, i);
    put(e, "#define %s_N_TERMS %d\n", P, m->n_terms);
    for (int i = 0; i < m->n_terms; i++)
        put(e, "#define %s_TERM_%s %d\n", P, upper(e, m->terms[i].cname), i);
    put(e, "#define %s_N_HYPERS %d\n", P, m->n_hypers);
    put(e, "/* the activation arena: reals per example of the batch, and in all */\n");
    put(e, "#define %s_ARENA_PER_EXAMPLE %ld\n", P, p->arena_per_example);
    put(e, "#define %s_ARENA_REALS(batch) ((size_t)(batch) * %s_ARENA_PER_EXAMPLE)\n\n", P, P);
    put(e, "/* Parameter layout: offsets in reals into the parameter block (the gradient\n");
    put(e, " * and Adam moment blocks use the same layout). Weights are [inputs x outputs],\n");
    put(e, " * row-major; a layer computes y = act(x W + b). */\n");
    for (int t = 0; t < p->n_tensors; t++) {
        const tensor *ts = &p->tensors[t];
        if (ts->shape[0])
            put(e, "#define %s_%s %ld /* [%d x %d x %d x %d] */\n", P, upper(e, ts->name), ts->offset, ts->shape[0],
                ts->shape[1], ts->shape[2], ts->shape[3]);
        else
            put(e, "#define %s_%s %ld /* [%d x %d] */\n", P, upper(e, ts->name), ts->offset, ts->rows, ts->cols);
    }
    put(e, "\n/* The model for the trainer: sizes, layout and the functions below. */\n");
    put(e, "extern const jv_model %s_model;\n\n", pre);
    put(e, "/* Initialisation: every weight W [fan_in x fan_out] is Glorot-uniform,\n");
    put(e, " * U(-a, a) with a = sqrt(6 / (fan_in + fan_out)); every bias is 0. Element i\n");
    put(e, " * of tensor t is drawn from position i of stream t of the counter-based\n");
    put(e, " * generator of jv_model.h, so the result depends on the seed alone. */\n");
    put(e, "void %s_init(jv_real *params, uint64_t seed);\n", pre);
    for (int i = 0; i < p->n_graphs; i++) {
        const graph *g = p->graphs[i];
        put(e, "/* %s */\n%s;\n", g->purpose, signature(e, g, 0));
        if (is_posterior(g))
            put(e, "/* the same, every row its own example */\n%s;\n", signature(e, g, 2));
        if (g->given)
            put(e, "/* whether it has q(latent | given) for every latent */\nint %s_%s_covers(unsigned given);\n",
                pre, g->name);
        if (g->has_backward)
            put(e, "/* the gradient of the loss forward returns, written to grads */\n%s;\n", signature(e, g, 1));
    }
    put(e, "/* The gradient check in double precision (%s_f64.c): DIR/%s gradcheck. */\n", pre, pre);
    put(e, "int %s_gradcheck(int argc, char **argv);\n\n#endif\n", pre);
}

/* ------------------------------------------------------------- descriptor -- */

static void emit_init(emitter *e)
{
    const program *p = e->p;
    put(e, "\nvoid %s_init(jv_real *params, uint64_t seed)\n{\n", e->prefix);
    put(e, "    for (int t = 0; t < %s_model.n_tensors; t++) {\n", e->prefix);
    put(e, "        const jv_tensor_info *info = &%s_model.tensors[t];\n", e->prefix);
    put(e, "        size_t n = (size_t)info->rows * (size_t)info->cols;\n");
    put(e, "        jv_real *w = params + info->offset;\n");
    put(e, "        if (info->is_bias) {\n");
    put(e, "            memset(w, 0, sizeof(jv_real) * n);\n            continue;\n        }\n");
    put(e, "        double a = jv_glorot_bound(info);\n");
    put(e, "        for (size_t i = 0; i < n; i++)\n");
    put(e, "            w[i] = (jv_real)((2 * jv_uniform_at(seed, (uint64_t)t, i) - 1) * a);\n");
    put(e, "    }\n}\n");
    (void)p;
}

static const char *c_string(emitter *e, const char *s)
{
    return arena_printf(&e->c->mem, "\"%s\"", s); /* spec names are identifiers: nothing to escape */
}

/* Whether a family given a subset has a posterior of every latent for
 * `given`: the subset must be a union of the modalities of each rule's
 * experts. */
static void emit_covers(emitter *e, const graph *g)
{
    const sem_model *m = e->p->m;
    put(e, "\n/* 1 when %s_%s has q(latent | given) for every latent: `given` is, for each\n"
           " * latent, a union of its experts' modalities */\n", e->prefix, g->name);
    put(e, "int %s_%s_covers(unsigned given)\n{\n    unsigned made;\n", e->prefix, g->name);
    put(e, "    if (given == 0 || (given & ~0x%xu) != 0)\n        return 0;\n", g->family_condition);
    for (int l = 0; l < m->n_latents; l++) {
        if (m->latents[l].rule < 0)
            continue;
        const sem_rule *r = &m->rules[m->latents[l].rule];
        put(e, "    made = 0; /* %s */\n", m->latents[l].name);
        for (int i = 0; i < r->n_experts; i++) {
            unsigned bits = m->posteriors[r->experts[i]].condition;
            put(e, "    if (%s)\n        made |= 0x%xu;\n", given_holds(e, bits), bits);
        }
        put(e, "    if (made != given)\n        return 0;\n");
    }
    put(e, "    return 1;\n}\n");
}

static void emit_descriptor(emitter *e)
{
    const program *p = e->p;
    const sem_model *m = p->m;
    const char *pre = e->prefix;
    put(e, "\n/* ------------------------------------------------------- descriptor -- */\n\n");
    put(e, "static const jv_modality_info %s_modalities[] = {\n", pre);
    for (int i = 0; i < m->n_modalities; i++)
        put(e, "    {%s, %d, %s, %d, %d, %d},\n", c_string(e, m->modalities[i].name), m->modalities[i].size,
            likelihood_table[m->modalities[i].likelihood].runtime, m->modalities[i].channels == 1 ? m->modalities[i].height : 0,
            m->modalities[i].channels == 1 ? m->modalities[i].width : 0, /* images the trainer draws: grey ones */
            p->likelihood_net[i] >= 0);
    put(e, "};\n\n/* {name, size, whether a posterior of it is a mixture (its sample then reads\n"
           " * noise[n_latents + latent], one normal a row, to choose the component)} */\n");
    put(e, "static const jv_latent_info %s_latents[] = {\n", pre);
    for (int i = 0; i < m->n_latents; i++) {
        int mixture = 0;
        for (int f = 0; f < m->n_families; f++)
            mixture |= !posterior_is_gaussian(m, m->families[f].posts[i]);
        put(e, "    {%s, %d, %d},\n", c_string(e, m->latents[i].name), m->latents[i].size, mixture);
    }
    put(e, "};\n\nstatic const jv_tensor_info %s_tensors[] = {\n", pre);
    for (int t = 0; t < p->n_tensors; t++) {
        const tensor *ts = &p->tensors[t];
        put(e, "    {%s, %d, %d, %ld, %d", c_string(e, ts->name), ts->rows, ts->cols, ts->offset, ts->is_bias);
        put(e, ", {%d, %d, %d, %d}},\n", ts->shape[0], ts->shape[1], ts->shape[2], ts->shape[3]);
    }
    put(e, "};\n\n");
    if (m->n_hypers) {
        put(e, "static const jv_hyper_info %s_hypers[] = {\n", pre);
        for (int i = 0; i < m->n_hypers; i++)
            put(e, "    {%s, %.17g, %.17g, %.17g},\n", c_string(e, m->hypers[i].name), m->hypers[i].value,
                m->hypers[i].warmup_from, m->hypers[i].warmup_epochs);
        put(e, "};\n\n");
    }
    put(e, "static const char *const %s_term_names[] = {", pre);
    for (int t = 0; t < m->n_terms; t++)
        put(e, "%s%s", t ? ", " : "", c_string(e, m->terms[t].name));
    put(e, "};\n\n/* each term's weight: a hyper (its index) or a number, and the scale of its\n"
           " * loop (1 / its instances in a `mean` loop) */\n");
    put(e, "static const jv_term_weight %s_term_weights[] = {\n", pre);
    for (int t = 0; t < m->n_terms; t++)
        put(e, "    {%d, %.17g, %.17g}, /* %s */\n", m->terms[t].hyper,
            m->terms[t].hyper >= 0 ? m->hypers[m->terms[t].hyper].value : m->terms[t].weight, m->terms[t].scale,
            m->terms[t].name);
    put(e, "};\n\nstatic const jv_family_info %s_families[] = {\n", pre);
    for (int f = 0; f < p->n_families; f++) {
        const graph *g = p->families[f];
        const char *names = ""; /* "x,w", of any length */
        for (int i = 0; i < m->n_modalities; i++)
            if (g->family_condition & (1u << i))
                names = arena_printf(&e->c->mem, "%s%s%s", names, *names ? "," : "", m->modalities[i].name);
        if (g->given)
            put(e, "    {%s, 0x%xu, NULL, NULL, %s_%s_covers, %s_%s_repeated},\n", c_string(e, names), g->family_condition,
                pre, g->name, pre, g->name);
        else
            put(e, "    {%s, 0x%xu, %s_%s, %s_%s_repeated, NULL, NULL},\n", c_string(e, names), g->family_condition, pre,
                g->name, pre, g->name);
    }
    put(e, "};\n\n");
    put(e, "/* the training step's noise: noise[d] is [batch x the size of latent draw_latents[d]] */\n");
    put(e, "static const int %s_draw_latents[] = {", pre);
    for (int d = 0; d < m->n_draws; d++)
        put(e, "%s%d", d ? ", " : "", m->draws[d].latent);
    put(e, "};\n\n");
    int n_steps = 0;
    for (int i = 0; i < p->n_graphs; i++)
        n_steps += p->graphs[i]->subset != NULL;
    if (n_steps) {
        put(e, "/* the training step of examples that observe only some modalities: {observed (bit m:\n"
               " * modality m), forward, its tasks, backward}; other subsets contribute nothing */\n");
        put(e, "static const jv_subset_step %s_subset_steps[] = {\n", pre);
        for (int i = 0; i < p->n_graphs; i++) {
            const graph *g = p->graphs[i];
            if (g->subset)
                put(e, "    {0x%x, %s_forward%s, &%s_%s_graph, %s_backward%s}, /* %s */\n", g->subset->observed, pre,
                    step_suffix(g), pre, g->name, pre, step_suffix(g), g->name + strlen("train_"));
        }
        put(e, "};\n\n");
    }
    const sem_train *t = &m->train;
    put(e, "const jv_model %s_model = {\n", pre);
    put(e, "    .name = %s,\n", c_string(e, pre));
    put(e, "    .fingerprint = 0x%016llxull,\n", m->fingerprint);
    put(e, "    .n_modalities = %d,\n    .modalities = %s_modalities,\n", m->n_modalities, pre);
    put(e, "    .n_latents = %d,\n    .latents = %s_latents,\n", m->n_latents, pre);
    put(e, "    .n_tensors = %d,\n    .tensors = %s_tensors,\n", p->n_tensors, pre);
    put(e, "    .n_params = %ld,\n", p->n_params);
    put(e, "    .n_hypers = %d,\n    .hypers = %s,\n", m->n_hypers, m->n_hypers ? arena_printf(&e->c->mem, "%s_hypers", pre) : "NULL");
    put(e, "    .n_terms = %d,\n    .term_names = %s_term_names,\n    .term_weights = %s_term_weights,\n", m->n_terms,
        pre, pre);
    put(e, "    .defaults = {%.17g, %.17g, %.17g, %.17g, %.17g, %ld, %ld, %ld},\n", t->lr, t->beta1, t->beta2, t->eps,
        t->clip, t->batch, t->epochs, t->seed);
    put(e, "    .arena_per_example = %ld,\n", p->arena_per_example);
    put(e, "    .n_families = %d,\n    .families = %s_families,\n", p->n_families, pre);
    put(e, "    .training_family = %d,\n", p->training_family);
    put(e, "    .n_draws = %d,\n    .draw_latents = %s_draw_latents,\n", m->n_draws, pre);
    put(e, "    .samples = %ld,\n    .dreg = %d,\n", m->train.samples, m->train.gradient == GRADIENT_DREG);
    put(e, "    .init = %s_init,\n    .forward = %s_forward,\n    .train = &%s_train_graph,\n    .backward = %s_backward,\n",
        pre, pre, pre, pre);
    put(e, "    .incomplete = %d,\n    .n_subset_steps = %d,\n    .subset_steps = %s,\n", m->n_subsets > 0, n_steps,
        n_steps ? arena_printf(&e->c->mem, "%s_subset_steps", pre) : "NULL");
    put(e, "    .log_joint = %s_log_joint,\n    .decode = %s_decode,\n    .sample_prior = %s_sample_prior,\n", pre, pre, pre);
    put(e, "};\n");
}

static void emit_source(emitter *e)
{
    const program *p = e->p;
    put(e, "/* %s.c: generated by jmvaec from %s. Do not edit: change the spec and recompile.\n *\n", e->prefix, e->spec_name);
    put(e, " * Straight-line forward and backward passes. Each block names the spec line\n");
    put(e, " * it comes from; shapes are [B x width] with B the batch. Arena offsets are\n");
    put(e, " * planned so that buffers whose lifetimes do not overlap share memory. */\n");
    put(e, "#include <math.h>\n#include <string.h>\n\n#include \"%s.h\"\n", e->prefix);
    put(e, "\nextern const jv_model %s_model;\n", e->prefix);
    emit_init(e);
    for (int i = 0; i < p->n_graphs; i++) {
        if (p->graphs[i]->tasks)
            emit_tasks(e, p->graphs[i]);
        else
            emit_function(e, p->graphs[i], 0);
        if (p->graphs[i]->given)
            emit_covers(e, p->graphs[i]);
    }
    emit_descriptor(e);
}

static void emit_f64(emitter *e)
{
    const program *p = e->p;
    const char *pre = e->prefix;
    put(e, "/* %s_f64.c: generated by jmvaec from %s. Do not edit.\n *\n", pre, e->spec_name);
    put(e, " * The same model in double precision, under other names, for the gradient\n");
    put(e, " * check by central finite differences (jv_gradcheck.h). */\n");
    put(e, "#define JV_DOUBLE 1\n");
    put(e, "#define %s_model %s_f64_model\n#define %s_init %s_f64_init\n", pre, pre, pre, pre);
    for (int i = 0; i < p->n_graphs; i++) {
        const char *name = p->graphs[i]->has_backward ? arena_printf(&e->c->mem, "forward%s", step_suffix(p->graphs[i]))
                                                      : p->graphs[i]->name;
        put(e, "#define %s_%s %s_f64_%s\n", pre, name, pre, name);
        if (is_posterior(p->graphs[i]))
            put(e, "#define %s_%s_repeated %s_f64_%s_repeated\n", pre, name, pre, name);
        if (p->graphs[i]->given)
            put(e, "#define %s_%s_covers %s_f64_%s_covers\n", pre, name, pre, name);
        if (p->graphs[i]->has_backward)
            put(e, "#define %s_backward%s %s_f64_backward%s\n", pre, step_suffix(p->graphs[i]), pre,
                step_suffix(p->graphs[i]));
    }
    put(e, "#include \"%s.c\"\n#include \"jv_gradcheck.h\"\n\n", pre);
    put(e, "int %s_gradcheck(int argc, char **argv)\n{\n    return jv_gradcheck_run(&%s_model, argc, argv);\n}\n", pre, pre);
}

static void emit_main(emitter *e)
{
    const char *pre = e->prefix;
    put(e, "/* %s_main.c: generated by jmvaec from %s. Do not edit.\n", pre, e->spec_name);
    put(e, " * The trainer: train, eval, sample, encode, gradcheck (run it with --help). */\n");
    put(e, "#include \"%s.h\"\n#include \"jv_trainer.h\"\n\n", pre);
    put(e, "int main(int argc, char **argv)\n{\n    return jv_main(&%s_model, %s_gradcheck, argc, argv);\n}\n", pre, pre);
}

static void emit_makefile(emitter *e)
{
    const char *pre = e->prefix;
    put(e, "# Makefile: generated by jmvaec from %s. Builds the trainer ./%s.\n#\n", e->spec_name, pre);
    put(e, "# JMVAEC names the jmvaec whose runtime the trainer links: by default the\n");
    put(e, "# one of the source tree this folder is in (a parent folder holding jmvaec and\n");
    put(e, "# runtime/), else the jmvaec on PATH (after make install). `$(JMVAEC) --cflags`\n");
    put(e, "# and `--libs` give the flags, as llvm-config does.\n");
    put(e, "JMVAEC ?= $(shell d='$(CURDIR)'; while [ \"$$d\" != / ]; do \\\n");
    put(e, "    if [ -x \"$$d/jmvaec\" ] && [ -f \"$$d/runtime/jv_model.h\" ]; then echo \"$$d/jmvaec\"; exit 0; fi; \\\n");
    put(e, "    d=$$(dirname \"$$d\"); done; echo jmvaec)\n");
    put(e, "CC ?= cc\nCFLAGS ?= -O2\n");
    put(e, "# MPI=1 links the trainer with the runtime's MPI part, through Open MPI's mpicc\n");
    put(e, "# (`mpirun -np N ./%s train ...`); the model's objects are the same. The choice\n", pre);
    put(e, "# is remembered in .build-mpi: changing it relinks.\n");
    put(e, "MPI ?= 0\nMPICC ?= mpicc\n");
    put(e, "ifeq ($(MPI),1)\nJV_QUERY := --mpi-\nLINK := $(MPICC)\nelse\nJV_QUERY := --\nLINK := $(CC)\nendif\n");
    put(e, "JV_CFLAGS := $(shell $(JMVAEC) --cflags)\nJV_LIBS := $(shell $(JMVAEC) $(JV_QUERY)libs)\n");
    put(e, "ifeq ($(JV_LIBS),)\n$(error $(JMVAEC) gave no runtime to link (see its message above))\nendif\n");
    put(e, "# the runtime's headers and library: a new runtime rebuilds the trainer\n");
    put(e, "JV_DEPS := $(shell $(JMVAEC) $(JV_QUERY)deps)\n");
    put(e, "OBJECTS := %s_main.o %s.o %s_f64.o\n", pre, pre, pre);
    put(e, "$(shell [ \"$$(cat .build-mpi 2>/dev/null)\" = \"$(MPI)\" ] || echo \"$(MPI)\" > .build-mpi)\n\n");
    put(e, "%s: $(OBJECTS) .build-mpi $(filter %%.a,$(JV_DEPS))\n\t$(LINK) $(LDFLAGS) $(OBJECTS) $(JV_LIBS) -o $@\n\n", pre);
    put(e, "# No errno from math functions and no trapping floating point: results do not\n");
    put(e, "# change, and the elementwise loops vectorise. No fused multiply-add either: the\n");
    put(e, "# AVX-512, AVX2 and baseline builds of each function (JV_TASK) give the same bits.\n");
    put(e, "# GCC's -O2 vectorises a loop only if no scalar tail remains (a 7 x 7 image's 49\n");
    put(e, "# places never); its dynamic cost model, where the compiler has it, lifts that.\n");
    put(e, "JV_VECT := $(shell $(CC) -Werror -fvect-cost-model=dynamic -x c -c /dev/null -o /dev/null 2>/dev/null \\\n"
           "    && echo -fvect-cost-model=dynamic)\n");
    put(e, "%%.o: %%.c %s.h %s.c $(filter %%.h,$(JV_DEPS))\n"
           "\t$(CC) -std=c11 -fno-math-errno -fno-trapping-math -ffp-contract=off $(JV_VECT) $(CFLAGS) $(JV_CFLAGS) -c $< -o $@\n\n", pre, pre);
    put(e, "clean:\n\trm -f %s $(OBJECTS) .build-mpi\n\n.PHONY: clean\n", pre);
}

/* -------------------------------------------------------------------- files -- */

typedef void (*file_writer)(emitter *);

/* A file's writer, called with the stream write_generated opened. */
typedef struct {
    emitter *e;
    file_writer writer;
} file_job;

static void write_job(FILE *out, void *arg)
{
    file_job *job = arg;
    job->e->out = out;
    job->writer(job->e);
}

int emit_program(ctx *c, const program *p, const char *dir)
{
    emitter e = {NULL, c, p, p->m->name, NULL, spec_file_name(c), NULL, "B", "B", NULL, NULL};
    e.upper = upper(&e, p->m->name);
    const char *pre = p->m->name;
    file_job jobs[] = {{&e, emit_header}, {&e, emit_source}, {&e, emit_f64}, {&e, emit_main}, {&e, emit_makefile}};
    const generated_file files[] = {
        {arena_printf(&c->mem, "%s.h", pre), write_job, &jobs[0]},
        {arena_printf(&c->mem, "%s.c", pre), write_job, &jobs[1]},
        {arena_printf(&c->mem, "%s_f64.c", pre), write_job, &jobs[2]},
        {arena_printf(&c->mem, "%s_main.c", pre), write_job, &jobs[3]},
        {"Makefile", write_job, &jobs[4]},
    };
    return write_generated(c, dir, files, (int)(sizeof files / sizeof files[0]));
}

/* Every file emit_program writes, one after another on one stream (the
 * fuzzing harness compiles specs without touching the disk). */
void emit_all_to(ctx *c, const program *p, FILE *out)
{
    emitter e = {out, c, p, p->m->name, NULL, spec_file_name(c), NULL, "B", "B", NULL, NULL};
    e.upper = upper(&e, p->m->name);
    const file_writer writers[] = {emit_header, emit_source, emit_f64, emit_main, emit_makefile};
    for (size_t i = 0; i < sizeof writers / sizeof *writers; i++)
        writers[i](&e);
}

/* `--emit=c`: the model's C source on stdout. */
void emit_source_to(ctx *c, const program *p, FILE *out)
{
    emitter e = {out, c, p, p->m->name, NULL, spec_file_name(c), NULL, "B", "B", NULL, NULL};
    e.upper = upper(&e, p->m->name);
    emit_source(&e);
}
