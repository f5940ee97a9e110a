/* The sequential container: builds layers, owns flat parameter/gradient/activation buffers sized
 * once, and runs forward and backward over the layer kernels. */
#include "nn/batchnorm_internal.h"
#include "nn/net_internal.h"
#include "wcmi/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float BN_MOMENTUM = 0.1f, BN_EPS = 1e-5f;

/* ---------------------------------------------------------------- building ---------------- */

wcmi_net *wcmi_net_new(wcmi_ctx *ctx, const char *prefix, wcmi_shape in) {
  if (in.ndim != 1 && in.ndim != 3) {
    wcmi_fail(ctx, WCMI_EINVAL, "net %s: input must be (F) or (C, H, W), got %d dims", prefix, in.ndim);
    return NULL;
  }
  for (int i = 0; i < in.ndim; i++)
    if (in.d[i] <= 0) {
      wcmi_fail(ctx, WCMI_EINVAL, "net %s: input dimension %d is %lld", prefix, i, (long long)in.d[i]);
      return NULL;
    }
  wcmi_net *net = wcmi_calloc(ctx, 1, sizeof *net);
  if (!net) {
    wcmi_fail(ctx, WCMI_ENOMEM, "net %s: out of memory", prefix);
    return NULL;
  }
  net->ctx = ctx;
  snprintf(net->prefix, sizeof net->prefix, "%s", prefix);
  net->in = in;
  net->rb_recompute_min_floats = NET_RB_RECOMPUTE_MIN_FLOATS;
  wcmi_rng_derive(&net->rng, 0, WCMI_STREAM_DROPOUT);
  return net;
}

void wcmi_net_free(wcmi_net *net) {
  if (!net) return;
  for (int i = 0; i < net->n_layers; i++) {
    net_layer *L = &net->layers[i];
    if (!L->relu_in_place) wcmi_free(L->y);
    wcmi_free(L->bn.mean);
    wcmi_free(L->bn.rstd);
    wcmi_free(L->dropout_mask);
    if (L->rb) resblock_free(L);
  }
  wcmi_free(net->layers);
  wcmi_free(net->params);
  wcmi_free(net->param_buf);
  wcmi_free(net->grad_buf);
  wcmi_free(net->counter_buf);
  wcmi_free(net->ws);
  wcmi_free(net->g0);
  wcmi_free(net->g1);
  wcmi_free(net->dx);
  wcmi_free(net);
}

/* A copy of the first n of old's elements in a new array of cap (through wcmi_alloc, so the
 * allocation fault tests reach it); frees old on success. Build time only. */
static void *grow_array(wcmi_ctx *ctx, void *old, size_t n, size_t cap, size_t elem) {
  void *p = wcmi_alloc(ctx, cap, elem);
  if (!p) return NULL;
  if (n) memcpy(p, old, n * elem);
  wcmi_free(old);
  return p;
}

void net_module_name(const wcmi_net *net, const char *name, const char *sub, char *out, size_t n) {
  const char *parts[3] = {net->prefix, name, sub};
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < 3; i++) {
    if (!parts[i] || !parts[i][0]) continue;
    int w = snprintf(out + used, n - used, "%s%s", used ? "." : "", parts[i]);
    if (w < 0 || (size_t)w >= n - used) return; /* truncated: net_register_param rejects it */
    used += (size_t)w;
  }
}

int net_register_param(wcmi_net *net, const char *module, const char *leaf, wcmi_param_kind kind, wcmi_shape shape) {
  if (net->n_params == net->cap_params) {
    int cap = net->cap_params ? 2 * net->cap_params : 16;
    wcmi_param *p = grow_array(net->ctx, net->params, (size_t)net->cap_params, (size_t)cap, sizeof *p);
    if (!p) return wcmi_fail(net->ctx, WCMI_ENOMEM, "net %s: out of memory", net->prefix), -1;
    net->params = p;
    net->cap_params = cap;
  }
  wcmi_param *p = &net->params[net->n_params];
  memset(p, 0, sizeof *p);
  char full[WCMI_NAME_MAX];
  net_module_name(net, module, NULL, full, sizeof full);
  int len = snprintf(p->name, sizeof p->name, "%s.%s", full, leaf);
  if (len < 0 || (size_t)len >= sizeof p->name)
    return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: parameter name '%s.%s' longer than %d bytes", net->prefix, full, leaf,
                     WCMI_NAME_MAX - 1),
           -1;
  p->kind = kind;
  p->shape = shape;
  return net->n_params++;
}

float *net_pdata(wcmi_net *net, int idx) { return idx >= 0 ? net->params[idx].data : NULL; }
float *net_pgrad(wcmi_net *net, int idx) { return idx >= 0 ? net->params[idx].grad : NULL; }

