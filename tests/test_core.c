/* Core: RNG reproducibility and distribution sanity, checked sizes, shapes, error messages. */
#include "harness.h"
#include "wcmi/core.h"

#include <string.h>

static void test_rng_same_seed_same_stream(void) {
  wcmi_rng a, b;
  wcmi_rng_seed(&a, 42);
  wcmi_rng_seed(&b, 42);
  for (int i = 0; i < 1000; i++) CHECK(wcmi_rng_u64(&a) == wcmi_rng_u64(&b));
  wcmi_rng_derive(&a, 42, 1);
  wcmi_rng_derive(&b, 42, 2);
  CHECK(wcmi_rng_u64(&a) != wcmi_rng_u64(&b));
}

static void test_rng_uniform_and_normal_moments(void) {
  wcmi_rng r;
  wcmi_rng_seed(&r, 7);
  double s = 0, s2 = 0, n = 200000;
  for (int i = 0; i < (int)n; i++) {
    float u = wcmi_rng_uniform(&r);
    CHECK(u >= 0.0f && u < 1.0f);
    s += u;
  }
  CHECK_CLOSE(s / n, 0.5, 0.005, 0);
  s = 0;
  for (int i = 0; i < (int)n; i++) {
    double z = wcmi_rng_normal(&r);
    s += z;
    s2 += z * z;
  }
  CHECK_CLOSE(s / n, 0.0, 0.01, 0);
  CHECK_CLOSE(s2 / n, 1.0, 0.02, 0);
}

static void test_rng_shuffle_is_permutation(void) {
  wcmi_rng r;
  wcmi_rng_seed(&r, 3);
  int64_t idx[100];
  int seen[100] = {0};
  for (int i = 0; i < 100; i++) idx[i] = i;
  wcmi_rng_shuffle(&r, idx, 100);
  int moved = 0;
  for (int i = 0; i < 100; i++) {
    seen[idx[i]]++;
    moved += idx[i] != i;
  }
  for (int i = 0; i < 100; i++) CHECK(seen[i] == 1);
  CHECK(moved > 80);
}

static void test_checked_sizes_and_alloc_overflow(void) {
  size_t out = 0;
  CHECK(wcmi_mul_size(1u << 20, 1u << 20, &out) && out == (size_t)1 << 40);
  CHECK(!wcmi_mul_size(SIZE_MAX / 2, 3, &out));
  CHECK(!wcmi_add_size(SIZE_MAX, 1, &out));
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  void *p = wcmi_alloc(&ctx, SIZE_MAX / 4, 8);
  CHECK(p == NULL);
  CHECK(ctx.status == WCMI_ENOMEM);
  CHECK(strstr(wcmi_errmsg(&ctx), "overflow") != NULL);
}

static void test_shape_helpers(void) {
  wcmi_shape s = wcmi_shape4(128, 64, 14, 14);
  CHECK(wcmi_shape_numel(&s) == 128LL * 64 * 14 * 14);
  char buf[64];
  CHECK(strcmp(wcmi_shape_str(&s, buf, sizeof buf), "(128, 64, 14, 14)") == 0);
  wcmi_shape t = wcmi_shape4(128, 64, 14, 14);
  CHECK(wcmi_shape_equal(&s, &t));
  t.d[3] = 13;
  CHECK(!wcmi_shape_equal(&s, &t));
}

static void test_error_message_is_one_line(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  CHECK(wcmi_fail(&ctx, WCMI_EIO, "file %s: %s", "a\nb", "missing") == WCMI_EIO);
  CHECK(strchr(wcmi_errmsg(&ctx), '\n') == NULL);
  CHECK(strstr(wcmi_errmsg(&ctx), "missing") != NULL);
}

static void test_all_finite(void) {
  float x[4] = {1, 2, 3, 4};
  CHECK(wcmi_all_finite(x, 4));
  x[2] = NAN;
  CHECK(!wcmi_all_finite(x, 4));
  x[2] = INFINITY;
  CHECK(!wcmi_all_finite(x, 4));
}

int main(void) {
  RUN(test_rng_same_seed_same_stream);
  RUN(test_rng_uniform_and_normal_moments);
  RUN(test_rng_shuffle_is_permutation);
  RUN(test_checked_sizes_and_alloc_overflow);
  RUN(test_shape_helpers);
  RUN(test_error_message_is_one_line);
  RUN(test_all_finite);
  return wt_finish();
}
