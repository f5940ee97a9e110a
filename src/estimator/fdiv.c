/* Fenchel-dual ("fd") f-divergence estimators, f-GAN / Deep InfoMax form (PAPER.md section 2).
 * Each measure gives a positive expectation term f_pos(p) for the positives u[i, i, loc] and a
 * negative one f_neg(q) for the negatives u[i, j, loc], j != i:
 *   loss = mean over negatives of f_neg - mean over positives of f_pos
 * Every location has N positives and N(N-1) negatives, so averaging per location and then over
 * locations equals averaging over all of them. Terms are evaluated in double. */
#include "estimator/mi_internal.h"

#include <math.h>

static const double LN2 = 0.69314718055994530942;

// log(1 + exp(x)) without overflow for large x or loss of precision for very negative x.
static double softplus(double x) { return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

static double sign_of(double x) { return (x > 0.0) - (x < 0.0); }

static double f_pos(wcmi_mi_measure m, double p) {
  switch (m) {
  case WCMI_MEASURE_JSD: return LN2 - softplus(-p);
  case WCMI_MEASURE_GAN: return -softplus(-p);
  case WCMI_MEASURE_X2: return p * p;
  case WCMI_MEASURE_KL: return p;
  case WCMI_MEASURE_RKL: return -exp(-p);
  case WCMI_MEASURE_H2: return 1.0 - exp(-p);
  case WCMI_MEASURE_W1: return p;
  }
  return NAN;
}

static double df_pos(wcmi_mi_measure m, double p) {
  switch (m) {
  case WCMI_MEASURE_JSD:
  case WCMI_MEASURE_GAN: return sigmoid(-p);
  case WCMI_MEASURE_X2: return 2.0 * p;
  case WCMI_MEASURE_KL: return 1.0;
  case WCMI_MEASURE_RKL: return exp(-p);
  case WCMI_MEASURE_H2: return exp(-p);
  case WCMI_MEASURE_W1: return 1.0;
  }
  return NAN;
}

// softplus(-q) + q is rewritten as softplus(q) (an identity) so large negative q loses no digits.
static double f_neg(wcmi_mi_measure m, double q) {
  switch (m) {
  case WCMI_MEASURE_JSD: return softplus(q) - LN2;
  case WCMI_MEASURE_GAN: return softplus(q);
  case WCMI_MEASURE_X2: return -0.5 * (fabs(q) + 1.0) * (fabs(q) + 1.0);
  case WCMI_MEASURE_KL: return exp(q - 1.0);
  case WCMI_MEASURE_RKL: return q - 1.0;
  case WCMI_MEASURE_H2: return exp(q) - 1.0;
  case WCMI_MEASURE_W1: return q;
  }
  return NAN;
}

// X2 at q == 0 has a kink; the subgradient 0 is used there.
static double df_neg(wcmi_mi_measure m, double q) {
  switch (m) {
  case WCMI_MEASURE_JSD:
  case WCMI_MEASURE_GAN: return sigmoid(q);
  case WCMI_MEASURE_X2: return -(fabs(q) + 1.0) * sign_of(q);
  case WCMI_MEASURE_KL: return exp(q - 1.0);
  case WCMI_MEASURE_RKL: return 1.0;
  case WCMI_MEASURE_H2: return exp(q);
  case WCMI_MEASURE_W1: return 1.0;
  }
  return NAN;
}

double wcmi_mi_fd_loss(const mi_ws *ws, int N, int L, wcmi_mi_measure m, int nt) {
  const float *u = ws->u;
  double *neg_sum = ws->row_a, *pos_sum = ws->row_b; // per row i, combined below in order
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int i = 0; i < N; i++) {
    double sn = 0.0, sp = 0.0;
    for (int j = 0; j < N; j++) {
      const float *uij = u + ((size_t)i * N + j) * L;
      if (j == i) {
        for (int loc = 0; loc < L; loc++) sp += f_pos(m, uij[loc]);
      } else {
        for (int loc = 0; loc < L; loc++) sn += f_neg(m, uij[loc]);
      }
    }
    neg_sum[i] = sn;
    pos_sum[i] = sp;
  }
  double sn = 0.0, sp = 0.0;
  for (int i = 0; i < N; i++) {
    sn += neg_sum[i];
    sp += pos_sum[i];
  }
  return sn / ((double)L * N * (N - 1)) - sp / ((double)L * N);
}

void wcmi_mi_fd_grad(const mi_ws *ws, int N, int L, wcmi_mi_measure m, float dloss, int nt) {
  const float *u = ws->u;
  float *du = ws->du;
  const double neg_scale = (double)dloss / ((double)L * N * (N - 1));
  const double pos_scale = -(double)dloss / ((double)L * N);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < N; j++) {
      const float *uij = u + ((size_t)i * N + j) * L;
      float *duij = du + ((size_t)i * N + j) * L;
      if (j == i) {
        for (int loc = 0; loc < L; loc++) duij[loc] = mi_du(pos_scale * df_pos(m, uij[loc]));
      } else {
        for (int loc = 0; loc < L; loc++) duij[loc] = mi_du(neg_scale * df_neg(m, uij[loc]));
      }
    }
  }
}
