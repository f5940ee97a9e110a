/* The batch loader: a per-epoch permutation, batches copied into caller buffers, on-the-fly
 * augmentation, and an optional prefetch thread.
 *
 * Determinism: the permutation of epoch e depends only on (seed, e), and the augmentation of the
 * sample at position p of epoch e depends only on (seed, e, p). Nothing depends on which thread
 * assembled a batch or when, so prefetching and resuming give bit-identical batches. */
#include "data/data_internal.h"
#include "wcmi/dist.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

struct wcmi_loader_state {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  float *x;     /* (batch_size, C, H, W) prefetched batch */
  int32_t *y;   /* (batch_size) */
  int count;    /* samples in the prefetched batch */
  int64_t want; /* batch the worker should assemble next, -1: none */
  int64_t ready;/* batch held in x/y, -1: none */
  int busy;     /* worker is assembling (reads L->order) */
  int quit;
  const wcmi_loader *L;
};

/* splitmix64's finalizer: a bijective 64-bit mix, used to combine seeds with counters. */
static uint64_t fmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t mix2(uint64_t a, uint64_t b) { return fmix64(a ^ fmix64(b + 0x9E3779B97F4A7C15ull)); }

void wcmi_loader_config_default(wcmi_loader_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->batch_size = 128;
  cfg->shuffle = 1;
}

static void fill_defaults(wcmi_loader_config *c) {
  if (c->crop_pad <= 0) c->crop_pad = 4;
  if (c->jitter <= 0) c->jitter = 0.1f;
  if (c->rotate_deg <= 0) c->rotate_deg = 5.0f;
}

/* ---- augmentation ---------------------------------------------------------------------------- */
static float sample_bilinear(const float *plane, int h, int w, float u, float v) {
  /* Zero outside the image, like zero padding and torchvision's fill=0. */
  int u0 = (int)floorf(u), v0 = (int)floorf(v);
  float fu = u - (float)u0, fv = v - (float)v0;
  float acc = 0.0f;
  for (int du = 0; du < 2; du++)
    for (int dv = 0; dv < 2; dv++) {
      int uu = u0 + du, vv = v0 + dv;
      if (uu < 0 || uu >= h || vv < 0 || vv >= w) continue;
      float wgt = (du ? fu : 1.0f - fu) * (dv ? fv : 1.0f - fv);
      acc += wgt * plane[uu * w + vv];
    }
  return acc;
}

static float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

static void color_jitter(float *img, int c, int hw, float bri, float con, float sat) {
  for (int k = 0; k < c * hw; k++) img[k] = clamp01(img[k] * bri);
  /* Contrast blends with the mean grey level of the image (torchvision's definition). */
  double gmean = 0;
  for (int k = 0; k < hw; k++)
    gmean += c == 3 ? 0.299 * img[k] + 0.587 * img[hw + k] + 0.114 * img[2 * hw + k] : img[k];
  float m = (float)(gmean / hw);
  for (int k = 0; k < c * hw; k++) img[k] = clamp01(con * img[k] + (1.0f - con) * m);
  if (c != 3) return;
  for (int k = 0; k < hw; k++) {
    float g = 0.299f * img[k] + 0.587f * img[hw + k] + 0.114f * img[2 * hw + k];
    for (int ch = 0; ch < 3; ch++) img[ch * hw + k] = clamp01(sat * img[ch * hw + k] + (1.0f - sat) * g);
  }
}

