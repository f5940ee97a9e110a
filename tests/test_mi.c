/* MI estimators (PAPER.md section 2): losses and gradients of DV, every Fenchel-dual measure and
 * InfoNCE against a naive double-precision reference written here from the formulas; stability at
 * large scores; small batches; known limits; determinism; argument errors. */
#include "harness.h"
#include "wcmi/mi.h"
#include "estimator/mi_internal.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

enum { N_MEASURES = 7 };
static const wcmi_mi_measure ALL_MEASURES[N_MEASURES] = {WCMI_MEASURE_JSD, WCMI_MEASURE_GAN, WCMI_MEASURE_X2,
                                                         WCMI_MEASURE_KL,  WCMI_MEASURE_RKL, WCMI_MEASURE_H2,
                                                         WCMI_MEASURE_W1};

/* ---- naive double reference ------------------------------------------------------------------ */
// u[i, j, l] = sum_c Gz[i, c] Lx[j, c, l], straight from the definition.
static double ref_score(int N, int H, int L, const double *Lx, const double *Gz, int i, int j, int l) {
  (void)N;
  double s = 0.0;
  for (int c = 0; c < H; c++) s += Gz[i * H + c] * Lx[(j * H + c) * L + l];
  return s;
}

// Positive / negative expectation terms exactly as PAPER.md lists them (no rewriting).
static double ref_pos(wcmi_mi_measure m, double p) {
  switch (m) {
  case WCMI_MEASURE_JSD: return log(2.0) - log1p(exp(-p));
  case WCMI_MEASURE_GAN: return -log1p(exp(-p));
  case WCMI_MEASURE_X2: return p * p;
  case WCMI_MEASURE_KL: return p;
  case WCMI_MEASURE_RKL: return -exp(-p);
  case WCMI_MEASURE_H2: return 1.0 - exp(-p);
  case WCMI_MEASURE_W1: return p;
  }
  return NAN;
}

static double ref_neg(wcmi_mi_measure m, double q) {
  switch (m) {
  case WCMI_MEASURE_JSD: return log1p(exp(-q)) + q - log(2.0);
  case WCMI_MEASURE_GAN: return log1p(exp(-q)) + q;
  case WCMI_MEASURE_X2: return -0.5 * (sqrt(q * q) + 1.0) * (sqrt(q * q) + 1.0);
  case WCMI_MEASURE_KL: return exp(q - 1.0);
  case WCMI_MEASURE_RKL: return q - 1.0;
  case WCMI_MEASURE_H2: return exp(q) - 1.0;
  case WCMI_MEASURE_W1: return q;
  }
  return NAN;
}

// The loss, by direct sums (scores here stay below ~100, where double exp does not overflow).
static double ref_loss(wcmi_mi_cfg cfg, int N, int H, int L, const double *Lx, const double *Gz) {
  double total = 0.0;
  if (cfg.estimator == WCMI_MI_NCE) {
    for (int i = 0; i < N; i++)
      for (int l = 0; l < L; l++) {
        double pos = ref_score(N, H, L, Lx, Gz, i, i, l);
        double denom = exp(pos);
        for (int j = 0; j < N; j++)
          for (int l2 = 0; l2 < L; l2++)
            if (j != i) denom += exp(ref_score(N, H, L, Lx, Gz, i, j, l2));
        total += -(pos - log(denom));
      }
    return total / (N * L);
  }
  for (int l = 0; l < L; l++) {
    double pos = 0.0, neg = 0.0;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) {
        double u = ref_score(N, H, L, Lx, Gz, i, j, l);
        if (cfg.estimator == WCMI_MI_DV) {
          if (i == j) pos += u;
          else neg += exp(u);
        } else {
          if (i == j) pos += ref_pos(cfg.measure, u);
          else neg += ref_neg(cfg.measure, u);
        }
      }
    if (cfg.estimator == WCMI_MI_DV) total += log(neg / (N * (N - 1.0))) - pos / N;
    else total += neg / (N * (N - 1.0)) - pos / N;
  }
  return total / L;
}

// Central differences of the reference loss, h = 1e-6 in double (truncation ~1e-12 relative).
static void ref_fd_grad(wcmi_mi_cfg cfg, int N, int H, int L, double *Lx, double *Gz, double *gLx, double *gGz) {
  const double h = 1e-6;
  double *bufs[2] = {Lx, Gz};
  double *grads[2] = {gLx, gGz};
  int sizes[2] = {N * H * L, N * H};
  for (int b = 0; b < 2; b++)
    for (int k = 0; k < sizes[b]; k++) {
      double keep = bufs[b][k];
      bufs[b][k] = keep + h;
      double up = ref_loss(cfg, N, H, L, Lx, Gz);
      bufs[b][k] = keep - h;
      double down = ref_loss(cfg, N, H, L, Lx, Gz);
      bufs[b][k] = keep;
      grads[b][k] = (up - down) / (2 * h);
    }
}

