/* Saliency maps, the SVG chart writer and the HTML report. Gradients are checked against central
 * differences of the same losses (eval mode, so the losses are deterministic functions of x). */
#include "harness.h"
#include "wcmi/io.h"
#include "wcmi/report.h"
#include "wcmi/train.h"

#include <string.h>

static wcmi_ctx ctx;

enum { NB = 3, C1 = 1, HW = 28, D = C1 * HW * HW };

static void fill_images(float *x, int n, uint64_t seed) {
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  /* Inside (0, 1) with a margin, so +-h never crosses the normalize layer's clamp. */
  for (int i = 0; i < n; i++) x[i] = wcmi_rng_uniform_range(&r, 0.1f, 0.9f);
}

/* Feature objective as saliency defines it: sum over samples of the channel's mean activation. */
static double feature_objective(wcmi_model *m, int li, int ch, const float *x, int N) {
  wcmi_net_forward(m->encoder, x, N, 0);
  wcmi_shape s;
  const float *a = wcmi_net_layer_output(m->encoder, li, &s);
  int64_t per = wcmi_shape_numel(&s), S = per / s.d[0];
  double sum = 0;
  for (int i = 0; i < N; i++)
    for (int64_t k = 0; k < S; k++) sum += a[i * per + ch * S + k];
  return sum / (double)S;
}

static double mi_objective(wcmi_model *m, const float *x, int N) {
  wcmi_dim d;
  float loss = 0;
  wcmi_dim_init(&ctx, &d, m, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, N);
  wcmi_dim_step(&d, x, N, 0, 0, 0, &loss, NULL);
  wcmi_dim_free(&d);
  return loss;
}

static double ce_objective(wcmi_model *m, const float *x, const int32_t *y, int N) {
  wcmi_clf c;
  float loss = 0;
  wcmi_clf_init(&ctx, &c, m, N);
  wcmi_clf_step(&c, x, y, N, 0, 0, 0, &loss, NULL, NULL, NULL, NULL);
  wcmi_clf_free(&c);
  return loss;
}

/* Compares grad with central differences at the `count` pixels of largest |grad|. */
static void check_against_differences(wcmi_model *m, const wcmi_saliency_cfg *cfg, const int32_t *y, float *x,
                                      const float *grad, int li) {
  double gmax = 0;
  for (int i = 0; i < NB * D; i++) gmax = fmax(gmax, fabs(grad[i]));
  CHECK_MSG(gmax > 0, "gradient is all zero");
  for (int pick = 0; pick < 6; pick++) {
    /* a spread of pixels: the largest few and some arbitrary ones */
    int idx = 0;
    if (pick < 3) {
      double best = -1;
      for (int i = pick * (NB * D / 3); i < (pick + 1) * (NB * D / 3); i++)
        if (fabs(grad[i]) > best) best = fabs(grad[i]), idx = i;
    } else {
      idx = (pick * 977 + 131) % (NB * D);
    }
    const float h = 2e-3f, x0 = x[idx];
    double f[2];
    for (int s = 0; s < 2; s++) {
      x[idx] = x0 + (s ? -h : h);
      f[s] = cfg->loss == WCMI_SALIENCY_FEATURE ? feature_objective(m, li, cfg->channel, x, NB)
             : cfg->loss == WCMI_SALIENCY_MI    ? mi_objective(m, x, NB)
                                                : ce_objective(m, x, y, NB);
    }
    x[idx] = x0;
    double fd = (f[0] - f[1]) / (2.0 * h);
    /* float32 forward: differences carry ~1e-6/h relative noise; ReLU kinks are rare at h = 2e-3. */
    CHECK_CLOSE(grad[idx], fd, 0.03 * gmax + 1e-4, 0.03);
  }
}

static void gradient_case(wcmi_saliency_loss loss, wcmi_head_kind head, int hsize) {
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", hsize, head, NB, 7));
  float *x = malloc(sizeof(float) * NB * D), *g = malloc(sizeof(float) * NB * D);
  int32_t y[NB] = {3, 0, 9};
  fill_images(x, NB * D, 11);
  /* The differences move x in both critic inputs, so compare with the full gradient path. */
  wcmi_saliency_cfg cfg = {loss, wcmi_mi_default_cfg(), 1, "layer1", 5};
  int li = -1;
  CHECK_OK(&ctx, wcmi_saliency_find_layer(&ctx, m.encoder, "layer1", &li));
  CHECK_OK(&ctx, wcmi_saliency_gradient(&ctx, &m, &cfg, x, y, NB, g));
  check_against_differences(&m, &cfg, y, x, g, li);
  free(x);
  free(g);
  wcmi_model_free(&m);
}

