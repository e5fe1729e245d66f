/* jv_checkpoint.c: saves and loads training checkpoints in the format that
 * jv_runtime.h documents. A load checks, in order, the magic and version,
 * the file's structure (truncation), the CRC, then that the checkpoint
 * belongs to this model; it writes to the caller's buffers only when every
 * check has passed. Neither direction holds the file in memory: a save
 * streams it out, a load reads it twice in small blocks (the checksum
 * first, then the values), so a checkpoint never costs a second copy of the
 * parameters and moments.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "jv_internal.h"
#include "jv_runtime.h"

#define CK_MAGIC "JMVAECK1"
#define CK_VERSION 4u /* version 1 lacks the progress within an epoch, 2 the run's parts, 3 its examples */

/* The bytes between the floats and the checksum: the generator and the
 * progress (TAIL_FIXED), then, from version 2 on, the progress within an
 * epoch (progress_fixed: three counts, from version 3 on the run's parts,
 * from version 4 on the choice of its examples, the count of sums; then 8
 * bytes for each sum). */
enum { TAIL_FIXED = 4 * 8, SELECTION = 8 + 8 * JV_CK_MAX_MODALITIES, PROGRESS_FIXED_MAX = 4 * 8 + SELECTION + 4 };
enum { SELECTION_AT = 4 * 8 }; /* in the progress: the choice of examples, after the four counts */

static size_t progress_fixed(uint32_t version)
{
    return version >= 4 ? 4 * 8 + SELECTION + 4 : version >= 3 ? 4 * 8 + 4 : 3 * 8 + 4;
}

/* A double as its 8 bytes, little-endian, and back. */
static void put_f64(jv_buf *b, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    jv_buf_put_le64(b, bits);
}

static double get_f64(const unsigned char *p)
{
    uint64_t bits = jv_get_le64(p);
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
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
        jv_buf_put_le64(&b, (uint64_t)ck->batches);
        jv_buf_put_le64(&b, (uint64_t)ck->batch_size);
        jv_buf_put_le64(&b, (uint64_t)ck->n_train);
        jv_buf_put_le64(&b, (uint64_t)ck->chunks);
        jv_buf_put_le64(&b, ck->complete_only ? 1u : 0u);
        for (int i = 0; i < JV_CK_MAX_MODALITIES; i++)
            put_f64(&b, ck->drop[i]);
        int k = ck->n_sums > 0 && ck->n_sums <= JV_CK_MAX_SUMS ? ck->n_sums : 0;
        jv_buf_put_le32(&b, (uint32_t)k);
        for (int i = 0; i < k; i++)
            put_f64(&b, ck->sums[i]);
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

/* The head of a checkpoint file (everything before the floats): pointers
 * into its bytes. */
typedef struct {
    uint32_t version;
    uint64_t fingerprint;
    const unsigned char *name;
    uint32_t name_len;
    uint32_t n_tensors;
    jv_reader tensors; /* just the tensor table */
    uint64_t n_params;
    size_t head_len;   /* bytes up to and including the parameter count */
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

static int take_tensor(jv_reader *r, ck_tensor *t, jv_error *err)
{
    if (take_string(r, "tensor name", &t->name, &t->name_len, err) != 0 ||
        take_u32(r, "tensor rows", &t->rows, err) != 0 || take_u32(r, "tensor columns", &t->cols, err) != 0)
        return -1;
    return take_u64(r, "tensor offset", &t->offset, err);
}

static int check_magic_and_version(jv_reader *r, uint32_t *version_out, jv_error *err)
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
    if (version < 1 || version > CK_VERSION) {
        jv_error_set(err, "%s: checkpoint format version %" PRIu32 ", but this build reads versions 1 to %u",
                     r->path, version, CK_VERSION);
        return -1;
    }
    *version_out = version;
    return 0;
}

/* The head, up to the parameter count; only truncation can fail here. */
static int read_head(jv_reader *r, ck_layout *ck, jv_error *err)
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
    if (take_u64(r, "parameter count", &ck->n_params, err) != 0)
        return -1;
    ck->head_len = r->pos;
    return 0;
}

/* Takes n of the `left` bytes after the head, or reports the truncation as
 * jv_take does. */
static int take_body(const char *path, size_t *left, uint64_t n, const char *what, jv_error *err)
{
    size_t bytes = n > SIZE_MAX ? SIZE_MAX : (size_t)n;
    if (bytes > *left) {
        jv_error_set(err, "%s: truncated: expected %zu more bytes (%s), only %zu remain", path, bytes, what,
                     *left);
        return -1;
    }
    *left -= bytes;
    return 0;
}


/* After the head: three blocks of floats, the tail, the checksum, and
 * nothing else. The tail's size is known for version 1; for version 2 its
 * count of sums must be read first (by the caller, from the file's end). */
