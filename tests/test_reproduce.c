/* The pieces `wcmi reproduce` adds: the pixels "encoder" (heads on raw pixels: forward, gradient,
 * save/load, no MI critics) and the published-numbers file (the shipped file's cells match
 * PAPER.md section 7; a corrupt or missing file fails with one message naming file and line). */
#include "harness.h"
#include "wcmi/io.h"
#include "wcmi/reproduce.h"
#include "wcmi/train.h"

#include <string.h>

enum { N = 4, D = 28 * 28 };

static void fill(float *x, int n) {
  for (int i = 0; i < n; i++) x[i] = (float)((i * 37) % 101) / 100.0f;
}

static void test_pixels_encoder_is_the_flattened_image(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init_ex(&ctx, &m, "fashion-mnist", WCMI_ENCODER_PIXELS, 0, WCMI_HEAD_LINEAR, N, 3));
  CHECK(m.zdim == D);
  CHECK(wcmi_net_num_params(m.encoder) == 0);
  wcmi_shape out = wcmi_net_out_shape(m.encoder);
  CHECK(wcmi_shape_numel(&out) == D);
  wcmi_shape hin = wcmi_net_in_shape(m.classifier);
  CHECK_MSG(wcmi_shape_numel(&hin) == D, "head input width %lld, want %d", (long long)wcmi_shape_numel(&hin), D);
  static float x[N * D], z[N * D];
  fill(x, N * D);
  CHECK_OK(&ctx, wcmi_model_encode(&ctx, &m, x, N, z));
  /* Fashion-MNIST normalization is mean 0, std 1: z is x. */
  CHECK(!memcmp(x, z, sizeof x));
  char arch[256];
  wcmi_model_describe(&m, arch, sizeof arch);
  CHECK_MSG(strstr(arch, "encoder(pixels") && strstr(arch, "z=784"), "architecture '%s'", arch);
  wcmi_model_free(&m);
  /* CIFAR-10's per-channel normalization still applies. */
  CHECK_OK(&ctx, wcmi_model_init_ex(&ctx, &m, "cifar10", WCMI_ENCODER_PIXELS, 0, WCMI_HEAD_MLP, 1, 3));
  CHECK(m.zdim == 3 * 32 * 32);
  static float xc[3 * 32 * 32], zc[3 * 32 * 32];
  for (int i = 0; i < 3 * 32 * 32; i++) xc[i] = 0.5f;
  CHECK_OK(&ctx, wcmi_model_encode(&ctx, &m, xc, 1, zc));
  CHECK_CLOSE(zc[0], (0.5 - 0.4914) / 0.2023, 1e-5, 0);
  CHECK_CLOSE(zc[2 * 1024], (0.5 - 0.4465) / 0.2010, 1e-5, 0);
  wcmi_model_free(&m);
}

static void test_pixels_encoder_refuses_mi_critics(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  int rc = wcmi_model_init_ex(&ctx, &m, "mnist", WCMI_ENCODER_PIXELS, 64, WCMI_HEAD_NONE, N, 3);
  CHECK(rc == WCMI_EINVAL);
  CHECK_MSG(strstr(ctx.msg, "pixels") != NULL, "message '%s'", ctx.msg);
  wcmi_encoder_kind k;
  CHECK(wcmi_encoder_parse(&ctx, "pixels", &k) == 0 && k == WCMI_ENCODER_PIXELS);
  CHECK(wcmi_encoder_parse(&ctx, "raw", &k) == WCMI_EINVAL);
}

/* The classifier's input gradient through the pixels encoder is the head's: a linear head's
 * gradient of the cross-entropy w.r.t. x equals W^T (p - onehot(y)). */
static void test_pixels_linear_head_input_gradient_is_wt_times_residual(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init_ex(&ctx, &m, "fashion-mnist", WCMI_ENCODER_PIXELS, 0, WCMI_HEAD_LINEAR, N, 5));
  wcmi_clf clf;
  CHECK_OK(&ctx, wcmi_clf_init(&ctx, &clf, &m, N));
  static float x[N * D], dx[N * D];
  fill(x, N * D);
  int32_t y[N] = {0, 3, 7, 9};
  float loss;
  CHECK_OK(&ctx, wcmi_clf_step(&clf, x, y, N, 0, 0, WCMI_CLF_INPUT, &loss, NULL, NULL, NULL, dx));
  const wcmi_param *w = wcmi_net_find_param(m.classifier, "classifier.layer0.weight");
  CHECK(w != NULL);
  double worst = 0;
  for (int i = 0; i < N; i++)
    for (int p = 0; p < D; p += 97) {
      double g = 0;
      for (int k = 0; k < WCMI_NUM_CLASSES; k++)
        g += w->data[k * D + p] * (clf.probs[i * WCMI_NUM_CLASSES + k] - (k == y[i])) / N;
      double e = fabs(g - dx[i * D + p]);
      if (e > worst) worst = e;
    }
  CHECK_MSG(worst < 1e-6, "largest difference %g", worst);
  wcmi_clf_free(&clf);
  wcmi_model_free(&m);
}

