/* bench_metrics: the metrics registry at the size of a large installation.
 *
 *   bench_metrics [series = 60000] [expose runs = 20] [updates = 500000] [seed = 1]
 *
 * One gauge family shaped like KEDA's keda_scaler_metrics_value, with six labels (namespace,
 * scaledObject, scaler, triggerIndex, metric, type): 60000 series are 20000 ScaledObjects with
 * three triggers each. Printed: heap (mallinfo2) and RSS per series, the time to create a series,
 * evs_metrics_expose latency (p50/p95/p99/max over the runs) and output size with integer values,
 * with fractional values (the shortest round-trip float formatting path), and after one series
 * came and went (the sorted order is rebuilt), the time to update a series found by its label
 * values, and the time to remove a deleted ScaledObject's series with remove_matching and by
 * handle (evs_metric_remove).
 *
 *   ... [objects = 50000] [scrapes = 5]
 *
 * Then a scrape at the size of 50,000 ScaledObjects with one trigger each, their eleven series
 * made by the KEDA module (evs_keda_metrics_object_new, fractional values; the heap they take is
 * printed): the one-go exposition's time (what a scrape used
 * to stall the loop for), then GET /metrics over loopback through the real health endpoint and
 * HTTP server while a 1 ms timer measures how late the loop runs: the scrape's wall time, and
 * the loop lag during it against the goal of 5 ms. */
#include <inttypes.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "evscale/health.h"
#include "evscale/http_server.h"
#include "evscale/keda_metrics.h"
#include "evscale/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "bench_util.h"

#define N_LABELS 6
#define OBJ_LABEL 1 /* scaledObject */

static const char *const label_names[N_LABELS] = {"namespace",    "scaledObject", "scaler",
                                                  "triggerIndex", "metric",       "type"};

typedef struct {
  char buf[160]; /* the six values, NUL-separated */
  const char *v[N_LABELS];
} series_t;

/* Sorts v and prints its percentiles, in microseconds when `us`. */
static void print_pct(const char *what, uint32_t *v, size_t n, int us) {
  if (n == 0)
    return;
  qsort(v, n, sizeof *v, cmp_u32);
  double k = us ? 1000.0 : 1.0;
  const char *u = us ? "us" : "ns";
  printf("  %-40s n %7zu  p50 %9.1f %s  p95 %9.1f %s  p99 %9.1f %s  max %9.1f %s\n", what, n,
         v[n / 2] / k, u, v[(size_t)(n * 0.95)] / k, u, v[(size_t)(n * 0.99)] / k, u, v[n - 1] / k,
         u);
}

/* Label values as KEDA writes them: s{index}-{type}-{name} metric names (metricname.h). */
static void make_series(series_t *s, size_t i) {
  static const char *const scalers[] = {"redisScaler", "prometheusScaler", "cronScaler"};
  static const char *const metric[] = {"s0-redis-jobs-%06zu", "s1-prometheus-rate-%06zu",
                                       "s2-cron-UTC-08xx-20xx"};
  size_t obj = i / 3, trig = i % 3;
  char met[64];
  snprintf(met, sizeof met, metric[trig], obj);
  int len = snprintf(s->buf, sizeof s->buf, "team-%03zu%cworker-%06zu%c%s%c%zu%c%s%cscaledobject",
                     obj / 200, 0, obj, 0, scalers[trig], 0, trig, 0, met, 0);
  const char *p = s->buf;
  for (int l = 0; l < N_LABELS && p < s->buf + len; l++) {
    s->v[l] = p;
    p += strlen(p) + 1;
  }
}

typedef struct {
  evs_metrics_t *reg;
  evs_metric_family_t *fam;
  series_t *series;
  size_t n;
} bench_t;

