/* main.c: the jmvaec command line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"

#define JMVAEC_VERSION "0.1.0"

static const char usage[] =
    "usage: jmvaec SPEC -o DIR          compile SPEC into C in DIR (DIR/<model>.h, .c, Makefile)\n"
    "       jmvaec --check SPEC         check SPEC only (errors and warnings)\n"
    "       jmvaec --emit=STAGE SPEC    print one stage: ast, model, ir, grad, tasks, plan or c\n"
    "       jmvaec --emit=torch SPEC -o DIR   the model as a PyTorch module, DIR/<model>.py (stdout without -o)\n"
    "       jmvaec fmt SPEC             print SPEC in canonical layout\n"
    "       jmvaec --cflags | --libs    flags to build generated code against this jmvaec's runtime\n"
    "       jmvaec --deps               the runtime's headers and library, for make dependencies\n"
    "       jmvaec --mpi-libs | --mpi-deps  the same for a trainer built on MPI (its Makefile's MPI=1)\n"
    "       jmvaec --help | --version\n"
    "options: --batch N (with --emit=plan: the batch size the totals are given for; default the spec's)\n"
    "         --samples K (importance samples of each draw, 1 to 256) and --gradient reparam|dreg:\n"
    "         instead of the spec's train { samples, gradient }\n"
    "         --split-mflop F: the training step's GEMMs and convolutions of at least F MFLOP at a batch\n"
    "         of 100 become two tasks each (default 10; 0: every one that can be cut, as the tests do)\n"
    "exit status: 0 success, 1 errors in the spec, 2 usage or I/O errors\n";

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("jmvaec: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(jmvaec --help shows the usage)\n", stderr);
    return 2;
}

/* The build query an option names, or -1. */
static int build_query_named(const char *a)
{
    static const char *const names[] = {"--cflags", "--libs", "--deps", "--mpi-libs", "--mpi-deps"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(a, names[i]) == 0)
            return i;
    return -1;
}

int main(int argc, char **argv)
{
    driver_options opt = {0};
    opt.plan_batch = -1;
    opt.gradient = -1;
    opt.split_mflop = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            puts("jmvaec " JMVAEC_VERSION);
            return 0;
        } else if (build_query_named(a) >= 0) {
            return print_build_flags(argv[0], (build_query)build_query_named(a)) ? 2 : 0;
        } else if (strcmp(a, "--check") == 0) {
            opt.mode = MODE_CHECK;
        } else if (strncmp(a, "--emit=", 7) == 0) {
            opt.mode = MODE_EMIT;
            opt.emit = a + 7;
            if (!stage_known(opt.emit))
                return usage_error("unknown stage '%s' for --emit (ast, model, ir, grad, tasks, plan, c or torch)", opt.emit);
        } else if (strcmp(a, "-o") == 0) {
            if (++i == argc)
                return usage_error("%s needs a folder", "-o");
            opt.out_dir = argv[i];
        } else if (strcmp(a, "--batch") == 0) {
            char *end;
            if (++i == argc)
                return usage_error("%s needs a number", "--batch");
            errno = 0;
            long b = strtol(argv[i], &end, 10);
            if (*end || errno || b < 1 || b > 1000000)
                return usage_error("--batch '%s' is not a batch size (1 to 1000000)", argv[i]);
            opt.plan_batch = (int)b;
        } else if (strcmp(a, "--samples") == 0) {
            char *end;
            if (++i == argc)
                return usage_error("%s needs a number", "--samples");
            errno = 0;
            long k = strtol(argv[i], &end, 10);
            if (*end || errno || k < 1 || k > 256)
                return usage_error("--samples '%s' is not a number of importance samples (1 to 256)", argv[i]);
            opt.samples = k;
        } else if (strcmp(a, "--gradient") == 0) {
            if (++i == argc)
                return usage_error("%s needs reparam or dreg", "--gradient");
            if (strcmp(argv[i], "reparam") != 0 && strcmp(argv[i], "dreg") != 0)
                return usage_error("--gradient '%s': expecting reparam or dreg", argv[i]);
            opt.gradient = strcmp(argv[i], "dreg") == 0;
        } else if (strcmp(a, "--split-mflop") == 0) {
            char *end;
            if (++i == argc)
                return usage_error("%s needs a number", "--split-mflop");
            errno = 0;
            double f = strtod(argv[i], &end);
            if (*end || errno || end == argv[i] || !(f >= 0 && f <= 1e9))
                return usage_error("--split-mflop '%s' is not a number of MFLOP (0 to 1e9)", argv[i]);
            opt.split_mflop = f;
        } else if (strcmp(a, "fmt") == 0 && !opt.spec_path && opt.mode == MODE_COMPILE) {
            opt.mode = MODE_FMT;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option '%s'", a);
        } else if (opt.spec_path) {
            return usage_error("more than one spec given ('%s')", a);
        } else {
            opt.spec_path = a;
        }
    }
    if (!opt.spec_path)
        return usage_error("%s", "no spec given");
    if (opt.mode == MODE_COMPILE && !opt.out_dir)
        return usage_error("%s", "no output folder: jmvaec SPEC -o DIR (or --check, --emit=STAGE, fmt)");
    return run_driver(&opt);
}
