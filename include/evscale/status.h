/* KEDA's ScaledObject status from evscale's decision record, and a patcher that writes it to the
 * /status subresource only when it changed.
 *
 *   evs_status_input_t in = {.so = so, .decision = &step.decision, .gvkr = {...},
 *                            .original_replicas = 3};
 *   json_t *st = evs_status_build(&in);                  // pure: the status object
 *   evs_status_patcher_update(p, ns, name, &in, now_ms, NULL, NULL);   // 1: patch sent
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

#include "evscale/engine.h"
#include "evscale/kubereq.h"
#include "evscale/scaledobject.h"

typedef struct {
  const char *group, *version, *kind, *resource; /* the resolved scale target; kind NULL = none */
} evs_status_gvkr_t;

typedef struct {
  /* The spec (borrowed); NULL for a ScaledObject that did not parse (check_error is then set). */
  const evs_so_t *so;
  /* The last decision (borrowed); NULL = none yet: KEDA's initialized conditions. */
  const evs_decision_t *decision;
  /* Non-NULL: the object is broken; the text names the field, e.g. "ScaledObject doesn't have
   * correct triggers specification: triggers[0].metadata.listLength: not a number". Ready=False
   * (ScaledObjectCheckFailed) and Active=Unknown whatever the decision says. */
  const char *check_error;
  evs_status_gvkr_t gvkr;
  int32_t original_replicas; /* -1 = unknown */
  /* lastActiveTime to write (ms; 0 = none). The patcher fills it from the decision, limited to
   * transitions and once a minute; evs_status_build uses it as given. */
  int64_t last_active_ms;
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

/* --- the patcher --- */

typedef struct evs_status_patcher_s evs_status_patcher_t;

typedef struct {
  int dry_run; /* build and compare, send nothing */
} evs_status_patcher_options_t;

/* err: transport error or 0; status: the HTTP status (0 with err). */
typedef void (*evs_status_cb)(evs_status_patcher_t *p, int err, int status, void *arg);

/* conn is borrowed and must outlive the patcher. opts may be NULL. */
int evs_status_patcher_new(const evs_kubereq_conn_t *conn, const evs_status_patcher_options_t *opts,
                           evs_status_patcher_t **out);
/* Builds the status of ns/name and, when it differs from the last one this patcher wrote (a
 * 64-bit hash of it per object), sends a merge patch {"status": ...} to
 * /apis/keda.sh/v1alpha1/namespaces/<ns>/scaledobjects/<name>/status at EVS_PRIO_LOW (fields
 * it wrote before and no longer has are set to null). One patch in flight per object; an update
 * during one replaces the waiting one. Returns 1 (a patch was sent or queued; cb runs once it
 * ends; a replaced waiting one's cb runs with EVS_ECANCELED), 0 (unchanged or dry run: nothing
 * sent, cb never runs), or a negative code. in->last_active_ms is ignored: the decision's,
 * limited by evs_status_last_active, is written. A failed patch is retried by the next update. */
int evs_status_patcher_update(evs_status_patcher_t *p, const char *ns, const char *name,
                              const evs_status_input_t *in, int64_t now_ms, evs_status_cb cb,
                              void *arg);
/* Forgets an object (deleted): its next update writes in full. */
void evs_status_patcher_forget(evs_status_patcher_t *p, const char *ns, const char *name);
/* Patches sent since creation. */
uint64_t evs_status_patcher_sent(const evs_status_patcher_t *p);
/* Cancels what is in flight (callbacks with EVS_ECANCELED) and frees. */
void evs_status_patcher_close(evs_status_patcher_t *p);

#endif
