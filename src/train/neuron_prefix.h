/* Internal: the "patch prefix" of per-neuron vulnerability. The activation of one channel of an
 * encoder conv layer at one output location, computed exactly from the input patch in that
 * location's receptive field (see task_neuron.c and docs/estimate-mi.md). */
#ifndef WCMI_NEURON_PREFIX_H
#define WCMI_NEURON_PREFIX_H

#include "wcmi/data.h"
#include "wcmi/model.h"

#define NEURON_MAX_CONV 3

typedef struct neuron_conv {
  const float *w, *gamma, *beta, *rmean, *rvar; /* encoder.layer<j>.{0,1} */
  int O;                                         /* output channels */
  int full;                                      /* output map size on the full image */
} neuron_conv;

typedef struct neuron_prefix {
  int k;                              /* target conv index (0, 1, 2) */
  int C, r;                           /* patch (C, r, r) */
  int m[NEURON_MAX_CONV];             /* map size of conv j on the patch */
  int start_off[NEURON_MAX_CONV + 1]; /* window start of conv j's output is 2^(k-j) o + off; [3]: the input's is 2^(k+1) o + off */
  int locs;                           /* locations of the target layer per side on the full image */
  neuron_conv conv[NEURON_MAX_CONV];
  float mean[3], std[3];
  int max_batch;
  int channel;                        /* target channel */
  float *xn;                          /* normalized input (B, C, r, r); 0 in the first conv's padding */
  float *y[NEURON_MAX_CONV];          /* conv outputs, pre-BN */
  float *a[NEURON_MAX_CONV];          /* after BN, ReLU and the mask (input of the next conv) */
  float *mask[NEURON_MAX_CONV];       /* (B, m_j * m_j): 1 inside the image's map, 0 in the padding */
  float *inmask;                      /* (B, r * r): 1 for image pixels, 0 for the first conv's padding */
  float *out;                         /* (B): the target channel's conv output, pre-BN */
  float *act;                         /* (B): the activation BN_k(out) (affine in out: the same MI) */
  float *g0, *g1, *ws;                /* backward scratch and conv workspace */
  size_t ws_floats;
} neuron_prefix;

/* A set of samples: (image, location) pairs cut into patches. */
typedef struct neuron_patches {
  int64_t n;
  float *x;     /* (n, C, r, r) patches in [0,1]; padding pixels hold 0 (ignored by the prefix) */
  int32_t *loc; /* (n) oy * locs + ox */
} neuron_patches;

/* "layer0.0" -> 0, "layer1.0" -> 1, "layer2.0" -> 2, else -1. */
int neuron_layer_index(const char *name);
/* Geometry and parameters of the prefix up to conv k of m's encoder (k4 s2 p1 convs), buffers for
 * batches up to max_batch. */
int neuron_prefix_init(wcmi_ctx *ctx, neuron_prefix *p, const wcmi_model *m, int k, int max_batch);
void neuron_prefix_free(neuron_prefix *p);
/* Top-left input pixel (per axis) of the receptive field of location o; may be negative. */
int neuron_patch_start(const neuron_prefix *p, int o);
/* Masks for a batch whose samples sit at loc[0..N). */
void neuron_prefix_set_masks(neuron_prefix *p, const int32_t *loc, int N);
/* p->act (N) for patches x (N, C, r, r); masks must be set. */
void neuron_prefix_forward(neuron_prefix *p, const float *x, int N);
/* dx (N, C, r, r) from dact (N) through the last forward (0 on padding pixels). */
void neuron_prefix_backward(neuron_prefix *p, const float *dact, int N, float *dx);
/* Up to `want` samples: images of d in a random order drawn from (seed, stream), every location of
 * each image. */
int neuron_cut_patches(wcmi_ctx *ctx, const neuron_prefix *p, const wcmi_dataset *d, int64_t want, uint64_t seed,
                       uint64_t stream, neuron_patches *s);
void neuron_patches_free(neuron_patches *s);

#endif
