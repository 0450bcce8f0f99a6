/* Cases ported from the HPA controller's own tests. Each table row keeps the upstream name and
 * expected value; only the harness is ours.
 *
 *  H = kubernetes/kubernetes pkg/controller/podautoscaler/horizontal_test.go
 *      at 4e62298c1bd12c8b9b9c7337aa7fd07a8b9c37a8
 *  R = kubernetes/kubernetes pkg/controller/podautoscaler/replica_calculator_test.go
 *      at 5f3bc7cdab9b2544f0389b9a83c88fa15b793b7a
 *
 * Upstream helpers reproduced by hand:
 *  - generateScalingRules(pods, podsPeriod, percent, percentPeriod, window): a Pods policy when
 *    pods != 0, then a Percent policy when percent != 0, selectPolicy Max; passed through
 *    GenerateHPAScaleUpRules/GenerateHPAScaleDownRules, so nil rules mean the defaults.
 *  - generateEventsUniformDistribution(events, 120): event i sits at the centre of segment i of
 *    the last 120 s: for 3 events 100 s, 60 s, 20 s ago; for 4 events 105, 75, 45, 15 s ago. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "evscale/behavior.h"
#include "evscale/engine.h"
#include "evscale/error.h"
#include "scale/engine_internal.h"

#define NOW 1000000000LL /* an arbitrary "now" in ms */

typedef struct {
  int32_t pods, pods_period, percent, percent_period, window;
  int set; /* 0 = nil rules (defaults) */
} rules_arg_t;

static void gen_rules(const rules_arg_t *a, int up, evs_scaling_rules_t *out) {
  evs_behavior_t b;
  evs_scaling_rules_t u, d;
  memset(&b, 0, sizeof b);
  b.up.window_s = b.down.window_s = -1;
  if (a->set) {
    evs_scaling_rules_t *r = up ? &b.up : &b.down;
    b.present = 1;
    r->window_s = a->window;
    r->select = EVS_SELECT_MAX;
    if (a->pods)
      r->policies[r->n_policies++] = (evs_hpa_policy_t){a->pods, a->pods_period, EVS_POLICY_PODS};
    if (a->percent)
      r->policies[r->n_policies++] =
          (evs_hpa_policy_t){a->percent, a->percent_period, EVS_POLICY_PERCENT};
  }
  evs_behavior_effective(&b, &u, &d);
  *out = up ? u : d;
}

static void gen_events(evs_behavior_state_t *s, int up, const int *ev, int n) {
  for (int i = 0; i < n; i++) {
    /* periodSeconds - segment*(i+1) + segment/2 seconds ago, segment = 120 / n */
    int64_t ago_ms = (int64_t)(120.0 - (120.0 / n) * (i + 1) + (120.0 / n) / 2) * 1000;
    evs_behavior_add_event(s, up, ev[i], NOW - ago_ms);
  }
}

