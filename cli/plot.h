// plot.h - a self-contained SVG chart of compared models (eval-ppl --plot): four panels, PPL and KLD
// against decode tokens/s and bits per weight, one labelled point per model.
#ifndef LMP_PLOT_H
#define LMP_PLOT_H

#include "format/lmp_common.h"

typedef struct lmp_plot_point {
    const char *label;
    double bpw, decode_tok_s, ppl, kld;
} lmp_plot_point;

// Writes the chart to path (temporary name, renamed on success).
lmp_status lmp_plot_write_svg(const char *path, const char *title, const lmp_plot_point *pts, int n,
                              lmp_error *err);

// Line charts (plot-log): panels side by side, each with its own axes and any number of series.
typedef struct lmp_plot_series {
    const char *label;
    const double *x, *y;  // (n) points; points with a NaN are skipped
    int n;
    int panel;            // which panel (0..n_panels-1)
    int dashed;
} lmp_plot_series;

typedef struct lmp_plot_panel {
    const char *xlabel, *ylabel;
    int log_y;            // logarithmic y axis (values must be > 0)
} lmp_plot_panel;

// Writes the panels to path (temporary name, renamed on success).
lmp_status lmp_plot_curves_svg(const char *path, const char *title, const lmp_plot_panel *panels, int n_panels,
                               const lmp_plot_series *series, int n_series, lmp_error *err);

#endif
