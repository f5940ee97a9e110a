/* Saliency maps (PAPER.md section 6): the gradient of a loss with respect to the input image, for the
 * MI loss of an encoder, the cross-entropy of a classifier, or one channel of one encoder layer. */
#include "wcmi/report.h"
#include "wcmi/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int wcmi_saliency_parse_loss(wcmi_ctx *ctx, const char *name, wcmi_saliency_loss *out) {
  if (name && !strcmp(name, "mi")) *out = WCMI_SALIENCY_MI;
  else if (name && !strcmp(name, "ce")) *out = WCMI_SALIENCY_CE;
  else if (name && !strcmp(name, "feature")) *out = WCMI_SALIENCY_FEATURE;
  else return wcmi_fail(ctx, WCMI_EINVAL, "unknown saliency loss '%s' (expected mi, ce or feature)", name ? name : "(null)");
  return WCMI_OK;
}

static int name_in_block(const char *layer, const char *block) {
  size_t n = strlen(block);
  return !strncmp(layer, block, n) && layer[n] == '.';
}

int wcmi_saliency_find_layer(wcmi_ctx *ctx, const wcmi_net *net, const char *name, int *index) {
  const int L = wcmi_net_num_layers(net);
  if (!name || !*name) return wcmi_fail(ctx, WCMI_EINVAL, "saliency: no layer name given");
  /* "encoder.layer1.0" names the same layer as "layer1.0". */
  if (!strncmp(name, "encoder.", 8)) name += 8;
  int exact = -1, exact_count = 0, block_last = -1;
  for (int i = 0; i < L; i++) {
    const char *ln = wcmi_net_layer_name(net, i);
    if (!strcmp(ln, name)) exact = i, exact_count++;
    if (name_in_block(ln, name)) block_last = i;
  }
  if (exact_count == 1) {
    *index = exact;
    return WCMI_OK;
  }
  if (exact_count == 0 && block_last >= 0) {
    /* A PyTorch Sequential block "layerK" = (conv, BN, ReLU): its output is the ReLU's, and wcmi's
     * ReLU layers are unnamed ("relu"), so it follows the block's last named layer. */
    if (block_last + 1 < L && !strcmp(wcmi_net_layer_name(net, block_last + 1), "relu")) block_last++;
    *index = block_last;
    return WCMI_OK;
  }
  char names[384];
  size_t w = 0;
  names[0] = '\0';
  for (int i = 0; i < L && w + 1 < sizeof names; i++) {
    const char *ln = wcmi_net_layer_name(net, i);
    if (!strcmp(ln, "relu") || !strcmp(ln, "flatten") || !strcmp(ln, "normalize") || !strcmp(ln, "dropout")) continue;
    int k = snprintf(names + w, sizeof names - w, "%s%s", w ? ", " : "", ln);
    if (k < 0) break;
    w += (size_t)k;
  }
  return wcmi_fail(ctx, WCMI_EINVAL, "saliency: layer '%s' %s in the encoder (layers: %s; blocks layer0..layer2)", name,
                   exact_count > 1 ? "is ambiguous" : "not found", names);
}

/* Feature saliency: d/dx of sum_i mean_s act[i, channel, s] at layer `li`, by a backward pass that
 * starts at that layer with dy = 1/S on the channel and 0 elsewhere. */
