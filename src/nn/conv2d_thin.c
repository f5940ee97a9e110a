/* Direct convolution for a thin column matrix (K = C*KH*KW <= 16), e.g. the paper's first conv on
 * 1x28x28 images (1->64, 4x4, stride 2: K = 16).
 *
 * Why not im2col + GEMM: with an inner dimension of 16 every output float costs only 32 FLOPs, so
 * the GEMMs run at less than half of the BLAS's rate, and the column matrix, the layout transposes
 * and col2im move several times more data than the arithmetic needs. Here each sample is handled
 * whole by one thread: its zero-padded input planes are staged on the stack, and the output is
 * produced in tiles of 16 output pixels (flattened over (oh, ow)) whose 16-float patch vectors are
 * gathered once and reused for every output channel:
 *   forward   y[o][p]  = b[o] + sum_k w[o][k] * patch[k][p]       vector over the 16 pixels p
 *   dw        dw[o][k] += sum_p dy[o][p] * patch[p][k]             vector over the 16 taps k
 *   dx        dpatch[p][k] = sum_o dy[o][p] * w[o][k], then scattered back onto the padded plane.
 * The inner loops have a fixed length of 16 so the compiler turns each into one AVX-512 (or two
 * AVX2) vector operation; the kernels are built for AVX-512, AVX2 and baseline x86-64 and picked at
 * load time (target_clones), so installed builds stay portable.
 *
 * Threads: samples are split statically; dw is summed per thread into its own 16*O partial and the
 * partials are added in thread order, so a fixed thread count gives bit-identical results. */
#include "core/clones.h"
#include "nn/conv2d_internal.h"

#include <omp.h>
#include <string.h>

enum {
  TILE = 16,           /* output pixels per tile, and taps per patch vector (K padded to 16) */
  THIN_PLANE_MAX = 4096 /* floats of the staged zero-padded input planes (C*Hp*Wp) */
};

#define THIN_CLONES WCMI_CLONES("avx512f", "avx2", "default")

int conv2d_thin_applies(const wcmi_conv2d_dims *d) {
  const int64_t K = (int64_t)d->C * d->KH * d->KW;
  const int64_t plane = (int64_t)d->C * (d->H + 2 * (int64_t)d->pad) * (d->W + 2 * (int64_t)d->pad);
  return K <= TILE && plane <= THIN_PLANE_MAX;
}

/* w padded to (O, 16), then one (O, 16) dw partial per thread. */
size_t conv2d_thin_workspace_floats(const wcmi_conv2d_dims *d, int T) {
  return (size_t)d->O * TILE * (size_t)(1 + T);
}

typedef struct thin_geom {
  int K, S, Hp, Wp;
  int tap_off[TILE]; /* offset of tap k (c, kh, kw) in the padded planes */
} thin_geom;

static thin_geom thin_geometry(const wcmi_conv2d_dims *d) {
  thin_geom g;
  g.K = d->C * d->KH * d->KW;
  g.S = d->Ho * d->Wo;
  g.Hp = d->H + 2 * d->pad;
  g.Wp = d->W + 2 * d->pad;
  for (int k = 0; k < TILE; k++) g.tap_off[k] = 0;
  for (int k = 0; k < g.K; k++) {
    const int kw = k % d->KW, kh = (k / d->KW) % d->KH, c = k / (d->KW * d->KH);
    g.tap_off[k] = (c * g.Hp + kh) * g.Wp + kw;
  }
  return g;
}

/* Copies sample n's C planes into the interior of the zero-bordered staging planes. */
static void stage_input(const wcmi_conv2d_dims *d, const thin_geom *g, const float *x, int n, float *padded) {
  const int p = d->pad;
  for (int c = 0; c < d->C; c++) {
    const float *src = x + ((int64_t)n * d->C + c) * d->H * d->W;
    float *dst = padded + (int64_t)c * g->Hp * g->Wp;
    for (int i = 0; i < d->H; i++) memcpy(dst + (i + p) * g->Wp + p, src + (int64_t)i * d->W, (size_t)d->W * sizeof *src);
  }
}

