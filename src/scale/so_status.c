/* See include/evscale/so_status.h. */
#include "evscale/so_status.h"

#include <string.h>

int evs_so_status_input(const evs_so_t *so, const evs_decision_t *d, evs_status_trigger_t *trig,
                        size_t cap, evs_status_input_t *in) {
  if (in == NULL || (so != NULL && so->n_triggers > cap))
    return UV_EINVAL;
  memset(in, 0, sizeof *in);
  in->original_replicas = -1;
  in->paused_replicas = -1;
  if (d != NULL) {
    in->has_conditions = 1;
    /* Same order (Ready, Active, Fallback, Paused) and numbering on both sides. */
    for (int i = 0; i < EVS_STATUS__NCOND && i < EVS_COND__COUNT; i++)
      in->conditions[i] = (evs_status_condition_t){d->conditions[i].status, d->conditions[i].reason,
                                                   d->conditions[i].message};
    in->last_active_ms = d->last_active_ms;
    in->active = d->active;
  }
  if (so == NULL)
    return 0;
  in->has_fallback = so->has_fallback;
  in->has_spec = 1;
  in->has_activity = d != NULL;
  in->health_reported = d != NULL && d->health_reported;
  in->paused_replicas = so->paused_replicas;
  in->hpa_name = so->hpa_name;
  for (size_t i = 0; i < so->n_triggers; i++) {
    const evs_trigger_health_t *h = d != NULL && i < d->n_health ? &d->health[i] : NULL;
    trig[i] = (evs_status_trigger_t){.metric_name = so->triggers[i].metric_name,
                                     .type = evs_trigger_type(&so->triggers[i]),
                                     .auth_name = so->triggers[i].auth_name,
                                     .active = h ? h->active : 0,
                                     .failing = h ? h->status == EVS_HEALTH_FAILING : 0,
                                     .failures = h ? h->failures : 0};
  }
  in->triggers = trig;
  in->n_triggers = so->n_triggers;
  return 0;
}
