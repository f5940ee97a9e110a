/* The run configuration as one table (wcmi/task_config.h): each setting of wcmi_task_cfg once, with
 * its flag, help, defaults, range, config.json key and group. config.c and the CLI (src/cli/task_cli.c)
 * walk it; nothing else spells a setting out. */
#include "wcmi/model.h"
#include "wcmi/task_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define OFF(member) ((ptrdiff_t)offsetof(wcmi_task_cfg, member))
#define NAMES(...) .names = (const char *const[]){__VA_ARGS__}, .n_names = sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)
#define RANGE(a, b) .ranged = 1, .lo = (a), .hi = (b)
#define AT_LEAST(a) .ranged = 1, .lo = (a), .hi = HUGE_VAL

/* PAPER.md section 4: the attack used for training and evaluation on each dataset (mnist,
 * fashion-mnist, svhn, cifar10: the order of DATASETS in config.c). use-best is on because MadryLab robustness defaults it to 1 and the authors' scripts
 * never turn it off: every published number kept the highest-loss PGD iterate, the starting (clean)
 * point among them. */
static const double EPS[] = {0.3, 0.1, 4.0 / 255.0, 8.0 / 255.0};
static const double STEP[] = {0.1, 0.02, 0.005, 0.01};
static const double STEPS[] = {10, 10, 10, 7};

