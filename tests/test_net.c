/* The sequential container, the residual block, the input normalization and the optimizers.
 * Gradient checks compare the float analytic backward with central differences of a
 * double-precision reference forward written here, independent of the library's kernels. */
#include "harness.h"
#include "wcmi/nn.h"
#include "nn/net_internal.h"

#include <string.h>

static wcmi_ctx ctx;

static void fill_uniform(wcmi_rng *r, float *x, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; i++) x[i] = wcmi_rng_uniform_range(r, lo, hi);
}

/* ---- double reference of the residual block over (N, C, S) --------------------------------- */
typedef struct {
  int N, C, H, S, train;
  const double *w0, *bn_g, *bn_b, *bn_rm, *bn_rv, *w3, *b3, *ln_g, *ln_b, *wsc;
} ref_block;

static void ref_conv1x1(int N, int C, int O, int S, const double *x, const double *w, const double *b, double *y) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++)
      for (int s = 0; s < S; s++) {
        double acc = b ? b[o] : 0.0;
        for (int c = 0; c < C; c++) acc += w[o * C + c] * x[((size_t)n * C + c) * S + s];
        y[((size_t)n * O + o) * S + s] = acc;
      }
}

/* Returns sum(y * R) for the block output y. */
static double ref_block_loss(const ref_block *p, const double *x, const double *R) {
  int N = p->N, H = p->H, S = p->S;
  size_t nh = (size_t)N * H * S;
  double *a = calloc(nh, sizeof *a), *d = calloc(nh, sizeof *d), *sc = calloc(nh, sizeof *sc);
  ref_conv1x1(N, p->C, H, S, x, p->w0, NULL, a);
  for (int h = 0; h < H; h++) {
    double mean, var;
    if (p->train) {
      double s1 = 0, s2 = 0;
      for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) s1 += a[((size_t)n * H + h) * S + s];
      mean = s1 / (N * S);
      for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
          double t = a[((size_t)n * H + h) * S + s] - mean;
          s2 += t * t;
        }
      var = s2 / (N * S);
    } else {
      mean = p->bn_rm[h];
      var = p->bn_rv[h];
    }
    for (int n = 0; n < N; n++)
      for (int s = 0; s < S; s++) {
        double *v = &a[((size_t)n * H + h) * S + s];
        *v = (*v - mean) / sqrt(var + 1e-5) * p->bn_g[h] + p->bn_b[h];
        if (*v < 0) *v = 0;
      }
  }
  ref_conv1x1(N, H, H, S, a, p->w3, p->b3, d);
  ref_conv1x1(N, p->C, H, S, x, p->wsc, NULL, sc);
  double loss = 0;
  for (int n = 0; n < N; n++)
    for (int s = 0; s < S; s++) {
      double s1 = 0, s2 = 0;
      for (int h = 0; h < H; h++) s1 += d[((size_t)n * H + h) * S + s] + sc[((size_t)n * H + h) * S + s];
      double mean = s1 / H;
      for (int h = 0; h < H; h++) {
        double t = d[((size_t)n * H + h) * S + s] + sc[((size_t)n * H + h) * S + s] - mean;
        s2 += t * t;
      }
      double rstd = 1.0 / sqrt(s2 / H + 1e-5);
      for (int h = 0; h < H; h++) {
        size_t i = ((size_t)n * H + h) * S + s;
        double y = (d[i] + sc[i] - mean) * rstd * p->ln_g[h] + p->ln_b[h];
        loss += y * R[i];
      }
    }
  free(a);
  free(d);
  free(sc);
  return loss;
}