void wcmi_augment_image(const wcmi_loader_config *cfg_in, wcmi_rng *rng, const float *src, float *dst, int c, int h,
                        int w) {
  wcmi_loader_config cfg = *cfg_in;
  fill_defaults(&cfg);
  int pad = cfg.crop_pad;
  /* Random draws in a fixed order per flag set, so a given (seed, epoch, position) is reproducible. */
  int oy = pad, ox = pad, flip = 0;
  float angle = 0.0f;
  if (cfg.augment & WCMI_AUG_CROP) {
    oy = (int)wcmi_rng_below(rng, (uint64_t)(2 * pad + 1));
    ox = (int)wcmi_rng_below(rng, (uint64_t)(2 * pad + 1));
  }
  if (cfg.augment & WCMI_AUG_FLIP) flip = (int)(wcmi_rng_u64(rng) >> 63);
  if (cfg.augment & WCMI_AUG_ROTATE)
    angle = wcmi_rng_uniform_range(rng, -cfg.rotate_deg, cfg.rotate_deg) * (float)(3.14159265358979323846 / 180.0);
  int dy = oy - pad, dx = ox - pad; /* crop offset relative to the unpadded image */
  int hw = h * w;
  if (!(cfg.augment & WCMI_AUG_ROTATE)) {
    /* out(i, j) = in(i + dy, (flip ? w-1-j : j) + dx), zero where that falls in the padding. */
    for (int ch = 0; ch < c; ch++) {
      const float *sp = src + ch * hw;
      float *dp = dst + ch * hw;
      for (int i = 0; i < h; i++) {
        int si = i + dy;
        for (int j = 0; j < w; j++) {
          int sj = (flip ? w - 1 - j : j) + dx;
          dp[i * w + j] = (si >= 0 && si < h && sj >= 0 && sj < w) ? sp[si * w + sj] : 0.0f;
        }
      }
    }
  } else {
    /* Crop, then flip, then rotate about the centre, composed into one inverse map per pixel. */
    float cs = cosf(angle), sn = sinf(angle);
    float cy = 0.5f * (float)(h - 1), cx = 0.5f * (float)(w - 1);
    for (int ch = 0; ch < c; ch++) {
      const float *sp = src + ch * hw;
      float *dp = dst + ch * hw;
      for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
          float ry = (float)i - cy, rx = (float)j - cx;
          float u = cy + cs * ry - sn * rx;
          float v = cx + sn * ry + cs * rx;
          if (flip) v = (float)(w - 1) - v;
          dp[i * w + j] = sample_bilinear(sp, h, w, u + (float)dy, v + (float)dx);
        }
    }
  }
  if (cfg.augment & WCMI_AUG_JITTER) {
    float j = cfg.jitter;
    float bri = wcmi_rng_uniform_range(rng, 1.0f - j, 1.0f + j);
    float con = wcmi_rng_uniform_range(rng, 1.0f - j, 1.0f + j);
    float sat = wcmi_rng_uniform_range(rng, 1.0f - j, 1.0f + j);
    color_jitter(dst, c, hw, bri, con, sat);
  }
}

/* ---- batches --------------------------------------------------------------------------------- */
int64_t wcmi_loader_num_batches(const wcmi_loader *L) {
  int64_t n = L->data->n, bs = L->cfg.batch_size;
  return L->cfg.drop_last ? n / bs : (n + bs - 1) / bs;
}

static void assemble(const wcmi_loader *L, int64_t b, float *x, int32_t *y, int *count) {
  const wcmi_dataset *d = L->data;
  int64_t bs = L->cfg.batch_size, start = b * bs;
  int64_t cnt = d->n - start < bs ? d->n - start : bs;
  if (L->cfg.num_shards > 1) { /* this rank's slice of the global batch (wcmi/dist.h) */
    int lo, hi;
    wcmi_dist_shard((int)cnt, L->cfg.shard, L->cfg.num_shards, &lo, &hi);
    start += lo;
    cnt = hi - lo;
  }
  int64_t s = wcmi_dataset_sample_size(d);
  uint64_t epoch_key = mix2(L->cfg.seed, (uint64_t)L->epoch);
  for (int64_t i = 0; i < cnt; i++) {
    int64_t idx = L->order[start + i];
    const float *src = d->images + idx * s;
    if (L->cfg.augment) {
      wcmi_rng rng;
      wcmi_rng_derive(&rng, mix2(epoch_key, (uint64_t)(start + i)), WCMI_STREAM_AUGMENT);
      wcmi_augment_image(&L->cfg, &rng, src, x + i * s, d->c, d->h, d->w);
    } else {
      memcpy(x + i * s, src, (size_t)s * sizeof(float));
    }
    if (y) y[i] = d->labels[idx];
  }
  *count = (int)cnt;
}

int wcmi_loader_batch(wcmi_ctx *ctx, const wcmi_loader *L, int64_t b, float *x, int32_t *y, int *count) {
  if (b < 0 || b >= wcmi_loader_num_batches(L))
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: batch %lld out of range [0, %lld)", L->data->name, (long long)b,
                     (long long)wcmi_loader_num_batches(L));
  assemble(L, b, x, y, count);
  return WCMI_OK;
}

/* ---- prefetch thread ------------------------------------------------------------------------- */
static void *prefetch_main(void *arg) {
  wcmi_loader_state *st = arg;
  pthread_mutex_lock(&st->mu);
  for (;;) {
    while (!st->quit && !(st->want >= 0 && st->want != st->ready)) pthread_cond_wait(&st->cv, &st->mu);
    if (st->quit) break;
    int64_t b = st->want;
    st->busy = 1;
    pthread_mutex_unlock(&st->mu);
    int cnt = 0;
    assemble(st->L, b, st->x, st->y, &cnt);
    pthread_mutex_lock(&st->mu);
    st->count = cnt;
    st->ready = b;
    st->busy = 0;
    pthread_cond_broadcast(&st->cv);
  }
  pthread_mutex_unlock(&st->mu);
  return NULL;
}

static void wait_idle(wcmi_loader_state *st) {
  while (st->busy) pthread_cond_wait(&st->cv, &st->mu);
}

