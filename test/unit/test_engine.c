/* The decision engine, one test per rule, expectations worked out by hand from the rules of
 * kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a (pkg/scaling/executor/
 * scale_scaledobjects.go RequestScale, pkg/fallback/fallback.go, pkg/scalers/scaler.go
 * quantityFromFloat64) and kubernetes/kubernetes pkg/controller/podautoscaler
 * (replica_calculator.go, horizontal.go). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "evscale/engine.h"
#include "evscale/error.h"

#define T0 1700000000000LL /* creation time of every test object (ms) */
#define S(x) ((int64_t)(x)*1000)

typedef struct {
  evs_so_t *so;
  evs_engine_state_t *st;
  evs_engine_config_t cfg;
  evs_decision_t d;
  evs_reading_t r[4];
  int32_t replicas, ready;
} fx_t;

static void fx_init(fx_t *f, const char *spec_tail, const char *annotations) {
  char buf[4096];
  evs_diag_t d;
  memset(f, 0, sizeof *f);
  snprintf(buf, sizeof buf,
           "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\n"
           "metadata:\n  name: w\n  namespace: n\n%s"
           "spec:\n  scaleTargetRef: {name: w}\n%s",
           annotations ? annotations : "", spec_tail);
  evs_diag_init(&d);
  int rc = evs_so_parse_yaml(buf, strlen(buf), "t.yaml", &f->so, &d);
  if (rc) {
    char m[256];
    for (size_t i = 0; i < d.n; i++) {
      evs_diag_format(&d, i, m, sizeof m);
      print_error("%s\n", m);
    }
  }
  assert_int_equal(rc, 0);
  evs_diag_free(&d);
  assert_int_equal(evs_engine_state_new(f->so, T0, &f->st), 0);
  evs_engine_config_default(&f->cfg);
  f->ready = -1;
}

static void fx_free(fx_t *f) {
  evs_engine_state_free(f->st);
  evs_so_free(f->so);
}

static void set(fx_t *f, size_t i, double value, int64_t t_ms) {
  f->r[i] = (evs_reading_t){value, 0, 0, t_ms, 0, NULL, 0};
}

static void set_err(fx_t *f, size_t i, int64_t t_ms) {
  f->r[i] = (evs_reading_t){0, 0, EVS_EMETRIC, t_ms, 0, NULL, 0};
}

/* One decision at now; the write (if any) succeeds and is recorded, as the registry would. */
static const evs_decision_t *step(fx_t *f, int64_t now) {
  evs_engine_input_t in = {f->r, f->so->n_triggers, f->replicas, f->replicas, f->ready, now};
  assert_int_equal(evs_engine_decide(f->so, &f->cfg, f->st, &in, &f->d), 0);
  if (f->d.write) {
    evs_engine_record_scale(f->so, f->st, f->replicas, f->d.desired, now);
    f->replicas = f->d.desired;
  }
  return &f->d;
}

/* A behavior that lets the HPA math through at once (no windows, generous policies), so a test
 * of the metric math is not also a test of the rate limits. */
#define FAST                                                                                       \
  "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n"                             \
  "        scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 1000, "         \
  "periodSeconds: 1}]}\n"                                                                          \
  "        scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 1000, "       \
  "periodSeconds: 1}]}\n"

#define REDIS(extra)                                                                               \
  "  triggers:\n  - {type: redis, metadata: {listName: q, listLength: \"10\"" extra "}}\n"

/* Activation compares the raw value, strictly greater than the activation target. */
static void activation_strictly_greater(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, REDIS(", activationListLength: \"5\""), NULL);
  set(&f, 0, 5, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_int_equal(d->active, 0);
  assert_int_equal(d->write, 0);
  assert_int_equal(f.replicas, 0);
  assert_int_equal(d->conditions[EVS_COND_ACTIVE].status, EVS_COND_FALSE);
  assert_string_equal(d->conditions[EVS_COND_ACTIVE].reason, "ScalerNotActive");
  set(&f, 0, 6, T0 + S(2));
  d = step(&f, T0 + S(2));
  assert_int_equal(d->active, 1);
  assert_int_equal(d->reason, EVS_REASON_ACTIVATE);
  assert_int_equal(d->desired, 1); /* max(minReplicaCount 0, 1) */
  assert_string_equal(d->conditions[EVS_COND_ACTIVE].reason, "ScalerActive");
  assert_string_equal(d->conditions[EVS_COND_ACTIVE].message,
                      "Scaling is performed because triggers are active");
  assert_true(d->last_active_ms == T0 + S(2));
  fx_free(&f);
}

static void activation_goes_to_min(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 3\n" REDIS(""), NULL);
  set(&f, 0, 1, T0 + S(1));
  assert_int_equal(step(&f, T0 + S(1))->desired, 3);
  assert_int_equal(f.d.reason, EVS_REASON_ACTIVATE);
  fx_free(&f);
}

/* Negative, NaN and Inf count as 0 for the math; values are rounded to milli-units. */
static void values_milli_and_invalid(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" FAST REDIS(""), NULL);
  f.replicas = 2;
  set(&f, 0, 1.2345678, T0 + S(1));
  step(&f, T0 + S(1));
  assert_true(f.d.health[0].value == 1.235);
  set(&f, 0, -7, T0 + S(2));
  step(&f, T0 + S(2));
  assert_true(f.d.health[0].value == 0);
  assert_int_equal(f.d.health[0].proposal, 0);
  set(&f, 0, NAN, T0 + S(3));
  step(&f, T0 + S(3));
  assert_true(f.d.health[0].value == 0);
  set(&f, 0, INFINITY, T0 + S(4));
  step(&f, T0 + S(4));
  assert_true(f.d.health[0].value == 0);
  fx_free(&f);
}

/* AverageValue: ratio = value / (target x status.replicas); ceil(value / target) outside the
 * tolerance; inside it (inclusive) the current count. */
