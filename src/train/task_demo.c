/* wcmi demo: the quick Fashion-MNIST table of `wcmi reproduce` (task_reproduce.c), nothing more. */
#include "wcmi/demo.h"

void wcmi_demo_defaults(wcmi_reproduce_cfg *c) {
  wcmi_reproduce_defaults(c);
  c->dataset = "fashion-mnist";
  c->profile = "quick";
  c->out_dir = "runs/demo";
}

int wcmi_task_demo(wcmi_ctx *ctx, const wcmi_reproduce_cfg *c, char **table, char **summary) {
  return wcmi_task_reproduce(ctx, c, table, summary);
}
