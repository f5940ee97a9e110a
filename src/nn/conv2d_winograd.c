/* Winograd convolution for 4x4 kernels at stride 2 whose output sides are multiples of 3: the
 * paper's third encoder conv on 28x28 inputs (128->256, 7x7 -> 3x3) is one.
 *
 * Space-to-depth first: with the zero-padded input P split into its four phases
 * Z_ab[i][j] = P[2i + a][2j + b] (a, b in {0, 1}), the 4x4 stride-2 correlation is a 2x2 stride-1
 * correlation over 4C channels c' = (c, a, b) with the 2x2 kernels g_ab[u][v] = w[2u + a][2v + b]:
 *   y[oh][ow] = sum_{c,a,b} sum_{u,v} g_ab[u][v] Z_ab[oh + u][ow + v].
 * Each 3x3 output tile is then Winograd's F(3x3, 2x2) over a 4x4 input tile (points 0, 1, -1, inf):
 *   Y = A^T [ sum_c' (G g G^T) . (B^T d B) ] A        ("." elementwise over 16 positions xi)
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 -1 0 1],  G = [1 0; .5 .5; .5 -.5; 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1].
 * The sum over c' is one GEMM per position xi: 16 products of (P, 4C) by (4C, O), P = tiles. That is
 * 16 multiplies per tile and channel pair where the direct conv needs 36 (9 outputs x 4 taps): 2.25x
 * fewer FLOPs, which is the point. Every coefficient is 0, +-1 or +-1/2, so the transforms add no
 * error beyond float rounding of a few additions (tests: agreement with im2col + GEMM).
 *
 * The backward passes are the exact adjoints of these linear maps:
 *   dM = A dY A^T,  dV_xi = dM_xi . U_xi,  dU_xi = dM_xi^T . V_xi,  dd = B dV B^T,  dg = G^T dU G.
 *
 * Workspace (floats): V (16, P, 4C) the transformed input (reused for dV), M (16, P, O) the
 * products (reused for dM), h (2, O, 4C) and one (O, 4C) slot for the transformed weights. The 16
 * transformed weights (16 O 4C floats, 4x the weights) are never held at once: position (p, q)'s is
 * G[p][0] h_q[0] + G[p][1] h_q[1] with h_q[u] = sum_v G[q][v] g[u][v], so the positions are taken
 * column by column (q), and p = 0 and p = 3 use h_q[0] and h_q[1] themselves.
 *
 * Threads: the transforms are parallel over (sample, channel) planes, each written by one iteration;
 * each GEMM is split by wcmi_sgemm. Nothing depends on the thread count but the GEMM split. */
#include "nn/conv2d_internal.h"
#include "wcmi/blas.h"

#include <string.h>

enum {
  XI = 16,          /* transformed positions per tile (4x4) */
  STAGE_MAX = 4096, /* floats of the zero-padded input plane staged per (sample, channel) */
};

/* G's rows: position p (or q) takes G[p][0] of tap u = 0 (v = 0) and G[p][1] of tap 1. */
static const float G[4][2] = {{1.0f, 0.0f}, {0.5f, 0.5f}, {0.5f, -0.5f}, {0.0f, 1.0f}};

typedef struct wino_geom {
  int N, C, O, H, W, pad, Ho, Wo;
  int TH, TW;   /* tiles per output column / row */
  int P, C4;    /* GEMM rows (tiles), GEMM inner size (4C) */
  int Hs, Ws;   /* staged plane: padded rows / columns [0, 2Ho+2) x [0, 2Wo+2) */
  size_t vs, ms; /* floats from one position's plane of V (P, 4C) / of M (P, O) to the next */
} wino_geom;

/* The 16 planes a tile's transform reads or writes would be a power-of-two distance apart for the
 * paper's shapes (V: 128 x 512 floats), so all 16 would map to the same cache sets and alias in the
 * store buffer's 4 KiB check; one cache line of padding per plane spreads them. */
