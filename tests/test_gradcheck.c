/* test_gradcheck.c: the header-only gradient check (jv_gradcheck.h), built
 * in double precision as generated code builds it, on the hand-written
 * fixture model: it passes on the correct gradient, fails on a wrong one or
 * on a backward pass that leaves entries unwritten, and rejects bad flags.
 */
#define JV_DOUBLE 1

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "jv_gradcheck.h"
#include "trainer_fixture.h"

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
