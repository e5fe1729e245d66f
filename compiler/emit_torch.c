/* emit_torch.c: the PyTorch back end. For model M, writes DIR/M.py, one
 * self-contained module that needs torch and numpy only:
 *
 *   the model's tables   MODALITIES, LATENTS, TENSORS (the parameter block
 *                        as checkpoints lay it out), TERMS, HYPERS, TRAIN,
 *                        FAMILIES: the same numbers as the C descriptor;
 *   the formulas         of the operation table (ops.c) the model uses, as
 *                        small functions (_kl, _log_normal, _nll_bernoulli, ...);
 *   the runtime          runtime/jv_torch.py whole: checkpoints, the C
 *                        trainer's initialisation, Layer, Net, ModelBase;
 *   class Model          the networks as submodules under the spec's names,
 *                        and one method per graph of the IR (the loss with
 *                        its terms, each posterior family, log_joint,
 *                        decode, sample_prior), printed op by op as the C
 *                        back end prints them, each block under its spec line.
 *
 * Autograd differentiates the module; the C back end's derived backward is
 * checked against it (tests/test_torch.c). Like the C files, the module
 * depends on the spec alone: no dates, paths or versions. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "formula.h"
#include "ops.h"

extern const char jv_torch_runtime[]; /* runtime/jv_torch.py, embedded by the Makefile */

typedef struct {
    FILE *out;
    ctx *c;
    const program *p;
    const sem_model *m;
    const char *spec_name;
    const char **net_attr; /* per net: its attribute on the model */
    const graph *g;
    int last_line;         /* the spec line of the last comment in the method being printed */
} torch_emitter;

__attribute__((format(printf, 2, 3))) static void put(torch_emitter *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(e->out, fmt, ap);
    va_end(ap);
}

static const char *N(torch_emitter *e, int v)
{
    return e->g->values[v].name;
}

/* A double as Python reads it back exactly, in its shortest such form
 * (0.1, not 0.10000000000000001). */
static const char *py_number(torch_emitter *e, double x)
{
    for (int digits = 1; digits < 17; digits++) {
        const char *s = arena_printf(&e->c->mem, "%.*g", digits, x);
        if (strtod(s, NULL) == x)
            return s;
    }
    return arena_printf(&e->c->mem, "%.17g", x);
}

/* ------------------------------------------------------------------ names -- */

/* Names a network's attribute may not take: Python's keywords, the
 * attributes of torch.nn.Module (PyTorch 1.13 and 2.x) and the model's own.
 * A network with such a name becomes the attribute NAME_ (its parameters
 * keep their spec names in TENSORS and checkpoints). */
static const char *const reserved_attributes[] = {
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu",
    "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers",
    "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad",
    "checkpoint_state", "seed", "parameter_of", "init_parameters", "make_optimizer", "hyper_values", "draw_noise",
    "posterior", "load_checkpoint", "save_checkpoint", "loss", "log_joint", "decode", "sample_prior",
};

/* Whether net `self` may not take `name` as its attribute: a reserved name,
 * a family's method, another net's spec name, or an earlier net's attribute. */
static int attribute_taken(torch_emitter *e, const char *name, int self)
{
    for (size_t i = 0; i < sizeof reserved_attributes / sizeof reserved_attributes[0]; i++)
        if (strcmp(name, reserved_attributes[i]) == 0)
            return 1;
    for (int f = 0; f < e->p->n_families; f++)
        if (strcmp(name, e->p->families[f]->name) == 0)
            return 1;
    for (int i = 0; i < e->m->n_nets; i++)
        if ((i < self && strcmp(name, e->net_attr[i]) == 0) || (i != self && strcmp(name, e->m->nets[i].name) == 0))
            return 1;
    return 0;
}

static void name_attributes(torch_emitter *e)
{
    e->net_attr = arena_alloc(&e->c->mem, sizeof(char *) * (size_t)(e->m->n_nets + 1));
    for (int i = 0; i < e->m->n_nets; i++) {
        const char *name = e->m->nets[i].name;
        while (attribute_taken(e, name, i))
            name = arena_printf(&e->c->mem, "%s_", name);
        e->net_attr[i] = name;
    }
}

/* "self.enc_x.h1": the layer a weight tensor belongs to, as an attribute path. */
static const char *layer_path(torch_emitter *e, int t, int net)
{
    const char *name = e->p->tensors[t].name;           /* "enc_x.h1.weight" */
    const char *layer = name + strlen(e->m->nets[net].name); /* ".h1.weight" */
    const char *end = strrchr(name, '.');
    return arena_printf(&e->c->mem, "self.%s%.*s", e->net_attr[net], (int)(end - layer), layer);
}

/* The net whose parameters tensor t is. */
static int net_of_tensor(const program *p, int t)
{
    int net = 0;
    while (net + 1 < p->m->n_nets && p->net_weight[net + 1] <= t)
        net++;
    return net;
}

/* A tensor's attribute path from the model, for TENSORS. */
static const char *tensor_attribute(torch_emitter *e, int t)
{
    int net = net_of_tensor(e->p, t);
    return arena_printf(&e->c->mem, "%s%s", e->net_attr[net], e->p->tensors[t].name + strlen(e->m->nets[net].name));
}

/* "_nll_gaussian_learned": a likelihood's helper with a suffix of its name. */
static const char *likelihood_helper(torch_emitter *e, const char *what, likelihood_kind k)
{
    const likelihood_def *l = &likelihood_table[k];
    return l->arg ? arena_printf(&e->c->mem, "_%s_%s_%s", what, l->word, l->arg)
                  : arena_printf(&e->c->mem, "_%s_%s", what, l->word);
}

/* ------------------------------------------------------------- formulas -- */

static const char *py(torch_emitter *e, const char *f, const binding *vars, int n)
{
    return formula_print(&e->c->mem, LANG_TORCH, f, vars, n);
}

/* A helper function of the formulas: `def name(args):` with its docstring,
 * its temporaries as statements, and `return <value>` (summed over the last
 * dimension with `sum`, negated with `negate`). */
static void helper(torch_emitter *e, const char *name, const char *const *args, int n_args, const char *doc,
                   const formula_def *f, int sum, int negate)
{
    binding vars[8 + MAX_LETS];
    put(e, "\n\ndef %s(", name);
    for (int i = 0; i < n_args; i++) {
        put(e, "%s%s", i ? ", " : "", args[i]);
        vars[i] = (binding){args[i], args[i]};
    }
    put(e, "):\n    \"\"\"%s\"\"\"\n", doc);
    int n = n_args;
    for (int i = 0; i < MAX_LETS && f->lets[i].name; i++) {
        put(e, "    %s = %s\n", f->lets[i].name, py(e, f->lets[i].expr, vars, n));
        vars[n++] = (binding){f->lets[i].name, f->lets[i].name};
    }
    const char *text = py(e, f->value, vars, n);
    if (sum)
        put(e, "    return %s(%s).sum(-1)\n", negate ? "-" : "", text);
    else
        put(e, "    return %s\n", text);
}

