/* Loader, selection and synthetic data: per-epoch permutations that depend only on (seed, epoch),
 * the last-batch policy, prefetching that changes nothing, augmentation that is a crop/flip of the
 * input, class-balanced subsets, a disjoint validation split and the Gaussian mixture's moments. */
#include "harness.h"
#include "wcmi/data.h"

#include <string.h>

/* n samples of (c, h, w); every pixel of sample i encodes (i, position) uniquely; label i % K. */
static void make_dataset(wcmi_dataset *d, int64_t n, int c, int h, int w, int K) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  CHECK_OK(&ctx, wcmi_dataset_alloc(&ctx, d, "synthetic", n, c, h, w, K));
  int64_t s = (int64_t)c * h * w;
  for (int64_t i = 0; i < n; i++) {
    d->labels[i] = (int32_t)(i % K);
    for (int64_t k = 0; k < s; k++) d->images[i * s + k] = (float)(i * s + k + 1);
  }
}

/* Collects the sample ids of one epoch (from pixel 0) and the batch sizes. */
static int64_t run_epoch(wcmi_loader *L, int64_t epoch, int64_t *ids, int *sizes, int *nbatches) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const wcmi_dataset *d = L->data;
  int64_t s = wcmi_dataset_sample_size(d);
  float *x = wcmi_alloc(&ctx, (size_t)(L->cfg.batch_size * s), sizeof(float));
  int32_t *y = wcmi_alloc(&ctx, (size_t)L->cfg.batch_size, sizeof(int32_t));
  CHECK_OK(&ctx, wcmi_loader_start_epoch(&ctx, L, epoch));
  int64_t got = 0;
  int count, nb = 0, r;
  while ((r = wcmi_loader_next(&ctx, L, x, y, &count)) == 1) {
    sizes[nb++] = count;
    for (int i = 0; i < count; i++) {
      int64_t id = (int64_t)(x[i * s] - 1) / s;
      CHECK(y[i] == d->labels[id]);
      ids[got++] = id;
    }
  }
  CHECK(r == 0);
  *nbatches = nb;
  wcmi_free(x);
  wcmi_free(y);
  return got;
}

static void test_each_epoch_is_a_fresh_permutation_set_by_seed_and_epoch(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  make_dataset(&d, 103, 1, 2, 2, 10);
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.batch_size = 10;
  cfg.seed = 99;
  wcmi_loader L;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &L, &d, &cfg));
  int64_t e0[103], e1[103], e3[103], again[103];
  int sizes[20], nb;
  CHECK(run_epoch(&L, 0, e0, sizes, &nb) == 103);
  int seen[103] = {0};
  for (int i = 0; i < 103; i++) seen[e0[i]]++;
  for (int i = 0; i < 103; i++) CHECK(seen[i] == 1);
  CHECK(run_epoch(&L, 1, e1, sizes, &nb) == 103);
  CHECK(memcmp(e0, e1, sizeof e0) != 0);
  /* Jumping straight to epoch 3 (a resumed run) and replaying epoch 0 give the same orders. */
  CHECK(run_epoch(&L, 3, e3, sizes, &nb) == 103);
  CHECK(run_epoch(&L, 0, again, sizes, &nb) == 103);
  CHECK(memcmp(e0, again, sizeof e0) == 0);
  wcmi_loader_free(&L);
  cfg.seed = 100;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &L, &d, &cfg));
  CHECK(run_epoch(&L, 0, again, sizes, &nb) == 103);
  CHECK(memcmp(e0, again, sizeof e0) != 0);
  wcmi_loader_free(&L);
  cfg.shuffle = 0;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &L, &d, &cfg));
  CHECK(run_epoch(&L, 5, again, sizes, &nb) == 103);
  for (int i = 0; i < 103; i++) CHECK(again[i] == i);
  wcmi_loader_free(&L);
  wcmi_dataset_free(&d);
}