static net_layer *push_layer(wcmi_net *net, layer_kind kind, const char *name) {
  if (net->finalized) {
    wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: cannot add layer '%s' after finalize", net->prefix, name);
    return NULL;
  }
  if (net->n_layers == net->cap_layers) {
    int cap = net->cap_layers ? 2 * net->cap_layers : 16;
    net_layer *l = grow_array(net->ctx, net->layers, (size_t)net->cap_layers, (size_t)cap, sizeof *l);
    if (!l) {
      wcmi_fail(net->ctx, WCMI_ENOMEM, "net %s: out of memory", net->prefix);
      return NULL;
    }
    net->layers = l;
    net->cap_layers = cap;
  }
  net_layer *L = &net->layers[net->n_layers++];
  memset(L, 0, sizeof *L);
  L->kind = kind;
  snprintf(L->name, sizeof L->name, "%s", name);
  L->in = net->n_layers > 1 ? net->layers[net->n_layers - 2].out : net->in;
  L->in_numel = wcmi_shape_numel(&L->in);
  L->conv.w = L->conv.b = L->lin_w = L->lin_b = -1;
  L->bn.gamma = L->bn.beta = L->bn.running_mean = L->bn.running_var = L->bn.num_batches = -1;
  return L;
}

static void set_out(net_layer *L, wcmi_shape out) {
  L->out = out;
  L->out_numel = wcmi_shape_numel(&out);
}

/* Undo a push whose validation failed, so a failed builder call leaves the net unchanged. */
static int pop_layer(wcmi_net *net, int rc) {
  net->n_layers--;
  return rc;
}

int wcmi_net_add_normalize(wcmi_net *net, int C, const float *mean, const float *std) {
  net_layer *L = push_layer(net, LAYER_NORMALIZE, "normalize");
  if (!L) return net->ctx ? net->ctx->status : WCMI_EINVAL;
  if (L->in.ndim != 3 || L->in.d[0] != C || C > 4)
    return pop_layer(net, wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: normalize expects (C=%d, H, W) input with C <= 4",
                                    net->prefix, C));
  for (int c = 0; c < C; c++) {
    if (!(std[c] > 0))
      return pop_layer(net, wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: normalize std[%d] must be > 0", net->prefix, c));
    L->norm_mean[c] = mean[c];
    L->norm_std[c] = std[c];
  }
  set_out(L, L->in);
  return WCMI_OK;
}

int wcmi_net_add_conv2d(wcmi_net *net, const char *name, int out_ch, int k, int stride, int pad, int bias) {
  net_layer *L = push_layer(net, LAYER_CONV2D, name);
  if (!L) return net->ctx->status;
  char full[WCMI_NAME_MAX];
  net_module_name(net, name, NULL, full, sizeof full);
  if (L->in.ndim != 3)
    return pop_layer(net, wcmi_fail(net->ctx, WCMI_EINVAL, "conv2d %s: expects a (C, H, W) input, got %d dims", full,
                                    L->in.ndim));
  wcmi_conv2d_dims d = {.N = 1, .C = (int)L->in.d[0], .H = (int)L->in.d[1], .W = (int)L->in.d[2],
                        .O = out_ch, .KH = k, .KW = k, .stride = stride, .pad = pad};
  int rc = wcmi_conv2d_dims_init(net->ctx, full, &d);
  if (rc) return pop_layer(net, rc);
  L->conv.dims = d;
  set_out(L, wcmi_shape3(out_ch, d.Ho, d.Wo));
  L->conv.w = net_register_param(net, name, "weight", WCMI_PARAM_TRAINABLE, wcmi_shape4(out_ch, d.C, k, k));
  if (bias) L->conv.b = net_register_param(net, name, "bias", WCMI_PARAM_TRAINABLE, wcmi_shape1(out_ch));
  if (L->conv.w < 0 || (bias && L->conv.b < 0)) return net->ctx->status;
  return WCMI_OK;
}

int wcmi_net_add_linear(wcmi_net *net, const char *name, int out, int bias) {
  net_layer *L = push_layer(net, LAYER_LINEAR, name);
  if (!L) return net->ctx->status;
  char full[WCMI_NAME_MAX];
  net_module_name(net, name, NULL, full, sizeof full);
  if (L->in.ndim != 1)
    return pop_layer(net, wcmi_fail(net->ctx, WCMI_EINVAL, "linear %s: expects a flat (F) input, got %d dims (add flatten)",
                                    full, L->in.ndim));
  if (out <= 0) return pop_layer(net, wcmi_fail(net->ctx, WCMI_EINVAL, "linear %s: out features %d <= 0", full, out));
  set_out(L, wcmi_shape1(out));
  L->lin_w = net_register_param(net, name, "weight", WCMI_PARAM_TRAINABLE, wcmi_shape2(out, L->in.d[0]));
  if (bias) L->lin_b = net_register_param(net, name, "bias", WCMI_PARAM_TRAINABLE, wcmi_shape1(out));
  return L->lin_w < 0 || (bias && L->lin_b < 0) ? net->ctx->status : WCMI_OK;
}

