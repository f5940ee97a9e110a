/* The HTML report: one self-contained page over run directories (docs/report.md). Everything comes
 * from the files a run wrote; every string read from them is HTML-escaped; charts are inline SVG
 * (svg.c) and images inline PNG data: URIs, so the page needs no network and no scripts. */
/* realpath() is an XSI function in glibc's headers. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include "report/report_internal.h"
#include "wcmi/image.h"
#include "wcmi/io.h"
#include "wcmi/report.h"
#include "wcmi/run_record.h"
#include "wcmi/train.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_JSON_BYTES ((size_t)64 << 20)
#define MAX_PNG_BYTES ((size_t)32 << 20)
#define MAX_CHILDREN 4
#define MAX_IMAGES 16
#define MAX_CURVES 40

/* Copies src into dst[n], cut at n - 1 bytes (names shown in the page, labels). */
static void copy_str(char *dst, size_t n, const char *src) {
  size_t k = strlen(src);
  if (k >= n) k = n - 1;
  memcpy(dst, src, k);
  dst[k] = '\0';
}

/* dst = a + sep + b; returns 0 if it does not fit (the caller reports the path as too long). */
static int join(char *dst, size_t n, const char *a, const char *sep, const char *b) {
  size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
  if (la + ls + lb >= n) return 0;
  memcpy(dst, a, la);
  memcpy(dst + la, sep, ls);
  memcpy(dst + la + ls, b, lb + 1);
  return 1;
}

/* ---- flattened numeric fields ---------------------------------------------------------------- */
/* A JSON object flattened to "a.b.c" keys; arrays of objects with a "name" become "attacks[pgd]". */
typedef struct field {
  char key[160];
  const wcmi_json *v;
} field;

typedef struct fields {
  field *f;
  int n, cap;
} fields;

static int fields_push(fields *fs, const char *key, const wcmi_json *v) {
  if (fs->n == fs->cap) {
    int cap = fs->cap ? 2 * fs->cap : 32;
    field *nf = realloc(fs->f, (size_t)cap * sizeof *nf);
    if (!nf) return WCMI_ENOMEM;
    fs->f = nf, fs->cap = cap;
  }
  snprintf(fs->f[fs->n].key, sizeof fs->f[fs->n].key, "%s", key);
  fs->f[fs->n++].v = v;
  return WCMI_OK;
}

/* Leaves: numbers, strings, booleans, null; arrays of scalars are kept whole (shown compactly). */
static int flatten(fields *fs, const char *prefix, const wcmi_json *v, int depth) {
  char key[160];
  if (v->type == WCMI_JSON_OBJECT && depth < 6) {
    for (size_t i = 0; i < v->n; i++) {
      snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", v->keys[i]);
      int rc = flatten(fs, key, &v->items[i], depth + 1);
      if (rc) return rc;
    }
    return WCMI_OK;
  }
  if (v->type == WCMI_JSON_ARRAY && v->n && v->items[0].type == WCMI_JSON_OBJECT && depth < 6) {
    for (size_t i = 0; i < v->n && i < 32; i++) {
      const wcmi_json *name = wcmi_json_get(&v->items[i], "name");
      if (name && name->type == WCMI_JSON_STRING) snprintf(key, sizeof key, "%s[%s]", prefix, name->str);
      else snprintf(key, sizeof key, "%s[%zu]", prefix, i);
      int rc = flatten(fs, key, &v->items[i], depth + 1);
      if (rc) return rc;
    }
    return WCMI_OK;
  }
  return fields_push(fs, prefix, v);
}

static const char *leaf(const char *key) {
  const char *d = strrchr(key, '.');
  return d ? d + 1 : key;
}

static const field *find_field(const fields *fs, const char *key) {
  for (int i = 0; i < fs->n; i++)
    if (!strcmp(fs->f[i].key, key)) return &fs->f[i];
  return NULL;
}

static double number_of(const fields *fs, const char *key) {
  const field *f = find_field(fs, key);
  return f && f->v->type == WCMI_JSON_NUMBER ? f->v->number : NAN;
}

/* ---- runs ------------------------------------------------------------------------------------- */
typedef struct run {
  char dir[PATH_MAX];  /* as given (sub-runs: parent/child) */
  char name[PATH_MAX]; /* shown */
  char real[PATH_MAX]; /* resolved, to match model paths */
  wcmi_json *config, *summary, *eval, *per_neuron, *metrics;
  fields cfg, sum, ev; /* flattened config / summary / eval (shown as they are) */
  /* The results, read through the run-record schema: from summary.json, from eval.json, and both
   * merged (eval.json's fields win): what the charts and the overview show. */
  wcmi_run_record rec_sum, rec_ev, rec;
  char images[MAX_IMAGES][PATH_MAX];
  int n_images;
  struct run *children[MAX_CHILDREN];
  int n_children;
} run;

static void run_free(run *r) {
  if (!r) return;
  wcmi_json_free(r->config);
  wcmi_json_free(r->summary);
  wcmi_json_free(r->eval);
  wcmi_json_free(r->per_neuron);
  wcmi_json_free(r->metrics);
  free(r->cfg.f);
  free(r->sum.f);
  free(r->ev.f);
  for (int i = 0; i < r->n_children; i++) run_free(r->children[i]);
  free(r);
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads dir/leaf when it exists: a JSON object (or, for .jsonl, an array of objects). */
static int load_json(wcmi_ctx *ctx, const char *dir, const char *leafname, int lines, wcmi_json **out) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, leafname);
  *out = NULL;
  if (!file_exists(path)) return WCMI_OK;
  int rc = lines ? wcmi_json_parse_lines_file(ctx, path, MAX_JSON_BYTES, out)
                 : wcmi_json_parse_file(ctx, path, MAX_JSON_BYTES, out);
  if (rc) return rc;
  if (!lines && (*out)->type != WCMI_JSON_OBJECT)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: expected a JSON object, got %s", path, wcmi_json_type_name((*out)->type));
  if (lines)
    for (size_t i = 0; i < (*out)->n; i++)
      if ((*out)->items[i].type != WCMI_JSON_OBJECT)
        return wcmi_fail(ctx, WCMI_EFORMAT, "%s: entry %zu is %s, not a JSON object", path, i + 1,
                         wcmi_json_type_name((*out)->items[i].type));
  return WCMI_OK;
}

static int is_saliency_png(const char *name) {
  size_t n = strlen(name);
  return !strncmp(name, "saliency", 8) && n > 4 && !strcmp(name + n - 4, ".png");
}

