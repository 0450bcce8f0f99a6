/* The cron scaler on a real libuv loop: boundary timer, poll, clock jumps, zone errors, teardown,
 * and the creation errors KEDA's cron scaler reports (kedacore/keda @
 * 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a, pkg/scalers/cron_scaler.go `Validate`, and
 * pkg/scalers/scalersconfig/typed_config.go for required/trimmed parameters).
 *
 * The scaler's wall clock is injected (real time plus an offset) so a test can stand 1.5 s before
 * a minute boundary; the boundary timer itself is real and really waited for. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evscale/cron.h"
#include "evscale/diag.h"
#include "evscale/error.h"
#include "evscale/scaler.h"
#include "test_data.h"

static int64_t real_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
  int64_t offset;
} fake_clock_t;

static int64_t fake_now(void *data) { return real_ms() + ((fake_clock_t *)data)->offset; }

#define MAXR 16

typedef struct {
  uv_loop_t loop;
  evs_scaler_t *s;
  fake_clock_t clock;
  evs_reading_t r[MAXR];
  char msg[MAXR][256];
  int64_t mono[MAXR]; /* when each reading arrived (monotonic ms) */
  int n;
  int closed;
  int in_poll;
  int close_after; /* close the scaler from the reading callback once n reaches this */
  int jump_after;  /* add jump_ms to the clock once n reaches this */
  int64_t jump_ms;
  int poll_after;
  uv_timer_t guard;
} fx_t;

static void on_closed(void *data) { ((fx_t *)data)->closed++; }

static void on_guard(uv_timer_t *t) {
  fx_t *fx = t->data;
  if (!fx->closed && fx->s)
    evs_scaler_close(fx->s, on_closed, fx);
}

static void on_reading(evs_scaler_t *s, const evs_reading_t *r, void *data) {
  fx_t *fx = data;
  assert_ptr_equal(s, fx->s);
  assert_false(fx->in_poll); /* never re-entrant from evs_scaler_poll */
  if (fx->n >= MAXR)
    return;
  fx->r[fx->n] = *r;
  snprintf(fx->msg[fx->n], sizeof fx->msg[0], "%s", r->error_msg ? r->error_msg : "");
  fx->r[fx->n].error_msg = NULL;
  fx->mono[fx->n] = mono_ms();
  fx->n++;
  if (fx->n == fx->jump_after)
    fx->clock.offset += fx->jump_ms;
  if (fx->n == fx->poll_after) {
    fx->in_poll = 1;
    assert_int_equal(evs_scaler_poll(s), 0);
    fx->in_poll = 0;
  }
  if (fx->n == fx->close_after)
    evs_scaler_close(s, on_closed, fx);
}

static int make(fx_t *fx, const evs_kv_t *kv, size_t n, evs_diag_t *diag) {
  evs_scaler_config_t cfg = {.type = "cron", .object = "ns/so", .metadata = {kv, n}};
  return evs_scaler_create(&fx->loop, NULL, &cfg, &fx->s, diag);
}

