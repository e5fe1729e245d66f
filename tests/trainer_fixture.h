/* trainer_fixture.h: a tiny hand-written JMVAE-kl, used only to test the
 * trainer (jv_trainer.h) and the gradient check (jv_gradcheck.h) before the
 * compiler emits real models. It compiles in single or double precision.
 *
 * Modalities x (gaussian, 4 values drawn as a 2x2 image) and w (categorical,
 * 3 classes); one latent z of size 2. Linear encoders q(z|x,w) (the training
 * family) and q(z|x), with mean and softplus variance heads; linear decoders.
 * Objective, per example, averaged over the batch:
 *   rec_x + rec_w + beta * kl + alpha * kl_x
 * with rec_* the negative log-likelihoods at z = mu + sd * eps, kl = KL(q(z|x,w) || N(0,I))
 * and kl_x = KL(q(z|x,w) || q(z|x)). The backward pass is derived by hand.
 *
 * Test knobs: fixture_nan_at > 0 makes the forward call with that number
 * return a NaN term; fixture_grad_bug 1 adds a wrong term to one gradient,
 * 2 makes backward accumulate into grads without clearing them first.
 */
#ifndef TRAINER_FIXTURE_H
#define TRAINER_FIXTURE_H

#include <math.h>
#include <string.h>

#include "jv_model.h"

static int fixture_nan_at;
static int fixture_forward_calls;
static int fixture_grad_bug;

enum { FX_X = 4, FX_W = 3, FX_U = FX_X + FX_W, FX_Z = 2 };

/* Offsets of the tensors in the parameter block. */
enum {
    FX_QM_W = 0, FX_QM_B = 14, FX_QV_W = 16, FX_QV_B = 30, /* q(z|x,w): [2 x 7] weights */
    FX_RM_W = 32, FX_RM_B = 40, FX_RV_W = 42, FX_RV_B = 50, /* q(z|x): [2 x 4] weights */
    FX_PX_W = 52, FX_PX_B = 60, FX_PW_W = 64, FX_PW_B = 70, /* decoders: [4 x 2], [3 x 2] */
    FX_N_PARAMS = 73
};

/* What forward keeps per example for backward. */
enum { FX_MU = 0, FX_A = 2, FX_MU2 = 4, FX_A2 = 6, FX_ZS = 8, FX_XM = 10, FX_LW = 14, FX_ARENA = 17 };

/* y[out] = W[out x in] u + b */
static void fx_linear(const jv_real *p, int w_off, int b_off, const jv_real *u, int in, int out, jv_real *y)
{
    for (int o = 0; o < out; o++) {
        jv_real s = p[b_off + o];
        for (int i = 0; i < in; i++)
            s += p[w_off + o * in + i] * u[i];
        y[o] = s;
    }
}

/* dW += gy u^T, db += gy, and gu += W^T gy when gu is not NULL. */
static void fx_linear_back(const jv_real *p, jv_real *g, int w_off, int b_off, const jv_real *u, int in, int out,
                           const jv_real *gy, jv_real *gu)
{
    for (int o = 0; o < out; o++) {
        g[b_off + o] += gy[o];
        for (int i = 0; i < in; i++) {
            g[w_off + o * in + i] += gy[o] * u[i];
            if (gu)
                gu[i] += p[w_off + o * in + i] * gy[o];
        }
    }
}

static void fx_input(const jv_real *const *data, int b, jv_real *u)
{
    memcpy(u, data[0] + b * FX_X, FX_X * sizeof(jv_real));
    memcpy(u + FX_X, data[1] + b * FX_W, FX_W * sizeof(jv_real));
}

static jv_real fx_logsumexp(const jv_real *l, int n)
{
    jv_real top = l[0], s = 0;
    for (int j = 1; j < n; j++)
        top = l[j] > top ? l[j] : top;
    for (int j = 0; j < n; j++)
        s += JV_EXP(l[j] - top);
    return top + JV_LOG(s);
}

