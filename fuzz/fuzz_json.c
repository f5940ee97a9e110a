/* libFuzzer target for the JSON reader, through the public wcmi_json_* API only (the parser behind
 * it may change): parse, walk every value with the navigation and typed getters, write the tree
 * back with wcmi_jsonw_value and parse that text again, which must succeed. */
#include "wcmi/io.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <math.h>

/* Numbers beyond double's range read as +-Inf, which the writer cannot write back as a number. */
static int nonfinite;

static void walk(wcmi_ctx *ctx, const wcmi_json *v, int depth) {
  if (!v || depth > 200) return;
  if (v->type == WCMI_JSON_NUMBER && !isfinite(v->number)) nonfinite = 1;
  (void)wcmi_json_type_name(v->type);
  size_t n = wcmi_json_len(v);
  if (v->type == WCMI_JSON_OBJECT) {
    for (size_t i = 0; i < n; i++) {
      const char *key = v->keys[i];
      double d;
      int64_t k;
      const char *s;
      int b;
      /* Each getter either reads the value or fails with a message: both are fine. */
      (void)wcmi_json_get_number(ctx, "fuzz", v, key, &d);
      (void)wcmi_json_get_int(ctx, "fuzz", v, key, &k);
      (void)wcmi_json_get_string(ctx, "fuzz", v, key, &s);
      (void)wcmi_json_get_bool(ctx, "fuzz", v, key, &b);
      if (wcmi_json_get(v, key) == NULL && strlen(key) == v->key_lens[i]) __builtin_trap(); /* a key it holds */
      walk(ctx, &v->items[i], depth + 1);
    }
  } else if (v->type == WCMI_JSON_ARRAY) {
    for (size_t i = 0; i < n; i++) walk(ctx, wcmi_json_at(v, i), depth + 1);
    if (wcmi_json_at(v, n) != NULL) __builtin_trap();
  } else if (v->type == WCMI_JSON_STRING) {
    volatile size_t len = strlen(v->str);
    (void)len;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_json *j = NULL;
  if (wcmi_json_parse(&ctx, "fuzz", (const char *)data, size, &j) != WCMI_OK) {
    if (!ctx.msg[0] || strchr(ctx.msg, '\n')) __builtin_trap(); /* one line, never empty */
    return 0;
  }
  nonfinite = 0;
  walk(&ctx, j, 0);
  /* Round trip: what wcmi writes, wcmi reads. */
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_value(&w, j);
  if (wcmi_jsonw_finish(&ctx, &w) == WCMI_OK) {
    wcmi_json *again = NULL;
    const char *text = wcmi_jsonw_text(&w);
    if (wcmi_json_parse(&ctx, "round trip", text, strlen(text), &again) != WCMI_OK) __builtin_trap();
    if (!nonfinite && (again->type != j->type || wcmi_json_len(again) != wcmi_json_len(j))) __builtin_trap();
    wcmi_json_free(again);
  }
  wcmi_jsonw_free(&w);
  wcmi_json_free(j);
  return 0;
}