static void average_value_math(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" FAST REDIS(""), NULL);
  f.replicas = 3;
  set(&f, 0, 95, T0 + S(1)); /* 95 / (10 x 3) = 3.17 -> ceil(9.5) = 10 */
  assert_int_equal(step(&f, T0 + S(1))->desired, 10);
  assert_int_equal(f.d.reason, EVS_REASON_METRICS);
  f.replicas = 2;
  set(&f, 0, 22, T0 + S(2)); /* 22 / 20 = 1.1: inside, inclusive -> keep 2 */
  assert_int_equal(step(&f, T0 + S(2))->desired, 2);
  assert_int_equal(f.d.write, 0);
  set(&f, 0, 18, T0 + S(3)); /* 0.9: inside -> keep 2 */
  assert_int_equal(step(&f, T0 + S(3))->desired, 2);
  set(&f, 0, 23, T0 + S(4)); /* 1.15 -> ceil(2.3) = 3 */
  assert_int_equal(step(&f, T0 + S(4))->desired, 3);
  fx_free(&f);
}

/* The engine.tolerance setting is used. */
static void tolerance_configurable(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" FAST REDIS(""), NULL);
  f.cfg.tolerance = 0.2;
  f.replicas = 2;
  set(&f, 0, 23, T0 + S(1)); /* 1.15 is inside 20 % */
  assert_int_equal(step(&f, T0 + S(1))->desired, 2);
  fx_free(&f);
}

/* behavior.scaleUp/scaleDown.tolerance (KEP-4951) override engine.tolerance per direction. */
static void tolerance_per_direction(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 1\n"
          "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n"
          "        scaleUp: {stabilizationWindowSeconds: 0, tolerance: 0.5}\n"
          "        scaleDown: {stabilizationWindowSeconds: 0, tolerance: \"300m\"}\n" REDIS(""),
          NULL);
  assert_true(f.so->behavior->up.tolerance == 0.5);
  assert_true(f.so->behavior->down.tolerance == 0.3);
  f.replicas = 4;
  set(&f, 0, 50, T0 + S(1)); /* 50 / 40 = 1.25 <= 1.5: keep */
  assert_int_equal(step(&f, T0 + S(1))->desired, 4);
  set(&f, 0, 30, T0 + S(2)); /* 0.75 >= 0.7: keep */
  assert_int_equal(step(&f, T0 + S(2))->desired, 4);
  set(&f, 0, 25, T0 + S(3)); /* 0.625 -> ceil(2.5) = 3 */
  assert_int_equal(step(&f, T0 + S(3))->desired, 3);
  fx_free(&f);
}

/* Value: ratio = value / target; ceil(ratio x ready pods) outside the tolerance. */
static void value_math(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 1\n" FAST
          "  triggers:\n  - {type: redis, metricType: Value, metadata: {listName: q, listLength: "
          "\"10\"}}\n",
          NULL);
  f.replicas = 4;
  f.ready = 2;
  set(&f, 0, 30, T0 + S(1)); /* 30 / 10 = 3 -> ceil(3 x 2 ready) = 6 */
  assert_int_equal(step(&f, T0 + S(1))->desired, 6);
  f.ready = 6;
  set(&f, 0, 10.5, T0 + S(2)); /* 1.05: inside -> keep 6 */
  assert_int_equal(step(&f, T0 + S(2))->desired, 6);
  fx_free(&f);
}

/* Several triggers: the maximum of their proposals. */
static void max_over_triggers(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 1\n" FAST "  triggers:\n"
          "  - {type: redis, metadata: {listName: a, listLength: \"10\"}}\n"
          "  - {type: prometheus, metadata: {serverAddress: http://p, query: q, threshold: "
          "\"2\"}}\n",
          NULL);
  f.replicas = 1;
  set(&f, 0, 30, T0 + S(1)); /* 3 */
  set(&f, 1, 13, T0 + S(1)); /* ceil(6.5) = 7 */
  assert_int_equal(step(&f, T0 + S(1))->desired, 7);
  assert_int_equal(f.d.health[0].proposal, 3);
  assert_int_equal(f.d.health[1].proposal, 7);
  fx_free(&f);
}

/* Every trigger failing without a fallback: hold, Ready=False TriggerError (no scale-in). */
static void errors_without_fallback_hold(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, REDIS(""), NULL);
  f.replicas = 4;
  set_err(&f, 0, T0 + S(1000));
  const evs_decision_t *d = step(&f, T0 + S(1000));
  assert_int_equal(d->write, 0);
  assert_int_equal(d->reason, EVS_REASON_TRIGGER_ERROR);
  assert_int_equal(d->conditions[EVS_COND_READY].status, EVS_COND_FALSE);
  assert_string_equal(d->conditions[EVS_COND_READY].reason, "TriggerError");
  assert_int_equal(d->health_reported, 0); /* status.health only with a fallback */
  fx_free(&f);
}

/* Active with one trigger failing: Ready=Unknown PartialTriggerError, HPA math on the rest. */
static void partial_error_condition(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 1\n" FAST "  triggers:\n"
          "  - {type: redis, metadata: {listName: a, listLength: \"10\"}}\n"
          "  - {type: redis, metadata: {listName: b, listLength: \"10\"}}\n",
          NULL);
  f.replicas = 2;
  set(&f, 0, 50, T0 + S(1));
  set_err(&f, 1, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_int_equal(d->conditions[EVS_COND_READY].status, EVS_COND_UNKNOWN);
  assert_string_equal(d->conditions[EVS_COND_READY].reason, "PartialTriggerError");
  assert_int_equal(d->desired, 5);
  fx_free(&f);
}

/* Scale to zero only once cooldownPeriod has passed since the last active time (strictly). */
static void cooldown_to_zero(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  cooldownPeriod: 300\n" REDIS(""), NULL);
  set(&f, 0, 50, T0 + S(10));
  step(&f, T0 + S(10)); /* 0 -> 1, last active = T0+10s */
  assert_int_equal(f.replicas, 1);
  set(&f, 0, 0, T0 + S(20));
  const evs_decision_t *d = step(&f, T0 + S(20));
  assert_int_equal(d->reason, EVS_REASON_COOLDOWN);
  assert_string_equal(d->conditions[EVS_COND_ACTIVE].reason, "ScalerCooldown");
  assert_int_equal(f.replicas, 1);
  if (d->next_eval_ms != T0 + S(310) + 1)
    print_error("next_eval %lld\n", (long long)(d->next_eval_ms - T0));
  assert_true(d->next_eval_ms == T0 + S(310) + 1); /* first instant after the expiry */
  set(&f, 0, 0, T0 + S(310));
  step(&f, T0 + S(310)); /* last active + 300 s is not Before(now): still waiting */
  assert_int_equal(f.replicas, 1);
  set(&f, 0, 0, T0 + S(311));
  d = step(&f, T0 + S(311));
  assert_int_equal(d->reason, EVS_REASON_DEACTIVATE);
  assert_int_equal(f.replicas, 0);
  fx_free(&f);
}

