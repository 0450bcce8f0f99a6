/* The scaler registry (one entry per trigger type), the generic lifecycle every type shares
 * (states, the cadence, delivery) and the TLS configuration cache of the environment. */
#include "evscale/scaler.h"
#include "evscale/cron.h"
#include "evscale/error.h"
#include "evscale/list.h"
#include "evscale/prometheus.h"
#include "evscale/redis_scaler.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Each trigger type's file defines its evs_scaler_type_t; list it here. */
static const evs_scaler_type_t *const evs__scaler_types[] = {
    &evs_scaler_cron_type,
    &evs_scaler_redis_type,
    &evs_scaler_prometheus_type,
};

const char *evs_kvs_get(const evs_kvs_t *kvs, const char *key) {
  if (kvs == NULL)
    return NULL;
  for (size_t i = 0; i < kvs->n; i++)
    if (kvs->items[i].key && strcmp(kvs->items[i].key, key) == 0)
      return kvs->items[i].value;
  return NULL;
}

const evs_scaler_type_t *evs_scaler_type_find(const char *name) {
  for (size_t i = 0; i < sizeof evs__scaler_types / sizeof evs__scaler_types[0]; i++)
    if (evs__scaler_types[i] && strcmp(evs__scaler_types[i]->name, name) == 0)
      return evs__scaler_types[i];
  return NULL;
}

double evs_scaler__random(void) {
  static uint64_t x;
  if (x == 0)
    x = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1;
  x ^= x << 13; /* xorshift64: spreading timers needs no more */
  x ^= x >> 7;
  x ^= x << 17;
  return (double)(x >> 11) / 9007199254740992.0;
}

/* ---- cadence ---- */

/* The cadence is an entry of the loop's timer queue embedded in the scaler (issue 13: a
 * uv_timer_t of its own cost ~160 B a scaler and a uv_close round trip): close stops it at once
 * and nothing refers to it afterwards. */

evs_timerq_t *evs_scaler__timerq(evs_scaler_t *s) {
  if (s->tq == NULL && evs_timerq_new(s->loop, &s->tq) == 0)
    s->owns_tq = 1;
  return s->tq;
}

static void on_cadence(evs_timerq_entry_t *e) {
  evs_scaler_t *s = evs_container_of(e, evs_scaler_t, cadence);
  if (s->state != EVS_SCALER_STARTED)
    return;
  /* Re-armed before the poll, as a repeating uv_timer_t is: the period does not drift by the
   * poll's own time. A failed poll is the type's to report as a reading; the period goes on. */
  (void)evs_timerq_start(s->tq, &s->cadence, on_cadence, s->every_ms);
  (void)s->type->poll(s);
}

/* The first period after a change starts at a random phase (see scaler.h). */
static int cadence_arm(evs_scaler_t *s, int random_phase) {
  if (s->every_ms == 0 || s->type->cadence != NULL) {
    evs_timerq_stop(s->tq, &s->cadence);
    return 0;
  }
  evs_timerq_t *q = evs_scaler__timerq(s);
  if (q == NULL)
    return UV_ENOMEM;
  uint64_t first = s->every_ms;
  if (random_phase)
    first = 1 + (uint64_t)(evs_scaler__random() * (double)s->every_ms);
  return evs_timerq_start(q, &s->cadence, on_cadence, first);
}

int evs_scaler_set_cadence(evs_scaler_t *s, uint64_t every_ms) {
  if (s == NULL || s->state == EVS_SCALER_CLOSING)
    return EVS_ESTATE;
  s->every_ms = every_ms;
  if (s->state == EVS_SCALER_STARTED) {
    int rc = cadence_arm(s, 1);
    if (rc != 0)
      return rc;
    if (s->type->cadence)
      return s->type->cadence(s, every_ms);
  }
  return 0;
}

const char *evs_scaler_notice(const evs_scaler_t *s) {
  return s && s->state != EVS_SCALER_CLOSING ? s->notice : NULL;
}

uint64_t evs_scaler_cadence(const evs_scaler_t *s) { return s->every_ms; }

/* ---- lifecycle ---- */

