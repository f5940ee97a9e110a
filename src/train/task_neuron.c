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
#include "train/neuron_prefix.h"
#include "train/trainer.h"
#include "wcmi/task_config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { STREAM_NEURON_SAMPLES = 111, STREAM_NEURON_CRITIC = 112, STREAM_NEURON_ATTACK = 113 };

void wcmi_neuron_opts_default(wcmi_neuron_opts *o) {
  memset(o, 0, sizeof *o);
  o->layer = "layer1.0";
  o->max_neurons = 0;
  o->train_samples = 4096;
  o->test_samples = 1024;
  o->hidden = 128;
  o->hsize = 64;
}

/* ---- the per-channel critic and its objective ---------------------------------------------- */

/* T(patch, a) = <f(patch), h(a)>: f an MLP on the flattened patch, h an MLP embedding of the
 * scalar activation; the dot product over hsize is the paper's critic form with one location. */
typedef struct neuron_critic {
  wcmi_ctx *ctx;
  neuron_prefix *p;
  wcmi_net *local, *global; /* f and h */
  wcmi_mi_cfg mi;
  wcmi_grad_path path;
  int H;
  void *ws;
  size_t ws_bytes;
  float *dLx, *dGz, *dx;
} neuron_critic;

static int critic_build(wcmi_ctx *ctx, neuron_critic *nc, neuron_prefix *p, const wcmi_neuron_opts *o, int B, uint64_t seed) {
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
  neuron_prefix *p = nc->p;
  neuron_prefix_forward(p, x, N);
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
    neuron_prefix_backward(p, wcmi_net_input_grad(nc->global), N, nc->dx);
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
  neuron_prefix p;
  neuron_patches train, test;
  neuron_critic nc;
  wcmi_attack *attack;
  float *xb, *xadv; /* (B, C, r, r) */
  int32_t *lb;      /* (B) */
  int64_t *order;
} neuron_run;

static void gather(neuron_run *r, const neuron_patches *s, const int64_t *idx, int64_t first, int B) {
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
      neuron_prefix_set_masks(&r->p, r->lb, B);
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
    neuron_prefix_set_masks(&r->p, r->lb, B);
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
  neuron_prefix_free(&r->p);
  neuron_patches_free(&r->train);
  neuron_patches_free(&r->test);
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
  const int k = neuron_layer_index(o.layer);
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
  rc = neuron_prefix_init(ctx, &r.p, &m, k, B);
  if (!rc) rc = task_open_data(ctx, cfg, &train, &test);
  if (!rc) rc = neuron_cut_patches(ctx, &r.p, &train, o.train_samples, cfg->seed, STREAM_NEURON_SAMPLES, &r.train);
  if (!rc) rc = neuron_cut_patches(ctx, &r.p, &test, o.test_samples, cfg->seed, STREAM_NEURON_SAMPLES + 100, &r.test);
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
    wcmi_task_attack_json(&w, &cfg->attack);
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