static void fx_init(fx_t *fx) {
  memset(fx, 0, sizeof *fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_timer_init(&fx->loop, &fx->guard);
  fx->guard.data = fx;
}

/* Runs the loop until everything closed; asserts the loop closes cleanly. */
static void fx_finish(fx_t *fx, uint64_t guard_ms) {
  uv_timer_start(&fx->guard, on_guard, guard_ms, 0);
  uv_unref((uv_handle_t *)&fx->guard);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&fx->guard, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  if (fx->closed != 1)
    fail_msg("closed %d times after %d readings", fx->closed, fx->n);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
}

/* start = the minute of `at`, end = 30 minutes later, both as UTC cron fields. */
static void window_at(int64_t at_ms, char *start, char *end, size_t cap) {
  time_t t = (time_t)(at_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(start, cap, "%d %d * * *", tm.tm_min, tm.tm_hour);
  t += 1800;
  gmtime_r(&t, &tm);
  snprintf(end, cap, "%d %d * * *", tm.tm_min, tm.tm_hour);
}

static int64_t next_minute_after(int64_t ms) { return (ms / 60000 + 1) * 60000; }

/* The window opens at B; "now" is B - 1.5 s. The activation reading must come from the real
 * boundary timer within B's second, after really waiting ~1.5 s. */
static void test_boundary_on_real_loop(void **state) {
  (void)state;
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  int64_t now = real_ms();
  int64_t b = next_minute_after(now + 60000);
  fx->clock.offset = (b - 1500) - now;
  char start[64], end[64];
  window_at(b, start, end, sizeof start);
  evs_kv_t kv[] = {
      {"timezone", "Etc/UTC"}, {"start", start}, {"end", end}, {"desiredReplicas", "7"}};
  evs_diag_t diag;
  evs_diag_init(&diag);
  assert_int_equal(make(fx, kv, 4, &diag), 0);
  assert_int_equal(evs_cron_set_clock(fx->s, fake_now, &fx->clock, 0), 0);
  fx->close_after = 2; /* close with the boundary timer armed again */
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  assert_int_equal(fx->n, 0); /* nothing synchronous */
  fx_finish(fx, 15000);
  assert_int_equal(fx->n, 2);
  /* First: inactive, and it names the boundary. */
  assert_int_equal(fx->r[0].error, 0);
  assert_int_equal(fx->r[0].active, 0);
  assert_true(fx->r[0].value == 0.0);
  assert_int_equal(fx->r[0].next_change_ms, b);
  /* Then: active with desiredReplicas, stamped within the boundary second. */
  assert_int_equal(fx->r[1].active, 1);
  assert_true(fx->r[1].value == 7.0);
  assert_true(fx->r[1].time_ms >= b && fx->r[1].time_ms < b + 1000);
  assert_int_equal(fx->r[1].next_change_ms, b + 1800 * 1000);
  int64_t waited = fx->mono[1] - fx->mono[0];
  if (waited < 1300)
    fail_msg("activation after %lld ms: the timer did not wait for the boundary",
             (long long)waited);
  evs_diag_free(&diag);
  free(fx);
}

/* poll answers on a later loop iteration, never from inside evs_scaler_poll. */
static void test_poll_is_async(void **state) {
  (void)state;
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  evs_kv_t kv[] = {
      {"timezone", "UTC"}, {"start", "0 8 * * *"}, {"end", "0 17 * * *"}, {"desiredReplicas", "3"}};
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  fx->poll_after = 1;  /* poll from inside the first reading's callback */
  fx->close_after = 2; /* the poll's answer */
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  fx_finish(fx, 10000);
  assert_int_equal(fx->n, 2);
  assert_int_equal(fx->r[1].active, fx->r[0].active);
  assert_int_equal(fx->r[1].next_change_ms, fx->r[0].next_change_ms);
  assert_true(fx->r[1].next_change_ms > fx->r[1].time_ms);
  free(fx);
}

/* The wall clock steps 30 minutes forward into the window: the jump check notices it and a fresh
 * (active) reading arrives long before the boundary timer, armed for 30 minutes, would fire. */
static void test_clock_jump(void **state) {
  (void)state;
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  int64_t now = real_ms();
  int64_t b = next_minute_after(now + 3600000);
  fx->clock.offset = (b - 1800 * 1000) - now; /* 30 minutes before the window */
  char start[64], end[64];
  window_at(b, start, end, sizeof start);
  evs_kv_t kv[] = {
      {"timezone", "Etc/UTC"}, {"start", start}, {"end", end}, {"desiredReplicas", "2"}};
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  assert_int_equal(evs_cron_set_clock(fx->s, fake_now, &fx->clock, 100), 0);
  fx->jump_after = 1;
  fx->jump_ms = 1800 * 1000 + 5000;
  fx->close_after = 2;
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  fx_finish(fx, 15000);
  assert_int_equal(fx->n, 2);
  assert_int_equal(fx->r[0].active, 0);
  assert_int_equal(fx->r[0].next_change_ms, b);
  assert_int_equal(fx->r[1].active, 1);
  assert_true(fx->r[1].value == 2.0);
  assert_true(fx->mono[1] - fx->mono[0] < 10000);
  free(fx);
}

/* A step back from inside the window to before it crosses no armed boundary (the timer waits
 * for the end): only the jump check can notice that the window is shut again. */
static void test_clock_jump_back(void **state) {
  (void)state;
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  int64_t now = real_ms();
  int64_t b = next_minute_after(now + 3600000);
  fx->clock.offset = (b + 300 * 1000) - now; /* 5 minutes into the window */
  char start[64], end[64];
  window_at(b, start, end, sizeof start);
  evs_kv_t kv[] = {
      {"timezone", "Etc/UTC"}, {"start", start}, {"end", end}, {"desiredReplicas", "5"}};
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  assert_int_equal(evs_cron_set_clock(fx->s, fake_now, &fx->clock, 100), 0);
  fx->jump_after = 1;
  fx->jump_ms = -600 * 1000; /* back to 5 minutes before the window */
  fx->close_after = 2;
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  fx_finish(fx, 15000);
  assert_int_equal(fx->n, 2);
  assert_int_equal(fx->r[0].active, 1);
  assert_int_equal(fx->r[0].next_change_ms, b + 1800 * 1000);
  assert_int_equal(fx->r[1].active, 0);
  assert_true(fx->r[1].value == 0.0);
  assert_int_equal(fx->r[1].next_change_ms, b);
  free(fx);
}

/* The wall clock slews 900 ms ahead of the monotonic clock (below the jump threshold): no extra
 * reading, but the boundary timer is re-armed, so the activation still lands at the boundary on
 * the wall clock instead of 900 ms after it. */
static void test_clock_drift(void **state) {
  (void)state;
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  int64_t now = real_ms();
  int64_t b = next_minute_after(now + 60000);
  fx->clock.offset = (b - 2500) - now;
  char start[64], end[64];
  window_at(b, start, end, sizeof start);
  evs_kv_t kv[] = {
      {"timezone", "Etc/UTC"}, {"start", start}, {"end", end}, {"desiredReplicas", "4"}};
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  assert_int_equal(evs_cron_set_clock(fx->s, fake_now, &fx->clock, 100), 0);
  fx->jump_after = 1;
  fx->jump_ms = 900;
  fx->close_after = 2;
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  fx_finish(fx, 15000);
  assert_int_equal(fx->n, 2);
  assert_int_equal(fx->r[0].active, 0);
  assert_int_equal(fx->r[1].active, 1);
  if (fx->r[1].time_ms < b || fx->r[1].time_ms >= b + 500)
    fail_msg("activation at boundary%+lld ms", (long long)(fx->r[1].time_ms - b));
  free(fx);
}

/* Without a zone index (no tz database could be listed at start-up), an unknown zone cannot be
 * known at creation (the file is read later): readings carry EVS_ETZ naming the field, and poll
 * retries. */
static void test_unknown_zone(void **state) {
  (void)state;
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  evs_kv_t kv[] = {{"timezone", "Nowhere/Atlantis"},
                   {"start", "0 8 * * *"},
                   {"end", "0 17 * * *"},
                   {"desiredReplicas", "3"}};
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  fx->poll_after = 1;
  fx->close_after = 2;
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  fx_finish(fx, 10000);
  assert_int_equal(fx->n, 2);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(fx->r[i].error, EVS_ETZ);
    assert_string_equal(fx->msg[i], "metadata.timezone: unknown time zone 'Nowhere/Atlantis'");
  }
  free(fx);
}

/* A TZ= prefix brings its own zone, loaded like the trigger's; its failure names the field. */
static void test_prefix_zone(void **state) {
  (void)state;
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  evs_kv_t kv[] = {{"timezone", "Europe/Berlin"},
                   {"start", "TZ=Nowhere/Atlantis 0 8 * * *"},
                   {"end", "CRON_TZ=Asia/Kolkata 0 17 * * *"},
                   {"desiredReplicas", "3"}};
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  fx->close_after = 1;
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  fx_finish(fx, 10000);
  assert_int_equal(fx->n, 1);
  assert_int_equal(fx->r[0].error, EVS_ETZ);
  assert_string_equal(fx->msg[0], "metadata.start: unknown time zone 'Nowhere/Atlantis'");
  free(fx);
  /* With known zones the reading is an ordinary one. */
  fx = calloc(1, sizeof *fx);
  fx_init(fx);
  kv[1].value = "TZ=America/New_York 0 8 * * *";
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  fx->close_after = 1;
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  fx_finish(fx, 10000);
  assert_int_equal(fx->n, 1);
  assert_int_equal(fx->r[0].error, 0);
  assert_true(fx->r[0].next_change_ms > fx->r[0].time_ms);
  free(fx);
}

/* Closing while the zone is still loading, or before start: on_close runs once, no reading. */
static void test_close_early(void **state) {
  (void)state;
  evs_kv_t kv[] = {{"timezone", "Europe/Berlin"},
                   {"start", "0 8 * * *"},
                   {"end", "0 17 * * *"},
                   {"desiredReplicas", "3"}};
  for (int started = 0; started < 2; started++) {
    fx_t *fx = calloc(1, sizeof *fx);
    fx_init(fx);
    assert_int_equal(make(fx, kv, 4, NULL), 0);
    if (started)
      assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
    evs_scaler_close(fx->s, on_closed, fx);
    evs_scaler_close(fx->s, on_closed, fx); /* idempotent */
    assert_int_equal(fx->closed, 0);        /* from a later loop iteration */
    fx_finish(fx, 10000);
    assert_int_equal(fx->n, 0);
    free(fx);
  }
}

/* Every call on a closing scaler answers EVS_ESTATE without touching the type (scaler.c used
 * `type = NULL` as the closing flag and evs_scaler_poll dereferenced it: a crash under ASan). */
static void test_calls_on_closing_scaler(void **state) {
  (void)state;
  evs_kv_t kv[] = {{"timezone", "Etc/UTC"},
                   {"start", "0 8 * * *"},
                   {"end", "0 17 * * *"},
                   {"desiredReplicas", "3"}};
  fx_t *fx = calloc(1, sizeof *fx);
  fx_init(fx);
  assert_int_equal(make(fx, kv, 4, NULL), 0);
  assert_int_equal(evs_scaler_poll(fx->s), EVS_ESTATE); /* not started */
  assert_int_equal(evs_scaler_set_cadence(fx->s, 100), 0);
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), 0);
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), EVS_ESTATE); /* twice */
  evs_scaler_close(fx->s, on_closed, fx);
  assert_int_equal(evs_scaler_poll(fx->s), EVS_ESTATE);
  assert_int_equal(evs_scaler_start(fx->s, on_reading, fx), EVS_ESTATE);
  assert_int_equal(evs_scaler_set_cadence(fx->s, 50), EVS_ESTATE);
  assert_int_equal(evs_cron_set_clock(fx->s, NULL, NULL, 0), EVS_ESTATE);
  assert_null(evs_scaler_notice(fx->s));
  evs_scaler_close(fx->s, on_closed, fx);
  fx_finish(fx, 10000);
  assert_int_equal(fx->n, 0);
  free(fx);
}