static void test_pixels_model_save_load_roundtrip(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m, back;
  CHECK_OK(&ctx, wcmi_model_init_ex(&ctx, &m, "mnist", WCMI_ENCODER_PIXELS, 0, WCMI_HEAD_MLP, N, 9));
  char path[512];
  snprintf(path, sizeof path, "%s/pixels.safetensors", wt_tmpdir());
  CHECK_OK(&ctx, wcmi_model_save(&ctx, &m, path, NULL, 0, NULL, 0));
  CHECK_OK(&ctx, wcmi_model_load(&ctx, path, N, &back, NULL));
  CHECK(back.encoder_kind == WCMI_ENCODER_PIXELS && back.zdim == D && back.head == WCMI_HEAD_MLP);
  const wcmi_param *a = wcmi_net_find_param(m.classifier, "classifier.layer0.0.weight"),
                   *b = wcmi_net_find_param(back.classifier, "classifier.layer0.0.weight");
  CHECK(a && b && !memcmp(a->data, b->data, (size_t)200 * D * sizeof(float)));
  wcmi_model_free(&back);
  wcmi_model_free(&m);
  /* A basic-encoder model still loads as one (files without the "encoder" key are basic too). */
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "mnist", 0, WCMI_HEAD_LINEAR, N, 9));
  CHECK_OK(&ctx, wcmi_model_save(&ctx, &m, path, NULL, 0, NULL, 0));
  CHECK_OK(&ctx, wcmi_model_load(&ctx, path, N, &back, NULL));
  CHECK(back.encoder_kind == WCMI_ENCODER_BASIC && back.zdim == WCMI_ZDIM);
  wcmi_model_free(&back);
  wcmi_model_free(&m);
}

static void shipped_file(char *out, size_t n) { snprintf(out, n, "%s/data/paper_results.tsv", WCMI_SOURCE_DIR); }

static void test_shipped_paper_results_match_paper_md_section_7(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char path[1024];
  shipped_file(path, sizeof path);
  wcmi_paper_results r;
  CHECK_OK(&ctx, wcmi_paper_results_load(&ctx, path, &r));
  /* A few cells of each table, as PAPER.md section 7 prints them. */
  CHECK_CLOSE(wcmi_paper_results_get(&r, "fashion-mnist", "worst-mi", "mlp", "robust", "nat"), 84.31, 0, 0);
  CHECK_CLOSE(wcmi_paper_results_get(&r, "fashion-mnist", "worst-mi", "mlp", "robust", "adv"), 70.44, 0, 0);
  CHECK_CLOSE(wcmi_paper_results_get(&r, "fashion-mnist", "worst-mi", "linear", "early-stopped", "adv"), 23.40, 0, 0);
  CHECK_CLOSE(wcmi_paper_results_get(&r, "fashion-mnist", "dim", "linear", "robust", "nat"), 10.00, 0, 0);
  CHECK_CLOSE(wcmi_paper_results_get(&r, "mnist", "supervised", "linear", "robust", "adv"), 95.29, 0, 0);
  CHECK_CLOSE(wcmi_paper_results_get(&r, "cifar10", "supervised", "mlp", "standard", "adv"), 0.07, 0, 0);
  CHECK_CLOSE(wcmi_paper_results_get(&r, "svhn", "worst-mi", "linear", "standard", "nat"), 58.37, 0, 0);
  /* The paper's dashes: no supervised standard linear head, no early-stopped row but Fashion-MNIST's. */
  CHECK(isnan(wcmi_paper_results_get(&r, "fashion-mnist", "supervised", "linear", "standard", "nat")));
  CHECK(wcmi_paper_results_has_row(&r, "fashion-mnist", "worst-mi", "early-stopped"));
  CHECK(!wcmi_paper_results_has_row(&r, "cifar10", "worst-mi", "early-stopped"));
  /* Fashion-MNIST 13 cells x 2, MNIST 8 x 2, CIFAR-10 11 x 2, SVHN 8 x 2. */
  CHECK_MSG(r.n == 2 * (13 + 8 + 11 + 8), "%d cells", r.n);
  wcmi_paper_results_free(&r);
}

