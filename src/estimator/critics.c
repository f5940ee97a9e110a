/* The MI critic (PAPER.md section 3): a local network on x and a global network on the
 * representation, whose feature maps the estimators of this room score against each other. Built
 * here once, for the model bundle (model.c) and for the fresh critics of estimate-mi. */
#include "model/build.h"
#include "wcmi/model.h"

wcmi_net *wcmi_build_local_estimator(wcmi_ctx *ctx, const wcmi_input_spec *in, int hsize, int max_batch,
                                     wcmi_rng *rng) {
  wcmi_net *net = wcmi_net_new(ctx, "dim_local", wcmi_shape3(in->C, in->H, in->W));
  if (!net) return NULL;
  int rc = wcmi_net_add_normalize(net, in->C, in->mean, in->std);
  rc = rc ? rc : wcmi_build_conv_stage(net, 0, 64);
  rc = rc ? rc : wcmi_build_conv_stage(net, 1, 128);
  rc = rc ? rc : wcmi_net_add_resblock(net, "", hsize);
  /* wcmi_dim passes dL/dLx in Lx's buffer: the block keeps one (N, H, 7, 7) map fewer; nobody
   * reads the hidden BN outputs of a critic, so its ReLUs work in place */
  rc = rc ? rc : wcmi_net_set_grad_in_output(net);
  rc = rc ? rc : wcmi_net_set_relu_in_place(net);
  return wcmi_build_finish(net, rc, max_batch, rng);
}

wcmi_net *wcmi_build_global_estimator(wcmi_ctx *ctx, int zdim, int hsize, int max_batch, wcmi_rng *rng) {
  wcmi_net *net = wcmi_net_new(ctx, "dim_global", wcmi_shape1(zdim));
  if (!net) return NULL;
  int rc = wcmi_net_add_view_map(net);
  rc = rc ? rc : wcmi_net_add_resblock(net, "", hsize);
  return wcmi_build_finish(net, rc, max_batch, rng);
}

int wcmi_build_critic(wcmi_ctx *ctx, const wcmi_input_spec *in, int zdim, int hsize, int max_batch, wcmi_rng *rng,
                      wcmi_net **local, wcmi_net **global) {
  *local = wcmi_build_local_estimator(ctx, in, hsize, max_batch, rng);
  *global = *local ? wcmi_build_global_estimator(ctx, zdim, hsize, max_batch, rng) : NULL;
  if (*global) return WCMI_OK;
  wcmi_net_free(*local);
  *local = NULL;
  return ctx->status ? ctx->status : WCMI_ENOMEM;
}
