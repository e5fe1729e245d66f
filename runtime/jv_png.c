/* jv_png.c: writes 8-bit greyscale or RGB PNG files (one IDAT chunk of
 * zlib-compressed rows, each with filter type 0), atomically.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "jv_internal.h"
#include "jv_runtime.h"

/* Length, type, data, then the CRC-32 of type and data. */
static void put_chunk(jv_buf *b, const char type[4], const unsigned char *data, size_t len)
{
    jv_buf_put_be32(b, (uint32_t)len);
    size_t start = b->len;
    jv_buf_put(b, type, 4);
    jv_buf_put(b, data, len);
    if (b->failed)
        return;
    uLong crc = crc32(0L, b->data + start, (uInt)(len + 4));
    jv_buf_put_be32(b, (uint32_t)crc);
}

/* The image rows, each prefixed by its filter byte (0: none). */
static unsigned char *filtered_rows(const uint8_t *pixels, size_t row_bytes, size_t height)
{
    unsigned char *raw = malloc((row_bytes + 1) * height);
    if (!raw)
        return NULL;
    for (size_t y = 0; y < height; y++) {
        raw[y * (row_bytes + 1)] = 0;
        memcpy(raw + y * (row_bytes + 1) + 1, pixels + y * row_bytes, row_bytes);
    }
    return raw;
}

/* Compresses the filtered rows into a fresh buffer; *len receives its size. */
static unsigned char *compressed_rows(const uint8_t *pixels, size_t row_bytes, size_t height, size_t *len)
{
    unsigned char *raw = filtered_rows(pixels, row_bytes, height);
    if (!raw)
        return NULL;
    uLong raw_len = (uLong)((row_bytes + 1) * height);
    uLongf out_len = compressBound(raw_len);
    unsigned char *out = malloc(out_len);
    if (out && compress2(out, &out_len, raw, raw_len, Z_BEST_COMPRESSION) != Z_OK) {
        free(out);
        out = NULL;
    }
    free(raw);
    *len = out_len;
    return out;
}

static void put_header(jv_buf *b, int width, int height, int channels)
{
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    /* 8 bits per sample; colour type grey (0) or RGB (2); compression,
     * filter method and interlace 0 */
    const unsigned char format[5] = {8, channels == 1 ? 0 : 2, 0, 0, 0};
    jv_buf ihdr = {0};
    jv_buf_put_be32(&ihdr, (uint32_t)width);
    jv_buf_put_be32(&ihdr, (uint32_t)height);
    jv_buf_put(&ihdr, format, sizeof format);
    jv_buf_put(b, signature, sizeof signature);
    if (ihdr.failed)
        b->failed = 1;
    else
        put_chunk(b, "IHDR", ihdr.data, ihdr.len);
    jv_buf_free(&ihdr);
}

/* Keeps every length within what zlib's 32-bit counts accept. */
static int size_is_supported(int width, int height, int channels)
{
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
        return 0;
    return ((size_t)width * (size_t)channels + 1) * (size_t)height <= ((size_t)1 << 30);
}

int jv_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels, jv_error *err)
{
    if (!size_is_supported(width, height, channels)) {
        jv_error_set(err, "%s: cannot write a PNG of %d x %d pixels with %d channels", path, width, height,
                     channels);
        return -1;
    }
    size_t idat_len;
    unsigned char *idat =
        compressed_rows(pixels, (size_t)width * (size_t)channels, (size_t)height, &idat_len);
    if (!idat) {
        jv_error_set(err, "%s: out of memory while compressing the image", path);
        return -1;
    }
    jv_buf b = {0};
    put_header(&b, width, height, channels);
    put_chunk(&b, "IDAT", idat, idat_len);
    put_chunk(&b, "IEND", NULL, 0);
    free(idat);
    int rc = -1;
    if (b.failed)
        jv_error_set(err, "%s: out of memory while encoding the image", path);
    else
        rc = jv_write_file_atomic(path, b.data, b.len, err);
    jv_buf_free(&b);
    return rc;
}
