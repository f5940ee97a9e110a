/* IDX reader (MNIST, Fashion-MNIST): big-endian header, uint8 payload, raw or gzip.
 *
 * Layout: 2 zero bytes, a type byte (0x08 = uint8), a dimension count, then one big-endian uint32
 * per dimension, then the data in C order. Images are idx3 (N, H, W), labels idx1 (N). */
#include "data/data_internal.h"

#include <string.h>

typedef struct idx_array {
  int ndim;
  uint32_t dims[3];
  const uint8_t *data; /* points into the (decompressed) buffer */
  size_t count;        /* product of dims, checked against the bytes present */
} idx_array;

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Parses an uncompressed IDX buffer that must hold `want_ndim` dimensions of uint8. */
static int idx_header(wcmi_ctx *ctx, const char *file, const uint8_t *b, size_t len, int want_ndim,
                      idx_array *a) {
  if (len < 4)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: truncated: %zu bytes, too short for an IDX header", file, len);
  uint32_t magic = be32(b);
  uint32_t want_magic = 0x00000800u | (uint32_t)want_ndim;
  if (magic != want_magic)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: wrong magic 0x%08x (expected 0x%08x: uint8 IDX with %d dimension%s)",
                     file, magic, want_magic, want_ndim, want_ndim == 1 ? "" : "s");
  size_t header = 4 + 4 * (size_t)want_ndim;
  if (len < header)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: truncated: %zu bytes, header needs %zu", file, len, header);
  a->ndim = want_ndim;
  size_t count = 1;
  for (int i = 0; i < want_ndim; i++) {
    a->dims[i] = be32(b + 4 + 4 * i);
    if (!wcmi_mul_size(count, a->dims[i], &count))
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header dimensions overflow", file);
  }
  size_t have = len - header;
  if (count > have)
    return wcmi_fail(ctx, WCMI_EFORMAT,
                     "%s: truncated: header claims %zu bytes of data (%u items) but the file holds %zu", file, count,
                     a->dims[0], have);
  if (count < have)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: %zu unexpected trailing bytes after %zu bytes of data", file,
                     have - count, count);
  a->data = b + header;
  a->count = count;
  return WCMI_OK;
}

/* Size of the whole uncompressed IDX file its gzip stream promises: the header is inflated alone
 * (12 or 8 bytes) and checked first, so a gzip bomb or a lying header is refused before anything
 * large is inflated, and the full inflation is then capped at exactly that size. */
static int gzip_implied_size(wcmi_ctx *ctx, const char *file, const uint8_t *bytes, size_t len, int want_ndim,
                             size_t *implied) {
  uint8_t head[16];
  const size_t header = 4 + 4 * (size_t)want_ndim;
  size_t got = 0;
  int rc = wcmi__inflate_prefix(ctx, file, bytes, len, head, header, &got);
  if (rc) return rc;
  idx_array a;
  /* Parse the header alone: idx_header sees a buffer of exactly the header's length. */
  if (got < header)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: truncated: %zu bytes after decompression, too short for an IDX header", file,
                     got);
  uint32_t magic = be32(head), want_magic = 0x00000800u | (uint32_t)want_ndim;
  if (magic != want_magic)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: wrong magic 0x%08x (expected 0x%08x: uint8 IDX with %d dimension%s)", file,
                     magic, want_magic, want_ndim, want_ndim == 1 ? "" : "s");
  size_t count = 1;
  for (int i = 0; i < want_ndim; i++) {
    a.dims[i] = be32(head + 4 + 4 * i);
    if (!wcmi_mul_size(count, a.dims[i], &count)) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header dimensions overflow", file);
  }
  if (!wcmi_add_size(count, header, implied) || *implied > WCMI_DATA_MAX_INFLATE)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header claims %zu bytes of data, more than the %zu MiB limit", file, count,
                     WCMI_DATA_MAX_INFLATE >> 20);
  return WCMI_OK;
}

/* Returns the decompressed view of bytes: either bytes itself or an owned inflated copy. */
static int maybe_inflate(wcmi_ctx *ctx, const char *file, const uint8_t *bytes, size_t len, int want_ndim,
                         uint8_t **owned, const uint8_t **view, size_t *view_len) {
  *owned = NULL;
  if (!wcmi__is_gzip(bytes, len)) {
    *view = bytes;
    *view_len = len;
    return WCMI_OK;
  }
  size_t implied = 0;
  int rc = gzip_implied_size(ctx, file, bytes, len, want_ndim, &implied);
  /* More data than the header implies fails inside the inflation, at that size. */
  if (!rc) rc = wcmi__inflate(ctx, file, bytes, len, 1, implied, owned, view_len);
  *view = *owned;
  return rc;
}

int wcmi_idx_parse(wcmi_ctx *ctx, const char *name, const char *images_file, const uint8_t *images_bytes,
                   size_t images_len, const char *labels_file, const uint8_t *labels_bytes, size_t labels_len,
                   wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  uint8_t *img_owned = NULL, *lbl_owned = NULL;
  const uint8_t *img = NULL, *lbl = NULL;
  size_t img_len = 0, lbl_len = 0;
  idx_array ia = {0}, la = {0};
  int rc = maybe_inflate(ctx, images_file, images_bytes, images_len, 3, &img_owned, &img, &img_len);
  if (!rc) rc = maybe_inflate(ctx, labels_file, labels_bytes, labels_len, 1, &lbl_owned, &lbl, &lbl_len);
  if (!rc) rc = idx_header(ctx, images_file, img, img_len, 3, &ia);
  if (!rc) rc = idx_header(ctx, labels_file, lbl, lbl_len, 1, &la);
  if (!rc && ia.dims[0] != la.dims[0])
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: image/label count mismatch: %u labels for %u images in %s", labels_file,
                   la.dims[0], ia.dims[0], images_file);
  if (!rc && ia.dims[0] == 0) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: holds no images", images_file);
  if (!rc && (ia.dims[1] == 0 || ia.dims[2] == 0 || ia.dims[1] > 4096 || ia.dims[2] > 4096))
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: implausible image size %ux%u", images_file, ia.dims[1], ia.dims[2]);
  for (size_t i = 0; !rc && i < la.count; i++)
    if (la.data[i] > 9)
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: label %u at index %zu out of range 0..9", labels_file, la.data[i], i);
  if (!rc) rc = wcmi_dataset_alloc(ctx, out, name, ia.dims[0], 1, (int)ia.dims[1], (int)ia.dims[2], 10);
  if (!rc) {
    /* k / 255 in float, exactly as PyTorch's ToTensor computes it; a table avoids 47M divisions. */
    float lut[256];
    for (int k = 0; k < 256; k++) lut[k] = (float)k / 255.0f;
    for (size_t i = 0; i < ia.count; i++) out->images[i] = lut[ia.data[i]];
    for (size_t i = 0; i < la.count; i++) out->labels[i] = la.data[i];
  }
  wcmi_free(img_owned);
  wcmi_free(lbl_owned);
  return rc;
}

int wcmi_idx_read(wcmi_ctx *ctx, const char *name, const char *images_path, const char *labels_path,
                  wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  uint8_t *ib = NULL, *lb = NULL;
  size_t il = 0, ll = 0;
  int rc = wcmi__read_file(ctx, images_path, &ib, &il);
  if (!rc) rc = wcmi__read_file(ctx, labels_path, &lb, &ll);
  if (!rc) rc = wcmi_idx_parse(ctx, name, images_path, ib, il, labels_path, lb, ll, out);
  wcmi_free(ib);
  wcmi_free(lb);
  return rc;
}
