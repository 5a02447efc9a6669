// export_main.c - "lmpress export MODEL --hdf5|--gguf -o OUT": write a model in another format.
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "format/lmp_import.h"

static const char *HELP =
    "usage: lmpress export MODEL (--hdf5 | --gguf) -o OUT [-f]\n"
    "  --hdf5              HDF5 following docs/hdf5.md (quantized tensors are dequantized to f32)\n"
    "  --gguf              GGUF v3 for llama.cpp (tensors must be f32, f16, q8_0, q4_0 or q4_1)\n"
    "  -o, --output FILE   written to a temporary name, renamed on success\n"
    "  -f, --force         replace OUT if it exists (never an input)\n"
    "  --tokenizer FILE    llama2.c tokenizer.bin when MODEL is a llama2.c checkpoint\n"
    "  -h, --help\n";

int cli_export_main(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"force", no_argument, 0, 'f'},
                                         {"hdf5", no_argument, 0, 'H'},
                                         {"gguf", no_argument, 0, 'G'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    lmp_import_opts io = {0};
    const char *out = NULL;
    int fmt = 0, c, force = 0;
    while ((c = cli_getopt("export", argc, argv, "o:fh", opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'H': fmt = fmt ? -1 : 'H'; break;
        case 'G': fmt = fmt ? -1 : 'G'; break;
        case 't': io.tokenizer_path = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc - 1) return cli_usage_error("export", "expected exactly one MODEL");
    if (fmt <= 0) return cli_usage_error("export", "choose exactly one of --hdf5 and --gguf");
    if (!out) return cli_usage_error("export", "missing -o OUT");
    const char *src = argv[optind];
    if (cli_check_input("export", src)) return 1;
    if (io.tokenizer_path && cli_check_input("export", io.tokenizer_path)) return 1;
    if (cli_check_clobber("export", src, io.tokenizer_path, out)) return 2;
    if (cli_check_output("export", out, force)) return 1;
    lmp_error err = {0};
    lmp_file *f = NULL;
    if (lmp_open_any(src, &io, LMP_OPEN_DEFAULT, &f, &err)) return cli_fail(&err);
    double t0 = lmp_time_now();
    lmp_status st = fmt == 'H' ? lmp_export_hdf5(f, out, &err) : lmp_export_gguf(f, out, &err);
    lmp_file_close(f);
    if (st) return cli_fail(&err);
    fprintf(stderr, "lmpress: exported %s -> %s (%s) in %.2f s\n", src, out, fmt == 'H' ? "HDF5" : "GGUF",
            lmp_time_now() - t0);
    return 0;
}
