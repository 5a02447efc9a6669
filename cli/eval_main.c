// eval_main.c - "lmpress eval-ppl MODEL... --data FILE": the accuracy/size/speed comparison table.
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/perplexity.h"
#include "cli/plot.h"

static const char *HELP =
    "usage: lmpress eval-ppl MODEL [MODEL...] --data FILE [options]\n"
    "Perplexity as llama.cpp computes it (non-overlapping chunks of --ctx tokens, BOS first when the tokenizer\n"
    "adds one, second half of each chunk scored). With two or more models the first is the base: the others\n"
    "also get the mean KL divergence from the base's next-token distribution and the top-1 agreement.\n"
    "  --data FILE          text to evaluate (required)\n"
    "  --ctx N              chunk length (default: the model's context, at most 512)\n"
    "  --chunks N           evaluate only the first N chunks (default: all)\n"
    "  --decode-tokens N    single-token passes timed for decode tok/s (default 64, 0 to skip)\n"
    "  -t, --threads N      CPU threads (default: all cores)\n"
    "  --json               print one JSON object instead of the table\n"
    "  --plot OUT.svg       also write a chart (PPL and KLD against decode tok/s and bits per weight)\n"
    "  -f, --force          replace the --plot file if it exists (never an input)\n"
    "  --tokenizer FILE     llama2.c tokenizer.bin for llama2.c checkpoints\n"
    "  -q, --quiet          no progress\n"
    "  -h, --help\n";