/* Which helpers the graphs use. */
typedef struct {
    int kl[2], normal[2], sample;
    int nll[N_LIKELIHOODS], mean[N_LIKELIHOODS];
    int poe, mix_logpdf, mix_sample, iw_bound;
} helpers_used;

static helpers_used find_helpers(const program *p)
{
    helpers_used u;
    memset(&u, 0, sizeof u);
    for (int i = 0; i < p->n_graphs; i++) {
        const graph *g = p->graphs[i];
        for (int k = 0; k < g->n_forward; k++) {
            const op *o = &g->ops[k];
            if (o->kind == OP_KL)
                u.kl[o->in[2] < 0 ? GAUSS_STANDARD : GAUSS_GENERAL] = 1;
            else if (o->kind == OP_LOGPDF)
                u.normal[o->in[1] < 0 ? GAUSS_STANDARD : GAUSS_GENERAL] = 1;
            else if (o->kind == OP_SAMPLE)
                u.sample = 1;
            else if (o->kind == OP_NLL)
                u.nll[o->likelihood] = 1;
            else if (o->kind == OP_DECODE_MEAN)
                u.mean[o->likelihood] = 1;
            else if (o->kind == OP_POE)
                u.poe = 1;
            else if (o->kind == OP_MIX_LOGPDF)
                u.mix_logpdf = u.normal[GAUSS_GENERAL] = 1;
            else if (o->kind == OP_MIX_SAMPLE)
                u.mix_sample = u.sample = 1;
            else if (o->kind == OP_IW_BOUND)
                u.iw_bound = 1;
        }
    }
    return u;
}

static void emit_helpers(torch_emitter *e)
{
    helpers_used u = find_helpers(e->p);
    put(e, "\n\n# ------------------------------------------------------------- formulas --\n");
    put(e, "# jmvaec's operation table (compiler/ops.c), printed for PyTorch: the C trainer\n");
    put(e, "# computes these formulas, and its derived gradients are checked against\n");
    put(e, "# autograd through them. Each sums over the last dimension where it says so.\n");
    static const char *const kl_args[] = {"mq", "lq", "mp", "lp"}, *const normal_args[] = {"z", "m", "lv"};
    if (u.kl[GAUSS_STANDARD])
        helper(e, "_kl_standard", kl_args, 2, "KL(N(mq, e^lq) || N(0, I)), summed.", &kl_formula[GAUSS_STANDARD], 1, 0);
    if (u.kl[GAUSS_GENERAL])
        helper(e, "_kl", kl_args, 4, "KL(N(mq, e^lq) || N(mp, e^lp)), summed.", &kl_formula[GAUSS_GENERAL], 1, 0);
    if (u.normal[GAUSS_STANDARD])
        helper(e, "_log_standard_normal", normal_args, 1, "log N(z; 0, I), summed.",
               &neg_log_normal_formula[GAUSS_STANDARD], 1, 1);
    if (u.normal[GAUSS_GENERAL])
        helper(e, "_log_normal", normal_args, 3, "log N(z; m, e^lv), summed.", &neg_log_normal_formula[GAUSS_GENERAL],
               1, 1);
    if (u.sample) {
        binding vars[] = {{"m", "m"}, {"lv", "lv"}, {"eps", "eps"}};
        put(e, "\n\ndef _sample(m, lv, eps):\n");
        put(e, "    \"\"\"The reparameterised sample of N(m, e^lv) from standard normal noise eps; m when eps is None.\"\"\"\n");
        put(e, "    return m if eps is None else %s\n", py(e, sample_formula.value, vars, 3));
    }
    if (u.poe) {
        binding v[] = {{"m", "m"}, {"lv", "lv"}, {"t", "t"}, {"s", "s"}};
        put(e, "\n\ndef _poe(experts, prior):\n");
        put(e, "    \"\"\"The product of Gaussian experts [(mean, log-variance), ...], with the prior\n");
        put(e, "    N(0, I) as one more when `prior`: its mean and log-variance. The\n");
        put(e, "    precisions t and the precision-weighted means s are summed expert by expert.\"\"\"\n");
        put(e, "    t, s = (1.0 if prior else 0.0), 0.0\n");
        put(e, "    for m, lv in experts:\n");
        put(e, "        t = t + %s\n        s = s + %s\n", py(e, poe_precision.value, v, 4), py(e, poe_weighted.value, v, 4));
        put(e, "    return %s, %s\n", py(e, poe_mean.value, v, 4), py(e, poe_logvar.value, v, 4));
    }
    if (u.mix_logpdf || u.iw_bound) {
        binding v[] = {{"x", "x"}, {"top", "top"}, {"total", "total"}, {"n", "n"}, {"result", "result"}};
        put(e, "\n\ndef _log_mean_exp(xs):\n");
        put(e, "    \"\"\"log of the mean of exp(x) over the list xs, and each x's share (exp(x) over\n");
        put(e, "    their sum), from the largest, as the C trainer takes them.\"\"\"\n");
        put(e, "    n = len(xs)\n    top = torch.full_like(xs[0], -math.inf)\n");
        put(e, "    for x in xs:\n        top = %s\n", py(e, logmeanexp.larger, v, 5));
        put(e, "    total = 0.0\n    for x in xs:\n        total = total + %s\n", py(e, logmeanexp.term, v, 5));
        put(e, "    result = %s\n", py(e, logmeanexp.result, v, 5));
        put(e, "    return result, [%s for x in xs]\n", py(e, logmeanexp.weight, v, 5));
    }
    if (u.mix_logpdf) {
        put(e, "\n\ndef _mix_log_density(z, components):\n");
        put(e, "    \"\"\"log of a uniform mixture's density at z: components [(mean, log-variance), ...].\"\"\"\n");
        put(e, "    return _log_mean_exp([_log_normal(z, m, lv) for m, lv in components])[0]\n");
    }
    if (u.mix_sample) {
        put(e, "\n\ndef _mix_sample(components, eps, choice):\n");
        put(e, "    \"\"\"A sample of a uniform mixture: each row's component chosen by the standard\n");
        put(e, "    normal `choice` through its distribution function, then its reparameterised\n");
        put(e, "    sample; the mean of the components' means when eps is None.\"\"\"\n");
        put(e, "    n = len(components)\n    if eps is None:\n        s = 0.0\n");
        put(e, "        for m, lv in components:\n            s = s + m\n        return s / n\n");
        put(e, "    c = (0.5 * torch.erfc(-choice.double().reshape(-1) * 0.70710678118654752) * n).long().clamp(max=n - 1)\n");
        put(e, "    means = torch.stack([m for m, lv in components])\n    logvars = torch.stack([lv for m, lv in components])\n");
        put(e, "    rows = torch.arange(means.shape[1], device=means.device)\n");
        put(e, "    return _sample(means[c, rows], logvars[c, rows], eps)\n");
    }
    if (u.iw_bound) {
        put(e, "\n\ndef _iw_bound(log_w, k):\n");
        put(e, "    \"\"\"The importance-weighted bound of K = k samples an example from the log\n");
        put(e, "    weights of the rows [batch * k] (each example's k rows in turn): minus the log\n");
        put(e, "    of the mean weight [batch], and each row's normalised weight [batch * k].\"\"\"\n");
        put(e, "    x = log_w.view(-1, k)\n");
        put(e, "    result, shares = _log_mean_exp([x[:, j] for j in range(k)])\n");
        put(e, "    return -result, torch.stack(shares, 1).reshape(-1)\n");
    }
    for (int k = 0; k < N_LIKELIHOODS; k++) {
        const likelihood_def *l = &likelihood_table[k];
        static const char *const nll_args[] = {"l", "t", "lv"};
        binding sm[] = {{"x", "l"}, {"top", "top"}, {"total", "total"}};
        if (u.nll[k] && l->normalised) {
            put(e, "\n\ndef %s(l, t):\n", likelihood_helper(e, "nll", (likelihood_kind)k));
            put(e, "    \"\"\"-log p(t | %s l) of a %s likelihood, summed: log-sum-exp(l) - t . l for targets t of any mass.\"\"\"\n",
                l->param, l->name);
            put(e, "    top = l.max(-1, keepdim=True).values  # the largest logit\n");
            put(e, "    total = (%s).sum(-1, keepdim=True)\n", py(e, softmax.term, sm, 3));
            put(e, "    return t.sum(-1) * (%s).squeeze(-1) - (t * l).sum(-1)\n", py(e, softmax.log_normaliser, sm, 3));
        } else if (u.nll[k]) {
            helper(e, likelihood_helper(e, "nll", (likelihood_kind)k), nll_args, l->has_logvar ? 3 : 2,
                   arena_printf(&e->c->mem, "-log p(t | %s l%s) of a %s likelihood, summed.", l->param,
                                l->has_logvar ? ", log-variance lv" : "", l->name),
                   &l->nll, 1, 0);
        }
        if (u.mean[k] && l->normalised) {
            put(e, "\n\ndef %s(l):\n", likelihood_helper(e, "mean", (likelihood_kind)k));
            put(e, "    \"\"\"The expected value of a %s likelihood: %s.\"\"\"\n", l->name, l->mean_what);
            put(e, "    top = l.max(-1, keepdim=True).values  # the largest logit\n");
            put(e, "    total = (%s).sum(-1, keepdim=True)\n", py(e, softmax.term, sm, 3));
            put(e, "    return %s\n", py(e, softmax.share, sm, 3));
        } else if (u.mean[k]) {
            formula_def mean = {{{0}}, l->mean};
            helper(e, likelihood_helper(e, "mean", (likelihood_kind)k), nll_args, 1,
                   arena_printf(&e->c->mem, "The expected value of a %s likelihood: %s.", l->name, l->mean_what), &mean,
                   0, 0);
        }
    }
}

