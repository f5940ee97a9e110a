/* PNG output (read back with libpng), base64 against RFC 4648's vectors, grid layout. */
#include "harness.h"
#include "wcmi/image.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>

static void test_base64_matches_rfc4648_vectors(void) {
  const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    char *s = wcmi_base64_encode((const uint8_t *)in[i], strlen(in[i]));
    CHECK_MSG(s && !strcmp(s, out[i]), "base64('%s') = '%s', expected '%s'", in[i], s ? s : "(null)", out[i]);
    free(s);
  }
}

/* Reads a PNG with libpng's simplified API into an 8-bit buffer of the given format. */
static uint8_t *read_png(const void *mem, size_t len, const char *path, int *w, int *h, int channels) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  int ok = mem ? png_image_begin_read_from_memory(&img, mem, len) : png_image_begin_read_from_file(&img, path);
  if (!ok) return NULL;
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
    free(buf);
    return NULL;
  }
  *w = (int)img.width;
  *h = (int)img.height;
  return buf;
}

static void test_png_file_and_memory_round_trip(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  enum { W = 7, H = 5 };
  uint8_t px[H * W * 3];
  for (int i = 0; i < H * W * 3; i++) px[i] = (uint8_t)(i * 13 + 7);
  char path[1024];
  snprintf(path, sizeof path, "%s/rgb.png", wt_tmpdir());
  CHECK_OK(&ctx, wcmi_png_write(&ctx, path, px, W, H, 3));
  int w = 0, h = 0;
  uint8_t *back = read_png(NULL, 0, path, &w, &h, 3);
  CHECK(back && w == W && h == H && memcmp(back, px, sizeof px) == 0);
  free(back);
  uint8_t *mem = NULL;
  size_t len = 0;
  CHECK_OK(&ctx, wcmi_png_encode_memory(&ctx, px, W, H, 3, &mem, &len));
  CHECK(len > 8 && mem[1] == 'P' && mem[2] == 'N' && mem[3] == 'G');
  back = read_png(mem, len, NULL, &w, &h, 3);
  CHECK(back && memcmp(back, px, sizeof px) == 0);
  free(back);
  free(mem);
  CHECK(wcmi_png_write(&ctx, "/nonexistent-dir/x.png", px, W, H, 3) == WCMI_EIO);
  CHECK(strstr(ctx.msg, "/nonexistent-dir/x.png: cannot create") != NULL);
  CHECK(wcmi_png_write(&ctx, path, px, W, H, 5) == WCMI_EINVAL);
}

static void test_grid_places_tiles_row_major_with_padding(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  /* 5 grey 2x3 images, tile k filled with k/4 (image 4 = 1.0, image 0 = 0), 3 columns, pad 1. */
  float imgs[5 * 6];
  for (int k = 0; k < 5; k++)
    for (int i = 0; i < 6; i++) imgs[k * 6 + i] = (float)k / 4.0f;
  imgs[1 * 6 + 5] = 2.0f;  /* clamped to 255 */
  imgs[2 * 6 + 0] = -1.0f; /* clamped to 0 */
  int gw, gh;
  wcmi_image_grid_size(5, 2, 3, 3, 1, &gw, &gh);
  CHECK(gw == 3 * 4 + 1 && gh == 2 * 3 + 1);
  uint8_t *g = malloc((size_t)gw * gh);
  CHECK_OK(&ctx, wcmi_image_grid(&ctx, imgs, 5, 1, 2, 3, 3, 1, 77, g));
  CHECK(g[0] == 77 && g[gw * gh - 1] == 77);
  /* tile 4 is row 1, column 1: top-left pixel at (1 + 3, 1 + 4) */
  CHECK(g[4 * gw + 5] == 255);
  CHECK(g[1 * gw + 1] == 0);         /* tile 0 */
  CHECK(g[1 * gw + 5] == 64);        /* tile 1: 0.25 -> 63.75 -> 64 */
  CHECK(g[2 * gw + 7] == 255);       /* tile 1, last pixel, clamped */
  CHECK(g[1 * gw + 9] == 0);         /* tile 2 first pixel, clamped */
  CHECK(g[4 * gw + 9] == 77);        /* empty slot 5 stays padding */
  free(g);
  CHECK(wcmi_float_to_u8(0.5f) == 128 && wcmi_float_to_u8(NAN) == 0);
}

int main(void) {
  RUN(test_base64_matches_rfc4648_vectors);
  RUN(test_png_file_and_memory_round_trip);
  RUN(test_grid_places_tiles_row_major_with_padding);
  return wt_finish();
}
