/* The table of run settings (wcmi/task_config.h) drives the profile defaults, config.json and its
 * range check: the defaults are those of PAPER.md sections 4-5 bit for bit, config.json is the text
 * runs wrote before the table existed (so they resume, and reproduce's stage keys still match), every
 * field round-trips, every range is enforced, and the names agree with the library's own. */
#include "harness.h"
#include "wcmi/blas.h"
#include "wcmi/io.h"
#include "wcmi/model.h"
#include "wcmi/task_config.h"

#include <string.h>

static wcmi_ctx ctx;

/* The values wcmi_task_defaults returned before the table, written out as literals. */
static void test_defaults_are_the_papers_per_dataset_and_profile(void) {
  const char *data[] = {"mnist", "fashion-mnist", "svhn", "cifar10"};
  const float eps[] = {0.3f, 0.1f, 4.0f / 255.0f, 8.0f / 255.0f}, step[] = {0.1f, 0.02f, 0.005f, 0.01f};
  const int steps[] = {10, 10, 10, 7};
  for (int d = 0; d < 4; d++)
    for (int quick = 0; quick < 2; quick++) {
      wcmi_task_cfg c;
      CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, data[d], quick ? "quick" : "paper"));
      /* Bit-identical floats: the same eps reaches the projection as before. */
      CHECK_MSG(memcmp(&c.attack.eps, &eps[d], sizeof(float)) == 0, "%s: eps %.9g, want %.9g", data[d],
                (double)c.attack.eps, (double)eps[d]);
      CHECK_MSG(memcmp(&c.attack.step, &step[d], sizeof(float)) == 0, "%s: step %.9g", data[d], (double)c.attack.step);
      CHECK(c.attack.steps == steps[d] && c.attack.norm == WCMI_NORM_LINF && c.attack.use_best == 1);
      CHECK(c.attack.random_start == 0 && c.attack.restarts == 0 && c.eps_fade_epochs == 0);
      CHECK(c.batch_size == 128 && c.seed == 0 && c.head == WCMI_HEAD_MLP && c.grad_path == WCMI_PATH_ENCODER);
      CHECK(c.mi.estimator == wcmi_mi_default_cfg().estimator && c.mi.measure == wcmi_mi_default_cfg().measure);
      CHECK(c.epochs == (quick ? 4 : 300) && c.hsize == (quick ? 256 : 2048));
      CHECK(c.lr == (quick ? 5e-4 : 1e-4));
      CHECK(c.train_subset == (quick ? 10000 : 0) && c.test_subset == (quick ? 1000 : 0));
      CHECK(c.probe_train == 0 && c.probe_test == 0 && c.probe_every == 0 && c.free_replays == 0);
      CHECK(c.head_fit == WCMI_HEAD_FIT_AUTO && c.select == WCMI_SELECT_AUTO && c.encoder == WCMI_ENCODER_BASIC);
      CHECK(!c.worst && !c.robust && !c.model && !c.data_dir && !c.out_dir && !strcmp(c.data, data[d]));
    }
  wcmi_task_cfg c;
  CHECK(wcmi_task_defaults(&ctx, &c, "imagenet", "paper") == WCMI_EINVAL);
  CHECK(wcmi_task_defaults(&ctx, &c, "mnist", "faster") == WCMI_EINVAL);
  CHECK(strstr(wcmi_errmsg(&ctx), "paper, fast or quick") != NULL);
  CHECK(wcmi_task_defaults(&ctx, &c, NULL, "paper") == WCMI_EINVAL);
}

