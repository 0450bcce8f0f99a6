/* See include/evscale/lease.h. One attempt at a time; each is a short chain of requests
 * (fast PUT | GET -> POST | PUT), driven by one timer. Times are the loop's monotonic ms; the
 * Lease's own timestamps are written for humans and other clients, never trusted. */
#include "evscale/lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "evscale/error.h"
#include "evscale/list.h"

enum { PH_IDLE = 0, PH_FAST_PUT, PH_GET, PH_CREATE, PH_PUT, PH_OBSERVE, PH_REL_GET, PH_REL_PUT };

struct evs_lease_s {
  uv_loop_t *loop;
  evs_kube_t *kube;
  evs_lease_options_t o;
  char name[254], ns[64], identity[320];
  char coll[400], item[700];
  uv_timer_t timer;
  evs_kube_req_t *req;
  int phase;
  json_t *obj;          /* the Lease as last written by us (its resourceVersion) */
  char *observed_raw;   /* spec as last seen, to notice changes */
  uint64_t observed_ms; /* when it last changed (our clock) */
  int64_t observed_dur_s;
  char holder[320];
  char last_holder[320]; /* the last non-empty holder seen (hand-over counting) */
  int leader, started, stopping, blocked, stalled, release_tries;
  uint64_t last_renew_ms;
  void (*stop_cb)(void *arg);
  void *stop_arg;
  evs_metric_t *m_leader, *m_handovers;
};

static void schedule(evs_lease_t *l);
static void attempt(evs_lease_t *l);
static void release_done(evs_lease_t *l);

/* ---- identity and time ---- */

static void make_identity(char *buf, size_t cap) {
  char host[256] = "evscale";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  unsigned char r[16] = {0};
  if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0) {
    uint64_t t = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    memcpy(r, &t, sizeof t);
  }
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(buf, cap, "%s_%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           host, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
           r[13], r[14], r[15]);
}

/* metav1.MicroTime: RFC 3339 with microseconds, UTC. */
static void micro_now(char *buf, size_t cap) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  time_t s = tv.tv_sec;
  gmtime_r(&s, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, cap, "%s.%06ldZ", base, (long)tv.tv_usec);
}

/* ---- metrics ---- */

static int metrics_init(evs_lease_t *l) {
  if (l->o.metrics == NULL)
    return 0;
  evs_metric_family_t *f;
  evs_metric_desc_t g = {"evscale_leader",
                         "1 while this replica holds the leader Lease",
                         EVS_METRIC_GAUGE,
                         NULL,
                         0,
                         NULL,
                         0};
  int rc = evs_metrics_register(l->o.metrics, &g, &f);
  if (rc != 0)
    return rc;
  l->m_leader = evs_metric_family_child(f, NULL);
  evs_metric_desc_t c = {"evscale_leader_handovers_total",
                         "times the leader Lease changed holder, as seen by this replica",
                         EVS_METRIC_COUNTER,
                         NULL,
                         0,
                         NULL,
                         0};
  rc = evs_metrics_register(l->o.metrics, &c, &f);
  if (rc != 0)
    return rc;
  l->m_handovers = evs_metric_family_child(f, NULL);
  return 0;
}

/* ---- public ---- */

