/* scalingModifiers formulas. Expected values follow expr-lang/expr
 * (851b241a301f7c74646e65e4009c69cf290993a8) as cited in include/evscale/formula.h: operator
 * precedence from parser/operator/operator.go, `/` always float and `%` integer-only from
 * vm/runtime/helpers/main.go, type errors from checker/checker.go, builtins from
 * builtin/builtin.go and builtin/lib.go. Values worked out by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "evscale/error.h"
#include "evscale/formula.h"

/* Variables a, b, c, queue, rps (in order of first use in each formula, looked up by name). */
typedef struct {
  const char *name;
  double value;
  int ok;
} var_t;

static const var_t env[] = {{"a", 2, 1},     {"b", 3, 1},    {"c", -1.5, 1}, {"queue", 40, 1},
                            {"rps", 100, 1}, {"down", 7, 0}, {"x", 0, 1}};

static const var_t *find_var(const char *name) {
  for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
    if (strcmp(env[i].name, name) == 0)
      return &env[i];
  return NULL;
}

/* Binds every variable of f from env; unknown names fail the test. */
static int run(const char *src, double *out, int *is_nil, char *err, size_t errcap) {
  evs_formula_t *f;
  size_t col;
  char perr[200];
  int rc = evs_formula_parse(src, &f, &col, perr, sizeof perr);
  if (rc != 0) {
    print_error("parse of %s failed at col %zu: %s\n", src, col, perr);
    fail();
  }
  double vars[8];
  int ok[8];
  size_t n = evs_formula_var_count(f);
  assert_true(n <= 8);
  for (size_t i = 0; i < n; i++) {
    const var_t *v = find_var(evs_formula_var_name(f, i));
    assert_non_null(v);
    vars[i] = v->value;
    ok[i] = v->ok;
  }
  rc = evs_formula_eval_ex(f, vars, ok, out, is_nil, err, errcap);
  evs_formula_free(f);
  return rc;
}

static void want_value(const char *src, double want) {
  double got;
  int is_nil;
  char err[200];
  int rc = run(src, &got, &is_nil, err, sizeof err);
  if (rc != 0) {
    print_error("%s: eval failed: %s\n", src, err);
    fail();
  }
  assert_int_equal(is_nil, 0);
  if (isnan(want) ? !isnan(got) : got != want) {
    print_error("%s: got %.17g, want %.17g\n", src, got, want);
    fail();
  }
}

static void test_arithmetic(void **state) {
  (void)state;
  want_value("1 + 2 * 3", 7);
  want_value("(1 + 2) * 3", 9);
  want_value("10 - 4 - 3", 3); /* left associative */
  want_value("7 / 2", 3.5);    /* `/` always yields a float */
  want_value("7 % 3", 1);
  want_value("-7 % 3", -1);   /* Go truncates towards zero */
  want_value("2 * 3 % 4", 2); /* same precedence, left to right */
  want_value("-a * b", -6);   /* unary minus binds tighter */
  want_value("- - 3", 3);
  want_value("+a", 2);
  want_value("1_000 + 0x10 + 0o10 + 0b11", 1000 + 16 + 8 + 3);
  want_value("1.5e2 + .5", 150.5);
  want_value("queue / 10 + rps / 50", 6);
  want_value("9223372036854775807 + 1", (double)INT64_MIN); /* Go int wraps */
  want_value("1 / 0", INFINITY);                            /* Go float division */
  want_value("-1 / 0", -INFINITY);
  want_value("x / 0", NAN);
  want_value("a // a comment\n + 1 /* and another */", 3);
}

static void test_comparisons_logic(void **state) {
  (void)state;
  want_value("queue > 10 ? 1 : 0", 1);
  want_value("queue > 100 ? 1 : 0", 0);
  want_value("a < b < queue ? 5 : 6", 5); /* chained: a < b && b < queue */
  want_value("b < a < queue ? 5 : 6", 6);
  want_value("a == 2 && b != 2 ? 1 : 0", 1);
  want_value("a == 2 and not (b == 3) ? 1 : 0", 0);
  want_value("a > 5 || b > 2 ? 1 : 0", 1);
  want_value("a > 5 or b > 5 ? 1 : 0", 0);
  want_value("!(a > 1) ? 1 : 2", 2);
  want_value("1 == 1.0 ? 1 : 0", 1);         /* int and float compare by value */
  want_value("true ? 1 : false ? 2 : 3", 1); /* nested, right side */
  want_value("false ? 1 : false ? 2 : 3", 3);
  want_value("(a > 1 ?: false) ? 4 : 5", 4); /* elvis */
  /* && short-circuits: the nil operand on the right is never evaluated. */
  want_value("false && down > 1 ? 1 : 2", 2);
}

