/* Learning-curve probes (see probe.h). */
#include "train/probe.h"
#include "train/eval.h"
#include "train/head_fit.h"
#include "wcmi/attack.h"
#include "wcmi/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The paper's batch: the probe's batch for every run that trains with at least that many. */
#define WCMI_PROBE_BATCH 128

static int balanced(wcmi_ctx *ctx, const wcmi_dataset *d, int64_t n, uint64_t seed, wcmi_dataset *out) {
  if (n > d->n) n = d->n;
  int64_t *idx = malloc((size_t)(n > 0 ? n : 1) * sizeof *idx);
  if (!idx) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  int rc = wcmi_dataset_select_balanced(ctx, d, n, seed, idx);
  if (!rc) rc = wcmi_dataset_gather(ctx, d, idx, n, out);
  free(idx);
  return rc;
}

int probe_init(wcmi_ctx *ctx, curve_probe *p, const wcmi_task_cfg *cfg, const wcmi_dataset *train, const wcmi_dataset *test) {
  memset(p, 0, sizeof *p);
  /* Every recipe is scored under the same attack: the paper's evaluation PGD for the dataset, at the
   * run's eps and norm, never the (possibly cheaper) attack the run trains with. */
  wcmi_task_cfg paper;
  int rc = wcmi_task_defaults(ctx, &paper, cfg->data, "paper");
  if (rc) return rc;
  p->attack = paper.attack;
  p->attack.eps = cfg->attack.eps;
  p->attack.norm = cfg->attack.norm;
  if (cfg->attack.norm != paper.attack.norm) p->attack.step = cfg->attack.step;
  p->every_s = cfg->probe_every;
  p->epochs = 50;
  p->lr = 1e-3;
  /* One batch for every run's probe, whatever the run trains with, so that curves of recipes with
   * different batch sizes compare (the robust probe's 150 steps see batch x 150 images). The
   * encoder's buffers hold at most the run's batch, hence the min. */
  p->batch = cfg->batch_size < WCMI_PROBE_BATCH ? cfg->batch_size : WCMI_PROBE_BATCH;
  p->seed = cfg->seed ^ 0x70726f6265ull; /* its own subsets and head init, independent of the run's streams */
  p->next_at = 0.0;                        /* a first probe on the initial encoder: the curve's origin */
  p->robust_steps = cfg->probe_robust_steps;
  p->robust_attack = p->attack;
  wcmi_profile_training_attack("fast", WCMI_TRAIN_ATTACK_ROBUST, &p->robust_attack);
  rc = balanced(ctx, train, cfg->probe_train, p->seed, &p->train);
  if (!rc) rc = balanced(ctx, test, cfg->probe_test, p->seed, &p->test);
  if (!rc && p->train.n < p->batch)
    rc = wcmi_fail(ctx, WCMI_EINVAL, "--probe-train %lld is smaller than one batch of %d", (long long)p->train.n, p->batch);
  if (rc) probe_free(p);
  return rc;
}

void probe_skip_to(curve_probe *p, double now) {
  /* In one step, not by repeated addition: a tiny --probe-every would take ~now / every_s loops. */
  if (p->every_s > 0 && p->next_at <= now) p->next_at += (floor((now - p->next_at) / p->every_s) + 1.0) * p->every_s;
}

void probe_free(curve_probe *p) {
  wcmi_dataset_free(&p->train);
  wcmi_dataset_free(&p->test);
  memset(p, 0, sizeof *p);
}

/* Madry training of `head` (a fresh MLP) through m's frozen encoder (eval mode) for robust_steps Adam
 * steps at the fast profile's head lr, over the probe's training subset in full shuffled batches
 * (wcmi_loader); its own streams for shuffling, dropout and the attack's random starts, derived
 * from the probe's seed and count. */
