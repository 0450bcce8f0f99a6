/* See include/evscale/events.h. */
#include "evscale/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "evscale/error.h"
#include "evscale/log.h"

#define DEF_WINDOW_MS (6 * 60 * 1000) /* tools/events finishTime */
#define DEF_PATCH_MS (60 * 1000)      /* see the header */
#define DEF_SPAM_BURST 25             /* tools/record defaultSpamBurst */
#define DEF_SPAM_QPS (1.0 / 300.0)    /* tools/record defaultSpamQPS */
#define DEF_LRU 4096                  /* tools/record maxLruCacheEntries */
#define DEF_INFLIGHT 32
#define MAX_REASON 128 /* events.k8s.io validation: reason, action, reportingInstance */
#define MAX_NOTE 1024  /* events.k8s.io validation: note */

/* ---- a bounded LRU of string keys (hash chains + a recency list) ---- */

typedef struct {
  evs_events_node_t **b;
  size_t nb, n, max;
  evs_list_t lru; /* most recent first */
  void (*free_node)(evs_events_node_t *nd, void *arg);
  void *arg;
} lru_t;

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static int lru_init(lru_t *l, size_t max, void (*free_node)(evs_events_node_t *, void *),
                    void *arg) {
  size_t nb = 16;
  while (nb < max)
    nb *= 2;
  l->b = calloc(nb, sizeof *l->b);
  if (l->b == NULL)
    return UV_ENOMEM;
  l->nb = nb;
  l->n = 0;
  l->max = max;
  l->free_node = free_node;
  l->arg = arg;
  evs_list_init(&l->lru);
  return 0;
}

static evs_events_node_t *lru_get(lru_t *l, const char *key) {
  uint64_t h = fnv1a(key);
  for (evs_events_node_t *nd = l->b[h & (l->nb - 1)]; nd != NULL; nd = nd->next)
    if (nd->hash == h && strcmp(nd->key, key) == 0) {
      evs_list_remove(&nd->lru);
      evs_list_push_front(&l->lru, &nd->lru);
      return nd;
    }
  return NULL;
}

static void lru_remove(lru_t *l, evs_events_node_t *nd) {
  evs_events_node_t **pp = &l->b[nd->hash & (l->nb - 1)];
  while (*pp != nd)
    pp = &(*pp)->next;
  *pp = nd->next;
  evs_list_remove(&nd->lru);
  l->n--;
  free(nd->key);
  l->free_node(nd, l->arg);
}

/* Links a new node (key owned by it) at the front, evicting the least recent at the bound. */
static void lru_add(lru_t *l, evs_events_node_t *nd, char *key) {
  while (l->n >= l->max && !evs_list_empty(&l->lru))
    lru_remove(l, evs_container_of(l->lru.prev, evs_events_node_t, lru));
  nd->key = key;
  nd->hash = fnv1a(key);
  evs_events_node_t **head = &l->b[nd->hash & (l->nb - 1)];
  nd->next = *head;
  *head = nd;
  evs_list_push_front(&l->lru, &nd->lru);
  l->n++;
}

static void lru_clear(lru_t *l) {
  while (!evs_list_empty(&l->lru))
    lru_remove(l, evs_container_of(l->lru.next, evs_events_node_t, lru));
  free(l->b);
  l->b = NULL;
}

/* ---- the pure core ---- */

typedef struct {
  evs_events_node_t node;
  evs_ratelimit_bucket_t bucket;
} spam_t;

struct evs_events_cache_s {
  evs_events_limits_t lim;
  lru_t series, spam;
  void (*on_evict)(evs_events_entry_t *e, void *arg); /* the loop part detaches its request */
  void *evict_arg;
};

static void free_series(evs_events_node_t *nd, void *arg) {
  evs_events_cache_t *c = arg;
  evs_events_entry_t *e = evs_container_of(nd, evs_events_entry_t, node);
  if (c->on_evict != NULL)
    c->on_evict(e, c->evict_arg);
  free(e);
}

static void free_spam(evs_events_node_t *nd, void *arg) {
  (void)arg;
  free(evs_container_of(nd, spam_t, node));
}

