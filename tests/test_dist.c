/* The data-parallel layer (wcmi/dist.h, docs/distributed.md). Run as one process it checks that
 * every primitive is the identity; run under `mpirun -np K` (the test_dist_mpi2 entry of an MPI
 * build) it checks that the fixed-order sums are exactly the rank-order double sums on every rank
 * and across repeats, the all-gather and broadcast, and that one step of the MI objective on K
 * slices of a global batch (synchronized BatchNorm in encoder and critics, gathered features,
 * summed gradients) gives the loss, parameter gradients, input gradients and BN running statistics
 * one process computes on the whole batch. */
#include "harness.h"
#include "wcmi/wcmi.h"

#include <string.h>

static wcmi_ctx ctx;

/* The float buffer rank r contributes in the sum tests: values of mixed sign and magnitude. */
static void fill_rank(float *v, size_t n, int r, uint64_t salt) {
  wcmi_rng g;
  wcmi_rng_derive(&g, 1000 + salt, (uint64_t)r);
  for (size_t i = 0; i < n; i++) v[i] = wcmi_rng_normal(&g) * (float)(1 + (i % 7) * 1000);
}

static void test_shard(void) {
  int lo, hi, next = 0;
  for (int r = 0; r < 3; r++) {
    wcmi_dist_shard(10, r, 3, &lo, &hi);
    CHECK(lo == next && hi > lo);
    next = hi;
  }
  CHECK(next == 10);
  wcmi_dist_shard(5, 0, 1, &lo, &hi);
  CHECK(lo == 0 && hi == 5);
}

static void test_sum_is_rank_order(void) {
  const int K = wcmi_dist_size(ctx.dist), me = wcmi_dist_rank(ctx.dist);
  const size_t sizes[] = {1, 7, 1000, 100003};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    const size_t n = sizes[s];
    float *buf = wcmi_alloc(NULL, n, sizeof(float)), *again = wcmi_alloc(NULL, n, sizeof(float)),
          *other = wcmi_alloc(NULL, n, sizeof(float));
    double *want = wcmi_calloc(NULL, n, sizeof(double));
    for (int r = 0; r < K; r++) {
      fill_rank(other, n, r, s);
      for (size_t i = 0; i < n; i++) want[i] += (double)other[i];
    }
    fill_rank(buf, n, me, s);
    fill_rank(again, n, me, s);
    CHECK_OK(&ctx, wcmi_dist_sum_f32(ctx.dist, WCMI_DIST_OTHER, buf, n));
    CHECK_OK(&ctx, wcmi_dist_sum_f32(ctx.dist, WCMI_DIST_OTHER, again, n));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += buf[i] != (float)want[i] || memcmp(&buf[i], &again[i], sizeof(float)) != 0;
    CHECK_MSG(bad == 0, "n = %zu: %zu sums differ from the rank-order double sum or between repeats", n, bad);
    /* Every rank holds the same bits: rank 0's result, broadcast, equals each rank's. */
    memcpy(other, buf, n * sizeof(float));
    CHECK_OK(&ctx, wcmi_dist_bcast(ctx.dist, other, n * sizeof(float)));
    CHECK(memcmp(other, buf, n * sizeof(float)) == 0);
    wcmi_free(buf);
    wcmi_free(again);
    wcmi_free(other);
    wcmi_free(want);
  }
  double d[3] = {0.5 * me, 1.0, 3.0};
  CHECK_OK(&ctx, wcmi_dist_sum_f64(ctx.dist, WCMI_DIST_OTHER, d, 3));
  CHECK(d[0] == 0.25 * K * (K - 1) && d[1] == K && d[2] == 3.0 * K);
}

static void test_gather_counts_any(void) {
  const int K = wcmi_dist_size(ctx.dist), me = wcmi_dist_rank(ctx.dist);
  int counts[64];
  CHECK(K <= 64);
  CHECK_OK(&ctx, wcmi_dist_counts(ctx.dist, me + 1, counts)); /* uneven slices: rank r has r + 1 samples */
  int total = 0;
  for (int r = 0; r < K; r++) {
    CHECK(counts[r] == r + 1);
    total += counts[r];
  }
  const int unit = 3;
  float mine[64 * 3], all[64 * 65 / 2 * 3];
  for (int i = 0; i < (me + 1) * unit; i++) mine[i] = (float)(100 * me + i);
  CHECK_OK(&ctx, wcmi_dist_allgather_f32(ctx.dist, WCMI_DIST_FEATURES, mine, counts, unit, all));
  int pos = 0, bad = 0;
  for (int r = 0; r < K; r++)
    for (int i = 0; i < (r + 1) * unit; i++) bad += all[pos++] != (float)(100 * r + i);
  CHECK(bad == 0 && pos == total * unit);
  CHECK(wcmi_dist_any(ctx.dist, 0) == 0);
  CHECK(wcmi_dist_any(ctx.dist, me == K - 1) == 1);
  if (K > 1) CHECK(wcmi_dist_bytes_sent(ctx.dist, WCMI_DIST_NCAT) > 0);
  else CHECK(wcmi_dist_bytes_sent(ctx.dist, WCMI_DIST_NCAT) == 0);
}

