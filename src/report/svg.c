/* A small SVG chart writer: line charts (training curves), scatters (Fano bound vs adversarial
 * accuracy) and bar charts (RV, Fano bounds, histograms). Output is plain inline SVG: no scripts, no
 * external references, fonts from the viewer's generic sans-serif family. */
#include "wcmi/report.h"

#include <math.h>
#include <string.h>

static const char *const PALETTE[WCMI_SVG_MAX_SERIES] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

void wcmi_xml_escape(FILE *f, const char *s) {
  if (!s) return;
  for (; *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default:
      /* Control characters are not allowed in XML 1.0 text; show them as '?'. */
      if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') fputc('?', f);
      else fputc(*s, f);
    }
  }
}

double wcmi_svg_nice_step(double range, int target) {
  if (!(range > 0) || !isfinite(range)) return 1.0;
  if (target < 1) target = 1;
  double raw = range / target, mag = pow(10.0, floor(log10(raw))), norm = raw / mag;
  double m = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return m * mag;
}

/* ---- axes ---------------------------------------------------------------------------------- */
typedef struct axis {
  double lo, hi, step;
} axis;

static void axis_fit(axis *a, double lo, double hi, int target, int integer, int fixed) {
  if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
  if (!fixed && hi - lo <= 1e-12 * fmax(1.0, fabs(hi))) {
    double d = fabs(lo) > 0 ? 0.1 * fabs(lo) : 1.0;
    if (integer) d = fmax(d, 1.0);
    lo -= d, hi += d;
  }
  a->step = wcmi_svg_nice_step(hi - lo, target);
  if (integer && a->step < 1) a->step = 1;
  if (fixed) {
    a->lo = lo, a->hi = hi;
  } else {
    a->lo = floor(lo / a->step + 1e-9) * a->step;
    a->hi = ceil(hi / a->step - 1e-9) * a->step;
  }
}

static void fmt_tick(char *buf, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0; /* no "-0" or "1e-17" at the origin */
  double av = fabs(v);
  if ((av >= 1e6 || (av > 0 && av < 1e-3)) && step < 1e6) snprintf(buf, n, "%.3g", v);
  else {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    snprintf(buf, n, "%.*f", dec, v);
  }
}

static void fmt_value(char *buf, size_t n, double v) {
  if (!isfinite(v)) snprintf(buf, n, "n/a");
  else if (fabs(v) >= 100 && fabs(v) < 1e6) snprintf(buf, n, "%.1f", v);
  else snprintf(buf, n, "%.3g", v);
}

/* Plot frame: the pixel box and the two axes. */
typedef struct frame {
  int W, H;
  double x0, x1, y0, y1; /* plot box in pixels: left, right, top, bottom */
  axis ax, ay;
} frame;

static double px(const frame *fr, double x) { return fr->x0 + (x - fr->ax.lo) / (fr->ax.hi - fr->ax.lo) * (fr->x1 - fr->x0); }
static double py(const frame *fr, double y) { return fr->y1 - (y - fr->ay.lo) / (fr->ay.hi - fr->ay.lo) * (fr->y1 - fr->y0); }

static void open_svg(FILE *f, const wcmi_svg_chart *c, int W, int H) {
  fprintf(f, "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", W, H, W, H);
  wcmi_xml_escape(f, c->title);
  fprintf(f, "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H);
  fputs("<text x=\"10\" y=\"18\" font-size=\"13\" font-weight=\"bold\" fill=\"#222\">", f);
  wcmi_xml_escape(f, c->title);
  fputs("</text>\n", f);
}

/* Legend entries left to right, wrapping onto a new row of 15 px where the next entry would pass
 * xmax (long run names would otherwise run off the chart). */
static double legend_entry_width(const char *name) { return 24 + 6.2 * (double)(name ? strlen(name) : 0); }

static int legend_rows(const char *const *names, int n, double x0, double xmax) {
  int rows = n > 0;
  double x = x0;
  for (int i = 0; i < n; i++) {
    const double w = legend_entry_width(names[i]);
    if (i && x + w - 24 > xmax) rows++, x = x0;
    x += w;
  }
  return rows;
}

static void legend(FILE *f, const char *const *names, int n, double x0, double y, double xmax) {
  double x = x0;
  for (int i = 0; i < n; i++) {
    const double w = legend_entry_width(names[i]);
    if (i && x + w - 24 > xmax) x = x0, y += 15;
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>", x, y - 9, PALETTE[i % WCMI_SVG_MAX_SERIES]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#333\">", x + 14, y);
    wcmi_xml_escape(f, names[i]);
    fputs("</text>\n", f);
    x += w;
  }
}

