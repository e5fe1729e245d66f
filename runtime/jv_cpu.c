/* jv_cpu.c: what the CPU can do, and the OpenBLAS kernel that goes with it.
 *
 * OpenBLAS built with DYNAMIC_ARCH picks its kernel from the CPU model when
 * the library is loaded. A release that does not know a new CPU falls back
 * to a generic kernel (Debian 12's 0.3.21 gives "Prescott" on Intel family 6
 * model 207, about 5x slower than its SkylakeX kernel on the same chip). The
 * trainer checks this before it does anything: when the library reports a
 * kernel older than what cpuid (and the OS) allow, the program executes
 * itself again with OPENBLAS_CORETYPE naming the kernel that fits, which
 * OpenBLAS reads when it is loaded. A user's own OPENBLAS_CORETYPE always
 * wins, and JMVAEC_BLAS_AUTO=0 keeps the library's choice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "jv_runtime.h"

char *openblas_get_corename(void);
char *openblas_get_config(void);

/* --------------------------------------------------------------- cpuid -- */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

void jv_cpu_detect(jv_cpu_features *f)
{
    memset(f, 0, sizeof *f);
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_state = (xcr0 & 0x6) == 0x6;              /* SSE and AVX state saved by the OS */
    int zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0; /* opmask and upper ZMM state */
    f->avx = avx && ymm_state;
    f->fma = fma && f->avx;
    if (__get_cpuid_max(0, NULL) < 7)
        return;
    __cpuid_count(7, 0, a, b, c, d);
    f->avx2 = ((b >> 5) & 1) && f->avx;
    int avx512f = (b >> 16) & 1, dq = (b >> 17) & 1, cd = (b >> 28) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    f->avx512 = avx512f && dq && cd && bw && vl && zmm_state;
}
#else
void jv_cpu_detect(jv_cpu_features *f)
{
    memset(f, 0, sizeof *f);
}
#endif

/* ------------------------------------------------------ OpenBLAS kernels -- */

/* The x86 kernels of OpenBLAS's DYNAMIC_ARCH builds by the widest vector
 * code they run: 1 SSE, 2 AVX, 3 AVX2 with FMA, 4 AVX-512. */
static const struct {
    const char *name;
    int level;
} kernels[] = {
    {"Katmai", 1},     {"Coppermine", 1},  {"Northwood", 1},  {"Prescott", 1},     {"Banias", 1},
    {"Atom", 1},       {"Core2", 1},       {"Penryn", 1},     {"Dunnington", 1},   {"Nehalem", 1},
    {"Athlon", 1},     {"Opteron", 1},     {"Opteron_SSE3", 1}, {"Barcelona", 1},  {"Nano", 1},
    {"Bobcat", 1},     {"Sandybridge", 2}, {"Bulldozer", 2},  {"Piledriver", 2},   {"Steamroller", 2},
    {"Excavator", 2},  {"Haswell", 3},     {"Zen", 3},        {"SkylakeX", 4},     {"Cooperlake", 4},
    {"SapphireRapids", 4},
};

static int kernel_level(const char *name)
{
    for (size_t i = 0; name && i < sizeof kernels / sizeof kernels[0]; i++)
        if (strcasecmp(name, kernels[i].name) == 0)
            return kernels[i].level;
    return 0;
}

const char *jv_blas_better_kernel(const char *current, const jv_cpu_features *f)
{
    int have = kernel_level(current);
    /* an unknown name, or a kernel with AVX2 already (Haswell, Zen, SkylakeX...): the library knows best */
    if (have == 0 || have >= 3)
        return NULL;
    if (f->avx512)
        return "SkylakeX";
    if (f->avx2 && f->fma)
        return "Haswell";
    if (f->avx && have < 2)
        return "Sandybridge";
    return NULL;
}

/* What jv_blas_auto found, for jv_blas_describe. */
static char blas_line[256];

static const char *library_version(char *buf, size_t size)
{
    const char *config = openblas_get_config();
    /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...": the first two words */
    const char *sp = config ? strchr(config, ' ') : NULL;
    const char *end = sp ? strchr(sp + 1, ' ') : NULL;
    size_t n = config ? (end ? (size_t)(end - config) : strlen(config)) : 0;
    snprintf(buf, size, "%.*s", (int)n, config ? config : "OpenBLAS");
    return buf;
}

static const char *features_text(const jv_cpu_features *f)
{
    return f->avx512 ? "AVX-512" : f->avx2 && f->fma ? "AVX2 and FMA" : f->avx ? "AVX" : "no AVX";
}

/* Set in the re-executed process: the kernel the library had picked. */
#define FROM_VAR "JMVAEC_BLAS_FROM"

void jv_blas_auto(char **argv)
{
    jv_cpu_features f;
    jv_cpu_detect(&f);
    char version[64];
    library_version(version, sizeof version);
    const char *core = openblas_get_corename();
    const char *from = getenv(FROM_VAR);
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *off = getenv("JMVAEC_BLAS_AUTO");
    if (from) {
        snprintf(blas_line, sizeof blas_line,
                 "%s, kernel %s, chosen by jmvaec for this CPU (%s): the library's own choice was %s "
                 "(JMVAEC_BLAS_AUTO=0 keeps it)",
                 version, core, features_text(&f), from);
        unsetenv(FROM_VAR);
        return;
    }
    if (user && *user) {
        snprintf(blas_line, sizeof blas_line, "%s, kernel %s, from OPENBLAS_CORETYPE=%s", version, core, user);
        return;
    }
    /* JMVAEC_BLAS_TEST_GENERIC=1 pretends the library chose a generic kernel (tests only) */
    const char *seen = getenv("JMVAEC_BLAS_TEST_GENERIC") ? "Prescott" : core;
    const char *better = jv_blas_better_kernel(seen, &f);
    if (better && off && strcmp(off, "0") == 0) {
        snprintf(blas_line, sizeof blas_line,
                 "%s, kernel %s, the library's choice (JMVAEC_BLAS_AUTO=0; %s would fit this CPU with %s)", version,
                 core, better, features_text(&f));
        return;
    }
    if (better && argv && argv[0]) {
        setenv("OPENBLAS_CORETYPE", better, 1);
        setenv(FROM_VAR, seen, 1);
        fflush(NULL);
        execv("/proc/self/exe", argv);
        int e = errno; /* still here: carry on with the library's kernel */
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv(FROM_VAR);
        snprintf(blas_line, sizeof blas_line,
                 "%s, kernel %s, the library's choice (could not restart with %s: %s; set OPENBLAS_CORETYPE=%s)",
                 version, core, better, strerror(e), better);
        return;
    }
    snprintf(blas_line, sizeof blas_line, "%s, kernel %s, the library's choice for this CPU (%s)", version, core,
             features_text(&f));
}

const char *jv_blas_describe(void)
{
    if (!blas_line[0]) {
        char version[64];
        snprintf(blas_line, sizeof blas_line, "%s, kernel %s", library_version(version, sizeof version),
                 openblas_get_corename());
    }
    return blas_line;
}