static int cmp_str(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* Saliency PNGs and sub-runs (directories holding metrics.jsonl or summary.json, e.g. the normal/
 * and worst/ cases of a vulnerability run), both in name order so the page is reproducible. */
static int scan_dir(wcmi_ctx *ctx, run *r, int depth, char subdirs[][NAME_MAX + 1], int *n_sub) {
  DIR *d = opendir(r->dir);
  if (!d) return wcmi_fail(ctx, WCMI_EIO, "%s: cannot read the run directory: %s", r->dir, strerror(errno));
  struct dirent *e;
  *n_sub = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->dir, e->d_name);
    struct stat st;
    if (stat(path, &st)) continue;
    if (S_ISREG(st.st_mode) && is_saliency_png(e->d_name) && r->n_images < MAX_IMAGES)
      snprintf(r->images[r->n_images++], PATH_MAX, "%s", e->d_name);
    if (S_ISDIR(st.st_mode) && depth == 0 && *n_sub < MAX_CHILDREN) {
      char m[2 * PATH_MAX + 32], s[2 * PATH_MAX + 32];
      snprintf(m, sizeof m, "%s/metrics.jsonl", path);
      snprintf(s, sizeof s, "%s/summary.json", path);
      if (file_exists(m) || file_exists(s)) snprintf(subdirs[(*n_sub)++], NAME_MAX + 1, "%s", e->d_name);
    }
  }
  closedir(d);
  qsort(r->images, (size_t)r->n_images, sizeof r->images[0], cmp_str);
  qsort(subdirs, (size_t)*n_sub, NAME_MAX + 1, cmp_str);
  for (int i = 0; i < r->n_images; i++) {
    char leafname[PATH_MAX];
    snprintf(leafname, sizeof leafname, "%s", r->images[i]);
    if (!join(r->images[i], PATH_MAX, r->dir, "/", leafname)) return wcmi_fail(ctx, WCMI_EINVAL, "%s: path too long", leafname);
  }
  return WCMI_OK;
}

/* The run's results through the schema; a result key of the wrong type fails naming the file. */
static int run_records(wcmi_ctx *ctx, run *r) {
  char path[PATH_MAX + 32];
  wcmi_record_clear(&r->rec_sum);
  wcmi_record_clear(&r->rec_ev);
  wcmi_record_clear(&r->rec);
  int rc = WCMI_OK;
  if (r->summary) {
    snprintf(path, sizeof path, "%s/summary.json", r->dir);
    if (!(rc = wcmi_record_read(ctx, path, r->summary, &r->rec_sum))) rc = wcmi_record_read(ctx, path, r->summary, &r->rec);
  }
  if (!rc && r->eval) {
    snprintf(path, sizeof path, "%s/eval.json", r->dir);
    if (!(rc = wcmi_record_read(ctx, path, r->eval, &r->rec_ev))) rc = wcmi_record_read(ctx, path, r->eval, &r->rec);
  }
  return rc;
}

static int run_load(wcmi_ctx *ctx, const char *dir, const char *name, int depth, run **out) {
  *out = NULL;
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return wcmi_fail(ctx, WCMI_EIO, "%s: no such run directory", dir);
  run *r = calloc(1, sizeof *r);
  if (!r) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  if (strlen(dir) >= sizeof r->dir) {
    free(r);
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: path too long", dir);
  }
  copy_str(r->dir, sizeof r->dir, dir);
  copy_str(r->name, sizeof r->name, name);
  if (!realpath(dir, r->real)) copy_str(r->real, sizeof r->real, dir);
  char subdirs[MAX_CHILDREN][NAME_MAX + 1];
  int n_sub = 0;
  int rc = load_json(ctx, dir, "config.json", 0, &r->config);
  if (!rc) rc = load_json(ctx, dir, "summary.json", 0, &r->summary);
  if (!rc) rc = load_json(ctx, dir, "eval.json", 0, &r->eval);
  if (!rc) rc = load_json(ctx, dir, "per_neuron.json", 0, &r->per_neuron);
  if (!rc) rc = load_json(ctx, dir, "metrics.jsonl", 1, &r->metrics);
  if (!rc && r->config) rc = flatten(&r->cfg, "", r->config, 0);
  if (!rc && r->summary) rc = flatten(&r->sum, "", r->summary, 0);
  if (!rc && r->eval) rc = flatten(&r->ev, "", r->eval, 0);
  if (rc == WCMI_ENOMEM) wcmi_fail(ctx, rc, "out of memory");
  if (!rc) rc = run_records(ctx, r);
  if (!rc) rc = scan_dir(ctx, r, depth, subdirs, &n_sub);
  for (int i = 0; !rc && i < n_sub; i++) {
    char sub[PATH_MAX], subname[PATH_MAX];
    if (!join(sub, sizeof sub, dir, "/", subdirs[i]) || !join(subname, sizeof subname, name, "/", subdirs[i])) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "%s/%s: path too long", dir, subdirs[i]);
      break;
    }
    rc = run_load(ctx, sub, subname, depth + 1, &r->children[r->n_children]);
    if (!rc) r->n_children++;
  }
  if (rc) {
    run_free(r);
    return rc;
  }
  *out = r;
  return WCMI_OK;
}

/* ---- what a run says about robustness -------------------------------------------------------- */
static const char *run_task(const run *r) {
  const field *f = find_field(&r->sum, "task");
  if (!f) f = find_field(&r->cfg, "task");
  if (!f) f = find_field(&r->ev, "task");
  return f && f->v->type == WCMI_JSON_STRING ? f->v->str : NULL;
}

/* Accuracies and bounds are fractions in the run record (docs/formats.md); the page shows percent. */
static double percent(double fraction) { return 100.0 * fraction; }

/* The headline adversarial accuracy (best: of best.safetensors when the run kept one). */
static double run_adv_acc(const run *r, int best) {
  if (best && isfinite(r->rec.best_adv_acc) && isnan(r->rec_ev.adv_acc)) return percent(r->rec.best_adv_acc);
  return percent(r->rec.adv_acc);
}

static double run_nat_acc(const run *r) { return percent(r->rec.nat_acc); }

/* The normal / worst-case MI a run reports: vulnerability's (the paper's protocol), else an
 * estimate-mi run's held-out estimate of its case (config.json "worst"), else the figure of a
 * train-encoder run's co-trained critic. NULL when the run has none. */
static const wcmi_measure *run_mi(const run *r, int worst) {
  const wcmi_run_record *v = &r->rec;
  const wcmi_measure *m = worst ? &v->worst_mi : &v->normal_mi;
  if (isfinite(m->mean)) return m;
  const field *c = find_field(&r->cfg, "worst");
  const int run_worst = c && c->v->type == WCMI_JSON_BOOL && c->v->boolean;
  if (isfinite(v->test_mi.mean) && run_worst == worst) return &v->test_mi;
  m = worst ? &v->cotrained_worst_mi : &v->cotrained_normal_mi;
  return isfinite(m->mean) ? m : NULL;
}

static double run_fano(const run *r, int refit) { return percent(refit ? r->rec.fano_bound_refit : r->rec.fano_bound); }

