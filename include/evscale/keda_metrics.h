/* KEDA's metric families and evscale's own, as definitions for the metrics registry, and the
 * per-ScaledObject series the scaling code sets.
 *
 * KEDA's families keep KEDA's exact names, types, help and label names, from kedacore/keda
 * pkg/metricscollector/prommetrics.go at tag v2.20.2 (commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a), so dashboards and alerts written for KEDA keep
 * working; test/data/keda_metrics/v2.20.x.txt is derived from that file. With
 * metrics.keda_compat "2.13" the names KEDA 2.13 used (tag v2.13.1, commit
 * 41dd7a8558fdb274f2c0861f6c6d1eba01f2dcd5; renamed in 2.14, removed in 2.17) are exported as
 * well, fed by the same calls: keda_scaler_errors, keda_scaler_errors_total,
 * keda_scaled_object_errors, keda_scaler_metrics_latency and keda_internal_scale_loop_latency
 * (both in milliseconds, as 2.13 recorded them), keda_trigger_totals, keda_resource_totals.
 * keda_build_info, keda_scaler_metrics_value, keda_scaler_active and keda_scaled_object_paused
 * have the same name, type and labels in both versions and are exported once (with 2.20's help).
 *
 * Series of one ScaledObject: per trigger keda_scaler_metrics_value, _metrics_latency_seconds,
 * _active and _detail_errors_total (created at 0, as KEDA's RecordScalerError does); per object
 * keda_scaled_object_errors_total, _paused and keda_internal_scale_loop_latency_seconds; plus
 * the 2.13 names. They are printed from one record per object holding its values and label
 * strings (two sources of the registry, evs_metrics_source_new, one for the object families and
 * one for the trigger families), so a ScaledObject with one trigger costs about 170 bytes of
 * metrics rather than 1.4 KB as children or 330 B as row sets (issue 13).
 * evs_keda_metrics_object_free removes it in O(triggers), without scanning the registry.
 * keda_trigger_registered_total{type} and
 * keda_resource_registered_total{type="scaled_object",namespace} count the objects alive.
 *
 * Not thread-safe: the loop thread only. */
#ifndef EVSCALE_KEDA_METRICS_H
#define EVSCALE_KEDA_METRICS_H

#include <stddef.h>

#include "evscale/metrics.h"

typedef enum { EVS_KEDA_COMPAT_NONE = 0, EVS_KEDA_COMPAT_2_13 = 1 } evs_keda_compat_t;

/* KEDA v2.20.x families, in EVS_KEDA_FAMILIES order. */
enum {
  EVS_KEDA_BUILD_INFO,
  EVS_KEDA_SCALER_METRICS_VALUE,
  EVS_KEDA_SCALER_METRICS_LATENCY_SECONDS,
  EVS_KEDA_SCALER_ACTIVE,
  EVS_KEDA_SCALER_DETAIL_ERRORS_TOTAL,
  EVS_KEDA_SCALED_OBJECT_ERRORS_TOTAL,
  EVS_KEDA_SCALED_OBJECT_PAUSED,
  EVS_KEDA_SCALER_EMPTY_UPSTREAM_RESPONSES_TOTAL,
  EVS_KEDA_TRIGGER_REGISTERED_TOTAL,
  EVS_KEDA_RESOURCE_REGISTERED_TOTAL,
  EVS_KEDA_INTERNAL_SCALE_LOOP_LATENCY_SECONDS,
  EVS_KEDA_SCALER_HTTP_REQUESTS_TOTAL,
  EVS_KEDA_SCALER_HTTP_REQUEST_DURATION_SECONDS,
  EVS_KEDA_FAMILIES_N
};
extern const evs_metric_desc_t EVS_KEDA_FAMILIES[EVS_KEDA_FAMILIES_N];

/* KEDA 2.13's families that 2.20 no longer has, in EVS_KEDA_213_FAMILIES order. */
enum {
  EVS_KEDA213_SCALER_ERRORS_TOTAL,
  EVS_KEDA213_SCALER_METRICS_LATENCY,
  EVS_KEDA213_SCALER_ERRORS,
  EVS_KEDA213_SCALED_OBJECT_ERRORS,
  EVS_KEDA213_TRIGGER_TOTALS,
  EVS_KEDA213_RESOURCE_TOTALS,
  EVS_KEDA213_INTERNAL_SCALE_LOOP_LATENCY,
  EVS_KEDA213_FAMILIES_N
};
extern const evs_metric_desc_t EVS_KEDA_213_FAMILIES[EVS_KEDA213_FAMILIES_N];

/* evscale's own families. */
enum {
  /* histogram {direction}: from the reading that changed the decision to the API server's
   * answer to the scale write */
  EVS_EVSCALE_SCALING_LATENCY_SECONDS,
  EVS_EVSCALE_SCALE_EVENTS_TOTAL,     /* counter {namespace, scaled_object, direction} */
  EVS_EVSCALE_BREAKER_STATE,          /* gauge {namespace, scaled_object}: 0 closed, 1 open */
  EVS_EVSCALE_BREAKER_TRIPS_TOTAL,    /* counter {namespace, scaled_object} */
  EVS_EVSCALE_WRITES_COALESCED_TOTAL, /* counter: scale writes replaced by a newer one */
  EVS_EVSCALE_FAMILIES_N
};
extern const evs_metric_desc_t EVS_EVSCALE_FAMILIES[EVS_EVSCALE_FAMILIES_N];

