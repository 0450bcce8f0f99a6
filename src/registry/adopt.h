/* The pure parts of taking over from KEDA (kubernetes.adopt_keda_hpas): is an HPA the one KEDA's
 * operator created for a ScaledObject evscale holds, and may evscale delete it now or has KEDA's
 * operator re-created it after evscale deleted one. Internal to the registry room (registry.c
 * drives them; test/unit/test_adopt.c tests them). No I/O; time is an argument. */
#ifndef EVSCALE_REGISTRY_ADOPT_H
#define EVSCALE_REGISTRY_ADOPT_H

#include <stdint.h>

/* An HPA as the registry keeps it. Strings borrowed; owner_* NULL when it has no controller
 * ownerReference. */
typedef struct {
  const char *ns;         /* its namespace */
  const char *target_key; /* its scaleTargetRef as the registry keys targets */
  const char *owner_api_version, *owner_kind, *owner_name, *owner_uid;
  int evscale_owned; /* carries app.kubernetes.io/managed-by=evscale (the fallback HPA) */
} evs_adopt_hpa_t;

/* A ScaledObject the registry holds (ns, name, uid and its target's key; borrowed). */
typedef struct {
  const char *ns, *name, *uid, *target_key;
} evs_adopt_so_t;

/* 1 when the controller ownerReference names a keda.sh ScaledObject (any version) — the HPAs
 * the registry keeps the owner of. */
int evs_adopt_owner_is_so(const char *owner_api_version, const char *owner_kind);

/* NULL when h is the HPA KEDA's operator created for so; otherwise why not (static text, for the
 * log). so NULL: the registry holds no ScaledObject of the owner's namespace and name. */
const char *evs_adopt_why_not(const evs_adopt_hpa_t *h, const evs_adopt_so_t *so);

typedef enum {
  EVS_ADOPT_DELETE = 0, /* delete it now */
  EVS_ADOPT_WAIT,       /* evscale's delete of this very HPA (same uid) is under way */
  EVS_ADOPT_RECREATED   /* a new one within the window after evscale's delete: leave it */
} evs_adopt_step_t;

/* What to do with KEDA's HPA `hpa_uid` on a target where evscale last deleted KEDA's HPA
 * `deleted_uid` at deleted_ms (0: never; wall-clock ms), at now_ms, with a re-creation window
 * of window_ms. *until_ms (may be NULL) gets the window's end for EVS_ADOPT_RECREATED, else 0. */
evs_adopt_step_t evs_adopt_step(const char *hpa_uid, const char *deleted_uid, int64_t deleted_ms,
                                int64_t now_ms, int64_t window_ms, int64_t *until_ms);

#endif
