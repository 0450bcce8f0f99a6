/* bench_registry: what one ScaledObject costs the process, part by part (issue 13's memory goal:
 * the whole process at 50,000 ScaledObjects within 100 MB, about 2 KB each).
 *
 *   bench_registry [objects = 50000] [leading = 1]
 *
 * Runs the production path without a control plane: n ScaledObjects as the API serves them (JSON,
 * 50 namespaces, one redis trigger each on an address nothing listens on, so the triggers are
 * "not connected" as the goal states) go through the informer's decoder
 * (evs_registry_decode) into the registry (evs_registry_apply) of a process with the scaler
 * services and KEDA's metric families; then the registry leads, which creates every scaler and
 * every object's series. The heap in use (mallinfo2) and VmRSS are taken after each phase, so
 * the cost of each part is named: the decoded model, the registry's record (engine, breaker,
 * target), and the scalers plus the series. The process's fixed cost (libraries, the loop) is
 * printed first. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "evscale/config.h"
#include "evscale/keda_metrics.h"
#include "evscale/log.h"
#include "evscale/metrics.h"
#include "evscale/registry.h"
#include "evscale/scaler_services.h"

#include "bench_util.h"

static json_t *so_json(size_t i) {
  char buf[2048];
  snprintf(buf, sizeof buf,
           "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\","
           "\"metadata\":{\"name\":\"worker-%zu\",\"namespace\":\"team-%zu\","
           "\"uid\":\"6f1c2a8e-0000-4000-8000-%012zu\",\"resourceVersion\":\"%zu\","
           "\"generation\":1,\"creationTimestamp\":\"2026-11-30T09:08:30Z\"},"
           "\"spec\":{\"scaleTargetRef\":{\"name\":\"worker-%zu\"},\"minReplicaCount\":0,"
           "\"maxReplicaCount\":20,\"pollingInterval\":30,"
           "\"triggers\":[{\"type\":\"redis\",\"metadata\":{\"address\":\"127.0.0.1:1\","
           "\"listName\":\"jobs-%zu\",\"listLength\":\"5\"}}]},"
           "\"status\":{\"originalReplicaCount\":1}}",
           i, i % 50, i, 1000 + i, i, i);
  json_error_t e;
  return json_loads(buf, 0, &e);
}

typedef struct {
  size_t heap;
  long rss;
} mark_t;

static mark_t mark(void) {
  malloc_trim(0);
  mark_t m = {heap_in_use(), rss_bytes()};
  return m;
}

static void report(const char *what, mark_t a, mark_t b, size_t n) {
  printf("  %-44s heap %10zd B %8.1f B/object   RSS %10ld B %8.1f B/object\n", what,
         (ssize_t)(b.heap - a.heap), (double)(ssize_t)(b.heap - a.heap) / (double)n, b.rss - a.rss,
         (double)(b.rss - a.rss) / (double)n);
}

static void on_closed(void *arg) { (*(int *)arg)++; }

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 50000;
  int leading = argc > 2 ? atoi(argv[2]) : 1;
  if (n == 0)
    n = 1;
  evs_log_set_level(EVS_LOG_ERROR); /* an "added" record per object is not the benchmark */
  uv_loop_t loop;
  uv_loop_init(&loop);
  mark_t m0 = mark();
  printf("bench_registry: %zu ScaledObjects, one redis trigger each (not connected), %s\n", n,
         leading ? "leading" : "not leading");
  printf("  process at start: RSS %.1f MiB, heap %zu B\n", m0.rss / 1048576.0, m0.heap);

  evs_config_t *cfg = NULL;
  if (evs_config_load_buffer("", 0, "bench.yaml", NULL, &cfg, NULL) != 0) {
    fprintf(stderr, "config\n");
    return 1;
  }
  evs_metrics_t *metrics = evs_metrics_new();
  evs_scaler_services_t *svc = NULL;
  evs_keda_metrics_t *km = NULL;
  evs_keda_build_t build = {.version = "bench", .revision = "bench"};
  if (evs_scaler_services_new(&loop, cfg, metrics, &svc) != 0 ||
      evs_keda_metrics_new(metrics, EVS_KEDA_COMPAT_NONE, &build, &km) != 0) {
    fprintf(stderr, "services\n");
    return 1;
  }
  evs_registry_options_t ro = {.loop = &loop,
                               .env = evs_scaler_services_env(svc),
                               .default_namespace = "default",
                               .keda_metrics = km,
                               .metrics = metrics};
  evs_engine_config_default(&ro.engine);
  evs_breaker_config_default(&ro.breaker);
  evs_registry_t *reg = NULL;
  if (evs_registry_new(&ro, &reg) != 0) {
    fprintf(stderr, "registry\n");
    return 1;
  }
  mark_t m1 = mark();
  report("services, metrics families, empty registry", m0, m1, 1);

  /* Decode: what the informer keeps per object until the registry takes it. */
  void **decoded = calloc(n, sizeof *decoded);
  int64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++) {
    json_t *j = so_json(i);
    if (j == NULL || evs_registry_decode(j, &decoded[i], NULL) != 0) {
      fprintf(stderr, "decode %zu\n", i);
      return 1;
    }
    json_decref(j);
  }
  int64_t t1 = now_ns();
  mark_t m2 = mark();
  /* The pointer array is the benchmark's, not the product's. */
  m2.heap -= n * sizeof *decoded;
  report("decoded ScaledObjects (model + metadata)", m1, m2, n);

  for (size_t i = 0; i < n; i++) {
    evs_registry_decoded_t *d = decoded[i];
    char ns[32], name[32], uid[64];
    snprintf(ns, sizeof ns, "team-%zu", i % 50);
    snprintf(name, sizeof name, "worker-%zu", i);
    snprintf(uid, sizeof uid, "6f1c2a8e-0000-4000-8000-%012zu", i);
    evs_registry_object_t obj = {.origin = EVS_REGISTRY_API,
                                 .ns = ns,
                                 .name = name,
                                 .so = d->so,
                                 .check_error = d->check_error,
                                 .uid = uid,
                                 .created_ms = d->created_ms,
                                 .original_replicas = d->original_replicas,
                                 .last_active_ms = d->last_active_ms,
                                 .breaker_triggered = d->breaker_triggered,
                                 .breaker_state = d->breaker_state,
                                 .deleting = d->deleting,
                                 .finalizers = (const char *const *)d->finalizers,
                                 .n_finalizers = d->n_finalizers};
    if (evs_registry_apply(reg, &obj) != 0) {
      fprintf(stderr, "apply %zu\n", i);
      return 1;
    }
    d->so = NULL; /* stolen */
    evs_registry_decoded_free(d, NULL);
  }
  free(decoded);
  int64_t t2 = now_ns();
  mark_t m3 = mark();
  report("registry records (model, engine, breaker)", m1, m3, n);

  mark_t m4 = m3;
  if (leading) {
    evs_registry_set_leader(reg, 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    m4 = mark();
    report("  + leading: scalers and KEDA series", m3, m4, n);
  }
  int64_t t3 = now_ns();
  evs_registry_stats_t st;
  evs_registry_stats(reg, &st);
  printf("  total for the objects                        heap %10zd B %8.1f B/object   RSS "
         "%10ld B %8.1f B/object\n",
         (ssize_t)(m4.heap - m1.heap), (double)(ssize_t)(m4.heap - m1.heap) / (double)n,
         m4.rss - m1.rss, (double)(m4.rss - m1.rss) / (double)n);
  printf("  process: RSS %.1f MiB for %zu objects (goal: 100 MB at 50,000)\n", m4.rss / 1048576.0,
         n);
  printf("  time: decode %.3f s, apply %.3f s, lead %.3f s\n", (t1 - t0) / 1e9, (t2 - t1) / 1e9,
         (t3 - t2) / 1e9);
  printf("  registry: %zu objects, %zu broken, %zu targets, %zu scalers\n", st.objects, st.broken,
         st.targets, st.scalers);

  int closed = 0;
  evs_registry_close(reg, on_closed, &closed);
  while (closed < 1 && uv_run(&loop, UV_RUN_ONCE))
    ;
  evs_scaler_services_close(svc, on_closed, &closed);
  while (closed < 2 && uv_run(&loop, UV_RUN_ONCE))
    ;
  uv_run(&loop, UV_RUN_DEFAULT);
  evs_keda_metrics_free(km);
  evs_metrics_free(metrics);
  evs_config_free(cfg);
  uv_loop_close(&loop);
  mark_t m5 = mark();
  printf("  heap after freeing everything: %+zd B against the start\n",
         (ssize_t)(m5.heap - m0.heap));
  return 0;
}
