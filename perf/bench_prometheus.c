/* 1,000 prometheus triggers over 100 distinct queries at a 15 s cadence against a real Prometheus
 * (test/prom_harness.py, with its counting proxy in front): CPU and RSS of the process, requests
 * per second reaching the server, reading age (request round trip of each delivered reading).
 *
 *   bench_prometheus [SUBSCRIBERS QUERIES CADENCE_MS DURATION_S [noshare] [proxy]]
 *   default: 1000 100 15000 60
 *
 * Requests are counted by Prometheus itself (prometheus_http_requests_total for /api/v1/query,
 * read from its /metrics before and after); `proxy` sends them through the harness's counting
 * proxy instead (slower: Python).
 * `noshare` gives every subscriber its own query parameter, so nothing is shared: what a scaler
 * per trigger (KEDA's way) would send. Goal with sharing: QUERIES requests per cadence. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/prometheus.h"
#include "bench_util.h"
#include "../test/prom_harness.h"

static uint32_t *lat;
static size_t nlat, caplat;
static uint64_t deliveries, errors;

static void on_reading(evs_prom_sub_t *s, const evs_prom_reading_t *r, void *arg) {
  (void)s, (void)arg;
  deliveries++;
  if (r->error) {
    errors++;
    return;
  }
  if (nlat == caplat) {
    caplat = caplat ? caplat * 2 : 4096;
    lat = realloc(lat, caplat * sizeof *lat);
  }
  lat[nlat++] = (uint32_t)r->latency_ms;
}

static void tick(uv_timer_t *t) { (void)t; }

int main(int argc, char **argv) {
  int subs = argc > 1 ? atoi(argv[1]) : 1000, queries = argc > 2 ? atoi(argv[2]) : 100;
  uint64_t cadence = argc > 3 ? strtoull(argv[3], NULL, 10) : 15000;
  int duration = argc > 4 ? atoi(argv[4]) : 60;
  int noshare = 0, viaproxy = 0;
  for (int i = 5; i < argc; i++)
    noshare |= strcmp(argv[i], "noshare") == 0, viaproxy |= strcmp(argv[i], "proxy") == 0;
  evs_prom_harness_t h;
  const char *args[] = {"--proxy", NULL};
  if (evs_prom_harness_start(&h, args) != 0)
    return fprintf(stderr, "harness failed\n"), 1;
  for (int q = 0; q < queries; q++)
    if (evs_prom_harness_do(&h, "push bench evs_bench_q%d %d", q, q) != 0)
      return 1;
  evs_prom_harness_do(&h, "wait evs_bench_q%d %d", queries - 1, queries - 1);
  usleep(1100000);
  evs_prom_harness_do(&h, "reset");
  json_t *pr = evs_prom_harness_cmd(&h, "prom_requests");
  long server0 = pr ? (long)json_integer_value(json_object_get(pr, "requests")) : -1;
  json_decref(pr);

  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_prom_hub_t *hub;
  evs_prom_hub_new(&loop, NULL, &hub);
  long rss0 = rss_bytes();
  size_t heap0 = heap_in_use();
  double cpu0 = cpu_seconds();
  char server[200];
  snprintf(server, sizeof server, "serverAddress=%s", viaproxy ? h.proxy : h.prometheus);
  for (int i = 0; i < subs; i++) {
    char query[64], act[48], param[48];
    snprintf(query, sizeof query, "sum(evs_bench_q%d)", i % queries);
    snprintf(act, sizeof act, "%d", i % 7);
    snprintf(param, sizeof param, "sub=%d", i);
    evs_prom_kv_t meta[] = {{"serverAddress", server + 14},
                            {"query", query},
                            {"threshold", "10"},
                            {"activationThreshold", act},
                            {"queryParameters", param}};
    evs_prom_input_t in = {.object = "bench/so", .metadata = {meta, noshare ? 5 : 4}};
    evs_prom_config_t cfg;
    evs_diag_t d;
    evs_diag_init(&d);
    if (evs_prom_config_parse(&in, 0, &cfg, &d) != 0 ||
        evs_prom_subscribe(hub, &cfg, cadence, on_reading, NULL, NULL) != 0)
      return fprintf(stderr, "subscribe %d failed\n", i), 1;
    evs_prom_config_free(&cfg);
    evs_diag_free(&d);
  }
  double cpu_sub = cpu_seconds() - cpu0;
  long rss_sub = rss_bytes();
  size_t heap_sub = heap_in_use();
  uv_timer_t stop;
  uv_timer_init(&loop, &stop);
  int64_t t0 = now_ns();
  uv_timer_start(&stop, tick, 0, 0);
  while ((now_ns() - t0) / 1000000000 < duration) {
    uv_timer_start(&stop, tick, 200, 0);
    uv_run(&loop, UV_RUN_ONCE);
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  double cpu_run = cpu_seconds() - cpu0 - cpu_sub;
  long rss_end = rss_bytes();
  evs_prom_hub_stats_t st;
  evs_prom_hub_stats(hub, &st);
  pr = evs_prom_harness_cmd(&h, "prom_requests");
  /* Prometheus's own counter; the harness's query for it is not counted until it returns. */
  long seen = pr ? (long)json_integer_value(json_object_get(pr, "requests")) - server0 : -1;
  json_decref(pr);
  long at_proxy = viaproxy ? evs_prom_harness_requests(&h) : -1;
  qsort(lat, nlat, sizeof *lat, cmp_u32);
  double cadences = secs * 1000 / (double)cadence;
  printf("bench_prometheus: %d subscribers, %d distinct queries, cadence %llu ms, %.1f s%s\n", subs,
         queries, (unsigned long long)cadence, secs, noshare ? " (noshare)" : "");
  printf("  groups %zu, servers %zu%s; proxy count %ld\n", st.groups, st.servers,
         viaproxy ? ", through the harness's Python proxy" : ", direct", at_proxy);
  printf("  requests at the server: %ld (%.1f/s; %.1f per cadence; goal %d per cadence)\n", seen,
         (double)seen / secs, (double)seen / (cadences > 1 ? cadences : 1), queries);
  printf("  deliveries %llu (errors %llu), hub requests %llu, failures %llu\n",
         (unsigned long long)deliveries, (unsigned long long)errors,
         (unsigned long long)st.requests, (unsigned long long)st.failures);
  if (nlat)
    printf("  reading age at delivery (request round trip): p50 %u ms, p99 %u ms, max %u ms\n",
           lat[nlat / 2], lat[nlat * 99 / 100], lat[nlat - 1]);
  printf("  CPU: subscribe %.3f s, run %.3f s (%.2f%% of one core)\n", cpu_sub, cpu_run,
         100 * cpu_run / secs);
  printf("  RSS: %.1f MiB before, %.1f MiB after subscribing, %.1f MiB at end; heap for the "
         "subscriptions %.0f KiB (%.0f B per subscriber)\n",
         rss0 / 1048576.0, rss_sub / 1048576.0, rss_end / 1048576.0,
         (double)(heap_sub - heap0) / 1024, (double)(heap_sub - heap0) / subs);
  int closed = 0;
  evs_prom_hub_close(hub, (void (*)(void *))(void *)NULL, NULL);
  uv_close((uv_handle_t *)&stop, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  (void)closed;
  uv_loop_close(&loop);
  evs_prom_harness_stop(&h);
  free(lat);
  return 0;
}
