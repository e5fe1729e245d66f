/* jv_trainer.h: the command-line program every generated model links.
 *
 * A generated model's main is one line,
 *     return jv_main(&<model>_model, <model>_gradcheck, argc, argv);
 * and jv_main runs the subcommands train, eval, sample, encode, gradcheck
 * and help on that model. It returns the process exit status (0 success,
 * 1 a usage error or a failure reported as one "<prog>: ..." line on stderr)
 * and never calls exit itself.
 *
 * The small option parser the subcommands share is public too, so that the
 * double-precision gradient check (jv_gradcheck.h) parses its flags the same
 * way; it handles no jv_real data and works in either precision.
 */
#ifndef JV_TRAINER_H
#define JV_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "jv_model.h"

int jv_main(const jv_model *model, int (*gradcheck)(int argc, char **argv), int argc, char **argv);

/* The program's name as jv_main saw it (basename of argv[0]), for messages. */
const char *jv_prog_name(void);

/* ------------------------------------------------------ option parser -- */

typedef enum {
    JV_OPT_FLAG,   /* int, set to 1 */
    JV_OPT_INT,    /* int, within [min, max] */
    JV_OPT_U64,    /* uint64_t, within [min, max] */
    JV_OPT_REAL,   /* double, finite, within [min, max] */
    JV_OPT_STRING, /* const char *, pointing into argv */
    JV_OPT_LIST    /* jv_opt_list: every occurrence, in order */
} jv_opt_type;

#define JV_OPT_LIST_MAX 64

typedef struct {
    int n;
    const char *item[JV_OPT_LIST_MAX];
} jv_opt_list;

typedef struct {
    const char *name;    /* without the leading "--" */
    jv_opt_type type;
    void *dest;          /* holds the default before parsing */
    double min, max;     /* for numbers */
    const char *metavar; /* e.g. "N"; NULL for flags */
    const char *help;
    int given;           /* set by the parser when the flag appears */
} jv_option;

/* Parses "--name value" and "--name=value" for the n options of command
 * `cmd`. Returns 0 when parsed, 1 after printing one error line to stderr,
 * and 2 after printing the help (for --help or -h) to stdout; `usage` is the
 * help's first line after "<prog> <cmd> ", `about` a paragraph below it. */
int jv_parse_options(const char *cmd, const char *usage, const char *about, jv_option *opts, int n,
                     int argc, char **argv);
/* Parses text as those options parse a value: JV_OPT_INT or JV_OPT_U64 a
 * whole number, JV_OPT_REAL a finite real, within [min, max]. Returns 0, or
 * -1 and prints nothing (the caller names the value in its message). */
int jv_parse_value(const char *text, jv_opt_type type, double min, double max, double *out);

/* Prints "<prog>: " + the message + a newline to stderr; returns 1. */
int jv_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
