// scale_tensor.c - copies an lmpress file with one f32 tensor multiplied by a factor (issue 13's q8_0
// diagnosis: output_norm.weight x (1 + eps) scales every logit by 1 + eps, a temperature). A lab tool,
// not part of lmpress.
//
//   cc -O2 -I. quant/lab/scale_tensor.c build/liblmpress.a -lz -lm -o build/scale_tensor
//   build/scale_tensor IN.lmp output_norm.weight 1.003 OUT.lmp
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/lmp_format.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: scale_tensor IN.lmp NAME FACTOR OUT.lmp\n");
        return 2;
    }
    const float s = strtof(argv[3], NULL);
    lmp_error err = {0};
    lmp_file *f = NULL;
    if (lmp_file_open(argv[1], LMP_OPEN_SKIP_CRC, &f, &err)) {
        fprintf(stderr, "scale_tensor: %s\n", err.msg);
        return 1;
    }
    const size_t n = lmp_file_n_tensors(f);
    lmp_tensor *t = calloc(n, sizeof *t);
    float *buf = NULL;
    for (size_t i = 0; i < n; i++) {
        t[i] = *lmp_file_tensor(f, i);
        if (strcmp(t[i].name, argv[2])) continue;
        if (t[i].type != LMP_DTYPE_F32) {
            fprintf(stderr, "scale_tensor: %s is not f32\n", argv[2]);
            return 1;
        }
        const int64_t ne = lmp_tensor_nelements(&t[i]);
        buf = malloc((size_t)ne * sizeof *buf);
        for (int64_t j = 0; j < ne; j++) buf[j] = ((const float *)t[i].data)[j] * s;
        t[i].data = buf;
    }
    if (!buf) {
        fprintf(stderr, "scale_tensor: no tensor %s\n", argv[2]);
        return 1;
    }
    if (lmp_file_write(argv[4], lmp_file_meta(f), t, n, &err)) {
        fprintf(stderr, "scale_tensor: %s\n", err.msg);
        return 1;
    }
    free(buf);
    free(t);
    lmp_file_close(f);
    return 0;
}
