/* wcmi JSON: a streaming writer (sticky errors, exact number formatting) and a DOM reader that
 * parses with jansson and hands back a plain typed tree with typed getters whose errors name the
 * source and the key. Used on hostile input (safetensors headers, run directories). */
#ifndef WCMI_JSON_H
#define WCMI_JSON_H

#include "wcmi/core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/* ================================ JSON DOM reader (RFC 8259, parsed by jansson) ============= */
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

/* Parses text[0..len) as exactly one JSON value (surrounding whitespace allowed) with jansson and
 * copies it into a wcmi_json tree. Strings are validated as UTF-8; \u escapes (surrogate pairs
 * included) are decoded to UTF-8 (a NUL is kept in a string value, see str_len); lone surrogates,
 * control characters, duplicate object keys, NUL in a key, integers outside int64, reals beyond
 * double range (1e400), nesting deeper than WCMI_JSON_MAX_DEPTH and trailing garbage are errors
 * "<what>: byte <offset>: <problem>" (one line). `what` names the source (a file name) for
 * messages. *out is freed with wcmi_json_free. */
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

#ifdef __cplusplus
}
#endif
#endif
