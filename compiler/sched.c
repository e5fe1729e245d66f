/* sched.c: the training step as a graph of tasks.
 *
 * Every op of the training graph that emits code becomes a task. Task j
 * waits for an earlier task i when both touch the same value or the same
 * rows of the gradient block and at least one of them writes it, so any
 * order the runtime picks among ready tasks computes exactly what the
 * sequential order computes: the same operations on the same operands,
 * each GEMM called with the same shape. The result is bit for bit the same
 * for any number of threads.
 *
 * The stage also numbers the gradient regions (each is written by exactly
 * one task, which also sums its squares for the gradient norm), estimates
 * each task's cost, and ranks tasks by the longest estimated path from
 * their start to the end of the step: the runtime runs the ready task of
 * highest rank first. The large GEMMs come here already cut into parts
 * (split.c), which run side by side. Planning (plan.c) reads the reachability this stage
 * computes, so that buffers only share memory when one's every use comes
 * before the other's first, in every order. */
#include <string.h>

#include "ir.h"

int op_emits_code(const op *o)
{
    switch (o->kind) {
    case OP_SEED:
        return 0; /* its constants are folded into the tasks that read them */
    case OP_NLL_GRAD:
        return o->out[0] >= 0 || o->out[1] >= 0;
    case OP_ADD_GRAD:
        return o->out[0] >= 0;
    case OP_POE_GRAD:
        return o->out[0] >= 0 || o->out[1] >= 0;
    case OP_EXPAND_GRAD:
        return o->out[0] >= 0;
    case OP_MIX_LOGPDF_GRAD:
        return o->out[0] >= 0 || o->out[1] >= 0 || o->out[2] >= 0;
    default:
        return 1;
    }
}

int op_writes_input(const op *o, int j)
{
    return o->kind == OP_ACT_GRAD && j == 0; /* dY becomes dZ in place */
}

int op_reads_output(const op *o, int j)
{
    return o->kind >= OP_SEED ? o->acc[j] : o->accumulate;
}

/* The rows of the gradient block an op writes: [*first, *first + *count) in reals. */
int op_grad_region(const program *p, const graph *g, const op *o, long *first, long *count)
{
    switch (o->kind) {
    case OP_ACT_GRAD:
        if (o->bias < 0)
            return 0; /* through the activation alone */
        *first = p->tensors[o->bias].offset;
        *count = (long)p->tensors[o->bias].rows * p->tensors[o->bias].cols;
        return 1;
    case OP_GEMM_DW: {
        const tensor *t = &p->tensors[o->tensor];
        int lo, hi;
        op_part_range(g, o, &lo, &hi);
        *first = t->offset + (long)(o->row_offset + lo) * t->cols;
        *count = (long)(hi - lo) * t->cols;
        return 1;
    }
    case OP_CONV_DW:
    case OP_ZERO_GRAD:
        *first = p->tensors[o->tensor].offset;
        *count = (long)p->tensors[o->tensor].rows * p->tensors[o->tensor].cols;
        return 1;
    default:
        return 0;
    }
}

/* The parameters an op reads: up to two ranges [first, first + count). */
static int op_param_ranges(const program *p, const graph *g, const op *o, long first[2], long count[2])
{
    if (o->kind == OP_AFFINE || o->kind == OP_CONV || o->kind == OP_CONV_DX) {
        const tensor *w = &p->tensors[o->tensor];
        first[0] = w->offset;
        count[0] = (long)w->rows * w->cols;
        if (o->kind == OP_CONV_DX || o->bias < 0)
            return 1;
        const tensor *b = &p->tensors[o->bias];
        first[1] = b->offset;
        count[1] = (long)b->rows * b->cols;
        return 2;
    }
    if (o->kind == OP_GEMM_DX) {
        const tensor *w = &p->tensors[o->tensor];
        int lo, hi;
        op_part_range(g, o, &lo, &hi);
        first[0] = w->offset + (long)(o->row_offset + lo) * w->cols;
        count[0] = (long)(hi - lo) * w->cols;
        return 1;
    }
    return 0;
}

