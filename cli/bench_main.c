// bench_main.c - "lmpress bench MODEL...": prefill and decode tokens/s of each model beside its memory
// roofline (weight bytes read per token over the read bandwidth measured in the same run), on the CPU or a
// CUDA device; --synth builds random-weight models of any shape in memory (format/synth.h, blocked
// generation on all cores) so that a 7B-shaped model needs no file.
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "format/qtypes.h"
#include "format/synth.h"
#include "runtime/cpu_report.h"
#include "runtime/kernels.h"
#include "runtime/membw.h"
#include "runtime/sgemm.h"
#include "runtime/session.h"

static const char *HELP =
    "usage: lmpress bench MODEL [MODEL...] [options]\n"
    "       lmpress bench --synth SHAPE --synth-types T[,T...] [options]\n"
    "Measures the memory read bandwidth (the CPU's, or the GPU's with --device cuda), then for each model the\n"
    "prefill speed (one batch of --prefill tokens) and the decode speed (--decode single-token passes after\n"
    "that prompt), best of --reps, and prints decode against the roofline: bandwidth / weight bytes per token.\n"
    "On the CPU it first prints the paths: CPU features, the kernel table of each weight type, and the f32\n"
    "batched matmul (OpenBLAS sgemm or the project's tiles, measured once; LMP_F32_MATMUL=blas|tiles forces one).\n"
    "  --prefill N       prompt tokens (default 128)\n"
    "  --decode N        decode steps (default 64)\n"
    "  --reps N          repetitions, best is kept (default 3)\n"
    "  -t, --threads N   CPU threads (default: all cores)\n"
    "  --device D        cpu (default), cuda, or auto (CUDA when a GPU is there, else the CPU)\n"
    "  --synth SHAPE     also a random model of this shape, built in memory: comma-separated key=value of\n"
    "                    dim, layers, heads, kv-heads, ffn, vocab, ctx, seed (lmpress synth's defaults)\n"
    "  --synth-types L   the types to store it in, one model each (default f32)\n"
    "  --json            one JSON object\n"
    "  --tokenizer FILE  llama2.c tokenizer.bin for llama2.c checkpoints\n"
    "  -h, --help\n";

typedef struct bench_cfg {
    int np, nd, reps, threads, json;
    const char *backend;  // resolved: cpu or cuda
    const char *device;   // as asked: cpu, cuda or auto (auto falls back to the CPU for a type CUDA lacks)
    int nth;              // CPU threads (for the header)
    int header_done;      // the header goes out with the first row: a refused first model leaves stdout empty
    const int *seen;      // [LMP_DTYPE_COUNT] types present, for the CPU paths line
} bench_cfg;

static void print_cpu_paths(const int *seen, int json);

static void print_header(bench_cfg *bc) {
    if (bc->header_done) return;
    bc->header_done = 1;
    if (bc->json) {
        printf("{\"threads\": %d, \"device\": \"%s\", ", bc->nth, bc->backend);
        if (strcmp(bc->backend, "cuda")) print_cpu_paths(bc->seen, 1);
        printf("\"models\": [");
        return;
    }
    if (strcmp(bc->backend, "cuda")) print_cpu_paths(bc->seen, 0);
    if (!strcmp(bc->backend, "cuda"))
        printf("GPU read bandwidth measured before each repetition (best of %d per model), CUDA backend\n\n", bc->reps);
    else printf("read bandwidth measured before each repetition (best of %d per model), %d threads\n\n", bc->reps, bc->nth);
    printf("| %-28s | %10s | %12s | %11s | %7s | %10s | %10s | %7s |\n"
           "|------------------------------|-----------:|-------------:|------------:|--------:|-----------:|-----------:|--------:|\n",
           "model", "MB/token", "prefill t/s", "decode t/s", "GB/s", "roofline", "ms/token", "% roof");
}

