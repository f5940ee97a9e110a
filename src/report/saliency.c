/* Saliency maps (PAPER.md section 6, docs/report.md): per-image normalization of an input gradient
 * (src/train/saliency.c computes it) into a map in [0,1], the colour ramp and the figure grid. */
#include "wcmi/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

void wcmi_saliency_normalize(const float *grad, int N, int C, int H, int W, float *map, float *scratch) {
  const int64_t P = (int64_t)H * W;
  for (int i = 0; i < N; i++) {
    const float *g = grad + (int64_t)i * C * P;
    float *a = map + (int64_t)i * P;
    for (int64_t p = 0; p < P; p++) {
      float s = 0.0f;
      for (int c = 0; c < C; c++) s += fabsf(g[(int64_t)c * P + p]);
      a[p] = isfinite(s) ? s : 0.0f;
    }
    memcpy(scratch, a, (size_t)P * sizeof(float));
    qsort(scratch, (size_t)P, sizeof(float), cmp_float);
    /* Nearest rank: the smallest value with at least 99% of the pixels at or below it. Dividing by
     * it rather than by the maximum keeps one extreme pixel from turning the rest of the map black. */
    int64_t rank = (int64_t)ceil(0.99 * (double)P) - 1;
    if (rank < 0) rank = 0;
    float q = scratch[rank];
    if (!(q > 0.0f)) q = scratch[P - 1];
    for (int64_t p = 0; p < P; p++) a[p] = q > 0.0f ? fminf(1.0f, a[p] / q) : 0.0f;
  }
}

void wcmi_saliency_color(float v, uint8_t rgb[3]) {
  if (!(v > 0.0f)) v = 0.0f;
  if (v > 1.0f) v = 1.0f;
  /* black -> red -> yellow -> white: monotone in brightness, so it also reads in greyscale. */
  float r = fminf(1.0f, 3.0f * v), g = fminf(1.0f, fmaxf(0.0f, 3.0f * v - 1.0f)),
        b = fminf(1.0f, fmaxf(0.0f, 3.0f * v - 2.0f));
  rgb[0] = (uint8_t)lrintf(255.0f * r);
  rgb[1] = (uint8_t)lrintf(255.0f * g);
  rgb[2] = (uint8_t)lrintf(255.0f * b);
}

void wcmi_saliency_grid_size(int N, int H, int W, int n_models, int scale, int pad, int *grid_w, int *grid_h) {
  *grid_w = N * W * scale + (N + 1) * pad;
  *grid_h = (1 + n_models) * H * scale + (2 + n_models) * pad;
}

static uint8_t to_u8(float v) {
  if (!(v > 0.0f)) return 0;
  if (v >= 1.0f) return 255;
  return (uint8_t)lrintf(255.0f * v);
}

int wcmi_saliency_grid(wcmi_ctx *ctx, const float *x, int N, int C, int H, int W, const float *const *maps,
                       int n_models, int scale, int pad, uint8_t *out) {
  if (N < 1 || H < 1 || W < 1 || n_models < 0 || scale < 1 || pad < 0 || (C != 1 && C != 3))
    return wcmi_fail(ctx, WCMI_EINVAL, "saliency grid: bad sizes (N %d, C %d, H %d, W %d, models %d, scale %d, pad %d)",
                     N, C, H, W, n_models, scale, pad);
  int gw, gh;
  wcmi_saliency_grid_size(N, H, W, n_models, scale, pad, &gw, &gh);
  memset(out, 255, (size_t)gw * (size_t)gh * 3);
  const int64_t P = (int64_t)H * W;
  for (int row = 0; row <= n_models; row++)
    for (int i = 0; i < N; i++) {
      int x0 = pad + i * (W * scale + pad), y0 = pad + row * (H * scale + pad);
      for (int yy = 0; yy < H * scale; yy++)
        for (int xx = 0; xx < W * scale; xx++) {
          int64_t p = (int64_t)(yy / scale) * W + xx / scale;
          uint8_t *o = out + ((size_t)(y0 + yy) * (size_t)gw + (size_t)(x0 + xx)) * 3;
          if (row == 0) {
            const float *img = x + (int64_t)i * C * P;
            for (int k = 0; k < 3; k++) o[k] = to_u8(img[(C == 3 ? k : 0) * P + p]);
          } else {
            wcmi_saliency_color(maps[row - 1][(int64_t)i * P + p], o);
          }
        }
    }
  return WCMI_OK;
}
