/* See include/evscale/status.h. */
#include "evscale/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evscale/buf.h"
#include "evscale/error.h"
#include "evscale/list.h"

/* ---- the builder ---- */

static const char *const COND_TYPES[EVS_STATUS__NCOND] = {"Ready", "Active", "Fallback", "Paused"};
static const char *const COND_STATUS[] = {"False", "True", "Unknown"};

/* KEDA's GetInitializedConditions (condition_types.go): Ready, Active and Fallback Unknown,
 * Paused False, no reasons. */
enum { C_FALSE = 0, C_TRUE = 1, C_UNKNOWN = 2 };

static const evs_status_condition_t INITIAL[EVS_STATUS__NCOND] = {
    {C_UNKNOWN, NULL, NULL},
    {C_UNKNOWN, NULL, NULL},
    {C_UNKNOWN, NULL, NULL},
    {C_FALSE, NULL, NULL},
};

static int set_new(json_t *obj, const char *key, json_t *v) {
  return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

static json_t *condition(int type, const evs_status_condition_t *c, const char *message) {
  json_t *o = json_object();
  if (o == NULL)
    return NULL;
  int rc = set_new(o, "type", json_string(COND_TYPES[type]));
  rc |= set_new(o, "status", json_string(COND_STATUS[c->status <= 2 ? c->status : 2]));
  /* omitempty: no reason/message keys when empty */
  if (c->reason != NULL && c->reason[0] != '\0')
    rc |= set_new(o, "reason", json_string(c->reason));
  if (message != NULL && message[0] != '\0')
    rc |= set_new(o, "message", json_string(message));
  if (rc != 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

static json_t *conditions(const evs_status_input_t *in) {
  evs_status_condition_t c[EVS_STATUS__NCOND];
  memcpy(c, in->has_conditions ? in->conditions : INITIAL, sizeof c);
  if (in->check_error != NULL) {
    /* scaledobject_controller.go Reconcile: a failed reconcile check. */
    c[EVS_STATUS_READY] = (evs_status_condition_t){C_FALSE, "ScaledObjectCheckFailed", NULL};
    c[EVS_STATUS_ACTIVE] =
        (evs_status_condition_t){C_UNKNOWN, "UnknownState", "ScaledObject check failed"};
    if (!in->has_fallback)
      c[EVS_STATUS_FALLBACK] = (evs_status_condition_t){
          C_FALSE, "NoFallbackFound", "No fallbacks are active on this scaled object"};
  }
  json_t *a = json_array();
  for (int i = 0; a != NULL && i < EVS_STATUS__NCOND; i++) {
    const char *msg = i == EVS_STATUS_READY && in->check_error ? in->check_error : c[i].message;
    if (json_array_append_new(a, condition(i, &c[i], msg)) != 0) {
      json_decref(a);
      return NULL;
    }
  }
  return a;
}

void evs_status_format_time(int64_t ms, char *buf, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Unique values of the triggers' type (or authenticationRef name), in order, joined by ","
 * (scaletriggers_types.go CombinedTriggersAndAuthenticationsTypes). */
static json_t *combined(const evs_status_input_t *in, int auth) {
  size_t cap = 1, len = 0;
  for (size_t i = 0; i < in->n_triggers; i++) {
    const char *v = auth ? in->triggers[i].auth_name : in->triggers[i].type;
    cap += v ? strlen(v) + 1 : 0;
  }
  char *s = malloc(cap);
  if (s == NULL)
    return NULL;
  s[0] = '\0';
  for (size_t i = 0; i < in->n_triggers; i++) {
    const char *v = auth ? in->triggers[i].auth_name : in->triggers[i].type;
    int seen = v == NULL;
    for (size_t j = 0; j < i && !seen; j++) {
      const char *u = auth ? in->triggers[j].auth_name : in->triggers[j].type;
      seen = u != NULL && strcmp(u, v) == 0;
    }
    if (!seen)
      len += (size_t)snprintf(s + len, cap - len, "%s%s", len ? "," : "", v);
  }
  json_t *j = json_string(s);
  free(s);
  return j;
}

static const char *metric(const evs_status_trigger_t *t) {
  return t->metric_name ? t->metric_name : "";
}

static int spec_fields(json_t *st, const evs_status_input_t *in) {
  int rc = 0;
  json_t *names = json_array();
  for (size_t i = 0; i < in->n_triggers; i++)
    rc |= json_array_append_new(names, json_string(metric(&in->triggers[i])));
  rc |= set_new(st, "externalMetricNames", names);
  if (in->has_activity) {
    /* scale_executor.go getTriggersActivity: keyed by external metric name */
    json_t *activity = json_object();
    for (size_t i = 0; i < in->n_triggers; i++)
      rc |= set_new(activity, metric(&in->triggers[i]),
                    json_pack("{s:b}", "isActive", in->triggers[i].active));
    rc |= set_new(st, "triggersActivity", activity);
  }
  if (in->health_reported) {
    json_t *h = json_object();
    for (size_t i = 0; i < in->n_triggers; i++)
      rc |= set_new(h, metric(&in->triggers[i]),
                    json_pack("{s:i, s:s}", "numberOfFailures", (int)in->triggers[i].failures,
                              "status", in->triggers[i].failing ? "Failing" : "Happy"));
    rc |= set_new(st, "health", h);
  }
  if (in->paused_replicas >= 0)
    rc |= set_new(st, "pausedReplicaCount", json_integer(in->paused_replicas));
  if (in->hpa_name != NULL && in->hpa_name[0] != '\0')
    rc |= set_new(st, "hpaName", json_string(in->hpa_name));
  /* KEDA writes "" when no trigger has an authenticationRef; kube-apiserver 1.20 rejects an
   * empty string in a merge patch (Invalid value "null": must be of type string), so an
   * empty list is left out instead. */
  const char *keys[] = {"triggersTypes", "authenticationsTypes"};
  for (int auth = 0; auth < 2; auth++) {
    json_t *v = combined(in, auth);
    if (v != NULL && json_string_length(v) == 0)
      json_decref(v);
    else
      rc |= set_new(st, keys[auth], v);
  }
  return rc;
}

json_t *evs_status_build(const evs_status_input_t *in) {
  if (in == NULL)
    return NULL;
  json_t *st = json_object();
  if (st == NULL)
    return NULL;
  int rc = set_new(st, "conditions", conditions(in));
  const evs_status_gvkr_t *g = &in->gvkr;
  if (g->kind != NULL && g->version != NULL) {
    const char *grp = g->group ? g->group : "";
    char kind[512];
    snprintf(kind, sizeof kind, "%s/%s.%s", grp, g->version, g->kind); /* GVKString */
    rc |= set_new(st, "scaleTargetKind", json_string(kind));
    rc |= set_new(st, "scaleTargetGVKR",
                  json_pack("{s:s, s:s, s:s, s:s}", "group", grp, "version", g->version, "kind",
                            g->kind, "resource", g->resource ? g->resource : ""));
  }
  if (in->original_replicas >= 0)
    rc |= set_new(st, "originalReplicaCount", json_integer(in->original_replicas));
  if (in->last_active_ms > 0) {
    char t[32];
    evs_status_format_time(in->last_active_ms, t, sizeof t);
    rc |= set_new(st, "lastActiveTime", json_string(t));
  }
  if (in->has_spec)
    rc |= spec_fields(st, in);
  if (rc != 0) {
    json_decref(st);
    return NULL;
  }
  return st;
}

int64_t evs_status_last_active(int64_t written_ms, int was_active, int is_active,
                               int64_t decision_ms) {
  if (written_ms <= 0 || was_active != is_active)
    return decision_ms;
  if (decision_ms - written_ms >= 60000)
    return decision_ms;
  return written_ms;
}

/* ---- the patcher ---- */

/* What the patcher keeps per ScaledObject. The status last sent is kept only as its skeleton
 * (its keys, nested; see skeleton_of), not as a JSON tree: a merge patch needs the keys the old
 * status had to null those the new one lacks, never their values. The tree was ~7.8 KB per
 * object in jansson (issue 13's memory goal: ~2 KB per object for everything).
 *
 * An object whose status must be written while max_in_flight patches are out waits in the
 * patcher's FIFO as this entry alone, without a body (issue 13: at the initial sync every object
 * needs a write at once, and 10,000 queued requests with their bodies were most of the peak);
 * its body is built when its turn comes, from what the provider says is its status then. */
typedef struct entry_s {
  struct entry_s *next;  /* hash chain */
  struct entry_s *qnext; /* the FIFO of the entries waiting for a slot */
  evs_status_patcher_t *p;
  uint64_t hash;  /* of the last status sent (in flight or written); 0 = none */
  uint64_t phash; /* of path: the bucket, kept for growing the table */
  char *skeleton; /* that status's keys (NULL = none) */
  int64_t last_active_written;
  uint8_t was_active;
  uint8_t wants;     /* a write waits: in the FIFO, or for this object's own patch to end */
  uint8_t linked;    /* in the FIFO */
  uint8_t dead;      /* forgotten while in the FIFO: out of the table, freed when popped */
  uint8_t forgotten; /* forgotten while its patch is in flight: freed when it ends */
  evs_kube_req_t *req;
  evs_status_cb cb, qcb; /* the patch in flight's, the waiting update's */
  void *arg, *qarg;
  char path[]; /* /apis/keda.sh/v1alpha1/namespaces/<ns>/scaledobjects/<name>/status */
} entry_t;

struct evs_status_patcher_s {
  evs_kube_t *kube;
  int dry_run, closing, pumping;
  uint64_t sent;
  unsigned max_in_flight, in_flight;
  entry_t *qhead, *qtail; /* the FIFO */
  entry_t *granted;       /* the entry whose turn it is, while the provider runs */
  evs_status_provide_cb provide;
  void *provide_arg;
  entry_t **buckets; /* power of two; grows with the objects (50,000 in one process) */
  size_t nbuckets, n;
};

int evs_status_patcher_new(evs_kube_t *kube, const evs_status_patcher_options_t *opts,
                           evs_status_patcher_t **out) {
  if (kube == NULL || out == NULL)
    return UV_EINVAL;
  evs_status_patcher_t *p = calloc(1, sizeof *p);
  if (p == NULL)
    return UV_ENOMEM;
  p->kube = kube;
  p->dry_run = opts != NULL && opts->dry_run;
  p->max_in_flight =
      opts != NULL && opts->max_in_flight > 0 ? opts->max_in_flight : EVS_STATUS_MAX_IN_FLIGHT;
  p->nbuckets = 256;
  p->buckets = calloc(p->nbuckets, sizeof *p->buckets);
  if (p->buckets == NULL) {
    free(p);
    return UV_ENOMEM;
  }
  *out = p;
  return 0;
}

/* FNV-1a, 64 bits: a change detector, not a defence (the input is our own output). */
static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h ? h : 1;
}

static int make_path(char *buf, size_t cap, const char *ns, const char *name) {
  if (ns == NULL || name == NULL || !ns[0] || !name[0] || strpbrk(ns, "/?#% ") ||
      strpbrk(name, "/?#% "))
    return UV_EINVAL;
  int n =
      snprintf(buf, cap, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/%s/status", ns, name);
  return n < 0 || (size_t)n >= cap ? UV_EINVAL : 0;
}

static entry_t **slot(evs_status_patcher_t *p, const char *path, uint64_t h) {
  entry_t **e = &p->buckets[h & (p->nbuckets - 1)];
  while (*e != NULL && strcmp((*e)->path, path) != 0)
    e = &(*e)->next;
  return e;
}

/* Doubles the table when it holds more entries than buckets (a failed allocation keeps the
 * longer chains: slower, still correct). */
static void grow(evs_status_patcher_t *p) {
  if (p->n <= p->nbuckets)
    return;
  size_t nb = p->nbuckets * 2;
  entry_t **b = calloc(nb, sizeof *b);
  if (b == NULL)
    return;
  for (size_t i = 0; i < p->nbuckets; i++) {
    for (entry_t *e = p->buckets[i], *next; e != NULL; e = next) {
      next = e->next;
      e->next = b[e->phash & (nb - 1)];
      b[e->phash & (nb - 1)] = e;
    }
  }
  free(p->buckets);
  p->buckets = b;
  p->nbuckets = nb;
}

/* ---- the skeleton of a status: its object keys, nested ----
 * Each key is a tag and the key: tag 'L' or 'O' then its length (2 bytes, little-endian) and its
 * bytes; tag 'l' or 'o' then one byte, the index of a key of ours in SKEL_KEYS (most keys are
 * ours; the others are metric names, copied as bytes so any is kept exactly). 'L'/'l': a member
 * whose value is not an object; 'O'/'o': an object member, followed by its own members and an
 * 'E'. The whole status ends with 'E'. A key longer than 65535 bytes cannot occur (the status
 * is ours). A one-trigger object's skeleton is ~40 B instead of ~270 with every key spelt. */

static const char *const SKEL_KEYS[] = {"authenticationsTypes",
                                        "conditions",
                                        "externalMetricNames",
                                        "group",
                                        "health",
                                        "hpaName",
                                        "isActive",
                                        "kind",
                                        "lastActiveTime",
                                        "message",
                                        "numberOfFailures",
                                        "originalReplicaCount",
                                        "pausedReplicaCount",
                                        "reason",
                                        "resource",
                                        "scaleTargetGVKR",
                                        "scaleTargetKind",
                                        "status",
                                        "triggersActivity",
                                        "triggersTypes",
                                        "type",
                                        "version"};
#define SKEL_NKEYS (sizeof SKEL_KEYS / sizeof SKEL_KEYS[0])

typedef struct {
  char *b;
  size_t n, cap;
  int failed;
} skel_buf_t;

static void skel_put(skel_buf_t *s, const void *p, size_t n) {
  if (s->failed || evs_buf_reserve((void **)&s->b, &s->cap, s->n + n, 1, 64) != 0) {
    s->failed = 1;
    return;
  }
  memcpy(s->b + s->n, p, n);
  s->n += n;
}

static void skel_of(skel_buf_t *s, json_t *obj) {
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    int is_obj = json_is_object(v);
    size_t i = 0;
    while (i < SKEL_NKEYS && strcmp(SKEL_KEYS[i], k) != 0)
      i++;
    if (i < SKEL_NKEYS) {
      unsigned char h[2] = {is_obj ? 'o' : 'l', (unsigned char)i};
      skel_put(s, h, 2);
    } else {
      size_t len = strlen(k);
      if (len > 0xffff) {
        s->failed = 1;
        return;
      }
      unsigned char h[3] = {is_obj ? 'O' : 'L', (unsigned char)(len & 0xff),
                            (unsigned char)(len >> 8)};
      skel_put(s, h, 3);
      skel_put(s, k, len);
    }
    if (is_obj)
      skel_of(s, v);
  }
  skel_put(s, "E", 1);
}

/* The skeleton of a status object (a new string), or NULL when out of memory. */
static char *skeleton_of(json_t *st) {
  skel_buf_t s = {0};
  skel_of(&s, st);
  if (s.failed) {
    free(s.b);
    return NULL;
  }
  char *out = realloc(s.b, s.n); /* exactly its size: one per object */
  return out ? out : s.b;
}

/* The key at c: its bytes and length, whether it holds an object; returns what follows. */
static const char *skel_key(const char *c, const char **k, size_t *len, int *is_obj) {
  char tag = *c;
  *is_obj = tag == 'O' || tag == 'o';
  if (tag == 'l' || tag == 'o') {
    *k = SKEL_KEYS[(unsigned char)c[1]];
    *len = strlen(*k);
    return c + 2;
  }
  *len = (unsigned char)c[1] | (size_t)(unsigned char)c[2] << 8;
  *k = c + 3;
  return c + 3 + *len;
}

/* Past the members of one object in a skeleton (at its first member) and its 'E'. */
static const char *skel_skip(const char *c) {
  while (*c != 'E') {
    const char *k;
    size_t len;
    int is_obj;
    c = skel_key(c, &k, &len, &is_obj);
    if (is_obj)
      c = skel_skip(c);
  }
  return c + 1;
}

/* Into patch (a copy of new), null for every key the old status had that new lacks, in every
 * object both have (RFC 7386: a merge patch merges objects and replaces everything else).
 * Returns the skeleton past this object's 'E'. */
static const char *skel_diff(const char *c, json_t *new, json_t *patch) {
  char key[256];
  while (*c != 'E') {
    const char *k;
    size_t len;
    int is_obj;
    c = skel_key(c, &k, &len, &is_obj);
    json_t *nv = NULL;
    char *heap = NULL;
    const char *kz = key;
    if (len < sizeof key) {
      memcpy(key, k, len);
      key[len] = 0;
    } else if ((heap = strndup(k, len)) != NULL) {
      kz = heap;
    } else {
      kz = NULL;
    }
    if (kz != NULL) {
      nv = json_object_get(new, kz);
      if (nv == NULL)
        json_object_set_new(patch, kz, json_null());
    }
    if (is_obj) {
      if (nv != NULL && json_is_object(nv))
        c = skel_diff(c, nv, json_object_get(patch, kz));
      else
        c = skel_skip(c);
    }
    free(heap);
  }
  return c + 1;
}

/* The merge patch from the status whose skeleton is `old` (NULL: none) to `new`. */
static json_t *merge_diff(const char *old, json_t *new) {
  json_t *d = json_deep_copy(new);
  if (d != NULL && old != NULL)
    (void)skel_diff(old, new, d);
  return d;
}

/* A 64-bit hash of a status tree, walked in its insertion order (jansson keeps it; the builder
 * inserts in one order), instead of dumping it to text just to hash that: every update of every
 * object builds its status to see whether it changed. */
static uint64_t fnv_add(uint64_t h, const void *s, size_t n) {
  const unsigned char *c = s;
  for (size_t i = 0; i < n; i++)
    h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

static uint64_t tree_hash(uint64_t h, json_t *v) {
  unsigned char tag = (unsigned char)json_typeof(v);
  h = fnv_add(h, &tag, 1);
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m) {
      h = fnv_add(h, k, strlen(k) + 1);
      h = tree_hash(h, m);
    }
    return fnv_add(h, "}", 1);
  }
  case JSON_ARRAY:
    for (size_t i = 0; i < json_array_size(v); i++)
      h = tree_hash(h, json_array_get(v, i));
    return fnv_add(h, "]", 1);
  case JSON_STRING:
    return fnv_add(h, json_string_value(v), json_string_length(v) + 1);
  case JSON_INTEGER: {
    json_int_t i = json_integer_value(v);
    return fnv_add(h, &i, sizeof i);
  }
  case JSON_REAL: {
    double d = json_real_value(v);
    return fnv_add(h, &d, sizeof d);
  }
  default: /* true, false, null: the tag says it */
    return h;
  }
}

static uint64_t status_hash(json_t *st) {
  uint64_t h = tree_hash(14695981039346656037ull, st);
  return h ? h : 1; /* 0 means "nothing sent" */
}

static void on_patch(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                     void *arg);

static int send_patch(entry_t *e, const char *body) {
  evs_kube_request_opts_t o = {.verb = "PATCH",
                               .path = e->path,
                               .content_type = EVS_KUBE_MERGE_PATCH,
                               .body = body,
                               .body_len = strlen(body),
                               .priority = EVS_PRIO_LOW,
                               .on_done = on_patch,
                               .arg = e};
  int rc = evs_kube_request(e->p->kube, &o, &e->req);
  if (rc != 0) {
    e->req = NULL;
  } else {
    e->p->sent++;
    e->p->in_flight++;
  }
  return rc;
}

static void entry_free(entry_t *e) {
  free(e->skeleton);
  free(e);
}

static void unhash(entry_t *e) {
  entry_t **s = slot(e->p, e->path, e->phash);
  if (*s == e) {
    *s = e->next;
    e->p->n--;
  }
}

static void fifo_push(entry_t *e) {
  evs_status_patcher_t *p = e->p;
  e->qnext = NULL;
  e->linked = 1;
  if (p->qtail != NULL)
    p->qtail->qnext = e;
  else
    p->qhead = e;
  p->qtail = e;
}

static entry_t *fifo_pop(evs_status_patcher_t *p) {
  entry_t *e = p->qhead;
  if (e == NULL)
    return NULL;
  p->qhead = e->qnext;
  if (p->qhead == NULL)
    p->qtail = NULL;
  e->qnext = NULL;
  e->linked = 0;
  return e;
}

/* The waiting update is no longer needed (the status sent is current, the object is forgotten,
 * its turn came and nothing was written): its callback runs with EVS_ECANCELED. */
static void drop_wait(entry_t *e) {
  evs_status_cb cb = e->qcb;
  void *arg = e->qarg;
  e->wants = 0;
  e->qcb = NULL;
  e->qarg = NULL;
  if (cb != NULL)
    cb(e->p, EVS_ECANCELED, 0, arg);
}

/* The FIFO's next entries get the slots that are free: the provider is asked for each one's
 * status now, and writes it through evs_status_patcher_update (see `granted` there). */
static void pump(evs_status_patcher_t *p) {
  static const char NS_AT[] = "/apis/keda.sh/v1alpha1/namespaces/";
  static const char SO_AT[] = "/scaledobjects/";
  if (p->pumping || p->closing)
    return;
  p->pumping = 1;
  entry_t *e;
  while (!p->closing && p->in_flight < p->max_in_flight && (e = fifo_pop(p)) != NULL) {
    if (e->dead) {
      entry_free(e);
      continue;
    }
    if (!e->wants || e->req != NULL)
      continue; /* not waiting any more, or for its own patch (which queues it again) */
    if (p->provide != NULL) {
      char ns[400], name[400];
      const char *a = e->path + sizeof NS_AT - 1, *b = strchr(a, '/');
      const char *c = b + sizeof SO_AT - 1, *d = strchr(c, '/');
      memcpy(ns, a, (size_t)(b - a));
      ns[b - a] = '\0';
      memcpy(name, c, (size_t)(d - c));
      name[d - c] = '\0';
      p->granted = e;
      p->provide(p, ns, name, p->provide_arg);
      p->granted = NULL;
    }
    if (e->dead) {
      entry_free(e); /* forgotten by the provider; dead entries have no patch in flight */
      continue;
    }
    if (e->wants && e->req == NULL)
      drop_wait(e); /* its owner wrote nothing: the next update writes */
  }
  p->pumping = 0;
}

static void on_patch(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                     void *arg) {
  (void)req;
  (void)msg;
  entry_t *e = arg;
  evs_status_patcher_t *p = e->p;
  e->req = NULL;
  p->in_flight--;
  int status = resp ? resp->status : 0;
  if (err != 0 || status < 200 || status > 299)
    e->hash = 0; /* not written: the next update writes again (in full: no diff base) */
  evs_status_cb cb = e->cb;
  void *cbarg = e->arg;
  e->cb = NULL;
  if (!p->closing) {
    if (e->forgotten && !e->wants) {
      unhash(e);
      entry_free(e);
    } else if (e->wants && !e->linked) {
      fifo_push(e); /* an update came during its patch: it waits its turn like the others */
    }
  }
  if (cb != NULL)
    cb(p, err, status, cbarg);
  pump(p);
}

static entry_t *entry_get(evs_status_patcher_t *p, const char *path) {
  uint64_t h = fnv1a(path, strlen(path));
  entry_t **s = slot(p, path, h);
  if (*s != NULL)
    return *s;
  size_t len = strlen(path) + 1;
  entry_t *e = calloc(1, sizeof *e + len);
  if (e == NULL)
    return NULL;
  e->p = p;
  e->phash = h;
  memcpy(e->path, path, len);
  *s = e;
  p->n++;
  grow(p);
  return e;
}

/* Builds the merge patch of st (consumed) against what e sent before and sends it. */
static int write_now(entry_t *e, json_t *st, uint64_t h, const evs_status_input_t *x,
                     evs_status_cb cb, void *arg) {
  evs_status_patcher_t *p = e->p;
  char *skeleton = skeleton_of(st);
  if (skeleton == NULL) {
    json_decref(st);
    return UV_ENOMEM;
  }
  json_t *patch = json_pack("{s:o}", "status", merge_diff(e->hash ? e->skeleton : NULL, st));
  json_decref(st);
  char *body = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
  json_decref(patch);
  int rc = body != NULL ? send_patch(e, body) : UV_ENOMEM;
  free(body);
  if (rc != 0) {
    free(skeleton);
    return rc;
  }
  e->hash = h;
  free(e->skeleton);
  e->skeleton = skeleton;
  e->last_active_written = x->last_active_ms;
  e->was_active = x->active != 0;
  /* The waiting update this write answers (the provider's call on its turn): its callback
   * travels with this patch unless the caller brings one of its own. */
  evs_status_cb replaced = NULL;
  void *rarg = NULL;
  if (e->wants) {
    if (cb == NULL) {
      cb = e->qcb;
      arg = e->qarg;
    } else {
      replaced = e->qcb;
      rarg = e->qarg;
    }
    e->wants = 0;
    e->qcb = NULL;
    e->qarg = NULL;
  }
  e->cb = cb;
  e->arg = arg;
  if (replaced != NULL)
    replaced(p, EVS_ECANCELED, 0, rarg);
  return 1;
}

/* A write must wait (the slots are taken, or this object's own patch is out): the entry waits
 * in the FIFO without a body, replacing a waiting update of the same object. */
static void wait_turn(entry_t *e, evs_status_cb cb, void *arg) {
  evs_status_cb replaced = e->wants ? e->qcb : NULL;
  void *rarg = e->qarg;
  e->wants = 1;
  e->qcb = cb;
  e->qarg = arg;
  if (e->req == NULL && !e->linked)
    fifo_push(e);
  if (replaced != NULL)
    replaced(e->p, EVS_ECANCELED, 0, rarg);
}

int evs_status_patcher_update(evs_status_patcher_t *p, const char *ns, const char *name,
                              const evs_status_input_t *in, int64_t now_ms, evs_status_cb cb,
                              void *arg) {
  (void)now_ms;
  if (p == NULL || in == NULL)
    return UV_EINVAL;
  if (p->closing)
    return EVS_ESTATE;
  char path[400];
  int rc = make_path(path, sizeof path, ns, name);
  if (rc != 0)
    return rc;
  entry_t *e = entry_get(p, path);
  if (e == NULL)
    return UV_ENOMEM;
  e->forgotten = 0;
  evs_status_input_t x = *in;
  int active = in->active != 0;
  x.active = (uint8_t)active;
  x.last_active_ms = in->last_active_ms <= 0
                         ? 0
                         : evs_status_last_active(e->last_active_written, e->was_active, active,
                                                  in->last_active_ms);
  json_t *st = evs_status_build(&x);
  if (st == NULL)
    return UV_ENOMEM;
  uint64_t h = status_hash(st);
  if (p->dry_run) {
    json_decref(st);
    return 0;
  }
  if (h == e->hash) {
    /* What is sent (or in flight) is current: a waiting write is not needed any more. */
    json_decref(st);
    if (e->wants)
      drop_wait(e);
    return 0;
  }
  int turn = p->granted == e ||
             (!e->linked && !p->pumping && p->in_flight < p->max_in_flight && p->qhead == NULL);
  if (e->req != NULL || !turn) {
    json_decref(st);
    wait_turn(e, cb, arg);
    if (p->in_flight < p->max_in_flight)
      pump(p); /* a free slot with a waiting entry only if a pump was cut short: resume it */
    return 1;
  }
  return write_now(e, st, h, &x, cb, arg);
}

void evs_status_patcher_forget(evs_status_patcher_t *p, const char *ns, const char *name) {
  char path[400];
  if (p == NULL || make_path(path, sizeof path, ns, name) != 0)
    return;
  entry_t **s = slot(p, path, fnv1a(path, strlen(path)));
  if (*s == NULL)
    return;
  entry_t *e = *s;
  evs_status_cb qcb = e->wants ? e->qcb : NULL;
  void *qarg = e->qarg;
  e->wants = 0;
  e->qcb = NULL;
  if (e->req != NULL) {
    /* Keep the record until its patch ends (an update meanwhile waits for it); just forget
     * what was written. */
    e->hash = 0;
    e->forgotten = 1;
  } else {
    *s = e->next;
    p->n--;
    if (e->linked || p->granted == e)
      e->dead = 1; /* the FIFO (or the pump) still holds it: freed there, never written */
    else
      entry_free(e);
  }
  if (qcb != NULL)
    qcb(p, EVS_ECANCELED, 0, qarg);
}

void evs_status_patcher_set_provider(evs_status_patcher_t *p, evs_status_provide_cb provide,
                                     void *arg) {
  if (p == NULL)
    return;
  p->provide = provide;
  p->provide_arg = arg;
}

uint64_t evs_status_patcher_sent(const evs_status_patcher_t *p) { return p->sent; }

unsigned evs_status_patcher_in_flight(const evs_status_patcher_t *p) { return p->in_flight; }

void evs_status_patcher_close(evs_status_patcher_t *p) {
  if (p == NULL)
    return;
  p->closing = 1;
  /* Forgotten entries still in the FIFO are in no bucket. */
  for (entry_t *e = p->qhead, *next; e != NULL; e = next) {
    next = e->qnext;
    if (e->dead)
      entry_free(e);
  }
  p->qhead = p->qtail = NULL;
  for (size_t i = 0; i < p->nbuckets; i++) {
    while (p->buckets[i] != NULL) {
      entry_t *e = p->buckets[i];
      p->buckets[i] = e->next;
      if (e->req != NULL)
        evs_kube_cancel(e->req); /* on_patch runs now: its callback gets ECANCELED */
      if (e->wants)
        drop_wait(e);
      entry_free(e);
    }
  }
  free(p->buckets);
  free(p);
}
