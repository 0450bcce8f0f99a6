/* The Prometheus trigger: KEDA's metadata, its query, its result rules, and a fan-out that asks
 * each distinct query once per cadence however many triggers share it.
 *
 * Sources: kedacore/keda v2.20.2 (68a5b5028f35b22d50597c69819ab32c4e92f21a)
 *  - pkg/scalers/prometheus_scaler.go: prometheusMetadata (fields, defaults), NewPrometheusScaler
 *    (which TLS settings apply), ExecutePromQuery (URL, headers, result rules);
 *  - pkg/scalers/authentication/authentication_types.go: Config (authModes, fields, Validate);
 *  - pkg/scalers/scalersconfig/typed_config.go: how each typed field is read (maps "k=v,k=v",
 *    time.Duration with a bare number as milliseconds, enum/exclusiveSet checks);
 *  - pkg/util/tls_config.go NewTLSConfig, pkg/util/http.go CreateHTTPClient;
 *  - cmd/operator/main.go: KEDA_HTTP_DEFAULT_TIMEOUT, 3000 ms.
 *
 * Three layers, usable apart:
 *  1. evs_prom_config_parse: the trigger's three maps → a validated config (pure, no I/O).
 *  2. evs_prom_decode: a /api/v1/query response body → KEDA's value or error (pure; fuzzed).
 *  3. The hub: one per process. evs_prom_subscribe(hub, cfg, cadence) delivers readings at that
 *     cadence. Subscriptions with the same request (server, query, namespace, parameters,
 *     headers, credentials, TLS, timeout) and cadence share one group: one timer, one request per
 *     cadence, the response decoded once and fanned out (ignoreNullValues and activationThreshold
 *     are applied per subscriber). The HTTP client pools keep-alive connections per server and
 *     TLS identity. A server that fails at the connection level (refused, reset, timeout, DNS) is
 *     marked down with backoff (evscale/backoff.h, full jitter): until its retry time its groups
 *     answer the last error at once without a request, then one request probes it; other servers
 *     are untouched. Errors are logged once per state change (a server down/up, a group's error
 *     text changing); tokens, passwords and header values never appear in logs or messages.
 *
 * Deliberate differences from KEDA (for the README):
 *  - a body whose `status` is not "success" is an error (KEDA never looks at it);
 *  - a `scalar` result ([time, "value"]) is accepted as the value (KEDA fails to decode it);
 *  - a sample value that is not a string (KEDA panics on the type assertion) is an error;
 *  - header names/values that Go would refuse at every request (empty name, CR/LF) are refused
 *    at creation; `namespace` is URL-escaped (KEDA pastes it raw; same bytes for any valid
 *    Kubernetes namespace); queryParameters are sent sorted by name (Go: random map order).
 *  - authModes apiKey and oauth are accepted and validated as KEDA does, and, as in KEDA's
 *    prometheus scaler, send nothing.
 *
 * The maps are scaler.h's evs_kvs_t (evs_prom_map_t is its old name), so the scaler type
 * (prometheus_scaler.c, evs_scaler_prometheus_type) passes a trigger's maps through. */
#ifndef EVSCALE_PROMETHEUS_H
#define EVSCALE_PROMETHEUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "evscale/diag.h"
#include "evscale/scaler.h"

typedef evs_kv_t evs_prom_kv_t;
typedef evs_kvs_t evs_prom_map_t;

/* The trigger type "prometheus" (prometheus_scaler.c): needs env->prom_hub. */
extern const evs_scaler_type_t evs_scaler_prometheus_type;

typedef struct {
  const char *object;  /* "namespace/name" of the ScaledObject: diag source */
  const char *trigger; /* the trigger's name or NULL: named in every message */
  size_t index;        /* position in spec.triggers: diag paths "spec.triggers[i]..." */
  evs_prom_map_t metadata, auth_params, resolved_env;
} evs_prom_input_t;

