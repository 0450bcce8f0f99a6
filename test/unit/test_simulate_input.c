/* `evscale simulate` against hostile readings files: control bytes are escaped when printed,
 * a header of 100,000 junk columns is one error, a UTF-8 byte-order mark is accepted, and a file
 * of bad rows prints a bounded number of lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evscale/simulate.h"

static char *write_tmp(const char *text, size_t len) {
  char *p = strdup("/tmp/evs_siminput_XXXXXX");
  int fd = mkstemp(p);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
  return p;
}

typedef struct {
  int rc;
  char *out, *err;
} res_t;

static const char so_yaml[] =
    "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: n}\n"
    "spec:\n  scaleTargetRef: {name: w}\n"
    "  triggers:\n  - {type: redis, name: q, metadata: {listName: q}}\n";

static void sim(res_t *r, const char *csv, size_t len) {
  char *y = write_tmp(so_yaml, strlen(so_yaml)), *c = write_tmp(csv, len);
  char *argv[] = {"simulate", y, c};
  size_t ol, el;
  FILE *out = open_memstream(&r->out, &ol), *err = open_memstream(&r->err, &el);
  r->rc = evs_simulate_run(3, argv, out, err);
  fclose(out);
  fclose(err);
  unlink(y);
  unlink(c);
  free(y);
  free(c);
}

static void res_free(res_t *r) {
  free(r->out);
  free(r->err);
}

static size_t lines(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

static int has_control(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if ((*p < 0x20 && *p != '\n') || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
      return 1;
  return 0;
}

/* An ESC sequence, a C1 CSI (U+009B), a bell and an invalid byte in a trigger name are printed
 * as \xNN; valid UTF-8 (é) is printed as it is. */
static void control_bytes_escaped(void **state) {
  (void)state;
  res_t r;
  static const char csv[] = "time,trigger,value\n0,\"a\x1b[31m\xc2\x9b\a\xff\xc3\xa9\",1\n";
  sim(&r, csv, sizeof csv - 1);
  assert_int_equal(r.rc, 1);
  assert_false(has_control(r.err));
  assert_non_null(strstr(r.err, "no trigger named 'a\\x1b[31m\\xc2\\x9b\\x07\\xff\xc3\xa9'"));
  res_free(&r);
}

/* 100,000 unknown columns: one line naming the first three and the count. */
static void many_unknown_columns_one_line(void **state) {
  (void)state;
  size_t cap = 2000000, o = 0;
  char *csv = malloc(cap);
  o += (size_t)snprintf(csv + o, cap - o, "time,trigger,value");
  for (int i = 0; i < 100000; i++)
    o += (size_t)snprintf(csv + o, cap - o, ",c%d", i);
  csv[o++] = '\n';
  res_t r;
  sim(&r, csv, o);
  free(csv);
  assert_int_equal(r.rc, 1);
  assert_int_equal(lines(r.err), 1);
  assert_non_null(strstr(r.err, ":1:20: unknown columns 'c0', 'c1', 'c2' and 99997 more"));
  res_free(&r);
  /* duplicates too, separately */
  static const char dup[] = "time,trigger,value,time,value\n";
  sim(&r, dup, sizeof dup - 1);
  assert_int_equal(r.rc, 1);
  assert_non_null(strstr(r.err, ":1:20: duplicate columns 'time', 'value' (expected"));
  assert_int_equal(lines(r.err), 1);
  res_free(&r);
}

/* A UTF-8 BOM before the header (spreadsheets write one) is not part of the column name. */
static void bom_accepted(void **state) {
  (void)state;
  res_t r;
  static const char csv[] = "\xef\xbb\xbftime,trigger,value\n0,q,5\n";
  sim(&r, csv, sizeof csv - 1);
  if (r.rc != 0)
    print_error("%s", r.err);
  assert_int_equal(r.rc, 0);
  assert_non_null(strstr(r.out, "Activate"));
  res_free(&r);
}

/* 150 bad rows: 100 printed, then one line with the rest's count. */
static void bad_rows_bounded(void **state) {
  (void)state;
  char csv[8192];
  size_t o = (size_t)snprintf(csv, sizeof csv, "time,trigger,value\n");
  for (int i = 0; i < 150; i++)
    o += (size_t)snprintf(csv + o, sizeof csv - o, "%d,nosuch,1\n", i);
  res_t r;
  sim(&r, csv, o);
  assert_int_equal(r.rc, 1);
  assert_int_equal(lines(r.err), 101);
  assert_non_null(strstr(r.err, ": 50 more rows with errors not shown\n"));
  res_free(&r);
}

/* A trigger in fallback is active (KEDA 2.19+, kedacore/keda #7244): from 0, failures 1 (not
 * > failureThreshold 1) hold; failure 2 activates 0 -> 1; a second later the HPA math with the
 * fallback metric (listLength 5 x replicas 5 = 25 -> ceil(25 / 5) = 5) is capped by the legacy
 * path at max(2 x 0, 4) = 4 (the count 15 s before was 0), and 15 s after that write at
 * max(2 x 4, 4) = 8, so 5. */
static void fallback_lifts_from_zero(void **state) {
  (void)state;
  static const char yaml[] =
      "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: n}\n"
      "spec:\n  scaleTargetRef: {name: w}\n  fallback: {failureThreshold: 1, replicas: 5}\n"
      "  triggers:\n  - {type: redis, name: q, metadata: {listName: q}}\n";
  static const char csv[] = "time,trigger,value,error\n0,q,,down\n10,q,,down\n";
  char *y = write_tmp(yaml, sizeof yaml - 1), *c = write_tmp(csv, sizeof csv - 1);
  char *argv[] = {"simulate", y, c, "--until", "40"};
  res_t r;
  size_t ol, el;
  FILE *out = open_memstream(&r.out, &ol), *err = open_memstream(&r.err, &el);
  r.rc = evs_simulate_run(5, argv, out, err);
  fclose(out);
  fclose(err);
  unlink(y);
  unlink(c);
  free(y);
  free(c);
  if (r.rc != 0)
    print_error("%s", r.err);
  assert_int_equal(r.rc, 0);
  assert_non_null(strstr(r.out, "    10.000      0      1  Activate"));
  assert_non_null(strstr(r.out, "    11.000      1      4  Fallback"));
  assert_non_null(strstr(r.out, "    26.000      4      5  Fallback"));
  assert_non_null(strstr(r.out, "    40.000      5      5  End"));
  res_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(control_bytes_escaped),
      cmocka_unit_test(many_unknown_columns_one_line),
      cmocka_unit_test(bom_accepted),
      cmocka_unit_test(bad_rows_bounded),
      cmocka_unit_test(fallback_lifts_from_zero),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