static void test_last_partial_batch_is_kept_by_default_and_dropped_on_request(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  make_dataset(&d, 10, 1, 1, 3, 2);
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.batch_size = 4;
  wcmi_loader L;
  int64_t ids[10];
  int sizes[8], nb;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &L, &d, &cfg));
  CHECK(wcmi_loader_num_batches(&L) == 3);
  CHECK(run_epoch(&L, 0, ids, sizes, &nb) == 10);
  CHECK(nb == 3 && sizes[0] == 4 && sizes[1] == 4 && sizes[2] == 2);
  wcmi_loader_free(&L);
  cfg.drop_last = 1;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &L, &d, &cfg));
  CHECK(wcmi_loader_num_batches(&L) == 2);
  CHECK(run_epoch(&L, 0, ids, sizes, &nb) == 8);
  CHECK(nb == 2 && sizes[1] == 4);
  wcmi_loader_free(&L);
  wcmi_dataset_free(&d);
}

static void test_prefetch_gives_bit_identical_augmented_batches(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  make_dataset(&d, 37, 3, 8, 8, 10);
  for (int64_t i = 0; i < 37 * 192; i++) d.images[i] = (float)((i * 7919) % 1000) / 1000.0f;
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.batch_size = 8;
  cfg.seed = 5;
  cfg.augment = WCMI_AUG_CROP | WCMI_AUG_FLIP | WCMI_AUG_JITTER | WCMI_AUG_ROTATE;
  wcmi_loader A, B;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &A, &d, &cfg));
  cfg.prefetch = 1;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &B, &d, &cfg));
  float xa[8 * 192], xb[8 * 192];
  int32_t ya[8], yb[8];
  int ca, cb, diff = 0, batches = 0;
  for (int e = 0; e < 3; e++) {
    CHECK_OK(&ctx, wcmi_loader_start_epoch(&ctx, &A, e));
    CHECK_OK(&ctx, wcmi_loader_start_epoch(&ctx, &B, e));
    /* Stop epoch 1 halfway: the prefetched batch must be discarded cleanly. */
    int limit = e == 1 ? 2 : 1000;
    for (int b = 0; b < limit; b++) {
      int ra = wcmi_loader_next(&ctx, &A, xa, ya, &ca), rb = wcmi_loader_next(&ctx, &B, xb, yb, &cb);
      CHECK(ra == rb);
      if (ra != 1) break;
      batches++;
      CHECK(ca == cb);
      if (memcmp(xa, xb, sizeof(float) * (size_t)ca * 192) || memcmp(ya, yb, sizeof(int32_t) * (size_t)ca)) diff++;
    }
  }
  CHECK(batches == 5 + 2 + 5);
  CHECK_MSG(diff == 0, "%d batches differ between prefetch and direct assembly", diff);
  wcmi_loader_free(&A);
  wcmi_loader_free(&B);
  wcmi_dataset_free(&d);
}

static void test_crop_and_flip_are_a_shift_and_mirror_of_the_input(void) {
  enum { C = 3, H = 32, W = 32 };
  static float src[C * H * W], dst[C * H * W];
  for (int k = 0; k < C * H * W; k++) src[k] = (float)(k + 1);
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.augment = WCMI_AUG_CROP | WCMI_AUG_FLIP;
  int flips = 0, shifted = 0;
  for (int trial = 0; trial < 200; trial++) {
    wcmi_rng rng;
    wcmi_rng_derive(&rng, (uint64_t)trial, WCMI_STREAM_AUGMENT);
    wcmi_augment_image(&cfg, &rng, src, dst, C, H, W);
    /* Exactly one (dy, dx, flip) with |dy|, |dx| <= 4 must reproduce the output:
     * out(i, j) = in(i + dy, (flip ? W-1-j : j) + dx), zero outside. */
    int matches = 0, dy = 0, dx = 0, flip = 0;
    for (int cdy = -4; cdy <= 4; cdy++)
      for (int cdx = -4; cdx <= 4; cdx++)
        for (int cf = 0; cf < 2; cf++) {
          int ok = 1;
          for (int ch = 0; ch < C && ok; ch++)
            for (int i = 0; i < H && ok; i++)
              for (int j = 0; j < W && ok; j++) {
                int si = i + cdy, sj = (cf ? W - 1 - j : j) + cdx;
                float want = (si >= 0 && si < H && sj >= 0 && sj < W) ? src[(ch * H + si) * W + sj] : 0.0f;
                ok = dst[(ch * H + i) * W + j] == want;
              }
          if (ok) {
            matches++;
            dy = cdy;
            dx = cdx;
            flip = cf;
          }
        }
    CHECK_MSG(matches == 1, "trial %d: %d crop/flip explanations", trial, matches);
    flips += flip == 1;
    shifted += dy != 0 || dx != 0;
  }
  /* 200 fair coin flips: 100 +- 3 sigma (21). */
  CHECK_MSG(flips > 79 && flips < 121, "flips %d of 200", flips);
  CHECK(shifted > 180);
}

