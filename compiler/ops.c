/* ops.c: the operation table (ops.h). Every formula is checked by
 * tests/test_frontend.c (ops/ suite): it parses and names only its
 * operation's operands. */
#include <string.h>

#include "ops.h"

const char *const activation_operands[] = {"v", "g", "y", "x", NULL};
const char *const variance_operands[] = {"a", "dl", NULL};
const char *const likelihood_operands[] = {"l", "t", "lv", "g", NULL};
const char *const kl_operands[] = {"mq", "lq", "mp", "lp", "g", NULL};
const char *const normal_operands[] = {"z", "m", "lv", "g", NULL};
const char *const sample_operands[] = {"m", "lv", "eps", "g", NULL};
const char *const poe_operands[] = {"m", "lv", "t", "s", "mo", "lvo", "gm", "glv", NULL};
const char *const logmeanexp_operands[] = {"x", "top", "total", "n", "result", NULL};
const char *const softmax_operands[] = {"x", "top", "total", NULL};

/* y = act(v); the derivative from the output y where it can (no second
 * buffer), from the pre-activation x for silu. */
const activation_def activation_table[N_ACTIVATIONS] = {
    [ACT_LINEAR] = {"linear", "v", "g", READS_NOTHING, "v"},
    [ACT_RELU] = {"relu", "v > 0 ? v : 0", "y > 0 ? g : 0", READS_OUTPUT, "torch.relu(v)"},
    [ACT_LEAKY_RELU] = {"leaky_relu", "v > 0 ? v : 0.01 * v", "y > 0 ? g : 0.01 * g", READS_OUTPUT,
                        "F.leaky_relu(v, 0.01)"},
    [ACT_ELU] = {"elu", "v > 0 ? v : exp(v) - 1", "y > 0 ? g : g * (y + 1)", READS_OUTPUT, "F.elu(v)"},
    [ACT_SOFTPLUS] = {"softplus", "softplus(v)", "g * (1 - exp(-y))", READS_OUTPUT, "F.softplus(v)"},
    [ACT_TANH] = {"tanh", "tanh(v)", "g * (1 - y * y)", READS_OUTPUT, "torch.tanh(v)"},
    [ACT_SIGMOID] = {"sigmoid", "sigmoid(v)", "g * y * (1 - y)", READS_OUTPUT, "torch.sigmoid(v)"},
    [ACT_SILU] = {"silu", "v * sigmoid(v)", "g * sigmoid(x) * (1 + x * (1 - sigmoid(x)))", READS_INPUT, "F.silu(v)"},
};

const layer_def layer_table[N_LAYER_KINDS] = {
    [LAYER_DENSE] = {NULL, 1, 1, "dense layer", NULL},
    [LAYER_CONV] = {"conv", 1, 1, "convolution", "F.conv2d"},
    [LAYER_DECONV] = {"deconv", 1, 1, "transposed convolution", "F.conv_transpose2d"},
    [LAYER_FLATTEN] = {"flatten", 0, 0, "flatten", NULL},
    [LAYER_RESHAPE] = {"reshape", 0, 0, "reshape", NULL},
};

int conv_out_size(int transposed, int in, int k, int s, int p, int *exact)
{
    *exact = 1;
    if (transposed) {
        long out = (long)(in - 1) * s - 2L * p + k;
        return out < 1 ? 0 : out > 1000000 ? 1000001 : (int)out; /* too large: the caller's size check says so */
    }
    long span = (long)in + 2L * p - k;
    if (span < 0)
        return 0;
    *exact = span % s == 0;
    return (int)(span / s + 1);
}

/* σ² = softplus(a), the authors' choice, or log σ² = a. */
const variance_def variance_table[N_VARIANCES] = {
    [VAR_SOFTPLUS] = {"softplus", "log(softplus(a))", "dl * sigmoid(a) / softplus(a)", 1,
                      "mean, and variance = softplus(raw)"},
    [VAR_LOGVAR] = {"logvar", "a", "dl", 0, "mean, and log-variance = raw"},
};

const likelihood_def likelihood_table[N_LIKELIHOODS] = {
    [LIK_BERNOULLI] = {"bernoulli", NULL, "bernoulli", "logits", 0, 0,
                       {{{0}}, "softplus(l) - t * l"},
                       {{{0}}, {"g * (sigmoid(l) - t)", NULL}},
                       "sigmoid(l)", "probabilities: sigmoid of the logits", "JV_BERNOULLI"},
    [LIK_CATEGORICAL] = {"categorical", NULL, "categorical", "logits", 1, 0,
                         {{{0}}, NULL},
                         {{{0}}, {NULL, NULL}},
                         NULL, "probabilities: softmax of the logits", "JV_CATEGORICAL"},
    [LIK_GAUSSIAN] = {"gaussian", NULL, "gaussian", "mean", 0, 0,
                      {{{0}}, "0.5 * (LOG_2PI + (t - l) * (t - l))"},
                      {{{0}}, {"g * (l - t)", NULL}},
                      "l", "the mean", "JV_GAUSSIAN"},
    [LIK_GAUSSIAN_LEARNED] = {"gaussian", "learned", "gaussian(learned)", "mean", 0, 1,
                              {{{0}}, "0.5 * (LOG_2PI + lv + (t - l) * (t - l) * exp(-lv))"},
                              {{{"d", "l - t"}, {"iv", "exp(-lv)"}}, {"g * d * iv", "g * 0.5 * (1 - d * d * iv)"}},
                              "l", "the mean", "JV_GAUSSIAN_LEARNED"},
};

