/* JSON: a streaming writer, and a reader that parses with jansson and hands callers a plain DOM.
 * The reader is used on hostile input (safetensors headers): jansson never reads past len, and the
 * shim limits nesting depth and reports every error as one line with the byte offset.
 * The writer stays hand-written: it streams (metrics.jsonl, large headers), keeps the exact number
 * formatting every run directory and test was written with (%.9g, no "1.0" for whole reals), and
 * makes misuse a sticky error; jansson's dump would need a whole tree built first. */
#include "wcmi/json.h"
#include "wcmi/atomic.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ================================ writer ==================================================== */

static void jw_error(wcmi_jsonw *w, int code, const char *msg) {
  if (w->error) return;
  w->error = code;
  snprintf(w->errmsg, sizeof w->errmsg, "%s", msg);
}

static void jw_put(wcmi_jsonw *w, const char *s, size_t n) {
  if (w->error || n == 0) return;
  if (w->f) {
    if (fwrite(s, 1, n, w->f) != n) jw_error(w, WCMI_EIO, "write failed");
    return;
  }
  if (w->len + n + 1 > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n + 1) {
      if (cap > SIZE_MAX / 2) {
        jw_error(w, WCMI_ENOMEM, "buffer too large");
        return;
      }
      cap *= 2;
    }
    char *nb = wcmi_alloc(NULL, cap, 1);
    if (!nb) {
      jw_error(w, WCMI_ENOMEM, "out of memory");
      return;
    }
    if (w->buf) memcpy(nb, w->buf, w->len);
    wcmi_free(w->buf);
    w->buf = nb;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, s, n);
  w->len += n;
  w->buf[w->len] = '\0';
}

static void jw_puts(wcmi_jsonw *w, const char *s) { jw_put(w, s, strlen(s)); }

void wcmi_jsonw_init_buffer(wcmi_jsonw *w, int indent) {
  memset(w, 0, sizeof *w);
  w->indent = indent;
}

void wcmi_jsonw_init_file(wcmi_jsonw *w, FILE *f, int indent) {
  memset(w, 0, sizeof *w);
  w->f = f;
  w->indent = indent;
}

static void jw_newline(wcmi_jsonw *w) {
  if (w->indent <= 0) return;
  jw_puts(w, "\n");
  for (int i = 0; i < w->depth * w->indent; i++) jw_puts(w, " ");
}

/* Emits the separator that must precede a new element at the current level. */
static void jw_before_value(wcmi_jsonw *w, int is_key) {
  if (w->error) return;
  if (w->depth == 0) {
    if (is_key) {
      jw_error(w, WCMI_EINVAL, "key written outside an object");
      return;
    }
    if (w->count_nonzero[0]) jw_error(w, WCMI_EINVAL, "more than one top-level value");
    w->count_nonzero[0] = 1;
    return;
  }
  if (w->is_object[w->depth]) {
    if (is_key == w->expect_value) {
      jw_error(w, WCMI_EINVAL, is_key ? "key written where a value was expected" : "value in an object without a key");
      return;
    }
    if (!is_key) {
      w->expect_value = 0;
      return;
    }
  } else if (is_key) {
    jw_error(w, WCMI_EINVAL, "key written inside an array");
    return;
  }
  if (w->count_nonzero[w->depth]) jw_puts(w, w->indent > 0 ? "," : ", ");
  w->count_nonzero[w->depth] = 1;
  jw_newline(w);
}

static void jw_begin(wcmi_jsonw *w, int object) {
  jw_before_value(w, 0);
  if (w->error) return;
  if (w->depth >= WCMI_JSON_MAX_DEPTH) {
    jw_error(w, WCMI_EINVAL, "nesting deeper than WCMI_JSON_MAX_DEPTH");
    return;
  }
  jw_puts(w, object ? "{" : "[");
  w->depth++;
  w->is_object[w->depth] = (unsigned char)object;
  w->count_nonzero[w->depth] = 0;
}

static void jw_end(wcmi_jsonw *w, int object) {
  if (w->error) return;
  if (w->depth == 0 || w->is_object[w->depth] != object || w->expect_value) {
    jw_error(w, WCMI_EINVAL, object ? "unbalanced end_object" : "unbalanced end_array");
    return;
  }
  int had = w->count_nonzero[w->depth];
  w->depth--;
  if (had) jw_newline(w);
  jw_puts(w, object ? "}" : "]");
}

void wcmi_jsonw_begin_object(wcmi_jsonw *w) { jw_begin(w, 1); }
void wcmi_jsonw_end_object(wcmi_jsonw *w) { jw_end(w, 1); }
void wcmi_jsonw_begin_array(wcmi_jsonw *w) { jw_begin(w, 0); }
void wcmi_jsonw_end_array(wcmi_jsonw *w) { jw_end(w, 0); }

