/* KEDA's and evscale's metric families and a ScaledObject's series. See
 * include/evscale/keda_metrics.h; the KEDA tables follow kedacore/keda
 * pkg/metricscollector/prommetrics.go at v2.20.2 and v2.13.1 (test/data/keda_metrics/). */
#include "evscale/keda_metrics.h"
#include "evscale/error.h"

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

/* A ScaledObject's series are two row sets (evs_metrics_rows_new): one row per object keyed
 * (namespace, name) with its seven series (nine with 2.13's names), one row per trigger keyed
 * (namespace, metric, name, scaler, triggerIndex) with its four (six). A row holds the object's
 * or trigger's label values once for all its series, and is indexed once: about 2 allocations
 * per object and trigger instead of one per series (issue 13). The trigger rows are under the
 * object's (evs_metrics_rows_new_under): a trigger row keeps its metric, scaler and index and
 * reads the namespace and name from its object's row. */

/* Per trigger, the columns of the trigger row set, in this order. */
enum { T_VALUE, T_LATENCY, T_ACTIVE, T_ERRORS, T_LATENCY_MS, T_ERRORS_213, T_N };
/* Per object, the columns of the object row set. EVENTS_DOWN comes before EVENTS_UP: a family's
 * columns print in label order, and "down" < "up". */
enum {
  O_ERRORS,
  O_PAUSED,
  O_LOOP,
  O_EVENTS_DOWN,
  O_EVENTS_UP,
  O_BREAKER,
  O_TRIPS,
  O_ERRORS_213,
  O_LOOP_MS,
  O_N
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
  evs_metrics_rows_t *objects;  /* owned by reg */
  evs_metrics_rows_t *triggers; /* owned by reg */
  size_t o_cols, t_cols;        /* columns of each: O_N or T_N without the 2.13 names */
};

/* The counted gauges' children are found again when the object goes, by the labels the rows and
 * the 2.20 child keep (issue 13: an object with one trigger is 40 bytes instead of 64). */
typedef struct {
  evs_metric_row_t *row;
  /* keda_trigger_registered_total{type} this trigger counts in, NULL when it counts in none;
   * with 2.13's names it counts in keda_trigger_totals{type} too, the same label. */
  evs_metric_t *type_count;
} trigger_t;

struct evs_keda_metrics_object_s {
  evs_keda_metrics_t *km;
  evs_metric_row_t *row; /* key (namespace, name) */
  uint32_t n;
  /* Counted in keda_resource_registered_total{type="scaled_object",namespace} (and with 2.13's
   * names keda_resource_totals, the same labels). */
  uint32_t counted;
  trigger_t t[];
};

