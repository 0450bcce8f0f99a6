/* evs_timerq: order by due time then start order, stop/restart from callbacks, arbitrary
 * removal, a pass that never runs what its own callbacks started, 100k entries, close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/list.h"
#include "evscale/timerq.h"

typedef struct fx_s fx_t;

typedef struct {
  evs_timerq_entry_t e;
  fx_t *fx;
  int id;
  int fired;
  int restart_left; /* restart itself with `restart_ms` this many times */
  uint64_t restart_ms;
  int stop_id;       /* stop entry stop_id when fired (-1: none) */
  uint64_t fired_at; /* uv_now when it last fired */
} item_t;

struct fx_s {
  uv_loop_t loop;
  evs_timerq_t *q;
  item_t *items;
  int n;
  int *order; /* ids in firing order */
  int fired;
  int cap;
  int closed;
};

static void fx_init(fx_t *fx, int n) {
  memset(fx, 0, sizeof *fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(evs_timerq_new(&fx->loop, &fx->q), 0);
  fx->items = calloc((size_t)n, sizeof *fx->items);
  fx->cap = n * 4 + 16;
  fx->order = calloc((size_t)fx->cap, sizeof *fx->order);
  assert_non_null(fx->items);
  assert_non_null(fx->order);
  fx->n = n;
  for (int i = 0; i < n; i++) {
    fx->items[i].fx = fx;
    fx->items[i].id = i;
    fx->items[i].stop_id = -1;
  }
}

static void on_closed(void *arg) { ((fx_t *)arg)->closed++; }

static void fx_free(fx_t *fx) {
  evs_timerq_close(fx->q, on_closed, fx);
  assert_int_equal(fx->closed, 0); /* asynchronous */
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->closed, 1);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  free(fx->items);
  free(fx->order);
}

static void on_fire(evs_timerq_entry_t *e) {
  item_t *it = evs_container_of(e, item_t, e);
  fx_t *fx = it->fx;
  assert_false(evs_timerq_active(e));
  it->fired++;
  it->fired_at = uv_now(&fx->loop);
  if (fx->fired < fx->cap)
    fx->order[fx->fired] = it->id;
  fx->fired++;
  if (it->stop_id >= 0)
    evs_timerq_stop(fx->q, &fx->items[it->stop_id].e);
  if (it->restart_left > 0) {
    it->restart_left--;
    assert_int_equal(evs_timerq_start(fx->q, e, on_fire, it->restart_ms), 0);
  }
}

static void start(fx_t *fx, int id, uint64_t ms) {
  assert_int_equal(evs_timerq_start(fx->q, &fx->items[id].e, on_fire, ms), 0);
}

/* Due order, whatever the start order. */
static void test_order_by_due(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, 5);
  uint64_t ms[5] = {40, 10, 30, 0, 20};
  for (int i = 0; i < 5; i++)
    start(&fx, i, ms[i]);
  assert_int_equal(evs_timerq_size(fx.q), 5);
  assert_int_equal(fx.fired, 0); /* never from inside start */
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  int want[5] = {3, 1, 4, 2, 0};
  assert_int_equal(fx.fired, 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(fx.order[i], want[i]);
  assert_int_equal(evs_timerq_size(fx.q), 0);
  fx_free(&fx);
}

/* Equal due times fire in start order; a restart counts as a new start. */
static void test_equal_due_start_order(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, 64);
  for (int i = 0; i < 64; i++)
    start(&fx, (i * 37) % 64, 5);
  start(&fx, 7, 5); /* moved behind every other */
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.fired, 64);
  int k = 0;
  for (int i = 0; i < 64; i++)
    if ((i * 37) % 64 != 7)
      assert_int_equal(fx.order[k++], (i * 37) % 64);
  assert_int_equal(fx.order[63], 7);
  fx_free(&fx);
}

