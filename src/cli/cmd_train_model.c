/* wcmi train-model: Baseline-H, encoder + head trained end to end (standard or Madry adversarial). */
#include "cli/task_cli.h"

#include <string.h>

int wcmi_cmd_train_model(int argc, char **argv) {
  task_cli tc;
  const char *head = "mlp", *training = "standard", *encoder = "basic", *select = "auto";
  wcmi_opt extra[] = {
      {"--head", WCMI_OPT_STR, &head, "H", "mlp (default) or linear", 0},
      {"--training", WCMI_OPT_STR, &training, "T", "standard (default) or robust (Madry adversarial training with PGD)", 0},
      {"--encoder", WCMI_OPT_STR, &encoder, "E",
       "basic (default: the paper's encoder) or pixels (no encoder: the head on the normalized, flattened image)", 0},
      {"--select", WCMI_OPT_STR, &select, "S",
       "what best.safetensors keeps: auto (default: adversarial accuracy when robust, natural otherwise), nat or adv", 0},
      {0}};
  int rc = task_cli_parse(&tc, "train-model", "--head mlp|linear --training standard|robust --out DIR [options]",
                          "Train the supervised Baseline-H from scratch: the basic encoder followed by a head, end to end "
                          "with Adam on cross-entropy, on clean batches (standard) or on PGD examples found with BN in "
                          "eval mode (robust). After each epoch: natural and PGD adversarial accuracy on the test set; "
                          "best.safetensors keeps the best adversarial accuracy when robust, natural otherwise "
                          "(--select); --encoder pixels trains the head on the raw image instead of an encoder. Writes "
                          "config.json, metrics.jsonl, latest/best.safetensors and summary.json (also printed).",
                          extra, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  if (strcmp(training, "standard") && strcmp(training, "robust")) {
    fprintf(stderr, "wcmi train-model: --training must be standard or robust\n");
    return 2;
  }
  if (!tc.resume_cfg) {
    if (wcmi_head_parse(&tc.ctx, head, &tc.cfg.head)) {
      fprintf(stderr, "wcmi train-model: %s\n", wcmi_errmsg(&tc.ctx));
      return 2;
    }
    tc.cfg.robust = !strcmp(training, "robust");
    if (wcmi_encoder_parse(&tc.ctx, encoder, &tc.cfg.encoder) || task_cli_select(&tc.ctx, select, &tc.cfg.select)) {
      fprintf(stderr, "wcmi train-model: %s\n", wcmi_errmsg(&tc.ctx));
      return 2;
    }
  }
  char *summary = NULL;
  rc = wcmi_task_train_model(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "train-model", rc, summary);
}
