/* wcmi demo: DIM vs worst-case MI on Fashion-MNIST with the quick profile, end to end, by calling
 * the same task functions the CLI runs, then one table. */
#include "wcmi/demo.h"
#include "wcmi/io.h"
#include "wcmi/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void wcmi_demo_defaults(wcmi_demo_cfg *c) {
  memset(c, 0, sizeof *c);
  c->out_dir = "runs/demo";
  c->train_subset = 10000;
  c->test_subset = 1000;
  c->encoder_epochs = 4;
  c->head_epochs = 6;
  c->head_lr = 2e-3;
  c->mi_epochs = 2;
  c->hsize = 256;
}

typedef struct demo_row {
  const char *encoder, *head;
  double nat, adv, adv_strong;
} demo_row;

typedef struct demo_mi {
  double normal, worst, worst_refit, rv, fano;
} demo_mi;

/* The quick profile plus the demo's budget. */
static int base_cfg(wcmi_ctx *ctx, const wcmi_demo_cfg *d, wcmi_task_cfg *c) {
  int rc = wcmi_task_defaults(ctx, c, "fashion-mnist", "quick");
  if (rc) return rc;
  c->data_dir = d->data_dir;
  c->train_subset = d->train_subset;
  c->test_subset = d->test_subset;
  c->hsize = d->hsize;
  c->seed = d->seed;
  c->progress = d->progress;
  c->max_batches = d->max_batches;
  c->eval_batches = d->eval_batches;
  c->force = 1; /* the demo's stages rewrite their own run directories under its --out on every run */
  return WCMI_OK;
}

static int num_field(wcmi_ctx *ctx, const char *summary, const char *key, double *out) {
  wcmi_json *j = NULL;
  int rc = wcmi_json_parse(ctx, "task summary", summary, strlen(summary), &j);
  if (!rc) rc = wcmi_json_get_number(ctx, "task summary", j, key, out);
  wcmi_json_free(j);
  return rc;
}

static void path_join(char *out, size_t n, const char *dir, const char *leaf) { snprintf(out, n, "%s/%s", dir, leaf); }

static void stage(const wcmi_demo_cfg *d, const char *what) {
  if (d->progress) fprintf(stderr, "[demo] %s\n", what);
}

static int train_encoder(wcmi_ctx *ctx, const wcmi_demo_cfg *d, int worst, char *model_path, size_t n) {
  wcmi_task_cfg c;
  int rc = base_cfg(ctx, d, &c);
  if (rc) return rc;
  char dir[1024];
  path_join(dir, sizeof dir, d->out_dir, worst ? "encoder-worst" : "encoder-dim");
  c.out_dir = dir;
  c.worst = worst;
  c.epochs = d->encoder_epochs;
  stage(d, worst ? "training the worst-case-MI encoder" : "training the normal-MI (DIM) encoder");
  char *summary = NULL;
  rc = wcmi_task_train_encoder(ctx, &c, &summary);
  free(summary);
  path_join(model_path, n, dir, "latest.safetensors");
  return rc;
}

static int head_and_eval(wcmi_ctx *ctx, const wcmi_demo_cfg *d, const char *enc_name, const char *enc_model,
                         wcmi_head_kind head, demo_row *row) {
  wcmi_task_cfg c;
  int rc = base_cfg(ctx, d, &c);
  if (rc) return rc;
  char dir[1024], model[1100], msg[160];
  snprintf(dir, sizeof dir, "%s/%s-%s", d->out_dir, enc_name, wcmi_head_name(head));
  c.out_dir = dir;
  c.model = enc_model;
  c.head = head;
  c.epochs = d->head_epochs;
  c.lr = d->head_lr;
  /* Per-epoch monitoring on two test batches; the evaluation below uses the whole test subset. */
  if (!c.eval_batches) c.eval_batches = 2;
  snprintf(msg, sizeof msg, "training a standard %s head on the %s encoder", wcmi_head_name(head), enc_name);
  stage(d, msg);
  char *summary = NULL;
  rc = wcmi_task_train_classifier(ctx, &c, &summary);
  free(summary);
  if (rc) return rc;
  path_join(model, sizeof model, dir, "latest.safetensors");
  /* The paper's protocol (no random start, no restarts), then random start with 5 restarts. */
  for (int strong = 0; strong < 2 && !rc; strong++) {
    wcmi_task_cfg e = c;
    char edir[1100];
    snprintf(edir, sizeof edir, "%s/eval-%s", dir, strong ? "pgd-rs5" : "pgd");
    e.out_dir = edir;
    e.model = model;
    e.eval_attack = WCMI_EVAL_PGD;
    e.attack.random_start = strong;
    e.attack.restarts = strong ? 5 : 0;
    e.progress = 0;
    rc = wcmi_task_eval(ctx, &e, &summary);
    if (!rc && !strong) rc = num_field(ctx, summary, "nat_acc", &row->nat);
    if (!rc) rc = num_field(ctx, summary, "adv_acc", strong ? &row->adv_strong : &row->adv);
    free(summary);
    summary = NULL;
  }
  row->encoder = enc_name;
  row->head = wcmi_head_name(head);
  return rc;
}

