/* bench_events: cost and memory of the Events aggregation (evscale/events.h, the pure core).
 *
 *   bench_events [occurrences = 2000000] [objects = 10000] [messages = 8] [seed = 1]
 *
 * A flap storm: each occurrence picks one of `objects` ScaledObjects and one of `messages`
 * messages (a scale decision's text, ~100 bytes; a quarter of them Warnings), at 1 ms of simulated
 * time apart, so the LRU (4096 series) churns and the spam filter (25, 1 per 300 s) drops most new
 * Events. Printed: evs_events_decide latency (p50/p95/p99/max), the verdicts, and the heap the
 * cache holds once full (mallinfo2 delta), i.e. the bound the header states. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "evscale/events.h"

#include "bench_util.h"

static int cmp32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
  size_t objs = argc > 2 ? strtoull(argv[2], NULL, 10) : 10000;
  unsigned msgs = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 8;
  rng_state = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
  if (msgs == 0)
    msgs = 1;
  if (rng_state == 0)
    rng_state = 1;
  uint32_t *lat = malloc(n * sizeof *lat);
  size_t heap0 = heap_in_use();
  evs_events_cache_t *c = evs_events_cache_new(NULL);
  if (lat == NULL || c == NULL)
    return 1;
  size_t verdicts[4] = {0};
  char name[64], uid[64], msg[160];
  double cpu0 = cpu_seconds();
  for (size_t i = 0; i < n; i++) {
    unsigned o = (unsigned)(rng() % objs), m = (unsigned)(rng() % msgs);
    snprintf(name, sizeof name, "scaledobject-%u", o);
    snprintf(uid, sizeof uid, "6f1c2a9e-0000-4000-8000-%012u", o);
    snprintf(msg, sizeof msg,
             "Scaled apps/v1.Deployment team-%u/worker-%u from %u to %u, triggered by "
             "redis-list-length;prometheus",
             o % 50, o, m, m + 1);
    evs_event_t e = {.ns = "team",
                     .name = name,
                     .uid = uid,
                     .type = m % 4 == 0 ? EVS_EVENT_WARNING : EVS_EVENT_NORMAL,
                     .reason = m % 4 == 0 ? EVS_REASON_TARGET_CONFLICT
                                          : EVS_REASON_SCALE_TARGET_ACTIVATED,
                     .message = msg};
    evs_events_entry_t *en = NULL;
    int64_t t0 = now_ns();
    int v = evs_events_decide(c, &e, (uint64_t)i, &en);
    lat[i] = since(t0);
    if (v < 0 || v > 3)
      return 1;
    verdicts[v]++;
    if (v == EVS_EVENTS_SEND)
      en->created = 1; /* as after a 2xx, so later occurrences can be PATCHed */
  }
  double cpu = cpu_seconds() - cpu0;
  size_t heap = heap_in_use() - heap0;
  qsort(lat, n, sizeof *lat, cmp32);
  printf("evs_events_decide: %zu occurrences over %zu objects, %.3f CPU s\n", n, objs, cpu);
  printf("  latency  p50 %6" PRIu32 " ns  p95 %6" PRIu32 " ns  p99 %6" PRIu32 " ns  max %8" PRIu32
         " ns\n",
         lat[n / 2], lat[n * 95 / 100], lat[n * 99 / 100], lat[n - 1]);
  printf("  verdicts send %zu  patch %zu  counted %zu  drop %zu\n", verdicts[EVS_EVENTS_SEND],
         verdicts[EVS_EVENTS_PATCH], verdicts[EVS_EVENTS_COUNTED], verdicts[EVS_EVENTS_DROP]);
  printf("  cache: %zu series held, heap %zu bytes (%.0f bytes per series, spam buckets "
         "included)\n",
         evs_events_cache_size(c), heap, (double)heap / (double)evs_events_cache_size(c));
  evs_events_cache_free(c);
  free(lat);
  return 0;
}