static void test_feature_saliency_matches_differences(void) { gradient_case(WCMI_SALIENCY_FEATURE, WCMI_HEAD_NONE, 0); }
static void test_mi_saliency_matches_differences(void) { gradient_case(WCMI_SALIENCY_MI, WCMI_HEAD_NONE, 8); }
static void test_ce_saliency_matches_differences(void) { gradient_case(WCMI_SALIENCY_CE, WCMI_HEAD_LINEAR, 0); }

/* Sample i's feature map depends on x_i only (eval mode): its gradient is zero on other images. */
static void test_feature_saliency_is_per_image(void) {
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", 0, WCMI_HEAD_NONE, NB, 3));
  float *x = malloc(sizeof(float) * NB * D), *g1 = malloc(sizeof(float) * NB * D), *g3 = malloc(sizeof(float) * NB * D);
  fill_images(x, NB * D, 5);
  wcmi_saliency_cfg cfg = {WCMI_SALIENCY_FEATURE, wcmi_mi_default_cfg(), 0, "layer0.0", 2};
  CHECK_OK(&ctx, wcmi_saliency_gradient(&ctx, &m, &cfg, x, NULL, NB, g3));
  CHECK_OK(&ctx, wcmi_saliency_gradient(&ctx, &m, &cfg, x + D, NULL, 1, g1));
  double diff = 0;
  for (int i = 0; i < D; i++) diff = fmax(diff, fabs(g1[i] - g3[D + i]));
  CHECK_CLOSE(diff, 0.0, 1e-6, 0);
  free(x);
  free(g1);
  free(g3);
  wcmi_model_free(&m);
}

static void test_find_layer_names_and_blocks(void) {
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", 0, WCMI_HEAD_NONE, 2, 1));
  int i = -1;
  CHECK_OK(&ctx, wcmi_saliency_find_layer(&ctx, m.encoder, "layer1.0", &i));
  CHECK(!strcmp(wcmi_net_layer_name(m.encoder, i), "layer1.0"));
  int j = -1;
  CHECK_OK(&ctx, wcmi_saliency_find_layer(&ctx, m.encoder, "encoder.layer1.0", &j));
  CHECK(i == j);
  /* the block = conv, BN, ReLU: its output is the ReLU after layer1.1 */
  CHECK_OK(&ctx, wcmi_saliency_find_layer(&ctx, m.encoder, "layer1", &j));
  CHECK(j == i + 2 && !strcmp(wcmi_net_layer_name(m.encoder, j), "relu"));
  CHECK(wcmi_saliency_find_layer(&ctx, m.encoder, "relu", &j) == WCMI_EINVAL);
  CHECK(strstr(ctx.msg, "ambiguous") != NULL);
  CHECK(wcmi_saliency_find_layer(&ctx, m.encoder, "layer9", &j) == WCMI_EINVAL);
  CHECK(strstr(ctx.msg, "layer9") != NULL && strstr(ctx.msg, "layer4.0") != NULL);
  wcmi_model_free(&m);
}

static void test_missing_parts_are_clear_errors(void) {
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", 0, WCMI_HEAD_NONE, 2, 1));
  float x[2 * D], g[2 * D];
  int32_t y[2] = {0, 1};
  fill_images(x, 2 * D, 2);
  wcmi_saliency_cfg cfg = {WCMI_SALIENCY_MI, wcmi_mi_default_cfg(), 0, NULL, 0};
  CHECK(wcmi_saliency_gradient(&ctx, &m, &cfg, x, y, 2, g) == WCMI_EINVAL && strstr(ctx.msg, "estimators"));
  cfg.loss = WCMI_SALIENCY_CE;
  CHECK(wcmi_saliency_gradient(&ctx, &m, &cfg, x, y, 2, g) == WCMI_EINVAL && strstr(ctx.msg, "head"));
  cfg.loss = WCMI_SALIENCY_FEATURE;
  cfg.layer = "layer0.0";
  cfg.channel = 64;
  CHECK(wcmi_saliency_gradient(&ctx, &m, &cfg, x, y, 2, g) == WCMI_EINVAL && strstr(ctx.msg, "channel 64"));
  CHECK(wcmi_saliency_gradient(&ctx, &m, &cfg, x, y, 3, g) == WCMI_EINVAL);
  wcmi_saliency_loss l;
  CHECK(wcmi_saliency_parse_loss(&ctx, "feature", &l) == 0 && l == WCMI_SALIENCY_FEATURE);
  CHECK(wcmi_saliency_parse_loss(&ctx, "grad", &l) == WCMI_EINVAL);
  wcmi_model_free(&m);
}