static void jw_quoted(wcmi_jsonw *w, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  jw_puts(w, "\"");
  size_t run = 0; /* bytes copied verbatim in one go */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[7];
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    default:
      if (c < 0x20 || c == 0x7f) {
        u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0', u[4] = hex[c >> 4], u[5] = hex[c & 15], u[6] = 0;
        esc = u;
      }
    }
    if (esc) {
      jw_put(w, s + i - run, run);
      run = 0;
      jw_puts(w, esc);
    } else {
      run++;
    }
  }
  jw_put(w, s + n - run, run);
  jw_puts(w, "\"");
}

void wcmi_jsonw_key(wcmi_jsonw *w, const char *key) {
  jw_before_value(w, 1);
  if (w->error) return;
  jw_quoted(w, key, strlen(key));
  jw_puts(w, ": ");
  w->expect_value = 1;
}

void wcmi_jsonw_string_n(wcmi_jsonw *w, const char *s, size_t n) {
  jw_before_value(w, 0);
  jw_quoted(w, s, n);
}

void wcmi_jsonw_string(wcmi_jsonw *w, const char *s) {
  if (!s) {
    wcmi_jsonw_null(w);
    return;
  }
  wcmi_jsonw_string_n(w, s, strlen(s));
}

void wcmi_jsonw_int(wcmi_jsonw *w, int64_t v) {
  char b[32];
  snprintf(b, sizeof b, "%lld", (long long)v);
  jw_before_value(w, 0);
  jw_puts(w, b);
}

void wcmi_jsonw_double(wcmi_jsonw *w, double v) {
  if (!isfinite(v)) {
    wcmi_jsonw_null(w);
    return;
  }
  char b[40];
  snprintf(b, sizeof b, "%.9g", v);
  jw_before_value(w, 0);
  jw_puts(w, b);
}

void wcmi_jsonw_bool(wcmi_jsonw *w, int v) {
  jw_before_value(w, 0);
  jw_puts(w, v ? "true" : "false");
}

void wcmi_jsonw_null(wcmi_jsonw *w) {
  jw_before_value(w, 0);
  jw_puts(w, "null");
}

void wcmi_jsonw_raw(wcmi_jsonw *w, const char *json) {
  jw_before_value(w, 0);
  jw_puts(w, json);
}

void wcmi_jsonw_kv_string(wcmi_jsonw *w, const char *key, const char *s) {
  wcmi_jsonw_key(w, key);
  wcmi_jsonw_string(w, s);
}
void wcmi_jsonw_kv_int(wcmi_jsonw *w, const char *key, int64_t v) {
  wcmi_jsonw_key(w, key);
  wcmi_jsonw_int(w, v);
}
void wcmi_jsonw_kv_double(wcmi_jsonw *w, const char *key, double v) {
  wcmi_jsonw_key(w, key);
  wcmi_jsonw_double(w, v);
}
void wcmi_jsonw_kv_bool(wcmi_jsonw *w, const char *key, int v) {
  wcmi_jsonw_key(w, key);
  wcmi_jsonw_bool(w, v);
}

int wcmi_jsonw_finish(wcmi_ctx *ctx, wcmi_jsonw *w) {
  if (!w->error && (w->depth != 0 || !w->count_nonzero[0])) jw_error(w, WCMI_EINVAL, "document is incomplete");
  if (!w->error && w->f && fflush(w->f) != 0) jw_error(w, WCMI_EIO, "flush failed");
  if (w->error) return wcmi_fail(ctx, w->error, "json writer: %s", w->errmsg);
  return WCMI_OK;
}

const char *wcmi_jsonw_text(const wcmi_jsonw *w) { return w->buf ? w->buf : ""; }

void wcmi_jsonw_free(wcmi_jsonw *w) {
  wcmi_free(w->buf);
  w->buf = NULL;
  w->len = w->cap = 0;
}

