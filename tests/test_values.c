/* test_values.c: with fixed parameters and fixed noise, the JMVAE loss and
 * each of its terms, as the generated code computes them, equal a direct
 * computation written here from the formulas of models.md (not by the
 * compiler): MLPs as plain loops, z = mu + sigma * eps, the Bernoulli and
 * categorical log-likelihoods and the KL to N(0, I). Double precision. */
#define JV_DOUBLE 1
#include "../generated/jmvae/jmvae.c"

#include <criterion/criterion.h>
#include <stdlib.h>

enum { B = 4, X = 784, W = 10, Z = 64, H = 512 };

static const jv_real *tensor(const jv_real *params, const char *name)
{
    for (int t = 0; t < jmvae_model.n_tensors; t++)
        if (strcmp(jmvae_model.tensors[t].name, name) == 0)
            return params + jmvae_model.tensors[t].offset;
    cr_assert_fail("no tensor %s", name);
    return NULL;
}

/* out[n_out] = act(in[n_in] W + b) for one example; W is [n_in x n_out]. */
static void dense(const jv_real *params, const char *net, const char *layer, const double *in, int n_in, double *out,
                  int n_out, int relu)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s.weight", net, layer);
    const jv_real *w = tensor(params, name);
    snprintf(name, sizeof name, "%s.%s.bias", net, layer);
    const jv_real *b = tensor(params, name);
    for (int j = 0; j < n_out; j++) {
        double s = b[j];
        for (int i = 0; i < n_in; i++)
            s += in[i] * w[(size_t)i * n_out + j];
        out[j] = relu && s < 0 ? 0 : s;
    }
}

static double softplus(double a)
{
    return log1p(exp(-fabs(a))) + (a > 0 ? a : 0);
}

Test(values, jmvae_terms_match_the_formulas)
{
    jv_real *params = malloc(sizeof(jv_real) * JMVAE_N_PARAMS);
    jv_real *arena = malloc(sizeof(jv_real) * JMVAE_ARENA_REALS(B));
    static jv_real x[B * X], w[B * W], eps[B * Z];
    jmvae_init(params, 42);
    for (int i = 0; i < B * X; i++)
        x[i] = jv_uniform_at(7, 1, (uint64_t)i);
    for (int b = 0; b < B; b++)
        w[b * W + (3 * b + 1) % W] = 1;
    for (int i = 0; i < B * Z; i++)
        eps[i] = jv_normal_at(7, 2, (uint64_t)i);
    const jv_real *data[2] = {x, w}, *noise[1] = {eps};
    jv_real terms[3];
    jv_real total = jmvae_forward(params, arena, B, data, noise, NULL, NULL, terms);

    double rec_x = 0, rec_w = 0, kl = 0;
    for (int b = 0; b < B; b++) {
        static double ex[H], ew[H], cat[2 * H], h[H], head[2 * Z], z[Z], d1[H], d2[H], lx[X], lw[W];
        /* q(z | x, w): x -> 512 and w -> 512, concatenated, -> 512 -> [mu, a] */
        {
            double xb[X], wb[W];
            for (int i = 0; i < X; i++)
                xb[i] = x[b * X + i];
            for (int i = 0; i < W; i++)
                wb[i] = w[b * W + i];
            dense(params, "enc_x", "h1", xb, X, ex, H, 1);
            dense(params, "enc_w", "h1", wb, W, ew, H, 1);
        }
        memcpy(cat, ex, sizeof ex);
        memcpy(cat + H, ew, sizeof ew);
        dense(params, "q_xw", "h1", cat, 2 * H, h, H, 1);
        dense(params, "q_xw", "head", h, H, head, 2 * Z, 0);
        /* sigma^2 = softplus(a); z = mu + sigma * eps; KL(N(mu, sigma^2) || N(0, I)) */
        for (int j = 0; j < Z; j++) {
            double mu = head[j], var = softplus(head[Z + j]);
            z[j] = mu + sqrt(var) * eps[b * Z + j];
            kl += 0.5 * (0 - log(var) + (var + mu * mu) / 1 - 1);
        }
        /* p(x | z): Bernoulli, log p = sum t l - softplus(l) */
        dense(params, "p_x", "h1", z, Z, d1, H, 1);
        dense(params, "p_x", "h2", d1, H, d2, H, 1);
        dense(params, "p_x", "head", d2, H, lx, X, 0);
        for (int i = 0; i < X; i++)
            rec_x -= x[b * X + i] * lx[i] - softplus(lx[i]);
        /* p(w | z): categorical, log p = l_t - logsumexp(l) */
        dense(params, "p_w", "h1", z, Z, d1, H, 1);
        dense(params, "p_w", "h2", d1, H, d2, H, 1);
        dense(params, "p_w", "head", d2, H, lw, W, 0);
        double top = lw[0], sum = 0;
        for (int i = 1; i < W; i++)
            top = lw[i] > top ? lw[i] : top;
        for (int i = 0; i < W; i++)
            sum += exp(lw[i] - top);
        rec_w -= lw[(3 * b + 1) % W] - (top + log(sum));
    }
    rec_x /= B;
    rec_w /= B;
    kl /= B;
    cr_expect_float_eq(terms[0], rec_x, 1e-9 * fabs(rec_x), "rec_x: generated %.12g, formula %.12g", terms[0], rec_x);
    cr_expect_float_eq(terms[1], rec_w, 1e-9 * fabs(rec_w), "rec_w: generated %.12g, formula %.12g", terms[1], rec_w);
    cr_expect_float_eq(terms[2], kl, 1e-9 * fabs(kl), "kl: generated %.12g, formula %.12g", terms[2], kl);
    cr_expect_float_eq(total, rec_x + rec_w + kl, 1e-9 * fabs(total));
    free(params);
    free(arena);
}