static void draw_axes(FILE *f, const frame *fr, const wcmi_svg_chart *c, int x_ticks) {
  char buf[64];
  /* y grid and tick labels */
  for (int k = 0;; k++) {
    double v = fr->ay.lo + k * fr->ay.step;
    if (v > fr->ay.hi + 1e-9 * fr->ay.step || k > 40) break;
    double y = py(fr, v);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", fr->x0, y, fr->x1, y);
    fmt_tick(buf, sizeof buf, v, fr->ay.step);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#444\">%s</text>\n", fr->x0 - 5, y + 4, buf);
  }
  if (x_ticks)
    for (int k = 0;; k++) {
      double v = fr->ax.lo + k * fr->ax.step;
      if (v > fr->ax.hi + 1e-9 * fr->ax.step || k > 40) break;
      double x = px(fr, v);
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>", x, fr->y1, x, fr->y1 + 4);
      fmt_tick(buf, sizeof buf, v, fr->ax.step);
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#444\">%s</text>\n", x, fr->y1 + 16, buf);
    }
  fprintf(f, "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#444\"/>\n", fr->x0, fr->y0, fr->y1, fr->x1);
  if (c->xlabel && x_ticks) {
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#222\">", (fr->x0 + fr->x1) / 2, fr->H - 6);
    wcmi_xml_escape(f, c->xlabel);
    fputs("</text>\n", f);
  }
  if (c->ylabel) {
    double ym = (fr->y0 + fr->y1) / 2;
    fprintf(f, "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\" fill=\"#222\">", ym, ym);
    wcmi_xml_escape(f, c->ylabel);
    fputs("</text>\n", f);
  }
}

static void chart_size(const wcmi_svg_chart *c, int *W, int *H) {
  *W = c->width > 0 ? c->width : 480;
  *H = c->height > 0 ? c->height : 280;
}

/* Data ranges over all finite points. Returns the number of finite points. */
static int data_range(const wcmi_svg_series *s, int n_series, double *xlo, double *xhi, double *ylo, double *yhi) {
  int count = 0;
  *xlo = *ylo = INFINITY;
  *xhi = *yhi = -INFINITY;
  for (int k = 0; k < n_series; k++)
    for (int i = 0; i < s[k].n; i++) {
      double x = s[k].x[i], y = s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      count++;
      *xlo = fmin(*xlo, x), *xhi = fmax(*xhi, x), *ylo = fmin(*ylo, y), *yhi = fmax(*yhi, y);
    }
  return count;
}

static void series_names(const wcmi_svg_series *s, int n_series, const char **names) {
  for (int k = 0; k < n_series; k++) names[k] = s[k].name ? s[k].name : "";
}

