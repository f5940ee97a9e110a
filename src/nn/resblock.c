/* The residual 1x1 block of PAPER.md section 3 (Deep InfoMax's "NopNet" block):
 *   y = LayerNorm_H( conv1x1_bias(ReLU(BN(conv1x1(x)))) + shortcut(x) )
 * over a (C, h, w) map, with LayerNorm over the channel axis at every location. The shortcut is a
 * bias-free 1x1 conv initialized near the identity so the block starts as (normalized) pass-through. */
#include "nn/batchnorm_internal.h"
#include "nn/conv2d_internal.h"
#include "nn/net_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const float BN_MOMENTUM = 0.1f, BN_EPS = 1e-5f, LN_EPS = 1e-5f;

static void sub_name(const char *name, const char *sub, char *out, size_t n) {
  snprintf(out, n, "%s%s%s", name, name[0] ? "." : "", sub);
}

static int build_conv1x1(wcmi_net *net, const char *module, int in, int out, int h, int w, int bias, conv_params *c) {
  char full[WCMI_NAME_MAX];
  net_module_name(net, module, NULL, full, sizeof full);
  c->dims = (wcmi_conv2d_dims){.N = 1, .C = in, .H = h, .W = w, .O = out, .KH = 1, .KW = 1, .stride = 1, .pad = 0};
  int rc = wcmi_conv2d_dims_init(net->ctx, full, &c->dims);
  if (rc) return rc;
  c->w = net_register_param(net, module, "weight", WCMI_PARAM_TRAINABLE, wcmi_shape4(out, in, 1, 1));
  c->b = bias ? net_register_param(net, module, "bias", WCMI_PARAM_TRAINABLE, wcmi_shape1(out)) : -1;
  return c->w < 0 || (bias && c->b < 0) ? net->ctx->status : WCMI_OK;
}

int resblock_build(wcmi_net *net, net_layer *L, const char *name, int H) {
  char full[WCMI_NAME_MAX];
  net_module_name(net, name, NULL, full, sizeof full);
  if (L->in.ndim != 3)
    return wcmi_fail(net->ctx, WCMI_EINVAL, "resblock %s: expects a (C, h, w) map (use view_map for vectors)", full);
  if (H <= 0) return wcmi_fail(net->ctx, WCMI_EINVAL, "resblock %s: H = %d must be positive", full, H);
  resblock_state *rb = wcmi_calloc(net->ctx, 1, sizeof *rb);
  if (!rb) return wcmi_fail(net->ctx, WCMI_ENOMEM, "resblock %s: out of memory", full);
  L->rb = rb;
  int in = (int)L->in.d[0], h = (int)L->in.d[1], w = (int)L->in.d[2];
  rb->in_ch = in;
  rb->H = H;
  rb->S = h * w;
  char m[WCMI_NAME_MAX];
  int rc;
  sub_name(name, "block_nonlinear.0", m, sizeof m);
  if ((rc = build_conv1x1(net, m, in, H, h, w, 0, &rb->conv0))) return rc;
  sub_name(name, "block_nonlinear.1", m, sizeof m);
  if ((rc = net_register_bn(net, m, H, &rb->bn))) return rc;
  sub_name(name, "block_nonlinear.3", m, sizeof m);
  if ((rc = build_conv1x1(net, m, H, H, h, w, 1, &rb->conv3))) return rc;
  sub_name(name, "block_ln.1", m, sizeof m);
  rb->ln_gamma = net_register_param(net, m, "weight", WCMI_PARAM_TRAINABLE, wcmi_shape1(H));
  rb->ln_beta = net_register_param(net, m, "bias", WCMI_PARAM_TRAINABLE, wcmi_shape1(H));
  sub_name(name, "linear_shortcut", m, sizeof m);
  if ((rc = build_conv1x1(net, m, in, H, h, w, 0, &rb->shortcut))) return rc;
  if (rb->ln_gamma < 0 || rb->ln_beta < 0) return net->ctx->status;
  L->out = wcmi_shape3(H, h, w);
  L->out_numel = (int64_t)H * rb->S;
  return WCMI_OK;
}

