/* KEDA's and evscale's metric families and a ScaledObject's series. See
 * include/evscale/keda_metrics.h; the KEDA tables follow kedacore/keda
 * pkg/metricscollector/prommetrics.go at v2.20.2 and v2.13.1 (test/data/keda_metrics/). */
#include "evscale/keda_metrics.h"
#include "evscale/buf.h"
#include "evscale/error.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const l_metric[] = {"namespace", "metric",       "scaledObject",
                                       "scaler",    "triggerIndex", "type"};
static const char *const l_object[] = {"namespace", "scaledObject"};
static const char *const l_build[] = {"version", "git_commit", "goversion", "goos", "goarch"};
static const char *const l_empty[] = {"namespace",  "scaledResource", "triggerName",
                                      "metricName", "resourceType",   "ignoreNullValues"};
static const char *const l_type[] = {"type"};
static const char *const l_resource[] = {"type", "namespace"};
static const char *const l_loop[] = {"namespace", "type", "resource"};
static const char *const l_http[] = {"namespace",    "scaled_resource", "scaler",
                                     "trigger_name", "metric_name",     "status_code"};
static const char *const l_http_dur[] = {"scaler", "status_code"};
/* evscale's own families follow Prometheus's naming (snake_case labels, promtool's lint). */
static const char *const l_event[] = {"namespace", "scaled_object", "direction"};
static const char *const l_own_object[] = {"namespace", "scaled_object"};
static const char *const l_dir[] = {"direction"};

/* httpClientRequestDuration's Buckets in prommetrics.go (v2.20.2). */
static const double http_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/* Scaling latency: the seeds' target is 9 s end to end; a write alone takes milliseconds. */
static const double scaling_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     9,    15,  30,   60};

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define G EVS_METRIC_GAUGE
#define C EVS_METRIC_COUNTER
#define H EVS_METRIC_HISTOGRAM

/* clang-format off */
const evs_metric_desc_t EVS_KEDA_FAMILIES[EVS_KEDA_FAMILIES_N] = {
  {"keda_build_info", "Info metric, with static information about KEDA build like: version, git commit and Golang runtime info.", G, l_build, N(l_build), NULL, 0},
  {"keda_scaler_metrics_value", "The current value for each scaler's metric that would be used by the HPA in computing the target average.", G, l_metric, N(l_metric), NULL, 0},
  {"keda_scaler_metrics_latency_seconds", "The latency of retrieving current metric from each scaler, in seconds.", G, l_metric, N(l_metric), NULL, 0},
  {"keda_scaler_active", "Indicates whether a scaler is active (1), or not (0).", G, l_metric, N(l_metric), NULL, 0},
  {"keda_scaler_detail_errors_total", "The total number of errors encountered for each scaler.", C, l_metric, N(l_metric), NULL, 0},
  {"keda_scaled_object_errors_total", "The number of errors that have occurred for each ScaledObject.", C, l_object, N(l_object), NULL, 0},
  {"keda_scaled_object_paused", "Indicates whether a ScaledObject is paused (1), or not (0).", G, l_object, N(l_object), NULL, 0},
  {"keda_scaler_empty_upstream_responses_total", "Number of times a query returns an empty result", C, l_empty, N(l_empty), NULL, 0},
  {"keda_trigger_registered_total", "Total number of triggers per trigger type registered.", G, l_type, N(l_type), NULL, 0},
  {"keda_resource_registered_total", "Total number of KEDA custom resources per namespace for each custom resource type (CRD) registered.", G, l_resource, N(l_resource), NULL, 0},
  {"keda_internal_scale_loop_latency_seconds", "Total deviation (in seconds) between the expected execution time and the actual execution time for the scaling loop.", G, l_loop, N(l_loop), NULL, 0},
  {"keda_scaler_http_requests_total", "Total number of outbound HTTP requests issued during scaler metric collection.", C, l_http, N(l_http), NULL, 0},
  {"keda_scaler_http_request_duration_seconds", "Duration in seconds of outbound HTTP requests issued during scaler metric collection.", H, l_http_dur, N(l_http_dur), http_buckets, N(http_buckets)},
};

