/* test_trainer.c: the generic trainer (jv_main) on the hand-written fixture
 * model: training lowers the loss and writes its log and checkpoints, runs
 * are deterministic and resumable bit for bit, eval/sample/encode write what
 * they promise, and bad input exits 1 with one line on stderr and nothing
 * written. Each test works in a fresh folder under /tmp.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#if defined(__SANITIZE_ADDRESS__)
#define CHECK_LEAKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHECK_LEAKS 1
#endif
#endif
#ifdef CHECK_LEAKS
#include <sanitizer/lsan_interface.h>
#endif

#include "jv_trainer.h"
#include "report_util.h"
#include "trainer_fixture.h"

/* ------------------------------------------------------------ helpers -- */

/* A scratch folder: root holds the captured output, root/work is the
 * current folder of every run. */
typedef struct {
    char root[256], work[300];
} scratch;

typedef struct {
    int code;
    char out[16384], err[4096];
} result;

static void make_scratch(scratch *s)
{
    strcpy(s->root, "/tmp/jv_trainer_test.XXXXXX");
    cr_assert_not_null(mkdtemp(s->root));
    snprintf(s->work, sizeof s->work, "%s/work", s->root);
    cr_assert_eq(mkdir(s->work, 0777), 0);
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        remove_tree(child);
    }
    closedir(d);
    rmdir(path);
}

/* Reads a whole file into a fresh NUL-terminated buffer (NULL if missing). */
static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (size)
        *size = (size_t)n;
    return buf;
}

static char *work_file(const scratch *s, const char *name, size_t *size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", s->work, name);
    return slurp(path, size);
}

static int work_exists(const scratch *s, const char *name)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", s->work, name);
    return stat(path, &st) == 0;
}

static void write_work_file(const scratch *s, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", s->work, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* What run_main runs: the fixture, or a test's variant of it. */
static const jv_model *main_model = &fixture_model;
static int (*main_gradcheck)(int argc, char **argv);

/* Points fd at a fresh file; returns a copy of what it pointed at. */
static int redirect(int fd, const char *path)
{
    int saved = dup(fd), file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(saved >= 0 && file >= 0);
    cr_assert_eq(dup2(file, fd), fd);
    close(file);
    return saved;
}

static void restore(int fd, int saved)
{
    cr_assert_eq(dup2(saved, fd), fd);
    close(saved);
}

/* Runs jv_main in s->work on the space-separated arguments, capturing its
 * output. It runs in the test's own process (Criterion gives each test one);
 * under AddressSanitizer, memory it leaked fails the test. */
static void run_main(const scratch *s, result *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void run_main(const scratch *s, result *r, const char *fmt, ...)
{
    char command[2048], line[2048], *argv[64], out_path[512], err_path[512], cwd[1024];
    int argc = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(command, sizeof command, fmt, ap);
    va_end(ap);
    memcpy(line, command, sizeof line);
    argv[argc++] = (char *)(uintptr_t) "fixture";
    for (char *tok = strtok(line, " "); tok && argc < 63; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    snprintf(out_path, sizeof out_path, "%s/stdout", s->root);
    snprintf(err_path, sizeof err_path, "%s/stderr", s->root);
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    fflush(NULL);
    int out = redirect(STDOUT_FILENO, out_path), err = redirect(STDERR_FILENO, err_path);
    cr_assert_eq(chdir(s->work), 0);
    r->code = jv_main(main_model, main_gradcheck, argc, argv);
    fflush(NULL);
    cr_assert_eq(chdir(cwd), 0);
    restore(STDOUT_FILENO, out);
    restore(STDERR_FILENO, err);
#ifdef CHECK_LEAKS
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "jv_main leaked on: %s", command);
#endif
    char *text = slurp(out_path, NULL);
    snprintf(r->out, sizeof r->out, "%s", text ? text : "");
    free(text);
    text = slurp(err_path, NULL);
    snprintf(r->err, sizeof r->err, "%s", text ? text : "");
    free(text);
}

/* x.csv and w.csv: n examples of three well-separated classes. */
static const double class_means[3][4] = {{3, -3, 0, 1.5}, {-3, 3, 1.5, 0}, {0, 0, -3, -3}};

static void write_data(const scratch *s, int n, const char *xname, const char *wname)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", s->work, xname);
    FILE *x = fopen(path, "w");
    snprintf(path, sizeof path, "%s/%s", s->work, wname);
    FILE *w = fopen(path, "w");
    cr_assert(x && w);
    for (int i = 0; i < n; i++) {
        int c = i % 3;
        for (int d = 0; d < 4; d++)
            fprintf(x, "%.5f%c", class_means[c][d] + 0.3 * jv_normal_at(99, 1, (uint64_t)(4 * i + d)),
                    d < 3 ? ',' : '\n');
        fprintf(w, "%d\n", c);
    }
    fclose(x);
    fclose(w);
}

static void setup_data(scratch *s)
{
    make_scratch(s);
    write_data(s, 60, "x.csv", "w.csv");
}

#define DATA "--data x=x.csv --data w=w.csv"

/* A listing of the work folder: names and sizes, one per line, sorted. */
static void listing(const scratch *s, char *buf, size_t size)
{
    struct dirent **names;
    int n = scandir(s->work, &names, NULL, alphasort);
    cr_assert_geq(n, 0);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", s->work, names[i]->d_name);
        stat(path, &st);
        if (used < size)
            used += (size_t)snprintf(buf + used, size - used, "%s %lld\n", names[i]->d_name,
                                     S_ISDIR(st.st_mode) ? 0LL : (long long)st.st_size);
        free(names[i]);
    }
    free(names);
}

