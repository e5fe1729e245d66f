/* test_frontend.c: the scanner, the parser and the checker: every
 * diagnostic listed in grammar/README.md, and fmt's round trip. */
#include <criterion/criterion.h>
#include <dirent.h>

#include "frontend_util.h"

/* Expects `errors` errors and a message containing `needle`. */
static void expect(const char *src, int errors, const char *needle)
{
    check_result r = check_text(src);
    cr_expect_eq(r.errors, errors, "expected %d errors, got %d:\n%s", errors, r.errors, r.text);
    if (needle)
        cr_expect(strstr(r.text, needle) != NULL, "expected '%s' in:\n%s", needle, r.text);
    free(r.text);
}

static void expect_warning(const char *src, const char *needle)
{
    check_result r = check_text(src);
    cr_expect_eq(r.errors, 0, "%s", r.text);
    cr_expect_geq(r.warnings, 1);
    cr_expect(strstr(r.text, needle) != NULL, "expected '%s' in:\n%s", needle, r.text);
    free(r.text);
}

/* ------------------------------------------------------------- scanner -- */

Test(scanner, comments_and_numbers)
{
    expect("# a comment\nmodel m /* block\ncomment */\n" "modality x[4] ~ bernoulli\nlatent z[2] ~ normal\n"
           "net enc = x -> q(z | x)\nnet p_x = z -> p(x | z)\nhyper a = 1.5e-1\n"
           "loss { z ~ q(z | x) r = -log p(x | z) k = a * KL(q(z | x) || p(z)) }\n", 0, NULL);
}

Test(scanner, unterminated_comment) { expect("model m /* never closed\n", 1, "1:9: error: unterminated comment"); }
Test(scanner, bad_character) { expect("model m\nmodality x[4] ~ bernoulli $\n", 1, "2:27: error: unexpected character '$'"); }
Test(scanner, nul_byte)
{
    check_result r;
    const char src[] = "model m\nmodality x\0[4]";
    size_t len = 0;
    FILE *out = open_memstream(&r.text, &len);
    ctx c;
    ctx_init(&c, "t.spec", out);
    ctx_set_source(&c, src, sizeof src - 1);
    parse_spec(&c);
    fclose(out);
    cr_expect_geq(c.n_errors, 1);
    cr_expect(strstr(r.text, "2:11: error: NUL byte in the spec") != NULL, "%s", r.text);
    ctx_free(&c);
    free(r.text);
}

Test(scanner, long_identifier)
{
    size_t n = 10000;
    char *src = malloc(n + 64);
    strcpy(src, "model ");
    memset(src + 6, 'a', n);
    strcpy(src + 6 + n, "\n");
    expect(src, 1, "name of 10000 characters is too long");
    free(src);
}

Test(scanner, number_overflow)
{
    expect(BASE_SPEC "net r = x -> relu(99999999999999999999)\n" BASE_LOSS, 1, "out of range");
    expect(BASE_SPEC "hyper h = 1e999\n" BASE_LOSS, 1, "number '1e999' is out of range");
}

Test(scanner, binary_garbage)
{
    char src[512];
    for (int i = 0; i < 511; i++)
        src[i] = (char)(1 + (i * 37) % 255);
    src[511] = 0;
    check_result r = check_text(src);
    /* hundreds of bad bytes: the first 50 errors are shown, then one line says it stops */
    cr_expect_geq(r.errors, 50);
    cr_expect_not_null(strstr(r.text, "too many errors; stopping"), "%s", r.text);
    size_t shown = 0;
    for (const char *p = r.text; (p = strstr(p, ": error: ")) != NULL; p++)
        shown++;
    cr_expect_eq(shown, 50, "%zu errors shown", shown);
    free(r.text);
}

/* -------------------------------------------------------------- parser -- */

Test(parser, empty_file) { expect("", 1, "1:1: error: unexpected end of file, expecting 'model'"); }
Test(parser, expecting_list) { expect("model m\nmodality x[4 bernoulli\n", 1, "unexpected name, expecting ',' or ']'"); }
Test(parser, recovers_after_syntax_errors)
{
    check_result r = check_text("model m\nmodality x[4] ~ ~ bernoulli\nlatent z[2] ~ normal\nnet enc = x -> -> relu(3)\n"
                                "net p = z\n");
    cr_expect_eq(r.errors, 3, "%s", r.text);
    cr_expect(strstr(r.text, "t.spec:2:17:") && strstr(r.text, "t.spec:4:16:") && strstr(r.text, "t.spec:5:5:"), "%s", r.text);
    free(r.text);
}
Test(checker, three_errors_three_lines)
{
    check_result r = check_text("model m\nmodality x[4] ~ bernouli\nlatent z[0] ~ normal\nnet enc = x -> rleu(3) -> q(z | x)\n"
                                "net p_x = z -> p(x | z)\n" BASE_LOSS);
    cr_expect_eq(r.errors, 3, "%s", r.text);
    cr_expect(strstr(r.text, "t.spec:2:17: error") && strstr(r.text, "t.spec:3:10: error") &&
              strstr(r.text, "t.spec:4:16: error"), "%s", r.text);
    free(r.text);
}
Test(parser, caret_under_column_with_tab)
{
    check_result r = check_text("model m\n\tmodality x[4] ~ $\n");
    cr_expect(strstr(r.text, "    2 | \tmodality x[4] ~ $\n      | \t                ^\n") != NULL, "%s", r.text);
    free(r.text);
}
Test(parser, second_loss_block) { expect(BASE_SPEC BASE_LOSS BASE_LOSS, 1, "a second 'loss' block"); }
Test(parser, var_option) { expect(BASE_SPEC "net r = x -> q(z | x) variance=softplus\n" BASE_LOSS, 1, "expecting 'var=softplus'"); }

