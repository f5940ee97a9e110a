/* Standard heads fitted on cached representations (see head_fit.h for why). */
#include "train/head_fit.h"

#include "dist/dist_train.h"
#include "wcmi/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int feat_encode(wcmi_ctx *ctx, wcmi_model *m, const wcmi_dataset *d, int batch, float **z_out, int *zdim) {
  *z_out = NULL;
  const wcmi_shape out = wcmi_net_out_shape(m->encoder), in = wcmi_net_in_shape(m->encoder);
  const int64_t Z = wcmi_shape_numel(&out), D = wcmi_dataset_sample_size(d);
  if (D != wcmi_shape_numel(&in))
    return wcmi_fail(ctx, WCMI_EINVAL, "encode: %s samples have %lld values, the encoder expects %lld", d->name,
                     (long long)D, (long long)wcmi_shape_numel(&in));
  if (batch > wcmi_net_max_batch(m->encoder)) batch = wcmi_net_max_batch(m->encoder);
  if (d->n <= 0 || batch <= 0) return wcmi_fail(ctx, WCMI_EINVAL, "encode: %s has no samples", d->name);
  float *z = wcmi_alloc(ctx, (size_t)d->n * (size_t)Z, sizeof(float));
  if (!z) return ctx->status;
  /* Data-parallel: each rank encodes a block of the batches and every rank receives all rows. */
  wcmi_net *enc[1] = {m->encoder};
  int rc = dist_forward_rows(ctx, enc, 1, d->images, d->n, D, batch, Z, d->name, z);
  if (rc) {
    wcmi_free(z);
    return rc;
  }
  *z_out = z;
  *zdim = (int)Z;
  return WCMI_OK;
}

/* Cholesky factor L of the d x d SPD matrix a (row-major, lower triangle read), in place of a's
 * lower triangle. Returns 0, or -1 when a pivot is not positive. */
static int cholesky(double *a, int d) {
  for (int j = 0; j < d; j++) {
    double s = a[j * d + j];
    for (int k = 0; k < j; k++) s -= a[j * d + k] * a[j * d + k];
    if (!(s > 0)) return -1;
    a[j * d + j] = sqrt(s);
    for (int i = j + 1; i < d; i++) {
      double t = a[i * d + j];
      for (int k = 0; k < j; k++) t -= a[i * d + k] * a[j * d + k];
      a[i * d + j] = t / a[j * d + j];
    }
  }
  return 0;
}

int head_fit_whitening(wcmi_ctx *ctx, const feat_set *s, int zdim, double *mu, double *P) {
  const int d = zdim;
  const double n = (double)(s->n > 0 ? s->n : 1);
  for (int j = 0; j < d; j++) mu[j] = 0.0;
  for (int64_t i = 0; i < s->n; i++)
    for (int j = 0; j < d; j++) mu[j] += s->z[i * d + j];
  for (int j = 0; j < d; j++) mu[j] /= n;
  double *cov = P; /* built in P's storage, factorized in place, then inverted into P */
  double *L = malloc((size_t)d * (size_t)d * sizeof *L), *c = malloc((size_t)d * sizeof *c);
  if (!L || !c) {
    free(L);
    free(c);
    return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  }
  for (int k = 0; k < d * d; k++) cov[k] = 0.0;
  for (int64_t i = 0; i < s->n; i++) {
    for (int j = 0; j < d; j++) c[j] = s->z[i * d + j] - mu[j];
    for (int a = 0; a < d; a++)
      for (int b = 0; b <= a; b++) cov[a * d + b] += c[a] * c[b];
  }
  double trace = 0.0;
  for (int a = 0; a < d; a++) {
    for (int b = 0; b <= a; b++) cov[a * d + b] /= n;
    trace += cov[a * d + a];
  }
  /* A ridge of 1e-6 of the mean variance keeps the factor finite when dimensions are collinear or
   * dead (a ReLU path that never fires): those directions stay ~0 instead of being amplified. */
  const double ridge = 1e-6 * (trace > 0 ? trace / d : 1.0) + 1e-30;
  for (int a = 0; a < d; a++) cov[a * d + a] += ridge;
  for (int k = 0; k < d * d; k++) L[k] = cov[k];
  int bad = cholesky(L, d);
  if (bad) {
    free(L);
    free(c);
    return wcmi_fail(ctx, WCMI_ENUMERIC, "head fit: the features' covariance is not positive definite (NaN/Inf features?)");
  }
  /* P = L^-1 (lower triangular), column by column by forward substitution. */
  for (int k = 0; k < d * d; k++) P[k] = 0.0;
  for (int col = 0; col < d; col++)
    for (int i = col; i < d; i++) {
      double t = i == col ? 1.0 : 0.0;
      for (int k = col; k < i; k++) t -= L[i * d + k] * P[k * d + col];
      P[i * d + col] = t / L[i * d + i];
    }
  free(L);
  free(c);
  return WCMI_OK;
}

