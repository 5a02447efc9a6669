// qerr.c - squared error of the q8_0 (or any type's) scale search and of RTN on every matrix of a float
// model, in memory (issue 13's q8_0 diagnosis): rho = |q - x|^2 / |x|^2 over all layer matrices (the token
// embedding apart), and the search's CPU time. A lab tool, not part of lmpress.
//
//   cc -O2 -I. quant/lab/qerr.c build/liblmpress.a -lz -lm -o build/qerr; build/qerr MODEL.lmp [TYPE]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/lmp_format.h"
#include "format/qtypes.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: qerr MODEL.lmp [TYPE]\n");
        return 2;
    }
    const lmp_dtype t = (lmp_dtype)(argc > 2 ? lmp_type_from_name(argv[2]) : LMP_DTYPE_Q8_0);
    const lmp_type_traits *tr = lmp_type_get(t);
    lmp_error err = {0};
    lmp_file *f = NULL;
    if (!tr || lmp_file_open(argv[1], LMP_OPEN_SKIP_CRC, &f, &err)) {
        fprintf(stderr, "qerr: %s\n", tr ? err.msg : "unknown type");
        return 1;
    }
    double sx = 0, se[2] = {0, 0}, secs = 0;
    for (size_t i = 0; i < lmp_file_n_tensors(f); i++) {
        const lmp_tensor *tn = lmp_file_tensor(f, i);
        if (tn->ndim != 2 || tn->type != LMP_DTYPE_F32 || !strcmp(tn->name, "token_embd.weight")) continue;
        const int64_t rows = tn->shape[0], cols = tn->shape[1];
        if (cols % tr->block_size) continue;
        void *q = malloc(lmp_type_row_size(t, cols));
        float *d = malloc((size_t)cols * sizeof *d);
        for (int64_t r = 0; r < rows; r++) {
            const float *x = (const float *)tn->data + r * cols;
            for (int m = 0; m < 2; m++) {
                struct timespec a, b;
                clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
                if (m) lmp_quantize_row_search(t, x, q, cols, NULL);
                else tr->from_float_ref(x, q, cols);
                clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
                if (m) secs += (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
                tr->to_float(q, d, cols);
                for (int64_t j = 0; j < cols; j++) se[m] += ((double)d[j] - x[j]) * ((double)d[j] - x[j]);
            }
            for (int64_t j = 0; j < cols; j++) sx += (double)x[j] * x[j];
        }
        free(q);
        free(d);
    }
    printf("%s: rho rtn %.4e  search %.4e  (search/rtn %.3f), search %.2f s CPU\n", tr->name, se[0] / sx, se[1] / sx,
           se[1] / se[0], secs);
    lmp_file_close(f);
    return 0;
}
