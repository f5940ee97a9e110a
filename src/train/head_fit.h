/* Internal: standard heads fitted on cached representations. A frozen encoder in eval mode maps
 * every image to the same z whatever the batch, so a head trained with clean (standard) batches
 * needs the encoder only once per sample: encode the split once, then run the head's epochs over
 * the cached features (seconds, where running the encoder in the loop took minutes). The head is
 * fitted on whitened features, P (z - mu) with the training split's mean and covariance, because
 * an encoder's z can spread by ~0.01 per dimension with strongly correlated dimensions, and Adam
 * then needs 1e5+ steps to fit even a linear head (linear-evaluation protocols standardize or BN
 * the features for the same reason). A linear change of the input is the same model family, so
 * the whitening is folded into the head's first linear layer afterwards: the result is the paper's
 * head on raw z. */
#ifndef WCMI_TRAIN_HEAD_FIT_H
#define WCMI_TRAIN_HEAD_FIT_H

#include "wcmi/data.h"
#include "wcmi/model.h"

/* z = encoder(x) for every sample of d (eval mode), in batches of at most `batch`: *z_out
 * (d->n, zdim) allocated with wcmi_alloc; *zdim receives the encoder's output width. Data-parallel:
 * the ranks share the batches and every rank receives every row (dist_forward_rows). */
int feat_encode(wcmi_ctx *ctx, wcmi_model *m, const wcmi_dataset *d, int batch, float **z_out, int *zdim);

/* Cached features and labels of one split. */
typedef struct feat_set {
  const float *z;     /* (n, zdim) */
  const int32_t *y;   /* (n) */
  int64_t n;
} feat_set;

typedef struct head_fit_cfg {
  int epochs, batch_size; /* full passes over the training features; minibatch (drop last, as BN needs) */
  int max_batches;        /* > 0: at most this many batches per epoch (smoke tests, as --max-batches) */
  double lr;              /* Adam (PyTorch defaults otherwise) */
  uint64_t seed;          /* the shuffle stream (WCMI_STREAM_SHUFFLE of this seed) */
  int progress;           /* lines on stderr */
  const char *task;       /* name for progress and errors */
  int lr_schedule;        /* wcmi_lr_schedule over the fit's steps (0: constant) */
  double warmup_epochs;
} head_fit_cfg;

typedef struct head_fit_epoch {
  double loss, train_acc; /* means over the epoch's training batches (train mode) */
  double test_acc;        /* natural accuracy on the test features after the epoch (eval mode) */
  double seconds;         /* wall clock of the epoch, its test pass included */
} head_fit_epoch;

/* Whitening of the training features: mu (zdim) and the lower-triangular P (zdim, zdim) = L^-1
 * for the Cholesky factor L of their covariance (plus a ridge of 1e-6 of the mean variance), so
 * that P (z - mu) has identity covariance. Correlated dimensions make even standardized features
 * ill-conditioned for a linear model (measured: 300 Adam epochs still short of convergence). */
int head_fit_whitening(wcmi_ctx *ctx, const feat_set *train, int zdim, double *mu, double *P);
/* out (n, zdim) = P (z - mu) for every row of s. */
void head_fit_whiten(const feat_set *s, int zdim, const double *mu, const double *P, float *out);
/* Rewrites the head's first linear layer (O, zdim) so that head(z) equals the head fitted on
 * P (z - mu): W' = W P, b' = b - W' mu. */
int head_fit_fold(wcmi_ctx *ctx, wcmi_net *head, int zdim, const double *mu, const double *P);

/* Fits `head` (input zdim) on the training features with Adam and cross-entropy for cfg->epochs
 * epochs; after each epoch records per_epoch[e] and copies the head into best_head when its test
 * accuracy is the highest so far (*best_epoch: 0-based; ties keep the earlier epoch). On return
 * both heads are folded to take raw z. Stops with WCMI_EINTR when ctx->interrupt is set.
 * Data-parallel: every rank repeats the same single-process fit (the communicator set aside), so
 * all ranks hold one process's heads; an interruption on any rank stops all of them. */
int head_fit_cached(wcmi_ctx *ctx, wcmi_net *head, wcmi_net *best_head, const feat_set *train, const feat_set *test,
                    int zdim, const head_fit_cfg *cfg, head_fit_epoch *per_epoch, int *best_epoch);

/* Natural accuracy of head on the features s (eval mode). */
int head_accuracy(wcmi_ctx *ctx, wcmi_net *head, const feat_set *s, int zdim, double *acc);

#endif
