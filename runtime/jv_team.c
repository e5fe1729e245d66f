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
    double start = 0;
    for (unsigned spins = 0;; spins++) {
        if (atomic_load(&t->generation) != seen)
            return 1;
        cpu_relax();
        if ((spins & 1023) != 1023)
            continue;
        double now = now_seconds();
        if (start == 0)
            start = now;
        else if (now - start > SPIN_SECONDS)
            break;
    }
    pthread_mutex_lock(&t->lock);
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
    double start = 0;
    for (unsigned spins = 0; atomic_load(&t->running) > 0; spins++) {
        cpu_relax();
        if ((spins & 1023) != 1023)
            continue;
        double now = now_seconds();
        if (start == 0)
            start = now;
        else if (now - start > SPIN_SECONDS)
            sched_yield(); /* more threads than cores: let the others finish */
    }
}

void jv_split_range(size_t n, size_t align, int id, int parts, size_t *begin, size_t *end)
{
    size_t blocks = (n + align - 1) / align;
    size_t lo = blocks * (size_t)id / (size_t)parts, hi = blocks * (size_t)(id + 1) / (size_t)parts;
    *begin = lo * align < n ? lo * align : n;
    *end = hi * align < n ? hi * align : n;
}

/* ------------------------------------------------------ the step graph -- */

struct jv_graph_runner {
    const jv_task_graph *g;
    int *by_rank;           /* task indices, highest rank first */
    atomic_int *pending;    /* per task: the tasks it still waits for */
    atomic_uchar *claimed;  /* per task: a member has taken it */
    void *pending_mem, *claimed_mem;
    atomic_int finished;
    int goal;               /* tasks to run: all, or the forward pass */
    const jv_step *step;
};

jv_graph_runner *jv_graph_runner_new(const jv_task_graph *g, jv_error *err)
{
    jv_graph_runner *r = calloc(1, sizeof *r);
    size_t n = (size_t)(g->n_tasks > 0 ? g->n_tasks : 1);
    if (r) {
        r->g = g;
        r->by_rank = malloc(n * sizeof *r->by_rank);
        r->pending = r->pending_mem = malloc(n * sizeof *r->pending);
        r->claimed = r->claimed_mem = malloc(n * sizeof *r->claimed);
    }
    if (!r || !r->by_rank || !r->pending || !r->claimed) {
        jv_graph_runner_free(r);
        jv_error_set(err, "out of memory for a graph of %d tasks", g->n_tasks);
        return NULL;
    }
    /* insertion sort by rank, descending; ties keep the emitted order */
    for (int i = 0; i < g->n_tasks; i++) {
        int j = i;
        for (; j > 0 && g->tasks[r->by_rank[j - 1]].rank < g->tasks[i].rank; j--)
            r->by_rank[j] = r->by_rank[j - 1];
        r->by_rank[j] = i;
    }
    return r;
}

void jv_graph_runner_free(jv_graph_runner *r)
{
    if (!r)
        return;
    free(r->by_rank);
    free(r->pending_mem);
    free(r->claimed_mem);
    free(r);
}

static void graph_member(void *arg, int id, int n)
{
    (void)id;
    (void)n;
    jv_graph_runner *r = arg;
    const jv_task_graph *g = r->g;
    int lowest = 0; /* every task before this place in by_rank is taken */
    while (atomic_load(&r->finished) < r->goal) {
        int pick = -1;
        for (int i = lowest; i < g->n_tasks; i++) {
            int k = r->by_rank[i];
            if (atomic_load(&r->claimed[k])) {
                lowest += i == lowest;
                continue;
            }
            if (atomic_load(&r->pending[k]) == 0 && !atomic_exchange(&r->claimed[k], 1)) {
                pick = k;
                break;
            }
        }
        if (pick < 0) {
            cpu_relax();
            continue;
        }
        const jv_task *t = &g->tasks[pick];
        t->run(r->step);
        for (int s = 0; s < t->n_succ; s++)
            atomic_fetch_sub(&r->pending[g->succ[t->first_succ + s]], 1);
        atomic_fetch_add(&r->finished, 1);
    }
}

void jv_team_run_graph(jv_team *t, jv_graph_runner *r, const jv_step *s, int forward_only)
{
    const jv_task_graph *g = r->g;
    int goal = forward_only ? g->n_forward : g->n_tasks;
    if (jv_team_size(t) == 1) {
        jv_run_tasks(g, s, 0, goal);
        return;
    }
    for (int k = 0; k < g->n_tasks; k++) {
        atomic_store(&r->pending[k], g->tasks[k].n_pred);
        /* the backward tasks count as taken when only the forward pass runs */
        atomic_store(&r->claimed[k], (unsigned char)(k >= goal));
    }
    atomic_store(&r->finished, 0);
    r->goal = goal;
    r->step = s;
    jv_team_run(t, graph_member, r);
}
