/* bench_engine: memory per ScaledObject and decision latency of the pure decision path.
 *
 *   bench_engine [N objects = 20000] [K simulated hours = 1] [seed = 1]
 *
 * Phase 1 builds N ScaledObjects from YAML text (evs_so_parse_yaml), a mix of the shapes users
 * run (shared/seeds): redis-only (45 %), prometheus with idleReplicaCount (25 %), cron-only
 * (20 %), the "everything" object with three triggers + scalingModifiers + behavior + fallback
 * (9 %) and paused-replicas (1 %), each with its engine state and breaker state, and reports the
 * heap (mallinfo2) and RSS (/proc/self/status) they add, per object. The bench's own bookkeeping
 * (reading arrays, random-walk state) is allocated before the baseline so it is not counted.
 *
 * Phase 2 replays K simulated hours: every object gets one reading per trigger every 15 s of
 * simulated time (objects spread over the 15 s by a phase), random-walk values with drains to 0
 * and rare failed readings, cron readings from evs_cron_window on the object's schedule. Each
 * reading goes through evs_engine_decide, then evs_breaker_decide, then (when something is
 * written) evs_engine_record_scale, as src/scale/simulate.c wires them; the three calls together
 * are timed as one decision. The write invariant of shared/ARCHITECTURE.md is checked on every
 * write; any violation makes the exit status 1. */
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "evscale/breaker.h"
#include "evscale/cron.h"
#include "evscale/cronexpr.h"
#include "evscale/engine.h"
#include "evscale/error.h"
#include "evscale/scaledobject.h"

#include "bench_util.h"

#define T0_MS INT64_C(1795392000000) /* 2026-11-23 00:00:00 UTC: replay start */
#define STEP_MS 15000                /* one reading per trigger per 15 s of simulated time */
#define MAX_TRIG 3
#define N_CRON 60 /* distinct cron windows: start at minute k, end 15 minutes later */

typedef enum { K_REDIS, K_PROM, K_CRON, K_FULL, K_PAUSED, K_FLAP, K__COUNT } kind_t;

typedef struct {
  evs_so_t *so;
  evs_engine_state_t *st;
  evs_breaker_t *br;
  evs_reading_t r[MAX_TRIG];
  double walk[MAX_TRIG];
  int32_t current;
  uint8_t kind;
  uint8_t cron;      /* index into the cron table */
  uint8_t cron_trig; /* which trigger is the cron one (MAX_TRIG = none) */
  int32_t phase_ms;
} obj_t;

typedef struct {
  evs_cronexpr_t start, end;
} cron_pair_t;

static double rng_unit(void) { return (double)(rng() >> 11) / 9007199254740992.0; }

/* ---- the ScaledObjects ---------------------------------------------------------------------- */

#define HEAD                                                                                       \
  "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: so-%06d\n"                 \
  "  namespace: team-%03d\n%s"                                                                     \
  "spec:\n  scaleTargetRef:\n    name: worker-%06d\n"

/* The seeds' Redis list worker (test/data/so/valid-redis.yaml), half of them scaling to zero. */
static int fmt_redis(char *b, size_t cap, int i, const char *ann) {
  return snprintf(b, cap,
                  HEAD "  pollingInterval: 15\n  cooldownPeriod: 60\n  minReplicaCount: %d\n"
                       "  maxReplicaCount: 100\n  triggers:\n  - type: redis\n    metadata:\n"
                       "      address: redis-master.redis.svc:6379\n      listName: jobs-%d\n"
                       "      listLength: \"20\"\n      activationListLength: \"0\"\n",
                  i, i / 200, ann, i, i % 2, i);
}

static int fmt_prom(char *b, size_t cap, int i) {
  return snprintf(b, cap,
                  HEAD
                  "  idleReplicaCount: 0\n  minReplicaCount: 2\n  maxReplicaCount: 50\n"
                  "  triggers:\n  - type: prometheus\n    metadata:\n"
                  "      serverAddress: http://prometheus.monitoring.svc:9090\n"
                  "      query: sum(rate(http_requests_total{deployment=\"worker-%06d\"}[2m]))\n"
                  "      threshold: '100.50'\n      activationThreshold: '5.5'\n",
                  i, i / 200, "", i, i);
}

/* A target whose scale-down window is 0: the only kind that can flap (breaker.h), so the
 * breaker's trip / hold / close paths run too. */
