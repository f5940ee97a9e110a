/* JSON: writer escaping and number formatting, strict parsing (RFC 8259, jansson underneath) with
 * byte offsets in errors, surrogate pairs, depth limit, duplicate keys, out-of-range numbers, typed
 * accessors, and writer -> parser round trips. */
#include "harness.h"
#include "wcmi/io.h"

#include <string.h>

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static void test_writer_escapes_and_formats_numbers(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "s", "q\"b\\n\n\t\x01\x7f/\xc3\xa9");
  wcmi_jsonw_kv_int(&w, "i", -9000000000LL);
  wcmi_jsonw_kv_double(&w, "d", 0.1f);
  wcmi_jsonw_kv_double(&w, "nan", NAN);
  wcmi_jsonw_kv_double(&w, "inf", -INFINITY);
  wcmi_jsonw_kv_bool(&w, "t", 1);
  wcmi_jsonw_key(&w, "a");
  wcmi_jsonw_begin_array(&w);
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_key(&w, "o");
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_key(&w, "n");
  wcmi_jsonw_null(&w);
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_end_object(&w);
  CHECK_OK(&ctx, wcmi_jsonw_finish(&ctx, &w));
  const char *want = "{\"s\": \"q\\\"b\\\\n\\n\\t\\u0001\\u007f/\xc3\xa9\", \"i\": -9000000000, "
                     "\"d\": 0.100000001, \"nan\": null, \"inf\": null, \"t\": true, \"a\": [], \"o\": {\"n\": null}}";
  CHECK_MSG(strcmp(wcmi_jsonw_text(&w), want) == 0, "got  %s\nwant %s", wcmi_jsonw_text(&w), want);
  CHECK(strchr(wcmi_jsonw_text(&w), '\n') == NULL); /* one line, for .jsonl */
  wcmi_jsonw_free(&w);
}

static void test_writer_reports_misuse(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_int(&w, 3); /* value without a key */
  wcmi_jsonw_end_object(&w);
  CHECK(wcmi_jsonw_finish(&ctx, &w) == WCMI_EINVAL);
  CHECK(contains(ctx.msg, "without a key"));
  wcmi_jsonw_free(&w);
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_begin_array(&w);
  CHECK(wcmi_jsonw_finish(&ctx, &w) == WCMI_EINVAL);
  CHECK(contains(ctx.msg, "incomplete"));
  wcmi_jsonw_free(&w);
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_begin_array(&w);
  wcmi_jsonw_end_object(&w);
  CHECK(wcmi_jsonw_finish(&ctx, &w) == WCMI_EINVAL);
  wcmi_jsonw_free(&w);
}

static void test_pretty_writer_output_parses_back(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_double(&w, "x", 1.0 / 3.0);
  wcmi_jsonw_key(&w, "list");
  wcmi_jsonw_begin_array(&w);
  for (int i = 0; i < 3; i++) wcmi_jsonw_int(&w, i);
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_end_object(&w);
  CHECK_OK(&ctx, wcmi_jsonw_finish(&ctx, &w));
  CHECK(contains(wcmi_jsonw_text(&w), "\n  \"x\": 0.333333333,\n  \"list\": [\n    0,"));
  wcmi_json *v = NULL;
  CHECK_OK(&ctx, wcmi_json_parse(&ctx, "pretty", wcmi_jsonw_text(&w), strlen(wcmi_jsonw_text(&w)), &v));
  CHECK(wcmi_json_len(wcmi_json_get(v, "list")) == 3);
  CHECK(wcmi_json_at(wcmi_json_get(v, "list"), 2)->integer == 2);
  wcmi_json_free(v);
  wcmi_jsonw_free(&w);
}

