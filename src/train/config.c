/* Task configuration: per-dataset defaults of the "paper" and "quick" profiles, and config.json. */
#include "wcmi/io.h"
#include "wcmi/tasks.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* PAPER.md section 4: the attack used for training and evaluation on each dataset. use-best is on
 * because MadryLab robustness defaults it to 1 and the authors' scripts never turn it off: every
 * published number kept the highest-loss PGD iterate, the starting (clean) point among them. */
static int paper_attack(const char *d, wcmi_pgd_cfg *a) {
  *a = (wcmi_pgd_cfg){.norm = WCMI_NORM_LINF, .steps = 10, .use_best = 1};
  if (!strcmp(d, "mnist")) a->eps = 0.3f, a->step = 0.1f;
  else if (!strcmp(d, "fashion-mnist")) a->eps = 0.1f, a->step = 0.02f;
  else if (!strcmp(d, "svhn")) a->eps = 4.0f / 255.0f, a->step = 0.005f;
  else if (!strcmp(d, "cifar10")) a->eps = 8.0f / 255.0f, a->step = 0.01f, a->steps = 7;
  else return 0;
  return 1;
}

int wcmi_task_defaults(wcmi_ctx *ctx, wcmi_task_cfg *c, const char *dataset, const char *profile) {
  memset(c, 0, sizeof *c);
  if (!profile) profile = "paper";
  if (!paper_attack(dataset, &c->attack))
    return wcmi_fail(ctx, WCMI_EINVAL, "unknown dataset '%s' (expected mnist, fashion-mnist, svhn or cifar10)", dataset);
  c->data = dataset;
  c->profile = profile;
  c->batch_size = 128;
  c->lr = 1e-4;
  c->seed = 0;
  c->hsize = 2048;
  c->mi = wcmi_mi_default_cfg();
  c->grad_path = WCMI_PATH_ENCODER;
  c->head = WCMI_HEAD_MLP;
  if (!strcmp(profile, "paper")) {
    c->epochs = 300;
  } else if (!strcmp(profile, "quick")) {
    /* Minutes on 2 cores: a class-balanced subset, a narrower critic, few epochs (docs/profiles.md). */
    c->epochs = 4;
    c->hsize = 256;
    c->train_subset = 10000;
    c->test_subset = 1000;
    c->lr = 5e-4;
  } else {
    return wcmi_fail(ctx, WCMI_EINVAL, "unknown profile '%s' (expected paper or quick)", profile);
  }
  return WCMI_OK;
}

const char *wcmi_head_fit_name(wcmi_head_fit f) {
  return f == WCMI_HEAD_FIT_CACHED ? "cached" : f == WCMI_HEAD_FIT_ONLINE ? "online" : "auto";
}

int wcmi_head_fit_parse(wcmi_ctx *ctx, const char *s, wcmi_head_fit *out) {
  if (!strcmp(s, "auto")) *out = WCMI_HEAD_FIT_AUTO;
  else if (!strcmp(s, "cached")) *out = WCMI_HEAD_FIT_CACHED;
  else if (!strcmp(s, "online")) *out = WCMI_HEAD_FIT_ONLINE;
  else return wcmi_fail(ctx, WCMI_EINVAL, "head fit must be auto, cached or online");
  return WCMI_OK;
}

const char *wcmi_select_name(wcmi_select_kind s) {
  return s == WCMI_SELECT_NAT ? "nat" : s == WCMI_SELECT_ADV ? "adv" : "auto";
}