/* The nets of m flattened into out (NULL: count only; returns the count): the gradients of the
 * trainable parameters (kind WCMI_PARAM_TRAINABLE) or the BN running statistics (WCMI_PARAM_BUFFER). */
static size_t flatten(wcmi_model *m, wcmi_param_kind kind, float *out) {
  wcmi_net *nets[4];
  int n = wcmi_model_nets(m, nets);
  size_t k = 0;
  for (int j = 0; j < n; j++)
    for (int i = 0; i < wcmi_net_num_params(nets[j]); i++) {
      wcmi_param *p = wcmi_net_param(nets[j], i);
      const float *src = kind == WCMI_PARAM_TRAINABLE ? p->grad : p->data;
      if (p->kind != kind || !src) continue;
      size_t c = (size_t)wcmi_shape_numel(&p->shape);
      if (out) memcpy(out + k, src, c * sizeof(float));
      k += c;
    }
  return k;
}

static void zero_grads(wcmi_model *m) {
  wcmi_net *nets[4];
  int n = wcmi_model_nets(m, nets);
  for (int j = 0; j < n; j++)
    for (int i = 0; i < wcmi_net_num_params(nets[j]); i++) {
      wcmi_param *p = wcmi_net_param(nets[j], i);
      if (p->kind == WCMI_PARAM_TRAINABLE) memset(p->grad, 0, (size_t)wcmi_shape_numel(&p->shape) * sizeof(float));
    }
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, size_t n) {
  double e = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    e = fmax(e, fabs((double)a[i] - (double)b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return s > 0 ? e / s : e;
}

/* One MI-objective step: the whole batch in one process (dist NULL) against this rank's slice with
 * the communicator, for each estimator. BN sits in the encoder and both critics. */
static void check_dim_step(wcmi_mi_estimator est, int train, wcmi_grad_path path) {
  const int B = 12, K = wcmi_dist_size(ctx.dist), me = wcmi_dist_rank(ctx.dist);
  wcmi_ctx solo = ctx;
  solo.dist = NULL;
  wcmi_model ref, par;
  CHECK_OK(&solo, wcmi_model_init(&solo, &ref, "fashion-mnist", 16, WCMI_HEAD_NONE, B, 5));
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &par, "fashion-mnist", 16, WCMI_HEAD_NONE, B, 5));
  wcmi_mi_cfg mi = wcmi_mi_default_cfg();
  mi.estimator = est;
  wcmi_dim dref, dpar;
  CHECK_OK(&solo, wcmi_dim_init(&solo, &dref, &ref, mi, path, B));
  CHECK_OK(&ctx, wcmi_dim_init(&ctx, &dpar, &par, mi, path, B));
  const int D = 28 * 28;
  float *x = wcmi_alloc(NULL, (size_t)B * D, sizeof(float)), *dx_ref = wcmi_alloc(NULL, (size_t)B * D, sizeof(float)),
        *dx_par = wcmi_alloc(NULL, (size_t)B * D, sizeof(float));
  wcmi_rng g;
  wcmi_rng_seed(&g, 11);
  for (int i = 0; i < B * D; i++) x[i] = wcmi_rng_uniform(&g);
  /* train: a training step (BN on batch statistics); else the attack's evaluation (running ones). */
  const int what = train ? WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_ESTIMATOR_PARAMS | WCMI_DIM_INPUT : WCMI_DIM_INPUT;
  float lref = 0, lpar = 0;
  zero_grads(&ref);
  zero_grads(&par);
  CHECK_OK(&solo, wcmi_dim_step(&dref, x, B, train, train, what, &lref, dx_ref));
  int lo, hi;
  wcmi_dist_shard(B, me, K, &lo, &hi);
  CHECK_OK(&ctx, wcmi_dim_step(&dpar, x + (size_t)lo * D, hi - lo, train, train, what, &lpar, dx_par));
  CHECK(dpar.last_N == B);
  CHECK_CLOSE(lpar, lref, 1e-6, 1e-5);
  const size_t ng = flatten(&ref, WCMI_PARAM_TRAINABLE, NULL), nb = flatten(&ref, WCMI_PARAM_BUFFER, NULL);
  float *gref = wcmi_alloc(NULL, ng, sizeof(float)), *gpar = wcmi_alloc(NULL, ng, sizeof(float));
  float *bref = wcmi_alloc(NULL, nb, sizeof(float)), *bpar = wcmi_alloc(NULL, nb, sizeof(float));
  flatten(&ref, WCMI_PARAM_TRAINABLE, gref);
  flatten(&par, WCMI_PARAM_TRAINABLE, gpar);
  CHECK_OK(&ctx, wcmi_dist_sum_f32(ctx.dist, WCMI_DIST_GRADS, gpar, ng));
  double eg = rel_err(gpar, gref, ng);
  CHECK_MSG(eg < 1e-4, "%s: summed slice gradients differ from the whole batch's by %g of the largest", wcmi_mi_estimator_name(est), eg);
  flatten(&ref, WCMI_PARAM_BUFFER, bref);
  flatten(&par, WCMI_PARAM_BUFFER, bpar);
  double eb = rel_err(bpar, bref, nb);
  CHECK_MSG(eb < 1e-5, "BN running statistics differ by %g", eb);
  double ex = rel_err(dx_par, dx_ref + (size_t)lo * D, (size_t)(hi - lo) * D);
  CHECK_MSG(ex < 1e-4, "input gradient of this rank's slice differs by %g", ex);
  wcmi_free(gref);
  wcmi_free(gpar);
  wcmi_free(bref);
  wcmi_free(bpar);
  wcmi_free(x);
  wcmi_free(dx_ref);
  wcmi_free(dx_par);
  wcmi_dim_free(&dref);
  wcmi_dim_free(&dpar);
  wcmi_model_free(&ref);
  wcmi_model_free(&par);
}

