/* Natural and adversarial accuracy of encoder + head: every attack maximizes the per-sample
 * cross-entropy of classifier(encoder(x)) with BatchNorm in eval mode. A sample counts as robust
 * to an attack only if it is classified correctly both clean and attacked (the usual robust
 * accuracy: adversarial accuracy never exceeds natural accuracy), and as robust to a set of
 * attacks only if it survives every one of them (worst case per sample). */
#include "train/eval.h"
#include "train/trainer.h"
#include "wcmi/dist.h"

#include <stdio.h>
#include <string.h>

/* The single place that chooses between PGD and APGD-CE. */
static int run_attack(wcmi_attack *atk, const eval_attack *a, const wcmi_objective *obj, const float *x, int n,
                      wcmi_rng *rng, float *x_adv) {
  int rc = wcmi_attack_set_cfg(atk, &a->cfg);
  if (rc) return rc;
  return a->use_apgd ? wcmi_apgd_run(atk, obj, x, n, rng, x_adv, NULL) : wcmi_pgd_run(atk, obj, x, n, rng, x_adv, NULL);
}

/* Data-parallel cascades: every rank's survivors of a batch, gathered (B rows at most), and the
 * flags exchanged with them. Allocated once per evaluation. */
typedef struct cascade_dist {
  float *x_all, *f_all, *f_mine; /* (B, D), (B), (B) */
  int32_t *y_all;                /* (B) */
  int *counts;                   /* (K) */
} cascade_dist;

/* Data-parallel cascade step on this rank's m survivors (x_sel, y_sel, at): gathered in rank order
 * they are exactly the survivors one process attacks, in its order. Each rank attacks a contiguous
 * share of them (the random starts one process draws for those samples); with fewer survivors than
 * ranks every rank attacks all of them as one process (communicator set aside, the same draws).
 * The "broken" flags come back in the same order. No rank skips the attack alone: its collectives
 * (random-start draws, APGD's early stop) need every rank. */
static int survivors_dist(wcmi_ctx *ctx, wcmi_clf *clf, wcmi_attack *atk, const eval_attack *a, const wcmi_objective *obj,
                          int m, int64_t D, wcmi_rng *rng, const float *x_sel, const int32_t *y_sel, const int *at,
                          cascade_dist *cd, float *x_adv, unsigned char *wrong, unsigned char *robust) {
  wcmi_dist *d = ctx->dist;
  const int K = wcmi_dist_size(d), me = wcmi_dist_rank(d);
  int rc = wcmi_dist_counts(d, m, cd->counts);
  if (rc) return rc;
  int total = 0, before = 0;
  for (int r = 0; r < K; r++) {
    if (r == me) before = total;
    total += cd->counts[r];
  }
  if (total == 0) return WCMI_OK; /* every rank sees the same total */
  for (int j = 0; j < m; j++) cd->f_mine[j] = (float)y_sel[j]; /* labels < 2^24: exact as floats */
  rc = wcmi_dist_allgather_f32(d, WCMI_DIST_OTHER, x_sel, cd->counts, D, cd->x_all);
  if (!rc) rc = wcmi_dist_allgather_f32(d, WCMI_DIST_OTHER, cd->f_mine, cd->counts, 1, cd->f_all);
  if (rc) return rc;
  for (int j = 0; j < total; j++) cd->y_all[j] = (int32_t)cd->f_all[j];
  const int split = total >= K;
  int lo = 0, hi = total;
  if (split) wcmi_dist_shard(total, me, K, &lo, &hi);
  else ctx->dist = NULL;
  clf->labels = cd->y_all + lo;
  rc = run_attack(atk, a, obj, cd->x_all + (int64_t)lo * D, hi - lo, rng, x_adv);
  if (!rc) rc = wcmi_clf_step(clf, x_adv, cd->y_all + lo, hi - lo, 0, 0, 0, NULL, NULL, wrong, NULL, NULL);
  ctx->dist = d;
  if (rc) return rc;
  for (int j = 0; j < hi - lo; j++) cd->f_mine[j] = wrong[j] ? 1.0f : 0.0f;
  if (split) {
    for (int r = 0; r < K; r++) {
      int r0 = 0, r1 = 0;
      wcmi_dist_shard(total, r, K, &r0, &r1);
      cd->counts[r] = r1 - r0;
    }
    if ((rc = wcmi_dist_allgather_f32(d, WCMI_DIST_OTHER, cd->f_mine, cd->counts, 1, cd->f_all))) return rc;
  } else {
    memcpy(cd->f_all, cd->f_mine, (size_t)total * sizeof(float));
  }
  for (int j = 0; j < m; j++)
    if (cd->f_all[before + j] != 0.0f) robust[at[j]] = 0;
  return WCMI_OK;
}

