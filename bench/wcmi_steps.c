/* wcmi side of the issue-5 benchmark: the rows of bench/torch_ref.py, run through the library.
 *
 *   worst   one worst-case encoder training iteration: PGD-10 l-inf on the DV MI loss (eps 0.1,
 *           step 0.02, no random start, no restarts, use-best off; BN in eval mode; gradient to x'
 *           through the encoder only: wcmi_dim with WCMI_PATH_ENCODER and wcmi_dim_objective), then
 *           one Adam step (lr 1e-4, train mode) on encoder + local + global on the adversarial batch;
 *   normal  the same training step on the clean batch;
 *   attack  PGD-10 against the cross-entropy of an MLP head on a frozen encoder (eval mode), then
 *           the evaluation forward on x'. The natural accuracy comes from the attack's first
 *           forward (x' = x there), as in torch_ref.py.
 * Batch 128, Fashion-MNIST shapes (1x28x28), inputs uniform in [0,1) from a fixed seed, random labels.
 * W warm-up iterations are discarded, then K timed ones; median/min/max are reported with the peak
 * RSS (getrusage ru_maxrss, read BEFORE the SGEMM reference allocates its matrices), the analytic
 * GEMM FLOP count of the row (bench/README.md; same formulas as torch_ref.py --flops) and the
 * machine's SGEMM GFLOP/s on 2048^3 with the same thread count.
 *
 * --per-layer: after the timed iterations, times every layer of the three nets on the model's own
 * shapes and buffers by calling the kernels directly (forward eval / backward dx as in the attack;
 * forward train / backward dx+dw as in the update), the MI loss and its gradient, the PGD update
 * and Adam, and prints where a worst-case iteration spends its time.
 *
 * usage: bench_wcmi_steps --row worst|normal|attack [--hsize N] [--threads T] [--iters K]
 *          [--warmup W] [--seed S] [--grad-path encoder|both] [--gemm N] [--conv-algo auto|gemm]
 *          [--per-layer] [--json]
 * --conv-algo gemm turns off the Winograd convolutions (wcmi_ctx.conv_algo): the FLOP count is the
 * direct convolution's either way, so with auto (the default) "achieved GFLOP/s" counts the multiplies
 * Winograd saves as if they were done (an effective rate).
 */
#include "nn/batchnorm_internal.h"
#include "nn/conv2d_internal.h"
#include "nn/net_internal.h"
#include "wcmi/blas.h"
#include "wcmi/io.h"
#include "wcmi/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { BATCH = 128, CLASSES = 10 };
static const float EPS = 0.1f, STEP = 0.02f;
static const int PGD_STEPS = 10;

typedef enum { ROW_WORST, ROW_NORMAL, ROW_ATTACK } row_kind;

typedef struct opts {
  row_kind row;
  const char *row_name;
  int hsize, threads, iters, warmup, seed, gemm_n, json, per_layer;
  wcmi_grad_path path;
  int conv_algo; /* WCMI_CONV_AUTO or WCMI_CONV_GEMM */
} opts;

/* ---------------------------------------------------------------- small helpers ----------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of t[0..n) (sorts a copy). */
static double median_of(const double *t, int n) {
  double *c = malloc((size_t)n * sizeof *c);
  if (!c) return NAN;
  memcpy(c, t, (size_t)n * sizeof *c);
  qsort(c, (size_t)n, sizeof *c, cmp_double);
  double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
  free(c);
  return m;
}

