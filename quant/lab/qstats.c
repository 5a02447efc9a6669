// qstats.c - per-tensor error statistics of a quantized lmpress file against its float base (issue 13's
// q8_0 diagnosis): relative error energy rho = |q - x|^2 / |x|^2, the signal gain g = <x, q> / <x, x> - 1
// (< 0: the rows shrink along themselves) and the norm change |q|^2 / |x|^2 - 1, per matrix. A lab tool,
// not part of lmpress.
//
//   cc -O2 -I. quant/lab/qstats.c build/liblmpress.a -lm -o build/qstats; build/qstats BASE.lmp Q.lmp
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "format/lmp_format.h"
#include "format/qtypes.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: qstats BASE.lmp Q.lmp\n");
        return 2;
    }
    lmp_error err = {0};
    lmp_file *fb = NULL, *fq = NULL;
    if (lmp_file_open(argv[1], LMP_OPEN_SKIP_CRC, &fb, &err) || lmp_file_open(argv[2], LMP_OPEN_SKIP_CRC, &fq, &err)) {
        fprintf(stderr, "qstats: %s\n", err.msg);
        return 1;
    }
    printf("%-28s %-6s %10s %11s %11s %11s\n", "tensor", "type", "rho", "gain", "norm2", "exact%");
    for (size_t i = 0; i < lmp_file_n_tensors(fq); i++) {
        const lmp_tensor *tq = lmp_file_tensor(fq, i), *tb = lmp_file_find(fb, tq->name);
        if (!tb || tq->ndim != 2 || tb->type != LMP_DTYPE_F32) continue;
        const int64_t rows = tq->shape[0], cols = tq->shape[1];
        const lmp_type_traits *tr = lmp_type_get(tq->type);
        float *q = malloc((size_t)cols * sizeof *q);
        double sxx = 0, sxq = 0, sqq = 0, sdd = 0;
        long long exact = 0;
        const size_t rs = lmp_type_row_size(tq->type, cols);
        for (int64_t r = 0; r < rows; r++) {
            const float *x = (const float *)tb->data + r * cols;
            tr->to_float((const char *)tq->data + r * rs, q, cols);
            for (int64_t j = 0; j < cols; j++) {
                sxx += (double)x[j] * x[j];
                sxq += (double)x[j] * q[j];
                sqq += (double)q[j] * q[j];
                sdd += ((double)q[j] - x[j]) * ((double)q[j] - x[j]);
                exact += q[j] == x[j];
            }
        }
        printf("%-28s %-6s %10.3e %+11.3e %+11.3e %10.2f\n", tq->name, lmp_type_name(tq->type), sdd / sxx,
               sxq / sxx - 1, sqq / sxx - 1, 100.0 * exact / (double)(rows * cols));
        free(q);
    }
    lmp_file_close(fb);
    lmp_file_close(fq);
    return 0;
}
