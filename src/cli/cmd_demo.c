/* wcmi demo: the README's main job. */
#include "cli/cli.h"
#include "cli/task_cli.h"
#include "wcmi/demo.h"

#include <stdlib.h>
#include <unistd.h>

int wcmi_cmd_demo(int argc, char **argv) {
  wcmi_demo_cfg d;
  wcmi_demo_defaults(&d);
  long long seed = 0;
  int threads = 0, progress = 0, json = 0;
  const char *conv_algo = NULL;
  wcmi_opt opts[] = {
      {"--out", WCMI_OPT_STR, &d.out_dir, "DIR", "where the runs go (default runs/demo)", 0},
      {"--data-dir", WCMI_OPT_STR, &d.data_dir, "DIR", "Fashion-MNIST files (default: Debian's dataset-fashion-mnist)", 0},
      {"--train-subset", WCMI_OPT_I64, &d.train_subset, "N", "class-balanced training images (default 10000)", 0},
      {"--test-subset", WCMI_OPT_I64, &d.test_subset, "N", "class-balanced test images (default 1000)", 0},
      {"--encoder-epochs", WCMI_OPT_INT, &d.encoder_epochs, "E", "epochs for each encoder (default 4)", 0},
      {"--head-epochs", WCMI_OPT_INT, &d.head_epochs, "E", "epochs for each classifier head (default 6)", 0},
      {"--head-lr", WCMI_OPT_FLOAT, &d.head_lr, "LR", "Adam learning rate of the heads (default 2e-3)", 0},
      {"--mi-epochs", WCMI_OPT_INT, &d.mi_epochs, "E", "epochs for each fresh MI critic (default 2)", 0},
      {"--hsize", WCMI_OPT_INT, &d.hsize, "H", "MI critic width (default 256)", 0},
      {"--seed", WCMI_OPT_I64, &seed, "S", "random seed (default 0)", 0},
      {"--threads", WCMI_OPT_INT, &threads, "T", "threads (default: WCMI_NUM_THREADS or all cores)", 0},
      {"--conv-algo", WCMI_OPT_STR, &conv_algo, "A", "convolutions: auto (default: Winograd where it saves work) or gemm", 0},
      {"--progress", WCMI_OPT_FLAG, &progress, NULL, "progress on stderr", 0},
      {"--json", WCMI_OPT_FLAG, &json, NULL, "print the JSON summary instead of the table", 0},
      {"--max-batches", WCMI_OPT_INT, &d.max_batches, "N", "cap batches per epoch (smoke tests)", 0},
      {"--eval-batches", WCMI_OPT_INT, &d.eval_batches, "N", "cap evaluation batches (smoke tests)", 0},
      {0}};
  WCMI_CLI_PARSE("demo", "[options]",
                 "The paper's Fashion-MNIST comparison on the quick profile: a normal-MI (DIM) and a worst-case-MI "
                 "encoder, a standard linear and MLP head on each, natural and PGD accuracy (eps 0.1, 10 steps of "
                 "0.02; then with random start and 5 restarts), and each encoder's normal and worst-case MI, RV and "
                 "Fano bound, printed as one table (JSON in OUT/summary.json).",
                 opts, argc, argv, NULL);
  if (d.train_subset < 256 || d.test_subset < 128 || d.encoder_epochs < 1 || d.head_epochs < 1 || d.mi_epochs < 1 ||
      d.hsize < 1 || !(d.head_lr > 0) || threads < 0) {
    fprintf(stderr, "wcmi demo: need subsets >= 256 / 128, epochs >= 1, --hsize >= 1, --threads >= 0\n");
    return 2;
  }
  d.seed = (uint64_t)seed;
  d.progress = progress ? (isatty(2) ? 2 : 1) : 0;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  if (threads) wcmi_set_threads(&ctx, threads);
  if (task_cli_conv_algo(&ctx, "demo", conv_algo)) return 2;
  char *table = NULL, *summary = NULL;
  int rc = wcmi_task_demo(&ctx, &d, &table, &summary);
  if (rc) fprintf(stderr, "wcmi demo: %s\n", wcmi_errmsg(&ctx));
  else fputs(json ? summary : table, stdout);
  if (!rc && json) fputc('\n', stdout);
  free(table);
  free(summary);
  return task_cli_exit_code(rc);
}