/* Never active: initialCooldownPeriod counts from creation (default 0: at once). */
static void initial_cooldown(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  initialCooldownPeriod: 60\n" REDIS(""), NULL);
  f.replicas = 2;
  set(&f, 0, 0, T0 + S(30));
  step(&f, T0 + S(30));
  assert_int_equal(f.replicas, 2);
  set(&f, 0, 0, T0 + S(61));
  step(&f, T0 + S(61));
  assert_int_equal(f.replicas, 0);
  fx_free(&f);
  fx_init(&f, REDIS(""), NULL);
  f.replicas = 2;
  set(&f, 0, 0, T0 + S(1));
  step(&f, T0 + S(1));
  assert_int_equal(f.replicas, 0);
  fx_free(&f);
}

/* idleReplicaCount: inactive -> idle after the cooldown; active at idle -> min at once. */
static void idle_replicas(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  idleReplicaCount: 0\n  minReplicaCount: 2\n  cooldownPeriod: 10\n" REDIS(""),
          NULL);
  f.replicas = 5;
  set(&f, 0, 0, T0 + S(11));
  assert_int_equal(step(&f, T0 + S(11))->desired, 0);
  assert_int_equal(f.d.reason, EVS_REASON_DEACTIVATE);
  set(&f, 0, 1, T0 + S(12));
  assert_int_equal(step(&f, T0 + S(12))->desired, 2);
  assert_int_equal(f.d.reason, EVS_REASON_ACTIVATE);
  fx_free(&f);
}

/* Inactive below min without idle: straight to min. */
static void inactive_below_min(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 2\n" REDIS(""), NULL);
  f.replicas = 1;
  set(&f, 0, 0, T0 + S(1));
  assert_int_equal(step(&f, T0 + S(1))->desired, 2);
  assert_int_equal(f.d.reason, EVS_REASON_TO_MIN);
  fx_free(&f);
}

/* Outside [max(min,1), min(max, limits.max_replicas)]: brought back without behavior. */
static void clamp_and_cap(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n  maxReplicaCount: 20\n" REDIS(""), NULL);
  f.replicas = 30;
  set(&f, 0, 500, T0 + S(1));
  assert_int_equal(step(&f, T0 + S(1))->desired, 20);
  assert_int_equal(f.d.reason, EVS_REASON_CLAMP);
  f.cfg.max_replicas_cap = 15;
  set(&f, 0, 500, T0 + S(2));
  assert_int_equal(step(&f, T0 + S(2))->desired, 15);
  fx_free(&f);
  /* A cap below the object's min never pushes it under its min. */
  fx_init(&f, "  minReplicaCount: 4\n" REDIS(""), NULL);
  f.cfg.max_replicas_cap = 2;
  f.replicas = 4;
  set(&f, 0, 500, T0 + S(1));
  step(&f, T0 + S(1));
  assert_int_equal(f.replicas, 4);
  fx_free(&f);
}

#define FALLBACK(behavior)                                                                         \
  "  minReplicaCount: 1\n  fallback: {failureThreshold: 2, replicas: 10" behavior "}\n" FAST       \
  "  triggers:\n  - {type: redis, metadata: {listName: q, listLength: \"5\"}}\n"

/* Fallback: after more than failureThreshold failures in a row, target x replicas stands in. */
static void fallback_static(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, FALLBACK(""), NULL);
  f.replicas = 3;
  for (int i = 1; i <= 2; i++) {
    set_err(&f, 0, T0 + S(i));
    step(&f, T0 + S(i));
    assert_int_equal(f.replicas, 3); /* failures 1, 2: not > 2, hold */
    assert_int_equal(f.d.conditions[EVS_COND_FALLBACK].status, EVS_COND_FALSE);
  }
  set_err(&f, 0, T0 + S(3));
  const evs_decision_t *d = step(&f, T0 + S(3));
  assert_int_equal(d->health[0].failures, 3);
  assert_int_equal(d->health[0].status, EVS_HEALTH_FAILING);
  assert_int_equal(d->health[0].in_fallback, 1);
  assert_int_equal(d->desired, 10); /* 5 x 10 = 50 -> ceil(50 / 5) */
  assert_int_equal(d->reason, EVS_REASON_FALLBACK);
  assert_int_equal(d->conditions[EVS_COND_FALLBACK].status, EVS_COND_TRUE);
  assert_string_equal(d->conditions[EVS_COND_FALLBACK].reason, "FallbackExists");
  assert_int_equal(d->health_reported, 1);
  /* The same reading seen again is not a new failure. */
  step(&f, T0 + S(4));
  assert_int_equal(f.d.health[0].failures, 3);
  /* Recovery on the first success. */
  set(&f, 0, 10, T0 + S(5));
  d = step(&f, T0 + S(5));
  assert_int_equal(d->health[0].failures, 0);
  assert_int_equal(d->health[0].status, EVS_HEALTH_HAPPY);
  assert_int_equal(d->conditions[EVS_COND_FALLBACK].status, EVS_COND_FALSE);
  assert_int_equal(d->desired, 2); /* ceil(10 / 5) */
  fx_free(&f);
}

static int32_t fallback_with(const char *behavior, int32_t current) {
  fx_t f;
  fx_init(&f, behavior, NULL);
  f.replicas = current;
  for (int i = 1; i <= 3; i++) {
    set_err(&f, 0, T0 + S(i));
    step(&f, T0 + S(i));
  }
  int32_t r = f.replicas;
  fx_free(&f);
  return r;
}

static void fallback_behaviors(void **state) {
  (void)state;
  assert_int_equal(fallback_with(FALLBACK(", behavior: currentReplicas"), 4), 4);
  assert_int_equal(fallback_with(FALLBACK(", behavior: currentReplicasIfHigher"), 4), 10);
  assert_int_equal(fallback_with(FALLBACK(", behavior: currentReplicasIfHigher"), 12), 12);
  assert_int_equal(fallback_with(FALLBACK(", behavior: currentReplicasIfLower"), 4), 4);
  assert_int_equal(fallback_with(FALLBACK(", behavior: currentReplicasIfLower"), 12), 10);
}

