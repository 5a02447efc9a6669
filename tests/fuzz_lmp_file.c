// fuzz_lmp_file.c - libFuzzer entry for the .lmp reader (lmp_file_open_mem). Not part of `make test`.
//
// Build and run (from the repository root):
//   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iformat -Iquant \
//     -o /tmp/fuzz_lmp_file tests/fuzz_lmp_file.c format/lmp_file.c format/lmp_meta.c \
//     format/lmp_common.c quant/qtypes.c -lz -lm
//   mkdir -p /tmp/fuzz_corpus && /tmp/fuzz_lmp_file -max_total_time=60 /tmp/fuzz_corpus
// A seed corpus of valid files helps (any small .lmp, e.g. those tests/test_format leaves in its
// temporary directory). Each input is opened twice: as given (CRCs verified), then with its header and
// metadata CRCs recomputed, so that mutations get past the checksums to the structure checks.
#include <stdint.h>
#include <string.h>

#include "format/lmp_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = lmp_malloc(size);
    if (!buf) return 0;
    memcpy(buf, data, size);
    lmp_file *f = NULL;
    lmp_error err;
    if (lmp_file_open_mem(buf, size, 0, LMP_OPEN_DEFAULT, &f, &err) == LMP_OK) lmp_file_close(f);
    if (size >= LMP_HEADER_SIZE) {  // make the checksums right so that the fuzzer explores the structure
        uint64_t doff;
        memcpy(&doff, buf + 40, 8);
        if (doff >= LMP_HEADER_SIZE && doff <= size) {
            uint32_t c = lmp_crc32(0, buf + LMP_HEADER_SIZE, (size_t)(doff - LMP_HEADER_SIZE));
            memcpy(buf + 56, &c, 4);
        }
        uint32_t h = lmp_crc32(0, buf, 60);
        memcpy(buf + 60, &h, 4);
        f = NULL;
        if (lmp_file_open_mem(buf, size, 0, LMP_OPEN_SKIP_CRC, &f, &err) == LMP_OK) {
            // touch what a caller would read
            for (size_t i = 0; i < lmp_file_n_tensors(f); i++) {
                const lmp_tensor *t = lmp_file_tensor(f, i);
                volatile uint8_t x = t->nbytes ? ((const uint8_t *)t->data)[t->nbytes - 1] : 0;
                (void)x;
                if (lmp_file_find(f, t->name) == NULL) __builtin_trap();
            }
            lmp_file_close(f);
        }
    }
    lmp_free(buf);
    return 0;
}
