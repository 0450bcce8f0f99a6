/* Behavior history on real time: monotonic deques, bounded memory with conservative merges,
 * window expiry at exact instants, defaults (pkg/apis/autoscaling/v2/defaults.go at
 * a689afaaa0a02dbec78f0cdfe758ed057c8a2b98). Expectations are worked out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "evscale/behavior.h"

#define NOW 5000000000LL
#define S(x) ((int64_t)(x)*1000)

static void defaults_when_absent(void **state) {
  (void)state;
  evs_scaling_rules_t up, down;
  evs_behavior_effective(NULL, &up, &down);
  assert_int_equal(up.window_s, 0);
  assert_int_equal(up.select, EVS_SELECT_MAX);
  assert_int_equal(up.n_policies, 2);
  assert_int_equal(up.policies[0].type, EVS_POLICY_PODS);
  assert_int_equal(up.policies[0].value, 4);
  assert_int_equal(up.policies[0].period_s, 15);
  assert_int_equal(up.policies[1].type, EVS_POLICY_PERCENT);
  assert_int_equal(up.policies[1].value, 100);
  assert_int_equal(down.window_s, 300);
  assert_int_equal(down.n_policies, 1);
  assert_int_equal(down.policies[0].type, EVS_POLICY_PERCENT);
  assert_int_equal(down.policies[0].value, 100);
  assert_int_equal(down.policies[0].period_s, 15);
}

/* copyHPAScalingRules: a set field replaces the default, an unset one keeps it. */
static void partial_rules_keep_defaults(void **state) {
  (void)state;
  evs_behavior_t b;
  evs_scaling_rules_t up, down;
  memset(&b, 0, sizeof b);
  b.present = 1;
  b.up.window_s = 60;
  b.down.window_s = -1;
  b.down.select = EVS_SELECT_MIN;
  evs_behavior_effective(&b, &up, &down);
  assert_int_equal(up.window_s, 60);
  assert_int_equal(up.n_policies, 2); /* default policies kept */
  assert_int_equal(down.window_s, 300);
  assert_int_equal(down.select, EVS_SELECT_MIN);
}

/* The max over the window equals the HPA's linear scan; equal or smaller older entries go. */
static void deque_is_monotonic(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_scaling_rules_t up = {0, 0, 0, {{0}}, -1}, down = {300, 0, 0, {{0}}, -1};
  evs_behavior_init(&s);
  int32_t v[] = {3, 7, 5, 5, 2};
  for (int i = 0; i < 5; i++)
    evs_behavior_add_recommendation(&s, &up, &down, v[i], NOW + S(i));
  /* 3 is dominated by the later 7; the first 5 by the later 5: [7@1, 5@3, 2@4]. */
  assert_int_equal(s.down_max.len, 3);
  assert_int_equal(s.down_max.e[(s.down_max.head) % EVS_BEHAVIOR_DEQUE_CAP].v, 7);
}

/* Real time: an entry counts while t > now - window, and stops at exactly t + window. */
static void window_expiry_exact(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_scaling_rules_t up = {0, EVS_SELECT_MAX, 1, {{100, 15, EVS_POLICY_PODS}}, -1};
  evs_scaling_rules_t down = {60, EVS_SELECT_MAX, 1, {{100, 15, EVS_POLICY_PODS}}, -1};
  evs_behavior_init(&s);
  s.seeded = 1;
  evs_behavior_add_recommendation(&s, &up, &down, 9, NOW);
  evs_behavior_normalize(&s, &up, &down, 9, 2, 1, 100, NOW + S(59) + 999, &r);
  assert_int_equal(r.desired, 9);
  assert_true(r.next_change_ms == NOW + S(60));
  evs_behavior_init(&s);
  s.seeded = 1;
  evs_behavior_add_recommendation(&s, &up, &down, 9, NOW);
  evs_behavior_normalize(&s, &up, &down, 9, 2, 1, 100, NOW + S(60), &r);
  assert_int_equal(r.desired, 2);
}

/* A full deque merges two neighbours keeping the value that slows scaling and the later time:
 * a scale-down can only come later than the HPA would allow it, never earlier. */
