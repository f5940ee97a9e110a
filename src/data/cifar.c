/* CIFAR-10 binary batches: records of 1 label byte followed by 3072 pixel bytes, the 1024 red,
 * then 1024 green, then 1024 blue values of a 32x32 image in row-major order, which is already
 * CHW. data_batch_1..5.bin hold 10000 records each, test_batch.bin 10000. */
#include "data/data_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

enum { CIFAR_PIXELS = 3 * 32 * 32, CIFAR_RECORD = 1 + CIFAR_PIXELS };

static int check_records(wcmi_ctx *ctx, const char *file, size_t len) {
  if (len == 0) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: empty file, expected CIFAR-10 records", file);
  if (len % CIFAR_RECORD != 0)
    return wcmi_fail(ctx, WCMI_EFORMAT,
                     "%s: truncated or not a CIFAR-10 batch: %zu bytes is not a multiple of the %d-byte record "
                     "(last record has %zu bytes)",
                     file, len, CIFAR_RECORD, len % CIFAR_RECORD);
  return WCMI_OK;
}

/* Decodes len / CIFAR_RECORD records into images/labels starting at sample `first`. */
static int decode_records(wcmi_ctx *ctx, const char *file, const uint8_t *b, size_t len, wcmi_dataset *d,
                          int64_t first) {
  size_t n = len / CIFAR_RECORD;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *rec = b + i * CIFAR_RECORD;
    if (rec[0] > 9)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: label %u in record %zu out of range 0..9", file, rec[0], i);
    d->labels[first + (int64_t)i] = rec[0];
    float *img = d->images + (first + (int64_t)i) * CIFAR_PIXELS;
    for (int k = 0; k < CIFAR_PIXELS; k++) img[k] = (float)rec[1 + k] / 255.0f;
  }
  return WCMI_OK;
}

int wcmi_cifar10_parse(wcmi_ctx *ctx, const char *file, const uint8_t *bytes, size_t len, wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  int rc = check_records(ctx, file, len);
  if (!rc) rc = wcmi_dataset_alloc(ctx, out, "cifar10", (int64_t)(len / CIFAR_RECORD), 3, 32, 32, 10);
  if (!rc) rc = decode_records(ctx, file, bytes, len, out, 0);
  if (rc) wcmi_dataset_free(out);
  return rc;
}

int wcmi_cifar10_read(wcmi_ctx *ctx, const char *const *paths, int npaths, wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  if (npaths <= 0) return wcmi_fail(ctx, WCMI_EINVAL, "cifar10: no batch files given");
  /* Pass 1: sizes from stat, so the total is taken from the files themselves, and the full dataset
   * is allocated once (50000 images are 600 MB as float; no second copy). */
  int64_t total = 0;
  for (int i = 0; i < npaths; i++) {
    struct stat st;
    if (stat(paths[i], &st) != 0) return wcmi_fail(ctx, WCMI_EIO, "%s: cannot open: %s", paths[i], strerror(errno));
    int rc = check_records(ctx, paths[i], (size_t)st.st_size);
    if (rc) return rc;
    total += (int64_t)((size_t)st.st_size / CIFAR_RECORD);
  }
  int rc = wcmi_dataset_alloc(ctx, out, "cifar10", total, 3, 32, 32, 10);
  int64_t at = 0;
  for (int i = 0; i < npaths && !rc; i++) {
    uint8_t *b = NULL;
    size_t len = 0;
    rc = wcmi__read_file(ctx, paths[i], &b, &len);
    if (!rc) rc = check_records(ctx, paths[i], len);
    if (!rc && at + (int64_t)(len / CIFAR_RECORD) > total)
      rc = wcmi_fail(ctx, WCMI_EIO, "%s: file grew while being read", paths[i]);
    if (!rc) rc = decode_records(ctx, paths[i], b, len, out, at);
    if (!rc) at += (int64_t)(len / CIFAR_RECORD);
    wcmi_free(b);
  }
  if (!rc && at != total) rc = wcmi_fail(ctx, WCMI_EIO, "%s: file shrank while being read", paths[npaths - 1]);
  if (rc) wcmi_dataset_free(out);
  return rc;
}
