/* safetensors: round trips (F32 + I64 + metadata, wcmi_param), a list of hostile files each refused
 * with the expected message, truncation at every byte, random bit flips, kill -9 during atomic
 * writes, and an independent pure-Python parse of a file wcmi wrote. */
#include "harness.h"
#include "wcmi/io.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *tmp_path(const char *name) {
  static char buf[8][600];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 600, "%s/%s", wt_tmpdir(), name);
  return p;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ---- round trips -------------------------------------------------------------------------- */

static void test_roundtrip_f32_i64_and_metadata(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  float w[2 * 3 * 2 * 2];
  for (int i = 0; i < 24; i++) w[i] = (float)i * 0.25f - 3.0f;
  float b[3] = {1.5f, -2.5f, 1e-30f};
  int64_t nbt = 123456789012LL;
  wcmi_st_tensor ts[] = {
      {"encoder.layer0.0.weight", WCMI_DT_F32, {4, {2, 3, 2, 2}}, w},
      {"encoder.layer0.1.num_batches_tracked", WCMI_DT_I64, {0, {0}}, &nbt},
      {"a.bias", WCMI_DT_F32, {1, {3}}, b},
  };
  wcmi_st_kv meta[] = {{"epoch", "7"}, {"architecture", "basic_encoder"}, {"quote", "a \"b\"\n\\c"}};
  const char *path = tmp_path("rt.safetensors");
  CHECK_OK(&ctx, wcmi_st_write(&ctx, path, ts, 3, meta, 3));

  /* Header length is a multiple of 8 and the data buffer is exactly the tensors' bytes. */
  struct stat sb;
  CHECK(stat(path, &sb) == 0);
  FILE *f = fopen(path, "rb");
  unsigned char len8[8] = {0};
  CHECK(f && fread(len8, 1, 8, f) == 8);
  if (f) fclose(f);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  CHECK(hlen % 8 == 0);
  CHECK((uint64_t)sb.st_size == 8 + hlen + sizeof w + sizeof b + sizeof nbt);

  wcmi_st *st = NULL;
  CHECK_OK(&ctx, wcmi_st_open(&ctx, path, &st));
  if (!st) return;
  CHECK(wcmi_st_count(st) == 3);
  /* name order */
  CHECK(!strcmp(wcmi_st_tensor_at(st, 0)->name, "a.bias"));
  CHECK(!strcmp(wcmi_st_tensor_at(st, 2)->name, "encoder.layer0.1.num_batches_tracked"));
  const wcmi_st_info *t = wcmi_st_find(st, "encoder.layer0.0.weight");
  CHECK(t && t->dtype == WCMI_DT_F32 && t->ndim == 4 && t->shape[0] == 2 && t->shape[3] == 2 && t->numel == 24);
  if (t) {
    float got[24];
    memcpy(got, t->data, sizeof got);
    CHECK(memcmp(got, w, sizeof w) == 0);
  }
  t = wcmi_st_find(st, "encoder.layer0.1.num_batches_tracked");
  CHECK(t && t->dtype == WCMI_DT_I64 && t->ndim == 0 && t->numel == 1);
  if (t) {
    int64_t v;
    memcpy(&v, t->data, 8);
    CHECK(v == nbt);
  }
  CHECK(wcmi_st_find(st, "nope") == NULL);
  CHECK(wcmi_st_meta_count(st) == 3);
  CHECK(!strcmp(wcmi_st_meta(st, "epoch"), "7"));
  CHECK(!strcmp(wcmi_st_meta(st, "architecture"), "basic_encoder"));
  CHECK(!strcmp(wcmi_st_meta(st, "quote"), "a \"b\"\n\\c"));
  CHECK(wcmi_st_meta(st, "missing") == NULL);
  CHECK(!strcmp(wcmi_st_meta_key(st, 0), "architecture")); /* key order */
  wcmi_st_close(st);
}

