/* Raw backend answers through each trigger type's conversion (include/evscale/reading.h), alone
 * and through `evscale simulate`, whose CSV `value` is the raw answer. Expectations from
 * kedacore/keda v2.20.2 (68a5b5028f35b22d50597c69819ab32c4e92f21a): pkg/scalers/redis_scaler.go and
 * prometheus_scaler.go GetMetricsAndActivity / ExecutePromQuery, cron_scaler.go. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "evscale/error.h"
#include "evscale/reading.h"
#include "evscale/simulate.h"

static void redis_conversion(void **state) {
  (void)state;
  evs_conv_t c;
  assert_int_equal(evs_reading_redis(5, 5, &c), 0); /* listLen > activationListLength */
  assert_true(c.value == 5 && c.active == 0 && c.error == 0);
  assert_int_equal(evs_reading_redis(6, 5, &c), 0);
  assert_true(c.value == 6 && c.active == 1);
  assert_int_equal(evs_reading_redis(0, 0, &c), 0); /* a missing key reads 0: inactive */
  assert_int_equal(c.active, 0);
  assert_int_equal(evs_reading_redis(-1, 0, &c), UV_EINVAL);
}

static void prometheus_conversion(void **state) {
  (void)state;
  evs_conv_t c;
  assert_int_equal(evs_reading_prometheus(3, 2, 1, &c), 0);
  assert_true(c.value == 3 && c.active == 1 && c.error == 0);
  assert_int_equal(evs_reading_prometheus(2, 2, 1, &c), 0); /* strictly greater */
  assert_int_equal(c.active, 0);
  assert_int_equal(evs_reading_prometheus(-5, -10, 1, &c), 0); /* raw value, not the HPA's 0 */
  assert_int_equal(c.active, 1);
  /* NaN / ±Inf with ignoreNullValues: 0, and 0 > threshold decides activity */
  double odd[] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(evs_reading_prometheus(odd[i], 0, 1, &c), 0);
    assert_true(c.value == 0 && c.active == 0 && c.error == 0);
    assert_int_equal(evs_reading_prometheus(odd[i], -1, 1, &c), 0);
    assert_int_equal(c.active, 1);
  }
  /* without: the error "prometheus query returns %f" */
  const char *msg[] = {"prometheus query returns NaN", "prometheus query returns +Inf",
                       "prometheus query returns -Inf"};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(evs_reading_prometheus(odd[i], -1, 0, &c), 0);
    assert_int_equal(c.error, EVS_EMETRIC);
    assert_int_equal(c.active, 0);
    assert_string_equal(c.error_msg, msg[i]);
  }
}

static void cron_conversion(void **state) {
  (void)state;
  evs_conv_t c;
  assert_int_equal(evs_reading_cron(1, 7, &c), 0);
  assert_true(c.value == 7 && c.active == 1);
  assert_int_equal(evs_reading_cron(0, 7, &c), 0);
  assert_true(c.value == 0 && c.active == 0);
}

/* ---- through simulate ---- */

static char *write_tmp(const char *text) {
  char *p = strdup("/tmp/evs_reading_XXXXXX");
  int fd = mkstemp(p);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return p;
}

typedef struct {
  int rc;
  char *out, *err;
} sim_result_t;

static void sim(sim_result_t *r, const char *yaml, const char *csv, const char *const *opts,
                int n_opts) {
  char *y = write_tmp(yaml), *c = write_tmp(csv);
  char *argv[12] = {"simulate", y, c};
  size_t ol, el;
  for (int i = 0; i < n_opts; i++)
    argv[3 + i] = (char *)opts[i];
  FILE *out = open_memstream(&r->out, &ol), *err = open_memstream(&r->err, &el);
  r->rc = evs_simulate_run(3 + n_opts, argv, out, err);
  fclose(out);
  fclose(err);
  unlink(y);
  unlink(c);
  free(y);
  free(c);
}

static void sim_free(sim_result_t *r) {
  free(r->out);
  free(r->err);
}

#define SO_HEAD                                                                                    \
  "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: n}\n"          \
  "spec:\n  scaleTargetRef: {name: w}\n"

/* ignoreNullValues "false": NaN is an error, and an error is not a zero (no fallback: KEDA
 * holds, Ready=False TriggerError; the HPA gets no metric and changes nothing). Without the
 * conversion NaN counted as 0 and the target was scaled in once the window passed. */
