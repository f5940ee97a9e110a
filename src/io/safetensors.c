/* safetensors (HuggingFace): u64 little-endian header length N, N bytes of JSON header
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
 * then the data buffer; offsets are relative to the buffer, tensors are contiguous, do not overlap
 * and cover the buffer exactly. The reader trusts nothing in the file (see io.h). */
#include "wcmi/safetensors.h"
#include "wcmi/atomic.h"
#include "wcmi/json.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "safetensors data is little-endian; wcmi's reader/writer assume a little-endian host"
#endif

/* ================================ dtypes ==================================================== */

static const struct {
  const char *name;
  size_t size;
} dtype_table[WCMI_DT_COUNT] = {
    [WCMI_DT_BOOL] = {"BOOL", 1}, [WCMI_DT_U8] = {"U8", 1},   [WCMI_DT_I8] = {"I8", 1},
    [WCMI_DT_I16] = {"I16", 2},   [WCMI_DT_U16] = {"U16", 2}, [WCMI_DT_F16] = {"F16", 2},
    [WCMI_DT_BF16] = {"BF16", 2}, [WCMI_DT_I32] = {"I32", 4}, [WCMI_DT_U32] = {"U32", 4},
    [WCMI_DT_F32] = {"F32", 4},   [WCMI_DT_F64] = {"F64", 8}, [WCMI_DT_I64] = {"I64", 8},
    [WCMI_DT_U64] = {"U64", 8},   [WCMI_DT_F8_E4M3] = {"F8_E4M3", 1}, [WCMI_DT_F8_E5M2] = {"F8_E5M2", 1},
};

const char *wcmi_dtype_name(wcmi_dtype dt) {
  return (int)dt >= 0 && dt < WCMI_DT_COUNT ? dtype_table[dt].name : "?";
}

size_t wcmi_dtype_size(wcmi_dtype dt) { return (int)dt >= 0 && dt < WCMI_DT_COUNT ? dtype_table[dt].size : 0; }

int wcmi_dtype_from_name(const char *name, wcmi_dtype *dt) {
  for (int i = 0; i < WCMI_DT_COUNT; i++)
    if (strcmp(dtype_table[i].name, name) == 0) {
      *dt = (wcmi_dtype)i;
      return 1;
    }
  return 0;
}

/* "(64, 1, 4, 4)" for error messages; "()" for scalars. */
static const char *dims_str(const int64_t *d, int ndim, char *buf, size_t n) {
  wcmi_shape s = {0};
  if (ndim <= WCMI_MAX_DIMS) {
    s.ndim = ndim;
    for (int i = 0; i < ndim; i++) s.d[i] = d[i];
    return wcmi_shape_str(&s, buf, n);
  }
  size_t used = (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)d[i]);
  if (used < n) snprintf(buf + used, n - used, ")");
  return buf;
}

/* numel and bytes with overflow checks; returns 0 on overflow. */
static int count_bytes(const int64_t *d, int ndim, size_t elem, int64_t *numel, size_t *bytes) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (d[i] < 0 || !wcmi_mul_size(n, (size_t)d[i], &n)) return 0;
  }
  if (n > (size_t)INT64_MAX || !wcmi_mul_size(n, elem, bytes)) return 0;
  *numel = (int64_t)n;
  return 1;
}

/* ================================ writer ==================================================== */

static int cmp_tensor_ptr_by_name(const void *a, const void *b) {
  const wcmi_st_tensor *x = *(const wcmi_st_tensor *const *)a, *y = *(const wcmi_st_tensor *const *)b;
  return strcmp(x->name, y->name);
}

static int cmp_kv_ptr_by_key(const void *a, const void *b) {
  const wcmi_st_kv *x = *(const wcmi_st_kv *const *)a, *y = *(const wcmi_st_kv *const *)b;
  return strcmp(x->key, y->key);
}

