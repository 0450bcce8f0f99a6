/* See include/evscale/registry.h. */
#include "evscale/registry.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evscale/buf.h"
#include "evscale/error.h"
#include "evscale/fallbackhpa.h"
#include "evscale/intern.h"
#include "evscale/list.h"
#include "evscale/log.h"
#include "evscale/node.h"
#include "evscale/so_status.h"
#include "evscale/step.h"
#include "evscale/timerq.h"

#include "adopt.h"

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

/* An owned copy of a map: the header, the items and their strings in one allocation, wiped on
 * free (it may hold secrets). A record or trigger holds a pointer, NULL when it has none: most
 * never resolve an environment or an authenticationRef (issue 13). */
typedef struct {
  evs_kvs_t kvs;
  size_t bytes;
} evs__map_t;

static const evs_kvs_t evs__no_kvs;

static int evs__map_copy(evs__map_t **out, const evs_kvs_t *src) {
  size_t bytes = sizeof(evs__map_t) + src->n * sizeof(evs_kv_t);
  for (size_t i = 0; i < src->n; i++)
    bytes += strlen(src->items[i].key) + strlen(src->items[i].value) + 2;
  char *mem = malloc(bytes);
  if (mem == NULL)
    return UV_ENOMEM;
  evs__map_t *m = (evs__map_t *)mem;
  evs_kv_t *items = (evs_kv_t *)(m + 1);
  char *p = (char *)(items + src->n);
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
  *out = m;
  return 0;
}

static void evs__map_free(evs__map_t **m) {
  if (*m) {
    explicit_bzero(*m, (*m)->bytes);
    free(*m);
  }
  *m = NULL;
}

static const evs_kvs_t *evs__map_kvs(const evs__map_t *m) { return m ? &m->kvs : &evs__no_kvs; }

/* A trigger: the first is embedded in its record, the others are evs__trig_more_t (evs__trig_rec
 * finds the record from either). Its last reading is kept as the engine reads it (value, activity,
 * error code, times; evs__trig_reading): not its message, which nothing reads after the reading's
 * callback, nor the empty-upstream mark, counted in that callback (issue 13: 80 B of a record
 * with an evs_reading_t, 64 without). */
typedef struct {
  evs_scaler_t *scaler;            /* NULL when not running */
  evs_triggerauth_req_t *auth_req; /* resolving its authenticationRef */
  int64_t reresolved_ms;           /* when it was last restarted for that */
  double value;                    /* the last reading's; time_ms 0 = none yet */
  int64_t time_ms, next_change_ms;
  int32_t error;
  uint32_t index;
  uint8_t active;
  uint8_t auth_done;
  uint8_t reresolve; /* failing with an authenticationRef: restart (read it again) */
} evs__trig_t;

/* Keeps what the engine reads of a reading. */
static void evs__trig_keep(evs__trig_t *tr, const evs_reading_t *rd) {
  tr->value = rd->value;
  tr->time_ms = rd->time_ms;
  tr->next_change_ms = rd->next_change_ms;
  tr->error = rd->error;
  tr->active = (uint8_t)(rd->active != 0);
}

/* The last reading as the engine takes it (error_msg NULL, empty_upstream 0). */
static evs_reading_t evs__trig_reading(const evs__trig_t *tr) {
  return (evs_reading_t){.value = tr->value,
                         .active = tr->active,
                         .error = tr->error,
                         .time_ms = tr->time_ms,
                         .next_change_ms = tr->next_change_ms};
}

typedef struct {
  evs__rec_t *rec;
  evs__trig_t tr;
} evs__trig_more_t;

/* The parts of a record few ScaledObjects need, allocated on first use and freed once empty
 * (issue 13: ~100 B a record that most never use). */
typedef struct {
  char *check_error; /* owned; the broken object's message */
  char *refusal;     /* owned; why it does not drive its target (another drives it) */
  char *uid;         /* owned; a uid not in the canonical form the record packs (rec->uid) */
  /* The target's container environment (KEDA's ResolvedEnv), fetched once per start when a
   * trigger asks for it (a *FromEnv parameter) or its TriggerAuthentication has spec.env. */
  evs_triggerauth_req_t *env_req;
  evs__map_t *env;
  char *env_error;
  /* The hand-over: the fallback HPA's create/delete and the annotations in flight. */
  evs_fallbackhpa_op_t *hpa_op, *ann_op;
  /* The restore-on-delete finalizer: the object's finalizers and resourceVersion as last seen
   * (kept only while evscale's finalizer is on the object or wanted), the patch in flight. */
  char **finalizers;
  size_t n_finalizers;
  char *rv;
  evs_kube_req_t *fin_req;
  /* creationTimestamp and the status' lastActiveTime while the record has no engine state (an
   * object broken from the start, or out of memory): the state holds them otherwise. */
  int64_t created_ms, last_active_ms;
} evs__rare_t;

/* The write in flight (NULL otherwise): allocated per write, as most objects have none in
 * flight and the step is ~350 B (issue 13's memory goal). */
typedef struct {
  evs_step_t step;        /* the decision behind it: step.current -> step.replicas */
  uint64_t decided_by_ns; /* uv_hrtime of the reading behind it */
} evs__write_t;

/* What `kubectl get hpa` showed KEDA users (each trigger's value against its target, desired
 * against current replicas), in the Active condition's message: refreshed on a change of the
 * replicas or the activity, otherwise at most once a minute, so values that move with every
 * reading do not mean a status write per reading. The record keeps the figures of the last
 * refresh (its time, the replicas, the activity in the record; the triggers' values here) and the
 * text is written again from them and the spec whenever a status is built (evs__detail_text): the
 * text itself was 71 B of each of 50,000 objects (issue 13). Only objects with a trigger that had
 * a value keep these; one whose triggers all failed keeps none. */
typedef struct {
  uint32_t n; /* the triggers the text lists */
  double v[]; /* their values, NAN when a trigger had none (a reading's value never is NAN) */
} evs__figures_t;

struct evs__rec_s {
  evs__rec_t *next;  /* hash chain */
  evs__rec_t *tnext; /* in target->recs (singly linked: a target has one record or a few) */
  evs_registry_t *reg;
  const char *ns; /* a reference into reg->intern (50,000 objects, a few namespaces) */
  evs_so_t *so;   /* owned; NULL = broken */
  evs__rare_t *x; /* NULL while it needs none of those parts */
  evs_engine_state_t *est;
  evs__target_t *target;
  evs_keda_metrics_object_t *km; /* its series; NULL without metrics or when broken */
  evs__write_t *inflight;
  evs__figures_t *figures; /* the Active detail's values (see evs__figures_t); NULL: none */
  /* Triggers: the first embedded, the others each allocated alone (a kept scaler's callback
   * data never moves: the record outlives its scalers). */
  evs__trig_t **more;
  /* The Active detail's last refresh (wall-clock ms; 0 = none yet), with the replicas and the
   * activity it showed (detail_active). */
  int64_t detail_ms;
  int32_t detail_current, detail_desired;
  /* Its evaluation (an entry of reg->tq: 32 B where a uv_timer_t was 152, issue 13); after
   * removal, the tick that frees it from the loop. */
  evs_timerq_entry_t timer;
  int64_t timer_due_ms; /* wall-clock ms of the armed evaluation; 0 = none */
  uint64_t cadence_ms;
  uint64_t last_reading_ns; /* uv_hrtime of the last reading */
  /* The breaker: NULL while in evs_breaker_init's state, as an object that never scaled keeps it
   * (issue 13: 96 B each of 50,000 idle objects); allocated when a decision first changes it. */
  evs_breaker_t *br;
  evs__trig_t trig0;
  int32_t original_replicas;
  int32_t dry_logged; /* the last count logged in dry-run; -1 none */
  unsigned pending;   /* scaler closes, the write in flight: the record lives until 0 */
  uint32_t n_trig;
  uint8_t uid[16];     /* the canonical uid packed (has_uid); another form lives in x->uid */
  unsigned origin : 1; /* evs_registry_origin_t */
  unsigned has_uid : 1;
  unsigned writing : 1, dirty : 1, removed : 1, running : 1, timer_closed : 1;
  unsigned was_paused : 1; /* the status said it has been paused (see evs_registry_object_t) */
  unsigned dry_listed : 1; /* --dry-run listed it (target, replicas, decision) once */
  unsigned env_state : 2;  /* 0 not fetched, 1 fetching, 2 done, 3 failed */
  /* Whether the object was last seen carrying the triggered annotation (an operator removing it
   * resets), and whether the fallback HPA is wanted. */
  unsigned seen_triggered : 1, hpa_wanted : 1;
  /* Being deleted, the restore write in flight, restored. */
  unsigned deleting : 1, restoring : 1, restored : 1;
  unsigned detail_active : 1;
  unsigned est_inline : 1; /* est lives in this allocation, after the key */
  uint16_t st_decision;    /* its last decision's part of the status (evs__stdec_index); 0 = none */
  /* Where its name starts in key: the tail, or after it for a key cut short (an offset, not a
   * pointer: 8 B of 50,000 records, issue 13). */
  uint16_t name_off;
  char key[]; /* "ns/name" */
};

/* The parts of a target few have, allocated on first use (issue 13: most targets never need
 * them) and kept with the target: another writer (kubectl scale, a GitOps tool's self-heal)
 * changing spec.replicas, with the times of its last changes and evscale's back-off while it
 * fights (doubling up to 5 minutes); an HPA evscale did not create driving it. */
typedef struct {
  int64_t ext_ms[EVS__EXT_KEEP];
  int n_ext;
  int64_t backoff_until_ms, backoff_ms, backoff_since_ms;
  char *other_manager;
  char *foreign_hpa;
  /* Adoption (kubernetes.adopt_keda_hpas): when evscale last sent the delete of KEDA's HPA on
   * this target (wall-clock ms, 0 none) and that HPA's uid (see evs_adopt_step). */
  int64_t adopt_ms;
  char *adopt_uid;
  unsigned char adopt_mode; /* the evs__adopt_mode_t evs__elect last refused by */
} evs__contest_t;

struct evs__target_s {
  evs__target_t *next;
  const char *ns; /* interned */
  /* Its kind: one string of reg->intern, "apiVersion\0group\0version\0kind", that thousands of
   * targets of the kind share (read with evs__t_group and the others). */
  const char *gvk;
  const char *resource; /* interned; NULL when the kind cannot be scaled (error says why) */
  char *error;          /* the kind cannot be scaled (no scale subresource on this server) */
  evs__contest_t *ext;  /* NULL until another writer changed it or a foreign HPA named it */
  evs_list_t flink;
  evs__rec_t *recs; /* the records naming it, in the order they came (through rec->tnext) */
  evs__rec_t *driver;
  /* The reads that failed in a row wait: the next one 2 s doubled per failure, a minute at most. */
  int64_t fetch_retry_ms;
  int64_t fetched_ms;
  int64_t last_written_ms;
  int32_t spec, status, ready;
  int32_t last_written; /* the count evscale last wrote (-1 none): its own change seen back */
  /* A watch (or a /scale read sent before the write) may deliver the state from before
   * evscale's write after the write's answer: until the count written is seen back (or
   * EVS__AWAIT_MS after the write passed), an observation of another count is older than the
   * write and is ignored, not taken for the target's count (that would write the same change
   * again). */
  int32_t await_own;
  unsigned refs; /* records naming it + a fetch in flight */
  unsigned known : 1, fetching : 1;
  /* Waiting for a /scale read slot (in reg->fetch_wait, holding a reference); reads failed in a
   * row (at most 5). */
  unsigned fetch_queued : 1, fetch_fails : 3;
  /* cached: a watch cache reports it (Deployments, StatefulSets). Other kinds are read through
   * /scale: once at start, then again at the record's cadence and a second after each write
   * (their status follows the spec only once their controller has acted). */
  unsigned cached : 1;
  unsigned ext_pending : 1; /* another writer's change not yet answered by a decision */
  /* Where its name starts in key: the tail, or after it for a key cut short (see the record's). */
  uint16_t name_off;
  char key[]; /* group/Kind/ns/name */
};

