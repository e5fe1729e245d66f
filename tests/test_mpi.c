/* test_mpi.c: the trainer on MPI (its Makefile's MPI=1), against the same
 * trainer in one process.
 *
 * The committed JMVAE-kl trainer is built twice under build/tests/mpi/ (one
 * process, and MPI=1), once for the whole suite (a lock keeps the tests that
 * run at once from building together). Each test trains or evaluates on a
 * slice of Fashion-MNIST in a fresh folder and runs `mpirun --oversubscribe
 * -np N` on this machine: the checkpoints must be the same bytes as the
 * one-process run with the same --chunks, eval's numbers the same, and a
 * lost process or bad data on one of them must end the job with a message
 * naming it, never a hang. Without Open MPI the tests say so and skip.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shell_util.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
#define DATA "--data x=" FMNIST "/train-images-idx3-ubyte.gz --data w=" FMNIST "/train-labels-idx1-ubyte.gz"
#define TEST_DATA "--data x=" FMNIST "/t10k-images-idx3-ubyte.gz --data w=" FMNIST "/t10k-labels-idx1-ubyte.gz"
#define TRAIN "train " DATA " --limit 1200 --batch 100 --seed 3 --threads 1 --ckpt-minutes 0"
/* mpirun as root needs these; ASan's leak check would count Open MPI's own allocations */
#define MPIRUN "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 " \
               "ASAN_OPTIONS=detect_leaks=0 timeout 300 mpirun --oversubscribe"

static char root[1024], serial[1200], mpi[1200], work[256];

