/* The paper's tasks as library calls (the CLI is a thin layer over these), with run directories:
 * config.json, metrics.jsonl (one line per epoch), latest/best.safetensors (model, optimizer state,
 * RNG state, epoch), summary.json. */
#ifndef WCMI_TASKS_H
#define WCMI_TASKS_H

#include "wcmi/data.h"
#include "wcmi/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which attacks `eval` runs (PAPER.md section 4 and issue 6's stronger evaluation). */
typedef enum {
  WCMI_EVAL_PGD = 0,    /* the configured PGD (the paper's protocol by default) */
  WCMI_EVAL_APGD = 1,   /* APGD-CE at the same eps, norm and iteration budget */
  WCMI_EVAL_STRONG = 2, /* configured PGD + PGD with random start and restarts + APGD-CE, worst case per sample */
} wcmi_eval_attack;

/* How train-classifier fits a standard head on its frozen encoder (docs/tasks.md). */
typedef enum {
  WCMI_HEAD_FIT_AUTO = 0,   /* cached where it is the same computation (standard training, no augmentation) */
  WCMI_HEAD_FIT_CACHED = 1, /* encode once, fit on standardized cached features, fold the standardization */
  WCMI_HEAD_FIT_ONLINE = 2, /* the encoder in the loop, every epoch (robust heads always train this way) */
} wcmi_head_fit;
const char *wcmi_head_fit_name(wcmi_head_fit f); /* "auto", "cached", "online" */
int wcmi_head_fit_parse(wcmi_ctx *ctx, const char *s, wcmi_head_fit *out);

/* Which epoch's model best.safetensors keeps (train-classifier, train-model). */
typedef enum {
  WCMI_SELECT_AUTO = 0, /* adversarial accuracy when training robustly, natural otherwise */
  WCMI_SELECT_NAT = 1,  /* highest natural accuracy */
  WCMI_SELECT_ADV = 2,  /* highest adversarial accuracy (the paper's "early-stopped on adv acc" rows) */
} wcmi_select_kind;
const char *wcmi_select_name(wcmi_select_kind s); /* "auto", "nat", "adv" */

typedef struct wcmi_task_cfg {
  /* data */
  const char *data, *data_dir;
  long long train_subset, test_subset, val_size;
  /* optimization */
  int epochs, batch_size;
  double lr;
  int lr_schedule;      /* wcmi_lr_schedule: constant (the paper's) or warm-up + cosine decay per step */
  double warmup_epochs; /* cosine: linear warm-up over this many epochs (fractions allowed) */
  uint64_t seed;
  /* model */
  int hsize;
  wcmi_mi_cfg mi;
  wcmi_grad_path grad_path;
  wcmi_head_kind head;
  wcmi_encoder_kind encoder; /* train-model: basic (the paper's) or pixels (heads on raw pixels) */
  wcmi_select_kind select;   /* train-classifier / train-model: what best.safetensors keeps */
  /* attack, for training (worst-case objective, robust training) and evaluation */
  wcmi_pgd_cfg attack;
  int eps_fade_epochs;
  /* task switches */
  int worst;         /* train-encoder: worst-case objective; estimate-mi: worst case */
  int robust;        /* train-classifier / train-model: adversarial training */
  const char *model; /* input model file (frozen encoder, model to evaluate) */
  /* run */
  const char *out_dir, *resume_dir;
  int force;         /* out_dir may hold an earlier run: its files are replaced */
  int progress;      /* 0 quiet, 1 plain lines on stderr, 2 one-line bar (TTY) */
  int timing;        /* print where the time goes */
  int max_batches;   /* > 0: cap batches per epoch (smoke tests) */
  int eval_batches;  /* > 0: cap evaluation batches */
  int precision;     /* wcmi_gemm_precision of the large GEMMs: fp32 (default) or bf16 (wcmi/blas.h) */
  const char *profile;
  wcmi_eval_attack eval_attack; /* eval: which attacks to run */
  wcmi_head_fit head_fit;       /* train-classifier: how a standard head is fitted */
  /* train-encoder learning curves: a linear probe every probe_every seconds of training (0: off) on
   * probe_train class-balanced training images, scored on probe_test test images. */
  double probe_every;
  long long probe_train, probe_test;
  /* and, with probe_robust_steps > 0, a robust MLP head trained that many Madry steps on the same
   * subset (docs/learning-curves.md). */
  int probe_robust_steps;
  /* train-encoder --objective worst: 0 = the paper's PGD attack on every batch; m > 0 = "free"
   * adversarial training with m replays per batch (src/train/task_encoder.c). */
  int free_replays;
} wcmi_task_cfg;