/* KEDA 2.13 declared keda_trigger_totals and keda_resource_totals without help. */
const evs_metric_desc_t EVS_KEDA_213_FAMILIES[EVS_KEDA213_FAMILIES_N] = {
  {"keda_scaler_errors_total", "Total number of errors for all scalers", C, NULL, 0, NULL, 0},
  {"keda_scaler_metrics_latency", "Scaler Metrics Latency", G, l_metric, N(l_metric), NULL, 0},
  {"keda_scaler_errors", "Number of scaler errors", C, l_metric, N(l_metric), NULL, 0},
  {"keda_scaled_object_errors", "Number of scaled object errors", C, l_object, N(l_object), NULL, 0},
  {"keda_trigger_totals", NULL, G, l_type, N(l_type), NULL, 0},
  {"keda_resource_totals", NULL, G, l_resource, N(l_resource), NULL, 0},
  {"keda_internal_scale_loop_latency", "Internal latency of ScaledObject/ScaledJob loop execution", G, l_loop, N(l_loop), NULL, 0},
};

const evs_metric_desc_t EVS_EVSCALE_FAMILIES[EVS_EVSCALE_FAMILIES_N] = {
  {"evscale_scaling_latency_seconds", "Time from the trigger reading that changed a scaling decision to the API server's answer to the scale write, in seconds.", H, l_dir, N(l_dir), scaling_buckets, N(scaling_buckets)},
  {"evscale_scale_events_total", "Scale writes the API server accepted, by ScaledObject and direction (up or down).", C, l_event, N(l_event), NULL, 0},
  {"evscale_breaker_state", "Whether a ScaledObject's circuit breaker is open (1: its target is handed to the fallback HPA) or closed (0).", G, l_own_object, N(l_own_object), NULL, 0},
  {"evscale_breaker_trips_total", "Times a ScaledObject's circuit breaker opened because it scaled too often.", C, l_own_object, N(l_own_object), NULL, 0},
  {"evscale_writes_coalesced_total", "Scale writes not sent because a newer decision for the same target replaced them.", C, NULL, 0, NULL, 0},
};
/* clang-format on */

#if defined(__x86_64__)
#define EVS_GOARCH "amd64"
#elif defined(__aarch64__)
#define EVS_GOARCH "arm64"
#else
#define EVS_GOARCH "unknown"
#endif

/* A ScaledObject's series are printed from one record of its own (evs_metrics_source_new): the
 * object's values, a fixed record per trigger and the label strings (namespace, name, and per
 * trigger metric and scaler) in a single allocation, which /metrics reads at scrape time. The
 * 2.13 twins are the same counters (keda_scaler_errors, keda_scaled_object_errors) or derived
 * from the same latency, so they cost nothing per object. With row sets an object with one
 * trigger took two rows, two hash links, a value slot per series and a handle record: 331 B
 * per object at 50,000 in perf/bench_metrics.c, against 166 B now (issue 13). */

/* The families of the object source, in this order (their index is print's fam_index). */
enum { O_ERRORS, O_PAUSED, O_LOOP, O_EVENTS, O_BREAKER, O_TRIPS, O_ERRORS_213, O_LOOP_MS, O_N };
/* The families of the trigger source. */
enum { T_VALUE, T_LATENCY, T_ACTIVE, T_ERRORS, T_LATENCY_MS, T_ERRORS_213, T_N };

/* Counters are 32-bit: a trigger failing every 100 ms takes 13 years to reach the top, where
 * they stay (a counter never goes down). Exact, as doubles of integers are. */
/* 32 bytes, the object 48 before them (test_record_sizes pins both). */
typedef struct {
  double value;    /* keda_scaler_metrics_value */
  double latency;  /* keda_scaler_metrics_latency_seconds */
  uint32_t errors; /* keda_scaler_detail_errors_total (and 2.13's keda_scaler_errors) */
  uint32_t idx;    /* triggerIndex, and the way back to the object (o->t[idx]) */
  uint32_t str;    /* offset of "metric\0scaler\0" in the object's strings */
  uint16_t type;   /* 1 + the km->types entry it counts in; 0: counted in no type */
  uint8_t active;
} trig_t;

struct evs_keda_metrics_object_s {
  /* km's hash chain while alive; evs_metrics_retire's link once retired (the first word). */
  evs_keda_metrics_object_t *hnext;
  evs_keda_metrics_t *km;
  double loop; /* keda_internal_scale_loop_latency_seconds */
  uint32_t n;  /* triggers */
  uint32_t errors, trips;
  uint32_t events[2]; /* by evs_keda_direction_t */
  uint8_t paused, breaker;
  /* Counted in keda_resource_registered_total{type="scaled_object",namespace} (and with 2.13's
   * names keda_resource_totals, the same labels). */
  uint8_t counted;
  uint8_t dead; /* retired while a scrape may still print it: print nothing */
  trig_t t[];   /* then "namespace\0name\0" and each trigger's "metric\0scaler\0" */
};

