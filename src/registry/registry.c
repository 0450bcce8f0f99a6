/* See include/evscale/registry.h. */
#include "evscale/registry.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evscale/error.h"
#include "evscale/fallbackhpa.h"
#include "evscale/list.h"
#include "evscale/log.h"
#include "evscale/node.h"
#include "evscale/so_status.h"
#include "evscale/step.h"
#include "evscale/timerq.h"

/* ---------------------------------------------------------------------------------------------
 * Records and targets */

typedef struct evs__target_s evs__target_t;
typedef struct evs__rec_s evs__rec_t;

/* Another writer changing a target more than this many times in EVS__EXT_WINDOW_MS is fought
 * over no longer: evscale backs off (issue: "more than 3 times in a minute"). */
#define EVS__EXT_MAX 3
#define EVS__EXT_KEEP (EVS__EXT_MAX + 1)
#define EVS__EXT_WINDOW_MS 60000
#define EVS__BACKOFF_FIRST_MS 30000
#define EVS__BACKOFF_MAX_MS 300000
#define EVS__AWAIT_MS 10000

/* An owned copy of a map (one allocation; wiped on free: it may hold secrets). */
typedef struct {
  evs_kvs_t kvs;
  size_t bytes;
} evs__map_t;

static int evs__map_copy(evs__map_t *m, const evs_kvs_t *src) {
  size_t bytes = src->n * sizeof(evs_kv_t);
  for (size_t i = 0; i < src->n; i++)
    bytes += strlen(src->items[i].key) + strlen(src->items[i].value) + 2;
  char *mem = malloc(bytes ? bytes : 1);
  if (mem == NULL)
    return UV_ENOMEM;
  evs_kv_t *items = (evs_kv_t *)mem;
  char *p = mem + src->n * sizeof(evs_kv_t);
  for (size_t i = 0; i < src->n; i++) {
    size_t kl = strlen(src->items[i].key) + 1, vl = strlen(src->items[i].value) + 1;
    memcpy(p, src->items[i].key, kl);
    items[i].key = p;
    p += kl;
    memcpy(p, src->items[i].value, vl);
    items[i].value = p;
    p += vl;
  }
  m->kvs = (evs_kvs_t){items, src->n};
  m->bytes = bytes;
  return 0;
}

static void evs__map_free(evs__map_t *m) {
  if (m->kvs.items) {
    explicit_bzero((void *)m->kvs.items, m->bytes);
    free((void *)m->kvs.items);
  }
  memset(m, 0, sizeof *m);
}

typedef struct {
  evs__rec_t *rec;
  size_t index;
  evs_triggerauth_req_t *auth_req; /* resolving its authenticationRef */
  evs__map_t auth;                 /* the resolved parameters, until the scaler is created */
  uint8_t auth_done;
  uint8_t reresolve;     /* failing with an authenticationRef: restart (read it again) */
  int64_t reresolved_ms; /* when it was last restarted for that */
  evs_scaler_t *scaler;  /* NULL when not running */
  evs_reading_t reading; /* the last one; time_ms 0 = none yet */
  char *error_msg;       /* owned copy of reading.error_msg */
} evs__trig_t;

struct evs__rec_s {
  evs__rec_t *next; /* hash chain */
  evs_list_t tlink; /* in target->recs */
  evs_registry_t *reg;
  char *key; /* "ns/name"; key, ns and name point into the record's own allocation */
  char *ns, *name, *uid;
  evs_registry_origin_t origin;
  evs_so_t *so;      /* owned; NULL = broken */
  char *check_error; /* owned; the broken object's message */
  char *refusal;     /* owned; why it does not drive its target (another drives it) */
  int64_t created_ms, last_active_ms;
  int32_t original_replicas;
  int was_paused; /* the status said it has been paused (see evs_registry_object_t) */
  evs_engine_state_t *est;
  evs_breaker_t br;
  evs__trig_t **trig; /* each allocated alone: a kept scaler's callback data never moves */
  size_t n_trig;
  evs__target_t *target;
  /* Its evaluation (an entry of reg->tq: 32 B where a uv_timer_t was 152, issue 13); after
   * removal, the tick that frees it from the loop. */
  evs_timerq_entry_t timer;
  int64_t timer_due_ms; /* wall-clock ms of the armed evaluation; 0 = none */
  uint8_t writing, dirty, removed, running, timer_closed;
  int32_t w_current, w_replicas; /* the write in flight */
  /* The step behind the write in flight (owned; NULL otherwise): allocated per write, as most
   * objects have none in flight and the step is ~350 B (issue 13's memory goal). */
  evs_step_t *inflight;
  int32_t dry_logged; /* the last count logged in dry-run; -1 none */
  uint8_t dry_listed; /* --dry-run listed it (target, replicas, decision) once */
  /* The target's container environment (KEDA's ResolvedEnv), fetched once per start when a
   * trigger asks for it (a *FromEnv parameter) or its TriggerAuthentication has spec.env. */
  evs_triggerauth_req_t *env_req;
  evs__map_t env;
  uint8_t env_state; /* 0 not fetched, 1 fetching, 2 done, 3 failed */
  char *env_error;
  uint64_t cadence_ms;
  evs_keda_metrics_object_t *km; /* its series; NULL without metrics or when broken */
  uint64_t decided_by_ns;        /* uv_hrtime of the reading behind the write in flight */
  uint64_t last_reading_ns;      /* uv_hrtime of the last reading */
  /* The hand-over: the fallback HPA's create/delete and the annotations in flight; whether the
   * object was last seen carrying the triggered annotation (an operator removing it resets). */
  evs_fallbackhpa_op_t *hpa_op, *ann_op;
  uint8_t seen_triggered, hpa_wanted;
  /* The restore-on-delete finalizer: the object's finalizers and resourceVersion as last seen,
   * whether it is being deleted, and the patch or restore write in flight. */
  char **finalizers;
  size_t n_finalizers;
  char *rv;
  /* What `kubectl get hpa` showed KEDA users (each trigger's value against its target, desired
   * against current replicas), in the Active condition's message: refreshed on a change of the
   * replicas or the activity, otherwise at most once a minute, so values that move with every
   * reading do not mean a status write per reading. */
  char *detail;
  int64_t detail_ms;
  int32_t detail_current, detail_desired;
  uint8_t detail_active;
  uint8_t deleting, restoring, restored;
  evs_kube_req_t *fin_req;
  unsigned pending; /* scaler closes, the write in flight: the record lives until 0 */
};

struct evs__target_s {
  evs__target_t *next;
  char *key; /* group/Kind/ns/name; key..api_version point into this allocation */
  char *group, *version, *kind, *resource, *ns, *name, *api_version;
  char *error; /* the kind cannot be scaled (no scale subresource on this server) */
  int32_t spec, status, ready;
  uint8_t known, fetching;
  /* Waiting for a /scale read slot (in reg->fetch_wait, holding a reference), and the reads
   * that failed in a row (the next waits 2 s doubled per failure, at most a minute). */
  uint8_t fetch_queued, fetch_fails;
  int64_t fetch_retry_ms;
  evs_list_t flink;
  /* cached: a watch cache reports it (Deployments, StatefulSets). Other kinds are read through
   * /scale: once at start, then again at the record's cadence and a second after each write
   * (their status follows the spec only once their controller has acted). */
  uint8_t cached;
  int64_t fetched_ms;
  char *foreign_hpa; /* an HPA evscale did not create drives it */
  /* Another writer (kubectl scale, a GitOps tool's self-heal) changing spec.replicas: the times
   * of its last changes, and evscale's back-off while it fights (doubling up to 5 minutes). */
  int64_t ext_ms[EVS__EXT_KEEP];
  int n_ext;
  int64_t backoff_until_ms, backoff_ms, backoff_since_ms;
  char *other_manager;
  int32_t last_written; /* the count evscale last wrote (-1 none): its own change seen back */
  /* A watch (or a /scale read sent before the write) may deliver the state from before
   * evscale's write after the write's answer: until the count written is seen back (or
   * EVS__AWAIT_MS passed), an observation of another count is older than the write and is
   * ignored, not taken for the target's count (that would write the same change again). */
  int32_t await_own;
  int64_t await_until_ms;
  uint8_t ext_pending; /* another writer's change not yet answered by a decision */
  int64_t last_written_ms;
  evs_list_t recs;
  evs__rec_t *driver;
  unsigned refs; /* records naming it + a fetch in flight */
};

typedef struct {
  void **slots;
  size_t mask, n;
} evs__table_t;

/* A foreign HPA as seen, whether or not a ScaledObject names its target yet (the caches list in
 * any order: an HPA listed before the ScaledObject must still refuse it). */
typedef struct evs__hpa_s {
  struct evs__hpa_s *next;
  char *key;  /* the target's key */
  char *name; /* the HPA's */
} evs__hpa_t;

struct evs_registry_s {
  evs_registry_options_t o;
  char *default_ns;
  evs__table_t recs, targets, hpas;
  int leading;
  int closing;
  evs_registry_stats_t st;
  size_t live; /* records not yet freed (removed ones included) */
  void (*close_cb)(void *);
  void *close_arg;
  uv_idle_t idle;   /* for the deferred close callback */
  evs_timerq_t *tq; /* the records' timers; closed once the last record is freed */
  /* /scale reads of targets no watch cache reports: at most EVS__FETCH_MAX in flight, the rest
   * wait here in order. 10,000 such targets read at once on taking the lead queued behind the
   * Lease's renewal at the API client and timed out (the leader lost its Lease, the reads
   * retried every 2 s, the status writes starved: perf/bench_process.py). */
  evs_list_t fetch_wait;
  unsigned fetch_inflight;
};

/* --- small helpers --- */

static int64_t evs__wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *evs__strdup(const char *s) { return s ? strdup(s) : NULL; }

static int evs__streq(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return a == b;
  return strcmp(a, b) == 0;
}

/* Chained hash tables keyed by a string: each entry begins with its `next` pointer and its
 * key is found by keyfn. The keyed SipHash of the document indexes, since keys come from the
 * API (names an attacker may choose). */
typedef const char *(*evs__keyfn)(void *e);
static void **evs__next_of(void *e) { return (void **)e; }

static int evs__table_grow(evs__table_t *t, evs__keyfn keyfn) {
  size_t cap = t->slots ? (t->mask + 1) * 2 : 64;
  void **ns = calloc(cap, sizeof *ns);
  if (ns == NULL)
    return UV_ENOMEM;
  if (t->slots) {
    for (size_t i = 0; i <= t->mask; i++) {
      void *e = t->slots[i];
      while (e) {
        void *nx = *evs__next_of(e);
        const char *k = keyfn(e);
        size_t h = (size_t)evs_node_hash(k, strlen(k)) & (cap - 1);
        *evs__next_of(e) = ns[h];
        ns[h] = e;
        e = nx;
      }
    }
    free(t->slots);
  }
  t->slots = ns;
  t->mask = cap - 1;
  return 0;
}

static void *evs__table_get(const evs__table_t *t, evs__keyfn keyfn, const char *key) {
  if (t->slots == NULL)
    return NULL;
  size_t h = (size_t)evs_node_hash(key, strlen(key)) & t->mask;
  for (void *e = t->slots[h]; e; e = *evs__next_of(e))
    if (strcmp(keyfn(e), key) == 0)
      return e;
  return NULL;
}

static int evs__table_put(evs__table_t *t, evs__keyfn keyfn, void *e) {
  if (t->slots == NULL || t->n + 1 > (t->mask + 1)) {
    int rc = evs__table_grow(t, keyfn);
    if (rc != 0)
      return rc;
  }
  const char *k = keyfn(e);
  size_t h = (size_t)evs_node_hash(k, strlen(k)) & t->mask;
  *evs__next_of(e) = t->slots[h];
  t->slots[h] = e;
  t->n++;
  return 0;
}

static void evs__table_del(evs__table_t *t, evs__keyfn keyfn, void *e) {
  if (t->slots == NULL)
    return;
  const char *k = keyfn(e);
  size_t h = (size_t)evs_node_hash(k, strlen(k)) & t->mask;
  for (void **pp = &t->slots[h]; *pp; pp = evs__next_of(*pp)) {
    if (*pp == e) {
      *pp = *evs__next_of(e);
      t->n--;
      return;
    }
  }
}

static const char *evs__rec_key(void *e) { return ((evs__rec_t *)e)->key; }
static const char *evs__target_key(void *e) { return ((evs__target_t *)e)->key; }
static const char *evs__hpa_key(void *e) { return ((evs__hpa_t *)e)->key; }

/* ---------------------------------------------------------------------------------------------
 * Targets */

/* "apps/v1" -> group "apps", version "v1"; "v1" -> "", "v1". */
static void evs__split_gv(const char *api_version, char *group, size_t gcap, char *version,
                          size_t vcap) {
  const char *slash = strchr(api_version, '/');
  if (slash) {
    snprintf(group, gcap, "%.*s", (int)(slash - api_version), api_version);
    snprintf(version, vcap, "%s", slash + 1);
  } else {
    snprintf(group, gcap, "%s", "");
    snprintf(version, vcap, "%s", api_version);
  }
}

