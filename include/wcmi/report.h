/* wcmi reports: saliency maps from input gradients (wcmi/saliency.h computes them; PAPER.md
 * section 6), a small SVG chart writer and the self-contained HTML report over run directories. docs/report.md describes the report and the map normalization. */
#ifndef WCMI_REPORT_H
#define WCMI_REPORT_H

#include "wcmi/mi.h"
#include "wcmi/model.h"
#include "wcmi/saliency.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ================================ saliency maps ============================================= */
/* Per-image normalization of a gradient into a map in [0,1] (docs/report.md):
 *   a[p] = sum over channels of |grad[c, p]|;  map[p] = min(1, a[p] / q99)
 * with q99 the 99th percentile of a over the image's H*W pixels (nearest rank). An image whose q99
 * is 0 (e.g. a dead unit) falls back to the maximum, and to an all-zero map if that is 0 too.
 * grad (N, C, H, W) -> map (N, H, W). scratch: H*W floats. */
void wcmi_saliency_normalize(const float *grad, int N, int C, int H, int W, float *map, float *scratch);

/* The figure: row 0 the inputs, then one row of maps per model (maps: n_models x (N, H, W) in [0,1],
 * shown with a black-red-yellow-white colour ramp), each tile scaled up `scale` times, `pad` pixels
 * of white between and around tiles. RGB, (grid_h, grid_w, 3):
 *   grid_w = N * W * scale + (N + 1) * pad,  grid_h = (1 + n_models) * H * scale + (2 + n_models) * pad */
void wcmi_saliency_grid_size(int N, int H, int W, int n_models, int scale, int pad, int *grid_w, int *grid_h);
int wcmi_saliency_grid(wcmi_ctx *ctx, const float *x, int N, int C, int H, int W, const float *const *maps,
                       int n_models, int scale, int pad, uint8_t *out);
/* The colour ramp, v in [0,1] -> RGB. */
void wcmi_saliency_color(float v, uint8_t rgb[3]);

/* ================================ SVG charts =============================================== */
/* A small writer of self-contained SVG charts (no scripts, no external references). Every string
 * is XML-escaped. Axes have ticks at "nice" values, axis labels carry units. */
#define WCMI_SVG_MAX_SERIES 8

typedef struct wcmi_svg_series {
  const char *name;
  const double *x, *y; /* n points; non-finite values are skipped (a gap) */
  int n;
} wcmi_svg_series;

typedef struct wcmi_svg_chart {
  const char *title, *xlabel, *ylabel;
  int width, height;         /* pixels; 0 -> 480 x 280 */
  int y_from_zero;           /* include 0 in the y range */
  int x_integer;             /* x ticks at whole numbers only (epochs) */
  double y_min, y_max;       /* fixed y range when y_min < y_max (e.g. 0..100 for %) */
  double x_min, x_max;       /* fixed x range when x_min < x_max */
  int diagonal;              /* scatter: draw y = x */
  const char *const *labels; /* scatter: one label per point of series 0 (may be NULL) */
} wcmi_svg_chart;

/* Writes one <svg> element to f. Line chart: series as polylines with markers and a legend. */
int wcmi_svg_line_chart(FILE *f, const wcmi_svg_chart *c, const wcmi_svg_series *s, int n_series);
/* Scatter of series (points only), legend when more than one series. */
int wcmi_svg_scatter(FILE *f, const wcmi_svg_chart *c, const wcmi_svg_series *s, int n_series);
/* Vertical bar chart: n bars with names and values, grouped into n_groups colours by group[i]
 * (group may be NULL) with group_names for the legend. */
int wcmi_svg_bar_chart(FILE *f, const wcmi_svg_chart *c, const char *const *names, const double *values, int n,
                       const int *group, const char *const *group_names, int n_groups);
/* Writes s with &, <, >, " and ' escaped (for both text and attribute values). */
void wcmi_xml_escape(FILE *f, const char *s);
/* "Nice" tick step for a range: 1, 2 or 5 times a power of ten, giving about `target` ticks. */
double wcmi_svg_nice_step(double range, int target);

/* ================================ HTML report =============================================== */
typedef struct wcmi_report_cfg {
  const char *const *runs; /* run directories */
  int n_runs;
  const char *const *saliency; /* extra PNG files to embed */
  int n_saliency;
  const char *title; /* NULL: "wcmi report" */
} wcmi_report_cfg;

/* Writes the self-contained HTML report to path (atomically). Missing or partial runs get a note in
 * the page; a file that exists but is malformed (bad JSON, not a PNG) fails with one line naming it. */
int wcmi_report_write(wcmi_ctx *ctx, const wcmi_report_cfg *cfg, const char *path);

#ifdef __cplusplus
}
#endif
#endif
