/* test_step.c: the training step of a generated model (the committed
 * JMVAE-kl) run as a task graph on teams of 1 to 4 threads, in process:
 * the loss, the terms, every gradient and every region's sum of squares
 * are the bits of forward and backward run in order; and the pipelined
 * step (the previous step's Adam update inside the graph) leaves the
 * parameters and moments that updating first and stepping after leaves. */
#include "../generated/jmvae_kl/jmvae_kl.c"

#include <criterion/criterion.h>
#include <stdlib.h>

#include "jv_runtime.h"

enum { BATCH = 37 }; /* not a multiple of anything the kernels like */

#define JV_ROWS(p) ((const jv_real *const *)(p))

typedef struct {
    jv_real *params, *grads, *arena, *m, *v, *terms;
    double *sumsq;
    jv_real *data[2], *noise[1];
} state;

static void make_state(state *st, uint64_t seed)
{
    const jv_model *M = &jmvae_kl_model;
    size_t n = M->n_params;
    st->params = calloc(n, sizeof(jv_real));
    st->grads = calloc(n, sizeof(jv_real));
    st->m = calloc(n, sizeof(jv_real));
    st->v = calloc(n, sizeof(jv_real));
    st->arena = calloc(M->arena_per_example * BATCH, sizeof(jv_real));
    st->terms = calloc((size_t)M->n_terms, sizeof(jv_real));
    st->sumsq = calloc((size_t)M->train->n_slots, sizeof(double));
    M->init(st->params, seed);
    jv_rng rng = {seed, 99, 0};
    st->data[0] = calloc((size_t)BATCH * 784, sizeof(jv_real));
    st->data[1] = calloc((size_t)BATCH * 10, sizeof(jv_real));
    st->noise[0] = calloc((size_t)BATCH * 64, sizeof(jv_real));
    jv_rng_fill_uniform(&rng, st->data[0], (size_t)BATCH * 784);
    for (int b = 0; b < BATCH; b++)
        st->data[1][b * 10 + (int)jv_rng_below(&rng, 10)] = 1;
    jv_rng_fill_normal(&rng, st->noise[0], (size_t)BATCH * 64);
}

static void free_state(state *st)
{
    free(st->params);
    free(st->grads);
    free(st->m);
    free(st->v);
    free(st->arena);
    free(st->terms);
    free(st->sumsq);
    free(st->data[0]);
    free(st->data[1]);
    free(st->noise[0]);
}

static jv_step step_of(state *st, jv_real *loss)
{
    return (jv_step){st->params, st->grads, st->arena, BATCH, JV_ROWS(st->data), JV_ROWS(st->noise),
                     NULL, NULL, st->terms, loss, st->sumsq, 0};
}

static void same_reals(const jv_real *a, const jv_real *b, size_t n, const char *what, int threads)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(memcmp(&a[i], &b[i], sizeof a[i]) == 0, "%s[%zu] on %d threads: %.9g, in order %.9g", what, i,
                  threads, (double)a[i], (double)b[i]);
}

Test(step, the_graph_on_any_team_gives_the_bits_of_the_plain_order)
{
    const jv_model *M = &jmvae_kl_model;
    state ref, st;
    make_state(&ref, 5);
    make_state(&st, 5);
    jv_real loss_ref = M->forward(ref.params, ref.arena, BATCH, JV_ROWS(ref.data), JV_ROWS(ref.noise),
                                  NULL, NULL, ref.terms);
    M->backward(ref.params, ref.grads, ref.arena, BATCH, JV_ROWS(ref.data), JV_ROWS(ref.noise), NULL,
                NULL);
    double total = 0;
    for (int k = 0; k < M->train->n_slots; k++)
        total += ref.sumsq[k] = jv_sumsq(ref.grads + M->train->slots[k].first, M->train->slots[k].count);
    cr_assert_float_eq(total, jv_sumsq(ref.grads, M->n_params), 1e-9 * total);
    jv_error err;
    jv_graph_runner *runner = jv_graph_runner_new(M->train, &err);
    cr_assert_not_null(runner, "%s", err.msg);
    for (int threads = 1; threads <= 4; threads++) {
        jv_team *team = jv_team_new(threads, &err);
        cr_assert_not_null(team, "%s", err.msg);
        for (int rep = 0; rep < 3; rep++) {
            memset(st.grads, 0xff, M->n_params * sizeof(jv_real)); /* every gradient must be written */
            jv_real loss = 0;
            jv_step s = step_of(&st, &loss);
            jv_team_run_graph(team, runner, &s, 0, NULL);
            cr_assert(memcmp(&loss, &loss_ref, sizeof loss) == 0, "loss on %d threads: %.9g, in order %.9g",
                      threads, (double)loss, (double)loss_ref);
            same_reals(st.terms, ref.terms, (size_t)M->n_terms, "terms", threads);
            same_reals(st.grads, ref.grads, M->n_params, "gradient", threads);
            cr_assert(memcmp(st.sumsq, ref.sumsq, (size_t)M->train->n_slots * sizeof(double)) == 0);
        }
        jv_team_free(team);
    }
    jv_graph_runner_free(runner);
    free_state(&ref);
    free_state(&st);
}

/* Three steps: update, then step (the reference), against the update of
 * each step run inside the next one's graph. */
Test(step, adam_inside_the_next_step_leaves_the_same_bits)
{
    const jv_model *M = &jmvae_kl_model;
    jv_adam_config cfg = {1e-3, 0.9, 0.999, 1e-8, 5};
    jv_error err;
    jv_graph_runner *runner = jv_graph_runner_new(M->train, &err);
    cr_assert_not_null(runner, "%s", err.msg);
    state ref;
    make_state(&ref, 11);
    jv_real loss;
    for (long step = 1; step <= 3; step++) {
        jv_step s = step_of(&ref, &loss);
        jv_team_run_graph(NULL, runner, &s, 0, NULL);
        double sum = 0;
        for (int k = 0; k < M->train->n_slots; k++)
            sum += ref.sumsq[k];
        jv_adam_update(&cfg, ref.params, ref.grads, ref.m, ref.v, 0, M->n_params, step,
                       jv_clip_factor(cfg.clip, sqrt(sum)));
    }
    for (int threads = 1; threads <= 3; threads++) {
        jv_team *team = jv_team_new(threads, &err);
        cr_assert_not_null(team, "%s", err.msg);
        state st;
        make_state(&st, 11);
        jv_adam_pass pending = {&cfg, st.params, st.grads, st.m, st.v, 0, 1};
        for (long step = 1; step <= 3; step++) {
            jv_step s = step_of(&st, &loss);
            jv_team_run_graph(team, runner, &s, 0, step > 1 ? &pending : NULL);
            double sum = 0;
            for (int k = 0; k < M->train->n_slots; k++)
                sum += st.sumsq[k];
            pending.step = step;
            pending.scale = jv_clip_factor(cfg.clip, sqrt(sum));
        }
        jv_adam_update(&cfg, st.params, st.grads, st.m, st.v, 0, M->n_params, pending.step, pending.scale);
        same_reals(st.params, ref.params, M->n_params, "parameter", threads);
        same_reals(st.m, ref.m, M->n_params, "first moment", threads);
        same_reals(st.v, ref.v, M->n_params, "second moment", threads);
        free_state(&st);
        jv_team_free(team);
    }
    jv_graph_runner_free(runner);
    free_state(&ref);
}