/* ---- helpers --------------------------------------------------------------------------------- */
typedef struct problem {
  int N, H, L;
  float Lx[2048], Gz[512];
  double dLx[2048], dGz[512];
} problem;

static void fill_random(problem *p, int N, int H, int L, uint64_t seed, float scale) {
  p->N = N, p->H = H, p->L = L;
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  for (int k = 0; k < N * H * L; k++) p->Lx[k] = scale * wcmi_rng_normal(&r);
  for (int k = 0; k < N * H; k++) p->Gz[k] = scale * wcmi_rng_normal(&r);
}

static void to_double(problem *p) {
  for (int k = 0; k < p->N * p->H * p->L; k++) p->dLx[k] = p->Lx[k];
  for (int k = 0; k < p->N * p->H; k++) p->dGz[k] = p->Gz[k];
}

static const char *cfg_name(wcmi_mi_cfg cfg) {
  static char buf[32];
  snprintf(buf, sizeof buf, "%s%s%s", wcmi_mi_estimator_name(cfg.estimator), cfg.estimator == WCMI_MI_FD ? "/" : "",
           cfg.estimator == WCMI_MI_FD ? wcmi_mi_measure_name(cfg.measure) : "");
  return buf;
}

// Largest |got - want| must be <= atol_frac * max|want| + rtol * |want| elementwise.
static void check_grad(const char *what, wcmi_mi_cfg cfg, const float *got, const double *want, int n, double rtol,
                       double atol_frac) {
  double wmax = 0.0;
  for (int k = 0; k < n; k++) wmax = fmax(wmax, fabs(want[k]));
  double worst = 0.0;
  int worst_k = 0, bad = 0;
  for (int k = 0; k < n; k++) {
    double err = fabs(got[k] - want[k]);
    double tol = atol_frac * wmax + rtol * fabs(want[k]);
    if (!(err <= tol)) bad++;
    if (!(err <= worst)) worst = err, worst_k = k;
  }
  CHECK_MSG(bad == 0, "%s %s: %d of %d entries off; worst [%d] got %.9g want %.9g (rtol %g, atol %g * max %g)",
            cfg_name(cfg), what, bad, n, worst_k, (double)got[worst_k], want[worst_k], rtol, atol_frac, wmax);
}

typedef struct run_out {
  int rc_fwd, rc_bwd;
  float loss;
  float dLx[2048], dGz[512];
} run_out;

static void run_mi(wcmi_ctx *ctx, wcmi_mi_cfg cfg, const problem *p, float dloss, run_out *o) {
  size_t bytes = wcmi_mi_workspace_bytes(p->N, p->H, p->L);
  void *ws = wcmi_alloc(ctx, bytes, 1);
  o->rc_fwd = wcmi_mi_forward(ctx, cfg, p->N, p->H, p->L, p->Lx, p->Gz, ws, bytes, &o->loss);
  o->rc_bwd = wcmi_mi_backward(ctx, cfg, p->N, p->H, p->L, p->Lx, p->Gz, dloss, ws, bytes, o->dLx, o->dGz);
  wcmi_free(ws);
}

/* Loss within 1e-5 (abs) + 1e-5 (rel) of the double reference; both gradients within
 * 1e-5 * max|g| + 1e-4 * |g| of the central difference of the reference. The float path rounds
 * scores to ~1e-7 relative, so these leave a margin of about 10x. */
static void check_against_reference(wcmi_ctx *ctx, wcmi_mi_cfg cfg, problem *p, double loss_rtol, double grad_rtol,
                                    double grad_atol_frac) {
  run_out o;
  run_mi(ctx, cfg, p, 1.0f, &o);
  CHECK_MSG(o.rc_fwd == WCMI_OK && o.rc_bwd == WCMI_OK, "%s: rc %d/%d: %s", cfg_name(cfg), o.rc_fwd, o.rc_bwd, ctx->msg);
  to_double(p);
  double want = ref_loss(cfg, p->N, p->H, p->L, p->dLx, p->dGz);
  CHECK_MSG(fabs(o.loss - want) <= 1e-5 + loss_rtol * fabs(want), "%s: loss %.9g vs reference %.9g", cfg_name(cfg),
            (double)o.loss, want);
  double gLx[2048], gGz[512];
  ref_fd_grad(cfg, p->N, p->H, p->L, p->dLx, p->dGz, gLx, gGz);
  check_grad("dLx", cfg, o.dLx, gLx, p->N * p->H * p->L, grad_rtol, grad_atol_frac);
  check_grad("dGz", cfg, o.dGz, gGz, p->N * p->H, grad_rtol, grad_atol_frac);
}

static wcmi_mi_cfg cfg_of(wcmi_mi_estimator e, wcmi_mi_measure m) {
  wcmi_mi_cfg c = {e, m};
  return c;
}

static wcmi_ctx make_ctx(int threads) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, threads);
  return ctx;
}

