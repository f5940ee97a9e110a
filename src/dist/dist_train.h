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
