/* bench_cron: latency of the cron trigger's pure computations, over many expressions and zones.
 *
 *   bench_cron [calls = 1000000] [seed = 1]
 *
 * Zones are read synchronously from /usr/share/zoneinfo (or $TZDIR) and parsed with evs_tz_parse
 * (fine in a benchmark; the daemon loads them with uv_fs_* through tzcache.c). Each measured call
 * takes a random instant in 2026..2036 so DST transitions, month ends and leap days are all hit.
 * Printed: evs_cronexpr_parse, evs_cronexpr_next and evs_cron_window latency (p50/p95/p99/max),
 * per expression and per zone, so a slow shape shows by name. The unsatisfiable expression
 * (30 February) is robfig's worst case, a five-year search, and is reported on its own line. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "evscale/cron.h"
#include "evscale/cronexpr.h"
#include "evscale/error.h"
#include "evscale/tz.h"

#include "bench_util.h"

#define T_FROM_MS INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */
#define T_SPAN_MS INT64_C(315532800000)  /* ten years */

static const char *const zone_names[] = {
    "UTC",           "Europe/Paris",        "America/New_York", "Asia/Kolkata",
    "Asia/Tokyo",    "Australia/Lord_Howe", "Pacific/Chatham",  "America/Sao_Paulo",
    "Europe/London", "Africa/Casablanca",   "America/St_Johns", "Pacific/Apia",
};
#define N_ZONES (sizeof zone_names / sizeof zone_names[0])

/* Shapes from the seeds (day/night windows, business hours) and from robfig's own tests, plus
 * the expensive ones: rare days (leap day), the day-of-month OR day-of-week rule, and a schedule
 * in the hour a DST change skips or repeats. */
static const char *const exprs[] = {
    "0 8 * * *",          "0 20 * * *",      "*/5 * * * *",  "0 11 * * 1-5",
    "0 14 * * 1-5",       "30 2 * * *",      "15 3 * * 6,0", "0 0 1 * *",
    "0 0 31 * *",         "0 12 15 * 1",     "0 0 29 2 *",   "0 9-17/2 * * *",
    "5,35 * * jan-mar *", "59 23 28-31 * *", "0 0 * * sun",  "0 0 1 1 *",
};
#define N_EXPRS (sizeof exprs / sizeof exprs[0])
#define UNSAT "0 0 30 2 *" /* never fires: Next searches five years, then gives up */

/* start/end pairs of the seeds' cron triggers and similar. */
static const char *const windows[][2] = {
    {"0 8 * * *", "0 20 * * *"}, {"0 11 * * 1-5", "0 14 * * 1-5"},
    {"0 22 * * *", "0 6 * * *"}, {"*/30 * * * *", "15,45 * * * *"},
    {"0 0 * * 6", "0 0 * * 1"},  {"30 2 * * *", "30 3 * * *"},
};
#define N_WINDOWS (sizeof windows / sizeof windows[0])

static void print_pct(const char *what, uint32_t *v, size_t n) {
  if (n == 0)
    return;
  qsort(v, n, sizeof *v, cmp_u32);
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += v[i];
  printf("  %-28s n %7zu  p50 %6u ns  p95 %6u ns  p99 %6u ns  max %8u ns  mean %7.0f ns\n", what, n,
         v[n / 2], v[(size_t)(n * 0.95)], v[(size_t)(n * 0.99)], v[n - 1], sum / (double)n);
}

/* ---- zones ---------------------------------------------------------------------------------- */

static int load_zone(const char *name, const evs_tz_t **out) {
  if (strcmp(name, "UTC") == 0) {
    *out = evs_tz_utc();
    return 0;
  }
  const char *dir = getenv("TZDIR") ? getenv("TZDIR") : "/usr/share/zoneinfo";
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return -1;
  static uint8_t buf[1 << 20];
  size_t len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  evs_tz_t *tz = NULL;
  int rc = evs_tz_parse(buf, len, name, &tz);
  *out = tz;
  return rc;
}

static int load_zones(const evs_tz_t **zones) {
  for (size_t z = 0; z < N_ZONES; z++)
    if (load_zone(zone_names[z], &zones[z]) != 0) {
      fprintf(stderr, "cannot load zone %s\n", zone_names[z]);
      return -1;
    }
  return 0;
}

/* ---- measurements --------------------------------------------------------------------------- */

static int bench_parse(size_t calls) {
  uint32_t *lat = malloc(calls * sizeof *lat);
  evs_cronexpr_t e;
  char err[128];
  if (lat == NULL)
    return -1;
  for (size_t i = 0; i < calls; i++) {
    int64_t t0 = now_ns();
    int rc = evs_cronexpr_parse(exprs[i % N_EXPRS], &e, err, sizeof err);
    lat[i] = since(t0);
    if (rc != 0) {
      fprintf(stderr, "parse %s: %s\n", exprs[i % N_EXPRS], err);
      free(lat);
      return -1;
    }
  }
  print_pct("evs_cronexpr_parse", lat, calls);
  free(lat);
  return 0;
}

/* Calls go round-robin over expressions, then zones in blocks of N_EXPRS: no array receives more
 * than calls / N + N_EXPRS entries. */
typedef struct {
  uint32_t *all, *by_expr[N_EXPRS], *by_zone[N_ZONES];
  size_t n, n_expr[N_EXPRS], n_zone[N_ZONES];
} next_lat_t;

static int next_alloc(next_lat_t *l, size_t calls) {
  memset(l, 0, sizeof *l);
  l->all = malloc(calls * sizeof *l->all);
  int ok = l->all != NULL;
  for (size_t i = 0; i < N_EXPRS; i++)
    ok = ok &&
         (l->by_expr[i] = malloc((calls / N_EXPRS + N_EXPRS + N_ZONES) * sizeof(uint32_t))) != NULL;
  for (size_t i = 0; i < N_ZONES; i++)
    ok = ok &&
         (l->by_zone[i] = malloc((calls / N_ZONES + N_EXPRS + N_ZONES) * sizeof(uint32_t))) != NULL;
  return ok ? 0 : -1;
}