/* ---- tests ----------------------------------------------------------------------------------- */
static void test_names_parse_and_unknown_names_are_rejected(void) {
  wcmi_ctx ctx = make_ctx(1);
  wcmi_mi_estimator e = WCMI_MI_FD;
  CHECK_OK(&ctx, wcmi_mi_parse_estimator(&ctx, "dv", &e));
  CHECK(e == WCMI_MI_DV);
  CHECK_OK(&ctx, wcmi_mi_parse_estimator(&ctx, "nce", &e));
  CHECK(e == WCMI_MI_NCE);
  for (int k = 0; k < 3; k++) {
    wcmi_mi_estimator got;
    CHECK_OK(&ctx, wcmi_mi_parse_estimator(&ctx, wcmi_mi_estimator_name((wcmi_mi_estimator)k), &got));
    CHECK(got == (wcmi_mi_estimator)k);
  }
  for (int k = 0; k < N_MEASURES; k++) {
    wcmi_mi_measure got;
    CHECK_OK(&ctx, wcmi_mi_parse_measure(&ctx, wcmi_mi_measure_name(ALL_MEASURES[k]), &got));
    CHECK(got == ALL_MEASURES[k]);
  }
  e = WCMI_MI_NCE;
  CHECK(wcmi_mi_parse_estimator(&ctx, "mine", &e) == WCMI_EINVAL);
  CHECK(e == WCMI_MI_NCE);
  CHECK(strstr(wcmi_errmsg(&ctx), "mine") != NULL);
  wcmi_mi_measure m = WCMI_MEASURE_KL;
  CHECK(wcmi_mi_parse_measure(&ctx, "JSD", &m) == WCMI_EINVAL);
  CHECK(wcmi_mi_parse_measure(&ctx, NULL, &m) == WCMI_EINVAL);
  CHECK(m == WCMI_MEASURE_KL);
  CHECK(strstr(wcmi_errmsg(&ctx), "jsd") != NULL);
  wcmi_mi_cfg d = wcmi_mi_default_cfg();
  CHECK(d.estimator == WCMI_MI_DV && d.measure == WCMI_MEASURE_JSD);
}

static void test_scores_are_gz_dot_lx_per_location(void) {
  wcmi_ctx ctx = make_ctx(2);
  (void)ctx;
  for (int L = 1; L <= 4; L += 3) {
    problem p;
    fill_random(&p, 5, 3, L, 11, 1.0f);
    to_double(&p);
    float u[5 * 5 * 4];
    wcmi_mi_scores(5, 3, L, p.Lx, p.Gz, u);
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 5; j++)
        for (int l = 0; l < L; l++)
          CHECK_CLOSE(u[(i * 5 + j) * L + l], ref_score(5, 3, L, p.dLx, p.dGz, i, j, l), 1e-6, 1e-6);
  }
}

/* The score GEMMs run in blocks of samples, one block range per thread, with per-thread dGz partials.
 * N = 20 at L = 49 gives 3-4 blocks (one short) at 1-3 threads: u, dGz and dLx are checked against
 * double sums (the gradients from the du the kernel itself left in the workspace). A workspace sized
 * for one thread but used with three falls back to one thread's blocks and stays correct. */
static void test_blocked_scores_and_gradients_match_reference_at_1_2_3_threads(void) {
  enum { N = 20, H = 8, L = 49 };
  static float Lx[N * H * L], Gz[N * H], dLx[N * H * L], dGz[N * H];
  static double Lxd[N * H * L], Gzd[N * H];
  wcmi_rng r;
  wcmi_rng_seed(&r, 31);
  for (int i = 0; i < N * H * L; i++) Lxd[i] = Lx[i] = 0.3f * wcmi_rng_normal(&r);
  for (int i = 0; i < N * H; i++) Gzd[i] = Gz[i] = 0.3f * wcmi_rng_normal(&r);
  for (int run = 0; run < 4; run++) {
    const int T = run < 3 ? run + 1 : 3;
    wcmi_ctx ctx = make_ctx(run < 3 ? T : 1);
    size_t bytes = wcmi_mi_workspace_bytes(N, H, L); /* sized for the thread count set just now */
    wcmi_set_threads(&ctx, T);
    void *ws = malloc(bytes);
    float loss;
    CHECK_OK(&ctx, wcmi_mi_forward(&ctx, cfg_of(WCMI_MI_DV, 0), N, H, L, Lx, Gz, ws, bytes, &loss));
    CHECK_OK(&ctx, wcmi_mi_backward(&ctx, cfg_of(WCMI_MI_DV, 0), N, H, L, Lx, Gz, 1.0f, ws, bytes, dLx, dGz));
    mi_ws w;
    CHECK(wcmi_mi_ws_layout(N, H, L, T, ws, bytes, &w));
    CHECK_MSG(w.blk_threads == (run < 3 ? T : 1), "run %d: scratch laid out for %d threads", run, w.blk_threads);
    int bad = 0;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++)
        for (int l = 0; l < L; l++) {
          const double want = ref_score(N, H, L, Lxd, Gzd, i, j, l);
          bad += fabs(w.u[(i * N + j) * L + l] - want) > 1e-5 + 1e-5 * fabs(want);
        }
    for (int i = 0; i < N; i++)
      for (int c = 0; c < H; c++) {
        double want = 0.0;
        for (int j = 0; j < N; j++)
          for (int l = 0; l < L; l++) want += (double)w.du[(i * N + j) * L + l] * Lxd[(j * H + c) * L + l];
        bad += fabs(dGz[i * H + c] - want) > 1e-6 + 1e-4 * fabs(want);
      }
    for (int j = 0; j < N; j++)
      for (int c = 0; c < H; c++)
        for (int l = 0; l < L; l++) {
          double want = 0.0;
          for (int i = 0; i < N; i++) want += (double)w.du[(i * N + j) * L + l] * Gzd[i * H + c];
          bad += fabs(dLx[(j * H + c) * L + l] - want) > 1e-6 + 1e-4 * fabs(want);
        }
    CHECK_MSG(bad == 0, "run %d (%d threads): %d entries of u, dGz, dLx off the double reference", run, T, bad);
    free(ws);
  }
}