static int fmt_flap(char *b, size_t cap, int i) {
  return snprintf(b, cap,
                  HEAD "  minReplicaCount: 1\n  maxReplicaCount: 30\n  advanced:\n"
                       "    horizontalPodAutoscalerConfig:\n      behavior:\n"
                       "        scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: "
                       "Percent, value: 100, periodSeconds: 15}]}\n"
                       "  triggers:\n  - type: redis\n    metadata:\n"
                       "      address: redis-master.redis.svc:6379\n      listName: flap-%d\n"
                       "      listLength: \"20\"\n",
                  i, i / 200, "", i, i);
}

/* The seeds' day/night profile (test/data/so/valid-cron.yaml), on an hourly window. */
static int fmt_cron(char *b, size_t cap, int i) {
  return snprintf(b, cap,
                  HEAD "  minReplicaCount: 2\n  maxReplicaCount: 20\n  triggers:\n  - type: cron\n"
                       "    metadata:\n      timezone: UTC\n      start: %d * * * *\n"
                       "      end: %d * * * *\n      desiredReplicas: \"8\"\n",
                  i, i / 200, "", i, i % N_CRON, (i % N_CRON + 15) % 60);
}

/* test/data/so/valid-full.yaml: every section at once. */
static int fmt_full(char *b, size_t cap, int i) {
  return snprintf(
      b, cap,
      HEAD "  pollingInterval: 5\n  cooldownPeriod: 60\n  initialCooldownPeriod: 30\n"
           "  idleReplicaCount: 0\n  minReplicaCount: 1\n  maxReplicaCount: 50\n"
           "  fallback:\n    failureThreshold: 3\n    replicas: 10\n"
           "    behavior: currentReplicasIfHigher\n"
           "  advanced:\n    restoreToOriginalReplicaCount: true\n"
           "    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleDown:\n"
           "          stabilizationWindowSeconds: 300\n          policies:\n"
           "          - {type: Percent, value: 20, periodSeconds: 60}\n        scaleUp:\n"
           "          stabilizationWindowSeconds: 0\n          policies:\n"
           "          - {type: Pods, value: 4, periodSeconds: 60}\n"
           "          - {type: Percent, value: 100, periodSeconds: 60}\n"
           "          selectPolicy: Max\n"
           "    scalingModifiers:\n      formula: \"max(queue, rate / 2) + (peak ?? 0)\"\n"
           "      target: \"10\"\n      activationTarget: \"1\"\n      metricType: AverageValue\n"
           "  triggers:\n  - type: redis\n    name: queue\n    metadata:\n"
           "      address: redis:6379\n      listName: orders-%d\n      listLength: \"10\"\n"
           "  - type: prometheus\n    name: rate\n    metadata:\n"
           "      serverAddress: http://prometheus:9090\n"
           "      query: sum(rate(orders_total{shop=\"%d\"}[1m]))\n      threshold: \"50\"\n"
           "  - type: cron\n    name: peak\n    metadata:\n      timezone: UTC\n"
           "      start: %d * * * *\n      end: %d * * * *\n      desiredReplicas: \"8\"\n",
      i, i / 200, "", i, i, i, i % N_CRON, (i % N_CRON + 15) % 60);
}

static kind_t kind_of(int i) {
  int m = i % 100;
  if (m < 44)
    return K_REDIS;
  if (m < 45)
    return K_FLAP;
  if (m < 70)
    return K_PROM;
  if (m < 90)
    return K_CRON;
  if (m < 99)
    return K_FULL;
  return K_PAUSED;
}

static int build_yaml(char *b, size_t cap, int i, kind_t k) {
  switch (k) {
  case K_REDIS:
    return fmt_redis(b, cap, i, "");
  case K_PROM:
    return fmt_prom(b, cap, i);
  case K_CRON:
    return fmt_cron(b, cap, i);
  case K_FULL:
    return fmt_full(b, cap, i);
  case K_PAUSED:
    return fmt_redis(b, cap, i, "  annotations:\n    autoscaling.keda.sh/paused-replicas: \"3\"\n");
  case K_FLAP:
    return fmt_flap(b, cap, i);
  case K__COUNT:
    break;
  }
  return -1;
}

