/* jv_trainer_opts.c: the option parser of the trainer's subcommands (and of
 * the gradient check): "--name value" or "--name=value", typed and
 * range-checked values, a help text built from the same table, and one
 * clear error line for anything it does not accept.
 */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "jv_comm.h"
#include "jv_trainer.h"

int jv_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (jv_comm_size() > 1) /* under MPI every message names its process */
        fprintf(stderr, "%s (rank %d of %d): ", jv_prog_name(), jv_comm_rank(), jv_comm_size());
    else
        fprintf(stderr, "%s: ", jv_prog_name());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* ------------------------------------------------------------- values -- */

/* "an integer >= 1", "a number in [0, 1]": the accepted range in words. */
static void describe_range(const jv_option *o, char *buf, size_t size)
{
    const char *what = o->type == JV_OPT_REAL ? "a number" : "an integer";
    int open_top = o->max >= (o->type == JV_OPT_INT ? (double)INT_MAX : 1e300);
    if (open_top)
        snprintf(buf, size, "%s >= %.15g", what, o->min);
    else
        snprintf(buf, size, "%s in [%.15g, %.15g]", what, o->min, o->max);
}

static int bad_value(const char *cmd, const jv_option *o, const char *text)
{
    char range[96];
    describe_range(o, range, sizeof range);
    return jv_fail("%s: --%s expects %s, got '%s'", cmd, o->name, range, text);
}

/* Parses text as a whole number or a finite real within the option's range. */
static int parse_number(const char *text, const jv_option *o, double *out)
{
    char *end = NULL;
    errno = 0;
    double v;
    if (o->type == JV_OPT_REAL) {
        v = strtod(text, &end);
    } else {
        if (strchr(text, '-') && o->min >= 0)
            return -1;
        long long s = strtoll(text, &end, 10);
        v = (double)s;
        if (o->type == JV_OPT_U64 && errno == ERANGE) {
            errno = 0;
            v = (double)strtoull(text, &end, 10);
        }
    }
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v < o->min || v > o->max)
        return -1;
    *out = v;
    return 0;
}

int jv_parse_value(const char *text, jv_opt_type type, double min, double max, double *out)
{
    jv_option o = {.type = type, .min = min, .max = max};
    return parse_number(text, &o, out);
}

static int store_value(const char *cmd, jv_option *o, const char *text)
{
    double v = 0;
    switch (o->type) {
    case JV_OPT_STRING:
        *(const char **)o->dest = text;
        return 0;
    case JV_OPT_LIST: {
        jv_opt_list *l = o->dest;
        if (l->n == JV_OPT_LIST_MAX)
            return jv_fail("%s: too many --%s options (at most %d)", cmd, o->name, JV_OPT_LIST_MAX);
        l->item[l->n++] = text;
        return 0;
    }
    case JV_OPT_FLAG:
        *(int *)o->dest = 1;
        return 0;
    default:
        break;
    }
    if (parse_number(text, o, &v) != 0)
        return bad_value(cmd, o, text);
    if (o->type == JV_OPT_INT)
        *(int *)o->dest = (int)v;
    else if (o->type == JV_OPT_U64)
        *(uint64_t *)o->dest = strtoull(text, NULL, 10);
    else
        *(double *)o->dest = v;
    return 0;
}

/* --------------------------------------------------------------- help -- */

/* The default after the help text, unless the text says it in words. */
static void format_default(const jv_option *o, char *buf, size_t size)
{
    buf[0] = '\0';
    if (strstr(o->help, "(default"))
        return;
    if (o->type == JV_OPT_INT)
        snprintf(buf, size, " (default %d)", *(const int *)o->dest);
    else if (o->type == JV_OPT_U64)
        snprintf(buf, size, " (default %llu)", (unsigned long long)*(const uint64_t *)o->dest);
    else if (o->type == JV_OPT_REAL)
        snprintf(buf, size, " (default %g)", *(const double *)o->dest);
    else if (o->type == JV_OPT_STRING && *(const char *const *)o->dest)
        snprintf(buf, size, " (default %s)", *(const char *const *)o->dest);
}

static void print_help(const char *cmd, const char *usage, const char *about, const jv_option *opts, int n)
{
    printf("usage: %s %s %s\n\n%s\n\noptions:\n", jv_prog_name(), cmd, usage, about);
    int width = 0;
    for (int i = 0; i < n; i++) {
        int w = (int)strlen(opts[i].name) + (opts[i].metavar ? (int)strlen(opts[i].metavar) + 1 : 0);
        width = w > width ? w : width;
    }
    for (int i = 0; i < n; i++) {
        char left[160], def[96];
        snprintf(left, sizeof left, "%s%s%s", opts[i].name, opts[i].metavar ? " " : "",
                 opts[i].metavar ? opts[i].metavar : "");
        format_default(&opts[i], def, sizeof def);
        printf("  --%-*s  %s%s\n", width, left, opts[i].help, def);
    }
    printf("  --%-*s  %s\n", width, "help", "show this help");
}

/* ------------------------------------------------------------- parser -- */

static jv_option *find_option(jv_option *opts, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

/* Handles argv[*i] (an option) and, when it takes one, its value. */
static int parse_one(const char *cmd, jv_option *opts, int n, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return jv_fail("%s: unexpected argument '%s' (see '%s %s --help')", cmd, arg, jv_prog_name(), cmd);
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    jv_option *o = find_option(opts, n, name, len);
    if (!o)
        return jv_fail("%s: unknown option '%.*s' (see '%s %s --help')", cmd, (int)(len + 2), arg,
                       jv_prog_name(), cmd);
    o->given = 1;
    if (o->type == JV_OPT_FLAG) {
        if (eq)
            return jv_fail("%s: --%s takes no value", cmd, o->name);
        return store_value(cmd, o, "");
    }
    if (eq)
        return store_value(cmd, o, eq + 1);
    if (*i + 1 >= argc)
        return jv_fail("%s: --%s needs a value (%s)", cmd, o->name, o->metavar ? o->metavar : "VALUE");
    *i += 1;
    return store_value(cmd, o, argv[*i]);
}

int jv_parse_options(const char *cmd, const char *usage, const char *about, jv_option *opts, int n,
                     int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(cmd, usage, about, opts, n);
            return 2;
        }
    }
    for (int i = 1; i < argc; i++)
        if (parse_one(cmd, opts, n, argc, argv, &i) != 0)
            return 1;
    return 0;
}
