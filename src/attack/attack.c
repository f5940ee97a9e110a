/* Attack state, projection and the random start shared by PGD and APGD. */
#include "attack/attack_internal.h"
#include "wcmi/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int wcmi_pgd_cfg_check(wcmi_ctx *ctx, const wcmi_pgd_cfg *c) {
  if (c->norm != WCMI_NORM_LINF && c->norm != WCMI_NORM_L2) return wcmi_fail(ctx, WCMI_EINVAL, "attack: unknown norm");
  if (!(c->eps >= 0.0f) || !isfinite(c->eps)) return wcmi_fail(ctx, WCMI_EINVAL, "attack: eps %g must be >= 0", (double)c->eps);
  if (!(c->step >= 0.0f) || !isfinite(c->step))
    return wcmi_fail(ctx, WCMI_EINVAL, "attack: step size %g must be >= 0", (double)c->step);
  if (c->steps < 0 || c->steps > 100000) return wcmi_fail(ctx, WCMI_EINVAL, "attack: steps %d outside [0, 100000]", c->steps);
  if (c->restarts < 0 || c->restarts > 10000)
    return wcmi_fail(ctx, WCMI_EINVAL, "attack: restarts %d outside [0, 10000]", c->restarts);
  return WCMI_OK;
}

wcmi_attack *wcmi_attack_new(wcmi_ctx *ctx, const wcmi_pgd_cfg *cfg, int max_batch, int64_t sample_numel) {
  if (wcmi_pgd_cfg_check(ctx, cfg)) return NULL;
  if (max_batch <= 0 || sample_numel <= 0) {
    wcmi_fail(ctx, WCMI_EINVAL, "attack: batch %d and sample size %lld must be positive", max_batch, (long long)sample_numel);
    return NULL;
  }
  wcmi_attack *a = wcmi_calloc(ctx, 1, sizeof *a);
  if (!a) {
    wcmi_fail(ctx, WCMI_ENOMEM, "attack: out of memory");
    return NULL;
  }
  a->ctx = ctx;
  a->cfg = *cfg;
  a->max_batch = max_batch;
  a->D = sample_numel;
  size_t nd = (size_t)max_batch * (size_t)sample_numel, n = (size_t)max_batch;
  float **big[] = {&a->cur, &a->grad, &a->run_best, &a->prev, &a->mom, &a->grad_best};
  for (size_t i = 0; i < sizeof big / sizeof *big; i++)
    if (!(*big[i] = wcmi_alloc(ctx, nd, sizeof(float)))) goto oom;
  float **small[] = {&a->loss, &a->run_best_loss, &a->best_loss, &a->step_size, &a->prev_best_loss, &a->last_loss};
  for (size_t i = 0; i < sizeof small / sizeof *small; i++)
    if (!(*small[i] = wcmi_alloc(ctx, n, sizeof(float)))) goto oom;
  unsigned char **flags[] = {&a->succ, &a->run_best_succ, &a->best_succ, &a->reduced};
  for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
    if (!(*flags[i] = wcmi_calloc(ctx, n, 1))) goto oom;
  if (!(a->improved = wcmi_calloc(ctx, n, sizeof(int)))) goto oom;
  return a;
oom:
  wcmi_attack_free(a);
  return NULL;
}

void wcmi_attack_free(wcmi_attack *a) {
  if (!a) return;
  void *bufs[] = {a->cur, a->grad, a->run_best, a->prev, a->mom, a->loss, a->run_best_loss, a->best_loss,
                  a->step_size, a->prev_best_loss, a->succ, a->run_best_succ, a->best_succ, a->reduced, a->improved,
                  a->grad_best, a->last_loss};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) wcmi_free(bufs[i]);
  wcmi_free(a);
}

int wcmi_attack_set_cfg(wcmi_attack *a, const wcmi_pgd_cfg *cfg) {
  int rc = wcmi_pgd_cfg_check(a->ctx, cfg);
  if (!rc) a->cfg = *cfg;
  return rc;
}

