/* Private to src/nn: what the conv algorithms share (conv2d.c, the chooser), each algorithm's entry
 * points (conv2d_gemm.c, conv2d_thin.c, conv2d_winograd.c), and the pointwise-conv entry points the
 * residual block uses to run without extra activation maps. */
#ifndef WCMI_CONV2D_INTERNAL_H
#define WCMI_CONV2D_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "wcmi/nn.h"

/* ---- shared by the algorithms (conv2d.c) ---- */

/* Kernel covers the whole unpadded input: y (N, O) = x (N, C*H*W) . w^T. */
static inline int conv2d_is_dense(const wcmi_conv2d_dims *d) {
  return d->pad == 0 && d->KH == d->H && d->KW == d->W;
}
/* 1x1 kernel, stride 1, no padding: cols (C, n*S) is x (n, C, S) with the first two axes swapped. */
static inline int conv2d_is_pointwise(const wcmi_conv2d_dims *d) {
  return d->KH == 1 && d->KW == 1 && d->stride == 1 && d->pad == 0;
}
/* The GEMM's reduction length. */
static inline int64_t conv2d_K(const wcmi_conv2d_dims *d) { return (int64_t)d->C * d->KH * d->KW; }

/* Threads the workspace is sized for (d->threads clamped to [1, 256]) and threads a call may use
 * (no more than that; one inside a parallel region). */
int conv2d_sized_threads(const wcmi_conv2d_dims *d);
int conv2d_threads(const wcmi_conv2d_dims *d);
/* Workspace floats an algorithm needs at T threads, and the most over T = 1 .. sized threads. */
typedef size_t (*conv2d_workspace_fn)(const wcmi_conv2d_dims *d, int T);
size_t conv2d_workspace_any_threads(const wcmi_conv2d_dims *d, conv2d_workspace_fn floats_at);
/* The algorithm wcmi_conv2d_forward / _backward run for d: "dense", "thin", "winograd" or "gemm". */
const char *conv2d_algorithm_name(const wcmi_conv2d_dims *d);

/* ---- im2col + GEMM (conv2d_gemm.c): every shape ---- */
size_t conv2d_gemm_workspace_floats(const wcmi_conv2d_dims *d, int T);
void conv2d_gemm_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                         float *ws, int T);
void conv2d_gemm_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *ws, int T);
/* db (O) += sum of dy (N, O, S) over n and s, in double, in a fixed order per channel. */
void conv2d_bias_grad(int N, int O, int S, const float *dy, float *db);

/* ---- direct thin kernel (conv2d_thin.c) ---- */
/* Nonzero when the direct "thin" kernel handles d: K = C*KH*KW <= 16 (the paper's first conv on
 * grayscale images: 1->64, 4x4, K = 16), where im2col + GEMM runs at a fraction of the GEMM rate. */
int conv2d_thin_applies(const wcmi_conv2d_dims *d);
size_t conv2d_thin_workspace_floats(const wcmi_conv2d_dims *d, int T);
void conv2d_thin_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y, int T);
void conv2d_thin_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *ws, int T);

/* ---- Winograd (conv2d_winograd.c) ---- */
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

/* ---- pointwise entry points (conv2d_gemm.c) ---- */
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