static long peak_rss_kib(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* ---------------------------------------------------------------- FLOP count -------------- */
/* GEMM FLOPs only (bench/README.md): a conv/linear with M output rows, reduction K and O outputs
 * costs 2*M*K*O forward, and the same again for dgrad and for wgrad. */
static int conv_out(int side) { return (side + 2 - 4) / 2 + 1; }

typedef struct flops {
  double enc, loc, glob, score, first_conv, head; /* forward FLOPs of each part */
  double attack_step, update, worst, normal, attack_row;
} flops;

static flops flop_count(int hsize, int N, int C, int side, wcmi_grad_path path) {
  const int s1 = conv_out(side), s2 = conv_out(s1), s3 = conv_out(s2), L = s2 * s2;
  const double n = N, h = hsize;
  flops f;
  f.first_conv = 2.0 * n * s1 * s1 * (C * 16) * 64;
  f.enc = f.first_conv + 2.0 * n * L * 1024 * 128 + 2.0 * n * s3 * s3 * 2048 * 256 + 2.0 * n * (256.0 * s3 * s3) * 1024 +
          2.0 * n * 1024 * 64;
  f.loc = f.first_conv + 2.0 * n * L * 1024 * 128 + 2 * (2.0 * n * L * 128 * h) + 2.0 * n * L * h * h;
  f.glob = 2 * (2.0 * n * 64 * h) + 2.0 * n * h * h;
  f.score = 2.0 * n * h * n * L;
  f.head = 2.0 * n * 64 * 200 + 2.0 * n * 200 * CLASSES;
  /* attack step: forward, then dGz, global dgrad, encoder dgrad (first conv included) */
  f.attack_step = 2 * f.enc + 2 * f.glob + f.loc + 2 * f.score;
  if (path == WCMI_PATH_BOTH) f.attack_step += f.score + f.loc;
  /* update: forward, dGz + dLx, wgrad everywhere, dgrad except the two first convs */
  f.update = 3 * (f.enc + f.glob + f.loc + f.score) - 2 * f.first_conv;
  f.worst = PGD_STEPS * f.attack_step + f.update;
  f.normal = f.update;
  f.attack_row = PGD_STEPS * 2 * (f.enc + f.head) + (f.enc + f.head);
  return f;
}

/* ---------------------------------------------------------------- SGEMM reference --------- */
/* Median and best GFLOP/s of `reps` SGEMMs n x n x n (after one warm-up). */
static int sgemm_gflops(wcmi_ctx *ctx, int n, int reps, double *med, double *best) {
  size_t nn = (size_t)n * (size_t)n;
  float *a = wcmi_alloc(ctx, nn, sizeof(float)), *b = wcmi_alloc(ctx, nn, sizeof(float));
  float *c = wcmi_alloc(ctx, nn, sizeof(float));
  double *g = malloc((size_t)reps * sizeof *g);
  int rc = 1;
  if (a && b && c && g) {
    wcmi_rng r;
    wcmi_rng_seed(&r, 7);
    for (size_t i = 0; i < nn; i++) a[i] = wcmi_rng_uniform_range(&r, -1, 1), b[i] = wcmi_rng_uniform_range(&r, -1, 1);
    wcmi_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    *best = 0;
    for (int i = 0; i < reps; i++) {
      double t0 = wcmi_now();
      wcmi_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      g[i] = 2.0 * n * (double)n * n / (wcmi_now() - t0) * 1e-9;
      if (g[i] > *best) *best = g[i];
    }
    *med = median_of(g, reps);
    rc = 0;
  }
  wcmi_free(a), wcmi_free(b), wcmi_free(c), free(g);
  return rc;
}

/* ---------------------------------------------------------------- the rows ----------------- */

typedef struct bench {
  wcmi_ctx *ctx;
  opts o;
  wcmi_model m;
  wcmi_dim dim;
  wcmi_clf clf;
  wcmi_optim *opt;
  wcmi_attack *attack;
  wcmi_rng attack_rng;
  float *x, *xadv;
  int32_t *y;
  /* per iteration */
  double phase[2]; /* worst: attack, update; attack: attack, eval */
  int nat_correct, adv_correct, first_eval_seen;
  float loss;
} bench;

/* The classifier objective, noting the natural accuracy from the attack's first evaluation. */
static int clf_eval_counting(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  bench *b = user;
  wcmi_objective inner = wcmi_clf_objective(&b->clf);
  int rc = inner.eval(inner.user, x, N, loss, succ, grad);
  if (!rc && !b->first_eval_seen && succ) {
    int wrong = 0;
    for (int i = 0; i < N; i++) wrong += succ[i] != 0;
    b->nat_correct = N - wrong;
    b->first_eval_seen = 1;
  }
  return rc;
}

static int bench_init(bench *b, wcmi_ctx *ctx, const opts *o) {
  memset(b, 0, sizeof *b);
  b->ctx = ctx;
  b->o = *o;
  const int attack_row = o->row == ROW_ATTACK;
  int rc = wcmi_model_init(ctx, &b->m, "fashion-mnist", attack_row ? 0 : o->hsize,
                           attack_row ? WCMI_HEAD_MLP : WCMI_HEAD_NONE, BATCH, (uint64_t)o->seed);
  if (rc) return rc;
  wcmi_shape in = wcmi_net_in_shape(b->m.encoder);
  int64_t D = wcmi_shape_numel(&in);
  b->x = wcmi_alloc(ctx, (size_t)BATCH * (size_t)D, sizeof(float));
  b->xadv = wcmi_alloc(ctx, (size_t)BATCH * (size_t)D, sizeof(float));
  b->y = wcmi_alloc(ctx, BATCH, sizeof(int32_t));
  if (!b->x || !b->xadv || !b->y) return ctx->status;
  wcmi_rng r;
  wcmi_rng_derive(&r, (uint64_t)o->seed, WCMI_STREAM_DATA);
  for (int64_t i = 0; i < (int64_t)BATCH * D; i++) b->x[i] = wcmi_rng_uniform(&r);
  for (int i = 0; i < BATCH; i++) b->y[i] = (int32_t)wcmi_rng_below(&r, CLASSES);
  wcmi_rng_derive(&b->attack_rng, (uint64_t)o->seed, WCMI_STREAM_ATTACK);
  wcmi_pgd_cfg pc = {WCMI_NORM_LINF, EPS, STEP, PGD_STEPS, 0, 0, 0};
  if (!(b->attack = wcmi_attack_new(ctx, &pc, BATCH, D))) return ctx->status;
  if (attack_row) {
    if ((rc = wcmi_clf_init(ctx, &b->clf, &b->m, BATCH))) return rc;
    b->clf.labels = b->y;
    return WCMI_OK;
  }
  if ((rc = wcmi_dim_init(ctx, &b->dim, &b->m, wcmi_mi_default_cfg(), o->path, BATCH))) return rc;
  wcmi_net *nets[3] = {b->m.encoder, b->m.local, b->m.global};
  wcmi_adam_cfg a = wcmi_adam_defaults();
  a.lr = 1e-4f;
  if (!(b->opt = wcmi_adam_new(ctx, nets, 3, a))) return ctx->status;
  return WCMI_OK;
}

static void bench_free(bench *b) {
  wcmi_optim_free(b->opt);
  wcmi_attack_free(b->attack);
  if (b->dim.ws) wcmi_dim_free(&b->dim);
  if (b->clf.probs) wcmi_clf_free(&b->clf);
  wcmi_model_free(&b->m);
  wcmi_free(b->x), wcmi_free(b->xadv), wcmi_free(b->y);
}

/* One Adam step (train mode) on encoder + local + global minimizing the MI loss on x. */
static int update(bench *b, const float *x) {
  wcmi_optim_zero_grad(b->opt);
  int rc = wcmi_dim_step(&b->dim, x, BATCH, 1, 1, WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_ESTIMATOR_PARAMS, &b->loss, NULL);
  if (rc) return rc;
  wcmi_optim_step(b->opt);
  return WCMI_OK;
}

static int iteration(bench *b) {
  int rc;
  double t0 = wcmi_now();
  switch (b->o.row) {
  case ROW_WORST: {
    b->dim.attack_enc_train = b->dim.attack_est_train = 0; /* BN on running statistics while searching */
    wcmi_objective obj = wcmi_dim_objective(&b->dim);
    if ((rc = wcmi_pgd_run(b->attack, &obj, b->x, BATCH, &b->attack_rng, b->xadv, NULL))) return rc;
    double t1 = wcmi_now();
    if ((rc = update(b, b->xadv))) return rc;
    b->phase[0] = t1 - t0, b->phase[1] = wcmi_now() - t1;
    return WCMI_OK;
  }
  case ROW_NORMAL:
    return update(b, b->x);
  case ROW_ATTACK: {
    b->first_eval_seen = 0;
    wcmi_objective obj = {1, clf_eval_counting, b};
    if ((rc = wcmi_pgd_run(b->attack, &obj, b->x, BATCH, &b->attack_rng, b->xadv, NULL))) return rc;
    double t1 = wcmi_now();
    rc = wcmi_clf_step(&b->clf, b->xadv, b->y, BATCH, 0, 0, 0, NULL, NULL, NULL, &b->adv_correct, NULL);
    b->phase[0] = t1 - t0, b->phase[1] = wcmi_now() - t1;
    return rc;
  }
  }
  return WCMI_OK;
}

/* ---------------------------------------------------------------- per-layer profile -------- */
/* Each layer of a net is timed on that net's own buffers (input and output of the last forward,
 * the gradient ping-pong buffers as dy/dx, the shared conv workspace), calling the same kernels
 * net.c calls. Times are medians of `reps` calls. Backward "attack" = dx only, eval-mode BN;
 * backward "update" = dx and parameter gradients, train-mode BN (dx skipped for a net's first
 * parametrized layer, as wcmi_net_backward does without an input gradient). */

typedef struct prof_row {
  char net[16], layer[WCMI_NAME_MAX];
  double fwd_eval, bwd_attack, fwd_train, bwd_update; /* seconds (median) */
  double gflop_fwd;                                  /* forward GEMM GFLOP of this layer */
  int in_attack_bwd;                                 /* is backward run during the attack (encoder path)? */
} prof_row;

typedef struct prof {
  prof_row rows[96];
  int n, reps;
} prof;

/* Times fn(arg) `reps` times and returns the median. */
typedef void (*timed_fn)(void *arg);
static double time_median(timed_fn fn, void *arg, int reps) {
  double t[64];
  if (reps > 64) reps = 64;
  fn(arg); /* warm-up */
  for (int i = 0; i < reps; i++) {
    double t0 = wcmi_now();
    fn(arg);
    t[i] = wcmi_now() - t0;
  }
  return median_of(t, reps);
}

typedef struct layer_call {
  wcmi_net *net;
  net_layer *L;
  int N, train, dx, params, sub; /* sub: resblock part, -1 for the whole layer */
  float *gy, *gx;                /* output- and input-sized gradient buffers owned by the profile */
} layer_call;

static void normalize_fwd(const net_layer *L, const float *x, float *y, int N) {
  int C = (int)L->in.d[0];
  int64_t S = L->in.d[1] * L->in.d[2];
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
    int c = (int)(nc % C);
    float m = L->norm_mean[c], inv = 1.0f / L->norm_std[c];
    for (int64_t s = 0; s < S; s++) y[nc * S + s] = (fminf(fmaxf(x[nc * S + s], 0.0f), 1.0f) - m) * inv;
  }
}

