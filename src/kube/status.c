/* See include/evscale/status.h. */
#include "evscale/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evscale/backoff.h"
#include "evscale/buf.h"
#include "evscale/error.h"
#include "evscale/list.h"
#include "evscale/workload.h"

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

/* ---- the patcher ----
 *
 * What it keeps per ScaledObject is one allocation, an entry_t: the hash of the status last
 * sent, its lastActiveTime, a few flags, then "ns/name" and the names in that status's skeleton
 * (see below). Issue 13 (50,000 objects within 100 MB): the entry was 178 B (the whole
 * /apis/.../status path, the patcher pointer, the key's hash, four callback words that are NULL
 * for every registry object) plus a 50 B skeleton of its own; now ~70 B, the rest moved to where
 * it is needed:
 * - the path is built when a patch is sent (the key "ns/name" is what a lookup needs);
 * - the request and the callbacks live in a side part (side_t) that exists only while a patch is
 *   in flight or a caller's callback waits: at most max_in_flight plus the callers that pass one
 *   (the registry passes none);
 * - the skeleton's shape (its keys of ours, nested) is shared between objects in a refcounted
 *   table (50,000 one-trigger objects have a handful of shapes); only the keys that are not
 *   ours (metric names: triggersActivity and health are keyed by them) are the entry's own;
 * - the FIFO of waiting entries is an array that exists while some wait (all of them at the
 *   initial sync, none at steady), not a link in every entry. */

/* The skeleton of a status: its object keys, nested, so that the next merge patch can set to
 * null the keys the new status lacks (it never needs the old values; the status tree was ~7.8 KB
 * per object in jansson). Each key is a tag then an index: 'l' or 'o' and one byte, a key of
 * ours in SKEL_KEYS; 'n' or 'm' and two bytes (little-endian), a name of the entry's own (the
 * first name is 0, in the order they first appear, each once). 'l'/'n': a member whose value is
 * not an object; 'o'/'m': an object member, followed by its own members and an 'E'. The whole
 * status ends with 'E'. The shape is these bytes; the names are NUL-terminated strings (a
 * jansson key has no NUL). A one-trigger object's shape is ~35 B, shared; its names ~20 B. */
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

#define SHAPE_NONE UINT32_MAX
#define LAST_ACTIVE_MAX ((int64_t)1 << 48) /* ms: the year 10889 */

/* A shared shape: refs entries hold it (by index in the patcher's table). */
typedef struct {
  uint32_t refs, len, nnames;
  uint64_t h;
  char b[];
} shape_t;

typedef struct entry_s {
  struct entry_s *next; /* hash chain */
  uint64_t hash;        /* of the last status sent (in flight or written); 0 = none */
  uint32_t shape;       /* that status's shape (p->shapes index) or SHAPE_NONE */
  uint32_t la_lo;       /* the lastActiveTime written, ms, 48 bits (lo, hi) */
  uint16_t la_hi;
  unsigned char was_active : 1;
  unsigned char wants : 1;  /* a write waits: in the FIFO, or for this object's own patch */
  unsigned char linked : 1; /* in the FIFO */
  unsigned char dead : 1;   /* forgotten while in the FIFO: out of the table, freed when popped */
  unsigned char forgotten : 1; /* forgotten while its patch is in flight: freed when it ends */
  unsigned char flying : 1;    /* its patch is in flight (its side part holds the request) */
  unsigned char side : 1;      /* it has a side part */
  unsigned char retrying : 1;  /* in p->retry: its failed patch is written again on the timer */
  /* This patcher wrote it since it last followed (evs_status_patcher_follow): what the server
   * is observed to hold no longer counts (a watch may echo an older write of ours late). */
  unsigned char mine : 1;
  char data[]; /* "ns/name\0", then the shape's names */
} entry_t;

/* The part of an entry that only a patch in flight or a caller's callback needs. */
typedef struct side_s {
  struct side_s *next;
  evs_status_patcher_t *p;
  entry_t *e;
  evs_kube_req_t *req;   /* the patch in flight */
  evs_status_cb cb, qcb; /* the patch in flight's, the waiting update's */
  void *arg, *qarg;
} side_t;

