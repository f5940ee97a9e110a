/* wcmi saliency gradients (PAPER.md section 6): the gradient of a loss with respect to the input
 * image, for the MI loss of an encoder, the cross-entropy of a classifier, or one channel of one
 * encoder layer (src/train/saliency.c). Rendering them as maps is wcmi/report.h's. */
#ifndef WCMI_SALIENCY_H
#define WCMI_SALIENCY_H

#include "wcmi/mi.h"
#include "wcmi/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  WCMI_SALIENCY_MI = 0,      /* MI loss of encoder + local/global estimators (needs hsize > 0) */
  WCMI_SALIENCY_CE = 1,      /* cross-entropy of classifier(encoder(x)) on the true labels (needs a head) */
  WCMI_SALIENCY_FEATURE = 2, /* mean activation of one channel of one encoder layer */
} wcmi_saliency_loss;

typedef struct wcmi_saliency_cfg {
  wcmi_saliency_loss loss;
  wcmi_mi_cfg mi;    /* estimator of the MI loss (WCMI_SALIENCY_MI) */
  int grad_both;     /* MI loss: 0 = gradient through the encoder only (the paper's code), 1 = also
                        through the local estimator */
  const char *layer; /* WCMI_SALIENCY_FEATURE: encoder layer name, see wcmi_saliency_find_layer */
  int channel;       /* WCMI_SALIENCY_FEATURE: channel (feature for vector layers) */
} wcmi_saliency_cfg;

/* Parses "mi" | "ce" | "feature". */
int wcmi_saliency_parse_loss(wcmi_ctx *ctx, const char *name, wcmi_saliency_loss *out);

/* Index of an encoder layer by name: the exact layer name ("layer1.0": the conv; "layer1.1": its
 * BN), optionally prefixed with the net's name ("encoder.layer1.0"), or a PyTorch block name
 * ("layer1": the conv/BN/ReLU block, i.e. the output of its ReLU). Error lists the names. */
int wcmi_saliency_find_layer(wcmi_ctx *ctx, const wcmi_net *net, const char *name, int *index);

/* Gradient of the chosen loss with respect to the input, eval mode (BN running statistics, no
 * dropout): x (N, C, H, W) in [0,1], labels (N) (only for WCMI_SALIENCY_CE; may be NULL otherwise),
 * grad (N, C, H, W). N <= the model's max batch; the MI loss is a batch loss and needs N >= 2.
 * For the feature loss the objective is the sum over samples of each sample's mean activation of
 * the channel, so grad[i] is the gradient of sample i's own activation. */
int wcmi_saliency_gradient(wcmi_ctx *ctx, wcmi_model *m, const wcmi_saliency_cfg *cfg, const float *x,
                           const int32_t *labels, int N, float *grad);

#ifdef __cplusplus
}
#endif
#endif