int evs_lease_new(uv_loop_t *loop, evs_kube_t *kube, const evs_lease_options_t *o,
                  evs_lease_t **out) {
  if (loop == NULL || kube == NULL || o == NULL || out == NULL || o->name == NULL ||
      o->ns == NULL || !o->name[0] || !o->ns[0] || strpbrk(o->name, "/?#% ") ||
      strpbrk(o->ns, "/?#% ") || o->retry_period_ms == 0 ||
      o->retry_period_ms >= o->renew_deadline_ms || o->renew_deadline_ms >= o->lease_duration_ms ||
      o->lease_duration_ms < 1000)
    return UV_EINVAL;
  evs_lease_t *l = calloc(1, sizeof *l);
  if (l == NULL)
    return UV_ENOMEM;
  l->loop = loop;
  l->kube = kube;
  l->o = *o;
  snprintf(l->name, sizeof l->name, "%s", o->name);
  snprintf(l->ns, sizeof l->ns, "%s", o->ns);
  if (o->identity != NULL)
    snprintf(l->identity, sizeof l->identity, "%s", o->identity);
  else
    make_identity(l->identity, sizeof l->identity);
  l->o.name = l->name;
  l->o.ns = l->ns;
  l->o.identity = l->identity;
  snprintf(l->coll, sizeof l->coll, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", l->ns);
  snprintf(l->item, sizeof l->item, "%s/%s", l->coll, l->name);
  int rc = metrics_init(l);
  if (rc != 0) {
    free(l);
    return rc;
  }
  uv_timer_init(loop, &l->timer);
  *out = l;
  return 0;
}

static void on_timer(uv_timer_t *t);

int evs_lease_start(evs_lease_t *l) {
  if (l == NULL || l->started || l->stopping)
    return EVS_ESTATE;
  l->started = 1;
  uv_timer_start(&l->timer, on_timer, 0, 0);
  return 0;
}

/* Also judged on the clock: after a stall (a frozen process, a loop blocked) the loop time is
 * fresh at the start of the next iteration, and a writer asking before the elector's timer has
 * run must already hear "no". */
int evs_lease_is_leader(const evs_lease_t *l) {
  return l != NULL && l->leader && uv_now(l->loop) - l->last_renew_ms < l->o.renew_deadline_ms;
}

const char *evs_lease_identity(const evs_lease_t *l) { return l->identity; }

const char *evs_lease_holder(const evs_lease_t *l) { return l->holder; }

/* ---- leadership changes ---- */

static void set_leader(evs_lease_t *l, int on) {
  if (l->leader == on)
    return;
  l->leader = on;
  evs_metric_set(l->m_leader, on);
  evs_lease_cb cb = on ? l->o.on_started_leading : l->o.on_stopped_leading;
  if (cb != NULL)
    cb(l, l->o.arg);
}

static void cancel_req(evs_lease_t *l) {
  if (l->req != NULL) {
    l->phase = PH_IDLE; /* the done callback sees the cancel and does nothing more */
    evs_kube_cancel(l->req);
  }
}

/* client-go isLeaseValid: observedTime + leaseDurationSeconds > now, on our clock. */
static int lease_valid(const evs_lease_t *l, uint64_t now) {
  return l->observed_raw != NULL && l->observed_ms + (uint64_t)l->observed_dur_s * 1000 > now;
}

/* Takes note of the Lease as read or written: a changed spec restarts its validity. */
static void observe(evs_lease_t *l, json_t *lease) {
  json_t *spec = json_object_get(lease, "spec");
  char *raw =
      json_dumps(spec ? spec : json_null(), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  if (raw == NULL)
    return;
  if (l->observed_raw != NULL && strcmp(raw, l->observed_raw) == 0) {
    free(raw);
    return;
  }
  free(l->observed_raw);
  l->observed_raw = raw;
  l->observed_ms = uv_now(l->loop);
  json_t *d = json_object_get(spec, "leaseDurationSeconds");
  l->observed_dur_s = json_is_integer(d) ? json_integer_value(d) : 0;
  const char *h = json_string_value(json_object_get(spec, "holderIdentity"));
  h = h ? h : "";
  /* A hand-over: a holder other than the last one (an empty holder in between, a release,
   * does not count twice). The first holder ever seen is not a hand-over. */
  if (h[0] != '\0') {
    if (l->last_holder[0] != '\0' && strcmp(h, l->last_holder) != 0)
      evs_metric_inc(l->m_handovers);
    snprintf(l->last_holder, sizeof l->last_holder, "%s", h);
  }
  snprintf(l->holder, sizeof l->holder, "%s", h);
}

/* The Lease object to write: `base` (with its metadata.resourceVersion) or a new one. */
static json_t *lease_body(evs_lease_t *l, json_t *base, int release) {
  json_t *obj = base ? json_deep_copy(base) : NULL;
  if (obj == NULL)
    obj = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "coordination.k8s.io/v1", "kind",
                    "Lease", "metadata", "name", l->name, "namespace", l->ns);
  if (obj == NULL)
    return NULL;
  json_t *old = json_object_get(obj, "spec");
  json_int_t transitions = json_integer_value(json_object_get(old, "leaseTransitions"));
  const char *old_holder = json_string_value(json_object_get(old, "holderIdentity"));
  int ours = old_holder != NULL && strcmp(old_holder, l->identity) == 0;
  char now[40];
  micro_now(now, sizeof now);
  json_t *spec = json_object();
  /* tryAcquireOrRenew: the leader keeps acquireTime and the transition count; a new holder
   * sets acquireTime now and counts one more transition. tryRelease: no holder, 1 s. */
  json_object_set_new(spec, "renewTime", json_string(now));
  json_object_set_new(spec, "acquireTime",
                      ours && !release && json_object_get(old, "acquireTime")
                          ? json_deep_copy(json_object_get(old, "acquireTime"))
                          : json_string(now));
  json_object_set_new(spec, "leaseTransitions",
                      json_integer(base == NULL ? 0 : transitions + (ours || release ? 0 : 1)));
  if (release) {
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
  } else {
    json_object_set_new(spec, "holderIdentity", json_string(l->identity));
    json_object_set_new(spec, "leaseDurationSeconds",
                        json_integer((json_int_t)(l->o.lease_duration_ms / 1000)));
  }
  json_object_set_new(obj, "spec", spec);
  return obj;
}

/* ---- requests ---- */

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                    void *arg);