static void test_writer_rejects_duplicate_and_reserved_names(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  float x = 1;
  wcmi_st_tensor dup[] = {{"a", WCMI_DT_F32, {1, {1}}, &x}, {"a", WCMI_DT_F32, {1, {1}}, &x}};
  CHECK(wcmi_st_write(&ctx, tmp_path("dup.safetensors"), dup, 2, NULL, 0) == WCMI_EINVAL);
  CHECK(contains(ctx.msg, "'a' given twice"));
  wcmi_st_tensor res[] = {{"__metadata__", WCMI_DT_F32, {1, {1}}, &x}};
  CHECK(wcmi_st_write(&ctx, tmp_path("res.safetensors"), res, 1, NULL, 0) == WCMI_EINVAL);
  CHECK(access(tmp_path("dup.safetensors"), F_OK) != 0); /* nothing published */
}

static void test_params_roundtrip_and_load_checks(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  float w[6] = {1, 2, 3, 4, 5, 6}, rm[2] = {0.5f, -0.5f};
  int64_t nbt = 42;
  wcmi_param p[3];
  memset(p, 0, sizeof p);
  snprintf(p[0].name, WCMI_NAME_MAX, "encoder.layer5.weight");
  p[0].kind = WCMI_PARAM_TRAINABLE, p[0].shape = wcmi_shape2(2, 3), p[0].data = w;
  snprintf(p[1].name, WCMI_NAME_MAX, "encoder.layer4.1.running_mean");
  p[1].kind = WCMI_PARAM_BUFFER, p[1].shape = wcmi_shape1(2), p[1].data = rm;
  snprintf(p[2].name, WCMI_NAME_MAX, "encoder.layer4.1.num_batches_tracked");
  p[2].kind = WCMI_PARAM_COUNTER, p[2].shape.ndim = 0, p[2].i64 = &nbt;
  wcmi_param *pp[3] = {&p[0], &p[1], &p[2]};
  wcmi_st_kv meta[] = {{"epoch", "3"}};
  const char *path = tmp_path("params.safetensors");
  CHECK_OK(&ctx, wcmi_st_write_params(&ctx, path, pp, 3, meta, 1));

  float w2[6] = {0}, rm2[2] = {0};
  int64_t nbt2 = 0;
  wcmi_param q[3];
  memcpy(q, p, sizeof q);
  q[0].data = w2, q[1].data = rm2, q[2].i64 = &nbt2;
  wcmi_param *qq[3] = {&q[0], &q[1], &q[2]};
  wcmi_st *st = NULL;
  CHECK_OK(&ctx, wcmi_st_open(&ctx, path, &st));
  if (!st) return;
  CHECK(wcmi_st_find(st, p[2].name)->dtype == WCMI_DT_I64);
  CHECK_OK(&ctx, wcmi_st_load_params(&ctx, st, qq, 3, 1));
  CHECK(memcmp(w, w2, sizeof w) == 0 && memcmp(rm, rm2, sizeof rm) == 0 && nbt2 == 42);

  /* strict refuses tensors nobody asked for; non-strict accepts a subset */
  memset(w2, 0, sizeof w2);
  CHECK(wcmi_st_load_params(&ctx, st, qq, 2, 1) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "unexpected tensor 'encoder.layer4.1.num_batches_tracked'"));
  CHECK(w2[0] == 0); /* all or nothing */
  CHECK_OK(&ctx, wcmi_st_load_params(&ctx, st, qq, 2, 0));
  CHECK(w2[5] == 6);

  /* shape mismatch names the tensor and both shapes, and copies nothing */
  wcmi_param bad = q[0];
  bad.shape = wcmi_shape2(3, 2);
  float guard[6] = {9, 9, 9, 9, 9, 9};
  bad.data = guard;
  wcmi_param *bb[2] = {&q[1], &bad};
  rm2[0] = 7;
  CHECK(wcmi_st_load_params(&ctx, st, bb, 2, 0) == WCMI_EFORMAT);
  CHECK_MSG(contains(ctx.msg, "tensor 'encoder.layer5.weight' has shape (2, 3), expected (3, 2)"), "%s", ctx.msg);
  CHECK(rm2[0] == 7 && guard[0] == 9);

  /* missing tensor */
  wcmi_param miss = q[0];
  snprintf(miss.name, WCMI_NAME_MAX, "encoder.layer9.weight");
  wcmi_param *mm[1] = {&miss};
  CHECK(wcmi_st_load_params(&ctx, st, mm, 1, 0) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "missing tensor 'encoder.layer9.weight'"));

  /* dtype mismatch: a counter stored as F32 */
  wcmi_param as_counter = q[1];
  as_counter.kind = WCMI_PARAM_COUNTER;
  as_counter.i64 = &nbt2;
  wcmi_param *cc[1] = {&as_counter};
  CHECK(wcmi_st_load_params(&ctx, st, cc, 1, 0) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "is F32, expected I64"));
  wcmi_st_close(st);
}

