/* specgen.h: valid specs from arbitrary bytes, for the structure-aware
 * fuzzing harness (fuzz_specgen.c) and the test that builds generated
 * specs and checks their gradients (test_codegen.c).
 *
 * Every byte is a choice (how many modalities, which likelihood, which
 * latent a decoder reads, which modalities an encoder conditions on, layer
 * widths and activations, weights, hypers and warm-ups, KL or KLsample,
 * extra posterior families and the terms between them, a `given` block for
 * the examples that observe only some modalities); when the bytes run
 * out every choice takes its first option. The result always follows the
 * rules of grammar/README.md: a latent hierarchy whose priors are normal or
 * conditional on a higher latent, posteriors that read modalities (directly,
 * through feature networks or concatenations) and condition on exactly what
 * they read, one training sample per latent, and KL terms between Gaussians
 * of one latent, so lowering, differentiation, planning and emission meet
 * shapes nobody wrote by hand. Sizes stay small, so a generated model
 * compiles and passes gradcheck in seconds.
 *
 * A quarter of the specs (or all, with specgen_write_mode's GEN_EXPERTS) are
 * of the other kind: a latent whose posteriors a rule builds from one
 * expert per modality (poe with or without the prior, moe, mopoe), maybe a
 * second latent with a network's posterior sampled at the top level, and a
 * loss of loops: over listed sets or subsets(...) with `if x in S` terms,
 * or over a mixture's components with KL or KLsample; and sometimes
 * importance-weighted training (samples = 2 or 3, with or without DReG).
 *
 * In both, a modality may be an image [c, h, w] whose encoders (those that
 * read it alone) and decoders are then sometimes convolutional: stacks of
 * convolutions and transposed convolutions of random kernels, strides,
 * paddings, activations and biases, each valid by construction, ending
 * with flatten; a decoder reshapes a dense layer and ends with a
 * convolution whose image is the likelihood's parameters.
 */
#ifndef TESTS_FUZZ_SPECGEN_H
#define TESTS_FUZZ_SPECGEN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

typedef struct {
    const uint8_t *bytes;
    size_t n, pos;
    char *out;
    size_t cap, len;
} specgen;

/* The next choice among k options. */
static inline unsigned gen_pick(specgen *g, unsigned k)
{
    if (k <= 1)
        return 0;
    unsigned b = g->pos < g->n ? g->bytes[g->pos] : 0;
    g->pos++;
    return b % k;
}

