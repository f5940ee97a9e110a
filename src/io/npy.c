/* NumPy .npy (format v1.0 written; v1/2/3 read): magic "\x93NUMPY", major, minor, header length
 * (u16 LE in v1, u32 LE in v2/3), then a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }
 * padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes. */
#include "wcmi/npy.h"
#include "wcmi/atomic.h"

#include <string.h>

static const struct {
  wcmi_dtype dt;
  const char *descr;
} npy_types[] = {
    {WCMI_DT_F32, "<f4"}, {WCMI_DT_I32, "<i4"}, {WCMI_DT_I64, "<i8"}, {WCMI_DT_U8, "|u1"}, {WCMI_DT_F64, "<f8"},
};
#define N_NPY_TYPES (sizeof npy_types / sizeof npy_types[0])

static const char *descr_of(wcmi_dtype dt) {
  for (size_t i = 0; i < N_NPY_TYPES; i++)
    if (npy_types[i].dt == dt) return npy_types[i].descr;
  return NULL;
}

int wcmi_npy_write(wcmi_ctx *ctx, const char *path, wcmi_dtype dtype, const wcmi_shape *shape, const void *data) {
  const char *descr = descr_of(dtype);
  if (!descr) return wcmi_fail(ctx, WCMI_EINVAL, "%s: dtype %s cannot be written as .npy", path, wcmi_dtype_name(dtype));
  if (shape->ndim < 0 || shape->ndim > WCMI_MAX_DIMS) return wcmi_fail(ctx, WCMI_EINVAL, "%s: bad shape", path);
  size_t n = 1;
  for (int i = 0; i < shape->ndim; i++)
    if (shape->d[i] < 0 || !wcmi_mul_size(n, (size_t)shape->d[i], &n))
      return wcmi_fail(ctx, WCMI_EINVAL, "%s: bad shape", path);
  size_t bytes;
  if (!wcmi_mul_size(n, wcmi_dtype_size(dtype), &bytes)) return wcmi_fail(ctx, WCMI_EINVAL, "%s: too large", path);
  if (bytes && !data) return wcmi_fail(ctx, WCMI_EINVAL, "%s: no data", path);

  char dims[160] = "";
  size_t used = 0;
  for (int i = 0; i < shape->ndim; i++)
    used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld,%s", (long long)shape->d[i],
                             i + 1 < shape->ndim ? " " : "");
  /* A 1-tuple needs its trailing comma, "(N,)"; longer tuples are written "(N, D)" like numpy. */
  if (shape->ndim > 1 && used > 0) dims[used - 1] = '\0';
  char header[256];
  int hl = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
  size_t total = 10 + (size_t)hl + 1; /* magic(6) + version(2) + u16 len(2) + dict + '\n' */
  size_t padded = (total + 63) & ~(size_t)63;
  unsigned char pre[10 + 256];
  memcpy(pre, "\x93NUMPY\x01\x00", 8);
  size_t header_len = padded - 10;
  pre[8] = (unsigned char)(header_len & 0xff);
  pre[9] = (unsigned char)(header_len >> 8);
  memcpy(pre + 10, header, (size_t)hl);
  memset(pre + 10 + hl, ' ', padded - total);
  pre[padded - 1] = '\n';

  wcmi_atomic_file af;
  int rc = wcmi_atomic_open(ctx, &af, path);
  if (rc) return rc;
  rc = wcmi_atomic_put(ctx, &af, pre, padded);
  if (!rc) rc = wcmi_atomic_put(ctx, &af, data, bytes);
  if (rc) {
    wcmi_atomic_abort(&af);
    return rc;
  }
  return wcmi_atomic_commit(ctx, &af);
}

int wcmi_npy_write_f32_2d(wcmi_ctx *ctx, const char *path, const float *data, int64_t rows, int64_t cols) {
  wcmi_shape s = wcmi_shape2(rows, cols);
  return wcmi_npy_write(ctx, path, WCMI_DT_F32, &s, data);
}

int wcmi_npy_write_i32_1d(wcmi_ctx *ctx, const char *path, const int32_t *data, int64_t n) {
  wcmi_shape s = wcmi_shape1(n);
  return wcmi_npy_write(ctx, path, WCMI_DT_I32, &s, data);
}

/* ---- reader: a tiny parser for the header's Python dict literal ------------------------------- */
typedef struct hdr {
  const char *s;
  size_t n, pos;
} hdr;

static void hskip(hdr *h) {
  while (h->pos < h->n && (h->s[h->pos] == ' ' || h->s[h->pos] == '\t')) h->pos++;
}

static int heat(hdr *h, char c) {
  hskip(h);
  if (h->pos < h->n && h->s[h->pos] == c) {
    h->pos++;
    return 1;
  }
  return 0;
}

/* A single- or double-quoted string without escapes, copied into out. */
static int hstring(hdr *h, char *out, size_t cap) {
  hskip(h);
  if (h->pos >= h->n || (h->s[h->pos] != '\'' && h->s[h->pos] != '"')) return 0;
  char q = h->s[h->pos++];
  size_t k = 0;
  while (h->pos < h->n && h->s[h->pos] != q) {
    if (h->s[h->pos] == '\\' || k + 1 >= cap) return 0;
    out[k++] = h->s[h->pos++];
  }
  if (h->pos >= h->n) return 0;
  h->pos++;
  out[k] = '\0';
  return 1;
}

