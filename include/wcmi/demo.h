/* The main job: the paper's Fashion-MNIST table on the quick profile, as one call. The demo is the
 * quick Fashion-MNIST table of wcmi_task_reproduce (wcmi/reproduce.h), not a second pipeline. */
#ifndef WCMI_DEMO_H
#define WCMI_DEMO_H

#include "wcmi/reproduce.h"

#ifdef __cplusplus
extern "C" {
#endif

/* wcmi_reproduce_defaults, then the demo's: fashion-mnist, the quick profile, out_dir runs/demo. */
void wcmi_demo_defaults(wcmi_reproduce_cfg *c);
/* wcmi_task_reproduce: *table receives the printable table, *summary the JSON (also
 * out_dir/reproduce.json). */
int wcmi_task_demo(wcmi_ctx *ctx, const wcmi_reproduce_cfg *c, char **table, char **summary);

#ifdef __cplusplus
}
#endif
#endif