/* Writes the shipped header and then `body` to a scratch file; returns the load status. */
static int load_text(wcmi_ctx *ctx, const char *body, char *path, size_t n) {
  snprintf(path, n, "%s/paper.tsv", wt_tmpdir());
  char text[2048];
  snprintf(text, sizeof text, "# comment\ndataset\tencoder\thead\ttraining\tmetric\tvalue\tsource\n%s", body);
  if (wcmi_atomic_write(ctx, path, text, strlen(text))) return -1;
  wcmi_paper_results r;
  int rc = wcmi_paper_results_load(ctx, path, &r);
  if (!rc) wcmi_paper_results_free(&r);
  return rc;
}

static void expect_error(const char *body, const char *fragment) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char path[512];
  int rc = load_text(&ctx, body, path, sizeof path);
  CHECK_MSG(rc == WCMI_EFORMAT, "rc %d for '%s'", rc, body);
  CHECK_MSG(strstr(ctx.msg, path) && strstr(ctx.msg, fragment) && !strchr(ctx.msg, '\n'),
            "message '%s' should name %s and say '%s' on one line", ctx.msg, path, fragment);
}

static void test_corrupt_paper_results_fail_with_file_and_line(void) {
  expect_error("fashion-mnist\tdim\tmlp\tstandard\tnat\t89.58\n", ":3: expected 7 tab-separated fields, got 6");
  expect_error("fashion-mnist\tdim\tmlp\tstandard\tnat\tlots\tT\n", ":3: value 'lots'");
  expect_error("fashion-mnist\tdim\tmlp\tstandard\tnat\t101\tT\n", ":3: value '101'");
  expect_error("imagenet\tdim\tmlp\tstandard\tnat\t1\tT\n", ":3: dataset 'imagenet'");
  expect_error("mnist\tdim\tmlp\tstandard\tnat\t1\tT\nmnist\tdim\tmlp\tstandard\tnat\t2\tT\n", ":4: the cell");
  expect_error("mnist\tdim\tmlp\tstandard\tnat\t1\tT\textra\n", ":3: expected 7");
  expect_error("", "no published numbers");
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char path[512];
  CHECK_OK(&ctx, load_text(&ctx, "mnist\tdim\tmlp\tstandard\tnat\t96.96\tT\r\n", path, sizeof path));
}

static void test_missing_paper_results_name_the_file_and_the_override(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_paper_results r;
  int rc = wcmi_paper_results_load(&ctx, "/nonexistent/paper_results.tsv", &r);
  CHECK(rc == WCMI_EIO);
  CHECK_MSG(strstr(ctx.msg, "/nonexistent/paper_results.tsv") && strstr(ctx.msg, WCMI_PAPER_RESULTS_ENV), "'%s'", ctx.msg);
  /* An explicit path wins; without one a build-tree wcmi finds the source tree's data file. */
  char found[1024], want[1024];
  wcmi_paper_results_find("/x/y.tsv", found, sizeof found);
  CHECK(!strcmp(found, "/x/y.tsv"));
  unsetenv(WCMI_PAPER_RESULTS_ENV);
  wcmi_paper_results_find(NULL, found, sizeof found);
  shipped_file(want, sizeof want);
  CHECK_MSG(!strcmp(found, want), "found %s, want %s", found, want);
  setenv(WCMI_PAPER_RESULTS_ENV, "/from/env.tsv", 1);
  wcmi_paper_results_find(NULL, found, sizeof found);
  CHECK(!strcmp(found, "/from/env.tsv"));
  unsetenv(WCMI_PAPER_RESULTS_ENV);
}

int main(void) {
  RUN(test_pixels_encoder_is_the_flattened_image);
  RUN(test_pixels_encoder_refuses_mi_critics);
  RUN(test_pixels_linear_head_input_gradient_is_wt_times_residual);
  RUN(test_pixels_model_save_load_roundtrip);
  RUN(test_shipped_paper_results_match_paper_md_section_7);
  RUN(test_corrupt_paper_results_fail_with_file_and_line);
  RUN(test_missing_paper_results_name_the_file_and_the_override);
  return wt_finish();
}
