/* Internal to src/report/: the `wcmi reproduce` section of the HTML report (reproduce_html.c). */
#ifndef WCMI_REPORT_INTERNAL_H
#define WCMI_REPORT_INTERNAL_H

#include "wcmi/core.h"

#include <stdio.h>

/* Whether dir holds a reproduce.json (a `wcmi reproduce` output directory). */
int report_is_reproduce_dir(const char *dir);
/* The stage directories it lists (dir/<name>, in run order); free each and the array. */
int report_reproduce_stages(wcmi_ctx *ctx, const char *dir, char ***out, int *n);
/* The table of wcmi's numbers beside the published ones, and the encoders' MI. */
int report_reproduce_section(wcmi_ctx *ctx, FILE *f, const char *dir);

#endif
