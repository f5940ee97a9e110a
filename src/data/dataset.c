/* Datasets: allocation, names and default locations, loading by name, class-balanced selection,
 * validation split, statistics and the synthetic Gaussian mixture. */
#include "data/data_internal.h"
#include "wcmi/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int wcmi_dataset_alloc(wcmi_ctx *ctx, wcmi_dataset *d, const char *name, int64_t n, int c, int h, int w,
                       int num_classes) {
  memset(d, 0, sizeof *d);
  if (n < 0 || c <= 0 || h <= 0 || w <= 0 || num_classes <= 0 || num_classes > 16)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: invalid dataset shape n=%lld (%d, %d, %d), %d classes", name,
                     (long long)n, c, h, w, num_classes);
  size_t per, total;
  if (!wcmi_mul_size((size_t)c, (size_t)h, &per) || !wcmi_mul_size(per, (size_t)w, &per) ||
      !wcmi_mul_size(per, (size_t)n, &total))
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: dataset size overflows", name);
  snprintf(d->name, sizeof d->name, "%s", name);
  d->images = wcmi_alloc(ctx, total ? total : 1, sizeof(float));
  d->labels = wcmi_calloc(ctx, n ? (size_t)n : 1, sizeof(int32_t));
  if (!d->images || !d->labels) {
    wcmi_dataset_free(d);
    return wcmi_fail(ctx, WCMI_ENOMEM, "%s: cannot allocate %lld samples of %dx%dx%d", name, (long long)n, c, h, w);
  }
  d->n = n;
  d->c = c;
  d->h = h;
  d->w = w;
  d->num_classes = num_classes;
  return WCMI_OK;
}

void wcmi_dataset_free(wcmi_dataset *d) {
  if (!d) return;
  wcmi_free(d->images);
  wcmi_free(d->labels);
  memset(d, 0, sizeof *d);
}

int64_t wcmi_dataset_sample_size(const wcmi_dataset *d) { return (int64_t)d->c * d->h * d->w; }

/* ---- names ----------------------------------------------------------------------------------- */
int wcmi_data_name_valid(const char *name) {
  return name && (!strcmp(name, "mnist") || !strcmp(name, "fashion-mnist") || !strcmp(name, "svhn") ||
                  !strcmp(name, "cifar10"));
}

