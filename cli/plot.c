// plot.c - SVG charts: eval-ppl --plot and plot-log's training curves (see plot.h). Plain SVG 1.1, no scripts or external fonts, so
// any browser renders it; axes use "nice" tick steps (1, 2, 5 x 10^k).
#include "cli/plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PANEL_W 420
#define PANEL_H 300
#define MARGIN_L 70
#define MARGIN_B 45
#define MARGIN_T 30
#define MARGIN_R 20

static const char *COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
    double step = r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10;
    return step * mag;
}

static void axis_range(const double *v, int n, double *lo, double *hi, double *step) {
    double a = v[0], b = v[0];
    for (int i = 1; i < n; i++) {
        if (v[i] < a) a = v[i];
        if (v[i] > b) b = v[i];
    }
    if (!isfinite(a) || !isfinite(b)) a = 0, b = 1;
    double pad = (b - a) * 0.08;
    if (pad <= 0) pad = fabs(a) > 0 ? fabs(a) * 0.05 : 0.5;
    a -= pad;
    b += pad;
    *step = nice_step(b - a, 5);
    *lo = floor(a / *step) * *step;
    *hi = ceil(b / *step) * *step;
}

static void panel(FILE *f, int ox, int oy, const char *xlabel, const char *ylabel, const double *xs, const double *ys,
                  const lmp_plot_point *pts, int n) {
    double x0, x1, xs_, y0, y1, ys_;
    axis_range(xs, n, &x0, &x1, &xs_);
    axis_range(ys, n, &y0, &y1, &ys_);
    int pw = PANEL_W - MARGIN_L - MARGIN_R, ph = PANEL_H - MARGIN_T - MARGIN_B;
    int px = ox + MARGIN_L, py = oy + MARGIN_T;
#define SX(v) (px + ((v) - x0) / (x1 - x0) * pw)
#define SY(v) (py + ph - ((v) - y0) / (y1 - y0) * ph)
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#333\"/>\n", px, py, pw, ph);
    for (double t = x0; t <= x1 + xs_ * 1e-6; t += xs_) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", SX(t), py, SX(t), py + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n", SX(t), py + ph + 15,
                fabs(t) < xs_ * 1e-6 ? 0.0 : t);
    }
    for (double t = y0; t <= y1 + ys_ * 1e-6; t += ys_) {
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", px, SY(t), px + pw, SY(t));
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n", px - 5, SY(t) + 4,
                fabs(t) < ys_ * 1e-6 ? 0.0 : t);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", px + pw / 2, py + ph + 35);
    xml_text(f, xlabel);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 %d %d)\">",
            ox + 18, py + ph / 2, ox + 18, py + ph / 2);
    xml_text(f, ylabel);
    fprintf(f, "</text>\n");
    for (int i = 0; i < n; i++) {
        const char *col = COLORS[i % (int)(sizeof COLORS / sizeof COLORS[0])];
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>", SX(xs[i]), SY(ys[i]), col);
        xml_text(f, pts[i].label);
        fprintf(f, "</title></circle>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"%s\">", SX(xs[i]) + 7,
                SY(ys[i]) - 6, col);
        xml_text(f, pts[i].label);
        fprintf(f, "</text>\n");
    }
#undef SX
#undef SY
}

lmp_status lmp_plot_write_svg(const char *path, const char *title, const lmp_plot_point *pts, int n, lmp_error *err) {
    if (n < 1) return lmp_err(err, LMP_E_ARG, "nothing to plot");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return lmp_err(err, LMP_E_IO, "cannot write '%s'", tmp);
    double bpw[n], tps[n], ppl[n], kld[n];
    for (int i = 0; i < n; i++) {
        bpw[i] = pts[i].bpw;
        tps[i] = pts[i].decode_tok_s;
        ppl[i] = pts[i].ppl;
        kld[i] = pts[i].kld;
    }
    int W = 2 * PANEL_W, H = 2 * PANEL_H + 40;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"sans-serif\">\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">lmpress eval-ppl: ",
            W, H, W, H, W, H, W / 2);
    xml_text(f, title);
    fprintf(f, "</text>\n");
    panel(f, 0, 40, "decode tokens/s", "perplexity", tps, ppl, pts, n);
    panel(f, PANEL_W, 40, "bits per weight", "perplexity", bpw, ppl, pts, n);
    panel(f, 0, 40 + PANEL_H, "decode tokens/s", "mean KL divergence from base", tps, kld, pts, n);
    panel(f, PANEL_W, 40 + PANEL_H, "bits per weight", "mean KL divergence from base", bpw, kld, pts, n);
    fprintf(f, "</svg>\n");
    if (ferror(f) | (fclose(f) != 0)) {
        unlink(tmp);
        return lmp_err(err, LMP_E_IO, "error writing '%s'", tmp);
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return lmp_err(err, LMP_E_IO, "cannot rename '%s' to '%s'", tmp, path);
    }
    return LMP_OK;
}

// ---- line charts ----

static lmp_status svg_open(const char *path, char *tmp, size_t tmp_n, FILE **f, lmp_error *err) {
    snprintf(tmp, tmp_n, "%s.tmp.%d", path, (int)getpid());
    *f = fopen(tmp, "w");
    return *f ? LMP_OK : lmp_err(err, LMP_E_IO, "cannot write '%s'", tmp);
}

static lmp_status svg_close(FILE *f, const char *tmp, const char *path, lmp_error *err) {
    if (ferror(f) | (fclose(f) != 0)) {
        unlink(tmp);
        return lmp_err(err, LMP_E_IO, "error writing '%s'", tmp);
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return lmp_err(err, LMP_E_IO, "cannot rename '%s' to '%s'", tmp, path);
    }
    return LMP_OK;
}

