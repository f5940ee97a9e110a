/* The per-neuron patch prefix: see neuron_prefix.h, and task_neuron.c for why it is exact. */
#include "train/neuron_prefix.h"

#include <math.h>
#include <string.h>

#define BN_EPS 1e-5f

int neuron_layer_index(const char *name) {
  for (int j = 0; j < NEURON_MAX_CONV; j++) {
    char n[32];
    snprintf(n, sizeof n, "layer%d.0", j);
    if (!strcmp(name, n)) return j;
  }
  return -1;
}

static wcmi_conv2d_dims conv_dims(const neuron_prefix *p, int j, int N, int one_channel) {
  wcmi_conv2d_dims d;
  memset(&d, 0, sizeof d);
  d.N = N;
  d.C = j == 0 ? p->C : p->conv[j - 1].O;
  d.H = d.W = j == 0 ? p->r : p->m[j - 1];
  d.O = one_channel ? 1 : p->conv[j].O;
  d.KH = d.KW = 4;
  d.stride = 2;
  d.pad = 0;
  d.Ho = d.Wo = p->m[j];
  return d;
}

void neuron_prefix_free(neuron_prefix *p) {
  wcmi_free(p->xn);
  for (int j = 0; j < NEURON_MAX_CONV; j++) {
    wcmi_free(p->y[j]);
    wcmi_free(p->a[j]);
    wcmi_free(p->mask[j]);
  }
  wcmi_free(p->inmask);
  wcmi_free(p->out);
  wcmi_free(p->act);
  wcmi_free(p->g0);
  wcmi_free(p->g1);
  wcmi_free(p->ws);
  memset(p, 0, sizeof *p);
}

static const float *find(wcmi_net *enc, int j, const char *leaf) {
  char n[96];
  snprintf(n, sizeof n, "encoder.layer%d.%s", j, leaf);
  wcmi_param *q = wcmi_net_find_param(enc, n);
  return q ? q->data : NULL;
}

/* Geometry and parameters of the prefix up to conv k of the encoder (all its convs are k4 s2 p1). */
int neuron_prefix_init(wcmi_ctx *ctx, neuron_prefix *p, const wcmi_model *m, int k, int max_batch) {
  memset(p, 0, sizeof *p);
  p->k = k;
  p->C = m->in.C;
  p->max_batch = max_batch;
  for (int c = 0; c < 3; c++) p->mean[c] = m->in.mean[c], p->std[c] = m->in.std[c];
  int full = m->in.H;
  for (int j = 0; j <= k; j++) {
    neuron_conv *L = &p->conv[j];
    char n[96];
    snprintf(n, sizeof n, "encoder.layer%d.0.weight", j);
    wcmi_param *w = wcmi_net_find_param(m->encoder, n);
    if (!w || w->shape.ndim != 4 || w->shape.d[2] != 4 || w->shape.d[3] != 4)
      return wcmi_fail(ctx, WCMI_EINVAL, "per-neuron: %s is not a 4x4 conv weight of the basic encoder", n);
    L->w = w->data;
    L->O = (int)w->shape.d[0];
    L->gamma = find(m->encoder, j, "1.weight");
    L->beta = find(m->encoder, j, "1.bias");
    L->rmean = find(m->encoder, j, "1.running_mean");
    L->rvar = find(m->encoder, j, "1.running_var");
    if (!L->gamma || !L->beta || !L->rmean || !L->rvar)
      return wcmi_fail(ctx, WCMI_EINVAL, "per-neuron: encoder.layer%d.1 (BatchNorm) is missing", j);
    full = (full + 2 - 4) / 2 + 1;
    L->full = full;
  }
  p->locs = p->conv[k].full;
  /* Sizes on the patch, from the single target location down: a window of n positions at a conv's
   * output reads 2(n-1)+4 positions of its input, starting at 2*start - 1 (stride 2, padding 1). */
  p->m[k] = 1;
  for (int j = k; j > 0; j--) p->m[j - 1] = 2 * (p->m[j] - 1) + 4;
  p->r = 2 * (p->m[0] - 1) + 4;
  /* Window starts as affine functions of the target location o: start_j = 2^(k-j) o + off_j. */
  int off = 0;
  p->start_off[k] = 0;
  for (int j = k; j >= 0; j--) {
    off = 2 * off - 1;
    p->start_off[j == 0 ? NEURON_MAX_CONV : j - 1] = off;
  }
  const size_t B = (size_t)max_batch, rr = (size_t)p->r * (size_t)p->r;
  p->xn = wcmi_alloc(ctx, B * (size_t)p->C * rr, sizeof(float));
  p->inmask = wcmi_alloc(ctx, B * rr, sizeof(float));
  size_t big = (size_t)p->C * rr;
  for (int j = 0; j < k; j++) {
    size_t n = (size_t)p->conv[j].O * (size_t)p->m[j] * (size_t)p->m[j];
    if (n > big) big = n;
    p->y[j] = wcmi_alloc(ctx, B * n, sizeof(float));
    p->a[j] = wcmi_alloc(ctx, B * n, sizeof(float));
    p->mask[j] = wcmi_alloc(ctx, B * (size_t)p->m[j] * (size_t)p->m[j], sizeof(float));
    if (!p->y[j] || !p->a[j] || !p->mask[j]) return ctx->status;
  }
  p->out = wcmi_alloc(ctx, B, sizeof(float));
  p->act = wcmi_alloc(ctx, B, sizeof(float));
  p->g0 = wcmi_alloc(ctx, B * big, sizeof(float));
  p->g1 = wcmi_alloc(ctx, B * big, sizeof(float));
  for (int j = 0; j <= k; j++) {
    wcmi_conv2d_dims d = conv_dims(p, j, max_batch, j == k);
    size_t f = wcmi_conv2d_workspace_floats(&d);
    if (f > p->ws_floats) p->ws_floats = f;
  }
  p->ws = wcmi_alloc(ctx, p->ws_floats ? p->ws_floats : 1, sizeof(float));
  if (!p->xn || !p->inmask || !p->out || !p->act || !p->g0 || !p->g1 || !p->ws) return ctx->status;
  return WCMI_OK;
}

