/* wcmi info FILE.safetensors: describes a checkpoint as JSON on stdout (metadata, tensors, totals).
 * The reader validates the whole file first, so a malformed file gives one clear line on stderr. */
#include "cli/cli.h"
#include "wcmi/io.h"

#include <stdio.h>

static void print_info(const wcmi_st *st, FILE *out) {
  wcmi_jsonw w;
  wcmi_jsonw_init_file(&w, out, 2);
  int64_t total = 0;
  for (int i = 0; i < wcmi_st_count(st); i++) total += wcmi_st_tensor_at(st, i)->numel;
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "file", wcmi_st_name(st));
  const char *arch = wcmi_st_meta(st, "architecture");
  if (arch) wcmi_jsonw_kv_string(&w, "architecture", arch);
  wcmi_jsonw_kv_int(&w, "num_tensors", wcmi_st_count(st));
  wcmi_jsonw_kv_int(&w, "total_parameters", total);
  wcmi_jsonw_key(&w, "metadata");
  wcmi_jsonw_begin_object(&w);
  for (int i = 0; i < wcmi_st_meta_count(st); i++) wcmi_jsonw_kv_string(&w, wcmi_st_meta_key(st, i), wcmi_st_meta_value(st, i));
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_key(&w, "tensors");
  wcmi_jsonw_begin_array(&w);
  for (int i = 0; i < wcmi_st_count(st); i++) {
    const wcmi_st_info *t = wcmi_st_tensor_at(st, i);
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "name", t->name);
    wcmi_jsonw_kv_string(&w, "dtype", wcmi_dtype_name(t->dtype));
    wcmi_jsonw_key(&w, "shape");
    wcmi_jsonw_begin_array(&w);
    for (int k = 0; k < t->ndim; k++) wcmi_jsonw_int(&w, t->shape[k]);
    wcmi_jsonw_end_array(&w);
    wcmi_jsonw_kv_int(&w, "numel", t->numel);
    wcmi_jsonw_end_object(&w);
  }
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_finish(NULL, &w);
  fputc('\n', out);
}

int wcmi_cmd_info(int argc, char **argv) {
  wcmi_opt opts[] = {{0}};
  wcmi_cli_strlist files = {0};
  WCMI_CLI_PARSE("info", "FILE.safetensors",
                 "Validate a safetensors file and print, as JSON on stdout: its architecture (if the metadata\n"
                 "names one), the metadata map, the number of tensors, the total number of parameters and each\n"
                 "tensor's name, dtype and shape. A malformed file gives a one-line error and exit status 1.",
                 opts, argc, argv, &files);
  if (files.n != 1) {
    fprintf(stderr, "wcmi info: expected exactly one FILE.safetensors (see wcmi info --help)\n");
    return 2;
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_st *st;
  if (wcmi_st_open_header(&ctx, files.v[0], &st)) {
    fprintf(stderr, "wcmi info: %s\n", wcmi_errmsg(&ctx));
    return 1;
  }
  print_info(st, stdout);
  wcmi_st_close(st);
  return 0;
}