static inline void gen_put(specgen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void gen_put(specgen *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(g->out + g->len, g->len < g->cap ? g->cap - g->len : 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        g->len = g->len + (size_t)k < g->cap ? g->len + (size_t)k : g->cap;
}

enum { GEN_MAX_MOD = 4, GEN_MAX_LAT = 3, GEN_MAX_EXPERT_MOD = 3 };

/* Every likelihood and activation of the compiler's operation table (ops.c):
 * a row added there is generated here too. */

/* Hidden layers: 0 to 2 of them, small widths. */
static inline void gen_layers(specgen *g, int at_least_one)
{
    int n = (int)gen_pick(g, 3);
    if (at_least_one && n == 0)
        n = 1;
    for (int i = 0; i < n; i++)
        gen_put(g, " -> %s(%u)", activation_table[gen_pick(g, N_ACTIVATIONS)].name, 1 + gen_pick(g, 9));
}

/* An activation around a convolution, or none (a linear one); `bias=no` sometimes. */
static inline void gen_conv_layer(specgen *g, const char *word, unsigned c, unsigned k, unsigned s, unsigned p)
{
    unsigned act = gen_pick(g, N_ACTIVATIONS + 1);
    const char *bias = gen_pick(g, 3) == 0 ? ", bias=no" : "";
    if (act == N_ACTIVATIONS)
        gen_put(g, " -> %s(%u, %u, stride=%u, pad=%u%s)", word, c, k, s, p, bias);
    else
        gen_put(g, " -> %s(%s(%u, %u, stride=%u, pad=%u%s))", activation_table[act].name, word, c, k, s, p, bias);
}

/* A convolutional encoder from an image [c, h, w]: one or two convolutions
 * or transposed ones of random kernels, strides and paddings (each valid:
 * a convolution's stride divides exactly, a transposed one's output is not
 * empty), then flatten. */
static inline void gen_conv_encoder(specgen *g, unsigned c, unsigned h, unsigned w)
{
    int n = 1 + (int)gen_pick(g, 2);
    for (int i = 0; i < n; i++) {
        unsigned out = 1 + gen_pick(g, 3), k = 1 + gen_pick(g, 3), s = 1 + gen_pick(g, 2), p;
        if (gen_pick(g, 4) == 0) { /* transposed: p <= (k - 1) / 2 keeps at least one place */
            p = gen_pick(g, (k - 1) / 2 + 1);
            gen_conv_layer(g, "deconv", out, k, s, p);
            h = (h - 1) * s - 2 * p + k;
            w = (w - 1) * s - 2 * p + k;
        } else {
            p = gen_pick(g, k);
            if (h + 2 * p < k || w + 2 * p < k)
                k = 1, p = 0;
            if ((h + 2 * p - k) % s || (w + 2 * p - k) % s)
                s = 1;
            gen_conv_layer(g, "conv", out, k, s, p);
            h = (h + 2 * p - k) / s + 1;
            w = (w + 2 * p - k) / s + 1;
        }
        c = out;
    }
    (void)c;
    gen_put(g, " -> flatten");
}

/* A decoder's convolutional end from a flat value to exactly an image [c, h,
 * w] (the likelihood's parameters): a dense layer, reshape, maybe a
 * convolution that keeps the size, then a last convolution (stride 1) or
 * transposed convolution whose output is [c, h, w]. */
static inline void gen_conv_decoder(specgen *g, unsigned c, unsigned h, unsigned w)
{
    unsigned k = 1 + gen_pick(g, h < w ? h : w), p = gen_pick(g, (k - 1) / 2 + 1), c1 = 1 + gen_pick(g, 3);
    int transposed = (int)gen_pick(g, 2);
    /* the image before the last layer: a convolution of stride 1 maps h1 to h1 + 2p - k + 1, a transposed one h1 to
       h1 - 2p + k - 1 */
    unsigned h1 = transposed ? h + 2 * p - k + 1 : h + k - 1 - 2 * p, w1 = transposed ? w + 2 * p - k + 1 : w + k - 1 - 2 * p;
    gen_put(g, " -> %s(%u) -> reshape(%u, %u, %u)", activation_table[gen_pick(g, N_ACTIVATIONS)].name, c1 * h1 * w1, c1,
            h1, w1);
    if (gen_pick(g, 3) == 0) { /* a convolution that keeps the size: kernel 3, padding 1 */
        unsigned c2 = 1 + gen_pick(g, 3);
        gen_conv_layer(g, "conv", c2, 3, 1, 1);
    }
    gen_conv_layer(g, transposed ? "deconv" : "conv", c, k, 1, p);
}

static inline const char *gen_var(specgen *g)
{
    return gen_pick(g, 3) == 2 ? " var=logvar" : "";
}

/* A set of modalities as a bit mask, never empty. */
static inline unsigned gen_subset(specgen *g, int n_mod)
{
    unsigned all = (1u << n_mod) - 1, s = 1u + gen_pick(g, all);
    return s & all ? s & all : 1u;
}

static inline void gen_names(specgen *g, unsigned mask, const char *prefix)
{
    int first = 1;
    for (int m = 0; m < GEN_MAX_MOD; m++)
        if (mask >> m & 1u) {
            gen_put(g, "%s%s%d", first ? "" : ", ", prefix, m);
            first = 0;
        }
}

/* Modality m: flat, an image [2, w] read flat, or an image [c, h, w] whose
 * encoders and decoders may be convolutional (image[0] = c then, else 0). */
/* A decoder's layers: dense ones, or for an image sometimes a convolutional
 * end that gives the likelihood's parameters (twice the channels for a
 * learned variance). */
static inline void gen_decoder_layers(specgen *g, int lik, const unsigned image[3])
{
    if (image[0] && gen_pick(g, 2))
        gen_conv_decoder(g, image[0] * (likelihood_table[lik].has_logvar ? 2u : 1u), image[1], image[2]);
    else
        gen_layers(g, 0);
}

static inline void gen_modality(specgen *g, int m, int *lik, unsigned image[3])
{
    *lik = (int)gen_pick(g, N_LIKELIHOODS);
    int normalised = likelihood_table[*lik].normalised; /* at least 2 values, and no image */
    unsigned size = (normalised ? 2 : 1) + gen_pick(g, 7), shape = normalised ? 0 : gen_pick(g, 4);
    image[0] = image[1] = image[2] = 0;
    if (shape == 1) {
        gen_put(g, "modality x%d[2, %u] ~ %s\n", m, 1 + gen_pick(g, 3), likelihood_table[*lik].name);
    } else if (shape == 2) {
        image[0] = 1 + gen_pick(g, 2), image[1] = 2 + gen_pick(g, 3), image[2] = 2 + gen_pick(g, 3);
        gen_put(g, "modality x%d[%u, %u, %u] ~ %s\n", m, image[0], image[1], image[2], likelihood_table[*lik].name);
    } else {
        gen_put(g, "modality x%d[%u] ~ %s\n", m, size, likelihood_table[*lik].name);
    }
}

enum { GEN_ANY = -1, GEN_NETS = 0, GEN_EXPERTS = 1 };

static size_t specgen_experts(specgen *g, char *out, size_t cap);

/* Writes a spec into out (NUL-terminated, truncated to cap); its length.
 * mode: GEN_NETS, GEN_EXPERTS, or GEN_ANY (the bytes choose). */
static inline size_t specgen_write_mode(const uint8_t *bytes, size_t n, char *out, size_t cap, int mode)
{
    specgen g = {bytes, n, 0, out, cap, 0};
    if (mode == GEN_ANY)
        mode = gen_pick(&g, 4) == 3 ? GEN_EXPERTS : GEN_NETS;
    if (mode == GEN_EXPERTS)
        return specgen_experts(&g, out, cap);
    int n_mod = 1 + (int)gen_pick(&g, GEN_MAX_MOD), n_lat = 1 + (int)gen_pick(&g, GEN_MAX_LAT);
    int lik[GEN_MAX_MOD], parent[GEN_MAX_LAT], reads_lat[GEN_MAX_MOD];
    unsigned image[GEN_MAX_MOD][3]; /* [c, h, w] of an image read by convolutions, or c = 0 */
    gen_put(&g, "model g%u\n", gen_pick(&g, 100));
    for (int m = 0; m < n_mod; m++)
        gen_modality(&g, m, &lik[m], image[m]);
    /* latent 0 is the top; latent l > 0 has a normal prior or one conditioned on a higher latent */
    for (int l = 0; l < n_lat; l++) {
        parent[l] = l > 0 && gen_pick(&g, 2) ? (int)gen_pick(&g, (unsigned)l) : -1;
        if (parent[l] < 0)
            gen_put(&g, "latent z%d[%u] ~ normal\n", l, 1 + gen_pick(&g, 5));
        else
            gen_put(&g, "latent z%d[%u] ~ p(z%d | z%d)\n", l, 1 + gen_pick(&g, 5), l, parent[l]);
    }
    /* feature networks over modalities, read by posteriors */
    unsigned feat_mask[2] = {0, 0};
    int n_feat = (int)gen_pick(&g, 3);
    for (int f = 0; f < n_feat; f++) {
        feat_mask[f] = gen_subset(&g, n_mod);
        gen_put(&g, "net f%d = ", f);
        if (__builtin_popcount(feat_mask[f]) > 1) {
            gen_put(&g, "concat(");
            gen_names(&g, feat_mask[f], "x");
            gen_put(&g, ")");
        } else {
            gen_names(&g, feat_mask[f], "x");
            int m = __builtin_ctz(feat_mask[f]);
            if (image[m][0] && gen_pick(&g, 2))
                gen_conv_encoder(&g, image[m][0], image[m][1], image[m][2]);
        }
        gen_layers(&g, 1);
        gen_put(&g, "\n");
    }
    /* posteriors: one or two families per latent */
    unsigned post[GEN_MAX_LAT][2];
    int n_post[GEN_MAX_LAT];
    for (int l = 0; l < n_lat; l++) {
        n_post[l] = 1 + (int)gen_pick(&g, 2);
        for (int k = 0; k < n_post[l]; k++) {
            unsigned reads = gen_subset(&g, n_mod);
            int feature = n_feat > 0 && gen_pick(&g, 2) ? (int)gen_pick(&g, (unsigned)n_feat) : -1;
            unsigned cond = reads | (feature >= 0 ? feat_mask[feature] : 0);
            if (k == 1 && cond == post[l][0]) { /* a second family must differ from the first */
                n_post[l] = 1;
                break;
            }
            post[l][k] = cond;
            gen_put(&g, "net q%d_%d = ", l, k);
            int inputs = __builtin_popcount(reads) + (feature >= 0);
            if (inputs > 1)
                gen_put(&g, "concat(");
            gen_names(&g, reads, "x");
            if (feature >= 0)
                gen_put(&g, "%sf%d", reads ? ", " : "", feature);
            if (inputs > 1)
                gen_put(&g, ")");
            if (inputs == 1 && feature < 0 && image[__builtin_ctz(reads)][0] && gen_pick(&g, 2)) {
                const unsigned *im = image[__builtin_ctz(reads)];
                gen_conv_encoder(&g, im[0], im[1], im[2]);
            }
            gen_layers(&g, 0);
            gen_put(&g, " -> q(z%d | ", l);
            gen_names(&g, cond, "x");
            gen_put(&g, ")%s\n", gen_var(&g));
        }
    }
    /* conditional priors */
    for (int l = 0; l < n_lat; l++)
        if (parent[l] >= 0) {
            gen_put(&g, "net p%d = z%d", l, parent[l]);
            gen_layers(&g, 1);
            gen_put(&g, " -> p(z%d | z%d)%s\n", l, parent[l], gen_var(&g));
        }
    /* decoders: each modality from one latent, or none (then nothing reconstructs it) */
    for (int m = 0; m < n_mod; m++) {
        reads_lat[m] = m == 0 || gen_pick(&g, 5) ? (int)gen_pick(&g, (unsigned)n_lat) : -1;
        if (reads_lat[m] < 0)
            continue;
        gen_put(&g, "net d%d = z%d", m, reads_lat[m]);
        gen_decoder_layers(&g, lik[m], image[m]);
        gen_put(&g, " -> p(x%d | z%d)%s\n", m, reads_lat[m], likelihood_table[lik[m]].has_logvar ? gen_var(&g) : "");
    }
    int hyper = (int)gen_pick(&g, 3);
    if (hyper == 1)
        gen_put(&g, "hyper h = 0.%u\n", 1 + gen_pick(&g, 9));
    else if (hyper == 2)
        gen_put(&g, "hyper h = 1 warmup from 0 over %u epochs\n", 1 + gen_pick(&g, 3));
    gen_put(&g, "\nloss {\n");
    int sampled[GEN_MAX_LAT];
    for (int l = 0; l < n_lat; l++) {
        sampled[l] = (int)gen_pick(&g, (unsigned)n_post[l]);
        gen_put(&g, "  z%d ~ q(z%d | ", l, l);
        gen_names(&g, post[l][sampled[l]], "x");
        gen_put(&g, ")\n");
    }
    int terms = 0;
    for (int m = 0; m < n_mod; m++) {
        if (reads_lat[m] < 0)
            continue;
        const char *w = hyper && gen_pick(&g, 4) == 0 ? "h * " : gen_pick(&g, 4) == 0 ? "0.5 * " : "";
        gen_put(&g, "  rec%d = %s-log p(x%d | z%d)\n", m, w, m, reads_lat[m]);
        terms++;
    }
    for (int l = 0; l < n_lat; l++) {
        const char *w = hyper && gen_pick(&g, 3) == 0 ? "h * " : "";
        /* KL to the prior: analytic, or a Monte Carlo estimate at the sample */
        const char *kind = gen_pick(&g, 4) == 0 ? "KLsample" : "KL";
        gen_put(&g, "  kl%d = %s%s(q(z%d | ", l, w, kind, l);
        gen_names(&g, post[l][sampled[l]], "x");
        if (parent[l] < 0)
            gen_put(&g, ") || p(z%d))\n", l);
        else
            gen_put(&g, ") || p(z%d | z%d))\n", l, parent[l]);
        terms++;
        if (n_post[l] == 2) { /* the JMVAE-kl term between the two families */
            gen_put(&g, "  pull%d = 0.%u * KL(q(z%d | ", l, 1 + gen_pick(&g, 9), l);
            gen_names(&g, post[l][sampled[l]], "x");
            gen_put(&g, ") || q(z%d | ", l);
            gen_names(&g, post[l][1 - sampled[l]], "x");
            gen_put(&g, "))\n");
            terms++;
        }
    }
    /* sometimes, with one latent, what examples that observe only the modalities of
     * one of its posteriors (not all) contribute: a given block */
    unsigned all_mod = (1u << n_mod) - 1;
    int given = -1;
    for (int k = 0; n_lat == 1 && k < n_post[0] && given < 0; k++)
        given = post[0][k] != all_mod ? k : -1;
    if (given >= 0 && gen_pick(&g, 3) == 0) {
        unsigned o = post[0][given];
        gen_put(&g, "  given (");
        gen_names(&g, o, "x");
        gen_put(&g, ") {\n    z0 ~ q(z0 | ");
        gen_names(&g, o, "x");
        gen_put(&g, ")\n");
        for (int m = 0; m < n_mod; m++)
            if ((o & (1u << m)) && reads_lat[m] == 0)
                gen_put(&g, "    rec%d = -log p(x%d | z0)\n", m, m);
        gen_put(&g, "    kl0 = KL(q(z0 | ");
        gen_names(&g, o, "x");
        gen_put(&g, ") || p(z0))\n  }\n");
    }
    gen_put(&g, "}\n\ntrain {\n  batch = %u\n  epochs = 1\n", 1 + gen_pick(&g, 6));
    if (gen_pick(&g, 2))
        gen_put(&g, "  clip = %u\n", 1 + gen_pick(&g, 9));
    gen_put(&g, "  seed = %u\n}\n", gen_pick(&g, 256));
    (void)terms;
    if (cap)
        out[g.len < cap ? g.len : cap - 1] = 0;
    return g.len;
}

static inline size_t specgen_write(const uint8_t *bytes, size_t n, char *out, size_t cap)
{
    return specgen_write_mode(bytes, n, out, cap, GEN_ANY);
}

/* The tests' specs: 96 bytes from the xorshift generator at *state, then the spec of `mode`. */
static inline size_t specgen_from_state(uint64_t *state, int mode, char *out, size_t cap)
{
    uint8_t bytes[96];
    for (size_t i = 0; i < sizeof bytes; i++) {
        *state ^= *state << 13, *state ^= *state >> 7, *state ^= *state << 17;
        bytes[i] = (uint8_t)(*state >> 24);
    }
    return specgen_write_mode(bytes, sizeof bytes, out, cap, mode);
}

/* A spec of posteriors built from experts (see the top of the file). */
static size_t specgen_experts(specgen *gp, char *out, size_t cap)
{
    specgen g = *gp;
    /* 2 or 3 modalities: each observed subset has a training step of its own (six at 3, fourteen at 4) */
    int n_mod = 2 + (int)gen_pick(&g, GEN_MAX_EXPERT_MOD - 1), lik[GEN_MAX_MOD];
    unsigned image[GEN_MAX_MOD][3];
    gen_put(&g, "model e%u\n", gen_pick(&g, 100));
    for (int m = 0; m < n_mod; m++)
        gen_modality(&g, m, &lik[m], image[m]);
    int two = gen_pick(&g, 3) == 0; /* z1: a network's posterior, sampled at the top level */
    gen_put(&g, "latent z0[%u] ~ normal\n", 1 + gen_pick(&g, 4));
    if (two)
        gen_put(&g, "latent z1[%u] ~ normal\n", 1 + gen_pick(&g, 3));
    /* the experts: of two modalities or more */
    unsigned one = gen_pick(&g, (unsigned)n_mod), other = (one + 1 + gen_pick(&g, (unsigned)n_mod - 1)) % n_mod;
    unsigned experts = 1u << one | 1u << other; /* two different ones, however few bytes are left */
    for (int m = 0; m < n_mod; m++)
        experts |= gen_pick(&g, 2) ? 1u << m : 0u;
    int rule = (int)gen_pick(&g, N_RULES);
    int prior = rule_table[rule].takes_prior && gen_pick(&g, 2);
    const char *var = gen_var(&g);
    for (int m = 0; m < n_mod; m++)
        if (experts >> m & 1u) {
            gen_put(&g, "net e%d = x%d", m, m);
            if (image[m][0] && gen_pick(&g, 2))
                gen_conv_encoder(&g, image[m][0], image[m][1], image[m][2]);
            gen_layers(&g, 0);
            gen_put(&g, " -> q(z0 | x%d)%s\n", m, var);
        }
    gen_put(&g, "q(z0 | ");
    gen_names(&g, experts, "x");
    gen_put(&g, ") = %s(%s", rule_table[rule].word, prior ? "p(z0)" : "");
    for (int m = 0, first = !prior; m < n_mod; m++)
        if (experts >> m & 1u) {
            gen_put(&g, "%sq(z0 | x%d)", first ? "" : ", ", m);
            first = 0;
        }
    gen_put(&g, ")\n");
    unsigned z1_cond = two ? gen_subset(&g, n_mod) : 0;
    if (two) {
        gen_put(&g, "net q1 = ");
        if (__builtin_popcount(z1_cond) > 1)
            gen_put(&g, "concat(");
        gen_names(&g, z1_cond, "x");
        gen_put(&g, "%s", __builtin_popcount(z1_cond) > 1 ? ")" : "");
        gen_layers(&g, 0);
        gen_put(&g, " -> q(z1 | ");
        gen_names(&g, z1_cond, "x");
        gen_put(&g, ")%s\n", gen_var(&g));
    }
    int reads[GEN_MAX_MOD];
    for (int m = 0; m < n_mod; m++) {
        reads[m] = two && gen_pick(&g, 3) == 0 ? 1 : 0;
        gen_put(&g, "net d%d = z%d", m, reads[m]);
        gen_decoder_layers(&g, lik[m], image[m]);
        gen_put(&g, " -> p(x%d | z%d)%s\n", m, reads[m], likelihood_table[lik[m]].has_logvar ? gen_var(&g) : "");
    }
    int samples = gen_pick(&g, 3) == 0 ? 2 + (int)gen_pick(&g, 2) : 1;
    int hyper = gen_pick(&g, 2);
    if (hyper)
        gen_put(&g, "hyper h = 0.%u\n", 1 + gen_pick(&g, 9));
    const char *kl = samples > 1 ? "KLsample" : "KL";
    gen_put(&g, "\nloss {\n");
    if (two) {
        gen_put(&g, "  z1 ~ q(z1 | ");
        gen_names(&g, z1_cond, "x");
        gen_put(&g, ")\n  kl1 = %s(q(z1 | ", kl);
        gen_names(&g, z1_cond, "x");
        gen_put(&g, ") || p(z1))\n");
    }
    int mixture = rule_table[rule].mixture;
    /* a loop over a mixture's components, or over sets whose posteriors are Gaussians */
    int components = mixture && gen_pick(&g, 3) != 0;
    const char *combine = gen_pick(&g, 2) ? "mean" : "sum";
    if (components) {
        combine = gen_pick(&g, 4) ? "mean" : "sum";
        gen_put(&g, "  %s over q_c in components(q(z0 | ", combine);
        gen_names(&g, experts, "x");
        gen_put(&g, ")) {\n    z0 ~ q_c\n");
    } else {
        gen_put(&g, "  %s over S in ", combine);
        if (!mixture && gen_pick(&g, 2)) {
            gen_put(&g, "subsets(");
            gen_names(&g, experts, "x");
            gen_put(&g, ")");
        } else { /* the whole set (a product's: a Gaussian) and some single experts */
            int first = 1;
            if (!mixture) {
                gen_put(&g, "(");
                gen_names(&g, experts, "x");
                gen_put(&g, ")");
                first = 0;
            }
            for (int m = 0; m < n_mod; m++)
                if ((experts >> m & 1u) && (first || gen_pick(&g, 2))) {
                    gen_put(&g, "%s(x%d)", first ? "" : ", ", m);
                    first = 0;
                }
        }
        gen_put(&g, " {\n    z0 ~ q(z0 | S)\n");
    }
    for (int m = 0; m < n_mod; m++) {
        if (reads[m] != 0 && !(gen_pick(&g, 2)))
            continue; /* a decoder of z1 inside the loop: the top level's sample */
        const char *w = hyper && gen_pick(&g, 3) == 0 ? "h * " : "";
        int guard = !components && (experts >> m & 1u) && gen_pick(&g, 2);
        gen_put(&g, "    rec%d = %s-log p(x%d | z%d)%s%s\n", m, w, m, reads[m], guard ? " if x" : "", "");
        if (guard)
            g.len--, gen_put(&g, "%d in S\n", m);
    }
    if (components && (gen_pick(&g, 2) || samples > 1)) {
        if (strcmp(combine, "mean") == 0) { /* the mixture's KL, stratified */
            gen_put(&g, "    kl0 = KLsample(q(z0 | ");
            gen_names(&g, experts, "x");
            gen_put(&g, ") || p(z0))\n");
        } else {
            gen_put(&g, "    kl0 = KLsample(q_c || p(z0))\n");
        }
    } else if (components) {
        gen_put(&g, "    kl0 = KL(q_c || p(z0))\n");
    } else {
        gen_put(&g, "    kl0 = %s%s(q(z0 | S) || p(z0))\n", hyper && gen_pick(&g, 2) ? "h * " : "", kl);
    }
    gen_put(&g, "  }\n}\n\ntrain {\n  batch = %u\n  epochs = 1\n", 1 + gen_pick(&g, 5));
    if (samples > 1)
        gen_put(&g, "  samples = %d\n%s", samples, gen_pick(&g, 2) ? "  gradient = dreg\n" : "");
    gen_put(&g, "  seed = %u\n}\n", gen_pick(&g, 256));
    if (cap)
        out[g.len < cap ? g.len : cap - 1] = 0;
    *gp = g;
    return g.len;
}

#endif
