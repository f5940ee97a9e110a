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
  if (c->jitter <= 0) c->jitter = 0.25f;
  if (c->rotate_deg <= 0) c->rotate_deg = 2.0f;
}

/* ---- augmentation ----------------------------------------------------------------------------
 * The reference's CIFAR-10 training transforms, in its order: RandomCrop(32, padding=4),
 * RandomHorizontalFlip, ColorJitter(0.25, 0.25, 0.25), RandomRotation(2). Each output pixel is
 * computed on its own: rotation (nearest neighbour, fill 0) picks the pixel of the cropped and
 * flipped image it comes from, and the colour operations, which act pixel by pixel once the
 * contrast mean of the whole (pre-rotation) image is known, are applied to it. */

static float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

/* torchvision's grayscale weights (ITU-R 601-2 luma). */
static float luma(const float *p, int64_t stride) { return 0.299f * p[0] + 0.587f * p[stride] + 0.114f * p[2 * stride]; }

void wcmi_jitter_draw(wcmi_rng *rng, float strength, wcmi_jitter *j) {
  /* Like torchvision's ColorJitter.get_params: a random order, then one factor per operation,
   * uniform in [max(0, 1 - s), 1 + s]. */
  int order[3] = {WCMI_JITTER_BRIGHTNESS, WCMI_JITTER_CONTRAST, WCMI_JITTER_SATURATION};
  for (int i = 2; i > 0; i--) {
    int k = (int)wcmi_rng_below(rng, (uint64_t)(i + 1));
    int t = order[i];
    order[i] = order[k];
    order[k] = t;
  }
  float lo = strength < 1.0f ? 1.0f - strength : 0.0f;
  for (int i = 0; i < 3; i++) {
    j->order[i] = order[i];
    j->factor[i] = wcmi_rng_uniform_range(rng, lo, 1.0f + strength);
  }
}

/* Applies the jitter operations order[0..n) to the c values of one pixel (channel stride hw), with
 * mean = the grayscale mean of the image at the contrast step. */
static void jitter_pixel(const wcmi_jitter *j, int n, float mean, float *p, int c, int64_t hw) {
  for (int i = 0; i < n; i++) {
    const float f = j->factor[i];
    switch (j->order[i]) {
    case WCMI_JITTER_BRIGHTNESS: /* blend with black */
      for (int ch = 0; ch < c; ch++) p[ch * hw] = clamp01(f * p[ch * hw]);
      break;
    case WCMI_JITTER_CONTRAST: /* blend with the image's mean grey level */
      for (int ch = 0; ch < c; ch++) p[ch * hw] = clamp01(f * p[ch * hw] + (1.0f - f) * mean);
      break;
    default: /* saturation: blend with the pixel's grey level; a no-op without colour */
      if (c == 3) {
        const float g = luma(p, hw);
        for (int ch = 0; ch < 3; ch++) p[ch * hw] = clamp01(f * p[ch * hw] + (1.0f - f) * g);
      }
    }
  }
}

/* Position of the contrast step in the order (3: none). */
static int contrast_step(const wcmi_jitter *j) {
  for (int i = 0; i < 3; i++)
    if (j->order[i] == WCMI_JITTER_CONTRAST) return i;
  return 3;
}

/* Applies the steps before contrast to img in place and returns the grayscale mean of the result:
 * the mean the contrast step blends with. */
static float contrast_mean(const wcmi_jitter *j, float *img, int c, int64_t hw) {
  const int n = contrast_step(j);
  double gsum = 0;
  for (int64_t k = 0; k < hw; k++) {
    jitter_pixel(j, n, 0.0f, img + k, c, hw);
    gsum += c == 3 ? luma(img + k, hw) : img[k];
  }
  return (float)(gsum / (double)hw);
}

void wcmi_jitter_apply(const wcmi_jitter *j, float *img, int c, int h, int w) {
  const int64_t hw = (int64_t)h * w;
  const int n = contrast_step(j);
  const float mean = contrast_mean(j, img, c, hw);
  wcmi_jitter rest = *j;
  for (int i = n; i < 3; i++) {
    rest.order[i - n] = j->order[i];
    rest.factor[i - n] = j->factor[i];
  }
  for (int64_t k = 0; k < hw; k++) jitter_pixel(&rest, 3 - n, mean, img + k, c, hw);
}

/* Source pixel of output (i, j) under crop offset (dy, dx) and flip: its index in the input
 * plane, or -1 where it falls in the zero padding. */
