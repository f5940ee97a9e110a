/* wcmi neural-network core.
 *
 * Two levels, as in llm.c:
 *  1. Kernels: a forward and a backward function per op over flat float buffers, shapes in the
 *     signature. Forward overwrites its outputs and saves exactly what backward needs into buffers
 *     the caller provides. Backward OVERWRITES the input gradient dx (when dx != NULL) and
 *     ACCUMULATES (+=) into parameter gradients (when non-NULL); passing NULL skips that work.
 *     Kernels do not allocate and do not fail: shapes are checked where layers are built.
 *     Reductions use a fixed order for a given thread count, so results are reproducible.
 *  2. wcmi_net: a sequential container that builds layers, owns one flat parameter buffer, one flat
 *     gradient buffer and activation buffers sized once for a maximum batch, and runs forward and
 *     backward computing only what is asked.
 *
 * PyTorch semantics are followed where PyTorch has the op (named in each comment).
 */
#ifndef WCMI_NN_H
#define WCMI_NN_H

#include "wcmi/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================ kernels ================================================== */

/* ---- conv2d (torch.nn.Conv2d, groups=1, dilation=1) -------------------------------------- */
/* Algorithm choice (wcmi_conv2d_dims.algo, wcmi_ctx.conv_algo). AUTO takes Winograd's F(m x m, 2 x 2),
 * m = 7, 4 or 3 (the fewest multiplies), for 4x4 stride-2 convs where that saves at least 1.5x of
 * the multiplies (the paper's encoder: 3.06x on 7x7 outputs with m = 7, 2.25x on 3x3 with m = 3;
 * results within ~2e-5 of the largest value of the direct product for m = 7, ~5e-6 for m = 3 and 4)
 * and im2col + GEMM or a direct kernel otherwise; GEMM never takes Winograd (the reference, and what
 * PyTorch's default CPU path computes). */
enum { WCMI_CONV_AUTO = 0, WCMI_CONV_GEMM = 1 };

typedef struct wcmi_conv2d_dims {
  int N, C, H, W;       /* input (N, C, H, W) */
  int O, KH, KW;        /* weight (O, C, KH, KW) */
  int stride, pad;      /* same in both axes */
  int Ho, Wo;           /* output (N, O, Ho, Wo): filled by wcmi_conv2d_dims_init */
  int threads;          /* threads the workspace is sized for: set to the OpenMP thread count by
                           wcmi_conv2d_dims_init; calls never use more (below 1 counts as 1,
                           above 256 as 256) */
  int algo;             /* WCMI_CONV_AUTO (0) or WCMI_CONV_GEMM; wcmi_conv2d_dims_init replaces AUTO
                           by the context's conv_algo */
} wcmi_conv2d_dims;

/* Fills Ho, Wo and threads (and algo from ctx when it is AUTO). Returns WCMI_EINVAL (message names
 * the layer `name`) if the shape is impossible or algo unknown. */
int wcmi_conv2d_dims_init(wcmi_ctx *ctx, const char *name, wcmi_conv2d_dims *d);
/* Floats of scratch space forward/backward need (im2col columns etc.) for these dims: enough for any
 * batch up to d->N and any thread count up to d->threads. */
size_t wcmi_conv2d_workspace_floats(const wcmi_conv2d_dims *d);
/* y = conv(x, w) + b; b may be NULL. */
void wcmi_conv2d_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                         float *ws);
/* dx (overwritten), dw, db (accumulated); any may be NULL. */
void wcmi_conv2d_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db, float *ws);

/* ---- linear (torch.nn.Linear): x (N, I), w (O, I), b (O), y (N, O) ----------------------- */
void wcmi_linear_forward(int N, int I, int O, const float *x, const float *w, const float *b, float *y);
void wcmi_linear_backward(int N, int I, int O, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db);

/* ---- batch normalization over x (N, C, S): S = H*W for BatchNorm2d, 1 for BatchNorm1d -------
 * Train mode (torch): normalizes with the biased batch variance, then updates
 *   running_mean = (1 - momentum) * running_mean + momentum * mean
 *   running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1),  M = N*S
 * and increments *num_batches_tracked. mean and rstd (C each) are saved for backward.
 * Eval mode uses the running statistics. */