void wcmi_jsonw_value(wcmi_jsonw *w, const wcmi_json *v) {
  if (!v) {
    wcmi_jsonw_null(w);
    return;
  }
  switch (v->type) {
  case WCMI_JSON_NULL: wcmi_jsonw_null(w); break;
  case WCMI_JSON_BOOL: wcmi_jsonw_bool(w, v->boolean); break;
  case WCMI_JSON_NUMBER:
    if (v->is_integer)
      wcmi_jsonw_int(w, v->integer);
    else {
      /* %.17g keeps a parsed double exact when it is echoed. */
      char b[40];
      snprintf(b, sizeof b, "%.17g", v->number);
      wcmi_jsonw_raw(w, isfinite(v->number) ? b : "null");
    }
    break;
  case WCMI_JSON_STRING: wcmi_jsonw_string_n(w, v->str, v->str_len); break;
  case WCMI_JSON_ARRAY:
    wcmi_jsonw_begin_array(w);
    for (size_t i = 0; i < v->n; i++) wcmi_jsonw_value(w, &v->items[i]);
    wcmi_jsonw_end_array(w);
    break;
  case WCMI_JSON_OBJECT:
    wcmi_jsonw_begin_object(w);
    for (size_t i = 0; i < v->n; i++) {
      jw_before_value(w, 1);
      if (w->error) return;
      jw_quoted(w, v->keys[i], v->key_lens[i]);
      jw_puts(w, ": ");
      w->expect_value = 1;
      wcmi_jsonw_value(w, &v->items[i]);
    }
    wcmi_jsonw_end_object(w);
    break;
  }
}

/* ================================ reader (jansson behind a DOM shim) ======================== */
/* jansson (Debian's libjansson, fuzzed upstream) does the parsing: strict RFC 8259, UTF-8
 * validated, \u escapes and surrogate pairs decoded, duplicate keys and trailing garbage refused.
 * Its tree is then copied into wcmi_json so that callers keep one plain, typed DOM (and wcmi's
 * allocator) whatever the parser underneath. What jansson refuses that the format allows: NUL in
 * object keys, integers outside int64 and reals that overflow a double (1e400); wcmi never writes
 * those and a hostile file that holds them gets a one-line error like any other. */

/* Flags: any top-level value (jsonl lines and tests parse scalars); NUL allowed inside string
 * values (str_len keeps it); a repeated key is an error, not "last one wins". */
#define WCMI_JANSSON_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

typedef struct converter {
  wcmi_ctx *ctx;
  const char *what;
  int failed;
} converter;

static int conv_oom(converter *c) {
  if (!c->failed) c->failed = wcmi_fail(c->ctx, WCMI_ENOMEM, "%s: out of memory while reading JSON", c->what);
  return c->failed;
}

/* A NUL-terminated wcmi_alloc'd copy of s[0..n). */
static char *conv_strdup(converter *c, const char *s, size_t n) {
  char *d = wcmi_alloc(c->ctx, n + 1, 1);
  if (!d) {
    conv_oom(c);
    return NULL;
  }
  if (n) memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static int convert(converter *c, json_t *j, wcmi_json *v, int depth);

static int convert_array(converter *c, json_t *j, wcmi_json *v, int depth) {
  v->type = WCMI_JSON_ARRAY;
  size_t n = json_array_size(j);
  if (n == 0) return WCMI_OK;
  v->items = wcmi_calloc(c->ctx, n, sizeof *v->items);
  if (!v->items) return conv_oom(c);
  for (size_t i = 0; i < n; i++) {
    v->n = i + 1; /* counted first: wcmi_json_free releases a half-filled slot */
    if (convert(c, json_array_get(j, i), &v->items[i], depth)) return c->failed;
  }
  return WCMI_OK;
}

static int convert_object(converter *c, json_t *j, wcmi_json *v, int depth) {
  v->type = WCMI_JSON_OBJECT;
  size_t n = json_object_size(j);
  if (n == 0) return WCMI_OK;
  v->items = wcmi_calloc(c->ctx, n, sizeof *v->items);
  v->keys = wcmi_calloc(c->ctx, n, sizeof *v->keys);
  v->key_lens = wcmi_calloc(c->ctx, n, sizeof *v->key_lens);
  if (!v->items || !v->keys || !v->key_lens) return conv_oom(c);
  /* jansson iterates in insertion order, so document order is kept. */
  size_t i = 0;
  for (void *it = json_object_iter(j); it && i < n; it = json_object_iter_next(j, it), i++) {
    size_t klen = json_object_iter_key_len(it);
    v->n = i + 1;
    v->keys[i] = conv_strdup(c, json_object_iter_key(it), klen);
    if (!v->keys[i]) return c->failed;
    v->key_lens[i] = klen;
    if (convert(c, json_object_iter_value(it), &v->items[i], depth)) return c->failed;
  }
  return WCMI_OK;
}

/* Copies jansson's value j into v; depth counts the containers around j. */
static int convert(converter *c, json_t *j, wcmi_json *v, int depth) {
  switch (json_typeof(j)) {
  case JSON_OBJECT:
  case JSON_ARRAY:
    if (depth + 1 > WCMI_JSON_MAX_DEPTH) {
      c->failed = wcmi_fail(c->ctx, WCMI_EFORMAT, "%s: nesting deeper than %d", c->what, WCMI_JSON_MAX_DEPTH);
      return c->failed;
    }
    return json_is_object(j) ? convert_object(c, j, v, depth + 1) : convert_array(c, j, v, depth + 1);
  case JSON_STRING:
    v->type = WCMI_JSON_STRING;
    v->str_len = json_string_length(j);
    v->str = conv_strdup(c, json_string_value(j), v->str_len);
    return v->str ? WCMI_OK : c->failed;
  case JSON_INTEGER:
    v->type = WCMI_JSON_NUMBER;
    v->is_integer = 1;
    v->integer = (int64_t)json_integer_value(j);
    v->number = (double)v->integer;
    return WCMI_OK;
  case JSON_REAL:
    v->type = WCMI_JSON_NUMBER;
    v->number = json_real_value(j);
    return WCMI_OK;
  case JSON_TRUE:
  case JSON_FALSE:
    v->type = WCMI_JSON_BOOL;
    v->boolean = json_is_true(j);
    return WCMI_OK;
  case JSON_NULL: v->type = WCMI_JSON_NULL; return WCMI_OK;
  }
  return WCMI_OK;
}

/* jansson's error as one wcmi line: "<what>: byte <offset>: <problem>". */
static int parse_failure(wcmi_ctx *ctx, const char *what, const json_error_t *err) {
  switch (json_error_code(err)) {
  case json_error_out_of_memory: return wcmi_fail(ctx, WCMI_ENOMEM, "%s: out of memory while parsing JSON", what);
  case json_error_stack_overflow:
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: byte %d: nesting deeper than %d", what, err->position,
                     WCMI_JSON_MAX_DEPTH);
  case json_error_invalid_utf8:
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: byte %d: invalid UTF-8: %s", what, err->position, err->text);
  default: return wcmi_fail(ctx, WCMI_EFORMAT, "%s: byte %d: %s", what, err->position, err->text);
  }
}

