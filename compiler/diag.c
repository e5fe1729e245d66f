/* diag.c: reading the spec, and diagnostics in the form
 *     file:line:col: error: message
 *      12 | the source line
 *         |     ^
 * Tabs in the quoted line are kept, and the caret line copies them, so the
 * caret sits under the column whatever the tab width. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ast.h"

void ctx_init(ctx *c, const char *path, FILE *diag_out)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->diag_out = diag_out;
    c->max_errors = 50;
    c->gradient_override = -1;
    c->split_mflop = -1;
}

void ctx_free(ctx *c)
{
    arena_free(&c->mem);
}

void ctx_set_source(ctx *c, const char *text, size_t len)
{
    c->source = arena_strndup(&c->mem, text, len);
    c->source_len = len;
}

enum { MAX_SPEC_BYTES = 16 << 20 };

int ctx_read_file(ctx *c)
{
    struct stat st;
    FILE *f = fopen(c->path, "rb");
    if (!f) {
        fprintf(c->diag_out, "jmvaec: error: cannot open '%s': %s\n", c->path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(c->diag_out, "jmvaec: error: '%s' is not a regular file\n", c->path);
        fclose(f);
        return -1;
    }
    if (st.st_size > MAX_SPEC_BYTES) {
        fprintf(c->diag_out, "jmvaec: error: '%s' is larger than 16 MiB; not a spec\n", c->path);
        fclose(f);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    char *buf = arena_alloc(&c->mem, len + 1);
    size_t got = fread(buf, 1, len, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || got != len) {
        fprintf(c->diag_out, "jmvaec: error: cannot read '%s'\n", c->path);
        return -1;
    }
    c->source = buf;
    c->source_len = len;
    return 0;
}

/* The start and length of line `line` (1-based) of the source. */
static const char *source_line(const ctx *c, int line, size_t *len)
{
    const char *p = c->source, *end = c->source + c->source_len;
    for (int l = 1; l < line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NULL;
        p = nl + 1;
    }
    if (!p || p > end)
        return NULL;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *len = (size_t)((nl ? nl : end) - p);
    return p;
}

static void print_excerpt(const ctx *c, loc at)
{
    size_t len;
    const char *text = at.line > 0 ? source_line(c, at.line, &len) : NULL;
    if (!text)
        return;
    FILE *out = c->diag_out;
    /* a long line is shown as a window around the column */
    enum { WINDOW = 100 };
    size_t start = 0;
    if (len > WINDOW && at.col > WINDOW / 2)
        start = (size_t)at.col - 1 - WINDOW / 2 < len ? (size_t)at.col - 1 - WINDOW / 2 : len;
    size_t stop = start + WINDOW < len ? start + WINDOW : len;
    fprintf(out, "%5d | %s", at.line, start ? "..." : "");
    for (size_t i = start; i < stop; i++) {
        unsigned char ch = (unsigned char)text[i];
        fputc(ch == '\t' || (ch >= 32 && ch < 127) || ch >= 128 ? ch : '?', out);
    }
    fputs(stop < len ? "...\n      | " : "\n      | ", out);
    if (start)
        fputs("   ", out);
    for (size_t i = start; i + 1 < (size_t)at.col && i < len; i++)
        fputc(text[i] == '\t' ? '\t' : ' ', out);
    fputs("^\n", out);
}

/* The diagnostic as "kind line:col message", or NULL when the same one was
 * already given (a loop's body is checked once for each instance: what is
 * wrong in all of them is said once). */
static const char *first_time(ctx *c, const char *kind, loc at, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    char *msg = arena_alloc(&c->mem, (size_t)(n > 0 ? n : 0) + 1);
    vsnprintf(msg, (size_t)(n > 0 ? n : 0) + 1, fmt, ap);
    char *key = arena_printf(&c->mem, "%s %d:%d %s", kind, at.line, at.col, msg);
    for (int i = 0; i < c->diagnostics.n; i++)
        if (strcmp(c->diagnostics.items[i], key) == 0)
            return NULL;
    vec_push(&c->mem, &c->diagnostics, key);
    return msg;
}

static void report(ctx *c, const char *kind, loc at, const char *msg)
{
    if (at.line > 0)
        fprintf(c->diag_out, "%s:%d:%d: %s: ", c->path, at.line, at.col, kind);
    else
        fprintf(c->diag_out, "%s: %s: ", c->path, kind);
    fputs(msg, c->diag_out);
    fputc('\n', c->diag_out);
    print_excerpt(c, at);
}

void diag_error(ctx *c, loc at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = first_time(c, "error", at, fmt, ap);
    va_end(ap);
    if (!msg)
        return;
    c->n_errors++;
    if (c->n_errors > c->max_errors)
        return;
    report(c, "error", at, msg);
    if (c->n_errors == c->max_errors)
        fprintf(c->diag_out, "%s: too many errors; stopping\n", c->path);
}

void diag_warning(ctx *c, loc at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = first_time(c, "warning", at, fmt, ap);
    va_end(ap);
    if (!msg)
        return;
    c->n_warnings++;
    report(c, "warning", at, msg);
}

void diag_note(ctx *c, loc at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = first_time(c, "note", at, fmt, ap);
    va_end(ap);
    if (msg)
        report(c, "note", at, msg);
}
