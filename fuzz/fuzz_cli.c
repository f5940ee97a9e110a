/* libFuzzer target for the command line: the option table parser (every kind of option, flags,
 * --name=value, positionals) and the task commands' full option handling (profiles, ranges,
 * --resume reading config.json, --threads). The input is split at NUL or newline into at most 40
 * arguments. Run with -close_fd_mask=3: the parsers print usage errors and --help. */
#include "cli/cli.h"
#include "cli/task_cli.h"
#include "wcmi/io.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 40

static void table_parse(int argc, char **argv) {
  const char *s = NULL;
  int i = 0, flag = 0;
  long long l = 0;
  double d = 0;
  wcmi_cli_strlist multi = {0}, pos = {0};
  wcmi_opt opts[] = {{"--str", WCMI_OPT_STR, &s, "S", "a string", 0},
                     {"--int", WCMI_OPT_INT, &i, "N", "an int", 0},
                     {"--i64", WCMI_OPT_I64, &l, "N", "an int64", 0},
                     {"--float", WCMI_OPT_FLOAT, &d, "X", "a float or fraction", 0},
                     {"--flag", WCMI_OPT_FLAG, &flag, NULL, "a flag", 0},
                     {"--multi", WCMI_OPT_MULTI, &multi, "M", "repeatable", 0},
                     {0}};
  int rc = wcmi_cli_parse("fuzz", NULL, NULL, opts, argc, argv, argc % 2 ? &pos : NULL);
  if (rc == 0 && (multi.n > WCMI_CLI_MAX_MULTI || pos.n > WCMI_CLI_MAX_MULTI)) __builtin_trap();
}

static void task_parse(int argc, char **argv) {
  /* Every group of settings, so that every field of the table is parsed and applied. */
  task_cli tc;
  int rc = task_cli_parse(&tc, "train-encoder", ~0u, NULL, NULL, NULL, argc, argv);
  if (rc == 0 && wcmi_task_cfg_check(&tc.ctx, &tc.cfg) != WCMI_OK) __builtin_trap(); /* parsed means valid */
  wcmi_json_free(tc.resume_cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  char *argv[MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = (char *)"wcmi";
  char *p = buf;
  /* strcspn also stops at a NUL byte of the input, which therefore ends an argument too. */
  while (argc < MAX_ARGS) {
    argv[argc++] = p;
    char *end = p + strcspn(p, "\n");
    if (end >= buf + size) break;
    *end = '\0';
    p = end + 1;
  }
  argv[argc] = NULL;
  table_parse(argc, argv);
  task_parse(argc, argv);
  free(buf);
  return 0;
}
