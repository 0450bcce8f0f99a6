/* The bridge from the scale room to the kube room's status builder (include/evscale/status.h):
 * fills an evs_status_input_t from a ScaledObject's spec and its last decision, so the kube
 * room needs no scale type.
 *
 *   evs_status_trigger_t trig[EVS_MAX];
 *   evs_so_status_input(so, &step.decision, trig, so->n_triggers, &in);
 *   in.gvkr = ...; in.original_replicas = ...;   // what the target's resolution knows
 *
 * Every string stays borrowed from so and the decision (the engine's static texts). */
#ifndef EVSCALE_SO_STATUS_H
#define EVSCALE_SO_STATUS_H

#include <stddef.h>

#include "evscale/engine.h"
#include "evscale/scaledobject.h"
#include "evscale/status.h"

/* so may be NULL (a broken object: only check_error and the conditions matter then); d may be
 * NULL (no decision yet). trig must hold so->n_triggers entries: UV_EINVAL when cap is smaller.
 * gvkr is left empty and original_replicas -1. */
int evs_so_status_input(const evs_so_t *so, const evs_decision_t *d, evs_status_trigger_t *trig,
                        size_t cap, evs_status_input_t *in);

#endif