static int vulnerability(wcmi_ctx *ctx, const wcmi_demo_cfg *d, const char *enc_name, const char *enc_model,
                         demo_mi *mi) {
  wcmi_task_cfg c;
  int rc = base_cfg(ctx, d, &c);
  if (rc) return rc;
  char dir[1024], msg[160];
  snprintf(dir, sizeof dir, "%s/%s-vulnerability", d->out_dir, enc_name);
  c.out_dir = dir;
  c.model = enc_model;
  c.epochs = d->mi_epochs;
  snprintf(msg, sizeof msg, "estimating normal and worst-case MI of the %s encoder (fresh critics)", enc_name);
  stage(d, msg);
  char *summary = NULL;
  rc = wcmi_task_vulnerability(ctx, &c, &summary);
  if (!rc) rc = num_field(ctx, summary, "normal_mi", &mi->normal);
  if (!rc) rc = num_field(ctx, summary, "worst_mi", &mi->worst);
  if (!rc) rc = num_field(ctx, summary, "worst_mi_refit", &mi->worst_refit);
  if (!rc) rc = num_field(ctx, summary, "rv", &mi->rv);
  if (!rc) rc = num_field(ctx, summary, "fano_bound", &mi->fano);
  free(summary);
  return rc;
}

static char *format_table(const wcmi_demo_cfg *d, const demo_row *rows, const demo_mi *mi, double seconds) {
  size_t cap = 4096;
  char *t = malloc(cap);
  if (!t) return NULL;
  int n = 0;
  n += snprintf(t + n, cap - (size_t)n,
                "wcmi demo: Fashion-MNIST, %lld train / %lld test images, H = %d, l-inf eps 0.1 (%.0f s)\n\n", d->train_subset,
                d->test_subset, d->hsize, seconds);
  n += snprintf(t + n, cap - (size_t)n, "%-12s %-7s %8s %10s %14s\n", "encoder", "head", "nat %", "PGD-10 %",
                "PGD-10 rs+5 %");
  for (int i = 0; i < 4; i++)
    n += snprintf(t + n, cap - (size_t)n, "%-12s %-7s %8.2f %10.2f %14.2f\n", rows[i].encoder, rows[i].head,
                  100 * rows[i].nat, 100 * rows[i].adv, 100 * rows[i].adv_strong);
  n += snprintf(t + n, cap - (size_t)n, "\n%-12s %9s %9s %13s %8s %12s\n", "encoder", "I (nats)", "I_worst",
                "I_worst refit", "RV", "Fano bound");
  const char *names[2] = {"dim", "worst-mi"};
  for (int i = 0; i < 2; i++)
    n += snprintf(t + n, cap - (size_t)n, "%-12s %9.3f %9.3f %13.3f %8.3f %11.1f%%\n", names[i], mi[i].normal,
                  mi[i].worst, mi[i].worst_refit, mi[i].rv, 100 * mi[i].fano);
  snprintf(t + n, cap - (size_t)n,
           "\nPGD-10: step 0.02, no random start (the paper's protocol); rs+5: random start and 5 restarts, worst "
           "per sample.\nFano bound: (max(0, I_worst) + ln 2) / ln 10 caps any classifier's adversarial accuracy.\nRuns, "
           "curves and charts: %s/report.html\n", d->out_dir);
  return t;
}

