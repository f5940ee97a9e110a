/* A plain driver for the libFuzzer targets, so that every build (Release, ASan+UBSan, gcc or clang)
 * runs them as ordinary tests: each file of the corpus directories given is passed once to
 * LLVMFuzzerTestOneInput, then -runs=N inputs made from them by fixed mutations (byte flips,
 * interesting values, truncation, duplication, splicing; a fixed seed, so every run is the same).
 *   replay_fuzz_json [-runs=N] DIR_OR_FILE...                                                   */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct input {
  uint8_t *data;
  size_t size;
} input;

static input *inputs;
static size_t n_inputs, cap_inputs;

static void add_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return;
  input in = {NULL, 0};
  size_t cap = 0;
  for (;;) {
    if (in.size == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *nd = realloc(in.data, cap);
      if (!nd) break;
      in.data = nd;
    }
    size_t got = fread(in.data + in.size, 1, cap - in.size, f);
    if (!got) break;
    in.size += got;
  }
  fclose(f);
  if (n_inputs == cap_inputs) {
    cap_inputs = cap_inputs ? 2 * cap_inputs : 64;
    inputs = realloc(inputs, cap_inputs * sizeof *inputs);
    if (!inputs) exit(1);
  }
  inputs[n_inputs++] = in;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Files of a directory in name order (the order readdir gives is not fixed). */
static void add_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "replay: %s: missing\n", path);
    exit(1);
  }
  if (!S_ISDIR(st.st_mode)) {
    add_file(path);
    return;
  }
  DIR *d = opendir(path);
  if (!d) return;
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    names = realloc(names, (n + 1) * sizeof *names);
    names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
    sprintf(names[n], "%s/%s", path, e->d_name);
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp_names);
  for (size_t i = 0; i < n; i++) {
    add_file(names[i]);
    free(names[i]);
  }
  free(names);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* One mutant of inputs[i] (and maybe a second input) into a fresh buffer. */
static uint8_t *mutate(size_t *size_out) {
  const input *a = &inputs[next() % n_inputs], *b = &inputs[next() % n_inputs];
  size_t size = a->size, cap = a->size + b->size + 16;
  uint8_t *m = malloc(cap ? cap : 1);
  if (!m) exit(1);
  if (size) memcpy(m, a->data, size);
  static const uint8_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, '"', '{', '}', '[', ']', ',', ':', '-', '9', '\\', 'e', '\n'};
  int edits = 1 + (int)(next() % 4);
  for (int k = 0; k < edits; k++) {
    switch (next() % 6) {
    case 0: /* flip a bit */
      if (size) m[next() % size] ^= (uint8_t)(1u << (next() % 8));
      break;
    case 1: /* an interesting byte */
      if (size) m[next() % size] = interesting[next() % sizeof interesting];
      break;
    case 2: /* truncate */
      if (size) size = next() % size;
      break;
    case 3: /* insert a byte */
      if (size < cap) {
        size_t at = size ? next() % (size + 1) : 0;
        memmove(m + at + 1, m + at, size - at);
        m[at] = interesting[next() % sizeof interesting];
        size++;
      }
      break;
    case 4: /* splice the tail of another input */
      if (b->size) {
        size_t at = size ? next() % size : 0, from = next() % b->size, n = b->size - from;
        if (at + n > cap) n = cap - at;
        memcpy(m + at, b->data + from, n);
        size = at + n;
      }
      break;
    default: /* overwrite 8 bytes with a large little-endian number (lengths, offsets) */
      if (size >= 8) {
        size_t at = next() % (size - 7);
        uint64_t v = next() >> (next() % 64);
        for (int j = 0; j < 8; j++) m[at + j] = (uint8_t)(v >> (8 * j));
      }
      break;
    }
  }
  *size_out = size;
  return m;
}

int main(int argc, char **argv) {
  long runs = 0;
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "-runs=", 6)) runs = strtol(argv[i] + 6, NULL, 10);
    else add_path(argv[i]);
  }
  if (!n_inputs) {
    fprintf(stderr, "replay: no corpus files\n");
    return 1;
  }
  for (size_t i = 0; i < n_inputs; i++) LLVMFuzzerTestOneInput(inputs[i].data, inputs[i].size);
  for (long r = 0; r < runs; r++) {
    size_t size;
    uint8_t *m = mutate(&size);
    LLVMFuzzerTestOneInput(m, size);
    free(m);
  }
  printf("replay: %zu corpus files and %ld mutants, no crash\n", n_inputs, runs);
  for (size_t i = 0; i < n_inputs; i++) free(inputs[i].data);
  free(inputs);
  return 0;
}
