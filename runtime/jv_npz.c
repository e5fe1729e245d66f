/* jv_npz.c: NumPy .npz archives (jv_runtime.h): a ZIP of stored
 * (uncompressed) .npy members with fixed dates, built in memory, so the
 * same arrays always give the same bytes. Its comment begins "written by
 * jmvaec", which is how a later write knows it may replace the file; any
 * other file at the path is left alone. Written atomically. No ZIP64:
 * archives stop at 4 GiB and 65535 members. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "jv_trainer_int.h"

#define NPZ_MARK "written by jmvaec"
#define ZIP_LIMIT 0xffffffffu

struct jv_npz {
    jv_buf zip, dir; /* the members as they are added, and their central directory */
    unsigned entries;
    int too_big;
};

int jv_npz_ours(const char *path)
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

jv_npz *jv_npz_new(void)
{
    return calloc(1, sizeof(jv_npz));
}

static void put_le16(jv_buf *b, unsigned x)
{
    unsigned char v[2] = {(unsigned char)(x & 0xff), (unsigned char)(x >> 8)};
    jv_buf_put(b, v, 2);
}

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

void jv_npz_add(jv_npz *w, const char *name, const void *values, int f64, const size_t *shape, int ndim)
{
    if (!w)
        return;
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= shape[d];
    jv_buf member = {0};
    jv_npy_header_of(&member, f64 ? "<f8" : "<f4", shape, ndim);
    for (size_t i = 0; i < count; i++) {
        if (f64) {
            uint64_t bits;
            memcpy(&bits, (const double *)values + i, sizeof bits);
            jv_buf_put_le64(&member, bits);
        } else {
            jv_buf_put_f32(&member, ((const float *)values)[i]);
        }
    }
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

int jv_npz_save(jv_npz *w, const char *path, const char *comment, const char *cmd)
{
    if (!w)
        return jv_fail("%s: out of memory", cmd);
    char note[256];
    int n = snprintf(note, sizeof note, NPZ_MARK " %s", comment);
    n = n < 0 ? 0 : n >= (int)sizeof note ? (int)sizeof note - 1 : n;
    size_t dir_at = w->zip.len;
    if ((uint64_t)dir_at + w->dir.len + 22 + (size_t)n > ZIP_LIMIT || w->entries > 0xffffu)
        w->too_big = 1;
    jv_buf_put(&w->zip, w->dir.data, w->dir.len);
    jv_buf_put_le32(&w->zip, 0x06054b50u);
    put_le16(&w->zip, 0);
    put_le16(&w->zip, 0);
    put_le16(&w->zip, w->entries);
    put_le16(&w->zip, w->entries);
    jv_buf_put_le32(&w->zip, (uint32_t)w->dir.len);
    jv_buf_put_le32(&w->zip, (uint32_t)dir_at);
    put_le16(&w->zip, (unsigned)n);
    jv_buf_put(&w->zip, note, (size_t)n);
    int rc;
    struct stat st;
    if (w->too_big || w->dir.failed)
        rc = jv_fail("%s: the archive would pass 4 GiB or 65535 arrays (no ZIP64 here); nothing written", cmd);
    else if (stat(path, &st) == 0 && (!S_ISREG(st.st_mode) || !jv_npz_ours(path)))
        rc = jv_fail("%s: %s exists and was not written by jmvaec; it is left as it is (remove it or pick another "
                     "file)", cmd, path);
    else
        rc = jv_buf_save(&w->zip, path);
    jv_npz_free(w);
    return rc;
}

void jv_npz_free(jv_npz *w)
{
    if (!w)
        return;
    jv_buf_free(&w->zip);
    jv_buf_free(&w->dir);
    free(w);
}