/* H: TestScalingWithRules (convertDesiredReplicasWithBehaviorRate). */
static void scaling_with_rules(void **state) {
  (void)state;
  static const int e159[] = {1, 5, 9}, e246[] = {2, 4, 6}, e10[] = {10, 10, 10},
                   e8129[] = {8, 12, 9, 11};
  struct {
    const char *name;
    const int *up_ev, *down_ev;
    int n_up, n_down;
    int32_t min, max;
    rules_arg_t up, down;
    int32_t current, desired, expected;
    int limit;
  } t[] = {
      {"prenormalized desired replicas within range",
       0,
       0,
       0,
       0,
       3,
       8,
       {0},
       {0},
       5,
       7,
       7,
       EVS_LIMIT_NONE},
      {"prenormalized desired replicas < minReplicas",
       0,
       0,
       0,
       0,
       2,
       8,
       {0},
       {0},
       3,
       1,
       2,
       EVS_LIMIT_TOO_FEW},
      {"within range when minReplicas is 0", 0, 0, 0, 0, 0, 10, {0}, {0}, 1, 0, 0, EVS_LIMIT_NONE},
      {"maxReplicas is the limit because maxReplicas < scaleUpLimit",
       0,
       0,
       0,
       0,
       1,
       10,
       {0},
       {0},
       20,
       1000,
       10,
       EVS_LIMIT_TOO_MANY},
      {"desired replica count is more than the maximum replica count",
       0,
       0,
       0,
       0,
       100,
       150,
       {0},
       {0},
       100,
       1000,
       150,
       EVS_LIMIT_TOO_MANY},
      {"scaleUpLimit < maxReplicas with user policies",
       0,
       0,
       0,
       0,
       1,
       2000,
       {0, 0, 1, 60, 0, 1},
       {0},
       3,
       1000,
       4,
       EVS_LIMIT_SCALE_UP},
      {"scaleUp with default behavior",
       0,
       0,
       0,
       0,
       1,
       1000,
       {0},
       {0},
       10,
       50,
       20,
       EVS_LIMIT_SCALE_UP},
      {"scaleUp with pods policy larger than percent policy",
       0,
       0,
       0,
       0,
       1,
       1000,
       {100, 60, 100, 60, 0, 1},
       {0},
       10,
       500,
       110,
       EVS_LIMIT_SCALE_UP},
      {"scaleUp with percent policy larger than pods policy",
       0,
       0,
       0,
       0,
       1,
       1000,
       {2, 60, 100, 60, 0, 1},
       {0},
       10,
       500,
       20,
       EVS_LIMIT_SCALE_UP},
      {"scaleUp with spec MaxReplicas limitation with large pod policy",
       0,
       0,
       0,
       0,
       1,
       1000,
       {100, 60, 0, 0, 0, 1},
       {0},
       10,
       50,
       50,
       EVS_LIMIT_NONE},
      {"scaleUp with spec MaxReplicas limitation with large percent policy",
       0,
       0,
       0,
       0,
       1,
       1000,
       {10000, 60, 0, 0, 0, 1},
       {0},
       10,
       50,
       50,
       EVS_LIMIT_NONE},
      {"scaleUp with pod policy limitation",
       0,
       0,
       0,
       0,
       1,
       1000,
       {30, 60, 0, 0, 0, 1},
       {0},
       10,
       50,
       40,
       EVS_LIMIT_SCALE_UP},
      {"scaleUp with percent policy limitation",
       0,
       0,
       0,
       0,
       1,
       1000,
       {0, 0, 200, 60, 0, 1},
       {0},
       10,
       50,
       30,
       EVS_LIMIT_SCALE_UP},
      {"scaleDown with percent policy larger than pod policy",
       0,
       0,
       0,
       0,
       1,
       1000,
       {0},
       {20, 60, 1, 60, 300, 1},
       100,
       2,
       80,
       EVS_LIMIT_SCALE_DOWN},
      {"scaleDown with pod policy larger than percent policy",
       0,
       0,
       0,
       0,
       1,
       1000,
       {0},
       {2, 60, 1, 60, 300, 1},
       100,
       2,
       98,
       EVS_LIMIT_SCALE_DOWN},
      {"scaleDown with spec MinReplicas=nil limitation with large pod policy",
       0,
       0,
       0,
       0,
       1,
       1000,
       {0},
       {100, 60, 0, 0, 300, 1},
       10,
       0,
       1,
       EVS_LIMIT_TOO_FEW},
      {"scaleDown with spec MinReplicas limitation with large percent policy",
       0,
       0,
       0,
       0,
       5,
       1000,
       {0},
       {0, 0, 100, 60, 300, 1},
       10,
       2,
       5,
       EVS_LIMIT_TOO_FEW},
      {"scaleDown with pod policy limitation",
       0,
       0,
       0,
       0,
       1,
       1000,
       {0},
       {5, 60, 0, 0, 300, 1},
       10,
       2,
       5,
       EVS_LIMIT_SCALE_DOWN},
      {"scaleDown with percent policy limitation",
       0,
       0,
       0,
       0,
       1,
       1000,
       {0},
       {0, 0, 50, 60, 300, 1},
       10,
       5,
       5,
       EVS_LIMIT_NONE},
      {"scaleUp with spec MaxReplicas limitation with large pod policy and events",
       e159,
       0,
       3,
       0,
       1,
       200,
       {300, 60, 0, 0, 0, 1},
       {0},
       100,
       500,
       200,
       EVS_LIMIT_TOO_MANY},
      {"scaleUp with spec MaxReplicas limitation with large percent policy and events",
       e159,
       0,
       3,
       0,
       1,
       200,
       {0, 0, 10000, 60, 0, 1},
       {0},
       100,
       500,
       200,
       EVS_LIMIT_TOO_MANY},
      {"scaleUp with currentReplicas limitation with a lot of recent scale up events",
       e159,
       0,
       3,
       0,
       1,
       1000,
       {5, 120, 0, 0, 0, 1},
       {0},
       100,
       500,
       100,
       EVS_LIMIT_SCALE_UP},
      {"scaleUp with pod policy and previous scale up events",
       e159,
       0,
       3,
       0,
       1,
       1000,
       {150, 120, 0, 0, 0, 1},
       {0},
       100,
       500,
       235,
       EVS_LIMIT_SCALE_UP},
      {"scaleUp with percent policy and previous scale up events",
       e159,
       0,
       3,
       0,
       1,
       1000,
       {0, 0, 200, 120, 0, 1},
       {0},
       100,
       500,
       255,
       EVS_LIMIT_SCALE_UP},
      {"scaleDown with default policy and previous events",
       0,
       e159,
       0,
       3,
       1,
       1000,
       {0},
       {0},
       10,
       5,
       5,
       EVS_LIMIT_NONE},
      {"scaleDown with spec MinReplicas=nil limitation with large pod policy and previous "
       "events",
       0,
       e159,
       0,
       3,
       1,
       1000,
       {0},
       {115, 120, 0, 0, 300, 1},
       100,
       0,
       1,
       EVS_LIMIT_TOO_FEW},
      {"scaleDown with spec MinReplicas limitation with large pod policy and previous events",
       0,
       e159,
       0,
       3,
       5,
       1000,
       {0},
       {130, 120, 0, 0, 300, 1},
       100,
       0,
       5,
       EVS_LIMIT_TOO_FEW},
      {"scaleDown with spec MinReplicas limitation with large percent policy and previous "
       "events",
       0,
       e159,
       0,
       3,
       5,
       1000,
       {0},
       {0, 0, 100, 120, 300, 1},
       100,
       2,
       5,
       EVS_LIMIT_TOO_FEW},
      {"scaleDown with pod policy limitation and previous events",
       0,
       e159,
       0,
       3,
       1,
       1000,
       {0},
       {5, 120, 0, 0, 300, 1},
       100,
       2,
       100,
       EVS_LIMIT_SCALE_DOWN},
      {"scaleDown with percent policy limitation and previous events",
       0,
       e246,
       0,
       3,
       1,
       1000,
       {0},
       {0, 0, 50, 120, 300, 1},
       100,
       0,
       56,
       EVS_LIMIT_SCALE_DOWN},
      {"scaleDown with previous events preventing further scale down",
       0,
       e10,
       0,
       3,
       1,
       1000,
       {0},
       {0, 0, 10, 120, 300, 1},
       100,
       0,
       100,
       EVS_LIMIT_SCALE_DOWN},
      {"scaleDown with with previous events still allowing more scale down",
       0,
       e10,
       0,
       3,
       1,
       1000,
       {0},
       {0, 0, 1000, 120, 300, 1},
       10,
       5,
       5,
       EVS_LIMIT_NONE},
      {"check 'outdated' flag for events for one behavior for up",
       e8129,
       0,
       4,
       0,
       1,
       1000,
       {1000, 60, 0, 0, 0, 1},
       {0},
       100,
       200,
       200,
       EVS_LIMIT_NONE},
      {"events not marked 'outdated' for two different policies for up",
       e8129,
       0,
       4,
       0,
       1,
       1000,
       {1000, 120, 100, 60, 0, 1},
       {0},
       100,
       200,
       200,
       EVS_LIMIT_NONE},
      {"events marked 'outdated' for two different policies for up",
       e8129,
       0,
       4,
       0,
       1,
       1000,
       {1000, 30, 100, 60, 0, 1},
       {0},
       100,
       200,
       200,
       EVS_LIMIT_NONE},
      {"check 'outdated' flag for events for one behavior for down",
       0,
       e8129,
       0,
       4,
       1,
       1000,
       {0},
       {1000, 60, 0, 0, 300, 1},
       100,
       5,
       5,
       EVS_LIMIT_NONE},
      {"events not marked 'outdated' for two different policies for down",
       0,
       e8129,
       0,
       4,
       1,
       1000,
       {0},
       {1000, 120, 100, 60, 300, 1},
       100,
       5,
       5,
       EVS_LIMIT_NONE},
      {"events marked 'outdated' for two different policies for down",
       0,
       e8129,
       0,
       4,
       1,
       1000,
       {0},
       {1000, 30, 100, 60, 300, 1},
       100,
       5,
       5,
       EVS_LIMIT_NONE},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_behavior_state_t s;
    evs_scaling_rules_t up, down;
    evs_behavior_result_t r;
    evs_behavior_init(&s);
    gen_rules(&t[i].up, 1, &up);
    gen_rules(&t[i].down, 0, &down);
    /* Only the rate part is under test: no stabilization (windows 0, history present). */
    up.window_s = down.window_s = 0;
    s.seeded = 1;
    gen_events(&s, 1, t[i].up_ev, t[i].n_up);
    gen_events(&s, 0, t[i].down_ev, t[i].n_down);
    evs_behavior_normalize(&s, &up, &down, t[i].current, t[i].desired, t[i].min, t[i].max, NOW, &r);
    if (r.desired != t[i].expected || r.limit != t[i].limit)
      print_error("%s: got %d (limit %d), want %d (limit %d)\n", t[i].name, r.desired, r.limit,
                  t[i].expected, t[i].limit);
    assert_int_equal(r.desired, t[i].expected);
    assert_int_equal(r.limit, t[i].limit);
    evs_behavior_free(&s);
  }
}