/* fast: the paper's splits, batch and threat model; its own epochs, lr and critic width. */
static void test_fast_profile_keeps_the_papers_data_and_threat_model(void) {
  const char *data[] = {"mnist", "fashion-mnist", "svhn", "cifar10"};
  for (int d = 0; d < 4; d++) {
    wcmi_task_cfg paper, fast;
    CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &paper, data[d], "paper"));
    CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &fast, data[d], "fast"));
    CHECK(!strcmp(fast.profile, "fast") && !strcmp(paper.profile, "paper"));
    CHECK(memcmp(&fast.attack, &paper.attack, sizeof fast.attack) == 0);
    CHECK(fast.epochs == 20 && fast.lr == 5e-4 && fast.hsize == 256 && fast.eval_batches == 0);
    CHECK(fast.train_subset == 0 && fast.test_subset == 0 && fast.batch_size == paper.batch_size);
    /* Everything else is the paper's: put the three back and the two agree field for field. */
    fast.epochs = paper.epochs, fast.lr = paper.lr, fast.hsize = paper.hsize;
    fast.profile = paper.profile;
    CHECK(memcmp(&fast, &paper, sizeof fast) == 0);
  }
}

/* Only fast trains with its own attacks; they derive from the threat model given (eps included). */
static void test_training_attack_of_each_profile(void) {
  wcmi_task_cfg c;
  CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, "fashion-mnist", "fast"));
  const wcmi_pgd_cfg threat = c.attack;
  for (int p = 0; p < 3; p++) {
    const char *profile = p == 0 ? "paper" : p == 1 ? "quick" : NULL;
    for (int k = 0; k < 2; k++) {
      wcmi_pgd_cfg a = threat;
      wcmi_profile_training_attack(profile, (wcmi_training_attack)k, &a);
      CHECK(memcmp(&a, &threat, sizeof a) == 0);
    }
  }
  wcmi_pgd_cfg mi = threat, robust = threat;
  wcmi_profile_training_attack("fast", WCMI_TRAIN_ATTACK_MI, &mi);
  CHECK(mi.steps == 3 && mi.random_start == 1 && mi.eps == threat.eps && mi.use_best == threat.use_best);
  CHECK_MSG(mi.step == 0.04f, "MI step %.9g", (double)mi.step); /* 0.4 eps, rounded once */
  wcmi_profile_training_attack("fast", WCMI_TRAIN_ATTACK_ROBUST, &robust);
  CHECK(robust.steps == 5 && robust.random_start == 0 && robust.eps == threat.eps);
  CHECK_MSG(robust.step == 0.04f, "robust step %.9g", (double)robust.step); /* 10 x 0.02 in 5 steps */
  /* A larger budget moves the MI step with it. */
  wcmi_pgd_cfg wide = threat;
  wide.eps = 0.2f;
  wcmi_profile_training_attack("fast", WCMI_TRAIN_ATTACK_MI, &wide);
  CHECK(wide.step == 0.08f && wide.steps == 3);
}

/* A configuration with every field away from its default. */
static void busy_cfg(wcmi_task_cfg *c) {
  CHECK_OK(&ctx, wcmi_task_defaults(&ctx, c, "fashion-mnist", "quick"));
  c->data_dir = "some/dir";
  c->model = "m.safetensors";
  c->seed = 12345678901ull;
  c->mi.estimator = WCMI_MI_FD;
  c->mi.measure = WCMI_MEASURE_KL;
  c->grad_path = WCMI_PATH_BOTH;
  c->head = WCMI_HEAD_LINEAR;
  c->encoder = WCMI_ENCODER_PIXELS;
  c->select = WCMI_SELECT_ADV;
  c->worst = 1;
  c->robust = 1;
  c->head_fit = WCMI_HEAD_FIT_CACHED;
  c->probe_every = 0.5;
  c->probe_train = 5000;
  c->probe_test = 1000;
  c->free_replays = 2;
  c->attack.norm = WCMI_NORM_L2;
  c->attack.random_start = 1;
  c->attack.restarts = 2;
  c->eps_fade_epochs = 3;
  c->max_batches = 7;
  c->eval_batches = 4;
}

/* What the writer before the table produced for these configurations (same keys, order, numbers):
 * runs keep resuming and `wcmi reproduce` keeps recognizing its finished stages. */
