/* classifier.c: an image classifier independent of every model jmvaec
 * builds, for the examples' cross-modal coherence: images generated from a
 * label alone are classified, and the fraction given their conditioning
 * label is reported (as MultiVae, MoPoE and MMVAE do).
 *
 *   classifier train --images FILE --labels FILE --out MODEL [--epochs N] [--limit N] [--seed S]
 *   classifier test  --model MODEL --images FILE --labels FILE [--json FILE]
 *   classifier labels --labels FILE [--limit N]     (each example's class, one a line)
 *
 * The network: the image (any size, values in [0,1]) -> 512 ReLU -> 512
 * ReLU -> one logit per class, trained with Adam (learning rate 1e-3,
 * batch 100) on the softmax cross-entropy, weights Glorot-uniform from a
 * fixed seed. The data files are any the trainers read (IDX, gzip IDX,
 * NPY, CSV), through the jmvaec runtime's loaders; labels are class indices
 * or one-hot rows. `test` prints the accuracy with its standard error and
 * the accuracy of each class; --json writes the same numbers.
 *
 * The model file: "JVCLASS1", u32 inputs, hidden, classes, the float32
 * parameters, a u32 CRC-32 of every byte before it. `train` refuses to
 * replace a file that is not such a model.
 *
 * Build: cc -O2 $(jmvaec --cflags) classifier.c $(jmvaec --libs) -o classifier
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <zlib.h>

#include "jv_runtime.h"

#define MAGIC "JVCLASS1"
enum { HIDDEN = 512, BATCH = 100, MAX_CLASSES = 256 };

typedef struct {
    int in, hidden, classes;
    size_t n;  /* parameters */
    float *p;  /* W1 [in x hidden], b1, W2 [hidden x hidden], b2, W3 [hidden x classes], b3 */
    float *w1, *b1, *w2, *b2, *w3, *b3;
} net;

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "classifier: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

static void carve(net *m, float *p)
{
    m->p = p;
    m->w1 = p;
    m->b1 = m->w1 + (size_t)m->in * m->hidden;
    m->w2 = m->b1 + m->hidden;
    m->b2 = m->w2 + (size_t)m->hidden * m->hidden;
    m->w3 = m->b2 + m->hidden;
    m->b3 = m->w3 + (size_t)m->hidden * m->classes;
}

static int net_alloc(net *m, int in, int hidden, int classes)
{
    m->in = in, m->hidden = hidden, m->classes = classes;
    m->n = (size_t)in * hidden + hidden + (size_t)hidden * hidden + hidden + (size_t)hidden * classes + classes;
    float *p = calloc(m->n, sizeof *p);
    if (!p)
        return fail("out of memory%s%s", "", "");
    carve(m, p);
    return 0;
}

/* ------------------------------------------------------------- data -- */

typedef struct {
    jv_matrix x, y; /* images; one-hot labels */
} dataset;

/* The classifier learns and tests on complete examples only. */
static int refuse_missing(const char *path, const jv_matrix *m)
{
    if (!m->n_missing)
        return 0;
    return fail("%s: %s examples are missing (NaN rows or negative classes); the classifier needs every one",
                path, m->n_missing == m->n ? "all its" : "some of its");
}

static int load(const char *images, const char *labels, int classes, int limit, dataset *d)
{
    jv_error err;
    jv_modality_info img = {"image", 0, JV_BERNOULLI, 0, 0, 1}, lab = {"label", classes, JV_CATEGORICAL, 0, 0, 1};
    if (jv_load_matrix(images, &d->x, &err) != 0)
        return fail("%s%s", err.msg, "");
    img.size = (int)d->x.dim;
    jv_matrix_free(&d->x);
    if (jv_load_modality(images, &img, &d->x, &err) != 0 || jv_load_modality(labels, &lab, &d->y, &err) != 0)
        return fail("%s%s", err.msg, "");
    if (refuse_missing(images, &d->x) || refuse_missing(labels, &d->y))
        return 1;
    if (d->x.n != d->y.n) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%zu", d->x.n);
        snprintf(b, sizeof b, "%zu", d->y.n);
        return fail("the images hold %s examples, the labels %s", a, b);
    }
    if (limit > 0 && (size_t)limit < d->x.n)
        d->x.n = d->y.n = (size_t)limit;
    return 0;
}

static int label_of(const dataset *d, size_t i)
{
    const float *row = d->y.x + i * d->y.dim;
    int best = 0;
    for (size_t c = 1; c < d->y.dim; c++)
        best = row[c] > row[best] ? (int)c : best;
    return best;
}

