/* wcmi report: placeholder until src/report/html.c lands. */
#include "cli/cli.h"

int wcmi_cmd_report(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "wcmi report: not built yet\n");
  return 1;
}