/* The plot area; legend_rows rows of legend (0: none) above it. */
static void fit_frame(frame *fr, const wcmi_svg_chart *c, const wcmi_svg_series *s, int n_series, int legend_rows) {
  chart_size(c, &fr->W, &fr->H);
  double xlo, xhi, ylo, yhi;
  if (!data_range(s, n_series, &xlo, &xhi, &ylo, &yhi)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  if (c->y_from_zero) ylo = fmin(ylo, 0), yhi = fmax(yhi, 0);
  int fx = c->x_min < c->x_max, fy = c->y_min < c->y_max;
  if (fx) xlo = c->x_min, xhi = c->x_max;
  if (fy) ylo = c->y_min, yhi = c->y_max;
  fr->x0 = 64, fr->x1 = fr->W - 16, fr->y0 = 30 + 15 * legend_rows + (legend_rows ? 1 : 0), fr->y1 = fr->H - 40;
  axis_fit(&fr->ax, xlo, xhi, (int)((fr->x1 - fr->x0) / 60), c->x_integer, fx);
  axis_fit(&fr->ay, ylo, yhi, (int)((fr->y1 - fr->y0) / 40), 0, fy);
}

static int check_series(const wcmi_svg_series *s, int n_series) {
  if (n_series < 0 || n_series > WCMI_SVG_MAX_SERIES || (n_series && !s)) return WCMI_EINVAL;
  for (int k = 0; k < n_series; k++)
    if (s[k].n < 0 || (s[k].n && (!s[k].x || !s[k].y))) return WCMI_EINVAL;
  return WCMI_OK;
}

static void series_legend(FILE *f, const frame *fr, const wcmi_svg_series *s, int n_series) {
  const char *names[WCMI_SVG_MAX_SERIES];
  series_names(s, n_series, names);
  legend(f, names, n_series, fr->x0, 36, fr->x1);
}

/* Rows of legend a chart of these series draws (none for a single series). */
static int series_legend_rows(const wcmi_svg_chart *c, const wcmi_svg_series *s, int n_series) {
  if (n_series <= 1) return 0;
  int W, H;
  chart_size(c, &W, &H);
  const char *names[WCMI_SVG_MAX_SERIES];
  series_names(s, n_series, names);
  return legend_rows(names, n_series, 64, W - 16);
}

static void point_title(FILE *f, const wcmi_svg_chart *c, const char *label, double x, double y) {
  char bx[48], by[48];
  fmt_value(bx, sizeof bx, x);
  fmt_value(by, sizeof by, y);
  fputs("<title>", f);
  if (label) wcmi_xml_escape(f, label), fputs(": ", f);
  wcmi_xml_escape(f, c->xlabel ? c->xlabel : "x");
  fprintf(f, " %s, ", bx);
  wcmi_xml_escape(f, c->ylabel ? c->ylabel : "y");
  fprintf(f, " %s</title>", by);
}

int wcmi_svg_line_chart(FILE *f, const wcmi_svg_chart *c, const wcmi_svg_series *s, int n_series) {
  if (!f || !c || check_series(s, n_series)) return WCMI_EINVAL;
  frame fr;
  fit_frame(&fr, c, s, n_series, series_legend_rows(c, s, n_series));
  open_svg(f, c, fr.W, fr.H);
  draw_axes(f, &fr, c, 1);
  if (n_series > 1) series_legend(f, &fr, s, n_series);
  for (int k = 0; k < n_series; k++) {
    const char *col = PALETTE[k % WCMI_SVG_MAX_SERIES];
    fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" d=\"", col);
    int pen = 0;
    for (int i = 0; i < s[k].n; i++) {
      double x = s[k].x[i], y = s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) {
        pen = 0; /* a gap */
        continue;
      }
      fprintf(f, "%s%.1f %.1f", pen ? "L" : "M", px(&fr, x), py(&fr, y));
      pen = 1;
    }
    fputs("\"/>\n", f);
    if (s[k].n <= 60)
      for (int i = 0; i < s[k].n; i++) {
        double x = s[k].x[i], y = s[k].y[i];
        if (!isfinite(x) || !isfinite(y)) continue;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\" fill=\"%s\">", px(&fr, x), py(&fr, y), col);
        point_title(f, c, s[k].name, x, y);
        fputs("</circle>\n", f);
      }
  }
  fputs("</svg>\n", f);
  return ferror(f) ? WCMI_EIO : WCMI_OK;
}

int wcmi_svg_scatter(FILE *f, const wcmi_svg_chart *c, const wcmi_svg_series *s, int n_series) {
  if (!f || !c || check_series(s, n_series)) return WCMI_EINVAL;
  frame fr;
  fit_frame(&fr, c, s, n_series, series_legend_rows(c, s, n_series));
  open_svg(f, c, fr.W, fr.H);
  draw_axes(f, &fr, c, 1);
  if (n_series > 1) series_legend(f, &fr, s, n_series);
  if (c->diagonal) {
    double t0 = fmax(fr.ax.lo, fr.ay.lo), t1 = fmin(fr.ax.hi, fr.ay.hi);
    if (t0 < t1) {
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"5 4\"/>",
              px(&fr, t0), py(&fr, t0), px(&fr, t1), py(&fr, t1));
      double tl = t0 + 0.9 * (t1 - t0);
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"start\" fill=\"#888\">y = x</text>\n", px(&fr, tl) + 6,
              py(&fr, tl) + 12);
    }
  }
  for (int k = 0; k < n_series; k++)
    for (int i = 0; i < s[k].n; i++) {
      double x = s[k].x[i], y = s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      const char *label = k == 0 && c->labels ? c->labels[i] : NULL;
      /* Series after the first are rings, so points at the same place stay visible. */
      if (k == 0)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" fill-opacity=\"0.85\" stroke=\"#fff\">",
                px(&fr, x), py(&fr, y), PALETTE[0]);
      else
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"8\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\">",
                px(&fr, x), py(&fr, y), PALETTE[k % WCMI_SVG_MAX_SERIES]);
      point_title(f, c, label ? label : s[k].name, x, y);
      fputs("</circle>\n", f);
      if (label && s[0].n <= 12) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#333\">", px(&fr, x) + 7, py(&fr, y) - 6);
        wcmi_xml_escape(f, label);
        fputs("</text>\n", f);
      }
    }
  fputs("</svg>\n", f);
  return ferror(f) ? WCMI_EIO : WCMI_OK;
}