/* Fallback for a Value metric: target x replicas / ready pods. */
static void fallback_value_metric(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 1\n  fallback: {failureThreshold: 0, replicas: 10}\n" FAST
          "  triggers:\n  - {type: redis, metricType: Value, metadata: {listName: q, listLength: "
          "\"5\"}}\n",
          NULL);
  f.replicas = 4;
  f.ready = 5;
  set_err(&f, 0, T0 + S(1));
  /* 5 x 10 / 5 = 10 -> ratio 2 -> ceil(2 x 5 ready) = 10 */
  assert_int_equal(step(&f, T0 + S(1))->desired, 10);
  fx_free(&f);
}

/* A trigger in fallback is active and not an error (kedacore/keda v2.20.2
 * pkg/scaling/scale_handler.go getScalerState: isActiveOrFallback := fallbackActive ||
 * isMetricActive; pkg/fallback/fallback.go GetMetricsWithFallback returns a nil error once
 * failures > failureThreshold; #7244 fixing #7239). So from 0 the executor's active branch scales
 * to max(min, 1) (RequestScale: currentReplicas == 0), the HPA then lands on the fallback count,
 * lastActiveTime is refreshed at every decision while the fallback holds, and the cooldown to 0
 * counts from the last of those, once the trigger has recovered and reads inactive. */
static void fallback_is_active(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 0\n  cooldownPeriod: 300\n"
          "  fallback: {failureThreshold: 2, replicas: 10}\n" FAST
          "  triggers:\n  - {type: redis, metadata: {listName: q, listLength: \"5\"}}\n",
          NULL);
  f.replicas = 0;
  for (int i = 1; i <= 2; i++) { /* failures 1, 2: not > 2, an error: KEDA does nothing */
    set_err(&f, 0, T0 + S(i));
    const evs_decision_t *d = step(&f, T0 + S(i));
    assert_int_equal(d->write, 0);
    assert_int_equal(d->active, 0);
  }
  set_err(&f, 0, T0 + S(3)); /* failure 3 > 2: in fallback, so active: 0 -> max(0, 1) */
  const evs_decision_t *d = step(&f, T0 + S(3));
  assert_int_equal(d->active, 1);
  assert_int_equal(d->reason, EVS_REASON_ACTIVATE);
  assert_int_equal(f.replicas, 1);
  assert_int_equal(d->health[0].active, 1);
  assert_string_equal(d->conditions[EVS_COND_READY].reason, "ScaledObjectReady");
  assert_true(d->last_active_ms == T0 + S(3));
  set_err(&f, 0, T0 + S(33)); /* the HPA math with the fallback metric: 5 x 10 -> 10 */
  d = step(&f, T0 + S(33));
  assert_int_equal(f.replicas, 10);
  assert_int_equal(d->reason, EVS_REASON_FALLBACK);
  assert_true(d->last_active_ms == T0 + S(33)); /* fresh while the fallback holds */
  set_err(&f, 0, T0 + S(600));
  d = step(&f, T0 + S(600));
  assert_true(d->last_active_ms == T0 + S(600));
  assert_int_equal(f.replicas, 10);
  /* Recovered and inactive (0 is not > 0): the cooldown counts from 600 s. */
  set(&f, 0, 0, T0 + S(630));
  d = step(&f, T0 + S(630));
  assert_int_equal(d->active, 0);
  assert_true(d->last_active_ms == T0 + S(600));
  assert_int_equal(d->reason == EVS_REASON_DEACTIVATE, 0);
  assert_true(f.replicas >= 1);
  d = step(&f, T0 + S(900)); /* 600 + 300 is not before 900: still cooling down */
  assert_true(f.replicas >= 1);
  d = step(&f, T0 + S(900) + 1);
  assert_int_equal(d->reason, EVS_REASON_DEACTIVATE);
  assert_int_equal(f.replicas, 0);
  fx_free(&f);
}

/* fallback.behavior scalingModifiers: the failing trigger is a nil placeholder, with no error
 * and no activity of its own (fallbackActive false); the composite value alone decides. */
static void fallback_modifiers_not_error(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 0\n"
          "  fallback: {failureThreshold: 0, replicas: 4, behavior: scalingModifiers}\n" FAST
          "    scalingModifiers: {formula: \"b ?? 7\", target: \"5\", activationTarget: \"6\"}\n"
          "  triggers:\n  - {type: redis, name: b, metadata: {listName: b}}\n",
          NULL);
  f.replicas = 0;
  set_err(&f, 0, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  /* composite 7 > 6 and no error: active, 0 -> 1 */
  assert_int_equal(d->active, 1);
  assert_int_equal(f.replicas, 1);
  assert_string_equal(d->conditions[EVS_COND_READY].reason, "ScaledObjectReady");
  fx_free(&f);
}

/* A Value metric with no ready pod: doFallback fails ("error performing fallback"), the error
 * stands, and at 0 nothing happens (the inactive branch with a fallback waits for the HPA). */
static void fallback_value_at_zero_stays_error(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 0\n  fallback: {failureThreshold: 0, replicas: 10}\n" FAST
          "  triggers:\n  - {type: redis, metricType: Value, metadata: {listName: q}}\n",
          NULL);
  f.replicas = 0;
  f.ready = 0;
  set_err(&f, 0, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_int_equal(d->active, 0);
  assert_int_equal(d->write, 0);
  fx_free(&f);
}

static void paused(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, REDIS(""), "  annotations: {autoscaling.keda.sh/paused: \"true\"}\n");
  f.replicas = 3;
  set(&f, 0, 500, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_int_equal(d->write, 0);
  assert_int_equal(d->reason, EVS_REASON_PAUSED);
  assert_string_equal(d->conditions[EVS_COND_PAUSED].reason, "ScaledObjectPaused");
  fx_free(&f);
  fx_init(&f, REDIS(""), "  annotations: {autoscaling.keda.sh/paused-replicas: \"7\"}\n");
  f.replicas = 3;
  set(&f, 0, 0, T0 + S(1));
  d = step(&f, T0 + S(1));
  assert_int_equal(d->desired, 7);
  assert_int_equal(d->reason, EVS_REASON_PAUSED_REPLICAS);
  fx_free(&f);
}

