/* wcmi demo: the quick Fashion-MNIST table of `wcmi reproduce` (task_reproduce.c), nothing more. */
#include "wcmi/demo.h"

#include <string.h>

void wcmi_demo_defaults(wcmi_demo_cfg *c) {
  memset(c, 0, sizeof *c);
  c->out_dir = "runs/demo";
  c->train_subset = c->test_subset = -1;
  c->encoder_epochs = c->head_epochs = c->mi_epochs = -1;
  c->hsize = -1;
  c->head_lr = -1;
  c->progress = 1;
}

int wcmi_task_demo(wcmi_ctx *ctx, const wcmi_demo_cfg *d, char **table, char **summary) {
  wcmi_reproduce_cfg c;
  wcmi_reproduce_defaults(&c);
  c.dataset = "fashion-mnist";
  c.profile = "quick";
  c.out_dir = d->out_dir;
  c.data_dir = d->data_dir;
  c.train_subset = d->train_subset;
  c.test_subset = d->test_subset;
  c.encoder_epochs = d->encoder_epochs;
  c.head_epochs = d->head_epochs;
  c.mi_epochs = d->mi_epochs;
  c.hsize = d->hsize;
  c.head_lr = d->head_lr;
  c.seed = d->seed;
  c.progress = d->progress;
  c.max_batches = d->max_batches;
  if (d->eval_batches > 0) c.eval_batches = c.monitor_batches = d->eval_batches;
  return wcmi_task_reproduce(ctx, &c, table, summary);
}