/* Encoders and decoders of one example, into its arena slot. */
static void fx_encode(const jv_real *p, const jv_real *u, jv_real *a)
{
    fx_linear(p, FX_QM_W, FX_QM_B, u, FX_U, FX_Z, a + FX_MU);
    fx_linear(p, FX_QV_W, FX_QV_B, u, FX_U, FX_Z, a + FX_A);
    fx_linear(p, FX_RM_W, FX_RM_B, u, FX_X, FX_Z, a + FX_MU2);
    fx_linear(p, FX_RV_W, FX_RV_B, u, FX_X, FX_Z, a + FX_A2);
}

static void fx_decode_one(const jv_real *p, const jv_real *z, jv_real *xm, jv_real *lw)
{
    fx_linear(p, FX_PX_W, FX_PX_B, z, FX_Z, FX_X, xm);
    fx_linear(p, FX_PW_W, FX_PW_B, z, FX_Z, FX_W, lw);
}

static jv_real fx_rec_x(const jv_real *x, const jv_real *xm)
{
    jv_real s = 0;
    for (int d = 0; d < FX_X; d++)
        s += (jv_real)0.5 * (JV_LOG_2PI + (x[d] - xm[d]) * (x[d] - xm[d]));
    return s;
}

static jv_real fx_rec_w(const jv_real *t, const jv_real *lw)
{
    jv_real lse = fx_logsumexp(lw, FX_W), s = 0;
    for (int j = 0; j < FX_W; j++)
        s += t[j] * (lse - lw[j]);
    return s;
}

static jv_real fx_weight(const jv_real *hyper, int i)
{
    static const jv_real spec[2] = {1, (jv_real)0.1};
    return hyper ? hyper[i] : spec[i];
}

static jv_real fixture_forward(const jv_real *params, jv_real *arena, int batch, const jv_real *const *data,
                               const jv_real *const *noise, const jv_real *hyper, const jv_real *term_scale,
                               jv_real *terms)
{
    jv_real sum[4] = {0, 0, 0, 0};
    for (int b = 0; b < batch; b++) {
        jv_real u[FX_U], *a = arena + b * FX_ARENA;
        fx_input(data, b, u);
        fx_encode(params, u, a);
        for (int k = 0; k < FX_Z; k++) {
            jv_real mu = a[FX_MU + k], var = jv_softplus(a[FX_A + k]);
            jv_real mu2 = a[FX_MU2 + k], var2 = jv_softplus(a[FX_A2 + k]);
            a[FX_ZS + k] = mu + JV_SQRT(var) * noise[0][b * FX_Z + k];
            sum[2] += (jv_real)0.5 * (var + mu * mu - 1 - JV_LOG(var));
            sum[3] += (jv_real)0.5 * (JV_LOG(var2) - JV_LOG(var) + (var + (mu - mu2) * (mu - mu2)) / var2 - 1);
        }
        fx_decode_one(params, a + FX_ZS, a + FX_XM, a + FX_LW);
        sum[0] += fx_rec_x(u, a + FX_XM);
        sum[1] += fx_rec_w(u + FX_X, a + FX_LW);
    }
    jv_real weight[4] = {1, 1, fx_weight(hyper, 0), fx_weight(hyper, 1)}, loss = 0;
    for (int t = 0; t < 4; t++) {
        terms[t] = weight[t] * (sum[t] / batch); /* the term as the spec would name it */
        loss += (term_scale ? term_scale[t] : 1) * terms[t];
    }
    if (fixture_nan_at > 0 && ++fixture_forward_calls == fixture_nan_at)
        terms[0] = (jv_real)NAN;
    return loss;
}

/* The gradients of one example's encoder outputs flow into the parameters. */
static void fx_encode_back(const jv_real *p, jv_real *g, const jv_real *u, const jv_real *gmu,
                           const jv_real *ga, const jv_real *gmu2, const jv_real *ga2)
{
    fx_linear_back(p, g, FX_QM_W, FX_QM_B, u, FX_U, FX_Z, gmu, NULL);
    fx_linear_back(p, g, FX_QV_W, FX_QV_B, u, FX_U, FX_Z, ga, NULL);
    fx_linear_back(p, g, FX_RM_W, FX_RM_B, u, FX_X, FX_Z, gmu2, NULL);
    fx_linear_back(p, g, FX_RV_W, FX_RV_B, u, FX_X, FX_Z, ga2, NULL);
}