void head_fit_whiten(const feat_set *s, int zdim, const double *mu, const double *P, float *out) {
  const int d = zdim;
  for (int64_t i = 0; i < s->n; i++) {
    const float *z = s->z + i * d;
    for (int a = 0; a < d; a++) {
      double t = 0.0;
      for (int k = 0; k <= a; k++) t += P[a * d + k] * ((double)z[k] - mu[k]);
      out[i * d + a] = (float)t;
    }
  }
}

/* The head's first linear layer: weight (O, zdim) and bias (O), the first two parameters. */
static int first_linear(wcmi_ctx *ctx, wcmi_net *head, int zdim, wcmi_param **w, wcmi_param **b) {
  *w = wcmi_net_num_params(head) >= 2 ? wcmi_net_param(head, 0) : NULL;
  *b = *w ? wcmi_net_param(head, 1) : NULL;
  if (!*w || !*b || (*w)->shape.ndim != 2 || (*w)->shape.d[1] != zdim || (*b)->shape.ndim != 1 ||
      (*b)->shape.d[0] != (*w)->shape.d[0])
    return wcmi_fail(ctx, WCMI_EINVAL, "head: the first layer is not a linear layer on %d features", zdim);
  return WCMI_OK;
}

int head_fit_fold(wcmi_ctx *ctx, wcmi_net *head, int zdim, const double *mu, const double *P) {
  wcmi_param *w, *b;
  int rc = first_linear(ctx, head, zdim, &w, &b);
  if (rc) return rc;
  const int d = zdim;
  const int64_t O = w->shape.d[0];
  double *row = malloc((size_t)d * sizeof *row);
  if (!row) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  for (int64_t o = 0; o < O; o++) {
    float *wo = w->data + o * d;
    double shift = 0.0;
    /* W' = W P: P is lower triangular, so column k of P has entries in rows k..d-1. */
    for (int k = 0; k < d; k++) {
      double t = 0.0;
      for (int a = k; a < d; a++) t += (double)wo[a] * P[a * d + k];
      row[k] = t;
    }
    for (int k = 0; k < d; k++) {
      wo[k] = (float)row[k];
      shift += row[k] * mu[k];
    }
    b->data[o] = (float)((double)b->data[o] - shift);
  }
  free(row);
  return WCMI_OK;
}

/* Rows idx[0..n) of s into zb (n, zdim) and yb (n). */
static void gather(const feat_set *s, int zdim, const int64_t *idx, int n, float *zb, int32_t *yb) {
  for (int i = 0; i < n; i++) {
    memcpy(zb + (int64_t)i * zdim, s->z + idx[i] * zdim, (size_t)zdim * sizeof(float));
    yb[i] = s->y[idx[i]];
  }
}

static int count_correct(const float *logits, const int32_t *y, int n, int K) {
  int ok = 0;
  for (int i = 0; i < n; i++) {
    const float *l = logits + (int64_t)i * K;
    int arg = 0;
    for (int k = 1; k < K; k++)
      if (l[k] > l[arg]) arg = k;
    ok += arg == y[i];
  }
  return ok;
}