/* H: TestCalculateScaleUpLimitWithScalingRules / TestCalculateScaleDownLimitWithBehaviors. */
static void scale_limits_min_policy(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_scaling_rules_t r = {
      300, EVS_SELECT_MIN, 2, {{2, 60, EVS_POLICY_PODS}, {50, 60, EVS_POLICY_PERCENT}}, -1};
  evs_behavior_init(&s);
  assert_int_equal(evs_behavior_scale_up_limit(&s, &r, 1, NOW), 2);
  assert_int_equal(evs_behavior_scale_down_limit(&s, &r, 5, NOW), 3);
}

/* H: TestNormalizeDesiredReplicasWithBehavior (stabilizeRecommendationWithBehaviors). Upstream
 * recommendations are listed out of time order; the min/max does not depend on order, so they
 * are added sorted by time. */
static void normalize_with_behavior(void **state) {
  (void)state;
  struct {
    const char *name;
    int n;
    struct {
      int32_t v;
      int64_t ago_min;
    } recs[4];
    int32_t current, desired, expected, up_window, down_window;
  } t[] = {
      {"empty recommendations for scaling down", 0, {{0, 0}}, 100, 5, 5, 0, 0},
      {"simple scale down stabilization", 2, {{4, 2}, {5, 1}}, 100, 3, 5, 0, 180},
      {"simple scale up stabilization", 2, {{4, 2}, {5, 1}}, 1, 7, 4, 300, 0},
      {"no scale down stabilization", 2, {{1, 2}, {2, 1}}, 100, 3, 3, 300, 0},
      {"no scale up stabilization", 2, {{4, 2}, {5, 1}}, 1, 3, 3, 0, 300},
      {"no scale down stabilization, reuse recommendation element",
       2,
       {{10, 10}, {9, 9}},
       100,
       3,
       3,
       0,
       0},
      {"no scale up stabilization, reuse recommendation element",
       2,
       {{10, 10}, {9, 9}},
       1,
       100,
       100,
       0,
       0},
      {"scale down stabilization, reuse one of obsolete recommendation element",
       4,
       {{10, 10}, {9, 9}, {5, 2}, {4, 1}},
       100,
       3,
       5,
       0,
       180},
      {"scale up stabilization, reuse one of obsolete recommendation element",
       4,
       {{10, 100}, {9, 3}, {5, 2}, {6, 1}},
       1,
       100,
       5,
       300,
       0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_behavior_state_t s;
    evs_behavior_result_t r;
    evs_scaling_rules_t up = {t[i].up_window, EVS_SELECT_MAX, 1, {{1000, 15, EVS_POLICY_PODS}}, -1};
    evs_scaling_rules_t down = {
        t[i].down_window, EVS_SELECT_MAX, 1, {{100, 15, EVS_POLICY_PERCENT}}, -1};
    evs_behavior_init(&s);
    s.seeded = 1;
    for (int j = 0; j < t[i].n; j++)
      evs_behavior_add_recommendation(&s, &up, &down, t[i].recs[j].v,
                                      NOW - t[i].recs[j].ago_min * 60000);
    evs_behavior_normalize(&s, &up, &down, t[i].current, t[i].desired, 0, 100000, NOW, &r);
    if (r.stabilized != t[i].expected)
      print_error("%s: got %d want %d\n", t[i].name, r.stabilized, t[i].expected);
    assert_int_equal(r.stabilized, t[i].expected);
    evs_behavior_free(&s);
  }
}

/* H: TestStoreScaleEvents, the getReplicasChangePerPeriod(60, prevScaleEvents) half, and the
 * change counted after storing (our storage merges, the sums must match). */
static void store_scale_events(void **state) {
  (void)state;
  struct {
    const char *name;
    int n;
    struct {
      int32_t change;
      int64_t ago_s;
    } prev[4];
    int32_t expected_change;
  } t[] = {
      {"empty entries", 0, {{0, 0}}, 0},
      {"one outdated entry", 1, {{7, 61}}, 0},
      {"one actual entry", 1, {{7, 58}}, 7},
      {"two entries, one of them to be replaced", 2, {{7, 61}, {6, 59}}, 6},
      {"replace one entry, use policies with different periods",
       4,
       {{7, 61}, {9, 61}, {6, 59}, {8, 29}},
       14},
      {"two entries, both actual", 2, {{6, 59}, {7, 58}}, 13},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_behavior_state_t s;
    evs_scaling_rules_t r = {
        0, EVS_SELECT_MAX, 2, {{10, 60, EVS_POLICY_PODS}, {100, 60, EVS_POLICY_PERCENT}}, -1};
    evs_behavior_init(&s);
    for (int j = 0; j < t[i].n; j++)
      evs_behavior_add_event(&s, 1, t[i].prev[j].change, NOW - t[i].prev[j].ago_s * 1000);
    assert_int_equal(evs_behavior_change_in_period(&s, 1, 60, NOW), t[i].expected_change);
    /* storeScaleEvent(behavior, key, 10, 15): the new event counts at once. */
    evs_behavior_record_scale(&s, &r, &r, 10, 15, NOW);
    assert_int_equal(evs_behavior_change_in_period(&s, 1, 60, NOW), t[i].expected_change + 5);
    evs_behavior_free(&s);
  }
}

/* R: External metric cases (levels and targets are milli-values upstream; here in units). */
static void replica_calc_external(void **state) {
  (void)state;
  struct {
    const char *name;
    int type;
    double usage, target;
    int32_t replicas, ready, expected;
  } t[] = {
      /* Value: ceil(8.6 / 4.4 * 1 ready pod) = 2 ("Would expect 6 if we didn't ignore unready") */
      {"TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods", EVS_METRIC_VALUE, 8.6, 4.4, 3, 1, 2},
      {"TestReplicaCalcScaleUpPerPodCMExternal", EVS_METRIC_AVERAGE_VALUE, 8.6, 2.15, 3, 3, 4},
      {"TestReplicaCalcScaleDownCMExternal", EVS_METRIC_VALUE, 8.6, 14.334, 5, 5, 3},
      {"TestReplicaCalcScaleDownPerPodCMExternal", EVS_METRIC_AVERAGE_VALUE, 8.6, 2.867, 5, 5, 3},
      {"TestReplicaCalcToleranceCMExternal", EVS_METRIC_VALUE, 8.6, 8.888, 3, 3, 3},
      {"TestReplicaCalcTolerancePerPodCMExternal", EVS_METRIC_AVERAGE_VALUE, 8.6, 2.9, 3, 3, 3},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    int32_t got = evs_engine__proposal(t[i].type, t[i].usage, t[i].target, t[i].replicas,
                                       t[i].replicas, t[i].ready, 0.1, 0.1);
    if (got != t[i].expected)
      print_error("%s: got %d want %d\n", t[i].name, got, t[i].expected);
    assert_int_equal(got, t[i].expected);
  }
}

/* H: TestScaleUpOneMetricEmpty and TestNoScaleDownOneMetricEmpty — one metric fails: scaling
 * up on the others is allowed, scaling down is not. Upstream pairs a CPU metric with a failing
 * External one; here two External triggers (AverageValue, target 1) stand for them. Upstream
 * expectations: 3 -> 4 (min 2, max 6), and 5 stays 5. */
static const char *two_triggers =
    "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: n}\n"
    "spec:\n  scaleTargetRef: {name: w}\n  minReplicaCount: 2\n  maxReplicaCount: 6\n"
    "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n"
    "        scaleDown: {stabilizationWindowSeconds: 0}\n"
    "  triggers:\n"
    "  - {type: prometheus, metadata: {serverAddress: http://p, query: a, threshold: \"1\"}}\n"
    "  - {type: prometheus, metadata: {serverAddress: http://p, query: b, threshold: \"1\"}}\n";

static void partial_errors(int32_t current, double good_value, int32_t expected) {
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse_yaml(two_triggers, strlen(two_triggers), "t", &so, &d), 0);
  evs_engine_config_t cfg;
  evs_engine_config_default(&cfg);
  evs_engine_state_t *st = NULL;
  assert_int_equal(evs_engine_state_new(so, NOW - 3600000, &st), 0);
  st->last_active_ms = NOW;
  evs_reading_t rd[2] = {{good_value, 1, 0, NOW, 0, NULL, 0}, {0, 0, EVS_EMETRIC, NOW, 0, NULL, 0}};
  evs_engine_input_t in = {rd, 2, current, current, current, NOW};
  evs_decision_t out;
  st->behavior.seeded = 1; /* no initial recommendation: only the failed-metric rule matters */
  assert_int_equal(evs_engine_decide(so, &cfg, st, &in, &out), 0);
  assert_int_equal(out.desired, expected);
  evs_engine_state_free(st);
  evs_so_free(so);
  evs_diag_free(&d);
}

