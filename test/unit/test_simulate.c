/* `evscale simulate` and its CSV reader. The examples are the README's (test/data/simulate);
 * their expected timelines (*.expected) were worked out by hand from the rules, not taken from
 * the program's output:
 *
 * queue-spike (redis listLength 5, min 0, max 10, cooldownPeriod 60, behavior without
 * stabilization and with non-limiting policies, so desired = ceil(queue / 5) outside the 10 %
 * tolerance; KEDA's RequestScale does 0 -> 1 and back to 0):
 *   t=0   queue 0: inactive (0 is not > activation 0), at 0: nothing.
 *   t=10  queue 4: active at 0 -> max(min, 1) = 1 (Activate). lastActive = 10. The HPA then
 *         sees ratio 4 / (5 x 1) = 0.8 -> ceil(4/5) = 1: no further change.
 *   t=20  queue 40: ratio 40 / (5 x 1) = 8, outside tolerance -> ceil(40/5) = 8 (Metrics).
 *   t=40  queue 20: ratio 20 / (5 x 8) = 0.5 -> ceil(20/5) = 4 (Metrics).
 *   t=50  queue 18: ratio 18 / (5 x 4) = 0.9, |1 - 0.9| <= 0.1 (inclusive): keep 4.
 *   t=70  queue 3: ratio 3 / 20 = 0.15 -> ceil(3/5) = 1 (Metrics). Still active: lastActive 70.
 *   t=80  queue 0: inactive; min 0 and current 1 > 0: to 0 once lastActive + cooldown (130 s)
 *         has passed (KEDA: strictly after) -> 1 -> 0 (Deactivate) at 130 s (or 1 ms later,
 *         the first instant strictly after; the comparison allows 1.5 ms), with no reading then:
 *         the engine's next-evaluation time drives it.
 *   End at the last reading, 200 s.
 *
 * flapping (redis listLength 10, min 1, max 10, same behavior; load 50 / 10 alternating every
 * 10 s; breaker defaults: 3 events a minute, 60 s cooldown, 10 fallback replicas):
 *   t=0   50: ratio 50 / (10 x 1) = 5 -> 5 (event 1, up).
 *   t=10  10: ratio 10 / 50 = 0.2 -> ceil(10/10) = 1 (event 2, down).
 *   t=20  50: -> 5 (event 3, up).
 *   t=30  10: -> 1 would be event 4 within 60 s: BreakerTrip; the fallback HPA holds
 *         max(5, 10) = 10 (within max 10). Open until 30 + 60 = 90.
 *   t=40..80: held, nothing written.
 *   t=90  10: cooldown over: BreakerClose; current 10, ratio 10 / 100 = 0.1 -> 1 (Metrics,
 *         event 1 of a new window).
 *   t=100 50: -> 5 (event 2). t=110 10: -> 1 (event 3).
 *   t=120 50: -> 5 would be event 4: BreakerTrip again, 30 s after the close (< one 60 s
 *         cooldown): the cooldown doubles to 120 s. The fallback HPA holds max(1, 10) = 10.
 *   End at 120 s.
 *
 * modifiers (formula max(queue / 5, (rps ?? 0) / 100), target 1, AverageValue; min 1, max 20;
 * default scale-up policies: max(4 pods, 100 %) per 15 s; scale-down window 0):
 *   t=0   queue 10, rps 250: composite max(2, 2.5) = 2.5; ratio 2.5 / (1 x 1) -> ceil(2.5) = 3;
 *         the scale-up limit from 1 is max(1 + 4, 2 x 1) = 5: 1 -> 3.
 *   t=30  queue 40: composite max(8, 2.5) = 8 -> 8; no scale-up in the last 15 s, limit from 3
 *         is max(3 + 4, 6) = 7: 3 -> 7 (rate-limited).
 *   t=45  the +4 event of t=30 leaves its 15 s period (the HPA counts events strictly after
 *         now - period): limit max(7 + 4, 14) = 11 -> 8: 7 -> 8, with no new reading.
 *   t=60  queue 0, rps failed: not active (0 is not > 0; a failed trigger is not active) with a
 *         failing trigger and no fallback: KEDA holds (no scale-in). End at 8.
 *
 * flapping-default-behavior: the same load without `behavior`: the HPA's default 300 s
 * scale-down window keeps the highest recommendation of the last 300 s, so within these 120 s
 * nothing scales down and the breaker cannot trip (include/evscale/breaker.h). */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "evscale/csv.h"