static const float MOM = 0.1f, E = 1e-5f; /* BatchNorm momentum and eps, as net.c and resblock.c */

/* A BN forward as net.c runs it: with the following ReLU in the same pass when that ReLU works in
 * place (relu_fused; the ReLU's own part then does nothing). */
static void bn_call(wcmi_net *net, bn_params *bn, int N, int C, int S, const float *x, float *y, int train,
                    int relu) {
  float *g = net_pdata(net, bn->gamma), *b = net_pdata(net, bn->beta), *rm = net_pdata(net, bn->running_mean),
        *rv = net_pdata(net, bn->running_var);
  int64_t *nbt = net->params[bn->num_batches].i64;
  if (train && relu)
    wcmi_batchnorm_relu_forward_train(N, C, S, x, g, b, rm, rv, nbt, MOM, E, y, bn->mean, bn->rstd);
  else if (train)
    wcmi_batchnorm_forward_train(N, C, S, x, g, b, rm, rv, nbt, MOM, E, y, bn->mean, bn->rstd);
  else if (relu)
    wcmi_batchnorm_relu_forward_eval(N, C, S, x, g, b, rm, rv, E, y);
  else
    wcmi_batchnorm_forward_eval(N, C, S, x, g, b, rm, rv, E, y);
}

static void bn_back(wcmi_net *net, bn_params *bn, int N, int C, int S, const float *x, const float *dy, float *dx,
                    int train, int params) {
  float *dg = params ? net_pgrad(net, bn->gamma) : NULL, *db = params ? net_pgrad(net, bn->beta) : NULL;
  if (train)
    wcmi_batchnorm_backward_train(N, C, S, x, net_pdata(net, bn->gamma), bn->mean, bn->rstd, dy, dx, dg, db);
  else
    wcmi_batchnorm_backward_eval(N, C, S, x, net_pdata(net, bn->gamma), net_pdata(net, bn->running_mean),
                                 net_pdata(net, bn->running_var), E, dy, dx, dg, db);
}

static wcmi_conv2d_dims dims_n(const conv_params *c, int N) {
  wcmi_conv2d_dims d = c->dims;
  d.N = N;
  return d;
}