/* The number of classes: the largest class in a label file, plus one (at least 2). */
static int count_classes(const char *labels, int *classes)
{
    jv_matrix y;
    jv_error err;
    jv_modality_info any = {"label", MAX_CLASSES, JV_CATEGORICAL, 0, 0, 1};
    if (jv_load_modality(labels, &any, &y, &err) != 0)
        return fail("%s%s", err.msg, "");
    int most = 1;
    for (size_t i = 0; i < y.n; i++)
        for (int c = most + 1; c < MAX_CLASSES; c++)
            most = y.x[i * MAX_CLASSES + (size_t)c] != 0 ? c : most;
    jv_matrix_free(&y);
    *classes = most + 1;
    return 0;
}

/* ---------------------------------------------------------- network -- */

/* h = relu(x W + b) for `rows` rows. */
static void layer(int rows, int in, int out, const float *x, const float *w, const float *b, float *h, int relu)
{
    for (int r = 0; r < rows; r++)
        memcpy(h + (size_t)r * out, b, (size_t)out * sizeof *h);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, out, in, 1.0f, x, in, w, out, 1.0f, h, out);
    if (relu)
        for (size_t i = 0; i < (size_t)rows * out; i++)
            h[i] = h[i] > 0 ? h[i] : 0;
}

typedef struct {
    float *h1, *h2, *logits, *g1, *g2, *g3;
} buffers;

static int buffers_alloc(const net *m, buffers *b)
{
    b->h1 = malloc((size_t)BATCH * m->hidden * sizeof(float));
    b->h2 = malloc((size_t)BATCH * m->hidden * sizeof(float));
    b->logits = malloc((size_t)BATCH * m->classes * sizeof(float));
    b->g1 = malloc((size_t)BATCH * m->hidden * sizeof(float));
    b->g2 = malloc((size_t)BATCH * m->hidden * sizeof(float));
    b->g3 = malloc((size_t)BATCH * m->classes * sizeof(float));
    return b->h1 && b->h2 && b->logits && b->g1 && b->g2 && b->g3 ? 0 : fail("out of memory%s%s", "", "");
}

static void buffers_free(buffers *b)
{
    free(b->h1), free(b->h2), free(b->logits), free(b->g1), free(b->g2), free(b->g3);
}

static void forward(const net *m, int rows, const float *x, buffers *b)
{
    layer(rows, m->in, m->hidden, x, m->w1, m->b1, b->h1, 1);
    layer(rows, m->hidden, m->hidden, b->h1, m->w2, m->b2, b->h2, 1);
    layer(rows, m->hidden, m->classes, b->h2, m->w3, m->b3, b->logits, 0);
}

/* The gradient of the mean cross-entropy of `rows` rows into g (a net's layout). */
static void backward(const net *m, net *g, int rows, const float *x, const float *y, buffers *b)
{
    int k = m->classes, h = m->hidden;
    for (int r = 0; r < rows; r++) { /* softmax - target */
        float *l = b->logits + (size_t)r * k, *d = b->g3 + (size_t)r * k, top = l[0], sum = 0;
        for (int c = 1; c < k; c++)
            top = l[c] > top ? l[c] : top;
        for (int c = 0; c < k; c++)
            sum += d[c] = expf(l[c] - top);
        for (int c = 0; c < k; c++)
            d[c] = (d[c] / sum - y[(size_t)r * k + c]) / (float)rows;
    }
    memset(g->p, 0, m->n * sizeof *g->p);
    /* W3, b3, then back through h2 */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, k, rows, 1.0f, b->h2, h, b->g3, k, 0.0f, g->w3, k);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, h, k, 1.0f, b->g3, k, m->w3, k, 0.0f, b->g2, h);
    for (size_t i = 0; i < (size_t)rows * h; i++)
        b->g2[i] = b->h2[i] > 0 ? b->g2[i] : 0;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, h, rows, 1.0f, b->h1, h, b->g2, h, 0.0f, g->w2, h);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, h, h, 1.0f, b->g2, h, m->w2, h, 0.0f, b->g1, h);
    for (size_t i = 0; i < (size_t)rows * h; i++)
        b->g1[i] = b->h1[i] > 0 ? b->g1[i] : 0;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m->in, h, rows, 1.0f, x, m->in, b->g1, h, 0.0f, g->w1, h);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < k; c++)
            g->b3[c] += b->g3[(size_t)r * k + c];
        for (int j = 0; j < h; j++) {
            g->b2[j] += b->g2[(size_t)r * h + j];
            g->b1[j] += b->g1[(size_t)r * h + j];
        }
    }
}

