/* jv_data.c: loads data files into float matrices. The format is chosen by
 * content: IDX (magic 0,0,type,ndim; plain or gzip), NPY (magic \x93NUMPY,
 * versions 1-3, C order) or, for text, CSV. Then jv_load_modality checks the
 * matrix against a modality and expands class indices to one-hot rows.
 * A modality's file may leave examples out: a row whose every value is NaN
 * (in CSV: empty fields, NA or NaN) or a negative class index is missing.
 * Examples are numbered from 0 in messages, CSV lines from 1.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jv_internal.h"
#include "jv_runtime.h"

#define MAX_DIMS 32

void jv_matrix_free(jv_matrix *m)
{
    free(m->x);
    free(m->missing);
    *m = (jv_matrix){0};
}

/* ------------------------------------------------------------ values -- */

/* Stores value `position` of an example, refusing infinity and values
 * beyond the float range, and NaN unless a missing value may be (`nan_ok`:
 * it is kept as NaN and mark_missing judges the row). */
static int store_value(const char *path, double value, size_t example, size_t position, int nan_ok,
                       float *dst, jv_error *err)
{
    if (nan_ok && isnan(value)) {
        *dst = NAN;
        return 0;
    }
    if (!isfinite(value) || fabs(value) > FLT_MAX) {
        jv_error_set(err, "%s: example %zu, value %zu is NaN, infinite or beyond the float range (%g)", path,
                     example, position, value);
        return -1;
    }
    *dst = (float)value;
    return 0;
}

typedef double (*decode_fn)(const unsigned char *p);

/* How the elements of a binary array are stored. */
typedef struct {
    size_t size;
    decode_fn decode;
} elem_format;

static double decode_u8_scaled(const unsigned char *p)
{
    return p[0] / 255.0;
}

static double decode_u8(const unsigned char *p)
{
    return p[0];
}

static double decode_i8(const unsigned char *p)
{
    return p[0] < 0x80 ? (double)p[0] : (double)p[0] - 256.0;
}

static double decode_be_i16(const unsigned char *p)
{
    uint16_t u = jv_get_be16(p);
    return u < 0x8000u ? (double)u : (double)u - 65536.0;
}

static double decode_be_i32(const unsigned char *p)
{
    uint32_t u = jv_get_be32(p);
    return u < 0x80000000u ? (double)u : (double)u - 4294967296.0;
}

