/* Learning-curve probes (see probe.h). */
#include "train/probe.h"
#include "train/eval.h"
#include "train/head_fit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
  p->batch = cfg->batch_size;
  p->seed = cfg->seed ^ 0x70726f6265ull; /* its own subsets and head init, independent of the run's streams */
  p->next_at = 0.0;                        /* a first probe on the initial encoder: the curve's origin */
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
  eval_result er;
  memset(&er, 0, sizeof er);
  if (!rc) {
    wcmi_model pm = *m;
    pm.classifier = head;
    pm.head = WCMI_HEAD_LINEAR;
    wcmi_task_cfg ec = *cfg;
    ec.eval_batches = 0;
    ec.progress = 0;
    const eval_attack a = {"pgd", p->attack, 0, 0};
    wcmi_rng r;
    wcmi_rng_derive(&r, p->seed, (uint64_t)WCMI_STREAM_ATTACK * 1000003u + (uint64_t)p->count);
    rc = eval_attacks(ctx, &pm, &p->test, &ec, &a, 1, &r, &er);
  }
  const double sec = wcmi_now() - t0;
  if (!rc) {
    wcmi_jsonw_kv_double(w, "linear_nat_acc", er.natural);
    wcmi_jsonw_kv_double(w, "linear_adv_acc", er.adversarial[0]);
    wcmi_jsonw_kv_double(w, "linear_train_loss", per_epoch[p->epochs - 1].loss);
    wcmi_jsonw_kv_int(w, "train_samples", p->train.n);
    wcmi_jsonw_kv_int(w, "test_samples", p->test.n);
    wcmi_jsonw_kv_string(w, "head", "linear, cached whitened fit, 50 epochs of Adam 1e-3, last epoch");
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
