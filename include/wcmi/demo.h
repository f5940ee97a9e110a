/* The main job: the paper's Fashion-MNIST table on the quick profile, as one call. A thin alias of
 * wcmi_task_reproduce (wcmi/reproduce.h) with the demo's defaults; kept for library users of the
 * earlier demo API. */
#ifndef WCMI_DEMO_H
#define WCMI_DEMO_H

#include "wcmi/reproduce.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wcmi_demo_cfg {
  const char *out_dir;  /* where every run goes (default runs/demo) */
  const char *data_dir; /* NULL: Debian's dataset-fashion-mnist */
  long long train_subset, test_subset; /* < 0: the quick profile's */
  int encoder_epochs, head_epochs, mi_epochs; /* < 0: the quick profile's */
  int hsize;
  double head_lr;
  uint64_t seed;
  int progress;
  int max_batches, eval_batches; /* > 0: caps, for smoke tests */
} wcmi_demo_cfg;

void wcmi_demo_defaults(wcmi_demo_cfg *c);
/* wcmi_task_reproduce for fashion-mnist with the quick profile and these budgets: *table receives
 * the printable table, *summary the JSON (also out_dir/reproduce.json). */
int wcmi_task_demo(wcmi_ctx *ctx, const wcmi_demo_cfg *c, char **table, char **summary);

#ifdef __cplusplus
}
#endif
#endif