struct evs_status_patcher_s {
  evs_kube_t *kube;
  int dry_run, closing, pumping;
  uint64_t sent;
  unsigned max_in_flight, in_flight;
  entry_t **fifo; /* a ring: fifo_n entries from fifo_head (capacity fifo_cap, a power of two) */
  size_t fifo_cap, fifo_head, fifo_n;
  entry_t *granted; /* the entry whose turn it is, while the provider runs */
  evs_status_provide_cb provide;
  void *provide_arg;
  entry_t **buckets; /* power of two; grows with the objects (50,000 in one process) */
  size_t nbuckets, n;
  side_t *sides;
  shape_t **shapes; /* NULL: a free slot */
  size_t nshapes, shapes_cap;
  /* Failed patches waiting for the retry timer (see the options). The timer is an allocation of
   * its own, freed from its close callback, so that closing the patcher stays synchronous. */
  uv_loop_t *loop;
  uv_timer_t *retry_timer;
  entry_t **retry;
  size_t retry_n, retry_cap;
  evs_backoff_t retry_bo; /* one patcher: no herd, so no jitter */
  uint64_t retries;
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
  p->loop = opts != NULL ? opts->loop : NULL;
  evs_backoff_init(&p->retry_bo,
                   opts != NULL && opts->retry_initial_ms ? opts->retry_initial_ms : 1000,
                   opts != NULL ? opts->retry_max_ms : 0, EVS_BACKOFF_NONE);
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

#define KEY_MAX 400

static int valid_name(const char *s) { return s != NULL && s[0] && !strpbrk(s, "/?#% "); }

/* "ns/name" (the entry's key; neither part holds a '/'). */
static int make_key(char *buf, const char *ns, const char *name) {
  if (!valid_name(ns) || !valid_name(name))
    return UV_EINVAL;
  int n = snprintf(buf, KEY_MAX, "%s/%s", ns, name);
  return n < 0 || n >= KEY_MAX ? UV_EINVAL : 0;
}

static entry_t **slot(evs_status_patcher_t *p, const char *key, uint64_t h) {
  entry_t **e = &p->buckets[h & (p->nbuckets - 1)];
  while (*e != NULL && strcmp((*e)->data, key) != 0)
    e = &(*e)->next;
  return e;
}

/* The slot of key's entry (its own, or the empty one at the end of its chain). */
static entry_t **slot_of(evs_status_patcher_t *p, const char *key) {
  return slot(p, key, fnv1a(key, strlen(key)));
}

/* The checks every per-object call starts with, then its key into buf (KEY_MAX). */
static int open_key(const evs_status_patcher_t *p, const char *ns, const char *name, char *buf) {
  if (p == NULL)
    return UV_EINVAL;
  if (p->closing)
    return EVS_ESTATE;
  return make_key(buf, ns, name);
}

/* Doubles the table when it holds more entries than buckets (a failed allocation keeps the
 * longer chains: slower, still correct). The keys are hashed again: keeping each one's hash
 * would cost 8 B per object for what happens ~16 times in the process's life. */
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
      entry_t **to = &b[fnv1a(e->data, strlen(e->data)) & (nb - 1)];
      e->next = *to;
      *to = e;
    }
  }
  free(p->buckets);
  p->buckets = b;
  p->nbuckets = nb;
}

static int64_t last_active(const entry_t *e) { return (int64_t)e->la_hi << 32 | e->la_lo; }

static void set_last_active(entry_t *e, int64_t ms) {
  if (ms < 0)
    ms = 0;
  if (ms >= LAST_ACTIVE_MAX)
    ms = LAST_ACTIVE_MAX - 1;
  e->la_lo = (uint32_t)ms;
  e->la_hi = (uint16_t)(ms >> 32);
}

/* ---- shapes and names ---- */

static const shape_t *shape_at(const evs_status_patcher_t *p, uint32_t id) {
  return id == SHAPE_NONE ? NULL : p->shapes[id];
}

/* The entry's names: after its key. */
static const char *names_of(const entry_t *e) { return e->data + strlen(e->data) + 1; }

/* The bytes of n NUL-terminated names from s. */
static size_t names_len(const char *s, uint32_t n) {
  const char *c = s;
  for (uint32_t i = 0; i < n; i++)
    c += strlen(c) + 1;
  return (size_t)(c - s);
}

static const char *name_at(const char *names, unsigned i) {
  while (i-- > 0)
    names += strlen(names) + 1;
  return names;
}

/* A reference to the shared shape with these bytes (a new one if none), or SHAPE_NONE when out
 * of memory. A linear scan: there are a handful of shapes, and it runs once per patch sent. */
static uint32_t shape_ref(evs_status_patcher_t *p, const char *b, size_t len, uint32_t nnames) {
  uint64_t h = fnv1a(b, len);
  size_t free_slot = p->nshapes;
  for (size_t i = 0; i < p->nshapes; i++) {
    shape_t *s = p->shapes[i];
    if (s == NULL) {
      free_slot = i < free_slot ? i : free_slot;
    } else if (s->h == h && s->len == len && memcmp(s->b, b, len) == 0) {
      s->refs++;
      return (uint32_t)i;
    }
  }
  if (free_slot >= SHAPE_NONE || len > UINT32_MAX)
    return SHAPE_NONE;
  if (free_slot == p->nshapes && evs_buf_reserve((void **)&p->shapes, &p->shapes_cap,
                                                 p->nshapes + 1, sizeof *p->shapes, 8) != 0)
    return SHAPE_NONE;
  shape_t *s = malloc(sizeof *s + len);
  if (s == NULL)
    return SHAPE_NONE;
  *s = (shape_t){1, (uint32_t)len, nnames, h};
  memcpy(s->b, b, len);
  p->shapes[free_slot] = s;
  if (free_slot == p->nshapes)
    p->nshapes++;
  return (uint32_t)free_slot;
}

