/* Same-weights parity with PyTorch (issue 5), wcmi side. Two commands:
 *
 *   bench_parity_dump make --model M.safetensors --input X.npy [--hsize 32] [--batch 8] [--seed 0]
 *                          [--head mlp|linear|none]
 *     Builds a wcmi model with wcmi's own initialization, then makes BN and LayerNorm non-trivial
 *     (weights U(0.5, 1.5), biases 0.2 N(0,1), BN running statistics from 3 train-mode forwards on
 *     random inputs, so eval mode really uses them), saves it with wcmi_model_save and writes an
 *     input batch uniform in (0.01, 0.99) (away from the clamp's edges) as .npy.
 *
 *   bench_parity_dump run --weights M.safetensors --input X.npy --out DIR [--bn eval|train]
 *                         [--threads T] [--param-grads]
 *     Loads the model (any file wcmi_model_load accepts, e.g. one written by torch_parity.py make)
 *     and writes wcmi's outputs with the names bench/torch_parity.py uses:
 *       z.npy (N, 64), local.npy (N, H, h, w), global.npy (N, H), dv_loss.npy (), logits.npy (N, 10)
 *       when the model has a head (always eval mode: dropout), grad_encoder.npy and grad_both.npy
 *       (N, C, S, S): dLoss/dx along the two gradient paths (wcmi_dim_step with WCMI_DIM_INPUT);
 *     with --param-grads also param_grads.safetensors: d(DV loss)/d(theta) of every trainable
 *     encoder/estimator parameter (local estimator on x, BN mode --bn), named like the parameters.
 *     BN mode: eval (running statistics, as in an attack) or train (batch statistics).
 */
#include "wcmi/io.h"
#include "wcmi/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
  fprintf(stderr,
          "usage: bench_parity_dump make --model M.safetensors --input X.npy [--hsize 32] [--batch 8] [--seed 0]\n"
          "                              [--head mlp|linear|none]\n"
          "       bench_parity_dump run --weights M.safetensors --input X.npy --out DIR [--bn eval|train]\n"
          "                             [--threads T] [--param-grads]\n");
  return 2;
}

/* ---------------------------------------------------------------- make --------------------- */

/* BN / LayerNorm affine parameters: every 1-d ".weight" (only norms have those) and its ".bias". */
static void randomize_norm_affine(wcmi_net *net, wcmi_rng *r) {
  for (int i = 0; i < wcmi_net_num_params(net); i++) {
    wcmi_param *p = wcmi_net_param(net, i);
    size_t len = strlen(p->name);
    if (p->kind != WCMI_PARAM_TRAINABLE || p->shape.ndim != 1 || len < 7 || strcmp(p->name + len - 7, ".weight"))
      continue;
    char bias[WCMI_NAME_MAX];
    snprintf(bias, sizeof bias, "%.*s.bias", (int)(len - 7), p->name);
    wcmi_param *b = wcmi_net_find_param(net, bias);
    for (int64_t j = 0; j < p->shape.d[0]; j++) p->data[j] = wcmi_rng_uniform_range(r, 0.5f, 1.5f);
    if (b)
      for (int64_t j = 0; j < b->shape.d[0]; j++) b->data[j] = 0.2f * wcmi_rng_normal(r);
  }
}