/* ---- hostile files ------------------------------------------------------------------------ */

/* Builds length + header + data in buf; returns total size. */
static size_t build_raw(unsigned char *buf, size_t cap, const char *header, size_t data_bytes) {
  size_t hl = strlen(header);
  uint64_t len = hl;
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
  memcpy(buf + 8, header, hl);
  for (size_t i = 0; i < data_bytes && 8 + hl + i < cap; i++) buf[8 + hl + i] = (unsigned char)i;
  return 8 + hl + data_bytes;
}

static void expect_refused(const char *header, size_t data_bytes, const char *fragment) {
  static unsigned char buf[1 << 16];
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  size_t n = build_raw(buf, sizeof buf, header, data_bytes);
  wcmi_st *st = NULL;
  int rc = wcmi_st_open_memory(&ctx, "ckpt.safetensors", buf, n, &st);
  CHECK_MSG(rc == WCMI_EFORMAT, "header %s: expected WCMI_EFORMAT, got %d", header, rc);
  CHECK_MSG(st == NULL, "header %s: handle returned on failure", header);
  CHECK_MSG(contains(ctx.msg, fragment) && !strncmp(ctx.msg, "ckpt.safetensors: ", 18),
            "header %s:\n    message '%s'\n    lacks   '%s'", header, ctx.msg, fragment);
  CHECK(strchr(ctx.msg, '\n') == NULL);
  wcmi_st_close(st);
}

static void test_hostile_headers_are_refused_with_clear_messages(void) {
  expect_refused("[]", 0, "header is an array, not a JSON object");
  expect_refused("{\"a\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "unknown dtype 'F33'");
  expect_refused("{\"a\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "non-string \"dtype\"");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
                 "shape dim 0 is not a non-negative integer");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 4]}}", 4,
                 "shape dim 0 is not a non-negative integer");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
                 "\"data_offsets\": [0, 4]}}",
                 4, "is absurd (byte count overflows)");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
                 "shape has 9 dims");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, "is not a pair");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, -4]}}", 4,
                 "data_offsets[1] is not a non-negative integer");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", 4]}}", 4,
                 "data_offsets[0] is not a non-negative integer");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 8,
                 "data_offsets begin 8 > end 4");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4,
                 "data_offsets end 8 is beyond the 4-byte data buffer");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 99999999999999999999]}}", 4,
                 "too big integer"); /* beyond int64: jansson refuses the number itself */
  expect_refused("{\"encoder.layer0.0.weight\": {\"dtype\": \"F32\", \"shape\": [64, 1, 4, 4], "
                 "\"data_offsets\": [0, 4000]}}",
                 4000,
                 "tensor 'encoder.layer0.0.weight': shape (64, 1, 4, 4) needs 4096 bytes but data_offsets span 4000");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                 "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                 12, "overlap");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                 "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
                 12, "bytes [4, 8) are not covered by any tensor");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 12,
                 "bytes [4, 12) are not covered by any tensor (trailing bytes)");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                 "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                 8, "duplicate object key near '\"a\"'");
  expect_refused("{\"__metadata__\": {\"epoch\": 3}}", 0, "metadata value for key 'epoch' is a number, not a string");
  expect_refused("{\"__metadata__\": [\"x\"]}", 0, "__metadata__ is an array, not an object");
  expect_refused("{\"a\": [1, 2]}", 0, "tensor 'a': entry is an array, not an object");
  expect_refused("{\"a\\u0000b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "NUL byte");
  expect_refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}", 4, "header: byte");
  expect_refused("{\"\xff\": 1}", 0, "invalid UTF-8");
  expect_refused("not json at all", 0, "header: byte 3: invalid token near 'not'");
  expect_refused("{} x", 0, "end of file expected near 'x'");
}

