/* The trainer's data-parallel steps (docs/distributed.md): parameter broadcast at start and resume,
 * the gradient all-reduce, and the reduction of the per-batch values the progress lines and
 * metrics.jsonl report. */
#include "dist/dist_train.h"

#include "wcmi/dist.h"

#include <stdio.h>
#include <string.h>

int dist_is_root(const wcmi_ctx *ctx) { return wcmi_dist_rank(ctx->dist) == 0; }

int dist_bcast_params(wcmi_ctx *ctx, wcmi_param **params, int n) {
  wcmi_dist *d = ctx->dist;
  if (!d) return WCMI_OK;
  for (int i = 0; i < n; i++) {
    wcmi_param *p = params[i];
    const size_t numel = (size_t)wcmi_shape_numel(&p->shape);
    int rc = p->kind == WCMI_PARAM_COUNTER ? wcmi_dist_bcast(d, p->i64, numel * sizeof(int64_t))
                                           : wcmi_dist_bcast(d, p->data, numel * sizeof(float));
    if (rc) return rc;
  }
  return WCMI_OK;
}

/* Trainable parameters of nets[0..n), in net then parameter order. */
static size_t grad_floats(wcmi_net *const *nets, int n) {
  size_t total = 0;
  for (int k = 0; k < n; k++)
    for (int i = 0; i < wcmi_net_num_params(nets[k]); i++) {
      wcmi_param *p = wcmi_net_param(nets[k], i);
      if (p->kind == WCMI_PARAM_TRAINABLE && p->grad) total += (size_t)wcmi_shape_numel(&p->shape);
    }
  return total;
}

/* dir 0: gradients into buf; 1: buf back into the gradients. */
static void pack_grads(wcmi_net *const *nets, int n, float *buf, int dir) {
  size_t off = 0;
  for (int k = 0; k < n; k++)
    for (int i = 0; i < wcmi_net_num_params(nets[k]); i++) {
      wcmi_param *p = wcmi_net_param(nets[k], i);
      if (p->kind != WCMI_PARAM_TRAINABLE || !p->grad) continue;
      const size_t numel = (size_t)wcmi_shape_numel(&p->shape);
      if (dir == 0) memcpy(buf + off, p->grad, numel * sizeof(float));
      else memcpy(p->grad, buf + off, numel * sizeof(float));
      off += numel;
    }
}

int dist_sum_net_grads(wcmi_ctx *ctx, wcmi_net *const *nets, int n, float **buf, size_t *buf_n) {
  wcmi_dist *d = ctx->dist;
  if (!d) return WCMI_OK;
  if (!*buf) { /* once per optimizer: the step loop allocates nothing */
    *buf_n = grad_floats(nets, n);
    *buf = wcmi_alloc(ctx, *buf_n ? *buf_n : 1, sizeof(float));
    if (!*buf) return ctx->status;
  }
  pack_grads(nets, n, *buf, 0);
  int rc = wcmi_dist_sum_f32(d, WCMI_DIST_GRADS, *buf, *buf_n);
  if (!rc) pack_grads(nets, n, *buf, 1);
  return rc;
}

int dist_sum_grads(trainer *t) {
  return dist_sum_net_grads(t->ctx, t->opt_nets, t->n_opt_nets, &t->dist_grads, &t->dist_grads_n);
}

float dist_batch_weight(const trainer *t, int n) {
  return t->ctx->dist ? (float)((double)n / (double)t->cfg.batch_size) : 1.0f;
}

int dist_mean_vals(trainer *t, double *vals, int n) {
  wcmi_dist *d = t->ctx->dist;
  if (!d || !t->local_means) return WCMI_OK;
  const double w = (double)n / (double)t->cfg.batch_size;
  for (int i = 0; i < t->ops->n_sums; i++) vals[i] *= w;
  return wcmi_dist_sum_f64(d, WCMI_DIST_OTHER, vals, (size_t)t->ops->n_sums);
}

int dist_interrupted(wcmi_ctx *ctx) {
  if (ctx->dist) ctx->interrupt = wcmi_dist_any(ctx->dist, ctx->interrupt);
  return ctx->interrupt != 0;
}

/* The rows of the batches [b0, b1) of n samples in batches of `batch`. */
static int64_t block_rows(int64_t n, int batch, int64_t b0, int64_t b1) {
  const int64_t lo = b0 * batch, hi = b1 * batch < n ? b1 * batch : n;
  return hi > lo ? hi - lo : 0;
}

