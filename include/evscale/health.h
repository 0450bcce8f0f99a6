/* The foundation's observability: /healthz, /readyz and /metrics on the HTTP server, event
 * loop lag, build info, process metrics and the config reload metrics.
 *
 * /healthz answers 200 "ok" from the loop thread, so an answer proves the loop turns; when
 * options.lag_unhealthy_seconds > 0 it answers 503 while the last measured loop lag exceeds it
 * (off by default: a loop stalled for good never answers at all, which the kubelet's probe
 * timeout already catches; the threshold is for a loop that turns but too slowly).
 * /readyz answers 200 "ok" when every registered readiness condition holds (none registered =
 * ready), else 503 "not ready: a, b". /metrics answers the registry's exposition with
 * Content-Type "text/plain; version=0.0.4; charset=utf-8": with a Content-Length when it fits in
 * one slice of EVS_HEALTH_SCRAPE_SLICE bytes, else streamed (chunked) a slice per loop turn, so a
 * scrape at 50,000 ScaledObjects never holds the loop (perf/bench_metrics, perf/RESULTS.md).
 *
 * Families registered by evs_health_new():
 *   evscale_build_info{version,revision,libuv,mbedtls} 1
 *   process_* (see procstat.h)
 *   evscale_event_loop_lag_seconds (histogram) and evscale_event_loop_lag_last_seconds (gauge):
 *     a repeating, unref'd uv_timer (every lag_interval_ms) compares when it fired with when it
 *     was due, by uv_hrtime
 *   evscale_config_reloads_total{result="success"|"failure"},
 *   evscale_config_last_reload_successful, evscale_config_last_reload_success_timestamp_seconds
 *   evscale_http_requests_total{path,code} (path is the route, or "other" for unknown paths) */
#ifndef EVSCALE_HEALTH_H
#define EVSCALE_HEALTH_H

#include <stdint.h>
#include <uv.h>

#include "evscale/http_server.h"
#include "evscale/metrics.h"

typedef struct evs_health_s evs_health_t;

/* Bytes of exposition rendered per loop turn while streaming /metrics (about 750 series). */
#define EVS_HEALTH_SCRAPE_SLICE (128 * 1024)

typedef struct {
  uint64_t lag_interval_ms;     /* default 500 */
  double lag_unhealthy_seconds; /* default 0 = /healthz never fails on lag */
  const char *version;          /* default EVS_VERSION; copied into the metric */
  const char *revision;         /* default EVS_GIT_REVISION */
} evs_health_options_t;

void evs_health_options_init(evs_health_options_t *opts);

/* Registers the families above in reg (borrowed; must outlive the health object) and starts
 * the lag timer. opts may be NULL. *out is new: release with evs_health_close().
 * 0, UV_ENOMEM, or a registration error (UV_EEXIST when reg already has these families). */
int evs_health_new(uv_loop_t *loop, evs_metrics_t *reg, const evs_health_options_t *opts,
                   evs_health_t **out);

/* Adds the /healthz, /readyz, /metrics routes to server and counts its responses in
 * evscale_http_requests_total. Close the server before the health object. */
int evs_health_attach(evs_health_t *h, evs_http_server_t *server);

/* Sets (adding it if new, name copied) a readiness condition: evs_health_set_ready(h, "config",
 * 1). 0 or UV_ENOMEM / UV_EINVAL. */
int evs_health_set_ready(evs_health_t *h, const char *condition, int ready);
/* 1 when every condition holds. */
int evs_health_is_ready(const evs_health_t *h);

/* Records a config reload attempt at now_unix (seconds since the epoch, the caller's clock). */
void evs_health_config_reload(evs_health_t *h, int success, double now_unix);

/* The last measured loop lag in seconds (0 before the first measurement). */
double evs_health_last_lag(const evs_health_t *h);

/* Stops the lag timer and frees h from its close callback; cb (may be NULL) runs then. */
void evs_health_close(evs_health_t *h, void (*cb)(void *data), void *data);

#endif