/* Resblock parts, in forward order, as resblock.c runs them (two maps, a and d; see there). */
enum { RB_CONV0, RB_BN_RELU, RB_CONV3, RB_SHORTCUT, RB_ADD, RB_LN, RB_PARTS };
static const char *const RB_NAMES[RB_PARTS] = {"block_nonlinear.0 (1x1 in->H)", "block_nonlinear.1-2 (BN+ReLU)",
                                               "block_nonlinear.3 (1x1 H->H)",  "linear_shortcut (1x1 in->H)",
                                               "residual add",                  "block_ln.1 (LayerNorm)"};

static void resblock_part_fwd(layer_call *c) {
  wcmi_net *net = c->net;
  resblock_state *rb = c->L->rb;
  const float *x = c->L->in_ptr;
  int N = c->N;
  int64_t n = (int64_t)N * rb->H * rb->S;
  float *a = rb->a_in_output ? c->L->y : rb->a;
  wcmi_conv2d_dims d;
  switch (c->sub) {
  case RB_CONV0:
    d = dims_n(&rb->conv0, N);
    wcmi_conv2d_forward(&d, x, net_pdata(net, rb->conv0.w), NULL, a, net->ws);
    break;
  case RB_BN_RELU: bn_call(net, &rb->bn, N, rb->H, rb->S, a, rb->d, c->train, 1); break;
  case RB_CONV3:
    d = dims_n(&rb->conv3, N);
    conv2d_pointwise_forward(&d, rb->d, NULL, net_pdata(net, rb->conv3.w), net_pdata(net, rb->conv3.b), rb->d,
                             net->ws);
    break;
  case RB_SHORTCUT:
    d = dims_n(&rb->shortcut, N);
    wcmi_conv2d_forward(&d, x, net_pdata(net, rb->shortcut.w), NULL, c->L->y, net->ws);
    break;
  case RB_ADD: {
    float *s = rb->d;
    const float *y = c->L->y;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) s[i] += 0.0f * y[i]; /* same memory traffic, values kept */
    break;
  }
  case RB_LN:
    wcmi_layernorm_channel_forward(N, rb->H, rb->S, rb->d, net_pdata(net, rb->ln_gamma), net_pdata(net, rb->ln_beta),
                                   1e-5f, c->L->y, rb->ln_mean, rb->ln_rstd);
    break;
  }
}

/* Backward of a resblock part; dy/dx are scratch buffers of the right size (values irrelevant). The
 * BN+ReLU part times the ReLU mask and the BN backward, both in place on d; conv0's part includes
 * the recomputation of a where the block keeps it in its output buffer. */
static void resblock_part_bwd(layer_call *c) {
  wcmi_net *net = c->net;
  resblock_state *rb = c->L->rb;
  bn_params *bn = &rb->bn;
  const float *x = c->L->in_ptr;
  int N = c->N, p = c->params;
  float *gx = c->dx ? c->gx : NULL; /* input-sized gradient */
  float *a = rb->a_in_output ? c->L->y : rb->a;
  wcmi_conv2d_dims d;
  bn_relu_coefficients(rb->H, c->train, net_pdata(net, bn->gamma), net_pdata(net, bn->beta), bn->mean, bn->rstd,
                       net_pdata(net, bn->running_mean), net_pdata(net, bn->running_var), E, rb->bn_shift,
                       rb->bn_scale, rb->bn_bias);
  const conv2d_bnrelu xf = {rb->bn_shift, rb->bn_scale, rb->bn_bias};
#define PG(idx) (p ? net_pgrad(net, (idx)) : NULL)
  switch (c->sub) {
  case RB_LN:
    wcmi_layernorm_channel_backward(N, rb->H, rb->S, rb->d, net_pdata(net, rb->ln_gamma), rb->ln_mean, rb->ln_rstd,
                                    c->gy, rb->d, PG(rb->ln_gamma), PG(rb->ln_beta));
    break;
  case RB_SHORTCUT:
    d = dims_n(&rb->shortcut, N);
    wcmi_conv2d_backward(&d, x, net_pdata(net, rb->shortcut.w), rb->d, gx, PG(rb->shortcut.w), NULL, net->ws);
    break;
  case RB_CONV3:
    d = dims_n(&rb->conv3, N);
    conv2d_pointwise_backward(&d, a, &xf, net_pdata(net, rb->conv3.w), rb->d, rb->d, 0, PG(rb->conv3.w),
                              PG(rb->conv3.b), net->ws);
    break;
  case RB_BN_RELU:
    bn_relu_mask_grad(N, rb->H, rb->S, a, xf.shift, xf.scale, xf.bias, rb->d);
    bn_back(net, bn, N, rb->H, rb->S, a, rb->d, rb->d, c->train, p);
    break;
  case RB_CONV0:
    d = dims_n(&rb->conv0, N);
    if (rb->a_in_output) wcmi_conv2d_forward(&d, x, net_pdata(net, rb->conv0.w), NULL, a, net->ws);
    conv2d_pointwise_backward(&d, x, NULL, net_pdata(net, rb->conv0.w), rb->d, gx, 1, PG(rb->conv0.w), NULL,
                              net->ws);
    break;
  case RB_ADD: break; /* folded into conv0's backward (dx_add) */
  }
#undef PG
}