/* ------------------------------------------------------------- checker -- */

Test(checker, valid_base) { expect(BASE_SPEC BASE_LOSS, 0, NULL); }
Test(checker, undefined_name) { expect(BASE_SPEC "net r = y -> relu(3)\n" BASE_LOSS, 1, "'y' is not declared"); }
Test(checker, duplicate_name) { expect(BASE_SPEC "hyper x = 3\n" BASE_LOSS, 1, "'x' is already declared as a modality at line 2"); }
Test(checker, wrong_kind)
{
    expect(BASE_SPEC "hyper h = 1\nnet r = h -> relu(3)\n" BASE_LOSS, 1, "'h' is a hyperparameter; a network reads");
    expect(BASE_SPEC "loss { x ~ q(z | x) rec = -log p(x | z) kl = KL(q(z | x) || p(z)) }\n", 2, "'x' is a modality, but what is sampled must be a latent");
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(z) kl = KL(q(z | x) || p(z)) }\n", 1, "-log p(...) is a reconstruction term over a modality");
    expect(BASE_SPEC "net r = z -> q(x | z)\n" BASE_LOSS, 1, "q(...) is a posterior over a latent, but 'x' is a modality");
}
Test(checker, unknown_words)
{
    expect("model m\nmodality x[4] ~ bernouli\n", 3, "unknown likelihood 'bernouli'");
    expect("model m\nmodality x[4] ~ gaussian(fixed)\n", 3, "only gaussian(learned) takes an argument");
    expect(BASE_SPEC "net r = x -> rleu(3)\n" BASE_LOSS, 1, "unknown layer 'rleu'");
    expect(BASE_SPEC "latent y[2] ~ gauss\n" BASE_LOSS, 2, "unknown prior 'gauss'");
    expect(BASE_SPEC "net r = x -> relu(1) -> q(z | x) var=sqrt\n" BASE_LOSS, 2, "unknown variance 'sqrt'");
}
Test(checker, sizes)
{
    expect("model m\nmodality x[0] ~ bernoulli\n", 3, "size 0 is out of range");
    expect(BASE_SPEC "net r = x -> relu(0)\n" BASE_LOSS, 1, "layer width 0 is out of range");
    expect("model m\nmodality x[1] ~ categorical\n", 3, "needs at least 2 classes");
    expect("model m\nmodality x[2, 2, 2, 2] ~ bernoulli\n", 3, "has 4 dimensions");
    expect(BASE_SPEC "net a = x -> relu(3)\nnet b = z -> relu(5)\nnet r = sum(a, b) -> relu(3)\n" BASE_LOSS, 1,
           "needs inputs of one size, but they are 3 and 5");
}
#define IMAGE_SPEC "model m\nmodality x[3, 8, 8] ~ bernoulli\nlatent z[2] ~ normal\n"
#define IMAGE_LOSS "net p_x = z -> relu(192) -> p(x | z)\nloss {\n  z ~ q(z | x)\n  r = -log p(x | z)\n}\n"
Test(checker, convolution_shapes)
{
    /* what each layer gives, and the messages of a wrong shape */
    expect(IMAGE_SPEC "net q_x = x -> relu(conv(4, 4, stride=2, pad=1)) -> flatten -> q(z | x)\n" IMAGE_LOSS, 0, NULL);
    expect(IMAGE_SPEC "net q_x = x -> relu(conv(4, 3, stride=2)) -> flatten -> q(z | x)\n" IMAGE_LOSS, 1,
           "8 + 2 * 0 - 3 = 5 is not a multiple of the stride");
    expect(IMAGE_SPEC "net q_x = x -> relu(conv(4, 4, stride=2, pad=1)) -> q(z | x)\n" IMAGE_LOSS, 1,
           "gives an image [4, 4, 4]: write flatten before the head");
    expect(IMAGE_SPEC "net q_x = x -> conv(4, 4, stride=2, pad=1) -> relu(8) -> q(z | x)\n" IMAGE_LOSS, 1,
           "a dense layer reads flat values, but layer 1 of network 'q_x' (convolution) gives an image [4, 4, 4]");
    expect(IMAGE_SPEC "net q_x = x -> relu(8) -> q(z | x)\n"
           "net p_x = z -> relu(32) -> reshape(2, 4, 4) -> deconv(3, 4, stride=2, pad=1) -> p(x | z)\n"
           "loss {\n  z ~ q(z | x)\n  r = -log p(x | z)\n}\n", 0, NULL);
    expect(IMAGE_SPEC "net q_x = x -> relu(8) -> q(z | x)\n"
           "net p_x = z -> relu(32) -> reshape(2, 4, 4) -> deconv(1, 4, stride=2, pad=1) -> p(x | z)\n"
           "loss {\n  z ~ q(z | x)\n  r = -log p(x | z)\n}\n", 1, "but p(x | ...) reads [3, 8, 8] from it");
    expect(IMAGE_SPEC "net q_x = x -> relu(8) -> q(z | x)\n"
           "net p_x = z -> relu(30) -> reshape(2, 4, 4) -> deconv(3, 4, stride=2, pad=1) -> p(x | z)\n"
           "loss {\n  z ~ q(z | x)\n  r = -log p(x | z)\n}\n", 1, "reshape to [2, 4, 4] makes 32 values");
}