static void test_bad_lengths_are_refused(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_st *st;
  unsigned char small[5] = {1, 0, 0, 0, 0};
  CHECK(wcmi_st_open_memory(&ctx, "f.st", small, 5, &st) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "f.st: file is 5 bytes, too short"));
  unsigned char big[16] = {0};
  uint64_t absurd = 200ull << 20;
  for (int i = 0; i < 8; i++) big[i] = (unsigned char)(absurd >> (8 * i));
  CHECK(wcmi_st_open_memory(&ctx, "f.st", big, 16, &st) == WCMI_EFORMAT);
  CHECK_MSG(contains(ctx.msg, "header length 209715200 is absurd"), "%s", ctx.msg);
  memset(big, 0xff, 8);
  CHECK(wcmi_st_open_memory(&ctx, "f.st", big, 16, &st) == WCMI_EFORMAT);
  CHECK(contains(ctx.msg, "is absurd"));
  memset(big, 0, 8);
  big[0] = 100;
  CHECK(wcmi_st_open_memory(&ctx, "f.st", big, 16, &st) == WCMI_EFORMAT);
  CHECK_MSG(contains(ctx.msg, "header length 100 exceeds the 8 bytes after it"), "%s", ctx.msg);
  CHECK(wcmi_st_open(&ctx, tmp_path("does-not-exist.safetensors"), &st) == WCMI_EIO);
  CHECK(contains(ctx.msg, "does-not-exist.safetensors: cannot open"));
}

/* A small valid file, in memory. */
static unsigned char *small_valid_file(size_t *n) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  float w[6] = {1, 2, 3, 4, 5, 6};
  int64_t c = 5;
  wcmi_st_tensor ts[] = {{"w", WCMI_DT_F32, {2, {2, 3}}, w}, {"n", WCMI_DT_I64, {0, {0}}, &c}};
  wcmi_st_kv meta[] = {{"k", "v\xc3\xa9"}};
  const char *path = tmp_path("small.safetensors");
  if (wcmi_st_write(&ctx, path, ts, 2, meta, 1)) return NULL;
  char *bytes = NULL;
  if (wcmi_read_file(&ctx, path, 1 << 20, &bytes, n)) return NULL;
  return (unsigned char *)bytes;
}

static void test_truncation_at_every_byte_is_refused(void) {
  size_t n = 0;
  unsigned char *bytes = small_valid_file(&n);
  CHECK(bytes != NULL);
  if (!bytes) return;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_st *st;
  CHECK_OK(&ctx, wcmi_st_open_memory(&ctx, "full", bytes, n, &st));
  wcmi_st_close(st);
  int refused = 0;
  for (size_t len = 0; len < n; len++) {
    int rc = wcmi_st_open_memory(&ctx, "cut", bytes, len, &st);
    refused += rc == WCMI_EFORMAT && st == NULL && !strncmp(ctx.msg, "cut: ", 5);
    if (!rc) wcmi_st_close(st);
  }
  CHECK_MSG(refused == (int)n, "%d of %zu truncations refused", refused, n);
  wcmi_free(bytes);
}

static void test_random_bit_flips_never_crash(void) {
  size_t n = 0;
  unsigned char *bytes = small_valid_file(&n);
  CHECK(bytes != NULL);
  if (!bytes) return;
  unsigned char *mut = malloc(n);
  wcmi_rng r;
  wcmi_rng_seed(&r, 99);
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  int accepted = 0, trials = 3000;
  for (int t = 0; t < trials; t++) {
    memcpy(mut, bytes, n);
    int flips = 1 + (int)wcmi_rng_below(&r, 3);
    for (int k = 0; k < flips; k++) {
      size_t at = (size_t)wcmi_rng_below(&r, n);
      mut[at] ^= (unsigned char)(1u << wcmi_rng_below(&r, 8));
    }
    wcmi_st *st = NULL;
    if (wcmi_st_open_memory(&ctx, "flip", mut, n, &st) == WCMI_OK) {
      /* Accepted (e.g. a flipped data byte): every tensor must still lie inside the file. */
      accepted++;
      for (int i = 0; i < wcmi_st_count(st); i++) {
        const wcmi_st_info *ti = wcmi_st_tensor_at(st, i);
        volatile unsigned char sink = 0;
        for (size_t b = 0; b < ti->nbytes; b++) sink ^= ((const unsigned char *)ti->data)[b];
        (void)sink;
      }
      wcmi_st_close(st);
    } else {
      CHECK(strchr(ctx.msg, '\n') == NULL && !strncmp(ctx.msg, "flip: ", 6));
    }
  }
  fprintf(stderr, "  bit flips: %d of %d mutated files accepted (data-byte flips), rest refused\n", accepted,
          trials);
  CHECK(accepted < trials);
  free(mut);
  wcmi_free(bytes);
}