int net_register_bn(wcmi_net *net, const char *name, int C, bn_params *bn) {
  bn->gamma = net_register_param(net, name, "weight", WCMI_PARAM_TRAINABLE, wcmi_shape1(C));
  bn->beta = net_register_param(net, name, "bias", WCMI_PARAM_TRAINABLE, wcmi_shape1(C));
  bn->running_mean = net_register_param(net, name, "running_mean", WCMI_PARAM_BUFFER, wcmi_shape1(C));
  bn->running_var = net_register_param(net, name, "running_var", WCMI_PARAM_BUFFER, wcmi_shape1(C));
  bn->num_batches = net_register_param(net, name, "num_batches_tracked", WCMI_PARAM_COUNTER, (wcmi_shape){0, {0}});
  /* Any of the five may fail (allocation): each index is checked, not only the last. */
  int failed = bn->gamma < 0 || bn->beta < 0 || bn->running_mean < 0 || bn->running_var < 0 || bn->num_batches < 0;
  return failed ? net->ctx->status : WCMI_OK;
}

int wcmi_net_add_batchnorm(wcmi_net *net, const char *name) {
  net_layer *L = push_layer(net, LAYER_BATCHNORM, name);
  if (!L) return net->ctx->status;
  set_out(L, L->in);
  return net_register_bn(net, name, (int)L->in.d[0], &L->bn);
}

static int add_simple(wcmi_net *net, layer_kind kind, const char *name, wcmi_shape out_or_zero) {
  net_layer *L = push_layer(net, kind, name);
  if (!L) return net->ctx->status;
  set_out(L, out_or_zero.ndim ? out_or_zero : L->in);
  return WCMI_OK;
}

int wcmi_net_add_relu(wcmi_net *net) { return add_simple(net, LAYER_RELU, "relu", (wcmi_shape){0, {0}}); }

int wcmi_net_add_dropout(wcmi_net *net, float p) {
  if (!(p >= 0.0f && p < 1.0f))
    return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: dropout probability %g outside [0, 1)", net->prefix, (double)p);
  int rc = add_simple(net, LAYER_DROPOUT, "dropout", (wcmi_shape){0, {0}});
  if (!rc) net->layers[net->n_layers - 1].dropout_p = p;
  return rc;
}

int wcmi_net_add_flatten(wcmi_net *net) {
  wcmi_shape in = net->n_layers ? net->layers[net->n_layers - 1].out : net->in;
  return add_simple(net, LAYER_FLATTEN, "flatten", wcmi_shape1(wcmi_shape_numel(&in)));
}

int wcmi_net_add_view_map(wcmi_net *net) {
  wcmi_shape in = net->n_layers ? net->layers[net->n_layers - 1].out : net->in;
  if (in.ndim != 1) return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: view_map expects a flat (F) input", net->prefix);
  return add_simple(net, LAYER_VIEW_MAP, "view_map", wcmi_shape3(in.d[0], 1, 1));
}

int wcmi_net_add_resblock(wcmi_net *net, const char *name, int H) {
  net_layer *L = push_layer(net, LAYER_RESBLOCK, name);
  if (!L) return net->ctx->status;
  int rc = resblock_build(net, L, name, H);
  return rc ? pop_layer(net, rc) : WCMI_OK;
}

/* ---------------------------------------------------------------- finalize ---------------- */

/* PyTorch's BatchNorm reset: weight 1, bias 0, running mean 0, running var 1, counter 0. */
void net_bn_reset(wcmi_net *net, const bn_params *bn) {
  wcmi_param *g = &net->params[bn->gamma], *rv = &net->params[bn->running_var];
  for (int64_t j = 0; j < g->shape.d[0]; j++) g->data[j] = 1.0f;
  for (int64_t j = 0; j < rv->shape.d[0]; j++) rv->data[j] = 1.0f;
}

static int is_view(layer_kind k) { return k == LAYER_FLATTEN || k == LAYER_VIEW_MAP; }

/* With wcmi_net_set_relu_in_place, a ReLU works in place on the output of a layer whose backward
 * never reads that output (BN, conv and linear read their input): one activation map fewer per such
 * pair. The layer's own output (wcmi_net_layer_output) then holds the ReLU's result. */
static int relu_may_borrow(const net_layer *P) {
  return P->kind == LAYER_BATCHNORM || P->kind == LAYER_CONV2D || P->kind == LAYER_LINEAR;
}

static void init_params(wcmi_net *net, wcmi_rng *rng) {
  for (int i = 0; i < net->n_layers; i++) {
    net_layer *L = &net->layers[i];
    if (L->kind == LAYER_CONV2D) {
      const wcmi_conv2d_dims *d = &L->conv.dims;
      float bound = 1.0f / sqrtf((float)(d->C * d->KH * d->KW));
      wcmi_init_uniform(rng, net_pdata(net, L->conv.w), (int64_t)d->O * d->C * d->KH * d->KW, bound);
      if (L->conv.b >= 0) wcmi_init_uniform(rng, net_pdata(net, L->conv.b), d->O, bound);
    } else if (L->kind == LAYER_LINEAR) {
      int64_t in = L->in.d[0], out = L->out.d[0];
      float bound = 1.0f / sqrtf((float)in);
      wcmi_init_uniform(rng, net_pdata(net, L->lin_w), out * in, bound);
      if (L->lin_b >= 0) wcmi_init_uniform(rng, net_pdata(net, L->lin_b), out, bound);
    } else if (L->kind == LAYER_BATCHNORM) {
      net_bn_reset(net, &L->bn);
    } else if (L->kind == LAYER_RESBLOCK) {
      resblock_init(net, L, rng);
    }
  }
}