static void test_dv_loss_and_gradients_match_double_reference(void) {
  wcmi_ctx ctx = make_ctx(2);
  problem p;
  fill_random(&p, 5, 3, 4, 1, 0.7f);
  check_against_reference(&ctx, cfg_of(WCMI_MI_DV, 0), &p, 1e-5, 1e-4, 1e-5);
  fill_random(&p, 5, 3, 1, 2, 0.7f); // vector features: the single-GEMM path
  check_against_reference(&ctx, cfg_of(WCMI_MI_DV, 0), &p, 1e-5, 1e-4, 1e-5);
}

static void test_fd_every_measure_loss_and_gradients_match_double_reference(void) {
  wcmi_ctx ctx = make_ctx(2);
  for (int k = 0; k < N_MEASURES; k++) {
    problem p;
    fill_random(&p, 5, 3, 4, 100 + k, 0.7f);
    check_against_reference(&ctx, cfg_of(WCMI_MI_FD, ALL_MEASURES[k]), &p, 1e-5, 1e-4, 1e-5);
    fill_random(&p, 5, 3, 1, 200 + k, 0.7f);
    check_against_reference(&ctx, cfg_of(WCMI_MI_FD, ALL_MEASURES[k]), &p, 1e-5, 1e-4, 1e-5);
  }
}

static void test_nce_loss_and_gradients_match_double_reference(void) {
  wcmi_ctx ctx = make_ctx(2);
  problem p;
  fill_random(&p, 5, 3, 4, 3, 0.7f);
  check_against_reference(&ctx, cfg_of(WCMI_MI_NCE, 0), &p, 1e-5, 1e-4, 1e-5);
  fill_random(&p, 5, 3, 1, 4, 0.7f);
  check_against_reference(&ctx, cfg_of(WCMI_MI_NCE, 0), &p, 1e-5, 1e-4, 1e-5);
}

static void test_two_sample_batches_match_reference(void) {
  wcmi_ctx ctx = make_ctx(1);
  problem p;
  fill_random(&p, 2, 3, 4, 5, 0.7f);
  check_against_reference(&ctx, cfg_of(WCMI_MI_DV, 0), &p, 1e-5, 1e-4, 1e-5);
  check_against_reference(&ctx, cfg_of(WCMI_MI_NCE, 0), &p, 1e-5, 1e-4, 1e-5);
  check_against_reference(&ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_JSD), &p, 1e-5, 1e-4, 1e-5);
}

/* Scores scaled so the largest |u| is 80: exp(80) ~ 5.5e34 would overflow a float sum of a few
 * thousand terms without the max shift. Loss within 1e-5 relative, gradients within 1e-3 relative
 * + 1e-4 * max (float scores near 80 carry ~1e-5 absolute error, which exp turns into ~1e-5
 * relative). */
static void test_scores_near_80_do_not_overflow(void) {
  wcmi_ctx ctx = make_ctx(2);
  for (int sign = -1; sign <= 1; sign += 2) {
    problem p;
    fill_random(&p, 5, 3, 4, 7, 1.0f);
    float u[5 * 5 * 4];
    wcmi_mi_scores(5, 3, 4, p.Lx, p.Gz, u);
    float umax = 0;
    for (int k = 0; k < 100; k++) umax = fmaxf(umax, fabsf(u[k]));
    for (int k = 0; k < 15; k++) p.Gz[k] *= sign * 80.0f / umax;
    wcmi_mi_cfg cfgs[2 + N_MEASURES];
    int n = 0;
    cfgs[n++] = cfg_of(WCMI_MI_DV, 0);
    cfgs[n++] = cfg_of(WCMI_MI_NCE, 0);
    for (int k = 0; k < N_MEASURES; k++) cfgs[n++] = cfg_of(WCMI_MI_FD, ALL_MEASURES[k]);
    for (int c = 0; c < n; c++) {
      run_out o;
      run_mi(&ctx, cfgs[c], &p, 1.0f, &o);
      CHECK_MSG(o.rc_fwd == WCMI_OK && isfinite(o.loss), "%s at |u| = 80: rc %d loss %g", cfg_name(cfgs[c]), o.rc_fwd,
                (double)o.loss);
      CHECK(wcmi_all_finite(o.dLx, 60) && wcmi_all_finite(o.dGz, 15));
      check_against_reference(&ctx, cfgs[c], &p, 1e-5, 1e-3, 1e-4);
    }
  }
}