static int build(bench_t *b) {
  uint32_t *lat = malloc(b->n * sizeof *lat);
  if (lat == NULL)
    return -1;
  size_t h0 = heap_in_use();
  long r0 = rss_bytes();
  b->reg = evs_metrics_new();
  evs_metric_desc_t d = {.name = "keda_scaler_metrics_value",
                         .help = "The current value for each scaler's metric that would be used by "
                                 "the HPA in computing the target average.",
                         .type = EVS_METRIC_GAUGE,
                         .label_names = label_names,
                         .n_labels = N_LABELS};
  if (b->reg == NULL || evs_metrics_register(b->reg, &d, &b->fam) != 0) {
    free(lat);
    return -1;
  }
  for (size_t i = 0; i < b->n; i++) {
    int64_t t0 = now_ns();
    evs_metric_t *m = evs_metric_family_child(b->fam, b->series[i].v);
    lat[i] = since(t0);
    if (m == NULL) {
      free(lat);
      return -1;
    }
    evs_metric_set(m, (double)(i % 97));
  }
  size_t h1 = heap_in_use();
  long r1 = rss_bytes();
  printf("registry with %zu series of one family, %d labels:\n", b->n, N_LABELS);
  printf("  heap %zu B = %.1f B/series; RSS delta %ld B = %.1f B/series\n", h1 - h0,
         (double)(h1 - h0) / b->n, r1 - r0, (double)(r1 - r0) / b->n);
  print_pct("evs_metric_family_child (create)", lat, b->n, 0);
  free(lat);
  return 0;
}

static int expose_runs(bench_t *b, const char *what, int runs, int churn) {
  uint32_t *lat = malloc((size_t)runs * sizeof *lat);
  size_t len = 0;
  if (lat == NULL)
    return -1;
  for (int r = 0; r < runs; r++) {
    if (churn) { /* a series goes and comes back: the sorted order must be rebuilt */
      const series_t *s = &b->series[rng() % b->n];
      if (evs_metric_family_remove(b->fam, s->v) != 0 ||
          evs_metric_family_child(b->fam, s->v) == NULL)
        return free(lat), -1;
    }
    char *out = NULL;
    int64_t t0 = now_ns();
    int rc = evs_metrics_expose(b->reg, &out, &len);
    lat[r] = since(t0);
    free(out);
    if (rc != 0)
      return free(lat), -1;
  }
  char name[80];
  snprintf(name, sizeof name, "expose, %s", what);
  print_pct(name, lat, (size_t)runs, 1);
  printf("    output %zu B = %.1f B/series\n", len, (double)len / b->n);
  free(lat);
  return 0;
}

static int bench_expose(bench_t *b, int runs) {
  size_t h0 = heap_in_use();
  /* The first exposition sorts every series and grows its buffer from nothing; later ones reuse
   * the sorted index and size their buffer from the last output. */
  if (expose_runs(b, "first (cold: sort + buffer growth)", 1, 0) != 0 ||
      expose_runs(b, "integer values", runs, 0) != 0)
    return -1;
  printf("    heap kept by the registry after exposing (sorted index, size hint): %+ld B\n",
         (long)heap_in_use() - (long)h0);
  for (size_t i = 0; i < b->n; i++) /* what Prometheus queries return: rates, averages */
    evs_metric_set(evs_metric_family_lookup(b->fam, b->series[i].v),
                   (double)(rng() % 10000000) / 1000.0 + 0.001);
  if (expose_runs(b, "fractional values", runs, 0) != 0)
    return -1;
  return expose_runs(b, "fractional, one series churned per run", runs, 1);
}

static int bench_update(bench_t *b, size_t updates) {
  uint32_t *lat = malloc(updates * sizeof *lat), *lat2 = malloc(updates * sizeof *lat2);
  if (lat == NULL || lat2 == NULL)
    return free(lat), free(lat2), -1;
  size_t missing = 0;
  double c0 = cpu_seconds();
  /* Two loops, each over its own random series: timing lookup right after child() on the same
   * series would measure a warm cache. */
  for (size_t i = 0; i < updates; i++) {
    const series_t *s = &b->series[rng() % b->n];
    int64_t t0 = now_ns();
    evs_metric_set(evs_metric_family_child(b->fam, s->v), (double)i);
    lat[i] = since(t0);
  }
  for (size_t i = 0; i < updates; i++) {
    const series_t *s = &b->series[rng() % b->n];
    int64_t t0 = now_ns();
    evs_metric_t *m = evs_metric_family_lookup(b->fam, s->v);
    lat2[i] = since(t0);
    missing += m == NULL;
  }
  double cpu = cpu_seconds() - c0;
  printf("updates by label values (random series), %.3f CPU s for both loops:\n", cpu);
  print_pct("evs_metric_family_child + evs_metric_set", lat, updates, 0);
  print_pct("evs_metric_family_lookup", lat2, updates, 0);
  free(lat);
  free(lat2);
  return missing ? -1 : 0;
}

