/* fuzz_spec.c: libFuzzer harness for the whole compiler on the bytes of a
 * spec: scanner, parser, checker and, for a spec that passes, lowering,
 * differentiation, tasks, planning and emission of every file (to
 * /dev/null). Diagnostics are fine; a crash, a leak, a sanitizer report, a
 * hang or an internal error (status 2) is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *null;
    if (!null && !(null = fopen("/dev/null", "w")))
        abort();
    if (size > (1u << 16))
        return 0;
    if (compile_text("fuzz.spec", (const char *)data, size, null, null) == 2)
        abort();
    return 0;
}
