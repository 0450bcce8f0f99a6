/* Behavior history when its block cannot grow or shrink (out of memory): the new entry merges
 * into the newest of its list the conservative way (a recommendation keeps the value that slows
 * scaling at the later time; an event is summed at the later time), so the answer can only come
 * later than the HPA's, never earlier; a failed shrink keeps the larger block. behavior.c is
 * included with its realloc replaced (STYLE.md: unit tests of static code may include the .c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static int fail_realloc; /* realloc returns NULL while set */

static void *oom_realloc(void *p, size_t n) { return fail_realloc ? NULL : realloc(p, n); }

#define realloc oom_realloc
#include "../../src/scale/behavior.c"
#undef realloc

#define NOW 5000000000LL
#define S(x) ((int64_t)(x)*1000)

static const evs_scaling_rules_t up = {0, EVS_SELECT_MAX, 1, {{1000, 15, EVS_POLICY_PODS}}, -1};
static const evs_scaling_rules_t down = {300, EVS_SELECT_MAX, 1, {{1000, 15, EVS_POLICY_PODS}}, -1};

/* The down window's list holds 10 (cap 1); 8 comes and the block cannot grow: 8 is folded into
 * 10 at the later time, so a scale-down to 8 waits for 300 s after 8, not after 10. */
static void recommendation_merges_into_newest(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_behavior_init(&s);
  s.seeded = 1;
  evs_behavior_add_recommendation(&s, &up, &down, 10, NOW);
  assert_int_equal(s.cap[EVS_BEHAVIOR_DOWN_MAX], 1);
  fail_realloc = 1;
  evs_behavior_add_recommendation(&s, &up, &down, 8, NOW + S(1));
  assert_int_equal(s.len[EVS_BEHAVIOR_DOWN_MAX], 1);
  assert_int_equal(evs_behavior_list(&s, EVS_BEHAVIOR_DOWN_MAX)[0].v, 10);
  assert_true(evs_behavior_list(&s, EVS_BEHAVIOR_DOWN_MAX)[0].t_ms == NOW + S(1));
  fail_realloc = 0;
  /* The HPA would let 10 go at NOW + 300 s; the merged history holds it until NOW + 301 s. */
  evs_behavior_normalize(&s, &up, &down, 10, 2, 1, 100, NOW + S(300.5), &r);
  assert_int_equal(r.stabilized, 10);
  evs_behavior_normalize(&s, &up, &down, 10, 2, 1, 100, NOW + S(301), &r);
  assert_int_equal(r.stabilized, 2);
  evs_behavior_free(&s);
}

/* Events fold into the newest one, summed at the later time: the policies count them longer. */
static void event_sums_into_newest(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_init(&s);
  evs_behavior_add_event(&s, 1, 2, NOW);
  fail_realloc = 1;
  evs_behavior_add_event(&s, 1, 3, NOW + S(10));
  fail_realloc = 0;
  assert_int_equal(s.len[EVS_BEHAVIOR_UP_EVENTS], 1);
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 15, NOW + S(20)), 5);
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 15, NOW + S(25)), 0);
  evs_behavior_free(&s);
}

/* An empty list that cannot get room loses that one entry and nothing else breaks. */
static void empty_history_cannot_grow(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_result_t r;
  evs_behavior_init(&s);
  fail_realloc = 1;
  evs_behavior_add_recommendation(&s, &up, &down, 10, NOW);
  evs_behavior_add_event(&s, 0, 1, NOW);
  evs_behavior_normalize(&s, &up, &down, 5, 7, 1, 100, NOW, &r);
  fail_realloc = 0;
  assert_null(s.e);
  for (int k = 0; k < EVS_BEHAVIOR__LISTS; k++)
    assert_int_equal(s.len[k], 0);
  assert_int_equal(r.desired, 7);
  evs_behavior_free(&s);
}

/* A shrink that cannot get its smaller block keeps the larger one; the lists after the shrunk
 * one move down inside it and stay whole. */
static void failed_shrink_keeps_block(void **state) {
  (void)state;
  evs_behavior_state_t s;
  evs_behavior_init(&s);
  for (int i = 0; i < 8; i++)
    evs_behavior_add_event(&s, 1, 1, NOW + S(i));
  evs_behavior_add_event(&s, 0, 3, NOW + S(95));
  evs_behavior_add_recommendation(&s, &up, &down, 4, NOW + S(7));
  assert_int_equal(s.cap[EVS_BEHAVIOR_UP_EVENTS], 8);
  fail_realloc = 1;
  evs_behavior_record_scale(&s, &up, &down, 4, 5, NOW + S(100)); /* trims the 8 to 1 */
  fail_realloc = 0;
  assert_int_equal(s.len[EVS_BEHAVIOR_UP_EVENTS], 1);
  assert_true(s.cap[EVS_BEHAVIOR_UP_EVENTS] <= 2);
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 15, NOW + S(100)), 1);
  assert_int_equal(evs_behavior_change_in_period(&s, 0, 15, NOW + S(100)), 3);
  assert_int_equal(evs_behavior_list(&s, EVS_BEHAVIOR_DOWN_MAX)[0].v, 4);
  /* Growth afterwards works from the recorded sizes. */
  for (int i = 0; i < 6; i++)
    evs_behavior_add_event(&s, 1, 2, NOW + S(101 + i));
  assert_int_equal(evs_behavior_change_in_period(&s, 1, 15, NOW + S(106)), 13);
  assert_int_equal(evs_behavior_change_in_period(&s, 0, 15, NOW + S(106)), 3);
  assert_int_equal(evs_behavior_list(&s, EVS_BEHAVIOR_DOWN_MAX)[0].v, 4);
  evs_behavior_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(recommendation_merges_into_newest),
      cmocka_unit_test(event_sums_into_newest),
      cmocka_unit_test(empty_history_cannot_grow),
      cmocka_unit_test(failed_shrink_keeps_block),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