evs_events_cache_t *evs_events_cache_new(const evs_events_limits_t *limits) {
  evs_events_cache_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  if (limits != NULL)
    c->lim = *limits;
  if (c->lim.window_ms == 0)
    c->lim.window_ms = DEF_WINDOW_MS;
  if (c->lim.patch_interval_ms == 0)
    c->lim.patch_interval_ms = DEF_PATCH_MS;
  if (c->lim.spam_burst == 0)
    c->lim.spam_burst = DEF_SPAM_BURST;
  if (c->lim.spam_qps <= 0)
    c->lim.spam_qps = DEF_SPAM_QPS;
  if (c->lim.lru_max == 0)
    c->lim.lru_max = DEF_LRU;
  if (lru_init(&c->series, c->lim.lru_max, free_series, c) != 0 ||
      lru_init(&c->spam, c->lim.lru_max, free_spam, c) != 0) {
    free(c->series.b);
    free(c);
    return NULL;
  }
  return c;
}

void evs_events_cache_free(evs_events_cache_t *c) {
  if (c == NULL)
    return;
  lru_clear(&c->series);
  lru_clear(&c->spam);
  free(c);
}

size_t evs_events_cache_size(const evs_events_cache_t *c) { return c->series.n; }

/* Length of s cut to at most max bytes without splitting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n <= max)
    return n;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
    max--;
  return max;
}

static const char *type_name(evs_event_type_t t) {
  return t == EVS_EVENT_WARNING ? "Warning" : "Normal";
}

static const char *action_of(const evs_event_t *e) {
  return e->action != NULL && e->action[0] != '\0' ? e->action : e->reason;
}

/* getEventKey / getSpamKey: the fields joined by a separator no Kubernetes name contains. */
static char *make_key(const evs_event_t *e, int spam) {
  const char *msg = e->message ? e->message : "";
  const char *act = action_of(e);
  size_t len = strlen(e->ns) + strlen(e->name) + strlen(e->uid) + strlen(e->reason) + strlen(act) +
               strlen(msg) + 32;
  char *k = malloc(len);
  if (k == NULL)
    return NULL;
  if (spam)
    snprintf(k, len, "%s\x1f%s\x1f%s\x1f%s", e->ns, e->name, e->uid, type_name(e->type));
  else
    snprintf(k, len, "%s\x1f%s\x1f%s\x1f%s\x1f%.*s\x1f%.*s\x1f%.*s", e->ns, e->name, e->uid,
             type_name(e->type), (int)utf8_cut(e->reason, MAX_REASON), e->reason,
             (int)utf8_cut(act, MAX_REASON), act, (int)utf8_cut(msg, MAX_NOTE), msg);
  return k;
}

/* The spam filter's token for the object (EventSourceObjectSpamFilter.Filter): 1 taken. */
static int spam_take(evs_events_cache_t *c, const char *spam_key, uint64_t now_ms) {
  evs_events_node_t *nd = lru_get(&c->spam, spam_key);
  spam_t *s;
  if (nd != NULL) {
    s = evs_container_of(nd, spam_t, node);
  } else {
    char *k = strdup(spam_key);
    s = calloc(1, sizeof *s);
    if (s == NULL || k == NULL) {
      free(s);
      free(k);
      return 0; /* out of memory: nothing is sent, which is the safe side */
    }
    evs_ratelimit_bucket_init(&s->bucket, c->lim.spam_qps, c->lim.spam_burst, now_ms);
    lru_add(&c->spam, &s->node, k);
  }
  return evs_ratelimit_bucket_take(&s->bucket, now_ms);
}

static int spam_take_for(evs_events_cache_t *c, const evs_events_entry_t *en, uint64_t now_ms) {
  /* The series key starts with the spam key's first three fields; the type follows. */
  const char *k = en->node.key;
  const char *p = k;
  for (int i = 0; i < 4 && p != NULL; i++)
    p = strchr(p, '\x1f') ? strchr(p, '\x1f') + 1 : NULL;
  size_t n = p != NULL ? (size_t)(p - k - 1) : strlen(k);
  char *sk = strndup(k, n);
  if (sk == NULL)
    return 0;
  int ok = spam_take(c, sk, now_ms);
  free(sk);
  return ok;
}

