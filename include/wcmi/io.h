/* wcmi file formats: atomic writes, JSON (writer + DOM parser), safetensors, NumPy .npy.
 *
 * Every reader treats its input as hostile: each length and offset is checked against the bytes
 * that remain before it is used, sizes are computed with overflow checks, and every error is one
 * line in the ctx naming the file and the problem, e.g.
 *   "ckpt.safetensors: tensor 'encoder.layer0.0.weight': shape (64, 1, 4, 4) needs 4096 bytes but
 *    data_offsets span 4000"
 * Every writer goes through wcmi_atomic_*: a crash at any moment leaves either the previous file or
 * the complete new one, never a torn file. Layouts are described in docs/formats.md.
 */
#ifndef WCMI_IO_H
#define WCMI_IO_H

#include "wcmi/core.h"
#include "wcmi/nn.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ================================ atomic writes ============================================ */
/* Writes to "<path>.tmp.<pid>", then fflush + fsync(file), rename over path, fsync(directory).
 * On any failure the temporary is removed and the error names the file. */
int wcmi_atomic_write(wcmi_ctx *ctx, const char *path, const void *bytes, size_t n);

/* Streaming variant for large files: open, write any number of parts, then commit or abort.
 * After a failed write the handle is still open: call wcmi_atomic_abort (commit refuses it). */
typedef struct wcmi_atomic_file {
  FILE *f;
  char *path; /* final name (owned) */
  char *tmp;  /* temporary name (owned) */
  int failed; /* a write failed: commit must not publish the file */
} wcmi_atomic_file;

int wcmi_atomic_open(wcmi_ctx *ctx, wcmi_atomic_file *af, const char *path);
int wcmi_atomic_put(wcmi_ctx *ctx, wcmi_atomic_file *af, const void *bytes, size_t n);
/* Publishes the file (fsync, rename, fsync dir) and releases the handle, success or not. */
int wcmi_atomic_commit(wcmi_ctx *ctx, wcmi_atomic_file *af);
/* Removes the temporary and releases the handle. Safe on a released or zeroed handle. */
void wcmi_atomic_abort(wcmi_atomic_file *af);

/* Reads a whole file into a wcmi_alloc'd buffer (NUL-terminated, *n excludes the NUL). Refuses
 * files larger than max_bytes (error names the file and both sizes). Free with wcmi_free. */
/* Creates dir and its missing parents (like mkdir -p). */
int wcmi_mkdir_p(wcmi_ctx *ctx, const char *dir);
int wcmi_read_file(wcmi_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *n);
/* Opens path for reading (append = 0) or appending (append = 1, created if missing) only if it is a
 * regular file: the open itself does not block (O_NONBLOCK, so a FIFO without a writer cannot hang
 * it), then fstat refuses FIFOs, devices, sockets and directories with a one-line message. *st
 * (may be NULL) receives the fstat result. NULL on failure, message in ctx. */
struct stat;
FILE *wcmi_fopen_regular(wcmi_ctx *ctx, const char *path, int append, struct stat *st);

/* ================================ JSON writer =============================================== */
/* A streaming writer into a growable buffer (f == NULL) or a FILE*. Misuse (a value in an object
 * without a key, unbalanced ends, depth > WCMI_JSON_MAX_DEPTH) and I/O or allocation failures are
 * sticky: the calls become no-ops and wcmi_jsonw_finish reports the first one.
 * Doubles are printed with %.9g (float32 round-trips); NaN and +-Inf are written as null.
 * indent == 0 writes one line (for .jsonl); indent > 0 pretty-prints with that many spaces. */
#define WCMI_JSON_MAX_DEPTH 128
typedef struct wcmi_jsonw {
  FILE *f;
  char *buf; /* buffer mode: the text so far, NUL-terminated */
  size_t len, cap;
  int indent;
  int depth;
  unsigned char count_nonzero[WCMI_JSON_MAX_DEPTH + 1]; /* an element was written at this level */
  unsigned char is_object[WCMI_JSON_MAX_DEPTH + 1];
  int expect_value; /* a key was written; its value comes next */
  int error;        /* first failure (WCMI_E*) or 0 */
  char errmsg[128];
} wcmi_jsonw;

void wcmi_jsonw_init_buffer(wcmi_jsonw *w, int indent);
void wcmi_jsonw_init_file(wcmi_jsonw *w, FILE *f, int indent);
void wcmi_jsonw_begin_object(wcmi_jsonw *w);
void wcmi_jsonw_end_object(wcmi_jsonw *w);
void wcmi_jsonw_begin_array(wcmi_jsonw *w);
void wcmi_jsonw_end_array(wcmi_jsonw *w);
void wcmi_jsonw_key(wcmi_jsonw *w, const char *key);
void wcmi_jsonw_string(wcmi_jsonw *w, const char *s);
void wcmi_jsonw_string_n(wcmi_jsonw *w, const char *s, size_t n); /* may contain NUL bytes */
void wcmi_jsonw_int(wcmi_jsonw *w, int64_t v);
void wcmi_jsonw_double(wcmi_jsonw *w, double v);
void wcmi_jsonw_bool(wcmi_jsonw *w, int v);
void wcmi_jsonw_null(wcmi_jsonw *w);
/* Raw, already-valid JSON text as one value (trusted; not checked). */
void wcmi_jsonw_raw(wcmi_jsonw *w, const char *json);
/* Shorthands for "key": value inside an object. */
void wcmi_jsonw_kv_string(wcmi_jsonw *w, const char *key, const char *s);
void wcmi_jsonw_kv_int(wcmi_jsonw *w, const char *key, int64_t v);
void wcmi_jsonw_kv_double(wcmi_jsonw *w, const char *key, double v);
void wcmi_jsonw_kv_bool(wcmi_jsonw *w, const char *key, int v);
/* Checks the document is complete (all containers closed, exactly one top-level value) and that
 * nothing failed; in FILE mode also flushes. Returns WCMI_OK or the first error (ctx message). */
