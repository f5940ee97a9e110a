#include "harness.h"

#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int wt_failures_in_test;
static int passed, failed, skipped;
static int skip_current;

void wt_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "  FAIL %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  wt_failures_in_test++;
}

void wt_skip(const char *why) {
  skip_current = 1;
  printf("SKIPPED: %s\n", why);
}

void wt_run(const char *name, void (*fn)(void)) {
  wt_failures_in_test = 0;
  skip_current = 0;
  fprintf(stderr, "[ RUN  ] %s\n", name);
  fn();
  if (skip_current && !wt_failures_in_test) {
    skipped++;
    fprintf(stderr, "[ SKIP ] %s\n", name);
  } else if (wt_failures_in_test) {
    failed++;
    fprintf(stderr, "[ FAIL ] %s (%d checks failed)\n", name, wt_failures_in_test);
  } else {
    passed++;
    fprintf(stderr, "[  OK  ] %s\n", name);
  }
}

int wt_finish(void) {
  if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  else printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

const char *wt_tmpdir(void) {
  static char dir[512];
  if (!dir[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/wcmi-test-%d", base && *base ? base : "/tmp", (int)getpid());
    mkdir(dir, 0700);
  }
  return dir;
}