struct evs_keda_metrics_s {
  evs_metrics_t *reg;
  int compat;
  evs_metric_family_t *keda[EVS_KEDA_FAMILIES_N];
  evs_metric_family_t *k213[EVS_KEDA213_FAMILIES_N];
  evs_metric_family_t *own[EVS_EVSCALE_FAMILIES_N];
  evs_metric_t *errors_all; /* keda_scaler_errors_total (2.13) */
  evs_metric_t *coalesced;
  evs_metric_t *scaling_latency[2];
  evs_metrics_source_t *objects;  /* owned by reg */
  evs_metrics_source_t *triggers; /* owned by reg */
  size_t o_series, t_series;      /* per object and per trigger */
  /* The live objects by namespace and name (UV_EEXIST), chained; up to two per slot. */
  evs_keda_metrics_object_t **table;
  size_t cap, n, n_triggers;
  /* Trigger types seen (interned: a trigger keeps 2 bytes, not a pointer). */
  char **types;
  size_t n_types, cap_types;
};

static const char *o_ns(const evs_keda_metrics_object_t *o) { return (const char *)(o->t + o->n); }

static const char *o_name(const evs_keda_metrics_object_t *o) {
  const char *ns = o_ns(o);
  return ns + strlen(ns) + 1;
}

static const char *t_metric(const evs_keda_metrics_object_t *o, const trig_t *t) {
  return o_ns(o) + t->str;
}

static const char *t_scaler(const evs_keda_metrics_object_t *o, const trig_t *t) {
  const char *m = t_metric(o, t);
  return m + strlen(m) + 1;
}

static const evs_keda_metrics_object_t *t_object(const trig_t *t) {
  return (const evs_keda_metrics_object_t *)((const char *)(t - t->idx) -
                                             offsetof(evs_keda_metrics_object_t, t));
}

