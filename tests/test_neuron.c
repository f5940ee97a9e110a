/* The per-neuron "patch prefix": a channel's activation computed from its receptive-field patch
 * alone equals the full-image encoder's value at that location (borders included, where the padding
 * of every conv matters), and its input gradient matches finite differences and is zero on padding. */
#include "harness.h"
#include "train/neuron_prefix.h"

#include <string.h>

/* BatchNorm statistics away from (0, 1) and non-zero betas: then BN(0) != 0, so treating the
 * padding of a deeper conv as an activation (instead of a zero) would show. */
static void randomize_bn(wcmi_net *enc, uint64_t seed) {
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  for (int i = 0; i < wcmi_net_num_params(enc); i++) {
    wcmi_param *p = wcmi_net_param(enc, i);
    const char *leaf = strrchr(p->name, '.');
    if (!strstr(p->name, ".1.") || !leaf || p->kind == WCMI_PARAM_COUNTER) continue;
    int64_t n = wcmi_shape_numel(&p->shape);
    for (int64_t j = 0; j < n; j++) {
      if (!strcmp(leaf, ".running_mean")) p->data[j] = wcmi_rng_uniform_range(&r, -0.3f, 0.3f);
      else if (!strcmp(leaf, ".running_var")) p->data[j] = wcmi_rng_uniform_range(&r, 0.2f, 2.0f);
      else if (!strcmp(leaf, ".weight")) p->data[j] = wcmi_rng_uniform_range(&r, 0.5f, 1.5f);
      else if (!strcmp(leaf, ".bias")) p->data[j] = wcmi_rng_uniform_range(&r, -0.5f, 0.5f);
    }
  }
}

static int layer_by_name(const wcmi_net *net, const char *name) {
  for (int i = 0; i < wcmi_net_num_layers(net); i++)
    if (!strcmp(wcmi_net_layer_name(net, i), name)) return i;
  return -1;
}

/* One image of `dataset` geometry with pixels in [0.1, 0.9]. */
static void one_image(wcmi_ctx *ctx, const wcmi_model *m, wcmi_dataset *d, uint64_t seed) {
  CHECK_OK(ctx, wcmi_dataset_alloc(ctx, d, m->dataset, 1, m->in.C, m->in.H, m->in.W, 10));
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  for (int64_t i = 0; i < wcmi_dataset_sample_size(d); i++) d->images[i] = wcmi_rng_uniform_range(&r, 0.1f, 0.9f);
}

static void check_layer_matches_encoder(const char *dataset, int k) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, dataset, 0, WCMI_HEAD_NONE, 1, 21));
  randomize_bn(m.encoder, 22);
  wcmi_dataset d;
  one_image(&ctx, &m, &d, 23);
  const float *unused = wcmi_net_forward(m.encoder, d.images, 1, 0);
  CHECK(unused != NULL);
  char bn[32];
  snprintf(bn, sizeof bn, "layer%d.1", k);
  wcmi_shape s;
  const float *full = wcmi_net_layer_output(m.encoder, layer_by_name(m.encoder, bn), &s);
  CHECK(full != NULL);
  neuron_prefix p;
  const int locs = full ? (int)s.d[1] : 1;
  CHECK_OK(&ctx, neuron_prefix_init(&ctx, &p, &m, k, locs * locs));
  CHECK(p.locs == locs);
  CHECK(p.r == (k == 0 ? 4 : k == 1 ? 10 : 22)); /* receptive fields of the basic encoder's convs */
  neuron_patches ps;
  CHECK_OK(&ctx, neuron_cut_patches(&ctx, &p, &d, 1 << 20, 1, 2, &ps));
  CHECK(ps.n == (int64_t)locs * locs);
  double worst = 0;
  const int chans[3] = {0, 7, (int)s.d[0] - 1};
  for (int t = 0; full && t < 3; t++) {
    p.channel = chans[t];
    neuron_prefix_set_masks(&p, ps.loc, (int)ps.n);
    neuron_prefix_forward(&p, ps.x, (int)ps.n);
    for (int64_t i = 0; i < ps.n; i++) {
      const double want = full[(int64_t)chans[t] * locs * locs + ps.loc[i]];
      const double diff = fabs(p.act[i] - want) / (1.0 + fabs(want));
      if (diff > worst) worst = diff;
    }
  }
  CHECK_MSG(worst < 1e-4, "%s layer%d.0: patch prefix differs from the full image by %g (relative)", dataset, k, worst);
  neuron_patches_free(&ps);
  neuron_prefix_free(&p);
  wcmi_dataset_free(&d);
  wcmi_model_free(&m);
}

