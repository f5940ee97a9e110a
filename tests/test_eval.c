/* The evaluation's cascade (eval --attack strong): attacking only the samples that survived the
 * attacks before gives the same per-sample worst case as attacking every sample with each attack,
 * and each cascaded attack reports the cumulative accuracy. Deterministic attacks (no random
 * start) on an untrained encoder + linear head, with the labels set to the model's own clean
 * predictions so that every sample starts correct and the attacks have something to break. */
#include "harness.h"
#include "train/eval.h"
#include "wcmi/model.h"
#include "wcmi/nn.h"

#include <string.h>

enum { N = 96, B = 32 };

static void test_cascade_keeps_the_worst_case(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, 1);
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init_ex(&ctx, &m, "fashion-mnist", WCMI_ENCODER_BASIC, 0, WCMI_HEAD_LINEAR, B, 3));
  wcmi_dataset d;
  memset(&d, 0, sizeof d);
  CHECK_OK(&ctx, wcmi_dataset_alloc(&ctx, &d, "fashion-mnist", N, 1, 28, 28, 10));
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 11);
  for (int64_t i = 0; i < (int64_t)N * 28 * 28; i++) d.images[i] = wcmi_rng_uniform(&rng);
  /* The model's own predictions as labels: natural accuracy 1. */
  const float *logits = NULL;
  for (int b = 0; b < N; b += B) {
    const float *z = wcmi_net_forward(m.encoder, d.images + (int64_t)b * 28 * 28, B, 0);
    CHECK(z != NULL && (logits = wcmi_net_forward(m.classifier, z, B, 0)) != NULL);
    for (int i = 0; i < B; i++) {
      int arg = 0;
      for (int k = 1; k < 10; k++)
        if (logits[i * 10 + k] > logits[i * 10 + arg]) arg = k;
      d.labels[b + i] = arg;
    }
  }
  wcmi_task_cfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batch_size = B;
  /* An eps at which the attacks break most samples of the untrained model, but not all. */
  const wcmi_pgd_cfg pgd = {WCMI_NORM_LINF, 0.25f, 0.05f, 6, 0, 0, 1};
  eval_attack full[2] = {{"pgd", pgd, 0, 0}, {"apgd-ce", pgd, 1, 0}};
  eval_attack cascade[2] = {{"pgd", pgd, 0, 0}, {"apgd-ce", pgd, 1, 1}};
  eval_result rf, rc;
  wcmi_rng r1, r2;
  wcmi_rng_seed(&r1, 5);
  wcmi_rng_seed(&r2, 5);
  CHECK_OK(&ctx, eval_attacks(&ctx, &m, &d, &cfg, full, 2, &r1, &rf));
  CHECK_OK(&ctx, eval_attacks(&ctx, &m, &d, &cfg, cascade, 2, &r2, &rc));
  printf("  natural %.4f; all samples: pgd %.4f apgd %.4f worst %.4f; cascade: pgd %.4f apgd %.4f worst %.4f\n",
         rf.natural, rf.adversarial[0], rf.adversarial[1], rf.worst_case, rc.adversarial[0], rc.adversarial[1],
         rc.worst_case);
  CHECK(rf.natural == 1.0 && rc.natural == 1.0);
  /* The attacks matter here, and neither breaks everything. */
  CHECK_MSG(rf.worst_case < 0.95 && rf.worst_case > 0.05, "worst case %g says nothing", rf.worst_case);
  CHECK(rc.adversarial[0] == rf.adversarial[0]); /* the first attack sees every sample either way */
  CHECK_CLOSE(rc.worst_case, rf.worst_case, 1.5 / N, 0); /* at most one sample's float rounding */
  CHECK(rc.adversarial[1] == rc.worst_case);          /* cumulative: robust to both */
  CHECK(rc.adversarial[1] <= rc.adversarial[0]);
  wcmi_dataset_free(&d);
  wcmi_model_free(&m);
}

int main(void) {
  RUN(test_cascade_keeps_the_worst_case);
  return wt_finish();
}
