/* libFuzzer target for the SVHN MAT level-5 reader (whole input = one .mat file). */
#include "wcmi/data.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  if (wcmi_svhn_parse(&ctx, "train_32x32.mat", data, size, &d) == WCMI_OK) {
    volatile float acc = 0;
    for (int64_t i = 0; i < d.n * 3072; i++) acc += d.images[i];
    (void)acc; /* volatile keeps every load; this use silences clang's set-but-unused warning */
    for (int64_t i = 0; i < d.n; i++)
      if (d.labels[i] < 0 || d.labels[i] > 9) __builtin_trap();
    wcmi_dataset_free(&d);
  }
  return 0;
}
