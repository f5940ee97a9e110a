/* The run configuration (wcmi_task_cfg) as one table: every setting once, with its command-line
 * flag, help text, defaults per profile and dataset, valid range, config.json key and the group of
 * settings it belongs to. The profile defaults, config.json (written and read back), its range
 * check, the attack settings in JSON and the CLI's options, --help and --resume check are all
 * driven by it (src/train/config_fields.c; docs/tasks.md). */
#ifndef WCMI_TASK_CONFIG_H
#define WCMI_TASK_CONFIG_H

#include "wcmi/json.h"
#include "wcmi/tasks.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Groups of settings. A command takes some groups: its --help lists their flags, and a flag of a
 * group it does not take is refused (exit 2). */
typedef enum {
  /* what the command is about (--help lists these first) */
  WCMI_GROUP_MODEL = 1u << 0,       /* --model (and the dataset it implies) */
  WCMI_GROUP_OBJECTIVE = 1u << 1,   /* train-encoder: --objective --free-replays */
  WCMI_GROUP_CASE = 1u << 2,        /* estimate-mi: --case */
  WCMI_GROUP_HEAD = 1u << 3,        /* classifiers: --head --training --select */
  WCMI_GROUP_HEAD_FIT = 1u << 4,    /* train-classifier: --head-fit */
  WCMI_GROUP_ENCODER = 1u << 5,     /* train-model: --encoder */
  WCMI_GROUP_EVAL_ATTACK = 1u << 6, /* eval: --attack */
  WCMI_GROUP_PROBE = 1u << 7,       /* train-encoder: --probe-every --probe-train --probe-test */
  /* shared by the commands */
  WCMI_GROUP_DATA = 1u << 8,         /* --data --data-dir --test-subset */
  WCMI_GROUP_TRAIN_SPLIT = 1u << 9,  /* --train-subset */
  WCMI_GROUP_PROFILE = 1u << 10,     /* --profile --batch-size */
  WCMI_GROUP_TRAINING = 1u << 11,    /* --epochs --lr --eps-fade --max-batches --timing --resume */
  WCMI_GROUP_ESTIMATOR = 1u << 12,   /* --hsize --estimator --measure --grad-path */
  WCMI_GROUP_ATTACK = 1u << 13,      /* --norm --eps --attack-steps --attack-lr --restarts --random-start --[no-]use-best */
  WCMI_GROUP_EVAL = 1u << 14,        /* --eval-batches */
  WCMI_GROUP_RUN = 1u << 15,         /* --seed --threads --conv-algo --precision */
  WCMI_GROUP_PROGRESS = 1u << 16,    /* --progress */
  WCMI_GROUP_OUT = 1u << 17,         /* --out --force */
} wcmi_cfg_group;
/* The groups every command that trains a network takes. */
#define WCMI_GROUPS_TRAINING                                                                                    \
  (WCMI_GROUP_DATA | WCMI_GROUP_TRAIN_SPLIT | WCMI_GROUP_PROFILE | WCMI_GROUP_TRAINING | WCMI_GROUP_ESTIMATOR | \
   WCMI_GROUP_ATTACK | WCMI_GROUP_EVAL | WCMI_GROUP_RUN | WCMI_GROUP_PROGRESS | WCMI_GROUP_OUT)
const char *wcmi_cfg_group_name(unsigned group); /* "data", "attack", ... ("?" for none or several) */

/* The settings, in the order of config.json (then those it does not hold). */
typedef enum {
  WCMI_CFG_PROFILE,
  WCMI_CFG_DATA,
  WCMI_CFG_DATA_DIR,
  WCMI_CFG_TRAIN_SUBSET,
  WCMI_CFG_TEST_SUBSET,
  WCMI_CFG_EPOCHS,
  WCMI_CFG_BATCH_SIZE,
  WCMI_CFG_LR,
  WCMI_CFG_LR_SCHEDULE,
  WCMI_CFG_WARMUP_EPOCHS,
  WCMI_CFG_SEED,
  WCMI_CFG_HSIZE,
  WCMI_CFG_ESTIMATOR,
  WCMI_CFG_MEASURE,
  WCMI_CFG_GRAD_PATH,
  WCMI_CFG_HEAD,
  WCMI_CFG_ENCODER,
  WCMI_CFG_SELECT,
  WCMI_CFG_OBJECTIVE, /* "worst" */
  WCMI_CFG_TRAINING,  /* "robust" */
  WCMI_CFG_HEAD_FIT,
  WCMI_CFG_PROBE_EVERY,
  WCMI_CFG_PROBE_TRAIN,
  WCMI_CFG_PROBE_TEST,
  WCMI_CFG_PROBE_ROBUST,
  WCMI_CFG_FREE_REPLAYS,
  WCMI_CFG_MODEL,
  WCMI_CFG_NORM, /* the "attack" object of config.json: norm ... eps_fade_epochs */
  WCMI_CFG_EPS,
  WCMI_CFG_ATTACK_LR,
  WCMI_CFG_ATTACK_STEPS,
  WCMI_CFG_RANDOM_START,
  WCMI_CFG_RESTARTS,
  WCMI_CFG_USE_BEST,
  WCMI_CFG_EPS_FADE,
  WCMI_CFG_MAX_BATCHES,
  WCMI_CFG_EVAL_BATCHES,
  WCMI_CFG_PRECISION,
  /* not in config.json: how to run, not what */
  WCMI_CFG_CASE, /* estimate-mi: the same field as WCMI_CFG_OBJECTIVE */
  WCMI_CFG_EVAL_ATTACK,
  WCMI_CFG_OUT,
  WCMI_CFG_FORCE,
  WCMI_CFG_RESUME,
  WCMI_CFG_PROGRESS,
  WCMI_CFG_TIMING,
  WCMI_CFG_THREADS,   /* applied to the context (wcmi_set_threads), not stored in cfg */
  WCMI_CFG_CONV_ALGO, /* applied to the context (ctx->conv_algo), not stored in cfg */
  WCMI_CFG_NFIELDS
} wcmi_cfg_id;

