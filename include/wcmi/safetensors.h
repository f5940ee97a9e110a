/* wcmi safetensors: element types, an atomic writer and a reader that treats the file as hostile:
 * every length and offset is checked against the bytes that remain before it is used, sizes are
 * computed with overflow checks, tensors must tile the data buffer, and every error is one line
 * naming the file and the problem, e.g.
 *   "ckpt.safetensors: tensor 'encoder.layer0.0.weight': shape (64, 1, 4, 4) needs 4096 bytes but
 *    data_offsets span 4000"
 * Layout in docs/formats.md. */
#ifndef WCMI_SAFETENSORS_H
#define WCMI_SAFETENSORS_H

#include "wcmi/core.h"
#include "wcmi/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of the safetensors format. wcmi itself stores F32 and I64; the reader knows the
 * others so that `wcmi info` can describe any valid file. */
typedef enum {
  WCMI_DT_BOOL = 0,
  WCMI_DT_U8,
  WCMI_DT_I8,
  WCMI_DT_I16,
  WCMI_DT_U16,
  WCMI_DT_F16,
  WCMI_DT_BF16,
  WCMI_DT_I32,
  WCMI_DT_U32,
  WCMI_DT_F32,
  WCMI_DT_F64,
  WCMI_DT_I64,
  WCMI_DT_U64,
  WCMI_DT_F8_E4M3,
  WCMI_DT_F8_E5M2,
  WCMI_DT_COUNT
} wcmi_dtype;

const char *wcmi_dtype_name(wcmi_dtype dt); /* "F32"; "?" if out of range */
size_t wcmi_dtype_size(wcmi_dtype dt);      /* bytes per element; 0 if out of range */
/* Returns 1 and sets *dt if name is a known dtype ("F32", "I64", ...). */
int wcmi_dtype_from_name(const char *name, wcmi_dtype *dt);

#define WCMI_ST_MAX_DIMS 8
#define WCMI_ST_MAX_HEADER (100u * 1024u * 1024u) /* header bytes beyond this are refused */

/* A tensor to write. data holds numel * dtype_size bytes, little-endian, C order. */
typedef struct wcmi_st_tensor {
  const char *name;
  wcmi_dtype dtype;
  wcmi_shape shape; /* ndim 0 = scalar */
  const void *data;
} wcmi_st_tensor;

typedef struct wcmi_st_kv {
  const char *key;
  const char *value;
} wcmi_st_kv;

/* Writes tensors (header entries sorted by name; data in the same order) and the metadata map,
 * atomically. The header is padded with spaces to a multiple of 8 bytes. Names must be non-empty,
 * unique and not "__metadata__"; metadata keys unique. */
int wcmi_st_write(wcmi_ctx *ctx, const char *path, const wcmi_st_tensor *tensors, int n,
                  const wcmi_st_kv *meta, int n_meta);
/* Writes parameters: TRAINABLE / BUFFER as F32 from ->data, COUNTER as I64 from ->i64. */
int wcmi_st_write_params(wcmi_ctx *ctx, const char *path, wcmi_param *const *params, int n,
                         const wcmi_st_kv *meta, int n_meta);

/* A tensor of an opened file. data points into the loaded file and MAY BE UNALIGNED (the format
 * does not promise alignment): copy it out with memcpy. */
typedef struct wcmi_st_info {
  const char *name;
  wcmi_dtype dtype;
  int ndim;
  int64_t shape[WCMI_ST_MAX_DIMS];
  int64_t numel;
  const void *data;
  size_t nbytes;
  size_t begin, end; /* data_offsets, relative to the data buffer */
} wcmi_st_info;

typedef struct wcmi_st wcmi_st;

/* Loads and validates the whole file (see the top of this header). */
int wcmi_st_open(wcmi_ctx *ctx, const char *path, wcmi_st **out);
/* Reads and validates only the 8-byte length and the header (names, dtypes, shapes, offsets
 * against the file's size, metadata): for `wcmi info` and metadata look-ups, whatever the file's
 * size. Tensor data pointers are NULL and wcmi_st_load_params refuses such a handle. */
int wcmi_st_open_header(wcmi_ctx *ctx, const char *path, wcmi_st **out);
/* Same on bytes already in memory (copied); `name` is used in messages. */
int wcmi_st_open_memory(wcmi_ctx *ctx, const char *name, const void *bytes, size_t n, wcmi_st **out);
void wcmi_st_close(wcmi_st *st);
const char *wcmi_st_name(const wcmi_st *st);
int wcmi_st_count(const wcmi_st *st);
/* Tensors in name order (strcmp), i in [0, count). */
const wcmi_st_info *wcmi_st_tensor_at(const wcmi_st *st, int i);
const wcmi_st_info *wcmi_st_find(const wcmi_st *st, const char *name); /* NULL if absent */
/* Converts a tensor's shape to wcmi_shape; fails if ndim > WCMI_MAX_DIMS. */
int wcmi_st_info_shape(wcmi_ctx *ctx, const wcmi_st *st, const wcmi_st_info *t, wcmi_shape *out);
int wcmi_st_meta_count(const wcmi_st *st);
const char *wcmi_st_meta_key(const wcmi_st *st, int i);   /* key order (strcmp) */
const char *wcmi_st_meta_value(const wcmi_st *st, int i);
const char *wcmi_st_meta(const wcmi_st *st, const char *key); /* NULL if absent */
/* Copies tensors into params by name, all or nothing: every param must be present with the exact
 * shape and the dtype of its kind (F32 / I64 for counters); errors name the tensor. strict != 0
 * also refuses tensors in the file that no param asked for. */
int wcmi_st_load_params(wcmi_ctx *ctx, const wcmi_st *st, wcmi_param *const *params, int n, int strict);

#ifdef __cplusplus
}
#endif
#endif