/* The command must fail with one "fixture: ..." line and write nothing. */
static void expect_refusal(const scratch *s, const char *args, const char *needle)
{
    char before[4096], after[4096];
    result r;
    listing(s, before, sizeof before);
    run_main(s, &r, "%s", args);
    listing(s, after, sizeof after);
    cr_expect_eq(r.code, 1, "'%s' exited %d", args, r.code);
    cr_expect_eq(strncmp(r.err, "fixture: ", 9), 0, "'%s' stderr: %s", args, r.err);
    cr_expect_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1, "'%s' printed more than one line: %s", args,
                 r.err);
    cr_expect_not_null(strstr(r.err, needle), "'%s': expected '%s' in: %s", args, needle, r.err);
    cr_expect_str_eq(before, after, "'%s' changed the folder", args);
}

static void png_size(const scratch *s, const char *name, unsigned *w, unsigned *h)
{
    size_t n;
    unsigned char *png = (unsigned char *)work_file(s, name, &n);
    cr_assert_not_null(png, "%s missing", name);
    cr_assert_geq(n, 33);
    cr_assert_eq(memcmp(png, "\x89PNG\r\n\x1a\n", 8), 0);
    cr_assert_eq(memcmp(png + 12, "IHDR", 4), 0);
    *w = (unsigned)png[16] << 24 | (unsigned)png[17] << 16 | (unsigned)png[18] << 8 | png[19];
    *h = (unsigned)png[20] << 24 | (unsigned)png[21] << 16 | (unsigned)png[22] << 8 | png[23];
    free(png);
}

static void train_ok(const scratch *s, const char *extra)
{
    result r;
    run_main(s, &r, "train " DATA " %s", extra);
    cr_assert_eq(r.code, 0, "train %s failed: %s", extra, r.err);
}

