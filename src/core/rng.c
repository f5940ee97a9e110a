/* xoshiro256** (Blackman & Vigna) seeded through splitmix64: small state, fast, and good enough
 * statistically for initialization, shuffling and random starts. */
#include "wcmi/core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void wcmi_rng_seed(wcmi_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

void wcmi_rng_derive(wcmi_rng *r, uint64_t seed, uint64_t stream) {
  /* Mix the stream id through splitmix so nearby ids give unrelated states. */
  uint64_t x = stream * 0xD1B54A32D192ED03ull;
  wcmi_rng_seed(r, seed ^ splitmix64(&x));
}

uint64_t wcmi_rng_u64(wcmi_rng *r) {
  uint64_t *s = r->s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float wcmi_rng_uniform(wcmi_rng *r) { return (float)(wcmi_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float wcmi_rng_uniform_range(wcmi_rng *r, float lo, float hi) {
  return lo + (hi - lo) * wcmi_rng_uniform(r);
}

float wcmi_rng_normal(wcmi_rng *r) {
  /* 53-bit uniforms; u1 in (0, 1] so log never sees 0. */
  double u1 = ((double)(wcmi_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = (double)(wcmi_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t wcmi_rng_below(wcmi_rng *r, uint64_t n) {
  /* Rejection sampling on the top of the range removes modulo bias. */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = wcmi_rng_u64(r);
  while (v >= limit);
  return v % n;
}

void wcmi_rng_shuffle(wcmi_rng *r, int64_t *idx, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)wcmi_rng_below(r, (uint64_t)(i + 1));
    int64_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}
