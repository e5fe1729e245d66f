/* jv_rng.c: streams of the counter-based generator of jv_model.h. Draw i of
 * a fill is the draw at position + i, and the position then moves past the
 * draws used, so filling in pieces gives the same numbers as filling at once.
 */
#include "jv_runtime.h"

void jv_rng_fill_normal(jv_rng *rng, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)jv_normal_at(rng->seed, rng->stream, rng->position + i);
    rng->position += n;
}

void jv_rng_fill_uniform(jv_rng *rng, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)jv_uniform_at(rng->seed, rng->stream, rng->position + i);
    rng->position += n;
}

/* 64 random bits from the next position. */
static uint64_t next_bits(jv_rng *rng)
{
    uint32_t r[4];
    jv_philox(rng->seed, rng->stream, rng->position++, r);
    return (uint64_t)r[0] << 32 | r[1];
}

/* Rejects the lowest 2^64 mod n values so every remainder is equally likely. */
uint64_t jv_rng_below(jv_rng *rng, uint64_t n)
{
    if (n <= 1)
        return 0;
    uint64_t reject_below = (0 - n) % n; /* == 2^64 mod n */
    uint64_t x;
    do
        x = next_bits(rng);
    while (x < reject_below);
    return x % n;
}

void jv_rng_shuffle(jv_rng *rng, size_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)jv_rng_below(rng, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