char *wcmi_task_config_json(const wcmi_task_cfg *c, const char *task) {
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "task", task);
  wcmi_jsonw_kv_string(&w, "wcmi_version", wcmi_version());
  wcmi_jsonw_kv_string(&w, "profile", c->profile ? c->profile : "paper");
  wcmi_jsonw_kv_string(&w, "data", c->data);
  if (c->data_dir) wcmi_jsonw_kv_string(&w, "data_dir", c->data_dir);
  wcmi_jsonw_kv_int(&w, "train_subset", c->train_subset);
  wcmi_jsonw_kv_int(&w, "test_subset", c->test_subset);
  wcmi_jsonw_kv_int(&w, "epochs", c->epochs);
  wcmi_jsonw_kv_int(&w, "batch_size", c->batch_size);
  wcmi_jsonw_kv_double(&w, "lr", c->lr);
  wcmi_jsonw_kv_int(&w, "seed", (int64_t)c->seed);
  wcmi_jsonw_kv_int(&w, "hsize", c->hsize);
  wcmi_jsonw_kv_string(&w, "estimator", wcmi_mi_estimator_name(c->mi.estimator));
  wcmi_jsonw_kv_string(&w, "measure", wcmi_mi_measure_name(c->mi.measure));
  wcmi_jsonw_kv_string(&w, "grad_path", c->grad_path == WCMI_PATH_BOTH ? "both" : "encoder");
  wcmi_jsonw_kv_string(&w, "head", wcmi_head_name(c->head));
  wcmi_jsonw_kv_string(&w, "encoder", wcmi_encoder_name(c->encoder));
  wcmi_jsonw_kv_string(&w, "select", wcmi_select_name(c->select));
  wcmi_jsonw_kv_bool(&w, "worst", c->worst);
  wcmi_jsonw_kv_bool(&w, "robust", c->robust);
  wcmi_jsonw_kv_string(&w, "head_fit", wcmi_head_fit_name(c->head_fit));
  wcmi_jsonw_kv_double(&w, "probe_every", c->probe_every);
  wcmi_jsonw_kv_int(&w, "probe_train", c->probe_train);
  wcmi_jsonw_kv_int(&w, "probe_test", c->probe_test);
  wcmi_jsonw_kv_int(&w, "free_replays", c->free_replays);
  if (c->model) wcmi_jsonw_kv_string(&w, "model", c->model);
  wcmi_jsonw_key(&w, "attack");
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "norm", c->attack.norm == WCMI_NORM_L2 ? "l2" : "linf");
  wcmi_jsonw_kv_double(&w, "eps", c->attack.eps);
  wcmi_jsonw_kv_double(&w, "step", c->attack.step);
  wcmi_jsonw_kv_int(&w, "steps", c->attack.steps);
  wcmi_jsonw_kv_bool(&w, "random_start", c->attack.random_start);
  wcmi_jsonw_kv_int(&w, "restarts", c->attack.restarts);
  wcmi_jsonw_kv_bool(&w, "use_best", c->attack.use_best);
  wcmi_jsonw_kv_int(&w, "eps_fade_epochs", c->eps_fade_epochs);
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_kv_int(&w, "max_batches", c->max_batches);
  wcmi_jsonw_kv_int(&w, "eval_batches", c->eval_batches);
  wcmi_jsonw_end_object(&w);
  char *out = NULL;
  if (!wcmi_jsonw_finish(NULL, &w)) out = strdup(wcmi_jsonw_text(&w));
  wcmi_jsonw_free(&w);
  return out;
}

int wcmi_task_cfg_check(wcmi_ctx *ctx, const wcmi_task_cfg *c) {
  if (c->epochs < 0 || c->epochs > WCMI_EPOCHS_MAX)
    return wcmi_fail(ctx, WCMI_EINVAL, "epochs = %d outside [0, %d]", c->epochs, WCMI_EPOCHS_MAX);
  if (c->batch_size < 2 || c->batch_size > WCMI_BATCH_MAX)
    return wcmi_fail(ctx, WCMI_EINVAL, "batch size = %d outside [2, %d]", c->batch_size, WCMI_BATCH_MAX);
  if (!(c->lr > 0) || !(c->lr <= 1e6))
    return wcmi_fail(ctx, WCMI_EINVAL, "learning rate = %g must be in (0, 1e6]", c->lr);
  if (c->hsize < 1 || c->hsize > WCMI_HSIZE_MAX)
    return wcmi_fail(ctx, WCMI_EINVAL, "hsize = %d outside [1, %d]", c->hsize, WCMI_HSIZE_MAX);
  if (c->train_subset < 0 || c->test_subset < 0 || c->val_size < 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "subset sizes must be >= 0 (train %lld, test %lld)", c->train_subset,
                     c->test_subset);
  if (c->max_batches < 0 || c->eval_batches < 0 || c->eps_fade_epochs < 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "max batches (%d), eval batches (%d) and eps-fade epochs (%d) must be >= 0",
                     c->max_batches, c->eval_batches, c->eps_fade_epochs);
  return wcmi_pgd_cfg_check(ctx, &c->attack);
}

/* The integer under key, which must fit [lo, hi] (the range of the field it goes into). */
static int get_int_in(wcmi_ctx *ctx, const char *path, const wcmi_json *obj, const char *key, int64_t lo, int64_t hi,
                      int64_t *out) {
  int rc = wcmi_json_get_int(ctx, path, obj, key, out);
  if (!rc && (*out < lo || *out > hi))
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: '%s' = %lld is out of range", path, key, (long long)*out);
  return rc;
}

