/* TZif reader, Go-compatible zone arithmetic and the asynchronous zone cache.
 *
 * Zone files are copies of Debian's tzdata 2025b (public domain) in test/data/zoneinfo. Every
 * expected instant below was computed by hand from the tzdata rules and cross-checked against Go
 * 1.19's time package (the semantics KEDA's cron scaler runs on: golang/go src/time/time.go
 * `Date`, src/time/zoneinfo.go `lookup`/`tzset` at 62e6931c / 3dac2043). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>
#include "evscale/error.h"
#include "evscale/tz.h"
#include "test_data.h"

static uint8_t *read_data(const char *rel, size_t *len) {
  char path[1024];
  const char *dir = evs_test_data();
  snprintf(path, sizeof path, "%s/zoneinfo/%s", dir, rel);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  uint8_t *buf = malloc(1 << 16);
  assert_non_null(buf);
  *len = fread(buf, 1, 1 << 16, f);
  fclose(f);
  return buf;
}

static evs_tz_t *load_zone(const char *rel) {
  size_t len;
  uint8_t *d = read_data(rel, &len);
  evs_tz_t *tz = NULL;
  assert_int_equal(evs_tz_parse(d, len, rel, &tz), 0);
  free(d);
  return tz;
}

typedef struct {
  int64_t t;
  int32_t off;
  int dst;
  const char *abbr;
} at_t;

static void check_offsets(const evs_tz_t *tz, const at_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    evs_tz_period_t p;
    evs_tz_lookup(tz, v[i].t, &p);
    if (p.offset != v[i].off || p.is_dst != v[i].dst || strcmp(p.abbr, v[i].abbr) != 0)
      fail_msg("%s at %lld: got %d %d %s, want %d %d %s", evs_tz_name(tz), (long long)v[i].t,
               p.offset, p.is_dst, p.abbr, v[i].off, v[i].dst, v[i].abbr);
    assert_true(p.start <= v[i].t && v[i].t < p.end);
  }
}

/* America/New_York: transitions from the table until 2037, from the footer rule
 * "EST5EDT,M3.2.0,M11.1.0" after (second Sunday of March / first of November, 2:00 local). */
static void test_new_york(void **state) {
  (void)state;
  evs_tz_t *tz = load_zone("America/New_York");
  assert_string_equal(evs_tz_footer(tz), "EST5EDT,M3.2.0,M11.1.0");
  static const at_t v[] = {
      {1768435200, -18000, 0, "EST"}, /* 2026-01-15T00:00Z */
      {1772953199, -18000, 0, "EST"}, /* 2026-03-08T06:59:59Z, 01:59:59 EST */
      {1772953200, -14400, 1, "EDT"}, /* 2026-03-08T07:00Z = 03:00 EDT */
      {1793512799, -14400, 1, "EDT"}, /* 2026-11-01T05:59:59Z = 01:59:59 EDT */
      {1793512800, -18000, 0, "EST"}, /* 2026-11-01T06:00Z = 01:00 EST */
      /* Past the last transition (2037): the footer decides. 2040-03-11 and 2040-11-04 are
       * the second Sunday of March and the first Sunday of November. */
      {2215062000 - 1, -18000, 0, "EST"}, /* 2040-03-11T06:59:59Z */
      {2215062000, -14400, 1, "EDT"},     /* 2040-03-11T07:00Z */
      {2225000000, -14400, 1, "EDT"},     /* 2040-07-04 */
      {2235621600 - 1, -14400, 1, "EDT"}, /* 2040-11-04T05:59:59Z */
      {2235621600, -18000, 0, "EST"},     /* 2040-11-04T06:00Z */
      {-2717660000, -17762, 0, "LMT"},    /* 1883, before the first transition */
  };
  check_offsets(tz, v, sizeof v / sizeof v[0]);
  evs_tz_unref(tz);
}

/* Southern hemisphere with a 30-minute DST shift: the footer's rules come in "reverse" order
 * (Go's tzset swaps them); 2045 is past the table. */
static void test_lord_howe_footer(void **state) {
  (void)state;
  evs_tz_t *tz = load_zone("Australia/Lord_Howe");
  assert_string_equal(evs_tz_footer(tz), "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0");
  static const at_t v[] = {
      {2367705600, 39600, 1, "+11"},   /* 2045-01-11 summer */
      {2383430400, 37800, 0, "+1030"}, /* 2045-07-12 winter */
      {1783987200, 37800, 0, "+1030"}, /* 2026-07-14 */
  };
  check_offsets(tz, v, sizeof v / sizeof v[0]);
  evs_tz_unref(tz);
}

