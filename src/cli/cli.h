/* Shared pieces of the command-line tool: the command table and a declarative option parser.
 * Exit codes: 0 success, 1 runtime failure (bad file, numeric failure), 2 usage error. */
#ifndef WCMI_CLI_H
#define WCMI_CLI_H

#include <stdio.h>

typedef struct wcmi_cli_command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv); /* argv[0] is the command name */
} wcmi_cli_command;

extern const wcmi_cli_command wcmi_cli_commands[]; /* terminated by {NULL} */

typedef enum {
  WCMI_OPT_STR,   /* const char **dest */
  WCMI_OPT_INT,   /* int *dest */
  WCMI_OPT_I64,   /* long long *dest */
  WCMI_OPT_FLOAT, /* double *dest */
  WCMI_OPT_FLAG,  /* int *dest, set to 1 */
  WCMI_OPT_MULTI, /* wcmi_cli_strlist *dest: repeatable string */
} wcmi_opt_kind;

#define WCMI_CLI_MAX_MULTI 16
typedef struct wcmi_cli_strlist {
  int n;
  const char *v[WCMI_CLI_MAX_MULTI];
} wcmi_cli_strlist;

typedef struct wcmi_opt {
  const char *name; /* "--eps" */
  wcmi_opt_kind kind;
  void *dest;
  const char *metavar; /* "EPS"; NULL for flags */
  const char *help;
  int seen; /* set by the parser when given on the command line */
} wcmi_opt;

/* Parses argv[1..] against opts (terminated by {NULL}). Positional arguments are rejected unless
 * positional != NULL, in which case they are collected there.
 * Returns 0 to continue, -1 after printing --help (the command then exits 0), or 2 on a usage
 * error (message already printed on stderr). Use WCMI_CLI_PARSE to get that handling. */
int wcmi_cli_parse(const char *command, const char *synopsis, const char *description, wcmi_opt *opts,
                   int argc, char **argv, wcmi_cli_strlist *positional);
#define WCMI_CLI_PARSE(cmd, syn, desc, opts, argc, argv, pos)                  \
  do {                                                                     \
    int wcmi_prc = wcmi_cli_parse(cmd, syn, desc, opts, argc, argv, pos); \
    if (wcmi_prc) return wcmi_prc < 0 ? 0 : wcmi_prc;                     \
  } while (0)

/* The same, with `help(f, arg)` printing the help instead of wcmi_cli_print_help (NULL: that). */
typedef void (*wcmi_cli_help_fn)(FILE *f, void *arg);
int wcmi_cli_parse_with_help(const char *command, const char *synopsis, const char *description, wcmi_opt *opts,
                             int argc, char **argv, wcmi_cli_strlist *positional, wcmi_cli_help_fn help, void *arg);

/* Whether an option was given explicitly (by name). */
int wcmi_cli_given(const wcmi_opt *opts, const char *name);
void wcmi_cli_print_help(FILE *f, const char *command, const char *synopsis, const char *description,
                         const wcmi_opt *opts);
/* One option's line of --help. */
void wcmi_cli_print_option(FILE *f, const wcmi_opt *o);

#endif