int wcmi_jsonw_finish(wcmi_ctx *ctx, wcmi_jsonw *w);
/* Buffer mode: the text (valid until the next write or free); "" if nothing was written. */
const char *wcmi_jsonw_text(const wcmi_jsonw *w);
void wcmi_jsonw_free(wcmi_jsonw *w);

/* ================================ JSON DOM parser (RFC 8259) ================================ */
typedef enum {
  WCMI_JSON_NULL = 0,
  WCMI_JSON_BOOL,
  WCMI_JSON_NUMBER,
  WCMI_JSON_STRING,
  WCMI_JSON_ARRAY,
  WCMI_JSON_OBJECT,
} wcmi_json_type;

typedef struct wcmi_json wcmi_json;
struct wcmi_json {
  wcmi_json_type type;
  size_t offset;   /* byte offset of the value in the parsed text (for error messages) */
  int boolean;     /* BOOL */
  double number;   /* NUMBER */
  int is_integer;  /* NUMBER written without fraction/exponent and within int64 */
  int64_t integer; /* NUMBER, exact when is_integer */
  char *str;       /* STRING: UTF-8, NUL-terminated; may contain NUL bytes (see str_len) */
  size_t str_len;
  size_t n;         /* ARRAY / OBJECT: number of elements */
  wcmi_json *items; /* ARRAY elements / OBJECT values, in document order */
  char **keys;      /* OBJECT keys (UTF-8, NUL-terminated), parallel to items */
  size_t *key_lens;
};

/* Parses text[0..len) as exactly one JSON value (surrounding whitespace allowed). Strings are
 * validated as UTF-8; \u escapes (surrogate pairs included) are decoded to UTF-8; lone surrogates,
 * control characters, duplicate object keys, nesting deeper than WCMI_JSON_MAX_DEPTH and
 * trailing garbage are errors "<what>: byte <offset>: <problem>". `what` names the source (a file
 * name) for messages. *out is freed with wcmi_json_free. */
int wcmi_json_parse(wcmi_ctx *ctx, const char *what, const char *text, size_t len, wcmi_json **out);
/* Reads and parses a file of at most max_bytes (0: 256 MiB). */
int wcmi_json_parse_file(wcmi_ctx *ctx, const char *path, size_t max_bytes, wcmi_json **out);
/* JSON Lines: one value per non-blank line; returns an ARRAY of them. Errors name the line. */
int wcmi_json_parse_lines_file(wcmi_ctx *ctx, const char *path, size_t max_bytes, wcmi_json **out);
void wcmi_json_free(wcmi_json *v);

/* Navigation: NULL when v is NULL, of the wrong type, or the key/index is absent. */
const wcmi_json *wcmi_json_get(const wcmi_json *obj, const char *key);
const wcmi_json *wcmi_json_at(const wcmi_json *arr, size_t i);
size_t wcmi_json_len(const wcmi_json *v); /* elements of an array/object, else 0 */
const char *wcmi_json_type_name(wcmi_json_type t);

/* Typed reads of obj[key], with errors "<what>: key '<key>': expected a number, got a string" or
 * "<what>: missing key '<key>'". `what` names the source. */
int wcmi_json_get_number(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key, double *out);
int wcmi_json_get_int(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key, int64_t *out);
int wcmi_json_get_string(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key,
                         const char **out);
int wcmi_json_get_bool(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key, int *out);
/* Writes a parsed value back out (for echoing configs). */
void wcmi_jsonw_value(wcmi_jsonw *w, const wcmi_json *v);

/* ================================ safetensors =============================================== */
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

/* ================================ NumPy .npy ================================================ */
/* Format version 1.0, little-endian, C order; header padded with spaces and ended by '\n' so that
 * magic + header is a multiple of 64 bytes. Written atomically. Supported dtypes: F32 ('<f4'),
 * I32 ('<i4'), I64 ('<i8'), U8 ('|u1'), F64 ('<f8'). */
int wcmi_npy_write(wcmi_ctx *ctx, const char *path, wcmi_dtype dtype, const wcmi_shape *shape, const void *data);
int wcmi_npy_write_f32_2d(wcmi_ctx *ctx, const char *path, const float *data, int64_t rows, int64_t cols);
int wcmi_npy_write_i32_1d(wcmi_ctx *ctx, const char *path, const int32_t *data, int64_t n);

typedef struct wcmi_npy {
  wcmi_dtype dtype;
  wcmi_shape shape;
  int64_t numel;
  void *data; /* wcmi_alloc'd, 64-byte aligned */
} wcmi_npy;
/* Reads versions 1.0 / 2.0 / 3.0 with one of the dtypes above, C order, at most 4 dims. */
int wcmi_npy_read(wcmi_ctx *ctx, const char *path, wcmi_npy *out);
void wcmi_npy_free(wcmi_npy *a);

#ifdef __cplusplus
}
#endif
#endif
