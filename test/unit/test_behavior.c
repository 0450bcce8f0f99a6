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
  assert_int_equal(s.len[EVS_BEHAVIOR_DOWN_MAX], 3);
  assert_int_equal(evs_behavior_list(&s, EVS_BEHAVIOR_DOWN_MAX)[0].v, 7);
  evs_behavior_free(&s);
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
  evs_behavior_free(&s);
  s.seeded = 1;
  evs_behavior_add_recommendation(&s, &up, &down, 9, NOW);
  evs_behavior_normalize(&s, &up, &down, 9, 2, 1, 100, NOW + S(60), &r);
  assert_int_equal(r.desired, 2);
  evs_behavior_free(&s);
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
  assert_int_equal(s.len[EVS_BEHAVIOR_DOWN_MAX], EVS_BEHAVIOR_DEQUE_CAP);
  /* At every later instant the held value is >= the exact max over the window. */
  for (int t = 40; t < 150; t++) {
    evs_behavior_state_t c;
    assert_int_equal(evs_behavior_copy(&c, &s), 0);
    /* exact: values added at i in (t-100, 39] -> max is 40 - (first i > t - 100) */
    int first = t - 100 + 1 > 0 ? t - 100 + 1 : 0;
    int32_t exact = first <= 39 ? 40 - first : 0;
    evs_behavior_normalize(&c, &up, &down, 100, 0, 0, 1000, NOW + S(t), &r);
    assert_true(r.stabilized >= exact);
    evs_behavior_free(&c);
  }
  evs_behavior_free(&s);
}

/* Events: merged when full (sum at the later time), trimmed to the longest period on record. */
static void events_bounded(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_scaling_rules_t up = {0, EVS_SELECT_MAX, 1, {{1, 60, EVS_POLICY_PODS}}, -1};
  evs_behavior_init(&s);
  for (int i = 0; i < 30; i++)
    evs_behavior_record_scale(&s, &up, &up, i, i + 1, NOW + S(i));
  assert_true(s.len[EVS_BEHAVIOR_UP_EVENTS] <= EVS_BEHAVIOR_EVENTS_CAP);
  /* All 30 events are within 60 s of NOW+29s: the sum must still be 30. */
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 60, NOW + S(29)), 30);
  /* 100 s later one record trims everything older than 60 s. */
  evs_behavior_record_scale(&s, &up, &up, 30, 31, NOW + S(129));
  assert_int_equal(s.len[EVS_BEHAVIOR_UP_EVENTS], 1);
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 60, NOW + S(129)), 1);
  evs_behavior_free(&s);
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
  evs_behavior_free(&s);
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
  evs_behavior_free(&s);
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
  evs_behavior_free(&s);
}

/* The history takes room only for what it holds (issue 13): no block while empty, growth past
 * the first entries as recommendations pile up in the window, the room handed back once the
 * window lets them go. Growth must not change an answer: each stabilized value equals the HPA's
 * linear scan over every recommendation still in the window (no merge below 12 entries). */