static const wcmi_cfg_field FIELDS[WCMI_CFG_NFIELDS] = {
    [WCMI_CFG_PROFILE] = {"--profile", "P",
                          "paper (default: the paper's budget, days), fast (the paper's data and threat model in "
                          "hours) or quick (minutes)",
                          .group = WCMI_GROUP_PROFILE,
                          .type = WCMI_FIELD_STR, .offset = OFF(profile), .key = "profile", .str_default = "paper"},
    [WCMI_CFG_DATA] = {"--data", "NAME", "dataset: mnist, fashion-mnist (default), svhn, cifar10 (with --model: the model's)",
                       .group = WCMI_GROUP_DATA, .type = WCMI_FIELD_STR, .offset = OFF(data), .key = "data"},
    [WCMI_CFG_DATA_DIR] = {"--data-dir", "DIR", "where the dataset files are (default: per dataset, docs/data.md)",
                           .group = WCMI_GROUP_DATA, .type = WCMI_FIELD_STR, .offset = OFF(data_dir), .key = "data_dir",
                           .optional = 1, .resumable = 1},
    [WCMI_CFG_TRAIN_SUBSET] = {"--train-subset", "N", "class-balanced subset of the training split (0: all)",
                               .group = WCMI_GROUP_TRAIN_SPLIT, .type = WCMI_FIELD_I64, .offset = OFF(train_subset),
                               .key = "train_subset", .quick = 10000, AT_LEAST(0)},
    [WCMI_CFG_TEST_SUBSET] = {"--test-subset", "N", "class-balanced subset of the test split (0: all)", .group = WCMI_GROUP_DATA,
                              .type = WCMI_FIELD_I64, .offset = OFF(test_subset), .key = "test_subset", .quick = 1000,
                              AT_LEAST(0)},
    [WCMI_CFG_EPOCHS] = {"--epochs", "N", "training epochs", .group = WCMI_GROUP_TRAINING,
                         .type = WCMI_FIELD_INT, .offset = OFF(epochs), .key = "epochs", .paper = 300, .quick = 4,
                         RANGE(0, WCMI_EPOCHS_MAX), .resumable = 1},
    [WCMI_CFG_BATCH_SIZE] = {"--batch-size", "B", "batch size (paper: 128)", .group = WCMI_GROUP_PROFILE,
                             .type = WCMI_FIELD_INT, .offset = OFF(batch_size), .key = "batch_size", .paper = 128,
                             .quick = 128, RANGE(2, WCMI_BATCH_MAX)},
    [WCMI_CFG_LR] = {"--lr", "LR", "Adam learning rate (paper: 1e-4)", .group = WCMI_GROUP_TRAINING,
                     .type = WCMI_FIELD_DOUBLE, .offset = OFF(lr), .key = "lr", .paper = 1e-4, .quick = 5e-4, RANGE(0, 1e6),
                     .lo_open = 1},
    /* Added after runs existed: written only when not constant, so their config.json is unchanged. */
    [WCMI_CFG_LR_SCHEDULE] = {"--lr-schedule", "S",
                              "constant (default, the paper's) or cosine (per step: linear warm-up over --warmup-epochs, "
                              "then cosine decay to 0 at the last epoch)",
                              .group = WCMI_GROUP_TRAINING, .type = WCMI_FIELD_CHOICE, .offset = OFF(lr_schedule),
                              .key = "lr_schedule", NAMES("constant", "cosine"), .optional = 1, .sparse = 1},
    [WCMI_CFG_WARMUP_EPOCHS] = {"--warmup-epochs", "E", "cosine schedule: epochs of linear warm-up (default 0)",
                                .group = WCMI_GROUP_TRAINING, .type = WCMI_FIELD_DOUBLE, .offset = OFF(warmup_epochs),
                                .key = "warmup_epochs", .optional = 1, .sparse = 1, RANGE(0, WCMI_EPOCHS_MAX)},
    [WCMI_CFG_SEED] = {"--seed", "S", "random seed (default 0)", .group = WCMI_GROUP_RUN, .type = WCMI_FIELD_U64,
                       .offset = OFF(seed), .key = "seed"},
    [WCMI_CFG_HSIZE] = {"--hsize", "H", "MI estimator width (paper: 2048)", .group = WCMI_GROUP_ESTIMATOR,
                        .type = WCMI_FIELD_INT, .offset = OFF(hsize), .key = "hsize", .paper = 2048, .quick = 256,
                        RANGE(1, WCMI_HSIZE_MAX)},
    [WCMI_CFG_ESTIMATOR] = {"--estimator", "E", "MI estimator: dv (default), fd, nce", .group = WCMI_GROUP_ESTIMATOR,
                            .type = WCMI_FIELD_CHOICE, .offset = OFF(mi.estimator), .key = "estimator",
                            NAMES("dv", "fd", "nce")},
    [WCMI_CFG_MEASURE] = {"--measure", "M", "fd measure: jsd (default), gan, x2, kl, rkl, h2, w1", .group = WCMI_GROUP_ESTIMATOR,
                          .type = WCMI_FIELD_CHOICE, .offset = OFF(mi.measure), .key = "measure",
                          NAMES("jsd", "gan", "x2", "kl", "rkl", "h2", "w1")},
    [WCMI_CFG_GRAD_PATH] = {"--grad-path", "P", "MI attack gradient: encoder (default) or both", .group = WCMI_GROUP_ESTIMATOR,
                            .type = WCMI_FIELD_CHOICE, .offset = OFF(grad_path), .key = "grad_path", NAMES("encoder", "both")},
    [WCMI_CFG_HEAD] = {"--head", "H", "classifier head: linear or mlp (default)", .group = WCMI_GROUP_HEAD,
                       .type = WCMI_FIELD_CHOICE, .offset = OFF(head), .key = "head", NAMES("none", "linear", "mlp"),
                       .cli_first = 1, .paper = WCMI_HEAD_MLP, .quick = WCMI_HEAD_MLP},
    [WCMI_CFG_ENCODER] = {"--encoder", "E",
                          "basic (default: the paper's encoder) or pixels (no encoder: the head on the normalized, "
                          "flattened image)",
                          .group = WCMI_GROUP_ENCODER, .type = WCMI_FIELD_CHOICE, .offset = OFF(encoder), .key = "encoder",
                          NAMES("basic", "pixels"), .optional = 1},
    [WCMI_CFG_SELECT] = {"--select", "S",
                         "what best.safetensors keeps: auto (default: adversarial accuracy when robust, natural otherwise), "
                         "nat or adv (a standard head early-stopped on adversarial accuracy)",
                         .group = WCMI_GROUP_HEAD, .type = WCMI_FIELD_CHOICE, .offset = OFF(select), .key = "select",
                         NAMES("auto", "nat", "adv"), .optional = 1},
    [WCMI_CFG_OBJECTIVE] = {"--objective", "O", "normal (DIM: maximize MI, default) or worst (maximize worst-case MI)",
                            .group = WCMI_GROUP_OBJECTIVE, .type = WCMI_FIELD_BOOL, .offset = OFF(worst), .key = "worst",
                            NAMES("normal", "worst")},
    [WCMI_CFG_TRAINING] = {"--training", "T",
                           "standard (default: clean cross-entropy) or robust (adversarial training on PGD examples)",
                           .group = WCMI_GROUP_HEAD, .type = WCMI_FIELD_BOOL, .offset = OFF(robust), .key = "robust",
                           NAMES("standard", "robust")},
    /* Runs written before the cached head fit existed have no head_fit: they trained online. */
    [WCMI_CFG_HEAD_FIT] = {"--head-fit", "F",
                           "standard heads: auto (default: cached unless the data is augmented), cached (encode once, fit "
                           "on whitened features: seconds) or online (encoder in the loop)",
                           .group = WCMI_GROUP_HEAD_FIT, .type = WCMI_FIELD_CHOICE, .offset = OFF(head_fit),
                           .key = "head_fit", NAMES("auto", "cached", "online"), .optional = 1,
                           .legacy = WCMI_HEAD_FIT_ONLINE},
    /* Probes read the model and change no result, so a resumed run may turn them on or off. */
    [WCMI_CFG_PROBE_EVERY] = {"--probe-every", "SEC",
                              "learning curve: every SEC seconds of training, fit a linear probe on the cached "
                              "representations and record its natural and PGD accuracy in metrics.jsonl (default 0: off)",
                              .group = WCMI_GROUP_PROBE, .type = WCMI_FIELD_DOUBLE, .offset = OFF(probe_every),
                              .key = "probe_every", .optional = 1, RANGE(0, 1e7), .resumable = 1},
    [WCMI_CFG_PROBE_TRAIN] = {"--probe-train", "N", "probe: class-balanced training images (default 5000)",
                              .group = WCMI_GROUP_PROBE, .type = WCMI_FIELD_I64, .offset = OFF(probe_train),
                              .key = "probe_train", .optional = 1, .has_cli_default = 1, .cli_default = 5000,
                              RANGE(0, 1e8), .resumable = 1},
    [WCMI_CFG_PROBE_TEST] = {"--probe-test", "N", "probe: class-balanced test images (default 1000)",
                             .group = WCMI_GROUP_PROBE, .type = WCMI_FIELD_I64, .offset = OFF(probe_test),
                             .key = "probe_test", .optional = 1, .has_cli_default = 1, .cli_default = 1000, RANGE(0, 1e8),
                             .resumable = 1},
    /* Added after runs existed: an old run (no key) resumes without it; new runs default to 150. */
    [WCMI_CFG_PROBE_ROBUST] = {"--probe-robust-steps", "K",
                               "probe: also train a robust MLP head for K Madry steps on the probe's images and record "
                               "its natural and PGD accuracy (default 150; 0: off)",
                               .group = WCMI_GROUP_PROBE, .type = WCMI_FIELD_INT, .offset = OFF(probe_robust_steps),
                               .key = "probe_robust_steps", .optional = 1, .sparse = 1, .has_cli_default = 1,
                               .cli_default = 150, RANGE(0, 1e6), .resumable = 1},
    [WCMI_CFG_FREE_REPLAYS] = {"--free-replays", "M",
                               "worst: \"free\" adversarial training instead of the PGD attack: each batch replayed M "
                               "times, one signed step of --attack-lr per replay, the perturbation carried across "
                               "batches (divide --epochs by M; default 0: PGD)",
                               .group = WCMI_GROUP_OBJECTIVE, .type = WCMI_FIELD_INT, .offset = OFF(free_replays),
                               .key = "free_replays", .optional = 1, RANGE(0, 64)},
    [WCMI_CFG_MODEL] = {"--model", "FILE",
                        "input model file (any wcmi model): the frozen encoder of train-classifier, the model to "
                        "evaluate, encode or analyse; it names the dataset unless --data does",
                        .group = WCMI_GROUP_MODEL, .type = WCMI_FIELD_STR, .offset = OFF(model), .key = "model",
                        .optional = 1},
    [WCMI_CFG_NORM] = {"--norm", "N", "perturbation norm: linf (default) or l2", .group = WCMI_GROUP_ATTACK,
                       .type = WCMI_FIELD_CHOICE, .offset = OFF(attack.norm), .key = "norm", .in_attack = 1,
                       NAMES("linf", "l2")},
    [WCMI_CFG_EPS] = {"--eps", "EPS", "perturbation budget (accepts fractions like 8/255; default per dataset)",
                      .group = WCMI_GROUP_ATTACK, .type = WCMI_FIELD_FLOAT, .offset = OFF(attack.eps), .key = "eps",
                      .in_attack = 1, .per_dataset = EPS},
    [WCMI_CFG_ATTACK_LR] = {"--attack-lr", "A", "PGD step size (default per dataset)", .group = WCMI_GROUP_ATTACK,
                            .type = WCMI_FIELD_FLOAT, .offset = OFF(attack.step), .key = "step", .in_attack = 1,
                            .per_dataset = STEP},
    [WCMI_CFG_ATTACK_STEPS] = {"--attack-steps", "K", "PGD steps (default per dataset)", .group = WCMI_GROUP_ATTACK,
                               .type = WCMI_FIELD_INT, .offset = OFF(attack.steps), .key = "steps", .in_attack = 1,
                               .per_dataset = STEPS},
    [WCMI_CFG_RANDOM_START] = {"--random-start", NULL, "start PGD uniformly inside the ball", .group = WCMI_GROUP_ATTACK,
                               .type = WCMI_FIELD_BOOL, .offset = OFF(attack.random_start), .key = "random_start",
                               .in_attack = 1},
    [WCMI_CFG_RESTARTS] = {"--restarts", "R", "extra PGD runs from random starts (worst kept)", .group = WCMI_GROUP_ATTACK,
                           .type = WCMI_FIELD_INT, .offset = OFF(attack.restarts), .key = "restarts", .in_attack = 1},
    [WCMI_CFG_USE_BEST] = {"--use-best", NULL,
                           "keep the PGD iterate with the highest loss, clean start included (default: on, as the paper)",
                           "--no-use-best", "return the last PGD iterate instead", .group = WCMI_GROUP_ATTACK,
                           .type = WCMI_FIELD_BOOL, .offset = OFF(attack.use_best), .key = "use_best", .in_attack = 1,
                           .paper = 1, .quick = 1},
    [WCMI_CFG_EPS_FADE] = {"--eps-fade", "E", "grow eps linearly over the first E epochs", .group = WCMI_GROUP_TRAINING,
                           .type = WCMI_FIELD_INT, .offset = OFF(eps_fade_epochs), .key = "eps_fade_epochs",
                           .in_attack = 1, AT_LEAST(0)},
    [WCMI_CFG_MAX_BATCHES] = {"--max-batches", "N", "cap batches per epoch (smoke tests)", .group = WCMI_GROUP_TRAINING,
                              .type = WCMI_FIELD_INT, .offset = OFF(max_batches), .key = "max_batches", AT_LEAST(0)},
    /* How much of the test split the end-of-epoch evaluation covers: it reports, never trains. */
    [WCMI_CFG_EVAL_BATCHES] = {"--eval-batches", "N", "cap evaluation batches", .group = WCMI_GROUP_EVAL,
                               .type = WCMI_FIELD_INT, .offset = OFF(eval_batches), .key = "eval_batches", AT_LEAST(0),
                               .resumable = 1},
    /* Added after runs existed: written only as bf16, so fp32 runs' config.json is unchanged. A run
     * keeps its precision when resumed. */
    [WCMI_CFG_PRECISION] = {"--precision", "P",
                            "GEMM precision: fp32 (default) or bf16 (opt-in: convolutions and linear layers round "
                            "their inputs to bfloat16, accumulate in fp32; needs a build with oneDNN and an AVX-512 CPU)",
                            .group = WCMI_GROUP_RUN, .type = WCMI_FIELD_CHOICE, .offset = OFF(precision),
                            .key = "precision", NAMES("fp32", "bf16"), .optional = 1, .sparse = 1},
    [WCMI_CFG_CASE] = {"--case", "C", "normal (I(X; g(X)), default) or worst (worst-case MI under the MI attack)",
                       .group = WCMI_GROUP_CASE, .type = WCMI_FIELD_BOOL, .offset = OFF(worst), NAMES("normal", "worst")},
    [WCMI_CFG_EVAL_ATTACK] = {"--attack", "A",
                              "pgd (default: the configured PGD), apgd (APGD-CE, same eps and budget), strong (pgd + "
                              "random-start PGD with restarts (default 5) + APGD-CE, worst case per sample)",
                              .group = WCMI_GROUP_EVAL_ATTACK, .type = WCMI_FIELD_CHOICE, .offset = OFF(eval_attack),
                              NAMES("pgd", "apgd", "strong")},
    [WCMI_CFG_OUT] = {"--out", "DIR", "run directory to create", .group = WCMI_GROUP_OUT, .type = WCMI_FIELD_STR,
                      .offset = OFF(out_dir)},
    [WCMI_CFG_FORCE] = {"--force", NULL, "let --out replace the run already in DIR", .group = WCMI_GROUP_OUT,
                        .type = WCMI_FIELD_BOOL, .offset = OFF(force)},
    [WCMI_CFG_RESUME] = {"--resume", "DIR", "continue the run in DIR from its latest checkpoint", .group = WCMI_GROUP_TRAINING,
                         .type = WCMI_FIELD_STR, .offset = OFF(resume_dir), .resumable = 1},
    [WCMI_CFG_PROGRESS] = {"--progress", NULL, "progress on stderr (a bar on a TTY, lines otherwise)",
                           .group = WCMI_GROUP_PROGRESS, .type = WCMI_FIELD_BOOL, .offset = OFF(progress), .resumable = 1},
    [WCMI_CFG_TIMING] = {"--timing", NULL, "print where the time goes (attack, fwd+bwd, optimizer)",
                         .group = WCMI_GROUP_TRAINING, .type = WCMI_FIELD_BOOL, .offset = OFF(timing), .resumable = 1},
    [WCMI_CFG_THREADS] = {"--threads", "T", "threads (default: WCMI_NUM_THREADS or all cores)", .group = WCMI_GROUP_RUN,
                          .type = WCMI_FIELD_INT, .offset = -1, .resumable = 1},
    [WCMI_CFG_CONV_ALGO] = {"--conv-algo", "A",
                            "convolutions: auto (default: Winograd where it saves work) or gemm (im2col + GEMM, as "
                            "PyTorch's CPU path)",
                            .group = WCMI_GROUP_RUN, .type = WCMI_FIELD_CHOICE, .offset = -1, NAMES("auto", "gemm"),
                            .resumable = 1},
};