size_t resblock_workspace_floats(const net_layer *L, int max_batch) {
  const resblock_state *rb = L->rb;
  size_t ws = 0;
  const conv_params *cs[3] = {&rb->conv0, &rb->shortcut, &rb->conv3};
  for (int i = 0; i < 3; i++) {
    wcmi_conv2d_dims d = cs[i]->dims;
    d.N = max_batch;
    /* all run as plain convs; conv0 and conv3 also through the pointwise entry points */
    size_t w = wcmi_conv2d_workspace_floats(&d);
    if (w > ws) ws = w;
    if (i != 1 && (w = conv2d_pointwise_workspace_floats(&d)) > ws) ws = w;
  }
  return ws;
}

int resblock_alloc(wcmi_net *net, net_layer *L, int a_in_output) {
  resblock_state *rb = L->rb;
  size_t mb = (size_t)net->max_batch, hs = (size_t)rb->H * (size_t)rb->S;
  rb->a_in_output = a_in_output;
  rb->a = a_in_output ? NULL : wcmi_alloc(net->ctx, mb * hs, sizeof(float));
  rb->d = wcmi_alloc(net->ctx, mb * hs, sizeof(float));
  rb->bn_shift = wcmi_alloc(net->ctx, (size_t)rb->H, sizeof(float));
  rb->bn_scale = wcmi_alloc(net->ctx, (size_t)rb->H, sizeof(float));
  rb->bn_bias = wcmi_alloc(net->ctx, (size_t)rb->H, sizeof(float));
  rb->ln_mean = wcmi_alloc(net->ctx, mb * (size_t)rb->S, sizeof(float));
  rb->ln_rstd = wcmi_alloc(net->ctx, mb * (size_t)rb->S, sizeof(float));
  rb->bn.mean = wcmi_alloc(net->ctx, (size_t)rb->H, sizeof(float));
  rb->bn.rstd = wcmi_alloc(net->ctx, (size_t)rb->H, sizeof(float));
  if ((!rb->a && !a_in_output) || !rb->d || !rb->bn_shift || !rb->bn_scale || !rb->bn_bias || !rb->ln_mean ||
      !rb->ln_rstd || !rb->bn.mean || !rb->bn.rstd)
    return net->ctx->status;
  return WCMI_OK;
}

void resblock_free(net_layer *L) {
  resblock_state *rb = L->rb;
  float *bufs[] = {rb->a,        rb->d,       rb->bn_shift, rb->bn_scale, rb->bn_bias,
                   rb->ln_mean,  rb->ln_rstd, rb->bn.mean,  rb->bn.rstd};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) wcmi_free(bufs[i]);
  wcmi_free(rb);
  L->rb = NULL;
}

void resblock_init(wcmi_net *net, net_layer *L, wcmi_rng *rng) {
  resblock_state *rb = L->rb;
  int in = rb->in_ch, H = rb->H;
  float b0 = 1.0f / sqrtf((float)in), b3 = 1.0f / sqrtf((float)H);
  wcmi_init_uniform(rng, net_pdata(net, rb->conv0.w), (int64_t)H * in, b0);
  net_bn_reset(net, &rb->bn);
  wcmi_init_uniform(rng, net_pdata(net, rb->conv3.w), (int64_t)H * H, b3);
  wcmi_init_uniform(rng, net_pdata(net, rb->conv3.b), H, b3);
  float *g = net_pdata(net, rb->ln_gamma);
  for (int i = 0; i < H; i++) g[i] = 1.0f;
  /* Near-identity shortcut: small uniform noise plus ones on the diagonal (when H >= in). */
  float *sc = net_pdata(net, rb->shortcut.w);
  wcmi_init_uniform(rng, sc, (int64_t)H * in, 0.01f);
  if (H >= in)
    for (int i = 0; i < in; i++) sc[(int64_t)i * in + i] = 1.0f;
}

static wcmi_conv2d_dims with_batch(const conv_params *c, int N) {
  wcmi_conv2d_dims d = c->dims;
  d.N = N;
  return d;
}