static int robust_fit(wcmi_ctx *ctx, const curve_probe *p, wcmi_model *pm) {
  const wcmi_shape in = wcmi_net_in_shape(pm->encoder);
  const size_t numel = (size_t)wcmi_shape_numel(&in), batch = (size_t)p->batch;
  const uint64_t k = (uint64_t)p->count, seed = p->seed ^ 0x726f62ull;
  float *x = wcmi_alloc(ctx, batch * numel, sizeof(float)), *xadv = wcmi_alloc(ctx, batch * numel, sizeof(float));
  int32_t *y = wcmi_alloc(ctx, batch, sizeof(int32_t));
  wcmi_adam_cfg ac = wcmi_adam_defaults();
  ac.lr = (float)WCMI_FAST_HEAD_LR;
  wcmi_optim *opt = wcmi_adam_new(ctx, &pm->classifier, 1, ac);
  wcmi_attack *atk = wcmi_attack_new(ctx, &p->robust_attack, p->batch, (int64_t)numel);
  wcmi_loader_config lc;
  wcmi_loader_config_default(&lc);
  lc.batch_size = p->batch;
  lc.drop_last = 1;
  lc.seed = seed + k;
  wcmi_loader loader;
  memset(&loader, 0, sizeof loader);
  wcmi_clf clf;
  memset(&clf, 0, sizeof clf);
  int rc = WCMI_OK;
  if (!x || !xadv || !y || !opt || !atk) rc = ctx->status ? ctx->status : wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  if (!rc) rc = wcmi_loader_init(ctx, &loader, &p->train, &lc);
  if (!rc) rc = wcmi_clf_init(ctx, &clf, pm, p->batch);
  wcmi_rng starts, dropout;
  wcmi_rng_derive(&starts, seed, (uint64_t)WCMI_STREAM_ATTACK * 1000003u + k);
  wcmi_rng_derive(&dropout, seed, (uint64_t)WCMI_STREAM_DROPOUT * 1000003u + k);
  if (!rc) wcmi_net_set_rng(pm->classifier, &dropout);
  const int64_t nb = rc ? 1 : wcmi_loader_num_batches(&loader); /* >= 1: probe_init checked the subset's size */
  for (int s = 0; !rc && s < p->robust_steps; s++) {
    /* Ctrl-C: the trainer saves a checkpoint at the batch this probe came before. */
    if (ctx->interrupt) {
      rc = wcmi_fail(ctx, WCMI_EINTR, "probe interrupted at robust step %d/%d", s + 1, p->robust_steps);
      break;
    }
    int count = 0;
    if (s % nb == 0) rc = wcmi_loader_start_epoch(ctx, &loader, s / nb);
    if (!rc) rc = wcmi_loader_batch(ctx, &loader, s % nb, x, y, &count);
    clf.labels = y;
    const wcmi_objective obj = wcmi_clf_objective(&clf);
    if (!rc) rc = wcmi_pgd_run(atk, &obj, x, count, &starts, xadv, NULL);
    float loss = 0;
    wcmi_optim_zero_grad(opt);
    if (!rc) rc = wcmi_clf_step(&clf, xadv, y, count, 0, 1, WCMI_CLF_HEAD_PARAMS, &loss, NULL, NULL, NULL, NULL);
    if (!rc && !isfinite(loss)) rc = wcmi_fail(ctx, WCMI_ENUMERIC, "probe: the robust head's loss is %g", (double)loss);
    if (!rc) wcmi_optim_step(opt);
  }
  wcmi_clf_free(&clf);
  wcmi_loader_free(&loader);
  wcmi_attack_free(atk);
  wcmi_optim_free(opt);
  wcmi_free(x);
  wcmi_free(xadv);
  wcmi_free(y);
  return rc;
}

/* Natural and paper-PGD accuracy of pm (encoder + head) on the probe's test subset. */
static int probe_score(wcmi_ctx *ctx, const curve_probe *p, wcmi_model *pm, const wcmi_task_cfg *cfg, uint64_t stream,
                       eval_result *er) {
  memset(er, 0, sizeof *er);
  wcmi_task_cfg ec = *cfg;
  ec.eval_batches = 0;
  ec.progress = 0;
  ec.batch_size = p->batch; /* the heads were built for the probe's batch */
  const eval_attack a = {"pgd", p->attack, 0, 0};
  wcmi_rng r;
  wcmi_rng_derive(&r, p->seed, stream);
  return eval_attacks(ctx, pm, &p->test, &ec, &a, 1, &r, er);
}

/* The robust MLP probe: a fresh head (its own init stream), robust_fit, then probe_score. */
static int robust_probe(wcmi_ctx *ctx, const curve_probe *p, wcmi_model *m, const wcmi_task_cfg *cfg, int zdim,
                        eval_result *er) {
  wcmi_rng init;
  wcmi_rng_derive(&init, p->seed ^ 0x726f62ull, (uint64_t)WCMI_STREAM_INIT * 1000003u + (uint64_t)p->count);
  wcmi_net *head = wcmi_build_head(ctx, WCMI_HEAD_MLP, zdim, WCMI_NUM_CLASSES, p->batch, &init);
  if (!head) return ctx->status;
  wcmi_model pm = *m;
  pm.classifier = head;
  pm.head = WCMI_HEAD_MLP;
  int rc = robust_fit(ctx, p, &pm);
  if (!rc)
    rc = probe_score(ctx, p, &pm, cfg, (uint64_t)WCMI_STREAM_ATTACK * 1000003u + 500009u + (uint64_t)p->count, er);
  wcmi_net_free(head);
  return rc;
}

