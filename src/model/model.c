/* The model bundle: building, describing, saving and loading with PyTorch tensor names. */
#include "wcmi/model.h"
#include "wcmi/io.h"

#include <stdlib.h>
#include <string.h>

int wcmi_model_init(wcmi_ctx *ctx, wcmi_model *m, const char *dataset, int hsize, wcmi_head_kind head, int max_batch,
                    uint64_t seed) {
  return wcmi_model_init_ex(ctx, m, dataset, WCMI_ENCODER_BASIC, hsize, head, max_batch, seed);
}

int wcmi_model_init_ex(wcmi_ctx *ctx, wcmi_model *m, const char *dataset, wcmi_encoder_kind encoder, int hsize,
                       wcmi_head_kind head, int max_batch, uint64_t seed) {
  memset(m, 0, sizeof *m);
  int rc = wcmi_input_spec_for(ctx, dataset, &m->in);
  if (rc) return rc;
  if (hsize < 0 || hsize > WCMI_HSIZE_MAX) return wcmi_fail(ctx, WCMI_EINVAL, "hsize %d outside [0, %d]", hsize, WCMI_HSIZE_MAX);
  if (encoder != WCMI_ENCODER_BASIC && encoder != WCMI_ENCODER_PIXELS)
    return wcmi_fail(ctx, WCMI_EINVAL, "encoder: unknown kind %d", (int)encoder);
  if (encoder == WCMI_ENCODER_PIXELS && hsize > 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "the pixels encoder has no MI estimators (hsize must be 0, got %d)", hsize);
  snprintf(m->dataset, sizeof m->dataset, "%s", dataset);
  m->hsize = hsize;
  m->head = head;
  m->encoder_kind = encoder;
  m->zdim = encoder == WCMI_ENCODER_PIXELS ? m->in.C * m->in.H * m->in.W : WCMI_ZDIM;
  wcmi_rng rng;
  wcmi_rng_derive(&rng, seed, WCMI_STREAM_INIT);
  m->encoder = encoder == WCMI_ENCODER_PIXELS ? wcmi_build_pixels_encoder(ctx, &m->in, max_batch, &rng)
                                               : wcmi_build_encoder(ctx, &m->in, max_batch, &rng);
  if (!m->encoder) return ctx->status;
  if (hsize > 0) {
    rc = wcmi_build_critic(ctx, &m->in, m->zdim, hsize, max_batch, &rng, &m->local, &m->global);
    if (rc) {
      wcmi_model_free(m);
      return rc;
    }
  }
  if (head != WCMI_HEAD_NONE) {
    m->classifier = wcmi_build_head(ctx, head, m->zdim, WCMI_NUM_CLASSES, max_batch, &rng);
    if (!m->classifier) {
      wcmi_model_free(m);
      return ctx->status;
    }
  }
  /* Each net's dropout stream is its own, derived from the seed. */
  wcmi_net *nets[4];
  int n = wcmi_model_nets(m, nets);
  for (int i = 0; i < n; i++) {
    wcmi_rng r;
    wcmi_rng_derive(&r, seed, (uint64_t)WCMI_STREAM_DROPOUT * 16 + (uint64_t)i);
    wcmi_net_set_rng(nets[i], &r);
  }
  return WCMI_OK;
}

void wcmi_model_free(wcmi_model *m) {
  wcmi_net_free(m->encoder);
  wcmi_net_free(m->local);
  wcmi_net_free(m->global);
  wcmi_net_free(m->classifier);
  m->encoder = m->local = m->global = m->classifier = NULL;
}

int wcmi_model_nets(wcmi_model *m, wcmi_net **out) {
  int n = 0;
  wcmi_net *all[4] = {m->encoder, m->local, m->global, m->classifier};
  for (int i = 0; i < 4; i++)
    if (all[i]) out[n++] = all[i];
  return n;
}