static void one_metric_empty(void **state) {
  (void)state;
  partial_errors(3, 4, 4); /* TestScaleUpOneMetricEmpty: the valid metric proposes 4 */
  partial_errors(5, 2, 5); /* TestNoScaleDownOneMetricEmpty: 2 < 5 with a failed metric */
}

/* ---- no behavior: the legacy path ----
 * H2 = kubernetes/kubernetes pkg/controller/podautoscaler/horizontal_test.go at
 *      003e86297d18a8538c9da3619871393f9703bf70; the code under test is horizontal.go
 *      (stabilizeRecommendation, convertDesiredReplicasWithRules, calculateScaleUpLimit). */

/* H2: TestNormalizeDesiredReplicas (stabilizeRecommendation, downscaleStabilisationWindow
 * 5 minutes). Only the stabilized value is ported: the expected log lengths describe upstream's
 * slice reuse, which evscale's bounded deque does not copy. Recommendations are added in time
 * order (the max does not depend on the order of the log). current is the prenormalized value,
 * so no other rule moves the result. */
static void normalize_desired_replicas(void **state) {
  (void)state;
  struct {
    const char *name;
    int n;
    int32_t v[4];
    int32_t ago_s[4];
    int32_t prenormalized, expected;
  } t[] = {
      {"empty log", 0, {0}, {0}, 5, 5},
      {"stabilize", 2, {4, 5}, {120, 60}, 3, 5},
      {"no stabilize", 2, {1, 2}, {120, 60}, 3, 3},
      {"no stabilize - old recommendations", 2, {10, 9}, {600, 540}, 3, 3},
      {"stabilize - old recommendations", 4, {10, 9, 5, 4}, {600, 540, 120, 60}, 3, 5},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_behavior_state_t s;
    evs_behavior_result_t r;
    evs_behavior_init(&s);
    s.seeded = 1; /* the upstream test calls stabilizeRecommendation directly: no seed */
    for (int k = 0; k < t[i].n; k++) {
      /* any window of at least 10 minutes keeps every entry while they are added */
      evs_scaling_rules_t keep = {0, EVS_SELECT_MAX, 0, {{0}}, -1};
      keep.window_s = 3600;
      evs_behavior_add_recommendation(&s, &keep, &keep, t[i].v[k],
                                      NOW - (int64_t)t[i].ago_s[k] * 1000);
    }
    evs_behavior_normalize_legacy(&s, t[i].prenormalized, t[i].prenormalized, 1, 1000, 300, NOW,
                                  &r);
    if (r.stabilized != t[i].expected)
      print_error("%s: %d, want %d\n", t[i].name, r.stabilized, t[i].expected);
    assert_int_equal(r.stabilized, t[i].expected);
    evs_behavior_free(&s);
  }
}

