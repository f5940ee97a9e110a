/* Writes the fuzz seed corpora (fuzz/corpus/<reader>/) from the test fixtures. Built and run by
 * hand, not by CMake (its name does not match fuzz_*.c):
 *   cc -Iinclude -Itests fuzz/make_corpus.c -lz -o /tmp/make_corpus && /tmp/make_corpus fuzz/corpus */
#include "data_fixtures.h"

static void put(const char *dir, const char *sub, const char *name, const fx_buf *b) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
  if (fx_write(p, b) != 0) fprintf(stderr, "cannot write %s\n", p);
}

/* IDX fuzz input: 1 byte labels length, images bytes, labels bytes. */
static void idx_seed(const char *dir, const char *name, const fx_buf *im, const fx_buf *lb) {
  fx_buf b = {0};
  fx_u8(&b, (uint8_t)lb->n);
  fx_put(&b, im->p, im->n);
  fx_put(&b, lb->p, lb->n);
  put(dir, "idx", name, &b);
  fx_free(&b);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "fuzz/corpus";
  fx_buf im = fx_idx_images(3, 4, 4), lb = fx_idx_labels(3);
  idx_seed(dir, "raw", &im, &lb);
  fx_buf gim = fx_deflate(im.p, im.n, 1), glb = fx_deflate(lb.p, lb.n, 1);
  idx_seed(dir, "gzip", &gim, &glb);
  idx_seed(dir, "gzip-images-raw-labels", &gim, &lb);
  fx_buf c1 = fx_cifar(1, 0), c2 = fx_cifar(2, 5);
  put(dir, "cifar", "one-record", &c1);
  put(dir, "cifar", "two-records", &c2);
  fx_buf s1 = fx_svhn(1, 1, 1, 0), s2 = fx_svhn(2, 2, 0, 1), s3 = fx_svhn(1, 1, 1, 1);
  put(dir, "svhn", "plain-double", &s1);
  put(dir, "svhn", "compressed-uint8", &s2);
  put(dir, "svhn", "compressed-double", &s3);
  fx_free(&im); fx_free(&lb); fx_free(&gim); fx_free(&glb);
  fx_free(&c1); fx_free(&c2); fx_free(&s1); fx_free(&s2); fx_free(&s3);
  return 0;
}
