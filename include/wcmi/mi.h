/* wcmi mutual-information estimators over the encode-and-dot-product critic (PAPER.md section 2).
 *
 * A local network maps each input x_j to a feature map Lx_j with L locations and H channels; a
 * global network maps each representation z_i to Gz_i in R^H. The critic's scores are
 *     u[i, j, loc] = <Gz_i, Lx_j[:, loc]>         u: (N, N, L)
 * Positives are the diagonal pairs (i, i, loc); negatives are the pairs (i, j, loc) with j != i.
 * Every estimator returns a scalar loss to MINIMIZE; the MI estimate is wcmi_mi_estimate(loss):
 * -loss for "dv" and "fd", log(1 + (N-1) L) - loss for "nce". Formulas, the choice to exclude the
 * diagonal from the negatives, and which estimates bound MI are in docs/estimators.md.
 *
 * Memory: the caller provides a workspace of wcmi_mi_workspace_bytes(N, H, L) bytes; the loss calls
 * never allocate. wcmi_mi_forward leaves the scores and the statistics that backward needs in the
 * workspace, so wcmi_mi_backward must follow a forward on the same inputs and workspace. A workspace
 * sized for a batch N serves any smaller batch.
 * Threads: OpenMP (schedule(static)) and the BLAS, with the context's thread count. The loss
 * reductions run in double in a fixed order that does not depend on the thread count; the score
 * GEMMs split the samples into one block range per thread and sum dGz per thread, so results are
 * bit-identical for a given thread count (and differ in the last bits between counts).
 */
#ifndef WCMI_MI_H
#define WCMI_MI_H

#include "wcmi/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wcmi_mi_estimator {
  WCMI_MI_DV = 0,  /* "dv": Donsker-Varadhan (MINE), the default */
  WCMI_MI_FD = 1,  /* "fd": Fenchel dual of an f-divergence, see wcmi_mi_measure */
  WCMI_MI_NCE = 2, /* "nce": InfoNCE */
} wcmi_mi_estimator;

/* Measures of the "fd" estimator (expectations for positive score p / negative score q):
 * JSD ln2 - softplus(-p) / softplus(-q) + q - ln2;  GAN -softplus(-p) / softplus(-q) + q;
 * X2 p^2 / -(|q| + 1)^2 / 2;  KL p / exp(q - 1);  RKL -exp(-p) / q - 1;  H2 1 - exp(-p) / exp(q) - 1;
 * W1 p / q.  loss = mean over negatives - mean over positives. */
typedef enum wcmi_mi_measure {
  WCMI_MEASURE_JSD = 0, /* "jsd", the default */
  WCMI_MEASURE_GAN = 1, /* "gan" */
  WCMI_MEASURE_X2 = 2,  /* "x2" */
  WCMI_MEASURE_KL = 3,  /* "kl" */
  WCMI_MEASURE_RKL = 4, /* "rkl" */
  WCMI_MEASURE_H2 = 5,  /* "h2" */
  WCMI_MEASURE_W1 = 6,  /* "w1" */
} wcmi_mi_measure;

typedef struct wcmi_mi_cfg {
  wcmi_mi_estimator estimator;
  wcmi_mi_measure measure; /* used by WCMI_MI_FD only */
} wcmi_mi_cfg;

/* { WCMI_MI_DV, WCMI_MEASURE_JSD } */
wcmi_mi_cfg wcmi_mi_default_cfg(void);

/* Parse "dv" | "fd" | "nce" and "jsd" | "gan" | "x2" | "kl" | "rkl" | "h2" | "w1" (exact, lower case).
 * Unknown or NULL names: WCMI_EINVAL with a message listing the valid names; *out untouched. */
int wcmi_mi_parse_estimator(wcmi_ctx *ctx, const char *name, wcmi_mi_estimator *out);
int wcmi_mi_parse_measure(wcmi_ctx *ctx, const char *name, wcmi_mi_measure *out);
/* The names above; "?" for values outside the enums. */
const char *wcmi_mi_estimator_name(wcmi_mi_estimator e);
const char *wcmi_mi_measure_name(wcmi_mi_measure m);

/* Checks the configuration and sizes: H, L >= 1; N >= 2 for "dv" and "fd" (they need negatives),
 * N >= 1 for "nce"; N * L and N * N * L addressable. WCMI_EINVAL with a message otherwise. */
int wcmi_mi_check(wcmi_ctx *ctx, wcmi_mi_cfg cfg, int N, int H, int L);

/* Bytes of workspace the loss calls need for these sizes (any estimator) with up to the current
 * OpenMP thread count; 0 if the sizes are invalid or the size overflows. About 8 N^2 L bytes plus
 * the score GEMMs' per-thread blocks (about 1 KiB * H per thread at L = 49). A call with more
 * threads than the workspace was sized for uses fewer for the score GEMMs. */
size_t wcmi_mi_workspace_bytes(int N, int H, int L);

/* Scores through the BLAS: u[i, j, loc] = sum_c Gz[i, c] * Lx[j, c, loc].
 * Lx: (N, H, L), Gz: (N, H), u: (N, N, L). Cannot fail (sizes checked by the caller). */
void wcmi_mi_scores(int N, int H, int L, const float *Lx, const float *Gz, float *u);

/* Loss of the estimator cfg on local features Lx (N, H, L) and global features Gz (N, H).
 * Writes *loss (also when it is not finite). Returns WCMI_OK, WCMI_EINVAL (bad cfg, sizes, NULL
 * pointers, workspace smaller than wcmi_mi_workspace_bytes) or WCMI_ENUMERIC (loss is NaN/Inf). */
int wcmi_mi_forward(wcmi_ctx *ctx, wcmi_mi_cfg cfg, int N, int H, int L, const float *Lx, const float *Gz,
                    void *ws, size_t ws_bytes, float *loss);
/* Gradients of dloss * loss from the last wcmi_mi_forward on the same inputs and workspace.
 * dLx (N, H, L) and dGz (N, H) are OVERWRITTEN; either may be NULL to skip it. dLx may be Lx itself
 * (each sample block of Lx is read, for dGz, before its gradient is written). */
int wcmi_mi_backward(wcmi_ctx *ctx, wcmi_mi_cfg cfg, int N, int H, int L, const float *Lx, const float *Gz,
                     float dloss, void *ws, size_t ws_bytes, float *dLx, float *dGz);

/* MI estimate in nats from a loss of the same cfg and sizes: -loss for "dv" and "fd";
 * log(1 + (N - 1) L) - loss for "nce" (the InfoNCE bound log K - loss with K candidates per row). */
double wcmi_mi_estimate(wcmi_mi_cfg cfg, int N, int L, double loss);

#ifdef __cplusplus
}
#endif
#endif
