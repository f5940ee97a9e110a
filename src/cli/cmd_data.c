/* wcmi data: inspect datasets. `info` prints JSON statistics of a split; `show` writes a PNG grid
 * of samples (optionally augmented as the training loader would). */
#include "cli/task_cli.h"
#include "wcmi/core.h"
#include "wcmi/data.h"
#include "wcmi/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *DATA_SYNOPSIS = "data <info|show> --data NAME [options]";
static const char *DATA_HELP = "dataset (required): mnist, fashion-mnist, svhn, cifar10";

static void print_json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') printf("\\%c", ch);
    else if (ch < 0x20) printf("\\u%04x", ch);
    else putchar(ch);
  }
  putchar('"');
}

static void data_usage(FILE *f) {
  fprintf(f,
          "usage: wcmi %s\n\n"
          "Inspect a dataset (mnist, fashion-mnist, svhn, cifar10).\n\n"
          "subcommands:\n"
          "  info   print counts, shape, label histogram, pixel mean and std as JSON\n"
          "  show   write a PNG grid of samples\n\n"
          "See wcmi data info --help and wcmi data show --help.\n",
          DATA_SYNOPSIS);
}

/* Options shared by both subcommands. */
typedef struct common_opts {
  const char *data, *dir, *split;
  long long train_subset, test_subset, seed;
} common_opts;

static int load_split(const char *cmd, const common_opts *o, wcmi_dataset *d, double *seconds) {
  if (!o->data) {
    fprintf(stderr, "wcmi %s: --data NAME is required (mnist, fashion-mnist, svhn, cifar10)\n", cmd);
    return 2;
  }
  if (!wcmi_data_name_valid(o->data)) {
    fprintf(stderr, "wcmi %s: unknown dataset '%s' (expected mnist, fashion-mnist, svhn or cifar10)\n", cmd, o->data);
    return 2;
  }
  int test = 0;
  if (!strcmp(o->split, "test")) test = 1;
  else if (strcmp(o->split, "train")) {
    fprintf(stderr, "wcmi %s: --split must be train or test, not '%s'\n", cmd, o->split);
    return 2;
  }
  if (o->train_subset < 0 || o->test_subset < 0) {
    fprintf(stderr, "wcmi %s: subset sizes must be >= 0\n", cmd);
    return 2;
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_data_options opt = {o->data, o->dir, o->train_subset, o->test_subset, 0, (uint64_t)o->seed};
  double t0 = wcmi_now();
  int rc = wcmi_data_open(&ctx, &opt, test ? NULL : d, NULL, test ? d : NULL);
  *seconds = wcmi_now() - t0;
  if (rc) {
    fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(&ctx));
    return 1;
  }
  return 0;
}

static int cmd_info(int argc, char **argv) {
  common_opts o = {NULL, NULL, "train", 0, 0, 0};
  wcmi_opt opts[] = {
      task_cli_opt(WCMI_CFG_DATA, &o.data, DATA_HELP),
      task_cli_opt(WCMI_CFG_DATA_DIR, &o.dir, NULL),
      {"--split", WCMI_OPT_STR, &o.split, "SPLIT", "train (default) or test", 0},
      task_cli_opt(WCMI_CFG_TRAIN_SUBSET, &o.train_subset, NULL),
      task_cli_opt(WCMI_CFG_TEST_SUBSET, &o.test_subset, NULL),
      task_cli_opt(WCMI_CFG_SEED, &o.seed, "seed for subset selection (default 0)"),
      {0},
  };
  WCMI_CLI_PARSE("data info", "data info --data NAME [--data-dir DIR] [--split train|test]",
                 "Print counts, shape, label histogram, pixel mean and std of one split as JSON.", opts, argc, argv,
                 NULL);
  wcmi_dataset d;
  double secs = 0;
  int rc = load_split("data info", &o, &d, &secs);
  if (rc) return rc;
  wcmi_dataset_stats s;
  wcmi_dataset_compute_stats(&d, &s);
  printf("{\"dataset\": ");
  print_json_string(d.name);
  printf(", \"dir\": ");
  print_json_string(o.dir ? o.dir : wcmi_data_default_dir(o.data));
  printf(", \"split\": \"%s\", \"count\": %lld, \"shape\": [%d, %d, %d], \"num_classes\": %d, \"label_histogram\": [",
         o.split, (long long)d.n, d.c, d.h, d.w, d.num_classes);
  for (int k = 0; k < d.num_classes; k++) printf("%s%lld", k ? ", " : "", (long long)s.label_counts[k]);
  printf("], \"pixel_mean\": %.6f, \"pixel_std\": %.6f, \"channel_mean\": [", s.pixel_mean, s.pixel_std);
  int nc = d.c < 4 ? d.c : 4;
  for (int k = 0; k < nc; k++) printf("%s%.6f", k ? ", " : "", s.channel_mean[k]);
  printf("], \"channel_std\": [");
  for (int k = 0; k < nc; k++) printf("%s%.6f", k ? ", " : "", s.channel_std[k]);
  printf("], \"load_seconds\": %.3f}\n", secs);
  wcmi_dataset_free(&d);
  return 0;
}

