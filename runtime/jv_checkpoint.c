/* jv_checkpoint.c: saves and loads training checkpoints in the format that
 * jv_runtime.h documents. A load checks, in order, the magic and version,
 * the file's structure (truncation), the CRC, then that the checkpoint
 * belongs to this model; it writes to the caller's buffers only when every
 * check has passed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "jv_internal.h"
#include "jv_runtime.h"

#define CK_MAGIC "JMVAECK1"
#define CK_VERSION 1u

/* zlib's CRC-32 over any length (crc32 itself takes 32-bit lengths). */
static uint32_t crc_of(const unsigned char *data, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (len > 0) {
        uInt part = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = crc32(crc, data, part);
        data += part;
        len -= part;
    }
    return (uint32_t)crc;
}

/* ------------------------------------------------------------- saving -- */

static void put_string(jv_buf *b, const char *s)
{
    size_t len = strlen(s);
    jv_buf_put_le32(b, (uint32_t)len);
    jv_buf_put(b, s, len);
}

static void put_model(jv_buf *b, const jv_model *model)
{
    jv_buf_put_le64(b, model->fingerprint);
    put_string(b, model->name);
    jv_buf_put_le32(b, (uint32_t)model->n_tensors);
    for (int i = 0; i < model->n_tensors; i++) {
        const jv_tensor_info *t = &model->tensors[i];
        put_string(b, t->name);
        jv_buf_put_le32(b, (uint32_t)t->rows);
        jv_buf_put_le32(b, (uint32_t)t->cols);
        jv_buf_put_le64(b, (uint64_t)t->offset);
    }
}

/* The checkpoint goes to disk as it is built, with its CRC kept up to date,
 * so saving needs no copy of the parameters and moments in memory. */
typedef struct {
    jv_atomic_file file;
    uLong crc;
} ck_writer;

static void put_bytes(ck_writer *w, const unsigned char *data, size_t len)
{
    jv_atomic_write(&w->file, data, len);
    for (size_t done = 0; done < len;) {
        uInt part = len - done > (1u << 30) ? (1u << 30) : (uInt)(len - done);
        w->crc = crc32(w->crc, data + done, part);
        done += part;
    }
}

/* Small pieces (the header, the tail) are built in a buffer first. */
static int put_buf(ck_writer *w, jv_buf *b, const char *path, jv_error *err)
{
    if (b->failed) {
        jv_error_set(err, "%s: out of memory while building the checkpoint", path);
        return -1;
    }
    put_bytes(w, b->data, b->len);
    b->len = 0;
    return 0;
}

/* n floats, little-endian, through a small staging block. */
static void put_floats(ck_writer *w, const float *x, size_t n)
{
    unsigned char block[16384];
    size_t per = sizeof block / 4;
    for (size_t first = 0; first < n; first += per) {
        size_t count = n - first < per ? n - first : per;
        for (size_t i = 0; i < count; i++) {
            uint32_t bits;
            memcpy(&bits, &x[first + i], sizeof bits);
            block[4 * i] = (unsigned char)bits;
            block[4 * i + 1] = (unsigned char)(bits >> 8);
            block[4 * i + 2] = (unsigned char)(bits >> 16);
            block[4 * i + 3] = (unsigned char)(bits >> 24);
        }
        put_bytes(w, block, 4 * count);
    }
}

int jv_checkpoint_save(const char *path, const jv_model *model, const jv_checkpoint *ck, jv_error *err)
{
    ck_writer w = {.crc = crc32(0L, Z_NULL, 0)};
    if (jv_atomic_open(&w.file, path, err) != 0)
        return -1;
    size_t n = model->n_params;
    jv_buf b = {0};
    jv_buf_put(&b, CK_MAGIC, 8);
    jv_buf_put_le32(&b, CK_VERSION);
    jv_buf_put_le32(&b, 0);
    put_model(&b, model);
    jv_buf_put_le64(&b, (uint64_t)n);
    int rc = put_buf(&w, &b, path, err);
    if (rc == 0) {
        put_floats(&w, ck->params, n);
        put_floats(&w, ck->m, n);
        put_floats(&w, ck->v, n);
        jv_buf_put_le64(&b, ck->rng_seed);
        jv_buf_put_le64(&b, ck->rng_position);
        jv_buf_put_le64(&b, (uint64_t)ck->epoch);
        jv_buf_put_le64(&b, (uint64_t)ck->step);
        rc = put_buf(&w, &b, path, err);
    }
    if (rc == 0) {
        jv_buf_put_le32(&b, (uint32_t)w.crc);
        rc = put_buf(&w, &b, path, err);
    }
    jv_buf_free(&b);
    if (rc == 0)
        return jv_atomic_commit(&w.file, err);
    jv_error ignored; /* keep the out-of-memory message */
    w.file.error = w.file.error ? w.file.error : ENOMEM;
    jv_atomic_commit(&w.file, &ignored);
    return -1;
}

