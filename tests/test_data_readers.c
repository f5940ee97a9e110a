/* Dataset readers on tiny files in each real format (IDX raw and gzip, CIFAR-10 batches, SVHN MAT
 * level 5 plain and compressed), and at least ten distinct corruptions, each of which must fail
 * with a one-line message that names the file and the problem. */
#include "data_fixtures.h"
#include "harness.h"
#include "wcmi/data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *tmp_path(const char *name) {
  static char buf[8][1024];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 1024, "%s/%s", wt_tmpdir(), name);
  return p;
}

static void check_pixels_match_fixture(const wcmi_dataset *d) {
  int bad = 0;
  for (int64_t k = 0; k < d->n; k++)
    for (int ch = 0; ch < d->c; ch++)
      for (int r = 0; r < d->h; r++)
        for (int c = 0; c < d->w; c++) {
          float got = d->images[((k * d->c + ch) * d->h + r) * d->w + c];
          float want = (float)fx_pixel((int)k, r, c, ch) / 255.0f;
          if (got != want) bad++;
        }
  CHECK_MSG(bad == 0, "%d pixels differ from the fixture (exact match expected)", bad);
}

static void test_idx_raw_and_gzip_read_identically(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  fx_buf im = fx_idx_images(7, 3, 5), lb = fx_idx_labels(7);
  fx_buf gim = fx_deflate(im.p, im.n, 1), glb = fx_deflate(lb.p, lb.n, 1);
  char *ip = tmp_path("img-idx3"), *lp = tmp_path("lbl-idx1"), *gip = tmp_path("img-idx3.gz"),
       *glp = tmp_path("lbl-idx1.gz");
  CHECK(fx_write(ip, &im) == 0 && fx_write(lp, &lb) == 0 && fx_write(gip, &gim) == 0 && fx_write(glp, &glb) == 0);
  wcmi_dataset a, b;
  CHECK_OK(&ctx, wcmi_idx_read(&ctx, "mnist", ip, lp, &a));
  CHECK_OK(&ctx, wcmi_idx_read(&ctx, "mnist", gip, glp, &b));
  CHECK(a.n == 7 && a.c == 1 && a.h == 3 && a.w == 5 && a.num_classes == 10);
  CHECK(!strcmp(a.name, "mnist"));
  check_pixels_match_fixture(&a);
  CHECK(b.n == a.n && memcmp(a.images, b.images, sizeof(float) * 7 * 15) == 0);
  for (int k = 0; k < 7; k++) CHECK(a.labels[k] == k % 10 && b.labels[k] == k % 10);
  wcmi_dataset_free(&a);
  wcmi_dataset_free(&b);
  fx_free(&im); fx_free(&lb); fx_free(&gim); fx_free(&glb);
}

static void test_idx_concatenated_gzip_members_are_one_stream(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  fx_buf im = fx_idx_images(4, 2, 2), lb = fx_idx_labels(4);
  size_t half = im.n / 2;
  fx_buf g1 = fx_deflate(im.p, half, 1), g2 = fx_deflate(im.p + half, im.n - half, 1);
  fx_put(&g1, g2.p, g2.n);
  wcmi_dataset d;
  CHECK_OK(&ctx, wcmi_idx_parse(&ctx, "mnist", "two-members.gz", g1.p, g1.n, "l", lb.p, lb.n, &d));
  CHECK(d.n == 4);
  check_pixels_match_fixture(&d);
  wcmi_dataset_free(&d);
  fx_free(&im); fx_free(&lb); fx_free(&g1); fx_free(&g2);
}

static void test_cifar10_batches_concatenate_in_order(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  fx_buf b1 = fx_cifar(3, 0), b2 = fx_cifar(2, 3);
  char *p1 = tmp_path("data_batch_1.bin"), *p2 = tmp_path("data_batch_2.bin");
  CHECK(fx_write(p1, &b1) == 0 && fx_write(p2, &b2) == 0);
  const char *paths[2] = {p1, p2};
  wcmi_dataset d;
  CHECK_OK(&ctx, wcmi_cifar10_read(&ctx, paths, 2, &d));
  CHECK(d.n == 5 && d.c == 3 && d.h == 32 && d.w == 32);
  check_pixels_match_fixture(&d);
  for (int k = 0; k < 5; k++) CHECK(d.labels[k] == k % 10);
  wcmi_dataset_free(&d);
  fx_free(&b1); fx_free(&b2);
}

