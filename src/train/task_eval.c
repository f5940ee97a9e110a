/* eval (PAPER.md section 5, issue 6's stronger evaluation): natural accuracy and adversarial
 * accuracy per attack of any model with a classifier head, both reported (the authors' code
 * overwrote the natural accuracy with the adversarial one), with each attack's protocol stated. */
#include "train/eval.h"
#include "train/trainer.h"
#include "wcmi/dist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Restarts of the random-start PGD in --attack strong when --restarts is not given. */
#define STRONG_DEFAULT_RESTARTS 5

/* The attacks of cfg->eval_attack; returns how many. */
static int eval_attack_set(const wcmi_task_cfg *cfg, eval_attack *out) {
  const wcmi_pgd_cfg base = cfg->attack;
  switch (cfg->eval_attack) {
  case WCMI_EVAL_APGD:
    out[0] = (eval_attack){"apgd-ce", base, 1, 0};
    return 1;
  case WCMI_EVAL_STRONG: {
    /* A cascade: the configured PGD (the paper's protocol) on every sample, then each stronger
     * attack only on the samples that survived the ones before it (the worst case per sample is
     * the same as attacking every sample with each; the cost falls with the accuracy). */
    int n = 0;
    out[n++] = (eval_attack){"pgd", base, 0, 0};
    /* The configured PGD already is a random-start, restarted PGD: do not run it twice. */
    if (!(base.random_start && base.restarts > 0)) {
      wcmi_pgd_cfg r = base;
      r.random_start = 1;
      r.restarts = base.restarts > 0 ? base.restarts : STRONG_DEFAULT_RESTARTS;
      out[n++] = (eval_attack){"pgd-restarts", r, 0, 1};
    }
    out[n++] = (eval_attack){"apgd-ce", base, 1, 1};
    return n;
  }
  case WCMI_EVAL_PGD:
  default:
    out[0] = (eval_attack){"pgd", base, 0, 0};
    return 1;
  }
}

static const char *eval_attack_name(wcmi_eval_attack a) {
  return a == WCMI_EVAL_APGD ? "apgd" : a == WCMI_EVAL_STRONG ? "strong" : "pgd";
}

int eval_load_model(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, int need_head, wcmi_model *m) {
  if (!cfg->model) return wcmi_fail(ctx, WCMI_EINVAL, "no model file (--model FILE)");
  int rc = wcmi_model_load(ctx, cfg->model, cfg->batch_size, m, NULL);
  if (rc) return rc;
  if (need_head && !m->classifier)
    rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: the model has no classifier head (an encoder from train-encoder?): give the result "
                   "of train-classifier or train-model", cfg->model);
  else if (strcmp(m->dataset, cfg->data))
    rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: model was trained on %s, but the data is %s (pass --data %s)", cfg->model,
                   m->dataset, cfg->data, m->dataset);
  if (rc) wcmi_model_free(m);
  return rc;
}

static int write_eval_json(wcmi_ctx *ctx, const char *dir, const char *text) {
  int rc = wcmi_mkdir_p(ctx, dir);
  if (rc) return rc;
  char path[1100];
  if (snprintf(path, sizeof path, "%s/eval.json", dir) >= (int)sizeof path)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: path too long", dir);
  return wcmi_atomic_write(ctx, path, text, strlen(text));
}

static void eval_json(wcmi_jsonw *w, const wcmi_task_cfg *cfg, const wcmi_model *m, const eval_attack *attacks, int n,
                      const eval_result *r, double seconds) {
  char arch[256];
  wcmi_model_describe(m, arch, sizeof arch);
  wcmi_jsonw_begin_object(w);
  wcmi_jsonw_kv_string(w, "task", "eval");
  wcmi_jsonw_kv_string(w, "model", cfg->model);
  wcmi_jsonw_kv_string(w, "architecture", arch);
  wcmi_jsonw_kv_string(w, "dataset", cfg->data);
  wcmi_jsonw_kv_string(w, "split", "test");
  wcmi_jsonw_kv_int(w, "samples", r->samples);
  wcmi_jsonw_kv_string(w, "attack", eval_attack_name(cfg->eval_attack));
  wcmi_run_record rec;
  wcmi_record_clear(&rec);
  rec.nat_acc = r->natural;
  rec.min_adv_acc = r->natural;
  wcmi_jsonw_key(w, "attacks");
  wcmi_jsonw_begin_array(w);
  for (int k = 0; k < n; k++) {
    wcmi_jsonw_begin_object(w);
    wcmi_jsonw_kv_string(w, "name", attacks[k].name);
    wcmi_jsonw_kv_double(w, "adv_acc", r->adversarial[k]);
    wcmi_jsonw_kv_string(w, "attacked", attacks[k].survivors ? "the samples every attack before left correct (adv_acc: "
                                                                "robust to this attack and every one before)"
                                                              : "every correctly classified sample");
    eval_protocol_json(w, &attacks[k]);
    wcmi_jsonw_end_object(w);
    if (r->adversarial[k] < rec.min_adv_acc) rec.min_adv_acc = r->adversarial[k];
    if (k == 0 && !strcmp(attacks[k].name, "pgd")) rec.pgd_adv_acc = r->adversarial[k]; /* the paper's protocol */
  }
  wcmi_jsonw_end_array(w);
  rec.worst_case_adv_acc = r->worst_case;
  /* The headline number: the per-sample worst case over every attack that ran. */
  rec.adv_acc = r->worst_case;
  wcmi_record_write(w, &rec, WCMI_REC_EVAL);
  wcmi_jsonw_kv_string(w, "robust_means",
                       "classified correctly on the clean input and on the attacked input (worst_case_adv_acc: under "
                       "every attack listed)");
  wcmi_jsonw_kv_int(w, "seed", (int64_t)cfg->seed);
  wcmi_jsonw_kv_double(w, "seconds", seconds);
  wcmi_jsonw_end_object(w);
}

int wcmi_task_eval(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  double t0 = wcmi_now();
  *summary = NULL;
  wcmi_model m;
  int rc = eval_load_model(ctx, cfg, 1, &m);
  if (rc) return rc;
  wcmi_dataset test;
  memset(&test, 0, sizeof test);
  wcmi_data_options o = {cfg->data, cfg->data_dir, 0, cfg->test_subset, 0, cfg->seed};
  rc = wcmi_data_open(ctx, &o, NULL, NULL, &test);
  eval_attack attacks[EVAL_MAX_ATTACKS];
  int n = eval_attack_set(cfg, attacks);
  eval_result r;
  wcmi_rng rng;
  wcmi_rng_derive(&rng, cfg->seed, WCMI_STREAM_ATTACK);
  if (!rc) rc = eval_attacks(ctx, &m, &test, cfg, attacks, n, &rng, &r);
  if (!rc) {
    wcmi_jsonw w;
    wcmi_jsonw_init_buffer(&w, 2);
    eval_json(&w, cfg, &m, attacks, n, &r, wcmi_now() - t0);
    rc = wcmi_jsonw_finish(ctx, &w);
    if (!rc && cfg->out_dir && wcmi_dist_rank(ctx->dist) == 0) /* data-parallel: rank 0 writes */
      rc = write_eval_json(ctx, cfg->out_dir, wcmi_jsonw_text(&w));
    if (!rc && !(*summary = strdup(wcmi_jsonw_text(&w)))) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    wcmi_jsonw_free(&w);
  }
  wcmi_dataset_free(&test);
  wcmi_model_free(&m);
  return rc;
}