static void sh(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sh(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

/* Runs a command in the test's folder; its status, its output in *out. */
static int run_in(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_in(char **out, const char *fmt, ...)
{
    char cmd[8192], full[8192 + 300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd '%s' && {\n%s\n}", work, cmd); /* the braces keep a & inside */
    return run_command(full, out);
}

/* Runs a command in the test's folder that must succeed. */
static void ok(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(const char *what, const char *fmt, ...)
{
    char cmd[8192], *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = run_in(&out, "%s", cmd);
    cr_assert_eq(rc, 0, "%s failed (%d):\n%s", what, rc, out ? out : "");
    free(out);
}

/* Builds both trainers once; skips the test where Open MPI is missing. */
static void setup(void)
{
    const char *r = getenv("JMVAEC_ROOT");
    snprintf(root, sizeof root, "%s", r && *r ? r : ".");
    char probe[1200];
    sh(probe, sizeof probe, "%s/build/libjmvaec_mpi.a", root);
    struct stat st;
    if (run_command("command -v mpirun && command -v mpicc", NULL) != 0 || stat(probe, &st) != 0)
        cr_skip_test("Open MPI is not installed (libopenmpi-dev, openmpi-bin: .ci/install-deps installs them), "
                     "or the runtime was built without it: the MPI tests were skipped");
    char flags[512], cmd[8192], *out = NULL;
    sanitize_make_flags(flags, sizeof flags);
    sh(serial, sizeof serial, "%s/build/tests/mpi/serial/jmvae_kl", root);
    sh(mpi, sizeof mpi, "%s/build/tests/mpi/mpi/jmvae_kl", root);
    sh(cmd, sizeof cmd,
       "cd '%s' && mkdir -p build/tests/mpi/serial build/tests/mpi/mpi && (flock 9 && "
       "for k in serial mpi; do cp -p generated/jmvae_kl/*.[ch] generated/jmvae_kl/Makefile build/tests/mpi/$k/ && "
       "make -s -C build/tests/mpi/$k JMVAEC=%s/jmvaec MPI=$([ $k = mpi ] && echo 1 || echo 0) %s || exit 1; "
       "done) 9> build/tests/mpi/lock",
       root, root, flags);
    int rc = run_command(cmd, &out);
    cr_assert_eq(rc, 0, "building the trainers failed:\n%s", out);
    free(out);
    char *dir = temp_folder("mpi");
    cr_assert_not_null(dir);
    snprintf(work, sizeof work, "%s", dir);
    free(dir);
}

static void teardown(void)
{
    if (work[0])
        remove_folder(work);
}

static void same_file(const char *a, const char *b)
{
    char *out = NULL;
    int rc = run_in(&out, "cmp '%s' '%s'", a, b);
    cr_expect_eq(rc, 0, "%s and %s differ: %s", a, b, out);
    free(out);
}

TestSuite(mpi, .init = setup, .fini = teardown, .timeout = 900);

Test(mpi, checkpoints_are_the_same_bytes_for_1_2_3_and_4_processes)
{
    char *out = NULL;
    ok("one process", "%s " TRAIN " --epochs 2 --chunks 4 --out one", serial);
    ok("mpirun -np 1", MPIRUN " -np 1 %s " TRAIN " --epochs 2 --chunks 4 --out np1", mpi);
    int rc = run_in(&out, MPIRUN " -np 2 %s " TRAIN " --epochs 2 --chunks 4 --out np2", mpi);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "summed over 4 parts") && strstr(out, "MPI: 2 processes"), "%s", out);
    cr_expect_null(strstr(out, "rank 1"), "only process 0 prints: %s", out);
    free(out);
    /* 3 does not divide 4: the slower exchange through process 0, the same bits */
    ok("mpirun -np 3", MPIRUN " -np 3 %s " TRAIN " --epochs 2 --chunks 4 --out np3", mpi);
    ok("mpirun -np 4", MPIRUN " -np 4 %s " TRAIN " --epochs 2 --chunks 4 --out np4", mpi);
    ok("mpirun -np 2, 2 threads each", MPIRUN " -np 2 %s " TRAIN " --epochs 2 --chunks 4 --threads 2 --out np2t2", mpi);
    for (int i = 0; i < 5; i++) {
        static const char *const runs[] = {"np1", "np2", "np3", "np4", "np2t2"};
        char b[64];
        snprintf(b, sizeof b, "%s/last.ckpt", runs[i]);
        same_file("one/last.ckpt", b);
    }
    /* the parts change the sums: one part is another run, and says so by its bytes */
    ok("one part", "%s " TRAIN " --epochs 2 --out plain", serial);
    rc = run_in(&out, "cmp -s one/last.ckpt plain/last.ckpt");
    cr_expect_neq(rc, 0, "a run in 4 parts gave the bytes of a run in one");
    free(out);
}

Test(mpi, a_run_resumes_on_another_number_of_processes)
{
    ok("uninterrupted", "%s " TRAIN " --epochs 3 --chunks 4 --out whole", serial);
    ok("epoch 1 on 4", MPIRUN " -np 4 %s " TRAIN " --epochs 1 --chunks 4 --out cut", mpi);
    /* the checkpoint records its 4 parts: resumed without --chunks, the run keeps them */
    ok("epoch 2 on 2", MPIRUN " -np 2 %s " TRAIN " --epochs 2 --resume cut/last.ckpt", mpi);
    ok("epoch 3 on 1", "%s " TRAIN " --epochs 3 --resume cut/last.ckpt", serial);
    same_file("whole/last.ckpt", "cut/last.ckpt");
    /* other parts are allowed, and said */
    char *out = NULL;
    int rc = run_in(&out, "%s " TRAIN " --epochs 4 --chunks 2 --resume cut/last.ckpt", serial);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "note: --chunks 2, where cut/last.ckpt was trained in 4 parts"), "%s", out);
    free(out);
}

Test(mpi, eval_gives_the_numbers_of_one_process)
{
    ok("train", "%s " TRAIN " --epochs 1 --out run", serial);
    const char *eval = "eval --checkpoint run/last.ckpt " TEST_DATA " --limit 130 --samples 20 --threads 1 "
                       "--prior-samples 1000 --class-samples 5 --batch 100";
    ok("eval, one process", "%s %s --json one.json", serial, eval);
    ok("eval, 2 processes", MPIRUN " -np 2 %s %s --json two.json", mpi, eval);
    ok("eval, 3 processes", MPIRUN " -np 3 %s %s --json three.json", mpi, eval);
    same_file("one.json", "two.json");
    same_file("one.json", "three.json");
}

Test(mpi, a_killed_process_ends_the_job_and_the_checkpoint_stays_good)
{
    char *out = NULL;
    /* a long run; once its first checkpoint is there, one process is killed */
    int rc = run_in(&out,
                    "(" MPIRUN " -np 2 %s " TRAIN " --epochs 400 --chunks 2 --out run > log 2>&1; echo $? > status) & "
                    "for i in $(seq 600); do [ -f run/last.ckpt ] && break; sleep 0.1; done; sleep 0.5; "
                    /* the trainer's processes started in this folder: the last one's rank is 1 */
                    "victim=$(for p in $(pgrep jmvae_kl); do [ \"$(readlink /proc/$p/cwd)\" = \"$PWD\" ] && "
                    "[ \"$(readlink /proc/$p/exe)\" = '%s' ] && echo $p; done | tail -1); kill -9 $victim; "
                    "for i in $(seq 600); do [ -f status ] && break; sleep 0.1; done; cat status log",
                    mpi, mpi);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect_neq(atoi(out), 0, "the job went on or ended well after a process was killed:\n%s", out);
    cr_expect(strstr(out, "process rank") && strstr(out, "signal 9"), "no message naming the process:\n%s", out);
    free(out);
    ok("the last checkpoint evaluates", "%s eval --checkpoint run/last.ckpt " TEST_DATA " --limit 20 --samples 2 --threads 1", serial);
}

Test(mpi, bad_data_on_one_process_ends_the_job_with_its_rank_and_reason)
{
    char *out = NULL;
    ok("a damaged copy", "head -c 5000 " FMNIST "/train-images-idx3-ubyte.gz > bad.gz");
    const char *rest = "--data w=" FMNIST "/train-labels-idx1-ubyte.gz --limit 1200 --threads 1 --out run";
    int rc = run_in(&out,
                    MPIRUN " -np 1 %s train --data x=" FMNIST "/train-images-idx3-ubyte.gz %s : "
                           "-np 1 %s train --data x=bad.gz %s",
                    mpi, rest, mpi, rest);
    cr_expect_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_expect(strstr(out, "(rank 1 of 2)") && strstr(out, "bad.gz"), "no message naming rank 1 and its file:\n%s",
              out);
    cr_expect_null(strstr(out, "(rank 0 of 2)"), "rank 0 had nothing wrong:\n%s", out);
    free(out);
    rc = run_in(&out, "test ! -e run");
    cr_expect_eq(rc, 0, "a refused run left a folder");
    free(out);
}

Test(mpi, what_cannot_run_on_processes_is_refused)
{
    char *out = NULL;
    int rc = run_in(&out, MPIRUN " -np 2 %s " TRAIN " --chunks 1 --out run", mpi);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "--chunks 1: fewer parts than the 2 processes"), "%s", out);
    free(out);
    ok("train", "%s " TRAIN " --epochs 1 --out run", serial);
    rc = run_in(&out, MPIRUN " -np 2 %s sample --checkpoint run/last.ckpt --out s.png", mpi);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "'sample' runs in one process"), "%s", out);
    cr_expect(access("s.png", F_OK) != 0);
    free(out);
    /* the one-process build says what MPI=1 gives */
    rc = run_in(&out, "%s " TRAIN " --epochs 1 --chunks 2 --out two", serial);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "one process (built without MPI)"), "%s", out);
    free(out);
}