static const char *const BUSY_JSON =
    "{\n"
    "  \"task\": \"train-encoder\",\n"
    "  \"wcmi_version\": \"@V@\",\n"
    "  \"profile\": \"quick\",\n"
    "  \"data\": \"fashion-mnist\",\n"
    "  \"data_dir\": \"some/dir\",\n"
    "  \"train_subset\": 10000,\n"
    "  \"test_subset\": 1000,\n"
    "  \"epochs\": 4,\n"
    "  \"batch_size\": 128,\n"
    "  \"lr\": 0.0005,\n"
    "  \"seed\": 12345678901,\n"
    "  \"hsize\": 256,\n"
    "  \"estimator\": \"fd\",\n"
    "  \"measure\": \"kl\",\n"
    "  \"grad_path\": \"both\",\n"
    "  \"head\": \"linear\",\n"
    "  \"encoder\": \"pixels\",\n"
    "  \"select\": \"adv\",\n"
    "  \"worst\": true,\n"
    "  \"robust\": true,\n"
    "  \"head_fit\": \"cached\",\n"
    "  \"probe_every\": 0.5,\n"
    "  \"probe_train\": 5000,\n"
    "  \"probe_test\": 1000,\n"
    "  \"free_replays\": 2,\n"
    "  \"model\": \"m.safetensors\",\n"
    "  \"attack\": {\n"
    "    \"norm\": \"l2\",\n"
    "    \"eps\": 0.100000001,\n"
    "    \"step\": 0.0199999996,\n"
    "    \"steps\": 10,\n"
    "    \"random_start\": true,\n"
    "    \"restarts\": 2,\n"
    "    \"use_best\": true,\n"
    "    \"eps_fade_epochs\": 3\n"
    "  },\n"
    "  \"max_batches\": 7,\n"
    "  \"eval_batches\": 4\n"
    "}";
static const char *const CIFAR_PAPER_JSON =
    "{\n"
    "  \"task\": \"train-model\",\n"
    "  \"wcmi_version\": \"@V@\",\n"
    "  \"profile\": \"paper\",\n"
    "  \"data\": \"cifar10\",\n"
    "  \"train_subset\": 0,\n"
    "  \"test_subset\": 0,\n"
    "  \"epochs\": 300,\n"
    "  \"batch_size\": 128,\n"
    "  \"lr\": 0.0001,\n"
    "  \"seed\": 0,\n"
    "  \"hsize\": 2048,\n"
    "  \"estimator\": \"dv\",\n"
    "  \"measure\": \"jsd\",\n"
    "  \"grad_path\": \"encoder\",\n"
    "  \"head\": \"mlp\",\n"
    "  \"encoder\": \"basic\",\n"
    "  \"select\": \"auto\",\n"
    "  \"worst\": false,\n"
    "  \"robust\": false,\n"
    "  \"head_fit\": \"auto\",\n"
    "  \"probe_every\": 0,\n"
    "  \"probe_train\": 0,\n"
    "  \"probe_test\": 0,\n"
    "  \"free_replays\": 0,\n"
    "  \"attack\": {\n"
    "    \"norm\": \"linf\",\n"
    "    \"eps\": 0.0313725509,\n"
    "    \"step\": 0.00999999978,\n"
    "    \"steps\": 7,\n"
    "    \"random_start\": false,\n"
    "    \"restarts\": 0,\n"
    "    \"use_best\": true,\n"
    "    \"eps_fade_epochs\": 0\n"
    "  },\n"
    "  \"max_batches\": 0,\n"
    "  \"eval_batches\": 0\n"
    "}";

/* want with @V@ replaced by this build's version, compared with got. */
static int same_text(const char *got, const char *want) {
  char buf[4096];
  const char *at = strstr(want, "@V@");
  if (!got || !at) return 0;
  snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - want), want, wcmi_version(), at + 3);
  return !strcmp(got, buf);
}