static char *format_json(const wcmi_demo_cfg *d, const demo_row *rows, const demo_mi *mi, double seconds) {
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "task", "demo");
  wcmi_jsonw_kv_string(&w, "dataset", "fashion-mnist");
  wcmi_jsonw_kv_int(&w, "train_subset", d->train_subset);
  wcmi_jsonw_kv_int(&w, "test_subset", d->test_subset);
  wcmi_jsonw_kv_int(&w, "hsize", d->hsize);
  wcmi_jsonw_kv_double(&w, "seconds", seconds);
  wcmi_jsonw_key(&w, "accuracy");
  wcmi_jsonw_begin_array(&w);
  for (int i = 0; i < 4; i++) {
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "encoder", rows[i].encoder);
    wcmi_jsonw_kv_string(&w, "head", rows[i].head);
    wcmi_jsonw_kv_double(&w, "nat_acc", rows[i].nat);
    wcmi_jsonw_kv_double(&w, "adv_acc_pgd10", rows[i].adv);
    wcmi_jsonw_kv_double(&w, "adv_acc_pgd10_rs5", rows[i].adv_strong);
    wcmi_jsonw_end_object(&w);
  }
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_key(&w, "vulnerability");
  wcmi_jsonw_begin_array(&w);
  const char *names[2] = {"dim", "worst-mi"};
  for (int i = 0; i < 2; i++) {
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "encoder", names[i]);
    wcmi_jsonw_kv_double(&w, "normal_mi", mi[i].normal);
    wcmi_jsonw_kv_double(&w, "worst_mi", mi[i].worst);
    wcmi_jsonw_kv_double(&w, "worst_mi_refit", mi[i].worst_refit);
    wcmi_jsonw_kv_double(&w, "rv", mi[i].rv);
    wcmi_jsonw_kv_double(&w, "fano_bound", mi[i].fano);
    wcmi_jsonw_end_object(&w);
  }
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_end_object(&w);
  char *out = wcmi_jsonw_finish(NULL, &w) ? NULL : strdup(wcmi_jsonw_text(&w));
  wcmi_jsonw_free(&w);
  return out;
}

/* Every run of the demo in one HTML page: curves, accuracies, RV / Fano bars, Figure 2. */
static int write_report(wcmi_ctx *ctx, const wcmi_demo_cfg *d) {
  static const char *leaves[] = {"encoder-dim", "encoder-worst", "dim-linear", "dim-mlp", "worst-mi-linear",
                                 "worst-mi-mlp", "dim-vulnerability", "worst-mi-vulnerability"};
  enum { NRUNS = sizeof leaves / sizeof *leaves };
  char dirs[NRUNS][1100], path[1100];
  const char *runs[NRUNS];
  for (int i = 0; i < NRUNS; i++) {
    path_join(dirs[i], sizeof dirs[i], d->out_dir, leaves[i]);
    runs[i] = dirs[i];
  }
  wcmi_report_cfg rc = {runs, NRUNS, NULL, 0, "wcmi demo: DIM vs worst-case MI on Fashion-MNIST"};
  path_join(path, sizeof path, d->out_dir, "report.html");
  stage(d, "writing report.html");
  return wcmi_report_write(ctx, &rc, path);
}

int wcmi_task_demo(wcmi_ctx *ctx, const wcmi_demo_cfg *d, char **table, char **summary) {
  double t0 = wcmi_now();
  *table = *summary = NULL;
  int rc = wcmi_mkdir_p(ctx, d->out_dir);
  if (rc) return rc;
  char enc[2][1100];
  const char *names[2] = {"dim", "worst-mi"};
  demo_row rows[4];
  demo_mi mi[2];
  memset(rows, 0, sizeof rows);
  memset(mi, 0, sizeof mi);
  for (int w = 0; w < 2 && !rc; w++) rc = train_encoder(ctx, d, w, enc[w], sizeof enc[w]);
  for (int w = 0; w < 2 && !rc; w++) {
    rc = head_and_eval(ctx, d, names[w], enc[w], WCMI_HEAD_LINEAR, &rows[2 * w]);
    if (!rc) rc = head_and_eval(ctx, d, names[w], enc[w], WCMI_HEAD_MLP, &rows[2 * w + 1]);
  }
  for (int w = 0; w < 2 && !rc; w++) rc = vulnerability(ctx, d, names[w], enc[w], &mi[w]);
  if (rc) return rc;
  double secs = wcmi_now() - t0;
  *table = format_table(d, rows, mi, secs);
  *summary = format_json(d, rows, mi, secs);
  if (!*table || !*summary) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  char path[1100];
  path_join(path, sizeof path, d->out_dir, "summary.json");
  rc = wcmi_atomic_write(ctx, path, *summary, strlen(*summary));
  path_join(path, sizeof path, d->out_dir, "table.txt");
  if (!rc) rc = wcmi_atomic_write(ctx, path, *table, strlen(*table));
  if (!rc) rc = write_report(ctx, d);
  return rc;
}
