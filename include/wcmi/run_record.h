/* The run record: what a finished run reports, typed. Every task fills a wcmi_run_record; the
 * trainer (and the tasks with their own output: eval, vulnerability) write its fields into
 * summary.json / eval.json through one schema, and every reader (`wcmi reproduce`, the report, a
 * vulnerability run over its critics) reads them back through the same schema. The schema (key,
 * unit, which task writes it, what it means) is one table in src/io/run_record.c, listed in
 * docs/formats.md; a key is written and read under one name only, with one unit. */
#ifndef WCMI_RUN_RECORD_H
#define WCMI_RUN_RECORD_H

#include "wcmi/core.h"
#include "wcmi/json.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WCMI_RECORD_MAX_VALUES 100 /* per-critic values of a measure (--critics is at most 100) */

/* An MI figure: the mean over n critics, their spread (NaN for n < 2), each value, and the standard
 * error over the held-out batches (NaN: none). Absent: mean is NaN. n = 0: a single estimate written
 * without a per-critic list (estimate-mi with one critic). */
typedef struct wcmi_measure {
  double mean, std, sem;
  int n;
  double per[WCMI_RECORD_MAX_VALUES];
} wcmi_measure;

typedef enum {
  WCMI_UNIT_FRACTION, /* accuracies and the Fano bound: in [0, 1], shown in percent */
  WCMI_UNIT_NATS,     /* MI estimates, RV, losses */
  WCMI_UNIT_COUNT,    /* samples, critics, epochs */
  WCMI_UNIT_SECONDS,
  WCMI_UNIT_LR,       /* learning rate */
  WCMI_UNIT_PIXELS,   /* eps: the input's [0, 1] range */
} wcmi_unit;

/* Which files hold a field (bit mask). */
#define WCMI_REC_ENCODER 1u        /* train-encoder summary.json */
#define WCMI_REC_CLASSIFIER 2u     /* train-classifier / train-model summary.json */
#define WCMI_REC_ESTIMATE 4u       /* estimate-mi summary.json */
#define WCMI_REC_VULNERABILITY 8u  /* vulnerability summary.json */
#define WCMI_REC_EVAL 16u          /* eval.json */

typedef struct wcmi_run_record {
  /* accuracies, fractions (NaN: not reported) */
  double nat_acc;            /* natural (clean) accuracy on the test samples */
  double adv_acc;            /* the run's headline adversarial accuracy (eval: worst case over its attacks) */
  double best_nat_acc, best_adv_acc; /* of the epoch best.safetensors keeps */
  double pgd_adv_acc;        /* eval: under the configured PGD alone (the paper's protocol) */
  double worst_case_adv_acc; /* eval: correct under every attack that ran, per sample */
  double min_adv_acc;        /* eval: the lowest single attack's */
  /* MI in nats */
  wcmi_measure cotrained_normal_mi, cotrained_worst_mi; /* train-encoder: its own critic, clean / attacked */
  wcmi_measure test_mi, test_mi_clean, refit_mi, attack_drop; /* estimate-mi: held-out (of its --case) */
  wcmi_measure normal_mi, worst_mi, worst_mi_refit, rv, rv_refit, worst_critic_clean_mi; /* vulnerability */
  double fano_bound, fano_bound_refit; /* vulnerability: fraction; NaN (null) for no MI lower bound */
  /* counts (-1: not reported) */
  long long test_samples, critics;
} wcmi_run_record;

/* One field of the schema. */
typedef struct wcmi_record_field {
  const char *key;     /* JSON key ("nat_acc"); a measure also writes key_std, key_per_critic, key_sem */
  wcmi_unit unit;
  int measure;         /* a wcmi_measure (else a double, or a long long for counts) */
  unsigned files;      /* WCMI_REC_* that hold it */
  const char *label;   /* what the report calls it */
  const char *doc;     /* one line for docs/formats.md */
  ptrdiff_t offset;    /* in wcmi_run_record */
  int nullable;        /* written as null when absent (the Fano bound of an estimator that is no MI bound) */
} wcmi_record_field;

int wcmi_record_num_fields(void);
const wcmi_record_field *wcmi_record_field_at(int i);
const wcmi_record_field *wcmi_record_field_by_key(const char *key);

/* Every field absent (NaN, counts -1). */
void wcmi_record_clear(wcmi_run_record *r);
/* A field's scalar value (a measure's mean; a count as a double, NaN when -1). */
double wcmi_record_value(const wcmi_run_record *r, const wcmi_record_field *f);
const wcmi_measure *wcmi_record_measure(const wcmi_run_record *r, const wcmi_record_field *f); /* NULL: no measure */
/* m = the mean, sample standard deviation and values of v[0..n) (n >= 1); sem NaN. */
void wcmi_measure_set(wcmi_measure *m, const double *v, int n);

/* Writes the present fields of r that `files` holds into the open JSON object w, in schema order. */
void wcmi_record_write(wcmi_jsonw *w, const wcmi_run_record *r, unsigned files);
/* Reads every schema key present in the JSON object j (path names it in errors): a key of the wrong
 * type fails with WCMI_EFORMAT naming path and key; absent keys stay absent. */
int wcmi_record_read(wcmi_ctx *ctx, const char *path, const wcmi_json *j, wcmi_run_record *r);
/* Reads a run directory's summary.json and eval.json (those that exist; eval.json's fields win)
 * into r; *found = which of the two were there (1 summary, 2 eval). */
int wcmi_record_load(wcmi_ctx *ctx, const char *dir, wcmi_run_record *r, int *found);

/* The unit of a metrics.jsonl key ("loss", "mi", "train_acc", "lr", "seconds", "eval.nat_acc", ...),
 * by the same schema; 0 when the key is known, -1 when not. */
int wcmi_record_metric_unit(const char *key, wcmi_unit *unit);

#ifdef __cplusplus
}
#endif
#endif
