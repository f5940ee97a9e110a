/* The published numbers (data/paper_results.tsv): finding the file and reading it. The numbers
 * stay in the data file so that the command and the report show the same values and a correction
 * is one edit of one file. */
#include "wcmi/io.h"
#include "wcmi/reproduce.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef WCMI_SOURCE_DATA_DIR
#define WCMI_SOURCE_DATA_DIR ""
#endif
#ifndef WCMI_INSTALL_DATA_DIR
#define WCMI_INSTALL_DATA_DIR ""
#endif

#define PAPER_MAX_BYTES (1 << 20)
#define PAPER_FIELDS 7

static int is_file(const char *path) {
  struct stat st;
  return path[0] && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* <dir of the running program>/../share/wcmi/<file>, or "" when /proc/self/exe is unreadable. */
static void next_to_program(char *out, size_t n) {
  char exe[1024];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  out[0] = 0;
  if (len <= 0) return;
  exe[len] = 0;
  char *slash = strrchr(exe, '/');
  if (!slash) return;
  *slash = 0;
  snprintf(out, n, "%s/../share/wcmi/%s", exe, WCMI_PAPER_RESULTS_FILE);
}

void wcmi_paper_results_find(const char *override, char *out, size_t n) {
  const char *env = getenv(WCMI_PAPER_RESULTS_ENV);
  if (override || (env && env[0])) {
    snprintf(out, n, "%s", override ? override : env);
    return;
  }
  char cand[3][1200];
  next_to_program(cand[0], sizeof cand[0]);
  snprintf(cand[1], sizeof cand[1], "%s%s%s", WCMI_SOURCE_DATA_DIR, WCMI_SOURCE_DATA_DIR[0] ? "/" : "",
           WCMI_SOURCE_DATA_DIR[0] ? WCMI_PAPER_RESULTS_FILE : "");
  snprintf(cand[2], sizeof cand[2], "%s%s%s", WCMI_INSTALL_DATA_DIR, WCMI_INSTALL_DATA_DIR[0] ? "/" : "",
           WCMI_INSTALL_DATA_DIR[0] ? WCMI_PAPER_RESULTS_FILE : "");
  for (int i = 0; i < 3; i++)
    if (is_file(cand[i])) {
      snprintf(out, n, "%s", cand[i]);
      return;
    }
  snprintf(out, n, "%s", cand[2][0] ? cand[2] : cand[0]);
}

static int one_of(const char *s, const char *const *allowed) {
  for (; *allowed; allowed++)
    if (!strcmp(s, *allowed)) return 1;
  return 0;
}

/* Splits line (modified in place) at tabs into at most max fields; returns how many. */
static int split_tabs(char *line, char **f, int max) {
  int k = 0;
  for (char *p = line; k < max;) {
    f[k++] = p;
    char *tab = strchr(p, '\t');
    if (!tab) break;
    *tab = 0;
    p = tab + 1;
  }
  return k;
}

static int copy_field(wcmi_ctx *ctx, const char *path, int lineno, const char *what, char *dst, size_t n,
                      const char *src, const char *const *allowed) {
  if (allowed && !one_of(src, allowed))
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s:%d: %s '%s' is not one of the known values", path, lineno, what, src);
  if (strlen(src) >= n) return wcmi_fail(ctx, WCMI_EFORMAT, "%s:%d: %s '%s' is too long", path, lineno, what, src);
  memcpy(dst, src, strlen(src) + 1);
  return WCMI_OK;
}

static int parse_line(wcmi_ctx *ctx, const char *path, int lineno, char *line, wcmi_paper_cell *c) {
  static const char *const DATASETS[] = {"mnist", "fashion-mnist", "svhn", "cifar10", NULL};
  static const char *const ENCODERS[] = {"dim", "worst-mi", "supervised", NULL};
  static const char *const HEADS[] = {"mlp", "linear", NULL};
  static const char *const TRAININGS[] = {"standard", "robust", "early-stopped", NULL};
  static const char *const METRICS[] = {"nat", "adv", NULL};
  char *f[PAPER_FIELDS + 1];
  int n = split_tabs(line, f, PAPER_FIELDS + 1);
  if (n != PAPER_FIELDS)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s:%d: expected %d tab-separated fields, got %d", path, lineno, PAPER_FIELDS,
                     n);
  int rc = copy_field(ctx, path, lineno, "dataset", c->dataset, sizeof c->dataset, f[0], DATASETS);
  if (!rc) rc = copy_field(ctx, path, lineno, "encoder", c->encoder, sizeof c->encoder, f[1], ENCODERS);
  if (!rc) rc = copy_field(ctx, path, lineno, "head", c->head, sizeof c->head, f[2], HEADS);
  if (!rc) rc = copy_field(ctx, path, lineno, "training", c->training, sizeof c->training, f[3], TRAININGS);
  if (!rc) rc = copy_field(ctx, path, lineno, "metric", c->metric, sizeof c->metric, f[4], METRICS);
  if (!rc) rc = copy_field(ctx, path, lineno, "source", c->source, sizeof c->source, f[6], NULL);
  if (rc) return rc;
  char *end = NULL;
  errno = 0;
  c->value = strtod(f[5], &end);
  if (!f[5][0] || *end || errno || !(c->value >= 0 && c->value <= 100))
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s:%d: value '%s' is not a percentage in [0, 100]", path, lineno, f[5]);
  return WCMI_OK;
}

