/* room: kube
 * Compact decoders for what the registry caches about scale targets and HorizontalPodAutoscalers:
 * informer decode/free callbacks (include/evscale/informer.h) that keep a few integers per
 * Deployment or StatefulSet, and the scale target, bounds, controller owner and evscale label of
 * an HPA, so the JSON of every watched object can be freed right after decode.
 *
 *   evs_informer_options_t o = {..., .path = "/apis/apps/v1/deployments",
 *       .decode = evs_workload_decode, .free_data = evs_workload_free, .arg = intern};
 *   // or, when the informer's arg is the registry: a two-line wrapper passing its intern
 *   const evs_workload_t *w = evs_informer_get(inf, ns, name)->data;
 *   char key[EVS_WORKLOAD_KEY_MAX];
 *   evs_workload_target_key(ns, so->target_api_version, so->target_kind, so->target_name,
 *                           key, sizeof key);
 *
 * Field semantics (Kubernetes v1.20.2, kubernetes/kubernetes commit
 * faecb196815e248d3ecfb03c680a4507229c2a56, staging/src/k8s.io/api/apps/v1/types.go and
 * autoscaling/v1 + v2beta2 types.go; current release: commit
 * 007b1173faf533318108a04b3fdc227173aa4cb1 staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/
 * types.go ManagedFieldsEntry):
 * - spec.replicas is `*int32` (omitempty): absent is -1 here. The API server defaults it to 1
 *   for Deployments and StatefulSets (pkg/apis/apps/v1/defaults.go), so a served object always
 *   has it; -1 only comes from an object that was never defaulted (hand-written, a CRD).
 * - status.replicas, status.readyReplicas, metadata.generation and status.observedGeneration
 *   are plain ints with omitempty: absent is 0 (a Deployment with no ready pod has no
 *   readyReplicas key at all).
 * - The owner of spec.replicas is the metadata.managedFields entry whose fieldsV1 holds
 *   f:spec → f:replicas; several entries may co-own it (an apply of the same value: test
 *   TestScaleAllResources, test/integration/apiserver/apply/scale_test.go at commit
 *   09649e58b5a1368929e194991a763afc8011795e): the latest `time` wins, a later entry on a tie
 *   (the server sorts entries by operation then time: fieldmanager/internal/managedfields.go
 *   sortEncodedManagedFields). Since Kubernetes 1.22 a write through /scale records its own entry
 *   with `subresource: "scale"` that takes f:spec.f:replicas from the other managers
 *   (fieldmanager/scalehandler.go ToParent). Before 1.22 (our v1.20.2 control plane) a /scale
 *   write leaves managedFields untouched: `kubectl scale` then goes unnamed and the field stays
 *   with the last writer of the whole object (test/data/workload/deployment-v1.20-kubectl-
 *   scale.json shows it).
 * - A Scale (autoscaling/v1, the GET .../scale answer) has spec.replicas (int32 omitempty:
 *   absent is 0) and status.replicas, and no ready count: evs_workload_decode_scale sets
 *   ready_replicas = status.replicas, a documented deviation for kinds read through /scale
 *   (issue 13), and marks it with EVS_WORKLOAD_F_SCALE_OBJECT.
 *
 * Every decoder checks the type of every field it reads: a field of the wrong type (a string
 * where an integer belongs, an array for an object) or an integer out of range is an error
 * (EVS_EPARSE, EVS_ERANGE) with a static message naming the field, never a guess. Null counts as
 * absent, as Go's encoding/json does for pointers and omitempty fields. Unknown fields are
 * ignored. */
#ifndef EVSCALE_WORKLOAD_H
#define EVSCALE_WORKLOAD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "evscale/intern.h"

/* The label evscale puts on the fallback HPA it creates, so it finds it again after a restart
 * (the well-known label of kubernetes.io/docs/concepts/overview/working-with-objects/
 * common-labels). */
#define EVS_WORKLOAD_HPA_LABEL "app.kubernetes.io/managed-by"
#define EVS_WORKLOAD_HPA_LABEL_VALUE "evscale"

/* flags */
enum {
  /* The owner of spec.replicas wrote it through the /scale subresource (1.22+ servers). */
  EVS_WORKLOAD_F_VIA_SCALE = 1u << 0,
  /* Decoded from a Scale object: ready_replicas is status.replicas, generations are 0. */
  EVS_WORKLOAD_F_SCALE_OBJECT = 1u << 1,
};