static void test_augmentation_stays_in_unit_range_and_is_reproducible(void) {
  enum { C = 3, H = 16, W = 16 };
  float src[C * H * W], a[C * H * W], b[C * H * W];
  for (int k = 0; k < C * H * W; k++) src[k] = (float)((k * 37) % 256) / 255.0f;
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.augment = WCMI_AUG_CROP | WCMI_AUG_FLIP | WCMI_AUG_JITTER | WCMI_AUG_ROTATE;
  cfg.jitter = 0.25f;
  cfg.rotate_deg = 10.0f;
  wcmi_rng r1, r2;
  wcmi_rng_derive(&r1, 1, WCMI_STREAM_AUGMENT);
  wcmi_rng_derive(&r2, 1, WCMI_STREAM_AUGMENT);
  wcmi_augment_image(&cfg, &r1, src, a, C, H, W);
  wcmi_augment_image(&cfg, &r2, src, b, C, H, W);
  CHECK(memcmp(a, b, sizeof a) == 0);
  for (int k = 0; k < C * H * W; k++) CHECK(a[k] >= 0.0f && a[k] <= 1.0f);
  CHECK(memcmp(a, src, sizeof a) != 0);
}

/* ---- the reference's CIFAR-10 colour jitter and rotation ------------------------------------ */

static void test_cifar_augmentation_is_the_references_four_transforms(void) {
  CHECK(WCMI_AUG_CIFAR == (WCMI_AUG_CROP | WCMI_AUG_FLIP | WCMI_AUG_JITTER | WCMI_AUG_ROTATE));
  /* Defaults (0) are ColorJitter(0.25, ...) and RandomRotation(2): the same draws give the same image. */
  enum { C = 3, H = 8, W = 8 };
  float src[C * H * W], a[C * H * W], b[C * H * W];
  for (int k = 0; k < C * H * W; k++) src[k] = (float)((k * 53) % 97) / 96.0f;
  wcmi_loader_config def, ref;
  wcmi_loader_config_default(&def);
  def.augment = WCMI_AUG_JITTER | WCMI_AUG_ROTATE;
  ref = def;
  ref.jitter = 0.25f;
  ref.rotate_deg = 2.0f;
  for (int t = 0; t < 20; t++) {
    wcmi_rng r1, r2;
    wcmi_rng_derive(&r1, (uint64_t)t, WCMI_STREAM_AUGMENT);
    wcmi_rng_derive(&r2, (uint64_t)t, WCMI_STREAM_AUGMENT);
    wcmi_augment_image(&def, &r1, src, a, C, H, W);
    wcmi_augment_image(&ref, &r2, src, b, C, H, W);
    CHECK_MSG(memcmp(a, b, sizeof a) == 0, "trial %d: default jitter/rotation differ from 0.25 / 2 degrees", t);
  }
}

static void test_jitter_draws_every_order_and_factors_in_range(void) {
  int seen[3][3] = {{0}};
  double lo = 9, hi = -9, sum = 0;
  const int n = 3000;
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 7);
  for (int t = 0; t < n; t++) {
    wcmi_jitter j;
    wcmi_jitter_draw(&rng, 0.25f, &j);
    CHECK(j.order[0] != j.order[1] && j.order[1] != j.order[2] && j.order[0] != j.order[2]);
    for (int i = 0; i < 3; i++) {
      seen[i][j.order[i]]++;
      lo = fmin(lo, j.factor[i]);
      hi = fmax(hi, j.factor[i]);
      sum += j.factor[i];
    }
  }
  /* Each operation in each position a third of the time (1000 +- 5 sigma = 130). */
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 3; k++) CHECK_MSG(abs(seen[i][k] - n / 3) < 130, "op %d at step %d: %d of %d", k, i, seen[i][k], n);
  CHECK_MSG(lo >= 0.75 && lo < 0.752 && hi <= 1.25 && hi > 1.248, "factors in [%g, %g], want [0.75, 1.25]", lo, hi);
  CHECK_CLOSE(sum / (3.0 * n), 1.0, 0.005, 0);
}

