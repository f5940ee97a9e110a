/* wcmi NumPy .npy arrays: an atomic writer and a hostile-input reader (element types are the
 * safetensors ones, wcmi_dtype). Layout in docs/formats.md. */
#ifndef WCMI_NPY_H
#define WCMI_NPY_H

#include "wcmi/core.h"
#include "wcmi/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Format version 1.0, little-endian, C order; header padded with spaces and ended by '\n' so that
 * magic + header is a multiple of 64 bytes. Written atomically. Supported dtypes: F32 ('<f4'),
 * I32 ('<i4'), I64 ('<i8'), U8 ('|u1'), F64 ('<f8'). */
int wcmi_npy_write(wcmi_ctx *ctx, const char *path, wcmi_dtype dtype, const wcmi_shape *shape, const void *data);
int wcmi_npy_write_f32_2d(wcmi_ctx *ctx, const char *path, const float *data, int64_t rows, int64_t cols);
int wcmi_npy_write_i32_1d(wcmi_ctx *ctx, const char *path, const int32_t *data, int64_t n);

typedef struct wcmi_npy {
  wcmi_dtype dtype;
  wcmi_shape shape;
  int64_t numel;
  void *data; /* wcmi_alloc'd, 64-byte aligned */
} wcmi_npy;
/* Reads versions 1.0 / 2.0 / 3.0 with one of the dtypes above, C order, at most 4 dims. */
int wcmi_npy_read(wcmi_ctx *ctx, const char *path, wcmi_npy *out);
void wcmi_npy_free(wcmi_npy *a);

#ifdef __cplusplus
}
#endif
#endif