static double *to_double(const float *x, int64_t n) {
  double *d = malloc((size_t)n * sizeof *d);
  for (int64_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

/* Checks every parameter and the input of a resblock net against the double reference.
 * Tolerance: |analytic - numeric| <= 2e-3 + 2e-3 * |numeric| (float forward, eps = 1e-4 in double). */
/* grad_in_output: the net is built with wcmi_net_set_grad_in_output and dy is passed in the output
 * buffer; 1: the block keeps its BN input in that buffer and recomputes it there in backward (forced:
 * by default only maps over NET_RB_RECOMPUTE_MIN_FLOATS do), 2: the default for this small map, a
 * buffer of its own. */
static void check_resblock(int train, int C, int H, int grad_in_output) {
  const int N = 4, h = 2, w = 2, S = h * w;
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 11 + train);
  wcmi_net *net = wcmi_net_new(&ctx, "dim_local", wcmi_shape3(C, h, w));
  CHECK_OK(&ctx, wcmi_net_add_resblock(net, "", H));
  if (grad_in_output) CHECK_OK(&ctx, wcmi_net_set_grad_in_output(net));
  if (grad_in_output == 1) net->rb_recompute_min_floats = 0;
  CHECK_OK(&ctx, wcmi_net_finalize(net, N, &rng));
  CHECK_MSG(net->layers[0].rb->a_in_output == (grad_in_output == 1), "BN input in the output buffer: %d",
            net->layers[0].rb->a_in_output);
  /* Perturb every parameter so no symmetry (BN gamma 1, LN gamma 1) hides a bug. */
  for (int i = 0; i < wcmi_net_num_params(net); i++) {
    wcmi_param *p = wcmi_net_param(net, i);
    if (p->kind == WCMI_PARAM_COUNTER) continue;
    for (int64_t j = 0; j < wcmi_shape_numel(&p->shape); j++)
      p->data[j] = strstr(p->name, "running_var") || strstr(p->name, ".1.weight") /* BN/LN scales */
                       ? wcmi_rng_uniform_range(&rng, 0.5f, 1.5f)
                       : wcmi_rng_uniform_range(&rng, -0.9f, 0.9f);
  }
  float x[4 * 6 * 4], R[4 * 6 * 4]; /* C, H <= 6 */
  fill_uniform(&rng, x, N * C * S, -1, 1);
  fill_uniform(&rng, R, N * H * S, -1, 1);
  /* Eval mode must not move running stats, so snapshot them before the float forward. */
  double *ref_rm = to_double(wcmi_net_find_param(net, "dim_local.block_nonlinear.1.running_mean")->data, H);
  double *ref_rv = to_double(wcmi_net_find_param(net, "dim_local.block_nonlinear.1.running_var")->data, H);
  const float *y = wcmi_net_forward(net, x, N, train);
  CHECK(y != NULL);
  if (!y) return;
  double fl = 0; /* sum(y * R), read before a backward may reuse y's buffer */
  for (int i = 0; i < N * H * S; i++) fl += (double)y[i] * R[i];
  wcmi_net_zero_grad(net);
  if (grad_in_output) {
    CHECK(wcmi_net_backward(net, R, WCMI_GRAD_BOTH) == WCMI_EINVAL); /* dy elsewhere: refused */
    float *dy = wcmi_net_output_for_grad(net);
    CHECK(dy == y);
    memcpy(dy, R, (size_t)N * H * S * sizeof *dy);
    CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_BOTH));
  } else {
    CHECK_OK(&ctx, wcmi_net_backward(net, R, WCMI_GRAD_BOTH));
  }

  const char *names[] = {"block_nonlinear.0.weight", "block_nonlinear.1.weight", "block_nonlinear.1.bias",
                         "block_nonlinear.3.weight", "block_nonlinear.3.bias", "block_ln.1.weight",
                         "block_ln.1.bias", "linear_shortcut.weight"};
  double *pd[8];
  int64_t pn[8];
  float *pg[8];
  for (int k = 0; k < 8; k++) {
    char full[128];
    snprintf(full, sizeof full, "dim_local.%s", names[k]);
    wcmi_param *p = wcmi_net_find_param(net, full);
    CHECK_MSG(p != NULL, "missing parameter %s", full);
    if (!p) return;
    pn[k] = wcmi_shape_numel(&p->shape);
    pd[k] = to_double(p->data, pn[k]);
    pg[k] = p->grad;
  }
  double *xd = to_double(x, N * C * S), *Rd = to_double(R, N * H * S);
  ref_block rb = {N, C, H, S, train, pd[0], pd[1], pd[2], ref_rm, ref_rv, pd[3], pd[4], pd[5], pd[6], pd[7]};
  /* Forward value check: sum(y * R) float vs double. */
  CHECK_CLOSE(fl, ref_block_loss(&rb, xd, Rd), 1e-4, 1e-4);
  const double eps = 1e-4;
  int bad = 0;
  for (int k = -1; k < 8; k++) {
    double *v = k < 0 ? xd : pd[k];
    int64_t n = k < 0 ? N * C * S : pn[k];
    const float *an = k < 0 ? wcmi_net_input_grad(net) : pg[k];
    for (int64_t i = 0; i < n; i++) {
      double keep = v[i];
      v[i] = keep + eps;
      double lp = ref_block_loss(&rb, xd, Rd);
      v[i] = keep - eps;
      double lm = ref_block_loss(&rb, xd, Rd);
      v[i] = keep;
      double num = (lp - lm) / (2 * eps);
      if (fabs(an[i] - num) > 2e-3 + 2e-3 * fabs(num) && bad++ < 5)
        wt_fail(__FILE__, __LINE__, "resblock %s%s grad %s[%lld]: analytic %.6g numeric %.6g",
                train ? "train" : "eval", grad_in_output ? " (grad in output)" : "", k < 0 ? "input" : names[k],
                (long long)i, an[i], num);
    }
  }
  CHECK(bad == 0);
  for (int k = 0; k < 8; k++) free(pd[k]);
  free(xd);
  free(Rd);
  free(ref_rm);
  free(ref_rv);
  wcmi_net_free(net);
}

