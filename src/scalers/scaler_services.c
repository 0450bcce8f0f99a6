/* The scalers' shared services (scaler_services.h): one object that builds the environment from
 * the configuration and closes it again.
 *
 * Teardown counts the services still closing; a timer of our own is closed with them, so the
 * caller's callback always runs from a later loop iteration even when every service closes at
 * once (the Redis registry calls back before returning when it holds no connection). */
#include "evscale/scaler_services.h"
#include "evscale/error.h"
#include "evscale/http_client.h"
#include "evscale/prometheus.h"
#include "evscale/redis_conn.h"
#include "evscale/timerq.h"

#include <stdlib.h>

struct evs_scaler_services_s {
  evs_scaler_env_t env;
  uv_timer_t closer; /* no timer use: its close callback makes the final one asynchronous */
  int closing, pending;
  void (*close_cb)(void *);
  void *close_arg;
};

static void one_closed(void *arg) {
  evs_scaler_services_t *s = arg;
  if (--s->pending > 0)
    return;
  void (*cb)(void *) = s->close_cb;
  void *a = s->close_arg;
  free(s);
  if (cb)
    cb(a);
}

static void on_closer_closed(uv_handle_t *h) { one_closed(h->data); }

/* Closes whatever exists; used by close and by a failed new (pending counts what was started). */
static void close_all(evs_scaler_services_t *s) {
  s->pending = 6;
  /* The hub first: its groups cancel their requests to the TLS cache as they close. */
  if (s->env.prom_hub)
    evs_prom_hub_close(s->env.prom_hub, one_closed, s);
  else
    s->pending--;
  if (s->env.redis)
    evs_redis_registry_close(s->env.redis, one_closed, s);
  else
    s->pending--;
  if (s->env.tls)
    evs_tls_cache_close(s->env.tls, one_closed, s);
  else
    s->pending--;
  if (s->env.http)
    evs_http_client_close(s->env.http, one_closed, s);
  else
    s->pending--;
  if (s->env.timerq)
    evs_timerq_close(s->env.timerq, one_closed, s);
  else
    s->pending--;
  uv_close((uv_handle_t *)&s->closer, on_closer_closed);
}

static int build(evs_scaler_services_t *s, uv_loop_t *loop, const evs_config_t *cfg,
                 const evs_scaler_services_options_t *opts) {
  evs_scaler_env_t *e = &s->env;
  e->backoff_initial_ms = cfg->backoff.initial_ms;
  e->backoff_max_ms = cfg->backoff.max_ms;
  e->request_timeout_ms = cfg->limits.request_timeout_ms;
  e->redis_keyspace_events = cfg->redis.keyspace_events;
  e->redis_configure_keyspace = cfg->redis.configure_keyspace_events;
  size_t max_body = (size_t)cfg->limits.max_response_bytes;

  evs_http_client_options_t ho = {.request_timeout_ms = cfg->limits.request_timeout_ms,
                                  .max_response_bytes = max_body,
                                  .user_agent = "evscale/" EVS_VERSION};
  int rc = evs_timerq_new(loop, &e->timerq);
  if (rc != 0)
    return e->timerq = NULL, rc;
  rc = evs_http_client_new(loop, &ho, &e->http);
  if (rc != 0)
    return e->http = NULL, rc;
  /* A Redis connect is one request to the backend: the same limit covers it. */
  evs_redis_options_t ro = {.connect_timeout_ms = cfg->limits.request_timeout_ms,
                            .request_timeout_ms = cfg->limits.request_timeout_ms,
                            .backoff_initial_ms = cfg->backoff.initial_ms,
                            .backoff_max_ms = cfg->backoff.max_ms};
  if ((rc = evs_redis_registry_new(loop, &ro, &e->redis)) != 0)
    return e->redis = NULL, rc;
  const char *ca_file = opts ? opts->system_ca_file : NULL;
  if ((rc = evs_tls_cache_new(loop, ca_file, &e->tls)) != 0)
    return e->tls = NULL, rc;
  evs_prom_hub_options_t po = {.backoff_initial_ms = cfg->backoff.initial_ms,
                               .backoff_max_ms = cfg->backoff.max_ms,
                               .max_response_bytes = max_body,
                               .tls_cache = e->tls};
  if ((rc = evs_prom_hub_new(loop, &po, &e->prom_hub)) != 0)
    return e->prom_hub = NULL, rc;
  return 0;
}

int evs_scaler_services_new_ex(uv_loop_t *loop, const evs_config_t *cfg, evs_metrics_t *metrics,
                               const evs_scaler_services_options_t *opts,
                               evs_scaler_services_t **out) {
  if (out)
    *out = NULL;
  if (loop == NULL || cfg == NULL || out == NULL)
    return UV_EINVAL;
  evs_scaler_services_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return UV_ENOMEM;
  s->env.metrics = metrics;
  uv_timer_init(loop, &s->closer);
  s->closer.data = s;
  int rc = build(s, loop, cfg, opts);
  if (rc != 0) {
    /* Nothing has run yet: whatever was made closes and frees itself through the loop. */
    s->closing = 1;
    close_all(s);
    return rc;
  }
  *out = s;
  return 0;
}

int evs_scaler_services_new(uv_loop_t *loop, const evs_config_t *cfg, evs_metrics_t *metrics,
                            evs_scaler_services_t **out) {
  return evs_scaler_services_new_ex(loop, cfg, metrics, NULL, out);
}

const evs_scaler_env_t *evs_scaler_services_env(const evs_scaler_services_t *s) { return &s->env; }

void evs_scaler_services_close(evs_scaler_services_t *s, void (*cb)(void *arg), void *arg) {
  if (s == NULL || s->closing)
    return;
  s->closing = 1;
  s->close_cb = cb;
  s->close_arg = arg;
  close_all(s);
}
