/* driver.c: spec -> syntax tree -> checked model -> IR -> gradient IR ->
 * tasks -> plan -> C, stopping at the stage the command line asks for. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "backend.h"

static const char *const stages[] = {"ast", "model", "ir", "grad", "tasks", "plan", "c", "torch"};

int stage_known(const char *stage)
{
    for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
        if (strcmp(stage, stages[i]) == 0)
            return 1;
    return 0;
}

/* The stages after the checks, up to the one the command line names:
 * lowering, differentiation, tasks (the large GEMMs split), planning. NULL after an internal error
 * (reported). */
static program *back_end(ctx *c, const sem_model *m, const char *stage)
{
    program *p = lower_model(c, m);
    if (strcmp(stage, "ir") == 0 || strcmp(stage, "torch") == 0) /* PyTorch differentiates for itself */
        return p;
    for (int i = 0; i < p->n_graphs; i++) /* the training graphs: complete examples', then each observed subset's */
        if (p->graphs[i]->kind == G_TRAIN)
            differentiate(c, p, p->graphs[i]);
    if (strcmp(stage, "grad") == 0)
        return p;
    for (int i = 0; i < p->n_graphs; i++)
        if (p->graphs[i]->kind == G_TRAIN) {
            split_gemms(c, p->graphs[i]);
            schedule_graph(c, p, p->graphs[i]);
        }
    plan_program(p);
    for (int i = 0; i < p->n_graphs; i++) {
        if (p->graphs[i]->kind != G_TRAIN)
            continue;
        if (schedule_check_regions(p, p->graphs[i]) != 0) {
            fprintf(stderr, "jmvaec: internal error: the gradient regions of %s's %s do not cover its parameters once "
                    "each\n", m->name, p->graphs[i]->name);
            return NULL;
        }
        schedule_param_reads(c, p, p->graphs[i]);
    }
    return p;
}

/* IR, gradient, tasks, plan and C: the stages after the checks. */
static int run_back_end(ctx *c, const sem_model *m, const driver_options *opt)
{
    const char *stage = opt->mode == MODE_EMIT ? opt->emit : "c";
    program *p = back_end(c, m, stage);
    if (!p)
        return 2;
    if (strcmp(stage, "ir") == 0) {
        for (int i = 0; i < p->n_graphs; i++)
            ir_dump(stdout, p, p->graphs[i], 0);
        return 0;
    }
    if (strcmp(stage, "grad") == 0 || strcmp(stage, "tasks") == 0) {
        for (int i = 0; i < p->n_graphs; i++)
            if (p->graphs[i]->kind == G_TRAIN && stage[0] == 'g')
                ir_dump(stdout, p, p->graphs[i], 1);
            else if (p->graphs[i]->kind == G_TRAIN)
                tasks_dump(stdout, p, p->graphs[i]);
        return 0;
    }
    if (strcmp(stage, "plan") == 0) {
        plan_dump(stdout, p, opt->plan_batch > 0 ? opt->plan_batch : (int)m->train.batch);
        return 0;
    }
    if (strcmp(stage, "torch") == 0) {
        if (opt->out_dir)
            return emit_torch_program(c, p, opt->out_dir);
        emit_torch_to(c, p, stdout);
        return 0;
    }
    if (opt->mode == MODE_EMIT) {
        emit_source_to(c, p, stdout);
        return 0;
    }
    return emit_program(c, p, opt->out_dir);
}

int compile_text(const char *name, const char *text, size_t len, FILE *diag, FILE *out)
{
    ctx c;
    ctx_init(&c, name, diag);
    ctx_set_source(&c, text, len);
    parse_spec(&c);
    int status = c.n_errors ? 1 : 0;
    if (!status) {
        sem_model *m = check_spec(&c);
        if (!m) {
            status = 1;
        } else {
            program *p = back_end(&c, m, "c");
            if (!p)
                status = 2;
            else if (out) {
                emit_all_to(&c, p, out);
                emit_torch_to(&c, p, out);
            }
        }
    }
    ctx_free(&c);
    return status;
}

