/* The decision engine (see include/evscale/engine.h for the flow and the sources). KEDA's
 * executor part is in this file; the HPA's per-metric math is in engine_hpa.c; behavior is in
 * behavior.c. */
#include "evscale/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "evscale/error.h"

/* Condition texts: kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a
 * apis/keda/v1alpha1/condition_types.go, pkg/scaling/executor/scale_scaledobjects.go,
 * pkg/fallback/fallback.go, controllers/keda/scaledobject_controller.go. */
#define MSG_READY "ScaledObject is defined correctly and is ready for scaling"
#define MSG_ACTIVE "Scaling is performed because triggers are active"
#define MSG_FORCED "Scaling is performed because activation is being forced by annotation"
#define MSG_NOT_ACTIVE "Scaling is not performed because triggers are not active"
#define MSG_COOLDOWN "Scaler cooling down because triggers are not active"
#define MSG_PARTIAL "Some triggers defined in ScaledObject are not working correctly"
#define MSG_TRIGGER_ERROR "Triggers defined in ScaledObject are not working correctly"
#define MSG_FALLBACK "At least one trigger is falling back on this scaled object"
#define MSG_NO_FALLBACK "No fallbacks are active on this scaled object"
#define MSG_PAUSED "ScaledObject is paused"
#define MSG_UNPAUSED "pause annotation removed for ScaledObject"

static const char *const reason_names[EVS_REASON__COUNT] = {
    "NoChange",  "Paused",        "PausedReplicas", "Activate",      "Deactivate",
    "Cooldown",  "ToMinReplicas", "Metrics",        "Fallback",      "TriggerError",
    "NoMetrics", "Clamp",         "PausedScaleIn",  "PausedScaleOut"};

const char *evs_engine_reason_name(int reason) {
  if (reason < 0 || reason >= EVS_REASON__COUNT)
    return "Unknown";
  return reason_names[reason];
}

void evs_engine_config_default(evs_engine_config_t *cfg) {
  cfg->tolerance = 0.1;
  cfg->max_replicas_cap = 0;
  cfg->default_polling_interval_s = 30;
  cfg->default_cooldown_s = 300;
}

/* ---- state ---- */

static evs_trigger_health_t *inline_health(evs_engine_state_t *st) {
  return (evs_trigger_health_t *)(st + 1);
}

static void health_init(evs_trigger_health_t *h, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    memset(&h[i], 0, sizeof h[i]);
    h[i].proposal = -1;
  }
}

size_t evs_engine_state_size(const evs_so_t *so) {
  _Static_assert(sizeof(evs_engine_state_t) % _Alignof(evs_trigger_health_t) == 0,
                 "the inline health follows the struct aligned");
  size_t n = so->n_triggers ? so->n_triggers : 1; /* health is never NULL */
  if (n > UINT32_MAX || n > (SIZE_MAX - sizeof(evs_engine_state_t)) / sizeof(evs_trigger_health_t))
    return 0;
  return sizeof(evs_engine_state_t) + n * sizeof(evs_trigger_health_t);
}

void evs_engine_state_init(evs_engine_state_t *st, const evs_so_t *so, int64_t created_ms) {
  size_t n = so->n_triggers ? so->n_triggers : 1;
  memset(st, 0, sizeof *st + n * sizeof(evs_trigger_health_t));
  st->created_ms = created_ms;
  evs_behavior_init(&st->behavior);
  st->n_inline = (uint32_t)n;
  st->health = inline_health(st);
  st->n_triggers = so->n_triggers;
  health_init(st->health, 0, st->n_triggers);
}

int evs_engine_state_new(const evs_so_t *so, int64_t created_ms, evs_engine_state_t **out) {
  size_t size = evs_engine_state_size(so);
  evs_engine_state_t *st = size ? malloc(size) : NULL;
  *out = NULL;
  if (st == NULL)
    return UV_ENOMEM;
  evs_engine_state_init(st, so, created_ms);
  *out = st;
  return 0;
}

void evs_engine_state_fini(evs_engine_state_t *st) {
  if (st == NULL)
    return;
  evs_behavior_free(&st->behavior);
  if (st->health != inline_health(st))
    free(st->health);
  st->health = NULL;
  st->n_triggers = 0;
}

void evs_engine_state_free(evs_engine_state_t *st) {
  evs_engine_state_fini(st);
  free(st);
}