/* Parses object i into o; *lat_ns (may be NULL) receives the time of evs_so_parse_yaml alone. */
static int parse_one(obj_t *o, int i, uint32_t *lat_ns) {
  char buf[4096];
  evs_diag_t d;
  int len = build_yaml(buf, sizeof buf, i, (kind_t)o->kind);
  if (len < 0 || (size_t)len >= sizeof buf)
    return -1;
  evs_diag_init(&d);
  int64_t t0 = now_ns();
  int rc = evs_so_parse_yaml(buf, (size_t)len, "bench.yaml", &o->so, &d);
  if (lat_ns)
    *lat_ns = (uint32_t)(now_ns() - t0);
  for (size_t j = 0; rc != 0 && j < d.n; j++) {
    char m[256];
    evs_diag_format(&d, j, m, sizeof m);
    fprintf(stderr, "%s\n", m);
  }
  evs_diag_free(&d);
  return rc;
}

/* ---- phase 1: memory ------------------------------------------------------------------------ */

typedef struct {
  size_t heap_spec, heap_engine, heap_breaker;
  long rss_total;
} mem_t;

/* parse_lat (n entries, allocated by the caller before the baseline) receives parse times. */
static int build_all(obj_t *objs, int n, mem_t *m, uint32_t *parse_lat) {
  size_t h0 = heap_in_use();
  long r0 = rss_bytes();
  for (int i = 0; i < n; i++)
    if (parse_one(&objs[i], i, &parse_lat[i]) != 0)
      return -1;
  size_t h1 = heap_in_use();
  for (int i = 0; i < n; i++)
    if (evs_engine_state_new(objs[i].so, T0_MS - 86400000, &objs[i].st) != 0)
      return -1;
  size_t h2 = heap_in_use();
  for (int i = 0; i < n; i++) {
    /* The registry keeps the breaker state per target; one allocation each, as it would be if
     * not embedded. */
    objs[i].br = malloc(sizeof *objs[i].br);
    if (objs[i].br == NULL)
      return -1;
    evs_breaker_init(objs[i].br);
  }
  size_t h3 = heap_in_use();
  m->heap_spec = h1 - h0;
  m->heap_engine = h2 - h1;
  m->heap_breaker = h3 - h2;
  m->rss_total = rss_bytes() - r0;
  return 0;
}

static void print_memory(int n, const mem_t *m) {
  size_t total = m->heap_spec + m->heap_engine + m->heap_breaker;
  printf("memory (%d objects):\n", n);
  printf("  sizeof: evs_so_t %zu, evs_trigger_t %zu, evs_engine_state_t %zu, "
         "evs_trigger_health_t %zu, evs_breaker_t %zu\n",
         sizeof(evs_so_t), sizeof(evs_trigger_t), sizeof(evs_engine_state_t),
         sizeof(evs_trigger_health_t), sizeof(evs_breaker_t));
  printf("  heap spec (evs_so_parse_yaml)     %10zu B  %7.1f B/object\n", m->heap_spec,
         (double)m->heap_spec / n);
  printf("  heap engine state                 %10zu B  %7.1f B/object\n", m->heap_engine,
         (double)m->heap_engine / n);
  printf("  heap breaker state                %10zu B  %7.1f B/object\n", m->heap_breaker,
         (double)m->heap_breaker / n);
  printf("  heap total                        %10zu B  %7.1f B/object (target ~2048)\n", total,
         (double)total / n);
  if (total == 0)
    printf("  (mallinfo2 reports nothing under a sanitizer's allocator: read the RSS line)\n");
  printf("  RSS delta                         %10ld B  %7.1f B/object\n", m->rss_total,
         (double)m->rss_total / n);
}

/* Heap per object of each shape, over a batch of that shape: one object alone is not measurable,
 * as freed chunks parked in glibc's tcache still count as in use in mallinfo2. */
#define SHAPE_BATCH 500

static void print_per_kind(void) {
  static const char *names[] = {"redis",  "prometheus", "cron", "full (3 triggers)",
                                "paused", "flapping"};
  obj_t *batch = calloc(SHAPE_BATCH, sizeof *batch);
  if (batch == NULL)
    return;
  for (int k = 0; k < K__COUNT; k++) {
    size_t h0 = heap_in_use(), h1 = 0;
    int n = 0, ok = 1;
    for (; ok && n < SHAPE_BATCH; n++) {
      batch[n].kind = (uint8_t)k;
      ok = parse_one(&batch[n], 1000000 + n, NULL) == 0;
    }
    h1 = heap_in_use();
    for (int i = 0; ok && i < n; i++)
      ok = evs_engine_state_new(batch[i].so, T0_MS, &batch[i].st) == 0;
    size_t h2 = heap_in_use();
    if (ok)
      printf("  shape %-18s spec %6.1f B + engine %5.1f B + breaker %zu B = %6.1f B/object\n",
             names[k], (double)(h1 - h0) / n, (double)(h2 - h1) / n, sizeof(evs_breaker_t),
             (double)(h2 - h0) / n + (double)sizeof(evs_breaker_t));
    for (int i = 0; i < n; i++) {
      evs_engine_state_free(batch[i].st);
      evs_so_free(batch[i].so);
      memset(&batch[i], 0, sizeof batch[i]);
    }
  }
  free(batch);
}