/* The sample formatter alone: what separates the integer and fractional expositions. */
static int bench_format(size_t calls) {
  uint32_t *lat = malloc(calls * sizeof *lat);
  char buf[EVS_METRICS_FLOAT_BUF];
  if (lat == NULL)
    return -1;
  for (int frac = 0; frac < 2; frac++) {
    for (size_t i = 0; i < calls; i++) {
      double v = frac ? (double)(rng() % 10000000) / 1000.0 + 0.001 : (double)(rng() % 100000);
      int64_t t0 = now_ns();
      evs_metrics_format_float(buf, v);
      lat[i] = since(t0);
    }
    print_pct(frac ? "evs_metrics_format_float, fractional" : "evs_metrics_format_float, integer",
              lat, calls, 0);
  }
  free(lat);
  return 0;
}

/* A deleted ScaledObject takes its series with it (remove_matching on scaledObject). */
static int bench_remove(bench_t *b, size_t objects) {
  uint32_t *lat = malloc(objects * sizeof *lat);
  size_t removed = 0;
  if (lat == NULL)
    return -1;
  for (size_t k = 0; k < objects; k++) {
    const series_t *s = &b->series[(rng() % (b->n / 3)) * 3];
    int64_t t0 = now_ns();
    size_t got = evs_metric_family_remove_matching(b->fam, OBJ_LABEL, s->v[OBJ_LABEL]);
    lat[k] = since(t0);
    removed += got;
    for (size_t t = 0; t < 3; t++) /* and it comes back: the size stays the same */
      evs_metric_family_child(b->fam, s[t].v);
  }
  printf("remove_matching(scaledObject) on %zu series, %zu removed:\n", b->n, removed);
  print_pct("evs_metric_family_remove_matching", lat, objects, 1);
  /* The same removal the way an object that keeps its series' handles does it. */
  removed = 0;
  for (size_t k = 0; k < objects; k++) {
    const series_t *s = &b->series[(rng() % (b->n / 3)) * 3];
    evs_metric_t *h[3];
    for (size_t t = 0; t < 3; t++)
      h[t] = evs_metric_family_lookup(b->fam, s[t].v);
    int64_t t0 = now_ns();
    for (size_t t = 0; t < 3; t++)
      removed += evs_metric_remove(h[t]) == 0;
    lat[k] = since(t0);
    for (size_t t = 0; t < 3; t++)
      evs_metric_family_child(b->fam, s[t].v);
  }
  printf("evs_metric_remove of an object's 3 series by handle, %zu removed:\n", removed);
  print_pct("3 x evs_metric_remove", lat, objects, 0);
  free(lat);
  return evs_metric_family_size(b->fam) == b->n ? 0 : -1;
}

/* ---- a scrape at 50,000 ScaledObjects: loop lag while /metrics streams -------------------- */

/* The series of KEDA's families and evscale's own per ScaledObject with one trigger (four per
 * trigger, seven per object: evs_keda_metrics_object_series), made by the KEDA module itself as
 * the registry makes them, so what is measured is what a ScaledObject costs in production. */
#define SCRAPE_SERIES 11

typedef struct {
  uv_loop_t loop;
  evs_metrics_t *reg;
  evs_health_t *health;
  evs_http_server_t *srv;
  uv_timer_t tick;
  uv_async_t done;
  uint64_t last_tick;
  int scraping;
  uint32_t *lags; /* lateness of the 1 ms tick while a scrape runs, ns */
  /* The loop thread's own CPU between two ticks while a scrape runs, ns: the part of the lag the
   * loop's work causes, whatever the machine's load (on a shared machine the wall-clock lag is
   * mostly preemption: the idle lag between scrapes shows how much). */
  uint32_t *cpu_lags;
  uint64_t last_cpu;
  size_t n_lags, cap_lags;
  uint32_t max_lag_idle;
  int port, scrapes;
  uint32_t *scrape_ns;
  size_t body_bytes;
  int health_closed;
  evs_keda_metrics_t *km;
  evs_keda_metrics_object_t **objs;
  size_t n_objs;
} scrape_bench_t;