static void sim_prometheus_nan_is_error(void **state) {
  (void)state;
  sim_result_t r;
  const char *opts[] = {"--replicas", "3", "--until", "400", "--format", "json"};
  sim(&r,
      SO_HEAD "  minReplicaCount: 1\n  triggers:\n  - {type: prometheus, metadata: "
              "{serverAddress: http://p, query: q, threshold: \"10\", ignoreNullValues: "
              "\"false\"}}\n",
      "time,trigger,value\n0,0,30\n10,0,NaN\n", opts, 6);
  if (r.rc != 0)
    print_error("%s", r.err);
  assert_int_equal(r.rc, 0);
  assert_null(strstr(r.out, "\"Metrics\"")); /* 30 / (10 x 3) = 1: nothing ever changes */
  assert_non_null(strstr(r.out, "\"from\":3,\"to\":3,\"event\":\"End\""));
  sim_free(&r);
}

/* ignoreNullValues default (true): +Inf reads 0, and 0 is not above activationThreshold 0, so
 * the target stays at 0. Without the conversion +Inf activated it. */
static void sim_prometheus_inf_is_zero(void **state) {
  (void)state;
  sim_result_t r;
  const char *opts[] = {"--format", "json", "--until", "100"};
  sim(&r,
      SO_HEAD "  minReplicaCount: 0\n  triggers:\n  - {type: prometheus, metadata: "
              "{serverAddress: http://p, query: q, threshold: \"10\"}}\n",
      "time,trigger,value\n0,0,+Inf\n5,0,Inf\n", opts, 4);
  assert_int_equal(r.rc, 0);
  assert_null(strstr(r.out, "Activate"));
  assert_non_null(strstr(r.out, "\"from\":0,\"to\":0,\"event\":\"End\""));
  sim_free(&r);
}

/* A redis list length is a whole number: 2.5 cannot be an answer of the backend. */
static void sim_redis_value_must_be_length(void **state) {
  (void)state;
  sim_result_t r;
  sim(&r, SO_HEAD "  triggers:\n  - {type: redis, metadata: {listName: q}}\n",
      "time,trigger,value\n0,0,2.5\n1,0,-1\n2,0,4\n", NULL, 0);
  assert_int_equal(r.rc, 1);
  assert_non_null(
      strstr(r.err, ":2:5: value: a redis list length is a whole number >= 0, got '2.5'"));
  assert_non_null(strstr(r.err, ":3:5: value: a redis list length is a whole number >= 0"));
  assert_null(strstr(r.err, ":4:"));
  sim_free(&r);
}

/* cron: the value is the window test; inside, the metric is desiredReplicas against a target of
 * 1. 0 -> 1 (activation), then the HPA without behavior: 4 = max(2 x 1, 4) = desiredReplicas. */
static void sim_cron_window(void **state) {
  (void)state;
  sim_result_t r;
  const char *opts[] = {"--format", "json", "--until", "30"};
  sim(&r,
      SO_HEAD "  triggers:\n  - {type: cron, metadata: {timezone: Etc/UTC, start: \"0 8 * * *\", "
              "end: \"0 9 * * *\", desiredReplicas: \"4\"}}\n",
      "time,trigger,value\n0,0,0\n10,0,1\n", opts, 4);
  if (r.rc != 0)
    print_error("%s", r.err);
  assert_int_equal(r.rc, 0);
  assert_null(strstr(r.out, "\"time\":0.0,\"from\":0,\"to\":1"));
  assert_non_null(strstr(r.out, "\"from\":0,\"to\":1,\"event\":\"Activate\""));
  assert_non_null(strstr(r.out, "\"from\":4,\"to\":4,\"event\":\"End\""));
  sim_free(&r);
}

/* 1e400 overflows float64: strconv.ParseFloat says "value out of range"; it is not +Inf. */
static void sim_value_out_of_range(void **state) {
  (void)state;
  sim_result_t r;
  sim(&r,
      SO_HEAD "  triggers:\n  - {type: prometheus, metadata: {serverAddress: http://p, query: q, "
              "threshold: \"10\"}}\n",
      "time,trigger,value\n0,0,1e400\n", NULL, 0);
  assert_int_equal(r.rc, 1);
  assert_non_null(strstr(r.err, ":2:5: value: expected a number, got '1e400'"));
  sim_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(redis_conversion),
      cmocka_unit_test(prometheus_conversion),
      cmocka_unit_test(cron_conversion),
      cmocka_unit_test(sim_prometheus_nan_is_error),
      cmocka_unit_test(sim_prometheus_inf_is_zero),
      cmocka_unit_test(sim_redis_value_must_be_length),
      cmocka_unit_test(sim_cron_window),
      cmocka_unit_test(sim_value_out_of_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