Test(checker, head_conditioning)
{
    expect(BASE_SPEC "net r = x -> q(z | x, x)\n" BASE_LOSS, 2, "'x' is named twice");
    expect("model m\nmodality x[4] ~ bernoulli\nmodality w[2] ~ categorical\nlatent z[2] ~ normal\n"
           "net enc = x -> q(z | x, w)\nnet p_x = z -> p(x | z)\n" BASE_LOSS, 1, "the head conditions on x, w, but network 'enc' reads x");
    expect(BASE_SPEC "net r = x -> p(z | x)\n" BASE_LOSS, 1, "may read latents only");
    expect(BASE_SPEC "net r = z -> q(z | z)\n" BASE_LOSS, 1, "reads the sample of z itself");
    expect(BASE_SPEC "net r = x -> relu(2) -> q(z | x)\n" BASE_LOSS, 1, "already the head of network 'enc'");
}
Test(checker, latent_without_prior_network)
{
    expect("model m\nmodality x[4] ~ bernoulli\nlatent z2[2] ~ normal\nlatent z1[2] ~ p(z1 | z2)\n"
           "net q1 = x -> q(z1 | x)\nnet q2 = x -> q(z2 | x)\nnet p_x = z1 -> p(x | z1)\n"
           "loss { z1 ~ q(z1 | x) z2 ~ q(z2 | x) r = -log p(x | z1) }\n", 1, "no network has this distribution as its head");
}
Test(checker, hierarchy_cycle)
{
    expect("model m\nmodality x[4] ~ bernoulli\nlatent a[2] ~ p(a | b)\nlatent b[2] ~ p(b | a)\n"
           "net pa = b -> p(a | b)\nnet pb = a -> p(b | a)\nnet qa = x -> q(a | x)\nnet qb = x -> q(b | x)\n"
           "net p_x = a -> p(x | a)\nloss { a ~ q(a | x) b ~ q(b | x) r = -log p(x | a) }\n", 1,
           "part of a cycle in the latent hierarchy");
    expect(BASE_SPEC "net a = b -> relu(2)\nnet b = a -> relu(2)\n" BASE_LOSS, 1, "cycle of networks");
}
Test(checker, never_sampled) { expect(BASE_SPEC "latent y[2] ~ normal\n" BASE_LOSS, 1, "latent 'y' is never sampled"); }
Test(checker, sampled_twice) { expect(BASE_SPEC "loss { z ~ q(z | x) z ~ q(z | x) rec = -log p(x | z) }\n", 1, "'z' is already sampled at line"); }
Test(checker, kl_not_gaussians)
{
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(x | z) kl = KL(q(z | x) || p(x | z)) }\n", 1, "KL terms are between Gaussians over latents");
    expect(BASE_SPEC "latent y[3] ~ normal\nnet qy = x -> q(y | x)\n"
           "loss { z ~ q(z | x) y ~ q(y | x) rec = -log p(x | z) kl = KL(q(z | x) || p(y)) }\n", 1,
           "KL between Gaussians of different sizes: z has 2, y has 3");
}
Test(checker, kl_not_exact)
{
    expect("model m\nmodality x[4] ~ bernoulli\nlatent z2[2] ~ normal\nlatent z1[2] ~ p(z1 | z2)\n"
           "net q1 = x -> q(z1 | x)\nnet q2 = concat(x, z1) -> q(z2 | x, z1)\nnet p1 = z2 -> p(z1 | z2)\n"
           "net p_x = z1 -> p(x | z1)\nloss { z1 ~ q(z1 | x) z2 ~ q(z2 | x, z1) r = -log p(x | z1)\n"
           "k1 = KL(q(z1 | x) || p(z1 | z2)) k2 = KL(q(z2 | x, z1) || p(z2)) }\n", 1,
           "the analytic KL over z1 is not exact here");
}
Test(checker, kl_sample_needs_sampling_posterior)
{
    expect(BASE_SPEC "net q2 = x -> relu(2) -> q(z | x) \n" BASE_LOSS, 1, NULL);
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(x | z) kl = KLsample(p(z) || q(z | x)) }\n", 1,
           "its first distribution must be the posterior z is sampled from");
}
Test(checker, duplicated_terms)
{
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(x | z) again = 2 * -log p(x | z) }\n", 1, "this term repeats 'rec'");
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(x | z) rec = KL(q(z | x) || p(z)) }\n", 1, "a term named 'rec' is already defined");
}
Test(checker, weights_and_hypers)
{
    expect(BASE_SPEC "hyper h = 1 warmup from 0 over 0 epochs\n" "loss { z ~ q(z | x) rec = -log p(x | z) kl = h * KL(q(z | x) || p(z)) }\n",
           1, "warm-up length 0 must be positive");
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(x | z) kl = beta * KL(q(z | x) || p(z)) }\n", 1, "'beta' is not declared");
}
Test(checker, training_settings)
{
    expect(BASE_SPEC BASE_LOSS "train { batch = 0 }\n", 1, "batch = 0 is out of range");
    expect(BASE_SPEC BASE_LOSS "train { optimizer = adam(lr = 0) }\n", 1, "lr = 0 is out of range");
    expect(BASE_SPEC BASE_LOSS "train { optimizer = adam(beta1 = 1) }\n", 1, "beta1 = 1 is out of range");
    expect(BASE_SPEC BASE_LOSS "train { optimizer = sgd(lr = 1) }\n", 1, "unknown optimizer");
    expect(BASE_SPEC BASE_LOSS "train { batchsize = 10 }\n", 1, "unknown setting 'batchsize' in train");
    expect(BASE_SPEC BASE_LOSS "train { batch = 10 batch = 20 }\n", 1, "'batch' is already set at line");
    expect(BASE_SPEC BASE_LOSS "train { epochs = 1.5 }\n", 1, "expecting an integer");
}
Test(checker, no_loss) { expect(BASE_SPEC, 1, "the spec has no 'loss { ... }' block"); }
Test(checker, warnings)
{
    expect_warning(BASE_SPEC "net extra = x -> relu(2)\n" BASE_LOSS, "network 'extra' is not used");
    expect_warning("model m\nmodality x[4] ~ bernoulli\nmodality w[2] ~ categorical\nlatent z[2] ~ normal\n"
                   "net enc = concat(x, w) -> q(z | x, w)\nnet p_x = z -> p(x | z)\n"
                   "loss { z ~ q(z | x, w) rec = -log p(x | z) kl = KL(q(z | x, w) || p(z)) }\n",
                   "modality 'w' is not reconstructed");
    expect_warning(BASE_SPEC "hyper unused = 1\n" BASE_LOSS, "hyperparameter 'unused' is not used");
}

