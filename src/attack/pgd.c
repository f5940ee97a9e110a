/* Projected gradient ascent (Madry et al.) on an objective, with random start, restarts and
 * use-best selection; l-inf uses signed steps, l2 normalized-gradient steps. */
#include "attack/attack_internal.h"

#include <math.h>
#include <string.h>

static void ascent_step(wcmi_norm norm, float step, const float *g, float *z, int N, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float *gi = g + (int64_t)i * D;
    float *zi = z + (int64_t)i * D;
    if (norm == WCMI_NORM_LINF) {
      for (int64_t j = 0; j < D; j++) zi[j] += gi[j] > 0.0f ? step : (gi[j] < 0.0f ? -step : 0.0f);
    } else {
      double ss = 0;
      for (int64_t j = 0; j < D; j++) ss += (double)gi[j] * gi[j];
      float s = (float)(step / (sqrt(ss) + 1e-12));
      for (int64_t j = 0; j < D; j++) zi[j] += s * gi[j];
    }
  }
}

static int eval(wcmi_attack *a, const wcmi_objective *obj, const float *z, int N, float *grad) {
  if (obj->per_sample) memset(a->succ, 0, (size_t)N);
  int rc = obj->eval(obj->user, z, N, a->loss, obj->per_sample ? a->succ : NULL, grad);
  if (rc) return rc;
  int n = obj->per_sample ? N : 1;
  for (int i = 0; i < n; i++)
    if (!isfinite(a->loss[i])) return wcmi_fail(a->ctx, WCMI_ENUMERIC, "attack: objective returned a non-finite loss");
  return WCMI_OK;
}

static void reset_best(float *loss, unsigned char *succ, int n) {
  for (int i = 0; i < n; i++) {
    loss[i] = -INFINITY;
    succ[i] = 0;
  }
}

int wcmi_pgd_run(wcmi_attack *a, const wcmi_objective *obj, const float *x, int N, wcmi_rng *rng, float *x_adv,
                 float *final_loss) {
  const wcmi_pgd_cfg *c = &a->cfg;
  if (N <= 0 || N > a->max_batch)
    return wcmi_fail(a->ctx, WCMI_EINVAL, "attack: batch %d outside [1, %d]", N, a->max_batch);
  const int64_t D = a->D;
  const size_t bytes = (size_t)N * (size_t)D * sizeof(float);
  const int nl = obj->per_sample ? N : 1;
  /* Selection is only needed when several candidates compete or the caller wants the loss. */
  const int select = c->use_best || c->restarts > 0 || final_loss != NULL;
  int rc;
  reset_best(a->best_loss, a->best_succ, nl);
  for (int r = 0; r <= c->restarts; r++) {
    if (c->random_start || r > 0) attack_random_start_batch(a, x, N, rng);
    else memcpy(a->cur, x, bytes);
    if (c->use_best) reset_best(a->run_best_loss, a->run_best_succ, nl);
    for (int t = 0; t < c->steps; t++) {
      if ((rc = eval(a, obj, a->cur, N, a->grad))) return rc;
      /* The loss just computed belongs to the current iterate: a use-best candidate. */
      if (c->use_best)
        attack_keep_best(a, obj->per_sample, N, a->cur, a->loss, a->succ, a->run_best, a->run_best_loss,
                         a->run_best_succ);
      ascent_step(c->norm, c->step, a->grad, a->cur, N, D);
      wcmi_project(c->norm, c->eps, x, a->cur, N, D);
    }
    if (!select) {
      memcpy(x_adv, a->cur, bytes);
      return WCMI_OK;
    }
    if ((rc = eval(a, obj, a->cur, N, NULL))) return rc;
    if (c->use_best) {
      attack_keep_best(a, obj->per_sample, N, a->cur, a->loss, a->succ, a->run_best, a->run_best_loss, a->run_best_succ);
      attack_keep_best(a, obj->per_sample, N, a->run_best, a->run_best_loss, a->run_best_succ, x_adv, a->best_loss,
                       a->best_succ);
    } else {
      attack_keep_best(a, obj->per_sample, N, a->cur, a->loss, a->succ, x_adv, a->best_loss, a->best_succ);
    }
  }
  if (final_loss) memcpy(final_loss, a->best_loss, (size_t)nl * sizeof(float));
  return WCMI_OK;
}