static int write_with_header(wcmi_ctx *ctx, const char *path, const wcmi_st_tensor *const *order, int n,
                             const size_t *nbytes, const char *header, size_t header_len) {
  /* Pad with spaces so the data buffer starts 8-byte aligned in the file. */
  size_t padded = (header_len + 7) & ~(size_t)7;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  wcmi_atomic_file af;
  int rc = wcmi_atomic_open(ctx, &af, path);
  if (rc) return rc;
  static const char spaces[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
  rc = wcmi_atomic_put(ctx, &af, len8, 8);
  if (!rc) rc = wcmi_atomic_put(ctx, &af, header, header_len);
  if (!rc) rc = wcmi_atomic_put(ctx, &af, spaces, padded - header_len);
  for (int i = 0; i < n && !rc; i++) rc = wcmi_atomic_put(ctx, &af, order[i]->data, nbytes[i]);
  if (rc) {
    wcmi_atomic_abort(&af);
    return rc;
  }
  return wcmi_atomic_commit(ctx, &af);
}

int wcmi_st_write(wcmi_ctx *ctx, const char *path, const wcmi_st_tensor *tensors, int n, const wcmi_st_kv *meta,
                  int n_meta) {
  if (n < 0 || n_meta < 0 || (n > 0 && !tensors) || (n_meta > 0 && !meta))
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: invalid tensor or metadata list", path);
  int rc = WCMI_OK;
  const wcmi_st_tensor **order = wcmi_alloc(ctx, (size_t)n + 1, sizeof *order);
  const wcmi_st_kv **morder = wcmi_alloc(ctx, (size_t)n_meta + 1, sizeof *morder);
  size_t *nbytes = wcmi_alloc(ctx, (size_t)n + 1, sizeof *nbytes);
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  if (!order || !morder || !nbytes) {
    rc = WCMI_ENOMEM;
    goto done;
  }
  for (int i = 0; i < n; i++) {
    const wcmi_st_tensor *t = &tensors[i];
    char sb[96];
    int64_t numel;
    if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: tensor %d has an empty or reserved name", path, i);
      goto done;
    }
    if (wcmi_dtype_size(t->dtype) == 0 || t->shape.ndim < 0 || t->shape.ndim > WCMI_MAX_DIMS ||
        !count_bytes(t->shape.d, t->shape.ndim, wcmi_dtype_size(t->dtype), &numel, &nbytes[i])) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: tensor '%s': invalid dtype or shape %s", path, t->name,
                     t->shape.ndim >= 0 && t->shape.ndim <= WCMI_MAX_DIMS ? wcmi_shape_str(&t->shape, sb, sizeof sb) : "");
      goto done;
    }
    if (nbytes[i] > 0 && !t->data) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: tensor '%s' has no data", path, t->name);
      goto done;
    }
    order[i] = t;
  }
  qsort(order, (size_t)n, sizeof *order, cmp_tensor_ptr_by_name);
  for (int i = 1; i < n; i++)
    if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: tensor name '%s' given twice", path, order[i]->name);
      goto done;
    }
  for (int i = 0; i < n_meta; i++) {
    if (!meta[i].key || !meta[i].value) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: metadata entry %d has a NULL key or value", path, i);
      goto done;
    }
    morder[i] = &meta[i];
  }
  qsort(morder, (size_t)n_meta, sizeof *morder, cmp_kv_ptr_by_key);
  for (int i = 1; i < n_meta; i++)
    if (strcmp(morder[i - 1]->key, morder[i]->key) == 0) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: metadata key '%s' given twice", path, morder[i]->key);
      goto done;
    }
  /* The nbytes computed above are in input order; re-derive them in name order. */
  for (int i = 0; i < n; i++) {
    int64_t numel;
    count_bytes(order[i]->shape.d, order[i]->shape.ndim, wcmi_dtype_size(order[i]->dtype), &numel, &nbytes[i]);
  }
  wcmi_jsonw_begin_object(&w);
  if (n_meta > 0) {
    wcmi_jsonw_key(&w, "__metadata__");
    wcmi_jsonw_begin_object(&w);
    for (int i = 0; i < n_meta; i++) wcmi_jsonw_kv_string(&w, morder[i]->key, morder[i]->value);
    wcmi_jsonw_end_object(&w);
  }
  size_t offset = 0;
  for (int i = 0; i < n; i++) {
    const wcmi_st_tensor *t = order[i];
    wcmi_jsonw_key(&w, t->name);
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "dtype", wcmi_dtype_name(t->dtype));
    wcmi_jsonw_key(&w, "shape");
    wcmi_jsonw_begin_array(&w);
    for (int k = 0; k < t->shape.ndim; k++) wcmi_jsonw_int(&w, t->shape.d[k]);
    wcmi_jsonw_end_array(&w);
    wcmi_jsonw_key(&w, "data_offsets");
    wcmi_jsonw_begin_array(&w);
    wcmi_jsonw_int(&w, (int64_t)offset);
    if (!wcmi_add_size(offset, nbytes[i], &offset) || offset > (size_t)INT64_MAX) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: total data size overflows", path);
      goto done;
    }
    wcmi_jsonw_int(&w, (int64_t)offset);
    wcmi_jsonw_end_array(&w);
    wcmi_jsonw_end_object(&w);
  }
  wcmi_jsonw_end_object(&w);
  rc = wcmi_jsonw_finish(ctx, &w);
  if (rc) goto done;
  rc = write_with_header(ctx, path, order, n, nbytes, wcmi_jsonw_text(&w), w.len);