/* C < H as in the paper; C > H too (conv0's input gradient is then wider than the block's maps; it is
 * added to dx directly). Each also with the gradient passed in the output buffer, with the BN input
 * kept there and recomputed, and in a buffer of its own. */
static void test_resblock_gradcheck_train_mode(void) {
  for (int g = 0; g < 3; g++) {
    check_resblock(1, 3, 5, g);
    check_resblock(1, 6, 3, g);
  }
}
static void test_resblock_gradcheck_eval_mode(void) {
  for (int g = 0; g < 3; g++) {
    check_resblock(0, 3, 5, g);
    check_resblock(0, 6, 3, g);
  }
}

static void test_resblock_shortcut_init_is_near_identity(void) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 1);
  wcmi_net *net = wcmi_net_new(&ctx, "dim_global", wcmi_shape1(6));
  CHECK_OK(&ctx, wcmi_net_add_view_map(net));
  CHECK_OK(&ctx, wcmi_net_add_resblock(net, "", 8));
  CHECK_OK(&ctx, wcmi_net_finalize(net, 2, &rng));
  wcmi_param *sc = wcmi_net_find_param(net, "dim_global.linear_shortcut.weight");
  CHECK(sc && sc->shape.ndim == 4 && sc->shape.d[0] == 8 && sc->shape.d[1] == 6);
  for (int o = 0; o < 8; o++)
    for (int i = 0; i < 6; i++) {
      float v = sc->data[o * 6 + i];
      if (o == i) CHECK(v == 1.0f);
      else CHECK(fabsf(v) <= 0.01f);
    }
  CHECK(wcmi_net_find_param(net, "dim_global.block_ln.1.weight")->data[3] == 1.0f);
  CHECK(wcmi_net_find_param(net, "dim_global.block_nonlinear.1.running_var")->data[0] == 1.0f);
  wcmi_net_free(net);
}

/* ---- normalize layer: clamp to [0,1] then (x - mean) / std ----------------------------------- */
static void test_normalize_forward_and_gradient(void) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 5);
  const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2023f, 0.1994f, 0.2010f};
  wcmi_net *net = wcmi_net_new(&ctx, "encoder", wcmi_shape3(3, 2, 2));
  CHECK_OK(&ctx, wcmi_net_add_normalize(net, 3, mean, std));
  CHECK_OK(&ctx, wcmi_net_finalize(net, 2, &rng));
  float x[24];
  fill_uniform(&rng, x, 24, -0.5f, 1.5f);
  x[0] = 0.0f; /* boundaries pass the gradient, as torch.clamp does */
  x[1] = 1.0f;
  const float *y = wcmi_net_forward(net, x, 2, 1);
  float dy[24];
  for (int i = 0; i < 24; i++) dy[i] = 1.0f;
  CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_INPUT));
  const float *dx = wcmi_net_input_grad(net);
  for (int i = 0; i < 24; i++) {
    int c = (i / 4) % 3;
    double cl = x[i] < 0 ? 0 : x[i] > 1 ? 1 : x[i];
    CHECK_CLOSE(y[i], (cl - mean[c]) / std[c], 1e-5, 1e-5);
    double g = (x[i] >= 0 && x[i] <= 1) ? 1.0 / std[c] : 0.0;
    CHECK_CLOSE(dx[i], g, 1e-5, 1e-5);
  }
  wcmi_net_free(net);
}

/* ---- backward modes ------------------------------------------------------------------------- */
static wcmi_net *small_convnet(uint64_t seed, int max_batch) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, seed);
  wcmi_net *net = wcmi_net_new(&ctx, "encoder", wcmi_shape3(1, 8, 8));
  wcmi_net_add_conv2d(net, "layer0.0", 4, 4, 2, 1, 0);
  wcmi_net_add_batchnorm(net, "layer0.1");
  wcmi_net_add_relu(net);
  wcmi_net_add_flatten(net);
  wcmi_net_add_linear(net, "layer4.0", 6, 1);
  wcmi_net_add_dropout(net, 0.25f);
  wcmi_net_add_batchnorm(net, "layer4.1");
  wcmi_net_add_relu(net);
  wcmi_net_add_linear(net, "layer5", 3, 1);
  if (wcmi_net_finalize(net, max_batch, &rng)) {
    wcmi_net_free(net);
    return NULL;
  }
  return net;
}

