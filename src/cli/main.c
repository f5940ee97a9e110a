/* wcmi command-line tool: dispatches to one file per subcommand. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const wcmi_cli_command *find_command(const char *name) {
  for (const wcmi_cli_command *c = wcmi_cli_commands; c->name; c++)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f, "usage: wcmi <command> [options]   (wcmi <command> --help for details)\n\ncommands:\n");
  for (const wcmi_cli_command *c = wcmi_cli_commands; c->name; c++)
    fprintf(f, "  %-18s %s\n", c->name, c->summary);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("wcmi %s\n", WCMI_VERSION);
    return 0;
  }
  const wcmi_cli_command *c = find_command(argv[1]);
  if (!c) {
    fprintf(stderr, "wcmi: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
  }
  return c->run(argc - 1, argv + 1);
}