static void test_fixed_zones(void **state) {
  (void)state;
  evs_tz_t *k = load_zone("Asia/Kolkata");
  evs_tz_t *u = load_zone("Etc/UTC");
  static const at_t vk[] = {{1795478400, 19800, 0, "IST"}, {2500000000, 19800, 0, "IST"}};
  static const at_t vu[] = {
      {0, 0, 0, "UTC"}, {1795478400, 0, 0, "UTC"}, {-5000000000, 0, 0, "UTC"}};
  check_offsets(k, vk, 2);
  check_offsets(u, vu, 3);
  /* Etc/UTC has no transitions: Go adds one at the beginning of time so the footer rules all. */
  assert_int_equal(evs_tz_transition_count(u), 1);
  assert_string_equal(evs_tz_footer(u), "UTC0");
  assert_int_equal(evs_tz_offset(evs_tz_utc(), 1795478400), 0);
  evs_tz_unref(k);
  evs_tz_unref(u);
}

/* A hand-built v1 file (no 64-bit block, no footer): two transitions, EST/EDT. */
static size_t build_v1(uint8_t *b, char version) {
  size_t o = 0;
  memcpy(b, "TZif", 4);
  b[4] = (uint8_t)version;
  memset(b + 5, 0, 15);
  o = 20;
  const uint32_t counts[6] = {0, 0, 0, 2, 2, 8}; /* ut, std, leap, time, type, char */
  for (int i = 0; i < 6; i++, o += 4)
    b[o] = (uint8_t)(counts[i] >> 24), b[o + 1] = (uint8_t)(counts[i] >> 16),
    b[o + 2] = (uint8_t)(counts[i] >> 8), b[o + 3] = (uint8_t)counts[i];
  const int32_t times[2] = {1000000, 2000000};
  for (int i = 0; i < 2; i++, o += 4)
    b[o] = (uint8_t)((uint32_t)times[i] >> 24), b[o + 1] = (uint8_t)(times[i] >> 16),
    b[o + 2] = (uint8_t)(times[i] >> 8), b[o + 3] = (uint8_t)times[i];
  b[o++] = 1; /* EDT from 1000000 */
  b[o++] = 0; /* EST from 2000000 */
  const uint8_t types[12] = {0xff, 0xff, 0xb9, 0xb0, 0, 0, 0xff, 0xff, 0xc7, 0xc0, 1, 4};
  memcpy(b + o, types, 12);
  o += 12;
  memcpy(b + o, "EST\0EDT\0", 8);
  return o + 8;
}

static void test_v1_file(void **state) {
  (void)state;
  uint8_t b[256];
  size_t n = build_v1(b, 0);
  evs_tz_t *tz = NULL;
  assert_int_equal(evs_tz_parse(b, n, "v1", &tz), 0);
  /* Before the first transition Go uses the first standard-time zone (lookupFirstZone). */
  static const at_t v[] = {{0, -18000, 0, "EST"},
                           {1000000, -14400, 1, "EDT"},
                           {1999999, -14400, 1, "EDT"},
                           {2000000, -18000, 0, "EST"},
                           {4000000000, -18000, 0, "EST"}};
  check_offsets(tz, v, 5);
  assert_string_equal(evs_tz_footer(tz), "");
  evs_tz_unref(tz);
  /* Version '1' does not exist: the version byte is NUL for v1. */
  build_v1(b, '1');
  assert_int_equal(evs_tz_parse(b, n, "bad", &tz), EVS_ETZ);
  assert_null(tz);
}

/* A v2 file whose 32-bit block says "UTC" and whose 64-bit block says EST/EDT: the reader must
 * use the 64-bit block (and its footer). */