/* The repeated posterior (encoders once per run of equal rows) gives what the
 * plain one gives on the same replicated rows. */
Test(values, repeated_posterior_matches_plain)
{
    enum { U = 3, COPIES = 4, N = U * COPIES };
    jv_real *params = malloc(sizeof(jv_real) * JMVAE_N_PARAMS);
    jv_real *arena = malloc(sizeof(jv_real) * JMVAE_ARENA_REALS(N));
    static jv_real x[N * X], w[N * W], eps[N * Z], z_plain[N * Z], z_rep[N * Z], lq_plain[N], lq_rep[N];
    jmvae_init(params, 5);
    for (int r = 0; r < N; r++) {
        int example = r / COPIES;
        for (int i = 0; i < X; i++)
            x[r * X + i] = jv_uniform_at(9, (uint64_t)example, (uint64_t)i);
        w[r * W + (example * 7) % W] = 1;
    }
    for (int i = 0; i < N * Z; i++)
        eps[i] = jv_normal_at(9, 99, (uint64_t)i);
    const jv_real *data[2] = {x, w}, *noise[1] = {eps};
    jv_real *zp[1] = {z_plain}, *zr[1] = {z_rep};
    jmvae_posterior_x_w(params, arena, N, data, noise, zp, lq_plain);
    jmvae_posterior_x_w_repeated(params, arena, N, COPIES, data, noise, zr, lq_rep);
    for (int i = 0; i < N * Z; i++)
        cr_assert_float_eq(z_rep[i], z_plain[i], 1e-10 * (1 + fabs(z_plain[i])), "z[%d]: %g vs %g", i, z_rep[i], z_plain[i]);
    for (int r = 0; r < N; r++)
        cr_assert_float_eq(lq_rep[r], lq_plain[r], 1e-10 * (1 + fabs(lq_plain[r])), "log q[%d]", r);
    cr_assert(memcmp(z_plain, z_plain + Z, sizeof(jv_real) * Z) != 0, "different noise, different samples");
    free(params);
    free(arena);
}
