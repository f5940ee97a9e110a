/* wcmi encode: representations of a dataset split as a NumPy .npy file, plus the labels. */
#include "cli/task_cli.h"

#include <stdlib.h>
#include <string.h>

/* z.npy -> z.labels.npy; any other name gets ".labels.npy" appended. */
static char *labels_path_for(const char *out) {
  size_t n = strlen(out);
  const char *suffix = ".npy";
  size_t base = n >= 4 && !strcmp(out + n - 4, suffix) ? n - 4 : n;
  char *p = malloc(base + sizeof ".labels.npy");
  if (p) {
    memcpy(p, out, base);
    memcpy(p + base, ".labels.npy", sizeof ".labels.npy");
  }
  return p;
}

int wcmi_cmd_encode(int argc, char **argv) {
  task_cli tc;
  const char *out = NULL, *split = "test", *repr = "z";
  wcmi_opt extra[] = {
      {"-o", WCMI_OPT_STR, &out, "OUT.npy", "output: float32 array (N, D); labels go to OUT.labels.npy (int32, N)", 0},
      {"--output", WCMI_OPT_STR, &out, "OUT.npy", "same as -o", 0},
      {"--split", WCMI_OPT_STR, &split, "S", "test (default) or train (--train-subset / --test-subset apply)", 0},
      {"--repr", WCMI_OPT_STR, &repr, "R", "z (default: the encoder output, D = 64), logits (needs a head, D = 10) or auto (logits if the model has a head)", 0},
      {0}};
  int rc = task_cli_parse(&tc, "encode",
                      WCMI_GROUP_DATA | WCMI_GROUP_TRAIN_SPLIT | WCMI_GROUP_PROFILE | WCMI_GROUP_RUN | WCMI_GROUP_MODEL,
                      "--model FILE --data NAME -o z.npy [--split train|test] [--repr z|logits]",
                      "Write the representations of a dataset split under the model (eval mode: running BN statistics, "
                      "no dropout), one row per sample in the split's order, as a float32 2-D NumPy array (N, D) in "
                      "OUT.npy, and the labels as an int32 1-D array (N) in OUT.labels.npy (z.npy -> z.labels.npy; a "
                      "name without .npy gets .labels.npy appended). --repr z is the encoder output (D = 64); logits "
                      "is the classifier's output (D = 10). --data defaults to the model's dataset. Prints a JSON "
                      "summary on stdout.",
                      extra, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  wcmi_split sp = WCMI_SPLIT_TEST;
  wcmi_repr_kind rp = WCMI_REPR_Z;
  const char *usage = NULL;
  if (!strcmp(split, "train")) sp = WCMI_SPLIT_TRAIN;
  else if (strcmp(split, "test")) usage = "--split must be train or test";
  if (!strcmp(repr, "logits")) rp = WCMI_REPR_LOGITS;
  else if (!strcmp(repr, "auto")) rp = WCMI_REPR_AUTO;
  else if (strcmp(repr, "z")) usage = "--repr must be z, logits or auto";
  if (!tc.cfg.model) usage = "--model FILE is required";
  if (!out) usage = "-o OUT.npy is required";
  if (usage) {
    fprintf(stderr, "wcmi encode: %s\n", usage);
    task_cli_finish(&tc, "encode", WCMI_OK, NULL);
    return 2;
  }
  char *labels = labels_path_for(out), *summary = NULL;
  if (!labels) rc = wcmi_fail(&tc.ctx, WCMI_ENOMEM, "out of memory");
  else rc = wcmi_task_encode(&tc.ctx, &tc.cfg, sp, rp, out, labels, &summary);
  free(labels);
  return task_cli_finish(&tc, "encode", rc, summary);
}