done:
  wcmi_jsonw_free(&w);
  wcmi_free(order);
  wcmi_free(morder);
  wcmi_free(nbytes);
  return rc;
}

int wcmi_st_write_params(wcmi_ctx *ctx, const char *path, wcmi_param *const *params, int n, const wcmi_st_kv *meta,
                         int n_meta) {
  if (n < 0 || (n > 0 && !params)) return wcmi_fail(ctx, WCMI_EINVAL, "%s: invalid parameter list", path);
  wcmi_st_tensor *ts = wcmi_alloc(ctx, (size_t)n + 1, sizeof *ts);
  if (!ts) return WCMI_ENOMEM;
  for (int i = 0; i < n; i++) {
    const wcmi_param *p = params[i];
    ts[i].name = p->name;
    ts[i].shape = p->shape;
    if (p->kind == WCMI_PARAM_COUNTER) {
      ts[i].dtype = WCMI_DT_I64;
      ts[i].data = p->i64;
    } else {
      ts[i].dtype = WCMI_DT_F32;
      ts[i].data = p->data;
    }
  }
  int rc = wcmi_st_write(ctx, path, ts, n, meta, n_meta);
  wcmi_free(ts);
  return rc;
}

/* ================================ reader ==================================================== */

struct wcmi_st {
  char *name;
  unsigned char *bytes; /* the whole file, or only its first 8 + header bytes (header_only) */
  size_t size;          /* of the whole file */
  int header_only;      /* tensors have no data pointers (wcmi_st_open_header) */
  wcmi_json *header;
  int n;
  wcmi_st_info *tensors; /* name order */
  int n_meta;
  wcmi_st_kv *meta; /* key order */
};

static int cmp_info_by_name(const void *a, const void *b) {
  return strcmp(((const wcmi_st_info *)a)->name, ((const wcmi_st_info *)b)->name);
}