static int check_body_size(const char *path, const ck_layout *ck, size_t left, size_t tail, jv_error *err)
{
    uint64_t floats = ck->n_params > UINT64_MAX / 4 ? UINT64_MAX : ck->n_params * 4;
    if (take_body(path, &left, floats, "parameters", err) != 0 || take_body(path, &left, floats, "Adam m", err) != 0 ||
        take_body(path, &left, floats, "Adam v", err) != 0 ||
        take_body(path, &left, tail, "generator and progress", err) != 0 ||
        take_body(path, &left, 4, "checksum", err) != 0)
        return -1;
    if (left > 0) {
        jv_error_set(err, "%s: %zu unexpected bytes after the checksum (file damaged)", path, left);
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

/* A checkpoint is read in pieces, never whole: the head into memory, the
 * floats through a small block straight into the caller's buffers. */
typedef struct {
    jv_stream in;
    unsigned char *head; /* the first head_cap bytes of the file */
    size_t head_cap;
    unsigned char *block; /* BLOCK bytes */
    ck_layout layout;
    uint32_t stored_crc;
    unsigned char tail[TAIL_FIXED + PROGRESS_FIXED_MAX + 8 * JV_CK_MAX_SUMS];
} ck_reader;

enum { BLOCK = 1 << 16 };

/* Reads the head, growing the prefix read until it holds the whole head
 * (one read for any real model), and checks the magic and version first. */
static int load_head(ck_reader *c, jv_error *err)
{
    size_t have = 0, want = c->in.size < BLOCK ? c->in.size : BLOCK;
    for (;;) {
        unsigned char *grown = realloc(c->head, want ? want : 1);
        if (!grown) {
            jv_error_set(err, "%s: out of memory", c->in.path);
            return -1;
        }
        c->head = grown;
        if (jv_stream_read(&c->in, c->head + have, want - have, err) != 0)
            return -1;
        have = c->head_cap = want;
        jv_reader r = {c->head, have, 0, c->in.path};
        if (check_magic_and_version(&r, &c->layout.version, err) != 0)
            return -1;
        if (read_head(&r, &c->layout, err) == 0)
            return 0;
        if (have == c->in.size)
            return -1; /* truncated within the head */
        want = have > c->in.size / 2 ? c->in.size : 2 * have;
    }
}

/* Streams `len` bytes from the stream's position through the CRC; `dst`,
 * when given, receives them decoded as floats. */
static int stream_floats(ck_reader *c, size_t len, uLong *crc, float *dst, jv_error *err)
{
    for (size_t done = 0; done < len;) {
        size_t part = len - done < BLOCK ? len - done : BLOCK;
        if (jv_stream_read(&c->in, c->block, part, err) != 0)
            return -1;
        *crc = crc32(*crc, c->block, (uInt)part);
        if (dst)
            get_floats(dst + done / 4, c->block, part / 4);
        done += part;
    }
    return 0;
}

/* Pass one: the checksum over the whole file, before anything is written;
 * the tail (tail_len bytes before the checksum) is kept in c->tail. */
static int check_crc(ck_reader *c, size_t tail_len, jv_error *err)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    unsigned char stored[4];
    size_t body = c->in.size - 4 - tail_len;
    if (jv_stream_rewind(&c->in, err) != 0 || stream_floats(c, body, &crc, NULL, err) != 0 ||
        jv_stream_read(&c->in, c->tail, tail_len, err) != 0 || jv_stream_read(&c->in, stored, 4, err) != 0)
        return -1;
    crc = crc32(crc, c->tail, (uInt)tail_len);
    c->stored_crc = jv_get_le32(stored);
#ifdef JV_FUZZ_SKIP_CRC /* the fuzzing harness's build: reach the structure behind the checksum */
    c->stored_crc = (uint32_t)crc;
#endif
    if ((uint32_t)crc != c->stored_crc) {
        jv_error_set(err, "%s: checksum mismatch (file damaged)", c->in.path);
        return -1;
    }
    size_t fixed = progress_fixed(c->layout.version);
    if (tail_len > TAIL_FIXED && jv_get_le32(c->tail + TAIL_FIXED + fixed - 4) !=
                                     (uint32_t)((tail_len - TAIL_FIXED - fixed) / 8)) {
        jv_error_set(err, "%s: the progress at its end is damaged (its count of sums)", c->in.path);
        return -1;
    }
    if (c->layout.version >= 4 && tail_len > TAIL_FIXED) {
        const unsigned char *p = c->tail + TAIL_FIXED + SELECTION_AT;
        int bad = jv_get_le64(p) > 1;
        for (int i = 0; i < JV_CK_MAX_MODALITIES; i++) {
            double d = get_f64(p + 8 + 8 * (size_t)i);
            bad |= !(d >= 0 && d < 1);
        }
        if (bad) {
            jv_error_set(err, "%s: the choice of training examples at its end is damaged", c->in.path);
            return -1;
        }
    }
    return 0;
}

/* Pass two: the floats into the caller's buffers, then the tail; the CRC
 * again, in case the file changed between the passes. */
static int read_state(ck_reader *c, size_t n, size_t tail_len, jv_checkpoint *out, jv_error *err)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t head_len = c->layout.head_len;
    unsigned char tail[sizeof c->tail];
    if (jv_stream_rewind(&c->in, err) != 0 || stream_floats(c, head_len, &crc, NULL, err) != 0 ||
        stream_floats(c, 4 * n, &crc, out->params, err) != 0 || stream_floats(c, 4 * n, &crc, out->m, err) != 0 ||
        stream_floats(c, 4 * n, &crc, out->v, err) != 0 || jv_stream_read(&c->in, tail, tail_len, err) != 0)
        return -1;
    crc = crc32(crc, tail, (uInt)tail_len);
    if ((uint32_t)crc != c->stored_crc || memcmp(tail, c->tail, tail_len) != 0) {
        jv_error_set(err, "%s: cannot read: the file changed while it was read", c->in.path);
        return -1;
    }
    out->rng_seed = jv_get_le64(tail);
    out->rng_position = jv_get_le64(tail + 8);
    out->epoch = (int64_t)jv_get_le64(tail + 16);
    out->step = (int64_t)jv_get_le64(tail + 24);
    out->batches = out->batch_size = out->n_train = out->chunks = 0;
    out->complete_only = 0;
    for (int i = 0; i < JV_CK_MAX_MODALITIES; i++)
        out->drop[i] = 0;
    out->n_sums = 0;
    if (tail_len > TAIL_FIXED) {
        const unsigned char *p = tail + TAIL_FIXED;
        size_t fixed = progress_fixed(c->layout.version);
        out->batches = (int64_t)jv_get_le64(p);
        out->batch_size = (int64_t)jv_get_le64(p + 8);
        out->n_train = (int64_t)jv_get_le64(p + 16);
        if (c->layout.version >= 3)
            out->chunks = (int64_t)jv_get_le64(p + 24);
        if (c->layout.version >= 4) {
            out->complete_only = jv_get_le64(p + SELECTION_AT) & 1u;
            for (int i = 0; i < JV_CK_MAX_MODALITIES; i++)
                out->drop[i] = get_f64(p + SELECTION_AT + 8 + 8 * (size_t)i);
        }
        out->n_sums = (int)((tail_len - TAIL_FIXED - fixed) / 8);
        for (int i = 0; i < out->n_sums; i++)
            out->sums[i] = get_f64(p + fixed + 8 * (size_t)i);
    }
    return 0;
}