static void test_config_json_is_the_text_runs_already_hold(void) {
  wcmi_task_cfg c;
  busy_cfg(&c);
  char *text = wcmi_task_config_json(&c, "train-encoder");
  CHECK_MSG(same_text(text, BUSY_JSON), "got\n%s\nwant\n%s", text ? text : "(null)", BUSY_JSON);
  free(text);
  CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, "cifar10", "paper"));
  text = wcmi_task_config_json(&c, "train-model");
  CHECK_MSG(same_text(text, CIFAR_PAPER_JSON), "got\n%s\nwant\n%s", text ? text : "(null)", CIFAR_PAPER_JSON);
  free(text);
}

/* Every field with a key is written and read back to the same value, in both directions of each
 * field (default and changed). */
static void test_config_json_round_trips_every_field(void) {
  wcmi_task_cfg a[2];
  CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &a[0], "svhn", "paper"));
  busy_cfg(&a[1]);
  /* Settings added after runs existed (sparse) are written only when they differ from the value
   * those runs had: off in the paper defaults, on in the busy configuration. */
  a[1].lr_schedule = WCMI_LR_COSINE;
  a[1].warmup_epochs = 1.5;
  a[1].probe_robust_steps = 150;
  a[1].precision = WCMI_GEMM_BF16;
  for (int k = 0; k < 2; k++) {
    char *text = wcmi_task_config_json(&a[k], "train-classifier");
    CHECK(text != NULL);
    if (!text) return;
    wcmi_task_cfg b;
    wcmi_json *keep = NULL;
    char task[64];
    CHECK_OK(&ctx, wcmi_task_config_parse(&ctx, "config.json", text, strlen(text), &b, task, sizeof task, &keep));
    CHECK(!strcmp(task, "train-classifier"));
    int keys = 0;
    for (int i = 0; i < WCMI_CFG_NFIELDS; i++) {
      const wcmi_cfg_field *f = wcmi_cfg_field_at(i);
      if (!f->key) continue;
      keys++;
      char want[128], got[128];
      wcmi_cfg_value_text(&a[k], f, want, sizeof want);
      wcmi_cfg_value_text(&b, f, got, sizeof got);
      CHECK_MSG(wcmi_cfg_same(&a[k], &b, f), "config %d: %s written %s, read back %s", k, f->key, want, got);
      char quoted[64];
      snprintf(quoted, sizeof quoted, "\"%s\":", f->key);
      const int absent = (k == 0 && f->type == WCMI_FIELD_STR && !wcmi_cfg_get_str(&a[k], f)) || (k == 0 && f->sparse);
      CHECK_MSG(absent ? strstr(text, quoted) == NULL : strstr(text, quoted) != NULL, "config %d: key %s %s", k, f->key,
                absent ? "written at its legacy value" : "not written");
    }
    CHECK(keys == 38);
    wcmi_json_free(keep);
    free(text);
  }
}

/* Keys added after the first runs may be absent: the run had the value of the time. */
static void test_config_json_without_later_keys_reads_the_legacy_values(void) {
  const char *old = "{\"task\": \"train-classifier\", \"profile\": \"quick\", \"data\": \"mnist\", \"train_subset\": 0, "
                    "\"test_subset\": 0, \"epochs\": 2, \"batch_size\": 64, \"lr\": 0.001, \"seed\": 3, \"hsize\": 8, "
                    "\"estimator\": \"dv\", \"measure\": \"jsd\", \"grad_path\": \"encoder\", \"head\": \"none\", "
                    "\"worst\": false, \"robust\": true, \"attack\": {\"norm\": \"linf\", \"eps\": 0.3, \"step\": 0.1, "
                    "\"steps\": 10, \"random_start\": false, \"restarts\": 0, \"use_best\": true, "
                    "\"eps_fade_epochs\": 0}, \"max_batches\": 0, \"eval_batches\": 0}";
  wcmi_task_cfg c;
  wcmi_json *keep = NULL;
  char task[64];
  CHECK_OK(&ctx, wcmi_task_config_parse(&ctx, "config.json", old, strlen(old), &c, task, sizeof task, &keep));
  CHECK(c.head_fit == WCMI_HEAD_FIT_ONLINE && c.select == WCMI_SELECT_AUTO && c.encoder == WCMI_ENCODER_BASIC);
  CHECK(c.head == WCMI_HEAD_NONE && c.robust == 1 && c.batch_size == 64 && c.seed == 3 && c.probe_every == 0);
  CHECK(!c.model && !c.data_dir);
  wcmi_json_free(keep);
}