void wcmi_model_describe(const wcmi_model *m, char *buf, size_t n) {
  int w = snprintf(buf, n, "encoder(%s, in=%dx%dx%d, z=%d)", wcmi_encoder_name(m->encoder_kind), m->in.C, m->in.H,
                   m->in.W, m->zdim);
  if (w < 0 || (size_t)w >= n) return;
  if (m->hsize > 0) {
    int w2 = snprintf(buf + w, n - (size_t)w, " + dim_local(H=%d) + dim_global(H=%d)", m->hsize, m->hsize);
    if (w2 < 0 || (size_t)(w + w2) >= n) return;
    w += w2;
  }
  if (m->head != WCMI_HEAD_NONE) snprintf(buf + w, n - (size_t)w, " + classifier(%s)", wcmi_head_name(m->head));
}

static int collect_params(wcmi_ctx *ctx, wcmi_model *m, wcmi_param *const *extra, int n_extra, wcmi_param ***out) {
  wcmi_net *nets[4];
  int nn = wcmi_model_nets(m, nets), total = n_extra;
  for (int i = 0; i < nn; i++) total += wcmi_net_num_params(nets[i]);
  wcmi_param **ps = wcmi_alloc(ctx, (size_t)(total ? total : 1), sizeof *ps);
  if (!ps) return -1;
  int k = 0;
  for (int i = 0; i < nn; i++)
    for (int j = 0; j < wcmi_net_num_params(nets[i]); j++) ps[k++] = wcmi_net_param(nets[i], j);
  for (int j = 0; j < n_extra; j++) ps[k++] = extra[j];
  *out = ps;
  return total;
}

#define MODEL_META_MAX 32

int wcmi_model_save(wcmi_ctx *ctx, wcmi_model *m, const char *path, wcmi_param *const *extra, int n_extra,
                    const wcmi_st_kv *meta, int n_meta) {
  if (n_meta > MODEL_META_MAX - 6) return wcmi_fail(ctx, WCMI_EINVAL, "%s: too many metadata entries", path);
  wcmi_param **ps;
  int n = collect_params(ctx, m, extra, n_extra, &ps);
  if (n < 0) return wcmi_fail(ctx, WCMI_ENOMEM, "%s: out of memory", path);
  char hsize[16], arch[256];
  snprintf(hsize, sizeof hsize, "%d", m->hsize);
  wcmi_model_describe(m, arch, sizeof arch);
  wcmi_st_kv kv[MODEL_META_MAX] = {{"format", "wcmi-model-1"}, {"dataset", m->dataset}, {"hsize", hsize},
                                    {"head", wcmi_head_name(m->head)}, {"architecture", arch},
                                    {"encoder", wcmi_encoder_name(m->encoder_kind)}};
  int nkv = 6;
  for (int i = 0; i < n_meta; i++) kv[nkv++] = meta[i];
  int rc = wcmi_st_write_params(ctx, path, ps, n, kv, nkv);
  wcmi_free(ps);
  return rc;
}

/* 1 if name ends with suffix. */
static int ends_with(const char *name, const char *suffix) {
  size_t n = strlen(name), k = strlen(suffix);
  return n >= k && !strcmp(name + n - k, suffix);
}

/* A model file's floats must be finite, and a BatchNorm running variance non-negative: a NaN model
 * would otherwise be evaluated (every prediction the same class) as if it were robust. Checked on
 * the file's bytes before anything is copied. */
static int check_tensor_values(wcmi_ctx *ctx, const wcmi_st *st, const wcmi_param *p) {
  const wcmi_st_info *t = wcmi_st_find(st, p->name);
  if (!t || p->kind == WCMI_PARAM_COUNTER || t->dtype != WCMI_DT_F32) return WCMI_OK; /* load_params names these */
  const int variance = ends_with(p->name, "running_var");
  const unsigned char *b = t->data;
  for (int64_t i = 0; i < t->numel; i++) {
    float v;
    memcpy(&v, b + (size_t)i * sizeof v, sizeof v); /* the data may sit at any byte offset */
    if (v - v != 0.0f)
      return wcmi_fail(ctx, WCMI_ENUMERIC, "%s: tensor '%s' holds NaN/Inf (element %lld)", wcmi_st_name(st), p->name,
                       (long long)i);
    if (variance && v < 0.0f)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor '%s' holds a negative variance %g (element %lld)", wcmi_st_name(st),
                       p->name, (double)v, (long long)i);
  }
  return WCMI_OK;
}

