// run_main.c - "lmpress run MODEL": stream a prompt and its continuation to stdout, speeds to stderr.
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "runtime/generate.h"

static const char *HELP =
    "usage: lmpress run MODEL [options]\n"
    "Generates text. The prompt and its continuation go to stdout; prefill and decode speed to stderr.\n"
    "  -p, --prompt TEXT    prompt (default: empty, i.e. start from BOS)\n"
    "  -n, --tokens N       new tokens to generate (default 256)\n"
    "  --temp T             temperature, 0 = greedy (default 1.0)\n"
    "  --top-p P            nucleus sampling threshold in (0, 1] (default 0.9)\n"
    "  --seed S             random seed (default: time)\n"
    "  --ctx N              context length (default: the model's)\n"
    "  -t, --threads N      CPU threads (default: all cores)\n"
    "  --device D           cpu (default), cuda, or auto (CUDA when a GPU is there, else the CPU)\n"
    "  --tokenizer FILE     llama2.c tokenizer.bin when MODEL is a llama2.c checkpoint\n"
    "  -q, --quiet          no speed report\n"
    "  -h, --help\n";

static int print_piece(void *user, const char *bytes, size_t len) {
    *(size_t *)user += len;
    fwrite(bytes, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int cli_run_main(int argc, char **argv) {
    static const struct option opts[] = {{"prompt", required_argument, 0, 'p'},
                                         {"tokens", required_argument, 0, 'n'},
                                         {"temp", required_argument, 0, 'T'},
                                         {"top-p", required_argument, 0, 'P'},
                                         {"seed", required_argument, 0, 's'},
                                         {"ctx", required_argument, 0, 'c'},
                                         {"threads", required_argument, 0, 't'},
                                         {"tokenizer", required_argument, 0, 'k'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"device", required_argument, 0, 'D'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *prompt = "";
    long long n_new = 256, seed = 0, ctx = 0, threads = 0;
    double temp = 1.0, top_p = 0.9;
    lmp_import_opts io = {0};
    const char *device = "cpu";
    int c;
    while ((c = cli_getopt("run", argc, argv, "p:n:t:qh", opts)) != -1) {
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'n': if (cli_parse_int("run", "--tokens", optarg, 0, 1 << 24, &n_new)) return 2; break;
        case 'T': if (cli_parse_float("run", "--temp", optarg, 0, 100, &temp)) return 2; break;
        case 'P': if (cli_parse_float("run", "--top-p", optarg, 1e-6, 1, &top_p)) return 2; break;
        case 's': if (cli_parse_int("run", "--seed", optarg, 0, INT64_MAX, &seed)) return 2; break;
        case 'c': if (cli_parse_int("run", "--ctx", optarg, 1, 1 << 24, &ctx)) return 2; break;
        case 't': if (cli_parse_int("run", "--threads", optarg, 1, 256, &threads)) return 2; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'D': if (cli_parse_device("run", optarg, &device)) return 2; break;
        case 'q': cli_verbosity = 0; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc - 1) return cli_usage_error("run", "expected exactly one MODEL");
    const char *path = argv[optind];
    if (cli_check_input("run", path)) return 1;
    if (io.tokenizer_path && cli_check_input("run", io.tokenizer_path)) return 1;
    lmp_error err = {0};
    lmp_model *m = NULL;
    if (lmp_model_load(path, &io, &m, &err)) return cli_fail(&err);
    if (!m->tok) {
        lmp_model_free(m);
        cli_error("run: '%s' has no tokenizer (give --tokenizer FILE for a llama2.c checkpoint)", path);
        return 1;
    }
    if (ctx > m->cfg.ctx) {
        int mc = m->cfg.ctx;
        lmp_model_free(m);
        return cli_usage_error("run", "--ctx %lld is larger than the model's context length %d", ctx, mc);
    }
    lmp_session_opts so = {(int)ctx, 0, (int)threads, cli_resolve_device("run", device), NULL};
    lmp_session *s = NULL;
    lmp_sampler sm;
    int rc = 1;
    if (cli_session_new("run", m, &so, device, &s, &err)) goto done;
    if (lmp_sampler_init(&sm, m->cfg.vocab, (float)temp, (float)top_p, seed ? (uint64_t)seed : (uint64_t)time(NULL),
                         &err))
        goto done;
    lmp_gen_stats gs;
    size_t printed = 0;
    lmp_status st = lmp_generate(s, prompt, (int)n_new, &sm, print_piece, &printed, &gs, &err);
    lmp_sampler_free(&sm);
    if (!st || printed) printf("\n");  // nothing on stdout when the prompt is refused
    fflush(stdout);
    if (st) goto done;
    if (cli_verbosity >= 1)
        fprintf(stderr, "lmpress: prefill %d tokens at %.1f tok/s, decode %d tokens at %.1f tok/s\n", gs.n_prompt,
                gs.prefill_s > 0 ? gs.n_prompt / gs.prefill_s : 0.0, gs.n_decode,
                gs.decode_s > 0 ? gs.n_decode / gs.decode_s : 0.0);
    rc = 0;
done:
    if (rc) cli_fail(&err);
    lmp_session_free(s);
    lmp_model_free(m);
    return rc;
}