void wcmi_batchnorm_forward_train(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                  float *running_mean, float *running_var, int64_t *num_batches_tracked,
                                  float momentum, float eps, float *y, float *mean, float *rstd);
void wcmi_batchnorm_forward_eval(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps, float *y);
void wcmi_batchnorm_backward_train(int N, int C, int S, const float *x, const float *gamma, const float *mean,
                                   const float *rstd, const float *dy, float *dx, float *dgamma, float *dbeta);
void wcmi_batchnorm_backward_eval(int N, int C, int S, const float *x, const float *gamma,
                                  const float *running_mean, const float *running_var, float eps,
                                  const float *dy, float *dx, float *dgamma, float *dbeta);
/* BatchNorm followed by ReLU in one pass: y = max(BN(x), 0), everything else as the plain forward
 * (statistics, running averages, mean/rstd for backward). Bit-identical to the BN forward then
 * wcmi_relu_forward; y holds only the ReLU output (what both backwards need besides x). */
void wcmi_batchnorm_relu_forward_train(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                       float *running_mean, float *running_var, int64_t *num_batches_tracked,
                                       float momentum, float eps, float *y, float *mean, float *rstd);
void wcmi_batchnorm_relu_forward_eval(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var, float eps, float *y);
/* Eval-mode BatchNorm followed by ReLU, input gradient only: dx = gamma*rstd * (relu_y > 0 ? dy : 0),
 * where relu_y is the ReLU's output. Bit-identical to wcmi_relu_backward then
 * wcmi_batchnorm_backward_eval, in one pass instead of two. */
void wcmi_batchnorm_relu_backward_eval(int N, int C, int S, const float *gamma, const float *running_var, float eps,
                                       const float *relu_y, const float *dy, float *dx);

/* ---- layer norm over the channel axis of x (N, C, S), at each of the N*S locations -----------
 * (torch.nn.LayerNorm(C) applied to the channel-last permutation; biased variance.)
 * mean, rstd: (N*S) saved for backward. The backward's dx may be x or dy (in place). */
void wcmi_layernorm_channel_forward(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                    float eps, float *y, float *mean, float *rstd);
void wcmi_layernorm_channel_backward(int N, int C, int S, const float *x, const float *gamma, const float *mean,
                                     const float *rstd, const float *dy, float *dx, float *dgamma, float *dbeta);

/* ---- elementwise -------------------------------------------------------------------------- */
void wcmi_relu_forward(int64_t n, const float *x, float *y);
/* Uses the forward output y (y > 0 <=> x > 0), so x need not be kept. */
void wcmi_relu_backward(int64_t n, const float *y, const float *dy, float *dx);
/* Inverted dropout (torch.nn.Dropout, train mode): keep with prob 1-p, scale kept by 1/(1-p).
 * mask (n) receives the scale applied to each element (0 or 1/(1-p)). */
void wcmi_dropout_forward(int64_t n, float p, wcmi_rng *rng, const float *x, float *y, float *mask);
void wcmi_dropout_backward(int64_t n, const float *mask, const float *dy, float *dx);

/* ---- softmax cross-entropy (torch.nn.functional.cross_entropy, reduction='mean') ----------
 * logits (N, K), labels in [0, K). Returns the mean loss; probs (N, K) saved for backward.
 * Uses a max-shifted log-sum-exp. */
float wcmi_cross_entropy_forward(int N, int K, const float *logits, const int32_t *labels, float *probs);
/* dlogits = scale * (probs - onehot) / N  (scale = upstream gradient of the mean loss, usually 1). */
void wcmi_cross_entropy_backward(int N, int K, const float *probs, const int32_t *labels, float scale,
                                 float *dlogits);

/* ---- initialization (PyTorch defaults) ---------------------------------------------------- */
/* Kaiming-uniform with a = sqrt(5): U(-b, b), b = 1/sqrt(fan_in) (this is what a=sqrt(5) reduces to),
 * for conv and linear weights; bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void wcmi_init_uniform(wcmi_rng *rng, float *w, int64_t n, float bound);

/* ================================ parameters ================================================ */
typedef enum {
  WCMI_PARAM_TRAINABLE = 0, /* float32, has a gradient, updated by optimizers */
  WCMI_PARAM_BUFFER = 1,    /* float32 state (BN running stats): saved, not trained */
  WCMI_PARAM_COUNTER = 2,   /* int64 counter (num_batches_tracked): saved, not trained */
} wcmi_param_kind;