// Parses "dim=4096,layers=32,..." into p; -1 after a usage error.
static int parse_shape(const char *spec, lmp_synth_params *p) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    int kv_set = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq) return cli_usage_error("bench", "--synth: '%s' is not key=value", tok), -1;
        *eq = 0;
        long long v;
        if (cli_parse_int("bench", tok, eq + 1, 1, 1 << 22, &v)) return -1;
        if (!strcmp(tok, "dim")) p->dim = (int)v;
        else if (!strcmp(tok, "layers")) p->n_layers = (int)v;
        else if (!strcmp(tok, "heads")) p->n_heads = (int)v;
        else if (!strcmp(tok, "kv-heads")) p->n_kv_heads = (int)v, kv_set = 1;
        else if (!strcmp(tok, "ffn")) p->ffn = (int)v;
        else if (!strcmp(tok, "vocab")) p->vocab = (int)v;
        else if (!strcmp(tok, "ctx")) p->ctx = (int)v;
        else if (!strcmp(tok, "seed")) p->seed = (uint64_t)v;
        else return cli_usage_error("bench", "--synth: unknown key '%s'", tok), -1;
    }
    if (!kv_set) p->n_kv_heads = p->n_heads;
    return 0;
}

// One table row (or JSON object) for model m; returns the exit status.
static int bench_one(bench_cfg *bc, const char *label, lmp_model *m, int k) {
    lmp_error err = {0};
    lmp_session *s = NULL;
    int np = bc->np, nd = bc->nd, rc = 0;
    if (np + nd > m->cfg.ctx) {
        cli_error("bench: %s: --prefill %d + --decode %d exceed the context %d", label, np, nd, m->cfg.ctx);
        return 1;
    }
    lmp_session_opts so = {np + nd, np, bc->threads, bc->backend, NULL};
    int32_t *toks = lmp_malloc((size_t)(np + nd) * sizeof(int32_t));
    float *logits = lmp_malloc((size_t)m->cfg.vocab * sizeof(float));
    if (!toks || !logits || cli_session_new("bench", m, &so, bc->device, &s, &err)) {
        if (!err.msg[0]) snprintf(err.msg, sizeof err.msg, "out of memory");
        rc = cli_fail(&err);
        goto done;
    }
    lmp_backend *be = lmp_session_backend(s);
    uint64_t st = 12345;
    for (int i = 0; i < np + nd; i++) {  // fixed pseudo-random tokens: speed does not depend on them
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((st >> 33) % (uint64_t)m->cfg.vocab);
    }
    double best_p = 1e30, best_d = 1e30, bw = 0;
    for (int r = 0; r < bc->reps && !rc; r++) {
        double b = 0;
        if (be->ops->read_bandwidth) {
            b = be->ops->read_bandwidth(be);
        } else {
            lmp_pool *bp = lmp_pool_new(bc->threads);
            b = bp ? lmp_measure_read_bandwidth(bp, 0, 3) : 0;
            lmp_pool_free(bp);
        }
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
        uint64_t mw = 0, mk = 0, mo = 0;
        if (be->ops->memory_used) be->ops->memory_used(be, &mw, &mk, &mo);
        print_header(bc);
        if (bc->json) {
            printf("%s\n  {\"path\": ", k ? "," : "");
            cli_json_string(stdout, label);
            printf(", \"bytes_per_token\": %.0f, \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, "
                   "\"read_bandwidth_gb_s\": %.2f, \"roofline_tok_s\": %.2f, \"roofline_frac\": %.4f",
                   bpt, ptps, dtps, bw / 1e9, roof, dtps / roof);
            if (be->ops->memory_used)
                printf(", \"device_bytes\": {\"weights\": %" PRIu64 ", \"kv\": %" PRIu64 ", \"other\": %" PRIu64 "}", mw,
                       mk, mo);
            printf("}");
        } else {
            printf("| %-28.28s | %10.2f | %12.1f | %11.1f | %7.2f | %10.1f | %10.2f | %6.1f%% |\n",
                   strrchr(label, '/') ? strrchr(label, '/') + 1 : label, bpt / 1e6, ptps, dtps, bw / 1e9, roof,
                   1e3 / dtps, 100.0 * dtps / roof);
            if (be->ops->memory_used)
                fprintf(stderr, "lmpress bench: %s: device memory %.1f MB = weights %.1f + KV cache %.1f + other %.1f "
                                "(file tensors %.1f MB)\n",
                        label, (mw + mk + mo) / 1e6, mw / 1e6, mk / 1e6, mo / 1e6, m->weight_bytes / 1e6);
        }
        fflush(stdout);
    }
done:
    lmp_free(toks);
    lmp_free(logits);
    lmp_session_free(s);
    return rc;
}