/* ---- kill -9 during atomic writes ------------------------------------------------------------ */

#define KILL_FLOATS (1 << 20) /* 4 MiB per file */

static void writer_child(const char *path) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  float *x = wcmi_alloc(&ctx, KILL_FLOATS, sizeof(float));
  if (!x) _exit(3);
  for (int gen = 1;; gen++) {
    for (int i = 0; i < KILL_FLOATS; i++) x[i] = (float)gen;
    char g[32];
    snprintf(g, sizeof g, "%d", gen);
    wcmi_st_kv meta[] = {{"generation", g}};
    wcmi_st_tensor t[] = {{"x", WCMI_DT_F32, {1, {KILL_FLOATS}}, x}};
    if (wcmi_st_write(&ctx, path, t, 1, meta, 1)) _exit(4);
  }
}

/* The target must be absent or complete: valid header, and every value equal to its generation. */
static int target_is_absent_or_complete(const char *path, int *gen_out) {
  *gen_out = 0;
  if (access(path, F_OK) != 0) return 1;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_st *st;
  if (wcmi_st_open(&ctx, path, &st)) {
    fprintf(stderr, "  torn file: %s\n", ctx.msg);
    return 0;
  }
  const wcmi_st_info *t = wcmi_st_find(st, "x");
  const char *g = wcmi_st_meta(st, "generation");
  int ok = t && g && t->numel == KILL_FLOATS;
  if (ok) {
    float want = (float)atoi(g), v;
    *gen_out = atoi(g);
    for (int64_t i = 0; ok && i < t->numel; i += 997) {
      memcpy(&v, (const char *)t->data + 4 * i, 4);
      ok = v == want;
    }
    memcpy(&v, (const char *)t->data + 4 * (t->numel - 1), 4);
    ok = ok && v == want;
  }
  wcmi_st_close(st);
  return ok;
}

static void remove_temp_of(const char *path, pid_t pid) {
  char tmp[700];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
  remove(tmp);
}

static void test_kill9_during_atomic_writes_never_leaves_a_torn_file(void) {
  const char *path = tmp_path("kill.safetensors");
  remove(path);
  wcmi_rng r;
  wcmi_rng_seed(&r, (uint64_t)time(NULL));
  double t0 = wcmi_now();
  int kills = 0, bad = 0, max_gen = 0, absent = 0, absent_in_a_row = 0;
  /* Kills land 1 ms to 1 ms + max_ns after the fork. On a loaded machine no write may finish that
   * soon: while none has, the window doubles after every 5 kills that found no file (up to 2 s),
   * and the test runs on for up to 30 s, so the check always sees real files. */
  long max_ns = 60000000;
  while (wcmi_now() - t0 < 3.0 || (max_gen == 0 && wcmi_now() - t0 < 30.0)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) writer_child(path);
    CHECK(pid > 0);
    if (pid <= 0) return;
    const long ns = 1000000 + (long)wcmi_rng_below(&r, (uint64_t)max_ns);
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    kills++;
    CHECK_MSG(WIFSIGNALED(status), "writer exited by itself with status %d (write failed?)", WEXITSTATUS(status));
    remove_temp_of(path, pid);
    int gen;
    if (!target_is_absent_or_complete(path, &gen)) bad++;
    if (gen == 0) absent++;
    if (gen > max_gen) max_gen = gen;
    absent_in_a_row = gen == 0 ? absent_in_a_row + 1 : 0;
    if (max_gen == 0 && absent_in_a_row >= 5 && max_ns < 2000000000) max_ns *= 2, absent_in_a_row = 0;
  }
  fprintf(stderr, "  kill -9: %d kills, %d torn files, %d checks found no file yet, highest generation %d\n", kills,
          bad, absent, max_gen);
  CHECK(bad == 0);
  CHECK(kills >= 5);
  CHECK(max_gen >= 1); /* some write completed, so the check saw real files */
  remove(path);
}

