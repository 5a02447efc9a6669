// cli_common.c - helpers shared by the subcommands: one-line messages, number parsing with ranges,
// progress lines with rate and ETA, and input/output path checks.
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "format/lmp_import.h"

int cli_verbosity = 1;

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lmpress: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_warn(const char *fmt, ...) {
    if (cli_verbosity < 1) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("lmpress: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail(const lmp_error *err) {
    cli_error("%s", err && err->msg[0] ? err->msg : "unknown error");
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lmpress %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'lmpress %s --help')\n", cmd);
    va_end(ap);
    return 2;
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) {
        cli_usage_error(cmd, "%s expects an integer, got '%s'", opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s %lld is out of range (%lld..%lld)", opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || isnan(v)) {
        cli_usage_error(cmd, "%s expects a number, got '%s'", opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s %g is out of range (%g..%g)", opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static void fmt_duration(double s, char *buf, size_t n) {
    if (s < 0 || !isfinite(s)) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

// Why rate-limited: a pass may report progress thousands of times a second; a terminal needs ~4 updates
// a second, a log file one line every 10 seconds.
void cli_progress_cb(void *user, const char *stage, double done, double total) {
    cli_progress *p = user;
    if (!p || cli_verbosity < 1) return;
    double now = lmp_time_now();
    int tty = isatty(2);
    if (p->t_start == 0 || strncmp(p->stage, stage, sizeof p->stage - 1) != 0) {
        if (p->printed) fputc('\n', stderr);
        p->printed = 0;
        p->t_start = now;
        p->t_last = 0;
        snprintf(p->stage, sizeof p->stage, "%s", stage);
    }
    int finished = total > 0 && done >= total;
    if (!finished && now - p->t_last < (tty ? 0.25 : 10.0)) return;
    p->t_last = now;
    double el = now - p->t_start;
    char eta[32], ela[32];
    fmt_duration(done > 0 && total > 0 ? el * (total - done) / done : -1, eta, sizeof eta);
    fmt_duration(el, ela, sizeof ela);
    double pct = total > 0 ? 100.0 * done / total : 0;
    fprintf(stderr, "%s%s: %5.1f%% (%.0f/%.0f) %s elapsed, ETA %s%s", tty ? "\r" : "", stage, pct, done, total, ela,
            eta, tty ? "   " : "\n");
    p->printed = tty;
    fflush(stderr);
}

void cli_progress_done(cli_progress *p) {
    if (p && p->printed) fputc('\n', stderr);
    if (p) p->printed = 0;
}

int cli_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Why more than cli_same_file(model, out): a model path brings other inputs along. A llama2.c checkpoint
// reads the tokenizer found beside it (tok*.bin, tokenizer.bin) and a Hugging Face directory its files;
// writing the output over one of them would destroy an input the user never named.
int cli_check_clobber(const char *cmd, const char *model, const char *tokenizer, const char *out) {
    struct stat so, sm;
    if (stat(out, &so) != 0) return 0;  // a new file clobbers nothing
    if (cli_same_file(model, out))
        return cli_usage_error(cmd, "output '%s' is the input '%s'; choose another name", out, model);
    if (tokenizer && cli_same_file(tokenizer, out))
        return cli_usage_error(cmd, "output '%s' is the tokenizer '%s'; choose another name", out, tokenizer);
    if (stat(model, &sm) != 0) return 0;
    char dir[4096];
    if (S_ISDIR(sm.st_mode)) {
        snprintf(dir, sizeof dir, "%s", out);  // is out's directory the model directory?
        char *slash = strrchr(dir, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == dir) dir[1] = 0;
        else *slash = 0;
        if (cli_same_file(dir, model))
            return cli_usage_error(cmd, "output '%s' is a file of the input directory '%s'; choose another name", out,
                                   model);
        return 0;
    }
    if (tokenizer || lmp_source_detect(model) != LMP_SOURCE_LLAMA2C) return 0;
    const char *slash = strrchr(model, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - model + 1) : 0, model);
    char pat[4200];
    const char *names[] = {"tok[0-9]*.bin", "tokenizer.bin"};
    for (int i = 0; i < 2; i++) {
        glob_t g;
        snprintf(pat, sizeof pat, "%s%s", dir, names[i]);
        if (glob(pat, 0, NULL, &g) != 0) continue;
        int hit = -1;
        for (size_t k = 0; k < g.gl_pathc && hit < 0; k++)
            if (cli_same_file(g.gl_pathv[k], out)) hit = (int)k;
        if (hit >= 0) {
            cli_usage_error(cmd, "output '%s' is the tokenizer '%s' found beside '%s'; choose another name", out,
                            g.gl_pathv[hit], model);
            globfree(&g);
            return 2;
        }
        globfree(&g);
    }
    return 0;
}

int cli_check_input(const char *cmd, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        cli_error("%s: cannot open '%s': %s", cmd, path, strerror(errno));
        return -1;
    }
    if (access(path, R_OK) != 0) {
        cli_error("%s: cannot read '%s': %s", cmd, path, strerror(errno));
        return -1;
    }
    return 0;
}

// Why check before the work: the writers only find out at the end (after a long quantization, or once the
// results are already on stdout) that the output cannot be created, with a message about a temporary name.
// Why refuse an existing output: a typo in -o should not destroy a model that took an hour to make (zstd's
// rule); -f/--force says the user means it. Anything at the name counts, a dangling symbolic link included;
// with force the file is still only replaced by a rename of the finished temporary file, and only a
// regular file (or a link to one) is replaced.
int cli_check_output(const char *cmd, const char *path, int force) {
    struct stat st;
    if (!*path) {
        cli_error("%s: the output path is empty", cmd);
        return -1;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_error("%s: output '%s' is a directory; give a file name", cmd, path);
        return -1;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &st) != 0) {
        cli_error("%s: cannot write '%s': directory '%s' does not exist", cmd, path, dir);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        cli_error("%s: cannot write '%s': '%s' is not a directory", cmd, path, dir);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        cli_error("%s: cannot write '%s': directory '%s' is not writable", cmd, path, dir);
        return -1;
    }
    if (lstat(path, &st) == 0) {
        if (!force) {
            fprintf(stderr, "lmpress %s: output '%s' exists (use -f/--force to overwrite)\n", cmd, path);
            return -1;
        }
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            fprintf(stderr, "lmpress %s: output '%s' exists and is not a regular file; not replaced even with --force\n",
                    cmd, path);
            return -1;
        }
    }
    return 0;
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static char g_cmdline[2048];