static void paused_scale_in_and_out(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" FAST REDIS(""),
          "  annotations: {autoscaling.keda.sh/paused-scale-in: \"true\"}\n");
  f.replicas = 6;
  set(&f, 0, 11, T0 + S(1)); /* wants 2 */
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_int_equal(d->desired, 6);
  assert_int_equal(d->reason, EVS_REASON_PAUSED_SCALE_IN);
  set(&f, 0, 90, T0 + S(2)); /* scale-out still works */
  assert_int_equal(step(&f, T0 + S(2))->desired, 9);
  fx_free(&f);
  fx_init(&f, REDIS(""), "  annotations: {autoscaling.keda.sh/paused-scale-out: \"true\"}\n");
  set(&f, 0, 90, T0 + S(1)); /* active at 0, but no activation */
  d = step(&f, T0 + S(1));
  assert_int_equal(d->write, 0);
  assert_int_equal(d->reason, EVS_REASON_PAUSED_SCALE_OUT);
  fx_free(&f);
}

/* KEDA's Paused condition (kedacore/keda v2.20.2, 68a5b5028f35b22d50597c69819ab32c4e92f21a,
 * controllers/keda/scaledobject_controller.go reconcileScaledObject and
 * apis/keda/v1alpha1/condition_types.go GetInitializedConditions): never paused -> False with
 * no reason or message; paused -> True ScaledObjectPaused; unpaused -> False
 * ScaledObjectUnpaused "pause annotation removed for ScaledObject", kept afterwards. */
static void paused_condition_as_keda(void **state) {
  (void)state;
  fx_t f, g;
  fx_init(&f, REDIS(""), NULL);
  set(&f, 0, 0, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_int_equal(d->conditions[EVS_COND_PAUSED].status, EVS_COND_FALSE);
  assert_null(d->conditions[EVS_COND_PAUSED].reason);
  assert_null(d->conditions[EVS_COND_PAUSED].message);
  /* Paused: the same state, the annotated object. */
  fx_init(&g, REDIS(""), "  annotations: {autoscaling.keda.sh/paused: \"true\"}\n");
  evs_so_t *plain = f.so;
  f.so = g.so;
  g.so = plain;
  set(&f, 0, 0, T0 + S(2));
  d = step(&f, T0 + S(2));
  assert_int_equal(d->conditions[EVS_COND_PAUSED].status, EVS_COND_TRUE);
  assert_string_equal(d->conditions[EVS_COND_PAUSED].reason, "ScaledObjectPaused");
  assert_string_equal(d->conditions[EVS_COND_PAUSED].message, "ScaledObject is paused");
  /* Unpaused, and so on every later decision. */
  g.so = f.so; /* freed with g */
  f.so = plain;
  for (int i = 3; i <= 4; i++) {
    set(&f, 0, 0, T0 + S(i));
    d = step(&f, T0 + S(i));
    assert_int_equal(d->conditions[EVS_COND_PAUSED].status, EVS_COND_FALSE);
    assert_string_equal(d->conditions[EVS_COND_PAUSED].reason, "ScaledObjectUnpaused");
    assert_string_equal(d->conditions[EVS_COND_PAUSED].message,
                        "pause annotation removed for ScaledObject");
  }
  fx_free(&g);
  fx_free(&f);
  /* A fresh state told by the status that it was paused (a restart) says so too. */
  fx_init(&f, REDIS(""), NULL);
  f.st->was_paused = 1;
  set(&f, 0, 0, T0 + S(1));
  assert_string_equal(step(&f, T0 + S(1))->conditions[EVS_COND_PAUSED].reason,
                      "ScaledObjectUnpaused");
  fx_free(&f);
}

static void force_activation(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, REDIS(""), "  annotations: {autoscaling.keda.sh/force-activation: \"true\"}\n");
  set(&f, 0, 0, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_int_equal(d->desired, 1);
  assert_string_equal(d->conditions[EVS_COND_ACTIVE].message,
                      "Scaling is performed because activation is being forced by annotation");
  fx_free(&f);
}

/* scalingModifiers: one composite value; activity = composite > activationTarget. */
static void scaling_modifiers(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 1\n" FAST
          "    scalingModifiers: {formula: \"a + b\", target: \"5\", activationTarget: \"20\"}\n"
          "  triggers:\n"
          "  - {type: redis, name: a, metadata: {listName: a}}\n"
          "  - {type: redis, name: b, metadata: {listName: b}}\n",
          NULL);
  f.replicas = 1;
  set(&f, 0, 10, T0 + S(1));
  set(&f, 1, 5, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_true(d->composite == 15);
  assert_int_equal(d->active, 0);  /* 15 > 20 is false */
  assert_int_equal(d->desired, 3); /* not at 0, so the HPA math runs: ceil(15 / 5) */
  fx_free(&f);
  /* A negative composite value: the HPA's max(0, desired), then the floor max(min, 1). */
  fx_init(&f,
          "  minReplicaCount: 1\n" FAST
          "    scalingModifiers: {formula: \"a - 100\", target: \"5\"}\n"
          "  triggers:\n  - {type: redis, name: a, metadata: {listName: a}}\n",
          NULL);
  f.replicas = 3;
  set(&f, 0, 10, T0 + S(1));
  d = step(&f, T0 + S(1));
  assert_true(d->composite == -90);
  assert_int_equal(d->desired, 1);
  fx_free(&f);
}

/* fallback.behavior scalingModifiers: a failing trigger is nil to the formula (`??` picks the
 * default); a nil result is replaced by fallback.replicas x target
 * (pkg/scaling/modifiers/formula.go calculateScalingModifiersFormula). */
static void modifiers_fallback(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f,
          "  minReplicaCount: 1\n"
          "  fallback: {failureThreshold: 1, replicas: 4, behavior: scalingModifiers}\n" FAST
          "    scalingModifiers: {formula: \"a + (b ?? 100)\", target: \"5\"}\n"
          "  triggers:\n"
          "  - {type: redis, name: a, metadata: {listName: a}}\n"
          "  - {type: redis, name: b, metadata: {listName: b}}\n",
          NULL);
  f.replicas = 1;
  set(&f, 0, 10, T0 + S(1));
  set_err(&f, 1, T0 + S(1));
  const evs_decision_t *d = step(&f, T0 + S(1));
  assert_true(d->composite == 110);
  assert_int_equal(d->desired, 22); /* ceil(110 / 5) */
  fx_free(&f);
  fx_init(&f,
          "  minReplicaCount: 1\n"
          "  fallback: {failureThreshold: 1, replicas: 4, behavior: scalingModifiers}\n" FAST
          "    scalingModifiers: {formula: \"b ?? b\", target: \"5\"}\n"
          "  triggers:\n  - {type: redis, name: b, metadata: {listName: b}}\n",
          NULL);
  f.replicas = 1;
  set_err(&f, 0, T0 + S(1));
  d = step(&f, T0 + S(1));
  assert_true(d->composite == 20); /* nil -> 4 x 5 */
  assert_int_equal(d->desired, 4);
  fx_free(&f);
}