int probe_run(wcmi_ctx *ctx, curve_probe *p, wcmi_model *m, const wcmi_task_cfg *cfg, wcmi_jsonw *w) {
  const double t0 = wcmi_now();
  float *ztr = NULL, *zte = NULL;
  int zdim = 0, zdim_te = 0, best_epoch = -1;
  wcmi_net *head = NULL, *best = NULL;
  head_fit_epoch *per_epoch = calloc((size_t)p->epochs, sizeof *per_epoch);
  int rc = per_epoch ? WCMI_OK : wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  if (!rc) rc = feat_encode(ctx, m, &p->train, p->batch, &ztr, &zdim);
  if (!rc) rc = feat_encode(ctx, m, &p->test, p->batch, &zte, &zdim_te);
  wcmi_rng init;
  wcmi_rng_derive(&init, p->seed, WCMI_STREAM_INIT);
  if (!rc && (!(head = wcmi_build_head(ctx, WCMI_HEAD_LINEAR, zdim, WCMI_NUM_CLASSES, p->batch, &init)) ||
              !(best = wcmi_build_head(ctx, WCMI_HEAD_LINEAR, zdim, WCMI_NUM_CLASSES, p->batch, &init))))
    rc = ctx->status;
  if (!rc) {
    const feat_set tr = {ztr, p->train.labels, p->train.n}, te = {zte, p->test.labels, p->test.n};
    const head_fit_cfg hc = {.epochs = p->epochs, .batch_size = p->batch, .lr = p->lr, .seed = p->seed, .task = "probe"};
    rc = head_fit_cached(ctx, head, best, &tr, &te, zdim, &hc, per_epoch, &best_epoch);
  }
  /* The last epoch's head (not the best on the test subset: no selection on what is reported). */
  eval_result er, rob;
  memset(&er, 0, sizeof er);
  memset(&rob, 0, sizeof rob);
  if (!rc) {
    wcmi_model pm = *m;
    pm.classifier = head;
    pm.head = WCMI_HEAD_LINEAR;
    rc = probe_score(ctx, p, &pm, cfg, (uint64_t)WCMI_STREAM_ATTACK * 1000003u + (uint64_t)p->count, &er);
  }
  if (!rc && p->robust_steps > 0) rc = robust_probe(ctx, p, m, cfg, zdim, &rob);
  const double sec = wcmi_now() - t0;
  if (!rc) {
    wcmi_jsonw_kv_double(w, "linear_nat_acc", er.natural);
    wcmi_jsonw_kv_double(w, "linear_adv_acc", er.adversarial[0]);
    wcmi_jsonw_kv_double(w, "linear_train_loss", per_epoch[p->epochs - 1].loss);
    if (p->robust_steps > 0) {
      wcmi_jsonw_kv_double(w, "robust_mlp_nat_acc", rob.natural);
      wcmi_jsonw_kv_double(w, "robust_mlp_adv_acc", rob.adversarial[0]);
    }
    wcmi_jsonw_kv_int(w, "train_samples", p->train.n);
    wcmi_jsonw_kv_int(w, "test_samples", p->test.n);
    wcmi_jsonw_kv_string(w, "head", "linear, cached whitened fit, 50 epochs of Adam 1e-3, last epoch");
    if (p->robust_steps > 0) {
      char text[200];
      snprintf(text, sizeof text, "mlp, %d Madry steps of Adam %g (batch %d; PGD %d steps of %g, eps %g), last step",
               p->robust_steps, WCMI_FAST_HEAD_LR, p->batch, p->robust_attack.steps, (double)p->robust_attack.step,
               (double)p->robust_attack.eps);
      wcmi_jsonw_kv_string(w, "robust_head", text);
    }
    wcmi_jsonw_key(w, "attack");
    wcmi_jsonw_begin_object(w);
    const eval_attack a = {"pgd", p->attack, 0, 0};
    eval_protocol_json(w, &a);
    wcmi_jsonw_end_object(w);
    wcmi_jsonw_kv_double(w, "probe_seconds", sec);
  }
  p->spent += sec;
  p->count++;
  p->next_at += p->every_s;
  wcmi_net_free(head);
  wcmi_net_free(best);
  wcmi_free(ztr);
  wcmi_free(zte);
  free(per_epoch);
  return rc;
}
