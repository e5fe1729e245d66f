/* test_experts.c: trainers of posteriors built from experts, end to end.
 * Small specs of MoPoE with K = 3 importance samples and DReG, and of MVAE's
 * sub-sampled objective, compiled by jmvaec and trained on random data:
 * the checkpoints are the same bytes on 1, 2 and 3 threads and after a
 * resume; eval gives the same numbers on any number of threads and
 * estimates every subset with that subset's own posterior; encode and
 * sample take any subset the experts make, and refuse one they do not,
 * naming those they do; incomplete examples train their observed subset's
 * step with the same guarantees. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shell_util.h"

/* A MoPoE of three modalities: experts of (a, b) and of c; importance-weighted with DReG. */
static const char mopoe_spec[] =
    "model tiny_mopoe\n"
    "modality a[2, 3] ~ bernoulli\nmodality b[4] ~ gaussian\nmodality c[3] ~ categorical\n"
    "latent z[3] ~ normal\n"
    "net e_ab = concat(a, b) -> relu(8) -> q(z | a, b) var=logvar\n"
    "net e_c = c -> relu(8) -> q(z | c)\n"
    "q(z | a, b, c) = mopoe(p(z), q(z | a, b), q(z | c))\n"
    "net p_a = z -> relu(8) -> p(a | z)\nnet p_b = z -> p(b | z)\nnet p_c = z -> relu(8) -> p(c | z)\n"
    "loss {\n  mean over q_s in components(q(z | a, b, c)) {\n    z ~ q_s\n"
    "    rec_a = -log p(a | z)\n    rec_b = -log p(b | z)\n    rec_c = -log p(c | z)\n"
    "    kl = KLsample(q_s || p(z))\n  }\n}\n"
    "train {\n  batch = 7\n  samples = 3\n  gradient = dreg\n  seed = 3\n}\n";

/* MVAE's objective: ELBO(a, b, c) + ELBO(a) + ELBO(b) + ELBO(c) of a product with the prior. */
static const char mvae_spec[] =
    "model tiny_mvae\n"
    "modality a[6] ~ bernoulli\nmodality b[4] ~ gaussian\nmodality c[3] ~ categorical\n"
    "latent z[3] ~ normal\n"
    "net e_a = a -> relu(8) -> q(z | a) var=logvar\nnet e_b = b -> q(z | b)\nnet e_c = c -> relu(8) -> q(z | c)\n"
    "q(z | a, b, c) = poe(p(z), q(z | a), q(z | b), q(z | c))\n"
    "net p_a = z -> relu(8) -> p(a | z)\nnet p_b = z -> p(b | z)\nnet p_c = z -> relu(8) -> p(c | z)\n"
    "hyper beta = 1 warmup from 0 over 2 epochs\n"
    "loss {\n  sum over S in (a, b, c), (a), (b), (c) {\n    z ~ q(z | S)\n"
    "    rec_a = -log p(a | z) if a in S\n    rec_b = -log p(b | z) if b in S\n    rec_c = 3 * -log p(c | z) if c in S\n"
    "    kl = beta * KL(q(z | S) || p(z))\n  }\n}\n"
    "train {\n  batch = 5\n  seed = 4\n}\n";

/* MVAE's objective with convolutional networks on the images a [1, 2, 3]
 * and b [1, 2, 2]: convolutions and transposed ones, with and without bias,
 * strided, padded, and a decoder whose last layer gives the parameters. */
static const char conv_spec[] =
    "model tiny_conv\n"
    "modality a[2, 3] ~ bernoulli\nmodality b[2, 2] ~ gaussian\nmodality c[3] ~ categorical\n"
    "latent z[3] ~ normal\n"
    "net e_a = a -> relu(conv(4, 2, pad=1)) -> conv(2, 2, bias=no) -> flatten -> q(z | a) var=logvar\n"
    "net e_b = b -> silu(deconv(3, 2, stride=2)) -> flatten -> q(z | b)\n"
    "net e_c = c -> relu(8) -> q(z | c)\n"
    "q(z | a, b, c) = poe(p(z), q(z | a), q(z | b), q(z | c))\n"
    "net p_a = z -> relu(6) -> reshape(3, 1, 2) -> deconv(1, 2) -> p(a | z)\n"
    "net p_b = z -> tanh(8) -> reshape(2, 2, 2) -> conv(1, 3, pad=1, bias=no) -> p(b | z)\n"
    "net p_c = z -> relu(8) -> p(c | z)\n"
    "loss {\n  sum over S in (a, b, c), (a), (b), (c) {\n    z ~ q(z | S)\n"
    "    rec_a = -log p(a | z) if a in S\n    rec_b = -log p(b | z) if b in S\n    rec_c = -log p(c | z) if c in S\n"
    "    kl = KL(q(z | S) || p(z))\n  }\n}\n"
    "train {\n  batch = 6\n  seed = 5\n}\n";

