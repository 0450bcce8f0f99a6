/* The registry: one record per ScaledObject, tying its spec to its scalers, its engine and
 * breaker state, its target's replicas and the writers. It decides nothing itself: every
 * decision is evs_step (include/evscale/step.h), the same function `evscale simulate` runs.
 *
 *   evs_registry_new(&opts, &reg);
 *   evs_registry_set_leader(reg, 1);          // the lease (or no election): run the scalers
 *   evs_registry_apply(reg, &obj);            // an object from the API or the file
 *   evs_registry_target_seen(reg, &seen);     // a target's replicas from the workload cache
 *   evs_registry_remove(reg, "ns", "name");
 *   evs_registry_close(reg, done, me);
 *
 * Data flow (one way): a scaler's reading, a change of the target's replicas, a changed spec or
 * the step's own timer → evs_step at once (no loop tick) → when it says write, the scale writer
 * (at most one write in flight per target; a decision made while one is in flight waits for its
 * answer and is re-made then, from the count just written, so exactly one write leaves per real
 * change of the desired count) → the status patcher (which sends only what changed).
 *
 * Who drives a target: two ScaledObjects naming one target (the same group, kind, namespace and
 * name whatever apiVersion spelling) — the one created first (then by name) drives it; the other
 * gets Ready=False with KEDA's webhook text (kedacore/keda v2.20.2
 * apis/keda/v1alpha1/scaledobject_webhook.go verifyScaledObjects: "the workload '%s' of type '%s'
 * is already managed by the ScaledObject '%s'") and what to do. A target an HPA drives that
 * evscale did not create (evs_registry_hpa_seen) is refused the same way (verifyHpas: "... is
 * already managed by the hpa '%s'").
 *
 * Moving from KEDA (kubernetes.adopt_keda_hpas, evs_registry_set_adopt): an HPA KEDA's operator
 * created for a ScaledObject the registry holds (controller ownerReference keda.sh ScaledObject
 * with that object's name and uid, on its target; src/registry/adopt.c says why not the
 * managed-by label) is deleted by the leader (DELETE with the HPA's uid as a precondition; never
 * in a dry run) and the ScaledObject drives the target once the HPA informer reports it gone;
 * until then it stays refused with "adopting KEDA's HPA ...". KEDA's HPA appearing again within
 * adopt_window_ms (kubernetes.adopt_window) of evscale's delete means KEDA's operator still runs:
 * it is left alone and the ScaledObject refused with what to do until the window has passed. Any
 * other HPA is refused as above.
 *
 * Leadership: only a leader runs scalers and writes; a follower keeps the records (its caches
 * warm) and runs nothing, so Redis and Prometheus see one reader. evs_registry_set_leader(1)
 * starts every record's scalers, each reading within a second (jittered by the scalers'
 * cadence) — taking lastActiveTime from the object's status, which may be up to a minute stale
 * (the status patcher writes it at most once a minute while active).
 *
 * Ownership: options are copied; the borrowed services (env, writer, status, kube, discovery,
 * metrics) must outlive the registry. Loop thread only. */
#ifndef EVSCALE_REGISTRY_H
#define EVSCALE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "evscale/breaker.h"
#include "evscale/discovery.h"
#include "evscale/engine.h"
#include "evscale/events.h"
#include "evscale/keda_metrics.h"
#include "evscale/kube.h"
#include "evscale/metrics.h"
#include "evscale/scaledobject.h"
#include "evscale/scaler.h"
#include "evscale/scalewriter.h"
#include "evscale/status.h"
#include "evscale/triggerauth.h"

typedef struct evs_registry_s evs_registry_t;