static void test_backward_computes_only_what_is_asked(void) {
  wcmi_net *net = small_convnet(3, 4);
  CHECK(net != NULL);
  if (!net) return;
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 9);
  float x[4 * 64], dy[4 * 3];
  fill_uniform(&rng, x, 4 * 64, 0, 1);
  fill_uniform(&rng, dy, 12, -1, 1);
  int64_t np = 0;
  for (int i = 0; i < wcmi_net_num_params(net); i++)
    if (wcmi_net_param(net, i)->kind == WCMI_PARAM_TRAINABLE) np += wcmi_shape_numel(&wcmi_net_param(net, i)->shape);
  wcmi_param *first = wcmi_net_param(net, 0);
  float *g_both = malloc((size_t)np * sizeof(float)), dx_both[4 * 64];
  wcmi_rng drop;
  wcmi_rng_seed(&drop, 77);
  wcmi_net_set_rng(net, &drop);
  wcmi_net_forward(net, x, 4, 1);
  wcmi_net_zero_grad(net);
  CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_BOTH));
  memcpy(g_both, first->grad, (size_t)np * sizeof(float));
  memcpy(dx_both, wcmi_net_input_grad(net), sizeof dx_both);

  wcmi_net_zero_grad(net);
  CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_PARAMS));
  CHECK(memcmp(g_both, first->grad, (size_t)np * sizeof(float)) == 0);

  wcmi_net_zero_grad(net);
  memset((float *)wcmi_net_input_grad(net), 0, sizeof dx_both);
  CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_INPUT));
  CHECK(memcmp(dx_both, wcmi_net_input_grad(net), sizeof dx_both) == 0);
  double gsum = 0;
  for (int64_t i = 0; i < np; i++) gsum += fabs(first->grad[i]);
  CHECK_MSG(gsum == 0.0, "input-only backward touched parameter gradients (sum |g| = %g)", gsum);
  free(g_both);
  wcmi_net_free(net);
}

/* In eval mode an input-only backward runs BN + ReLU as one fused pass; asking for parameter
 * gradients too takes the unfused kernels. The input gradients must agree bit for bit, including a
 * net whose very first layer is the BN (the fused pass then writes the net's input gradient). */
static void test_eval_input_gradient_same_with_fused_bn_relu(void) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 5);
  wcmi_net *nets[2] = {small_convnet(4, 4), wcmi_net_new(&ctx, "bnfirst", wcmi_shape3(3, 4, 4))};
  wcmi_net_add_batchnorm(nets[1], "bn");
  wcmi_net_add_relu(nets[1]);
  wcmi_net_add_flatten(nets[1]);
  wcmi_net_add_linear(nets[1], "fc", 3, 1);
  CHECK_OK(&ctx, wcmi_net_finalize(nets[1], 4, &rng));
  for (int k = 0; k < 2; k++) {
    wcmi_net *net = nets[k];
    CHECK(net != NULL);
    if (!net) continue;
    const int nx = k == 0 ? 4 * 64 : 4 * 48; /* (1, 8, 8) and (3, 4, 4) inputs */
    float x[4 * 64], dy[4 * 3], dx_both[4 * 64];
    fill_uniform(&rng, x, nx, -0.5f, 1.0f);
    fill_uniform(&rng, dy, 12, -1, 1);
    wcmi_net_forward(net, x, 4, 1); /* moves the running statistics away from 0 / 1 */
    wcmi_net_forward(net, x, 4, 0);
    wcmi_net_zero_grad(net);
    CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_BOTH));
    memcpy(dx_both, wcmi_net_input_grad(net), (size_t)nx * sizeof(float));
    memset((float *)wcmi_net_input_grad(net), 0, (size_t)nx * sizeof(float));
    CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_INPUT));
    CHECK(memcmp(dx_both, wcmi_net_input_grad(net), (size_t)nx * sizeof(float)) == 0);
    double sum = 0;
    for (int i = 0; i < nx; i++) sum += fabs(dx_both[i]);
    CHECK_MSG(sum > 0, "input gradient is all zero (net %d)", k);
    wcmi_net_free(net);
  }
}

/* wcmi_net_set_relu_in_place: ReLUs after BN (fused into the BN's pass), conv and linear layers
 * overwrite those layers' outputs. Outputs, parameter gradients and input gradients must be
 * bit-identical to the same net without it, in train mode and in eval mode (there also the fused
 * eval BN+ReLU input-only backward), and the net must keep fewer buffers: the ReLU shares the
 * previous layer's output. */
static wcmi_net *relu_net(int in_place) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 31);
  wcmi_net *net = wcmi_net_new(&ctx, "encoder", wcmi_shape3(2, 8, 8));
  wcmi_net_add_conv2d(net, "c0", 4, 4, 2, 1, 0);
  wcmi_net_add_batchnorm(net, "b0");
  wcmi_net_add_relu(net);
  wcmi_net_add_conv2d(net, "c1", 5, 3, 1, 1, 1);
  wcmi_net_add_relu(net);
  wcmi_net_add_flatten(net);
  wcmi_net_add_linear(net, "l0", 7, 1);
  wcmi_net_add_relu(net);
  wcmi_net_add_linear(net, "l1", 3, 1);
  if (in_place) CHECK_OK(&ctx, wcmi_net_set_relu_in_place(net));
  CHECK_OK(&ctx, wcmi_net_finalize(net, 4, &rng));
  CHECK(wcmi_net_set_relu_in_place(net) == WCMI_EINVAL); /* too late after finalize */
  return net;
}

