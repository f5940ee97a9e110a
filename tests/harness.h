/* A minimal test harness: each test_*.c defines test functions and a main that runs them with
 * RUN(test_fn). Every check prints what it compared and its tolerance on failure, and the program
 * ends with the plain line "N passed, N failed" and a non-zero exit if any failed. */
#ifndef WCMI_TEST_HARNESS_H
#define WCMI_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

extern int wt_failures_in_test;
void wt_run(const char *name, void (*fn)(void));
int wt_finish(void);
/* Marks the running test as skipped (counted and printed as such, never as passed). */
void wt_skip(const char *why);
void wt_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Directory for scratch files of this test program (created on first use). */
const char *wt_tmpdir(void);

#define RUN(fn) wt_run(#fn, fn)

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) wt_fail(__FILE__, __LINE__, "check failed: %s", #cond); \
  } while (0)

#define CHECK_MSG(cond, ...)                              \
  do {                                                    \
    if (!(cond)) wt_fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

/* |a - b| <= atol + rtol * |b| */
#define CHECK_CLOSE(a, b, atol, rtol)                                                                 \
  do {                                                                                                \
    double wt_a = (double)(a), wt_b = (double)(b);                                                    \
    if (!(fabs(wt_a - wt_b) <= (atol) + (rtol) * fabs(wt_b)))                                         \
      wt_fail(__FILE__, __LINE__, "%s = %.9g vs %s = %.9g (atol %g, rtol %g)", #a, wt_a, #b, wt_b,    \
              (double)(atol), (double)(rtol));                                                        \
  } while (0)

#define CHECK_OK(ctx, expr)                                                                  \
  do {                                                                                       \
    int wt_rc = (expr);                                                                      \
    if (wt_rc != 0) wt_fail(__FILE__, __LINE__, "%s returned %d: %s", #expr, wt_rc, (ctx)->msg); \
  } while (0)

#endif
