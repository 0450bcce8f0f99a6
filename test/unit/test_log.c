/* Structured log records: logfmt quoting, JSON validity, secrets, truncation, levels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "evscale/error.h"
#include "evscale/log.h"

static void logfmt_record(void **state) {
  (void)state;
  const evs_log_kv_t kvs[] = {EVS_KV_STR("file", "/etc/evscale/config.yaml"),
                              EVS_KV_STR("why", "two words"),
                              EVS_KV_INT("n", -3),
                              EVS_KV_BOOL("ok", 1),
                              EVS_KV_SECRET("token"),
                              EVS_KV_ERR("err", UV_ECONNREFUSED)};
  char buf[512];
  evs_log_format_record(buf, sizeof buf, EVS_LOG_LOGFMT, "T", EVS_LOG_WARN, "config \"x\"", kvs, 6);
  assert_string_equal(buf, "ts=T level=warn msg=\"config \\\"x\\\"\" file=/etc/evscale/config.yaml "
                           "why=\"two words\" n=-3 ok=true token=<redacted> "
                           "err=\"connection refused\" err_code=ECONNREFUSED\n");
}

static void json_record_parses(void **state) {
  (void)state;
  const evs_log_kv_t kvs[] = {EVS_KV_STR("s", "a\"b\\c\nd\x01"),
                              EVS_KV_DBL("nan", NAN),
                              EVS_KV_DBL("x", 0.25),
                              EVS_KV_UINT("u", 7),
                              EVS_KV_SECRET("password"),
                              EVS_KV_ERR("err", EVS_EPARSE)};
  char buf[512];
  size_t n = evs_log_format_record(buf, sizeof buf, EVS_LOG_JSON, "T", EVS_LOG_INFO, "m", kvs, 6);
  json_error_t e;
  json_t *j = json_loadb(buf, n, 0, &e);
  if (j == NULL)
    fail_msg("invalid JSON '%s': %s", buf, e.text);
  assert_string_equal(json_string_value(json_object_get(j, "s")), "a\"b\\c\nd\x01");
  assert_string_equal(json_string_value(json_object_get(j, "nan")), "NaN");
  assert_true(json_real_value(json_object_get(j, "x")) == 0.25);
  assert_int_equal(json_integer_value(json_object_get(j, "u")), 7);
  assert_string_equal(json_string_value(json_object_get(j, "password")), "<redacted>");
  assert_string_equal(json_string_value(json_object_get(j, "err")), "malformed input");
  assert_string_equal(json_string_value(json_object_get(j, "err_code")), "EPARSE");
  assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
  json_decref(j);
}

static void truncation_is_bounded(void **state) {
  (void)state;
  char big[2000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  const evs_log_kv_t kvs[] = {EVS_KV_STR("v", big)};
  char buf[128];
  size_t n = evs_log_format_record(buf, sizeof buf, EVS_LOG_LOGFMT, "T", EVS_LOG_INFO, "m", kvs, 1);
  assert_true(n < sizeof buf);
  assert_int_equal(strlen(buf), n);
  assert_int_equal(buf[n - 1], '\n');
  assert_non_null(strstr(buf, " ..."));
}

static void levels_filter_and_emit(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  evs_log_set_fd(fds[1]);
  evs_log_set_level(EVS_LOG_WARN);
  EVS_LOG_INFO("hidden", EVS_KV_INT("a", 1));
  EVS_LOG_ERROR("shown");
  evs_log_set_fd(2);
  close(fds[1]);
  char buf[512] = {0};
  ssize_t r = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  assert_true(r > 0);
  assert_null(strstr(buf, "hidden"));
  assert_non_null(strstr(buf, "level=error msg=\"shown\""));
  evs_log_level_t l;
  assert_int_equal(evs_log_parse_level("DEBUG", &l), 0);
  assert_int_equal(l, EVS_LOG_DEBUG);
  assert_int_equal(evs_log_parse_level("warning", &l), 0);
  assert_int_equal(l, EVS_LOG_WARN);
  assert_int_equal(evs_log_parse_level("loud", &l), UV_EINVAL);
  evs_log_format_t f;
  assert_int_equal(evs_log_parse_format("json", &f), 0);
  assert_int_equal(f, EVS_LOG_JSON);
  assert_int_equal(evs_log_parse_format("xml", &f), UV_EINVAL);
  evs_log_set_level(EVS_LOG_INFO);
}

static void error_names(void **state) {
  (void)state;
  assert_string_equal(evs_err_name(EVS_ECERT), "ECERT");
  assert_string_equal(evs_strerror(EVS_ECERT), "certificate verification failed");
  assert_string_equal(evs_err_name(UV_ETIMEDOUT), "ETIMEDOUT");
  assert_string_equal(evs_strerror(0), "success");
  assert_string_equal(evs_err_name(EVS__ERR_BASE - 999), "EUNKNOWN");
  /* A code neither libuv nor evscale knows still gets a message (and, under ASan, no leak). */
  assert_non_null(strstr(evs_strerror(-99999), "-99999"));
  assert_string_equal(evs_strerror(UV_ECONNREFUSED), "connection refused");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(logfmt_record),         cmocka_unit_test(json_record_parses),
      cmocka_unit_test(truncation_is_bounded), cmocka_unit_test(levels_filter_and_emit),
      cmocka_unit_test(error_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