static void test_relu_in_place_changes_nothing_but_memory(void) {
  wcmi_net *a = relu_net(0), *b = relu_net(1);
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 32);
  float x[4 * 128], dy[4 * 3];
  fill_uniform(&rng, x, 4 * 128, -1, 1);
  fill_uniform(&rng, dy, 12, -1, 1);
  for (int pass = 0; pass < 3; pass++) {
    const int train = pass == 0, what = pass == 2 ? WCMI_GRAD_INPUT : WCMI_GRAD_BOTH;
    const float *ya = wcmi_net_forward(a, x, 4, train), *yb = wcmi_net_forward(b, x, 4, train);
    CHECK(ya && yb && memcmp(ya, yb, 12 * sizeof(float)) == 0);
    /* the ReLUs share their producers' outputs only in b */
    CHECK(wcmi_net_layer_output(a, 1, NULL) != wcmi_net_layer_output(a, 2, NULL));
    CHECK(wcmi_net_layer_output(b, 1, NULL) == wcmi_net_layer_output(b, 2, NULL));
    CHECK(wcmi_net_layer_output(b, 3, NULL) == wcmi_net_layer_output(b, 4, NULL));
    wcmi_net_zero_grad(a), wcmi_net_zero_grad(b);
    CHECK_OK(&ctx, wcmi_net_backward(a, dy, what));
    CHECK_OK(&ctx, wcmi_net_backward(b, dy, what));
    CHECK_MSG(memcmp(wcmi_net_input_grad(a), wcmi_net_input_grad(b), 4 * 128 * sizeof(float)) == 0,
              "pass %d: input gradients differ", pass);
    for (int i = 0; i < wcmi_net_num_params(a); i++) {
      wcmi_param *pa = wcmi_net_param(a, i), *pb = wcmi_net_param(b, i);
      if (pa->kind != WCMI_PARAM_TRAINABLE) continue;
      CHECK_MSG(memcmp(pa->grad, pb->grad, (size_t)wcmi_shape_numel(&pa->shape) * sizeof(float)) == 0,
                "pass %d: gradient of %s differs", pass, pa->name);
      CHECK_MSG(memcmp(pa->data, pb->data, (size_t)wcmi_shape_numel(&pa->shape) * sizeof(float)) == 0,
                "pass %d: %s differs", pass, pa->name);
    }
  }
  wcmi_net_free(a);
  wcmi_net_free(b);
}

static void test_param_names_follow_pytorch(void) {
  wcmi_net *net = small_convnet(1, 2);
  CHECK(net != NULL);
  if (!net) return;
  const char *expect[] = {"encoder.layer0.0.weight", "encoder.layer0.1.weight", "encoder.layer0.1.bias",
                          "encoder.layer0.1.running_mean", "encoder.layer0.1.running_var",
                          "encoder.layer0.1.num_batches_tracked", "encoder.layer4.0.weight", "encoder.layer4.0.bias",
                          "encoder.layer5.weight"};
  for (size_t i = 0; i < sizeof expect / sizeof *expect; i++)
    CHECK_MSG(wcmi_net_find_param(net, expect[i]) != NULL, "missing %s", expect[i]);
  CHECK(wcmi_net_find_param(net, "encoder.layer0.0.bias") == NULL);
  CHECK(wcmi_net_find_param(net, "encoder.layer0.1.num_batches_tracked")->kind == WCMI_PARAM_COUNTER);
  wcmi_net_free(net);
}

static void test_shape_errors_name_the_layer(void) {
  wcmi_net *net = wcmi_net_new(&ctx, "encoder", wcmi_shape3(1, 28, 28));
  CHECK(wcmi_net_add_linear(net, "layer4.0", 10, 1) == WCMI_EINVAL);
  CHECK_MSG(strstr(ctx.msg, "encoder.layer4.0") != NULL, "message: %s", ctx.msg);
  CHECK(wcmi_net_add_conv2d(net, "layer0.0", 4, 40, 1, 0, 0) == WCMI_EINVAL);
  CHECK_MSG(strstr(ctx.msg, "encoder.layer0.0") != NULL, "message: %s", ctx.msg);
  CHECK(wcmi_net_num_layers(net) == 0);
  CHECK_OK(&ctx, wcmi_net_add_conv2d(net, "layer0.0", 4, 4, 2, 1, 0));
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 1);
  CHECK_OK(&ctx, wcmi_net_finalize(net, 2, &rng));
  float x[3 * 784] = {0};
  CHECK(wcmi_net_forward(net, x, 3, 0) == NULL);
  CHECK_MSG(strstr(ctx.msg, "batch 3") != NULL, "message: %s", ctx.msg);
  CHECK(wcmi_net_add_relu(net) != WCMI_OK);
  wcmi_net_free(net);
}