/* Top-left corner, in the padded planes, of the receptive field of output pixels p0 .. p0+cnt-1. */
static void pixel_offsets(const wcmi_conv2d_dims *d, const thin_geom *g, int p0, int cnt, int *pix_off) {
  for (int j = 0; j < TILE; j++) {
    const int p = p0 + (j < cnt ? j : 0);
    pix_off[j] = (p / d->Wo) * d->stride * g->Wp + (p % d->Wo) * d->stride;
  }
}

/* 16 floats, written with GCC/clang vector extensions: one zmm register under AVX-512, two ymm under
 * AVX2, four xmm otherwise. Never passed by value (that would change the ABI between the clones). */
typedef float v16 __attribute__((vector_size(64)));
/* The same through pointers into caller memory, which need not be 64-byte aligned. */
typedef float v16u __attribute__((vector_size(64), aligned(4)));

/* The kernels below prefetch, for each group of output-channel rows they touch, the cache line two
 * tiles ahead. A tile touches O rows (one per output channel, S floats apart): more concurrent
 * streams than the hardware prefetchers follow, so without this every tile waits on memory when the
 * map is not in cache (the forward output and the output gradient, 6.4 MB each for the paper's first
 * conv at batch 128). The prefetches are spread through the FMA loop rather than issued together
 * before it: issued in one burst of 64 they gained nothing (too many outstanding misses at once).
 * Prefetch addresses past the end of a map are harmless (prefetches do not fault); past a sample's
 * rows they are the next sample's, which come next. */
enum { PF_DIST = 2 * TILE };
#define PREFETCH4(rows, S, rw)                                    \
  do {                                                            \
    __builtin_prefetch((rows) + PF_DIST, (rw), 3);                \
    __builtin_prefetch((rows) + (S) + PF_DIST, (rw), 3);          \
    __builtin_prefetch((rows) + 2 * (int64_t)(S) + PF_DIST, (rw), 3); \
    __builtin_prefetch((rows) + 3 * (int64_t)(S) + PF_DIST, (rw), 3); \
  } while (0)

#define SPLAT(a) ((v16){(a), (a), (a), (a), (a), (a), (a), (a), (a), (a), (a), (a), (a), (a), (a), (a)})

static inline void store_first(float *dst, const v16 *v, int cnt) {
  if (cnt == TILE) {
    memcpy(dst, v, sizeof *v);
  } else {
    float tmp[TILE];
    memcpy(tmp, v, sizeof *v);
    for (int j = 0; j < cnt; j++) dst[j] = tmp[j];
  }
}

/* y[o][0..cnt) for every o; patch[k] holds tap k of the 16 pixels. Four channels at a time for
 * independent FMA chains. */
THIN_CLONES
static void forward_tile(int O, int K, const float *w, const float *b, const v16 *patch, float *y, int S, int cnt) {
  int o = 0;
  for (; o + 4 <= O; o += 4) {
    const float *w0 = w + (int64_t)o * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    const float b0 = b ? b[o] : 0.0f, b1 = b ? b[o + 1] : 0.0f, b2 = b ? b[o + 2] : 0.0f, b3 = b ? b[o + 3] : 0.0f;
    v16 a0 = SPLAT(b0), a1 = SPLAT(b1), a2 = SPLAT(b2), a3 = SPLAT(b3);
    for (int k = 0; k < K; k++) {
      const v16 pk = patch[k];
      const float s0 = w0[k], s1 = w1[k], s2 = w2[k], s3 = w3[k];
      a0 += SPLAT(s0) * pk;
      a1 += SPLAT(s1) * pk;
      a2 += SPLAT(s2) * pk;
      a3 += SPLAT(s3) * pk;
    }
    float *yo = y + (int64_t)o * S;
    PREFETCH4(yo, S, 1);
    store_first(yo, &a0, cnt);
    store_first(yo + S, &a1, cnt);
    store_first(yo + 2 * S, &a2, cnt);
    store_first(yo + 3 * S, &a3, cnt);
  }
  for (; o < O; o++) {
    const float *wo = w + (int64_t)o * K;
    const float bo = b ? b[o] : 0.0f;
    v16 a = SPLAT(bo);
    for (int k = 0; k < K; k++) {
      const float sk = wo[k];
      a += SPLAT(sk) * patch[k];
    }
    store_first(y + (int64_t)o * S, &a, cnt);
  }
}

