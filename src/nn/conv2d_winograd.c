/* Winograd convolution for 4x4 kernels at stride 2 (the paper's encoder and local-estimator convs
 * after the first): F(m x m, 2 x 2) with m = 3, 4 or 7, on the space-to-depth form of the conv.
 *
 * Space-to-depth: with the zero-padded input P split into its four phases
 * Z_ab[i][j] = P[2i + a][2j + b] (a, b in {0, 1}), the 4x4 stride-2 correlation is a 2x2 stride-1
 * correlation over 4C channels c' = (a, b, c) with the 2x2 kernels g_ab[u][v] = w[2u + a][2v + b]:
 *   y[oh][ow] = sum_{a,b,c} sum_{u,v} g_ab[u][v] Z_ab[oh + u][ow + v].
 * Each m x m output tile is then Winograd's F(m x m, 2 x 2) over an n x n input tile, n = m + 1:
 *   Y = A^T [ sum_c' (G g G^T) . (B^T d B) ] A        ("." elementwise over n^2 positions xi)
 * and the sum over c' is one GEMM per position: (P, 4C) x (4C, O), P = tiles. Per tile and channel
 * pair that is n^2 multiplies where the direct conv needs 4 m^2: 2.25x fewer for m = 3 (16 vs 36),
 * 2.56x for m = 4 (25 vs 64), 3.06x for m = 7 (64 vs 196), less the tiles' overhang past the
 * output's edge. Points: 0, 1, -1, inf for m = 3; 0, 1, -1, -2, inf for m = 4; 0, +-1, +-2, +-1/2,
 * inf for m = 7 (the usual 8-point set; its transforms share the even and odd parts of each +-a
 * pair). m = 3 and 4 were chosen among the usual sets for the smallest float error in a numerical
 * trial (1.4e-6 and 5.2e-6 of the output's largest magnitude over 256 channel pairs); m = 7's error
 * is about 4x m = 4's (1.3-2.1e-5 in the same trial; no 8-point set tried did better than 1e-5). On
 * the encoder's own shapes against im2col + GEMM: 2.0e-5 for 64->128 on 7x7 outputs (m = 7),
 * 5.5e-6 for 64->128 on 8x8 outputs (m = 4), 5.3e-7 for 128->256 on 3x3 outputs (m = 3). The
 * matrices are in the comment above wino_tf and spelled out in bt4 ... a8. m per shape: the one
 * with the fewest multiplies (ties to the smaller m), and Winograd only where that saves at least
 * WINO_MIN_GAIN_X10 / 10 (the paper's 28x28 encoder: 7x7 outputs take m = 7, 3x3 outputs m = 3; 32x32
 * inputs: 8x8 outputs take m = 4). WCMI_CONV_GEMM turns it off.
 *
 * The backward passes are the exact adjoints of these linear maps:
 *   dM = A dY A^T,  dV_xi = dM_xi . U_xi,  dU_xi = dM_xi^T . V_xi,  dd = B dV B^T,  dg = G^T dU G.
 *
 * Layout and memory. The batch runs in chunks of samples whose transformed input V (n^2, rows, 4C)
 * and products M (n^2, rows, O) fit CHUNK_FLOATS (reused for dV and dM). Inside a chunk the n^2
 * transformed weights (n^2 O 4C floats, 4n^2/16 times the weights) are never held at once: position
 * (p, q)'s is G[p][0] h_q[0] + G[p][1] h_q[1] with h_q[u] = sum_v G[q][v] g[u][v], so positions are
 * taken column by column (q) from two (O, 4C) matrices h and one slot. c' runs phase-major
 * (ab * C + c) so that 8 consecutive channels are 8 consecutive floats of V: the transforms work on
 * 8 channels (or 8 output channels) at once as 8-lane vectors.
 *
 * Threads: the transforms are parallel over (sample, 8-channel group) items, each written by one
 * iteration; each GEMM is split by wcmi_sgemm. Nothing depends on the thread count but the GEMM split. */
#include "core/clones.h"
#include "nn/conv2d_internal.h"
#include "wcmi/blas.h"

#include <string.h>

enum {
  LANES = 8,              /* channels per vector in the transforms */
  NMAX = 8, MMAX = 7,     /* largest input / output tile side */
  STAGE_MAX = 16384,      /* floats of one item's zero-padded, channel-interleaved input plane */
  CHUNK_FLOATS = 1 << 21, /* V + M of one chunk of samples */
};

/* Least multiply saving (direct / Winograd) for which the Winograd path is taken, in tenths. */
static const int WINO_MIN_GAIN_X10 = 15;

/* m, n and G; B^T and A^T are spelled out as the vector functions bt4 ... a8 below:
 *   F(3x3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 -1 0 1],  A^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1]
 *   F(4x4): B^T = [1 1/2 -1 -1/2 0; 0 2 3 1 0; 0 -2 1 1 0; 0 1 0 -1 0; 0 -2 -1 2 1],
 *           A^T = [1 1 1 1 0; 0 1 -1 -2 0; 0 1 1 4 0; 0 1 -1 -8 1]
 *   F(7x7), points in the order 0, 1, -1, 2, -2, 1/2, -1/2, inf: A^T[i][j] = p_j^i (and A^T[6][7] = 1);
 *           B^T = [1 0 -21/4 0 21/4 0 -1 0; 0 -4/17 -4/17 1 1 -4/17 -4/17 0; 0 4/17 -4/17 -1 1 4/17 -4/17 0;
 *                  0 1/5 1/10 -1 -1/2 4/5 2/5 0; 0 -1/5 1/10 1 -1/2 -4/5 2/5 0; 0 2/5 4/5 -1/2 -1 1/10 1/5 0;
 *                  0 -2/5 4/5 1/2 -1 -1/10 1/5 0; 0 -1 0 21/4 0 -21/4 0 1]
 *           (the transposed inverse of the evaluation matrix at the points, each row scaled to a largest
 *           entry of 1 and G's row by the inverse, except the first and last: those make G's rows (1, 0)
 *           and (0, 1), as in F(4x4), so that their transformed weights are h itself, see weight_at). */
typedef struct wino_tf {
  int m, n;
  float G[NMAX][2]; /* (n, 2) */
} wino_tf;

static const wino_tf TF3 = {3, 4, {{1, 0}, {0.5f, 0.5f}, {0.5f, -0.5f}, {0, 1}}};
static const wino_tf TF4 = {4, 5, {{1, 0}, {1.0f / 6, 1.0f / 6}, {0.5f, -0.5f}, {1.0f / 6, -1.0f / 3}, {0, 1}}};
static const wino_tf TF7 = {7, 8, {{1, 0}, {17.0f / 18, 17.0f / 18}, {17.0f / 18, -17.0f / 18},
                                    {1.0f / 36, 1.0f / 18}, {1.0f / 36, -1.0f / 18}, {32.0f / 9, 16.0f / 9},
                                    {32.0f / 9, -16.0f / 9}, {0, 1}}};

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
#define VSPLAT(a) ((vec){(a), (a), (a), (a), (a), (a), (a), (a)})