/* ---- optimizers ----------------------------------------------------------------------------- */
static wcmi_net *one_linear(float w0, float b0) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 1);
  wcmi_net *net = wcmi_net_new(&ctx, "m", wcmi_shape1(1));
  wcmi_net_add_linear(net, "fc", 1, 1);
  wcmi_net_finalize(net, 1, &rng);
  wcmi_net_find_param(net, "m.fc.weight")->data[0] = w0;
  wcmi_net_find_param(net, "m.fc.bias")->data[0] = b0;
  return net;
}

/* First Adam step: m = (1-b1) g, v = (1-b2) g^2, so p1 = p0 - lr * g / (|g| + eps) exactly (up to
 * rounding). With weight decay the gradient is g + wd * p0. Second step checked against the
 * recurrences written out in double. */
static void test_adam_step_matches_closed_form(void) {
  wcmi_net *net = one_linear(0.5f, -0.25f);
  wcmi_adam_cfg cfg = wcmi_adam_defaults();
  cfg.lr = 0.01f;
  cfg.weight_decay = 0.1f;
  wcmi_optim *opt = wcmi_adam_new(&ctx, &net, 1, cfg);
  CHECK(opt != NULL);
  wcmi_param *w = wcmi_net_find_param(net, "m.fc.weight");
  double p = 0.5, m = 0, v = 0;
  const double grads[2] = {0.3, -0.7};
  for (int t = 1; t <= 2; t++) {
    w->grad[0] = (float)grads[t - 1];
    wcmi_optim_step(opt);
    double g = grads[t - 1] + 0.1 * p;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    double mh = m / (1 - pow(0.9, t)), vh = v / (1 - pow(0.999, t));
    p -= 0.01 * mh / (sqrt(vh) + 1e-8);
    CHECK_CLOSE(w->data[0], p, 1e-6, 1e-6);
  }
  CHECK(wcmi_optim_steps(opt) == 2);
  /* State is exposed by name for checkpoints. */
  int found = 0;
  for (int i = 0; i < wcmi_optim_num_state(opt); i++)
    if (!strcmp(wcmi_optim_state(opt, i)->name, "optim.m.fc.weight.exp_avg")) {
      found = 1;
      CHECK_CLOSE(wcmi_optim_state(opt, i)->data[0], m, 1e-7, 1e-6);
    }
  CHECK(found);
  wcmi_optim_free(opt);
  wcmi_net_free(net);
}

static void test_sgd_momentum_matches_closed_form(void) {
  wcmi_net *net = one_linear(1.0f, 0.0f);
  wcmi_optim *opt = wcmi_sgd_new(&ctx, &net, 1, (wcmi_sgd_cfg){0.1f, 0.9f, 0.01f});
  wcmi_param *w = wcmi_net_find_param(net, "m.fc.weight");
  /* step 1: g = 2 + 0.01*1 = 2.01, buf = 2.01, p = 1 - 0.201 = 0.799
   * step 2: g = 2 + 0.01*0.799 = 2.00799, buf = 0.9*2.01 + 2.00799 = 3.81699, p = 0.799 - 0.381699 */
  w->grad[0] = 2.0f;
  wcmi_optim_step(opt);
  CHECK_CLOSE(w->data[0], 0.799, 1e-6, 0);
  wcmi_optim_step(opt);
  CHECK_CLOSE(w->data[0], 0.799 - 0.381699, 1e-6, 0);
  wcmi_optim_free(opt);
  wcmi_net_free(net);
}

static void test_steplr_schedule(void) {
  wcmi_steplr s = {0.1f, 0.5f, 10};
  CHECK_CLOSE(wcmi_steplr_lr(&s, 0), 0.1, 1e-7, 0); /* float lr */
  CHECK_CLOSE(wcmi_steplr_lr(&s, 9), 0.1, 1e-7, 0); /* float lr */
  CHECK_CLOSE(wcmi_steplr_lr(&s, 10), 0.05, 1e-7, 0); /* float lr */
  CHECK_CLOSE(wcmi_steplr_lr(&s, 25), 0.025, 1e-7, 0); /* float lr */
}

#define M_PI_LOCAL 3.14159265358979323846
/* Warm-up then cosine, as torch's LinearLR + CosineAnnealingLR stepped per batch; constant is base. */
static void test_cosine_schedule(void) {
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_CONSTANT, 0.1f, 7, 2, 10), 0.1, 1e-7, 0);
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 0, 4, 24), 0.025, 1e-7, 0);   /* warm-up: (0+1)/4 */
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 3, 4, 24), 0.1, 1e-7, 0);     /* last warm-up step: base */
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 4, 4, 24), 0.1, 1e-7, 0);     /* cosine starts at base */
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 14, 4, 24), 0.05, 1e-7, 0);   /* half-way: base / 2 */
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 23, 4, 24), 0.1 * 0.5 * (1 + cos(M_PI_LOCAL * 19 / 20)), 1e-8, 0);
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 99, 4, 24), wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 23, 4, 24), 0, 0);
  CHECK_CLOSE(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 0, 0, 24), 0.1, 1e-7, 0);     /* no warm-up */
  CHECK(wcmi_lr_at(WCMI_LR_COSINE, 0.1f, 5, 0, 0) == 0.1f);                  /* no steps: base */
}

