// synth_main.c - "lmpress synth": write a random-weight model of a given shape.
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "format/lmp_import.h"
#include "format/synth.h"

static const char *HELP =
    "usage: lmpress synth [options] -o OUT.lmp\n"
    "Writes a Llama model with random N(0, 0.02^2) weights (norms 1) from a fixed seed: same options, same file.\n"
    "Default shape: stories110M (dim 768, 12 layers, 12 heads, FFN 2048, vocab 32000, context 1024, tied).\n"
    "  --dim N  --layers N  --heads N  --kv-heads N  --ffn N  --vocab N  --ctx N\n"
    "  --untied               separate classifier (default: tied to the embedding)\n"
    "  --seed N               (default 1)\n"
    "  --tokenizer-from PATH  copy the tokenizer of a model (any importable path)\n"
    "  --tokenizer FILE       with --tokenizer-from PATH being a llama2.c model: its tokenizer.bin\n"
    "  -o, --output FILE\n"
    "  -f, --force            replace OUT if it exists (never the --tokenizer-from model)\n"
    "  -h, --help\n";

int cli_synth_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"dim", required_argument, 0, 'd'},      {"layers", required_argument, 0, 'l'},
        {"heads", required_argument, 0, 'H'},    {"kv-heads", required_argument, 0, 'K'},
        {"ffn", required_argument, 0, 'F'},      {"vocab", required_argument, 0, 'V'},
        {"ctx", required_argument, 0, 'c'},      {"untied", no_argument, 0, 'u'},
        {"seed", required_argument, 0, 's'},     {"tokenizer-from", required_argument, 0, 'T'},
        {"tokenizer", required_argument, 0, 'k'}, {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    lmp_synth_params p = {768, 12, 12, 12, 2048, 32000, 1024, 1, 1, NULL};
    long long v;
    int kv_set = 0, c, force = 0;
    const char *out = NULL, *tok_from = NULL;
    lmp_import_opts io = {0};
    while ((c = cli_getopt("synth", argc, argv, "o:fh", opts)) != -1) {
        switch (c) {
        case 'd': if (cli_parse_int("synth", "--dim", optarg, 2, 65536, &v)) return 2; p.dim = (int)v; break;
        case 'l': if (cli_parse_int("synth", "--layers", optarg, 1, 1024, &v)) return 2; p.n_layers = (int)v; break;
        case 'H': if (cli_parse_int("synth", "--heads", optarg, 1, 1024, &v)) return 2; p.n_heads = (int)v; break;
        case 'K': if (cli_parse_int("synth", "--kv-heads", optarg, 1, 1024, &v)) return 2; p.n_kv_heads = (int)v; kv_set = 1; break;
        case 'F': if (cli_parse_int("synth", "--ffn", optarg, 1, 1 << 20, &v)) return 2; p.ffn = (int)v; break;
        case 'V': if (cli_parse_int("synth", "--vocab", optarg, 1, 1 << 22, &v)) return 2; p.vocab = (int)v; break;
        case 'c': if (cli_parse_int("synth", "--ctx", optarg, 1, 1 << 20, &v)) return 2; p.ctx = (int)v; break;
        case 'u': p.tied = 0; break;
        case 's': if (cli_parse_int("synth", "--seed", optarg, 0, INT64_MAX, &v)) return 2; p.seed = (uint64_t)v; break;
        case 'T': tok_from = optarg; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc) return cli_usage_error("synth", "unexpected argument '%s'", argv[optind]);
    if (!out) return cli_usage_error("synth", "missing -o OUT.lmp");
    if (!kv_set) p.n_kv_heads = p.n_heads;
    if (io.tokenizer_path && !tok_from) return cli_usage_error("synth", "--tokenizer is only used with --tokenizer-from");
    if (io.tokenizer_path && cli_check_input("synth", io.tokenizer_path)) return 1;
    if (tok_from && cli_check_input("synth", tok_from)) return 1;
    if (tok_from && cli_check_clobber("synth", tok_from, io.tokenizer_path, out)) return 2;
    if (cli_check_output("synth", out, force)) return 1;
    lmp_error err = {0};
    lmp_file *tf = NULL;
    if (tok_from) {
        if (lmp_open_any(tok_from, &io, LMP_OPEN_SKIP_CRC, &tf, &err)) return cli_fail(&err);
        p.tokenizer_from = lmp_file_meta(tf);
        uint64_t n;
        const void *d;
        if (lmp_meta_get_arr(p.tokenizer_from, "tokenizer.tokens", LMP_KV_STRING, &d, &n, &err)) {
            lmp_file_close(tf);
            cli_error("synth: %s has no tokenizer", tok_from);
            return 1;
        }
        if ((int64_t)n > p.vocab) {
            lmp_file_close(tf);
            return cli_usage_error("synth", "--vocab %d is smaller than the tokenizer's %llu tokens", p.vocab,
                                   (unsigned long long)n);
        }
    }
    double t0 = lmp_time_now();
    lmp_builder *b = NULL;
    lmp_status st = lmp_synth_build(&p, &b, &err);
    if (!st) {
        lmp_meta_set_str(lmp_builder_meta(b), "provenance.command", cli_command_line());
        st = lmp_builder_write(b, out, &err);
    }
    lmp_builder_free(b);
    lmp_file_close(tf);
    if (st) return cli_fail(&err);
    fprintf(stderr, "lmpress: wrote %s (dim %d, %d layers, %d heads, %d kv heads, ffn %d, vocab %d) in %.1f s\n", out,
            p.dim, p.n_layers, p.n_heads, p.n_kv_heads, p.ffn, p.vocab, lmp_time_now() - t0);
    return 0;
}