/* Two activation maps, a and d, carry the block from forward to backward; the ReLU's output b is
 * recomputed from a where it is needed (conv3's weight gradient and the ReLU mask), which is an
 * elementwise map, cheaper to redo than to keep (at H = 2048 every map is 49 MiB per 128 samples).
 *   forward:  a = conv0(x);  d = ReLU(BN(a));  d = conv3(d) in place;  y = shortcut(x);  d += y;
 *             y = LN(d)                                        (a and d kept for backward)
 *   backward: d = dL/d(sum) by LN backward in place;  dx = shortcut backward of d;
 *             conv3 backward: weight gradient from d and ReLU(BN(a)) formed as it is read,
 *             input gradient over d in place;  ReLU mask from a;  BN backward in place;
 *             conv0 backward, its input gradient added to dx.
 * a_in_output (the last layer of a net built with wcmi_net_set_grad_in_output, when its maps exceed
 * wcmi_net.rb_recompute_min_floats): a lives in the output buffer y until the shortcut overwrites it,
 * and backward, whose dy is y, recomputes it there once LN backward has read dy: one map fewer for
 * one extra conv0 (in -> H, the block's cheapest conv) per backward. */
void resblock_forward(wcmi_net *net, net_layer *L, const float *x, float *y, int N, int train) {
  resblock_state *rb = L->rb;
  int64_t n = (int64_t)N * rb->H * rb->S;
  wcmi_conv2d_dims d0 = with_batch(&rb->conv0, N), d3 = with_batch(&rb->conv3, N), ds = with_batch(&rb->shortcut, N);
  float *a = rb->a_in_output ? y : rb->a;
#define PART(p, end) net_hook(net, L, (p), WCMI_HOOK_FORWARD, (end), N, train)
  PART(RB_PART_CONV0, 0);
  wcmi_conv2d_forward(&d0, x, net_pdata(net, rb->conv0.w), NULL, a, net->ws);
  PART(RB_PART_CONV0, 1);
  PART(RB_PART_BN_RELU, 0);
  bn_params *bn = &rb->bn;
  if (train && net_dist(net)) /* data-parallel: statistics of the global batch */
    bn_forward_train_sync(net_dist(net), N, rb->H, rb->S, a, net_pdata(net, bn->gamma), net_pdata(net, bn->beta),
                          net_pdata(net, bn->running_mean), net_pdata(net, bn->running_var),
                          net->params[bn->num_batches].i64, BN_MOMENTUM, BN_EPS, 1, rb->d, bn->mean, bn->rstd);
  else if (train)
    wcmi_batchnorm_relu_forward_train(N, rb->H, rb->S, a, net_pdata(net, bn->gamma), net_pdata(net, bn->beta),
                                      net_pdata(net, bn->running_mean), net_pdata(net, bn->running_var),
                                      net->params[bn->num_batches].i64, BN_MOMENTUM, BN_EPS, rb->d, bn->mean,
                                      bn->rstd);
  else
    wcmi_batchnorm_relu_forward_eval(N, rb->H, rb->S, a, net_pdata(net, bn->gamma), net_pdata(net, bn->beta),
                                     net_pdata(net, bn->running_mean), net_pdata(net, bn->running_var), BN_EPS,
                                     rb->d);
  PART(RB_PART_BN_RELU, 1);
  PART(RB_PART_CONV3, 0);
  conv2d_pointwise_forward(&d3, rb->d, NULL, net_pdata(net, rb->conv3.w), net_pdata(net, rb->conv3.b), rb->d,
                           net->ws);
  PART(RB_PART_CONV3, 1);
  /* y holds the shortcut for a moment (a is dead by now); LayerNorm overwrites it at the end. */
  PART(RB_PART_SHORTCUT, 0);
  wcmi_conv2d_forward(&ds, x, net_pdata(net, rb->shortcut.w), NULL, y, net->ws);
  PART(RB_PART_SHORTCUT, 1);
  PART(RB_PART_ADD, 0);
  float *dsum = rb->d;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dsum[i] += y[i];
  PART(RB_PART_ADD, 1);
  PART(RB_PART_LN, 0);
  wcmi_layernorm_channel_forward(N, rb->H, rb->S, rb->d, net_pdata(net, rb->ln_gamma), net_pdata(net, rb->ln_beta),
                                 LN_EPS, y, rb->ln_mean, rb->ln_rstd);
  PART(RB_PART_LN, 1);
#undef PART
}

