/* The HPA's part of a decision, for the External metrics KEDA gives it:
 *  - kubernetes/kubernetes pkg/controller/podautoscaler/replica_calculator.go (the Tolerances
 *    version: GetExternalPerPodMetricReplicas, GetExternalMetricReplicas,
 *    getUsageRatioReplicaCount, Tolerances.isWithin — inclusive bounds);
 *  - horizontal.go reconcileAutoscaler (current above max / below min bypass behavior) and
 *    computeReplicasForMetrics (max over valid metrics; all invalid -> no change; some invalid
 *    and a scale-down -> no change);
 *  - kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a pkg/fallback/fallback.go doFallback
 *    and pkg/scaling/modifiers/formula.go calculateScalingModifiersFormula. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine_internal.h"
#include "evscale/formula.h"

double evs_engine__milli(double v) {
  char buf[64];
  if (isnan(v) || isinf(v) || v < 0)
    return 0;
  if (v >= 1e15) /* no milli digits left in a double: "%.3f" would change nothing */
    return v;
  snprintf(buf, sizeof buf, "%.3f", v);
  return strtod(buf, NULL);
}

/* Quantity.MilliValue of a milli-precise value, saturated (the HPA caps sums at MaxInt64). */
static int64_t to_milli(double v) {
  double m = v * 1000;
  if (m >= 9.2e18)
    return INT64_MAX;
  if (m <= -9.2e18)
    return INT64_MIN;
  return llround(m);
}

/* int32(math.Ceil(x)) capped at MaxInt32; below 0 (a negative composite value) the HPA's
 * max(0, desired) makes it 0. */
static int32_t ceil_i32(double x) {
  double c = ceil(x);
  if (isnan(c) || c < 0)
    return 0;
  if (c > INT32_MAX)
    return INT32_MAX;
  return (int32_t)c;
}

/* Tolerances.isWithin: inclusive on both sides, each side with its own tolerance. */
static int within(double ratio, double tol_down, double tol_up) {
  return (1.0 - tol_down) <= ratio && ratio <= (1.0 + tol_up);
}

int32_t evs_engine__proposal(int metric_type, double usage, double target, int32_t spec_replicas,
                             int32_t status_replicas, int32_t ready_replicas, double tol_down,
                             double tol_up) {
  int64_t u = to_milli(usage), t = to_milli(target);
  if (t <= 0)
    return -1;
  if (metric_type == EVS_METRIC_AVERAGE_VALUE) {
    /* Divides by scale.status.replicas; pod readiness is not consulted. At 0 the ratio is Inf or
     * NaN, never within, so the answer is ceil(usage / target). */
    double ratio = (double)u / ((double)t * (double)status_replicas);
    if (within(ratio, tol_down, tol_up))
      return status_replicas;
    return ceil_i32((double)u / (double)t);
  }
  double ratio = (double)u / (double)t;
  if (spec_replicas == 0) /* scale-to-zero path: no tolerance, no pods */
    return ceil_i32(ratio);
  if (within(ratio, tol_down, tol_up))
    return spec_replicas;
  return ceil_i32(ratio * (double)ready_replicas);
}

int evs_engine__legacy(const evs_so_t *so) {
  /* kedacore/keda v2.20.2 controllers/keda/hpa.go newHPAForScaledObject: behavior is the
   * ScaledObject's, or nil; paused-scale-in / -out create one (selectPolicy Disabled). */
  return !so->behavior->present && !so->paused_scale_in && !so->paused_scale_out;
}

int evs_engine__fallback_valid(const evs_so_t *so) {
  if (!so->has_fallback || so->fallback_failure_threshold < 0 || so->fallback_replicas < 0)
    return 0;
  /* HasValidFallback parses scalingModifiers.target with ParseInt: it must be a whole number. */
  if (so->has_modifiers &&
      !(so->modifiers->target > 0 && so->modifiers->target == floor(so->modifiers->target)))
    return 0;
  return 1;
}

/* doFallback: the metric value that makes the HPA land on the fallback count. Returns 0, or -1
 * when it cannot be computed (Value with no ready pod). */