/* The three operations against their definitions, computed here in double. */
static void jitter_reference(const int *order, const double *f, double *x, int hw) {
  for (int s = 0; s < 3; s++) {
    double m = 0;
    for (int k = 0; k < hw; k++) m += 0.299 * x[k] + 0.587 * x[hw + k] + 0.114 * x[2 * hw + k];
    m /= hw;
    for (int k = 0; k < hw; k++) {
      double g = 0.299 * x[k] + 0.587 * x[hw + k] + 0.114 * x[2 * hw + k];
      for (int ch = 0; ch < 3; ch++) {
        double *v = &x[ch * hw + k];
        double blend = order[s] == WCMI_JITTER_BRIGHTNESS ? 0.0 : order[s] == WCMI_JITTER_CONTRAST ? m : g;
        *v = fmin(1.0, fmax(0.0, f[s] * *v + (1.0 - f[s]) * blend));
      }
    }
  }
}

static void test_jitter_operations_follow_torchvision(void) {
  enum { C = 3, H = 4, W = 5, HW = H * W };
  float img[C * HW];
  double ref[C * HW];
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 11);
  for (int t = 0; t < 12; t++) {
    for (int k = 0; k < C * HW; k++) ref[k] = img[k] = (float)k / (C * HW - 1) * (t % 2 ? 1.0f : 0.9f) + (k % 3 == 0 ? 0.1f : 0.0f);
    wcmi_jitter j;
    wcmi_jitter_draw(&rng, 0.25f, &j);
    if (t < 6) { /* every permutation, factors that make clamping matter */
      static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
      for (int i = 0; i < 3; i++) j.order[i] = perms[t][i];
      j.factor[0] = 1.25f, j.factor[1] = 0.8f, j.factor[2] = 1.2f;
    }
    double f[3] = {j.factor[0], j.factor[1], j.factor[2]};
    jitter_reference(j.order, f, ref, HW);
    wcmi_jitter_apply(&j, img, C, H, W);
    for (int k = 0; k < C * HW; k++) CHECK_CLOSE(img[k], ref[k], 2e-6, 0);
  }
  /* The order matters once values clamp: brightness 1.25 then contrast 0.8 is not the reverse. */
  float a[2] = {1.0f, 0.0f}, b[2] = {1.0f, 0.0f};
  wcmi_jitter bc = {{WCMI_JITTER_BRIGHTNESS, WCMI_JITTER_CONTRAST, WCMI_JITTER_SATURATION}, {1.25f, 0.8f, 1.0f}};
  wcmi_jitter cb = {{WCMI_JITTER_CONTRAST, WCMI_JITTER_BRIGHTNESS, WCMI_JITTER_SATURATION}, {0.8f, 1.25f, 1.0f}};
  wcmi_jitter_apply(&bc, a, 1, 1, 2);
  wcmi_jitter_apply(&cb, b, 1, 1, 2);
  CHECK_CLOSE(a[0], 0.9, 1e-6, 0);   /* clamp(1.25) = 1, then 0.8 * 1 + 0.2 * 0.5 */
  CHECK_CLOSE(b[0], 1.0, 1e-6, 0);   /* 0.8 + 0.1 = 0.9, then 1.25 * 0.9 clamps to 1 */
}

/* Brightness jitter of a flat grey image (contrast and saturation leave it alone): 0.5 * f with f
 * uniform in [0.75, 1.25]. */
static void test_jitter_of_a_grey_image_spans_the_brightness_range(void) {
  enum { C = 3, H = 4, W = 4 };
  float src[C * H * W], dst[C * H * W];
  for (int k = 0; k < C * H * W; k++) src[k] = 0.5f;
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.augment = WCMI_AUG_JITTER;
  double lo = 9, hi = -9;
  for (int t = 0; t < 400; t++) {
    wcmi_rng rng;
    wcmi_rng_derive(&rng, (uint64_t)t, WCMI_STREAM_AUGMENT);
    wcmi_augment_image(&cfg, &rng, src, dst, C, H, W);
    for (int k = 1; k < C * H * W; k++) CHECK(fabsf(dst[k] - dst[0]) < 1e-6f);
    lo = fmin(lo, dst[0]);
    hi = fmax(hi, dst[0]);
  }
  CHECK_MSG(lo >= 0.375 - 1e-6 && lo < 0.385 && hi <= 0.625 + 1e-6 && hi > 0.615, "grey 0.5 jittered into [%g, %g]", lo, hi);
}

