/* jv_team.c: the trainer's threads, and the training step run as tasks on them.
 *
 * A team is the calling thread and T - 1 workers that live as long as the
 * team. jv_team_run hands all T members one function; the workers wait for
 * the next by spinning for a short while (a step hands out several jobs a
 * few microseconds apart), then sleep on a condition variable. OpenBLAS is
 * kept to the calling thread of each GEMM, so never more than T threads
 * are busy.
 *
 * jv_team_run_graph runs a model's step graph (jv_model.h): each member
 * takes the ready task of highest rank (the longest estimated path to the
 * end of the step), runs it, and counts down the tasks waiting for it. The
 * edges keep every pair of tasks that touch the same memory in the emitted
 * order, so the results are the same bits whichever member runs what.
 * jv_team_run_graphs runs several graphs (the steps of a batch's groups of
 * examples) side by side the same way: a member takes the best ready task
 * of any of them, and each graph's results are still its own bits.
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jv_runtime.h"

int jv_cpu_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* How long a waiting thread spins before it sleeps or yields. */
#define SPIN_SECONDS 2e-3

/* A spin that knows how long it has lasted: call spin_on each turn; it
 * returns 1 once the spin has gone on for SPIN_SECONDS (it reads the clock
 * every 1024 turns only). */
typedef struct {
    unsigned turns;
    double start;
} spin;

static int spin_on(spin *s)
{
    cpu_relax();
    if ((++s->turns & 1023) != 0)
        return 0;
    double now = now_seconds();
    if (s->start == 0)
        s->start = now;
    return now - s->start > SPIN_SECONDS;
}

struct jv_team {
    int n;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation; /* one more for each job */
    atomic_int running;     /* workers still in the current job */
    atomic_int sleepers;
    int stop;
    jv_team_fn fn;
    void *arg;
};

typedef struct {
    jv_team *team;
    int id;
} worker_arg;

/* Waits until the team's generation differs from seen; 0 on stop. */
static int wait_for_job(jv_team *t, unsigned seen)
{
    spin sp = {0, 0};
    int spun_out = 0;
    while (!spun_out && atomic_load(&t->generation) == seen)
        spun_out = spin_on(&sp);
    if (!spun_out)
        return 1;
    pthread_mutex_lock(&t->lock); /* spun long enough: sleep until the next job */
    atomic_fetch_add(&t->sleepers, 1);
    while (atomic_load(&t->generation) == seen && !t->stop)
        pthread_cond_wait(&t->wake, &t->lock);
    atomic_fetch_sub(&t->sleepers, 1);
    int stop = t->stop && atomic_load(&t->generation) == seen;
    pthread_mutex_unlock(&t->lock);
    return !stop;
}

static void *worker_main(void *p)
{
    worker_arg *w = p;
    jv_team *t = w->team;
    int id = w->id;
    free(w);
    unsigned seen = 0;
    for (;;) {
        if (!wait_for_job(t, seen))
            return NULL;
        seen = atomic_load(&t->generation);
        if (t->stop)
            return NULL;
        t->fn(t->arg, id, t->n);
        atomic_fetch_sub(&t->running, 1);
    }
}

jv_team *jv_team_new(int threads, jv_error *err)
{
    jv_team *t = calloc(1, sizeof *t);
    if (!t) {
        jv_error_set(err, "out of memory for %d threads", threads);
        return NULL;
    }
    t->n = threads < 1 ? 1 : threads;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    t->threads = calloc((size_t)t->n, sizeof *t->threads);
    if (!t->threads) {
        jv_error_set(err, "out of memory for %d threads", threads);
        jv_team_free(t);
        return NULL;
    }
    for (int i = 1; i < t->n; i++) {
        worker_arg *w = malloc(sizeof *w);
        if (w)
            *w = (worker_arg){t, i};
        if (w && pthread_create(&t->threads[i], NULL, worker_main, w) == 0)
            continue;
        free(w);
        jv_error_set(err, "cannot start thread %d of %d", i + 1, t->n);
        t->n = i; /* the ones started are stopped and joined */
        jv_team_free(t);
        return NULL;
    }
    return t;
}