static size_t plane_stride(size_t rows, size_t width) { return (rows * width + 15) / 16 * 16 + 16; }

static wino_geom wino_geometry(const wcmi_conv2d_dims *d) {
  wino_geom g;
  g.N = d->N, g.C = d->C, g.O = d->O, g.H = d->H, g.W = d->W, g.pad = d->pad, g.Ho = d->Ho, g.Wo = d->Wo;
  g.TH = d->Ho / 3, g.TW = d->Wo / 3;
  g.P = d->N * g.TH * g.TW, g.C4 = 4 * d->C;
  g.Hs = 2 * d->Ho + 2, g.Ws = 2 * d->Wo + 2;
  g.vs = plane_stride((size_t)g.P, (size_t)g.C4), g.ms = plane_stride((size_t)g.P, (size_t)g.O);
  return g;
}

int conv2d_winograd_applies(const wcmi_conv2d_dims *d) {
  return d->algo == WCMI_CONV_AUTO && d->KH == 4 && d->KW == 4 && d->stride == 2 && d->Ho % 3 == 0 &&
         d->Wo % 3 == 0 && (2 * (int64_t)d->Ho + 2) * (2 * (int64_t)d->Wo + 2) <= STAGE_MAX;
}

size_t conv2d_winograd_workspace_floats(const wcmi_conv2d_dims *d) {
  const wino_geom g = wino_geometry(d);
  return XI * g.vs + XI * g.ms + 3 * (size_t)g.O * (size_t)g.C4;
}

/* Offset of (tile, column) in position xi's plane. */
static inline size_t plane_at(int xi, int tp, int col, size_t stride, size_t width) {
  return (size_t)xi * stride + (size_t)tp * width + (size_t)col;
}

/* Copies plane (n, c) of x into the zero-padded stage: stage[r][q] = x[r - pad][q - pad]. */
static void stage_plane(const wino_geom *g, const float *xp, float *st) {
  memset(st, 0, (size_t)g->Hs * g->Ws * sizeof *st);
  const int q0 = g->pad, q1 = g->W + g->pad < g->Ws ? g->W + g->pad : g->Ws;
  for (int r = g->pad; r < g->Hs && r - g->pad < g->H; r++)
    if (q1 > q0) memcpy(st + (size_t)r * g->Ws + q0, xp + (size_t)(r - g->pad) * g->W, (size_t)(q1 - q0) * sizeof *st);
}

/* V[xi][tile][c*4 + ab] = (B^T d B)[xi] for every tile and phase ab of every (n, c) plane. */
static void input_transform(const wino_geom *g, const float *x, float *V, int T) {
  const int64_t items = (int64_t)g->N * g->C;
#pragma omp parallel num_threads(T)
  {
    float st[STAGE_MAX];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      const int n = (int)(it / g->C), c = (int)(it % g->C);
      stage_plane(g, x + (size_t)it * g->H * g->W, st);
      for (int th = 0; th < g->TH; th++)
        for (int tw = 0; tw < g->TW; tw++) {
          const int tp = (n * g->TH + th) * g->TW + tw;
          const float *base = st + (size_t)(6 * th) * g->Ws + 6 * tw;
          for (int ab = 0; ab < 4; ab++) {
            const int a = ab >> 1, b = ab & 1;
            float dd[4][4], e[4][4];
            for (int i = 0; i < 4; i++)
              for (int j = 0; j < 4; j++) dd[i][j] = base[(2 * i + a) * g->Ws + 2 * j + b];
            for (int j = 0; j < 4; j++) { /* B^T d */
              e[0][j] = dd[0][j] - dd[2][j];
              e[1][j] = dd[1][j] + dd[2][j];
              e[2][j] = dd[2][j] - dd[1][j];
              e[3][j] = dd[3][j] - dd[1][j];
            }
            for (int i = 0; i < 4; i++) { /* (B^T d) B */
              const float v[4] = {e[i][0] - e[i][2], e[i][1] + e[i][2], e[i][2] - e[i][1], e[i][3] - e[i][1]};
              for (int j = 0; j < 4; j++) V[plane_at(i * 4 + j, tp, c * 4 + ab, g->vs, (size_t)g->C4)] = v[j];
            }
          }
        }
    }
  }
}

