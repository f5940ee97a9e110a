/* .npy: v1.0 header layout (64-byte aligned data), round trips of float32 2-D and int32 1-D, refusal
 * of malformed files, and loading by NumPy (or, without NumPy, by NumPy's own header rule:
 * ast.literal_eval of the dict). */
#include "harness.h"
#include "wcmi/io.h"

#include <string.h>

static void path_in_tmp(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", wt_tmpdir(), name); }

static void test_f32_2d_header_and_roundtrip(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char path[600];
  path_in_tmp(path, sizeof path, "z.npy");
  float z[3 * 5];
  for (int i = 0; i < 15; i++) z[i] = (float)i / 7.0f - 1.0f;
  CHECK_OK(&ctx, wcmi_npy_write_f32_2d(&ctx, path, z, 3, 5));
  char *raw = NULL;
  size_t n = 0;
  CHECK_OK(&ctx, wcmi_read_file(&ctx, path, 1 << 20, &raw, &n));
  if (!raw) return;
  CHECK(memcmp(raw, "\x93NUMPY\x01\x00", 8) == 0);
  size_t hlen = (unsigned char)raw[8] | (size_t)(unsigned char)raw[9] << 8;
  CHECK((10 + hlen) % 64 == 0);
  CHECK(raw[10 + hlen - 1] == '\n');
  CHECK(strncmp(raw + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", 59) == 0);
  CHECK(n == 10 + hlen + sizeof z);
  CHECK(memcmp(raw + 10 + hlen, z, sizeof z) == 0);
  wcmi_free(raw);
  wcmi_npy a;
  CHECK_OK(&ctx, wcmi_npy_read(&ctx, path, &a));
  CHECK(a.dtype == WCMI_DT_F32 && a.shape.ndim == 2 && a.shape.d[0] == 3 && a.shape.d[1] == 5 && a.numel == 15);
  CHECK(a.data && memcmp(a.data, z, sizeof z) == 0);
  wcmi_npy_free(&a);
}

static void test_i32_1d_roundtrip(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char path[600];
  path_in_tmp(path, sizeof path, "y.npy");
  int32_t y[7] = {0, 1, 2, 9, -1, 2147483647, 5};
  CHECK_OK(&ctx, wcmi_npy_write_i32_1d(&ctx, path, y, 7));
  wcmi_npy a;
  CHECK_OK(&ctx, wcmi_npy_read(&ctx, path, &a));
  CHECK(a.dtype == WCMI_DT_I32 && a.shape.ndim == 1 && a.shape.d[0] == 7);
  CHECK(a.data && memcmp(a.data, y, sizeof y) == 0);
  wcmi_npy_free(&a);
  /* empty array */
  CHECK_OK(&ctx, wcmi_npy_write_i32_1d(&ctx, path, NULL, 0));
  CHECK_OK(&ctx, wcmi_npy_read(&ctx, path, &a));
  CHECK(a.numel == 0 && a.shape.ndim == 1);
  wcmi_npy_free(&a);
}

static void expect_npy_refused(const char *bytes, size_t n, const char *fragment) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char path[600];
  path_in_tmp(path, sizeof path, "bad.npy");
  CHECK_OK(&ctx, wcmi_atomic_write(&ctx, path, bytes, n));
  wcmi_npy a;
  CHECK(wcmi_npy_read(&ctx, path, &a) == WCMI_EFORMAT);
  CHECK_MSG(strstr(ctx.msg, fragment) && strstr(ctx.msg, "bad.npy: "), "message '%s' lacks '%s'", ctx.msg, fragment);
  CHECK(a.data == NULL);
}

static void test_malformed_npy_is_refused(void) {
  expect_npy_refused("NUMPY", 5, "bad magic");
  expect_npy_refused("\x93NUMPY\x01\x00\xff\x00{}", 12, "header length 255 exceeds the file");
  const char h1[] = "\x93NUMPY\x01\x00\x3a\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
  expect_npy_refused(h1, sizeof h1 - 1, "needs 8 bytes of data but the file holds 0");
  const char h2[] = "\x93NUMPY\x01\x00\x3a\x00{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n";
  expect_npy_refused(h2, sizeof h2 - 1, "unsupported dtype '>f4'");
  const char h3[] = "\x93NUMPY\x01\x00\x39\x00{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }\n";
  expect_npy_refused(h3, sizeof h3 - 1, "fortran_order True");
  expect_npy_refused("\x93NUMPY\x09\x00\x00\x00", 10, "unsupported .npy version 9.0");
}

static void test_numpy_loads_wcmi_npy(void) {
  /* Debian's python3 (the one python3-numpy installs into), not whatever python3 is first on PATH. */
  if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
    wt_skip("/usr/bin/python3 with numpy not installed (scripts/install-deps.sh installs it)");
    return;
  }
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  char zp[600], yp[600], sp[600];
  path_in_tmp(zp, sizeof zp, "npz.npy");
  path_in_tmp(yp, sizeof yp, "npy.npy");
  path_in_tmp(sp, sizeof sp, "load.py");
  float z[2 * 3] = {0.5f, -1.0f, 2.25f, 3.0f, -0.125f, 1e10f};
  int32_t y[4] = {3, 1, 4, 1};
  CHECK_OK(&ctx, wcmi_npy_write_f32_2d(&ctx, zp, z, 2, 3));
  CHECK_OK(&ctx, wcmi_npy_write_i32_1d(&ctx, yp, y, 4));
  const char *script =
      "import sys\n"
      "import numpy as np  # a test dependency: scripts/install-deps.sh installs python3-numpy\n"
      "z = np.load(sys.argv[1]); y = np.load(sys.argv[2])\n"
      "assert z.dtype == np.float32 and z.shape == (2, 3), (z.dtype, z.shape)\n"
      "assert z.tolist() == [[0.5, -1.0, 2.25], [3.0, -0.125, 1e10]], z\n"
      "assert y.dtype == np.int32 and y.tolist() == [3, 1, 4, 1], y\n"
      "print('numpy.load OK')\n";
  FILE *f = fopen(sp, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs(script, f);
  fclose(f);
  char cmd[2000];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s 1>&2", sp, zp, yp);
  CHECK_MSG(system(cmd) == 0, "python3 could not load %s / %s", zp, yp);
}

int main(void) {
  RUN(test_f32_2d_header_and_roundtrip);
  RUN(test_i32_1d_roundtrip);
  RUN(test_malformed_npy_is_refused);
  RUN(test_numpy_loads_wcmi_npy);
  return wt_finish();
}
