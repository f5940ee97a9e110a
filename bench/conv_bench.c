/* conv2d forward + backward throughput on the paper's shapes, next to plain SGEMM.
 *
 * For every conv of the encoder and the local estimator at batch 128 on Fashion-MNIST (1x28x28)
 * inputs, times forward + backward (dx and dw; db for layers with a bias) and reports
 *   GFLOP/s = 3 * 2*N*O*Ho*Wo*C*KH*KW / time
 * i.e. three GEMM-equivalent passes (forward, input gradient, weight gradient), each 2*M*N*K FLOPs;
 * im2col, col2im, layout transposes and the bias are not counted as FLOPs. The reference is CBLAS
 * SGEMM on square matrices of size --gemm (default 2048) with the same thread count; "ratio" is
 * conv GFLOP/s over SGEMM GFLOP/s. Times are medians over --iters runs after two warm-up runs.
 *
 * The machine this was written on is shared, so its speed drifts from second to second. To compare
 * like with like, every conv iteration is followed by one reference SGEMM and each row's "sgemm"
 * column is the median of the SGEMMs interleaved with that row's iterations. "best" is the conv
 * GFLOP/s of the fastest iteration, a hint of what an idle machine gives.
 *
 * usage: bench_conv_bench [--threads N] [--iters N] [--batch N] [--gemm N] [--hsize H] [--algo auto|gemm]
 * --algo gemm: every conv through im2col + GEMM or the direct thin kernel (no Winograd), so GFLOP/s
 * are FLOPs actually performed; with auto (default) the Winograd convs report an effective rate.
 */
#include "wcmi/blas.h"
#include "wcmi/core.h"
#include "wcmi/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_layer {
  const char *name;
  int C, H, O, k, stride, pad, bias;
} bench_layer;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static float *random_buffer(wcmi_ctx *ctx, wcmi_rng *r, size_t n) {
  float *p = wcmi_alloc(ctx, n ? n : 1, sizeof *p);
  if (p)
    for (size_t i = 0; i < n; i++) p[i] = wcmi_rng_uniform_range(r, -1.0f, 1.0f);
  return p;
}

/* The reference SGEMM: C (n, n) = A (n, n) . B (n, n). */
typedef struct gemm_ref {
  int n;
  float *a, *b, *c;
} gemm_ref;

static int gemm_ref_init(wcmi_ctx *ctx, gemm_ref *g, int n) {
  wcmi_rng r;
  wcmi_rng_seed(&r, 1);
  size_t nn = (size_t)n * (size_t)n;
  g->n = n;
  g->a = random_buffer(ctx, &r, nn), g->b = random_buffer(ctx, &r, nn), g->c = random_buffer(ctx, &r, nn);
  return g->a && g->b && g->c ? 0 : 1;
}

static void gemm_ref_free(gemm_ref *g) { wcmi_free(g->a), wcmi_free(g->b), wcmi_free(g->c); }

/* Returns GFLOP/s of one run. */
static double gemm_ref_run(const gemm_ref *g) {
  const int n = g->n;
  double t0 = wcmi_now();
  wcmi_sgemm(0, 0, n, n, n, 1.0f, g->a, n, g->b, n, 0.0f, g->c, n);
  return 2.0 * n * (double)n * n / (wcmi_now() - t0) * 1e-9;
}

/* Times one layer, interleaved with reference SGEMMs; prints a table row. Returns 0 on success. */
static int bench_conv(wcmi_ctx *ctx, const bench_layer *L, int N, int iters, const gemm_ref *g) {
  wcmi_conv2d_dims d = {N, L->C, L->H, L->H, L->O, L->k, L->k, L->stride, L->pad, 0, 0, 0, 0};
  if (wcmi_conv2d_dims_init(ctx, L->name, &d)) return 1;
  size_t nx = (size_t)N * L->C * L->H * L->H, nw = (size_t)L->O * L->C * L->k * L->k;
  size_t ny = (size_t)N * L->O * d.Ho * d.Wo, nws = wcmi_conv2d_workspace_floats(&d);
  wcmi_rng r;
  wcmi_rng_seed(&r, 2);
  float *x = random_buffer(ctx, &r, nx), *w = random_buffer(ctx, &r, nw), *b = random_buffer(ctx, &r, (size_t)L->O);
  float *y = random_buffer(ctx, &r, ny), *dy = random_buffer(ctx, &r, ny), *dx = random_buffer(ctx, &r, nx);
  float *dw = random_buffer(ctx, &r, nw), *db = random_buffer(ctx, &r, (size_t)L->O);
  float *ws = random_buffer(ctx, &r, nws);
  double *tf = malloc((size_t)iters * sizeof *tf), *tb = malloc((size_t)iters * sizeof *tb);
  double *tt = malloc((size_t)iters * sizeof *tt), *gg = malloc((size_t)iters * sizeof *gg);
  int rc = 1;
  if (x && w && b && y && dy && dx && dw && db && ws && tf && tb && tt && gg) {
    const float *bias = L->bias ? b : NULL;
    float *dbias = L->bias ? db : NULL;
    for (int i = -2; i < iters; i++) {
      double t0 = wcmi_now();
      wcmi_conv2d_forward(&d, x, w, bias, y, ws);
      double t1 = wcmi_now();
      wcmi_conv2d_backward(&d, x, w, dy, dx, dw, dbias, ws);
      double t2 = wcmi_now();
      if (i >= 0) tf[i] = t1 - t0, tb[i] = t2 - t1, tt[i] = t2 - t0, gg[i] = gemm_ref_run(g);
    }
    double flops = 3.0 * 2.0 * N * (double)L->O * d.Ho * d.Wo * (double)L->C * L->k * L->k;
    double mf = median(tf, iters), mb = median(tb, iters), mt = median(tt, iters), gemm_gf = median(gg, iters);
    double gf = flops / mt * 1e-9, best = flops / tt[0] * 1e-9; /* tt is sorted by median() */
    char shape[64];
    snprintf(shape, sizeof shape, "%d->%d k%d s%d p%d %dx%d->%dx%d", L->C, L->O, L->k, L->stride, L->pad, L->H,
             L->H, d.Ho, d.Wo);
    printf("%-26s %-30s %5d %8.2f %8.2f %8.2f %8.1f %7.1f %7.1f %6.2f\n", L->name, shape, L->C * L->k * L->k,
           mf * 1e3, mb * 1e3, mt * 1e3, gf, best, gemm_gf, gf / gemm_gf);
    fflush(stdout);
    rc = 0;
  }
  wcmi_free(x), wcmi_free(w), wcmi_free(b), wcmi_free(y), wcmi_free(dy), wcmi_free(dx), wcmi_free(dw);
  wcmi_free(db), wcmi_free(ws), free(tf), free(tb), free(tt), free(gg);
  return rc;
}

