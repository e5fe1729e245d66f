/* jv_util.c: error messages, thread count, atomic file writes, mkdir -p,
 * whole-file reading (plain or gzip), and the byte buffer and reader the
 * other runtime files build on.
 */
#define _GNU_SOURCE 1 /* MADV_HUGEPAGE */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libdeflate.h>
#include <zlib.h>

#include "jv_internal.h"
#include "jv_runtime.h"

void jv_error_set(jv_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

void *jv_alloc_large(size_t bytes, int zeroed)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge) {
        void *p = zeroed ? calloc(1, bytes ? bytes : 1) : malloc(bytes ? bytes : 1);
        return p;
    }
    void *p = NULL;
    if (posix_memalign(&p, huge, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, (bytes + huge - 1) & ~(huge - 1), MADV_HUGEPAGE); /* advice only: a refusal changes nothing */
#endif
    if (zeroed)
        memset(p, 0, bytes);
    return p;
}

void jv_set_threads(int threads)
{
    openblas_set_num_threads(threads < 1 ? 1 : threads);
}

/* ---------------------------------------------------- byte buffer -- */

void jv_buf_reserve(jv_buf *b, size_t extra)
{
    if (b->failed || b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return;
        }
        cap *= 2;
    }
    unsigned char *grown = realloc(b->data, cap);
    if (!grown) {
        b->failed = 1;
        return;
    }
    b->data = grown;
    b->cap = cap;
}