static void test_dv_and_fd_reject_a_single_sample_nce_gives_zero(void) {
  wcmi_ctx ctx = make_ctx(1);
  problem p;
  fill_random(&p, 1, 3, 4, 9, 1.0f);
  run_out o;
  run_mi(&ctx, cfg_of(WCMI_MI_DV, 0), &p, 1.0f, &o);
  CHECK(o.rc_fwd == WCMI_EINVAL && o.rc_bwd == WCMI_EINVAL);
  CHECK_MSG(strstr(wcmi_errmsg(&ctx), "N >= 2") != NULL, "message: %s", wcmi_errmsg(&ctx));
  run_mi(&ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_KL), &p, 1.0f, &o);
  CHECK(o.rc_fwd == WCMI_EINVAL);
  CHECK(wcmi_mi_check(&ctx, cfg_of(WCMI_MI_DV, 0), 2, 3, 4) == WCMI_OK);
  // InfoNCE with one sample: the positive is its only candidate, log-probability 0.
  run_mi(&ctx, cfg_of(WCMI_MI_NCE, 0), &p, 1.0f, &o);
  CHECK(o.rc_fwd == WCMI_OK && o.rc_bwd == WCMI_OK);
  CHECK(o.loss == 0.0f);
  CHECK(wcmi_mi_estimate(cfg_of(WCMI_MI_NCE, 0), 1, 4, o.loss) == 0.0);
  for (int k = 0; k < 12; k++) CHECK(o.dLx[k] == 0.0f);
  for (int k = 0; k < 3; k++) CHECK(o.dGz[k] == 0.0f);
}

// Exact scores: Gz_i = a e_i and Lx_j[c, loc] = +1 if c == j else -neg_sign, so u[i, i] = a and
// u[i, j] = -neg_sign * a.
static void make_separated(problem *p, int N, int L, float a, float neg_sign) {
  p->N = N, p->H = N, p->L = L;
  memset(p->Gz, 0, sizeof p->Gz);
  for (int i = 0; i < N; i++) p->Gz[i * N + i] = a;
  for (int j = 0; j < N; j++)
    for (int c = 0; c < N; c++)
      for (int l = 0; l < L; l++) p->Lx[(j * N + c) * L + l] = c == j ? 1.0f : -neg_sign;
}

/* Known limits when positives score far above negatives (positives at a, negatives at -a):
 * InfoNCE -> log K with K = 1 + (N-1)L candidates (its cap); JSD -> 2 ln 2; GAN -> 0 (= 2 ln 2 - ln 4);
 * H2 -> 2; DV = u_pos - u_neg = 2a (DV has no cap: it grows with the score gap). Checked at a = 30 and
 * a = 1000. And with every score equal (no information) DV, NCE and JSD at score 0 estimate exactly 0.
 * Tolerance 1e-4. */
static void check_separated_limits(wcmi_ctx *ctx, int N, int L, float a) {
  problem p;
  make_separated(&p, N, L, a, 1.0f);
  run_out o;
  run_mi(ctx, cfg_of(WCMI_MI_NCE, 0), &p, 1.0f, &o);
  CHECK(o.rc_fwd == WCMI_OK && o.rc_bwd == WCMI_OK && wcmi_all_finite(o.dLx, N * N * L));
  CHECK_CLOSE(wcmi_mi_estimate(cfg_of(WCMI_MI_NCE, 0), N, L, o.loss), log(1.0 + (N - 1.0) * L), 1e-4, 0);
  CHECK(wcmi_mi_estimate(cfg_of(WCMI_MI_NCE, 0), N, L, o.loss) <= log(1.0 + (N - 1.0) * L) + 1e-6);
  run_mi(ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_JSD), &p, 1.0f, &o);
  CHECK(o.rc_fwd == WCMI_OK && o.rc_bwd == WCMI_OK && wcmi_all_finite(o.dLx, N * N * L));
  CHECK_CLOSE(-o.loss, 2 * log(2.0), 1e-4, 0);
  run_mi(ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_GAN), &p, 1.0f, &o);
  CHECK(o.rc_fwd == WCMI_OK && o.rc_bwd == WCMI_OK && wcmi_all_finite(o.dLx, N * N * L));
  CHECK_CLOSE(-o.loss, 0.0, 1e-4, 0);
  run_mi(ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_H2), &p, 1.0f, &o);
  CHECK_CLOSE(-o.loss, 2.0, 1e-4, 0);
  run_mi(ctx, cfg_of(WCMI_MI_DV, 0), &p, 1.0f, &o);
  CHECK(o.rc_fwd == WCMI_OK && o.rc_bwd == WCMI_OK && wcmi_all_finite(o.dLx, N * N * L));
  CHECK_CLOSE(wcmi_mi_estimate(cfg_of(WCMI_MI_DV, 0), N, L, o.loss), 2.0 * a, 1e-4, 1e-6);
}

