/* APGD-CE (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
 * diverse parameter-free attacks"): projected gradient ascent with momentum whose per-sample step
 * size starts at 2*eps and is halved at checkpoints of the iteration budget when the loss stops
 * rising, each halving restarting from the best point found so far. No step size to tune.
 *
 * Budget: a run of cfg.steps = T iterations evaluates T + 1 iterates x_0..x_T, the first T with a
 * gradient and the last without, exactly as wcmi_pgd_run does, so the two compare at equal cost. */
#include "attack/attack_internal.h"
#include "wcmi/dist.h"

#include <math.h>
#include <string.h>

#define APGD_ALPHA 0.75f /* weight of the new step against the previous displacement */
#define APGD_RHO 0.75    /* an interval "makes progress" if >= 75% of its steps raise the loss */

/* Checkpoints w_j = ceil(p_j * T): p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).
 * The intervals start at 22% of the budget and shrink by 3% down to 6%. */
typedef struct checkpoints {
  double p_prev, p_cur;
  int T;
  int w_prev, w; /* last checkpoint passed (0 at the start) and the next one */
} checkpoints;

static int checkpoint_iter(double p, int T) {
  /* The tolerance keeps p = 0.41 with T = 100 at 41 despite 0.41 not being exact in binary. */
  return (int)ceil(p * (double)T - 1e-9);
}

static void checkpoints_init(checkpoints *c, int T) {
  c->p_prev = 0.0;
  c->p_cur = 0.22;
  c->T = T;
  c->w_prev = 0;
  c->w = checkpoint_iter(c->p_cur, T);
  if (c->w < 1) c->w = 1;
}

/* Moves to the next checkpoint strictly after the current one (short budgets round several p_j
 * to the same iteration; those collapse into one). */
static void checkpoints_advance(checkpoints *c) {
  c->w_prev = c->w;
  while (checkpoint_iter(c->p_cur, c->T) <= c->w_prev) {
    double gap = c->p_cur - c->p_prev - 0.03;
    double p_next = c->p_cur + (gap > 0.06 ? gap : 0.06);
    c->p_prev = c->p_cur;
    c->p_cur = p_next;
  }
  c->w = checkpoint_iter(c->p_cur, c->T);
}

/* z = x_k + eta_i * d_i per sample, d = sign(g) for l-inf and g / ||g||_2 for l2.
 * eta: (N); g, xk, z: (N, D). */
static void step_along_gradient(wcmi_norm norm, const float *eta, const float *g, const float *xk, float *z, int N,
                                int64_t D) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float *gi = g + (int64_t)i * D, *xi = xk + (int64_t)i * D;
    float *zi = z + (int64_t)i * D;
    const float e = eta[i];
    if (norm == WCMI_NORM_LINF) {
      for (int64_t j = 0; j < D; j++) zi[j] = xi[j] + (gi[j] > 0.0f ? e : (gi[j] < 0.0f ? -e : 0.0f));
    } else {
      double ss = 0;
      for (int64_t j = 0; j < D; j++) ss += (double)gi[j] * gi[j];
      float s = (float)(e / (sqrt(ss) + 1e-12));
      for (int64_t j = 0; j < D; j++) zi[j] = xi[j] + s * gi[j];
    }
  }
}

/* z <- x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}): the projected gradient point z blended
 * with the last displacement. n = N * D. */
static void add_momentum(const float *xk, const float *xprev, float *z, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < n; j++) z[j] = xk[j] + APGD_ALPHA * (z[j] - xk[j]) + (1.0f - APGD_ALPHA) * (xk[j] - xprev[j]);
}

static int eval(wcmi_attack *a, const wcmi_objective *obj, const float *z, int N, float *grad) {
  memset(a->succ, 0, (size_t)N);
  int rc = obj->eval(obj->user, z, N, a->loss, a->succ, grad);
  if (rc) return rc;
  for (int i = 0; i < N; i++)
    if (!isfinite(a->loss[i])) return wcmi_fail(a->ctx, WCMI_ENUMERIC, "apgd: objective returned a non-finite loss");
  return WCMI_OK;
}

static void copy_row(float *dst, const float *src, int i, int64_t D) {
  memcpy(dst + (int64_t)i * D, src + (int64_t)i * D, (size_t)D * sizeof(float));
}

/* Bookkeeping after the iterate xk (with a->loss, a->succ and, if has_grad, a->grad) was
 * evaluated: the overall best (success first, then loss) goes to best; the highest-loss point of
 * this run and its gradient become the restart point; rises of the loss are counted. */
static void track_iterate(wcmi_attack *a, int N, const float *xk, int has_grad, float *best) {
  const int64_t D = a->D;
  attack_keep_best(a, 1, N, xk, a->loss, a->succ, best, a->best_loss, a->best_succ);
  for (int i = 0; i < N; i++) {
    if (a->loss[i] > a->last_loss[i]) a->improved[i]++;
    a->last_loss[i] = a->loss[i];
    if (a->loss[i] > a->run_best_loss[i]) {
      a->run_best_loss[i] = a->loss[i];
      copy_row(a->run_best, xk, i, D);
      if (has_grad) copy_row(a->grad_best, a->grad, i, D);
    }
  }
}

