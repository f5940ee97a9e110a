/* The run-record schema (wcmi/run_record.h): every field round-trips through JSON with its
 * companions (std, per-critic values, sem), a key of the wrong type is refused naming the file and
 * the key, old eval.json files still give the paper's PGD accuracy, the keys are unique, and
 * docs/formats.md lists every key the schema has (the document and the table cannot drift). */
#include "harness.h"
#include "wcmi/io.h"
#include "wcmi/run_record.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static wcmi_ctx ctx;

/* JSON text of r's fields for `files`, as one object. */
static char *record_text(const wcmi_run_record *r, unsigned files) {
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_begin_object(&w);
  wcmi_record_write(&w, r, files);
  wcmi_jsonw_end_object(&w);
  char *text = wcmi_jsonw_finish(&ctx, &w) ? NULL : strdup(wcmi_jsonw_text(&w));
  wcmi_jsonw_free(&w);
  return text;
}

static int read_text(const char *text, wcmi_run_record *r) {
  wcmi_json *j = NULL;
  wcmi_record_clear(r);
  int rc = wcmi_json_parse(&ctx, "run/summary.json", text, strlen(text), &j);
  if (!rc) rc = wcmi_record_read(&ctx, "run/summary.json", j, r);
  wcmi_json_free(j);
  return rc;
}

static void test_every_field_round_trips(void) {
  wcmi_run_record a, b;
  wcmi_record_clear(&a);
  for (int i = 0; i < wcmi_record_num_fields(); i++) {
    const wcmi_record_field *f = wcmi_record_field_at(i);
    char *at = (char *)&a + f->offset;
    if (f->measure) {
      const double v[3] = {0.25 * i, 0.25 * i + 0.5, 0.25 * i - 0.125};
      wcmi_measure_set((wcmi_measure *)at, v, 3);
      ((wcmi_measure *)at)->sem = 0.01 * (i + 1);
    } else if (f->unit == WCMI_UNIT_COUNT) {
      *(long long *)at = 1000 + i;
    } else {
      *(double *)at = 0.015625 * (i + 1);
    }
  }
  char *text = record_text(&a, ~0u);
  CHECK(text != NULL);
  CHECK_OK(&ctx, read_text(text, &b));
  for (int i = 0; i < wcmi_record_num_fields(); i++) {
    const wcmi_record_field *f = wcmi_record_field_at(i);
    CHECK_MSG(wcmi_record_value(&a, f) == wcmi_record_value(&b, f), "%s: %.17g vs %.17g", f->key,
              wcmi_record_value(&a, f), wcmi_record_value(&b, f));
    const wcmi_measure *ma = wcmi_record_measure(&a, f), *mb = wcmi_record_measure(&b, f);
    if (!ma) continue;
    /* %.9g: std and sem come back to 9 significant digits */
    CHECK_MSG(ma->n == 3 && mb->n == 3 && fabs(ma->std - mb->std) <= 1e-8 * ma->std &&
                  fabs(ma->sem - mb->sem) <= 1e-8 * ma->sem,
              "%s", f->key);
    for (int k = 0; k < 3; k++) CHECK(ma->per[k] == mb->per[k]);
  }
  free(text);
}

static void test_absent_fields_are_not_written_and_one_critic_has_a_null_std(void) {
  wcmi_run_record r, back;
  wcmi_record_clear(&r);
  r.nat_acc = 0.5;
  const double one = 1.25;
  wcmi_measure_set(&r.normal_mi, &one, 1);
  char *text = record_text(&r, WCMI_REC_CLASSIFIER | WCMI_REC_VULNERABILITY);
  CHECK_MSG(text && !strcmp(text, "{\"nat_acc\": 0.5, \"normal_mi\": 1.25, \"normal_mi_std\": null, "
                                  "\"normal_mi_per_critic\": [1.25], \"fano_bound\": null, \"fano_bound_refit\": null}"),
            "%s", text ? text : "(null)");
  CHECK_OK(&ctx, read_text(text, &back));
  CHECK(back.normal_mi.mean == 1.25 && isnan(back.normal_mi.std) && back.normal_mi.n == 1);
  CHECK(isnan(back.fano_bound) && isnan(back.adv_acc) && back.critics == -1);
  free(text);
  /* A field another task writes is not written for this one. */
  text = record_text(&r, WCMI_REC_ENCODER);
  CHECK_MSG(text && !strcmp(text, "{}"), "%s", text ? text : "(null)");
  free(text);
}