/* No reading yet from every trigger: hold (an unknown is not a zero). */
static void no_metrics_yet(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, REDIS(""), NULL);
  f.replicas = 3;
  const evs_decision_t *d = step(&f, T0 + S(1000));
  assert_int_equal(d->write, 0);
  assert_int_equal(d->reason, EVS_REASON_NO_METRICS);
  fx_free(&f);
}

/* A behavior that sets only scaleDown: scaleUp gets the defaults of
 * pkg/apis/autoscaling/v2/defaults.go (max(4 pods, 100 %) per 15 s, window 0), and the engine
 * asks to look again when the period ends. */
#define DOWN_ONLY                                                                                  \
  "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n"                             \
  "        scaleDown: {stabilizationWindowSeconds: 300}\n"

static void default_rate_limit_and_next_eval(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" DOWN_ONLY REDIS(""), NULL);
  f.replicas = 1;
  set(&f, 0, 1000, T0 + S(100));
  const evs_decision_t *d = step(&f, T0 + S(100));
  assert_int_equal(d->desired, 5); /* max(1 + 4, ceil(1 x 2)) */
  assert_int_equal(d->limit, EVS_LIMIT_SCALE_UP);
  d = step(&f, T0 + S(101));
  assert_int_equal(d->write, 0); /* 4 added within the last 15 s: start 1, limit 5 */
  assert_true(d->next_eval_ms == T0 + S(115));
  d = step(&f, T0 + S(115)); /* the event leaves the period: from 5 -> max(9, 10) */
  assert_int_equal(d->desired, 10);
  fx_free(&f);
}

/* No behavior: the HPA's legacy path (kubernetes/kubernetes pkg/controller/podautoscaler/
 * horizontal.go normalizeDesiredReplicas / convertDesiredReplicasWithRules /
 * calculateScaleUpLimit at 00067268967ec95a40035bd666374a1caf48dd1a): at most max(2 x R, 4),
 * R the count in force 15 s earlier (the HPA's sync), never a doubling per reading. */
static void legacy_cap_counts_from_15s_ago(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" REDIS(""), NULL);
  f.replicas = 1;
  set(&f, 0, 1000, T0 + S(100)); /* wants ceil(1000 / 10) = 100 */
  evs_engine_input_t in = {f.r, 1, 1, 1, -1, T0 + S(100)};
  assert_int_equal(evs_engine_decide(f.so, &f.cfg, f.st, &in, &f.d), 0);
  assert_int_equal(f.d.desired, 4); /* max(2 x 1, 4); the behavior defaults would give 5 */
  assert_int_equal(f.d.limit, EVS_LIMIT_SCALE_UP);
  /* The capped write may continue when it is 15 s old. */
  assert_true(evs_engine_record_scale(f.so, f.st, 1, 4, T0 + S(100)) == T0 + S(115));
  f.replicas = 4;
  set(&f, 0, 1000, T0 + S(101)); /* a new reading 1 s later: R is still 1 */
  const evs_decision_t *d = step(&f, T0 + S(101));
  assert_int_equal(d->write, 0);
  assert_true(d->next_eval_ms == T0 + S(115));
  set(&f, 0, 1000, T0 + S(114));
  assert_int_equal(step(&f, T0 + S(114))->write, 0);
  assert_int_equal(step(&f, T0 + S(115))->desired, 8); /* R = 4 */
  set(&f, 0, 1000, T0 + S(116));
  assert_int_equal(step(&f, T0 + S(116))->write, 0);
  assert_int_equal(step(&f, T0 + S(130))->desired, 16);
  assert_int_equal(step(&f, T0 + S(145))->desired, 32);
  assert_int_equal(step(&f, T0 + S(160))->desired, 64);
  assert_int_equal(step(&f, T0 + S(175))->desired, 100); /* 128 > wanted 100 */
  assert_int_equal(f.d.limit, EVS_LIMIT_NONE);
  fx_free(&f);
}

/* Legacy scale-down: the highest recommendation of the 300 s window (Before(cutoff): the cutoff
 * itself is inside), then no rate limit: 20 -> 1 in one write. */
static void legacy_scale_down_window_no_rate(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" REDIS(""), NULL);
  f.replicas = 20;
  set(&f, 0, 200, T0 + S(100));
  step(&f, T0 + S(100)); /* 20 = current */
  set(&f, 0, 5, T0 + S(101));
  const evs_decision_t *d = step(&f, T0 + S(101));
  /* wants 1; 20 is in force until 101 s: held until 101 + 300 s, inclusive */
  assert_int_equal(d->desired, 20);
  assert_true(d->next_eval_ms == T0 + S(401) + 1);
  assert_int_equal(step(&f, T0 + S(401))->desired, 20);
  d = step(&f, T0 + S(401) + 1);
  assert_int_equal(d->desired, 1); /* no rate limit on this path */
  fx_free(&f);
}

/* paused-scale-in makes KEDA write a behavior (scaleDown selectPolicy Disabled;
 * controllers/keda/hpa.go), so the behavior path with the defaults applies: 1 -> 5, not 4. */
static void paused_scale_in_uses_behavior_path(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" REDIS(""),
          "  annotations: {autoscaling.keda.sh/paused-scale-in: \"true\"}\n");
  f.replicas = 1;
  set(&f, 0, 1000, T0 + S(100));
  assert_int_equal(step(&f, T0 + S(100))->desired, 5);
  fx_free(&f);
}