/* A string under key that must be one of two names: *out = 1 for `one`, 0 for `zero`. */
static int get_choice(wcmi_ctx *ctx, const char *path, const wcmi_json *obj, const char *key, const char *zero,
                      const char *one, int *out) {
  const char *s = NULL;
  int rc = wcmi_json_get_string(ctx, path, obj, key, &s);
  if (rc) return rc;
  if (strcmp(s, zero) && strcmp(s, one))
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: '%s' must be %s or %s", path, key, zero, one);
  *out = !strcmp(s, one);
  return WCMI_OK;
}

int wcmi_task_config_parse(wcmi_ctx *ctx, const char *path, const char *text, size_t len, wcmi_task_cfg *c, char *task,
                           size_t task_n, wcmi_json **keep) {
  *keep = NULL;
  wcmi_json *j = NULL;
  int rc = wcmi_json_parse(ctx, path, text, len, &j);
  if (rc) return rc;
  if (j->type != WCMI_JSON_OBJECT) {
    wcmi_json_free(j);
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: not a JSON object", path);
  }
  const char *s = NULL, *data = NULL, *profile = NULL;
  double d;
  int64_t v;
  int b;
  if ((rc = wcmi_json_get_string(ctx, path, j, "data", &data)) ||
      (rc = wcmi_json_get_string(ctx, path, j, "profile", &profile)) ||
      (rc = wcmi_task_defaults(ctx, c, data, profile)))
    goto fail;
  if ((rc = wcmi_json_get_string(ctx, path, j, "task", &s))) goto fail;
  snprintf(task, task_n, "%s", s);
  if (wcmi_json_get(j, "data_dir") && (rc = wcmi_json_get_string(ctx, path, j, "data_dir", &c->data_dir))) goto fail;
  if (wcmi_json_get(j, "model") && (rc = wcmi_json_get_string(ctx, path, j, "model", &c->model))) goto fail;
  /* Each integer must fit the field it goes into; the ranges the command line enforces follow in
   * wcmi_task_cfg_check, the same function the CLI calls. */
#define GET_INT(obj, key, dst, lo, hi)                                         \
  if ((rc = get_int_in(ctx, path, obj, key, lo, hi, &v))) goto fail;           \
  dst = v;
  GET_INT(j, "train_subset", c->train_subset, INT64_MIN, INT64_MAX);
  GET_INT(j, "test_subset", c->test_subset, INT64_MIN, INT64_MAX);
  GET_INT(j, "epochs", c->epochs, INT_MIN, INT_MAX);
  GET_INT(j, "batch_size", c->batch_size, INT_MIN, INT_MAX);
  GET_INT(j, "seed", c->seed, INT64_MIN, INT64_MAX);
  GET_INT(j, "hsize", c->hsize, INT_MIN, INT_MAX);
  GET_INT(j, "max_batches", c->max_batches, INT_MIN, INT_MAX);
  GET_INT(j, "eval_batches", c->eval_batches, INT_MIN, INT_MAX);
  if ((rc = wcmi_json_get_number(ctx, path, j, "lr", &d))) goto fail;
  c->lr = d;
  if ((rc = wcmi_json_get_string(ctx, path, j, "estimator", &s)) || (rc = wcmi_mi_parse_estimator(ctx, s, &c->mi.estimator)))
    goto fail;
  if ((rc = wcmi_json_get_string(ctx, path, j, "measure", &s)) || (rc = wcmi_mi_parse_measure(ctx, s, &c->mi.measure)))
    goto fail;
  if ((rc = get_choice(ctx, path, j, "grad_path", "encoder", "both", &b))) goto fail;
  c->grad_path = b ? WCMI_PATH_BOTH : WCMI_PATH_ENCODER;
  if ((rc = wcmi_json_get_string(ctx, path, j, "head", &s))) goto fail;
  c->head = WCMI_HEAD_NONE;
  if (strcmp(s, "none") && (rc = wcmi_head_parse(ctx, s, &c->head))) goto fail;
  /* "encoder" and "select" are absent from runs written before they existed: basic and auto. */
  if (wcmi_json_get(j, "encoder") &&
      ((rc = wcmi_json_get_string(ctx, path, j, "encoder", &s)) || (rc = wcmi_encoder_parse(ctx, s, &c->encoder))))
    goto fail;
  if (wcmi_json_get(j, "select")) {
    if ((rc = wcmi_json_get_string(ctx, path, j, "select", &s))) goto fail;
    if (!strcmp(s, "nat")) c->select = WCMI_SELECT_NAT;
    else if (!strcmp(s, "adv")) c->select = WCMI_SELECT_ADV;
    else if (!strcmp(s, "auto")) c->select = WCMI_SELECT_AUTO;
    else {
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: 'select' = '%s' is not auto, nat or adv", path, s);
      goto fail;
    }
  }
  if ((rc = wcmi_json_get_bool(ctx, path, j, "worst", &b))) goto fail;
  c->worst = b;
  if ((rc = wcmi_json_get_bool(ctx, path, j, "robust", &b))) goto fail;
  c->robust = b;
  /* Runs written before the cached head fit existed have no head_fit: they trained online. */
  c->head_fit = WCMI_HEAD_FIT_ONLINE;
  if (wcmi_json_get(j, "head_fit") &&
      ((rc = wcmi_json_get_string(ctx, path, j, "head_fit", &s)) || (rc = wcmi_head_fit_parse(ctx, s, &c->head_fit))))
    goto fail;
  /* Probes (optional: runs before they existed had none). */
  if (wcmi_json_get(j, "probe_every")) {
    if ((rc = wcmi_json_get_number(ctx, path, j, "probe_every", &d))) goto fail;
    c->probe_every = d;
    GET_INT(j, "probe_train", c->probe_train, 0, 100000000);
    GET_INT(j, "probe_test", c->probe_test, 0, 100000000);
    if (!(c->probe_every >= 0 && c->probe_every <= 1e7) || c->probe_train < 0 || c->probe_test < 0) {
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: probe_every / probe_train / probe_test out of range", path);
      goto fail;
    }
  }
  if (wcmi_json_get(j, "free_replays")) {
    GET_INT(j, "free_replays", c->free_replays, 0, 64);
    if (c->free_replays < 0 || c->free_replays > 64) {
      rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: free_replays %d outside [0, 64]", path, c->free_replays);
      goto fail;
    }
  }
  const wcmi_json *a = wcmi_json_get(j, "attack");
  if (!a || a->type != WCMI_JSON_OBJECT) {
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: 'attack' missing or not an object", path);
    goto fail;
  }
  if ((rc = get_choice(ctx, path, a, "norm", "linf", "l2", &b))) goto fail;
  c->attack.norm = b ? WCMI_NORM_L2 : WCMI_NORM_LINF;
  if ((rc = wcmi_json_get_number(ctx, path, a, "eps", &d))) goto fail;
  c->attack.eps = (float)d;
  if ((rc = wcmi_json_get_number(ctx, path, a, "step", &d))) goto fail;
  c->attack.step = (float)d;
  GET_INT(a, "steps", c->attack.steps, INT_MIN, INT_MAX);
  GET_INT(a, "restarts", c->attack.restarts, INT_MIN, INT_MAX);
  GET_INT(a, "eps_fade_epochs", c->eps_fade_epochs, INT_MIN, INT_MAX);
#undef GET_INT
  if ((rc = wcmi_json_get_bool(ctx, path, a, "random_start", &b))) goto fail;
  c->attack.random_start = b;
  if ((rc = wcmi_json_get_bool(ctx, path, a, "use_best", &b))) goto fail;
  c->attack.use_best = b;
  if ((rc = wcmi_task_cfg_check(ctx, c))) {
    char msg[sizeof ctx->msg];
    snprintf(msg, sizeof msg, "%s", ctx->msg);
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: %s", path, msg);
    goto fail;
  }
  *keep = j;
  return WCMI_OK;
fail:
  wcmi_json_free(j);
  return rc;
}

int wcmi_task_config_load(wcmi_ctx *ctx, const char *run_dir, wcmi_task_cfg *c, char *task, size_t task_n,
                          wcmi_json **keep) {
  *keep = NULL;
  char path[1100];
  if (snprintf(path, sizeof path, "%s/config.json", run_dir) >= (int)sizeof path)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: path too long", run_dir);
  char *text = NULL;
  size_t n = 0;
  int rc = wcmi_read_file(ctx, path, 1 << 20, &text, &n);
  if (rc) return rc;
  rc = wcmi_task_config_parse(ctx, path, text, n, c, task, task_n, keep);
  wcmi_free(text);
  if (!rc) c->resume_dir = run_dir;
  return rc;
}
