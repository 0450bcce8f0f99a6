/* KEDA's ScaledObject status from evscale's decision record, and a patcher that writes it to the
 * /status subresource only when it changed.
 *
 *   evs_status_input_t in;                                   // so_status.h fills it
 *   evs_so_status_input(so, &step.decision, trig, ntrig, &in);
 *   in.gvkr = (evs_status_gvkr_t){"apps", "v1", "Deployment", "deployments"};
 *   json_t *st = evs_status_build(&in);                  // pure: the status object
 *   evs_status_patcher_update(p, ns, name, &in, now_ms, NULL, NULL);   // 1: sent or waiting
 *
 * Field names and texts follow kedacore/keda v2.20.2 (commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a): apis/keda/v1alpha1/scaledobject_types.go
 * (ScaledObjectStatus), apis/keda/v1alpha1/condition_types.go (types, the initialized
 * conditions), apis/keda/v1alpha1/gvkr_types.go (GVKString "group/version.Kind"),
 * apis/keda/v1alpha1/scaletriggers_types.go (CombinedTriggersAndAuthenticationsTypes: unique
 * types and authenticationRef names joined by ","), pkg/scaling/executor/scale_executor.go
 * (triggersActivity keyed by external metric name), controllers/keda/scaledobject_controller.go
 * (a failed check: Ready=False ScaledObjectCheckFailed "<what>: <error>", Active=Unknown
 * UnknownState). The texts themselves are the decision's (engine.c); the fixture
 * test/data/keda_status/ holds KEDA's set. */
#ifndef EVSCALE_STATUS_H
#define EVSCALE_STATUS_H

#include <stdint.h>

#include <jansson.h>

#include "evscale/kube.h"

/* The kube room does not know the spec and decision types (scale/): include/evscale/so_status.h
 * fills this input from an evs_so_t and an evs_decision_t. */

enum {
  EVS_STATUS_READY = 0,
  EVS_STATUS_ACTIVE,
  EVS_STATUS_FALLBACK,
  EVS_STATUS_PAUSED,
  EVS_STATUS__NCOND
};

/* status: 0 False, 1 True, 2 Unknown (the engine's evs_cond_status_t numbering). Strings
 * borrowed; NULL or "" = omitted (omitempty). */
typedef struct {
  uint8_t status;
  const char *reason;
  const char *message;
} evs_status_condition_t;

typedef struct {
  const char *group, *version, *kind, *resource; /* the resolved scale target; kind NULL = none */
} evs_status_gvkr_t;

typedef struct {
  const char *metric_name; /* KEDA's external metric name: the key of health/triggersActivity */
  const char *type;        /* triggers[].type */
  const char *auth_name;   /* authenticationRef.name or NULL */
  uint8_t active;          /* triggersActivity[metric].isActive */
  uint8_t failing;         /* health status Failing (else Happy) */
  int32_t failures;        /* health numberOfFailures */
} evs_status_trigger_t;

typedef struct {
  /* The decision's conditions; has_conditions 0 = none yet: KEDA's initialized conditions. */
  uint8_t has_conditions;
  evs_status_condition_t conditions[EVS_STATUS__NCOND];
  /* Non-NULL: the object is broken; the text names the field, e.g. "ScaledObject doesn't have
   * correct triggers specification: triggers[0].metadata.listLength: not a number". Ready=False
   * (ScaledObjectCheckFailed) and Active=Unknown whatever the conditions say. */
  const char *check_error;
  uint8_t has_fallback; /* spec.fallback set (a broken object's Fallback condition) */
  evs_status_gvkr_t gvkr;
  int32_t original_replicas; /* -1 = unknown */
  /* lastActiveTime (ms; 0 = none). evs_status_build writes it as given; the patcher limits it to
   * transitions and once a minute (evs_status_last_active), with `active` telling transitions. */
  int64_t last_active_ms;
  uint8_t active;
  /* The spec's part; has_spec 0 (a broken object) = none of the fields below. */
  uint8_t has_spec;
  uint8_t has_activity;    /* a decision ran: triggersActivity is known */
  uint8_t health_reported; /* status.health only with a fallback (KEDA's updateStatus) */
  const evs_status_trigger_t *triggers;
  size_t n_triggers;
  int32_t paused_replicas; /* -1 = no paused-replicas annotation */
  const char *hpa_name;    /* NULL = omitted */
} evs_status_input_t;

/* The status object (new reference), NULL when out of memory. Pure. */
json_t *evs_status_build(const evs_status_input_t *in);

/* RFC 3339 in UTC with seconds, as metav1.Time marshals ("2026-11-30T09:08:30Z"). buf >= 21. */
void evs_status_format_time(int64_t ms, char *buf, size_t cap);

/* What lastActiveTime to write: the decision's on a transition (active <-> inactive, or a first
 * write), otherwise the one written before unless it is a minute or more older than the
 * decision's. So 10,000 objects active all the time do not mean 10,000 writes a poll. */
int64_t evs_status_last_active(int64_t written_ms, int was_active, int is_active,
                               int64_t decision_ms);

/* --- the patcher ---
 *
 * At most max_in_flight patches are out at once, all objects together: the initial sync of
 * 10,000 objects needs 10,000 writes at once, and each queued with its body behind the client's
 * rate limiter was most of the process's peak (issue 13). An object that needs a write while the
 * slots are taken waits in a FIFO as the patcher's small per-object entry, without a body; when
 * its turn comes the patcher asks the provider (evs_status_patcher_set_provider) for the object's
 * status as it is then, so an object updated several times while it waits is written once, with
 * its latest status, and a forgotten one is not written. Only status writes are bounded: the
 * lease and scale writes (higher priorities) never wait behind them. */