/* ---- independent parse with Python ------------------------------------------------------------- */

static void test_python_parses_a_wcmi_file(void) {
  if (system("/usr/bin/python3 -c 'import struct, json' >/dev/null 2>&1") != 0) {
    wt_skip("/usr/bin/python3 not installed for the independent safetensors parse");
    return;
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  float w[4] = {0.5f, -1.25f, 3.0e-8f, 1234.5f};
  int64_t c = -9000000000LL;
  wcmi_st_tensor ts[] = {{"encoder.layer5.weight", WCMI_DT_F32, {2, {2, 2}}, w},
                         {"encoder.layer4.1.num_batches_tracked", WCMI_DT_I64, {0, {0}}, &c}};
  wcmi_st_kv meta[] = {{"architecture", "basic_encoder"}, {"epoch", "12"}};
  const char *path = tmp_path("py.safetensors");
  CHECK_OK(&ctx, wcmi_st_write(&ctx, path, ts, 2, meta, 2));
  const char *script =
      "import struct, json, sys\n"
      "b = open(sys.argv[1], 'rb').read()\n"
      "n, = struct.unpack('<Q', b[:8]); h = json.loads(b[8:8+n]); buf = b[8+n:]\n"
      "assert n % 8 == 0 and h['__metadata__'] == {'architecture': 'basic_encoder', 'epoch': '12'}\n"
      "fmt = {'F32': 'f', 'I64': 'q'}\n"
      "def get(k):\n"
      "    e = h[k]; s, t = e['data_offsets']; raw = buf[s:t]\n"
      "    try:\n"
      "        import numpy as np\n"
      "        a = np.frombuffer(raw, dtype={'F32': '<f4', 'I64': '<i8'}[e['dtype']]).reshape(e['shape'])\n"
      "        return e, a.ravel().tolist(), 'numpy'\n"
      "    except ImportError:\n"
      "        return e, list(struct.unpack('<%d%s' % (len(raw) // (4 if e['dtype'] == 'F32' else 8), "
      "fmt[e['dtype']]), raw)), 'struct'\n"
      "e, v, how = get('encoder.layer5.weight')\n"
      "assert e['dtype'] == 'F32' and e['shape'] == [2, 2] and v == [0.5, -1.25, struct.unpack('<f', "
      "struct.pack('<f', 3e-8))[0], 1234.5], v\n"
      "e, v, how = get('encoder.layer4.1.num_batches_tracked')\n"
      "assert e['dtype'] == 'I64' and e['shape'] == [] and v == [-9000000000], v\n"
      "spans = sorted(tuple(x['data_offsets']) for k, x in h.items() if k != '__metadata__')\n"
      "assert spans[0][0] == 0 and spans[-1][1] == len(buf)\n"
      "print('python parse OK via', how)\n";
  const char *spath = tmp_path("parse_st.py");
  FILE *f = fopen(spath, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs(script, f);
  fclose(f);
  char cmd[1500];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s 1>&2", spath, path);
  CHECK_MSG(system(cmd) == 0, "python3 could not parse %s", path);
}

int main(void) {
  RUN(test_roundtrip_f32_i64_and_metadata);
  RUN(test_writer_rejects_duplicate_and_reserved_names);
  RUN(test_params_roundtrip_and_load_checks);
  RUN(test_hostile_headers_are_refused_with_clear_messages);
  RUN(test_bad_lengths_are_refused);
  RUN(test_truncation_at_every_byte_is_refused);
  RUN(test_random_bit_flips_never_crash);
  RUN(test_kill9_during_atomic_writes_never_leaves_a_torn_file);
  RUN(test_python_parses_a_wcmi_file);
  return wt_finish();
}
