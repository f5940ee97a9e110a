/* Tiny datasets in each real file format, built in memory, for the reader tests and the fuzz
 * seed corpora. Header-only (static functions) so each test program gets its own copy. */
#ifndef WCMI_TEST_DATA_FIXTURES_H
#define WCMI_TEST_DATA_FIXTURES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct fx_buf {
  uint8_t *p;
  size_t n, cap;
} fx_buf;

static void fx_put(fx_buf *b, const void *data, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n) cap *= 2;
    b->p = realloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
}
static void fx_u8(fx_buf *b, uint8_t v) { fx_put(b, &v, 1); }
static void fx_be32(fx_buf *b, uint32_t v) {
  uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  fx_put(b, q, 4);
}
static void fx_le32(fx_buf *b, uint32_t v) {
  uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  fx_put(b, q, 4);
}
static void fx_pad8(fx_buf *b) {
  while (b->n % 8) fx_u8(b, 0);
}
static void fx_free(fx_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* Pixel value of image k at (row, col, channel) used by every fixture. */
static uint8_t fx_pixel(int k, int r, int c, int ch) { return (uint8_t)(k * 37 + r * 11 + c * 5 + ch * 71 + 1); }

/* gzip (gzip = 1) or zlib (gzip = 0) compression of src. */
static fx_buf fx_deflate(const uint8_t *src, size_t n, int gzip) {
  fx_buf out = {0};
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  deflateInit2(&zs, 6, Z_DEFLATED, gzip ? 16 + MAX_WBITS : MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  size_t cap = deflateBound(&zs, (uLong)n) + 32;
  out.p = malloc(cap);
  out.cap = cap;
  zs.next_in = (Bytef *)(uintptr_t)src;
  zs.avail_in = (uInt)n;
  zs.next_out = out.p;
  zs.avail_out = (uInt)cap;
  deflate(&zs, Z_FINISH);
  out.n = cap - zs.avail_out;
  deflateEnd(&zs);
  return out;
}

/* IDX images: n images of h x w. */
static fx_buf fx_idx_images(int n, int h, int w) {
  fx_buf b = {0};
  fx_be32(&b, 0x00000803);
  fx_be32(&b, (uint32_t)n);
  fx_be32(&b, (uint32_t)h);
  fx_be32(&b, (uint32_t)w);
  for (int k = 0; k < n; k++)
    for (int r = 0; r < h; r++)
      for (int c = 0; c < w; c++) fx_u8(&b, fx_pixel(k, r, c, 0));
  return b;
}
/* IDX labels: label k = k % 10. */
static fx_buf fx_idx_labels(int n) {
  fx_buf b = {0};
  fx_be32(&b, 0x00000801);
  fx_be32(&b, (uint32_t)n);
  for (int k = 0; k < n; k++) fx_u8(&b, (uint8_t)(k % 10));
  return b;
}

/* CIFAR-10 records: label (k + first) % 10, R/G/B planes of 32x32. */
static fx_buf fx_cifar(int n, int first) {
  fx_buf b = {0};
  for (int k = 0; k < n; k++) {
    fx_u8(&b, (uint8_t)((k + first) % 10));
    for (int ch = 0; ch < 3; ch++)
      for (int r = 0; r < 32; r++)
        for (int c = 0; c < 32; c++) fx_u8(&b, fx_pixel(k + first, r, c, ch));
  }
  return b;
}

/* One miMATRIX element named `name` (1 char), with class mx_class, dims, and real data stored as
 * mi_type. */
static void fx_mat_matrix(fx_buf *b, char name, int mx_class, const int32_t *dims, int ndim, int mi_type,
                          const void *data, size_t nbytes) {
  fx_buf m = {0};
  fx_le32(&m, 6); /* miUINT32 */
  fx_le32(&m, 8);
  fx_le32(&m, (uint32_t)mx_class);
  fx_le32(&m, 0);
  fx_le32(&m, 5); /* miINT32 */
  fx_le32(&m, (uint32_t)(4 * ndim));
  for (int i = 0; i < ndim; i++) fx_le32(&m, (uint32_t)dims[i]);
  fx_pad8(&m);
  fx_le32(&m, (1u << 16) | 1u); /* small element: miINT8, 1 byte */
  uint8_t nm[4] = {(uint8_t)name, 0, 0, 0};
  fx_put(&m, nm, 4);
  fx_le32(&m, (uint32_t)mi_type);
  fx_le32(&m, (uint32_t)nbytes);
  fx_put(&m, data, nbytes);
  fx_pad8(&m);
  fx_le32(b, 14); /* miMATRIX */
  fx_le32(b, (uint32_t)m.n);
  fx_put(b, m.p, m.n);
  fx_free(&m);
}

static void fx_mat_header(fx_buf *b) {
  char text[116];
  memset(text, ' ', sizeof text);
  memcpy(text, "MATLAB 5.0 MAT-file, Platform: wcmi test", 40);
  fx_put(b, text, 116);
  uint8_t sub[8] = {0};
  fx_put(b, sub, 8);
  uint8_t ver[4] = {0x00, 0x01, 'I', 'M'};
  fx_put(b, ver, 4);
}

/* Appends element e to b, wrapped in miCOMPRESSED when compress is set. */
static void fx_mat_append(fx_buf *b, const fx_buf *e, int compress) {
  if (!compress) {
    fx_put(b, e->p, e->n);
    return;
  }
  fx_buf z = fx_deflate(e->p, e->n, 0);
  fx_le32(b, 15);
  fx_le32(b, (uint32_t)z.n);
  fx_put(b, z.p, z.n);
  fx_free(&z);
}

/* SVHN-style MAT file: X uint8 32x32x3xn, y with n_labels labels stored as double (y_double) or
 * uint8, label of image k = (k % 10) + 1 (so image 9 has label 10, i.e. digit 0). */
static fx_buf fx_svhn(int n, int n_labels, int y_double, int compress) {
  fx_buf b = {0};
  fx_mat_header(&b);
  size_t xs = (size_t)n * 3072;
  uint8_t *x = malloc(xs ? xs : 1);
  for (int k = 0; k < n; k++)
    for (int ch = 0; ch < 3; ch++)
      for (int c = 0; c < 32; c++)
        for (int r = 0; r < 32; r++) x[(size_t)k * 3072 + ch * 1024 + c * 32 + r] = fx_pixel(k, r, c, ch);
  int32_t xd[4] = {32, 32, 3, n};
  fx_buf e = {0};
  fx_mat_matrix(&e, 'X', 9 /* mxUINT8 */, xd, 4, 2 /* miUINT8 */, x, xs);
  fx_mat_append(&b, &e, compress);
  fx_free(&e);
  free(x);
  int32_t yd[2] = {n_labels, 1};
  if (y_double) {
    double *y = malloc(sizeof(double) * (size_t)(n_labels ? n_labels : 1));
    for (int k = 0; k < n_labels; k++) y[k] = (double)(k % 10 + 1);
    fx_mat_matrix(&e, 'y', 6 /* mxDOUBLE */, yd, 2, 9 /* miDOUBLE */, y, sizeof(double) * (size_t)n_labels);
    free(y);
  } else {
    uint8_t *y = malloc((size_t)(n_labels ? n_labels : 1));
    for (int k = 0; k < n_labels; k++) y[k] = (uint8_t)(k % 10 + 1);
    /* MATLAB stores a double array of small integers as miUINT8: class double, storage uint8. */
    fx_mat_matrix(&e, 'y', 6, yd, 2, 2, y, (size_t)n_labels);
    free(y);
  }
  fx_mat_append(&b, &e, compress);
  fx_free(&e);
  return b;
}

static int fx_write(const char *path, const fx_buf *b) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(b->p, 1, b->n, f);
  fclose(f);
  return w == b->n ? 0 : -1;
}

#endif
