/* test_torch.c: the C back end against the PyTorch back end, for every spec
 * of specs/, examples/ and tests/eval/ and for specs of the generator of
 * valid specs (tests/fuzz/specgen.h): in double precision, on the same
 * parameters, data and noise, the loss, every term, the whole gradient and
 * every entry point agree to a relative 1e-6; initialisation is the same to
 * the bit; checkpoints go through the module and back byte for byte and the
 * C trainer resumes and evaluates the module's; the module refuses bad
 * checkpoints. tests/torch_equal.py does the work; without Debian's
 * python3-torch (and python3-numpy) these tests say so and skip. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdint.h>
#include <sys/stat.h>

#include "shell_util.h"
#include "fuzz/specgen.h"

#define PYTHON "/usr/bin/python3"

static void need_torch(void)
{
    if (run_command(PYTHON " -c 'import torch, numpy'", NULL) != 0)
        cr_skip_test("PyTorch is not installed (Debian's python3-torch and python3-numpy: .ci/install-deps installs "
                     "them): the PyTorch back end's tests were skipped");
}

/* Runs tests/torch_equal.py on the specs (and options) of `args`. */
static void torch_equal(const char *tag, const char *args)
{
    need_torch();
    char *work = temp_folder(tag);
    cr_assert(work);
    char flags[512], cmd[16384], *out = NULL;
    snprintf(cmd, sizeof cmd, PYTHON " tests/torch_equal.py --jmvaec ./jmvaec --work %s --make-flags \"%s\" %s", work,
             sanitize_make_flags(flags, sizeof flags), args);
    int rc = run_command(cmd, &out);
    const char *text = out ? out : "";
    cr_log_info("%s", text);
    cr_expect_eq(rc, 0, "%s:\n%s", cmd, text);
    cr_expect(strstr(text, "ok ") != NULL, "%s", text);
    free(out);
    remove_folder(work);
    free(work);
}

Test(torch, reference_specs, .timeout = 900)
{
    torch_equal("torch-ref", "specs/jmvae.spec specs/jmvae_kl.spec specs/jmvae_h.spec");
}

/* Under the sanitizers (where the point is memory, the arithmetic being the
 * plain build's) the specs of examples/ itself are left out: test_codegen's
 * gradcheck builds and runs every one of them sanitized, and this case was a
 * quarter of that build's time. */
Test(torch, examples, .timeout = 900)
{
    torch_equal("torch-ex", sanitized() ? "examples/three-modalities/*.spec examples/semi-supervised/*.spec tests/eval/*.spec"
                                        : "examples/*.spec examples/three-modalities/*.spec "
                                          "examples/semi-supervised/*.spec tests/eval/*.spec");
}

/* count specs of the generator's `mode` from `state`, equal in both back ends
 * (the C trainers compiled with `jmvaec_flags`). */
static void torch_equal_generated(const char *tag, uint64_t state, int mode, int count, const char *jmvaec_flags)
{
    need_torch();
    char *dir = temp_folder(tag);
    cr_assert(dir);
    char args[8192];
    snprintf(args, sizeof args, "--jmvaec-flags '%s'", jmvaec_flags);
    for (int k = 0; k < count; k++) {
        char text[1 << 14], path[512];
        specgen_from_state(&state, mode, text, sizeof text);
        snprintf(path, sizeof path, "%s/generated%d.spec", dir, k);
        FILE *f = fopen(path, "w");
        cr_assert(f);
        fputs(text, f);
        fclose(f);
        cr_log_info("generated spec %d:\n%s", k, text);
        size_t len = strlen(args);
        snprintf(args + len, sizeof args - len, " %s", path);
    }
    char run_tag[64];
    snprintf(run_tag, sizeof run_tag, "%s-run", tag);
    torch_equal(run_tag, args);
    remove_folder(dir);
    free(dir);
}

/* Specs nobody wrote: every likelihood, latent hierarchies, feature
 * networks, convolutions, several families, KL and KLsample, weights and
 * warm-ups; their C steps with every GEMM and convolution that can be cut
 * in two tasks cut (split.c: columns of dense layers, examples of
 * convolutions), whatever its size. */