/* A callback stops another entry due in the same pass, and one due later: neither fires. */
static void test_stop_from_callback(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, 3);
  fx.items[0].stop_id = 1;
  start(&fx, 0, 5);
  start(&fx, 1, 5); /* same due time, after 0 */
  start(&fx, 2, 30);
  fx.items[2].stop_id = 2; /* stopping itself after firing is a no-op */
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.items[0].fired, 1);
  assert_int_equal(fx.items[1].fired, 0);
  assert_int_equal(fx.items[2].fired, 1);
  fx_free(&fx);
}

/* A callback restarts its own entry (a repeating timer); a restart with 0 goes behind every
 * entry already due (another entry due now fires in between), and only the restart keeps it
 * queued. */
static void test_restart_from_callback(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, 2);
  fx.items[0].restart_left = 3;
  fx.items[0].restart_ms = 0;
  start(&fx, 0, 0);
  start(&fx, 1, 0);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.items[0].fired, 4);
  assert_int_equal(fx.items[1].fired, 1);
  int want[5] = {0, 1, 0, 0, 0};
  for (int i = 0; i < 5; i++)
    assert_int_equal(fx.order[i], want[i]);
  assert_false(evs_timerq_active(&fx.items[0].e));
  fx_free(&fx);
}

/* A restart moves an entry later or earlier; stop on an unqueued entry does nothing. */
static void test_restart_moves(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, 3);
  start(&fx, 0, 10);
  start(&fx, 1, 20);
  start(&fx, 2, 30);
  start(&fx, 0, 40); /* later */
  start(&fx, 2, 1);  /* earlier */
  evs_timerq_stop(fx.q, &fx.items[1].e);
  evs_timerq_stop(fx.q, &fx.items[1].e);
  assert_int_equal(evs_timerq_size(fx.q), 2);
  assert_int_equal(evs_timerq_due(&fx.items[1].e), 0);
  assert_true(evs_timerq_due(&fx.items[0].e) >= uv_now(&fx.loop) + 40);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.fired, 2);
  assert_int_equal(fx.order[0], 2);
  assert_int_equal(fx.order[1], 0);
  fx_free(&fx);
}

/* Removal of arbitrary entries keeps the heap ordered: every other entry of 1000 random due
 * times is stopped (and its memory reused at once), the rest fire in (due, start) order. */
static void test_remove_arbitrary(void **state) {
  (void)state;
  enum { N = 1000 };
  fx_t fx;
  fx_init(&fx, N);
  srand(13);
  uint64_t due[N];
  for (int i = 0; i < N; i++) {
    due[i] = (uint64_t)(rand() % 50);
    start(&fx, i, due[i]);
  }
  for (int i = 0; i < N; i += 2) {
    evs_timerq_stop(fx.q, &fx.items[i].e);
    memset(&fx.items[i].e, 0xA5, sizeof fx.items[i].e); /* nothing of the queue refers to it */
    evs_timerq_entry_init(&fx.items[i].e);
  }
  assert_int_equal(evs_timerq_size(fx.q), N / 2);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.fired, N / 2);
  for (int k = 1; k < N / 2; k++) {
    int a = fx.order[k - 1], b = fx.order[k];
    assert_true(a % 2 == 1 && b % 2 == 1);
    assert_true(due[a] < due[b] || (due[a] == due[b] && a < b));
  }
  fx_free(&fx);
}

/* 100k entries: all fire once, in order, and start/stop stay cheap (the whole test is a few
 * hundred ms under ASan; a linear queue would take minutes). */
static void test_100k(void **state) {
  (void)state;
  enum { N = 100000 };
  fx_t fx;
  fx_init(&fx, N);
  for (int i = 0; i < N; i++)
    start(&fx, i, (uint64_t)((i * 7919) % 100));
  for (int i = 0; i < N; i += 10) /* restart a tenth */
    start(&fx, i, 100 + (uint64_t)(i % 7));
  for (int i = 5; i < N; i += 10) /* stop another tenth */
    evs_timerq_stop(fx.q, &fx.items[i].e);
  assert_int_equal(evs_timerq_size(fx.q), N - N / 10);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.fired, N - N / 10);
  for (int i = 0; i < N; i++)
    assert_int_equal(fx.items[i].fired, i % 10 == 5 ? 0 : 1);
  fx_free(&fx);
}