static void check_svhn(int y_double, int compress) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  fx_buf f = fx_svhn(12, 12, y_double, compress);
  char *p = tmp_path(compress ? "svhn_z.mat" : "svhn.mat");
  CHECK(fx_write(p, &f) == 0);
  wcmi_dataset d;
  CHECK_OK(&ctx, wcmi_svhn_read(&ctx, p, &d));
  CHECK(d.n == 12 && d.c == 3 && d.h == 32 && d.w == 32 && !strcmp(d.name, "svhn"));
  /* Column-major X(row, col, ch, k) must land at images[k][ch][row][col]. */
  check_pixels_match_fixture(&d);
  /* Labels 1..10 become 1..9, 0: image k has label (k % 10 + 1) % 10. */
  for (int k = 0; k < 12; k++) CHECK_MSG(d.labels[k] == (k % 10 + 1) % 10, "label %d = %d", k, d.labels[k]);
  wcmi_dataset_free(&d);
  fx_free(&f);
}
static void test_svhn_mat_plain_double_labels(void) { check_svhn(1, 0); }
static void test_svhn_mat_compressed_uint8_labels(void) { check_svhn(0, 1); }
static void test_svhn_mat_compressed_double_labels(void) { check_svhn(1, 1); }

static void test_load_by_name_finds_conventional_file_names(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", wt_tmpdir());
  fx_buf im = fx_idx_images(20, 28, 28), lb = fx_idx_labels(20); /* the shape fashion-mnist models take */
  fx_buf gim = fx_deflate(im.p, im.n, 1);
  CHECK(fx_write(tmp_path("t10k-images-idx3-ubyte.gz"), &gim) == 0);
  CHECK(fx_write(tmp_path("t10k-labels-idx1-ubyte"), &lb) == 0); /* mixed: raw labels */
  wcmi_dataset d;
  CHECK_OK(&ctx, wcmi_data_load(&ctx, "fashion-mnist", dir, WCMI_SPLIT_TEST, &d));
  CHECK(d.n == 20 && !strcmp(d.name, "fashion-mnist"));
  wcmi_dataset_free(&d);
  fx_buf tb = fx_cifar(4, 0);
  CHECK(fx_write(tmp_path("test_batch.bin"), &tb) == 0);
  CHECK_OK(&ctx, wcmi_data_load(&ctx, "cifar10", dir, WCMI_SPLIT_TEST, &d));
  CHECK(d.n == 4);
  wcmi_dataset_free(&d);
  fx_buf sv = fx_svhn(3, 3, 1, 1);
  CHECK(fx_write(tmp_path("test_32x32.mat"), &sv) == 0);
  CHECK_OK(&ctx, wcmi_data_load(&ctx, "svhn", dir, WCMI_SPLIT_TEST, &d));
  CHECK(d.n == 3);
  wcmi_dataset_free(&d);
  /* The train split is absent: a clear "missing file" naming the conventional name. */
  CHECK(wcmi_data_load(&ctx, "mnist", dir, WCMI_SPLIT_TRAIN, &d) == WCMI_EIO);
  CHECK_MSG(strstr(ctx.msg, "train-images-idx3-ubyte.gz: missing file") != NULL, "msg: %s", ctx.msg);
  CHECK(wcmi_data_load(&ctx, "imagenet", dir, WCMI_SPLIT_TRAIN, &d) == WCMI_EINVAL);
  CHECK(strstr(ctx.msg, "unknown dataset") != NULL);
  fx_free(&im); fx_free(&lb); fx_free(&gim); fx_free(&tb); fx_free(&sv);
}

/* ---- corruptions ----------------------------------------------------------------------------- */
/* Writes the image and label files, reads them, expects failure with code and message parts. */
static void expect_idx_failure(const char *tag, const fx_buf *im, const fx_buf *lb, int code, const char *file_part,
                               const char *problem) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char ipn[128], lpn[128];
  snprintf(ipn, sizeof ipn, "%s-images-idx3-ubyte", tag);
  snprintf(lpn, sizeof lpn, "%s-labels-idx1-ubyte", tag);
  char *ip = tmp_path(ipn), *lp = tmp_path(lpn);
  CHECK(fx_write(ip, im) == 0 && fx_write(lp, lb) == 0);
  wcmi_dataset d;
  int rc = wcmi_idx_read(&ctx, "mnist", ip, lp, &d);
  CHECK_MSG(rc == code, "%s: rc %d, expected %d (%s)", tag, rc, code, ctx.msg);
  CHECK_MSG(strstr(ctx.msg, file_part) && strstr(ctx.msg, problem), "%s: message '%s' lacks '%s' / '%s'", tag,
            ctx.msg, file_part, problem);
  CHECK_MSG(!strchr(ctx.msg, '\n'), "%s: multi-line message", tag);
  CHECK(d.images == NULL && d.labels == NULL && d.n == 0);
  printf("  [%s] %s\n", tag, ctx.msg);
}