static int cmd_show(int argc, char **argv) {
  common_opts o = {NULL, NULL, "train", 0, 0, 0};
  int n = 64, cols = 0, pad = 2, shuffle = 0, augment = 0;
  const char *outpath = NULL;
  wcmi_opt opts[] = {
      task_cli_opt(WCMI_CFG_DATA, &o.data, DATA_HELP),
      task_cli_opt(WCMI_CFG_DATA_DIR, &o.dir, NULL),
      {"--split", WCMI_OPT_STR, &o.split, "SPLIT", "train (default) or test", 0},
      {"-n", WCMI_OPT_INT, &n, "N", "number of samples (default 64)", 0},
      {"-o", WCMI_OPT_STR, &outpath, "PATH", "output PNG file (required)", 0},
      {"--cols", WCMI_OPT_INT, &cols, "C", "tiles per row (default ceil(sqrt(n)))", 0},
      {"--pad", WCMI_OPT_INT, &pad, "P", "pixels between tiles (default 2)", 0},
      {"--shuffle", WCMI_OPT_FLAG, &shuffle, NULL, "take a seeded random sample instead of the first n", 0},
      {"--augment", WCMI_OPT_FLAG, &augment, NULL, "apply the training augmentation (crop + flip)", 0},
      task_cli_opt(WCMI_CFG_SEED, &o.seed, "seed for --shuffle and --augment (default 0)"),
      {0},
  };
  WCMI_CLI_PARSE("data show", "data show --data NAME -n 64 -o grid.png [--split train|test]",
                 "Write a PNG grid of the first (or, with --shuffle, random) n samples of a split.", opts, argc, argv,
                 NULL);
  if (!outpath) {
    fprintf(stderr, "wcmi data show: -o PATH is required\n");
    return 2;
  }
  if (n <= 0 || n > 10000 || cols < 0 || pad < 0 || pad > 64) {
    fprintf(stderr, "wcmi data show: need 0 < n <= 10000, cols >= 0, 0 <= pad <= 64\n");
    return 2;
  }
  wcmi_dataset d;
  double secs = 0;
  int rc = load_split("data show", &o, &d, &secs);
  if (rc) return rc;
  if (n > d.n) n = (int)d.n;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  /* The loader gives exactly the samples (and augmentations) training would see in epoch 0. */
  wcmi_loader_config cfg;
  wcmi_loader_config_default(&cfg);
  cfg.batch_size = n;
  cfg.shuffle = shuffle;
  cfg.seed = (uint64_t)o.seed;
  cfg.augment = augment ? WCMI_AUG_CIFAR : 0;
  wcmi_loader L;
  int gw = 0, gh = 0, count = 0;
  wcmi_image_grid_size(n, d.h, d.w, cols, pad, &gw, &gh);
  float *x = wcmi_alloc(&ctx, (size_t)n * (size_t)wcmi_dataset_sample_size(&d), sizeof(float));
  uint8_t *grid = wcmi_alloc(&ctx, (size_t)gw * (size_t)gh * (size_t)d.c, 1);
  rc = (!x || !grid) ? WCMI_ENOMEM : wcmi_loader_init(&ctx, &L, &d, &cfg);
  if (!rc) {
    rc = wcmi_loader_next(&ctx, &L, x, NULL, &count) == 1 ? WCMI_OK : WCMI_EINVAL;
    wcmi_loader_free(&L);
  }
  if (!rc && d.c != 1 && d.c != 3) rc = wcmi_fail(&ctx, WCMI_EINVAL, "%s: cannot show %d-channel images", d.name, d.c);
  if (!rc) rc = wcmi_image_grid(&ctx, x, count, d.c, d.h, d.w, cols, pad, 255, grid);
  if (!rc) rc = wcmi_png_write(&ctx, outpath, grid, gw, gh, d.c);
  if (rc) {
    fprintf(stderr, "wcmi data show: %s\n", wcmi_errmsg(&ctx));
  } else {
    printf("{\"output\": ");
    print_json_string(outpath);
    printf(", \"dataset\": \"%s\", \"split\": \"%s\", \"images\": %d, \"width\": %d, \"height\": %d}\n", d.name,
           o.split, count, gw, gh);
  }
  wcmi_free(x);
  wcmi_free(grid);
  wcmi_dataset_free(&d);
  return rc ? 1 : 0;
}

int wcmi_cmd_data(int argc, char **argv) {
  if (argc < 2) {
    data_usage(stderr);
    return 2;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
    data_usage(stdout);
    return 0;
  }
  if (!strcmp(sub, "info")) return cmd_info(argc - 1, argv + 1);
  if (!strcmp(sub, "show")) return cmd_show(argc - 1, argv + 1);
  fprintf(stderr, "wcmi data: unknown subcommand '%s' (expected info or show)\n", sub);
  return 2;
}
