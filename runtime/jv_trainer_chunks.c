/* jv_trainer_chunks.c: a training step's gradient summed over fixed chunks
 * of the batch, in one process or over several (jv_comm.h), with the same
 * bits for any number of processes.
 *
 * With --chunks C the batch's rows are cut into C fixed parts (part c holds
 * rows jv_split_range(batch, 1, c, C)); each part's gradient is computed
 * alone by the step graph, weighted by its share of the batch, and the C
 * gradients are summed along one binary tree that depends on C only: the
 * sum over parts [a, b) is the sum over [a, a + p) plus the sum over
 * [a + p, b), p the largest power of two below b - a. Process r computes
 * parts jv_split_range(C, 1, r, N). Every addition of the tree is then
 * taken on the same two operands whichever process holds them, so the
 * gradient, and everything after it, is the same bits for every N <= C.
 *
 * How the tree's upper additions travel:
 *   - when N and C / N are powers of two (the fast path), each process's
 *     parts form one subtree, and the additions above them are a reduce-
 *     scatter by recursive doubling: at level l process r and r ^ 2^l
 *     swap halves of the range they hold and each adds the half it keeps
 *     (a + b is b + a in IEEE arithmetic, so which one adds is free). Each
 *     process ends with the summed gradient of one segment of the block,
 *     1/N of it, and updates only that segment (jv_trainer_train.c);
 *   - otherwise every addition whose operands sit on two processes is a
 *     message from the right operand's holder to the left's, and process 0
 *     ends with the whole sum (slower, the same bits).
 * Segments are cut at multiples of JV_NORM_BLOCK reals: the gradient's norm
 * is the sum, in block order, of each block's sum of squares, which every
 * process can compute for its own blocks.
 */
#include <stdlib.h>
#include <string.h>

#include "jv_comm.h"
#include "jv_trainer_int.h"

static int is_power_of_two(int x)
{
    return x > 0 && (x & (x - 1)) == 0;
}

int jv_chunk_owner(const jv_reducer *r, int chunk)
{
    int p = 0;
    while (p + 1 < r->ranks && r->first_of[p + 1] <= chunk)
        p++;
    return p;
}

static size_t block_lo(const jv_reducer *r, size_t b)
{
    return b * JV_NORM_BLOCK < r->n ? b * JV_NORM_BLOCK : r->n;
}

/* The blocks [lo, hi) that process p holds after level `levels` of the
 * reduce-scatter (all of them before the first). */
static void fast_range(const jv_reducer *r, int p, int levels, size_t *lo, size_t *hi)
{
    *lo = 0;
    *hi = r->n_blocks;
    for (int l = 0; l < levels; l++) {
        size_t mid = *lo + (*hi - *lo) / 2;
        if ((p >> l) & 1)
            *lo = mid;
        else
            *hi = mid;
    }
}

int jv_reducer_init(jv_reducer *r, size_t n, int chunks, int rank, int ranks)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->chunks = chunks;
    r->rank = rank;
    r->ranks = ranks;
    r->n_blocks = (n + JV_NORM_BLOCK - 1) / JV_NORM_BLOCK;
    r->fast = is_power_of_two(ranks) && chunks % ranks == 0 && is_power_of_two(chunks / ranks);
    for (int l = 1; l < ranks; l <<= 1)
        r->levels += 1;
    for (int c = 1; c < chunks; c <<= 1)
        r->depth += 1;
    r->first_of = calloc((size_t)ranks + 1, sizeof *r->first_of);
    r->seg_lo = calloc((size_t)ranks, sizeof *r->seg_lo);
    r->seg_hi = calloc((size_t)ranks, sizeof *r->seg_hi);
    r->blk_lo = calloc((size_t)ranks, sizeof *r->blk_lo);
    r->blk_hi = calloc((size_t)ranks, sizeof *r->blk_hi);
    r->n_pool = r->depth + 3;
    r->pool = calloc((size_t)r->n_pool, sizeof *r->pool);
    r->pool_free = calloc((size_t)r->n_pool, 1);
    if (!r->first_of || !r->seg_lo || !r->seg_hi || !r->blk_lo || !r->blk_hi || !r->pool || !r->pool_free)
        return jv_fail("out of memory");
    for (int p = 0; p < ranks; p++) {
        size_t lo, hi;
        jv_split_range((size_t)chunks, 1, p, ranks, &lo, &hi);
        r->first_of[p] = (int)lo;
    }
    r->first_of[ranks] = chunks;
    for (int p = 0; p < ranks; p++) {
        size_t lo = 0, hi = p == 0 ? r->n_blocks : 0;
        if (r->fast)
            fast_range(r, p, r->levels, &lo, &hi);
        r->blk_lo[p] = lo;
        r->blk_hi[p] = hi;
        r->seg_lo[p] = block_lo(r, lo);
        r->seg_hi[p] = block_lo(r, hi);
    }
    return 0;
}