int wcmi_net_finalize(wcmi_net *net, int max_batch, wcmi_rng *rng) {
  if (net->finalized) return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: finalized twice", net->prefix);
  if (net->n_layers == 0) return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: has no layers", net->prefix);
  if (max_batch <= 0) return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: max_batch %d <= 0", net->prefix, max_batch);
  net->max_batch = max_batch;
  int64_t n_float = 0, n_train = 0, n_counter = 0;
  for (int i = 0; i < net->n_params; i++) {
    wcmi_param *p = &net->params[i];
    if (p->kind == WCMI_PARAM_COUNTER) {
      n_counter++;
      continue;
    }
    n_float += wcmi_shape_numel(&p->shape);
    if (p->kind == WCMI_PARAM_TRAINABLE) n_train += wcmi_shape_numel(&p->shape);
  }
  net->param_buf = wcmi_calloc(net->ctx, (size_t)(n_float ? n_float : 1), sizeof(float));
  net->grad_buf = wcmi_calloc(net->ctx, (size_t)(n_float ? n_float : 1), sizeof(float));
  net->counter_buf = wcmi_calloc(net->ctx, (size_t)(n_counter ? n_counter : 1), sizeof(int64_t));
  if (!net->param_buf || !net->grad_buf || !net->counter_buf) return net->ctx->status;
  int64_t off = 0, coff = 0;
  for (int i = 0; i < net->n_params; i++) {
    wcmi_param *p = &net->params[i];
    if (p->kind == WCMI_PARAM_COUNTER) {
      p->i64 = net->counter_buf + coff++;
      continue;
    }
    p->data = net->param_buf + off;
    if (p->kind == WCMI_PARAM_TRAINABLE) p->grad = net->grad_buf + off;
    off += wcmi_shape_numel(&p->shape);
  }
  net->n_float = n_float;
  net->n_trainable = n_train;
  net->n_counters = n_counter;

  /* Activations: each non-view layer owns its output; gradients ping-pong between two buffers.
   * Those hold layer INPUT gradients only (the output gradient comes from the caller), so they are
   * sized by the largest input, not output: at H = 2048 the local estimator's last output is 16x
   * its input. */
  size_t mb = (size_t)max_batch;
  int64_t max_numel = wcmi_shape_numel(&net->in);
  for (int i = 0; i < net->n_layers; i++) {
    net_layer *L = &net->layers[i];
    if (i + 1 < net->n_layers && L->out_numel > max_numel) max_numel = L->out_numel;
    if (L->kind == LAYER_RELU && net->relu_in_place && i > 0 && relu_may_borrow(&net->layers[i - 1])) {
      net_layer *P = &net->layers[i - 1];
      L->y = P->y;
      L->relu_in_place = 1;
      P->relu_fused = P->kind == LAYER_BATCHNORM;
    } else if (!is_view(L->kind)) {
      L->y = wcmi_alloc(net->ctx, mb * (size_t)L->out_numel, sizeof(float));
      if (!L->y) return net->ctx->status;
    }
    if (L->kind == LAYER_CONV2D) {
      wcmi_conv2d_dims d = L->conv.dims;
      d.N = max_batch;
      size_t ws = wcmi_conv2d_workspace_floats(&d);
      if (ws > net->ws_floats) net->ws_floats = ws;
    } else if (L->kind == LAYER_BATCHNORM) {
      L->bn.mean = wcmi_alloc(net->ctx, (size_t)L->in.d[0], sizeof(float));
      L->bn.rstd = wcmi_alloc(net->ctx, (size_t)L->in.d[0], sizeof(float));
      if (!L->bn.mean || !L->bn.rstd) return net->ctx->status;
    } else if (L->kind == LAYER_DROPOUT) {
      L->dropout_mask = wcmi_alloc(net->ctx, mb * (size_t)L->out_numel, sizeof(float));
      if (!L->dropout_mask) return net->ctx->status;
    } else if (L->kind == LAYER_RESBLOCK) {
      size_t ws = resblock_workspace_floats(L, max_batch);
      if (ws > net->ws_floats) net->ws_floats = ws;
      /* the last layer of a net whose output buffer carries the output gradient keeps its BN
       * input there (resblock.c) when that map is large */
      const size_t map = mb * (size_t)L->rb->H * (size_t)L->rb->S;
      int rc = resblock_alloc(net, L,
                              net->grad_in_output && i == net->n_layers - 1 && map > net->rb_recompute_min_floats);
      if (rc) return rc;
    }
  }
  net->ws = wcmi_alloc(net->ctx, net->ws_floats ? net->ws_floats : 1, sizeof(float));
  net->g0 = wcmi_alloc(net->ctx, mb * (size_t)max_numel, sizeof(float));
  net->g1 = wcmi_alloc(net->ctx, mb * (size_t)max_numel, sizeof(float));
  net->dx = wcmi_alloc(net->ctx, mb * (size_t)wcmi_shape_numel(&net->in), sizeof(float));
  if (!net->ws || !net->g0 || !net->g1 || !net->dx) return net->ctx->status;
  init_params(net, rng);
  net->finalized = 1;
  return WCMI_OK;
}