/* -------------------------------------------------------------- the ops -- */

/* `# spec:line  text` over a block, once per spec line in a row. */
static void line_comment(torch_emitter *e, const op *o)
{
    if (o->line == e->last_line)
        return;
    e->last_line = o->line;
    put(e, "        # %s:%d  %s\n", e->spec_name, o->line, spec_source_line(e->c, o->line, 0));
}

static int identifier_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '.';
}

/* An activation's PyTorch function applied to `arg`: the table's text with
 * its operand, the word v, replaced. */
static const char *activation_call(torch_emitter *e, activation_kind k, const char *arg)
{
    const char *t = activation_table[k].torch;
    char *out = arena_alloc(&e->c->mem, strlen(t) * (strlen(arg) + 1) + 1);
    size_t len = 0;
    for (size_t i = 0; t[i]; i++) {
        if (t[i] == 'v' && (i == 0 || !identifier_char(t[i - 1])) && !identifier_char(t[i + 1])) {
            memcpy(out + len, arg, strlen(arg));
            len += strlen(arg);
        } else {
            out[len++] = t[i];
        }
    }
    out[len] = 0;
    return out;
}

/* `name = expr`, or for an accumulating op `name = name + expr` (- for a
 * negated one); a negated plain op gives `name = -expr`. */
static void assign_value(torch_emitter *e, const op *o, const char *expr)
{
    const char *name = N(e, o->out[0]);
    if (o->accumulate)
        put(e, "        %s = %s %s %s\n", name, name, o->sign < 0 ? "-" : "+", expr);
    else
        put(e, "        %s = %s%s\n", name, o->sign < 0 ? "-" : "", expr);
}

static void emit_conv(torch_emitter *e, const op *o)
{
    const char *call = arena_printf(&e->c->mem, "%s(%s)", layer_path(e, o->tensor, o->net), N(e, o->in[0]));
    put(e, "        %s = %s\n", N(e, o->out[0]), activation_call(e, o->act, call));
}

static void emit_affine(torch_emitter *e, const op *o)
{
    const char *args = "";
    for (int i = 0; i < o->n_in; i++)
        args = arena_printf(&e->c->mem, "%s%s%s", args, i ? ", " : "", N(e, o->in[i]));
    const char *call = arena_printf(&e->c->mem, "%s(%s)", layer_path(e, o->tensor, o->net), args);
    put(e, "        %s = %s\n", N(e, o->out[0]), activation_call(e, o->act, call));
}

static const char *subset_literal(torch_emitter *e, unsigned mask);

/* "[(m0, lv0), (m1, lv1)]": the (mean, log-variance) pairs of in[first],
 * in[first + 1], ... (n of them), detached when `detach`; given a subset,
 * built up with the pairs whose modalities it holds. Returns the list's
 * expression (a name when it was built up). */
static const char *pairs(torch_emitter *e, const op *o, int first, int n, int detach, const char *list)
{
    const char *d = detach ? ".detach()" : "";
    if (!o->conds) {
        const char *s = "";
        for (int i = 0; i < n; i++)
            s = arena_printf(&e->c->mem, "%s%s(%s%s, %s%s)", s, i ? ", " : "", N(e, o->in[first + 2 * i]), d,
                             N(e, o->in[first + 2 * i + 1]), d);
        return arena_printf(&e->c->mem, "[%s]", s);
    }
    put(e, "        %s = []\n", list);
    for (int i = 0; i < n; i++) {
        put(e, "        if %s <= given:\n", subset_literal(e, o->conds[i]));
        put(e, "            %s.append((%s%s, %s%s))\n", list, N(e, o->in[first + 2 * i]), d, N(e, o->in[first + 2 * i + 1]), d);
    }
    return list;
}

/* The term of the loss whose value v is, or -1. */
static int term_of_value(torch_emitter *e, int v)
{
    for (int t = 0; t < e->m->n_terms; t++)
        if (strcmp(N(e, v), arena_printf(&e->c->mem, "term_%s", e->m->terms[t].cname)) == 0)
            return t;
    return -1;
}