static int hword(hdr *h, const char *w) {
  hskip(h);
  size_t n = strlen(w);
  if (h->n - h->pos < n || memcmp(h->s + h->pos, w, n) != 0) return 0;
  h->pos += n;
  return 1;
}

static int htuple(hdr *h, wcmi_shape *s) {
  if (!heat(h, '(')) return 0;
  s->ndim = 0;
  for (;;) {
    if (heat(h, ')')) return 1;
    hskip(h);
    if (h->pos >= h->n || h->s[h->pos] < '0' || h->s[h->pos] > '9' || s->ndim >= WCMI_MAX_DIMS) return 0;
    int64_t v = 0;
    while (h->pos < h->n && h->s[h->pos] >= '0' && h->s[h->pos] <= '9') {
      if (v > (INT64_MAX - 9) / 10) return 0;
      v = v * 10 + (h->s[h->pos++] - '0');
    }
    s->d[s->ndim++] = v;
    if (!heat(h, ',')) return heat(h, ')');
  }
}

static int parse_header(wcmi_ctx *ctx, const char *path, const char *s, size_t n, wcmi_npy *out) {
  hdr h = {s, n, 0};
  int have_descr = 0, have_order = 0, have_shape = 0;
  if (!heat(&h, '{')) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header is not a dict literal", path);
  while (!heat(&h, '}')) {
    char key[32], val[16];
    if (!hstring(&h, key, sizeof key) || !heat(&h, ':'))
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header: expected a quoted key and ':'", path);
    if (!strcmp(key, "descr")) {
      if (!hstring(&h, val, sizeof val)) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header: bad 'descr'", path);
      size_t i = 0;
      while (i < N_NPY_TYPES && strcmp(npy_types[i].descr, val) != 0) i++;
      if (i == N_NPY_TYPES) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: unsupported dtype '%s'", path, val);
      out->dtype = npy_types[i].dt;
      have_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
      if (hword(&h, "True")) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: fortran_order True is not supported", path);
      if (!hword(&h, "False")) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header: bad 'fortran_order'", path);
      have_order = 1;
    } else if (!strcmp(key, "shape")) {
      if (!htuple(&h, &out->shape))
        return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header: bad 'shape' (at most %d non-negative dims)", path,
                         WCMI_MAX_DIMS);
      have_shape = 1;
    } else {
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header: unexpected key '%s'", path, key);
    }
    if (!heat(&h, ',')) {
      if (!heat(&h, '}')) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header: expected ',' or '}'", path);
      break;
    }
  }
  hskip(&h);
  while (h.pos < h.n && (h.s[h.pos] == '\n' || h.s[h.pos] == ' ')) h.pos++;
  if (h.pos != h.n) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header: trailing characters after the dict", path);
  if (!have_descr || !have_order || !have_shape)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header lacks 'descr', 'fortran_order' or 'shape'", path);
  return WCMI_OK;
}

int wcmi_npy_read(wcmi_ctx *ctx, const char *path, wcmi_npy *out) {
  memset(out, 0, sizeof *out);
  char *b;
  size_t n;
  int rc = wcmi_read_file(ctx, path, (size_t)1 << 40, &b, &n);
  if (rc) return rc;
  const unsigned char *u = (const unsigned char *)b;
  size_t hstart = 0, hlen = 0;
  if (n < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: not a .npy file (bad magic)", path);
  } else if (u[6] == 1) {
    hstart = 10;
    hlen = (size_t)u[8] | ((size_t)u[9] << 8);
  } else if ((u[6] == 2 || u[6] == 3) && n >= 12) {
    hstart = 12;
    hlen = (size_t)u[8] | ((size_t)u[9] << 8) | ((size_t)u[10] << 16) | ((size_t)u[11] << 24);
  } else {
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: unsupported .npy version %d.%d", path, u[6], u[7]);
  }
  if (!rc && hlen > n - hstart) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: header length %zu exceeds the file", path, hlen);
  if (!rc) rc = parse_header(ctx, path, b + hstart, hlen, out);
  size_t bytes = 0;
  if (!rc) {
    size_t numel = 1;
    for (int i = 0; i < out->shape.ndim && !rc; i++)
      if (!wcmi_mul_size(numel, (size_t)out->shape.d[i], &numel)) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: shape overflows", path);
    if (!rc && (!wcmi_mul_size(numel, wcmi_dtype_size(out->dtype), &bytes) || bytes != n - hstart - hlen))
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: shape needs %zu bytes of data but the file holds %zu", path, bytes,
                     n - hstart - hlen);
    out->numel = (int64_t)numel;
  }
  if (!rc) {
    out->data = wcmi_alloc(ctx, bytes ? bytes : 1, 1);
    if (!out->data) rc = WCMI_ENOMEM;
    else if (bytes) memcpy(out->data, b + hstart + hlen, bytes);
  }
  wcmi_free(b);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

void wcmi_npy_free(wcmi_npy *a) {
  wcmi_free(a->data);
  a->data = NULL;
}