static void evs__target_key_of(const char *api_version, const char *kind, const char *ns,
                               const char *name, char *buf, size_t cap) {
  char g[128], v[64];
  evs__split_gv(api_version, g, sizeof g, v, sizeof v);
  snprintf(buf, cap, "%s/%s/%s/%s", g, kind, ns, name);
}

/* 1: the observation of `spec` predates evscale's last write and must be ignored. */
static int evs__stale(evs__target_t *t, int32_t spec) {
  if (t->await_own < 0)
    return 0;
  if (spec == t->await_own || evs__wall_ms() >= t->await_until_ms) {
    t->await_own = -1;
    return 0;
  }
  return 1;
}

static void evs__target_free(evs__target_t *t) {
  /* key, group, version, kind, ns, name and api_version live in t's own allocation. */
  free(t->resource);
  free(t->error);
  free(t->foreign_hpa);
  free(t->other_manager);
  free(t);
}

static void evs__target_unref(evs_registry_t *reg, evs__target_t *t) {
  if (--t->refs > 0)
    return;
  evs__table_del(&reg->targets, evs__target_key, t);
  evs__target_free(t);
}

/* Resolves kind -> resource through discovery (any kind with a scale subresource), or the
 * built-in apps/v1 Deployment and StatefulSet when there is no discovery. */
static void evs__target_resolve(evs_registry_t *reg, evs__target_t *t) {
  const char *resource = NULL;
  if (reg->o.discovery) {
    /* Discovery lists the group's preferred version; the resource name is the same in every
     * version, and the ScaledObject's own apiVersion is the one written to. */
    const evs_kube_scalable_t *s = evs_kube_discovery_find(reg->o.discovery, t->group, t->kind);
    if (s)
      resource = s->resource;
  } else if (strcmp(t->group, "apps") == 0) {
    if (strcmp(t->kind, "Deployment") == 0)
      resource = "deployments";
    else if (strcmp(t->kind, "StatefulSet") == 0)
      resource = "statefulsets";
  }
  free(t->error);
  t->error = NULL;
  free(t->resource);
  t->resource = NULL;
  if (resource == NULL) {
    char buf[512];
    snprintf(buf, sizeof buf,
             "spec.scaleTargetRef: kind %s of %s has no scale subresource on this API server",
             t->kind, t->api_version);
    t->error = strdup(buf);
    return;
  }
  t->resource = strdup(resource);
}

static evs__target_t *evs__target_get(evs_registry_t *reg, const evs_so_t *so, const char *ns) {
  char key[1024];
  evs__target_key_of(so->target_api_version, so->target_kind, ns, so->target_name, key, sizeof key);
  evs__target_t *t = evs__table_get(&reg->targets, evs__target_key, key);
  if (t) {
    t->refs++;
    return t;
  }
  char g[128], v[64];
  evs__split_gv(so->target_api_version, g, sizeof g, v, sizeof v);
  /* The target's names in its own allocation: one malloc instead of seven (issue 13: a target
   * per ScaledObject, 50,000 of them). */
  const char *parts[7] = {key, g, v, so->target_kind, ns, so->target_name, so->target_api_version};
  size_t len[7], total = 0;
  for (int i = 0; i < 7; i++)
    total += (len[i] = strlen(parts[i]) + 1);
  t = calloc(1, sizeof *t + total);
  if (t == NULL)
    return NULL;
  char *at = (char *)(t + 1), *dst[7];
  for (int i = 0; i < 7; i++) {
    dst[i] = memcpy(at, parts[i], len[i]);
    at += len[i];
  }
  t->key = dst[0];
  t->group = dst[1];
  t->version = dst[2];
  t->kind = dst[3];
  t->ns = dst[4];
  t->name = dst[5];
  t->api_version = dst[6];
  t->spec = t->status = t->ready = -1;
  t->last_written = -1;
  t->await_own = -1;
  evs_list_init(&t->recs);
  t->refs = 1;
  if (evs__table_put(&reg->targets, evs__target_key, t) != 0) {
    evs__target_free(t);
    return NULL;
  }
  evs__target_resolve(reg, t);
  evs__hpa_t *h = evs__table_get(&reg->hpas, evs__hpa_key, key);
  if (h)
    t->foreign_hpa = strdup(h->name);
  return t;
}

/* ---------------------------------------------------------------------------------------------
 * Records: lifetime */

static void evs__strv_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static char **evs__strv_dup(const char *const *v, size_t n) {
  char **out = calloc(n ? n : 1, sizeof *out);
  for (size_t i = 0; out && i < n; i++) {
    if ((out[i] = strdup(v[i])) == NULL) {
      evs__strv_free(out, i);
      return NULL;
    }
  }
  return out;
}

static void evs__free_trigs(evs__rec_t *r) {
  for (size_t i = 0; i < r->n_trig; i++) {
    if (r->trig[i]) {
      free(r->trig[i]->error_msg);
      evs__map_free(&r->trig[i]->auth);
      free(r->trig[i]);
    }
  }
  free(r->trig);
  r->trig = NULL;
  r->n_trig = 0;
}

static void evs__rec_free(evs__rec_t *r) {
  evs_registry_t *reg = r->reg;
  evs__free_trigs(r);
  evs__map_free(&r->env);
  free(r->env_error);
  evs__strv_free(r->finalizers, r->n_finalizers);
  free(r->rv);
  free(r->detail);
  free(r->inflight);
  evs_keda_metrics_object_free(r->km);
  evs_engine_state_free(r->est);
  evs_so_free(r->so);
  free(r->check_error);
  free(r->refusal);
  free(r->uid); /* key, ns and name live in r's allocation */
  free(r);
  reg->live--;
  if (reg->closing && reg->live == 0 && reg->close_cb)
    uv_idle_start(&reg->idle, NULL);
}

static void evs__rec_maybe_free(evs__rec_t *r) {
  if (r->removed && r->pending == 0 && r->timer_closed)
    evs__rec_free(r);
}

/* A removed record is freed from the loop, never inside the call that removed it (callers may
 * still read it): its timer entry ticks once more. */
static void evs__removed_tick(evs_timerq_entry_t *e) {
  evs__rec_t *r = evs_container_of(e, evs__rec_t, timer);
  r->timer_closed = 1;
  evs__rec_maybe_free(r);
}

static void evs__scaler_closed(void *data) {
  evs__rec_t *r = data;
  r->pending--;
  evs__rec_maybe_free(r);
}

static void evs__stop_trigger(evs__rec_t *r, evs__trig_t *tr) {
  if (tr->auth_req) {
    evs_triggerauth_cancel(tr->auth_req);
    tr->auth_req = NULL;
  }
  /* Resolved again at the next start: a rotated Secret is read then. */
  evs__map_free(&tr->auth);
  tr->auth_done = 0;
  if (tr->scaler == NULL)
    return;
  evs_scaler_t *s = tr->scaler;
  tr->scaler = NULL;
  r->pending++;
  evs_scaler_close(s, evs__scaler_closed, r);
}