static const char *evs__rec_name(const evs__rec_t *r) { return r->key + r->name_off; }
static const char *evs__t_name(const evs__target_t *t) { return t->key + t->name_off; }

static const char *evs__t_api_version(const evs__target_t *t) { return t->gvk; }
static const char *evs__t_group(const evs__target_t *t) { return t->gvk + strlen(t->gvk) + 1; }
static const char *evs__t_version(const evs__target_t *t) {
  const char *g = evs__t_group(t);
  return g + strlen(g) + 1;
}
static const char *evs__t_kind(const evs__target_t *t) {
  const char *v = evs__t_version(t);
  return v + strlen(v) + 1;
}

static const char *evs__foreign_hpa(const evs__target_t *t) {
  return t->ext ? t->ext->foreign_hpa : NULL;
}

/* The target's rare parts (NULL: out of memory). */
static evs__contest_t *evs__target_ext(evs__target_t *t) {
  if (t->ext == NULL)
    t->ext = calloc(1, sizeof *t->ext);
  return t->ext;
}

static int64_t evs__backoff_until(const evs__target_t *t) {
  return t->ext ? t->ext->backoff_until_ms : 0;
}

static const char *evs__other_manager(const evs__target_t *t) {
  return t->ext && t->ext->other_manager ? t->ext->other_manager : "unknown";
}

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
  /* Its uid and controller ownerReference (NULL when none): what adoption checks. All the
   * strings live in this allocation (HPAs are few: one per target at most). */
  char *uid, *owner_api_version, *owner_kind, *owner_name, *owner_uid;
} evs__hpa_t;

/* A delete of KEDA's HPA in flight (adoption), in reg->adopt_ops until it answers. */
typedef struct {
  evs_list_t link;
  evs_registry_t *reg;
  evs_kube_req_t *req;
  char *ns, *name; /* the HPA's, in this allocation */
  char key[];      /* its target's */
} evs__adopt_op_t;

/* A decision's part of a status: its conditions (the engine's static strings), its activity and
 * whether health is reported (see evs__status_pull). */
typedef struct {
  evs_condition_t c[EVS_COND__COUNT];
  uint8_t active, health_reported;
} evs__stdec_t;

struct evs_registry_s {
  /* The distinct decision parts of the statuses (few: the engine's texts); a record holds the
   * index + 1 of its own (st_decision), so a status can be built on the patcher's turn. */
  evs__stdec_t *stdecs;
  size_t n_stdecs, cap_stdecs;
  evs_registry_options_t o;
  char *default_ns;
  evs__table_t recs, targets, hpas;
  /* Strings thousands of records and targets share: namespaces, the targets' group, version,
   * kind, apiVersion and resource (issue 13). Not the triggers' messages: they name the object's
   * own key or query, and an interned string costs more than a copy when nothing shares it. */
  evs_intern_t *intern;
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
  evs_list_t fetching; /* the reads in flight (evs__fetch_t) */
  unsigned fetch_inflight;
  /* Adoption: the deletes of KEDA's HPAs in flight (evs__adopt_op_t), and one timer for every
   * target: the end of the earliest re-creation window or retry (wall-clock ms of adopt_due_ms;
   * then every target with a candidate HPA is looked at again). */
  evs_list_t adopt_ops;
  evs_timerq_entry_t adopt_timer;
  int64_t adopt_due_ms;
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

static evs__trig_t *evs__trig(evs__rec_t *r, size_t i) {
  return i == 0 ? &r->trig0 : r->more[i - 1];
}

static evs__rec_t *evs__trig_rec(evs__trig_t *tr) {
  return tr->index == 0 ? evs_container_of(tr, evs__rec_t, trig0)
                        : evs_container_of(tr, evs__trig_more_t, tr)->rec;
}

/* Trigger i > 0 of r, each allocated alone: a kept scaler's callback data never moves. */
static evs__trig_t *evs__trig_new(evs__rec_t *r, size_t i) {
  evs__trig_more_t *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  m->rec = r;
  m->tr.index = (uint32_t)i;
  return &m->tr;
}

static void evs__trig_free(evs__trig_t *tr) {
  if (tr)
    free(evs_container_of(tr, evs__trig_more_t, tr));
}

/* The record's rare parts, allocated on first use (NULL: out of memory). */
static evs__rare_t *evs__rare(evs__rec_t *r) {
  if (r->x == NULL)
    r->x = calloc(1, sizeof *r->x);
  return r->x;
}

/* Frees the rare parts once none is in use. */
static void evs__rare_trim(evs__rec_t *r) {
  evs__rare_t *x = r->x;
  if (x && !x->check_error && !x->refusal && !x->uid && !x->env_req && !x->env && !x->env_error &&
      !x->hpa_op && !x->ann_op && !x->finalizers && !x->rv && !x->fin_req &&
      (r->est != NULL || (!x->created_ms && !x->last_active_ms))) {
    free(x);
    r->x = NULL;
  }
}

static const evs_breaker_t evs__br_none; /* evs_breaker_init's state: all zero */

static const evs_breaker_t *evs__br(const evs__rec_t *r) { return r->br ? r->br : &evs__br_none; }

static int evs__br_is_none(const evs_breaker_t *b) {
  if (b->opened_ms || b->closed_ms || b->last_write_ms || b->newest_ms || b->cooldown_ms ||
      b->open || b->last_dir || b->n_events)
    return 0;
  for (size_t i = 0; i < sizeof b->age_ms / sizeof b->age_ms[0]; i++)
    if (b->age_ms[i])
      return 0;
  return 1;
}

/* creationTimestamp and lastActiveTime: the engine state's (it moves the latter), else the
 * rare part's (not one copy in the record and one in the state: 16 B of 50,000, issue 13). */
static int64_t evs__created(const evs__rec_t *r) {
  return r->est ? r->est->created_ms : r->x ? r->x->created_ms : 0;
}
static int64_t evs__last_active(const evs__rec_t *r) {
  return r->est ? r->est->last_active_ms : r->x ? r->x->last_active_ms : 0;
}

static const char *evs__refusal(const evs__rec_t *r) { return r->x ? r->x->refusal : NULL; }
static const char *evs__check_error(const evs__rec_t *r) { return r->x ? r->x->check_error : NULL; }

/* Kubernetes uids are lowercase 8-4-4-4-12 hex UUIDs: packed into 16 bytes in the record, a
 * strdup'ed copy saved (issue 13). Any other form is kept as it came, in the rare parts. */
static int evs__uid_pack(const char *s, uint8_t out[16]) {
  static const char dash[] = {8, 13, 18, 23};
  if (strlen(s) != 36)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < 36;) {
    if (i == (size_t)dash[0] || i == (size_t)dash[1] || i == (size_t)dash[2] ||
        i == (size_t)dash[3]) {
      if (s[i++] != '-')
        return -1;
      continue;
    }
    int v = 0;
    for (int k = 0; k < 2; k++, i++) {
      char c = s[i];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
    out[o++] = (uint8_t)v;
  }
  return 0;
}

/* The uid as a string (in buf when packed), NULL when it has none. */
static const char *evs__uid(const evs__rec_t *r, char buf[37]) {
  if (!r->has_uid)
    return r->x ? r->x->uid : NULL;
  static const char hex[] = "0123456789abcdef";
  char *p = buf;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex[r->uid[i] >> 4];
    *p++ = hex[r->uid[i] & 15];
  }
  *p = '\0';
  return buf;
}

/* Sets the uid (NULL: none). 0 or UV_ENOMEM (the old one kept). */
static int evs__set_uid(evs__rec_t *r, const char *uid) {
  uint8_t packed[16];
  if (uid && evs__uid_pack(uid, packed) == 0) {
    memcpy(r->uid, packed, sizeof packed);
    r->has_uid = 1;
    if (r->x) {
      free(r->x->uid);
      r->x->uid = NULL;
    }
    return 0;
  }
  char *copy = NULL;
  if (uid && (evs__rare(r) == NULL || (copy = strdup(uid)) == NULL))
    return UV_ENOMEM;
  r->has_uid = 0;
  if (r->x) {
    free(r->x->uid);
    r->x->uid = copy;
  }
  return 0;
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
  if (spec == t->await_own || evs__wall_ms() >= t->last_written_ms + EVS__AWAIT_MS) {
    t->await_own = -1;
    return 0;
  }
  return 1;
}

static void evs__target_free(evs_registry_t *reg, evs__target_t *t) {
  /* key and name live in t's own allocation. */
  evs_intern_release(reg->intern, t->ns);
  evs_intern_release(reg->intern, t->gvk);
  evs_intern_release(reg->intern, t->resource);
  free(t->error);
  if (t->ext) {
    free(t->ext->other_manager);
    free(t->ext->foreign_hpa);
    free(t->ext->adopt_uid);
  }
  free(t->ext);
  free(t);
}

static void evs__target_unref(evs_registry_t *reg, evs__target_t *t) {
  if (--t->refs > 0)
    return;
  evs__table_del(&reg->targets, evs__target_key, t);
  evs__target_free(reg, t);
}

/* Resolves kind -> resource through discovery (any kind with a scale subresource), or the
 * built-in apps/v1 Deployment and StatefulSet when there is no discovery. */
