/* wcmi saliency: a PNG grid of input-gradient maps (PAPER.md section 6), row 0 the test images, then
 * one row per model. The maths is in src/report/saliency.c. */
#include "cli/task_cli.h"
#include "wcmi/data.h"
#include "wcmi/image.h"
#include "wcmi/io.h"
#include "wcmi/report.h"

#include <stdlib.h>
#include <string.h>

static const char *SYNOPSIS =
    "saliency --model FILE [--model FILE ...] --loss mi|ce|feature [--layer NAME --channel K] [--data NAME] -n 8 -o "
    "saliency.png";
static const char *DESCRIPTION =
    "Gradient of a loss with respect to the first n test images, one row per model: mi = the MI loss of the "
    "model's encoder and MI estimators (train-encoder results), ce = cross-entropy of the classifier on the true "
    "labels (models with a head), feature = mean activation of channel K of encoder layer NAME (layer0.0, layer1, "
    "layer2.1, layer4.0 ...). Eval mode. Each map is |gradient| summed over channels, divided by its own 99th "
    "percentile and clipped to [0,1] (docs/report.md). Prints a JSON summary on stdout.";

typedef struct saliency_opts {
  wcmi_cli_strlist models;
  const char *loss, *layer, *data, *data_dir, *out, *estimator, *grad_path;
  int n, channel, scale, pad, offset, threads;
} saliency_opts;

static int fail(wcmi_ctx *ctx) {
  fprintf(stderr, "wcmi saliency: %s\n", wcmi_errmsg(ctx));
  return 1;
}

static int usage(const char *msg) {
  fprintf(stderr, "wcmi saliency: %s (see wcmi saliency --help)\n", msg);
  return 2;
}

/* Loads the test images [offset, offset + n). */
static int load_images(wcmi_ctx *ctx, const saliency_opts *o, wcmi_dataset *d) {
  wcmi_data_options opt = {o->data, o->data_dir, 0, 0, 0, 0};
  int rc = wcmi_data_open(ctx, &opt, NULL, NULL, d);
  if (rc) return rc;
  if ((int64_t)o->offset + o->n > d->n)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s test split has %lld images, fewer than --offset %d + -n %d", o->data,
                     (long long)d->n, o->offset, o->n);
  return WCMI_OK;
}

/* Prints the summary and writes it beside the PNG (X.png -> X.json), where wcmi report reads the
 * row captions. */
static int print_summary(wcmi_ctx *ctx, const saliency_opts *o, int gw, int gh, const wcmi_dataset *d) {
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "output", o->out);
  wcmi_jsonw_kv_string(&w, "loss", o->loss);
  if (!strcmp(o->loss, "feature")) {
    wcmi_jsonw_kv_string(&w, "layer", o->layer);
    wcmi_jsonw_kv_int(&w, "channel", o->channel);
  }
  wcmi_jsonw_kv_string(&w, "dataset", d->name);
  wcmi_jsonw_kv_int(&w, "images", o->n);
  wcmi_jsonw_kv_int(&w, "offset", o->offset);
  wcmi_jsonw_key(&w, "models");
  wcmi_jsonw_begin_array(&w);
  for (int i = 0; i < o->models.n; i++) wcmi_jsonw_string(&w, o->models.v[i]);
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_kv_int(&w, "width", gw);
  wcmi_jsonw_kv_int(&w, "height", gh);
  wcmi_jsonw_kv_string(&w, "normalization", "sum_c |grad| / per-image 99th percentile, clipped to [0,1]");
  wcmi_jsonw_end_object(&w);
  int rc = wcmi_jsonw_finish(ctx, &w);
  size_t n = strlen(o->out);
  if (!rc && n > 4 && !strcmp(o->out + n - 4, ".png")) {
    char *side = malloc(n + 2);
    if (!side) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    else {
      memcpy(side, o->out, n - 4);
      memcpy(side + n - 4, ".json", 6);
      rc = wcmi_atomic_write(ctx, side, wcmi_jsonw_text(&w), strlen(wcmi_jsonw_text(&w)));
      free(side);
    }
  }
  if (!rc) printf("%s\n", wcmi_jsonw_text(&w));
  wcmi_jsonw_free(&w);
  return rc;
}

