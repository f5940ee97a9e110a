/* libFuzzer target for what --resume reads back: a run's config.json and a checkpoint's resume
 * metadata. The input up to the first NUL byte is config.json; after it, four NUL-separated
 * strings are the checkpoint's "epoch", "batch", "best" and "partial" values. Whatever parses must
 * satisfy the ranges the command line enforces. */
#include "train/trainer.h"
#include "wcmi/tasks.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_config(const uint8_t *data, size_t size) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_task_cfg cfg;
  memset(&cfg, 0, sizeof cfg);
  char task[64];
  wcmi_json *keep = NULL;
  if (wcmi_task_config_parse(&ctx, "config.json", (const char *)data, size, &cfg, task, sizeof task, &keep) == WCMI_OK) {
    /* A parsed configuration passes the CLI's own check, and writes back to text that parses. */
    if (wcmi_task_cfg_check(&ctx, &cfg) != WCMI_OK) __builtin_trap();
    char *text = wcmi_task_config_json(&cfg, task);
    if (text) {
      wcmi_task_cfg again;
      wcmi_json *keep2 = NULL;
      if (wcmi_task_config_parse(&ctx, "again", text, strlen(text), &again, task, sizeof task, &keep2) != WCMI_OK)
        __builtin_trap();
      if (again.epochs != cfg.epochs || again.batch_size != cfg.batch_size || again.hsize != cfg.hsize) __builtin_trap();
      wcmi_json_free(keep2);
      free(text);
    }
    wcmi_json_free(keep);
  } else if (keep || !ctx.msg[0] || strchr(ctx.msg, '\n')) {
    __builtin_trap();
  }
}

static void check_resume(const uint8_t *data, size_t size) {
  /* Copy so every field is NUL-terminated. */
  char *buf = malloc(size + 5);
  if (!buf) return;
  memcpy(buf, data, size);
  memset(buf + size, 0, 5);
  const char *field[4];
  size_t pos = 0;
  for (int i = 0; i < 4; i++) {
    field[i] = buf + pos;
    pos += strlen(buf + pos) + 1;
    if (pos > size + 4) pos = size + 4;
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  trainer_resume rp;
  int n_sums = size ? data[0] % (TRAINER_MAX_SUMS + 1) : 0;
  if (trainer_parse_resume(&ctx, "latest.safetensors", field[0], field[1], field[2], field[3], n_sums, &rp) == WCMI_OK) {
    if (rp.epoch < 0 || rp.epoch > WCMI_EPOCHS_MAX || rp.batch < 0 || rp.done < 0 || rp.done > rp.batch ||
        rp.best_epoch < -1 || rp.best_epoch >= (rp.epoch > 0 ? rp.epoch : 1) || rp.best_score != rp.best_score)
      __builtin_trap();
  }
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t cfg_len = nul ? (size_t)(nul - data) : size;
  check_config(data, cfg_len);
  if (nul) check_resume(nul + 1, size - cfg_len - 1);
  return 0;
}