static int feature_gradient(wcmi_ctx *ctx, wcmi_model *m, const wcmi_saliency_cfg *cfg, const float *x, int N,
                            float *grad) {
  int li;
  int rc = wcmi_saliency_find_layer(ctx, m->encoder, cfg->layer, &li);
  if (rc) return rc;
  if (!wcmi_net_forward(m->encoder, x, N, 0)) return ctx->status ? ctx->status : WCMI_EINVAL;
  wcmi_shape s;
  if (!wcmi_net_layer_output(m->encoder, li, &s)) return wcmi_fail(ctx, WCMI_EINVAL, "saliency: no output for layer %d", li);
  const int64_t C = s.d[0], per = wcmi_shape_numel(&s), S = per / C;
  if (cfg->channel < 0 || cfg->channel >= C)
    return wcmi_fail(ctx, WCMI_EINVAL, "saliency: channel %d outside [0, %lld) of layer '%s'", cfg->channel, (long long)C,
                     cfg->layer);
  float *dy = wcmi_calloc(ctx, (size_t)N * (size_t)per, sizeof(float));
  if (!dy) return ctx->status;
  for (int i = 0; i < N; i++)
    for (int64_t k = 0; k < S; k++) dy[(int64_t)i * per + cfg->channel * S + k] = 1.0f / (float)S;
  rc = wcmi_net_backward_from(m->encoder, li, dy, WCMI_GRAD_INPUT);
  wcmi_free(dy);
  if (rc) return rc;
  wcmi_shape in = wcmi_net_in_shape(m->encoder);
  memcpy(grad, wcmi_net_input_grad(m->encoder), (size_t)N * (size_t)wcmi_shape_numel(&in) * sizeof(float));
  return WCMI_OK;
}

static int mi_gradient(wcmi_ctx *ctx, wcmi_model *m, const wcmi_saliency_cfg *cfg, const float *x, int N,
                       float *grad) {
  if (N < 2) return wcmi_fail(ctx, WCMI_EINVAL, "saliency: the MI loss is a batch loss: need at least 2 images, got %d", N);
  wcmi_dim d;
  int rc = wcmi_dim_init(ctx, &d, m, cfg->mi, cfg->grad_both ? WCMI_PATH_BOTH : WCMI_PATH_ENCODER, N);
  if (rc) return rc;
  float loss;
  rc = wcmi_dim_step(&d, x, N, 0, 0, WCMI_DIM_INPUT, &loss, grad);
  wcmi_dim_free(&d);
  return rc;
}

static int ce_gradient(wcmi_ctx *ctx, wcmi_model *m, const float *x, const int32_t *labels, int N, float *grad) {
  if (!labels) return wcmi_fail(ctx, WCMI_EINVAL, "saliency: the cross-entropy loss needs labels");
  wcmi_clf c;
  int rc = wcmi_clf_init(ctx, &c, m, N);
  if (rc) return rc;
  float loss;
  rc = wcmi_clf_step(&c, x, labels, N, 0, 0, WCMI_CLF_INPUT, &loss, NULL, NULL, NULL, grad);
  wcmi_clf_free(&c);
  return rc;
}

