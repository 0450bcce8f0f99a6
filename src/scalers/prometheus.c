/* The prometheus hub: groups of identical queries asked once per cadence and fanned out
 * (behaviour and sources in include/evscale/prometheus.h).
 *
 * Objects: the hub owns one HTTP client (keep-alive pools per server and TLS identity), the TLS
 * configs (one per distinct ca/cert/key/unsafe combination), the servers (backoff state per
 * scheme://host:port + TLS identity) and the groups. A group owns its timer, its in-flight
 * request, the headers it sends (secrets included: they never leave this file except on the
 * wire) and its subscribers. A group is freed from its timer's close callback once its request
 * has finished; the hub from the last group's and the HTTP client's close. */
#include "evscale/prometheus.h"
#include "evscale/backoff.h"
#include "evscale/error.h"
#include "evscale/http_client.h"
#include "evscale/list.h"
#include "evscale/log.h"
#include "evscale/reading.h"
#include "evscale/tls.h"

#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct {
  evs_list_t link;
  char *key;
  evs_tls_config_t *cfg;
} tlsent_t;

typedef struct {
  evs_list_t link;
  char *key;   /* scheme://host:port + TLS identity */
  char *label; /* scheme://host:port for logs */
  size_t refs;
  evs_backoff_t bo;
  int down, probing, err;
  uint64_t retry_at;
} server_t;

typedef struct group_s group_t;

struct evs_prom_sub_s {
  evs_list_t link;
  group_t *g;
  evs_prom_reading_cb cb;
  void *arg;
  int ignore_null, dead, want_last;
  double activation;
};

/* The last answer, decoded once; applied per subscriber. */
typedef struct {
  int have;
  int err; /* transport or status error: every subscriber gets it */
  char msg[240];
  int64_t time_ms;
  uint64_t latency_us;
  /* The body, decoded twice at most (ignoreNullValues true and false differ only there). */
  evs_prom_result_t res[2];
  int have_res[2];
  char *body;
  size_t body_len;
} last_t;

struct group_s {
  evs_list_t link;
  evs_prom_hub_t *hub;
  server_t *srv;
  char *key;
  char *url_head; /* ...?query=Q&time= */
  char *url_tail; /* &namespace=...&k=v */
  char *query;    /* for messages */
  evs_http_header_t *headers;
  size_t nheaders;
  evs_tls_config_t *tls; /* a reference; NULL for http, and for https until it is built */
  /* https: what the TLS configuration trusts and presents, as a key (part of the group's and the
   * server's identity) and, with a TLS cache, as the PEM texts to ask it for (wiped on free). */
  int https;
  char *tls_id;
  char *tls_ca, *tls_cert, *tls_key;
  int tls_insecure;
  evs_tls_cache_req_t *tls_req; /* a build the group waits for */
  int phased;                   /* the periodic timer runs at the group's own random phase */
  uint64_t timeout_ms, cadence_ms;
  uv_timer_t timer, soon;
  int closing, handles;
  evs_http_req_t *req;
  uint64_t req_start; /* uv_hrtime when req was sent */
  evs_list_t subs;
  size_t nsubs;
  int delivering;
  last_t last;
  int logged_err; /* the error logged for this group (0: healthy) */
  int probe;      /* this group's request probes its down server */
  /* A timeout is this query's failure, not necessarily the server's (one slow query must not
   * mark a server down for every other query): the group backs off on its own. */
  evs_backoff_t bo;
  uint64_t retry_at;
  char logged_msg[240];
};

struct evs_prom_hub_s {
  uv_loop_t *loop;
  evs_http_client_t *http;
  evs_prom_hub_options_t o;
  char *system_ca;
  evs_list_t groups, servers, tlss;
  evs_prom_hub_stats_t st;
  uint64_t rng;
  int closing, pending;
  void (*close_cb)(void *);
  void *close_arg;
};

/* New groups' first requests are spread over this much (or the cadence, if shorter). */
#define PROM_FIRST_SPREAD_MS 1000

static void wipe_free(char *s) {
  if (s != NULL) {
    volatile char *p = s;
    while (*p)
      *p++ = 0;
    free(s);
  }
}