static int cmd_make(wcmi_ctx *ctx, const char *model_path, const char *input_path, int hsize, int batch, int seed,
                    wcmi_head_kind head) {
  wcmi_model m;
  int rc = wcmi_model_init(ctx, &m, "fashion-mnist", hsize, head, batch, (uint64_t)seed);
  if (rc) return rc;
  wcmi_rng r;
  wcmi_rng_derive(&r, (uint64_t)seed, WCMI_STREAM_DATA);
  wcmi_net *nets[4];
  int nn = wcmi_model_nets(&m, nets);
  for (int i = 0; i < nn; i++) randomize_norm_affine(nets[i], &r);
  const int64_t D = 28 * 28;
  float *x = wcmi_alloc(ctx, (size_t)batch * (size_t)D, sizeof(float));
  float *z = wcmi_alloc(ctx, (size_t)batch * WCMI_ZDIM, sizeof(float));
  if (!x || !z) rc = ctx->status;
  /* Running statistics from train-mode forwards on random batches (num_batches_tracked = 3). */
  for (int k = 0; k < 3 && !rc; k++) {
    for (int64_t i = 0; i < batch * D; i++) x[i] = wcmi_rng_uniform(&r);
    const float *zz = wcmi_net_forward(m.encoder, x, batch, 1);
    if (!zz) rc = ctx->status;
    if (!rc) memcpy(z, zz, (size_t)batch * WCMI_ZDIM * sizeof(float));
    if (!rc && m.local && (!wcmi_net_forward(m.local, x, batch, 1) || !wcmi_net_forward(m.global, z, batch, 1)))
      rc = ctx->status;
    if (!rc && m.classifier && !wcmi_net_forward(m.classifier, z, batch, 1)) rc = ctx->status;
  }
  if (!rc) rc = wcmi_model_save(ctx, &m, model_path, NULL, 0, NULL, 0);
  if (!rc) {
    for (int64_t i = 0; i < batch * D; i++) x[i] = 0.01f + 0.98f * wcmi_rng_uniform(&r);
    wcmi_shape s = wcmi_shape4(batch, 1, 28, 28);
    rc = wcmi_npy_write(ctx, input_path, WCMI_DT_F32, &s, x);
  }
  wcmi_free(x), wcmi_free(z);
  wcmi_model_free(&m);
  return rc;
}

/* ---------------------------------------------------------------- run ---------------------- */

static int write_npy(wcmi_ctx *ctx, const char *dir, const char *name, wcmi_shape s, const float *data) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  return wcmi_npy_write(ctx, path, WCMI_DT_F32, &s, data);
}

/* Last layer's output of a net from its last forward. */
static const float *net_output(wcmi_net *net) { return wcmi_net_layer_output(net, wcmi_net_num_layers(net) - 1, NULL); }

/* d(DV loss)/d(theta) of encoder + estimators into DIR/param_grads.safetensors. */
static int dump_param_grads(wcmi_ctx *ctx, wcmi_dim *dim, wcmi_model *m, const float *x, int N, int train,
                            const char *dir) {
  wcmi_net *nets[3] = {m->encoder, m->local, m->global};
  for (int i = 0; i < 3; i++) wcmi_net_zero_grad(nets[i]);
  float loss;
  int rc = wcmi_dim_step(dim, x, N, train, train, WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_ESTIMATOR_PARAMS, &loss, NULL);
  if (rc) return rc;
  int n = 0;
  for (int i = 0; i < 3; i++) n += wcmi_net_num_params(nets[i]);
  wcmi_st_tensor *t = calloc((size_t)n, sizeof *t);
  if (!t) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  int k = 0;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < wcmi_net_num_params(nets[i]); j++) {
      wcmi_param *p = wcmi_net_param(nets[i], j);
      if (p->kind == WCMI_PARAM_TRAINABLE) t[k++] = (wcmi_st_tensor){p->name, WCMI_DT_F32, p->shape, p->grad};
    }
  char path[4096];
  snprintf(path, sizeof path, "%s/param_grads.safetensors", dir);
  rc = wcmi_st_write(ctx, path, t, k, NULL, 0);
  free(t);
  return rc;
}

