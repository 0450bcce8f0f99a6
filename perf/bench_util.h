/* Shared helpers of the perf/ benchmarks: a reproducible random source, clocks, CPU time, RSS
 * and heap in use. Header-only: each benchmark is its own executable. */
#ifndef EVSCALE_BENCH_UTIL_H
#define EVSCALE_BENCH_UTIL_H

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

static uint64_t rng_state;

/* xorshift64*: reproducible for a given seed, cheap next to what is measured. */
static inline uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}

static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Nanoseconds since t0, saturated to 32 bits (latency arrays are uint32_t). */
static inline uint32_t since(int64_t t0) {
  int64_t d = now_ns() - t0;
  return (uint32_t)(d > UINT32_MAX ? UINT32_MAX : d);
}

static inline double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* VmRSS in bytes; reading /proc in a benchmark is fine (the loop rule is for the daemon). */
static inline long rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb * 1024;
}

/* Bytes malloc has handed out (glibc's tcache counts as in use: see perf/RESULTS.md). */
static inline size_t heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

static inline int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

#endif
