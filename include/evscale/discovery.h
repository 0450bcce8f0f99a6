/* API discovery: which kinds can be scaled and which API versions the server serves.
 *
 * GET /version, /api, /apis, then the resource list (APIResourceList) of core v1 and of every
 * group's preferred version, in parallel through the client (and so through its limiter).
 * Only the legacy discovery documents are requested (Accept: application/json): they are served
 * by every API server from 1.20 to today, while the aggregated form
 * (application/json;g=apidiscovery.k8s.io;v=v2, 1.30+) is not asked for and never decoded.
 * Shapes: kubernetes/kubernetes v1.20.2 (commit faecb196815e248d3ecfb03c680a4507229c2a56)
 * staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go (APIVersions, APIGroupList,
 * APIGroup, GroupVersionForDiscovery, APIResourceList, APIResource).
 *
 * A kind is scalable when its resource list has "<resource>/scale" (the scale subresource);
 * its kind and namespacing come from the "<resource>" entry of the same list.
 * An aggregated group that is down (its APIService's backend unreachable: /apis/<gv> answers
 * 503, as a broken metrics-server does) is recorded in `failed` and logged, not fatal; only a
 * failure of /api or /apis fails discovery. */
#ifndef EVSCALE_DISCOVERY_H
#define EVSCALE_DISCOVERY_H

#include <stddef.h>

#include "evscale/kube.h"

typedef struct {
  char *group; /* "" for core */
  char *version;
  char *kind;
  char *resource;
  int namespaced;
} evs_kube_scalable_t;

typedef struct {
  char git_version[64];          /* /version gitVersion, "" when unknown */
  char hpa_version[16];          /* autoscaling: "v2", else "v2beta2", else "v1"; "" none */
  char events_group_version[32]; /* "events.k8s.io/v1" when served, else "v1" (core) */
  int coordination_v1;           /* coordination.k8s.io/v1 (Leases) */
  int keda_v1alpha1;             /* keda.sh/v1alpha1 (the ScaledObject CRD) */
  evs_kube_scalable_t *scalable;
  size_t n_scalable;
  char **failed; /* "metrics.k8s.io/v1beta1: 503" ... */
  size_t n_failed;
  size_t n_groups;
} evs_kube_discovery_t;

void evs_kube_discovery_free(evs_kube_discovery_t *d);

/* The scalable kind for a group and kind ("apps", "Deployment"), or NULL. Borrowed. */
const evs_kube_scalable_t *evs_kube_discovery_find(const evs_kube_discovery_t *d, const char *group,
                                                   const char *kind);

/* d is new on success (free with evs_kube_discovery_free), NULL on failure; msg says why. */
typedef void (*evs_kube_discovery_cb)(int status, evs_kube_discovery_t *d, const char *msg,
                                      void *arg);
typedef struct evs_kube_discovery_run_s evs_kube_discovery_run_t;

/* Runs discovery on an open client. cb exactly once from the loop. *out (may be NULL) for
 * evs_kube_discovery_cancel. 0, UV_ENOMEM, or the client's request error (cb not called). */
int evs_kube_discover(evs_kube_t *k, evs_kube_discovery_cb cb, void *arg,
                      evs_kube_discovery_run_t **out);
/* cb runs with EVS_ECANCELED before this returns. */
void evs_kube_discovery_cancel(evs_kube_discovery_run_t *run);

/* --- pure pieces, for tests and the fuzzer --- */

/* Adds the groups of an APIGroupList body to d (versions decide hpa/events/coordination/keda)
 * and appends to *gvs (owned strings, *n) the preferred group versions to list. 0, EVS_EJSON,
 * UV_ENOMEM. */
int evs_kube_discovery_groups(evs_kube_discovery_t *d, const char *json, size_t len, char ***gvs,
                              size_t *n);
/* Adds the scalable kinds of an APIResourceList body. 0, EVS_EJSON, UV_ENOMEM. */
int evs_kube_discovery_resources(evs_kube_discovery_t *d, const char *json, size_t len);

#endif
