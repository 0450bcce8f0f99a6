/* Kubernetes Events about ScaledObjects, the ones `kubectl describe scaledobject` lists.
 *
 *   evs_events_options_t o = {.group_version = disc->events_group_version, .instance = me};
 *   evs_events_new(loop, kube, &o, &ev);
 *   evs_events_emit(ev, &(evs_event_t){.ns = "n", .name = "so", .uid = uid,
 *                                      .type = EVS_EVENT_NORMAL,
 *                                      .reason = EVS_REASON_SCALE_TARGET_ACTIVATED,
 *                                      .message = "Scaled apps/v1.Deployment n/w from 0 to 3"});
 *   evs_events_close(ev, done, arg);                     // before evs_kube_close
 *
 * Where they go: `events.k8s.io/v1` when the server serves it, else core `v1` Events (the caller
 * passes discovery's events_group_version). Fields per kubernetes/kubernetes (commit
 * 111ee70e6858c152190d0f964e49d4b5edbcd3b8) staging/src/k8s.io/api/events/v1/types.go (Event:
 * eventTime, series{count,lastObservedTime}, reportingController, reportingInstance, action,
 * reason, regarding, note, type) and staging/src/k8s.io/api/core/v1/types.go (Event:
 * involvedObject, reason, message, source{component}, firstTimestamp, lastTimestamp, count, type,
 * reportingComponent, reportingInstance, action). The object is always
 * {apiVersion keda.sh/v1alpha1, kind ScaledObject, namespace, name, uid}: kubectl describe finds
 * Events by involvedObject name, namespace, kind and uid, so the uid must be the object's.
 * reportingController (core: source.component and reportingComponent) is EVS_EVENTS_CONTROLLER;
 * reportingInstance is the process identity given at creation (the lease holder identity).
 *
 * Aggregation, as client-go does it (kubernetes/client-go v0.36.3, commit
 * 44a8af2fee834a8fc3523360e029cf7ea7104622, tools/record/events_cache.go EventCorrelator and
 * tools/events/event_broadcaster.go recordToSink/finishSeries):
 *  - the same (object, type, reason, action, message) again within `window_ms` of its last
 *    occurrence (default 6 min, the events library's finishTime) is not a new Event: it is
 *    counted, and the existing Event's count (core) or series (events.k8s.io) is PATCHed at most
 *    once per `patch_interval_ms` (default 60 s; a timer sends a count left over). A PATCH that
 *    finds the Event gone (404: Events expire) creates it again, as recordEvent does;
 *  - a spam filter per (object, type), client-go's getSpamKey and EventSourceObjectSpamFilter: a
 *    token bucket of burst 25 refilled 1 per 300 s (defaultSpamBurst, defaultSpamQPS) taken by
 *    every request (create or patch); a new Event without a token is dropped, a due count waits;
 *  - both caches are LRUs of at most `lru_max` keys (default 4096, maxLruCacheEntries). As in
 *    client-go, a spam bucket evicted (more than lru_max objects x types emitting) comes back
 *    full (perf/RESULTS.md, "Events aggregation").
 * Unlike client-go nothing is retried for long: a 5xx, 429 or transport failure is sent once
 * more, then dropped and counted. Requests go at EVS_PRIO_LOW, the lowest priority of the
 * client's limiter (evscale/ratelimit.h), so a /scale write (HIGH) never waits behind an Event;
 * at most `max_inflight` requests are outstanding, beyond that new Events are dropped, so emit
 * never blocks and memory stays bounded.
 *
 * Memory: at most lru_max series (each keeps its key, message included: about 1.3 kB at worst,
 * so some 5 MB for 4096) and lru_max spam buckets.
 *
 * The decision is pure (evs_events_decide with `now`), for tests; the loop part only sends.
 * Ownership: emit copies what it needs; the options' strings are copied. The kube client is
 * borrowed and must outlive evs_events_close's callback. */
