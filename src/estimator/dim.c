/* The MI objective over encoder + local + global estimators: the loss the encoder tasks minimize
 * and the worst-case MI attack maximizes. */
#include "wcmi/dist.h"
#include "wcmi/train.h"

#include <math.h>
#include <string.h>

/* The gathered features of a data-parallel run and their gradients, for up to max_batch samples. */
static int dim_alloc_gather(wcmi_dim *d) {
  const size_t nhl = (size_t)d->max_batch * (size_t)d->H * (size_t)d->L, nh = (size_t)d->max_batch * (size_t)d->H;
  d->lx_all = wcmi_alloc(d->ctx, nhl, sizeof(float));
  d->dlx_all = wcmi_alloc(d->ctx, nhl, sizeof(float));
  d->gz_all = wcmi_alloc(d->ctx, nh, sizeof(float));
  d->dgz_all = wcmi_alloc(d->ctx, nh, sizeof(float));
  d->counts = wcmi_alloc(d->ctx, (size_t)wcmi_dist_size(d->ctx->dist), sizeof(int));
  if (!d->lx_all || !d->dlx_all || !d->gz_all || !d->dgz_all || !d->counts) {
    int rc = d->ctx->status;
    wcmi_dim_free(d);
    return rc;
  }
  return WCMI_OK;
}

/* Data-parallel: Lx and Gz of every rank's slice, in rank order, into lx_all / gz_all; *NG is the
 * global batch and *off this rank's first sample in it. */
static int dim_gather(wcmi_dim *d, int N, const float *lx, const float *gz, int *NG, int *off) {
  wcmi_dist *dist = d->ctx->dist;
  int rc = wcmi_dist_counts(dist, N, d->counts);
  if (rc) return rc;
  int64_t total = 0, before = 0;
  for (int r = 0; r < wcmi_dist_size(dist); r++) {
    if (r == wcmi_dist_rank(dist)) before = total;
    total += d->counts[r];
  }
  if (total > d->max_batch)
    return wcmi_fail(d->ctx, WCMI_EINVAL, "MI objective: global batch of %lld samples exceeds the %d it was sized for",
                     (long long)total, d->max_batch);
  *NG = (int)total;
  *off = (int)before;
  rc = wcmi_dist_allgather_f32(dist, WCMI_DIST_FEATURES, gz, d->counts, d->H, d->gz_all);
  if (!rc) rc = wcmi_dist_allgather_f32(dist, WCMI_DIST_FEATURES, lx, d->counts, (int64_t)d->H * d->L, d->lx_all);
  return rc;
}

int wcmi_dim_init(wcmi_ctx *ctx, wcmi_dim *d, wcmi_model *m, wcmi_mi_cfg mi, wcmi_grad_path path, int max_batch) {
  memset(d, 0, sizeof *d);
  if (!m->encoder || !m->local || !m->global)
    return wcmi_fail(ctx, WCMI_EINVAL, "MI objective: the model has no MI estimators (hsize 0)");
  wcmi_shape ls = wcmi_net_out_shape(m->local);
  d->ctx = ctx;
  d->m = m;
  d->mi = mi;
  d->path = path;
  d->max_batch = max_batch;
  d->H = (int)ls.d[0];
  d->L = (int)(ls.d[1] * ls.d[2]);
  int rc = wcmi_mi_check(ctx, mi, max_batch < 2 ? 2 : max_batch, d->H, d->L);
  if (rc) return rc;
  d->ws_bytes = wcmi_mi_workspace_bytes(max_batch, d->H, d->L);
  d->ws = wcmi_alloc(ctx, d->ws_bytes, 1);
  /* dL/dLx goes into Lx's own buffer when the net allows it: Lx is dead once the MI backward has
   * read it (at H = 2048 that saves a 49 MiB map). */
  d->dLx = wcmi_net_output_for_grad(m->local);
  if (!d->dLx) {
    d->dLx = wcmi_alloc(ctx, (size_t)max_batch * (size_t)d->H * (size_t)d->L, sizeof(float));
    d->dLx_owned = 1;
  }
  d->dGz = wcmi_alloc(ctx, (size_t)max_batch * (size_t)d->H, sizeof(float));
  wcmi_shape in = wcmi_net_in_shape(m->encoder);
  d->dx_local = wcmi_alloc(ctx, (size_t)max_batch * (size_t)wcmi_shape_numel(&in), sizeof(float));
  if (!d->ws || !d->dLx || !d->dGz || !d->dx_local) {
    wcmi_dim_free(d);
    return ctx->status;
  }
  return ctx->dist ? dim_alloc_gather(d) : WCMI_OK;
}

