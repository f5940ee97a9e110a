/* The run-record schema (wcmi/run_record.h): one table of every result a run directory holds, with
 * its JSON key, unit, the files that hold it and what it means. Tasks fill a wcmi_run_record and
 * write it through wcmi_record_write; `wcmi reproduce`, the report and vulnerability read it back
 * through wcmi_record_read, so a key has one name and one unit everywhere (docs/formats.md). */
#include "wcmi/run_record.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define OFF(member) ((ptrdiff_t)offsetof(wcmi_run_record, member))
#define FRAC WCMI_UNIT_FRACTION
#define NATS WCMI_UNIT_NATS
#define COUNT WCMI_UNIT_COUNT
#define CLF WCMI_REC_CLASSIFIER
#define ENC WCMI_REC_ENCODER
#define EST WCMI_REC_ESTIMATE
#define VUL WCMI_REC_VULNERABILITY
#define EVL WCMI_REC_EVAL

/* In write order. A measure's key_std / key_per_critic / key_sem follow its key. */
static const wcmi_record_field FIELDS[] = {
    {"nat_acc", FRAC, 0, CLF | EVL, "natural accuracy", "clean test accuracy", OFF(nat_acc), 0},
    {"adv_acc", FRAC, 0, CLF | EVL, "adversarial accuracy",
     "train-classifier/train-model: under the run's PGD after the last epoch; eval: correct under every attack that ran "
     "(= worst_case_adv_acc)",
     OFF(adv_acc), 0},
    {"best_nat_acc", FRAC, 0, CLF, "natural accuracy (best.safetensors)", "of the epoch best.safetensors keeps",
     OFF(best_nat_acc), 0},
    {"best_adv_acc", FRAC, 0, CLF, "adversarial accuracy (best.safetensors)", "of the epoch best.safetensors keeps",
     OFF(best_adv_acc), 0},
    {"pgd_adv_acc", FRAC, 0, EVL, "adversarial accuracy, the paper's PGD",
     "under the configured PGD alone (the paper's protocol), also attacks[0].adv_acc", OFF(pgd_adv_acc), 0},
    {"min_adv_acc", FRAC, 0, EVL, "lowest single attack's accuracy", "the lowest adv_acc in attacks[]", OFF(min_adv_acc), 0},
    {"worst_case_adv_acc", FRAC, 0, EVL, "adversarial accuracy, every attack",
     "correct on the clean input and under every attack that ran, per sample", OFF(worst_case_adv_acc), 0},
    {"test_mi_normal", NATS, 1, ENC, "normal MI (co-trained critic)",
     "the encoder's own critic on clean test batches (not the paper's estimate: use vulnerability)",
     OFF(cotrained_normal_mi), 0},
    {"test_mi_worst", NATS, 1, ENC, "worst-case MI (co-trained critic)", "the same critic on attacked test batches",
     OFF(cotrained_worst_mi), 0},
    {"critics", COUNT, 0, EST | VUL, "critics", "independent critics (seeds) the measures are taken over", OFF(critics), 0},
    {"test_mi", NATS, 1, EST, "held-out MI", "Algorithm 2's held-out estimate of the run's --case", OFF(test_mi), 0},
    {"test_mi_clean", NATS, 1, EST, "held-out MI, same critic, no attack",
     "worst case: the same critic on the same batches without the attack", OFF(test_mi_clean), 0},
    {"refit_mi", NATS, 1, EST, "worst-case MI, re-fitted critic",
     "worst case: a critic re-fitted on the attacked representations, scored on held-out ones", OFF(refit_mi), 0},
    {"normal_mi", NATS, 1, VUL, "normal MI", "I(X; g(X)), Algorithm 2", OFF(normal_mi), 0},
    {"worst_mi", NATS, 1, VUL, "worst-case MI", "I(X'; g(X')) under the MI attack, Algorithm 2", OFF(worst_mi), 0},
    {"worst_mi_refit", NATS, 1, VUL, "worst-case MI, re-fitted", "with the re-fitted critic", OFF(worst_mi_refit), 0},
    {"rv", NATS, 1, VUL, "RV = normal - worst", "representation vulnerability, per critic then averaged", OFF(rv), 0},
    {"rv_refit", NATS, 1, VUL, "RV, re-fitted", "normal_mi - worst_mi_refit", OFF(rv_refit), 0},
    {"worst_critic_clean_mi", NATS, 1, VUL, "worst case's critic on clean inputs",
     "the worst case's critic on the same batches without the attack", OFF(worst_critic_clean_mi), 0},
    {"attack_drop", NATS, 1, EST | VUL, "attack drop (same critic)", "clean minus attacked estimate of one critic",
     OFF(attack_drop), 0},
    {"fano_bound", FRAC, 0, VUL, "Fano bound",
     "upper bound on any classifier's adversarial accuracy from worst_mi (null: the estimator is no MI lower bound)",
     OFF(fano_bound), 1},
    {"fano_bound_refit", FRAC, 0, VUL, "Fano bound (re-fit)", "the same from worst_mi_refit", OFF(fano_bound_refit), 1},
    {"test_samples", COUNT, 0, CLF | EST, "test samples", "test samples the figures are taken on", OFF(test_samples), 0},
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

int wcmi_record_num_fields(void) { return N_FIELDS; }
const wcmi_record_field *wcmi_record_field_at(int i) { return i >= 0 && i < N_FIELDS ? &FIELDS[i] : NULL; }

const wcmi_record_field *wcmi_record_field_by_key(const char *key) {
  for (int i = 0; key && i < N_FIELDS; i++)
    if (!strcmp(FIELDS[i].key, key)) return &FIELDS[i];
  return NULL;
}

static double *real_at(wcmi_run_record *r, const wcmi_record_field *f) { return (double *)((char *)r + f->offset); }
static long long *count_at(wcmi_run_record *r, const wcmi_record_field *f) { return (long long *)((char *)r + f->offset); }

const wcmi_measure *wcmi_record_measure(const wcmi_run_record *r, const wcmi_record_field *f) {
  return f->measure ? (const wcmi_measure *)((const char *)r + f->offset) : NULL;
}

static void measure_clear(wcmi_measure *m) {
  m->mean = m->std = m->sem = NAN;
  m->n = 0;
}

void wcmi_record_clear(wcmi_run_record *r) {
  memset(r, 0, sizeof *r);
  for (int i = 0; i < N_FIELDS; i++) {
    const wcmi_record_field *f = &FIELDS[i];
    if (f->measure) measure_clear((wcmi_measure *)((char *)r + f->offset));
    else if (f->unit == COUNT) *count_at(r, f) = -1;
    else *real_at(r, f) = NAN;
  }
}

double wcmi_record_value(const wcmi_run_record *r, const wcmi_record_field *f) {
  if (f->measure) return wcmi_record_measure(r, f)->mean;
  if (f->unit == COUNT) {
    const long long v = *(const long long *)((const char *)r + f->offset);
    return v < 0 ? NAN : (double)v;
  }
  return *(const double *)((const char *)r + f->offset);
}

void wcmi_measure_set(wcmi_measure *m, const double *v, int n) {
  measure_clear(m);
  if (n < 1) return;
  if (n > WCMI_RECORD_MAX_VALUES) n = WCMI_RECORD_MAX_VALUES;
  double s = 0;
  for (int i = 0; i < n; i++) s += m->per[i] = v[i];
  m->n = n;
  m->mean = s / (double)n;
  if (n > 1) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (v[i] - m->mean) * (v[i] - m->mean);
    m->std = sqrt(ss / (double)(n - 1));
  }
}

