/* wcmi datasets: readers for MNIST / Fashion-MNIST (IDX), CIFAR-10 (binary batches) and SVHN
 * (MATLAB level-5 MAT), class-balanced subsets, a validation split, a synthetic Gaussian mixture,
 * and a deterministic batch loader with CIFAR-10 augmentation.
 *
 * Every dataset holds images as float32 in [0,1], NCHW, and labels as int32 in 0..num_classes-1.
 * Readers never trust a count read from a file: sizes are checked against the bytes present
 * (compressed streams are inflated incrementally under a cap) before anything is allocated from
 * them. Errors are one line in ctx->msg naming the file and the problem. See docs/data.md. */
#ifndef WCMI_DATA_H
#define WCMI_DATA_H

#include "wcmi/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dataset --------------------------------------------------------------------------------- */
typedef struct wcmi_dataset {
  char name[32];    /* "mnist", "fashion-mnist", "svhn", "cifar10", "gaussian-mixture" */
  int64_t n;        /* number of samples */
  int c, h, w;      /* sample shape (C, H, W) */
  int num_classes;  /* 10 for the image datasets, 2 for the Gaussian mixture */
  float *images;    /* (n, c, h, w), owned (wcmi_alloc) */
  int32_t *labels;  /* (n), owned */
} wcmi_dataset;

typedef enum { WCMI_SPLIT_TRAIN = 0, WCMI_SPLIT_TEST = 1 } wcmi_split;

/* Allocates images and labels for n samples of shape (c, h, w) (zero-filled); frees nothing. */
int wcmi_dataset_alloc(wcmi_ctx *ctx, wcmi_dataset *d, const char *name, int64_t n, int c, int h, int w,
                       int num_classes);
/* Frees images and labels and zeroes the struct. NULL-safe, idempotent. */
void wcmi_dataset_free(wcmi_dataset *d);
/* c*h*w */
int64_t wcmi_dataset_sample_size(const wcmi_dataset *d);

/* ---- names and loading ----------------------------------------------------------------------- */
/* Returns 1 for "mnist", "fashion-mnist", "svhn", "cifar10". */
int wcmi_data_name_valid(const char *name);
/* Default directory for a dataset: /usr/share/datasets/fashion-mnist for fashion-mnist (Debian's
 * dataset-fashion-mnist package), "data/<name>" otherwise. NULL for an unknown name. */
const char *wcmi_data_default_dir(const char *name);
/* Loads the published train or test split of dataset `name` from `dir` (NULL: the default dir).
 * File names looked for (first found wins):
 *   mnist, fashion-mnist: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], also with '.' before idx
 *   cifar10: data_batch_1..5.bin / test_batch.bin, in dir or dir/cifar-10-batches-bin
 *   svhn:    train_32x32.mat / test_32x32.mat */
int wcmi_data_load(wcmi_ctx *ctx, const char *name, const char *dir, wcmi_split split, wcmi_dataset *out);

/* Everything a command needs to get its data, in one call. Fields left 0 / NULL mean "off". */
typedef struct wcmi_data_options {
  const char *name;     /* dataset name (required) */
  const char *dir;      /* NULL: wcmi_data_default_dir(name) */
  int64_t train_subset; /* > 0: class-balanced subset of the training split (after the val split) */
  int64_t test_subset;  /* > 0: class-balanced subset of the test split */
  int64_t val_size;     /* > 0: class-balanced held-out validation set taken from the training split */
  uint64_t seed;        /* selects the subsets and the validation samples */
} wcmi_data_options;

/* Loads train (and val when opt->val_size > 0) and test. Any of train/val/test may be NULL to skip
 * it (val is needed to take a validation split out of train; train must be non-NULL for that).
 * The validation set is drawn from the full training split first, so it does not change with
 * --train-subset; the training subset is then drawn from what remains. */
int wcmi_data_open(wcmi_ctx *ctx, const wcmi_data_options *opt, wcmi_dataset *train, wcmi_dataset *val,
                   wcmi_dataset *test);

/* ---- readers from memory (used by the path readers, the tests and the fuzzers) --------------- */
/* `file` is only used in error messages. Bytes may be gzip/zlib-compressed (IDX) where noted. */
/* IDX images (magic 0x00000803, uint8, N x H x W) and labels (0x00000801, uint8, N), each raw or
 * gzip. The label count must equal the image count; labels must be 0..9. */
int wcmi_idx_parse(wcmi_ctx *ctx, const char *name, const char *images_file, const uint8_t *images_bytes,
                   size_t images_len, const char *labels_file, const uint8_t *labels_bytes, size_t labels_len,
                   wcmi_dataset *out);