/* ---------------------------------------------------------------- forward ----------------- */

static void normalize_forward(const net_layer *L, const float *x, float *y, int N) {
  int C = (int)L->in.d[0];
  int64_t S = L->in.d[1] * L->in.d[2];
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
    int c = (int)(nc % C);
    float m = L->norm_mean[c], inv = 1.0f / L->norm_std[c];
    const float *xs = x + nc * S;
    float *ys = y + nc * S;
    for (int64_t s = 0; s < S; s++) {
      /* clamp to [0, 1] as fminf(fmaxf(x, 0), 1) (NaN -> 0), written as selects: the libm calls
       * gcc emits for those at baseline x86-64 do not vectorize */
      const float lo = xs[s] > 0.0f ? xs[s] : 0.0f;
      ys[s] = ((lo < 1.0f ? lo : 1.0f) - m) * inv;
    }
  }
}

/* torch.clamp passes the gradient where min <= x <= max (boundaries included). */
static void normalize_backward(const net_layer *L, const float *x, const float *dy, float *dx, int N) {
  int C = (int)L->in.d[0];
  int64_t S = L->in.d[1] * L->in.d[2];
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
    float inv = 1.0f / L->norm_std[nc % C];
    const float *xs = x + nc * S, *g = dy + nc * S;
    float *d = dx + nc * S;
    for (int64_t s = 0; s < S; s++) {
      const float v = g[s] * inv; /* computed unconditionally so the select vectorizes */
      d[s] = (xs[s] >= 0.0f && xs[s] <= 1.0f) ? v : 0.0f;
    }
  }
}

/* With relu_fused, BN and the following ReLU in one pass (bit-identical to the two passes). */
static void bn_forward(wcmi_net *net, net_layer *L, const float *x, float *y, int N, int train) {
  bn_params *bn = &L->bn;
  int C = (int)L->in.d[0];
  int S = (int)(L->in_numel / C);
  float *g = net_pdata(net, bn->gamma), *b = net_pdata(net, bn->beta), *rm = net_pdata(net, bn->running_mean),
        *rv = net_pdata(net, bn->running_var);
  if (train && net_dist(net)) /* data-parallel: statistics of the global batch */
    bn_forward_train_sync(net_dist(net), N, C, S, x, g, b, rm, rv, net->params[bn->num_batches].i64, BN_MOMENTUM,
                          BN_EPS, L->relu_fused, y, bn->mean, bn->rstd);
  else if (train && L->relu_fused)
    wcmi_batchnorm_relu_forward_train(N, C, S, x, g, b, rm, rv, net->params[bn->num_batches].i64, BN_MOMENTUM, BN_EPS,
                                      y, bn->mean, bn->rstd);
  else if (train)
    wcmi_batchnorm_forward_train(N, C, S, x, g, b, rm, rv, net->params[bn->num_batches].i64, BN_MOMENTUM, BN_EPS, y,
                                 bn->mean, bn->rstd);
  else if (L->relu_fused)
    wcmi_batchnorm_relu_forward_eval(N, C, S, x, g, b, rm, rv, BN_EPS, y);
  else
    wcmi_batchnorm_forward_eval(N, C, S, x, g, b, rm, rv, BN_EPS, y);
}

/* Train-mode dropout. Data-parallel: the N samples are a slice of a global batch, and each draws
 * the mask one process would draw for it (one uniform per value, in sample order): the draws of
 * the other ranks' samples are made and dropped, so the stream also ends where one process's does. */
static void dropout_forward(wcmi_net *net, net_layer *L, const float *x, float *y, int N) {
  int64_t before = 0, after = 0;
  if (net_dist(net)) wcmi_dist_slice(net_dist(net), N, &before, &after);
  for (int64_t i = 0; i < before * L->out_numel; i++) (void)wcmi_rng_uniform(&net->rng);
  wcmi_dropout_forward((int64_t)N * L->out_numel, L->dropout_p, &net->rng, x, y, L->dropout_mask);
  for (int64_t i = 0; i < after * L->out_numel; i++) (void)wcmi_rng_uniform(&net->rng);
}

