/* evs_procstat_read_cached: a reading is reused while younger than max_age_ms on the caller's
 * clock, read again after (issue 9: pipelined /metrics floods must not read /proc each time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "evscale/procstat.h"

#define NFDS 5

static void open_fds(int *fds) {
  for (int i = 0; i < NFDS; i++) {
    fds[i] = open("/dev/null", O_RDONLY);
    assert_true(fds[i] >= 0);
  }
}

static void close_fds(const int *fds) {
  for (int i = 0; i < NFDS; i++)
    close(fds[i]);
}

static void test_reused_while_fresh(void **state) {
  (void)state;
  evs_procstat_cache_t cache = {.max_age_ms = 1000};
  evs_procstat_t a, b, c;
  int fds[NFDS];
  assert_int_equal(evs_procstat_read_cached(&cache, 5000, &a), 0);
  open_fds(fds);
  /* 999 ms later on the caller's clock: the same reading, though NFDS more files are open. */
  assert_int_equal(evs_procstat_read_cached(&cache, 5999, &b), 0);
  assert_true(b.open_fds == a.open_fds);
  assert_true(b.resident_bytes == a.resident_bytes);
  /* At max_age_ms it is read again and sees them. */
  assert_int_equal(evs_procstat_read_cached(&cache, 6000, &c), 0);
  assert_true(c.open_fds >= a.open_fds + NFDS);
  close_fds(fds);
}

static void test_clock_going_back_reads_again(void **state) {
  (void)state;
  evs_procstat_cache_t cache = {.max_age_ms = 60000};
  evs_procstat_t a, b;
  int fds[NFDS];
  assert_int_equal(evs_procstat_read_cached(&cache, 10000, &a), 0);
  open_fds(fds);
  assert_int_equal(evs_procstat_read_cached(&cache, 9000, &b), 0);
  assert_true(b.open_fds >= a.open_fds + NFDS);
  close_fds(fds);
}

static void test_zero_age_always_reads(void **state) {
  (void)state;
  evs_procstat_cache_t cache = {.max_age_ms = 0};
  evs_procstat_t a, b;
  int fds[NFDS];
  assert_int_equal(evs_procstat_read_cached(&cache, 1, &a), 0);
  open_fds(fds);
  assert_int_equal(evs_procstat_read_cached(&cache, 1, &b), 0);
  assert_true(b.open_fds >= a.open_fds + NFDS);
  close_fds(fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reused_while_fresh),
      cmocka_unit_test(test_clock_going_back_reads_again),
      cmocka_unit_test(test_zero_age_always_reads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
