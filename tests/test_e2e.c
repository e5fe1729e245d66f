/* test_e2e.c: the generated JMVAE-kl trainer (generated/jmvae_kl/jmvae_kl,
 * built by make before the tests) on slices of the real Fashion-MNIST files:
 * training lowers the loss, runs are deterministic and resume bit for bit,
 * eval reports every quantity and its bound holds, sample and encode write
 * PNGs that decode to the expected sizes, every kind of bad data file or
 * checkpoint is refused with one line naming the problem and nothing
 * written, and a train run stays within the memory its plan promises.
 *
 * Each test works in a fresh folder /tmp/jmvaec-test-e2e-*: the slices and
 * every output go to ROOT/work, which is the current folder of each run;
 * ROOT/out and ROOT/err catch what a run prints. One thread, fixed seeds.
 */
#define _DEFAULT_SOURCE /* wait4 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "shell_util.h"
#include "report_util.h"
#include "jv_runtime.h"

#define TRAINER "generated/jmvae_kl/jmvae_kl"
#define OTHER_TRAINER "generated/jmvae/jmvae" /* another spec */
#define IMAGE_SIZE 784
#define CLASSES 10

/* ------------------------------------------------------------ folders -- */

typedef struct {
    char *root;
    char work[300], repo[1024];
} scratch;

static void make_scratch(scratch *s)
{
    s->root = temp_folder("e2e");
    cr_assert_not_null(s->root);
    snprintf(s->work, sizeof s->work, "%s/work", s->root);
    cr_assert_eq(mkdir(s->work, 0777), 0);
    cr_assert_not_null(getcwd(s->repo, sizeof s->repo));
}

static void drop_scratch(scratch *s)
{
    remove_folder(s->root);
    free(s->root);
}

static void work_path(const scratch *s, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", s->work, name);
}

/* A whole file (NULL if missing), NUL-terminated; *size gets its length. */
static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    if (size)
        *size = (size_t)n;
    return buf;
}

static unsigned char *work_file(const scratch *s, const char *name, size_t *size)
{
    char path[1024];
    work_path(s, name, path, sizeof path);
    return slurp(path, size);
}

static void write_work_file(const scratch *s, const char *name, const void *data, size_t size)
{
    char path[1024];
    work_path(s, name, path, sizeof path);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, size, f), size);
    cr_assert_eq(fclose(f), 0);
}