int evs_engine_state_respec(evs_engine_state_t *st, const evs_so_t *so) {
  size_t n = so->n_triggers;
  if (n == st->n_triggers)
    return 0;
  if (st->health == inline_health(st) && n <= st->n_inline) {
    health_init(st->health, st->n_triggers, n);
    st->n_triggers = n;
    return 0;
  }
  evs_trigger_health_t *h;
  if (st->health == inline_health(st)) {
    if ((h = malloc(n * sizeof *h)) == NULL)
      return UV_ENOMEM;
    memcpy(h, st->health, st->n_triggers * sizeof *h);
  } else if ((h = realloc(st->health, (n ? n : 1) * sizeof *h)) == NULL) {
    return UV_ENOMEM;
  }
  health_init(h, st->n_triggers, n);
  st->health = h;
  st->n_triggers = n;
  return 0;
}

/* ---- helpers ---- */

static void set_cond(evs_decision_t *d, int which, int status, const char *reason,
                     const char *msg) {
  d->conditions[which].status = (uint8_t)status;
  d->conditions[which].reason = reason;
  d->conditions[which].message = msg;
}

static void set_desired(evs_decision_t *d, int32_t desired, int reason) {
  d->desired = desired;
  d->write = desired != d->current;
  d->reason = (uint8_t)reason;
}

static void earlier(int64_t *t, int64_t cand) {
  if (cand < *t)
    *t = cand;
}

/* What the fallback makes of trigger i's failed reading, as kedacore/keda v2.20.2
 * (68a5b5028f35b22d50597c69819ab32c4e92f21a) pkg/fallback/fallback.go GetMetricsWithFallback
 * returns it to pkg/scaling/scale_handler.go getScalerState:
 *   FB_NONE    not in fallback: the error stands;
 *   FB_SERVES  failures > failureThreshold and doFallback produced a metric: no error, and
 *              `isActiveOrFallback := fallbackActive || isMetricActive` makes the trigger active
 *              (kedacore/keda #7244, v2.19.0, fixing #7239);
 *   FB_NIL     behavior scalingModifiers: a -1 placeholder (nil to the formula), no error, and
 *              fallbackActive false, so the trigger itself is not active;
 *   FB_FAILED  doFallback returned nil (a Value metric with no ready pod): "error performing
 *              fallback", the error stands. */
enum { FB_NONE = 0, FB_SERVES, FB_NIL, FB_FAILED };

static int fallback_state(const evs_so_t *so, const evs_trigger_health_t *h, size_t i,
                          const evs_engine_input_t *in) {
  if (!h->in_fallback)
    return FB_NONE;
  if (so->fallback_behavior == EVS_FALLBACK_SCALING_MODIFIERS)
    return FB_NIL;
  int value_type = so->has_modifiers ? so->modifiers_metric_type == EVS_METRIC_VALUE
                                     : so->triggers[i].metric_type == EVS_METRIC_VALUE;
  int32_t status = in->status_replicas >= 0 ? in->status_replicas : in->current_replicas;
  int32_t ready = in->ready_replicas >= 0 ? in->ready_replicas : status;
  return value_type && ready <= 0 ? FB_FAILED : FB_SERVES;
}

/* Consumes each new reading once: failures in a row, or a reset on success (fallback.go
 * IncrementFailure / UpdateHealthStatus). */
static void update_health(const evs_so_t *so, evs_engine_state_t *st,
                          const evs_engine_input_t *in) {
  for (size_t i = 0; i < so->n_triggers; i++) {
    evs_trigger_health_t *h = &st->health[i];
    const evs_reading_t *r = i < in->n_readings && in->readings ? &in->readings[i] : NULL;
    if (r && r->time_ms != 0 && r->time_ms != h->last_reading_ms) {
      h->last_reading_ms = r->time_ms;
      if (r->error) {
        h->failures++;
        h->status = EVS_HEALTH_FAILING;
      } else {
        h->failures = 0;
        h->status = EVS_HEALTH_HAPPY;
      }
    }
    int has = r && r->time_ms != 0 && !r->error;
    h->has_value = (uint8_t)has;
    h->value = has ? evs_engine__milli(r->value) : 0;
    /* Activity uses the RAW value, strictly greater than the activation target (KEDA's
     * scalers); cron decides by its window, which its scaler reports. */
    if (!has)
      h->active = 0;
    else if (so->triggers[i].kind == EVS_TRIG_CRON)
      h->active = (uint8_t)(r->active != 0);
    else
      h->active = (uint8_t)(r->value > so->triggers[i].activation_target);
    h->in_fallback = (uint8_t)(evs_engine__fallback_valid(so) && r && r->time_ms && r->error &&
                               h->failures > so->fallback_failure_threshold);
    if (fallback_state(so, h, i, in) == FB_SERVES)
      h->active = 1; /* scale_handler.go getScalerState: isActiveOrFallback */
    h->proposal = -1;
  }
}

