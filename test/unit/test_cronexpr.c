/* Cron expressions and the cron window: parsing, Next and KEDA's activity rule.
 *
 * Sources of the expectations:
 * - robfig/cron @ ccba498c397bb90a9c84945bbb0f7af2d72b6309 (v3.0.1, what KEDA uses): parser.go
 *   (grammar, error texts), spec.go (Next, dayMatches), spec_test.go TestNext / TestActivation
 *   (the table below: their 6-field specs with the seconds field "0" dropped, their instants
 *   converted to Unix seconds; times without an offset are read as UTC);
 * - kedacore/keda @ 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a pkg/scalers/cron_scaler.go
 *   (GetMetricsAndActivity) and cron_scaler_test.go (the Thursday window);
 * - the DST window cases were worked out by hand from spec.go and tzdata 2025b, and every value
 *   in this file was also checked against robfig v3.0.1 running on Go 1.19. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/cron.h"
#include "evscale/cronexpr.h"
#include "evscale/error.h"
#include "evscale/tz.h"
#include "test_data.h"

static const evs_tz_t *zone(const char *rel) {
  char path[1024];
  const char *dir = evs_test_data();
  snprintf(path, sizeof path, "%s/zoneinfo/%s", dir, rel);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    fail_msg("cannot open %s", path);
  static uint8_t buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  evs_tz_t *tz = NULL;
  assert_int_equal(evs_tz_parse(buf, n, rel, &tz), 0);
  return tz;
}

static evs_cronexpr_t parse_ok(const char *spec) {
  evs_cronexpr_t e;
  char err[256];
  if (evs_cronexpr_parse(spec, &e, err, sizeof err) != 0)
    fail_msg("'%s' rejected: %s", spec, err);
  return e;
}

#define B(n) ((uint64_t)1 << (n))
#define STAR EVS_CRONEXPR_STAR

static void test_parse_fields(void **state) {
  (void)state;
  static const struct {
    const char *spec;
    struct {
      uint64_t minute, hour, dom, month, dow;
    } want;
  } t[] = {
      /* '*' sets every bit plus the star bit; a step > 1 drops the star bit. */
      {"* * * * *",
       {0x0fffffffffffffffULL | STAR, 0xffffffULL | STAR, 0xfffffffeULL | STAR, 0x1ffeULL | STAR,
        0x7fULL | STAR}},
      {"*/15 9-17 1,15 jan-mar MON-fri",
       {B(0) | B(15) | B(30) | B(45), 0x3fe00ULL, B(1) | B(15), B(1) | B(2) | B(3), 0x3eULL}},
      /* "N/step" is N-max/step; "?" is "*"; "*\/1" keeps the star bit. */
      {"5/20 ? */1 Dec sun,SAT",
       {B(5) | B(25) | B(45), 0xffffffULL | STAR, 0xfffffffeULL | STAR, B(12), B(0) | B(6)}},
      /* Empty list items are skipped (strings.FieldsFunc); "+5" is an int for strconv.Atoi. */
      {"1,,2 +5 ,3, 1-12/5 0-6/3",
       {B(1) | B(2), B(5), B(3), B(1) | B(6) | B(11), B(0) | B(3) | B(6)}},
      /* Any Unicode white space separates fields, as strings.Fields splits them. */
      {"0\t8\xc2\xa0* *\xe3\x80\x80*",
       {B(0), B(8), 0xfffffffeULL | STAR, 0x1ffeULL | STAR, 0x7fULL | STAR}},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_cronexpr_t e = parse_ok(t[i].spec);
    const __typeof__(t[i].want) *w = &t[i].want;
    if (e.minute != w->minute || e.hour != w->hour || e.dom != w->dom || e.month != w->month ||
        e.dow != w->dow || e.has_zone)
      fail_msg("'%s': got %llx %llx %llx %llx %llx", t[i].spec, (unsigned long long)e.minute,
               (unsigned long long)e.hour, (unsigned long long)e.dom, (unsigned long long)e.month,
               (unsigned long long)e.dow);
  }
}

