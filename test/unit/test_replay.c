/* Replays hours of readings through the engine in milliseconds of CPU: hand-worked checkpoints
 * of a burst/idle day, and invariants over a long random series.
 *
 * The checkpoints follow from KEDA's RequestScale (activation to max(min,1), cooldown from the
 * last active time, strictly) and, the object having no `behavior`, the HPA's legacy path
 * (kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go normalizeDesiredReplicas at
 * 00067268967ec95a40035bd666374a1caf48dd1a: the highest recommendation of the last 300 s, cut
 * off with Before(cutoff), so inclusive; then at most max(2 x R, 4) where R is the count in force
 * 15 s earlier, at least max(min, 1), no scale-down rate limit). A recommendation stays in force
 * until the next one replaces it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/engine.h"
#include "evscale/error.h"

#define T0 1800000000000LL
#define S(x) ((int64_t)(x)*1000)

typedef struct {
  evs_so_t *so;
  evs_engine_state_t *st;
  evs_engine_config_t cfg;
  int32_t replicas;
  int writes;
} sim_t;

static void sim_init(sim_t *s, const char *yaml) {
  evs_diag_t d;
  memset(s, 0, sizeof *s);
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse_yaml(yaml, strlen(yaml), "replay.yaml", &s->so, &d), 0);
  evs_diag_free(&d);
  assert_int_equal(evs_engine_state_new(s->so, T0, &s->st), 0);
  evs_engine_config_default(&s->cfg);
}

static void sim_free(sim_t *s) {
  evs_engine_state_free(s->st);
  evs_so_free(s->so);
}

/* One tick: the registry's view — decide, write, record. Checks the invariant on every write. */
static void sim_tick(sim_t *s, const evs_reading_t *r, int64_t now) {
  evs_engine_input_t in = {r, s->so->n_triggers, s->replicas, s->replicas, s->replicas, now};
  evs_decision_t d;
  assert_int_equal(evs_engine_decide(s->so, &s->cfg, s->st, &in, &d), 0);
  if (!d.write) {
    assert_int_equal(d.desired, s->replicas);
    return;
  }
  int32_t min = evs_so_min(s->so), max = evs_so_max(s->so);
  int ok = (d.desired >= min && d.desired <= max) || d.desired == 0 ||
           d.desired == s->so->idle_replicas || d.desired == s->so->paused_replicas;
  if (!ok)
    print_error("invariant: wrote %d (min %d max %d) reason %s\n", d.desired, min, max,
                evs_engine_reason_name(d.reason));
  assert_true(ok);
  if (s->cfg.max_replicas_cap > 0 && d.desired > s->cfg.max_replicas_cap)
    assert_true(d.desired <= min); /* only the object's own min may exceed the cap */
  evs_engine_record_scale(s->so, s->st, s->replicas, d.desired, now);
  s->replicas = d.desired;
  s->writes++;
}

static const char *burst_yaml =
    "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: n}\n"
    "spec:\n  scaleTargetRef: {name: w}\n  maxReplicaCount: 20\n  cooldownPeriod: 300\n"
    "  triggers:\n  - {type: redis, metadata: {listName: q, listLength: \"10\"}}\n";

/* One hour of a full queue, then two hours of an empty one, a reading every second. */
static void burst_then_idle(void **state) {
  (void)state;
  sim_t s;
  sim_init(&s, burst_yaml);
  struct {
    int t;
    int32_t replicas;
  } checks[] = {
      {0, 1},     /* activation: 0 -> max(min 0, 1) */
      {1, 4},     /* HPA: R = the count 15 s before (0): max(2 x 0, 4) */
      {15, 4},    /* R = 1 (the write at 1 s is inside (0, 15]): max(2, 4) */
      {16, 8},    /* R = 4: 8 */
      {30, 8},    /* the write at 16 s is still inside (15, 30] */
      {31, 16},   /* R = 8 */
      {46, 20},   /* R = 16: 32, capped by max 20 */
      {3599, 20}, /* the whole hour at max */
      {3899, 20}, /* load gone at 3600; the 100 was in force until 3600: window to 3900 */
      {3900, 0},  /* 3599 + 300 < 3900: KEDA deactivates */
      {10800, 0},
  };
  size_t c = 0;
  for (int t = 0; t <= 10800; t++) {
    evs_reading_t r = {t < 3600 ? 1000 : 0, 0, 0, T0 + S(t), 0, NULL, 0};
    sim_tick(&s, &r, T0 + S(t));
    if (c < sizeof checks / sizeof checks[0] && checks[c].t == t) {
      if (s.replicas != checks[c].replicas)
        print_error("t=%d: %d replicas, want %d\n", t, s.replicas, checks[c].replicas);
      assert_int_equal(s.replicas, checks[c].replicas);
      c++;
    }
  }
  assert_int_equal(c, sizeof checks / sizeof checks[0]);
  assert_int_equal(s.writes, 6); /* 1, 4, 8, 16, 20, 0 */
  sim_free(&s);
}