static void test_estimates_reach_their_known_limits(void) {
  wcmi_ctx ctx = make_ctx(2);
  const int N = 8, L = 3;
  problem p;
  run_out o;
  check_separated_limits(&ctx, N, L, 30.0f);
  // At |u| = 1000 even double exp overflows: only the shifted / softplus forms survive.
  check_separated_limits(&ctx, N, L, 1000.0f);
  // Reversed (positives at -1000, negatives at +1000): exact values, tolerance 1e-6 relative.
  make_separated(&p, N, L, -1000.0f, 1.0f);
  run_mi(&ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_JSD), &p, 1.0f, &o);
  CHECK_CLOSE(-o.loss, 2 * log(2.0) - 2000.0, 0, 1e-6);
  run_mi(&ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_GAN), &p, 1.0f, &o);
  CHECK_CLOSE(-o.loss, -2000.0, 0, 1e-6);
  run_mi(&ctx, cfg_of(WCMI_MI_DV, 0), &p, 1.0f, &o);
  CHECK_CLOSE(-o.loss, -2000.0, 0, 1e-6);
  run_mi(&ctx, cfg_of(WCMI_MI_NCE, 0), &p, 1.0f, &o);
  CHECK_CLOSE(o.loss, 2000.0 + log((N - 1.0) * L), 0, 1e-6);
  CHECK(wcmi_all_finite(o.dLx, N * N * L) && wcmi_all_finite(o.dGz, N * N));

  make_separated(&p, N, L, 0.0f, 1.0f); // every score 0
  run_mi(&ctx, cfg_of(WCMI_MI_DV, 0), &p, 1.0f, &o);
  CHECK_CLOSE(o.loss, 0.0, 1e-6, 0);
  run_mi(&ctx, cfg_of(WCMI_MI_NCE, 0), &p, 1.0f, &o);
  CHECK_CLOSE(wcmi_mi_estimate(cfg_of(WCMI_MI_NCE, 0), N, L, o.loss), 0.0, 1e-5, 0);
  run_mi(&ctx, cfg_of(WCMI_MI_FD, WCMI_MEASURE_JSD), &p, 1.0f, &o);
  CHECK_CLOSE(o.loss, 0.0, 1e-6, 0);
}

static void test_upstream_gradient_scales_and_null_outputs_are_skipped(void) {
  wcmi_ctx ctx = make_ctx(2);
  problem p;
  fill_random(&p, 5, 3, 4, 21, 0.7f);
  wcmi_mi_cfg cfgs[3] = {cfg_of(WCMI_MI_DV, 0), cfg_of(WCMI_MI_FD, WCMI_MEASURE_KL), cfg_of(WCMI_MI_NCE, 0)};
  for (int c = 0; c < 3; c++) {
    run_out one, half;
    run_mi(&ctx, cfgs[c], &p, 1.0f, &one);
    run_mi(&ctx, cfgs[c], &p, -0.5f, &half);
    for (int k = 0; k < 60; k++) CHECK_CLOSE(half.dLx[k], -0.5 * one.dLx[k], 1e-7, 1e-5);
    for (int k = 0; k < 15; k++) CHECK_CLOSE(half.dGz[k], -0.5 * one.dGz[k], 1e-7, 1e-5);
    // Only dGz; and backward twice gives the same (the workspace keeps the forward's state).
    size_t bytes = wcmi_mi_workspace_bytes(5, 3, 4);
    void *ws = wcmi_alloc(&ctx, bytes, 1);
    float loss, dGz[15], dLx[60];
    CHECK_OK(&ctx, wcmi_mi_forward(&ctx, cfgs[c], 5, 3, 4, p.Lx, p.Gz, ws, bytes, &loss));
    CHECK_OK(&ctx, wcmi_mi_backward(&ctx, cfgs[c], 5, 3, 4, p.Lx, p.Gz, 1.0f, ws, bytes, NULL, dGz));
    CHECK(memcmp(dGz, one.dGz, sizeof dGz) == 0);
    CHECK_OK(&ctx, wcmi_mi_backward(&ctx, cfgs[c], 5, 3, 4, p.Lx, p.Gz, 1.0f, ws, bytes, dLx, NULL));
    CHECK(memcmp(dLx, one.dLx, sizeof dLx) == 0);
    wcmi_free(ws);
  }
}