/* robfig's zone prefix: recorded, the rest parsed as usual. */
static void test_parse_zone_prefix(void **state) {
  (void)state;
  evs_cronexpr_t e = parse_ok("TZ=Europe/Berlin 0 8 * * *");
  assert_true(e.has_zone);
  assert_string_equal(e.zone, "Europe/Berlin");
  assert_int_equal(e.hour, B(8));
  e = parse_ok("CRON_TZ=America/New_York   30 2 * * *");
  assert_string_equal(e.zone, "America/New_York");
  assert_int_equal(e.minute, B(30));
  e = parse_ok("TZ= 0 8 * * *"); /* Go's LoadLocation("") is UTC */
  assert_true(e.has_zone);
  assert_string_equal(e.zone, "");
}

/* One spec per error class, with robfig's message. */
static void test_parse_errors(void **state) {
  (void)state;
  static const struct {
    const char *spec, *msg;
  } t[] = {
      {"", "empty spec string"},
      {"0 8 * *", "expected exactly 5 fields, found 4: [0 8 * *]"},
      {"0 0 8 * * *", "expected exactly 5 fields, found 6: [0 0 8 * * *]"},
      {"@daily", "parser does not accept descriptors: @daily"},
      {"TZ=Europe/Berlin", "provided bad location: no space after the zone in TZ=Europe/Berlin"},
      {"TZ=../etc 0 8 * * *", "provided bad location ../etc: time: invalid location name"},
      {"CRON_TZ=UTC @daily", "parser does not accept descriptors: @daily"},
      {"60 * * * *", "end of range (60) above maximum (59): 60"},
      {"0 24 * * *", "end of range (24) above maximum (23): 24"},
      {"0 0 0 * *", "beginning of range (0) below minimum (1): 0"},
      {"0 0 * 13 *", "end of range (13) above maximum (12): 13"},
      {"0 0 * * 7", "end of range (7) above maximum (6): 7"},
      {"5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"},
      {"1-2-3 * * * *", "too many hyphens: 1-2-3"},
      {"1/2/3 * * * *", "too many slashes: 1/2/3"},
      {"*/0 * * * *", "step of range should be a positive number: */0"},
      {"x * * * *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"},
      {"-30 * * * *", "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax"},
      {"*/-1 * * * *", "negative number (-1) not allowed: -1"},
      {"99999999999999999999 * * * *",
       "failed to parse int from 99999999999999999999: strconv.Atoi: parsing "
       "\"99999999999999999999\": value out of range"},
      {"0 0 * january *", "failed to parse int from january: strconv.Atoi: parsing \"january\": "
                          "invalid syntax"},
      {"0 0 * * mon/x", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    evs_cronexpr_t e;
    char err[256];
    int rc = evs_cronexpr_parse(t[i].spec, &e, err, sizeof err);
    if (rc != EVS_ECRON || strcmp(err, t[i].msg) != 0)
      fail_msg("'%s': rc %d, '%s', want '%s'", t[i].spec, rc, err, t[i].msg);
  }
}

typedef struct {
  const char *zone, *spec;
  int64_t from, want;
} next_case_t;

/* robfig spec_test.go TestNext, 5-field. */
static const next_case_t robfig_next[] = {
    {"Etc/UTC", "0/15 * * * *", 1341845100,
     1341846000}, /* Mon Jul 9 14:45 2012 -> Mon Jul 9 15:00 2012 */
    {"Etc/UTC", "0/15 * * * *", 1341845940,
     1341846000}, /* Mon Jul 9 14:59 2012 -> Mon Jul 9 15:00 2012 */
    {"Etc/UTC", "0/15 * * * *", 1341845999,
     1341846000}, /* Mon Jul 9 14:59:59 2012 -> Mon Jul 9 15:00 2012 */
    {"Etc/UTC", "20-35/15 * * * *", 1341848700,
     1341850800}, /* Mon Jul 9 15:45 2012 -> Mon Jul 9 16:20 2012 */
    {"Etc/UTC", "*/15 * * * *", 1341877560,
     1341878400}, /* Mon Jul 9 23:46 2012 -> Tue Jul 10 00:00 2012 */
    {"Etc/UTC", "20-35/15 * * * *", 1341877500,
     1341879600}, /* Mon Jul 9 23:45 2012 -> Tue Jul 10 00:20 2012 */
    {"Etc/UTC", "20-35/15 1/2 * * *", 1341876951,
     1341883200}, /* Mon Jul 9 23:35:51 2012 -> Tue Jul 10 01:20 2012 */
    {"Etc/UTC", "20-35/15 10-12 * * *", 1341876951,
     1341915600}, /* Mon Jul 9 23:35:51 2012 -> Tue Jul 10 10:20 2012 */
    {"Etc/UTC", "20-35/15 1/2 */2 * *", 1341876951,
     1341969600}, /* Mon Jul 9 23:35:51 2012 -> Thu Jul 11 01:20 2012 */
    {"Etc/UTC", "20-35/15 * 9-20 Jul *", 1341876951,
     1341879600}, /* Mon Jul 9 23:35:51 2012 -> Wed Jul 10 00:20 2012 */
    {"Etc/UTC", "0 0 9 Apr-Oct ?", 1341876900,
     1344470400}, /* Mon Jul 9 23:35 2012 -> Thu Aug 9 00:00 2012 */
    {"Etc/UTC", "0 0 */5 Apr,Aug,Oct Mon", 1341876900,
     1343779200}, /* Mon Jul 9 23:35 2012 -> Tue Aug 1 00:00 2012 */
    {"Etc/UTC", "0 0 */5 Oct Mon", 1341876900,
     1349049600}, /* Mon Jul 9 23:35 2012 -> Mon Oct 1 00:00 2012 */
    {"Etc/UTC", "0 0 * Feb Mon", 1341876900,
     1359936000}, /* Mon Jul 9 23:35 2012 -> Mon Feb 4 00:00 2013 */
    {"Etc/UTC", "0 0 * Feb Mon/2", 1341876900,
     1359676800}, /* Mon Jul 9 23:35 2012 -> Fri Feb 1 00:00 2013 */
    {"Etc/UTC", "* * * * *", 1356998385,
     1356998400}, /* Mon Dec 31 23:59:45 2012 -> Tue Jan 1 00:00:00 2013 */
    {"Etc/UTC", "0 0 29 Feb ?", 1341876900,
     1456704000}, /* Mon Jul 9 23:35 2012 -> Mon Feb 29 00:00 2016 */
    {"America/New_York", "30 2 11 Mar ?", 1331442000,
     1362983400}, /* 2012-03-11T00:00:00-0500 -> 2013-03-11T02:30:00-0400 */
    {"America/New_York", "0 * * * ?", 1331442000,
     1331445600}, /* 2012-03-11T00:00:00-0500 -> 2012-03-11T01:00:00-0500 */
    {"America/New_York", "0 * * * ?", 1331445600,
     1331449200}, /* 2012-03-11T01:00:00-0500 -> 2012-03-11T03:00:00-0400 */
    {"America/New_York", "0 * * * ?", 1331449200,
     1331452800}, /* 2012-03-11T03:00:00-0400 -> 2012-03-11T04:00:00-0400 */
    {"America/New_York", "0 1 * * ?", 1331442000,
     1331445600}, /* 2012-03-11T00:00:00-0500 -> 2012-03-11T01:00:00-0500 */
    {"America/New_York", "0 1 * * ?", 1331445600,
     1331528400}, /* 2012-03-11T01:00:00-0500 -> 2012-03-12T01:00:00-0400 */
    {"America/New_York", "0 2 * * ?", 1331442000,
     1331532000}, /* 2012-03-11T00:00:00-0500 -> 2012-03-12T02:00:00-0400 */
    {"America/New_York", "30 2 04 Nov ?", 1352001600,
     1352014200}, /* 2012-11-04T00:00:00-0400 -> 2012-11-04T02:30:00-0500 */
    {"America/New_York", "30 1 04 Nov ?", 1352007900,
     1352010600}, /* 2012-11-04T01:45:00-0400 -> 2012-11-04T01:30:00-0500 */
    {"America/New_York", "0 * * * ?", 1352001600,
     1352005200}, /* 2012-11-04T00:00:00-0400 -> 2012-11-04T01:00:00-0400 */
    {"America/New_York", "0 * * * ?", 1352005200,
     1352008800}, /* 2012-11-04T01:00:00-0400 -> 2012-11-04T01:00:00-0500 */
    {"America/New_York", "0 * * * ?", 1352008800,
     1352012400}, /* 2012-11-04T01:00:00-0500 -> 2012-11-04T02:00:00-0500 */
    {"America/New_York", "0 1 * * ?", 1352001600,
     1352005200}, /* 2012-11-04T00:00:00-0400 -> 2012-11-04T01:00:00-0400 */
    {"America/New_York", "0 1 * * ?", 1352005200,
     1352008800}, /* 2012-11-04T01:00:00-0400 -> 2012-11-04T01:00:00-0500 */
    {"America/New_York", "0 1 * * ?", 1352008800,
     1352095200}, /* 2012-11-04T01:00:00-0500 -> 2012-11-05T01:00:00-0500 */
    {"America/New_York", "0 2 * * ?", 1352001600,
     1352012400}, /* 2012-11-04T00:00:00-0400 -> 2012-11-04T02:00:00-0500 */
    {"America/New_York", "0 2 * * ?", 1352012400,
     1352098800}, /* 2012-11-04T02:00:00-0500 -> 2012-11-05T02:00:00-0500 */
    {"America/New_York", "0 3 * * ?", 1352001600,
     1352016000}, /* 2012-11-04T00:00:00-0400 -> 2012-11-04T03:00:00-0500 */
    {"America/New_York", "0 3 * * ?", 1352016000,
     1352102400}, /* 2012-11-04T03:00:00-0500 -> 2012-11-05T03:00:00-0500 */
    {"America/New_York", "0 3 3 * ?", 1352001600,
     1354521600}, /* 2012-11-04T00:00:00-0400 -> 2012-12-03T03:00:00-0500 */
    {"America/Sao_Paulo", "0 9 10 * ?", 1539766800,
     1541847600}, /* 2018-10-17T05:00:00-0400 -> 2018-11-10T06:00:00-0500 */
    {"America/Sao_Paulo", "0 9 22 * ?", 1518602400,
     1519300800}, /* 2018-02-14T05:00:00-0500 -> 2018-02-22T07:00:00-0500 */
};

static void run_next(const next_case_t *c, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const evs_tz_t *tz = strcmp(c[i].zone, "UTC") == 0 ? evs_tz_utc() : zone(c[i].zone);
    evs_cronexpr_t e = parse_ok(c[i].spec);
    int64_t got = 0;
    int rc = evs_cronexpr_next(&e, tz, c[i].from * 1000, &got);
    if (c[i].want == EVS_CRON_ZERO_TIME ? rc != EVS_ENOTFOUND : (rc != 0 || got != c[i].want))
      fail_msg("%s '%s' after %lld: rc %d got %lld want %lld", c[i].zone, c[i].spec,
               (long long)c[i].from, rc, (long long)got, (long long)c[i].want);
    evs_tz_unref(tz);
  }
}

