/* plan.c: places every arena value of a graph.
 *
 * Every arena value is [batch x copies x width] (copies: 1, or the K samples
 * of a draw), so offsets are counted in reals per example: a value at
 * offset o starts at arena + o * batch. A value lives
 * from the op that first writes it to the op that last touches it (across
 * forward and backward: the training step's backward reads what its forward
 * left); values whose lives do not overlap share memory (first fit). The
 * training step runs as tasks in any order its edges allow (sched.c), so
 * there two values share memory only when every task touching one must
 * finish before the other's first task starts. */
#include <stdlib.h>

#include "ir.h"

/* Lifetimes in op positions: the first and last op touching each value. */
static void lifetimes(graph *g)
{
    for (int v = 0; v < g->n_values; v++)
        g->values[v].first = g->values[v].last = -1;
    for (int i = 0; i < g->n_ops; i++) {
        const op *o = &g->ops[i];
        if (g->tasks && g->tasks->task_of[i] < 0)
            continue; /* emits no code, touches no memory */
        for (int j = 0; j < o->n_in + o->n_out; j++) {
            int v = j < o->n_in ? o->in[j] : o->out[j - o->n_in];
            if (v < 0)
                continue;
            value *val = &g->values[v];
            if (val->first < 0)
                val->first = i;
            val->last = i;
        }
    }
}

/* Sorts value indices by birth (insertion sort: graphs have hundreds of values). */
static void sort_by_first(const graph *g, int *order, int n)
{
    for (int i = 1; i < n; i++) {
        int v = order[i], j = i;
        for (; j > 0 && g->values[order[j - 1]].first > g->values[v].first; j--)
            order[j] = order[j - 1];
        order[j] = v;
    }
}

static int op_touches(const op *o, int v)
{
    for (int j = 0; j < o->n_in + o->n_out; j++)
        if ((j < o->n_in ? o->in[j] : o->out[j - o->n_in]) == v)
            return 1;
    return 0;
}

/* Is value a done with before value b is born, in every order the graph
 * may run in? Run in op order, when its last op comes before b's first;
 * run as tasks, when every task touching a must finish before b's first. */
static int done_before(const graph *g, int a, int b)
{
    const value *va = &g->values[a], *vb = &g->values[b];
    if (!g->tasks)
        return va->last < vb->first;
    if (va->last >= vb->first)
        return 0;
    int born = g->tasks->task_of[vb->first];
    for (int i = va->first; i <= va->last; i++)
        if (g->tasks->task_of[i] >= 0 && op_touches(&g->ops[i], a) &&
            !task_reaches(g->tasks, g->tasks->task_of[i], born))
            return 0;
    return 1;
}

void plan_graph(graph *g)
{
    lifetimes(g);
    int *order = malloc(sizeof(int) * (size_t)(g->n_values + 1));
    int n = 0;
    for (int v = 0; v < g->n_values; v++) {
        g->values[v].offset = -1;
        if (g->values[v].kind == V_ARENA && g->values[v].first >= 0)
            order[n++] = v;
    }
    sort_by_first(g, order, n);
    long total = 0;
    for (int k = 0; k < n; k++) {
        value *val = &g->values[order[k]];
        /* the lowest offset where it fits beside the values placed before it that are still in use */
        long offset = 0;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int j = 0; j < k; j++) {
                const value *o = &g->values[order[j]];
                long ow = (long)o->width * o->copies, vw = (long)val->width * val->copies;
                if (offset < o->offset + ow && o->offset < offset + vw && !done_before(g, order[j], order[k])) {
                    offset = o->offset + ow;
                    moved = 1;
                }
            }
        }
        val->offset = offset;
        if (offset + (long)val->width * val->copies > total)
            total = offset + (long)val->width * val->copies;
    }
    g->arena_per_example = total;
    free(order);
}

void plan_program(program *p)
{
    p->arena_per_example = 0;
    for (int i = 0; i < p->n_graphs; i++) {
        plan_graph(p->graphs[i]);
        if (p->graphs[i]->arena_per_example > p->arena_per_example)
            p->arena_per_example = p->graphs[i]->arena_per_example;
    }
}

/* "  (K samples an example)", for the plan's lines. */
static const char *arena_printf_static(int copies)
{
    static char buf[48];
    snprintf(buf, sizeof buf, "  (%d samples an example)", copies);
    return buf;
}

static void print_bytes(FILE *out, const char *what, double bytes)
{
    fprintf(out, "%-44s %14.0f bytes (%.2f MiB)\n", what, bytes, bytes / 1048576.0);
}

void plan_dump(FILE *out, const program *p, int batch)
{
    fprintf(out, "# memory plan of %s for a batch of %d, single precision (4 bytes a real)\n", p->m->name, batch);
    fprintf(out, "# parameters: %ld reals in %d tensors\n", p->n_params, p->n_tensors);
    for (int t = 0; t < p->n_tensors; t++) {
        const tensor *ts = &p->tensors[t];
        fprintf(out, "param %-32s [%d x %d] offset %ld", ts->name, ts->rows, ts->cols, ts->offset);
        if (ts->shape[0]) /* a convolution's weight, as PyTorch lays it out */
            fprintf(out, "  [%d, %d, %d, %d]", ts->shape[0], ts->shape[1], ts->shape[2], ts->shape[3]);
        fputc('\n', out);
    }
    for (int i = 0; i < p->n_graphs; i++) {
        const graph *g = p->graphs[i];
        fprintf(out, "\n# graph %s: %ld reals per example\n", g->name, g->arena_per_example);
        for (int v = 0; v < g->n_values; v++) {
            const value *val = &g->values[v];
            if (val->kind != V_ARENA || val->offset < 0)
                continue;
            fprintf(out, "buffer %-28s width %6d offset %8ld*B  %10ld bytes  live ops %d..%d%s", val->name, val->width,
                    val->offset, (long)val->width * val->copies * batch * 4, val->first, val->last,
                    val->copies > 1 ? arena_printf_static(val->copies) : "");
            if (val->shape.h) /* an image: [channels, height, width] per example */
                fprintf(out, "  [%d, %d, %d]", val->shape.c, val->shape.h, val->shape.w);
            fputc('\n', out);
        }
    }
    double param_bytes = (double)p->n_params * 4;
    fputc('\n', out);
    print_bytes(out, "parameters", param_bytes);
    print_bytes(out, "gradients", param_bytes);
    print_bytes(out, "Adam moments (m and v)", 2 * param_bytes);
    print_bytes(out, "activation arena (largest graph)", (double)p->arena_per_example * batch * 4);
    print_bytes(out, "total", 4 * param_bytes + (double)p->arena_per_example * batch * 4);
}