/* A term's weight inside a group's log weights: its hyper or number. */
static const char *raw_weight(torch_emitter *e, int t)
{
    const sem_term *term = &e->m->terms[t];
    if (term->hyper >= 0)
        return arena_printf(&e->c->mem, "self._hyper(hyper, \"%s\") * ", e->m->hypers[term->hyper].name);
    return term->weight == 1 ? "" : arena_printf(&e->c->mem, "%s * ", py_number(e, term->weight));
}

static void emit_op(torch_emitter *e, const op *o)
{
    const sem_model *m = e->m;
    switch (o->kind) {
    case OP_AFFINE:
        emit_affine(e, o);
        break;
    case OP_CONV:
        emit_conv(e, o);
        break;
    case OP_ADD:
        put(e, "        %s = ", N(e, o->out[0]));
        for (int j = 0; j < o->n_in; j++)
            put(e, "%s%s", j ? " + " : "", N(e, o->in[j]));
        put(e, "\n");
        break;
    case OP_GAUSS_HEAD: {
        int n = e->g->values[o->out[0]].width;
        binding a = {"a", arena_printf(&e->c->mem, "%s[:, %d:]", N(e, o->in[0]), n)};
        put(e, "        %s, %s = %s[:, :%d], %s\n", N(e, o->out[0]), N(e, o->out[1]), N(e, o->in[0]), n,
            py(e, variance_table[o->variance].logvar, &a, 1));
        break;
    }
    case OP_SAMPLE:
        put(e, "        %s = _sample(%s, %s, %s)\n", N(e, o->out[0]), N(e, o->in[0]), N(e, o->in[1]), N(e, o->in[2]));
        break;
    case OP_STD_SAMPLE:
        put(e, "        %s = %s\n", N(e, o->out[0]), N(e, o->in[0]));
        break;
    case OP_KL:
        if (o->in[2] < 0)
            assign_value(e, o, arena_printf(&e->c->mem, "_kl_standard(%s, %s)", N(e, o->in[0]), N(e, o->in[1])));
        else
            assign_value(e, o, arena_printf(&e->c->mem, "_kl(%s, %s, %s, %s)", N(e, o->in[0]), N(e, o->in[1]),
                                            N(e, o->in[2]), N(e, o->in[3])));
        break;
    case OP_LOGPDF: {
        const char *d = o->detach ? ".detach()" : ""; /* DReG: the posterior's parameters held */
        if (o->in[1] < 0)
            assign_value(e, o, arena_printf(&e->c->mem, "_log_standard_normal(%s)", N(e, o->in[0])));
        else
            assign_value(e, o, arena_printf(&e->c->mem, "_log_normal(%s, %s%s, %s%s)", N(e, o->in[0]), N(e, o->in[1]), d,
                                            N(e, o->in[2]), d));
        break;
    }
    case OP_POE: {
        const char *list = pairs(e, o, 0, o->n_in / 2, 0, "experts");
        put(e, "        %s, %s = _poe(%s, %s)\n", N(e, o->out[0]), N(e, o->out[1]), list, o->prior ? "True" : "False");
        break;
    }
    case OP_MIX_LOGPDF: {
        const char *list = pairs(e, o, 1, o->n_components, o->detach, "components");
        assign_value(e, o, arena_printf(&e->c->mem, "_mix_log_density(%s, %s)", N(e, o->in[0]), list));
        break;
    }
    case OP_MIX_SAMPLE: {
        const char *list = pairs(e, o, 2, o->n_components, 0, "components");
        put(e, "        %s = _mix_sample(%s, %s, %s)\n", N(e, o->out[0]), list, N(e, o->in[0]), N(e, o->in[1]));
        break;
    }
    case OP_EXPAND:
        put(e, "        %s = %s.repeat_interleave(%d, 0)  # each example's row for each of its samples\n", N(e, o->out[0]),
            N(e, o->in[0]), e->g->values[o->out[0]].copies);
        break;
    case OP_IW_BOUND: {
        put(e, "        %s, %s = _iw_bound(0.0", N(e, o->out[0]), N(e, o->out[1]));
        for (int j = 0; j < o->n_in; j++) {
            int t = term_of_value(e, o->in[j]);
            put(e, " - %s%s", t >= 0 ? raw_weight(e, t) : "", N(e, o->in[j]));
        }
        put(e, ", %d)\n", e->g->values[o->out[1]].copies);
        for (int i = 0; i < e->g->n_forward; i++) { /* DReG: the group's samples' gradients weighed once more */
            const op *smp = &e->g->ops[i];
            if (smp->kind == OP_SAMPLE && smp->iw == o->out[1]) {
                put(e, "        if %s.requires_grad:  # the doubly-reparameterised gradient\n", N(e, smp->out[0]));
                put(e, "            %s.register_hook(lambda g, w=%s.detach(): g * w.unsqueeze(1))\n", N(e, smp->out[0]),
                    N(e, o->out[1]));
            }
        }
        break;
    }
    case OP_NLL: {
        const char *lv = likelihood_table[o->likelihood].has_logvar ? arena_printf(&e->c->mem, ", %s", N(e, o->in[2])) : "";
        assign_value(e, o, arena_printf(&e->c->mem, "%s(%s, %s%s)", likelihood_helper(e, "nll", o->likelihood),
                                        N(e, o->in[0]), N(e, o->in[1]), lv));
        break;
    }
    case OP_LOSS:
        put(e, "        # %s:%d  the loss: each term as the spec names it (its weight times its mean\n"
               "        # over the batch), and their sum\n", e->spec_name, o->line);
        put(e, "        terms = {\n");
        int kept = -1; /* a term's values, for a zero of their type */
        for (int t = 0; t < m->n_terms && kept < 0; t++)
            kept = o->in[t];
        for (int t = 0; t < m->n_terms; t++) {
            const sem_term *term = &m->terms[t];
            if (o->in[t] < 0) {
                put(e, "            \"%s\": %s.new_zeros(()),  # not in these examples' loss\n", term->name, N(e, kept));
                continue;
            }
            double group = e->g->cut ? e->g->cut->scale[term->group] : term->scale;
            const char *scale = group != 1 ? arena_printf(&e->c->mem, "%s * ", py_number(e, group)) : "";
            const char *weight = term->hyper >= 0 ? arena_printf(&e->c->mem, "%sself._hyper(hyper, \"%s\") * ", scale,
                                                                   m->hypers[term->hyper].name)
                                 : term->weight * group == 1
                                     ? ""
                                     : arena_printf(&e->c->mem, "%s * ", py_number(e, term->weight * group));
            put(e, "            \"%s\": %s%s.mean(),\n", term->name, weight, N(e, o->in[t]));
        }
        put(e, "        }\n");
        if (o->n_in > m->n_terms) { /* the importance-weighted bound of each group */
            put(e, "        loss = 0.0");
            for (int k = m->n_terms, g = 0; k < o->n_in; k++, g++) {
                int first = -1;
                for (; first < 0 && g < m->n_groups; g += first < 0)
                    for (int t = 0; t < m->n_terms && first < 0; t++)
                        if (m->terms[t].group == g && o->in[t] >= 0)
                            first = t;
                double scale = e->g->cut ? e->g->cut->scale[g] : m->groups[g].scale;
                put(e, " + %s%s.mean()", scale != 1 ? arena_printf(&e->c->mem, "%s * ", py_number(e, scale)) : "",
                    N(e, o->in[k]));
            }
            put(e, "\n");
        }
        break;
    case OP_DECODE_MEAN:
        put(e, "        %s = %s(%s)\n", N(e, o->out[0]), likelihood_helper(e, "mean", o->likelihood), N(e, o->in[0]));
        break;
    default: /* the backward pass: autograd's */
        break;
    }
}

