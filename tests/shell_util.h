/* shell_util.h: running commands from tests (the tests run from the
 * repository's root, where make test starts them). */
#ifndef TESTS_SHELL_UTIL_H
#define TESTS_SHELL_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Runs a shell command; returns its exit status, with everything it printed
 * (stdout and stderr) in *output (malloc'd) when output is not NULL. */
static inline int run_command(const char *cmd, char **output)
{
    char *full = malloc(strlen(cmd) + 16);
    sprintf(full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    if (!p)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = 0;
    int status = pclose(p);
    if (output)
        *output = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* A whole file as a NUL-terminated string (malloc'd), or NULL if unreadable. */
static inline char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf)
        buf[len] = 0;
    return buf;
}

/* A fresh temporary folder (malloc'd path). */
static inline char *temp_folder(const char *tag)
{
    char *path = malloc(256);
    snprintf(path, 256, "/tmp/jmvaec-test-%s-XXXXXX", tag);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static inline void remove_folder(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    run_command(cmd, NULL);
}

/* Whether this test binary runs under the sanitizers (make SANITIZE=...):
 * the suites then run fewer of their repeated cases (the plain build runs
 * them all; the point here is memory, not more of the same arithmetic). */
static inline int sanitized(void)
{
    const char *s = getenv("SANITIZE");
    return s && *s;
}

/* Make flags for building generated code the way this test binary was
 * built (with the sanitizers of `make SANITIZE=...`). -O1: the tests run
 * tiny batches, where compiling the straight-line code is most of the
 * time (half of it at -O2); `make` builds generated/ at -O2 with -Werror,
 * and the examples' scripts build theirs at -O2. Under the sanitizers each
 * task is built once (JV_NO_CLONES), not for three instruction sets: the
 * three read and write the same memory (the plain build runs all three), and
 * under the sanitizers a convolutional spec took 2.5 times as long to compile
 * with them (39 s against 16). */
static inline const char *sanitize_make_flags(char *buf, size_t cap)
{
    const char *s = getenv("SANITIZE");
    if (!s || !*s)
        snprintf(buf, cap, "CFLAGS='-O1 -Wall -Wextra -Werror'");
    else
        snprintf(buf, cap, "CFLAGS='-O1 -g -Wall -Wextra -Werror -DJV_NO_CLONES -fsanitize=%s -fno-omit-frame-pointer' LDFLAGS='-fsanitize=%s'",
                 s, s);
    return buf;
}

#endif
