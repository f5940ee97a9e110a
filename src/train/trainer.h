/* Internal: the shared epoch loop of the training tasks, run directories, checkpoints, resume,
 * progress and interruption. Each task supplies a per-batch step and an end-of-epoch evaluation. */
#ifndef WCMI_TRAINER_H
#define WCMI_TRAINER_H

#include "wcmi/data.h"
#include "wcmi/io.h"
#include "wcmi/run_record.h"
#include "wcmi/tasks.h"
#include "train/probe.h"

#define TRAINER_MAX_SUMS 8
#define TRAINER_MAX_RNG 6

typedef struct trainer trainer;

typedef struct trainer_ops {
  const char *task;
  /* Names of the per-batch values a step reports (averaged over the epoch's batches). */
  const char *sum_names[TRAINER_MAX_SUMS];
  int n_sums;
  /* One optimization step on a batch; writes its values into vals[0..n_sums). */
  int (*step)(trainer *t, const float *x, const int32_t *y, int n, double *vals);
  /* After each epoch: evaluation fields into w, and *score (higher is better) for best.safetensors. */
  int (*end_epoch)(trainer *t, int epoch, wcmi_jsonw *w, double *score);
  /* After training: the task's results into t->record, and descriptive summary fields into w. */
  int (*summarize)(trainer *t, wcmi_jsonw *w);
  /* Which run-record fields summary.json holds (WCMI_REC_*): written from t->record after summarize. */
  unsigned record_files;
} trainer_ops;

struct trainer {
  wcmi_ctx *ctx;
  wcmi_task_cfg cfg;
  const trainer_ops *ops;
  void *user;
  wcmi_dataset train, test;
  wcmi_model model;
  wcmi_optim *opt;
  wcmi_rng attack_rng;
  /* The run's one PGD attack (the settings of cfg.attack), built by trainer_setup, and the eps its
   * training batches use this epoch: cfg.attack.eps faded in over cfg.eps_fade_epochs, set once per
   * epoch by trainer_run. Evaluations attack at the full cfg.attack.eps (trainer_attack). */
  wcmi_attack *attack;
  float train_eps;
  float attack_eps; /* the eps the attack is configured with now (switched only when it changes) */
  float *x, *xadv; /* (batch, C, H, W) */
  int32_t *y;
  int epoch;       /* current epoch */
  char run_dir[1024];
  int lock_fd;     /* holds the run directory's lock (-1: none) */
  FILE *metrics;
  double best_score;
  int best_epoch;
  double t_start, phase_time[4]; /* timing: attack, forward+backward, optimizer, eval (trainer-kept) */
  double elapsed_before;         /* training wall clock of the run before this process (resume) */
  curve_probe *probe;            /* learning-curve probes (train-encoder --probe-every), or NULL */
  int first_epoch, announced;    /* the training-time estimate, printed once per process */
  wcmi_param *task_state;        /* a task's own tensors saved and restored with every checkpoint */
  int n_task_state;
  /* Data-parallel runs (src/dist/dist_train.c): the optimizer's nets, whose gradients are summed
   * over the ranks before each step, and the flat buffer that carries them. */
  wcmi_net *opt_nets[4];
  int n_opt_nets;
  float *dist_grads;
  size_t dist_grads_n;
  /* Set by a task whose step values are means over the samples it was given: a data-parallel run
   * then averages them over the ranks, weighted by their slices (0: they already describe the
   * global batch, as the MI objective's do). */
  int local_means;
  int64_t steps_run; /* optimizer steps made in this process (for bytes per step) */
  wcmi_run_record record; /* the run's results (filled by ops->summarize; summary.json is written from it) */
  uint64_t step_bytes[4], bytes_mark[4]; /* bytes this rank sent inside step(), per wcmi_dist_cat */
};

/* Opens data, run directory (or resumes), and leaves the model to the task: call trainer_init,
 * then build t->model and t->opt, then trainer_run. */
int trainer_init(trainer *t, wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const trainer_ops *ops, void *user);
/* Restores the latest checkpoint when resuming (model, optimizer, RNG, epoch); then loops. */
int trainer_run(trainer *t, char **summary);
void trainer_free(trainer *t);
/* For a task with its own loop (the cached head fit, task_classifier.c): a checkpoint of t->model
 * and t->opt as trainer_run writes it (next_epoch, at an epoch boundary), one metrics.jsonl line
 * (evalw: a finished JSON object), and summary.json through ops->summarize. */