/* ------------------------------------------------------------ loading -- */

/* Where each part of a checkpoint file lies; pointers into its bytes. */
typedef struct {
    uint64_t fingerprint;
    const unsigned char *name;
    uint32_t name_len;
    uint32_t n_tensors;
    jv_reader tensors; /* just the tensor table */
    uint64_t n_params;
    const unsigned char *params, *m, *v, *tail;
} ck_layout;

typedef struct {
    const unsigned char *name;
    uint32_t name_len, rows, cols;
    uint64_t offset;
} ck_tensor;

static int take_u32(jv_reader *r, const char *what, uint32_t *x, jv_error *err)
{
    const unsigned char *p;
    if (jv_take(r, 4, what, &p, err) != 0)
        return -1;
    *x = jv_get_le32(p);
    return 0;
}

static int take_u64(jv_reader *r, const char *what, uint64_t *x, jv_error *err)
{
    const unsigned char *p;
    if (jv_take(r, 8, what, &p, err) != 0)
        return -1;
    *x = jv_get_le64(p);
    return 0;
}

static int take_string(jv_reader *r, const char *what, const unsigned char **s, uint32_t *len, jv_error *err)
{
    if (take_u32(r, what, len, err) != 0)
        return -1;
    return jv_take(r, *len, what, s, err);
}

static int take_floats(jv_reader *r, uint64_t n, const char *what, const unsigned char **p, jv_error *err)
{
    size_t bytes = n > SIZE_MAX / 4 ? SIZE_MAX : (size_t)n * 4;
    return jv_take(r, bytes, what, p, err);
}

static int take_tensor(jv_reader *r, ck_tensor *t, jv_error *err)
{
    if (take_string(r, "tensor name", &t->name, &t->name_len, err) != 0 ||
        take_u32(r, "tensor rows", &t->rows, err) != 0 || take_u32(r, "tensor columns", &t->cols, err) != 0)
        return -1;
    return take_u64(r, "tensor offset", &t->offset, err);
}

static int check_magic_and_version(jv_reader *r, jv_error *err)
{
    const unsigned char *magic;
    uint32_t version, reserved;
    if (r->size < 8 || memcmp(r->data, CK_MAGIC, 8) != 0) {
        jv_error_set(err, "%s: not a jmvaec checkpoint (bad magic number)", r->path);
        return -1;
    }
    if (jv_take(r, 8, "magic", &magic, err) != 0 || take_u32(r, "version", &version, err) != 0 ||
        take_u32(r, "reserved field", &reserved, err) != 0)
        return -1;
    if (version != CK_VERSION) {
        jv_error_set(err, "%s: checkpoint format version %" PRIu32 ", but this build reads version %u",
                     r->path, version, CK_VERSION);
        return -1;
    }
    return 0;
}

/* Walks the whole file, so a truncated one is reported as such. */
static int read_layout(jv_reader *r, ck_layout *ck, jv_error *err)
{
    if (take_u64(r, "model fingerprint", &ck->fingerprint, err) != 0 ||
        take_string(r, "model name", &ck->name, &ck->name_len, err) != 0 ||
        take_u32(r, "tensor count", &ck->n_tensors, err) != 0)
        return -1;
    size_t table_start = r->pos;
    for (uint32_t i = 0; i < ck->n_tensors; i++) {
        ck_tensor t;
        if (take_tensor(r, &t, err) != 0)
            return -1;
    }
    ck->tensors = (jv_reader){r->data + table_start, r->pos - table_start, 0, r->path};
    if (take_u64(r, "parameter count", &ck->n_params, err) != 0 ||
        take_floats(r, ck->n_params, "parameters", &ck->params, err) != 0 ||
        take_floats(r, ck->n_params, "Adam m", &ck->m, err) != 0 ||
        take_floats(r, ck->n_params, "Adam v", &ck->v, err) != 0)
        return -1;
    return jv_take(r, 4 * 8, "generator and progress", &ck->tail, err);
}

