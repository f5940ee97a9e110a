/* wcmi report: one self-contained HTML page over run directories (src/report/html.c). */
#include "cli/cli.h"
#include "wcmi/report.h"

#include <string.h>

static const char *SYNOPSIS = "RUN_DIR... -o report.html [--saliency FILE.png ...] [--title TEXT]";
static const char *DESCRIPTION =
    "Writes one HTML file with no external references (inline SVG charts and inline PNG images) showing, per run: "
    "the accuracy table, MI / RV / Fano-bound bars, per-neuron histograms, one training curve per numeric field of "
    "metrics.jsonl, saliency*.png images of the run directory, the summary and config.json; and across runs an "
    "overview table and the Fano bound against the measured adversarial accuracy (the paper's Figure 2). "
    "See docs/report.md.";

int wcmi_cmd_report(int argc, char **argv) {
  const char *out = NULL, *title = NULL;
  wcmi_cli_strlist runs, images;
  memset(&runs, 0, sizeof runs);
  memset(&images, 0, sizeof images);
  wcmi_opt opts[] = {
      {"-o", WCMI_OPT_STR, &out, "HTML", "output file (required)", 0},
      {"--saliency", WCMI_OPT_MULTI, &images, "PNG", "extra PNG to embed (repeatable)", 0},
      {"--title", WCMI_OPT_STR, &title, "TEXT", "page title (default: wcmi report)", 0},
      {0}};
  WCMI_CLI_PARSE("report", SYNOPSIS, DESCRIPTION, opts, argc, argv, &runs);
  if (!out) {
    fprintf(stderr, "wcmi report: -o FILE is required (see wcmi report --help)\n");
    return 2;
  }
  if (!runs.n && !images.n) {
    fprintf(stderr, "wcmi report: give at least one RUN_DIR (see wcmi report --help)\n");
    return 2;
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_report_cfg cfg = {runs.v, runs.n, images.v, images.n, title};
  if (wcmi_report_write(&ctx, &cfg, out)) {
    fprintf(stderr, "wcmi report: %s\n", wcmi_errmsg(&ctx));
    return 1;
  }
  printf("{\"output\": \"");
  for (const char *s = out; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    if ((unsigned char)*s >= 0x20) putchar(*s);
  }
  printf("\", \"runs\": %d, \"images\": %d}\n", runs.n, images.n);
  return 0;
}