static void fixture_backward(const jv_real *params, jv_real *grads, jv_real *arena, int batch,
                             const jv_real *const *data, const jv_real *const *noise, const jv_real *hyper,
                             const jv_real *term_scale)
{
    jv_real c[4];
    jv_real weight[4] = {1, 1, fx_weight(hyper, 0), fx_weight(hyper, 1)};
    for (int t = 0; t < 4; t++)
        c[t] = (term_scale ? term_scale[t] : 1) * weight[t] / batch;
    if (fixture_grad_bug != 2)
        memset(grads, 0, FX_N_PARAMS * sizeof(jv_real));
    for (int b = 0; b < batch; b++) {
        jv_real u[FX_U], gxm[FX_X], glw[FX_W], gz[FX_Z] = {0, 0}, gmu[FX_Z], ga[FX_Z], gmu2[FX_Z], ga2[FX_Z];
        const jv_real *a = arena + b * FX_ARENA;
        fx_input(data, b, u);
        jv_real lse = fx_logsumexp(a + FX_LW, FX_W), mass = 0;
        for (int j = 0; j < FX_W; j++)
            mass += u[FX_X + j];
        for (int d = 0; d < FX_X; d++)
            gxm[d] = c[0] * (a[FX_XM + d] - u[d]);
        for (int j = 0; j < FX_W; j++)
            glw[j] = c[1] * (JV_EXP(a[FX_LW + j] - lse) * mass - u[FX_X + j]);
        fx_linear_back(params, grads, FX_PX_W, FX_PX_B, a + FX_ZS, FX_Z, FX_X, gxm, gz);
        fx_linear_back(params, grads, FX_PW_W, FX_PW_B, a + FX_ZS, FX_Z, FX_W, glw, gz);
        for (int k = 0; k < FX_Z; k++) {
            jv_real mu = a[FX_MU + k], var = jv_softplus(a[FX_A + k]), sd = JV_SQRT(var);
            jv_real mu2 = a[FX_MU2 + k], var2 = jv_softplus(a[FX_A2 + k]), d = mu - mu2;
            jv_real eps = noise[0][b * FX_Z + k];
            gmu[k] = gz[k] + c[2] * mu + c[3] * d / var2;
            jv_real gvar = gz[k] * eps / (2 * sd) + c[2] * (jv_real)0.5 * (1 - 1 / var) +
                           c[3] * (jv_real)0.5 * (1 / var2 - 1 / var);
            ga[k] = gvar * jv_sigmoid(a[FX_A + k]);
            gmu2[k] = -c[3] * d / var2;
            ga2[k] = c[3] * (jv_real)0.5 * (1 / var2 - (var + d * d) / (var2 * var2)) * jv_sigmoid(a[FX_A2 + k]);
        }
        fx_encode_back(params, grads, u, gmu, ga, gmu2, ga2);
    }
    if (fixture_grad_bug == 1)
        grads[FX_PW_W] *= (jv_real)1.001;
}

/* z = mu + sd * noise (or mu) from one encoder; log_q of the sample. */
static void fx_posterior(const jv_real *params, int mu_w, int mu_b, int var_w, int var_b, int in, int batch,
                         const jv_real *const *data, const jv_real *const *noise, jv_real *const *latents,
                         jv_real *log_q)
{
    for (int b = 0; b < batch; b++) {
        jv_real u[FX_U], mu[FX_Z], a[FX_Z];
        fx_input(data, b, u);
        fx_linear(params, mu_w, mu_b, u, in, FX_Z, mu);
        fx_linear(params, var_w, var_b, u, in, FX_Z, a);
        log_q[b] = 0;
        for (int k = 0; k < FX_Z; k++) {
            jv_real var = jv_softplus(a[k]), e = noise ? noise[0][b * FX_Z + k] : 0;
            latents[0][b * FX_Z + k] = mu[k] + JV_SQRT(var) * e;
            log_q[b] += (jv_real)-0.5 * (JV_LOG_2PI + JV_LOG(var) + e * e);
        }
    }
}

