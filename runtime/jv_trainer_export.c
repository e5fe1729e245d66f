/* jv_trainer_export.c: the export subcommand. A checkpoint's tensors as a
 * NumPy .npz archive (np.load reads it): one float32 array per tensor under
 * its spec name ("enc_x.h1.weight": [fan_in x fan_out]; a bias: [n]), and
 * with --moments Adam's two moments as "adam_m/<name>" and "adam_v/<name>".
 *
 * The archive is a ZIP of stored (uncompressed) members with fixed dates,
 * so the same checkpoint always gives the same bytes; its comment says that
 * jmvaec wrote it, for which model and step. An existing --npz file is
 * replaced only when it carries that comment: anything else there is left
 * alone with a message. Written atomically, as checkpoints are.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "jv_trainer_int.h"

#define NPZ_MARK "written by jmvaec export"
#define ZIP_LIMIT 0xffffffffu /* no ZIP64: offsets and sizes of 32 bits */

typedef struct {
    const char *checkpoint, *npz;
    int moments;
} export_opts;

static const char EXPORT_ABOUT[] =
    "Writes a checkpoint's tensors as a NumPy .npz archive, each under its spec name\n"
    "(weights [fan_in x fan_out], biases [n], float32): np.load(FILE)['enc_x.h1.weight'].\n"
    "--moments adds Adam's moments as adam_m/<name> and adam_v/<name>. An existing FILE\n"
    "is replaced only if jmvaec export wrote it.";

/* The ZIP's end record and its comment, if the file is one jmvaec wrote:
 * 1 yes, 0 no (or unreadable). */
static int written_by_us(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    unsigned char tail[22 + 256];
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    long want = size < (long)sizeof tail ? size : (long)sizeof tail;
    int ours = 0;
    if (size >= 22 && fseek(f, size - want, SEEK_SET) == 0 && fread(tail, 1, (size_t)want, f) == (size_t)want) {
        for (long at = want - 22; at >= 0 && !ours; at--) {
            const unsigned char *e = tail + at;
            if (e[0] != 0x50 || e[1] != 0x4b || e[2] != 5 || e[3] != 6)
                continue;
            size_t comment = (size_t)e[20] | (size_t)e[21] << 8;
            ours = (long)(at + 22 + (long)comment) == want && comment >= strlen(NPZ_MARK) &&
                   memcmp(e + 22, NPZ_MARK, strlen(NPZ_MARK)) == 0;
        }
    }
    fclose(f);
    return ours;
}

static void put_le16(jv_buf *b, unsigned x)
{
    unsigned char v[2] = {(unsigned char)(x & 0xff), (unsigned char)(x >> 8)};
    jv_buf_put(b, v, 2);
}

/* ZIP members and their central directory as they are added. */
typedef struct {
    jv_buf zip, dir;
    unsigned entries;
    int too_big;
} npz_writer;

/* What a member's local header and its directory entry share, from the
 * version needed on: stored, no flags, 1980-01-01 00:00, the CRC and the
 * sizes, the name's length, no extra field. */
static void put_member_fields(jv_buf *b, uint32_t crc, size_t size, size_t name_len)
{
    put_le16(b, 20);
    put_le16(b, 0);
    put_le16(b, 0);
    put_le16(b, 0);
    put_le16(b, 0x21);
    jv_buf_put_le32(b, crc);
    jv_buf_put_le32(b, (uint32_t)size);
    jv_buf_put_le32(b, (uint32_t)size);
    put_le16(b, (unsigned)name_len);
    put_le16(b, 0);
}

static void add_array(npz_writer *w, const char *name, const float *x, const size_t *shape, int ndim)
{
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= shape[d];
    jv_buf member = {0};
    jv_npy_header(&member, shape, ndim);
    for (size_t i = 0; i < count; i++)
        jv_buf_put_f32(&member, x[i]);
    char file[512];
    int n = snprintf(file, sizeof file, "%s.npy", name);
    size_t offset = w->zip.len;
    if (member.failed || n <= 0 || (size_t)n >= sizeof file || (uint64_t)offset + member.len + 1024 > ZIP_LIMIT) {
        w->too_big = 1;
        jv_buf_free(&member);
        return;
    }
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), member.data, (uInt)member.len);
    jv_buf_put_le32(&w->zip, 0x04034b50u); /* the local header, the member */
    put_member_fields(&w->zip, crc, member.len, (size_t)n);
    jv_buf_put(&w->zip, file, (size_t)n);
    jv_buf_put(&w->zip, member.data, member.len);
    jv_buf_put_le32(&w->dir, 0x02014b50u); /* its directory entry: made by version 2.0 */
    put_le16(&w->dir, 20);
    put_member_fields(&w->dir, crc, member.len, (size_t)n);
    put_le16(&w->dir, 0); /* no comment, disk 0, no attributes */
    put_le16(&w->dir, 0);
    put_le16(&w->dir, 0);
    jv_buf_put_le32(&w->dir, 0);
    jv_buf_put_le32(&w->dir, (uint32_t)offset);
    jv_buf_put(&w->dir, file, (size_t)n);
    w->entries++;
    jv_buf_free(&member);
}