int trainer_save_checkpoint(trainer *t, const char *leaf, int next_epoch);
int trainer_write_epoch(trainer *t, int epoch, const double *means, double seconds, wcmi_jsonw *evalw);
int trainer_finish(trainer *t, char **summary);

/* After the task built t->model: Adam (lr from the config) over `nets`, into t->opt, and the run's
 * PGD attack (t->attack), sized for a batch of the model's inputs. */
int trainer_setup(trainer *t, wcmi_net **nets, int n_nets);

/* What a task's step function calls. A step is "which objective, which parameters": the trainer
 * attacks, checks the loss, steps the optimizer and keeps the phase times. */

/* The training batch under attack: PGD with the run's settings at this epoch's eps (t->train_eps)
 * against obj, from x (n samples) into t->xadv, timed as the attack phase. */
int trainer_attack_batch(trainer *t, const wcmi_objective *obj, const float *x, int n);
/* The same attack at the full eps (evaluations: the test MI, held-out estimates) into out. */
int trainer_attack_full(trainer *t, const wcmi_objective *obj, const float *x, int n, float *out);
/* Adds seconds to the attack phase (a step that perturbs its batch itself: free adversarial training). */
void trainer_add_attack_time(trainer *t, double seconds);
/* Fails with WCMI_ENUMERIC ("<task>: <what> is <loss> at epoch E: stopping ...") if loss is NaN/Inf. */
int trainer_check_loss(trainer *t, const char *what, double loss);
/* The optimizer step of a task's step function, timed as the optimizer phase: in a data-parallel
 * run the gradients are first summed over the ranks (docs/distributed.md); in one process,
 * wcmi_optim_step. */
int trainer_optim_step(trainer *t);

/* Where a resumed run continues: a checkpoint's metadata, parsed and range-checked. */
typedef struct trainer_resume {
  int epoch;           /* next epoch to run, in [0, WCMI_EPOCHS_MAX] */
  int64_t batch, done; /* next batch of that epoch; batches already summed (<= batch) */
  double sums[TRAINER_MAX_SUMS];
  double best_score;   /* not NaN */
  int best_epoch;      /* -1 or an epoch before `epoch` */
} trainer_resume;
/* Parses the checkpoint metadata values "epoch", "batch", "best" ("score epoch") and "partial"
 * ("done sum0 sum1 ..." with n_sums sums); a missing, malformed or out-of-range value fails with
 * WCMI_EFORMAT naming path. The batch is checked against the epoch's batch count by trainer_run. */
int trainer_parse_resume(wcmi_ctx *ctx, const char *path, const char *epoch, const char *batch, const char *best,
                         const char *partial, int n_sums, trainer_resume *rp);
/* How many leading bytes of metrics.jsonl text a run resumed at (epoch, batch) keeps: the lines of
 * earlier epochs, and the probe lines of `epoch` taken at or before `batch` (probes run before the
 * batch they name, and a checkpoint at `batch` has not run it). The rest is what the resumed run
 * writes again. */
size_t trainer_metrics_keep(const char *text, size_t n, int epoch, int64_t batch);

/* Helpers shared by tasks. */
int task_open_data(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, wcmi_dataset *train, wcmi_dataset *test);
/* Batches per epoch after the cap. */
int64_t task_num_batches(const wcmi_task_cfg *cfg, int64_t n);
/* Natural and adversarial accuracy of m on d (eval mode), attack settings from cfg->attack. */
int task_accuracy(wcmi_ctx *ctx, wcmi_model *m, const wcmi_dataset *d, const wcmi_task_cfg *cfg,
                  const wcmi_pgd_cfg *attack, int use_apgd, wcmi_rng *rng, double *nat, double *adv);
/* Progress line on stderr (only when cfg->progress). */
void task_progress(const wcmi_task_cfg *cfg, const char *task, int epoch, int64_t batch, int64_t nb, double loss,
                   const char *extra_name, double extra, double items_per_s, double eta_s);
/* Fails with WCMI_ENUMERIC naming the net if any parameter is NaN/Inf. */
int task_check_finite(wcmi_ctx *ctx, wcmi_model *m);

#endif