int wcmi_net_load(wcmi_ctx *ctx, const wcmi_st *st, wcmi_net *net) {
  int n = wcmi_net_num_params(net);
  wcmi_param **ps = wcmi_alloc(ctx, (size_t)(n ? n : 1), sizeof *ps);
  if (!ps) return ctx->status;
  int rc = WCMI_OK;
  for (int i = 0; i < n && !rc; i++) {
    ps[i] = wcmi_net_param(net, i);
    rc = check_tensor_values(ctx, st, ps[i]);
  }
  if (!rc) rc = wcmi_st_load_params(ctx, st, ps, n, 0);
  wcmi_free(ps);
  return rc;
}

/* The sizes the model would be built with, checked against the file's tensors first: every buffer
 * the nets allocate is fixed by (input spec, hsize, head), so once the input channels and H agree
 * with tensors the file really holds (their bytes are in the file), nothing is allocated from an
 * unchecked number. The remaining shapes are compared exactly by wcmi_st_load_params. */
static int check_dims_against_file(wcmi_ctx *ctx, const wcmi_st *st, const char *path, const char *dataset, int hsize,
                                   wcmi_encoder_kind ek) {
  wcmi_input_spec in;
  int rc = wcmi_input_spec_for(ctx, dataset, &in);
  if (rc) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata 'dataset' = '%.40s' is not mnist, fashion-mnist, svhn or cifar10",
                           path, dataset);
  if (ek == WCMI_ENCODER_PIXELS) {
    /* No encoder tensors: the head's first layer must take the dataset's C*H*W pixels. */
    const wcmi_st_info *h0 = wcmi_st_find(st, "classifier.layer0.weight");
    if (!h0) h0 = wcmi_st_find(st, "classifier.layer0.0.weight");
    const int64_t D = (int64_t)in.C * in.H * in.W;
    if (!h0 || h0->ndim != 2 || h0->shape[1] != D)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: a pixels model needs a head whose first layer takes the %lld pixels of %s%s",
                       path, (long long)D, dataset, h0 ? "" : " (no classifier.layer0 tensor)");
    return WCMI_OK;
  }
  const wcmi_st_info *w0 = wcmi_st_find(st, "encoder.layer0.0.weight");
  if (!w0) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: missing tensor 'encoder.layer0.0.weight' (not a wcmi model?)", path);
  if (w0->ndim != 4 || w0->shape[1] != in.C)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: tensor 'encoder.layer0.0.weight' does not take the %d input channel(s) of %s",
                     path, in.C, dataset);
  const char *const critic[2] = {"dim_local.block_ln.1.weight", "dim_global.block_ln.1.weight"};
  for (int i = 0; hsize > 0 && i < 2; i++) {
    const wcmi_st_info *t = wcmi_st_find(st, critic[i]);
    if (!t || t->ndim != 1 || t->shape[0] != hsize)
      return wcmi_fail(ctx, WCMI_EFORMAT, "%s: hsize %d does not match tensor '%s'%s", path, hsize, critic[i],
                       t ? "" : " (missing)");
  }
  return WCMI_OK;
}

static int meta_int(wcmi_ctx *ctx, const wcmi_st *st, const char *path, const char *key, int lo, int hi, int *out) {
  const char *v = wcmi_st_meta(st, key);
  if (!v) return wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata has no '%s' (not a wcmi model?)", path, key);
  char *end = NULL;
  long x = strtol(v, &end, 10);
  if (!end || *end || end == v || x < lo || x > hi)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata '%s' = '%s' is not an integer in [%d, %d]", path, key, v, lo, hi);
  *out = (int)x;
  return WCMI_OK;
}

