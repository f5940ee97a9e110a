/* Internal: accuracy of a classifier model (encoder + head) under several attacks at once, with the
 * per-sample worst case across them. task_accuracy (trainer.h) is the one-attack case. */
#ifndef WCMI_TRAIN_EVAL_H
#define WCMI_TRAIN_EVAL_H

#include "wcmi/data.h"
#include "wcmi/io.h"
#include "wcmi/tasks.h"

#define EVAL_MAX_ATTACKS 4

/* One attack of an evaluation: PGD (use_apgd 0) or APGD-CE (use_apgd 1) with these settings.
 * survivors: attack only the samples that every attack before left correctly classified (the
 * cascade of AutoAttack): the per-sample worst case is the same, since a sample one attack broke
 * stays broken, and the attack's cost falls with the accuracy; its reported accuracy is then the
 * cumulative one (robust to it and to every attack before). */
typedef struct eval_attack {
  const char *name;
  wcmi_pgd_cfg cfg;
  int use_apgd;
  int survivors;
} eval_attack;

typedef struct eval_result {
  int64_t samples;                      /* samples evaluated (after the eval_batches cap) */
  double natural;                       /* fraction classified correctly on clean inputs */
  double adversarial[EVAL_MAX_ATTACKS]; /* per attack: correct on the clean AND the attacked input (a
                                         * survivors attack: and under every attack before it) */
  double worst_case;                    /* correct on the clean input and under every attack */
} eval_result;

/* Evaluates m (eval mode: BN on running statistics, no dropout) on d in batches of
 * cfg->batch_size (the last partial batch included), at most cfg->eval_batches batches when > 0.
 * The attacks draw their random starts from rng in a fixed order (batch, then attack). */
int eval_attacks(wcmi_ctx *ctx, wcmi_model *m, const wcmi_dataset *d, const wcmi_task_cfg *cfg,
                 const eval_attack *attacks, int n_attacks, wcmi_rng *rng, eval_result *out);

/* Loads cfg->model for batches of cfg->batch_size and checks it was trained on cfg->data; need_head:
 * refuse a model without a classifier head (task_eval.c; eval and encode). */
int eval_load_model(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, int need_head, wcmi_model *m);

/* Samples an evaluation of a set of n covers: all of them, or cfg->eval_batches batches. */
int64_t eval_num_samples(const wcmi_task_cfg *cfg, int64_t n);

/* Writes the attack protocol ("norm", "eps", "steps", "step", "restarts", "random_start",
 * "use_best", "algorithm") as fields of the open JSON object w. */
void eval_protocol_json(wcmi_jsonw *w, const eval_attack *a);

#endif