static int cmd_run(wcmi_ctx *ctx, const char *weights, const char *input, const char *dir, int train, int param_grads) {
  wcmi_npy x;
  int rc = wcmi_npy_read(ctx, input, &x);
  if (rc) return rc;
  if (x.dtype != WCMI_DT_F32 || x.shape.ndim != 4) {
    wcmi_npy_free(&x);
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: expected a float32 (N, C, S, S) array", input);
  }
  const int N = (int)x.shape.d[0];
  wcmi_model m;
  if ((rc = wcmi_model_load(ctx, weights, N, &m, NULL))) {
    wcmi_npy_free(&x);
    return rc;
  }
  wcmi_shape in = wcmi_net_in_shape(m.encoder);
  if (x.shape.d[1] != in.d[0] || x.shape.d[2] != in.d[1] || x.shape.d[3] != in.d[2]) {
    rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: input shape does not match the model's (%lld, %lld, %lld)", input,
                   (long long)in.d[0], (long long)in.d[1], (long long)in.d[2]);
  }
  const float *xs = x.data;
  const size_t zbytes = (size_t)N * WCMI_ZDIM * sizeof(float);
  float *z = wcmi_alloc(ctx, zbytes, 1), *dx = wcmi_alloc(ctx, (size_t)x.numel, sizeof(float));
  if (!rc && (!z || !dx)) rc = ctx->status;
  /* z and (eval-mode) logits */
  const float *out = rc ? NULL : wcmi_net_forward(m.encoder, xs, N, train);
  if (!rc && !out) rc = ctx->status;
  if (!rc) memcpy(z, out, zbytes), rc = write_npy(ctx, dir, "z", wcmi_shape2(N, WCMI_ZDIM), z);
  if (!rc && m.classifier) {
    const float *logits = wcmi_net_forward(m.classifier, z, N, 0);
    rc = logits ? write_npy(ctx, dir, "logits", wcmi_shape2(N, WCMI_NUM_CLASSES), logits) : ctx->status;
  }
  if (!rc && m.local) {
    wcmi_dim dim;
    if (!(rc = wcmi_dim_init(ctx, &dim, &m, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, N))) {
      float loss;
      const wcmi_shape xshape = x.shape;
      wcmi_shape ls = wcmi_net_out_shape(m.local);
      rc = wcmi_dim_step(&dim, xs, N, train, train, WCMI_DIM_INPUT, &loss, dx);
      if (!rc) rc = write_npy(ctx, dir, "grad_encoder", xshape, dx);
      if (!rc) rc = write_npy(ctx, dir, "local", wcmi_shape4(N, ls.d[0], ls.d[1], ls.d[2]), net_output(m.local));
      if (!rc) rc = write_npy(ctx, dir, "global", wcmi_shape2(N, dim.H), net_output(m.global));
      if (!rc) rc = write_npy(ctx, dir, "dv_loss", (wcmi_shape){0, {0}}, &loss);
      dim.path = WCMI_PATH_BOTH;
      if (!rc) rc = wcmi_dim_step(&dim, xs, N, train, train, WCMI_DIM_INPUT, &loss, dx);
      if (!rc) rc = write_npy(ctx, dir, "grad_both", xshape, dx);
      dim.path = WCMI_PATH_ENCODER;
      if (!rc && param_grads) rc = dump_param_grads(ctx, &dim, &m, xs, N, train, dir);
      wcmi_dim_free(&dim);
    }
  }
  wcmi_free(z), wcmi_free(dx);
  wcmi_model_free(&m);
  wcmi_npy_free(&x);
  return rc;
}

/* ---------------------------------------------------------------- main --------------------- */

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *cmd = argv[1], *model = NULL, *input = NULL, *weights = NULL, *out = NULL, *bn = "eval", *head = "mlp";
  int hsize = 32, batch = 8, seed = 0, threads = 2, param_grads = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--param-grads")) {
      param_grads = 1;
      continue;
    }
    if (!v) return usage();
    i++;
    if (!strcmp(a, "--model")) model = v;
    else if (!strcmp(a, "--input")) input = v;
    else if (!strcmp(a, "--weights")) weights = v;
    else if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--bn")) bn = v;
    else if (!strcmp(a, "--head")) head = v;
    else if (!strcmp(a, "--hsize")) hsize = atoi(v);
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else if (!strcmp(a, "--seed")) seed = atoi(v);
    else if (!strcmp(a, "--threads")) threads = atoi(v);
    else return usage();
  }
  if (strcmp(bn, "eval") && strcmp(bn, "train")) return usage();
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, threads);
  int rc;
  if (!strcmp(cmd, "make")) {
    wcmi_head_kind hk = WCMI_HEAD_NONE;
    if (!model || !input || hsize < 1 || batch < 2) return usage();
    if (strcmp(head, "none") && wcmi_head_parse(&ctx, head, &hk)) return usage();
    rc = cmd_make(&ctx, model, input, hsize, batch, seed, hk);
  } else if (!strcmp(cmd, "run")) {
    if (!weights || !input || !out) return usage();
    rc = cmd_run(&ctx, weights, input, out, !strcmp(bn, "train"), param_grads);
  } else {
    return usage();
  }
  if (rc) {
    fprintf(stderr, "bench_parity_dump %s: %s\n", cmd, wcmi_errmsg(&ctx));
    return 1;
  }
  return 0;
}