/* The model file a run is about (summary, config or eval "model"), resolved. */
static int run_model(const run *r, char *out) {
  const field *f = find_field(&r->sum, "model");
  if (!f || f->v->type != WCMI_JSON_STRING || !*f->v->str) f = find_field(&r->ev, "model");
  if (!f || f->v->type != WCMI_JSON_STRING || !*f->v->str) f = find_field(&r->cfg, "model");
  if (!f || f->v->type != WCMI_JSON_STRING || !*f->v->str) return 0;
  const char *m = f->v->str;
  if (realpath(m, out)) return 1;
  /* A relative path was relative to where the task ran, which the run does not record: try the
   * run's parent directory (runs side by side) and the run directory itself. */
  char cand[2 * PATH_MAX + 8];
  if (m[0] != '/') {
    snprintf(cand, sizeof cand, "%s/../%s", r->real, m);
    if (realpath(cand, out)) return 1;
    snprintf(cand, sizeof cand, "%s/%s", r->real, m);
    if (realpath(cand, out)) return 1;
  }
  copy_str(out, PATH_MAX, m);
  return 1;
}

/* Whether run b trained or evaluated the model file `model`: b's own best/latest checkpoint, or the
 * model its eval.json / summary names. *best tells which checkpoint matched. */
static int run_is_about(const run *b, const char *model, int *best) {
  char p[PATH_MAX + 32], real[PATH_MAX];
  static const char *const CK[2] = {"best.safetensors", "latest.safetensors"};
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/%s", b->real, CK[k]);
    if (file_exists(p) && realpath(p, real) && !strcmp(real, model)) {
      *best = k == 0;
      return 1;
    }
  }
  *best = 0;
  return run_model(b, real) && !strcmp(real, model);
}

/* ---- HTML pieces ----------------------------------------------------------------------------- */
static void esc(FILE *f, const char *s) { wcmi_xml_escape(f, s); }

static void note(FILE *f, const char *text) {
  fputs("<p class=\"note\">", f);
  esc(f, text);
  fputs("</p>\n", f);
}

static void json_value_text(FILE *f, const wcmi_json *v) {
  switch (v->type) {
  case WCMI_JSON_NULL: fputs("null", f); return;
  case WCMI_JSON_BOOL: fputs(v->boolean ? "true" : "false", f); return;
  case WCMI_JSON_NUMBER:
    if (v->is_integer) fprintf(f, "%lld", (long long)v->integer);
    else fprintf(f, "%.6g", v->number);
    return;
  case WCMI_JSON_STRING: esc(f, v->str); return;
  default: {
    wcmi_jsonw w;
    wcmi_jsonw_init_buffer(&w, 0);
    wcmi_jsonw_value(&w, v);
    const char *t = wcmi_jsonw_text(&w);
    size_t n = strlen(t);
    if (n > 300) {
      char cut[301];
      memcpy(cut, t, 300);
      cut[300] = '\0';
      esc(f, cut);
      fprintf(f, " &hellip; (%zu values)", wcmi_json_len(v));
    } else {
      esc(f, t);
    }
    wcmi_jsonw_free(&w);
  }
  }
}

static void kv_table(FILE *f, const fields *fs, const char *cls) {
  fprintf(f, "<table class=\"%s\"><tbody>\n", cls);
  for (int i = 0; i < fs->n; i++) {
    fputs("<tr><th>", f);
    esc(f, fs->f[i].key);
    fputs("</th><td>", f);
    json_value_text(f, fs->f[i].v);
    fputs("</td></tr>\n", f);
  }
  fputs("</tbody></table>\n", f);
}

static void fmt_cell(FILE *f, double v, const char *unit) {
  if (isfinite(v)) fprintf(f, "<td class=\"num\">%.2f%s</td>", v, unit);
  else fputs("<td class=\"num na\">&mdash;</td>", f);
}

/* An MI measure as "mean &plusmn; std" when it comes with a spread over critics, else as fmt_cell. */
static void fmt_cell_pm(FILE *f, const wcmi_measure *m) {
  if (m && isfinite(m->mean) && isfinite(m->std)) fprintf(f, "<td class=\"num\">%.3f &plusmn; %.3f</td>", m->mean, m->std);
  else fmt_cell(f, m ? m->mean : NAN, "");
}

/* ---- accuracy table --------------------------------------------------------------------------- */
/* Opens the accuracy table before its first row. */
static void acc_row_start(FILE *f, int *rows) {
  if (!(*rows)++)
    fputs("<h3>Accuracy</h3>\n<table class=\"acc\"><thead><tr><th>measure</th><th>accuracy</th><th>key</th>"
          "<th>file</th></tr></thead><tbody>\n", f);
}

/* The accuracies of the run record (docs/formats.md), each with the file it is in. */
static int accuracy_table(FILE *f, const run *r) {
  int rows = 0;
  const wcmi_run_record *src[2] = {&r->rec_ev, &r->rec_sum};
  const char *names[2] = {"eval.json", "summary.json"};
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < wcmi_record_num_fields(); i++) {
      const wcmi_record_field *fd = wcmi_record_field_at(i);
      const double v = wcmi_record_value(src[s], fd);
      if (fd->unit != WCMI_UNIT_FRACTION || strstr(fd->key, "fano") || !isfinite(v)) continue;
      acc_row_start(f, &rows);
      fputs("<tr><th>", f);
      esc(f, fd->label);
      fputs("</th>", f);
      fmt_cell(f, percent(v), " %");
      fprintf(f, "<td>%s</td><td>%s</td></tr>\n", fd->key, names[s]);
    }
  /* eval.json's attacks[]: each attack's name and adv_acc (a fraction, docs/formats.md). */
  const wcmi_json *atk = wcmi_json_get(r->eval, "attacks");
  for (size_t i = 0; atk && atk->type == WCMI_JSON_ARRAY && i < atk->n; i++) {
    const wcmi_json *name = wcmi_json_get(&atk->items[i], "name"), *acc = wcmi_json_get(&atk->items[i], "adv_acc");
    if (!name || name->type != WCMI_JSON_STRING || !acc || acc->type != WCMI_JSON_NUMBER) continue;
    acc_row_start(f, &rows);
    fputs("<tr><th>adversarial accuracy, ", f);
    esc(f, name->str);
    fputs("</th>", f);
    fmt_cell(f, percent(acc->number), " %");
    fputs("<td>attacks[", f);
    esc(f, name->str);
    fputs("].adv_acc</td><td>eval.json</td></tr>\n", f);
  }
  if (rows)
    fputs("</tbody></table>\n<p class=\"caption\">adversarial accuracy = correct on the clean and on the attacked input; "
          "eval.json's attacks[] holds each attack of wcmi eval.</p>\n",
          f);
  return rows;
}

