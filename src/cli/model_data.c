/* --data from the model file's metadata (see model_data.h). */
#include "cli/model_data.h"
#include "wcmi/io.h"

#include <stdio.h>
#include <string.h>

/* The value of option `name` in argv ("--name VALUE" or "--name=VALUE"), or NULL. *present is
 * set when the option appears at all. */
static const char *find_option(int argc, char **argv, const char *name, int *present) {
  size_t len = strlen(name);
  const char *v = NULL;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], name, len)) continue;
    if (argv[i][len] == '=') v = argv[i] + len + 1, *present = 1;
    else if (argv[i][len] == '\0') v = i + 1 < argc ? argv[i + 1] : NULL, *present = 1;
  }
  return v;
}

int model_data_argv_init(model_data_argv *out, const char *cmd, int argc, char **argv) {
  memset(out, 0, sizeof *out);
  if (argc > MODEL_DATA_MAX_ARGS) {
    fprintf(stderr, "wcmi %s: too many arguments (%d)\n", cmd, argc);
    return 2;
  }
  for (int i = 0; i < argc; i++) out->argv[i] = argv[i];
  out->argc = argc;
  int has_model = 0, has_data = 0, has_resume = 0, has_help = 0;
  const char *model = find_option(argc, argv, "--model", &has_model);
  find_option(argc, argv, "--data", &has_data);
  find_option(argc, argv, "--resume", &has_resume);
  find_option(argc, argv, "--help", &has_help);
  if (!model || has_data || has_resume || has_help) return 0;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_st *st = NULL;
  if (wcmi_st_open_header(&ctx, model, &st)) return 0;
  const char *ds = wcmi_st_meta(st, "dataset");
  if (ds && strlen(ds) < sizeof out->dataset) {
    snprintf(out->dataset, sizeof out->dataset, "%s", ds);
    out->argv[out->argc++] = (char *)"--data";
    out->argv[out->argc++] = out->dataset;
  }
  wcmi_st_close(st);
  return 0;
}