static int cmp_info_ptr_by_offset(const void *a, const void *b) {
  const wcmi_st_info *x = *(const wcmi_st_info *const *)a, *y = *(const wcmi_st_info *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Reads one tensor entry; `buffer_size` bounds the offsets. */
static int parse_tensor_entry(wcmi_ctx *ctx, const char *file, const char *name, size_t name_len,
                              const wcmi_json *e, size_t buffer_size, wcmi_st_info *t) {
  if (strlen(name) != name_len) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: a tensor name contains a NUL byte", file);
  if (!*name) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: a tensor has an empty name", file);
  t->name = name;
  if (e->type != WCMI_JSON_OBJECT)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': entry is %s, not an object", file, name,
                     wcmi_json_type_name(e->type));
  const wcmi_json *dt = wcmi_json_get(e, "dtype"), *shape = wcmi_json_get(e, "shape"),
                  *offs = wcmi_json_get(e, "data_offsets");
  if (!dt || dt->type != WCMI_JSON_STRING)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", file, name);
  if (!wcmi_dtype_from_name(dt->str, &t->dtype))
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': unknown dtype '%.32s'", file, name, dt->str);
  if (!shape || shape->type != WCMI_JSON_ARRAY)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", file, name);
  if (shape->n > WCMI_ST_MAX_DIMS)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': shape has %zu dims, more than %d", file, name, shape->n,
                     WCMI_ST_MAX_DIMS);
  t->ndim = (int)shape->n;
  for (int k = 0; k < t->ndim; k++) {
    const wcmi_json *d = &shape->items[k];
    if (d->type != WCMI_JSON_NUMBER || !d->is_integer || d->integer < 0)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': shape dim %d is not a non-negative integer", file, name, k);
    t->shape[k] = d->integer;
  }
  char sb[200];
  if (!count_bytes(t->shape, t->ndim, wcmi_dtype_size(t->dtype), &t->numel, &t->nbytes))
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': shape %s is absurd (byte count overflows)", file, name,
                     dims_str(t->shape, t->ndim, sb, sizeof sb));
  if (!offs || offs->type != WCMI_JSON_ARRAY || offs->n != 2)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': \"data_offsets\" is not a pair [begin, end]", file, name);
  for (int k = 0; k < 2; k++) {
    const wcmi_json *o = &offs->items[k];
    if (o->type != WCMI_JSON_NUMBER || !o->is_integer || o->integer < 0)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': data_offsets[%d] is not a non-negative integer", file,
                       name, k);
  }
  uint64_t begin = (uint64_t)offs->items[0].integer, end = (uint64_t)offs->items[1].integer;
  if (begin > end)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': data_offsets begin %llu > end %llu", file, name,
                     (unsigned long long)begin, (unsigned long long)end);
  if (end > buffer_size)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': data_offsets end %llu is beyond the %zu-byte data buffer",
                     file, name, (unsigned long long)end, buffer_size);
  t->begin = (size_t)begin;
  t->end = (size_t)end;
  if (t->nbytes != t->end - t->begin)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': shape %s needs %zu bytes but data_offsets span %zu", file,
                     name, dims_str(t->shape, t->ndim, sb, sizeof sb), t->nbytes, t->end - t->begin);
  return WCMI_OK;
}

static int cmp_kv_by_key(const void *a, const void *b) {
  return strcmp(((const wcmi_st_kv *)a)->key, ((const wcmi_st_kv *)b)->key);
}

static int parse_metadata(wcmi_ctx *ctx, wcmi_st *st, const wcmi_json *m) {
  if (m->type != WCMI_JSON_OBJECT)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: __metadata__ is %s, not an object of strings", st->name,
                     wcmi_json_type_name(m->type));
  st->meta = wcmi_alloc(ctx, m->n + 1, sizeof *st->meta);
  if (!st->meta) return WCMI_ENOMEM;
  for (size_t i = 0; i < m->n; i++) {
    const wcmi_json *v = &m->items[i];
    if (strlen(m->keys[i]) != m->key_lens[i])
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: a metadata key contains a NUL byte", st->name);
    if (v->type != WCMI_JSON_STRING)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata value for key '%.100s' is %s, not a string", st->name,
                       m->keys[i], wcmi_json_type_name(v->type));
    if (strlen(v->str) != v->str_len)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata value for key '%.100s' contains a NUL byte", st->name,
                       m->keys[i]);
    st->meta[i].key = m->keys[i];
    st->meta[i].value = v->str;
  }
  st->n_meta = (int)m->n;
  qsort(st->meta, m->n, sizeof *st->meta, cmp_kv_by_key);
  return WCMI_OK;
}

/* Tensors must tile the data buffer exactly: sorted by offset, each begins where the previous ends,
 * the first at 0 and the last at the buffer's end. */