const char *wcmi_data_default_dir(const char *name) {
  if (!wcmi_data_name_valid(name)) return NULL;
  if (!strcmp(name, "fashion-mnist")) return "/usr/share/datasets/fashion-mnist";
  if (!strcmp(name, "mnist")) return "data/mnist";
  if (!strcmp(name, "svhn")) return "data/svhn";
  return "data/cifar10";
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Finds the first existing dir/<candidate>; on failure names the first candidate. */
static int find_file(wcmi_ctx *ctx, const char *dir, const char *const *candidates, int n, char *out,
                     size_t outsz) {
  for (int i = 0; i < n; i++) {
    snprintf(out, outsz, "%s/%s", dir, candidates[i]);
    if (file_exists(out)) return WCMI_OK;
  }
  snprintf(out, outsz, "%s/%s", dir, candidates[0]);
  return wcmi_fail(ctx, WCMI_EIO, "%s: missing file (also looked for %s%s; use --data-dir DIR)", out,
                   n > 1 ? candidates[1] : "no other name", n > 2 ? " and others" : "");
}

static int load_idx(wcmi_ctx *ctx, const char *name, const char *dir, wcmi_split split, wcmi_dataset *out) {
  const char *p = split == WCMI_SPLIT_TRAIN ? "train" : "t10k";
  char ci[4][64], cl[4][64];
  const char *img_c[4], *lbl_c[4];
  /* The LeCun / Zalando names, gzip or not, and the common variant with a '.' before "idx". */
  snprintf(ci[0], 64, "%s-images-idx3-ubyte.gz", p);
  snprintf(ci[1], 64, "%s-images-idx3-ubyte", p);
  snprintf(ci[2], 64, "%s-images.idx3-ubyte.gz", p);
  snprintf(ci[3], 64, "%s-images.idx3-ubyte", p);
  snprintf(cl[0], 64, "%s-labels-idx1-ubyte.gz", p);
  snprintf(cl[1], 64, "%s-labels-idx1-ubyte", p);
  snprintf(cl[2], 64, "%s-labels.idx1-ubyte.gz", p);
  snprintf(cl[3], 64, "%s-labels.idx1-ubyte", p);
  for (int i = 0; i < 4; i++) {
    img_c[i] = ci[i];
    lbl_c[i] = cl[i];
  }
  char ip[4096], lp[4096];
  int rc = find_file(ctx, dir, img_c, 4, ip, sizeof ip);
  if (!rc) rc = find_file(ctx, dir, lbl_c, 4, lp, sizeof lp);
  if (!rc) rc = wcmi_idx_read(ctx, name, ip, lp, out);
  return rc;
}

static int load_cifar(wcmi_ctx *ctx, const char *dir, wcmi_split split, wcmi_dataset *out) {
  char sub[4096];
  /* The official tarball unpacks to cifar-10-batches-bin/; accept the files at either level. */
  snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/test_batch.bin", dir);
  const char *base = file_exists(probe) ? dir : sub;
  snprintf(probe, sizeof probe, "%s/test_batch.bin", sub);
  if (base == sub && !file_exists(probe)) base = dir;
  char paths[5][4200];
  const char *pp[5];
  int np = split == WCMI_SPLIT_TRAIN ? 5 : 1;
  for (int i = 0; i < np; i++) {
    if (split == WCMI_SPLIT_TRAIN) snprintf(paths[i], sizeof paths[i], "%s/data_batch_%d.bin", base, i + 1);
    else snprintf(paths[i], sizeof paths[i], "%s/test_batch.bin", base);
    if (!file_exists(paths[i])) return wcmi_fail(ctx, WCMI_EIO, "%s: missing file (use --data-dir DIR)", paths[i]);
    pp[i] = paths[i];
  }
  return wcmi_cifar10_read(ctx, pp, np, out);
}

static int load_by_name(wcmi_ctx *ctx, const char *name, const char *dir, wcmi_split split, wcmi_dataset *out) {
  if (!strcmp(name, "mnist") || !strcmp(name, "fashion-mnist")) return load_idx(ctx, name, dir, split, out);
  if (!strcmp(name, "cifar10")) return load_cifar(ctx, dir, split, out);
  char path[4096];
  const char *cand[1] = {split == WCMI_SPLIT_TRAIN ? "train_32x32.mat" : "test_32x32.mat"};
  int rc = find_file(ctx, dir, cand, 1, path, sizeof path);
  if (!rc) rc = wcmi_svhn_read(ctx, path, out);
  return rc;
}

/* Every model built for dataset `name` takes its input spec (wcmi_input_spec_for), and every
 * command reads its data through here: samples of another shape (14x14 or 32x32 IDX files under
 * --data fashion-mnist, say) are refused once, here, instead of being read past the end of their
 * buffers by a network built for 28x28. */
static int check_sample_shape(wcmi_ctx *ctx, const char *name, const char *dir, const wcmi_dataset *d) {
  wcmi_input_spec in;
  int rc = wcmi_input_spec_for(ctx, name, &in);
  if (rc) return rc;
  if (d->c != in.C || d->h != in.H || d->w != in.W)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: %s samples are %dx%dx%d, but %s models take %dx%dx%d", dir, name, d->c, d->h,
                     d->w, name, in.C, in.H, in.W);
  return WCMI_OK;
}

int wcmi_data_load(wcmi_ctx *ctx, const char *name, const char *dir, wcmi_split split, wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  if (!wcmi_data_name_valid(name))
    return wcmi_fail(ctx, WCMI_EINVAL, "unknown dataset '%s' (expected mnist, fashion-mnist, svhn or cifar10)",
                     name ? name : "(null)");
  if (!dir) dir = wcmi_data_default_dir(name);
  int rc = load_by_name(ctx, name, dir, split, out);
  if (!rc && (rc = check_sample_shape(ctx, name, dir, out))) wcmi_dataset_free(out);
  return rc;
}

