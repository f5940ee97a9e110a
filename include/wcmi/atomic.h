/* wcmi files: atomic writes (a crash leaves the old file or the complete new one, never a torn
 * one), mkdir -p, and bounded whole-file reads. Every error is one line naming the file. */
#ifndef WCMI_ATOMIC_H
#define WCMI_ATOMIC_H

#include "wcmi/core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes to "<path>.tmp.<pid>", then fflush + fsync(file), rename over path, fsync(directory).
 * On any failure the temporary is removed and the error names the file. */
int wcmi_atomic_write(wcmi_ctx *ctx, const char *path, const void *bytes, size_t n);

/* Streaming variant for large files: open, write any number of parts, then commit or abort.
 * After a failed write the handle is still open: call wcmi_atomic_abort (commit refuses it). */
typedef struct wcmi_atomic_file {
  FILE *f;
  char *path; /* final name (owned) */
  char *tmp;  /* temporary name (owned) */
  int failed; /* a write failed: commit must not publish the file */
} wcmi_atomic_file;

int wcmi_atomic_open(wcmi_ctx *ctx, wcmi_atomic_file *af, const char *path);
int wcmi_atomic_put(wcmi_ctx *ctx, wcmi_atomic_file *af, const void *bytes, size_t n);
/* Publishes the file (fsync, rename, fsync dir) and releases the handle, success or not. */
int wcmi_atomic_commit(wcmi_ctx *ctx, wcmi_atomic_file *af);
/* Removes the temporary and releases the handle. Safe on a released or zeroed handle. */
void wcmi_atomic_abort(wcmi_atomic_file *af);

/* Creates dir and its missing parents (like mkdir -p). */
int wcmi_mkdir_p(wcmi_ctx *ctx, const char *dir);
/* Reads a whole file into a wcmi_alloc'd buffer (NUL-terminated, *n excludes the NUL). Refuses
 * files larger than max_bytes (error names the file and both sizes). Free with wcmi_free. */
int wcmi_read_file(wcmi_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *n);
/* Opens path for reading (append = 0) or appending (append = 1, created if missing) only if it is a
 * regular file: the open itself does not block (O_NONBLOCK, so a FIFO without a writer cannot hang
 * it), then fstat refuses FIFOs, devices, sockets and directories with a one-line message. *st
 * (may be NULL) receives the fstat result. NULL on failure, message in ctx. */
struct stat;
FILE *wcmi_fopen_regular(wcmi_ctx *ctx, const char *path, int append, struct stat *st);

#ifdef __cplusplus
}
#endif
#endif
