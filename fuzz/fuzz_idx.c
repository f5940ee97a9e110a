/* libFuzzer target for the IDX reader. The input is split into an images file and a labels file:
 * the first byte (mod 64) chooses the labels file's length from the end of the input, so the
 * fuzzer can shape both (raw or gzip). */
#include "wcmi/data.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t lab = data[0] % 64;
  const uint8_t *rest = data + 1;
  size_t n = size - 1;
  if (lab > n) lab = n;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset d;
  if (wcmi_idx_parse(&ctx, "mnist", "images", rest, n - lab, "labels", rest + (n - lab), lab, &d) == WCMI_OK) {
    /* Touch every value so ASan sees any out-of-bounds result. */
    volatile float acc = 0;
    for (int64_t i = 0; i < d.n * d.h * d.w; i++) acc += d.images[i];
    (void)acc; /* volatile keeps every load; this use silences clang's set-but-unused warning */
    for (int64_t i = 0; i < d.n; i++)
      if (d.labels[i] < 0 || d.labels[i] > 9) __builtin_trap();
    wcmi_dataset_free(&d);
  }
  return 0;
}
