/* Internal cross-file functions of the decision engine (src/scale/engine.c, engine_hpa.c). */
#ifndef EVSCALE_ENGINE_INTERNAL_H
#define EVSCALE_ENGINE_INTERNAL_H

#include "evscale/engine.h"

/* KEDA's quantityFromFloat64 (pkg/scalers/scaler.go): NaN, ±Inf and negative values are 0; the
 * rest is rounded to milli-units ("%.3f"). */
double evs_engine__milli(double v);
/* No behavior reaches the HPA: its legacy path (normalizeDesiredReplicas) applies. */
int evs_engine__legacy(const evs_so_t *so);
/* fallback.go HasValidFallback (with a fallback configured at all). */
int evs_engine__fallback_valid(const evs_so_t *so);
/* The scalingModifiers composite value; 0, or -1 when there is none (formula error, nil without
 * fallback, a non-finite result). */
int evs_engine__composite(const evs_so_t *so, const evs_engine_state_t *st,
                          const evs_engine_input_t *in, double *out);
/* The HPA's part: bounds, metric proposals, behavior. Updates d. */
void evs_engine__hpa(const evs_so_t *so, const evs_engine_config_t *cfg, evs_engine_state_t *st,
                     const evs_engine_input_t *in, double composite, int composite_ok,
                     evs_decision_t *d);
void evs_engine__run(const evs_so_t *so, const evs_engine_config_t *cfg, evs_engine_state_t *st,
                     const evs_engine_input_t *in, evs_decision_t *d);

/* One External metric's replica proposal (replica_calculator.go GetExternalPerPodMetricReplicas
 * for AverageValue, GetExternalMetricReplicas for Value). usage and target in units (milli
 * precision); returns -1 when the target is not positive. */
int32_t evs_engine__proposal(int metric_type, double usage, double target, int32_t spec_replicas,
                             int32_t status_replicas, int32_t ready_replicas, double tol_down,
                             double tol_up);

#endif
