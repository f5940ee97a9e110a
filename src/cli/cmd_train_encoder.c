/* wcmi train-encoder: DIM (normal MI) or worst-case MI representation learning. */
#include "cli/task_cli.h"

int wcmi_cmd_train_encoder(int argc, char **argv) {
  task_cli tc;
  int rc = task_cli_parse(&tc, "train-encoder", WCMI_GROUPS_TRAINING | WCMI_GROUP_OBJECTIVE | WCMI_GROUP_PROBE,
                          "--objective normal|worst --out DIR [options]",
                          "Learn a representation without labels by maximizing the MI estimate of encoder + local/global "
                          "critics (normal), or the MI estimate under the worst-case MI attack (worst, the paper's "
                          "method). Writes config.json, metrics.jsonl, latest/best.safetensors and summary.json.",
                          NULL, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  wcmi_task_cfg *c = &tc.cfg;
  /* Runs from before probes existed hold no probe sizes: turning probes on uses the defaults. */
  if (tc.resume_cfg && c->probe_every > 0 && c->probe_train <= 0) {
    c->probe_train = (long long)wcmi_cfg_field_at(WCMI_CFG_PROBE_TRAIN)->cli_default;
    c->probe_test = (long long)wcmi_cfg_field_at(WCMI_CFG_PROBE_TEST)->cli_default;
  }
  if ((!tc.resume_cfg || c->probe_every > 0) && (c->probe_train < 1 || c->probe_test < 1)) {
    fprintf(stderr, "wcmi train-encoder: need --probe-every in [0, 1e7] seconds and --probe-train/--probe-test >= 1\n");
    return task_cli_finish(&tc, "train-encoder", WCMI_OK, NULL), 2;
  }
  char *summary = NULL;
  rc = wcmi_task_train_encoder(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "train-encoder", rc, summary);
}