#ifndef EVSCALE_EVENTS_H
#define EVSCALE_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "evscale/kube.h"
#include "evscale/list.h"
#include "evscale/ratelimit.h"

#define EVS_EVENTS_CONTROLLER "evscale.io/evscale"

/* Reasons. KEDA's, from kedacore/keda v2.20.2 (commit 68a5b5028f35b22d50597c69819ab32c4e92f21a)
 * pkg/eventreason/eventreason.go, the ones KEDA emits for a ScaledObject (where: controllers/keda/
 * scaledobject_controller.go, scaledobject_finalizer.go, pkg/scaling/executor/
 * scale_scaledobjects.go, pkg/scaling/scale_handler.go). KEDA's texts, for the same messages:
 *  ScaledObjectReady           Normal  "ScaledObject is ready for scaling"
 *  ScaledObjectCheckFailed     Warning "Target resource doesn't exist", "Target resource doesn't
 *                                      expose /scale subresource", or the check's error
 *  ScaledObjectUpdateFailed    Warning the status update's error
 *  ScaledObjectDeleted         Warning "ScaledObject was deleted" (sic: Warning in KEDA)
 *  ScaledObjectPaused          Normal  "ScaledObject is paused"
 *  ScaledObjectUnpaused        Normal  the unpause message
 *  ScaledObjectFallbackActivated   Normal "ScaledObject fallback is active"
 *  ScaledObjectFallbackDeactivated Normal "ScaledObject fallback is no longer active"
 *  KEDAScalersStarted          Normal  "Started scalers watch" (action "ScalersWatchStarted")
 *  KEDAScalersStopped          Normal  "Stopped scalers watch"
 *  KEDAScalerFailed            Warning the scaler's error
 *  KEDAMetricSourceFailed      Warning the metric source's error
 *  KEDAScaleTargetActivated    Normal  "Scaled <kind> <ns>/<name> from <n> to <m>, triggered by
 *                                      <trigger;...>"
 *  KEDAScaleTargetDeactivated  Normal  "Deactivated <kind> <ns>/<name> from <n> to <m>"
 *  KEDAScaleTargetActivationFailed   Warning "Failed to scale <kind> <ns>/<name> from <n> to <m>"
 *  KEDAScaleTargetDeactivationFailed Warning "Failed to deactivate <kind> <ns>/<name> from <n> to
 *                                            <m>"
 * KEDA's action is the reason (Eventf(obj, nil, type, reason, reason, ...)) but for
 * KEDAScalersStarted; evs_event_t.action NULL does the same. */
#define EVS_REASON_SO_READY "ScaledObjectReady"
#define EVS_REASON_SO_CHECK_FAILED "ScaledObjectCheckFailed"
#define EVS_REASON_SO_UPDATE_FAILED "ScaledObjectUpdateFailed"
#define EVS_REASON_SO_DELETED "ScaledObjectDeleted"
#define EVS_REASON_SO_PAUSED "ScaledObjectPaused"
#define EVS_REASON_SO_UNPAUSED "ScaledObjectUnpaused"
#define EVS_REASON_SO_FALLBACK_ACTIVATED "ScaledObjectFallbackActivated"
#define EVS_REASON_SO_FALLBACK_DEACTIVATED "ScaledObjectFallbackDeactivated"
#define EVS_REASON_SCALERS_STARTED "KEDAScalersStarted"
#define EVS_REASON_SCALERS_STOPPED "KEDAScalersStopped"
#define EVS_REASON_SCALER_FAILED "KEDAScalerFailed"
#define EVS_REASON_METRIC_SOURCE_FAILED "KEDAMetricSourceFailed"
#define EVS_REASON_SCALE_TARGET_ACTIVATED "KEDAScaleTargetActivated"
#define EVS_REASON_SCALE_TARGET_DEACTIVATED "KEDAScaleTargetDeactivated"
#define EVS_REASON_SCALE_TARGET_ACTIVATION_FAILED "KEDAScaleTargetActivationFailed"
#define EVS_REASON_SCALE_TARGET_DEACTIVATION_FAILED "KEDAScaleTargetDeactivationFailed"
/* KEDA's action for KEDAScalersStarted (scale_handler.go). */
#define EVS_ACTION_SCALERS_WATCH_STARTED "ScalersWatchStarted"