/* A convolutional JMVAE-kl (a small one: convolutions and a transposed one
 * on the images) on 2 processes against one process with the same parts. */
static const char conv_spec[] =
    "model conv_small\n"
    "modality x[28, 28] ~ bernoulli\nmodality w[10] ~ categorical\nlatent z[8] ~ normal\n"
    "net f_x = x -> relu(conv(4, 4, stride=2, pad=1)) -> silu(conv(8, 4, stride=2, pad=1, bias=no)) -> flatten\n"
    "net q_xw = concat(f_x, w) -> relu(32) -> q(z | x, w)\n"
    "net q_x = f_x -> q(z | x)\n"
    "net p_x = z -> relu(392) -> reshape(8, 7, 7) -> relu(deconv(4, 4, stride=2, pad=1, bias=no))\n"
    "          -> deconv(1, 4, stride=2, pad=1) -> p(x | z)\n"
    "net p_w = z -> relu(32) -> p(w | z)\n"
    "loss {\n  z ~ q(z | x, w)\n  rec_x = -log p(x | z)\n  rec_w = -log p(w | z)\n"
    "  kl = KL(q(z | x, w) || p(z))\n  kl_x = 0.1 * KL(q(z | x, w) || q(z | x))\n}\n";

Test(mpi, a_convolutional_model_is_the_same_bytes_on_processes)
{
    char flags[512], *out = NULL, path[1400];
    snprintf(path, sizeof path, "%s/conv_small.spec", work);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(conv_spec, f);
    fclose(f);
    sanitize_make_flags(flags, sizeof flags);
    int rc = run_in(&out,
                    "for k in serial mpi; do mkdir -p conv_$k && %s/jmvaec conv_small.spec -o conv_$k > /dev/null && "
                    "make -s -C conv_$k JMVAEC=%s/jmvaec MPI=$([ $k = mpi ] && echo 1 || echo 0) %s || exit 1; done",
                    root, root, flags);
    cr_assert_eq(rc, 0, "building the convolutional model failed:\n%s", out);
    free(out);
    ok("one process", "conv_serial/conv_small " TRAIN " --limit 600 --epochs 2 --chunks 2 --out conv_one");
    ok("mpirun -np 2", MPIRUN " -np 2 conv_mpi/conv_small " TRAIN " --limit 600 --epochs 2 --chunks 2 --out conv_two");
    same_file("conv_one/last.ckpt", "conv_two/last.ckpt");
}