/* dwp[o] (16 taps) += sum_j dy[o][j] * patch_t[j], four channels at a time */
THIN_CLONES
static void dw_tile(int O, const float *dy, int S, int cnt, const v16 *patch_t, v16u *dwp) {
  int o = 0;
  for (; o + 4 <= O; o += 4) {
    const float *d0 = dy + (int64_t)o * S, *d1 = d0 + S, *d2 = d1 + S, *d3 = d2 + S;
    PREFETCH4(d0, S, 0);
    v16 a0 = dwp[o], a1 = dwp[o + 1], a2 = dwp[o + 2], a3 = dwp[o + 3];
    for (int j = 0; j < cnt; j++) {
      const v16 pj = patch_t[j];
      const float g0 = d0[j], g1 = d1[j], g2 = d2[j], g3 = d3[j];
      a0 += SPLAT(g0) * pj;
      a1 += SPLAT(g1) * pj;
      a2 += SPLAT(g2) * pj;
      a3 += SPLAT(g3) * pj;
    }
    dwp[o] = a0, dwp[o + 1] = a1, dwp[o + 2] = a2, dwp[o + 3] = a3;
  }
  for (; o < O; o++) {
    const float *dyo = dy + (int64_t)o * S;
    v16 a = dwp[o];
    for (int j = 0; j < cnt; j++) {
      const float g0 = dyo[j];
      a += SPLAT(g0) * patch_t[j];
    }
    dwp[o] = a;
  }
}

/* dpatch[j] (16 taps) = sum_o dy[o][j] * wpad[o], four pixels at a time */
THIN_CLONES
static void dx_tile(int O, const float *dy, int S, int cnt, const v16u *wpad, v16 *dpatch) {
  int j = 0;
  for (; j + 4 <= cnt; j += 4) {
    v16 a0 = SPLAT(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (int o = 0; o < O; o++) {
      const float *g = dy + (int64_t)o * S + j;
      if (j == 0) __builtin_prefetch(g + PF_DIST, 0, 3); /* once per row: see PREFETCH4 */
      const v16 wo = wpad[o];
      const float g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3];
      a0 += SPLAT(g0) * wo;
      a1 += SPLAT(g1) * wo;
      a2 += SPLAT(g2) * wo;
      a3 += SPLAT(g3) * wo;
    }
    dpatch[j] = a0, dpatch[j + 1] = a1, dpatch[j + 2] = a2, dpatch[j + 3] = a3;
  }
  for (; j < cnt; j++) {
    v16 a = SPLAT(0.0f);
    for (int o = 0; o < O; o++) {
      const float g0 = dy[(int64_t)o * S + j];
      a += SPLAT(g0) * wpad[o];
    }
    dpatch[j] = a;
  }
}

