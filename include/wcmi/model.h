/* The paper's networks (PAPER.md section 3) and the model bundle that tasks train, save and load. */
#ifndef WCMI_MODEL_H
#define WCMI_MODEL_H

#include "wcmi/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WCMI_ZDIM 64       /* representation size of the basic encoder */
#define WCMI_NUM_CLASSES 10
/* Widest MI estimator (--hsize, a model file's hsize): 8 x the paper's 2048. The critic's buffers
 * grow as batch x hsize x 49 floats; metadata asking for more is refused before anything is built. */
#define WCMI_HSIZE_MAX 16384

/* Input geometry and the per-dataset normalization applied inside the model. */
typedef struct wcmi_input_spec {
  int C, H, W;
  float mean[3], std[3];
} wcmi_input_spec;

/* mnist / fashion-mnist: (1, 28, 28), mean 0, std 1. cifar10: (3, 32, 32) with the paper's
 * mean/std. svhn: (3, 32, 32), mean 0, std 1 (the paper gives none). Returns WCMI_EINVAL for an
 * unknown name. */
int wcmi_input_spec_for(wcmi_ctx *ctx, const char *dataset, wcmi_input_spec *spec);

typedef enum { WCMI_HEAD_NONE = 0, WCMI_HEAD_LINEAR = 1, WCMI_HEAD_MLP = 2 } wcmi_head_kind;

/* What sits below the head: the paper's basic encoder (z in R^64), or "pixels", the identity: z is
 * the normalized image flattened to C*H*W values, so heads on it are classifiers on raw pixels
 * (the reference row that shows what a learned representation adds). */
typedef enum { WCMI_ENCODER_BASIC = 0, WCMI_ENCODER_PIXELS = 1 } wcmi_encoder_kind;
const char *wcmi_encoder_name(wcmi_encoder_kind k); /* "basic", "pixels" */
int wcmi_encoder_parse(wcmi_ctx *ctx, const char *s, wcmi_encoder_kind *out);
const char *wcmi_head_name(wcmi_head_kind k);
int wcmi_head_parse(wcmi_ctx *ctx, const char *s, wcmi_head_kind *out);

/* Builders; each returns a finalized net (NULL on error, message in ctx). */
/* Basic encoder: normalize, 3 x (conv k4 s2 p1 no bias, BN, ReLU), flatten, Linear 1024, BN1d,
 * ReLU, Linear 64. Names encoder.layer{0,1,2}.{0,1}, encoder.layer4.{0,1}, encoder.layer5. */
wcmi_net *wcmi_build_encoder(wcmi_ctx *ctx, const wcmi_input_spec *in, int max_batch, wcmi_rng *rng);
/* Pixels encoder: normalize, flatten; no parameters (net name "encoder"). */
wcmi_net *wcmi_build_pixels_encoder(wcmi_ctx *ctx, const wcmi_input_spec *in, int max_batch, wcmi_rng *rng);
/* The MI critic (src/estimator/critics.c). Local estimator on x: normalize, 2 x (conv k4 s2 p1 no
 * bias, BN, ReLU), residual block to H. */
wcmi_net *wcmi_build_local_estimator(wcmi_ctx *ctx, const wcmi_input_spec *in, int hsize, int max_batch,
                                     wcmi_rng *rng);
/* Global estimator on z (zdim): the residual block to H on z viewed as a (zdim, 1, 1) map. */
wcmi_net *wcmi_build_global_estimator(wcmi_ctx *ctx, int zdim, int hsize, int max_batch, wcmi_rng *rng);
/* Both, local first, from rng (the critic of the model bundle, or a fresh one for estimate-mi);
 * on error neither is left allocated. */
int wcmi_build_critic(wcmi_ctx *ctx, const wcmi_input_spec *in, int zdim, int hsize, int max_batch, wcmi_rng *rng,
                      wcmi_net **local, wcmi_net **global);