static void print_json(FILE *f, char **paths, const lmp_ppl_result *r, int n, const char *data) {
    fprintf(f, "{\"data\": ");
    cli_json_string(f, data);
    fprintf(f, ", \"ctx\": %d, \"chunks\": %d, \"models\": [", r[0].ctx, r[0].chunks);
    for (int k = 0; k < n; k++) {
        fprintf(f, "%s\n  {\"path\": ", k ? "," : "");
        cli_json_string(f, paths[k]);
        fprintf(f,
                ", \"ppl\": %.6f, \"ppl_err\": %.6f, \"nll\": %.6f, \"tokens\": %" PRId64 ", \"params\": %" PRId64
                ", \"bits_per_weight\": %.4f, \"file_bytes\": %" PRIu64
                ", \"kld\": %.8f, \"kld_err\": %.8f, \"top1\": %.6f, \"delta_ppl_pct\": %.4f"
                ", \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f}",
                r[k].ppl, r[k].ppl_err, r[k].nll, r[k].tokens, r[k].params, r[k].bits_per_weight, r[k].file_bytes,
                r[k].kld, r[k].kld_err, r[k].top1, 100.0 * (r[k].ppl / r[0].ppl - 1.0), r[k].prefill_tok_s,
                r[k].decode_tok_s);
    }
    fprintf(f, "\n]}\n");
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

static void print_table(FILE *f, char **paths, const lmp_ppl_result *r, int n) {
    fprintf(f, "%d chunks of %d tokens, %" PRId64 " scored tokens per model\n\n", r[0].chunks, r[0].ctx, r[0].tokens);
    fprintf(f, "| %-28s | %9s | %6s | %10s | %-18s | %7s | %9s | %6s | %11s | %10s |\n", "model", "size MB", "bpw",
            "params", "PPL", "dPPL %", "KLD", "top-1 %", "prefill t/s", "decode t/s");
    fprintf(f, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------------------------", "-----------:", "-------:",
            "-----------:", "--------------------", "--------:", "----------:", "-------:", "------------:",
            "-----------:");
    for (int k = 0; k < n; k++) {
        char ppl[40], dppl[16], kld[16], top1[16];
        snprintf(ppl, sizeof ppl, "%.4f ± %.4f", r[k].ppl, r[k].ppl_err);
        if (k) {
            snprintf(dppl, sizeof dppl, "%+.3f", 100.0 * (r[k].ppl / r[0].ppl - 1.0));
            snprintf(kld, sizeof kld, "%.6f", r[k].kld);
            snprintf(top1, sizeof top1, "%.2f", 100.0 * r[k].top1);
        } else {
            snprintf(dppl, sizeof dppl, "base");
            snprintf(kld, sizeof kld, "-");
            snprintf(top1, sizeof top1, "-");
        }
        // "±" is two bytes but one column: pad by one more.
        fprintf(f, "| %-28.28s | %9.2f | %6.3f | %10" PRId64 " | %-19s | %7s | %9s | %6s | %11.1f | %10.1f |\n",
                base_name(paths[k]), r[k].file_bytes / 1e6, r[k].bits_per_weight, r[k].params, ppl, dppl, kld, top1,
                r[k].prefill_tok_s, r[k].decode_tok_s);
    }
}

int cli_eval_main(int argc, char **argv) {
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},
                                         {"ctx", required_argument, 0, 'c'},
                                         {"chunks", required_argument, 0, 'C'},
                                         {"decode-tokens", required_argument, 0, 'D'},
                                         {"threads", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'j'},
                                         {"plot", required_argument, 0, 'P'},
                                         {"force", no_argument, 0, 'f'},
                                         {"tokenizer", required_argument, 0, 'k'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"device", required_argument, 0, 'V'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    lmp_ppl_params pp = {0};
    pp.decode_tokens = 64;
    long long v;
    int json = 0, c, force = 0;
    const char *plot = NULL;
    lmp_import_opts io = {0};
    const char *device = "cpu";
    while ((c = cli_getopt("eval-ppl", argc, argv, "t:fqh", opts)) != -1) {
        switch (c) {
        case 'd': pp.data_path = optarg; break;
        case 'c': if (cli_parse_int("eval-ppl", "--ctx", optarg, 4, 1 << 20, &v)) return 2; pp.ctx = (int)v; break;
        case 'C': if (cli_parse_int("eval-ppl", "--chunks", optarg, 1, 1 << 30, &v)) return 2; pp.n_chunks = (int)v; break;
        case 'D': if (cli_parse_int("eval-ppl", "--decode-tokens", optarg, 0, 1 << 20, &v)) return 2; pp.decode_tokens = (int)v; break;
        case 't': if (cli_parse_int("eval-ppl", "--threads", optarg, 1, 256, &v)) return 2; pp.n_threads = (int)v; break;
        case 'j': json = 1; break;
        case 'P': plot = optarg; break;
        case 'f': force = 1; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'V': if (cli_parse_device("eval-ppl", optarg, &device)) return 2; break;
        case 'q': cli_verbosity = 0; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    int n = argc - optind;
    if (n < 1) return cli_usage_error("eval-ppl", "expected at least one MODEL");
    if (!pp.data_path) return cli_usage_error("eval-ppl", "missing --data FILE");
    if (cli_check_input("eval-ppl", pp.data_path)) return 1;
    char **paths = argv + optind;
    for (int k = 0; k < n; k++) {
        if (cli_check_input("eval-ppl", paths[k])) return 1;
        if (plot && cli_check_clobber("eval-ppl", paths[k], io.tokenizer_path, plot)) return 2;
    }
    if (io.tokenizer_path && cli_check_input("eval-ppl", io.tokenizer_path)) return 1;
    if (plot && cli_same_file(plot, pp.data_path)) return cli_usage_error("eval-ppl", "--plot '%s' is the data file", plot);
    if (plot && cli_check_output("eval-ppl", plot, force)) return 1;
    lmp_error err = {0};
    lmp_model **models = lmp_calloc((size_t)n, sizeof *models);
    lmp_ppl_result *res = lmp_calloc((size_t)n, sizeof *res);
    int rc = 1;
    if (!models || !res) {
        cli_error("out of memory");
        goto done;
    }
    for (int k = 0; k < n; k++)
        if (lmp_model_load(paths[k], &io, &models[k], &err)) goto fail;
    cli_progress prog = {0};
    pp.progress = cli_progress_cb;
    pp.progress_user = &prog;
    pp.backend = cli_resolve_device("eval-ppl", device);
    lmp_status st = lmp_eval_ppl(models, n, &pp, res, &err);
    if (st == LMP_E_UNSUPPORTED && !strcmp(device, "auto") && !strcmp(pp.backend, "cuda")) {
        cli_auto_fallback_note("eval-ppl", err.msg);
        pp.backend = "cpu";
        st = lmp_eval_ppl(models, n, &pp, res, &err);
    }
    cli_progress_done(&prog);
    if (st) goto fail;
    if (json) print_json(stdout, paths, res, n, pp.data_path);
    else print_table(stdout, paths, res, n);
    if (plot) {
        lmp_plot_point *pts = lmp_calloc((size_t)n, sizeof *pts);
        if (!pts) {
            cli_error("out of memory");
            goto done;
        }
        for (int k = 0; k < n; k++)
            pts[k] = (lmp_plot_point){base_name(paths[k]), res[k].bits_per_weight, res[k].decode_tok_s, res[k].ppl,
                                      res[k].kld};
        char title[512];
        snprintf(title, sizeof title, "%s, ctx %d, %d chunks", base_name(pp.data_path), res[0].ctx, res[0].chunks);
        st = lmp_plot_write_svg(plot, title, pts, n, &err);
        lmp_free(pts);
        if (st) goto fail;
        if (cli_verbosity >= 1) fprintf(stderr, "lmpress: wrote chart %s\n", plot);
    }
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    if (models)
        for (int k = 0; k < n; k++) lmp_model_free(models[k]);
    lmp_free(models);
    lmp_free(res);
    return rc;
}