/* The same through pointers into float arrays, which need not be 32-byte aligned. (memcpy here
 * became two 16-byte moves feeding one 32-byte load: a store-forwarding stall per vector.) */
typedef float vecu __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));

/* Loads and stores through pointers only: 32-byte vectors passed by value would change the ABI
 * between builds with and without AVX. */
static inline void vload(vec *v, const float *p) { *v = *(const vecu *)p; }

static inline void vstore(float *p, const vec *v) { *(vecu *)p = *v; }

/* The first `cnt` lanes of v into p (all when cnt == LANES), or from p with the other lanes zero. */
static inline void vstore_n(float *p, const vec *v, int cnt) {
  if (cnt == LANES) vstore(p, v);
  else memcpy(p, v, (size_t)cnt * sizeof(float));
}

static inline void vload_n(vec *v, const float *p, int cnt) {
  if (cnt == LANES) {
    vload(v, p);
    return;
  }
  *v = VSPLAT(0.0f);
  memcpy(v, p, (size_t)cnt * sizeof(float));
}

/* The 1-D transforms on 8-lane vectors, element k of x and y at x[k * s] and y[k * s]. */
/* y = B^T x, F(3x3): n = 4 -> 4 */
static inline void bt4(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s] - x[2 * s];
  y[1 * s] = x[1 * s] + x[2 * s];
  y[2 * s] = -x[1 * s] + x[2 * s];
  y[3 * s] = -x[1 * s] + x[3 * s];
}

/* y = B x (the adjoint), F(3x3) */
static inline void b4(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s];
  y[1 * s] = x[1 * s] - x[2 * s] - x[3 * s];
  y[2 * s] = -x[0 * s] + x[1 * s] + x[2 * s];
  y[3 * s] = x[3 * s];
}

/* y = A^T x, F(3x3): 4 -> 3 */
static inline void at4(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s] + x[1 * s] + x[2 * s];
  y[1 * s] = x[1 * s] - x[2 * s];
  y[2 * s] = x[1 * s] + x[2 * s] + x[3 * s];
}

/* y = A x (the adjoint), F(3x3): 3 -> 4 */
static inline void a4(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s];
  y[1 * s] = x[0 * s] + x[1 * s] + x[2 * s];
  y[2 * s] = x[0 * s] - x[1 * s] + x[2 * s];
  y[3 * s] = x[2 * s];
}

/* y = B^T x, F(4x4): 5 -> 5 */
static inline void bt5(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s] + VSPLAT(0.5f) * x[1 * s] - x[2 * s] - VSPLAT(0.5f) * x[3 * s];
  y[1 * s] = VSPLAT(2.0f) * x[1 * s] + VSPLAT(3.0f) * x[2 * s] + x[3 * s];
  y[2 * s] = -VSPLAT(2.0f) * x[1 * s] + x[2 * s] + x[3 * s];
  y[3 * s] = x[1 * s] - x[3 * s];
  y[4 * s] = -VSPLAT(2.0f) * x[1 * s] - x[2 * s] + VSPLAT(2.0f) * x[3 * s] + x[4 * s];
}

/* y = B x (the adjoint), F(4x4) */
static inline void b5(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s];
  y[1 * s] =
      VSPLAT(0.5f) * x[0 * s] + VSPLAT(2.0f) * x[1 * s] - VSPLAT(2.0f) * x[2 * s] + x[3 * s] - VSPLAT(2.0f) * x[4 * s];
  y[2 * s] = -x[0 * s] + VSPLAT(3.0f) * x[1 * s] + x[2 * s] - x[4 * s];
  y[3 * s] = -VSPLAT(0.5f) * x[0 * s] + x[1 * s] + x[2 * s] - x[3 * s] + VSPLAT(2.0f) * x[4 * s];
  y[4 * s] = x[4 * s];
}

/* y = A^T x, F(4x4): 5 -> 4 */
static inline void at5(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s] + x[1 * s] + x[2 * s] + x[3 * s];
  y[1 * s] = x[1 * s] - x[2 * s] - VSPLAT(2.0f) * x[3 * s];
  y[2 * s] = x[1 * s] + x[2 * s] + VSPLAT(4.0f) * x[3 * s];
  y[3 * s] = x[1 * s] - x[2 * s] - VSPLAT(8.0f) * x[3 * s] + x[4 * s];
}

/* y = A x (the adjoint), F(4x4): 4 -> 5 */
static inline void a5(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s];
  y[1 * s] = x[0 * s] + x[1 * s] + x[2 * s] + x[3 * s];
  y[2 * s] = x[0 * s] - x[1 * s] + x[2 * s] - x[3 * s];
  y[3 * s] = x[0 * s] - VSPLAT(2.0f) * x[1 * s] + VSPLAT(4.0f) * x[2 * s] - VSPLAT(8.0f) * x[3 * s];
  y[4 * s] = x[3 * s];
}

/* y = B^T x, F(7x7): 8 -> 8 (rows for +a and -a share their even and odd parts) */
static inline void bt8(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s] - VSPLAT(21.0f / 4) * x[2 * s] + VSPLAT(21.0f / 4) * x[4 * s] - x[6 * s];
  const vec e1 = -VSPLAT(4.0f / 17) * x[2 * s] + x[4 * s] - VSPLAT(4.0f / 17) * x[6 * s];
  const vec o1 = -VSPLAT(4.0f / 17) * x[1 * s] + x[3 * s] - VSPLAT(4.0f / 17) * x[5 * s];
  y[1 * s] = e1 + o1;
  y[2 * s] = e1 - o1;
  const vec e3 = VSPLAT(1.0f / 10) * x[2 * s] - VSPLAT(1.0f / 2) * x[4 * s] + VSPLAT(2.0f / 5) * x[6 * s];
  const vec o3 = VSPLAT(1.0f / 5) * x[1 * s] - x[3 * s] + VSPLAT(4.0f / 5) * x[5 * s];
  y[3 * s] = e3 + o3;
  y[4 * s] = e3 - o3;
  const vec e5 = VSPLAT(4.0f / 5) * x[2 * s] - x[4 * s] + VSPLAT(1.0f / 5) * x[6 * s];
  const vec o5 = VSPLAT(2.0f / 5) * x[1 * s] - VSPLAT(1.0f / 2) * x[3 * s] + VSPLAT(1.0f / 10) * x[5 * s];
  y[5 * s] = e5 + o5;
  y[6 * s] = e5 - o5;
  y[7 * s] = -x[1 * s] + VSPLAT(21.0f / 4) * x[3 * s] - VSPLAT(21.0f / 4) * x[5 * s] + x[7 * s];
}

