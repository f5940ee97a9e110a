/* Internal layout of wcmi_net, shared by net.c (container), resblock.c and normalize.c. */
#ifndef WCMI_NET_INTERNAL_H
#define WCMI_NET_INTERNAL_H

#include "wcmi/nn.h"

typedef enum {
  LAYER_NORMALIZE,
  LAYER_CONV2D,
  LAYER_LINEAR,
  LAYER_BATCHNORM,
  LAYER_RELU,
  LAYER_DROPOUT,
  LAYER_FLATTEN,
  LAYER_VIEW_MAP,
  LAYER_RESBLOCK,
} layer_kind;

/* Parameter indices into net->params, -1 when absent. */
typedef struct conv_params {
  int w, b;
  wcmi_conv2d_dims dims; /* N filled at run time */
} conv_params;

/* Default of wcmi_net.rb_recompute_min_floats: 16 MiB. The paper's local estimator at H = 2048 (51 MiB
 * per 128 samples) recomputes; at H = 256 (6.4 MiB) it keeps the map and saves conv0's forward (about
 * 1.5% of a normal training step, measured). */
#define NET_RB_RECOMPUTE_MIN_FLOATS ((size_t)4 << 20)

typedef struct bn_params {
  int gamma, beta, running_mean, running_var, num_batches;
  float *mean, *rstd; /* (C) saved by the last train-mode forward */
} bn_params;

typedef struct resblock_state {
  int in_ch, H, S;           /* S = spatial locations */
  conv_params conv0, conv3, shortcut;
  bn_params bn;
  int ln_gamma, ln_beta;
  float *a; /* conv0 output, the BN input (N, H, S); NULL when it lives in the block's output buffer
               (a_in_output: see resblock.c) */
  int a_in_output;
  float *d; /* ReLU(BN(a)), then conv3's output in place, then the pre-LayerNorm sum (N, H, S); backward:
               the gradient flowing down the main branch, in place */
  float *ln_mean, *ln_rstd;             /* (N*S) */
  float *bn_shift, *bn_scale, *bn_bias; /* (H): BN+ReLU as the last forward applied it (backward only) */
} resblock_state;

typedef struct net_layer {
  layer_kind kind;
  char name[WCMI_NAME_MAX];
  wcmi_shape in, out; /* per sample */
  int64_t in_numel, out_numel;
  conv_params conv;
  int lin_w, lin_b;
  bn_params bn;
  float dropout_p;
  float *dropout_mask;
  /* A ReLU right after a BN, conv or linear layer (whose backward reads only its input) works in
   * place in that layer's output buffer: relu_in_place on the ReLU (its y is borrowed), relu_fused
   * on a BN, which then applies the ReLU in the same pass and leaves the ReLU nothing to do. */
  int relu_in_place, relu_fused;
  float norm_mean[4], norm_std[4];
  resblock_state *rb;
  float *y;         /* own output buffer (max_batch * out_numel), NULL for views */
  const float *out_ptr; /* output of the last forward (own buffer or the input, for views) */
  const float *in_ptr;  /* input of the last forward */
} net_layer;

struct wcmi_net {
  wcmi_ctx *ctx;
  char prefix[WCMI_NAME_MAX];
  wcmi_shape in;
  net_layer *layers;
  int n_layers, cap_layers;
  wcmi_param *params;
  int n_params, cap_params;
  float *param_buf, *grad_buf;
  int64_t *counter_buf;
  int64_t n_float, n_trainable, n_counters;
  int max_batch;
  int finalized;
  int grad_in_output; /* wcmi_net_set_grad_in_output: backward's dy is always the output buffer */
  /* grad_in_output: the last residual block keeps its BN input in the output buffer (recomputing it
   * in backward) only when that map, max_batch x H x S floats, is larger than this; a smaller map is
   * cheaper to keep than the recomputed conv (NET_RB_RECOMPUTE_MIN_FLOATS; tests lower it) */
  size_t rb_recompute_min_floats;
  int relu_in_place;  /* wcmi_net_set_relu_in_place: ReLUs overwrite the output they follow */
  int last_N, last_train;
  float *ws;          /* conv workspace, shared by all convs */
  size_t ws_floats;
  float *g0, *g1;     /* ping-pong gradient buffers (max_batch * max numel) */
  float *dx;          /* input gradient (max_batch * in numel) */
  wcmi_rng rng;       /* dropout stream */
  wcmi_layer_hook hook; /* wcmi_net_set_layer_hook; NULL: none */
  void *hook_user;
};

/* The parts a residual block reports to the layer hook, in forward order (names in net.c). */
enum { RB_PART_CONV0, RB_PART_BN_RELU, RB_PART_CONV3, RB_PART_SHORTCUT, RB_PART_ADD, RB_PART_LN, RB_PARTS };

void net_hook_call(wcmi_net *net, const net_layer *L, int part, wcmi_hook_dir dir, int end, int N, int train);
/* Tells the layer hook, if one is set, that layer L (part: -1 for all of it) starts (end 0) or has
 * finished (end 1) its forward or backward. Inline so that an unset hook costs one branch. */
static inline void net_hook(wcmi_net *net, const net_layer *L, int part, wcmi_hook_dir dir, int end, int N,
                            int train) {
  if (net->hook) net_hook_call(net, L, part, dir, end, N, train);
}
/* The data-parallel communicator of the net's context (wcmi/dist.h): NULL in single-process runs. */
static inline struct wcmi_dist *net_dist(const wcmi_net *net) { return net->ctx ? net->ctx->dist : NULL; }

/* Parameter registration during building; returns the index or -1 on failure. */
int net_register_param(wcmi_net *net, const char *module, const char *leaf, wcmi_param_kind kind, wcmi_shape shape);
/* Full name "prefix.name" (or "prefix" when name is empty) into out. */
void net_module_name(const wcmi_net *net, const char *name, const char *sub, char *out, size_t n);

/* BatchNorm parameter helpers shared with resblock.c. */
int net_register_bn(wcmi_net *net, const char *name, int C, bn_params *bn);
void net_bn_reset(wcmi_net *net, const bn_params *bn);

float *net_pdata(wcmi_net *net, int idx);
float *net_pgrad(wcmi_net *net, int idx);

/* resblock.c */
int resblock_build(wcmi_net *net, net_layer *L, const char *name, int H);
size_t resblock_workspace_floats(const net_layer *L, int max_batch);
int resblock_alloc(wcmi_net *net, net_layer *L, int a_in_output);
void resblock_init(wcmi_net *net, net_layer *L, wcmi_rng *rng);
void resblock_forward(wcmi_net *net, net_layer *L, const float *x, float *y, int N, int train);
void resblock_backward(wcmi_net *net, net_layer *L, const float *x, const float *dy, float *dx, int N, int want_params);
void resblock_free(net_layer *L);

#endif
