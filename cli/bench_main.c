// bench_main.c - "lmpress bench MODEL...": prefill and decode tokens/s of each model beside its memory
// roofline (weight bytes read per token over the read bandwidth measured in the same run).
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/membw.h"
#include "runtime/session.h"

static const char *HELP =
    "usage: lmpress bench MODEL [MODEL...] [options]\n"
    "Measures the machine's memory read bandwidth, then for each model the prefill speed (one batch of\n"
    "--prefill tokens) and the decode speed (--decode single-token passes after that prompt), best of --reps,\n"
    "and prints decode against the roofline: bandwidth / weight bytes read per token.\n"
    "  --prefill N       prompt tokens (default 128)\n"
    "  --decode N        decode steps (default 64)\n"
    "  --reps N          repetitions, best is kept (default 3)\n"
    "  -t, --threads N   CPU threads (default: all cores)\n"
    "  --json            one JSON object\n"
    "  --tokenizer FILE  llama2.c tokenizer.bin for llama2.c checkpoints\n"
    "  -h, --help\n";

int cli_bench_main(int argc, char **argv) {
    static const struct option opts[] = {{"prefill", required_argument, 0, 'p'}, {"decode", required_argument, 0, 'd'},
                                         {"reps", required_argument, 0, 'r'},    {"threads", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'j'},          {"tokenizer", required_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    long long n_prefill = 128, n_decode = 64, reps = 3, threads = 0;
    int json = 0, c;
    lmp_import_opts io = {0};
    while ((c = cli_getopt("bench", argc, argv, "t:h", opts)) != -1) {
        switch (c) {
        case 'p': if (cli_parse_int("bench", "--prefill", optarg, 1, 1 << 16, &n_prefill)) return 2; break;
        case 'd': if (cli_parse_int("bench", "--decode", optarg, 1, 1 << 16, &n_decode)) return 2; break;
        case 'r': if (cli_parse_int("bench", "--reps", optarg, 1, 1000, &reps)) return 2; break;
        case 't': if (cli_parse_int("bench", "--threads", optarg, 1, 256, &threads)) return 2; break;
        case 'j': json = 1; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    int n = argc - optind;
    if (n < 1) return cli_usage_error("bench", "expected at least one MODEL");
    for (int k = 0; k < n; k++)
        if (cli_check_input("bench", argv[optind + k])) return 1;
    // Every model is loaded and checked before the bandwidth is measured and the table begins, so that a bad
    // model or option leaves one error line and an empty stdout.
    lmp_model **models = lmp_calloc((size_t)n, sizeof *models);
    if (!models) {
        cli_error("bench: out of memory");
        return 1;
    }
    int rc = 0;
    for (int k = 0; k < n && !rc; k++) {
        const char *path = argv[optind + k];
        lmp_error err = {0};
        if (lmp_model_load(path, &io, &models[k], &err)) rc = cli_fail(&err);
        else if (n_prefill + n_decode > models[k]->cfg.ctx) {
            cli_error("bench: %s: --prefill %lld + --decode %lld exceed the context %d", path, n_prefill, n_decode,
                      models[k]->cfg.ctx);
            rc = 1;
        }
    }
    lmp_pool *pool = rc ? NULL : lmp_pool_new((int)threads);
    if (!rc && !pool) {
        cli_error("bench: cannot start threads");
        rc = 1;
    }
    if (rc) {
        for (int k = 0; k < n; k++) lmp_model_free(models[k]);
        lmp_free(models);
        return rc;
    }
    // The bandwidth is measured again before every repetition of every model, and each model's roofline
    // uses the best of its own measurements: on a shared machine the bandwidth drifts by tens of percent
    // within a minute, and a ratio is only meaningful between numbers taken side by side.
    int nth = lmp_pool_size(pool);
    lmp_pool_free(pool);
    pool = NULL;
    if (json) printf("{\"threads\": %d, \"models\": [", nth);
    else
        printf("read bandwidth measured before each repetition (best of %lld per model), %d threads\n\n"
               "| %-28s | %10s | %12s | %11s | %7s | %10s | %10s | %7s |\n"
               "|------------------------------|-----------:|-------------:|------------:|--------:|-----------:|-----------:|--------:|\n",
               reps, nth, "model", "MB/token", "prefill t/s", "decode t/s", "GB/s", "roofline", "ms/token", "% roof");
    for (int k = 0; k < n && !rc; k++) {
        const char *path = argv[optind + k];
        lmp_error err = {0};
        lmp_model *m = models[k];
        lmp_session *s = NULL;
        int32_t *toks = NULL;
        float *logits = NULL;
        int np = (int)n_prefill, nd = (int)n_decode;
        lmp_session_opts so = {np + nd, np, (int)threads, "cpu"};
        toks = lmp_malloc((size_t)(np + nd) * sizeof(int32_t));
        logits = lmp_malloc((size_t)m->cfg.vocab * sizeof(float));
        if (!toks || !logits || lmp_session_new(m, &so, &s, &err)) {
            if (!err.msg[0]) snprintf(err.msg, sizeof err.msg, "out of memory");
            rc = cli_fail(&err);
        } else {
            uint64_t st = 12345;
            for (int i = 0; i < np + nd; i++) {  // fixed pseudo-random tokens: speed does not depend on them
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                toks[i] = (int32_t)((st >> 33) % (uint64_t)m->cfg.vocab);
            }
            double best_p = 1e30, best_d = 1e30, bw = 0;
            for (int r = 0; r < reps && !rc; r++) {
                lmp_pool *bp = lmp_pool_new((int)threads);
                double b = bp ? lmp_measure_read_bandwidth(bp, 0, 3) : 0;
                lmp_pool_free(bp);
                if (b <= 0) {
                    cli_error("bench: cannot measure the read bandwidth (out of memory)");
                    rc = 1;
                    break;
                }
                if (b > bw) bw = b;
                double t0 = lmp_time_now();
                if (lmp_session_eval(s, toks, np, 0, np - 1, logits, &err)) rc = cli_fail(&err);
                double t1 = lmp_time_now();
                for (int i = 0; i < nd && !rc; i++)
                    if (lmp_session_eval(s, toks + np + i, 1, np + i, 0, logits, &err)) rc = cli_fail(&err);
                double t2 = lmp_time_now();
                if (t1 - t0 < best_p) best_p = t1 - t0;
                if (t2 - t1 < best_d) best_d = t2 - t1;
            }
            if (!rc) {
                double bpt = (double)lmp_model_bytes_per_token(m), roof = bw / bpt;
                double ptps = np / best_p, dtps = nd / best_d;
                if (json) {
                    printf("%s\n  {\"path\": ", k ? "," : "");
                    cli_json_string(stdout, path);
                    printf(", \"bytes_per_token\": %.0f, \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, "
                           "\"read_bandwidth_gb_s\": %.2f, \"roofline_tok_s\": %.2f, \"roofline_frac\": %.4f}",
                           bpt, ptps, dtps, bw / 1e9, roof, dtps / roof);
                } else
                    printf("| %-28.28s | %10.2f | %12.1f | %11.1f | %7.2f | %10.1f | %10.2f | %6.1f%% |\n",
                           strrchr(path, '/') ? strrchr(path, '/') + 1 : path, bpt / 1e6, ptps, dtps, bw / 1e9, roof,
                           1e3 / dtps, 100.0 * dtps / roof);
                fflush(stdout);
            }
        }
        lmp_free(toks);
        lmp_free(logits);
        lmp_session_free(s);
    }
    for (int k = 0; k < n; k++) lmp_model_free(models[k]);
    lmp_free(models);
    if (json) printf("\n]}\n");
    return rc;
}