/* --------------------------------------------------------------- methods -- */

static int reads_value(const op *o, int v)
{
    for (int j = 0; j < o->n_in; j++)
        if (o->in[j] == v)
            return 1;
    return 0;
}

/* ("x", "w"): the modality names of a mask as a Python tuple ("x",). */
static const char *modality_tuple(torch_emitter *e, unsigned mask)
{
    const char *s = "";
    int n = 0;
    for (int i = 0; i < e->m->n_modalities; i++)
        if (mask & (1u << i))
            s = arena_printf(&e->c->mem, "%s%s\"%s\"", s, n++ ? ", " : "", e->m->modalities[i].name);
    return arena_printf(&e->c->mem, "(%s%s)", s, n == 1 ? "," : "");
}

/* {"x", "w"}: a subset of the modalities as a Python set. */
static const char *subset_literal(torch_emitter *e, unsigned mask)
{
    const char *t = modality_tuple(e, mask);
    return arena_printf(&e->c->mem, "{%.*s}", (int)strlen(t) - 2 - (t[strlen(t) - 2] == ','), t + 1);
}

/* The test that `which` (a set of names) holds a modality of the mask. */
static const char *which_test(torch_emitter *e, unsigned mask)
{
    for (int i = 0; i < e->m->n_modalities; i++)
        if (mask == 1u << i)
            return arena_printf(&e->c->mem, "\"%s\" in which", e->m->modalities[i].name);
    const char *t = modality_tuple(e, mask);
    return arena_printf(&e->c->mem, "which & {%.*s}", (int)strlen(t) - 2, t + 1);
}

/* The key of a noise value in the `noise` dict: a draw of the training step
 * ("z" at the loss's top level, "z[x+w]" in a loop's instance), a latent's
 * noise ("z"), or its mixture's choice ("z/choice"). */
static const char *noise_key(torch_emitter *e, const graph *g, const value *val)
{
    const sem_model *m = e->m;
    if (g->kind == G_TRAIN) {
        const sem_draw *d = &m->draws[val->index];
        const sem_group *grp = &m->groups[d->group];
        const char *lat = m->latents[d->latent].name;
        return grp->suffix ? arena_printf(&e->c->mem, "%s[%s]", lat, grp->suffix) : lat;
    }
    if (val->index >= m->n_latents)
        return arena_printf(&e->c->mem, "%s/choice", m->latents[val->index - m->n_latents].name);
    return m->latents[val->index].name;
}

/* The inputs of graph g: data, noise and latents read by its forward ops,
 * each fetched once, those every call needs first: the first of them gives
 * the batch the others must have (the caller's `batch` where noise comes
 * first). In log_joint, data that only some modalities' terms read is
 * fetched when `which` asks for one of them. */
static void emit_inputs(torch_emitter *e, const graph *g, int draw_noise, const unsigned *wanted, int have_batch)
{
    for (int pass = 0; pass < 2; pass++)
        for (int v = 0; v < g->n_values; v++) {
            const value *val = &g->values[v];
            if (val->kind != V_DATA && val->kind != V_NOISE && val->kind != V_LATENT_IN)
                continue;
            unsigned guard = 0;
            int read = 0;
            for (int i = 0; i < g->n_forward; i++)
                if (reads_value(&g->ops[i], v)) {
                    read = 1;
                    guard |= wanted ? wanted[i] : WANTED_BY_PRIOR;
                }
            if (!read || (guard & WANTED_BY_PRIOR ? 1 : 0) != (pass == 0))
                continue;
            const char *batch = have_batch ? ", batch" : "";
            const char *fetch;
            if (val->kind == V_DATA)
                fetch = arena_printf(&e->c->mem, "self._input(data, \"%s\"%s)", e->m->modalities[val->index].name, batch);
            else if (val->kind == V_LATENT_IN)
                fetch = arena_printf(&e->c->mem, "self._latent(latents, \"%s\"%s)", e->m->latents[val->index].name, batch);
            else
                fetch = arena_printf(&e->c->mem, "self._noise(noise, \"%s\", %d, %s, %s)", noise_key(e, g, val),
                                     val->width, val->copies > 1 ? arena_printf(&e->c->mem, "batch * %d", val->copies)
                                                                 : "batch",
                                     draw_noise ? "True" : "False");
            if (pass == 1) {
                put(e, "        %s = %s if %s else None\n", val->name, fetch, which_test(e, guard));
                continue;
            }
            put(e, "        %s = %s\n", val->name, fetch);
            if (!have_batch) {
                put(e, "        batch = %s.shape[0]\n", val->name);
                have_batch = 1;
            }
        }
}

/* One op under its spec line's comment (the loss prints its own). */
static void emit_commented(torch_emitter *e, const op *o)
{
    if (o->kind != OP_LOSS)
        line_comment(e, o);
    e->last_line = o->line;
    emit_op(e, o);
}

/* The forward ops of g, in order; in log_joint, each run of ops that the
 * same modalities need inside `if` those modalities are asked for. */
static void emit_body(torch_emitter *e, const graph *g, const unsigned *wanted)
{
    e->g = g;
    e->last_line = 0;
    for (int i = 0; i < g->n_forward;) {
        unsigned guard = wanted ? wanted[i] : g->given ? g->ops[i].guard : 0;
        if (!guard || guard == WANTED_BY_PRIOR) {
            emit_commented(e, &g->ops[i++]);
            continue;
        }
        if (wanted)
            put(e, "        if %s:\n", which_test(e, guard));
        else
            put(e, "        if %s <= given:\n", subset_literal(e, guard));
        FILE *saved = e->out;
        char *text = NULL;
        size_t len = 0;
        e->out = open_memstream(&text, &len);
        if (!e->out) {
            fprintf(stderr, "jmvaec: error: out of memory\n");
            exit(2);
        }
        for (; i < g->n_forward && (wanted ? wanted[i] : g->ops[i].guard) == guard; i++)
            emit_commented(e, &g->ops[i]);
        fclose(e->out);
        e->out = saved;
        for (const char *p = text; *p;) { /* one level deeper */
            const char *nl = strchr(p, '\n');
            int n = nl ? (int)(nl - p) : (int)strlen(p);
            put(e, "    %.*s\n", n, p);
            p += n + (nl != NULL);
        }
        free(text);
    }
}