typedef struct {
  uv_loop_t *loop;
  const evs_scaler_env_t *env; /* borrowed; scalers are created with it */
  evs_engine_config_t engine;
  evs_breaker_config_t breaker;
  uint64_t active_read_interval_ms; /* defaults.active_read_interval; 0: 15 s */
  evs_scalewriter_t *writer;        /* borrowed; NULL: no writes (no Kubernetes) */
  evs_status_patcher_t *status;     /* borrowed; NULL: no status writes */
  evs_kube_t *kube;                 /* borrowed; NULL: targets' replicas only from target_seen */
  const evs_kube_discovery_t *discovery; /* borrowed; NULL: apps/v1 Deployment, StatefulSet */
  const char *default_namespace;         /* for file objects without one ("default") */
  int dry_run;                           /* log each decision, write nothing */
  /* The (Cluster)TriggerAuthentication caches: the object named, or NULL when absent. NULL
   * function: triggers with an authenticationRef fail with "not found". */
  const evs_triggerauth_t *(*find_auth)(void *arg, evs_triggerauth_kind_t kind, const char *ns,
                                        const char *name);
  void *find_auth_arg;
  const char *cluster_namespace; /* kubernetes.cluster_object_namespace ("" = the client's) */
  evs_metrics_t *metrics;        /* borrowed; may be NULL */
  /* KEDA's metric families (obs/keda_metrics.h): per ScaledObject and trigger, the value, the
   * activity, errors, scale writes and their latency. Borrowed; NULL = none. */
  evs_keda_metrics_t *keda_metrics;
  /* The breaker's hand-over (include/evscale/fallbackhpa.h): the HPA version discovery found
   * ("v2", "v2beta2"; NULL or other: no hand-over, the breaker only holds), and
   * circuit_breaker.fallback_metric as resource ("cpu", "memory") and utilization percent. */
  const char *hpa_version;
  const char *fallback_resource;
  int32_t fallback_utilization;
  /* Kubernetes Events on the ScaledObjects (kube/events.h; KEDA's reasons and evscale's own).
   * Borrowed; NULL = none. Only the leader emits. */
  evs_events_t *events;
  /* kubernetes.adopt_keda_hpas, and how long after deleting KEDA's HPA one re-created for the
   * same ScaledObject is taken for KEDA's operator still running (kubernetes.adopt_window; 0: 5
   * minutes). evs_registry_set_adopt changes both at a reload. */
  int adopt_keda_hpas;
  int64_t adopt_window_ms;
} evs_registry_options_t;

/* 0, UV_EINVAL (no loop), UV_ENOMEM. Not leading until evs_registry_set_leader(reg, 1). */
int evs_registry_new(const evs_registry_options_t *o, evs_registry_t **out);

typedef enum { EVS_REGISTRY_API = 0, EVS_REGISTRY_FILE = 1 } evs_registry_origin_t;

/* One ScaledObject as the registry receives it. `so` is stolen on success AND on failure (NULL
 * when the object is broken: check_error then says why, naming the field). */
typedef struct {
  evs_registry_origin_t origin;
  const char *ns, *name, *uid; /* copied */
  evs_so_t *so;                /* stolen; NULL = broken */
  const char *check_error;     /* copied; the broken object's Ready=False message */
  int64_t created_ms;          /* metadata.creationTimestamp; 0 = unknown (now) */
  int64_t last_active_ms;      /* status.lastActiveTime; 0 = none */
  int32_t original_replicas;   /* status.originalReplicaCount; -1 = none */
  /* status.conditions' Paused is True, or False ScaledObjectUnpaused: it has been paused (the
   * engine keeps KEDA's ScaledObjectUnpaused across restarts and fail-overs). */
  int was_paused;
  /* The breaker's annotations as the object carries them (API objects): whether
   * keda.sh/circuit-breaker-triggered is present, and evscale.io/circuit-breaker-state (NULL
   * when absent). */
  int breaker_triggered;
  const char *breaker_state;
  /* metadata.deletionTimestamp is set (the object waits for its finalizers), its finalizers
   * (borrowed) and resourceVersion (for the finalizer's optimistic-concurrency patch). */
  int deleting;
  const char *const *finalizers;
  size_t n_finalizers;
  const char *resource_version;
  /* status as the API server holds it (borrowed; NULL none): the status patcher takes it for
   * what is written (evs_status_patcher_observe), so an unchanged status is not written again. */
  const json_t *status;
} evs_registry_object_t;

/* evscale's finalizer, put on a ScaledObject with advanced.restoreToOriginalReplicaCount only: a
 * delete while evscale is down or failing over still restores the count when it is back (KEDA's
 * "finalizer.keda.sh" does the same for KEDA). Uninstalling evscale removes it (README). */
#define EVS_REGISTRY_FINALIZER "evscale.io/restore-replicas"

