/* jv_adam.c: the optimiser: global gradient norm, one Adam step with bias
 * correction and norm clipping, and the linear warm-up of objective weights.
 */
#include <math.h>

#include "jv_runtime.h"

/* Eight partial sums in double: vectorisable without reassociating a
 * single sum, and the same result on every run. */
double jv_grad_norm(const float *g, size_t n)
{
    double part[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            part[k] += (double)g[i + k] * g[i + k];
    for (; i < n; i++)
        part[0] += (double)g[i] * g[i];
    double sum = 0;
    for (int k = 0; k < 8; k++)
        sum += part[k];
    return sqrt(sum);
}

/* The factor the gradient is multiplied by: min(1, clip / norm), or 1. */
static double clip_factor(double clip, double grad_norm)
{
    if (clip <= 0 || !(grad_norm > clip))
        return 1;
    return clip / grad_norm;
}

/* The loop is in single precision with its constants computed once, so it
 * vectorises: it streams four arrays of n floats and is memory-bound. */
void jv_adam_step(const jv_adam_config *cfg, float *restrict params, const float *restrict grads, float *restrict m,
                  float *restrict v, size_t n, long step, double grad_norm)
{
    double t = step < 1 ? 1 : (double)step;
    const float scale = (float)clip_factor(cfg->clip, grad_norm);
    const float b1 = (float)cfg->beta1, b2 = (float)cfg->beta2;
    const float c1 = (float)(1 - cfg->beta1), c2 = (float)(1 - cfg->beta2);
    const float step_size = (float)(cfg->lr / (1 - pow(cfg->beta1, t)));
    const float inv_correct2 = (float)(1 / (1 - pow(cfg->beta2, t)));
    const float eps = (float)cfg->eps;
    for (size_t i = 0; i < n; i++) {
        float g = scale * grads[i];
        float mi = b1 * m[i] + c1 * g;
        float vi = b2 * v[i] + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= step_size * mi / (sqrtf(vi * inv_correct2) + eps);
    }
}

double jv_hyper_value(const jv_hyper_info *h, double epoch_progress)
{
    if (!(h->warmup_epochs > 0))
        return h->value;
    double f = epoch_progress / h->warmup_epochs;
    if (f > 1)
        f = 1;
    if (f < 0)
        f = 0;
    return h->warmup_from + (h->value - h->warmup_from) * f;
}