static void layer_forward(wcmi_net *net, net_layer *L, const float *x, int N, int train) {
  L->in_ptr = x;
  float *y = L->y;
  switch (L->kind) {
  case LAYER_NORMALIZE:
    normalize_forward(L, x, y, N);
    break;
  case LAYER_CONV2D: {
    wcmi_conv2d_dims d = L->conv.dims;
    d.N = N;
    wcmi_conv2d_forward(&d, x, net_pdata(net, L->conv.w), net_pdata(net, L->conv.b), y, net->ws);
    break;
  }
  case LAYER_LINEAR:
    wcmi_linear_forward(N, (int)L->in.d[0], (int)L->out.d[0], x, net_pdata(net, L->lin_w), net_pdata(net, L->lin_b), y);
    break;
  case LAYER_BATCHNORM:
    bn_forward(net, L, x, y, N, train);
    break;
  case LAYER_RELU:
    if (!(L->relu_in_place && L[-1].relu_fused)) wcmi_relu_forward((int64_t)N * L->out_numel, x, y); /* x may be y */
    break;
  case LAYER_DROPOUT:
    if (train && L->dropout_p > 0.0f)
      dropout_forward(net, L, x, y, N);
    else
      memcpy(y, x, (size_t)N * (size_t)L->out_numel * sizeof(float));
    break;
  case LAYER_FLATTEN:
  case LAYER_VIEW_MAP:
    L->out_ptr = x;
    return;
  case LAYER_RESBLOCK:
    resblock_forward(net, L, x, y, N, train);
    break;
  }
  L->out_ptr = y;
}

const float *wcmi_net_forward(wcmi_net *net, const float *x, int N, int train) {
  if (!net->finalized) {
    wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: forward before finalize", net->prefix);
    return NULL;
  }
  if (N <= 0 || N > net->max_batch) {
    wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: batch %d outside [1, %d] (the size it was built for)", net->prefix, N,
              net->max_batch);
    return NULL;
  }
  /* BatchNorm in train mode needs more than one value per channel (PyTorch raises too). */
  if (train && N == 1)
    for (int i = 0; i < net->n_layers; i++)
      if ((net->layers[i].kind == LAYER_BATCHNORM && net->layers[i].in.ndim == 1) ||
          (net->layers[i].kind == LAYER_RESBLOCK && net->layers[i].rb->S == 1)) {
        wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: %s: batch of 1 in train mode gives no batch statistics", net->prefix,
                  net->layers[i].name);
        return NULL;
      }
  const float *h = x;
  for (int i = 0; i < net->n_layers; i++) {
    net_hook(net, &net->layers[i], -1, WCMI_HOOK_FORWARD, 0, N, train);
    layer_forward(net, &net->layers[i], h, N, train);
    net_hook(net, &net->layers[i], -1, WCMI_HOOK_FORWARD, 1, N, train);
    h = net->layers[i].out_ptr;
  }
  net->last_N = N;
  net->last_train = train;
  return h;
}

/* ---------------------------------------------------------------- backward ---------------- */

/* Backward of one layer. dx NULL: input gradient not needed. params: accumulate param grads.
 * For views, returns dy itself (no copy); otherwise returns dx. */
static const float *layer_backward(wcmi_net *net, net_layer *L, const float *dy, float *dx, int params) {
  int N = net->last_N;
  const float *x = L->in_ptr;
  switch (L->kind) {
  case LAYER_NORMALIZE:
    if (dx) normalize_backward(L, x, dy, dx, N);
    break;
  case LAYER_CONV2D: {
    wcmi_conv2d_dims d = L->conv.dims;
    d.N = N;
    wcmi_conv2d_backward(&d, x, net_pdata(net, L->conv.w), dy, dx, params ? net_pgrad(net, L->conv.w) : NULL,
                         params ? net_pgrad(net, L->conv.b) : NULL, net->ws);
    break;
  }
  case LAYER_LINEAR:
    wcmi_linear_backward(N, (int)L->in.d[0], (int)L->out.d[0], x, net_pdata(net, L->lin_w), dy, dx,
                         params ? net_pgrad(net, L->lin_w) : NULL, params ? net_pgrad(net, L->lin_b) : NULL);
    break;
  case LAYER_BATCHNORM: {
    bn_params *bn = &L->bn;
    int C = (int)L->in.d[0];
    int S = (int)(L->in_numel / C);
    float *dg = params ? net_pgrad(net, bn->gamma) : NULL, *db = params ? net_pgrad(net, bn->beta) : NULL;
    if (net->last_train && net_dist(net))
      bn_backward_train_sync(net_dist(net), N, C, S, x, net_pdata(net, bn->gamma), bn->mean, bn->rstd, dy, dx, dg, db);
    else if (net->last_train)
      wcmi_batchnorm_backward_train(N, C, S, x, net_pdata(net, bn->gamma), bn->mean, bn->rstd, dy, dx, dg, db);
    else
      wcmi_batchnorm_backward_eval(N, C, S, x, net_pdata(net, bn->gamma), net_pdata(net, bn->running_mean),
                                   net_pdata(net, bn->running_var), BN_EPS, dy, dx, dg, db);
    break;
  }
  case LAYER_RELU:
    if (dx) wcmi_relu_backward((int64_t)N * L->out_numel, L->y, dy, dx);
    break;
  case LAYER_DROPOUT:
    if (dx) {
      if (net->last_train && L->dropout_p > 0.0f)
        wcmi_dropout_backward((int64_t)N * L->out_numel, L->dropout_mask, dy, dx);
      else
        memcpy(dx, dy, (size_t)N * (size_t)L->out_numel * sizeof(float));
    }
    break;
  case LAYER_FLATTEN:
  case LAYER_VIEW_MAP:
    return dy;
  case LAYER_RESBLOCK:
    resblock_backward(net, L, x, dy, dx, N, params);
    break;
  }
  return dx;
}

