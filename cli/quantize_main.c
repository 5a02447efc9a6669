// quantize_main.c - "lmpress quantize IN --bits 8|4 ...": the quantization pass on the command line.
#include <getopt.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "format/qtypes.h"
#include "quant/quantize.h"

#define MAX_OVERRIDES 64

static void print_help(void) {
    printf("usage: lmpress quantize IN [options] [-o OUT]\n"
           "Quantizes the weight matrices of a model. Norms and other vectors stay f32; token embeddings and the\n"
           "classifier use q8_0 unless --embed-type / --output-type say otherwise.\n"
           "  --type TYPE             type of the layer matrices (any type below; overrides --bits/--group/--scheme)\n"
           "  --preset NAME           a named mix of types (below)\n"
           "  --target-bpw B          choose a type per tensor so that the file has at most B bits per weight (all\n"
           "                          tensors counted), by each tensor's measured sensitivity; needs --calib\n"
           "  --sens-tokens N         calibration tokens for the sensitivity measurement (default 256)\n"
           "  --bits 8|4              8: q8_0; 4: q4_0 (sym) or q4_1 (asym) (default 4)\n"
           "  --group 32|64|128       4-bit group size (default 32)\n"
           "  --scheme sym|asym       4-bit scheme (default sym)\n"
           "  --method search|rtn|imatrix|awq|gptq\n"
           "                          search (default): per-block scale search weighted by the weights (with\n"
           "                          --calib: by the activations, as imatrix); rtn: plain round to nearest;\n"
           "                          imatrix: activation-weighted search; awq: activation-aware channel scaling;\n"
           "                          gptq: GPTQ error compensation\n"
           "  --calib FILE            calibration text (search, imatrix, awq, gptq, --target-bpw)\n"
           "  --calib-tokens N        calibration tokens (default 128 sequences x min(context, 512))\n"
           "  --tensor-type RE=TYPE   type for tensors whose name matches the regular expression (repeatable,\n"
           "                          first match wins), e.g. 'ffn_down=q8_0'\n"
           "  --output-type TYPE      classifier type (default q8_0)\n"
           "  --embed-type TYPE       token embedding type (default q8_0)\n"
           "  --gptq-damp F           GPTQ dampening, fraction of mean diag(H) (default 0.01)\n"
           "  --act-order             GPTQ: columns in order of decreasing activation energy\n"
           "  --allow-requantize      accept an already-quantized input (dequantized first)\n"
           "  --dry-run               print the plan and sizes, write nothing\n"
           "  -t, --threads N         CPU threads (default: all cores)\n"
           "  --tokenizer FILE        llama2.c tokenizer.bin when IN is a llama2.c checkpoint\n"
           "  -o, --output FILE       default: IN without extension + '-TYPE.lmp'\n"
           "  -f, --force             replace OUT if it exists (never an input)\n"
           "  -q, --quiet / -v, --verbose\n"
           "  -h, --help\n\ntypes:\n");
    for (int t = 0; t < LMP_DTYPE_COUNT; t++) {
        const lmp_type_traits *tr = lmp_type_get((lmp_dtype)t);
        if (tr && tr->storable) printf("  %-10s %6.3f bpw  %s\n", tr->name, lmp_type_bpw((lmp_dtype)t), tr->description);
    }
    printf("\npresets (--preset; measured on SmolLM2-135M, WikiText-2 ctx 512, 40 chunks, docs/benchmarks.md):\n");
    for (int i = 0; i < lmp_quant_n_presets; i++) {
        printf("  %-6s %s\n", lmp_quant_presets[i].name, lmp_quant_presets[i].description);
        if (lmp_quant_presets[i].measured[0]) printf("         %s\n", lmp_quant_presets[i].measured);
    }
}

static void note_cb(void *user, const char *msg) {
    (void)user;
    printf("%s\n", msg);
    fflush(stdout);
}

// Warnings are held until the pass ends: a failure then prints its one line alone, a success prints them
// before the summary. -v prints them as they come.
typedef struct {
    char **msgs;
    int n, cap;
} warn_list;

static void warn_cb(void *user, const char *msg) {
    warn_list *w = user;
    if (cli_verbosity >= 2) {
        cli_warn("%s", msg);
        return;
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        char **m = lmp_realloc(w->msgs, (size_t)cap * sizeof *m);
        if (!m) return;
        w->msgs = m;
        w->cap = cap;
    }
    if ((w->msgs[w->n] = lmp_strdup(msg))) w->n++;
}