static int fallback_metric(const evs_so_t *so, double target, int metric_type, int32_t current,
                           int32_t ready, double *out) {
  double fb = so->fallback_replicas, replicas;
  switch (so->fallback_behavior) {
  case EVS_FALLBACK_CURRENT_REPLICAS:
    replicas = current;
    break;
  case EVS_FALLBACK_CURRENT_REPLICAS_IF_HIGHER:
    replicas = current > fb ? current : fb;
    break;
  case EVS_FALLBACK_CURRENT_REPLICAS_IF_LOWER:
    replicas = current < fb ? current : fb;
    break;
  default:
    replicas = fb;
  }
  if (metric_type == EVS_METRIC_VALUE) {
    if (ready <= 0)
      return -1;
    replicas /= ready;
  }
  /* resource.NewMilliQuantity(int64(normalisationValue*1000*replicas)): truncated. */
  double m = target * 1000 * replicas;
  if (!(fabs(m) < 9.2e18))
    return -1;
  *out = (double)(int64_t)m / 1000;
  return 0;
}

static int32_t status_of(const evs_engine_input_t *in) {
  return in->status_replicas >= 0 ? in->status_replicas : in->current_replicas;
}

static int32_t ready_of(const evs_engine_input_t *in) {
  return in->ready_replicas >= 0 ? in->ready_replicas : status_of(in);
}

#define EVS__MAX_FORMULA_VARS 64

int evs_engine__composite(const evs_so_t *so, const evs_engine_state_t *st,
                          const evs_engine_input_t *in, double *out) {
  double vars[EVS__MAX_FORMULA_VARS], v;
  int ok[EVS__MAX_FORMULA_VARS], is_nil = 0;
  const evs_formula_t *f = so->modifiers->formula_compiled;
  if (f == NULL)
    return -1;
  /* A trigger in fallback (other than behavior scalingModifiers) replaces the composite value
   * with the fallback metric (modifiers.go HandleScalingModifiers). */
  for (size_t i = 0; i < so->n_triggers; i++)
    if (st->health[i].in_fallback && so->fallback_behavior != EVS_FALLBACK_SCALING_MODIFIERS)
      return fallback_metric(so, so->modifiers->target, so->modifiers_metric_type,
                             in->current_replicas, ready_of(in), out);
  size_t n = evs_formula_var_count(f);
  if (n > EVS__MAX_FORMULA_VARS)
    return -1;
  for (size_t j = 0; j < n; j++) {
    int k = evs_so_trigger_index(so, evs_formula_var_name(f, j));
    /* A failed or missing trigger is nil to the formula: only `??` can use it. */
    ok[j] = k >= 0 && st->health[k].has_value;
    vars[j] = ok[j] ? st->health[k].value : 0;
  }
  if (evs_formula_eval_ex(f, vars, ok, &v, &is_nil, NULL, 0) != 0)
    return -1;
  if (is_nil) {
    if (!so->has_fallback)
      return -1;
    v = (double)so->fallback_replicas * so->modifiers->target;
  }
  if (!(fabs(v * 1000) < 9.2e18))
    return -1;
  *out = (double)(int64_t)(v * 1000) / 1000; /* Value.SetMilli(int64(out * 1000)) */
  return 0;
}

/* Per-direction tolerances from behavior, else engine.tolerance (the controller flag's role). */
static void tolerances(const evs_so_t *so, const evs_engine_config_t *cfg, double *down,
                       double *up) {
  evs_scaling_rules_t u, d;
  evs_behavior_effective(so->behavior, &u, &d);
  *down = d.tolerance >= 0 ? d.tolerance : cfg->tolerance;
  *up = u.tolerance >= 0 ? u.tolerance : cfg->tolerance;
}

/* computeReplicasForMetrics over the triggers; -1 = no change. */
static int32_t metric_replicas(const evs_so_t *so, const evs_engine_config_t *cfg,
                               evs_engine_state_t *st, const evs_engine_input_t *in,
                               int *any_fallback) {
  int32_t best = -1, cur = in->current_replicas;
  int invalid = 0;
  double tol_down, tol_up;
  tolerances(so, cfg, &tol_down, &tol_up);
  for (size_t i = 0; i < so->n_triggers; i++) {
    evs_trigger_health_t *h = &st->health[i];
    const evs_trigger_t *t = &so->triggers[i];
    double usage = h->value;
    int ok = h->has_value;
    if (h->in_fallback) {
      ok = fallback_metric(so, t->target, t->metric_type, cur, ready_of(in), &usage) == 0;
      *any_fallback |= ok;
    }
    int32_t p = ok ? evs_engine__proposal(t->metric_type, usage, t->target, cur, status_of(in),
                                          ready_of(in), tol_down, tol_up)
                   : -1;
    if (p < 0) {
      invalid++;
      continue;
    }
    h->proposal = p;
    if (p > best)
      best = p;
  }
  if (best < 0 || (invalid > 0 && best < cur))
    return -1; /* nothing valid, or a scale-down on partial data */
  return best;
}

