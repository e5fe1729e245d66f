/* fuzz_util.h: what the file-reading harnesses share. */
#ifndef TESTS_FUZZ_UTIL_H
#define TESTS_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The fuzzer's bytes as a file (the loaders read paths): one per process,
 * rewritten for each input; its path. */
static inline const char *bytes_to_file(const char *tag, const uint8_t *data, size_t size)
{
    static char path[96];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/jmvaec-fuzz-%s-%ld", tag, (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    return path;
}

#endif