/* One attack of a cascade: the samples of the batch (x, y: n) still robust are gathered into
 * x_sel / y_sel (their places in at), attacked, and those it breaks lose their robust flag. Eval
 * mode makes every sample's attack independent of the others in the batch. */
static int attack_survivors(wcmi_clf *clf, wcmi_attack *atk, const eval_attack *a, const wcmi_objective *obj,
                            const float *x, const int32_t *y, int n, int64_t D, wcmi_rng *rng, float *x_sel,
                            int32_t *y_sel, int *at, cascade_dist *cd, float *x_adv, unsigned char *wrong,
                            unsigned char *robust) {
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (!robust[i]) continue;
    memcpy(x_sel + (int64_t)m * D, x + (int64_t)i * D, (size_t)D * sizeof(float));
    y_sel[m] = y[i];
    at[m++] = i;
  }
  if (clf->ctx->dist)
    return survivors_dist(clf->ctx, clf, atk, a, obj, m, D, rng, x_sel, y_sel, at, cd, x_adv, wrong, robust);
  if (m == 0) return WCMI_OK;
  clf->labels = y_sel;
  int rc = run_attack(atk, a, obj, x_sel, m, rng, x_adv);
  if (!rc) rc = wcmi_clf_step(clf, x_adv, y_sel, m, 0, 0, 0, NULL, NULL, wrong, NULL, NULL);
  if (rc) return rc;
  for (int j = 0; j < m; j++)
    if (wrong[j]) robust[at[j]] = 0;
  return WCMI_OK;
}

int64_t eval_num_samples(const wcmi_task_cfg *cfg, int64_t n) {
  if (cfg->eval_batches > 0 && (int64_t)cfg->eval_batches * cfg->batch_size < n) return (int64_t)cfg->eval_batches * cfg->batch_size;
  return n;
}

