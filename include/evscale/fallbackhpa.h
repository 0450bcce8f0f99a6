/* The Kubernetes side of the circuit breaker's hand-over (issue 18): the plain
 * HorizontalPodAutoscaler that takes over a flapping target while the breaker is open, and the
 * two annotations on the ScaledObject that record the breaker's state.
 *
 *   evs_fallbackhpa_spec_t s = {.version = d->hpa_version, .ns = "shop", .name = "keda-hpa-web",
 *                               .so_name = "web", .so_uid = uid, .target_api_version = "apps/v1",
 *                               .target_kind = "Deployment", .target_name = "web",
 *                               .min_replicas = 2, .max_replicas = 10, .resource = "cpu",
 *                               .utilization = 50};
 *   evs_fallbackhpa_ensure(kube, &s, done, me, &op);     // create, or take over our own
 *   evs_fallbackhpa_annotate(kube, "shop", "web", "1", state, done, me, &op);
 *   ...
 *   evs_fallbackhpa_delete(kube, s.version, "shop", "keda-hpa-web", uid, done, me, &op);
 *   evs_fallbackhpa_annotate(kube, "shop", "web", NULL, NULL, done, me, &op);  // keys removed
 *
 * The object follows KEDA's own HPA for a ScaledObject (kedacore/keda v2.20.2, commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a, controllers/keda/hpa.go newHPAForScaledObject): the
 * name "keda-hpa-<so>" (the caller's), labels app.kubernetes.io/name (the HPA's name cut to 63
 * characters and then to its last letter or digit), app.kubernetes.io/part-of (the ScaledObject's
 * name) and app.kubernetes.io/managed-by (here "evscale", so evscale knows its own), and the
 * controller reference controller-runtime's SetControllerReference writes
 * (vendor/sigs.k8s.io/controller-runtime/pkg/controller/controllerutil/controllerutil.go:
 * controller and blockOwnerDeletion true), so the garbage collector deletes the HPA with the
 * ScaledObject. KEDA also copies the ScaledObject's labels and annotations and its version label;
 * the fallback HPA does not (it is not KEDA's, and a copied annotation would carry the breaker's
 * own annotations onto it).
 *
 * `behavior` is written out in full with the values the API server would fill in
 * (kubernetes/kubernetes pkg/apis/autoscaling/v2/defaults.go, commit
 * 1adaa75345752d96375fae03334fa9ed3bf535a1, and pkg/apis/autoscaling/v2beta2/defaults.go v1.20.2):
 * scale up: no stabilization, policy Max of {Pods 4 per 15 s, Percent 100 per 15 s}; scale down:
 * policy Max of {Percent 100 per 15 s} and a stabilization window of 300 s, the controller's
 * --horizontal-pod-autoscaler-downscale-stabilization default
 * (pkg/controller/podautoscaler/config/v1alpha1/defaults.go: 5 min) that a nil window falls back
 * to. Written out, the hand-over behaves the same whatever the cluster's flags or a later
 * defaulting change.
 *
 * The operations run through the Kubernetes client at EVS_PRIO_HIGH (the hand-over is as urgent
 * as a scale write). Each calls cb exactly once from the loop, unless it fails synchronously (then
 * never) or is canceled (then never). cb gets err 0 on success, else:
 *   EVS_ESTATUS   the API server answered status (msg: its Status message);
 *   UV_EEXIST     ensure or delete found an HPA of that name that is not this ScaledObject's
 *                 (msg names it and says why), status the last HTTP status;
 *   EVS_ECANCELED the client was closed;
 *   other         a transport error (status 0; msg the client's words, if any).
 * The operation's handle is freed before cb runs: do not use it from cb. */
#ifndef EVSCALE_FALLBACKHPA_H
#define EVSCALE_FALLBACKHPA_H

#include <stdint.h>

#include <jansson.h>

#include "evscale/kube.h"

/* The label value that marks an HPA as evscale's (app.kubernetes.io/managed-by). */
#define EVS_FALLBACKHPA_MANAGED_BY "evscale"
/* The breaker's annotations on the ScaledObject. The same strings as breaker.h's
 * EVS_BREAKER_TRIGGERED_ANNOTATION and EVS_BREAKER_STATE_ANNOTATION (test_fallbackhpa.c checks):
 * this room may not include the scale room's header. */