/* ---- learning and determinism ---------------------------------------------------------------- */
/* Two interleaved spirals are not linearly separable; an MLP must fit all 200 points. */
static void make_toy(float *x, int32_t *y, int n) {
  for (int i = 0; i < n; i++) {
    int c = i % 2;
    double t = 0.5 + 3.0 * (double)(i / 2) / (n / 2);
    double s = c ? -1 : 1;
    x[2 * i] = (float)(s * t * cos(t) / 3.5);
    x[2 * i + 1] = (float)(s * t * sin(t) / 3.5);
    y[i] = c;
  }
}

static wcmi_net *toy_mlp(uint64_t seed) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, seed);
  wcmi_net *net = wcmi_net_new(&ctx, "classifier", wcmi_shape1(2));
  wcmi_net_add_linear(net, "layer0.0", 64, 1);
  wcmi_net_add_relu(net);
  wcmi_net_add_linear(net, "layer1.0", 64, 1);
  wcmi_net_add_relu(net);
  wcmi_net_add_linear(net, "layer2.0", 2, 1);
  wcmi_net_finalize(net, 200, &rng);
  return net;
}

static float train_toy(wcmi_net *net, int steps, int *correct) {
  float x[400], probs[400], dl[400];
  int32_t y[200];
  make_toy(x, y, 200);
  wcmi_adam_cfg cfg = wcmi_adam_defaults();
  cfg.lr = 0.01f;
  wcmi_optim *opt = wcmi_adam_new(&ctx, &net, 1, cfg);
  float loss = 0;
  for (int s = 0; s < steps; s++) {
    const float *out = wcmi_net_forward(net, x, 200, 1);
    loss = wcmi_cross_entropy_forward(200, 2, out, y, probs);
    wcmi_cross_entropy_backward(200, 2, probs, y, 1.0f, dl);
    wcmi_optim_zero_grad(opt);
    wcmi_net_backward(net, dl, WCMI_GRAD_PARAMS);
    wcmi_optim_step(opt);
  }
  const float *out = wcmi_net_forward(net, x, 200, 0);
  *correct = 0;
  for (int i = 0; i < 200; i++) *correct += (out[2 * i + 1] > out[2 * i]) == y[i];
  wcmi_optim_free(opt);
  return loss;
}

static void test_mlp_reaches_100_percent_on_separable_toy(void) {
  wcmi_net *net = toy_mlp(123);
  int correct = 0;
  float loss = train_toy(net, 1500, &correct);
  CHECK_MSG(correct == 200, "toy accuracy %d/200 (final loss %g)", correct, (double)loss);
  wcmi_net_free(net);
}

static void test_same_seed_gives_bit_identical_parameters(void) {
  wcmi_net *a = toy_mlp(7), *b = toy_mlp(7), *c = toy_mlp(8);
  int ca, cb, cc;
  train_toy(a, 50, &ca);
  train_toy(b, 50, &cb);
  train_toy(c, 50, &cc);
  wcmi_param *pa = wcmi_net_param(a, 0), *pb = wcmi_net_param(b, 0), *pc = wcmi_net_param(c, 0);
  int64_t n = wcmi_net_num_trainable(a);
  CHECK(memcmp(pa->data, pb->data, (size_t)n * sizeof(float)) == 0);
  CHECK(memcmp(pa->data, pc->data, (size_t)n * sizeof(float)) != 0);
  wcmi_net_free(a);
  wcmi_net_free(b);
  wcmi_net_free(c);
}

/* The layer hook sees every layer's forward and backward as begin/end pairs in execution order
 * (parts of a residual block nested inside it), the fused eval BN+ReLU backward as one event on
 * the BN, and changes no number: outputs and gradients with the hook equal those without. */
typedef struct hook_log {
  int n, depth, max_depth, balanced;
  int layer[256], part[256], dir[256], end[256];
} hook_log;

static void log_hook(void *user, const wcmi_layer_event *ev) {
  hook_log *h = user;
  if (ev->end) h->depth--;
  else h->depth++;
  if (h->depth < 0) h->balanced = 0;
  if (h->depth > h->max_depth) h->max_depth = h->depth;
  if (h->n < 256) {
    h->layer[h->n] = ev->layer, h->part[h->n] = ev->part, h->dir[h->n] = ev->dir, h->end[h->n] = ev->end;
    h->n++;
  }
}

static int count_events(const hook_log *h, int layer, int part, int dir) {
  int c = 0;
  for (int i = 0; i < h->n; i++) c += h->layer[i] == layer && h->part[i] == part && h->dir[i] == dir && !h->end[i];
  return c;
}

