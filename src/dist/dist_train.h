/* Internal: the trainer's data-parallel steps (dist_train.c), kept out of trainer.c so the shared
 * epoch loop only calls one hook per step. Every function is a no-op when t->ctx->dist is NULL. */
#ifndef WCMI_DIST_TRAIN_H
#define WCMI_DIST_TRAIN_H

#include "train/trainer.h"

/* Rank 0's values of params[0..n) (floats or counters) to every rank. */
int dist_bcast_params(wcmi_ctx *ctx, wcmi_param **params, int n);
/* Sums the gradients of the optimizer's nets over the ranks (fixed order, wcmi/dist.h), so every
 * rank steps with the gradient of the global batch. */
int dist_sum_grads(trainer *t);
/* The same for the trainable parameters of nets[0..n) of an optimizer outside the trainer (the
 * re-fitted critic of estimate-mi): *buf (*buf_n floats) carries them, allocated on the first call
 * (the caller frees it with wcmi_free). A no-op in one process. */
int dist_sum_net_grads(wcmi_ctx *ctx, wcmi_net *const *nets, int n, float **buf, size_t *buf_n);
/* rows (n x cols floats) <- the eval-mode forward of the n samples at x (D floats each) through
 * nets[0..n_nets) in turn, in batches of `batch` at offsets 0, batch, 2 batch, ... (the last one
 * partial). Data-parallel: rank r computes a contiguous block of whole batches and the blocks are
 * all-gathered in rank order, so every rank holds every row, bit for bit the rows one process
 * computes (each batch is the same forward call; eval mode communicates nothing). `what` names the
 * data in the interruption message. */
int dist_forward_rows(wcmi_ctx *ctx, wcmi_net *const *nets, int n_nets, const float *x, int64_t n, int64_t D, int batch,
                      int64_t cols, const char *what, float *rows);
/* Data-parallel: a Ctrl-C seen by any rank, on every rank (ctx->interrupt in one process). */
int dist_interrupted(wcmi_ctx *ctx);
/* The per-batch values of a step made on n of the global batch's samples: values that are means
 * over this rank's samples become means over the global batch (weights n / batch). */
int dist_mean_vals(trainer *t, double *vals, int n);
/* This rank's share n / batch_size of the global batch: the factor on a per-sample-mean loss's
 * gradient so that the ranks' gradients add up to the global batch mean's (1 in one process). */
float dist_batch_weight(const trainer *t, int n);
/* The ranks' counts (or other exact integer-valued sums held in doubles), summed. */
int dist_sum_counts(wcmi_ctx *ctx, double *v, int n);
/* Marks the start (begin 1) or end (0) of a training step: the bytes sent in between go to
 * t->step_bytes. */
void dist_count_step(trainer *t, int begin);
/* The --timing line of a data-parallel run: ranks, steps, bytes sent per step by category. */
void dist_timing_line(const trainer *t);
/* rank 0? (always in one process) */
int dist_is_root(const wcmi_ctx *ctx);

#endif