// Same inputs, same threads: bit-identical loss and gradients, on a size where the row loops
// split across threads.
static void test_same_threads_give_bit_identical_results(void) {
  wcmi_ctx ctx = make_ctx(2);
  const int N = 32, H = 16, L = 9;
  size_t nlx = (size_t)N * H * L, ngz = (size_t)N * H;
  float *Lx = wcmi_alloc(&ctx, nlx, sizeof(float)), *Gz = wcmi_alloc(&ctx, ngz, sizeof(float));
  float *g[2][2];
  wcmi_rng r;
  wcmi_rng_seed(&r, 77);
  for (size_t k = 0; k < nlx; k++) Lx[k] = wcmi_rng_normal(&r);
  for (size_t k = 0; k < ngz; k++) Gz[k] = 0.3f * wcmi_rng_normal(&r);
  size_t bytes = wcmi_mi_workspace_bytes(N, H, L);
  void *ws = wcmi_alloc(&ctx, bytes, 1);
  for (int e = 0; e < 3; e++) {
    wcmi_mi_cfg cfg = cfg_of((wcmi_mi_estimator)e, WCMI_MEASURE_JSD);
    float loss[2];
    for (int rep = 0; rep < 2; rep++) {
      g[rep][0] = wcmi_alloc(&ctx, nlx, sizeof(float));
      g[rep][1] = wcmi_alloc(&ctx, ngz, sizeof(float));
      CHECK_OK(&ctx, wcmi_mi_forward(&ctx, cfg, N, H, L, Lx, Gz, ws, bytes, &loss[rep]));
      CHECK_OK(&ctx, wcmi_mi_backward(&ctx, cfg, N, H, L, Lx, Gz, 1.0f, ws, bytes, g[rep][0], g[rep][1]));
    }
    CHECK(memcmp(&loss[0], &loss[1], sizeof(float)) == 0);
    CHECK(memcmp(g[0][0], g[1][0], nlx * sizeof(float)) == 0);
    CHECK(memcmp(g[0][1], g[1][1], ngz * sizeof(float)) == 0);
    for (int rep = 0; rep < 2; rep++) wcmi_free(g[rep][0]), wcmi_free(g[rep][1]);
  }
  wcmi_free(ws);
  wcmi_free(Lx);
  wcmi_free(Gz);
}

static void test_bad_arguments_are_rejected_with_a_message(void) {
  wcmi_ctx ctx = make_ctx(1);
  problem p;
  fill_random(&p, 5, 3, 4, 1, 1.0f);
  size_t bytes = wcmi_mi_workspace_bytes(5, 3, 4);
  CHECK(bytes > 0);
  CHECK(wcmi_mi_workspace_bytes(0, 3, 4) == 0);
  CHECK(wcmi_mi_workspace_bytes(1 << 30, 3, 1 << 30) == 0);
  void *ws = wcmi_alloc(&ctx, bytes, 1);
  float loss;
  wcmi_mi_cfg dv = wcmi_mi_default_cfg();
  CHECK(wcmi_mi_forward(&ctx, dv, 5, 3, 4, p.Lx, p.Gz, ws, bytes - 1, &loss) == WCMI_EINVAL);
  CHECK(strstr(wcmi_errmsg(&ctx), "workspace") != NULL);
  CHECK(wcmi_mi_forward(&ctx, dv, 5, 3, 4, NULL, p.Gz, ws, bytes, &loss) == WCMI_EINVAL);
  CHECK(wcmi_mi_forward(&ctx, dv, 5, 0, 4, p.Lx, p.Gz, ws, bytes, &loss) == WCMI_EINVAL);
  CHECK(wcmi_mi_forward(&ctx, cfg_of(WCMI_MI_FD, (wcmi_mi_measure)42), 5, 3, 4, p.Lx, p.Gz, ws, bytes, &loss) ==
        WCMI_EINVAL);
  CHECK(wcmi_mi_forward(&ctx, cfg_of((wcmi_mi_estimator)9, 0), 5, 3, 4, p.Lx, p.Gz, ws, bytes, &loss) == WCMI_EINVAL);
  // A workspace pointer that is not 64-byte aligned still works (the layout aligns inside).
  void *big = wcmi_alloc(&ctx, bytes + 8, 1);
  CHECK_OK(&ctx, wcmi_mi_forward(&ctx, dv, 5, 3, 4, p.Lx, p.Gz, (char *)big + 8, bytes, &loss));
  // NaN features: WCMI_ENUMERIC.
  p.Lx[3] = NAN;
  CHECK(wcmi_mi_forward(&ctx, dv, 5, 3, 4, p.Lx, p.Gz, ws, bytes, &loss) == WCMI_ENUMERIC);
  CHECK(strstr(wcmi_errmsg(&ctx), "dv") != NULL);
  wcmi_free(big);
  wcmi_free(ws);
}