static void test_dim_step_dv(void) { check_dim_step(WCMI_MI_DV, 1, WCMI_PATH_BOTH); }
static void test_dim_step_fd(void) { check_dim_step(WCMI_MI_FD, 1, WCMI_PATH_BOTH); }
static void test_dim_step_nce(void) { check_dim_step(WCMI_MI_NCE, 1, WCMI_PATH_BOTH); }
static void test_dim_attack_gradient(void) { check_dim_step(WCMI_MI_DV, 0, WCMI_PATH_ENCODER); }

/* The worst-case MI attack (PGD with a random start on the batch-level MI loss, BN in eval mode) on
 * this rank's slice finds the slice of what it finds on the whole batch in one process. */
static void test_mi_attack_slice(void) {
  const int B = 12, K = wcmi_dist_size(ctx.dist), me = wcmi_dist_rank(ctx.dist), D = 28 * 28;
  wcmi_ctx solo = ctx;
  solo.dist = NULL;
  wcmi_model ref, par;
  CHECK_OK(&solo, wcmi_model_init(&solo, &ref, "fashion-mnist", 16, WCMI_HEAD_NONE, B, 5));
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &par, "fashion-mnist", 16, WCMI_HEAD_NONE, B, 5));
  wcmi_dim dref, dpar;
  CHECK_OK(&solo, wcmi_dim_init(&solo, &dref, &ref, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, B));
  CHECK_OK(&ctx, wcmi_dim_init(&ctx, &dpar, &par, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, B));
  wcmi_pgd_cfg pc = {WCMI_NORM_LINF, 0.1f, 0.02f, 3, 1, 0, 0};
  wcmi_attack *aref = wcmi_attack_new(&solo, &pc, B, D), *apar = wcmi_attack_new(&ctx, &pc, B, D);
  float *x = wcmi_alloc(NULL, (size_t)B * D, sizeof(float)), *xr = wcmi_alloc(NULL, (size_t)B * D, sizeof(float)),
        *xp = wcmi_alloc(NULL, (size_t)B * D, sizeof(float));
  wcmi_rng g, rr, rp;
  wcmi_rng_seed(&g, 12);
  /* Image-like: half the pixels black, where the box [0, 1] clips the attack. */
  for (int i = 0; i < B * D; i++) x[i] = wcmi_rng_uniform(&g) < 0.5f ? 0.0f : wcmi_rng_uniform(&g);
  wcmi_rng_seed(&rr, 77);
  wcmi_rng_seed(&rp, 77);
  wcmi_objective oref = wcmi_dim_objective(&dref), opar = wcmi_dim_objective(&dpar);
  CHECK(aref && apar);
  CHECK_OK(&solo, wcmi_pgd_run(aref, &oref, x, B, &rr, xr, NULL));
  int lo, hi;
  wcmi_dist_shard(B, me, K, &lo, &hi);
  CHECK_OK(&ctx, wcmi_pgd_run(apar, &opar, x + (size_t)lo * D, hi - lo, &rp, xp, NULL));
  size_t moved = 0;
  for (size_t i = 0; i < (size_t)(hi - lo) * D; i++) moved += xp[i] != xr[(size_t)lo * D + i];
  CHECK_MSG(moved * 1000 < (size_t)(hi - lo) * D, "%zu of %d attacked values differ from the one-process attack's", moved,
            (hi - lo) * D);
  CHECK(memcmp(&rr, &rp, sizeof rr) == 0); /* the attack stream ends where one process leaves it */
  wcmi_attack_free(aref);
  wcmi_attack_free(apar);
  wcmi_free(x);
  wcmi_free(xr);
  wcmi_free(xp);
  wcmi_dim_free(&dref);
  wcmi_dim_free(&dpar);
  wcmi_model_free(&ref);
  wcmi_model_free(&par);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  if (wcmi_dist_init(&ctx)) {
    fprintf(stderr, "test_dist: %s\n", wcmi_errmsg(&ctx));
    return 1;
  }
  RUN(test_shard);
  RUN(test_sum_is_rank_order);
  RUN(test_gather_counts_any);
  RUN(test_dim_step_dv);
  RUN(test_dim_step_fd);
  RUN(test_dim_step_nce);
  RUN(test_dim_attack_gradient);
  RUN(test_mi_attack_slice);
  int rc = wt_finish();
  wcmi_dist_finalize(&ctx, 0);
  return rc;
}
