/* jv_internal.h: helpers shared by the runtime's own files (not part of the
 * interface the trainer or generated code use): a growable byte buffer for
 * building files in memory, a bounds-checked reader over a file's bytes, the
 * byte-order conversions, and whole-file reading.
 */
#ifndef JV_INTERNAL_H
#define JV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jv_runtime.h"

/* ------------------------------------------------------ byte order -- */

static inline uint16_t jv_get_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t jv_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t jv_get_le64(const unsigned char *p)
{
    return (uint64_t)jv_get_le32(p) | (uint64_t)jv_get_le32(p + 4) << 32;
}

static inline uint16_t jv_get_be16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t jv_get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t jv_get_be64(const unsigned char *p)
{
    return (uint64_t)jv_get_be32(p) << 32 | (uint64_t)jv_get_be32(p + 4);
}

/* ---------------------------------------------------- byte buffer -- */

/* Bytes appended in order; after an allocation failure every append is
 * ignored and failed stays set, so callers check once at the end. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
    int failed;
} jv_buf;

void jv_buf_reserve(jv_buf *b, size_t extra);
void jv_buf_put(jv_buf *b, const void *bytes, size_t n);
void jv_buf_put_le32(jv_buf *b, uint32_t x);
void jv_buf_put_le64(jv_buf *b, uint64_t x);
void jv_buf_put_be32(jv_buf *b, uint32_t x);
void jv_buf_free(jv_buf *b);

/* ---------------------------------------------------- byte reader -- */

/* A cursor over the bytes of a file; path is used in messages. */
typedef struct {
    const unsigned char *data;
    size_t size, pos;
    const char *path;
} jv_reader;

/* Points *out at the next n bytes and advances, or reports that the file is
 * truncated ("<path>: truncated: ... <what> ...") and returns -1. */
int jv_take(jv_reader *r, size_t n, const char *what, const unsigned char **out, jv_error *err);

/* ------------------------------------------------------------ files -- */

/* Reads a whole file into a fresh buffer with a NUL byte after the data
 * (not counted in *size). Gzip files are decompressed, and *gzipped says so.
 * Reports a missing or unreadable file, a folder, and damaged gzip data. */
int jv_read_file(const char *path, unsigned char **data, size_t *size, int *gzipped, jv_error *err);

/* A file read front to back in pieces, plain or gzip (decompressed), for
 * files too large to hold twice. Open reports what jv_read_file reports and
 * sets size to the (decompressed) length, counting a gzip file through
 * once; read takes exactly n bytes; rewind starts again. */
typedef struct {
    void *gz; /* gzFile */
    const char *path;
    size_t size;
} jv_stream;

int jv_stream_open(jv_stream *s, const char *path, jv_error *err);
int jv_stream_read(jv_stream *s, void *buf, size_t n, jv_error *err);
int jv_stream_rewind(jv_stream *s, jv_error *err);
void jv_stream_close(jv_stream *s);

/* A file written in pieces and put in place atomically, as
 * jv_write_file_atomic does in one go: open makes "<path>.tmp.<pid>" in the
 * target's folder, write appends (the first failure is kept and later
 * writes are skipped), and commit flushes, syncs and renames it over the
 * target, or removes it and reports "<path>: cannot write: <reason>". */
typedef struct {
    const char *path;
    char *tmp;
    FILE *f;
    int error; /* errno of the first failed write, 0 while none failed */
} jv_atomic_file;

int jv_atomic_open(jv_atomic_file *a, const char *path, jv_error *err);
void jv_atomic_write(jv_atomic_file *a, const void *data, size_t size);
int jv_atomic_commit(jv_atomic_file *a, jv_error *err);

#endif
