/* test_codegen.c: the compiler's output. Golden transcripts of bad specs;
 * generated/ equals what jmvaec emits, byte for byte, from any folder; every
 * spec in specs/ and examples/ compiles, builds and passes its gradient
 * check in double precision; usage and I/O errors exit with status 2. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend_util.h"
#include "shell_util.h"

typedef void (*spec_visitor)(const char *path, const char *name);

/* Calls visit for every *.spec of a folder, in name order. */
static int each_spec(const char *folder, spec_visitor visit)
{
    struct dirent **list;
    int n = scandir(folder, &list, NULL, alphasort), count = 0;
    cr_assert_geq(n, 0, "no folder %s", folder);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list[i]->d_name);
        if (len > 5 && strcmp(list[i]->d_name + len - 5, ".spec") == 0) {
            char path[1024], name[256];
            snprintf(path, sizeof path, "%s/%s", folder, list[i]->d_name);
            snprintf(name, sizeof name, "%.*s", (int)(len - 5), list[i]->d_name);
            visit(path, name);
            count++;
        }
        free(list[i]);
    }
    free(list);
    return count;
}

/* ----------------------------------------------------- golden transcripts -- */

static void compare_transcript(const char *path, const char *name)
{
    (void)name;
    char cmd[1200], expected_path[1200];
    snprintf(cmd, sizeof cmd, "sh tests/transcript.sh %s", path);
    snprintf(expected_path, sizeof expected_path, "%.*s.expected", (int)(strlen(path) - 5), path);
    char *got = NULL;
    run_command(cmd, &got);
    char *expected = read_text(expected_path);
    cr_assert(expected, "missing %s (make update-golden writes it)", expected_path);
    cr_expect_str_eq(got, expected, "%s differs from its transcript; if intended, run make update-golden", path);
    free(got);
    free(expected);
}

Test(golden, bad_spec_transcripts, .timeout = 60)
{
    cr_expect_gt(each_spec("tests/bad", compare_transcript), 10);
}

/* ------------------------------------------------------------ generated/ -- */

static const char *const emitted[] = {".h", ".c", "_f64.c", "_main.c", "Makefile"};

static void compare_generated(const char *path, const char *name)
{
    char *dir = temp_folder("gen");
    cr_assert(dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "./jmvaec %s -o %s/out", path, dir);
    char *out = NULL;
    cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
    free(out);
    for (size_t i = 0; i < sizeof emitted / sizeof *emitted; i++) {
        char file[256], a[1400], b[1400];
        snprintf(file, sizeof file, "%s%s", emitted[i][0] == 'M' ? "" : name, emitted[i]);
        snprintf(a, sizeof a, "%s/out/%s", dir, file);
        snprintf(b, sizeof b, "generated/%s/%s", name, file);
        char *fresh = read_text(a), *golden = read_text(b);
        cr_assert(fresh && golden, "missing %s or %s", a, b);
        cr_expect(strcmp(fresh, golden) == 0, "%s differs from what jmvaec emits; if intended, run make update-golden", b);
        free(fresh);
        free(golden);
    }
    remove_folder(dir);
    free(dir);
}

Test(golden, generated_matches_compiler, .timeout = 60)
{
    cr_expect_eq(each_spec("specs", compare_generated), 3);
}

Test(golden, output_does_not_depend_on_folder)
{
    char *dir = temp_folder("det");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "./jmvaec specs/jmvae_h.spec -o %s/a && mkdir -p %s/x/y && cd %s/x && %s/jmvaec %s/specs/jmvae_h.spec -o y/b "
             "&& diff -r %s/a %s/x/y/b", dir, dir, dir, getenv("PWD"), getenv("PWD"), dir, dir);
    char *out = NULL;
    cr_expect_eq(run_command(cmd, &out), 0, "%s", out);
    free(out);
    remove_folder(dir);
    free(dir);
}

/* --------------------------------------------------------- gradient check -- */

static void build_and_gradcheck(const char *path, const char *name, const char *extra)
{
    (void)name;
    char *dir = temp_folder("gc");
    cr_assert(dir);
    char flags[512], cmd[2048];
    snprintf(cmd, sizeof cmd,
             "./jmvaec %s -o %s && make -s -C %s JMVAEC=%s/jmvaec %s && m=$(ls %s/*_main.c) && ${m%%_main.c} gradcheck %s",
             path, dir, dir, getenv("PWD"), sanitize_make_flags(flags, sizeof flags), dir, extra);
    char *out = NULL;
    int status = run_command(cmd, &out);
    cr_expect_eq(status, 0, "%s: gradcheck failed:\n%s", path, out);
    cr_expect(strstr(out, "gradcheck: PASS") != NULL, "%s:\n%s", path, out);
    free(out);
    remove_folder(dir);
    free(dir);
}

static void gradcheck_spec(const char *path, const char *name)
{
    build_and_gradcheck(path, name, "--quiet");
}

