/* Private to src/nn: the direct kernel for convs with a thin column matrix (conv2d_thin.c), and the
 * pointwise-conv entry points the residual block uses to run without extra activation maps. */
#ifndef WCMI_CONV2D_INTERNAL_H
#define WCMI_CONV2D_INTERNAL_H

#include <stddef.h>

#include "wcmi/nn.h"

/* Nonzero when the direct "thin" kernel handles d: K = C*KH*KW <= 16 (the paper's first conv on
 * grayscale images: 1->64, 4x4, K = 16), where im2col + GEMM runs at a fraction of the GEMM rate. */
int conv2d_thin_applies(const wcmi_conv2d_dims *d);
size_t conv2d_thin_workspace_floats(const wcmi_conv2d_dims *d, int T);
void conv2d_thin_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y, int T);
void conv2d_thin_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *ws, int T);

/* Nonzero when Winograd F(m x m, 2 x 2), m = 3, 4 or 7, handles d (conv2d_winograd.c): 4x4 kernels,
 * stride 2, an output shape where that saves at least 1.5x of the multiplies, d->algo
 * WCMI_CONV_AUTO. (The thin kernel takes precedence where both apply.) Its workspace does not depend
 * on the thread count; dw is accumulated, dx overwritten, as in the public entry points. */
int conv2d_winograd_applies(const wcmi_conv2d_dims *d);
/* The output tile side m it would use for d, 0 where it does not apply. */
int conv2d_winograd_tile(const wcmi_conv2d_dims *d);
size_t conv2d_winograd_workspace_floats(const wcmi_conv2d_dims *d);
void conv2d_winograd_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                             float *ws, int T);
void conv2d_winograd_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                              float *dw, float *ws, int T);

/* BN+ReLU applied to a pointwise conv's input as it is read: x[c] -> max(0, (x[c] - shift[c]) *
 * scale[c] + bias[c]), the expression of batchnorm.c's forward, so the input equals (bit for bit) the
 * BN+ReLU output it replaces. */
typedef struct conv2d_bnrelu {
  const float *shift, *scale, *bias; /* (C) each */
} conv2d_bnrelu;

/* 1x1 conv, stride 1, no padding (d must be one), for callers that keep no separate input map:
 *  - xf, when not NULL, transforms the input x as it is read (the conv sees max(0, BN(x)));
 *  - y may be x (forward) and dx may be dy (backward) when C == O: every sample block is read
 *    completely before its outputs are written. db is summed before dx overwrites dy;
 *  - dx_add: the input gradient is added to dx instead of overwriting it.
 * Otherwise as wcmi_conv2d_forward / wcmi_conv2d_backward. The workspace must hold
 * conv2d_pointwise_workspace_floats(d) floats. */
size_t conv2d_pointwise_workspace_floats(const wcmi_conv2d_dims *d);
void conv2d_pointwise_forward(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                              const float *b, float *y, float *ws);
void conv2d_pointwise_backward(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                               const float *dy, float *dx, int dx_add, float *dw, float *db, float *ws);

#endif