/* evscale's own, for what KEDA has no reason for (prefix "Evscale" so nobody mistakes them for
 * KEDA's):
 *  EvscaleCircuitBreakerOpen    Warning the target's writes are suspended (breaker opened)
 *  EvscaleCircuitBreakerClosed  Normal  writes resumed (breaker closed or reset)
 *  EvscaleScaleTargetConflict   Warning another writer keeps changing the target's replicas
 *  EvscaleScaleTargetRefused    Warning not scaled: another ScaledObject or an HPA drives the
 *                                       target
 *  EvscaleKEDAHPAAdopted        Normal  KEDA's HPA for it is being deleted so that evscale drives
 *                                       the target (kubernetes.adopt_keda_hpas)
 *  EvscaleKEDAOperatorRunning   Warning KEDA's operator re-created its HPA after evscale deleted
 *                                       one: left alone, not scaled */
#define EVS_REASON_BREAKER_OPEN "EvscaleCircuitBreakerOpen"
#define EVS_REASON_BREAKER_CLOSED "EvscaleCircuitBreakerClosed"
#define EVS_REASON_TARGET_CONFLICT "EvscaleScaleTargetConflict"
#define EVS_REASON_TARGET_REFUSED "EvscaleScaleTargetRefused"
#define EVS_REASON_KEDA_HPA_ADOPTED "EvscaleKEDAHPAAdopted"
#define EVS_REASON_KEDA_OPERATOR_RUNNING "EvscaleKEDAOperatorRunning"

typedef enum { EVS_EVENT_NORMAL = 0, EVS_EVENT_WARNING = 1 } evs_event_type_t;

/* One occurrence. Strings borrowed for the call. The Kubernetes limits are applied: reason and
 * action cut at 128 bytes, the message at 1024 (events.k8s.io's note limit), on a UTF-8 boundary.
 */
typedef struct {
  const char *ns, *name, *uid; /* the ScaledObject; uid required (kubectl describe matches it) */
  evs_event_type_t type;
  const char *reason;  /* EVS_REASON_* */
  const char *action;  /* NULL: the reason, as KEDA */
  const char *message; /* NULL: "" */
} evs_event_t;

/* --- pure core: the decision for an occurrence at `now_ms` --- */

typedef struct {
  uint64_t window_ms;         /* 0: 6 min */
  uint64_t patch_interval_ms; /* 0: 60 s */
  unsigned spam_burst;        /* 0: 25 */
  double spam_qps;            /* <= 0: 1/300 */
  size_t lru_max;             /* 0: 4096 (each cache) */
} evs_events_limits_t;

typedef enum {
  EVS_EVENTS_SEND = 0, /* create a new Event (count 1, or the series' count after a 404) */
  EVS_EVENTS_PATCH,    /* update the existing Event's count/series to entry->count */
  EVS_EVENTS_COUNTED,  /* counted in an existing series; its PATCH comes later */
  EVS_EVENTS_DROP      /* the spam filter has no token for the object: not sent */
} evs_events_verdict_t;

typedef struct evs_events_cache_s evs_events_cache_t;

/* private: a key in one of the LRUs (series, spam buckets) */
typedef struct evs_events_node_s {
  evs_list_t lru;
  struct evs_events_node_s *next; /* hash chain */
  uint64_t hash;
  char *key;
} evs_events_node_t;

