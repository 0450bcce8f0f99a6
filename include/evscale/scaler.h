/* The scaler interface: every trigger type (cron, redis, prometheus) implements it.
 *
 * A scaler is created from a trigger's configuration (metadata + resolved authentication, as
 * KEDA hands them to its scalers) and an environment of shared services (connection registries,
 * TLS configurations, backoff, metrics), started with a reading callback, and delivers readings
 * (value, active, error, time) through it: when its backend pushes (Redis keyspace events), when
 * a boundary passes (cron), when asked (evs_scaler_poll) and at least as often as its cadence
 * says (evs_scaler_set_cadence). It is torn down through the loop: evs_scaler_close stops every
 * callback at once and frees the scaler from its last uv_close callback, then calls the close
 * callback.
 *
 * State: a scaler is CREATED, then STARTED, then CLOSING (from evs_scaler_close until its close
 * callback), then freed. Every call on a CLOSING scaler returns EVS_ESTATE (close itself is a
 * no-op) and touches nothing but the generic header, which lives until the close callback.
 *
 * Readings go through the engine's per-type conversion (reading.h): a scaler hands its
 * backend's raw answer to evs_reading_<type>, so the value and activity mean what KEDA's
 * GetMetricsAndActivity says for every trigger type.
 *
 * Data flows one way: the scaler never calls into the engine; whoever owns it (the registry)
 * receives readings and feeds the engine. */
#ifndef EVSCALE_SCALER_H
#define EVSCALE_SCALER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "evscale/config.h"
#include "evscale/diag.h"
#include "evscale/http_client.h"
#include "evscale/metrics.h"
#include "evscale/redis_conn.h"
#include "evscale/timerq.h"
#include "evscale/tls.h"

/* A borrowed string pair. */
typedef struct {
  const char *key;
  const char *value;
} evs_kv_t;

typedef struct {
  const evs_kv_t *items;
  size_t n;
} evs_kvs_t;

/* What a trigger hands to its scaler. Everything is borrowed for the duration of create; a
 * scaler copies what it keeps. The three maps are KEDA's ScalerConfig: TriggerMetadata,
 * AuthParams (from a TriggerAuthentication) and ResolvedEnv (the target's container env). */
typedef struct {
  const char *type;       /* "cron", "redis", "prometheus" */
  const char *name;       /* the trigger's `name`, or NULL */
  size_t index;           /* position in spec.triggers: KEDA's metric names are s{index}-… */
  const char *object;     /* "namespace/name" of the ScaledObject, for errors and logs */
  int metric_type_value;  /* 1 when metricType is Value, 0 for AverageValue */
  evs_kvs_t metadata;     /* trigger.metadata */
  evs_kvs_t auth_params;  /* resolved TriggerAuthentication parameters */
  evs_kvs_t resolved_env; /* resolved environment of the scale target's containers */
} evs_scaler_config_t;

/* Looks a key up in a map; NULL when absent. */
const char *evs_kvs_get(const evs_kvs_t *kvs, const char *key);

/* --- A cache of TLS client configurations, keyed by what they trust and present. ---
 * Trigger authentications carry TLS material as PEM text (KEDA's `ca`, `cert`, `key`); many
 * triggers share one. Building a configuration parses certificates and reads the system CA
 * bundle (Go's TLS roots, which KEDA extends with `ca`): that is file I/O and CPU, so it runs on
 * libuv's thread pool, once per distinct (ca, cert, key, insecure). Loop thread only. */
typedef struct evs_tls_cache_s evs_tls_cache_t;
typedef struct evs_tls_cache_req_s evs_tls_cache_req_t;
/* err 0: cfg is borrowed for the call (take a reference to keep it); else why says what failed
 * (static text, no secret). */
typedef void (*evs_tls_cache_cb)(int err, const char *why, evs_tls_config_t *cfg, void *arg);

/* system_ca_file: the bundle every verifying config trusts besides its own CA (NULL: the Debian
 * bundle /etc/ssl/certs/ca-certificates.crt when it exists; "" none). *out new. */
int evs_tls_cache_new(uv_loop_t *loop, const char *system_ca_file, evs_tls_cache_t **out);
/* cb runs exactly once, later (never inside this call), unless cancelled; *req may be NULL when
 * the caller never cancels. o's strings are copied. UV_ENOMEM, EVS_ESTATE (closing). */
int evs_tls_cache_get(evs_tls_cache_t *c, const evs_tls_options_t *o, evs_tls_cache_cb cb,
                      void *arg, evs_tls_cache_req_t **req);
/* The callback of req will not run. */
void evs_tls_cache_cancel(evs_tls_cache_req_t *req);
/* Number of distinct configurations built or building. */
size_t evs_tls_cache_size(const evs_tls_cache_t *c);
/* Cancels every waiting request, frees the cache once builds in flight are over, then cb(arg). */
void evs_tls_cache_close(evs_tls_cache_t *c, void (*cb)(void *arg), void *arg);