static double rand_unit(evs_prom_hub_t *h) {
  h->rng ^= h->rng << 13, h->rng ^= h->rng >> 7, h->rng ^= h->rng << 17;
  return (double)(h->rng >> 11) / 9007199254740992.0;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- strings --- */

typedef struct {
  char *p;
  size_t len, cap;
  int nomem;
} sb_t;

static void sb_add(sb_t *b, const char *s, size_t n) {
  if (b->nomem)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = (b->len + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->nomem = 1;
      return;
    }
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}
static void sb_str(sb_t *b, const char *s) { sb_add(b, s, strlen(s)); }
/* Length-prefixed, so that no choice of values makes two different identities equal. */
static void sb_field(sb_t *b, const char *s) {
  char n[24];
  s = s != NULL ? s : "";
  snprintf(n, sizeof n, "%zu:", strlen(s));
  sb_str(b, n);
  sb_str(b, s);
}
static void sb_esc(sb_t *b, const char *s) {
  char *e = evs_prom_query_escape(s);
  if (e == NULL)
    b->nomem = 1;
  else
    sb_str(b, e);
  free(e);
}

/* --- TLS configs --- */

/* KEDA (NewPrometheusScaler): with an auth mode set and (`ca` or mode tls), the transport is
 * CreateHTTPRoundTripper's: NewTLSConfig(cert, key, ca, unsafeSsl=false), so unsafeSsl is
 * ignored there and a client certificate is presented whenever cert and key are both set.
 * Otherwise it is CreateHTTPClient(timeout, unsafeSsl): system roots, no `ca`, no client
 * certificate. */
typedef struct {
  const char *ca, *cert, *key;
  int insecure;
} tls_want_t;

static void tls_want(const evs_prom_config_t *c, tls_want_t *w) {
  int own = c->auth_modes != 0 && (c->ca != NULL || (c->auth_modes & EVS_PROM_AUTH_TLS));
  w->ca = own ? c->ca : NULL;
  w->cert = own && c->cert && c->key ? c->cert : NULL;
  w->key = w->cert ? c->key : NULL;
  w->insecure = own ? 0 : c->unsafe_ssl;
}

/* New string, NULL when out of memory. */
static char *tls_want_id(const tls_want_t *w) {
  sb_t k = {0};
  sb_field(&k, w->ca), sb_field(&k, w->cert), sb_field(&k, w->key);
  sb_str(&k, w->insecure ? "1" : "0");
  if (k.nomem)
    return free(k.p), NULL;
  return k.p;
}

static int tls_for(evs_prom_hub_t *h, const evs_prom_config_t *c, evs_tls_config_t **out) {
  tls_want_t w;
  tls_want(c, &w);
  const char *ca = w.ca, *cert = w.cert, *key = w.key;
  int insecure = w.insecure;
  sb_t k = {0};
  k.p = tls_want_id(&w);
  if (k.p == NULL)
    return UV_ENOMEM;
  evs_list_foreach(it, &h->tlss) {
    tlsent_t *t = evs_container_of(it, tlsent_t, link);
    if (strcmp(t->key, k.p) == 0) {
      free(k.p);
      *out = t->cfg;
      return 0;
    }
  }
  sb_t pem = {0};
  sb_str(&pem, "");
  if (h->system_ca)
    sb_str(&pem, h->system_ca), sb_str(&pem, "\n");
  if (ca)
    sb_str(&pem, ca);
  tlsent_t *t = calloc(1, sizeof *t);
  if (pem.nomem || t == NULL)
    return free(pem.p), free(k.p), free(t), UV_ENOMEM;
  /* PEM in memory, parsed on the loop: no file I/O, and it happens once per identity. */
  evs_tls_options_t to = {.ca_pem = pem.len ? pem.p : NULL,
                          .ca_pem_len = pem.len ? pem.len + 1 : 0,
                          .cert_pem = cert,
                          .cert_pem_len = cert ? strlen(cert) + 1 : 0,
                          .key_pem = key,
                          .key_pem_len = key ? strlen(key) + 1 : 0,
                          .insecure = insecure};
  const char *why = NULL;
  int rc = evs_tls_config_new(&to, &t->cfg, &why);
  free(pem.p);
  if (rc != 0) {
    free(k.p), free(t);
    EVS_LOG_WARN("prometheus: unusable TLS settings (ca/cert/key)", EVS_KV_ERR("error", rc),
                 EVS_KV_STR("reason", why ? why : ""));
    return rc;
  }
  t->key = k.p;
  evs_list_push_back(&h->tlss, &t->link);
  *out = t->cfg;
  return 0;
}

/* --- servers --- */

static server_t *server_get(evs_prom_hub_t *h, const evs_http_url_t *u, const char *tls_id) {
  char label[300];
  snprintf(label, sizeof label, "%s://%s%s%s:%d", u->tls ? "https" : "http",
           strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "", u->port);
  sb_t k = {0};
  sb_field(&k, label), sb_field(&k, tls_id ? tls_id : "");
  if (k.nomem)
    return NULL;
  evs_list_foreach(it, &h->servers) {
    server_t *s = evs_container_of(it, server_t, link);
    if (strcmp(s->key, k.p) == 0) {
      free(k.p);
      s->refs++;
      return s;
    }
  }
  server_t *s = calloc(1, sizeof *s);
  if (s == NULL || (s->label = strdup(label)) == NULL) {
    free(s), free(k.p);
    return NULL;
  }
  s->key = k.p;
  s->refs = 1;
  evs_backoff_init(&s->bo, h->o.backoff_initial_ms, h->o.backoff_max_ms, EVS_BACKOFF_FULL);
  evs_list_push_back(&h->servers, &s->link);
  h->st.servers++;
  return s;
}

static void server_put(evs_prom_hub_t *h, server_t *s) {
  if (--s->refs > 0)
    return;
  evs_list_remove(&s->link);
  h->st.servers--;
  free(s->key), free(s->label), free(s);
}

static void server_failed(evs_prom_hub_t *h, server_t *s, int err) {
  s->probing = 0;
  s->retry_at = uv_now(h->loop) + evs_backoff_next(&s->bo, rand_unit(h));
  if (!s->down || s->err != err)
    EVS_LOG_WARN("prometheus server unreachable", EVS_KV_STR("server", s->label),
                 EVS_KV_ERR("error", err),
                 EVS_KV_UINT("retry_in_ms", s->retry_at - uv_now(h->loop)));
  s->down = 1, s->err = err;
}

static void server_ok(server_t *s) {
  if (s->down)
    EVS_LOG_INFO("prometheus server reachable again", EVS_KV_STR("server", s->label));
  s->down = s->probing = 0;
  evs_backoff_reset(&s->bo);
}

/* --- delivery --- */

static void last_clear(last_t *l) {
  free(l->body);
  memset(l, 0, sizeof *l);
}

static void deliver_one(group_t *g, evs_prom_sub_t *s) {
  last_t *l = &g->last;
  evs_prom_reading_t r = {
      .time_ms = l->time_ms, .latency_ms = l->latency_us / 1000, .latency_us = l->latency_us};
  evs_conv_t conv;
  if (l->err != 0) {
    r.error = l->err, r.error_msg = l->msg;
  } else {
    int i = s->ignore_null ? 1 : 0;
    if (!l->have_res[i]) {
      evs_prom_decode(l->body, l->body_len, s->ignore_null, &l->res[i]);
      l->have_res[i] = 1;
    }
    const evs_prom_result_t *res = &l->res[i];
    r.empty_upstream = res->empty_upstream;
    if (res->error != 0) {
      r.error = res->error, r.error_msg = res->msg;
    } else if (evs_reading_prometheus(res->value, s->activation, s->ignore_null, &conv) == 0 &&
               conv.error == 0) {
      r.value = conv.value, r.active = conv.active;
    } else {
      r.error = conv.error ? conv.error : EVS_EMETRIC;
      r.error_msg = conv.error_msg ? conv.error_msg : "prometheus query returns NaN or Inf";
    }
  }
  g->hub->st.deliveries++;
  s->cb(s, &r, s->arg);
}

static void group_close(group_t *g);

static void sweep(group_t *g) {
  evs_list_foreach_safe(it, &g->subs) {
    evs_prom_sub_t *s = evs_container_of(it, evs_prom_sub_t, link);
    if (s->dead) {
      evs_list_remove(&s->link);
      free(s);
    }
  }
  if (evs_list_empty(&g->subs))
    group_close(g);
}

/* Runs callbacks; a callback may unsubscribe anyone (marked dead, freed after the pass). */
static void deliver(group_t *g, int only_wanting) {
  g->delivering++;
  evs_list_foreach(it, &g->subs) {
    evs_prom_sub_t *s = evs_container_of(it, evs_prom_sub_t, link);
    if (s->dead || g->hub->closing || (only_wanting && !s->want_last))
      continue;
    s->want_last = 0;
    deliver_one(g, s);
  }
  if (--g->delivering == 0)
    sweep(g);
}

/* One log line per change of a group's error (healthy → failing → other error → healthy). */
static void group_log(group_t *g) {
  int err = g->last.err;
  const char *msg = g->last.msg;
  if (err == 0 && g->last.have_res[1] && g->last.res[1].error != 0)
    err = g->last.res[1].error, msg = g->last.res[1].msg;
  if (err == g->logged_err && (err == 0 || strcmp(msg, g->logged_msg) == 0))
    return;
  if (err == 0)
    EVS_LOG_INFO("prometheus query answers again", EVS_KV_STR("server", g->srv->label),
                 EVS_KV_STR("query", g->query));
  else if (!(g->srv->down && err == g->srv->err))
    EVS_LOG_WARN("prometheus query failed", EVS_KV_STR("server", g->srv->label),
                 EVS_KV_STR("query", g->query), EVS_KV_ERR("error", err),
                 EVS_KV_STR("detail", msg));
  g->logged_err = err;
  snprintf(g->logged_msg, sizeof g->logged_msg, "%s", err ? msg : "");
}

static void set_error(group_t *g, int err, const char *fmt, const char *arg) {
  last_clear(&g->last);
  g->last.have = 1;
  g->last.err = err;
  g->last.time_ms = wall_ms();
  snprintf(g->last.msg, sizeof g->last.msg, fmt, arg, evs_strerror(err));
}

/* --- requests --- */

static void on_done(evs_http_req_t *req, int err, const evs_http_response_t *resp, void *arg) {
  (void)req;
  group_t *g = arg;
  evs_prom_hub_t *h = g->hub;
  g->req = NULL;
  if (g->probe) {
    g->probe = 0;
    g->srv->probing = 0; /* whatever the outcome, another group may probe next */
  }
  if (g->closing || err == EVS_ECANCELED) {
    if (g->closing && g->handles == 0)
      group_close(g); /* finish the close the request was holding up */
    return;
  }
  if (err != 0) {
    h->st.failures++;
    set_error(g, err, "prometheus query to %s failed: %s", g->srv->label);
    if (err == EVS_ETIMEDOUT)
      g->retry_at = uv_now(h->loop) + evs_backoff_next(&g->bo, rand_unit(h));
    else if (evs_http_error_retryable(err))
      server_failed(h, g->srv, err);
    else
      server_ok(g->srv); /* TLS, protocol, size: the server is there, the answer is not usable */
  } else {
    h->st.responses++;
    server_ok(g->srv);
    evs_backoff_reset(&g->bo);
    g->retry_at = 0;
    if (resp->status < 200 || resp->status > 299) {
      h->st.failures++;
      char st[16];
      snprintf(st, sizeof st, "%d", resp->status);
      /* KEDA's wording, then our code for it. */
      set_error(g, EVS_ESTATUS, "prometheus query api returned error. status: %s (%s)", st);
    } else {
      last_clear(&g->last);
      g->last.have = 1;
      g->last.time_ms = wall_ms();
      g->last.body = malloc(resp->body_len + 1);
      if (g->last.body == NULL) {
        set_error(g, UV_ENOMEM, "prometheus %s: %s", g->srv->label);
      } else {
        if (resp->body_len)
          memcpy(g->last.body, resp->body, resp->body_len);
        g->last.body[resp->body_len] = '\0';
        g->last.body_len = resp->body_len;
        /* Decoded once here for the log and the failure count; subscribers reuse it. */
        evs_prom_decode(g->last.body, g->last.body_len, 1, &g->last.res[1]);
        g->last.have_res[1] = 1;
        if (g->last.res[1].error != 0)
          h->st.failures++;
      }
    }
  }
  g->last.latency_us = (uv_hrtime() - g->req_start) / 1000;
  group_log(g);
  deliver(g, 0);
}

static void fire(uv_timer_t *t);

static void on_tls(int err, const char *why, evs_tls_config_t *cfg, void *arg) {
  group_t *g = arg;
  g->tls_req = NULL;
  if (err != 0) {
    set_error(g, err, "prometheus TLS settings (ca/cert/key) for %s unusable: %s", g->srv->label);
    if (why != NULL)
      snprintf(g->last.msg, sizeof g->last.msg,
               "prometheus TLS settings (ca/cert/key) for %s unusable: %s", g->srv->label, why);
    group_log(g);
    deliver(g, 0);
    return;
  }
  g->tls = evs_tls_config_ref(cfg);
  fire(&g->timer); /* the tick that asked for it */
}

/* Asks the TLS cache for the group's configuration; the tick goes on in on_tls. */
static void tls_request(group_t *g) {
  evs_tls_options_t o = {.ca_pem = g->tls_ca,
                         .cert_pem = g->tls_cert,
                         .key_pem = g->tls_key,
                         .insecure = g->tls_insecure};
  int rc = evs_tls_cache_get(g->hub->o.tls_cache, &o, on_tls, g, &g->tls_req);
  if (rc != 0) {
    g->tls_req = NULL;
    set_error(g, rc, "prometheus TLS settings for %s: %s", g->srv->label);
    group_log(g);
    deliver(g, 0);
  }
}

static void fire(uv_timer_t *t) {
  group_t *g = evs_container_of(t, group_t, timer);
  evs_prom_hub_t *h = g->hub;
  if (g->closing)
    return;
  if (!g->phased) {
    /* The first tick (at creation, or asked by a poll) ran now; the period goes on from a random
     * point of the next cadence, so that groups created or polled together spread their requests
     * over the whole cadence instead of asking in the same millisecond every time (issue 16: 1,000
     * distinct queries). The next tick comes within one cadence: "at least every cadence" holds. */
    g->phased = 1;
    uint64_t c = g->cadence_ms;
    uint64_t first = c > 1 ? 1 + (uint64_t)(rand_unit(h) * (double)(c - 1)) : c;
    uv_timer_start(&g->timer, fire, first, c);
  }
  if (g->req != NULL || g->tls_req != NULL)
    return; /* the previous request (or TLS build) still runs: its answer is this tick's */
  if (g->https && g->tls == NULL) {
    tls_request(g);
    return;
  }
  server_t *s = g->srv;
  if (s->down && (uv_now(h->loop) < s->retry_at || s->probing)) {
    /* A dead server costs one probe per backoff delay, not one request per group. */
    h->st.skipped_down++;
    set_error(g, s->err, "prometheus query to %s failed: %s", s->label);
    group_log(g);
    deliver(g, 0);
    return;
  }
  if (g->retry_at != 0 && uv_now(h->loop) < g->retry_at) {
    h->st.skipped_down++;
    g->last.time_ms = wall_ms(), g->last.latency_us = 0;
    deliver(g, 0); /* the timeout again, without asking */
    return;
  }
  if (s->down)
    s->probing = g->probe = 1;
  char ts[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm); /* Go's time.RFC3339 of a UTC time */
  sb_t url = {0};
  sb_str(&url, g->url_head), sb_str(&url, ts), sb_str(&url, g->url_tail);
  if (url.nomem) {
    free(url.p);
    return;
  }
  evs_http_request_opts_t r = {.method = "GET",
                               .url = url.p,
                               .headers = g->headers,
                               .nheaders = g->nheaders,
                               .tls = g->tls,
                               .timeout_ms = g->timeout_ms,
                               .on_done = on_done,
                               .arg = g};
  g->req_start = uv_hrtime();
  int rc = evs_http_request(h->http, &r, &g->req);
  free(url.p);
  if (rc != 0) {
    g->req = NULL;
    if (g->probe)
      s->probing = g->probe = 0;
    set_error(g, rc, "prometheus query to %s could not start: %s", s->label);
    group_log(g);
    deliver(g, 0);
    return;
  }
  h->st.requests++;
}

static void on_soon(uv_timer_t *t) {
  group_t *g = evs_container_of(t, group_t, soon);
  if (g->last.have)
    deliver(g, 1);
}

/* --- groups --- */

static void group_free(group_t *g) {
  evs_prom_hub_t *h = g->hub;
  for (size_t i = 0; i < g->nheaders; i++) {
    /* Header values may be tokens: wipe before free. */
    volatile char *v = (volatile char *)g->headers[i].value;
    for (size_t j = 0; v[j]; j++)
      v[j] = 0;
    free((char *)g->headers[i].name), free((char *)g->headers[i].value);
  }
  free(g->headers);
  free(g->key), free(g->url_head), free(g->url_tail), free(g->query), free(g->tls_id);
  wipe_free(g->tls_ca), wipe_free(g->tls_cert), wipe_free(g->tls_key);
  last_clear(&g->last);
  if (g->srv)
    server_put(h, g->srv);
  if (g->tls)
    evs_tls_config_unref(g->tls);
  free(g);
  if (--h->pending == 0 && h->closing && h->http == NULL) {
    void (*cb)(void *) = h->close_cb;
    void *arg = h->close_arg;
    free(h->system_ca), free(h);
    if (cb)
      cb(arg);
  }
}

static void on_group_handle_closed(uv_handle_t *hd) {
  group_t *g = hd->data;
  if (--g->handles == 0 && g->req == NULL)
    group_free(g);
}

static void group_close(group_t *g) {
  if (!g->closing) {
    g->closing = 1;
    evs_list_remove(&g->link);
    g->hub->st.groups--;
    g->handles = 2;
    if (g->tls_req != NULL)
      evs_tls_cache_cancel(g->tls_req);
    g->tls_req = NULL;
    uv_close((uv_handle_t *)&g->timer, on_group_handle_closed);
    uv_close((uv_handle_t *)&g->soon, on_group_handle_closed);
    if (g->req != NULL)
      evs_http_cancel(g->req); /* on_done(ECANCELED) runs now and clears g->req */
  } else if (g->handles == 0 && g->req == NULL) {
    group_free(g);
  }
}

static int add_header(group_t *g, const char *name, const char *value, int replace) {
  /* Go's Header.Set: drop every earlier value of that name */
  for (size_t i = 0; replace && i < g->nheaders;) {
    if (strcasecmp(g->headers[i].name, name) == 0) {
      free((char *)g->headers[i].name), free((char *)g->headers[i].value);
      g->headers[i] = g->headers[--g->nheaders];
    } else {
      i++;
    }
  }
  evs_http_header_t *hs = realloc(g->headers, (g->nheaders + 1) * sizeof *hs);
  if (hs == NULL)
    return UV_ENOMEM;
  g->headers = hs;
  char *n = strdup(name), *v = strdup(value);
  if (n == NULL || v == NULL)
    return free(n), free(v), UV_ENOMEM;
  hs[g->nheaders].name = n, hs[g->nheaders].value = v;
  g->nheaders++;
  return 0;
}

/* ExecutePromQuery's headers: customHeaders (Add), then one auth header (Set), bearer before
 * basic before custom, as its switch does. */
static int group_headers(group_t *g, const evs_prom_config_t *c) {
  int rc = 0;
  for (size_t i = 0; i < c->n_custom_headers && rc == 0; i++)
    rc = add_header(g, c->custom_headers[i].name, c->custom_headers[i].value, 0);
  if (rc != 0)
    return rc;
  if (c->auth_modes & EVS_PROM_AUTH_BEARER) {
    sb_t b = {0};
    sb_str(&b, "Bearer "), sb_str(&b, c->bearer_token);
    rc = b.nomem ? UV_ENOMEM : add_header(g, "Authorization", b.p, 1);
    free(b.p);
  } else if (c->auth_modes & EVS_PROM_AUTH_BASIC) {
    sb_t up = {0};
    sb_str(&up, c->username), sb_str(&up, ":"), sb_str(&up, c->password ? c->password : "");
    size_t olen = 0, cap = (up.len + 2) / 3 * 4 + 8;
    char *b64 = malloc(cap + 6);
    if (up.nomem || b64 == NULL) {
      rc = UV_ENOMEM;
    } else {
      memcpy(b64, "Basic ", 6);
      mbedtls_base64_encode((unsigned char *)b64 + 6, cap, &olen, (unsigned char *)up.p, up.len);
      b64[6 + olen] = '\0';
      rc = add_header(g, "Authorization", b64, 1);
    }
    if (up.p)
      memset(up.p, 0, up.len);
    if (b64)
      memset(b64, 0, cap + 6);
    free(up.p), free(b64);
  } else if (c->auth_modes & EVS_PROM_AUTH_CUSTOM) {
    rc = add_header(g, c->custom_auth_header, c->custom_auth_value, 1);
  }
  return rc;
}

/* The request's identity: everything that changes what is sent, plus the cadence. */
static char *group_key(const group_t *g, const char *server) {
  sb_t k = {0};
  char n[48];
  snprintf(n, sizeof n, "%llu/%llu/", (unsigned long long)g->cadence_ms,
           (unsigned long long)g->timeout_ms);
  sb_str(&k, n);
  sb_field(&k, server), sb_field(&k, g->url_head), sb_field(&k, g->url_tail);
  sb_field(&k, g->tls_id ? g->tls_id : "");
  for (size_t i = 0; i < g->nheaders; i++)
    sb_field(&k, g->headers[i].name), sb_field(&k, g->headers[i].value);
  if (k.nomem)
    return free(k.p), NULL;
  return k.p;
}

static int group_build(evs_prom_hub_t *h, const evs_prom_config_t *c, group_t *g) {
  /* ExecutePromQuery: fmt.Sprintf("%s/api/v1/query?query=%s&time=%s", serverAddress, ...). */
  sb_t head = {0}, tail = {0};
  sb_str(&head, c->server_address), sb_str(&head, "/api/v1/query?query=");
  sb_esc(&head, c->query), sb_str(&head, "&time=");
  sb_str(&tail, "");
  if (c->namespace_)
    sb_str(&tail, "&namespace="), sb_esc(&tail, c->namespace_);
  for (size_t i = 0; i < c->n_query_params; i++) {
    sb_str(&tail, "&"), sb_esc(&tail, c->query_params[i].name), sb_str(&tail, "=");
    sb_esc(&tail, c->query_params[i].value);
  }
  g->url_head = head.p, g->url_tail = tail.p;
  g->query = strdup(c->query);
  if (head.nomem || tail.nomem || g->query == NULL)
    return UV_ENOMEM;
  evs_http_url_t u;
  if (evs_http_url_parse(g->url_head, &u) != 0)
    return UV_EINVAL;
  if (u.tls) {
    tls_want_t w;
    tls_want(c, &w);
    g->https = 1;
    g->tls_insecure = w.insecure;
    if ((g->tls_id = tls_want_id(&w)) == NULL)
      return UV_ENOMEM;
    if (h->o.tls_cache != NULL) { /* built on the thread pool before the first request */
      if ((w.ca && !(g->tls_ca = strdup(w.ca))) || (w.cert && !(g->tls_cert = strdup(w.cert))) ||
          (w.key && !(g->tls_key = strdup(w.key))))
        return UV_ENOMEM;
    } else {
      int rc = tls_for(h, c, &g->tls);
      if (rc != 0)
        return rc;
      evs_tls_config_ref(g->tls);
    }
  }
  int rc = group_headers(g, c);
  if (rc != 0)
    return rc;
  g->srv = server_get(h, &u, g->tls_id);
  if (g->srv == NULL)
    return UV_ENOMEM;
  g->key = group_key(g, c->server_address);
  return g->key ? 0 : UV_ENOMEM;
}

static void group_discard(group_t *g) {
  evs_prom_hub_t *h = g->hub;
  h->pending++; /* group_free counts it down */
  group_free(g);
}

int evs_prom_subscribe(evs_prom_hub_t *h, const evs_prom_config_t *c, uint64_t cadence_ms,
                       evs_prom_reading_cb cb, void *arg, evs_prom_sub_t **out) {
  if (h->closing)
    return EVS_ESTATE;
  if (cadence_ms == 0 || cb == NULL || c->server_address == NULL || c->query == NULL)
    return UV_EINVAL;
  group_t *g = calloc(1, sizeof *g);
  evs_prom_sub_t *s = calloc(1, sizeof *s);
  if (g == NULL || s == NULL)
    return free(g), free(s), UV_ENOMEM;
  g->hub = h;
  g->cadence_ms = cadence_ms;
  g->timeout_ms = c->timeout_ms ? c->timeout_ms : 3000;
  evs_backoff_init(&g->bo, h->o.backoff_initial_ms, h->o.backoff_max_ms, EVS_BACKOFF_FULL);
  int rc = group_build(h, c, g);
  if (rc != 0) {
    group_discard(g);
    free(s);
    return rc;
  }
  group_t *found = NULL;
  evs_list_foreach(it, &h->groups) {
    group_t *x = evs_container_of(it, group_t, link);
    if (strcmp(x->key, g->key) == 0)
      found = x;
  }
  s->cb = cb, s->arg = arg;
  s->ignore_null = c->ignore_null_values;
  s->activation = c->activation_threshold;
  if (found != NULL) {
    group_discard(g);
    g = found;
    s->want_last = 1;
    if (g->last.have)
      uv_timer_start(&g->soon, on_soon, 0, 0);
  } else {
    evs_list_init(&g->subs);
    uv_timer_init(h->loop, &g->timer);
    uv_timer_init(h->loop, &g->soon);
    g->timer.data = g->soon.data = g;
    evs_list_push_back(&h->groups, &g->link);
    h->st.groups++;
    h->pending++;
    /* A trigger's first reading comes soon, but groups created together (a restart, a new
     * ScaledObject with many triggers) spread their first requests over up to a second. */
    uint64_t spread = cadence_ms < PROM_FIRST_SPREAD_MS ? cadence_ms : PROM_FIRST_SPREAD_MS;
    uv_timer_start(&g->timer, fire, (uint64_t)(rand_unit(h) * (double)spread), 0);
  }
  s->g = g;
  evs_list_push_back(&g->subs, &s->link);
  g->nsubs++;
  h->st.subscribers++;
  if (out)
    *out = s;
  return 0;
}

int evs_prom_poll(evs_prom_sub_t *s) {
  group_t *g = s->g;
  if (s->dead || g->closing || g->hub->closing)
    return EVS_ESTATE;
  s->want_last = 1;
  if (g->last.have && wall_ms() - g->last.time_ms < (int64_t)g->cadence_ms) {
    uv_timer_start(&g->soon, on_soon, 0, 0); /* fresh enough: no request */
  } else if (g->req == NULL && g->tls_req == NULL) {
    /* Ask now; the period takes a new random phase from here, and every subscriber gets the
     * answer. */
    g->phased = 0;
    uv_timer_start(&g->timer, fire, 0, g->cadence_ms);
  }
  return 0;
}

void evs_prom_unsubscribe(evs_prom_sub_t *s) {
  if (s == NULL || s->dead)
    return;
  group_t *g = s->g;
  s->dead = 1;
  g->nsubs--;
  g->hub->st.subscribers--;
  if (g->delivering == 0)
    sweep(g);
}

int evs_prom_hub_new(uv_loop_t *loop, const evs_prom_hub_options_t *opts, evs_prom_hub_t **out) {
  evs_prom_hub_t *h = calloc(1, sizeof *h);
  if (h == NULL)
    return UV_ENOMEM;
  if (opts)
    h->o = *opts;
  h->loop = loop;
  h->rng = (uint64_t)uv_hrtime() | 1;
  evs_list_init(&h->groups), evs_list_init(&h->servers), evs_list_init(&h->tlss);
  if (opts && opts->system_ca_pem && (h->system_ca = strdup(opts->system_ca_pem)) == NULL)
    return free(h), UV_ENOMEM;
  h->o.system_ca_pem = NULL;
  evs_http_client_options_t ho = {
      .max_conns_per_host = h->o.max_conns_per_host ? h->o.max_conns_per_host : 4,
      .connect_timeout_ms = 10000,
      .request_timeout_ms = 10000,
      .idle_conn_timeout_ms = 90000,
      .max_response_bytes = h->o.max_response_bytes ? h->o.max_response_bytes : (size_t)16 << 20,
      .user_agent = "evscale/" EVS_VERSION};
  int rc = evs_http_client_new(loop, &ho, &h->http);
  if (rc != 0) {
    free(h->system_ca), free(h);
    return rc;
  }
  *out = h;
  return 0;
}

static void on_http_closed(void *arg) {
  evs_prom_hub_t *h = arg;
  h->http = NULL;
  if (h->pending == 0) {
    void (*cb)(void *) = h->close_cb;
    void *a = h->close_arg;
    free(h->system_ca), free(h);
    if (cb)
      cb(a);
  }
}

void evs_prom_hub_close(evs_prom_hub_t *h, void (*cb)(void *arg), void *arg) {
  if (h->closing)
    return;
  h->closing = 1;
  h->close_cb = cb, h->close_arg = arg;
  evs_list_foreach_safe(it, &h->groups) {
    group_t *g = evs_container_of(it, group_t, link);
    evs_list_foreach(si, &g->subs) {
      evs_prom_sub_t *s = evs_container_of(si, evs_prom_sub_t, link);
      s->dead = 1;
    }
    if (g->delivering == 0)
      sweep(g); /* frees them and closes the group; a delivering one does it when done */
  }
  evs_list_foreach_safe(it, &h->tlss) {
    tlsent_t *t = evs_container_of(it, tlsent_t, link);
    evs_list_remove(&t->link);
    evs_tls_config_unref(t->cfg);
    free(t->key), free(t);
  }
  evs_http_client_close(h->http, on_http_closed, h);
}

void evs_prom_hub_stats(const evs_prom_hub_t *h, evs_prom_hub_stats_t *out) { *out = h->st; }
