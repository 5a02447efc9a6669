// prune_main.c - "lmpress prune IN --structured --ratio R ...": the structured pruning pass on the command line.
// The options table below generates both the getopt table and --help; targets and scores come from the
// library's tables (prune/prune.h).
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "prune/prune.h"

#define MAX_KEEP 4096

typedef struct opt_row {
    const char *name;
    int has_arg;
    int val;          // getopt value; a printable short option when it is in SHORTS
    const char *arg;  // value name for --help
    const char *help;
} opt_row;

static const char SHORTS[] = "t:o:fqvh";

static const opt_row ROWS[] = {
    {"structured", no_argument, 'S', NULL, "remove whole heads, FFN channels, layers (required: the only kind there is)"},
    {"ratio", required_argument, 'r', "R", "fraction of non-embedding parameters to remove, in (0, 0.9] (required)"},
    {"targets", required_argument, 'T', "LIST", "comma-separated targets from the list below (default heads,ffn)"},
    {"score", required_argument, 's', "NAME", "how units are scored, from the list below (default magnitude)"},
    {"calib", required_argument, 'c', "FILE", "calibration text (--score activation or taylor, the layers target)"},
    {"calib-tokens", required_argument, 'N', "N", "calibration tokens (default 128 sequences x min(context, 512))"},
    {"uniform", no_argument, 'u', NULL, "the same fraction of every layer (default: one ranking across layers)"},
    {"align", required_argument, 'a', "N", "FFN widths of pruned layers are multiples of N (default 32, q4/q8 block)"},
    {"keep-layers", required_argument, 'K', "LIST", "layers left whole, 0-based: '0,11' or '0-2,11'"},
    {"allow-requantize", no_argument, 'R', NULL, "accept a quantized input: dequantized to f32 first"},
    {"dry-run", no_argument, 'n', NULL, "print the plan (what goes, parameters before and after), write nothing"},
    {"threads", required_argument, 't', "N", "CPU threads (default: all cores)"},
    {"tokenizer", required_argument, 'k', "FILE", "llama2.c tokenizer.bin when IN is a llama2.c checkpoint"},
    {"output", required_argument, 'o', "FILE", "default: IN without extension + '-pruned.lmp'"},
    {"force", no_argument, 'f', NULL, "replace OUT if it exists (never an input)"},
    {"quiet", no_argument, 'q', NULL, "no progress, no summary"},
    {"verbose", no_argument, 'v', NULL, "notes as they come"},
    {"help", no_argument, 'h', NULL, "this text"},
};
#define N_ROWS (sizeof ROWS / sizeof ROWS[0])

static int is_short(int c) { return c < 128 && strchr(SHORTS, c) && c != ':'; }

static void print_help(void) {
    printf("usage: lmpress prune IN --structured --ratio R [options] [-o OUT]\n"
           "Removes whole attention heads, FFN channels or layers: the result is a dense model with smaller shapes\n"
           "that every command runs. --ratio counts the non-embedding parameters (token embedding and classifier are\n"
           "not pruned); the pass hits it as closely as the unit sizes allow and reports the exact fraction.\n");
    for (size_t i = 0; i < N_ROWS; i++) {
        char left[64];
        int sh = is_short(ROWS[i].val);
        snprintf(left, sizeof left, "%c%c%c --%s%s%s", sh ? '-' : ' ', sh ? ROWS[i].val : ' ', sh ? ',' : ' ',
                 ROWS[i].name, ROWS[i].arg ? " " : "", ROWS[i].arg ? ROWS[i].arg : "");
        printf("  %-26s %s\n", left, ROWS[i].help);
    }
    printf("\ntargets:\n");
    for (int i = 0; i < LMP_PRUNE_N_TARGETS; i++) printf("  %-12s %s\n", lmp_prune_target_names[i].name, lmp_prune_target_names[i].help);
    printf("\nscores:\n");
    for (int i = 0; i < LMP_PRUNE_SCORE_COUNT; i++) printf("  %-12s %s\n", lmp_prune_score_names[i].name, lmp_prune_score_names[i].help);
}

