/* wcmi train-encoder: DIM (normal MI) or worst-case MI representation learning. */
#include "cli/task_cli.h"

#include <string.h>

int wcmi_cmd_train_encoder(int argc, char **argv) {
  task_cli tc;
  const char *objective = "normal";
  double probe_every = 0;
  long long probe_train = 5000, probe_test = 1000;
  int free_replays = 0;
  wcmi_opt extra[] = {
      {"--objective", WCMI_OPT_STR, &objective, "O", "normal (DIM: maximize MI) or worst (maximize worst-case MI)", 0},
      {"--probe-every", WCMI_OPT_FLOAT, &probe_every, "SEC",
       "learning curve: every SEC seconds of training, fit a linear probe on the cached representations and record "
       "its natural and PGD accuracy in metrics.jsonl (default 0: off)", 0},
      {"--probe-train", WCMI_OPT_I64, &probe_train, "N", "probe: class-balanced training images (default 5000)", 0},
      {"--probe-test", WCMI_OPT_I64, &probe_test, "N", "probe: class-balanced test images (default 1000)", 0},
      {"--free-replays", WCMI_OPT_INT, &free_replays, "M",
       "worst: \"free\" adversarial training instead of the PGD attack: each batch replayed M times, one signed step "
       "of --attack-lr per replay, the perturbation carried across batches (divide --epochs by M; default 0: PGD)", 0},
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
  if (!(probe_every >= 0 && probe_every <= 1e7) || probe_train < 1 || probe_test < 1 || probe_train > 100000000 ||
      probe_test > 100000000) {
    fprintf(stderr, "wcmi train-encoder: need --probe-every in [0, 1e7] seconds and --probe-train/--probe-test >= 1\n");
    return task_cli_finish(&tc, "train-encoder", WCMI_OK, NULL), 2;
  }
  if (free_replays < 0 || free_replays > 64) {
    fprintf(stderr, "wcmi train-encoder: --free-replays must be in [0, 64]\n");
    return task_cli_finish(&tc, "train-encoder", WCMI_OK, NULL), 2;
  }
  if (!tc.resume_cfg) {
    tc.cfg.worst = !strcmp(objective, "worst");
    tc.cfg.free_replays = free_replays;
    tc.cfg.probe_train = probe_train;
    tc.cfg.probe_test = probe_test;
  }
  /* Probes read the model and change no result, so a resumed run may turn them on or off. */
  if (!tc.resume_cfg || wcmi_cli_given(tc.opts, "--probe-every")) tc.cfg.probe_every = probe_every;
  if (tc.resume_cfg && tc.cfg.probe_every > 0 && tc.cfg.probe_train <= 0) {
    tc.cfg.probe_train = probe_train;
    tc.cfg.probe_test = probe_test;
  }
  char *summary = NULL;
  rc = wcmi_task_train_encoder(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "train-encoder", rc, summary);
}
