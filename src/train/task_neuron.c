/* Per-neuron vulnerability (the paper's Figure 3; dead code in the authors' release): normal and
 * worst-case MI between each channel of one conv layer of the encoder, read as a scalar
 * representation of the input patch in its receptive field, and that patch. Every spatial location
 * of every image is a sample. Method and the reasons for it: docs/estimate-mi.md, "Per-neuron".
 *
 * The activation at output location o depends on the input pixels of o's receptive field only, so
 * it is computed exactly from the patch alone by a "patch prefix": the encoder's convs up to the
 * layer with padding 0 on the patch (which was cut from the image with the first conv's zero padding
 * in normalized space), BatchNorm in eval mode, ReLU, and a mask that zeroes the intermediate
 * positions that fall outside the image's maps (there the full-image net sees the next conv's zero
 * padding, not an activation). A perturbation of the patch then moves only this location's
 * activation, as each sample's own l-inf ball requires, at a cost of one patch-sized prefix per
 * sample instead of one full-image prefix per (image, location). */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { STREAM_NEURON_SAMPLES = 111, STREAM_NEURON_CRITIC = 112, STREAM_NEURON_ATTACK = 113 };
#define MAX_CONV 3
#define BN_EPS 1e-5f

void wcmi_neuron_opts_default(wcmi_neuron_opts *o) {
  memset(o, 0, sizeof *o);
  o->layer = "layer1.0";
  o->max_neurons = 0;
  o->train_samples = 4096;
  o->test_samples = 1024;
  o->hidden = 128;
  o->hsize = 64;
}

/* ---- the patch prefix ---------------------------------------------------------------------- */

typedef struct conv_layer {
  const float *w, *gamma, *beta, *rmean, *rvar; /* encoder.layer<j>.{0,1} */
  int O;                                         /* output channels */
  int full;                                      /* output map size on the full image */
} conv_layer;

typedef struct prefix {
  int k;          /* target conv index (0, 1, 2) */
  int C, r;       /* patch (C, r, r) */
  int m[MAX_CONV]; /* map size of conv j on the patch */
  int start_off[MAX_CONV + 1]; /* window start of conv j's output, as 2^(k-j) o + off; [MAX_CONV]: the input */
  int locs;       /* full-image locations of the target layer per side */
  conv_layer conv[MAX_CONV];
  float mean[3], std[3];
  int max_batch;
  int channel;    /* target channel */
  /* activations for up to max_batch samples */
  float *xn;                  /* normalized input (B, C, r, r) */
  float *y[MAX_CONV];         /* conv outputs, pre-BN */
  float *a[MAX_CONV];         /* after BN, ReLU and the mask (input of the next conv) */
  float *mask[MAX_CONV];      /* (B, m_j * m_j): 1 inside the image's map, 0 in the padding */
  float *inmask;              /* (B, r * r): 1 for image pixels, 0 for the first conv's padding */
  float *out;                 /* (B): target channel's conv output, pre-BN */
  float *act;                 /* (B): the activation, BN_k(out) for the channel (same MI: affine) */
  float *g0, *g1, *ws;        /* backward scratch and conv workspace */
  size_t ws_floats;
} prefix;

static int layer_index(const char *name) {
  for (int j = 0; j < MAX_CONV; j++) {
    char n[32];
    snprintf(n, sizeof n, "layer%d.0", j);
    if (!strcmp(name, n)) return j;
  }
  return -1;
}

