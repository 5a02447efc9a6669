// import.c - format detection and dispatch: lmp_source_detect, lmp_source_name, lmp_import_any,
// lmp_open_any.
//
// Detection looks at magic bytes first (.lmp, HDF5 superblock signature at 0 or 512 * 2^k, GGUF,
// llama2.c version-1 "ak42"), then at names (a directory, config.json or *.safetensors is a Hugging
// Face checkpoint; *.bin a legacy llama2.c export), and last at a plausible legacy llama2.c header
// whose announced size matches the file. It does not validate anything beyond that: the importers do.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/lmp_import.h"

static const unsigned char HDF5_SIG[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

const char *lmp_source_name(lmp_source_kind k) {
    switch (k) {
    case LMP_SOURCE_LMP: return "lmpress";
    case LMP_SOURCE_LLAMA2C: return "llama2.c";
    case LMP_SOURCE_HDF5: return "HDF5";
    case LMP_SOURCE_HF: return "Hugging Face";
    case LMP_SOURCE_GGUF: return "GGUF";
    case LMP_SOURCE_UNKNOWN: break;
    }
    return "unknown";
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int read_at(int fd, uint64_t off, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

// Why a size check: a legacy llama2.c file has no magic, so seven plausible integers alone would
// claim arbitrary binary files. The header must announce exactly the file's size (shared or separate
// classifier), counting the two legacy freq_cis tables.
static int plausible_llama2c(const int32_t h[7], uint64_t size) {
    int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv = h[4], vocab = h[5], seq = h[6];
    if (vocab < 0) vocab = -vocab;
    if (dim < 1 || dim > 65536 || hidden < 1 || hidden > (1 << 20) || layers < 1 || layers > 1024 || heads < 1 ||
        heads > dim || dim % heads || kv < 1 || kv > heads || heads % kv || vocab < 1 || vocab > (1 << 22) || seq < 1 ||
        seq > (1 << 22))
        return 0;
    int64_t hs = dim / heads;
    uint64_t n = (uint64_t)vocab * dim + (uint64_t)layers * dim * 2 + (uint64_t)layers * dim * dim * 2 +
                 (uint64_t)layers * dim * (kv * hs) * 2 + (uint64_t)layers * dim * hidden * 3 + (uint64_t)dim +
                 (uint64_t)seq * hs;
    uint64_t shared = 28 + 4 * n, separate = shared + 4 * (uint64_t)vocab * dim;
    return size == shared || size == separate;
}

lmp_source_kind lmp_source_detect(const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return LMP_SOURCE_UNKNOWN;
    if (S_ISDIR(sb.st_mode)) return LMP_SOURCE_HF;
    if (!S_ISREG(sb.st_mode)) return LMP_SOURCE_UNKNOWN;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return LMP_SOURCE_UNKNOWN;
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char head[28];
    memset(head, 0, sizeof head);
    size_t n = size < sizeof head ? (size_t)size : sizeof head;
    lmp_source_kind kind = LMP_SOURCE_UNKNOWN;
    if (read_at(fd, 0, head, n) == 0) {
        uint32_t magic;
        memcpy(&magic, head, 4);
        if (n >= LMP_MAGIC_LEN && memcmp(head, LMP_MAGIC, LMP_MAGIC_LEN) == 0) kind = LMP_SOURCE_LMP;
        else if (n >= 8 && memcmp(head, HDF5_SIG, 8) == 0) kind = LMP_SOURCE_HDF5;
        else if (n >= 4 && memcmp(head, "GGUF", 4) == 0) kind = LMP_SOURCE_GGUF;
        else if (n >= 4 && magic == 0x616b3432u) kind = LMP_SOURCE_LLAMA2C;  // "ak42": llama2.c version 1+
        // An HDF5 file may start with a user block: the signature is then at 512, 1024, 2048, ...
        for (uint64_t off = 512; kind == LMP_SOURCE_UNKNOWN && off + 8 <= size && off <= ((uint64_t)1 << 40); off *= 2) {
            unsigned char sig[8];
            if (read_at(fd, off, sig, 8) == 0 && memcmp(sig, HDF5_SIG, 8) == 0) kind = LMP_SOURCE_HDF5;
        }
        if (kind == LMP_SOURCE_UNKNOWN) {
            const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
            if (strcmp(base, "config.json") == 0 || ends_with(base, ".safetensors") ||
                strcmp(base, "model.safetensors.index.json") == 0)
                kind = LMP_SOURCE_HF;
            else if (ends_with(base, ".bin")) kind = LMP_SOURCE_LLAMA2C;
            else if (n == 28) {
                int32_t h[7];
                memcpy(h, head, sizeof h);
                if (plausible_llama2c(h, size)) kind = LMP_SOURCE_LLAMA2C;
            }
        }
    }
    close(fd);
    return kind;
}

lmp_status lmp_import_any(const char *path, const lmp_import_opts *opts, lmp_builder **out, lmp_error *err) {
    if (!out || !path) return lmp_err(err, LMP_E_ARG, "lmp_import_any: NULL argument");
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return lmp_err(err, LMP_E_IO, "%s: %s", path, strerror(errno));
    lmp_import_opts defaults = {0};
    if (!opts) opts = &defaults;
    switch (lmp_source_detect(path)) {
    case LMP_SOURCE_LLAMA2C: return lmp_import_llama2c(path, opts, out, err);
    case LMP_SOURCE_HDF5: return lmp_import_hdf5(path, opts, out, err);
    case LMP_SOURCE_HF: return lmp_import_hf(path, opts, out, err);
    case LMP_SOURCE_GGUF: return lmp_import_gguf(path, opts, out, err);
    case LMP_SOURCE_LMP:
        return lmp_err(err, LMP_E_ARG, "%s is already an lmpress file (open it with lmp_file_open)", path);
    case LMP_SOURCE_UNKNOWN: break;
    }
    return lmp_err(err, LMP_E_UNSUPPORTED,
                   "%s: unknown format (expected .lmp, llama2.c .bin, GGUF, HDF5 or a Hugging Face directory)", path);
}

lmp_status lmp_open_any(const char *path, const lmp_import_opts *opts, unsigned open_flags, lmp_file **out,
                        lmp_error *err) {
    if (!out || !path) return lmp_err(err, LMP_E_ARG, "lmp_open_any: NULL argument");
    *out = NULL;
    if (lmp_source_detect(path) == LMP_SOURCE_LMP) return lmp_file_open(path, open_flags, out, err);
    lmp_builder *b = NULL;
    lmp_status st = lmp_import_any(path, opts, &b, err);
    if (st) return st;
    // The in-memory image is written and opened at once: its CRCs were just computed (open_flags,
    // which concern CRC verification of stored files, do not apply).
    st = lmp_builder_to_file(b, out, err);
    lmp_builder_free(b);
    return st;
}