void conv2d_thin_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                         int T) {
  const thin_geom g = thin_geometry(d);
  const int O = d->O, S = g.S;
#pragma omp parallel num_threads(T)
  {
    float padded[THIN_PLANE_MAX]; /* border stays zero; the interior is overwritten per sample */
    v16 patch[TILE];              /* [k]: tap k of the tile's 16 pixels */
    int pix_off[TILE];
    memset(padded, 0, (size_t)d->C * g.Hp * g.Wp * sizeof *padded);
#pragma omp for schedule(static)
    for (int n = 0; n < d->N; n++) {
      stage_input(d, &g, x, n, padded);
      float *yn = y + (int64_t)n * O * S;
      for (int p0 = 0; p0 < S; p0 += TILE) {
        const int cnt = S - p0 < TILE ? S - p0 : TILE;
        pixel_offsets(d, &g, p0, cnt, pix_off);
        for (int k = 0; k < g.K; k++)
          for (int j = 0; j < TILE; j++) patch[k][j] = padded[pix_off[j] + g.tap_off[k]];
        forward_tile(O, g.K, w, b, patch, yn + p0, S, cnt);
      }
    }
  }
}

void conv2d_thin_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *ws, int T) {
  const thin_geom g = thin_geometry(d);
  const int O = d->O, S = g.S, K = g.K, C = d->C, pad = d->pad;
  float *wpad = ws, *partials = ws + (size_t)O * TILE;
  if (dx)
    for (int o = 0; o < O; o++)
      for (int k = 0; k < TILE; k++) wpad[o * TILE + k] = k < K ? w[(int64_t)o * K + k] : 0.0f;
  int team_size = 1;
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    team_size = omp_get_num_threads();
    float padded[THIN_PLANE_MAX];
    v16 patch_t[TILE]; /* [pixel]: the 16 taps of one pixel */
    int pix_off[TILE];
    v16u *dwp = (v16u *)(partials + (size_t)t * O * TILE);
    if (dw) memset(dwp, 0, (size_t)O * sizeof *dwp);
    if (dw) memset(padded, 0, (size_t)C * g.Hp * g.Wp * sizeof *padded);
#pragma omp for schedule(static)
    for (int n = 0; n < d->N; n++) {
      const float *dyn = dy + (int64_t)n * O * S;
      if (dw) {
        stage_input(d, &g, x, n, padded);
        for (int p0 = 0; p0 < S; p0 += TILE) {
          const int cnt = S - p0 < TILE ? S - p0 : TILE;
          pixel_offsets(d, &g, p0, cnt, pix_off);
          for (int j = 0; j < TILE; j++)
            for (int k = 0; k < TILE; k++) patch_t[j][k] = k < K ? padded[pix_off[j] + g.tap_off[k]] : 0.0f;
          dw_tile(O, dyn + p0, S, cnt, patch_t, dwp);
        }
      }
      if (dx) {
        /* accumulate onto a zeroed padded plane, then copy its interior out */
        memset(padded, 0, (size_t)C * g.Hp * g.Wp * sizeof *padded);
        for (int p0 = 0; p0 < S; p0 += TILE) {
          const int cnt = S - p0 < TILE ? S - p0 : TILE;
          pixel_offsets(d, &g, p0, cnt, pix_off);
          dx_tile(O, dyn + p0, S, cnt, (const v16u *)wpad, patch_t);
          for (int j = 0; j < cnt; j++)
            for (int k = 0; k < K; k++) padded[pix_off[j] + g.tap_off[k]] += patch_t[j][k];
        }
        for (int c = 0; c < C; c++) {
          float *dst = dx + ((int64_t)n * C + c) * d->H * d->W;
          const float *src = padded + (int64_t)c * g.Hp * g.Wp;
          for (int i = 0; i < d->H; i++)
            memcpy(dst + (int64_t)i * d->W, src + (i + pad) * g.Wp + pad, (size_t)d->W * sizeof *dst);
        }
        /* the next sample's dw staging expects a zero border */
        if (dw) memset(padded, 0, (size_t)C * g.Hp * g.Wp * sizeof *padded);
      }
    }
  }
  if (dw)
    for (int t = 0; t < team_size; t++) {
      const float *pt = partials + (size_t)t * O * TILE;
      for (int o = 0; o < O; o++)
        for (int k = 0; k < K; k++) dw[(int64_t)o * K + k] += pt[o * TILE + k];
    }
}