static void test_idx_corruptions_are_rejected_with_named_file(void) {
  fx_buf im = fx_idx_images(6, 4, 4), lb = fx_idx_labels(6);
  /* 1. wrong magic */
  fx_buf bad = {0};
  fx_put(&bad, im.p, im.n);
  bad.p[2] = 0x0d; /* float type instead of uint8 */
  expect_idx_failure("magic", &bad, &lb, WCMI_EFORMAT, "magic-images-idx3-ubyte", "wrong magic");
  fx_free(&bad);
  /* 2. image/label count mismatch */
  fx_buf lb5 = fx_idx_labels(5);
  expect_idx_failure("count", &im, &lb5, WCMI_EFORMAT, "count-labels-idx1-ubyte", "count mismatch");
  fx_free(&lb5);
  /* 3. truncated raw file */
  fx_buf cut = {0};
  fx_put(&cut, im.p, im.n - 7);
  expect_idx_failure("trunc", &cut, &lb, WCMI_EFORMAT, "trunc-images-idx3-ubyte", "truncated");
  fx_free(&cut);
  /* 4. header claims far more data than the file has (must not try to allocate it) */
  fx_buf huge = {0};
  fx_put(&huge, im.p, im.n);
  huge.p[4] = 0x7f; /* N = 0x7f000006 images */
  expect_idx_failure("claims", &huge, &lb, WCMI_EFORMAT, "claims-images-idx3-ubyte", "header claims");
  /* 5. dimensions whose product overflows */
  memset(huge.p + 4, 0xff, 12);
  expect_idx_failure("overflow", &huge, &lb, WCMI_EFORMAT, "overflow-images-idx3-ubyte", "overflow");
  fx_free(&huge);
  /* 6. label out of range */
  fx_buf lbad = {0};
  fx_put(&lbad, lb.p, lb.n);
  lbad.p[8 + 3] = 10;
  expect_idx_failure("label", &im, &lbad, WCMI_EFORMAT, "label-labels-idx1-ubyte", "label 10 at index 3 out of range");
  fx_free(&lbad);
  /* 7. corrupted gzip stream: garbage in the deflate data */
  fx_buf gz = fx_deflate(im.p, im.n, 1);
  fx_buf gzc = {0};
  fx_put(&gzc, gz.p, gz.n);
  for (size_t i = 12; i < 20 && i < gzc.n; i++) gzc.p[i] ^= 0xa5;
  expect_idx_failure("gzbad", &gzc, &lb, WCMI_EFORMAT, "gzbad-images-idx3-ubyte", "corrupted gzip");
  fx_free(&gzc);
  /* 8. truncated gzip stream */
  fx_buf gzt = {0};
  fx_put(&gzt, gz.p, gz.n / 2);
  expect_idx_failure("gztrunc", &gzt, &lb, WCMI_EFORMAT, "gztrunc-images-idx3-ubyte", "truncated gzip");
  fx_free(&gzt);
  /* 9. gzip CRC mismatch (payload intact, trailer flipped) */
  fx_buf gzcrc = {0};
  fx_put(&gzcrc, gz.p, gz.n);
  gzcrc.p[gzcrc.n - 6] ^= 0xff;
  expect_idx_failure("gzcrc", &gzcrc, &lb, WCMI_EFORMAT, "gzcrc-images-idx3-ubyte", "corrupted gzip");
  fx_free(&gzcrc);
  fx_free(&gz);
  fx_free(&im); fx_free(&lb);
}

/* ---- issue 17: hostile shapes and gzip bombs ------------------------------------------------ */

/* Images of another size under a dataset's name are refused by wcmi_data_load, the one function
 * every command reads data through, with a message naming the shapes (they used to be read past the
 * end of their buffers by the 28x28 networks). */
