/* jv_trainer.c: jv_main, the entry point of every generated trainer: checks
 * the model descriptor, dispatches to the subcommands (train, eval, sample,
 * encode in their own files; gradcheck in the generated code) and prints
 * the usage with a summary of the model.
 */
#include <stdio.h>
#include <string.h>

#include "jv_comm.h"
#include "jv_trainer_int.h"

static const char *prog_name = "jmvaec-model";

const char *jv_prog_name(void)
{
    return prog_name;
}

static const char *likelihood_name(jv_likelihood l)
{
    switch (l) {
    case JV_BERNOULLI:
        return "bernoulli";
    case JV_CATEGORICAL:
        return "categorical";
    case JV_GAUSSIAN:
        return "gaussian";
    case JV_GAUSSIAN_LEARNED:
        return "gaussian, learned variance";
    }
    return "?";
}

static void print_model(const jv_model *m)
{
    printf("model %s (fingerprint %016llx, %zu parameters)\n  modalities:", m->name,
           (unsigned long long)m->fingerprint, m->n_params);
    for (int i = 0; i < m->n_modalities; i++) {
        const jv_modality_info *mod = &m->modalities[i];
        printf("%s %s (%s, %d", i ? "," : "", mod->name, likelihood_name(mod->likelihood), mod->size);
        if (mod->height > 0 && mod->width > 0)
            printf(" = %dx%d image", mod->height, mod->width);
        printf(")");
    }
    printf("\n  latents:   ");
    for (int i = 0; i < m->n_latents; i++)
        printf("%s %s (%d)", i ? "," : "", m->latents[i].name, m->latents[i].size);
    printf("\n  families:  ");
    for (int i = 0; i < m->n_families; i++)
        printf("%s %s%s", i ? "," : "", m->families[i].name, i == m->training_family ? " (training)" : "");
    printf("\n  terms:     ");
    for (int i = 0; i < m->n_terms; i++)
        printf("%s %s", i ? "," : "", m->term_names[i]);
    printf("\n  hypers:    ");
    for (int i = 0; i < m->n_hypers; i++) {
        const jv_hyper_info *h = &m->hypers[i];
        printf("%s %s = %g", i ? "," : "", h->name, h->value);
        if (h->warmup_epochs > 0)
            printf(" (from %g over %g epochs)", h->warmup_from, h->warmup_epochs);
    }
    printf("%s\n", m->n_hypers ? "" : " none");
    printf("  runtime:   %d cores; %s; optimiser %s\n", jv_cpu_count(), jv_blas_describe(), jv_simd_describe());
}

static void print_usage(const jv_model *m)
{
    printf("usage: %s <command> [options]\n\n"
           "commands:\n"
           "  train      fit the model to data files, writing a log and checkpoints\n"
           "  eval       test ELBO, importance-sampled log-likelihoods, accuracies\n"
           "  sample     draw generated or reconstructed images into a PNG grid\n"
           "  encode     write posterior means as CSV (and a scatter PNG of a 2-D latent)\n"
           "  export     write a checkpoint's tensors as a NumPy .npz archive, under their spec names\n"
           "  gradcheck  compare the analytic gradient with finite differences\n"
           "  help       show this help\n\n"
           "'%s <command> --help' lists a command's options.\n\n",
           prog_name, prog_name);
    print_model(m);
}

/* The descriptor's promises the trainer relies on. */
static int check_model(const jv_model *m)
{
    if (m->n_modalities < 1 || m->n_modalities > 32)
        return jv_fail("model %s: %d modalities (1 to 32 supported)", m->name, m->n_modalities);
    if (m->n_families < 1 || m->training_family < 0 || m->training_family >= m->n_families)
        return jv_fail("model %s: no valid training family", m->name);
    if (m->n_latents < 1)
        return jv_fail("model %s: no latents", m->name);
    if (!m->train || m->train->n_forward < 1 || m->train->n_tasks < m->train->n_forward)
        return jv_fail("model %s: no step graph (emitted by an older jmvaec? compile the spec again)", m->name);
    return 0;
}

typedef int (*command_fn)(const jv_model *m, int argc, char **argv);

static command_fn find_command(const char *name)
{
    static const struct {
        const char *name;
        command_fn run;
    } commands[] = {
        {"train", jv_cmd_train},   {"eval", jv_cmd_eval},        {"sample", jv_cmd_sample},
        {"encode", jv_cmd_encode}, {"export", jv_cmd_export}};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return commands[i].run;
    return NULL;
}

/* The commands that run on several processes; the others run on one. */
static int runs_on_processes(const char *cmd)
{
    return strcmp(cmd, "train") == 0 || strcmp(cmd, "eval") == 0;
}

static int run_command(const jv_model *model, int (*gradcheck)(int argc, char **argv), int argc, char **argv)
{
    if (jv_comm_size() > 1 && argc > 1 && !runs_on_processes(argv[1])) {
        if (jv_comm_rank() == 0)
            fprintf(stderr, "%s: '%s' runs in one process; start it without mpirun (train and eval run on "
                            "several)\n", prog_name, argv[1]);
        return 1;
    }
    if (check_model(model) != 0)
        return 1;
    if (argc < 2)
        return jv_fail("no command given (see '%s help')", prog_name);
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_usage(model);
        return 0;
    }
    if (strcmp(cmd, "gradcheck") == 0) {
        if (!gradcheck)
            return jv_fail("gradcheck: this program was built without a gradient check");
        return gradcheck(argc - 1, argv + 1);
    }
    command_fn run = find_command(cmd);
    if (!run)
        return jv_fail("unknown command '%s' (see '%s help')", cmd, prog_name);
    jv_set_threads(1); /* train and eval take --threads: threads of their own */
    int rc = run(model, argc - 1, argv + 1);
    fflush(stdout);
    return rc == 2 ? 0 : rc;
}

int jv_main(const jv_model *model, int (*gradcheck)(int argc, char **argv), int argc, char **argv)
{
    if (argc > 0 && argv[0] && *argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        prog_name = slash ? slash + 1 : argv[0];
    }
    if (argc > 1 && argv[argc] == NULL)
        jv_blas_auto(argv); /* may start the program again with a better BLAS kernel (before MPI starts) */
    if (jv_comm_init(&argc, &argv) != 0)
        return 1;
    int rc = run_command(model, gradcheck, argc, argv);
    fflush(stdout);
    fflush(stderr);
    jv_comm_finalize();
    return rc;
}