const char *wcmi_cfg_group_name(unsigned group) {
  static const char *const GROUP_NAMES[] = {"model",    "objective", "case",       "head",     "head fit", "encoder",
                                            "eval attack", "probe",  "data",       "training split", "profile",
                                            "training", "estimator", "attack",     "evaluation", "run",    "progress",
                                            "output"};
  for (unsigned i = 0; i < sizeof GROUP_NAMES / sizeof GROUP_NAMES[0]; i++)
    if (group == 1u << i) return GROUP_NAMES[i];
  return "?";
}

const wcmi_cfg_field *wcmi_cfg_field_at(int id) { return id >= 0 && id < WCMI_CFG_NFIELDS ? &FIELDS[id] : NULL; }

static int same_name(const char *name, const char *arg, size_t len) {
  return name && strlen(name) == len && !strncmp(name, arg, len);
}

const wcmi_cfg_field *wcmi_cfg_field_by_flag(const char *arg, size_t len, int *negated) {
  for (int i = 0; i < WCMI_CFG_NFIELDS; i++) {
    const int no = same_name(FIELDS[i].no_flag, arg, len);
    if (no || same_name(FIELDS[i].flag, arg, len)) {
      if (negated) *negated = no;
      return &FIELDS[i];
    }
  }
  return NULL;
}