static void evs__target_resolve(evs_registry_t *reg, evs__target_t *t) {
  const char *resource = NULL;
  if (reg->o.discovery) {
    /* Discovery lists the group's preferred version; the resource name is the same in every
     * version, and the ScaledObject's own apiVersion is the one written to. */
    const evs_kube_scalable_t *s =
        evs_kube_discovery_find(reg->o.discovery, evs__t_group(t), evs__t_kind(t));
    if (s)
      resource = s->resource;
  } else if (strcmp(evs__t_group(t), "apps") == 0) {
    if (strcmp(evs__t_kind(t), "Deployment") == 0)
      resource = "deployments";
    else if (strcmp(evs__t_kind(t), "StatefulSet") == 0)
      resource = "statefulsets";
  }
  free(t->error);
  t->error = NULL;
  evs_intern_release(reg->intern, t->resource);
  t->resource = NULL;
  if (resource == NULL) {
    char buf[512];
    snprintf(buf, sizeof buf,
             "spec.scaleTargetRef: kind %s of %s has no scale subresource on this API server",
             evs__t_kind(t), evs__t_api_version(t));
    t->error = strdup(buf);
    return;
  }
  t->resource = evs_intern_str(reg->intern, resource);
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
  /* The key in the target's own allocation, the name the key's tail (one malloc instead of
   * seven: a target per ScaledObject, 50,000 of them, issue 13); the namespace and the kind
   * (apiVersion, group, version, kind) interned. */
  size_t lk = strlen(key) + 1, lm = strlen(so->target_name) + 1;
  /* A key cut at its buffer's size does not end with the name: the name is copied then. */
  int tail = lk >= lm && strcmp(key + (lk - lm), so->target_name) == 0;
  t = calloc(1, offsetof(evs__target_t, key) + lk + (tail ? 0 : lm));
  if (t == NULL)
    return NULL;
  memcpy(t->key, key, lk);
  if (!tail)
    memcpy(t->key + lk, so->target_name, lm);
  t->name_off = (uint16_t)(tail ? lk - lm : lk);
  t->ns = evs_intern_str(reg->intern, ns);
  const char *gvk[4] = {so->target_api_version, g, v, so->target_kind};
  size_t gl[4], gtotal = 0;
  for (int i = 0; i < 4; i++)
    gtotal += (gl[i] = strlen(gvk[i]) + 1);
  char *gbuf = malloc(gtotal);
  if (gbuf) {
    for (size_t i = 0, off = 0; i < 4; off += gl[i], i++)
      memcpy(gbuf + off, gvk[i], gl[i]);
    t->gvk = evs_intern(reg->intern, gbuf, gtotal - 1);
    free(gbuf);
  }
  if (t->gvk == NULL || t->ns == NULL) {
    evs__target_free(reg, t);
    return NULL;
  }
  t->spec = t->status = t->ready = -1;
  t->last_written = -1;
  t->await_own = -1;
  t->refs = 1;
  if (evs__table_put(&reg->targets, evs__target_key, t) != 0) {
    evs__target_free(reg, t);
    return NULL;
  }
  evs__target_resolve(reg, t);
  evs__hpa_t *h = evs__table_get(&reg->hpas, evs__hpa_key, key);
  if (h)
    if (evs__target_ext(t))
      t->ext->foreign_hpa = strdup(h->name);
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

/* Forgets a stopped trigger's state (its last reading). */
static void evs__trig_clear(evs__rec_t *r, evs__trig_t *tr) {
  (void)r;
  *tr = (evs__trig_t){.index = tr->index};
}

static void evs__free_trigs(evs__rec_t *r) {
  for (size_t i = 0; i < r->n_trig; i++) {
    evs__trig_t *tr = evs__trig(r, i);
    evs__trig_clear(r, tr);
    if (i > 0)
      evs__trig_free(tr);
  }
  free(r->more);
  r->more = NULL;
  r->n_trig = 0;
}

static void evs__rec_free(evs__rec_t *r) {
  evs_registry_t *reg = r->reg;
  evs__free_trigs(r);
  if (r->x) {
    evs__map_free(&r->x->env);
    free(r->x->env_error);
    evs__strv_free(r->x->finalizers, r->x->n_finalizers);
    free(r->x->rv);
    free(r->x->check_error);
    free(r->x->refusal);
    free(r->x->uid);
    free(r->x);
  }
  free(r->figures);
  free(r->inflight);
  free(r->br);
  evs_keda_metrics_object_free(r->km);
  if (r->est_inline)
    evs_engine_state_fini(r->est); /* in r's allocation */
  else
    evs_engine_state_free(r->est);
  evs_so_free(r->so);
  evs_intern_release(reg->intern, r->ns); /* key and name live in r's allocation */
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
  tr->auth_done = 0;
  if (tr->scaler == NULL)
    return;
  evs_scaler_t *s = tr->scaler;
  tr->scaler = NULL;
  r->pending++;
  evs_scaler_close(s, evs__scaler_closed, r);
}

static void evs__stop_scalers(evs__rec_t *r) {
  if (r->x) {
    if (r->x->env_req) {
      evs_triggerauth_cancel(r->x->env_req);
      r->x->env_req = NULL;
    }
    evs__map_free(&r->x->env);
    free(r->x->env_error);
    r->x->env_error = NULL;
    evs__rare_trim(r);
  }
  r->env_state = 0;
  for (size_t i = 0; i < r->n_trig; i++)
    evs__stop_trigger(r, evs__trig(r, i));
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
  char uid[37];
  const char *u = evs__uid(r, uid);
  if (reg->o.events == NULL || !reg->leading || u == NULL || r->origin != EVS_REGISTRY_API ||
      reg->o.dry_run)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  evs_event_t e = {.ns = r->ns,
                   .name = evs__rec_name(r),
                   .uid = u,
                   .type = type,
                   .reason = reason,
                   .message = msg};
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
    evs__trig_t *tr = evs__trig(r, i);
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
  snprintf(buf, cap, "%s.%s", evs__t_api_version(t), evs__t_kind(t));
  return buf;
}

static void evs__set_refusal(evs__rec_t *r, const char *msg) {
  if (evs__streq(evs__refusal(r), msg))
    return;
  if (msg && evs__rare(r) == NULL)
    return;
  if (r->x) {
    free(r->x->refusal);
    r->x->refusal = evs__strdup(msg);
    evs__rare_trim(r);
  }
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
    if (evs__trig(r, i)->scaler)
      (void)evs_scaler_set_cadence(evs__trig(r, i)->scaler, every);
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

static void evs__written(evs__rec_t *r, const evs_scale_result_t *res, const evs__write_t *w);

static void evs__on_written(evs_scalewriter_t *sw, const evs_scale_result_t *res, void *arg) {
  (void)sw;
  evs__rec_t *r = arg;
  /* Taken before the record may be freed below. */
  evs__write_t *w = r->inflight;
  r->inflight = NULL;
  evs__written(r, res, w);
  free(w);
}

static void evs__written(evs__rec_t *r, const evs_scale_result_t *res, const evs__write_t *w) {
  evs_registry_t *reg = r->reg;
  /* The write's step (NULL for a restore write, answered below before these are read). */
  const evs_step_t *step = w ? &w->step : NULL;
  int32_t w_current = step ? step->current : -1, w_replicas = step ? step->replicas : -1;
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
    if (r->km && w && res->written != w_current)
      evs_keda_metrics_scaled(r->km, res->written > w_current ? EVS_KEDA_DIR_UP : EVS_KEDA_DIR_DOWN,
                              (double)(uv_hrtime() - w->decided_by_ns) / 1e9);
    if (t) {
      t->last_written = res->written;
      t->last_written_ms = now;
      t->await_own = res->written;
      t->spec = res->replicas >= 0 ? res->replicas : res->written;
      if (res->status_replicas >= 0)
        t->status = res->status_replicas;
      t->known = 1;
    }
    if (t && (w_current == 0 || res->written == 0) && w_current != res->written) {
      char gvk[256];
      if (res->written > 0)
        evs__event(r, EVS_EVENT_NORMAL, EVS_REASON_SCALE_TARGET_ACTIVATED,
                   "Scaled %s %s/%s from %d to %d", evs__target_gvk(t, gvk, sizeof gvk), t->ns,
                   evs__t_name(t), (int)w_current, (int)res->written);
      else
        evs__event(r, EVS_EVENT_NORMAL, EVS_REASON_SCALE_TARGET_DEACTIVATED,
                   "Deactivated %s %s/%s from %d to %d", evs__target_gvk(t, gvk, sizeof gvk), t->ns,
                   evs__t_name(t), (int)w_current, (int)res->written);
    }
    if (t && !t->cached) {
      /* Its status follows once its controller has acted: read it again in a second. */
      t->fetched_ms = now - EVS__REFRESH_MS + 1000;
    }
    EVS_LOG_INFO("scaled", EVS_KV_STR("scaledobject", r->key),
                 EVS_KV_STR("target", t ? t->key : ""), EVS_KV_INT("from", w_current),
                 EVS_KV_INT("to", res->written),
                 EVS_KV_STR("reason", step ? evs_engine_reason_name(step->decision.reason) : ""));
    evs__cadence(r);
  } else {
    reg->st.writes_failed++;
    EVS_LOG_ERROR("scale write failed", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_STR("path", res->path ? res->path : ""), EVS_KV_INT("status", res->status),
                  EVS_KV_STR("error", res->err ? evs_strerror(res->err) : res->message),
                  EVS_KV_INT("replicas", res->written));
    if (t && (w_current == 0 || w_replicas == 0)) {
      char gvk[256];
      evs__event(r, EVS_EVENT_WARNING,
                 w_replicas > 0 ? EVS_REASON_SCALE_TARGET_ACTIVATION_FAILED
                                : EVS_REASON_SCALE_TARGET_DEACTIVATION_FAILED,
                 "Failed to %s %s %s/%s from %d to %d", w_replicas > 0 ? "scale" : "deactivate",
                 evs__target_gvk(t, gvk, sizeof gvk), t->ns, evs__t_name(t), (int)w_current,
                 (int)w_replicas);
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
  r->x->hpa_op = NULL;
  evs__rare_trim(r);
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
  r->x->ann_op = NULL;
  evs__rare_trim(r);
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
  evs_breaker_encode(evs__br(r), state, sizeof state);
  /* The operator's reset is "the triggered annotation we saw is gone while open". Our own
   * writes change it too, and the watch echoes them late: the echo of a close's removal may
   * arrive after the next trip (ci8: a trip 91 ms after a close was undone as a "reset"). So
   * what we write is not "seen" until the watch shows it: after a close there is nothing to
   * remove, and after a trip the annotation counts once its echo arrives. */
  r->seen_triggered = 0;
  evs__rare_t *x = evs__rare(r);
  if (x == NULL) {
    EVS_LOG_ERROR("cannot annotate the ScaledObject with the breaker's state",
                  EVS_KV_STR("scaledobject", r->key), EVS_KV_ERR("err", UV_ENOMEM));
    return;
  }
  if (x->ann_op)
    evs_fallbackhpa_cancel(x->ann_op);
  x->ann_op = NULL;
  if (evs_fallbackhpa_annotate(reg->o.kube, r->ns, evs__rec_name(r), open ? "true" : NULL, state,
                               evs__on_annotated, r, &x->ann_op) != 0) {
    x->ann_op = NULL;
    evs__rare_trim(r);
  }
}

static void evs__hpa_apply(evs__rec_t *r, int want, int32_t fallback_min) {
  evs_registry_t *reg = r->reg;
  evs__target_t *t = r->target;
  r->hpa_wanted = !!want;
  char uid_buf[37];
  const char *uid = evs__uid(r, uid_buf);
  if (reg->o.kube == NULL || reg->o.dry_run || t == NULL || uid == NULL ||
      r->origin != EVS_REGISTRY_API || reg->o.hpa_version == NULL ||
      (strcmp(reg->o.hpa_version, "v2") != 0 && strcmp(reg->o.hpa_version, "v2beta2") != 0)) {
    if (want)
      EVS_LOG_WARN("circuit breaker open without a fallback HPA (no autoscaling/v2 or v2beta2, "
                   "or not an API object): holding the target",
                   EVS_KV_STR("scaledobject", r->key));
    return;
  }
  evs__rare_t *x = evs__rare(r);
  if (x == NULL) {
    EVS_LOG_ERROR("cannot send the fallback HPA request", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_ERR("err", UV_ENOMEM));
    return;
  }
  if (x->hpa_op)
    evs_fallbackhpa_cancel(x->hpa_op);
  x->hpa_op = NULL;
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
        .so_name = evs__rec_name(r),
        .so_uid = uid,
        .target_api_version = r->so->target_api_version,
        .target_kind = r->so->target_kind,
        .target_name = r->so->target_name,
        .min_replicas = min,
        .max_replicas = max,
        .resource = reg->o.fallback_resource ? reg->o.fallback_resource : "cpu",
        .utilization = reg->o.fallback_utilization > 0 ? reg->o.fallback_utilization : 50};
    rc = evs_fallbackhpa_ensure(reg->o.kube, &spec, evs__on_hpa, r, &x->hpa_op);
  } else {
    rc = evs_fallbackhpa_delete(reg->o.kube, reg->o.hpa_version, r->ns, r->so->hpa_name, uid,
                                evs__on_hpa, r, &x->hpa_op);
  }
  if (rc != 0) {
    x->hpa_op = NULL;
    evs__rare_trim(r);
    EVS_LOG_ERROR("cannot send the fallback HPA request", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_ERR("err", rc));
  }
}

static void evs__hand_over(evs__rec_t *r, int open, int32_t fallback_min) {
  EVS_LOG_WARN(open ? "circuit breaker open: target handed to the fallback HPA"
                    : "circuit breaker closed: evscale scales the target again",
               EVS_KV_STR("scaledobject", r->key), EVS_KV_INT("fallback_min", fallback_min),
               EVS_KV_INT("cooldown_ms", evs__br(r)->cooldown_ms));
  if (open)
    evs__event(r, EVS_EVENT_WARNING, EVS_REASON_BREAKER_OPEN,
               "Circuit breaker open: the target scaled too often; handed to the fallback HPA "
               "(minReplicas %d) for %lld s",
               (int)fallback_min, (long long)(evs__br(r)->cooldown_ms / 1000));
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

static int evs__has_finalizer_in(const char *const *v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    if (strcmp(v[i], EVS_REGISTRY_FINALIZER) == 0)
      return 1;
  return 0;
}

static int evs__has_finalizer(const evs__rec_t *r) {
  return r->x && evs__has_finalizer_in((const char *const *)r->x->finalizers, r->x->n_finalizers);
}

static void evs__on_finalizer(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                              const char *msg, void *arg) {
  (void)req;
  evs__rec_t *r = arg;
  r->x->fin_req = NULL;
  evs__rare_trim(r);
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
      r->x == NULL || r->x->fin_req || r->restoring || r->removed || r->x->rv == NULL)
    return;
  int has = evs__has_finalizer(r);
  int want = r->so && r->so->restore_to_original && !r->deleting;
  if (r->deleting && has && !r->restored) {
    int32_t count = r->so ? evs_so_deletion_replicas(r->so, r->original_replicas) : -1;
    evs__target_t *t = r->target;
    if (count >= 0 && t && t->resource && reg->o.writer && !r->writing) {
      evs_scale_target_t target = {.group = evs__t_group(t),
                                   .version = evs__t_version(t),
                                   .resource = t->resource,
                                   .ns = t->ns,
                                   .name = evs__t_name(t)};
      if (evs_scalewriter_write(reg->o.writer, &target, count, evs__on_written, r) == 0) {
        r->restoring = 1;
        r->pending++;
      }
      return;
    }
    if (count >= 0 && r->writing)
      return; /* after the write in flight */
    r->restored = 1;
  }
  if (want == has)
    return;
  evs__rare_t *x = r->x;
  json_t *list = json_array();
  for (size_t i = 0; list && i < x->n_finalizers; i++)
    if (strcmp(x->finalizers[i], EVS_REGISTRY_FINALIZER) != 0)
      json_array_append_new(list, json_string(x->finalizers[i]));
  if (list && want)
    json_array_append_new(list, json_string(EVS_REGISTRY_FINALIZER));
  json_t *body =
      json_pack("{s:{s:o,s:s}}", "metadata", "finalizers", list, "resourceVersion", x->rv);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (text == NULL)
    return;
  char path[1024];
  snprintf(path, sizeof path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/%s", r->ns,
           evs__rec_name(r));
  evs_kube_request_opts_t o = {.verb = "PATCH",
                               .path = path,
                               .content_type = EVS_KUBE_MERGE_PATCH,
                               .body = text,
                               .body_len = strlen(text),
                               .priority = EVS_PRIO_NORMAL,
                               .on_done = evs__on_finalizer,
                               .arg = r};
  if (evs_kube_request(reg->o.kube, &o, &x->fin_req) == 0) {
    r->pending++;
    EVS_LOG_INFO(want ? "finalizer added (restoreToOriginalReplicaCount)" : "finalizer removed",
                 EVS_KV_STR("scaledobject", r->key));
  } else {
    x->fin_req = NULL;
  }
  free(text);
}

/* The back-off's end: if the other writer changed the target during it, it goes on (doubled);
 * otherwise evscale resumes. */
static void evs__backoff_end(evs__rec_t *r, evs__target_t *t, int64_t now) {
  evs__contest_t *c = t->ext; /* a back-off was on */
  int fought = c->n_ext > 0 && c->ext_ms[(c->n_ext - 1) % EVS__EXT_KEEP] > c->backoff_since_ms;
  if (fought) {
    c->backoff_ms =
        c->backoff_ms * 2 > EVS__BACKOFF_MAX_MS ? EVS__BACKOFF_MAX_MS : c->backoff_ms * 2;
    c->backoff_since_ms = now;
    c->backoff_until_ms = now + c->backoff_ms;
    EVS_LOG_WARN("another writer still changes the scale target: backing off longer",
                 EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("target", t->key),
                 EVS_KV_STR("manager", evs__other_manager(t)),
                 EVS_KV_INT("backoff_ms", c->backoff_ms));
    return;
  }
  EVS_LOG_INFO("the other writer stopped: evscale scales the target again",
               EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("target", t->key));
  c->backoff_until_ms = 0;
  c->backoff_ms = 0;
  c->n_ext = 0;
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
  if (t->error || evs__refusal(r)) {
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
    readings[i] = evs__trig_reading(evs__trig(r, i));
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
  int64_t backoff_until = evs__backoff_until(t);
  int backing_off = backoff_until > now;
  /* The decision that answers another writer's change is no scale event of evscale's either:
   * counting it would trip the breaker on an operator's kubectl scale. */
  if ((backing_off || t->ext_pending) && !evs__br(r)->open)
    quiet.enabled = 0;
  int quiet_step = !quiet.enabled;
  t->ext_pending = 0;
  /* A breaker in its initial state is not kept: one is allocated for the step and kept only if
   * the step changed it (allocated first, so the step's effect is never lost). */
  evs_breaker_t *br = r->br ? r->br : calloc(1, sizeof *br);
  int rc = br ? evs_step(r->so, &reg->o.engine, quiet_step ? &quiet : &reg->o.breaker, r->est, br,
                         &in, &st)
              : UV_ENOMEM;
  if (br && r->br == NULL) {
    if (evs__br_is_none(br))
      free(br);
    else
      r->br = br;
  }
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
                 EVS_KV_STR("target_name", evs__t_name(t)), EVS_KV_INT("replicas", st.current),
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
    if (st.next_eval_ms > backoff_until)
      st.next_eval_ms = backoff_until;
  } else if (backoff_until && backoff_until <= now) {
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
      evs_scale_target_t target = {.group = evs__t_group(t),
                                   .version = evs__t_version(t),
                                   .resource = t->resource,
                                   .ns = t->ns,
                                   .name = evs__t_name(t)};
      free(r->inflight);
      r->inflight = malloc(sizeof *r->inflight);
      if (r->inflight != NULL) {
        r->inflight->step = st;
        r->inflight->decided_by_ns = r->last_reading_ns ? r->last_reading_ns : uv_hrtime();
      }
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
  /* No verdict yet from every trigger (a start, a new leader): a status the server holds is the
   * latest word, not "ready" from no reading at all (a restart rewrote a failing trigger's
   * TriggerError to Ready, then back); an object with none gets its first status now. */
  if (st.decision.reason != EVS_REASON_NO_METRICS || reg->o.status == NULL ||
      !evs_status_patcher_known(reg->o.status, r->ns, evs__rec_name(r)))
    evs__status(r, &st.decision);
  if (!r->writing || st.next_eval_ms == INT64_MAX)
    evs__arm(r, st.next_eval_ms, now);
}

/* ---------------------------------------------------------------------------------------------
 * Status */

/* The status patcher writes a few objects at a time and asks for a waiting object's status when
 * its turn comes (evs__status_pull), so the record must say its status at any time without
 * keeping its last decision (~350 B): what the status takes from a decision beyond the record
 * and the engine state (health, last active time) is its conditions (static strings), its
 * activity and whether health is reported. Those combinations are few (the engine's texts), so
 * each is kept once for the process (the loop thread's) and a record holds its index. */

/* The index + 1 of d's status part, 0 when it cannot be kept (then no pull: the next decision
 * writes). */
static uint16_t evs__stdec_index(evs_registry_t *reg, const evs_decision_t *d) {
  for (size_t i = 0; i < reg->n_stdecs; i++) {
    const evs__stdec_t *s = &reg->stdecs[i];
    int same = s->active == d->active && s->health_reported == d->health_reported;
    for (int c = 0; same && c < EVS_COND__COUNT; c++)
      same = s->c[c].status == d->conditions[c].status &&
             s->c[c].reason == d->conditions[c].reason &&
             s->c[c].message == d->conditions[c].message;
    if (same)
      return (uint16_t)(i + 1);
  }
  if (reg->n_stdecs >= UINT16_MAX ||
      evs_buf_reserve((void **)&reg->stdecs, &reg->cap_stdecs, reg->n_stdecs + 1,
                      sizeof *reg->stdecs, 16) != 0)
    return 0;
  evs__stdec_t *s = &reg->stdecs[reg->n_stdecs++];
  memcpy(s->c, d->conditions, sizeof s->c);
  s->active = d->active;
  s->health_reported = d->health_reported;
  return (uint16_t)reg->n_stdecs;
}

static const char *evs__status_error(const evs__rec_t *r) {
  const char *err = evs__check_error(r);
  if (err == NULL && r->target && r->target->error)
    err = r->target->error;
  if (err == NULL)
    err = evs__refusal(r);
  return err;
}

/* Whether d has a value for a trigger the figures have none for (its first reading since the
 * figures were taken: "-" must not stay up to a minute). */
static int evs__figures_gained(const evs__rec_t *r, const evs_decision_t *d) {
  size_t n = r->so->n_triggers < d->n_health ? r->so->n_triggers : d->n_health;
  for (size_t i = 0; i < n; i++)
    if (d->health[i].has_value &&
        (r->figures == NULL || i >= r->figures->n || isnan(r->figures->v[i])))
      return 1;
  return 0;
}

/* Takes the Active detail's figures from d when they are due (see evs__figures_t). Out of memory
 * keeps the last ones. */
static void evs__detail_refresh(evs__rec_t *r, const evs_decision_t *d) {
  int64_t now = evs__wall_ms();
  if (r->detail_ms != 0 && now - r->detail_ms < 60000 && d->current == r->detail_current &&
      d->desired == r->detail_desired && (unsigned)d->active == r->detail_active &&
      !evs__figures_gained(r, d))
    return;
  size_t n = r->so->n_triggers < d->n_health ? r->so->n_triggers : d->n_health;
  int any = 0;
  for (size_t i = 0; i < n; i++)
    any |= d->health[i].has_value;
  evs__figures_t *f = NULL;
  if (any || n > 1) {
    /* One trigger without a value needs no figures; the count of several is kept with them. */
    f = malloc(sizeof *f + n * sizeof f->v[0]);
    if (f == NULL)
      return;
    f->n = (uint32_t)n;
    for (size_t i = 0; i < n; i++)
      f->v[i] = d->health[i].has_value ? d->health[i].value : NAN;
  }
  free(r->figures);
  r->figures = f;
  r->detail_ms = now;
  r->detail_current = d->current;
  r->detail_desired = d->desired;
  r->detail_active = d->active != 0;
}

/* The Active detail as of its last refresh: "metric: value/target, ...; replicas C, desired D". */
static void evs__detail_text(const evs__rec_t *r, char *buf, size_t cap) {
  size_t n = r->figures ? r->figures->n : 1;
  size_t off = 0;
  for (size_t i = 0; i < r->so->n_triggers && i < n && off < cap; i++) {
    const evs_trigger_t *tg = &r->so->triggers[i];
    double v = r->figures ? r->figures->v[i] : NAN;
    int len = !isnan(v) ? snprintf(buf + off, cap - off, "%s%s: %g/%g", off ? ", " : "",
                                   tg->metric_name, v, tg->target)
                        : snprintf(buf + off, cap - off, "%s%s: -/%g", off ? ", " : "",
                                   tg->metric_name, tg->target);
    if (len < 0)
      break;
    off += (size_t)len;
  }
  if (off < cap)
    snprintf(buf + off, cap - off, "%sreplicas %d, desired %d", off ? "; " : "",
             (int)r->detail_current, (int)r->detail_desired);
}

/* Forgets the Active detail when the triggers it lists changed (their count, a metric name or a
 * target): its figures are of the old spec, and the text is written from the new one. */
static void evs__detail_respec(evs__rec_t *r, const evs_so_t *old, const evs_so_t *so) {
  int same = old != NULL && old->n_triggers == so->n_triggers;
  for (size_t i = 0; same && i < so->n_triggers; i++)
    same = evs__streq(old->triggers[i].metric_name, so->triggers[i].metric_name) &&
           old->triggers[i].target == so->triggers[i].target;
  if (same)
    return;
  free(r->figures);
  r->figures = NULL;
  r->detail_ms = 0;
}

static void evs__status(evs__rec_t *r, const evs_decision_t *d) {
  evs_registry_t *reg = r->reg;
  if (reg->o.status == NULL || r->origin != EVS_REGISTRY_API || !reg->leading)
    return;
  if (d != NULL)
    r->st_decision = evs__stdec_index(reg, d);
  evs_status_trigger_t tbuf[64];
  size_t n = r->so ? r->so->n_triggers : 0;
  evs_status_trigger_t *trig = n <= 64 ? tbuf : calloc(n, sizeof *trig);
  if (trig == NULL)
    return;
  evs_status_input_t in;
  const char *err = evs__status_error(r);
  char buf[1024];
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
    in.gvkr = (evs_status_gvkr_t){evs__t_group(r->target), evs__t_version(r->target),
                                  evs__t_kind(r->target), r->target->resource};
  }
  in.original_replicas = r->original_replicas;
  char active_msg[640];
  if (!err && d != NULL && r->so) {
    evs__detail_refresh(r, d);
    char dbuf[512];
    if (r->detail_ms != 0 && in.conditions[EVS_STATUS_ACTIVE].message) {
      evs__detail_text(r, dbuf, sizeof dbuf);
      snprintf(active_msg, sizeof active_msg, "%s (%s)", in.conditions[EVS_STATUS_ACTIVE].message,
               dbuf);
      in.conditions[EVS_STATUS_ACTIVE].message = active_msg;
    }
  }
  char conflict[512];
  if (!err && evs__br(r)->open && in.has_conditions) {
    /* The breaker's state as a condition: Ready stays True (the object is sound), its reason
     * says who drives the target and until when. */
    char until[32];
    evs_status_format_time(evs__br(r)->opened_ms + evs__br(r)->cooldown_ms, until, sizeof until);
    snprintf(conflict, sizeof conflict,
             "circuit breaker open: the target scaled too often; the fallback HPA %s drives it "
             "until %s (or until keda.sh/circuit-breaker-triggered is removed)",
             r->so && r->so->hpa_name ? r->so->hpa_name : "", until);
    in.conditions[EVS_STATUS_READY].reason = "CircuitBreakerOpen";
    in.conditions[EVS_STATUS_READY].message = conflict;
  } else if (!err && r->target && evs__backoff_until(r->target) && in.has_conditions) {
    char until[32];
    evs_status_format_time(evs__backoff_until(r->target), until, sizeof until);
    snprintf(conflict, sizeof conflict,
             "another writer (field manager %s) keeps changing spec.replicas of the target: "
             "evscale does not fight it and writes nothing until %s; hold a count with the "
             "autoscaling.keda.sh/paused-replicas annotation instead",
             evs__other_manager(r->target), until);
    in.conditions[EVS_STATUS_READY].reason = "ScaleTargetConflict";
    in.conditions[EVS_STATUS_READY].message = conflict;
  }
  (void)evs_status_patcher_update(reg->o.status, r->ns, evs__rec_name(r), &in, evs__wall_ms(), NULL,
                                  NULL);
  if (trig != tbuf)
    free(trig);
}

/* The patcher's turn for ns/name: its status now, from the record, the engine state and its last
 * decision's part (evs__stdec_index). Nothing when the object is gone or has no status yet. */
static void evs__status_pull(evs_status_patcher_t *p, const char *ns, const char *name, void *arg) {
  (void)p;
  evs_registry_t *reg = arg;
  char key[600];
  snprintf(key, sizeof key, "%s/%s", ns, name);
  evs__rec_t *r = evs__table_get(&reg->recs, evs__rec_key, key);
  if (r == NULL || r->removed || r->deleting || r->origin != EVS_REGISTRY_API)
    return; /* no status for an object on its way out, as no decision (evs__evaluate) */
  if (evs__status_error(r) != NULL) {
    evs__status(r, NULL); /* a broken object's status takes nothing from a decision */
    return;
  }
  if (r->st_decision == 0 || r->st_decision > reg->n_stdecs || r->est == NULL || r->so == NULL)
    return;
  const evs__stdec_t *s = &reg->stdecs[r->st_decision - 1];
  evs_decision_t d;
  memset(&d, 0, sizeof d);
  memcpy(d.conditions, s->c, sizeof d.conditions);
  d.active = s->active;
  d.health_reported = s->health_reported;
  d.last_active_ms = r->est->last_active_ms;
  d.health = r->est->health;
  d.n_health = r->est->n_triggers;
  /* The Active condition's detail is refreshed as after the last decision: these mirror it. */
  d.current = r->detail_ms ? r->detail_current : 0;
  d.desired = r->detail_ms ? r->detail_desired : 0;
  evs__status(r, &d);
}

/* ---------------------------------------------------------------------------------------------
 * The target's replicas, read once through /scale when no cache has told them */

/* A /scale read in flight, in reg->fetching until its answer: closing the registry cancels it,
 * as the answer (or the API client's cancel when it closes later) must not reach a freed
 * registry. */
typedef struct {
  evs_list_t link;
  evs_registry_t *reg;
  evs__target_t *t;
  evs_kube_req_t *req;
} evs__fetch_t;

static void evs__target_changed(evs_registry_t *reg, evs__target_t *t);

static void evs__on_fetched(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                            const char *msg, void *arg) {
  (void)req;
  evs__fetch_t *f = arg;
  evs_registry_t *reg = f->reg;
  evs__target_t *t = f->t;
  evs_list_remove(&f->link);
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
    for (evs__rec_t *r = t->recs; r; r = r->tnext)
      evs__arm(r, now + wait, now);
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
  evs_scale_target_t st = {.group = evs__t_group(t),
                           .version = evs__t_version(t),
                           .resource = t->resource,
                           .ns = t->ns,
                           .name = evs__t_name(t)};
  if (evs_scalewriter_path(&st, path, sizeof path) != 0)
    return;
  evs__fetch_t *f = malloc(sizeof *f);
  if (f == NULL)
    return;
  *f = (evs__fetch_t){.reg = reg, .t = t};
  evs_kube_request_opts_t o = {.verb = "GET",
                               .path = path,
                               .priority = t->known ? EVS_PRIO_LOW : EVS_PRIO_NORMAL,
                               .on_done = evs__on_fetched,
                               .arg = f};
  t->refs++;
  t->fetching = 1;
  reg->fetch_inflight++;
  if (evs_kube_request(reg->o.kube, &o, &f->req) != 0) {
    t->fetching = 0;
    t->refs--;
    reg->fetch_inflight--;
    free(f);
    return;
  }
  evs_list_push_back(&reg->fetching, &f->link);
}

/* ---------------------------------------------------------------------------------------------
 * Adopting KEDA's HPAs (kubernetes.adopt_keda_hpas; the rules are src/registry/adopt.c's) */

#define EVS__ADOPT_WINDOW_MS 300000 /* KEDA's operator re-creating within it: still running */
#define EVS__ADOPT_RETRY_MS 30000   /* a delete that failed is sent again after this */

typedef enum { EVS__FOREIGN = 0, EVS__ADOPTING, EVS__RECREATED } evs__adopt_mode_t;

static void evs__elect(evs_registry_t *reg, evs__target_t *t);

/* Every target an HPA with a controller owner names is looked at again (HPAs are few). */
static void evs__adopt_all(evs_registry_t *reg) {
  for (size_t i = 0; reg->hpas.slots && i <= reg->hpas.mask; i++) {
    for (evs__hpa_t *e = reg->hpas.slots[i]; e; e = e->next) {
      evs__target_t *t =
          e->owner_kind ? evs__table_get(&reg->targets, evs__target_key, e->key) : NULL;
      if (t)
        evs__elect(reg, t);
    }
  }
}

static void evs__on_adopt_timer(evs_timerq_entry_t *e) {
  evs_registry_t *reg = evs_container_of(e, evs_registry_t, adopt_timer);
  reg->adopt_due_ms = 0;
  evs__adopt_all(reg);
}

/* The registry's one adoption timer at due_ms (wall clock), unless it is due earlier. */
static void evs__adopt_arm(evs_registry_t *reg, int64_t due_ms, int64_t now_ms) {
  if (reg->closing || (reg->adopt_due_ms && reg->adopt_due_ms <= due_ms))
    return;
  reg->adopt_due_ms = due_ms;
  /* 10 ms late rather than early: the loop's clock and the wall clock drift apart a little. */
  int64_t delay = due_ms > now_ms ? due_ms - now_ms + 10 : 10;
  (void)evs_timerq_start(reg->tq, &reg->adopt_timer, evs__on_adopt_timer, (uint64_t)delay);
}

static void evs__on_adopt_deleted(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                                  const char *msg, void *arg) {
  (void)req;
  evs__adopt_op_t *op = arg;
  evs_registry_t *reg = op->reg;
  evs_list_remove(&op->link);
  int status = resp ? resp->status : 0;
  if (err == EVS_ECANCELED) {
    free(op);
    return;
  }
  if (err == 0 && ((status >= 200 && status < 300) || status == 404 || status == 409)) {
    /* 404: already gone; 409: the uid precondition failed (a new HPA of that name replaced it,
     * which the informer reports and evs_adopt_step judges). */
    EVS_LOG_INFO(status < 300 ? "KEDA's HPA deleted; evscale drives the target once it is gone"
                              : "KEDA's HPA already gone or replaced",
                 EVS_KV_STR("hpa", op->name), EVS_KV_STR("namespace", op->ns),
                 EVS_KV_INT("status", status));
  } else {
    char m[256];
    if (resp && err == 0)
      evs_kube_status_message(resp, m, sizeof m);
    else
      snprintf(m, sizeof m, "%s", msg ? msg : evs_strerror(err));
    int64_t now = evs__wall_ms();
    EVS_LOG_ERROR("cannot delete KEDA's HPA; trying again later", EVS_KV_STR("hpa", op->name),
                  EVS_KV_STR("namespace", op->ns), EVS_KV_INT("status", status),
                  EVS_KV_STR("error", m), EVS_KV_INT("retry_ms", EVS__ADOPT_RETRY_MS));
    /* Forgotten, so the next look (the timer, a change of the HPA, a reload) deletes again. */
    evs__target_t *t = evs__table_get(&reg->targets, evs__target_key, op->key);
    if (t && t->ext) {
      free(t->ext->adopt_uid);
      t->ext->adopt_uid = NULL;
      t->ext->adopt_ms = 0;
    }
    evs__adopt_arm(reg, now + EVS__ADOPT_RETRY_MS, now);
  }
  free(op);
}

/* The leader deletes KEDA's HPA h of target t, with its uid as the precondition (never another
 * object of that name). A dry run logs it once. */
static void evs__adopt_delete(evs_registry_t *reg, evs__target_t *t, const evs__hpa_t *h,
                              int64_t now) {
  evs__contest_t *c = t->ext;
  if (!reg->leading || reg->o.kube == NULL)
    return; /* the leader does it */
  if (reg->o.dry_run) {
    if (!evs__streq(c->adopt_uid, h->uid)) {
      EVS_LOG_INFO("dry run: would delete KEDA's HPA to adopt its target",
                   EVS_KV_STR("hpa", h->name), EVS_KV_STR("namespace", t->ns),
                   EVS_KV_STR("target", t->key));
      free(c->adopt_uid);
      c->adopt_uid = evs__strdup(h->uid); /* logged; adopt_ms stays 0 */
    }
    return;
  }
  size_t lk = strlen(t->key) + 1, ln = strlen(t->ns) + 1, lh = strlen(h->name) + 1;
  evs__adopt_op_t *op = calloc(1, sizeof *op + lk + ln + lh);
  char *uid = evs__strdup(h->uid);
  char *text = evs_kube_delete_options(h->uid);
  int rc = op && uid && text ? 0 : UV_ENOMEM;
  if (rc == 0) {
    memcpy(op->key, t->key, lk);
    op->ns = op->key + lk;
    memcpy(op->ns, t->ns, ln);
    op->name = op->ns + ln;
    memcpy(op->name, h->name, lh);
    op->reg = reg;
    /* The version discovery chose for evscale's own HPAs (the uid is the object's, whichever
     * version serves it); the informer's autoscaling/v1 when discovery found none. */
    const char *v = reg->o.hpa_version && reg->o.hpa_version[0] ? reg->o.hpa_version : "v1";
    char path[1024];
    snprintf(path, sizeof path, "/apis/autoscaling/%s/namespaces/%s/horizontalpodautoscalers/%s", v,
             t->ns, h->name);
    evs_kube_request_opts_t ro = {.verb = "DELETE",
                                  .path = path,
                                  .content_type = EVS_KUBE_JSON,
                                  .body = text,
                                  .body_len = strlen(text),
                                  .priority = EVS_PRIO_NORMAL,
                                  .on_done = evs__on_adopt_deleted,
                                  .arg = op};
    rc = evs_kube_request(reg->o.kube, &ro, &op->req);
  }
  free(text);
  if (rc != 0) {
    free(op);
    free(uid);
    EVS_LOG_ERROR("cannot delete KEDA's HPA; trying again later", EVS_KV_STR("hpa", h->name),
                  EVS_KV_STR("namespace", t->ns), EVS_KV_ERR("err", rc));
    evs__adopt_arm(reg, now + EVS__ADOPT_RETRY_MS, now);
    return;
  }
  evs_list_push_back(&reg->adopt_ops, &op->link);
  free(c->adopt_uid);
  c->adopt_uid = uid;
  c->adopt_ms = now;
  EVS_LOG_INFO("adopting KEDA's HPA: deleting it", EVS_KV_STR("hpa", h->name),
               EVS_KV_STR("namespace", t->ns), EVS_KV_STR("uid", h->uid),
               EVS_KV_STR("target", t->key));
}

/* How the foreign HPA `foreign` on t is treated: KEDA's HPA for a ScaledObject evscale holds is
 * adopted (deleted now, or its delete under way) unless KEDA's operator re-created it within the
 * window; any other is refused. */
static evs__adopt_mode_t evs__adopt_mode(evs_registry_t *reg, evs__target_t *t,
                                         const char *foreign) {
  if (!reg->o.adopt_keda_hpas || foreign == NULL || t->ext == NULL)
    return EVS__FOREIGN;
  evs__hpa_t *h = evs__table_get(&reg->hpas, evs__hpa_key, t->key);
  if (h == NULL || !evs__streq(h->name, foreign) || h->owner_kind == NULL || h->uid == NULL ||
      h->uid[0] == '\0')
    return EVS__FOREIGN;
  char key[600], ub[37];
  snprintf(key, sizeof key, "%s/%s", t->ns, h->owner_name ? h->owner_name : "");
  evs__rec_t *r = evs__table_get(&reg->recs, evs__rec_key, key);
  if (r && (r->so == NULL || r->removed || r->origin != EVS_REGISTRY_API))
    r = NULL;
  evs_adopt_so_t so = {0};
  if (r)
    so = (evs_adopt_so_t){.ns = r->ns,
                          .name = evs__rec_name(r),
                          .uid = evs__uid(r, ub),
                          .target_key = r->target ? r->target->key : NULL};
  evs_adopt_hpa_t hh = {.ns = t->ns,
                        .target_key = h->key,
                        .owner_api_version = h->owner_api_version,
                        .owner_kind = h->owner_kind,
                        .owner_name = h->owner_name,
                        .owner_uid = h->owner_uid};
  const char *why = evs_adopt_why_not(&hh, r ? &so : NULL);
  if (why) {
    EVS_LOG_DEBUG("HPA not adopted", EVS_KV_STR("hpa", h->name), EVS_KV_STR("namespace", t->ns),
                  EVS_KV_STR("why", why));
    return EVS__FOREIGN;
  }
  int64_t now = evs__wall_ms(), until = 0;
  int64_t window = reg->o.adopt_window_ms > 0 ? reg->o.adopt_window_ms : EVS__ADOPT_WINDOW_MS;
  switch (evs_adopt_step(h->uid, t->ext->adopt_uid, t->ext->adopt_ms, now, window, &until)) {
  case EVS_ADOPT_WAIT:
    return EVS__ADOPTING;
  case EVS_ADOPT_RECREATED:
    evs__adopt_arm(reg, until, now);
    return EVS__RECREATED;
  case EVS_ADOPT_DELETE:
  default:
    evs__adopt_delete(reg, t, h, now);
    return EVS__ADOPTING;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Who drives a target */

static int evs__before(const evs__rec_t *a, const evs__rec_t *b) {
  int64_t ca = evs__created(a), cb = evs__created(b);
  if (ca != cb)
    return ca < cb;
  int c = strcmp(a->ns, b->ns);
  if (c != 0)
    return c < 0;
  return strcmp(evs__rec_name(a), evs__rec_name(b)) < 0;
}

static void evs__start_scalers(evs__rec_t *r);

/* The refusal's text for every record on t (NULL: r drives it). */
static const char *evs__refusal_text(const evs__target_t *t, const evs__rec_t *r,
                                     const evs__rec_t *best, const char *foreign,
                                     evs__adopt_mode_t mode, int dry_run, char *msg, size_t cap) {
  char gvk[256];
  if (foreign && mode == EVS__ADOPTING)
    snprintf(msg, cap, "adopting KEDA's HPA '%s': deleting it so that evscale drives the target%s",
             foreign, dry_run ? " (dry run: not deleted)" : "");
  else if (foreign && mode == EVS__RECREATED)
    snprintf(msg, cap,
             "KEDA's operator re-created HPA '%s' after evscale deleted it: stop KEDA's operator "
             "(scale the keda-operator Deployment to 0), then evscale adopts it",
             foreign);
  else if (foreign)
    snprintf(msg, cap,
             "the workload '%s' of type '%s' is already managed by the hpa '%s': delete that "
             "HPA (or this ScaledObject) so that one autoscaler drives it",
             evs__t_name(t), evs__target_gvk(t, gvk, sizeof gvk), foreign);
  else if (r != best)
    snprintf(msg, cap,
             "the workload '%s' of type '%s' is already managed by the ScaledObject '%s': "
             "delete one of them or point it at another target",
             evs__t_name(t), evs__target_gvk(t, gvk, sizeof gvk), evs__rec_name(best));
  else
    return NULL;
  return msg;
}

/* The refusal's Event: the adoption's own, or a refused target's. */
static void evs__refusal_event(evs__rec_t *r, evs__adopt_mode_t mode) {
  if (mode == EVS__ADOPTING)
    evs__event(r, EVS_EVENT_NORMAL, EVS_REASON_KEDA_HPA_ADOPTED, "%s", evs__refusal(r));
  else if (mode == EVS__RECREATED)
    evs__event(r, EVS_EVENT_WARNING, EVS_REASON_KEDA_OPERATOR_RUNNING, "%s", evs__refusal(r));
  else
    evs__event(r, EVS_EVENT_WARNING, EVS_REASON_TARGET_REFUSED, "%s", evs__refusal(r));
}

/* A refusal that is new or changed: said in the log and as an Event. */
static void evs__refusal_said(evs__rec_t *r, evs__adopt_mode_t mode) {
  if (mode == EVS__ADOPTING)
    EVS_LOG_INFO("ScaledObject waits for KEDA's HPA to go", EVS_KV_STR("scaledobject", r->key),
                 EVS_KV_STR("reason", evs__refusal(r)));
  else if (mode == EVS__RECREATED)
    EVS_LOG_WARN("ScaledObject refused: KEDA's operator still runs",
                 EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("reason", evs__refusal(r)));
  else
    EVS_LOG_ERROR("ScaledObject refused", EVS_KV_STR("scaledobject", r->key),
                  EVS_KV_STR("reason", evs__refusal(r)));
  evs__refusal_event(r, mode);
}

/* Picks the driver and refuses the others (or all of them, under a foreign HPA: adopting KEDA's
 * when asked to). Records whose role changed are re-decided. */
static void evs__elect(evs_registry_t *reg, evs__target_t *t) {
  evs__rec_t *best = NULL;
  for (evs__rec_t *r = t->recs; r; r = r->tnext) {
    if (r->so == NULL || r->removed)
      continue;
    if (best == NULL || evs__before(r, best))
      best = r;
  }
  const char *foreign = evs__foreign_hpa(t);
  evs__adopt_mode_t mode = foreign && best ? evs__adopt_mode(reg, t, foreign) : EVS__FOREIGN;
  if (foreign)
    best = NULL;
  if (t->ext)
    t->ext->adopt_mode = (unsigned char)mode;
  t->driver = best;
  char msg[1024];
  for (evs__rec_t *r = t->recs; r; r = r->tnext) {
    if (r->so == NULL || r->removed)
      continue;
    int had = evs__refusal(r) != NULL;
    const char *want =
        evs__refusal_text(t, r, best, foreign, mode, reg->o.dry_run, msg, sizeof msg);
    int changed = !evs__streq(evs__refusal(r), want);
    evs__set_refusal(r, want);
    int has = evs__refusal(r) != NULL;
    if (has && !had) {
      evs__refusal_said(r, mode);
      evs__stop_scalers(r);
      evs__evaluate(r);
    } else if (!has && had) {
      EVS_LOG_INFO("ScaledObject drives its target now", EVS_KV_STR("scaledobject", r->key),
                   EVS_KV_STR("target", t->key));
      evs__start_scalers(r);
      evs__evaluate(r);
    } else if (has && changed) {
      evs__refusal_said(r, mode);
      evs__evaluate(r); /* the status says the new reason */
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Scalers */

static evs_registry_t *evs__reg_of(evs__rec_t *r) { return r->reg; }

static void evs__on_reading(evs_scaler_t *s, const evs_reading_t *rd, void *data) {
  (void)s;
  evs__trig_t *tr = data;
  evs__rec_t *r = evs__trig_rec(tr);
  /* The message is not kept: nothing reads it after this callback (the engine decides from the
   * error code, the status and Events carry their own texts), and a redis trigger that cannot
   * connect names its own list key, so each failing trigger held a copy of its own (80 B of
   * 50,000 objects, issue 13). */
  evs__trig_keep(tr, rd);
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
    evs_keda_metrics_empty_upstream(evs__reg_of(r)->o.keda_metrics, r->ns, evs__rec_name(r),
                                    tg->name, tg->metric_name, ignore);
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
                  EVS_KV_STR("error", rd->error_msg ? rd->error_msg : ""));
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
  evs__trig_keep(tr, &(evs_reading_t){.error = rc ? rc : UV_EINVAL, .time_ms = evs__wall_ms()});
}

/* auth: the authenticationRef's resolved parameters (borrowed, NULL: none). The scaler copies
 * what it keeps: the registry keeps no copy of the secrets, they are resolved again on restart. */
static void evs__create_scaler(evs__rec_t *r, evs__trig_t *tr, const evs_kvs_t *auth) {
  evs_registry_t *reg = r->reg;
  evs_scaler_config_t cfg;
  char source[EVS_SO_SOURCE_MAX];
  evs_so_scaler_config(r->so, tr->index, &cfg, source);
  cfg.auth_params = auth ? *auth : evs__no_kvs;
  cfg.resolved_env = *evs__map_kvs(r->x ? r->x->env : NULL);
  evs_diag_t diag;
  evs_diag_init(&diag);
  evs_scaler_t *s = NULL;
  int rc = evs_scaler_create(reg->o.loop, reg->o.env, &cfg, &s, &diag);
  if (rc == 0)
    rc = evs_scaler_start(s, evs__on_reading, tr);
  if (rc != 0) {
    char msg[512] = "";
    if (diag.n)
      evs_diag_format(&diag, 0, msg, sizeof msg);
    else
      snprintf(msg, sizeof msg, "triggers[%zu]: %s", (size_t)tr->index, evs_strerror(rc));
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
  evs__rec_t *r = evs__trig_rec(tr);
  tr->auth_req = NULL;
  if (err == EVS_ECANCELED)
    return;
  if (err != 0) {
    evs__trigger_failed(r, tr, err, msg ? msg : evs_strerror(err));
    evs__evaluate(r);
    return;
  }
  tr->auth_done = 1;
  /* params is borrowed for this call (wiped after it): the scaler is created from it now. */
  evs__create_scaler(r, tr, params);
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
  int n = evs__t_group(t)[0]
              ? snprintf(buf, cap, "/apis/%s/%s/namespaces/%s/%s/%s", evs__t_group(t),
                         evs__t_version(t), t->ns, t->resource, evs__t_name(t))
              : snprintf(buf, cap, "/api/%s/namespaces/%s/%s/%s", evs__t_version(t), t->ns,
                         t->resource, evs__t_name(t));
  return n > 0 && (size_t)n < cap ? 0 : UV_EINVAL;
}

static void evs__on_env(evs_triggerauth_req_t *req, int err, const char *msg,
                        const evs_kvs_t *params, void *arg) {
  (void)req;
  evs__rec_t *r = arg;
  evs__rare_t *x = r->x; /* held while the request was in flight */
  x->env_req = NULL;
  if (err == EVS_ECANCELED)
    return;
  if (err != 0 || evs__map_copy(&x->env, params) != 0) {
    r->env_state = 3;
    free(x->env_error);
    char buf[600];
    snprintf(buf, sizeof buf, "error resolving the scale target's environment: %s",
             msg ? msg : evs_strerror(err ? err : UV_ENOMEM));
    x->env_error = strdup(buf);
  } else {
    r->env_state = 2;
  }
  for (size_t i = 0; i < r->n_trig; i++)
    evs__start_trigger(r, i);
  evs__evaluate(r);
}

static void evs__start_trigger(evs__rec_t *r, size_t i) {
  evs_registry_t *reg = r->reg;
  evs__trig_t *tr = evs__trig(r, i);
  if (tr->scaler || tr->auth_req)
    return;
  if (r->env_state == 0 && reg->o.kube && r->target && r->target->resource && evs__needs_env(r)) {
    char path[1024];
    evs_triggerauth_env_opts_t eo = {.target_path = path,
                                     .ns = r->ns,
                                     .container = r->so->env_source_container,
                                     .cb = evs__on_env,
                                     .arg = r};
    if (evs__target_path(r->target, path, sizeof path) == 0 && evs__rare(r) != NULL &&
        evs_triggerauth_env_resolve(reg->o.loop, reg->o.kube, &eo, &r->x->env_req) == 0) {
      r->env_state = 1;
      return;
    }
    if (r->x) {
      r->x->env_req = NULL;
      evs__rare_trim(r);
    }
    r->env_state = 3;
  }
  if (r->env_state == 1)
    return; /* started when the environment is known */
  if (r->env_state == 3 && r->x && r->x->env_error) {
    evs__trigger_failed(r, tr, EVS_ENOTFOUND, r->x->env_error);
    return;
  }
  const evs_trigger_t *t = &r->so->triggers[i];
  if (t->auth_name == NULL || tr->auth_done) {
    evs__create_scaler(r, tr, NULL);
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
  evs_triggerauth_opts_t ao = {
      .auth = ta,
      .kind = kind,
      .name = t->auth_name,
      .ns = r->ns,
      .cluster_namespace = reg->o.cluster_namespace,
      .target_path = have_path ? path : NULL,
      .env = r->env_state == 2 ? evs__map_kvs(r->x ? r->x->env : NULL) : NULL,
      .env_container = r->so->env_source_container ? r->so->env_source_container : "",
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
        evs__stop_trigger(r, evs__trig(r, i));
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
  if (!reg->leading || r->so == NULL || r->removed || evs__refusal(r) || r->deleting ||
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
  for (evs__rec_t **pp = &t->recs; *pp; pp = &(*pp)->tnext) {
    if (*pp == r) {
      *pp = r->tnext;
      break;
    }
  }
  r->tnext = NULL;
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
  evs__rec_t **pp = &t->recs;
  while (*pp)
    pp = &(*pp)->tnext;
  *pp = r;
  r->tnext = NULL;
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
  (void)evs_keda_metrics_object_new(reg->o.keda_metrics, r->ns, evs__rec_name(r), tr, n, &r->km);
  if (tr != tb)
    free(tr);
}

static int evs__keeps(const evs__rec_t *r, const evs_so_t *old, const evs_so_t *so, size_t i) {
  return i < r->n_trig && old != NULL && i < old->n_triggers &&
         evs__trigger_same(&old->triggers[i], &so->triggers[i]);
}

/* Stops a trigger that goes and drops what it holds. */
static void evs__trig_drop(evs__rec_t *r, evs__trig_t *tr) {
  evs__stop_trigger(r, tr);
  evs__trig_clear(r, tr);
}

static void evs__so_changed(evs__rec_t *r, evs_so_t *so) {
  evs_so_t *old = r->so;
  size_t n = so->n_triggers;
  /* Triggers by position: an unchanged one keeps its scaler and its last reading (the first in
   * place, in the record). New ones are allocated first, so running out of memory leaves the
   * record as it was. */
  int keep0 = n > 0 && evs__keeps(r, old, so, 0);
  evs__trig_t **nm = n > 1 ? calloc(n - 1, sizeof *nm) : NULL;
  int oom = n > 1 && nm == NULL;
  for (size_t i = 1; !oom && i < n; i++) {
    if (evs__keeps(r, old, so, i))
      continue;
    if ((nm[i - 1] = evs__trig_new(r, i)) == NULL) {
      oom = 1;
      break;
    }
  }
  if (oom) {
    for (size_t i = 1; nm && i < n; i++)
      evs__trig_free(nm[i - 1]);
    free(nm);
    evs_so_free(so);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    if (nm[i - 1] == NULL) {
      nm[i - 1] = r->more[i - 1];
      r->more[i - 1] = NULL;
    }
  }
  for (size_t i = 1; i < r->n_trig; i++) {
    if (r->more[i - 1] == NULL)
      continue;
    evs__trig_drop(r, r->more[i - 1]);
    evs__trig_free(r->more[i - 1]);
  }
  free(r->more);
  r->more = nm;
  if (r->n_trig > 0 && !keep0)
    evs__trig_drop(r, &r->trig0);
  if (!keep0)
    r->trig0 = (evs__trig_t){.index = 0};
  r->n_trig = (uint32_t)n;
  if (r->est == NULL) {
    int64_t created = evs__created(r), last_active = evs__last_active(r);
    if (evs_engine_state_new(so, created, &r->est) == 0) {
      if (last_active > 0)
        r->est->last_active_ms = last_active;
      r->est->was_paused = (uint8_t)r->was_paused;
      if (r->x) {
        r->x->created_ms = r->x->last_active_ms = 0;
        evs__rare_trim(r);
      }
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
  evs__detail_respec(r, old, so);
  r->so = so;
  evs_so_free(old);
  if (relabel)
    evs__metrics_object(r);
}

/* The object's finalizers and resourceVersion as last seen, kept only while they matter: evscale's
 * finalizer is on the object, or its spec (the new or the current one) wants it. Any other object
 * keeps neither (issue 13: two allocations per object); its next update brings both again. */
static void evs__finalizers_seen(evs__rec_t *r, const evs_registry_object_t *obj) {
  size_t n = obj->finalizers ? obj->n_finalizers : 0;
  int kept = evs__has_finalizer_in(obj->finalizers, n) ||
             (obj->so && obj->so->restore_to_original) || (r->so && r->so->restore_to_original);
  if (!kept) {
    if (r->x) {
      evs__strv_free(r->x->finalizers, r->x->n_finalizers);
      r->x->finalizers = NULL;
      r->x->n_finalizers = 0;
      free(r->x->rv);
      r->x->rv = NULL;
      evs__rare_trim(r);
    }
    return;
  }
  evs__rare_t *x = evs__rare(r);
  if (x == NULL)
    return;
  if (obj->resource_version && !evs__streq(x->rv, obj->resource_version)) {
    free(x->rv);
    x->rv = strdup(obj->resource_version);
  }
  char **fin = evs__strv_dup(obj->finalizers, n);
  if (fin) {
    evs__strv_free(x->finalizers, x->n_finalizers);
    x->finalizers = fin;
    x->n_finalizers = n;
  }
}

int evs_registry_apply(evs_registry_t *reg, const evs_registry_object_t *obj) {
  if (reg == NULL || obj == NULL || obj->name == NULL || reg->closing) {
    evs_so_free(obj ? obj->so : NULL);
    return UV_EINVAL;
  }
  const char *ns = obj->ns && obj->ns[0] ? obj->ns : reg->default_ns;
  char key[600];
  snprintf(key, sizeof key, "%s/%s", ns, obj->name);
  if (obj->origin == EVS_REGISTRY_API && reg->o.status)
    (void)evs_status_patcher_observe(reg->o.status, ns, obj->name, obj->status);
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
    /* The key in the record's own allocation, the name its tail, the namespace interned (one
     * malloc, not four; a few namespaces for thousands of objects). */
    size_t lk = strlen(key) + 1, lm = strlen(obj->name) + 1;
    /* A key cut at its buffer's size does not end with the name: the name is copied then. */
    int tail = lk >= lm && strcmp(key + (lk - lm), obj->name) == 0;
    /* The engine state (with its first triggers' health) after the key, in the same allocation
     * (issue 13: a malloc and its header fewer per object); an object broken from the start gets
     * one of its own once its spec is sound (evs__so_changed). */
    size_t at = offsetof(evs__rec_t, key) + lk + (tail ? 0 : lm);
    at = (at + _Alignof(evs_engine_state_t) - 1) / _Alignof(evs_engine_state_t) *
         _Alignof(evs_engine_state_t);
    size_t est_size = obj->so ? evs_engine_state_size(obj->so) : 0;
    r = obj->so == NULL || est_size ? calloc(1, at + est_size) : NULL;
    const char *ins = r ? evs_intern_str(reg->intern, ns) : NULL;
    if (ins == NULL) {
      free(r);
      evs_so_free(obj->so);
      return UV_ENOMEM;
    }
    r->reg = reg;
    memcpy(r->key, key, lk);
    r->ns = ins;
    if (!tail)
      memcpy(r->key + lk, obj->name, lm);
    r->name_off = (uint16_t)(tail ? lk - lm : lk);
    r->origin = obj->origin == EVS_REGISTRY_FILE;
    r->dry_logged = -1;
    r->original_replicas = obj->original_replicas;
    int64_t created_ms = obj->created_ms > 0 ? obj->created_ms : evs__wall_ms();
    if (obj->so) {
      r->est = (evs_engine_state_t *)((char *)r + at);
      r->est_inline = 1;
      evs_engine_state_init(r->est, obj->so, created_ms);
      if (obj->last_active_ms > 0)
        r->est->last_active_ms = obj->last_active_ms;
    } else if (evs__rare(r) != NULL) {
      /* Kept in the rare part until the engine state takes them (evs__so_changed). */
      r->x->created_ms = created_ms;
      r->x->last_active_ms = obj->last_active_ms;
    } else {
      evs_intern_release(reg->intern, r->ns);
      free(r);
      evs_so_free(obj->so);
      return UV_ENOMEM;
    }
    evs_breaker_t br;
    evs_breaker_init(&br);
    /* A restart resumes the breaker: its events, its doubling, and an open state (the fallback
     * HPA, owned by the object, stayed in charge meanwhile). */
    if (obj->breaker_state &&
        evs_breaker_decode(obj->breaker_state, strlen(obj->breaker_state), &br) != 0)
      EVS_LOG_WARN("unreadable circuit breaker state annotation; starting closed",
                   EVS_KV_STR("scaledobject", key));
    if (br.open && !obj->breaker_triggered)
      (void)evs_breaker_reset(&br, evs__wall_ms()); /* removed while evscale was down */
    if (!evs__br_is_none(&br) && (r->br = malloc(sizeof *r->br)) == NULL) {
      evs_intern_release(reg->intern, r->ns);
      if (r->est_inline)
        evs_engine_state_fini(r->est);
      free(r->x);
      free(r);
      evs_so_free(obj->so);
      return UV_ENOMEM;
    }
    if (r->br)
      *r->br = br;
    r->seen_triggered = !!obj->breaker_triggered;
    if (br.open)
      r->hpa_wanted = 1;
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
  if (!created && obj->last_active_ms > evs__last_active(r)) {
    /* A follower learns lastActiveTime from the leader's status writes: the engine state it
     * will decide from once it leads keeps the later of its own and the status' time. */
    if (r->est != NULL)
      r->est->last_active_ms = obj->last_active_ms;
    else if (r->x != NULL)
      r->x->last_active_ms = obj->last_active_ms;
  }
  evs__finalizers_seen(r, obj);
  if (obj->deleting && !r->deleting) {
    r->deleting = 1;
    evs__stop_scalers(r);
    EVS_LOG_INFO("ScaledObject being deleted", EVS_KV_STR("scaledobject", key),
                 EVS_KV_BOOL("restore", r->so && r->so->restore_to_original));
  }
  char uid_buf[37];
  if (obj->uid && !evs__streq(evs__uid(r, uid_buf), obj->uid))
    (void)evs__set_uid(r, obj->uid);
  if (r->x || obj->check_error) {
    if (evs__rare(r) != NULL) {
      free(r->x->check_error);
      r->x->check_error = evs__strdup(obj->check_error);
    }
    evs__rare_trim(r);
  }
  int operator_reset = 0;
  if (!created) {
    /* The operator's reset (the runbook: kubectl annotate scaledobject X
     * keda.sh/circuit-breaker-triggered-): the annotation we saw is gone while open. */
    if (evs__br(r)->open && r->seen_triggered && !obj->breaker_triggered)
      operator_reset = 1;
    r->seen_triggered = !!obj->breaker_triggered;
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
  /* An open breaker is allocated (evs__br_none is closed). */
  if (operator_reset && evs_breaker_reset(r->br, evs__wall_ms())) {
    EVS_LOG_INFO("circuit breaker reset by the operator", EVS_KV_STR("scaledobject", key));
    if (reg->leading)
      evs__hand_over(r, 0, 0);
  }
  /* Bounds, pollingInterval or triggers changed: cadence, new scalers, and a decision now. */
  r->cadence_ms = 0;
  if (reg->leading && !evs__refusal(r)) {
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
  if (r->x && r->x->hpa_op) {
    evs_fallbackhpa_cancel(r->x->hpa_op);
    r->x->hpa_op = NULL;
  }
  if (r->x && r->x->ann_op) {
    evs_fallbackhpa_cancel(r->x->ann_op);
    r->x->ann_op = NULL;
  }
  if (r->x && r->x->fin_req) {
    /* Its callback runs now, with EVS_ECANCELED: it clears fin_req (and may free r->x). */
    evs_kube_cancel(r->x->fin_req);
  }
  if (reg->o.status && r->origin == EVS_REGISTRY_API)
    evs_status_patcher_forget(reg->o.status, r->ns, evs__rec_name(r));
  r->timer_due_ms = 0;
  (void)evs_timerq_start(reg->tq, &r->timer, evs__removed_tick, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Observations */

static void evs__target_changed(evs_registry_t *reg, evs__target_t *t) {
  (void)reg;
  for (evs__rec_t *r = t->recs, *nx; r; r = nx) {
    nx = r->tnext; /* r may leave the list */
    evs__cadence(r);
    evs__evaluate(r);
  }
}

static int evs__target_writing(const evs__target_t *t) {
  for (const evs__rec_t *r = t->recs; r; r = r->tnext)
    if (r->writing)
      return 1;
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
  t->ext_pending = 1;
  if (evs__target_ext(t) == NULL)
    return;
  evs__contest_t *c = t->ext;
  c->ext_ms[c->n_ext % EVS__EXT_KEEP] = now;
  c->n_ext++;
  if (o->manager && !evs__streq(o->manager, c->other_manager)) {
    free(c->other_manager);
    c->other_manager = strdup(o->manager);
  }
  EVS_LOG_INFO("another writer changed the scale target's replicas", EVS_KV_STR("target", t->key),
               EVS_KV_INT("from", t->spec), EVS_KV_INT("to", o->spec_replicas),
               EVS_KV_STR("manager", o->manager ? o->manager : "unknown"));
  if (c->backoff_until_ms || c->n_ext < EVS__EXT_KEEP)
    return;
  /* The oldest of the last four changes is within the minute: more than 3 a minute. */
  int64_t oldest = c->ext_ms[c->n_ext % EVS__EXT_KEEP];
  if (now - oldest > EVS__EXT_WINDOW_MS)
    return;
  c->backoff_ms = EVS__BACKOFF_FIRST_MS;
  c->backoff_since_ms = now;
  c->backoff_until_ms = now + c->backoff_ms;
  evs__rec_t *r = t->driver;
  EVS_LOG_WARN("another writer keeps changing the scale target: evscale backs off",
               EVS_KV_STR("scaledobject", r->key), EVS_KV_STR("target", t->key),
               EVS_KV_STR("manager", evs__other_manager(t)),
               EVS_KV_INT("backoff_ms", c->backoff_ms));
  char gvk[256];
  evs__event(r, EVS_EVENT_WARNING, EVS_REASON_TARGET_CONFLICT,
             "Another writer (field manager %s) changed spec.replicas of %s %s/%s more than %d "
             "times in a minute: evscale backs off for %lld s",
             evs__other_manager(t), evs__target_gvk(t, gvk, sizeof gvk), t->ns, evs__t_name(t),
             EVS__EXT_MAX, (long long)(c->backoff_ms / 1000));
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

/* A foreign HPA's entry, its strings in the same allocation (NULL: out of memory). */
static evs__hpa_t *evs__hpa_new(const char *key, const evs_registry_hpa_obs_t *o) {
  int owned = o->owner_kind != NULL;
  const char *src[7] = {key,
                        o->name,
                        o->uid,
                        owned ? o->owner_api_version : NULL,
                        owned ? o->owner_kind : NULL,
                        owned ? o->owner_name : NULL,
                        owned ? o->owner_uid : NULL};
  size_t len[7], total = sizeof(evs__hpa_t);
  for (int i = 0; i < 7; i++)
    total += (len[i] = src[i] ? strlen(src[i]) + 1 : 0);
  evs__hpa_t *h = calloc(1, total);
  if (h == NULL)
    return NULL;
  char **dst[7] = {&h->key,        &h->name,       &h->uid,      &h->owner_api_version,
                   &h->owner_kind, &h->owner_name, &h->owner_uid};
  char *p = (char *)(h + 1);
  for (int i = 0; i < 7; i++) {
    if (src[i] == NULL)
      continue;
    memcpy(p, src[i], len[i]);
    *dst[i] = p;
    p += len[i];
  }
  return h;
}

void evs_registry_hpa_seen(evs_registry_t *reg, const evs_registry_hpa_obs_t *o) {
  if (reg == NULL || o == NULL || o->target_api_version == NULL || o->target_kind == NULL ||
      o->target_name == NULL || o->ns == NULL || o->name == NULL)
    return;
  char key[1024];
  evs__target_key_of(o->target_api_version, o->target_kind, o->ns, o->target_name, key, sizeof key);
  int foreign = !o->deleted && !o->evscale_owned;
  evs__hpa_t *h = evs__table_get(&reg->hpas, evs__hpa_key, key);
  if (foreign) {
    /* Replaced whole: a new object of the same name has a new uid and maybe another owner. */
    evs__hpa_t *n = evs__hpa_new(key, o);
    if (n == NULL)
      return;
    if (h) {
      evs__table_del(&reg->hpas, evs__hpa_key, h);
      free(h);
    }
    h = n;
    if (evs__table_put(&reg->hpas, evs__hpa_key, h) != 0) {
      free(h);
      h = NULL;
    }
  } else if (h && evs__streq(h->name, o->name)) {
    evs__table_del(&reg->hpas, evs__hpa_key, h);
    free(h);
    h = NULL;
  }
  evs__target_t *t = evs__table_get(&reg->targets, evs__target_key, key);
  if (t == NULL)
    return;
  const char *want = h ? h->name : NULL;
  int changed = 0;
  if (!evs__streq(evs__foreign_hpa(t), want) && (want == NULL || evs__target_ext(t))) {
    free(t->ext->foreign_hpa);
    t->ext->foreign_hpa = want ? strdup(want) : NULL;
    changed = 1;
  }
  /* Adoption looks at every change of a candidate (a new uid: KEDA's operator re-created it). */
  if (changed || (h && h->owner_kind && reg->o.adopt_keda_hpas))
    evs__elect(reg, t);
}

void evs_registry_set_adopt(evs_registry_t *reg, int adopt, uint64_t window_ms) {
  if (reg == NULL || reg->closing)
    return;
  int64_t window = window_ms > 0 && window_ms < INT64_MAX ? (int64_t)window_ms : 0;
  if (!!adopt == !!reg->o.adopt_keda_hpas && window == reg->o.adopt_window_ms)
    return;
  int changed = !!adopt != !!reg->o.adopt_keda_hpas;
  reg->o.adopt_keda_hpas = !!adopt;
  reg->o.adopt_window_ms = window;
  if (!changed) {
    /* The window only: the HPAs left alone are judged again (a longer window re-arms the
     * timer at its new end from there). */
    reg->adopt_due_ms = 0;
    evs__adopt_all(reg);
    return;
  }
  EVS_LOG_INFO(adopt ? "kubernetes.adopt_keda_hpas on: adopting the HPAs KEDA created"
                     : "kubernetes.adopt_keda_hpas off: KEDA's HPAs are refused again",
               EVS_KV_UINT("hpas", reg->hpas.n));
  /* On: the HPAs already seen are adopted now. Off: their ScaledObjects are refused as any
   * foreign HPA's (a delete already sent runs its course; nothing is re-created). */
  evs__adopt_all(reg);
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
        /* What a follower saw but could not say: a new leader says it once, as the refusal's
         * kind (an object waiting for KEDA's HPA to be adopted is not a refused one). */
        if (evs__refusal(r))
          evs__refusal_event(r, r->target && r->target->ext
                                    ? (evs__adopt_mode_t)r->target->ext->adopt_mode
                                    : EVS__FOREIGN);
        else if (r->so == NULL && evs__check_error(r))
          evs__event(r, EVS_EVENT_WARNING, EVS_REASON_SO_CHECK_FAILED, "%s", evs__check_error(r));
        evs__start_scalers(r);
        evs__evaluate(r);
      } else {
        evs__stop_scalers(r);
        evs_timerq_stop(reg->tq, &r->timer);
        r->timer_due_ms = 0;
      }
    }
  }
  /* The new leader writes the statuses; what this process wrote counts no more than what it
   * observes from now on. */
  if (!leading && reg->o.status)
    evs_status_patcher_follow(reg->o.status);
  /* A follower refuses the targets of KEDA's HPAs it would adopt: the new leader deletes them. */
  if (leading)
    evs__adopt_all(reg);
}

void evs_registry_stats(const evs_registry_t *reg, evs_registry_stats_t *out) {
  *out = reg->st;
  out->objects = reg->recs.n;
  out->targets = reg->targets.n;
  out->broken = 0;
  out->scalers = 0;
  for (size_t i = 0; reg->recs.slots && i <= reg->recs.mask; i++) {
    for (evs__rec_t *r = reg->recs.slots[i]; r; r = r->next) {
      if (r->so == NULL || evs__refusal(r))
        out->broken++;
      for (size_t j = 0; j < r->n_trig; j++)
        out->scalers += evs__trig(r, j)->scaler != NULL;
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
  evs_list_init(&reg->fetching);
  evs_list_init(&reg->adopt_ops);
  reg->default_ns =
      strdup(o->default_namespace && o->default_namespace[0] ? o->default_namespace : "default");
  if (reg->default_ns == NULL || evs_intern_new(&reg->intern) != 0 ||
      evs_timerq_new(o->loop, &reg->tq) != 0) {
    evs_intern_free(reg->intern);
    free(reg->default_ns);
    free(reg);
    return UV_ENOMEM;
  }
  if (uv_idle_init(o->loop, &reg->idle) != 0) {
    evs_timerq_close(reg->tq, NULL, NULL);
    evs_intern_free(reg->intern);
    free(reg->default_ns);
    free(reg);
    return UV_ENOMEM;
  }
  reg->idle.data = reg;
  reg->o.default_namespace = reg->default_ns;
  if (o->status != NULL)
    evs_status_patcher_set_provider(o->status, evs__status_pull, reg);
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
      free(e);
    }
  }
  free(reg->hpas.slots);
  evs_intern_free(reg->intern);
  free(reg->stdecs);
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
  if (reg->o.status != NULL)
    evs_status_patcher_set_provider(reg->o.status, NULL, NULL);
  while (!evs_list_empty(&reg->fetch_wait)) {
    evs__target_t *t = evs_container_of(reg->fetch_wait.next, evs__target_t, flink);
    evs_list_remove(&t->flink);
    t->fetch_queued = 0;
    evs__target_unref(reg, t);
  }
  /* The deletes of KEDA's HPAs in flight: the same. */
  while (!evs_list_empty(&reg->adopt_ops))
    evs_kube_cancel(evs_container_of(evs_list_first(&reg->adopt_ops), evs__adopt_op_t, link)->req);
  evs_timerq_stop(reg->tq, &reg->adopt_timer);
  /* The reads in flight: their callback runs now (EVS_ECANCELED), with the registry alive. */
  while (!evs_list_empty(&reg->fetching))
    evs_kube_cancel(evs_container_of(evs_list_first(&reg->fetching), evs__fetch_t, link)->req);
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
  if (json_is_object(status))
    d->status = json_incref((json_t *)status);
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
  json_decref(d->status);
  free(d);
}