/* Estimated microseconds at a batch of 100: GEMMs at 100 GFLOP/s, the
 * elementwise loops at half a nanosecond an element. Only the ranking uses it. */
static double op_cost(const program *p, const graph *g, const op *o)
{
    int copies = 1;
    for (int j = 0; j < o->n_in + o->n_out; j++) {
        int v = j < o->n_in ? o->in[j] : o->out[j - o->n_in];
        if (v >= 0 && g->values[v].copies > copies)
            copies = g->values[v].copies;
    }
    const double batch = 100.0 * copies;
    double flops = 0, elems = 0;
    switch (o->kind) {
    case OP_AFFINE:
        for (int i = 0; i < o->n_in; i++)
            flops += 2 * batch * g->values[o->in[i]].width * g->values[o->out[0]].width;
        elems = batch * g->values[o->out[0]].width;
        break;
    case OP_GEMM_DX:
        flops = 2 * batch * g->values[o->in[0]].width * g->values[o->out[0]].width;
        break;
    case OP_GEMM_DW:
        flops = 2 * batch * g->values[o->in[0]].width * g->values[o->in[1]].width;
        break;
    case OP_CONV:
    case OP_CONV_DX:
    case OP_CONV_DW: {
        /* one GEMM of the weight's rows by the batch's columns (an example's: conv_columns), which are
           written once */
        double cols = (double)conv_columns(o->conv);
        flops = 2 * batch * p->tensors[o->tensor].rows * cols;
        elems = batch * cols;
        break;
    }
    case OP_ZERO_GRAD:
        elems = (double)p->tensors[o->tensor].rows * p->tensors[o->tensor].cols / 8;
        break;
    default:
        for (int j = 0; j < o->n_in; j++)
            if (o->in[j] >= 0)
                elems += batch * g->values[o->in[j]].width;
        break;
    }
    if (o->parts > 1) { /* a part of a split GEMM (split.c) */
        int lo, hi;
        op_part_range(g, o, &lo, &hi);
        double share = op_cuts_examples(o) ? 1.0 / o->parts : (double)(hi - lo) / op_split_width(g, o);
        flops *= share;
        elems *= share;
    }
    return flops / 1e5 + elems * 5e-4 + 0.5;
}

static int bit(const unsigned long long *row, int j)
{
    return (int)((row[j / 64] >> (j % 64)) & 1);
}

static void set_bit(unsigned long long *row, int j)
{
    row[j / 64] |= 1ull << (j % 64);
}

/* Does op i touch value v, and does it write it? */
static void touches(const op *o, int v, int *reads, int *writes)
{
    *reads = *writes = 0;
    for (int j = 0; j < o->n_in; j++)
        if (o->in[j] == v) {
            *reads = 1;
            *writes |= op_writes_input(o, j);
        }
    for (int j = 0; j < o->n_out; j++)
        if (o->out[j] == v) {
            *writes = 1;
            *reads |= op_reads_output(o, j);
        }
}

/* Values whose memory is the caller's and read-only in a step. */
static int read_only(const value *v)
{
    return v->kind == V_DATA || v->kind == V_NOISE || v->kind == V_LATENT_IN;
}

/* i and j (ops) must keep their order: a shared value or gradient region,
 * at least one of them writing it. */
static int conflict(const program *p, const graph *g, const op *a, const op *b)
{
    if ((a->kind == OP_LOSS) && (b->kind == OP_LOSS))
        return 1;
    if (a->split && a->split == b->split)
        return 0; /* parts of one GEMM: disjoint parts of their outputs (split.c) */
    for (int k = 0; k < a->n_in + a->n_out; k++) {
        int v = k < a->n_in ? a->in[k] : a->out[k - a->n_in];
        if (v < 0 || read_only(&g->values[v]))
            continue;
        int ra, wa, rb, wb;
        touches(a, v, &ra, &wa);
        touches(b, v, &rb, &wb);
        if ((wa && (rb || wb)) || (wb && ra))
            return 1;
    }
    long fa, na, fb, nb;
    if (op_grad_region(p, g, a, &fa, &na) && op_grad_region(p, g, b, &fb, &nb) && fa < fb + nb && fb < fa + na)
        return 1;
    return 0;
}

