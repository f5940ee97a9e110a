/* wcmi train-classifier: a linear or MLP head on a frozen encoder, standard or robust training. */
#include "cli/task_cli.h"

#include <string.h>

int wcmi_cmd_train_classifier(int argc, char **argv) {
  task_cli tc;
  int rc = task_cli_parse(&tc, "train-classifier",
                          WCMI_GROUPS_TRAINING | WCMI_GROUP_MODEL | WCMI_GROUP_HEAD | WCMI_GROUP_HEAD_FIT,
                          "--model ENCODER_FILE --head linear|mlp --training standard|robust --out DIR [options]",
                          "Train a classifier head on the frozen encoder of ENCODER_FILE (eval mode: running BN statistics, "
                          "no updates) with Adam on cross-entropy, on clean batches (standard) or on PGD examples against "
                          "head(encoder(x)) with BN in eval mode during the attack (robust; --eps-fade grows eps). A standard "
                          "head is fitted on cached representations (each image encoded once; the features whitened "
                          "and the whitening folded into the head's first layer): the same batches, in seconds. "
                          "After each epoch: natural accuracy (and PGD adversarial accuracy for online fits) on the test "
                          "set (--eval-batches caps it); best.safetensors keeps the best adversarial accuracy when robust, "
                          "natural otherwise (--select); the final PGD evaluation runs through the encoder. --data "
                          "defaults to the dataset the model was trained on. Writes config.json, metrics.jsonl, "
                          "latest/best.safetensors and summary.json (also printed).",
                          NULL, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  wcmi_task_cfg *c = &tc.cfg;
  if (!tc.resume_cfg) {
    if (!c->model) {
      fprintf(stderr, "wcmi train-classifier: --model ENCODER_FILE is required\n");
      return task_cli_finish(&tc, "train-classifier", WCMI_OK, NULL), 2;
    }
    if (c->head_fit == WCMI_HEAD_FIT_CACHED && c->robust) {
      fprintf(stderr, "wcmi train-classifier: --head-fit cached is for standard heads (a robust head attacks through the "
                      "encoder every batch)\n");
      return task_cli_finish(&tc, "train-classifier", WCMI_OK, NULL), 2;
    }
  }
  char *summary = NULL;
  rc = wcmi_task_train_classifier(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "train-classifier", rc, summary);
}
