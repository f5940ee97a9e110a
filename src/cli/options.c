/* Declarative option parsing: one table per command gives --help and validation for free. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void wcmi_cli_print_option(FILE *f, const wcmi_opt *o) {
  char left[64];
  snprintf(left, sizeof left, "%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
  fprintf(f, "  %-24s %s\n", left, o->help ? o->help : "");
}

void wcmi_cli_print_help(FILE *f, const char *command, const char *synopsis, const char *description,
                         const wcmi_opt *opts) {
  fprintf(f, "usage: wcmi %s %s\n\n", command, synopsis ? synopsis : "[options]");
  if (description) fprintf(f, "%s\n\n", description);
  fprintf(f, "options:\n");
  for (const wcmi_opt *o = opts; o->name; o++) wcmi_cli_print_option(f, o);
  fprintf(f, "  %-24s %s\n", "-h, --help", "show this help and exit");
}

static int parse_value(const char *command, wcmi_opt *o, const char *v) {
  char *end = NULL;
  errno = 0;
  switch (o->kind) {
  case WCMI_OPT_STR:
    *(const char **)o->dest = v;
    return 0;
  case WCMI_OPT_MULTI: {
    wcmi_cli_strlist *l = o->dest;
    if (l->n >= WCMI_CLI_MAX_MULTI) {
      fprintf(stderr, "wcmi %s: %s given more than %d times\n", command, o->name, WCMI_CLI_MAX_MULTI);
      return 2;
    }
    l->v[l->n++] = v;
    return 0;
  }
  case WCMI_OPT_INT: {
    long x = strtol(v, &end, 10);
    if (errno || !end || *end || end == v || x < -2147483647L || x > 2147483647L) break;
    *(int *)o->dest = (int)x;
    return 0;
  }
  case WCMI_OPT_I64: {
    long long x = strtoll(v, &end, 10);
    if (errno || !end || *end || end == v) break;
    *(long long *)o->dest = x;
    return 0;
  }
  case WCMI_OPT_FLOAT: {
    /* Accept fractions such as 8/255, the way papers write epsilons. */
    double x = strtod(v, &end);
    if (end && *end == '/' && end != v) {
      char *end2 = NULL;
      double d = strtod(end + 1, &end2);
      if (!end2 || *end2 || d == 0) break;
      x /= d;
      end = end2;
    }
    if (errno || !end || *end || end == v || !isfinite(x)) break;
    *(double *)o->dest = x;
    return 0;
  }
  case WCMI_OPT_FLAG:
    return 0;
  }
  fprintf(stderr, "wcmi %s: invalid value '%s' for %s\n", command, v, o->name);
  return 2;
}

int wcmi_cli_parse(const char *command, const char *synopsis, const char *description, wcmi_opt *opts,
                   int argc, char **argv, wcmi_cli_strlist *positional) {
  return wcmi_cli_parse_with_help(command, synopsis, description, opts, argc, argv, positional, NULL, NULL);
}

int wcmi_cli_parse_with_help(const char *command, const char *synopsis, const char *description, wcmi_opt *opts,
                             int argc, char **argv, wcmi_cli_strlist *positional, wcmi_cli_help_fn help, void *arg) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      if (help) help(stdout, arg);
      else wcmi_cli_print_help(stdout, command, synopsis, description, opts);
      return -1;
    }
    if (a[0] != '-' || a[1] == '\0') {
      if (positional && positional->n < WCMI_CLI_MAX_MULTI) {
        positional->v[positional->n++] = a;
        continue;
      }
      fprintf(stderr, "wcmi %s: unexpected argument '%s' (see wcmi %s --help)\n", command, a, command);
      return 2;
    }
    /* --name=value or --name value */
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    wcmi_opt *o = NULL;
    for (wcmi_opt *p = opts; p->name; p++)
      if (strlen(p->name) == len && !strncmp(p->name, a, len)) o = p;
    if (!o) {
      fprintf(stderr, "wcmi %s: unknown option '%.*s' (see wcmi %s --help)\n", command, (int)len, a, command);
      return 2;
    }
    o->seen = 1;
    if (o->kind == WCMI_OPT_FLAG) {
      if (eq) {
        fprintf(stderr, "wcmi %s: %s takes no value\n", command, o->name);
        return 2;
      }
      *(int *)o->dest = 1;
      continue;
    }
    const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!v) {
      fprintf(stderr, "wcmi %s: %s needs a value (%s)\n", command, o->name, o->metavar ? o->metavar : "VALUE");
      return 2;
    }
    int rc = parse_value(command, o, v);
    if (rc) return rc;
  }
  return 0;
}

int wcmi_cli_given(const wcmi_opt *opts, const char *name) {
  for (const wcmi_opt *o = opts; o->name; o++)
    if (!strcmp(o->name, name)) return o->seen;
  return 0;
}
