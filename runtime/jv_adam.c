/* jv_adam.c: the optimiser: global gradient norm, one Adam step with bias
 * correction and norm clipping, and the linear warm-up of objective weights.
 */
#include <math.h>

#include "jv_runtime.h"

double jv_grad_norm(const float *g, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)g[i] * g[i];
    return sqrt(sum);
}

/* The factor the gradient is multiplied by: min(1, clip / norm), or 1. */
static double clip_factor(double clip, double grad_norm)
{
    if (clip <= 0 || !(grad_norm > clip))
        return 1;
    return clip / grad_norm;
}

void jv_adam_step(const jv_adam_config *cfg, float *params, const float *grads, float *m, float *v, size_t n,
                  long step, double grad_norm)
{
    double scale = clip_factor(cfg->clip, grad_norm);
    double t = step < 1 ? 1 : (double)step;
    double correct1 = 1 - pow(cfg->beta1, t);
    double correct2 = 1 - pow(cfg->beta2, t);
    for (size_t i = 0; i < n; i++) {
        double g = scale * grads[i];
        double mi = cfg->beta1 * m[i] + (1 - cfg->beta1) * g;
        double vi = cfg->beta2 * v[i] + (1 - cfg->beta2) * g * g;
        m[i] = (float)mi;
        v[i] = (float)vi;
        params[i] -= (float)(cfg->lr * (mi / correct1) / (sqrt(vi / correct2) + cfg->eps));
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