#define EVS_FALLBACKHPA_TRIGGERED_ANNOTATION "keda.sh/circuit-breaker-triggered"
#define EVS_FALLBACKHPA_STATE_ANNOTATION "evscale.io/circuit-breaker-state"

/* Everything borrowed for the call. */
typedef struct {
  const char *version;            /* "v2" or "v2beta2" (discovery's hpa_version) */
  const char *ns;                 /* the ScaledObject's namespace */
  const char *name;               /* the HPA's: "keda-hpa-<so>" or the ScaledObject's hpa name */
  const char *so_name;            /* the owner */
  const char *so_uid;             /* its metadata.uid */
  const char *target_api_version; /* scaleTargetRef: "apps/v1" */
  const char *target_kind;        /* "Deployment" */
  const char *target_name;
  int32_t min_replicas; /* >= 1 (clamping is the caller's) */
  int32_t max_replicas; /* >= min_replicas */
  const char *resource; /* "cpu" or "memory" */
  int32_t utilization;  /* target averageUtilization, percent, >= 1 */
} evs_fallbackhpa_spec_t;

/* The HorizontalPodAutoscaler (new reference), or NULL when s is invalid (a field missing, a
 * version other than v2/v2beta2, a name with '/', min < 1, max < min, utilization < 1, resource
 * neither cpu nor memory) or out of memory. Pure. */
json_t *evs_fallbackhpa_build(const evs_fallbackhpa_spec_t *s);

/* err, status (the last HTTP status, 0 when none), msg (borrowed for the call, NULL on success). */
typedef void (*evs_fallbackhpa_cb)(int err, int status, const char *msg, void *arg);

typedef struct evs_fallbackhpa_op_s evs_fallbackhpa_op_t;

/* Creates the HPA (POST). When one of that name exists (409 AlreadyExists) it is read: if it
 * carries managed-by=evscale and a reference to the same owner uid, the wanted object replaces it
 * (PUT with its resourceVersion; a 409 Conflict there, or a 404, starts over, at most 5 rounds);
 * otherwise cb gets UV_EEXIST naming the foreign HPA. Success: status 201 (created) or 200
 * (replaced). Returns 0, UV_EINVAL (s invalid, see evs_fallbackhpa_build), UV_ENOMEM, or the
 * client's error (EVS_ESTATE not open, EVS_EUNSUPPORTED read-only). *out (may be NULL) is valid
 * until cb runs or evs_fallbackhpa_cancel. */
int evs_fallbackhpa_ensure(evs_kube_t *k, const evs_fallbackhpa_spec_t *s, evs_fallbackhpa_cb cb,
                           void *arg, evs_fallbackhpa_op_t **out);

/* Deletes the HPA ns/name of `version` if it is this ScaledObject's: it is read first, and one
 * without managed-by=evscale, or (so_uid not NULL) without a reference to so_uid, is left alone
 * (UV_EEXIST) — evscale never deletes KEDA's or an operator's HPA of the same name. The DELETE
 * carries propagationPolicy Background and the uid read as a precondition (a replaced object is
 * read again). A 404 at any step is success (status 404). Returns as evs_fallbackhpa_ensure. */
int evs_fallbackhpa_delete(evs_kube_t *k, const char *version, const char *ns, const char *name,
                           const char *so_uid, evs_fallbackhpa_cb cb, void *arg,
                           evs_fallbackhpa_op_t **out);

/* Sets the breaker's two annotations on ScaledObject ns/so_name with one JSON merge patch of
 * metadata.annotations (keda.sh/v1alpha1): a NULL value writes null, which removes the key
 * (RFC 7386), so both are written and removed together. Only those two keys are touched. A
 * missing ScaledObject is EVS_ESTATUS with status 404. Returns as evs_fallbackhpa_ensure
 * (UV_EINVAL also for a value that is not UTF-8). */
int evs_fallbackhpa_annotate(evs_kube_t *k, const char *ns, const char *so_name,
                             const char *triggered, const char *state, evs_fallbackhpa_cb cb,
                             void *arg, evs_fallbackhpa_op_t **out);

/* The operation ends now: its request is canceled, cb never runs, and everything is freed. */
void evs_fallbackhpa_cancel(evs_fallbackhpa_op_t *op);

#endif