static void test_next_robfig(void **state) {
  (void)state;
  run_next(robfig_next, sizeof robfig_next / sizeof robfig_next[0]);
}

/* 2026-11-24T00:00:00Z is a Tuesday. */
#define TUE 1795478400

static void test_next_more(void **state) {
  (void)state;
  static const next_case_t t[] = {
      /* DOM/DOW: both restricted → either matches (Sun 29th before the 1st of December). */
      {"Etc/UTC", "0 0 1,15 * Sun", TUE, 1795910400},
      /* One is '*' → both must match: the 1st or 15th only. */
      {"Etc/UTC", "0 0 1,15 * *", TUE, 1796083200},
      /* "*\/10" has a step, so it counts as restricted (robfig issue #70): OR again. */
      {"Etc/UTC", "0 0 */10 * Sun", TUE, 1795910400},
      {"Etc/UTC", "0 8 * * mon-fri", TUE, 1795507200},
      /* Feb 29: the next one is 2028; OR-ed with Mondays of February it is 2027-02-01. */
      {"Etc/UTC", "0 0 29 2 *", TUE, 1835395200},
      {"Etc/UTC", "0 0 29 2 1", TUE, 1801440000},
      /* From 2097-03-01 the next Feb 29 is 2104 (2100 is no leap year): beyond robfig's five
       * years, so no next time; from 2100-01-01 it is within reach (New York, EST). */
      {"Etc/UTC", "0 0 29 2 *", 4012934400, EVS_CRON_ZERO_TIME},
      {"America/New_York", "0 0 29 feb *", 4102444800, 4233704400},
      /* Never: Feb 30, Apr 31, an empty list. */
      {"Etc/UTC", "0 0 30 Feb ?", TUE, EVS_CRON_ZERO_TIME},
      {"Etc/UTC", "0 0 31 Apr ?", TUE, EVS_CRON_ZERO_TIME},
      {"Etc/UTC", ", * * * *", TUE, EVS_CRON_ZERO_TIME},
      /* The built-in UTC and the Etc/UTC file agree. */
      {"UTC", "30 22 * * *", TUE, 1795559400},
      {"Etc/UTC", "30 22 * * *", TUE, 1795559400},
      /* New York 2026: 02:30 does not exist on Mar 8, so the next 02:30 is Mar 9 (EDT);
       * 01:30 happens twice on Nov 1 and robfig fires at both. */
      {"America/New_York", "30 2 * * *", 1772946000, 1773037800},
      {"America/New_York", "30 1 * * *", 1793505600, 1793511000},
      {"America/New_York", "30 1 * * *", 1793511000, 1793514600},
      {"America/New_York", "30 1 * * *", 1793514600, 1793601000},
      /* Berlin 2026: Mar 29 02:30 is skipped; Oct 25 02:30 comes twice (CEST, then CET). */
      {"Europe/Berlin", "30 2 * * *", 1774738800, 1774830600},
      {"Europe/Berlin", "30 2 * * *", 1792879200, 1792888200},
      {"Europe/Berlin", "30 2 * * *", 1792888200, 1792891800},
      {"Europe/Berlin", "30 2 * * *", 1792891800, 1792978200},
      /* Past the zone file's table (2037): the footer rule, 2040-03-11 is the gap day. */
      {"America/New_York", "0 * 11 3 *", 2215058400, 2215062000},
  };
  run_next(t, sizeof t / sizeof t[0]);
}