/* Heads on z: linear zdim->classes (classifier.layer0) or MLP zdim->200, Dropout 0.1, BN1d, ReLU,
 * 200->classes (classifier.layer0.{0,2}, classifier.layer1.0). */
wcmi_net *wcmi_build_head(wcmi_ctx *ctx, wcmi_head_kind kind, int zdim, int classes, int max_batch, wcmi_rng *rng);

#ifdef __cplusplus
}
#endif
#endif

#ifndef WCMI_MODEL_BUNDLE
#define WCMI_MODEL_BUNDLE
#ifdef __cplusplus
extern "C" {
#endif
/* A model bundle: the encoder, optionally the two MI estimators (hsize > 0) and optionally a
 * classifier head. One safetensors file holds all of it with PyTorch names, plus metadata. */
typedef struct wcmi_model {
  char dataset[32];
  wcmi_input_spec in;
  int hsize;           /* 0: no dim_local / dim_global */
  wcmi_head_kind head; /* WCMI_HEAD_NONE: no classifier */
  wcmi_net *encoder, *local, *global, *classifier;
  wcmi_encoder_kind encoder_kind;
  int zdim; /* values per representation: WCMI_ZDIM for the basic encoder, C*H*W for pixels */
} wcmi_model;

/* Builds the nets for batches up to max_batch, initialized from seed (stream WCMI_STREAM_INIT). */
int wcmi_model_init(wcmi_ctx *ctx, wcmi_model *m, const char *dataset, int hsize, wcmi_head_kind head, int max_batch,
                    uint64_t seed);
/* The same with the encoder chosen (wcmi_model_init builds the basic encoder). The pixels encoder
 * takes no MI estimators (hsize must be 0). */
int wcmi_model_init_ex(wcmi_ctx *ctx, wcmi_model *m, const char *dataset, wcmi_encoder_kind encoder, int hsize,
                       wcmi_head_kind head, int max_batch, uint64_t seed);
void wcmi_model_free(wcmi_model *m);
/* The nets present, in the order encoder, local, global, classifier. Returns how many. */
int wcmi_model_nets(wcmi_model *m, wcmi_net **out4);
/* Architecture string for metadata and `wcmi info`. */
void wcmi_model_describe(const wcmi_model *m, char *buf, size_t n);

typedef struct wcmi_st wcmi_st;
typedef struct wcmi_st_kv wcmi_st_kv;
/* Saves every parameter and buffer, then the `extra` tensors (optimizer state, RNG state), with
 * metadata (dataset, encoder, hsize, head, architecture + the caller's pairs), atomically. */
int wcmi_model_save(wcmi_ctx *ctx, wcmi_model *m, const char *path, wcmi_param *const *extra, int n_extra,
                    const wcmi_st_kv *meta, int n_meta);
/* Opens path, rebuilds the model its metadata describes and loads every parameter (shapes must
 * match exactly). Without wcmi metadata (a file PyTorch wrote with the interchange names), the
 * head and H are read off the tensor names and shapes, and 1-channel inputs mean (Fashion-)MNIST. If st_out != NULL the file stays open there (to read extras / metadata). */
int wcmi_model_load(wcmi_ctx *ctx, const char *path, int max_batch, wcmi_model *m, wcmi_st **st_out);
/* Loads the parameters of one net from an open file (all of that net's tensors must be present). */
int wcmi_net_load(wcmi_ctx *ctx, const wcmi_st *st, wcmi_net *net);
/* Representations z = encoder(x) of a batch (eval mode): x (N, C, H, W) in [0,1], z (N, m->zdim). */
int wcmi_model_encode(wcmi_ctx *ctx, wcmi_model *m, const float *x, int N, float *z);
/* Copies parameters (and BN buffers) of src into dst, which must have the same structure. */
int wcmi_net_copy_params(wcmi_ctx *ctx, wcmi_net *dst, wcmi_net *src);

#ifdef __cplusplus
}
#endif
#endif