// "0,3-5,11" -> layer numbers; returns the count or -1 after a usage error.
static int parse_layers(const char *s, int *out, int cap) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b;
        if (end == p || a < 0 || a > 1000000) return cli_usage_error("prune", "--keep-layers '%s': expected numbers like 0,3-5", s), -1;
        b = a;
        if (*end == '-') {
            const char *q = end + 1;
            b = strtol(q, &end, 10);
            if (end == q || b < a || b > 1000000)
                return cli_usage_error("prune", "--keep-layers '%s': bad range", s), -1;
        }
        for (long v = a; v <= b; v++) {
            if (n == cap) return cli_usage_error("prune", "--keep-layers: more than %d layers", cap), -1;
            out[n++] = (int)v;
        }
        if (*end == ',') end++;
        else if (*end) return cli_usage_error("prune", "--keep-layers '%s': expected numbers like 0,3-5", s), -1;
        p = end;
    }
    if (n == 0) return cli_usage_error("prune", "--keep-layers: empty list"), -1;
    return n;
}

// Notes are held until the pass ends, so that a failure prints its one line alone; -v prints them as they come.
typedef struct {
    char msg[8][512];
    int n;
} notes;

static void warn_cb(void *user, const char *msg) {
    notes *w = user;
    if (cli_verbosity >= 2) cli_warn("%s", msg);
    else if (w->n < 8) snprintf(w->msg[w->n++], sizeof w->msg[0], "%s", msg);
}

static void fmt_params(int64_t n, char *buf, size_t cap) {
    if (n >= 10000000) snprintf(buf, cap, "%.2fM", n / 1e6);
    else if (n >= 10000) snprintf(buf, cap, "%.1fK", n / 1e3);
    else snprintf(buf, cap, "%lld", (long long)n);
}

static void print_summary(FILE *f, const char *in, const char *out, const lmp_prune_params *p, const lmp_prune_summary *s) {
    if (p->dry_run) fprintf(f, "lmpress: plan for %s (dry run, nothing written)", in);
    else fprintf(f, "lmpress: pruned %s -> %s", in, out);
    fprintf(f, " (score %s, targets %s, %s)\n", lmp_prune_score_names[p->score].name, lmp_prune_targets_str(p->targets),
            p->uniform ? "uniform" : "global ranking");
    double in_ = (double)s->params_in;
    fprintf(f, "  non-embedding parameters: %lld -> %lld: removed %.2f%% (heads %.2f%%, ffn %.2f%%, layers %.2f%%); "
               "the targets allow at most %.2f%%\n",
            (long long)s->params_in, (long long)s->params_out, 100.0 * s->fraction, 100.0 * s->removed[0] / in_,
            100.0 * s->removed[1] / in_, 100.0 * s->removed[2] / in_, 100.0 * s->max_fraction);
    fprintf(f, "  all parameters: %lld -> %lld", (long long)s->total_in, (long long)s->total_out);
    if (!p->dry_run) fprintf(f, "; tensor data %.2f MB -> %.2f MB", s->bytes_in / 1e6, s->bytes_out / 1e6);
    fprintf(f, "\n  layers: %d -> %d\n", s->n_layers_in, s->n_layers_out);
    int bi = 0;
    for (int l = 0; l < s->n_layers_in; l++) bi |= !isnan(s->layers[l].block_influence);
    fprintf(f, "  %5s %4s %9s %9s %11s %19s %8s%s\n", "layer", "new", "heads", "kv heads", "ffn", "params", "removed",
            bi ? "  influence" : "");
    for (int l = 0; l < s->n_layers_in; l++) {
        const lmp_prune_layer_info *li = &s->layers[l];
        char a[16], b[16], h[24], k[24], w[24], pr[48], nw[8];
        fmt_params(li->params_in, a, sizeof a);
        fmt_params(li->params_out, b, sizeof b);
        if (li->index_out < 0) {
            snprintf(nw, sizeof nw, "-");
            snprintf(h, sizeof h, "%d->0", li->heads_in);
            snprintf(k, sizeof k, "%d->0", li->kv_in);
            snprintf(w, sizeof w, "%d->0", li->ffn_in);
        } else {
            snprintf(nw, sizeof nw, "%d", li->index_out);
            snprintf(h, sizeof h, "%d->%d", li->heads_in, li->heads_out);
            snprintf(k, sizeof k, "%d->%d", li->kv_in, li->kv_out);
            snprintf(w, sizeof w, "%d->%d", li->ffn_in, li->ffn_out);
        }
        snprintf(pr, sizeof pr, "%s->%s", a, b);
        fprintf(f, "  %5d %4s %9s %9s %11s %19s %7.2f%%", l, nw, h, k, w, pr,
                li->params_in ? 100.0 * (1.0 - (double)li->params_out / li->params_in) : 0.0);
        if (bi) fprintf(f, "  %9.4f", li->block_influence);
        fputc('\n', f);
    }
    if (s->calib_tokens_used) fprintf(f, "  calibration: %lld tokens of %s\n", (long long)s->calib_tokens_used, p->calib_path);
    if (s->requantized) fprintf(f, "  input was quantized: dequantized to f32\n");
    fprintf(f, "  time: scoring %.2f s, total %.2f s\n", s->seconds_scoring, s->seconds);
}