static int register_all(evs_metrics_t *reg, const evs_metric_desc_t *d, size_t n,
                        evs_metric_family_t **out) {
  for (size_t i = 0; i < n; i++) {
    int rc = evs_metrics_register(reg, &d[i], &out[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Where the labels of l_metric, l_object/l_own_object, l_loop and l_event come from: the keys
 * (namespace, metric, name, scaler, triggerIndex) of a trigger row, (namespace, name) of an
 * object row, and constants. */
static const int k_metric[] = {0, 1, 2, 3, 4, -1};
static const char *const c_metric[] = {NULL, NULL, NULL, NULL, NULL, "scaledobject"};
static const int k_object[] = {0, 1};
/* A trigger row is under its object's row: its namespace and name are the object row's (kept
 * once for the object and its triggers, issue 13), its metric, scaler and index its own. */
static const int k_trigger_from_object[] = {0, -1, 1, -1, -1};
static const int k_loop[] = {0, -1, 1};
static const char *const c_loop[] = {NULL, "scaledobject", NULL};
static const int k_event[] = {0, 1, -1};
static const char *const c_down[] = {NULL, NULL, "down"};
static const char *const c_up[] = {NULL, NULL, "up"};

static int make_rows(evs_keda_metrics_t *km) {
  int compat = km->compat == EVS_KEDA_COMPAT_2_13;
  evs_metric_column_t t[T_N] = {
      [T_VALUE] = {km->keda[EVS_KEDA_SCALER_METRICS_VALUE], k_metric, c_metric},
      [T_LATENCY] = {km->keda[EVS_KEDA_SCALER_METRICS_LATENCY_SECONDS], k_metric, c_metric},
      [T_ACTIVE] = {km->keda[EVS_KEDA_SCALER_ACTIVE], k_metric, c_metric},
      [T_ERRORS] = {km->keda[EVS_KEDA_SCALER_DETAIL_ERRORS_TOTAL], k_metric, c_metric},
      [T_LATENCY_MS] = {km->k213[EVS_KEDA213_SCALER_METRICS_LATENCY], k_metric, c_metric},
      [T_ERRORS_213] = {km->k213[EVS_KEDA213_SCALER_ERRORS], k_metric, c_metric},
  };
  evs_metric_column_t o[O_N] = {
      [O_ERRORS] = {km->keda[EVS_KEDA_SCALED_OBJECT_ERRORS_TOTAL], k_object, NULL},
      [O_PAUSED] = {km->keda[EVS_KEDA_SCALED_OBJECT_PAUSED], k_object, NULL},
      [O_LOOP] = {km->keda[EVS_KEDA_INTERNAL_SCALE_LOOP_LATENCY_SECONDS], k_loop, c_loop},
      [O_EVENTS_DOWN] = {km->own[EVS_EVSCALE_SCALE_EVENTS_TOTAL], k_event, c_down},
      [O_EVENTS_UP] = {km->own[EVS_EVSCALE_SCALE_EVENTS_TOTAL], k_event, c_up},
      [O_BREAKER] = {km->own[EVS_EVSCALE_BREAKER_STATE], k_object, NULL},
      [O_TRIPS] = {km->own[EVS_EVSCALE_BREAKER_TRIPS_TOTAL], k_object, NULL},
      [O_ERRORS_213] = {km->k213[EVS_KEDA213_SCALED_OBJECT_ERRORS], k_object, NULL},
      [O_LOOP_MS] = {km->k213[EVS_KEDA213_INTERNAL_SCALE_LOOP_LATENCY], k_loop, c_loop},
  };
  km->t_cols = compat ? T_N : T_LATENCY_MS;
  km->o_cols = compat ? O_N : O_ERRORS_213;
  int rc = evs_metrics_rows_new(km->reg, 2, o, km->o_cols, &km->objects);
  return rc ? rc
            : evs_metrics_rows_new_under(km->reg, km->objects, k_trigger_from_object, 5, t,
                                         km->t_cols, &km->triggers);
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
    rc = make_rows(km);
  if (rc != 0) {
    free(km); /* registered families stay in reg, which owns them; start-up then fails */
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

void evs_keda_metrics_free(evs_keda_metrics_t *km) { free(km); }

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

/* The 2.13 twin first: its label is read from the 2.20 child, which uncount may free. */
static void uncount_type(evs_keda_metrics_t *km, evs_metric_t *m) {
  if (m == NULL)
    return;
  if (km->compat == EVS_KEDA_COMPAT_2_13) {
    const char *tv[] = {evs_metric_label(m, 0)};
    uncount(evs_metric_family_lookup(km->k213[EVS_KEDA213_TRIGGER_TOTALS], tv));
  }
  uncount(m);
}

/* Before the row goes: the namespace is the row's. */
static void uncount_resource(evs_keda_metrics_object_t *o) {
  evs_keda_metrics_t *km = o->km;
  if (!o->counted)
    return;
  const char *rv[] = {"scaled_object", evs_metric_row_key(o->row, 0)};
  uncount(evs_metric_family_lookup(km->keda[EVS_KEDA_RESOURCE_REGISTERED_TOTAL], rv));
  if (km->compat == EVS_KEDA_COMPAT_2_13)
    uncount(evs_metric_family_lookup(km->k213[EVS_KEDA213_RESOURCE_TOTALS], rv));
  o->counted = 0;
}

void evs_keda_metrics_object_free(evs_keda_metrics_object_t *o) {
  if (o == NULL)
    return;
  for (size_t i = 0; i < o->n; i++) {
    evs_metric_row_remove(o->t[i].row);
    uncount_type(o->km, o->t[i].type_count);
  }
  uncount_resource(o);
  evs_metric_row_remove(o->row);
  free(o);
}

/* A counted gauge's child, incremented; 0 or UV_ENOMEM. */
static int count(evs_metric_family_t *f, const char *const *v, evs_metric_t **slot) {
  *slot = evs_metric_family_child(f, v);
  if (*slot == NULL)
    return UV_ENOMEM;
  evs_metric_inc(*slot);
  return 0;
}

static int trigger_series(evs_keda_metrics_object_t *o, const char *ns, const char *name, size_t i,
                          const evs_keda_trigger_t *tr) {
  evs_keda_metrics_t *km = o->km;
  char idx[24];
  snprintf(idx, sizeof idx, "%zu", i);
  const char *key[] = {ns, tr->metric, name, tr->scaler, idx};
  const char *tv[] = {tr->type};
  trigger_t *t = &o->t[i];
  int rc = evs_metrics_rows_add_under(km->triggers, o->row, key, &t->row);
  if (rc != 0 || tr->type[0] == '\0') /* KEDA counts only triggers with a type */
    return rc;
  evs_metric_t *m = NULL, *m213 = NULL;
  rc = count(km->keda[EVS_KEDA_TRIGGER_REGISTERED_TOTAL], tv, &m);
  if (rc == 0 && km->compat == EVS_KEDA_COMPAT_2_13 &&
      (rc = count(km->k213[EVS_KEDA213_TRIGGER_TOTALS], tv, &m213)) != 0)
    uncount(m); /* counted in both or in neither: type_count says which */
  if (rc == 0)
    t->type_count = m;
  return rc;
}

static int object_series(evs_keda_metrics_object_t *o, const char *ns, const char *name) {
  evs_keda_metrics_t *km = o->km;
  const char *key[] = {ns, name};
  const char *rv[] = {"scaled_object", ns};
  /* The events series are made up front too, as every column is: rate() then sees the first
   * scale as an increase. */
  int rc = evs_metrics_rows_add(km->objects, key, &o->row);
  if (rc != 0)
    return rc;
  evs_metric_t *m = NULL, *m213 = NULL;
  rc = count(km->keda[EVS_KEDA_RESOURCE_REGISTERED_TOTAL], rv, &m);
  if (rc == 0 && km->compat == EVS_KEDA_COMPAT_2_13 &&
      (rc = count(km->k213[EVS_KEDA213_RESOURCE_TOTALS], rv, &m213)) != 0)
    uncount(m); /* counted in both or in neither: `counted` says which */
  o->counted = rc == 0;
  return rc;
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
  evs_keda_metrics_object_t *o = calloc(1, sizeof(*o) + n * sizeof(trigger_t));
  if (o == NULL)
    return UV_ENOMEM;
  o->km = km;
  o->n = (uint32_t)n;
  int rc = object_series(o, ns, name);
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = trigger_series(o, ns, name, i, &triggers[i]);
  if (rc != 0) {
    evs_keda_metrics_object_free(o);
    return rc;
  }
  *out = o;
  return 0;
}

static evs_metric_row_t *trig(evs_keda_metrics_object_t *o, size_t i) {
  return o && i < o->n ? o->t[i].row : NULL;
}

void evs_keda_metrics_set_value(evs_keda_metrics_object_t *o, size_t i, double value) {
  evs_metric_row_set(trig(o, i), T_VALUE, value);
}

/* Columns past the row set's (2.13's, without compat) are no-ops in evs_metric_row_*. */
void evs_keda_metrics_set_latency(evs_keda_metrics_object_t *o, size_t i, double seconds) {
  evs_metric_row_t *t = trig(o, i);
  evs_metric_row_set(t, T_LATENCY, seconds);
  /* KEDA 2.13 recorded time.Since(start).Milliseconds(): whole milliseconds. */
  evs_metric_row_set(t, T_LATENCY_MS, (double)(long long)(seconds * 1000));
}

void evs_keda_metrics_set_active(evs_keda_metrics_object_t *o, size_t i, int active) {
  evs_metric_row_set(trig(o, i), T_ACTIVE, active ? 1 : 0);
}

void evs_keda_metrics_scaler_error(evs_keda_metrics_object_t *o, size_t i) {
  evs_metric_row_t *t = trig(o, i);
  if (t == NULL)
    return;
  evs_metric_row_add(t, T_ERRORS, 1);
  evs_metric_row_add(t, T_ERRORS_213, 1);
  evs_metric_row_add(o->row, O_ERRORS, 1);
  evs_metric_row_add(o->row, O_ERRORS_213, 1);
  evs_metric_inc(o->km->errors_all);
}

void evs_keda_metrics_set_paused(evs_keda_metrics_object_t *o, int paused) {
  if (o)
    evs_metric_row_set(o->row, O_PAUSED, paused ? 1 : 0);
}

void evs_keda_metrics_set_loop_latency(evs_keda_metrics_object_t *o, double seconds) {
  if (o == NULL)
    return;
  evs_metric_row_set(o->row, O_LOOP, seconds);
  evs_metric_row_set(o->row, O_LOOP_MS, (double)(long long)(seconds * 1000));
}

void evs_keda_metrics_scaled(evs_keda_metrics_object_t *o, evs_keda_direction_t dir,
                             double latency_seconds) {
  if (o == NULL || (dir != EVS_KEDA_DIR_UP && dir != EVS_KEDA_DIR_DOWN))
    return;
  evs_metric_row_add(o->row, dir == EVS_KEDA_DIR_UP ? O_EVENTS_UP : O_EVENTS_DOWN, 1);
  evs_metric_observe(o->km->scaling_latency[dir], latency_seconds);
}

void evs_keda_metrics_set_breaker(evs_keda_metrics_object_t *o, int open) {
  if (o)
    evs_metric_row_set(o->row, O_BREAKER, open ? 1 : 0);
}

void evs_keda_metrics_breaker_trip(evs_keda_metrics_object_t *o) {
  if (o)
    evs_metric_row_add(o->row, O_TRIPS, 1);
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
  size_t n = o->row ? o->km->o_cols : 0;
  for (size_t i = 0; i < o->n; i++)
    n += o->t[i].row ? o->km->t_cols : 0;
  return n;
}
