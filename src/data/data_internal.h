/* Internal helpers shared by the dataset readers (not installed). */
#ifndef WCMI_DATA_INTERNAL_H
#define WCMI_DATA_INTERNAL_H

#include "wcmi/core.h"
#include "wcmi/data.h"

#include <stddef.h>
#include <stdint.h>

/* Largest decompressed stream a reader accepts: more than any of the four datasets needs
 * (SVHN extra's X is 1.6 GB) and small enough that a gzip bomb fails quickly instead of eating
 * the machine. */
#define WCMI_DATA_MAX_INFLATE ((size_t)2 << 30)

/* Reads a whole regular file into a wcmi_alloc'd buffer (FIFOs, devices and directories are refused
 * without blocking). Missing / unreadable files give WCMI_EIO. */
int wcmi__read_file(wcmi_ctx *ctx, const char *path, uint8_t **out, size_t *out_len);

/* 1 if the bytes start with the gzip magic 1f 8b. */
int wcmi__is_gzip(const uint8_t *b, size_t len);

/* Inflates a gzip (gzip = 1, concatenated members allowed) or zlib (gzip = 0) stream into a
 * wcmi_alloc'd buffer that grows as data arrives, never past cap bytes. Trailing bytes after a
 * zlib stream are ignored (MAT pads compressed elements); after gzip members they are an error.
 * Errors name `file`. */
int wcmi__inflate(wcmi_ctx *ctx, const char *file, const uint8_t *src, size_t len, int gzip, size_t cap,
                  uint8_t **out, size_t *out_len);

/* Inflates only the first `want` bytes of a gzip stream into out (*got < want if the stream is
 * shorter): enough to read a header before deciding how much to inflate. */
int wcmi__inflate_prefix(wcmi_ctx *ctx, const char *file, const uint8_t *src, size_t len, uint8_t *out, size_t want,
                         size_t *got);

#endif