/* A model of experts: MMVAE's mixture, its stratified loop and K = 3 samples
 * with DReG (examples/mmvae.spec with jmvaec --samples 3), on 2 processes
 * against one process with the same parts, with complete examples and with
 * 70% of the labels hidden. */
Test(mpi, a_model_of_experts_is_the_same_bytes_on_processes)
{
    char flags[512], *out = NULL;
    sanitize_make_flags(flags, sizeof flags);
    int rc = run_in(&out,
                    "for k in serial mpi; do mkdir -p mmvae_$k && %s/jmvaec %s/examples/mmvae.spec --samples 3 -o mmvae_$k "
                    "> /dev/null && make -s -C mmvae_$k JMVAEC=%s/jmvaec MPI=$([ $k = mpi ] && echo 1 || echo 0) %s "
                    "|| exit 1; done",
                    root, root, root, flags);
    cr_assert_eq(rc, 0, "building MMVAE failed:\n%s", out);
    free(out);
    ok("one process", "mmvae_serial/mmvae " TRAIN " --limit 600 --epochs 2 --chunks 2 --out one");
    ok("mpirun -np 2", MPIRUN " -np 2 mmvae_mpi/mmvae " TRAIN " --limit 600 --epochs 2 --chunks 2 --out two");
    same_file("one/last.ckpt", "two/last.ckpt");
    /* and with most labels missing: each part's examples grouped by what they observe */
    ok("one process, labels dropped", "mmvae_serial/mmvae " TRAIN " --limit 600 --epochs 2 --chunks 2 --drop w=0.7 "
       "--out one_drop");
    ok("mpirun -np 2, labels dropped", MPIRUN " -np 2 mmvae_mpi/mmvae " TRAIN " --limit 600 --epochs 2 --chunks 2 "
       "--drop w=0.7 --out two_drop");
    same_file("one_drop/last.ckpt", "two_drop/last.ckpt");
}
