/* MI estimator front end: names, argument checks, workspace layout, and dispatch of the loss and
 * gradient kernels (dv.c, fdiv.c, infonce.c) around the score GEMMs (scores.c). */
#include "estimator/mi_internal.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static const char *const ESTIMATOR_NAMES[] = {"dv", "fd", "nce"};
static const char *const MEASURE_NAMES[] = {"jsd", "gan", "x2", "kl", "rkl", "h2", "w1"};
enum { N_ESTIMATORS = 3, N_MEASURES = 7 };

wcmi_mi_cfg wcmi_mi_default_cfg(void) {
  wcmi_mi_cfg c = {WCMI_MI_DV, WCMI_MEASURE_JSD};
  return c;
}

const char *wcmi_mi_estimator_name(wcmi_mi_estimator e) {
  return (int)e >= 0 && (int)e < N_ESTIMATORS ? ESTIMATOR_NAMES[e] : "?";
}

const char *wcmi_mi_measure_name(wcmi_mi_measure m) {
  return (int)m >= 0 && (int)m < N_MEASURES ? MEASURE_NAMES[m] : "?";
}

int wcmi_mi_parse_estimator(wcmi_ctx *ctx, const char *name, wcmi_mi_estimator *out) {
  for (int k = 0; name && k < N_ESTIMATORS; k++)
    if (strcmp(name, ESTIMATOR_NAMES[k]) == 0) {
      *out = (wcmi_mi_estimator)k;
      return WCMI_OK;
    }
  return wcmi_fail(ctx, WCMI_EINVAL, "mi: unknown estimator '%s' (expected dv, fd or nce)", name ? name : "(null)");
}

int wcmi_mi_parse_measure(wcmi_ctx *ctx, const char *name, wcmi_mi_measure *out) {
  for (int k = 0; name && k < N_MEASURES; k++)
    if (strcmp(name, MEASURE_NAMES[k]) == 0) {
      *out = (wcmi_mi_measure)k;
      return WCMI_OK;
    }
  return wcmi_fail(ctx, WCMI_EINVAL, "mi: unknown measure '%s' (expected jsd, gan, x2, kl, rkl, h2 or w1)",
                   name ? name : "(null)");
}

/* ---- workspace ------------------------------------------------------------------------------ */
typedef struct ws_sizes {
  size_t scores, row, row_c, loc, blk, total; /* bytes of each region, each a multiple of 64 */
} ws_sizes;

static int round64(size_t *b) {
  if (!wcmi_add_size(*b, 63, b)) return 0;
  *b &= ~(size_t)63;
  return 1;
}

// Region sizes for up to T threads, or 0 on invalid sizes / overflow. total includes 64 bytes of
// slack so that any caller pointer can be aligned up to 64 bytes.
static int ws_compute(int N, int H, int L, int T, ws_sizes *s) {
  if (N < 1 || H < 1 || L < 1) return 0;
  size_t nl, nnl;
  if (!wcmi_mul_size((size_t)N, (size_t)L, &nl) || !wcmi_mul_size(nl, (size_t)N, &nnl)) return 0;
  if (!wcmi_mul_size(nnl, sizeof(float), &s->scores) || !round64(&s->scores)) return 0;
  if (!wcmi_mul_size(nl, sizeof(double), &s->row) || !round64(&s->row)) return 0;
  s->row_c = (size_t)N * sizeof(double);
  s->loc = (size_t)L * sizeof(double);
  if (!round64(&s->row_c) || !round64(&s->loc)) return 0;
  if ((int64_t)H * L > INT_MAX || (int64_t)N * H > INT_MAX) return 0;
  if (!wcmi_mul_size(wcmi_mi_block_floats(N, H, L, T), sizeof(float), &s->blk) || !round64(&s->blk)) return 0;
  size_t t = 64;
  if (!wcmi_add_size(t, s->scores, &t) || !wcmi_add_size(t, s->scores, &t) || !wcmi_add_size(t, s->row, &t) ||
      !wcmi_add_size(t, s->row, &t) || !wcmi_add_size(t, s->row_c, &t) || !wcmi_add_size(t, s->loc, &t) ||
      !wcmi_add_size(t, s->blk, &t))
    return 0;
  s->total = t;
  return 1;
}

size_t wcmi_mi_workspace_bytes(int N, int H, int L) {
  ws_sizes s;
  return ws_compute(N, H, L, omp_get_max_threads(), &s) ? s.total : 0;
}