/* Sub-second "now": Next starts at the following whole second. */
static void test_next_subsecond(void **state) {
  (void)state;
  evs_cronexpr_t e = parse_ok("0 8 * * *");
  int64_t got;
  assert_int_equal(evs_cronexpr_next(&e, evs_tz_utc(), 1795507199999, &got), 0);
  assert_int_equal(got, 1795507200); /* 07:59:59.999 → 08:00:00 today */
  assert_int_equal(evs_cronexpr_next(&e, evs_tz_utc(), 1795507200000, &got), 0);
  assert_int_equal(got, 1795507200 + 86400); /* at 08:00:00.000 → tomorrow */
}

typedef struct {
  const char *zone, *start, *end;
  int64_t now_ms;
  int active;
  int64_t next_start, next_end;
} win_case_t;

static void test_windows(void **state) {
  (void)state;
  static const win_case_t t[] = {
      /* Weekdays 08:00-17:00: before, at the start second, just before, at the end. */
      {"Etc/UTC", "0 8 * * mon-fri", "0 17 * * mon-fri", TUE * 1000LL, 0, 1795507200, 1795539600},
      {"Etc/UTC", "0 8 * * mon-fri", "0 17 * * mon-fri", 1795507199999, 0, 1795507200, 1795539600},
      {"Etc/UTC", "0 8 * * mon-fri", "0 17 * * mon-fri", 1795507200000, 1, 1795593600, 1795539600},
      {"Etc/UTC", "0 8 * * mon-fri", "0 17 * * mon-fri", 1795539600000, 0, 1795593600, 1795626000},
      /* Spanning midnight 22:00-06:00: active at 00:00 and at 22:00. */
      {"Etc/UTC", "0 22 * * *", "0 6 * * *", TUE * 1000LL, 1, 1795557600, 1795500000},
      {"Etc/UTC", "0 22 * * *", "0 6 * * *", 1795557600000, 1, 1795644000, 1795500000 + 86400},
      {"Etc/UTC", "0 22 * * *", "0 6 * * *", 1795500000000, 0, 1795557600, 1795586400},
      /* KEDA's test window: all Thursday (00:00-23:59) — inactive on a Tuesday. */
      {"Etc/UTC", "0 0 * * Thu", "59 23 * * Thu", TUE * 1000LL, 0, 1795651200, 1795737540},
      /* Month names: December only. */
      {"Etc/UTC", "0 9 * dec *", "0 17 * DEC *", TUE * 1000LL, 0, 1796115600, 1796144400},
      /* A start that never fires (robfig's zero time) makes KEDA's literal comparison true;
       * an end that never fires keeps the window shut. */
      {"Etc/UTC", "0 0 30 2 *", "0 5 * * *", TUE * 1000LL, 1, EVS_CRON_ZERO_TIME, 1795496400},
      {"Etc/UTC", "0 5 * * *", "0 0 30 2 *", TUE * 1000LL, 0, 1795496400, EVS_CRON_ZERO_TIME},
      /* New York spring forward (2026-03-08): the window 02:30-05:00 starts inside the skipped
       * hour. robfig's next 02:30 is then Mar 9, so from Mar 7 05:00 to Mar 8 05:00 the next
       * end comes first: KEDA keeps the trigger active through the DST night. */
      {"America/New_York", "30 2 * * *", "0 5 * * *", 1772946000000, 1, 1773037800, 1772960400},
      {"America/New_York", "30 2 * * *", "0 5 * * *", 1772953200000, 1, 1773037800, 1772960400},
      {"America/New_York", "30 2 * * *", "0 5 * * *", 1772960400000, 0, 1773037800, 1773046800},
      /* New York fall back (2026-11-01): the window 00:00-01:30 ends inside the repeated hour.
       * At 01:30 EDT the end fires, but the next end is 01:30 EST, before the next start:
       * still active, until 01:30 EST. */
      {"America/New_York", "0 0 * * *", "30 1 * * *", 1793505600000, 1, 1793595600, 1793511000},
      {"America/New_York", "0 0 * * *", "30 1 * * *", 1793511000000, 1, 1793595600, 1793514600},
      {"America/New_York", "0 0 * * *", "30 1 * * *", 1793514600000, 0, 1793595600, 1793601000},
      /* Berlin: spring forward (2026-03-29, 02:30 skipped) and fall back (2026-10-25, the
       * window 00:00-02:30 lasts until the second 02:30, CET). */
      {"Europe/Berlin", "30 2 * * *", "0 5 * * *", 1774738800000, 1, 1774830600, 1774753200},
      {"Europe/Berlin", "0 0 * * *", "30 2 * * *", 1792888200000, 1, 1792969200, 1792891800},
      {"Europe/Berlin", "0 0 * * *", "30 2 * * *", 1792891800000, 0, 1792969200, 1792978200},
      /* A TZ= prefix wins over the trigger's zone: 08:00 Berlin (07:00Z) to 17:00 UTC. */
      {"America/New_York", "TZ=Europe/Berlin 0 8 * * *", "CRON_TZ=Etc/UTC 0 17 * * *", TUE * 1000LL,
       0, 1795503600, 1795539600},
      {"America/New_York", "TZ=Europe/Berlin 0 8 * * *", "CRON_TZ=Etc/UTC 0 17 * * *",
       1795503600000, 1, 1795590000, 1795539600},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    const evs_tz_t *tz = zone(t[i].zone);
    evs_cronexpr_t s = parse_ok(t[i].start), e = parse_ok(t[i].end);
    const evs_tz_t *stz = s.has_zone ? zone(s.zone) : evs_tz_ref(tz);
    const evs_tz_t *etz = e.has_zone ? zone(e.zone) : evs_tz_ref(tz);
    evs_cron_window_t w;
    evs_cron_window(&s, stz, &e, etz, t[i].now_ms, &w);
    evs_tz_unref(stz);
    evs_tz_unref(etz);
    if (w.active != t[i].active || w.next_start != t[i].next_start || w.next_end != t[i].next_end)
      fail_msg("case %zu %s [%s, %s) at %lld: got %d %lld %lld want %d %lld %lld", i, t[i].zone,
               t[i].start, t[i].end, (long long)t[i].now_ms, w.active, (long long)w.next_start,
               (long long)w.next_end, t[i].active, (long long)t[i].next_start,
               (long long)t[i].next_end);
    evs_tz_unref(tz);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_fields), cmocka_unit_test(test_parse_zone_prefix),
      cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_next_robfig),
      cmocka_unit_test(test_next_more),    cmocka_unit_test(test_next_subsecond),
      cmocka_unit_test(test_windows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
