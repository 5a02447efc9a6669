// lmpress.c - the executable: dispatches "lmpress COMMAND ..." to the subcommands' *_main functions.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/backend.h"

typedef struct {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} command;

int cli_dump_logits_main(int argc, char **argv);
int cli_bench_main(int argc, char **argv);

static const command commands[] = {
    {"info", cli_info_main, "print a model file's metadata and tensor table"},
    {"import", cli_import_main, "convert llama2.c / HDF5 / Hugging Face / GGUF checkpoints to .lmp"},
    {"export", cli_export_main, "write a model as HDF5 or GGUF"},
    {"run", cli_run_main, "generate text from a prompt"},
    {"eval-ppl", cli_eval_main, "perplexity, KL divergence, top-1 agreement, size and speed of models"},
    {"quantize", cli_quantize_main, "quantize weights to 8 or 4 bits (RTN, activation-weighted, AWQ, GPTQ)"},
    {"prune", cli_prune_main, "remove attention heads, FFN channels or layers (structured pruning)"},
    {"bench", cli_bench_main, "measure prefill and decode speed against the memory-bandwidth roofline"},
    {"synth", cli_synth_main, "write a random-weight model of a given shape (benchmarks, tests)"},
    {"dump-logits", cli_dump_logits_main, "write the logits of a token sequence (for reference checks)"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "lmpress %s - compress, run and evaluate Llama-family language models\n\n"
            "usage: lmpress COMMAND [options]    (lmpress COMMAND --help for details)\n\ncommands:\n",
            LMP_VERSION_STRING);
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\nModel paths may be .lmp files or any importable checkpoint (llama2.c .bin, .gguf, .h5, a Hugging\n"
            "Face directory), which is converted in memory.\n");
}

int main(int argc, char **argv) {
    cli_set_command_line(argc, argv);
    lmp_cpu_blas_single_threaded();  // one thread pool owns the cores (runtime/backend.h)
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("lmpress %s\n", LMP_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (!strcmp(cmd, commands[i].name)) {
            cli_getopt_reset();
            return commands[i].main(argc - 1, argv + 1);
        }
    }
    cli_error("unknown command '%s' (see 'lmpress --help')", cmd);
    return 2;
}