static void test_parser_reads_all_value_kinds(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const char *text = " {\"a\": [1, -2.5e3, 0, -0, 1E-2, 9223372036854775807, -9223372036854775808, 1e300],"
                     " \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\/\", \"t\": true, \"f\": false, \"n\": null,"
                     " \"o\": {}, \"e\": []} \n";
  wcmi_json *v = NULL;
  CHECK_OK(&ctx, wcmi_json_parse(&ctx, "t.json", text, strlen(text), &v));
  if (!v) return;
  const wcmi_json *a = wcmi_json_get(v, "a");
  CHECK(wcmi_json_len(a) == 8);
  CHECK(wcmi_json_at(a, 0)->is_integer && wcmi_json_at(a, 0)->integer == 1);
  CHECK(!wcmi_json_at(a, 1)->is_integer && wcmi_json_at(a, 1)->number == -2500.0);
  CHECK(wcmi_json_at(a, 4)->number == 0.01);
  CHECK(wcmi_json_at(a, 5)->integer == INT64_MAX);
  CHECK(wcmi_json_at(a, 6)->integer == INT64_MIN);
  CHECK(!wcmi_json_at(a, 7)->is_integer && wcmi_json_at(a, 7)->number == 1e300);
  /* 2^53 + 1 is not a double: an integer keeps it exact. */
  wcmi_json *big = NULL;
  CHECK_OK(&ctx, wcmi_json_parse(&ctx, "big", "9007199254740993", 16, &big));
  CHECK(big && big->is_integer && big->integer == 9007199254740993LL);
  wcmi_json_free(big);
  CHECK(wcmi_json_at(a, 8) == NULL);
  const char *s = NULL;
  CHECK_OK(&ctx, wcmi_json_get_string(&ctx, "t.json", v, "s", &s));
  /* U+00E9 is C3 A9; U+1F600 (surrogate pair D83D DE00) is F0 9F 98 80. */
  CHECK(s && strcmp(s, "x\xc3\xa9\xf0\x9f\x98\x80\n/") == 0);
  int b = 0;
  CHECK_OK(&ctx, wcmi_json_get_bool(&ctx, "t.json", v, "t", &b));
  CHECK(b == 1);
  CHECK(wcmi_json_get(v, "n")->type == WCMI_JSON_NULL);
  CHECK(wcmi_json_get(v, "o")->type == WCMI_JSON_OBJECT && wcmi_json_len(wcmi_json_get(v, "o")) == 0);
  double d;
  CHECK(wcmi_json_get_number(&ctx, "t.json", v, "s", &d) == WCMI_EFORMAT);
  CHECK_MSG(contains(ctx.msg, "t.json: key 's': expected a number, got a string"), "%s", ctx.msg);
  CHECK(wcmi_json_get_number(&ctx, "t.json", v, "zz", &d) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "missing key 'zz'"));
  int64_t i64;
  CHECK(wcmi_json_get_int(&ctx, "t.json", wcmi_json_get(v, "o"), "x", &i64) == WCMI_EFORMAT);
  wcmi_json_free(v);
}

static void expect_parse_error(const char *text, const char *fragment) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_json *v = NULL;
  int rc = wcmi_json_parse(&ctx, "bad.json", text, strlen(text), &v);
  CHECK_MSG(rc == WCMI_EFORMAT && v == NULL, "'%s' accepted", text);
  CHECK_MSG(contains(ctx.msg, fragment), "'%s': message '%s' lacks '%s'", text, ctx.msg, fragment);
  wcmi_json_free(v);
}

static void test_parser_rejects_invalid_json_with_offsets(void) {
  /* jansson reports the byte where it detected the problem (the end of the offending token). */
  expect_parse_error("", "bad.json: byte 0: unexpected token near end of file");
  expect_parse_error("[1, 2", "byte 5: ']' expected near end of file");
  expect_parse_error("[1,]", "byte 4: unexpected token near ']'");
  expect_parse_error("{\"a\" 1}", "byte 6: ':' expected near '1'");
  expect_parse_error("{a: 1}", "byte 2: string or '}' expected near 'a'");
  expect_parse_error("01", "byte 1: invalid token near '0'"); /* leading zero */
  expect_parse_error("1.", "invalid token near '1.'");
  expect_parse_error("-", "invalid token near '-'");
  expect_parse_error("1e", "invalid token near '1e'");
  expect_parse_error("tru", "invalid token near 'tru'");
  expect_parse_error("\"abc", "premature end of input");
  expect_parse_error("\"a\tb\"", "control character 0x9");
  expect_parse_error("\"\\x\"", "invalid escape");
  expect_parse_error("\"\\u12g4\"", "invalid escape"); /* bad hex digit */
  expect_parse_error("\"\\ud83d\"", "invalid Unicode '\\uD83D'"); /* high surrogate alone */
  expect_parse_error("\"\\ud83d\\u0041\"", "invalid Unicode '\\uD83D\\u0041'");
  expect_parse_error("\"\\ude00\"", "invalid Unicode '\\uDE00'"); /* lone low surrogate */
  expect_parse_error("\"\xc3\"", "invalid UTF-8");
  expect_parse_error("\"\xc0\xaf\"", "invalid UTF-8"); /* overlong '/' */
  expect_parse_error("\"\xed\xa0\x80\"", "invalid UTF-8"); /* encoded surrogate */
  expect_parse_error("{\"k\": 1, \"k\": 2}", "byte 12: duplicate object key near '\"k\"'");
  expect_parse_error("1 2", "byte 3: end of file expected near '2'");
  expect_parse_error("NaN", "invalid token");
  /* What RFC 8259 allows but a double / int64 cannot hold: refused, never inf or a rounded id. */
  expect_parse_error("[1e400]", "real number overflow");
  expect_parse_error("99999999999999999999", "too big integer");
  expect_parse_error("-9223372036854775809", "too big negative integer");
  expect_parse_error("{\"a\\u0000b\": 1}", "NUL byte in object key");
}