void wcmi_dim_free(wcmi_dim *d) {
  wcmi_free(d->ws);
  if (d->dLx_owned) wcmi_free(d->dLx);
  wcmi_free(d->dGz);
  wcmi_free(d->dx_local);
  wcmi_free(d->lx_all);
  wcmi_free(d->dlx_all);
  wcmi_free(d->gz_all);
  wcmi_free(d->dgz_all);
  wcmi_free(d->counts);
  memset(d, 0, sizeof *d);
}

int wcmi_dim_set_repr_head(wcmi_dim *d, wcmi_net *head) {
  if (head) {
    wcmi_shape eo = wcmi_net_out_shape(d->m->encoder), hi = wcmi_net_in_shape(head), ho = wcmi_net_out_shape(head),
               gi = wcmi_net_in_shape(d->m->global);
    char a[64], b[64];
    if (!wcmi_shape_equal(&eo, &hi))
      return wcmi_fail(d->ctx, WCMI_EINVAL, "MI objective: representation head takes %s but the encoder gives %s",
                       wcmi_shape_str(&hi, a, sizeof a), wcmi_shape_str(&eo, b, sizeof b));
    if (!wcmi_shape_equal(&ho, &gi))
      return wcmi_fail(d->ctx, WCMI_EINVAL, "MI objective: global estimator takes %s but the representation head gives %s",
                       wcmi_shape_str(&gi, a, sizeof a), wcmi_shape_str(&ho, b, sizeof b));
  }
  d->repr_head = head;
  return WCMI_OK;
}

static int net_fail(wcmi_dim *d) { return d->ctx->status ? d->ctx->status : WCMI_EINVAL; }