/* H2: TestConvertDesiredReplicasWithRules. Upstream's test file sets scaleUpLimitFactor = 8 in
 * init() "so we don't accidentally run into it"; the controller's value is 2.0
 * (horizontal.go `scaleUpLimitFactor = 2.0`, `scaleUpLimitMinimum = 4.0`), so the last row's
 * calculateScaleUpLimit(3) is max(2 x 3, 4) = 6 here (24 with the test's 8). No history: R is
 * the current count. */
static void convert_desired_replicas_with_rules(void **state) {
  (void)state;
  struct {
    const char *name;
    int32_t current, desired, min, max, expected;
    int limit;
  } t[] = {
      {"prenormalized desired replicas within range", 5, 7, 3, 8, 7, EVS_LIMIT_NONE},
      {"prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2, EVS_LIMIT_TOO_FEW},
      {"prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0, EVS_LIMIT_NONE},
      {"maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10,
       EVS_LIMIT_TOO_MANY},
      {"scaleUpLimit is the limit because scaleUpLimit < maxReplicas", 3, 1000, 1, 2000, 6,
       EVS_LIMIT_SCALE_UP},
  };
  assert_int_equal(evs_behavior_legacy_up_limit(3), 6);
  assert_int_equal(evs_behavior_legacy_up_limit(1), 4);
  assert_int_equal(evs_behavior_legacy_up_limit(0), 4);
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_behavior_state_t s;
    evs_behavior_result_t r;
    evs_behavior_init(&s);
    s.seeded = 1; /* convertDesiredReplicasWithRules alone: no recommendation history */
    evs_behavior_normalize_legacy(&s, t[i].current, t[i].desired, t[i].min, t[i].max, 300, NOW, &r);
    if (r.desired != t[i].expected || r.limit != t[i].limit)
      print_error("%s: %d (limit %d), want %d (limit %d)\n", t[i].name, r.desired, r.limit,
                  t[i].expected, t[i].limit);
    assert_int_equal(r.desired, t[i].expected);
    assert_int_equal(r.limit, t[i].limit);
    evs_behavior_free(&s);
  }
}

/* H2: TestUpscaleCap and TestUpscaleCapGreaterThanMaxReplicas: the behavior path with
 * scaleUp generateScalingRules(0, 0, 700, 60, 0) (700 % per 60 s, window 0), scaleDown nil
 * (defaults). 3 pods at 100m, 200m, 300m of 100m requests against a 10 % CPU target: usage
 * ratio 200 % / 10 % = 20, desired ceil(20 x 3) = 60; the 700 % policy allows
 * ceil(3 x (1 + 7)) = 24 (ScaleUpLimit); with maxReplicas 20, 20 (TooManyReplicas). */
static void upscale_cap(void **state) {
  (void)state;
  rules_arg_t up = {0, 0, 700, 60, 0, 1}, down = {0};
  evs_scaling_rules_t u, d;
  gen_rules(&up, 1, &u);
  gen_rules(&down, 0, &d);
  int32_t max[] = {100, 20}, expected[] = {24, 20};
  int limit[] = {EVS_LIMIT_SCALE_UP, EVS_LIMIT_TOO_MANY};
  for (int i = 0; i < 2; i++) {
    evs_behavior_state_t s;
    evs_behavior_result_t r;
    evs_behavior_init(&s);
    evs_behavior_normalize(&s, &u, &d, 3, 60, 1, max[i], NOW, &r);
    assert_int_equal(r.desired, expected[i]);
    assert_int_equal(r.limit, limit[i]);
    evs_behavior_free(&s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(scaling_with_rules),
      cmocka_unit_test(scale_limits_min_policy),
      cmocka_unit_test(normalize_with_behavior),
      cmocka_unit_test(store_scale_events),
      cmocka_unit_test(replica_calc_external),
      cmocka_unit_test(one_metric_empty),
      cmocka_unit_test(normalize_desired_replicas),
      cmocka_unit_test(convert_desired_replicas_with_rules),
      cmocka_unit_test(upscale_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