void jv_team_free(jv_team *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
    for (int i = 1; i < t->n && t->threads; i++)
        if (t->threads[i])
            pthread_join(t->threads[i], NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t->threads);
    free(t);
}

int jv_team_size(const jv_team *t)
{
    return t ? t->n : 1;
}

void jv_team_run(jv_team *t, jv_team_fn fn, void *arg)
{
    if (!t || t->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    t->fn = fn;
    t->arg = arg;
    atomic_store(&t->running, t->n - 1);
    atomic_fetch_add(&t->generation, 1);
    if (atomic_load(&t->sleepers) > 0) {
        pthread_mutex_lock(&t->lock);
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->lock);
    }
    fn(arg, 0, t->n);
    for (spin sp = {0, 0}; atomic_load(&t->running) > 0;)
        if (spin_on(&sp))
            sched_yield(); /* more threads than cores: let the others finish */
}

void jv_split_range(size_t n, size_t align, int id, int parts, size_t *begin, size_t *end)
{
    size_t blocks = (n + align - 1) / align;
    size_t lo = blocks * (size_t)id / (size_t)parts, hi = blocks * (size_t)(id + 1) / (size_t)parts;
    *begin = lo * align < n ? lo * align : n;
    *end = hi * align < n ? hi * align : n;
}

/* ------------------------------------------------------ the step graph -- */

/* The runner's nodes: first one Adam update per gradient region (the
 * optimiser step of the previous step, run inside this one), then the
 * model's tasks. A region's update waits for nothing and comes before the
 * tasks that read its parameters and the task that writes its gradient; a
 * run without the updates counts them as done. */
struct jv_graph_runner {
    const jv_task_graph *g;
    int n_slots, n_nodes;
    int *succ_first, *succ_n, *succ; /* per node */
    int *pred_plain, *pred_full;     /* tasks each node waits for, without and with the updates */
    float *rank;
    int *order_full;                 /* a sequential order of all nodes: each update just before its first user */
    int *by_rank;                    /* nodes, highest rank first */
    atomic_int *pending;
    atomic_uchar *claimed;
    void *pending_mem, *claimed_mem;
    atomic_int finished;
    int goal;
    const jv_step *step;
    const jv_adam_pass *adam;
};

static void *zalloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size);
}