static void test_wrong_types_are_refused_naming_file_and_key(void) {
  static const char *const BAD[] = {
      "{\"nat_acc\": \"high\"}", "{\"normal_mi\": 1, \"normal_mi_std\": \"x\"}",
      "{\"rv\": 1, \"rv_per_critic\": [1, \"x\"]}", "{\"critics\": 2.5}", "{\"test_samples\": -3}", "[1, 2]",
  };
  const char *const KEYS[] = {"nat_acc", "normal_mi_std", "rv_per_critic", "critics", "test_samples", "JSON object"};
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    wcmi_run_record r;
    CHECK_MSG(read_text(BAD[i], &r) == WCMI_EFORMAT, "%s", BAD[i]);
    CHECK_MSG(strstr(ctx.msg, "run/summary.json") && strstr(ctx.msg, KEYS[i]), "%s", ctx.msg);
  }
}

static void test_old_eval_json_gives_the_papers_pgd_from_its_first_attack(void) {
  wcmi_run_record r;
  CHECK_OK(&ctx, read_text("{\"nat_acc\": 0.8, \"attacks\": [{\"name\": \"pgd\", \"adv_acc\": 0.25}, "
                           "{\"name\": \"apgd\", \"adv_acc\": 0.2}], \"worst_case_adv_acc\": 0.2, \"adv_acc\": 0.2}",
                           &r));
  CHECK(r.pgd_adv_acc == 0.25 && r.worst_case_adv_acc == 0.2 && r.adv_acc == 0.2);
  /* An eval that ran only APGD has no PGD figure. */
  CHECK_OK(&ctx, read_text("{\"attacks\": [{\"name\": \"apgd\", \"adv_acc\": 0.2}]}", &r));
  CHECK(isnan(r.pgd_adv_acc));
}

static char *read_doc(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = malloc(1 << 20);
  size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
  fclose(f);
  if (buf) buf[n] = '\0';
  return buf;
}

static void test_keys_are_unique_and_documented(void) {
  char *doc = read_doc(WCMI_SOURCE_DIR "/docs/formats.md");
  CHECK_MSG(doc != NULL, "cannot read %s", WCMI_SOURCE_DIR "/docs/formats.md");
  for (int i = 0; i < wcmi_record_num_fields(); i++) {
    const wcmi_record_field *f = wcmi_record_field_at(i);
    CHECK(wcmi_record_field_by_key(f->key) == f && f->label && *f->label && f->doc && *f->doc && f->files);
    char row[96];
    snprintf(row, sizeof row, "| `%s` |", f->key);
    CHECK_MSG(doc && strstr(doc, row), "docs/formats.md has no row for %s", f->key);
  }
  free(doc);
}

static void test_metric_units_come_from_the_schema(void) {
  wcmi_unit u;
  CHECK(wcmi_record_metric_unit("loss", &u) == 0 && u == WCMI_UNIT_NATS);
  CHECK(wcmi_record_metric_unit("eval.nat_acc", &u) == 0 && u == WCMI_UNIT_FRACTION);
  CHECK(wcmi_record_metric_unit("eval.test_mi_worst", &u) == 0 && u == WCMI_UNIT_NATS);
  CHECK(wcmi_record_metric_unit("probe.linear_adv_acc", &u) == 0 && u == WCMI_UNIT_FRACTION);
  CHECK(wcmi_record_metric_unit("lr", &u) == 0 && u == WCMI_UNIT_LR);
  CHECK(wcmi_record_metric_unit("eval.something_new", &u) == -1);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  RUN(test_every_field_round_trips);
  RUN(test_absent_fields_are_not_written_and_one_critic_has_a_null_std);
  RUN(test_wrong_types_are_refused_naming_file_and_key);
  RUN(test_old_eval_json_gives_the_papers_pgd_from_its_first_attack);
  RUN(test_keys_are_unique_and_documented);
  RUN(test_metric_units_come_from_the_schema);
  return wt_finish();
}