/* ------------------------------------------------------------------- fmt -- */

static char *format_text(const char *src, size_t len)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    ctx c;
    ctx_init(&c, "t.spec", stderr);
    ctx_set_source(&c, src, len);
    cr_assert_eq(parse_spec(&c), 0);
    ast_format(f, &c);
    ctx_free(&c);
    fclose(f);
    return out;
}

static char *dump_text(const char *src)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    ctx c;
    ctx_init(&c, "t.spec", stderr);
    ctx_set_source(&c, src, strlen(src));
    cr_assert_eq(parse_spec(&c), 0);
    ast_dump(f, c.spec, 0);
    ctx_free(&c);
    fclose(f);
    return out;
}

static void round_trip(const char *path)
{
    char *src = read_text(path);
    cr_assert(src, "cannot read %s", path);
    char *once = format_text(src, strlen(src));
    char *twice = format_text(once, strlen(once));
    cr_expect_str_eq(once, twice, "%s: formatting twice changed the text", path);
    char *a = dump_text(src), *b = dump_text(once);
    cr_expect_str_eq(a, b, "%s: the formatted spec parses to another tree", path);
    free(src);
    free(once);
    free(twice);
    free(a);
    free(b);
}

static void round_trip_folder(const char *folder)
{
    DIR *d = opendir(folder);
    cr_assert(d, "no folder %s", folder);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".spec") == 0) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
            round_trip(path);
            n++;
        }
    }
    closedir(d);
    cr_expect_gt(n, 0);
}

Test(fmt, round_trip_specs) { round_trip_folder("specs"); }
Test(fmt, round_trip_examples) { round_trip_folder("examples"); }
Test(fmt, messy_layout)
{
    const char *messy = "model   m # name\n\n\n  modality x[4]~bernoulli\nlatent z[2]~normal net enc=x->relu(3)->q(z|x)\n"
                        "net p_x=z->p(x|z)\nloss{z~q(z|x)   rec=-log p(x|z)\n# the prior\nkl=KL(q(z|x)||p(z))}\n";
    char *once = format_text(messy, strlen(messy));
    cr_expect_str_eq(once, "model m  # name\n\nmodality x[4] ~ bernoulli\nlatent z[2] ~ normal\nnet enc = x -> relu(3) -> q(z | x)\n"
                           "net p_x = z -> p(x | z)\nloss {\n  z ~ q(z | x)\n  rec = -log p(x | z)\n  # the prior\n"
                           "  kl = KL(q(z | x) || p(z))\n}\n");
    free(once);
}

