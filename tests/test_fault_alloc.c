/* Allocation failure at every allocation of a small training run (issue 17). A run of one epoch
 * writes a checkpoint; then, for every k from 1 to the number of allocations a resumed second
 * epoch makes, the resume is repeated with the k-th allocation failing (the counter of wcmi_ctx,
 * behind wcmi_alloc; by default a fixed sample, see below). Each must fail with WCMI_ENOMEM and a one-line message, leave
 * latest.safetensors either byte-identical to the first epoch's or the complete second-epoch file
 * (never torn), and leave no temporary behind; in the ASan build, with no crash and no leak.
 * Synthetic 28x28 data, hsize 8, batch 4, two batches per epoch. */
#include "data_fixtures.h"
#include "harness.h"
#include "wcmi/io.h"
#include "wcmi/tasks.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir_data[1100], dir_first[1100];

static void path_in(char *out, size_t n, const char *dir, const char *leaf) {
  if (snprintf(out, n, "%s/%s", dir, leaf) >= (int)n) out[0] = '\0';
}

static int read_all(const char *path, fx_buf *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  char chunk[65536];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) fx_put(out, chunk, got);
  fclose(f);
  return 0;
}

static int same_bytes(const fx_buf *a, const fx_buf *b) { return a->n == b->n && (a->n == 0 || !memcmp(a->p, b->p, a->n)); }

/* The same checkpoint up to its metadata: equal tensor bytes after each file's own header. The
 * header holds "elapsed" (training wall clock), which differs between two runs of the same epoch. */
static int opens_as_safetensors(const char *path) {
  wcmi_ctx c;
  wcmi_ctx_init(&c);
  wcmi_st *st = NULL;
  int ok = wcmi_st_open(&c, path, &st) == WCMI_OK;
  wcmi_st_close(st);
  return ok;
}

static int same_tensor_bytes(const fx_buf *a, const fx_buf *b) {
  uint64_t na = 0, nb = 0;
  if (a->n < 8 || b->n < 8) return 0;
  for (int i = 7; i >= 0; i--) na = na << 8 | a->p[i], nb = nb << 8 | b->p[i];
  if (na > a->n - 8 || nb > b->n - 8 || a->n - 8 - na != b->n - 8 - nb) return 0;
  return !memcmp(a->p + 8 + na, b->p + 8 + nb, a->n - 8 - na);
}

/* Restores dst to the first epoch's run src. The checkpoints are hard links (wcmi replaces them by
 * rename, never in place, so src's stay intact); the small files are copied (metrics.jsonl is
 * appended to in place). */
static void copy_run(const char *src, const char *dst) {
  mkdir(dst, 0755);
  const char *files[] = {"config.json", "metrics.jsonl", "latest.safetensors", "best.safetensors", "summary.json"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char a[1200], b[1200];
    path_in(a, sizeof a, src, files[i]);
    path_in(b, sizeof b, dst, files[i]);
    remove(b);
    if (strstr(files[i], ".safetensors")) {
      CHECK(access(a, F_OK) != 0 || link(a, b) == 0);
      continue;
    }
    fx_buf buf;
    if (read_all(a, &buf) == 0) {
      CHECK(fx_write(b, &buf) == 0);
      fx_free(&buf);
    }
  }
}

/* 1 if the two paths are the same file (the hard link was not replaced). */
static int same_inode(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static int has_temporary(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) found |= strstr(e->d_name, ".tmp.") != NULL;
  closedir(d);
  return found;
}

static void base_cfg(wcmi_ctx *ctx, wcmi_task_cfg *c) {
  CHECK_OK(ctx, wcmi_task_defaults(ctx, c, "fashion-mnist", "quick"));
  c->data_dir = dir_data;
  c->train_subset = c->test_subset = 0;
  c->batch_size = 4;
  c->max_batches = 2;
  c->eval_batches = 1;
  c->hsize = 8;
  c->epochs = 1;
  c->attack.steps = 1;
  c->worst = 1;
}

/* Resumes `run` for a second epoch with allocation k failing (0: none). Returns the status; the
 * number of allocations counted goes to *count. */
static int resume_second_epoch(const char *run, int64_t k, int64_t *count, char *msg, size_t msg_n) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, 1);
  ctx.alloc_fail_at = k;
  wcmi_task_cfg c;
  char task[64];
  wcmi_json *keep = NULL;
  int rc = wcmi_task_config_load(&ctx, run, &c, task, sizeof task, &keep);
  char *summary = NULL;
  if (!rc) {
    c.epochs = 2;
    rc = wcmi_task_train_encoder(&ctx, &c, &summary);
  }
  free(summary);
  wcmi_json_free(keep);
  *count = ctx.alloc_count;
  snprintf(msg, msg_n, "%s", rc ? ctx.msg : "");
  return rc;
}