int wcmi_loader_init(wcmi_ctx *ctx, wcmi_loader *L, const wcmi_dataset *d, const wcmi_loader_config *cfg) {
  memset(L, 0, sizeof *L);
  if (!d || d->n <= 0) return wcmi_fail(ctx, WCMI_EINVAL, "loader: empty dataset");
  if (cfg->batch_size <= 0) return wcmi_fail(ctx, WCMI_EINVAL, "%s: batch size %d must be > 0", d->name, cfg->batch_size);
  if ((cfg->augment & (WCMI_AUG_CROP | WCMI_AUG_ROTATE)) && d->h * d->w < 4)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: geometric augmentation needs image data", d->name);
  L->data = d;
  L->cfg = *cfg;
  L->order = wcmi_alloc(ctx, (size_t)d->n, sizeof(int64_t));
  if (!L->order) return WCMI_ENOMEM;
  for (int64_t i = 0; i < d->n; i++) L->order[i] = i;
  L->epoch = -1;
  L->cursor = 0;
  if (cfg->prefetch) {
    wcmi_loader_state *st = wcmi_calloc(ctx, 1, sizeof *st);
    int64_t s = wcmi_dataset_sample_size(d);
    if (st) {
      st->x = wcmi_alloc(ctx, (size_t)cfg->batch_size * (size_t)s, sizeof(float));
      st->y = wcmi_alloc(ctx, (size_t)cfg->batch_size, sizeof(int32_t));
    }
    if (!st || !st->x || !st->y) {
      if (st) {
        wcmi_free(st->x);
        wcmi_free(st->y);
      }
      wcmi_free(st);
      wcmi_loader_free(L);
      return WCMI_ENOMEM;
    }
    st->want = st->ready = -1;
    st->L = L;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    if (pthread_create(&st->thread, NULL, prefetch_main, st) != 0) {
      pthread_mutex_destroy(&st->mu);
      pthread_cond_destroy(&st->cv);
      wcmi_free(st->x);
      wcmi_free(st->y);
      wcmi_free(st);
      wcmi_loader_free(L);
      return wcmi_fail(ctx, WCMI_ENOMEM, "%s: cannot start the prefetch thread", d->name);
    }
    L->st = st;
  }
  return wcmi_loader_start_epoch(ctx, L, 0);
}

void wcmi_loader_free(wcmi_loader *L) {
  if (!L) return;
  wcmi_loader_state *st = L->st;
  if (st) {
    pthread_mutex_lock(&st->mu);
    st->quit = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    wcmi_free(st->x);
    wcmi_free(st->y);
    wcmi_free(st);
  }
  wcmi_free(L->order);
  memset(L, 0, sizeof *L);
}

int wcmi_loader_start_epoch(wcmi_ctx *ctx, wcmi_loader *L, int64_t epoch) {
  if (!L->order) return wcmi_fail(ctx, WCMI_EINVAL, "loader: not initialised");
  wcmi_loader_state *st = L->st;
  if (st) {
    /* The worker reads L->order and L->epoch while busy: change them only when it is idle. */
    pthread_mutex_lock(&st->mu);
    wait_idle(st);
    st->want = st->ready = -1;
  }
  L->epoch = epoch;
  L->cursor = 0;
  for (int64_t i = 0; i < L->data->n; i++) L->order[i] = i;
  if (L->cfg.shuffle) {
    wcmi_rng rng;
    wcmi_rng_derive(&rng, mix2(L->cfg.seed, (uint64_t)epoch), WCMI_STREAM_SHUFFLE);
    wcmi_rng_shuffle(&rng, L->order, L->data->n);
  }
  if (st) {
    if (wcmi_loader_num_batches(L) > 0) {
      st->want = 0;
      pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
  }
  return WCMI_OK;
}

int wcmi_loader_next(wcmi_ctx *ctx, wcmi_loader *L, float *x, int32_t *y, int *count) {
  int64_t b = L->cursor;
  *count = 0;
  if (!L->order) return -wcmi_fail(ctx, WCMI_EINVAL, "loader: not initialised");
  if (b >= wcmi_loader_num_batches(L)) return 0;
  wcmi_loader_state *st = L->st;
  if (!st) {
    assemble(L, b, x, y, count);
  } else {
    pthread_mutex_lock(&st->mu);
    if (st->want != b && st->ready != b) {
      wait_idle(st);
      st->want = b;
      pthread_cond_broadcast(&st->cv);
    }
    while (st->ready != b || st->busy) pthread_cond_wait(&st->cv, &st->mu);
    int64_t s = wcmi_dataset_sample_size(L->data);
    memcpy(x, st->x, (size_t)st->count * (size_t)s * sizeof(float));
    if (y) memcpy(y, st->y, (size_t)st->count * sizeof(int32_t));
    *count = st->count;
    if (b + 1 < wcmi_loader_num_batches(L)) {
      st->want = b + 1;
      pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
  }
  L->cursor = b + 1;
  return 1;
}