static int lease_send(evs_lease_t *l, int phase, const char *method, const char *path,
                      json_t *body) {
  char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
  if (body != NULL && b == NULL)
    return UV_ENOMEM;
  /* Lease renewals are as urgent as scale writes (ratelimit.h). */
  evs_kube_request_opts_t r = {.verb = method,
                               .path = path,
                               .content_type = b ? EVS_KUBE_JSON : NULL,
                               .body = b,
                               .body_len = b ? strlen(b) : 0,
                               .priority = EVS_PRIO_HIGH,
                               .on_done = on_done,
                               .arg = l};
  int rc = evs_kube_request(l->kube, &r, &l->req);
  free(b);
  if (rc == 0)
    l->phase = phase;
  else
    l->req = NULL;
  return rc;
}

static void attempt_done(evs_lease_t *l, int ok, json_t *lease) {
  if (ok && lease != NULL) {
    json_decref(l->obj);
    l->obj = json_incref(lease);
    observe(l, lease);
    l->last_renew_ms = uv_now(l->loop);
    set_leader(l, 1);
  }
  schedule(l);
}

static void attempt(evs_lease_t *l) {
  uint64_t now = uv_now(l->loop);
  int rc;
  if (l->o.observe_only) {
    rc = lease_send(l, PH_OBSERVE, "GET", l->item, NULL);
  } else if (l->blocked) {
    rc = EVS_ECANCELED;
  } else if (l->leader && l->obj != NULL && lease_valid(l, now)) {
    /* 1. the fast path: update what we wrote last, optimistically */
    json_t *b = lease_body(l, l->obj, 0);
    rc = b ? lease_send(l, PH_FAST_PUT, "PUT", l->item, b) : UV_ENOMEM;
    json_decref(b);
  } else {
    rc = lease_send(l, PH_GET, "GET", l->item, NULL);
  }
  /* Also while the attempt runs: a request that hangs (an API server gone silent) must not
   * keep the leader from stepping down at its renew deadline (step_down_if_late on the timer);
   * waiting for the request's own timeout (20 s) let it lead on long after a follower took
   * over. The answer re-arms the timer (attempt_done). */
  (void)rc;
  schedule(l);
}