/* The reference specs check with no warning. */
Test(specs, reference_specs_are_clean)
{
    const char *specs[] = {"specs/jmvae.spec", "specs/jmvae_kl.spec", "specs/jmvae_h.spec"};
    for (int i = 0; i < 3; i++) {
        char *src = read_text(specs[i]);
        cr_assert(src, "cannot read %s", specs[i]);
        check_result r = check_text(src);
        cr_expect_eq(r.errors + r.warnings, 0, "%s:\n%s", specs[i], r.text);
        free(r.text);
        free(src);
    }
}

/* The remaining diagnostics of grammar/README.md, one each. */
Test(checker, network_structure)
{
    expect(BASE_SPEC "net r = r -> relu(2)\n" BASE_LOSS, 1, "network 'r' reads itself");
    expect(BASE_SPEC "net r = concat(x, x) -> relu(2)\n" BASE_LOSS, 1, "'x' is read twice by network 'r'");
    expect(BASE_SPEC "net r = x\n" BASE_LOSS, 1, "network 'r' has neither layers nor a head");
    expect(BASE_SPEC "net r = x -> relu(2) var=logvar\n" BASE_LOSS, 1, "6:22: error: unexpected name");
    expect(BASE_SPEC "net r = enc -> relu(2)\nnet h = x -> q(z | x) var=logvar\n" BASE_LOSS, 1, "already the head");
    expect(BASE_SPEC "net r = z -> relu(2) -> p(x | z) var=softplus\n" BASE_LOSS, 2,
           "this head has no variance: x has a bernoulli likelihood");
    expect(BASE_SPEC "net headless = x -> relu(2)\nnet r = headless -> relu(2)\n" BASE_LOSS, 0, NULL);
    expect(BASE_SPEC "latent y[2] ~ normal\nnet qy = x -> q(y | x)\nnet r = qy -> relu(2)\n" BASE_LOSS, 2,
           "network 'r' reads network 'qy', which has no layers");
}

Test(checker, priors)
{
    expect(BASE_SPEC "latent y[2] ~ p(y | y)\nnet py = y -> p(y | y)\nnet qy = x -> q(y | x)\n"
           "loss { z ~ q(z | x) y ~ q(y | x) r = -log p(x | z) }\n", 2, "p(y | ...) is conditioned on y itself");
    expect(BASE_SPEC "latent y[2] ~ q(y | z)\n" BASE_LOSS, 2, "the prior of 'y' must be normal or p(y | higher latents)");
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(x | z) kl = KL(q(z | x) || p(z | z)) }\n", 1,
           "the prior of 'z' is normal, written p(z)");
    expect("model m\nmodality x[4] ~ bernoulli\nlatent z2[2] ~ normal\nlatent z1[2] ~ p(z1 | z2)\n"
           "net q1 = x -> q(z1 | x)\nnet q2 = x -> q(z2 | x)\nnet p1 = z2 -> p(z1 | z2)\nnet p_x = z1 -> p(x | z1)\n"
           "loss { z1 ~ q(z1 | x) z2 ~ q(z2 | x) r = -log p(x | z1) k = KL(q(z1 | x) || p(z1)) }\n", 1,
           "the prior of 'z1' is conditional: write p(z1 | ...)");
}

Test(checker, samples)
{
    expect(BASE_SPEC "loss { z ~ p(z) rec = -log p(x | z) }\n", 1, "'z' must be sampled from one of its posteriors");
    expect("model m\nmodality x[4] ~ bernoulli\nlatent a[2] ~ normal\nlatent b[2] ~ normal\n"
           "net qa = concat(x, b) -> q(a | x, b)\nnet qb = concat(x, a) -> q(b | x, a)\nnet p_x = a -> p(x | a)\n"
           "loss { a ~ q(a | x, b) b ~ q(b | x, a) r = -log p(x | a) }\n", 1,
           "the sample of 'a' depends on itself through other samples");
}

Test(checker, whole_spec)
{
    expect("model m\nlatent z[2] ~ normal\n", 2, "the spec declares no modality");
    expect("model m\nmodality x[4] ~ bernoulli\n", 2, "the spec declares no latent");
    expect(BASE_SPEC "loss { }\n", 2, "the loss has no terms");
    expect(BASE_SPEC BASE_LOSS "train { }\ntrain { }\n", 1, "a second 'train' block");
    expect(BASE_SPEC BASE_LOSS "train { optimizer = 3 }\n", 1, "unknown optimizer");
    expect(BASE_SPEC BASE_LOSS "train { batch = big }\n", 1, "'batch' takes a number");
    expect(BASE_SPEC "loss { z ~ q(z | x) rec = -log p(x | z) kl = KL(q(z | x) || q(z | x)) }\n", 1,
           "the KL of a distribution with itself is 0");
}