static void test_v2_uses_64bit_block(void **state) {
  (void)state;
  uint8_t b[512];
  size_t o = 0;
  memcpy(b, "TZif2", 5);
  memset(b + 5, 0, 15);
  o = 20;
  const uint8_t c1[24] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4};
  memcpy(b + o, c1, 24); /* 0 transitions, 1 type, 4 chars */
  o += 24;
  const uint8_t t1[10] = {0, 0, 0, 0, 0, 0, 'U', 'T', 'C', 0};
  memcpy(b + o, t1, 10);
  o += 10;
  memcpy(b + o, "TZif2", 5);
  memset(b + o + 5, 0, 15);
  o += 20;
  const uint8_t c2[24] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 8};
  memcpy(b + o, c2, 24);
  o += 24;
  const uint8_t tx[8] = {0, 0, 0, 0, 0, 0xe4, 0xe1, 0xc0}; /* 15000000, June 1970 */
  memcpy(b + o, tx, 8);
  o += 8;
  b[o++] = 1;
  const uint8_t types[12] = {0xff, 0xff, 0xb9, 0xb0, 0, 0, 0xff, 0xff, 0xc7, 0xc0, 1, 4};
  memcpy(b + o, types, 12);
  o += 12;
  memcpy(b + o, "EST\0EDT\0", 8);
  o += 8;
  const char *footer = "\nEST5EDT,M3.2.0,M11.1.0\n";
  memcpy(b + o, footer, strlen(footer));
  o += strlen(footer);
  evs_tz_t *tz = NULL;
  assert_int_equal(evs_tz_parse(b, o, "v2", &tz), 0);
  /* From the last (here: only) transition on, Go lets the footer decide. */
  static const at_t v[] = {{0, -18000, 0, "EST"},
                           {15000000, -14400, 1, "EDT"},
                           {30000000, -18000, 0, "EST"}, /* 1970-12-14 */
                           /* 2026-01-15, 2026-07-01 */
                           {1768435200, -18000, 0, "EST"},
                           {1782864000, -14400, 1, "EDT"}};
  check_offsets(tz, v, 5);
  evs_tz_unref(tz);
}

/* Every truncation inside the data is rejected; cutting only the footer leaves a valid zone
 * without one (Go behaves the same: the footer is optional). */
static void test_truncated_and_corrupt(void **state) {
  (void)state;
  size_t len;
  uint8_t *d = read_data("America/New_York", &len);
  size_t footer = strlen("\nEST5EDT,M3.2.0,M11.1.0\n");
  evs_tz_t *tz = NULL;
  for (size_t n = 0; n < len - footer; n++) {
    if (evs_tz_parse(d, n, "cut", &tz) != EVS_ETZ)
      fail_msg("a file cut at %zu of %zu bytes was accepted", n, len);
    assert_null(tz);
  }
  assert_int_equal(evs_tz_parse(d, len - footer, "nofooter", &tz), 0);
  assert_string_equal(evs_tz_footer(tz), "");
  evs_tz_unref(tz);
  /* Bad magic; a transition pointing past the type table; an abbreviation index past the
   * abbreviation block; no types at all. Offsets follow the v1 layout built by build_v1. */
  uint8_t b[256];
  size_t n = build_v1(b, 0);
  b[0] = 'X';
  assert_int_equal(evs_tz_parse(b, n, "magic", &tz), EVS_ETZ);
  n = build_v1(b, 0);
  b[52] = 7; /* transition type index 7 of 2 */
  assert_int_equal(evs_tz_parse(b, n, "idx", &tz), EVS_ETZ);
  n = build_v1(b, 0);
  b[65] = 200; /* abbreviation index 200 of 8 */
  assert_int_equal(evs_tz_parse(b, n, "abbr", &tz), EVS_ETZ);
  n = build_v1(b, 0);
  b[39] = 0; /* zero types */
  assert_int_equal(evs_tz_parse(b, n, "notypes", &tz), EVS_ETZ);
  assert_int_equal(evs_tz_parse(NULL, 0, "null", &tz), EVS_ETZ);
  free(d);
}