/* One or more CIFAR-10 binary batches concatenated: records of 1 label byte + 3072 pixel bytes
 * (R, G, B planes of 32x32). */
int wcmi_cifar10_parse(wcmi_ctx *ctx, const char *file, const uint8_t *bytes, size_t len, wcmi_dataset *out);
/* SVHN cropped digits in a MAT level-5 file: X uint8 32x32x3xN, y numeric N (1..10, 10 -> 0). */
int wcmi_svhn_parse(wcmi_ctx *ctx, const char *file, const uint8_t *bytes, size_t len, wcmi_dataset *out);

/* ---- readers from paths ---------------------------------------------------------------------- */
int wcmi_idx_read(wcmi_ctx *ctx, const char *name, const char *images_path, const char *labels_path,
                  wcmi_dataset *out);
/* Reads and concatenates npaths CIFAR-10 batch files. */
int wcmi_cifar10_read(wcmi_ctx *ctx, const char *const *paths, int npaths, wcmi_dataset *out);
int wcmi_svhn_read(wcmi_ctx *ctx, const char *path, wcmi_dataset *out);

/* ---- selection ------------------------------------------------------------------------------- */
/* Picks n sample indices, class-balanced: each class gets floor(n/K) and the first n mod K classes
 * one more; when a class has too few samples, its shortfall is spread evenly over the others
 * (water-filling: each pick goes to the class with the smallest quota, lowest class on ties). Within
 * a class the samples come from a permutation seeded by (seed, WCMI_STREAM_SUBSET). idx_out (n
 * entries) is sorted ascending, so the subset keeps the file's order. n must be <= d->n. */
int wcmi_dataset_select_balanced(wcmi_ctx *ctx, const wcmi_dataset *d, int64_t n, uint64_t seed,
                                 int64_t *idx_out);
/* out = the samples src[idx[0..n)], in that order (out is allocated). */
int wcmi_dataset_gather(wcmi_ctx *ctx, const wcmi_dataset *src, const int64_t *idx, int64_t n,
                        wcmi_dataset *out);
/* Class-balanced subset of n samples (n >= src->n copies everything). */
int wcmi_dataset_subset(wcmi_ctx *ctx, const wcmi_dataset *src, int64_t n, uint64_t seed, wcmi_dataset *out);
/* Splits src into a class-balanced validation set of n_val samples and the rest (train). Disjoint;
 * both keep the original order. */
int wcmi_dataset_split_validation(wcmi_ctx *ctx, const wcmi_dataset *src, int64_t n_val, uint64_t seed,
                                  wcmi_dataset *train, wcmi_dataset *val);

/* ---- statistics ------------------------------------------------------------------------------ */
typedef struct wcmi_dataset_stats {
  int64_t label_counts[16]; /* histogram of labels (num_classes <= 16) */
  double pixel_mean;        /* over all pixels and channels */
  double pixel_std;         /* population std over all pixels and channels */
  double channel_mean[4];   /* per channel (c <= 4) */
  double channel_std[4];
} wcmi_dataset_stats;
void wcmi_dataset_compute_stats(const wcmi_dataset *d, wcmi_dataset_stats *s);

/* ---- synthetic ------------------------------------------------------------------------------- */
/* Two-class Gaussian mixture in d dims: y ~ Bernoulli(1/2), x ~ N((2y-1) * theta, sigma^2 I).
 * Label 1 is the +theta component. Shape (n, 1, 1, d); values are not confined to [0,1].
 * theta: d floats. Drawn from (seed, WCMI_STREAM_DATA). */
int wcmi_data_gaussian_mixture(wcmi_ctx *ctx, int64_t n, int d, const float *theta, float sigma, uint64_t seed,
                               wcmi_dataset *out);

/* ---- loader ---------------------------------------------------------------------------------- */
enum {
  WCMI_AUG_CROP = 1,   /* random crop of the original size after zero-padding by crop_pad */
  WCMI_AUG_FLIP = 2,   /* horizontal flip with probability 1/2 */
  WCMI_AUG_JITTER = 4, /* torchvision ColorJitter(j, j, j): brightness/contrast/saturation factors in
                        [1-j, 1+j], applied in a random order, each result clamped to [0, 1] */
  WCMI_AUG_ROTATE = 8, /* RandomRotation: uniform angle in [-rotate_deg, rotate_deg], nearest, fill 0 */
  /* The reference's CIFAR-10 training transforms, in this order: RandomCrop(32, padding=4),
   * RandomHorizontalFlip, ColorJitter(0.25, 0.25, 0.25), RandomRotation(2). */
  WCMI_AUG_CIFAR = WCMI_AUG_CROP | WCMI_AUG_FLIP | WCMI_AUG_JITTER | WCMI_AUG_ROTATE,
};

