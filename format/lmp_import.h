// lmp_import.h - importers from other checkpoint formats into an lmp_builder, and exporters.
//
// Every importer produces the same thing: an lmp_builder holding lmpress metadata (docs/format.md,
// "Metadata keys") and tensors under lmpress names (docs/format.md, "Tensor names"), ready to be written
// (lmpress import) or opened in memory (any other subcommand given a foreign file). Importers validate
// their input as strictly as the .lmp reader: every size and offset is checked against the file size
// before it is used, and the message names the exact problem.
#ifndef LMP_IMPORT_H
#define LMP_IMPORT_H

#include "format/lmp_common.h"
#include "format/lmp_format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lmp_source_kind {
    LMP_SOURCE_UNKNOWN = 0,
    LMP_SOURCE_LMP,          // our own format
    LMP_SOURCE_LLAMA2C,      // llama2.c .bin (legacy 7-int header, or version 1 "ak42")
    LMP_SOURCE_HDF5,         // docs/hdf5.md schema
    LMP_SOURCE_HF,           // Hugging Face directory: config.json + *.safetensors
    LMP_SOURCE_GGUF,         // GGUF v2/v3
} lmp_source_kind;

// All zeros (or a NULL opts) is the default: find the tokenizer as each importer does, keep quantized
// tensors quantized.
typedef struct lmp_import_opts {
    // A llama2.c tokenizer.bin. llama2.c importer: NULL looks for tok<vocab>.bin, then tokenizer.bin,
    // beside the model. HF importer: given, it replaces tokenizer.json. HDF5 and GGUF ignore it.
    const char *tokenizer_path;
    // GGUF: 0 keeps Q8_0/Q4_0/Q4_1 tensors as our bit-identical types; 1 dequantizes them to F32. Types
    // we have no identical type for (Q4_K, Q6_K) are dequantized to F32 either way.
    int dequantize;
} lmp_import_opts;

// Guesses the kind from magic bytes (a directory is HF; .bin with no magic is llama2.c legacy).
lmp_source_kind lmp_source_detect(const char *path);
const char *lmp_source_name(lmp_source_kind k);

// Each importer: on success *out is a new builder; on failure *out is NULL and err says why.
// The source path is recorded in metadata as provenance.source and its CRC32 as
// provenance.source_crc32 (u32).
lmp_status lmp_import_llama2c(const char *bin_path, const lmp_import_opts *opts, lmp_builder **out,
                              lmp_error *err);
lmp_status lmp_import_hdf5(const char *path, const lmp_import_opts *opts, lmp_builder **out,
                           lmp_error *err);
lmp_status lmp_import_hf(const char *dir, const lmp_import_opts *opts, lmp_builder **out,
                         lmp_error *err);
lmp_status lmp_import_gguf(const char *path, const lmp_import_opts *opts, lmp_builder **out,
                           lmp_error *err);
// Dispatches on lmp_source_detect; LMP_SOURCE_LMP is refused here (open it with lmp_file_open).
lmp_status lmp_import_any(const char *path, const lmp_import_opts *opts, lmp_builder **out,
                          lmp_error *err);

// Opens any supported model path as an lmp_file: .lmp files are mapped, other formats are imported in
// memory. The usual entry point of every subcommand.
lmp_status lmp_open_any(const char *path, const lmp_import_opts *opts, unsigned open_flags,
                        lmp_file **out, lmp_error *err);

// Exporters. Quantized tensors are dequantized to F32 for HDF5 (recorded as an attribute).
lmp_status lmp_export_hdf5(const lmp_file *f, const char *path, lmp_error *err);
// GGUF export of a file whose tensors are F32, F16, Q8_0, Q4_0 or Q4_1 (bit-identical types).
lmp_status lmp_export_gguf(const lmp_file *f, const char *path, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
