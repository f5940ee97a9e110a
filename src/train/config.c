/* Task configuration: per-dataset defaults of the "paper" and "quick" profiles, and config.json. */
#include "wcmi/io.h"
#include "wcmi/tasks.h"

#include <stdlib.h>
#include <string.h>

/* PAPER.md section 4: the attack used for training and evaluation on each dataset. */
static int paper_attack(const char *d, wcmi_pgd_cfg *a) {
  *a = (wcmi_pgd_cfg){WCMI_NORM_LINF, 0, 0, 10, 0, 0, 0};
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

int wcmi_task_config_load(wcmi_ctx *ctx, const char *run_dir, wcmi_task_cfg *c, char *task, size_t task_n,
                          wcmi_json **keep) {
  char path[1100];
  snprintf(path, sizeof path, "%s/config.json", run_dir);
  wcmi_json *j = NULL;
  int rc = wcmi_json_parse_file(ctx, path, 1 << 20, &j);
  if (rc) return rc;
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
#define GET_INT(key, dst)                                                      \
  if ((rc = wcmi_json_get_int(ctx, path, j, key, &v))) goto fail;              \
  dst = v;
  GET_INT("train_subset", c->train_subset);
  GET_INT("test_subset", c->test_subset);
  GET_INT("epochs", c->epochs);
  GET_INT("batch_size", c->batch_size);
  GET_INT("seed", c->seed);
  GET_INT("hsize", c->hsize);
  GET_INT("max_batches", c->max_batches);
  GET_INT("eval_batches", c->eval_batches);
  if ((rc = wcmi_json_get_number(ctx, path, j, "lr", &d))) goto fail;
  c->lr = d;
  if ((rc = wcmi_json_get_string(ctx, path, j, "estimator", &s)) || (rc = wcmi_mi_parse_estimator(ctx, s, &c->mi.estimator)))
    goto fail;
  if ((rc = wcmi_json_get_string(ctx, path, j, "measure", &s)) || (rc = wcmi_mi_parse_measure(ctx, s, &c->mi.measure)))
    goto fail;
  if ((rc = wcmi_json_get_string(ctx, path, j, "grad_path", &s))) goto fail;
  c->grad_path = !strcmp(s, "both") ? WCMI_PATH_BOTH : WCMI_PATH_ENCODER;
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
  const wcmi_json *a = wcmi_json_get(j, "attack");
  if (!a || a->type != WCMI_JSON_OBJECT) {
    rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: 'attack' missing or not an object", path);
    goto fail;
  }
  if ((rc = wcmi_json_get_string(ctx, path, a, "norm", &s))) goto fail;
  c->attack.norm = !strcmp(s, "l2") ? WCMI_NORM_L2 : WCMI_NORM_LINF;
  if ((rc = wcmi_json_get_number(ctx, path, a, "eps", &d))) goto fail;
  c->attack.eps = (float)d;
  if ((rc = wcmi_json_get_number(ctx, path, a, "step", &d))) goto fail;
  c->attack.step = (float)d;
#define GET_AINT(key, dst)                                                     \
  if ((rc = wcmi_json_get_int(ctx, path, a, key, &v))) goto fail;              \
  dst = (int)v;
  GET_AINT("steps", c->attack.steps);
  GET_AINT("restarts", c->attack.restarts);
  GET_AINT("eps_fade_epochs", c->eps_fade_epochs);
  if ((rc = wcmi_json_get_bool(ctx, path, a, "random_start", &b))) goto fail;
  c->attack.random_start = b;
  if ((rc = wcmi_json_get_bool(ctx, path, a, "use_best", &b))) goto fail;
  c->attack.use_best = b;
#undef GET_INT
#undef GET_AINT
  c->resume_dir = run_dir;
  *keep = j;
  return WCMI_OK;
fail:
  wcmi_json_free(j);
  return rc;
}