int cli_prune_main(int argc, char **argv) {
    struct option opts[N_ROWS + 1];
    for (size_t i = 0; i < N_ROWS; i++) opts[i] = (struct option){ROWS[i].name, ROWS[i].has_arg, 0, ROWS[i].val};
    opts[N_ROWS] = (struct option){0, 0, 0, 0};
    lmp_prune_params p;
    lmp_prune_params_default(&p);
    lmp_import_opts io = {0};
    const char *out = NULL;
    int structured = 0, have_ratio = 0, score_set = 0, force = 0, c, t;
    static int keep[MAX_KEEP];
    long long v;
    double d;
    char bad[64];
    while ((c = cli_getopt("prune", argc, argv, SHORTS, opts)) != -1) {
        switch (c) {
        case 'S': structured = 1; break;
        case 'r':
            if (cli_parse_float("prune", "--ratio", optarg, -1e300, 1e300, &d)) return 2;
            if (!(d > 0) || d > LMP_PRUNE_MAX_RATIO)
                return cli_usage_error("prune", "--ratio %g: must be in (0, %g]", d, LMP_PRUNE_MAX_RATIO);
            p.ratio = d;
            have_ratio = 1;
            break;
        case 'T':
            if (lmp_prune_targets_parse(optarg, &p.targets, bad, sizeof bad))
                return cli_usage_error("prune", "--targets: unknown target '%s' (heads, ffn, layers)", bad);
            break;
        case 's':
            if ((t = lmp_prune_score_from_name(optarg)) < 0)
                return cli_usage_error("prune", "--score '%s': must be magnitude, activation or taylor", optarg);
            p.score = (lmp_prune_score)t;
            score_set = 1;
            break;
        case 'c': p.calib_path = optarg; break;
        case 'N': if (cli_parse_int("prune", "--calib-tokens", optarg, 1, (long long)1 << 32, &v)) return 2; p.calib_tokens = v; break;
        case 'u': p.uniform = 1; break;
        case 'a': if (cli_parse_int("prune", "--align", optarg, 1, 65536, &v)) return 2; p.align = (int)v; break;
        case 'K':
            if ((p.n_keep_layers = parse_layers(optarg, keep, MAX_KEEP)) < 0) return 2;
            p.keep_layers = keep;
            break;
        case 'R': p.allow_requantize = 1; break;
        case 'n': p.dry_run = 1; break;
        case 'f': force = 1; break;
        case 't': if (cli_parse_int("prune", "--threads", optarg, 1, 256, &v)) return 2; p.n_threads = (int)v; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'o': out = optarg; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': print_help(); return 0;
        default: return 2;
        }
    }
    (void)score_set;
    if (optind != argc - 1) return cli_usage_error("prune", "expected exactly one input model");
    const char *in = argv[optind];
    if (!structured) return cli_usage_error("prune", "only structured pruning is implemented: pass --structured");
    if (!have_ratio) return cli_usage_error("prune", "missing --ratio R");
    if ((p.score == LMP_PRUNE_SCORE_ACTIVATION || p.score == LMP_PRUNE_SCORE_TAYLOR) && !p.calib_path)
        return cli_usage_error("prune", "--score %s needs --calib FILE", lmp_prune_score_names[p.score].name);
    if ((p.targets & LMP_PRUNE_LAYERS) && !p.calib_path)
        return cli_usage_error("prune", "the layers target needs --calib FILE (block influence)");
    if (p.calib_path && p.score == LMP_PRUNE_SCORE_MAGNITUDE && !(p.targets & LMP_PRUNE_LAYERS))
        return cli_usage_error("prune", "--calib is only used by --score activation or taylor, or the layers target");
    if (p.calib_tokens && !p.calib_path) return cli_usage_error("prune", "--calib-tokens needs --calib FILE");
    if (p.uniform && (p.targets & LMP_PRUNE_LAYERS))
        return cli_usage_error("prune", "--uniform prunes the width of every layer; it does not combine with the layers target");
    if ((p.targets & LMP_PRUNE_LAYERS) && (p.targets & (LMP_PRUNE_HEADS | LMP_PRUNE_FFN)) &&
        p.score == LMP_PRUNE_SCORE_MAGNITUDE)
        return cli_usage_error("prune", "ranking layers together with heads or ffn needs --score activation or taylor");
    if (cli_check_input("prune", in)) return 1;
    if (p.calib_path && cli_check_input("prune", p.calib_path)) return 1;
    if (io.tokenizer_path && cli_check_input("prune", io.tokenizer_path)) return 1;
    char def_out[4096];
    if (!out) {
        size_t len = strlen(in);
        const char *slash = strrchr(in, '/'), *dot = strrchr(in, '.');
        if (dot && (!slash || dot > slash)) len = (size_t)(dot - in);
        while (len > 1 && in[len - 1] == '/') len--;
        snprintf(def_out, sizeof def_out, "%.*s-pruned.lmp", (int)len, in);
        out = def_out;
    }
    if (cli_check_clobber("prune", in, io.tokenizer_path, out)) return 2;
    if (p.calib_path && cli_same_file(p.calib_path, out))
        return cli_usage_error("prune", "output '%s' is the calibration file; choose another name", out);
    if (!p.dry_run && cli_check_output("prune", out, force)) return 1;
    p.command_line = cli_command_line();
    notes held = {.n = 0};
    p.warn = warn_cb;
    p.warn_user = &held;
    cli_progress prog = {0};
    p.progress = cli_progress_cb;
    p.progress_user = &prog;
    lmp_error err = {0};
    lmp_prune_summary s;
    lmp_status st = lmp_prune(in, &io, out, &p, &s, &err);
    cli_progress_done(&prog);
    if (st) {
        lmp_prune_summary_free(&s);
        return cli_fail(&err);
    }
    for (int i = 0; i < held.n; i++) cli_warn("%s", held.msg[i]);
    if (p.dry_run) print_summary(stdout, in, out, &p, &s);
    else if (cli_verbosity >= 1) print_summary(stderr, in, out, &p, &s);
    lmp_prune_summary_free(&s);
    return 0;
}
