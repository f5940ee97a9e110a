/* SVHN cropped digits: a MATLAB level-5 MAT file with variables X (uint8, 32x32x3xN, column-major)
 * and y (numeric, N labels 1..10 where 10 stands for the digit 0).
 *
 * The subset of the MAT-file format read here: a 128-byte header (text, subsystem offset, version
 * 0x0100, endian indicator "IM"/"MI"), then data elements, each an 8-byte tag (type, byte count)
 * or a 4-byte "small element" tag, padded to 8 bytes. miMATRIX elements hold array flags,
 * dimensions, a name and the real part; miCOMPRESSED elements hold a zlib stream that inflates to
 * further elements. Numeric data may be stored in a narrower type than the array's class (MATLAB
 * stores a double array of small integers as miUINT8), so values are read by their storage type.
 * MAT v7.3 files are HDF5 and get a clear message instead. */
#include "data/data_internal.h"

#include <math.h>
#include <string.h>

enum {
  MI_INT8 = 1, MI_UINT8 = 2, MI_INT16 = 3, MI_UINT16 = 4, MI_INT32 = 5, MI_UINT32 = 6, MI_SINGLE = 7,
  MI_DOUBLE = 9, MI_INT64 = 12, MI_UINT64 = 13, MI_MATRIX = 14, MI_COMPRESSED = 15,
};
enum { MX_CELL = 1, MX_SPARSE = 5, MX_DOUBLE = 6, MX_UINT64 = 15 };

typedef struct mat_reader {
  wcmi_ctx *ctx;
  const char *file;
  int swap; /* file is big-endian */
} mat_reader;

/* A numeric array found in the file; data points into the file or an inflated buffer. */
typedef struct mat_array {
  int found;
  int mi_type;
  int ndim;
  int64_t dims[4];
  size_t numel;
  const uint8_t *data;
  size_t nbytes;
  uint8_t *owned; /* inflated buffer that data points into, if any */
} mat_array;

typedef struct mat_result {
  mat_array x, y;
} mat_result;

static uint32_t rd32(const mat_reader *r, const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return r->swap ? __builtin_bswap32(v) : v;
}
static uint16_t rd16(const mat_reader *r, const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return r->swap ? __builtin_bswap16(v) : v;
}
static uint64_t rd64(const mat_reader *r, const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return r->swap ? __builtin_bswap64(v) : v;
}

static size_t mi_size(int type) {
  switch (type) {
  case MI_INT8: case MI_UINT8: return 1;
  case MI_INT16: case MI_UINT16: return 2;
  case MI_INT32: case MI_UINT32: case MI_SINGLE: return 4;
  case MI_DOUBLE: case MI_INT64: case MI_UINT64: return 8;
  default: return 0;
  }
}

/* One element's tag: type, payload and the offset of the next element. */
typedef struct mat_elem {
  uint32_t type;
  const uint8_t *data;
  size_t nbytes;
  size_t next; /* offset after this element (padding included, clamped to the buffer) */
} mat_elem;

static int read_elem(const mat_reader *r, const uint8_t *b, size_t len, size_t at, const char *what,
                     mat_elem *e) {
  if (len - at < 8)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: truncated: %s tag at byte %zu needs 8 bytes, %zu left", r->file,
                     what, at, len - at);
  uint32_t w0 = rd32(r, b + at);
  if (w0 >> 16) { /* small data element: type and size packed in one word, data in the next 4 bytes */
    e->type = w0 & 0xffff;
    e->nbytes = w0 >> 16;
    if (e->nbytes > 4)
      return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: bad small %s element of %zu bytes at byte %zu", r->file, what,
                       e->nbytes, at);
    e->data = b + at + 4;
    e->next = at + 8;
    return WCMI_OK;
  }
  e->type = w0;
  e->nbytes = rd32(r, b + at + 4);
  if (e->nbytes > len - at - 8)
    return wcmi_fail(r->ctx, WCMI_EFORMAT,
                     "%s: truncated: %s element at byte %zu claims %zu bytes but only %zu remain", r->file, what, at,
                     e->nbytes, len - at - 8);
  e->data = b + at + 8;
  /* Compressed elements are not padded; everything else is padded to a multiple of 8 bytes. */
  size_t padded = e->type == MI_COMPRESSED ? e->nbytes : (e->nbytes + 7) & ~(size_t)7;
  e->next = (padded > len - at - 8) ? len : at + 8 + padded;
  return WCMI_OK;
}