typedef struct {
    char *dir, *trainer;
} built;

static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static FILE *open_in(const char *dir, const char *name)
{
    char *path = fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    free(path);
    return f;
}

/* Runs a command (in the folder); its output (malloc'd); asserts its status. */
static char *must(const built *b, int status, const char *cmd)
{
    char *full = fmt("cd '%s' && %s", b->dir, cmd), *out = NULL;
    int got = run_command(full, &out);
    cr_assert_eq(got, status, "%s: exit %d, expected %d:\n%s", cmd, got, status, out);
    free(full);
    return out;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* Compiles the spec and writes random data: a.csv (grey levels), b.csv (reals), c.csv (classes). */
/* The trainer of spec, compiled with the jmvaec options `jmvaec_flags`. */
static built build_with(const char *name, const char *spec, const char *jmvaec_flags)
{
    built b = {temp_folder("experts"), NULL};
    cr_assert_not_null(b.dir);
    char *path = fmt("%s/%s.spec", b.dir, name);
    write_text(path, spec);
    char flags[512];
    char *cmd = fmt("./jmvaec %s '%s' -o '%s/gen' && make -s -C '%s/gen' JMVAEC=$PWD/jmvaec %s", jmvaec_flags, path, b.dir,
                    b.dir, sanitize_make_flags(flags, sizeof flags));
    char *out = NULL;
    int rc = run_command(cmd, &out);
    cr_assert_eq(rc, 0, "%s:\n%s", cmd, out);
    free(out);
    free(cmd);
    free(path);
    b.trainer = fmt("%s/gen/%s", b.dir, name);
    unsigned long long state = 0x9E3779B97F4A7C15ull;
    FILE *fa = open_in(b.dir, "a.csv"), *fb = open_in(b.dir, "b.csv"), *fc = open_in(b.dir, "c.csv");
    cr_assert(fa && fb && fc);
    for (int i = 0; i < 60; i++) {
        for (int j = 0; j < 6; j++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            fprintf(fa, "%s%.3f", j ? "," : "", (double)(state >> 40) / 16777216.0);
        }
        for (int j = 0; j < 4; j++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            fprintf(fb, "%s%.3f", j ? "," : "", (double)(state >> 40) / 8388608.0 - 1);
        }
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        fprintf(fa, "\n");
        fprintf(fb, "\n");
        fprintf(fc, "%d\n", (int)((state >> 33) % 3));
    }
    fclose(fa);
    fclose(fb);
    fclose(fc);
    return b;
}

static built build(const char *name, const char *spec)
{
    return build_with(name, spec, "");
}

static void drop(built *b)
{
    remove_folder(b->dir);
    free(b->dir);
    free(b->trainer);
}

static int same_file(const built *b, const char *x, const char *y)
{
    char *cmd = fmt("cmp -s '%s/%s' '%s/%s'", b->dir, x, b->dir, y);
    int rc = run_command(cmd, NULL);
    free(cmd);
    return rc == 0;
}

#define DATA "--data a=a.csv --data b=b.csv --data c=c.csv"

static void deterministic_and_resumable(const char *name, const char *spec, const char *jmvaec_flags)
{
    built b = build_with(name, spec, jmvaec_flags);
    char *cmd;
    for (int t = 1; t <= 3; t++) {
        cmd = fmt("'%s' train " DATA " --epochs 3 --threads %d --out run%d", b.trainer, t, t);
        free(must(&b, 0, cmd));
        free(cmd);
    }
    cr_assert(same_file(&b, "run1/last.ckpt", "run2/last.ckpt"), "%s: 1 and 2 threads differ", name);
    cr_assert(same_file(&b, "run1/last.ckpt", "run3/last.ckpt"), "%s: 1 and 3 threads differ", name);
    cmd = fmt("'%s' train " DATA " --epochs 1 --threads 2 --out part && '%s' train " DATA
              " --epochs 3 --resume part/last.ckpt", b.trainer, b.trainer);
    free(must(&b, 0, cmd));
    free(cmd);
    cr_assert(same_file(&b, "run1/last.ckpt", "part/last.ckpt"), "%s: the resumed run differs", name);
    /* eval: every subset, the same numbers on any number of threads */
    cmd = fmt("'%s' eval --checkpoint run1/last.ckpt " DATA " --samples 6 --threads 1 --json e1.json && "
              "'%s' eval --checkpoint run1/last.ckpt " DATA " --samples 6 --threads 2 --json e2.json",
              b.trainer, b.trainer);
    char *out = must(&b, 0, cmd);
    free(cmd);
    cr_assert(strstr(out, "log p(a,b,c)") != NULL, "%s", out);
    cr_assert(strstr(out, "of the experts of") != NULL, "%s: no subset's own posterior in:\n%s", name, out);
    cr_assert(strstr(out, "prior samples (100 K)") != NULL, "%s", out);
    free(out);
    cr_assert(same_file(&b, "e1.json", "e2.json"), "%s: eval differs on 2 threads", name);
    drop(&b);
}

Test(experts, mopoe_with_dreg_is_the_same_on_any_thread_count_and_resumes, .timeout = 300)
{
    deterministic_and_resumable("tiny_mopoe", mopoe_spec, "");
}

Test(experts, mvae_subsampled_is_the_same_on_any_thread_count_and_resumes, .timeout = 300)
{
    deterministic_and_resumable("tiny_mvae", mvae_spec, "");
}

Test(experts, convolutions_are_the_same_on_any_thread_count_and_resume, .timeout = 300)
{
    deterministic_and_resumable("tiny_conv", conv_spec, "");
}

/* The same with every convolution (and dense GEMM wide enough) cut in two
 * tasks (split.c), which run side by side on two threads and more. */
Test(experts, cut_convolutions_are_the_same_on_any_thread_count_and_resume, .timeout = 300)
{
    deterministic_and_resumable("tiny_conv", conv_spec, "--split-mflop 0");
}

/* Incomplete examples: c missing in every fourth (c_na.csv), and `drop`
 * (--drop ...) on top; each example trains its observed subset's step, the
 * same bits on any number of threads, in parts, and resumed. `subsets`:
 * what the count of training examples by observed subset must show. */
static void incomplete_examples(const char *name, const char *spec, const char *drop_opt, const char *const *subsets)
{
    built b = build(name, spec);
    char *path = fmt("%s/c_na.csv", b.dir), *text = calloc(60, 8), *cmd;
    cr_assert_not_null(text);
    for (int i = 0; i < 60; i++)
        strcat(text, i % 4 == 1 ? "NA\n" : i % 3 == 0 ? "0\n" : "2\n");
    write_text(path, text);
    free(path);
    free(text);
    char *data = fmt("--data a=a.csv --data b=b.csv --data c=c_na.csv %s --valid 10", drop_opt);
    for (int t = 1; t <= 2; t++) {
        cmd = fmt("'%s' train %s --epochs 3 --threads %d --out run%d", b.trainer, data, t, t);
        char *out = must(&b, 0, cmd);
        for (int i = 0; subsets[i]; i++)
            cr_expect(strstr(out, subsets[i]) != NULL, "%s: no '%s' in:\n%s", name, subsets[i], out);
        free(out);
        free(cmd);
    }
    cr_assert(same_file(&b, "run1/last.ckpt", "run2/last.ckpt"), "%s: 1 and 2 threads differ", name);
    cmd = fmt("'%s' train %s --epochs 1 --threads 2 --out part && '%s' train %s --epochs 3 --resume part/last.ckpt",
              b.trainer, data, b.trainer, data);
    free(must(&b, 0, cmd));
    free(cmd);
    cr_assert(same_file(&b, "run1/last.ckpt", "part/last.ckpt"), "%s: the resumed run differs", name);
    if (*drop_opt) { /* the checkpoint keeps --drop (and --complete-only): resumed without them, the same run */
        char *bare = fmt("--data a=a.csv --data b=b.csv --data c=c_na.csv --valid 10");
        cmd = fmt("'%s' train %s --epochs 1 --out bare && '%s' train %s --epochs 3 --resume bare/last.ckpt",
                  b.trainer, data, b.trainer, bare);
        char *out = must(&b, 0, cmd);
        cr_expect(strstr(out, "training examples, as it was in the run of bare/last.ckpt") != NULL, "%s", out);
        free(out);
        free(cmd);
        cr_assert(same_file(&b, "run1/last.ckpt", "bare/last.ckpt"), "%s: resumed without --drop, the run differs",
                  name);
        cmd = fmt("'%s' train %s --complete-only --epochs 1 --out co && '%s' train %s --complete-only --epochs 2 "
                  "--out co2 && '%s' train %s --epochs 2 --resume co/last.ckpt",
                  b.trainer, data, b.trainer, data, b.trainer, bare);
        out = must(&b, 0, cmd);
        cr_expect(strstr(out, "--complete-only: as in the run of co/last.ckpt") != NULL, "%s", out);
        free(out);
        free(cmd);
        cr_assert(same_file(&b, "co/last.ckpt", "co2/last.ckpt"), "%s: resumed, --complete-only is forgotten", name);
        free(bare);
    }
    cmd = fmt("'%s' train %s --epochs 2 --chunks 3 --threads 1 --out c1 && '%s' train %s --epochs 2 --chunks 3 "
              "--threads 2 --out c2", b.trainer, data, b.trainer, data);
    free(must(&b, 0, cmd));
    free(cmd);
    cr_assert(same_file(&b, "c1/last.ckpt", "c2/last.ckpt"), "%s: in 3 parts, 1 and 2 threads differ", name);
    if (strcmp(name, "tiny_mopoe") == 0) { /* b alone makes none of its components: refused, nothing written */
        cmd = fmt("'%s' train %s --drop a=0.4 --epochs 1 --out never 2>&1; test ! -e never", b.trainer, data);
        char *out = must(&b, 0, cmd);
        cr_expect(strstr(out, "examples that observe only b (") &&
                      strstr(out, "contribute nothing to the loss of model tiny_mopoe"), "%s", out);
        free(out);
        free(cmd);
    }
    free(data);
    drop(&b);
}

Test(experts, incomplete_examples_train_the_same_on_any_thread_count_in_parts_and_resumed, .timeout = 300)
{
    static const char *const mvae[] = {"by observed modalities: a,b,c ", ", a,b ", ", b,c ", ", b ", NULL};
    incomplete_examples("tiny_mvae", mvae_spec, "--drop a=0.4", mvae);
    static const char *const mopoe[] = {"by observed modalities: a,b,c ", ", a,b ", NULL};
    incomplete_examples("tiny_mopoe", mopoe_spec, "", mopoe);
    if (!sanitized()) /* the same trainer code as tiny_mvae's; its memory is checked by the test above */
        incomplete_examples("tiny_conv", conv_spec, "--drop a=0.4", mvae);
}

Test(experts, any_subset_the_experts_make_and_no_other, .timeout = 300)
{
    built b = build("tiny_mopoe", mopoe_spec);
    char *cmd = fmt("'%s' train " DATA " --epochs 1 --out run", b.trainer);
    free(must(&b, 0, cmd));
    free(cmd);
    /* (a, b) and (c) are unions of the experts' modalities: encode and reconstruct from them */
    const char *given[] = {"--data a=a.csv --data b=b.csv", "--data c=c.csv", DATA};
    for (int i = 0; i < 3; i++) { /* the image from the subset (from c alone: one row a class) */
        cmd = fmt("'%s' encode --checkpoint run/last.ckpt %s --csv z%d.csv && '%s' sample --checkpoint run/last.ckpt "
                  "%s --n 4 %s --csv r%d.csv", b.trainer, given[i], i, b.trainer,
                  i == 1 ? "--mode conditional" : "--mode reconstruct", i == 1 ? "" : given[i], i);
        free(must(&b, 0, cmd));
        free(cmd);
    }
    cr_assert(!same_file(&b, "z0.csv", "z1.csv"), "two subsets gave the same encodings");
    /* a alone is read by no expert of its own */
    cmd = fmt("'%s' encode --checkpoint run/last.ckpt --data a=a.csv --csv za.csv", b.trainer);
    char *out = must(&b, 1, cmd);
    free(cmd);
    int named = strstr(out, "has no posterior given {a}; it has posteriors given {a,b}, {c}, {a,b,c}") != NULL;
    cr_assert(named, "%s", out);
    free(out);
    cmd = fmt("test -e '%s/za.csv'", b.dir);
    cr_assert(run_command(cmd, NULL) != 0, "a refused encode wrote its file");
    free(cmd);
    drop(&b);
}