const formula_def kl_formula[2] = {
    [GAUSS_STANDARD] = {{{0}}, "0.5 * (exp(lq) + mq * mq - 1 - lq)"},
    [GAUSS_GENERAL] = {{{"d", "mq - mp"}}, "0.5 * (lp - lq + (exp(lq) + d * d) * exp(-lp) - 1)"},
};

const gradient_def kl_gradient[2] = {
    [GAUSS_STANDARD] = {{{"d", "mq"}, {"vq", "exp(lq)"}, {"ip", "1"}},
                        {"g * d * ip", "g * 0.5 * (vq * ip - 1)", NULL, NULL}},
    [GAUSS_GENERAL] = {{{"d", "mq - mp"}, {"vq", "exp(lq)"}, {"ip", "exp(-lp)"}},
                       {"g * d * ip", "g * 0.5 * (vq * ip - 1)", "-g * d * ip", "g * 0.5 * (1 - (vq + d * d) * ip)"}},
};

const formula_def neg_log_normal_formula[2] = {
    [GAUSS_STANDARD] = {{{0}}, "0.5 * (LOG_2PI + z * z)"},
    [GAUSS_GENERAL] = {{{"d", "z - m"}}, "0.5 * (LOG_2PI + lv + d * d * exp(-lv))"},
};

const gradient_def log_normal_gradient[2] = {
    [GAUSS_STANDARD] = {{{"d", "z"}, {"r", "d * 1"}}, {"-g * r", NULL, NULL, NULL}},
    [GAUSS_GENERAL] = {{{"d", "z - m"}, {"r", "d * exp(-lv)"}}, {"-g * r", "g * r", "g * 0.5 * (r * d - 1)", NULL}},
};

const formula_def sample_formula = {{{0}}, "m + exp(0.5 * lv) * eps"};
const gradient_def sample_gradient = {{{0}}, {"g", "0.5 * g * eps * exp(0.5 * lv)", NULL, NULL}};

const rule_def rule_table[N_RULES] = {
    [RULE_POE] = {"poe", 0, 1, 1, "the product of the experts"},
    [RULE_MOE] = {"moe", 1, 0, 0, "the uniform mixture of the experts"},
    [RULE_MOPOE] = {"mopoe", 1, 1, 1, "the uniform mixture, over the subsets of the experts, of their products"},
};

/* 1/σ² = [1] + Σ 1/σ²_i, μ = σ² Σ μ_i / σ²_i; each expert's share of the
 * precision is w = σ² / σ²_i = exp(lvo - lv). */
const formula_def poe_precision = {{{0}}, "exp(-lv)"};
const formula_def poe_weighted = {{{0}}, "m * exp(-lv)"};
const formula_def poe_logvar = {{{0}}, "-log(t)"};
const formula_def poe_mean = {{{0}}, "s / t"};
const gradient_def poe_gradient = {{{"w", "exp(lvo - lv)"}}, {"gm * w", "w * (glv - gm * (m - mo))", NULL, NULL}};

const softmax_def softmax = {"x > top ? x : top", "exp(x - top)", "top + log(total)", "exp(x - top) / total"};

const logmeanexp_def logmeanexp = {"x > top ? x : top", "exp(x - top)", "top + log(total / n)", "exp(x - result) / n"};

int find_rule(const char *word)
{
    for (int i = 0; i < N_RULES; i++)
        if (strcmp(rule_table[i].word, word) == 0)
            return i;
    return -1;
}

int find_activation(const char *word)
{
    for (int i = 0; i < N_ACTIVATIONS; i++)
        if (strcmp(activation_table[i].name, word) == 0)
            return i;
    return -1;
}

int find_layer(const char *word)
{
    for (int i = 0; i < N_LAYER_KINDS; i++)
        if (layer_table[i].word && strcmp(layer_table[i].word, word) == 0)
            return i;
    return -1;
}

int find_variance(const char *word)
{
    for (int i = 0; i < N_VARIANCES; i++)
        if (strcmp(variance_table[i].name, word) == 0)
            return i;
    return -1;
}

int find_likelihood(const char *word, const char *arg)
{
    for (int i = 0; i < N_LIKELIHOODS; i++) {
        const likelihood_def *l = &likelihood_table[i];
        if (strcmp(l->word, word) == 0 && (arg ? l->arg && strcmp(l->arg, arg) == 0 : !l->arg))
            return i;
    }
    return -1;
}
