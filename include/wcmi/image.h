/* wcmi images: PNG output (libpng), base64 for inline images (HTML, Markdown, JSON), and tiling of
 * float images into a grid. */
#ifndef WCMI_IMAGE_H
#define WCMI_IMAGE_H

#include "wcmi/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes an 8-bit PNG. pixels: (height, width, channels) row-major, interleaved; channels 1 (grey),
 * 2 (grey+alpha), 3 (RGB) or 4 (RGBA). */
int wcmi_png_write(wcmi_ctx *ctx, const char *path, const uint8_t *pixels, int width, int height, int channels);

/* Encodes the same PNG into memory: *out is malloc'd (release with free()), *out_len its size. */
int wcmi_png_encode_memory(wcmi_ctx *ctx, const uint8_t *pixels, int width, int height, int channels,
                           uint8_t **out, size_t *out_len);

/* Standard base64 (RFC 4648, with '=' padding) of len bytes: a malloc'd NUL-terminated string,
 * NULL on allocation failure. */
char *wcmi_base64_encode(const uint8_t *data, size_t len);

/* Size of the grid that wcmi_image_grid produces for n images of h x w in `cols` columns
 * (cols <= 0: ceil(sqrt(n))) with `pad` pixels between and around tiles. */
void wcmi_image_grid_size(int n, int h, int w, int cols, int pad, int *grid_w, int *grid_h);

/* Tiles n float images (n, c, h, w) with values in [0,1] (clamped; NaN -> 0) into an 8-bit grid
 * written to out: (grid_h, grid_w, out_channels) as sized by wcmi_image_grid_size. c must be 1 or
 * 3; out_channels is c. Row-major order of tiles; the padding is filled with pad_value (0..255). */
int wcmi_image_grid(wcmi_ctx *ctx, const float *images, int n, int c, int h, int w, int cols, int pad,
                    uint8_t pad_value, uint8_t *out);

/* Converts one value in [0,1] to 0..255 with rounding (clamped; NaN -> 0). */
uint8_t wcmi_float_to_u8(float v);

#ifdef __cplusplus
}
#endif
#endif