static void same_files(const scratch *s, const char *a, const char *b)
{
    size_t na, nb;
    char *x = work_file(s, a, &na), *y = work_file(s, b, &nb);
    cr_assert(x && y, "%s or %s missing", a, b);
    cr_assert_eq(na, nb, "%s and %s differ in size", a, b);
    cr_assert_eq(memcmp(x, y, na), 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* -------------------------------------------------------------- train -- */

Test(train, loss_falls_and_log_rows_are_written)
{
    scratch s;
    setup_data(&s);
    train_ok(&s, "--epochs 8 --out run");
    char *csv = work_file(&s, "run/train.csv", NULL);
    cr_assert_not_null(csv);
    const char *header = "epoch,step,train_loss,train_rec_x,train_rec_w,train_kl,train_kl_x,valid_loss,"
                         "valid_rec_x,valid_rec_w,valid_kl,valid_kl_x,seconds\n";
    cr_assert_eq(strncmp(csv, header, strlen(header)), 0, "header: %s", csv);
    cr_assert_eq(count_lines(csv), 9);
    cr_assert_eq(csv_value(csv, 8, "epoch"), 8);
    cr_assert_eq(csv_value(csv, 8, "step"), 8 * 8); /* 60 examples in batches of 8 */
    cr_assert_lt(csv_value(csv, 8, "train_loss"), csv_value(csv, 1, "train_loss") - 1);
    cr_assert(work_exists(&s, "run/last.ckpt"));
    cr_assert(!work_exists(&s, "run/epoch-1.ckpt"));
    free(csv);
    remove_tree(s.root);
}

Test(train, prints_one_plain_line_per_epoch_when_not_a_terminal)
{
    scratch s;
    result r;
    setup_data(&s);
    run_main(&s, &r, "train " DATA " --epochs 3");
    cr_assert_eq(r.code, 0);
    cr_assert_null(strchr(r.out, '\r'));
    cr_assert_eq(count_lines(r.out), 6, "%s", r.out); /* two heading lines, a line per epoch, a summary */
    cr_assert_not_null(strstr(r.out, "epoch 3/3"));
    cr_assert(work_exists(&s, "run/last.ckpt")); /* the default --out */
    remove_tree(s.root);
}

Test(train, writes_periodic_checkpoints_and_validation_columns)
{
    scratch s;
    setup_data(&s);
    train_ok(&s, "--epochs 4 --ckpt-every 2 --valid 12 --out run");
    cr_assert(work_exists(&s, "run/epoch-2.ckpt"));
    cr_assert(work_exists(&s, "run/epoch-4.ckpt"));
    cr_assert(!work_exists(&s, "run/epoch-1.ckpt"));
    cr_assert(!work_exists(&s, "run/epoch-3.ckpt"));
    char *csv = work_file(&s, "run/train.csv", NULL);
    cr_assert_eq(csv_value(csv, 1, "step"), 6); /* 48 training examples */
    cr_assert_gt(csv_value(csv, 4, "valid_loss"), 0);
    cr_assert_gt(csv_value(csv, 4, "valid_kl"), 0);
    free(csv);
    remove_tree(s.root);
}

Test(train, runs_are_deterministic)
{
    scratch s;
    setup_data(&s);
    train_ok(&s, "--epochs 3 --out a --valid 5 --threads 1");
    train_ok(&s, "--epochs 3 --out b --valid 5");
    same_files(&s, "a/last.ckpt", "b/last.ckpt");
    train_ok(&s, "--epochs 3 --out c --valid 5 --seed 2");
    size_t na, nc;
    char *a = work_file(&s, "a/last.ckpt", &na), *c = work_file(&s, "c/last.ckpt", &nc);
    cr_assert(na == nc && memcmp(a, c, na) != 0, "another seed gave the same parameters");
    free(a);
    free(c);
    remove_tree(s.root);
}

Test(train, resuming_reproduces_an_uninterrupted_run)
{
    scratch s;
    setup_data(&s);
    train_ok(&s, "--epochs 3 --out full --valid 7 --batch 7");
    train_ok(&s, "--epochs 1 --out part --valid 7 --batch 7 --ckpt-every 1");
    train_ok(&s, "--epochs 3 --resume part/last.ckpt --valid 7 --batch 7");
    same_files(&s, "full/last.ckpt", "part/last.ckpt");
    char *csv = work_file(&s, "part/train.csv", NULL);
    cr_assert_eq(count_lines(csv), 4, "%s", csv);
    cr_assert_eq(csv_value(csv, 3, "epoch"), 3);
    free(csv);
    /* resuming from an earlier checkpoint replaces the later rows */
    train_ok(&s, "--epochs 2 --resume part/epoch-1.ckpt --valid 7 --batch 7 --out part");
    csv = work_file(&s, "part/train.csv", NULL);
    cr_assert_eq(count_lines(csv), 3, "%s", csv);
    free(csv);
    remove_tree(s.root);
}

Test(train, hyper_overrides_and_warmup_change_the_run)
{
    scratch s;
    setup_data(&s);
    train_ok(&s, "--epochs 2 --out a");
    train_ok(&s, "--epochs 2 --out b --hyper beta.warmup=0 --hyper alpha=0.5 --clip 0 --lr 0.01");
    size_t na, nb;
    char *a = work_file(&s, "a/last.ckpt", &na), *b = work_file(&s, "b/last.ckpt", &nb);
    cr_assert(na == nb && memcmp(a, b, na) != 0);
    free(a);
    free(b);
    remove_tree(s.root);
}

/* A step schedule of the learning rate: in force only after its epoch, the
 * same whatever the order it is given in, and resumed exactly. */
Test(train, lr_after_sets_a_step_schedule_that_resumes_exactly)
{
    scratch s;
    result r;
    setup_data(&s);
    train_ok(&s, "--epochs 3 --out plain");
    train_ok(&s, "--epochs 3 --out late --lr-after 3=0.5");
    same_files(&s, "plain/last.ckpt", "late/last.ckpt"); /* after the last epoch: no effect */
    train_ok(&s, "--epochs 1 --out one --lr-after 1=0.0001");
    train_ok(&s, "--epochs 1 --out one_plain");
    same_files(&s, "one/last.ckpt", "one_plain/last.ckpt"); /* not yet in the first epoch */
    run_main(&s, &r, "train " DATA " --epochs 3 --out full --lr-after 2=0.00001 --lr-after 1=0.0001");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, ", 0.0001 after epoch 1, 1e-05 after epoch 2; epoch 1 starts at"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "epoch 2 on: learning rate 0.0001"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "epoch 3 on: learning rate 1e-05"), "%s", r.out);
    size_t na, nb;
    char *a = work_file(&s, "plain/last.ckpt", &na), *b = work_file(&s, "full/last.ckpt", &nb);
    cr_assert(na == nb && memcmp(a, b, na) != 0, "the schedule did not change the run");
    free(a);
    free(b);
    train_ok(&s, "--epochs 3 --out sorted --lr-after 1=0.0001 --lr-after 2=0.00001");
    same_files(&s, "full/last.ckpt", "sorted/last.ckpt");
    train_ok(&s, "--epochs 2 --out part --lr-after 1=0.0001 --lr-after 2=0.00001");
    run_main(&s, &r, "train " DATA " --epochs 3 --resume part/last.ckpt --lr-after 1=0.0001 --lr-after 2=0.00001");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "epoch 3 starts at 1e-05"), "%s", r.out);
    same_files(&s, "full/last.ckpt", "part/last.ckpt");
    remove_tree(s.root);
}

Test(train, stops_on_a_nan_term_and_keeps_the_last_checkpoint)
{
    scratch s;
    result r;
    setup_data(&s);
    fixture_nan_at = 12; /* in the second epoch (8 steps each) */
    run_main(&s, &r, "train " DATA " --epochs 3 --ckpt-every 1 --out run");
    cr_assert_eq(r.code, 1);
    cr_assert_str_eq(r.err, "fixture: step 12: term 'rec_x' is NaN; stopping, last checkpoint kept\n");
    cr_assert(work_exists(&s, "run/epoch-1.ckpt"));
    cr_assert(!work_exists(&s, "run/epoch-2.ckpt"));
    /* last.ckpt is kept current after every epoch: it is the end of epoch 1 */
    size_t na, nb;
    char *a = work_file(&s, "run/last.ckpt", &na), *b = work_file(&s, "run/epoch-1.ckpt", &nb);
    cr_assert(a && b && na == nb && memcmp(a, b, na) == 0, "last.ckpt is not epoch 1's checkpoint");
    free(a);
    free(b);
    remove_tree(s.root);
}

/* ---------------------------------------------------------------- bad -- */

