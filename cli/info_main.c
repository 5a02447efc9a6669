// info_main.c - "lmpress info FILE": metadata and tensor table of a model file.
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "format/lmp_import.h"
#include "format/qtypes.h"

static const char *HELP =
    "usage: lmpress info [options] MODEL\n"
    "Prints the metadata and the tensor table (name, dtype, shape, bytes, CRC32) of a model. MODEL may be an .lmp\n"
    "file or any importable checkpoint (shown as it would be imported). Every checksum is verified.\n"
    "  --tokenizer FILE   llama2.c tokenizer.bin for a llama2.c checkpoint\n"
    "  --no-tensors       metadata only\n"
    "  --full             print arrays in full (default: first 8 elements)\n"
    "  -h, --help\n";

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void print_scalar(const lmp_kv *kv) {
    switch (kv->type) {
    case LMP_KV_U32:  // checksums in hex, as the "checksum:" line and the tensor table show them
        if (ends_with(kv->key, "checksum") || ends_with(kv->key, "crc32")) printf("0x%08" PRIx32, kv->v.u32);
        else printf("%" PRIu32, kv->v.u32);
        break;
    case LMP_KV_I32: printf("%" PRId32, kv->v.i32); break;
    case LMP_KV_U64: printf("%" PRIu64, kv->v.u64); break;
    case LMP_KV_I64: printf("%" PRId64, kv->v.i64); break;
    case LMP_KV_F32: printf("%g", (double)kv->v.f32); break;
    case LMP_KV_F64: printf("%g", kv->v.f64); break;
    case LMP_KV_BOOL: printf("%s", kv->v.b ? "true" : "false"); break;
    case LMP_KV_STRING: printf("\"%s\"", (const char *)kv->data); break;
    default: break;
    }
}

// Prints a string with control bytes escaped (tokens contain newlines and raw bytes).
static void print_escaped(const char *s, size_t max) {
    putchar('"');
    for (size_t i = 0; s[i] && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_array(const lmp_kv *kv, int full) {
    uint64_t shown = full ? kv->count : (kv->count < 8 ? kv->count : 8);
    printf("%s[%" PRIu64 "] = [", lmp_kv_type_name(kv->elem_type), kv->count);
    for (uint64_t i = 0; i < shown; i++) {
        if (i) printf(", ");
        const char *p = (const char *)kv->data;
        switch (kv->elem_type) {
        case LMP_KV_U32: printf("%" PRIu32, ((const uint32_t *)p)[i]); break;
        case LMP_KV_I32: printf("%" PRId32, ((const int32_t *)p)[i]); break;
        case LMP_KV_U64: printf("%" PRIu64, ((const uint64_t *)p)[i]); break;
        case LMP_KV_I64: printf("%" PRId64, ((const int64_t *)p)[i]); break;
        case LMP_KV_F32: printf("%g", (double)((const float *)p)[i]); break;
        case LMP_KV_F64: printf("%g", ((const double *)p)[i]); break;
        case LMP_KV_BOOL: printf("%s", ((const uint8_t *)p)[i] ? "true" : "false"); break;
        case LMP_KV_STRING: print_escaped(((char *const *)kv->data)[i], full ? (size_t)-1 : 64); break;
        default: break;
        }
    }
    printf("%s]", shown < kv->count ? ", ..." : "");
}

int cli_info_main(int argc, char **argv) {
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"no-tensors", no_argument, 0, 'n'},
                                         {"full", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    lmp_import_opts io = {0};
    int tensors = 1, full = 0, c;
    while ((c = cli_getopt("info", argc, argv, "h", opts)) != -1) {
        switch (c) {
        case 't': io.tokenizer_path = optarg; break;
        case 'n': tensors = 0; break;
        case 'f': full = 1; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc - 1) return cli_usage_error("info", "expected exactly one MODEL");
    const char *path = argv[optind];
    if (cli_check_input("info", path)) return 1;
    lmp_error err = {0};
    lmp_file *f = NULL;
    if (lmp_open_any(path, &io, LMP_OPEN_DEFAULT, &f, &err)) return cli_fail(&err);

    lmp_source_kind kind = lmp_source_detect(path);
    printf("file:       %s\n", path);
    printf("source:     %s%s\n", lmp_source_name(kind), kind == LMP_SOURCE_LMP ? "" : " (imported in memory)");
    if (kind == LMP_SOURCE_LMP) {
        printf("format:     lmpress version %u, %" PRIu64 " bytes\n", lmp_file_version(f), lmp_file_size(f));
        printf("checksum:   0x%08x\n", lmp_file_checksum(f));
    }
    const lmp_meta *m = lmp_file_meta(f);
    printf("\nmetadata (%zu keys):\n", lmp_meta_count(m));
    for (size_t i = 0; i < lmp_meta_count(m); i++) {
        const lmp_kv *kv = lmp_meta_at(m, i);
        printf("  %-40s ", kv->key);
        if (kv->type == LMP_KV_ARRAY) print_array(kv, full);
        else print_scalar(kv);
        putchar('\n');
    }
    int64_t params = 0;
    uint64_t bytes = 0;
    size_t nt = lmp_file_n_tensors(f);
    if (tensors)
        printf("\ntensors (%zu):\n  %-32s %-10s %-20s %12s  %-10s\n", nt, "name", "dtype", "shape", "bytes", "crc32");
    for (size_t i = 0; i < nt; i++) {
        const lmp_tensor *t = lmp_file_tensor(f, i);
        params += lmp_tensor_nelements(t);
        bytes += t->nbytes;
        if (!tensors) continue;
        char shape[64];
        size_t u = 0;
        shape[0] = 0;
        for (int d = 0; d < t->ndim; d++)
            u += (size_t)snprintf(shape + u, sizeof shape - u, "%s%" PRId64, d ? " x " : "", t->shape[d]);
        printf("  %-32s %-10s %-20s %12" PRIu64 "  0x%08x\n", t->name, lmp_type_name(t->type), shape, t->nbytes,
               t->crc32);
    }
    printf("\n%zu tensors, %" PRId64 " parameters, %" PRIu64 " bytes of tensor data, %.3f bits per weight\n", nt,
           params, bytes, params ? (double)bytes * 8.0 / (double)params : 0.0);
    lmp_file_close(f);
    return 0;
}
