// lmp_common.c - error messages, allocation with failure injection, CRC32 via zlib, clock.
#include "format/lmp_common.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

lmp_status lmp_err(lmp_error *err, lmp_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

lmp_status lmp_err_prefix(lmp_error *err, lmp_status st, const char *fmt, ...) {
    if (!err || st == LMP_OK) return st;
    char prefix[LMP_ERROR_MSG_MAX], old[LMP_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return st;
}

const char *lmp_status_name(lmp_status st) {
    switch (st) {
    case LMP_OK: return "ok";
    case LMP_E_ARG: return "invalid argument";
    case LMP_E_IO: return "I/O error";
    case LMP_E_FORMAT: return "malformed file";
    case LMP_E_CHECKSUM: return "checksum mismatch";
    case LMP_E_UNSUPPORTED: return "unsupported";
    case LMP_E_NOMEM: return "out of memory";
    case LMP_E_STATE: return "refused";
    }
    return "unknown status";
}

static long g_fail_after = 0;

// Why: tests walk an operation with every allocation failing in turn to prove that no path leaks or crashes.
static int alloc_should_fail(void) {
    if (g_fail_after <= 0) return 0;
    if (--g_fail_after == 0) return 1;
    return 0;
}

void lmp_alloc_fail_after(long n) { g_fail_after = n > 0 ? n : 0; }

void *lmp_malloc(size_t n) {
    if (alloc_should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 1) != 0) return NULL;
    return p;
}

void *lmp_calloc(size_t count, size_t size) {
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) return NULL;
    void *p = lmp_malloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void *lmp_realloc(void *p, size_t n) {
    if (!p) return lmp_malloc(n);
    void *q = lmp_malloc(n);
    if (!q) return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    free(p);
    return q;
}

void lmp_free(void *p) { free(p); }

char *lmp_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = lmp_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

uint32_t lmp_crc32(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = buf;
    uLong c = crc;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

uint32_t lmp_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
    // crc32_combine(a, b, len) = shift(a, len) ^ b, with shift linear in a and additive in len. z_off_t
    // may be 32 bits: shift crc_a over B 1 GiB at a time (combining with 0), then combine the rest.
    uLong c = crc_a;
    uint64_t n = len_b;
    while (n > (1u << 30)) {
        c = crc32_combine(c, 0, (z_off_t)(1u << 30));
        n -= 1u << 30;
    }
    return (uint32_t)crc32_combine(c, crc_b, (z_off_t)n);
}

double lmp_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