static int has_params(const net_layer *L) {
  return L->kind == LAYER_CONV2D || L->kind == LAYER_LINEAR || L->kind == LAYER_BATCHNORM || L->kind == LAYER_RESBLOCK;
}

/* Layer i is a ReLU whose input comes from an eval-mode BN that backward also runs, and only input
 * gradients are wanted (the BN's parameter gradients need the unfused kernel). */
static int fuses_with_bn_eval(const wcmi_net *net, int i, int stop, int want_params) {
  return !net->last_train && !want_params && i - 1 >= stop && net->layers[i].kind == LAYER_RELU &&
         net->layers[i - 1].kind == LAYER_BATCHNORM;
}

int wcmi_net_backward(wcmi_net *net, const float *dy, int what) {
  return wcmi_net_backward_from(net, net->n_layers - 1, dy, what);
}

int wcmi_net_backward_from(wcmi_net *net, int last, const float *dy, int what) {
  if (!net->last_N) return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: backward without a forward", net->prefix);
  if (last < 0 || last >= net->n_layers)
    return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: backward from layer %d outside [0, %d)", net->prefix, last,
                     net->n_layers);
  if (net->grad_in_output && last == net->n_layers - 1 && dy != wcmi_net_output_for_grad(net))
    return wcmi_fail(net->ctx, WCMI_EINVAL,
                     "net %s: was built to take the output gradient in its output buffer (wcmi_net_output_for_grad), "
                     "got another buffer",
                     net->prefix);
  if (!(what & WCMI_GRAD_BOTH)) return WCMI_OK;
  int want_input = (what & WCMI_GRAD_INPUT) != 0, want_params = (what & WCMI_GRAD_PARAMS) != 0;
  /* Without the input gradient, backward stops at the first layer that has parameters. */
  int stop = 0;
  if (!want_input) {
    stop = last + 1;
    for (int i = 0; i <= last; i++)
      if (has_params(&net->layers[i])) {
        stop = i;
        break;
      }
    if (stop == last + 1) return WCMI_OK;
  }
  const float *g = dy;
  for (int i = last; i >= stop; i--) {
    net_layer *L = &net->layers[i];
    /* A ReLU after an eval-mode BN (every conv block during an attack) runs as one pass for both,
     * writing the BN's input gradient. */
    const int fused = fuses_with_bn_eval(net, i, stop, want_params);
    const int j = fused ? i - 1 : i; /* the layer whose input gradient is written */
    float *dx;
    if (j == 0) dx = want_input ? net->dx : NULL;
    else if (j == stop && !want_input) dx = NULL;
    else dx = (g == net->g0) ? net->g1 : net->g0;
    net_hook(net, &net->layers[j], -1, WCMI_HOOK_BACKWARD, 0, net->last_N, net->last_train);
    if (fused) {
      const net_layer *B = &net->layers[i - 1];
      const int C = (int)B->in.d[0], S = (int)(B->in_numel / C);
      wcmi_batchnorm_relu_backward_eval(net->last_N, C, S, net_pdata(net, B->bn.gamma),
                                        net_pdata(net, B->bn.running_var), BN_EPS, L->y, g, dx);
      g = dx;
    } else {
      g = layer_backward(net, L, g, dx, want_params);
    }
    net_hook(net, &net->layers[j], -1, WCMI_HOOK_BACKWARD, 1, net->last_N, net->last_train);
    i = j;
  }
  /* A net made only of views passes dy through: copy it so input_grad is always net->dx. */
  if (want_input && g != net->dx)
    memcpy(net->dx, g, (size_t)net->last_N * (size_t)wcmi_shape_numel(&net->in) * sizeof(float));
  return WCMI_OK;
}

const float *wcmi_net_input_grad(const wcmi_net *net) { return net->dx; }

void wcmi_net_zero_grad(wcmi_net *net) {
  if (net->grad_buf) memset(net->grad_buf, 0, (size_t)net->n_float * sizeof(float));
}

/* ---------------------------------------------------------------- accessors --------------- */

