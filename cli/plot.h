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

#endif