// Range of the finite values of every series of one panel (log10 of them when log_y).
static int series_range(const lmp_plot_series *s, int n_series, int panel, int use_y, int log_y, double *lo,
                        double *hi, double *step) {
    double v[2] = {INFINITY, -INFINITY};
    for (int k = 0; k < n_series; k++) {
        if (s[k].panel != panel) continue;
        for (int i = 0; i < s[k].n; i++) {
            double x = use_y ? s[k].y[i] : s[k].x[i];
            if (use_y && log_y) x = x > 0 ? log10(x) : NAN;
            if (!isfinite(x)) continue;
            v[0] = x < v[0] ? x : v[0];
            v[1] = x > v[1] ? x : v[1];
        }
    }
    if (!isfinite(v[0])) return 0;
    axis_range(v, 2, lo, hi, step);
    if (!(use_y && log_y) && v[0] >= 0 && *lo < 0) *lo = 0;  // steps and losses start at 0, not at the padding
    return 1;
}

static void curves_panel(FILE *f, int ox, int oy, const lmp_plot_panel *pn, int panel, const lmp_plot_series *s,
                         int n_series) {
    double x0, x1, xst, y0, y1, yst;
    int pw = PANEL_W - MARGIN_L - MARGIN_R, ph = PANEL_H - MARGIN_T - MARGIN_B;
    int px = ox + MARGIN_L, py = oy + MARGIN_T;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#333\"/>\n", px, py, pw, ph);
    if (!series_range(s, n_series, panel, 0, 0, &x0, &x1, &xst) ||
        !series_range(s, n_series, panel, 1, pn->log_y, &y0, &y1, &yst)) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">no data</text>\n", px + pw / 2,
                py + ph / 2);
        return;
    }
#define SX(v) (px + ((v) - x0) / (x1 - x0) * pw)
#define SY(v) (py + ph - ((v) - y0) / (y1 - y0) * ph)
    for (double t = x0; t <= x1 + xst * 1e-6; t += xst) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", SX(t), py, SX(t), py + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n", SX(t), py + ph + 15,
                fabs(t) < xst * 1e-6 ? 0.0 : t);
    }
    for (double t = y0; t <= y1 + yst * 1e-6; t += yst) {
        double lab = pn->log_y ? pow(10, t) : (fabs(t) < yst * 1e-6 ? 0.0 : t);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", px, SY(t), px + pw, SY(t));
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n", px - 5, SY(t) + 4, lab);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", px + pw / 2, py + ph + 35);
    xml_text(f, pn->xlabel);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 %d %d)\">",
            ox + 18, py + ph / 2, ox + 18, py + ph / 2);
    xml_text(f, pn->ylabel);
    fprintf(f, "</text>\n");
    int legend = 0;
    for (int k = 0; k < n_series; k++) {
        if (s[k].panel != panel) continue;
        const char *col = COLORS[k % (int)(sizeof COLORS / sizeof COLORS[0])];
        int open = 0;
        for (int i = 0; i < s[k].n; i++) {
            double y = pn->log_y ? (s[k].y[i] > 0 ? log10(s[k].y[i]) : NAN) : s[k].y[i];
            if (!isfinite(y) || !isfinite(s[k].x[i])) continue;  // missing values are skipped, not gaps
            if (!open)
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"", col,
                        s[k].dashed ? " stroke-dasharray=\"5,3\"" : "");
            fprintf(f, "%.1f,%.1f ", SX(s[k].x[i]), SY(y));
            open = 1;
        }
        if (open) fprintf(f, "\"/>\n");
        int n_fin = 0;
        for (int i = 0; i < s[k].n; i++) n_fin += isfinite(s[k].y[i]) && (!pn->log_y || s[k].y[i] > 0);
        if (n_fin <= 60)  // sparse series (evaluations): mark the points
            for (int i = 0; i < s[k].n; i++) {
                double y = pn->log_y ? (s[k].y[i] > 0 ? log10(s[k].y[i]) : NAN) : s[k].y[i];
                if (isfinite(y) && isfinite(s[k].x[i]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(s[k].x[i]), SY(y), col);
            }
        int ly = py + 14 + 14 * legend++;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", px + pw - 150, ly - 4,
                px + pw - 130, ly - 4, col, s[k].dashed ? " stroke-dasharray=\"5,3\"" : "");
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\" fill=\"%s\">", px + pw - 126, ly, col);
        xml_text(f, s[k].label);
        fprintf(f, "</text>\n");
    }
#undef SX
#undef SY
}

lmp_status lmp_plot_curves_svg(const char *path, const char *title, const lmp_plot_panel *panels, int n_panels,
                               const lmp_plot_series *series, int n_series, lmp_error *err) {
    if (n_panels < 1 || n_series < 1) return lmp_err(err, LMP_E_ARG, "nothing to plot");
    char tmp[4096];
    FILE *f;
    lmp_status st = svg_open(path, tmp, sizeof tmp, &f, err);
    if (st) return st;
    int W = n_panels * PANEL_W, H = PANEL_H + 40;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"sans-serif\">\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">",
            W, H, W, H, W, H, W / 2);
    xml_text(f, title);
    fprintf(f, "</text>\n");
    for (int p = 0; p < n_panels; p++) curves_panel(f, p * PANEL_W, 40, &panels[p], p, series, n_series);
    fprintf(f, "</svg>\n");
    return svg_close(f, tmp, path, err);
}
