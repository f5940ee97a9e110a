/* wcmi train-classifier: a linear or MLP head on a frozen encoder, standard or robust training. */
#include "cli/model_data.h"
#include "cli/task_cli.h"

#include <string.h>

int wcmi_cmd_train_classifier(int argc, char **argv) {
  task_cli tc;
  const char *head = "mlp", *training = "standard", *model = NULL, *head_fit = NULL, *select = "auto";
  wcmi_opt extra[] = {
      {"--model", WCMI_OPT_STR, &model, "FILE", "model file whose encoder is used, frozen (any wcmi model)", 0},
      {"--head", WCMI_OPT_STR, &head, "H", "linear or mlp (default)", 0},
      {"--training", WCMI_OPT_STR, &training, "T", "standard (default: clean cross-entropy) or robust (on PGD examples)", 0},
      {"--head-fit", WCMI_OPT_STR, &head_fit, "F",
       "standard heads: auto (default: cached unless the data is augmented), cached (encode once, fit on whitened "
       "features: seconds) or online (encoder in the loop)", 0},
      {"--select", WCMI_OPT_STR, &select, "S",
       "what best.safetensors keeps: auto (default: adversarial accuracy when robust, natural otherwise), nat or adv "
       "(a standard head early-stopped on adversarial accuracy)",
       0},
      {0}};
  model_data_argv md;
  int rc = model_data_argv_init(&md, "train-classifier", argc, argv);
  if (rc) return rc;
  rc = task_cli_parse(&tc, "train-classifier", "--model ENCODER_FILE --head linear|mlp --training standard|robust --out DIR "
                                               "[options]",
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
                      extra, md.argc, md.argv);
  if (rc) return rc < 0 ? 0 : rc;
  if (strcmp(training, "standard") && strcmp(training, "robust")) {
    fprintf(stderr, "wcmi train-classifier: --training must be standard or robust\n");
    return 2;
  }
  if (!tc.resume_cfg) {
    if (!model) {
      fprintf(stderr, "wcmi train-classifier: --model ENCODER_FILE is required\n");
      return 2;
    }
    if (wcmi_head_parse(&tc.ctx, head, &tc.cfg.head) || task_cli_select(&tc.ctx, select, &tc.cfg.select)) {
      fprintf(stderr, "wcmi train-classifier: %s\n", wcmi_errmsg(&tc.ctx));
      return 2;
    }
    tc.cfg.model = model;
    tc.cfg.robust = !strcmp(training, "robust");
    if (head_fit && wcmi_head_fit_parse(&tc.ctx, head_fit, &tc.cfg.head_fit)) {
      fprintf(stderr, "wcmi train-classifier: --%s\n", wcmi_errmsg(&tc.ctx));
      return 2;
    }
    if (tc.cfg.head_fit == WCMI_HEAD_FIT_CACHED && tc.cfg.robust) {
      fprintf(stderr, "wcmi train-classifier: --head-fit cached is for standard heads (a robust head attacks through the "
                      "encoder every batch)\n");
      return 2;
    }
    /* The quick profile's 4 epochs are an encoder budget; a head fitted on cached features costs
     * seconds per 100 epochs and needs them to converge (docs/profiles.md). */
    if (!strcmp(tc.profile, "quick") && !wcmi_cli_given(tc.opts, "--epochs") && !tc.cfg.robust &&
        tc.cfg.head_fit != WCMI_HEAD_FIT_ONLINE && strcmp(tc.cfg.data, "cifar10"))
      tc.cfg.epochs = 100;
  }
  char *summary = NULL;
  rc = wcmi_task_train_classifier(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "train-classifier", rc, summary);
}