static void same_files(const scratch *s, const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = work_file(s, a, &na), *y = work_file(s, b, &nb);
    cr_assert(x && y, "%s or %s missing", a, b);
    cr_assert(na == nb && memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* Every file under the work folder with its size and modification time. */
static char *listing(const scratch *s)
{
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -printf '%%p %%s %%T@\\n' | sort", s->work);
    cr_assert_eq(run_command(cmd, &out), 0);
    return out;
}

/* ---------------------------------------------------------------- runs -- */

typedef struct {
    int code;
    char *out, *err;
} run_result;

static void free_result(run_result *r)
{
    free(r->out);
    free(r->err);
    *r = (run_result){0};
}

/* Runs the program (a path from the repository's root) in the work folder
 * with the given arguments; stdout and stderr are kept apart. */
static void run_env(const scratch *s, run_result *r, const char *env, const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void run_env(const scratch *s, run_result *r, const char *env, const char *prog, const char *fmt, ...)
{
    char args[2048], cmd[4096], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s/%s' %s >'%s/out' 2>'%s/err'", s->work, env, s->repo, prog, args,
             s->root, s->root);
    r->code = run_command(cmd, NULL);
    snprintf(path, sizeof path, "%s/out", s->root);
    r->out = (char *)slurp(path, NULL);
    snprintf(path, sizeof path, "%s/err", s->root);
    r->err = (char *)slurp(path, NULL);
    cr_assert(r->out && r->err);
}

#define run_in(s, r, prog, ...) run_env(s, r, "", prog, __VA_ARGS__)

/* Runs the trainer and requires success. */
static void ok(const scratch *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(const scratch *s, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    run_result r;
    run_in(s, &r, TRAINER, "%s", args);
    cr_assert_eq(r.code, 0, "'%s' exited %d: %s", args, r.code, r.err);
    free_result(&r);
}

/* The program must exit 1 with one line "<name>: ..." holding `needle` on
 * stderr, and leave every file of the work folder as it was. */
static void refused(const scratch *s, const char *prog, const char *args, const char *needle)
{
    const char *name = strrchr(prog, '/') + 1;
    char *before = listing(s);
    run_result r;
    run_in(s, &r, prog, "%s", args);
    char *after = listing(s);
    size_t len = strlen(r.err), nlen = strlen(name);
    cr_expect_eq(r.code, 1, "'%s' exited %d", args, r.code);
    cr_expect(strncmp(r.err, name, nlen) == 0 && strncmp(r.err + nlen, ": ", 2) == 0, "'%s' stderr: %s", args,
              r.err);
    cr_expect(len > 0 && strchr(r.err, '\n') == r.err + len - 1, "'%s' printed other than one line: %s", args,
              r.err);
    cr_expect_not_null(strstr(r.err, needle), "'%s': expected '%s' in: %s", args, needle, r.err);
    cr_expect_str_eq(before, after, "'%s' changed the work folder", args);
    free(before);
    free(after);
    free_result(&r);
}

/* ---------------------------------------------------------------- data -- */

static const char *fmnist_dir(void)
{
    const char *d = getenv("FASHION_MNIST");
    return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

/* The first n examples of a Fashion-MNIST set ("train" or "t10k"): pixels
 * (n x 784 bytes) and labels (n bytes). */
typedef struct {
    int n;
    unsigned char *pixels, *labels;
} slice;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void read_idx_prefix(const char *file, uint32_t magic, size_t header, unsigned char *out, size_t bytes)
{
    char path[1024];
    unsigned char head[16];
    snprintf(path, sizeof path, "%s/%s", fmnist_dir(), file);
    gzFile gz = gzopen(path, "rb");
    cr_assert_not_null(gz, "cannot open %s (Debian package dataset-fashion-mnist; make deps installs it)", path);
    cr_assert_eq(gzread(gz, head, (unsigned)header), (int)header);
    cr_assert_eq(be32(head), magic, "%s: not an IDX file of the expected type", path);
    cr_assert_eq(gzread(gz, out, (unsigned)bytes), (int)bytes, "%s: too short", path);
    gzclose(gz);
}

static slice read_slice(const char *set, int n)
{
    slice sl = {n, malloc((size_t)n * IMAGE_SIZE), malloc((size_t)n)};
    char file[64];
    snprintf(file, sizeof file, "%s-images-idx3-ubyte.gz", set);
    read_idx_prefix(file, 0x803, 16, sl.pixels, (size_t)n * IMAGE_SIZE);
    snprintf(file, sizeof file, "%s-labels-idx1-ubyte.gz", set);
    read_idx_prefix(file, 0x801, 8, sl.labels, (size_t)n);
    return sl;
}

static void free_slice(slice *sl)
{
    free(sl->pixels);
    free(sl->labels);
}

static void put_be32(unsigned char *p, uint32_t x)
{
    p[0] = (unsigned char)(x >> 24);
    p[1] = (unsigned char)(x >> 16);
    p[2] = (unsigned char)(x >> 8);
    p[3] = (unsigned char)x;
}

/* An IDX file of uint8 with the given dimensions (the first is the count);
 * gzip-compressed when the name ends in .gz. */
static void write_idx(const scratch *s, const char *name, const unsigned char *data, int ndim, const uint32_t *dims)
{
    unsigned char head[4 + 4 * 3] = {0, 0, 0x08, (unsigned char)ndim};
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        put_be32(head + 4 + 4 * i, dims[i]);
        count *= dims[i];
    }
    size_t hlen = 4 + 4 * (size_t)ndim;
    char path[1024];
    work_path(s, name, path, sizeof path);
    size_t len = strlen(name);
    if (len > 3 && strcmp(name + len - 3, ".gz") == 0) {
        gzFile gz = gzopen(path, "wb");
        cr_assert_not_null(gz);
        cr_assert_eq(gzwrite(gz, head, (unsigned)hlen), (int)hlen);
        cr_assert_eq(gzwrite(gz, data, (unsigned)count), (int)count);
        cr_assert_eq(gzclose(gz), Z_OK);
        return;
    }
    unsigned char *all = malloc(hlen + count);
    memcpy(all, head, hlen);
    memcpy(all + hlen, data, count);
    write_work_file(s, name, all, hlen + count);
    free(all);
}

static void write_images(const scratch *s, const char *name, const slice *sl, int n)
{
    uint32_t dims[3] = {(uint32_t)n, 28, 28};
    write_idx(s, name, sl->pixels, 3, dims);
}

static void write_labels(const scratch *s, const char *name, const slice *sl, int n)
{
    uint32_t dims[1] = {(uint32_t)n};
    write_idx(s, name, sl->labels, 1, dims);
}

/* The slices most tests use: N_TRAIN training examples as x.idx.gz (gzip,
 * like the real files) and w.idx (plain), N_TEST test examples as
 * tx.idx / tw.idx. */
#define N_TRAIN 500
#define N_TEST 100
#define DATA "--data x=x.idx.gz --data w=w.idx"
#define TEST_DATA "--data x=tx.idx --data w=tw.idx"
#define TRAIN "train " DATA " --threads 1 --seed 7 --batch 50"

static void setup(scratch *s)
{
    make_scratch(s);
    slice tr = read_slice("train", N_TRAIN), te = read_slice("t10k", N_TEST);
    write_images(s, "x.idx.gz", &tr, N_TRAIN);
    write_labels(s, "w.idx", &tr, N_TRAIN);
    write_images(s, "tx.idx", &te, N_TEST);
    write_labels(s, "tw.idx", &te, N_TEST);
    free_slice(&tr);
    free_slice(&te);
}

/* ------------------------------------------------------------- parsing -- */

/* ----------------------------------------------------------------- PNG -- */

typedef struct {
    unsigned width, height, channels;
    unsigned char *px; /* height x width x channels */
} png_image;

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Decodes an 8-bit grey or RGB, non-interlaced PNG completely: signature,
 * every chunk's CRC, IHDR, the inflated IDAT data and its row filters. */
static png_image decode_png(const scratch *s, const char *name)
{
    size_t n;
    unsigned char *f = work_file(s, name, &n);
    cr_assert_not_null(f, "%s missing", name);
    cr_assert(n >= 8 && memcmp(f, "\x89PNG\r\n\x1a\n", 8) == 0, "%s: no PNG signature", name);
    png_image im = {0};
    unsigned char *idat = NULL;
    size_t idat_len = 0, pos = 8;
    int ended = 0;
    while (!ended) {
        cr_assert_leq(pos + 12, n, "%s: truncated chunk", name);
        size_t len = be32(f + pos);
        cr_assert_leq(pos + 12 + len, n, "%s: truncated chunk", name);
        const unsigned char *type = f + pos + 4, *data = f + pos + 8;
        cr_assert_eq((uint32_t)crc32(0, type, (uInt)(len + 4)), be32(data + len), "%s: bad CRC in %.4s", name,
                     (const char *)type);
        if (memcmp(type, "IHDR", 4) == 0) {
            cr_assert_eq(len, 13);
            im.width = be32(data);
            im.height = be32(data + 4);
            cr_assert_eq(data[8], 8, "%s: bit depth %d", name, data[8]);
            cr_assert(data[9] == 0 || data[9] == 2, "%s: colour type %d", name, data[9]);
            cr_assert_eq(data[12], 0, "%s: interlaced", name);
            im.channels = data[9] == 0 ? 1 : 3;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            idat = realloc(idat, idat_len + len);
            memcpy(idat + idat_len, data, len);
            idat_len += len;
        } else if (memcmp(type, "IEND", 4) == 0) {
            ended = 1;
        }
        pos += 12 + len;
    }
    cr_assert_eq(pos, n, "%s: bytes after IEND", name);
    cr_assert(im.width > 0 && im.height > 0 && idat, "%s: no IHDR or IDAT", name);
    size_t stride = (size_t)im.width * im.channels;
    uLongf raw_len = (uLongf)((stride + 1) * im.height);
    unsigned char *raw = malloc(raw_len);
    uLongf got = raw_len;
    cr_assert_eq(uncompress(raw, &got, idat, (uLong)idat_len), Z_OK, "%s: IDAT does not inflate", name);
    cr_assert_eq(got, raw_len, "%s: IDAT holds %lu bytes, %lu expected", name, (unsigned long)got,
                 (unsigned long)raw_len);
    im.px = malloc(stride * im.height);
    for (size_t y = 0; y < im.height; y++) {
        int filter = raw[y * (stride + 1)];
        const unsigned char *in = raw + y * (stride + 1) + 1;
        unsigned char *row = im.px + y * stride, *up = y ? row - stride : NULL;
        cr_assert_leq(filter, 4, "%s: filter %d", name, filter);
        for (size_t x = 0; x < stride; x++) {
            int a = x >= im.channels ? row[x - im.channels] : 0, b = up ? up[x] : 0;
            int c = up && x >= im.channels ? up[x - im.channels] : 0;
            int pred = filter == 1 ? a : filter == 2 ? b : filter == 3 ? (a + b) / 2 : filter == 4 ? paeth(a, b, c) : 0;
            row[x] = (unsigned char)(in[x] + pred);
        }
    }
    free(raw);
    free(idat);
    free(f);
    return im;
}

/* Decodes the PNG and checks its size, and that it shows something: grey
 * levels that vary (a grid of images), or coloured dots (a scatter). */
static void expect_png(const scratch *s, const char *name, unsigned width, unsigned height, unsigned channels)
{
    png_image im = decode_png(s, name);
    cr_expect(im.width == width && im.height == height && im.channels == channels,
              "%s is %ux%u with %u channels, expected %ux%u with %u", name, im.width, im.height, im.channels,
              width, height, channels);
    size_t pixels = (size_t)im.width * im.height;
    if (im.channels == 1) {
        double sum = 0, sum2 = 0;
        for (size_t i = 0; i < pixels; i++) {
            sum += im.px[i];
            sum2 += (double)im.px[i] * im.px[i];
        }
        double sd = sqrt(sum2 / (double)pixels - (sum / (double)pixels) * (sum / (double)pixels));
        cr_expect_gt(sd, 10, "%s looks blank (grey-level s.d. %.2f)", name, sd);
    } else {
        size_t coloured = 0;
        for (size_t i = 0; i < pixels; i++) {
            const unsigned char *p = im.px + 3 * i;
            coloured += p[0] != p[1] || p[1] != p[2];
        }
        cr_expect_gt(coloured, 100, "%s has %zu coloured pixels", name, coloured);
    }
    free(im.px);
}

/* -------------------------------------------------------------- train -- */

TestSuite(e2e, .timeout = 240);

Test(e2e, training_lowers_the_loss)
{
    scratch s;
    setup(&s);
    ok(&s, TRAIN " --epochs 3 --valid 100 --out run");
    char *csv = (char *)work_file(&s, "run/train.csv", NULL);
    cr_assert_not_null(csv);
    cr_assert_eq(count_lines(csv), 4, "%s", csv);
    cr_assert_eq(csv_value(csv, 3, "step"), 3 * 8); /* 400 training examples in batches of 50 */
    double first = csv_value(csv, 1, "train_loss"), last = csv_value(csv, 3, "train_loss");
    double vfirst = csv_value(csv, 1, "valid_loss"), vlast = csv_value(csv, 3, "valid_loss");
    cr_assert_lt(last, 0.9 * first, "train loss %g -> %g", first, last);
    cr_assert_lt(vlast, vfirst, "validation loss %g -> %g", vfirst, vlast);
    cr_assert_gt(csv_value(csv, 3, "train_rec_x"), 0);
    cr_log_info("train loss %.2f -> %.2f, validation %.2f -> %.2f over 3 epochs", first, last, vfirst, vlast);
    free(csv);
    drop_scratch(&s);
}

/* The step runs as tasks on the threads: every order gives the same bits. */
Test(e2e, runs_are_deterministic_at_any_thread_count)
{
    scratch s;
    setup(&s);
    ok(&s, TRAIN " --epochs 2 --valid 50 --out a");
    ok(&s, TRAIN " --epochs 2 --valid 50 --out b --threads 2");
    same_files(&s, "a/last.ckpt", "b/last.ckpt");
    ok(&s, TRAIN " --epochs 2 --valid 50 --out t3 --threads 3");
    same_files(&s, "a/last.ckpt", "t3/last.ckpt");
    ok(&s, TRAIN " --epochs 2 --valid 50 --out c --seed 8");
    size_t na, nc;
    unsigned char *a = work_file(&s, "a/last.ckpt", &na), *c = work_file(&s, "c/last.ckpt", &nc);
    cr_assert(na == nc && memcmp(a, c, na) != 0, "another seed gave the same checkpoint");
    free(a);
    free(c);
    drop_scratch(&s);
}

Test(e2e, resuming_reproduces_an_uninterrupted_run)
{
    scratch s;
    setup(&s);
    ok(&s, TRAIN " --epochs 2 --valid 50 --out full");
    ok(&s, TRAIN " --epochs 1 --valid 50 --out part");
    ok(&s, "train " DATA " --threads 2 --batch 50 --epochs 2 --valid 50 --resume part/last.ckpt");
    same_files(&s, "full/last.ckpt", "part/last.ckpt");
    char *full = (char *)work_file(&s, "full/train.csv", NULL), *part = (char *)work_file(&s, "part/train.csv", NULL);
    cr_assert_eq(count_lines(part), 3, "%s", part);
    const char *cols[] = {"step", "train_loss", "train_kl_w", "valid_loss", "valid_rec_w"};
    for (int row = 1; row <= 2; row++)
        for (int i = 0; i < 5; i++)
            cr_assert_eq(csv_value(full, row, cols[i]), csv_value(part, row, cols[i]), "row %d %s", row, cols[i]);
    free(full);
    free(part);
    drop_scratch(&s);
}

/* ---------------------------------------------------- kill and resume -- */

/* Starts the trainer in the work folder in the background; its pid. */
static pid_t start_in(const scratch *s, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && exec '%s/%s' %s >>'%s/bg.out' 2>&1", s->work, s->repo, TRAINER, args,
             s->root);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* kill -9 at moments drawn from a fixed generator, resume, again, until a
 * run finishes: the last checkpoint and the log are those of a run never
 * interrupted. Checkpoints come every few milliseconds (--ckpt-minutes),
 * so kills land before, during and after writes of last.ckpt, within
 * epochs and at their ends. */
Test(e2e, kill_9_at_any_moment_then_resume_gives_the_uninterrupted_run, .timeout = 600)
{
    scratch s;
    setup(&s);
#define KILL_ARGS DATA " --threads 2 --seed 7 --batch 20 --epochs 4 --valid 40 --ckpt-minutes 0.001"
    ok(&s, "train " KILL_ARGS " --out full");
    uint64_t state = 0x2545F4914F6CDD1Dull;
    int kills = 0, finished = 0, starts = 0;
    for (; starts < 40 && !finished; starts++) {
        char last[600];
        work_path(&s, "run/last.ckpt", last, sizeof last);
        struct stat st;
        int resume = stat(last, &st) == 0;
        pid_t pid = start_in(&s, resume ? "train " KILL_ARGS " --resume run/last.ckpt" : "train " KILL_ARGS " --out run");
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        /* up to 0.3 s at first, longer each time, so that a run finishes in the end */
        long wait_ms = 10 + (long)(state % (uint64_t)(300 + 100 * starts));
        int status = 0;
        pid_t done = 0;
        for (long waited = 0; waited < wait_ms && done == 0; waited += 2) {
            nanosleep(&(struct timespec){0, 2000000}, NULL);
            done = waitpid(pid, &status, WNOHANG);
        }
        if (done == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            kills++;
            continue;
        }
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a run exited with %d; its output:\n%s",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1, work_file(&s, "../bg.out", NULL));
        finished = 1;
    }
    cr_assert(finished, "no run finished in %d starts", starts);
    cr_log_info("kill -9: %d kills in %d starts", kills, starts);
    cr_expect_geq(kills, 1, "no run was killed: the kills came too late");
    same_files(&s, "full/last.ckpt", "run/last.ckpt");
    char *full = (char *)work_file(&s, "full/train.csv", NULL), *run = (char *)work_file(&s, "run/train.csv", NULL);
    cr_assert_eq(count_lines(run), count_lines(full), "%s", run);
    const char *cols[] = {"step", "train_loss", "train_rec_x", "train_kl_w", "valid_loss", "valid_rec_w"};
    for (int row = 1; row <= 4; row++)
        for (int i = 0; i < 6; i++)
            cr_assert_eq(csv_value(full, row, cols[i]), csv_value(run, row, cols[i]), "row %d %s", row, cols[i]);
    char *files = listing(&s);
    cr_expect_null(strstr(files, ".tmp."), "temporary files left behind:\n%s", files);
    free(files);
    free(full);
    free(run);
    drop_scratch(&s);
}

/* SIGINT or SIGTERM: the step finishes, last.ckpt is written, the program
 * says how to continue and exits with 128 + the signal. */
Test(e2e, sigterm_writes_a_checkpoint_and_says_how_to_continue, .timeout = 300)
{
    scratch s;
    setup(&s);
#define TERM_ARGS DATA " --threads 1 --seed 7 --batch 5 --epochs 8" /* seconds: still running at 0.4 s */
    ok(&s, "train " TERM_ARGS " --out full");
    pid_t pid = start_in(&s, "train " TERM_ARGS " --out run");
    nanosleep(&(struct timespec){0, 400000000}, NULL);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    char *out = (char *)work_file(&s, "../bg.out", NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM, "status %d:\n%s",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
    cr_assert_not_null(strstr(out, "stopped by SIGTERM"), "%s", out);
    cr_assert_not_null(strstr(out, "to continue:"), "%s", out);
    cr_assert_not_null(strstr(out, "--resume run/last.ckpt"), "%s", out);
    free(out);
    ok(&s, "train " TERM_ARGS " --resume run/last.ckpt");
    same_files(&s, "full/last.ckpt", "run/last.ckpt");
    drop_scratch(&s);
}

/* --------------------------------------------------------------- eval -- */

Test(e2e, eval_reports_every_quantity_and_the_bound_holds)
{
    scratch s;
    run_result r;
    setup(&s);
    ok(&s, TRAIN " --epochs 2 --out run");
    run_in(&s, &r, TRAINER, "eval --checkpoint run/last.ckpt " TEST_DATA " --limit 40 --samples 40 --json e.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    const char *rows[] = {"ELBO", "rec_x", "kl_w", "log p(x,w)", "log p(x)", "log p(w)", "log p(x|w)",
                          "log p(w|x)", "accuracy w|x"};
    for (int i = 0; i < 9; i++)
        cr_expect_not_null(strstr(r.out, rows[i]), "no '%s' in the table:\n%s", rows[i], r.out);
    char *json = (char *)work_file(&s, "e.json", NULL);
    cr_assert_not_null(json);
    cr_assert_not_null(strstr(json, "\"examples\": 40"), "%s", json);
    cr_assert_not_null(strstr(json, "\"samples\": 40"), "%s", json);
    double elbo = json_mean(json, NULL, "elbo"), loss = json_mean(json, NULL, "loss");
    const char *terms[] = {"rec_x", "rec_w", "kl", "kl_x", "kl_w"};
    for (int i = 0; i < 5; i++)
        cr_expect_geq(json_mean(json, "terms", terms[i]), 0, "term %s", terms[i]);
    double joint = json_mean(json, "log_p", "x,w"), px = json_mean(json, "log_p", "x");
    double pw = json_mean(json, "log_p", "w");
    /* the importance-sampled estimate and the ELBO come from the same samples */
    cr_expect_geq(joint, elbo, "log p(x,w) %g < ELBO %g", joint, elbo);
    cr_expect_lt(joint, 0);
    cr_expect_lt(px, 0);
    cr_expect(pw < 0 && pw > -log(CLASSES) - 2, "log p(w) %g", pw);
    cr_expect_float_eq(json_mean(json, "log_p_cond", "x|w"), joint - pw, 1e-6);
    cr_expect_float_eq(json_mean(json, "log_p_cond", "w|x"), joint - px, 1e-6);
    /* log p(x) sums the classes of w, so it is never below the joint */
    cr_expect_geq(px, joint, "log p(x) %g < log p(x,w) %g", px, joint);
    /* the terms are the spec's (kl_x = alpha * KL) and add up to the objective */
    double sum = 0;
    for (int i = 0; i < 5; i++)
        sum += json_mean(json, "terms", terms[i]);
    cr_expect(fabs(sum - loss) <= 1e-5 * fabs(loss), "terms add up to %.7g, the loss is %.7g", sum, loss);
    cr_expect_float_eq(json_mean(json, "terms_raw", "kl_x") * 0.1, json_mean(json, "terms", "kl_x"),
                       1e-6 * fabs(json_mean(json, "terms", "kl_x")) + 1e-9);
    double acc = json_mean(json, "accuracy", "w|x"); /* a fraction of the 40 examples */
    cr_expect(acc >= 0 && acc <= 1 && fabs(acc * 40 - round(acc * 40)) < 1e-6, "accuracy %g", acc);
    cr_expect(loss > 0 && -loss < elbo + 50, "loss %g, ELBO %g", loss, elbo);
    cr_log_info("eval: ELBO %.2f, log p(x,w) %.2f, log p(x) %.2f, log p(w) %.3f, accuracy %.2f", elbo, joint, px,
                pw, acc);
    free(json);
    free_result(&r);
    drop_scratch(&s);
}

/* Examples are handed to the threads in groups whose make-up does not
 * depend on the thread count, and the statistics are summed in example order. */
Test(e2e, eval_gives_the_same_numbers_on_any_number_of_threads)
{
    scratch s;
    setup(&s);
    ok(&s, TRAIN " --epochs 1 --out run");
    ok(&s, "eval --checkpoint run/last.ckpt " TEST_DATA " --limit 30 --samples 50 --batch 120 --threads 1 --json one.json");
    ok(&s, "eval --checkpoint run/last.ckpt " TEST_DATA " --limit 30 --samples 50 --batch 120 --threads 2 --json two.json");
    ok(&s, "eval --checkpoint run/last.ckpt " TEST_DATA " --limit 30 --samples 50 --batch 120 --threads 3 --json three.json");
    same_files(&s, "one.json", "two.json");
    same_files(&s, "one.json", "three.json");
    drop_scratch(&s);
}

/* ---------------------------------------------------------------- BLAS -- */

/* The trainer names the kernel it runs and why. JMVAEC_BLAS_TEST_GENERIC=1
 * makes it take the library's choice for the generic Prescott kernel, as
 * OpenBLAS 0.3.21 gives on CPUs it does not know: the trainer must then
 * start again on the kernel the CPU runs. */
Test(e2e, the_trainer_restarts_on_the_blas_kernel_the_cpu_runs)
{
    scratch s;
    run_result r;
    make_scratch(&s);
    jv_cpu_features f;
    jv_cpu_detect(&f);
    const char *better = jv_blas_better_kernel("Prescott", &f);
    run_env(&s, &r, "env -u OPENBLAS_CORETYPE JMVAEC_BLAS_TEST_GENERIC=1", TRAINER, "help");
    cr_assert_eq(r.code, 0, "%s", r.err);
    char want[256];
    if (better) {
        snprintf(want, sizeof want, "kernel %s, chosen by jmvaec for this CPU", better);
        cr_expect_not_null(strstr(r.out, want), "no '%s' in:\n%s", want, r.out);
        cr_expect_not_null(strstr(r.out, "the library's own choice was Prescott"), "%s", r.out);
    } else {
        cr_expect_not_null(strstr(r.out, "the library's choice"), "%s", r.out);
    }
    free_result(&r);
    run_env(&s, &r, "env OPENBLAS_CORETYPE=Prescott JMVAEC_BLAS_TEST_GENERIC=1", TRAINER, "help");
    cr_expect_not_null(strstr(r.out, "kernel Prescott, from OPENBLAS_CORETYPE=Prescott"), "%s", r.out);
    free_result(&r);
    run_env(&s, &r, "env -u OPENBLAS_CORETYPE JMVAEC_BLAS_AUTO=0 JMVAEC_BLAS_TEST_GENERIC=1", TRAINER, "help");
    cr_expect_null(strstr(r.out, "chosen by jmvaec"), "%s", r.out);
    if (better)
        cr_expect_not_null(strstr(r.out, "JMVAEC_BLAS_AUTO=0"), "%s", r.out);
    free_result(&r);
    drop_scratch(&s);
}

/* ------------------------------------------------------ sample, encode -- */

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* export --npz: every tensor a member "<name>.npy" of a ZIP, in layout
 * order; their floats, end to end, are the checkpoint's parameter block
 * (the layout has no gaps). */
Test(e2e, export_writes_every_tensor_under_its_name)
{
    scratch s;
    setup(&s);
    ok(&s, TRAIN " --epochs 1 --out run");
    ok(&s, "export --checkpoint run/last.ckpt --npz w.npz");
    size_t zsize = 0, csize = 0;
    unsigned char *z = work_file(&s, "w.npz", &zsize), *ck = work_file(&s, "run/last.ckpt", &csize);
    cr_assert(z && ck);
    unsigned char *floats = malloc(zsize);
    size_t n_bytes = 0, at = 0;
    int members = 0, saw_bias = 0;
    while (at + 30 <= zsize && le32(z + at) == 0x04034b50u) {
        size_t size = le32(z + at + 18), name_len = (size_t)z[at + 26] | (size_t)z[at + 27] << 8;
        const unsigned char *name = z + at + 30, *data = name + name_len;
        cr_assert_eq(le32(z + at + 14), (uint32_t)crc32(0, data, (uInt)size), "member %d: CRC", members);
        cr_assert_eq(memcmp(data, "\x93NUMPY", 6), 0);
        size_t head = 10 + (size_t)data[8] + 256 * (size_t)data[9];
        if (members == 0)
            cr_expect_eq(strncmp((const char *)name, "enc_x.h1.weight.npy", name_len), 0, "%.*s", (int)name_len, name);
        if (strncmp((const char *)name, "enc_x.h1.bias.npy", name_len) == 0) {
            saw_bias = 1;
            cr_expect_not_null(strstr((const char *)data + 10, "'shape': (512,)"), "%.*s", (int)head, data);
        }
        memcpy(floats + n_bytes, data + head, size - head);
        n_bytes += size - head;
        at = (size_t)(data - z) + size;
        members++;
    }
    cr_expect(saw_bias);
    cr_expect_eq(members, 32);
    size_t n = n_bytes / 4, tail = 4 * 8 + 4 * 8 + 8 + 32 * 8 + 4; /* format 4 at an epoch's end, no sums */
    cr_assert_gt(csize, 12 * n + tail + 4);
    cr_expect_eq(memcmp(floats, ck + csize - 4 - tail - 12 * n, n_bytes), 0, "the arrays are not the parameters");
    const char *mark = "written by jmvaec export: model jmvae_kl";
    int marked = 0;
    for (size_t i = 0; !marked && i + strlen(mark) <= zsize; i++)
        marked = memcmp(z + i, mark, strlen(mark)) == 0;
    cr_expect(marked, "the archive's comment does not say who wrote it");
    free(floats);
    free(z);
    free(ck);
    /* the same bytes again, over its own file; never over someone else's */
    ok(&s, "export --checkpoint run/last.ckpt --npz w2.npz");
    same_files(&s, "w.npz", "w2.npz");
    ok(&s, "export --checkpoint run/last.ckpt --npz w.npz");
    write_work_file(&s, "mine.npz", "mine", 4);
    refused(&s, TRAINER, "export --checkpoint run/last.ckpt --npz mine.npz",
            "mine.npz exists and was not written by jmvaec export");
    char *mine = (char *)work_file(&s, "mine.npz", NULL);
    cr_expect(mine && strncmp(mine, "mine", 4) == 0);
    free(mine);
    refused(&s, TRAINER, "export --checkpoint w.npz --npz x.npz", "w.npz");
    drop_scratch(&s);
}

Test(e2e, sample_and_encode_write_what_they_promise)
{
    scratch s;
    setup(&s);
    ok(&s, TRAIN " --epochs 1 --out run");
    /* tiles of 28 x 28 with a 1-pixel border */
    ok(&s, "sample --checkpoint run/last.ckpt --png cond.png");
    expect_png(&s, "cond.png", 10 * 29 + 1, 10 * 29 + 1, 1);
    ok(&s, "sample --checkpoint run/last.ckpt --png shoe.png --given w=7 --n 6");
    expect_png(&s, "shoe.png", 6 * 29 + 1, 29 + 1, 1);
    ok(&s, "sample --checkpoint run/last.ckpt --png prior.png --mode prior --n 4 --seed 3");
    expect_png(&s, "prior.png", 4 * 29 + 1, 4 * 29 + 1, 1);
    ok(&s, "sample --checkpoint run/last.ckpt --png rec.png --mode reconstruct --data x=tx.idx --n 12");
    expect_png(&s, "rec.png", 10 * 29 + 1, 4 * 29 + 1, 1);
    /* the same images as CSV, beyond a PNG's 100 a row, with the class of each */
    ok(&s, "sample --checkpoint run/last.ckpt --csv gen.csv --csv-labels gen_labels.csv --n 150");
    char *gen = (char *)work_file(&s, "gen.csv", NULL), *labels = (char *)work_file(&s, "gen_labels.csv", NULL);
    cr_assert(gen && labels);
    cr_expect_eq(count_lines(gen), 1500);
    cr_expect_eq(count_lines(labels), 1500);
    const char *first_line_end = strchr(gen, '\n');
    int commas = 0;
    for (const char *c = gen; c < first_line_end; c++)
        commas += *c == ',';
    cr_expect_eq(commas, IMAGE_SIZE - 1, "a CSV line holds %d values", commas + 1);
    cr_expect_eq(strncmp(labels, "0\n", 2), 0);
    cr_expect_not_null(strstr(labels, "\n9\n"));
    free(gen);
    free(labels);
    refused(&s, TRAINER, "sample --checkpoint run/last.ckpt --png big.png --n 150",
            "a PNG row holds at most 100 images");
    refused(&s, TRAINER, "sample --checkpoint run/last.ckpt --mode prior --csv p.csv --csv-labels l.csv",
            "--csv-labels goes with --csv in conditional mode");
    ok(&s, "encode --checkpoint run/last.ckpt " TEST_DATA " --csv z.csv --limit 30");
    char *csv = (char *)work_file(&s, "z.csv", NULL);
    cr_assert_not_null(csv);
    cr_assert_eq(count_lines(csv), 31);
    cr_assert_eq(strncmp(csv, "z_0,z_1,", 8), 0);
    cr_assert_not_null(strstr(csv, ",z_63\n"));
    cr_assert_null(strstr(csv, ",z_64"));
    free(csv);
    /* the same means as a NumPy array: its header, then the CSV's values as float32 */
    ok(&s, "encode --checkpoint run/last.ckpt " TEST_DATA " --csv z.csv --npy z.npy --limit 30");
    csv = (char *)work_file(&s, "z.csv", NULL);
    size_t npy_size = 0;
    unsigned char *npy = work_file(&s, "z.npy", &npy_size);
    cr_assert(csv && npy);
    const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (30, 64), }";
    size_t head = 10 + (size_t)npy[8] + 256 * (size_t)npy[9];
    cr_assert_eq(memcmp(npy, "\x93NUMPY\x01\x00", 8), 0);
    cr_assert_eq(head % 64, 0);
    cr_assert_eq(memcmp(npy + 10, want, strlen(want)), 0, "%.*s", (int)(head - 10), (const char *)npy + 10);
    cr_assert_eq(npy[head - 1], '\n');
    cr_assert_eq(npy_size, head + 30 * 64 * 4);
    const char *at = strchr(csv, '\n') + 1;
    for (size_t i = 0; i < 30 * 64; i++) {
        float f;
        memcpy(&f, npy + head + 4 * i, 4);
        char *end;
        float c = strtof(at, &end);
        cr_assert_eq(f, c, "value %zu: %.9g in the .npy, %.9g in the CSV", i, (double)f, (double)c);
        at = end + 1;
    }
    free(csv);
    free(npy);
    ok(&s, "sample --checkpoint run/last.ckpt --mode prior --n 3 --npy p.npy");
    npy = work_file(&s, "p.npy", &npy_size);
    cr_assert_not_null(npy);
    cr_expect_eq(npy_size, 10 + (size_t)npy[8] + 256 * (size_t)npy[9] + 9 * IMAGE_SIZE * 4);
    cr_expect_not_null(strstr((const char *)npy + 10, "'shape': (9, 784)"));
    free(npy);
    /* a scatter needs a 2-D latent */
    refused(&s, TRAINER, "encode --checkpoint run/last.ckpt " TEST_DATA " --csv z2.csv --png z.png",
            "needs a latent of size 2");
    drop_scratch(&s);
}

/* The same model with a 2-D latent, compiled here, draws the scatter. */
Test(e2e, encode_draws_a_scatter_of_a_2d_latent)
{
    scratch s;
    setup(&s);
    char cmd[4096], flags[512], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "sed 's/^latent z\\[64\\]/latent z[2]/' specs/jmvae_kl.spec > %s/z2.spec && ./jmvaec %s/z2.spec -o "
             "%s/gen && make -s -C %s/gen JMVAEC=%s/jmvaec %s",
             s.root, s.root, s.root, s.root, s.repo, sanitize_make_flags(flags, sizeof flags));
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    free(out);
    const char *prog = "../gen/jmvae_kl"; /* from the work folder */
    snprintf(cmd, sizeof cmd, "cd '%s' && %s train " DATA " --threads 1 --epochs 1 --batch 50 >/dev/null && %s "
             "encode --checkpoint run/last.ckpt " TEST_DATA " --csv z.csv --png z.png", s.work, prog, prog);
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    free(out);
    expect_png(&s, "z.png", 512, 512, 3);
    char *csv = (char *)work_file(&s, "z.csv", NULL);
    cr_assert_eq(count_lines(csv), N_TEST + 1);
    cr_assert_eq(strncmp(csv, "z_0,z_1\n", 8), 0);
    free(csv);
    drop_scratch(&s);
}

/* ----------------------------------------------------------- bad data -- */

/* Damaged and ill-fitting data files, each refused by train and by eval. */
Test(e2e, bad_data_files_are_refused_without_writing)
{
    scratch s;
    setup(&s);
    slice tr = read_slice("train", N_TRAIN);
    ok(&s, TRAIN " --epochs 1 --out run");

    /* x.idx: a plain copy, then damaged versions of it */
    write_images(&s, "x.idx", &tr, N_TRAIN);
    size_t n, gz_len;
    unsigned char *x = work_file(&s, "x.idx", &n), *gz = work_file(&s, "x.idx.gz", &gz_len);
    write_work_file(&s, "x_short.idx", x, n - 1000);
    write_work_file(&s, "x_short.idx.gz", gz, gz_len / 2);
    x[0] = 'P';
    x[1] = 'K';
    write_work_file(&s, "x_magic.idx", x, n);
    free(x);
    free(gz);
    uint32_t bad_dims[3] = {N_TRAIN, 27, 28};
    write_idx(&s, "x_27x28.idx", tr.pixels, 3, bad_dims);
    write_images(&s, "x_fewer.idx", &tr, N_TRAIN - 1);
    /* a gzip file whose content is not IDX */
    char path[1024];
    work_path(&s, "notidx.gz", path, sizeof path);
    gzFile g = gzopen(path, "wb");
    gzputs(g, "0.5,0.5\n");
    gzclose(g);
    /* a class 10 among 10 classes (0-9) */
    tr.labels[7] = 10;
    write_labels(&s, "w_class10.idx", &tr, N_TRAIN);
    /* one NaN in a float32 NPY copy of the images (a missing example would be NaN throughout) */
    const char npy_head[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (500, 784), }";
    size_t head_len = 10 + 0x76;
    unsigned char *npy = calloc(1, head_len + (size_t)N_TRAIN * IMAGE_SIZE * 4);
    memcpy(npy, npy_head, sizeof npy_head - 1);
    memset(npy + sizeof npy_head - 1, ' ', head_len - (sizeof npy_head - 1));
    npy[head_len - 1] = '\n';
    for (size_t i = 0; i < (size_t)N_TRAIN * IMAGE_SIZE; i++) {
        float v = (float)tr.pixels[i] / 255.0f;
        if (i == 3 * IMAGE_SIZE + 100)
            v = NAN;
        memcpy(npy + head_len + 4 * i, &v, 4); /* little-endian host */
    }
    write_work_file(&s, "x_nan.npy", npy, head_len + (size_t)N_TRAIN * IMAGE_SIZE * 4);
    free(npy);
    free_slice(&tr);

    static const struct {
        const char *data, *needle;
    } cases[] = {
        {"--data x=missing.idx --data w=w.idx", "missing.idx: cannot open: No such file or directory"},
        {"--data x=x_short.idx --data w=w.idx", "x_short.idx: truncated"},
        {"--data x=x_short.idx.gz --data w=w.idx", "x_short.idx.gz: damaged or truncated gzip data"},
        {"--data x=x_magic.idx --data w=w.idx", "x_magic.idx: unrecognised format"},
        {"--data x=notidx.gz --data w=w.idx", "notidx.gz: the gzip data is not an IDX file (bad magic number)"},
        {"--data x=x_27x28.idx --data w=w.idx", "x_27x28.idx: examples have 756 values, but modality x has size 784"},
        {"--data x=x.idx --data w=x.idx", "categorical modality w needs 1 (a class index) or 10"},
        {"--data x=x.idx --data w=w_class10.idx", "w_class10.idx: example 7 has class 10, but modality w has 10 classes"},
        {"--data x=x_fewer.idx --data w=w.idx", "x_fewer.idx has 499 examples but w.idx has 500"},
        {"--data x=x_nan.npy --data w=w.idx",
         "x_nan.npy: example 3 has a missing value at position 100 but a number at position 0"},
    };
    char args[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "train %s --threads 1 --epochs 1 --out bad", cases[i].data);
        refused(&s, TRAINER, args, cases[i].needle);
        snprintf(args, sizeof args, "eval --checkpoint run/last.ckpt %s --samples 2 --limit 3 --json e.json",
                 cases[i].data);
        refused(&s, TRAINER, args, cases[i].needle);
    }
    /* the other commands that read data check it the same way */
    refused(&s, TRAINER, "sample --checkpoint run/last.ckpt --png r.png --mode reconstruct --data x=x_27x28.idx",
            "has size 784");
    refused(&s, TRAINER, "encode --checkpoint run/last.ckpt --data x=x.idx --data w=w_class10.idx --csv z.csv",
            "has class 10");
    drop_scratch(&s);
}

/* ----------------------------------------------------- bad checkpoints -- */

Test(e2e, bad_checkpoints_are_refused_without_writing)
{
    scratch s;
    run_result r;
    setup(&s);
    ok(&s, TRAIN " --epochs 1 --out run");
    run_in(&s, &r, OTHER_TRAINER, "train " DATA " --threads 1 --epochs 1 --batch 50 --out other");
    cr_assert_eq(r.code, 0, "%s", r.err);
    free_result(&r);
    size_t n;
    unsigned char *ck = work_file(&s, "run/last.ckpt", &n);
    cr_assert_not_null(ck);
    write_work_file(&s, "short.ckpt", ck, n / 2);
    write_work_file(&s, "tail.ckpt", ck, n - 1);
    ck[n / 4] ^= 0x10; /* a bit of a parameter */
    write_work_file(&s, "flipped.ckpt", ck, n);
    ck[n / 4] ^= 0x10;
    ck[0] ^= 0x01;
    write_work_file(&s, "magic.ckpt", ck, n);
    free(ck);

    static const struct {
        const char *file, *needle;
    } cases[] = {
        {"missing.ckpt", "missing.ckpt: cannot open"},
        {"short.ckpt", "short.ckpt: truncated"},
        {"tail.ckpt", "tail.ckpt: truncated: expected 4 more bytes (checksum)"},
        {"flipped.ckpt", "flipped.ckpt: checksum mismatch (file damaged)"},
        {"magic.ckpt", "magic.ckpt: not a jmvaec checkpoint (bad magic number)"},
        {"other/last.ckpt", "other/last.ckpt: checkpoint of model 'jmvae' ("},
    };
    char args[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "train " DATA " --threads 1 --epochs 2 --resume %s --out resumed", cases[i].file);
        refused(&s, TRAINER, args, cases[i].needle);
        snprintf(args, sizeof args, "eval --checkpoint %s " TEST_DATA " --samples 2 --json e.json", cases[i].file);
        refused(&s, TRAINER, args, cases[i].needle);
        snprintf(args, sizeof args, "sample --checkpoint %s --png s.png", cases[i].file);
        refused(&s, TRAINER, args, cases[i].needle);
        snprintf(args, sizeof args, "encode --checkpoint %s " TEST_DATA " --csv z.csv", cases[i].file);
        refused(&s, TRAINER, args, cases[i].needle);
    }
    /* and the other way round */
    refused(&s, OTHER_TRAINER, "sample --checkpoint run/last.ckpt --png s.png", "checkpoint of model 'jmvae_kl'");
    drop_scratch(&s);
}

