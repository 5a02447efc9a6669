// import_main.c - "lmpress import SRC -o OUT.lmp": convert a foreign checkpoint to the lmpress format.
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "format/lmp_import.h"

static const char *HELP =
    "usage: lmpress import SRC [options] -o OUT.lmp\n"
    "Converts a checkpoint to the lmpress format. SRC may be:\n"
    "  a llama2.c .bin (legacy or version-1 fp32 export) with its tokenizer (--tokenizer, or tokenizer.bin /\n"
    "  tok<vocab>.bin beside it), an HDF5 file (docs/hdf5.md), a Hugging Face Llama directory (config.json +\n"
    "  safetensors), or a GGUF file (llama architecture).\n"
    "  -o, --output FILE   output .lmp file (written to a temporary name, renamed on success)\n"
    "  -f, --force         replace OUT if it exists (never an input)\n"
    "  --tokenizer FILE    llama2.c tokenizer.bin\n"
    "  --no-tokenizer      llama2.c: import the weights alone when no tokenizer is given or found\n"
    "  --dequant           GGUF: dequantize q8_0/q4_0/q4_1 tensors to f32 (default: keep them)\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n";

int cli_import_main(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"force", no_argument, 0, 'f'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"no-tokenizer", no_argument, 0, 'N'},
                                         {"dequant", no_argument, 0, 'd'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"verbose", no_argument, 0, 'v'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    lmp_import_opts io = {0};
    const char *out = NULL;
    int c, no_tok = 0, force = 0;
    while ((c = cli_getopt("import", argc, argv, "o:fqvh", opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 't': io.tokenizer_path = optarg; break;
        case 'N': no_tok = 1; break;
        case 'd': io.dequantize = 1; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc - 1) return cli_usage_error("import", "expected exactly one SRC");
    if (!out) return cli_usage_error("import", "missing -o OUT.lmp");
    const char *src = argv[optind];
    if (cli_check_input("import", src)) return 1;
    if (io.tokenizer_path && cli_check_input("import", io.tokenizer_path)) return 1;
    if (cli_check_clobber("import", src, io.tokenizer_path, out)) return 2;
    if (no_tok && io.tokenizer_path) return cli_usage_error("import", "--no-tokenizer and --tokenizer contradict each other");
    lmp_source_kind kind = lmp_source_detect(src);
    if (kind == LMP_SOURCE_LMP)
        return cli_usage_error("import", "'%s' is already an lmpress file (nothing to import)", src);
    if (kind == LMP_SOURCE_UNKNOWN) {
        cli_error("import: cannot tell the format of '%s' (expected llama2.c .bin, .gguf, HDF5 or a Hugging Face "
                  "directory)", src);
        return 1;
    }
    if (cli_check_output("import", out, force)) return 1;
    double t0 = lmp_time_now();
    lmp_error err = {0};
    lmp_builder *b = NULL;
    if (lmp_import_any(src, &io, &b, &err)) return cli_fail(&err);
    lmp_meta *m = lmp_builder_meta(b);
    // A llama2.c checkpoint carries no tokenizer: without one found beside it the .lmp could not run or be
    // evaluated, so that is an error unless asked for.
    if (kind == LMP_SOURCE_LLAMA2C && !no_tok && !lmp_meta_find(m, "tokenizer.tokens")) {
        uint64_t vocab = 0;
        lmp_meta_get_u64(m, "llama.vocab_size", &vocab, &err);
        lmp_builder_free(b);
        cli_error("import: no tokenizer for '%s': neither tok%llu.bin nor tokenizer.bin is beside it (give "
                  "--tokenizer FILE, or --no-tokenizer to import the weights alone)", src, (unsigned long long)vocab);
        return 1;
    }
    char line[2300];
    snprintf(line, sizeof line, "import: %s", cli_command_line());
    if (lmp_meta_set_str(m, "provenance.command", cli_command_line()) ||
        lmp_meta_append_str(m, "provenance.history", line)) {
        lmp_builder_free(b);
        cli_error("import: out of memory");
        return 1;
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < lmp_builder_n_tensors(b); i++) bytes += lmp_builder_tensor(b, i)->nbytes;
    lmp_status st = lmp_builder_write(b, out, &err);
    size_t nt = lmp_builder_n_tensors(b);
    lmp_builder_free(b);
    if (st) return cli_fail(&err);
    if (cli_verbosity >= 1)
        fprintf(stderr, "lmpress: imported %s (%s): %zu tensors, %.1f MB of weights -> %s in %.2f s\n", src,
                lmp_source_name(kind), nt, bytes / 1e6, out, lmp_time_now() - t0);
    return 0;
}