wcmi_shape wcmi_net_in_shape(const wcmi_net *net) { return net->in; }
wcmi_shape wcmi_net_out_shape(const wcmi_net *net) {
  return net->n_layers ? net->layers[net->n_layers - 1].out : net->in;
}
int wcmi_net_max_batch(const wcmi_net *net) { return net->max_batch; }
int wcmi_net_num_params(const wcmi_net *net) { return net->n_params; }
wcmi_param *wcmi_net_param(wcmi_net *net, int i) { return i >= 0 && i < net->n_params ? &net->params[i] : NULL; }
wcmi_param *wcmi_net_find_param(wcmi_net *net, const char *name) {
  for (int i = 0; i < net->n_params; i++)
    if (!strcmp(net->params[i].name, name)) return &net->params[i];
  return NULL;
}
int64_t wcmi_net_num_trainable(const wcmi_net *net) { return net->n_trainable; }
int wcmi_net_num_layers(const wcmi_net *net) { return net->n_layers; }
const char *wcmi_net_layer_name(const wcmi_net *net, int i) {
  return i >= 0 && i < net->n_layers ? net->layers[i].name : NULL;
}
int wcmi_net_set_relu_in_place(wcmi_net *net) {
  if (net->finalized)
    return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: wcmi_net_set_relu_in_place after finalize", net->prefix);
  net->relu_in_place = 1;
  return WCMI_OK;
}

int wcmi_net_set_grad_in_output(wcmi_net *net) {
  if (net->finalized)
    return wcmi_fail(net->ctx, WCMI_EINVAL, "net %s: wcmi_net_set_grad_in_output after finalize", net->prefix);
  net->grad_in_output = 1;
  return WCMI_OK;
}

float *wcmi_net_output_for_grad(wcmi_net *net) {
  for (int i = net->n_layers - 1; i >= 0; i--) {
    const net_layer *L = &net->layers[i];
    if (is_view(L->kind)) continue;
    return L->kind == LAYER_RELU ? NULL : L->y; /* ReLU backward reads its output as the mask */
  }
  return NULL;
}

const float *wcmi_net_layer_output(const wcmi_net *net, int i, wcmi_shape *shape) {
  if (i < 0 || i >= net->n_layers) return NULL;
  if (shape) *shape = net->layers[i].out;
  return net->layers[i].out_ptr;
}
wcmi_ctx *wcmi_net_ctx(wcmi_net *net) { return net->ctx; }
void wcmi_net_set_rng(wcmi_net *net, const wcmi_rng *rng) { net->rng = *rng; }
wcmi_rng *wcmi_net_rng(wcmi_net *net) { return &net->rng; }

/* ---------------------------------------------------------------- layer hook -------------- */

static const char *const KIND_NAMES[] = {"normalize", "conv2d",   "linear",   "batchnorm", "relu",
                                         "dropout",   "flatten",  "view_map", "resblock"};
static const char *const RB_PART_NAMES[RB_PARTS] = {
    "block_nonlinear.0 (1x1 in->H)", "block_nonlinear.1-2 (BN+ReLU)", "block_nonlinear.3 (1x1 H->H)",
    "linear_shortcut (1x1 in->H)",   "residual add",                  "block_ln.1 (LayerNorm)"};

void net_hook_call(wcmi_net *net, const net_layer *L, int part, wcmi_hook_dir dir, int end, int N, int train) {
  const wcmi_layer_event ev = {(int)(L - net->layers), part, KIND_NAMES[L->kind], dir, end, N, train};
  net->hook(net->hook_user, &ev);
}

void wcmi_net_set_layer_hook(wcmi_net *net, wcmi_layer_hook hook, void *user) {
  net->hook = hook;
  net->hook_user = hook ? user : NULL;
}

const char *wcmi_net_layer_kind(const wcmi_net *net, int i) {
  return i >= 0 && i < net->n_layers ? KIND_NAMES[net->layers[i].kind] : NULL;
}

int wcmi_net_layer_num_parts(const wcmi_net *net, int i) {
  return i >= 0 && i < net->n_layers && net->layers[i].kind == LAYER_RESBLOCK ? RB_PARTS : 0;
}

const char *wcmi_net_layer_part_name(const wcmi_net *net, int i, int part) {
  return part >= 0 && part < wcmi_net_layer_num_parts(net, i) ? RB_PART_NAMES[part] : NULL;
}

static double conv_gemm_flops(const wcmi_conv2d_dims *d, int N) {
  return 2.0 * N * (double)d->Ho * d->Wo * (double)d->C * d->KH * d->KW * d->O;
}

double wcmi_net_layer_gemm_flops(const wcmi_net *net, int i, int part, int N) {
  if (i < 0 || i >= net->n_layers) return 0.0;
  const net_layer *L = &net->layers[i];
  switch (L->kind) {
  case LAYER_CONV2D: return part < 0 ? conv_gemm_flops(&L->conv.dims, N) : 0.0;
  case LAYER_LINEAR: return part < 0 ? 2.0 * N * (double)L->in.d[0] * (double)L->out.d[0] : 0.0;
  case LAYER_RESBLOCK: {
    const resblock_state *rb = L->rb;
    double f0 = conv_gemm_flops(&rb->conv0.dims, N), f3 = conv_gemm_flops(&rb->conv3.dims, N),
           fs = conv_gemm_flops(&rb->shortcut.dims, N);
    if (part < 0) return f0 + f3 + fs;
    return part == RB_PART_CONV0 ? f0 : part == RB_PART_CONV3 ? f3 : part == RB_PART_SHORTCUT ? fs : 0.0;
  }
  default: return 0.0;
  }
}