static void test_parser_depth_limit(void) {
  char deep[WCMI_JSON_MAX_DEPTH * 2 + 8];
  int d = WCMI_JSON_MAX_DEPTH;
  for (int i = 0; i < d; i++) deep[i] = '[', deep[d + i] = ']';
  deep[2 * d] = '\0';
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_json *v = NULL;
  CHECK_OK(&ctx, wcmi_json_parse(&ctx, "deep", deep, strlen(deep), &v)); /* exactly at the limit */
  wcmi_json_free(v);
  memmove(deep + 1, deep, strlen(deep) + 1);
  deep[0] = '[';
  strcat(deep, "]");
  CHECK(wcmi_json_parse(&ctx, "deep", deep, strlen(deep), &v) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "nesting deeper than"));
  /* A very deep hostile input fails at the limit instead of exhausting the stack. */
  size_t n = 1000000;
  char *huge = malloc(n + 1);
  memset(huge, '[', n);
  huge[n] = '\0';
  CHECK(wcmi_json_parse(&ctx, "huge", huge, n, &v) == WCMI_EFORMAT);
  free(huge);
}

static void test_parser_never_reads_past_len(void) {
  /* Every prefix of a valid document is either valid or refused; ASan catches any overread since
   * each prefix lives in its own exactly-sized heap block. */
  const char *text = "{\"a\": [1.5e-3, \"\\ud83d\\ude00\", true, null], \"b\": {\"c\": false}}";
  size_t n = strlen(text);
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  int accepted = 0;
  for (size_t len = 0; len <= n; len++) {
    char *p = malloc(len ? len : 1);
    memcpy(p, text, len);
    wcmi_json *v = NULL;
    if (wcmi_json_parse(&ctx, "prefix", p, len, &v) == WCMI_OK) accepted++;
    wcmi_json_free(v);
    free(p);
  }
  CHECK(accepted == 1); /* only the whole document */
}

static void test_value_roundtrip_through_writer(void) {
  const char *text = "{\"x\": [1, 2.5, \"a\\u0000b\", {\"y\": null}], \"z\": -7}";
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_json *v = NULL, *v2 = NULL;
  CHECK_OK(&ctx, wcmi_json_parse(&ctx, "rt", text, strlen(text), &v));
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_value(&w, v);
  CHECK_OK(&ctx, wcmi_jsonw_finish(&ctx, &w));
  CHECK_MSG(strcmp(wcmi_jsonw_text(&w), text) == 0, "%s", wcmi_jsonw_text(&w));
  CHECK_OK(&ctx, wcmi_json_parse(&ctx, "rt2", wcmi_jsonw_text(&w), w.len, &v2));
  const wcmi_json *s = wcmi_json_at(wcmi_json_get(v2, "x"), 2);
  CHECK(s && s->str_len == 3 && s->str[1] == '\0');
  wcmi_json_free(v);
  wcmi_json_free(v2);
  wcmi_jsonw_free(&w);
}

static void test_jsonl_file_and_errors_name_the_line(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char path[600];
  snprintf(path, sizeof path, "%s/m.jsonl", wt_tmpdir());
  const char *good = "{\"epoch\": 1, \"loss\": 0.5}\n\n{\"epoch\": 2, \"loss\": 0.25}\n";
  CHECK_OK(&ctx, wcmi_atomic_write(&ctx, path, good, strlen(good)));
  wcmi_json *arr = NULL;
  CHECK_OK(&ctx, wcmi_json_parse_lines_file(&ctx, path, 0, &arr));
  CHECK(wcmi_json_len(arr) == 2);
  double loss = 0;
  CHECK_OK(&ctx, wcmi_json_get_number(&ctx, path, wcmi_json_at(arr, 1), "loss", &loss));
  CHECK(loss == 0.25);
  wcmi_json_free(arr);
  const char *bad = "{\"epoch\": 1}\n{\"epoch\": 2,}\n";
  CHECK_OK(&ctx, wcmi_atomic_write(&ctx, path, bad, strlen(bad)));
  CHECK(wcmi_json_parse_lines_file(&ctx, path, 0, &arr) == WCMI_EFORMAT);
  CHECK_MSG(contains(ctx.msg, "m.jsonl: line 2: byte 13"), "%s", ctx.msg);
  /* size limit */
  CHECK(wcmi_json_parse_file(&ctx, path, 4, &arr) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "more than the limit"));
}

int main(void) {
  RUN(test_writer_escapes_and_formats_numbers);
  RUN(test_writer_reports_misuse);
  RUN(test_pretty_writer_output_parses_back);
  RUN(test_parser_reads_all_value_kinds);
  RUN(test_parser_rejects_invalid_json_with_offsets);
  RUN(test_parser_depth_limit);
  RUN(test_parser_never_reads_past_len);
  RUN(test_value_roundtrip_through_writer);
  RUN(test_jsonl_file_and_errors_name_the_line);
  return wt_finish();
}