/* What every scaler may use besides the loop. Borrowed: everything must outlive the scalers. */
typedef struct {
  evs_http_client_t *http;     /* the shared HTTP client; may be NULL (no HTTP scaler yet) */
  evs_redis_registry_t *redis; /* Redis connections shared by identity; NULL: redis refused */
  evs_tls_cache_t *tls;        /* NULL: TLS triggers are refused at creation */
  /* The process's one Prometheus hub (prometheus.h): it shares one request among the triggers
   * asking the same query at the same cadence, so it must be one per process. NULL: prometheus
   * triggers are refused at creation. */
  struct evs_prom_hub_s *prom_hub;
  evs_metrics_t *metrics; /* may be NULL */
  /* The loop's timer queue (timerq.h), shared by every scaler created with this environment:
   * the cadence and the types' own timers are 32 B entries in it instead of a uv_timer_t each
   * (issue 13). NULL: each scaler that needs timers makes a queue of its own, closed with it
   * (tests and tools; ~200 B and a handle per scaler). Must outlive the scalers. */
  evs_timerq_t *timerq;
  uint64_t backoff_initial_ms;  /* config backoff.initial (0: 500) */
  uint64_t backoff_max_ms;      /* config backoff.max (0: 60000) */
  uint64_t request_timeout_ms;  /* config limits.request_timeout (0: 10000) */
  int redis_keyspace_events;    /* evs_keyspace_mode_t: config redis.keyspace_events */
  int redis_configure_keyspace; /* config redis.configure_keyspace_events */
} evs_scaler_env_t;

typedef struct {
  double value;    /* raw metric value, as KEDA's GetMetricsAndActivity returns it */
  int active;      /* the scaler's own activity verdict */
  int error;       /* 0, or a negative code: value and active are then meaningless */
  int64_t time_ms; /* wall-clock time the reading was taken (ms since the epoch) */
  /* When the reading will change by itself (a cron boundary), ms since the epoch; 0 = unknown.
   * Lets the engine schedule its next look without polling. */
  int64_t next_change_ms;
  const char *error_msg; /* optional detail for status and logs; borrowed for the callback */
  /* 1 when the backend answered with nothing (Prometheus: an empty vector or value list), at the
   * point where KEDA calls RecordEmptyUpstreamResponse, whatever the outcome (an error without
   * ignoreNullValues, a 0 value with it): the owner counts
   * keda_scaler_empty_upstream_responses_total from it. 0 otherwise. */
  uint8_t empty_upstream;
} evs_reading_t;

typedef struct evs_scaler_s evs_scaler_t;
typedef struct evs_scaler_type_s evs_scaler_type_t;

typedef void (*evs_scaler_reading_cb)(evs_scaler_t *scaler, const evs_reading_t *reading,
                                      void *data);
typedef void (*evs_scaler_close_cb)(void *data);

struct evs_scaler_type_s {
  const char *name;
  /* Validates cfg and builds a scaler; on bad input returns UV_EINVAL (or a closer code) and
   * adds errors naming the field ("metadata.start: …") to diag. Never does I/O. */
  int (*create)(uv_loop_t *loop, const evs_scaler_env_t *env, const evs_scaler_config_t *cfg,
                evs_scaler_t **out, evs_diag_t *diag);
  /* Begins delivering readings (through evs_scaler__emit). */
  int (*start)(evs_scaler_t *scaler);
  /* Asks for a reading soon (polled scalers read their backend; others may answer at once).
   * Never delivers from inside the call. Not called once the scaler is closing. */
  int (*poll)(evs_scaler_t *scaler);
  /* Stops every callback now; when its last handle closed, calls evs_scaler__closed. */
  void (*close)(evs_scaler_t *scaler);
  /* Optional. A type whose backend already reads on a schedule of its own (the Prometheus hub
   * asks each distinct query once per cadence) is handed the period instead of being polled by
   * the generic timer: two schedules would give a trigger two readings per period. Called at
   * start (after `start`) and at every change while started; every_ms 0 means none set. It must
   * deliver a reading at least every every_ms. NULL: the generic timer polls. */
  int (*cadence)(evs_scaler_t *scaler, uint64_t every_ms);
};

typedef enum {
  EVS_SCALER_CREATED = 0,
  EVS_SCALER_STARTED = 1,
  EVS_SCALER_CLOSING = 2
} evs_scaler_state_t;

/* What a scaler delivered, for the owner's metrics: KEDA's keda_scaler_detail_errors_total counts
 * `errors`, keda_scaler_metrics_latency_seconds is last_latency_us (KEDA times each
 * GetMetricsAndActivity). */
typedef struct {
  uint64_t readings;        /* delivered so far */
  uint64_t errors;          /* of which with error != 0 */
  uint64_t last_latency_us; /* the backend round trip behind the last reading; 0 when none was
                               needed (cron). A Prometheus answer shared by a group carries its
                               one request's round trip. */
  int last_error;           /* 0 or the last reading's error */
  int64_t last_time_ms;     /* the last reading's time_ms, 0 before the first */
} evs_scaler_stats_t;

/* Every scaler struct begins with this header; only scaler.c writes it (but `notice`). It is in
 * every trigger of every ScaledObject (issue 13): 128 bytes, no holes but the tail's. */
