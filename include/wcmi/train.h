/* Training and evaluation: the MI objective over encoder + estimators (DIM), the classifier
 * objective, and the paper's tasks (PAPER.md section 5) with run directories and checkpoints. */
#ifndef WCMI_TRAIN_H
#define WCMI_TRAIN_H

#include "wcmi/attack.h"
#include "wcmi/mi.h"
#include "wcmi/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the MI objective --------------------------------------------------------------------- */
/* Which way the worst-case MI attack's gradient reaches x': through the encoder only (the authors'
 * code detaches the local estimator's input; default) or through the local estimator too. */
typedef enum { WCMI_PATH_ENCODER = 0, WCMI_PATH_BOTH = 1 } wcmi_grad_path;

enum {
  WCMI_DIM_ENCODER_PARAMS = 1,   /* accumulate encoder parameter gradients */
  WCMI_DIM_ESTIMATOR_PARAMS = 2, /* accumulate dim_local / dim_global parameter gradients */
  WCMI_DIM_INPUT = 4,            /* input gradient (along the configured path) into dx */
};

typedef struct wcmi_dim {
  wcmi_ctx *ctx;
  wcmi_model *m; /* needs encoder, local, global */
  wcmi_mi_cfg mi;
  wcmi_grad_path path;
  int max_batch, H, L;
  void *ws;
  size_t ws_bytes;
  float *dLx, *dGz, *dx_local; /* backward scratch; dLx is the local estimator's output buffer when
                                  wcmi_net_output_for_grad allows (then not owned: dLx_owned == 0) */
  int dLx_owned;
  int attack_enc_train, attack_est_train; /* modes the attack objective uses (0: eval, the paper) */
  /* Optional second representation net: when set, the representation is repr_head(encoder(x))
   * (e.g. the logit layer of a Baseline-H model) and forward/backward run through both; it runs in
   * the encoder's mode and its parameters count as encoder parameters. NULL: encoder(x). */
  wcmi_net *repr_head;
  /* Data-parallel runs (ctx->dist, docs/distributed.md): every rank gathers the features of the
   * whole global batch (Lx, Gz of up to max_batch samples) so the scores, loss and gradient are the
   * global batch's, and keeps its own slice of dLx, dGz. NULL in single-process runs. */
  float *lx_all, *gz_all, *dlx_all, *dgz_all;
  int *counts;
  int last_N; /* samples the last loss was computed over: the global batch (N when single-process) */
} wcmi_dim;

int wcmi_dim_init(wcmi_ctx *ctx, wcmi_dim *d, wcmi_model *m, wcmi_mi_cfg mi, wcmi_grad_path path, int max_batch);
void wcmi_dim_free(wcmi_dim *d);
/* Makes the representation head(encoder(x)) (head NULL: back to encoder(x)). The head's input must
 * be the encoder's output and its output the global estimator's input: WCMI_EINVAL otherwise. */
int wcmi_dim_set_repr_head(wcmi_dim *d, wcmi_net *head);
/* Forward (encoder in enc_train mode, estimators in est_train mode), the MI loss into *loss, and
 * the backward parts selected by `grads`; dx (N, C, H, W) receives the input gradient when
 * WCMI_DIM_INPUT is set. A backward through the local estimator may leave its output buffer holding
 * the gradient instead of Lx (see wcmi_dim.dLx). */
int wcmi_dim_step(wcmi_dim *d, const float *x, int N, int enc_train, int est_train, int grads, float *loss, float *dx);
/* The batch-level objective "MI loss as a function of the input" for PGD (maximizing it minimizes
 * the MI estimate), in the modes attack_enc_train / attack_est_train. */
wcmi_objective wcmi_dim_objective(wcmi_dim *d);

/* ---- the classifier objective ------------------------------------------------------------- */
enum {
  WCMI_CLF_ENCODER_PARAMS = 1,
  WCMI_CLF_HEAD_PARAMS = 2,
  WCMI_CLF_INPUT = 4,
};

typedef struct wcmi_clf {
  wcmi_ctx *ctx;
  wcmi_model *m; /* needs encoder and classifier */
  int max_batch;
  float *probs, *dlogits, *per_sample;
  const int32_t *labels; /* labels of the batch being attacked (set by the caller) */
  float loss_weight;     /* factor on the loss gradient (1; a data-parallel trainer sets this rank's
                            share n / global batch, so the ranks' gradients add up to the global mean's) */
} wcmi_clf;

int wcmi_clf_init(wcmi_ctx *ctx, wcmi_clf *c, wcmi_model *m, int max_batch);
void wcmi_clf_free(wcmi_clf *c);
/* Cross-entropy of classifier(encoder(x)); per_sample_loss (N) and wrong (N: argmax != label) may
 * be NULL; *correct counts right predictions. */
int wcmi_clf_step(wcmi_clf *c, const float *x, const int32_t *y, int N, int enc_train, int head_train, int grads,
                  float *mean_loss, float *per_sample_loss, unsigned char *wrong, int *correct, float *dx);
/* One sample's cross-entropy -log softmax(logits)[y] over K classes, computed in double (stays
 * positive and ordered for confident samples, whose 1 - p_y is below float resolution). */
float wcmi_clf_sample_loss(int K, const float *logits, int y);
/* Per-sample objective for attacks, eval mode, on c->labels. */
wcmi_objective wcmi_clf_objective(wcmi_clf *c);

/* ---- Fano bound (PAPER.md section 1, Theorem 3.4) ------------------------------------------ */
/* Upper bound on any downstream classifier's adversarial accuracy: (max(0, I_worst) + ln 2) / ln K,
 * capped at 1 (MI in nats). Meaningful only when I_worst is an MI lower bound in nats (see
 * wcmi_fano_applies). */
double wcmi_fano_bound(double worst_mi, int num_classes);
/* 1 when the estimator's value is a lower bound on MI in nats (DV, InfoNCE), so that Fano's
 * inequality bounds adversarial accuracy; 0 for the f-divergence measures (fd), whose value is a
 * divergence of another kind and not in nats. *why (may be NULL) gets a one-line reason when 0. */
int wcmi_fano_applies(wcmi_mi_cfg mi, const char **why);

#ifdef __cplusplus
}
#endif
#endif
