/* KEDA's typed trigger parameters (typed_config.go): Go's TrimSpace, encoding/json numbers,
 * strconv.ParseFloat and ParseBool. Expectations from the Go definitions: unicode.IsSpace
 * (golang/go src/unicode/graphic.go), the JSON number grammar (RFC 8259 section 6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/param.h"

static void trim_unicode_space(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } t[] = {
      {"  5\t\n", "5"},
      {"\xc2\xa0"
       "5\xc2\xa0",
       "5"},                                  /* NO-BREAK SPACE */
      {"\xe3\x80\x80x y\xe2\x80\x83", "x y"}, /* IDEOGRAPHIC SPACE, EM SPACE; inner kept */
      {"\xe2\x80\x8b"
       "5",
       "\xe2\x80\x8b"
       "5"}, /* ZERO WIDTH SPACE is not white space in Go */
      {"   ", ""},
      {"", ""},
  };
  char buf[32];
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    assert_int_equal(evs_param_trim(t[i].in, buf, sizeof buf), 0);
    assert_string_equal(buf, t[i].out);
    char *d = evs_param_trim_dup(t[i].in);
    if (t[i].out[0] == '\0')
      assert_null(d);
    else
      assert_string_equal(d, t[i].out);
    free(d);
  }
  assert_int_equal(evs_param_trim("  abcdef  ", buf, 6), UV_ENOBUFS); /* does not fit */
  assert_int_equal(evs_param_space_len("\xc2\x85"), 2);               /* NEL */
  assert_int_equal(evs_param_space_len("a"), 0);
}

static void json_numbers(void **state) {
  (void)state;
  int64_t i = 7;
  assert_int_equal(evs_param_json_int64("42", &i), 0);
  assert_int_equal(i, 42);
  assert_int_equal(evs_param_json_int64("-9223372036854775808", &i), 0);
  assert_true(i == INT64_MIN);
  static const char *const bad_int[] = {"010", "+1", "1.0", "1e3", "", " 1", "0x10", "-", "1_000"};
  for (size_t k = 0; k < sizeof bad_int / sizeof bad_int[0]; k++)
    if (evs_param_json_int64(bad_int[k], &i) != UV_EINVAL)
      fail_msg("'%s' not refused as malformed for a JSON int64", bad_int[k]);
  /* Well formed but beyond int64: out of range, not malformed. */
  assert_int_equal(evs_param_json_int64("9223372036854775808", &i), EVS_ERANGE);
  assert_int_equal(evs_param_json_int64("-9223372036854775809", &i), EVS_ERANGE);
  double d = 0;
  assert_int_equal(evs_param_json_float("2.5e-3", &d), 0);
  assert_true(d == 2.5e-3);
  assert_int_equal(evs_param_json_float("-0", &d), 0);
  static const char *const bad_float[] = {".5", "5.", "1e", "NaN", "Inf", "01.5"};
  for (size_t k = 0; k < sizeof bad_float / sizeof bad_float[0]; k++)
    if (evs_param_json_float(bad_float[k], &d) != UV_EINVAL)
      fail_msg("'%s' not refused as malformed for a JSON number", bad_float[k]);
  /* Go's decoder refuses a number that overflows float64 (never +Inf); underflow is 0. */
  d = 7;
  assert_int_equal(evs_param_json_float("1e400", &d), EVS_ERANGE);
  assert_int_equal(evs_param_json_float("-1e400", &d), EVS_ERANGE);
  assert_true(d == 7); /* untouched on error */
  assert_int_equal(evs_param_json_float("1e-400", &d), 0);
  assert_true(d == 0);
}

static void go_float_and_bool(void **state) {
  (void)state;
  double d;
  assert_int_equal(evs_param_go_float("1.5", &d), 0);
  assert_true(d == 1.5);
  assert_int_equal(evs_param_go_float("+Inf", &d), 0);
  assert_true(isinf(d));
  assert_int_equal(evs_param_go_float(" 1", &d), UV_EINVAL);
  assert_int_equal(evs_param_go_float("1 ", &d), UV_EINVAL);
  assert_int_equal(evs_param_go_float("", &d), UV_EINVAL);
  assert_int_equal(evs_param_go_float("x", &d), UV_EINVAL);
  /* strconv.ParseFloat("1e400", 64) returns ErrRange (golang/go src/strconv/atof.go: "If s is
   * syntactically well-formed but is more than 1/2 ULP away from the largest floating point
   * number of the given size, ParseFloat returns f = ±Inf, err.Err = ErrRange"). */
  d = 7;
  assert_int_equal(evs_param_go_float("1e400", &d), EVS_ERANGE);
  assert_int_equal(evs_param_go_float("-1e999", &d), EVS_ERANGE);
  assert_true(d == 7);
  assert_int_equal(evs_param_go_float("1e-400", &d), 0); /* underflow: 0, no error */
  int b = -1;
  static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t k = 0; k < 6; k++) {
    assert_int_equal(evs_param_go_bool(yes[k], &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(evs_param_go_bool(no[k], &b), 0);
    assert_int_equal(b, 0);
  }
  assert_int_equal(evs_param_go_bool("yes", &b), UV_EINVAL);
  assert_int_equal(evs_param_go_bool("tRUE", &b), UV_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(trim_unicode_space),
      cmocka_unit_test(json_numbers),
      cmocka_unit_test(go_float_and_bool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