static void on_get(evs_lease_t *l, int status, json_t *body) {
  int rc = 0;
  if (status == 404) {
    json_t *b = lease_body(l, NULL, 0);
    rc = b ? lease_send(l, PH_CREATE, "POST", l->coll, b) : UV_ENOMEM;
    json_decref(b);
  } else if (status == 200 && body != NULL) {
    observe(l, body);
    /* 3. held by someone else whose lease has not expired: not ours to take */
    if (l->holder[0] != '\0' && lease_valid(l, uv_now(l->loop)) && !l->leader) {
      schedule(l);
      return;
    }
    json_t *b = lease_body(l, body, 0);
    rc = b ? lease_send(l, PH_PUT, "PUT", l->item, b) : UV_ENOMEM;
    json_decref(b);
  } else {
    rc = EVS_ESTATUS;
  }
  if (rc != 0)
    schedule(l);
}

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                    void *arg) {
  (void)req;
  (void)msg;
  evs_lease_t *l = arg;
  int phase = l->phase;
  l->req = NULL;
  l->phase = PH_IDLE;
  if (phase == PH_IDLE)
    return; /* canceled on purpose (step-down, stop): the caller carries on */
  int status = err == 0 && resp != NULL ? resp->status : 0;
  json_t *body = status != 0 && resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
  switch (phase) {
  case PH_OBSERVE:
    if (status == 200 && body != NULL)
      observe(l, body);
    schedule(l);
    break;
  case PH_FAST_PUT:
    if (status == 200) {
      attempt_done(l, 1, body);
    } else {
      int rc = lease_send(l, PH_GET, "GET", l->item, NULL); /* 2. the slow path */
      if (rc != 0)
        schedule(l);
    }
    break;
  case PH_GET:
    on_get(l, status, body);
    break;
  case PH_CREATE:
  case PH_PUT:
    /* 409 Conflict: another replica wrote first; the next attempt reads again. */
    attempt_done(l, status == 200 || status == 201, body);
    break;
  case PH_REL_GET:
    if (status == 200 && body != NULL) {
      json_t *b = lease_body(l, body, 1);
      if (b != NULL && lease_send(l, PH_REL_PUT, "PUT", l->item, b) == 0) {
        json_decref(b);
        break;
      }
      json_decref(b);
    }
    release_done(l);
    break;
  case PH_REL_PUT:
    /* a 409: a renew raced the release; read again (tryRelease retries on conflict) */
    if (status == 409 && ++l->release_tries < 5 &&
        lease_send(l, PH_REL_GET, "GET", l->item, NULL) == 0)
      break;
    release_done(l);
    break;
  }
  json_decref(body);
}

/* ---- timer ---- */

static void step_down_if_late(evs_lease_t *l) {
  if (l->leader && uv_now(l->loop) - l->last_renew_ms >= l->o.renew_deadline_ms) {
    cancel_req(l); /* a late success must not make us leader again */
    set_leader(l, 0);
  }
}

static void schedule(evs_lease_t *l) {
  if (l->stopping || l->stalled)
    return;
  uint64_t due = l->o.retry_period_ms;
  if (l->leader) {
    uint64_t now = uv_now(l->loop), deadline = l->last_renew_ms + l->o.renew_deadline_ms;
    uint64_t left = deadline > now ? deadline - now : 0;
    if (left < due)
      due = left;
  }
  uv_timer_start(&l->timer, on_timer, due, 0);
}

static void on_timer(uv_timer_t *t) {
  evs_lease_t *l = evs_container_of(t, evs_lease_t, timer);
  step_down_if_late(l);
  if (l->req != NULL) {
    schedule(l); /* an attempt is still running: look again later */
    return;
  }
  attempt(l);
}

/* ---- stop ---- */

static void on_close(uv_handle_t *h) {
  evs_lease_t *l = evs_container_of((uv_timer_t *)h, evs_lease_t, timer);
  void (*cb)(void *) = l->stop_cb;
  void *arg = l->stop_arg;
  json_decref(l->obj);
  free(l->observed_raw);
  free(l);
  if (cb != NULL)
    cb(arg);
}

static void release_done(evs_lease_t *l) { uv_close((uv_handle_t *)&l->timer, on_close); }

void evs_lease_stop(evs_lease_t *l, void (*cb)(void *arg), void *arg) {
  if (l == NULL || l->stopping)
    return;
  l->stopping = 1;
  l->stop_cb = cb;
  l->stop_arg = arg;
  uv_timer_stop(&l->timer);
  cancel_req(l);
  int was_leader = l->leader;
  set_leader(l, 0); /* writes stop before anyone else may start */
  /* tryRelease (ReleaseOnCancel): PUT without holder. client-go reads first; we PUT the Lease
   * we last wrote (its resourceVersion) at once, saving a round trip of the hand-over, and read
   * only on a 409. */
  if (was_leader && !l->o.observe_only && !l->blocked && l->obj != NULL) {
    json_t *b = lease_body(l, l->obj, 1);
    int rc = b ? lease_send(l, PH_REL_PUT, "PUT", l->item, b) : UV_ENOMEM;
    json_decref(b);
    if (rc == 0)
      return;
  }
  uv_close((uv_handle_t *)&l->timer, on_close);
}

void evs_lease__set_blocked(evs_lease_t *l, int blocked) { l->blocked = blocked; }

void evs_lease__stall(evs_lease_t *l, int stalled) {
  l->stalled = stalled;
  if (stalled) {
    uv_timer_stop(&l->timer);
    cancel_req(l);
  } else {
    uv_timer_start(&l->timer, on_timer, 0, 0);
  }
}
