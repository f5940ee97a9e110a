/* encode: the representations of a model on one split, written as .npy for analysis outside wcmi
 * (docs/tasks.md): the encoder's z or, with a classifier head, the logits, row i for sample i, with
 * the labels beside them. */
#include "train/eval.h"

#include "dist/dist_train.h"
#include "wcmi/dist.h"

#include <string.h>

int wcmi_task_encode(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, wcmi_split split, wcmi_repr_kind repr, const char *out_path,
                     const char *labels_path, char **summary) {
  *summary = NULL;
  wcmi_model m;
  int rc = eval_load_model(ctx, cfg, repr == WCMI_REPR_LOGITS, &m);
  if (rc) return rc;
  if (repr == WCMI_REPR_AUTO) repr = m.classifier ? WCMI_REPR_LOGITS : WCMI_REPR_Z;
  wcmi_dataset d;
  memset(&d, 0, sizeof d);
  wcmi_data_options o = {cfg->data, cfg->data_dir, cfg->train_subset, cfg->test_subset, 0, cfg->seed};
  rc = split == WCMI_SPLIT_TRAIN ? wcmi_data_open(ctx, &o, &d, NULL, NULL) : wcmi_data_open(ctx, &o, NULL, NULL, &d);
  wcmi_net *last = repr == WCMI_REPR_LOGITS ? m.classifier : m.encoder;
  wcmi_shape os = wcmi_net_out_shape(last);
  const int64_t cols = wcmi_shape_numel(&os), D = rc ? 0 : wcmi_dataset_sample_size(&d);
  const int B = cfg->batch_size;
  float *rows = NULL; /* (n, cols) */
  if (!rc && d.n <= 0) rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: the split has no samples", cfg->data);
  if (!rc && !(rows = wcmi_alloc(ctx, (size_t)d.n * (size_t)cols, sizeof(float)))) rc = ctx->status;
  /* Data-parallel: the ranks share the batches; every rank receives every row (bit for bit one
   * process's: eval mode) and rank 0 writes the files. */
  wcmi_net *nets[2] = {m.encoder, m.classifier};
  if (!rc) rc = dist_forward_rows(ctx, nets, repr == WCMI_REPR_LOGITS ? 2 : 1, d.images, d.n, D, B, cols, d.name, rows);
  if (!rc && !wcmi_all_finite(rows, d.n * cols))
    rc = wcmi_fail(ctx, WCMI_ENUMERIC, "%s: the representations contain NaN/Inf", cfg->model);
  const int root = wcmi_dist_rank(ctx->dist) == 0;
  if (!rc && root) rc = wcmi_npy_write_f32_2d(ctx, out_path, rows, d.n, cols);
  if (!rc && root) rc = wcmi_npy_write_i32_1d(ctx, labels_path, d.labels, d.n);
  if (!rc) {
    wcmi_jsonw w;
    wcmi_jsonw_init_buffer(&w, 2);
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "task", "encode");
    wcmi_jsonw_kv_string(&w, "model", cfg->model);
    wcmi_jsonw_kv_string(&w, "dataset", cfg->data);
    wcmi_jsonw_kv_string(&w, "split", split == WCMI_SPLIT_TRAIN ? "train" : "test");
    wcmi_jsonw_kv_string(&w, "repr", repr == WCMI_REPR_LOGITS ? "logits" : "z");
    wcmi_jsonw_kv_int(&w, "rows", d.n);
    wcmi_jsonw_kv_int(&w, "cols", cols);
    wcmi_jsonw_kv_string(&w, "output", out_path);
    wcmi_jsonw_kv_string(&w, "labels", labels_path);
    wcmi_jsonw_end_object(&w);
    rc = wcmi_jsonw_finish(ctx, &w);
    if (!rc && !(*summary = strdup(wcmi_jsonw_text(&w)))) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    wcmi_jsonw_free(&w);
  }
  wcmi_free(rows);
  wcmi_dataset_free(&d);
  wcmi_model_free(&m);
  return rc;
}