/* Each ranged field: its bounds pass, a value beyond either fails with a message naming it; the same
 * value in config.json is refused naming the file. */
static void test_every_range_of_the_table_is_enforced(void) {
  int ranged = 0;
  for (int i = 0; i < WCMI_CFG_NFIELDS; i++) {
    const wcmi_cfg_field *f = wcmi_cfg_field_at(i);
    if (!f->ranged) continue;
    ranged++;
    wcmi_task_cfg c;
    CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, "mnist", "quick"));
    const double below = f->lo_open ? f->lo : f->lo - 1, inside = f->lo_open ? f->hi : f->lo;
    wcmi_cfg_set_real(&c, f, inside);
    CHECK_MSG(wcmi_task_cfg_check(&ctx, &c) == WCMI_OK, "%s = %g refused: %s", f->flag, inside, ctx.msg);
    wcmi_cfg_set_real(&c, f, below);
    CHECK_MSG(wcmi_task_cfg_check(&ctx, &c) == WCMI_EINVAL && strstr(ctx.msg, f->flag), "%s = %g: %s", f->flag, below,
              ctx.msg);
    if (f->key && !f->in_attack) {
      char *text = wcmi_task_config_json(&c, "train-encoder");
      wcmi_task_cfg back;
      wcmi_json *keep = NULL;
      char task[64];
      CHECK(text && wcmi_task_config_parse(&ctx, "run/config.json", text, strlen(text), &back, task, sizeof task,
                                           &keep) == WCMI_EFORMAT);
      CHECK_MSG(strstr(ctx.msg, "run/config.json") && strstr(ctx.msg, f->key), "%s", ctx.msg);
      free(text);
    }
    if (!isinf(f->hi)) {
      CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, "mnist", "quick"));
      wcmi_cfg_set_real(&c, f, f->hi * 2 + 1);
      CHECK_MSG(wcmi_task_cfg_check(&ctx, &c) == WCMI_EINVAL, "%s = %g accepted", f->flag, f->hi * 2 + 1);
    }
  }
  CHECK(ranged >= 12);
  /* The bounds the command line and config.json had before the table. */
  const struct {
    int id;
    double v;
  } OUTSIDE[] = {{WCMI_CFG_EPOCHS, 1000001}, {WCMI_CFG_BATCH_SIZE, 1},     {WCMI_CFG_BATCH_SIZE, 65537},
                 {WCMI_CFG_HSIZE, 16385},    {WCMI_CFG_FREE_REPLAYS, 65}, {WCMI_CFG_PROBE_EVERY, 1.5e7},
                 {WCMI_CFG_LR, 0},           {WCMI_CFG_LR, 1.5e6},        {WCMI_CFG_EVAL_BATCHES, -1}};
  for (size_t k = 0; k < sizeof OUTSIDE / sizeof OUTSIDE[0]; k++) {
    const wcmi_cfg_field *f = wcmi_cfg_field_at(OUTSIDE[k].id);
    wcmi_task_cfg c;
    CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, "mnist", "paper"));
    wcmi_cfg_set_real(&c, f, OUTSIDE[k].v);
    CHECK_MSG(wcmi_task_cfg_check(&ctx, &c) == WCMI_EINVAL, "%s = %g accepted", f->flag, OUTSIDE[k].v);
  }
}