static void layer_fwd_call(void *arg) {
  layer_call *c = arg;
  net_layer *L = c->L;
  wcmi_net *net = c->net;
  const float *x = L->in_ptr;
  int N = c->N;
  switch (L->kind) {
  case LAYER_NORMALIZE: normalize_fwd(L, x, L->y, N); break;
  case LAYER_CONV2D: {
    wcmi_conv2d_dims d = dims_n(&L->conv, N);
    wcmi_conv2d_forward(&d, x, net_pdata(net, L->conv.w), net_pdata(net, L->conv.b), L->y, net->ws);
    break;
  }
  case LAYER_LINEAR:
    wcmi_linear_forward(N, (int)L->in.d[0], (int)L->out.d[0], x, net_pdata(net, L->lin_w), net_pdata(net, L->lin_b),
                        L->y);
    break;
  case LAYER_BATCHNORM:
    bn_call(net, &L->bn, N, (int)L->in.d[0], (int)(L->in_numel / L->in.d[0]), x, L->y, c->train, L->relu_fused);
    break;
  case LAYER_RELU:
    if (!(L->relu_in_place && L[-1].relu_fused)) wcmi_relu_forward((int64_t)N * L->out_numel, x, L->y);
    break;
  case LAYER_RESBLOCK: resblock_part_fwd(c); break;
  default: break; /* views, dropout (not in these nets) */
  }
}

static void layer_bwd_call(void *arg) {
  layer_call *c = arg;
  net_layer *L = c->L;
  wcmi_net *net = c->net;
  const float *x = L->in_ptr;
  int N = c->N, p = c->params;
  float *dx = c->dx ? c->gx : NULL;
  const float *dy = c->gy;
  switch (L->kind) {
  case LAYER_NORMALIZE:
    if (dx) {
      /* clamp mask times 1/std, as net.c's normalize_backward */
      int64_t n = (int64_t)N * L->in_numel;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; i++) dx[i] = (x[i] >= 0.0f && x[i] <= 1.0f) ? dy[i] : 0.0f;
    }
    break;
  case LAYER_CONV2D: {
    wcmi_conv2d_dims d = dims_n(&L->conv, N);
    wcmi_conv2d_backward(&d, x, net_pdata(net, L->conv.w), dy, dx, p ? net_pgrad(net, L->conv.w) : NULL,
                         p ? net_pgrad(net, L->conv.b) : NULL, net->ws);
    break;
  }
  case LAYER_LINEAR:
    wcmi_linear_backward(N, (int)L->in.d[0], (int)L->out.d[0], x, net_pdata(net, L->lin_w), dy, dx,
                         p ? net_pgrad(net, L->lin_w) : NULL, p ? net_pgrad(net, L->lin_b) : NULL);
    break;
  case LAYER_BATCHNORM:
    bn_back(net, &L->bn, N, (int)L->in.d[0], (int)(L->in_numel / L->in.d[0]), x, dy, dx, c->train, p);
    break;
  case LAYER_RELU:
    if (dx) wcmi_relu_backward((int64_t)N * L->out_numel, L->y, dy, dx);
    break;
  case LAYER_RESBLOCK: resblock_part_bwd(c); break;
  default: break;
  }
}

static double layer_gflop(const net_layer *L, int N, int sub) {
  const wcmi_conv2d_dims *d = NULL;
  if (L->kind == LAYER_CONV2D) d = &L->conv.dims;
  else if (L->kind == LAYER_LINEAR) return 2.0 * N * (double)L->in.d[0] * (double)L->out.d[0] * 1e-9;
  else if (L->kind == LAYER_RESBLOCK && sub == RB_CONV0) d = &L->rb->conv0.dims;
  else if (L->kind == LAYER_RESBLOCK && sub == RB_SHORTCUT) d = &L->rb->shortcut.dims;
  else if (L->kind == LAYER_RESBLOCK && sub == RB_CONV3) d = &L->rb->conv3.dims;
  if (!d) return 0.0;
  return 2.0 * N * (double)d->Ho * d->Wo * (double)d->C * d->KH * d->KW * d->O * 1e-9;
}

/* Profiles every layer of net (eval forward + attack backward, train forward + update backward). */
static void profile_net(prof *pf, wcmi_net *net, const char *netname, const float *x, int attack_bwd) {
  const int N = BATCH;
  int first_param = -1;
  for (int i = 0; i < net->n_layers && first_param < 0; i++) {
    layer_kind k = net->layers[i].kind;
    if (k == LAYER_CONV2D || k == LAYER_LINEAR || k == LAYER_BATCHNORM || k == LAYER_RESBLOCK) first_param = i;
  }
  const int first_row = pf->n;
  /* Gradient buffers big enough for any layer's output and input (the net's own ping-pong buffers
   * only cover layer inputs). Zero: the timings must not run on denormals or NaNs. */
  int64_t most = wcmi_shape_numel(&net->in);
  for (int i = 0; i < net->n_layers; i++)
    if (net->layers[i].out_numel > most) most = net->layers[i].out_numel;
  float *gy = wcmi_calloc(net->ctx, (size_t)N * (size_t)most, sizeof(float));
  float *gx = wcmi_calloc(net->ctx, (size_t)N * (size_t)most, sizeof(float));
  if (!gy || !gx) {
    wcmi_free(gy), wcmi_free(gx);
    return;
  }
  for (int pass = 0; pass < 2; pass++) {
    const int train = pass == 1;
    wcmi_net_forward(net, x, N, train); /* sets every layer's in_ptr / buffers for this mode */
    int row0 = first_row;
    for (int i = 0; i < net->n_layers; i++) {
      net_layer *L = &net->layers[i];
      if (L->kind == LAYER_FLATTEN || L->kind == LAYER_VIEW_MAP) continue;
      int nsub = L->kind == LAYER_RESBLOCK ? RB_PARTS : 1;
      for (int s = 0; s < nsub; s++) {
        prof_row *r;
        if (pass == 0) {
          if (pf->n >= (int)(sizeof pf->rows / sizeof pf->rows[0])) return;
          r = &pf->rows[pf->n++];
          memset(r, 0, sizeof *r);
          snprintf(r->net, sizeof r->net, "%s", netname);
          if (nsub > 1) snprintf(r->layer, sizeof r->layer, "%s", RB_NAMES[s]);
          else snprintf(r->layer, sizeof r->layer, "%s", L->name);
          r->gflop_fwd = layer_gflop(L, N, nsub > 1 ? s : -1);
          r->in_attack_bwd = attack_bwd;
        } else {
          r = &pf->rows[row0++];
        }
        layer_call c = {net, L, N, train, 0, 0, nsub > 1 ? s : -1, gy, gx};
        double tf = time_median(layer_fwd_call, &c, pf->reps);
        /* attack: dx only everywhere; update: params, dx except at the first parametrized layer */
        c.dx = train ? i > first_param : 1;
        c.params = train;
        double tb = (train || attack_bwd) ? time_median(layer_bwd_call, &c, pf->reps) : 0.0;
        if (train) r->fwd_train = tf, r->bwd_update = tb;
        else r->fwd_eval = tf, r->bwd_attack = tb;
      }
    }
  }
  wcmi_free(gy), wcmi_free(gx);
  wcmi_net_zero_grad(net);
}

