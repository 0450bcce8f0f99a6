/* evs_intern: one copy per distinct string, refcounts, release frees, growth keeps lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "evscale/intern.h"

static void test_same_pointer_and_refs(void **state) {
  (void)state;
  evs_intern_t *t = NULL;
  assert_int_equal(evs_intern_new(&t), 0);
  char buf[] = "default";
  const char *a = evs_intern_str(t, buf);
  buf[0] = 'D'; /* the table holds its own copy */
  const char *b = evs_intern(t, "default", 7);
  assert_ptr_equal(a, b);
  assert_string_equal(a, "default");
  assert_int_equal(evs_intern_refs(a), 2);
  assert_int_equal(evs_intern_len(a), 7);
  const char *c = evs_intern_str(t, "Default");
  assert_ptr_not_equal(a, c);
  assert_int_equal(evs_intern_count(t), 2);
  assert_ptr_equal(evs_intern_ref(a), a);
  assert_int_equal(evs_intern_refs(a), 3);
  evs_intern_release(t, a);
  evs_intern_release(t, b);
  assert_int_equal(evs_intern_count(t), 2);
  evs_intern_release(t, a);
  assert_int_equal(evs_intern_count(t), 1); /* the last reference freed it */
  evs_intern_release(t, c);
  evs_intern_release(t, NULL);
  assert_int_equal(evs_intern_count(t), 0);
  evs_intern_free(t);
}

/* Length-delimited: a prefix and a string with an embedded NUL are distinct entries. */
static void test_lengths(void **state) {
  (void)state;
  evs_intern_t *t = NULL;
  assert_int_equal(evs_intern_new(&t), 0);
  const char *a = evs_intern(t, "abc", 3), *b = evs_intern(t, "abc", 2),
             *c = evs_intern(t, "ab\0c", 4), *e = evs_intern(t, "", 0);
  assert_ptr_not_equal(a, b);
  assert_ptr_not_equal(b, c);
  assert_string_equal(b, "ab");
  assert_int_equal(evs_intern_len(c), 4);
  assert_string_equal(e, "");
  assert_int_equal(evs_intern_count(t), 4);
  evs_intern_free(t); /* frees what is still held (ASan checks no leak) */
}

/* 100,000 distinct strings, twice each: the table grows and every lookup still finds the first
 * copy; releasing all of them empties it. */
static void test_many(void **state) {
  (void)state;
  enum { N = 100000 };
  evs_intern_t *t = NULL;
  assert_int_equal(evs_intern_new(&t), 0);
  static const char *p[N];
  char s[32];
  for (int i = 0; i < N; i++) {
    snprintf(s, sizeof s, "ns-%d", i);
    p[i] = evs_intern_str(t, s);
    assert_non_null(p[i]);
  }
  assert_int_equal(evs_intern_count(t), N);
  for (int i = 0; i < N; i++) {
    snprintf(s, sizeof s, "ns-%d", i);
    const char *q = evs_intern_str(t, s);
    if (q != p[i])
      fail_msg("%s interned twice", s);
    evs_intern_release(t, q);
    evs_intern_release(t, p[i]);
  }
  assert_int_equal(evs_intern_count(t), 0);
  evs_intern_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_pointer_and_refs),
      cmocka_unit_test(test_lengths),
      cmocka_unit_test(test_many),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
