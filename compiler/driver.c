/* driver.c: spec -> syntax tree -> checked model -> IR -> gradient IR ->
 * plan -> C, stopping at the stage the command line asks for. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "model.h"

static const char *const stages[] = {"ast", "model", "ir", "grad", "plan", "c"};

int stage_known(const char *stage)
{
    for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
        if (strcmp(stage, stages[i]) == 0)
            return 1;
    return 0;
}

int run_driver(const driver_options *opt)
{
    ctx c;
    ctx_init(&c, opt->spec_path, stderr);
    if (ctx_read_file(&c) != 0) {
        ctx_free(&c);
        return 2;
    }
    int status = 0;
    parse_spec(&c);
    if (c.n_errors) {
        status = 1;
    } else if (opt->mode == MODE_FMT) {
        ast_format(stdout, &c);
    } else {
        sem_model *m = check_spec(&c);
        if (!m) {
            status = 1;
        } else if (opt->mode == MODE_EMIT && strcmp(opt->emit, "ast") == 0) {
            ast_dump(stdout, c.spec, 1);
        } else if (opt->mode == MODE_EMIT && strcmp(opt->emit, "model") == 0) {
            model_dump(stdout, m);
        }
    }
    if (c.n_errors)
        fprintf(stderr, "%s: %d error%s%s\n", c.path, c.n_errors, c.n_errors == 1 ? "" : "s",
                c.n_warnings ? ", with warnings" : "");
    ctx_free(&c);
    return status;
}

int print_build_flags(const char *argv0, int cflags)
{
    (void)argv0;
    (void)cflags;
    return 1;
}
