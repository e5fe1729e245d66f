/* test_codegen.c: the compiler's output. Golden transcripts of bad specs;
 * generated/ equals what jmvaec emits, byte for byte, from any folder; every
 * spec in specs/ and examples/ compiles, builds and passes its gradient
 * check in double precision; usage and I/O errors exit with status 2. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdarg.h>
#include <stdint.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend_util.h"
#include "shell_util.h"
#include "fuzz/specgen.h"

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

static const char *const emitted[] = {".h", ".c", "_f64.c", "_main.c", "Makefile", ".py"};

static void compare_generated(const char *path, const char *name)
{
    char *dir = temp_folder("gen");
    cr_assert(dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "./jmvaec %s -o %s/out && ./jmvaec --emit=torch %s -o %s/out", path, dir, path, dir);
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

/* Each stage's text for the reference specs (tests/golden/<model>.<stage>,
 * written by make update-golden): a change to one stage shows in its own. */
static const char *const stages[] = {"model", "ir", "grad", "tasks", "plan"};

static void compare_stages(const char *path, const char *name)
{
    for (size_t i = 0; i < sizeof stages / sizeof *stages; i++) {
        char cmd[1200], golden_path[512];
        snprintf(cmd, sizeof cmd, "./jmvaec --emit=%s %s", stages[i], path);
        snprintf(golden_path, sizeof golden_path, "tests/golden/%s.%s", name, stages[i]);
        char *out = NULL;
        cr_assert_eq(run_command(cmd, &out), 0, "%s", out);
        char *golden = read_text(golden_path);
        cr_assert(golden, "missing %s: run make update-golden", golden_path);
        cr_expect(strcmp(out, golden) == 0, "%s differs from jmvaec --emit=%s; if intended, run make update-golden",
                  golden_path, stages[i]);
        free(out);
        free(golden);
    }
}