typedef struct mi_call {
  bench *b;
  const float *lx, *gz;
  int dlx, dgz;
} mi_call;

static void mi_fwd_call(void *arg) {
  mi_call *c = arg;
  float loss;
  wcmi_mi_forward(c->b->ctx, c->b->dim.mi, BATCH, c->b->dim.H, c->b->dim.L, c->lx, c->gz, c->b->dim.ws,
                  c->b->dim.ws_bytes, &loss);
}

static void mi_bwd_call(void *arg) {
  mi_call *c = arg;
  wcmi_mi_backward(c->b->ctx, c->b->dim.mi, BATCH, c->b->dim.H, c->b->dim.L, c->lx, c->gz, 1.0f, c->b->dim.ws,
                   c->b->dim.ws_bytes, c->dlx ? c->b->dim.dLx : NULL, c->dgz ? c->b->dim.dGz : NULL);
}

static void pgd_update_call(void *arg) {
  bench *b = arg;
  /* the l-inf step + projection PGD does per iteration, on a gradient of the right shape */
  int64_t D = 784;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < (int64_t)BATCH * D; i++) b->xadv[i] += b->x[i] > 0.5f ? STEP : -STEP;
  wcmi_project(WCMI_NORM_LINF, EPS, b->x, b->xadv, BATCH, D);
}

static void adam_call(void *arg) { wcmi_optim_step(((bench *)arg)->opt); }

/* Prints the profile of a worst-case iteration: per layer, and totals per phase. */
static int per_layer_profile(bench *b, FILE *out) {
  if (b->o.row == ROW_ATTACK) {
    fprintf(out, "# --per-layer is implemented for the worst and normal rows\n");
    return WCMI_OK;
  }
  prof *pf = calloc(1, sizeof *pf);
  if (!pf) return wcmi_fail(b->ctx, WCMI_ENOMEM, "per-layer: out of memory");
  pf->reps = 5;
  const float *z = wcmi_net_forward(b->m.encoder, b->x, BATCH, 0);
  profile_net(pf, b->m.encoder, "encoder", b->x, 1);
  (void)z;
  /* The global net runs on the encoder's output (copied: the encoder's buffer is reused). */
  float *zc = wcmi_alloc(b->ctx, (size_t)BATCH * WCMI_ZDIM, sizeof(float));
  if (!zc) {
    free(pf);
    return b->ctx->status;
  }
  memcpy(zc, wcmi_net_forward(b->m.encoder, b->x, BATCH, 0), (size_t)BATCH * WCMI_ZDIM * sizeof(float));
  profile_net(pf, b->m.global, "global", zc, 1);
  profile_net(pf, b->m.local, "local", b->x, b->o.path == WCMI_PATH_BOTH);
  /* MI loss and gradient on the features of an eval forward */
  const float *gz = wcmi_net_forward(b->m.global, zc, BATCH, 0);
  const float *lx = wcmi_net_forward(b->m.local, b->x, BATCH, 0);
  mi_call mf = {b, lx, gz, 0, 0}, mb_attack = {b, lx, gz, b->o.path == WCMI_PATH_BOTH, 1}, mb_update = {b, lx, gz, 1, 1};
  double t_mi_fwd = time_median(mi_fwd_call, &mf, pf->reps);
  double t_mi_bwd_attack = time_median(mi_bwd_call, &mb_attack, pf->reps);
  double t_mi_bwd_update = time_median(mi_bwd_call, &mb_update, pf->reps);
  memcpy(b->xadv, b->x, (size_t)BATCH * 784 * sizeof(float));
  double t_pgd = time_median(pgd_update_call, b, pf->reps);
  double t_adam = time_median(adam_call, b, pf->reps);
  wcmi_free(zc);

  fprintf(out, "# per-layer profile, H=%d, %d threads, batch %d, median of %d calls (ms)\n", b->o.hsize,
          b->o.threads, BATCH, pf->reps);
  fprintf(out, "# attack = 10 x (fwd_eval [+ bwd_attack]); update = fwd_train + bwd_update; GF/s over fwd/bwd GEMM FLOPs\n");
  fprintf(out, "%-8s %-30s %8s %9s %9s %9s %10s %9s %7s %7s\n", "net", "layer", "GFLOP", "fwd_eval", "bwd_atk",
          "fwd_train", "bwd_update", "worst_it", "share", "GF/s");
  double tot_fe = 0, tot_ba = 0, tot_ft = 0, tot_bu = 0;
  double worst_total = 0;
  for (int i = 0; i < pf->n; i++) {
    prof_row *r = &pf->rows[i];
    worst_total += PGD_STEPS * (r->fwd_eval + r->bwd_attack) + r->fwd_train + r->bwd_update;
  }
  double mi_attack = PGD_STEPS * (t_mi_fwd + t_mi_bwd_attack), mi_update = t_mi_fwd + t_mi_bwd_update;
  worst_total += mi_attack + mi_update + PGD_STEPS * t_pgd + t_adam;
  for (int i = 0; i < pf->n; i++) {
    prof_row *r = &pf->rows[i];
    double w = PGD_STEPS * (r->fwd_eval + r->bwd_attack) + r->fwd_train + r->bwd_update;
    /* GEMM FLOPs this layer does in one worst-case iteration */
    double gf = r->gflop_fwd * (PGD_STEPS * (1 + (r->in_attack_bwd ? 1 : 0)) + 3);
    tot_fe += r->fwd_eval, tot_ba += r->bwd_attack, tot_ft += r->fwd_train, tot_bu += r->bwd_update;
    fprintf(out, "%-8s %-30s %8.3f %9.3f %9.3f %9.3f %10.3f %9.2f %6.1f%% %7.1f\n", r->net, r->layer, r->gflop_fwd,
            r->fwd_eval * 1e3, r->bwd_attack * 1e3, r->fwd_train * 1e3, r->bwd_update * 1e3, w * 1e3,
            100 * w / worst_total, w > 0 && gf > 0 ? gf / w : 0.0);
  }
  fprintf(out, "%-8s %-30s %8s %9.3f %9.3f %9.3f %10.3f %9.2f %6.1f%%\n", "mi", "DV loss + scores", "", t_mi_fwd * 1e3,
          t_mi_bwd_attack * 1e3, t_mi_fwd * 1e3, t_mi_bwd_update * 1e3, (mi_attack + mi_update) * 1e3,
          100 * (mi_attack + mi_update) / worst_total);
  fprintf(out, "%-8s %-30s %8s %9.3f %9s %9s %10s %9.2f %6.1f%%\n", "attack", "sign step + projection", "", t_pgd * 1e3,
          "", "", "", PGD_STEPS * t_pgd * 1e3, 100 * PGD_STEPS * t_pgd / worst_total);
  fprintf(out, "%-8s %-30s %8s %9s %9s %9s %10.3f %9.2f %6.1f%%\n", "optim", "Adam step", "", "", "", "", t_adam * 1e3,
          t_adam * 1e3, 100 * t_adam / worst_total);
  fprintf(out, "%-8s %-30s %8s %9.3f %9.3f %9.3f %10.3f %9.2f\n", "total", "(sum of the parts)", "", tot_fe * 1e3,
          tot_ba * 1e3, tot_ft * 1e3, tot_bu * 1e3, worst_total * 1e3);
  free(pf);
  return WCMI_OK;
}