static void add_block(npz_writer *w, const jv_model *m, const char *prefix, const float *block)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const jv_tensor_info *t = &m->tensors[i];
        char name[480];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        size_t shape[2] = {(size_t)t->rows, (size_t)t->cols};
        if (t->is_bias)
            add_array(w, name, block + t->offset, shape + 1, 1);
        else
            add_array(w, name, block + t->offset, shape, 2);
    }
}

int jv_cmd_export(const jv_model *m, int argc, char **argv)
{
    export_opts o = {0};
    jv_option opts[] = {
        {"checkpoint", JV_OPT_STRING, &o.checkpoint, 0, 0, "CKPT", "the checkpoint to export (required)", 0},
        {"npz", JV_OPT_STRING, &o.npz, 0, 0, "FILE", "the archive to write (required)", 0},
        {"moments", JV_OPT_FLAG, &o.moments, 0, 0, NULL, "also Adam's moments, as adam_m/<name> and adam_v/<name>",
         0},
    };
    int rc = jv_parse_options("export", "--checkpoint CKPT --npz FILE [--moments]", EXPORT_ABOUT, opts,
                              (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc != 0)
        return rc;
    if (!o.checkpoint || !o.npz)
        return jv_fail("export: missing --%s", o.checkpoint ? "npz FILE" : "checkpoint CKPT");
    if (jv_check_output_path("export", "npz", o.npz) != 0)
        return 1;
    struct stat st;
    if (stat(o.npz, &st) == 0 && (!S_ISREG(st.st_mode) || !written_by_us(o.npz)))
        return jv_fail("export: %s exists and was not written by jmvaec export; it is left as it is (remove it or "
                       "pick another --npz)",
                       o.npz);
    jv_checkpoint ck;
    if (jv_checkpoint_read(m, o.checkpoint, &ck) != 0)
        return 1;
    npz_writer w = {0};
    add_block(&w, m, "", ck.params);
    if (o.moments) {
        add_block(&w, m, "adam_m/", ck.m);
        add_block(&w, m, "adam_v/", ck.v);
    }
    char comment[256];
    int n = snprintf(comment, sizeof comment, NPZ_MARK ": model %s (fingerprint %016" PRIx64 "), step %" PRId64,
                     m->name, m->fingerprint, ck.step);
    size_t dir_at = w.zip.len;
    if ((uint64_t)dir_at + w.dir.len + 22 + (size_t)n > ZIP_LIMIT || w.entries > 0xffffu)
        w.too_big = 1;
    jv_buf_put(&w.zip, w.dir.data, w.dir.len);
    jv_buf_put_le32(&w.zip, 0x06054b50u);
    put_le16(&w.zip, 0);
    put_le16(&w.zip, 0);
    put_le16(&w.zip, w.entries);
    put_le16(&w.zip, w.entries);
    jv_buf_put_le32(&w.zip, (uint32_t)w.dir.len);
    jv_buf_put_le32(&w.zip, (uint32_t)dir_at);
    put_le16(&w.zip, (unsigned)n);
    jv_buf_put(&w.zip, comment, (size_t)n);
    if (w.too_big || w.dir.failed)
        rc = jv_fail("export: the archive would pass 4 GiB or 65535 arrays (no ZIP64 here); nothing written");
    else
        rc = jv_buf_save(&w.zip, o.npz);
    if (rc == 0)
        printf("wrote %s: %u arrays (model %s, step %" PRId64 ")\n", o.npz, w.entries, m->name, ck.step);
    jv_buf_free(&w.zip);
    jv_buf_free(&w.dir);
    jv_checkpoint_release(&ck);
    return rc;
}