static void shape_unref(evs_status_patcher_t *p, uint32_t id) {
  if (id == SHAPE_NONE || --p->shapes[id]->refs > 0)
    return;
  free(p->shapes[id]);
  p->shapes[id] = NULL;
  while (p->nshapes > 0 && p->shapes[p->nshapes - 1] == NULL)
    p->nshapes--;
}

typedef struct {
  char *b;
  size_t n, cap;
} bytes_t;

typedef struct {
  bytes_t shape, names;
  uint32_t nnames;
  int failed;
} skel_t;

static void put(skel_t *s, bytes_t *to, const void *b, size_t n) {
  if (s->failed || evs_buf_reserve((void **)&to->b, &to->cap, to->n + n, 1, 64) != 0) {
    s->failed = 1;
    return;
  }
  memcpy(to->b + to->n, b, n);
  to->n += n;
}

/* The index of name k among the names so far, added if new. */
static uint32_t name_index(skel_t *s, const char *k) {
  if (s->failed)
    return 0;
  const char *c = s->names.b;
  for (uint32_t i = 0; i < s->nnames; i++, c += strlen(c) + 1)
    if (strcmp(c, k) == 0)
      return i;
  put(s, &s->names, k, strlen(k) + 1);
  return s->failed ? 0 : s->nnames++;
}

static void skel_of(skel_t *s, json_t *obj) {
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    int is_obj = json_is_object(v);
    size_t i = 0;
    while (i < SKEL_NKEYS && strcmp(SKEL_KEYS[i], k) != 0)
      i++;
    if (i < SKEL_NKEYS) {
      unsigned char h[2] = {is_obj ? 'o' : 'l', (unsigned char)i};
      put(s, &s->shape, h, 2);
    } else {
      uint32_t n = name_index(s, k);
      if (n > 0xffff) {
        s->failed = 1;
        return;
      }
      unsigned char h[3] = {is_obj ? 'm' : 'n', (unsigned char)(n & 0xff), (unsigned char)(n >> 8)};
      put(s, &s->shape, h, 3);
    }
    if (is_obj)
      skel_of(s, v);
  }
  put(s, &s->shape, "E", 1);
}

/* The key at c (its text unless names is NULL, whether it holds an object); returns what
 * follows. */
static const char *skel_key(const char *c, const char *names, const char **k, int *is_obj) {
  char tag = *c;
  *is_obj = tag == 'o' || tag == 'm';
  if (tag == 'l' || tag == 'o') {
    *k = SKEL_KEYS[(unsigned char)c[1]];
    return c + 2;
  }
  if (names != NULL)
    *k = name_at(names, (unsigned)(unsigned char)c[1] | (unsigned)(unsigned char)c[2] << 8);
  return c + 3;
}

/* Past the members of one object in a skeleton (at its first member) and its 'E'. */
static const char *skel_skip(const char *c) {
  while (*c != 'E') {
    const char *k;
    int is_obj;
    c = skel_key(c, NULL, &k, &is_obj);
    if (is_obj)
      c = skel_skip(c);
  }
  return c + 1;
}

/* Into patch (a copy of new), null for every key the old status had that new lacks, in every
 * object both have (RFC 7386: a merge patch merges objects and replaces everything else).
 * Returns the shape past this object's 'E'. */
static const char *skel_diff(const char *c, const char *names, json_t *new, json_t *patch) {
  while (*c != 'E') {
    const char *k;
    int is_obj;
    c = skel_key(c, names, &k, &is_obj);
    json_t *nv = json_object_get(new, k);
    if (nv == NULL)
      json_object_set_new(patch, k, json_null());
    if (is_obj) {
      if (nv != NULL && json_is_object(nv))
        c = skel_diff(c, names, nv, json_object_get(patch, k));
      else
        c = skel_skip(c);
    }
  }
  return c + 1;
}

/* The merge patch from the status with this shape and names (shape NULL: none) to `new`. */
static json_t *merge_diff(const shape_t *shape, const char *names, json_t *new) {
  json_t *d = json_deep_copy(new);
  if (d != NULL && shape != NULL)
    (void)skel_diff(shape->b, names, new, d);
  return d;
}

