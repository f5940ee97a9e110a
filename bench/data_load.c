/* Data loading benchmark: time to load all of Fashion-MNIST (70,000 gzip'd IDX images), and the
 * time to assemble one batch of 128 (plain copy for Fashion-MNIST; crop + flip for CIFAR-shaped
 * data, and the full augmentation with jitter and rotation), with and without prefetch.
 *   bench_data_load [DATA_DIR]     (default /usr/share/datasets/fashion-mnist) */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include "wcmi/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double median3(double a, double b, double c) {
  if (a > b) { double t = a; a = b; b = t; }
  if (b > c) { double t = b; b = c; c = t; }
  return a > b ? a : b;
}

/* Mean milliseconds per batch over `epochs` passes (batch 128). */
static double ms_per_batch(wcmi_ctx *ctx, const wcmi_dataset *d, int augment, int prefetch, int epochs) {
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.augment = augment;
  cfg.prefetch = prefetch;
  wcmi_loader L;
  if (wcmi_loader_init(ctx, &L, d, &cfg)) return -1;
  float *x = wcmi_alloc(ctx, 128 * (size_t)wcmi_dataset_sample_size(d), sizeof(float));
  int32_t y[128];
  int count;
  long batches = 0;
  double t0 = wcmi_now();
  for (int e = 0; e < epochs; e++) {
    wcmi_loader_start_epoch(ctx, &L, e);
    while (wcmi_loader_next(ctx, &L, x, y, &count) == 1) batches++;
  }
  double ms = 1e3 * (wcmi_now() - t0) / (double)batches;
  wcmi_free(x);
  wcmi_loader_free(&L);
  return ms;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : NULL;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  double t[3], cpu[3];
  wcmi_dataset tr, te;
  for (int r = 0; r < 3; r++) {
    double t0 = wcmi_now(), c0 = cpu_now();
    if (wcmi_data_load(&ctx, "fashion-mnist", dir, WCMI_SPLIT_TRAIN, &tr) ||
        wcmi_data_load(&ctx, "fashion-mnist", dir, WCMI_SPLIT_TEST, &te)) {
      fprintf(stderr, "bench_data_load: %s\n", wcmi_errmsg(&ctx));
      return 1;
    }
    t[r] = wcmi_now() - t0;
    cpu[r] = cpu_now() - c0;
    if (r < 2) {
      wcmi_dataset_free(&tr);
      wcmi_dataset_free(&te);
    }
  }
  printf("fashion-mnist load (train 60000 + test 10000, gzip IDX): median of 3 = %.3f s wall (%.3f %.3f %.3f), "
         "%.3f s CPU\n",
         median3(t[0], t[1], t[2]), t[0], t[1], t[2], median3(cpu[0], cpu[1], cpu[2]));
  printf("batch 128, fashion-mnist, copy only:            %.3f ms/batch (prefetch: %.3f)\n",
         ms_per_batch(&ctx, &tr, 0, 0, 2), ms_per_batch(&ctx, &tr, 0, 1, 2));
  wcmi_dataset_free(&tr);
  wcmi_dataset_free(&te);
  /* CIFAR-shaped random images (10000 x 3x32x32), to time augmentation without the real files. */
  wcmi_dataset c;
  if (wcmi_dataset_alloc(&ctx, &c, "cifar10", 10000, 3, 32, 32, 10)) return 1;
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 1);
  for (int64_t i = 0; i < c.n * 3072; i++) c.images[i] = wcmi_rng_uniform(&rng);
  for (int64_t i = 0; i < c.n; i++) c.labels[i] = (int32_t)(i % 10);
  printf("batch 128, cifar-shaped, crop+flip:             %.3f ms/batch (prefetch: %.3f)\n",
         ms_per_batch(&ctx, &c, WCMI_AUG_CIFAR, 0, 2), ms_per_batch(&ctx, &c, WCMI_AUG_CIFAR, 1, 2));
  int all = WCMI_AUG_CIFAR | WCMI_AUG_JITTER | WCMI_AUG_ROTATE;
  printf("batch 128, cifar-shaped, crop+flip+jitter+rot:  %.3f ms/batch (prefetch: %.3f)\n",
         ms_per_batch(&ctx, &c, all, 0, 1), ms_per_batch(&ctx, &c, all, 1, 1));
  wcmi_dataset_free(&c);
  return 0;
}