static int same_cell(const wcmi_paper_cell *a, const wcmi_paper_cell *b) {
  return !strcmp(a->dataset, b->dataset) && !strcmp(a->encoder, b->encoder) && !strcmp(a->head, b->head) &&
         !strcmp(a->training, b->training) && !strcmp(a->metric, b->metric);
}

int wcmi_paper_results_load(wcmi_ctx *ctx, const char *path, wcmi_paper_results *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->path, sizeof out->path, "%s", path);
  char *text = NULL;
  size_t len = 0;
  if (!is_file(path))
    return wcmi_fail(ctx, WCMI_EIO, "%s: the published-numbers file is missing (set %s or --paper-results FILE)", path,
                     WCMI_PAPER_RESULTS_ENV);
  int rc = wcmi_read_file(ctx, path, PAPER_MAX_BYTES, &text, &len);
  if (rc) return rc;
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  out->cells = calloc(lines, sizeof *out->cells);
  if (!out->cells) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  if (!rc && memchr(text, 0, len)) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: holds a NUL byte (not a text file)", path);
  int lineno = 0, header = 0;
  for (char *p = text; !rc && p < text + len;) {
    char *nl = memchr(p, '\n', (size_t)(text + len - p));
    char *end = nl ? nl : text + len;
    *end = 0;
    if (end > p && end[-1] == '\r') end[-1] = 0;
    lineno++;
    if (p[0] && p[0] != '#') {
      if (!header) {
        header = 1;
        if (strcmp(p, "dataset\tencoder\thead\ttraining\tmetric\tvalue\tsource"))
          rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s:%d: expected the header line 'dataset<TAB>encoder<TAB>head<TAB>"
                         "training<TAB>metric<TAB>value<TAB>source'", path, lineno);
      } else {
        wcmi_paper_cell *c = &out->cells[out->n];
        rc = parse_line(ctx, path, lineno, p, c);
        for (int i = 0; !rc && i < out->n; i++)
          if (same_cell(&out->cells[i], c))
            rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s:%d: the cell %s / %s / %s / %s / %s is given twice", path, lineno,
                           c->dataset, c->encoder, c->head, c->training, c->metric);
        if (!rc) out->n++;
      }
    }
    p = end + 1;
  }
  if (!rc && !out->n) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: no published numbers in the file", path);
  free(text);
  if (rc) wcmi_paper_results_free(out);
  return rc;
}

void wcmi_paper_results_free(wcmi_paper_results *r) {
  free(r->cells);
  r->cells = NULL;
  r->n = 0;
}

double wcmi_paper_results_get(const wcmi_paper_results *r, const char *dataset, const char *encoder, const char *head,
                              const char *training, const char *metric) {
  for (int i = 0; r && i < r->n; i++) {
    const wcmi_paper_cell *c = &r->cells[i];
    if (!strcmp(c->dataset, dataset) && !strcmp(c->encoder, encoder) && !strcmp(c->head, head) &&
        !strcmp(c->training, training) && !strcmp(c->metric, metric))
      return c->value;
  }
  return NAN;
}

int wcmi_paper_results_has_row(const wcmi_paper_results *r, const char *dataset, const char *encoder,
                               const char *training) {
  for (int i = 0; r && i < r->n; i++)
    if (!strcmp(r->cells[i].dataset, dataset) && !strcmp(r->cells[i].encoder, encoder) &&
        !strcmp(r->cells[i].training, training))
      return 1;
  return 0;
}