/* Top-left input pixel of the receptive field of location o (per axis). */
int neuron_patch_start(const neuron_prefix *p, int o) { return (1 << p->k) * 2 * o + p->start_off[NEURON_MAX_CONV]; }

/* Masks of the samples' locations (loc[i] = oy * locs + ox) for a batch. */
void neuron_prefix_set_masks(neuron_prefix *p, const int32_t *loc, int N) {
  const int r = p->r;
  for (int i = 0; i < N; i++) {
    const int oy = loc[i] / p->locs, ox = loc[i] % p->locs;
    const int H = p->conv[0].full * 2; /* input size (28 or 32): 2 * conv0 map */
    const int sy = neuron_patch_start(p, oy), sx = neuron_patch_start(p, ox);
    for (int u = 0; u < r; u++)
      for (int v = 0; v < r; v++)
        p->inmask[(int64_t)i * r * r + u * r + v] = (sy + u >= 0 && sy + u < H && sx + v >= 0 && sx + v < H) ? 1.0f : 0.0f;
    for (int j = 0; j < p->k; j++) {
      const int mj = p->m[j], scale = 1 << (p->k - j), full = p->conv[j].full;
      const int by = scale * oy + p->start_off[j], bx = scale * ox + p->start_off[j];
      for (int u = 0; u < mj; u++)
        for (int v = 0; v < mj; v++)
          p->mask[j][(int64_t)i * mj * mj + u * mj + v] =
              (by + u >= 0 && by + u < full && bx + v >= 0 && bx + v < full) ? 1.0f : 0.0f;
    }
  }
}

/* act (N) of the target channel for patches x (N, C, r, r) in [0,1]; masks must be set. Pixels in
 * the first conv's padding are ignored (normalized to 0, as the full-image conv sees them). */
void neuron_prefix_forward(neuron_prefix *p, const float *x, int N) {
  const int C = p->C, rr = p->r * p->r;
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++)
      for (int q = 0; q < rr; q++) {
        const int64_t at = ((int64_t)i * C + c) * rr + q;
        float v = fminf(fmaxf(x[at], 0.0f), 1.0f);
        p->xn[at] = p->inmask[(int64_t)i * rr + q] * (v - p->mean[c]) / p->std[c];
      }
  const float *in = p->xn;
  for (int j = 0; j < p->k; j++) {
    const neuron_conv *L = &p->conv[j];
    wcmi_conv2d_dims d = conv_dims(p, j, N, 0);
    const int S = p->m[j] * p->m[j];
    wcmi_conv2d_forward(&d, in, L->w, NULL, p->y[j], p->ws);
    wcmi_batchnorm_forward_eval(N, L->O, S, p->y[j], L->gamma, L->beta, L->rmean, L->rvar, BN_EPS, p->a[j]);
    wcmi_relu_forward((int64_t)N * L->O * S, p->a[j], p->a[j]);
    for (int i = 0; i < N; i++)
      for (int o = 0; o < L->O; o++)
        for (int s = 0; s < S; s++) p->a[j][((int64_t)i * L->O + o) * S + s] *= p->mask[j][(int64_t)i * S + s];
    in = p->a[j];
  }
  const neuron_conv *T = &p->conv[p->k];
  const int Cin = p->k == 0 ? C : p->conv[p->k - 1].O;
  wcmi_conv2d_dims d = conv_dims(p, p->k, N, 1);
  wcmi_conv2d_forward(&d, in, T->w + (int64_t)p->channel * Cin * 16, NULL, p->out, p->ws);
  const int c = p->channel;
  const float scale = T->gamma[c] / sqrtf(T->rvar[c] + BN_EPS);
  for (int i = 0; i < N; i++) p->act[i] = (p->out[i] - T->rmean[c]) * scale + T->beta[c];
}