int evs_scaler_create(uv_loop_t *loop, const evs_scaler_env_t *env, const evs_scaler_config_t *cfg,
                      evs_scaler_t **out, evs_diag_t *diag) {
  static const evs_scaler_env_t none;
  *out = NULL;
  const evs_scaler_type_t *t = cfg->type ? evs_scaler_type_find(cfg->type) : NULL;
  if (t == NULL) {
    evs_diag_add(diag, cfg->object, 0, 0, "type", "unsupported trigger type '%s'",
                 cfg->type ? cfg->type : "");
    return UV_EINVAL;
  }
  int rc = t->create(loop, env ? env : &none, cfg, out, diag);
  if (rc == 0) {
    (*out)->type = t;
    (*out)->loop = loop;
    (*out)->state = (uint8_t)EVS_SCALER_CREATED;
    (*out)->tq = env ? env->timerq : NULL;
    (*out)->owns_tq = 0;
    evs_timerq_entry_init(&(*out)->cadence);
  }
  return rc;
}

int evs_scaler_start(evs_scaler_t *s, evs_scaler_reading_cb cb, void *data) {
  if (s == NULL || s->state != EVS_SCALER_CREATED)
    return EVS_ESTATE;
  s->on_reading = cb;
  s->data = data;
  int rc = s->type->start(s);
  if (rc != 0)
    return rc;
  s->state = (uint8_t)EVS_SCALER_STARTED;
  if (s->every_ms != 0 && (rc = cadence_arm(s, 1)) != 0)
    return rc;
  if (s->type->cadence)
    return s->type->cadence(s, evs_scaler_cadence(s));
  return 0;
}

int evs_scaler_poll(evs_scaler_t *s) {
  if (s == NULL || s->state != EVS_SCALER_STARTED)
    return EVS_ESTATE;
  return s->type->poll(s);
}

void evs_scaler__emit_timed(evs_scaler_t *s, const evs_reading_t *r, uint64_t latency_us) {
  if (s->state == EVS_SCALER_CLOSING || s->on_reading == NULL)
    return;
  s->readings++;
  s->errors += r->error != 0;
  s->last_error = r->error;
  s->last_latency_us = latency_us > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_us;
  s->last_time_ms = r->time_ms;
  s->on_reading(s, r, s->data);
}

void evs_scaler__emit(evs_scaler_t *s, const evs_reading_t *r) { evs_scaler__emit_timed(s, r, 0); }

int evs_scaler_stats(const evs_scaler_t *s, evs_scaler_stats_t *out) {
  if (s == NULL || s->state == EVS_SCALER_CLOSING)
    return EVS_ESTATE;
  *out = (evs_scaler_stats_t){.readings = s->readings,
                              .errors = s->errors,
                              .last_latency_us = s->last_latency_us,
                              .last_error = s->last_error,
                              .last_time_ms = s->last_time_ms};
  return 0;
}

void evs_scaler_close(evs_scaler_t *s, evs_scaler_close_cb on_close, void *data) {
  if (s == NULL || s->state == EVS_SCALER_CLOSING)
    return; /* already closing */
  s->state = (uint8_t)EVS_SCALER_CLOSING;
  s->on_close = on_close; /* in on_reading's place: no reading from now on */
  s->data = data;
  evs_timerq_stop(s->tq, &s->cadence);
  s->type->close(s);
}

void evs_scaler__closed(evs_scaler_t *s, void (*free_fn)(evs_scaler_t *s)) {
  evs_scaler_close_cb cb = s->on_close;
  void *data = s->data;
  evs_timerq_t *own = s->owns_tq ? s->tq : NULL;
  free_fn(s);
  if (own != NULL)
    evs_timerq_close(own, cb, data); /* its entries were the scaler's, stopped by now */
  else if (cb)
    cb(data);
}

/* Only while closing: a handle that exists to be closed, so that the close completes from the
 * loop (libuv runs close callbacks later in the iteration, never inside uv_close). */
typedef struct {
  uv_check_t handle;
  evs_scaler_t *s;
  void (*free_fn)(evs_scaler_t *s);
} closer_t;

static void on_closer_closed(uv_handle_t *h) {
  closer_t *c = h->data;
  evs_scaler__closed(c->s, c->free_fn);
  free(c);
}

