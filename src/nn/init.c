/* PyTorch default initialization of conv/linear parameters.
 * torch's kaiming_uniform_(a = sqrt(5)) gives bound = gain * sqrt(3 / fan_in) with
 * gain = sqrt(2 / (1 + 5)), i.e. 1/sqrt(fan_in); biases use the same bound. The caller computes the
 * bound; this fills w (n) with U(-bound, bound) drawn in index order, so one rng stream gives one
 * fixed set of weights. */
#include "wcmi/nn.h"

void wcmi_init_uniform(wcmi_rng *rng, float *w, int64_t n, float bound) {
  for (int64_t i = 0; i < n; i++) w[i] = wcmi_rng_uniform_range(rng, -bound, bound);
}