static void fixture_posterior_xw(const jv_real *params, jv_real *arena, int batch, const jv_real *const *data,
                                 const jv_real *const *noise, jv_real *const *latents, jv_real *log_q)
{
    (void)arena;
    fx_posterior(params, FX_QM_W, FX_QM_B, FX_QV_W, FX_QV_B, FX_U, batch, data, noise, latents, log_q);
}

static void fixture_posterior_x(const jv_real *params, jv_real *arena, int batch, const jv_real *const *data,
                                const jv_real *const *noise, jv_real *const *latents, jv_real *log_q)
{
    (void)arena;
    fx_posterior(params, FX_RM_W, FX_RM_B, FX_RV_W, FX_RV_B, FX_X, batch, data, noise, latents, log_q);
}

/* Computes every modality's log-likelihood whatever `which` asks for. */
static void fixture_log_joint(const jv_real *params, jv_real *arena, int batch, const jv_real *const *data,
                              const jv_real *const *latents, jv_real *log_prior, jv_real *const *log_lik,
                              unsigned which)
{
    (void)arena;
    (void)which;
    for (int b = 0; b < batch; b++) {
        jv_real u[FX_U], xm[FX_X], lw[FX_W];
        const jv_real *z = latents[0] + b * FX_Z;
        fx_input(data, b, u);
        fx_decode_one(params, z, xm, lw);
        log_prior[b] = 0;
        for (int k = 0; k < FX_Z; k++)
            log_prior[b] += (jv_real)-0.5 * (JV_LOG_2PI + z[k] * z[k]);
        log_lik[0][b] = -fx_rec_x(u, xm);
        log_lik[1][b] = -fx_rec_w(u + FX_X, lw);
    }
}

static void fixture_decode(const jv_real *params, jv_real *arena, int batch, const jv_real *const *latents,
                           jv_real *const *out)
{
    (void)arena;
    for (int b = 0; b < batch; b++) {
        jv_real lw[FX_W];
        fx_decode_one(params, latents[0] + b * FX_Z, out[0] + b * FX_X, lw);
        jv_real lse = fx_logsumexp(lw, FX_W);
        for (int j = 0; j < FX_W; j++)
            out[1][b * FX_W + j] = JV_EXP(lw[j] - lse);
    }
}

static void fixture_sample_prior(const jv_real *params, jv_real *arena, int batch, const jv_real *const *noise,
                                 jv_real *const *latents)
{
    (void)params;
    (void)arena;
    memcpy(latents[0], noise[0], (size_t)batch * FX_Z * sizeof(jv_real));
}

static const jv_tensor_info fixture_tensors[] = {
    {"q_xw.mu.weight", 2, 7, FX_QM_W, 0, {0, 0, 0, 0}},
    {"q_xw.mu.bias", 1, 2, FX_QM_B, 1, {0, 0, 0, 0}},
    {"q_xw.var.weight", 2, 7, FX_QV_W, 0, {0, 0, 0, 0}},
    {"q_xw.var.bias", 1, 2, FX_QV_B, 1, {0, 0, 0, 0}},
    {"q_x.mu.weight", 2, 4, FX_RM_W, 0, {0, 0, 0, 0}},
    {"q_x.mu.bias", 1, 2, FX_RM_B, 1, {0, 0, 0, 0}},
    {"q_x.var.weight", 2, 4, FX_RV_W, 0, {0, 0, 0, 0}},
    {"q_x.var.bias", 1, 2, FX_RV_B, 1, {0, 0, 0, 0}},
    {"p_x.weight", 4, 2, FX_PX_W, 0, {0, 0, 0, 0}},
    {"p_x.bias", 1, 4, FX_PX_B, 1, {0, 0, 0, 0}},
    {"p_w.weight", 3, 2, FX_PW_W, 0, {0, 0, 0, 0}},
    {"p_w.bias", 1, 3, FX_PW_B, 1, {0, 0, 0, 0}},
};