Test(checker, too_many_declarations)
{
    char src[8192] = "model m\n";
    for (int i = 0; i < 17; i++)
        snprintf(src + strlen(src), sizeof src - strlen(src), "modality x%d[2] ~ bernoulli\n", i);
    strcat(src, "latent z[2] ~ normal\n");
    expect(src, 1, "too many declarations");
}

Test(checker, too_many_parameters)
{
    expect(BASE_SPEC "net big = x -> relu(1000000) -> relu(1000000)\n" BASE_LOSS, 1, "the model has 1000006000056 parameters; at most 1000000000");
}

/* ------------------------------------------------ hardening (issue 8) -- */

Test(scanner, integers_up_to_2_to_the_53)
{
    expect(BASE_SPEC BASE_LOSS "train {\n  seed = 4294967295\n}\n", 0, NULL);
    expect(BASE_SPEC BASE_LOSS "train {\n  seed = 4294967296\n}\n", 1, "seed = 4294967296 is out of range");
    expect(BASE_SPEC "net r = x -> relu(9007199254740993)\n" BASE_LOSS, 1, "is out of range");
    expect(BASE_SPEC "net r = x -> relu(4294967296)\n" BASE_LOSS, 1, "layer width 4294967296 is out of range");
}

Test(parser, expecting_list_at_the_top_level)
{
    expect("model m\nfoo bar\n", 1,
           "unexpected name, expecting end of file, 'modality', 'latent', 'net', 'hyper', 'loss', 'train', 'p' or 'q'");
}

Test(checker, emitted_names_clash)
{
    expect(BASE_SPEC "latent X[2] ~ normal\nnet qx = x -> q(X | x)\n"
                     "loss {\n  z ~ q(z | x)\n  X ~ q(X | x)\n  rec = -log p(x | z)\n  kl = KL(q(z | x) || p(z))\n}\n",
           1, "latent 'X' would be emitted as 'M_X_SIZE', which modality 'x' (line 2) already is");
    expect("model m\nmodality x[4] ~ bernoulli\nmodality x_size[2] ~ bernoulli\nlatent z[2] ~ normal\n"
           "net enc = concat(x, x_size) -> q(z | x, x_size)\nnet p_x = z -> p(x | z)\nnet p_s = z -> p(x_size | z)\n"
           "loss {\n  z ~ q(z | x, x_size)\n  term_x = -log p(x | z)\n  x_size_ = -log p(x_size | z)\n}\n",
           0, NULL);
    expect("model m\nmodality a[2] ~ bernoulli\nmodality b[2] ~ bernoulli\nmodality a_b[2] ~ bernoulli\nlatent z[2] ~ normal\n"
           "net e1 = concat(a, b) -> q(z | a, b)\nnet e2 = a_b -> q(z | a_b)\nnet e3 = concat(a, b, a_b) -> q(z | a, b, a_b)\n"
           "net da = z -> p(a | z)\nnet db = z -> p(b | z)\nnet dab = z -> p(a_b | z)\n"
           "loss {\n  z ~ q(z | a, b, a_b)\n  ra = -log p(a | z)\n  rb = -log p(b | z)\n  rab = -log p(a_b | z)\n"
           "  k1 = KL(q(z | a, b, a_b) || q(z | a, b))\n  k2 = KL(q(z | a, b, a_b) || q(z | a_b))\n}\n",
           1, "would be emitted as 'm_posterior_a_b', which the family of posteriors q(... | a, b) (line 6) already is");
}

Test(checker, reserved_names)
{
    expect("model jv\nmodality x[4] ~ bernoulli\nlatent z[2] ~ normal\nnet enc = x -> q(z | x)\nnet p_x = z -> p(x | z)\n" BASE_LOSS,
           1, "model 'jv' begins with 'jv'");
    expect(BASE_SPEC "net Jv_net = x -> relu(2)\n" BASE_LOSS, 1, "network 'Jv_net' begins with 'jv'");
    expect(BASE_SPEC "hyper _h = 1\n" BASE_LOSS, 1, "hyperparameter '_h' begins with '_'");
    /* C keywords are fine: a spec name never appears alone in the emitted code */
    expect("model int\nmodality for[4] ~ bernoulli\nlatent while[2] ~ normal\nnet static = for -> q(while | for)\n"
           "net return = while -> p(for | while)\nloss {\n  while ~ q(while | for)\n  do = -log p(for | while)\n}\n",
           0, NULL);
}

Test(checker, heads_condition_on_what_they_read)
{
    expect("model m\nmodality x[4] ~ bernoulli\nlatent z2[2] ~ normal\nlatent z1[2] ~ p(z1 | z2)\n"
           "net q1 = x -> q(z1 | x)\nnet q2 = x -> q(z2 | x)\nnet p1 = z2 -> relu(3) -> p(z1 | z2, x)\nnet d = z1 -> p(x | z1)\n"
           "loss {\n  z1 ~ q(z1 | x)\n  z2 ~ q(z2 | x)\n  rec = -log p(x | z1)\n}\n",
           1, "the head conditions on x, z2, but network 'p1' reads z2");
    expect(BASE_SPEC "modality w[3] ~ categorical\nnet p_w = z -> p(w | z, x)\n" BASE_LOSS, 1,
           "the head conditions on x, z, but network 'p_w' reads z");
    expect(BASE_SPEC "loss {\n  z ~ q(z | x)\n  rec = -log p(x | z, x)\n}\n", 1,
           "no network has this distribution as its head");
}

