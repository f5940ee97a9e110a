/* Internal: learning-curve probes for train-encoder (issue 14). Every `every_s` seconds of training
 * the probe measures what a reader of the paper's tables wants to see move: a linear head fitted to
 * convergence on the current encoder's cached representations of a fixed class-balanced subset of
 * the training split (its natural accuracy on a fixed test subset), and that head's adversarial
 * accuracy under the paper's evaluation PGD for the dataset (at the run's eps and norm, whatever
 * attack the run trains with; through the encoder, BN in eval mode). With robust_steps > 0 it also
 * trains a robust MLP head (Madry: each batch attacked through the frozen encoder with the fast
 * profile's robust-head attack) for that many Adam steps on the same subset and reports its natural
 * and PGD accuracy: the row that moves with the encoder's robustness, where a standard head's PGD
 * accuracy does not (EXPERIMENTS.md section 4). The probe
 * reads the model and touches no training state (no RNG stream, no BN statistics, no parameters),
 * so a run with probes trains exactly as one without. */
#ifndef WCMI_TRAIN_PROBE_H
#define WCMI_TRAIN_PROBE_H

#include "wcmi/io.h"
#include "wcmi/tasks.h"

typedef struct curve_probe {
  double every_s;            /* seconds of training between probes */
  int epochs;                /* cached head fit epochs */
  double lr;
  int batch;
  uint64_t seed;
  wcmi_pgd_cfg attack;       /* the dataset's paper evaluation attack at the run's eps and norm */
  wcmi_dataset train, test;  /* the fixed subsets */
  int robust_steps;          /* Madry steps of the robust MLP probe (0: none) */
  wcmi_pgd_cfg robust_attack; /* its training attack (wcmi_profile_training_attack, fast, robust) */
  double next_at;            /* training seconds at which the next probe is due */
  double spent;              /* seconds spent probing so far */
  int count;
} curve_probe;

/* Picks the subsets (class-balanced, from cfg->seed) and schedules the first probe. */
int probe_init(wcmi_ctx *ctx, curve_probe *p, const wcmi_task_cfg *cfg, const wcmi_dataset *train, const wcmi_dataset *test);
void probe_free(curve_probe *p);
/* Moves the next probe past `now` (training seconds) on the grid of every_s. */
void probe_skip_to(curve_probe *p, double now);
/* Runs one probe on m's encoder; writes "linear_nat_acc", "linear_adv_acc", with robust_steps
 * "robust_mlp_nat_acc", "robust_mlp_adv_acc", then the sizes, the heads, the attack and
 * "probe_seconds" as fields of the open JSON object w. */
int probe_run(wcmi_ctx *ctx, curve_probe *p, wcmi_model *m, const wcmi_task_cfg *cfg, wcmi_jsonw *w);

#endif