/* dx plane (n, c) = the adjoint of input_transform applied to dV: dd = B dV B^T scattered onto the
 * staged plane, whose interior is dx (positions the conv never reads get 0). */
static void input_grad_transform(const wino_geom *g, const float *dV, float *dx, int T) {
  const int64_t items = (int64_t)g->N * g->C;
#pragma omp parallel num_threads(T)
  {
    float st[STAGE_MAX];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      const int n = (int)(it / g->C), c = (int)(it % g->C);
      memset(st, 0, (size_t)g->Hs * g->Ws * sizeof *st);
      for (int th = 0; th < g->TH; th++)
        for (int tw = 0; tw < g->TW; tw++) {
          const int tp = (n * g->TH + th) * g->TW + tw;
          float *base = st + (size_t)(6 * th) * g->Ws + 6 * tw;
          for (int ab = 0; ab < 4; ab++) {
            const int a = ab >> 1, b = ab & 1;
            float v[4][4], f[4][4];
            for (int i = 0; i < 4; i++)
              for (int j = 0; j < 4; j++) v[i][j] = dV[plane_at(i * 4 + j, tp, c * 4 + ab, g->vs, (size_t)g->C4)];
            for (int j = 0; j < 4; j++) { /* B dV */
              f[0][j] = v[0][j];
              f[1][j] = v[1][j] - v[2][j] - v[3][j];
              f[2][j] = v[1][j] + v[2][j] - v[0][j];
              f[3][j] = v[3][j];
            }
            for (int i = 0; i < 4; i++) { /* (B dV) B^T, onto the phase-ab positions */
              const float dd[4] = {f[i][0], f[i][1] - f[i][2] - f[i][3], f[i][1] + f[i][2] - f[i][0], f[i][3]};
              for (int j = 0; j < 4; j++) base[(2 * i + a) * g->Ws + 2 * j + b] += dd[j];
            }
          }
        }
      float *dxp = dx + (size_t)it * g->H * g->W;
      for (int r = 0; r < g->H; r++)
        for (int q = 0; q < g->W; q++) {
          const int sr = r + g->pad, sq = q + g->pad;
          dxp[(size_t)r * g->W + q] = sr < g->Hs && sq < g->Ws ? st[(size_t)sr * g->Ws + sq] : 0.0f;
        }
    }
  }
}

/* y tile = A^T M A (+ bias) for every tile of every (n, o) plane. */
static void output_transform(const wino_geom *g, const float *M, const float *bias, float *y, int T) {
  const int64_t items = (int64_t)g->N * g->O;
#pragma omp parallel for schedule(static) num_threads(T)
  for (int64_t it = 0; it < items; it++) {
    const int n = (int)(it / g->O), o = (int)(it % g->O);
    const float bo = bias ? bias[o] : 0.0f;
    float *yp = y + (size_t)it * g->Ho * g->Wo;
    for (int th = 0; th < g->TH; th++)
      for (int tw = 0; tw < g->TW; tw++) {
        const int tp = (n * g->TH + th) * g->TW + tw;
        float m[4][4], s[3][4];
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) m[i][j] = M[plane_at(i * 4 + j, tp, o, g->ms, (size_t)g->O)];
        for (int j = 0; j < 4; j++) { /* A^T M */
          s[0][j] = m[0][j] + m[1][j] + m[2][j];
          s[1][j] = m[1][j] - m[2][j];
          s[2][j] = m[1][j] + m[2][j] + m[3][j];
        }
        for (int i = 0; i < 3; i++) { /* (A^T M) A */
          float *row = yp + (size_t)(3 * th + i) * g->Wo + 3 * tw;
          row[0] = s[i][0] + s[i][1] + s[i][2] + bo;
          row[1] = s[i][1] - s[i][2] + bo;
          row[2] = s[i][1] + s[i][2] + s[i][3] + bo;
        }
      }
  }
}