Test(golden, each_stage_matches_its_golden_text, .timeout = 60)
{
    cr_expect_eq(each_spec("specs", compare_stages), 3);
    /* and the models of experts: products, mixtures, loops, K samples and DReG */
    static const char *const experts[] = {"mvae", "mmvae", "mopoe"};
    for (size_t i = 0; i < sizeof experts / sizeof *experts; i++) {
        char path[256];
        snprintf(path, sizeof path, "examples/%s.spec", experts[i]);
        compare_stages(path, experts[i]);
    }
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
/* a given (x) block: the step of unlabelled images is checked with the complete one */
Test(gradcheck, semi_supervised, .timeout = 300) { cr_expect_eq(each_spec("examples/semi-supervised", gradcheck_spec), 1); }

/* Writes a spec into a fresh temporary file; its path (malloc'd). */
static char *spec_file(const char *text)
{
    char *dir = temp_folder("spec");
    cr_assert(dir);
    char *path = malloc(strlen(dir) + 16);
    sprintf(path, "%s/s.spec", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    free(dir);
    return path;
}

/* Appends to a growing text. */
static void addf(char **text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void addf(char **text, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char piece[8192];
    vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    size_t n = *text ? strlen(*text) : 0;
    *text = realloc(*text, n + strlen(piece) + 1);
    strcpy(*text + n, piece);
}

/* 60 loss terms (the loss once held at most 40: 41 built and failed the
 * check, 49 crashed the compiler): 6 latents, each with three posterior
 * families over x and y and a decoder of each; every pair of families
 * pulled together. */
Test(gradcheck, sixty_terms, .timeout = 300)
{
    char *t = NULL;
    addf(&t, "model many\nmodality x[3] ~ bernoulli\nmodality y[2] ~ categorical\n");
    const char *sets[] = {"x", "y", "x, y"}, *inputs[] = {"x", "y", "concat(x, y)"};
    for (int l = 0; l < 6; l++)
        addf(&t, "latent z%d[1] ~ normal\n", l);
    for (int l = 0; l < 6; l++) {
        for (int f = 0; f < 3; f++)
            addf(&t, "net q%d_%d = %s -> relu(2) -> q(z%d | %s)\n", l, f, inputs[f], l, sets[f]);
        addf(&t, "net dx%d = z%d -> p(x | z%d)\nnet dy%d = z%d -> p(y | z%d)\n", l, l, l, l, l, l);
    }
    addf(&t, "loss {\n");
    int terms = 0;
    for (int l = 0; l < 6; l++) {
        addf(&t, "  z%d ~ q(z%d | x, y)\n  rx%d = -log p(x | z%d)\n  ry%d = -log p(y | z%d)\n", l, l, l, l, l, l);
        terms += 2;
        for (int a = 0; a < 3; a++) {
            addf(&t, "  prior%d_%d = KL(q(z%d | %s) || p(z%d))\n", l, a, l, sets[a], l);
            terms++;
            for (int b = 0; b < 3; b++)
                if (a != b) {
                    addf(&t, "  pull%d_%d%d = 0.1 * KL(q(z%d | %s) || q(z%d | %s))\n", l, a, b, l, sets[a], l, sets[b]);
                    terms++;
                }
        }
    }
    addf(&t, "}\ntrain {\n  batch = 3\n}\n");
    cr_assert_geq(terms, 49);
    char *path = spec_file(t);
    build_and_gradcheck(path, "many", "--quiet");
    free(path);
    free(t);
}

/* Names of 200 characters (the longest the language takes) in conditioning
 * sets and family names, and 16 modalities of 40: buffers of 512 bytes
 * overflowed on them. */
Test(gradcheck, long_names, .timeout = 300)
{
    char *t = NULL, names[4][201];
    for (int i = 0; i < 4; i++) {
        memset(names[i], 'a' + i, 200);
        names[i][200] = 0;
    }
    addf(&t, "model long\n");
    for (int i = 0; i < 4; i++)
        addf(&t, "modality %s[2] ~ bernoulli\n", names[i]);
    char mods16[16][41];
    for (int i = 0; i < 12; i++) {
        snprintf(mods16[i], sizeof mods16[i], "m%02d_%036d", i, 0);
        addf(&t, "modality %s[1] ~ bernoulli\n", mods16[i]);
    }
    char *all = NULL; /* every modality, as a list */
    for (int i = 0; i < 4; i++)
        addf(&all, "%s%s", i ? ", " : "", names[i]);
    for (int i = 0; i < 12; i++)
        addf(&all, ", %s", mods16[i]);
    addf(&t, "latent z[2] ~ normal\nnet enc = concat(%s) -> relu(3) -> q(z | %s)\n", all, all);
    for (int i = 0; i < 4; i++)
        addf(&t, "net d%d = z -> p(%s | z)\n", i, names[i]);
    addf(&t, "loss {\n  z ~ q(z | %s)\n", all);
    free(all);
    for (int i = 0; i < 4; i++)
        addf(&t, "  r%d = -log p(%s | z)\n", i, names[i]);
    addf(&t, "}\ntrain {\n  batch = 2\n}\n");
    char *path = spec_file(t);
    build_and_gradcheck(path, "long", "--quiet");
    free(path);
    free(t);
}

/* C keywords as spec names: they never appear alone in the emitted code. */
Test(gradcheck, keywords_as_names, .timeout = 300)
{
    char *path = spec_file("model int\nmodality for[4] ~ bernoulli\nlatent while[2] ~ normal\n"
                           "net static = for -> relu(3) -> q(while | for)\nnet return = while -> p(for | while)\n"
                           "loss {\n  while ~ q(while | for)\n  do = -log p(for | while)\n"
                           "  scale = KL(q(while | for) || p(while))\n}\ntrain {\n  batch = 3\n}\n");
    build_and_gradcheck(path, "int", "--quiet");
    free(path);
}

/* count specs of the generator's `mode` from `state`: each is accepted,
 * builds, and passes the gradient check. */
static void gradcheck_generated(uint64_t state, int mode, int count, const char *name)
{
    for (int k = 0; k < count; k++) {
        char text[1 << 14];
        specgen_from_state(&state, mode, text, sizeof text);
        char *path = spec_file(text);
        cr_log_info("generated spec %d:\n%s", k, text);
        build_and_gradcheck(path, name, "--quiet");
        free(path);
    }
}

/* Specs from the fuzzing generator (tests/fuzz/specgen.h), from fixed bytes. */
Test(gradcheck, generated_specs, .timeout = 900)
{
    gradcheck_generated(0x9E3779B97F4A7C15ull, GEN_ANY, sanitized() ? 4 : 8, "generated");
}

/* Specs of posteriors built from experts, from the generator's other
 * branch: rules, loops over sets, subsets and components, K samples and
 * DReG (whose check is the exact gradient of its bound). */
Test(gradcheck, generated_expert_specs, .timeout = 900)
{
    gradcheck_generated(0xC2B2AE3D27D4EB4Full, GEN_EXPERTS, sanitized() ? 4 : 8, "experts");
}

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
