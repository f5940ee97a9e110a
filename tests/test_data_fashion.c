/* The real Fashion-MNIST files (Debian's dataset-fashion-mnist) when installed: counts, balanced
 * classes, published pixel statistics, and loading speed. Skips visibly when the files are absent. */
#include "harness.h"
#include "wcmi/data.h"

#include <sys/stat.h>

static const char *DIR_ = "/usr/share/datasets/fashion-mnist";

static void test_fashion_mnist_real_files(void) {
  struct stat st;
  if (stat(DIR_, &st) != 0) {
    wt_skip("/usr/share/datasets/fashion-mnist not found (apt-get install dataset-fashion-mnist)");
    return;
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset tr, te;
  double t0 = wcmi_now();
  CHECK_OK(&ctx, wcmi_data_load(&ctx, "fashion-mnist", NULL, WCMI_SPLIT_TRAIN, &tr));
  CHECK_OK(&ctx, wcmi_data_load(&ctx, "fashion-mnist", NULL, WCMI_SPLIT_TEST, &te));
  double secs = wcmi_now() - t0;
  printf("  loaded 70000 Fashion-MNIST images in %.3f s\n", secs);
  CHECK(tr.n == 60000 && te.n == 10000 && tr.c == 1 && tr.h == 28 && tr.w == 28);
  wcmi_dataset_stats s;
  wcmi_dataset_compute_stats(&tr, &s);
  for (int k = 0; k < 10; k++) CHECK(s.label_counts[k] == 6000);
  /* Widely quoted training-set statistics: mean 0.2860, std 0.3530. */
  CHECK_CLOSE(s.pixel_mean, 0.2860, 5e-4, 0);
  CHECK_CLOSE(s.pixel_std, 0.3530, 5e-4, 0);
  wcmi_dataset_free(&tr);
  wcmi_dataset_free(&te);
}

int main(void) {
  RUN(test_fashion_mnist_real_files);
  return wt_finish();
}