/* ---- MI / RV / Fano bars ---------------------------------------------------------------------- */
/* The MI measures that come with a spread (several critics), as "mean ± std" beside the bars. */
static void pm_table(FILE *f, const run *r, const wcmi_record_field *const *fds, int n) {
  int rows = 0;
  for (int i = 0; i < n; i++) {
    const wcmi_measure *m = wcmi_record_measure(&r->rec, fds[i]);
    if (!m || !isfinite(m->std)) continue;
    if (!rows++) fputs("<table class=\"kv\"><thead><tr><th>measure</th><th>nats (mean &plusmn; std)</th></tr></thead><tbody>\n", f);
    fputs("<tr><td>", f);
    esc(f, fds[i]->label);
    fputs("</td>", f);
    fmt_cell_pm(f, m);
    fputs("</tr>\n", f);
  }
  if (rows) {
    fprintf(f, "</tbody></table>\n<p class=\"caption\">mean &plusmn; standard deviation over ");
    if (r->rec.critics > 0) fprintf(f, "%lld critics trained from independent seeds", r->rec.critics);
    else fputs("the critics of the run", f);
    fputs(" (the *_per_critic arrays of summary.json hold each value).</p>\n", f);
  }
}

static int is_rv(const wcmi_record_field *fd) { return !strncmp(fd->key, "rv", 2); }

static int mi_bars(FILE *f, const run *r, const run *const *all, int n_all) {
  const char *names[WCMI_RECORD_MAX_VALUES];
  const wcmi_record_field *fds[WCMI_RECORD_MAX_VALUES];
  double vals[WCMI_RECORD_MAX_VALUES];
  int group[WCMI_RECORD_MAX_VALUES], n = 0;
  for (int i = 0; i < wcmi_record_num_fields() && n < WCMI_RECORD_MAX_VALUES; i++) {
    const wcmi_record_field *fd = wcmi_record_field_at(i);
    const double v = wcmi_record_value(&r->rec, fd);
    if (fd->unit != WCMI_UNIT_NATS || !isfinite(v)) continue;
    fds[n] = fd;
    names[n] = fd->label;
    vals[n] = v;
    group[n++] = is_rv(fd);
  }
  int charts = 0;
  if (n) {
    fputs("<h3>Mutual information and representation vulnerability</h3>\n<div class=\"charts\">\n", f);
    static const char *const GROUPS[2] = {"MI estimate", "RV = normal - worst"};
    wcmi_svg_chart c = {"MI and RV (nats)", NULL, "nats", 480, 280, 1, 0, 0, 0, 0, 0, 0, NULL};
    int has_rv = 0;
    for (int i = 0; i < n; i++) has_rv |= group[i];
    wcmi_svg_bar_chart(f, &c, names, vals, n, group, GROUPS, has_rv ? 2 : 1);
    charts++;
  }
  pm_table(f, r, fds, n);
  /* Fano bounds beside the measured adversarial accuracy of the same model (if a run gives it). */
  const char *fn[6];
  double fv[6];
  int fg[6], m = 0;
  double b = run_fano(r, 0), br = run_fano(r, 1);
  if (isfinite(b)) fn[m] = "Fano bound", fv[m] = b, fg[m++] = 0;
  if (isfinite(br)) fn[m] = "Fano bound (re-fit)", fv[m] = br, fg[m++] = 0;
  if (m) {
    double adv = run_adv_acc(r, 0);
    char model[PATH_MAX];
    int best = 0;
    if (!isfinite(adv) && run_model(r, model))
      for (int k = 0; k < n_all && !isfinite(adv); k++)
        if (all[k] != r && run_is_about(all[k], model, &best)) adv = run_adv_acc(all[k], best);
    if (isfinite(adv)) fn[m] = "measured adv. acc.", fv[m] = adv, fg[m++] = 1;
    if (!n) fputs("<h3>Mutual information and representation vulnerability</h3>\n<div class=\"charts\">\n", f);
    static const char *const GROUPS[2] = {"upper bound (Theorem 3.4)", "measured"};
    wcmi_svg_chart c = {"Fano bound on adversarial accuracy (%)", NULL, "adversarial accuracy (%)", 480, 280, 1, 0, 0, 100,
                        0, 0, 0, NULL};
    wcmi_svg_bar_chart(f, &c, fn, fv, m, fg, GROUPS, isfinite(adv) ? 2 : 1);
    charts++;
  }
  if (charts) fputs("</div>\n", f);
  return charts;
}

/* per_neuron.json: {"histogram": {"rv": {"edges": [...], "counts": [...]}, ...}} */
static int histograms(FILE *f, const run *r) {
  const wcmi_json *h = wcmi_json_get(r->per_neuron, "histogram");
  if (!h || h->type != WCMI_JSON_OBJECT || !h->n) return 0;
  const wcmi_json *layer = wcmi_json_get(r->per_neuron, "layer");
  fputs("<h3>Per-neuron vulnerability", f);
  if (layer && layer->type == WCMI_JSON_STRING) fputs(" of layer ", f), esc(f, layer->str);
  fputs("</h3>\n<div class=\"charts\">\n", f);
  int charts = 0;
  for (size_t k = 0; k < h->n; k++) {
    const wcmi_json *edges = wcmi_json_get(&h->items[k], "edges"), *counts = wcmi_json_get(&h->items[k], "counts");
    size_t nb = wcmi_json_len(counts);
    if (!edges || !counts || edges->type != WCMI_JSON_ARRAY || counts->type != WCMI_JSON_ARRAY || !nb || nb > 64 ||
        wcmi_json_len(edges) != nb + 1)
      continue;
    char labels[64][32];
    const char *names[64];
    double vals[64];
    for (size_t i = 0; i < nb; i++) {
      const wcmi_json *e0 = &edges->items[i], *e1 = &edges->items[i + 1];
      snprintf(labels[i], sizeof labels[i], "%.2g..%.2g", e0->type == WCMI_JSON_NUMBER ? e0->number : NAN,
               e1->type == WCMI_JSON_NUMBER ? e1->number : NAN);
      names[i] = labels[i];
      vals[i] = counts->items[i].type == WCMI_JSON_NUMBER ? counts->items[i].number : NAN;
    }
    char title[200];
    snprintf(title, sizeof title, "channels by %s (nats)", h->keys[k]);
    wcmi_svg_chart c = {title, NULL, "channels", 480, 280, 1, 0, 0, 0, 0, 0, 0, NULL};
    wcmi_svg_bar_chart(f, &c, names, vals, (int)nb, NULL, NULL, 0);
    charts++;
  }
  fputs("</div>\n", f);
  return charts;
}

/* ---- training curves -------------------------------------------------------------------------- */
typedef struct curve_unit {
  const char *ylabel;
  double scale;
  int percent;
} curve_unit;

/* A curve's axis from the unit the run-record schema gives its key; a key it does not know is
 * plotted as it is, labelled with its name. */
static curve_unit unit_for(const char *key) {
  wcmi_unit u;
  if (wcmi_record_metric_unit(key, &u)) return (curve_unit){leaf(key), 1, 0};
  switch (u) {
  case WCMI_UNIT_FRACTION: return (curve_unit){strstr(key, "fano") ? "bound (%)" : "accuracy (%)", 100, 1};
  case WCMI_UNIT_NATS: return (curve_unit){strstr(leaf(key), "loss") ? "loss (nats)" : "MI estimate (nats)", 1, 0};
  case WCMI_UNIT_SECONDS: return (curve_unit){"time (s)", 1, 0};
  case WCMI_UNIT_LR: return (curve_unit){"learning rate", 1, 0};
  case WCMI_UNIT_PIXELS: return (curve_unit){"eps (pixels in [0,1])", 1, 0};
  default: return (curve_unit){leaf(key), 1, 0};
  }
}