/* ---- writing ----------------------------------------------------------------------------------- */

static void write_measure(wcmi_jsonw *w, const char *key, const wcmi_measure *m) {
  char k[96];
  wcmi_jsonw_kv_double(w, key, m->mean);
  if (m->n > 0) {
    snprintf(k, sizeof k, "%s_std", key);
    wcmi_jsonw_kv_double(w, k, m->std); /* null for one critic */
    snprintf(k, sizeof k, "%s_per_critic", key);
    wcmi_jsonw_key(w, k);
    wcmi_jsonw_begin_array(w);
    for (int i = 0; i < m->n; i++) wcmi_jsonw_double(w, m->per[i]);
    wcmi_jsonw_end_array(w);
  }
  if (isfinite(m->sem)) {
    snprintf(k, sizeof k, "%s_sem", key);
    wcmi_jsonw_kv_double(w, k, m->sem);
  }
}

void wcmi_record_write(wcmi_jsonw *w, const wcmi_run_record *r, unsigned files) {
  for (int i = 0; i < N_FIELDS; i++) {
    const wcmi_record_field *f = &FIELDS[i];
    if (!(f->files & files)) continue;
    const double v = wcmi_record_value(r, f);
    if (!isfinite(v) && !(f->nullable && isnan(v))) continue; /* absent */
    if (f->measure) write_measure(w, f->key, wcmi_record_measure(r, f));
    else if (f->unit == COUNT) wcmi_jsonw_kv_int(w, f->key, (int64_t)v);
    else wcmi_jsonw_kv_double(w, f->key, v); /* NaN is written as null */
  }
}

/* ---- reading ----------------------------------------------------------------------------------- */

static int bad_type(wcmi_ctx *ctx, const char *path, const char *key, const char *want) {
  return wcmi_fail(ctx, WCMI_EFORMAT, "%s: '%s' is not %s", path, key, want);
}

