/* Internal: the pieces the network builders share (src/model/networks.c, and the critics of
 * src/estimator/critics.c, which are built from the same stages). */
#ifndef WCMI_MODEL_BUILD_H
#define WCMI_MODEL_BUILD_H

#include "wcmi/nn.h"

/* Finalizes net (parameters initialized from rng, buffers for max_batch) or frees it: builders
 * chain `rc = rc ? rc : add(...)` and end with this. NULL on error (message in the net's ctx). */
wcmi_net *wcmi_build_finish(wcmi_net *net, int rc, int max_batch, wcmi_rng *rng);
/* The paper's downsampling stage: conv k4 s2 p1 without bias ("layer<L>.0"), BatchNorm
 * ("layer<L>.1"), ReLU. */
int wcmi_build_conv_stage(wcmi_net *net, int layer, int out_ch);

#endif