/* Probe lines of metrics.jsonl (train-encoder --probe-every) carry a "probe" object; the epoch
 * charts skip them and the learning-curve chart below draws them. */
static int is_probe_line(const wcmi_json *line) { return wcmi_json_get(line, "probe") != NULL; }

/* One probe's point of the curve of head `head` ("linear", "robust_mlp"): minutes, natural and PGD
 * accuracy in %. Returns 1, or 0 when the probe line has no such head. */
static int probe_point(const wcmi_json *probe, const char *head, double seconds, double *x, double *nat, double *adv) {
  char nk[64], ak[64];
  snprintf(nk, sizeof nk, "%s_nat_acc", head);
  snprintf(ak, sizeof ak, "%s_adv_acc", head);
  const wcmi_json *a = wcmi_json_get(probe, nk), *b = wcmi_json_get(probe, ak);
  if (!a || !b || a->type != WCMI_JSON_NUMBER || b->type != WCMI_JSON_NUMBER) return 0;
  *x = seconds / 60.0;
  *nat = 100.0 * a->number;
  *adv = 100.0 * b->number;
  return 1;
}

/* Accuracy against training time: the linear probe's natural and PGD accuracy, and the robust MLP
 * probe's where the run has it (docs/learning-curves.md). */
static int probe_curves(wcmi_ctx *ctx, FILE *f, const run *r) {
  const size_t E = r->metrics->n;
  /* Columns: linear x, natural, PGD; robust x, natural, PGD. */
  double *v = malloc(6 * (E ? E : 1) * sizeof *v);
  if (!v) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  double *x = v, *nat = v + E, *adv = v + 2 * E, *rx = v + 3 * E, *rnat = v + 4 * E, *radv = v + 5 * E;
  int n = 0, nr = 0;
  for (size_t e = 0; e < E; e++) {
    const wcmi_json *line = &r->metrics->items[e], *p = wcmi_json_get(line, "probe");
    const wcmi_json *ts = wcmi_json_get(line, "train_seconds");
    if (!p || !ts || ts->type != WCMI_JSON_NUMBER) continue;
    n += probe_point(p, "linear", ts->number, x + n, nat + n, adv + n);
    nr += probe_point(p, "robust_mlp", ts->number, rx + nr, rnat + nr, radv + nr);
  }
  if (n > 0) {
    fprintf(f, "<h3>Learning curve</h3>\n<p class=\"caption\">%d probe%s: a linear head fitted to convergence on the "
               "encoder's cached representations, its natural and PGD accuracy on a fixed test subset%s, against "
               "minutes of training (probe time excluded).</p>\n<div class=\"charts\">\n",
            n, n == 1 ? "" : "s",
            nr ? "; and a robust MLP head trained by PGD through the frozen encoder, scored the same way" : "");
    wcmi_svg_series s[4] = {{"linear probe, natural", x, nat, n},
                            {"linear probe, PGD", x, adv, n},
                            {"robust MLP probe, natural", rx, rnat, nr},
                            {"robust MLP probe, PGD", rx, radv, nr}};
    wcmi_svg_chart c = {"accuracy vs training time", "training time (min)", "accuracy (%)", 480, 280, 1, 0, 0, 100,
                        0, 0, 0, NULL};
    wcmi_svg_line_chart(f, &c, s, nr ? 4 : 2);
    fputs("</div>\n", f);
  }
  free(v);
  return WCMI_OK;
}

static int training_curves(wcmi_ctx *ctx, FILE *f, const run *r) {
  if (!r->metrics || !r->metrics->n) return 0;
  int rc = probe_curves(ctx, f, r);
  if (rc) return rc;
  size_t E = 0;
  for (size_t e = 0; e < r->metrics->n; e++) E += !is_probe_line(&r->metrics->items[e]);
  if (!E) return 0;
  fields *per = calloc(E, sizeof *per);
  double *x = malloc(E * sizeof *x), *y = malloc(E * sizeof *y);
  char(*keys)[160] = malloc((size_t)MAX_CURVES * sizeof *keys);
  int nk = 0;
  rc = (per && x && y && keys) ? WCMI_OK : wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  /* Curves in the order their keys first appear; x = the line's "epoch" (else its line number). */
  for (size_t i = 0, e = 0; !rc && i < r->metrics->n; i++) {
    if (is_probe_line(&r->metrics->items[i])) continue;
    if ((rc = flatten(&per[e], "", &r->metrics->items[i], 0))) break;
    double ep = number_of(&per[e], "epoch");
    x[e] = isfinite(ep) ? ep : (double)e;
    for (int j = 0; j < per[e].n && nk < MAX_CURVES; j++) {
      const field *fd = &per[e].f[j];
      if (fd->v->type != WCMI_JSON_NUMBER || !strcmp(fd->key, "epoch")) continue;
      int seen = 0;
      for (int k = 0; k < nk && !seen; k++) seen = !strcmp(keys[k], fd->key);
      if (!seen) snprintf(keys[nk++], sizeof keys[0], "%s", fd->key);
    }
    e++;
  }
  if (!rc && nk) {
    fprintf(f, "<h3>Training curves</h3>\n<p class=\"caption\">metrics.jsonl: %zu epoch%s, one chart per numeric field "
               "(accuracies in %%, MI and losses in nats).</p>\n<div class=\"charts\">\n",
            E, E == 1 ? "" : "s");
    for (int k = 0; k < nk; k++) {
      for (size_t e = 0; e < E; e++) y[e] = number_of(&per[e], keys[k]);
      curve_unit u = unit_for(keys[k]);
      for (size_t e = 0; e < E; e++) y[e] *= u.scale;
      wcmi_svg_series s = {keys[k], x, y, (int)E};
      wcmi_svg_chart c = {keys[k], "epoch", u.ylabel, 480, 260, 0, 1, 0, 0, 0, 0, 0, NULL};
      if (u.percent) c.y_min = 0, c.y_max = 100;
      wcmi_svg_line_chart(f, &c, &s, 1);
    }
    fputs("</div>\n", f);
  }
  for (size_t e = 0; per && e < E; e++) free(per[e].f);
  free(per);
  free(x);
  free(y);
  free(keys);
  if (rc == WCMI_ENOMEM) wcmi_fail(ctx, rc, "out of memory");
  return rc;
}

