/* The classifier objective: cross-entropy of classifier(encoder(x)), for training heads and
 * Baseline-H models and for attacking them. */
#include "wcmi/train.h"

#include <math.h>
#include <string.h>

int wcmi_clf_init(wcmi_ctx *ctx, wcmi_clf *c, wcmi_model *m, int max_batch) {
  memset(c, 0, sizeof *c);
  if (!m->encoder || !m->classifier) return wcmi_fail(ctx, WCMI_EINVAL, "classifier objective: the model has no head");
  c->ctx = ctx;
  c->m = m;
  c->max_batch = max_batch;
  c->loss_weight = 1.0f;
  c->probs = wcmi_alloc(ctx, (size_t)max_batch * WCMI_NUM_CLASSES, sizeof(float));
  c->dlogits = wcmi_alloc(ctx, (size_t)max_batch * WCMI_NUM_CLASSES, sizeof(float));
  c->per_sample = wcmi_alloc(ctx, (size_t)max_batch, sizeof(float));
  if (!c->probs || !c->dlogits || !c->per_sample) {
    wcmi_clf_free(c);
    return ctx->status;
  }
  return WCMI_OK;
}

void wcmi_clf_free(wcmi_clf *c) {
  wcmi_free(c->probs);
  wcmi_free(c->dlogits);
  wcmi_free(c->per_sample);
  memset(c, 0, sizeof *c);
}

float wcmi_clf_sample_loss(int K, const float *logits, int y) {
  /* -log softmax(logits)[y] in double. When y is the argmax, log1p of the other classes' odds keeps
   * a confident sample's tiny loss (about exp(-margin)) instead of rounding 1 - p_y to 0, so
   * APGD's bookkeeping still sees such a sample's loss rise. Otherwise the max-shifted
   * log-sum-exp, which cannot overflow. */
  int arg = 0;
  for (int k = 1; k < K; k++)
    if (logits[k] > logits[arg]) arg = k;
  const double ly = logits[y];
  double s = 0;
  if (logits[arg] == logits[y]) {
    for (int k = 0; k < K; k++)
      if (k != y) s += exp((double)logits[k] - ly);
    return (float)log1p(s);
  }
  const double m = logits[arg];
  for (int k = 0; k < K; k++) s += exp((double)logits[k] - m);
  return (float)(m - ly + log(s));
}

int wcmi_clf_step(wcmi_clf *c, const float *x, const int32_t *y, int N, int enc_train, int head_train, int grads,
                  float *mean_loss, float *per_sample_loss, unsigned char *wrong, int *correct, float *dx) {
  wcmi_model *m = c->m;
  const int K = WCMI_NUM_CLASSES;
  for (int i = 0; i < N; i++)
    if (y[i] < 0 || y[i] >= K) return wcmi_fail(c->ctx, WCMI_EINVAL, "classifier: label %d of sample %d outside [0, %d)", y[i], i, K);
  const float *z = wcmi_net_forward(m->encoder, x, N, enc_train);
  const float *logits = z ? wcmi_net_forward(m->classifier, z, N, head_train) : NULL;
  if (!logits) return c->ctx->status;
  float loss = wcmi_cross_entropy_forward(N, K, logits, y, c->probs);
  if (mean_loss) *mean_loss = loss;
  int ok = 0;
  for (int i = 0; i < N; i++) {
    const float *l = logits + (int64_t)i * K;
    int arg = 0;
    for (int k = 1; k < K; k++)
      if (l[k] > l[arg]) arg = k;
    ok += arg == y[i];
    if (wrong) wrong[i] = arg != y[i];
    if (per_sample_loss) per_sample_loss[i] = wcmi_clf_sample_loss(K, l, y[i]);
  }
  if (correct) *correct = ok;
  if (!grads) return WCMI_OK;
  wcmi_cross_entropy_backward(N, K, c->probs, y, c->loss_weight, c->dlogits);
  const int enc = (grads & WCMI_CLF_ENCODER_PARAMS) != 0, input = (grads & WCMI_CLF_INPUT) != 0;
  int hwhat = ((grads & WCMI_CLF_HEAD_PARAMS) ? WCMI_GRAD_PARAMS : 0) | ((enc || input) ? WCMI_GRAD_INPUT : 0);
  int rc = hwhat ? wcmi_net_backward(m->classifier, c->dlogits, hwhat) : WCMI_OK;
  int ewhat = (enc ? WCMI_GRAD_PARAMS : 0) | (input ? WCMI_GRAD_INPUT : 0);
  if (!rc && ewhat) rc = wcmi_net_backward(m->encoder, wcmi_net_input_grad(m->classifier), ewhat);
  if (!rc && input) {
    wcmi_shape in = wcmi_net_in_shape(m->encoder);
    memcpy(dx, wcmi_net_input_grad(m->encoder), (size_t)N * (size_t)wcmi_shape_numel(&in) * sizeof(float));
  }
  return rc;
}

static int clf_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  wcmi_clf *c = user;
  return wcmi_clf_step(c, x, c->labels, N, 0, 0, grad ? WCMI_CLF_INPUT : 0, NULL, loss, succ, NULL, grad);
}

wcmi_objective wcmi_clf_objective(wcmi_clf *c) { return (wcmi_objective){1, clf_eval, c}; }