#define WCMI_NAME_MAX 128
typedef struct wcmi_param {
  char name[WCMI_NAME_MAX]; /* PyTorch state_dict name, e.g. "encoder.layer0.0.weight" */
  wcmi_param_kind kind;
  wcmi_shape shape;
  float *data;   /* float32 data (NULL for counters) */
  float *grad;   /* gradient, same shape (NULL unless trainable) */
  int64_t *i64;  /* counter storage (kind == WCMI_PARAM_COUNTER) */
} wcmi_param;

/* ================================ sequential net ============================================ */
typedef struct wcmi_net wcmi_net;

/* What backward computes. */
enum { WCMI_GRAD_INPUT = 1, WCMI_GRAD_PARAMS = 2, WCMI_GRAD_BOTH = 3 };

/* Starts a net named `prefix` ("encoder", "dim_local", ...) for per-sample input shape `in`
 * ((C, H, W) for images, (F) for vectors). Layers are appended with the builders below, then
 * wcmi_net_finalize allocates everything once. Returns NULL on failure (ctx has the message). */
wcmi_net *wcmi_net_new(wcmi_ctx *ctx, const char *prefix, wcmi_shape in);
void wcmi_net_free(wcmi_net *net);

/* Builders. `name` is the PyTorch module path inside the net ("layer0.0"); parameters are named
 * prefix.name.weight etc. Each returns WCMI_OK or an error naming the layer and the mismatch. */
int wcmi_net_add_normalize(wcmi_net *net, int C, const float *mean, const float *std); /* clamp to [0,1], (x-mean)/std */
int wcmi_net_add_conv2d(wcmi_net *net, const char *name, int out_ch, int k, int stride, int pad, int bias);
int wcmi_net_add_linear(wcmi_net *net, const char *name, int out, int bias);
int wcmi_net_add_batchnorm(wcmi_net *net, const char *name); /* 2d on (C,H,W), 1d on (F) */
int wcmi_net_add_relu(wcmi_net *net);
int wcmi_net_add_dropout(wcmi_net *net, float p);
int wcmi_net_add_flatten(wcmi_net *net);
int wcmi_net_add_view_map(wcmi_net *net); /* (F) -> (F, 1, 1), for 1x1 blocks on vectors */
/* PAPER.md section 3 residual 1x1 block in -> H:
 * y = LN_H( conv1x1_b(ReLU(BN(conv1x1(x)))) + shortcut(x) ), names block_nonlinear.{0,1,3},
 * block_ln.1, linear_shortcut (relative to `name`, which may be ""). */
int wcmi_net_add_resblock(wcmi_net *net, const char *name, int H);

/* Allocates parameters, gradients and activations for batches up to max_batch and initializes
 * parameters as PyTorch does, from rng. After this, no allocation happens in forward/backward. */
int wcmi_net_finalize(wcmi_net *net, int max_batch, wcmi_rng *rng);

/* Forward on x (N, in...). train=1: BN uses batch statistics and updates running stats, dropout
 * active; train=0: eval mode. Returns the output buffer (N, out...), valid until the next forward.
 * Returns NULL if N > max_batch (ctx has the message). */
const float *wcmi_net_forward(wcmi_net *net, const float *x, int N, int train);
/* Backward from dy (shape of the last output) through the last forward. `what` selects
 * WCMI_GRAD_INPUT (dx only: attacks), WCMI_GRAD_PARAMS (parameter grads only: frozen input) or both.
 * Parameter gradients accumulate; input gradient is overwritten and readable via wcmi_net_input_grad. */
int wcmi_net_backward(wcmi_net *net, const float *dy, int what);
/* The same, starting at intermediate layer `last` (0-based, build order) with dy of that layer's
 * output shape (see wcmi_net_layer_output): layers after `last` are skipped. For gradients of a
 * hidden unit with respect to the input (feature saliency, per-neuron analysis). */