static int check_coverage(wcmi_ctx *ctx, const wcmi_st *st, size_t buffer_size) {
  const wcmi_st_info **by_off = wcmi_alloc(ctx, (size_t)st->n + 1, sizeof *by_off);
  if (!by_off) return WCMI_ENOMEM;
  for (int i = 0; i < st->n; i++) by_off[i] = &st->tensors[i];
  qsort(by_off, (size_t)st->n, sizeof *by_off, cmp_info_ptr_by_offset);
  int rc = WCMI_OK;
  size_t pos = 0;
  for (int i = 0; i < st->n && !rc; i++) {
    const wcmi_st_info *t = by_off[i];
    if (t->begin < pos)
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s': data_offsets [%zu, %zu) overlap tensor '%s' [%zu, %zu)",
                     st->name, t->name, t->begin, t->end, by_off[i - 1]->name, by_off[i - 1]->begin, by_off[i - 1]->end);
    else if (t->begin > pos)
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: data buffer bytes [%zu, %zu) are not covered by any tensor (gap before '%s')",
                     st->name, pos, t->begin, t->name);
    pos = t->end;
  }
  if (!rc && pos != buffer_size)
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: data buffer bytes [%zu, %zu) are not covered by any tensor (trailing bytes)",
                   st->name, pos, buffer_size);
  wcmi_free(by_off);
  return rc;
}

/* The header length of a file of `size` bytes that starts with first8, checked against the file. */
static int header_length(wcmi_ctx *ctx, const char *file, const unsigned char *first8, size_t size, uint64_t *out) {
  if (size < 8)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", file, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | first8[i];
  if (hlen > WCMI_ST_MAX_HEADER)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header length %llu is absurd (limit %u bytes)", file,
                     (unsigned long long)hlen, WCMI_ST_MAX_HEADER);
  if (hlen > size - 8)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header length %llu exceeds the %zu bytes after it (truncated file?)", file,
                     (unsigned long long)hlen, size - 8);
  if (hlen < 2)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header length %llu is too small for a JSON object", file,
                     (unsigned long long)hlen);
  *out = hlen;
  return WCMI_OK;
}

static int parse_file(wcmi_ctx *ctx, wcmi_st *st) {
  const char *file = st->name;
  uint64_t hlen = 0;
  int rc = header_length(ctx, file, st->bytes, st->size, &hlen);
  if (rc) return rc;
  char what[600];
  snprintf(what, sizeof what, "%s: header", file);
  rc = wcmi_json_parse(ctx, what, (const char *)st->bytes + 8, (size_t)hlen, &st->header);
  if (rc) return rc;
  const wcmi_json *h = st->header;
  if (h->type != WCMI_JSON_OBJECT)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: header is %s, not a JSON object", file, wcmi_json_type_name(h->type));
  const unsigned char *buffer = st->bytes + 8 + hlen;
  size_t buffer_size = st->size - 8 - (size_t)hlen;
  st->tensors = wcmi_calloc(ctx, h->n + 1, sizeof *st->tensors);
  if (!st->tensors) return WCMI_ENOMEM;
  for (size_t i = 0; i < h->n; i++) {
    if (strcmp(h->keys[i], "__metadata__") == 0 && h->key_lens[i] == 12) {
      rc = parse_metadata(ctx, st, &h->items[i]);
    } else {
      wcmi_st_info *t = &st->tensors[st->n];
      rc = parse_tensor_entry(ctx, file, h->keys[i], h->key_lens[i], &h->items[i], buffer_size, t);
      if (!rc) {
        t->data = st->header_only ? NULL : buffer + t->begin;
        st->n++;
      }
    }
    if (rc) return rc;
  }
  rc = check_coverage(ctx, st, buffer_size);
  if (rc) return rc;
  qsort(st->tensors, (size_t)st->n, sizeof *st->tensors, cmp_info_by_name);
  return WCMI_OK;
}

void wcmi_st_close(wcmi_st *st) {
  if (!st) return;
  wcmi_json_free(st->header);
  wcmi_free(st->tensors);
  wcmi_free(st->meta);
  wcmi_free(st->bytes);
  wcmi_free(st->name);
  wcmi_free(st);
}