int evs_events_decide(evs_events_cache_t *c, const evs_event_t *e, uint64_t now_ms,
                      evs_events_entry_t **out) {
  if (out != NULL)
    *out = NULL;
  if (c == NULL || e == NULL || e->ns == NULL || e->name == NULL || e->uid == NULL ||
      e->reason == NULL || !e->ns[0] || !e->name[0] || !e->uid[0] || !e->reason[0])
    return UV_EINVAL;
  char *key = make_key(e, 0);
  if (key == NULL)
    return UV_ENOMEM;
  evs_events_node_t *nd = lru_get(&c->series, key);
  evs_events_entry_t *en = nd ? evs_container_of(nd, evs_events_entry_t, node) : NULL;
  if (en != NULL && en->inflight == NULL && now_ms - en->last_ms > c->lim.window_ms) {
    /* The series ended (finishSeries): this occurrence starts a new Event. */
    lru_remove(&c->series, &en->node);
    en = NULL;
  }
  if (en != NULL) {
    free(key);
    en->count++;
    en->last_ms = now_ms;
    if (out != NULL)
      *out = en;
    return evs_events_flush_due(c, en, now_ms);
  }
  char *sk = make_key(e, 1);
  int ok = sk != NULL && spam_take(c, sk, now_ms);
  free(sk);
  if (!ok) {
    free(key);
    return EVS_EVENTS_DROP;
  }
  en = calloc(1, sizeof *en);
  if (en == NULL) {
    free(key);
    return UV_ENOMEM;
  }
  en->count = 1;
  en->sent_count = 1;
  en->first_ms = en->last_ms = en->last_send_ms = now_ms;
  lru_add(&c->series, &en->node, key);
  if (out != NULL)
    *out = en;
  return EVS_EVENTS_SEND;
}

evs_events_verdict_t evs_events_flush_due(evs_events_cache_t *c, evs_events_entry_t *en,
                                          uint64_t now_ms) {
  if (en->count <= en->sent_count || !en->created || en->inflight != NULL ||
      now_ms - en->last_send_ms < c->lim.patch_interval_ms || !spam_take_for(c, en, now_ms))
    return EVS_EVENTS_COUNTED;
  en->sent_count = en->count;
  en->last_send_ms = now_ms;
  return EVS_EVENTS_PATCH;
}

void evs_events_forget(evs_events_cache_t *c, evs_events_entry_t *en) {
  lru_remove(&c->series, &en->node);
}

/* ---- bodies ---- */

/* metav1.Time (RFC 3339, seconds) or metav1.MicroTime (6 fractional digits), UTC. */
static void fmt_time(char *buf, size_t cap, int64_t wall_ms, int micro) {
  time_t s = (time_t)(wall_ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  if (micro)
    snprintf(buf + n, cap - n, ".%06dZ", (int)(wall_ms % 1000) * 1000);
  else
    snprintf(buf + n, cap - n, "Z");
}

static int is_events_v1(const char *gv) {
  return gv != NULL && strcmp(gv, "events.k8s.io/v1") == 0;
}

static json_t *object_ref(const evs_event_t *e) {
  return json_pack("{s:s, s:s, s:s, s:s, s:s}", "apiVersion", "keda.sh/v1alpha1", "kind",
                   "ScaledObject", "namespace", e->ns, "name", e->name, "uid", e->uid);
}

char *evs_events_create_body(const char *gv, const char *controller, const char *instance,
                             const evs_event_t *e, const char *name, int64_t first_wall_ms,
                             int64_t last_wall_ms, uint32_t count) {
  const char *msg = e->message ? e->message : "";
  const char *act = action_of(e);
  json_t *reason = json_stringn(e->reason, utf8_cut(e->reason, MAX_REASON));
  json_t *action = json_stringn(act, utf8_cut(act, MAX_REASON));
  json_t *note = json_stringn(msg, utf8_cut(msg, MAX_NOTE));
  json_t *inst = json_stringn(instance, utf8_cut(instance, MAX_REASON));
  char first[40], last[40];
  json_t *o;
  if (is_events_v1(gv)) {
    fmt_time(first, sizeof first, first_wall_ms, 1);
    fmt_time(last, sizeof last, last_wall_ms, 1);
    o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:s}", "apiVersion",
                  "events.k8s.io/v1", "kind", "Event", "metadata", "name", name, "namespace", e->ns,
                  "eventTime", first, "reportingController", controller, "reportingInstance", inst,
                  "action", action, "reason", reason, "regarding", object_ref(e), "note", note,
                  "type", type_name(e->type));
    /* A series recreated after a 404 keeps its count (recordEvent creates the series). */
    if (o != NULL && count >= 2)
      json_object_set_new(
          o, "series",
          json_pack("{s:i, s:s}", "count", (json_int_t)count, "lastObservedTime", last));
  } else {
    fmt_time(first, sizeof first, first_wall_ms, 0);
    fmt_time(last, sizeof last, last_wall_ms, 0);
    o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:o, s:o, s:{s:s}, s:s, s:s, s:i, s:s, s:s, s:o, "
                  "s:o}",
                  "apiVersion", "v1", "kind", "Event", "metadata", "name", name, "namespace", e->ns,
                  "involvedObject", object_ref(e), "reason", reason, "message", note, "source",
                  "component", controller, "firstTimestamp", first, "lastTimestamp", last, "count",
                  (json_int_t)count, "type", type_name(e->type), "reportingComponent", controller,
                  "reportingInstance", inst, "action", action);
  }
  char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