/* Defaults of a profile ("paper", "fast" or "quick") for a dataset: PAPER.md sections 4 and 5 for
 * "paper"; the full splits and threat model on a budget of hours for "fast"; a budget that runs in
 * minutes on 2 cores for "quick" (documented in docs/profiles.md). The attack set here is the
 * dataset's paper attack, which evaluations and MI measurements always use. */
int wcmi_task_defaults(wcmi_ctx *ctx, wcmi_task_cfg *cfg, const char *dataset, const char *profile);
/* The attack a profile trains with, derived from the threat model in *a (eps as given, the paper's
 * steps and step). paper and quick leave *a alone. fast: the MI attack of a worst-case encoder takes
 * WCMI_FAST_MI_STEPS steps of WCMI_FAST_MI_STEP_OF_EPS x eps from a random start; the PGD of a robust
 * head or model takes WCMI_FAST_ROBUST_STEPS steps that travel as far as the paper's. */
typedef enum { WCMI_TRAIN_ATTACK_MI = 0, WCMI_TRAIN_ATTACK_ROBUST = 1 } wcmi_training_attack;
#define WCMI_FAST_MI_STEPS 3
#define WCMI_FAST_MI_STEP_OF_EPS 0.4
#define WCMI_FAST_ROBUST_STEPS 5
/* fast: heads on a frozen encoder (train-classifier and reproduce): robust ones train this many
 * epochs, all of them at this Adam learning rate. */
#define WCMI_FAST_ROBUST_HEAD_EPOCHS 2
#define WCMI_FAST_HEAD_LR 2e-3
/* fast: the end-of-epoch monitoring of a training run sees this many test batches (a final
 * evaluation, wcmi eval, sees the whole split). */
#define WCMI_FAST_MONITOR_BATCHES 8
/* fast: train-encoder probes its learning curve every this many seconds of training
 * (docs/learning-curves.md). */
#define WCMI_FAST_PROBE_EVERY 1800
void wcmi_profile_training_attack(const char *profile, wcmi_training_attack kind, wcmi_pgd_cfg *a);
/* config.json text for cfg (caller frees with free()). */
char *wcmi_task_config_json(const wcmi_task_cfg *cfg, const char *task);
/* Upper bounds of the task settings (hsize: WCMI_HSIZE_MAX in wcmi/model.h). */
#define WCMI_EPOCHS_MAX 1000000
#define WCMI_BATCH_MAX 65536
/* The ranges every configuration must satisfy, whether it comes from the command line or from a
 * run's config.json: epochs in [0, WCMI_EPOCHS_MAX], batch size in [2, WCMI_BATCH_MAX], lr > 0,
 * hsize in [1, WCMI_HSIZE_MAX], subsets, batch caps and eps-fade >= 0, a valid attack. */
int wcmi_task_cfg_check(wcmi_ctx *ctx, const wcmi_task_cfg *cfg);
/* Reads a run's config.json back into cfg (strings are owned by *keep, free with wcmi_json_free).
 * Every value is range-checked (wcmi_task_cfg_check); unknown names are refused. */
typedef struct wcmi_json wcmi_json;
int wcmi_task_config_load(wcmi_ctx *ctx, const char *run_dir, wcmi_task_cfg *cfg, char *task, size_t task_n,
                          wcmi_json **keep);