int wcmi_dim_step(wcmi_dim *d, const float *x, int N, int enc_train, int est_train, int grads, float *loss, float *dx) {
  wcmi_model *m = d->m;
  const float *z = wcmi_net_forward(m->encoder, x, N, enc_train);
  if (z && d->repr_head) z = wcmi_net_forward(d->repr_head, z, N, enc_train);
  if (!z) return net_fail(d);
  const float *gz = wcmi_net_forward(m->global, z, N, est_train);
  const float *lx = gz ? wcmi_net_forward(m->local, x, N, est_train) : NULL;
  if (!lx) return net_fail(d);
  /* Data-parallel: the scores of the whole global batch from the gathered features (docs/distributed.md). */
  int NG = N, off = 0, rc = WCMI_OK;
  if (d->ctx->dist && (rc = dim_gather(d, N, lx, gz, &NG, &off))) return rc;
  const float *LX = d->ctx->dist ? d->lx_all : lx, *GZ = d->ctx->dist ? d->gz_all : gz;
  d->last_N = NG;
  rc = wcmi_mi_forward(d->ctx, d->mi, NG, d->H, d->L, LX, GZ, d->ws, d->ws_bytes, loss);
  if (rc || !grads) return rc;
  const int est = (grads & WCMI_DIM_ESTIMATOR_PARAMS) != 0, enc = (grads & WCMI_DIM_ENCODER_PARAMS) != 0,
            input = (grads & WCMI_DIM_INPUT) != 0;
  const int local_input = input && d->path == WCMI_PATH_BOTH;
  const int need_dz = enc || input;
  float *dlx = (est || local_input) ? (d->ctx->dist ? d->dlx_all : d->dLx) : NULL;
  float *dgz = (est || need_dz) ? (d->ctx->dist ? d->dgz_all : d->dGz) : NULL;
  rc = wcmi_mi_backward(d->ctx, d->mi, NG, d->H, d->L, LX, GZ, 1.0f, d->ws, d->ws_bytes, dlx, dgz);
  if (rc) return rc;
  if (d->ctx->dist) { /* this rank's samples' rows of the global gradient */
    const size_t hl = (size_t)d->H * (size_t)d->L;
    if (dlx) memcpy(d->dLx, dlx + (size_t)off * hl, (size_t)N * hl * sizeof(float));
    if (dgz) memcpy(d->dGz, dgz + (size_t)off * d->H, (size_t)N * (size_t)d->H * sizeof(float));
  }
  /* Global estimator: its input gradient is dL/dz, which the encoder needs. */
  int gwhat = (est ? WCMI_GRAD_PARAMS : 0) | (need_dz ? WCMI_GRAD_INPUT : 0);
  if (gwhat && (rc = wcmi_net_backward(m->global, d->dGz, gwhat))) return rc;
  int ewhat = (enc ? WCMI_GRAD_PARAMS : 0) | (input ? WCMI_GRAD_INPUT : 0);
  const float *dz = wcmi_net_input_grad(m->global);
  if (ewhat && d->repr_head) {
    /* The encoder needs dL/d(encoder output), so the head always passes its input gradient on. */
    if ((rc = wcmi_net_backward(d->repr_head, dz, (enc ? WCMI_GRAD_PARAMS : 0) | WCMI_GRAD_INPUT))) return rc;
    dz = wcmi_net_input_grad(d->repr_head);
  }
  if (ewhat && (rc = wcmi_net_backward(m->encoder, dz, ewhat))) return rc;
  int lwhat = (est ? WCMI_GRAD_PARAMS : 0) | (local_input ? WCMI_GRAD_INPUT : 0);
  if (lwhat && (rc = wcmi_net_backward(m->local, d->dLx, lwhat))) return rc;
  if (input) {
    wcmi_shape in = wcmi_net_in_shape(m->encoder);
    int64_t n = (int64_t)N * wcmi_shape_numel(&in);
    const float *ge = wcmi_net_input_grad(m->encoder);
    if (local_input) {
      const float *gl = wcmi_net_input_grad(m->local);
      for (int64_t i = 0; i < n; i++) dx[i] = ge[i] + gl[i];
    } else {
      memcpy(dx, ge, (size_t)n * sizeof(float));
    }
  }
  return WCMI_OK;
}

static int dim_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  (void)succ;
  wcmi_dim *d = user;
  return wcmi_dim_step(d, x, N, d->attack_enc_train, d->attack_est_train, grad ? WCMI_DIM_INPUT : 0, loss, grad);
}

wcmi_objective wcmi_dim_objective(wcmi_dim *d) { return (wcmi_objective){0, dim_eval, d}; }

double wcmi_fano_bound(double worst_mi, int num_classes) {
  if (num_classes < 2) return 1.0;
  double b = (fmax(0.0, worst_mi) + log(2.0)) / log((double)num_classes);
  return b < 1.0 ? b : 1.0;
}

int wcmi_fano_applies(wcmi_mi_cfg mi, const char **why) {
  if (mi.estimator == WCMI_MI_DV || mi.estimator == WCMI_MI_NCE) return 1;
  if (why)
    *why = "the f-divergence estimator (fd) does not lower-bound the mutual information in nats, so Fano's "
           "inequality gives no bound on adversarial accuracy from it (use --estimator dv or nce)";
  return 0;
}
