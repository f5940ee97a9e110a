/* Saliency gradients (PAPER.md section 6): the gradient of a loss with respect to the input image,
 * for the MI loss of an encoder, the cross-entropy of a classifier, or one channel of one encoder
 * layer. An objective like dim.c's and clf.c's; src/report/saliency.c turns the gradients into maps. */
#include "wcmi/saliency.h"
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
