/* The report's section for a `wcmi reproduce` directory: the table of wcmi's numbers (from its
 * reproduce.json) beside the published ones (read from the data file, not from code), and the list
 * of its stage directories, which the report then shows as runs. */
#include "report/report_internal.h"
#include "wcmi/io.h"
#include "wcmi/report.h"
#include "wcmi/reproduce.h"
#include "wcmi/run_record.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPRODUCE_MAX_BYTES ((size_t)4 << 20)

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int report_is_reproduce_dir(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/reproduce.json", dir);
  return is_file(path);
}

static int load(wcmi_ctx *ctx, const char *dir, wcmi_json **out) {
  char path[4200];
  snprintf(path, sizeof path, "%s/reproduce.json", dir);
  int rc = wcmi_json_parse_file(ctx, path, REPRODUCE_MAX_BYTES, out);
  if (!rc && (*out)->type != WCMI_JSON_OBJECT) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: expected a JSON object", path);
  if (!rc && (!wcmi_json_get(*out, "rows") || wcmi_json_get(*out, "rows")->type != WCMI_JSON_ARRAY))
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: 'rows' missing or not an array", path);
  if (!rc && (!wcmi_json_get(*out, "stages") || wcmi_json_get(*out, "stages")->type != WCMI_JSON_ARRAY))
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: 'stages' missing or not an array", path);
  if (rc) {
    wcmi_json_free(*out);
    *out = NULL;
  }
  return rc;
}

int report_reproduce_stages(wcmi_ctx *ctx, const char *dir, char ***out, int *n) {
  *out = NULL;
  *n = 0;
  wcmi_json *j = NULL;
  int rc = load(ctx, dir, &j);
  if (rc) return rc;
  const wcmi_json *st = wcmi_json_get(j, "stages");
  char **list = calloc(st->n + 1, sizeof *list);
  if (!list) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  for (size_t i = 0; !rc && i < st->n; i++) {
    const wcmi_json *name = wcmi_json_get(&st->items[i], "name");
    if (!name || name->type != WCMI_JSON_STRING || !name->str[0] || strchr(name->str, '/') || name->str[0] == '.') {
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s/reproduce.json: stage %zu has no plain 'name'", dir, i + 1);
      break;
    }
    size_t len = strlen(dir) + strlen(name->str) + 2;
    if (!(list[*n] = malloc(len))) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    else snprintf(list[(*n)++], len, "%s/%s", dir, name->str);
  }
  wcmi_json_free(j);
  if (rc) {
    for (int i = 0; i < *n; i++) free(list[i]);
    free(list);
    *n = 0;
    return rc;
  }
  *out = list;
  return WCMI_OK;
}

/* An MI figure of the vulnerability table, "mean ± std" when the run gives a spread. */
static void cell_pm(FILE *f, const wcmi_measure *m) {
  if (isfinite(m->mean) && isfinite(m->std)) fprintf(f, "<td class=\"num\">%.3f &plusmn; %.3f</td>", m->mean, m->std);
  else if (isfinite(m->mean)) fprintf(f, "<td class=\"num\">%.3f</td>", m->mean);
  else fputs("<td class=\"na\">&ndash;</td>", f);
}

static const char *str(const wcmi_json *o, const char *key) {
  const wcmi_json *v = wcmi_json_get(o, key);
  return v && v->type == WCMI_JSON_STRING ? v->str : "";
}

static void cell(FILE *f, double v, int is_diff) {
  if (!isfinite(v)) {
    fputs("<td class=\"na\">&ndash;</td>", f);
    return;
  }
  fprintf(f, is_diff ? "<td class=\"num\">%+.2f</td>" : "<td class=\"num\">%.2f</td>", v);
}

/* The published numbers: the file reproduce.json names when it is still there, else wherever the
 * finder looks (the file may have been corrected since). */
static int load_paper(wcmi_ctx *ctx, const wcmi_json *j, wcmi_paper_results *paper) {
  const char *recorded = str(j, "paper_results");
  char path[1024];
  if (recorded[0] && is_file(recorded)) snprintf(path, sizeof path, "%s", recorded);
  else wcmi_paper_results_find(NULL, path, sizeof path);
  return wcmi_paper_results_load(ctx, path, paper);
}