/* {"z": z_sample, ...}: the latents a graph writes. */
static const char *latents_dict(torch_emitter *e, const graph *g, value_kind kind)
{
    const char *s = "";
    for (int l = 0; l < e->m->n_latents; l++)
        for (int v = 0; v < g->n_values; v++)
            if (g->values[v].kind == kind && g->values[v].index == l)
                s = arena_printf(&e->c->mem, "%s%s\"%s\": %s", s, *s ? ", " : "", e->m->latents[l].name, g->values[v].name);
    return arena_printf(&e->c->mem, "{%s}", s);
}

static int value_of_kind(const graph *g, value_kind kind, int index)
{
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].kind == kind && g->values[v].index == index)
            return v;
    return -1;
}

/* {"x", "w"}: a set of modalities as a Python literal. */
static const char *name_set(torch_emitter *e, unsigned set)
{
    const char *s = "";
    for (int i = 0; i < e->m->n_modalities; i++)
        if (set & (1u << i))
            s = arena_printf(&e->c->mem, "%s%s\"%s\"", s, *s ? ", " : "", e->m->modalities[i].name);
    return arena_printf(&e->c->mem, "{%s}", s);
}

/* loss() on a batch of examples that observe only some modalities: the
 * method of that subset's training graph. */
static void emit_observed_dispatch(torch_emitter *e)
{
    const sem_model *m = e->m;
    put(e, "        if observed is not None and set(observed) != %s:\n", name_set(e, (1u << m->n_modalities) - 1));
    put(e, "            only = {");
    int n = 0;
    for (int i = 0; i < e->p->n_graphs; i++) {
        const graph *g = e->p->graphs[i];
        if (g->subset)
            put(e, "%sfrozenset(%s): self._%s", n++ ? ", " : "", name_set(e, g->subset->observed), g->name);
    }
    put(e, "}.get(frozenset(observed))\n");
    put(e, "            if only is None:\n");
    put(e, "                raise ValueError(\"examples that observe only %%s contribute nothing to the loss of %s\"\n", m->name);
    put(e, "                                 %% \", \".join(sorted(observed)))\n");
    put(e, "            return only(data, noise, hyper)\n");
}

static void emit_train(torch_emitter *e, const graph *g)
{
    e->g = g;
    if (g->subset) {
        put(e, "\n    def _%s(self, data, noise=None, hyper=None):\n", g->name);
        put(e, "        \"\"\"loss() of examples that observe only %s.\"\"\"\n", g->name + strlen("train_"));
        emit_inputs(e, g, 1, NULL, 0);
        emit_body(e, g, NULL);
        put(e, "        return %s, terms\n", e->m->train.samples > 1 ? "loss" : "sum(terms.values())");
        return;
    }
    put(e, "\n    def loss(self, data, noise=None, hyper=None, observed=None):\n");
    put(e, "        \"\"\"The training objective on a batch, as the C trainer computes it: (loss,\n");
    put(e, "        terms), terms[name] each term as the spec names it (its weight times its\n");
    put(e, "        mean over the batch: kl_x = alpha * KL(...) is alpha times the mean KL) and\n");
    put(e, "        loss their sum. data: {modality: [batch x size]} (a categorical modality\n");
    put(e, "        also as [batch] class indices); noise: {latent: [batch x size]} standard\n");
    put(e, "        normal, drawn afresh when None; hyper: {name: value}, the spec's values\n");
    put(e, "        where missing (hyper_values(epoch) gives the warmed-up ones); observed: the\n");
    put(e, "        modalities every example of the batch observes (None: all), whose loss it\n");
    put(e, "        then is (terms they lack are 0).%s\"\"\"\n",
        e->m->train.samples > 1 ? arena_printf(&e->c->mem, "\n        With K = %ld samples of each draw, noise[key] is [batch * K x size]\n"
                                                            "        (each example's K rows in turn), and loss is the sum of the\n"
                                                            "        importance-weighted bounds; terms are means over the samples.",
                                               e->m->train.samples) : "");
    emit_observed_dispatch(e);
    emit_inputs(e, g, 1, NULL, 0);
    emit_body(e, g, NULL);
    if (e->m->train.samples > 1)
        put(e, "        return loss, terms\n");
    else
        put(e, "        return sum(terms.values()), terms\n");
}

static void emit_posterior(torch_emitter *e, const graph *g)
{
    e->g = g;
    const sem_model *m = e->m;
    const char *given = "", *family = "";
    for (int i = 0; i < m->n_modalities; i++)
        if (g->family_condition & (1u << i))
            given = arena_printf(&e->c->mem, "%s%s%s", given, *given ? ", " : "", m->modalities[i].name);
    for (int l = 0; l < m->n_latents; l++)
        family = arena_printf(&e->c->mem, "%s%sq(%s | %s)", family, *family ? ", " : "", m->latents[l].name, given);
    if (g->given) {
        put(e, "\n    def %s(self, data, given, noise=None):\n", g->name);
        put(e, "        \"\"\"Samples every latent from its posterior given the modalities `given` (a\n");
        put(e, "        set of names that EXPERTS covers; posterior() checks it), top-down: ({latent:\n");
        put(e, "        [batch x size]}, log q of the sample [batch]). noise: {latent: [batch x size],\n");
        put(e, "        latent/choice: [batch] for a mixture} standard normal; None gives the means.\"\"\"\n");
        emit_inputs(e, g, 0, NULL, 0);
        emit_body(e, g, NULL);
        put(e, "        return %s, %s\n", latents_dict(e, g, V_LATENT_OUT), N(e, value_of_kind(g, V_LOG_Q, 0)));
        return;
    }
    put(e, "\n    def %s(self, data, noise=None):\n", g->name);
    put(e, "        \"\"\"Samples every latent from the family %s (top-down\n", family);
    put(e, "        as the spec orders them): ({latent: [batch x size]}, log q of the sample\n");
    put(e, "        [batch]). noise: {latent: [batch x size]} standard normal; None gives each\n");
    put(e, "        posterior's mean.\"\"\"\n");
    emit_inputs(e, g, 0, NULL, 0);
    emit_body(e, g, NULL);
    put(e, "        return %s, %s\n", latents_dict(e, g, V_LATENT_OUT), N(e, value_of_kind(g, V_LOG_Q, 0)));
}