/* dM tile = A dY A^T: the adjoint of output_transform. */
static void output_grad_transform(const wino_geom *g, const float *dy, float *dM, int T) {
  const int64_t items = (int64_t)g->N * g->O;
#pragma omp parallel for schedule(static) num_threads(T)
  for (int64_t it = 0; it < items; it++) {
    const int n = (int)(it / g->O), o = (int)(it % g->O);
    const float *dyp = dy + (size_t)it * g->Ho * g->Wo;
    for (int th = 0; th < g->TH; th++)
      for (int tw = 0; tw < g->TW; tw++) {
        const int tp = (n * g->TH + th) * g->TW + tw;
        float e[3][3], f[4][3];
        for (int i = 0; i < 3; i++)
          for (int j = 0; j < 3; j++) e[i][j] = dyp[(size_t)(3 * th + i) * g->Wo + 3 * tw + j];
        for (int j = 0; j < 3; j++) { /* A dY */
          f[0][j] = e[0][j];
          f[1][j] = e[0][j] + e[1][j] + e[2][j];
          f[2][j] = e[0][j] - e[1][j] + e[2][j];
          f[3][j] = e[2][j];
        }
        for (int i = 0; i < 4; i++) { /* (A dY) A^T */
          const float dm[4] = {f[i][0], f[i][0] + f[i][1] + f[i][2], f[i][0] - f[i][1] + f[i][2], f[i][2]};
          for (int j = 0; j < 4; j++) dM[plane_at(i * 4 + j, tp, o, g->ms, (size_t)g->O)] = dm[j];
        }
      }
  }
}

/* h_u[o][c*4 + ab] = sum_v G[q][v] g_ab[u][v] = G[q][0] w[o][c][2u+a][b] + G[q][1] w[o][c][2u+a][2+b]
 * for u = 0, 1 (h: two (O, 4C) matrices). */
static void weight_half_transform(const wino_geom *g, const float *w, int q, float *h, int T) {
  const float g0 = G[q][0], g1 = G[q][1];
  const size_t plane = (size_t)g->O * g->C4;
#pragma omp parallel for schedule(static) num_threads(T)
  for (int o = 0; o < g->O; o++)
    for (int c = 0; c < g->C; c++) {
      const float *k = w + ((size_t)o * g->C + c) * 16; /* (kh, kw) */
      for (int u = 0; u < 2; u++)
        for (int ab = 0; ab < 4; ab++) {
          const int a = ab >> 1, b = ab & 1;
          const float *row = k + (2 * u + a) * 4;
          h[u * plane + (size_t)o * g->C4 + c * 4 + ab] = g0 * row[b] + g1 * row[2 + b];
        }
    }
}

/* The transformed weights (O, 4C) of position (p, q) from h_q: G[p][0] h_q[0] + G[p][1] h_q[1]. */
static const float *weight_at(const wino_geom *g, const float *h, int p, float *slot, int T) {
  const size_t n = (size_t)g->O * g->C4;
  if (p == 0) return h;
  if (p == 3) return h + n;
  const float s = G[p][1] / G[p][0]; /* +-1: slot = 0.5 * (h0 +- h1) */
  const float *h0 = h, *h1 = h + n;
#pragma omp parallel for schedule(static) num_threads(T)
  for (size_t i = 0; i < n; i++) slot[i] = 0.5f * (h0[i] + s * h1[i]);
  return slot;
}

/* dw[o][c][2u+a][2v+b] += G[q][v] t_u[o][c*4 + ab]: column q's share of dg = G^T dU G, where
 * t_u = sum_p G[p][u] dU_(p,q). */