/* At a checkpoint closing an interval of `len` iterations, halves the step of each sample whose
 * loss rose in fewer than rho*len of them (oscillation), or whose step was not just halved and whose
 * best loss has not improved since the last checkpoint (stall); a halved sample restarts from its
 * best point with its gradient there and no momentum. */
static void checkpoint(wcmi_attack *a, int N, int len, float *xk, float *xprev) {
  const int64_t D = a->D;
  for (int i = 0; i < N; i++) {
    int oscillating = (double)a->improved[i] < APGD_RHO * (double)len;
    int stalled = !a->reduced[i] && a->run_best_loss[i] <= a->prev_best_loss[i];
    a->reduced[i] = (unsigned char)(oscillating || stalled);
    a->prev_best_loss[i] = a->run_best_loss[i];
    a->improved[i] = 0;
    if (a->reduced[i]) {
      a->step_size[i] *= 0.5f;
      copy_row(xk, a->run_best, i, D);
      copy_row(xprev, a->run_best, i, D);
      copy_row(a->grad, a->grad_best, i, D);
      a->last_loss[i] = a->run_best_loss[i];
    }
  }
}

/* One APGD run from the start point already in `xk` (one of the three iterate buffers). */
static int apgd_single_run(wcmi_attack *a, const wcmi_objective *obj, const float *x, int N, float *xk,
                           float *xprev, float *xnext, float *best) {
  const wcmi_pgd_cfg *c = &a->cfg;
  const int64_t D = a->D;
  const int T = c->steps;
  int rc;
  if ((rc = eval(a, obj, xk, N, T > 0 ? a->grad : NULL))) return rc;
  for (int i = 0; i < N; i++) {
    a->step_size[i] = 2.0f * c->eps;
    a->reduced[i] = 0;
    a->improved[i] = 0;
    a->last_loss[i] = a->loss[i];
    a->prev_best_loss[i] = a->loss[i];
    a->run_best_loss[i] = -INFINITY;
  }
  track_iterate(a, N, xk, T > 0, best);
  checkpoints cp;
  checkpoints_init(&cp, T);
  for (int k = 0; k < T; k++) {
    step_along_gradient(c->norm, a->step_size, a->grad, xk, xnext, N, D);
    wcmi_project(c->norm, c->eps, x, xnext, N, D);
    /* The first step is a plain projected gradient step: there is no displacement yet. */
    if (k > 0) {
      add_momentum(xk, xprev, xnext, (int64_t)N * D);
      wcmi_project(c->norm, c->eps, x, xnext, N, D);
    }
    float *spare = xprev;
    xprev = xk;
    xk = xnext;
    xnext = spare;
    const int has_grad = k + 1 < T;
    if ((rc = eval(a, obj, xk, N, has_grad ? a->grad : NULL))) return rc;
    track_iterate(a, N, xk, has_grad, best);
    if (k + 1 == cp.w && has_grad) {
      checkpoint(a, N, cp.w - cp.w_prev, xk, xprev);
      checkpoints_advance(&cp);
    }
  }
  return WCMI_OK;
}

int wcmi_apgd_run(wcmi_attack *a, const wcmi_objective *obj, const float *x, int N, wcmi_rng *rng, float *x_adv,
                  float *final_loss) {
  const wcmi_pgd_cfg *c = &a->cfg;
  if (!obj->per_sample)
    return wcmi_fail(a->ctx, WCMI_EINVAL,
                     "apgd: needs a per-sample objective (e.g. cross-entropy); attack a batch-level loss such as "
                     "the MI loss with PGD");
  if (N <= 0 || N > a->max_batch) return wcmi_fail(a->ctx, WCMI_EINVAL, "apgd: batch %d outside [1, %d]", N, a->max_batch);
  const int64_t D = a->D;
  for (int i = 0; i < N; i++) {
    a->best_loss[i] = -INFINITY;
    a->best_succ[i] = 0;
  }
  int rc;
  for (int r = 0; r <= c->restarts; r++) {
    if (c->random_start || r > 0) attack_random_start_batch(a, x, N, rng);
    else memcpy(a->cur, x, (size_t)N * (size_t)D * sizeof(float));
    if ((rc = apgd_single_run(a, obj, x, N, a->cur, a->prev, a->mom, x_adv))) return rc;
    /* Further restarts cannot change which samples are adversarial once all of them are. */
    int all_adversarial = 1;
    for (int i = 0; i < N && all_adversarial; i++) all_adversarial = a->best_succ[i];
    /* Data-parallel: the batch is the global one, so every rank stops only when all of it is. */
    if (a->ctx->dist) all_adversarial = !wcmi_dist_any(a->ctx->dist, !all_adversarial);
    if (all_adversarial) break;
  }
  if (final_loss) memcpy(final_loss, a->best_loss, (size_t)N * sizeof(float));
  return WCMI_OK;
}