Test(torch, generated_specs, .timeout = 900)
{
    torch_equal_generated("torch-gen", 0x2545F4914F6CDD1Dull, GEN_ANY, sanitized() ? 3 : 6, "--split-mflop 0");
}

/* Every layer kind of convolution, each cut in two tasks by examples. */
Test(torch, convolutions_cut_into_tasks, .timeout = 300)
{
    torch_equal("torch-cut", "--jmvaec-flags '--split-mflop 0' examples/conv_tiny.spec");
}

/* Specs of posteriors built from experts nobody wrote: products, mixtures,
 * loops, K samples and DReG, equal in both back ends. */
Test(torch, generated_expert_specs, .timeout = 900)
{
    torch_equal_generated("torch-gen-experts", 0x165667B19E3779F9ull, GEN_EXPERTS, sanitized() ? 3 : 6, "");
}

/* Names that Python or torch.nn.Module take (keywords, methods) and one
 * taken twice over: the networks get other attributes, the parameters keep
 * their spec names. */
Test(torch, python_names, .timeout = 300)
{
    need_torch();
    char *dir = temp_folder("torch-names");
    cr_assert(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/names.spec", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("model class\nmodality lambda[4] ~ bernoulli\nmodality None[3] ~ categorical\nlatent self[2] ~ normal\n"
          "net eval = lambda -> relu(3)\nnet eval_ = None -> relu(3)\n"
          "net forward = concat(eval, eval_) -> q(self | lambda, None)\nnet to = self -> tanh(3) -> p(lambda | self)\n"
          "net posterior_lambda_None = self -> p(None | self)\nhyper data = 0.5\n"
          "loss {\n  self ~ q(self | lambda, None)\n  def = -log p(lambda | self)\n"
          "  return = data * -log p(None | self)\n  while = KL(q(self | lambda, None) || p(self))\n}\n"
          "train {\n  batch = 3\n}\n", f);
    fclose(f);
    torch_equal("torch-names-run", path);
    remove_folder(dir);
    free(dir);
}

Test(torch, refusals, .timeout = 300)
{
    torch_equal("torch-bad", "--refusals examples/tiny.spec");
}

/* jmvaec --emit=torch: stdout without -o; with -o, DIR/<model>.py, which
 * replaces only a file jmvaec wrote; the same bytes from any folder. */
Test(torch, emit_writes_one_module)
{
    char *dir = temp_folder("torch-emit");
    cr_assert(dir);
    char cmd[2048], *out = NULL, *again = NULL;
    snprintf(cmd, sizeof cmd, "./jmvaec --emit=torch specs/jmvae.spec");
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    cr_expect(strstr(out, "# jmvae.py: generated by jmvaec from jmvae.spec.") == out, "%.200s", out);
    cr_expect(strstr(out, "class Model(ModelBase):") != NULL);
    snprintf(cmd, sizeof cmd, "cp specs/jmvae.spec %s/ && cd %s && %s/jmvaec --emit=torch jmvae.spec", dir, dir,
             getenv("PWD"));
    cr_assert_eq(run_command(cmd, &again), 0, "%s", again);
    cr_expect_str_eq(out, again, "the module depends on the folder");
    free(again);
    snprintf(cmd, sizeof cmd, "./jmvaec --emit=torch specs/jmvae.spec -o %s/out && cat %s/out/jmvae.py", dir, dir);
    cr_assert_eq(run_command(cmd, &again), 0, "%s", again);
    cr_expect_str_eq(out, again, "-o writes what stdout shows");
    free(again);
    free(out);
    snprintf(cmd, sizeof cmd, "echo mine > %s/out/jmvae.py && ./jmvaec --emit=torch specs/jmvae.spec -o %s/out", dir, dir);
    cr_expect_eq(run_command(cmd, &out), 2, "%s", out);
    cr_expect(strstr(out, "exists and was not written by jmvaec; not replacing it") != NULL, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/out/jmvae.py", dir);
    char *kept = read_text_file(cmd);
    cr_expect_str_eq(kept ? kept : "", "mine\n", "a file jmvaec did not write was replaced");
    free(kept);
    remove_folder(dir);
    free(dir);
}
