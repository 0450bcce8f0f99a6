/* /healthz, /readyz, /metrics, loop lag and the foundation's metric families. See
 * include/evscale/health.h. */
#include "evscale/health.h"
#include "evscale/error.h"
#include "evscale/procstat.h"
#include "evscale/version.h"

#include <mbedtls/version.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EVS_VERSION
#define EVS_VERSION "unknown"
#endif

typedef struct {
  char *name;
  int ready;
} cond_t;

struct evs_health_s {
  uv_loop_t *loop;
  evs_metrics_t *reg;
  evs_health_options_t opts;
  uv_timer_t lag_timer;
  uint64_t lag_last_hr;
  double last_lag;
  evs_metric_t *lag_hist;
  evs_metric_t *lag_last;
  evs_metric_family_t *http_requests;
  evs_metric_t *reloads_ok, *reloads_fail, *reload_ts, *reload_successful;
  cond_t *conds;
  size_t n_conds;
  void (*close_cb)(void *);
  void *close_data;
};

void evs_health_options_init(evs_health_options_t *o) {
  o->lag_interval_ms = 500;
  o->lag_unhealthy_seconds = 0;
  o->version = EVS_VERSION;
  o->revision = evs_git_revision;
}

/* ---- loop lag ---------------------------------------------------------------------------- */

static void on_lag_tick(uv_timer_t *t) {
  evs_health_t *h = t->data;
  uint64_t now = uv_hrtime();
  /* Due one interval after the previous tick; anything later is time the loop spent elsewhere
   * (a blocked callback, a long poll phase). Early ticks (timer rounding) count as no lag. */
  uint64_t due = h->lag_last_hr + h->opts.lag_interval_ms * 1000000u;
  double lag = now > due ? (double)(now - due) / 1e9 : 0.0;
  h->lag_last_hr = now;
  h->last_lag = lag;
  evs_metric_observe(h->lag_hist, lag);
  evs_metric_set(h->lag_last, lag);
}

/* ---- metric families --------------------------------------------------------------------- */

static int reg_simple(evs_metrics_t *reg, const char *name, const char *help,
                      evs_metric_type_t type, evs_metric_family_t **out) {
  evs_metric_desc_t d = {name, help, type, NULL, 0, NULL, 0};
  return evs_metrics_register(reg, &d, out);
}

static int register_build_info(evs_health_t *h) {
  static const char *labels[] = {"version", "revision", "libuv", "mbedtls"};
  evs_metric_desc_t d = {"evscale_build_info",
                         "A metric with a constant '1' value labeled by the build of evscale.",
                         EVS_METRIC_GAUGE,
                         labels,
                         4,
                         NULL,
                         0};
  evs_metric_family_t *f;
  int rc = evs_metrics_register(h->reg, &d, &f);
  if (rc != 0)
    return rc;
  const char *values[] = {h->opts.version, h->opts.revision, uv_version_string(),
                          MBEDTLS_VERSION_STRING};
  evs_metric_t *m = evs_metric_family_child(f, values);
  if (m == NULL)
    return UV_ENOMEM;
  evs_metric_set(m, 1);
  return 0;
}

static int register_lag(evs_health_t *h) {
  static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                   0.5,   1,     2.5,  5,     10,   30};
  evs_metric_desc_t d = {"evscale_event_loop_lag_seconds",
                         "How late the event loop ran a periodic timer, in seconds.",
                         EVS_METRIC_HISTOGRAM,
                         NULL,
                         0,
                         buckets,
                         sizeof buckets / sizeof *buckets};
  evs_metric_family_t *f, *g;
  int rc = evs_metrics_register(h->reg, &d, &f);
  if (rc == 0)
    rc = reg_simple(h->reg, "evscale_event_loop_lag_last_seconds",
                    "The last measured event loop lag, in seconds.", EVS_METRIC_GAUGE, &g);
  if (rc != 0)
    return rc;
  h->lag_hist = evs_metric_family_child(f, NULL);
  h->lag_last = evs_metric_family_child(g, NULL);
  return 0;
}