// Marks in seen[] the types of m's matrices (the ones multiplied: the layers' seven and the output).
static void mark_types(const lmp_model *m, int *seen) {
    seen[m->output.type] = 1;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LMP_MAT_COUNT; k++) seen[lmp_layer_mat_c(&m->layers[l], k)->type] = 1;
}

// The CPU paths of this run (kernel table per type, the f32 batched choice, features, BLAS core), before
// the table; in JSON as fields of the top object.
static void print_cpu_paths(const int *seen, int json) {
    char feat[256], sg[512], tp[256];
    lmp_cpu_features(feat, sizeof feat);
    lmp_cpu_sgemm_summary(sg, sizeof sg);
    const lmp_sgemm_info *in = lmp_sgemm_choice();
    if (json) {
        printf("\"cpu_features\": ");
        cli_json_string(stdout, feat);
        printf(", \"kernel_table\": ");
        cli_json_string(stdout, lmp_kernels_best()->isa);
        printf(", \"f32_batched\": ");
        cli_json_string(stdout, in->path);
        printf(", \"f32_tiles_isa\": ");
        cli_json_string(stdout, in->tiles_isa);
        printf(", \"openblas_core\": ");
        cli_json_string(stdout, in->blas_core);
        printf(", \"openblas_correct\": %s, \"f32_tiles_gflops\": %.2f, \"f32_blas_gflops\": %.2f, \"paths\": {",
               in->blas_correct ? "true" : "false", in->tiles_gflops, in->blas_gflops);
        for (int t = 0, k = 0; t < LMP_DTYPE_COUNT; t++)
            if (seen[t]) {
                lmp_cpu_type_paths((lmp_dtype)t, tp, sizeof tp);
                printf("%s\"%s\": ", k++ ? ", " : "", lmp_type_name((lmp_dtype)t));
                cli_json_string(stdout, tp);
            }
        printf("}, ");
        return;
    }
    printf("CPU features used: %s; kernel table %s\n", feat, lmp_kernels_best()->isa);
    printf("f32 batched matmul: %s\n", sg);
    for (int t = 0; t < LMP_DTYPE_COUNT; t++)
        if (seen[t]) {
            lmp_cpu_type_paths((lmp_dtype)t, tp, sizeof tp);
            printf("  %-10s %s\n", lmp_type_name((lmp_dtype)t), tp);
        }
}