/* ---- phase 2: replay ------------------------------------------------------------------------ */

typedef struct {
  uint32_t *lat_ns;    /* engine + breaker + record, per decision */
  uint32_t *decide_ns; /* evs_engine_decide alone */
  size_t n, cap;
  uint64_t writes, violations, decide_errors;
  uint64_t verdicts[EVS_BREAKER_CLOSE + 1];
  uint64_t reasons[EVS_REASON__COUNT];
} stats_t;

static double walk_step(double v, double scale) {
  double r = rng_unit();
  if (r < 0.005)
    return 0; /* the queue drains */
  if (r < 0.01)
    return v + scale * 40; /* a burst */
  v += (rng_unit() - 0.5) * scale * 4;
  return v < 0 ? 0 : v;
}

static void fill_readings(obj_t *o, const cron_pair_t *crons, int64_t now) {
  for (size_t t = 0; t < o->so->n_triggers; t++) {
    evs_reading_t *r = &o->r[t];
    *r = (evs_reading_t){.time_ms = now};
    if (t == o->cron_trig) {
      evs_cron_window_t w;
      evs_cron_window(&crons[o->cron].start, evs_tz_utc(), &crons[o->cron].end, evs_tz_utc(), now,
                      &w);
      r->active = w.active;
      r->value = w.active ? 8 : 0;
      continue;
    }
    if (o->kind == K_FLAP) { /* a square wave: 10 replicas' worth, then almost nothing */
      r->value = (now - T0_MS) / STEP_MS % 2 ? 200 : 5;
      r->active = 1;
      continue;
    }
    if (rng_unit() < 0.002) { /* a failed read: the engine counts failures, fallback kicks in */
      r->error = EVS_EMETRIC;
      continue;
    }
    double scale = o->so->triggers[t].kind == EVS_TRIG_REDIS ? 5 : 20;
    o->walk[t] = walk_step(o->walk[t], scale);
    r->value = o->so->triggers[t].kind == EVS_TRIG_REDIS ? floor(o->walk[t]) : o->walk[t];
    r->active = r->value > o->so->triggers[t].activation_target;
  }
}

/* shared/ARCHITECTURE.md: a written count is in [min, max], or exactly the idle or paused count,
 * or the "at least 1" write before a hand-over to the fallback HPA. */
static int write_ok(const evs_so_t *so, int32_t to, evs_breaker_verdict_t v) {
  if (v == EVS_BREAKER_TRIP_SCALE_TO_ONE)
    return to == 1;
  if (so->paused_replicas >= 0)
    return to == so->paused_replicas;
  if (so->paused)
    return 0;
  if (so->idle_replicas >= 0 && to == so->idle_replicas)
    return 1;
  return to >= evs_so_min(so) && to <= evs_so_max(so);
}

static void count_write(stats_t *s, const obj_t *o, int32_t to, evs_breaker_verdict_t v) {
  s->writes++;
  if (!write_ok(o->so, to, v)) {
    char source[EVS_SO_SOURCE_MAX];
    if (s->violations < 10)
      fprintf(stderr, "VIOLATION %s: wrote %d (min %d max %d idle %d paused %d) verdict %s\n",
              evs_so_source(o->so, source, sizeof source), (int)to, (int)evs_so_min(o->so),
              (int)evs_so_max(o->so), (int)o->so->idle_replicas, (int)o->so->paused_replicas,
              evs_breaker_verdict_name(v));
    s->violations++;
  }
}