/* Parses one miMATRIX payload; keeps it in res if it is the X or y array. */
static int parse_matrix(const mat_reader *r, const uint8_t *b, size_t len, mat_result *res, uint8_t **owned) {
  mat_elem flags = {0}, dims = {0}, name = {0}, real = {0};
  int rc = read_elem(r, b, len, 0, "array flags", &flags);
  if (rc) return rc;
  if (flags.type != MI_UINT32 || flags.nbytes != 8)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: malformed array flags (type %u, %zu bytes)", r->file, flags.type,
                     flags.nbytes);
  uint32_t fw = rd32(r, flags.data);
  int cls = (int)(fw & 0xff);
  int complex_ = (fw & 0x800) != 0;
  /* Cells, structs, objects, chars, sparse: not the arrays SVHN stores; skip them whole. */
  if (cls < MX_DOUBLE || cls > MX_UINT64 || cls == MX_SPARSE) return WCMI_OK;
  if ((rc = read_elem(r, b, len, flags.next, "dimensions", &dims))) return rc;
  if (dims.type != MI_INT32 || dims.nbytes % 4 || dims.nbytes < 8)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: malformed dimensions element", r->file);
  if ((rc = read_elem(r, b, len, dims.next, "array name", &name))) return rc;
  if (name.type != MI_INT8) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: malformed array name element", r->file);
  mat_array *dst = NULL;
  if (name.nbytes == 1 && name.data[0] == 'X') dst = &res->x;
  if (name.nbytes == 1 && name.data[0] == 'y') dst = &res->y;
  if (!dst) return WCMI_OK;
  if (dst->found) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: variable %c appears twice", r->file, name.data[0]);
  if (complex_) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: variable %c is complex", r->file, name.data[0]);
  int ndim = (int)(dims.nbytes / 4);
  if (ndim > 4) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: variable %c has %d dimensions", r->file, name.data[0], ndim);
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    int32_t d = (int32_t)rd32(r, dims.data + 4 * i);
    if (d < 0) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: variable %c has a negative dimension", r->file, name.data[0]);
    dst->dims[i] = d;
    if (!wcmi_mul_size(numel, (size_t)d, &numel))
      return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: variable %c dimensions overflow", r->file, name.data[0]);
  }
  if ((rc = read_elem(r, b, len, name.next, "real part", &real))) return rc;
  size_t esz = mi_size((int)real.type), need;
  if (!esz)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: variable %c has unsupported storage type %u", r->file, name.data[0],
                     real.type);
  if (!wcmi_mul_size(numel, esz, &need) || need > real.nbytes)
    return wcmi_fail(r->ctx, WCMI_EFORMAT,
                     "%s: truncated: variable %c claims %zu elements but its data holds %zu bytes", r->file,
                     name.data[0], numel, real.nbytes);
  dst->found = 1;
  dst->mi_type = (int)real.type;
  dst->ndim = ndim;
  dst->numel = numel;
  dst->data = real.data;
  dst->nbytes = real.nbytes;
  /* The array lives in an inflated buffer: take ownership so it outlives the parse. */
  if (owned && *owned) {
    dst->owned = *owned;
    *owned = NULL;
  }
  return WCMI_OK;
}

static int parse_elements(const mat_reader *r, const uint8_t *b, size_t len, size_t at, int depth,
                          mat_result *res, uint8_t **owned) {
  while (at < len) {
    mat_elem e = {0};
    int rc = read_elem(r, b, len, at, "data", &e);
    if (rc) return rc;
    if (e.type == MI_MATRIX) {
      if ((rc = parse_matrix(r, e.data, e.nbytes, res, owned))) return rc;
    } else if (e.type == MI_COMPRESSED) {
      if (depth > 0) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: nested compressed element", r->file);
      uint8_t *buf = NULL;
      size_t blen = 0;
      if ((rc = wcmi__inflate(r->ctx, r->file, e.data, e.nbytes, 0, WCMI_DATA_MAX_INFLATE, &buf, &blen))) return rc;
      rc = parse_elements(r, buf, blen, 0, depth + 1, res, &buf);
      wcmi_free(buf); /* NULL if an array took it */
      if (rc) return rc;
    }
    at = e.next;
  }
  return WCMI_OK;
}

static int check_header(mat_reader *r, const uint8_t *b, size_t len) {
  static const uint8_t hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if ((len >= 10 && memcmp(b, "MATLAB 7.3", 10) == 0) || (len >= 520 && memcmp(b + 512, hdf5, 8) == 0) ||
      (len >= 8 && memcmp(b, hdf5, 8) == 0))
    return wcmi_fail(r->ctx, WCMI_EFORMAT,
                     "%s: MAT v7.3 (HDF5) files are not supported; re-save with MATLAB's save -v7 or scipy.io.savemat",
                     r->file);
  if (len < 128)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: truncated: %zu bytes, too short for a MAT-file header", r->file, len);
  if (b[126] == 'I' && b[127] == 'M') r->swap = 0;
  else if (b[126] == 'M' && b[127] == 'I') r->swap = 1;
  else
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: wrong magic: no MAT level-5 endian indicator at byte 126", r->file);
  uint16_t version = rd16(r, b + 124);
  if (version != 0x0100)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: unsupported MAT-file version 0x%04x (expected 0x0100)", r->file,
                     version);
  return WCMI_OK;
}

