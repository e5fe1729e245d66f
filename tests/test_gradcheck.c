/* test_gradcheck.c: the header-only gradient check (jv_gradcheck.h), built
 * in double precision as generated code builds it, on the hand-written
 * fixture model: it passes on the correct gradient, fails on a wrong one or
 * on a backward pass that leaves entries unwritten, and rejects bad flags.
 */
#define JV_DOUBLE 1

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <unistd.h>

#include "jv_gradcheck.h"
#include "trainer_fixture.h"

static int contains(const char *text, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(text + i, needle, k) == 0)
            return 1;
    return 0;
}

static void quiet(void)
{
    cr_redirect_stdout();
    cr_redirect_stderr();
}

static int write_and_check(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* Runs the check with the given flags (argv[0] is "gradcheck"). */
static int gradcheck(int argc, const char *const *args)
{
    char *argv[16];
    for (int i = 0; i < argc && i < 16; i++)
        argv[i] = (char *)(uintptr_t)args[i];
    return jv_gradcheck_run(&fixture_model, argc, argv);
}

Test(gradcheck, passes_on_the_fixture, .init = cr_redirect_stdout)
{
    const char *args[] = {"gradcheck"};
    cr_assert_eq(gradcheck(1, args), 0);
    fflush(stdout);
    cr_assert_stdout_neq_str("");
}

Test(gradcheck, passes_with_other_seeds_and_batches, .init = cr_redirect_stdout)
{
    const char *args[] = {"gradcheck", "--seed", "7", "--batch", "5", "--entries", "20", "--quiet"};
    cr_assert_eq(gradcheck(8, args), 0);
}

Test(gradcheck, fails_on_a_wrong_gradient, .init = cr_redirect_stdout)
{
    fixture_grad_bug = 1;
    const char *args[] = {"gradcheck", "--quiet", "--entries", "14"};
    cr_assert_eq(gradcheck(4, args), 1);
}

Test(gradcheck, fails_when_backward_does_not_overwrite, .init = cr_redirect_stdout)
{
    fixture_grad_bug = 2;
    const char *args[] = {"gradcheck", "--quiet"};
    cr_assert_eq(gradcheck(2, args), 1);
}

Test(gradcheck, loose_tolerance_accepts_the_wrong_gradient, .init = cr_redirect_stdout)
{
    fixture_grad_bug = 1;
    const char *args[] = {"gradcheck", "--quiet", "--entries", "14", "--tol", "0.01"};
    cr_assert_eq(gradcheck(6, args), 0);
}

Test(gradcheck, rejects_unknown_flags, .init = cr_redirect_stderr)
{
    const char *args[] = {"gradcheck", "--bogus"};
    cr_assert_eq(gradcheck(2, args), 1);
    const char *bad_value[] = {"gradcheck", "--batch", "0"};
    cr_assert_eq(gradcheck(3, bad_value), 1);
}

Test(gradcheck, help_succeeds, .init = cr_redirect_stdout)
{
    const char *args[] = {"gradcheck", "--help"};
    cr_assert_eq(gradcheck(2, args), 0);
}

/* --dump: an archive of the batch and what the model computes on it, every
 * array named as the help says; a file jmvaec did not write is left alone. */
Test(gradcheck, dump_writes_the_batch_and_the_results, .init = quiet)
{
    char path[] = "/tmp/jmvaec-gc-dump-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(write_and_check(path, "mine\n"), 0);
    const char *args[] = {"gradcheck", "--quiet", "--dump", path};
    cr_assert_eq(gradcheck(4, args), 1, "a foreign file was taken");
    FILE *f = fopen(path, "rb");
    char head[8] = "";
    cr_assert(f && fread(head, 1, 5, f) == 5);
    fclose(f);
    cr_expect_eq(memcmp(head, "mine\n", 5), 0, "a foreign file was changed");
    remove(path);
    cr_assert_eq(gradcheck(4, args), 0);
    cr_expect(jv_npz_ours(path));
    f = fopen(path, "rb");
    cr_assert(f);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    const char *names[] = {"loss.npy", "terms.npy", "data/", "noise/", "params/", "grad/", "posterior/", "log_joint/log_prior.npy",
                           "decode/", "sample_prior/", "written by jmvaec gradcheck: model"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect(contains(text, n, names[i]), "no %s in the archive", names[i]);
    remove(path);
}

Test(gradcheck, refuses_a_missing_checkpoint, .init = cr_redirect_stderr)
{
    const char *args[] = {"gradcheck", "--checkpoint", "/nonexistent/last.ckpt"};
    cr_assert_eq(gradcheck(3, args), 1);
    fflush(stderr);
    cr_assert_stderr_neq_str("");
}