int head_accuracy(wcmi_ctx *ctx, wcmi_net *head, const feat_set *s, int zdim, double *acc) {
  const int B = wcmi_net_max_batch(head);
  const wcmi_shape out = wcmi_net_out_shape(head);
  const int C = (int)wcmi_shape_numel(&out);
  float *zb = wcmi_alloc(ctx, (size_t)B * (size_t)zdim, sizeof(float));
  int32_t *yb = wcmi_alloc(ctx, (size_t)B, sizeof(int32_t));
  int64_t *idx = wcmi_alloc(ctx, (size_t)B, sizeof(int64_t));
  int rc = (zb && yb && idx) ? WCMI_OK : ctx->status;
  int64_t ok = 0;
  for (int64_t off = 0; off < s->n && !rc; off += B) {
    const int n = (int)(s->n - off < B ? s->n - off : B);
    for (int i = 0; i < n; i++) idx[i] = off + i;
    gather(s, zdim, idx, n, zb, yb);
    const float *logits = wcmi_net_forward(head, zb, n, 0);
    if (!logits) rc = ctx->status;
    else ok += count_correct(logits, yb, n, C);
  }
  if (!rc) *acc = s->n > 0 ? (double)ok / (double)s->n : 0.0;
  wcmi_free(zb);
  wcmi_free(yb);
  wcmi_free(idx);
  return rc;
}