/* ------------------------------------------------------------- memory -- */

/* Runs the trainer in the work folder and returns its peak resident set in
 * bytes (wait4's ru_maxrss, in KiB on Linux). */
static double peak_rss(const scratch *s, const char *const *args)
{
    char exe[1200], out[600], *argv[32];
    int argc = 0;
    for (; args[argc] && argc < 31; argc++)
        argv[argc] = (char *)(uintptr_t)args[argc];
    argv[argc] = NULL;
    snprintf(exe, sizeof exe, "%s/%s", s->repo, TRAINER);
    snprintf(out, sizeof out, "%s/out", s->root);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || chdir(s->work) != 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(exe, argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    cr_assert_eq(wait4(pid, &status, 0, &ru), pid);
    char *text = (char *)slurp(out, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s %s failed: %s", argv[0], argv[1], text);
    free(text);
    return (double)ru.ru_maxrss * 1024.0;
}

/* The planned blocks (parameters, gradients, moments, activation arena) for
 * batch 100, from the compiler's --emit=plan. */
static double planned_bytes(void)
{
    char *out = NULL;
    cr_assert_eq(run_command("./jmvaec --emit=plan --batch 100 specs/jmvae_kl.spec", &out), 0);
    const char *p = strstr(out, "\ntotal ");
    cr_assert_not_null(p, "no total in the plan:\n%s", out);
    double total = strtod(p + 7, NULL);
    free(out);
    cr_assert_gt(total, 1e6);
    return total;
}

/* The limit: the data as loaded (floats; labels one-hot) + the plan + 32 MiB
 * for the program, its libraries and small buffers. */
Test(e2e, train_stays_within_data_plus_plan_plus_32_mib)
{
    const char *san = getenv("SANITIZE");
    if (san && *san)
        cr_skip_test("the sanitizers' shadow memory and quarantine are not the trainer's");
    scratch s;
    make_scratch(&s);
    enum { N = 4000 };
    slice tr = read_slice("train", N);
    write_images(&s, "x.idx.gz", &tr, N);
    write_labels(&s, "w.idx", &tr, N);
    free_slice(&tr);
    /* the data size, from the files' headers */
    size_t n;
    unsigned char *w = work_file(&s, "w.idx", &n);
    double examples = be32(w + 4);
    free(w);
    char path[1024];
    work_path(&s, "x.idx.gz", path, sizeof path);
    gzFile gz = gzopen(path, "rb");
    unsigned char head[16];
    cr_assert_eq(gzread(gz, head, 16), 16);
    gzclose(gz);
    double values = (double)be32(head + 8) * be32(head + 12);
    cr_assert_eq(be32(head + 4), (uint32_t)examples);
    double data = examples * (values + CLASSES) * 4, plan = planned_bytes(), slack = 32.0 * 1024 * 1024;
    double limit = data + plan + slack;

    const char *train[] = {"jmvae_kl", "train", "--data", "x=x.idx.gz", "--data", "w=w.idx", "--batch", "100",
                     "--epochs", "1", "--threads", "1", "--out", "run", NULL};
    double fresh = peak_rss(&s, train);
    const char *resume[] = {"jmvae_kl", "train", "--data", "x=x.idx.gz", "--data", "w=w.idx", "--batch", "100",
                      "--epochs", "2", "--threads", "1", "--resume", "run/last.ckpt", NULL};
    double resumed = peak_rss(&s, resume);
    cr_log_info("peak RSS: train %.1f MB, resume %.1f MB; limit %.1f MB = data %.1f + plan %.1f + 32 MiB",
                fresh / 1e6, resumed / 1e6, limit / 1e6, data / 1e6, plan / 1e6);
    cr_expect_leq(fresh, limit, "train peaked at %.1f MB, over %.1f MB", fresh / 1e6, limit / 1e6);
    cr_expect_leq(resumed, limit, "a resumed run peaked at %.1f MB, over %.1f MB", resumed / 1e6, limit / 1e6);
    drop_scratch(&s);
}