/* The registry's part after a decision (src/scale/simulate.c apply_verdict): what is written. */
static void apply(stats_t *s, obj_t *o, const evs_breaker_config_t *bcfg, evs_breaker_verdict_t v,
                  int32_t proposed, int64_t now) {
  int32_t to = -1;
  if (v == EVS_BREAKER_WRITE || v == EVS_BREAKER_CLOSE)
    to = proposed != o->current ? proposed : -1;
  else if (v == EVS_BREAKER_TRIP_SCALE_TO_ONE)
    to = 1;
  if (to >= 0) {
    count_write(s, o, to, v);
    if (v != EVS_BREAKER_TRIP_SCALE_TO_ONE)
      evs_engine_record_scale(o->so, o->st, o->current, to, now);
    o->current = to;
  }
  if (v == EVS_BREAKER_TRIP || v == EVS_BREAKER_TRIP_SCALE_TO_ONE) {
    /* The fallback HPA takes the target to at least its minReplicas (CPU is not simulated). */
    int32_t fb = evs_breaker_fallback_min(bcfg);
    if (o->current < fb)
      o->current = fb > evs_so_max(o->so) ? evs_so_max(o->so) : fb;
  }
}

static void one_decision(stats_t *s, obj_t *o, const evs_engine_config_t *ecfg,
                         const evs_breaker_config_t *bcfg, int64_t now) {
  evs_engine_input_t in = {o->r, o->so->n_triggers, o->current, o->current, o->current, now};
  evs_decision_t d;
  int nb;
  int64_t t0 = now_ns();
  int rc = evs_engine_decide(o->so, ecfg, o->st, &in, &d);
  int64_t t1 = now_ns();
  if (rc != 0) {
    s->decide_errors++;
    return;
  }
  int32_t proposed = d.write ? d.desired : o->current;
  evs_breaker_verdict_t v = evs_breaker_decide(o->br, bcfg, o->current, proposed, now, &nb);
  apply(s, o, bcfg, v, proposed, now);
  int64_t t2 = now_ns();
  s->verdicts[v]++;
  s->reasons[d.reason < EVS_REASON__COUNT ? d.reason : 0]++;
  if (s->n < s->cap) {
    s->decide_ns[s->n] = (uint32_t)(t1 - t0 > UINT32_MAX ? UINT32_MAX : t1 - t0);
    s->lat_ns[s->n] = (uint32_t)(t2 - t0 > UINT32_MAX ? UINT32_MAX : t2 - t0);
    s->n++;
  }
}

static void print_pct(const char *what, uint32_t *v, size_t n) {
  if (n == 0)
    return;
  qsort(v, n, sizeof *v, cmp_u32);
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += v[i];
  printf("  %-34s p50 %6u ns  p95 %6u ns  p99 %6u ns  p99.9 %7u ns  max %8u ns  mean %7.0f ns\n",
         what, v[n / 2], v[(size_t)(n * 0.95)], v[(size_t)(n * 0.99)], v[(size_t)(n * 0.999)],
         v[n - 1], sum / (double)n);
}

/* The cost of the two clock_gettime calls around a measured call, to read the figures against. */
static uint32_t timer_overhead_ns(void) {
  uint32_t v[10001];
  for (int i = 0; i < 10001; i++) {
    int64_t a = now_ns();
    v[i] = (uint32_t)(now_ns() - a);
  }
  qsort(v, 10001, sizeof *v, cmp_u32);
  return v[5000];
}

static int setup_cron(cron_pair_t *crons) {
  char s[32], e[32], err[128];
  for (int k = 0; k < N_CRON; k++) {
    snprintf(s, sizeof s, "%d * * * *", k);
    snprintf(e, sizeof e, "%d * * * *", (k + 15) % 60);
    if (evs_cronexpr_parse(s, &crons[k].start, err, sizeof err) != 0 ||
        evs_cronexpr_parse(e, &crons[k].end, err, sizeof err) != 0) {
      fprintf(stderr, "cron: %s\n", err);
      return -1;
    }
  }
  return 0;
}

static void replay(obj_t *objs, int n, double hours, stats_t *s, const cron_pair_t *crons) {
  evs_engine_config_t ecfg;
  evs_breaker_config_t bcfg;
  evs_engine_config_default(&ecfg);
  evs_breaker_config_default(&bcfg);
  int64_t steps = (int64_t)llround(hours * 3600000.0 / STEP_MS);
  for (int64_t k = 0; k < steps; k++)
    for (int i = 0; i < n; i++) {
      obj_t *o = &objs[i];
      int64_t now = T0_MS + k * STEP_MS + o->phase_ms;
      fill_readings(o, crons, now);
      one_decision(s, o, &ecfg, &bcfg, now);
    }
}