static void emit_log_joint(torch_emitter *e, const graph *g)
{
    e->g = g;
    const sem_model *m = e->m;
    put(e, "\n    def log_joint(self, data, latents, which=None):\n");
    put(e, "        \"\"\"log p(z) under the prior (top-down), and log p(m | z) of each modality m\n");
    put(e, "        in `which` (names; default: every modality with a decoder that data holds):\n");
    put(e, "        (log_prior [batch], {modality: [batch]}). Only the decoders of `which` run.\"\"\"\n");
    put(e, "        which = self._which(which, data)\n");
    unsigned *wanted = ops_wanted_by(&e->c->mem, g);
    const char *liks = "", *none = "";
    int n_liks = 0;
    for (int i = 0; i < m->n_modalities; i++)
        if (e->p->likelihood_net[i] >= 0) {
            const char *v = N(e, value_of_kind(g, V_LOG_LIK, i));
            liks = arena_printf(&e->c->mem, "%s%s(\"%s\", %s)", liks, n_liks++ ? ", " : "", m->modalities[i].name, v);
            none = arena_printf(&e->c->mem, "%s%s = ", none, v);
        }
    emit_inputs(e, g, 0, wanted, 0);
    if (n_liks)
        put(e, "        %sNone  # the modalities not in which stay None\n", none);
    emit_body(e, g, wanted);
    put(e, "        return %s, {m: v for m, v in (%s%s) if m in which}\n", N(e, value_of_kind(g, V_LOG_PRIOR, 0)), liks,
        n_liks == 1 ? "," : "");
}

static void emit_decode(torch_emitter *e, const graph *g)
{
    e->g = g;
    const sem_model *m = e->m;
    put(e, "\n    def decode(self, latents):\n");
    put(e, "        \"\"\"The expected value of every modality with a decoder, given the latents:\n");
    put(e, "        {modality: [batch x size]} (probabilities for bernoulli and categorical, the\n");
    put(e, "        mean for gaussian).\"\"\"\n");
    emit_inputs(e, g, 0, NULL, 0);
    emit_body(e, g, NULL);
    const char *outs = "";
    for (int i = 0; i < m->n_modalities; i++) {
        int v = value_of_kind(g, V_OUT, i);
        if (v >= 0)
            outs = arena_printf(&e->c->mem, "%s%s\"%s\": %s", outs, *outs ? ", " : "", m->modalities[i].name, N(e, v));
    }
    put(e, "        return {%s}\n", outs);
}

static void emit_sample_prior(torch_emitter *e, const graph *g)
{
    e->g = g;
    put(e, "\n    def sample_prior(self, noise=None, batch=None):\n");
    put(e, "        \"\"\"An ancestral sample of every latent from the prior, top-down: {latent:\n");
    put(e, "        [batch x size]}. noise: {latent: [batch x size]} standard normal, drawn\n");
    put(e, "        afresh for `batch` rows when None.\"\"\"\n");
    put(e, "        if noise is None and batch is None:\n");
    put(e, "            raise ValueError(f\"{MODEL}: sample_prior needs noise or a batch size\")\n");
    put(e, "        if batch is None:\n");
    put(e, "            batch = len(next(iter(noise.values())))\n");
    emit_inputs(e, g, 1, NULL, 1);
    emit_body(e, g, NULL);
    put(e, "        return %s\n", latents_dict(e, g, V_LATENT_OUT));
}

/* ---------------------------------------------------------------- tables -- */

static void emit_tables(torch_emitter *e)
{
    const program *p = e->p;
    const sem_model *m = e->m;
    put(e, "\nMODEL = \"%s\"\n", m->name);
    put(e, "FINGERPRINT = 0x%016llx  # of the spec's canonical form and the parameter layout\n", m->fingerprint);
    put(e, "# name: (size, likelihood, (height, width) of an image or None, has a decoder)\n");
    put(e, "MODALITIES = {\n");
    for (int i = 0; i < m->n_modalities; i++) {
        const sem_modality *mod = &m->modalities[i];
        put(e, "    \"%s\": (%d, \"%s\", %s, %s),\n", mod->name, mod->size, likelihood_table[mod->likelihood].name,
            mod->height ? arena_printf(&e->c->mem, "(%d, %d)", mod->height, mod->width) : "None",
            p->likelihood_net[i] >= 0 ? "True" : "False");
    }
    put(e, "}\n# name: size\nLATENTS = {");
    for (int i = 0; i < m->n_latents; i++)
        put(e, "%s\"%s\": %d", i ? ", " : "", m->latents[i].name, m->latents[i].size);
    put(e, "}\n");
    put(e, "# the parameter block as checkpoints lay it out: (name, rows, columns, offset,\n");
    put(e, "# is a bias, the attribute of the model that holds it); a weight is\n");
    put(e, "# [fan_in x fan_out] (y = act(x W + b)), a bias [columns]\n");
    put(e, "TENSORS = (\n");
    for (int t = 0; t < p->n_tensors; t++) {
        const tensor *ts = &p->tensors[t];
        put(e, "    (\"%s\", %d, %d, %ld, %s, \"%s\"),\n", ts->name, ts->rows, ts->cols, ts->offset,
            ts->is_bias ? "True" : "False", tensor_attribute(e, t));
    }
    put(e, ")\nN_PARAMS = %ld\n", p->n_params);
    put(e, "# the terms of the loss, in order, and each one's weight: a hyper's name or a number\n");
    put(e, "TERMS = {");
    for (int t = 0; t < m->n_terms; t++) {
        const sem_term *term = &m->terms[t];
        if (term->hyper >= 0)
            put(e, "%s\"%s\": \"%s\"", t ? ", " : "", term->name, m->hypers[term->hyper].name);
        else
            put(e, "%s\"%s\": %s", t ? ", " : "", term->name, py_number(e, term->weight));
    }
    put(e, "}\n# name: (value, warm-up from, warm-up epochs; 0: none)\nHYPERS = {");
    for (int i = 0; i < m->n_hypers; i++)
        put(e, "%s\"%s\": (%s, %s, %s)", i ? ", " : "", m->hypers[i].name, py_number(e, m->hypers[i].value),
            py_number(e, m->hypers[i].warmup_from), py_number(e, m->hypers[i].warmup_epochs));
    const sem_train *t = &m->train;
    put(e, "}\nTRAIN = {\"lr\": %s, \"beta1\": %s, \"beta2\": %s, \"eps\": %s, \"clip\": %s,\n", py_number(e, t->lr),
        py_number(e, t->beta1), py_number(e, t->beta2), py_number(e, t->eps), py_number(e, t->clip));
    put(e, "         \"batch\": %ld, \"epochs\": %ld, \"seed\": %ld}\n", t->batch, t->epochs, t->seed);
    put(e, "# the families of posteriors: the modalities each is conditioned on, and its method\n");
    put(e, "FAMILIES = {\n");
    for (int f = 0; f < p->n_families; f++)
        put(e, "    %s: \"%s\",\n", modality_tuple(e, p->families[f]->family_condition), p->families[f]->name);
    put(e, "}\nTRAINING_FAMILY = %s  # the objective samples from it\n",
        modality_tuple(e, p->families[p->training_family]->family_condition));
    put(e, "# the posteriors built from experts: each latent's experts, by the modalities they\n");
    put(e, "# read (a family given any subset serves the unions of each latent's)\nEXPERTS = {");
    for (int l = 0, n = 0; l < m->n_latents; l++) {
        if (m->latents[l].rule < 0)
            continue;
        const sem_rule *r = &m->rules[m->latents[l].rule];
        put(e, "%s\"%s\": (", n++ ? ", " : "", m->latents[l].name);
        for (int i = 0; i < r->n_experts; i++)
            put(e, "%s%s", i ? ", " : "", modality_tuple(e, m->posteriors[r->experts[i]].condition));
        put(e, "%s)", r->n_experts == 1 ? "," : "");
    }
    put(e, "}\n# the training step's draws: noise key: (latent, size); K samples of each\nDRAWS = {");
    for (int d = 0; d < m->n_draws; d++) {
        const sem_group *grp = &m->groups[m->draws[d].group];
        const char *lat = m->latents[m->draws[d].latent].name;
        put(e, "%s\"%s%s%s%s\": (\"%s\", %d)", d ? ", " : "", lat, grp->suffix ? "[" : "", grp->suffix ? grp->suffix : "",
            grp->suffix ? "]" : "", lat, m->latents[m->draws[d].latent].size);
    }
    put(e, "}\nSAMPLES = %ld\nDREG = %s  # the gradient is the doubly-reparameterised estimator\n", m->train.samples,
        m->train.gradient == GRADIENT_DREG ? "True" : "False");
    put(e, "LOG_2PI = 1.8378770664093453\n");
}