static int32_t modifiers_replicas(const evs_so_t *so, const evs_engine_config_t *cfg,
                                  const evs_engine_state_t *st, const evs_engine_input_t *in,
                                  double composite, int composite_ok, int *any_fallback) {
  double tol_down, tol_up;
  if (!composite_ok)
    return -1;
  tolerances(so, cfg, &tol_down, &tol_up);
  for (size_t i = 0; i < so->n_triggers; i++)
    *any_fallback |= st->health[i].in_fallback;
  int32_t p =
      evs_engine__proposal(so->modifiers_metric_type, composite, so->modifiers->target,
                           in->current_replicas, status_of(in), ready_of(in), tol_down, tol_up);
  return p < 0 ? -1 : p;
}

void evs_engine__hpa(const evs_so_t *so, const evs_engine_config_t *cfg, evs_engine_state_t *st,
                     const evs_engine_input_t *in, double composite, int composite_ok,
                     evs_decision_t *d) {
  int32_t cur = d->current, min = evs_so_min(so), max = evs_so_max(so);
  int32_t hpa_min = min > 0 ? min : 1; /* GetHPAMinReplicas */
  int32_t hpa_max = max;
  int any_fb = 0;
  if (cfg->max_replicas_cap > 0 && cfg->max_replicas_cap < hpa_max)
    hpa_max = cfg->max_replicas_cap;
  if (hpa_max < hpa_min) /* the object's own minimum wins over the operator's cap */
    hpa_max = hpa_min;
  if (cur > hpa_max || cur < hpa_min) {
    d->desired = cur > hpa_max ? hpa_max : hpa_min;
    d->write = 1;
    d->reason = EVS_REASON_CLAMP;
    return;
  }
  int32_t want = so->has_modifiers
                     ? modifiers_replicas(so, cfg, st, in, composite, composite_ok, &any_fb)
                     : metric_replicas(so, cfg, st, in, &any_fb);
  if (want < 0) {
    if (d->reason == EVS_REASON_NONE)
      d->reason = EVS_REASON_TRIGGER_ERROR;
    return;
  }
  evs_scaling_rules_t up, down;
  evs_behavior_result_t r;
  if (evs_engine__legacy(so)) {
    /* No behavior: horizontal.go normalizeDesiredReplicas with the controller's default
     * --horizontal-pod-autoscaler-downscale-stabilization of 5 minutes. */
    evs_behavior_normalize_legacy(&st->behavior, cur, want, hpa_min, hpa_max, 300, in->now_ms, &r);
  } else {
    evs_behavior_effective(so->behavior, &up, &down);
    /* paused-scale-in / -out become selectPolicy: Disabled (controllers/keda/hpa.go). */
    if (so->paused_scale_in)
      down.select = EVS_SELECT_DISABLED;
    if (so->paused_scale_out)
      up.select = EVS_SELECT_DISABLED;
    evs_behavior_normalize(&st->behavior, &up, &down, cur, want, hpa_min, hpa_max, in->now_ms, &r);
  }
  d->hpa_ran = 1;
  d->limit = r.limit;
  if (r.next_change_ms < d->next_eval_ms)
    d->next_eval_ms = r.next_change_ms;
  if (r.desired != cur) {
    d->desired = r.desired;
    d->write = 1;
    d->reason = any_fb ? EVS_REASON_FALLBACK : EVS_REASON_METRICS;
  } else if (so->paused_scale_in && r.stabilized < cur) {
    d->reason = EVS_REASON_PAUSED_SCALE_IN;
  } else if (so->paused_scale_out && r.stabilized > cur) {
    d->reason = EVS_REASON_PAUSED_SCALE_OUT;
  } else if (any_fb && d->reason == EVS_REASON_NONE) {
    d->reason = EVS_REASON_FALLBACK;
  }
}
