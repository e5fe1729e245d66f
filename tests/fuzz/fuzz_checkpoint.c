/* fuzz_checkpoint.c: libFuzzer harness for the checkpoint loader, built
 * with JV_FUZZ_SKIP_CRC so that the fuzzer gets past the checksum to the
 * structure behind it. The bytes become a file, loaded for a small model;
 * a refusal must come with a message and leave the caller's buffers
 * untouched; an accepted file must hold sane progress. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "jv_runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { NP = 12 };

static const jv_tensor_info tensors[] = {{"enc.l1.weight", 2, 5, 0, 0}, {"enc.l1.bias", 1, 2, 10, 1}};

static jv_model small_model(void)
{
    jv_model m;
    memset(&m, 0, sizeof m);
    m.name = "jmvae";
    m.fingerprint = 0x1234abcd5678ef00ull;
    m.n_tensors = 2;
    m.tensors = tensors;
    m.n_params = NP;
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = bytes_to_file("ckpt", data, size);
    jv_model model = small_model();
    float p[NP], m[NP], v[NP];
    memset(p, 0x5a, sizeof p);
    memset(m, 0x5a, sizeof m);
    memset(v, 0x5a, sizeof v);
    jv_checkpoint ck = {.params = p, .m = m, .v = v};
    jv_error err;
    err.msg[0] = 0;
    if (jv_checkpoint_load(path, &model, &ck, &err) != 0) {
        if (!err.msg[0])
            abort();
        unsigned char blank[sizeof p];
        memset(blank, 0x5a, sizeof blank);
        if (memcmp(p, blank, sizeof p) || memcmp(m, blank, sizeof m) || memcmp(v, blank, sizeof v))
            abort(); /* a refused file wrote into the buffers */
        return 0;
    }
    if (ck.n_sums < 0 || ck.n_sums > JV_CK_MAX_SUMS)
        abort();
    return 0;
}