/* y = B x (the adjoint), F(7x7) */
static inline void b8(vec *y, const vec *x, int s) {
  const vec s1 = x[1 * s] + x[2 * s], d1 = x[1 * s] - x[2 * s];
  const vec s3 = x[3 * s] + x[4 * s], d3 = x[3 * s] - x[4 * s];
  const vec s5 = x[5 * s] + x[6 * s], d5 = x[5 * s] - x[6 * s];
  y[0 * s] = x[0 * s];
  y[1 * s] = -VSPLAT(4.0f / 17) * d1 + VSPLAT(1.0f / 5) * d3 + VSPLAT(2.0f / 5) * d5 - x[7 * s];
  y[2 * s] = -VSPLAT(21.0f / 4) * x[0 * s] - VSPLAT(4.0f / 17) * s1 + VSPLAT(1.0f / 10) * s3 + VSPLAT(4.0f / 5) * s5;
  y[3 * s] = d1 - d3 - VSPLAT(1.0f / 2) * d5 + VSPLAT(21.0f / 4) * x[7 * s];
  y[4 * s] = VSPLAT(21.0f / 4) * x[0 * s] + s1 - VSPLAT(1.0f / 2) * s3 - s5;
  y[5 * s] = -VSPLAT(4.0f / 17) * d1 + VSPLAT(4.0f / 5) * d3 + VSPLAT(1.0f / 10) * d5 - VSPLAT(21.0f / 4) * x[7 * s];
  y[6 * s] = -x[0 * s] - VSPLAT(4.0f / 17) * s1 + VSPLAT(2.0f / 5) * s3 + VSPLAT(1.0f / 5) * s5;
  y[7 * s] = x[7 * s];
}

/* y = A^T x, F(7x7): 8 -> 7 */
static inline void at8(vec *y, const vec *x, int s) {
  const vec s1 = x[1 * s] + x[2 * s], d1 = x[1 * s] - x[2 * s];
  const vec s3 = x[3 * s] + x[4 * s], d3 = x[3 * s] - x[4 * s];
  const vec s5 = x[5 * s] + x[6 * s], d5 = x[5 * s] - x[6 * s];
  y[0 * s] = x[0 * s] + s1 + s3 + s5;
  y[1 * s] = d1 + VSPLAT(2.0f) * d3 + VSPLAT(1.0f / 2) * d5;
  y[2 * s] = s1 + VSPLAT(4.0f) * s3 + VSPLAT(1.0f / 4) * s5;
  y[3 * s] = d1 + VSPLAT(8.0f) * d3 + VSPLAT(1.0f / 8) * d5;
  y[4 * s] = s1 + VSPLAT(16.0f) * s3 + VSPLAT(1.0f / 16) * s5;
  y[5 * s] = d1 + VSPLAT(32.0f) * d3 + VSPLAT(1.0f / 32) * d5;
  y[6 * s] = s1 + VSPLAT(64.0f) * s3 + VSPLAT(1.0f / 64) * s5 + x[7 * s];
}

/* y = A x (the adjoint), F(7x7): 7 -> 8 */
static inline void a8(vec *y, const vec *x, int s) {
  y[0 * s] = x[0 * s];
  const vec e1 = x[0 * s] + x[2 * s] + x[4 * s] + x[6 * s];
  const vec o1 = x[1 * s] + x[3 * s] + x[5 * s];
  y[1 * s] = e1 + o1;
  y[2 * s] = e1 - o1;
  const vec e3 = x[0 * s] + VSPLAT(4.0f) * x[2 * s] + VSPLAT(16.0f) * x[4 * s] + VSPLAT(64.0f) * x[6 * s];
  const vec o3 = VSPLAT(2.0f) * x[1 * s] + VSPLAT(8.0f) * x[3 * s] + VSPLAT(32.0f) * x[5 * s];
  y[3 * s] = e3 + o3;
  y[4 * s] = e3 - o3;
  const vec e5 = x[0 * s] + VSPLAT(1.0f / 4) * x[2 * s] + VSPLAT(1.0f / 16) * x[4 * s] + VSPLAT(1.0f / 64) * x[6 * s];
  const vec o5 = VSPLAT(1.0f / 2) * x[1 * s] + VSPLAT(1.0f / 8) * x[3 * s] + VSPLAT(1.0f / 32) * x[5 * s];
  y[5 * s] = e5 + o5;
  y[6 * s] = e5 - o5;
  y[7 * s] = x[6 * s];
}

/* Inlined into each clone of their callers: out of line (gcc's choice with three tile sizes) they are
 * built for baseline x86-64 only (measured: 2% of a training step's samples there). */
#define WINO_INLINE __attribute__((always_inline))

/* The 2-D transforms of one tile: a 1-D transform f from `in` to `out` points down every column of
 * x (in x in, row-major) into t (out x in), then along every row of t into y (out x out). Each pair
 * of arrays is distinct. */
#define SEPARABLE_2D(f, in, out, x, t, y)                                                   \
  do {                                                                                      \
    for (int j_ = 0; j_ < (in); j_++) f((t) + j_, (x) + j_, (in));                          \
    for (int i_ = 0; i_ < (out); i_++) f((y) + i_ * (out), (t) + i_ * (in), 1);             \
  } while (0)

WINO_INLINE static inline void tile_input(int n, const vec *d, vec *e, vec *v) { /* v = B^T d B */
  switch (n) {
  case 4: SEPARABLE_2D(bt4, 4, 4, d, e, v); break;
  case 5: SEPARABLE_2D(bt5, 5, 5, d, e, v); break;
  default: SEPARABLE_2D(bt8, 8, 8, d, e, v);
  }
}

WINO_INLINE static inline void tile_input_grad(int n, const vec *v, vec *f, vec *dd) { /* dd = B v B^T */
  switch (n) {
  case 4: SEPARABLE_2D(b4, 4, 4, v, f, dd); break;
  case 5: SEPARABLE_2D(b5, 5, 5, v, f, dd); break;
  default: SEPARABLE_2D(b8, 8, 8, v, f, dd);
  }
}

WINO_INLINE static inline void tile_output(int n, const vec *mm, vec *s, vec *y) { /* y = A^T mm A (m x m) */
  switch (n) {
  case 4: SEPARABLE_2D(at4, 4, 3, mm, s, y); break;
  case 5: SEPARABLE_2D(at5, 5, 4, mm, s, y); break;
  default: SEPARABLE_2D(at8, 8, 7, mm, s, y);
  }
}