/* A 64-bit hash of a status tree, walked instead of dumping it to text just to hash that: every
 * update of every object builds its status to see whether it changed. An object's members count
 * in any order (a sum of their mixed hashes): the status the API server holds (observed, see
 * evs_status_patcher_observe) need not list them in the builder's order. Arrays keep theirs. */
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
    uint64_t sum = 0;
    json_object_foreach(v, k, m) {
      uint64_t x = tree_hash(fnv_add(14695981039346656037ull, k, strlen(k) + 1), m);
      /* splitmix64's finaliser, so that a sum of members does not cancel out */
      x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
      x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
      sum += x ^ (x >> 31);
    }
    h = fnv_add(h, &sum, sizeof sum);
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

/* ---- side parts ---- */

static side_t *side_of(evs_status_patcher_t *p, const entry_t *e) {
  if (!e->side)
    return NULL;
  for (side_t *s = p->sides; s != NULL; s = s->next)
    if (s->e == e)
      return s;
  return NULL;
}

/* e's side part, made if it has none (NULL when out of memory). */
static side_t *side_get(evs_status_patcher_t *p, entry_t *e) {
  side_t *s = side_of(p, e);
  if (s != NULL)
    return s;
  if ((s = calloc(1, sizeof *s)) == NULL)
    return NULL;
  s->p = p;
  s->e = e;
  s->next = p->sides;
  p->sides = s;
  e->side = 1;
  return s;
}

static void side_free(evs_status_patcher_t *p, side_t *s) {
  for (side_t **at = &p->sides; *at != NULL; at = &(*at)->next) {
    if (*at == s) {
      *at = s->next;
      break;
    }
  }
  s->e->side = 0;
  free(s);
}

/* Frees s when nothing needs it any more. */
static void side_put(evs_status_patcher_t *p, side_t *s) {
  if (s != NULL && s->req == NULL && s->cb == NULL && s->qcb == NULL)
    side_free(p, s);
}

/* ---- entries and the FIFO ---- */

static void entry_free(evs_status_patcher_t *p, entry_t *e) {
  side_t *s = side_of(p, e);
  if (s != NULL)
    side_free(p, s);
  shape_unref(p, e->shape);
  free(e);
}

static void unhash(evs_status_patcher_t *p, entry_t *e) {
  entry_t **s = slot_of(p, e->data);
  if (*s == e) {
    *s = e->next;
    p->n--;
  }
}

/* A forgotten entry (out of the table) is freed by the last list that holds it: the FIFO, the
 * retry list or the pump. */
static void dead_release(evs_status_patcher_t *p, entry_t *e) {
  if (!e->linked && !e->retrying && p->granted != e)
    entry_free(p, e);
}

/* Room for one more waiting entry; 0 or UV_ENOMEM. */
static int fifo_reserve(evs_status_patcher_t *p) {
  if (p->fifo_n < p->fifo_cap)
    return 0;
  size_t cap = p->fifo_cap ? p->fifo_cap * 2 : 64;
  entry_t **f = malloc(cap * sizeof *f);
  if (f == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < p->fifo_n; i++)
    f[i] = p->fifo[(p->fifo_head + i) & (p->fifo_cap - 1)];
  free(p->fifo);
  p->fifo = f;
  p->fifo_cap = cap;
  p->fifo_head = 0;
  return 0;
}

static int fifo_push(evs_status_patcher_t *p, entry_t *e) {
  if (fifo_reserve(p) != 0)
    return UV_ENOMEM;
  p->fifo[(p->fifo_head + p->fifo_n++) & (p->fifo_cap - 1)] = e;
  e->linked = 1;
  return 0;
}

/* The FIFO's array goes when it empties: 50,000 waiting at the initial sync are 512 KB that
 * steady state does not need. */
static entry_t *fifo_pop(evs_status_patcher_t *p) {
  if (p->fifo_n == 0)
    return NULL;
  entry_t *e = p->fifo[p->fifo_head];
  p->fifo_head = (p->fifo_head + 1) & (p->fifo_cap - 1);
  if (--p->fifo_n == 0) {
    free(p->fifo);
    p->fifo = NULL;
    p->fifo_cap = p->fifo_head = 0;
  }
  e->linked = 0;
  return e;
}

/* The waiting update is no longer needed (the status sent is current, the object is forgotten,
 * its turn came and nothing was written): its callback runs with EVS_ECANCELED. */
static void drop_wait(evs_status_patcher_t *p, entry_t *e) {
  side_t *s = side_of(p, e);
  evs_status_cb cb = s ? s->qcb : NULL;
  void *arg = s ? s->qarg : NULL;
  e->wants = 0;
  if (s != NULL) {
    s->qcb = NULL;
    s->qarg = NULL;
    side_put(p, s);
  }
  if (cb != NULL)
    cb(p, EVS_ECANCELED, 0, arg);
}