static void next_free(next_lat_t *l) {
  free(l->all);
  for (size_t i = 0; i < N_EXPRS; i++)
    free(l->by_expr[i]);
  for (size_t i = 0; i < N_ZONES; i++)
    free(l->by_zone[i]);
}

static int bench_next(const evs_tz_t **zones, size_t calls) {
  evs_cronexpr_t e[N_EXPRS];
  char err[128];
  next_lat_t l;
  for (size_t i = 0; i < N_EXPRS; i++)
    if (evs_cronexpr_parse(exprs[i], &e[i], err, sizeof err) != 0)
      return -1;
  if (next_alloc(&l, calls) != 0)
    return -1;
  size_t notfound = 0;
  double c0 = cpu_seconds();
  for (size_t i = 0; i < calls; i++) {
    size_t x = i % N_EXPRS, z = (i / N_EXPRS) % N_ZONES;
    int64_t t = T_FROM_MS + (int64_t)(rng() % (uint64_t)T_SPAN_MS), out;
    int64_t t0 = now_ns();
    int rc = evs_cronexpr_next(&e[x], zones[z], t, &out);
    uint32_t d = since(t0);
    notfound += rc != 0;
    l.all[l.n++] = d;
    l.by_expr[x][l.n_expr[x]++] = d;
    l.by_zone[z][l.n_zone[z]++] = d;
  }
  double cpu = cpu_seconds() - c0;
  printf("evs_cronexpr_next: %zu calls, %.3f CPU s, %zu without a next time\n", calls, cpu,
         notfound);
  print_pct("all expressions, all zones", l.all, l.n);
  printf(" per expression (all zones):\n");
  for (size_t x = 0; x < N_EXPRS; x++)
    print_pct(exprs[x], l.by_expr[x], l.n_expr[x]);
  printf(" per zone (all expressions):\n");
  for (size_t z = 0; z < N_ZONES; z++)
    print_pct(zone_names[z], l.by_zone[z], l.n_zone[z]);
  next_free(&l);
  return notfound ? -1 : 0;
}

/* robfig's worst case, measured apart so it does not hide in the percentiles above. */
static int bench_unsat(const evs_tz_t **zones, size_t calls) {
  evs_cronexpr_t e;
  char err[128];
  uint32_t *lat = malloc(calls * sizeof *lat);
  if (lat == NULL || evs_cronexpr_parse(UNSAT, &e, err, sizeof err) != 0) {
    free(lat);
    return -1;
  }
  size_t found = 0;
  for (size_t i = 0; i < calls; i++) {
    int64_t t = T_FROM_MS + (int64_t)(rng() % (uint64_t)T_SPAN_MS), out;
    int64_t t0 = now_ns();
    found += evs_cronexpr_next(&e, zones[i % N_ZONES], t, &out) == 0;
    lat[i] = since(t0);
  }
  print_pct(UNSAT " (never: ENOTFOUND)", lat, calls);
  free(lat);
  return found ? -1 : 0;
}

static int bench_window(const evs_tz_t **zones, size_t calls) {
  evs_cronexpr_t s[N_WINDOWS], e[N_WINDOWS];
  char err[128];
  for (size_t i = 0; i < N_WINDOWS; i++)
    if (evs_cronexpr_parse(windows[i][0], &s[i], err, sizeof err) != 0 ||
        evs_cronexpr_parse(windows[i][1], &e[i], err, sizeof err) != 0)
      return -1;
  uint32_t *lat = malloc(calls * sizeof *lat);
  if (lat == NULL)
    return -1;
  size_t active = 0;
  for (size_t i = 0; i < calls; i++) {
    size_t w = i % N_WINDOWS, z = (i / N_WINDOWS) % N_ZONES;
    int64_t t = T_FROM_MS + (int64_t)(rng() % (uint64_t)T_SPAN_MS);
    evs_cron_window_t out;
    int64_t t0 = now_ns();
    evs_cron_window(&s[w], zones[z], &e[w], zones[z], t, &out);
    lat[i] = since(t0);
    active += (size_t)out.active;
  }
  printf("evs_cron_window: %zu calls (%zu start/end pairs x %zu zones), %.1f %% active\n", calls,
         N_WINDOWS, N_ZONES, 100.0 * (double)active / (double)calls);
  print_pct("evs_cron_window", lat, calls);
  free(lat);
  return 0;
}

int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 1000000;
  rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
  if (calls < 100 || rng_state == 0) {
    fprintf(stderr, "usage: %s [calls=1000000 (>= 100)] [seed=1]\n", argv[0]);
    return 2;
  }
  const evs_tz_t *zones[N_ZONES];
  if (load_zones(zones) != 0)
    return 2;
  printf("zones: %zu (", N_ZONES);
  for (size_t z = 0; z < N_ZONES; z++)
    printf("%s%s %zu transitions", z ? ", " : "", zone_names[z], evs_tz_transition_count(zones[z]));
  printf(")\n");
  int rc = bench_parse((size_t)calls / 10);
  rc = rc ? rc : bench_next(zones, (size_t)calls);
  rc = rc ? rc : bench_unsat(zones, (size_t)calls / 100);
  rc = rc ? rc : bench_window(zones, (size_t)calls);
  for (size_t z = 0; z < N_ZONES; z++)
    evs_tz_unref(zones[z]);
  if (rc != 0)
    fprintf(stderr, "a cron computation failed\n");
  return rc ? 1 : 0;
}