static double float_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double double_from_bits(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static double decode_be_f32(const unsigned char *p)
{
    return float_from_bits(jv_get_be32(p));
}

static double decode_be_f64(const unsigned char *p)
{
    return double_from_bits(jv_get_be64(p));
}

static double decode_le_f32(const unsigned char *p)
{
    return float_from_bits(jv_get_le32(p));
}

static double decode_le_i32(const unsigned char *p)
{
    return (double)(int32_t)jv_get_le32(p);
}

static double decode_le_i64(const unsigned char *p)
{
    return (double)(int64_t)jv_get_le64(p);
}

static double decode_le_f64(const unsigned char *p)
{
    return double_from_bits(jv_get_le64(p));
}

/* ------------------------------------------------------ binary arrays -- */

/* n = dims[0], dim = the product of the others; an empty array is an error. */
static int shape_to_rows(const char *path, const uint64_t *dims, int ndim, size_t *n, size_t *dim,
                         jv_error *err)
{
    uint64_t rows = dims[0], cols = 1;
    for (int i = 1; i < ndim; i++) {
        if (dims[i] != 0 && cols > SIZE_MAX / dims[i]) {
            jv_error_set(err, "%s: the array is too large", path);
            return -1;
        }
        cols *= dims[i];
    }
    if (rows == 0 || cols == 0) {
        jv_error_set(err, "%s: no data (the array has a dimension of size 0)", path);
        return -1;
    }
    if (rows > SIZE_MAX) {
        jv_error_set(err, "%s: the array is too large", path);
        return -1;
    }
    *n = (size_t)rows;
    *dim = (size_t)cols;
    return 0;
}

/* Decodes the n x dim elements that follow the header; nothing may follow them. */
static int decode_rows(jv_reader *r, const uint64_t *dims, int ndim, elem_format fmt, int nan_ok,
                       jv_matrix *out, jv_error *err)
{
    size_t n, dim;
    if (shape_to_rows(r->path, dims, ndim, &n, &dim, err) != 0)
        return -1;
    if (n > SIZE_MAX / dim / fmt.size / sizeof(float)) {
        jv_error_set(err, "%s: the array is too large", r->path);
        return -1;
    }
    const unsigned char *p;
    if (jv_take(r, n * dim * fmt.size, "the data its header describes", &p, err) != 0)
        return -1;
    if (r->pos != r->size) {
        jv_error_set(err, "%s: %zu unexpected bytes after the data the header describes", r->path,
                     r->size - r->pos);
        return -1;
    }
    float *x = jv_alloc_large(n * dim * sizeof(float), 0);
    if (!x) {
        jv_error_set(err, "%s: out of memory for %zu x %zu values", r->path, n, dim);
        return -1;
    }
    if (fmt.decode == decode_u8_scaled || fmt.decode == decode_u8) {
        /* bytes are always finite: a table of the 256 values, the same ones the
         * general path computes (47 million bytes of images in a few ms) */
        float table[256];
        for (int v = 0; v < 256; v++)
            table[v] = (float)fmt.decode((const unsigned char[]){(unsigned char)v});
        for (size_t i = 0; i < n * dim; i++)
            x[i] = table[p[i]];
        *out = (jv_matrix){.n = n, .dim = dim, .x = x, .unit_interval = fmt.decode == decode_u8_scaled};
        return 0;
    }
    for (size_t i = 0; i < n * dim; i++) {
        if (store_value(r->path, fmt.decode(p + i * fmt.size), i / dim, i % dim, nan_ok, &x[i], err) != 0) {
            free(x);
            return -1;
        }
    }
    *out = (jv_matrix){.n = n, .dim = dim, .x = x};
    return 0;
}

/* ---------------------------------------------------------------- IDX -- */

/* The element format of an IDX type code; uint8 is scaled to [0,1] or not. */
static int idx_format(int type, int scale_u8, elem_format *fmt)
{
    switch (type) {
    case 0x08:
        *fmt = (elem_format){1, scale_u8 ? decode_u8_scaled : decode_u8};
        return 0;
    case 0x09:
        *fmt = (elem_format){1, decode_i8};
        return 0;
    case 0x0B:
        *fmt = (elem_format){2, decode_be_i16};
        return 0;
    case 0x0C:
        *fmt = (elem_format){4, decode_be_i32};
        return 0;
    case 0x0D:
        *fmt = (elem_format){4, decode_be_f32};
        return 0;
    case 0x0E:
        *fmt = (elem_format){8, decode_be_f64};
        return 0;
    default:
        return -1;
    }
}

static int load_idx(jv_reader *r, int scale_u8, int nan_ok, jv_matrix *out, jv_error *err)
{
    const unsigned char *head, *raw_dims;
    if (jv_take(r, 4, "IDX header", &head, err) != 0)
        return -1;
    elem_format fmt;
    if (idx_format(head[2], scale_u8, &fmt) != 0) {
        jv_error_set(err,
                     "%s: IDX type code 0x%02X is not supported (expected 0x08, 0x09, 0x0B, 0x0C, "
                     "0x0D or 0x0E)",
                     r->path, head[2]);
        return -1;
    }
    int ndim = head[3];
    if (ndim == 0 || ndim > MAX_DIMS) {
        jv_error_set(err, "%s: bad IDX header: %d dimensions", r->path, ndim);
        return -1;
    }
    if (jv_take(r, 4 * (size_t)ndim, "IDX dimensions", &raw_dims, err) != 0)
        return -1;
    uint64_t dims[MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = jv_get_be32(raw_dims + 4 * i);
    return decode_rows(r, dims, ndim, fmt, nan_ok, out, err);
}

/* ---------------------------------------------------------------- NPY -- */

/* The text after "'key':" in the header dict, or NULL. */
static const char *npy_value_of(const char *header, const char *key)
{
    size_t len = strlen(key);
    for (const char *p = strchr(header, '\''); p; p = strchr(p + 1, '\'')) {
        if (strncmp(p + 1, key, len) != 0 || p[len + 1] != '\'')
            continue;
        p += len + 2;
        p += strspn(p, " \t");
        if (*p != ':')
            return NULL;
        return p + 1 + strspn(p + 1, " \t");
    }
    return NULL;
}

static int npy_dtype(const char *path, const char *header, int scale_u8, elem_format *fmt, jv_error *err)
{
    const char *v = npy_value_of(header, "descr");
    size_t len = v && *v == '\'' ? strcspn(v + 1, "'") : 0;
    if (!v || *v != '\'' || v[1 + len] != '\'') {
        jv_error_set(err, "%s: bad NPY header: no 'descr' string", path);
        return -1;
    }
    v++;
    if (len == 3 && strncmp(v, "<f4", 3) == 0)
        *fmt = (elem_format){4, decode_le_f32};
    else if (len == 3 && strncmp(v, "<f8", 3) == 0)
        *fmt = (elem_format){8, decode_le_f64};
    else if (len == 3 && strncmp(v, "|u1", 3) == 0)
        *fmt = (elem_format){1, scale_u8 ? decode_u8_scaled : decode_u8};
    else if (len == 3 && strncmp(v, "|i1", 3) == 0)
        *fmt = (elem_format){1, decode_i8};
    else if (len == 3 && strncmp(v, "<i4", 3) == 0)
        *fmt = (elem_format){4, decode_le_i32};
    else if (len == 3 && strncmp(v, "<i8", 3) == 0)
        *fmt = (elem_format){8, decode_le_i64};
    else {
        jv_error_set(err,
                     "%s: NPY dtype '%.*s' is not supported (expected '<f4', '<f8', '|u1', '|i1', '<i4' or "
                     "'<i8')",
                     path, (int)(len > 40 ? 40 : len), v);
        return -1;
    }
    return 0;
}

static int npy_check_c_order(const char *path, const char *header, jv_error *err)
{
    const char *v = npy_value_of(header, "fortran_order");
    if (v && strncmp(v, "False", 5) == 0)
        return 0;
    if (v && strncmp(v, "True", 4) == 0)
        jv_error_set(err,
                     "%s: the NPY array is in Fortran order; save it in C order "
                     "(numpy.ascontiguousarray)",
                     path);
    else
        jv_error_set(err, "%s: bad NPY header: no 'fortran_order' True or False", path);
    return -1;
}

/* Parses "(d0, d1, ...)" with an optional trailing comma. */
static int npy_shape(const char *path, const char *header, uint64_t *dims, int *ndim, jv_error *err)
{
    const char *p = npy_value_of(header, "shape");
    if (!p || *p != '(') {
        jv_error_set(err, "%s: bad NPY header: no 'shape' tuple", path);
        return -1;
    }
    p++;
    *ndim = 0;
    for (;;) {
        p += strspn(p, " \t");
        if (*p == ')')
            break;
        char *end;
        unsigned long long d = strtoull(p, &end, 10);
        if (end == p || *p == '-' || *ndim == MAX_DIMS) {
            jv_error_set(err, "%s: bad NPY header: cannot read the 'shape' tuple", path);
            return -1;
        }
        dims[(*ndim)++] = d;
        p = end + strspn(end, " \t");
        if (*p == ',')
            p++;
        else if (*p != ')') {
            jv_error_set(err, "%s: bad NPY header: cannot read the 'shape' tuple", path);
            return -1;
        }
    }
    if (*ndim == 0) {
        jv_error_set(err, "%s: the NPY array is a scalar, not rows of examples", path);
        return -1;
    }
    return 0;
}

/* The header dict as a NUL-terminated string (caller frees). */
static char *npy_header_text(jv_reader *r, jv_error *err)
{
    const unsigned char *v, *len_bytes, *text;
    if (jv_take(r, 2, "NPY version", &v, err) != 0)
        return NULL;
    if (v[0] < 1 || v[0] > 3) {
        jv_error_set(err, "%s: NPY format version %d.%d is not supported", r->path, v[0], v[1]);
        return NULL;
    }
    size_t len_size = v[0] == 1 ? 2 : 4;
    if (jv_take(r, len_size, "NPY header length", &len_bytes, err) != 0)
        return NULL;
    size_t len = len_size == 2 ? jv_get_le16(len_bytes) : jv_get_le32(len_bytes);
    if (jv_take(r, len, "NPY header", &text, err) != 0)
        return NULL;
    char *header = malloc(len + 1);
    if (!header) {
        jv_error_set(err, "%s: out of memory", r->path);
        return NULL;
    }
    memcpy(header, text, len);
    header[len] = '\0';
    return header;
}

static int load_npy(jv_reader *r, int scale_u8, int nan_ok, jv_matrix *out, jv_error *err)
{
    r->pos = 6; /* past the magic */
    char *header = npy_header_text(r, err);
    if (!header)
        return -1;
    elem_format fmt;
    uint64_t dims[MAX_DIMS];
    int ndim = 0;
    int rc = npy_dtype(r->path, header, scale_u8, &fmt, err);
    if (rc == 0)
        rc = npy_check_c_order(r->path, header, err);
    if (rc == 0)
        rc = npy_shape(r->path, header, dims, &ndim, err);
    free(header);
    if (rc != 0)
        return -1;
    return decode_rows(r, dims, ndim, fmt, nan_ok, out, err);
}

/* ---------------------------------------------------------------- CSV -- */

typedef struct {
    const char *path;
    size_t line;       /* 1-based number of the line being read */
    size_t first_line; /* the first line with values, which fixes the width */
    size_t dim;        /* values per row, 0 before the first row */
    size_t rows;
    int nan_ok;    /* an empty field, NA or NaN is a missing value */
    jv_buf values; /* floats, row after row */
} csv_state;

static int csv_bad_field(const csv_state *s, size_t field, const char *p, jv_error *err)
{
    size_t len = strcspn(p, ",\r\n");
    jv_error_set(err, "%s: line %zu, field %zu: '%.*s' is not a number%s", s->path, s->line, field + 1,
                 (int)(len > 40 ? 40 : len), p, s->rows == 0 ? " (a header line is not allowed)" : "");
    return -1;
}

static int csv_junk_after(const csv_state *s, size_t field, const char *p, jv_error *err)
{
    size_t len = strcspn(p, "\r\n");
    jv_error_set(err, "%s: line %zu: unexpected '%.*s' after field %zu (values are separated by commas)",
                 s->path, s->line, (int)(len > 40 ? 40 : len), p, field);
    return -1;
}

/* Reads the values of the line at *pp (which is not blank) and moves past it. */
static int csv_read_line(csv_state *s, const char **pp, jv_error *err)
{
    const char *p = *pp;
    size_t count = 0;
    for (;;) {
        p += strspn(p, " \t");
        const char *next;
        double value;
        if (strchr(",\r\n", *p)) { /* an empty field; also matches the final NUL */
            if (!s->nan_ok)
                return csv_bad_field(s, count, p, err);
            value = NAN, next = p;
        } else if (s->nan_ok && strncmp(p, "NA", 2) == 0 && strchr(", \t\r\n", p[2])) {
            value = NAN, next = p + 2;
        } else {
            char *end;
            value = strtod(p, &end);
            if (end == p)
                return csv_bad_field(s, count, p, err);
            next = end;
        }
        float f;
        if (store_value(s->path, value, s->rows, count, s->nan_ok, &f, err) != 0)
            return -1;
        jv_buf_put(&s->values, &f, sizeof f);
        count++;
        p = next + strspn(next, " \t");
        if (*p != ',')
            break;
        p++;
    }
    if (*p == '\r')
        p++;
    if (*p != '\n' && *p != '\0')
        return csv_junk_after(s, count, p, err);
    if (s->dim == 0) {
        s->dim = count;
        s->first_line = s->line;
    } else if (count != s->dim) {
        jv_error_set(err, "%s: line %zu has %zu values, but line %zu has %zu", s->path, s->line, count,
                     s->first_line, s->dim);
        return -1;
    }
    s->rows++;
    *pp = p;
    return 0;
}

static int is_blank_line(const char *p)
{
    p += strspn(p, " \t\r");
    return *p == '\n' || *p == '\0';
}

static int load_csv(const char *path, const char *text, int nan_ok, jv_matrix *out, jv_error *err)
{
    csv_state s = {.path = path, .line = 1, .nan_ok = nan_ok};
    int rc = 0;
    for (const char *p = text; *p && rc == 0; s.line++) {
        if (!is_blank_line(p))
            rc = csv_read_line(&s, &p, err);
        p += strcspn(p, "\n");
        if (*p == '\n')
            p++;
    }
    if (rc == 0 && s.rows == 0) {
        jv_error_set(err, "%s: no data (the file is empty)", path);
        rc = -1;
    }
    if (rc == 0 && s.values.failed) {
        jv_error_set(err, "%s: out of memory", path);
        rc = -1;
    }
    if (rc != 0) {
        jv_buf_free(&s.values);
        return -1;
    }
    *out = (jv_matrix){.n = s.rows, .dim = s.dim, .x = (float *)(void *)s.values.data};
    return 0;
}

/* ---------------------------------------------------- format choice -- */

static int is_text(const unsigned char *data, size_t size)
{
    for (size_t i = 0; i < size; i++)
        if (data[i] == 0 || (data[i] < 0x20 && !strchr("\t\n\r\v\f", data[i])))
            return 0;
    return 1;
}

static int load_by_content(jv_reader *r, int gzipped, int scale_u8, int nan_ok, jv_matrix *out, jv_error *err)
{
    const unsigned char *d = r->data;
    if (r->size >= 2 && d[0] == 0 && d[1] == 0)
        return load_idx(r, scale_u8, nan_ok, out, err);
    if (gzipped) {
        jv_error_set(err, "%s: the gzip data is not an IDX file (bad magic number)", r->path);
        return -1;
    }
    if (r->size >= 6 && memcmp(d, "\x93NUMPY", 6) == 0)
        return load_npy(r, scale_u8, nan_ok, out, err);
    if (is_text(d, r->size))
        return load_csv(r->path, (const char *)d, nan_ok, out, err);
    jv_error_set(err, "%s: unrecognised format: no IDX or NPY magic number, and not text (CSV)", r->path);
    return -1;
}

static int load_file(const char *path, int scale_u8, int nan_ok, jv_matrix *out, jv_error *err)
{
    *out = (jv_matrix){0};
    unsigned char *data;
    size_t size;
    int gzipped;
    if (jv_read_file(path, &data, &size, &gzipped, err) != 0)
        return -1;
    jv_reader r = {data, size, 0, path};
    int rc = load_by_content(&r, gzipped, scale_u8, nan_ok, out, err);
    free(data);
    return rc;
}

int jv_load_matrix(const char *path, jv_matrix *out, jv_error *err)
{
    return load_file(path, 1, 0, out, err);
}

/* ------------------------------------------------------------ missing -- */

int jv_matrix_hide_row(jv_matrix *m, size_t row)
{
    if (!m->missing && !(m->missing = calloc(m->n, 1)))
        return -1;
    if (!m->missing[row])
        m->n_missing++;
    m->missing[row] = 1;
    memset(m->x + row * m->dim, 0, m->dim * sizeof *m->x);
    return 0;
}

/* Marks `row` missing, saying so if memory runs out. */
static int set_missing(const char *path, jv_matrix *m, size_t row, jv_error *err)
{
    if (jv_matrix_hide_row(m, row) == 0)
        return 0;
    jv_error_set(err, "%s: out of memory", path);
    return -1;
}

/* A row whose every value is NaN is a missing example; a row with some NaN
 * values and some numbers is an error. */
static int mark_missing(const char *path, jv_matrix *m, jv_error *err)
{
    if (m->unit_interval)
        return 0; /* bytes: no NaN */
    for (size_t r = 0; r < m->n; r++) {
        const float *x = m->x + r * m->dim;
        size_t nan = 0, first_nan = SIZE_MAX, first_value = SIZE_MAX;
        for (size_t c = 0; c < m->dim; c++) {
            if (!isnan(x[c]))
                first_value = first_value == SIZE_MAX ? c : first_value;
            else if (nan++ == 0)
                first_nan = c;
        }
        if (nan == 0)
            continue;
        if (nan < m->dim) {
            jv_error_set(err,
                         "%s: example %zu has a missing value at position %zu but a number at position %zu; "
                         "a missing example has no value at all (every field empty, NA or NaN)",
                         path, r, first_nan, first_value);
            return -1;
        }
        if (set_missing(path, m, r, err) != 0)
            return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- modality -- */

static int check_unit_interval(const char *path, const jv_modality_info *mod, const char *kind,
                               const jv_matrix *m, jv_error *err)
{
    if (m->unit_interval)
        return 0; /* bytes scaled by 1/255 */
    for (size_t i = 0; i < m->n * m->dim; i++) {
        if (m->x[i] < 0 || m->x[i] > 1) { /* a missing row holds zeros */
            jv_error_set(err,
                         "%s: example %zu has value %g at position %zu, but %s modality %s needs "
                         "values in [0,1]",
                         path, i / m->dim, (double)m->x[i], i % m->dim, kind, mod->name);
            return -1;
        }
    }
    return 0;
}

static int check_size(const char *path, const jv_modality_info *mod, const jv_matrix *m, jv_error *err)
{
    if (m->dim == (size_t)mod->size)
        return 0;
    jv_error_set(err, "%s: examples have %zu values, but modality %s has size %d", path, m->dim, mod->name,
                 mod->size);
    return -1;
}

/* Rows of probabilities must each sum to 1 (up to rounding in the file). */
static int check_rows_sum_to_one(const char *path, const jv_modality_info *mod, const jv_matrix *m,
                                 jv_error *err)
{
    if (check_unit_interval(path, mod, "categorical", m, err) != 0)
        return -1;
    for (size_t r = 0; r < m->n; r++) {
        if (m->missing && m->missing[r])
            continue;
        double sum = 0;
        for (size_t c = 0; c < m->dim; c++)
            sum += m->x[r * m->dim + c];
        if (fabs(sum - 1) > 0.02) {
            jv_error_set(err,
                         "%s: example %zu sums to %g, but the %d values of categorical modality %s "
                         "must sum to 1",
                         path, r, sum, mod->size, mod->name);
            return -1;
        }
    }
    return 0;
}

/* Replaces a column of class indices by one-hot rows; a negative class
 * marks a missing example (rows of zeros). */
static int expand_class_indices(const char *path, const jv_modality_info *mod, jv_matrix *m, jv_error *err)
{
    size_t k = (size_t)mod->size;
    for (size_t r = 0; r < m->n; r++) {
        double c = m->x[r];
        if (c != floor(c) || c >= (double)k) {
            jv_error_set(err, "%s: example %zu has class %g, but modality %s has %zu classes%s", path, r, c,
                         mod->name, k, c < 0 ? " (a negative whole number marks a missing label)" : "");
            return -1;
        }
        if (c < 0 && set_missing(path, m, r, err) != 0)
            return -1;
    }
    float *onehot = calloc(m->n, k * sizeof(float));
    if (!onehot) {
        jv_error_set(err, "%s: out of memory for %zu x %zu values", path, m->n, k);
        return -1;
    }
    for (size_t r = 0; r < m->n; r++)
        if (!m->missing || !m->missing[r])
            onehot[r * k + (size_t)m->x[r]] = 1;
    free(m->x);
    m->x = onehot;
    m->dim = k;
    return 0;
}

static int fit_categorical(const char *path, const jv_modality_info *mod, jv_matrix *m, jv_error *err)
{
    if (m->dim == (size_t)mod->size)
        return check_rows_sum_to_one(path, mod, m, err);
    if (m->dim == 1)
        return expand_class_indices(path, mod, m, err);
    jv_error_set(err,
                 "%s: examples have %zu values, but categorical modality %s needs 1 (a class index) "
                 "or %d (one-hot or probabilities)",
                 path, m->dim, mod->name, mod->size);
    return -1;
}

static int fit_modality(const char *path, const jv_modality_info *mod, jv_matrix *m, jv_error *err)
{
    switch (mod->likelihood) {
    case JV_CATEGORICAL:
        return fit_categorical(path, mod, m, err);
    case JV_BERNOULLI:
        if (check_size(path, mod, m, err) != 0)
            return -1;
        return check_unit_interval(path, mod, "Bernoulli", m, err);
    case JV_GAUSSIAN:
    case JV_GAUSSIAN_LEARNED:
        return check_size(path, mod, m, err);
    }
    jv_error_set(err, "%s: modality %s has an unknown likelihood", path, mod->name);
    return -1;
}

/* Class indices and one-hot rows stored as uint8 (as in IDX label files)
 * are taken as they are; other modalities see uint8 scaled to [0,1]. */
int jv_load_modality(const char *path, const jv_modality_info *mod, jv_matrix *out, jv_error *err)
{
    if (load_file(path, mod->likelihood != JV_CATEGORICAL, 1, out, err) != 0)
        return -1;
    if (mark_missing(path, out, err) != 0 || fit_modality(path, mod, out, err) != 0) {
        jv_matrix_free(out);
        return -1;
    }
    return 0;
}