/* The same from config.json text in memory (`path` names it in messages); does not set resume_dir. */
int wcmi_task_config_parse(wcmi_ctx *ctx, const char *path, const char *text, size_t len, wcmi_task_cfg *cfg,
                           char *task, size_t task_n, wcmi_json **keep);

/* Each task writes its run directory (cfg->out_dir, or continues cfg->resume_dir) and returns the
 * summary as a JSON string (malloc'd) in *summary. */
int wcmi_task_train_encoder(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary);
int wcmi_task_train_classifier(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary);
int wcmi_task_train_model(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary);
int wcmi_task_estimate_mi(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary);
int wcmi_task_vulnerability(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary);
/* Natural and adversarial accuracy of cfg->model on the test split (attacks per cfg->eval_attack);
 * writes eval.json into cfg->out_dir when it is set. */
int wcmi_task_eval(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary);

/* ---- estimate-mi / vulnerability options (docs/estimate-mi.md) ---------------------------- */
typedef enum { WCMI_REPR_AUTO = 0, WCMI_REPR_Z = 1, WCMI_REPR_LOGITS = 2 } wcmi_repr_kind;
typedef struct wcmi_estimate_opts {
  wcmi_repr_kind repr;  /* AUTO: the logits when the model has a classifier head, else z */
  int refit_patience;   /* re-fitted worst-case estimate: epochs without held-out improvement (3) */
  int refit_max_epochs; /* and at most this many epochs (50) */
  int critics;          /* critics from independent seeds, averaged; 0: the profile's (quick 3, paper 1) */
} wcmi_estimate_opts;
void wcmi_estimate_opts_default(wcmi_estimate_opts *o);
const char *wcmi_repr_name(wcmi_repr_kind r); /* "auto", "z", "logits" */
/* Width and epochs of the fresh critic that `wcmi estimate-mi` / `vulnerability` train under
 * --profile quick when --hsize / --epochs are not given (docs/estimate-mi.md). */
#define WCMI_QUICK_ESTIMATE_HSIZE 64
#define WCMI_QUICK_ESTIMATE_EPOCHS 2
/* The number of critics o asks for (o->critics, or the profile's default when 0). */
int wcmi_estimate_critics(const wcmi_task_cfg *cfg, const wcmi_estimate_opts *o);
/* The seed of critic k: k = 0 is seed itself (the single-critic run); others from (seed, k). */
uint64_t wcmi_estimate_critic_seed(uint64_t seed, int k);
/* wcmi_task_estimate_mi / wcmi_task_vulnerability use the defaults above. */
int wcmi_task_estimate_mi_ex(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *opts, char **summary);
int wcmi_task_vulnerability_ex(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *opts,
                               char **summary);

/* Per-neuron vulnerability (the paper's Figure 3): normal and worst-case MI between each channel of
 * a conv layer of the encoder and the input patch in its receptive field, every spatial location a
 * sample (docs/estimate-mi.md). Uses cfg's model, data, epochs, batch size, lr, estimator, attack
 * and grad path; writes per_neuron.json and summary.json into cfg->out_dir when set. */
typedef struct wcmi_neuron_opts {
  const char *layer;  /* encoder conv: "layer0.0", "layer1.0" (default) or "layer2.0" */
  int max_neurons;    /* 0: every channel; else the first N channels */
  int train_samples;  /* patches each critic trains on (4096) */
  int test_samples;   /* held-out patches (1024) */
  int hidden, hsize;  /* critic: MLP width and embedding size (128, 64) */
} wcmi_neuron_opts;
void wcmi_neuron_opts_default(wcmi_neuron_opts *o);
int wcmi_task_neuron_vulnerability(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_neuron_opts *o, char **summary);

/* Representations of a dataset split under cfg->model (eval mode): a float32 (N, D) .npy at
 * out_path (D = 64 for z, 10 for logits; AUTO: logits when the model has a head, else z) and the
 * int32 labels (N) at labels_path. */
int wcmi_task_encode(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, wcmi_split split, wcmi_repr_kind repr,
                     const char *out_path, const char *labels_path, char **summary);

#ifdef __cplusplus
}
#endif
#endif