jv_graph_runner *jv_graph_runner_new(const jv_task_graph *g, jv_error *err)
{
    jv_graph_runner *r = calloc(1, sizeof *r);
    if (!r) {
        jv_error_set(err, "out of memory for a graph of %d tasks", g->n_tasks);
        return NULL;
    }
    int S = g->n_slots, n = S + g->n_tasks;
    r->g = g;
    r->n_slots = S;
    r->n_nodes = n;
    /* the edges: a task's own, then each update's */
    size_t edges = 0;
    for (int k = 0; k < g->n_tasks; k++)
        edges += (size_t)g->tasks[k].n_succ + (size_t)g->tasks[k].n_read + 1;
    r->succ_first = zalloc((size_t)n, sizeof *r->succ_first);
    r->succ_n = zalloc((size_t)n, sizeof *r->succ_n);
    r->succ = zalloc(edges, sizeof *r->succ);
    r->pred_plain = zalloc((size_t)n, sizeof *r->pred_plain);
    r->pred_full = zalloc((size_t)n, sizeof *r->pred_full);
    r->rank = zalloc((size_t)n, sizeof *r->rank);
    r->order_full = zalloc((size_t)n, sizeof *r->order_full);
    r->by_rank = zalloc((size_t)n, sizeof *r->by_rank);
    r->pending = r->pending_mem = zalloc((size_t)n, sizeof *r->pending);
    r->claimed = r->claimed_mem = zalloc((size_t)n, sizeof *r->claimed);
    char *placed = zalloc((size_t)n, 1);
    if (!r->succ_first || !r->succ_n || !r->succ || !r->pred_plain || !r->pred_full || !r->rank ||
        !r->order_full || !r->by_rank || !r->pending || !r->claimed || !placed) {
        free(placed);
        jv_graph_runner_free(r);
        jv_error_set(err, "out of memory for a graph of %d tasks", g->n_tasks);
        return NULL;
    }
    size_t at = 0;
    for (int k = 0; k < g->n_tasks; k++) { /* the model's edges */
        const jv_task *t = &g->tasks[k];
        r->succ_first[S + k] = (int)at;
        r->succ_n[S + k] = t->n_succ;
        for (int j = 0; j < t->n_succ; j++)
            r->succ[at++] = S + g->succ[t->first_succ + j];
        r->pred_plain[S + k] = r->pred_full[S + k] = t->n_pred;
        r->rank[S + k] = t->rank;
    }
    for (int s = 0; s < S; s++) { /* each update: the readers of its parameters, and its gradient's writer */
        r->succ_first[s] = (int)at;
        for (int k = 0; k < g->n_tasks; k++) {
            const jv_task *t = &g->tasks[k];
            int uses = g->slots[s].writer == k;
            for (int j = 0; j < t->n_read && !uses; j++)
                uses = g->reads[t->first_read + j] == s;
            if (!uses)
                continue;
            r->succ[at++] = S + k;
            r->succ_n[s]++;
            r->pred_full[S + k]++;
            r->rank[s] = r->rank[S + k] > r->rank[s] ? r->rank[S + k] : r->rank[s];
        }
        r->rank[s] += 1e-3f * (float)g->slots[s].count; /* about a nanosecond a parameter */
    }
    int o = 0;
    for (int k = 0; k < g->n_tasks; k++) { /* in order, each update just before its first user */
        for (int s = 0; s < S; s++) {
            if (placed[s])
                continue;
            for (int j = 0; j < r->succ_n[s]; j++)
                if (r->succ[r->succ_first[s] + j] == S + k) {
                    r->order_full[o++] = s;
                    placed[s] = 1;
                    break;
                }
        }
        r->order_full[o++] = S + k;
    }
    for (int s = 0; s < S; s++)
        if (!placed[s])
            r->order_full[o++] = s;
    free(placed);
    for (int i = 0; i < n; i++) { /* insertion sort by rank, descending; ties keep the order */
        int v = r->order_full[i], j = i;
        for (; j > 0 && r->rank[r->by_rank[j - 1]] < r->rank[v]; j--)
            r->by_rank[j] = r->by_rank[j - 1];
        r->by_rank[j] = v;
    }
    return r;
}

void jv_graph_runner_free(jv_graph_runner *r)
{
    if (!r)
        return;
    free(r->succ_first);
    free(r->succ_n);
    free(r->succ);
    free(r->pred_plain);
    free(r->pred_full);
    free(r->rank);
    free(r->order_full);
    free(r->by_rank);
    free(r->pending_mem);
    free(r->claimed_mem);
    free(r);
}

static void run_node(const jv_graph_runner *r, int v)
{
    if (v >= r->n_slots) {
        r->g->tasks[v - r->n_slots].run(r->step);
        return;
    }
    const jv_adam_pass *a = r->adam;
    const jv_region *reg = &r->g->slots[v];
    jv_adam_update(a->cfg, a->params, a->grads, a->m, a->v, reg->first, reg->first + reg->count, a->step, a->scale);
}

/* The graphs a team runs side by side; a member takes the ready node of
 * highest rank among all of them, each graph's ranks weighted by its
 * step's rows (the estimates are for a whole batch, and a task's time
 * grows about with its rows). */