void schedule_graph(ctx *c, const program *p, graph *g)
{
    task_graph *t = arena_alloc(&c->mem, sizeof *t);
    g->tasks = t;
    t->task_of = arena_alloc(&c->mem, sizeof(int) * (size_t)(g->n_ops + 1));
    t->op = arena_alloc(&c->mem, sizeof(int) * (size_t)(g->n_ops + 1));
    for (int i = 0; i < g->n_ops; i++) {
        t->task_of[i] = -1;
        if (op_emits_code(&g->ops[i])) {
            t->task_of[i] = t->n;
            t->op[t->n++] = i;
            if (i < g->n_forward)
                t->n_forward++;
        }
    }
    int n = t->n;
    t->words = (n + 63) / 64;
    size_t row_bytes = sizeof(unsigned long long) * (size_t)t->words;
    unsigned long long *direct = arena_alloc(&c->mem, row_bytes * (size_t)(n + 1));
    t->reach = arena_alloc(&c->mem, row_bytes * (size_t)(n + 1));
    /* direct[j] = the earlier tasks j conflicts with; reach[j] = every task that must finish before j */
    for (int j = 0; j < n; j++) {
        unsigned long long *dj = direct + (size_t)j * t->words, *rj = t->reach + (size_t)j * t->words;
        for (int i = j - 1; i >= 0; i--) {
            if (bit(rj, i) || !conflict(p, g, &g->ops[t->op[i]], &g->ops[t->op[j]]))
                continue;
            set_bit(dj, i);
            const unsigned long long *ri = t->reach + (size_t)i * t->words;
            for (int w = 0; w < t->words; w++)
                rj[w] |= ri[w];
            set_bit(rj, i);
        }
    }
    /* Predecessors are scanned from the latest down, and one already reached
     * through a later one is skipped: what remains in direct is the
     * transitive reduction (an edge i -> j implied by a path i -> k -> j has
     * i < k < j, and k is met first). */
    t->n_pred = arena_alloc(&c->mem, sizeof(int) * (size_t)(n + 1));
    t->n_succ = arena_alloc(&c->mem, sizeof(int) * (size_t)(n + 1));
    for (int j = 0; j < n; j++)
        for (int i = 0; i < j; i++)
            if (bit(direct + (size_t)j * t->words, i)) {
                t->n_pred[j]++;
                t->n_succ[i]++;
            }
    t->succ = arena_alloc(&c->mem, sizeof(int *) * (size_t)(n + 1));
    int *fill = arena_alloc(&c->mem, sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        t->succ[i] = arena_alloc(&c->mem, sizeof(int) * (size_t)(t->n_succ[i] + 1));
    for (int j = 0; j < n; j++)
        for (int i = 0; i < j; i++)
            if (bit(direct + (size_t)j * t->words, i))
                t->succ[i][fill[i]++] = j;
    /* costs and ranks, from the end */
    t->cost = arena_alloc(&c->mem, sizeof(double) * (size_t)(n + 1));
    t->rank = arena_alloc(&c->mem, sizeof(double) * (size_t)(n + 1));
    for (int i = n - 1; i >= 0; i--) {
        double longest = 0;
        for (int k = 0; k < t->n_succ[i]; k++)
            longest = t->rank[t->succ[i][k]] > longest ? t->rank[t->succ[i][k]] : longest;
        t->cost[i] = op_cost(p, g, &g->ops[t->op[i]]);
        t->rank[i] = t->cost[i] + longest;
    }
    /* gradient regions, in task order: a region several tasks write (a
     * network of every loop instance; the first writes, the others add) is
     * owned by the last of them, which sums its squares */
    t->slot = arena_alloc(&c->mem, sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        long first, count;
        t->slot[i] = -1;
        if (!op_grad_region(p, g, &g->ops[t->op[i]], &first, &count))
            continue;
        int last = 1;
        for (int j = i + 1; j < n && last; j++) {
            long f2, c2;
            last = !(op_grad_region(p, g, &g->ops[t->op[j]], &f2, &c2) && f2 == first && c2 == count);
        }
        if (last)
            t->slot[i] = t->n_slots++;
    }
}

/* Which gradient regions' parameters each task reads: the optimiser's
 * update of a region must come before them (the runtime may run the update
 * of one step inside the next step's graph). */
void schedule_param_reads(ctx *c, const program *p, const graph *g)
{
    task_graph *t = g->tasks;
    long *slot_first = arena_alloc(&c->mem, sizeof(long) * (size_t)(t->n_slots + 1));
    long *slot_count = arena_alloc(&c->mem, sizeof(long) * (size_t)(t->n_slots + 1));
    for (int i = 0; i < t->n; i++)
        if (t->slot[i] >= 0)
            op_grad_region(p, g, &g->ops[t->op[i]], &slot_first[t->slot[i]], &slot_count[t->slot[i]]);
    t->slot_first = slot_first;
    t->slot_count = slot_count;
    t->n_reads = arena_alloc(&c->mem, sizeof(int) * (size_t)(t->n + 1));
    t->reads = arena_alloc(&c->mem, sizeof(int *) * (size_t)(t->n + 1));
    for (int i = 0; i < t->n; i++) {
        long first[3], count[3];
        int n = op_param_ranges(p, g, &g->ops[t->op[i]], first, count);
        /* a task that writes a region it does not own (the first of several
         * writers) must also wait for the update of that region */
        if (t->slot[i] < 0 && op_grad_region(p, g, &g->ops[t->op[i]], &first[n], &count[n]))
            n++;
        t->reads[i] = arena_alloc(&c->mem, sizeof(int) * (size_t)(t->n_slots + 1));
        for (int r = 0; r < t->n_slots; r++)
            for (int j = 0; j < n; j++)
                if (slot_first[r] < first[j] + count[j] && first[j] < slot_first[r] + slot_count[r]) {
                    t->reads[i][t->n_reads[i]++] = r;
                    break;
                }
    }
}

int task_reaches(const task_graph *t, int from, int to)
{
    return from != to && bit(t->reach + (size_t)to * t->words, from);
}

/* The regions must tile the gradient block, each real written by one task. */
int schedule_check_regions(const program *p, const graph *g)
{
    const task_graph *t = g->tasks;
    long covered = 0;
    for (long at = 0; at < p->n_params;) {
        int found = 0;
        for (int i = 0; i < t->n && !found; i++) {
            long first, count;
            if (t->slot[i] >= 0 && op_grad_region(p, g, &g->ops[t->op[i]], &first, &count) && first == at) {
                at += count;
                covered += count;
                found = 1;
            }
        }
        if (!found)
            return -1;
    }
    return covered == p->n_params ? 0 : -1;
}

void tasks_dump(FILE *out, const program *p, const graph *g)
{
    const task_graph *t = g->tasks;
    double total = 0, longest = 0;
    for (int i = 0; i < t->n; i++) {
        total += t->cost[i];
        longest = t->rank[i] > longest ? t->rank[i] : longest;
    }
    fprintf(out, "# tasks of %s's step: %d (%d forward), %d gradient regions\n", p->m->name, t->n, t->n_forward,
            t->n_slots);
    fprintf(out, "# estimated cost at batch 100: %.0f us in all, %.0f us on the longest path "
                 "(at most %.2fx faster on many threads)\n",
            total, longest, longest > 0 ? total / longest : 1);
    for (int i = 0; i < t->n; i++) {
        const op *o = &g->ops[t->op[i]];
        fprintf(out, "task %3d  %-16s line %-3d cost %7.1f rank %7.1f", i, op_kind_name(o->kind), o->line, t->cost[i],
                t->rank[i]);
        if (o->parts > 1)
            fprintf(out, " part %d/%d", o->part + 1, o->parts);
        if (t->slot[i] >= 0)
            fprintf(out, " slot %d", t->slot[i]);
        fprintf(out, "  after");
        int any = 0;
        for (int j = 0; j < i; j++)
            for (int k = 0; k < t->n_succ[j]; k++)
                if (t->succ[j][k] == i) {
                    fprintf(out, " %d", j);
                    any = 1;
                }
        fprintf(out, "%s\n", any ? "" : " -");
    }
}