static int register_config(evs_health_t *h) {
  static const char *labels[] = {"result"};
  evs_metric_desc_t d = {"evscale_config_reloads_total",
                         "Configuration loads and reloads, by result.",
                         EVS_METRIC_COUNTER,
                         labels,
                         1,
                         NULL,
                         0};
  evs_metric_family_t *f, *ts, *ok;
  int rc = evs_metrics_register(h->reg, &d, &f);
  if (rc == 0)
    rc = reg_simple(h->reg, "evscale_config_last_reload_success_timestamp_seconds",
                    "Time of the last successful configuration load, seconds since the epoch.",
                    EVS_METRIC_GAUGE, &ts);
  if (rc == 0)
    rc = reg_simple(h->reg, "evscale_config_last_reload_successful",
                    "Whether the last configuration load or reload succeeded (1) or not (0).",
                    EVS_METRIC_GAUGE, &ok);
  if (rc != 0)
    return rc;
  /* Both results exist from the start so rate() sees the first failure as an increase. */
  const char *s[] = {"success"}, *fl[] = {"failure"};
  h->reloads_ok = evs_metric_family_child(f, s);
  h->reloads_fail = evs_metric_family_child(f, fl);
  h->reload_ts = evs_metric_family_child(ts, NULL);
  h->reload_successful = evs_metric_family_child(ok, NULL);
  return h->reloads_ok && h->reloads_fail ? 0 : UV_ENOMEM;
}

static int register_http(evs_health_t *h) {
  static const char *labels[] = {"path", "code"};
  evs_metric_desc_t d = {"evscale_http_requests_total",
                         "HTTP requests answered by evscale's server, by route and status code.",
                         EVS_METRIC_COUNTER,
                         labels,
                         2,
                         NULL,
                         0};
  return evs_metrics_register(h->reg, &d, &h->http_requests);
}

int evs_health_new(uv_loop_t *loop, evs_metrics_t *reg, const evs_health_options_t *opts,
                   evs_health_t **out) {
  if (loop == NULL || reg == NULL || out == NULL)
    return UV_EINVAL;
  evs_health_t *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return UV_ENOMEM;
  h->loop = loop;
  h->reg = reg;
  evs_health_options_init(&h->opts);
  if (opts)
    h->opts = *opts;
  if (h->opts.lag_interval_ms == 0 || !h->opts.version || !h->opts.revision) {
    free(h);
    return UV_EINVAL;
  }
  int rc = register_build_info(h);
  if (rc == 0)
    rc = evs_procstat_register(reg);
  if (rc == 0)
    rc = register_lag(h);
  if (rc == 0)
    rc = register_config(h);
  if (rc == 0)
    rc = register_http(h);
  if (rc != 0) {
    free(h); /* the families stay in reg, which owns them; a failed start ends the process */
    return rc;
  }
  uv_timer_init(loop, &h->lag_timer);
  h->lag_timer.data = h;
  h->lag_last_hr = uv_hrtime();
  uv_timer_start(&h->lag_timer, on_lag_tick, h->opts.lag_interval_ms, h->opts.lag_interval_ms);
  /* The measurement must not keep a loop alive that has nothing else to do. */
  uv_unref((uv_handle_t *)&h->lag_timer);
  *out = h;
  return 0;
}

/* ---- endpoints --------------------------------------------------------------------------- */

static void h_healthz(evs_http_request_t *r, void *data) {
  evs_health_t *h = data;
  if (h->opts.lag_unhealthy_seconds > 0 && h->last_lag > h->opts.lag_unhealthy_seconds) {
    char msg[96];
    int n = snprintf(msg, sizeof msg, "event loop lag %.3fs over %.3fs\n", h->last_lag,
                     h->opts.lag_unhealthy_seconds);
    evs_http_respond(r, 503, NULL, msg, (size_t)n);
    return;
  }
  evs_http_respond(r, 200, NULL, "ok\n", 3);
}

static void h_readyz(evs_http_request_t *r, void *data) {
  evs_health_t *h = data;
  if (evs_health_is_ready(h)) {
    evs_http_respond(r, 200, NULL, "ok\n", 3);
    return;
  }
  size_t cap = 16;
  for (size_t i = 0; i < h->n_conds; i++)
    cap += strlen(h->conds[i].name) + 2;
  char *msg = malloc(cap);
  if (msg == NULL) {
    evs_http_respond(r, 503, NULL, "not ready\n", 10);
    return;
  }
  size_t n = (size_t)snprintf(msg, cap, "not ready:");
  const char *sep = " ";
  for (size_t i = 0; i < h->n_conds; i++) {
    if (!h->conds[i].ready) {
      n += (size_t)snprintf(msg + n, cap - n, "%s%s", sep, h->conds[i].name);
      sep = ", ";
    }
  }
  n += (size_t)snprintf(msg + n, cap - n, "\n");
  evs_http_respond_owned(r, 503, NULL, msg, n);
}

/* One scrape in progress: the registry's stream and the slice pulled before the answer began. */
typedef struct {
  evs_metrics_stream_t *st;
  char *first;
  size_t first_len;
} scrape_t;

