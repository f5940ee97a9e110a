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

/* Trainable parameters of the optimizer's nets, in net then parameter order. */
static size_t grad_floats(trainer *t) {
  size_t total = 0;
  for (int k = 0; k < t->n_opt_nets; k++)
    for (int i = 0; i < wcmi_net_num_params(t->opt_nets[k]); i++) {
      wcmi_param *p = wcmi_net_param(t->opt_nets[k], i);
      if (p->kind == WCMI_PARAM_TRAINABLE && p->grad) total += (size_t)wcmi_shape_numel(&p->shape);
    }
  return total;
}

/* dir 0: gradients into buf; 1: buf back into the gradients. */
static void pack_grads(trainer *t, float *buf, int dir) {
  size_t off = 0;
  for (int k = 0; k < t->n_opt_nets; k++)
    for (int i = 0; i < wcmi_net_num_params(t->opt_nets[k]); i++) {
      wcmi_param *p = wcmi_net_param(t->opt_nets[k], i);
      if (p->kind != WCMI_PARAM_TRAINABLE || !p->grad) continue;
      const size_t n = (size_t)wcmi_shape_numel(&p->shape);
      if (dir == 0) memcpy(buf + off, p->grad, n * sizeof(float));
      else memcpy(p->grad, buf + off, n * sizeof(float));
      off += n;
    }
}

int dist_sum_grads(trainer *t) {
  wcmi_dist *d = t->ctx->dist;
  if (!d) return WCMI_OK;
  if (!t->dist_grads) { /* once per run: the step loop allocates nothing */
    t->dist_grads_n = grad_floats(t);
    t->dist_grads = wcmi_alloc(t->ctx, t->dist_grads_n ? t->dist_grads_n : 1, sizeof(float));
    if (!t->dist_grads) return t->ctx->status;
  }
  pack_grads(t, t->dist_grads, 0);
  int rc = wcmi_dist_sum_f32(d, WCMI_DIST_GRADS, t->dist_grads, t->dist_grads_n);
  if (!rc) pack_grads(t, t->dist_grads, 1);
  return rc;
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