struct evs_scaler_s {
  const evs_scaler_type_t *type; /* never cleared: the state says whether it may be used */
  uv_loop_t *loop;
  /* Readings go to on_reading until close; from then on_close holds the close callback. */
  union {
    evs_scaler_reading_cb on_reading;
    evs_scaler_close_cb on_close;
  };
  void *data;
  /* The environment's timer queue, or one of the scaler's own (owns_tq) made at first need and
   * closed with the scaler; NULL until then. Types reach it with evs_scaler__timerq. */
  evs_timerq_t *tq;
  evs_timerq_entry_t cadence; /* the generic poll (see evs_scaler_set_cadence) */
  uint64_t every_ms;          /* the cadence's period, 0 if none */
  const char *notice;         /* see evs_scaler_notice; owned (written, freed) by the type */
  /* evs_scaler_stats_t's counters. The latency is bounded by the request timeouts (seconds), so
   * 32 bits of microseconds (71 minutes) hold it; longer saturates. The counts stay 64-bit: a
   * pushed trigger on a busy key reads back to back, 2^32 readings in days. */
  uint64_t readings, errors;
  int64_t last_time_ms;
  uint32_t last_latency_us;
  int32_t last_error;
  uint8_t state; /* evs_scaler_state_t */
  uint8_t owns_tq;
};

/* The type registered under `name` ("cron", …), or NULL. */
const evs_scaler_type_t *evs_scaler_type_find(const char *name);

/* Dispatches on cfg->type; UV_EINVAL with a diag entry naming `type` for an unknown type.
 * env may be NULL (no shared services: types that need one refuse). */
int evs_scaler_create(uv_loop_t *loop, const evs_scaler_env_t *env, const evs_scaler_config_t *cfg,
                      evs_scaler_t **out, evs_diag_t *diag);
/* Readings go to cb(data) from now on. EVS_ESTATE when started already or closing. */
int evs_scaler_start(evs_scaler_t *scaler, evs_scaler_reading_cb cb, void *data);
/* A reading soon, never from inside the call. EVS_ESTATE before start or when closing. */
int evs_scaler_poll(evs_scaler_t *scaler);
/* "Read at least every every_ms": the registry sets the ScaledObject's pollingInterval, and
 * defaults.active_read_interval while the target has replicas (KEDA's HPA reads every 15 s then).
 * The first poll after a change comes after a uniformly random part of the period, so scalers
 * created together are spread over it instead of reading in lock-step; after that every every_ms.
 * Readings delivered meanwhile (a push) do not move the period: restarting it would line up
 * again every scaler that read at start. 0 stops the cadence.
 * May be called before start (polls begin with start). UV_ENOMEM, EVS_ESTATE when closing. */
int evs_scaler_set_cadence(evs_scaler_t *scaler, uint64_t every_ms);
/* A condition that is no error but belongs in the trigger's health ("keyspace events are off on
 * the server: polling only"), or NULL. Current as of the last reading; borrowed until the next
 * call into the scaler. */
const char *evs_scaler_notice(const evs_scaler_t *scaler);
/* Copies the scaler's counters into *out. EVS_ESTATE when closing (the counters of a closing
 * scaler are final as of evs_scaler_close: read them before). */
int evs_scaler_stats(const evs_scaler_t *scaler, evs_scaler_stats_t *out);
/* The period set, 0 if none. */
uint64_t evs_scaler_cadence(const evs_scaler_t *scaler);
/* Idempotent per scaler; on_close(data) runs once, from a later loop iteration, after which the
 * scaler is freed. No reading callback runs after this call. */
void evs_scaler_close(evs_scaler_t *scaler, evs_scaler_close_cb on_close, void *data);

/* --- For trigger types (internal to src/scalers). --- */
/* Delivers a reading to the owner (nothing once closing); counts it in the stats. */
void evs_scaler__emit(evs_scaler_t *scaler, const evs_reading_t *r);
/* The same, with the backend round trip the reading took (microseconds; 0: none). */
void evs_scaler__emit_timed(evs_scaler_t *scaler, const evs_reading_t *r, uint64_t latency_us);
/* The type's last handle closed: frees the scaler with free_fn and runs on_close (when the
 * scaler had a timer queue of its own, from that queue's close callback, after free_fn). */
void evs_scaler__closed(evs_scaler_t *scaler, void (*free_fn)(evs_scaler_t *scaler));
/* For a type without a libuv handle of its own: evs_scaler__closed(scaler, free_fn) runs from
 * the loop (a handle allocated for the close alone, closed at once), not inside this call. It
 * does not depend on the timer queue, which may be closing in the same loop iteration. */
void evs_scaler__close_later(evs_scaler_t *scaler, void (*free_fn)(evs_scaler_t *scaler));
/* The timer queue the scaler's timers go in (the environment's, else one of its own, made now);
 * NULL when out of memory. Its entries must be stopped by the type's close. */
evs_timerq_t *evs_scaler__timerq(evs_scaler_t *scaler);
/* Uniform in [0, 1) from a per-process generator seeded at first use (jitter, not secrets). */
double evs_scaler__random(void);

#endif
