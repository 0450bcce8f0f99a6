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
 * values, and the time to remove a deleted ScaledObject's series with remove_matching. */
#include <inttypes.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "evscale/metrics.h"

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
  free(lat);
  return evs_metric_family_size(b->fam) == b->n ? 0 : -1;
}

int main(int argc, char **argv) {
  bench_t b = {0};
  long n = argc > 1 ? atol(argv[1]) : 60000;
  int runs = argc > 2 ? atoi(argv[2]) : 20;
  long updates = argc > 3 ? atol(argv[3]) : 500000;
  rng_state = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
  if (n < 3 || runs < 1 || updates < 1 || rng_state == 0) {
    fprintf(stderr, "usage: %s [series=60000] [runs=20] [updates=500000] [seed=1]\n", argv[0]);
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
  printf("heap after evs_metrics_free: %+ld B against before the registry\n",
         (long)heap_in_use() - (long)h0);
  free(b.series);
  if (rc != 0)
    fprintf(stderr, "a registry operation failed\n");
  return rc ? 1 : 0;
}
