// dump_logits_main.c - "lmpress dump-logits MODEL": raw float32 logits of a token sequence, for checks
// against independent implementations (scripts/ref_*.py).
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runtime/session.h"

static const char *HELP =
    "usage: lmpress dump-logits MODEL (--tokens 1,2,3 | --text TEXT) -o OUT.f32 [-f]\n"
    "Runs the sequence as one batch from position 0 and writes its logits as raw little-endian float32,\n"
    "(n_tokens, vocab) row-major. --text is encoded with the model's tokenizer (BOS first if it adds one).\n"
    "  --tokens LIST     comma-separated token ids\n"
    "  --text TEXT\n"
    "  --batch N         largest batch (default: the whole sequence); 1 checks the decode path\n"
    "  -t, --threads N\n"
    "  --tokenizer FILE  llama2.c tokenizer.bin for llama2.c checkpoints\n"
    "  -o, --output FILE\n"
    "  -f, --force       replace OUT if it exists (never an input)\n"
    "  -h, --help\n";

int cli_dump_logits_main(int argc, char **argv) {
    static const struct option opts[] = {{"tokens", required_argument, 0, 'T'}, {"text", required_argument, 0, 'x'},
                                         {"batch", required_argument, 0, 'b'},  {"threads", required_argument, 0, 't'},
                                         {"tokenizer", required_argument, 0, 'k'}, {"output", required_argument, 0, 'o'},
                                         {"force", no_argument, 0, 'f'},      {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *list = NULL, *text = NULL, *out = NULL;
    long long batch = 0, threads = 0;
    lmp_import_opts io = {0};
    int c, force = 0;
    while ((c = cli_getopt("dump-logits", argc, argv, "t:o:fh", opts)) != -1) {
        switch (c) {
        case 'T': list = optarg; break;
        case 'x': text = optarg; break;
        case 'b': if (cli_parse_int("dump-logits", "--batch", optarg, 1, 1 << 20, &batch)) return 2; break;
        case 't': if (cli_parse_int("dump-logits", "--threads", optarg, 1, 256, &threads)) return 2; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc - 1) return cli_usage_error("dump-logits", "expected exactly one MODEL");
    if (!list == !text) return cli_usage_error("dump-logits", "give exactly one of --tokens and --text");
    if (!out) return cli_usage_error("dump-logits", "missing -o OUT.f32");
    const char *path = argv[optind];
    if (cli_check_input("dump-logits", path)) return 1;
    if (io.tokenizer_path && cli_check_input("dump-logits", io.tokenizer_path)) return 1;
    if (cli_check_clobber("dump-logits", path, io.tokenizer_path, out)) return 2;
    if (cli_check_output("dump-logits", out, force)) return 1;
    lmp_error err = {0};
    lmp_model *m = NULL;
    if (lmp_model_load(path, &io, &m, &err)) return cli_fail(&err);
    int32_t *toks = NULL;
    size_t n = 0;
    int rc = 1;
    float *logits = NULL;
    lmp_session *s = NULL;
    if (list) {
        toks = lmp_malloc((strlen(list) / 2 + 1) * sizeof(int32_t));
        if (!toks) goto oom;
        for (const char *p = list; *p;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || (*end && *end != ',') || v < 0 || v >= m->cfg.vocab) {
                cli_usage_error("dump-logits", "--tokens: bad token id near '%.20s' (vocabulary %d)", p, m->cfg.vocab);
                rc = 2;
                goto done;
            }
            toks[n++] = (int32_t)v;
            if (*end && !end[1]) {  // trailing comma
                cli_usage_error("dump-logits", "--tokens: '%s' ends with a comma", list);
                rc = 2;
                goto done;
            }
            p = *end ? end + 1 : end;
        }
    } else {
        if (!m->tok) {
            cli_error("dump-logits: %s has no tokenizer", path);
            goto done;
        }
        if (lmp_tokenizer_encode(m->tok, text, strlen(text), lmp_tokenizer_add_bos(m->tok), &toks, &n, &err)) goto fail;
    }
    if (n == 0 || (int64_t)n > m->cfg.ctx) {
        cli_usage_error("dump-logits", "%zu tokens: need 1..%d", n, m->cfg.ctx);
        rc = 2;
        goto done;
    }
    lmp_session_opts so = {(int)n, batch ? (int)batch : (int)n, (int)threads, "cpu"};
    if (lmp_session_new(m, &so, &s, &err)) goto fail;
    logits = lmp_malloc(n * (size_t)m->cfg.vocab * sizeof(float));
    if (!logits) goto oom;
    if (lmp_session_eval(s, toks, (int)n, 0, 0, logits, &err)) goto fail;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(logits, sizeof(float), n * (size_t)m->cfg.vocab, f) == n * (size_t)m->cfg.vocab;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, out) != 0) {
        cli_error("dump-logits: cannot write '%s': %s", out, strerror(errno));
        unlink(tmp);
        goto done;
    }
    fprintf(stderr, "lmpress: wrote %zu x %d logits to %s\n", n, m->cfg.vocab, out);
    rc = 0;
    goto done;
oom:
    cli_error("out of memory");
    goto done;
fail:
    cli_fail(&err);
done:
    lmp_free(logits);
    lmp_free(toks);
    lmp_session_free(s);
    lmp_model_free(m);
    return rc;
}