int wcmi_mi_ws_layout(int N, int H, int L, int nt, void *ws, size_t ws_bytes, mi_ws *out) {
  ws_sizes s;
  if (!ws || !ws_compute(N, H, L, 1, &s) || ws_bytes < s.total) return 0;
  char *p = (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  out->u = (float *)p;
  p += s.scores;
  out->du = (float *)p;
  p += s.scores;
  out->row_a = (double *)p;
  p += s.row;
  out->row_b = (double *)p;
  p += s.row;
  out->row_c = (double *)p;
  p += s.row_c;
  out->loc = (double *)p;
  p += s.loc;
  out->blk = (float *)p;
  /* whatever the caller gave beyond the one-thread size is scratch for more threads */
  const size_t avail = (ws_bytes - (size_t)(p - (char *)ws)) / sizeof(float);
  out->blk_threads = wcmi_mi_block_threads(N, H, L, nt, avail);
  return 1;
}

/* ---- checks --------------------------------------------------------------------------------- */
int wcmi_mi_check(wcmi_ctx *ctx, wcmi_mi_cfg cfg, int N, int H, int L) {
  const char *est = wcmi_mi_estimator_name(cfg.estimator);
  if ((int)cfg.estimator < 0 || (int)cfg.estimator >= N_ESTIMATORS)
    return wcmi_fail(ctx, WCMI_EINVAL, "mi: invalid estimator value %d", (int)cfg.estimator);
  if (cfg.estimator == WCMI_MI_FD && ((int)cfg.measure < 0 || (int)cfg.measure >= N_MEASURES))
    return wcmi_fail(ctx, WCMI_EINVAL, "mi: invalid fd measure value %d", (int)cfg.measure);
  if (H < 1 || L < 1)
    return wcmi_fail(ctx, WCMI_EINVAL, "mi %s: need H >= 1 and L >= 1 (got H=%d, L=%d)", est, H, L);
  const int min_n = cfg.estimator == WCMI_MI_NCE ? 1 : 2;
  if (N < min_n)
    return wcmi_fail(ctx, WCMI_EINVAL, "mi %s: batch of %d sample(s) has no negative pairs (need N >= %d)", est, N,
                     min_n);
  // N*L is a BLAS leading dimension (int); H*L is one sample's feature map.
  if ((int64_t)N * L > INT_MAX || (int64_t)H * L > INT_MAX || (int64_t)N * H > INT_MAX)
    return wcmi_fail(ctx, WCMI_EINVAL, "mi %s: sizes N=%d H=%d L=%d are too large", est, N, H, L);
  if (wcmi_mi_workspace_bytes(N, H, L) == 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "mi %s: workspace size for N=%d L=%d overflows", est, N, L);
  return WCMI_OK;
}

static int threads_of(const wcmi_ctx *ctx) { return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1; }

static int check_call(wcmi_ctx *ctx, wcmi_mi_cfg cfg, int N, int H, int L, const float *Lx, const float *Gz,
                      void *ws, size_t ws_bytes, mi_ws *layout) {
  int rc = wcmi_mi_check(ctx, cfg, N, H, L);
  if (rc) return rc;
  const char *est = wcmi_mi_estimator_name(cfg.estimator);
  if (!Lx || !Gz) return wcmi_fail(ctx, WCMI_EINVAL, "mi %s: Lx or Gz is NULL", est);
  if (!wcmi_mi_ws_layout(N, H, L, threads_of(ctx), ws, ws_bytes, layout))
    return wcmi_fail(ctx, WCMI_EINVAL, "mi %s: workspace of %zu bytes at %p is smaller than the %zu needed", est,
                     ws_bytes, ws, wcmi_mi_workspace_bytes(N, H, L));
  return WCMI_OK;
}

/* ---- forward / backward --------------------------------------------------------------------- */
int wcmi_mi_forward(wcmi_ctx *ctx, wcmi_mi_cfg cfg, int N, int H, int L, const float *Lx, const float *Gz,
                    void *ws, size_t ws_bytes, float *loss) {
  mi_ws w;
  int rc = check_call(ctx, cfg, N, H, L, Lx, Gz, ws, ws_bytes, &w);
  if (rc) return rc;
  if (!loss) return wcmi_fail(ctx, WCMI_EINVAL, "mi %s: loss pointer is NULL", wcmi_mi_estimator_name(cfg.estimator));
  const int nt = threads_of(ctx);
  wcmi_mi_scores_blocked(N, H, L, Lx, Gz, w.u, w.blk, w.blk_threads);
  double value = NAN;
  switch (cfg.estimator) {
  case WCMI_MI_DV: value = wcmi_mi_dv_loss(&w, N, L, nt); break;
  case WCMI_MI_FD: value = wcmi_mi_fd_loss(&w, N, L, cfg.measure, nt); break;
  case WCMI_MI_NCE: value = wcmi_mi_nce_loss(&w, N, L, nt); break;
  }
  *loss = (float)value;
  if (!isfinite(*loss))
    return wcmi_fail(ctx, WCMI_ENUMERIC, "mi %s%s%s: loss is %g (non-finite features or scores beyond the measure's range)",
                     wcmi_mi_estimator_name(cfg.estimator), cfg.estimator == WCMI_MI_FD ? " " : "",
                     cfg.estimator == WCMI_MI_FD ? wcmi_mi_measure_name(cfg.measure) : "", value);
  return WCMI_OK;
}

int wcmi_mi_backward(wcmi_ctx *ctx, wcmi_mi_cfg cfg, int N, int H, int L, const float *Lx, const float *Gz,
                     float dloss, void *ws, size_t ws_bytes, float *dLx, float *dGz) {
  mi_ws w;
  int rc = check_call(ctx, cfg, N, H, L, Lx, Gz, ws, ws_bytes, &w);
  if (rc) return rc;
  if (!dLx && !dGz) return WCMI_OK;
  const int nt = threads_of(ctx);
  switch (cfg.estimator) {
  case WCMI_MI_DV: wcmi_mi_dv_grad(&w, N, L, dloss, nt); break;
  case WCMI_MI_FD: wcmi_mi_fd_grad(&w, N, L, cfg.measure, dloss, nt); break;
  case WCMI_MI_NCE: wcmi_mi_nce_grad(&w, N, L, dloss, nt); break;
  }
  wcmi_mi_scores_backward(N, H, L, Lx, Gz, w.du, dLx, dGz, w.blk, w.blk_threads);
  return WCMI_OK;
}

double wcmi_mi_estimate(wcmi_mi_cfg cfg, int N, int L, double loss) {
  if (cfg.estimator == WCMI_MI_NCE) return log(1.0 + (double)(N - 1) * L) - loss;
  return -loss;
}