void cli_set_command_line(int argc, char **argv) {
    size_t used = 0;
    g_cmdline[0] = 0;
    for (int i = 0; i < argc && used + 1 < sizeof g_cmdline; i++) {
        const char *a = argv[i];
        int quote = strpbrk(a, " \t\"'") != NULL || !*a;
        used += (size_t)snprintf(g_cmdline + used, sizeof g_cmdline - used, "%s%s%s%s", i ? " " : "",
                                 quote ? "'" : "", a, quote ? "'" : "");
    }
}

const char *cli_command_line(void) { return g_cmdline; }

void cli_getopt_reset(void) {
    optind = 1;
    opterr = 0;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts) {
    char spec[128];
    snprintf(spec, sizeof spec, ":%s", shortopts);  // leading ':' reports a missing value as ':'
    opterr = 0;
    int c = getopt_long(argc, argv, spec, longopts, NULL);
    if (c == '?') {
        if (optopt) cli_usage_error(cmd, "unknown option '-%c'", optopt);
        else cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        return -2;
    }
    if (c == ':') {
        cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        return -2;
    }
    return c;
}

int cli_parse_device(const char *cmd, const char *s, const char **out) {
    if (!strcmp(s, "cpu") || !strcmp(s, "cuda") || !strcmp(s, "auto")) {
        *out = s;
        return 0;
    }
    cli_usage_error(cmd, "--device '%s': expected cpu, cuda or auto", s);
    return -1;
}

void cli_auto_fallback_note(const char *cmd, const char *why) {
    if (cli_verbosity < 1) return;
    // the backend's advice to pass --device cpu is what auto does by itself
    const char *tail = "; use --device cpu";
    size_t n = strlen(why), t = strlen(tail);
    if (n >= t && !strcmp(why + n - t, tail)) n -= t;
    fprintf(stderr, "lmpress %s: --device auto: %.*s; running on the CPU\n", cmd, (int)n, why);
}

const char *cli_resolve_device(const char *cmd, const char *device) {
    if (!device || strcmp(device, "auto") != 0) return device ? device : "cpu";
    lmp_backend *b = NULL;
    lmp_error err = {0};
    if (lmp_backend_new("cuda", NULL, &b, &err) == LMP_OK) {
        lmp_backend_free(b);
        return "cuda";
    }
    cli_auto_fallback_note(cmd, err.msg);
    return "cpu";
}

lmp_status cli_session_new(const char *cmd, lmp_model *m, lmp_session_opts *so, const char *device,
                           lmp_session **out, lmp_error *err) {
    lmp_status st = lmp_session_new(m, so, out, err);
    if (st == LMP_E_UNSUPPORTED && device && !strcmp(device, "auto") && so->backend && !strcmp(so->backend, "cuda")) {
        cli_auto_fallback_note(cmd, err->msg);
        so->backend = "cpu";
        st = lmp_session_new(m, so, out, err);
    }
    return st;
}
