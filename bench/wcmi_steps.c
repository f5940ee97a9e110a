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
 * --per-layer: after the timed iterations, times every layer of the three nets inside whole passes
 * through the nets' layer hook (forward eval / backward dx as in the attack; forward train /
 * backward dw as in the update), the MI loss and its gradient, the PGD update and Adam, and prints
 * where a worst-case iteration spends its time.
 *
 * usage: bench_wcmi_steps --row worst|normal|attack [--hsize N] [--threads T] [--iters K]
 *          [--warmup W] [--seed S] [--grad-path encoder|both] [--gemm N] [--conv-algo auto|gemm]
 *          [--per-layer] [--precision fp32|bf16] [--json]
 * --conv-algo gemm turns off the Winograd convolutions (wcmi_ctx.conv_algo): the FLOP count is the
 * direct convolution's either way, so with auto (the default) "achieved GFLOP/s" counts the multiplies
 * Winograd saves as if they were done (an effective rate).
 */
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
  int precision; /* WCMI_GEMM_FP32 or WCMI_GEMM_BF16 (wcmi_blas_set_precision) */
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
/* Each net runs whole passes on its own buffers, and the net's layer hook (wcmi_net_set_layer_hook)
 * clocks every layer, and every part of a residual block, inside them: what is timed is exactly what
 * wcmi_net_forward / wcmi_net_backward run, fusions included (an eval-mode BN and the ReLU after it
 * are one backward pass, reported on the BN's row). Times are medians over `reps` passes.
 * Backward "attack" = input gradient only, eval-mode BN; backward "update" = parameter gradients,
 * train-mode BN (no input gradient: a net's backward stops at its first parametrized layer). */

