/* Private to src/nn: BN followed by ReLU, recomputed from the BN input so that a caller (the residual
 * block) need not keep the ReLU's output map. */
#ifndef WCMI_BATCHNORM_INTERNAL_H
#define WCMI_BATCHNORM_INTERNAL_H

#include <stdint.h>

/* The BN forward's per-element expression, (x - shift) * scale + bias: the one place it is written,
 * because the BN+ReLU recomputations below and in conv2d.c must reproduce the forward bit for bit
 * (C11 mode keeps the multiply and the add separately rounded). */
static inline float bn_affine(float x, float shift, float scale, float bias) { return (x - shift) * scale + bias; }

/* ReLU as wcmi_relu_forward applies it (v < 0 ? 0 : v, so NaN stays NaN). */
static inline float bn_relu(float v) { return v < 0.0f ? 0.0f : v; }

/* The per-channel coefficients with which the last forward computed
 *   y = max(0, (x - shift[c]) * scale[c] + bias[c]),
 * bit for bit: from the batch mean and rstd it saved (train) or from the running statistics (eval).
 * gamma / beta NULL stand for 1 / 0. */
void bn_relu_coefficients(int C, int train, const float *gamma, const float *beta, const float *mean,
                          const float *rstd, const float *running_mean, const float *running_var, float eps,
                          float *shift, float *scale, float *bias);

/* The ReLU's backward, with its mask recomputed from the BN input x (N, C, S): dy is zeroed where the
 * forward's ReLU output was 0 (where its input was not > 0; NaN counts as not > 0, as in
 * wcmi_relu_backward on the output). In place. */
void bn_relu_mask_grad(int N, int C, int S, const float *x, const float *shift, const float *scale,
                       const float *bias, float *dy);

/* Train-mode BN over the global batch of a data-parallel run (batchnorm.c; dist must not be NULL):
 * the same arguments as wcmi_batchnorm_(relu_)forward_train and wcmi_batchnorm_backward_train. In the
 * backward dx may alias dy (each channel's sums are complete before its dx is written). */
struct wcmi_dist;
void bn_forward_train_sync(struct wcmi_dist *dist, int N, int C, int S, const float *x, const float *gamma,
                           const float *beta, float *running_mean, float *running_var, int64_t *num_batches_tracked,
                           float momentum, float eps, int relu, float *y, float *mean, float *rstd);
void bn_backward_train_sync(struct wcmi_dist *dist, int N, int C, int S, const float *x, const float *gamma,
                            const float *mean, const float *rstd, const float *dy, float *dx, float *dgamma,
                            float *dbeta);

#endif