int wcmi_svg_bar_chart(FILE *f, const wcmi_svg_chart *c, const char *const *names, const double *values, int n,
                       const int *group, const char *const *group_names, int n_groups) {
  if (!f || !c || n < 0 || (n && (!names || !values)) || n_groups > WCMI_SVG_MAX_SERIES) return WCMI_EINVAL;
  frame fr;
  chart_size(c, &fr.W, &fr.H);
  double lo = 0, hi = 0;
  for (int i = 0; i < n; i++)
    if (isfinite(values[i])) lo = fmin(lo, values[i]), hi = fmax(hi, values[i]);
  /* headroom for the value printed above the tallest bar */
  hi += 0.08 * (hi - lo);
  if (c->y_min < c->y_max) lo = c->y_min, hi = c->y_max;
  if (hi - lo <= 0) hi = lo + 1;
  /* Long category names are drawn at an angle, which needs a deeper bottom margin. */
  size_t longest = 0;
  for (int i = 0; i < n; i++) longest = names[i] && strlen(names[i]) > longest ? strlen(names[i]) : longest;
  const int rows = n_groups > 1 && group_names ? legend_rows(group_names, n_groups, 64, fr.W - 16) : 0;
  fr.x0 = 64, fr.x1 = fr.W - 16, fr.y0 = 30 + 15 * rows + (rows ? 1 : 0);
  const double slot = n ? (fr.x1 - fr.x0) / n : 1;
  /* Names that do not fit under their bar alternate between two lines; names too long even for
   * that are drawn at an angle. */
  const double need = (double)longest * 6.0;
  const int stagger = need > slot - 4 && need <= 2 * slot - 8, tilt = need > 2 * slot - 8;
  fr.y1 = fr.H - (tilt ? 18 + 4.5 * (double)(longest > 24 ? 24 : longest) : stagger ? 52 : 40);
  fr.ax = (axis){0, 1, 1};
  axis_fit(&fr.ay, lo, hi, (int)((fr.y1 - fr.y0) / 40), 0, c->y_min < c->y_max);
  open_svg(f, c, fr.W, fr.H);
  draw_axes(f, &fr, c, 0);
  if (rows) legend(f, group_names, n_groups, fr.x0, 36, fr.x1);
  char buf[48];
  for (int i = 0; i < n; i++) {
    double v = isfinite(values[i]) ? values[i] : 0, cx = fr.x0 + slot * (i + 0.5), w = fmin(slot * 0.7, 60);
    /* the bar spans from 0 (or the nearest axis end) to v, both clamped into the axis range */
    double base = fmin(fmax(0.0, fr.ay.lo), fr.ay.hi), top = fmin(fmax(v, fr.ay.lo), fr.ay.hi);
    double ya = py(&fr, fmax(base, top)), yb = py(&fr, fmin(base, top));
    const char *col = PALETTE[(group ? group[i] : 0) % WCMI_SVG_MAX_SERIES];
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">", cx - w / 2, ya, w,
            fmax(yb - ya, 0.5), col);
    fmt_value(buf, sizeof buf, values[i]);
    fputs("<title>", f);
    wcmi_xml_escape(f, names[i]);
    fprintf(f, ": %s</title></rect>\n", buf);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#222\">%s</text>", cx,
            v >= 0 ? ya - 4 : yb + 12, buf);
    if (tilt)
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" transform=\"rotate(-35 %.1f %.1f)\" fill=\"#444\">",
              cx + 3, fr.y1 + 12, cx + 3, fr.y1 + 12);
    else
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#444\">", cx,
              fr.y1 + 16 + (stagger && i % 2 ? 13 : 0));
    wcmi_xml_escape(f, names[i]);
    fputs("</text>\n", f);
  }
  fputs("</svg>\n", f);
  return ferror(f) ? WCMI_EIO : WCMI_OK;
}