/* The table's names are the library's names for the same enums. */
static void test_choice_names_agree_with_the_library(void) {
  const wcmi_cfg_field *est = wcmi_cfg_field_at(WCMI_CFG_ESTIMATOR), *mea = wcmi_cfg_field_at(WCMI_CFG_MEASURE);
  for (int k = 0; k < est->n_names; k++) CHECK(!strcmp(est->names[k], wcmi_mi_estimator_name((wcmi_mi_estimator)k)));
  CHECK(!strcmp(wcmi_mi_estimator_name((wcmi_mi_estimator)est->n_names), "?"));
  for (int k = 0; k < mea->n_names; k++) CHECK(!strcmp(mea->names[k], wcmi_mi_measure_name((wcmi_mi_measure)k)));
  CHECK(!strcmp(wcmi_mi_measure_name((wcmi_mi_measure)mea->n_names), "?"));
  const wcmi_cfg_field *head = wcmi_cfg_field_at(WCMI_CFG_HEAD), *enc = wcmi_cfg_field_at(WCMI_CFG_ENCODER);
  for (int k = 0; k < head->n_names; k++) CHECK(!strcmp(head->names[k], wcmi_head_name((wcmi_head_kind)k)));
  for (int k = 0; k < enc->n_names; k++) CHECK(!strcmp(enc->names[k], wcmi_encoder_name((wcmi_encoder_kind)k)));
  CHECK(wcmi_cfg_field_choice(head, "none", 1) < 0 && wcmi_cfg_field_choice(head, "none", 0) == WCMI_HEAD_NONE);
  char names[128];
  wcmi_cfg_field_names(wcmi_cfg_field_at(WCMI_CFG_HEAD_FIT), 1, names, sizeof names);
  CHECK_MSG(!strcmp(names, "auto, cached or online"), "%s", names);
}

/* Each flag is defined once, and the attack object of config.json is what wcmi_task_attack_json writes. */
static void test_flags_are_unique_and_the_attack_json_is_the_tables(void) {
  for (int i = 0; i < WCMI_CFG_NFIELDS; i++) {
    const wcmi_cfg_field *f = wcmi_cfg_field_at(i);
    CHECK_MSG(f->flag && f->help && f->group && !(f->group & (f->group - 1)), "field %d", i);
    int neg = -1;
    CHECK_MSG(wcmi_cfg_field_by_flag(f->flag, strlen(f->flag), &neg) == f && neg == 0, "%s", f->flag);
    if (f->no_flag) CHECK(wcmi_cfg_field_by_flag(f->no_flag, strlen(f->no_flag), &neg) == f && neg == 1);
    CHECK(strcmp(wcmi_cfg_group_name(f->group), "?"));
  }
  wcmi_task_cfg c;
  busy_cfg(&c);
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_task_attack_json(&w, &c.attack);
  wcmi_jsonw_end_object(&w);
  CHECK_OK(&ctx, wcmi_jsonw_finish(&ctx, &w));
  const char *want = "{\n  \"norm\": \"l2\",\n  \"eps\": 0.100000001,\n  \"step\": 0.0199999996,\n  \"steps\": 10,\n"
                     "  \"random_start\": true,\n  \"restarts\": 2,\n  \"use_best\": true\n}";
  CHECK_MSG(!strcmp(wcmi_jsonw_text(&w), want), "got\n%s", wcmi_jsonw_text(&w));
  wcmi_jsonw_free(&w);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  RUN(test_defaults_are_the_papers_per_dataset_and_profile);
  RUN(test_fast_profile_keeps_the_papers_data_and_threat_model);
  RUN(test_training_attack_of_each_profile);
  RUN(test_config_json_is_the_text_runs_already_hold);
  RUN(test_config_json_round_trips_every_field);
  RUN(test_config_json_without_later_keys_reads_the_legacy_values);
  RUN(test_every_range_of_the_table_is_enforced);
  RUN(test_choice_names_agree_with_the_library);
  RUN(test_flags_are_unique_and_the_attack_json_is_the_tables);
  return wt_finish();
}