int wcmi_json_parse(wcmi_ctx *ctx, const char *what, const char *text, size_t len, wcmi_json **out) {
  *out = NULL;
  what = what ? what : "json";
  json_error_t err;
  json_t *j = json_loadb(text ? text : "", text ? len : 0, WCMI_JANSSON_FLAGS, &err);
  if (!j) return parse_failure(ctx, what, &err);
  converter c = {ctx, what, 0};
  wcmi_json *v = wcmi_calloc(ctx, 1, sizeof *v);
  if (!v) conv_oom(&c);
  else convert(&c, j, v, 0);
  json_decref(j);
  if (c.failed) {
    wcmi_json_free(v);
    return c.failed;
  }
  *out = v;
  return WCMI_OK;
}

static void free_children(wcmi_json *v) {
  if (v->type == WCMI_JSON_STRING) wcmi_free(v->str);
  if (v->type == WCMI_JSON_ARRAY || v->type == WCMI_JSON_OBJECT) {
    for (size_t i = 0; i < v->n; i++) {
      free_children(&v->items[i]);
      if (v->keys) wcmi_free(v->keys[i]);
    }
    wcmi_free(v->items);
    wcmi_free(v->keys);
    wcmi_free(v->key_lens);
  }
}

void wcmi_json_free(wcmi_json *v) {
  if (!v) return;
  free_children(v);
  wcmi_free(v);
}

#define DEFAULT_MAX_JSON_FILE ((size_t)256 << 20)

int wcmi_json_parse_file(wcmi_ctx *ctx, const char *path, size_t max_bytes, wcmi_json **out) {
  char *text;
  size_t n;
  *out = NULL;
  int rc = wcmi_read_file(ctx, path, max_bytes ? max_bytes : DEFAULT_MAX_JSON_FILE, &text, &n);
  if (rc) return rc;
  rc = wcmi_json_parse(ctx, path, text, n, out);
  wcmi_free(text);
  return rc;
}

/* Appends *one's contents to arr (moving its children); the shell *one is freed. */
static int append_moved(wcmi_ctx *ctx, const char *path, wcmi_json *arr, size_t *cap, wcmi_json *one) {
  if (arr->n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 16;
    wcmi_json *items = wcmi_alloc(ctx, ncap, sizeof *items);
    if (!items) {
      wcmi_json_free(one);
      return wcmi_fail(ctx, WCMI_ENOMEM, "%s: out of memory", path);
    }
    if (arr->items) memcpy(items, arr->items, arr->n * sizeof *items);
    wcmi_free(arr->items);
    arr->items = items;
    *cap = ncap;
  }
  arr->items[arr->n++] = *one;
  wcmi_free(one);
  return WCMI_OK;
}

