/* JSON: a streaming writer and a strict RFC 8259 DOM parser.
 * The parser is used on hostile input (safetensors headers), so it never reads past len, limits
 * nesting depth, validates UTF-8 and reports the byte offset of every error. */
#include "wcmi/io.h"

#include <math.h>
#include <stdarg.h>
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

/* ================================ parser ==================================================== */

typedef struct parser {
  wcmi_ctx *ctx;
  const char *what;
  const unsigned char *s;
  size_t len, pos;
  int depth;
  int failed;
} parser;

static int perr(parser *p, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int perr(parser *p, size_t at, const char *fmt, ...) {
  if (p->failed) return p->failed;
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  p->failed = WCMI_EFORMAT;
  return wcmi_fail(p->ctx, WCMI_EFORMAT, "%s: byte %zu: %s", p->what, at, msg);
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static const char *describe_byte(parser *p, char *buf, size_t n) {
  if (p->pos >= p->len) return "end of input";
  unsigned char c = p->s[p->pos];
  if (c >= 0x21 && c < 0x7f)
    snprintf(buf, n, "'%c'", c);
  else
    snprintf(buf, n, "byte 0x%02x", c);
  return buf;
}

/* Growable byte buffer for decoded strings. */
typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf;

static int sbuf_put(parser *p, sbuf *b, const void *src, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    while (cap < b->len + n + 1) cap *= 2;
    char *nb = wcmi_alloc(p->ctx, cap, 1);
    if (!nb) return p->failed = WCMI_ENOMEM;
    if (b->p) memcpy(nb, b->p, b->len);
    wcmi_free(b->p);
    b->p = nb;
    b->cap = cap;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
  b->p[b->len] = '\0';
  return WCMI_OK;
}

static size_t utf8_encode(uint32_t cp, unsigned char out[4]) {
  if (cp < 0x80) {
    out[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | (cp >> 12));
    out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (unsigned char)(0xF0 | (cp >> 18));
  out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid (overlong, surrogate, > U+10FFFF). */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  uint32_t cp, min;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

static int hex4(parser *p, size_t at, uint32_t *out) {
  if (p->len - at < 4) return perr(p, at, "truncated \\u escape");
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = p->s[at + (size_t)i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return perr(p, at + (size_t)i, "bad hex digit in \\u escape");
    v = v * 16 + (uint32_t)d;
  }
  *out = v;
  return WCMI_OK;
}

/* Parses a string at p->pos (which is '"') into a fresh NUL-terminated buffer. */
static int parse_string(parser *p, char **out, size_t *out_len) {
  size_t start = p->pos;
  sbuf b = {0};
  p->pos++; /* opening quote */
  for (;;) {
    if (p->pos >= p->len) {
      wcmi_free(b.p);
      return perr(p, start, "unterminated string");
    }
    size_t run = p->pos; /* copy unescaped runs in one go */
    while (p->pos < p->len) {
      unsigned char c = p->s[p->pos];
      if (c == '"' || c == '\\' || c < 0x20) break;
      if (c < 0x80) {
        p->pos++;
        continue;
      }
      size_t n = utf8_valid_len(p->s + p->pos, p->len - p->pos);
      if (!n) {
        wcmi_free(b.p);
        return perr(p, p->pos, "invalid UTF-8 in string");
      }
      p->pos += n;
    }
    if (p->pos > run && sbuf_put(p, &b, p->s + run, p->pos - run)) break;
    if (p->pos >= p->len) continue;
    unsigned char c = p->s[p->pos];
    if (c == '"') {
      p->pos++;
      if (!b.p && sbuf_put(p, &b, "", 0)) break;
      *out = b.p;
      *out_len = b.len;
      return WCMI_OK;
    }
    if (c < 0x20) {
      perr(p, p->pos, "unescaped control character 0x%02x in string", c);
      break;
    }
    /* backslash escape */
    if (p->pos + 1 >= p->len) {
      perr(p, p->pos, "truncated escape");
      break;
    }
    unsigned char e = p->s[p->pos + 1];
    const char *simple = NULL;
    switch (e) {
    case '"': simple = "\""; break;
    case '\\': simple = "\\"; break;
    case '/': simple = "/"; break;
    case 'b': simple = "\b"; break;
    case 'f': simple = "\f"; break;
    case 'n': simple = "\n"; break;
    case 'r': simple = "\r"; break;
    case 't': simple = "\t"; break;
    case 'u': break;
    default: perr(p, p->pos, "invalid escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
    }
    if (p->failed) break;
    if (simple) {
      if (sbuf_put(p, &b, simple, 1)) break;
      p->pos += 2;
      continue;
    }
    uint32_t cp;
    size_t esc_at = p->pos;
    if (hex4(p, p->pos + 2, &cp)) break;
    p->pos += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
      perr(p, esc_at, "lone low surrogate \\u%04X", (unsigned)cp);
      break;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      /* UTF-16 surrogate pair: the low half must follow as another \u escape. */
      uint32_t lo;
      if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
        perr(p, esc_at, "high surrogate \\u%04X not followed by a low surrogate", (unsigned)cp);
        break;
      }
      if (hex4(p, p->pos + 2, &lo)) break;
      if (lo < 0xDC00 || lo > 0xDFFF) {
        perr(p, p->pos, "high surrogate \\u%04X followed by \\u%04X, not a low surrogate", (unsigned)cp,
             (unsigned)lo);
        break;
      }
      p->pos += 6;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    unsigned char u[4];
    if (sbuf_put(p, &b, u, utf8_encode(cp, u))) break;
  }
  wcmi_free(b.p);
  return p->failed ? p->failed : WCMI_EFORMAT;
}

static int parse_number(parser *p, wcmi_json *v) {
  size_t start = p->pos, i = p->pos;
  int neg = 0, integral = 1;
  if (i < p->len && p->s[i] == '-') neg = 1, i++;
  if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') return perr(p, start, "invalid number");
  if (p->s[i] == '0') {
    i++;
    if (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') return perr(p, start, "number with a leading zero");
  } else {
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  if (i < p->len && p->s[i] == '.') {
    integral = 0;
    i++;
    if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') return perr(p, i, "expected a digit after '.'");
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
    integral = 0;
    i++;
    if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
    if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') return perr(p, i, "expected a digit in exponent");
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  size_t n = i - start;
  v->type = WCMI_JSON_NUMBER;
  if (integral) {
    /* Exact int64 accumulation; on overflow the value is only a double. */
    uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int fits = 1;
    for (size_t k = start + (size_t)neg; k < i; k++) {
      uint64_t d = (uint64_t)(p->s[k] - '0');
      if (acc > (limit - d) / 10) {
        fits = 0;
        break;
      }
      acc = acc * 10 + d;
    }
    if (fits) {
      v->is_integer = 1;
      v->integer = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
    }
  }
  /* strtod needs a NUL-terminated copy; numbers longer than this are refused as absurd. */
  char tmp[512];
  if (n >= sizeof tmp) return perr(p, start, "number literal longer than %zu characters", sizeof tmp - 1);
  memcpy(tmp, p->s + start, n);
  tmp[n] = '\0';
  v->number = strtod(tmp, NULL);
  p->pos = i;
  return WCMI_OK;
}

static int parse_value(parser *p, wcmi_json *v);

/* Appends one zeroed slot to a growable array of elem-sized items. */
static void *grow(parser *p, void *arr, size_t n, size_t *cap, size_t elem) {
  if (n < *cap) return arr;
  size_t ncap = *cap ? *cap * 2 : 4;
  void *na = wcmi_alloc(p->ctx, ncap, elem);
  if (!na) {
    p->failed = WCMI_ENOMEM;
    return NULL;
  }
  if (arr) memcpy(na, arr, n * elem);
  wcmi_free(arr);
  *cap = ncap;
  return na;
}

static int cmp_key_idx(const void *a, const void *b, const wcmi_json *obj) {
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  size_t li = obj->key_lens[i], lj = obj->key_lens[j];
  int c = memcmp(obj->keys[i], obj->keys[j], li < lj ? li : lj);
  if (c) return c;
  return li < lj ? -1 : li > lj;
}

/* qsort has no user pointer in C11; a sort over indices with an explicit merge keeps it reentrant. */
static void merge_sort_idx(size_t *idx, size_t *tmp, size_t n, const wcmi_json *obj) {
  if (n < 2) return;
  size_t h = n / 2;
  merge_sort_idx(idx, tmp, h, obj);
  merge_sort_idx(idx + h, tmp, n - h, obj);
  size_t a = 0, b = h, k = 0;
  while (a < h && b < n) tmp[k++] = cmp_key_idx(&idx[a], &idx[b], obj) <= 0 ? idx[a++] : idx[b++];
  while (a < h) tmp[k++] = idx[a++];
  while (b < n) tmp[k++] = idx[b++];
  memcpy(idx, tmp, n * sizeof *idx);
}

static int check_duplicate_keys(parser *p, const wcmi_json *obj) {
  if (obj->n < 2) return WCMI_OK;
  size_t *idx = wcmi_alloc(p->ctx, obj->n, sizeof *idx), *tmp = wcmi_alloc(p->ctx, obj->n, sizeof *tmp);
  int rc = WCMI_OK;
  if (!idx || !tmp) {
    rc = p->failed = WCMI_ENOMEM;
  } else {
    for (size_t i = 0; i < obj->n; i++) idx[i] = i;
    merge_sort_idx(idx, tmp, obj->n, obj);
    for (size_t i = 1; i < obj->n; i++) {
      if (cmp_key_idx(&idx[i - 1], &idx[i], obj) == 0) {
        size_t later = idx[i] > idx[i - 1] ? idx[i] : idx[i - 1];
        rc = perr(p, obj->items[later].offset, "duplicate key '%.100s'", obj->keys[later]);
        break;
      }
    }
  }
  wcmi_free(idx);
  wcmi_free(tmp);
  return rc;
}

static int parse_container(parser *p, wcmi_json *v, int object) {
  size_t start = p->pos;
  if (++p->depth > WCMI_JSON_MAX_DEPTH) return perr(p, start, "nesting deeper than %d", WCMI_JSON_MAX_DEPTH);
  v->type = object ? WCMI_JSON_OBJECT : WCMI_JSON_ARRAY;
  p->pos++;
  size_t cap = 0, kcap = 0, lcap = 0;
  char close = object ? '}' : ']';
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    p->depth--;
    return WCMI_OK;
  }
  for (;;) {
    skip_ws(p);
    char db[24];
    if (object) {
      if (p->pos >= p->len || p->s[p->pos] != '"')
        return perr(p, p->pos, "expected a string key, found %s", describe_byte(p, db, sizeof db));
      char **keys = grow(p, v->keys, v->n, &kcap, sizeof *keys);
      if (!keys) return p->failed;
      v->keys = keys;
      size_t *lens = grow(p, v->key_lens, v->n, &lcap, sizeof *lens);
      if (!lens) return p->failed;
      v->key_lens = lens;
      /* Count the slot before parsing so wcmi_json_free releases it whatever happens next. */
      wcmi_json *items = grow(p, v->items, v->n, &cap, sizeof *items);
      if (!items) return p->failed;
      v->items = items;
      memset(&v->items[v->n], 0, sizeof *v->items);
      v->keys[v->n] = NULL;
      v->n++;
      if (parse_string(p, &v->keys[v->n - 1], &v->key_lens[v->n - 1])) return p->failed;
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':')
        return perr(p, p->pos, "expected ':' after object key, found %s", describe_byte(p, db, sizeof db));
      p->pos++;
    } else {
      wcmi_json *items = grow(p, v->items, v->n, &cap, sizeof *items);
      if (!items) return p->failed;
      v->items = items;
      memset(&v->items[v->n], 0, sizeof *v->items);
      v->n++;
    }
    if (parse_value(p, &v->items[v->n - 1])) return p->failed;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == close) {
      p->pos++;
      break;
    }
    return perr(p, p->pos, "expected ',' or '%c', found %s", close, describe_byte(p, db, sizeof db));
  }
  p->depth--;
  return object ? check_duplicate_keys(p, v) : WCMI_OK;
}

static int match_word(parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return 0;
  p->pos += n;
  return 1;
}

static int parse_value(parser *p, wcmi_json *v) {
  skip_ws(p);
  v->offset = p->pos;
  char db[24];
  if (p->pos >= p->len) return perr(p, p->pos, "expected a value, found end of input");
  unsigned char c = p->s[p->pos];
  switch (c) {
  case '{': return parse_container(p, v, 1);
  case '[': return parse_container(p, v, 0);
  case '"': v->type = WCMI_JSON_STRING; return parse_string(p, &v->str, &v->str_len);
  case 't':
    if (match_word(p, "true")) {
      v->type = WCMI_JSON_BOOL, v->boolean = 1;
      return WCMI_OK;
    }
    break;
  case 'f':
    if (match_word(p, "false")) {
      v->type = WCMI_JSON_BOOL, v->boolean = 0;
      return WCMI_OK;
    }
    break;
  case 'n':
    if (match_word(p, "null")) {
      v->type = WCMI_JSON_NULL;
      return WCMI_OK;
    }
    break;
  default:
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
  }
  return perr(p, p->pos, "expected a value, found %s", describe_byte(p, db, sizeof db));
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

int wcmi_json_parse(wcmi_ctx *ctx, const char *what, const char *text, size_t len, wcmi_json **out) {
  *out = NULL;
  parser p = {ctx, what ? what : "json", (const unsigned char *)text, len, 0, 0, 0};
  wcmi_json *v = wcmi_calloc(ctx, 1, sizeof *v);
  if (!v) return WCMI_ENOMEM;
  int rc = parse_value(&p, v);
  if (!rc) {
    skip_ws(&p);
    char db[24];
    if (p.pos < p.len) rc = perr(&p, p.pos, "unexpected %s after the value", describe_byte(&p, db, sizeof db));
  }
  if (rc) {
    if (rc == WCMI_ENOMEM && ctx) wcmi_fail(ctx, WCMI_ENOMEM, "%s: out of memory while parsing JSON", p.what);
    wcmi_json_free(v);
    return rc;
  }
  *out = v;
  return WCMI_OK;
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
  parser gp = {ctx, path, NULL, 0, 0, 0, 0};
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
      if (!rc) {
        wcmi_json *items = grow(&gp, arr->items, arr->n, &cap, sizeof *items);
        if (!items) {
          rc = wcmi_fail(ctx, WCMI_ENOMEM, "%s: out of memory", path);
          wcmi_json_free(one);
        } else {
          arr->items = items;
          arr->items[arr->n] = *one;
          arr->items[arr->n].offset += pos;
          arr->n++;
          wcmi_free(one); /* children moved into arr */
        }
      }
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
