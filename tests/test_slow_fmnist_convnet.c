/* Learning check of the core on real data: a small conv net trained with Adam on 5,000
 * Fashion-MNIST training images reaches >= 80% accuracy on 1,000 test images. Skips visibly when
 * Debian's dataset-fashion-mnist is not installed. */
#include "harness.h"
#include "wcmi/data.h"
#include "wcmi/nn.h"

#include <string.h>

static wcmi_ctx ctx;

static void test_small_convnet_reaches_80_percent_on_fashion_mnist(void) {
  wcmi_dataset train = {0}, test = {0};
  wcmi_data_options o = {"fashion-mnist", NULL, 5000, 1000, 0, 1};
  if (wcmi_data_open(&ctx, &o, &train, NULL, &test)) {
    wt_skip(wcmi_errmsg(&ctx));
    return;
  }
  enum { B = 64 };
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 5);
  wcmi_net *net = wcmi_net_new(&ctx, "convnet", wcmi_shape3(1, 28, 28));
  CHECK_OK(&ctx, wcmi_net_add_conv2d(net, "layer0.0", 16, 4, 2, 1, 0));
  CHECK_OK(&ctx, wcmi_net_add_batchnorm(net, "layer0.1"));
  CHECK_OK(&ctx, wcmi_net_add_relu(net));
  CHECK_OK(&ctx, wcmi_net_add_conv2d(net, "layer1.0", 32, 4, 2, 1, 0));
  CHECK_OK(&ctx, wcmi_net_add_batchnorm(net, "layer1.1"));
  CHECK_OK(&ctx, wcmi_net_add_relu(net));
  CHECK_OK(&ctx, wcmi_net_add_flatten(net));
  CHECK_OK(&ctx, wcmi_net_add_linear(net, "fc", 10, 1));
  CHECK_OK(&ctx, wcmi_net_finalize(net, B, &rng));
  wcmi_adam_cfg cfg = wcmi_adam_defaults();
  wcmi_optim *opt = wcmi_adam_new(&ctx, &net, 1, cfg);
  wcmi_loader_config lc;
  wcmi_loader_config_default(&lc);
  lc.batch_size = B;
  lc.drop_last = 1;
  lc.seed = 2;
  wcmi_loader loader;
  CHECK_OK(&ctx, wcmi_loader_init(&ctx, &loader, &train, &lc));
  float x[B * 784], probs[B * 10], dl[B * 10];
  int32_t y[B];
  int count;
  float first = -1, last = 0;
  for (int epoch = 0; epoch < 3; epoch++) {
    wcmi_loader_start_epoch(&ctx, &loader, epoch);
    while (wcmi_loader_next(&ctx, &loader, x, y, &count) == 1) {
      const float *out = wcmi_net_forward(net, x, count, 1);
      last = wcmi_cross_entropy_forward(count, 10, out, y, probs);
      if (first < 0) first = last;
      wcmi_cross_entropy_backward(count, 10, probs, y, 1.0f, dl);
      wcmi_optim_zero_grad(opt);
      wcmi_net_backward(net, dl, WCMI_GRAD_PARAMS);
      wcmi_optim_step(opt);
    }
  }
  int correct = 0;
  for (int64_t i = 0; i < test.n; i += B) {
    int n = (int)(test.n - i < B ? test.n - i : B);
    const float *out = wcmi_net_forward(net, test.images + i * 784, n, 0);
    for (int k = 0; k < n; k++) {
      int arg = 0;
      for (int c = 1; c < 10; c++)
        if (out[k * 10 + c] > out[k * 10 + arg]) arg = c;
      correct += arg == test.labels[i + k];
    }
  }
  double acc = (double)correct / (double)test.n;
  printf("convnet: train loss %.3f -> %.3f, test accuracy %.2f%% on %lld images\n", first, last, 100 * acc,
         (long long)test.n);
  CHECK_MSG(acc >= 0.80, "test accuracy %.4f < 0.80", acc);
  wcmi_loader_free(&loader);
  wcmi_optim_free(opt);
  wcmi_net_free(net);
  wcmi_dataset_free(&train);
  wcmi_dataset_free(&test);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  RUN(test_small_convnet_reaches_80_percent_on_fashion_mnist);
  return wt_finish();
}
