/* The decision engine: KEDA's executor (0 <-> 1, idle, cooldown) and the HPA's replica math
 * (External metrics, tolerance, behavior) for one ScaledObject, as pure code.
 *
 *   spec (evs_so_t) + readings (one per trigger) + engine state + replicas + now
 *       -> decision record (desired count, reason, conditions, per-trigger health, next look)
 *
 * Sources (cite when changing):
 *  - kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a (and v2.20.2 for the fallback's
 *    activity, pkg/scaling/scale_handler.go): pkg/scaling/executor/
 *    scale_scaledobjects.go (RequestScale), pkg/fallback/fallback.go, pkg/scalers/scaler.go
 *    (quantityFromFloat64: NaN/Inf/negative -> 0, milli precision), apis/keda/v1alpha1/
 *    condition_types.go and controllers/keda/scaledobject_controller.go (condition texts).
 *  - kubernetes/kubernetes pkg/controller/podautoscaler/replica_calculator.go
 *    (GetExternalPerPodMetricReplicas, GetExternalMetricReplicas, getUsageRatioReplicaCount,
 *    Tolerances.isWithin) and horizontal.go (computeReplicasForMetrics, behavior).
 *
 * Flow of one decision (evs_engine_decide):
 *  1. paused-replicas N -> desired N ("PausedReplicas"); paused -> no write ("Paused").
 *  2. Per trigger: health (failures in a row, fallback), activity (raw value > activation target,
 *     strictly), value in milli-units for the math. A trigger in fallback (failures >
 *     failureThreshold) is active and not an error (KEDA >= 2.19, kedacore/keda #7244:
 *     scale_handler.go getScalerState isActiveOrFallback); with fallback.behavior
 *     scalingModifiers it is a nil to the formula, neither active nor an error.
 *  3. Active (or force-activation) at 0, or below min with idleReplicaCount set -> max(min, 1).
 *     Inactive: errors without fallback -> hold (Ready=False TriggerError); errors with a fallback
 *     whose replicas != 0 -> the fallback acts through the HPA math; above idle/0 with min 0 or
 * idle set -> idle/0 once cooldownPeriod has passed since the last active time (or
 *     initialCooldownPeriod since creation); below min without idle -> min.
 *  4. Otherwise, with current > 0 (the HPA idles at 0): the HPA math per trigger, max over
 *     triggers, the failed-metric rules, then behavior (normalizeDesiredReplicasWithBehaviors)
 *     or, when KEDA's HPA has none (no behavior, no paused-scale-in/-out), the legacy
 *     normalizeDesiredReplicas (behavior.h), clamp to [max(min,1), min(max, cap)]. A
 *     recommendation stays in force until the next one replaces it.
 * The breaker comes after the engine: include/evscale/step.h runs both as one step.
 *
 * Invariant: desired is always in [min, max] of the object, or exactly the idle count, the
 * paused-replicas count, or 0 (scale to zero); with write == 0 nothing must be written. */
#ifndef EVSCALE_ENGINE_H
#define EVSCALE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "evscale/behavior.h"
#include "evscale/scaledobject.h"
#include "evscale/scaler.h"

/* Engine-wide settings from the configuration file (core/config fills this). */
typedef struct {
  double tolerance;                   /* engine.tolerance, default 0.1 (inclusive, both sides) */
  int32_t max_replicas_cap;           /* limits.max_replicas; 0 = no cap */
  int32_t default_polling_interval_s; /* defaults.polling_interval, 30 */
  int32_t default_cooldown_s;         /* defaults.cooldown_period, 300 */
} evs_engine_config_t;

void evs_engine_config_default(evs_engine_config_t *cfg);

/* ---- the decision record ---- */

typedef enum { EVS_COND_FALSE = 0, EVS_COND_TRUE = 1, EVS_COND_UNKNOWN = 2 } evs_cond_status_t;

enum { EVS_COND_READY = 0, EVS_COND_ACTIVE, EVS_COND_FALLBACK, EVS_COND_PAUSED, EVS_COND__COUNT };