/* ---- selection ------------------------------------------------------------------------------- */
int wcmi_dataset_select_balanced(wcmi_ctx *ctx, const wcmi_dataset *d, int64_t n, uint64_t seed,
                                 int64_t *idx_out) {
  if (n < 0 || n > d->n)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: cannot select %lld of %lld samples", d->name, (long long)n,
                     (long long)d->n);
  int K = d->num_classes;
  int64_t count[16] = {0}, quota[16] = {0}, start[16] = {0};
  if (K <= 0 || K > 16) return wcmi_fail(ctx, WCMI_EINVAL, "%s: bad class count %d", d->name, K);
  for (int64_t i = 0; i < d->n; i++) {
    if (d->labels[i] < 0 || d->labels[i] >= K)
      return wcmi_fail(ctx, WCMI_EINVAL, "%s: label %d at index %lld out of range", d->name, d->labels[i],
                       (long long)i);
    count[d->labels[i]]++;
  }
  /* Water-filling: each sample goes to the class with the smallest quota that still has samples
   * (lowest class on ties). Without shortages this is floor(n/K) each plus one for the first
   * n mod K classes; a rare class's shortfall is spread evenly over the others. */
  for (int64_t t = 0; t < n; t++) {
    int best = -1;
    for (int k = 0; k < K; k++)
      if (quota[k] < count[k] && (best < 0 || quota[k] < quota[best])) best = k;
    quota[best]++;
  }
  /* Bucket the indices by class (stable), shuffle each bucket, take the first quota[k]. */
  int64_t *by_class = wcmi_alloc(ctx, d->n ? (size_t)d->n : 1, sizeof(int64_t));
  uint8_t *take = wcmi_calloc(ctx, d->n ? (size_t)d->n : 1, 1);
  if (!by_class || !take) {
    wcmi_free(by_class);
    wcmi_free(take);
    return WCMI_ENOMEM;
  }
  for (int k = 1; k < K; k++) start[k] = start[k - 1] + count[k - 1];
  int64_t fill[16];
  memcpy(fill, start, sizeof fill);
  for (int64_t i = 0; i < d->n; i++) by_class[fill[d->labels[i]]++] = i;
  wcmi_rng rng;
  wcmi_rng_derive(&rng, seed, WCMI_STREAM_SUBSET);
  for (int k = 0; k < K; k++) {
    wcmi_rng_shuffle(&rng, by_class + start[k], count[k]);
    for (int64_t j = 0; j < quota[k]; j++) take[by_class[start[k] + j]] = 1;
  }
  int64_t m = 0;
  for (int64_t i = 0; i < d->n; i++)
    if (take[i]) idx_out[m++] = i;
  wcmi_free(by_class);
  wcmi_free(take);
  return WCMI_OK;
}

int wcmi_dataset_gather(wcmi_ctx *ctx, const wcmi_dataset *src, const int64_t *idx, int64_t n, wcmi_dataset *out) {
  int rc = wcmi_dataset_alloc(ctx, out, src->name, n, src->c, src->h, src->w, src->num_classes);
  if (rc) return rc;
  int64_t s = wcmi_dataset_sample_size(src);
  for (int64_t i = 0; i < n; i++) {
    memcpy(out->images + i * s, src->images + idx[i] * s, (size_t)s * sizeof(float));
    out->labels[i] = src->labels[idx[i]];
  }
  return WCMI_OK;
}

int wcmi_dataset_subset(wcmi_ctx *ctx, const wcmi_dataset *src, int64_t n, uint64_t seed, wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  if (n < 0) return wcmi_fail(ctx, WCMI_EINVAL, "%s: negative subset size %lld", src->name, (long long)n);
  if (n > src->n) n = src->n;
  int64_t *idx = wcmi_alloc(ctx, n ? (size_t)n : 1, sizeof(int64_t));
  if (!idx) return WCMI_ENOMEM;
  int rc = wcmi_dataset_select_balanced(ctx, src, n, seed, idx);
  if (!rc) rc = wcmi_dataset_gather(ctx, src, idx, n, out);
  wcmi_free(idx);
  return rc;
}

int wcmi_dataset_split_validation(wcmi_ctx *ctx, const wcmi_dataset *src, int64_t n_val, uint64_t seed,
                                  wcmi_dataset *train, wcmi_dataset *val) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  if (n_val < 0 || n_val >= src->n)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: validation size %lld must be in [0, %lld)", src->name,
                     (long long)n_val, (long long)src->n);
  int64_t *vidx = wcmi_alloc(ctx, (size_t)src->n, sizeof(int64_t));
  int64_t *tidx = wcmi_alloc(ctx, (size_t)src->n, sizeof(int64_t));
  uint8_t *in_val = wcmi_calloc(ctx, (size_t)src->n, 1);
  int rc = (!vidx || !tidx || !in_val) ? WCMI_ENOMEM : WCMI_OK;
  if (!rc) rc = wcmi_dataset_select_balanced(ctx, src, n_val, seed, vidx);
  if (!rc) {
    int64_t m = 0;
    for (int64_t i = 0; i < n_val; i++) in_val[vidx[i]] = 1;
    for (int64_t i = 0; i < src->n; i++)
      if (!in_val[i]) tidx[m++] = i;
    rc = wcmi_dataset_gather(ctx, src, vidx, n_val, val);
    if (!rc) rc = wcmi_dataset_gather(ctx, src, tidx, m, train);
  }
  wcmi_free(vidx);
  wcmi_free(tidx);
  wcmi_free(in_val);
  if (rc) {
    wcmi_dataset_free(train);
    wcmi_dataset_free(val);
  }
  return rc;
}