typedef struct {
  int active, is_error, missing;
} activity_t;

static activity_t activity(const evs_so_t *so, const evs_engine_state_t *st,
                           const evs_engine_input_t *in, double composite, int composite_ok) {
  activity_t a = {0, 0, 0};
  for (size_t i = 0; i < so->n_triggers; i++) {
    const evs_reading_t *r = i < in->n_readings && in->readings ? &in->readings[i] : NULL;
    int fb = fallback_state(so, &st->health[i], i, in);
    if (r == NULL || r->time_ms == 0)
      a.missing = 1;
    else if (r->error && (fb == FB_NONE || fb == FB_FAILED))
      a.is_error = 1;
    if (st->health[i].active)
      a.active = 1;
  }
  /* With scalingModifiers the composite value alone decides, and only without errors
   * (scale_handler.go getScaledObjectState). */
  if (so->has_modifiers)
    a.active = !a.is_error && composite_ok && composite > so->modifiers->activation_target;
  return a;
}

static void fallback_condition(const evs_so_t *so, const evs_engine_state_t *st,
                               evs_decision_t *d) {
  if (!evs_engine__fallback_valid(so))
    return;
  d->health_reported = 1;
  for (size_t i = 0; i < so->n_triggers; i++)
    if (st->health[i].status == EVS_HEALTH_FAILING &&
        st->health[i].failures > so->fallback_failure_threshold) {
      set_cond(d, EVS_COND_FALLBACK, EVS_COND_TRUE, "FallbackExists", MSG_FALLBACK);
      return;
    }
}

static void init_decision(const evs_so_t *so, evs_engine_state_t *st, const evs_engine_input_t *in,
                          evs_decision_t *d) {
  memset(d, 0, sizeof *d);
  d->current = in->current_replicas;
  d->desired = in->current_replicas;
  d->next_eval_ms = INT64_MAX;
  d->health = st->health;
  d->n_health = st->n_triggers;
  set_cond(d, EVS_COND_READY, EVS_COND_TRUE, "ScaledObjectReady", MSG_READY);
  set_cond(d, EVS_COND_ACTIVE, EVS_COND_FALSE, "ScalerNotActive", MSG_NOT_ACTIVE);
  set_cond(d, EVS_COND_FALLBACK, EVS_COND_FALSE, "NoFallbackFound", MSG_NO_FALLBACK);
  /* kedacore/keda v2.20.2 (68a5b5028f35b22d50597c69819ab32c4e92f21a)
   * controllers/keda/scaledobject_controller.go reconcileScaledObject: paused (any of the four
   * annotations) -> True ScaledObjectPaused; Paused True in the status and no annotation ->
   * False ScaledObjectUnpaused "pause annotation removed for ScaledObject", which later
   * reconciles leave as it is; never paused -> apis/keda/v1alpha1/condition_types.go
   * GetInitializedConditions' Paused: False, no reason, no message. */
  if (so->paused_scale_in || so->paused_scale_out || evs_so_is_paused(so)) {
    set_cond(d, EVS_COND_PAUSED, EVS_COND_TRUE, "ScaledObjectPaused", MSG_PAUSED);
    st->was_paused = 1;
  } else if (st->was_paused) {
    set_cond(d, EVS_COND_PAUSED, EVS_COND_FALSE, "ScaledObjectUnpaused", MSG_UNPAUSED);
  } else {
    set_cond(d, EVS_COND_PAUSED, EVS_COND_FALSE, NULL, NULL);
  }
}

/* handlePaused: paused-replicas holds exactly N (the controller scales to it); paused writes
 * nothing. */
