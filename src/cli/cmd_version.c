#include "cli/cli.h"
#include "wcmi/blas.h"
#include "wcmi/core.h"

#include <stdio.h>

int wcmi_cmd_version(int argc, char **argv) {
  wcmi_opt opts[] = {{0}};
  WCMI_CLI_PARSE("version", NULL, "Print the wcmi version and BLAS configuration.", opts, argc, argv, NULL);
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const char *better = wcmi_blas_better_coretype();
  printf("{\"wcmi\": \"%s\", \"blas\": \"%s\", \"blas_better_coretype\": %s%s%s, \"gemm_bf16\": %s, \"threads\": %d}\n",
         wcmi_version(), wcmi_blas_info(), better ? "\"" : "", better ? better : "null", better ? "\"" : "",
         wcmi_blas_bf16_available() ? "true" : "false", ctx.num_threads);
  return 0;
}