/* The tail's length: fixed for version 1; for version 2 found from the
 * body's size: what is left after the floats, less the fixed parts and the
 * checksum, must be a whole number of sums, at most JV_CK_MAX_SUMS (pass one
 * then checks that the count stored before them says so). */
static int tail_length(const char *path, const ck_layout *ck, size_t body, size_t *tail, jv_error *err)
{
    if (ck->version == 1) {
        *tail = TAIL_FIXED;
        return 0;
    }
    uint64_t floats = ck->n_params > UINT64_MAX / 12 ? UINT64_MAX : ck->n_params * 12;
    size_t progress = progress_fixed(ck->version), fixed = TAIL_FIXED + progress + 4;
    if (floats > body || body - floats < fixed) {
        *tail = TAIL_FIXED + progress; /* check_body_size reports the truncation */
        return 0;
    }
    size_t rest = body - (size_t)floats - fixed;
    if (rest % 8 != 0 || rest / 8 > JV_CK_MAX_SUMS) {
        jv_error_set(err, "%s: the progress at its end is damaged (%zu bytes of sums)", path, rest);
        return -1;
    }
    *tail = TAIL_FIXED + progress + rest;
    return 0;
}

static int load_checkpoint(ck_reader *c, const jv_model *model, jv_checkpoint *out, jv_error *err)
{
    const char *path = c->in.path;
    c->block = malloc(BLOCK);
    if (!c->block) {
        jv_error_set(err, "%s: out of memory", path);
        return -1;
    }
    if (c->in.size < 8) {
        jv_error_set(err, "%s: not a jmvaec checkpoint (bad magic number)", path);
        return -1;
    }
    size_t tail = 0;
    if (load_head(c, err) != 0 ||
        tail_length(path, &c->layout, c->in.size - c->layout.head_len, &tail, err) != 0 ||
        check_body_size(path, &c->layout, c->in.size - c->layout.head_len, tail, err) != 0 ||
        check_crc(c, tail, err) != 0 || check_identity(path, &c->layout, model, err) != 0 ||
        check_tensors(path, &c->layout, model, err) != 0)
        return -1;
    return read_state(c, model->n_params, tail, out, err);
}

int jv_checkpoint_load(const char *path, const jv_model *model, jv_checkpoint *ck, jv_error *err)
{
    ck_reader c = {0};
    if (jv_stream_open(&c.in, path, err) != 0)
        return -1;
    int rc = load_checkpoint(&c, model, ck, err);
    jv_stream_close(&c.in);
    free(c.head);
    free(c.block);
    return rc;
}
