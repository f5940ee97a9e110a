/* The MI objective's training step (estimator/mi_step.h): attack (worst case), one step of the MI
 * loss over the chosen parameters, the loss checked, the optimizer stepped by the trainer. */
#include "estimator/mi_step.h"

int mi_train_step(trainer *t, wcmi_dim *d, const float *x, int n, int encoder_train, unsigned params, double *vals) {
  const float *xt = x;
  int rc;
  if (t->cfg.worst) {
    const wcmi_objective obj = wcmi_dim_objective(d);
    if ((rc = trainer_attack_batch(t, &obj, x, n))) return rc;
    xt = t->xadv;
  }
  float loss;
  wcmi_optim_zero_grad(t->opt);
  rc = wcmi_dim_step(d, xt, n, encoder_train, 1, params, &loss, NULL);
  if (!rc) rc = trainer_check_loss(t, "MI loss", loss);
  if (!rc) rc = trainer_optim_step(t);
  if (rc) return rc;
  vals[0] = loss;
  vals[1] = wcmi_mi_estimate(d->mi, d->last_N, d->L, loss); /* last_N: the global batch */
  return WCMI_OK;
}