int wcmi_saliency_gradient(wcmi_ctx *ctx, wcmi_model *m, const wcmi_saliency_cfg *cfg, const float *x,
                           const int32_t *labels, int N, float *grad) {
  if (!m || !m->encoder || !cfg || !x || !grad) return wcmi_fail(ctx, WCMI_EINVAL, "saliency: NULL argument");
  if (N < 1 || N > wcmi_net_max_batch(m->encoder))
    return wcmi_fail(ctx, WCMI_EINVAL, "saliency: %d images outside [1, %d] (the model's batch size)", N,
                     wcmi_net_max_batch(m->encoder));
  switch (cfg->loss) {
  case WCMI_SALIENCY_MI:
    if (!m->local || !m->global)
      return wcmi_fail(ctx, WCMI_EINVAL, "saliency: --loss mi needs a model with MI estimators (hsize > 0), e.g. a "
                                         "train-encoder result");
    return mi_gradient(ctx, m, cfg, x, N, grad);
  case WCMI_SALIENCY_CE:
    if (!m->classifier)
      return wcmi_fail(ctx, WCMI_EINVAL, "saliency: --loss ce needs a model with a classifier head (train-classifier "
                                         "or train-model result)");
    return ce_gradient(ctx, m, x, labels, N, grad);
  case WCMI_SALIENCY_FEATURE:
    return feature_gradient(ctx, m, cfg, x, N, grad);
  }
  return wcmi_fail(ctx, WCMI_EINVAL, "saliency: unknown loss %d", (int)cfg->loss);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

void wcmi_saliency_normalize(const float *grad, int N, int C, int H, int W, float *map, float *scratch) {
  const int64_t P = (int64_t)H * W;
  for (int i = 0; i < N; i++) {
    const float *g = grad + (int64_t)i * C * P;
    float *a = map + (int64_t)i * P;
    for (int64_t p = 0; p < P; p++) {
      float s = 0.0f;
      for (int c = 0; c < C; c++) s += fabsf(g[(int64_t)c * P + p]);
      a[p] = isfinite(s) ? s : 0.0f;
    }
    memcpy(scratch, a, (size_t)P * sizeof(float));
    qsort(scratch, (size_t)P, sizeof(float), cmp_float);
    /* Nearest rank: the smallest value with at least 99% of the pixels at or below it. Dividing by
     * it rather than by the maximum keeps one extreme pixel from turning the rest of the map black. */
    int64_t rank = (int64_t)ceil(0.99 * (double)P) - 1;
    if (rank < 0) rank = 0;
    float q = scratch[rank];
    if (!(q > 0.0f)) q = scratch[P - 1];
    for (int64_t p = 0; p < P; p++) a[p] = q > 0.0f ? fminf(1.0f, a[p] / q) : 0.0f;
  }
}

void wcmi_saliency_color(float v, uint8_t rgb[3]) {
  if (!(v > 0.0f)) v = 0.0f;
  if (v > 1.0f) v = 1.0f;
  /* black -> red -> yellow -> white: monotone in brightness, so it also reads in greyscale. */
  float r = fminf(1.0f, 3.0f * v), g = fminf(1.0f, fmaxf(0.0f, 3.0f * v - 1.0f)),
        b = fminf(1.0f, fmaxf(0.0f, 3.0f * v - 2.0f));
  rgb[0] = (uint8_t)lrintf(255.0f * r);
  rgb[1] = (uint8_t)lrintf(255.0f * g);
  rgb[2] = (uint8_t)lrintf(255.0f * b);
}

void wcmi_saliency_grid_size(int N, int H, int W, int n_models, int scale, int pad, int *grid_w, int *grid_h) {
  *grid_w = N * W * scale + (N + 1) * pad;
  *grid_h = (1 + n_models) * H * scale + (2 + n_models) * pad;
}

static uint8_t to_u8(float v) {
  if (!(v > 0.0f)) return 0;
  if (v >= 1.0f) return 255;
  return (uint8_t)lrintf(255.0f * v);
}

int wcmi_saliency_grid(wcmi_ctx *ctx, const float *x, int N, int C, int H, int W, const float *const *maps,
                       int n_models, int scale, int pad, uint8_t *out) {
  if (N < 1 || H < 1 || W < 1 || n_models < 0 || scale < 1 || pad < 0 || (C != 1 && C != 3))
    return wcmi_fail(ctx, WCMI_EINVAL, "saliency grid: bad sizes (N %d, C %d, H %d, W %d, models %d, scale %d, pad %d)",
                     N, C, H, W, n_models, scale, pad);
  int gw, gh;
  wcmi_saliency_grid_size(N, H, W, n_models, scale, pad, &gw, &gh);
  memset(out, 255, (size_t)gw * (size_t)gh * 3);
  const int64_t P = (int64_t)H * W;
  for (int row = 0; row <= n_models; row++)
    for (int i = 0; i < N; i++) {
      int x0 = pad + i * (W * scale + pad), y0 = pad + row * (H * scale + pad);
      for (int yy = 0; yy < H * scale; yy++)
        for (int xx = 0; xx < W * scale; xx++) {
          int64_t p = (int64_t)(yy / scale) * W + xx / scale;
          uint8_t *o = out + ((size_t)(y0 + yy) * (size_t)gw + (size_t)(x0 + xx)) * 3;
          if (row == 0) {
            const float *img = x + (int64_t)i * C * P;
            for (int k = 0; k < 3; k++) o[k] = to_u8(img[(C == 3 ? k : 0) * P + p]);
          } else {
            wcmi_saliency_color(maps[row - 1][(int64_t)i * P + p], o);
          }
        }
    }
  return WCMI_OK;
}