int cli_bench_main(int argc, char **argv) {
    static const struct option opts[] = {{"prefill", required_argument, 0, 'p'}, {"decode", required_argument, 0, 'd'},
                                         {"reps", required_argument, 0, 'r'},    {"threads", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'j'},          {"tokenizer", required_argument, 0, 'k'},
                                         {"device", required_argument, 0, 'D'},  {"synth", required_argument, 0, 'S'},
                                         {"synth-types", required_argument, 0, 'Y'},
                                         {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    long long n_prefill = 128, n_decode = 64, reps = 3, threads = 0;
    int json = 0, c;
    const char *device = "cpu", *synth = NULL, *synth_types = "f32";
    lmp_import_opts io = {0};
    while ((c = cli_getopt("bench", argc, argv, "t:h", opts)) != -1) {
        switch (c) {
        case 'p': if (cli_parse_int("bench", "--prefill", optarg, 1, 1 << 16, &n_prefill)) return 2; break;
        case 'd': if (cli_parse_int("bench", "--decode", optarg, 1, 1 << 16, &n_decode)) return 2; break;
        case 'r': if (cli_parse_int("bench", "--reps", optarg, 1, 1000, &reps)) return 2; break;
        case 't': if (cli_parse_int("bench", "--threads", optarg, 1, 256, &threads)) return 2; break;
        case 'j': json = 1; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'D': if (cli_parse_device("bench", optarg, &device)) return 2; break;
        case 'S': synth = optarg; break;
        case 'Y': synth_types = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    int n = argc - optind;
    if (n < 1 && !synth) return cli_usage_error("bench", "expected at least one MODEL (or --synth SHAPE)");
    lmp_synth_params sp = {768, 12, 12, 12, 2048, 32000, 1024, 1, 1, NULL, lmp_cpu_count(), LMP_DTYPE_F32};
    lmp_dtype stypes[16];
    int n_st = 0;
    if (synth) {
        if (parse_shape(synth, &sp)) return 2;
        if (threads > 0) sp.n_threads = (int)threads;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", synth_types);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            int t = lmp_type_from_name(tok);
            const lmp_type_traits *tt = t >= 0 ? lmp_type_get((lmp_dtype)t) : NULL;
            if (!tt || !tt->storable) return cli_usage_error("bench", "--synth-types: '%s' is not a storable type", tok);
            if (n_st == 16) return cli_usage_error("bench", "--synth-types: at most 16 types");
            stypes[n_st++] = (lmp_dtype)t;
        }
        if (n_prefill + n_decode > sp.ctx) sp.ctx = (int)(n_prefill + n_decode);
    }
    for (int k = 0; k < n; k++)
        if (cli_check_input("bench", argv[optind + k])) return 1;
    // Every model is loaded and checked before the bandwidth is measured and the table begins, so that a bad
    // model or option leaves one error line and an empty stdout.
    lmp_model **models = lmp_calloc((size_t)(n ? n : 1), sizeof *models);
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
    bench_cfg bc = {(int)n_prefill, (int)n_decode, (int)reps, (int)threads, json, "cpu", device, 0, 0};
    if (!rc) bc.backend = cli_resolve_device("bench", device);
    if (!rc && !strcmp(bc.backend, "cuda")) {  // refuse before the table starts
        lmp_backend *probe = NULL;
        lmp_error err = {0};
        if (lmp_backend_new("cuda", NULL, &probe, &err)) rc = cli_fail(&err);
        lmp_backend_free(probe);
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
    bc.nth = nth;
    int seen[LMP_DTYPE_COUNT] = {0};
    for (int k = 0; k < n; k++) mark_types(models[k], seen);
    for (int t = 0; t < n_st; t++) seen[stypes[t]] = 1;
    bc.seen = seen;
    int row = 0;
    for (int k = 0; k < n && !rc; k++) rc = bench_one(&bc, argv[optind + k], models[k], row++);
    for (int t = 0; t < n_st && !rc; t++) {
        lmp_synth_params p = sp;
        p.type = stypes[t];
        lmp_error err = {0};
        lmp_builder *b = NULL;
        lmp_file *f = NULL;
        lmp_model *m = NULL;
        double t0 = lmp_time_now();
        if (lmp_synth_build(&p, &b, &err) || lmp_builder_to_file(b, &f, &err)) {
            rc = cli_fail(&err);
        } else {
            lmp_builder_free(b);
            b = NULL;
            if (lmp_model_from_file(f, &m, &err)) rc = cli_fail(&err);  // takes f, also on error
        }
        lmp_builder_free(b);
        if (rc) break;
        char label[96];
        snprintf(label, sizeof label, "synth d%d l%d %s", p.dim, p.n_layers, lmp_type_name(p.type));
        fprintf(stderr, "lmpress bench: %s built in memory in %.1f s (%d threads)\n", label, lmp_time_now() - t0,
                p.n_threads);
        rc = bench_one(&bc, label, m, row++);
        lmp_model_free(m);
    }
    for (int k = 0; k < n; k++) lmp_model_free(models[k]);
    lmp_free(models);
    if (json && bc.header_done) printf("\n]}\n");
    return rc;
}