typedef struct prof_row {
  char net[16], layer[WCMI_NAME_MAX];
  int slot;                                          /* layer * PART_SLOTS + part + 1 */
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

enum { PART_SLOTS = 8, MAX_REPS = 16 }; /* slots per layer: the whole layer and up to 7 parts */
enum { PH_FWD_EVAL, PH_BWD_ATTACK, PH_FWD_TRAIN, PH_BWD_UPDATE, PHASES };

/* The hook's state: when each slot started, and its time summed over the current pass (a part may
 * run twice in one pass: a residual block's conv0 is recomputed in backward). */
typedef struct layer_clock {
  int n_slots;
  double *start, *sum;
} layer_clock;

static void clock_hook(void *user, const wcmi_layer_event *ev) {
  layer_clock *c = user;
  int s = ev->layer * PART_SLOTS + ev->part + 1;
  if (s < 0 || s >= c->n_slots) return;
  if (!ev->end) c->start[s] = wcmi_now();
  else c->sum[s] += wcmi_now() - c->start[s];
}

/* Runs `reps` passes of one phase of net on x and writes each slot's median time to med[slot]. A
 * backward pass follows an untimed forward of its mode, with a zero output gradient (no denormals
 * or NaNs in the timings), in the buffer the net may require it in. */
static int time_phase(wcmi_net *net, const float *x, int phase, int reps, layer_clock *c, float *dy_own,
                      double *med) {
  const int N = BATCH, train = phase == PH_FWD_TRAIN || phase == PH_BWD_UPDATE;
  const int backward = phase == PH_BWD_ATTACK || phase == PH_BWD_UPDATE;
  const wcmi_shape out = wcmi_net_out_shape(net);
  const size_t out_floats = (size_t)N * (size_t)wcmi_shape_numel(&out);
  double *per_rep = wcmi_calloc(wcmi_net_ctx(net), (size_t)c->n_slots * MAX_REPS, sizeof *per_rep);
  if (!per_rep) return wcmi_net_ctx(net)->status;
  if (reps > MAX_REPS) reps = MAX_REPS;
  int rc = WCMI_OK;
  for (int r = -1; r < reps && !rc; r++) { /* r = -1: warm-up */
    memset(c->sum, 0, (size_t)c->n_slots * sizeof *c->sum);
    wcmi_net_set_layer_hook(net, backward ? NULL : clock_hook, c);
    if (!wcmi_net_forward(net, x, N, train)) rc = wcmi_net_ctx(net)->status;
    if (!rc && backward) {
      float *dy = wcmi_net_output_for_grad(net);
      if (!dy) dy = dy_own;
      memset(dy, 0, out_floats * sizeof *dy);
      wcmi_net_set_layer_hook(net, clock_hook, c);
      rc = wcmi_net_backward(net, dy, phase == PH_BWD_ATTACK ? WCMI_GRAD_INPUT : WCMI_GRAD_PARAMS);
    }
    wcmi_net_set_layer_hook(net, NULL, NULL);
    if (r >= 0)
      for (int s = 0; s < c->n_slots; s++) per_rep[(size_t)s * MAX_REPS + (size_t)r] = c->sum[s];
  }
  for (int s = 0; s < c->n_slots && !rc; s++) med[s] = median_of(&per_rep[(size_t)s * MAX_REPS], reps);
  wcmi_free(per_rep);
  return rc;
}

/* Adds net's rows to pf (one per layer, one per part of a residual block; views have none) and
 * fills their four phase times. attack_bwd: the attack's backward goes through this net. */
static int profile_net(prof *pf, wcmi_net *net, const char *netname, const float *x, int attack_bwd) {
  const int N = BATCH, n_layers = wcmi_net_num_layers(net);
  const int first_row = pf->n;
  for (int i = 0; i < n_layers; i++) {
    const char *kind = wcmi_net_layer_kind(net, i);
    if (!strcmp(kind, "flatten") || !strcmp(kind, "view_map")) continue;
    int nparts = wcmi_net_layer_num_parts(net, i);
    for (int part = nparts ? 0 : -1; part < nparts; part++) {
      if (pf->n >= (int)(sizeof pf->rows / sizeof pf->rows[0]) || part + 1 >= PART_SLOTS) break;
      prof_row *r = &pf->rows[pf->n++];
      memset(r, 0, sizeof *r);
      snprintf(r->net, sizeof r->net, "%s", netname);
      snprintf(r->layer, sizeof r->layer, "%s", part < 0 ? wcmi_net_layer_name(net, i) : wcmi_net_layer_part_name(net, i, part));
      r->slot = i * PART_SLOTS + part + 1;
      r->gflop_fwd = wcmi_net_layer_gemm_flops(net, i, part, N) * 1e-9;
      r->in_attack_bwd = attack_bwd;
    }
  }
  wcmi_ctx *ctx = wcmi_net_ctx(net);
  const wcmi_shape out = wcmi_net_out_shape(net);
  layer_clock c = {n_layers * PART_SLOTS, NULL, NULL};
  c.start = wcmi_calloc(ctx, (size_t)c.n_slots, sizeof *c.start);
  c.sum = wcmi_calloc(ctx, (size_t)c.n_slots, sizeof *c.sum);
  double *med = wcmi_calloc(ctx, (size_t)c.n_slots * PHASES, sizeof *med);
  float *dy_own = wcmi_alloc(ctx, (size_t)N * (size_t)wcmi_shape_numel(&out), sizeof *dy_own);
  int rc = c.start && c.sum && med && dy_own ? WCMI_OK : ctx->status;
  for (int ph = 0; ph < PHASES && !rc; ph++) {
    if (ph == PH_BWD_ATTACK && !attack_bwd) continue;
    rc = time_phase(net, x, ph, pf->reps, &c, dy_own, med + (size_t)ph * c.n_slots);
  }
  for (int k = first_row; k < pf->n && !rc; k++) {
    prof_row *r = &pf->rows[k];
    r->fwd_eval = med[PH_FWD_EVAL * c.n_slots + r->slot];
    r->bwd_attack = med[PH_BWD_ATTACK * c.n_slots + r->slot];
    r->fwd_train = med[PH_FWD_TRAIN * c.n_slots + r->slot];
    r->bwd_update = med[PH_BWD_UPDATE * c.n_slots + r->slot];
  }
  wcmi_free(c.start), wcmi_free(c.sum), wcmi_free(med), wcmi_free(dy_own);
  wcmi_net_zero_grad(net);
  return rc;
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
  int rc = profile_net(pf, b->m.encoder, "encoder", b->x, 1);
  /* The global net runs on the encoder's output (copied: the encoder's buffer is reused). */
  float *zc = wcmi_alloc(b->ctx, (size_t)BATCH * WCMI_ZDIM, sizeof(float));
  if (rc || !zc) {
    free(pf);
    wcmi_free(zc);
    return rc ? rc : b->ctx->status;
  }
  memcpy(zc, wcmi_net_forward(b->m.encoder, b->x, BATCH, 0), (size_t)BATCH * WCMI_ZDIM * sizeof(float));
  rc = profile_net(pf, b->m.global, "global", zc, 1);
  if (!rc) rc = profile_net(pf, b->m.local, "local", b->x, b->o.path == WCMI_PATH_BOTH);
  if (rc) {
    free(pf);
    wcmi_free(zc);
    return rc;
  }
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
                  "         [--precision fp32|bf16] [--json]\n");
  return 2;
}

static int parse_opts(int argc, char **argv, opts *o) {
  *o = (opts){ROW_WORST, "worst", 2048, 1, 10, 2, 0, 2048, 0, 0, WCMI_PATH_ENCODER, WCMI_CONV_AUTO, WCMI_GEMM_FP32};
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
    } else if (!strcmp(a, "--precision")) {
      i++;
      if (!strcmp(v, "fp32")) o->precision = WCMI_GEMM_FP32;
      else if (!strcmp(v, "bf16")) o->precision = WCMI_GEMM_BF16;
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
  wcmi_jsonw_kv_string(&w, "precision", wcmi_gemm_precision_name(o->precision));
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
  if (wcmi_blas_set_precision(&ctx, o.precision)) {
    fprintf(stderr, "bench_wcmi_steps: --precision: %s\n", ctx.msg);
    return 2;
  }
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