int eval_attacks(wcmi_ctx *ctx, wcmi_model *m, const wcmi_dataset *d, const wcmi_task_cfg *cfg,
                 const eval_attack *attacks, int n_attacks, wcmi_rng *rng, eval_result *out) {
  memset(out, 0, sizeof *out);
  if (n_attacks < 0 || n_attacks > EVAL_MAX_ATTACKS)
    return wcmi_fail(ctx, WCMI_EINVAL, "evaluation: %d attacks (at most %d)", n_attacks, EVAL_MAX_ATTACKS);
  if (!m->classifier) return wcmi_fail(ctx, WCMI_EINVAL, "evaluation: the model has no classifier head");
  const int B = cfg->batch_size;
  if (B <= 0 || B > wcmi_net_max_batch(m->encoder))
    return wcmi_fail(ctx, WCMI_EINVAL, "evaluation: batch size %d outside [1, %d]", B, wcmi_net_max_batch(m->encoder));
  if (d->n <= 0) return wcmi_fail(ctx, WCMI_EINVAL, "evaluation: %s has no samples", d->name);
  const int64_t D = wcmi_dataset_sample_size(d);
  wcmi_shape in = wcmi_net_in_shape(m->encoder);
  if (wcmi_shape_numel(&in) != D)
    return wcmi_fail(ctx, WCMI_EINVAL, "evaluation: %s samples have %lld values, the model expects %lld", d->name,
                     (long long)D, (long long)wcmi_shape_numel(&in));
  int64_t nb = (d->n + B - 1) / B; /* the last partial batch too */
  if (cfg->eval_batches > 0 && nb > cfg->eval_batches) nb = cfg->eval_batches;

  wcmi_clf clf;
  int rc = wcmi_clf_init(ctx, &clf, m, B);
  if (rc) return rc;
  wcmi_objective obj = wcmi_clf_objective(&clf);
  wcmi_attack *atk = NULL;
  float *x_adv = wcmi_alloc(ctx, (size_t)B * (size_t)D, sizeof(float)); /* (B, C, H, W) */
  /* Per sample of a batch: wrong prediction, correct clean, correct clean and under every attack so far. */
  unsigned char *wrong = wcmi_alloc(ctx, (size_t)B, 1), *clean_ok = wcmi_alloc(ctx, (size_t)B, 1),
                *robust = wcmi_alloc(ctx, (size_t)B, 1);
  /* The survivors of a cascade, gathered: their inputs, labels and places in the batch. */
  float *x_sel = wcmi_alloc(ctx, (size_t)B * (size_t)D, sizeof(float));
  int32_t *y_sel = wcmi_alloc(ctx, (size_t)B, sizeof(int32_t));
  int *at = wcmi_alloc(ctx, (size_t)B, sizeof(int));
  if (!x_adv || !wrong || !clean_ok || !robust || !x_sel || !y_sel || !at) rc = ctx->status;
  cascade_dist cd = {0};
  if (!rc && ctx->dist) {
    cd.x_all = wcmi_alloc(ctx, (size_t)B * (size_t)D, sizeof(float));
    cd.f_all = wcmi_alloc(ctx, (size_t)B, sizeof(float));
    cd.f_mine = wcmi_alloc(ctx, (size_t)B, sizeof(float));
    cd.y_all = wcmi_alloc(ctx, (size_t)B, sizeof(int32_t));
    cd.counts = wcmi_alloc(ctx, (size_t)wcmi_dist_size(ctx->dist), sizeof(int));
    if (!cd.x_all || !cd.f_all || !cd.f_mine || !cd.y_all || !cd.counts) rc = ctx->status;
  }
  if (!rc && n_attacks > 0 && !(atk = wcmi_attack_new(ctx, &attacks[0].cfg, B, D))) rc = ctx->status;

  int64_t nat = 0, worst = 0, adv[EVAL_MAX_ATTACKS] = {0}, seen = 0;
  /* Data-parallel (docs/distributed.md): each rank takes its slice of every batch; the counts are
   * summed over the ranks. In one process the slice is the batch. */
  const int rank = wcmi_dist_rank(ctx->dist), ranks = wcmi_dist_size(ctx->dist);
  double totals[3 + EVAL_MAX_ATTACKS] = {0};
  for (int64_t b = 0; b < nb && !rc; b++) {
    const int64_t boff = b * B;
    const int nb_samples = (int)(d->n - boff < B ? d->n - boff : B);
    if (nb_samples < ranks) {
      rc = wcmi_fail(ctx, WCMI_EINVAL, "evaluation: batch %lld of %s has %d samples, fewer than the %d ranks",
                     (long long)(b + 1), d->name, nb_samples, ranks);
      break;
    }
    int lo = 0, hi = nb_samples;
    wcmi_dist_shard(nb_samples, rank, ranks, &lo, &hi);
    const int64_t off = boff + lo;
    const int n = hi - lo;
    const float *x = d->images + off * D; /* x: (n, C, H, W) */
    const int32_t *y = d->labels + off;
    if ((rc = wcmi_clf_step(&clf, x, y, n, 0, 0, 0, NULL, NULL, wrong, NULL, NULL))) break;
    for (int i = 0; i < n; i++) {
      clean_ok[i] = robust[i] = !wrong[i];
      nat += clean_ok[i];
    }
    clf.labels = y;
    for (int k = 0; k < n_attacks && !rc; k++) {
      /* One attack on a batch can take seconds (restarts, APGD): Ctrl-C is checked before each. */
      if (ctx->interrupt) break;
      if (attacks[k].survivors) {
        if ((rc = attack_survivors(&clf, atk, &attacks[k], &obj, x, y, n, D, rng, x_sel, y_sel, at, &cd, x_adv, wrong,
                                   robust)))
          break;
        clf.labels = y;
        for (int i = 0; i < n; i++) adv[k] += robust[i];
        continue;
      }
      if ((rc = run_attack(atk, &attacks[k], &obj, x, n, rng, x_adv))) break;
      if ((rc = wcmi_clf_step(&clf, x_adv, y, n, 0, 0, 0, NULL, NULL, wrong, NULL, NULL))) break;
      for (int i = 0; i < n; i++) {
        const unsigned char ok = clean_ok[i] && !wrong[i];
        adv[k] += ok;
        robust[i] = robust[i] && ok;
      }
    }
    if (rc) break;
    if (ctx->dist) ctx->interrupt = wcmi_dist_any(ctx->dist, ctx->interrupt); /* every rank stops together */
    if (ctx->interrupt) {
      rc = wcmi_fail(ctx, WCMI_EINTR, "evaluation interrupted at batch %lld/%lld", (long long)(b + 1), (long long)nb);
      break;
    }
    for (int i = 0; i < n; i++) worst += robust[i];
    seen += n;
    /* The counts so far over all ranks (exact: integers in doubles). */
    totals[0] = (double)seen;
    totals[1] = (double)nat;
    totals[2] = (double)worst;
    for (int k = 0; k < n_attacks; k++) totals[3 + k] = (double)adv[k];
    if ((rc = wcmi_dist_sum_f64(ctx->dist, WCMI_DIST_OTHER, totals, (size_t)(3 + n_attacks)))) break;
    if (cfg->progress && rank == 0)
      fprintf(stderr, "[eval] batch %lld/%lld: natural %.4f, worst case %.4f so far\n", (long long)(b + 1),
              (long long)nb, totals[1] / totals[0], totals[2] / totals[0]);
  }
  if (!rc) {
    out->samples = (int64_t)totals[0];
    out->natural = totals[1] / totals[0];
    for (int k = 0; k < n_attacks; k++) out->adversarial[k] = totals[3 + k] / totals[0];
    out->worst_case = n_attacks > 0 ? totals[2] / totals[0] : out->natural;
  }
  wcmi_attack_free(atk);
  wcmi_free(x_adv);
  wcmi_free(wrong);
  wcmi_free(clean_ok);
  wcmi_free(robust);
  wcmi_free(x_sel);
  wcmi_free(y_sel);
  wcmi_free(at);
  wcmi_free(cd.x_all);
  wcmi_free(cd.f_all);
  wcmi_free(cd.f_mine);
  wcmi_free(cd.y_all);
  wcmi_free(cd.counts);
  wcmi_clf_free(&clf);
  return rc;
}