Test(gradcheck, reference_specs, .timeout = 900) { cr_expect_eq(each_spec("specs", gradcheck_spec), 3); }
Test(gradcheck, examples, .timeout = 900) { cr_expect_geq(each_spec("examples", gradcheck_spec), 5); }
Test(gradcheck, batch_of_one, .timeout = 300) { build_and_gradcheck("examples/three_levels.spec", "ladder", "--batch 1"); }

/* ------------------------------------------------------------- the CLI -- */

static void expect_status(const char *cmd, int status, const char *needle)
{
    char *out = NULL;
    int got = run_command(cmd, &out);
    cr_expect_eq(got, status, "%s: exit %d, expected %d:\n%s", cmd, got, status, out);
    if (needle)
        cr_expect(strstr(out, needle) != NULL, "%s: expected '%s' in:\n%s", cmd, needle, out);
    free(out);
}

Test(cli, usage_and_io_errors)
{
    expect_status("./jmvaec", 2, "no spec given");
    expect_status("./jmvaec --frobnicate specs/jmvae.spec", 2, "unknown option '--frobnicate'");
    expect_status("./jmvaec --emit=llvm specs/jmvae.spec", 2, "unknown stage 'llvm'");
    expect_status("./jmvaec specs/jmvae.spec", 2, "no output folder");
    expect_status("./jmvaec --check no/such.spec", 2, "cannot open 'no/such.spec'");
    expect_status("./jmvaec --check specs", 2, "is not a regular file");
    expect_status("./jmvaec specs/jmvae.spec -o /proc/version", 2, "is not a folder");
    expect_status("./jmvaec specs/jmvae.spec -o /proc/nonexistent/x", 2, "cannot create folder");
    expect_status("./jmvaec --check tests/bad/three_errors.spec", 1, "3 errors");
    char *dir = temp_folder("mine");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "echo 'all:' > %s/Makefile && ./jmvaec specs/jmvae.spec -o %s", dir, dir);
    expect_status(cmd, 2, "exists and was not written by jmvaec; not replacing it");
    snprintf(cmd, sizeof cmd, "test \"$(cat %s/Makefile)\" = 'all:' && ! test -e %s/jmvae.c", dir, dir);
    expect_status(cmd, 0, NULL);
    snprintf(cmd, sizeof cmd, "rm %s/Makefile && ./jmvaec specs/jmvae.spec -o %s && ./jmvaec specs/jmvae.spec -o %s", dir,
             dir, dir);
    expect_status(cmd, 0, NULL);
    remove_folder(dir);
    free(dir);
    expect_status("./jmvaec --help", 0, "usage: jmvaec SPEC -o DIR");
    expect_status("./jmvaec --version", 0, "jmvaec ");
    expect_status("./jmvaec --cflags", 0, "/runtime");
}

Test(cli, every_stage_dumps)
{
    expect_status("./jmvaec --emit=ast specs/jmvae_h.spec", 0, "Net q_z2");
    expect_status("./jmvaec --emit=model specs/jmvae_h.spec", 0, "latent 1 z1: 64, prior p_z1");
    expect_status("./jmvaec --emit=ir specs/jmvae_h.spec", 0, "graph posterior_x_w");
    expect_status("./jmvaec --emit=grad specs/jmvae_h.spec", 0, "# backward");
    expect_status("./jmvaec --emit=plan --batch 100 specs/jmvae_kl.spec", 0, "activation arena (largest graph)");
    expect_status("./jmvaec --emit=c specs/jmvae.spec", 0, "jmvae_forward(");
    expect_status("./jmvaec fmt specs/jmvae.spec", 0, "model jmvae");
}

/* After make install, jmvaec and the generated Makefile find the installed
 * runtime from any folder (here DESTDIR stands for the root). */
Test(install, generated_code_builds_against_installed_runtime)
{
    char *dir = temp_folder("inst");
    cr_assert(dir);
    char flags[512], cmd[4096];
    snprintf(cmd, sizeof cmd,
             "make -s install DESTDIR=%s PREFIX=/opt/jv >/dev/null && cd %s && mkdir work && cd work && "
             "%s/opt/jv/bin/jmvaec %s/examples/tiny.spec -o gen && %s/opt/jv/bin/jmvaec --cflags && "
             "make -s -C gen JMVAEC=%s/opt/jv/bin/jmvaec %s && gen/tiny gradcheck --quiet && "
             "test -f %s/opt/jv/lib/pkgconfig/jmvaec.pc && cd %s && make -s uninstall DESTDIR=%s PREFIX=/opt/jv && "
             "! test -e %s/opt/jv/bin/jmvaec",
             dir, dir, dir, getenv("PWD"), dir, dir, sanitize_make_flags(flags, sizeof flags), dir, getenv("PWD"), dir, dir);
    char *out = NULL;
    int status = run_command(cmd, &out);
    cr_expect_eq(status, 0, "%s", out);
    cr_expect(strstr(out, "/opt/jv/bin/../include/jmvaec") != NULL, "--cflags of the installed jmvaec:\n%s", out);
    cr_expect(strstr(out, "gradcheck: PASS") != NULL, "%s", out);
    free(out);
    remove_folder(dir);
    free(dir);
}