static void test_functions(void **state) {
  (void)state;
  want_value("max(a, b, queue)", 40);
  want_value("min(a, b, c)", -1.5);
  want_value("max(5)", 5);
  want_value("abs(c)", 1.5);
  want_value("abs(-3)", 3);
  want_value("ceil(7 / 2)", 4);
  want_value("floor(7 / 2)", 3);
  want_value("ceil(c)", -1);
  want_value("round(2.5)", 3);
  want_value("round(-2.5)", -3);
  want_value("float(3) / 2", 1.5);
  want_value("max(2, 5) % 3", 2); /* max of ints is an int */
  want_value("min(queue, 30) / 10 * max(1, rps / 100)", 3);
}

static void test_nil_coalescing(void **state) {
  (void)state;
  want_value("down ?? 4", 4);
  want_value("a ?? 4", 2);
  want_value("(down ?? 1) + a", 3);
  want_value("a + down ?? 1", 3); /* `??` binds tighter: a + (down ?? 1) */
  want_value("down ?? down ?? 6", 6);
  want_value("down == nil ? 9 : 8", 9);

  double out;
  int is_nil;
  char err[200];
  /* A nil result survives only with `??` (KEDA then uses fallback.replicas × target). */
  assert_int_equal(run("down ?? nil", &out, &is_nil, err, sizeof err), 0);
  assert_int_equal(is_nil, 1);
  assert_true(isnan(out));
  /* Without `??` a failed trigger poisons arithmetic, and the bare value is not a float. */
  assert_int_equal(run("down + 1", &out, &is_nil, err, sizeof err), EVS_EFORMULA);
  assert_non_null(strstr(err, "mismatched types nil and"));
  assert_int_equal(run("down", &out, &is_nil, err, sizeof err), EVS_EFORMULA);
  assert_int_equal(run("max(down, 1)", &out, &is_nil, err, sizeof err), EVS_EFORMULA);
  assert_non_null(strstr(err, "invalid argument for max"));
  assert_int_equal(run("5 % (a > 1 ? 0 : 1)", &out, &is_nil, err, sizeof err), EVS_EFORMULA);
  assert_string_equal(err, "integer divide by zero");
  /* The plain API reports a nil result as an error, since it has no way to say nil. */
  evs_formula_t *f;
  size_t col;
  assert_int_equal(evs_formula_parse("v ?? nil", &f, &col, err, sizeof err), 0);
  double v = 1;
  int ok = 0;
  assert_int_equal(evs_formula_eval(f, &v, &ok, &out), EVS_EFORMULA);
  ok = 1;
  assert_int_equal(evs_formula_eval(f, &v, &ok, &out), 0);
  assert_true(out == 1);
  assert_int_equal(evs_formula_eval(f, &v, NULL, &out), 0);
  evs_formula_free(f);
}

static void test_variables(void **state) {
  (void)state;
  evs_formula_t *f;
  size_t col;
  char err[200];
  assert_int_equal(evs_formula_parse("queue + rps * queue - $x + _y1", &f, &col, err, sizeof err),
                   0);
  assert_int_equal(evs_formula_var_count(f), 4);
  assert_string_equal(evs_formula_var_name(f, 0), "queue");
  assert_string_equal(evs_formula_var_name(f, 1), "rps");
  assert_string_equal(evs_formula_var_name(f, 2), "$x");
  assert_string_equal(evs_formula_var_name(f, 3), "_y1");
  assert_null(evs_formula_var_name(f, 4));
  double vars[] = {1, 2, 3, 4};
  double out;
  assert_int_equal(evs_formula_eval(f, vars, NULL, &out), 0);
  assert_true(out == 1 + 2 * 1 - 3 + 4);
  evs_formula_free(f);
}