/* ---- images ----------------------------------------------------------------------------------- */
/* wcmi saliency writes X.json beside X.png (models, loss): the rows' caption. Absent: no caption. */
static int load_sidecar(wcmi_ctx *ctx, const char *png, wcmi_json **out) {
  char path[PATH_MAX + 8];
  size_t n = strlen(png);
  *out = NULL;
  if (n < 4 || n + 1 > sizeof path) return WCMI_OK;
  memcpy(path, png, n - 4);
  memcpy(path + n - 4, ".json", 6);
  if (!file_exists(path)) return WCMI_OK;
  int rc = wcmi_json_parse_file(ctx, path, MAX_JSON_BYTES, out);
  if (!rc && (*out)->type != WCMI_JSON_OBJECT) {
    wcmi_json_free(*out);
    *out = NULL;
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: expected a JSON object", path);
  }
  return rc;
}

static int embed_png(wcmi_ctx *ctx, FILE *f, const char *path) {
  char *bytes = NULL;
  size_t n = 0;
  int rc = wcmi_read_file(ctx, path, MAX_PNG_BYTES, &bytes, &n);
  if (rc) return rc;
  static const unsigned char SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n < 24 || memcmp(bytes, SIG, 8) || memcmp(bytes + 12, "IHDR", 4)) {
    wcmi_free(bytes);
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: not a PNG file", path);
  }
  const unsigned char *u = (const unsigned char *)bytes;
  unsigned w = (unsigned)u[16] << 24 | (unsigned)u[17] << 16 | (unsigned)u[18] << 8 | u[19];
  unsigned h = (unsigned)u[20] << 24 | (unsigned)u[21] << 16 | (unsigned)u[22] << 8 | u[23];
  char *b64 = wcmi_base64_encode((const uint8_t *)bytes, n);
  wcmi_free(bytes);
  if (!b64) return wcmi_fail(ctx, WCMI_ENOMEM, "%s: out of memory", path);
  const char *slash = strrchr(path, '/');
  wcmi_json *side = NULL;
  rc = load_sidecar(ctx, path, &side);
  if (rc) {
    free(b64);
    return rc;
  }
  fputs("<figure><img alt=\"", f);
  esc(f, slash ? slash + 1 : path);
  fprintf(f, "\" width=\"%u\" height=\"%u\" src=\"data:image/png;base64,%s\"><figcaption>", w, h, b64);
  esc(f, slash ? slash + 1 : path);
  const wcmi_json *models = wcmi_json_get(side, "models"), *loss = wcmi_json_get(side, "loss");
  if (models && models->type == WCMI_JSON_ARRAY) {
    fputs(" &mdash; ", f);
    if (loss && loss->type == WCMI_JSON_STRING) fputs("loss ", f), esc(f, loss->str), fputs("; ", f);
    fputs("row 1: inputs", f);
    for (size_t i = 0; i < models->n; i++)
      if (models->items[i].type == WCMI_JSON_STRING) fprintf(f, "; row %zu: ", i + 2), esc(f, models->items[i].str);
    fputs(" (bright = large |gradient|, each map scaled to its own 99th percentile)", f);
  } else {
    fputs(" &mdash; row 1: inputs; then one row of maps per model (bright = large |gradient|)", f);
  }
  fputs("</figcaption></figure>\n", f);
  wcmi_json_free(side);
  free(b64);
  return WCMI_OK;
}

/* ---- one run ---------------------------------------------------------------------------------- */
static int write_run(wcmi_ctx *ctx, FILE *f, const run *r, int index, int depth, const run *const *all, int n_all) {
  const char *task = run_task(r);
  if (depth == 0) fprintf(f, "<section class=\"run\" id=\"run-%d\">\n<h2>", index);
  else fputs("<section class=\"subrun\">\n<h3 class=\"sub\">", f);
  esc(f, r->name);
  if (task) fputs(" <span class=\"task\">", f), esc(f, task), fputs("</span>", f);
  fputs(depth == 0 ? "</h2>\n" : "</h3>\n", f);
  int shown = 0;
  if (!r->config && !r->summary && !r->metrics && !r->eval && !r->per_neuron && !r->n_images && !r->n_children)
    note(f, "Empty run: no config.json, metrics.jsonl, summary.json, eval.json or saliency*.png here.");
  else {
    if (!r->summary && !r->eval && (r->config || r->metrics))
      note(f, "No summary.json: the run is unfinished, interrupted or failed; showing what it wrote so far.");
    if (r->metrics && !r->metrics->n) note(f, "metrics.jsonl is empty: no epoch finished yet.");
  }
  shown += accuracy_table(f, r);
  shown += mi_bars(f, r, all, n_all);
  shown += histograms(f, r);
  int rc = training_curves(ctx, f, r);
  if (rc) return rc;
  if (r->n_images) {
    fputs("<h3>Saliency maps</h3>\n", f);
    for (int i = 0; i < r->n_images && !rc; i++) rc = embed_png(ctx, f, r->images[i]);
    if (rc) return rc;
  }
  if (r->summary || r->eval || r->config) fputs("<div class=\"tables\">\n", f);
  if (r->summary || r->eval) {
    fputs("<details open><summary>Summary</summary>\n", f);
    if (r->summary) kv_table(f, &r->sum, "kv");
    if (r->eval) fputs("<p class=\"caption\">eval.json</p>\n", f), kv_table(f, &r->ev, "kv");
    fputs("</details>\n", f);
  }
  if (r->config) {
    fputs("<details open><summary>Configuration (config.json)</summary>\n", f);
    kv_table(f, &r->cfg, "kv");
    fputs("</details>\n", f);
  }
  if (r->summary || r->eval || r->config) fputs("</div>\n", f);
  (void)shown;
  for (int i = 0; i < r->n_children && !rc; i++) rc = write_run(ctx, f, r->children[i], index, depth + 1, all, n_all);
  fputs("</section>\n", f);
  return rc;
}

/* ---- across runs ------------------------------------------------------------------------------ */
static void overview(FILE *f, const run *const *runs, int n) {
  fputs("<h2 id=\"overview\">Across runs</h2>\n<table class=\"overview\"><thead><tr><th>run</th><th>task</th>"
        "<th>natural acc.</th><th>adversarial acc.</th><th>normal MI (nats)</th><th>worst-case MI (nats)</th>"
        "<th>RV (nats)</th><th>Fano bound</th></tr></thead><tbody>\n",
        f);
  for (int i = 0; i < n; i++) {
    const run *r = runs[i];
    const char *task = run_task(r);
    fprintf(f, "<tr><td><a href=\"#run-%d\">", i);
    esc(f, r->name);
    fputs("</a></td><td>", f);
    esc(f, task ? task : "");
    fputs("</td>", f);
    fmt_cell(f, run_nat_acc(r), " %");
    fmt_cell(f, run_adv_acc(r, 0), " %");
    fmt_cell_pm(f, run_mi(r, 0));
    fmt_cell_pm(f, run_mi(r, 1));
    fmt_cell_pm(f, &r->rec.rv);
    fmt_cell(f, run_fano(r, 0), " %");
    fputs("</tr>\n", f);
  }
  fputs("</tbody></table>\n", f);
}

/* Figure 2 of the paper: one point per model that has both a Fano bound (a vulnerability run) and a
 * measured adversarial accuracy (the same run, or another run given whose checkpoint or evaluated
 * model is the file the vulnerability run analysed). */