/* |g| summed over channels / 99th percentile, clipped: a 10x10 image with one huge outlier keeps
 * the other pixels' relative scale (the outlier alone is clipped). */
static void test_normalize_divides_by_99th_percentile(void) {
  enum { H = 10, W = 10, P = H * W };
  float g[2 * P], map[P], scratch[P];
  for (int p = 0; p < P; p++) {
    g[p] = (float)(p + 1) * 0.5f;      /* channel 0 */
    g[P + p] = -(float)(p + 1) * 0.5f; /* channel 1: sign does not matter */
  }
  g[P - 1] = 1e6f; /* outlier */
  wcmi_saliency_normalize(g, 1, 2, H, W, map, scratch);
  /* a[p] = p + 1 for p < 99; nearest-rank 99th percentile of 100 values is the 99th smallest = 99 */
  CHECK_CLOSE(map[0], 1.0 / 99.0, 1e-6, 0);
  CHECK_CLOSE(map[49], 50.0 / 99.0, 1e-6, 0);
  CHECK_CLOSE(map[98], 1.0, 1e-6, 0);
  CHECK_CLOSE(map[99], 1.0, 0, 0);
  float zero[P] = {0};
  wcmi_saliency_normalize(zero, 1, 1, H, W, map, scratch);
  for (int p = 0; p < P; p++) CHECK(map[p] == 0.0f);
  /* one non-zero pixel: the percentile is 0, so the maximum is used */
  zero[7] = -3.0f;
  wcmi_saliency_normalize(zero, 1, 1, H, W, map, scratch);
  CHECK(map[7] == 1.0f && map[6] == 0.0f);
}

static void test_grid_layout_rows_and_columns(void) {
  enum { N = 4, H = 5, W = 6, M = 2, S = 2, PAD = 3 };
  int gw, gh;
  wcmi_saliency_grid_size(N, H, W, M, S, PAD, &gw, &gh);
  CHECK(gw == N * W * S + (N + 1) * PAD && gh == (1 + M) * H * S + (2 + M) * PAD);
  float x[N * H * W], m0[N * H * W], m1[N * H * W];
  for (int i = 0; i < N * H * W; i++) x[i] = 0.5f, m0[i] = 0.0f, m1[i] = 1.0f;
  const float *maps[M] = {m0, m1};
  uint8_t *px = malloc((size_t)gw * gh * 3);
  CHECK_OK(&ctx, wcmi_saliency_grid(&ctx, x, N, 1, H, W, maps, M, S, PAD, px));
  /* top-left corner is padding (white); first tile grey; row 1 black; row 2 white-hot */
  CHECK(px[0] == 255);
  const uint8_t *t0 = px + ((size_t)PAD * gw + PAD) * 3;
  CHECK(t0[0] == 128 && t0[1] == 128 && t0[2] == 128);
  const uint8_t *t1 = px + ((size_t)(2 * PAD + H * S) * gw + PAD) * 3;
  CHECK(t1[0] == 0 && t1[1] == 0 && t1[2] == 0);
  const uint8_t *t2 = px + ((size_t)(3 * PAD + 2 * H * S) * gw + gw - PAD - 1) * 3;
  CHECK(t2[0] == 255 && t2[1] == 255 && t2[2] == 255);
  free(px);
  uint8_t rgb[3];
  wcmi_saliency_color(0.5f, rgb);
  CHECK(rgb[0] == 255 && rgb[1] == 128 && rgb[2] == 0);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, 1);
  RUN(test_feature_saliency_matches_differences);
  RUN(test_mi_saliency_matches_differences);
  RUN(test_ce_saliency_matches_differences);
  RUN(test_feature_saliency_is_per_image);
  RUN(test_find_layer_names_and_blocks);
  RUN(test_missing_parts_are_clear_errors);
  RUN(test_normalize_divides_by_99th_percentile);
  RUN(test_grid_layout_rows_and_columns);
  return wt_finish();
}
