/* Softmax cross-entropy (torch.nn.functional.cross_entropy, reduction='mean') over logits (N, K).
 * Labels are trusted to lie in [0, K): callers validate them where data enters the program. */
#include <math.h>

#include "wcmi/nn.h"

/* For each row: m = max_k l_k, lse = m + log(sum_k exp(l_k - m)); loss = lse - l_label.
 * Shifting by the max keeps every exponent <= 0, so nothing overflows even for logits ~1e4, and
 * the largest term is exactly 1 so the log never sees 0. Rows are summed in order, in double. */
float wcmi_cross_entropy_forward(int N, int K, const float *logits, const int32_t *labels, float *probs) {
  double total = 0.0;
  for (int i = 0; i < N; i++) {
    const float *l = logits + (size_t)i * (size_t)K;
    float *p = probs + (size_t)i * (size_t)K;
    float m = l[0];
    for (int k = 1; k < K; k++) m = l[k] > m ? l[k] : m;
    double sum = 0.0;
    for (int k = 0; k < K; k++) sum += exp((double)l[k] - (double)m);
    const double inv = 1.0 / sum;
    for (int k = 0; k < K; k++) p[k] = (float)(exp((double)l[k] - (double)m) * inv);
    total += log(sum) - ((double)l[labels[i]] - (double)m);
  }
  return N > 0 ? (float)(total / (double)N) : 0.0f;
}

/* dlogits = scale * (probs - onehot(label)) / N, overwritten. */
void wcmi_cross_entropy_backward(int N, int K, const float *probs, const int32_t *labels, float scale,
                                 float *dlogits) {
  if (N <= 0) return;
  const float f = (float)((double)scale / (double)N);
  for (int i = 0; i < N; i++) {
    const float *p = probs + (size_t)i * (size_t)K;
    float *d = dlogits + (size_t)i * (size_t)K;
    for (int k = 0; k < K; k++) d[k] = f * p[k];
    d[labels[i]] = f * (p[labels[i]] - 1.0f);
  }
}