static int fano_scatter(wcmi_ctx *ctx, FILE *f, const run *const *runs, int n) {
  double *bx = malloc((size_t)(n * n + 1) * sizeof *bx), *by = malloc((size_t)(n * n + 1) * sizeof *by),
         *rx = malloc((size_t)(n * n + 1) * sizeof *rx), *ry = malloc((size_t)(n * n + 1) * sizeof *ry);
  char(*lab)[200] = malloc((size_t)(n * n + 1) * sizeof *lab);
  const char **labels = malloc((size_t)(n * n + 1) * sizeof *labels);
  if (!bx || !by || !rx || !ry || !lab || !labels) {
    free(bx), free(by), free(rx), free(ry), free(lab), free(labels);
    return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  }
  int m = 0;
  for (int a = 0; a < n; a++) {
    double fb = run_fano(runs[a], 0);
    if (!isfinite(fb)) continue;
    char model[PATH_MAX];
    int have_model = run_model(runs[a], model);
    for (int b = 0; b < n; b++) {
      int best = 0;
      if (b == a ? !isfinite(run_adv_acc(runs[a], 0)) : !(have_model && run_is_about(runs[b], model, &best))) continue;
      double adv = run_adv_acc(runs[b], best);
      if (!isfinite(adv)) continue;
      bx[m] = fb, by[m] = adv, rx[m] = run_fano(runs[a], 1), ry[m] = adv;
      if (a == b || !join(lab[m], sizeof lab[m], runs[a]->name, " + ", runs[b]->name))
        copy_str(lab[m], sizeof lab[m], runs[a]->name);
      labels[m] = lab[m];
      m++;
    }
  }
  fputs("<h3>Fano bound vs. measured adversarial accuracy (paper, Figure 2)</h3>\n", f);
  if (m) {
    int refit = 0;
    for (int i = 0; i < m; i++) refit |= isfinite(rx[i]);
    wcmi_svg_series s[2] = {{"Fano bound (Algorithm 2 worst-case MI)", bx, by, m}, {"Fano bound (re-fitted)", rx, ry, m}};
    wcmi_svg_chart c = {"Fano bound vs adversarial accuracy", "Fano bound on adversarial accuracy (%)",
                        "measured adversarial accuracy (%)", 560, 420, 0, 0, 0, 100, 0, 100, 1, labels};
    fputs("<div class=\"charts\">\n", f);
    wcmi_svg_scatter(f, &c, s, refit ? 2 : 1);
    int above = 0;
    for (int i = 0; i < m; i++) above |= by[i] > bx[i] + 1e-9;
    if (above)
      note(f, "A point above the diagonal means the worst-case MI was underestimated (an undertrained or fooled "
              "critic, e.g. a negative estimate; see docs/estimate-mi.md), or the accuracy was measured on a "
              "different protocol: the bound itself cannot be violated.");
    fputs("</div>\n<p class=\"caption\">Theorem 3.4: no classifier on the representation can lie above the diagonal "
          "(up to estimation error). A point pairs a vulnerability run with the adversarial accuracy of the same model "
          "(eval.json or summary.json of a run whose checkpoint or evaluated model is that file).</p>\n",
          f);
  } else {
    note(f, "No run gives both a Fano bound and an adversarial accuracy for the same model. Pass a vulnerability run "
            "together with the train-classifier / train-model run (or the eval --out directory) of the model it analysed.");
  }
  free(bx), free(by), free(rx), free(ry), free(lab), free(labels);
  return WCMI_OK;
}

/* Learning curves across runs (issue 14's recipe comparison): the probes of every run that has them,
 * one series per run, against training minutes and against epochs done. A probe line gives its
 * position in the epoch as "batch" of "batches_per_epoch" (runs written before that key existed
 * are left out of the epoch charts). */
typedef struct probe_axis {
  const char *head, *acc; /* "linear" / "robust_mlp"; "nat" / "adv" */
  int by_epoch;
} probe_axis;

static int probe_series(const run *r, const probe_axis *ax, double *x, double *y) {
  int n = 0;
  for (size_t e = 0; r->metrics && e < r->metrics->n; e++) {
    const wcmi_json *line = &r->metrics->items[e], *p = wcmi_json_get(line, "probe");
    if (!p) continue;
    char key[64];
    snprintf(key, sizeof key, "%s_%s_acc", ax->head, ax->acc);
    const wcmi_json *a = wcmi_json_get(p, key), *ts = wcmi_json_get(line, "train_seconds");
    const wcmi_json *ep = wcmi_json_get(line, "epoch"), *b = wcmi_json_get(line, "batch"),
                    *nb = wcmi_json_get(line, "batches_per_epoch");
    if (!a || a->type != WCMI_JSON_NUMBER) continue;
    if (ax->by_epoch) {
      if (!ep || !b || !nb || ep->type != WCMI_JSON_NUMBER || b->type != WCMI_JSON_NUMBER ||
          nb->type != WCMI_JSON_NUMBER || !(nb->number > 0))
        continue;
      x[n] = ep->number + b->number / nb->number;
    } else {
      if (!ts || ts->type != WCMI_JSON_NUMBER) continue;
      x[n] = ts->number / 60.0;
    }
    y[n++] = 100.0 * a->number;
  }
  return n;
}

static int compare_curves(wcmi_ctx *ctx, FILE *f, const run *const *runs, int n_runs) {
  static const probe_axis AXES[4] = {{"robust_mlp", "adv", 0}, {"robust_mlp", "adv", 1}, {"linear", "nat", 0},
                                     {"linear", "nat", 1}};
  static const char *const TITLES[4] = {"robust MLP probe, PGD", "robust MLP probe, PGD", "linear probe, natural",
                                        "linear probe, natural"};
  const run *with[WCMI_SVG_MAX_SERIES];
  int m = 0, more = 0;
  size_t cap = 1;
  for (int i = 0; i < n_runs; i++) {
    int has = 0;
    for (size_t e = 0; runs[i]->metrics && e < runs[i]->metrics->n && !has; e++)
      has = is_probe_line(&runs[i]->metrics->items[e]);
    if (!has) continue;
    if (m == WCMI_SVG_MAX_SERIES) {
      more++;
      continue;
    }
    with[m++] = runs[i];
    if (runs[i]->metrics->n > cap) cap = runs[i]->metrics->n;
  }
  if (m < 2) return WCMI_OK;
  double *v = malloc((size_t)m * 2 * cap * sizeof *v);
  if (!v) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  fprintf(f, "<h3>Learning curves across runs</h3>\n<p class=\"caption\">The probes of %d runs "
             "(docs/learning-curves.md): accuracy on each run's fixed test subset against training minutes (probe "
             "time excluded) and against epochs done.%s</p>\n<div class=\"charts\">\n",
          m, more ? " Only the first 8 runs with probes are drawn." : "");
  for (int a = 0; a < 4; a++) {
    wcmi_svg_series s[WCMI_SVG_MAX_SERIES];
    int points = 0;
    for (int i = 0; i < m; i++) {
      double *x = v + (size_t)i * 2 * cap, *y = x + cap;
      s[i] = (wcmi_svg_series){with[i]->name, x, y, probe_series(with[i], &AXES[a], x, y)};
      points += s[i].n;
    }
    if (!points) continue;
    char title[96];
    snprintf(title, sizeof title, "%s vs %s", TITLES[a], AXES[a].by_epoch ? "epochs" : "training time");
    wcmi_svg_chart c = {title, AXES[a].by_epoch ? "epochs done" : "training time (min)", "accuracy (%)", 480, 280, 1, 0,
                        0, 100, 0, 0, 0, NULL};
    wcmi_svg_line_chart(f, &c, s, m);
  }
  fputs("</div>\n", f);
  free(v);
  return WCMI_OK;
}