static int64_t crop_flip_source(int i, int j, int h, int w, int dy, int dx, int flip) {
  const int si = i + dy, sj = (flip ? w - 1 - j : j) + dx;
  return (si >= 0 && si < h && sj >= 0 && sj < w) ? (int64_t)si * w + sj : -1;
}

static void crop_flip(const float *src, float *dst, int c, int h, int w, int dy, int dx, int flip) {
  const int64_t hw = (int64_t)h * w;
  for (int ch = 0; ch < c; ch++)
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++) {
        const int64_t s = crop_flip_source(i, j, h, w, dy, dx, flip);
        dst[ch * hw + (int64_t)i * w + j] = s >= 0 ? src[ch * hw + s] : 0.0f;
      }
}

/* Crop/flip, colour jitter (jit may be NULL) and a nearest-neighbour rotation about the centre by
 * angle radians with zero fill, composed per output pixel so that no scratch image is needed:
 * pixel (i, j) takes the crop/flip pixel nearest to its preimage, with the colour operations
 * applied to it. The contrast mean is the whole pre-rotation image's, computed first in dst. */
static void crop_flip_jitter_rotate(const float *src, float *dst, int c, int h, int w, int dy, int dx, int flip,
                                    const wcmi_jitter *jit, float angle) {
  const int64_t hw = (int64_t)h * w;
  float mean = 0.0f;
  if (jit) {
    crop_flip(src, dst, c, h, w, dy, dx, flip);
    mean = contrast_mean(jit, dst, c, hw);
  }
  const float cs = cosf(angle), sn = sinf(angle);
  const float cy = 0.5f * (float)(h - 1), cx = 0.5f * (float)(w - 1);
  for (int i = 0; i < h; i++)
    for (int j = 0; j < w; j++) {
      const float ry = (float)i - cy, rx = (float)j - cx;
      const int pi = (int)floorf(cy + cs * ry - sn * rx + 0.5f), pj = (int)floorf(cx + sn * ry + cs * rx + 0.5f);
      const int64_t o = (int64_t)i * w + j;
      if (pi < 0 || pi >= h || pj < 0 || pj >= w) {
        for (int ch = 0; ch < c; ch++) dst[ch * hw + o] = 0.0f; /* rotation's fill, after the colour steps */
        continue;
      }
      const int64_t s = crop_flip_source(pi, pj, h, w, dy, dx, flip);
      for (int ch = 0; ch < c; ch++) dst[ch * hw + o] = s >= 0 ? src[ch * hw + s] : 0.0f;
      if (jit) jitter_pixel(jit, 3, mean, dst + o, c, hw);
    }
}

void wcmi_augment_image(const wcmi_loader_config *cfg_in, wcmi_rng *rng, const float *src, float *dst, int c, int h,
                        int w) {
  wcmi_loader_config cfg = *cfg_in;
  fill_defaults(&cfg);
  const int pad = cfg.crop_pad;
  /* Random draws in the reference's order (crop, flip, jitter, rotation), so a given (seed, epoch,
   * position) is reproducible. */
  int oy = pad, ox = pad, flip = 0;
  if (cfg.augment & WCMI_AUG_CROP) {
    oy = (int)wcmi_rng_below(rng, (uint64_t)(2 * pad + 1));
    ox = (int)wcmi_rng_below(rng, (uint64_t)(2 * pad + 1));
  }
  if (cfg.augment & WCMI_AUG_FLIP) flip = (int)(wcmi_rng_u64(rng) >> 63);
  wcmi_jitter jit;
  const int jitter = (cfg.augment & WCMI_AUG_JITTER) != 0;
  if (jitter) wcmi_jitter_draw(rng, cfg.jitter, &jit);
  const int dy = oy - pad, dx = ox - pad; /* crop offset relative to the unpadded image */
  if (cfg.augment & WCMI_AUG_ROTATE) {
    const float deg = wcmi_rng_uniform_range(rng, -cfg.rotate_deg, cfg.rotate_deg);
    crop_flip_jitter_rotate(src, dst, c, h, w, dy, dx, flip, jitter ? &jit : NULL,
                            deg * (float)(3.14159265358979323846 / 180.0));
    return;
  }
  /* The padding is part of the image the colour operations see, as in the reference. */
  crop_flip(src, dst, c, h, w, dy, dx, flip);
  if (jitter) wcmi_jitter_apply(&jit, dst, c, h, w);
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