char *evs_events_patch_body(const char *gv, int64_t last_wall_ms, uint32_t count) {
  char t[40];
  fmt_time(t, sizeof t, last_wall_ms, is_events_v1(gv));
  json_t *o =
      is_events_v1(gv)
          ? json_pack("{s:{s:i, s:s}}", "series", "count", (json_int_t)count, "lastObservedTime", t)
          : json_pack("{s:i, s:s}", "count", (json_int_t)count, "lastTimestamp", t);
  char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

/* ---- on the loop ---- */

typedef struct {
  evs_list_t link;
  evs_events_t *ev;
  evs_events_entry_t *entry; /* NULL once the entry was evicted */
  evs_kube_req_t *req;
  int patch, retried;
  uint32_t count;
  char *path, *body;
} send_t;

struct evs_events_s {
  uv_loop_t *loop;
  evs_kube_t *kube;
  evs_events_cache_t *cache;
  char *gv, *instance;
  unsigned max_inflight, n_inflight;
  evs_list_t inflight;
  uv_timer_t flush;
  evs_events_stats_t stats;
  int closing;
  void (*close_cb)(void *);
  void *close_arg;
};

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_evict(evs_events_entry_t *en, void *arg) {
  (void)arg;
  send_t *s = en->inflight;
  if (s != NULL)
    s->entry = NULL; /* the answer then updates nothing */
}

static void send_free(send_t *s) {
  evs_list_remove(&s->link);
  s->ev->n_inflight--;
  if (s->entry != NULL)
    s->entry->inflight = NULL;
  free(s->path);
  free(s->body);
  free(s);
}

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                    void *arg);

static int send_start(send_t *s) {
  evs_kube_request_opts_t o = {.verb = s->patch ? "PATCH" : "POST",
                               .path = s->path,
                               .resource = "events",
                               .content_type = s->patch ? EVS_KUBE_MERGE_PATCH : EVS_KUBE_JSON,
                               .body = s->body,
                               .body_len = strlen(s->body),
                               .priority = EVS_PRIO_LOW,
                               .on_done = on_done,
                               .arg = s};
  return evs_kube_request(s->ev->kube, &o, &s->req);
}

static const char *events_prefix(const char *gv) {
  return is_events_v1(gv) ? "/apis/events.k8s.io/v1" : "/api/v1";
}

/* The occurrence a series stands for, split from a copy of its key (ns, name, uid, type, reason,
 * action, message, as make_key joins them). buf is a new string the fields point into. */
static int entry_event(const evs_events_entry_t *en, evs_event_t *e, char **buf) {
  char *k = strdup(en->node.key), *f[7] = {0};
  if (k == NULL)
    return UV_ENOMEM;
  char *p = k;
  for (int i = 0; i < 7 && p != NULL; i++) {
    f[i] = p;
    p = i < 6 ? strchr(p, '\x1f') : NULL;
    if (p != NULL)
      *p++ = '\0';
  }
  if (f[6] == NULL) {
    free(k);
    return UV_EINVAL;
  }
  *e = (evs_event_t){.ns = f[0],
                     .name = f[1],
                     .uid = f[2],
                     .type = strcmp(f[3], "Warning") == 0 ? EVS_EVENT_WARNING : EVS_EVENT_NORMAL,
                     .reason = f[4],
                     .action = f[5],
                     .message = f[6]};
  *buf = k;
  return 0;
}