/* One model's maps (N, H, W) into map. */
static int model_maps(wcmi_ctx *ctx, const saliency_opts *o, const wcmi_saliency_cfg *cfg, const char *path,
                      const wcmi_dataset *d, float *grad, float *map, float *scratch) {
  wcmi_model m;
  memset(&m, 0, sizeof m);
  int rc = wcmi_model_load(ctx, path, o->n, &m, NULL);
  if (rc) return rc;
  if (m.in.C != d->c || m.in.H != d->h || m.in.W != d->w) {
    rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: model input (%d, %d, %d) does not match %s images (%d, %d, %d)", path, m.in.C,
                   m.in.H, m.in.W, d->name, d->c, d->h, d->w);
  } else {
    const int64_t D = wcmi_dataset_sample_size(d);
    rc = wcmi_saliency_gradient(ctx, &m, cfg, d->images + (int64_t)o->offset * D, d->labels + o->offset, o->n, grad);
    if (rc) {
      /* Name the model file in front of the library's message. */
      char msg[sizeof ctx->msg];
      snprintf(msg, sizeof msg, "%s", wcmi_errmsg(ctx));
      wcmi_fail(ctx, rc, "%s: %s", path, msg);
    } else {
      wcmi_saliency_normalize(grad, o->n, d->c, d->h, d->w, map, scratch);
    }
  }
  wcmi_model_free(&m);
  return rc;
}

static int run(wcmi_ctx *ctx, saliency_opts *o, const wcmi_saliency_cfg *cfg) {
  wcmi_dataset d;
  memset(&d, 0, sizeof d);
  int rc = load_images(ctx, o, &d);
  if (rc) return rc;
  const int M = o->models.n, C = d.c, H = d.h, W = d.w;
  const int64_t P = (int64_t)H * W;
  float *grad = wcmi_alloc(ctx, (size_t)o->n * (size_t)C * (size_t)P, sizeof(float));
  float *maps = wcmi_alloc(ctx, (size_t)M * (size_t)o->n * (size_t)P, sizeof(float));
  float *scratch = wcmi_alloc(ctx, (size_t)P, sizeof(float));
  int gw, gh;
  wcmi_saliency_grid_size(o->n, H, W, M, o->scale, o->pad, &gw, &gh);
  uint8_t *pix = wcmi_alloc(ctx, (size_t)gw * (size_t)gh, 3);
  rc = (grad && maps && scratch && pix) ? WCMI_OK : ctx->status;
  const float *rows[WCMI_CLI_MAX_MULTI];
  for (int k = 0; !rc && k < M; k++) {
    rows[k] = maps + (int64_t)k * o->n * P;
    rc = model_maps(ctx, o, cfg, o->models.v[k], &d, grad, maps + (int64_t)k * o->n * P, scratch);
  }
  if (!rc)
    rc = wcmi_saliency_grid(ctx, d.images + (int64_t)o->offset * wcmi_dataset_sample_size(&d), o->n, C, H, W, rows, M,
                            o->scale, o->pad, pix);
  if (!rc) rc = wcmi_png_write(ctx, o->out, pix, gw, gh, 3);
  if (!rc) rc = print_summary(ctx, o, gw, gh, &d);
  wcmi_free(grad);
  wcmi_free(maps);
  wcmi_free(scratch);
  wcmi_free(pix);
  wcmi_dataset_free(&d);
  return rc;
}

/* --data defaults to the dataset recorded in the first model file (the rule of every command that
 * reads a model, task_cli_model_dataset). */
static int default_data(wcmi_ctx *ctx, saliency_opts *o, char *buf, size_t n) {
  int rc = task_cli_model_dataset(ctx, o->models.v[0], buf, n);
  if (!rc && !buf[0]) rc = wcmi_fail(ctx, WCMI_EFORMAT, "%s: no dataset in the metadata: give --data", o->models.v[0]);
  o->data = buf;
  return rc;
}