static int handle_paused(const evs_so_t *so, evs_decision_t *d) {
  if (so->paused_replicas >= 0) {
    set_desired(d, so->paused_replicas, EVS_REASON_PAUSED_REPLICAS);
    return 1;
  }
  if (so->paused) {
    set_desired(d, d->current, EVS_REASON_PAUSED);
    d->write = 0;
    return 1;
  }
  return 0;
}

/* scaleToZeroOrIdle's condition: the cooldown has passed since the last active time, or the
 * initial cooldown since creation when the object was never active. Strictly Before(now). */
static int cooldown_passed(const evs_so_t *so, const evs_engine_config_t *cfg,
                           const evs_engine_state_t *st, int64_t now_ms, int64_t *expiry) {
  if (st->last_active_ms == 0)
    *expiry = st->created_ms + (int64_t)evs_so_initial_cooldown_s(so) * 1000;
  else
    *expiry = st->last_active_ms + (int64_t)evs_so_cooldown_s(so, cfg->default_cooldown_s) * 1000;
  return *expiry < now_ms;
}

static void activate(const evs_so_t *so, evs_engine_state_t *st, const evs_engine_input_t *in,
                     evs_decision_t *d) {
  int32_t min = evs_so_min(so);
  if (so->paused_scale_out) {
    set_desired(d, d->current, EVS_REASON_PAUSED_SCALE_OUT);
    return;
  }
  set_desired(d, min > 0 ? min : 1, EVS_REASON_ACTIVATE);
  st->last_active_ms = in->now_ms;
  /* The HPA takes over from the new count at its next look: ask for one soon after the write. */
  earlier(&d->next_eval_ms, in->now_ms + 1000);
}

/* The inactive branch of RequestScale. Returns 1 when it decided, 0 to let the HPA math run. */
static int inactive(const evs_so_t *so, const evs_engine_config_t *cfg, evs_engine_state_t *st,
                    const evs_engine_input_t *in, const activity_t *a, evs_decision_t *d) {
  int32_t cur = d->current, min = evs_so_min(so), idle = so->idle_replicas;
  int64_t expiry;
  if (a->is_error && so->has_fallback && so->fallback_replicas != 0)
    return 0; /* the fallback acts through the HPA math */
  if (a->is_error && !so->has_fallback) {
    set_cond(d, EVS_COND_READY, EVS_COND_FALSE, "TriggerError", MSG_TRIGGER_ERROR);
    set_desired(d, cur, EVS_REASON_TRIGGER_ERROR); /* an error is not a zero: hold */
    return 1;
  }
  if (a->missing) {
    set_desired(d, cur, EVS_REASON_NO_METRICS); /* no verdict yet from every trigger: hold */
    return 1;
  }
  if ((idle >= 0 && cur > idle) || (cur > 0 && min == 0)) {
    if (so->paused_scale_in) {
      set_desired(d, cur, EVS_REASON_PAUSED_SCALE_IN);
      return 1;
    }
    if (cooldown_passed(so, cfg, st, in->now_ms, &expiry)) {
      set_desired(d, idle >= 0 ? idle : min, EVS_REASON_DEACTIVATE);
      return 1;
    }
    /* Cooling down: KEDA waits, but the HPA keeps working on the running replicas. */
    set_cond(d, EVS_COND_ACTIVE, EVS_COND_FALSE, "ScalerCooldown", MSG_COOLDOWN);
    d->reason = EVS_REASON_COOLDOWN;
    earlier(&d->next_eval_ms, expiry + 1);
    return 0;
  }
  if (idle < 0 && cur < min) {
    set_desired(d, min, EVS_REASON_TO_MIN);
    return 1;
  }
  if (idle >= 0 && cur == idle) {
    /* Parked at idle: KEDA's HPA (minReplicas >= 1) would push an idle count above 0 back to
     * min, the flapping of kedacore/keda#2314; evscale holds the idle count instead. */
    set_desired(d, cur, EVS_REASON_NONE);
    return 1;
  }
  return 0;
}