/* One aggregated series (an LRU entry). Read-only for callers. */
typedef struct {
  evs_events_node_t node; /* private */
  char name[254];         /* the Event's metadata.name; set by the caller when it sends SEND */
  uint32_t count;         /* occurrences in the series */
  uint32_t sent_count;    /* count of the last request made (0: none) */
  uint64_t first_ms, last_ms, last_send_ms;
  int64_t first_wall_ms; /* wall clock of the first occurrence (for firstTimestamp) */
  int created;           /* the create succeeded: patches may go */
  void *inflight;        /* private: the request in flight, NULL when none */
} evs_events_entry_t;

/* NULL on ENOMEM. */
evs_events_cache_t *evs_events_cache_new(const evs_events_limits_t *limits);
void evs_events_cache_free(evs_events_cache_t *c);
/* Records one occurrence; *entry (may be NULL) gets its series (NULL for DROP), borrowed until
 * the next call that changes the cache. UV_EINVAL (missing fields), UV_ENOMEM, or a verdict. */
int evs_events_decide(evs_events_cache_t *c, const evs_event_t *e, uint64_t now_ms,
                      evs_events_entry_t **entry);
/* For the flush timer: PATCH when the entry has uncounted occurrences, was created, has nothing in
 * flight, its interval has passed and the spam filter has a token; else COUNTED. */
evs_events_verdict_t evs_events_flush_due(evs_events_cache_t *c, evs_events_entry_t *entry,
                                          uint64_t now_ms);
/* Forgets a series (its create failed, so the next occurrence creates again). */
void evs_events_forget(evs_events_cache_t *c, evs_events_entry_t *entry);
size_t evs_events_cache_size(const evs_events_cache_t *c);

/* --- on the loop --- */

typedef struct evs_events_s evs_events_t;

typedef struct {
  const char *group_version; /* "events.k8s.io/v1" or "v1"; NULL or "": "v1" */
  const char *instance;      /* reportingInstance (required, at most 128 bytes) */
  evs_events_limits_t limits;
  unsigned max_inflight; /* 0: 32 */
} evs_events_options_t;

typedef struct {
  uint64_t created;    /* Events created (2xx) */
  uint64_t patched;    /* count/series updates sent (2xx) */
  uint64_t aggregated; /* occurrences after a series' first: counted, sent in a PATCH's count */
  uint64_t dropped;    /* not sent: spam filter, too many in flight, or failed after a retry */
  uint64_t retried;    /* requests sent a second time after a 5xx, 429 or transport error */
} evs_events_stats_t;

/* *out new. 0, UV_EINVAL (no instance, kube NULL), UV_ENOMEM. */
int evs_events_new(uv_loop_t *loop, evs_kube_t *kube, const evs_events_options_t *opts,
                   evs_events_t **out);
/* Records an occurrence and sends what the decision says, at EVS_PRIO_LOW. Never blocks.
 * Returns the verdict (>= 0), UV_EINVAL, UV_ENOMEM, EVS_ESTATE (closing). */
int evs_events_emit(evs_events_t *ev, const evs_event_t *e);
void evs_events_stats(const evs_events_t *ev, evs_events_stats_t *out);
/* Requests made and not yet answered. */
unsigned evs_events_inflight(const evs_events_t *ev);
/* Cancels the requests in flight (not counted as dropped), stops the timer, frees, then cb(arg)
 * from the loop (cb may be NULL). */
void evs_events_close(evs_events_t *ev, void (*cb)(void *arg), void *arg);

/* The JSON body of a create (SEND) for this group version, pure: name, timestamps (wall ms) and
 * count given. A new string (free()), NULL on ENOMEM. */
char *evs_events_create_body(const char *group_version, const char *controller,
                             const char *instance, const evs_event_t *e, const char *name,
                             int64_t first_wall_ms, int64_t last_wall_ms, uint32_t count);
/* The merge patch (PATCH) of a series' count. A new string, NULL on ENOMEM. */
char *evs_events_patch_body(const char *group_version, int64_t last_wall_ms, uint32_t count);

#endif