void jv_buf_put(jv_buf *b, const void *bytes, size_t n)
{
    jv_buf_reserve(b, n);
    if (b->failed || n == 0)
        return;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

void jv_buf_put_le32(jv_buf *b, uint32_t x)
{
    unsigned char p[4] = {(unsigned char)x, (unsigned char)(x >> 8), (unsigned char)(x >> 16),
                          (unsigned char)(x >> 24)};
    jv_buf_put(b, p, 4);
}

void jv_buf_put_le64(jv_buf *b, uint64_t x)
{
    jv_buf_put_le32(b, (uint32_t)x);
    jv_buf_put_le32(b, (uint32_t)(x >> 32));
}

void jv_buf_put_be32(jv_buf *b, uint32_t x)
{
    unsigned char p[4] = {(unsigned char)(x >> 24), (unsigned char)(x >> 16), (unsigned char)(x >> 8),
                          (unsigned char)x};
    jv_buf_put(b, p, 4);
}

void jv_buf_free(jv_buf *b)
{
    free(b->data);
    *b = (jv_buf){0};
}

/* ---------------------------------------------------- byte reader -- */

int jv_take(jv_reader *r, size_t n, const char *what, const unsigned char **out, jv_error *err)
{
    size_t left = r->size - r->pos;
    if (n > left) {
        jv_error_set(err, "%s: truncated: expected %zu more bytes (%s), only %zu remain", r->path, n, what,
                     left);
        return -1;
    }
    *out = r->data + r->pos;
    r->pos += n;
    return 0;
}

/* ---------------------------------------------------- reading files -- */

/* Refuses a missing path or a folder before zlib sees it; *size receives
 * the size on disk. */
static int check_readable_file(const char *path, size_t *size, jv_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        jv_error_set(err, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        jv_error_set(err, "%s: is a folder, not a file", path);
        return -1;
    }
    *size = st.st_size > 0 ? (size_t)st.st_size : 0;
    return 0;
}

/* Reads the rest of an open gzFile into b, starting with room for the size
 * on disk (all of a plain file) and doubling; -1 on a read error or damaged
 * data. */
static int read_gz_stream(gzFile gz, const char *path, size_t disk_size, jv_buf *b, jv_error *err)
{
    jv_buf_reserve(b, disk_size < SIZE_MAX - 4096 ? disk_size + 4096 : SIZE_MAX);
    for (;;) {
        if (b->cap - b->len < 4096)
            jv_buf_reserve(b, b->cap);
        if (b->failed) {
            jv_error_set(err, "%s: out of memory while reading", path);
            return -1;
        }
        size_t room = b->cap - b->len;
        int got = gzread(gz, b->data + b->len, room > (1u << 30) ? (1u << 30) : (unsigned)room);
        if (got <= 0)
            break;
        b->len += (size_t)got;
    }
    int zerr = Z_OK;
    const char *zmsg = gzerror(gz, &zerr);
    if (zerr == Z_OK)
        return 0;
    if (zerr == Z_ERRNO)
        jv_error_set(err, "%s: cannot read: %s", path, strerror(errno));
    else
        jv_error_set(err, "%s: damaged or truncated gzip data (%s)", path, zmsg);
    return -1;
}

/* A whole single-member gzip file decompressed by libdeflate, about three
 * times as fast as zlib's inflate (the 47 MB of Fashion-MNIST's training
 * images). Returns 1 whenever it does not succeed (not gzip, more than one
 * member, trailing bytes, damage, a size the footer does not give, memory):
 * zlib then reads the file, and reports what is wrong in its words. */
static int read_gz_whole(const char *path, size_t disk_size, unsigned char **data, size_t *size)
{
    if (disk_size < 18 || disk_size > ((size_t)1 << 32))
        return 1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 1;
    unsigned char *in = jv_alloc_large(disk_size, 0);
    size_t got = in ? fread(in, 1, disk_size, f) : 0;
    fclose(f);
    if (!in || got != disk_size || in[0] != 0x1f || in[1] != 0x8b) {
        free(in);
        return 1;
    }
    size_t isize = jv_get_le32(in + disk_size - 4); /* the length mod 2^32: exact below 4 GiB */
    if (isize / 1032 > disk_size) { /* deflate expands at most 1032-fold: the footer lies */
        free(in);
        return 1;
    }
    unsigned char *out = jv_alloc_large(isize + 1, 0);
    struct libdeflate_decompressor *d = out ? libdeflate_alloc_decompressor() : NULL;
    size_t in_used = 0, out_len = 0;
    enum libdeflate_result r = LIBDEFLATE_BAD_DATA;
    if (d)
        r = libdeflate_gzip_decompress_ex(d, in, disk_size, out, isize, &in_used, &out_len);
    libdeflate_free_decompressor(d);
    free(in);
    if (r != LIBDEFLATE_SUCCESS || in_used != disk_size || out_len != isize) {
        free(out); /* zlib reads it, or says what is wrong */
        return 1;
    }
    out[out_len] = 0;
    *data = out;
    *size = out_len;
    return 0;
}

int jv_read_file(const char *path, unsigned char **data, size_t *size, int *gzipped, jv_error *err)
{
    size_t disk_size;
    if (check_readable_file(path, &disk_size, err) != 0)
        return -1;
    if (read_gz_whole(path, disk_size, data, size) == 0) {
        *gzipped = 1;
        return 0;
    }
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        jv_error_set(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return -1;
    }
    jv_buf b = {0};
    int rc = read_gz_stream(gz, path, disk_size, &b, err);
    int direct = gzdirect(gz);
    gzclose(gz);
    jv_buf_put(&b, "", 1); /* the terminating NUL */
    if (rc == 0 && b.failed) {
        jv_error_set(err, "%s: out of memory while reading", path);
        rc = -1;
    }
    if (rc != 0) {
        jv_buf_free(&b);
        return -1;
    }
    *data = b.data;
    *size = b.len - 1;
    *gzipped = !direct;
    return 0;
}

/* ------------------------------------------------------- streaming -- */

/* The zlib error of a failed read, as jv_read_file words it. */
static int stream_error(gzFile gz, const char *path, jv_error *err)
{
    int zerr = Z_OK;
    const char *zmsg = gzerror(gz, &zerr);
    if (zerr == Z_ERRNO)
        jv_error_set(err, "%s: cannot read: %s", path, strerror(errno));
    else if (zerr != Z_OK)
        jv_error_set(err, "%s: damaged or truncated gzip data (%s)", path, zmsg);
    else
        jv_error_set(err, "%s: cannot read: the file changed while it was read", path);
    return -1;
}

int jv_stream_open(jv_stream *s, const char *path, jv_error *err)
{
    size_t disk_size;
    *s = (jv_stream){.path = path};
    if (check_readable_file(path, &disk_size, err) != 0)
        return -1;
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        jv_error_set(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return -1;
    }
    s->gz = gz;
    if (gzdirect(gz)) {
        s->size = disk_size;
        return 0;
    }
    unsigned char chunk[16384];
    int got;
    while ((got = gzread(gz, chunk, sizeof chunk)) > 0)
        s->size += (size_t)got;
    int zerr = Z_OK;
    gzerror(gz, &zerr);
    if (zerr == Z_OK && gzrewind(gz) == 0)
        return 0;
    stream_error(gz, path, err);
    jv_stream_close(s);
    return -1;
}

int jv_stream_read(jv_stream *s, void *buf, size_t n, jv_error *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        unsigned part = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread((gzFile)s->gz, p, part);
        if (got <= 0)
            return stream_error((gzFile)s->gz, s->path, err);
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int jv_stream_rewind(jv_stream *s, jv_error *err)
{
    if (gzrewind((gzFile)s->gz) == 0)
        return 0;
    return stream_error((gzFile)s->gz, s->path, err);
}

void jv_stream_close(jv_stream *s)
{
    if (s->gz)
        gzclose((gzFile)s->gz);
    s->gz = NULL;
}

/* ---------------------------------------------------- writing files -- */

/* "<path>.tmp.<pid>", in the target's folder so rename stays atomic. */
static char *temp_path_for(const char *path)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (tmp)
        snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    return tmp;
}

/* Best effort: makes the rename itself durable. */
static void sync_parent_folder(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *name = ".";
    if (slash) {
        slash[slash == dir] = '\0'; /* keep "/" for files at the root */
        name = dir;
    }
    int fd = open(name, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int jv_atomic_open(jv_atomic_file *a, const char *path, jv_error *err)
{
    *a = (jv_atomic_file){.path = path, .tmp = temp_path_for(path)};
    if (!a->tmp) {
        jv_error_set(err, "%s: out of memory", path);
        return -1;
    }
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        jv_error_set(err, "%s: cannot write: %s", path, strerror(errno));
        free(a->tmp);
        a->tmp = NULL;
        return -1;
    }
    return 0;
}

void jv_atomic_write(jv_atomic_file *a, const void *data, size_t size)
{
    if (a->error || size == 0)
        return;
    errno = 0;
    if (fwrite(data, 1, size, a->f) != size)
        a->error = errno ? errno : EIO;
}

/* Flushes, syncs and closes the temporary file, then renames it over the
 * target; on any failure (or an earlier failed write) removes it instead. */
int jv_atomic_commit(jv_atomic_file *a, jv_error *err)
{
    int e = a->error;
    if (!e && fflush(a->f) != 0)
        e = errno;
    if (!e && fsync(fileno(a->f)) != 0)
        e = errno;
    if (fclose(a->f) != 0 && !e)
        e = errno;
    if (!e && rename(a->tmp, a->path) != 0)
        e = errno;
    if (e) {
        unlink(a->tmp);
        jv_error_set(err, "%s: cannot write: %s", a->path, strerror(e));
    }
    free(a->tmp);
    if (!e)
        sync_parent_folder(a->path);
    *a = (jv_atomic_file){0};
    return e ? -1 : 0;
}

int jv_write_file_atomic(const char *path, const void *data, size_t size, jv_error *err)
{
    jv_atomic_file a;
    if (jv_atomic_open(&a, path, err) != 0)
        return -1;
    jv_atomic_write(&a, data, size);
    return jv_atomic_commit(&a, err);
}

/* One mkdir; an existing entry is fine here (checked at the end). */
static int make_one_folder(const char *dir, const char *path, jv_error *err)
{
    if (mkdir(dir, 0777) == 0 || errno == EEXIST)
        return 0;
    jv_error_set(err, "%s: cannot create folder %s: %s", path, dir, strerror(errno));
    return -1;
}

int jv_make_dir(const char *path, jv_error *err)
{
    if (!*path) {
        jv_error_set(err, "cannot create a folder with an empty name");
        return -1;
    }
    char *dir = strdup(path);
    if (!dir) {
        jv_error_set(err, "%s: out of memory", path);
        return -1;
    }
    int rc = 0;
    for (char *s = dir + 1; *s && rc == 0; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        rc = make_one_folder(dir, path, err);
        *s = '/';
    }
    if (rc == 0)
        rc = make_one_folder(dir, path, err);
    free(dir);
    if (rc != 0)
        return -1;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        jv_error_set(err, "%s: cannot create folder: a file of that name exists", path);
        return -1;
    }
    return 0;
}