int task_accuracy(wcmi_ctx *ctx, wcmi_model *m, const wcmi_dataset *d, const wcmi_task_cfg *cfg,
                  const wcmi_pgd_cfg *attack, int use_apgd, wcmi_rng *rng, double *nat, double *adv) {
  eval_attack a = {use_apgd ? "apgd-ce" : "pgd", *attack, use_apgd, 0};
  eval_result r;
  int rc = eval_attacks(ctx, m, d, cfg, &a, 1, rng, &r);
  if (rc) return rc;
  *nat = r.natural;
  *adv = r.adversarial[0];
  return WCMI_OK;
}

void eval_protocol_json(wcmi_jsonw *w, const eval_attack *a) {
  wcmi_jsonw_kv_string(w, "algorithm", a->use_apgd ? "apgd-ce" : "pgd");
  wcmi_jsonw_kv_string(w, "norm", a->cfg.norm == WCMI_NORM_L2 ? "l2" : "linf");
  wcmi_jsonw_kv_double(w, "eps", a->cfg.eps);
  wcmi_jsonw_kv_int(w, "steps", a->cfg.steps);
  /* APGD-CE sets its own step size (2 eps, halved when progress stalls). */
  if (a->use_apgd) wcmi_jsonw_kv_string(w, "step", "adaptive (2 eps, halved at checkpoints)");
  else wcmi_jsonw_kv_double(w, "step", a->cfg.step);
  wcmi_jsonw_kv_int(w, "restarts", a->cfg.restarts);
  wcmi_jsonw_kv_bool(w, "random_start", a->cfg.random_start);
  wcmi_jsonw_kv_bool(w, "use_best", a->use_apgd ? 1 : a->cfg.use_best);
  wcmi_jsonw_kv_string(w, "loss", "cross-entropy");
  wcmi_jsonw_kv_string(w, "batchnorm", "eval");
}