/* A status condition as KEDA writes it; reason and message are static strings. */
typedef struct {
  uint8_t status; /* evs_cond_status_t */
  const char *reason;
  const char *message;
} evs_condition_t;

typedef enum {
  EVS_REASON_NONE = 0,         /* no change */
  EVS_REASON_PAUSED,           /* autoscaling.keda.sh/paused: write nothing */
  EVS_REASON_PAUSED_REPLICAS,  /* hold exactly autoscaling.keda.sh/paused-replicas */
  EVS_REASON_ACTIVATE,         /* 0 or idle -> max(min, 1) */
  EVS_REASON_DEACTIVATE,       /* -> idle or 0 after the cooldown */
  EVS_REASON_COOLDOWN,         /* inactive, waiting for the cooldown */
  EVS_REASON_TO_MIN,           /* inactive below min without idle -> min */
  EVS_REASON_METRICS,          /* HPA math */
  EVS_REASON_FALLBACK,         /* HPA math with at least one trigger in fallback */
  EVS_REASON_TRIGGER_ERROR,    /* errors, no fallback: hold, never scale in */
  EVS_REASON_NO_METRICS,       /* no reading yet for any trigger: hold */
  EVS_REASON_CLAMP,            /* current outside [min, max]: brought back in range */
  EVS_REASON_PAUSED_SCALE_IN,  /* a scale-in was blocked by paused-scale-in */
  EVS_REASON_PAUSED_SCALE_OUT, /* a scale-out was blocked by paused-scale-out */
  EVS_REASON__COUNT
} evs_reason_t;

/* Short CamelCase name of a reason ("Activate", "Cooldown", ...). Never NULL. */
const char *evs_engine_reason_name(int reason);

typedef enum { EVS_HEALTH_NONE = 0, EVS_HEALTH_HAPPY, EVS_HEALTH_FAILING } evs_health_status_t;

/* Per trigger, keyed in status.health by the trigger's metric_name (KEDA keys it so). */
typedef struct {
  int32_t failures;        /* numberOfFailures: failed readings in a row */
  uint8_t status;          /* evs_health_status_t */
  uint8_t active;          /* this trigger's activity (raw value > activation target, no error) */
  uint8_t in_fallback;     /* failures > failureThreshold with a fallback configured */
  uint8_t has_value;       /* value is meaningful */
  double value;            /* milli-rounded, negative/NaN/Inf -> 0 (what the HPA would see) */
  int32_t proposal;        /* this trigger's replica proposal, -1 when none */
  int64_t last_reading_ms; /* time of the last reading consumed (counts each reading once) */
} evs_trigger_health_t;

typedef struct {
  int32_t current; /* scale.spec.replicas seen */
  int32_t desired; /* the count to write when write != 0, else == current */
  uint8_t write;   /* 1: write desired; 0: write nothing */
  uint8_t reason;  /* evs_reason_t */
  uint8_t active;  /* the object is active (or forced) */
  uint8_t limit;   /* evs_limit_t from behavior (HPA's ScalingLimited reason) */
  evs_condition_t conditions[EVS_COND__COUNT];
  /* KEDA's status.lastActiveTime after this decision (ms; 0 = never). */
  int64_t last_active_ms;
  /* When to evaluate again without a new reading (ms since the epoch): cooldown expiry,
   * stabilization window end, policy period end. INT64_MAX when nothing is pending. */
  int64_t next_eval_ms;
  /* Per trigger; borrowed from the engine state, valid until its next call. */
  const evs_trigger_health_t *health;
  size_t n_health;
  /* status.health is reported only when a fallback is configured (KEDA's updateStatus). */
  uint8_t health_reported;
  /* The HPA's part ran and made a recommendation (it stays in force until the next one). */
  uint8_t hpa_ran;
  /* Composite value of scalingModifiers when used (else 0). */
  double composite;
  char message[160]; /* human text for logs/events: "scaled from 3 to 5: metrics" */
} evs_decision_t;

/* ---- engine state: one per ScaledObject, compact (see sizeof in the tests) ---- */

