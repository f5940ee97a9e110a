/* Using libwcmi directly: build the paper's encoder and MI critics, train a few DIM steps on a
 * Fashion-MNIST subset, encode a batch, and measure how much a worst-case MI attack lowers the
 * MI estimate. Build: cc quickstart.c $(pkg-config --cflags --libs wcmi)
 * Run: quickstart [DATA_DIR] (default: Debian's /usr/share/datasets/fashion-mnist). */
#include <wcmi/wcmi.h>

#include <stdio.h>
#include <stdlib.h>

#define B 32

static int fail(wcmi_ctx *ctx) {
  fprintf(stderr, "quickstart: %s\n", wcmi_errmsg(ctx));
  return 1;
}

int main(int argc, char **argv) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_dataset train = {0};
  wcmi_data_options opt = {"fashion-mnist", argc > 1 ? argv[1] : NULL, 512, 0, 0, 1};
  if (wcmi_data_open(&ctx, &opt, &train, NULL, NULL)) return fail(&ctx);

  /* Encoder + local/global critics with H = 64, for batches of up to B. */
  wcmi_model m;
  if (wcmi_model_init(&ctx, &m, "fashion-mnist", 64, WCMI_HEAD_NONE, B, 1)) return fail(&ctx);
  wcmi_dim dim;
  if (wcmi_dim_init(&ctx, &dim, &m, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, B)) return fail(&ctx);
  wcmi_net *nets[3] = {m.encoder, m.local, m.global};
  wcmi_adam_cfg acfg = wcmi_adam_defaults();
  acfg.lr = 1e-3f;
  wcmi_optim *adam = wcmi_adam_new(&ctx, nets, 3, acfg);
  if (!adam) return fail(&ctx);

  /* DIM: minimize the DV loss (maximize the MI estimate) for a few steps. */
  const int64_t D = wcmi_dataset_sample_size(&train);
  float loss = 0;
  for (int step = 0; step < 30; step++) {
    const float *x = train.images + (int64_t)(step % (train.n / B)) * B * D;
    wcmi_optim_zero_grad(adam);
    if (wcmi_dim_step(&dim, x, B, 1, 1, WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_ESTIMATOR_PARAMS, &loss, NULL))
      return fail(&ctx);
    wcmi_optim_step(adam);
  }

  /* Encode a batch. */
  float *z = malloc(sizeof(float) * B * WCMI_ZDIM);
  if (!z || wcmi_model_encode(&ctx, &m, train.images, B, z)) return fail(&ctx);

  /* MI estimate on that batch, clean and under the worst-case MI attack (PGD l-inf, eps 0.1). */
  float clean, attacked;
  if (wcmi_dim_step(&dim, train.images, B, 0, 0, 0, &clean, NULL)) return fail(&ctx);
  wcmi_pgd_cfg pgd = {WCMI_NORM_LINF, 0.1f, 0.02f, 10, 0, 0, 0};
  wcmi_attack *atk = wcmi_attack_new(&ctx, &pgd, B, D);
  float *xadv = malloc(sizeof(float) * (size_t)(B * D));
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 7);
  wcmi_objective obj = wcmi_dim_objective(&dim);
  if (!atk || !xadv || wcmi_pgd_run(atk, &obj, train.images, B, &rng, xadv, NULL)) return fail(&ctx);
  if (wcmi_dim_step(&dim, xadv, B, 0, 0, 0, &attacked, NULL)) return fail(&ctx);

  printf("{\"train_loss\": %.6g, \"z0\": [%.4f, %.4f], \"mi_clean\": %.6g, \"mi_attacked\": %.6g}\n", loss, z[0], z[1],
         wcmi_mi_estimate(dim.mi, B, dim.L, clean), wcmi_mi_estimate(dim.mi, B, dim.L, attacked));
  free(xadv);
  free(z);
  wcmi_attack_free(atk);
  wcmi_optim_free(adam);
  wcmi_dim_free(&dim);
  wcmi_model_free(&m);
  wcmi_dataset_free(&train);
  return 0;
}