/* Large critic scores (std ~60, as a 2048-wide critic gives at initialization) make most softmax
 * weights of the negatives underflow. The gradient must store them as 0, never as float denormals,
 * which would send every GEMM reading du down the CPU's ~100x slower path. */
static void test_score_gradients_hold_no_denormals(void) {
  enum { N = 16, H = 64, L = 9 };
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_rng r;
  wcmi_rng_seed(&r, 11);
  static float Lx[N * H * L], Gz[N * H], dLx[N * H * L], dGz[N * H];
  for (int i = 0; i < N * H * L; i++) Lx[i] = 2.8f * wcmi_rng_normal(&r);
  for (int i = 0; i < N * H; i++) Gz[i] = 2.8f * wcmi_rng_normal(&r);
  size_t bytes = wcmi_mi_workspace_bytes(N, H, L);
  void *ws = malloc(bytes);
  const wcmi_mi_cfg cfgs[3] = {{WCMI_MI_DV, WCMI_MEASURE_JSD}, {WCMI_MI_FD, WCMI_MEASURE_JSD}, {WCMI_MI_NCE, WCMI_MEASURE_JSD}};
  for (int k = 0; k < 3; k++) {
    float loss;
    CHECK_OK(&ctx, wcmi_mi_forward(&ctx, cfgs[k], N, H, L, Lx, Gz, ws, bytes, &loss));
    CHECK_OK(&ctx, wcmi_mi_backward(&ctx, cfgs[k], N, H, L, Lx, Gz, 1.0f, ws, bytes, dLx, dGz));
    mi_ws w;
    CHECK(wcmi_mi_ws_layout(N, H, L, 1, ws, bytes, &w));
    int denormal = 0, zero = 0;
    for (int i = 0; i < N * N * L; i++) {
      float v = fabsf(w.du[i]);
      denormal += v > 0.0f && v < FLT_MIN;
      zero += v == 0.0f;
    }
    CHECK_MSG(denormal == 0, "%s: %d denormal entries in du", wcmi_mi_estimator_name(cfgs[k].estimator), denormal);
    if (k == 0) CHECK_MSG(zero > 0, "dv: scores were not large enough to underflow any weight (test is vacuous)");
  }
  free(ws);
}

/* mi_expf, the DV bound's vectorizable exp: within 2e-7 relative of double exp over [-87, 88] (a
 * million points, plus the integers and half-integers where the reduction switches n), exactly 1 at
 * 0, clamped outside, NaN kept. */
static void test_mi_expf_matches_double_exp(void) {
  double worst = 0.0;
  float worst_x = 0.0f;
  for (int k = 0; k <= 1000000; k++) {
    const float x = -87.0f + 175.0f * (float)k / 1000000.0f;
    const double ref = exp((double)x), rel = fabs((double)mi_expf(x) - ref) / ref;
    if (rel > worst) worst = rel, worst_x = x;
  }
  for (int k = -174; k <= 176; k++) {
    const float x = 0.5f * (float)k, xs[3] = {nextafterf(x, -INFINITY), x, nextafterf(x, INFINITY)};
    for (int q = 0; q < 3; q++) {
      if (xs[q] < -87.0f || xs[q] > 88.0f) continue; /* clamped: checked below */
      const double ref = exp((double)xs[q]), rel = fabs((double)mi_expf(xs[q]) - ref) / ref;
      if (rel > worst) worst = rel, worst_x = xs[q];
    }
  }
  CHECK_MSG(worst < 2e-7, "mi_expf: relative error %.3g at x = %.9g", worst, (double)worst_x);
  CHECK(mi_expf(0.0f) == 1.0f);
  CHECK(mi_expf(-1000.0f) == mi_expf(-87.0f) && mi_expf(-87.0f) > 0.0f);
  CHECK(mi_expf(1000.0f) == mi_expf(88.0f) && isfinite(mi_expf(88.0f)));
  CHECK(isnan(mi_expf(NAN)));
}

int main(void) {
  RUN(test_score_gradients_hold_no_denormals);
  RUN(test_names_parse_and_unknown_names_are_rejected);
  RUN(test_scores_are_gz_dot_lx_per_location);
  RUN(test_blocked_scores_and_gradients_match_reference_at_1_2_3_threads);
  RUN(test_mi_expf_matches_double_exp);
  RUN(test_dv_loss_and_gradients_match_double_reference);
  RUN(test_fd_every_measure_loss_and_gradients_match_double_reference);
  RUN(test_nce_loss_and_gradients_match_double_reference);
  RUN(test_two_sample_batches_match_reference);
  RUN(test_scores_near_80_do_not_overflow);
  RUN(test_dv_and_fd_reject_a_single_sample_nce_gives_zero);
  RUN(test_estimates_reach_their_known_limits);
  RUN(test_upstream_gradient_scales_and_null_outputs_are_skipped);
  RUN(test_same_threads_give_bit_identical_results);
  RUN(test_bad_arguments_are_rejected_with_a_message);
  return wt_finish();
}