Test(bad_input, train_refuses_without_writing)
{
    scratch s;
    setup_data(&s);
    write_data(&s, 50, "x50.csv", "w50.csv");
    write_work_file(&s, "junk.ckpt", "this is not a checkpoint\n");
    expect_refusal(&s, "train " DATA " --bogus 1", "unknown option '--bogus'");
    expect_refusal(&s, "train --data x=x.csv", "missing --data w=FILE");
    expect_refusal(&s, "train --data x=x.csv --data w=w50.csv", "x.csv has 60 examples but w50.csv has 50");
    expect_refusal(&s, "train --data x=x.csv --data w=missing.csv", "missing.csv");
    expect_refusal(&s, "train --data x=x.csv --data v=w.csv", "no modality");
    expect_refusal(&s, "train " DATA " --data x=x.csv", "given twice");
    expect_refusal(&s, "train " DATA " --epochs 0", "--epochs expects an integer >= 1");
    expect_refusal(&s, "train " DATA " --batch 2x", "--batch expects");
    expect_refusal(&s, "train " DATA " --lr nan", "--lr expects");
    expect_refusal(&s, "train " DATA " --epochs", "needs a value");
    expect_refusal(&s, "train " DATA " stray", "unexpected argument 'stray'");
    expect_refusal(&s, "train " DATA " --binarize x=threshold", "no bernoulli modality");
    expect_refusal(&s, "train " DATA " --hyper gamma=1", "no such weight");
    expect_refusal(&s, "train " DATA " --hyper beta=abc", "not a number");
    expect_refusal(&s, "train " DATA " --lr-after 10", "--lr-after expects N=X");
    expect_refusal(&s, "train " DATA " --lr-after -1=0.1", "'-1' is not a number of epochs");
    expect_refusal(&s, "train " DATA " --lr-after 1x=0.1", "'1x' is not a number of epochs");
    expect_refusal(&s, "train " DATA " --lr-after 1=fast", "'fast' is not a learning rate");
    expect_refusal(&s, "train " DATA " --lr-after 1=-0.1", "is not a learning rate");
    expect_refusal(&s, "train " DATA " --lr-after 2=0.1 --lr-after 2=0.01", "epoch 2 is given twice");
    expect_refusal(&s, "train " DATA " --valid 60", "leaves no training examples");
    expect_refusal(&s, "train " DATA " --resume junk.ckpt --out r", "junk.ckpt");
    expect_refusal(&s, "train " DATA " --resume none.ckpt --out r", "none.ckpt");
    expect_refusal(&s, "frobnicate", "unknown command 'frobnicate'");
    remove_tree(s.root);
}

/* w.csv's labels with every third one written NA; and 0/1 masks. */
static void write_incomplete(const scratch *s)
{
    char text[1024] = "", mask[512] = "", ones[512] = "", twos[512] = "", none[512] = "", even[512] = "", odd[512] = "";
    for (int i = 0; i < 60; i++) {
        strcat(none, i % 2 ? "NA\n" : "-1\n");
        snprintf(text + strlen(text), sizeof text - strlen(text), "%s\n", i % 3 == 1 ? "NA" : i % 3 == 0 ? "0" : "2");
        strcat(mask, i == 4 ? "0\n" : "1\n");
        strcat(ones, "1\n");
        strcat(twos, i == 7 ? "2\n" : "1\n");
        strcat(even, i % 2 ? "0\n" : "1\n");
        strcat(odd, i % 2 ? "1\n" : "0\n");
    }
    write_work_file(s, "w_na.csv", text);
    write_work_file(s, "x_mask.csv", mask);
    write_work_file(s, "ones.csv", ones);
    write_work_file(s, "twos.csv", twos);
    write_work_file(s, "short.csv", "1\n0\n1\n");
    write_work_file(s, "w_none.csv", none);
    write_work_file(s, "even.csv", even);
    write_work_file(s, "odd.csv", odd);
}

/* Missing values are read and counted; what cannot be used is refused
 * before anything is written. */
Test(bad_input, incomplete_data_is_counted_and_refused_where_it_cannot_be_used)
{
    scratch s;
    setup_data(&s);
    write_incomplete(&s);
    result r;
    run_main(&s, &r, "train --data x=x.csv --data w=w_na.csv --valid 6 --out never");
    cr_expect_eq(r.code, 1);
    cr_expect_not_null(strstr(r.out, "training examples by observed modalities: x,w "), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "validation examples by observed modalities: "), "%s", r.out);
    cr_expect_not_null(strstr(r.err, "examples that observe only x (20 of them) contribute nothing to the loss of model"),
                       "%s", r.err);
    /* the baseline that discards them: the complete training examples alone */
    run_main(&s, &r, "train --data x=x.csv --data w=w_na.csv --complete-only --epochs 1 --out complete");
    cr_expect_eq(r.code, 0, "%s%s", r.out, r.err);
    cr_expect_not_null(strstr(r.out, "--complete-only: training on the 40 complete examples of the 60 training"),
                       "%s", r.out);
    expect_refusal(&s, "train " DATA " --observed x=even.csv --observed w=odd.csv --complete-only --out never",
                   "--complete-only leaves no training example: each of the 60 lacks a modality");
    run_main(&s, &r, "train " DATA " --drop w=0.5 --valid 10 --out never");
    cr_expect_not_null(strstr(r.out, "--drop w=0.5: w hidden in 25 of the 50 training examples"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "training examples by observed modalities: x,w 25, x 25"), "%s", r.out);
    cr_expect_null(strstr(r.out, "validation examples"), "the validation examples lost w: %s", r.out);
    expect_refusal(&s, "train " DATA " --observed x=x_mask.csv --out never",
                   "examples that observe only w (1 of them) contribute nothing to the loss");
    expect_refusal(&s, "train " DATA " --observed x=short.csv", "short.csv has 3 values but x.csv has 60 examples");
    expect_refusal(&s, "train " DATA " --observed x=twos.csv", "twos.csv: example 7 has 2; an --observed mask");
    expect_refusal(&s, "train " DATA " --observed v=ones.csv", "--observed names no modality");
    expect_refusal(&s, "train " DATA " --observed x=ones.csv --observed x=ones.csv", "given twice");
    expect_refusal(&s, "train --data x=x.csv --data w=w_na.csv --observed w=ones.csv",
                   "ones.csv says example 1 is observed, but w_na.csv has no value for it");
    expect_refusal(&s, "train --data x=x.csv --data w=w_na.csv --observed x=x_mask.csv --limit 6",
                   "example 4 has none of its modalities (x,w)");
    expect_refusal(&s, "train --data x=x.csv --data w=w_none.csv",
                   "w_none.csv: modality w is missing in every one of the 60 examples");
    expect_refusal(&s, "train " DATA " --drop w=1", "--drop w= expects a fraction in [0, 1), got '1'");
    expect_refusal(&s, "train " DATA " --drop w=x", "expects a fraction");
    expect_refusal(&s, "train " DATA " --drop v=0.5", "--drop names no modality");
    expect_refusal(&s, "train " DATA " --drop w=0.1 --drop w=0.2", "--drop given twice");
    remove_tree(s.root);
}