static void glorot(float *w, int fan_in, int fan_out, jv_rng *rng)
{
    size_t n = (size_t)fan_in * fan_out;
    float limit = sqrtf(6.0f / (float)(fan_in + fan_out));
    jv_rng_fill_uniform(rng, w, n);
    for (size_t i = 0; i < n; i++)
        w[i] = (2 * w[i] - 1) * limit;
}

/* ------------------------------------------------------------ files -- */

static int save(const net *m, const char *path)
{
    FILE *old = fopen(path, "rb");
    if (old) { /* replace only a classifier */
        char magic[8] = {0};
        size_t got = fread(magic, 1, 8, old);
        fclose(old);
        if (got != 8 || memcmp(magic, MAGIC, 8) != 0)
            return fail("%s exists and is not a classifier model: not replaced%s", path, "");
    }
    size_t size = 8 + 12 + 4 * m->n + 4;
    unsigned char *buf = malloc(size);
    if (!buf)
        return fail("out of memory%s%s", "", "");
    uint32_t head[3] = {(uint32_t)m->in, (uint32_t)m->hidden, (uint32_t)m->classes};
    memcpy(buf, MAGIC, 8);
    memcpy(buf + 8, head, 12); /* little-endian machines, as the runtime */
    memcpy(buf + 20, m->p, 4 * m->n);
    uint32_t crc = (uint32_t)crc32(0L, buf, (uInt)(size - 4));
    memcpy(buf + size - 4, &crc, 4);
    jv_error err;
    int rc = jv_write_file_atomic(path, buf, size, &err);
    free(buf);
    return rc == 0 ? 0 : fail("%s%s", err.msg, "");
}

static int load_net(const char *path, net *m)
{
    FILE *in = fopen(path, "rb");
    if (!in)
        return fail("%s: cannot open the model%s", path, "");
    uint32_t head[3];
    char magic[8];
    if (fread(magic, 1, 8, in) != 8 || memcmp(magic, MAGIC, 8) != 0 || fread(head, 4, 3, in) != 3) {
        fclose(in);
        return fail("%s: not a classifier model%s", path, "");
    }
    if (head[0] < 1 || head[0] > 1u << 20 || head[1] != HIDDEN || head[2] < 2 || head[2] > MAX_CLASSES) {
        fclose(in);
        return fail("%s: not a classifier model (bad sizes)%s", path, "");
    }
    if (net_alloc(m, (int)head[0], (int)head[1], (int)head[2]) != 0) {
        fclose(in);
        return 1;
    }
    uint32_t crc_read, crc = (uint32_t)crc32(0L, (const unsigned char *)magic, 8);
    crc = (uint32_t)crc32(crc, (const unsigned char *)head, 12);
    int ok = fread(m->p, 4, m->n, in) == m->n && fread(&crc_read, 4, 1, in) == 1 && fgetc(in) == EOF;
    fclose(in);
    if (!ok)
        return fail("%s: truncated or too long%s", path, "");
    crc = (uint32_t)crc32(crc, (const unsigned char *)m->p, (uInt)(4 * m->n));
    return crc == crc_read ? 0 : fail("%s: damaged (bad CRC)%s", path, "");
}

/* ---------------------------------------------------------- options -- */

typedef struct {
    const char *images, *labels, *out, *model, *json;
    int epochs, limit;
    uint64_t seed;
} options;

static int parse(int argc, char **argv, options *o)
{
    *o = (options){.epochs = 10, .seed = 1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **text = !strcmp(a, "--images") ? &o->images
                            : !strcmp(a, "--labels") ? &o->labels
                            : !strcmp(a, "--out")    ? &o->out
                            : !strcmp(a, "--model")  ? &o->model
                            : !strcmp(a, "--json")   ? &o->json
                                                     : NULL;
        int *number = !strcmp(a, "--epochs") ? &o->epochs : !strcmp(a, "--limit") ? &o->limit : NULL;
        if (!text && !number && strcmp(a, "--seed") != 0)
            return fail("unknown option '%s'%s", a, "");
        if (!v)
            return fail("%s needs a value%s", a, "");
        char *end;
        if (text) {
            *text = v;
        } else {
            long long x = strtoll(v, &end, 10);
            if (!*v || *end || x < 0 || x > (number ? 1000000000LL : (long long)INT64_MAX))
                return fail("%s: '%s' is not a number in range", a, v);
            if (number)
                *number = (int)x;
            else
                o->seed = (uint64_t)x;
        }
        i++;
    }
    return 0;
}

/* ------------------------------------------------------------ train -- */