int wcmi_json_parse_lines_file(wcmi_ctx *ctx, const char *path, size_t max_bytes, wcmi_json **out) {
  char *text;
  size_t n;
  *out = NULL;
  int rc = wcmi_read_file(ctx, path, max_bytes ? max_bytes : DEFAULT_MAX_JSON_FILE, &text, &n);
  if (rc) return rc;
  wcmi_json *arr = wcmi_calloc(ctx, 1, sizeof *arr);
  if (!arr) {
    wcmi_free(text);
    return WCMI_ENOMEM;
  }
  arr->type = WCMI_JSON_ARRAY;
  size_t cap = 0, line_no = 0;
  for (size_t pos = 0; pos < n && !rc;) {
    size_t end = pos;
    while (end < n && text[end] != '\n') end++;
    line_no++;
    size_t k = pos;
    while (k < end && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r')) k++;
    if (k < end) {
      char what[600];
      snprintf(what, sizeof what, "%s: line %zu", path, line_no);
      wcmi_json *one;
      rc = wcmi_json_parse(ctx, what, text + pos, end - pos, &one);
      if (!rc) rc = append_moved(ctx, path, arr, &cap, one);
    }
    pos = end + 1;
  }
  wcmi_free(text);
  if (rc) {
    wcmi_json_free(arr);
    return rc;
  }
  *out = arr;
  return WCMI_OK;
}

/* ================================ accessors ================================================= */

const wcmi_json *wcmi_json_get(const wcmi_json *obj, const char *key) {
  if (!obj || obj->type != WCMI_JSON_OBJECT || !key) return NULL;
  size_t kl = strlen(key);
  for (size_t i = 0; i < obj->n; i++)
    if (obj->key_lens[i] == kl && memcmp(obj->keys[i], key, kl) == 0) return &obj->items[i];
  return NULL;
}

const wcmi_json *wcmi_json_at(const wcmi_json *arr, size_t i) {
  if (!arr || arr->type != WCMI_JSON_ARRAY || i >= arr->n) return NULL;
  return &arr->items[i];
}

size_t wcmi_json_len(const wcmi_json *v) {
  return v && (v->type == WCMI_JSON_ARRAY || v->type == WCMI_JSON_OBJECT) ? v->n : 0;
}

const char *wcmi_json_type_name(wcmi_json_type t) {
  switch (t) {
  case WCMI_JSON_NULL: return "null";
  case WCMI_JSON_BOOL: return "a boolean";
  case WCMI_JSON_NUMBER: return "a number";
  case WCMI_JSON_STRING: return "a string";
  case WCMI_JSON_ARRAY: return "an array";
  case WCMI_JSON_OBJECT: return "an object";
  }
  return "?";
}

static int get_typed(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key, wcmi_json_type t,
                     const wcmi_json **out) {
  what = what ? what : "json";
  if (!obj || obj->type != WCMI_JSON_OBJECT)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: expected an object holding key '%s'", what, key);
  const wcmi_json *v = wcmi_json_get(obj, key);
  if (!v) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: missing key '%s'", what, key);
  if (v->type != t)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: key '%s': expected %s, got %s", what, key, wcmi_json_type_name(t),
                     wcmi_json_type_name(v->type));
  *out = v;
  return WCMI_OK;
}

int wcmi_json_get_number(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key, double *out) {
  const wcmi_json *v = NULL;
  int rc = get_typed(ctx, what, obj, key, WCMI_JSON_NUMBER, &v);
  if (!rc) *out = v->number;
  return rc;
}

int wcmi_json_get_int(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key, int64_t *out) {
  const wcmi_json *v = NULL;
  int rc = get_typed(ctx, what, obj, key, WCMI_JSON_NUMBER, &v);
  if (rc) return rc;
  if (!v->is_integer)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: key '%s': expected an integer, got %.17g", what ? what : "json",
                     key, v->number);
  *out = v->integer;
  return WCMI_OK;
}

int wcmi_json_get_string(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key,
                         const char **out) {
  const wcmi_json *v = NULL;
  int rc = get_typed(ctx, what, obj, key, WCMI_JSON_STRING, &v);
  if (!rc) *out = v->str;
  return rc;
}

int wcmi_json_get_bool(wcmi_ctx *ctx, const char *what, const wcmi_json *obj, const char *key, int *out) {
  const wcmi_json *v = NULL;
  int rc = get_typed(ctx, what, obj, key, WCMI_JSON_BOOL, &v);
  if (!rc) *out = v->boolean;
  return rc;
}