Test(checker, kl_over_two_latents)
{
    expect(BASE_SPEC "latent y[2] ~ normal\nnet qy = x -> q(y | x)\n"
                     "loss {\n  z ~ q(z | x)\n  y ~ q(y | x)\n  rec = -log p(x | z)\n  mixed = KL(q(z | x) || q(y | x))\n}\n",
           1, "a KL term compares two distributions over one latent, but these are over z and y");
}

Test(checker, a_sample_read_by_nothing)
{
    expect_warning(BASE_SPEC "latent y[2] ~ normal\nnet qy = x -> q(y | x)\n"
                             "loss {\n  z ~ q(z | x)\n  y ~ q(y | x)\n  rec = -log p(x | z)\n  kl = KL(q(y | x) || p(y))\n}\n",
                   "the sample of 'y' is read by nothing");
}

Test(checker, product_of_sizes_does_not_overflow)
{
    expect("model m\nmodality x[1000000, 1000000, 1000000, 1000000] ~ bernoulli\nlatent z[2] ~ normal\n"
           "net enc = x -> q(z | x)\nnet p_x = z -> p(x | z)\n" BASE_LOSS,
           2, "modality 'x' has more than 1000000 values");
}

/* ------------------------------------------------------ operation table -- */

#include "formula.h"
#include "ops.h"

static void expect_formula(const char *what, const char *f, const char *const *names)
{
    int n = 0;
    while (names[n])
        n++;
    char why[512] = "";
    cr_expect_eq(formula_check(f, names, n, why, sizeof why), 0, "%s: %s", what, why);
}

static void expect_lets(const char *what, const let_def *lets, const char *const *operands, const char **names)
{
    int n = 0;
    while (operands[n])
        names[n] = operands[n], n++;
    for (int i = 0; i < MAX_LETS && lets[i].name; i++) {
        names[n] = NULL;
        expect_formula(what, lets[i].expr, names); /* a temporary may use the ones before it */
        names[n++] = lets[i].name;
    }
    names[n] = NULL;
}

static void expect_gradient(const char *what, const gradient_def *g, const char *const *operands)
{
    const char *names[16];
    expect_lets(what, g->lets, operands, names);
    for (int k = 0; k < MAX_GRADS; k++)
        if (g->d[k])
            expect_formula(what, g->d[k], names);
}

static void expect_value(const char *what, const formula_def *f, const char *const *operands)
{
    const char *names[16];
    expect_lets(what, f->lets, operands, names);
    expect_formula(what, f->value, names);
}