typedef struct {
    int n;
    jv_graph_runner *r[JV_GRAPHS_MAX];
    float weight[JV_GRAPHS_MAX];
} graph_set;

static void graph_member(void *arg, int id, int n)
{
    (void)id;
    (void)n;
    const graph_set *set = arg;
    int lowest[JV_GRAPHS_MAX] = {0}; /* in graph k, every node before this place in by_rank is taken */
    spin sp = {0, 0};
    for (;;) {
        jv_graph_runner *best = NULL;
        int pick = -1, unfinished = 0;
        float best_rank = 0;
        for (int k = 0; k < set->n; k++) {
            jv_graph_runner *r = set->r[k];
            if (atomic_load(&r->finished) >= r->goal)
                continue;
            unfinished = 1;
            for (int i = lowest[k]; i < r->n_nodes; i++) {
                int v = r->by_rank[i];
                if (atomic_load(&r->claimed[v])) {
                    lowest[k] += i == lowest[k];
                    continue;
                }
                if (atomic_load(&r->pending[v]) == 0) {
                    float rank = r->rank[v] * set->weight[k];
                    if (!best || rank > best_rank) {
                        best = r;
                        pick = v;
                        best_rank = rank;
                    }
                    break;
                }
            }
        }
        if (!unfinished)
            return;
        if (!best) {
            if (spin_on(&sp))
                sched_yield(); /* more threads than cores: let the one with work run */
            continue;
        }
        if (atomic_exchange(&best->claimed[pick], 1))
            continue; /* another member took it first */
        sp = (spin){0, 0};
        run_node(best, pick);
        for (int s = 0; s < best->succ_n[pick]; s++)
            atomic_fetch_sub(&best->pending[best->succ[best->succ_first[pick] + s]], 1);
        atomic_fetch_add(&best->finished, 1);
    }
}

/* Sets r up for a run on the team: every node pending on its predecessors,
 * those that do not run marked as taken. */
static void arm_runner(jv_graph_runner *r, const jv_step *s, int forward_only, const jv_adam_pass *adam)
{
    int S = r->n_slots, goal = 0;
    r->step = s;
    r->adam = adam;
    for (int v = 0; v < r->n_nodes; v++) {
        int run = v < S ? adam != NULL : !forward_only || v - S < r->g->n_forward;
        atomic_store(&r->pending[v], adam ? r->pred_full[v] : r->pred_plain[v]);
        atomic_store(&r->claimed[v], (unsigned char)!run);
        goal += run;
    }
    atomic_store(&r->finished, 0);
    r->goal = goal;
}

void jv_team_run_graph(jv_team *t, jv_graph_runner *r, const jv_step *s, int forward_only, const jv_adam_pass *adam)
{
    if (forward_only)
        adam = NULL; /* the forward pass alone reads parameters an update would have to come before */
    r->step = s;
    r->adam = adam;
    if (jv_team_size(t) == 1) {
        if (!adam) {
            jv_run_tasks(r->g, s, 0, forward_only ? r->g->n_forward : r->g->n_tasks);
            return;
        }
        for (int i = 0; i < r->n_nodes; i++)
            run_node(r, r->order_full[i]);
        return;
    }
    graph_set set = {1, {r}, {1}};
    arm_runner(r, s, forward_only, adam);
    jv_team_run(t, graph_member, &set);
}

void jv_team_run_graphs(jv_team *t, int n, jv_graph_runner *const *r, const jv_step *const *s, int forward_only)
{
    if (jv_team_size(t) == 1 || n == 1) {
        for (int k = 0; k < n; k++)
            jv_team_run_graph(t, r[k], s[k], forward_only, NULL);
        return;
    }
    graph_set set = {n, {0}, {0}};
    for (int k = 0; k < n; k++) {
        set.r[k] = r[k];
        set.weight[k] = (float)s[k]->batch;
        arm_runner(r[k], s[k], forward_only, NULL);
    }
    jv_team_run(t, graph_member, &set);
}
