// lmp_common.h - status codes, error messages, the one allocation helper, CRC32 and a clock.
//
// Every library function that can fail returns an lmp_status and, when given a non-NULL lmp_error,
// fills it with one precise human-readable line (no trailing newline). Library code never prints
// and never exits; the CLI (cli/*_main.c) turns the message into "lmpress: <msg>" on stderr.
//
// All heap memory of the library goes through lmp_malloc/lmp_calloc/lmp_realloc/lmp_free so that
// tests can inject allocation failures (lmp_alloc_fail_after).
#ifndef LMP_COMMON_H
#define LMP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMP_VERSION_STRING "0.1.0"

typedef enum lmp_status {
    LMP_OK = 0,
    LMP_E_ARG = 1,          // the caller passed an impossible value
    LMP_E_IO = 2,           // open/read/write/rename/mmap failed
    LMP_E_FORMAT = 3,       // a file is malformed
    LMP_E_CHECKSUM = 4,     // a CRC32 does not match
    LMP_E_UNSUPPORTED = 5,  // well-formed, but not supported (future version, unknown type, ...)
    LMP_E_NOMEM = 6,        // an allocation failed
    LMP_E_STATE = 7,        // refused in this state (e.g. re-quantizing a quantized file)
} lmp_status;

#define LMP_ERROR_MSG_MAX 512

typedef struct lmp_error {
    lmp_status status;
    char msg[LMP_ERROR_MSG_MAX];
} lmp_error;

// Sets err (if not NULL) to status st and the printf-formatted message; returns st.
// Usage: return lmp_err(err, LMP_E_FORMAT, "tensor '%s': offset %llu past end of file", ...);
lmp_status lmp_err(lmp_error *err, lmp_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
// Adds context on the way up: prefixes err's message with the printf-formatted prefix and ": ", and
// returns st unchanged, so that `return lmp_err_prefix(err, st, "%s", path);` keeps the status whether or
// not the caller passed an lmp_error. Does nothing to err when err is NULL or st is LMP_OK (err->status
// is never changed: it already holds st when st came from a call given err).
lmp_status lmp_err_prefix(lmp_error *err, lmp_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *lmp_status_name(lmp_status st);

// Allocation. lmp_malloc returns memory aligned to 64 bytes; all four accept/return NULL like libc.
// lmp_free(NULL) is a no-op. lmp_realloc keeps the 64-byte alignment.
void *lmp_malloc(size_t n);
void *lmp_calloc(size_t count, size_t size);
void *lmp_realloc(void *p, size_t n);
void lmp_free(void *p);
char *lmp_strdup(const char *s);
// Test hook: the n-th allocation from now fails (n = 1: the next one); n <= 0 disables.
void lmp_alloc_fail_after(long n);

// Overflow-checked size arithmetic: return 0 and set *out on success, 1 on overflow.
static inline int lmp_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int lmp_add_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

// CRC32 (zlib polynomial), incremental: crc = lmp_crc32(0, buf, n); crc = lmp_crc32(crc, more, m).
// Handles buffers larger than 4 GiB.
uint32_t lmp_crc32(uint32_t crc, const void *buf, size_t n);
// The CRC32 of A followed by B from crc_a = CRC32 of A, crc_b = CRC32 of B and len_b = B's length (for
// checksums computed in pieces, in parallel).
uint32_t lmp_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

// Monotonic seconds.
double lmp_time_now(void);

// Progress callback of long passes: stage name, work done and total (any unit). Library code calls it;
// the CLI rate-limits and prints it on stderr with an ETA. May be NULL.
typedef void (*lmp_progress_fn)(void *user, const char *stage, double done, double total);

#ifdef __cplusplus
}
#endif
#endif