static void on_patch(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                     void *arg);

static int send_patch(evs_status_patcher_t *p, side_t *s, const char *body) {
  static const char NS_AT[] = "/apis/keda.sh/v1alpha1/namespaces/";
  const char *key = s->e->data, *name = strchr(key, '/') + 1;
  char path[KEY_MAX + 64];
  snprintf(path, sizeof path, "%s%.*s/scaledobjects/%s/status", NS_AT, (int)(name - 1 - key), key,
           name);
  evs_kube_request_opts_t o = {.verb = "PATCH",
                               .path = path,
                               .content_type = EVS_KUBE_MERGE_PATCH,
                               .body = body,
                               .body_len = strlen(body),
                               .priority = EVS_PRIO_LOW,
                               .on_done = on_patch,
                               .arg = s};
  int rc = evs_kube_request(p->kube, &o, &s->req);
  if (rc != 0) {
    s->req = NULL;
    return rc;
  }
  s->e->flying = 1;
  p->sent++;
  p->in_flight++;
  return 0;
}

/* The FIFO's next entries get the slots that are free: the provider is asked for each one's
 * status now, and writes it through evs_status_patcher_update (see `granted` there). */
static void pump(evs_status_patcher_t *p) {
  if (p->pumping || p->closing)
    return;
  p->pumping = 1;
  entry_t *e;
  while (!p->closing && p->in_flight < p->max_in_flight && (e = fifo_pop(p)) != NULL) {
    if (e->dead) {
      dead_release(p, e);
      continue;
    }
    if (!e->wants || e->flying)
      continue; /* not waiting any more, or for its own patch (which queues it again) */
    if (p->provide != NULL) {
      char key[KEY_MAX];
      memcpy(key, e->data, strlen(e->data) + 1);
      char *name = strchr(key, '/');
      *name++ = '\0';
      p->granted = e;
      p->provide(p, key, name, p->provide_arg);
      e = p->granted; /* the write may have moved it (write_now: its names changed) */
      p->granted = NULL;
    }
    if (e->dead) {
      dead_release(p, e); /* forgotten by the provider; dead entries have no patch in flight */
      continue;
    }
    if (e->wants && !e->flying)
      drop_wait(p, e); /* its owner wrote nothing: the next update writes */
  }
  p->pumping = 0;
}

/* ---- retries ---- */

static void on_retry_timer_closed(uv_handle_t *h) { free(h); }

/* The retry timer: every entry whose patch failed since the last round waits its turn again in
 * the FIFO (the provider gives its status as it is now), unless something else writes it. */
static void on_retry(uv_timer_t *t) {
  evs_status_patcher_t *p = t->data;
  entry_t **list = p->retry;
  size_t n = p->retry_n;
  p->retry = NULL;
  p->retry_n = p->retry_cap = 0;
  for (size_t i = 0; i < n; i++) {
    entry_t *e = list[i];
    e->retrying = 0;
    if (e->dead) {
      dead_release(p, e);
      continue;
    }
    if (e->wants || e->flying || e->hash != 0)
      continue; /* a write is on its way, or one succeeded since */
    e->wants = 1;
    if (!e->linked && fifo_push(p, e) != 0)
      e->wants = 0; /* out of memory: the next update writes */
    else
      p->retries++;
  }
  free(list);
  pump(p);
}

static void retry_add(evs_status_patcher_t *p, entry_t *e) {
  if (p->loop == NULL || e->retrying || p->closing)
    return;
  if (p->retry_timer == NULL) {
    p->retry_timer = malloc(sizeof *p->retry_timer);
    if (p->retry_timer == NULL || uv_timer_init(p->loop, p->retry_timer) != 0) {
      free(p->retry_timer);
      p->retry_timer = NULL;
      return;
    }
    p->retry_timer->data = p;
    uv_unref((uv_handle_t *)p->retry_timer); /* retries alone never keep the process running */
  }
  if (evs_buf_reserve((void **)&p->retry, &p->retry_cap, p->retry_n + 1, sizeof *p->retry, 8) != 0)
    return; /* out of memory: the next update writes */
  p->retry[p->retry_n++] = e;
  e->retrying = 1;
  if (!uv_is_active((uv_handle_t *)p->retry_timer)) {
    uv_timer_start(p->retry_timer, on_retry, evs_backoff_next(&p->retry_bo, 0), 0);
  }
}

