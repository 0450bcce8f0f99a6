/* The scalers' shared services as one object: the evs_scaler_env_t every scaler is created with
 * (scaler.h), built from the configuration and torn down in one call.
 *
 *   evs_scaler_services_t *svc;
 *   evs_scaler_services_new(loop, cfg, metrics, &svc);
 *   evs_scaler_create(loop, evs_scaler_services_env(svc), &trigger, &scaler, &diag);
 *   ...close every scaler, then:
 *   evs_scaler_services_close(svc, on_closed, arg);
 *
 * What it owns: one HTTP client (env->http), the registry of Redis connections shared by identity
 * (env->redis), the cache of TLS client configurations (env->tls), the process's one
 * Prometheus hub (env->prom_hub), which takes its TLS configurations from that cache, and the
 * loop's timer queue (env->timerq) every scaler's timers share. What it
 * borrows: the loop and the metrics registry (env->metrics), which must outlive it.
 *
 * Configuration keys read (config_schema.c): limits.request_timeout (every backend request, the
 * Redis connect and the HTTP client's), limits.max_response_bytes (HTTP bodies), backoff.initial
 * and backoff.max (reconnects of every backend), redis.keyspace_events and
 * redis.configure_keyspace_events (keyspace-event push mode). The values are copied at creation:
 * a reload that changes them takes effect for services created afterwards.
 *
 * No file is read on the loop: the system trust store (Debian's
 * /etc/ssl/certs/ca-certificates.crt; KEDA trusts the system roots plus a trigger's `ca`) is read
 * and parsed by the TLS cache on libuv's thread pool, once per distinct TLS configuration, for
 * Redis and Prometheus alike (issue 16: "system trust store read at start").
 *
 * Loop thread only. */
#ifndef EVSCALE_SCALER_SERVICES_H
#define EVSCALE_SCALER_SERVICES_H

#include <uv.h>

#include "evscale/config.h"
#include "evscale/metrics.h"
#include "evscale/scaler.h"

typedef struct evs_scaler_services_s evs_scaler_services_t;

/* Optional settings beyond the configuration, for tests and tools (all may be 0/NULL). */
typedef struct {
  /* The system trust store file: NULL = the Debian bundle when it exists, "" = none. */
  const char *system_ca_file;
} evs_scaler_services_options_t;

/* Builds every service from cfg (borrowed during the call; values copied). metrics is borrowed
 * and may be NULL. *out is new: release it with evs_scaler_services_close. Never does I/O.
 * UV_EINVAL (NULL loop, cfg or out), UV_ENOMEM; on error nothing is left open. */
int evs_scaler_services_new(uv_loop_t *loop, const evs_config_t *cfg, evs_metrics_t *metrics,
                            evs_scaler_services_t **out);
/* The same with options (opts may be NULL). */
int evs_scaler_services_new_ex(uv_loop_t *loop, const evs_config_t *cfg, evs_metrics_t *metrics,
                               const evs_scaler_services_options_t *opts,
                               evs_scaler_services_t **out);

/* The environment to create scalers with; borrowed, valid until close. Every pointer in it is
 * set (http, redis, tls, prom_hub, timerq; metrics as given). */
const evs_scaler_env_t *evs_scaler_services_env(const evs_scaler_services_t *s);

/* Closes the Prometheus hub (its subscriptions end: close every scaler first), the timer queue
 * (entries still queued are forgotten: close every scaler first), the Redis registry
 * (connections still held are closed), the TLS cache (waiting requests are cancelled; builds in
 * flight on the thread pool are awaited) and the HTTP client; frees s, then cb(arg)
 * once every handle is closed, from a later loop iteration. cb may be NULL. Idempotent: a second
 * call does nothing. */
void evs_scaler_services_close(evs_scaler_services_t *s, void (*cb)(void *arg), void *arg);

#endif