enum {
  EVS_PROM_AUTH_BEARER = 1,
  EVS_PROM_AUTH_BASIC = 2,
  EVS_PROM_AUTH_TLS = 4,
  EVS_PROM_AUTH_CUSTOM = 8,
  EVS_PROM_AUTH_APIKEY = 16,
  EVS_PROM_AUTH_OAUTH = 32
};

typedef struct {
  char *name, *value;
} evs_prom_pair_t;

/* Everything owned (evs_prom_config_free). Strings are trimmed as KEDA trims them. */
typedef struct {
  char *server_address;
  char *query;
  double threshold;
  double activation_threshold;
  char *namespace_; /* NULL when absent */
  evs_prom_pair_t *custom_headers;
  size_t n_custom_headers;
  evs_prom_pair_t *query_params; /* sorted by name */
  size_t n_query_params;
  int ignore_null_values; /* default 1 */
  int unsafe_ssl;
  uint64_t timeout_ms; /* effective: metadata, else 3000, capped by the limit */
  unsigned auth_modes; /* EVS_PROM_AUTH_* */
  char *bearer_token, *username, *password, *cert, *key, *ca;
  char *custom_auth_header, *custom_auth_value;
} evs_prom_config_t;

/* Reads and validates every field; every problem is added to diag (source in->object, path
 * "spec.triggers[i].metadata.<field>" or "...authParams.<field>"), never a secret's value.
 * request_timeout_limit_ms (limits.request_timeout; 0: none) caps the timeout. Returns 0 or
 * UV_EINVAL (diag has the reasons) or UV_ENOMEM. On error *out is left empty. */
int evs_prom_config_parse(const evs_prom_input_t *in, uint64_t request_timeout_limit_ms,
                          evs_prom_config_t *out, evs_diag_t *diag);
void evs_prom_config_free(evs_prom_config_t *cfg);

/* Go's time.ParseDuration, then (as KEDA >= 2.18 does) strconv.ParseInt as milliseconds.
 * *ns gets nanoseconds. 0, UV_EINVAL (syntax, negative) or EVS_ERANGE. */
int evs_prom_parse_timeout(const char *s, uint64_t *ns);
/* Go's url.QueryEscape into a new string (free it); NULL when out of memory. */
char *evs_prom_query_escape(const char *s);

/* --- The response decoder --- */
typedef struct {
  double value; /* the sample as strconv.ParseFloat read it (NaN, ±Inf kept: reading.h decides) */
  int empty_upstream; /* 1 where KEDA calls RecordEmptyUpstreamResponse (whatever the outcome) */
  int error;          /* 0, or EVS_EJSON (undecodable), EVS_ESTATUS (status not success),
                         EVS_EMETRIC (empty without ignoreNullValues, several series, too few
                         values, unparsable or non-string value) */
  char msg[200];      /* the error's text when error != 0 (KEDA's wording where it has one) */
} evs_prom_result_t;

/* Decodes one 2xx body of /api/v1/query. With ignore_null an empty vector or an empty value list
 * gives value 0 without error; NaN/±Inf are left to evs_reading_prometheus. A sample whose value
 * is JSON null gives -1 without error, as KEDA's `var v float64 = -1` does. Pure. */
int evs_prom_decode(const char *body, size_t len, int ignore_null, evs_prom_result_t *out);

/* --- The hub: shared requests --- */
typedef struct evs_prom_hub_s evs_prom_hub_t;
typedef struct evs_prom_sub_s evs_prom_sub_t;