static int scrape_pull(void *data, char **chunk, size_t *len) {
  scrape_t *sc = data;
  if (sc->first) {
    *chunk = sc->first;
    *len = sc->first_len;
    sc->first = NULL;
    return 0;
  }
  return evs_metrics_stream_next(sc->st, EVS_HEALTH_SCRAPE_SLICE, chunk, len);
}

static void scrape_done(void *data, int status) {
  (void)status;
  scrape_t *sc = data;
  evs_metrics_stream_free(sc->st);
  free(sc->first);
  free(sc);
}

/* A registry that fits in one slice is answered whole (Content-Length, as before); a larger one
 * is streamed a slice per loop turn so a scrape of hundreds of thousands of series never holds
 * the loop, nor the whole body in memory. */
static void h_metrics(evs_http_request_t *r, void *data) {
  evs_health_t *h = data;
  static const char ctype[] = "text/plain; version=0.0.4; charset=utf-8";
  scrape_t *sc = calloc(1, sizeof(*sc));
  if (sc == NULL || evs_metrics_stream_new(h->reg, &sc->st) != 0 ||
      evs_metrics_stream_next(sc->st, EVS_HEALTH_SCRAPE_SLICE, &sc->first, &sc->first_len) != 0) {
    if (sc)
      scrape_done(sc, 0);
    evs_http_respond(r, 500, NULL, "out of memory\n", 14);
    return;
  }
  if (evs_metrics_stream_done(sc->st)) {
    char *body = sc->first ? sc->first : strdup("");
    size_t len = sc->first_len;
    sc->first = NULL;
    scrape_done(sc, 0);
    evs_http_respond_owned(r, 200, ctype, body, len);
    return;
  }
  evs_http_respond_stream(r, 200, ctype, scrape_pull, scrape_done, sc);
}

static void observe_http(const char *route, int status, void *data) {
  evs_health_t *h = data;
  char code[16];
  snprintf(code, sizeof code, "%d", status);
  const char *values[] = {route ? route : "other", code};
  evs_metric_inc(evs_metric_family_child(h->http_requests, values));
}

int evs_health_attach(evs_health_t *h, evs_http_server_t *server) {
  int rc = evs_http_server_route(server, "/healthz", EVS_HTTP_GET, h_healthz, h);
  if (rc == 0)
    rc = evs_http_server_route(server, "/readyz", EVS_HTTP_GET, h_readyz, h);
  if (rc == 0)
    rc = evs_http_server_route(server, "/metrics", EVS_HTTP_GET, h_metrics, h);
  if (rc == 0)
    evs_http_server_set_observer(server, observe_http, h);
  return rc;
}

/* ---- readiness, reloads ------------------------------------------------------------------ */

int evs_health_set_ready(evs_health_t *h, const char *condition, int ready) {
  if (condition == NULL || *condition == '\0')
    return UV_EINVAL;
  for (size_t i = 0; i < h->n_conds; i++) {
    if (strcmp(h->conds[i].name, condition) == 0) {
      h->conds[i].ready = !!ready;
      return 0;
    }
  }
  cond_t *c = realloc(h->conds, (h->n_conds + 1) * sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  h->conds = c;
  char *name = strdup(condition);
  if (name == NULL)
    return UV_ENOMEM;
  c[h->n_conds++] = (cond_t){name, !!ready};
  return 0;
}

int evs_health_is_ready(const evs_health_t *h) {
  for (size_t i = 0; i < h->n_conds; i++)
    if (!h->conds[i].ready)
      return 0;
  return 1;
}

void evs_health_config_reload(evs_health_t *h, int success, double now_unix) {
  evs_metric_inc(success ? h->reloads_ok : h->reloads_fail);
  evs_metric_set(h->reload_successful, success ? 1 : 0);
  if (success)
    evs_metric_set(h->reload_ts, now_unix);
}

double evs_health_last_lag(const evs_health_t *h) { return h->last_lag; }

static void on_health_closed(uv_handle_t *handle) {
  evs_health_t *h = handle->data;
  void (*cb)(void *) = h->close_cb;
  void *data = h->close_data;
  for (size_t i = 0; i < h->n_conds; i++)
    free(h->conds[i].name);
  free(h->conds);
  free(h);
  if (cb)
    cb(data);
}

void evs_health_close(evs_health_t *h, void (*cb)(void *data), void *data) {
  h->close_cb = cb;
  h->close_data = data;
  uv_close((uv_handle_t *)&h->lag_timer, on_health_closed);
}