#include "evscale/error.h"
#include "evscale/simulate.h"
#include "test_data.h"

typedef struct {
  double time;
  int from, to;
  char event[32];
} row_t;

typedef struct {
  int rc;
  char *out, *err;
  row_t rows[256];
  size_t n;
} result_t;

static const char *data_dir(void) { return evs_test_data(); }

static char *path_of(const char *name) {
  char *p;
  assert_true(asprintf(&p, "%s/simulate/%s", data_dir(), name) > 0);
  return p;
}

/* Runs simulate with argv (argv[0] "simulate" added) and collects both streams. */
static void run_sim(result_t *r, int argc, const char *const *args) {
  char *argv[16];
  size_t olen, elen;
  argv[0] = "simulate";
  for (int i = 0; i < argc; i++)
    argv[i + 1] = (char *)args[i];
  FILE *out = open_memstream(&r->out, &olen), *err = open_memstream(&r->err, &elen);
  r->rc = evs_simulate_run(argc + 1, argv, out, err);
  fclose(out);
  fclose(err);
  r->n = 0;
}

static void free_result(result_t *r) {
  free(r->out);
  free(r->err);
}

/* Parses JSON Lines output into rows. */
static void parse_json_rows(result_t *r) {
  char *save = NULL;
  for (char *line = strtok_r(r->out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    json_error_t jerr;
    json_t *o = json_loads(line, 0, &jerr);
    if (!o) {
      print_error("not JSON: %s\n", line);
      fail();
    }
    row_t *row = &r->rows[r->n++];
    assert_true(r->n < 256);
    row->time = json_real_value(json_object_get(o, "time"));
    row->from = (int)json_integer_value(json_object_get(o, "from"));
    row->to = (int)json_integer_value(json_object_get(o, "to"));
    snprintf(row->event, sizeof row->event, "%s", json_string_value(json_object_get(o, "event")));
    assert_non_null(json_object_get(o, "detail"));
    json_decref(o);
  }
}

static void run_example(const char *yaml, const char *csv, const char *expected) {
  char *y = path_of(yaml), *c = path_of(csv), *e = path_of(expected);
  const char *args[] = {y, c, "--format", "json"};
  result_t r;
  run_sim(&r, 4, args);
  if (r.rc != 0) {
    print_error("exit %d: %s\n", r.rc, r.err);
    fail();
  }
  parse_json_rows(&r);
  FILE *f = fopen(e, "r");
  assert_non_null(f);
  char line[256];
  size_t k = 0;
  while (fgets(line, sizeof line, f)) {
    row_t want;
    if (line[0] == '#' ||
        sscanf(line, "%lf %d %d %31s", &want.time, &want.from, &want.to, want.event) != 4)
      continue;
    if (k >= r.n) {
      print_error("%s: missing row %zu (%s at %g)\n", expected, k, want.event, want.time);
      fail();
    }
    const row_t *got = &r.rows[k++];
    if (fabs(got->time - want.time) > 0.0015 || got->from != want.from || got->to != want.to ||
        strcmp(got->event, want.event) != 0) {
      print_error("%s row %zu: got %.3f %d %d %s, want %.3f %d %d %s\n%s", expected, k - 1,
                  got->time, got->from, got->to, got->event, want.time, want.from, want.to,
                  want.event, r.out);
      fail();
    }
  }
  fclose(f);
  assert_int_equal(k, r.n);
  free_result(&r);
  free(y);
  free(c);
  free(e);
}

static void test_queue_spike(void **state) {
  (void)state;
  run_example("queue-spike.yaml", "queue-spike.csv", "queue-spike.expected");
}

static void test_flapping_trips(void **state) {
  (void)state;
  run_example("flapping.yaml", "flapping.csv", "flapping.expected");
}

static void test_scaling_modifiers(void **state) {
  (void)state;
  run_example("modifiers.yaml", "modifiers.csv", "modifiers.expected");
}

static void test_flapping_default_behavior_never_trips(void **state) {
  (void)state;
  char *y = path_of("flapping-default-behavior.yaml"), *c = path_of("flapping.csv");
  const char *args[] = {y, c, "--format=json"};
  result_t r;
  run_sim(&r, 3, args);
  assert_int_equal(r.rc, 0);
  parse_json_rows(&r);
  int ups = 0;
  for (size_t i = 0; i < r.n; i++) {
    assert_string_not_equal(r.rows[i].event, "BreakerTrip");
    assert_true(r.rows[i].to >= r.rows[i].from); /* nothing scales down within 300 s */
    ups += r.rows[i].to > r.rows[i].from;
  }
  assert_true(ups >= 1);
  assert_string_equal(r.rows[r.n - 1].event, "End");
  free_result(&r);
  free(y);
  free(c);
}

static void test_text_format_and_options(void **state) {
  (void)state;
  char *y = path_of("queue-spike.yaml"), *c = path_of("queue-spike.csv");
  const char *args[] = {y, c, "--replicas", "3", "--until", "20"};
  result_t r;
  run_sim(&r, 6, args);
  assert_int_equal(r.rc, 0);
  /* Header, then Start at 3 replicas, and the run stops at 20 s. */
  assert_memory_equal(r.out, "      TIME   FROM     TO  EVENT              DETAIL\n", 51);
  assert_non_null(strstr(r.out, "\n     0.000      3      3  Start              --replicas\n"));
  assert_non_null(strstr(r.out, "    20.000      "));
  assert_null(strstr(r.out, "    40.000  "));
  free_result(&r);
  /* Without the breaker the flapping series is written as it comes: no trip. */
  char *fy = path_of("flapping.yaml"), *fc = path_of("flapping.csv");
  const char *nb[] = {fy, fc, "--no-breaker"};
  run_sim(&r, 3, nb);
  assert_int_equal(r.rc, 0);
  assert_null(strstr(r.out, "BreakerTrip"));
  free_result(&r);
  /* Reversals every 10 s put 6 events in any 60 s window (the one 60 s old has just left
   * it): a limit of 6 is never exceeded, a limit of 5 is at the 6th event, at 50 s. */
  const char *me[] = {fy, fc, "--max-scale-events", "6", "--format", "json"};
  run_sim(&r, 6, me);
  assert_int_equal(r.rc, 0);
  assert_null(strstr(r.out, "BreakerTrip"));
  free_result(&r);
  me[3] = "5";
  run_sim(&r, 6, me);
  assert_int_equal(r.rc, 0);
  parse_json_rows(&r);
  int tripped_at = -1;
  for (size_t i = 0; i < r.n; i++)
    if (strcmp(r.rows[i].event, "BreakerTrip") == 0 && tripped_at < 0)
      tripped_at = (int)lround(r.rows[i].time);
  assert_int_equal(tripped_at, 50);
  free_result(&r);
  free(fy);
  free(fc);
  free(y);
  free(c);
}

static void test_input_errors(void **state) {
  (void)state;
  char *y = path_of("queue-spike.yaml"), *bad = path_of("bad-readings.csv");
  const char *args[] = {y, bad};
  result_t r;
  run_sim(&r, 2, args);
  assert_int_equal(r.rc, 1);
  assert_string_equal(r.out, "");
  /* Every problem, each with file:line:col. */
  char want[512];
  snprintf(want, sizeof want, "%s:3:3: trigger: no trigger named 'nosuch'", bad);
  assert_non_null(strstr(r.err, want));
  snprintf(want, sizeof want, "%s:4:1: time: expected seconds >= 0, got '-1'", bad);
  assert_non_null(strstr(r.err, want));
  snprintf(want, sizeof want, "%s:5:10: value: expected a number, got 'abc'", bad);
  assert_non_null(strstr(r.err, want));
  assert_null(strstr(r.err, ":6:")); /* an error row needs no value */
  free_result(&r);

  char *inv = path_of("invalid.yaml"), *c = path_of("queue-spike.csv");
  const char *a2[] = {inv, c};
  run_sim(&r, 2, a2);
  assert_int_equal(r.rc, 1);
  snprintf(want, sizeof want, "%s:", inv);
  assert_non_null(strstr(r.err, want)); /* file:line:col from the model's validator */
  assert_non_null(strstr(r.err, "listName"));
  free_result(&r);

  const char *a3[] = {"/nonexistent/so.yaml", c};
  run_sim(&r, 2, a3);
  assert_int_equal(r.rc, 1);
  assert_non_null(strstr(r.err, "/nonexistent/so.yaml: cannot read: no such file or directory"));
  free_result(&r);
  free(inv);
  free(c);
  free(y);
  free(bad);
}

static void test_usage_errors(void **state) {
  (void)state;
  static const struct {
    int argc;
    const char *args[4];
    const char *msg;
  } cases[] = {
      {0, {NULL}, "expected SCALEDOBJECT.yaml and READINGS.csv"},
      {1, {"a.yaml"}, "expected SCALEDOBJECT.yaml"},
      {3, {"a.yaml", "b.csv", "c"}, "unexpected argument 'c'"},
      {4, {"a.yaml", "b.csv", "--format", "xml"}, "--format: expected text or json"},
      {4, {"a.yaml", "b.csv", "--replicas", "-1"}, "--replicas: expected"},
      {3, {"a.yaml", "b.csv", "--replicas"}, "unknown or incomplete option '--replicas'"},
      {3, {"a.yaml", "b.csv", "--bogus"}, "unknown or incomplete option '--bogus'"},
      {4, {"a.yaml", "b.csv", "--max-scale-events", "0"}, "--max-scale-events: expected 1..28"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    result_t r;
    run_sim(&r, cases[i].argc, cases[i].args);
    assert_int_equal(r.rc, 2);
    if (!strstr(r.err, cases[i].msg) || !strstr(r.err, "Usage: evscale simulate")) {
      print_error("case %zu: %s\n", i, r.err);
      fail();
    }
    free_result(&r);
  }
}

/* The real binary dispatches `evscale simulate` here (skipped when EVS_BINARY is not set). */
static void test_binary(void **state) {
  (void)state;
  const char *bin = getenv("EVS_BINARY");
  if (!bin) {
    skip();
    return;
  }
  char *y = path_of("queue-spike.yaml"), *c = path_of("queue-spike.csv"), *cmd;
  assert_true(asprintf(&cmd, "'%s' simulate '%s' '%s' --format json", bin, y, c) > 0);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  buf[n] = '\0';
  assert_int_equal(pclose(p), 0);
  assert_non_null(strstr(buf, "{\"time\":130.001,\"from\":1,\"to\":0,\"event\":\"Deactivate\""));
  free(cmd);
  assert_true(asprintf(&cmd, "'%s' simulate '%s' 2>/dev/null", bin, y) > 0);
  p = popen(cmd, "r");
  assert_non_null(p);
  int st = pclose(p);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
  free(cmd);
  free(y);
  free(c);
}

/* ---- the CSV reader ------------------------------------------------------------------------ */

static void test_csv_rfc4180(void **state) {
  (void)state;
  const char *src = "time,trigger,value\r\n"
                    "1.5,\"a,b\",\"say \"\"hi\"\"\"\r\n"
                    "2,\"multi\nline\",\r\n"
                    ",,3";
  evs_csv_t csv;
  uint32_t line, col;
  char err[128];
  assert_int_equal(evs_csv_parse(src, strlen(src), &csv, &line, &col, err, sizeof err), 0);
  assert_int_equal(csv.n_records, 4);
  assert_int_equal(csv.n_cols, 3);
  assert_string_equal(evs_csv_text(&csv, 0, 2), "value");
  assert_string_equal(evs_csv_text(&csv, 1, 1), "a,b");
  assert_string_equal(evs_csv_text(&csv, 1, 2), "say \"hi\"");
  assert_string_equal(evs_csv_text(&csv, 2, 1), "multi\nline");
  assert_string_equal(evs_csv_text(&csv, 2, 2), "");
  assert_string_equal(evs_csv_text(&csv, 3, 0), "");
  assert_string_equal(evs_csv_text(&csv, 3, 2), "3");
  assert_null(evs_csv_text(&csv, 4, 0));
  assert_null(evs_csv_text(&csv, 0, 3));
  const evs_csv_field_t *f = evs_csv_at(&csv, 3, 2);
  assert_int_equal(f->line, 5); /* the quoted newline counts as a line */
  assert_int_equal(f->col, 3);
  f = evs_csv_at(&csv, 1, 2);
  assert_int_equal(f->line, 2);
  assert_int_equal(f->col, 11);
  evs_csv_free(&csv);

  /* One trailing newline ends the file; "a," has a trailing empty field. */
  assert_int_equal(evs_csv_parse("a,b\n1,\n", 7, &csv, &line, &col, err, sizeof err), 0);
  assert_int_equal(csv.n_records, 2);
  assert_string_equal(evs_csv_text(&csv, 1, 1), "");
  evs_csv_free(&csv);
  assert_int_equal(evs_csv_parse("a,b\n1,", 6, &csv, &line, &col, err, sizeof err), 0);
  assert_int_equal(csv.n_records, 2);
  evs_csv_free(&csv);
}

static void test_csv_errors(void **state) {
  (void)state;
  static const struct {
    const char *src;
    uint32_t line, col;
    const char *msg;
  } bad[] = {
      {"", 1, 1, "empty file"},
      {"a,b\n1\n", 2, 2, "record has 1 fields, the header has 2"},
      {"a,b\n1,2,3\n", 2, 5, "more than the header's 2 fields"},
      {"a,b\n1,2\n\n", 3, 1, "record has 1 fields"},
      {"a,b\n1,x\"y\n", 2, 4, "quote inside an unquoted field"},
      {"a,b\n1,\"xy\"z\n", 2, 7, "expected ',' or end of line"},
      {"a,b\n1,\"xy\n\n", 2, 3, "quoted field is not closed"},
      {"a,b\r1,2\n", 1, 4, "bare CR"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    evs_csv_t csv;
    uint32_t line = 0, col = 0;
    char err[128];
    int rc = evs_csv_parse(bad[i].src, strlen(bad[i].src), &csv, &line, &col, err, sizeof err);
    if (rc != EVS_EPARSE || line != bad[i].line || col != bad[i].col || !strstr(err, bad[i].msg)) {
      print_error("case %zu: rc %d at %u:%u '%s'\n", i, rc, line, col, err);
      fail();
    }
    assert_null(csv.text);
  }
  evs_csv_t csv;
  uint32_t line, col;
  char err[128];
  assert_int_equal(evs_csv_parse("a\n\0", 3, &csv, &line, &col, err, sizeof err), EVS_EPARSE);
  assert_int_equal(line, 2);
  assert_non_null(strstr(err, "NUL"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_csv_rfc4180),
      cmocka_unit_test(test_csv_errors),
      cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_input_errors),
      cmocka_unit_test(test_queue_spike),
      cmocka_unit_test(test_flapping_trips),
      cmocka_unit_test(test_scaling_modifiers),
      cmocka_unit_test(test_flapping_default_behavior_never_trips),
      cmocka_unit_test(test_binary),
      cmocka_unit_test(test_text_format_and_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