static void weight_grad_accumulate(const wino_geom *g, const float *t, int q, float *dw, int T) {
  const size_t plane = (size_t)g->O * g->C4;
#pragma omp parallel for schedule(static) num_threads(T)
  for (int o = 0; o < g->O; o++)
    for (int c = 0; c < g->C; c++) {
      float *k = dw + ((size_t)o * g->C + c) * 16;
      for (int u = 0; u < 2; u++)
        for (int ab = 0; ab < 4; ab++) {
          const int a = ab >> 1, b = ab & 1;
          const float tv = t[u * plane + (size_t)o * g->C4 + c * 4 + ab];
          float *row = k + (2 * u + a) * 4;
          if (G[q][0] != 0.0f) row[b] += G[q][0] * tv;
          if (G[q][1] != 0.0f) row[2 + b] += G[q][1] * tv;
        }
    }
}

void conv2d_winograd_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                             float *ws, int T) {
  const wino_geom g = wino_geometry(d);
  const size_t C4 = (size_t)g.C4, O = (size_t)g.O;
  float *V = ws, *M = V + XI * g.vs, *h = M + XI * g.ms, *slot = h + 2 * O * C4;
  input_transform(&g, x, V, T);
  for (int q = 0; q < 4; q++) {
    weight_half_transform(&g, w, q, h, T);
    for (int p = 0; p < 4; p++) {
      const int xi = p * 4 + q;
      const float *U = weight_at(&g, h, p, slot, T);
      wcmi_sgemm(0, 1, g.P, g.O, g.C4, 1.0f, V + xi * g.vs, g.C4, U, g.C4, 0.0f, M + xi * g.ms, g.O);
    }
  }
  output_transform(&g, M, b, y, T);
}

void conv2d_winograd_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                              float *dw, float *ws, int T) {
  const wino_geom g = wino_geometry(d);
  const size_t n = (size_t)g.O * (size_t)g.C4;
  float *V = ws, *dM = V + XI * g.vs, *h = dM + XI * g.ms, *slot = h + 2 * n;
  output_grad_transform(&g, dy, dM, T);
  if (dw) {
    input_transform(&g, x, V, T);
    float *t0 = h, *t1 = h + n;
    static const int order[4] = {0, 3, 1, 2}; /* p = 0 and 3 initialize t0 and t1 */
    for (int q = 0; q < 4; q++) {
      for (int k = 0; k < 4; k++) {
        const int p = order[k], xi = p * 4 + q;
        float *dst = p == 0 ? t0 : p == 3 ? t1 : slot;
        wcmi_sgemm(1, 0, g.O, g.C4, g.P, 1.0f, dM + xi * g.ms, g.O, V + xi * g.vs, g.C4, 0.0f, dst, g.C4);
        if (p == 1 || p == 2) {
          const float s = G[p][1] / G[p][0]; /* t0 += 0.5 dU, t1 += +-0.5 dU */
#pragma omp parallel for schedule(static) num_threads(T)
          for (size_t i = 0; i < n; i++) {
            t0[i] += 0.5f * slot[i];
            t1[i] += s * 0.5f * slot[i];
          }
        }
      }
      weight_grad_accumulate(&g, h, q, dw, T);
    }
  }
  if (dx) {
    for (int q = 0; q < 4; q++) {
      weight_half_transform(&g, w, q, h, T);
      for (int p = 0; p < 4; p++) {
        const int xi = p * 4 + q;
        const float *U = weight_at(&g, h, p, slot, T);
        /* dV overwrites V position by position: the weight gradient above is done with it */
        wcmi_sgemm(0, 0, g.P, g.C4, g.O, 1.0f, dM + xi * g.ms, g.O, U, g.C4, 0.0f, V + xi * g.vs, g.C4);
      }
    }
    input_grad_transform(&g, V, dx, T);
  }
}
