/* See src/registry/adopt.h.
 *
 * KEDA's HPA for a ScaledObject, as KEDA's operator builds it (kedacore/keda v2.20.2, commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a, controllers/keda/hpa.go newHPAForScaledObject):
 * named getHPAName ("keda-hpa-<so>", or spec.advanced.horizontalPodAutoscalerConfig.name), in
 * the ScaledObject's namespace, scaleTargetRef the ScaledObject's target (name, resolved kind
 * and group/version), labels app.kubernetes.io/{name,version,part-of,managed-by=keda-operator}
 * and then the ScaledObject's own labels, and the controller reference controller-runtime's
 * SetControllerReference writes (apiVersion keda.sh/v1alpha1, kind ScaledObject, the
 * ScaledObject's name and uid, controller and blockOwnerDeletion true).
 *
 * What identifies it here is the controller reference (group keda.sh, kind ScaledObject, the
 * name and uid of a ScaledObject evscale holds) and the target, not the managed-by label: KEDA
 * copies the ScaledObject's labels over its own (the `for key, value := range
 * scaledObject.Labels` loop after the map literal), so a ScaledObject installed by Helm
 * (app.kubernetes.io/managed-by: Helm, the label Helm's charts put on everything) gets an HPA
 * labelled managed-by=Helm. Requiring keda-operator would refuse those, and the label proves
 * nothing the uid does not: only a reader of the ScaledObject knows its uid, and at most one
 * ownerReference is the controller. The name is not required either (an HPA KEDA made before
 * horizontalPodAutoscalerConfig.name changed keeps its old one until KEDA renames it). An HPA
 * with evscale's label is evscale's own fallback HPA, never adopted. */
#include "adopt.h"

#include <string.h>

static int evs__eq(const char *a, const char *b) {
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int evs_adopt_owner_is_so(const char *owner_api_version, const char *owner_kind) {
  if (owner_api_version == NULL || !evs__eq(owner_kind, "ScaledObject"))
    return 0;
  /* The group is the apiVersion up to its last '/': "keda.sh/v1alpha1" -> "keda.sh". */
  const char *slash = strrchr(owner_api_version, '/');
  return slash != NULL && (size_t)(slash - owner_api_version) == strlen("keda.sh") &&
         strncmp(owner_api_version, "keda.sh", strlen("keda.sh")) == 0;
}

const char *evs_adopt_why_not(const evs_adopt_hpa_t *h, const evs_adopt_so_t *so) {
  if (h == NULL)
    return "no HPA";
  if (h->evscale_owned)
    return "it carries evscale's label (evscale's own fallback HPA)";
  if (h->owner_kind == NULL)
    return "it has no controller ownerReference";
  if (!evs_adopt_owner_is_so(h->owner_api_version, h->owner_kind))
    return "its controller is not a keda.sh ScaledObject";
  if (so == NULL)
    return "its owner is a ScaledObject evscale does not hold";
  if (!evs__eq(h->ns, so->ns) || !evs__eq(h->owner_name, so->name))
    return "its owner is another ScaledObject";
  if (h->owner_uid == NULL || h->owner_uid[0] == '\0' || !evs__eq(h->owner_uid, so->uid))
    return "its owner's uid is not the ScaledObject's (another object of that name)";
  if (!evs__eq(h->target_key, so->target_key))
    return "its scaleTargetRef is not the ScaledObject's target";
  return NULL;
}

evs_adopt_step_t evs_adopt_step(const char *hpa_uid, const char *deleted_uid, int64_t deleted_ms,
                                int64_t now_ms, int64_t window_ms, int64_t *until_ms) {
  if (until_ms)
    *until_ms = 0;
  if (deleted_ms <= 0)
    return EVS_ADOPT_DELETE;
  /* The cache shows the object evscale deleted until the watch reports it gone (and an update
   * of it, say its status, arrives as the old version gone and the new one added). */
  if (evs__eq(hpa_uid, deleted_uid))
    return EVS_ADOPT_WAIT;
  /* A clock stepped back counts as inside the window: never a second delete early. */
  if (now_ms - deleted_ms < window_ms) {
    if (until_ms)
      *until_ms = deleted_ms + window_ms;
    return EVS_ADOPT_RECREATED;
  }
  return EVS_ADOPT_DELETE;
}
