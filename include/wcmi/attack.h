/* Adversarial attacks in [0,1] pixel space (PAPER.md section 4): PGD under l-inf and l2 with
 * random start, restarts and use-best, and APGD-CE. An attack maximizes an objective given as a
 * callback, so the same code attacks the MI loss (worst-case MI) and a classifier's cross-entropy. */
#ifndef WCMI_ATTACK_H
#define WCMI_ATTACK_H

#include "wcmi/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { WCMI_NORM_LINF = 0, WCMI_NORM_L2 = 1 } wcmi_norm;

typedef struct wcmi_pgd_cfg {
  wcmi_norm norm;
  float eps;        /* radius of the ball around each sample */
  float step;       /* step size alpha */
  int steps;        /* iterations per run */
  int random_start; /* start uniformly inside the ball (the first run too) */
  int restarts;     /* extra runs from random starts; the worst per sample (or batch) is kept */
  int use_best;     /* keep the iterate with the highest loss instead of the last one */
} wcmi_pgd_cfg;

/* What an attack maximizes. eval computes the loss at x (N samples) and, when grad != NULL, the
 * gradient of the summed (or batch) loss with respect to x. per_sample = 1: loss[0..N) per
 * sample, and success[i] (may be left NULL by the attack) set to 1 when sample i is already
 * adversarial (misclassified); selection across iterates/restarts is then per sample, preferring
 * success, then higher loss. per_sample = 0: one batch-level loss in loss[0] (e.g. the MI loss),
 * selection is per batch. Returns WCMI_OK or an error. */
typedef struct wcmi_objective {
  int per_sample;
  int (*eval)(void *user, const float *x, int N, float *loss, unsigned char *success, float *grad);
  void *user;
} wcmi_objective;

typedef struct wcmi_attack wcmi_attack;

/* Buffers for batches of up to max_batch samples of sample_numel values, allocated once. */
wcmi_attack *wcmi_attack_new(wcmi_ctx *ctx, const wcmi_pgd_cfg *cfg, int max_batch, int64_t sample_numel);
void wcmi_attack_free(wcmi_attack *a);
int wcmi_attack_set_cfg(wcmi_attack *a, const wcmi_pgd_cfg *cfg);
int wcmi_pgd_cfg_check(wcmi_ctx *ctx, const wcmi_pgd_cfg *cfg);

/* PGD from x (N, sample_numel) into x_adv. Every iterate stays in the eps-ball of x and in [0,1].
 * rng drives random starts. final_loss (may be NULL; N values for per-sample objectives, 1 for
 * batch objectives) receives the loss at the returned x_adv. */
int wcmi_pgd_run(wcmi_attack *a, const wcmi_objective *obj, const float *x, int N, wcmi_rng *rng, float *x_adv,
                 float *final_loss);

/* APGD-CE (Croce & Hein 2020): momentum 0.75, step size 2*eps at start, halved at checkpoints when
 * progress stalls, restart from the best point. Per-sample objectives only. Uses cfg.eps, cfg.norm,
 * cfg.steps (iteration budget) and cfg.restarts. */
int wcmi_apgd_run(wcmi_attack *a, const wcmi_objective *obj, const float *x, int N, wcmi_rng *rng, float *x_adv,
                  float *final_loss);

/* Projects z onto the eps-ball of x (per sample) and onto [0,1]. */
void wcmi_project(wcmi_norm norm, float eps, const float *x, float *z, int N, int64_t sample_numel);

/* Linear epsilon fade-in: eps * min(1, epoch / fade_epochs) for 0-based epoch, the reference's
 * schedule (epoch 0 is clean); fade_epochs <= 0 disables. */
float wcmi_eps_schedule(float eps, int epoch, int fade_epochs);

#ifdef __cplusplus
}
#endif
#endif