static int train(const options *o)
{
    if (!o->images || !o->labels || !o->out)
        return fail("train needs --images, --labels and --out%s%s", "", "");
    int classes = 0, rc = count_classes(o->labels, &classes);
    dataset d = {0};
    net m = {0}, g = {0}, mo = {0}, vo = {0};
    buffers b = {0};
    float *x = NULL, *y = NULL;
    size_t *order = NULL;
    if (rc == 0)
        rc = load(o->images, o->labels, classes, o->limit, &d);
    if (rc == 0)
        rc = net_alloc(&m, (int)d.x.dim, HIDDEN, classes) || net_alloc(&g, m.in, HIDDEN, classes) ||
             net_alloc(&mo, m.in, HIDDEN, classes) || net_alloc(&vo, m.in, HIDDEN, classes) || buffers_alloc(&m, &b);
    if (rc == 0) {
        x = malloc((size_t)BATCH * m.in * sizeof *x);
        y = malloc((size_t)BATCH * classes * sizeof *y);
        order = malloc(d.x.n * sizeof *order);
        rc = x && y && order ? 0 : fail("out of memory%s%s", "", "");
    }
    if (rc == 0) {
        jv_rng rng = {o->seed, 1, 0};
        glorot(m.w1, m.in, HIDDEN, &rng);
        glorot(m.w2, HIDDEN, HIDDEN, &rng);
        glorot(m.w3, HIDDEN, classes, &rng);
        const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        long step = 0;
        for (int e = 1; e <= o->epochs; e++) {
            for (size_t i = 0; i < d.x.n; i++)
                order[i] = i;
            jv_rng shuffle = {o->seed, 2, (uint64_t)e << 32};
            jv_rng_shuffle(&shuffle, order, d.x.n);
            double loss = 0;
            size_t right = 0;
            for (size_t first = 0; first < d.x.n; first += BATCH) {
                int rows = d.x.n - first < BATCH ? (int)(d.x.n - first) : BATCH;
                for (int r = 0; r < rows; r++) {
                    memcpy(x + (size_t)r * m.in, d.x.x + order[first + r] * d.x.dim, (size_t)m.in * sizeof *x);
                    memcpy(y + (size_t)r * classes, d.y.x + order[first + r] * d.y.dim, (size_t)classes * sizeof *y);
                }
                forward(&m, rows, x, &b);
                for (int r = 0; r < rows; r++) {
                    const float *l = b.logits + (size_t)r * classes;
                    int best = 0, truth = label_of(&d, order[first + r]);
                    double top = l[0], sum = 0;
                    for (int c = 1; c < classes; c++)
                        best = l[c] > l[best] ? c : best, top = l[c] > top ? l[c] : top;
                    for (int c = 0; c < classes; c++)
                        sum += exp(l[c] - top);
                    loss += top + log(sum) - l[truth];
                    right += best == truth;
                }
                backward(&m, &g, rows, x, y, &b);
                step++;
                float c1 = 1 - powf(b1, (float)step), c2 = 1 - powf(b2, (float)step);
                for (size_t i = 0; i < m.n; i++) {
                    mo.p[i] = b1 * mo.p[i] + (1 - b1) * g.p[i];
                    vo.p[i] = b2 * vo.p[i] + (1 - b2) * g.p[i] * g.p[i];
                    m.p[i] -= lr * (mo.p[i] / c1) / (sqrtf(vo.p[i] / c2) + eps);
                }
            }
            printf("classifier: epoch %d/%d  loss %.4f  training accuracy %.4f\n", e, o->epochs,
                   loss / (double)d.x.n, (double)right / (double)d.x.n);
            fflush(stdout);
        }
        rc = save(&m, o->out);
        if (rc == 0)
            printf("classifier: wrote %s (%d inputs, %d classes, %zu examples, %d epochs)\n", o->out, m.in, classes,
                   d.x.n, o->epochs);
    }
    free(x), free(y), free(order), free(m.p), free(g.p), free(mo.p), free(vo.p);
    buffers_free(&b);
    jv_matrix_free(&d.x), jv_matrix_free(&d.y);
    return rc;
}

/* ------------------------------------------------------------- test -- */

