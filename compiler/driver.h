/* driver.h: runs the stages of a compilation for the command line. */
#ifndef JMVAEC_DRIVER_H
#define JMVAEC_DRIVER_H

#include <stddef.h>
#include <stdio.h>

typedef enum { MODE_COMPILE, MODE_CHECK, MODE_EMIT, MODE_FMT } driver_mode;

typedef struct {
    driver_mode mode;
    const char *emit;      /* the stage to print with MODE_EMIT */
    const char *spec_path;
    const char *out_dir;
    int plan_batch;        /* -1: the spec's batch size */
    long samples;          /* --samples K: instead of the spec's, or 0 */
    int gradient;          /* --gradient: 0 reparam, 1 dreg, or -1 for the spec's */
    double split_mflop;    /* --split-mflop: the smallest GEMM cut into tasks, or -1 for the default */
} driver_options;

int stage_known(const char *stage);
int run_driver(const driver_options *opt);
/* The whole compilation of a spec held in memory, its files (the C back
 * end's, then the PyTorch module) written one after another to `out` (when
 * not NULL), diagnostics to `diag`: 0, 1 for errors in the spec, 2 for an
 * internal error. */
int compile_text(const char *name, const char *text, size_t len, FILE *diag, FILE *out);
/* --cflags, --libs, --deps: where this jmvaec finds its runtime. */
typedef enum { QUERY_CFLAGS, QUERY_LIBS, QUERY_DEPS, QUERY_MPI_LIBS, QUERY_MPI_DEPS } build_query;
int print_build_flags(const char *argv0, build_query query);

#endif