int run_driver(const driver_options *opt)
{
    ctx c;
    ctx_init(&c, opt->spec_path, stderr);
    c.samples_override = opt->samples;
    c.gradient_override = opt->gradient;
    c.split_mflop = opt->split_mflop;
    if (ctx_read_file(&c) != 0) {
        ctx_free(&c);
        return 2;
    }
    int status = 0;
    parse_spec(&c);
    if (opt->mode == MODE_EMIT && strcmp(opt->emit, "ast") == 0) {
        /* the tree as parsed, before any check: also of a spec the checker refuses
         * (and, after a syntax error, what the parser recovered) */
        if (c.spec)
            ast_dump(stdout, c.spec, 1);
        status = c.n_errors ? 1 : 0;
    } else if (c.n_errors) {
        status = 1;
    } else if (opt->mode == MODE_FMT) {
        ast_format(stdout, &c);
    } else {
        sem_model *m = check_spec(&c);
        if (!m) {
            status = 1;
        } else if (opt->mode == MODE_EMIT && strcmp(opt->emit, "model") == 0) {
            model_dump(stdout, m);
        } else if (opt->mode != MODE_CHECK) {
            status = run_back_end(&c, m, opt);
        }
    }
    if (c.n_errors)
        fprintf(stderr, "%s: %d error%s%s\n", c.path, c.n_errors, c.n_errors == 1 ? "" : "s",
                c.n_warnings ? ", with warnings" : "");
    ctx_free(&c);
    return status;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Installed (PREFIX/bin/jmvaec beside PREFIX/include/jmvaec and PREFIX/lib),
 * the flags point there; otherwise at the source tree this jmvaec was built
 * in (its runtime/ headers and the build folder's libjmvaec.a). */
int print_build_flags(const char *argv0, build_query query)
{
    char exe[PATH_MAX], inc[PATH_MAX + 64], lib[PATH_MAX + 64], probe[PATH_MAX + 128];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0)
        exe[n] = 0;
    else
        snprintf(exe, sizeof exe, "%s", argv0);
    char *slash = strrchr(exe, '/');
    if (!slash)
        return 1;
    *slash = 0; /* the folder of the binary */
    snprintf(probe, sizeof probe, "%s/../include/jmvaec/jv_model.h", exe);
    if (is_file(probe)) {
        snprintf(inc, sizeof inc, "%s/../include/jmvaec", exe);
        snprintf(lib, sizeof lib, "%s/../lib", exe);
    } else if (is_file(JMVAEC_SOURCE_DIR "/runtime/jv_model.h")) {
        snprintf(inc, sizeof inc, "%s", JMVAEC_SOURCE_DIR "/runtime");
        snprintf(lib, sizeof lib, "%s", JMVAEC_BUILD_DIR);
    } else {
        fprintf(stderr, "jmvaec: cannot find the runtime (looked in %s/../include/jmvaec and %s/runtime)\n", exe,
                JMVAEC_SOURCE_DIR);
        return 1;
    }
    int mpi = query == QUERY_MPI_LIBS || query == QUERY_MPI_DEPS;
    snprintf(probe, sizeof probe, "%s/libjmvaec_mpi.a", lib);
    if (mpi && !is_file(probe)) {
        fprintf(stderr, "jmvaec: this runtime was built without MPI (no %s): install Open MPI "
                        "(apt-get install libopenmpi-dev openmpi-bin), then build jmvaec again\n", probe);
        return 1;
    }
    if (query == QUERY_CFLAGS)
        printf("-I%s\n", inc);
    else if (query == QUERY_LIBS || query == QUERY_MPI_LIBS)
        /* the MPI part whole, so that its definitions win over libjmvaec.a's one-process ones */
        printf("-L%s%s -ljmvaec -lopenblas -ldeflate -lz -lm -lpthread\n", lib,
               mpi ? " -Wl,--whole-archive -ljmvaec_mpi -Wl,--no-whole-archive" : "");
    else
        printf("%s/jv_model.h %s/jv_runtime.h %s/jv_trainer.h %s/jv_gradcheck.h %s/libjmvaec.a%s%s%s\n", inc, inc, inc,
               inc, lib, mpi ? " " : "", mpi ? lib : "", mpi ? "/libjmvaec_mpi.a" : "");
    return 0;
}