int wcmi_net_backward_from(wcmi_net *net, int last, const float *dy, int what);
/* The buffer the last forward's output lives in, writable, for a caller that is done with the output
 * and passes the output gradient to wcmi_net_backward in the same memory (saving a map of the output's
 * size). NULL where backward reads that buffer itself (the output layer is a ReLU) or the output is
 * the net's input (a net of views only). */
float *wcmi_net_output_for_grad(wcmi_net *net);
/* Before finalize: promise that every backward through the last layer gets its dy in the buffer
 * wcmi_net_output_for_grad returns (backward fails with WCMI_EINVAL otherwise). A residual block as
 * last layer then keeps one activation map fewer when its maps exceed 16 MiB (its BN input lives in
 * the output buffer and is recomputed there in backward; smaller maps are cheaper to keep than to
 * recompute). The local estimator is built this way. */
int wcmi_net_set_grad_in_output(wcmi_net *net);
/* Before finalize: every ReLU that directly follows a BatchNorm, conv or linear layer overwrites that
 * layer's output instead of keeping its own (after a BatchNorm, in the same pass): one activation
 * map fewer per pair, at the price of that layer's own output (see wcmi_net_layer_output). The MI
 * estimators are built this way; the encoder, whose BN outputs the per-neuron analysis reads, is not. */
int wcmi_net_set_relu_in_place(wcmi_net *net);
const float *wcmi_net_input_grad(const wcmi_net *net);
void wcmi_net_zero_grad(wcmi_net *net);

wcmi_shape wcmi_net_in_shape(const wcmi_net *net);   /* per sample */
wcmi_shape wcmi_net_out_shape(const wcmi_net *net);  /* per sample */
int wcmi_net_max_batch(const wcmi_net *net);
int wcmi_net_num_params(const wcmi_net *net);
wcmi_param *wcmi_net_param(wcmi_net *net, int i);
wcmi_param *wcmi_net_find_param(wcmi_net *net, const char *name);
int64_t wcmi_net_num_trainable(const wcmi_net *net); /* scalar count */
/* Output of intermediate layer i (0-based, in build order) from the last forward, and its
 * per-sample shape; for saliency and per-neuron analysis. Returns NULL if out of range. In a net
 * built with wcmi_net_set_relu_in_place, the output of a BatchNorm, conv or linear layer followed
 * by a ReLU reads as the ReLU's output (the same buffer). */
const float *wcmi_net_layer_output(const wcmi_net *net, int i, wcmi_shape *shape);
int wcmi_net_num_layers(const wcmi_net *net);
const char *wcmi_net_layer_name(const wcmi_net *net, int i); /* "layer0.0", "relu" ... */
wcmi_ctx *wcmi_net_ctx(wcmi_net *net);
/* Seeds the dropout stream. */
void wcmi_net_set_rng(wcmi_net *net, const wcmi_rng *rng);
wcmi_rng *wcmi_net_rng(wcmi_net *net);

/* ---- per-layer hook (profiling) ----
 * A hook set on a net is called just before and just after each layer's forward and backward (and
 * each part of a composite layer: a residual block reports its 1x1 convs, BN+ReLU, add and LayerNorm
 * as parts), from the calling thread, outside any parallel region. Unset (the default), it costs one
 * predicted branch per layer. Backward reports what wcmi_net_backward really runs: an eval-mode BN
 * fused with the ReLU after it is one event on the BN (the ReLU then has none), and layers below
 * the first parametrized one are absent when no input gradient is asked for. */
typedef enum { WCMI_HOOK_FORWARD = 0, WCMI_HOOK_BACKWARD = 1 } wcmi_hook_dir;
typedef struct wcmi_layer_event {
  int layer;         /* 0-based, build order */
  int part;          /* -1: the whole layer; else a part index (wcmi_net_layer_part_name) */
  const char *kind;  /* wcmi_net_layer_kind of the layer */
  wcmi_hook_dir dir; /* forward or backward */
  int end;           /* 0: about to run; 1: has just run */
  int N, train;      /* batch and mode of the pass */
} wcmi_layer_event;
typedef void (*wcmi_layer_hook)(void *user, const wcmi_layer_event *ev);
/* Sets (or, with hook NULL, clears) the hook; user is handed to every call. */
void wcmi_net_set_layer_hook(wcmi_net *net, wcmi_layer_hook hook, void *user);
/* "normalize", "conv2d", "linear", "batchnorm", "relu", "dropout", "flatten", "view_map", "resblock";
 * NULL if i is out of range. */