int dist_forward_rows(wcmi_ctx *ctx, wcmi_net *const *nets, int n_nets, const float *x, int64_t n, int64_t D, int batch,
                      int64_t cols, const char *what, float *rows) {
  wcmi_dist *d = ctx->dist;
  const int K = wcmi_dist_size(d), me = wcmi_dist_rank(d);
  const int64_t nbatch = (n + batch - 1) / batch;
  /* Whole batches per rank, so every forward call is one process's call on the same samples. */
  int *counts = wcmi_alloc(ctx, (size_t)K, sizeof(int));
  if (!counts) return ctx->status;
  int64_t first = 0, mine = 0;
  for (int r = 0; r < K; r++) {
    int b0 = 0, b1 = 0;
    wcmi_dist_shard((int)nbatch, r, K, &b0, &b1);
    const int64_t rr = block_rows(n, batch, b0, b1);
    if (rr * cols > 0x7fffffff) {
      wcmi_free(counts);
      return wcmi_fail(ctx, WCMI_EINVAL, "%s: %lld values per rank are too many for one MPI transfer", what,
                       (long long)(rr * cols));
    }
    counts[r] = (int)rr;
    if (r == me) first = (int64_t)b0 * batch, mine = rr;
  }
  /* One process writes into rows directly; a rank computes its block apart and gathers. */
  float *block = d ? wcmi_alloc(ctx, (size_t)(mine > 0 ? mine : 1) * (size_t)cols, sizeof(float)) : rows;
  int rc = block ? WCMI_OK : ctx->status;
  for (int64_t off = 0; !rc && off < mine; off += batch) {
    const int nb = (int)(mine - off < batch ? mine - off : batch);
    const float *y = x + (first + off) * D;
    for (int k = 0; k < n_nets && y; k++) y = wcmi_net_forward(nets[k], y, nb, 0);
    if (!y) {
      rc = ctx->status ? ctx->status : wcmi_fail(ctx, WCMI_EINVAL, "%s: forward failed", what);
      break;
    }
    memcpy(block + off * cols, y, (size_t)nb * (size_t)cols * sizeof(float));
    if (ctx->interrupt) break; /* one process stops here; ranks agree below */
  }
  if (!rc && dist_interrupted(ctx)) rc = wcmi_fail(ctx, WCMI_EINTR, "interrupted while encoding %s", what);
  if (!rc && d) rc = wcmi_dist_allgather_f32(d, WCMI_DIST_OTHER, block, counts, cols, rows);
  if (d) wcmi_free(block);
  wcmi_free(counts);
  return rc;
}

int dist_sum_counts(wcmi_ctx *ctx, double *v, int n) {
  return wcmi_dist_sum_f64(ctx->dist, WCMI_DIST_OTHER, v, (size_t)n);
}

void dist_count_step(trainer *t, int begin) {
  wcmi_dist *d = t->ctx->dist;
  if (!d) return;
  for (int k = 0; k < WCMI_DIST_NCAT && k < 4; k++) {
    const uint64_t now = wcmi_dist_bytes_sent(d, k);
    if (begin) t->bytes_mark[k] = now;
    else t->step_bytes[k] += now - t->bytes_mark[k];
  }
}

void dist_timing_line(const trainer *t) {
  wcmi_dist *d = t->ctx->dist;
  const double steps = t->steps_run > 0 ? (double)t->steps_run : 1.0, mb = 1.0 / (1024.0 * 1024.0);
  fprintf(stderr,
          "[%s] dist: %d ranks, %lld steps; rank %d sent per step %.3f MiB: gradients %.3f, MI features %.3f, "
          "BatchNorm %.3f, other %.3f (evaluation not included)\n",
          t->ops->task, wcmi_dist_size(d), (long long)t->steps_run, wcmi_dist_rank(d),
          (double)(t->step_bytes[0] + t->step_bytes[1] + t->step_bytes[2] + t->step_bytes[3]) * mb / steps,
          (double)t->step_bytes[WCMI_DIST_GRADS] * mb / steps, (double)t->step_bytes[WCMI_DIST_FEATURES] * mb / steps,
          (double)t->step_bytes[WCMI_DIST_BN] * mb / steps, (double)t->step_bytes[WCMI_DIST_OTHER] * mb / steps);
}
