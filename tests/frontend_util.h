/* frontend_util.h: runs the front end on a string, for the unit tests. */
#ifndef TESTS_FRONTEND_UTIL_H
#define TESTS_FRONTEND_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "model.h"

typedef struct {
    int errors, warnings;
    char *text; /* everything printed, malloc'd */
} check_result;

/* Parses and checks src as if it were the file "t.spec". */
static inline check_result check_text(const char *src)
{
    check_result r = {0, 0, NULL};
    size_t len = 0;
    FILE *out = open_memstream(&r.text, &len);
    ctx c;
    ctx_init(&c, "t.spec", out);
    ctx_set_source(&c, src, strlen(src));
    if (parse_spec(&c) == 0)
        check_spec(&c);
    r.errors = c.n_errors;
    r.warnings = c.n_warnings;
    ctx_free(&c);
    fclose(out);
    return r;
}

/* Reads a whole file into a malloc'd string. */
static inline char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        fclose(f);
        return NULL;
    }
    s[n] = 0;
    fclose(f);
    return s;
}

/* A minimal valid model, to which tests append or in which they substitute. */
#define BASE_SPEC                                                                                                \
    "model m\n"                                                                                                  \
    "modality x[4] ~ bernoulli\n"                                                                                \
    "latent z[2] ~ normal\n"                                                                                     \
    "net enc = x -> relu(3) -> q(z | x)\n"                                                                         \
    "net p_x = z -> relu(3) -> p(x | z)\n"

#define BASE_LOSS "loss {\n  z ~ q(z | x)\n  rec = -log p(x | z)\n  kl = KL(q(z | x) || p(z))\n}\n"

#endif