void jv_reducer_free(jv_reducer *r)
{
    for (int i = 0; r->pool && i < r->n_pool; i++)
        free(r->pool[i]);
    free(r->pool);
    free(r->pool_free);
    free(r->first_of);
    free(r->seg_lo);
    free(r->seg_hi);
    free(r->blk_lo);
    free(r->blk_hi);
    memset(r, 0, sizeof *r);
}

/* A gradient buffer from the pool (allocated the first time it is needed;
 * the recursion holds at most depth + 1 at once, and one more arrives). */
static jv_real *take(jv_reducer *r)
{
    for (int i = 0; i < r->n_pool; i++) {
        if (r->pool[i] && r->pool_free[i]) {
            r->pool_free[i] = 0;
            return r->pool[i];
        }
    }
    for (int i = 0; i < r->n_pool; i++) {
        if (!r->pool[i]) {
            r->pool[i] = jv_alloc_large((r->n ? r->n : 1) * sizeof(jv_real), 0);
            if (!r->pool[i]) {
                jv_fail("out of memory for the gradient of a chunk (%zu reals)", r->n);
                jv_comm_abort(1);
            }
            r->pool_free[i] = 0;
            return r->pool[i];
        }
    }
    jv_fail("internal error: the chunk tree needs more than %d buffers", r->n_pool);
    jv_comm_abort(70);
    return NULL;
}

static void give_back(jv_reducer *r, jv_real *g)
{
    for (int i = 0; g && i < r->n_pool; i++)
        if (r->pool[i] == g)
            r->pool_free[i] = 1;
}

static void add_into(jv_real *restrict a, const jv_real *restrict b, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++)
        a[i] += b[i];
}

/* The sum over parts [a, b), on the process holding part a (NULL on the
 * others, which send what the holder needs). Processes with no part in
 * [a, b) have nothing to do there. */
static jv_real *subtree(jv_reducer *r, int a, int b, jv_chunk_fn fn, void *ctx)
{
    int mine_lo = r->first_of[r->rank], mine_hi = r->first_of[r->rank + 1];
    if (b <= mine_lo || a >= mine_hi)
        return NULL;
    if (b - a == 1) {
        jv_real *g = take(r);
        fn(ctx, a, g);
        return g;
    }
    int p = 1;
    while (2 * p < b - a)
        p *= 2;
    int m = a + p;
    jv_real *left = subtree(r, a, m, fn, ctx);
    jv_real *right = subtree(r, m, b, fn, ctx);
    int holder = jv_chunk_owner(r, a), right_holder = jv_chunk_owner(r, m);
    if (holder == r->rank) {
        if (right_holder != r->rank) {
            right = take(r);
            jv_comm_recv(right, r->n * sizeof(jv_real), right_holder);
        }
        add_into(left, right, 0, r->n);
        give_back(r, right);
        return left;
    }
    if (right_holder == r->rank) {
        jv_comm_send(right, r->n * sizeof(jv_real), holder);
        give_back(r, right);
    }
    return NULL;
}

jv_real *jv_reducer_run(jv_reducer *r, jv_chunk_fn fn, void *ctx)
{
    if (r->result)
        give_back(r, r->result);
    int lo_part = r->first_of[r->rank], hi_part = r->first_of[r->rank + 1];
    if (!r->fast) {
        r->result = subtree(r, 0, r->chunks, fn, ctx);
        return r->result;
    }
    jv_real *g = subtree(r, lo_part, hi_part, fn, ctx), *in = r->levels ? take(r) : NULL;
    size_t lo = 0, hi = r->n_blocks;
    for (int l = 0; l < r->levels; l++) {
        size_t mid = lo + (hi - lo) / 2;
        int partner = r->rank ^ (1 << l), upper = (r->rank >> l) & 1;
        size_t keep_lo = upper ? mid : lo, keep_hi = upper ? hi : mid;
        size_t give_lo = upper ? lo : mid, give_hi = upper ? mid : hi;
        size_t k0 = block_lo(r, keep_lo), k1 = block_lo(r, keep_hi);
        size_t g0 = block_lo(r, give_lo), g1 = block_lo(r, give_hi);
        jv_comm_sendrecv(g + g0, (g1 - g0) * sizeof(jv_real), partner, in + k0, (k1 - k0) * sizeof(jv_real), partner);
        add_into(g, in, k0, k1);
        lo = keep_lo;
        hi = keep_hi;
    }
    give_back(r, in);
    r->result = g;
    return g;
}