typedef enum {
  WCMI_FIELD_INT,    /* int */
  WCMI_FIELD_I64,    /* long long */
  WCMI_FIELD_U64,    /* uint64_t, written and given as a signed 64-bit integer (the seed) */
  WCMI_FIELD_DOUBLE, /* double */
  WCMI_FIELD_FLOAT,  /* float (the attack's eps and step) */
  WCMI_FIELD_STR,    /* const char * */
  WCMI_FIELD_BOOL,   /* int 0/1: true/false in JSON; a flag on the command line, or one of two names */
  WCMI_FIELD_CHOICE, /* an enum (int-sized), one of names[] (the value is the index) */
} wcmi_field_type;

typedef struct wcmi_cfg_field {
  const char *flag;     /* "--eps" */
  const char *metavar;  /* "EPS"; NULL for a flag without a value */
  const char *help;
  const char *no_flag;  /* BOOL: a second flag that sets 0 ("--no-use-best"), or NULL */
  const char *no_help;
  unsigned group;       /* one wcmi_cfg_group */
  wcmi_field_type type;
  ptrdiff_t offset;     /* in wcmi_task_cfg; -1 when the setting is applied elsewhere (threads, conv-algo) */
  const char *key;      /* config.json key; NULL: not written */
  int in_attack;        /* the key lives in config.json's "attack" object */
  int optional;         /* may be absent from config.json (runs from before it existed): then `legacy` */
  double legacy;
  const char *const *names; /* CHOICE: the names; BOOL: the names of 0 and 1 when given as a value */
  int n_names;
  int cli_first;        /* CHOICE: names[cli_first..] are accepted on the command line (head "none" is not) */
  double paper, quick;  /* numeric defaults of the two profiles (wcmi_task_defaults) */
  const double *per_dataset; /* or NULL: the default per dataset (mnist, fashion-mnist, svhn, cifar10) */
  int has_cli_default;  /* the command line starts from cli_default instead (probe sizes) */
  double cli_default;
  const char *str_default; /* STR: the value written when the field is NULL ("paper" for profile) */
  int ranged;           /* the value must lie in [lo, hi] (lo excluded when lo_open) */
  double lo, hi;
  int lo_open;
  int resumable;        /* may be given with --resume and change the run (it changes no result) */
  int sparse;           /* written to config.json only when it differs from `legacy`: a setting added after
                         * runs existed, so their config.json (and reproduce's stage matching) is unchanged */
} wcmi_cfg_field;

/* The field `id` (NULL outside [0, WCMI_CFG_NFIELDS)). */
const wcmi_cfg_field *wcmi_cfg_field_at(int id);
/* The field whose flag or no_flag is arg[0..len) ("--eps"); *negated = 1 for the no_flag. NULL if none. */
const wcmi_cfg_field *wcmi_cfg_field_by_flag(const char *arg, size_t len, int *negated);
/* The index of `name` among f's names (cli: only those the command line accepts), or -1. */
int wcmi_cfg_field_choice(const wcmi_cfg_field *f, const char *name, int cli);
/* "a, b or c": f's names (cli: those the command line accepts), into buf. */
void wcmi_cfg_field_names(const wcmi_cfg_field *f, int cli, char *buf, size_t n);

/* Typed access to cfg's value of f (f->offset >= 0). Integers (INT, I64, U64, BOOL, CHOICE) go through
 * int64_t, reals (DOUBLE, FLOAT) through double. */
int64_t wcmi_cfg_get_int(const wcmi_task_cfg *c, const wcmi_cfg_field *f);
void wcmi_cfg_set_int(wcmi_task_cfg *c, const wcmi_cfg_field *f, int64_t v);
double wcmi_cfg_get_real(const wcmi_task_cfg *c, const wcmi_cfg_field *f);
void wcmi_cfg_set_real(wcmi_task_cfg *c, const wcmi_cfg_field *f, double v);
const char *wcmi_cfg_get_str(const wcmi_task_cfg *c, const wcmi_cfg_field *f);
void wcmi_cfg_set_str(wcmi_task_cfg *c, const wcmi_cfg_field *f, const char *v);
/* Whether a and b hold the same value of f (strings compared by content). */
int wcmi_cfg_same(const wcmi_task_cfg *a, const wcmi_task_cfg *b, const wcmi_cfg_field *f);
/* cfg's value of f as text ("0.1", "worst", "true", "(none)"), into buf. */
void wcmi_cfg_value_text(const wcmi_task_cfg *c, const wcmi_cfg_field *f, char *buf, size_t n);

/* The attack's settings as fields of the open JSON object w, from the table (norm, eps, step, steps,
 * random_start, restarts, use_best: the keys of config.json's "attack" object). */
void wcmi_task_attack_json(wcmi_jsonw *w, const wcmi_pgd_cfg *a);

#ifdef __cplusplus
}
#endif
#endif