typedef struct {
  uint64_t backoff_initial_ms; /* backoff.initial; 0: 500 */
  uint64_t backoff_max_ms;     /* backoff.max; 0: 60000 */
  size_t max_response_bytes;   /* limits.max_response_bytes; 0: 16 MiB */
  unsigned max_conns_per_host; /* 0: 4 */
  /* PEM text of the system trust store (borrowed during hub_new; copied): KEDA trusts the system
   * roots plus `ca`. NULL: only `ca` (an https server without one fails verification). The app
   * reads /etc/ssl/certs/ca-certificates.crt at startup with the async file reader. Ignored
   * with tls_cache. */
  const char *system_ca_pem;
  /* Where https groups get their TLS configuration (borrowed; must outlive the hub). The cache
   * reads the system trust store and parses certificates on libuv's thread pool, so nothing of
   * that runs on the loop; a group's first request waits for its configuration, and a
   * configuration that cannot be built is an error reading (retried at the next tick). NULL:
   * configurations are parsed on the loop from system_ca_pem at subscribe (tests, tools). */
  evs_tls_cache_t *tls_cache;
} evs_prom_hub_options_t;

typedef struct {
  double value;          /* KEDA's metric value (after ignoreNullValues and NaN/Inf rules) */
  int active;            /* value > activationThreshold */
  int error;             /* 0 or a negative code (value/active then 0) */
  const char *error_msg; /* borrowed for the callback; never holds a secret */
  int64_t time_ms;       /* wall-clock time the response arrived */
  int empty_upstream;    /* count keda_scaler_empty_upstream_responses_total once */
  uint64_t latency_ms;   /* the answer's request round trip; 0 when no request was sent */
  uint64_t latency_us;   /* the same in microseconds */
} evs_prom_reading_t;

typedef void (*evs_prom_reading_cb)(evs_prom_sub_t *sub, const evs_prom_reading_t *r, void *arg);

typedef struct {
  uint64_t requests;     /* HTTP requests sent */
  uint64_t responses;    /* ... answered (any status) */
  uint64_t failures;     /* ... failed (connection errors, timeouts, non-2xx, bad bodies) */
  uint64_t skipped_down; /* ticks answered without a request: server down or query backing off */
  uint64_t deliveries;   /* readings delivered */
  size_t groups, subscribers, servers;
} evs_prom_hub_stats_t;

/* *out new; close with evs_prom_hub_close. */
int evs_prom_hub_new(uv_loop_t *loop, const evs_prom_hub_options_t *opts, evs_prom_hub_t **out);
/* Drops every subscription (no callback runs after this call), closes every connection and
 * timer, frees the hub, then cb(arg) from a later loop iteration. */
void evs_prom_hub_close(evs_prom_hub_t *hub, void (*cb)(void *arg), void *arg);
void evs_prom_hub_stats(const evs_prom_hub_t *hub, evs_prom_hub_stats_t *out);

/* Subscribes cfg (borrowed: copied as needed) at cadence_ms (>= 1). The first reading comes from
 * the group's next answer: a new group asks within min(cadence, 1 s) (a random delay, so that
 * groups created together do not ask in the same millisecond), an existing one delivers its last
 * answer on the next loop iteration. After its first request a group's period runs from a random
 * point of the next cadence (phases spread over the cadence; the gap never exceeds it): one
 * request per group and one reading per subscriber per cadence. Readings go to cb(arg) until
 * unsubscribe. *out borrowed, valid until unsubscribe. UV_EINVAL (bad URL or headers),
 * UV_ENOMEM, EVS_ETLS (cert/key/ca unusable; without tls_cache only: with it, an error reading),
 * EVS_ESTATE (closing). */
int evs_prom_subscribe(evs_prom_hub_t *hub, const evs_prom_config_t *cfg, uint64_t cadence_ms,
                       evs_prom_reading_cb cb, void *arg, evs_prom_sub_t **out);
/* The scaler interface's poll: a reading for sub soon, never inside this call. The group's last
 * answer when it is younger than the cadence (no request), else the group asks now (its period
 * then takes a new random phase; a request or TLS build in flight is simply awaited). 0, or
 * EVS_ESTATE while the hub closes. */
int evs_prom_poll(evs_prom_sub_t *sub);
/* No callback runs for sub after this call (also allowed from inside its own callback). The last
 * subscriber of a group closes it (its request is canceled). */
void evs_prom_unsubscribe(evs_prom_sub_t *sub);

#endif