static void init_objs(obj_t *objs, int n) {
  for (int i = 0; i < n; i++) {
    obj_t *o = &objs[i];
    memset(o, 0, sizeof *o);
    o->kind = (uint8_t)kind_of(i);
    o->cron = (uint8_t)(i % N_CRON);
    o->cron_trig = o->kind == K_CRON ? 0 : o->kind == K_FULL ? 2 : MAX_TRIG;
    o->phase_ms = (int32_t)(rng() % STEP_MS);
    for (int t = 0; t < MAX_TRIG; t++)
      o->walk[t] = (double)(rng() % 200);
  }
}

static void print_replay(stats_t *s, double wall, double cpu, int n, double hours) {
  static const char *vnames[] = {"write", "trip", "trip_scale_to_one", "hold", "close"};
  printf("replay (%d objects, %.2f simulated hours, one reading per trigger per 15 s):\n", n,
         hours);
  printf("  decisions %" PRIu64 " in %.3f s wall, %.3f s CPU: %.0f decisions/s (wall), "
         "%.0f decisions/CPU-s\n",
         (uint64_t)s->n, wall, cpu, (double)s->n / wall, (double)s->n / cpu);
  printf("  clock_gettime pair overhead (median) %u ns, included in the figures below\n",
         timer_overhead_ns());
  print_pct("engine_decide", s->decide_ns, s->n);
  print_pct("decide + breaker + record_scale", s->lat_ns, s->n);
  printf("  writes %" PRIu64 ", decide errors %" PRIu64 "\n", s->writes, s->decide_errors);
  printf("  breaker verdicts:");
  for (int v = 0; v <= EVS_BREAKER_CLOSE; v++)
    printf(" %s=%" PRIu64, vnames[v], s->verdicts[v]);
  printf("\n  engine reasons:");
  for (int r = 0; r < EVS_REASON__COUNT; r++)
    if (s->reasons[r])
      printf(" %s=%" PRIu64, evs_engine_reason_name(r), s->reasons[r]);
  printf("\n  invariant violations (write outside [min,max]/idle/paused/scale-to-one): %" PRIu64
         "\n",
         s->violations);
}

static void free_all(obj_t *objs, int n) {
  for (int i = 0; i < n; i++) {
    evs_engine_state_free(objs[i].st);
    evs_so_free(objs[i].so);
    free(objs[i].br);
  }
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20000;
  double hours = argc > 2 ? atof(argv[2]) : 1.0;
  rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
  if (n <= 0 || hours <= 0 || rng_state == 0) {
    fprintf(stderr, "usage: %s [objects=20000] [hours=1] [seed=1]\n", argv[0]);
    return 2;
  }
  stats_t s = {0};
  cron_pair_t crons[N_CRON];
  s.cap = (size_t)n * (size_t)ceil(hours * 3600000.0 / STEP_MS) + 1;
  obj_t *objs = calloc((size_t)n, sizeof *objs);
  s.lat_ns = malloc(s.cap * sizeof *s.lat_ns);
  s.decide_ns = malloc(s.cap * sizeof *s.decide_ns);
  if (!objs || !s.lat_ns || !s.decide_ns || setup_cron(crons) != 0)
    return 2;
  init_objs(objs, n);
  mem_t m;
  size_t heap_before = heap_in_use();
  /* Touch the parse-time slots now so their pages do not count in the RSS delta. */
  memset(s.lat_ns, 0, (size_t)n * sizeof *s.lat_ns);
  int64_t b0 = now_ns();
  if (build_all(objs, n, &m, s.lat_ns) != 0) {
    fprintf(stderr, "building the objects failed\n");
    return 2;
  }
  double build_s = (double)(now_ns() - b0) / 1e9;
  print_memory(n, &m);
  print_per_kind();
  printf("startup: %d objects (YAML text made, parsed, states created) in %.3f s wall\n", n,
         build_s);
  print_pct("evs_so_parse_yaml (YAML -> evs_so_t)", s.lat_ns, (size_t)n);
  double c0 = cpu_seconds();
  int64_t w0 = now_ns();
  replay(objs, n, hours, &s, crons);
  double wall = (double)(now_ns() - w0) / 1e9, cpu = cpu_seconds() - c0;
  print_replay(&s, wall, cpu, n, hours);
  free_all(objs, n);
  /* Not a leak check (LeakSanitizer is): chunks parked in tcache still count as in use. */
  printf("heap after freeing every object: %+ld B against before building them\n",
         (long)heap_in_use() - (long)heap_before);
  free(objs);
  free(s.lat_ns);
  free(s.decide_ns);
  return s.violations || s.decide_errors ? 1 : 0;
}