/* The cadence polls at least every period once started; the first poll of many scalers created
 * together is spread over the period, not taken in lock-step. */
#define NCAD 40
typedef struct {
  uv_loop_t *loop;
  int n[NCAD];
  int64_t first_poll[NCAD]; /* monotonic ms of each scaler's second reading (its first poll) */
  int64_t t0;
  int closed;
} cad_t;

static void cad_closed(void *data) { (*(int *)data)++; }

typedef struct {
  int idx;
  cad_t *c;
} cad_slot_t;

static void cad_reading2(evs_scaler_t *s, const evs_reading_t *r, void *data) {
  (void)s;
  assert_int_equal(r->error, 0);
  cad_slot_t *sl = data;
  if (++sl->c->n[sl->idx] == 2)
    sl->c->first_poll[sl->idx] = mono_ms() - sl->c->t0;
}

static void test_cadence_spread(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  evs_kv_t kv[] = {{"timezone", "Etc/UTC"},
                   {"start", "0 8 * * *"},
                   {"end", "0 17 * * *"},
                   {"desiredReplicas", "3"}};
  evs_scaler_config_t cfg = {.type = "cron", .object = "ns/so", .metadata = {kv, 4}};
  cad_t *c = calloc(1, sizeof *c);
  cad_slot_t sl[NCAD];
  evs_scaler_t *s[NCAD];
  c->t0 = mono_ms();
  for (int i = 0; i < NCAD; i++) {
    sl[i] = (cad_slot_t){i, c};
    assert_int_equal(evs_scaler_create(&loop, NULL, &cfg, &s[i], NULL), 0);
    assert_int_equal(evs_scaler_set_cadence(s[i], 1000), 0);
    assert_int_equal(evs_scaler_cadence(s[i]), 1000);
    assert_int_equal(evs_scaler_start(s[i], cad_reading2, &sl[i]), 0);
  }
  /* 2.6 periods: every scaler polled at least twice beyond its start reading. */
  int64_t end = mono_ms() + 2600;
  while (mono_ms() < end)
    uv_run(&loop, UV_RUN_ONCE);
  int early = 0, late = 0;
  for (int i = 0; i < NCAD; i++) {
    if (c->n[i] < 3)
      fail_msg("scaler %d: %d readings in 2.6 periods", i, c->n[i]);
    assert_true(c->first_poll[i] <= 1300);
    early += c->first_poll[i] < 500;
    late += c->first_poll[i] >= 500;
  }
  /* Uniform phases: both halves of the period hold some (P(all in one half) = 2^-39). */
  if (early == 0 || late == 0)
    fail_msg("first polls not spread: %d early, %d late", early, late);
  for (int i = 0; i < NCAD; i++)
    evs_scaler_close(s[i], cad_closed, &c->closed);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(c->closed, NCAD);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(c);
}

