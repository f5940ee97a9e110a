/* wcmi train-encoder: DIM (normal MI) or worst-case MI representation learning. */
#include "cli/task_cli.h"

#include <string.h>

int wcmi_cmd_train_encoder(int argc, char **argv) {
  task_cli tc;
  const char *objective = "normal";
  wcmi_opt extra[] = {
      {"--objective", WCMI_OPT_STR, &objective, "O", "normal (DIM: maximize MI) or worst (maximize worst-case MI)", 0},
      {0}};
  int rc = task_cli_parse(&tc, "train-encoder", "--objective normal|worst --out DIR [options]",
                          "Learn a representation without labels by maximizing the MI estimate of encoder + local/global "
                          "critics (normal), or the MI estimate under the worst-case MI attack (worst, the paper's "
                          "method). Writes config.json, metrics.jsonl, latest/best.safetensors and summary.json.",
                          extra, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  if (strcmp(objective, "normal") && strcmp(objective, "worst")) {
    fprintf(stderr, "wcmi train-encoder: --objective must be normal or worst\n");
    return 2;
  }
  if (!tc.resume_cfg) tc.cfg.worst = !strcmp(objective, "worst");
  char *summary = NULL;
  rc = wcmi_task_train_encoder(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "train-encoder", rc, summary);
}