/* Label value of element i of y (any numeric storage type), or -1 if not an integer. */
static double y_value(const mat_reader *r, const mat_array *y, size_t i) {
  const uint8_t *p = y->data + i * mi_size(y->mi_type);
  switch (y->mi_type) {
  case MI_INT8: return (int8_t)p[0];
  case MI_UINT8: return p[0];
  case MI_INT16: return (int16_t)rd16(r, p);
  case MI_UINT16: return rd16(r, p);
  case MI_INT32: return (int32_t)rd32(r, p);
  case MI_UINT32: return rd32(r, p);
  case MI_INT64: return (double)(int64_t)rd64(r, p);
  case MI_UINT64: return (double)rd64(r, p);
  case MI_SINGLE: {
    uint32_t u = rd32(r, p);
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  case MI_DOUBLE: {
    uint64_t u = rd64(r, p);
    double d;
    memcpy(&d, &u, 8);
    return d;
  }
  default: return -1;
  }
}

static int decode(const mat_reader *r, const mat_result *res, wcmi_dataset *out) {
  const mat_array *x = &res->x, *y = &res->y;
  if (!x->found) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: no variable X (images) in the file", r->file);
  if (!y->found) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: no variable y (labels) in the file", r->file);
  if (x->mi_type != MI_UINT8)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: X is stored as MAT type %d, expected uint8", r->file, x->mi_type);
  int64_t n = x->ndim == 4 ? x->dims[3] : (x->ndim == 3 ? 1 : -1);
  if (n < 0 || x->dims[0] != 32 || x->dims[1] != 32 || x->dims[2] != 3)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: X has shape %lldx%lldx%lld..., expected 32x32x3xN", r->file,
                     (long long)x->dims[0], (long long)x->dims[1], (long long)(x->ndim > 2 ? x->dims[2] : 1));
  if (n == 0) return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: holds no images", r->file);
  if ((int64_t)y->numel != n)
    return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: image/label count mismatch: %zu labels for %lld images", r->file,
                     y->numel, (long long)n);
  for (size_t i = 0; i < y->numel; i++) {
    double v = y_value(r, y, i);
    if (!(v >= 0 && v <= 10) || v != floor(v))
      return wcmi_fail(r->ctx, WCMI_EFORMAT, "%s: label %g at index %zu out of range 1..10", r->file, v, i);
  }
  int rc = wcmi_dataset_alloc(r->ctx, out, "svhn", n, 3, 32, 32, 10);
  if (rc) return rc;
  for (size_t i = 0; i < y->numel; i++) {
    int v = (int)y_value(r, y, i);
    out->labels[i] = v == 10 ? 0 : v;
  }
  /* MATLAB is column-major: X(row, col, ch, k) sits at row + 32 col + 1024 ch + 3072 k.
   * out: (N, 3, 32, 32), row-major. */
  for (int64_t k = 0; k < n; k++) {
    const uint8_t *src = x->data + k * 3072;
    float *dst = out->images + k * 3072;
    for (int ch = 0; ch < 3; ch++)
      for (int col = 0; col < 32; col++)
        for (int row = 0; row < 32; row++)
          dst[ch * 1024 + row * 32 + col] = (float)src[ch * 1024 + col * 32 + row] / 255.0f;
  }
  return WCMI_OK;
}

int wcmi_svhn_parse(wcmi_ctx *ctx, const char *file, const uint8_t *bytes, size_t len, wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  mat_reader r = {ctx, file, 0};
  mat_result res;
  memset(&res, 0, sizeof res);
  int rc = check_header(&r, bytes, len);
  if (!rc) rc = parse_elements(&r, bytes, len, 128, 0, &res, NULL);
  if (!rc) rc = decode(&r, &res, out);
  wcmi_free(res.x.owned);
  wcmi_free(res.y.owned);
  if (rc) wcmi_dataset_free(out);
  return rc;
}

int wcmi_svhn_read(wcmi_ctx *ctx, const char *path, wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  uint8_t *b = NULL;
  size_t len = 0;
  int rc = wcmi__read_file(ctx, path, &b, &len);
  if (!rc) rc = wcmi_svhn_parse(ctx, path, b, len, out);
  wcmi_free(b);
  return rc;
}