typedef struct wcmi_loader_config {
  int batch_size;   /* > 0 */
  int shuffle;      /* 1: a fresh permutation every epoch; 0: file order */
  int drop_last;    /* 0 (default): the last batch of an epoch may be partial; 1: it is dropped */
  uint64_t seed;    /* shuffling uses (seed, WCMI_STREAM_SHUFFLE), augmentation (seed, WCMI_STREAM_AUGMENT) */
  int augment;      /* WCMI_AUG_* flags; 0: none */
  int crop_pad;     /* padding for WCMI_AUG_CROP (0 -> 4) */
  float jitter;     /* strength for WCMI_AUG_JITTER (0 -> 0.25, the reference's) */
  float rotate_deg; /* max angle for WCMI_AUG_ROTATE (0 -> 2 degrees, the reference's) */
  int prefetch;     /* 1: assemble the next batch on a background thread (same results as 0) */
  /* Data-parallel sharding (docs/distributed.md): with num_shards > 1, batch b yields only shard
   * `shard`'s contiguous slice of global batch b (wcmi_dist_shard), the same samples with the same
   * augmentation as at those positions of the one-process batch. 0 / 1: the whole batch. */
  int shard, num_shards;
} wcmi_loader_config;

/* Fills cfg with defaults: batch 128, shuffle on, keep last partial batch, seed 0, no augmentation. */
void wcmi_loader_config_default(wcmi_loader_config *cfg);

typedef struct wcmi_loader_state wcmi_loader_state;
typedef struct wcmi_loader {
  const wcmi_dataset *data; /* not owned; must outlive the loader */
  wcmi_loader_config cfg;
  int64_t epoch;            /* current epoch (set by wcmi_loader_start_epoch) */
  int64_t cursor;           /* position of the next batch in the epoch's order */
  int64_t *order;           /* (n) sample order of the current epoch */
  wcmi_loader_state *st;    /* prefetch thread state (NULL without prefetch) */
} wcmi_loader;

/* Initialises L and starts epoch 0. With cfg->prefetch the worker thread keeps a pointer to L:
 * do not copy or move an initialised loader. */
int wcmi_loader_init(wcmi_ctx *ctx, wcmi_loader *L, const wcmi_dataset *d, const wcmi_loader_config *cfg);
void wcmi_loader_free(wcmi_loader *L);
/* Batches per epoch under the last-batch policy. */
int64_t wcmi_loader_num_batches(const wcmi_loader *L);
/* Starts epoch `epoch` (any order, any value): its permutation and augmentation depend only on
 * (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would. */
int wcmi_loader_start_epoch(wcmi_ctx *ctx, wcmi_loader *L, int64_t epoch);
/* Writes the next batch into caller buffers x: (batch_size, C, H, W) and y: (batch_size) (y may be
 * NULL), and its size in *count. Returns 1 when a batch was written, 0 at the end of the epoch,
 * or a negative -WCMI_E* on failure. Allocates nothing. */
int wcmi_loader_next(wcmi_ctx *ctx, wcmi_loader *L, float *x, int32_t *y, int *count);
/* Assembles batch `b` of the current epoch without moving the cursor (what _next uses). */
int wcmi_loader_batch(wcmi_ctx *ctx, const wcmi_loader *L, int64_t b, float *x, int32_t *y, int *count);

/* Colour jitter of one image, torchvision's ColorJitter semantics: brightness (blend with black),
 * contrast (blend with the image's mean grey level, 0.299 R + 0.587 G + 0.114 B), saturation
 * (blend with each pixel's grey level; colour images only), each with its factor, in order[0..3),
 * every result clamped to [0, 1]. */
enum { WCMI_JITTER_BRIGHTNESS = 0, WCMI_JITTER_CONTRAST = 1, WCMI_JITTER_SATURATION = 2 };
typedef struct wcmi_jitter {
  int order[3];     /* a permutation of WCMI_JITTER_* */
  float factor[3];  /* factor[i] goes with order[i] */
} wcmi_jitter;
/* A random order and factors uniform in [max(0, 1 - strength), 1 + strength]. */
void wcmi_jitter_draw(wcmi_rng *rng, float strength, wcmi_jitter *j);
/* Applies j to img (c, h, w) in place. */
void wcmi_jitter_apply(const wcmi_jitter *j, float *img, int c, int h, int w);

/* Augments one image (c, h, w) from src into dst (distinct buffers) with the loader's settings and
 * the given rng. Exposed for tests and the `data show --augment` command. */
void wcmi_augment_image(const wcmi_loader_config *cfg, wcmi_rng *rng, const float *src, float *dst, int c, int h,
                        int w);

#ifdef __cplusplus
}
#endif
#endif
