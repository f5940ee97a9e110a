/* Whole-file reads and bounded inflation for the dataset readers. */
#include "data/data_internal.h"
#include "wcmi/io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

int wcmi__read_file(wcmi_ctx *ctx, const char *path, uint8_t **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  struct stat st;
  FILE *f = wcmi_fopen_regular(ctx, path, 0, &st);
  if (!f) return ctx ? ctx->status : WCMI_EIO;
  size_t size = (size_t)st.st_size;
  /* +1 so an empty file still gets a valid pointer. */
  uint8_t *buf = wcmi_alloc(ctx, size + 1, 1);
  if (!buf) {
    fclose(f);
    return wcmi_fail(ctx, WCMI_ENOMEM, "%s: cannot allocate %zu bytes", path, size);
  }
  size_t got = size ? fread(buf, 1, size, f) : 0;
  int err = ferror(f);
  fclose(f);
  if (got != size || err) {
    wcmi_free(buf);
    return wcmi_fail(ctx, WCMI_EIO, "%s: read error after %zu of %zu bytes", path, got, size);
  }
  *out = buf;
  *out_len = size;
  return WCMI_OK;
}

int wcmi__is_gzip(const uint8_t *b, size_t len) { return len >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

/* Grows *buf to at least need bytes (doubling), never past cap. */
static int grow(wcmi_ctx *ctx, const char *file, uint8_t **buf, size_t *capacity, size_t used, size_t cap) {
  size_t next = *capacity < ((size_t)1 << 16) ? ((size_t)1 << 16) : *capacity * 2;
  if (next > cap) next = cap;
  if (next <= *capacity)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: decompressed data exceeds the limit of %zu bytes", file, cap);
  uint8_t *nb = wcmi_alloc(ctx, next, 1);
  if (!nb) return wcmi_fail(ctx, WCMI_ENOMEM, "%s: cannot allocate %zu bytes while decompressing", file, next);
  if (used) memcpy(nb, *buf, used);
  wcmi_free(*buf);
  *buf = nb;
  *capacity = next;
  return WCMI_OK;
}

int wcmi__inflate_prefix(wcmi_ctx *ctx, const char *file, const uint8_t *src, size_t len, uint8_t *out, size_t want,
                         size_t *got) {
  *got = 0;
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return wcmi_fail(ctx, WCMI_ENOMEM, "%s: cannot initialise zlib", file);
  zs.next_in = (Bytef *)(uintptr_t)src;
  zs.avail_in = (uInt)(len < ((size_t)1 << 30) ? len : ((size_t)1 << 30));
  zs.next_out = out;
  zs.avail_out = (uInt)want;
  int z = Z_OK;
  while (zs.avail_out > 0 && (z == Z_OK) && zs.avail_in > 0) z = inflate(&zs, Z_NO_FLUSH);
  *got = want - zs.avail_out;
  const char *why = zs.msg ? zs.msg : "invalid data";
  int rc = z == Z_OK || z == Z_STREAM_END || z == Z_BUF_ERROR
               ? WCMI_OK
               : wcmi_fail(ctx, WCMI_EFORMAT, "%s: corrupted gzip stream (%s)", file, why);
  inflateEnd(&zs);
  return rc;
}

int wcmi__inflate(wcmi_ctx *ctx, const char *file, const uint8_t *src, size_t len, int gzip, size_t cap,
                  uint8_t **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK)
    return wcmi_fail(ctx, WCMI_ENOMEM, "%s: cannot initialise zlib", file);
  uint8_t *buf = NULL;
  size_t capacity = 0, used = 0;
  /* A gzip trailer states the uncompressed size mod 2^32. Use it only as the first allocation, and
   * only up to what deflate can expand len bytes into (~1032:1), so a lying trailer cannot make us
   * allocate more than a bounded multiple of the input; growth by doubling handles the rest. */
  if (gzip && len >= 18) {
    size_t hint = (size_t)src[len - 4] | ((size_t)src[len - 3] << 8) | ((size_t)src[len - 2] << 16) |
                  ((size_t)src[len - 1] << 24);
    size_t bound = len < (SIZE_MAX >> 11) ? len * 1032 : SIZE_MAX;
    if (hint > bound) hint = bound;
    if (hint > cap) hint = cap;
    if (hint > 0) {
      buf = wcmi_alloc(ctx, hint, 1);
      if (!buf) {
        inflateEnd(&zs);
        return wcmi_fail(ctx, WCMI_ENOMEM, "%s: cannot allocate %zu bytes while decompressing", file, hint);
      }
      capacity = hint;
    }
  }
  size_t pos = 0; /* input consumed so far */
  int rc = WCMI_OK;
  for (;;) {
    if (used == capacity && (rc = grow(ctx, file, &buf, &capacity, used, cap)) != WCMI_OK) break;
    /* zlib counts in uInt: feed at most 1 GiB at a time. */
    size_t in_chunk = len - pos < ((size_t)1 << 30) ? len - pos : ((size_t)1 << 30);
    size_t out_chunk = capacity - used < ((size_t)1 << 30) ? capacity - used : ((size_t)1 << 30);
    zs.next_in = (Bytef *)(uintptr_t)(src + pos);
    zs.avail_in = (uInt)in_chunk;
    zs.next_out = buf + used;
    zs.avail_out = (uInt)out_chunk;
    int z = inflate(&zs, Z_NO_FLUSH);
    pos += in_chunk - zs.avail_in;
    used += out_chunk - zs.avail_out;
    if (z == Z_STREAM_END) {
      if (!gzip || pos == len) break;
      /* Another gzip member may follow (gzip allows concatenation). */
      if (!wcmi__is_gzip(src + pos, len - pos)) {
        rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: %zu bytes of trailing garbage after the gzip stream", file,
                       len - pos);
        break;
      }
      inflateReset(&zs);
      continue;
    }
    if (z == Z_OK || z == Z_BUF_ERROR) {
      if (pos == len && zs.avail_out != 0) {
        rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: truncated %s stream (ends after %zu compressed bytes)", file,
                       gzip ? "gzip" : "zlib", len);
        break;
      }
      continue;
    }
    if (z == Z_MEM_ERROR) {
      rc = wcmi_fail(ctx, WCMI_ENOMEM, "%s: zlib out of memory", file);
      break;
    }
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: corrupted %s stream (%s) at compressed byte %zu", file,
                   gzip ? "gzip" : "zlib", zs.msg ? zs.msg : "invalid data", pos);
    break;
  }
  inflateEnd(&zs);
  if (rc != WCMI_OK) {
    wcmi_free(buf);
    return rc;
  }
  *out = buf;
  *out_len = used;
  return WCMI_OK;
}
