/* Private to src/nn/conv2d*.c: the direct kernel for convs with a thin column matrix. */
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

#endif