static int register_all(evs_metrics_t *reg, const evs_metric_desc_t *d, size_t n,
                        evs_metric_family_t **out) {
  for (size_t i = 0; i < n; i++) {
    int rc = evs_metrics_register(reg, &d[i], &out[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ---- the sources' callbacks ---- */

static size_t objects_list(void *data, const void **items, size_t n) {
  evs_keda_metrics_t *km = data;
  size_t k = 0;
  for (size_t i = 0; i < km->cap; i++)
    for (evs_keda_metrics_object_t *o = km->table[i]; o && k < n; o = o->hnext)
      items[k++] = o;
  return k;
}

static size_t triggers_list(void *data, const void **items, size_t n) {
  evs_keda_metrics_t *km = data;
  size_t k = 0;
  for (size_t i = 0; i < km->cap; i++)
    for (evs_keda_metrics_object_t *o = km->table[i]; o; o = o->hnext)
      for (uint32_t j = 0; j < o->n && k < n; j++)
        items[k++] = &o->t[j];
  return k;
}

/* As the series' labels (namespace, scaledObject) sort: every object family's constants come
 * after the key labels or between them equal for all. */
static int objects_cmp(const void *a, const void *b) {
  const evs_keda_metrics_object_t *x = *(const void *const *)a, *y = *(const void *const *)b;
  int c = strcmp(o_ns(x), o_ns(y));
  return c ? c : strcmp(o_name(x), o_name(y));
}

/* i in decimal (triggerIndex) into buf[16]: per sample printed, so not snprintf. */
static const char *u32_text(char *buf, uint32_t i) {
  char *p = buf + 15;
  *p = '\0';
  do {
    *--p = (char)('0' + i % 10);
    i /= 10;
  } while (i);
  return p;
}

/* As (namespace, metric, scaledObject, scaler, triggerIndex) sort, the index as its text. */
static int triggers_cmp(const void *a, const void *b) {
  const trig_t *s = *(const void *const *)a, *t = *(const void *const *)b;
  const evs_keda_metrics_object_t *x = t_object(s), *y = t_object(t);
  int c = strcmp(o_ns(x), o_ns(y));
  if (c == 0)
    c = strcmp(t_metric(x, s), t_metric(y, t));
  if (c == 0)
    c = strcmp(o_name(x), o_name(y));
  if (c == 0)
    c = strcmp(t_scaler(x, s), t_scaler(y, t));
  if (c == 0) {
    char i[16], j[16];
    c = strcmp(u32_text(i, s->idx), u32_text(j, t->idx));
  }
  return c;
}

/* KEDA 2.13 recorded time.Since(start).Milliseconds(): whole milliseconds. */
/* Whole milliseconds, as Go's Duration.Milliseconds; a value no int64 holds (NaN, infinite,
 * beyond 2^63) is printed as it is: converting it to an integer would be undefined. */
static double ms(double seconds) {
  double v = seconds * 1000;
  return v > -9.2e18 && v < 9.2e18 ? (double)(long long)v : v;
}

static void objects_print(evs_metrics_out_t *out, const void *item, size_t f) {
  const evs_keda_metrics_object_t *o = item;
  if (o->dead)
    return;
  const char *ns = o_ns(o), *name = o_name(o);
  const char *v[] = {ns, name}, *lv[] = {ns, "scaledobject", name};
  switch (f) {
  case O_ERRORS:
  case O_ERRORS_213:
    evs_metrics_out_sample(out, v, o->errors);
    break;
  case O_PAUSED:
    evs_metrics_out_sample(out, v, o->paused);
    break;
  case O_LOOP:
    evs_metrics_out_sample(out, lv, o->loop);
    break;
  case O_LOOP_MS:
    evs_metrics_out_sample(out, lv, ms(o->loop));
    break;
  case O_EVENTS: { /* "down" < "up": the order of the labels */
    const char *down[] = {ns, name, "down"}, *up[] = {ns, name, "up"};
    evs_metrics_out_sample(out, down, o->events[EVS_KEDA_DIR_DOWN]);
    evs_metrics_out_sample(out, up, o->events[EVS_KEDA_DIR_UP]);
    break;
  }
  case O_BREAKER:
    evs_metrics_out_sample(out, v, o->breaker);
    break;
  case O_TRIPS:
    evs_metrics_out_sample(out, v, o->trips);
    break;
  }
}

static void triggers_print(evs_metrics_out_t *out, const void *item, size_t f) {
  const trig_t *t = item;
  const evs_keda_metrics_object_t *o = t_object(t);
  if (o->dead)
    return;
  char idx[16];
  const char *v[] = {o_ns(o),        t_metric(o, t),        o_name(o),
                     t_scaler(o, t), u32_text(idx, t->idx), "scaledobject"};
  double x = f == T_VALUE        ? t->value
             : f == T_LATENCY    ? t->latency
             : f == T_ACTIVE     ? t->active
             : f == T_LATENCY_MS ? ms(t->latency)
                                 : t->errors; /* T_ERRORS, T_ERRORS_213 */
  evs_metrics_out_sample(out, v, x);
}

static int make_sources(evs_keda_metrics_t *km) {
  int compat = km->compat == EVS_KEDA_COMPAT_2_13;
  const evs_metrics_source_family_t o[O_N] = {
      [O_ERRORS] = {km->keda[EVS_KEDA_SCALED_OBJECT_ERRORS_TOTAL], 1},
      [O_PAUSED] = {km->keda[EVS_KEDA_SCALED_OBJECT_PAUSED], 1},
      [O_LOOP] = {km->keda[EVS_KEDA_INTERNAL_SCALE_LOOP_LATENCY_SECONDS], 1},
      [O_EVENTS] = {km->own[EVS_EVSCALE_SCALE_EVENTS_TOTAL], 2},
      [O_BREAKER] = {km->own[EVS_EVSCALE_BREAKER_STATE], 1},
      [O_TRIPS] = {km->own[EVS_EVSCALE_BREAKER_TRIPS_TOTAL], 1},
      [O_ERRORS_213] = {km->k213[EVS_KEDA213_SCALED_OBJECT_ERRORS], 1},
      [O_LOOP_MS] = {km->k213[EVS_KEDA213_INTERNAL_SCALE_LOOP_LATENCY], 1},
  };
  const evs_metrics_source_family_t t[T_N] = {
      [T_VALUE] = {km->keda[EVS_KEDA_SCALER_METRICS_VALUE], 1},
      [T_LATENCY] = {km->keda[EVS_KEDA_SCALER_METRICS_LATENCY_SECONDS], 1},
      [T_ACTIVE] = {km->keda[EVS_KEDA_SCALER_ACTIVE], 1},
      [T_ERRORS] = {km->keda[EVS_KEDA_SCALER_DETAIL_ERRORS_TOTAL], 1},
      [T_LATENCY_MS] = {km->k213[EVS_KEDA213_SCALER_METRICS_LATENCY], 1},
      [T_ERRORS_213] = {km->k213[EVS_KEDA213_SCALER_ERRORS], 1},
  };
  static const evs_metrics_source_ops_t o_ops = {objects_list, objects_cmp, objects_print};
  static const evs_metrics_source_ops_t t_ops = {triggers_list, triggers_cmp, triggers_print};
  size_t o_n = compat ? O_N : O_ERRORS_213, t_n = compat ? T_N : T_LATENCY_MS;
  km->o_series = o_n + 1; /* the events' two */
  km->t_series = t_n;
  int rc = evs_metrics_source_new(km->reg, o, o_n, &o_ops, km, &km->objects);
  return rc ? rc : evs_metrics_source_new(km->reg, t, t_n, &t_ops, km, &km->triggers);
}

int evs_keda_metrics_new(evs_metrics_t *reg, evs_keda_compat_t compat,
                         const evs_keda_build_t *build, evs_keda_metrics_t **out) {
  if (reg == NULL || out == NULL || build == NULL || build->version == NULL ||
      build->revision == NULL || (compat != EVS_KEDA_COMPAT_NONE && compat != EVS_KEDA_COMPAT_2_13))
    return UV_EINVAL;
  evs_keda_metrics_t *km = calloc(1, sizeof(*km));
  if (km == NULL)
    return UV_ENOMEM;
  km->reg = reg;
  km->compat = compat;
  int rc = register_all(reg, EVS_KEDA_FAMILIES, EVS_KEDA_FAMILIES_N, km->keda);
  if (rc == 0)
    rc = register_all(reg, EVS_EVSCALE_FAMILIES, EVS_EVSCALE_FAMILIES_N, km->own);
  if (rc == 0 && compat == EVS_KEDA_COMPAT_2_13)
    rc = register_all(reg, EVS_KEDA_213_FAMILIES, EVS_KEDA213_FAMILIES_N, km->k213);
  if (rc == 0)
    rc = make_sources(km);
  if (rc != 0) {
    /* registered families (and a source) stay in reg, which owns them; start-up then fails,
     * and a source left behind has no records, so its callbacks never see the freed km */
    free(km);
    return rc;
  }
  /* evscale is not written in Go: goversion stays empty, goos/goarch use Go's names. */
  const char *bv[] = {build->version, build->revision, "", "linux", EVS_GOARCH};
  evs_metric_set(evs_metric_family_child(km->keda[EVS_KEDA_BUILD_INFO], bv), 1);
  const char *up[] = {"up"}, *down[] = {"down"};
  km->scaling_latency[0] =
      evs_metric_family_child(km->own[EVS_EVSCALE_SCALING_LATENCY_SECONDS], up);
  km->scaling_latency[1] =
      evs_metric_family_child(km->own[EVS_EVSCALE_SCALING_LATENCY_SECONDS], down);
  km->coalesced = evs_metric_family_child(km->own[EVS_EVSCALE_WRITES_COALESCED_TOTAL], NULL);
  if (compat == EVS_KEDA_COMPAT_2_13)
    km->errors_all = evs_metric_family_child(km->k213[EVS_KEDA213_SCALER_ERRORS_TOTAL], NULL);
  *out = km;
  return 0;
}

void evs_keda_metrics_free(evs_keda_metrics_t *km) {
  if (km == NULL)
    return;
  /* The sources stay in the registry: with no records, a scrape never calls back into km. */
  evs_metrics_source_changed(km->objects, 0);
  evs_metrics_source_changed(km->triggers, 0);
  for (size_t i = 0; i < km->n_types; i++)
    free(km->types[i]);
  free(km->types);
  free(km->table);
  free(km);
}

evs_metric_family_t *evs_keda_metrics_family(evs_keda_metrics_t *km, int i) {
  return i >= 0 && i < EVS_KEDA_FAMILIES_N ? km->keda[i] : NULL;
}

evs_metric_family_t *evs_keda_metrics_evscale_family(evs_keda_metrics_t *km, int i) {
  return i >= 0 && i < EVS_EVSCALE_FAMILIES_N ? km->own[i] : NULL;
}

/* A counted gauge (registered totals) goes down with its object and disappears at 0, as a type
 * nobody uses any more should. */
static void uncount(evs_metric_t *m) {
  if (m == NULL)
    return;
  evs_metric_add(m, -1);
  if (evs_metric_value(m) <= 0)
    evs_metric_remove(m);
}

/* A counted gauge's child, incremented; 0 or UV_ENOMEM. */
static int count(evs_metric_family_t *f, const char *const *v, evs_metric_t **slot) {
  *slot = evs_metric_family_child(f, v);
  if (*slot == NULL)
    return UV_ENOMEM;
  evs_metric_inc(*slot);
  return 0;
}

/* keda_trigger_registered_total{type} (and 2.13's keda_trigger_totals{type}) of trigger t. */
static void uncount_type(evs_keda_metrics_t *km, const trig_t *t) {
  if (t->type == 0)
    return;
  const char *tv[] = {km->types[t->type - 1]};
  if (km->compat == EVS_KEDA_COMPAT_2_13)
    uncount(evs_metric_family_lookup(km->k213[EVS_KEDA213_TRIGGER_TOTALS], tv));
  uncount(evs_metric_family_lookup(km->keda[EVS_KEDA_TRIGGER_REGISTERED_TOTAL], tv));
}

static void uncount_resource(evs_keda_metrics_object_t *o) {
  evs_keda_metrics_t *km = o->km;
  if (!o->counted)
    return;
  const char *rv[] = {"scaled_object", o_ns(o)};
  uncount(evs_metric_family_lookup(km->keda[EVS_KEDA_RESOURCE_REGISTERED_TOTAL], rv));
  if (km->compat == EVS_KEDA_COMPAT_2_13)
    uncount(evs_metric_family_lookup(km->k213[EVS_KEDA213_RESOURCE_TOTALS], rv));
  o->counted = 0;
}

static void uncount_all(evs_keda_metrics_object_t *o) {
  for (uint32_t i = 0; i < o->n; i++)
    uncount_type(o->km, &o->t[i]);
  uncount_resource(o);
}

/* The 1-based index of type in km->types, added if new; 0 when out of memory or past 65535
 * distinct types (KEDA has about 70). */
static uint16_t type_index(evs_keda_metrics_t *km, const char *type) {
  for (size_t i = 0; i < km->n_types; i++)
    if (strcmp(km->types[i], type) == 0)
      return (uint16_t)(i + 1);
  if (km->n_types >= UINT16_MAX || evs_buf_reserve((void **)&km->types, &km->cap_types,
                                                   km->n_types + 1, sizeof *km->types, 8) != 0)
    return 0;
  char *copy = strdup(type);
  if (copy == NULL)
    return 0;
  km->types[km->n_types++] = copy;
  return (uint16_t)km->n_types;
}

static int count_trigger(evs_keda_metrics_object_t *o, trig_t *t, const char *type) {
  evs_keda_metrics_t *km = o->km;
  if (type[0] == '\0') /* KEDA counts only triggers with a type */
    return 0;
  uint16_t ti = type_index(km, type);
  if (ti == 0)
    return UV_ENOMEM;
  const char *tv[] = {type};
  evs_metric_t *m = NULL, *m213 = NULL;
  int rc = count(km->keda[EVS_KEDA_TRIGGER_REGISTERED_TOTAL], tv, &m);
  if (rc == 0 && km->compat == EVS_KEDA_COMPAT_2_13 &&
      (rc = count(km->k213[EVS_KEDA213_TRIGGER_TOTALS], tv, &m213)) != 0)
    uncount(m); /* counted in both or in neither: type says which */
  if (rc == 0)
    t->type = ti;
  return rc;
}

static int count_resource(evs_keda_metrics_object_t *o) {
  evs_keda_metrics_t *km = o->km;
  const char *rv[] = {"scaled_object", o_ns(o)};
  evs_metric_t *m = NULL, *m213 = NULL;
  int rc = count(km->keda[EVS_KEDA_RESOURCE_REGISTERED_TOTAL], rv, &m);
  if (rc == 0 && km->compat == EVS_KEDA_COMPAT_2_13 &&
      (rc = count(km->k213[EVS_KEDA213_RESOURCE_TOTALS], rv, &m213)) != 0)
    uncount(m); /* counted in both or in neither: `counted` says which */
  o->counted = rc == 0;
  return rc;
}

/* FNV-1a of "namespace\0name". */
static uint32_t key_hash(const char *ns, const char *name) {
  uint32_t h = 2166136261u;
  for (const char *p = ns;; p++) {
    h = (h ^ (unsigned char)*p) * 16777619u;
    if (*p == '\0')
      break;
  }
  for (const char *p = name; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  return h;
}

static evs_keda_metrics_object_t **find_link(evs_keda_metrics_t *km, const char *ns,
                                             const char *name, uint32_t hash) {
  if (km->cap == 0)
    return NULL;
  evs_keda_metrics_object_t **link = &km->table[hash & (km->cap - 1)];
  while (*link && !(strcmp(o_ns(*link), ns) == 0 && strcmp(o_name(*link), name) == 0))
    link = &(*link)->hnext;
  return link;
}

/* Up to two objects per slot on average: a chain link is a word per object, a slot another. The
 * hash is not kept (a record would grow by a padded word): growing hashes every key again. */
static int table_grow(evs_keda_metrics_t *km) {
  if (km->n < 2 * km->cap)
    return 0;
  size_t cap = km->cap ? km->cap * 2 : 16;
  evs_keda_metrics_object_t **t = calloc(cap, sizeof(*t));
  if (t == NULL)
    return km->cap ? 0 : UV_ENOMEM; /* longer chains rather than a failure */
  for (size_t i = 0; i < km->cap; i++) {
    evs_keda_metrics_object_t *o = km->table[i];
    while (o) {
      evs_keda_metrics_object_t *next = o->hnext;
      uint32_t h = key_hash(o_ns(o), o_name(o));
      o->hnext = t[h & (cap - 1)];
      t[h & (cap - 1)] = o;
      o = next;
    }
  }
  free(km->table);
  km->table = t;
  km->cap = cap;
  return 0;
}

void evs_keda_metrics_object_free(evs_keda_metrics_object_t *o) {
  if (o == NULL)
    return;
  evs_keda_metrics_t *km = o->km;
  evs_keda_metrics_object_t **link =
      find_link(km, o_ns(o), o_name(o), key_hash(o_ns(o), o_name(o)));
  while (link && *link && *link != o)
    link = &(*link)->hnext;
  if (link && *link)
    *link = o->hnext;
  uncount_all(o);
  km->n--;
  km->n_triggers -= o->n;
  evs_metrics_source_changed(km->objects, km->n);
  evs_metrics_source_changed(km->triggers, km->n_triggers);
  o->dead = 1;
  evs_metrics_retire(km->reg, o);
}

/* The record with its strings, values 0; NULL when out of memory. */
static evs_keda_metrics_object_t *object_alloc(evs_keda_metrics_t *km, const char *ns,
                                               const char *name, const evs_keda_trigger_t *tr,
                                               size_t n) {
  size_t ln = strlen(ns) + 1, lm = strlen(name) + 1, len = ln + lm;
  for (size_t i = 0; i < n; i++)
    len += strlen(tr[i].metric) + 1 + strlen(tr[i].scaler) + 1;
  if (len > UINT32_MAX)
    return NULL;
  evs_keda_metrics_object_t *o = calloc(1, sizeof(*o) + n * sizeof(trig_t) + len);
  if (o == NULL)
    return NULL;
  o->km = km;
  o->n = (uint32_t)n;
  char *s = (char *)(o->t + n);
  memcpy(s, ns, ln);
  memcpy(s + ln, name, lm);
  size_t at = ln + lm;
  for (size_t i = 0; i < n; i++) {
    size_t a = strlen(tr[i].metric) + 1, b = strlen(tr[i].scaler) + 1;
    o->t[i].idx = (uint32_t)i;
    o->t[i].str = (uint32_t)at;
    memcpy(s + at, tr[i].metric, a);
    memcpy(s + at + a, tr[i].scaler, b);
    at += a + b;
  }
  return o;
}

int evs_keda_metrics_object_new(evs_keda_metrics_t *km, const char *ns, const char *name,
                                const evs_keda_trigger_t *triggers, size_t n,
                                evs_keda_metrics_object_t **out) {
  if (km == NULL || ns == NULL || name == NULL || out == NULL || (n > 0 && triggers == NULL) ||
      n > UINT32_MAX)
    return UV_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (triggers[i].scaler == NULL || triggers[i].metric == NULL || triggers[i].type == NULL)
      return UV_EINVAL;
  evs_keda_metrics_object_t **link = find_link(km, ns, name, key_hash(ns, name));
  if (link && *link)
    return UV_EEXIST;
  evs_keda_metrics_object_t *o = object_alloc(km, ns, name, triggers, n);
  if (o == NULL)
    return UV_ENOMEM;
  int rc = count_resource(o);
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = count_trigger(o, &o->t[i], triggers[i].type);
  if (rc == 0)
    rc = table_grow(km);
  if (rc != 0) {
    uncount_all(o);
    free(o);
    return rc;
  }
  evs_keda_metrics_object_t **slot = &km->table[key_hash(ns, name) & (km->cap - 1)];
  o->hnext = *slot;
  *slot = o;
  km->n++;
  km->n_triggers += n;
  evs_metrics_source_changed(km->objects, km->n);
  evs_metrics_source_changed(km->triggers, km->n_triggers);
  *out = o;
  return 0;
}

static trig_t *trig(evs_keda_metrics_object_t *o, size_t i) {
  return o && i < o->n ? &o->t[i] : NULL;
}

/* A 32-bit counter one up, staying at the top. */
static void bump(uint32_t *c) {
  if (*c < UINT32_MAX)
    (*c)++;
}

void evs_keda_metrics_set_value(evs_keda_metrics_object_t *o, size_t i, double value) {
  trig_t *t = trig(o, i);
  if (t)
    t->value = value;
}

/* 2.13's milliseconds are derived from the seconds when printed. */
void evs_keda_metrics_set_latency(evs_keda_metrics_object_t *o, size_t i, double seconds) {
  trig_t *t = trig(o, i);
  if (t)
    t->latency = seconds;
}

void evs_keda_metrics_set_active(evs_keda_metrics_object_t *o, size_t i, int active) {
  trig_t *t = trig(o, i);
  if (t)
    t->active = active ? 1 : 0;
}

void evs_keda_metrics_scaler_error(evs_keda_metrics_object_t *o, size_t i) {
  trig_t *t = trig(o, i);
  if (t == NULL)
    return;
  bump(&t->errors);
  bump(&o->errors);
  evs_metric_inc(o->km->errors_all);
}

void evs_keda_metrics_set_paused(evs_keda_metrics_object_t *o, int paused) {
  if (o)
    o->paused = paused ? 1 : 0;
}

void evs_keda_metrics_set_loop_latency(evs_keda_metrics_object_t *o, double seconds) {
  if (o)
    o->loop = seconds;
}

void evs_keda_metrics_scaled(evs_keda_metrics_object_t *o, evs_keda_direction_t dir,
                             double latency_seconds) {
  if (o == NULL || (dir != EVS_KEDA_DIR_UP && dir != EVS_KEDA_DIR_DOWN))
    return;
  bump(&o->events[dir]);
  evs_metric_observe(o->km->scaling_latency[dir], latency_seconds);
}

void evs_keda_metrics_set_breaker(evs_keda_metrics_object_t *o, int open) {
  if (o)
    o->breaker = open ? 1 : 0;
}

void evs_keda_metrics_breaker_trip(evs_keda_metrics_object_t *o) {
  if (o)
    bump(&o->trips);
}

void evs_keda_metrics_empty_upstream(evs_keda_metrics_t *km, const char *ns, const char *name,
                                     const char *trigger_name, const char *metric,
                                     int ignore_null) {
  if (km == NULL || km->keda[EVS_KEDA_SCALER_EMPTY_UPSTREAM_RESPONSES_TOTAL] == NULL)
    return;
  const char *v[] = {ns ? ns : "",         name ? name : "", trigger_name ? trigger_name : "",
                     metric ? metric : "", "ScaledObject",   ignore_null ? "true" : "false"};
  evs_metric_t *m =
      evs_metric_family_child(km->keda[EVS_KEDA_SCALER_EMPTY_UPSTREAM_RESPONSES_TOTAL], v);
  if (m)
    evs_metric_inc(m);
}

void evs_keda_metrics_write_coalesced(evs_keda_metrics_t *km) {
  if (km)
    evs_metric_inc(km->coalesced);
}

size_t evs_keda_metrics_object_series(const evs_keda_metrics_object_t *o) {
  return o->km->o_series + o->n * o->km->t_series;
}

size_t evs_keda_metrics_object_bytes(const evs_keda_metrics_object_t *o) {
  const char *end = o_ns(o);
  end += strlen(end) + 1;
  end += strlen(end) + 1;
  for (uint32_t i = 0; i < o->n; i++)
    for (int k = 0; k < 2; k++)
      end += strlen(end) + 1;
  return (size_t)(end - (const char *)o);
}