Test(bad_input, train_refuses_to_overwrite_a_run)
{
    scratch s;
    setup_data(&s);
    train_ok(&s, "--epochs 1 --out run");
    expect_refusal(&s, "train " DATA " --epochs 1 --out run", "already holds a run");
    expect_refusal(&s, "train " DATA " --epochs 2 --resume run/last.ckpt --seed 5", "differs from the seed");
    expect_refusal(&s, "train " DATA " --epochs 0 --resume run/last.ckpt", "--epochs expects");
    result r;
    run_main(&s, &r, "train " DATA " --epochs 1 --resume run/last.ckpt");
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.out, "nothing to do"));
    remove_tree(s.root);
}

Test(bad_input, other_commands_refuse_without_writing)
{
    scratch s;
    setup_data(&s);
    train_ok(&s, "--epochs 1 --out run");
    write_data(&s, 50, "x50.csv", "w50.csv");
    write_work_file(&s, "junk.ckpt", "JMVAECK1 but then nothing of use\n");
    write_work_file(&s, "keep.json", "keep\n");
    expect_refusal(&s, "eval " DATA " --checkpoint junk.ckpt --json keep.json", "junk.ckpt");
    expect_refusal(&s, "eval " DATA " --json out.json", "missing --checkpoint");
    expect_refusal(&s, "eval --data x=x.csv --checkpoint run/last.ckpt", "missing --data w=FILE");
    expect_refusal(&s, "eval --data x=x.csv --data w=w50.csv --checkpoint run/last.ckpt --json keep.json",
                   "examples");
    expect_refusal(&s, "eval " DATA " --checkpoint run/last.ckpt --samples 0", "--samples expects");
    expect_refusal(&s, "eval " DATA " --checkpoint run/last.ckpt --json nodir/out.json", "does not exist");
    expect_refusal(&s, "sample --checkpoint junk.ckpt --png out.png", "junk.ckpt");
    expect_refusal(&s, "sample --checkpoint run/last.ckpt", "missing --png");
    expect_refusal(&s, "sample --checkpoint run/last.ckpt --png o.png --mode dream", "--mode must be");
    expect_refusal(&s, "sample --checkpoint run/last.ckpt --png o.png --given w=3", "class must be");
    expect_refusal(&s, "sample --checkpoint run/last.ckpt --png o.png --given x=1", "no categorical");
    expect_refusal(&s, "sample --checkpoint run/last.ckpt --png o.png --mode reconstruct", "needs --data");
    expect_refusal(&s, "sample --checkpoint run/last.ckpt --png o.png --mode prior --given w=1", "--given only");
    expect_refusal(&s, "encode --checkpoint run/last.ckpt " DATA, "missing --csv");
    expect_refusal(&s, "encode --checkpoint junk.ckpt " DATA " --csv z.csv", "junk.ckpt");
    expect_refusal(&s, "encode --checkpoint run/last.ckpt --data w=w.csv --csv z.csv --family x",
                   "family 'x' reads x");
    expect_refusal(&s, "encode --checkpoint run/last.ckpt " DATA " --csv z.csv --family y", "no family 'y'");
    expect_refusal(&s, "gradcheck", "without a gradient check");
    char *kept = work_file(&s, "keep.json", NULL);
    cr_assert_str_eq(kept, "keep\n");
    free(kept);
    remove_tree(s.root);
}

/* ------------------------------------------------------------ helpers -- */

Test(help, lists_the_commands_and_the_model)
{
    scratch s;
    result r;
    make_scratch(&s);
    run_main(&s, &r, "help");
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.out, "usage: fixture <command>"));
    cr_assert_not_null(strstr(r.out, "x (gaussian, 4 = 2x2 image)"));
    cr_assert_not_null(strstr(r.out, "x,w (training)"));
    const char *cmds[] = {"train", "eval", "sample", "encode"};
    for (int i = 0; i < 4; i++) {
        run_main(&s, &r, "%s --help", cmds[i]);
        cr_assert_eq(r.code, 0);
        cr_assert_not_null(strstr(r.out, "usage: fixture "), "%s", r.out);
        cr_assert_str_eq(r.err, "");
    }
    run_main(&s, &r, "train --help");
    cr_assert_not_null(strstr(r.out, "--batch B"));
    cr_assert_not_null(strstr(r.out, "(default 8)"));
    run_main(&s, &r, "%s", "");
    cr_assert_eq(r.code, 1);
    remove_tree(s.root);
}