static void on_patch(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                     void *arg) {
  (void)req;
  (void)msg;
  side_t *s = arg;
  entry_t *e = s->e;
  evs_status_patcher_t *p = s->p;
  s->req = NULL;
  e->flying = 0;
  p->in_flight--;
  int status = resp ? resp->status : 0;
  int failed = err != 0 || status < 200 || status > 299;
  if (failed)
    e->hash = 0; /* not written: the next update writes again (in full: no diff base) */
  else
    evs_backoff_reset(&p->retry_bo); /* the server takes writes again */
  /* What passes: the server busy, restarting or unreachable. Not 4xx: the same body would be
   * refused again (404: the object is gone, and its removal forgets it). */
  int passing = failed && err != EVS_ECANCELED && (err != 0 || status == 429 || status >= 500);
  evs_status_cb cb = s->cb;
  void *cbarg = s->arg;
  s->cb = NULL;
  s->arg = NULL;
  side_put(p, s);
  if (!p->closing) {
    if (e->forgotten && !e->wants) {
      unhash(p, e);
      e->dead = 1;
      dead_release(p, e);
    } else if (e->wants) {
      if (!e->linked && fifo_push(p, e) != 0)
        drop_wait(p, e); /* out of memory: the next update writes */
    } else if (passing) {
      retry_add(p, e); /* a waiting update writes anyway; otherwise the timer does */
    }
  }
  if (cb != NULL)
    cb(p, err, status, cbarg);
  pump(p);
}

static entry_t *entry_get(evs_status_patcher_t *p, const char *key) {
  size_t len = strlen(key);
  uint64_t h = fnv1a(key, len);
  entry_t **s = slot(p, key, h);
  if (*s != NULL)
    return *s;
  entry_t *e = calloc(1, offsetof(entry_t, data) + len + 1);
  if (e == NULL)
    return NULL;
  e->shape = SHAPE_NONE;
  memcpy(e->data, key, len + 1);
  *s = e;
  p->n++;
  grow(p);
  return e;
}

/* e's names are to become `names` (n bytes): a new entry when they differ (NULL: unchanged, or
 * *failed when out of memory); entry_move puts it in e's place. */
static entry_t *entry_renamed(const evs_status_patcher_t *p, const entry_t *e, const char *names,
                              size_t n, int *failed) {
  const shape_t *old = shape_at(p, e->shape);
  const char *on = names_of(e);
  size_t olen = old ? names_len(on, old->nnames) : 0;
  *failed = 0;
  if (olen == n && (n == 0 || memcmp(on, names, n) == 0))
    return NULL;
  size_t klen = strlen(e->data) + 1;
  entry_t *ne = malloc(offsetof(entry_t, data) + klen + n);
  if (ne == NULL) {
    *failed = 1;
    return NULL;
  }
  memcpy(ne->data, e->data, klen); /* the header is copied when it moves (entry_move) */
  if (n > 0)
    memcpy(ne->data + klen, names, n);
  return ne;
}

/* ne takes e's place everywhere e is held (its bucket, its side part, the pump's turn), and e
 * goes. A written entry is never in the FIFO (its turn took it out, or it never waited). */
static void entry_move(evs_status_patcher_t *p, entry_t *e, entry_t *ne) {
  memcpy(ne, e, offsetof(entry_t, data));
  entry_t **at = &p->buckets[fnv1a(e->data, strlen(e->data)) & (p->nbuckets - 1)];
  while (*at != NULL && *at != e)
    at = &(*at)->next;
  if (*at == e)
    *at = ne;
  for (size_t i = 0; e->linked && i < p->fifo_n; i++) {
    entry_t **f = &p->fifo[(p->fifo_head + i) & (p->fifo_cap - 1)];
    if (*f == e)
      *f = ne;
  }
  for (side_t *s = p->sides; s != NULL; s = s->next)
    if (s->e == e)
      s->e = ne;
  if (p->granted == e)
    p->granted = ne;
  for (size_t i = 0; e->retrying && i < p->retry_n; i++)
    if (p->retry[i] == e)
      p->retry[i] = ne;
  free(e);
}

/* What e now stands for, written or observed: its names move to ne (when not NULL, see
 * entry_renamed), its shape (a reference taken), hash, lastActiveTime and Active. Returns the
 * entry in e's place. */
static entry_t *entry_settle(evs_status_patcher_t *p, entry_t *e, entry_t *ne, uint32_t shape,
                             uint64_t hash, int64_t last_active_ms, int active) {
  if (ne != NULL) {
    entry_move(p, e, ne);
    e = ne;
  }
  shape_unref(p, e->shape);
  e->shape = shape;
  e->hash = hash;
  set_last_active(e, last_active_ms);
  e->was_active = active != 0;
  return e;
}

