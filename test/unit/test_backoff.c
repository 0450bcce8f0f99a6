/* evs_backoff: the exponential ceiling, the two jitters' bounds, the cap, reset, defaults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>

#include "evscale/backoff.h"

static void test_no_jitter_sequence(void **state) {
  (void)state;
  evs_backoff_t b;
  evs_backoff_init(&b, 0, 0, EVS_BACKOFF_NONE); /* the defaults: 500 ms, 60 s */
  const uint64_t want[] = {500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_int_equal(evs_backoff_next(&b, 0.5), want[i]);
  evs_backoff_reset(&b);
  assert_int_equal(evs_backoff_next(&b, 0.5), 500);
}

static void test_full_jitter_bounds(void **state) {
  (void)state;
  evs_backoff_t b;
  evs_backoff_init(&b, 500, 60000, EVS_BACKOFF_FULL);
  /* u scales the ceiling: 0 gives 0, just under 1 gives just under the ceiling. */
  assert_int_equal(evs_backoff_next(&b, 0.0), 0);
  assert_int_equal(evs_backoff_ceiling(&b), 1000);
  assert_int_equal(evs_backoff_next(&b, 0.5), 500);
  uint64_t d = evs_backoff_next(&b, 0.9999);
  assert_true(d >= 1999 && d <= 2000);
  for (int i = 0; i < 40; i++)
    assert_true(evs_backoff_next(&b, 0.999999) <= 60000);
  assert_int_equal(evs_backoff_ceiling(&b), 60000);
}

static void test_decorrelated_bounds(void **state) {
  (void)state;
  evs_backoff_t b;
  evs_backoff_init(&b, 500, 60000, EVS_BACKOFF_DECORRELATED);
  /* Always at least initial, at most 3x the previous delay, never above max. */
  uint64_t prev = 500;
  double us[] = {0.0, 0.3, 0.99, 0.5, 0.99, 0.99, 0.99, 0.99, 0.99, 0.1, 0.99};
  for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
    uint64_t d = evs_backoff_next(&b, us[i]);
    assert_true(d >= 500);
    assert_true(d <= prev * 3);
    assert_true(d <= 60000);
    prev = d;
  }
  assert_int_equal(evs_backoff_next(&b, 0.0), 500);
  evs_backoff_reset(&b);
  assert_true(evs_backoff_next(&b, 0.99) <= 1500);
}

static void test_bad_random_clamped(void **state) {
  (void)state;
  evs_backoff_t b;
  evs_backoff_init(&b, 100, 1000, EVS_BACKOFF_FULL);
  assert_int_equal(evs_backoff_next(&b, -1.0), 0);
  assert_true(evs_backoff_next(&b, 7.0) < 200);
  assert_int_equal(evs_backoff_next(&b, 0.0 / 0.0), 0);
}

static void test_max_below_initial(void **state) {
  (void)state;
  evs_backoff_t b;
  evs_backoff_init(&b, 5000, 1000, EVS_BACKOFF_NONE);
  assert_int_equal(evs_backoff_next(&b, 0.5), 5000);
  assert_int_equal(evs_backoff_next(&b, 0.5), 5000);
}

/* A very long outage: the attempt counter keeps growing, the delay stays at max, no overflow. */
static void test_long_outage(void **state) {
  (void)state;
  evs_backoff_t b;
  evs_backoff_init(&b, 500, 60000, EVS_BACKOFF_NONE);
  for (int i = 0; i < 100000; i++)
    evs_backoff_next(&b, 0.5);
  assert_int_equal(evs_backoff_next(&b, 0.5), 60000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_jitter_sequence),  cmocka_unit_test(test_full_jitter_bounds),
      cmocka_unit_test(test_decorrelated_bounds), cmocka_unit_test(test_bad_random_clamped),
      cmocka_unit_test(test_max_below_initial),   cmocka_unit_test(test_long_outage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