typedef struct {
  const char *timezone, *start, *end, *desired;
  const char *path, *msg_part;
} bad_case_t;

static void test_creation_errors(void **state) {
  (void)state;
  static const bad_case_t t[] = {
      {"UTC", "0 8 * * *", "0 8 * * *", "3", "metadata.end",
       "start and end can not have exactly same time input"},
      /* KEDA trims parameters before comparing (typed_config.go configParamValue). */
      {"UTC", " 0 8 * * *\t", "0 8 * * *", "3", "metadata.end", "exactly same time"},
      {"UTC", "0 8 * * *", "0 17 * * *", "0", "metadata.desiredReplicas", "no desiredReplicas"},
      {"UTC", "0 8 * * *", "0 17 * * *", "abc", "metadata.desiredReplicas", "not an integer"},
      {"UTC", "0 8 * * *", "0 17 * * *", "1.5", "metadata.desiredReplicas", "not an integer"},
      {"UTC", "0 8 * * *", "0 17 * * *", "010", "metadata.desiredReplicas", "not an integer"},
      {"UTC", "60 8 * * *", "0 17 * * *", "3", "metadata.start",
       "end of range (60) above maximum (59)"},
      {"UTC", "0 8 * * *", "0 17 * *", "3", "metadata.end", "expected exactly 5 fields"},
      {"UTC", "@daily", "0 17 * * *", "3", "metadata.start", "does not accept descriptors"},
      {"../../etc/passwd", "0 8 * * *", "0 17 * * *", "3", "metadata.timezone", "invalid"},
      {"/etc/localtime", "0 8 * * *", "0 17 * * *", "3", "metadata.timezone", "invalid"},
      {NULL, "0 8 * * *", "0 17 * * *", "3", "metadata.timezone", "missing required parameter"},
      {"UTC", "  ", "0 17 * * *", "3", "metadata.start", "missing required parameter"},
      {"UTC", "0 8 * * *", "0 17 * * *", NULL, "metadata.desiredReplicas", "missing"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    fx_t *fx = calloc(1, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    evs_kv_t kv[4];
    size_t n = 0;
    if (t[i].timezone)
      kv[n++] = (evs_kv_t){"timezone", t[i].timezone};
    kv[n++] = (evs_kv_t){"start", t[i].start};
    kv[n++] = (evs_kv_t){"end", t[i].end};
    if (t[i].desired)
      kv[n++] = (evs_kv_t){"desiredReplicas", t[i].desired};
    evs_diag_t diag;
    evs_diag_init(&diag);
    assert_int_equal(make(fx, kv, n, &diag), UV_EINVAL);
    assert_null(fx->s);
    if (diag.n != 1 || strcmp(diag.items[0].path, t[i].path) != 0 ||
        strstr(diag.items[0].msg, t[i].msg_part) == NULL)
      fail_msg("case %zu: %zu errors, first %s: %s", i, diag.n, diag.n ? diag.items[0].path : "",
               diag.n ? diag.items[0].msg : "");
    assert_string_equal(diag.items[0].source, "ns/so");
    evs_diag_free(&diag);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
  }
  /* Every error at once: nothing given. */
  evs_diag_t diag;
  evs_diag_init(&diag);
  fx_t *fx = calloc(1, sizeof *fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(make(fx, NULL, 0, &diag), UV_EINVAL);
  assert_int_equal(diag.n, 4);
  const char *paths[] = {"metadata.timezone", "metadata.start", "metadata.end",
                         "metadata.desiredReplicas"};
  for (int i = 0; i < 4; i++)
    assert_string_equal(diag.items[i].path, paths[i]);
  evs_diag_free(&diag);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  free(fx);
  assert_ptr_equal(evs_scaler_type_find("cron"), &evs_scaler_cron_type);
}

/* With the zone index loaded (as evscale does at start-up), an unknown zone, the trigger's or a
 * TZ= prefix's, fails creation naming its field, as KEDA's cron scaler does. */
static void test_unknown_zone_with_index(void **state) {
  (void)state;
  assert_int_equal(evs_tz_index_load(NULL), 0); /* $TZDIR: the test copies */
  static const struct {
    const char *tz, *start, *path, *msg;
  } t[] = {
      {"Nowhere/Atlantis", "0 8 * * *", "metadata.timezone",
       "unknown time zone 'Nowhere/Atlantis'"},
      {"UTC", "TZ=Nowhere/Lemuria 0 8 * * *", "metadata.start",
       "unknown time zone 'Nowhere/Lemuria'"},
  };
  for (size_t i = 0; i < 2; i++) {
    fx_t *fx = calloc(1, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    evs_kv_t kv[] = {{"timezone", t[i].tz},
                     {"start", t[i].start},
                     {"end", "0 17 * * *"},
                     {"desiredReplicas", "3"}};
    evs_diag_t diag;
    evs_diag_init(&diag);
    assert_int_equal(make(fx, kv, 4, &diag), UV_EINVAL);
    assert_int_equal(diag.n, 1);
    assert_string_equal(diag.items[0].path, t[i].path);
    assert_string_equal(diag.items[0].msg, t[i].msg);
    evs_diag_free(&diag);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
  }
  /* A listed zone is created. */
  fx_t *fx = calloc(1, sizeof *fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  evs_kv_t ok[] = {{"timezone", "Europe/Berlin"},
                   {"start", "0 8 * * *"},
                   {"end", "0 17 * * *"},
                   {"desiredReplicas", "3"}};
  assert_int_equal(make(fx, ok, 4, NULL), 0);
  evs_scaler_close(fx->s, on_closed, fx);
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->closed, 1);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  free(fx);
  evs_tz_index_free();
}

int main(void) {
  /* Zones come from the test copies of tzdata. */
  char dir[1024];
  const char *data = evs_test_data();
  snprintf(dir, sizeof dir, "%s/zoneinfo", data);
  setenv("TZDIR", dir, 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_creation_errors),
      cmocka_unit_test(test_close_early),
      cmocka_unit_test(test_calls_on_closing_scaler),
      cmocka_unit_test(test_cadence_spread),
      cmocka_unit_test(test_unknown_zone),
      cmocka_unit_test(test_prefix_zone),
      cmocka_unit_test(test_unknown_zone_with_index),
      cmocka_unit_test(test_poll_is_async),
      cmocka_unit_test(test_clock_jump),
      cmocka_unit_test(test_clock_jump_back),
      cmocka_unit_test(test_clock_drift),
      cmocka_unit_test(test_boundary_on_real_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