typedef struct {
  int64_t created_ms;     /* metadata.creationTimestamp (initialCooldownPeriod starts here) */
  int64_t last_active_ms; /* status.lastActiveTime; 0 = never */
  /* The last decision's write is the HPA's (metrics, fallback, clamp): only those count as scale
   * events for the rate policies, as the HPA stores only its own (storeScaleEvent); KEDA's 0 <-> 1
   * and idle writes do not. */
  uint8_t hpa_write_pending;
  /* ... and the behavior policies limited it, so the scale may continue once this write's
   * event leaves its policy period (evs_engine_record_scale returns when). */
  uint8_t hpa_write_limited;
  /* The object has been paused (a decision found it so, or its status said Paused True or
   * ScaledObjectUnpaused). KEDA's Paused condition is False without reason or message until
   * the first unpause, then False ScaledObjectUnpaused for good (see init_decision). */
  uint8_t was_paused;
  /* The health of the triggers the object had when the state was made lives in the state's own
   * allocation, after the struct: one malloc per object instead of two (issue 13). A respec to
   * more triggers moves it to a block of its own. */
  uint32_t n_inline;
  evs_behavior_state_t behavior;
  size_t n_triggers;
  evs_trigger_health_t *health; /* n_triggers: the inline ones, or a block owned by the state */
} evs_engine_state_t;

/* New state for `so`, created at created_ms (0 = now_ms). Free with evs_engine_state_free. */
int evs_engine_state_new(const evs_so_t *so, int64_t created_ms, evs_engine_state_t **out);
void evs_engine_state_free(evs_engine_state_t *st);
/* A state in memory its owner provides (the registry places it in its record's allocation: one
 * malloc per ScaledObject fewer, issue 13): evs_engine_state_size(so) bytes (0: too many
 * triggers), aligned as the struct, made as evs_engine_state_new makes one. Release with
 * evs_engine_state_fini, which frees what the state allocated (a respec's health block), not the
 * memory itself. */
size_t evs_engine_state_size(const evs_so_t *so);
void evs_engine_state_init(evs_engine_state_t *st, const evs_so_t *so, int64_t created_ms);
void evs_engine_state_fini(evs_engine_state_t *st);
/* Adapts the state to a changed spec (trigger count); keeps history and health by index. */
int evs_engine_state_respec(evs_engine_state_t *st, const evs_so_t *so);

/* ---- one decision ---- */

typedef struct {
  /* readings[i] for so->triggers[i]; a reading with time_ms == 0 means "none yet". NULL = none. */
  const evs_reading_t *readings;
  size_t n_readings;
  int32_t current_replicas; /* scale.spec.replicas */
  int32_t status_replicas;  /* scale.status.replicas (AverageValue divides by it); <0 = current */
  int32_t ready_replicas;   /* ready pods (Value multiplies by it); <0 = status_replicas */
  int64_t now_ms;
} evs_engine_input_t;

/* Decides. Consumes each reading once (by its time) for the failure counts, records the
 * recommendation in the behavior history and the last active time. Returns 0, or UV_EINVAL for
 * bad arguments (out is then zeroed with write = 0). */
int evs_engine_decide(const evs_so_t *so, const evs_engine_config_t *cfg, evs_engine_state_t *st,
                      const evs_engine_input_t *in, evs_decision_t *out);

/* Records a successful write of the last decision, from `from` to `to`, at now_ms (the HPA's
 * storeScaleEvent): the rate policies count it from now on. Call after every successful write;
 * writes that were not the HPA's (activation, deactivation, paused-replicas) are ignored.
 * Returns when the engine must be evaluated again because of this write: a write the policies
 * limited may continue when its event leaves the shortest policy period of its direction
 * (decide's next_eval_ms could not know it, the event not being recorded yet); INT64_MAX when
 * the write adds no such time. */
/* What evs_engine_record_scale would return for that write, without recording it (pure). */
int64_t evs_engine_next_after_write(const evs_so_t *so, const evs_engine_state_t *st, int32_t from,
                                    int32_t to, int64_t now_ms);

int64_t evs_engine_record_scale(const evs_so_t *so, evs_engine_state_t *st, int32_t from,
                                int32_t to, int64_t now_ms);

#endif