static void full_deque_merges_conservatively(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_scaling_rules_t up = {0, EVS_SELECT_MAX, 1, {{1000, 15, EVS_POLICY_PODS}}, -1};
  evs_scaling_rules_t down = {100, EVS_SELECT_MAX, 1, {{1000, 15, EVS_POLICY_PODS}}, -1};
  evs_behavior_init(&s);
  s.seeded = 1;
  /* 40, 39, ..., 1 one second apart: 40 strictly decreasing values into 12 slots. */
  for (int i = 0; i < 40; i++)
    evs_behavior_add_recommendation(&s, &up, &down, 40 - i, NOW + S(i));
  assert_int_equal(s.down_max.len, EVS_BEHAVIOR_DEQUE_CAP);
  /* At every later instant the held value is >= the exact max over the window. */
  for (int t = 40; t < 150; t++) {
    evs_behavior_state_t c = s;
    /* exact: values added at i in (t-100, 39] -> max is 40 - (first i > t - 100) */
    int first = t - 100 + 1 > 0 ? t - 100 + 1 : 0;
    int32_t exact = first <= 39 ? 40 - first : 0;
    evs_behavior_normalize(&c, &up, &down, 100, 0, 0, 1000, NOW + S(t), &r);
    assert_true(r.stabilized >= exact);
  }
}

/* Events: merged when full (sum at the later time), trimmed to the longest period on record. */
static void events_bounded(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_scaling_rules_t up = {0, EVS_SELECT_MAX, 1, {{1, 60, EVS_POLICY_PODS}}, -1};
  evs_behavior_init(&s);
  for (int i = 0; i < 30; i++)
    evs_behavior_record_scale(&s, &up, &up, i, i + 1, NOW + S(i));
  assert_true(s.up_events.len <= EVS_BEHAVIOR_EVENTS_CAP);
  /* All 30 events are within 60 s of NOW+29s: the sum must still be 30. */
  assert_int_equal(evs_behavior_change_in_period(&s.up_events, 60, NOW + S(29)), 30);
  /* 100 s later one record trims everything older than 60 s. */
  evs_behavior_record_scale(&s, &up, &up, 30, 31, NOW + S(129));
  assert_int_equal(s.up_events.len, 1);
  assert_int_equal(evs_behavior_change_in_period(&s.up_events, 60, NOW + S(129)), 1);
}

/* The first normalize seeds the history with the current count (recordInitialRecommendation):
 * a new autoscaler does not scale below what it found for one scale-down window. */
static void seeded_with_current(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_scaling_rules_t up, down;
  evs_behavior_effective(NULL, &up, &down);
  evs_behavior_init(&s);
  evs_behavior_normalize(&s, &up, &down, 10, 2, 1, 100, NOW, &r);
  assert_int_equal(r.desired, 10);
  assert_int_equal(r.stabilized_changed, 1);
  assert_true(r.next_change_ms == NOW + S(300));
}

/* Select policy Disabled: no change in that direction at all. */
static void select_disabled(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_scaling_rules_t up = {0, EVS_SELECT_DISABLED, 1, {{4, 15, EVS_POLICY_PODS}}, -1};
  evs_scaling_rules_t down = {0, EVS_SELECT_DISABLED, 1, {{100, 15, EVS_POLICY_PERCENT}}, -1};
  evs_behavior_init(&s);
  s.seeded = 1;
  evs_behavior_normalize(&s, &up, &down, 5, 50, 1, 100, NOW, &r);
  assert_int_equal(r.desired, 5);
  evs_behavior_normalize(&s, &up, &down, 5, 1, 1, 100, NOW + S(1), &r);
  assert_int_equal(r.desired, 5);
}

/* Percent scale-down truncates, e.g. 10 % of 80 every 60 s: 72, then 64 once the 8 are older
 * than 60 s (hpa-and-peers-facts.md section 1.5, derived from horizontal.go). */
static void percent_down_truncates(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_scaling_rules_t up = {0, EVS_SELECT_MAX, 1, {{4, 15, EVS_POLICY_PODS}}, -1};
  evs_scaling_rules_t down = {0, EVS_SELECT_MAX, 1, {{10, 60, EVS_POLICY_PERCENT}}, -1};
  evs_behavior_init(&s);
  s.seeded = 1;
  evs_behavior_normalize(&s, &up, &down, 80, 1, 1, 100, NOW, &r);
  assert_int_equal(r.desired, 72);
  evs_behavior_record_scale(&s, &up, &down, 80, 72, NOW);
  evs_behavior_normalize(&s, &up, &down, 72, 1, 1, 100, NOW + S(30), &r);
  assert_int_equal(r.desired, 72); /* start of period 80 -> 72 again: no further */
  assert_true(r.next_change_ms == NOW + S(60));
  evs_behavior_normalize(&s, &up, &down, 72, 1, 1, 100, NOW + S(60), &r);
  assert_int_equal(r.desired, 64); /* int32(72 x 0.9) = 64 */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_when_absent),
      cmocka_unit_test(partial_rules_keep_defaults),
      cmocka_unit_test(deque_is_monotonic),
      cmocka_unit_test(window_expiry_exact),
      cmocka_unit_test(full_deque_merges_conservatively),
      cmocka_unit_test(events_bounded),
      cmocka_unit_test(seeded_with_current),
      cmocka_unit_test(select_disabled),
      cmocka_unit_test(percent_down_truncates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