/* ---------------------------------------------------------------- main --------------------- */

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (!end || *end || end == s || v < lo || v > hi) return 1;
  *out = (int)v;
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: bench_wcmi_steps --row worst|normal|attack [--hsize N] [--threads T] [--iters K] [--warmup W]\n"
                  "         [--seed S] [--grad-path encoder|both] [--gemm N] [--conv-algo auto|gemm] [--per-layer]\n"
                  "         [--json]\n");
  return 2;
}

static int parse_opts(int argc, char **argv, opts *o) {
  *o = (opts){ROW_WORST, "worst", 2048, 1, 10, 2, 0, 2048, 0, 0, WCMI_PATH_ENCODER, WCMI_CONV_AUTO};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int bad = 0;
    if (!strcmp(a, "--json")) o->json = 1;
    else if (!strcmp(a, "--per-layer")) o->per_layer = 1;
    else if (!v) return 1;
    else if (!strcmp(a, "--row")) {
      o->row_name = v, i++;
      if (!strcmp(v, "worst")) o->row = ROW_WORST;
      else if (!strcmp(v, "normal")) o->row = ROW_NORMAL;
      else if (!strcmp(v, "attack")) o->row = ROW_ATTACK;
      else bad = 1;
    } else if (!strcmp(a, "--grad-path")) {
      i++;
      if (!strcmp(v, "encoder")) o->path = WCMI_PATH_ENCODER;
      else if (!strcmp(v, "both")) o->path = WCMI_PATH_BOTH;
      else bad = 1;
    } else if (!strcmp(a, "--conv-algo")) {
      i++;
      if (!strcmp(v, "auto")) o->conv_algo = WCMI_CONV_AUTO;
      else if (!strcmp(v, "gemm")) o->conv_algo = WCMI_CONV_GEMM;
      else bad = 1;
    } else if (!strcmp(a, "--hsize")) bad = parse_int(v, 1, 65536, &o->hsize), i++;
    else if (!strcmp(a, "--threads")) bad = parse_int(v, 1, 1024, &o->threads), i++;
    else if (!strcmp(a, "--iters")) bad = parse_int(v, 1, 100000, &o->iters), i++;
    else if (!strcmp(a, "--warmup")) bad = parse_int(v, 0, 100000, &o->warmup), i++;
    else if (!strcmp(a, "--seed")) bad = parse_int(v, 0, 1 << 30, &o->seed), i++;
    else if (!strcmp(a, "--gemm")) bad = parse_int(v, 0, 16384, &o->gemm_n), i++;
    else bad = 1;
    if (bad) return 1;
  }
  return 0;
}