/* dx (N, C, r, r) from dact (N) through the last prefix_forward. */
void neuron_prefix_backward(neuron_prefix *p, const float *dact, int N, float *dx) {
  const int c = p->channel, C = p->C, rr = p->r * p->r;
  const neuron_conv *T = &p->conv[p->k];
  const float scale = T->gamma[c] / sqrtf(T->rvar[c] + BN_EPS);
  float *dout = p->g1;
  for (int i = 0; i < N; i++) dout[i] = dact[i] * scale;
  const int Cin = p->k == 0 ? C : p->conv[p->k - 1].O;
  wcmi_conv2d_dims d = conv_dims(p, p->k, N, 1);
  const float *in = p->k == 0 ? p->xn : p->a[p->k - 1];
  float *din = p->g0;
  wcmi_conv2d_backward(&d, in, T->w + (int64_t)c * Cin * 16, dout, din, NULL, NULL, p->ws);
  for (int j = p->k - 1; j >= 0; j--) {
    const neuron_conv *L = &p->conv[j];
    const int S = p->m[j] * p->m[j];
    const int64_t n = (int64_t)N * L->O * S;
    for (int i = 0; i < N; i++)
      for (int o = 0; o < L->O; o++)
        for (int s = 0; s < S; s++) din[((int64_t)i * L->O + o) * S + s] *= p->mask[j][(int64_t)i * S + s];
    /* ReLU backward reads the masked output: masked positions already carry zero gradient. */
    wcmi_relu_backward(n, p->a[j], din, din);
    float *dy = din == p->g0 ? p->g1 : p->g0;
    wcmi_batchnorm_backward_eval(N, L->O, S, p->y[j], L->gamma, L->rmean, L->rvar, BN_EPS, din, dy, NULL, NULL);
    wcmi_conv2d_dims dj = conv_dims(p, j, N, 0);
    float *dprev = dy == p->g0 ? p->g1 : p->g0;
    wcmi_conv2d_backward(&dj, j == 0 ? p->xn : p->a[j - 1], L->w, dy, dprev, NULL, NULL, p->ws);
    din = dprev;
  }
  /* Normalization: d/dx of (clamp(x) - mean) / std inside [0,1]; padding pixels get nothing. */
  for (int i = 0; i < N; i++)
    for (int ch = 0; ch < C; ch++)
      for (int q = 0; q < rr; q++) {
        const int64_t at = ((int64_t)i * C + ch) * rr + q;
        dx[at] = din[at] * p->inmask[(int64_t)i * rr + q] / p->std[ch];
      }
}

/* ---- samples: (image, location) pairs ------------------------------------------------------ */

void neuron_patches_free(neuron_patches *s) {
  wcmi_free(s->x);
  wcmi_free(s->loc);
  memset(s, 0, sizeof *s);
}

/* Up to `want` samples: images in a seeded random order, every location of each image. */
int neuron_cut_patches(wcmi_ctx *ctx, const neuron_prefix *p, const wcmi_dataset *d, int64_t want, uint64_t seed,
                       uint64_t stream, neuron_patches *s) {
  memset(s, 0, sizeof *s);
  const int64_t L = (int64_t)p->locs * p->locs, rr = (int64_t)p->r * p->r, H = d->h, W = d->w;
  int64_t n = d->n * L;
  if (want < n) n = want;
  s->n = n;
  s->x = wcmi_calloc(ctx, (size_t)(n * p->C * rr), sizeof(float));
  s->loc = wcmi_alloc(ctx, (size_t)n, sizeof(int32_t));
  int64_t *order = wcmi_alloc(ctx, (size_t)d->n, sizeof(int64_t));
  if (!s->x || !s->loc || !order) {
    wcmi_free(order);
    neuron_patches_free(s);
    return ctx->status;
  }
  wcmi_rng rng;
  wcmi_rng_derive(&rng, seed, stream);
  for (int64_t i = 0; i < d->n; i++) order[i] = i;
  wcmi_rng_shuffle(&rng, order, d->n);
  for (int64_t i = 0; i < n; i++) {
    const int64_t img = order[i / L];
    const int l = (int)(i % L), oy = l / p->locs, ox = l % p->locs;
    const int sy = neuron_patch_start(p, oy), sx = neuron_patch_start(p, ox);
    s->loc[i] = l;
    for (int c = 0; c < p->C; c++)
      for (int u = 0; u < p->r; u++)
        for (int v = 0; v < p->r; v++) {
          const int64_t iy = sy + u, ix = sx + v;
          if (iy >= 0 && iy < H && ix >= 0 && ix < W)
            s->x[((i * p->C + c) * p->r + u) * p->r + v] = d->images[((img * d->c + c) * H + iy) * W + ix];
        }
  }
  wcmi_free(order);
  return WCMI_OK;
}

