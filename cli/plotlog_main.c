// plotlog_main.c - "lmpress plot-log FILE.csv... -o curve.svg": training curves of distill --log files. Left
// panel: the CE (solid) and KD (dashed) losses of every file against the step; right panel: the held-out
// perplexity when a log has evaluations, else the learning rate.
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/plot.h"

#define MAX_FILES 8

typedef struct curve {
    double *step, *ce, *kd, *lr, *ppl;  // (n)
    int n, cap, has_ppl;
} curve;

static void curve_free(curve *c) {
    free(c->step), free(c->ce), free(c->kd), free(c->lr), free(c->ppl);
}

static int push(curve *c, double step, double ce, double kd, double lr, double ppl) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        double **arrs[] = {&c->step, &c->ce, &c->kd, &c->lr, &c->ppl};
        for (int i = 0; i < 5; i++) {
            double *p = realloc(*arrs[i], (size_t)cap * sizeof(double));
            if (!p) return -1;
            *arrs[i] = p;
        }
        c->cap = cap;
    }
    c->step[c->n] = step, c->ce[c->n] = ce, c->kd[c->n] = kd, c->lr[c->n] = lr, c->ppl[c->n] = ppl;
    c->n++;
    return 0;
}

// Splits line at commas in place; returns the number of fields (at most max).
static int split(char *line, char **f, int max) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line;; p++) {
        if (n < max) f[n] = p;
        n++;
        p = strchr(p, ',');
        if (!p) break;
        *p = 0;
    }
    return n;
}

static int parse_num(const char *s, double *v) {
    char *end;
    if (!*s) {
        *v = NAN;
        return 0;
    }
    errno = 0;
    *v = strtod(s, &end);
    return *end || errno ? -1 : 0;
}

// Reads one log. Columns are found by name (step, ce, kd required; lr, eval_ppl optional).
static int read_log(const char *path, curve *c) {
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("plot-log: cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    char line[4096], *fld[32];
    if (!fgets(line, sizeof line, f)) {
        cli_error("plot-log: '%s' is empty", path);
        fclose(f);
        return -1;
    }
    int nh = split(line, fld, 32), ic[5] = {-1, -1, -1, -1, -1};
    const char *want[5] = {"step", "ce", "kd", "lr", "eval_ppl"};
    for (int i = 0; i < nh && i < 32; i++)
        for (int k = 0; k < 5; k++)
            if (!strcmp(fld[i], want[k])) ic[k] = i;
    for (int k = 0; k < 3; k++)
        if (ic[k] < 0) {
            cli_error("plot-log: '%s' has no column '%s' (not a distill --log file)", path, want[k]);
            fclose(f);
            return -1;
        }
    int lineno = 1;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '\n' || line[0] == 0) continue;
        int n = split(line, fld, 32);
        if (n != nh) {
            cli_error("plot-log: '%s' line %d: %d fields, the header has %d", path, lineno, n, nh);
            fclose(f);
            return -1;
        }
        double v[5] = {NAN, NAN, NAN, NAN, NAN};
        for (int k = 0; k < 5; k++)
            if (ic[k] >= 0 && parse_num(fld[ic[k]], &v[k])) {
                cli_error("plot-log: '%s' line %d: column '%s' is not a number: '%s'", path, lineno, want[k],
                          fld[ic[k]]);
                fclose(f);
                return -1;
            }
        if (!isfinite(v[0])) {
            cli_error("plot-log: '%s' line %d: no step number", path, lineno);
            fclose(f);
            return -1;
        }
        if (isfinite(v[4])) c->has_ppl = 1;
        if (push(c, v[0], v[1], v[2], v[3], v[4])) {
            cli_error("plot-log: out of memory");
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    if (c->n == 0) {
        cli_error("plot-log: '%s' has no rows", path);
        return -1;
    }
    return 0;
}

static const char *HELP =
    "usage: lmpress plot-log FILE.csv... -o curve.svg [--title TEXT] [-f]\n"
    "Plots the CE (solid) and KD (dashed) training losses of one or more 'lmpress distill --log' files, and their\n"
    "held-out perplexity (or the learning rate when no file has evaluations), as an SVG chart.\n";

int cli_plotlog_main(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"title", required_argument, 0, 'T'},
                                         {"force", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *title = "training curves", *cmd = "plot-log";
    int c, force = 0;
    while ((c = cli_getopt(cmd, argc, argv, "o:fh", opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'T': title = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    int nf = argc - optind;
    if (nf < 1) return cli_usage_error(cmd, "expected one or more log files");
    if (nf > MAX_FILES) return cli_usage_error(cmd, "at most %d log files", MAX_FILES);
    if (!out) return cli_usage_error(cmd, "missing -o OUT.svg");
    for (int i = 0; i < nf; i++) {
        if (cli_check_input(cmd, argv[optind + i])) return 1;
        if (cli_same_file(argv[optind + i], out))
            return cli_usage_error(cmd, "output '%s' is the input '%s'; choose another name", out, argv[optind + i]);
    }
    if (cli_check_output(cmd, out, force)) return 1;
    curve cv[MAX_FILES] = {0};
    int rc = 0, any_ppl = 0;
    for (int i = 0; i < nf && !rc; i++) {
        rc = read_log(argv[optind + i], &cv[i]);
        any_ppl |= cv[i].has_ppl;
    }
    if (!rc) {
        lmp_plot_series s[3 * MAX_FILES];
        char labels[3 * MAX_FILES][300];
        int ns = 0;
        for (int i = 0; i < nf; i++) {
            const char *base = strrchr(argv[optind + i], '/');
            base = base ? base + 1 : argv[optind + i];
            snprintf(labels[ns], sizeof labels[ns], "CE %s", base);
            s[ns] = (lmp_plot_series){labels[ns], cv[i].step, cv[i].ce, cv[i].n, 0, 0};
            ns++;
            snprintf(labels[ns], sizeof labels[ns], "KD %s", base);
            s[ns] = (lmp_plot_series){labels[ns], cv[i].step, cv[i].kd, cv[i].n, 0, 1};
            ns++;
            snprintf(labels[ns], sizeof labels[ns], "%s %s", any_ppl ? "PPL" : "lr", base);
            s[ns] = (lmp_plot_series){labels[ns], cv[i].step, any_ppl ? cv[i].ppl : cv[i].lr, cv[i].n, 1, 0};
            ns++;
        }
        lmp_plot_panel pn[2] = {{"step", "loss (CE solid, T^2 KL dashed)", 0},
                                {"step", any_ppl ? "held-out perplexity" : "learning rate", any_ppl}};
        lmp_error err = {0};
        if (lmp_plot_curves_svg(out, title, pn, 2, s, ns, &err)) rc = cli_fail(&err);
        else fprintf(stderr, "lmpress: wrote %s (%d log%s)\n", out, nf, nf == 1 ? "" : "s");
    } else {
        rc = 1;
    }
    for (int i = 0; i < nf; i++) curve_free(&cv[i]);
    return rc;
}