void evs_scaler__close_later(evs_scaler_t *s, void (*free_fn)(evs_scaler_t *s)) {
  closer_t *c = malloc(sizeof *c);
  if (c == NULL) {
    evs_scaler__closed(s, free_fn); /* out of memory: late is better than never */
    return;
  }
  c->s = s;
  c->free_fn = free_fn;
  uv_check_init(s->loop, &c->handle);
  c->handle.data = c;
  uv_close((uv_handle_t *)&c->handle, on_closer_closed);
}

/* ---- TLS configuration cache ---- */

typedef struct tls_entry_s tls_entry_t;

struct evs_tls_cache_req_s {
  evs_list_t link; /* in entry->waiters */
  tls_entry_t *e;
  evs_tls_cache_cb cb;
  void *arg;
};

struct tls_entry_s {
  evs_list_t link; /* in cache->entries */
  evs_tls_cache_t *cache;
  uv_work_t work;
  /* The key: what the config trusts and presents. Copies; the key text is wiped on free. */
  char *ca, *cert, *key;
  int insecure;
  int building;
  int err;
  const char *why;
  evs_tls_config_t *cfg;
  evs_list_t waiters;
};

struct evs_tls_cache_s {
  uv_loop_t *loop;
  char *system_ca;     /* NULL: none */
  int system_optional; /* the default bundle: none when it does not exist */
  evs_list_t entries;
  size_t n, building;
  uv_timer_t deliver; /* answers for entries already built, never inside get */
  evs_list_t ready;   /* requests answered by `deliver` */
  int closing;
  void (*close_cb)(void *);
  void *close_arg;
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int str_eq(const char *a, const char *b) {
  return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static void wipe_free(char *s) {
  if (s) {
    volatile char *p = s;
    while (*p)
      *p++ = 0;
    free(s);
  }
}

static void on_deliver(uv_timer_t *t);

int evs_tls_cache_new(uv_loop_t *loop, const char *system_ca_file, evs_tls_cache_t **out) {
  evs_tls_cache_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  c->loop = loop;
  /* Whether the default bundle exists is asked on the thread pool with the build: nothing of the
   * file system is touched on the loop. */
  if (system_ca_file == NULL) {
    system_ca_file = "/etc/ssl/certs/ca-certificates.crt";
    c->system_optional = 1;
  }
  if (system_ca_file && system_ca_file[0] && (c->system_ca = strdup(system_ca_file)) == NULL) {
    free(c);
    return UV_ENOMEM;
  }
  evs_list_init(&c->entries);
  evs_list_init(&c->ready);
  uv_timer_init(loop, &c->deliver);
  c->deliver.data = c;
  *out = c;
  return 0;
}

/* Thread pool: the only place that parses certificates and reads the system bundle. */
static void tls_build(uv_work_t *w) {
  tls_entry_t *e = w->data;
  evs_tls_options_t o = {
      .insecure = e->insecure, .ca_pem = e->ca, .cert_pem = e->cert, .key_pem = e->key};
  if (!e->insecure)
    o.ca_file = e->cache->system_ca;
  if (o.ca_file && e->cache->system_optional && access(o.ca_file, R_OK) != 0)
    o.ca_file = NULL;
  e->err = evs_tls_config_new(&o, &e->cfg, &e->why);
}

static void entry_free(tls_entry_t *e) {
  evs_tls_config_unref(e->cfg);
  wipe_free(e->ca);
  wipe_free(e->cert);
  wipe_free(e->key);
  free(e);
}

static void cache_maybe_free(evs_tls_cache_t *c);

static void answer(evs_tls_cache_req_t *q) {
  tls_entry_t *e = q->e;
  evs_list_remove(&q->link);
  evs_tls_cache_cb cb = q->cb;
  void *arg = q->arg;
  free(q);
  cb(e->err, e->err ? (e->why ? e->why : evs_strerror(e->err)) : NULL, e->cfg, arg);
}

static void tls_built(uv_work_t *w, int status) {
  tls_entry_t *e = w->data;
  evs_tls_cache_t *c = e->cache;
  e->building = 0;
  c->building--;
  if (status != 0 && e->err == 0)
    e->err = status;
  while (!evs_list_empty(&e->waiters)) /* a callback may cancel others: take one at a time */
    answer(evs_container_of(e->waiters.next, evs_tls_cache_req_t, link));
  if (e->err != 0) { /* a failure is not cached: the next get builds again */
    evs_list_remove(&e->link);
    c->n--;
    entry_free(e);
  }
  cache_maybe_free(c);
}

int evs_tls_cache_get(evs_tls_cache_t *c, const evs_tls_options_t *o, evs_tls_cache_cb cb,
                      void *arg, evs_tls_cache_req_t **req) {
  if (req)
    *req = NULL;
  if (c == NULL || c->closing)
    return EVS_ESTATE;
  tls_entry_t *e = NULL;
  evs_list_foreach(it, &c->entries) {
    tls_entry_t *x = evs_container_of(it, tls_entry_t, link);
    if (x->insecure == !!o->insecure && str_eq(x->ca, o->ca_pem) && str_eq(x->cert, o->cert_pem) &&
        str_eq(x->key, o->key_pem)) {
      e = x;
      break;
    }
  }
  evs_tls_cache_req_t *q = calloc(1, sizeof *q);
  if (q == NULL)
    return UV_ENOMEM;
  if (e == NULL) {
    e = calloc(1, sizeof *e);
    if (e == NULL || (o->ca_pem && !(e->ca = strdup(o->ca_pem))) ||
        (o->cert_pem && !(e->cert = dup_or_null(o->cert_pem))) ||
        (o->key_pem && !(e->key = dup_or_null(o->key_pem)))) {
      if (e)
        entry_free(e);
      free(q);
      return UV_ENOMEM;
    }
    e->cache = c;
    e->insecure = !!o->insecure;
    e->work.data = e;
    evs_list_init(&e->waiters);
    int rc = uv_queue_work(c->loop, &e->work, tls_build, tls_built);
    if (rc != 0) {
      entry_free(e);
      free(q);
      return rc;
    }
    e->building = 1;
    c->building++;
    evs_list_push_back(&c->entries, &e->link);
    c->n++;
  }
  q->e = e;
  q->cb = cb;
  q->arg = arg;
  if (e->building) {
    evs_list_push_back(&e->waiters, &q->link);
  } else {
    evs_list_push_back(&c->ready, &q->link);
    uv_timer_start(&c->deliver, on_deliver, 0, 0);
  }
  if (req)
    *req = q;
  return 0;
}

static void on_deliver(uv_timer_t *t) {
  evs_tls_cache_t *c = t->data;
  while (!evs_list_empty(&c->ready))
    answer(evs_container_of(c->ready.next, evs_tls_cache_req_t, link));
}

void evs_tls_cache_cancel(evs_tls_cache_req_t *q) {
  if (q == NULL)
    return;
  evs_list_remove(&q->link);
  free(q);
}

size_t evs_tls_cache_size(const evs_tls_cache_t *c) { return c->n; }

static void on_cache_timer_closed(uv_handle_t *h) {
  evs_tls_cache_t *c = h->data;
  c->deliver.data = NULL;
  cache_maybe_free(c);
}

static void cache_maybe_free(evs_tls_cache_t *c) {
  if (!c->closing || c->building > 0 || c->deliver.data != NULL)
    return;
  while (!evs_list_empty(&c->entries)) {
    tls_entry_t *e = evs_container_of(c->entries.next, tls_entry_t, link);
    evs_list_remove(&e->link);
    entry_free(e);
  }
  void (*cb)(void *) = c->close_cb;
  void *arg = c->close_arg;
  free(c->system_ca);
  free(c);
  if (cb)
    cb(arg);
}

void evs_tls_cache_close(evs_tls_cache_t *c, void (*cb)(void *arg), void *arg) {
  if (c == NULL || c->closing)
    return;
  c->closing = 1;
  c->close_cb = cb;
  c->close_arg = arg;
  while (!evs_list_empty(&c->ready))
    evs_tls_cache_cancel(evs_container_of(c->ready.next, evs_tls_cache_req_t, link));
  evs_list_foreach(it, &c->entries) {
    tls_entry_t *e = evs_container_of(it, tls_entry_t, link);
    while (!evs_list_empty(&e->waiters))
      evs_tls_cache_cancel(evs_container_of(e->waiters.next, evs_tls_cache_req_t, link));
  }
  uv_close((uv_handle_t *)&c->deliver, on_cache_timer_closed);
}
