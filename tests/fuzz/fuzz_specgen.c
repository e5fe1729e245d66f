/* fuzz_specgen.c: structure-aware libFuzzer harness. The fuzzer's bytes
 * are choices for specgen.h, which writes a valid spec from them; the
 * whole compiler runs on it. The spec must be accepted (a refusal means
 * the generator and the checker disagree about the language: both are
 * printed), and every later stage must get through it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "driver.h"
#include "specgen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *null;
    static char spec[1 << 16];
    if (!null && !(null = fopen("/dev/null", "w")))
        abort();
    specgen_write(data, size, spec, sizeof spec);
    int rc = compile_text("gen.spec", spec, strlen(spec), null, null);
    if (rc != 0) {
        fprintf(stderr, "fuzz_specgen: status %d for this generated spec:\n%s\n", rc, spec);
        compile_text("gen.spec", spec, strlen(spec), stderr, NULL);
        abort();
    }
    return 0;
}