/* ----------------------------------------------------------------- class -- */

static void emit_class(torch_emitter *e)
{
    const program *p = e->p;
    const sem_model *m = e->m;
    put(e, "\n\nclass Model(ModelBase):\n");
    put(e, "    \"\"\"%s.spec as a PyTorch module. Its networks are submodules under the spec's\n", m->name);
    put(e, "    names (self.%s), each a Net of Layers h1, h2, ... and head; TENSORS\n", e->net_attr[m->net_order[0]]);
    put(e, "    lists the parameters. dtype: torch.float32 (the C trainer's) or float64.\n");
    put(e, "    The parameters start as the C trainer's do with the same seed (default\n");
    put(e, "    the spec's).\"\"\"\n\n");
    put(e, "    def __init__(self, dtype=torch.float32, seed=None):\n        super().__init__()\n");
    int last_line = 0;
    for (int o = 0; o < m->n_nets; o++) {
        int i = m->net_order[o];
        const sem_net *n = &m->nets[i];
        if (n->node->at.line != last_line)
            put(e, "        # %s:%d  %s\n", e->spec_name, n->node->at.line, spec_source_line(e->c, n->node->at.line, 0));
        last_line = n->node->at.line;
        put(e, "        self.%s = Net(", e->net_attr[i]);
        int first = 1, in = n->input_size;
        for (int l = 0; l < n->n_layers; l++) {
            const sem_layer *L = &n->layers[l];
            const char *bias = L->bias ? "" : ", bias=False";
            if (L->kind == LAYER_DENSE)
                put(e, "%sh%d=Layer(%d, %d, dtype%s)", first ? "" : ", ", l + 1, in, L->width, bias);
            else if (L->kind == LAYER_CONV || L->kind == LAYER_DECONV)
                put(e, "%sh%d=Conv((%d, %d, %d), %d, %d, %d, %d, %s, dtype%s)", first ? "" : ", ", l + 1, L->in.c, L->in.h,
                    L->in.w, L->out.c, L->kernel, L->stride, L->pad, L->kind == LAYER_DECONV ? "True" : "False", bias);
            first &= !layer_table[L->kind].weights;
            in = L->width;
        }
        if (n->head != HEAD_NONE && n->head_dense)
            put(e, "%shead=Layer(%d, %d, dtype)", first ? "" : ", ", in, n->head_size);
        put(e, ")\n");
    }
    put(e, "        self.init_parameters(seed)\n");
    for (int i = 0; i < p->n_graphs; i++) {
        const graph *g = p->graphs[i];
        switch (g->kind) {
        case G_TRAIN: emit_train(e, g); break;
        case G_POSTERIOR: emit_posterior(e, g); break;
        case G_LOG_JOINT: emit_log_joint(e, g); break;
        case G_DECODE: emit_decode(e, g); break;
        case G_SAMPLE_PRIOR: emit_sample_prior(e, g); break;
        }
    }
}

/* ---------------------------------------------------------------- module -- */

static void emit_module(FILE *out, void *arg)
{
    torch_emitter *e = arg;
    e->out = out;
    const char *model = e->m->name;
    put(e, "# %s.py: generated by jmvaec from %s. Do not edit: change the spec and recompile.\n#\n", model,
        e->spec_name);
    put(e, "# The model of %s as a PyTorch module, the twin of the C trainer jmvaec\n", e->spec_name);
    put(e, "# writes from the same spec: the same parameters under the same names and\n");
    put(e, "# layout, the same initialisation, the same loss and terms, the same posterior\n");
    put(e, "# families, and jmvaec checkpoints read and written. Each block of the methods\n");
    put(e, "# names the spec line it comes from. Needs torch and numpy only.\n#\n");
    put(e, "#     import torch, %s\n", model);
    put(e, "#     model = %s.Model()  # float32; Model(torch.float64) for double\n", model);
    put(e, "#     model.load_checkpoint(\"run/last.ckpt\")  # a checkpoint of the C trainer\n");
    put(e, "#     loss, terms = model.loss(batch)  # batch: {modality: [B x size]}\n");
    put(e, "#     loss.backward()\n");
    put(e, "#     model.save_checkpoint(\"tuned.ckpt\")  # the C trainer resumes or evaluates it\n");
    put(e, "\"\"\"%s (jmvaec) as a PyTorch module: class Model; checkpoints with\n", e->spec_name);
    put(e, "Model.load_checkpoint and Model.save_checkpoint.\"\"\"\n\n");
    put(e, "import math\nimport os\nimport struct\nimport zlib\n\nimport numpy as np\nimport torch\n"
           "import torch.nn.functional as F\n");
    emit_tables(e);
    emit_helpers(e);
    put(e, "\n\n%s", jv_torch_runtime);
    emit_class(e);
}

static torch_emitter new_emitter(ctx *c, const program *p)
{
    torch_emitter e = {NULL, c, p, p->m, spec_file_name(c), NULL, NULL, 0};
    name_attributes(&e);
    return e;
}

int emit_torch_program(ctx *c, const program *p, const char *dir)
{
    torch_emitter e = new_emitter(c, p);
    generated_file file = {arena_printf(&c->mem, "%s.py", p->m->name), emit_module, &e};
    return write_generated(c, dir, &file, 1);
}

void emit_torch_to(ctx *c, const program *p, FILE *out)
{
    torch_emitter e = new_emitter(c, p);
    emit_module(out, &e);
}