static int check_crc(jv_reader *r, jv_error *err)
{
    size_t covered = r->pos;
    uint32_t stored;
    if (take_u32(r, "checksum", &stored, err) != 0)
        return -1;
    if (r->pos != r->size) {
        jv_error_set(err, "%s: %zu unexpected bytes after the checksum (file damaged)", r->path,
                     r->size - r->pos);
        return -1;
    }
    if (crc_of(r->data, covered) != stored) {
        jv_error_set(err, "%s: checksum mismatch (file damaged)", r->path);
        return -1;
    }
    return 0;
}

static int same_name(const unsigned char *s, uint32_t len, const char *name)
{
    return strlen(name) == len && memcmp(s, name, len) == 0;
}

static int check_identity(const char *path, const ck_layout *ck, const jv_model *model, jv_error *err)
{
    int len = ck->name_len > 200 ? 200 : (int)ck->name_len;
    if (ck->fingerprint == model->fingerprint && same_name(ck->name, ck->name_len, model->name))
        return 0;
    if (ck->fingerprint != model->fingerprint)
        jv_error_set(err,
                     "%s: checkpoint of model '%.*s' (fingerprint %016" PRIx64 "), not of '%s' "
                     "(fingerprint %016" PRIx64 ")",
                     path, len, (const char *)ck->name, ck->fingerprint, model->name, model->fingerprint);
    else
        jv_error_set(err, "%s: checkpoint of model '%.*s', not of '%s'", path, len, (const char *)ck->name,
                     model->name);
    return -1;
}

static int same_tensor(const ck_tensor *t, const jv_tensor_info *info)
{
    return same_name(t->name, t->name_len, info->name) && t->rows == (uint32_t)info->rows &&
           t->cols == (uint32_t)info->cols && t->offset == (uint64_t)info->offset;
}

static int check_tensors(const char *path, ck_layout *ck, const jv_model *model, jv_error *err)
{
    if (ck->n_tensors != (uint32_t)model->n_tensors) {
        jv_error_set(err, "%s: the checkpoint has %" PRIu32 " parameter tensors, model '%s' has %d", path,
                     ck->n_tensors, model->name, model->n_tensors);
        return -1;
    }
    for (int i = 0; i < model->n_tensors; i++) {
        ck_tensor t;
        const jv_tensor_info *info = &model->tensors[i];
        if (take_tensor(&ck->tensors, &t, err) != 0)
            return -1;
        if (same_tensor(&t, info))
            continue;
        int len = t.name_len > 200 ? 200 : (int)t.name_len;
        jv_error_set(err,
                     "%s: tensor %d is '%.*s' (%" PRIu32 " x %" PRIu32 " at offset %" PRIu64 ") in "
                     "the checkpoint, but '%s' (%d x %d at offset %zu) in model '%s'",
                     path, i, len, (const char *)t.name, t.rows, t.cols, t.offset, info->name, info->rows,
                     info->cols, info->offset, model->name);
        return -1;
    }
    if (ck->n_params != (uint64_t)model->n_params) {
        jv_error_set(err, "%s: the checkpoint holds %" PRIu64 " parameters, model '%s' has %zu", path,
                     ck->n_params, model->name, model->n_params);
        return -1;
    }
    return 0;
}

static void get_floats(float *dst, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = jv_get_le32(src + 4 * i);
        memcpy(&dst[i], &bits, sizeof bits);
    }
}

static void copy_state(const ck_layout *ck, size_t n, jv_checkpoint *out)
{
    get_floats(out->params, ck->params, n);
    get_floats(out->m, ck->m, n);
    get_floats(out->v, ck->v, n);
    out->rng_seed = jv_get_le64(ck->tail);
    out->rng_position = jv_get_le64(ck->tail + 8);
    out->epoch = (int64_t)jv_get_le64(ck->tail + 16);
    out->step = (int64_t)jv_get_le64(ck->tail + 24);
}

static int parse_checkpoint(jv_reader *r, const jv_model *model, jv_checkpoint *out, jv_error *err)
{
    ck_layout ck;
    if (check_magic_and_version(r, err) != 0 || read_layout(r, &ck, err) != 0 || check_crc(r, err) != 0 ||
        check_identity(r->path, &ck, model, err) != 0 || check_tensors(r->path, &ck, model, err) != 0)
        return -1;
    copy_state(&ck, model->n_params, out);
    return 0;
}

int jv_checkpoint_load(const char *path, const jv_model *model, jv_checkpoint *ck, jv_error *err)
{
    unsigned char *data;
    size_t size;
    int gzipped;
    if (jv_read_file(path, &data, &size, &gzipped, err) != 0)
        return -1;
    jv_reader r = {data, size, 0, path};
    int rc = parse_checkpoint(&r, model, ck, err);
    free(data);
    return rc;
}
