/* test_runtime.c: Criterion tests of the generic runtime library (libjmvaec):
 * random streams, Adam, data loading (IDX, NPY, CSV and every refusal), PNG
 * output, checkpoints (round trip, damage, another model, failed saves) and
 * atomic file writes. Each test that touches files gets its own temporary
 * folder, removed afterwards.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "jv_runtime.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist/"

/* ------------------------------------------------------ temp folders -- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/jv_test.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(path, 0700);
            remove_tree(path);
        } else {
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static void remove_tmpdir(void)
{
    remove_tree(tmpdir);
}

/* A path inside the test's folder; a few stay valid at once. */
static const char *tpath(const char *name)
{
    static char bufs[8][256];
    static int next;
    char *p = bufs[next++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

/* Entries in a folder whose name has ".tmp." in it (leftover temporaries). */
static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* ------------------------------------------------------- file helpers -- */

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static void write_gzip(const char *path, const void *data, size_t n)
{
    gzFile gz = gzopen(path, "wb");
    cr_assert_not_null(gz);
    cr_assert_eq(gzwrite(gz, data, (unsigned)n), (int)n);
    cr_assert_eq(gzclose(gz), Z_OK);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    unsigned char *data = malloc(1 << 20);
    cr_assert_not_null(data);
    *n = fread(data, 1, 1 << 20, f);
    fclose(f);
    return data;
}

/* The call failed and said which file and what is wrong. */
static void assert_refused(int rc, const jv_error *err, const char *path, const char *problem)
{
    cr_assert_eq(rc, -1, "expected a failure for %s", path);
    cr_assert_eq(strncmp(err->msg, path, strlen(path)), 0, "message does not start with the path: %s",
                 err->msg);
    cr_assert_not_null(strstr(err->msg, problem), "message lacks '%s': %s", problem, err->msg);
}

/* ------------------------------------------------------ byte builders -- */

typedef struct {
    unsigned char b[4096];
    size_t n;
} bytes;

static void add(bytes *s, const void *p, size_t n)
{
    cr_assert_leq(s->n + n, sizeof s->b);
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void add_be32(bytes *s, uint32_t x)
{
    unsigned char p[4] = {(unsigned char)(x >> 24), (unsigned char)(x >> 16), (unsigned char)(x >> 8),
                          (unsigned char)x};
    add(s, p, 4);
}

static void add_le(bytes *s, uint64_t x, int n)
{
    for (int i = 0; i < n; i++)
        add(s, (unsigned char[1]){(unsigned char)(x >> (8 * i))}, 1);
}

static void idx_header(bytes *s, int type, int ndim, const uint32_t *dims)
{
    add(s, (unsigned char[4]){0, 0, (unsigned char)type, (unsigned char)ndim}, 4);
    for (int i = 0; i < ndim; i++)
        add_be32(s, dims[i]);
}

/* An NPY file of the given version with the header dict padded as numpy pads it. */
static void npy_header(bytes *s, int version, const char *dict)
{
    size_t len_size = version == 1 ? 2 : 4, fixed = 6 + 2 + len_size;
    size_t text = strlen(dict) + 1, padded = (fixed + text + 63) / 64 * 64 - fixed;
    add(s, "\x93NUMPY", 6);
    add(s, (unsigned char[2]){(unsigned char)version, 0}, 2);
    add_le(s, padded, (int)len_size);
    add(s, dict, strlen(dict));
    for (size_t i = text; i < padded; i++)
        add(s, " ", 1);
    add(s, "\n", 1);
}

/* ================================================================ RNG == */

Test(rng, same_position_same_numbers)
{
    jv_rng a = {42, 3, 1000}, b = {42, 3, 1000}, other_stream = {42, 4, 1000};
    float x[16], y[16], z[16];
    jv_rng_fill_normal(&a, x, 16);
    jv_rng_fill_normal(&b, y, 16);
    jv_rng_fill_normal(&other_stream, z, 16);
    cr_assert_eq(memcmp(x, y, sizeof x), 0);
    cr_assert_neq(memcmp(x, z, sizeof x), 0);
    cr_assert_eq(a.position, 1016);
    cr_assert_float_eq(x[5], (float)jv_normal_at(42, 3, 1005), 0);
}

Test(rng, fill_in_two_halves_equals_fill_at_once)
{
    jv_rng whole = {7, 1, 5}, halves = {7, 1, 5};
    float all[101], parts[101];
    jv_rng_fill_uniform(&whole, all, 101);
    jv_rng_fill_uniform(&halves, parts, 40);
    jv_rng_fill_uniform(&halves, parts + 40, 61);
    cr_assert_eq(memcmp(all, parts, sizeof all), 0);
    cr_assert_eq(whole.position, halves.position);

    jv_rng_fill_normal(&whole, all, 101);
    jv_rng_fill_normal(&halves, parts, 1);
    jv_rng_fill_normal(&halves, parts + 1, 100);
    cr_assert_eq(memcmp(all, parts, sizeof all), 0);
}

Test(rng, normal_mean_and_variance)
{
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    jv_rng rng = {2024, 0, 0};
    jv_rng_fill_normal(&rng, x, N);
    double sum = 0, sum_sq = 0;
    for (int i = 0; i < N; i++) {
        sum += x[i];
        sum_sq += (double)x[i] * x[i];
    }
    double mean = sum / N, var = sum_sq / N - mean * mean;
    cr_assert_lt(fabs(mean), 0.015, "mean %g", mean); /* ~5 standard errors */
    cr_assert_lt(fabs(var - 1), 0.03, "variance %g", var);
    free(x);
}

Test(rng, uniform_in_open_unit_interval)
{
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    jv_rng rng = {1, 2, 3};
    jv_rng_fill_uniform(&rng, x, N);
    double sum = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(x[i] > 0 && x[i] <= 1);
        sum += x[i];
    }
    cr_assert_lt(fabs(sum / N - 0.5), 0.005);
    free(x);
}

Test(rng, below_stays_in_range_and_covers_it)
{
    jv_rng rng = {9, 9, 0};
    int counts[7] = {0};
    for (int i = 0; i < 7000; i++) {
        uint64_t k = jv_rng_below(&rng, 7);
        cr_assert_lt(k, 7);
        counts[k]++;
    }
    for (int k = 0; k < 7; k++)
        cr_assert(counts[k] > 850 && counts[k] < 1150, "class %d drawn %d times", k, counts[k]);
    cr_assert_eq(jv_rng_below(&rng, 1), 0);
    cr_assert_eq(jv_rng_below(&rng, 0), 0);
    /* With n = 2/3 of 2^64, plain x % n would land in the lower half of
     * [0, n) two times in three; rejection sampling keeps it at one in two. */
    uint64_t big = (UINT64_MAX / 3) * 2;
    int low = 0;
    for (int i = 0; i < 4000; i++) {
        uint64_t k = jv_rng_below(&rng, big);
        cr_assert_lt(k, big);
        low += k < big / 2;
    }
    cr_assert(low > 1800 && low < 2200, "%d of 4000 draws in the lower half", low);
}

Test(rng, shuffle_is_a_deterministic_permutation)
{
    enum { N = 1000 };
    size_t a[N], b[N];
    int seen[N] = {0};
    for (size_t i = 0; i < N; i++)
        a[i] = b[i] = i;
    jv_rng r1 = {5, 0, 0}, r2 = {5, 0, 0};
    jv_rng_shuffle(&r1, a, N);
    jv_rng_shuffle(&r2, b, N);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    size_t fixed = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert_lt(a[i], N);
        cr_assert_eq(seen[a[i]]++, 0, "%zu appears twice", a[i]);
        fixed += a[i] == i;
    }
    cr_assert_lt(fixed, 10, "%zu elements did not move", fixed);
    jv_rng_shuffle(&r1, a, 0); /* empty and single arrays are fine */
    jv_rng_shuffle(&r1, a, 1);
}

/* =============================================================== Adam == */

static const jv_adam_config adam_cfg = {0.01, 0.9, 0.999, 1e-8, 0};

Test(adam, matches_hand_computation)
{
    float p[3] = {1, -2, 0.5f}, m[3] = {0}, v[3] = {0};
    const float g1[3] = {0.1f, -0.2f, 0.3f}, g2[3] = {0.4f, 0.1f, -0.3f};
    /* step 1: m = 0.1 g, v = 0.001 g^2, so m^ = g, v^ = g^2 and each
     * parameter moves by lr * sign(g). */
    jv_adam_step(&adam_cfg, p, g1, m, v, 3, 1, jv_grad_norm(g1, 3));
    const float p1[3] = {0.99f, -1.99f, 0.49f};
    for (int i = 0; i < 3; i++) {
        cr_assert_float_eq(p[i], p1[i], 1e-6);
        cr_assert_float_eq(m[i], 0.1 * g1[i], 1e-8);
        cr_assert_float_eq(v[i], 0.001 * g1[i] * g1[i], 1e-10);
    }
    /* step 2: m = (0.049, -0.008, -0.003), v = (1.6999e-4, 4.996e-5, 1.7991e-4),
     * bias corrections 0.19 and 0.001999:
     * p -= 0.01 * (m / 0.19) / (sqrt(v / 0.001999) + 1e-8) */
    jv_adam_step(&adam_cfg, p, g2, m, v, 3, 2, jv_grad_norm(g2, 3));
    const float m2[3] = {0.049f, -0.008f, -0.003f}, v2[3] = {1.6999e-4f, 4.996e-5f, 1.7991e-4f};
    const float p2[3] = {0.98115624f, -1.98733663f, 0.49052632f};
    for (int i = 0; i < 3; i++) {
        cr_assert_float_eq(m[i], m2[i], 1e-7);
        cr_assert_float_eq(v[i], v2[i], 1e-10);
        cr_assert_float_eq(p[i], p2[i], 2e-6, "param %d: %.9g", i, (double)p[i]);
    }
}

Test(adam, grad_norm_in_double)
{
    cr_assert_float_eq(jv_grad_norm((const float[]){3, 4}, 2), 5.0, 1e-12);
    enum { N = 1000000 };
    float *g = malloc(N * sizeof *g);
    for (int i = 0; i < N; i++)
        g[i] = 0.001f;
    cr_assert_float_eq(jv_grad_norm(g, N), sqrt(N) * (double)0.001f, 1e-9);
    free(g);
}

Test(adam, clipping_scales_the_gradient)
{
    const float g[3] = {3, 4, 0}; /* norm 5 */
    jv_adam_config cfg = adam_cfg;
    float p[3] = {0}, m[3] = {0}, v[3] = {0};
    cfg.clip = 1;
    jv_adam_step(&cfg, p, g, m, v, 3, 1, jv_grad_norm(g, 3));
    cr_assert_float_eq(m[0], 0.1 * 0.6, 1e-7); /* gradient scaled by 1/5 */
    cr_assert_float_eq(m[1], 0.1 * 0.8, 1e-7);
    cr_assert_float_eq(v[1], 0.001 * 0.64, 1e-9);
    cr_assert_float_eq(m[2], 0, 0);

    cfg.clip = 10; /* above the norm: no scaling */
    memset(m, 0, sizeof m);
    memset(v, 0, sizeof v);
    jv_adam_step(&cfg, p, g, m, v, 3, 1, 5.0);
    cr_assert_float_eq(m[1], 0.4, 1e-7);

    cfg.clip = 0; /* off */
    memset(m, 0, sizeof m);
    jv_adam_step(&cfg, p, g, m, v, 3, 1, 5.0);
    cr_assert_float_eq(m[1], 0.4, 1e-7);
}

/* Random floats of many magnitudes, some zero, for the vector paths. */
static void fill_mixed(float *x, size_t n, uint64_t stream)
{
    for (size_t i = 0; i < n; i++) {
        double u = jv_uniform_at(3, stream, i);
        x[i] = i % 97 == 0 ? 0.0f : (float)((u - 0.5) * pow(10, (double)(i % 9) - 4));
    }
}

/* Every vector path gives the bits of the baseline one, for lengths that
 * leave every remainder of the 16-lane loops. */
Test(adam, every_vector_path_gives_the_same_bits)
{
    enum { N = 1000 + 15 };
    float *g = malloc(N * sizeof *g), *p0 = malloc(N * sizeof *p0), *m0 = calloc(N, sizeof *m0), *v0 = calloc(N, sizeof *v0);
    float *p = malloc(N * sizeof *p), *m = malloc(N * sizeof *m), *v = malloc(N * sizeof *v);
    fill_mixed(g, N, 1);
    fill_mixed(p0, N, 2);
    jv_adam_config cfg = {1e-3, 0.9, 0.999, 1e-8, 5};
    int tested = 0;
    for (int path = 0; path < jv_simd_path_count(); path++) {
        if (!jv_simd_path_supported(path))
            continue;
        tested++;
        for (size_t n = 0; n <= N; n += n < 40 ? 1 : 487) {
            double a = jv_sumsq_path(0, g, n), b = jv_sumsq_path(path, g, n);
            cr_assert(memcmp(&a, &b, sizeof a) == 0, "%s: sum of squares of %zu: %.17g, baseline %.17g",
                      jv_simd_path_name(path), n, b, a);
        }
        float *pb = malloc(N * sizeof *pb), *mb = calloc(N, sizeof *mb), *vb = calloc(N, sizeof *vb);
        memcpy(pb, p0, N * sizeof *pb);
        memcpy(p, p0, N * sizeof *p);
        memset(m, 0, N * sizeof *m);
        memset(v, 0, N * sizeof *v);
        for (long step = 1; step <= 3; step++) {
            jv_adam_update_path(0, &cfg, pb, g, mb, vb, N, step, 0.37);
            jv_adam_update_path(path, &cfg, p, g, m, v, N, step, 0.37);
        }
        cr_assert(memcmp(p, pb, N * sizeof *p) == 0 && memcmp(m, mb, N * sizeof *m) == 0 &&
                      memcmp(v, vb, N * sizeof *v) == 0,
                  "%s: Adam differs from the baseline", jv_simd_path_name(path));
        free(pb);
        free(mb);
        free(vb);
    }
    cr_assert_geq(tested, 1);
    cr_log_info("vector paths checked: %d; in use: %s", tested, jv_simd_describe());
    /* and the sum of squares is the one of double arithmetic, to its rounding */
    double exact = 0;
    for (int i = 0; i < N; i++)
        exact += (double)g[i] * g[i];
    cr_assert_float_eq(jv_sumsq_f32(g, N), exact, 1e-12 * exact);
    free(g);
    free(p0);
    free(m0);
    free(v0);
    free(p);
    free(m);
    free(v);
}

/* Ranges updated one by one give what one call over all gives. */
Test(adam, ranges_update_like_one_call)
{
    enum { N = 333 };
    float g[N], p1[N], p2[N], m1[N] = {0}, m2[N] = {0}, v1[N] = {0}, v2[N] = {0};
    fill_mixed(g, N, 4);
    fill_mixed(p1, N, 5);
    memcpy(p2, p1, sizeof p1);
    jv_adam_config cfg = {1e-3, 0.9, 0.999, 1e-8, 0};
    jv_adam_update(&cfg, p1, g, m1, v1, 0, N, 7, 0.5);
    for (int part = 0; part < 5; part++) {
        size_t lo, hi;
        jv_split_range(N, 16, part, 5, &lo, &hi);
        jv_adam_update(&cfg, p2, g, m2, v2, lo, hi, 7, 0.5);
    }
    cr_assert(memcmp(p1, p2, sizeof p1) == 0 && memcmp(m1, m2, sizeof m1) == 0 && memcmp(v1, v2, sizeof v1) == 0);
}

Test(adam, warm_up_is_linear_then_flat)
{
    jv_hyper_info h = {"beta", 1.0, 0.0, 10.0};
    cr_assert_float_eq(jv_hyper_value(&h, 0), 0.0, 1e-12);
    cr_assert_float_eq(jv_hyper_value(&h, 2.5), 0.25, 1e-12);
    cr_assert_float_eq(jv_hyper_value(&h, 10), 1.0, 1e-12);
    cr_assert_float_eq(jv_hyper_value(&h, 30), 1.0, 1e-12);
    jv_hyper_info down = {"alpha", 0.5, 2.0, 4.0};
    cr_assert_float_eq(jv_hyper_value(&down, 1), 1.625, 1e-12);
    jv_hyper_info none = {"gamma", 3.0, 0.0, 0.0};
    cr_assert_float_eq(jv_hyper_value(&none, 0), 3.0, 1e-12);
}

/* =============================================================== data == */

TestSuite(data, .init = make_tmpdir, .fini = remove_tmpdir);

static const unsigned char pixels12[12] = {0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8};

static void build_idx_u8(bytes *s)
{
    idx_header(s, 0x08, 3, (const uint32_t[]){3, 2, 2});
    add(s, pixels12, sizeof pixels12);
}

static void assert_pixels12(const jv_matrix *m)
{
    cr_assert_eq(m->n, 3);
    cr_assert_eq(m->dim, 4);
    for (int i = 0; i < 12; i++)
        cr_assert_float_eq(m->x[i], pixels12[i] / 255.0f, 1e-7);
}

Test(data, idx_plain_round_trip)
{
    bytes s = {0};
    jv_matrix m;
    jv_error err;
    build_idx_u8(&s);
    write_bytes(tpath("x.idx"), s.b, s.n);
    cr_assert_eq(jv_load_matrix(tpath("x.idx"), &m, &err), 0, "%s", err.msg);
    assert_pixels12(&m);
    jv_matrix_free(&m);
    cr_assert_null(m.x);
}

Test(data, idx_gzip_round_trip)
{
    bytes s = {0};
    jv_matrix m;
    jv_error err;
    build_idx_u8(&s);
    write_gzip(tpath("x.idx.gz"), s.b, s.n);
    cr_assert_eq(jv_load_matrix(tpath("x.idx.gz"), &m, &err), 0, "%s", err.msg);
    assert_pixels12(&m);
    jv_matrix_free(&m);
}

/* Found by fuzz_data: a gzip file whose footer claims 4 GB of data. The
 * loader must not believe it (deflate expands at most 1032-fold): zlib
 * reads the file instead and reports the damage. */
Test(data, gzip_footer_claiming_gigabytes_is_not_believed)
{
    const unsigned char f[] = {0x1f, 0x8b, 0x08, 0x00, 0xfa, 0xac, 0x4e, 0x93, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
                               0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa,
                               0xfa, 0xfa};
    write_bytes(tpath("huge.gz"), f, sizeof f);
    jv_matrix m;
    jv_error err;
    assert_refused(jv_load_matrix(tpath("huge.gz"), &m, &err), &err, tpath("huge.gz"), "gzip");
}

Test(data, idx_every_type_big_endian)
{
    struct {
        int type;
        unsigned char raw[16];
        size_t size;
        double a, b;
    } cases[] = {
        {0x09, {0xFF, 0x05}, 1, -1, 5},
        {0x0B, {0xFE, 0xD4, 0x01, 0x00}, 2, -300, 256},
        {0x0C, {0x00, 0x01, 0x11, 0x70, 0xFF, 0xFF, 0xFF, 0xFB}, 4, 70000, -5},
        {0x0D, {0x3F, 0xC0, 0, 0, 0xC1, 0x20, 0, 0}, 4, 1.5, -10},
        {0x0E, {0xC0, 0x02, 0, 0, 0, 0, 0, 0, 0x3F, 0xD0, 0, 0, 0, 0, 0, 0}, 8, -2.25, 0.25},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bytes s = {0};
        jv_matrix m;
        jv_error err;
        idx_header(&s, cases[c].type, 1, (const uint32_t[]){2});
        add(&s, cases[c].raw, 2 * cases[c].size);
        write_bytes(tpath("t.idx"), s.b, s.n);
        cr_assert_eq(jv_load_matrix(tpath("t.idx"), &m, &err), 0, "type 0x%02X: %s", cases[c].type, err.msg);
        cr_assert_eq(m.n, 2);
        cr_assert_eq(m.dim, 1);
        cr_assert_float_eq(m.x[0], cases[c].a, 0, "type 0x%02X", cases[c].type);
        cr_assert_float_eq(m.x[1], cases[c].b, 0, "type 0x%02X", cases[c].type);
        jv_matrix_free(&m);
    }
}

/* Raw bytes of a gzip file, decompressed, for comparison. */
static unsigned char *gunzip_file(const char *path, size_t *n)
{
    gzFile gz = gzopen(path, "rb");
    cr_assert_not_null(gz, "cannot open %s", path);
    size_t cap = 8 << 20;
    unsigned char *data = malloc(cap);
    int got = gzread(gz, data, (unsigned)cap);
    cr_assert_gt(got, 0);
    gzclose(gz);
    *n = (size_t)got;
    return data;
}

Test(data, fashion_mnist_images)
{
    const char *path = FASHION_DIR "t10k-images-idx3-ubyte.gz";
    jv_matrix m;
    jv_error err;
    cr_assert_eq(jv_load_matrix(path, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 10000);
    cr_assert_eq(m.dim, 784);
    size_t n;
    unsigned char *raw = gunzip_file(path, &n);
    cr_assert_eq(n, 16 + 10000 * 784);
    double sum = 0;
    for (size_t i = 0; i < m.n * m.dim; i++) {
        cr_assert(m.x[i] >= 0 && m.x[i] <= 1);
        cr_assert_float_eq(m.x[i], raw[16 + i] / 255.0f, 1e-7);
        sum += m.x[i];
    }
    cr_assert_float_eq(sum / (double)(m.n * m.dim), 0.2868, 1e-3);
    free(raw);
    jv_matrix_free(&m);
}

Test(data, fashion_mnist_labels)
{
    const char *path = FASHION_DIR "t10k-labels-idx1-ubyte.gz";
    jv_matrix m;
    jv_error err;
    cr_assert_eq(jv_load_matrix(path, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 10000);
    cr_assert_eq(m.dim, 1);
    size_t n;
    unsigned char *raw = gunzip_file(path, &n);
    cr_assert_eq(n, 8 + 10000);
    for (size_t i = 0; i < m.n; i++) {
        cr_assert_leq(raw[8 + i], 9);
        cr_assert_float_eq(m.x[i], raw[8 + i] / 255.0f, 1e-7); /* uint8 is scaled here */
    }
    free(raw);
    jv_matrix_free(&m);
}

Test(data, npy_float32_float64_uint8)
{
    jv_matrix m;
    jv_error err;
    bytes f4 = {0}, f8 = {0}, u1 = {0};
    npy_header(&f4, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    for (int i = 0; i < 6; i++) {
        float x = (float)i - 2.5f;
        add(&f4, &x, 4); /* the test machine is little-endian */
    }
    write_bytes(tpath("a.npy"), f4.b, f4.n);
    cr_assert_eq(jv_load_matrix(tpath("a.npy"), &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 2 && m.dim == 3);
    cr_assert_float_eq(m.x[5], 2.5, 0);
    jv_matrix_free(&m);

    npy_header(&f8, 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }");
    for (int i = 0; i < 3; i++)
        add(&f8, &(double){0.125 * i}, 8);
    write_bytes(tpath("b.npy"), f8.b, f8.n);
    cr_assert_eq(jv_load_matrix(tpath("b.npy"), &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 3 && m.dim == 1);
    cr_assert_float_eq(m.x[2], 0.25, 0);
    jv_matrix_free(&m);

    npy_header(&u1, 3, "{'shape': (2, 2, 2), 'fortran_order': False, 'descr': '|u1'}");
    add(&u1, (const unsigned char[]){0, 255, 51, 0, 0, 0, 0, 102}, 8);
    write_bytes(tpath("c.npy"), u1.b, u1.n);
    cr_assert_eq(jv_load_matrix(tpath("c.npy"), &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 2 && m.dim == 4);
    cr_assert_float_eq(m.x[1], 1, 0);
    cr_assert_float_eq(m.x[7], 0.4, 1e-7);
    jv_matrix_free(&m);
}

Test(data, npy_refusals)
{
    struct {
        const char *dict, *problem;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", "Fortran order"},
        {"{'descr': '<i2', 'fortran_order': False, 'shape': (2, 2), }", "dtype '<i2' is not supported"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", "dtype '>f4' is not supported"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", "scalar"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", "no data"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", "truncated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", "unexpected bytes"},
        {"{'fortran_order': False, 'shape': (2, 2), }", "no 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", "'shape'"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bytes s = {0};
        jv_matrix m;
        jv_error err;
        npy_header(&s, 1, cases[c].dict);
        add(&s, (const float[]){1, 2, 3, 4}, 16);
        write_bytes(tpath("bad.npy"), s.b, s.n);
        assert_refused(jv_load_matrix(tpath("bad.npy"), &m, &err), &err, tpath("bad.npy"), cases[c].problem);
        cr_assert_null(m.x);
    }
}

Test(data, csv_numbers)
{
    jv_matrix m;
    jv_error err;
    write_text(tpath("a.csv"), "1,2,3\r\n -4.5 , 1e-3,\t7\n\n0x10,0,-0\n\n");
    cr_assert_eq(jv_load_matrix(tpath("a.csv"), &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 3 && m.dim == 3, "%zu x %zu", m.n, m.dim);
    const float want[9] = {1, 2, 3, -4.5f, 1e-3f, 7, 16, 0, 0};
    for (int i = 0; i < 9; i++)
        cr_assert_float_eq(m.x[i], want[i], 0);
    jv_matrix_free(&m);

    write_text(tpath("b.csv"), "0.5"); /* one value, no final newline */
    cr_assert_eq(jv_load_matrix(tpath("b.csv"), &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 1 && m.dim == 1 && m.x[0] == 0.5f);
    jv_matrix_free(&m);
}

Test(data, csv_refusals)
{
    struct {
        const char *text, *problem;
    } cases[] = {
        {"1,2\n3\n", "line 2 has 1 values, but line 1 has 2"},
        {"\n1,2\n3,4,5\n", "line 3 has 3 values, but line 2 has 2"},
        {"a,b\n1,2\n", "line 1, field 1: 'a' is not a number (a header line is not allowed)"},
        {"1,,2\n", "line 1, field 2: '' is not a number"},
        {"1,2,\n3,4,5\n", "line 1, field 3"},
        {"1;2\n", "line 1: unexpected ';2' after field 1"},
        {"1,2\n3,nan\n", "example 1, value 1 is NaN, infinite or beyond the float range"},
        {"1,1e999\n", "example 0, value 1 is NaN, infinite"},
        {"", "no data"},
        {"\n \n", "no data"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        jv_matrix m;
        jv_error err;
        write_text(tpath("bad.csv"), cases[c].text);
        assert_refused(jv_load_matrix(tpath("bad.csv"), &m, &err), &err, tpath("bad.csv"), cases[c].problem);
    }
}

Test(data, missing_file_and_folder)
{
    jv_matrix m;
    jv_error err;
    assert_refused(jv_load_matrix(tpath("nothing.idx"), &m, &err), &err, tpath("nothing.idx"),
                   "No such file");
    assert_refused(jv_load_matrix(tmpdir, &m, &err), &err, tmpdir, "is a folder");
}

Test(data, truncated_idx_plain_and_gzip)
{
    bytes s = {0};
    jv_matrix m;
    jv_error err;
    build_idx_u8(&s);
    write_bytes(tpath("t.idx"), s.b, s.n - 3);
    assert_refused(jv_load_matrix(tpath("t.idx"), &m, &err), &err, tpath("t.idx"),
                   "truncated: expected 12 more bytes");
    write_bytes(tpath("h.idx"), s.b, 9); /* inside the dimensions */
    assert_refused(jv_load_matrix(tpath("h.idx"), &m, &err), &err, tpath("h.idx"), "truncated");

    write_gzip(tpath("t.idx.gz"), s.b, s.n - 3); /* complete gzip, short IDX */
    assert_refused(jv_load_matrix(tpath("t.idx.gz"), &m, &err), &err, tpath("t.idx.gz"), "truncated");

    write_gzip(tpath("full.gz"), s.b, s.n); /* the gzip stream itself cut short */
    size_t n;
    unsigned char *gz = read_bytes(tpath("full.gz"), &n);
    write_bytes(tpath("cut.gz"), gz, n - 6);
    free(gz);
    assert_refused(jv_load_matrix(tpath("cut.gz"), &m, &err), &err, tpath("cut.gz"), "truncated");
}

Test(data, bad_binary_content)
{
    jv_matrix m;
    jv_error err;
    write_bytes(tpath("junk.bin"), "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    assert_refused(jv_load_matrix(tpath("junk.bin"), &m, &err), &err, tpath("junk.bin"), "magic");
    write_bytes(tpath("nul.csv"), "1,2\n\0\n3,4\n", 10); /* text with a NUL byte is not CSV */
    assert_refused(jv_load_matrix(tpath("nul.csv"), &m, &err), &err, tpath("nul.csv"), "not text");

    write_gzip(tpath("junk.gz"), "hello,1\n", 8); /* gzip that holds no IDX */
    assert_refused(jv_load_matrix(tpath("junk.gz"), &m, &err), &err, tpath("junk.gz"), "not an IDX file");

    bytes s = {0};
    idx_header(&s, 0x0A, 1, (const uint32_t[]){1});
    add(&s, "\0\0\0\0", 4);
    write_bytes(tpath("type.idx"), s.b, s.n);
    assert_refused(jv_load_matrix(tpath("type.idx"), &m, &err), &err, tpath("type.idx"),
                   "IDX type code 0x0A is not supported");

    bytes e = {0};
    idx_header(&e, 0x08, 2, (const uint32_t[]){0, 784});
    write_bytes(tpath("empty.idx"), e.b, e.n);
    assert_refused(jv_load_matrix(tpath("empty.idx"), &m, &err), &err, tpath("empty.idx"), "no data");

    bytes l = {0};
    build_idx_u8(&l);
    add(&l, "xy", 2);
    write_bytes(tpath("long.idx"), l.b, l.n);
    assert_refused(jv_load_matrix(tpath("long.idx"), &m, &err), &err, tpath("long.idx"),
                   "2 unexpected bytes after the data");
}

Test(data, nan_and_infinity_refused)
{
    jv_matrix m;
    jv_error err;
    bytes s = {0};
    idx_header(&s, 0x0D, 2, (const uint32_t[]){2, 2});
    add_be32(&s, 0x3F800000); /* 1 */
    add_be32(&s, 0x3F800000);
    add_be32(&s, 0x3F800000);
    add_be32(&s, 0x7FC00000); /* NaN */
    write_bytes(tpath("nan.idx"), s.b, s.n);
    assert_refused(jv_load_matrix(tpath("nan.idx"), &m, &err), &err, tpath("nan.idx"),
                   "example 1, value 1 is NaN, infinite or beyond the float range (nan)");

    bytes d = {0};
    idx_header(&d, 0x0E, 1, (const uint32_t[]){1});
    add(&d, "\x7F\xEF\xFF\xFF\xFF\xFF\xFF\xFF", 8); /* DBL_MAX: beyond float */
    write_bytes(tpath("big.idx"), d.b, d.n);
    assert_refused(jv_load_matrix(tpath("big.idx"), &m, &err), &err, tpath("big.idx"),
                   "beyond the float range (1.79769e+308)");
}

/* ============================================================ modality == */

/* An IDX label file of uint8 (type 0x08) or int32 (0x0C) class indices. */
static void write_labels(const char *path, int type, const unsigned char *labels, uint32_t n)
{
    bytes s = {0};
    idx_header(&s, type, 1, &n);
    for (uint32_t i = 0; i < n; i++) {
        if (type == 0x08)
            add(&s, &labels[i], 1);
        else
            add_be32(&s, labels[i]);
    }
    write_bytes(path, s.b, s.n);
}

Test(data, modality_class_indices_become_one_hot)
{
    jv_modality_info w = {"w", 10, JV_CATEGORICAL, 0, 0, 1};
    jv_matrix m;
    jv_error err;
    write_labels(tpath("labels.idx"), 0x0C, (const unsigned char[]){3, 0, 9}, 3);
    cr_assert_eq(jv_load_modality(tpath("labels.idx"), &w, &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 3 && m.dim == 10);
    for (size_t r = 0; r < 3; r++)
        for (size_t c = 0; c < 10; c++)
            cr_assert_float_eq(m.x[r * 10 + c], c == (size_t)(r == 0 ? 3 : r == 1 ? 0 : 9), 0);
    jv_matrix_free(&m);
}

Test(data, modality_bad_label_names_row_and_value)
{
    jv_modality_info w = {"w", 10, JV_CATEGORICAL, 0, 0, 1};
    jv_matrix m;
    jv_error err;
    unsigned char labels[20] = {0};
    labels[17] = 12;
    write_labels(tpath("labels.idx"), 0x08, labels, 20);
    cr_assert_eq(jv_load_modality(tpath("labels.idx"), &w, &m, &err), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: example 17 has class 12, but modality w has 10 classes",
             tpath("labels.idx"));
    cr_assert_str_eq(err.msg, want);
    cr_assert_null(m.x);

    write_text(tpath("frac.csv"), "1\n2.5\n");
    assert_refused(jv_load_modality(tpath("frac.csv"), &w, &m, &err), &err, tpath("frac.csv"),
                   "example 1 has class 2.5");
    write_text(tpath("neg.csv"), "-1.5\n");
    assert_refused(jv_load_modality(tpath("neg.csv"), &w, &m, &err), &err, tpath("neg.csv"),
                   "example 0 has class -1.5");
}

/* A modality's file may leave examples out: rows of NaN (in CSV empty
 * fields, NA or NaN) and negative classes; the rows become zeros, marked. */
Test(data, modality_missing_examples)
{
    jv_modality_info x = {"x", 3, JV_GAUSSIAN, 0, 0, 1}, w = {"w", 4, JV_CATEGORICAL, 0, 0, 1};
    jv_matrix m;
    jv_error err;
    write_text(tpath("x.csv"), "1,2,3\n,,\nNA, NA ,NA\nnan,NaN,NAN\n4,5,6\n");
    cr_assert_eq(jv_load_modality(tpath("x.csv"), &x, &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 5 && m.dim == 3 && m.n_missing == 3 && m.missing);
    const unsigned char want_missing[5] = {0, 1, 1, 1, 0};
    const float want_x[15] = {1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 5, 6};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(m.missing[i], want_missing[i], "row %d", i);
    for (int i = 0; i < 15; i++)
        cr_assert_float_eq(m.x[i], want_x[i], 0);
    jv_matrix_free(&m);

    write_text(tpath("w.csv"), "2\n-1\nNA\n0\n"); /* a negative class or NA */
    cr_assert_eq(jv_load_modality(tpath("w.csv"), &w, &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 4 && m.dim == 4 && m.n_missing == 2);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            cr_assert_float_eq(m.x[r * 4 + c], (r == 0 && c == 2) || (r == 3 && c == 0), 0, "%d,%d", r, c);
    jv_matrix_free(&m);

    bytes i8 = {0}; /* int64 labels, numpy's default, with -1 for a missing one */
    npy_header(&i8, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }");
    add_le(&i8, 3, 8);
    add_le(&i8, UINT64_MAX, 8);
    add_le(&i8, 1, 8);
    write_bytes(tpath("w.npy"), i8.b, i8.n);
    cr_assert_eq(jv_load_modality(tpath("w.npy"), &w, &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 3 && m.n_missing == 1 && m.missing[1] && m.x[3] == 1 && m.x[9] == 1);
    jv_matrix_free(&m);

    bytes f4 = {0}; /* float rows of NaN */
    const float nan = NAN, rows[6] = {nan, nan, nan, 0.5f, -1, 2};
    npy_header(&f4, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    add(&f4, rows, sizeof rows);
    write_bytes(tpath("x.npy"), f4.b, f4.n);
    cr_assert_eq(jv_load_modality(tpath("x.npy"), &x, &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 2 && m.n_missing == 1 && m.missing[0] && !m.missing[1] && m.x[0] == 0 && m.x[5] == 2);
    jv_matrix_free(&m);

    write_text(tpath("complete.csv"), "1,2,3\n");
    cr_assert_eq(jv_load_modality(tpath("complete.csv"), &x, &m, &err), 0, "%s", err.msg);
    cr_assert(m.n_missing == 0 && !m.missing);
    jv_matrix_free(&m);
}

Test(data, modality_partly_missing_row_refused)
{
    jv_modality_info x = {"x", 3, JV_GAUSSIAN, 0, 0, 1};
    jv_matrix m;
    jv_error err;
    write_text(tpath("p.csv"), "1,2,3\n4,,6\n");
    assert_refused(jv_load_modality(tpath("p.csv"), &x, &m, &err), &err, tpath("p.csv"),
                   "example 1 has a missing value at position 1 but a number at position 0");
    write_text(tpath("q.csv"), "NA,NA,7\n");
    assert_refused(jv_load_modality(tpath("q.csv"), &x, &m, &err), &err, tpath("q.csv"),
                   "example 0 has a missing value at position 0 but a number at position 2");
    /* jv_load_matrix (the classifier's, the masks') still refuses every NaN */
    write_text(tpath("n.csv"), "1,2,3\n,,\n");
    assert_refused(jv_load_matrix(tpath("n.csv"), &m, &err), &err, tpath("n.csv"), "line 2, field 1: ''");
}

Test(data, modality_fashion_mnist)
{
    jv_modality_info x = {"x", 784, JV_BERNOULLI, 28, 28, 1}, w = {"w", 10, JV_CATEGORICAL, 0, 0, 1};
    jv_matrix images, labels;
    jv_error err;
    cr_assert_eq(jv_load_modality(FASHION_DIR "t10k-images-idx3-ubyte.gz", &x, &images, &err), 0, "%s",
                 err.msg);
    cr_assert(images.n == 10000 && images.dim == 784);
    jv_matrix_free(&images);
    /* uint8 class indices are not scaled for a categorical modality */
    size_t n;
    unsigned char *raw = gunzip_file(FASHION_DIR "t10k-labels-idx1-ubyte.gz", &n);
    cr_assert_eq(n, 8 + 10000);
    cr_assert_eq(jv_load_modality(FASHION_DIR "t10k-labels-idx1-ubyte.gz", &w, &labels, &err), 0, "%s",
                 err.msg);
    cr_assert(labels.n == 10000 && labels.dim == 10);
    for (size_t r = 0; r < 10000; r++) {
        cr_assert_float_eq(labels.x[r * 10 + raw[8 + r]], 1, 0);
        float sum = 0;
        for (int c = 0; c < 10; c++)
            sum += labels.x[r * 10 + c];
        cr_assert_float_eq(sum, 1, 0);
    }
    cr_assert_eq(raw[8], 9); /* the first test image is an ankle boot */
    free(raw);
    jv_matrix_free(&labels);
}

Test(data, modality_size_and_range_checks)
{
    jv_modality_info g = {"x", 5, JV_GAUSSIAN, 0, 0, 1}, b = {"x", 2, JV_BERNOULLI, 0, 0, 1};
    jv_modality_info w = {"w", 3, JV_CATEGORICAL, 0, 0, 1};
    jv_matrix m;
    jv_error err;
    write_text(tpath("four.csv"), "1,2,3,4\n");
    assert_refused(jv_load_modality(tpath("four.csv"), &g, &m, &err), &err, tpath("four.csv"),
                   "examples have 4 values, but modality x has size 5");
    cr_assert_null(m.x);
    assert_refused(jv_load_modality(tpath("four.csv"), &w, &m, &err), &err, tpath("four.csv"),
                   "needs 1 (a class index) or 3");

    write_text(tpath("bern.csv"), "0,1\n0.5,1.5\n");
    assert_refused(jv_load_modality(tpath("bern.csv"), &b, &m, &err), &err, tpath("bern.csv"),
                   "example 1 has value 1.5 at position 1, but Bernoulli modality x needs values in [0,1]");

    write_text(tpath("probs.csv"), "0.2,0.3,0.5\n0,1,0\n");
    cr_assert_eq(jv_load_modality(tpath("probs.csv"), &w, &m, &err), 0, "%s", err.msg);
    cr_assert(m.n == 2 && m.dim == 3 && m.x[4] == 1);
    jv_matrix_free(&m);
    write_text(tpath("sum.csv"), "0.2,0.3,0.1\n");
    assert_refused(jv_load_modality(tpath("sum.csv"), &w, &m, &err), &err, tpath("sum.csv"),
                   "example 0 sums to 0.6");

    jv_modality_info g2 = {"y", 2, JV_GAUSSIAN_LEARNED, 0, 0, 1};
    write_text(tpath("g.csv"), "-3,100\n");
    cr_assert_eq(jv_load_modality(tpath("g.csv"), &g2, &m, &err), 0, "%s", err.msg);
    jv_matrix_free(&m);
}

/* ================================================================ PNG == */

TestSuite(png, .init = make_tmpdir, .fini = remove_tmpdir);

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the signature, every chunk's CRC, IHDR and IEND; returns the
 * concatenated IDAT data. */
static unsigned char *check_png(const char *path, int width, int height, int colour_type, size_t *idat_len)
{
    size_t n, pos = 8;
    unsigned char *png = read_bytes(path, &n);
    unsigned char *idat = malloc(n);
    *idat_len = 0;
    cr_assert_eq(memcmp(png, "\x89PNG\r\n\x1a\n", 8), 0);
    int chunks = 0, saw_end = 0;
    while (pos + 12 <= n && !saw_end) {
        uint32_t len = be32(png + pos);
        const unsigned char *type = png + pos + 4, *data = type + 4;
        cr_assert_leq(pos + 12 + len, n);
        cr_assert_eq(be32(data + len), (uint32_t)crc32(0, type, len + 4), "bad CRC in chunk %.4s", type);
        if (chunks++ == 0) {
            cr_assert_eq(memcmp(type, "IHDR", 4), 0);
            cr_assert_eq(len, 13);
            cr_assert_eq(be32(data), (uint32_t)width);
            cr_assert_eq(be32(data + 4), (uint32_t)height);
            cr_assert(data[8] == 8 && data[9] == colour_type && data[10] == 0 && data[11] == 0 &&
                      data[12] == 0);
        } else if (memcmp(type, "IDAT", 4) == 0) {
            memcpy(idat + *idat_len, data, len);
            *idat_len += len;
        } else {
            cr_assert_eq(memcmp(type, "IEND", 4), 0);
            cr_assert_eq(len, 0);
            saw_end = 1;
        }
        pos += 12 + len;
    }
    cr_assert(saw_end && pos == n, "IEND missing or not last");
    free(png);
    return idat;
}

static void check_png_pixels(int width, int height, int channels)
{
    size_t row = (size_t)width * channels, count = row * height;
    uint8_t *pixels = malloc(count);
    for (size_t i = 0; i < count; i++)
        pixels[i] = (uint8_t)(i * 37 + 11);
    jv_error err;
    cr_assert_eq(jv_png_write(tpath("img.png"), pixels, width, height, channels, &err), 0, "%s", err.msg);
    size_t idat_len;
    unsigned char *idat = check_png(tpath("img.png"), width, height, channels == 1 ? 0 : 2, &idat_len);
    uLongf raw_len = (uLongf)((row + 1) * height + 16);
    unsigned char *raw = malloc(raw_len);
    cr_assert_eq(uncompress(raw, &raw_len, idat, idat_len), Z_OK);
    cr_assert_eq(raw_len, (row + 1) * height);
    for (int y = 0; y < height; y++) {
        cr_assert_eq(raw[y * (row + 1)], 0, "row %d filter", y);
        cr_assert_eq(memcmp(raw + y * (row + 1) + 1, pixels + y * row, row), 0, "row %d", y);
    }
    cr_assert_eq(count_temp_files(tmpdir), 0);
    free(raw);
    free(idat);
    free(pixels);
}

Test(png, grey_image)
{
    check_png_pixels(5, 3, 1);
}

Test(png, rgb_image)
{
    check_png_pixels(28, 28, 3);
}

Test(png, bad_arguments_refused)
{
    uint8_t px[4] = {0};
    jv_error err;
    assert_refused(jv_png_write(tpath("a.png"), px, 0, 2, 1, &err), &err, tpath("a.png"), "0 x 2");
    assert_refused(jv_png_write(tpath("a.png"), px, 2, 2, 2, &err), &err, tpath("a.png"), "2 channels");
    assert_refused(jv_png_write(tpath("no/such/dir/a.png"), px, 2, 2, 1, &err), &err,
                   tpath("no/such/dir/a.png"), "cannot write");
    cr_assert_neq(access(tpath("a.png"), F_OK), 0);
}

/* ========================================================= checkpoints == */

TestSuite(checkpoint, .init = make_tmpdir, .fini = remove_tmpdir);

enum { NP = 9 };

static const jv_tensor_info tensors_a[] = {{"enc.l1.weight", 2, 3, 0, 0, {0, 0, 0, 0}}, {"enc.l1.bias", 1, 3, 6, 1, {0, 0, 0, 0}}};
static const jv_tensor_info tensors_b[] = {{"enc.l1.weight", 3, 2, 0, 0, {0, 0, 0, 0}}, {"enc.l1.bias", 1, 3, 6, 1, {0, 0, 0, 0}}};

static jv_model small_model(const char *name, uint64_t fingerprint, const jv_tensor_info *tensors)
{
    jv_model m;
    memset(&m, 0, sizeof m);
    m.name = name;
    m.fingerprint = fingerprint;
    m.n_tensors = 2;
    m.tensors = tensors;
    m.n_params = NP;
    return m;
}

typedef struct {
    float params[NP], m[NP], v[NP];
    jv_checkpoint ck;
} state;

static void init_state(state *s, float base)
{
    for (int i = 0; i < NP; i++) {
        s->params[i] = base + 0.5f * i;
        s->m[i] = -base * i;
        s->v[i] = base * 1e-3f * (float)(i + 1);
    }
    s->ck = (jv_checkpoint){.params = s->params, .m = s->m, .v = s->v, .rng_seed = 12345, .rng_position = 678, .epoch = 3, .step = 4096};
}

/* Buffers filled with a sentinel, so any write by a failed load shows. */
static void blank_state(state *s)
{
    memset(s, 0x5A, sizeof *s);
    s->ck = (jv_checkpoint){.params = s->params, .m = s->m, .v = s->v, .rng_seed = 1, .rng_position = 1, .epoch = 1, .step = 1};
}

static int state_is_blank(const state *s)
{
    state b;
    blank_state(&b);
    return memcmp(s->params, b.params, sizeof b.params) == 0 && memcmp(s->m, b.m, sizeof b.m) == 0 &&
           memcmp(s->v, b.v, sizeof b.v) == 0 && s->ck.epoch == 1 && s->ck.step == 1 && s->ck.rng_seed == 1 &&
           s->ck.rng_position == 1;
}

static void save_a(const char *path, float base)
{
    jv_model model = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    state s;
    jv_error err;
    init_state(&s, base);
    cr_assert_eq(jv_checkpoint_save(path, &model, &s.ck, &err), 0, "%s", err.msg);
}

static int load_a(const char *path, state *s, jv_error *err)
{
    jv_model model = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    blank_state(s);
    return jv_checkpoint_load(path, &model, &s->ck, err);
}

static void assert_state_equals(const state *got, float base)
{
    state want;
    init_state(&want, base);
    cr_assert_eq(memcmp(got->params, want.params, sizeof want.params), 0);
    cr_assert_eq(memcmp(got->m, want.m, sizeof want.m), 0);
    cr_assert_eq(memcmp(got->v, want.v, sizeof want.v), 0);
    cr_assert_eq(got->ck.rng_seed, 12345);
    cr_assert_eq(got->ck.rng_position, 678);
    cr_assert_eq(got->ck.epoch, 3);
    cr_assert_eq(got->ck.step, 4096);
}

Test(checkpoint, round_trip)
{
    state s;
    jv_error err;
    save_a(tpath("last.ckpt"), 1.25f);
    cr_assert_eq(load_a(tpath("last.ckpt"), &s, &err), 0, "%s", err.msg);
    assert_state_equals(&s, 1.25f);
    cr_assert_eq(count_temp_files(tmpdir), 0);
}

Test(checkpoint, layout_is_as_documented)
{
    size_t n;
    save_a(tpath("last.ckpt"), 2);
    unsigned char *f = read_bytes(tpath("last.ckpt"), &n);
    size_t names = strlen("jmvae") + strlen("enc.l1.weight") + strlen("enc.l1.bias");
    /* ... the generator and progress (4 x 8), the progress within an epoch (4 x 8, the choice of examples
       8 + 32 x 8, the count 4, no sums), the CRC */
    cr_assert_eq(n, 8 + 4 + 4 + 8 + 4 + 4 + 2 * (4 + 4 + 4 + 8) + names + 8 + 3 * 4 * NP + 4 * 8 + 4 * 8 + 8 +
                        32 * 8 + 4 + 4);
    cr_assert_eq(memcmp(f, "JMVAECK1", 8), 0);
    cr_assert(f[8] == 4 && f[9] == 0 && f[12] == 0);            /* version 4, reserved 0, little-endian */
    cr_assert(f[16] == 0x00 && f[17] == 0xef && f[23] == 0x12); /* fingerprint */
    cr_assert(f[24] == 5 && memcmp(f + 28, "jmvae", 5) == 0);
    cr_assert_eq(f[33], 2); /* tensor count */
    uint32_t crc =
        (uint32_t)f[n - 4] | (uint32_t)f[n - 3] << 8 | (uint32_t)f[n - 2] << 16 | (uint32_t)f[n - 1] << 24;
    cr_assert_eq(crc, (uint32_t)crc32(0, f, (uInt)(n - 4)));
    free(f);
}

Test(checkpoint, every_truncation_refused)
{
    size_t n;
    save_a(tpath("full.ckpt"), 1);
    unsigned char *f = read_bytes(tpath("full.ckpt"), &n);
    for (size_t len = 0; len < n; len++) {
        state s;
        jv_error err;
        write_bytes(tpath("cut.ckpt"), f, len);
        int rc = load_a(tpath("cut.ckpt"), &s, &err);
        assert_refused(rc, &err, tpath("cut.ckpt"), len < 8 ? "bad magic" : "truncated");
        cr_assert(state_is_blank(&s), "a failed load wrote to the buffers (length %zu)", len);
    }
    free(f);
}

Test(checkpoint, every_flipped_byte_refused)
{
    size_t n;
    save_a(tpath("full.ckpt"), 1);
    unsigned char *f = read_bytes(tpath("full.ckpt"), &n);
    for (size_t i = 0; i < n; i++) {
        state s;
        jv_error err;
        f[i] ^= 0x10;
        write_bytes(tpath("bad.ckpt"), f, n);
        f[i] ^= 0x10;
        cr_assert_eq(load_a(tpath("bad.ckpt"), &s, &err), -1, "byte %zu flipped but accepted", i);
        cr_assert_eq(strncmp(err.msg, tpath("bad.ckpt"), strlen(tpath("bad.ckpt"))), 0, "%s", err.msg);
        cr_assert(state_is_blank(&s));
    }
    /* a flipped byte among the parameters is a checksum failure */
    f[n - 50] ^= 1;
    write_bytes(tpath("bad.ckpt"), f, n);
    state s;
    jv_error err;
    char want[512];
    snprintf(want, sizeof want, "%s: checksum mismatch (file damaged)", tpath("bad.ckpt"));
    cr_assert_eq(load_a(tpath("bad.ckpt"), &s, &err), -1);
    cr_assert_str_eq(err.msg, want);
    free(f);
}

Test(checkpoint, random_files_refused)
{
    jv_rng rng = {77, 0, 0};
    unsigned char junk[600];
    for (int trial = 0; trial < 50; trial++) {
        size_t len = (size_t)jv_rng_below(&rng, sizeof junk);
        for (size_t i = 0; i < len; i++)
            junk[i] = (unsigned char)jv_rng_below(&rng, 256);
        if (trial % 2 && len >= 16) /* get past the magic and version checks */
            memcpy(junk, "JMVAECK1\x01\0\0\0\0\0\0\0", 16);
        write_bytes(tpath("junk.ckpt"), junk, len);
        state s;
        jv_error err;
        cr_assert_eq(load_a(tpath("junk.ckpt"), &s, &err), -1);
        cr_assert(state_is_blank(&s));
    }
}

/* A checkpoint's last 4 bytes: the CRC-32 of the bytes before them. */
static void put_crc(unsigned char *f, size_t n)
{
    uint32_t crc = (uint32_t)crc32(0, f, (uInt)(n - 4));
    for (int i = 0; i < 4; i++)
        f[n - 4 + i] = (unsigned char)(crc >> (8 * i));
}

Test(checkpoint, other_version_refused)
{
    size_t n;
    save_a(tpath("v.ckpt"), 1);
    unsigned char *f = read_bytes(tpath("v.ckpt"), &n);
    f[8] = 5;
    put_crc(f, n);
    write_bytes(tpath("v.ckpt"), f, n);
    state s;
    jv_error err;
    assert_refused(load_a(tpath("v.ckpt"), &s, &err), &err, tpath("v.ckpt"),
                   "checkpoint format version 5, but this build reads versions 1 to 4");
    free(f);
}

/* Version 1 (no progress within an epoch) still loads: the same file less
 * the progress section, with its version and CRC. */
Test(checkpoint, version_1_still_loads)
{
    size_t n;
    save_a(tpath("v2.ckpt"), 1);
    unsigned char *f = read_bytes(tpath("v2.ckpt"), &n);
    size_t progress = 4 * 8 + 8 + 32 * 8 + 4; /* no sums at an epoch's end */
    memmove(f + n - 4 - progress, f + n - 4, 4);
    n -= progress;
    f[8] = 1;
    put_crc(f, n);
    write_bytes(tpath("v1.ckpt"), f, n);
    state s;
    jv_error err;
    cr_assert_eq(load_a(tpath("v1.ckpt"), &s, &err), 0, "%s", err.msg);
    assert_state_equals(&s, 1);
    cr_assert_eq(s.ck.batches, 0);
    free(f);
}

/* Version 2 (no record of the run's parts nor of its examples) still
 * loads, with chunks 0: the same file less the 8 + 8 + 32 x 8 bytes before
 * the count of sums. */
Test(checkpoint, version_2_still_loads)
{
    size_t n, gone = 8 + 8 + 32 * 8;
    save_a(tpath("v4.ckpt"), 1);
    unsigned char *f = read_bytes(tpath("v4.ckpt"), &n);
    memmove(f + n - 4 - 4 - gone, f + n - 4 - 4, 8); /* the count and the CRC over the parts */
    n -= gone;
    f[8] = 2;
    put_crc(f, n);
    write_bytes(tpath("v2.ckpt"), f, n);
    state s;
    jv_error err;
    cr_assert_eq(load_a(tpath("v2.ckpt"), &s, &err), 0, "%s", err.msg);
    assert_state_equals(&s, 1);
    cr_assert_eq(s.ck.chunks, 0);
    free(f);
}

/* Version 3 (no record of the run's examples) still loads, with no
 * --drop nor --complete-only: the same file less the 8 + 32 x 8 bytes
 * before the count of sums. */
Test(checkpoint, version_3_still_loads)
{
    size_t n, gone = 8 + 32 * 8;
    jv_model model = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    state s;
    jv_error err;
    init_state(&s, 1);
    s.ck.chunks = 3;
    s.ck.complete_only = 1;
    s.ck.drop[1] = 0.5;
    cr_assert_eq(jv_checkpoint_save(tpath("v4.ckpt"), &model, &s.ck, &err), 0, "%s", err.msg);
    unsigned char *f = read_bytes(tpath("v4.ckpt"), &n);
    memmove(f + n - 4 - 4 - gone, f + n - 4 - 4, 8);
    n -= gone;
    f[8] = 3;
    put_crc(f, n);
    write_bytes(tpath("v3.ckpt"), f, n);
    state t;
    cr_assert_eq(load_a(tpath("v3.ckpt"), &t, &err), 0, "%s", err.msg);
    assert_state_equals(&t, 1);
    cr_assert(t.ck.chunks == 3 && t.ck.complete_only == 0 && t.ck.drop[1] == 0);
    free(f);
}

/* A choice of examples no trainer writes (a fraction of 1 or more, a NaN,
 * a flag beyond --complete-only's), checksum and all, is refused. */
Test(checkpoint, damaged_choice_of_examples_refused)
{
    jv_model model = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    const double bad[] = {1.0, -0.25, NAN};
    for (int i = 0; i < 4; i++) {
        state s;
        jv_error err;
        init_state(&s, 1);
        if (i < 3)
            s.ck.drop[31] = bad[i];
        cr_assert_eq(jv_checkpoint_save(tpath("c.ckpt"), &model, &s.ck, &err), 0, "%s", err.msg);
        if (i == 3) { /* the flag word: 2 */
            size_t n;
            unsigned char *f = read_bytes(tpath("c.ckpt"), &n);
            f[n - 4 - 4 - 32 * 8 - 8] = 2;
            put_crc(f, n);
            write_bytes(tpath("c.ckpt"), f, n);
            free(f);
        }
        state t;
        assert_refused(load_a(tpath("c.ckpt"), &t, &err), &err, tpath("c.ckpt"),
                       "the choice of training examples at its end is damaged");
    }
}

/* The progress within an epoch goes through a save and a load. */
Test(checkpoint, progress_within_an_epoch_round_trips)
{
    jv_model model = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    state s;
    jv_error err;
    init_state(&s, 2);
    s.ck.batches = 17;
    s.ck.batch_size = 100;
    s.ck.n_train = 60000;
    s.ck.chunks = 4;
    s.ck.complete_only = 1;
    s.ck.drop[0] = 0.9;
    s.ck.drop[31] = 1.0 / 3;
    s.ck.n_sums = 4;
    for (int i = 0; i < 4; i++)
        s.ck.sums[i] = 1000.5 * (i + 1) + 1.0 / 3;
    cr_assert_eq(jv_checkpoint_save(tpath("p.ckpt"), &model, &s.ck, &err), 0, "%s", err.msg);
    state t;
    cr_assert_eq(load_a(tpath("p.ckpt"), &t, &err), 0, "%s", err.msg);
    assert_state_equals(&t, 2);
    cr_assert(t.ck.batches == 17 && t.ck.batch_size == 100 && t.ck.n_train == 60000 && t.ck.n_sums == 4 &&
              t.ck.chunks == 4 && t.ck.complete_only == 1);
    for (int i = 0; i < 32; i++)
        cr_assert(memcmp(&t.ck.drop[i], &s.ck.drop[i], sizeof(double)) == 0);
    for (int i = 0; i < 4; i++)
        cr_assert(memcmp(&t.ck.sums[i], &s.ck.sums[i], sizeof(double)) == 0);
}

Test(checkpoint, another_model_refused)
{
    state s;
    jv_error err;
    save_a(tpath("last.ckpt"), 1);
    jv_model other = small_model("jmvae_kl", 0x99, tensors_a);
    blank_state(&s);
    assert_refused(jv_checkpoint_load(tpath("last.ckpt"), &other, &s.ck, &err), &err, tpath("last.ckpt"),
                   "checkpoint of model 'jmvae' (fingerprint 1234abcd5678ef00), not of 'jmvae_kl' "
                   "(fingerprint 0000000000000099)");
    cr_assert(state_is_blank(&s));

    jv_model renamed = small_model("jmvae2", 0x1234abcd5678ef00ull, tensors_a);
    assert_refused(jv_checkpoint_load(tpath("last.ckpt"), &renamed, &s.ck, &err), &err, tpath("last.ckpt"),
                   "checkpoint of model 'jmvae', not of 'jmvae2'");

    jv_model relaid = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_b);
    assert_refused(jv_checkpoint_load(tpath("last.ckpt"), &relaid, &s.ck, &err), &err, tpath("last.ckpt"),
                   "tensor 0 is 'enc.l1.weight' (2 x 3 at offset 0) in the checkpoint, but 'enc.l1.weight' "
                   "(3 x 2 at offset 0)");

    jv_model fewer = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    fewer.n_tensors = 1;
    assert_refused(jv_checkpoint_load(tpath("last.ckpt"), &fewer, &s.ck, &err), &err, tpath("last.ckpt"),
                   "the checkpoint has 2 parameter tensors, model 'jmvae' has 1");

    jv_model bigger = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    bigger.n_params = NP + 1;
    assert_refused(jv_checkpoint_load(tpath("last.ckpt"), &bigger, &s.ck, &err), &err, tpath("last.ckpt"),
                   "the checkpoint holds 9 parameters, model 'jmvae' has 10");
    cr_assert(state_is_blank(&s));
}

Test(checkpoint, save_into_missing_folder_fails_cleanly)
{
    jv_model model = small_model("jmvae", 1, tensors_a);
    state s;
    jv_error err;
    init_state(&s, 1);
    const char *path = tpath("missing/last.ckpt");
    assert_refused(jv_checkpoint_save(path, &model, &s.ck, &err), &err, path, "No such file");
    cr_assert_neq(access(tpath("missing"), F_OK), 0);
}

Test(checkpoint, failed_save_in_read_only_folder_keeps_previous)
{
    if (geteuid() == 0) {
        remove_tmpdir(); /* a skipped test does not run .fini */
        cr_skip_test("root ignores folder permissions");
    }
    cr_assert_eq(mkdir(tpath("ro"), 0700), 0);
    save_a(tpath("ro/last.ckpt"), 1);
    cr_assert_eq(chmod(tpath("ro"), 0500), 0);
    jv_model model = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    state s;
    jv_error err;
    init_state(&s, 7);
    assert_refused(jv_checkpoint_save(tpath("ro/last.ckpt"), &model, &s.ck, &err), &err,
                   tpath("ro/last.ckpt"), "cannot write");
    chmod(tpath("ro"), 0700);
    cr_assert_eq(load_a(tpath("ro/last.ckpt"), &s, &err), 0, "%s", err.msg);
    assert_state_equals(&s, 1);
}

/* A write that fails half-way (the file size limit stands in for a full
 * disk, and works for root too) leaves the previous checkpoint and no
 * temporary file behind. */
Test(checkpoint, failed_write_keeps_previous)
{
    save_a(tpath("last.ckpt"), 1);
    struct rlimit old, small;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 100;
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    jv_model model = small_model("jmvae", 0x1234abcd5678ef00ull, tensors_a);
    state s;
    jv_error err;
    init_state(&s, 7);
    int rc = jv_checkpoint_save(tpath("last.ckpt"), &model, &s.ck, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_refused(rc, &err, tpath("last.ckpt"), "cannot write: File too large");
    cr_assert_eq(count_temp_files(tmpdir), 0);
    cr_assert_eq(load_a(tpath("last.ckpt"), &s, &err), 0, "%s", err.msg);
    assert_state_equals(&s, 1);
}

/* ============================================================== files == */

TestSuite(files, .init = make_tmpdir, .fini = remove_tmpdir);

Test(files, atomic_write_replaces_the_file)
{
    jv_error err;
    size_t n;
    cr_assert_eq(jv_write_file_atomic(tpath("f.txt"), "first version", 13, &err), 0, "%s", err.msg);
    cr_assert_eq(jv_write_file_atomic(tpath("f.txt"), "second", 6, &err), 0, "%s", err.msg);
    unsigned char *data = read_bytes(tpath("f.txt"), &n);
    cr_assert(n == 6 && memcmp(data, "second", 6) == 0);
    free(data);
    cr_assert_eq(jv_write_file_atomic(tpath("empty"), NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(count_temp_files(tmpdir), 0);
}

Test(files, make_dir_creates_parents)
{
    jv_error err;
    struct stat st;
    cr_assert_eq(jv_make_dir(tpath("a/b/c"), &err), 0, "%s", err.msg);
    cr_assert(stat(tpath("a/b/c"), &st) == 0 && S_ISDIR(st.st_mode));
    cr_assert_eq(jv_make_dir(tpath("a/b/c"), &err), 0, "existing folder: %s", err.msg);
    cr_assert_eq(jv_make_dir(tpath("a/b/"), &err), 0, "trailing slash: %s", err.msg);
    write_text(tpath("file"), "x");
    assert_refused(jv_make_dir(tpath("file"), &err), &err, tpath("file"), "a file of that name exists");
    assert_refused(jv_make_dir(tpath("file/sub"), &err), &err, tpath("file/sub"), "cannot create folder");
}

/* ================================================================ team == */

typedef struct {
    int runs[8];
    int sizes[8];
} team_record;

static void record_member(void *arg, int id, int n)
{
    team_record *r = arg;
    r->runs[id]++;
    r->sizes[id] = n;
}

Test(team, every_member_runs_each_job_once)
{
    jv_error err;
    jv_team *t = jv_team_new(3, &err);
    cr_assert_not_null(t, "%s", err.msg);
    cr_assert_eq(jv_team_size(t), 3);
    team_record r = {{0}, {0}};
    for (int job = 0; job < 200; job++)
        jv_team_run(t, record_member, &r);
    for (int id = 0; id < 3; id++) {
        cr_assert_eq(r.runs[id], 200, "member %d ran %d jobs", id, r.runs[id]);
        cr_assert_eq(r.sizes[id], 3);
    }
    nanosleep(&(struct timespec){0, 5000000}, NULL); /* long enough for the workers to sleep: they must wake */
    jv_team_run(t, record_member, &r);
    cr_assert(r.runs[1] == 201 && r.runs[2] == 201);
    jv_team_free(t);
    team_record one = {{0}, {0}};
    jv_team_run(NULL, record_member, &one); /* no team: the caller alone */
    cr_assert(one.runs[0] == 1 && one.sizes[0] == 1);
}

Test(team, split_range_covers_every_element_once)
{
    for (size_t n = 0; n < 300; n += 7)
        for (int parts = 1; parts <= 5; parts++) {
            size_t next = 0;
            for (int id = 0; id < parts; id++) {
                size_t lo, hi;
                jv_split_range(n, 16, id, parts, &lo, &hi);
                cr_assert(lo == next && hi >= lo && (hi == n || hi % 16 == 0), "n %zu part %d: [%zu, %zu)", n, id, lo, hi);
                next = hi;
            }
            cr_assert_eq(next, n);
        }
}

/* ========================================================== BLAS kernel == */

Test(blas, a_generic_kernel_gives_way_to_what_the_cpu_runs)
{
    const jv_cpu_features none = {0}, avx = {1, 0, 0, 0}, avx2 = {1, 1, 1, 0}, avx512 = {1, 1, 1, 1};
    cr_assert_str_eq(jv_blas_better_kernel("Prescott", &avx512), "SkylakeX");
    cr_assert_str_eq(jv_blas_better_kernel("prescott", &avx512), "SkylakeX");
    cr_assert_str_eq(jv_blas_better_kernel("Nehalem", &avx2), "Haswell");
    cr_assert_str_eq(jv_blas_better_kernel("Core2", &avx), "Sandybridge");
    cr_assert_str_eq(jv_blas_better_kernel("Sandybridge", &avx2), "Haswell");
    cr_assert_str_eq(jv_blas_better_kernel("Sandybridge", &avx512), "SkylakeX");
    cr_assert_null(jv_blas_better_kernel("Prescott", &none));
    cr_assert_null(jv_blas_better_kernel("Sandybridge", &avx)); /* nothing better */
    /* a kernel with AVX2 already is the library's informed choice, AMD's Zen included */
    cr_assert_null(jv_blas_better_kernel("Haswell", &avx512));
    cr_assert_null(jv_blas_better_kernel("Zen", &avx512));
    cr_assert_null(jv_blas_better_kernel("SkylakeX", &avx512));
    cr_assert_null(jv_blas_better_kernel("SapphireRapids", &avx512));
    cr_assert_null(jv_blas_better_kernel("NoSuchKernel", &avx512));
    cr_assert_null(jv_blas_better_kernel(NULL, &avx512));
}

Test(blas, the_description_names_the_kernel)
{
    char *openblas_get_corename(void);
    cr_assert_not_null(strstr(jv_blas_describe(), openblas_get_corename()), "%s", jv_blas_describe());
}

int openblas_get_num_threads(void);

/* OpenBLAS's own threads: a count below 1 means 1. */
Test(files, set_threads_sets_openblas_and_clamps)
{
    jv_set_threads(2);
    cr_expect_eq(openblas_get_num_threads(), 2);
    jv_set_threads(0);
    cr_expect_eq(openblas_get_num_threads(), 1);
    jv_set_threads(-5);
    cr_expect_eq(openblas_get_num_threads(), 1);
    jv_set_threads(1);
    cr_expect_eq(openblas_get_num_threads(), 1);
}