/* 50,000 ScaledObjects through evs_keda_metrics_object_new, 200 per namespace, with fractional
 * values, and the heap they take (series, handles, indexes and sorted views, after one
 * exposition built the views). */
static int scrape_registry(scrape_bench_t *b, size_t objects) {
  static const evs_keda_build_t build = {"0.0.0-bench", "0000000"};
  if (evs_keda_metrics_new(b->reg, EVS_KEDA_COMPAT_NONE, &build, &b->km) != 0)
    return -1;
  b->objs = calloc(objects ? objects : 1, sizeof *b->objs);
  if (b->objs == NULL)
    return -1;
  char *out;
  size_t len;
  if (evs_metrics_expose(b->reg, &out, &len) != 0)
    return -1;
  free(out);
  size_t h0 = heap_in_use();
  char ns[32], so[32], met[48];
  for (size_t o = 0; o < objects; o++) {
    snprintf(ns, sizeof ns, "team-%03zu", o / 200);
    snprintf(so, sizeof so, "worker-%06zu", o);
    snprintf(met, sizeof met, "s0-redis-jobs-%06zu", o);
    evs_keda_trigger_t tr = {"redisScaler", met, "redis"};
    evs_keda_metrics_object_t *x;
    if (evs_keda_metrics_object_new(b->km, ns, so, &tr, 1, &x) != 0)
      return -1;
    b->objs[b->n_objs++] = x;
    if (evs_keda_metrics_object_series(x) != SCRAPE_SERIES)
      return -1;
    evs_keda_metrics_set_value(x, 0, (double)(rng() % 10000000) / 1000.0 + 0.001);
    evs_keda_metrics_set_latency(x, 0, (double)(rng() % 100000) / 1e6);
    evs_keda_metrics_set_active(x, 0, (int)(o & 1));
    for (unsigned e = (unsigned)(rng() % 3); e > 0; e--)
      evs_keda_metrics_scaler_error(x, 0);
    evs_keda_metrics_set_loop_latency(x, (double)(rng() % 100000) / 1e7);
    for (unsigned e = (unsigned)(rng() % 50); e > 0; e--)
      evs_keda_metrics_scaled(x, EVS_KEDA_DIR_UP, 0.1);
  }
  if (evs_metrics_expose(b->reg, &out, &len) != 0)
    return -1;
  free(out);
  long used = (long)heap_in_use() - (long)h0;
  printf("KEDA series of %zu ScaledObjects (one trigger each): heap %ld B = %.1f B/object "
         "(children, handles, hash tables, sorted views)\n",
         objects, used, objects ? (double)used / (double)objects : 0.0);
  return 0;
}

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Every millisecond: how late the timer ran (the loop's lag), kept while a scrape runs. */
static void on_tick(uv_timer_t *t) {
  scrape_bench_t *b = t->data;
  uint64_t now = uv_hrtime();
  uint64_t due = b->last_tick + 1000000u;
  uint32_t lag = now > due ? (uint32_t)(now - due > UINT32_MAX ? UINT32_MAX : now - due) : 0;
  uint64_t cpu = thread_cpu_ns();
  uint64_t spent = cpu - b->last_cpu;
  b->last_cpu = cpu;
  b->last_tick = now;
  if (!b->scraping) {
    if (lag > b->max_lag_idle)
      b->max_lag_idle = lag;
    return;
  }
  if (b->n_lags < b->cap_lags) {
    b->cpu_lags[b->n_lags] = (uint32_t)(spent > UINT32_MAX ? UINT32_MAX : spent);
    b->lags[b->n_lags++] = lag;
  }
}

static void on_bench_health_closed(void *data) { ((scrape_bench_t *)data)->health_closed = 1; }

static void on_bench_srv_closed(evs_http_server_t *s, void *data) {
  (void)s;
  scrape_bench_t *b = data;
  evs_health_close(b->health, on_bench_health_closed, b);
}

static void on_bench_done(uv_async_t *a) {
  scrape_bench_t *b = a->data;
  uv_close((uv_handle_t *)&b->done, NULL);
  uv_close((uv_handle_t *)&b->tick, NULL);
  evs_http_server_close(b->srv, on_bench_srv_closed, b);
}

/* The scraper: GET /metrics HTTP/1.1 on a fresh connection each time, read to the end (the
 * terminal chunk; Connection: close makes it the EOF), as Prometheus does every interval. */
static void scraper(void *arg) {
  scrape_bench_t *b = arg;
  static char buf[1 << 16];
  for (int i = 0; i < b->scrapes; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)b->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
    usleep(100 * 1000); /* idle lag is measured between scrapes */
    int64_t t0 = now_ns();
    __atomic_store_n(&b->scraping, 1, __ATOMIC_SEQ_CST);
    size_t total = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)sizeof req - 1) {
      ssize_t r;
      while ((r = recv(fd, buf, sizeof buf, 0)) > 0)
        total += (size_t)r;
    }
    b->scrape_ns[i] = since(t0);
    __atomic_store_n(&b->scraping, 0, __ATOMIC_SEQ_CST);
    b->body_bytes = total;
    close(fd);
  }
  uv_async_send(&b->done);
}