/* The same day evaluated only when a reading arrives or the engine asked (next_eval_ms): the
 * timer-driven loop lands on the same counts at the same instants. */
static void timer_driven_matches(void **state) {
  (void)state;
  sim_t s;
  sim_init(&s, burst_yaml);
  int32_t at_3870 = -1, at_3870_1 = -1, wakeups = 0;
  /* Readings every 30 s (pollingInterval), plus wake-ups at next_eval_ms. */
  for (int64_t now = T0; now <= T0 + S(10800);) {
    int t = (int)((now - T0) / 1000);
    evs_reading_t r = {t < 3600 ? 1000 : 0, 0, 0, T0 + S(t - t % 30), 0, NULL, 0};
    evs_engine_input_t in = {&r, 1, s.replicas, s.replicas, s.replicas, now};
    evs_decision_t d;
    assert_int_equal(evs_engine_decide(s.so, &s.cfg, s.st, &in, &d), 0);
    if (d.write) {
      evs_engine_record_scale(s.so, s.st, s.replicas, d.desired, now);
      s.replicas = d.desired;
    }
    if (now == T0 + S(3870))
      at_3870 = s.replicas;
    if (now == T0 + S(3870) + 1)
      at_3870_1 = s.replicas;
    int64_t poll = T0 + S(t - t % 30 + 30);
    if (d.next_eval_ms > now && d.next_eval_ms < poll) {
      now = d.next_eval_ms;
      wakeups++;
    } else {
      now = poll;
    }
  }
  /* The last reading above 0 is the one of 3570 s (polls every 30 s): the last active time is
   * 3570 s, and its recommendation of 100 stays in force until the reading of 3600 s replaces
   * it, so the HPA's window holds 20 until 3900 s. At 3600 s the engine asks to look again at
   * 3870.001 s (3570 + 300 is then strictly before now: KEDA deactivates to 0). */
  assert_int_equal(at_3870, 20);
  assert_int_equal(at_3870_1, 0);
  assert_int_equal(s.replicas, 0);
  assert_true(wakeups >= 2);
  sim_free(&s);
}

/* Three hours of random readings, errors, pauses and annotation flips: the invariant holds on
 * every write and nothing crashes (run under ASan/UBSan in CI). */
static void random_invariants(void **state) {
  (void)state;
  static const char *yaml =
      "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: n}\n"
      "spec:\n  scaleTargetRef: {name: w}\n  minReplicaCount: 2\n  maxReplicaCount: 30\n"
      "  idleReplicaCount: 0\n  cooldownPeriod: 60\n"
      "  fallback: {failureThreshold: 3, replicas: 6, behavior: currentReplicasIfHigher}\n"
      "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n"
      "        scaleDown: {stabilizationWindowSeconds: 30, policies: [{type: Pods, value: 3, "
      "periodSeconds: 20}]}\n"
      "        scaleUp: {policies: [{type: Percent, value: 50, periodSeconds: 10}]}\n"
      "  triggers:\n"
      "  - {type: redis, metadata: {listName: q, listLength: \"7\", activationListLength: "
      "\"3\"}}\n"
      "  - {type: prometheus, metricType: Value, metadata: {serverAddress: http://p, query: q, "
      "threshold: \"2.5\"}}\n";
  sim_t s;
  sim_init(&s, yaml);
  s.cfg.max_replicas_cap = 25;
  srand(12345);
  evs_reading_t r[2];
  for (int t = 0; t < 3 * 3600; t++) {
    /* A load level that changes every 10 minutes (0, low, high), with noise, rare absurd
     * values (negative, 1e300) and 10 % errors per trigger. */
    int level = (t / 600) % 3 == 0 ? 0 : (t / 600) % 3 == 1 ? 20 : 150;
    for (int i = 0; i < 2; i++) {
      int k = rand() % 1000;
      double v = k < 5 ? -3 : k < 6 ? 1e300 : level + rand() % 10;
      r[i] = (evs_reading_t){
          v / (i ? 3.0 : 1.0), 0, k >= 900 ? EVS_EMETRIC : 0, T0 + S(t), 0, NULL, 0};
    }
    sim_tick(&s, r, T0 + S(t));
  }
  print_message("random: %d writes, final %d\n", s.writes, s.replicas);
  assert_true(s.writes > 10);
  sim_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(burst_then_idle),
      cmocka_unit_test(timer_driven_matches),
      cmocka_unit_test(random_invariants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
