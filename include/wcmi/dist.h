/* wcmi dist: data-parallel runs over MPI (docs/distributed.md).
 *
 * Built with -DWCMI_MPI=ON and launched as `mpirun -np K wcmi <command> ...` with K > 1, each rank
 * takes a contiguous slice of every global batch and the library communicates through this
 * interface only. In every other case (built without MPI, or one rank) ctx->dist is NULL and each
 * call below is the single-process identity: no #ifdef outside src/dist/, and a one-process run
 * computes exactly what it computed before this layer existed.
 *
 * Determinism: every reduction here sums the ranks' contributions in rank order 0, 1, ..., K-1, in
 * double, on one rank per element, and sends that one result to every rank. So a fixed K gives
 * bit-identical results across runs, and every rank holds the same bits. (MPI_Allreduce does not
 * promise either: Open MPI picks its reduction algorithm, and so the association of the float
 * additions, from the message size and K, and the MPI standard lets it.)
 *
 * Failures: MPI errors are returned to wcmi (MPI_ERRORS_RETURN), which prints one line naming the
 * rank and the call and then aborts every rank (MPI_Abort); checkpoints are written atomically, so
 * the last good one survives. All collective calls must be made by every rank in the same order. */
#ifndef WCMI_DIST_H
#define WCMI_DIST_H

#include "wcmi/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wcmi_dist wcmi_dist;

/* Traffic categories for the byte counters. */
typedef enum {
  WCMI_DIST_GRADS = 0,    /* parameter-gradient all-reduce */
  WCMI_DIST_FEATURES = 1, /* MI feature all-gathers (Gz, Lx) */
  WCMI_DIST_BN = 2,       /* synchronized BatchNorm statistics */
  WCMI_DIST_OTHER = 3,    /* counts, flags, broadcasts */
  WCMI_DIST_NCAT = 4
} wcmi_dist_cat;

/* 1 when this build can run data-parallel (WCMI_MPI=ON). */
int wcmi_dist_built(void);
/* Starts MPI when built with it and launched with more than one rank: ctx->dist is then set. With
 * one rank or without MPI, ctx->dist stays NULL. Call once per process, before any work. */
int wcmi_dist_init(wcmi_ctx *ctx);
/* Ends MPI (if started) and frees ctx->dist. rc != 0 on this rank means the ranks may no longer be
 * in step: then every rank is aborted with exit code rc instead of a collective finalize. */
void wcmi_dist_finalize(wcmi_ctx *ctx, int rc);

int wcmi_dist_rank(const wcmi_dist *d); /* 0 when d is NULL */
int wcmi_dist_size(const wcmi_dist *d); /* 1 when d is NULL */

/* Every rank's n into counts[0..K) (counts[0] = n when d is NULL). */
int wcmi_dist_counts(wcmi_dist *d, int n, int *counts);
/* This rank's n samples are a slice of a global batch: *before / *after get how many samples the
 * ranks before / after it hold (0 and 0 when d is NULL). For per-sample random draws (attack starts,
 * dropout) that must match one process's: draw and drop the others' share. */
int wcmi_dist_slice(wcmi_dist *d, int n, int64_t *before, int64_t *after);
/* The slice [lo, hi) of a global batch of N samples that rank r of K owns: contiguous, rank order. */
void wcmi_dist_shard(int N, int r, int K, int *lo, int *hi);

/* buf[0..n) <- the sum over ranks of buf, in rank order, in double (the result is identical on every
 * rank). Identity when d is NULL. */
int wcmi_dist_sum_f32(wcmi_dist *d, wcmi_dist_cat cat, float *buf, size_t n);
int wcmi_dist_sum_f64(wcmi_dist *d, wcmi_dist_cat cat, double *buf, size_t n);
/* 1 on every rank when flag is non-zero on any rank. */
int wcmi_dist_any(wcmi_dist *d, int flag);
/* all <- the ranks' `mine` blocks in rank order; rank r's block has counts[r] * unit floats. With d
 * NULL, a copy of mine (counts[0] * unit floats). */
int wcmi_dist_allgather_f32(wcmi_dist *d, wcmi_dist_cat cat, const float *mine, const int *counts, int64_t unit,
                            float *all);
/* bytes from rank 0 to every rank. */
int wcmi_dist_bcast(wcmi_dist *d, void *buf, size_t bytes);
/* A scratch buffer of at least n doubles owned by d (grown when needed, so only the first calls
 * allocate; out of memory aborts every rank). For the BatchNorm reductions, which run inside
 * kernels that cannot fail. NULL when d is NULL. */
double *wcmi_dist_scratch_f64(wcmi_dist *d, size_t n);

/* Bytes this rank sent so far in category cat (all categories: cat = WCMI_DIST_NCAT). */
uint64_t wcmi_dist_bytes_sent(const wcmi_dist *d, int cat);

#ifdef __cplusplus
}
#endif
#endif
