/* Shared state of PGD and APGD (one allocation per attack object, reused for every batch). */
#ifndef WCMI_ATTACK_INTERNAL_H
#define WCMI_ATTACK_INTERNAL_H

#include "wcmi/attack.h"

struct wcmi_attack {
  wcmi_ctx *ctx;
  wcmi_pgd_cfg cfg;
  int max_batch;
  int64_t D;
  float *cur, *grad, *run_best, *prev, *mom;                      /* (N, D) */
  float *loss, *run_best_loss, *best_loss, *step_size, *prev_best_loss; /* (N) */
  unsigned char *succ, *run_best_succ, *best_succ, *reduced;      /* (N) */
  int *improved;                                                  /* (N) */
  float *grad_best, *last_loss; /* APGD: gradient at the restart point (N, D); loss of x_k (N) */
};

/* The random start of z (N, D) around x. In a data-parallel run (ctx->dist) this rank's N samples
 * are a slice of a global batch: the draws of the slices before and after it are made and dropped,
 * so each sample starts where one process would start it and rng ends where one process leaves it. */
void attack_random_start_batch(wcmi_attack *a, const float *x, int N, wcmi_rng *rng);

void attack_random_start(wcmi_norm norm, float eps, const float *x, float *z, int N, int64_t D, wcmi_rng *rng);
int attack_better(int per_sample, float loss_new, unsigned char succ_new, float loss_old, unsigned char succ_old);
void attack_keep_best(const wcmi_attack *a, int per_sample, int N, const float *cand, const float *cand_loss,
                      const unsigned char *cand_succ, float *best, float *best_loss, unsigned char *best_succ);

#endif
