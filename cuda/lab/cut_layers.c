// cut_layers.c - writes the first N blocks of an lmpress model (types, bytes and every other tensor as
// they are) so that a real quantized model fits the device tool's 64 MiB transfer: SmolLM2-135M's q4_1
// file (98 MB) cut to 12 of its 30 blocks keeps the 49152 x 576 q8_0 embedding / classifier and the
// quantized ffn_down of the layers it keeps. For CUDA-against-CPU checks on the GPU machine, not a
// compression tool (the cut model is no longer the trained network's function).
//
//   build/cut_layers IN.lmp N OUT.lmp      (built by scripts/gpu-check.sh --prepare)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/lmp_format.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: cut_layers IN.lmp N OUT.lmp\n");
        return 2;
    }
    const long keep = strtol(argv[2], NULL, 10);
    lmp_error err = {0};
    lmp_file *f = NULL;
    if (lmp_file_open(argv[1], 0, &f, &err)) {
        fprintf(stderr, "cut_layers: %s\n", err.msg);
        return 1;
    }
    uint32_t n_blocks = 0;
    const char *arch = NULL;
    char key[128];
    if (lmp_meta_get_str(lmp_file_meta(f), "general.architecture", &arch, &err) ||
        (snprintf(key, sizeof key, "%s.block_count", arch), lmp_meta_get_u32(lmp_file_meta(f), key, &n_blocks, &err))) {
        fprintf(stderr, "cut_layers: %s\n", err.msg);
        lmp_file_close(f);
        return 1;
    }
    if (keep < 1 || keep > (long)n_blocks) {
        fprintf(stderr, "cut_layers: N must be in 1..%u\n", n_blocks);
        lmp_file_close(f);
        return 2;
    }
    lmp_meta *meta = lmp_meta_clone(lmp_file_meta(f));
    const size_t n = lmp_file_n_tensors(f);
    lmp_tensor *t = calloc(n, sizeof *t);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const lmp_tensor *s = lmp_file_tensor(f, i);
        long blk = -1;
        if (!strncmp(s->name, "blk.", 4)) blk = strtol(s->name + 4, NULL, 10);
        if (blk >= keep) continue;
        t[k++] = *s;
    }
    int rc = 0;
    if (!meta || !t || lmp_meta_set_u32(meta, key, (uint32_t)keep) || lmp_file_write(argv[3], meta, t, k, &err)) {
        fprintf(stderr, "cut_layers: %s\n", err.msg[0] ? err.msg : "out of memory");
        rc = 1;
    } else {
        printf("cut_layers: %s: %zu of %zu tensors (blocks 0..%ld of %u)\n", argv[3], k, n, keep - 1, n_blocks);
    }
    free(t);
    lmp_meta_free(meta);
    lmp_file_close(f);
    return rc;
}