static void test_every_allocation_failure_is_clean(void) {
  snprintf(dir_data, sizeof dir_data, "%s/data", wt_tmpdir());
  snprintf(dir_first, sizeof dir_first, "%s/first", wt_tmpdir());
  mkdir(dir_data, 0755);
  const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                          "t10k-labels-idx1-ubyte"};
  fx_buf im = fx_idx_images(16, 28, 28), lb = fx_idx_labels(16);
  for (int i = 0; i < 4; i++) {
    char p[1200];
    path_in(p, sizeof p, dir_data, names[i]);
    CHECK(fx_write(p, i % 2 ? &lb : &im) == 0);
  }
  fx_free(&im);
  fx_free(&lb);
  /* The first epoch, and the checkpoint every failed resume must leave intact. */
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, 1);
  wcmi_task_cfg c;
  base_cfg(&ctx, &c);
  c.out_dir = dir_first;
  char *summary = NULL;
  CHECK_OK(&ctx, wcmi_task_train_encoder(&ctx, &c, &summary));
  free(summary);
  char latest[1200], first_latest[1200];
  path_in(first_latest, sizeof first_latest, dir_first, "latest.safetensors");
  fx_buf before, after_ok;
  CHECK(read_all(first_latest, &before) == 0 && before.n > 0);
  /* A clean resume: the number of allocations to fail, and the second-epoch checkpoint. */
  char run[1200], msg[600];
  snprintf(run, sizeof run, "%s/resume", wt_tmpdir());
  copy_run(dir_first, run);
  int64_t total = 0, count = 0;
  double t0 = wcmi_now();
  CHECK_OK(&ctx, resume_second_epoch(run, 0, &total, msg, sizeof msg));
  fprintf(stderr, "  a clean resume takes %.2f s\n", wcmi_now() - t0);
  path_in(latest, sizeof latest, run, "latest.safetensors");
  CHECK(read_all(latest, &after_ok) == 0 && !same_bytes(&before, &after_ok));
  fprintf(stderr, "  a resumed epoch makes %lld allocations through wcmi_alloc\n", (long long)total);
  CHECK(total > 100);
  /* Every k takes about a second (a model and a 39 MB checkpoint per run): the default sweep takes
   * every STRIDE-th k and every k of the last 100 (checkpoint writes, summary); WCMI_FAULT_EVERY=1
   * sweeps them all. */
  const char *every = getenv("WCMI_FAULT_EVERY"), *sanitized = getenv("WCMI_SANITIZED");
  /* Under ASan a run takes several seconds: a smaller sample there (about 30 runs). */
  const int sample = sanitized && *sanitized ? 20 : 120, tail = sanitized && *sanitized ? 10 : 100;
  const int64_t stride = every && atoi(every) == 1 ? 1 : (total + sample - 1) / sample;
  int not_failed = 0, bad_msg = 0, torn = 0, temps = 0, kept = 0, runs = 0;
  for (int64_t k = 1; k <= total; k++) {
    if (k % stride != 1 % stride && k <= total - tail) continue;
    runs++;
    copy_run(dir_first, run);
    int rc = resume_second_epoch(run, k, &count, msg, sizeof msg);
    if (rc != WCMI_ENOMEM) {
      if (not_failed++ < 5) fprintf(stderr, "  allocation %lld: status %d (%s)\n", (long long)k, rc, msg);
    } else if (!msg[0] || strchr(msg, '\n')) {
      if (bad_msg++ < 5) fprintf(stderr, "  allocation %lld: message '%s'\n", (long long)k, msg);
    }
    if (same_inode(latest, first_latest)) {
      kept++; /* untouched: the first epoch's bytes */
    } else {
      fx_buf now;
      if (read_all(latest, &now) != 0 || !(same_bytes(&now, &before) || (same_tensor_bytes(&now, &after_ok) && opens_as_safetensors(latest))))
        torn++;
      else kept += same_bytes(&now, &before);
      fx_free(&now);
    }
    temps += has_temporary(run);
    if (runs % 100 == 0) fprintf(stderr, "  ... allocation %lld of %lld\n", (long long)k, (long long)total);
  }
  fprintf(stderr, "  %d of %lld allocations failed in turn (stride %lld): %d did not fail the run, %d bad messages, %d torn checkpoints (%d left "
          "the first epoch's, the rest the complete second one), %d temporaries left\n",
          runs, (long long)total, (long long)stride, not_failed, bad_msg, torn, kept, temps);
  CHECK(not_failed == 0);
  CHECK(bad_msg == 0);
  CHECK(torn == 0);
  CHECK(temps == 0);
  CHECK(kept > 0);
  fx_free(&before);
  fx_free(&after_ok);
}

int main(void) {
  (void)fx_cifar; /* fixtures this test does not need */
  (void)fx_svhn;
  RUN(test_every_allocation_failure_is_clean);
  return wt_finish();
}