WINO_INLINE static inline void tile_output_grad(int n, const vec *e, vec *f, vec *dm) { /* dm = A e A^T (n x n) */
  switch (n) {
  case 4: SEPARABLE_2D(a4, 3, 4, e, f, dm); break;
  case 5: SEPARABLE_2D(a5, 4, 5, e, f, dm); break;
  default: SEPARABLE_2D(a8, 7, 8, e, f, dm);
  }
}

typedef struct wino_geom {
  const wino_tf *tf;
  int N, C, O, H, W, pad, Ho, Wo;
  int m, n, XI; /* output / input tile side, positions n^2 */
  int TH, TW;   /* tiles per output column / row */
  int Hs, Ws;   /* staged padded plane: rows / columns [0, 2 m TH + 2) x [0, 2 m TW + 2) */
  int C4;       /* GEMM inner size 4C */
  int chunk;    /* samples per chunk: even chunks of at most `rows_for` samples */
  int rows_for; /* samples the workspace layout is laid out for: min(N, cap), never less than chunk
                   and never more for a smaller batch than for a larger one */
} wino_geom;

/* Multiplies per (tile row, tile column, channel pair) of F(m x m, 2 x 2) over an Ho x Wo output. */
static int64_t wino_work(int m, int Ho, int Wo) {
  return (int64_t)(m + 1) * (m + 1) * ((Ho + m - 1) / m) * ((Wo + m - 1) / m);
}

/* Side of the staged padded plane for `out` outputs in tiles of m: 2 m ceil(out / m) + 2. */
static int64_t stage_side(int m, int out) { return 2 * (int64_t)m * ((out + m - 1) / m) + 2; }

/* The transform for d, or NULL when Winograd does not apply or would not save enough. */
static const wino_tf *wino_pick(const wcmi_conv2d_dims *d) {
  if (d->algo != WCMI_CONV_AUTO || d->KH != 4 || d->KW != 4 || d->stride != 2) return NULL;
  static const wino_tf *const tfs[] = {&TF3, &TF4, &TF7}; /* ties go to the smaller tile: less error */
  const wino_tf *tf = NULL;
  int64_t best = 0;
  for (size_t k = 0; k < sizeof tfs / sizeof tfs[0]; k++) {
    const int64_t work = wino_work(tfs[k]->m, d->Ho, d->Wo);
    if (!tf || work < best) tf = tfs[k], best = work;
  }
  if (4 * (int64_t)d->Ho * d->Wo * 10 < best * WINO_MIN_GAIN_X10) return NULL;
  if (stage_side(tf->m, d->Ho) * stage_side(tf->m, d->Wo) * LANES > STAGE_MAX) return NULL;
  return tf;
}

static wino_geom wino_geometry(const wcmi_conv2d_dims *d) {
  wino_geom g;
  g.tf = wino_pick(d);
  g.N = d->N, g.C = d->C, g.O = d->O, g.H = d->H, g.W = d->W, g.pad = d->pad, g.Ho = d->Ho, g.Wo = d->Wo;
  g.m = g.tf->m, g.n = g.tf->n, g.XI = g.n * g.n;
  g.TH = (d->Ho + g.m - 1) / g.m, g.TW = (d->Wo + g.m - 1) / g.m;
  g.Hs = (int)stage_side(g.m, d->Ho), g.Ws = (int)stage_side(g.m, d->Wo);
  g.C4 = 4 * d->C;
  const int64_t per_sample = (int64_t)g.XI * g.TH * g.TW * (g.C4 + g.O);
  int64_t cap = CHUNK_FLOATS / per_sample;
  if (cap < 1) cap = 1;
  if (cap > d->N) cap = d->N;
  const int64_t chunks = (d->N + cap - 1) / cap;
  g.chunk = (int)((d->N + chunks - 1) / chunks);
  g.rows_for = (int)cap;
  return g;
}

int conv2d_winograd_applies(const wcmi_conv2d_dims *d) { return wino_pick(d) != NULL; }

int conv2d_winograd_tile(const wcmi_conv2d_dims *d) {
  const wino_tf *tf = wino_pick(d);
  return tf ? tf->m : 0;
}

/* The n^2 planes a tile's transform reads or writes would be a power-of-two distance apart for the
 * paper's shapes (V: 128 x 512 floats for the 3x3 outputs), so all of them would map to the same
 * cache sets and alias in the store buffer's 4 KiB check (measured: 2x slower); one cache line of
 * padding per plane spreads them. */
static size_t plane_stride(size_t rows, size_t width) { return (rows * width + 15) / 16 * 16 + 16; }

typedef struct wino_bufs {
  float *V, *M, *h, *slot;
  size_t vs, ms; /* plane strides of V (rows, 4C) and M (rows, O) */
} wino_bufs;

/* Plane strides and the offsets of M, h and the slot in the workspace; returns its size in floats. */
static size_t wino_offsets(const wino_geom *g, size_t *vs, size_t *ms, size_t *off_m, size_t *off_h,
                           size_t *off_slot) {
  const size_t rows = (size_t)g->rows_for * g->TH * g->TW, n = (size_t)g->O * g->C4;
  *vs = plane_stride(rows, (size_t)g->C4), *ms = plane_stride(rows, (size_t)g->O);
  *off_m = (size_t)g->XI * *vs, *off_h = *off_m + (size_t)g->XI * *ms, *off_slot = *off_h + 2 * n;
  return *off_slot + n;
}

static wino_bufs wino_layout(const wino_geom *g, float *ws) {
  wino_bufs b;
  size_t off_m, off_h, off_slot;
  wino_offsets(g, &b.vs, &b.ms, &off_m, &off_h, &off_slot);
  b.V = ws, b.M = ws + off_m, b.h = ws + off_h, b.slot = ws + off_slot;
  return b;
}

size_t conv2d_winograd_workspace_floats(const wcmi_conv2d_dims *d) {
  const wino_geom g = wino_geometry(d);
  size_t vs, ms, off_m, off_h, off_slot;
  return wino_offsets(&g, &vs, &ms, &off_m, &off_h, &off_slot);
}

/* ---- transforms ------------------------------------------------------------------------------ */