/* A write the policies limited tells, when recorded, when the scale may continue: the event
 * leaves the shortest policy period of its direction. A write they did not limit, and a write
 * that is KEDA's rather than the HPA's (activation), add no such time. */
static void record_scale_returns_policy_period_end(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 0\n" DOWN_ONLY REDIS(""), NULL);
  f.replicas = 0;
  set(&f, 0, 1000, T0 + S(10));
  evs_engine_input_t in = {f.r, 1, 0, 0, -1, T0 + S(10)};
  assert_int_equal(evs_engine_decide(f.so, &f.cfg, f.st, &in, &f.d), 0);
  assert_int_equal(f.d.reason, EVS_REASON_ACTIVATE); /* 0 -> 1 is KEDA's write */
  assert_true(evs_engine_record_scale(f.so, f.st, 0, 1, T0 + S(10)) == INT64_MAX);
  /* From 1 the default scale-up policies (4 pods or 100 % per 15 s) limit 100 to 5. */
  in = (evs_engine_input_t){f.r, 1, 1, 1, -1, T0 + S(11)};
  assert_int_equal(evs_engine_decide(f.so, &f.cfg, f.st, &in, &f.d), 0);
  assert_int_equal(f.d.desired, 5);
  assert_int_equal(f.d.limit, EVS_LIMIT_SCALE_UP);
  assert_true(evs_engine_record_scale(f.so, f.st, 1, 5, T0 + S(11)) == T0 + S(26));
  fx_free(&f);
  /* Unlimited (FAST behavior): nothing to wait for. */
  fx_init(&f, "  minReplicaCount: 1\n" FAST REDIS(""), NULL);
  set(&f, 0, 30, T0 + S(10));
  in = (evs_engine_input_t){f.r, 1, 1, 1, -1, T0 + S(10)};
  assert_int_equal(evs_engine_decide(f.so, &f.cfg, f.st, &in, &f.d), 0);
  assert_int_equal(f.d.desired, 3);
  assert_true(evs_engine_record_scale(f.so, f.st, 1, 3, T0 + S(10)) == INT64_MAX);
  fx_free(&f);
}

/* Behavior scale-down window: 300 s of the highest recommendation (After(cutoff)). */
static void default_scale_down_window(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" DOWN_ONLY REDIS(""), NULL);
  f.replicas = 8;
  set(&f, 0, 80, T0 + S(100));
  step(&f, T0 + S(100)); /* 8, seeds the history with 8 */
  set(&f, 0, 20, T0 + S(101));
  const evs_decision_t *d = step(&f, T0 + S(101));
  assert_int_equal(d->desired, 8); /* wants 2, held by the window: 8 in force until 101 s */
  assert_true(d->next_eval_ms == T0 + S(401));
  d = step(&f, T0 + S(400));
  assert_int_equal(d->desired, 8);
  d = step(&f, T0 + S(401)); /* the last 8 (101 s) left the window at 401 s */
  assert_int_equal(d->desired, 2);
  fx_free(&f);
}

/* A recommendation stays in force until the next one replaces it. Readings are sparse (push):
 * 10 replicas wanted from 0 s to 85 s, then 1. The 10 was in force until 85 s, so the 300 s
 * window holds 10 until 385 s (the HPA, recomputing every 15 s, would have recorded it at 75 s
 * or so); counting from when it was first recorded would let it go at 300 s. */
static void recommendation_in_force_until_replaced(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "  minReplicaCount: 1\n" DOWN_ONLY REDIS(""), NULL);
  f.replicas = 10;
  set(&f, 0, 100, T0 + S(0) + 1);
  step(&f, T0 + S(0) + 1); /* 10 = current */
  set(&f, 0, 10, T0 + S(85));
  const evs_decision_t *d = step(&f, T0 + S(85));
  assert_int_equal(d->desired, 10);
  assert_true(d->next_eval_ms == T0 + S(385));
  assert_int_equal(step(&f, T0 + S(301))->desired, 10);
  assert_int_equal(step(&f, T0 + S(384))->desired, 10);
  assert_int_equal(step(&f, T0 + S(385))->desired, 1);
  fx_free(&f);
}

/* A changed spec keeps each trigger's health by index and starts new triggers fresh, whether the
 * health stays in the state's own allocation (as many triggers as at creation, or fewer) or
 * moves to a block of its own (more); under ASan, nothing leaks or overruns. */
static void respec_keeps_health_by_index(void **state) {
  (void)state;
  fx_t f, three;
  fx_init(&f, REDIS(""), NULL);
  fx_init(&three,
          REDIS("") "  - {type: redis, metadata: {listName: b, listLength: \"10\"}}\n"
                    "  - {type: redis, metadata: {listName: c, listLength: \"10\"}}\n",
          NULL);
  /* A spec without triggers does not parse; respec reads only the count. */
  evs_so_t none = *f.so;
  none.n_triggers = 0;
  assert_int_equal(three.so->n_triggers, 3);
  set_err(&f, 0, T0 + S(1));
  step(&f, T0 + S(1));
  set_err(&f, 0, T0 + S(2));
  step(&f, T0 + S(2));
  assert_int_equal(f.st->health[0].failures, 2);
  assert_int_equal(evs_engine_state_respec(f.st, &none), 0); /* fewer: stays inline */
  assert_int_equal(f.st->n_triggers, 0);
  assert_int_equal(evs_engine_state_respec(f.st, f.so), 0); /* back: a fresh health */
  assert_int_equal(f.st->health[0].failures, 0);
  assert_int_equal(f.st->health[0].proposal, -1);
  f.st->health[0].failures = 7;
  assert_int_equal(evs_engine_state_respec(f.st, three.so), 0); /* more: its own block */
  assert_int_equal(f.st->n_triggers, 3);
  assert_int_equal(f.st->health[0].failures, 7);
  for (int i = 1; i < 3; i++) {
    assert_int_equal(f.st->health[i].failures, 0);
    assert_int_equal(f.st->health[i].proposal, -1);
  }
  f.st->health[2].failures = 9;
  assert_int_equal(evs_engine_state_respec(f.st, f.so), 0);
  assert_int_equal(f.st->health[0].failures, 7);
  assert_int_equal(evs_engine_state_respec(f.st, three.so), 0);
  assert_int_equal(f.st->health[2].failures, 0);
  assert_int_equal(evs_engine_state_respec(f.st, &none), 0);
  fx_free(&three);
  fx_free(&f);
}

