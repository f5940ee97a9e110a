/* TEMPORARY placeholder until APGD-CE (branch apgd, src/attack/apgd.c) lands on main: it lets the
 * evaluation code that calls wcmi_apgd_run link and fail with a clear message. Delete this file
 * when merging src/attack/apgd.c (the duplicate symbol makes the link fail loudly otherwise). */
#include "attack/attack_internal.h"

int wcmi_apgd_run(wcmi_attack *a, const wcmi_objective *obj, const float *x, int N, wcmi_rng *rng, float *x_adv,
                  float *final_loss) {
  (void)obj, (void)x, (void)N, (void)rng, (void)x_adv, (void)final_loss;
  return wcmi_fail(a->ctx, WCMI_EINVAL, "APGD-CE is not available in this build (src/attack/apgd.c not merged yet)");
}