/* Each bad formula with the 1-based column of the error and a fragment of the message. */
static const struct {
  const char *src;
  size_t col;
  const char *msg;
} bad[] = {
    {"", 1, "empty formula"},
    {"   ", 4, "empty formula"},
    {"1 +", 4, "unexpected end"},
    {"(1 + 2", 1, "parenthesis is not properly closed"},
    {"1 + 2)", 6, "unexpected token ')'"},
    {"queue % 2", 7, "mismatched types float64 and int"}, /* `%` is integer-only */
    {"2 ** 3", 3, "'**' is not supported"},
    {"2 ^ 3", 3, "'^' is not supported"},
    {"a in b", 3, "'in' is not supported"},
    {"queue-depth", 0, NULL}, /* valid: queue - depth */
    {"a ?? 0 + 1", 8, "cannot be mixed"},
    {"'x'", 1, "strings are not supported"},
    {"a.b", 2, "'.' is not supported"},
    {"a[0]", 2, "'[' is not supported"},
    {"sqrt(a)", 1, "unknown function sqrt"},
    {"max()", 1, "not enough arguments to call max"},
    {"abs(1, 2)", 1, "invalid number of arguments"},
    {"a > 1", 1, "type bool"},
    {"a + true", 3, "mismatched types float64 and bool"},
    {"!a", 1, "mismatched type float64"},
    {"a ? 1 : 2", 1, "non-bool expression"},
    {"1 == true ? 1 : 2", 3, "mismatched types int and bool"},
    {"nil", 1, "type nil"},
    {"99999999999999999999", 1, "invalid integer literal"},
    {"1e999", 1, "invalid float literal"},
    {"12abc", 1, "bad number syntax"},
    {"a # b", 3, "'#' is not supported"},
    {"a @ b", 3, "unrecognized character '@'"},
    {"max(a, b", 9, "unexpected end"},
    {"a + /* never closed", 5, "unclosed comment"},
    {"caf\xc3\xa9", 4, "unrecognized character"},
    {"let x = 1; x", 1, "'let' is not supported"},
    {"1 not 2", 3, "'not'"},
};

static void test_errors(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    evs_formula_t *f = (void *)1;
    size_t col = 99;
    char err[200];
    int rc = evs_formula_parse(bad[i].src, &f, &col, err, sizeof err);
    if (!bad[i].msg) {
      assert_int_equal(rc, 0);
      evs_formula_free(f);
      continue;
    }
    if (rc != EVS_EFORMULA || col != bad[i].col || !strstr(err, bad[i].msg)) {
      print_error("%s: rc %d col %zu (want %zu) msg '%s' (want '%s')\n", bad[i].src, rc, col,
                  bad[i].col, err, bad[i].msg);
      fail();
    }
    assert_null(f);
  }
}

static void test_depth_limit(void **state) {
  (void)state;
  char src[1024];
  size_t n = 0;
  for (int i = 0; i < 200; i++)
    src[n++] = '(';
  src[n++] = '1';
  for (int i = 0; i < 200; i++)
    src[n++] = ')';
  src[n] = '\0';
  evs_formula_t *f;
  size_t col;
  char err[200];
  assert_int_equal(evs_formula_parse(src, &f, &col, err, sizeof err), EVS_EFORMULA);
  assert_non_null(strstr(err, "nested too deeply"));
  assert_true(col > 1 && col <= 200);
  /* A long flat sum is not deep: it parses. */
  n = 0;
  for (int i = 0; i < 300; i++)
    n += (size_t)snprintf(src + n, sizeof src - n, "%s1", i ? "+" : "");
  assert_int_equal(evs_formula_parse(src, &f, &col, err, sizeof err), 0);
  double out;
  assert_int_equal(evs_formula_eval(f, NULL, NULL, &out), 0);
  assert_true(out == 300);
  evs_formula_free(f);
  /* A chain of 600 terms is too long to evaluate recursively: rejected with its column. */
  static char big[4096];
  n = 0;
  for (int i = 0; i < 600; i++)
    n += (size_t)snprintf(big + n, sizeof big - n, "%s1", i ? "+" : "");
  assert_int_equal(evs_formula_parse(big, &f, &col, err, sizeof err), EVS_EFORMULA);
  assert_non_null(strstr(err, "formula too long"));
  assert_int_equal(col, 2 * 512); /* the 512th '+' */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arithmetic),  cmocka_unit_test(test_comparisons_logic),
      cmocka_unit_test(test_functions),   cmocka_unit_test(test_nil_coalescing),
      cmocka_unit_test(test_variables),   cmocka_unit_test(test_errors),
      cmocka_unit_test(test_depth_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