/* The BN+ReLU coefficients of the last forward (batch statistics in train mode, running ones in eval). */
static conv2d_bnrelu bn_relu_of_last_forward(wcmi_net *net, resblock_state *rb) {
  bn_params *bn = &rb->bn;
  bn_relu_coefficients(rb->H, net->last_train, net_pdata(net, bn->gamma), net_pdata(net, bn->beta), bn->mean,
                       bn->rstd, net_pdata(net, bn->running_mean), net_pdata(net, bn->running_var), BN_EPS,
                       rb->bn_shift, rb->bn_scale, rb->bn_bias);
  return (conv2d_bnrelu){rb->bn_shift, rb->bn_scale, rb->bn_bias};
}

void resblock_backward(wcmi_net *net, net_layer *L, const float *x, const float *dy, float *dx, int N, int params) {
  resblock_state *rb = L->rb;
  wcmi_conv2d_dims d0 = with_batch(&rb->conv0, N), d3 = with_batch(&rb->conv3, N), ds = with_batch(&rb->shortcut, N);
#define PG(idx) (params ? net_pgrad(net, (idx)) : NULL)
#define PART(p, end) net_hook(net, L, (p), WCMI_HOOK_BACKWARD, (end), N, net->last_train)
  PART(RB_PART_LN, 0);
  wcmi_layernorm_channel_backward(N, rb->H, rb->S, rb->d, net_pdata(net, rb->ln_gamma), rb->ln_mean, rb->ln_rstd, dy,
                                  rb->d, PG(rb->ln_gamma), PG(rb->ln_beta));
  PART(RB_PART_LN, 1);
  float *a = rb->a;
  if (rb->a_in_output) { /* dy is L->y (net.c checks) and was last read just above */
    a = L->y;
    PART(RB_PART_CONV0, 0); /* the recomputation counts as conv0's */
    wcmi_conv2d_forward(&d0, x, net_pdata(net, rb->conv0.w), NULL, a, net->ws);
    PART(RB_PART_CONV0, 1);
  }
  PART(RB_PART_SHORTCUT, 0);
  wcmi_conv2d_backward(&ds, x, net_pdata(net, rb->shortcut.w), rb->d, dx, PG(rb->shortcut.w), NULL, net->ws);
  PART(RB_PART_SHORTCUT, 1);
  PART(RB_PART_CONV3, 0);
  const conv2d_bnrelu xf = bn_relu_of_last_forward(net, rb);
  conv2d_pointwise_backward(&d3, a, &xf, net_pdata(net, rb->conv3.w), rb->d, rb->d, 0, PG(rb->conv3.w),
                            PG(rb->conv3.b), net->ws);
  PART(RB_PART_CONV3, 1);
  PART(RB_PART_BN_RELU, 0);
  bn_relu_mask_grad(N, rb->H, rb->S, a, xf.shift, xf.scale, xf.bias, rb->d);
  bn_params *bn = &rb->bn;
  if (net->last_train && net_dist(net))
    bn_backward_train_sync(net_dist(net), N, rb->H, rb->S, a, net_pdata(net, bn->gamma), bn->mean, bn->rstd, rb->d,
                           rb->d, PG(bn->gamma), PG(bn->beta));
  else if (net->last_train)
    wcmi_batchnorm_backward_train(N, rb->H, rb->S, a, net_pdata(net, bn->gamma), bn->mean, bn->rstd, rb->d, rb->d,
                                  PG(bn->gamma), PG(bn->beta));
  else
    wcmi_batchnorm_backward_eval(N, rb->H, rb->S, a, net_pdata(net, bn->gamma), net_pdata(net, bn->running_mean),
                                 net_pdata(net, bn->running_var), BN_EPS, rb->d, rb->d, PG(bn->gamma), PG(bn->beta));
  PART(RB_PART_BN_RELU, 1);
  PART(RB_PART_CONV0, 0); /* its input gradient also adds the residual's (dx_add) */
  conv2d_pointwise_backward(&d0, x, NULL, net_pdata(net, rb->conv0.w), rb->d, dx, 1, PG(rb->conv0.w), NULL, net->ws);
  PART(RB_PART_CONV0, 1);
#undef PART
#undef PG
}
