/* bench_exchange.c: the time the trainer's exchange of a gradient block
 * takes between processes (make bench-mpi runs it under mpirun).
 *
 * For each block size (millions of reals) it times, as train does every
 * step: the parts' sum along the tree (a reduce-scatter by recursive
 * doubling, jv_reducer_run, with each process's part a constant gradient),
 * then the parameters' segments to every process (jv_comm_allgatherv).
 * Prints one line per size on process 0: the medians in milliseconds over
 * the repetitions, and the bandwidth they amount to (bytes each process
 * receives over the time).
 *
 *   mpirun -np 2 bench_exchange [--sizes 1,2,3] [--reps 40]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jv_comm.h"
#include "jv_trainer_int.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, by_value);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

typedef struct {
    size_t n;
} part_ctx;

static void constant_part(void *arg, int chunk, jv_real *g)
{
    const part_ctx *c = arg;
    for (size_t i = 0; i < c->n; i++)
        g[i] = (jv_real)(chunk + 1) * 1e-3f;
}

int main(int argc, char **argv)
{
    if (jv_comm_init(&argc, &argv) != 0)
        return 1;
    double sizes[8] = {1, 2, 3};
    int n_sizes = 3, reps = 40;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--reps") == 0) {
            reps = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--sizes") == 0) {
            n_sizes = 0;
            for (char *s = argv[i + 1]; *s && n_sizes < 8; s += *s == ',') {
                char *end;
                sizes[n_sizes++] = strtod(s, &end);
                s = end;
            }
        }
    }
    int rank = jv_comm_rank(), ranks = jv_comm_size();
    if (reps < 1 || n_sizes < 1) {
        fprintf(stderr, "bench_exchange: bad --reps or --sizes\n");
        jv_comm_finalize();
        return 1;
    }
    double *t_sum = malloc((size_t)reps * sizeof *t_sum), *t_gather = malloc((size_t)reps * sizeof *t_gather);
    size_t *bytes = malloc(2 * (size_t)ranks * sizeof *bytes), *displs = bytes + ranks;
    if (rank == 0)
        printf("# %s; parts %d (one a process)\n# reals     sum ms  gather ms   total ms   GB/s in\n",
               jv_comm_describe(), ranks);
    for (int s = 0; s < n_sizes; s++) {
        size_t n = (size_t)(sizes[s] * 1e6);
        jv_reducer r;
        float *params = calloc(n, sizeof *params);
        if (!params || jv_reducer_init(&r, n, ranks, rank, ranks) != 0)
            jv_comm_abort(1);
        for (int p = 0; p < ranks; p++) {
            bytes[p] = (r.seg_hi[p] - r.seg_lo[p]) * sizeof(float);
            displs[p] = r.seg_lo[p] * sizeof(float);
        }
        part_ctx ctx = {n};
        for (int k = -3; k < reps; k++) { /* three to warm up */
            jv_comm_max(0);               /* start together */
            double t0 = now();
            jv_real *g = jv_reducer_run(&r, constant_part, &ctx);
            double t1 = now();
            if (g)
                memcpy(params + r.seg_lo[rank], g + r.seg_lo[rank], bytes[rank]);
            double t2 = now();
            jv_comm_allgatherv(params, bytes, displs);
            double t3 = now();
            if (k >= 0) {
                t_sum[k] = t1 - t0; /* includes filling the part: subtracted below */
                t_gather[k] = t3 - t2;
            }
        }
        /* the part's own filling, alone */
        jv_real *scratch = malloc(n * sizeof *scratch);
        double fill[9];
        for (int k = 0; k < 9; k++) {
            double t0 = now();
            constant_part(&ctx, 0, scratch);
            fill[k] = now() - t0;
        }
        free(scratch);
        double sum = median(t_sum, reps) - median(fill, 9), gather = median(t_gather, reps);
        double in = 2.0 * (double)(ranks - 1) / ranks * (double)n * sizeof(float); /* bytes received */
        if (rank == 0)
            printf("%7.2fM %10.3f %10.3f %10.3f %9.2f\n", (double)n / 1e6, 1e3 * sum, 1e3 * gather,
                   1e3 * (sum + gather), in / (sum + gather) / 1e9);
        jv_reducer_free(&r);
        free(params);
    }
    free(t_sum);
    free(t_gather);
    free(bytes);
    jv_comm_finalize();
    return 0;
}
