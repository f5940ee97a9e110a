/* wcmi train-model: Baseline-H, encoder + head trained end to end (standard or Madry adversarial). */
#include "cli/task_cli.h"

int wcmi_cmd_train_model(int argc, char **argv) {
  task_cli tc;
  int rc = task_cli_parse(&tc, "train-model", WCMI_GROUPS_TRAINING | WCMI_GROUP_HEAD | WCMI_GROUP_ENCODER,
                          "--head mlp|linear --training standard|robust --out DIR [options]",
                          "Train the supervised Baseline-H from scratch: the basic encoder followed by a head, end to end "
                          "with Adam on cross-entropy, on clean batches (standard) or on PGD examples found with BN in "
                          "eval mode (robust). After each epoch: natural and PGD adversarial accuracy on the test set; "
                          "best.safetensors keeps the best adversarial accuracy when robust, natural otherwise "
                          "(--select); --encoder pixels trains the head on the raw image instead of an encoder. Writes "
                          "config.json, metrics.jsonl, latest/best.safetensors and summary.json (also printed).",
                          NULL, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  char *summary = NULL;
  rc = wcmi_task_train_model(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "train-model", rc, summary);
}