static wcmi_conv2d_dims conv_dims(const prefix *p, int j, int N, int one_channel) {
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

static void prefix_free(prefix *p) {
  wcmi_free(p->xn);
  for (int j = 0; j < MAX_CONV; j++) {
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
static int prefix_init(wcmi_ctx *ctx, prefix *p, const wcmi_model *m, int k, int max_batch) {
  memset(p, 0, sizeof *p);
  p->k = k;
  p->C = m->in.C;
  p->max_batch = max_batch;
  for (int c = 0; c < 3; c++) p->mean[c] = m->in.mean[c], p->std[c] = m->in.std[c];
  int full = m->in.H;
  for (int j = 0; j <= k; j++) {
    conv_layer *L = &p->conv[j];
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
    p->start_off[j == 0 ? MAX_CONV : j - 1] = off;
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
static int patch_start(const prefix *p, int o) { return (1 << p->k) * 2 * o + p->start_off[MAX_CONV]; }

/* Masks of the samples' locations (loc[i] = oy * locs + ox) for a batch. */
static void prefix_set_masks(prefix *p, const int32_t *loc, int N) {
  const int r = p->r;
  for (int i = 0; i < N; i++) {
    const int oy = loc[i] / p->locs, ox = loc[i] % p->locs;
    const int H = p->conv[0].full * 2; /* input size (28 or 32): 2 * conv0 map */
    const int sy = patch_start(p, oy), sx = patch_start(p, ox);
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
static void prefix_forward(prefix *p, const float *x, int N) {
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
    const conv_layer *L = &p->conv[j];
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
  const conv_layer *T = &p->conv[p->k];
  const int Cin = p->k == 0 ? C : p->conv[p->k - 1].O;
  wcmi_conv2d_dims d = conv_dims(p, p->k, N, 1);
  wcmi_conv2d_forward(&d, in, T->w + (int64_t)p->channel * Cin * 16, NULL, p->out, p->ws);
  const int c = p->channel;
  const float scale = T->gamma[c] / sqrtf(T->rvar[c] + BN_EPS);
  for (int i = 0; i < N; i++) p->act[i] = (p->out[i] - T->rmean[c]) * scale + T->beta[c];
}

/* dx (N, C, r, r) from dact (N) through the last prefix_forward. */
static void prefix_backward(prefix *p, const float *dact, int N, float *dx) {
  const int c = p->channel, C = p->C, rr = p->r * p->r;
  const conv_layer *T = &p->conv[p->k];
  const float scale = T->gamma[c] / sqrtf(T->rvar[c] + BN_EPS);
  float *dout = p->g1;
  for (int i = 0; i < N; i++) dout[i] = dact[i] * scale;
  const int Cin = p->k == 0 ? C : p->conv[p->k - 1].O;
  wcmi_conv2d_dims d = conv_dims(p, p->k, N, 1);
  const float *in = p->k == 0 ? p->xn : p->a[p->k - 1];
  float *din = p->g0;
  wcmi_conv2d_backward(&d, in, T->w + (int64_t)c * Cin * 16, dout, din, NULL, NULL, p->ws);
  for (int j = p->k - 1; j >= 0; j--) {
    const conv_layer *L = &p->conv[j];
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

typedef struct patch_set {
  int64_t n;
  float *x;     /* (n, C, r, r) patches in [0,1]; padding pixels hold 0 (ignored by the prefix) */
  int32_t *loc; /* (n) oy * locs + ox */
} patch_set;

static void patch_set_free(patch_set *s) {
  wcmi_free(s->x);
  wcmi_free(s->loc);
  memset(s, 0, sizeof *s);
}

/* Up to `want` samples: images in a seeded random order, every location of each image. */
static int cut_patches(wcmi_ctx *ctx, const prefix *p, const wcmi_dataset *d, int64_t want, uint64_t seed,
                       patch_set *s) {
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
    patch_set_free(s);
    return ctx->status;
  }
  wcmi_rng rng;
  wcmi_rng_derive(&rng, seed, STREAM_NEURON_SAMPLES);
  for (int64_t i = 0; i < d->n; i++) order[i] = i;
  wcmi_rng_shuffle(&rng, order, d->n);
  for (int64_t i = 0; i < n; i++) {
    const int64_t img = order[i / L];
    const int l = (int)(i % L), oy = l / p->locs, ox = l % p->locs;
    const int sy = patch_start(p, oy), sx = patch_start(p, ox);
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

/* ---- the per-channel critic and its objective ---------------------------------------------- */

/* T(patch, a) = <f(patch), h(a)>: f an MLP on the flattened patch, h an MLP embedding of the
 * scalar activation; the dot product over hsize is the paper's critic form with one location. */
typedef struct neuron_critic {
  wcmi_ctx *ctx;
  prefix *p;
  wcmi_net *local, *global; /* f and h */
  wcmi_mi_cfg mi;
  wcmi_grad_path path;
  int H;
  void *ws;
  size_t ws_bytes;
  float *dLx, *dGz, *dx;
} neuron_critic;

static int critic_build(wcmi_ctx *ctx, neuron_critic *nc, prefix *p, const wcmi_neuron_opts *o, int B, uint64_t seed) {
  wcmi_rng rng;
  wcmi_rng_derive(&rng, seed, STREAM_NEURON_CRITIC);
  nc->local = wcmi_net_new(ctx, "neuron_local", wcmi_shape3(p->C, p->r, p->r));
  int rc = nc->local ? WCMI_OK : ctx->status;
  if (!rc) rc = wcmi_net_add_flatten(nc->local);
  if (!rc) rc = wcmi_net_add_linear(nc->local, "layer0", o->hidden, 1);
  if (!rc) rc = wcmi_net_add_relu(nc->local);
  if (!rc) rc = wcmi_net_add_linear(nc->local, "layer1", o->hsize, 1);
  if (!rc) rc = wcmi_net_finalize(nc->local, B, &rng);
  if (!rc && !(nc->global = wcmi_net_new(ctx, "neuron_global", wcmi_shape1(1)))) rc = ctx->status;
  if (!rc) rc = wcmi_net_add_linear(nc->global, "layer0", o->hidden, 1);
  if (!rc) rc = wcmi_net_add_relu(nc->global);
  if (!rc) rc = wcmi_net_add_linear(nc->global, "layer1", o->hsize, 1);
  if (!rc) rc = wcmi_net_finalize(nc->global, B, &rng);
  return rc;
}

static void critic_free_nets(neuron_critic *nc) {
  wcmi_net_free(nc->local);
  wcmi_net_free(nc->global);
  nc->local = nc->global = NULL;
}

/* Loss of the critic on patches x (N) and, per `grads`, parameter gradients (WCMI_DIM_ESTIMATOR_PARAMS)
 * and the input gradient into nc->dx (WCMI_DIM_INPUT, along nc->path). Masks must be set. */
static int critic_step(neuron_critic *nc, const float *x, int N, int grads, float *loss) {
  prefix *p = nc->p;
  prefix_forward(p, x, N);
  const float *gz = wcmi_net_forward(nc->global, p->act, N, 0);
  /* The local critic sees the patch as the prefix does: padding pixels at 0. */
  const float *lx = gz ? wcmi_net_forward(nc->local, p->xn, N, 0) : NULL;
  if (!lx) return nc->ctx->status ? nc->ctx->status : WCMI_EINVAL;
  int rc = wcmi_mi_forward(nc->ctx, nc->mi, N, nc->H, 1, lx, gz, nc->ws, nc->ws_bytes, loss);
  if (rc || !grads) return rc;
  const int est = (grads & WCMI_DIM_ESTIMATOR_PARAMS) != 0, input = (grads & WCMI_DIM_INPUT) != 0;
  const int both = input && nc->path == WCMI_PATH_BOTH;
  if ((rc = wcmi_mi_backward(nc->ctx, nc->mi, N, nc->H, 1, lx, gz, 1.0f, nc->ws, nc->ws_bytes,
                             (est || both) ? nc->dLx : NULL, nc->dGz)))
    return rc;
  if ((rc = wcmi_net_backward(nc->global, nc->dGz, (est ? WCMI_GRAD_PARAMS : 0) | (input ? WCMI_GRAD_INPUT : 0)))) return rc;
  if ((est || both) && (rc = wcmi_net_backward(nc->local, nc->dLx, (est ? WCMI_GRAD_PARAMS : 0) | (both ? WCMI_GRAD_INPUT : 0))))
    return rc;
  if (input) {
    prefix_backward(p, wcmi_net_input_grad(nc->global), N, nc->dx);
    if (both) {
      /* The local critic's input is xn = mask * (x - mean) / std. */
      const float *gl = wcmi_net_input_grad(nc->local);
      const int rr = p->r * p->r;
      for (int i = 0; i < N; i++)
        for (int c = 0; c < p->C; c++)
          for (int q = 0; q < rr; q++) {
            const int64_t at = ((int64_t)i * p->C + c) * rr + q;
            nc->dx[at] += gl[at] * p->inmask[(int64_t)i * rr + q] / p->std[c];
          }
    }
  }
  return WCMI_OK;
}

static int critic_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  (void)succ;
  neuron_critic *nc = user;
  int rc = critic_step(nc, x, N, grad ? WCMI_DIM_INPUT : 0, loss);
  if (!rc && grad) memcpy(grad, nc->dx, (size_t)N * (size_t)nc->p->C * (size_t)nc->p->r * (size_t)nc->p->r * sizeof(float));
  return rc;
}

/* ---- one channel, one case ----------------------------------------------------------------- */

typedef struct neuron_run {
  wcmi_ctx *ctx;
  const wcmi_task_cfg *cfg;
  const wcmi_neuron_opts *o;
  prefix p;
  patch_set train, test;
  neuron_critic nc;
  wcmi_attack *attack;
  float *xb, *xadv; /* (B, C, r, r) */
  int32_t *lb;      /* (B) */
  int64_t *order;
} neuron_run;

static void gather(neuron_run *r, const patch_set *s, const int64_t *idx, int64_t first, int B) {
  const int64_t D = (int64_t)r->p.C * r->p.r * r->p.r;
  for (int i = 0; i < B; i++) {
    const int64_t k = idx ? idx[first + i] : first + i;
    memcpy(r->xb + i * D, s->x + k * D, (size_t)D * sizeof(float));
    r->lb[i] = s->loc[k];
  }
}

/* Trains a fresh critic for the current channel (normal: clean patches; worst: each batch moved by
 * the MI attack against the current critic), keeps the critic of the epoch with the best training
 * estimate (Algorithm 2) and returns the mean held-out estimate under the same attack. */
static int neuron_case(neuron_run *r, int worst, uint64_t seed, double *test_mi) {
  wcmi_ctx *ctx = r->ctx;
  const wcmi_task_cfg *c = r->cfg;
  const int B = c->batch_size;
  neuron_critic *nc = &r->nc;
  wcmi_net *best_local = NULL, *best_global = NULL;
  wcmi_optim *opt = NULL;
  neuron_critic shadow = *nc;
  int rc = critic_build(ctx, nc, &r->p, r->o, B, seed);
  /* A second pair with the same structure holds the selected parameters. */
  if (!rc) rc = critic_build(ctx, &shadow, &r->p, r->o, B, seed);
  best_local = shadow.local;
  best_global = shadow.global;
  if (!rc) {
    wcmi_net *nets[2] = {nc->local, nc->global};
    wcmi_adam_cfg a = wcmi_adam_defaults();
    a.lr = (float)c->lr;
    if (!(opt = wcmi_adam_new(ctx, nets, 2, a))) rc = ctx->status;
  }
  wcmi_rng arng;
  wcmi_rng_derive(&arng, seed, STREAM_NEURON_ATTACK);
  wcmi_objective obj = {0, critic_eval, nc};
  if (!rc) rc = wcmi_attack_set_cfg(r->attack, &c->attack);
  const int64_t nb = r->train.n / B, nt = r->test.n / B;
  double best = -INFINITY;
  for (int64_t i = 0; i < r->train.n; i++) r->order[i] = i;
  for (int epoch = 0; !rc && epoch < c->epochs; epoch++) {
    wcmi_rng_shuffle(&arng, r->order, r->train.n);
    double sum = 0;
    for (int64_t b = 0; b < nb && !rc; b++) {
      gather(r, &r->train, r->order, b * B, B);
      prefix_set_masks(&r->p, r->lb, B);
      const float *xt = r->xb;
      if (worst) {
        rc = wcmi_pgd_run(r->attack, &obj, r->xb, B, &arng, r->xadv, NULL);
        xt = r->xadv;
      }
      float loss = 0;
      if (!rc) {
        wcmi_optim_zero_grad(opt);
        rc = critic_step(nc, xt, B, WCMI_DIM_ESTIMATOR_PARAMS, &loss);
      }
      if (!rc && !isfinite(loss)) rc = wcmi_fail(ctx, WCMI_ENUMERIC, "per-neuron: MI loss is %g (channel %d)", (double)loss, r->p.channel);
      if (!rc) wcmi_optim_step(opt);
      sum += wcmi_mi_estimate(nc->mi, B, 1, loss);
    }
    if (!rc && sum / (double)nb > best) {
      best = sum / (double)nb;
      rc = wcmi_net_copy_params(ctx, best_local, nc->local);
      if (!rc) rc = wcmi_net_copy_params(ctx, best_global, nc->global);
    }
    if (!rc && ctx->interrupt) rc = wcmi_fail(ctx, WCMI_EINTR, "per-neuron: interrupted at channel %d", r->p.channel);
  }
  if (!rc) rc = wcmi_net_copy_params(ctx, nc->local, best_local);
  if (!rc) rc = wcmi_net_copy_params(ctx, nc->global, best_global);
  double s = 0;
  for (int64_t b = 0; b < nt && !rc; b++) {
    gather(r, &r->test, NULL, b * B, B);
    prefix_set_masks(&r->p, r->lb, B);
    const float *xt = r->xb;
    if (worst) {
      rc = wcmi_pgd_run(r->attack, &obj, r->xb, B, &arng, r->xadv, NULL);
      xt = r->xadv;
    }
    float loss = 0;
    if (!rc) rc = critic_step(nc, xt, B, 0, &loss);
    s += wcmi_mi_estimate(nc->mi, B, 1, loss);
  }
  *test_mi = nt ? s / (double)nt : NAN;
  wcmi_optim_free(opt);
  critic_free_nets(nc);
  critic_free_nets(&shadow);
  return rc;
}

/* ---- the task ------------------------------------------------------------------------------ */

static void neuron_run_free(neuron_run *r) {
  prefix_free(&r->p);
  patch_set_free(&r->train);
  patch_set_free(&r->test);
  critic_free_nets(&r->nc);
  wcmi_free(r->nc.ws);
  wcmi_free(r->nc.dLx);
  wcmi_free(r->nc.dGz);
  wcmi_free(r->nc.dx);
  wcmi_attack_free(r->attack);
  wcmi_free(r->xb);
  wcmi_free(r->xadv);
  wcmi_free(r->lb);
  wcmi_free(r->order);
}

static void write_histogram(wcmi_jsonw *w, const char *key, const double *v, int n, int bins) {
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (v[i] < lo) lo = v[i];
    if (v[i] > hi) hi = v[i];
  }
  if (!(hi > lo)) hi = lo + 1e-6;
  int counts[64] = {0};
  for (int i = 0; i < n; i++) {
    int b = (int)((v[i] - lo) / (hi - lo) * bins);
    counts[b >= bins ? bins - 1 : b < 0 ? 0 : b]++;
  }
  wcmi_jsonw_key(w, key);
  wcmi_jsonw_begin_object(w);
  wcmi_jsonw_key(w, "edges");
  wcmi_jsonw_begin_array(w);
  for (int b = 0; b <= bins; b++) wcmi_jsonw_double(w, lo + (hi - lo) * b / bins);
  wcmi_jsonw_end_array(w);
  wcmi_jsonw_key(w, "counts");
  wcmi_jsonw_begin_array(w);
  for (int b = 0; b < bins; b++) wcmi_jsonw_int(w, counts[b]);
  wcmi_jsonw_end_array(w);
  wcmi_jsonw_end_object(w);
}

static int mkdir_one(wcmi_ctx *ctx, const char *dir) {
  if (mkdir(dir, 0755) && errno != EEXIST) return wcmi_fail(ctx, WCMI_EIO, "%s: cannot create: %s", dir, strerror(errno));
  return WCMI_OK;
}

int wcmi_task_neuron_vulnerability(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_neuron_opts *opts, char **summary) {
  wcmi_neuron_opts o;
  if (opts) o = *opts;
  else wcmi_neuron_opts_default(&o);
  if (!cfg->model) return wcmi_fail(ctx, WCMI_EINVAL, "per-neuron: no model to analyse (--model FILE)");
  if (!o.layer) return wcmi_fail(ctx, WCMI_EINVAL, "per-neuron: no layer (--layer NAME)");
  const int k = layer_index(o.layer);
  if (k < 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "per-neuron: '%s' is not a conv layer of the encoder (layer0.0, layer1.0 or layer2.0)", o.layer);
  if (cfg->epochs < 1 || o.train_samples < cfg->batch_size || o.test_samples < cfg->batch_size || o.hidden < 1 || o.hsize < 1)
    return wcmi_fail(ctx, WCMI_EINVAL, "per-neuron: need --epochs >= 1 and at least one batch (%d) of train and test samples",
                     cfg->batch_size);
  if (cfg->out_dir && mkdir_one(ctx, cfg->out_dir)) return ctx->status;
  wcmi_model m;
  int rc = wcmi_model_load(ctx, cfg->model, 1, &m, NULL);
  if (rc) return rc;
  if (strcmp(m.dataset, cfg->data)) {
    rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: the model is for %s but the data is %s (pass --data %s)", cfg->model, m.dataset,
                   cfg->data, m.dataset);
    wcmi_model_free(&m);
    return rc;
  }
  neuron_run r;
  memset(&r, 0, sizeof r);
  r.ctx = ctx;
  r.cfg = cfg;
  r.o = &o;
  const int B = cfg->batch_size;
  wcmi_dataset train, test;
  memset(&train, 0, sizeof train);
  memset(&test, 0, sizeof test);
  double *normal = NULL, *worst = NULL;
  double t0 = wcmi_now();
  rc = prefix_init(ctx, &r.p, &m, k, B);
  if (!rc) rc = task_open_data(ctx, cfg, &train, &test);
  if (!rc) rc = cut_patches(ctx, &r.p, &train, o.train_samples, cfg->seed, &r.train);
  if (!rc) rc = cut_patches(ctx, &r.p, &test, o.test_samples, cfg->seed + 1, &r.test);
  wcmi_dataset_free(&train);
  wcmi_dataset_free(&test);
  if (!rc && (r.train.n < B || r.test.n < B))
    rc = wcmi_fail(ctx, WCMI_EINVAL, "per-neuron: %lld train / %lld test patches are fewer than one batch of %d",
                   (long long)r.train.n, (long long)r.test.n, B);
  const int64_t D = (int64_t)r.p.C * r.p.r * r.p.r;
  if (!rc) {
    r.nc.ctx = ctx;
    r.nc.p = &r.p;
    r.nc.mi = cfg->mi;
    r.nc.path = cfg->grad_path;
    r.nc.H = o.hsize;
    if (!(rc = wcmi_mi_check(ctx, cfg->mi, B, o.hsize, 1))) {
      r.nc.ws_bytes = wcmi_mi_workspace_bytes(B, o.hsize, 1);
      r.nc.ws = wcmi_alloc(ctx, r.nc.ws_bytes, 1);
      r.nc.dLx = wcmi_alloc(ctx, (size_t)B * (size_t)o.hsize, sizeof(float));
      r.nc.dGz = wcmi_alloc(ctx, (size_t)B * (size_t)o.hsize, sizeof(float));
      r.nc.dx = wcmi_alloc(ctx, (size_t)(B * D), sizeof(float));
      r.xb = wcmi_alloc(ctx, (size_t)(B * D), sizeof(float));
      r.xadv = wcmi_alloc(ctx, (size_t)(B * D), sizeof(float));
      r.lb = wcmi_alloc(ctx, (size_t)B, sizeof(int32_t));
      r.order = wcmi_alloc(ctx, (size_t)r.train.n, sizeof(int64_t));
      r.attack = wcmi_attack_new(ctx, &cfg->attack, B, D);
      if (!r.nc.ws || !r.nc.dLx || !r.nc.dGz || !r.nc.dx || !r.xb || !r.xadv || !r.lb || !r.order || !r.attack) rc = ctx->status;
    }
  }
  const int channels = r.p.conv[k].O;
  const int n = o.max_neurons > 0 && o.max_neurons < channels ? o.max_neurons : channels;
  if (!rc) {
    normal = wcmi_alloc(ctx, (size_t)n, sizeof(double));
    worst = wcmi_alloc(ctx, (size_t)n, sizeof(double));
    if (!normal || !worst) rc = ctx->status;
  }
  for (int ch = 0; ch < n && !rc; ch++) {
    r.p.channel = ch;
    /* Each channel and case gets its own fresh critic, seeded by (seed, channel, case). */
    rc = neuron_case(&r, 0, cfg->seed * 1000003u + (uint64_t)ch * 2u, &normal[ch]);
    if (!rc) rc = neuron_case(&r, 1, cfg->seed * 1000003u + (uint64_t)ch * 2u + 1u, &worst[ch]);
    if (!rc && cfg->progress)
      fprintf(stderr, "[vulnerability] %s channel %d/%d: normal MI %.4f worst MI %.4f (%.0fs)\n", o.layer, ch + 1, n,
              normal[ch], worst[ch], wcmi_now() - t0);
  }
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  if (!rc) {
    double *rv = wcmi_alloc(ctx, (size_t)n, sizeof(double));
    if (!rv) rc = ctx->status;
    for (int i = 0; !rc && i < n; i++) rv[i] = normal[i] - worst[i];
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "task", "vulnerability-per-neuron");
    wcmi_jsonw_kv_string(&w, "model", cfg->model);
    wcmi_jsonw_kv_string(&w, "dataset", cfg->data);
    wcmi_jsonw_kv_string(&w, "layer", o.layer);
    wcmi_jsonw_kv_string(&w, "activation", "conv output of the channel after its BatchNorm (eval; affine, so the same MI)");
    wcmi_jsonw_kv_int(&w, "channels", channels);
    wcmi_jsonw_kv_int(&w, "analysed", n);
    wcmi_jsonw_kv_int(&w, "receptive_field", r.p.r);
    wcmi_jsonw_kv_int(&w, "locations", (int64_t)r.p.locs * r.p.locs);
    wcmi_jsonw_kv_int(&w, "train_samples", r.train.n);
    wcmi_jsonw_kv_int(&w, "test_samples", r.test.n);
    wcmi_jsonw_key(&w, "critic");
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "form", "<MLP(flattened patch), MLP(activation)>");
    wcmi_jsonw_kv_string(&w, "estimator", wcmi_mi_estimator_name(cfg->mi.estimator));
    wcmi_jsonw_kv_int(&w, "hidden", o.hidden);
    wcmi_jsonw_kv_int(&w, "hsize", o.hsize);
    wcmi_jsonw_kv_int(&w, "epochs", cfg->epochs);
    wcmi_jsonw_kv_int(&w, "batch_size", B);
    wcmi_jsonw_kv_double(&w, "lr", cfg->lr);
    wcmi_jsonw_end_object(&w);
    wcmi_jsonw_key(&w, "attack");
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "target", "MI loss of the channel's critic, on the patch pixels (the same attack in training and evaluation)");
    wcmi_jsonw_kv_string(&w, "norm", cfg->attack.norm == WCMI_NORM_L2 ? "l2" : "linf");
    wcmi_jsonw_kv_double(&w, "eps", cfg->attack.eps);
    wcmi_jsonw_kv_double(&w, "step", cfg->attack.step);
    wcmi_jsonw_kv_int(&w, "steps", cfg->attack.steps);
    wcmi_jsonw_kv_bool(&w, "random_start", cfg->attack.random_start);
    wcmi_jsonw_kv_int(&w, "restarts", cfg->attack.restarts);
    wcmi_jsonw_kv_string(&w, "grad_path", cfg->grad_path == WCMI_PATH_BOTH ? "both" : "encoder");
    wcmi_jsonw_end_object(&w);
    wcmi_jsonw_key(&w, "neurons");
    wcmi_jsonw_begin_array(&w);
    for (int i = 0; !rc && i < n; i++) {
      wcmi_jsonw_begin_object(&w);
      wcmi_jsonw_kv_int(&w, "channel", i);
      wcmi_jsonw_kv_double(&w, "normal_mi", normal[i]);
      wcmi_jsonw_kv_double(&w, "worst_mi", worst[i]);
      wcmi_jsonw_kv_double(&w, "rv", rv[i]);
      wcmi_jsonw_end_object(&w);
    }
    wcmi_jsonw_end_array(&w);
    wcmi_jsonw_key(&w, "histogram");
    wcmi_jsonw_begin_object(&w);
    if (!rc) {
      write_histogram(&w, "normal_mi", normal, n, 10);
      write_histogram(&w, "worst_mi", worst, n, 10);
      write_histogram(&w, "rv", rv, n, 10);
    }
    wcmi_jsonw_end_object(&w);
    wcmi_jsonw_kv_double(&w, "seconds", wcmi_now() - t0);
    wcmi_jsonw_end_object(&w);
    wcmi_free(rv);
    if (!rc) rc = wcmi_jsonw_finish(ctx, &w);
  }
  if (!rc && cfg->out_dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/per_neuron.json", cfg->out_dir);
    rc = wcmi_atomic_write(ctx, path, wcmi_jsonw_text(&w), strlen(wcmi_jsonw_text(&w)));
    snprintf(path, sizeof path, "%s/summary.json", cfg->out_dir);
    if (!rc) rc = wcmi_atomic_write(ctx, path, wcmi_jsonw_text(&w), strlen(wcmi_jsonw_text(&w)));
  }
  if (!rc && !(*summary = strdup(wcmi_jsonw_text(&w)))) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  wcmi_jsonw_free(&w);
  wcmi_free(normal);
  wcmi_free(worst);
  neuron_run_free(&r);
  wcmi_model_free(&m);
  return rc;
}
