/* The shared decision step (include/evscale/step.h): engine then breaker, one write, one verdict,
 * one absolute next-evaluation time. Expectations from the rules in engine.h, behavior.h and
 * breaker.h (themselves from kedacore/keda and kubernetes/kubernetes, cited there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "evscale/error.h"
#include "evscale/step.h"

#define T0 1700000000000LL
#define S(x) ((int64_t)(x)*1000)

typedef struct {
  evs_so_t *so;
  evs_engine_state_t *est;
  evs_engine_config_t ecfg;
  evs_breaker_config_t bcfg;
  evs_breaker_t br;
  evs_reading_t r;
  int32_t replicas;
  evs_step_t st;
} fx_t;

static void fx_init(fx_t *f, const char *tail) {
  char buf[2048];
  evs_diag_t d;
  memset(f, 0, sizeof *f);
  snprintf(buf, sizeof buf,
           "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: n}\n"
           "spec:\n  scaleTargetRef: {name: w}\n  minReplicaCount: 1\n%s"
           "  triggers:\n  - {type: redis, metadata: {listName: q, listLength: \"10\"}}\n",
           tail);
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse_yaml(buf, strlen(buf), "t.yaml", &f->so, &d), 0);
  evs_diag_free(&d);
  assert_int_equal(evs_engine_state_new(f->so, T0, &f->est), 0);
  evs_engine_config_default(&f->ecfg);
  evs_breaker_config_default(&f->bcfg);
  evs_breaker_init(&f->br);
}

static void fx_free(fx_t *f) {
  evs_engine_state_free(f->est);
  evs_so_free(f->so);
}

/* One step with a reading of `value` taken at now; a write succeeds and is recorded. */
static const evs_step_t *run(fx_t *f, double value, int64_t now) {
  f->r = (evs_reading_t){value, 0, 0, now, 0, NULL, 0};
  evs_engine_input_t in = {&f->r, 1, f->replicas, f->replicas, f->replicas, now};
  assert_int_equal(evs_step(f->so, &f->ecfg, &f->bcfg, f->est, &f->br, &in, &f->st), 0);
  if (f->st.write) {
    evs_step_written(f->so, f->est, &f->st, now);
    f->replicas = f->st.replicas;
  }
  return &f->st;
}

/* No behavior: 1 -> 4 is capped (max(2 x 1, 4)); the engine itself has nothing pending, but the
 * write may continue when it is 15 s old, and the step's one time says so. */
static void next_time_includes_the_write(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "");
  f.replicas = 1;
  const evs_step_t *st = run(&f, 1000, T0 + S(100));
  assert_int_equal(st->verdict, EVS_BREAKER_WRITE);
  assert_int_equal(st->write, 1);
  assert_int_equal(st->replicas, 4);
  assert_true(st->decision.next_eval_ms == INT64_MAX);
  assert_true(st->next_eval_ms == T0 + S(115));
  st = run(&f, 1000, T0 + S(101)); /* recorded: R is still 1 */
  assert_int_equal(st->write, 0);
  assert_true(st->next_eval_ms == T0 + S(115));
  st = run(&f, 1000, T0 + S(115));
  assert_int_equal(st->replicas, 8);
  fx_free(&f);
}

#define NO_WINDOWS                                                                                 \
  "  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n"                             \
  "        scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 1000, "         \
  "periodSeconds: 1}]}\n"                                                                          \
  "        scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 1000, "       \
  "periodSeconds: 1}]}\n"

/* The breaker refuses a write that starts one event too many (breaker.h): the step writes
 * nothing, hands the target over, and its next time is the end of the breaker's cooldown. When
 * the cooldown is over it takes the target back and writes the engine's proposal. */
static void breaker_verdict_and_time(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, NO_WINDOWS);
  f.bcfg.max_events_per_minute = 1;
  f.replicas = 1;
  const evs_step_t *st = run(&f, 50, T0 + S(10)); /* event 1: up to 5 */
  assert_int_equal(st->verdict, EVS_BREAKER_WRITE);
  assert_int_equal(f.replicas, 5);
  st = run(&f, 10, T0 + S(20)); /* down to 1 would start event 2 within 60 s */
  assert_int_equal(st->verdict, EVS_BREAKER_TRIP);
  assert_int_equal(st->write, 0);
  assert_int_equal(st->hand_over, 1);
  assert_int_equal(st->proposed, 1);
  assert_int_equal(st->fallback_min, 10);
  assert_true(st->next_eval_ms == T0 + S(20) + f.bcfg.cooldown_ms);
  st = run(&f, 10, T0 + S(30));
  assert_int_equal(st->verdict, EVS_BREAKER_HOLD);
  assert_int_equal(st->write, 0);
  st = run(&f, 10, T0 + S(20) + f.bcfg.cooldown_ms);
  assert_int_equal(st->verdict, EVS_BREAKER_CLOSE);
  assert_int_equal(st->take_back, 1);
  assert_int_equal(st->write, 1);
  assert_int_equal(f.replicas, 1);
  fx_free(&f);
}

static void bad_arguments(void **state) {
  (void)state;
  fx_t f;
  fx_init(&f, "");
  evs_engine_input_t in = {NULL, 0, -1, -1, -1, T0};
  assert_int_equal(evs_step(f.so, &f.ecfg, &f.bcfg, f.est, &f.br, &in, &f.st), UV_EINVAL);
  assert_int_equal(f.st.write, 0);
  assert_true(f.st.next_eval_ms == INT64_MAX);
  fx_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(next_time_includes_the_write),
      cmocka_unit_test(breaker_verdict_and_time),
      cmocka_unit_test(bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
