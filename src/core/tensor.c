/* Shapes and owned tensors. */
#include "wcmi/core.h"

#include <string.h>

wcmi_shape wcmi_shape1(int64_t a) { return (wcmi_shape){1, {a, 0, 0, 0}}; }
wcmi_shape wcmi_shape2(int64_t a, int64_t b) { return (wcmi_shape){2, {a, b, 0, 0}}; }
wcmi_shape wcmi_shape3(int64_t a, int64_t b, int64_t c) { return (wcmi_shape){3, {a, b, c, 0}}; }
wcmi_shape wcmi_shape4(int64_t a, int64_t b, int64_t c, int64_t d) { return (wcmi_shape){4, {a, b, c, d}}; }

int64_t wcmi_shape_numel(const wcmi_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->d[i];
  return n;
}

int wcmi_shape_equal(const wcmi_shape *a, const wcmi_shape *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

char *wcmi_shape_str(const wcmi_shape *s, char *buf, size_t n) {
  size_t used = 0;
  if (n == 0) return buf;
  buf[0] = '\0';
  used += (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < s->ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)s->d[i]);
  if (used < n) snprintf(buf + used, n - used, ")");
  return buf;
}

int wcmi_tensor_new(wcmi_ctx *ctx, wcmi_tensor *t, wcmi_shape shape) {
  for (int i = 0; i < shape.ndim; i++)
    if (shape.d[i] < 0) return wcmi_fail(ctx, WCMI_EINVAL, "tensor: negative dimension %d", i);
  int64_t n = wcmi_shape_numel(&shape);
  t->data = wcmi_calloc(ctx, (size_t)(n > 0 ? n : 1), sizeof(float));
  t->shape = shape;
  return t->data ? WCMI_OK : WCMI_ENOMEM;
}

void wcmi_tensor_free(wcmi_tensor *t) {
  wcmi_free(t->data);
  t->data = NULL;
}

int64_t wcmi_tensor_numel(const wcmi_tensor *t) { return wcmi_shape_numel(&t->shape); }
