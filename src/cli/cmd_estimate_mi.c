/* wcmi estimate-mi: normal or worst-case MI of a frozen representation, with a fresh critic. */
#include "cli/task_cli.h"

#include <string.h>

/* --repr and the re-fit options, shared with `wcmi vulnerability`. Returns 0 or 2 (usage). */
int estimate_cli_opts(const char *cmd, const char *repr, int patience, int max_epochs, int critics, wcmi_estimate_opts *o);

void estimate_cli_quick_budget(task_cli *tc);

/* The quick and fast profiles' estimation budget, where --hsize / --epochs do not say otherwise: a
 * 64-wide critic trained for 2 epochs. At the quick budget (156 critic steps) a 256-wide critic is
 * undertrained and its estimate moves by 0.7 nats with its seed, a 64-wide one by 0.04
 * (EXPERIMENTS.md section 3); fast's full split gives the same critic 6 times the steps. Encoders
 * keep the profile's 256. */
void estimate_cli_quick_budget(task_cli *tc) {
  if (tc->resume_cfg || (strcmp(tc->cfg.profile, "quick") && strcmp(tc->cfg.profile, "fast"))) return;
  if (!task_cli_given(tc, WCMI_CFG_HSIZE)) tc->cfg.hsize = WCMI_QUICK_ESTIMATE_HSIZE;
  if (!task_cli_given(tc, WCMI_CFG_EPOCHS)) tc->cfg.epochs = WCMI_QUICK_ESTIMATE_EPOCHS;
}

int estimate_cli_opts(const char *cmd, const char *repr, int patience, int max_epochs, int critics, wcmi_estimate_opts *o) {
  wcmi_estimate_opts_default(o);
  if (repr) {
    if (!strcmp(repr, "z")) o->repr = WCMI_REPR_Z;
    else if (!strcmp(repr, "logits")) o->repr = WCMI_REPR_LOGITS;
    else return fprintf(stderr, "wcmi %s: --repr must be logits or z\n", cmd), 2;
  }
  if (patience) o->refit_patience = patience;
  if (max_epochs) o->refit_max_epochs = max_epochs;
  if (critics < 0 || critics > 100) return fprintf(stderr, "wcmi %s: --critics must be in [1, 100]\n", cmd), 2;
  o->critics = critics;
  if (o->refit_patience < 1 || o->refit_max_epochs < 1)
    return fprintf(stderr, "wcmi %s: --refit-patience and --refit-max-epochs must be >= 1\n", cmd), 2;
  return 0;
}

int wcmi_cmd_estimate_mi(int argc, char **argv) {
  task_cli tc;
  const char *repr = NULL;
  int patience = 0, max_epochs = 0, critics = 0;
  wcmi_opt extra[] = {
      {"--repr", WCMI_OPT_STR, &repr, "R", "logits (default when the model has a classifier head) or z", 0},
      {"--refit-patience", WCMI_OPT_INT, &patience, "P", "worst case: re-fitted critic stops after P epochs without held-out gain (3)", 0},
      {"--critics", WCMI_OPT_INT, &critics, "K",
       "critics from independent seeds, averaged; JSON gets mean, std, per-critic values (paper: 1; quick: 3, each H = 64 for 2 epochs unless --hsize / --epochs)", 0},
      {"--refit-max-epochs", WCMI_OPT_INT, &max_epochs, "N", "worst case: at most N re-fit epochs (50)", 0},
      {0}};
  int rc = task_cli_parse(&tc, "estimate-mi", WCMI_GROUPS_TRAINING | WCMI_GROUP_MODEL | WCMI_GROUP_CASE,
                          "--model FILE --case normal|worst --out DIR [options]",
                          "Estimate the MI between inputs and a frozen representation (the encoder's z, or a Baseline-H "
                          "model's logits) with a fresh critic trained by Adam; worst case: the critic trains on the batches "
                          "the MI attack finds against it. Reports the paper's Algorithm 2 value (critic of the best training "
                          "epoch, mean of held-out batch estimates under the same attack) and, for the worst case, a "
                          "re-fitted estimate on the perturbed held-out inputs. See docs/estimate-mi.md.",
                          extra, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  wcmi_estimate_opts o;
  if ((rc = estimate_cli_opts("estimate-mi", repr, patience, max_epochs, critics, &o)))
    return task_cli_finish(&tc, "estimate-mi", WCMI_OK, NULL), rc;
  estimate_cli_quick_budget(&tc);
  if (!tc.resume_cfg && !tc.cfg.model) {
    fprintf(stderr, "wcmi estimate-mi: --model FILE is required\n");
    return task_cli_finish(&tc, "estimate-mi", WCMI_OK, NULL), 2;
  }
  char *summary = NULL;
  rc = wcmi_task_estimate_mi_ex(&tc.ctx, &tc.cfg, &o, &summary);
  return task_cli_finish(&tc, "estimate-mi", rc, summary);
}
