/* driver.h: runs the stages of a compilation for the command line. */
#ifndef JMVAEC_DRIVER_H
#define JMVAEC_DRIVER_H

typedef enum { MODE_COMPILE, MODE_CHECK, MODE_EMIT, MODE_FMT } driver_mode;

typedef struct {
    driver_mode mode;
    const char *emit;      /* the stage to print with MODE_EMIT */
    const char *spec_path;
    const char *out_dir;
    int plan_batch;        /* -1: the spec's batch size */
} driver_options;

int stage_known(const char *stage);
int run_driver(const driver_options *opt);
/* --cflags, --libs, --deps: where this jmvaec finds its runtime. */
typedef enum { QUERY_CFLAGS, QUERY_LIBS, QUERY_DEPS } build_query;
int print_build_flags(const char *argv0, build_query query);

#endif
