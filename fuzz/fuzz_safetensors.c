/* libFuzzer target for safetensors: the whole-file reader on memory (header, offsets, coverage,
 * metadata), loading every tensor wcmi could load into a parameter, the header-only reader that
 * `wcmi info` uses, and the model loader (dimension, finiteness and variance checks before
 * anything is built), the last two through a scratch file. */
#include "wcmi/io.h"
#include "wcmi/model.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[64];

static void write_scratch(const uint8_t *data, size_t size) {
  if (!scratch[0]) snprintf(scratch, sizeof scratch, "/tmp/wcmi-fuzz-st.%ld", (long)getpid());
  FILE *f = fopen(scratch, "wb");
  if (!f) return;
  if (size) fwrite(data, 1, size, f);
  fclose(f);
}

static void load_every_tensor(wcmi_ctx *ctx, const wcmi_st *st) {
  for (int i = 0; i < wcmi_st_count(st); i++) {
    const wcmi_st_info *t = wcmi_st_tensor_at(st, i);
    if (t->ndim > WCMI_MAX_DIMS || (t->dtype != WCMI_DT_F32 && t->dtype != WCMI_DT_I64)) continue;
    wcmi_param p;
    memset(&p, 0, sizeof p);
    if (strlen(t->name) >= sizeof p.name) continue;
    memcpy(p.name, t->name, strlen(t->name) + 1);
    p.kind = t->dtype == WCMI_DT_I64 ? WCMI_PARAM_COUNTER : WCMI_PARAM_BUFFER;
    wcmi_st_info_shape(ctx, st, t, &p.shape);
    void *buf = malloc(t->nbytes + 8); /* bounded: the bytes are in the input */
    if (!buf) continue;
    if (p.kind == WCMI_PARAM_COUNTER) p.i64 = buf;
    else p.data = buf;
    wcmi_param *ps[1] = {&p};
    if (wcmi_st_load_params(ctx, st, ps, 1, 0) != WCMI_OK) __builtin_trap(); /* it is in the file */
    free(buf);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_st *st = NULL;
  int whole = wcmi_st_open_memory(&ctx, "fuzz", data, size, &st);
  if (whole == WCMI_OK) {
    for (int i = 0; i < wcmi_st_meta_count(st); i++) (void)wcmi_st_meta(st, wcmi_st_meta_key(st, i));
    load_every_tensor(&ctx, st);
    wcmi_st_close(st);
  } else if (!ctx.msg[0] || strchr(ctx.msg, '\n')) {
    __builtin_trap();
  }
  write_scratch(data, size);
  wcmi_st *hd = NULL;
  int header = wcmi_st_open_header(&ctx, scratch, &hd);
  /* The header-only reader sees the same header and sizes: it accepts what the whole reader does. */
  if (whole == WCMI_OK && header != WCMI_OK) __builtin_trap();
  wcmi_st_close(hd);
  if (whole == WCMI_OK) {
    wcmi_model m;
    if (wcmi_model_load(&ctx, scratch, 2, &m, NULL) == WCMI_OK) wcmi_model_free(&m);
  }
  return 0;
}