int wcmi_cfg_field_choice(const wcmi_cfg_field *f, const char *name, int cli) {
  for (int k = cli ? f->cli_first : 0; name && k < f->n_names; k++)
    if (!strcmp(name, f->names[k])) return k;
  return -1;
}

void wcmi_cfg_field_names(const wcmi_cfg_field *f, int cli, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  const int first = cli ? f->cli_first : 0;
  for (int k = first; k < f->n_names && used < n; k++) {
    const char *sep = k == first ? "" : k + 1 == f->n_names ? " or " : ", ";
    int w = snprintf(buf + used, n - used, "%s%s", sep, f->names[k]);
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* ---- typed access through the offset ------------------------------------------------------------ */
/* Enums are int-sized with every compiler wcmi supports; the choices rely on it. */
_Static_assert(sizeof(wcmi_head_kind) == sizeof(int) && sizeof(wcmi_norm) == sizeof(int) &&
                   sizeof(wcmi_mi_estimator) == sizeof(int) && sizeof(wcmi_mi_measure) == sizeof(int) &&
                   sizeof(wcmi_grad_path) == sizeof(int) && sizeof(wcmi_encoder_kind) == sizeof(int) &&
                   sizeof(wcmi_select_kind) == sizeof(int) && sizeof(wcmi_head_fit) == sizeof(int) &&
                   sizeof(wcmi_eval_attack) == sizeof(int),
               "enum fields must be int-sized");

static void *slot(wcmi_task_cfg *c, const wcmi_cfg_field *f) { return (char *)c + f->offset; }
static const void *cslot(const wcmi_task_cfg *c, const wcmi_cfg_field *f) { return (const char *)c + f->offset; }

int64_t wcmi_cfg_get_int(const wcmi_task_cfg *c, const wcmi_cfg_field *f) {
  const void *p = cslot(c, f);
  switch (f->type) {
  case WCMI_FIELD_I64: return *(const long long *)p;
  case WCMI_FIELD_U64: return (int64_t) * (const uint64_t *)p;
  case WCMI_FIELD_INT:
  case WCMI_FIELD_BOOL:
  case WCMI_FIELD_CHOICE: return *(const int *)p;
  default: return 0;
  }
}

void wcmi_cfg_set_int(wcmi_task_cfg *c, const wcmi_cfg_field *f, int64_t v) {
  void *p = slot(c, f);
  switch (f->type) {
  case WCMI_FIELD_I64: *(long long *)p = v; break;
  case WCMI_FIELD_U64: *(uint64_t *)p = (uint64_t)v; break;
  case WCMI_FIELD_BOOL: *(int *)p = v != 0; break;
  case WCMI_FIELD_INT:
  case WCMI_FIELD_CHOICE: *(int *)p = (int)v; break;
  default: break;
  }
}

double wcmi_cfg_get_real(const wcmi_task_cfg *c, const wcmi_cfg_field *f) {
  if (f->type == WCMI_FIELD_FLOAT) return *(const float *)cslot(c, f);
  if (f->type == WCMI_FIELD_DOUBLE) return *(const double *)cslot(c, f);
  return (double)wcmi_cfg_get_int(c, f);
}

void wcmi_cfg_set_real(wcmi_task_cfg *c, const wcmi_cfg_field *f, double v) {
  if (f->type == WCMI_FIELD_FLOAT) *(float *)slot(c, f) = (float)v;
  else if (f->type == WCMI_FIELD_DOUBLE) *(double *)slot(c, f) = v;
  else wcmi_cfg_set_int(c, f, (int64_t)v);
}

const char *wcmi_cfg_get_str(const wcmi_task_cfg *c, const wcmi_cfg_field *f) { return *(const char *const *)cslot(c, f); }
void wcmi_cfg_set_str(wcmi_task_cfg *c, const wcmi_cfg_field *f, const char *v) { *(const char **)slot(c, f) = v; }

static int is_real(const wcmi_cfg_field *f) { return f->type == WCMI_FIELD_DOUBLE || f->type == WCMI_FIELD_FLOAT; }

int wcmi_cfg_same(const wcmi_task_cfg *a, const wcmi_task_cfg *b, const wcmi_cfg_field *f) {
  if (f->type == WCMI_FIELD_STR) {
    const char *x = wcmi_cfg_get_str(a, f), *y = wcmi_cfg_get_str(b, f);
    return x == y || (x && y && !strcmp(x, y));
  }
  if (is_real(f)) return wcmi_cfg_get_real(a, f) == wcmi_cfg_get_real(b, f);
  return wcmi_cfg_get_int(a, f) == wcmi_cfg_get_int(b, f);
}

void wcmi_cfg_value_text(const wcmi_task_cfg *c, const wcmi_cfg_field *f, char *buf, size_t n) {
  const int64_t v = f->type == WCMI_FIELD_STR || is_real(f) ? 0 : wcmi_cfg_get_int(c, f);
  if (f->type == WCMI_FIELD_STR) {
    const char *s = wcmi_cfg_get_str(c, f);
    snprintf(buf, n, "%s", s ? s : "(none)");
  } else if (is_real(f)) {
    snprintf(buf, n, "%.9g", wcmi_cfg_get_real(c, f));
  } else if (f->names && v >= 0 && v < f->n_names) {
    snprintf(buf, n, "%s", f->names[v]);
  } else if (f->type == WCMI_FIELD_BOOL) {
    snprintf(buf, n, "%s", v ? "on" : "off");
  } else {
    snprintf(buf, n, "%lld", (long long)v);
  }
}