/* r[j][i] <- r[i][j] for an 8 x 8 block (three rounds of pair shuffles). */
static inline void transpose8(vec *r) {
  vec t[LANES], u[LANES];
  for (int k = 0; k < 8; k += 2) {
    t[k] = __builtin_shufflevector(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[k + 1] = __builtin_shufflevector(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < 8; k += 4) {
    u[k] = __builtin_shufflevector(t[k], t[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[k + 1] = __builtin_shufflevector(t[k], t[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[k + 2] = __builtin_shufflevector(t[k + 1], t[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[k + 3] = __builtin_shufflevector(t[k + 1], t[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int k = 0; k < 4; k++) {
    r[k] = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[k + 4] = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

/* Stages channels c0 .. c0+cnt of one sample's planes xn (C, H, W) into st (Hs, Ws, LANES),
 * zero-padded and with the lanes past cnt zero: per input row, blocks of 8 columns of the 8 channels
 * are loaded as rows and transposed (a block past the row's end goes through a zeroed copy, so
 * nothing past x is read). */
static inline void stage_channels(const wino_geom *g, const float *xn, int c0, int cnt, float *st) {
  const size_t plane = (size_t)g->H * g->W, row = (size_t)g->Ws * LANES;
  const float *x0 = xn + (size_t)c0 * plane, *x_end = xn + (size_t)g->C * plane;
  const int rows = g->H < g->Hs - g->pad ? g->H : g->Hs - g->pad, cols = g->W < g->Ws - g->pad ? g->W : g->Ws - g->pad;
  /* zero the border only: the loops below write every interior position */
  memset(st, 0, (size_t)g->pad * row * sizeof *st);
  memset(st + (size_t)(g->pad + rows) * row, 0, (size_t)(g->Hs - g->pad - rows) * row * sizeof *st);
  const vec zero = VSPLAT(0.0f);
  for (int r = g->pad; r < g->pad + rows; r++) { /* a few positions each: vector stores, not calls */
    for (int q = 0; q < g->pad; q++) vstore(st + (size_t)r * row + (size_t)q * LANES, &zero);
    for (int q = g->pad + cols; q < g->Ws; q++) vstore(st + (size_t)r * row + (size_t)q * LANES, &zero);
  }
  for (int r = 0; r < rows; r++)
    for (int q0 = 0; q0 < cols; q0 += LANES) {
      const int w = cols - q0 < LANES ? cols - q0 : LANES;
      vec blk[LANES];
      for (int l = 0; l < LANES; l++) {
        const float *src = x0 + (size_t)l * plane + (size_t)r * g->W + q0;
        /* a short block is read whole where that stays inside the sample (the floats past w, of
         * the next row or channel, end up in lanes the transpose puts in blocks never stored):
         * a partial copy into a vector costs a store-forwarding stall */
        if (l >= cnt) blk[l] = VSPLAT(0.0f);
        else if (src + LANES <= x_end) vload(&blk[l], src);
        else vload_n(&blk[l], src, w);
      }
      transpose8(blk);
      float *dst = st + ((size_t)(r + g->pad) * g->Ws + q0 + g->pad) * LANES;
      /* unrolled with a test per block: as a plain loop gcc turns it into a memcpy, whose 8-byte
       * loads of the just-stored vectors stall on store forwarding */
#pragma GCC unroll 8
      for (int k = 0; k < LANES; k++)
        if (k < w) vstore(dst + (size_t)k * LANES, &blk[k]);
    }
}

/* The reverse for dx: channels c0 .. c0+cnt of one sample's planes dxn (C, H, W) from the stage,
 * positions at padded row >= read_h or column >= read_w set to 0. */
static inline void unstage_channels(const wino_geom *g, const float *st, int c0, int cnt, int read_h, int read_w,
                                    float *dxn) {
  const size_t plane = (size_t)g->H * g->W;
  float *dx0 = dxn + (size_t)c0 * plane;
  for (int r = 0; r < g->H; r++)
    for (int q0 = 0; q0 < g->W; q0 += LANES) {
      const int w = g->W - q0 < LANES ? g->W - q0 : LANES;
      vec blk[LANES];
      for (int k = 0; k < LANES; k++) {
        const int sr = r + g->pad, sq = q0 + k + g->pad;
        if (k < w && sr < read_h && sq < read_w) vload(&blk[k], st + ((size_t)sr * g->Ws + sq) * LANES);
        else blk[k] = VSPLAT(0.0f);
      }
      transpose8(blk);
      /* a short block is stored whole where the floats past w land in later rows of the same plane,
       * which this loop writes afterwards (the stage's lanes past w are 0) */
      const size_t at = (size_t)r * g->W + q0;
      const int whole = at + LANES <= plane;
      for (int l = 0; l < cnt && l < LANES; l++) {
        if (whole) vstore(dx0 + (size_t)l * plane + at, &blk[l]);
        else vstore_n(dx0 + (size_t)l * plane + at, &blk[l], w);
      }
    }
}

/* The per-item transform bodies are built for AVX2 and baseline x86-64 (core/clones.h), so that
 * 8-lane vectors are one register where the CPU has them. */
#define WINO_CLONES WCMI_CLONES("avx2", "default")

/* Items of the transforms: (sample of the chunk, group of LANES channels). */
typedef struct wino_item {
  int nl, c0, cnt; /* sample within the chunk, first channel, channels in the group */
} wino_item;

static wino_item item_of(int64_t it, int channels) {
  const int groups = (channels + LANES - 1) / LANES;
  wino_item r = {(int)(it / groups), (int)(it % groups) * LANES, 0};
  r.cnt = channels - r.c0 < LANES ? channels - r.c0 : LANES;
  return r;
}

static int64_t items_of(int nc, int channels) { return (int64_t)nc * ((channels + LANES - 1) / LANES); }

/* V[xi][tile][ab * C + c] = (B^T d_ab B)[xi] for one item's tiles; st: the item's staged plane. */
WINO_CLONES
static void input_item(const wino_geom *g, const wino_bufs *bf, const float *xn, wino_item t, float *st) {
  const int n = g->n;
  stage_channels(g, xn, t.c0, t.cnt, st);
  for (int th = 0; th < g->TH; th++)
    for (int tw = 0; tw < g->TW; tw++) {
      const size_t tp = ((size_t)t.nl * g->TH + th) * g->TW + tw;
      const float *base = st + ((size_t)(2 * g->m * th) * g->Ws + 2 * g->m * tw) * LANES;
      for (int ab = 0; ab < 4; ab++) {
        const int a = ab >> 1, b = ab & 1;
        vec d[NMAX * NMAX], e[NMAX * NMAX], v[NMAX * NMAX];
        for (int i = 0; i < n; i++)
          for (int j = 0; j < n; j++) vload(&d[i * n + j], base + ((size_t)(2 * i + a) * g->Ws + 2 * j + b) * LANES);
        tile_input(n, d, e, v);
        float *dst = bf->V + tp * g->C4 + (size_t)ab * g->C + t.c0;
        for (int xi = 0; xi < g->XI; xi++) vstore_n(dst + (size_t)xi * bf->vs, &v[xi], t.cnt);
      }
    }
}

/* One item's dx: dd = B dV B^T added onto the zeroed stage, whose interior is dx (inputs the conv
 * never reads get exactly 0). */
WINO_CLONES
static void input_grad_item(const wino_geom *g, const wino_bufs *bf, float *dxn, wino_item t, float *st) {
  const int n = g->n;
  memset(st, 0, (size_t)g->Hs * g->Ws * LANES * sizeof *st);
  for (int th = 0; th < g->TH; th++)
    for (int tw = 0; tw < g->TW; tw++) {
      const size_t tp = ((size_t)t.nl * g->TH + th) * g->TW + tw;
      float *base = st + ((size_t)(2 * g->m * th) * g->Ws + 2 * g->m * tw) * LANES;
      for (int ab = 0; ab < 4; ab++) {
        const int a = ab >> 1, b = ab & 1;
        vec v[NMAX * NMAX], f[NMAX * NMAX], dd[NMAX * NMAX];
        const float *src = bf->V + tp * g->C4 + (size_t)ab * g->C + t.c0;
        for (int xi = 0; xi < g->XI; xi++) vload_n(&v[xi], src + (size_t)xi * bf->vs, t.cnt);
        tile_input_grad(n, v, f, dd);
        for (int i = 0; i < n; i++)
          for (int j = 0; j < n; j++) {
            float *p = base + ((size_t)(2 * i + a) * g->Ws + 2 * j + b) * LANES;
            vec acc;
            vload(&acc, p);
            acc += dd[i * n + j];
            vstore(p, &acc);
          }
      }
    }
  /* the conv reads padded rows and columns below 2 Ho + 2 and 2 Wo + 2; past them the stage holds
   * only the rounding residue of the last tiles' overhang, whose dy was 0 */
  unstage_channels(g, st, t.c0, t.cnt, 2 * g->Ho + 2, 2 * g->Wo + 2, dxn);
}

/* Whether one tile covers the whole output plane (m = Ho = Wo: the paper's 7x7 and 3x3 outputs), whose
 * m^2 positions are then contiguous in every channel's plane. */
static inline int one_tile_plane(const wino_geom *g) {
  return g->TH == 1 && g->TW == 1 && g->m == g->Ho && g->m == g->Wo;
}

/* One item's y tiles = A^T M A (+ bias); rows and columns of the last tiles past the output's edge
 * are dropped. yn: the item's first output channel plane. */
WINO_CLONES
static void output_item(const wino_geom *g, const wino_bufs *bf, const float *bias, float *yn, wino_item t) {
  const int n = g->n, m = g->m;
  float bo[LANES] = {0};
  if (bias) memcpy(bo, bias + t.c0, (size_t)t.cnt * sizeof *bo);
  for (int th = 0; th < g->TH; th++)
    for (int tw = 0; tw < g->TW; tw++) {
      const size_t tp = ((size_t)t.nl * g->TH + th) * g->TW + tw;
      vec mm[NMAX * NMAX], s[MMAX * NMAX], out[MMAX * MMAX];
      const float *src = bf->M + tp * g->O + t.c0;
      for (int xi = 0; xi < g->XI; xi++) vload_n(&mm[xi], src + (size_t)xi * bf->ms, t.cnt);
      tile_output(n, mm, s, out);
      if (one_tile_plane(g)) { /* the tile is the whole m x m plane: 8 positions at a time, transposed */
        const int pos = m * m;
        int p0 = 0;
        for (; p0 + LANES <= pos; p0 += LANES) {
          vec blk[LANES];
          for (int k = 0; k < LANES; k++) blk[k] = out[p0 + k];
          transpose8(blk);
          for (int l = 0; l < t.cnt; l++) {
            const vec v = blk[l] + VSPLAT(bo[l]);
            vstore(yn + (size_t)l * pos + p0, &v);
          }
        }
        for (; p0 < pos; p0++) {
          float lanes[LANES];
          vstore(lanes, &out[p0]);
          for (int l = 0; l < t.cnt; l++) yn[(size_t)l * pos + p0] = lanes[l] + bo[l];
        }
        continue;
      }
      for (int i = 0; i < m && m * th + i < g->Ho; i++)
        for (int j = 0; j < m && m * tw + j < g->Wo; j++) {
          float lanes[LANES];
          vstore(lanes, &out[i * m + j]);
          const size_t at = (size_t)(m * th + i) * g->Wo + m * tw + j;
          for (int l = 0; l < t.cnt; l++) yn[(size_t)l * g->Ho * g->Wo + at] = lanes[l] + bo[l];
        }
    }
}

/* One item's dM tiles = A dY A^T: the adjoint of output_item (positions past the output's edge
 * count as 0). dyn: the item's first output channel plane. */
WINO_CLONES
static void output_grad_item(const wino_geom *g, const wino_bufs *bf, const float *dyn, wino_item t) {
  const int n = g->n, m = g->m;
  for (int th = 0; th < g->TH; th++)
    for (int tw = 0; tw < g->TW; tw++) {
      const size_t tp = ((size_t)t.nl * g->TH + th) * g->TW + tw;
      vec e[MMAX * MMAX], f[NMAX * MMAX], dm[NMAX * NMAX];
      if (one_tile_plane(g)) { /* the tile is the whole m x m plane: 8 positions at a time, transposed */
        const int pos = m * m;
        int p0 = 0;
        for (; p0 + LANES <= pos; p0 += LANES) {
          vec blk[LANES];
          for (int l = 0; l < LANES; l++) {
            if (l < t.cnt) vload(&blk[l], dyn + (size_t)l * pos + p0);
            else blk[l] = VSPLAT(0.0f);
          }
          transpose8(blk);
          for (int k = 0; k < LANES; k++) e[p0 + k] = blk[k];
        }
        for (; p0 < pos; p0++) {
          float lanes[LANES] = {0};
          for (int l = 0; l < t.cnt; l++) lanes[l] = dyn[(size_t)l * pos + p0];
          vload(&e[p0], lanes);
        }
      } else {
        for (int i = 0; i < m; i++)
          for (int j = 0; j < m; j++) {
            float lanes[LANES] = {0};
            if (m * th + i < g->Ho && m * tw + j < g->Wo) {
              const size_t at = (size_t)(m * th + i) * g->Wo + m * tw + j;
              for (int l = 0; l < t.cnt; l++) lanes[l] = dyn[(size_t)l * g->Ho * g->Wo + at];
            }
            vload(&e[i * m + j], lanes);
          }
      }
      tile_output_grad(n, e, f, dm);
      float *dst = bf->M + tp * g->O + t.c0;
      for (int xi = 0; xi < g->XI; xi++) vstore_n(dst + (size_t)xi * bf->ms, &dm[xi], t.cnt);
    }
}

/* The chunk's samples [n0, n0 + nc) through each transform, items split over T threads. */
static void input_transform(const wino_geom *g, const wino_bufs *bf, const float *x, int n0, int nc, int T) {
  const int64_t items = items_of(nc, g->C);
#pragma omp parallel num_threads(T)
  {
    float st[STAGE_MAX]; /* (Hs, Ws, LANES) */
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      const wino_item t = item_of(it, g->C);
      input_item(g, bf, x + (size_t)(n0 + t.nl) * g->C * g->H * g->W, t, st);
    }
  }
}

static void input_grad_transform(const wino_geom *g, const wino_bufs *bf, float *dx, int n0, int nc, int T) {
  const int64_t items = items_of(nc, g->C);
#pragma omp parallel num_threads(T)
  {
    float st[STAGE_MAX];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      const wino_item t = item_of(it, g->C);
      input_grad_item(g, bf, dx + (size_t)(n0 + t.nl) * g->C * g->H * g->W, t, st);
    }
  }
}

static void output_transform(const wino_geom *g, const wino_bufs *bf, const float *bias, float *y, int n0, int nc,
                             int T) {
  const int64_t items = items_of(nc, g->O);
#pragma omp parallel for schedule(static) num_threads(T)
  for (int64_t it = 0; it < items; it++) {
    const wino_item t = item_of(it, g->O);
    output_item(g, bf, bias, y + ((size_t)(n0 + t.nl) * g->O + t.c0) * g->Ho * g->Wo, t);
  }
}

static void output_grad_transform(const wino_geom *g, const wino_bufs *bf, const float *dy, int n0, int nc, int T) {
  const int64_t items = items_of(nc, g->O);
#pragma omp parallel for schedule(static) num_threads(T)
  for (int64_t it = 0; it < items; it++) {
    const wino_item t = item_of(it, g->O);
    output_grad_item(g, bf, dy + ((size_t)(n0 + t.nl) * g->O + t.c0) * g->Ho * g->Wo, t);
  }
}

/* h_u[o][ab * C + c] = sum_v G[q][v] g_ab[u][v] = G[q][0] w[o][c][2u+a][b] + G[q][1] w[o][c][2u+a][2+b]
 * for u = 0, 1 (h: two (O, 4C) matrices). */
/* Output channel o's share: its (C, 16) kernel block is read in blocks of 8 channels, transposed to
 * tap-major (8x8 transposes) so that every h row is a contiguous vector expression over channels. */
WINO_CLONES
static void weight_half_row(const wino_geom *g, const float *wo, float g0, float g1, float *h0, float *h1) {
  const int C = g->C;
  int c0 = 0;
  for (; c0 + LANES <= C; c0 += LANES) {
    vec taps[16]; /* taps[t]: tap t (kh * 4 + kw) of channels c0 .. c0+7 */
    for (int half = 0; half < 2; half++) {
      vec blk[LANES];
      for (int l = 0; l < LANES; l++) vload(&blk[l], wo + (size_t)(c0 + l) * 16 + half * 8);
      transpose8(blk);
      for (int t = 0; t < 8; t++) taps[half * 8 + t] = blk[t];
    }
    for (int u = 0; u < 2; u++)
      for (int ab = 0; ab < 4; ab++) {
        const int a = ab >> 1, b = ab & 1, t = (2 * u + a) * 4 + b;
        vec v = VSPLAT(g0) * taps[t] + VSPLAT(g1) * taps[t + 2];
        vstore((u ? h1 : h0) + (size_t)ab * C + c0, &v);
      }
  }
  for (; c0 < C; c0++) /* channels past the last full block of 8 */
    for (int u = 0; u < 2; u++)
      for (int ab = 0; ab < 4; ab++) {
        const int a = ab >> 1, b = ab & 1;
        const float *k = wo + (size_t)c0 * 16 + (2 * u + a) * 4;
        (u ? h1 : h0)[(size_t)ab * C + c0] = g0 * k[b] + g1 * k[2 + b];
      }
}

static void weight_half_transform(const wino_geom *g, const float *w, int q, float *h, int T) {
  const float g0 = g->tf->G[q][0], g1 = g->tf->G[q][1];
  const size_t plane = (size_t)g->O * g->C4;
#pragma omp parallel for schedule(static) num_threads(T)
  for (int o = 0; o < g->O; o++)
    weight_half_row(g, w + (size_t)o * g->C * 16, g0, g1, h + (size_t)o * g->C4, h + plane + (size_t)o * g->C4);
}

/* The transformed weights (O, 4C) of position (p, q) from h_q: G[p][0] h_q[0] + G[p][1] h_q[1]. */
static const float *weight_at(const wino_geom *g, const float *h, int p, float *slot, int T) {
  const size_t n = (size_t)g->O * g->C4;
  const float g0 = g->tf->G[p][0], g1 = g->tf->G[p][1];
  if (g0 == 1.0f && g1 == 0.0f) return h;
  if (g0 == 0.0f && g1 == 1.0f) return h + n;
  const float *h0 = h, *h1 = h + n;
#pragma omp parallel for schedule(static) num_threads(T)
  for (size_t i = 0; i < n; i++) slot[i] = g0 * h0[i] + g1 * h1[i];
  return slot;
}

/* dw[o][c][2u+a][2v+b] += G[q][v] t_u[o][ab * C + c]: column q's share of dg = G^T dU G, where
 * t_u = sum_p G[p][u] dU_(p,q). Output channel o's share, the reverse of weight_half_row: blocks of
 * 8 channels become 16 tap vectors, transposed (8x8) into the channels' 16-tap kernels. Taps whose
 * coefficient is 0 are left as they are. */
WINO_CLONES
static void weight_grad_row(const wino_geom *g, const float *t0, const float *t1, float g0, float g1, float *k) {
  const int C = g->C;
  int c0 = 0;
  for (; c0 + LANES <= C; c0 += LANES) {
    vec x[8]; /* x[u * 4 + ab]: t_u[ab * C + c0 .. c0+7] */
    for (int u = 0; u < 2; u++)
      for (int ab = 0; ab < 4; ab++) vload(&x[u * 4 + ab], (u ? t1 : t0) + (size_t)ab * C + c0);
    for (int half = 0; half < 2; half++) { /* taps 8 half .. 8 half + 7: kh = 2 half, 2 half + 1 */
      vec blk[LANES];
      for (int tp = 0; tp < 8; tp++) {
        const int kh = 2 * half + tp / 4, kw = tp % 4, v = kw >> 1, ab = (kh & 1) * 2 + (kw & 1);
        const float gv = v ? g1 : g0;
        blk[tp] = gv == 0.0f ? VSPLAT(0.0f) : VSPLAT(gv) * x[(kh >> 1) * 4 + ab];
      }
      transpose8(blk);
      for (int l = 0; l < LANES; l++) {
        float *dst = k + (size_t)(c0 + l) * 16 + half * 8;
        vec acc;
        vload(&acc, dst);
        acc += blk[l];
        vstore(dst, &acc);
      }
    }
  }
  for (; c0 < C; c0++) /* channels past the last full block of 8 */
    for (int kh = 0; kh < 4; kh++)
      for (int kw = 0; kw < 4; kw++) {
        const float gv = kw >> 1 ? g1 : g0;
        const float *tu = kh >> 1 ? t1 : t0;
        if (gv != 0.0f) k[(size_t)c0 * 16 + kh * 4 + kw] += gv * tu[((kh & 1) * 2 + (kw & 1)) * C + c0];
      }
}

static void weight_grad_accumulate(const wino_geom *g, const float *t, int q, float *dw, int T) {
  const size_t plane = (size_t)g->O * g->C4;
#pragma omp parallel for schedule(static) num_threads(T)
  for (int o = 0; o < g->O; o++)
    weight_grad_row(g, t + (size_t)o * g->C4, t + plane + (size_t)o * g->C4, g->tf->G[q][0], g->tf->G[q][1],
                    dw + (size_t)o * g->C * 16);
}

/* t_u += G[p][u] slot for u = 0, 1 (t: two (O, 4C) matrices); t_u = G[p][u] slot where not filled yet. */
static void weight_grad_gather(const wino_geom *g, const float *slot, int p, float *t, int *filled, int T) {
  const size_t n = (size_t)g->O * g->C4;
  const float g0 = g->tf->G[p][0], g1 = g->tf->G[p][1];
  const int f0 = filled[0], f1 = filled[1];
  float *t0 = t, *t1 = t + n;
#pragma omp parallel for schedule(static) num_threads(T)
  for (size_t i = 0; i < n; i++) { /* one pass over the slot; the tests on f0 and f1 are hoisted */
    const float v = slot[i];
    t0[i] = f0 ? t0[i] + g0 * v : g0 * v;
    t1[i] = f1 ? t1[i] + g1 * v : g1 * v;
  }
  filled[0] = filled[1] = 1;
}

/* ---- passes ---------------------------------------------------------------------------------- */

/* M_xi = V_xi U_xi^T (forward) or dV_xi = dM_xi U_xi (input gradient) for every position, with the
 * transformed weights built column by column. */
static void products_with_weights(const wino_geom *g, const wino_bufs *bf, const float *w, int rows, int grad,
                                  int T) {
  for (int q = 0; q < g->n; q++) {
    weight_half_transform(g, w, q, bf->h, T);
    for (int p = 0; p < g->n; p++) {
      const size_t xi = (size_t)(p * g->n + q);
      const float *U = weight_at(g, bf->h, p, bf->slot, T);
      if (grad) /* dV overwrites V position by position: the weight gradient is done with it */
        wcmi_sgemm(0, 0, rows, g->C4, g->O, 1.0f, bf->M + xi * bf->ms, g->O, U, g->C4, 0.0f, bf->V + xi * bf->vs,
                   g->C4);
      else
        wcmi_sgemm(0, 1, rows, g->O, g->C4, 1.0f, bf->V + xi * bf->vs, g->C4, U, g->C4, 0.0f, bf->M + xi * bf->ms,
                   g->O);
    }
  }
}

/* dw += G^T (sum over the chunk of dM_xi^T V_xi) G, column by column. A position whose G row is a
 * unit row ((1, 0) or (0, 1): the first and the last of every transform here) needs no slot: its GEMM
 * writes or accumulates into t_u directly. */
static void weight_gradient(const wino_geom *g, const wino_bufs *bf, int rows, float *dw, int T) {
  const size_t n = (size_t)g->O * g->C4;
  for (int q = 0; q < g->n; q++) {
    int filled[2] = {0, 0}; /* t_u written yet */
    for (int p = 0; p < g->n; p++) {
      const size_t xi = (size_t)(p * g->n + q);
      const float g0 = g->tf->G[p][0], g1 = g->tf->G[p][1];
      const int unit = g0 == 1.0f && g1 == 0.0f ? 0 : g0 == 0.0f && g1 == 1.0f ? 1 : -1;
      float *out = unit >= 0 ? bf->h + (size_t)unit * n : bf->slot;
      const float beta = unit >= 0 && filled[unit] ? 1.0f : 0.0f;
      wcmi_sgemm(1, 0, g->O, g->C4, rows, 1.0f, bf->M + xi * bf->ms, g->O, bf->V + xi * bf->vs, g->C4, beta, out,
                 g->C4);
      if (unit >= 0) filled[unit] = 1;
      else weight_grad_gather(g, bf->slot, p, bf->h, filled, T);
    }
    for (int u = 0; u < 2; u++)
      if (!filled[u]) memset(bf->h + (size_t)u * n, 0, n * sizeof *bf->h);
    weight_grad_accumulate(g, bf->h, q, dw, T);
  }
}

void conv2d_winograd_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                             float *ws, int T) {
  const wino_geom g = wino_geometry(d);
  const wino_bufs bf = wino_layout(&g, ws);
  for (int n0 = 0; n0 < g.N; n0 += g.chunk) {
    const int nc = g.N - n0 < g.chunk ? g.N - n0 : g.chunk, rows = nc * g.TH * g.TW;
    input_transform(&g, &bf, x, n0, nc, T);
    products_with_weights(&g, &bf, w, rows, 0, T);
    output_transform(&g, &bf, b, y, n0, nc, T);
  }
}

void conv2d_winograd_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                              float *dw, float *ws, int T) {
  const wino_geom g = wino_geometry(d);
  const wino_bufs bf = wino_layout(&g, ws);
  for (int n0 = 0; n0 < g.N; n0 += g.chunk) {
    const int nc = g.N - n0 < g.chunk ? g.N - n0 : g.chunk, rows = nc * g.TH * g.TW;
    output_grad_transform(&g, &bf, dy, n0, nc, T);
    if (dw) {
      input_transform(&g, &bf, x, n0, nc, T);
      weight_gradient(&g, &bf, rows, dw, T);
    }
    if (dx) {
      products_with_weights(&g, &bf, w, rows, 1, T);
      input_grad_transform(&g, &bf, dx, n0, nc, T);
    }
  }
}
