/* jv_trainer_export.c: the export subcommand. A checkpoint's tensors as a
 * NumPy .npz archive (np.load reads it): one float32 array per tensor under
 * its spec name ("enc_x.h1.weight": [fan_in x fan_out]; a bias: [n]), and
 * with --moments Adam's two moments as "adam_m/<name>" and "adam_v/<name>".
 * The archive (jv_npz.c) is the same bytes for the same checkpoint; its
 * comment names the model and step; an existing --npz file is replaced
 * only when jmvaec wrote it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jv_trainer_int.h"

typedef struct {
    const char *checkpoint, *npz;
    int moments;
} export_opts;

static const char EXPORT_ABOUT[] =
    "Writes a checkpoint's tensors as a NumPy .npz archive, each under its spec name\n"
    "(dense weights [fan_in x fan_out], convolutions' PyTorch's [out, in, k, k] and\n"
    "transposed ones' [in, out, k, k], biases [n], float32): np.load(FILE)['enc_x.h1.weight'].\n"
    "--moments adds Adam's moments as adam_m/<name> and adam_v/<name>. An existing FILE\n"
    "is replaced only if jmvaec wrote it.";

static void add_block(jv_npz *w, const jv_model *m, const char *prefix, const float *block)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const jv_tensor_info *t = &m->tensors[i];
        char name[480];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        size_t shape[4] = {(size_t)t->rows, (size_t)t->cols, 0, 0};
        if (t->shape[2]) /* a convolution's weight: PyTorch's layout */
            for (int d = 0; d < 4; d++)
                shape[d] = (size_t)t->shape[d];
        if (t->is_bias)
            jv_npz_add(w, name, block + t->offset, 0, shape + 1, 1);
        else
            jv_npz_add(w, name, block + t->offset, 0, shape, t->shape[2] ? 4 : 2);
    }
}

int jv_cmd_export(const jv_model *m, int argc, char **argv)
{
    export_opts o = {0};
    jv_option opts[] = {
        {"checkpoint", JV_OPT_STRING, &o.checkpoint, 0, 0, "CKPT", "the checkpoint to export (required)", 0},
        {"npz", JV_OPT_STRING, &o.npz, 0, 0, "FILE", "the archive to write (required)", 0},
        {"moments", JV_OPT_FLAG, &o.moments, 0, 0, NULL, "also Adam's moments, as adam_m/<name> and adam_v/<name>",
         0},
    };
    int rc = jv_parse_options("export", "--checkpoint CKPT --npz FILE [--moments]", EXPORT_ABOUT, opts,
                              (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc != 0)
        return rc;
    if (!o.checkpoint || !o.npz)
        return jv_fail("export: missing --%s", o.checkpoint ? "npz FILE" : "checkpoint CKPT");
    if (jv_check_output_path("export", "npz", o.npz) != 0)
        return 1;
    struct stat st;
    if (stat(o.npz, &st) == 0 && (!S_ISREG(st.st_mode) || !jv_npz_ours(o.npz)))
        return jv_fail("export: %s exists and was not written by jmvaec export; it is left as it is (remove it or "
                       "pick another --npz)",
                       o.npz);
    jv_checkpoint ck;
    if (jv_checkpoint_read(m, o.checkpoint, &ck) != 0)
        return 1;
    jv_npz *w = jv_npz_new();
    add_block(w, m, "", ck.params);
    if (o.moments) {
        add_block(w, m, "adam_m/", ck.m);
        add_block(w, m, "adam_v/", ck.v);
    }
    char comment[256];
    snprintf(comment, sizeof comment, "export: model %s (fingerprint %016" PRIx64 "), step %" PRId64, m->name,
             m->fingerprint, ck.step);
    rc = jv_npz_save(w, o.npz, comment, "export");
    if (rc == 0)
        printf("wrote %s: %d arrays (model %s, step %" PRId64 ")\n", o.npz, m->n_tensors * (o.moments ? 3 : 1),
               m->name, ck.step);
    jv_checkpoint_release(&ck);
    return rc;
}