/* Builds the merge patch of st (consumed) against what e sent before and sends it. */
static int write_now(evs_status_patcher_t *p, entry_t *e, json_t *st, uint64_t h,
                     const evs_status_input_t *x, evs_status_cb cb, void *arg) {
  skel_t sk = {0};
  skel_of(&sk, st);
  json_t *patch =
      sk.failed ? NULL
                : json_pack("{s:o}", "status",
                            merge_diff(e->hash ? shape_at(p, e->shape) : NULL, names_of(e), st));
  json_decref(st);
  char *body = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
  json_decref(patch);
  uint32_t shape = body ? shape_ref(p, sk.shape.b, sk.shape.n, sk.nnames) : SHAPE_NONE;
  int failed = 1;
  entry_t *ne = shape != SHAPE_NONE ? entry_renamed(p, e, sk.names.b, sk.names.n, &failed) : NULL;
  side_t *s = failed ? NULL : side_get(p, e);
  int rc = s != NULL ? send_patch(p, s, body) : UV_ENOMEM;
  free(body);
  free(sk.shape.b);
  free(sk.names.b);
  if (rc != 0) {
    side_put(p, s);
    free(ne);
    shape_unref(p, shape);
    return rc;
  }
  e = entry_settle(p, e, ne, shape, h, x->last_active_ms, x->active != 0);
  e->mine = 1;
  /* The waiting update this write answers (the provider's call on its turn): its callback
   * travels with this patch unless the caller brings one of its own. */
  evs_status_cb replaced = NULL;
  void *rarg = NULL;
  if (e->wants) {
    if (cb == NULL) {
      cb = s->qcb;
      arg = s->qarg;
    } else {
      replaced = s->qcb;
      rarg = s->qarg;
    }
    e->wants = 0;
    s->qcb = NULL;
    s->qarg = NULL;
  }
  s->cb = cb;
  s->arg = arg;
  if (replaced != NULL)
    replaced(p, EVS_ECANCELED, 0, rarg);
  return 1;
}

/* A write must wait (the slots are taken, or this object's own patch is out): the entry waits
 * in the FIFO without a body, replacing a waiting update of the same object. */
static int wait_turn(evs_status_patcher_t *p, entry_t *e, evs_status_cb cb, void *arg) {
  side_t *s = cb != NULL ? side_get(p, e) : side_of(p, e);
  if (cb != NULL && s == NULL)
    return UV_ENOMEM;
  if (!e->flying && !e->linked && fifo_push(p, e) != 0) {
    side_put(p, s);
    return UV_ENOMEM;
  }
  evs_status_cb replaced = e->wants && s ? s->qcb : NULL;
  void *rarg = s ? s->qarg : NULL;
  e->wants = 1;
  if (s != NULL) {
    s->qcb = cb;
    s->qarg = arg;
    side_put(p, s);
  }
  if (replaced != NULL)
    replaced(p, EVS_ECANCELED, 0, rarg);
  return 1;
}

int evs_status_patcher_update(evs_status_patcher_t *p, const char *ns, const char *name,
                              const evs_status_input_t *in, int64_t now_ms, evs_status_cb cb,
                              void *arg) {
  (void)now_ms;
  if (in == NULL)
    return UV_EINVAL;
  char key[KEY_MAX];
  int rc = open_key(p, ns, name, key);
  if (rc != 0)
    return rc;
  entry_t *e = entry_get(p, key);
  if (e == NULL)
    return UV_ENOMEM;
  e->forgotten = 0;
  evs_status_input_t x = *in;
  int active = in->active != 0;
  x.active = (uint8_t)active;
  x.last_active_ms = in->last_active_ms <= 0 ? 0
                                             : evs_status_last_active(last_active(e), e->was_active,
                                                                      active, in->last_active_ms);
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
      drop_wait(p, e);
    return 0;
  }
  int turn = p->granted == e ||
             (!e->linked && !p->pumping && p->in_flight < p->max_in_flight && p->fifo_n == 0);
  if (e->flying || !turn) {
    json_decref(st);
    rc = wait_turn(p, e, cb, arg);
    if (rc == 1 && p->in_flight < p->max_in_flight)
      pump(p); /* a free slot with a waiting entry only if a pump was cut short: resume it */
    return rc;
  }
  return write_now(p, e, st, h, &x, cb, arg);
}

/* Whether the conditions of an observed status say Active True. */
static int observed_active(const json_t *st) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(st, "conditions"), i, c) {
    const char *t = json_string_value(json_object_get(c, "type"));
    if (t != NULL && strcmp(t, "Active") == 0) {
      const char *v = json_string_value(json_object_get(c, "status"));
      return v != NULL && strcmp(v, "True") == 0;
    }
  }
  return 0;
}