static int fit_local(wcmi_ctx *ctx, wcmi_net *head, wcmi_net *best_head, const feat_set *train, const feat_set *test,
                     int zdim, const head_fit_cfg *cfg, head_fit_epoch *per_epoch, int *best_epoch) {
  const int B = cfg->batch_size;
  const wcmi_shape out = wcmi_net_out_shape(head);
  const int K = (int)wcmi_shape_numel(&out);
  *best_epoch = -1;
  if (B < 2 || B > wcmi_net_max_batch(head)) return wcmi_fail(ctx, WCMI_EINVAL, "%s: batch size %d", cfg->task, B);
  if (train->n < B)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: %lld training samples are fewer than one batch of %d", cfg->task,
                     (long long)train->n, B);
  for (int64_t i = 0; i < train->n; i++)
    if (train->y[i] < 0 || train->y[i] >= K)
      return wcmi_fail(ctx, WCMI_EINVAL, "%s: label %d of sample %lld outside [0, %d)", cfg->task, train->y[i],
                       (long long)i, K);
  const size_t d = (size_t)zdim;
  double *mu = wcmi_alloc(ctx, d, sizeof(double)), *P = wcmi_alloc(ctx, d * d, sizeof(double));
  float *wtr = wcmi_alloc(ctx, (size_t)train->n * d, sizeof(float)), *wte = wcmi_alloc(ctx, (size_t)test->n * d, sizeof(float));
  float *zb = wcmi_alloc(ctx, (size_t)B * d, sizeof(float)), *probs = wcmi_alloc(ctx, (size_t)B * K, sizeof(float)),
        *dlogits = wcmi_alloc(ctx, (size_t)B * K, sizeof(float));
  int32_t *yb = wcmi_alloc(ctx, (size_t)B, sizeof(int32_t));
  int64_t *perm = wcmi_alloc(ctx, (size_t)train->n, sizeof(int64_t));
  wcmi_adam_cfg ac = wcmi_adam_defaults();
  ac.lr = (float)cfg->lr;
  wcmi_optim *opt = NULL;
  int rc = (mu && P && wtr && (wte || !test->n) && zb && probs && dlogits && yb && perm) ? WCMI_OK : ctx->status;
  if (!rc && !(opt = wcmi_adam_new(ctx, &head, 1, ac))) rc = ctx->status;
  if (!rc) rc = head_fit_whitening(ctx, train, zdim, mu, P);
  if (!rc) {
    head_fit_whiten(train, zdim, mu, P, wtr);
    head_fit_whiten(test, zdim, mu, P, wte);
  }
  const feat_set wtrain = {wtr, train->y, train->n}, wtest = {wte, test->y, test->n};
  wcmi_rng shuffle;
  wcmi_rng_derive(&shuffle, cfg->seed, WCMI_STREAM_SHUFFLE);
  int64_t nb = train->n / B;
  if (cfg->max_batches > 0 && nb > cfg->max_batches) nb = cfg->max_batches;
  double best = -1.0;
  for (int e = 0; e < cfg->epochs && !rc; e++) {
    for (int64_t i = 0; i < train->n; i++) perm[i] = i;
    wcmi_rng_shuffle(&shuffle, perm, train->n);
    double loss_sum = 0.0, t0 = wcmi_now();
    int64_t correct = 0;
    for (int64_t b = 0; b < nb && !rc; b++) {
      gather(&wtrain, zdim, perm + b * B, B, zb, yb);
      if (cfg->lr_schedule != WCMI_LR_CONSTANT)
        wcmi_optim_set_lr(opt, wcmi_lr_at((wcmi_lr_schedule)cfg->lr_schedule, (float)cfg->lr, (int64_t)e * nb + b,
                                          (int64_t)llround(cfg->warmup_epochs * (double)nb), (int64_t)cfg->epochs * nb));
      wcmi_optim_zero_grad(opt);
      const float *logits = wcmi_net_forward(head, zb, B, 1);
      if (!logits) {
        rc = ctx->status;
        break;
      }
      const float loss = wcmi_cross_entropy_forward(B, K, logits, yb, probs);
      if (!isfinite(loss)) {
        rc = wcmi_fail(ctx, WCMI_ENUMERIC, "%s: cross-entropy is %g at epoch %d of the cached head fit (try a lower --lr)",
                       cfg->task, (double)loss, e + 1);
        break;
      }
      correct += count_correct(logits, yb, B, K);
      loss_sum += loss;
      wcmi_cross_entropy_backward(B, K, probs, yb, 1.0f, dlogits);
      if ((rc = wcmi_net_backward(head, dlogits, WCMI_GRAD_PARAMS))) break;
      wcmi_optim_step(opt);
    }
    if (rc) break;
    head_fit_epoch *r = &per_epoch[e];
    r->loss = loss_sum / (double)nb;
    r->train_acc = (double)correct / (double)(nb * B);
    if ((rc = head_accuracy(ctx, head, &wtest, zdim, &r->test_acc))) break;
    r->seconds = wcmi_now() - t0;
    if (r->test_acc > best) {
      best = r->test_acc;
      *best_epoch = e;
      if ((rc = wcmi_net_copy_params(ctx, best_head, head))) break;
    }
    if (cfg->progress && ((e + 1) % (cfg->epochs / 10 > 0 ? cfg->epochs / 10 : 1) == 0 || e + 1 == cfg->epochs))
      fprintf(stderr, "[%s] cached head fit: epoch %d/%d loss %.4f train_acc %.4f test_acc %.4f\n", cfg->task, e + 1,
              cfg->epochs, r->loss, r->train_acc, r->test_acc);
    if (ctx->interrupt) rc = wcmi_fail(ctx, WCMI_EINTR, "%s: interrupted in the cached head fit at epoch %d", cfg->task, e + 1);
  }
  if (!rc && *best_epoch < 0) rc = wcmi_net_copy_params(ctx, best_head, head); /* zero epochs: the initial head */
  if (!rc) rc = head_fit_fold(ctx, head, zdim, mu, P);
  if (!rc) rc = head_fit_fold(ctx, best_head, zdim, mu, P);
  wcmi_optim_free(opt);
  wcmi_free(mu);
  wcmi_free(P);
  wcmi_free(wtr);
  wcmi_free(wte);
  wcmi_free(zb);
  wcmi_free(probs);
  wcmi_free(dlogits);
  wcmi_free(yb);
  wcmi_free(perm);
  return rc;
}

int head_fit_cached(wcmi_ctx *ctx, wcmi_net *head, wcmi_net *best_head, const feat_set *train, const feat_set *test,
                    int zdim, const head_fit_cfg *cfg, head_fit_epoch *per_epoch, int *best_epoch) {
  /* Data-parallel: every rank holds all the features and repeats the fit (seconds), without the
   * communicator, so the head's BatchNorm and dropout are one process's computation rather than a
   * collective over K copies of each batch: every rank fits one process's head, bit for bit. */
  wcmi_dist *dist = ctx->dist;
  ctx->dist = NULL;
  int rc = fit_local(ctx, head, best_head, train, test, zdim, cfg, per_epoch, best_epoch);
  ctx->dist = dist;
  /* A Ctrl-C that reached some ranks only: stop them all. */
  const int stop = dist_interrupted(ctx);
  if (!rc && stop) rc = wcmi_fail(ctx, WCMI_EINTR, "%s: interrupted in the cached head fit", cfg->task);
  return rc;
}
