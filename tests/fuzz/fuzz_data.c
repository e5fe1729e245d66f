/* fuzz_data.c: libFuzzer harness for the data loaders. The bytes become a
 * file (the loaders read paths), loaded as a bare matrix (IDX, gzip IDX,
 * NPY or CSV, told apart by their content) and as each kind of modality.
 * Refusals with a message are fine; a crash, a leak, a sanitizer report or
 * a refusal without a message is a bug, and so is a loaded matrix whose
 * values break the promise of the modality (NaN, a Bernoulli value outside
 * [0,1], a categorical row that is not one-hot or a distribution, a
 * missing example that is not a marked row of zeros). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "jv_runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_loaded(const jv_matrix *m, const jv_modality_info *mod)
{
    for (size_t i = 0; i < m->n * m->dim; i++) {
        float x = m->x[i];
        if (!isfinite(x))
            abort();
        if (mod && mod->likelihood == JV_BERNOULLI && (x < 0 || x > 1))
            abort();
        if (mod && mod->likelihood == JV_CATEGORICAL && (x < 0 || x > 1))
            abort();
    }
    if (mod && (int)m->dim != mod->size)
        abort();
    /* missing examples: only where a modality may lack them, counted, rows of zeros */
    if ((m->missing || m->n_missing) && !mod)
        abort();
    size_t missing = 0;
    for (size_t i = 0; m->missing && i < m->n; i++) {
        missing += m->missing[i] != 0;
        for (size_t c = 0; m->missing[i] && c < m->dim; c++)
            if (m->x[i * m->dim + c] != 0)
                abort();
    }
    if (missing != m->n_missing)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = bytes_to_file("data", data, size);
    static const jv_modality_info mods[] = {
        {"x", 4, JV_BERNOULLI, 2, 2, 1}, {"w", 3, JV_CATEGORICAL, 0, 0, 1}, {"g", 2, JV_GAUSSIAN, 0, 0, 1}};
    jv_matrix m;
    jv_error err;
    err.msg[0] = 0;
    if (jv_load_matrix(path, &m, &err) == 0) {
        check_loaded(&m, NULL);
        jv_matrix_free(&m);
    } else if (!err.msg[0]) {
        abort();
    }
    for (size_t k = 0; k < sizeof mods / sizeof mods[0]; k++) {
        err.msg[0] = 0;
        if (jv_load_modality(path, &mods[k], &m, &err) == 0) {
            check_loaded(&m, &mods[k]);
            jv_matrix_free(&m);
        } else if (!err.msg[0]) {
            abort();
        }
    }
    return 0;
}