static void test_load_by_name_refuses_samples_of_another_shape(void) {
  const int sides[3] = {14, 32, 28};
  for (int k = 0; k < 3; k++) {
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/shape%d", wt_tmpdir(), sides[k]);
    CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST);
    fx_buf im = fx_idx_images(20, sides[k], sides[k]), lb = fx_idx_labels(20);
    char ip[1200], lp[1200];
    snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte", dir);
    snprintf(lp, sizeof lp, "%s/t10k-labels-idx1-ubyte", dir);
    CHECK(fx_write(ip, &im) == 0 && fx_write(lp, &lb) == 0);
    wcmi_ctx ctx;
    wcmi_ctx_init(&ctx);
    wcmi_dataset d;
    int rc = wcmi_data_load(&ctx, "fashion-mnist", dir, WCMI_SPLIT_TEST, &d);
    if (sides[k] == 28) {
      CHECK_OK(&ctx, rc);
      wcmi_dataset_free(&d);
    } else {
      char want[64];
      snprintf(want, sizeof want, "1x%dx%d, but fashion-mnist models take 1x28x28", sides[k], sides[k]);
      CHECK_MSG(rc == WCMI_EFORMAT && strstr(ctx.msg, want) && strstr(ctx.msg, dir), "%d: rc %d '%s'", sides[k], rc, ctx.msg);
      CHECK(d.images == NULL && d.n == 0);
    }
    fx_free(&im);
    fx_free(&lb);
  }
}

/* A gzip IDX file is inflated no further than its header implies: a 64 MiB stream of zeros behind
 * a header that promises one 28x28 image fails at 800 bytes (it was inflated whole, up to 2 GiB,
 * before anything looked at it), and a wrong magic fails before the body is inflated. */
static void test_gzip_idx_is_capped_by_its_header(void) {
  const size_t body = (size_t)64 << 20;
  fx_buf raw = {0};
  fx_be32(&raw, 0x803);
  fx_be32(&raw, 1);
  fx_be32(&raw, 28);
  fx_be32(&raw, 28);
  uint8_t *zeros = calloc(1, body);
  CHECK(zeros != NULL);
  if (!zeros) return;
  fx_put(&raw, zeros, body);
  free(zeros);
  fx_buf bomb = fx_deflate(raw.p, raw.n, 1), lb = fx_idx_labels(1);
  raw.p[3] = 0x01; /* idx1 magic on an images file */
  fx_buf wrong = fx_deflate(raw.p, raw.n, 1);
  /* The limit in the message is the header's size (the 2 GiB cap let the whole stream through). */
  double t0 = wcmi_now();
  expect_idx_failure("bomb", &bomb, &lb, WCMI_EFORMAT, "bomb-images-idx3-ubyte", "exceeds the limit of 800 bytes");
  expect_idx_failure("bombmagic", &wrong, &lb, WCMI_EFORMAT, "bombmagic-images-idx3-ubyte", "wrong magic");
  printf("  two gzip bombs refused in %.3f s\n", wcmi_now() - t0);
  fx_free(&raw);
  fx_free(&bomb);
  fx_free(&wrong);
  fx_free(&lb);
}

static void test_missing_file_is_an_io_error(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  char *p = tmp_path("no-such-file.mat");
  CHECK(wcmi_svhn_read(&ctx, p, &d) == WCMI_EIO);
  CHECK_MSG(strstr(ctx.msg, "no-such-file.mat: cannot open") != NULL, "msg: %s", ctx.msg);
  printf("  [missing] %s\n", ctx.msg);
}

static void expect_mem_failure(const char *tag, int rc, const wcmi_ctx *ctx, const char *file, const char *problem) {
  CHECK_MSG(rc == WCMI_EFORMAT, "%s: rc %d (%s)", tag, rc, ctx->msg);
  CHECK_MSG(strstr(ctx->msg, file) && strstr(ctx->msg, problem), "%s: message '%s' lacks '%s' / '%s'", tag, ctx->msg,
            file, problem);
  printf("  [%s] %s\n", tag, ctx->msg);
}

static void test_cifar10_corruptions_are_rejected(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  fx_buf b = fx_cifar(3, 0);
  /* 10. truncated record */
  int rc = wcmi_cifar10_parse(&ctx, "data_batch_1.bin", b.p, b.n - 100, &d);
  expect_mem_failure("cifar-trunc", rc, &ctx, "data_batch_1.bin", "not a multiple of the 3073-byte record");
  /* 11. label out of range */
  b.p[3073] = 12;
  rc = wcmi_cifar10_parse(&ctx, "data_batch_2.bin", b.p, b.n, &d);
  expect_mem_failure("cifar-label", rc, &ctx, "data_batch_2.bin", "label 12 in record 1 out of range");
  /* 12. empty file */
  rc = wcmi_cifar10_parse(&ctx, "test_batch.bin", b.p, 0, &d);
  expect_mem_failure("cifar-empty", rc, &ctx, "test_batch.bin", "empty file");
  fx_free(&b);
}