/* Sends a create (patch 0) or a count update for the entry. 0 or an error (nothing sent). */
static int send_entry(evs_events_t *ev, evs_events_entry_t *en, int patch) {
  if (ev->n_inflight >= ev->max_inflight)
    return UV_EBUSY;
  evs_event_t e;
  char *fields = NULL;
  int rc = entry_event(en, &e, &fields);
  send_t *s = rc == 0 ? calloc(1, sizeof *s) : NULL;
  if (s == NULL) {
    free(fields);
    return rc != 0 ? rc : UV_ENOMEM;
  }
  s->ev = ev;
  s->patch = patch;
  s->count = en->count;
  size_t plen = strlen(e.ns) + strlen(en->name) + 64;
  s->path = malloc(plen);
  if (s->path != NULL)
    snprintf(s->path, plen, "%s/namespaces/%s/events%s%s", events_prefix(ev->gv), e.ns,
             patch ? "/" : "", patch ? en->name : "");
  int64_t now = wall_ms();
  s->body = patch ? evs_events_patch_body(ev->gv, now, en->count)
                  : evs_events_create_body(ev->gv, EVS_EVENTS_CONTROLLER, ev->instance, &e,
                                           en->name, en->first_wall_ms, now, en->count);
  free(fields);
  rc = s->path != NULL && s->body != NULL ? 0 : UV_ENOMEM;
  evs_list_push_back(&ev->inflight, &s->link);
  ev->n_inflight++;
  if (rc == 0)
    rc = send_start(s);
  if (rc != 0) {
    send_free(s);
    return rc;
  }
  s->entry = en;
  en->inflight = s;
  return 0;
}

/* metadata.name of a new Event: client-go's GenerateEventName, "<object>.<unix nanos in hex>",
 * the object's name cut so the whole stays a DNS subdomain (253). */
static void event_name(evs_events_entry_t *en, const char *obj) {
  static unsigned seq; /* two Events in the same nanosecond still get two names */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long long ns =
      (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
  char tmp[254];
  snprintf(tmp, sizeof tmp, "%s", obj); /* obj may be en->name itself */
  snprintf(en->name, sizeof en->name, "%.*s.%llx", 253 - 17, tmp, ns + (seq++ & 0xff));
}

static int retryable(int err, const evs_http_response_t *resp) {
  if (err != 0)
    return err != EVS_ECANCELED;
  return resp->status == 429 || resp->status >= 500;
}

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                    void *arg) {
  (void)req;
  send_t *s = arg;
  evs_events_t *ev = s->ev;
  evs_events_entry_t *en = s->entry;
  int status = resp != NULL ? resp->status : 0;
  if (err == 0 && status >= 200 && status < 300) {
    if (s->patch)
      ev->stats.patched++;
    else
      ev->stats.created++;
    if (en != NULL)
      en->created = 1;
    send_free(s);
    return;
  }
  if (err == EVS_ECANCELED || ev->closing) {
    send_free(s);
    return;
  }
  if (!s->retried && retryable(err, resp)) {
    s->retried = 1;
    ev->stats.retried++;
    if (send_start(s) == 0)
      return;
  }
  char why[160];
  if (resp != NULL)
    evs_kube_status_message(resp, why, sizeof why);
  else
    snprintf(why, sizeof why, "%s", msg != NULL ? msg : evs_strerror(err));
  if (s->patch && status == 404 && en != NULL) {
    /* The Event expired (or was deleted): create it again with the series' count. */
    en->inflight = NULL;
    s->entry = NULL;
    send_free(s);
    char *dot = strrchr(en->name, '.');
    if (dot != NULL)
      *dot = '\0';
    event_name(en, en->name);
    en->created = 0;
    if (send_entry(ev, en, 0) != 0) {
      ev->stats.dropped++;
      evs_events_forget(ev->cache, en);
    }
    return;
  }
  /* A 403 is a ClusterRole without create/patch on events: worth the operator's eye (the spam
   * filter bounds how often); the rest (a namespace being deleted, a server busy) is routine. */
  EVS_LOG(status == 403 ? EVS_LOG_WARN : EVS_LOG_DEBUG, "kubernetes event not recorded",
          EVS_KV_STR("path", s->path), EVS_KV_INT("status", status), EVS_KV_STR("error", why));
  ev->stats.dropped++;
  if (en != NULL && !s->patch) {
    en->inflight = NULL;
    s->entry = NULL;
    evs_events_forget(ev->cache, en); /* the next occurrence creates it again */
  }
  send_free(s);
}

