/* The circuit breaker: every transition, the load profiles, doubling and its cap, the
 * operator's reset and the annotation encoding. Expectations are worked out by hand from the
 * rules in include/evscale/breaker.h (issue "Decision engine", "Circuit breaker"). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "evscale/breaker.h"
#include "evscale/error.h"

#define T0 INT64_C(1700000000000) /* a wall-clock epoch: the state's times are absolute */
#define S(sec) (T0 + (int64_t)llround((sec)*1000))

static evs_breaker_config_t defaults(void) {
  evs_breaker_config_t cfg;
  evs_breaker_config_default(&cfg);
  return cfg;
}

/* Decides and, as the caller would, applies the outcome to *replicas. */
static evs_breaker_verdict_t step(evs_breaker_t *st, const evs_breaker_config_t *cfg, int *replicas,
                                  int proposed, int64_t now, int *next) {
  evs_breaker_verdict_t v = evs_breaker_decide(st, cfg, *replicas, proposed, now, next);
  if (v == EVS_BREAKER_WRITE || v == EVS_BREAKER_CLOSE)
    *replicas = proposed;
  else if (v == EVS_BREAKER_TRIP_SCALE_TO_ONE)
    *replicas = 1;
  return v;
}

static void test_defaults_and_config_check(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  assert_int_equal(cfg.enabled, 1);
  assert_int_equal(cfg.max_events_per_minute, 3);
  assert_int_equal(cfg.cooldown_ms, 60000);
  assert_int_equal(cfg.max_cooldown_ms, 900000);
  assert_int_equal(cfg.fallback_replicas, 10);
  assert_int_equal(evs_breaker_config_check(&cfg), 0);
  assert_int_equal(evs_breaker_fallback_min(&cfg), 10);
  cfg.fallback_replicas = 0; /* the HPA never gets fewer than 1 */
  assert_int_equal(evs_breaker_fallback_min(&cfg), 1);
  cfg = defaults();
  cfg.max_events_per_minute = 0;
  assert_int_equal(evs_breaker_config_check(&cfg), UV_EINVAL);
  cfg = defaults();
  cfg.max_events_per_minute = EVS_BREAKER_MAX_EVENTS + 1;
  assert_int_equal(evs_breaker_config_check(&cfg), UV_EINVAL);
  cfg = defaults();
  cfg.max_cooldown_ms = 30000; /* below the cooldown */
  assert_int_equal(evs_breaker_config_check(&cfg), UV_EINVAL);
  cfg = defaults();
  cfg.cooldown_ms = 0;
  assert_int_equal(evs_breaker_config_check(&cfg), UV_EINVAL);
}

/* up at 0 s, down at 10 s, up at 20 s: three events, all written. Down at 30 s would be the
 * fourth event within 60 s: trip, 60 s cooldown. Held until 90 s; at 90 s it closes. */
static void test_trip_hold_close(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 2, next = 0;
  assert_int_equal(step(&st, &cfg, &r, 4, S(0), &next), EVS_BREAKER_WRITE);
  assert_int_equal(next, -1);
  assert_int_equal(step(&st, &cfg, &r, 3, S(10), &next), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 5, S(20), &next), EVS_BREAKER_WRITE);
  assert_int_equal(st.n_events, 3);
  assert_int_equal(step(&st, &cfg, &r, 2, S(30), &next), EVS_BREAKER_TRIP);
  assert_int_equal(r, 5); /* nothing written */
  assert_int_equal(next, 60000);
  assert_true(st.open);
  assert_int_equal(st.cooldown_ms, 60000);
  /* Open: nothing is written, whatever the engine proposes; next look at the cooldown's end. */
  assert_int_equal(step(&st, &cfg, &r, 9, S(45), &next), EVS_BREAKER_HOLD);
  assert_int_equal(next, 45000);
  assert_int_equal(step(&st, &cfg, &r, 1, S(89.999), &next), EVS_BREAKER_HOLD);
  assert_int_equal(next, 1);
  assert_int_equal(r, 5);
  /* At 90 s the cooldown is over: close and write the proposal, the first event of a new run. */
  assert_int_equal(step(&st, &cfg, &r, 7, S(90), &next), EVS_BREAKER_CLOSE);
  assert_int_equal(next, -1);
  assert_int_equal(r, 7);
  assert_false(st.open);
  assert_int_equal(st.n_events, 1);
  assert_true(st.closed_ms == S(90));
}