static int read_measure(wcmi_ctx *ctx, const char *path, const wcmi_json *j, const char *key, wcmi_measure *m) {
  char k[96];
  const wcmi_json *v = wcmi_json_get(j, key);
  if (!v) return WCMI_OK;
  if (v->type != WCMI_JSON_NUMBER) return bad_type(ctx, path, key, "a number");
  measure_clear(m);
  m->mean = v->number;
  snprintf(k, sizeof k, "%s_std", key);
  if ((v = wcmi_json_get(j, k)) && v->type == WCMI_JSON_NUMBER) m->std = v->number;
  else if (v && v->type != WCMI_JSON_NULL) return bad_type(ctx, path, k, "a number or null");
  snprintf(k, sizeof k, "%s_sem", key);
  if ((v = wcmi_json_get(j, k)) && v->type == WCMI_JSON_NUMBER) m->sem = v->number;
  else if (v && v->type != WCMI_JSON_NULL) return bad_type(ctx, path, k, "a number or null");
  snprintf(k, sizeof k, "%s_per_critic", key);
  if ((v = wcmi_json_get(j, k))) {
    if (v->type != WCMI_JSON_ARRAY || v->n > WCMI_RECORD_MAX_VALUES)
      return bad_type(ctx, path, k, "an array of at most 100 numbers");
    for (size_t i = 0; i < v->n; i++) {
      if (v->items[i].type != WCMI_JSON_NUMBER) return bad_type(ctx, path, k, "an array of numbers");
      m->per[i] = v->items[i].number;
    }
    m->n = (int)v->n;
  }
  return WCMI_OK;
}

/* eval.json written before pgd_adv_acc existed holds it only as the first attack's adv_acc. */
static void legacy_pgd_adv_acc(const wcmi_json *j, wcmi_run_record *r) {
  const wcmi_json *first = wcmi_json_at(wcmi_json_get(j, "attacks"), 0);
  const wcmi_json *name = wcmi_json_get(first, "name"), *acc = wcmi_json_get(first, "adv_acc");
  if (name && name->type == WCMI_JSON_STRING && !strcmp(name->str, "pgd") && acc && acc->type == WCMI_JSON_NUMBER)
    r->pgd_adv_acc = acc->number;
}

int wcmi_record_read(wcmi_ctx *ctx, const char *path, const wcmi_json *j, wcmi_run_record *r) {
  if (!j || j->type != WCMI_JSON_OBJECT) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: not a JSON object", path);
  for (int i = 0; i < N_FIELDS; i++) {
    const wcmi_record_field *f = &FIELDS[i];
    if (f->measure) {
      int rc = read_measure(ctx, path, j, f->key, (wcmi_measure *)((char *)r + f->offset));
      if (rc) return rc;
      continue;
    }
    const wcmi_json *v = wcmi_json_get(j, f->key);
    if (!v || (f->nullable && v->type == WCMI_JSON_NULL)) continue;
    if (v->type != WCMI_JSON_NUMBER) return bad_type(ctx, path, f->key, "a number");
    if (f->unit == COUNT) {
      if (!v->is_integer || v->integer < 0) return bad_type(ctx, path, f->key, "a count (an integer >= 0)");
      *count_at(r, f) = (long long)v->integer;
    } else {
      *real_at(r, f) = v->number;
    }
  }
  if (isnan(r->pgd_adv_acc)) legacy_pgd_adv_acc(j, r);
  return WCMI_OK;
}

#define MAX_RECORD_BYTES ((size_t)64 << 20)

int wcmi_record_load(wcmi_ctx *ctx, const char *dir, wcmi_run_record *r, int *found) {
  static const char *const LEAVES[2] = {"summary.json", "eval.json"};
  wcmi_record_clear(r);
  if (found) *found = 0;
  for (int k = 0; k < 2; k++) {
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, LEAVES[k]) >= (int)sizeof path)
      return wcmi_fail(ctx, WCMI_EINVAL, "%s: path too long", dir);
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
    wcmi_json *j = NULL;
    int rc = wcmi_json_parse_file(ctx, path, MAX_RECORD_BYTES, &j);
    if (!rc) rc = wcmi_record_read(ctx, path, j, r);
    wcmi_json_free(j);
    if (rc) return rc;
    if (found) *found |= 1 << k;
  }
  return WCMI_OK;
}

/* ---- metrics.jsonl ------------------------------------------------------------------------------ */

/* The per-epoch and probe keys of metrics.jsonl, by their last path component. */
static const struct {
  const char *key;
  wcmi_unit unit;
} METRICS[] = {
    {"loss", NATS},          {"mi", NATS},
    {"train_acc", FRAC},     {"lr", WCMI_UNIT_LR},
    {"seconds", WCMI_UNIT_SECONDS}, {"train_seconds", WCMI_UNIT_SECONDS},
    {"probe_seconds", WCMI_UNIT_SECONDS}, {"train_eps", WCMI_UNIT_PIXELS},
    {"linear_nat_acc", FRAC}, {"linear_adv_acc", FRAC},
    {"linear_train_loss", NATS}, {"robust_mlp_nat_acc", FRAC}, {"robust_mlp_adv_acc", FRAC},
};

int wcmi_record_metric_unit(const char *key, wcmi_unit *unit) {
  if (!key) return -1;
  const char *dot = strrchr(key, '.');
  const char *leaf = dot ? dot + 1 : key;
  for (size_t i = 0; i < sizeof METRICS / sizeof METRICS[0]; i++)
    if (!strcmp(METRICS[i].key, leaf)) {
      *unit = METRICS[i].unit;
      return 0;
    }
  const wcmi_record_field *f = wcmi_record_field_by_key(leaf);
  if (!f) return -1;
  *unit = f->unit;
  return 0;
}