int wcmi_model_load(wcmi_ctx *ctx, const char *path, int max_batch, wcmi_model *m, wcmi_st **st_out) {
  memset(m, 0, sizeof *m);
  wcmi_st *st = NULL;
  int rc = wcmi_st_open(ctx, path, &st);
  if (rc) return rc;
  const char *dataset = wcmi_st_meta(st, "dataset"), *head = wcmi_st_meta(st, "head"),
             *encoder = wcmi_st_meta(st, "encoder");
  int hsize = 0;
  wcmi_head_kind hk = WCMI_HEAD_NONE;
  wcmi_encoder_kind ek = WCMI_ENCODER_BASIC; /* files without the key predate the pixels encoder */
  /* Files written elsewhere (e.g. by PyTorch with the interchange names) may lack wcmi's metadata:
   * the architecture is then read off the tensor names and shapes. */
  const wcmi_st_info *w0 = wcmi_st_find(st, "encoder.layer0.0.weight");
  if (!dataset && w0 && w0->ndim == 4 && w0->shape[1] == 1) dataset = "fashion-mnist"; /* MNIST-shaped input */
  if (!dataset) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata has no 'dataset' (not a wcmi model?)", path);
  if (!rc && wcmi_st_meta(st, "hsize")) rc = meta_int(ctx, st, path, "hsize", 0, WCMI_HSIZE_MAX, &hsize);
  else if (!rc) {
    const wcmi_st_info *ln = wcmi_st_find(st, "dim_local.block_ln.1.weight");
    hsize = ln && ln->ndim == 1 && ln->shape[0] <= WCMI_HSIZE_MAX ? (int)ln->shape[0] : 0;
  }
  if (!rc && head && strcmp(head, "none") && wcmi_head_parse(ctx, head, &hk))
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata 'head' = '%s' is not linear, mlp or none", path, head);
  if (!rc && encoder && wcmi_encoder_parse(ctx, encoder, &ek))
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: metadata 'encoder' = '%s' is not basic or pixels", path, encoder);
  if (!rc && !head)
    hk = wcmi_st_find(st, "classifier.layer1.0.weight") ? WCMI_HEAD_MLP
         : wcmi_st_find(st, "classifier.layer0.weight") ? WCMI_HEAD_LINEAR
                                                         : WCMI_HEAD_NONE;
  if (!rc) rc = check_dims_against_file(ctx, st, path, dataset, hsize, ek);
  if (!rc) {
    rc = wcmi_model_init_ex(ctx, m, dataset, ek, hsize, hk, max_batch, 0);
    if (rc) {
      char cause[sizeof ctx->msg]; /* ctx->msg cannot be both the output and an argument of vsnprintf */
      snprintf(cause, sizeof cause, "%s", ctx->msg);
      wcmi_fail(ctx, rc == WCMI_ENOMEM ? rc : WCMI_EFORMAT, "%s: cannot rebuild the model: %s", path, cause);
      rc = ctx->status;
    }
  }
  wcmi_net *nets[4];
  int n = rc ? 0 : wcmi_model_nets(m, nets);
  for (int i = 0; i < n && !rc; i++) rc = wcmi_net_load(ctx, st, nets[i]);
  if (rc || !st_out) wcmi_st_close(st);
  else *st_out = st;
  if (rc) wcmi_model_free(m);
  return rc;
}

int wcmi_net_copy_params(wcmi_ctx *ctx, wcmi_net *dst, wcmi_net *src) {
  if (wcmi_net_num_params(dst) != wcmi_net_num_params(src))
    return wcmi_fail(ctx, WCMI_EINVAL, "copy parameters: nets differ in structure");
  for (int i = 0; i < wcmi_net_num_params(src); i++) {
    wcmi_param *a = wcmi_net_param(dst, i), *b = wcmi_net_param(src, i);
    if (strcmp(a->name, b->name) || !wcmi_shape_equal(&a->shape, &b->shape) || a->kind != b->kind)
      return wcmi_fail(ctx, WCMI_EINVAL, "copy parameters: %s does not match %s", a->name, b->name);
    if (a->kind == WCMI_PARAM_COUNTER) *a->i64 = *b->i64;
    else memcpy(a->data, b->data, (size_t)wcmi_shape_numel(&a->shape) * sizeof(float));
  }
  return WCMI_OK;
}

int wcmi_model_encode(wcmi_ctx *ctx, wcmi_model *m, const float *x, int N, float *z) {
  const float *out = wcmi_net_forward(m->encoder, x, N, 0);
  if (!out) return ctx->status ? ctx->status : wcmi_fail(ctx, WCMI_EINVAL, "encode: forward failed");
  memcpy(z, out, (size_t)N * (size_t)m->zdim * sizeof(float));
  return WCMI_OK;
}