static void evs__stop_scalers(evs__rec_t *r) {
  if (r->env_req) {
    evs_triggerauth_cancel(r->env_req);
    r->env_req = NULL;
  }
  evs__map_free(&r->env);
  free(r->env_error);
  r->env_error = NULL;
  r->env_state = 0;
  for (size_t i = 0; i < r->n_trig; i++)
    evs__stop_trigger(r, r->trig[i]);
  r->running = 0;
  r->cadence_ms = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Deciding and writing */

static void evs__evaluate(evs__rec_t *r);
static void evs__finalizer_sync(evs__rec_t *r);

/* A Kubernetes Event on the object (leader only; API objects only: they have a uid). */
static void evs__event(evs__rec_t *r, evs_event_type_t type, const char *reason, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
static void evs__event(evs__rec_t *r, evs_event_type_t type, const char *reason, const char *fmt,
                       ...) {
  evs_registry_t *reg = r->reg;
  if (reg->o.events == NULL || !reg->leading || r->uid == NULL || r->origin != EVS_REGISTRY_API ||
      reg->o.dry_run)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  evs_event_t e = {
      .ns = r->ns, .name = r->name, .uid = r->uid, .type = type, .reason = reason, .message = msg};
  int rc = evs_events_emit(reg->o.events, &e);
  if (rc < 0)
    EVS_LOG_DEBUG("event not recorded", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_STR("reason", reason), EVS_KV_ERR("err", rc));
}

static void evs__remove(evs_registry_t *reg, evs__rec_t *r);
static void evs__status(evs__rec_t *r, const evs_decision_t *d);

static void evs__start_trigger(evs__rec_t *r, size_t i);

static void evs__on_timer(evs_timerq_entry_t *e) {
  evs__rec_t *r = evs_container_of(e, evs__rec_t, timer);
  /* Triggers failing with an authenticationRef restart here, outside their own callback: the
   * Secret may have been rotated (KEDA reads it again when it rebuilds the scaler). */
  for (size_t i = 0; i < r->n_trig; i++) {
    evs__trig_t *tr = r->trig[i];
    if (tr->reresolve && r->running) {
      tr->reresolve = 0;
      EVS_LOG_INFO("trigger failing: authentication read again", EVS_KV_STR("scaledobject", r->key),
                   EVS_KV_UINT("trigger", i));
      evs__stop_trigger(r, tr);
      evs__start_trigger(r, i);
    }
  }
  /* KEDA's internal_scale_loop_latency: how late the evaluation runs against its schedule. */
  if (r->km && r->timer_due_ms) {
    int64_t late = evs__wall_ms() - r->timer_due_ms;
    evs_keda_metrics_set_loop_latency(r->km, late > 0 ? late / 1000.0 : 0);
  }
  r->timer_due_ms = 0;
  evs__evaluate(r);
}

static void evs__arm(evs__rec_t *r, int64_t due_ms, int64_t now_ms) {
  if (r->removed)
    return; /* its entry is the tick that frees it */
  if (due_ms == INT64_MAX || due_ms <= 0) {
    if (r->timer_due_ms) {
      evs_timerq_stop(r->reg->tq, &r->timer);
      r->timer_due_ms = 0;
    }
    return;
  }
  if (r->timer_due_ms == due_ms)
    return;
  int64_t delay = due_ms - now_ms;
  if (delay < 0)
    delay = 0;
  /* A day at most: a clock step re-arms it from the next evaluation. */
  if (delay > 86400000)
    delay = 86400000;
  r->timer_due_ms = due_ms;
  (void)evs_timerq_start(r->reg->tq, &r->timer, evs__on_timer, (uint64_t)delay);
}

static const char *evs__target_gvk(const evs__target_t *t, char *buf, size_t cap) {
  snprintf(buf, cap, "%s.%s", t->api_version, t->kind);
  return buf;
}

static void evs__set_refusal(evs__rec_t *r, const char *msg) {
  if (evs__streq(r->refusal, msg))
    return;
  free(r->refusal);
  r->refusal = evs__strdup(msg);
}

/* The cadence the registry drives: pollingInterval, and no slower than active_read_interval
 * while the target has replicas (KEDA's HPA reads every 15 s then). */
static void evs__cadence(evs__rec_t *r) {
  if (!r->running || r->so == NULL)
    return;
  evs_registry_t *reg = r->reg;
  uint64_t every =
      (uint64_t)evs_so_polling_interval_s(r->so, reg->o.engine.default_polling_interval_s) * 1000;
  uint64_t active = reg->o.active_read_interval_ms ? reg->o.active_read_interval_ms : 15000;
  if (r->target && r->target->spec > 0 && active < every)
    every = active;
  if (every == r->cadence_ms)
    return;
  r->cadence_ms = every;
  for (size_t i = 0; i < r->n_trig; i++)
    if (r->trig[i]->scaler)
      (void)evs_scaler_set_cadence(r->trig[i]->scaler, every);
}

static void evs__fetch_target(evs_registry_t *reg, evs__target_t *t);
static void evs__fetch_next(evs_registry_t *reg);

/* How often a kind with no watch cache is read again through /scale: every second while its
 * controller is still catching up (status.replicas != spec.replicas, as after a write), else once
 * a minute (another writer's change is seen then at the latest: 10,000 such targets cost ~170
 * GETs a second, not one per reading). */
#define EVS__REFRESH_MS 60000
static int64_t evs__refresh_every(const evs__rec_t *r, const evs__target_t *t) {
  (void)r;
  return t->status != t->spec ? 1000 : EVS__REFRESH_MS;
}

static void evs__written(evs__rec_t *r, const evs_scale_result_t *res, const evs_step_t *step);

static void evs__on_written(evs_scalewriter_t *w, const evs_scale_result_t *res, void *arg) {
  (void)w;
  evs__rec_t *r = arg;
  /* Taken before the record may be freed below. */
  evs_step_t *step = r->inflight;
  r->inflight = NULL;
  evs__written(r, res, step);
  free(step);
}

static void evs__written(evs__rec_t *r, const evs_scale_result_t *res, const evs_step_t *step) {
  evs_registry_t *reg = r->reg;
  r->writing = 0;
  r->pending--;
  if (r->removed || reg->closing) {
    evs__rec_maybe_free(r);
    return;
  }
  int64_t now = evs__wall_ms();
  evs__target_t *t = r->target;
  if (r->restoring) {
    r->restoring = 0;
    int ok = res->err == 0 && res->status >= 200 && res->status < 300;
    if (ok || res->status == 404) {
      /* Restored (or the target is gone: nothing to restore): the finalizer may go. */
      r->restored = 1;
      EVS_LOG_INFO("ScaledObject deleted: target restored to its original count",
                   EVS_KV_STR("scaledobject", r->key), EVS_KV_INT("replicas", res->written),
                   EVS_KV_INT("status", res->status));
    } else {
      EVS_LOG_ERROR("cannot restore the original count", EVS_KV_STR("scaledobject", r->key),
                    EVS_KV_INT("status", res->status),
                    EVS_KV_STR("error", res->err ? evs_strerror(res->err) : res->message));
      int64_t n = evs__wall_ms();
      evs__arm(r, n + 2000, n);
      return;
    }
    evs__finalizer_sync(r);
    return;
  }
  if (res->err == 0 && res->status >= 200 && res->status < 300) {
    reg->st.writes++;
    if (step != NULL)
      evs_step_written(r->so, r->est, step, now);
    if (r->km && res->written != r->w_current)
      evs_keda_metrics_scaled(r->km,
                              res->written > r->w_current ? EVS_KEDA_DIR_UP : EVS_KEDA_DIR_DOWN,
                              (double)(uv_hrtime() - r->decided_by_ns) / 1e9);
    if (t) {
      t->last_written = res->written;
      t->last_written_ms = now;
      t->await_own = res->written;
      t->await_until_ms = now + EVS__AWAIT_MS;
      t->spec = res->replicas >= 0 ? res->replicas : res->written;
      if (res->status_replicas >= 0)
        t->status = res->status_replicas;
      t->known = 1;
    }
    if (t && (r->w_current == 0 || res->written == 0) && r->w_current != res->written) {
      char gvk[256];
      if (res->written > 0)
        evs__event(r, EVS_EVENT_NORMAL, EVS_REASON_SCALE_TARGET_ACTIVATED,
                   "Scaled %s %s/%s from %d to %d", evs__target_gvk(t, gvk, sizeof gvk), t->ns,
                   t->name, (int)r->w_current, (int)res->written);
      else
        evs__event(r, EVS_EVENT_NORMAL, EVS_REASON_SCALE_TARGET_DEACTIVATED,
                   "Deactivated %s %s/%s from %d to %d", evs__target_gvk(t, gvk, sizeof gvk), t->ns,
                   t->name, (int)r->w_current, (int)res->written);
    }
    if (t && !t->cached) {
      /* Its status follows once its controller has acted: read it again in a second. */
      t->fetched_ms = now - EVS__REFRESH_MS + 1000;
    }
    EVS_LOG_INFO("scaled", EVS_KV_STR("scaledobject", r->key),
                 EVS_KV_STR("target", t ? t->key : ""), EVS_KV_INT("from", r->w_current),
                 EVS_KV_INT("to", res->written),
                 EVS_KV_STR("reason", step ? evs_engine_reason_name(step->decision.reason) : ""));
    evs__cadence(r);
  } else {
    reg->st.writes_failed++;
    EVS_LOG_ERROR("scale write failed", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_STR("path", res->path ? res->path : ""), EVS_KV_INT("status", res->status),
                  EVS_KV_STR("error", res->err ? evs_strerror(res->err) : res->message),
                  EVS_KV_INT("replicas", res->written));
    if (t && (r->w_current == 0 || r->w_replicas == 0)) {
      char gvk[256];
      evs__event(r, EVS_EVENT_WARNING,
                 r->w_replicas > 0 ? EVS_REASON_SCALE_TARGET_ACTIVATION_FAILED
                                   : EVS_REASON_SCALE_TARGET_DEACTIVATION_FAILED,
                 "Failed to %s %s %s/%s from %d to %d", r->w_replicas > 0 ? "scale" : "deactivate",
                 evs__target_gvk(t, gvk, sizeof gvk), t->ns, t->name, (int)r->w_current,
                 (int)r->w_replicas);
    }
    if (t && res->status == 404) {
      /* The target is gone (or not yet created): learn its state again before deciding. */
      t->known = 0;
    }
    /* Decide again after a pause: the step's next decision is the retry. */
    evs__arm(r, now + 1000, now);
    return;
  }
  r->dirty = 0;
  evs__evaluate(r);
  if (t && !t->cached && !r->removed && (r->timer_due_ms == 0 || r->timer_due_ms > now + 1000))
    evs__arm(r, now + 1000, now);
}

/* --- the breaker's hand-over to a fallback HPA, and back --- */

static void evs__on_hpa(int err, int status, const char *msg, void *arg) {
  evs__rec_t *r = arg;
  r->hpa_op = NULL;
  if (err != 0)
    EVS_LOG_ERROR(r->hpa_wanted ? "cannot create the fallback HPA"
                                : "cannot delete the fallback HPA",
                  EVS_KV_STR("scaledobject", r->key), EVS_KV_INT("status", status),
                  EVS_KV_STR("error", msg ? msg : evs_strerror(err)));
  else
    EVS_LOG_INFO(r->hpa_wanted ? "fallback HPA in charge" : "fallback HPA deleted",
                 EVS_KV_STR("scaledobject", r->key),
                 EVS_KV_STR("hpa", r->so && r->so->hpa_name ? r->so->hpa_name : ""));
}

static void evs__on_annotated(int err, int status, const char *msg, void *arg) {
  evs__rec_t *r = arg;
  r->ann_op = NULL;
  if (err != 0)
    EVS_LOG_ERROR("cannot annotate the ScaledObject with the breaker's state",
                  EVS_KV_STR("scaledobject", r->key), EVS_KV_INT("status", status),
                  EVS_KV_STR("error", msg ? msg : evs_strerror(err)));
}

/* Writes the breaker's annotations: on trip (triggered + state) and on close (state only). Never
 * on an ordinary scale write. */
static void evs__annotate(evs__rec_t *r, int open) {
  evs_registry_t *reg = r->reg;
  if (reg->o.kube == NULL || reg->o.dry_run || r->origin != EVS_REGISTRY_API)
    return;
  char state[EVS_BREAKER_ENCODED_MAX];
  evs_breaker_encode(&r->br, state, sizeof state);
  /* The operator's reset is "the triggered annotation we saw is gone while open". Our own
   * writes change it too, and the watch echoes them late: the echo of a close's removal may
   * arrive after the next trip (ci8: a trip 91 ms after a close was undone as a "reset"). So
   * what we write is not "seen" until the watch shows it: after a close there is nothing to
   * remove, and after a trip the annotation counts once its echo arrives. */
  r->seen_triggered = 0;
  if (r->ann_op)
    evs_fallbackhpa_cancel(r->ann_op);
  r->ann_op = NULL;
  if (evs_fallbackhpa_annotate(reg->o.kube, r->ns, r->name, open ? "true" : NULL, state,
                               evs__on_annotated, r, &r->ann_op) != 0)
    r->ann_op = NULL;
}

static void evs__hpa_apply(evs__rec_t *r, int want, int32_t fallback_min) {
  evs_registry_t *reg = r->reg;
  evs__target_t *t = r->target;
  r->hpa_wanted = (uint8_t)want;
  if (reg->o.kube == NULL || reg->o.dry_run || t == NULL || r->uid == NULL ||
      r->origin != EVS_REGISTRY_API || reg->o.hpa_version == NULL ||
      (strcmp(reg->o.hpa_version, "v2") != 0 && strcmp(reg->o.hpa_version, "v2beta2") != 0)) {
    if (want)
      EVS_LOG_WARN("circuit breaker open without a fallback HPA (no autoscaling/v2 or v2beta2, "
                   "or not an API object): holding the target",
                   EVS_KV_STR("scaledobject", r->key));
    return;
  }
  if (r->hpa_op)
    evs_fallbackhpa_cancel(r->hpa_op);
  r->hpa_op = NULL;
  int rc;
  if (want) {
    /* minReplicas = fallback_replicas within the object's range and the cap, never below 1. */
    int32_t max = evs_so_max(r->so);
    if (reg->o.engine.max_replicas_cap > 0 && max > reg->o.engine.max_replicas_cap)
      max = reg->o.engine.max_replicas_cap;
    if (max < 1)
      max = 1;
    int32_t min = fallback_min;
    if (min < evs_so_min(r->so))
      min = evs_so_min(r->so);
    if (min > max)
      min = max;
    if (min < 1)
      min = 1;
    evs_fallbackhpa_spec_t spec = {
        .version = reg->o.hpa_version,
        .ns = r->ns,
        .name = r->so->hpa_name,
        .so_name = r->name,
        .so_uid = r->uid,
        .target_api_version = r->so->target_api_version,
        .target_kind = r->so->target_kind,
        .target_name = r->so->target_name,
        .min_replicas = min,
        .max_replicas = max,
        .resource = reg->o.fallback_resource ? reg->o.fallback_resource : "cpu",
        .utilization = reg->o.fallback_utilization > 0 ? reg->o.fallback_utilization : 50};
    rc = evs_fallbackhpa_ensure(reg->o.kube, &spec, evs__on_hpa, r, &r->hpa_op);
  } else {
    rc = evs_fallbackhpa_delete(reg->o.kube, reg->o.hpa_version, r->ns, r->so->hpa_name, r->uid,
                                evs__on_hpa, r, &r->hpa_op);
  }
  if (rc != 0) {
    r->hpa_op = NULL;
    EVS_LOG_ERROR("cannot send the fallback HPA request", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_ERR("err", rc));
  }
}

static void evs__hand_over(evs__rec_t *r, int open, int32_t fallback_min) {
  EVS_LOG_WARN(open ? "circuit breaker open: target handed to the fallback HPA"
                    : "circuit breaker closed: evscale scales the target again",
               EVS_KV_STR("scaledobject", r->key), EVS_KV_INT("fallback_min", fallback_min),
               EVS_KV_INT("cooldown_ms", r->br.cooldown_ms));
  if (open)
    evs__event(r, EVS_EVENT_WARNING, EVS_REASON_BREAKER_OPEN,
               "Circuit breaker open: the target scaled too often; handed to the fallback HPA "
               "(minReplicas %d) for %lld s",
               (int)fallback_min, (long long)(r->br.cooldown_ms / 1000));
  else
    evs__event(r, EVS_EVENT_NORMAL, EVS_REASON_BREAKER_CLOSED,
               "Circuit breaker closed: evscale scales the target again");
  if (r->km) {
    evs_keda_metrics_set_breaker(r->km, open);
    if (open)
      evs_keda_metrics_breaker_trip(r->km);
  }
  evs__hpa_apply(r, open, fallback_min);
  evs__annotate(r, open);
}

/* --- the restore-on-delete finalizer --- */

static int evs__has_finalizer(const evs__rec_t *r) {
  for (size_t i = 0; i < r->n_finalizers; i++)
    if (strcmp(r->finalizers[i], EVS_REGISTRY_FINALIZER) == 0)
      return 1;
  return 0;
}

static void evs__on_finalizer(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                              const char *msg, void *arg) {
  (void)req;
  evs__rec_t *r = arg;
  r->fin_req = NULL;
  r->pending--;
  if (err == EVS_ECANCELED || r->removed) {
    evs__rec_maybe_free(r);
    return;
  }
  int status = resp ? resp->status : 0;
  if (err != 0 || status < 200 || status >= 300) {
    /* A 409 (the object changed meanwhile) is retried from the next informer update; the rest
     * from the timer. */
    if (status != 409) {
      char m[256];
      snprintf(m, sizeof m, "%s", msg ? msg : (err ? evs_strerror(err) : "unexpected status"));
      EVS_LOG_ERROR("cannot update the ScaledObject's finalizers",
                    EVS_KV_STR("scaledobject", r->key), EVS_KV_INT("status", status),
                    EVS_KV_STR("error", m));
      int64_t n = evs__wall_ms();
      evs__arm(r, n + 2000, n);
    }
  }
}

/* Adds evscale's finalizer to an object that asks to be restored, removes it from one that no
 * longer does, and on deletion restores the target's original count first. The patch carries
 * the whole list with the resourceVersion it was read at, so a concurrent change of another
 * finalizer is a 409, never lost. Leader only; never in a dry run. */
static void evs__finalizer_sync(evs__rec_t *r) {
  evs_registry_t *reg = r->reg;
  if (!reg->leading || reg->o.dry_run || reg->o.kube == NULL || r->origin != EVS_REGISTRY_API ||
      r->fin_req || r->restoring || r->removed || r->rv == NULL)
    return;
  int has = evs__has_finalizer(r);
  int want = r->so && r->so->restore_to_original && !r->deleting;
  if (r->deleting && has && !r->restored) {
    int32_t count = r->so ? evs_so_deletion_replicas(r->so, r->original_replicas) : -1;
    evs__target_t *t = r->target;
    if (count >= 0 && t && t->resource && reg->o.writer && !r->writing) {
      evs_scale_target_t target = {.group = t->group,
                                   .version = t->version,
                                   .resource = t->resource,
                                   .ns = t->ns,
                                   .name = t->name};
      if (evs_scalewriter_write(reg->o.writer, &target, count, evs__on_written, r) == 0) {
        r->restoring = 1;
        r->pending++;
        r->w_current = t->spec;
        r->w_replicas = count;
      }
      return;
    }
    if (count >= 0 && r->writing)
      return; /* after the write in flight */
    r->restored = 1;
  }
  if (want == has)
    return;
  json_t *list = json_array();
  for (size_t i = 0; list && i < r->n_finalizers; i++)
    if (strcmp(r->finalizers[i], EVS_REGISTRY_FINALIZER) != 0)
      json_array_append_new(list, json_string(r->finalizers[i]));
  if (list && want)
    json_array_append_new(list, json_string(EVS_REGISTRY_FINALIZER));
  json_t *body =
      json_pack("{s:{s:o,s:s}}", "metadata", "finalizers", list, "resourceVersion", r->rv);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (text == NULL)
    return;
  char path[1024];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/%s", r->ns,
           r->name);
  evs_kube_request_opts_t o = {.verb = "PATCH",
                               .path = path,
                               .content_type = EVS_KUBE_MERGE_PATCH,
                               .body = text,
                               .body_len = strlen(text),
                               .priority = EVS_PRIO_NORMAL,
                               .on_done = evs__on_finalizer,
                               .arg = r};
  if (evs_kube_request(reg->o.kube, &o, &r->fin_req) == 0) {
    r->pending++;
    EVS_LOG_INFO(want ? "finalizer added (restoreToOriginalReplicaCount)" : "finalizer removed",
                 EVS_KV_STR("scaledobject", r->key));
  } else {
    r->fin_req = NULL;
  }
  free(text);
}

/* The back-off's end: if the other writer changed the target during it, it goes on (doubled);
 * otherwise evscale resumes. */
static void evs__backoff_end(evs__rec_t *r, evs__target_t *t, int64_t now) {
  int fought = t->n_ext > 0 && t->ext_ms[(t->n_ext - 1) % EVS__EXT_KEEP] > t->backoff_since_ms;
  if (fought) {
    t->backoff_ms =
        t->backoff_ms * 2 > EVS__BACKOFF_MAX_MS ? EVS__BACKOFF_MAX_MS : t->backoff_ms * 2;
    t->backoff_since_ms = now;
    t->backoff_until_ms = now + t->backoff_ms;
    EVS_LOG_WARN("another writer still changes the scale target: backing off longer",
                 EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("target", t->key),
                 EVS_KV_STR("manager", t->other_manager ? t->other_manager : "unknown"),
                 EVS_KV_INT("backoff_ms", t->backoff_ms));
    return;
  }
  EVS_LOG_INFO("the other writer stopped: evscale scales the target again",
               EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("target", t->key));
  t->backoff_until_ms = 0;
  t->backoff_ms = 0;
  t->n_ext = 0;
}

static void evs__evaluate(evs__rec_t *r) {
  evs_registry_t *reg = r->reg;
  if (r->removed || reg->closing || !reg->leading)
    return;
  evs__finalizer_sync(r);
  if (r->deleting)
    return; /* no decision for an object on its way out */
  if (r->so == NULL) {
    evs__status(r, NULL);
    return;
  }
  evs__target_t *t = r->target;
  if (t == NULL)
    return;
  if (t->error || r->refusal) {
    evs__status(r, NULL);
    return;
  }
  if (!t->known) {
    evs__fetch_target(reg, t);
    return;
  }
  if (!t->cached && !t->fetching && evs__wall_ms() - t->fetched_ms >= evs__refresh_every(r, t))
    evs__fetch_target(reg, t); /* decides again when the answer changes something */
  if (r->writing) {
    /* Re-decided when the write in flight answers, from the count it wrote. */
    r->dirty = 1;
    reg->st.coalesced++;
    return;
  }
  int64_t now = evs__wall_ms();
  evs_reading_t rd[64];
  evs_reading_t *readings = r->n_trig <= 64 ? rd : malloc(r->n_trig * sizeof *readings);
  if (readings == NULL)
    return;
  for (size_t i = 0; i < r->n_trig; i++)
    readings[i] = r->trig[i]->reading;
  evs_engine_input_t in = {.readings = readings,
                           .n_readings = r->n_trig,
                           .current_replicas = t->spec,
                           .status_replicas = t->status,
                           .ready_replicas = t->ready,
                           .now_ms = now};
  evs_step_t st;
  /* While another writer fights over the target, its changes must not count as scale events:
   * the breaker (unless it already holds the target) decides with counting off. */
  evs_breaker_config_t quiet = reg->o.breaker;
  int backing_off = t->backoff_until_ms > now;
  /* The decision that answers another writer's change is no scale event of evscale's either:
   * counting it would trip the breaker on an operator's kubectl scale. */
  if ((backing_off || t->ext_pending) && !r->br.open)
    quiet.enabled = 0;
  int quiet_step = !quiet.enabled;
  t->ext_pending = 0;
  int rc = evs_step(r->so, &reg->o.engine, quiet_step ? &quiet : &reg->o.breaker, r->est, &r->br,
                    &in, &st);
  if (readings != rd)
    free(readings);
  if (rc != 0)
    return;
  reg->st.decisions++;
  if (reg->o.dry_run && !r->dry_listed) {
    /* --dry-run lists every ScaledObject once: what it drives, from what count, to what. */
    r->dry_listed = 1;
    char gvk[256];
    EVS_LOG_INFO("dry run: ScaledObject", EVS_KV_STR("scaledobject", r->key),
                 EVS_KV_STR("target", evs__target_gvk(t, gvk, sizeof gvk)),
                 EVS_KV_STR("target_name", t->name), EVS_KV_INT("replicas", st.current),
                 EVS_KV_INT("desired", st.write ? st.replicas : st.current),
                 EVS_KV_STR("reason", evs_engine_reason_name(st.decision.reason)),
                 EVS_KV_UINT("triggers", r->n_trig));
  }
  if (r->original_replicas < 0)
    r->original_replicas = t->spec;
  if (st.write && backing_off) {
    /* Another writer is fighting over the target: decide (the status says so), write nothing
     * until the back-off ends. */
    st.write = 0;
    if (st.next_eval_ms > t->backoff_until_ms)
      st.next_eval_ms = t->backoff_until_ms;
  } else if (t->backoff_until_ms && t->backoff_until_ms <= now) {
    evs__backoff_end(r, t, now);
  }
  if (st.write) {
    if (reg->o.dry_run || reg->o.writer == NULL) {
      if (st.replicas != r->dry_logged) {
        r->dry_logged = st.replicas;
        EVS_LOG_INFO(reg->o.dry_run ? "dry run: would scale" : "would scale (no writer)",
                     EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("target", t->key),
                     EVS_KV_INT("from", st.current), EVS_KV_INT("to", st.replicas),
                     EVS_KV_STR("reason", evs_engine_reason_name(st.decision.reason)),
                     EVS_KV_STR("verdict", evs_breaker_verdict_name(st.verdict)));
      }
    } else {
      evs_scale_target_t target = {.group = t->group,
                                   .version = t->version,
                                   .resource = t->resource,
                                   .ns = t->ns,
                                   .name = t->name};
      free(r->inflight);
      r->inflight = malloc(sizeof *r->inflight);
      if (r->inflight != NULL)
        *r->inflight = st;
      r->decided_by_ns = r->last_reading_ns ? r->last_reading_ns : uv_hrtime();
      r->w_current = st.current;
      r->w_replicas = st.replicas;
      int wrc = r->inflight != NULL
                    ? evs_scalewriter_write(reg->o.writer, &target, st.replicas, evs__on_written, r)
                    : UV_ENOMEM;
      if (wrc != 0) {
        free(r->inflight);
        r->inflight = NULL;
      }
      if (wrc == 0) {
        r->writing = 1;
        r->pending++;
      } else {
        reg->st.writes_failed++;
        EVS_LOG_ERROR("cannot send scale write", EVS_KV_STR("scaledobject", r->key),
                      EVS_KV_ERR("err", wrc));
        evs__arm(r, now + 1000, now);
      }
    }
  }
  if (r->km)
    evs_keda_metrics_set_paused(r->km, evs_so_is_paused(r->so));
  if (st.hand_over || st.take_back)
    evs__hand_over(r, st.hand_over, st.fallback_min);
  evs__status(r, &st.decision);
  if (!r->writing || st.next_eval_ms == INT64_MAX)
    evs__arm(r, st.next_eval_ms, now);
}

/* ---------------------------------------------------------------------------------------------
 * Status */

static void evs__status(evs__rec_t *r, const evs_decision_t *d) {
  evs_registry_t *reg = r->reg;
  if (reg->o.status == NULL || r->origin != EVS_REGISTRY_API || !reg->leading)
    return;
  evs_status_trigger_t tbuf[64];
  size_t n = r->so ? r->so->n_triggers : 0;
  evs_status_trigger_t *trig = n <= 64 ? tbuf : calloc(n, sizeof *trig);
  if (trig == NULL)
    return;
  evs_status_input_t in;
  const char *err = r->check_error;
  char buf[1024];
  if (err == NULL && r->target && r->target->error)
    err = r->target->error;
  if (err == NULL && r->refusal)
    err = r->refusal;
  if (evs_so_status_input(err ? NULL : r->so, err ? NULL : d, trig, n, &in) != 0) {
    if (trig != tbuf)
      free(trig);
    return;
  }
  if (err) {
    snprintf(buf, sizeof buf, "%s", err);
    in.check_error = buf;
    in.has_fallback = r->so ? r->so->has_fallback : 0;
  }
  if (r->target && r->target->resource && !err) {
    in.gvkr = (evs_status_gvkr_t){r->target->group, r->target->version, r->target->kind,
                                  r->target->resource};
  }
  in.original_replicas = r->original_replicas;
  char active_msg[640];
  if (!err && d != NULL && r->so) {
    int64_t now = evs__wall_ms();
    if (r->detail == NULL || now - r->detail_ms >= 60000 || d->current != r->detail_current ||
        d->desired != r->detail_desired || d->active != r->detail_active) {
      char dbuf[512];
      size_t off = 0;
      for (size_t i = 0; i < r->so->n_triggers && i < d->n_health && off < sizeof dbuf; i++) {
        const evs_trigger_t *tg = &r->so->triggers[i];
        const evs_trigger_health_t *h = &d->health[i];
        int len = h->has_value ? snprintf(dbuf + off, sizeof dbuf - off, "%s%s: %g/%g",
                                          off ? ", " : "", tg->metric_name, h->value, tg->target)
                               : snprintf(dbuf + off, sizeof dbuf - off, "%s%s: -/%g",
                                          off ? ", " : "", tg->metric_name, tg->target);
        if (len < 0)
          break;
        off += (size_t)len;
      }
      if (off < sizeof dbuf)
        snprintf(dbuf + off, sizeof dbuf - off, "%sreplicas %d, desired %d", off ? "; " : "",
                 (int)d->current, (int)d->desired);
      char *nd = strdup(dbuf);
      if (nd) {
        free(r->detail);
        r->detail = nd;
        r->detail_ms = now;
        r->detail_current = d->current;
        r->detail_desired = d->desired;
        r->detail_active = d->active;
      }
    }
    if (r->detail && in.conditions[EVS_STATUS_ACTIVE].message) {
      snprintf(active_msg, sizeof active_msg, "%s (%s)", in.conditions[EVS_STATUS_ACTIVE].message,
               r->detail);
      in.conditions[EVS_STATUS_ACTIVE].message = active_msg;
    }
  }
  char conflict[512];
  if (!err && r->br.open && in.has_conditions) {
    /* The breaker's state as a condition: Ready stays True (the object is sound), its reason
     * says who drives the target and until when. */
    char until[32];
    evs_status_format_time(r->br.opened_ms + r->br.cooldown_ms, until, sizeof until);
    snprintf(conflict, sizeof conflict,
             "circuit breaker open: the target scaled too often; the fallback HPA %s drives it "
             "until %s (or until keda.sh/circuit-breaker-triggered is removed)",
             r->so && r->so->hpa_name ? r->so->hpa_name : "", until);
    in.conditions[EVS_STATUS_READY].reason = "CircuitBreakerOpen";
    in.conditions[EVS_STATUS_READY].message = conflict;
  } else if (!err && r->target && r->target->backoff_until_ms && in.has_conditions) {
    char until[32];
    evs_status_format_time(r->target->backoff_until_ms, until, sizeof until);
    snprintf(conflict, sizeof conflict,
             "another writer (field manager %s) keeps changing spec.replicas of the target: "
             "evscale does not fight it and writes nothing until %s; hold a count with the "
             "autoscaling.keda.sh/paused-replicas annotation instead",
             r->target->other_manager ? r->target->other_manager : "unknown", until);
    in.conditions[EVS_STATUS_READY].reason = "ScaleTargetConflict";
    in.conditions[EVS_STATUS_READY].message = conflict;
  }
  (void)evs_status_patcher_update(reg->o.status, r->ns, r->name, &in, evs__wall_ms(), NULL, NULL);
  if (trig != tbuf)
    free(trig);
}

/* ---------------------------------------------------------------------------------------------
 * The target's replicas, read once through /scale when no cache has told them */

typedef struct {
  evs_registry_t *reg;
  evs__target_t *t;
} evs__fetch_t;

static void evs__target_changed(evs_registry_t *reg, evs__target_t *t);

static void evs__on_fetched(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                            const char *msg, void *arg) {
  (void)req;
  evs__fetch_t *f = arg;
  evs_registry_t *reg = f->reg;
  evs__target_t *t = f->t;
  free(f);
  t->fetching = 0;
  reg->fetch_inflight--;
  int unchanged = 0;
  if (!reg->closing && err == 0 && resp && resp->status == 200) {
    json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
    json_t *spec = json_object_get(root, "spec"), *status = json_object_get(root, "status");
    json_t *sr = json_object_get(spec, "replicas"), *str = json_object_get(status, "replicas");
    int32_t seen = json_is_integer(sr) ? (int32_t)json_integer_value(sr) : 0;
    if (root && (sr == NULL || json_is_integer(sr)) && t->known && evs__stale(t, seen)) {
      unchanged = 1; /* read before evscale's own write landed */
    } else if (root && (sr == NULL || json_is_integer(sr))) {
      int32_t old_spec = t->spec, old_status = t->status;
      t->spec = sr ? (int32_t)json_integer_value(sr) : 0;
      t->status = json_is_integer(str) ? (int32_t)json_integer_value(str) : t->spec;
      t->fetched_ms = evs__wall_ms();
      if (t->known && t->spec == old_spec && t->status == old_status)
        unchanged = 1;
      /* Kinds read through /scale have no readyReplicas: ready = status.replicas (a documented
       * deviation; Deployments and StatefulSets come from their cache with the real count). */
      if (!t->cached)
        t->ready = t->status;
      t->known = 1;
      t->fetch_fails = 0;
    }
    json_decref(root);
  } else if (!reg->closing && err != EVS_ECANCELED) {
    char m[256];
    snprintf(m, sizeof m, "%s", msg ? msg : (err ? evs_strerror(err) : "unexpected status"));
    EVS_LOG_WARN("cannot read the scale target", EVS_KV_STR("target", t->key),
                 EVS_KV_INT("status", resp ? resp->status : 0), EVS_KV_STR("error", m));
    /* Try again from each record's timer, later after each failure in a row. */
    if (t->fetch_fails < 5)
      t->fetch_fails++;
    int64_t now = evs__wall_ms(), wait = 2000LL << (t->fetch_fails - 1);
    t->fetch_retry_ms = now + wait;
    evs_list_foreach(it, &t->recs) {
      evs__rec_t *r = evs_container_of(it, evs__rec_t, tlink);
      evs__arm(r, now + wait, now);
    }
  }
  int changed = t->known && !reg->closing && !unchanged;
  if (changed)
    evs__target_changed(reg, t);
  evs__target_unref(reg, t);
  evs__fetch_next(reg);
}

/* Reads in flight at once: enough to keep the client's connections busy, few enough that a
 * scale write or the Lease's renewal never waits behind thousands of them. */
#define EVS__FETCH_MAX 8

static void evs__fetch_send(evs_registry_t *reg, evs__target_t *t);

/* A /scale read of t now, or when a slot frees (in order). A target's first read is NORMAL (a
 * decision waits for it); refreshes are LOW, background work like the informers' lists, so a
 * process with thousands of targets read through /scale never starves the scale writes and the
 * Lease (HIGH). After failures it waits (2 s doubled per failure, at most a minute). */
static void evs__fetch_target(evs_registry_t *reg, evs__target_t *t) {
  if (t->fetching || t->fetch_queued || reg->o.kube == NULL || t->resource == NULL || reg->closing)
    return;
  if (t->fetch_fails && evs__wall_ms() < t->fetch_retry_ms)
    return;
  if (reg->fetch_inflight >= EVS__FETCH_MAX) {
    t->fetch_queued = 1;
    t->refs++;
    evs_list_push_back(&reg->fetch_wait, &t->flink);
    return;
  }
  evs__fetch_send(reg, t);
}

/* The next waiting read, if a slot is free. */
static void evs__fetch_next(evs_registry_t *reg) {
  while (reg->fetch_inflight < EVS__FETCH_MAX && !evs_list_empty(&reg->fetch_wait)) {
    evs_list_t *it = reg->fetch_wait.next;
    evs__target_t *t = evs_container_of(it, evs__target_t, flink);
    evs_list_remove(it);
    t->fetch_queued = 0;
    if (!reg->closing && !t->fetching)
      evs__fetch_send(reg, t);
    evs__target_unref(reg, t);
  }
}

static void evs__fetch_send(evs_registry_t *reg, evs__target_t *t) {
  char path[1024];
  evs_scale_target_t st = {.group = t->group,
                           .version = t->version,
                           .resource = t->resource,
                           .ns = t->ns,
                           .name = t->name};
  if (evs_scalewriter_path(&st, path, sizeof path) != 0)
    return;
  evs__fetch_t *f = malloc(sizeof *f);
  if (f == NULL)
    return;
  *f = (evs__fetch_t){reg, t};
  evs_kube_request_opts_t o = {.verb = "GET",
                               .path = path,
                               .priority = t->known ? EVS_PRIO_LOW : EVS_PRIO_NORMAL,
                               .on_done = evs__on_fetched,
                               .arg = f};
  t->refs++;
  t->fetching = 1;
  reg->fetch_inflight++;
  if (evs_kube_request(reg->o.kube, &o, NULL) != 0) {
    t->fetching = 0;
    t->refs--;
    reg->fetch_inflight--;
    free(f);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Who drives a target */

static int evs__before(const evs__rec_t *a, const evs__rec_t *b) {
  if (a->created_ms != b->created_ms)
    return a->created_ms < b->created_ms;
  int c = strcmp(a->ns, b->ns);
  if (c != 0)
    return c < 0;
  return strcmp(a->name, b->name) < 0;
}

static void evs__start_scalers(evs__rec_t *r);

/* Picks the driver and refuses the others (or all of them, under a foreign HPA). Records whose
 * role changed are re-decided. */
static void evs__elect(evs_registry_t *reg, evs__target_t *t) {
  (void)reg;
  evs__rec_t *best = NULL;
  evs_list_foreach(it, &t->recs) {
    evs__rec_t *r = evs_container_of(it, evs__rec_t, tlink);
    if (r->so == NULL || r->removed)
      continue;
    if (best == NULL || evs__before(r, best))
      best = r;
  }
  if (t->foreign_hpa)
    best = NULL;
  t->driver = best;
  char gvk[256], msg[1024];
  evs_list_foreach(it, &t->recs) {
    evs__rec_t *r = evs_container_of(it, evs__rec_t, tlink);
    if (r->so == NULL || r->removed)
      continue;
    const char *was = r->refusal;
    int had = was != NULL;
    if (t->foreign_hpa) {
      snprintf(msg, sizeof msg,
               "the workload '%s' of type '%s' is already managed by the hpa '%s': delete that "
               "HPA (or this ScaledObject) so that one autoscaler drives it",
               t->name, evs__target_gvk(t, gvk, sizeof gvk), t->foreign_hpa);
      evs__set_refusal(r, msg);
    } else if (r != best) {
      snprintf(msg, sizeof msg,
               "the workload '%s' of type '%s' is already managed by the ScaledObject '%s': "
               "delete one of them or point it at another target",
               t->name, evs__target_gvk(t, gvk, sizeof gvk), best->name);
      evs__set_refusal(r, msg);
    } else {
      evs__set_refusal(r, NULL);
    }
    int has = r->refusal != NULL;
    if (has && !had) {
      EVS_LOG_ERROR("ScaledObject refused", EVS_KV_STR("scaledobject", r->key),
                    EVS_KV_STR("reason", r->refusal));
      evs__event(r, EVS_EVENT_WARNING, EVS_REASON_TARGET_REFUSED, "%s", r->refusal);
      evs__stop_scalers(r);
      evs__evaluate(r);
    } else if (!has && had) {
      EVS_LOG_INFO("ScaledObject drives its target now", EVS_KV_STR("scaledobject", r->key),
                   EVS_KV_STR("target", t->key));
      evs__start_scalers(r);
      evs__evaluate(r);
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Scalers */

static evs_registry_t *evs__reg_of(evs__rec_t *r) { return r->reg; }

static void evs__on_reading(evs_scaler_t *s, const evs_reading_t *rd, void *data) {
  (void)s;
  evs__trig_t *tr = data;
  evs__rec_t *r = tr->rec;
  free(tr->error_msg);
  tr->error_msg = NULL;
  tr->reading = *rd;
  if (rd->error_msg) {
    tr->error_msg = strdup(rd->error_msg);
    tr->reading.error_msg = tr->error_msg;
  }
  r->last_reading_ns = uv_hrtime();
  int64_t rnow = evs__wall_ms();
  int rearm = 0;
  if (rd->error && r->so && r->so->triggers[tr->index].auth_name &&
      rnow - tr->reresolved_ms >= 60000) {
    tr->reresolved_ms = rnow;
    tr->reresolve = 1;
    rearm = 1;
  }
  if (rd->empty_upstream && r->so && evs__reg_of(r)->o.keda_metrics) {
    const evs_trigger_t *tg = &r->so->triggers[tr->index];
    const char *inv = evs_kvs_get(&tg->metadata, "ignoreNullValues");
    /* Go's strconv.ParseBool: the false spellings; anything else (and absent) is KEDA's true. */
    int ignore =
        !(inv && (!strcmp(inv, "0") || !strcmp(inv, "f") || !strcmp(inv, "F") ||
                  !strcmp(inv, "false") || !strcmp(inv, "FALSE") || !strcmp(inv, "False")));
    evs_keda_metrics_empty_upstream(evs__reg_of(r)->o.keda_metrics, r->ns, r->name, tg->name,
                                    tg->metric_name, ignore);
  }
  if (r->km) {
    if (rd->error) {
      evs_keda_metrics_scaler_error(r->km, tr->index);
    } else {
      evs_keda_metrics_set_value(r->km, tr->index, rd->value);
      evs_keda_metrics_set_active(r->km, tr->index, rd->active);
    }
  }
  if (rd->error)
    EVS_LOG_DEBUG("trigger error", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_UINT("trigger", tr->index), EVS_KV_ERR("err", rd->error),
                  EVS_KV_STR("error", tr->error_msg ? tr->error_msg : ""));
  evs__evaluate(r);
  if (rearm && !r->removed) {
    r->timer_due_ms = rnow; /* the restart runs from the timer, at once */
    (void)evs_timerq_start(r->reg->tq, &r->timer, evs__on_timer, 0);
  }
}

/* A trigger that cannot run reads as failing: the engine's health, fallback and conditions
 * say so, and the message reaches the status. */
static void evs__trigger_failed(evs__rec_t *r, evs__trig_t *tr, int rc, const char *msg) {
  EVS_LOG_ERROR("cannot start trigger", EVS_KV_STR("scaledobject", r->key),
                EVS_KV_UINT("trigger", tr->index), EVS_KV_STR("error", msg));
  evs__event(r, EVS_EVENT_WARNING, EVS_REASON_SCALER_FAILED, "%s", msg);
  free(tr->error_msg);
  tr->error_msg = strdup(msg);
  tr->reading = (evs_reading_t){
      .error = rc ? rc : UV_EINVAL, .time_ms = evs__wall_ms(), .error_msg = tr->error_msg};
}

static void evs__create_scaler(evs__rec_t *r, evs__trig_t *tr) {
  evs_registry_t *reg = r->reg;
  evs_scaler_config_t cfg;
  char source[EVS_SO_SOURCE_MAX];
  evs_so_scaler_config(r->so, tr->index, &cfg, source);
  cfg.auth_params = tr->auth.kvs;
  cfg.resolved_env = r->env.kvs;
  evs_diag_t diag;
  evs_diag_init(&diag);
  evs_scaler_t *s = NULL;
  int rc = evs_scaler_create(reg->o.loop, reg->o.env, &cfg, &s, &diag);
  if (rc == 0)
    rc = evs_scaler_start(s, evs__on_reading, tr);
  /* The scaler copied what it keeps: the secrets are dropped here, resolved again on restart. */
  evs__map_free(&tr->auth);
  if (rc != 0) {
    char msg[512] = "";
    if (diag.n)
      evs_diag_format(&diag, 0, msg, sizeof msg);
    else
      snprintf(msg, sizeof msg, "triggers[%zu]: %s", tr->index, evs_strerror(rc));
    if (s) {
      r->pending++;
      evs_scaler_close(s, evs__scaler_closed, r);
    }
    evs__trigger_failed(r, tr, rc, msg);
    evs_diag_free(&diag);
    return;
  }
  evs_diag_free(&diag);
  tr->scaler = s;
  EVS_LOG_INFO("trigger started", EVS_KV_STR("scaledobject", r->key),
               EVS_KV_UINT("trigger", tr->index),
               EVS_KV_STR("type", evs_trigger_type(&r->so->triggers[tr->index])),
               EVS_KV_STR("metric", r->so->triggers[tr->index].metric_name));
  if (r->cadence_ms)
    (void)evs_scaler_set_cadence(s, r->cadence_ms);
  /* The first reading comes at once, not after a cadence period. */
  (void)evs_scaler_poll(s);
}

static void evs__start_trigger(evs__rec_t *r, size_t i);

static void evs__on_auth(evs_triggerauth_req_t *req, int err, const char *msg,
                         const evs_kvs_t *params, void *arg) {
  (void)req;
  evs__trig_t *tr = arg;
  evs__rec_t *r = tr->rec;
  tr->auth_req = NULL;
  if (err == EVS_ECANCELED)
    return;
  if (err != 0 || evs__map_copy(&tr->auth, params) != 0) {
    evs__trigger_failed(r, tr, err ? err : UV_ENOMEM, msg ? msg : evs_strerror(err));
    evs__evaluate(r);
    return;
  }
  tr->auth_done = 1;
  evs__create_scaler(r, tr);
  evs__evaluate(r);
}

/* KEDA resolves the target's environment for every ScaledObject; evscale fetches it only when
 * something reads it: a *FromEnv parameter, or a TriggerAuthentication's spec.env. */
static int evs__needs_env(evs__rec_t *r) {
  evs_registry_t *reg = r->reg;
  for (size_t i = 0; i < r->n_trig; i++) {
    const evs_trigger_t *t = &r->so->triggers[i];
    for (size_t k = 0; k < t->metadata.n; k++) {
      size_t n = strlen(t->metadata.items[k].key);
      if (n > 7 && strcmp(t->metadata.items[k].key + n - 7, "FromEnv") == 0)
        return 1;
    }
    if (t->auth_name && reg->o.find_auth) {
      const evs_triggerauth_t *ta =
          reg->o.find_auth(reg->o.find_auth_arg,
                           t->auth_cluster ? EVS_TRIGGERAUTH_CLUSTER : EVS_TRIGGERAUTH_NAMESPACED,
                           t->auth_cluster ? "" : r->ns, t->auth_name);
      if (ta && ta->n_env)
        return 1;
    }
  }
  return 0;
}

static int evs__target_path(const evs__target_t *t, char *buf, size_t cap) {
  int n = t->group[0] ? snprintf(buf, cap, "/apis/%s/%s/namespaces/%s/%s/%s", t->group, t->version,
                                 t->ns, t->resource, t->name)
                      : snprintf(buf, cap, "/api/%s/namespaces/%s/%s/%s", t->version, t->ns,
                                 t->resource, t->name);
  return n > 0 && (size_t)n < cap ? 0 : UV_EINVAL;
}

static void evs__on_env(evs_triggerauth_req_t *req, int err, const char *msg,
                        const evs_kvs_t *params, void *arg) {
  (void)req;
  evs__rec_t *r = arg;
  r->env_req = NULL;
  if (err == EVS_ECANCELED)
    return;
  if (err != 0 || evs__map_copy(&r->env, params) != 0) {
    r->env_state = 3;
    free(r->env_error);
    char buf[600];
    snprintf(buf, sizeof buf, "error resolving the scale target's environment: %s",
             msg ? msg : evs_strerror(err ? err : UV_ENOMEM));
    r->env_error = strdup(buf);
  } else {
    r->env_state = 2;
  }
  for (size_t i = 0; i < r->n_trig; i++)
    evs__start_trigger(r, i);
  evs__evaluate(r);
}

static void evs__start_trigger(evs__rec_t *r, size_t i) {
  evs_registry_t *reg = r->reg;
  evs__trig_t *tr = r->trig[i];
  if (tr->scaler || tr->auth_req)
    return;
  if (r->env_state == 0 && reg->o.kube && r->target && r->target->resource && evs__needs_env(r)) {
    char path[1024];
    evs_triggerauth_env_opts_t eo = {.target_path = path,
                                     .ns = r->ns,
                                     .container = r->so->env_source_container,
                                     .cb = evs__on_env,
                                     .arg = r};
    if (evs__target_path(r->target, path, sizeof path) == 0 &&
        evs_triggerauth_env_resolve(reg->o.loop, reg->o.kube, &eo, &r->env_req) == 0) {
      r->env_state = 1;
      return;
    }
    r->env_state = 3;
  }
  if (r->env_state == 1)
    return; /* started when the environment is known */
  if (r->env_state == 3 && r->env_error) {
    evs__trigger_failed(r, tr, EVS_ENOTFOUND, r->env_error);
    return;
  }
  const evs_trigger_t *t = &r->so->triggers[i];
  if (t->auth_name == NULL || tr->auth_done) {
    evs__create_scaler(r, tr);
    return;
  }
  evs_triggerauth_kind_t kind =
      t->auth_cluster ? EVS_TRIGGERAUTH_CLUSTER : EVS_TRIGGERAUTH_NAMESPACED;
  const char *ans = t->auth_cluster ? "" : r->ns;
  const evs_triggerauth_t *ta =
      reg->o.find_auth ? reg->o.find_auth(reg->o.find_auth_arg, kind, ans, t->auth_name) : NULL;
  char msg[600];
  if (ta == NULL) {
    snprintf(msg, sizeof msg, "triggers[%zu].authenticationRef: %s %s%s%s not found", i,
             evs_triggerauth_kind_name(kind), ans, ans[0] ? "/" : "", t->auth_name);
    evs__trigger_failed(r, tr, EVS_ENOTFOUND, msg);
    return;
  }
  if (evs_triggerauth_check(ta, kind, ans, t->auth_name, msg, sizeof msg) != 0) {
    evs__trigger_failed(r, tr, EVS_EUNSUPPORTED, msg);
    return;
  }
  if (reg->o.kube == NULL) {
    evs__trigger_failed(r, tr, EVS_ESTATE, "no Kubernetes client to resolve authenticationRef");
    return;
  }
  char path[1024];
  int have_path =
      r->target && r->target->resource && evs__target_path(r->target, path, sizeof path) == 0;
  evs_triggerauth_opts_t ao = {.auth = ta,
                               .kind = kind,
                               .name = t->auth_name,
                               .ns = r->ns,
                               .cluster_namespace = reg->o.cluster_namespace,
                               .target_path = have_path ? path : NULL,
                               .env = r->env_state == 2 ? &r->env.kvs : NULL,
                               .env_container =
                                   r->so->env_source_container ? r->so->env_source_container : "",
                               .cb = evs__on_auth,
                               .arg = tr};
  int rc = evs_triggerauth_resolve(reg->o.loop, reg->o.kube, &ao, &tr->auth_req);
  if (rc != 0) {
    tr->auth_req = NULL;
    evs__trigger_failed(r, tr, rc, "cannot resolve authenticationRef");
  }
}

void evs_registry_auth_changed(evs_registry_t *reg, evs_triggerauth_kind_t kind, const char *ns,
                               const char *name) {
  if (reg == NULL || name == NULL || reg->closing)
    return;
  int cluster = kind == EVS_TRIGGERAUTH_CLUSTER;
  for (size_t b = 0; reg->recs.slots && b <= reg->recs.mask; b++) {
    for (evs__rec_t *r = reg->recs.slots[b]; r; r = r->next) {
      if (r->so == NULL)
        continue;
      int hit = 0;
      for (size_t i = 0; i < r->n_trig; i++) {
        const evs_trigger_t *t = &r->so->triggers[i];
        if (t->auth_name == NULL || !!t->auth_cluster != cluster ||
            strcmp(t->auth_name, name) != 0 || (!cluster && strcmp(r->ns, ns ? ns : "") != 0))
          continue;
        hit = 1;
        evs__stop_trigger(r, r->trig[i]);
        if (r->running)
          evs__start_trigger(r, i);
      }
      if (hit) {
        EVS_LOG_INFO("authentication changed: trigger restarted",
                     EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("authentication", name));
        evs__evaluate(r);
      }
    }
  }
}

static void evs__start_scalers(evs__rec_t *r) {
  evs_registry_t *reg = r->reg;
  if (!reg->leading || r->so == NULL || r->removed || r->refusal || r->deleting ||
      reg->o.env == NULL || (r->target && r->target->error))
    return;
  r->running = 1;
  r->cadence_ms = 0;
  evs__cadence(r);
  for (size_t i = 0; i < r->n_trig; i++)
    evs__start_trigger(r, i);
}

/* ---------------------------------------------------------------------------------------------
 * Apply / remove */

static int evs__trigger_same(const evs_trigger_t *a, const evs_trigger_t *b) {
  if (a->kind != b->kind || a->metric_type != b->metric_type ||
      a->auth_cluster != b->auth_cluster || !evs__streq(a->name, b->name) ||
      !evs__streq(a->auth_name, b->auth_name) || a->metadata.n != b->metadata.n ||
      a->use_cached_metrics != b->use_cached_metrics)
    return 0;
  for (size_t i = 0; i < a->metadata.n; i++) {
    if (!evs__streq(a->metadata.items[i].key, b->metadata.items[i].key) ||
        !evs__streq(a->metadata.items[i].value, b->metadata.items[i].value))
      return 0;
  }
  return 1;
}

static void evs__detach(evs_registry_t *reg, evs__rec_t *r) {
  evs__target_t *t = r->target;
  if (t == NULL)
    return;
  evs_list_remove(&r->tlink);
  r->target = NULL;
  if (t->driver == r)
    t->driver = NULL;
  evs__elect(reg, t);
  evs__target_unref(reg, t);
}

static int evs__attach(evs_registry_t *reg, evs__rec_t *r) {
  evs__target_t *t = evs__target_get(reg, r->so, r->ns);
  if (t == NULL)
    return UV_ENOMEM;
  r->target = t;
  evs_list_push_back(&t->recs, &r->tlink);
  return 0;
}

/* The object's KEDA series, made again when its triggers changed (labels name them). */
static void evs__metrics_object(evs__rec_t *r) {
  evs_registry_t *reg = r->reg;
  evs_keda_metrics_object_free(r->km);
  r->km = NULL;
  if (reg->o.keda_metrics == NULL || r->so == NULL)
    return;
  size_t n = r->so->n_triggers;
  evs_keda_trigger_t tb[16];
  evs_keda_trigger_t *tr = n <= 16 ? tb : calloc(n, sizeof *tr);
  if (tr == NULL)
    return;
  /* KEDA's scaler label is its Go type name (prommetrics: "%T" without the package). */
  for (size_t i = 0; i < n; i++) {
    const evs_trigger_t *t = &r->so->triggers[i];
    const char *scaler = t->kind == EVS_TRIG_REDIS        ? "redisScaler"
                         : t->kind == EVS_TRIG_PROMETHEUS ? "prometheusScaler"
                                                          : "cronScaler";
    tr[i] = (evs_keda_trigger_t){scaler, t->metric_name, evs_trigger_type(t)};
  }
  (void)evs_keda_metrics_object_new(reg->o.keda_metrics, r->ns, r->name, tr, n, &r->km);
  if (tr != tb)
    free(tr);
}

static int evs__keeps(const evs__rec_t *r, const evs_so_t *old, const evs_so_t *so, size_t i) {
  return i < r->n_trig && r->trig[i] != NULL && old != NULL && i < old->n_triggers &&
         evs__trigger_same(&old->triggers[i], &so->triggers[i]);
}

static void evs__so_changed(evs__rec_t *r, evs_so_t *so) {
  evs_so_t *old = r->so;
  size_t n = so->n_triggers;
  /* Triggers by position: an unchanged one keeps its scaler and its last reading. New ones are
   * allocated first, so running out of memory leaves the record as it was. */
  evs__trig_t **nt = calloc(n ? n : 1, sizeof *nt);
  int oom = nt == NULL;
  for (size_t i = 0; !oom && i < n; i++) {
    if (evs__keeps(r, old, so, i))
      continue;
    if ((nt[i] = calloc(1, sizeof *nt[i])) == NULL) {
      oom = 1;
      break;
    }
    nt[i]->rec = r;
    nt[i]->index = i;
  }
  if (oom) {
    for (size_t i = 0; nt && i < n; i++)
      free(nt[i]);
    free(nt);
    evs_so_free(so);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (nt[i] == NULL) {
      nt[i] = r->trig[i];
      r->trig[i] = NULL;
    }
  }
  for (size_t i = 0; i < r->n_trig; i++) {
    if (r->trig[i] == NULL)
      continue;
    evs__stop_trigger(r, r->trig[i]);
    free(r->trig[i]->error_msg);
    evs__map_free(&r->trig[i]->auth);
    free(r->trig[i]);
  }
  free(r->trig);
  r->trig = nt;
  r->n_trig = n;
  if (r->est == NULL) {
    if (evs_engine_state_new(so, r->created_ms, &r->est) == 0) {
      if (r->last_active_ms > 0)
        r->est->last_active_ms = r->last_active_ms;
      r->est->was_paused = (uint8_t)r->was_paused;
    }
  } else {
    (void)evs_engine_state_respec(r->est, so);
  }
  /* The series keep their counts across updates (a status write is an update too); they are
   * made again only when the triggers' labels changed. */
  int relabel = r->km == NULL || old == NULL || old->n_triggers != so->n_triggers;
  for (size_t i = 0; !relabel && i < so->n_triggers; i++)
    relabel = !evs__streq(old->triggers[i].metric_name, so->triggers[i].metric_name) ||
              old->triggers[i].kind != so->triggers[i].kind;
  r->so = so;
  evs_so_free(old);
  if (relabel)
    evs__metrics_object(r);
}

int evs_registry_apply(evs_registry_t *reg, const evs_registry_object_t *obj) {
  if (reg == NULL || obj == NULL || obj->name == NULL || reg->closing) {
    evs_so_free(obj ? obj->so : NULL);
    return UV_EINVAL;
  }
  const char *ns = obj->ns && obj->ns[0] ? obj->ns : reg->default_ns;
  char key[600];
  snprintf(key, sizeof key, "%s/%s", ns, obj->name);
  evs__rec_t *r = evs__table_get(&reg->recs, evs__rec_key, key);
  if (r && r->origin != obj->origin) {
    if (obj->origin == EVS_REGISTRY_FILE) {
      EVS_LOG_ERROR("ScaledObject in the configuration file has the name of one in the API; the "
                    "file's is ignored",
                    EVS_KV_STR("scaledobject", key));
      evs_so_free(obj->so);
      return UV_EEXIST;
    }
    EVS_LOG_ERROR("ScaledObject in the configuration file has the name of one in the API; the "
                  "API's is used",
                  EVS_KV_STR("scaledobject", key));
    evs_registry_remove(reg, ns, obj->name);
    r = NULL;
  }
  int created = 0;
  if (r == NULL) {
    /* key, ns and name in the record's own allocation (one malloc, not four). */
    size_t lk = strlen(key) + 1, ln = strlen(ns) + 1, lm = strlen(obj->name) + 1;
    r = calloc(1, sizeof *r + lk + ln + lm);
    if (r == NULL) {
      evs_so_free(obj->so);
      return UV_ENOMEM;
    }
    r->reg = reg;
    r->key = memcpy((char *)(r + 1), key, lk);
    r->ns = memcpy(r->key + lk, ns, ln);
    r->name = memcpy(r->ns + ln, obj->name, lm);
    r->origin = obj->origin;
    r->dry_logged = -1;
    r->original_replicas = obj->original_replicas;
    r->created_ms = obj->created_ms > 0 ? obj->created_ms : evs__wall_ms();
    r->last_active_ms = obj->last_active_ms;
    evs_breaker_init(&r->br);
    /* A restart resumes the breaker: its events, its doubling, and an open state (the fallback
     * HPA, owned by the object, stayed in charge meanwhile). */
    if (obj->breaker_state &&
        evs_breaker_decode(obj->breaker_state, strlen(obj->breaker_state), &r->br) != 0)
      EVS_LOG_WARN("unreadable circuit breaker state annotation; starting closed",
                   EVS_KV_STR("scaledobject", key));
    if (r->br.open && !obj->breaker_triggered)
      (void)evs_breaker_reset(&r->br, evs__wall_ms()); /* removed while evscale was down */
    r->seen_triggered = (uint8_t)obj->breaker_triggered;
    if (r->br.open)
      r->hpa_wanted = 1;
    evs_list_init(&r->tlink);
    evs_timerq_entry_init(&r->timer);
    if (evs__table_put(&reg->recs, evs__rec_key, r) != 0) {
      r->removed = 1;
      r->timer_closed = 0;
      reg->live++;
      (void)evs_timerq_start(reg->tq, &r->timer, evs__removed_tick, 0);
      evs_so_free(obj->so);
      return UV_ENOMEM;
    }
    reg->live++;
    created = 1;
  }
  if (obj->was_paused) {
    /* Sticky, as KEDA's ScaledObjectUnpaused (a follower learns it from the leader's writes). */
    r->was_paused = 1;
    if (r->est != NULL)
      r->est->was_paused = 1;
  }
  if (!created && obj->last_active_ms > r->last_active_ms) {
    /* A follower learns lastActiveTime from the leader's status writes: the engine state it
     * will decide from once it leads keeps the later of its own and the status' time. */
    r->last_active_ms = obj->last_active_ms;
    if (r->est != NULL && r->est->last_active_ms < obj->last_active_ms)
      r->est->last_active_ms = obj->last_active_ms;
  }
  if (obj->resource_version && !evs__streq(r->rv, obj->resource_version)) {
    free(r->rv);
    r->rv = strdup(obj->resource_version);
  }
  char **fin = evs__strv_dup(obj->finalizers, obj->finalizers ? obj->n_finalizers : 0);
  if (fin) {
    evs__strv_free(r->finalizers, r->n_finalizers);
    r->finalizers = fin;
    r->n_finalizers = obj->finalizers ? obj->n_finalizers : 0;
  }
  if (obj->deleting && !r->deleting) {
    r->deleting = 1;
    evs__stop_scalers(r);
    EVS_LOG_INFO("ScaledObject being deleted", EVS_KV_STR("scaledobject", key),
                 EVS_KV_BOOL("restore", r->so && r->so->restore_to_original));
  }
  if (obj->uid && !evs__streq(r->uid, obj->uid)) {
    free(r->uid);
    r->uid = strdup(obj->uid);
  }
  free(r->check_error);
  r->check_error = evs__strdup(obj->check_error);
  int operator_reset = 0;
  if (!created) {
    /* The operator's reset (the runbook: kubectl annotate scaledobject X
     * keda.sh/circuit-breaker-triggered-): the annotation we saw is gone while open. */
    if (r->br.open && r->seen_triggered && !obj->breaker_triggered)
      operator_reset = 1;
    r->seen_triggered = (uint8_t)obj->breaker_triggered;
  }

  /* The target: a changed scaleTargetRef moves the record to the new one. */
  char tkey[1024] = "";
  if (obj->so)
    evs__target_key_of(obj->so->target_api_version, obj->so->target_kind, ns, obj->so->target_name,
                       tkey, sizeof tkey);
  int target_moved = r->target && (obj->so == NULL || strcmp(r->target->key, tkey) != 0);
  if (target_moved) {
    evs__stop_scalers(r);
    evs__detach(reg, r);
  }
  if (obj->so == NULL) {
    evs__stop_scalers(r);
    evs_so_free(r->so);
    r->so = NULL;
    evs__free_trigs(r);
    evs_keda_metrics_object_free(r->km);
    r->km = NULL;
    EVS_LOG_ERROR("ScaledObject is invalid", EVS_KV_STR("scaledobject", key),
                  EVS_KV_STR("error", obj->check_error ? obj->check_error : "invalid"));
    evs__event(r, EVS_EVENT_WARNING, EVS_REASON_SO_CHECK_FAILED, "%s",
               obj->check_error ? obj->check_error : "invalid");
    evs__evaluate(r);
    return 0;
  }
  evs__so_changed(r, obj->so);
  if (r->so != obj->so) /* out of memory: the old spec stays */
    return UV_ENOMEM;
  if (r->target == NULL) {
    if (evs__attach(reg, r) != 0)
      return UV_ENOMEM;
  }
  evs__elect(reg, r->target);
  if (created)
    evs__event(r, EVS_EVENT_NORMAL, EVS_REASON_SO_READY, "ScaledObject is ready for scaling");
  if (created)
    EVS_LOG_INFO("ScaledObject added", EVS_KV_STR("scaledobject", key),
                 EVS_KV_STR("target", r->target->key), EVS_KV_UINT("triggers", r->n_trig),
                 EVS_KV_STR("origin", obj->origin == EVS_REGISTRY_FILE ? "file" : "api"));
  if (operator_reset && evs_breaker_reset(&r->br, evs__wall_ms())) {
    EVS_LOG_INFO("circuit breaker reset by the operator", EVS_KV_STR("scaledobject", key));
    if (reg->leading)
      evs__hand_over(r, 0, 0);
  }
  /* Bounds, pollingInterval or triggers changed: cadence, new scalers, and a decision now. */
  r->cadence_ms = 0;
  if (reg->leading && !r->refusal) {
    evs__start_scalers(r);
  }
  evs__evaluate(r);
  return 0;
}

void evs_registry_remove(evs_registry_t *reg, const char *ns, const char *name) {
  if (reg == NULL || name == NULL)
    return;
  char key[600];
  snprintf(key, sizeof key, "%s/%s", ns && ns[0] ? ns : reg->default_ns, name);
  evs__rec_t *r = evs__table_get(&reg->recs, evs__rec_key, key);
  if (r != NULL)
    evs__remove(reg, r);
}

static void evs__remove(evs_registry_t *reg, evs__rec_t *r) {
  char key[600];
  snprintf(key, sizeof key, "%s", r->key);
  evs__table_del(&reg->recs, evs__rec_key, r);
  r->removed = 1;
  EVS_LOG_INFO("ScaledObject removed", EVS_KV_STR("scaledobject", key));
  evs__stop_scalers(r);
  evs__detach(reg, r);
  /* A ScaledObject deleted while open: its HPA goes with it (owner reference, garbage collector).
   */
  if (r->hpa_op) {
    evs_fallbackhpa_cancel(r->hpa_op);
    r->hpa_op = NULL;
  }
  if (r->ann_op) {
    evs_fallbackhpa_cancel(r->ann_op);
    r->ann_op = NULL;
  }
  if (r->fin_req) {
    evs_kube_cancel(r->fin_req); /* its callback runs now, with EVS_ECANCELED */
    r->fin_req = NULL;
  }
  if (reg->o.status && r->origin == EVS_REGISTRY_API)
    evs_status_patcher_forget(reg->o.status, r->ns, r->name);
  r->timer_due_ms = 0;
  (void)evs_timerq_start(reg->tq, &r->timer, evs__removed_tick, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Observations */

static void evs__target_changed(evs_registry_t *reg, evs__target_t *t) {
  (void)reg;
  evs_list_foreach_safe(it, &t->recs) {
    evs__rec_t *r = evs_container_of(it, evs__rec_t, tlink);
    evs__cadence(r);
    evs__evaluate(r);
  }
}

static int evs__target_writing(const evs__target_t *t) {
  evs_list_foreach(it, &t->recs) {
    if (evs_container_of(it, evs__rec_t, tlink)->writing)
      return 1;
  }
  return 0;
}

/* spec.replicas changed and not by evscale (no write of ours in flight, not the count it wrote
 * last — a watch may deliver our own change after the write's answer). The engine re-decides
 * from the new count, as the HPA would at its next sync; a writer that does it more than 3 times
 * in a minute is not fought over. Its changes are no scale events for the breaker (which counts
 * evscale's writes only). */
static void evs__other_writer(evs_registry_t *reg, evs__target_t *t,
                              const evs_registry_target_obs_t *o) {
  int64_t now = evs__wall_ms();
  if (evs__target_writing(t) || t->driver == NULL ||
      (o->spec_replicas == t->last_written && now - t->last_written_ms < EVS__EXT_WINDOW_MS))
    return;
  t->ext_ms[t->n_ext % EVS__EXT_KEEP] = now;
  t->n_ext++;
  t->ext_pending = 1;
  if (o->manager && !evs__streq(o->manager, t->other_manager)) {
    free(t->other_manager);
    t->other_manager = strdup(o->manager);
  }
  EVS_LOG_INFO("another writer changed the scale target's replicas", EVS_KV_STR("target", t->key),
               EVS_KV_INT("from", t->spec), EVS_KV_INT("to", o->spec_replicas),
               EVS_KV_STR("manager", o->manager ? o->manager : "unknown"));
  if (t->backoff_until_ms || t->n_ext < EVS__EXT_KEEP)
    return;
  /* The oldest of the last four changes is within the minute: more than 3 a minute. */
  int64_t oldest = t->ext_ms[t->n_ext % EVS__EXT_KEEP];
  if (now - oldest > EVS__EXT_WINDOW_MS)
    return;
  t->backoff_ms = EVS__BACKOFF_FIRST_MS;
  t->backoff_since_ms = now;
  t->backoff_until_ms = now + t->backoff_ms;
  evs__rec_t *r = t->driver;
  EVS_LOG_WARN("another writer keeps changing the scale target: evscale backs off",
               EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("target", t->key),
               EVS_KV_STR("manager", t->other_manager ? t->other_manager : "unknown"),
               EVS_KV_INT("backoff_ms", t->backoff_ms));
  char gvk[256];
  evs__event(r, EVS_EVENT_WARNING, EVS_REASON_TARGET_CONFLICT,
             "Another writer (field manager %s) changed spec.replicas of %s %s/%s more than %d "
             "times in a minute: evscale backs off for %lld s",
             t->other_manager ? t->other_manager : "unknown", evs__target_gvk(t, gvk, sizeof gvk),
             t->ns, t->name, EVS__EXT_MAX, (long long)(t->backoff_ms / 1000));
  (void)reg;
}

void evs_registry_target_seen(evs_registry_t *reg, const evs_registry_target_obs_t *o) {
  if (reg == NULL || o == NULL || o->api_version == NULL || o->kind == NULL || o->ns == NULL ||
      o->name == NULL)
    return;
  char key[1024];
  evs__target_key_of(o->api_version, o->kind, o->ns, o->name, key, sizeof key);
  evs__target_t *t = evs__table_get(&reg->targets, evs__target_key, key);
  if (t == NULL)
    return; /* no ScaledObject names it */
  int first = !t->cached;
  t->cached = 1;
  if (t->known && o->spec_replicas >= 0 && evs__stale(t, o->spec_replicas))
    return; /* from before evscale's own write */
  int changed = !t->known || t->spec != o->spec_replicas || t->status != o->status_replicas ||
                t->ready != o->ready_replicas;
  if (t->known && o->spec_replicas >= 0 && o->spec_replicas != t->spec)
    evs__other_writer(reg, t, o);
  t->spec = o->spec_replicas;
  t->status = o->status_replicas;
  t->ready = o->ready_replicas;
  t->known = o->spec_replicas >= 0;
  t->cached = 1;
  /* The only place the counts a cache delivered can be seen from outside (issue 13: the e2e
   * test follows status.readyReplicas through the watch as pods turn ready); changes only, and
   * the cache's first word on a target even when a /scale read had the same counts, at debug
   * level, so 50,000 targets cost nothing at the default level. */
  if (changed || first)
    EVS_LOG_DEBUG("scale target seen", EVS_KV_STR("target", t->key),
                  EVS_KV_INT("spec_replicas", t->spec), EVS_KV_INT("status_replicas", t->status),
                  EVS_KV_INT("ready_replicas", t->ready));
  if (changed && t->known)
    evs__target_changed(reg, t);
}

void evs_registry_hpa_seen(evs_registry_t *reg, const evs_registry_hpa_obs_t *o) {
  if (reg == NULL || o == NULL || o->target_api_version == NULL || o->target_kind == NULL ||
      o->target_name == NULL || o->ns == NULL || o->name == NULL)
    return;
  char key[1024];
  evs__target_key_of(o->target_api_version, o->target_kind, o->ns, o->target_name, key, sizeof key);
  int foreign = !o->deleted && !o->evscale_owned;
  evs__hpa_t *h = evs__table_get(&reg->hpas, evs__hpa_key, key);
  if (foreign && h == NULL) {
    if ((h = calloc(1, sizeof *h)) == NULL || (h->key = strdup(key)) == NULL ||
        (h->name = strdup(o->name)) == NULL || evs__table_put(&reg->hpas, evs__hpa_key, h) != 0) {
      if (h) {
        free(h->key);
        free(h->name);
        free(h);
      }
      return;
    }
  } else if (foreign && !evs__streq(h->name, o->name)) {
    char *n = strdup(o->name);
    if (n) {
      free(h->name);
      h->name = n;
    }
  } else if (!foreign && h && evs__streq(h->name, o->name)) {
    evs__table_del(&reg->hpas, evs__hpa_key, h);
    free(h->key);
    free(h->name);
    free(h);
    h = NULL;
  }
  evs__target_t *t = evs__table_get(&reg->targets, evs__target_key, key);
  if (t == NULL)
    return;
  const char *want = h ? h->name : NULL;
  if (!evs__streq(t->foreign_hpa, want)) {
    free(t->foreign_hpa);
    t->foreign_hpa = want ? strdup(want) : NULL;
    evs__elect(reg, t);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Leadership, stats, life */

void evs_registry_set_leader(evs_registry_t *reg, int leading) {
  if (reg == NULL || reg->closing || !!leading == reg->leading)
    return;
  reg->leading = !!leading;
  EVS_LOG_INFO(leading ? "leading: running scalers and writing" : "not leading: scalers stopped",
               EVS_KV_UINT("scaledobjects", reg->recs.n));
  for (size_t i = 0; reg->recs.slots && i <= reg->recs.mask; i++) {
    for (evs__rec_t *r = reg->recs.slots[i]; r; r = r->next) {
      if (leading) {
        /* What a follower saw but could not say: a new leader says it once. */
        if (r->refusal)
          evs__event(r, EVS_EVENT_WARNING, EVS_REASON_TARGET_REFUSED, "%s", r->refusal);
        else if (r->so == NULL && r->check_error)
          evs__event(r, EVS_EVENT_WARNING, EVS_REASON_SO_CHECK_FAILED, "%s", r->check_error);
        evs__start_scalers(r);
        evs__evaluate(r);
      } else {
        evs__stop_scalers(r);
        evs_timerq_stop(reg->tq, &r->timer);
        r->timer_due_ms = 0;
      }
    }
  }
}

void evs_registry_stats(const evs_registry_t *reg, evs_registry_stats_t *out) {
  *out = reg->st;
  out->objects = reg->recs.n;
  out->targets = reg->targets.n;
  out->broken = 0;
  out->scalers = 0;
  for (size_t i = 0; reg->recs.slots && i <= reg->recs.mask; i++) {
    for (evs__rec_t *r = reg->recs.slots[i]; r; r = r->next) {
      if (r->so == NULL || r->refusal)
        out->broken++;
      for (size_t j = 0; j < r->n_trig; j++)
        out->scalers += r->trig[j]->scaler != NULL;
    }
  }
}

int evs_registry_new(const evs_registry_options_t *o, evs_registry_t **out) {
  if (o == NULL || o->loop == NULL || out == NULL)
    return UV_EINVAL;
  evs_registry_t *reg = calloc(1, sizeof *reg);
  if (reg == NULL)
    return UV_ENOMEM;
  reg->o = *o;
  evs_list_init(&reg->fetch_wait);
  reg->default_ns =
      strdup(o->default_namespace && o->default_namespace[0] ? o->default_namespace : "default");
  if (reg->default_ns == NULL || evs_timerq_new(o->loop, &reg->tq) != 0) {
    free(reg->default_ns);
    free(reg);
    return UV_ENOMEM;
  }
  if (uv_idle_init(o->loop, &reg->idle) != 0) {
    evs_timerq_close(reg->tq, NULL, NULL);
    free(reg->default_ns);
    free(reg);
    return UV_ENOMEM;
  }
  reg->idle.data = reg;
  reg->o.default_namespace = reg->default_ns;
  *out = reg;
  return 0;
}

static void evs__idle_closed(uv_handle_t *h) {
  evs_registry_t *reg = h->data;
  void (*cb)(void *) = reg->close_cb;
  void *arg = reg->close_arg;
  free(reg->recs.slots);
  free(reg->targets.slots);
  for (size_t i = 0; reg->hpas.slots && i <= reg->hpas.mask; i++) {
    for (evs__hpa_t *e = reg->hpas.slots[i], *nx; e; e = nx) {
      nx = e->next;
      free(e->key);
      free(e->name);
      free(e);
    }
  }
  free(reg->hpas.slots);
  free(reg->default_ns);
  free(reg);
  if (cb)
    cb(arg);
}

static void evs__tq_closed(void *arg) {
  evs_registry_t *reg = arg;
  reg->tq = NULL;
  uv_close((uv_handle_t *)&reg->idle, evs__idle_closed);
}

static void evs__on_idle(uv_idle_t *h) {
  evs_registry_t *reg = h->data;
  if (reg->live > 0)
    return;
  uv_idle_stop(h);
  /* Every record is freed: no entry of the queue is left. */
  evs_timerq_close(reg->tq, evs__tq_closed, reg);
}

void evs_registry_close(evs_registry_t *reg, void (*cb)(void *arg), void *arg) {
  if (reg == NULL || reg->closing)
    return;
  reg->close_cb = cb;
  reg->close_arg = arg;
  reg->leading = 0;
  reg->closing = 1;
  while (!evs_list_empty(&reg->fetch_wait)) {
    evs__target_t *t = evs_container_of(reg->fetch_wait.next, evs__target_t, flink);
    evs_list_remove(&t->flink);
    t->fetch_queued = 0;
    evs__target_unref(reg, t);
  }
  /* Remove every record (scalers close, timers close), then free once they all have. */
  for (size_t i = 0; reg->recs.slots && i <= reg->recs.mask; i++) {
    while (reg->recs.slots[i]) {
      evs__rec_t *r = reg->recs.slots[i];
      evs__remove(reg, r);
    }
  }
  uv_idle_start(&reg->idle, evs__on_idle);
}

/* ---------------------------------------------------------------------------------------------
 * The ScaledObject informer's decoder */

static int evs__digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int64_t evs_registry_parse_time(const char *s) {
  /* Exactly "YYYY-MM-DDTHH:MM:SS", each field its full width (no sscanf: it accepts short
   * fields, signs and spaces, and the tail would then be read past the end). */
  if (s == NULL || strnlen(s, 20) < 20 || s[4] != '-' || s[7] != '-' ||
      (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return -1;
  int y = evs__digits(s, 4), mo = evs__digits(s + 5, 2), d = evs__digits(s + 8, 2),
      h = evs__digits(s + 11, 2), mi = evs__digits(s + 14, 2), sec = evs__digits(s + 17, 2);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
      sec < 0 || sec > 60)
    return -1;
  /* Days from the civil date (Howard Hinnant's algorithm), UTC; an offset other than Z is
   * applied below. */
  int yy = y - (mo <= 2);
  int era = yy / 400;
  int yoe = yy - era * 400;
  int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = (int64_t)era * 146097 + doe - 719468;
  int64_t ms = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)sec * 1000;
  const char *p = s + 19;
  if (*p == '.') {
    int64_t frac = 0, scale = 100;
    for (p++; *p >= '0' && *p <= '9'; p++) {
      frac += (*p - '0') * scale;
      scale /= 10;
    }
    ms += frac;
  }
  if (*p == 'Z' || *p == 'z')
    return p[1] == '\0' ? ms : -1;
  if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
    int oh = evs__digits(p + 1, 2), om = evs__digits(p + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59)
      return -1;
    int64_t off = ((int64_t)oh * 60 + om) * 60000;
    return *p == '+' ? ms - off : ms + off;
  }
  return -1;
}

int evs_registry_decode(const json_t *obj, void **out, void *arg) {
  (void)arg;
  *out = NULL;
  evs_registry_decoded_t *d = calloc(1, sizeof *d);
  if (d == NULL)
    return UV_ENOMEM;
  d->original_replicas = -1;
  const json_t *meta = json_object_get(obj, "metadata");
  const json_t *status = json_object_get(obj, "status");
  d->created_ms =
      evs_registry_parse_time(json_string_value(json_object_get(meta, "creationTimestamp")));
  if (d->created_ms < 0)
    d->created_ms = 0;
  d->last_active_ms =
      evs_registry_parse_time(json_string_value(json_object_get(status, "lastActiveTime")));
  if (d->last_active_ms < 0)
    d->last_active_ms = 0;
  d->deleting = json_object_get(meta, "deletionTimestamp") != NULL &&
                !json_is_null(json_object_get(meta, "deletionTimestamp"));
  const json_t *fins = json_object_get(meta, "finalizers");
  if (json_is_array(fins) && json_array_size(fins) > 0) {
    d->finalizers = calloc(json_array_size(fins), sizeof *d->finalizers);
    for (size_t i = 0; d->finalizers && i < json_array_size(fins); i++) {
      const char *f = json_string_value(json_array_get(fins, i));
      if (f && (d->finalizers[d->n_finalizers] = strdup(f)) != NULL)
        d->n_finalizers++;
    }
  }
  const json_t *ann = json_object_get(meta, "annotations");
  d->breaker_triggered = json_object_get(ann, EVS_BREAKER_TRIGGERED_ANNOTATION) != NULL;
  const char *bs = json_string_value(json_object_get(ann, EVS_BREAKER_STATE_ANNOTATION));
  if (bs && (d->breaker_state = strdup(bs)) == NULL) {
    evs_registry_decoded_free(d, NULL);
    return UV_ENOMEM;
  }
  const json_t *conds = json_object_get(status, "conditions");
  for (size_t i = 0; json_is_array(conds) && i < json_array_size(conds); i++) {
    const json_t *c = json_array_get(conds, i);
    const char *type = json_string_value(json_object_get(c, "type"));
    const char *cs = json_string_value(json_object_get(c, "status"));
    const char *reason = json_string_value(json_object_get(c, "reason"));
    if (type && strcmp(type, "Paused") == 0)
      d->was_paused = (cs && strcmp(cs, "True") == 0) ||
                      (reason && strcmp(reason, "ScaledObjectUnpaused") == 0);
  }
  const json_t *orc = json_object_get(status, "originalReplicaCount");
  if (json_is_integer(orc) && json_integer_value(orc) >= 0 && json_integer_value(orc) <= INT32_MAX)
    d->original_replicas = (int32_t)json_integer_value(orc);

  evs_doc_t *doc = NULL;
  evs_diag_t diag, warn;
  evs_diag_init(&diag);
  evs_diag_init(&warn);
  int rc = evs_doc_from_jansson(obj, NULL, &doc);
  if (rc == 0)
    rc = evs_so_parse_mode(evs_doc_root(doc), NULL, EVS_SO_API, &d->so, &diag, &warn);
  char buf[1024];
  for (size_t i = 0; i < warn.n; i++) {
    evs_diag_format(&warn, i, buf, sizeof buf);
    EVS_LOG_WARN("ScaledObject field not known to evscale; ignored", EVS_KV_STR("warning", buf));
  }
  if (rc != 0) {
    /* KEDA's text for a failed check, then the first problem (naming the field). */
    if (diag.n)
      evs_diag_format(&diag, 0, buf, sizeof buf);
    else
      snprintf(buf, sizeof buf, "%s", evs_strerror(rc));
    char msg[1200];
    snprintf(msg, sizeof msg, "ScaledObject doesn't have correct specification: %s", buf);
    d->check_error = strdup(msg);
    d->so = NULL;
    if (d->check_error == NULL && rc == UV_ENOMEM) {
      evs_diag_free(&diag);
      evs_diag_free(&warn);
      evs_doc_free(doc);
      evs_registry_decoded_free(d, NULL);
      return UV_ENOMEM;
    }
  }
  evs_diag_free(&diag);
  evs_diag_free(&warn);
  evs_doc_free(doc);
  *out = d;
  return 0;
}

void evs_registry_decoded_free(void *data, void *arg) {
  (void)arg;
  evs_registry_decoded_t *d = data;
  if (d == NULL)
    return;
  evs_so_free(d->so);
  free(d->check_error);
  free(d->breaker_state);
  evs__strv_free(d->finalizers, d->n_finalizers);
  free(d);
}