/* RandomRotation(2): nearest neighbour with zero fill, so every output value is an input value or
 * 0; the centre never moves; a 2-degree turn moves only pixels far from the centre. */
static void test_rotation_is_nearest_neighbour_with_zero_fill(void) {
  enum { C = 1, H = 32, W = 32 };
  float src[H * W], dst[H * W];
  for (int k = 0; k < H * W; k++) src[k] = (float)(k + 1) / (H * W);
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.augment = WCMI_AUG_ROTATE;
  int changed = 0, max_moved = 0;
  for (int t = 0; t < 200; t++) {
    wcmi_rng rng;
    wcmi_rng_derive(&rng, (uint64_t)t, WCMI_STREAM_AUGMENT);
    wcmi_augment_image(&cfg, &rng, src, dst, C, H, W);
    int moved = 0;
    for (int k = 0; k < H * W; k++) {
      float v = dst[k];
      int idx = (int)lrintf(v * (H * W)) - 1;
      CHECK_MSG(v == 0.0f || (idx >= 0 && idx < H * W && src[idx] == v), "trial %d pixel %d: %g is no input value", t, k, (double)v);
      moved += v != src[k];
    }
    CHECK(dst[(H / 2) * W + W / 2] == src[(H / 2) * W + W / 2]);
    changed += moved > 0;
    if (moved > max_moved) max_moved = moved;
  }
  /* A corner pixel's preimage moves by about 15.5 * angle per axis, so nearest neighbour changes
   * anything only when |angle| > 0.5 / 15.5 rad = 1.85 degrees: about 7% of uniform draws in +-2
   * (18 of these 200), against about 63% for the old 5-degree default. */
  CHECK_MSG(changed >= 5 && changed <= 40, "%d of 200 rotations moved a pixel", changed);
  CHECK_MSG(max_moved < H * W / 3, "up to %d of %d pixels moved", max_moved, H * W);
}

static void test_balanced_subset_has_equal_class_counts_and_is_seeded(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d, s1, s2, s3;
  make_dataset(&d, 1000, 1, 1, 2, 10);
  /* Make class 9 rare (3 samples) so its shortfall must go to other classes. */
  for (int64_t i = 0; i < 1000; i++)
    if (d.labels[i] == 9 && i > 30) d.labels[i] = (int32_t)(i % 9);
  CHECK_OK(&ctx, wcmi_dataset_subset(&ctx, &d, 105, 7, &s1));
  CHECK_OK(&ctx, wcmi_dataset_subset(&ctx, &d, 105, 7, &s2));
  CHECK_OK(&ctx, wcmi_dataset_subset(&ctx, &d, 105, 8, &s3));
  CHECK(s1.n == 105);
  int64_t cnt[10] = {0};
  for (int64_t i = 0; i < s1.n; i++) cnt[s1.labels[i]]++;
  CHECK(cnt[9] == 3);
  for (int k = 0; k < 9; k++) CHECK_MSG(cnt[k] == 11 || cnt[k] == 12, "class %d has %lld", k, (long long)cnt[k]);
  CHECK(memcmp(s1.images, s2.images, sizeof(float) * 210) == 0);
  CHECK(memcmp(s1.images, s3.images, sizeof(float) * 210) != 0);
  /* The subset keeps file order. */
  for (int64_t i = 1; i < s1.n; i++) CHECK(s1.images[2 * i] > s1.images[2 * (i - 1)]);
  wcmi_dataset_free(&s1);
  wcmi_dataset_free(&s2);
  wcmi_dataset_free(&s3);
  wcmi_dataset_free(&d);
}