static int parse_int(const char *s, int *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (!end || *end || v <= 0 || v > 1 << 20) return 1;
  *out = (int)v;
  return 0;
}

int main(int argc, char **argv) {
  int threads = 2, iters = 10, N = 128, gemm_n = 2048, hsize = 0, algo = WCMI_CONV_AUTO;
  for (int i = 1; i < argc; i++) {
    int *dst = NULL;
    if (!strcmp(argv[i], "--algo") && i + 1 < argc && (!strcmp(argv[i + 1], "auto") || !strcmp(argv[i + 1], "gemm"))) {
      algo = !strcmp(argv[++i], "gemm") ? WCMI_CONV_GEMM : WCMI_CONV_AUTO;
      continue;
    }
    if (!strcmp(argv[i], "--threads")) dst = &threads;
    else if (!strcmp(argv[i], "--iters")) dst = &iters;
    else if (!strcmp(argv[i], "--batch")) dst = &N;
    else if (!strcmp(argv[i], "--gemm")) dst = &gemm_n;
    else if (!strcmp(argv[i], "--hsize")) dst = &hsize;
    if (!dst || i + 1 >= argc || parse_int(argv[++i], dst)) {
      fprintf(stderr,
              "usage: bench_conv_bench [--threads N] [--iters N] [--batch N] [--gemm N] [--hsize H] [--algo auto|gemm]\n"
              "  (--hsize H benchmarks only that residual-block width; default both 2048 and 256)\n");
      return 2;
    }
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, threads);
  ctx.conv_algo = algo;

  gemm_ref g;
  if (gemm_ref_init(&ctx, &g, gemm_n)) goto fail;
  gemm_ref_run(&g); /* warm-up: thread start, page faults */
  printf("# conv2d forward+backward vs SGEMM %dx%dx%d: batch %d, %d threads, median of %d runs\n", gemm_n, gemm_n,
         gemm_n, N, threads, iters);
  printf("# BLAS: %s\n", wcmi_blas_info());
  printf("# GFLOP/s = 3 passes * 2*N*O*Ho*Wo*C*KH*KW / (fwd + bwd time); K = C*KH*KW; --algo %s%s\n",
         algo == WCMI_CONV_GEMM ? "gemm" : "auto",
         algo == WCMI_CONV_GEMM ? "" : " (Winograd convs: the direct conv's FLOPs over the time, an effective rate)");
  printf("%-26s %-30s %5s %8s %8s %8s %8s %7s %7s %6s\n", "layer", "shape", "K", "fwd_ms", "bwd_ms", "tot_ms",
         "GFLOP/s", "best", "sgemm", "ratio");

  const bench_layer trunk[] = {
      {"encoder.layer0 (=local)", 1, 28, 64, 4, 2, 1, 0},
      {"encoder.layer1 (=local)", 64, 14, 128, 4, 2, 1, 0},
      {"encoder.layer2", 128, 7, 256, 4, 2, 1, 0},
  };
  for (int i = 0; i < 3; i++)
    if (bench_conv(&ctx, &trunk[i], N, iters, &g)) goto fail;
  const int hs[] = {2048, 256};
  for (int j = 0; j < 2; j++) {
    int H = hs[j];
    if (hsize && H != hsize) continue;
    char n0[64], n1[64], n2[64], n3[64];
    snprintf(n0, sizeof n0, "local.block 128->H H=%d", H);
    snprintf(n1, sizeof n1, "local.block H->H H=%d", H);
    snprintf(n2, sizeof n2, "global.block 64->H H=%d", H);
    snprintf(n3, sizeof n3, "global.block H->H H=%d", H);
    /* block_nonlinear.0 and linear_shortcut share the 128->H shape */
    const bench_layer block[] = {
        {n0, 128, 7, H, 1, 1, 0, 0},
        {n1, H, 7, H, 1, 1, 0, 1},
        {n2, 64, 1, H, 1, 1, 0, 0},
        {n3, H, 1, H, 1, 1, 0, 1},
    };
    for (int i = 0; i < 4; i++)
      if (bench_conv(&ctx, &block[i], N, iters, &g)) goto fail;
  }
  gemm_ref_free(&g);
  return 0;
fail:
  fprintf(stderr, "bench_conv_bench: %s\n", ctx.status ? wcmi_errmsg(&ctx) : "allocation failed");
  return 1;
}
