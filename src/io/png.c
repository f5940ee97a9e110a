/* PNG output through libpng, base64, and image grids. libpng reports errors by longjmp; every
 * object that must be freed after such a jump is reached through a volatile pointer. */
#include "wcmi/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem_sink {
  uint8_t *buf;
  size_t len, cap;
  int failed;
} mem_sink;

static void mem_write(png_structp png, png_bytep data, png_size_t n) {
  mem_sink *s = png_get_io_ptr(png);
  if (s->failed) return;
  if (s->len + n > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + n) cap *= 2;
    uint8_t *nb = realloc(s->buf, cap);
    if (!nb) {
      s->failed = 1;
      return;
    }
    s->buf = nb;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, data, n);
  s->len += n;
}
static void mem_flush(png_structp png) { (void)png; }

static int color_type(int channels) {
  switch (channels) {
  case 1: return PNG_COLOR_TYPE_GRAY;
  case 2: return PNG_COLOR_TYPE_GRAY_ALPHA;
  case 3: return PNG_COLOR_TYPE_RGB;
  case 4: return PNG_COLOR_TYPE_RGBA;
  default: return -1;
  }
}

/* Encodes to a FILE (f != NULL) or to sink. Returns 0 on success, 1 if libpng failed. */
static int encode(FILE *f, mem_sink *sink, const uint8_t *pixels, int width, int height, int channels) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  if (!png) return 1;
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, NULL);
    return 1;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return 1;
  }
  if (f) png_init_io(png, f);
  else png_set_write_fn(png, sink, mem_write, mem_flush);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type(channels), PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  size_t stride = (size_t)width * (size_t)channels;
  for (int r = 0; r < height; r++) png_write_row(png, (png_const_bytep)(pixels + (size_t)r * stride));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return 0;
}

static int check_args(wcmi_ctx *ctx, const char *what, const uint8_t *pixels, int width, int height, int channels) {
  if (!pixels || width <= 0 || height <= 0 || width > (1 << 20) || height > (1 << 20) || color_type(channels) < 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: invalid image %dx%d with %d channels", what, width, height, channels);
  return WCMI_OK;
}

int wcmi_png_write(wcmi_ctx *ctx, const char *path, const uint8_t *pixels, int width, int height, int channels) {
  int rc = check_args(ctx, path, pixels, width, height, channels);
  if (rc) return rc;
  FILE *f = fopen(path, "wb");
  if (!f) return wcmi_fail(ctx, WCMI_EIO, "%s: cannot create: %s", path, strerror(errno));
  int bad = encode(f, NULL, pixels, width, height, channels);
  if (fclose(f) != 0 || bad) return wcmi_fail(ctx, WCMI_EIO, "%s: PNG write failed", path);
  return WCMI_OK;
}

int wcmi_png_encode_memory(wcmi_ctx *ctx, const uint8_t *pixels, int width, int height, int channels,
                           uint8_t **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  int rc = check_args(ctx, "png", pixels, width, height, channels);
  if (rc) return rc;
  mem_sink sink = {NULL, 0, 0, 0};
  if (encode(NULL, &sink, pixels, width, height, channels) || sink.failed) {
    free(sink.buf);
    return wcmi_fail(ctx, WCMI_ENOMEM, "png: in-memory encoding of %dx%d image failed", width, height);
  }
  *out = sink.buf;
  *out_len = sink.len;
  return WCMI_OK;
}

char *wcmi_base64_encode(const uint8_t *data, size_t len) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t groups = len / 3 + (len % 3 != 0);
  if (groups > (SIZE_MAX - 1) / 4) return NULL;
  char *s = malloc(groups * 4 + 1);
  if (!s) return NULL;
  size_t o = 0, i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = ((uint32_t)data[i] << 16) | ((uint32_t)data[i + 1] << 8) | data[i + 2];
    s[o++] = tbl[v >> 18];
    s[o++] = tbl[(v >> 12) & 63];
    s[o++] = tbl[(v >> 6) & 63];
    s[o++] = tbl[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)data[i] << 16;
    s[o++] = tbl[v >> 18];
    s[o++] = tbl[(v >> 12) & 63];
    s[o++] = '=';
    s[o++] = '=';
  } else if (len - i == 2) {
    uint32_t v = ((uint32_t)data[i] << 16) | ((uint32_t)data[i + 1] << 8);
    s[o++] = tbl[v >> 18];
    s[o++] = tbl[(v >> 12) & 63];
    s[o++] = tbl[(v >> 6) & 63];
    s[o++] = '=';
  }
  s[o] = '\0';
  return s;
}

uint8_t wcmi_float_to_u8(float v) {
  if (!(v > 0.0f)) return 0; /* also NaN */
  if (v >= 1.0f) return 255;
  return (uint8_t)lrintf(v * 255.0f);
}

static int grid_cols(int n, int cols) {
  if (cols > 0) return cols;
  int c = (int)ceil(sqrt((double)(n > 0 ? n : 1)));
  return c > 0 ? c : 1;
}

void wcmi_image_grid_size(int n, int h, int w, int cols, int pad, int *grid_w, int *grid_h) {
  int nc = grid_cols(n, cols);
  if (nc > n && n > 0) nc = n;
  int nr = n > 0 ? (n + nc - 1) / nc : 1;
  *grid_w = nc * (w + pad) + pad;
  *grid_h = nr * (h + pad) + pad;
}

int wcmi_image_grid(wcmi_ctx *ctx, const float *images, int n, int c, int h, int w, int cols, int pad,
                    uint8_t pad_value, uint8_t *out) {
  if (n <= 0 || (c != 1 && c != 3) || h <= 0 || w <= 0 || pad < 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "image grid: invalid %d images of (%d, %d, %d), pad %d", n, c, h, w, pad);
  int gw, gh;
  wcmi_image_grid_size(n, h, w, cols, pad, &gw, &gh);
  int nc = grid_cols(n, cols);
  if (nc > n) nc = n;
  memset(out, pad_value, (size_t)gw * (size_t)gh * (size_t)c);
  size_t hw = (size_t)h * (size_t)w;
  for (int k = 0; k < n; k++) {
    int r0 = pad + (k / nc) * (h + pad), c0 = pad + (k % nc) * (w + pad);
    const float *img = images + (size_t)k * (size_t)c * hw;
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++)
        for (int ch = 0; ch < c; ch++)
          out[((size_t)(r0 + i) * (size_t)gw + (size_t)(c0 + j)) * (size_t)c + (size_t)ch] =
              wcmi_float_to_u8(img[(size_t)ch * hw + (size_t)i * (size_t)w + (size_t)j]);
  }
  return WCMI_OK;
}