static void test_layer_hook_reports_each_layer_and_changes_nothing(void) {
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 9);
  wcmi_net *net = wcmi_net_new(&ctx, "hooked", wcmi_shape3(3, 4, 4));
  wcmi_net_add_batchnorm(net, "bn");     /* 0 */
  wcmi_net_add_relu(net);                /* 1 */
  wcmi_net_add_resblock(net, "rb", 5);   /* 2 */
  wcmi_net_add_flatten(net);             /* 3 */
  wcmi_net_add_linear(net, "fc", 3, 1);  /* 4 */
  CHECK_OK(&ctx, wcmi_net_finalize(net, 4, &rng));
  CHECK(wcmi_net_layer_num_parts(net, 2) == 6 && wcmi_net_layer_num_parts(net, 4) == 0);
  CHECK(!strcmp(wcmi_net_layer_kind(net, 2), "resblock") && !strcmp(wcmi_net_layer_kind(net, 1), "relu"));
  CHECK(wcmi_net_layer_kind(net, 5) == NULL && wcmi_net_layer_part_name(net, 4, 0) == NULL);
  CHECK(wcmi_net_layer_gemm_flops(net, 4, -1, 2) == 2.0 * 2 * 80 * 3);
  CHECK(wcmi_net_layer_gemm_flops(net, 2, -1, 1) > 0 && wcmi_net_layer_gemm_flops(net, 1, -1, 1) == 0.0);
  float x[4 * 48], dy[4 * 3], y_plain[12], dx_plain[4 * 48];
  fill_uniform(&rng, x, 4 * 48, 0, 1);
  fill_uniform(&rng, dy, 12, -1, 1);
  wcmi_net_forward(net, x, 4, 1); /* running statistics away from 0 / 1 */
  memcpy(y_plain, wcmi_net_forward(net, x, 4, 0), sizeof y_plain);
  CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_INPUT));
  memcpy(dx_plain, wcmi_net_input_grad(net), sizeof dx_plain);
  hook_log *h = calloc(1, sizeof *h);
  h->balanced = 1;
  wcmi_net_set_layer_hook(net, log_hook, h);
  CHECK(memcmp(y_plain, wcmi_net_forward(net, x, 4, 0), sizeof y_plain) == 0);
  CHECK_OK(&ctx, wcmi_net_backward(net, dy, WCMI_GRAD_INPUT));
  CHECK(memcmp(dx_plain, wcmi_net_input_grad(net), sizeof dx_plain) == 0);
  CHECK(h->balanced && h->depth == 0 && h->max_depth == 2); /* parts nest inside their layer */
  for (int i = 0; i < 5; i++) CHECK_MSG(count_events(h, i, -1, WCMI_HOOK_FORWARD) == 1, "layer %d forward", i);
  for (int p = 0; p < 6; p++) CHECK(count_events(h, 2, p, WCMI_HOOK_FORWARD) == 1);
  CHECK(count_events(h, 0, -1, WCMI_HOOK_BACKWARD) == 1); /* BN+ReLU fused in eval backward: on the BN */
  CHECK(count_events(h, 1, -1, WCMI_HOOK_BACKWARD) == 0);
  CHECK(count_events(h, 2, 4, WCMI_HOOK_BACKWARD) == 0 && count_events(h, 2, 0, WCMI_HOOK_BACKWARD) >= 1);
  CHECK(h->layer[0] == 0 && h->part[0] == -1 && h->dir[0] == WCMI_HOOK_FORWARD && !h->end[0]);
  CHECK(h->layer[h->n - 1] == 0 && h->dir[h->n - 1] == WCMI_HOOK_BACKWARD && h->end[h->n - 1]);
  int n_before = h->n;
  wcmi_net_set_layer_hook(net, NULL, NULL);
  wcmi_net_forward(net, x, 4, 0);
  CHECK(h->n == n_before); /* cleared */
  free(h);
  wcmi_net_free(net);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  RUN(test_resblock_gradcheck_train_mode);
  RUN(test_resblock_gradcheck_eval_mode);
  RUN(test_resblock_shortcut_init_is_near_identity);
  RUN(test_normalize_forward_and_gradient);
  RUN(test_backward_computes_only_what_is_asked);
  RUN(test_eval_input_gradient_same_with_fused_bn_relu);
  RUN(test_relu_in_place_changes_nothing_but_memory);
  RUN(test_param_names_follow_pytorch);
  RUN(test_shape_errors_name_the_layer);
  RUN(test_adam_step_matches_closed_form);
  RUN(test_sgd_momentum_matches_closed_form);
  RUN(test_steplr_schedule);
  RUN(test_cosine_schedule);
  RUN(test_mlp_reaches_100_percent_on_separable_toy);
  RUN(test_same_seed_gives_bit_identical_parameters);
  RUN(test_layer_hook_reports_each_layer_and_changes_nothing);
  return wt_finish();
}