static wcmi_st *st_new(wcmi_ctx *ctx, const char *name) {
  wcmi_st *st = wcmi_calloc(ctx, 1, sizeof *st);
  if (!st) return NULL;
  size_t n = strlen(name) + 1;
  st->name = wcmi_alloc(ctx, n, 1);
  if (!st->name) {
    wcmi_free(st);
    return NULL;
  }
  memcpy(st->name, name, n);
  return st;
}

static int st_finish_open(wcmi_ctx *ctx, wcmi_st *st, wcmi_st **out) {
  int rc = parse_file(ctx, st);
  if (rc) {
    if (rc == WCMI_ENOMEM) wcmi_fail(ctx, rc, "%s: out of memory while reading", st->name);
    wcmi_st_close(st);
    return rc;
  }
  *out = st;
  return WCMI_OK;
}

int wcmi_st_open_memory(wcmi_ctx *ctx, const char *name, const void *bytes, size_t n, wcmi_st **out) {
  *out = NULL;
  wcmi_st *st = st_new(ctx, name ? name : "<memory>");
  if (!st) return WCMI_ENOMEM;
  st->bytes = wcmi_alloc(ctx, n + 1, 1);
  if (!st->bytes) {
    wcmi_st_close(st);
    return WCMI_ENOMEM;
  }
  if (n) memcpy(st->bytes, bytes, n);
  st->size = n;
  return st_finish_open(ctx, st, out);
}

int wcmi_st_open(wcmi_ctx *ctx, const char *path, wcmi_st **out) {
  *out = NULL;
  char *bytes;
  size_t n;
  int rc = wcmi_read_file(ctx, path, (size_t)1 << 40, &bytes, &n);
  if (rc) return rc;
  wcmi_st *st = st_new(ctx, path);
  if (!st) {
    wcmi_free(bytes);
    return WCMI_ENOMEM;
  }
  st->bytes = (unsigned char *)bytes;
  st->size = n;
  return st_finish_open(ctx, st, out);
}

int wcmi_st_open_header(wcmi_ctx *ctx, const char *path, wcmi_st **out) {
  *out = NULL;
  struct stat fs;
  FILE *f = wcmi_fopen_regular(ctx, path, 0, &fs);
  if (!f) return ctx ? ctx->status : WCMI_EIO;
  unsigned char first8[8];
  size_t size = (size_t)fs.st_size;
  uint64_t hlen = 0;
  int rc = WCMI_OK;
  if (size >= 8 && fread(first8, 1, 8, f) != 8) rc = wcmi_fail(ctx, WCMI_EIO, "%s: read error", path);
  if (!rc) rc = header_length(ctx, path, first8, size, &hlen);
  wcmi_st *st = rc ? NULL : st_new(ctx, path);
  if (!rc && !st) rc = WCMI_ENOMEM;
  if (!rc && !(st->bytes = wcmi_alloc(ctx, (size_t)hlen + 9, 1))) rc = WCMI_ENOMEM;
  if (!rc) {
    memcpy(st->bytes, first8, 8);
    if (fread(st->bytes + 8, 1, (size_t)hlen, f) != (size_t)hlen) rc = wcmi_fail(ctx, WCMI_EIO, "%s: read error in the header", path);
  }
  fclose(f);
  if (rc) {
    wcmi_st_close(st);
    return rc;
  }
  st->size = size;
  st->header_only = 1;
  return st_finish_open(ctx, st, out);
}

const char *wcmi_st_name(const wcmi_st *st) { return st->name; }
int wcmi_st_count(const wcmi_st *st) { return st->n; }

const wcmi_st_info *wcmi_st_tensor_at(const wcmi_st *st, int i) {
  return i >= 0 && i < st->n ? &st->tensors[i] : NULL;
}