// msg with every "blk.<digits>" written "blk.*", into out (size cap).
static void warn_generalize(const char *msg, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = msg; *p && o + 1 < cap;) {
        if (!strncmp(p, "blk.", 4) && p[4] >= '0' && p[4] <= '9' && o + 6 < cap) {
            memcpy(out + o, "blk.*", 5);
            o += 5;
            p += 4;
            while (*p >= '0' && *p <= '9') p++;
        } else
            out[o++] = *p++;
    }
    out[o] = 0;
}

// Prints the held warnings, one line per message that differs only in its layer number ("blk.*...
// (5 tensors)"), then frees them.
static void warn_list_free(warn_list *w, int print) {
    char a[1024], b[1024];
    for (int i = 0; i < w->n; i++) {
        if (!w->msgs[i]) continue;
        warn_generalize(w->msgs[i], a, sizeof a);
        int count = 1;
        for (int j = i + 1; j < w->n; j++) {
            if (!w->msgs[j]) continue;
            warn_generalize(w->msgs[j], b, sizeof b);
            if (!strcmp(a, b)) {
                count++;
                lmp_free(w->msgs[j]);
                w->msgs[j] = NULL;
            }
        }
        if (print) {
            if (count > 1) cli_warn("%s (%d tensors)", a, count);
            else cli_warn("%s", w->msgs[i]);
        }
        lmp_free(w->msgs[i]);
    }
    lmp_free(w->msgs);
}

static int parse_type(const char *opt, const char *s, int *out) {
    int t = lmp_type_from_name(s);
    const lmp_type_traits *tr = t >= 0 ? lmp_type_get((lmp_dtype)t) : NULL;
    if (!tr || !tr->storable) {
        cli_usage_error("quantize", "%s: unknown type '%s'", opt, s);
        return -1;
    }
    *out = t;
    return 0;
}