static void test_patch_activation_equals_full_image_activation_fashion_mnist(void) {
  for (int k = 0; k < 3; k++) check_layer_matches_encoder("fashion-mnist", k);
}

/* CIFAR-10: 3 channels, 32x32 and a non-zero normalization mean (the first conv's zero padding is a
 * zero of the normalized input, i.e. the pixel value `mean`). */
static void test_patch_activation_equals_full_image_activation_cifar(void) {
  for (int k = 0; k < 3; k++) check_layer_matches_encoder("cifar10", k);
}

static void test_patch_gradient_matches_finite_difference_and_skips_padding(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", 0, WCMI_HEAD_NONE, 1, 31));
  randomize_bn(m.encoder, 32);
  wcmi_dataset d;
  one_image(&ctx, &m, &d, 33);
  neuron_prefix p;
  CHECK_OK(&ctx, neuron_prefix_init(&ctx, &p, &m, 1, 49));
  neuron_patches ps;
  CHECK_OK(&ctx, neuron_cut_patches(&ctx, &p, &d, 49, 1, 2, &ps));
  const int N = (int)ps.n, D = p.C * p.r * p.r;
  p.channel = 3;
  neuron_prefix_set_masks(&p, ps.loc, N);
  float *w = malloc((size_t)N * sizeof *w), *g = malloc((size_t)N * D * sizeof *g), *xp = malloc((size_t)N * D * sizeof *xp);
  wcmi_rng r;
  wcmi_rng_seed(&r, 34);
  for (int i = 0; i < N; i++) w[i] = wcmi_rng_uniform_range(&r, -1.0f, 1.0f);
  neuron_prefix_forward(&p, ps.x, N);
  neuron_prefix_backward(&p, w, N, g);
  /* f(x) = sum_i w_i act_i is piecewise linear: the central difference along the gradient is |g|
   * unless a step crosses a ReLU kink, which h = 1e-3 (whole batch) makes unlikely. */
  double gn = 0;
  for (int64_t i = 0; i < (int64_t)N * D; i++) gn += (double)g[i] * g[i];
  gn = sqrt(gn);
  CHECK(gn > 1e-3);
  const double h = 1e-3;
  double f[2];
  for (int sgn = 0; sgn < 2; sgn++) {
    for (int64_t i = 0; i < (int64_t)N * D; i++) xp[i] = ps.x[i] + (float)((sgn ? -h : h) * g[i] / gn);
    neuron_prefix_forward(&p, xp, N);
    f[sgn] = 0;
    for (int i = 0; i < N; i++) f[sgn] += (double)w[i] * p.act[i];
  }
  CHECK_CLOSE((f[0] - f[1]) / (2 * h), gn, 0, 0.01);
  /* Padding pixels (outside the image) get no gradient; location 0 (top-left) has some. */
  int pad = 0, pad_nonzero = 0;
  for (int i = 0; i < N; i++) {
    const int oy = ps.loc[i] / p.locs, ox = ps.loc[i] % p.locs;
    const int sy = neuron_patch_start(&p, oy), sx = neuron_patch_start(&p, ox);
    for (int u = 0; u < p.r; u++)
      for (int v = 0; v < p.r; v++)
        if (sy + u < 0 || sy + u >= 28 || sx + v < 0 || sx + v >= 28) {
          pad++;
          pad_nonzero += g[(int64_t)i * D + u * p.r + v] != 0.0f;
        }
  }
  CHECK(pad > 0);
  CHECK(pad_nonzero == 0);
  free(w);
  free(g);
  free(xp);
  neuron_patches_free(&ps);
  neuron_prefix_free(&p);
  wcmi_dataset_free(&d);
  wcmi_model_free(&m);
}

static void test_layer_names(void) {
  CHECK(neuron_layer_index("layer0.0") == 0);
  CHECK(neuron_layer_index("layer1.0") == 1);
  CHECK(neuron_layer_index("layer2.0") == 2);
  CHECK(neuron_layer_index("layer4.0") == -1); /* linear, not a conv */
  CHECK(neuron_layer_index("layer1.1") == -1);
}

int main(void) {
  RUN(test_layer_names);
  RUN(test_patch_activation_equals_full_image_activation_fashion_mnist);
  RUN(test_patch_activation_equals_full_image_activation_cifar);
  RUN(test_patch_gradient_matches_finite_difference_and_skips_padding);
  return wt_finish();
}