float wcmi_eps_schedule(float eps, int epoch, int fade_epochs) {
  if (fade_epochs <= 0) return eps;
  /* epoch / E as in robustness' calc_fadein_eps: the first epoch (0) trains on clean inputs. */
  float f = (float)epoch / (float)fade_epochs;
  return eps * (f < 1.0f ? f : 1.0f);
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

void wcmi_project(wcmi_norm norm, float eps, const float *x, float *z, int N, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float *xi = x + (int64_t)i * D;
    float *zi = z + (int64_t)i * D;
    if (norm == WCMI_NORM_LINF) {
      for (int64_t j = 0; j < D; j++) zi[j] = clampf(clampf(zi[j], xi[j] - eps, xi[j] + eps), 0.0f, 1.0f);
    } else {
      double ss = 0;
      for (int64_t j = 0; j < D; j++) ss += (double)(zi[j] - xi[j]) * (zi[j] - xi[j]);
      double nrm = sqrt(ss);
      /* Shrink slightly below eps so rounding never leaves the ball; then clip to the box, which
       * only moves coordinates towards x (x is inside [0,1]) and so stays in the ball. */
      float scale = nrm > eps ? (float)(eps / nrm) * (1.0f - 1e-6f) : 1.0f;
      for (int64_t j = 0; j < D; j++) zi[j] = clampf(xi[j] + (zi[j] - xi[j]) * scale, 0.0f, 1.0f);
    }
  }
}

void attack_random_start(wcmi_norm norm, float eps, const float *x, float *z, int N, int64_t D, wcmi_rng *rng) {
  /* Sequential draws: the RNG stream, not the thread count, decides the start. */
  for (int i = 0; i < N; i++) {
    const float *xi = x + (int64_t)i * D;
    float *zi = z + (int64_t)i * D;
    if (norm == WCMI_NORM_LINF) {
      for (int64_t j = 0; j < D; j++) zi[j] = xi[j] + wcmi_rng_uniform_range(rng, -eps, eps);
    } else {
      /* Uniform in the l2 ball: Gaussian direction, radius eps * u^(1/D). */
      double ss = 0;
      for (int64_t j = 0; j < D; j++) {
        zi[j] = wcmi_rng_normal(rng);
        ss += (double)zi[j] * zi[j];
      }
      double r = eps * pow(wcmi_rng_uniform(rng), 1.0 / (double)D) / (sqrt(ss) + 1e-12);
      for (int64_t j = 0; j < D; j++) zi[j] = xi[j] + (float)(zi[j] * r);
    }
  }
  wcmi_project(norm, eps, x, z, N, D);
}

void attack_random_start_batch(wcmi_attack *a, const float *x, int N, wcmi_rng *rng) {
  const wcmi_pgd_cfg *c = &a->cfg;
  wcmi_dist *dist = a->ctx->dist;
  if (!dist) {
    attack_random_start(c->norm, c->eps, x, a->cur, N, a->D, rng);
    return;
  }
  int64_t before, after;
  wcmi_dist_slice(dist, N, &before, &after);
  /* a->grad is free until the first gradient: it takes the dropped samples, one at a time. */
  for (int64_t i = 0; i < before; i++) attack_random_start(c->norm, c->eps, x, a->grad, 1, a->D, rng);
  attack_random_start(c->norm, c->eps, x, a->cur, N, a->D, rng);
  for (int64_t i = 0; i < after; i++) attack_random_start(c->norm, c->eps, x, a->grad, 1, a->D, rng);
}

int attack_better(int per_sample, float loss_new, unsigned char succ_new, float loss_old, unsigned char succ_old) {
  if (per_sample && succ_new != succ_old) return succ_new > succ_old;
  return loss_new > loss_old;
}

/* Copies the candidate (loss, success, iterate) into the best slots where it is better. For a
 * batch objective the whole batch is one unit. */
void attack_keep_best(const wcmi_attack *a, int per_sample, int N, const float *cand, const float *cand_loss,
                      const unsigned char *cand_succ, float *best, float *best_loss, unsigned char *best_succ) {
  int64_t D = a->D;
  if (!per_sample) {
    if (cand_loss[0] > best_loss[0]) {
      best_loss[0] = cand_loss[0];
      memcpy(best, cand, (size_t)N * (size_t)D * sizeof(float));
    }
    return;
  }
  for (int i = 0; i < N; i++)
    if (attack_better(1, cand_loss[i], cand_succ[i], best_loss[i], best_succ[i])) {
      best_loss[i] = cand_loss[i];
      best_succ[i] = cand_succ[i];
      memcpy(best + (int64_t)i * D, cand + (int64_t)i * D, (size_t)D * sizeof(float));
    }
}