Test(ops, every_formula_parses_and_names_only_its_operands)
{
    for (int a = 0; a < N_ACTIVATIONS; a++) {
        const activation_def *d = &activation_table[a];
        cr_assert(d->name && d->torch, "activation %d has no row", a);
        expect_formula(d->name, d->forward, (const char *const[]){"v", NULL});
        const char *reads = d->reads == READS_INPUT ? "x" : d->reads == READS_OUTPUT ? "y" : NULL;
        expect_formula(d->name, d->backward, (const char *const[]){"g", reads, NULL});
        cr_expect_eq(find_activation(d->name), a);
    }
    for (int v = 0; v < N_VARIANCES; v++) {
        const variance_def *d = &variance_table[v];
        expect_formula(d->name, d->logvar, (const char *const[]){"a", NULL});
        expect_formula(d->name, d->backward, (const char *const[]){"dl", d->reads_raw ? "a" : NULL, NULL});
        cr_expect_eq(find_variance(d->name), v);
    }
    for (int l = 0; l < N_LIKELIHOODS; l++) {
        const likelihood_def *d = &likelihood_table[l];
        cr_expect_eq(find_likelihood(d->word, d->arg), l);
        if (d->normalised)
            continue; /* the printers write the softmax's sums */
        const char *const ops_lv[] = {"l", "t", "lv", NULL}, *const ops[] = {"l", "t", NULL};
        const char *const grad_lv[] = {"l", "t", "lv", "g", NULL}, *const grad[] = {"l", "t", "g", NULL};
        expect_value(d->name, &d->nll, d->has_logvar ? ops_lv : ops);
        expect_gradient(d->name, &d->nll_grad, d->has_logvar ? grad_lv : grad);
        cr_expect((d->nll_grad.d[1] != NULL) == d->has_logvar, "%s: d lv exactly when it has a log-variance", d->name);
        expect_formula(d->name, d->mean, (const char *const[]){"l", NULL});
    }
    const char *const kl_std[] = {"mq", "lq", NULL}, *const normal_std[] = {"z", NULL};
    expect_value("KL, standard", &kl_formula[GAUSS_STANDARD], kl_std);
    expect_value("KL", &kl_formula[GAUSS_GENERAL], (const char *const[]){"mq", "lq", "mp", "lp", NULL});
    expect_gradient("KL, standard", &kl_gradient[GAUSS_STANDARD], (const char *const[]){"mq", "lq", "g", NULL});
    expect_gradient("KL", &kl_gradient[GAUSS_GENERAL], kl_operands);
    expect_value("log N, standard", &neg_log_normal_formula[GAUSS_STANDARD], normal_std);
    expect_value("log N", &neg_log_normal_formula[GAUSS_GENERAL], (const char *const[]){"z", "m", "lv", NULL});
    expect_gradient("log N, standard", &log_normal_gradient[GAUSS_STANDARD], (const char *const[]){"z", "g", NULL});
    expect_gradient("log N", &log_normal_gradient[GAUSS_GENERAL], normal_operands);
    expect_value("sample", &sample_formula, (const char *const[]){"m", "lv", "eps", NULL});
    expect_gradient("sample", &sample_gradient, sample_operands);
    /* the reductions: the product of experts, a mixture's log-mean-exp, the softmax */
    expect_value("poe precision", &poe_precision, (const char *const[]){"lv", NULL});
    expect_value("poe weighted", &poe_weighted, (const char *const[]){"m", "lv", NULL});
    expect_value("poe log-variance", &poe_logvar, (const char *const[]){"t", NULL});
    expect_value("poe mean", &poe_mean, (const char *const[]){"s", "t", NULL});
    expect_gradient("poe", &poe_gradient, (const char *const[]){"m", "lv", "mo", "lvo", "gm", "glv", NULL});
    expect_formula("logmeanexp larger", logmeanexp.larger, (const char *const[]){"x", "top", NULL});
    expect_formula("logmeanexp term", logmeanexp.term, (const char *const[]){"x", "top", NULL});
    expect_formula("logmeanexp result", logmeanexp.result, (const char *const[]){"top", "total", "n", NULL});
    expect_formula("logmeanexp weight", logmeanexp.weight, (const char *const[]){"x", "result", "n", NULL});
    expect_formula("softmax larger", softmax.larger, (const char *const[]){"x", "top", NULL});
    expect_formula("softmax term", softmax.term, (const char *const[]){"x", "top", NULL});
    expect_formula("softmax normaliser", softmax.log_normaliser, (const char *const[]){"top", "total", NULL});
    expect_formula("softmax share", softmax.share, (const char *const[]){"x", "top", "total", NULL});
    for (int r = 0; r < N_RULES; r++) {
        cr_assert(rule_table[r].word && rule_table[r].what, "rule %d has no row", r);
        cr_expect_eq(find_rule(rule_table[r].word), r);
    }
}

Test(ops, formulas_print_in_both_languages)
{
    arena a = {0};
    binding vars[] = {{"mq", "mq[j]"}, {"lq", "lq[j]"}};
    cr_expect_str_eq(formula_print(&a, LANG_C, kl_formula[GAUSS_STANDARD].value, vars, 2),
                     "(jv_real)0.5 * (JV_EXP(lq[j]) + mq[j] * mq[j] - 1 - lq[j])");
    binding py[] = {{"mq", "q_mean"}, {"lq", "q_logvar"}};
    cr_expect_str_eq(formula_print(&a, LANG_TORCH, kl_formula[GAUSS_STANDARD].value, py, 2),
                     "0.5 * (torch.exp(q_logvar) + q_mean * q_mean - 1 - q_logvar)");
    /* precedence: the parentheses the structure needs, and no others */
    binding xy[] = {{"a", "a"}, {"b", "b"}, {"c", "c"}};
    cr_expect_str_eq(formula_print(&a, LANG_C, "a - (b - c) + -a * (b + c) / (a * b)", xy, 3),
                     "a - (b - c) + -a * (b + c) / (a * b)");
    cr_expect_str_eq(formula_print(&a, LANG_C, "((a - b)) - c * (b * c)", xy, 3), "a - b - c * (b * c)");
    cr_expect_str_eq(formula_print(&a, LANG_TORCH, "a > 0 ? b : 0.01 * c", xy, 3), "torch.where(a > 0, b, 0.01 * c)");
    cr_expect_str_eq(formula_print(&a, LANG_C, "a > 0 ? b : 0.01 * c", xy, 3), "a > 0 ? b : (jv_real)0.01 * c");
    cr_expect_str_eq(formula_print(&a, LANG_C, "LOG_2PI + log(softplus(a))", xy, 3), "JV_LOG_2PI + JV_LOG(jv_softplus(a))");
    char why[256];
    cr_expect_eq(formula_check("a +", (const char *const[]){"a"}, 1, why, sizeof why), -1);
    cr_expect_eq(formula_check("cosh(a)", (const char *const[]){"a"}, 1, why, sizeof why), -1);
    cr_expect_eq(formula_check("a * q", (const char *const[]){"a"}, 1, why, sizeof why), -1);
    cr_expect(strstr(why, "'q'") != NULL, "%s", why);
    arena_free(&a);
}