/* What one loop turn of a streamed scrape costs: a slice of EVS_HEALTH_SCRAPE_SLICE bytes, by
 * the wall clock and by this thread's CPU clock (which a loaded machine's preemption does not
 * inflate). */
static int bench_slices(evs_metrics_t *reg) {
  evs_metrics_stream_t *st;
  size_t cap = 4096, n = 0, total = 0;
  uint32_t *wall = malloc(cap * sizeof *wall), *cpu = malloc(cap * sizeof *cpu);
  if (wall == NULL || cpu == NULL || evs_metrics_stream_new(reg, &st) != 0)
    return -1;
  uint64_t c_all = thread_cpu_ns();
  for (;;) {
    char *out;
    size_t len;
    int64_t t0 = now_ns();
    uint64_t c0 = thread_cpu_ns();
    if (evs_metrics_stream_next(st, EVS_HEALTH_SCRAPE_SLICE, &out, &len) != 0)
      return -1;
    uint64_t c1 = thread_cpu_ns();
    if (out == NULL)
      break;
    if (n < cap) {
      wall[n] = since(t0);
      cpu[n++] = (uint32_t)(c1 - c0);
    }
    total += len;
    free(out);
  }
  uint64_t c_end = thread_cpu_ns();
  evs_metrics_stream_free(st);
  printf("  streamed exposition in slices of %d B: %zu B in %zu slices, %.1f ms CPU in all\n",
         EVS_HEALTH_SCRAPE_SLICE, total, n, (double)(c_end - c_all) / 1e6);
  print_pct("one slice, wall clock", wall, n, 1);
  print_pct("one slice, thread CPU", cpu, n, 1);
  free(wall);
  free(cpu);
  return 0;
}