/* time.Date in a gap and an overlap (local → UTC), as Go resolves them. */
static void test_local_to_utc(void **state) {
  (void)state;
  evs_tz_t *ny = load_zone("America/New_York");
  evs_tz_t *be = load_zone("Europe/Berlin");
  /* 2026-03-08 02:30 does not exist in New York: Go gives 01:30 EST (06:30Z). */
  assert_int_equal(evs_tz_date(ny, 2026, 3, 8, 2, 30, 0), 1772951400);
  /* 2026-11-01 01:30 happens twice: Go picks the first, EDT (05:30Z). */
  assert_int_equal(evs_tz_date(ny, 2026, 11, 1, 1, 30, 0), 1793511000);
  /* Berlin 2026-03-29 02:30 does not exist: Go gives 03:30 CEST (01:30Z). */
  assert_int_equal(evs_tz_date(be, 2026, 3, 29, 2, 30, 0), 1774747800);
  /* Berlin 2026-10-25 02:30 happens twice: Go picks the second, CET (01:30Z). */
  assert_int_equal(evs_tz_date(be, 2026, 10, 25, 2, 30, 0), 1792891800);
  /* The footer era: 2040-03-11 02:30 New York is in the gap → 01:30 EST. */
  assert_int_equal(evs_tz_date(ny, 2040, 3, 11, 2, 30, 0), 2215060200);
  /* Normalisation: month 13, day 0 and hour 24 roll over as in Go. */
  assert_int_equal(evs_tz_date(evs_tz_utc(), 2025, 13, 1, 0, 0, 0), 1767225600);
  assert_int_equal(evs_tz_date(evs_tz_utc(), 2026, 3, 0, 24, 0, 0), 1772323200);
  evs_tm_t tm;
  evs_tz_civil(ny, 1793512800, &tm); /* 01:00 EST on 2026-11-01, a Sunday */
  assert_int_equal(tm.year, 2026);
  assert_int_equal(tm.month, 11);
  assert_int_equal(tm.day, 1);
  assert_int_equal(tm.hour, 1);
  assert_int_equal(tm.wday, 0);
  assert_int_equal(tm.yday, 305);
  evs_tz_unref(ny);
  evs_tz_unref(be);
}

static void test_name_check(void **state) {
  (void)state;
  const char *ok[] = {"America/New_York", "UTC", "", "Local", "Etc/GMT+5", "EST5EDT"};
  const char *bad[] = {"../etc/passwd", "/etc/passwd", "a/../b", "\\x", "a..b", "a\nb"};
  for (size_t i = 0; i < 6; i++)
    assert_int_equal(evs_tz_name_check(ok[i]), 0);
  for (size_t i = 0; i < 6; i++)
    assert_int_equal(evs_tz_name_check(bad[i]), EVS_ETZ);
}

/* ---- asynchronous loading on a real loop ---- */

typedef struct {
  int calls, status;
  int32_t offset;
  const evs_tz_t *tz;
} load_res_t;

static void on_load(evs_tz_load_t *req, int status, const evs_tz_t *tz, void *data) {
  (void)req;
  load_res_t *r = data;
  r->calls++;
  r->status = status;
  r->tz = tz;
  if (tz)
    r->offset = evs_tz_offset(tz, 1782864000); /* 2026-07-01 */
}

