/* evs_ratelimit: the pure bucket with injected time, then the loop limiter: priority order,
 * FIFO within a priority, pacing at qps, cancel and close (every callback exactly once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "evscale/error.h"
#include "evscale/ratelimit.h"
#include "net_helpers.h"

static void test_bucket_burst_then_rate(void **state) {
  (void)state;
  evs_ratelimit_bucket_t b;
  evs_ratelimit_bucket_init(&b, 10, 3, 1000);
  for (int i = 0; i < 3; i++)
    assert_int_equal(evs_ratelimit_bucket_take(&b, 1000), 1);
  assert_int_equal(evs_ratelimit_bucket_take(&b, 1000), 0);
  assert_int_equal(evs_ratelimit_bucket_wait(&b, 1000), 100);
  assert_int_equal(evs_ratelimit_bucket_wait(&b, 1050), 50);
  assert_int_equal(evs_ratelimit_bucket_take(&b, 1099), 0);
  assert_int_equal(evs_ratelimit_bucket_take(&b, 1100), 1);
  /* A long pause refills to burst, not beyond. */
  int n = 0;
  while (evs_ratelimit_bucket_take(&b, 100000))
    n++;
  assert_int_equal(n, 3);
  /* Time going backwards (a clock step) takes nothing and gives nothing. */
  assert_int_equal(evs_ratelimit_bucket_take(&b, 50), 0);
}

static void test_bucket_unlimited_and_set(void **state) {
  (void)state;
  evs_ratelimit_bucket_t b;
  evs_ratelimit_bucket_init(&b, 0, 1, 0);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(evs_ratelimit_bucket_take(&b, 0), 1);
  assert_int_equal(evs_ratelimit_bucket_wait(&b, 0), 0);
  evs_ratelimit_bucket_init(&b, 1, 10, 0);
  evs_ratelimit_bucket_set(&b, 1, 2, 0); /* shrinking the burst caps the tokens */
  assert_int_equal(evs_ratelimit_bucket_take(&b, 0), 1);
  assert_int_equal(evs_ratelimit_bucket_take(&b, 0), 1);
  assert_int_equal(evs_ratelimit_bucket_take(&b, 0), 0);
  assert_int_equal(evs_ratelimit_bucket_wait(&b, 0), 1000);
}

typedef struct {
  char order[64];
  int n;
  int canceled;
  uint64_t times[64];
  uv_loop_t *loop;
} rec_t;

typedef struct {
  rec_t *rec;
  char tag;
} tag_t;

static void on_grant(evs_ratelimit_req_t *req, int status, void *arg) {
  (void)req;
  tag_t *t = arg;
  if (status == EVS_ECANCELED) {
    t->rec->canceled++;
    return;
  }
  assert_int_equal(status, 0);
  t->rec->times[t->rec->n] = uv_now(t->rec->loop);
  t->rec->order[t->rec->n++] = t->tag;
}

static void closed(void *arg) { *(int *)arg = 1; }

/* Burst 1 at 20 qps: one token now, then one per 50 ms. Queued LOW, NORMAL, HIGH, LOW, HIGH:
 * grants go H, H, N, L, L whatever the arrival order, spaced by the rate. */
static void test_priorities(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  rec_t rec = {.loop = &loop};
  evs_ratelimit_t *rl;
  assert_int_equal(evs_ratelimit_new(&loop, 20, 1, &rl), 0);
  /* Use the one burst token so everything below has to wait. */
  tag_t first = {&rec, 'f'};
  assert_int_equal(evs_ratelimit_acquire(rl, EVS_PRIO_LOW, on_grant, &first, NULL), 0);
  assert_int_equal(rec.n, 0); /* never inside acquire */
  int done = 0;
  while (rec.n < 1)
    uv_run(&loop, UV_RUN_NOWAIT);
  tag_t t[] = {{&rec, 'L'}, {&rec, 'N'}, {&rec, 'H'}, {&rec, 'l'}, {&rec, 'h'}};
  evs_prio_t p[] = {EVS_PRIO_LOW, EVS_PRIO_NORMAL, EVS_PRIO_HIGH, EVS_PRIO_LOW, EVS_PRIO_HIGH};
  for (int i = 0; i < 5; i++)
    assert_int_equal(evs_ratelimit_acquire(rl, p[i], on_grant, &t[i], NULL), 0);
  assert_int_equal(evs_ratelimit_waiting(rl, EVS_PRIO_HIGH), 2);
  uint64_t t0 = uv_now(&loop);
  while (rec.n < 6)
    uv_run(&loop, UV_RUN_ONCE);
  rec.order[rec.n] = '\0';
  assert_string_equal(rec.order, "fHhNLl");
  /* Five tokens at 20 qps take at least ~250 ms after the burst was spent (timer slack aside). */
  assert_true(rec.times[5] - t0 >= 200);
  evs_ratelimit_close(rl, closed, &done);
  assert_true(evs_test_run_until(&loop, &done, 5000));
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_cancel_and_close(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  rec_t rec = {.loop = &loop};
  evs_ratelimit_t *rl;
  assert_int_equal(evs_ratelimit_new(&loop, 1, 1, &rl), 0);
  tag_t a = {&rec, 'a'}, b = {&rec, 'b'}, c = {&rec, 'c'};
  evs_ratelimit_req_t *rb;
  assert_int_equal(evs_ratelimit_acquire(rl, EVS_PRIO_NORMAL, on_grant, &a, NULL), 0);
  assert_int_equal(evs_ratelimit_acquire(rl, EVS_PRIO_NORMAL, on_grant, &b, &rb), 0);
  assert_int_equal(evs_ratelimit_acquire(rl, EVS_PRIO_LOW, on_grant, &c, NULL), 0);
  evs_ratelimit_cancel(rb);
  assert_int_equal(rec.canceled, 1);
  /* NOWAIT: UV_RUN_ONCE would sleep in poll until c's timer and grant it too. */
  while (rec.n < 1)
    uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(rec.order[0], 'a');
  /* c waits a second for its token; closing cancels it. */
  int done = 0;
  evs_ratelimit_close(rl, closed, &done);
  assert_int_equal(rec.canceled, 2);
  assert_true(evs_test_run_until(&loop, &done, 5000));
  assert_int_equal(rec.n, 1);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_invalid(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_ratelimit_t *rl;
  assert_int_equal(evs_ratelimit_new(&loop, 5, 5, &rl), 0);
  assert_int_equal(evs_ratelimit_acquire(rl, (evs_prio_t)7, on_grant, NULL, NULL), UV_EINVAL);
  assert_int_equal(evs_ratelimit_acquire(rl, EVS_PRIO_LOW, NULL, NULL, NULL), UV_EINVAL);
  int done = 0;
  evs_ratelimit_close(rl, closed, &done);
  assert_true(evs_test_run_until(&loop, &done, 5000));
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket_burst_then_rate),
      cmocka_unit_test(test_bucket_unlimited_and_set),
      cmocka_unit_test(test_priorities),
      cmocka_unit_test(test_cancel_and_close),
      cmocka_unit_test(test_invalid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
