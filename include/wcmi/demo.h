/* The main job: the paper's Fashion-MNIST comparison on a small budget, as one call. */
#ifndef WCMI_DEMO_H
#define WCMI_DEMO_H

#include "wcmi/tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wcmi_demo_cfg {
  const char *out_dir;  /* where every run goes (default runs/demo) */
  const char *data_dir; /* NULL: Debian's dataset-fashion-mnist */
  long long train_subset, test_subset;
  int encoder_epochs, head_epochs, mi_epochs;
  int hsize;
  double head_lr; /* Adam lr of the classifier heads (frozen encoder: a larger step than the encoders' lr) */
  uint64_t seed;
  int progress;
  int max_batches, eval_batches; /* > 0: caps, for smoke tests */
} wcmi_demo_cfg;

void wcmi_demo_defaults(wcmi_demo_cfg *c);
/* Trains a normal-MI (DIM) and a worst-case-MI encoder, a standard linear and MLP head on each,
 * evaluates natural and PGD accuracy (eps 0.1, 10 steps of 0.02; then with random start and 5
 * restarts), estimates each encoder's normal / worst-case MI, RV and Fano bound, and writes
 * out_dir/report.html. *table receives
 * the printable table, *summary the JSON (also written to out_dir/summary.json). */
int wcmi_task_demo(wcmi_ctx *ctx, const wcmi_demo_cfg *c, char **table, char **summary);

#ifdef __cplusplus
}
#endif
#endif