static void test_svhn_corruptions_are_rejected(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  /* 13. MAT v7.3 (HDF5) */
  fx_buf h = {0};
  fx_mat_header(&h);
  memcpy(h.p, "MATLAB 7.3 MAT-file", 19);
  int rc = wcmi_svhn_parse(&ctx, "train_32x32.mat", h.p, h.n, &d);
  expect_mem_failure("mat-v73", rc, &ctx, "train_32x32.mat", "MAT v7.3 (HDF5) files are not supported");
  fx_free(&h);
  /* 14. wrong magic */
  fx_buf f = fx_svhn(4, 4, 1, 0);
  f.p[126] = 'X';
  rc = wcmi_svhn_parse(&ctx, "magic.mat", f.p, f.n, &d);
  expect_mem_failure("mat-magic", rc, &ctx, "magic.mat", "wrong magic");
  fx_free(&f);
  /* 15. count mismatch */
  f = fx_svhn(4, 3, 1, 1);
  rc = wcmi_svhn_parse(&ctx, "count.mat", f.p, f.n, &d);
  expect_mem_failure("mat-count", rc, &ctx, "count.mat", "count mismatch: 3 labels for 4 images");
  fx_free(&f);
  /* 16. truncated file (cut inside X) */
  f = fx_svhn(4, 4, 1, 0);
  rc = wcmi_svhn_parse(&ctx, "trunc.mat", f.p, 128 + 600, &d);
  expect_mem_failure("mat-trunc", rc, &ctx, "trunc.mat", "truncated");
  fx_free(&f);
  /* 17. corrupted zlib stream inside miCOMPRESSED */
  f = fx_svhn(4, 4, 1, 1);
  for (size_t i = 128 + 8 + 4; i < 128 + 8 + 40; i++) f.p[i] ^= 0x5a;
  rc = wcmi_svhn_parse(&ctx, "zbad.mat", f.p, f.n, &d);
  expect_mem_failure("mat-zlib", rc, &ctx, "zbad.mat", "zlib stream");
  fx_free(&f);
  /* 18. label out of range: y = 11 */
  f = fx_svhn(2, 2, 0, 0);
  /* The y matrix is last and stored as uint8: its first data byte sits 16 bytes before the end
   * (2 data bytes padded to 8, preceded by an 8-byte tag). */
  f.p[f.n - 8] = 11;
  rc = wcmi_svhn_parse(&ctx, "label.mat", f.p, f.n, &d);
  expect_mem_failure("mat-label", rc, &ctx, "label.mat", "label 11 at index 0 out of range");
  fx_free(&f);
  /* 19. X dimensions claim more images than its data holds */
  f = fx_svhn(2, 2, 1, 0);
  /* X's dims element: header 128 + matrix tag 8 + flags 16 + dims tag 8 = offset 160; N is the 4th. */
  f.p[160 + 12] = 0xe8; /* N = 1000 + ... */
  f.p[160 + 13] = 0x03;
  rc = wcmi_svhn_parse(&ctx, "claims.mat", f.p, f.n, &d);
  expect_mem_failure("mat-claims", rc, &ctx, "claims.mat", "claims");
  fx_free(&f);
  CHECK(d.images == NULL);
}

int main(void) {
  RUN(test_idx_raw_and_gzip_read_identically);
  RUN(test_idx_concatenated_gzip_members_are_one_stream);
  RUN(test_cifar10_batches_concatenate_in_order);
  RUN(test_svhn_mat_plain_double_labels);
  RUN(test_svhn_mat_compressed_uint8_labels);
  RUN(test_svhn_mat_compressed_double_labels);
  RUN(test_load_by_name_finds_conventional_file_names);
  RUN(test_idx_corruptions_are_rejected_with_named_file);
  RUN(test_missing_file_is_an_io_error);
  RUN(test_load_by_name_refuses_samples_of_another_shape);
  RUN(test_gzip_idx_is_capped_by_its_header);
  RUN(test_cifar10_corruptions_are_rejected);
  RUN(test_svhn_corruptions_are_rejected);
  return wt_finish();
}