static int bench_scrape(size_t objects, int scrapes) {
  scrape_bench_t *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return -1;
  b->scrapes = scrapes;
  b->cap_lags = 1000000;
  b->lags = malloc(b->cap_lags * sizeof *b->lags);
  b->cpu_lags = malloc(b->cap_lags * sizeof *b->cpu_lags);
  b->scrape_ns = calloc((size_t)scrapes, sizeof *b->scrape_ns);
  uv_loop_init(&b->loop);
  b->reg = evs_metrics_new();
  if (b->lags == NULL || b->cpu_lags == NULL || b->scrape_ns == NULL || b->reg == NULL ||
      evs_health_new(&b->loop, b->reg, NULL, &b->health) != 0 || scrape_registry(b, objects) != 0 ||
      evs_http_server_new(&b->loop, NULL, &b->srv) != 0 ||
      evs_health_attach(b->health, b->srv) != 0 ||
      evs_http_server_listen(b->srv, "127.0.0.1:0") != 0)
    return -1;
  /* The old way, for comparison: the whole exposition in one go on the loop thread. */
  uint32_t *one = malloc((size_t)scrapes * sizeof *one), *one_cpu = malloc((size_t)scrapes * 4);
  size_t len = 0;
  for (int i = 0; i < scrapes; i++) {
    char *out;
    int64_t t0 = now_ns();
    uint64_t c0 = thread_cpu_ns();
    if (evs_metrics_expose(b->reg, &out, &len) != 0)
      return -1;
    one_cpu[i] = (uint32_t)(thread_cpu_ns() - c0);
    one[i] = since(t0);
    free(out);
  }
  printf("scrape at %zu ScaledObjects x %d series = %zu series, exposition %zu B:\n", objects,
         SCRAPE_SERIES, objects * SCRAPE_SERIES, len);
  print_pct("evs_metrics_expose in one go, wall (= stall)", one, (size_t)scrapes, 1);
  print_pct("evs_metrics_expose in one go, thread CPU", one_cpu, (size_t)scrapes, 1);
  free(one);
  free(one_cpu);
  if (bench_slices(b->reg) != 0)
    return -1;
  b->port = evs_http_server_port(b->srv);
  uv_timer_init(&b->loop, &b->tick);
  b->tick.data = b;
  b->last_tick = uv_hrtime();
  b->last_cpu = thread_cpu_ns();
  uv_timer_start(&b->tick, on_tick, 1, 1);
  uv_async_init(&b->loop, &b->done, on_bench_done);
  b->done.data = b;
  uv_thread_t t;
  uv_thread_create(&t, scraper, b);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_thread_join(&t);
  int ok = b->health_closed && uv_loop_close(&b->loop) == 0 && evs_metrics_streams(b->reg) == 0;
  print_pct("GET /metrics streamed, wall time per scrape", b->scrape_ns, (size_t)scrapes, 1);
  printf("    response %zu B (headers + chunked body)\n", b->body_bytes);
  uint32_t max = 0;
  for (size_t i = 0; i < b->n_lags; i++)
    if (b->lags[i] > max)
      max = b->lags[i];
  print_pct("loop lag during the scrapes (1 ms timer)", b->lags, b->n_lags, 1);
  printf("    max loop lag during scrapes %.2f ms (goal < 5 ms: %s); between scrapes %.2f ms\n",
         max / 1e6, max < 5000000 ? "PASS" : "MISS", b->max_lag_idle / 1e6);
  uint32_t cmax = 0;
  for (size_t i = 0; i < b->n_lags; i++)
    if (b->cpu_lags[i] > cmax)
      cmax = b->cpu_lags[i];
  print_pct("loop thread CPU between two ticks (its own lag)", b->cpu_lags, b->n_lags, 1);
  printf("    max loop CPU between ticks during scrapes %.2f ms (goal < 5 ms: %s)\n", cmax / 1e6,
         cmax < 5000000 ? "PASS" : "MISS");
  for (size_t i = 0; i < b->n_objs; i++)
    evs_keda_metrics_object_free(b->objs[i]);
  free(b->objs);
  evs_keda_metrics_free(b->km);
  evs_metrics_free(b->reg);
  free(b->lags);
  free(b->cpu_lags);
  free(b->scrape_ns);
  free(b);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  bench_t b = {0};
  long n = argc > 1 ? atol(argv[1]) : 60000;
  int runs = argc > 2 ? atoi(argv[2]) : 20;
  long updates = argc > 3 ? atol(argv[3]) : 500000;
  rng_state = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
  long objects = argc > 5 ? atol(argv[5]) : 50000;
  int scrapes = argc > 6 ? atoi(argv[6]) : 5;
  if (n < 3 || runs < 1 || updates < 1 || rng_state == 0 || objects < 0 || scrapes < 1) {
    fprintf(stderr,
            "usage: %s [series=60000] [runs=20] [updates=500000] [seed=1] [objects=50000] "
            "[scrapes=5]\n",
            argv[0]);
    return 2;
  }
  b.n = (size_t)n / 3 * 3;
  b.series = malloc(b.n * sizeof *b.series);
  if (b.series == NULL)
    return 2;
  for (size_t i = 0; i < b.n; i++)
    make_series(&b.series[i], i);
  size_t h0 = heap_in_use();
  int rc = build(&b);
  rc = rc ? rc : bench_expose(&b, runs);
  rc = rc ? rc : bench_format(b.n);
  rc = rc ? rc : bench_update(&b, (size_t)updates);
  rc = rc ? rc : bench_remove(&b, 200);
  evs_metrics_free(b.reg);
  if (rc == 0 && objects > 0)
    rc = bench_scrape((size_t)objects, scrapes);
  printf("heap after evs_metrics_free: %+ld B against before the registry\n",
         (long)heap_in_use() - (long)h0);
  free(b.series);
  if (rc != 0)
    fprintf(stderr, "a registry operation failed\n");
  return rc ? 1 : 0;
}