int evs_status_patcher_observe(evs_status_patcher_t *p, const char *ns, const char *name,
                               const json_t *status) {
  char key[KEY_MAX];
  int rc = open_key(p, ns, name, key);
  if (rc != 0)
    return rc;
  int has = json_is_object(status) && json_object_size(status) > 0;
  entry_t *e = *slot_of(p, key);
  if (e != NULL && (e->mine || e->flying || e->wants || e->linked || e->retrying))
    return 0; /* this patcher's own writes decide, and what it sends next */
  if (e == NULL && !has)
    return 0; /* nothing written, nothing known: the first update writes in full */
  if (e == NULL && (e = entry_get(p, key)) == NULL)
    return UV_ENOMEM;
  if (!has) {
    e->hash = 0; /* the server holds none: the next update writes in full */
    return 1;
  }
  skel_t sk = {0};
  skel_of(&sk, (json_t *)status);
  uint32_t shape = sk.failed ? SHAPE_NONE : shape_ref(p, sk.shape.b, sk.shape.n, sk.nnames);
  int failed = 1;
  entry_t *ne = shape != SHAPE_NONE ? entry_renamed(p, e, sk.names.b, sk.names.n, &failed) : NULL;
  free(sk.shape.b);
  free(sk.names.b);
  if (failed) {
    shape_unref(p, shape);
    e->hash = 0; /* out of memory: the next update writes, as if nothing were known */
    return UV_ENOMEM;
  }
  int64_t la = 0;
  const char *t = json_string_value(json_object_get(status, "lastActiveTime"));
  if (t == NULL || evs_workload__parse_time(t, &la) != 0 || la < 0)
    la = 0;
  (void)entry_settle(p, e, ne, shape, status_hash((json_t *)status), la * 1000,
                     observed_active(status));
  return 1;
}

int evs_status_patcher_known(evs_status_patcher_t *p, const char *ns, const char *name) {
  char key[KEY_MAX];
  if (p == NULL || make_key(key, ns, name) != 0)
    return 0;
  const entry_t *e = *slot_of(p, key);
  return e != NULL && e->hash != 0;
}

void evs_status_patcher_follow(evs_status_patcher_t *p) {
  if (p == NULL)
    return;
  for (size_t i = 0; i < p->nbuckets; i++)
    for (entry_t *e = p->buckets[i]; e != NULL; e = e->next)
      e->mine = 0;
}

void evs_status_patcher_forget(evs_status_patcher_t *p, const char *ns, const char *name) {
  char key[KEY_MAX];
  if (p == NULL || make_key(key, ns, name) != 0)
    return;
  entry_t **at = slot_of(p, key);
  if (*at == NULL)
    return;
  entry_t *e = *at;
  side_t *s = side_of(p, e);
  evs_status_cb qcb = e->wants && s ? s->qcb : NULL;
  void *qarg = s ? s->qarg : NULL;
  e->wants = 0;
  if (s != NULL) {
    s->qcb = NULL;
    s->qarg = NULL;
    side_put(p, s);
  }
  if (e->flying) {
    /* Keep the record until its patch ends (an update meanwhile waits for it); just forget
     * what was written. */
    e->hash = 0;
    e->forgotten = 1;
  } else {
    *at = e->next;
    p->n--;
    e->dead = 1; /* the FIFO, the retry list or the pump may still hold it: freed there */
    dead_release(p, e);
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

uint64_t evs_status_patcher_retries(const evs_status_patcher_t *p) { return p->retries; }

void evs_status_patcher_close(evs_status_patcher_t *p) {
  if (p == NULL)
    return;
  p->closing = 1;
  if (p->retry_timer != NULL)
    uv_close((uv_handle_t *)p->retry_timer, on_retry_timer_closed);
  /* Forgotten entries still in the FIFO or the retry list are in no bucket. */
  for (size_t i = 0; i < p->retry_n; i++) {
    entry_t *e = p->retry[i];
    e->retrying = 0;
    if (e->dead && !e->linked)
      entry_free(p, e);
  }
  free(p->retry);
  p->retry = NULL;
  p->retry_n = p->retry_cap = 0;
  for (size_t i = 0; i < p->fifo_n; i++) {
    entry_t *e = p->fifo[(p->fifo_head + i) & (p->fifo_cap - 1)];
    if (e->dead)
      entry_free(p, e);
    else
      e->linked = 0;
  }
  free(p->fifo);
  p->fifo = NULL;
  p->fifo_n = p->fifo_cap = 0;
  for (size_t i = 0; i < p->nbuckets; i++) {
    while (p->buckets[i] != NULL) {
      entry_t *e = p->buckets[i];
      p->buckets[i] = e->next;
      side_t *s = side_of(p, e);
      if (s != NULL && s->req != NULL)
        evs_kube_cancel(s->req); /* on_patch runs now: its callback gets ECANCELED */
      if (e->wants)
        drop_wait(p, e);
      entry_free(p, e);
    }
  }
  for (size_t i = 0; i < p->nshapes; i++)
    free(p->shapes[i]); /* none left: every entry dropped its reference */
  free(p->shapes);
  free(p->buckets);
  free(p);
}