typedef struct evs_status_patcher_s evs_status_patcher_t;

#define EVS_STATUS_MAX_IN_FLIGHT 8 /* the default bound */

typedef struct {
  int dry_run;            /* build and compare, send nothing */
  unsigned max_in_flight; /* patches out at once; 0 = EVS_STATUS_MAX_IN_FLIGHT */
  /* A patch that failed for a reason that passes (a transport error, 429, 5xx) is written again
   * after a delay, through the provider (the status as it is then), when loop is set: an object
   * whose status changes no more (a broken one) would otherwise keep the old status until its
   * next change. The delay is the patcher's, not an object's: retry_initial_ms (0: 1 s),
   * doubling for each round that still fails, up to retry_max_ms (0: 60 s); a patch that
   * succeeds resets it. NULL loop: the next update retries, nothing else. */
  uv_loop_t *loop;
  uint64_t retry_initial_ms, retry_max_ms;
} evs_status_patcher_options_t;

/* err: transport error or 0; status: the HTTP status (0 with err). */
typedef void (*evs_status_cb)(evs_status_patcher_t *p, int err, int status, void *arg);

/* The turn of ns/name (which waits) has come: call evs_status_patcher_update for it now, from
 * inside this callback, with its current status; that call sends at once. Calling nothing (the
 * object is gone, or has no status to write now) takes it out of the queue: its waiting callback
 * runs with EVS_ECANCELED and its next update writes. ns and name are valid during the call. */
typedef void (*evs_status_provide_cb)(evs_status_patcher_t *p, const char *ns, const char *name,
                                      void *arg);

/* kube is borrowed and must outlive the patcher; its patches go through evs_kube_request at
 * EVS_PRIO_LOW. opts may be NULL. */
int evs_status_patcher_new(evs_kube_t *kube, const evs_status_patcher_options_t *opts,
                           evs_status_patcher_t **out);
/* Who answers for the waiting objects (NULL: nobody; a waiting object is then dropped when its
 * turn comes, and written by its next update). arg is borrowed: set NULL before it goes. */
void evs_status_patcher_set_provider(evs_status_patcher_t *p, evs_status_provide_cb provide,
                                     void *arg);
/* Builds the status of ns/name and, when it differs from the last one this patcher sent (a
 * 64-bit hash of it per object), writes a merge patch {"status": ...} to
 * /apis/keda.sh/v1alpha1/namespaces/<ns>/scaledobjects/<name>/status at EVS_PRIO_LOW (fields
 * it wrote before and no longer has are set to null): at once when a slot is free and nobody
 * waits, otherwise the object waits its turn (see above; the body is built then). One patch in
 * flight per object: an update during it waits too. Returns 1 (sent or waiting: cb runs once,
 * when the patch that writes it ends; with EVS_ECANCELED if a later update replaces it while it
 * waits, if the status sent turns out current again, if its turn finds nothing to write, if the
 * object is forgotten or the patcher closed), 0 (unchanged, or dry run: nothing sent, cb never
 * runs; an update waiting for this object is dropped with EVS_ECANCELED), or a negative code.
 * Inside the provider, a NULL cb keeps the waiting update's callback on the patch sent.
 * in->last_active_ms (the decision's) is limited by evs_status_last_active against the last one
 * sent. Do not close the patcher from inside cb. A failed patch is retried by the next update, and
 * by the retry timer (see the options). */
int evs_status_patcher_update(evs_status_patcher_t *p, const char *ns, const char *name,
                              const evs_status_input_t *in, int64_t now_ms, evs_status_cb cb,
                              void *arg);
/* The status ns/name has on the API server (its informer's copy; NULL or {} when it has none),
 * taken as if this patcher had written it — its hash, its keys (a key it has that the next status
 * lacks is set to null), its lastActiveTime and Active — so that a process that starts or takes
 * the lead writes only the statuses that differ from the server's (50,000 unchanged objects were
 * 50,000 patches at every restart). Ignored while the patcher's own write of that object is in
 * flight, waits or waits for a retry, and once it has written the object until the next
 * evs_status_patcher_follow: a watch may deliver an echo of an older write of ours after a newer
 * one was sent. Returns 1 taken, 0 ignored, or a negative code (UV_ENOMEM: the next update then
 * writes in full). status is borrowed. */
int evs_status_patcher_observe(evs_status_patcher_t *p, const char *ns, const char *name,
                               const json_t *status);
/* 1 when a status of ns/name is known: written by this patcher (in flight or done) or observed
 * on the server; 0 otherwise. */
int evs_status_patcher_known(evs_status_patcher_t *p, const char *ns, const char *name);
/* Another process may write statuses from now on (this one stopped leading): what is observed
 * counts again for every object, until this patcher writes it again. */
void evs_status_patcher_follow(evs_status_patcher_t *p);
/* Forgets an object (deleted): its next update writes in full; a waiting write is dropped
 * (callback with EVS_ECANCELED). */
void evs_status_patcher_forget(evs_status_patcher_t *p, const char *ns, const char *name);
/* Patches sent since creation. */
uint64_t evs_status_patcher_sent(const evs_status_patcher_t *p);
/* Failed patches queued again by the retry timer since creation (see the options). */
uint64_t evs_status_patcher_retries(const evs_status_patcher_t *p);
/* Patches out now (at most max_in_flight). */
unsigned evs_status_patcher_in_flight(const evs_status_patcher_t *p);
/* Cancels what is in flight or waits (callbacks with EVS_ECANCELED) and frees. */
void evs_status_patcher_close(evs_status_patcher_t *p);

#endif
