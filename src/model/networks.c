/* Builders for the paper's encoder and classifier heads (PAPER.md section 3), with PyTorch module
 * names. The MI critics are built in the estimator room (src/estimator/critics.c). */
#include "model/build.h"
#include "wcmi/model.h"

#include <string.h>


int wcmi_input_spec_for(wcmi_ctx *ctx, const char *dataset, wcmi_input_spec *s) {
  memset(s, 0, sizeof *s);
  if (!strcmp(dataset, "mnist") || !strcmp(dataset, "fashion-mnist") || !strcmp(dataset, "gaussian")) {
    *s = (wcmi_input_spec){1, 28, 28, {0, 0, 0}, {1, 1, 1}};
  } else if (!strcmp(dataset, "cifar10")) {
    *s = (wcmi_input_spec){3, 32, 32, {0.4914f, 0.4822f, 0.4465f}, {0.2023f, 0.1994f, 0.2010f}};
  } else if (!strcmp(dataset, "svhn")) {
    *s = (wcmi_input_spec){3, 32, 32, {0, 0, 0}, {1, 1, 1}};
  } else {
    return wcmi_fail(ctx, WCMI_EINVAL, "unknown dataset '%s' (expected mnist, fashion-mnist, svhn or cifar10)", dataset);
  }
  return WCMI_OK;
}

const char *wcmi_head_name(wcmi_head_kind k) {
  return k == WCMI_HEAD_LINEAR ? "linear" : k == WCMI_HEAD_MLP ? "mlp" : "none";
}

int wcmi_head_parse(wcmi_ctx *ctx, const char *s, wcmi_head_kind *out) {
  if (!strcmp(s, "linear")) *out = WCMI_HEAD_LINEAR;
  else if (!strcmp(s, "mlp")) *out = WCMI_HEAD_MLP;
  else return wcmi_fail(ctx, WCMI_EINVAL, "unknown head '%s' (expected linear or mlp)", s);
  return WCMI_OK;
}

const char *wcmi_encoder_name(wcmi_encoder_kind k) { return k == WCMI_ENCODER_PIXELS ? "pixels" : "basic"; }

int wcmi_encoder_parse(wcmi_ctx *ctx, const char *s, wcmi_encoder_kind *out) {
  if (!strcmp(s, "basic")) *out = WCMI_ENCODER_BASIC;
  else if (!strcmp(s, "pixels")) *out = WCMI_ENCODER_PIXELS;
  else return wcmi_fail(ctx, WCMI_EINVAL, "unknown encoder '%s' (expected basic or pixels)", s);
  return WCMI_OK;
}

/* Finalizes or frees: builders chain calls with `rc = rc ? rc : f(...)` and end here. */
wcmi_net *wcmi_build_finish(wcmi_net *net, int rc, int max_batch, wcmi_rng *rng) {
  if (!rc) rc = wcmi_net_finalize(net, max_batch, rng);
  if (rc) {
    wcmi_net_free(net);
    return NULL;
  }
  return net;
}

int wcmi_build_conv_stage(wcmi_net *net, int layer, int out_ch) {
  char conv[32], bn[32];
  snprintf(conv, sizeof conv, "layer%d.0", layer);
  snprintf(bn, sizeof bn, "layer%d.1", layer);
  int rc = wcmi_net_add_conv2d(net, conv, out_ch, 4, 2, 1, 0);
  rc = rc ? rc : wcmi_net_add_batchnorm(net, bn);
  return rc ? rc : wcmi_net_add_relu(net);
}

wcmi_net *wcmi_build_encoder(wcmi_ctx *ctx, const wcmi_input_spec *in, int max_batch, wcmi_rng *rng) {
  wcmi_net *net = wcmi_net_new(ctx, "encoder", wcmi_shape3(in->C, in->H, in->W));
  if (!net) return NULL;
  int rc = wcmi_net_add_normalize(net, in->C, in->mean, in->std);
  rc = rc ? rc : wcmi_build_conv_stage(net, 0, 64);
  rc = rc ? rc : wcmi_build_conv_stage(net, 1, 128);
  rc = rc ? rc : wcmi_build_conv_stage(net, 2, 256);
  rc = rc ? rc : wcmi_net_add_flatten(net);
  rc = rc ? rc : wcmi_net_add_linear(net, "layer4.0", 1024, 1);
  rc = rc ? rc : wcmi_net_add_batchnorm(net, "layer4.1");
  rc = rc ? rc : wcmi_net_add_relu(net);
  rc = rc ? rc : wcmi_net_add_linear(net, "layer5", WCMI_ZDIM, 1);
  return wcmi_build_finish(net, rc, max_batch, rng);
}

wcmi_net *wcmi_build_pixels_encoder(wcmi_ctx *ctx, const wcmi_input_spec *in, int max_batch, wcmi_rng *rng) {
  wcmi_net *net = wcmi_net_new(ctx, "encoder", wcmi_shape3(in->C, in->H, in->W));
  if (!net) return NULL;
  /* The same normalization as the basic encoder's first step, so both see the same inputs. */
  int rc = wcmi_net_add_normalize(net, in->C, in->mean, in->std);
  rc = rc ? rc : wcmi_net_add_flatten(net);
  return wcmi_build_finish(net, rc, max_batch, rng);
}

wcmi_net *wcmi_build_head(wcmi_ctx *ctx, wcmi_head_kind kind, int zdim, int classes, int max_batch, wcmi_rng *rng) {
  wcmi_net *net = wcmi_net_new(ctx, "classifier", wcmi_shape1(zdim));
  if (!net) return NULL;
  int rc;
  if (kind == WCMI_HEAD_LINEAR) {
    rc = wcmi_net_add_linear(net, "layer0", classes, 1);
  } else if (kind == WCMI_HEAD_MLP) {
    rc = wcmi_net_add_linear(net, "layer0.0", 200, 1);
    rc = rc ? rc : wcmi_net_add_dropout(net, 0.1f);
    rc = rc ? rc : wcmi_net_add_batchnorm(net, "layer0.2");
    rc = rc ? rc : wcmi_net_add_relu(net);
    rc = rc ? rc : wcmi_net_add_linear(net, "layer1.0", classes, 1);
  } else {
    rc = wcmi_fail(ctx, WCMI_EINVAL, "head: unknown kind %d", (int)kind);
  }
  return wcmi_build_finish(net, rc, max_batch, rng);
}
