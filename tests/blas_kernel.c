/* blas_kernel.c: prints the OpenBLAS kernel the trainers run on this CPU
 * (the library's choice, or the one jv_blas_auto would restart them with),
 * so that `make test` can run the test programs, which call BLAS in their
 * own process, on the same kernel. Not a test suite. */
#include <stdio.h>

#include "jv_runtime.h"

char *openblas_get_corename(void);

int main(void)
{
    jv_cpu_features f;
    jv_cpu_detect(&f);
    const char *library = openblas_get_corename();
    const char *better = jv_blas_better_kernel(library, &f);
    printf("%s\n", better ? better : library);
    return 0;
}