static void write_json(const opts *o, const bench *b, const double *times, double med, double flops_total, long rss,
                       double sg_med, double sg_best, const double *ph0, const double *ph1) {
  wcmi_jsonw w;
  wcmi_jsonw_init_file(&w, stdout, 0);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "impl", "wcmi");
  wcmi_jsonw_kv_string(&w, "wcmi_version", wcmi_version());
  wcmi_jsonw_kv_string(&w, "blas", wcmi_blas_info());
  wcmi_jsonw_kv_string(&w, "row", o->row_name);
  wcmi_jsonw_key(&w, "hsize");
  if (o->row == ROW_ATTACK) wcmi_jsonw_null(&w);
  else wcmi_jsonw_int(&w, o->hsize);
  wcmi_jsonw_kv_int(&w, "batch", BATCH);
  wcmi_jsonw_kv_int(&w, "threads", o->threads);
  wcmi_jsonw_kv_string(&w, "grad_path", o->path == WCMI_PATH_BOTH ? "both" : "encoder");
  wcmi_jsonw_kv_string(&w, "conv_algo", o->conv_algo == WCMI_CONV_GEMM ? "gemm" : "auto");
  wcmi_jsonw_kv_int(&w, "warmup", o->warmup);
  wcmi_jsonw_kv_int(&w, "iters", o->iters);
  wcmi_jsonw_kv_double(&w, "median_s", med);
  double mn = times[0], mx = times[0], mean = 0;
  for (int i = 0; i < o->iters; i++) mn = fmin(mn, times[i]), mx = fmax(mx, times[i]), mean += times[i] / o->iters;
  wcmi_jsonw_kv_double(&w, "mean_s", mean);
  wcmi_jsonw_kv_double(&w, "min_s", mn);
  wcmi_jsonw_kv_double(&w, "max_s", mx);
  wcmi_jsonw_key(&w, "times_s");
  wcmi_jsonw_begin_array(&w);
  for (int i = 0; i < o->iters; i++) wcmi_jsonw_double(&w, times[i]);
  wcmi_jsonw_end_array(&w);
  if (o->row == ROW_WORST) {
    wcmi_jsonw_kv_double(&w, "median_attack_s", median_of(ph0, o->iters));
    wcmi_jsonw_kv_double(&w, "median_update_s", median_of(ph1, o->iters));
  } else if (o->row == ROW_ATTACK) {
    wcmi_jsonw_kv_double(&w, "median_attack_s", median_of(ph0, o->iters));
    wcmi_jsonw_kv_double(&w, "median_eval_s", median_of(ph1, o->iters));
    wcmi_jsonw_kv_int(&w, "nat_correct", b->nat_correct);
    wcmi_jsonw_kv_int(&w, "adv_correct", b->adv_correct);
  }
  if (o->row != ROW_ATTACK) wcmi_jsonw_kv_double(&w, "last_loss", b->loss);
  wcmi_jsonw_kv_int(&w, "peak_rss_kib", rss);
  wcmi_jsonw_kv_double(&w, "peak_rss_mib", rss / 1024.0);
  wcmi_jsonw_kv_double(&w, "gemm_flops", flops_total);
  wcmi_jsonw_kv_double(&w, "achieved_gflops", flops_total / med * 1e-9);
  wcmi_jsonw_kv_int(&w, "sgemm_n", o->gemm_n);
  if (o->gemm_n > 0) {
    wcmi_jsonw_kv_double(&w, "sgemm_gflops", sg_med);
    wcmi_jsonw_kv_double(&w, "sgemm_gflops_best", sg_best);
    wcmi_jsonw_kv_double(&w, "fraction_of_sgemm", flops_total / med * 1e-9 / sg_med);
  }
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_finish(NULL, &w);
  fputc('\n', stdout);
}

int main(int argc, char **argv) {
  opts o;
  if (parse_opts(argc, argv, &o)) return usage();
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, o.threads);
  ctx.conv_algo = o.conv_algo;
  bench b;
  int rc = bench_init(&b, &ctx, &o);
  double *times = malloc((size_t)o.iters * sizeof *times), *ph0 = malloc((size_t)o.iters * sizeof *ph0),
         *ph1 = malloc((size_t)o.iters * sizeof *ph1);
  if (!rc && (!times || !ph0 || !ph1)) rc = wcmi_fail(&ctx, WCMI_ENOMEM, "out of memory");
  for (int i = 0; !rc && i < o.warmup + o.iters; i++) {
    double t0 = wcmi_now();
    rc = iteration(&b);
    double dt = wcmi_now() - t0;
    if (!rc && i >= o.warmup) times[i - o.warmup] = dt, ph0[i - o.warmup] = b.phase[0], ph1[i - o.warmup] = b.phase[1];
  }
  if (rc) {
    fprintf(stderr, "bench_wcmi_steps: %s\n", wcmi_errmsg(&ctx));
    bench_free(&b);
    free(times), free(ph0), free(ph1);
    return 1;
  }
  const long rss = peak_rss_kib(); /* before the SGEMM reference and the profile allocate anything */
  const double med = median_of(times, o.iters);
  flops f = flop_count(o.hsize, BATCH, 1, 28, o.path);
  double total = o.row == ROW_WORST ? f.worst : o.row == ROW_NORMAL ? f.normal : f.attack_row;
  double sg_med = 0, sg_best = 0;
  if (o.gemm_n > 0 && sgemm_gflops(&ctx, o.gemm_n, 5, &sg_med, &sg_best)) rc = 1;
  if (o.json) {
    write_json(&o, &b, times, med, total, rss, sg_med, sg_best, ph0, ph1);
  } else {
    printf("wcmi %s row=%s H=%d threads=%d: median %.4f s/iter (min/max over %d iters), %.1f GFLOP/s (%.3g GFLOP), "
           "peak RSS %.1f MiB; SGEMM %d^3 %.1f GFLOP/s (best %.1f)\n",
           wcmi_version(), o.row_name, o.row == ROW_ATTACK ? 0 : o.hsize, o.threads, med, o.iters, total / med * 1e-9,
           total * 1e-9, rss / 1024.0, o.gemm_n, sg_med, sg_best);
  }
  if (o.per_layer) rc = per_layer_profile(&b, o.json ? stderr : stdout);
  if (rc) fprintf(stderr, "bench_wcmi_steps: %s\n", wcmi_errmsg(&ctx));
  bench_free(&b);
  free(times), free(ph0), free(ph1);
  return rc ? 1 : 0;
}