int cli_quantize_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"bits", required_argument, 0, 'b'},       {"group", required_argument, 0, 'g'},
        {"scheme", required_argument, 0, 'S'},     {"method", required_argument, 0, 'm'},
        {"calib", required_argument, 0, 'c'},      {"calib-tokens", required_argument, 0, 'N'},
        {"tensor-type", required_argument, 0, 'T'}, {"output-type", required_argument, 0, 'O'},
        {"embed-type", required_argument, 0, 'E'}, {"gptq-damp", required_argument, 0, 'D'},
        {"act-order", no_argument, 0, 'A'},        {"allow-requantize", no_argument, 0, 'R'},
        {"dry-run", no_argument, 0, 'n'},          {"threads", required_argument, 0, 't'},
        {"tokenizer", required_argument, 0, 'k'},  {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},
        {"quiet", no_argument, 0, 'q'},            {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},             {"type", required_argument, 0, 'Y'},
        {"preset", required_argument, 0, 'P'},     {"target-bpw", required_argument, 0, 'B'},
        {"sens-tokens", required_argument, 0, 'K'}, {0, 0, 0, 0}};
    lmp_quant_params p;
    lmp_quant_params_default(&p);
    lmp_quant_override ov[MAX_OVERRIDES];
    char ov_pat[MAX_OVERRIDES][256];
    lmp_import_opts io = {0};
    const char *out = NULL;
    long long v;
    double d;
    int c, t, force = 0;
    while ((c = cli_getopt("quantize", argc, argv, "t:o:fqvh", opts)) != -1) {
        switch (c) {
        case 'b':
            if (cli_parse_int("quantize", "--bits", optarg, 0, 64, &v)) return 2;
            if (v != 4 && v != 8) return cli_usage_error("quantize", "--bits %lld: must be 4 or 8", v);
            p.bits = (int)v;
            break;
        case 'g':
            if (cli_parse_int("quantize", "--group", optarg, 0, 1 << 20, &v)) return 2;
            if (v != 32 && v != 64 && v != 128)
                return cli_usage_error("quantize", "--group %lld: must be 32, 64 or 128", v);
            p.group = (int)v;
            break;
        case 'S':
            if (!strcmp(optarg, "sym")) p.asym = 0;
            else if (!strcmp(optarg, "asym")) p.asym = 1;
            else return cli_usage_error("quantize", "--scheme '%s': must be sym or asym", optarg);
            break;
        case 'm':
            if ((t = lmp_quant_method_from_name(optarg)) < 0)
                return cli_usage_error("quantize", "--method '%s': must be search, rtn, imatrix, awq or gptq", optarg);
            p.method = (lmp_quant_method)t;
            break;
        case 'c': p.calib_path = optarg; break;
        case 'N': if (cli_parse_int("quantize", "--calib-tokens", optarg, 1, (long long)1 << 32, &v)) return 2; p.calib_tokens = v; break;
        case 'T': {
            const char *eq = strrchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                return cli_usage_error("quantize", "--tensor-type '%s': expected REGEX=TYPE", optarg);
            if (p.n_overrides == MAX_OVERRIDES) return cli_usage_error("quantize", "at most %d --tensor-type", MAX_OVERRIDES);
            if ((size_t)(eq - optarg) >= sizeof ov_pat[0]) return cli_usage_error("quantize", "--tensor-type pattern too long");
            if (parse_type("--tensor-type", eq + 1, &t)) return 2;
            memcpy(ov_pat[p.n_overrides], optarg, (size_t)(eq - optarg));
            ov_pat[p.n_overrides][eq - optarg] = 0;
            regex_t re;  // the pass compiles it the same way (POSIX extended); checked here to fail early
            int rerr = regcomp(&re, ov_pat[p.n_overrides], REG_EXTENDED | REG_NOSUB);
            if (rerr) {
                char why[128];
                regerror(rerr, &re, why, sizeof why);
                return cli_usage_error("quantize", "--tensor-type '%s': bad regular expression: %s", optarg, why);
            }
            regfree(&re);
            ov[p.n_overrides].pattern = ov_pat[p.n_overrides];
            ov[p.n_overrides].type = (lmp_dtype)t;
            p.n_overrides++;
            break;
        }
        case 'O': if (parse_type("--output-type", optarg, &p.output_type)) return 2; break;
        case 'Y': if (parse_type("--type", optarg, &p.type)) return 2; break;
        case 'P':
            if ((p.preset = lmp_quant_preset_from_name(optarg)) < 0) {
                char names[256];
                size_t o = 0;
                for (int i = 0; i < lmp_quant_n_presets && o < sizeof names; i++)
                    o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", lmp_quant_presets[i].name);
                return cli_usage_error("quantize", "--preset '%s': unknown preset (%s)", optarg, names);
            }
            break;
        case 'B':
            if (cli_parse_float("quantize", "--target-bpw", optarg, 0.0, 1e6, &d)) return 2;
            if (!(d > 0)) return cli_usage_error("quantize", "--target-bpw %s: must be a positive number of bits", optarg);
            p.target_bpw = d;
            break;
        case 'K': if (cli_parse_int("quantize", "--sens-tokens", optarg, 16, (long long)1 << 24, &v)) return 2; p.sens_tokens = v; break;
        case 'E': if (parse_type("--embed-type", optarg, &p.embed_type)) return 2; break;
        case 'D': if (cli_parse_float("quantize", "--gptq-damp", optarg, 1e-6, 0.999, &d)) return 2; p.gptq_damp = (float)d; break;
        case 'A': p.gptq_act_order = 1; break;
        case 'R': p.allow_requantize = 1; break;
        case 'n': p.dry_run = 1; break;
        case 't': if (cli_parse_int("quantize", "--threads", optarg, 1, 256, &v)) return 2; p.n_threads = (int)v; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': print_help(); return 0;
        default: return 2;
        }
    }
    p.overrides = ov;
    if (optind != argc - 1) return cli_usage_error("quantize", "expected exactly one input model");
    const char *in = argv[optind];
    if (cli_check_input("quantize", in)) return 1;
    if (p.method != LMP_QUANT_RTN && p.method != LMP_QUANT_SEARCH && !p.calib_path)
        return cli_usage_error("quantize", "--method %s needs --calib FILE", lmp_quant_method_name(p.method));
    if (p.method == LMP_QUANT_RTN && p.calib_path && !(p.target_bpw > 0))
        return cli_usage_error("quantize", "--calib is not used by --method rtn (only by search, imatrix, awq, gptq and "
                                           "--target-bpw)");
    if (p.target_bpw > 0 && !p.calib_path)
        return cli_usage_error("quantize", "--target-bpw needs --calib FILE (text to measure each tensor's sensitivity)");
    if (p.target_bpw > 32.0)
        return cli_usage_error("quantize", "--target-bpw %g is above f32's 32 bits per weight", p.target_bpw);
    if (p.target_bpw > 0 && p.preset >= 0)
        return cli_usage_error("quantize", "--target-bpw and --preset both choose the types: give one");
    if (p.calib_path && cli_check_input("quantize", p.calib_path)) return 1;
    if (io.tokenizer_path && cli_check_input("quantize", io.tokenizer_path)) return 1;
    char def_out[4096];
    if (!out) {
        char tbuf[64];
        if (p.target_bpw > 0) snprintf(tbuf, sizeof tbuf, "%gbpw", p.target_bpw);
        const char *tname = p.target_bpw > 0 ? tbuf : p.preset >= 0 ? lmp_quant_presets[p.preset].name
                            : p.type >= 0 ? lmp_type_name((lmp_dtype)p.type) : p.bits == 8 ? "q8_0" : lmp_type_name(p.asym ? (p.group == 32 ? LMP_DTYPE_Q4_1 : p.group == 64 ? LMP_DTYPE_Q4_1_G64 : LMP_DTYPE_Q4_1_G128)
                                                                          : (p.group == 32 ? LMP_DTYPE_Q4_0 : p.group == 64 ? LMP_DTYPE_Q4_0_G64 : LMP_DTYPE_Q4_0_G128));
        size_t len = strlen(in);
        const char *slash = strrchr(in, '/'), *dot = strrchr(in, '.');
        if (dot && (!slash || dot > slash)) len = (size_t)(dot - in);
        while (len > 1 && in[len - 1] == '/') len--;
        int show = p.method != LMP_QUANT_SEARCH;
        snprintf(def_out, sizeof def_out, "%.*s-%s%s%s.lmp", (int)len, in, tname, show ? "-" : "",
                 show ? lmp_quant_method_name(p.method) : "");
        out = def_out;
    }
    if (cli_check_clobber("quantize", in, io.tokenizer_path, out)) return 2;
    if (p.calib_path && cli_same_file(p.calib_path, out))
        return cli_usage_error("quantize", "output '%s' is the calibration file; choose another name", out);
    if (!p.dry_run && cli_check_output("quantize", out, force)) return 1;
    p.command_line = cli_command_line();
    warn_list warns = {0};
    p.warn = warn_cb;
    p.warn_user = &warns;
    p.note = note_cb;
    cli_progress prog = {0};
    p.progress = cli_progress_cb;
    p.progress_user = &prog;
    lmp_error err = {0};
    lmp_quant_summary s;
    lmp_status st = lmp_quantize(in, &io, out, &p, &s, &err);
    cli_progress_done(&prog);
    warn_list_free(&warns, !st);
    if (st) return cli_fail(&err);
    if (cli_verbosity >= 1) {
        fprintf(stderr, "lmpress: %s %s -> %s (%s%s)\n", p.dry_run ? "would quantize" : "quantized", in,
                p.dry_run ? "(dry run)" : out, lmp_quant_method_name(p.method), s.requantized ? ", re-quantized" : "");
        fprintf(stderr, "  tensors:");
        for (int k = 0; k < LMP_DTYPE_COUNT; k++)
            if (s.n_tensors_by_type[k]) fprintf(stderr, " %d %s", s.n_tensors_by_type[k], lmp_type_name((lmp_dtype)k));
        if (s.n_fallback) fprintf(stderr, " (%d fell back to a wider type)", s.n_fallback);
        fprintf(stderr, "\n  size: %.2f MB -> %.2f MB (%.2fx), %.3f bits per weight, %lld parameters\n",
                s.bytes_in / 1e6, s.bytes_out / 1e6, s.bytes_out ? (double)s.bytes_in / s.bytes_out : 0.0, s.bpw_out,
                (long long)s.n_params);
        if (s.calib_tokens_used)
            fprintf(stderr, "  calibration: %lld tokens of %s\n", (long long)s.calib_tokens_used, p.calib_path);
        if (s.budget)
            fprintf(stderr, "  target-bpw: predicted KLD %.5f, measured %.5f on %lld calibration tokens (sensitivity %.1f s)\n",
                    s.pred_kld, s.meas_kld, (long long)s.sens_tokens, s.sens_seconds);
        fprintf(stderr, "  time: %.2f s\n", s.seconds);
    }
    return 0;
}