/* The table's --model, taken once per row. */
static wcmi_opt repeatable(wcmi_opt o) {
  o.kind = WCMI_OPT_MULTI;
  return o;
}

int wcmi_cmd_saliency(int argc, char **argv) {
  saliency_opts o;
  memset(&o, 0, sizeof o);
  o.loss = "mi";
  o.layer = "layer1";
  o.n = 8;
  o.scale = 3;
  o.pad = 2;
  wcmi_opt opts[] = {
      repeatable(task_cli_opt(WCMI_CFG_MODEL, &o.models, "model file (.safetensors); repeat for one row per model")),
      {"--loss", WCMI_OPT_STR, &o.loss, "L", "mi (default), ce or feature", 0},
      {"--layer", WCMI_OPT_STR, &o.layer, "NAME", "feature loss: encoder layer (default layer1: 2nd conv block)", 0},
      {"--channel", WCMI_OPT_INT, &o.channel, "K", "feature loss: channel of the layer (default 0)", 0},
      task_cli_opt(WCMI_CFG_ESTIMATOR, &o.estimator, "mi loss: dv (default), fd, nce"),
      task_cli_opt(WCMI_CFG_GRAD_PATH, &o.grad_path, "mi loss: encoder (default, the paper's code) or both"),
      task_cli_opt(WCMI_CFG_DATA, &o.data, "dataset (default: the first model's)"),
      task_cli_opt(WCMI_CFG_DATA_DIR, &o.data_dir, NULL),
      {"-n", WCMI_OPT_INT, &o.n, "N", "number of test images (default 8)", 0},
      {"--offset", WCMI_OPT_INT, &o.offset, "K", "first test image (default 0)", 0},
      {"--scale", WCMI_OPT_INT, &o.scale, "S", "pixel magnification of each tile (default 3)", 0},
      {"--pad", WCMI_OPT_INT, &o.pad, "P", "white pixels between tiles (default 2)", 0},
      task_cli_opt(WCMI_CFG_THREADS, &o.threads, NULL),
      {"-o", WCMI_OPT_STR, &o.out, "PNG", "output PNG file (required)", 0},
      {0}};
  WCMI_CLI_PARSE("saliency", SYNOPSIS, DESCRIPTION, opts, argc, argv, NULL);
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_saliency_cfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.mi = wcmi_mi_default_cfg();
  if (!o.models.n) return usage("--model FILE is required");
  if (!o.out) return usage("-o PNG is required");
  if (o.n < 1 || o.n > 256) return usage("-n must be in [1, 256]");
  if (o.offset < 0 || o.scale < 1 || o.scale > 16 || o.pad < 0 || o.pad > 64 || o.threads < 0)
    return usage("need --offset >= 0, --scale in [1, 16], --pad in [0, 64], --threads >= 0");
  if (wcmi_saliency_parse_loss(&ctx, o.loss, &cfg.loss) ||
      (o.estimator && wcmi_mi_parse_estimator(&ctx, o.estimator, &cfg.mi.estimator))) {
    fprintf(stderr, "wcmi saliency: %s\n", wcmi_errmsg(&ctx));
    return 2;
  }
  if (o.grad_path && strcmp(o.grad_path, "encoder") && strcmp(o.grad_path, "both"))
    return usage("--grad-path must be encoder or both");
  cfg.grad_both = o.grad_path && !strcmp(o.grad_path, "both");
  cfg.layer = o.layer;
  cfg.channel = o.channel;
  if (cfg.loss == WCMI_SALIENCY_MI && o.n < 2) return usage("--loss mi needs -n >= 2 (the MI loss is a batch loss)");
  if (o.data && !wcmi_data_name_valid(o.data)) return usage("unknown --data (mnist, fashion-mnist, svhn, cifar10)");
  if (o.threads) wcmi_set_threads(&ctx, o.threads);
  char data_buf[64];
  if (!o.data && default_data(&ctx, &o, data_buf, sizeof data_buf)) return fail(&ctx);
  return run(&ctx, &o, &cfg) ? fail(&ctx) : 0;
}
