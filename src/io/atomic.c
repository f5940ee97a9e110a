/* Crash-safe file replacement: write a temporary next to the target, make its bytes durable, then
 * rename it over the target (rename is atomic on POSIX file systems) and make the rename durable by
 * syncing the directory. A kill at any moment leaves the old file or the complete new one. */
#include "wcmi/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dup_string(wcmi_ctx *ctx, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = wcmi_alloc(ctx, n, 1);
  if (d) memcpy(d, s, n);
  return d;
}

static void release(wcmi_atomic_file *af) {
  wcmi_free(af->path);
  wcmi_free(af->tmp);
  memset(af, 0, sizeof *af);
}

int wcmi_atomic_open(wcmi_ctx *ctx, wcmi_atomic_file *af, const char *path) {
  memset(af, 0, sizeof *af);
  if (!path || !*path) return wcmi_fail(ctx, WCMI_EINVAL, "atomic write: empty file name");
  size_t n = strlen(path) + 32;
  af->path = dup_string(ctx, path);
  af->tmp = wcmi_alloc(ctx, n, 1);
  if (!af->path || !af->tmp) {
    release(af);
    return WCMI_ENOMEM;
  }
  snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
  /* O_NOFOLLOW: a planted symlink cannot redirect the write. */
  int fd = open(af->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  af->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!af->f && fd >= 0) close(fd);
  if (!af->f) {
    int e = errno;
    release(af);
    return wcmi_fail(ctx, WCMI_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
  }
  return WCMI_OK;
}

int wcmi_atomic_put(wcmi_ctx *ctx, wcmi_atomic_file *af, const void *bytes, size_t n) {
  if (!af->f) return wcmi_fail(ctx, WCMI_EINVAL, "atomic write: file is not open");
  if (af->failed) return wcmi_fail(ctx, WCMI_EIO, "%s: an earlier write failed", af->path);
  if (n && fwrite(bytes, 1, n, af->f) != n) {
    int e = errno;
    af->failed = 1;
    return wcmi_fail(ctx, WCMI_EIO, "%s: write failed: %s", af->path, strerror(e));
  }
  return WCMI_OK;
}

void wcmi_atomic_abort(wcmi_atomic_file *af) {
  if (af->f) fclose(af->f);
  if (af->tmp) remove(af->tmp);
  release(af);
}

/* The directory holding path, so that the rename's directory entry can be synced. */
static int sync_parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) {
    strcpy(dir, ".");
  } else if (slash == path) {
    strcpy(dir, "/");
  } else {
    size_t n = (size_t)(slash - path);
    if (n >= sizeof dir) return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir, O_RDONLY);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  /* Some file systems refuse fsync on directories (EINVAL); the rename is still atomic there. */
  if (rc != 0 && (errno == EINVAL || errno == EBADF)) rc = 0;
  close(fd);
  return rc;
}

int wcmi_atomic_commit(wcmi_ctx *ctx, wcmi_atomic_file *af) {
  if (!af->f) return wcmi_fail(ctx, WCMI_EINVAL, "atomic write: file is not open");
  int rc = WCMI_OK;
  if (af->failed) {
    rc = wcmi_fail(ctx, WCMI_EIO, "%s: not published because a write failed", af->path);
  } else if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
    rc = wcmi_fail(ctx, WCMI_EIO, "%s: flush to disk failed: %s", af->path, strerror(errno));
  }
  if (fclose(af->f) != 0 && rc == WCMI_OK)
    rc = wcmi_fail(ctx, WCMI_EIO, "%s: close failed: %s", af->path, strerror(errno));
  af->f = NULL;
  if (rc == WCMI_OK && rename(af->tmp, af->path) != 0)
    rc = wcmi_fail(ctx, WCMI_EIO, "%s: rename from temporary failed: %s", af->path, strerror(errno));
  if (rc != WCMI_OK) {
    remove(af->tmp);
    release(af);
    return rc;
  }
  if (sync_parent_dir(af->path) != 0)
    rc = wcmi_fail(ctx, WCMI_EIO, "%s: written, but syncing its directory failed: %s", af->path, strerror(errno));
  release(af);
  return rc;
}

int wcmi_atomic_write(wcmi_ctx *ctx, const char *path, const void *bytes, size_t n) {
  wcmi_atomic_file af;
  int rc = wcmi_atomic_open(ctx, &af, path);
  if (rc) return rc;
  rc = wcmi_atomic_put(ctx, &af, bytes, n);
  if (rc) {
    wcmi_atomic_abort(&af);
    return rc;
  }
  return wcmi_atomic_commit(ctx, &af);
}

static const char *file_kind(mode_t m) {
  return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) || S_ISBLK(m) ? "a device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

FILE *wcmi_fopen_regular(wcmi_ctx *ctx, const char *path, int append, struct stat *st_out) {
  int flags = (append ? O_WRONLY | O_APPEND | O_CREAT : O_RDONLY) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
  int fd = open(path, flags, 0644);
  if (fd < 0) {
    wcmi_fail(ctx, WCMI_EIO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  int stat_failed = fstat(fd, &st) != 0;
  if (stat_failed || !S_ISREG(st.st_mode)) {
    wcmi_fail(ctx, WCMI_EIO, "%s: cannot use it: %s", path, stat_failed ? strerror(errno) : file_kind(st.st_mode));
    close(fd);
    return NULL;
  }
  /* Back to blocking I/O for the regular file's reads and writes. */
  int fl = fcntl(fd, F_GETFL);
  FILE *f = fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0 ? fdopen(fd, append ? "ab" : "rb") : NULL;
  if (!f) {
    wcmi_fail(ctx, WCMI_EIO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
    return NULL;
  }
  if (st_out) *st_out = st;
  return f;
}

int wcmi_read_file(wcmi_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *n) {
  *out = NULL;
  *n = 0;
  struct stat st;
  FILE *f = wcmi_fopen_regular(ctx, path, 0, &st);
  if (!f) return ctx ? ctx->status : WCMI_EIO;
  if ((unsigned long long)st.st_size > (unsigned long long)max_bytes) {
    fclose(f);
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: file is %lld bytes, more than the limit of %zu", path,
                     (long long)st.st_size, max_bytes);
  }
  size_t size = (size_t)st.st_size;
  char *buf = wcmi_alloc(ctx, size + 1, 1);
  if (!buf) {
    fclose(f);
    return WCMI_ENOMEM;
  }
  size_t got = fread(buf, 1, size, f);
  int err = ferror(f);
  fclose(f);
  if (got != size || err) {
    wcmi_free(buf);
    return wcmi_fail(ctx, WCMI_EIO, "%s: read %zu of %zu bytes", path, got, size);
  }
  buf[size] = '\0';
  *out = buf;
  *n = size;
  return WCMI_OK;
}

int wcmi_mkdir_p(wcmi_ctx *ctx, const char *dir) {
  char tmp[1024];
  if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return wcmi_fail(ctx, WCMI_EINVAL, "%s: path too long", dir);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      if (mkdir(tmp, 0755) && errno != EEXIST) return wcmi_fail(ctx, WCMI_EIO, "%s: cannot create: %s", tmp, strerror(errno));
      *p = '/';
    }
  if (mkdir(tmp, 0755) && errno != EEXIST) return wcmi_fail(ctx, WCMI_EIO, "%s: cannot create: %s", tmp, strerror(errno));
  return WCMI_OK;
}