static const char *STYLE =
    "body{font-family:sans-serif;margin:24px auto;max-width:1120px;color:#222;line-height:1.4;padding:0 12px}"
    "h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}"
    "h3{font-size:15px;margin:18px 0 6px}h3.sub{font-size:16px;color:#444;border-bottom:1px solid #eee}"
    ".task{font-size:12px;font-weight:normal;background:#eef3fa;color:#1f4e8c;border-radius:3px;padding:2px 6px;"
    "margin-left:8px;vertical-align:middle}"
    "table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 8px;"
    "text-align:left;vertical-align:top}thead th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:"
    "tabular-nums}td.na{color:#999}table.kv th{font-weight:normal;color:#555;background:#fafafa}"
    ".charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #e4e4e4}"
    ".note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;font-size:13px}"
    ".caption{font-size:12px;color:#666;margin:2px 0 8px}details{margin:8px 0}summary{cursor:pointer;font-weight:bold;"
    "font-size:14px}figure{margin:8px 0}figcaption{font-size:12px;color:#666}img{image-rendering:pixelated;"
    "max-width:100%;height:auto;border:1px solid #e4e4e4}section.subrun{margin-left:16px}"
    ".tables{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}.tables details{max-width:100%}"
    "table.kv td{max-width:520px;overflow-wrap:anywhere}";

static int write_page(wcmi_ctx *ctx, FILE *f, const wcmi_report_cfg *cfg, const run *const *runs, int n_runs) {
  const char *title = cfg->title ? cfg->title : "wcmi report";
  fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
  esc(f, title);
  fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", STYLE);
  esc(f, title);
  fprintf(f, "</h1>\n<p class=\"caption\">wcmi %s &middot; %d run%s. MI in nats; accuracies and bounds in %%.</p>\n",
          wcmi_version(), n_runs, n_runs == 1 ? "" : "s");
  int rc = WCMI_OK;
  for (int i = 0; !rc && i < cfg->n_runs; i++)
    if (report_is_reproduce_dir(cfg->runs[i])) rc = report_reproduce_section(ctx, f, cfg->runs[i]);
  if (rc) return rc;
  overview(f, runs, n_runs);
  rc = fano_scatter(ctx, f, runs, n_runs);
  if (!rc) rc = compare_curves(ctx, f, runs, n_runs);
  for (int i = 0; !rc && i < n_runs; i++) rc = write_run(ctx, f, runs[i], i, 0, runs, n_runs);
  if (!rc && cfg->n_saliency) {
    fputs("<h2 id=\"saliency\">Saliency maps</h2>\n", f);
    for (int i = 0; i < cfg->n_saliency && !rc; i++) rc = embed_png(ctx, f, cfg->saliency[i]);
  }
  fputs("</body>\n</html>\n", f);
  return rc;
}

/* The run directories to show: each one given, except that a `wcmi reproduce` directory stands for
 * its stage directories (those that exist), in the order it ran them. */
static int expand_runs(wcmi_ctx *ctx, const wcmi_report_cfg *cfg, char ***out, int *n_out) {
  int cap = cfg->n_runs + 1, n = 0, rc = WCMI_OK;
  char **dirs = calloc((size_t)cap, sizeof *dirs);
  if (!dirs) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  for (int i = 0; i < cfg->n_runs && !rc; i++) {
    char **stages = NULL;
    int n_stages = 0, repro = report_is_reproduce_dir(cfg->runs[i]);
    if (repro) rc = report_reproduce_stages(ctx, cfg->runs[i], &stages, &n_stages);
    else if (!(stages = calloc(1, sizeof *stages)) || !(stages[0] = strdup(cfg->runs[i])))
      rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    else n_stages = 1;
    if (!rc && n + n_stages >= cap) {
      char **grown = realloc(dirs, (size_t)(cap = n + n_stages + 1) * sizeof *dirs);
      if (!grown) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
      else dirs = grown;
    }
    for (int k = 0; k < n_stages; k++) {
      struct stat st;
      if (!rc && (!repro || (stat(stages[k], &st) == 0 && S_ISDIR(st.st_mode)))) dirs[n++] = stages[k];
      else free(stages[k]);
    }
    free(stages);
  }
  if (rc) {
    for (int i = 0; i < n; i++) free(dirs[i]);
    free(dirs);
    return rc;
  }
  *out = dirs;
  *n_out = n;
  return WCMI_OK;
}

int wcmi_report_write(wcmi_ctx *ctx, const wcmi_report_cfg *cfg, const char *path) {
  if (!cfg || !path || cfg->n_runs < 0 || cfg->n_saliency < 0 || (cfg->n_runs && !cfg->runs))
    return wcmi_fail(ctx, WCMI_EINVAL, "report: bad arguments");
  if (!cfg->n_runs && !cfg->n_saliency) return wcmi_fail(ctx, WCMI_EINVAL, "report: no run directories given");
  char **dirs = NULL;
  int n_dirs = 0;
  int rc = expand_runs(ctx, cfg, &dirs, &n_dirs);
  run **runs = rc ? NULL : calloc((size_t)n_dirs + 1, sizeof *runs);
  if (!rc && !runs) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  for (int i = 0; i < n_dirs && !rc; i++) rc = run_load(ctx, dirs[i], dirs[i], 0, &runs[i]);
  char *page = NULL;
  size_t len = 0;
  FILE *f = rc ? NULL : open_memstream(&page, &len);
  if (!rc && !f) rc = wcmi_fail(ctx, WCMI_ENOMEM, "report: cannot open a memory stream");
  if (!rc) rc = write_page(ctx, f, cfg, (const run *const *)runs, n_dirs);
  if (f && fclose(f) && !rc) rc = wcmi_fail(ctx, WCMI_ENOMEM, "report: writing the page failed");
  if (!rc) rc = wcmi_atomic_write(ctx, path, page, len);
  free(page);
  for (int i = 0; runs && i < n_dirs; i++) run_free(runs[i]);
  free(runs);
  for (int i = 0; i < n_dirs; i++) free(dirs[i]);
  free(dirs);
  return rc;
}
