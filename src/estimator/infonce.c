/* InfoNCE over the score tensor (PAPER.md section 2). For each sample i and location loc the
 * candidates are the positive u[i, i, loc] and every negative u[i, j, l'] with j != i, at every
 * location l'; the loss is minus the mean over (i, loc) of the positive's log-softmax probability.
 * Self-pairs at other locations (u[i, i, l'], l' != loc) are excluded exactly; the authors' code
 * instead sets them to -10 before the softmax.
 *
 * All (i, loc) of one row share the negatives, so per row we keep their max m_i and
 * S_i = sum_{j != i, l'} exp(u[i, j, l'] - m_i); then
 *   lse(i, loc) = log( exp(u[i, i, loc]) + S_i exp(m_i) ),
 * evaluated with the larger of the two terms factored out, so no score magnitude overflows. */
#include "estimator/mi_internal.h"

#include <math.h>

// log(exp(a) + s * exp(m)) for s >= 0, without overflow; s == 0 means "no negatives".
static double log_add_scaled(double a, double m, double s) {
  if (s <= 0.0) return a;
  double top = a > m ? a : m;
  return top + log(exp(a - top) + s * exp(m - top));
}

// Max and shifted sum of exp over the negatives of row i. With N == 1 there are none: s = 0.
static void nce_row_negatives(const float *u, int N, int L, int i, double *m_out, double *s_out) {
  double m = -INFINITY;
  for (int j = 0; j < N; j++) {
    if (j == i) continue;
    const float *uij = u + ((size_t)i * N + j) * L;
    for (int l = 0; l < L; l++) m = fmax(m, uij[l]);
  }
  double s = 0.0;
  for (int j = 0; j < N; j++) {
    if (j == i) continue;
    const float *uij = u + ((size_t)i * N + j) * L;
    for (int l = 0; l < L; l++) s += exp((double)uij[l] - m);
  }
  *m_out = m;
  *s_out = s;
}

double wcmi_mi_nce_loss(const mi_ws *ws, int N, int L, int nt) {
  const float *u = ws->u;
  double *row_m = ws->row_a, *row_s = ws->row_b, *row_loss = ws->row_c;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int i = 0; i < N; i++) {
    nce_row_negatives(u, N, L, i, &row_m[i], &row_s[i]);
    const float *uii = u + ((size_t)i * N + i) * L;
    double acc = 0.0;
    for (int loc = 0; loc < L; loc++) acc += log_add_scaled(uii[loc], row_m[i], row_s[i]) - uii[loc];
    row_loss[i] = acc;
  }
  double total = 0.0;
  for (int i = 0; i < N; i++) total += row_loss[i];
  return total / ((double)N * L);
}

// d loss / d u[i, i, loc] = -(1 - p_pos(i, loc)) / (N L)
// d loss / d u[i, j, l'] = exp(u[i, j, l']) * sum_loc exp(-lse(i, loc)) / (N L), j != i
void wcmi_mi_nce_grad(const mi_ws *ws, int N, int L, float dloss, int nt) {
  const float *u = ws->u;
  float *du = ws->du;
  const double *row_m = ws->row_a, *row_s = ws->row_b;
  const double scale = (double)dloss / ((double)N * L);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int i = 0; i < N; i++) {
    const float *uii = u + ((size_t)i * N + i) * L;
    float *duii = du + ((size_t)i * N + i) * L;
    const double m = row_m[i];
    // w = sum_loc exp(m - lse(i, loc)) <= L / S_i <= L since lse >= m + log S_i and S_i >= 1.
    double w = 0.0;
    for (int loc = 0; loc < L; loc++) {
      double lse = log_add_scaled(uii[loc], m, row_s[i]);
      duii[loc] = mi_du(-scale * (1.0 - exp((double)uii[loc] - lse)));
      if (row_s[i] > 0.0) w += exp(m - lse);
    }
    for (int j = 0; j < N; j++) {
      if (j == i) continue;
      const float *uij = u + ((size_t)i * N + j) * L;
      float *duij = du + ((size_t)i * N + j) * L;
      for (int l = 0; l < L; l++) duij[l] = mi_du(scale * w * exp((double)uij[l] - m));
    }
  }
}