const char *wcmi_net_layer_kind(const wcmi_net *net, int i);
/* Parts a layer reports to the hook (0 for a plain layer) and their names, in forward order. */
int wcmi_net_layer_num_parts(const wcmi_net *net, int i);
const char *wcmi_net_layer_part_name(const wcmi_net *net, int i, int part);
/* Forward GEMM FLOPs of layer i (or of one part; part -1: the whole layer) at batch N, counted as
 * the direct convolution / dense product does them: 2 * N * outputs * fan-in for convs and linears,
 * 0 for the elementwise layers. For throughput figures (bench/README.md). */
double wcmi_net_layer_gemm_flops(const wcmi_net *net, int i, int part, int N);

/* ================================ optimizers ================================================ */
/* A parameter group: the trainable parameters of one or more nets. */
typedef struct wcmi_optim wcmi_optim;

typedef struct wcmi_adam_cfg {
  float lr, beta1, beta2, eps, weight_decay; /* torch.optim.Adam defaults: 1e-3, 0.9, 0.999, 1e-8, 0 */
} wcmi_adam_cfg;
typedef struct wcmi_sgd_cfg {
  float lr, momentum, weight_decay; /* torch.optim.SGD (dampening 0, no nesterov) */
} wcmi_sgd_cfg;

wcmi_adam_cfg wcmi_adam_defaults(void);
/* Collects every trainable parameter of nets[0..n_nets) and allocates state. */
wcmi_optim *wcmi_adam_new(wcmi_ctx *ctx, wcmi_net **nets, int n_nets, wcmi_adam_cfg cfg);
wcmi_optim *wcmi_sgd_new(wcmi_ctx *ctx, wcmi_net **nets, int n_nets, wcmi_sgd_cfg cfg);
void wcmi_optim_free(wcmi_optim *opt);
/* One update from the accumulated gradients (does not zero them). */
void wcmi_optim_step(wcmi_optim *opt);
void wcmi_optim_zero_grad(wcmi_optim *opt);
float wcmi_optim_lr(const wcmi_optim *opt);
void wcmi_optim_set_lr(wcmi_optim *opt, float lr);
int64_t wcmi_optim_steps(const wcmi_optim *opt);
/* Optimizer state as named buffers for checkpoints: "optim.<param>.exp_avg", ".exp_avg_sq"
 * (Adam), ".momentum_buffer" (SGD), plus the step counter "optim.step" (int64 counter). */
int wcmi_optim_num_state(const wcmi_optim *opt);
wcmi_param *wcmi_optim_state(wcmi_optim *opt, int i);

/* torch.optim.lr_scheduler.StepLR: lr = base_lr * gamma^(floor(epoch / step_size)). */
typedef struct wcmi_steplr {
  float base_lr, gamma;
  int step_size;
} wcmi_steplr;
float wcmi_steplr_lr(const wcmi_steplr *s, int epoch);

/* Learning-rate schedules stepped once per optimizer step (--lr-schedule). */
typedef enum {
  WCMI_LR_CONSTANT = 0, /* base_lr throughout (the paper's Adam 1e-4) */
  WCMI_LR_COSINE = 1,   /* linear warm-up, then cosine decay to 0 */
} wcmi_lr_schedule;
/* The lr of optimizer step `step` (0-based) of `total`: base * (step + 1) / warmup during the first
 * `warmup` steps, then base * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2, the shape of
 * torch's LinearLR warm-up followed by CosineAnnealingLR(T_max = total - warmup, eta_min = 0) stepped
 * per batch. Steps past total keep the last step's lr; a constant schedule returns base. */
float wcmi_lr_at(wcmi_lr_schedule s, float base, int64_t step, int64_t warmup, int64_t total);

#ifdef __cplusplus
}
#endif
#endif