static int test(const options *o)
{
    if (!o->model || !o->images || !o->labels)
        return fail("test needs --model, --images and --labels%s%s", "", "");
    net m = {0};
    dataset d = {0};
    buffers b = {0};
    int rc = load_net(o->model, &m);
    if (rc == 0)
        rc = load(o->images, o->labels, m.classes, o->limit, &d);
    if (rc == 0 && (int)d.x.dim != m.in) {
        char a[32], c[32];
        snprintf(a, sizeof a, "%zu", d.x.dim);
        snprintf(c, sizeof c, "%d", m.in);
        rc = fail("the images have %s values, the model takes %s", a, c);
    }
    if (rc == 0)
        rc = buffers_alloc(&m, &b);
    size_t right = 0, seen[MAX_CLASSES] = {0}, hits[MAX_CLASSES] = {0};
    for (size_t first = 0; rc == 0 && first < d.x.n; first += BATCH) {
        int rows = d.x.n - first < BATCH ? (int)(d.x.n - first) : BATCH;
        forward(&m, rows, d.x.x + first * d.x.dim, &b);
        for (int r = 0; r < rows; r++) {
            const float *l = b.logits + (size_t)r * m.classes;
            int best = 0, truth = label_of(&d, first + (size_t)r);
            for (int c = 1; c < m.classes; c++)
                best = l[c] > l[best] ? c : best;
            seen[truth]++;
            hits[truth] += best == truth;
            right += best == truth;
        }
    }
    if (rc == 0 && d.x.n == 0)
        rc = fail("%s holds no examples%s", o->images, "");
    if (rc == 0) {
        double n = (double)d.x.n, acc = (double)right / n, se = sqrt(acc * (1 - acc) / n);
        printf("accuracy %.4f (s.e. %.4f) on %zu examples\nper class:", acc, se, d.x.n);
        for (int c = 0; c < m.classes; c++)
            if (seen[c])
                printf(" %d:%.3f", c, (double)hits[c] / (double)seen[c]);
        printf("\n");
        if (o->json) {
            size_t cap = 256 + 40 * (size_t)m.classes;
            char *text = malloc(cap);
            if (!text)
                return fail("out of memory%s%s", "", "");
            int len = snprintf(text, cap, "{\n  \"examples\": %zu,\n  \"accuracy\": {\"mean\": %.10g, \"se\": %.10g},\n"
                               "  \"per_class\": [", d.x.n, acc, se);
            for (int c = 0; c < m.classes; c++) {
                if (seen[c])
                    len += snprintf(text + len, cap - (size_t)len, "%s%.10g", c ? ", " : "",
                                    (double)hits[c] / (double)seen[c]);
                else
                    len += snprintf(text + len, cap - (size_t)len, "%snull", c ? ", " : "");
            }
            len += snprintf(text + len, cap - (size_t)len, "]\n}\n");
            jv_error err;
            rc = jv_write_file_atomic(o->json, text, (size_t)len, &err) == 0 ? 0 : fail("%s%s", err.msg, "");
            free(text);
        }
    }
    free(m.p);
    buffers_free(&b);
    jv_matrix_free(&d.x), jv_matrix_free(&d.y);
    return rc;
}

/* ----------------------------------------------------------- labels -- */

static int labels(const options *o)
{
    if (!o->labels)
        return fail("labels needs --labels%s%s", "", "");
    int classes = 0;
    dataset d = {0};
    jv_modality_info lab = {"label", 0, JV_CATEGORICAL, 0, 0, 1};
    jv_error err;
    if (count_classes(o->labels, &classes) != 0)
        return 1;
    lab.size = classes;
    if (jv_load_modality(o->labels, &lab, &d.y, &err) != 0)
        return fail("%s%s", err.msg, "");
    if (refuse_missing(o->labels, &d.y)) {
        jv_matrix_free(&d.y);
        return 1;
    }
    size_t n = o->limit > 0 && (size_t)o->limit < d.y.n ? (size_t)o->limit : d.y.n;
    for (size_t i = 0; i < n; i++)
        printf("%d\n", label_of(&d, i));
    jv_matrix_free(&d.y);
    return fflush(stdout) == 0 ? 0 : fail("cannot write the labels%s%s", "", "");
}

int main(int argc, char **argv)
{
    options o;
    if (argc < 2 || (strcmp(argv[1], "train") && strcmp(argv[1], "test") && strcmp(argv[1], "labels"))) {
        fprintf(stderr, "usage: classifier train --images FILE --labels FILE --out MODEL [--epochs N] [--limit N] "
                        "[--seed S]\n       classifier test --model MODEL --images FILE --labels FILE [--json FILE]\n"
                        "       classifier labels --labels FILE [--limit N]\n");
        return 2;
    }
    if (parse(argc, argv, &o) != 0)
        return 2;
    jv_set_threads(jv_cpu_count());
    if (strcmp(argv[1], "labels") == 0)
        return labels(&o);
    return strcmp(argv[1], "train") == 0 ? train(&o) : test(&o);
}