/* A state in its owner's memory (the registry's record) is the one evs_engine_state_new makes,
 * decides the same, and its fini frees only what it allocated itself: a respec's health block
 * (ASan fails the test on a leak, a free of the owner's memory or an overrun of the inline
 * health). */
static void state_in_owner_memory(void **state) {
  (void)state;
  fx_t f, three;
  fx_init(&f, REDIS(""), NULL);
  fx_init(&three,
          REDIS("") "  - {type: redis, metadata: {listName: b, listLength: \"10\"}}\n"
                    "  - {type: redis, metadata: {listName: c, listLength: \"10\"}}\n",
          NULL);
  size_t size = evs_engine_state_size(f.so);
  assert_int_equal(size, sizeof(evs_engine_state_t) + sizeof(evs_trigger_health_t));
  assert_int_equal(evs_engine_state_size(three.so),
                   sizeof(evs_engine_state_t) + 3 * sizeof(evs_trigger_health_t));
  /* Dirty memory: init must not rely on a zeroed block. */
  _Alignas(evs_engine_state_t) unsigned char
      mem[sizeof(evs_engine_state_t) + sizeof(evs_trigger_health_t)];
  memset(mem, 0xa5, sizeof mem);
  evs_engine_state_t *st = (evs_engine_state_t *)mem;
  evs_engine_state_init(st, f.so, T0);
  assert_int_equal(st->created_ms, f.st->created_ms);
  assert_int_equal(st->n_triggers, 1);
  assert_ptr_equal(st->health, (evs_trigger_health_t *)(st + 1));
  assert_int_equal(st->health[0].proposal, -1);
  /* The same decisions as the fixture's own state, reading by reading. */
  evs_engine_state_t *own = f.st;
  for (int i = 1; i <= 4; i++) {
    if (i % 2)
      set_err(&f, 0, T0 + S(i));
    else
      set(&f, 0, 12, T0 + S(i));
    int32_t replicas = f.replicas;
    f.st = own;
    evs_decision_t a = *step(&f, T0 + S(i));
    int32_t after = f.replicas;
    f.replicas = replicas;
    f.st = st;
    evs_decision_t b = *step(&f, T0 + S(i));
    assert_int_equal(f.replicas, after);
    assert_int_equal(a.desired, b.desired);
    assert_int_equal(a.reason, b.reason);
    assert_int_equal(a.write, b.write);
    assert_int_equal(own->health[0].failures, st->health[0].failures);
    assert_int_equal(own->last_active_ms, st->last_active_ms);
  }
  f.st = own;
  /* More triggers: the health moves to a block the state owns; fini frees it, not mem. */
  assert_int_equal(evs_engine_state_respec(st, three.so), 0);
  assert_ptr_not_equal(st->health, (evs_trigger_health_t *)(st + 1));
  evs_engine_state_fini(st);
  assert_null(st->health);
  evs_engine_state_fini(NULL);
  fx_free(&three);
  fx_free(&f);
}

static void state_size(void **state) {
  (void)state;
  print_message("sizeof evs_engine_state_t %zu, evs_behavior_state_t %zu, "
                "evs_trigger_health_t %zu, evs_so_t %zu, evs_trigger_t %zu\n",
                sizeof(evs_engine_state_t), sizeof(evs_behavior_state_t),
                sizeof(evs_trigger_health_t), sizeof(evs_so_t), sizeof(evs_trigger_t));
  assert_true(sizeof(evs_engine_state_t) <= 1024);
  /* Issue 13 (about 2 KB per object in all): an idle object's engine state, the struct and one
   * trigger's health, stays well under 150 B; the behavior history takes heap room only for the
   * entries it holds (test_behavior). */
  assert_true(sizeof(evs_engine_state_t) + sizeof(evs_trigger_health_t) <= 100);
}

static void bad_arguments(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, REDIS(""), NULL);
  evs_engine_input_t in = {NULL, 0, -1, 0, 0, T0};
  assert_int_equal(evs_engine_decide(f.so, &f.cfg, f.st, &in, &f.d), UV_EINVAL);
  assert_int_equal(f.d.write, 0);
  fx_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(activation_strictly_greater),
      cmocka_unit_test(activation_goes_to_min),
      cmocka_unit_test(values_milli_and_invalid),
      cmocka_unit_test(average_value_math),
      cmocka_unit_test(tolerance_configurable),
      cmocka_unit_test(tolerance_per_direction),
      cmocka_unit_test(value_math),
      cmocka_unit_test(max_over_triggers),
      cmocka_unit_test(errors_without_fallback_hold),
      cmocka_unit_test(partial_error_condition),
      cmocka_unit_test(cooldown_to_zero),
      cmocka_unit_test(initial_cooldown),
      cmocka_unit_test(idle_replicas),
      cmocka_unit_test(inactive_below_min),
      cmocka_unit_test(clamp_and_cap),
      cmocka_unit_test(fallback_static),
      cmocka_unit_test(fallback_behaviors),
      cmocka_unit_test(fallback_value_metric),
      cmocka_unit_test(fallback_is_active),
      cmocka_unit_test(fallback_modifiers_not_error),
      cmocka_unit_test(fallback_value_at_zero_stays_error),
      cmocka_unit_test(paused),
      cmocka_unit_test(paused_scale_in_and_out),
      cmocka_unit_test(paused_condition_as_keda),
      cmocka_unit_test(force_activation),
      cmocka_unit_test(scaling_modifiers),
      cmocka_unit_test(modifiers_fallback),
      cmocka_unit_test(no_metrics_yet),
      cmocka_unit_test(default_rate_limit_and_next_eval),
      cmocka_unit_test(legacy_cap_counts_from_15s_ago),
      cmocka_unit_test(legacy_scale_down_window_no_rate),
      cmocka_unit_test(paused_scale_in_uses_behavior_path),
      cmocka_unit_test(recommendation_in_force_until_replaced),
      cmocka_unit_test(default_scale_down_window),
      cmocka_unit_test(record_scale_returns_policy_period_end),
      cmocka_unit_test(state_size),
      cmocka_unit_test(state_in_owner_memory),
      cmocka_unit_test(respec_keeps_health_by_index),
      cmocka_unit_test(bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
