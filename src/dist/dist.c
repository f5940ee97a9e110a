/* Data-parallel primitives over MPI (wcmi/dist.h, docs/distributed.md). The only file that sees
 * MPI: built without WCMI_MPI, every function below is the single-process identity.
 *
 * The fixed-order sum is a reduce-scatter by hand followed by an all-gather: the buffer is cut
 * into K contiguous chunks, rank r receives every rank's copy of chunk r (MPI_Alltoallv), adds them
 * in rank order in double, and MPI_Allgatherv hands the summed chunks to everyone. Each rank sends
 * about 2 (K-1)/K of the buffer, as a ring all-reduce does, and the association of the additions
 * depends on nothing but K. */
#include "wcmi/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wcmi_dist_shard(int N, int r, int K, int *lo, int *hi) {
  if (K < 1) K = 1;
  *lo = (int)((int64_t)N * r / K);
  *hi = (int)((int64_t)N * (r + 1) / K);
}

#ifdef WCMI_HAVE_MPI
#include <mpi.h>

struct wcmi_dist {
  int rank, size;
  void *scratch; /* receive buffer of the fixed-order sums */
  size_t scratch_bytes;
  void *f64; /* wcmi_dist_scratch_f64's doubles */
  size_t f64_bytes;
  int *counts, *displs, *rcounts, *rdispls; /* (K) each */
  uint64_t sent[WCMI_DIST_NCAT];
};

int wcmi_dist_built(void) { return 1; }

/* A communication failure leaves the ranks out of step: no later collective can succeed, so the
 * message names the rank and the call and every rank is stopped. Checkpoints are atomic renames:
 * the last complete one stays. */