/* An empty queue keeps no loop alive; a queued entry does. */
static void test_loop_alive(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, 1);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_NOWAIT), 0);
  start(&fx, 0, 1000);
  assert_true(uv_loop_alive(&fx.loop));
  evs_timerq_stop(fx.q, &fx.items[0].e);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.fired, 0);
  fx_free(&fx);
}

/* Closing from a callback: no other entry fires, later starts are refused, queued entries are
 * forgotten (freed before the close completes), the close callback runs once, later. */
static item_t *g_closer;
static void on_fire_close(evs_timerq_entry_t *e) {
  item_t *it = evs_container_of(e, item_t, e);
  it->fired++;
  evs_timerq_close(it->fx->q, on_closed, it->fx);
  evs_timerq_close(it->fx->q, on_closed, it->fx); /* a second call does nothing */
  assert_int_equal(evs_timerq_start(it->fx->q, e, on_fire, 0), EVS_ESTATE);
  evs_timerq_stop(it->fx->q, &it->fx->items[2].e);
  g_closer = it;
}

static void test_close_from_callback(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, 4);
  assert_int_equal(evs_timerq_start(fx.q, &fx.items[0].e, on_fire_close, 5), 0);
  start(&fx, 1, 5);
  start(&fx, 2, 5);
  start(&fx, 3, 500);
  assert_int_equal(evs_timerq_start(fx.q, &fx.items[3].e, NULL, 5), UV_EINVAL);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_ptr_equal(g_closer, &fx.items[0]);
  assert_int_equal(fx.items[0].fired, 1);
  assert_int_equal(fx.fired, 0);
  assert_int_equal(fx.closed, 1);
  for (int i = 0; i < 4; i++)
    assert_false(evs_timerq_active(&fx.items[i].e));
  assert_int_equal(uv_loop_close(&fx.loop), 0);
  free(fx.items);
  free(fx.order);
}

/* Times are honoured: an entry does not fire before its timeout. */
static void test_not_early(void **state) {
  (void)state;
  fx_t fx;
  /* Due times count from the loop's time (uv_now), taken at uv_loop_init in fx_init and in whole
   * milliseconds: a clock read after fx_init can be ahead of it, by more than the 1 ms the old
   * bound allowed when the test was preempted in between (ASan, a loaded machine). So the
   * timeouts are checked in the loop's own time, and the wall clock is read before the loop's
   * time is: the 60 ms entry fires at loop time >= floor(init) + 60 > t0 + 59. (libuv's coarse
   * clock, used when its resolution is 1 ms, can lag by up to 1 ms more: hence 58.) Firing at
   * the 20 ms entry's time, or at once, still fails both checks. */
  uint64_t t0 = uv_hrtime();
  fx_init(&fx, 2);
  uint64_t now = uv_now(&fx.loop);
  start(&fx, 0, 60);
  start(&fx, 1, 20);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_true(fx.items[0].fired_at - now >= 60);
  assert_true(fx.items[1].fired_at - now >= 20);
  assert_true((uv_hrtime() - t0) / 1000000 >= 58);
  assert_int_equal(fx.order[0], 1);
  fx_free(&fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_by_due),
      cmocka_unit_test(test_equal_due_start_order),
      cmocka_unit_test(test_stop_from_callback),
      cmocka_unit_test(test_restart_from_callback),
      cmocka_unit_test(test_restart_moves),
      cmocka_unit_test(test_remove_arbitrary),
      cmocka_unit_test(test_100k),
      cmocka_unit_test(test_loop_alive),
      cmocka_unit_test(test_close_from_callback),
      cmocka_unit_test(test_not_early),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