int wcmi_data_open(wcmi_ctx *ctx, const wcmi_data_options *opt, wcmi_dataset *train, wcmi_dataset *val,
                   wcmi_dataset *test) {
  if (train) memset(train, 0, sizeof *train);
  if (val) memset(val, 0, sizeof *val);
  if (test) memset(test, 0, sizeof *test);
  if (opt->val_size > 0 && (!val || !train))
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: a validation split needs both train and val outputs", opt->name);
  int rc = WCMI_OK;
  if (train) {
    wcmi_dataset full, rest;
    rc = wcmi_data_load(ctx, opt->name, opt->dir, WCMI_SPLIT_TRAIN, &full);
    if (!rc && opt->val_size > 0) {
      rc = wcmi_dataset_split_validation(ctx, &full, opt->val_size, opt->seed, &rest, val);
      wcmi_dataset_free(&full);
      full = rest;
    }
    if (!rc && opt->train_subset > 0 && opt->train_subset < full.n) {
      /* A different seed stream from the validation pick, so the two selections are independent. */
      rc = wcmi_dataset_subset(ctx, &full, opt->train_subset, opt->seed + 1, train);
      wcmi_dataset_free(&full);
    } else if (!rc) {
      *train = full;
    }
  }
  if (!rc && test) {
    wcmi_dataset full;
    rc = wcmi_data_load(ctx, opt->name, opt->dir, WCMI_SPLIT_TEST, &full);
    if (!rc && opt->test_subset > 0 && opt->test_subset < full.n) {
      rc = wcmi_dataset_subset(ctx, &full, opt->test_subset, opt->seed + 2, test);
      wcmi_dataset_free(&full);
    } else if (!rc) {
      *test = full;
    }
  }
  if (rc) {
    if (train) wcmi_dataset_free(train);
    if (val) wcmi_dataset_free(val);
    if (test) wcmi_dataset_free(test);
  }
  return rc;
}

/* ---- statistics ------------------------------------------------------------------------------ */
void wcmi_dataset_compute_stats(const wcmi_dataset *d, wcmi_dataset_stats *s) {
  memset(s, 0, sizeof *s);
  for (int64_t i = 0; i < d->n; i++)
    if (d->labels[i] >= 0 && d->labels[i] < 16) s->label_counts[d->labels[i]]++;
  int64_t hw = (int64_t)d->h * d->w;
  double tot = 0, tot2 = 0;
  int nc = d->c < 4 ? d->c : 4;
  /* Sums in double per image then across images: 70000 x 784 floats lose nothing that matters. */
  for (int ch = 0; ch < nc; ch++) {
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < d->n; i++) {
      const float *p = d->images + (i * d->c + ch) * hw;
      double a = 0, a2 = 0;
      for (int64_t k = 0; k < hw; k++) {
        a += p[k];
        a2 += (double)p[k] * p[k];
      }
      sum += a;
      sum2 += a2;
    }
    double cnt = (double)d->n * (double)hw;
    double mean = cnt > 0 ? sum / cnt : 0;
    double var = cnt > 0 ? sum2 / cnt - mean * mean : 0;
    s->channel_mean[ch] = mean;
    s->channel_std[ch] = sqrt(var > 0 ? var : 0);
    tot += sum;
    tot2 += sum2;
  }
  double cnt = (double)d->n * (double)hw * nc;
  s->pixel_mean = cnt > 0 ? tot / cnt : 0;
  double var = cnt > 0 ? tot2 / cnt - s->pixel_mean * s->pixel_mean : 0;
  s->pixel_std = sqrt(var > 0 ? var : 0);
}

/* ---- synthetic ------------------------------------------------------------------------------- */
int wcmi_data_gaussian_mixture(wcmi_ctx *ctx, int64_t n, int d, const float *theta, float sigma, uint64_t seed,
                               wcmi_dataset *out) {
  memset(out, 0, sizeof *out);
  if (n <= 0 || d <= 0 || !theta || !(sigma >= 0))
    return wcmi_fail(ctx, WCMI_EINVAL, "gaussian-mixture: need n > 0, d > 0, theta and sigma >= 0");
  int rc = wcmi_dataset_alloc(ctx, out, "gaussian-mixture", n, 1, 1, d, 2);
  if (rc) return rc;
  wcmi_rng rng;
  wcmi_rng_derive(&rng, seed, WCMI_STREAM_DATA);
  for (int64_t i = 0; i < n; i++) {
    int y = (int)(wcmi_rng_u64(&rng) >> 63);
    float sign = y ? 1.0f : -1.0f;
    out->labels[i] = y;
    float *x = out->images + i * d;
    for (int j = 0; j < d; j++) x[j] = sign * theta[j] + sigma * wcmi_rng_normal(&rng);
  }
  return WCMI_OK;
}