static void test_validation_split_is_disjoint_and_complete(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d, tr, va;
  make_dataset(&d, 200, 1, 1, 1, 10);
  CHECK_OK(&ctx, wcmi_dataset_split_validation(&ctx, &d, 50, 3, &tr, &va));
  CHECK(tr.n == 150 && va.n == 50);
  int seen[200] = {0};
  for (int64_t i = 0; i < tr.n; i++) seen[(int)tr.images[i] - 1]++;
  for (int64_t i = 0; i < va.n; i++) seen[(int)va.images[i] - 1]++;
  for (int i = 0; i < 200; i++) CHECK(seen[i] == 1);
  int64_t cnt[10] = {0};
  for (int64_t i = 0; i < va.n; i++) cnt[va.labels[i]]++;
  for (int k = 0; k < 10; k++) CHECK(cnt[k] == 5);
  wcmi_dataset_free(&tr);
  wcmi_dataset_free(&va);
  CHECK(wcmi_dataset_split_validation(&ctx, &d, 200, 3, &tr, &va) == WCMI_EINVAL);
  CHECK(tr.images == NULL && va.images == NULL);
  wcmi_dataset_free(&d);
}

static void test_gaussian_mixture_has_the_stated_moments(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  float theta[3] = {1.0f, -0.5f, 0.0f};
  wcmi_dataset g;
  const int64_t n = 40000;
  CHECK_OK(&ctx, wcmi_data_gaussian_mixture(&ctx, n, 3, theta, 0.5f, 11, &g));
  CHECK(g.n == n && g.c == 1 && g.h == 1 && g.w == 3 && g.num_classes == 2);
  double m[2][3] = {{0}}, v[2][3] = {{0}}, cnt[2] = {0};
  for (int64_t i = 0; i < n; i++) {
    int y = g.labels[i];
    cnt[y]++;
    for (int j = 0; j < 3; j++) m[y][j] += g.images[i * 3 + j];
  }
  for (int y = 0; y < 2; y++)
    for (int j = 0; j < 3; j++) m[y][j] /= cnt[y];
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < 3; j++) {
      double e = g.images[i * 3 + j] - m[g.labels[i]][j];
      v[g.labels[i]][j] += e * e;
    }
  /* Class balance: 0.5 +- 4 sigma (0.01); means: +-theta within 4 sigma (0.5/sqrt(20000) = 0.0035). */
  CHECK_CLOSE(cnt[1] / (double)n, 0.5, 0.01, 0);
  for (int j = 0; j < 3; j++) {
    CHECK_CLOSE(m[1][j], theta[j], 0.015, 0);
    CHECK_CLOSE(m[0][j], -theta[j], 0.015, 0);
    CHECK_CLOSE(v[1][j] / cnt[1], 0.25, 0.01, 0);
  }
  wcmi_dataset_free(&g);
}

static void test_stats_match_hand_computed_values(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  CHECK_OK(&ctx, wcmi_dataset_alloc(&ctx, &d, "t", 2, 1, 1, 2, 10));
  d.images[0] = 0.0f; d.images[1] = 1.0f; d.images[2] = 0.5f; d.images[3] = 0.5f;
  d.labels[0] = 3; d.labels[1] = 3;
  wcmi_dataset_stats s;
  wcmi_dataset_compute_stats(&d, &s);
  CHECK(s.label_counts[3] == 2 && s.label_counts[0] == 0);
  CHECK_CLOSE(s.pixel_mean, 0.5, 1e-12, 0);
  CHECK_CLOSE(s.pixel_std, sqrt(0.125), 1e-12, 0);
  wcmi_dataset_free(&d);
}

int main(void) {
  RUN(test_each_epoch_is_a_fresh_permutation_set_by_seed_and_epoch);
  RUN(test_last_partial_batch_is_kept_by_default_and_dropped_on_request);
  RUN(test_prefetch_gives_bit_identical_augmented_batches);
  RUN(test_crop_and_flip_are_a_shift_and_mirror_of_the_input);
  RUN(test_augmentation_stays_in_unit_range_and_is_reproducible);
  RUN(test_cifar_augmentation_is_the_references_four_transforms);
  RUN(test_jitter_draws_every_order_and_factors_in_range);
  RUN(test_jitter_operations_follow_torchvision);
  RUN(test_jitter_of_a_grey_image_spans_the_brightness_range);
  RUN(test_rotation_is_nearest_neighbour_with_zero_fill);
  RUN(test_balanced_subset_has_equal_class_counts_and_is_seeded);
  RUN(test_validation_split_is_disjoint_and_complete);
  RUN(test_gaussian_mixture_has_the_stated_moments);
  RUN(test_stats_match_hand_computed_values);
  return wt_finish();
}