typedef enum { EVS_KEDA_DIR_UP = 0, EVS_KEDA_DIR_DOWN = 1 } evs_keda_direction_t;

typedef struct evs_keda_metrics_s evs_keda_metrics_t;
typedef struct evs_keda_metrics_object_s evs_keda_metrics_object_t;

typedef struct {
  const char *version;  /* evscale's version: keda_build_info{version} */
  const char *revision; /* git revision: keda_build_info{git_commit} */
} evs_keda_build_t;

/* Registers every family (KEDA's, evscale's, and with compat the 2.13 names) in reg (borrowed;
 * must outlive km) and sets keda_build_info. *out is new: evs_keda_metrics_free. 0, UV_EINVAL,
 * UV_EEXIST (reg already has one of these names), UV_ENOMEM. */
int evs_keda_metrics_new(evs_metrics_t *reg, evs_keda_compat_t compat,
                         const evs_keda_build_t *build, evs_keda_metrics_t **out);
/* Frees km (the families stay in the registry, which owns them). Free the objects first. */
void evs_keda_metrics_free(evs_keda_metrics_t *km);
/* The family of an EVS_KEDA_* / EVS_EVSCALE_* index (borrowed). */
evs_metric_family_t *evs_keda_metrics_family(evs_keda_metrics_t *km, int keda_index);
evs_metric_family_t *evs_keda_metrics_evscale_family(evs_keda_metrics_t *km, int evscale_index);

/* One trigger as KEDA labels it: scaler is the value of the scaler label, metric the metric
 * name (s0-redis-jobs), type the trigger type (redis) counted in keda_trigger_registered_total.
 * triggerIndex is the trigger's position in the array. */
typedef struct {
  const char *scaler;
  const char *metric;
  const char *type;
} evs_keda_trigger_t;

/* Creates a ScaledObject's series (values 0) and counts it and its triggers. Strings copied.
 * *out is new: evs_keda_metrics_object_free. 0, UV_EINVAL, UV_EEXIST (an object of that
 * namespace and name exists: its series would print twice) or UV_ENOMEM (nothing left behind). */
int evs_keda_metrics_object_new(evs_keda_metrics_t *km, const char *ns, const char *name,
                                const evs_keda_trigger_t *triggers, size_t n_triggers,
                                evs_keda_metrics_object_t **out);
/* Removes every series of the object and uncounts it. NULL is allowed. */
void evs_keda_metrics_object_free(evs_keda_metrics_object_t *o);

/* Per trigger (index out of range is a no-op). */
void evs_keda_metrics_set_value(evs_keda_metrics_object_t *o, size_t trigger, double value);
void evs_keda_metrics_set_latency(evs_keda_metrics_object_t *o, size_t trigger, double seconds);
void evs_keda_metrics_set_active(evs_keda_metrics_object_t *o, size_t trigger, int active);
/* A failed read: the trigger's and the object's error counters (KEDA's RecordScalerError). */
void evs_keda_metrics_scaler_error(evs_keda_metrics_object_t *o, size_t trigger);
/* Per object. */
void evs_keda_metrics_set_paused(evs_keda_metrics_object_t *o, int paused);
void evs_keda_metrics_set_loop_latency(evs_keda_metrics_object_t *o, double seconds);
/* A scale write the API server accepted, and the time since the reading that decided it. */
void evs_keda_metrics_scaled(evs_keda_metrics_object_t *o, evs_keda_direction_t dir,
                             double latency_seconds);
void evs_keda_metrics_set_breaker(evs_keda_metrics_object_t *o, int open);
void evs_keda_metrics_breaker_trip(evs_keda_metrics_object_t *o);
void evs_keda_metrics_write_coalesced(evs_keda_metrics_t *km);
/* An empty answer from the upstream (a Prometheus query with no sample), where KEDA's scaler
 * calls RecordEmptyUpstreamResponse(namespace, scaledResource, triggerName, metricName,
 * resourceType, ignoreNullValues) (kedacore/keda v2.20.2 pkg/metricscollector/prommetrics.go;
 * resourceType is the scalable object's kind, "ScaledObject"). The series outlives the object,
 * as a counter in KEDA does. */
void evs_keda_metrics_empty_upstream(evs_keda_metrics_t *km, const char *ns, const char *name,
                                     const char *trigger_name, const char *metric, int ignore_null);
/* Series currently held by the object (for tests and accounting). */
size_t evs_keda_metrics_object_series(const evs_keda_metrics_object_t *o);
/* Bytes of the object's one allocation: a 48-byte record, 32 per trigger and the label strings
 * (namespace, name, each trigger's metric and scaler, with their NULs): what it costs besides a
 * pointer in a hash chain slot and in the sorted views of /metrics (issue 13). */
size_t evs_keda_metrics_object_bytes(const evs_keda_metrics_object_t *o);

#endif