static void history_grows_and_shrinks(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_scaling_rules_t up = {0, EVS_SELECT_MAX, 1, {{1000, 15, EVS_POLICY_PODS}}, -1};
  evs_scaling_rules_t down = {100, EVS_SELECT_MAX, 1, {{1000, 15, EVS_POLICY_PODS}}, -1};
  evs_behavior_init(&s);
  assert_null(s.e);
  s.seeded = 1;
  /* 11 decisions one second apart, each wanting less than the one before: the max-list keeps
   * them all (with the previous one recorded again at each decision, never more than 11). */
  int32_t recs[11];
  for (int i = 0; i < 11; i++) {
    recs[i] = 50 - 3 * i;
    evs_behavior_normalize(&s, &up, &down, 60, recs[i], 1, 100, NOW + S(i), &r);
    int32_t exact = recs[0]; /* all within 100 s: the max is the first */
    assert_int_equal(r.stabilized, exact);
    assert_int_equal(s.len[EVS_BEHAVIOR_DOWN_MAX], i + 1);
    assert_true(s.cap[EVS_BEHAVIOR_DOWN_MAX] >= s.len[EVS_BEHAVIOR_DOWN_MAX]);
    assert_true(s.cap[EVS_BEHAVIOR_DOWN_MAX] <= EVS_BEHAVIOR_DEQUE_CAP);
    assert_true(s.cap[EVS_BEHAVIOR_DOWN_MAX] < 4 * (s.len[EVS_BEHAVIOR_DOWN_MAX] + 1));
  }
  assert_int_equal(s.cap[EVS_BEHAVIOR_DOWN_MAX], EVS_BEHAVIOR_DEQUE_CAP);
  /* Then the window slides over them one by one: the answer is the linear scan's at each
   * instant, and the room follows the length down. */
  for (int t = 101; t <= 111; t++) {
    int32_t want = recs[10];
    evs_behavior_normalize(&s, &up, &down, 60, want, 1, 100, NOW + S(t), &r);
    /* Each recommendation was last in force (recorded again) at the next decision. */
    int32_t exact = want;
    for (int i = 0; i < 11; i++)
      if (NOW + S(i < 10 ? i + 1 : t) > NOW + S(t) - S(100) && recs[i] > exact)
        exact = recs[i];
    assert_int_equal(r.stabilized, exact);
    assert_true(s.cap[EVS_BEHAVIOR_DOWN_MAX] >= s.len[EVS_BEHAVIOR_DOWN_MAX]);
    assert_true(s.cap[EVS_BEHAVIOR_DOWN_MAX] < 4 * (s.len[EVS_BEHAVIOR_DOWN_MAX] + 1));
  }
  assert_int_equal(s.len[EVS_BEHAVIOR_DOWN_MAX], 1);
  assert_true(s.cap[EVS_BEHAVIOR_DOWN_MAX] <= 2);
  /* Events: many in one period, then one record past the period trims them to one. */
  for (int i = 0; i < 9; i++)
    evs_behavior_record_scale(&s, &up, &down, 10 + i, 11 + i, NOW + S(200 + i));
  assert_int_equal(s.len[EVS_BEHAVIOR_UP_EVENTS], 9);
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 15, NOW + S(208)), 9);
  evs_behavior_record_scale(&s, &up, &down, 19, 20, NOW + S(300));
  assert_int_equal(s.len[EVS_BEHAVIOR_UP_EVENTS], 1);
  assert_true(s.cap[EVS_BEHAVIOR_UP_EVENTS] <= 2);
  /* The lists after a grown one kept their entries through every move of the block. */
  assert_int_equal(evs_behavior_list(&s, EVS_BEHAVIOR_UP_EVENTS)[0].v, 1);
  assert_true(evs_behavior_list(&s, EVS_BEHAVIOR_UP_EVENTS)[0].t_ms == NOW + S(300));
  assert_int_equal(evs_behavior_list(&s, EVS_BEHAVIOR_DOWN_MAX)[0].v, recs[10]);
  evs_behavior_free(&s);
  assert_null(s.e);
  assert_int_equal(s.len[EVS_BEHAVIOR_DOWN_MAX], 0);
}

/* Past the fixed bound the lists merge exactly as before (12 entries at most), and a history
 * whose every list empties gives its block back. */
static void history_full_then_empty(void **state) {
  (void)state;
  evs_behavior_state_t s, c;
  evs_scaling_rules_t up = {10, EVS_SELECT_MAX, 1, {{1, 60, EVS_POLICY_PODS}}, -1};
  evs_scaling_rules_t down = {100, EVS_SELECT_MAX, 1, {{1, 60, EVS_POLICY_PODS}}, -1};
  evs_behavior_init(&s);
  for (int i = 0; i < 30; i++) {
    evs_behavior_add_recommendation(&s, &up, &down, 100 - i, NOW + S(i));
    evs_behavior_add_event(&s, 0, 1, NOW + S(i));
    evs_behavior_add_event(&s, 1, 2, NOW + S(i));
  }
  for (int k = 0; k < EVS_BEHAVIOR__LISTS; k++) {
    assert_true(s.len[k] <= EVS_BEHAVIOR_DEQUE_CAP);
    assert_true(s.cap[k] <= EVS_BEHAVIOR_DEQUE_CAP);
  }
  assert_int_equal(s.len[EVS_BEHAVIOR_DOWN_MAX], EVS_BEHAVIOR_DEQUE_CAP);
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 60, NOW + S(29)), 60); /* folded, kept */
  assert_int_equal(evs_behavior_change_in_period(&s, 0, 60, NOW + S(29)), 30);
  /* A copy is independent of the original. */
  assert_int_equal(evs_behavior_copy(&c, &s), 0);
  assert_ptr_not_equal(c.e, s.e);
  evs_behavior_free(&s);
  assert_int_equal(c.len[EVS_BEHAVIOR_DOWN_MAX], EVS_BEHAVIOR_DEQUE_CAP);
  assert_int_equal(evs_behavior_list(&c, EVS_BEHAVIOR_DOWN_MAX)[0].v, 100);
  /* Everything out of its window and period: each list is emptied by its next record (events
   * by a record of the other direction's list staying), the block shrinks with them. */
  evs_behavior_record_scale(&c, &up, &down, 5, 6, NOW + S(1000));
  evs_behavior_record_scale(&c, &up, &down, 6, 5, NOW + S(1000));
  evs_behavior_add_recommendation(&c, &up, &down, 7, NOW + S(1000));
  for (int k = 0; k < EVS_BEHAVIOR__LISTS; k++) {
    assert_int_equal(c.len[k], 1);
    assert_true(c.cap[k] <= 2);
  }
  evs_behavior_free(&c);
  /* An empty history copies to an empty one, without a block. */
  evs_behavior_init(&s);
  assert_int_equal(evs_behavior_copy(&c, &s), 0);
  assert_null(c.e);
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
      cmocka_unit_test(history_grows_and_shrinks),
      cmocka_unit_test(history_full_then_empty),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