/* Every patch_interval: the counts left over by occurrences that came too soon after a request. */
static void on_flush(uv_timer_t *t) {
  evs_events_t *ev = evs_container_of(t, evs_events_t, flush);
  uint64_t now = uv_now(ev->loop);
  evs_list_foreach_safe(it, &ev->cache->series.lru) {
    evs_events_entry_t *en =
        evs_container_of(evs_container_of(it, evs_events_node_t, lru), evs_events_entry_t, node);
    if (evs_events_flush_due(ev->cache, en, now) == EVS_EVENTS_PATCH && send_entry(ev, en, 1) != 0)
      en->sent_count = 0; /* not sent: due again at the next tick */
  }
}

int evs_events_new(uv_loop_t *loop, evs_kube_t *kube, const evs_events_options_t *o,
                   evs_events_t **out) {
  *out = NULL;
  if (loop == NULL || kube == NULL || o == NULL || o->instance == NULL || !o->instance[0])
    return UV_EINVAL;
  evs_events_t *ev = calloc(1, sizeof *ev);
  if (ev == NULL)
    return UV_ENOMEM;
  ev->loop = loop;
  ev->kube = kube;
  ev->gv = strdup(o->group_version != NULL && o->group_version[0] ? o->group_version : "v1");
  ev->instance = strdup(o->instance);
  ev->cache = evs_events_cache_new(&o->limits);
  ev->max_inflight = o->max_inflight ? o->max_inflight : DEF_INFLIGHT;
  evs_list_init(&ev->inflight);
  if (ev->gv == NULL || ev->instance == NULL || ev->cache == NULL) {
    evs_events_cache_free(ev->cache);
    free(ev->gv);
    free(ev->instance);
    free(ev);
    return UV_ENOMEM;
  }
  ev->cache->on_evict = on_evict;
  uv_timer_init(loop, &ev->flush);
  uint64_t iv = ev->cache->lim.patch_interval_ms;
  uv_timer_start(&ev->flush, on_flush, iv, iv);
  uv_unref((uv_handle_t *)&ev->flush); /* Events alone never keep the process running */
  *out = ev;
  return 0;
}

int evs_events_emit(evs_events_t *ev, const evs_event_t *e) {
  if (ev == NULL)
    return UV_EINVAL;
  if (ev->closing)
    return EVS_ESTATE;
  evs_events_entry_t *en = NULL;
  int v = evs_events_decide(ev->cache, e, uv_now(ev->loop), &en);
  switch (v) {
  case EVS_EVENTS_SEND:
    en->first_wall_ms = wall_ms();
    event_name(en, e->name);
    if (send_entry(ev, en, 0) != 0) {
      ev->stats.dropped++;
      evs_events_forget(ev->cache, en);
      return EVS_EVENTS_DROP;
    }
    break;
  case EVS_EVENTS_PATCH:
    ev->stats.aggregated++;
    if (send_entry(ev, en, 1) != 0)
      en->sent_count = 0; /* the flush timer sends it */
    break;
  case EVS_EVENTS_COUNTED:
    ev->stats.aggregated++;
    break;
  case EVS_EVENTS_DROP:
    ev->stats.dropped++;
    break;
  default:
    break;
  }
  return v;
}

void evs_events_stats(const evs_events_t *ev, evs_events_stats_t *out) { *out = ev->stats; }

unsigned evs_events_inflight(const evs_events_t *ev) { return ev->n_inflight; }

static void on_timer_closed(uv_handle_t *h) {
  evs_events_t *ev = evs_container_of((uv_timer_t *)h, evs_events_t, flush);
  void (*cb)(void *) = ev->close_cb;
  void *arg = ev->close_arg;
  evs_events_cache_free(ev->cache);
  free(ev->gv);
  free(ev->instance);
  free(ev);
  if (cb != NULL)
    cb(arg);
}

void evs_events_close(evs_events_t *ev, void (*cb)(void *arg), void *arg) {
  if (ev == NULL || ev->closing)
    return;
  ev->closing = 1;
  ev->close_cb = cb;
  ev->close_arg = arg;
  /* Each cancel runs on_done (EVS_ECANCELED) at once, which unlinks and frees the request. */
  while (!evs_list_empty(&ev->inflight))
    evs_kube_cancel(evs_container_of(ev->inflight.next, send_t, link)->req);
  uv_close((uv_handle_t *)&ev->flush, on_timer_closed);
}