int report_reproduce_section(wcmi_ctx *ctx, FILE *f, const char *dir) {
  wcmi_json *j = NULL;
  int rc = load(ctx, dir, &j);
  if (rc) return rc;
  wcmi_paper_results paper;
  rc = load_paper(ctx, j, &paper);
  if (rc) {
    wcmi_json_free(j);
    return rc;
  }
  const char *dataset = str(j, "dataset");
  char where[4200];
  snprintf(where, sizeof where, "%s/reproduce.json", dir);
  fputs("<h2 id=\"reproduce\">The paper's table: ", f);
  wcmi_xml_escape(f, dataset);
  fputs(" (", f);
  wcmi_xml_escape(f, str(j, "profile"));
  fputs(" profile)</h2>\n<p class=\"caption\">Accuracies in %. paper: published (mean of 4 trials), read from ", f);
  wcmi_xml_escape(f, paper.path);
  fputs("; diff = wcmi &minus; paper; PGD: the paper's protocol; strong: worst case per sample of PGD, PGD with random "
        "start and restarts, and APGD-CE. pixels: the same heads on the raw image.</p>\n"
        "<table class=\"overview\"><thead><tr><th>encoder / training</th><th>head</th><th>nat. paper</th>"
        "<th>nat. wcmi</th><th>diff</th><th>PGD paper</th><th>PGD wcmi</th><th>diff</th><th>strong wcmi</th>"
        "</tr></thead><tbody>\n",
        f);
  const wcmi_json *rows = wcmi_json_get(j, "rows");
  for (size_t i = 0; i < rows->n; i++) {
    const wcmi_json *r = &rows->items[i];
    const char *enc = str(r, "encoder"), *training = str(r, "training"), *head = str(r, "head");
    double pn = wcmi_paper_results_get(&paper, dataset, enc, head, training, "nat");
    double pa = wcmi_paper_results_get(&paper, dataset, enc, head, training, "adv");
    wcmi_run_record rec; /* the row's figures, under the run-record schema's keys */
    wcmi_record_clear(&rec);
    if ((rc = wcmi_record_read(ctx, where, r, &rec))) break;
    double wn = 100 * rec.nat_acc, wa = 100 * rec.pgd_adv_acc, ws = 100 * rec.worst_case_adv_acc;
    fputs("<tr><td>", f);
    wcmi_xml_escape(f, enc);
    fputs(" / ", f);
    wcmi_xml_escape(f, training);
    fputs("</td><td>", f);
    wcmi_xml_escape(f, head);
    fputs("</td>", f);
    cell(f, pn, 0), cell(f, wn, 0), cell(f, wn - pn, 1);
    cell(f, pa, 0), cell(f, wa, 0), cell(f, wa - pa, 1);
    cell(f, ws, 0);
    fputs("</tr>\n", f);
  }
  fputs("</tbody></table>\n", f);
  const wcmi_json *mi = wcmi_json_get(j, "vulnerability");
  if (!rc && mi && mi->type == WCMI_JSON_ARRAY && mi->n) {
    fputs("<table class=\"overview\"><thead><tr><th>encoder</th><th>I (nats)</th><th>I_worst</th><th>I_worst refit</th>"
          "<th>RV</th><th>Fano bound (%)</th></tr></thead><tbody>\n",
          f);
    for (size_t i = 0; i < mi->n && !rc; i++) {
      const wcmi_json *m = &mi->items[i];
      wcmi_run_record v;
      wcmi_record_clear(&v);
      if ((rc = wcmi_record_read(ctx, where, m, &v))) break;
      fputs("<tr><td>", f);
      wcmi_xml_escape(f, str(m, "encoder"));
      fputs("</td>", f);
      cell_pm(f, &v.normal_mi), cell_pm(f, &v.worst_mi), cell_pm(f, &v.worst_mi_refit), cell_pm(f, &v.rv);
      cell(f, 100 * v.fano_bound, 0);
      fputs("</tr>\n", f);
    }
    fputs("</tbody></table>\n", f);
  }
  wcmi_paper_results_free(&paper);
  wcmi_json_free(j);
  return rc;
}