/* One Deployment or StatefulSet (or any kind read through /scale): 40 bytes on LP64. */
typedef struct {
  const char *replicas_manager; /* interned (owned: one reference), NULL when none is named */
  int64_t generation;           /* metadata.generation; 0 absent */
  int64_t observed_generation;  /* status.observedGeneration; 0 absent */
  int32_t spec_replicas;        /* -1 absent */
  int32_t status_replicas;      /* 0 absent */
  int32_t ready_replicas;       /* 0 absent */
  uint8_t flags;                /* EVS_WORKLOAD_F_* */
} evs_workload_t;

/* Fills *out from a Deployment or StatefulSet (borrowed JSON). The manager string is interned
 * in `intern` (required); release it with evs_workload_clear. Returns 0, UV_EINVAL (obj not an
 * object, intern NULL), EVS_EPARSE / EVS_ERANGE with *why (may be NULL) set to a static message
 * naming the field, UV_ENOMEM. On failure *out holds nothing to release. */
int evs_workload_parse(const json_t *obj, evs_intern_t *intern, evs_workload_t *out,
                       const char **why);
/* The same from an autoscaling/v1 Scale; no manager, intern unused (may be NULL). */
int evs_workload_parse_scale(const json_t *obj, evs_workload_t *out, const char **why);
/* Releases the manager reference (intern: the table it came from); *w is zeroed. */
void evs_workload_clear(evs_workload_t *w, evs_intern_t *intern);

/* Informer callbacks (evs_informer_decode_cb and free_data): arg is the evs_intern_t the
 * manager string is interned in (for evs_workload_decode_scale it may be NULL). *out is a new
 * malloc'd evs_workload_t owned by the cache. */
int evs_workload_decode(const json_t *obj, void **out, void *arg);
int evs_workload_decode_scale(const json_t *obj, void **out, void *arg);
void evs_workload_free(void *data, void *arg);

/* 1 when the status describes the current spec (observedGeneration >= generation), as
 * kubectl rollout status and the HPA's replica count read it; always 1 for a Scale object. */
int evs_workload_status_current(const evs_workload_t *w);

/* One HorizontalPodAutoscaler (autoscaling/v1, v2beta2 and v2 share these fields). The strings
 * live in the same allocation (HPAs are few: one per target at most); free with
 * evs_hpa_info_free. */
typedef struct {
  const char *target_api_version; /* spec.scaleTargetRef.apiVersion; "" absent */
  const char *target_kind;        /* spec.scaleTargetRef.kind (required) */
  const char *target_name;        /* spec.scaleTargetRef.name (required) */
  /* The ownerReference with controller: true; all NULL when there is none. */
  const char *owner_api_version, *owner_kind, *owner_name, *owner_uid;
  int32_t min_replicas; /* spec.minReplicas; -1 absent (the API server defaults it to 1) */
  int32_t max_replicas; /* spec.maxReplicas (required) */
  uint8_t evscale;      /* labels[EVS_WORKLOAD_HPA_LABEL] == EVS_WORKLOAD_HPA_LABEL_VALUE */
} evs_hpa_info_t;

/* *out: new, owned by the caller (evs_hpa_info_free). Errors as evs_workload_parse (a missing
 * scaleTargetRef kind or name, or maxReplicas, is EVS_EPARSE: the API server requires them). */
int evs_hpa_info_parse(const json_t *obj, evs_hpa_info_t **out, const char **why);
void evs_hpa_info_free(evs_hpa_info_t *h);
/* Informer callbacks; arg unused. */
int evs_hpa_info_decode(const json_t *obj, void **out, void *arg);
void evs_hpa_info_free_data(void *data, void *arg);

/* Canonical key of a scale target, "group/kind/ns/name", so two ScaledObjects or an HPA that
 * name the same target with different apiVersion spellings ("apps/v1", "apps/v1beta2") meet:
 * the group is apiVersion up to its last '/', "" for the core group ("v1"). NULL or "" apiVersion
 * and kind take the ScaledObject defaults ("apps/v1", "Deployment", as src/scale/scaledobject.c
 * parse_target_ref and KEDA do). Writes a NUL-terminated key into buf[cap]. Returns 0,
 * UV_EINVAL (ns or name NULL), UV_ENOBUFS (cap too small; buf then holds ""). */
#define EVS_WORKLOAD_KEY_MAX 800 /* 253 (group) + 63 (kind) + 63 (ns) + 253 (name) + 3, rounded */
int evs_workload_target_key(const char *ns, const char *api_version, const char *kind,
                            const char *name, char *buf, size_t cap);

/* --- Internal, exposed for tests and the fuzzer. --- */
/* Seconds since the epoch of an RFC 3339 time ("2026-11-30T11:18:58Z", fraction and offset
 * accepted); 0 on success, EVS_EPARSE otherwise. */
int evs_workload__parse_time(const char *s, int64_t *out);

#endif