/* Weights ~ 0.3 N(0,1) from the seed, one stream per tensor; biases 0. */
static void fixture_init(jv_real *params, uint64_t seed)
{
    for (int t = 0; t < 12; t++) {
        const jv_tensor_info *ti = &fixture_tensors[t];
        for (int i = 0; i < ti->rows * ti->cols; i++)
            params[ti->offset + (size_t)i] = ti->is_bias ? 0 : (jv_real)(0.3 * jv_normal_at(seed, (uint64_t)t, (uint64_t)i));
    }
}

static const jv_modality_info fixture_modalities[] = {
    {"x", FX_X, JV_GAUSSIAN, 2, 2, 1},
    {"w", FX_W, JV_CATEGORICAL, 0, 0, 1},
};
static const jv_latent_info fixture_latents[] = {{"z", FX_Z, 0}};
static const int fixture_draw_latents[] = {0};
static const jv_hyper_info fixture_hypers[] = {{"beta", 1, 0, 2}, {"alpha", 0.1, 0, 0}};
static const char *const fixture_terms[] = {"rec_x", "rec_w", "kl", "kl_x"};
static const jv_term_weight fixture_term_weights[] = {{-1, 1, 1}, {-1, 1, 1}, {0, 1, 1}, {1, 0.1, 1}};
static const jv_family_info fixture_families[] = {
    {"x,w", 3u, fixture_posterior_xw, NULL, NULL, NULL}, /* no repeated form: eval falls back on the plain one */
    {"x", 1u, fixture_posterior_x, NULL, NULL, NULL},
};

/* The step as two tasks, the backward one waiting for the forward one, as
 * the trainer runs a model's step graph. */
static void fixture_task_forward(const jv_step *s)
{
    jv_real loss = fixture_forward(s->params, s->arena, s->batch, s->data, s->noise, s->hyper, s->term_scale, s->terms);
    if (s->loss)
        *s->loss = loss;
}

static void fixture_task_backward(const jv_step *s)
{
    fixture_backward(s->params, s->grads, s->arena, s->batch, s->data, s->noise, s->hyper, s->term_scale);
    if (s->sumsq)
        s->sumsq[0] = jv_sumsq(s->grads, FX_N_PARAMS);
}

static const int fixture_succ[] = {1};
static const int fixture_reads[] = {0, 0};
static const jv_region fixture_slots[] = {{0, FX_N_PARAMS, 1}};
static const jv_task fixture_tasks[] = {{fixture_task_forward, "forward", 0, 0, 0, 1, 0, 1, 2},
                                        {fixture_task_backward, "backward", 0, 1, 1, 0, 1, 1, 1}};
static const jv_task_graph fixture_graph = {2, 1, fixture_tasks, fixture_succ, 1, fixture_slots, fixture_reads};

static const jv_model fixture_model = {
    .name = "fixture",
    .fingerprint = 0x5eed1234abcd0001ull,
    .n_modalities = 2,
    .modalities = fixture_modalities,
    .n_latents = 1,
    .latents = fixture_latents,
    .n_tensors = 12,
    .tensors = fixture_tensors,
    .n_params = FX_N_PARAMS,
    .n_hypers = 2,
    .hypers = fixture_hypers,
    .n_terms = 4,
    .term_names = fixture_terms,
    .term_weights = fixture_term_weights,
    .defaults = {.lr = 0.02, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 5, .batch = 8, .epochs = 3,
                 .seed = 1},
    .arena_per_example = FX_ARENA,
    .n_families = 2,
    .families = fixture_families,
    .incomplete = 1, /* as jmvaec's JMVAE-kl: no observed subset but the complete one has a step */
    .training_family = 0,
    .n_draws = 1, /* z, once */
    .draw_latents = fixture_draw_latents,
    .samples = 1,
    .init = fixture_init,
    .forward = fixture_forward,
    .train = &fixture_graph,
    .backward = fixture_backward,
    .log_joint = fixture_log_joint,
    .decode = fixture_decode,
    .sample_prior = fixture_sample_prior,
};

#endif