int evs_engine_decide(const evs_so_t *so, const evs_engine_config_t *cfg, evs_engine_state_t *st,
                      const evs_engine_input_t *in, evs_decision_t *out) {
  if (so == NULL || cfg == NULL || st == NULL || in == NULL || out == NULL ||
      in->current_replicas < 0 || st->n_triggers != so->n_triggers) {
    if (out)
      memset(out, 0, sizeof *out);
    return UV_EINVAL;
  }
  if (st->created_ms == 0)
    st->created_ms = in->now_ms;
  init_decision(so, st, in, out);
  update_health(so, st, in);
  fallback_condition(so, st, out);
  if (!handle_paused(so, out))
    evs_engine__run(so, cfg, st, in, out);
  if (!out->hpa_ran)
    evs_behavior_no_recommendation(&st->behavior);
  out->last_active_ms = st->last_active_ms;
  st->hpa_write_pending =
      out->write && (out->reason == EVS_REASON_METRICS || out->reason == EVS_REASON_FALLBACK ||
                     out->reason == EVS_REASON_CLAMP);
  st->hpa_write_limited = st->hpa_write_pending &&
                          (out->limit == EVS_LIMIT_SCALE_UP || out->limit == EVS_LIMIT_SCALE_DOWN);
  snprintf(out->message, sizeof out->message, "%s %d -> %d: %s", out->write ? "scale" : "hold",
           (int)out->current, (int)out->desired, evs_engine_reason_name(out->reason));
  return 0;
}

/* RequestScale's branches, then the HPA when it is in control. */
void evs_engine__run(const evs_so_t *so, const evs_engine_config_t *cfg, evs_engine_state_t *st,
                     const evs_engine_input_t *in, evs_decision_t *d) {
  double composite = 0;
  int composite_ok = 0;
  if (so->has_modifiers)
    composite_ok = evs_engine__composite(so, st, in, &composite) == 0;
  d->composite = composite;
  activity_t a = activity(so, st, in, composite, composite_ok);
  int32_t cur = d->current, min = evs_so_min(so);
  d->active = (uint8_t)(a.active || so->force_activation);
  if (d->active) {
    set_cond(d, EVS_COND_ACTIVE, EVS_COND_TRUE, "ScalerActive",
             so->force_activation ? MSG_FORCED : MSG_ACTIVE);
    if ((so->idle_replicas >= 0 && cur < min) || cur == 0) {
      activate(so, st, in, d);
      return;
    }
    if (a.is_error)
      set_cond(d, EVS_COND_READY, EVS_COND_UNKNOWN, "PartialTriggerError", MSG_PARTIAL);
    else
      st->last_active_ms = in->now_ms;
  } else if (inactive(so, cfg, st, in, &a, d)) {
    return;
  }
  /* The HPA idles while the target is at 0 (its minReplicas is at least 1: ScalingDisabled). */
  if (cur == 0)
    return;
  evs_engine__hpa(so, cfg, st, in, composite, composite_ok, d);
}

int64_t evs_engine_next_after_write(const evs_so_t *so, const evs_engine_state_t *st, int32_t from,
                                    int32_t to, int64_t now_ms) {
  evs_scaling_rules_t up, down;
  if (!st->hpa_write_pending || !st->hpa_write_limited || from == to)
    return INT64_MAX;
  if (evs_engine__legacy(so)) /* a capped write may continue when it is 15 s old */
    return to > from ? now_ms + (int64_t)EVS_BEHAVIOR_LEGACY_PERIOD_S * 1000 : INT64_MAX;
  evs_behavior_effective(so->behavior, &up, &down);
  const evs_scaling_rules_t *r = to > from ? &up : &down;
  int64_t next = INT64_MAX;
  for (int i = 0; i < r->n_policies; i++) {
    int64_t t = now_ms + (int64_t)r->policies[i].period_s * 1000;
    if (t < next)
      next = t;
  }
  return next;
}

int64_t evs_engine_record_scale(const evs_so_t *so, evs_engine_state_t *st, int32_t from,
                                int32_t to, int64_t now_ms) {
  evs_scaling_rules_t up, down;
  int64_t next = evs_engine_next_after_write(so, st, from, to, now_ms);
  int pending = st->hpa_write_pending;
  st->hpa_write_pending = 0;
  if (evs_engine__legacy(so)) {
    /* Legacy path: the cap doubles the count in force 15 s ago, whoever wrote it (KEDA's 0 -> 1
     * included). */
    evs_behavior_record_legacy_write(&st->behavior, from, to, now_ms);
    return next;
  }
  if (!pending)
    return INT64_MAX;
  evs_behavior_effective(so->behavior, &up, &down);
  evs_behavior_record_scale(&st->behavior, &up, &down, from, to, now_ms);
  return next;
}