static void test_same_value_is_no_event(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 3;
  for (int i = 0; i < 20; i++)
    assert_int_equal(step(&st, &cfg, &r, 3, S(i), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(st.n_events, 0);
  assert_int_equal(st.last_write_ms, 0);
}

/* Writes in one direction less than 60 s apart are one event, however long the run, and it
 * stays in the window while it goes on; a write after 60 s without writes starts a new one. */
static void test_event_boundaries(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 1;
  for (int i = 0; i < 30; i++) /* 1 → 31 over 290 s, every 10 s: one event */
    assert_int_equal(step(&st, &cfg, &r, r + 1, S(i * 10), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(st.n_events, 1);
  assert_true(evs_breaker_event_ms(&st, 0) == S(290));
  /* The ongoing ramp counts: down (2), up (3), then down would be the 4th: trip. */
  assert_int_equal(step(&st, &cfg, &r, 30, S(300), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 31, S(310), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 30, S(320), NULL), EVS_BREAKER_TRIP);

  /* Same direction after exactly 60 s of silence: a new event. */
  evs_breaker_init(&st);
  r = 1;
  assert_int_equal(step(&st, &cfg, &r, 2, S(0), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 3, S(59.999), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(st.n_events, 1);
  assert_int_equal(step(&st, &cfg, &r, 4, S(119.999), NULL), EVS_BREAKER_WRITE);
  /* 119.999 - 59.999 = 60 s: a new event, and the first one (latest write at 59.999 s) has just
   * left the window. */
  assert_int_equal(st.n_events, 1);
  assert_true(evs_breaker_event_ms(&st, 0) == S(119.999));
}

/* The window rolls: events (latest writes) at 0, 20, 40 s; at 60 s the first has left it, so a
 * fourth reversal at 60 s is only the third event in the window. */
static void test_rolling_window(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 5;
  assert_int_equal(step(&st, &cfg, &r, 6, S(0), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 5, S(20), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 6, S(40), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 5, S(60), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(st.n_events, 3);
  /* 20, 40, 60 in the window: a reversal at 79.999 s is the fourth. */
  assert_int_equal(step(&st, &cfg, &r, 6, S(79.999), NULL), EVS_BREAKER_TRIP);
}

static void test_trip_at_zero_writes_one(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  cfg.max_events_per_minute = 1;
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 1, next;
  assert_int_equal(step(&st, &cfg, &r, 0, S(0), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(r, 0);
  /* 0 → 3 is a second event within 60 s: trip, and the target is at 0, where an HPA cannot act:
   * the caller writes 1 first. */
  assert_int_equal(step(&st, &cfg, &r, 3, S(5), &next), EVS_BREAKER_TRIP_SCALE_TO_ONE);
  assert_int_equal(r, 1);
  assert_int_equal(next, 60000);
  assert_string_equal(evs_breaker_verdict_name(EVS_BREAKER_TRIP_SCALE_TO_ONE), "trip-scale-to-one");
}

/* Trips within one cooldown of closing double the cooldown: 60, 120, 240, 480, 900 (cap 15 m),
 * 900. A trip later than one cooldown after closing starts again at 60 s. */
static void test_doubling_and_cap(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  cfg.max_events_per_minute = 1;
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 2, next;
  const int64_t want[] = {60000, 120000, 240000, 480000, 900000, 900000};
  double t = 0;
  assert_int_equal(step(&st, &cfg, &r, 3, S(t), NULL), EVS_BREAKER_WRITE);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    /* A reversal 1 s after the last write/close: second event within 60 s → trip. */
    t += 1;
    assert_int_equal(step(&st, &cfg, &r, r == 3 ? 2 : 3, S(t), &next), EVS_BREAKER_TRIP);
    assert_true(st.cooldown_ms == want[i]);
    assert_int_equal(next, (int)want[i]);
    t += (double)want[i] / 1000;
    assert_int_equal(step(&st, &cfg, &r, r == 3 ? 2 : 3, S(t), NULL), EVS_BREAKER_CLOSE);
  }
  /* Now wait longer than the last cooldown (900 s) after the close, then trip: back to 60 s. */
  t += 901;
  assert_int_equal(step(&st, &cfg, &r, r == 3 ? 2 : 3, S(t), NULL), EVS_BREAKER_WRITE);
  t += 1;
  assert_int_equal(step(&st, &cfg, &r, r == 3 ? 2 : 3, S(t), NULL), EVS_BREAKER_TRIP);
  assert_true(st.cooldown_ms == 60000);
}

/* The operator removes the annotation: closed at once; a trip soon after still doubles. */
static void test_operator_reset(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  cfg.max_events_per_minute = 1;
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 2;
  assert_int_equal(evs_breaker_reset(&st, S(0)), 0); /* closed: nothing to do */
  assert_int_equal(step(&st, &cfg, &r, 3, S(0), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 2, S(1), NULL), EVS_BREAKER_TRIP);
  assert_int_equal(step(&st, &cfg, &r, 2, S(2), NULL), EVS_BREAKER_HOLD);
  assert_int_equal(evs_breaker_reset(&st, S(3)), 1);
  assert_false(st.open);
  assert_int_equal(step(&st, &cfg, &r, 4, S(4), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(r, 4);
  assert_int_equal(step(&st, &cfg, &r, 2, S(5), NULL), EVS_BREAKER_TRIP);
  assert_true(st.cooldown_ms == 120000);
}

static void test_disabled(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  cfg.enabled = 0;
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 1, next;
  for (int i = 0; i < 100; i++) /* flapping every second: written regardless */
    assert_int_equal(step(&st, &cfg, &r, i % 2 ? 1 : 5, S(i), &next), EVS_BREAKER_WRITE);
  assert_int_equal(next, -1);
  /* Switched off while open (config reload): the breaker lets go at once. */
  cfg.enabled = 1;
  cfg.max_events_per_minute = 1;
  evs_breaker_init(&st);
  assert_int_equal(step(&st, &cfg, &r, 2, S(0), NULL), EVS_BREAKER_WRITE);
  assert_int_equal(step(&st, &cfg, &r, 1, S(1), NULL), EVS_BREAKER_TRIP);
  cfg.enabled = 0;
  assert_int_equal(step(&st, &cfg, &r, 7, S(2), NULL), EVS_BREAKER_CLOSE);
  assert_int_equal(step(&st, &cfg, &r, 7, S(3), NULL), EVS_BREAKER_WRITE);
}

/* Clock steps back and configuration changes never hold a target longer than one cooldown. */
static void test_clock_and_config_changes(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  cfg.max_events_per_minute = 1;
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 2, next;
  step(&st, &cfg, &r, 3, S(100), NULL);
  assert_int_equal(step(&st, &cfg, &r, 2, S(101), &next), EVS_BREAKER_TRIP);
  /* The clock went back 10 minutes: still held, but the next look is at most one cooldown away. */
  assert_int_equal(step(&st, &cfg, &r, 2, S(-500), &next), EVS_BREAKER_HOLD);
  assert_int_equal(next, 60000);
  /* The cooldown in the state is 60 s; a reload lowering max_cooldown to 30 s shortens it. */
  cfg.cooldown_ms = cfg.max_cooldown_ms = 30000;
  assert_int_equal(step(&st, &cfg, &r, 2, S(120), &next), EVS_BREAKER_HOLD);
  assert_int_equal(next, 11000); /* 101 + 30 - 120 */
  assert_int_equal(step(&st, &cfg, &r, 5, S(131), &next), EVS_BREAKER_CLOSE);
  assert_int_equal(r, 5);
  /* Writes with a clock that stepped back keep the event list ascending, so it still encodes. */
  cfg = defaults();
  evs_breaker_init(&st);
  step(&st, &cfg, &r, 6, S(200), NULL);
  step(&st, &cfg, &r, 5, S(150), NULL);
  char buf[EVS_BREAKER_ENCODED_MAX];
  evs_breaker_t back;
  int n = evs_breaker_encode(&st, buf, sizeof buf);
  assert_int_equal(evs_breaker_decode(buf, (size_t)n, &back), 0);
  assert_int_equal(back.n_events, 2);
}

/* ---- load profiles --------------------------------------------------------------------------
 * A reading every `tick` seconds is turned into a proposal the way the HPA does for an
 * AverageValue metric (ceil(load / target), clamped to [1, 100]) with a scale-down
 * stabilization window: a scale-down proposes the highest recommendation of the last `window`
 * seconds (the HPA's stabilizeRecommendation). This harness only makes proposals; the breaker
 * under test decides. */
typedef struct {
  double t[4096];
  int rec[4096];
  size_t n;
} history_t;

static int propose(history_t *h, double now, double load, double target, double window,
                   int current) {
  int rec = (int)ceil(load / target);
  rec = rec < 1 ? 1 : rec > 100 ? 100 : rec;
  size_t keep = 0;
  for (size_t i = 0; i < h->n; i++)
    if (now - h->t[i] < window) {
      h->t[keep] = h->t[i];
      h->rec[keep++] = h->rec[i];
    }
  h->n = keep;
  if (h->n < 4096) {
    h->t[h->n] = now;
    h->rec[h->n++] = rec;
  }
  if (rec >= current)
    return rec;
  int hi = rec;
  for (size_t i = 0; i < h->n; i++)
    hi = h->rec[i] > hi ? h->rec[i] : hi;
  return hi < current ? hi : current;
}

typedef double (*load_fn)(double t);

/* Replays `seconds` of load; returns the number of trips. */
static int replay(load_fn load, double seconds, double tick, double window) {
  static history_t h;
  memset(&h, 0, sizeof h);
  evs_breaker_config_t cfg = defaults();
  evs_breaker_t st;
  evs_breaker_init(&st);
  int r = 1, trips = 0;
  for (double t = 0; t <= seconds; t += tick) {
    int p = propose(&h, t, load(t), 10, window, r);
    evs_breaker_verdict_t v = step(&st, &cfg, &r, p, S(t), NULL);
    trips += v == EVS_BREAKER_TRIP || v == EVS_BREAKER_TRIP_SCALE_TO_ONE;
  }
  return trips;
}

/* burst: the queue jumps to 900 at 60 s, then drains by 5 a second. */
static double burst(double t) { return t < 60 ? 0 : fmax(0, 900 - 5 * (t - 60)); }
/* gradual: +1 a second for 10 minutes, then flat. */
static double gradual(double t) { return t < 600 ? t : 600; }
/* sustained: high and flat. */
static double sustained(double t) { return (void)t, 700; }
/* wave: a slow sine, period 20 minutes. */
static double wave(double t) { return 300 + 250 * sin(t * 2 * M_PI / 1200); }
/* flapping: 600 and 50, alternating every 10 s. */
static double flapping(double t) { return ((int)(t / 10)) % 2 ? 50 : 600; }
/* realistic: a day compressed into its real 24 h: night low, morning ramp, lunch peak, evening
 * peak, with a deterministic ±10 % jitter every reading. */
static double realistic(double t) {
  double h = fmod(t / 3600, 24);
  double base = 100 + 400 * exp(-pow((h - 12) / 3, 2)) + 300 * exp(-pow((h - 19) / 2, 2));
  unsigned x = (unsigned)(t * 2654435761u);
  return base * (0.9 + 0.2 * ((x >> 8) % 1000) / 1000.0);
}

static void test_profiles(void **state) {
  (void)state;
  /* With no scale-down window at all, readings every 15 s. */
  assert_int_equal(replay(burst, 3600, 15, 0), 0);   /* one event up, one long event down */
  assert_int_equal(replay(gradual, 3600, 15, 0), 0); /* one long event up */
  assert_int_equal(replay(sustained, 3600, 15, 0), 0);
  assert_int_equal(replay(wave, 4 * 3600, 15, 0), 0); /* reverses every 10 minutes */
  assert_true(replay(flapping, 600, 5, 0) > 0);       /* reverses every 10 s: trips */
  /* Under the HPA's default 300 s scale-down window, nothing can reverse within a minute: even
   * the flapping load and a jittery day never trip (see breaker.h). */
  assert_int_equal(replay(flapping, 3600, 5, 300), 0);
  assert_int_equal(replay(realistic, 24 * 3600, 15, 300), 0);
  assert_int_equal(replay(wave, 4 * 3600, 15, 300), 0);
  /* The same jittery day with no window flaps at every reading: the breaker catches it. */
  assert_true(replay(realistic, 24 * 3600, 15, 0) > 0);
}

/* ---- annotation ---------------------------------------------------------------------------- */

static void test_encode_decode(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  evs_breaker_t st, back;
  evs_breaker_init(&st);
  char buf[EVS_BREAKER_ENCODED_MAX];
  int n = evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, "v1 c d0 w0 o0 x0 k0 e");
  assert_int_equal(n, (int)strlen(buf));
  assert_int_equal(evs_breaker_decode(buf, (size_t)n, &back), 0);
  assert_memory_equal(&st, &back, sizeof st);

  int r = 2;
  step(&st, &cfg, &r, 3, S(0), NULL);
  step(&st, &cfg, &r, 2, S(10), NULL);
  step(&st, &cfg, &r, 1, S(12.5), NULL);
  n = evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, "v1 c d- w1700000012500 o0 x0 k0 e1700000000000,12500");
  memset(&back, 0x55, sizeof back);
  assert_int_equal(evs_breaker_decode(buf, (size_t)n, &back), 0);
  assert_int_equal(back.n_events, st.n_events);
  assert_true(evs_breaker_event_ms(&back, 1) == evs_breaker_event_ms(&st, 1) &&
              back.last_write_ms == st.last_write_ms);
  assert_int_equal(back.last_dir, -1);

  /* A restart resumes: decode, then the same decisions as without the round trip. */
  step(&st, &cfg, &r, 3, S(20), NULL);
  assert_int_equal(step(&st, &cfg, &r, 1, S(25), NULL), EVS_BREAKER_TRIP);
  n = evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, "v1 o d0 w0 o1700000025000 x0 k60000 e");
  assert_int_equal(evs_breaker_decode(buf, (size_t)n, &back), 0);
  int next;
  assert_int_equal(evs_breaker_decide(&back, &cfg, 3, 1, S(30), &next), EVS_BREAKER_HOLD);
  assert_int_equal(next, 55000);
  assert_int_equal(evs_breaker_decide(&back, &cfg, 3, 1, S(85), &next), EVS_BREAKER_CLOSE);

  /* The longest state fits the documented bound. */
  evs_breaker_init(&st);
  st.n_events = EVS_BREAKER_MAX_EVENTS;
  st.newest_ms = ((int64_t)1 << 53) - 1;
  for (int i = 0; i < EVS_BREAKER_MAX_EVENTS; i++)
    st.age_ms[i] = (uint16_t)(EVS_BREAKER_MAX_EVENTS - 1 - i);
  st.last_write_ms = st.opened_ms = st.closed_ms = (int64_t)1 << 53;
  st.cooldown_ms = 7LL * 24 * 3600 * 1000;
  n = evs_breaker_encode(&st, buf, sizeof buf);
  assert_true(n > 0 && n < EVS_BREAKER_ENCODED_MAX);
  assert_int_equal(evs_breaker_decode(buf, (size_t)n, &back), 0);
  assert_memory_equal(&st, &back, sizeof st);
}

static void test_decode_rejects(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "v1",
      "v2 c d0 w0 o0 x0 k0 e",
      "v1 c d0 w0 o0 x0 k0",     /* missing events field */
      "v1 c d0 w0 o0 x0 k0 e ",  /* trailing space */
      "v1 c d0 w0 o0 x0 k0 e1,", /* dangling comma */
      "v1 c d0 w0 o0 x0 k0 e,1",
      "v1 c d0 w0 o0 x0 k0 e1,-1", /* events must ascend */
      "v1 x d0 w0 o0 x0 k0 e",     /* state letter */
      "v1 c d2 w0 o0 x0 k0 e",     /* direction */
      "v1 c d0 w-1 o0 x0 k0 e",    /* negative time */
      "v1 c d0 w+1 o0 x0 k0 e",
      "v1 c d0 w01 o0 x0 k0 e",               /* leading zero */
      "v1 c d0 w9007199254740993 o0 x0 k0 e", /* above 2^53 */
      "v1 c d0 w99999999999999999999999 o0 x0 k0 e",
      "v1 c d0 o0 w0 x0 k0 e",  /* fields out of order */
      "v1 c  d0 w0 o0 x0 k0 e", /* double space */
      "V1 c d0 w0 o0 x0 k0 e",
      "v1 o d0 w0 o0 x0 k60000 e",     /* open without an opening time */
      "v1 o d0 w0 o5 x0 k0 e",         /* open without a cooldown */
      "v1 c d0 w0 o0 x0 k604800001 e", /* cooldown beyond a week */
      "v1 c d0 w0 o0 x0 k0 e1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", /* 29 */
      "v1 c d0 w0 o0 x0 k0 e1,65536", /* wider than the ages can say */
      "v1 c d0 w0 o0 x0 k0 e1,30000,35536",
      "v1 c d0 w0 o0 x0 k0 e9007199254740992,1", /* the sum passes 2^53 */
  };
  evs_breaker_t st;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    evs_breaker_init(&st);
    st.last_dir = 7; /* untouched on failure */
    if (evs_breaker_decode(bad[i], strlen(bad[i]), &st) != EVS_EPARSE) {
      print_error("accepted: '%s'\n", bad[i]);
      fail();
    }
    assert_int_equal(st.last_dir, 7);
  }
  /* An embedded NUL inside the given length is not a digit either. */
  assert_int_equal(evs_breaker_decode("v1 c d0 w0 o0 x0 k0 e1\0", 23, &st), EVS_EPARSE);
  /* Exactly EVS_BREAKER_MAX_EVENTS (28) events are fine, and so is a list 65.535 s wide. */
  const char *ok = "v1 c d0 w0 o0 x0 k0 e1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1";
  assert_int_equal(evs_breaker_decode(ok, strlen(ok), &st), 0);
  assert_int_equal(st.n_events, EVS_BREAKER_MAX_EVENTS);
  ok = "v1 c d0 w0 o0 x0 k0 e1,30000,35535";
  assert_int_equal(evs_breaker_decode(ok, strlen(ok), &st), 0);
  assert_true(evs_breaker_event_ms(&st, 0) == 1 && evs_breaker_event_ms(&st, 2) == 65536);
}

/* Issue 13: the state is embedded in every registry record; 96 bytes at most. */
static void test_state_size(void **state) {
  (void)state;
  print_message("sizeof evs_breaker_t %zu\n", sizeof(evs_breaker_t));
  assert_true(sizeof(evs_breaker_t) <= 96);
}

/* A restart of this binary resumes from the annotation the previous one (events as 64-bit
 * times, up to 32 of them) wrote. The texts are what that binary wrote for these states (its
 * evs_breaker_encode at 2e13732, the same format): the decisions go on as they would have, and
 * the state written back is the same text. */
static void test_resume_from_previous_binary(void **state) {
  (void)state;
  evs_breaker_config_t cfg = defaults();
  evs_breaker_t st;
  char buf[EVS_BREAKER_ENCODED_MAX];
  /* Closed, three events in the window (ups and downs 10 s apart), the last write at 20 s. */
  const char *closed = "v1 c d+ w1700000020000 o0 x0 k0 e1700000000000,10000,10000";
  assert_int_equal(evs_breaker_decode(closed, strlen(closed), &st), 0);
  int n = evs_breaker_encode(&st, buf, sizeof buf);
  assert_int_equal(n, (int)strlen(closed));
  assert_string_equal(buf, closed);
  assert_int_equal(st.n_events, 3);
  assert_true(evs_breaker_event_ms(&st, 1) == S(10));
  /* Up again at 25 s: the same event goes on (latest write moves to 25 s). */
  int r = 5, next;
  assert_int_equal(step(&st, &cfg, &r, 6, S(25), NULL), EVS_BREAKER_WRITE);
  evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, "v1 c d+ w1700000025000 o0 x0 k0 e1700000000000,10000,15000");
  /* At 61 s the first event has left the window; a reversal is the third, a fourth trips. */
  assert_int_equal(step(&st, &cfg, &r, 5, S(61), NULL), EVS_BREAKER_WRITE);
  evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, "v1 c d- w1700000061000 o0 x0 k0 e1700000010000,15000,36000");
  assert_int_equal(step(&st, &cfg, &r, 6, S(62), &next), EVS_BREAKER_TRIP);
  assert_int_equal(next, 60000);
  /* Open, doubled cooldown, written by the previous binary after a close at 50 s: it holds until
   * opened + cooldown, then closes. */
  const char *open = "v1 o d0 w0 o1700000100000 x1700000050000 k120000 e";
  assert_int_equal(evs_breaker_decode(open, strlen(open), &st), 0);
  evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, open);
  assert_int_equal(evs_breaker_decide(&st, &cfg, 3, 1, S(219.999), &next), EVS_BREAKER_HOLD);
  assert_int_equal(next, 1);
  assert_int_equal(evs_breaker_decide(&st, &cfg, 3, 1, S(220), &next), EVS_BREAKER_CLOSE);
  /* A clock that stepped back: the previous binary kept the list ascending at the newest event
   * (200 s) while the last write says 150 s. */
  const char *stepped = "v1 c d- w1700000150000 o0 x0 k0 e1700000190000,10000";
  assert_int_equal(evs_breaker_decode(stepped, strlen(stepped), &st), 0);
  evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, stepped);
  r = 5;
  assert_int_equal(step(&st, &cfg, &r, 6, S(151), NULL), EVS_BREAKER_WRITE);
  evs_breaker_encode(&st, buf, sizeof buf);
  assert_string_equal(buf, "v1 c d+ w1700000151000 o0 x0 k0 e1700000190000,10000,0");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_config_check),
      cmocka_unit_test(test_trip_hold_close),
      cmocka_unit_test(test_same_value_is_no_event),
      cmocka_unit_test(test_event_boundaries),
      cmocka_unit_test(test_rolling_window),
      cmocka_unit_test(test_trip_at_zero_writes_one),
      cmocka_unit_test(test_doubling_and_cap),
      cmocka_unit_test(test_operator_reset),
      cmocka_unit_test(test_disabled),
      cmocka_unit_test(test_clock_and_config_changes),
      cmocka_unit_test(test_profiles),
      cmocka_unit_test(test_state_size),
      cmocka_unit_test(test_resume_from_previous_binary),
      cmocka_unit_test(test_encode_decode),
      cmocka_unit_test(test_decode_rejects),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