/* Adds or updates. An update keeps the engine and breaker state and restarts only the scalers
 * whose trigger changed; a changed bound re-decides at once. 0, UV_EINVAL, UV_ENOMEM, EVS_EEXIST
 * (a file object clashing with an API object of the same namespace/name: the API object wins,
 * the file object is refused and logged). */
int evs_registry_apply(evs_registry_t *reg, const evs_registry_object_t *obj);
/* The object is gone: its scalers stop, its target is handed to the next ScaledObject naming it
 * (if any). Unknown names are ignored. */
void evs_registry_remove(evs_registry_t *reg, const char *ns, const char *name);

/* A target's replicas as a cache saw them (the workload informer), or -1 when unknown. */
typedef struct {
  const char *api_version, *kind, *ns, *name;
  int32_t spec_replicas, status_replicas, ready_replicas;
  const char *manager; /* field manager of spec.replicas, or NULL */
} evs_registry_target_obs_t;
void evs_registry_target_seen(evs_registry_t *reg, const evs_registry_target_obs_t *obs);

/* An HPA on a target (deleted = 1 when it went away). evscale_owned: carries evscale's label
 * (the fallback HPA). uid: its metadata.uid (the delete's precondition when it is adopted);
 * owner_*: its controller ownerReference (all NULL when none). Everything borrowed. */
typedef struct {
  const char *ns, *name, *uid;
  const char *target_api_version, *target_kind, *target_name;
  const char *owner_api_version, *owner_kind, *owner_name, *owner_uid;
  int evscale_owned;
  int deleted;
} evs_registry_hpa_obs_t;
void evs_registry_hpa_seen(evs_registry_t *reg, const evs_registry_hpa_obs_t *obs);

/* kubernetes.adopt_keda_hpas and kubernetes.adopt_window (window_ms; 0: 5 minutes), at a
 * reload: on, KEDA's HPAs already seen are adopted now (by the leader); off, adoption stops (a
 * deleted HPA is not re-created); a new window applies to the HPAs left alone at once. */
void evs_registry_set_adopt(evs_registry_t *reg, int adopt, uint64_t window_ms);

/* A (Cluster)TriggerAuthentication was added, changed or deleted (ns "" for the cluster
 * kind): every trigger that names it resolves its parameters again and restarts. */
void evs_registry_auth_changed(evs_registry_t *reg, evs_triggerauth_kind_t kind, const char *ns,
                               const char *name);

/* Leading (1) runs every record's scalers and writes; 0 stops them. */
void evs_registry_set_leader(evs_registry_t *reg, int leading);

typedef struct {
  size_t objects, broken, targets, scalers;
  uint64_t decisions, writes, writes_failed, coalesced;
} evs_registry_stats_t;
void evs_registry_stats(const evs_registry_t *reg, evs_registry_stats_t *out);

/* Stops every scaler and timer, then frees and calls cb(arg) from a later loop iteration. */
void evs_registry_close(evs_registry_t *reg, void (*cb)(void *arg), void *arg);

/* --- the ScaledObject informer's decoder --- */

/* What the informer keeps per ScaledObject: the parsed object or why it is broken. */
typedef struct {
  evs_so_t *so;      /* NULL = broken */
  char *check_error; /* NULL unless broken */
  int64_t created_ms, last_active_ms;
  int32_t original_replicas;
  int was_paused;        /* status: Paused True, or ScaledObjectUnpaused */
  int breaker_triggered; /* the annotation keda.sh/circuit-breaker-triggered is present */
  char *breaker_state;   /* evscale.io/circuit-breaker-state, or NULL */
  int deleting;          /* metadata.deletionTimestamp set */
  char **finalizers;     /* metadata.finalizers */
  size_t n_finalizers;
  json_t *status; /* status (a reference; NULL none): only while the informer hands it over */
} evs_registry_decoded_t;

/* evs_informer_decode_cb: validates with the ScaledObject model in API mode (unknown fields are
 * warnings, logged). A broken object is still decoded (so NULL, check_error set) so its status
 * can say why. */
int evs_registry_decode(const json_t *obj, void **out, void *arg);
void evs_registry_decoded_free(void *data, void *arg);

/* RFC 3339 ("2026-11-30T09:08:30Z", fractional seconds allowed) to ms since the epoch; -1 when
 * malformed. */
int64_t evs_registry_parse_time(const char *s);

#endif