const wcmi_st_info *wcmi_st_find(const wcmi_st *st, const char *name) {
  int lo = 0, hi = st->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(st->tensors[mid].name, name);
    if (c == 0) return &st->tensors[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

int wcmi_st_info_shape(wcmi_ctx *ctx, const wcmi_st *st, const wcmi_st_info *t, wcmi_shape *out) {
  if (t->ndim > WCMI_MAX_DIMS)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: tensor '%s' has %d dims; wcmi shapes hold at most %d", st->name, t->name,
                     t->ndim, WCMI_MAX_DIMS);
  memset(out, 0, sizeof *out);
  out->ndim = t->ndim;
  for (int i = 0; i < t->ndim; i++) out->d[i] = t->shape[i];
  return WCMI_OK;
}

int wcmi_st_meta_count(const wcmi_st *st) { return st->n_meta; }
const char *wcmi_st_meta_key(const wcmi_st *st, int i) { return i >= 0 && i < st->n_meta ? st->meta[i].key : NULL; }
const char *wcmi_st_meta_value(const wcmi_st *st, int i) {
  return i >= 0 && i < st->n_meta ? st->meta[i].value : NULL;
}

const char *wcmi_st_meta(const wcmi_st *st, const char *key) {
  int lo = 0, hi = st->n_meta - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(st->meta[mid].key, key);
    if (c == 0) return st->meta[mid].value;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

/* Checks one param against the file; returns the matching tensor through *out. */
static int check_param(wcmi_ctx *ctx, const wcmi_st *st, const wcmi_param *p, const wcmi_st_info **out) {
  const wcmi_st_info *t = wcmi_st_find(st, p->name);
  if (!t) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: missing tensor '%s'", st->name, p->name);
  wcmi_dtype want = p->kind == WCMI_PARAM_COUNTER ? WCMI_DT_I64 : WCMI_DT_F32;
  if (t->dtype != want)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s' is %s, expected %s", st->name, p->name,
                     wcmi_dtype_name(t->dtype), wcmi_dtype_name(want));
  int same = t->ndim == p->shape.ndim;
  for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == p->shape.d[k];
  if (!same) {
    char a[200], b[96];
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", st->name, p->name,
                     dims_str(t->shape, t->ndim, a, sizeof a), wcmi_shape_str(&p->shape, b, sizeof b));
  }
  if (t->nbytes > 0 && !(p->kind == WCMI_PARAM_COUNTER ? (const void *)p->i64 : (const void *)p->data))
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: parameter '%s' has no storage to load into", st->name, p->name);
  *out = t;
  return WCMI_OK;
}

int wcmi_st_load_params(wcmi_ctx *ctx, const wcmi_st *st, wcmi_param *const *params, int n, int strict) {
  if (n < 0 || (n > 0 && !params)) return wcmi_fail(ctx, WCMI_EINVAL, "%s: invalid parameter list", st->name);
  if (st->header_only) return wcmi_fail(ctx, WCMI_EINVAL, "%s: opened for its header only", st->name);
  const wcmi_st_info **src = wcmi_alloc(ctx, (size_t)n + 1, sizeof *src);
  unsigned char *used = wcmi_calloc(ctx, (size_t)st->n + 1, 1);
  int rc = WCMI_OK;
  if (!src || !used) {
    rc = WCMI_ENOMEM;
    goto done;
  }
  /* Check everything before copying anything, so a failed load leaves the params untouched. */
  for (int i = 0; i < n && !rc; i++) {
    rc = check_param(ctx, st, params[i], &src[i]);
    if (rc) break;
    size_t idx = (size_t)(src[i] - st->tensors);
    if (used[idx]) rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: parameter '%s' requested twice", st->name, params[i]->name);
    used[idx] = 1;
  }
  if (!rc && strict)
    for (int i = 0; i < st->n; i++)
      if (!used[i]) {
        rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: unexpected tensor '%s' (no parameter of that name)", st->name,
                       st->tensors[i].name);
        break;
      }
  if (!rc)
    for (int i = 0; i < n; i++) {
      void *dst = params[i]->kind == WCMI_PARAM_COUNTER ? (void *)params[i]->i64 : (void *)params[i]->data;
      if (src[i]->nbytes) memcpy(dst, src[i]->data, src[i]->nbytes);
    }
done:
  wcmi_free(src);
  wcmi_free(used);
  return rc;
}