/* ---------------------------------------------------------- eval & co -- */

Test(eval, writes_every_number_and_the_bound_holds)
{
    scratch s;
    result r;
    setup_data(&s);
    train_ok(&s, "--epochs 15 --out run");
    run_main(&s, &r, "eval " DATA " --checkpoint run/last.ckpt --samples 200 --batch 64 --json e.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "log p(x|w)"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "JMVAE-zero rule"), "%s", r.out);
    char *json = work_file(&s, "e.json", NULL);
    cr_assert_not_null(json);
    const char *keys[] = {"\"elbo\"", "\"loss\"", "\"terms\"", "\"log_p\"", "\"log_p_cond\"", "\"accuracy\"",
                          "\"samples\": 200", "\"examples\": 60", "\"log_p_family_rule\": {"};
    for (int i = 0; i < 9; i++)
        cr_assert_not_null(strstr(json, keys[i]), "no %s in %s", keys[i], json);
    double joint = json_mean(json, "log_p", "x,w"), elbo = json_mean(json, NULL, "elbo");
    double px = json_mean(json, "log_p", "x"), pw = json_mean(json, "log_p", "w");
    double loss = json_mean(json, NULL, "loss");
    cr_assert_geq(joint, elbo - 1e-6, "log p(x,w) %g < ELBO %g", joint, elbo);
    cr_assert_geq(joint, -loss - 0.5, "log p(x,w) %g far below -loss %g", joint, -loss);
    cr_assert_float_eq(json_mean(json, "log_p_cond", "x|w"), joint - pw, 1e-6);
    cr_assert_float_eq(json_mean(json, "log_p_cond", "w|x"), joint - px, 1e-6);
    cr_assert_leq(pw, 0);
    double acc = json_mean(json, "accuracy", "w|x");
    cr_assert(acc >= 0.6 && acc <= 1, "accuracy w|x %g", acc);
    cr_assert_gt(json_mean(json, "terms", "kl_x"), 0);
    free(json);
    remove_tree(s.root);
}

/* The count a figure of eval's JSON covers: "key": {... "examples": N */
static int json_examples(const char *json, const char *group, const char *key)
{
    char pattern[128];
    const char *p = group ? strstr(json, group) : json;
    cr_assert_not_null(p);
    snprintf(pattern, sizeof pattern, "\"%s\": {", key);
    p = strstr(p, pattern);
    cr_assert_not_null(p, "no %s in %s", key, json);
    p = strstr(p, "\"examples\": ");
    cr_assert_not_null(p);
    return atoi(p + 12);
}

/* Test examples without w: each figure covers the examples that have its
 * modalities, and says how many; a mask of ones changes nothing. */
Test(eval, incomplete_test_data_each_figure_on_the_examples_it_can_use)
{
    scratch s;
    result r;
    setup_data(&s);
    write_incomplete(&s);
    train_ok(&s, "--epochs 5 --out run");
    run_main(&s, &r, "eval --data x=x.csv --data w=w_na.csv --checkpoint run/last.ckpt --samples 50 --json e.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "test examples by observed modalities: x,w 40, x 20"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "examples  proposal"), "%s", r.out);
    cr_assert_null(strstr(r.out, "impossible"), "%s", r.out);
    char *json = work_file(&s, "e.json", NULL);
    cr_assert_eq(json_examples(json, NULL, "elbo"), 40);
    cr_assert_eq(json_examples(json, "\"log_p\"", "x,w"), 40);
    cr_assert_eq(json_examples(json, "\"log_p\"", "x"), 60);
    cr_assert_eq(json_examples(json, "\"log_p\"", "w"), 40);
    cr_assert_eq(json_examples(json, "\"accuracy\"", "w|x"), 40);
    double joint = json_mean(json, "log_p", "x,w"), pw = json_mean(json, "log_p", "w");
    cr_assert_float_eq(json_mean(json, "log_p_cond", "x|w"), joint - pw, 1e-6); /* the same 40 examples */
    free(json);

    run_main(&s, &r, "eval " DATA " --checkpoint run/last.ckpt --samples 50 --limit 12 --json a.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_null(strstr(r.out, "observed modalities"), "%s", r.out);
    cr_assert_null(strstr(r.out, "examples  proposal"), "%s", r.out);
    run_main(&s, &r, "eval " DATA " --observed w=ones.csv --checkpoint run/last.ckpt --samples 50 --limit 12 "
                     "--json b.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *a = work_file(&s, "a.json", NULL), *b = work_file(&s, "b.json", NULL);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
    remove_tree(s.root);
}

Test(eval, does_not_depend_on_the_batch)
{
    scratch s;
    result r;
    setup_data(&s);
    train_ok(&s, "--epochs 2 --out run");
    run_main(&s, &r, "eval " DATA " --checkpoint run/last.ckpt --samples 50 --batch 50 --limit 9 --json a.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    run_main(&s, &r, "eval " DATA " --checkpoint run/last.ckpt --samples 50 --batch 7 --limit 9 --json b.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *a = work_file(&s, "a.json", NULL), *b = work_file(&s, "b.json", NULL);
    cr_assert_float_eq(json_mean(a, "log_p", "x,w"), json_mean(b, "log_p", "x,w"), 1e-9);
    cr_assert_float_eq(json_mean(a, "log_p", "w"), json_mean(b, "log_p", "w"), 1e-9);
    cr_assert_not_null(strstr(a, "\"examples\": 9"));
    free(a);
    free(b);
    remove_tree(s.root);
}

/* Each example encoded from what it has: the complete ones with q(z|x,w),
 * those without w with q(z|x), in the order of the data. */
Test(encode, each_example_from_the_modalities_it_has)
{
    scratch s;
    result r;
    setup_data(&s);
    write_incomplete(&s);
    train_ok(&s, "--epochs 2 --out run");
    run_main(&s, &r, "encode --checkpoint run/last.ckpt --data x=x.csv --data w=w_na.csv --csv z.csv --batch 7");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "examples by observed modalities: x,w 40, x 20"), "%s", r.out);
    run_main(&s, &r, "encode --checkpoint run/last.ckpt " DATA " --csv zxw.csv");
    cr_assert_eq(r.code, 0, "%s", r.err);
    run_main(&s, &r, "encode --checkpoint run/last.ckpt --data x=x.csv --csv zx.csv");
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *z = work_file(&s, "z.csv", NULL), *zxw = work_file(&s, "zxw.csv", NULL), *zx = work_file(&s, "zx.csv", NULL);
    cr_assert_eq(count_lines(z), 61);
    for (int i = 0; i < 60; i++)
        for (int c = 0; c < 2; c++) {
            const char *col = c ? "z_1" : "z_0";
            double want = csv_value(i % 3 == 1 ? zx : zxw, i + 1, col);
            cr_assert_float_eq(csv_value(z, i + 1, col), want, 1e-6, "example %d, %s", i, col);
        }
    free(z);
    free(zxw);
    free(zx);
    expect_refusal(&s, "encode --checkpoint run/last.ckpt --data x=x.csv --data w=w_na.csv --csv o.csv --family x,w",
                   "--family x,w reads the same modalities for every example");
    expect_refusal(&s, "sample --checkpoint run/last.ckpt --png o.png --mode reconstruct --data x=x.csv "
                       "--data w=w_na.csv --draw x",
                   "some are missing");
    remove_tree(s.root);
}

Test(sample, writes_grids_of_the_right_size)
{
    scratch s;
    result r;
    unsigned w, h;
    setup_data(&s);
    train_ok(&s, "--epochs 2 --out run");
    run_main(&s, &r, "sample --checkpoint run/last.ckpt --png cond.png");
    cr_assert_eq(r.code, 0, "%s", r.err);
    png_size(&s, "cond.png", &w, &h);
    cr_assert(w == 10 * 3 + 1 && h == 3 * 3 + 1, "conditional %ux%u", w, h);
    run_main(&s, &r, "sample --checkpoint run/last.ckpt --png one.png --given w=2 --n 4");
    cr_assert_eq(r.code, 0, "%s", r.err);
    png_size(&s, "one.png", &w, &h);
    cr_assert(w == 4 * 3 + 1 && h == 3 + 1, "given %ux%u", w, h);
    run_main(&s, &r, "sample --checkpoint run/last.ckpt --png prior.png --mode prior --n 5 --seed 3");
    cr_assert_eq(r.code, 0, "%s", r.err);
    png_size(&s, "prior.png", &w, &h);
    cr_assert(w == 16 && h == 16, "prior %ux%u", w, h);
    run_main(&s, &r, "sample --checkpoint run/last.ckpt --png rec.png --mode reconstruct --data x=x.csv --n 12");
    cr_assert_eq(r.code, 0, "%s", r.err);
    png_size(&s, "rec.png", &w, &h);
    cr_assert(w == 10 * 3 + 1 && h == 4 * 3 + 1, "reconstruct %ux%u", w, h);
    remove_tree(s.root);
}

Test(encode, writes_means_and_a_scatter)
{
    scratch s;
    result r;
    unsigned w, h;
    setup_data(&s);
    train_ok(&s, "--epochs 2 --out run");
    run_main(&s, &r, "encode --checkpoint run/last.ckpt " DATA " --csv z.csv --png z.png --batch 7");
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *csv = work_file(&s, "z.csv", NULL);
    cr_assert_not_null(csv);
    cr_assert_eq(strncmp(csv, "z_0,z_1\n", 8), 0);
    cr_assert_eq(count_lines(csv), 61);
    png_size(&s, "z.png", &w, &h);
    cr_assert(w == 512 && h == 512);
    /* x alone has its own family: the means differ from the joint's */
    run_main(&s, &r, "encode --checkpoint run/last.ckpt --data x=x.csv --csv zx.csv");
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *zx = work_file(&s, "zx.csv", NULL);
    cr_assert_eq(count_lines(zx), 61);
    cr_assert_neq(csv_value(zx, 1, "z_0"), csv_value(csv, 1, "z_0"));
    /* w alone has none: the zero rule, said so */
    run_main(&s, &r, "encode --checkpoint run/last.ckpt --data w=w.csv --csv zw.csv --limit 5");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "JMVAE-zero rule"));
    char *zw = work_file(&s, "zw.csv", NULL);
    cr_assert_eq(count_lines(zw), 6);
    free(csv);
    free(zx);
    free(zw);
    remove_tree(s.root);
}

/* ----------------------------------------------------------- variants -- */

/* The fixture with x declared bernoulli: the objective is unchanged, but
 * the trainer then accepts --binarize for x (and the loader wants [0,1]). */
static jv_model bernoulli_variant(jv_modality_info *mods)
{
    jv_model m = fixture_model;
    memcpy(mods, fixture_modalities, 2 * sizeof *mods);
    mods[0].likelihood = JV_BERNOULLI;
    m.modalities = mods;
    m.fingerprint ^= 1;
    return m;
}

static void write_unit_data(const scratch *s, int n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/u.csv", s->work);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < n * 4; i++)
        fprintf(f, "%.4f%c", jv_uniform_at(5, 5, (uint64_t)i), i % 4 == 3 ? '\n' : ',');
    fclose(f);
}

Test(train, binarize_modes_are_deterministic_and_resumable)
{
    scratch s;
    jv_modality_info mods[2];
    jv_model m = bernoulli_variant(mods);
    main_model = &m;
    setup_data(&s);
    write_unit_data(&s, 60);
    expect_refusal(&s, "train --data x=x.csv --data w=w.csv", "x.csv");    /* values outside [0,1] */
    expect_refusal(&s, "train --data x=u.csv --data w=w.csv --binarize x=coin", "must be none, threshold or");
    expect_refusal(&s, "train --data x=u.csv --data w=w.csv --binarize w=threshold", "no bernoulli modality");
    const char *runs[] = {"--out none", "--out thr --binarize x=threshold", "--out res --binarize x=resample",
                          "--out res2 --binarize x=resample"};
    for (int i = 0; i < 4; i++) {
        result r;
        run_main(&s, &r, "train --data x=u.csv --data w=w.csv --epochs 2 --batch 7 %s", runs[i]);
        cr_assert_eq(r.code, 0, "%s: %s", runs[i], r.err);
    }
    same_files(&s, "res/last.ckpt", "res2/last.ckpt");
    size_t n1, n2, n3;
    char *a = work_file(&s, "none/last.ckpt", &n1), *b = work_file(&s, "thr/last.ckpt", &n2),
         *c = work_file(&s, "res/last.ckpt", &n3);
    cr_assert(memcmp(a, b, n1) != 0 && memcmp(a, c, n1) != 0 && memcmp(b, c, n1) != 0);
    free(a);
    free(b);
    free(c);
    result r;
    run_main(&s, &r, "train --data x=u.csv --data w=w.csv --epochs 1 --batch 7 --out part --binarize x=resample");
    cr_assert_eq(r.code, 0, "%s", r.err);
    run_main(&s, &r, "train --data x=u.csv --data w=w.csv --epochs 2 --batch 7 --resume part/last.ckpt "
                     "--binarize x=resample");
    cr_assert_eq(r.code, 0, "%s", r.err);
    same_files(&s, "res/last.ckpt", "part/last.ckpt");
    /* a checkpoint of another model is refused */
    main_model = &fixture_model;
    expect_refusal(&s, "eval " DATA " --checkpoint res/last.ckpt", "res/last.ckpt");
    remove_tree(s.root);
}

static int gradcheck_calls;

/* Stands in for the generated gradcheck: checks what jv_main passes on. */
static int fake_gradcheck(int argc, char **argv)
{
    gradcheck_calls++;
    return argc == 3 && strcmp(argv[0], "gradcheck") == 0 && strcmp(argv[1], "--seed") == 0 ? 7 : 8;
}

Test(gradcheck, jv_main_hands_over_its_arguments)
{
    scratch s;
    result r;
    make_scratch(&s);
    main_gradcheck = fake_gradcheck;
    run_main(&s, &r, "gradcheck --seed 3");
    cr_assert_eq(r.code, 7);
    cr_assert_eq(gradcheck_calls, 1);
    remove_tree(s.root);
}

Test(eval, joint_fallback_uses_the_real_data)
{
    scratch s;
    result r;
    setup_data(&s);
    train_ok(&s, "--epochs 10 --out run");
    run_main(&s, &r, "eval " DATA " --checkpoint run/last.ckpt --samples 100 --json z.json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    run_main(&s, &r, "eval " DATA " --checkpoint run/last.ckpt --samples 100 --json j.json --fallback joint");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "--fallback joint"), "%s", r.out);
    char *z = work_file(&s, "z.json", NULL), *j = work_file(&s, "j.json", NULL);
    /* w has no family of its own: the family rule feeds x as zeros, or the real x */
    cr_assert_not_null(strstr(z, "\"proposal\": \"q(z|x,w) with x fed as zeros (the JMVAE-zero rule"), "%s", z);
    cr_assert_not_null(strstr(j, "\"proposal\": \"q(z|x,w) given the real x (--fallback joint"), "%s", j);
    cr_assert_float_eq(json_mean(z, "log_p", "x,w"), json_mean(j, "log_p", "x,w"), 1e-9);
    cr_assert_float_eq(json_mean(z, "log_p", "x"), json_mean(j, "log_p", "x"), 1e-9);
    /* the reported log p(w) comes from the prior either way; the family rule's differs */
    cr_assert_float_eq(json_mean(z, "log_p", "w"), json_mean(j, "log_p", "w"), 1e-9);
    cr_assert_neq(json_mean(z, "log_p_family_rule", "w"), json_mean(j, "log_p_family_rule", "w"));
    free(z);
    free(j);
    remove_tree(s.root);
}