static void test_async_load(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  load_res_t a = {0}, b = {0}, c = {0}, u = {0}, x = {0};
  evs_tz_load_t *ra, *rb, *rc, *ru, *rx;
  assert_int_equal(evs_tz_load(&loop, "America/New_York", on_load, &a, &ra), 0);
  assert_int_equal(evs_tz_load(&loop, "America/New_York", on_load, &b, &rb), 0);
  assert_int_equal(evs_tz_load(&loop, "Nowhere/Atlantis", on_load, &c, &rc), 0);
  assert_int_equal(evs_tz_load(&loop, "UTC", on_load, &u, &ru), 0);
  assert_int_equal(evs_tz_load(&loop, "Europe/Berlin", on_load, &x, &rx), 0);
  evs_tz_load_cancel(rx);
  /* A bad name fails synchronously and its callback never runs. */
  load_res_t never = {0};
  evs_tz_load_t *rn = NULL;
  assert_int_equal(evs_tz_load(&loop, "../../etc/passwd", on_load, &never, &rn), EVS_ETZ);
  /* Callbacks never run from inside evs_tz_load, even for the built-in UTC. */
  assert_int_equal(a.calls + b.calls + c.calls + u.calls + x.calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, 0);
  assert_int_equal(a.offset, -14400);
  assert_int_equal(b.calls, 1);
  assert_ptr_equal(a.tz, b.tz); /* one read, one parsed zone, shared */
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, EVS_ETZ);
  assert_int_equal(u.calls, 1);
  assert_int_equal(u.status, 0);
  assert_ptr_equal(u.tz, evs_tz_utc());
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.status, UV_ECANCELED);
  assert_int_equal(never.calls, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A zone kept by reference is served from the cache without a second read. */
static const evs_tz_t *kept;
static void on_keep(evs_tz_load_t *req, int status, const evs_tz_t *tz, void *data) {
  (void)req;
  (void)data;
  assert_int_equal(status, 0);
  if (kept == NULL)
    kept = evs_tz_ref(tz);
  else
    assert_ptr_equal(tz, kept);
  (*(int *)data)++;
}

static void test_async_cache_hit(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  int calls = 0;
  evs_tz_load_t *r;
  assert_int_equal(evs_tz_load(&loop, "Asia/Kolkata", on_keep, &calls, &r), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(evs_tz_load(&loop, "Asia/Kolkata", on_keep, &calls, &r), 0);
  assert_int_equal(calls, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(calls, 2);
  evs_tz_unref(kept);
  kept = NULL;
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A FIFO where a zone file should be (issue 9: it blocked a pool thread for good): the load
 * fails promptly, and a later load of a real zone still completes. */
static void test_async_fifo_zone(void **state) {
  (void)state;
  char dir[] = "/tmp/evs_tz_XXXXXX", sub[64], fifo[96], old[1024];
  assert_non_null(mkdtemp(dir));
  snprintf(sub, sizeof sub, "%s/Etc", dir);
  assert_int_equal(mkdir(sub, 0755), 0);
  snprintf(fifo, sizeof fifo, "%s/Fifo", sub);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  snprintf(old, sizeof old, "%s", getenv("TZDIR"));
  setenv("TZDIR", dir, 1);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  load_res_t a = {0};
  evs_tz_load_t *r;
  assert_int_equal(evs_tz_load(&loop, "Etc/Fifo", on_load, &a, &r), 0);
  alarm(20); /* a blocked read fails the test instead of hanging it */
  uv_run(&loop, UV_RUN_DEFAULT);
  alarm(0);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, UV_EFTYPE);
  assert_null(a.tz);
  setenv("TZDIR", old, 1);
  load_res_t b = {0};
  assert_int_equal(evs_tz_load(&loop, "Europe/Berlin", on_load, &b, &r), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.status, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(fifo);
  rmdir(sub);
  rmdir(dir);
}

/* The zone index: names the tz database offers, from a directory walk (links included). */
static void test_zone_index(void **state) {
  (void)state;
  evs_tz_index_free();
  assert_int_equal(evs_tz_index_has("Europe/Berlin"), EVS_ESTATE); /* nothing loaded yet */
  assert_int_equal(evs_tz_index_has("UTC"), 1);                    /* built in */
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/zoneinfo/", evs_test_data());
  assert_int_equal(evs_tz_index_load(dir), 0);
  assert_int_equal(evs_tz_index_has("Europe/Berlin"), 1);
  assert_int_equal(evs_tz_index_has("America/New_York"), 1);
  assert_int_equal(evs_tz_index_has("Etc/UTC"), 1);
  assert_int_equal(evs_tz_index_has("Europe/Berlinx"), 0);
  assert_int_equal(evs_tz_index_has("Mars/Olympus_Mons"), 0);
  assert_int_equal(evs_tz_index_has("Europe"), 0); /* a directory is not a zone */
  assert_int_equal(evs_tz_index_has(""), 1);
  assert_int_equal(evs_tz_index_load("/nonexistent/zoneinfo"), UV_ENOENT);
  assert_int_equal(evs_tz_index_has("Europe/Berlin"), EVS_ESTATE);
  /* The system's database, when the machine has one (Debian's tzdata), has the aliases too. */
  if (evs_tz_index_load("/usr/share/zoneinfo") == 0) {
    assert_int_equal(evs_tz_index_has("Asia/Kolkata"), 1);
    assert_int_equal(evs_tz_index_has("Cuba"), 1); /* a symbolic link to America/Havana */
  }
  evs_tz_index_free();
}

int main(void) {
  /* The cache reads $TZDIR/<name>: point it at the test copies. */
  char dir[1024];
  const char *data = evs_test_data();
  snprintf(dir, sizeof dir, "%s/zoneinfo", data);
  setenv("TZDIR", dir, 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_york),
      cmocka_unit_test(test_lord_howe_footer),
      cmocka_unit_test(test_fixed_zones),
      cmocka_unit_test(test_v1_file),
      cmocka_unit_test(test_v2_uses_64bit_block),
      cmocka_unit_test(test_truncated_and_corrupt),
      cmocka_unit_test(test_local_to_utc),
      cmocka_unit_test(test_name_check),
      cmocka_unit_test(test_async_load),
      cmocka_unit_test(test_async_cache_hit),
      cmocka_unit_test(test_async_fifo_zone),
      cmocka_unit_test(test_zone_index),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