static void dist_check(const wcmi_dist *d, int err, const char *call) {
  if (err == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(err, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", err);
  fprintf(stderr, "wcmi: rank %d of %d: %s failed (%s): a rank was lost or the network failed; stopping every rank "
                  "(the last checkpoint in the run directory is intact)\n",
          d->rank, d->size, call, text);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1);
}

/* Launched by mpirun (Open MPI) or another PMI/PMIx launcher. Without one, MPI is not started at
 * all: a plain `wcmi ...` of an MPI build behaves as the default build (no singleton MPI start-up). */
static int under_launcher(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

int wcmi_dist_init(wcmi_ctx *ctx) {
  ctx->dist = NULL;
  int started = 0, provided = 0;
  MPI_Initialized(&started);
  if (!started && !under_launcher()) return WCMI_OK;
  /* Only the main thread calls MPI (OpenMP regions and the prefetch thread never do). */
  if (!started && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return wcmi_fail(ctx, WCMI_EIO, "MPI_Init failed");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (size == 1) return WCMI_OK; /* one rank: the single-process code paths, bit for bit */
  wcmi_dist *d = calloc(1, sizeof *d);
  int *ints = d ? calloc((size_t)size * 4, sizeof *ints) : NULL;
  if (!d || !ints) {
    free(d);
    return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  }
  d->rank = rank;
  d->size = size;
  d->counts = ints;
  d->displs = ints + size;
  d->rcounts = ints + 2 * size;
  d->rdispls = ints + 3 * size;
  ctx->dist = d;
  return WCMI_OK;
}

void wcmi_dist_finalize(wcmi_ctx *ctx, int rc) {
  int started = 0, finished = 0;
  MPI_Initialized(&started);
  if (started) MPI_Finalized(&finished);
  wcmi_dist *d = ctx->dist;
  if (started && !finished) {
    /* A rank that failed alone would leave the others waiting in a collective for ever. */
    if (rc && d) {
      fflush(stdout);
      fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, rc);
    }
    MPI_Finalize();
  }
  if (d) {
    free(d->scratch);
    free(d->f64);
    free(d->counts);
    free(d);
  }
  ctx->dist = NULL;
}

int wcmi_dist_rank(const wcmi_dist *d) { return d ? d->rank : 0; }
int wcmi_dist_size(const wcmi_dist *d) { return d ? d->size : 1; }

int wcmi_dist_counts(wcmi_dist *d, int n, int *counts) {
  if (!d) {
    counts[0] = n;
    return WCMI_OK;
  }
  d->sent[WCMI_DIST_OTHER] += (uint64_t)sizeof n * (uint64_t)(d->size - 1);
  dist_check(d, MPI_Allgather(&n, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  return WCMI_OK;
}

int wcmi_dist_slice(wcmi_dist *d, int n, int64_t *before, int64_t *after) {
  *before = *after = 0;
  if (!d) return WCMI_OK;
  wcmi_dist_counts(d, n, d->rcounts); /* rcounts is scratch between calls */
  for (int r = 0; r < d->size; r++)
    if (r < d->rank) *before += d->rcounts[r];
    else if (r > d->rank) *after += d->rcounts[r];
  return WCMI_OK;
}

/* *buf grown to at least `bytes` (only the first calls of a run allocate); out of memory stops
 * every rank, since the callers (kernels, collectives in progress) cannot fail alone. */
static void *grow(const wcmi_dist *d, void **buf, size_t *cap, size_t bytes) {
  if (bytes > *cap) {
    void *p = realloc(*buf, bytes);
    if (!p) {
      fprintf(stderr, "wcmi: rank %d: out of memory for a %zu-byte reduction buffer\n", d->rank, bytes);
      MPI_Abort(MPI_COMM_WORLD, WCMI_ENOMEM);
      exit(WCMI_ENOMEM);
    }
    *buf = p;
    *cap = bytes;
  }
  return *buf;
}

static void *scratch_bytes(wcmi_dist *d, size_t bytes) { return grow(d, &d->scratch, &d->scratch_bytes, bytes); }

/* The chunk layout of an n-element sum: rank j owns [displs[j], displs[j] + counts[j]). */
static void chunk_layout(wcmi_dist *d, int n) {
  for (int j = 0; j < d->size; j++) {
    int lo, hi;
    wcmi_dist_shard(n, j, d->size, &lo, &hi);
    d->counts[j] = hi - lo;
    d->displs[j] = lo;
  }
}

/* Rank order sum of an n-element buffer of `type` (elem bytes) in chunks of at most INT_MAX / K. */
#define DIST_SUM_BODY(T, MPITYPE)                                                                                    \
  const int K = d->size, me = d->rank;                                                                              \
  const size_t max_chunk = (size_t)(0x7fffffff / K);                                                                \
  for (size_t off = 0; off < n; off += max_chunk) {                                                                 \
    const int len = (int)(n - off < max_chunk ? n - off : max_chunk);                                               \
    T *b = buf + off;                                                                                                \
    chunk_layout(d, len);                                                                                            \
    const int mine = d->counts[me];                                                                                  \
    T *recv = scratch_bytes(d, (size_t)K * (size_t)(mine > 0 ? mine : 1) * sizeof(T));                              \
    for (int j = 0; j < K; j++) {                                                                                    \
      d->rcounts[j] = mine;                                                                                          \
      d->rdispls[j] = j * mine;                                                                                      \
    }                                                                                                                \
    dist_check(d, MPI_Alltoallv(b, d->counts, d->displs, MPITYPE, recv, d->rcounts, d->rdispls, MPITYPE,           \
                                MPI_COMM_WORLD),                                                                     \
               "MPI_Alltoallv");                                                                                     \
    T *own = b + d->displs[me];                                                                                      \
    for (int i = 0; i < mine; i++) {                                                                                 \
      double s = 0.0;                                                                                                \
      for (int j = 0; j < K; j++) s += (double)recv[(size_t)j * mine + i];                                           \
      own[i] = (T)s;                                                                                                 \
    }                                                                                                                \
    dist_check(d, MPI_Allgatherv(MPI_IN_PLACE, 0, MPITYPE, b, d->counts, d->displs, MPITYPE, MPI_COMM_WORLD),        \
               "MPI_Allgatherv");                                                                                    \
    d->sent[cat] += (uint64_t)sizeof(T) * ((uint64_t)(len - mine) + (uint64_t)mine * (uint64_t)(K - 1));           \
  }                                                                                                                  \
  return WCMI_OK;

int wcmi_dist_sum_f32(wcmi_dist *d, wcmi_dist_cat cat, float *buf, size_t n) {
  if (!d || n == 0) return WCMI_OK;
  DIST_SUM_BODY(float, MPI_FLOAT)
}

int wcmi_dist_sum_f64(wcmi_dist *d, wcmi_dist_cat cat, double *buf, size_t n) {
  if (!d || n == 0) return WCMI_OK;
  DIST_SUM_BODY(double, MPI_DOUBLE)
}

int wcmi_dist_any(wcmi_dist *d, int flag) {
  if (!d) return flag != 0;
  int mine = flag != 0, any = 0;
  d->sent[WCMI_DIST_OTHER] += (uint64_t)sizeof mine * (uint64_t)(d->size - 1);
  /* A max of 0/1 integers: exact whatever the order. */
  dist_check(d, MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  return any;
}

int wcmi_dist_allgather_f32(wcmi_dist *d, wcmi_dist_cat cat, const float *mine, const int *counts, int64_t unit,
                            float *all) {
  if (!d) {
    memcpy(all, mine, (size_t)counts[0] * (size_t)unit * sizeof(float));
    return WCMI_OK;
  }
  int64_t off = 0;
  for (int j = 0; j < d->size; j++) {
    const int64_t c = (int64_t)counts[j] * unit;
    if (c > 0x7fffffff || off > 0x7fffffff) {
      fprintf(stderr, "wcmi: rank %d: a feature all-gather of %lld floats exceeds MPI's int counts\n", d->rank,
              (long long)(off + c));
      MPI_Abort(MPI_COMM_WORLD, WCMI_EINVAL);
      exit(WCMI_EINVAL);
    }
    d->rcounts[j] = (int)c;
    d->rdispls[j] = (int)off;
    off += c;
  }
  const int me = d->rank;
  d->sent[cat] += (uint64_t)sizeof(float) * (uint64_t)d->rcounts[me] * (uint64_t)(d->size - 1);
  dist_check(d, MPI_Allgatherv(mine, d->rcounts[me], MPI_FLOAT, all, d->rcounts, d->rdispls, MPI_FLOAT, MPI_COMM_WORLD),
             "MPI_Allgatherv");
  return WCMI_OK;
}

int wcmi_dist_bcast(wcmi_dist *d, void *buf, size_t bytes) {
  if (!d) return WCMI_OK;
  const size_t max = 1u << 30;
  for (size_t off = 0; off < bytes; off += max) {
    const int len = (int)(bytes - off < max ? bytes - off : max);
    if (d->rank == 0) d->sent[WCMI_DIST_OTHER] += (uint64_t)len * (uint64_t)(d->size - 1);
    dist_check(d, MPI_Bcast((char *)buf + off, len, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
  }
  return WCMI_OK;
}

double *wcmi_dist_scratch_f64(wcmi_dist *d, size_t n) {
  return d ? grow(d, &d->f64, &d->f64_bytes, n * sizeof(double)) : NULL;
}

uint64_t wcmi_dist_bytes_sent(const wcmi_dist *d, int cat) {
  if (!d) return 0;
  if (cat >= 0 && cat < WCMI_DIST_NCAT) return d->sent[cat];
  uint64_t t = 0;
  for (int k = 0; k < WCMI_DIST_NCAT; k++) t += d->sent[k];
  return t;
}

#else /* built without MPI: one process, every call the identity */

int wcmi_dist_built(void) { return 0; }
int wcmi_dist_init(wcmi_ctx *ctx) {
  ctx->dist = NULL;
  return WCMI_OK;
}
void wcmi_dist_finalize(wcmi_ctx *ctx, int rc) {
  (void)rc;
  ctx->dist = NULL;
}
int wcmi_dist_rank(const wcmi_dist *d) { return (void)d, 0; }
int wcmi_dist_size(const wcmi_dist *d) { return (void)d, 1; }
int wcmi_dist_counts(wcmi_dist *d, int n, int *counts) {
  (void)d;
  counts[0] = n;
  return WCMI_OK;
}
int wcmi_dist_slice(wcmi_dist *d, int n, int64_t *before, int64_t *after) {
  (void)d;
  (void)n;
  *before = *after = 0;
  return WCMI_OK;
}
int wcmi_dist_sum_f32(wcmi_dist *d, wcmi_dist_cat cat, float *buf, size_t n) { return (void)d, (void)cat, (void)buf, (void)n, WCMI_OK; }
int wcmi_dist_sum_f64(wcmi_dist *d, wcmi_dist_cat cat, double *buf, size_t n) { return (void)d, (void)cat, (void)buf, (void)n, WCMI_OK; }
int wcmi_dist_any(wcmi_dist *d, int flag) { return (void)d, flag != 0; }
int wcmi_dist_allgather_f32(wcmi_dist *d, wcmi_dist_cat cat, const float *mine, const int *counts, int64_t unit,
                            float *all) {
  (void)d;
  (void)cat;
  memcpy(all, mine, (size_t)counts[0] * (size_t)unit * sizeof(float));
  return WCMI_OK;
}
int wcmi_dist_bcast(wcmi_dist *d, void *buf, size_t bytes) { return (void)d, (void)buf, (void)bytes, WCMI_OK; }
double *wcmi_dist_scratch_f64(wcmi_dist *d, size_t n) { return (void)d, (void)n, NULL; }
uint64_t wcmi_dist_bytes_sent(const wcmi_dist *d, int cat) { return (void)d, (void)cat, 0; }

#endif
