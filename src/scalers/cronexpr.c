/* Cron expressions as robfig/cron v3.0.1 parses and evaluates them (see cronexpr.h). The parser
 * follows parser.go (getField/getRange/parseIntOrName/mustParseInt, with the same error texts);
 * Next follows spec.go step by step, including its DST handling, because KEDA's windows are
 * whatever that code computes, quirks included. */
#include "evscale/cronexpr.h"
#include "evscale/param.h"
#include "evscale/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  unsigned min, max;
  const char *const *names; /* index = value - names_base; NULL = no names */
  unsigned names_base, n_names;
} bounds_t;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const bounds_t b_minute = {0, 59, NULL, 0, 0};
static const bounds_t b_hour = {0, 23, NULL, 0, 0};
static const bounds_t b_dom = {1, 31, NULL, 0, 0};
static const bounds_t b_month = {1, 12, month_names, 1, 12};
static const bounds_t b_dow = {0, 6, dow_names, 0, 7};

typedef struct {
  const char *p;
  size_t n;
} span_t;

typedef struct {
  char *buf;
  size_t cap;
} errbuf_t;

__attribute__((format(printf, 2, 3))) static int fail(errbuf_t *e, const char *fmt, ...) {
  if (e->cap > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->buf, e->cap, fmt, ap);
    va_end(ap);
  }
  return EVS_ECRON;
}

/* Go's strconv.Atoi: optional sign, decimal digits, int64 range. */
static int atoi64(span_t s, int64_t *out, const char **why) {
  size_t i = 0;
  int neg = 0;
  uint64_t v = 0;
  if (s.n > 0 && (s.p[0] == '+' || s.p[0] == '-'))
    neg = s.p[i++] == '-';
  *why = "invalid syntax";
  if (i == s.n)
    return -1;
  uint64_t cutoff = (uint64_t)INT64_MAX + (uint64_t)neg;
  for (; i < s.n; i++) {
    if (s.p[i] < '0' || s.p[i] > '9')
      return -1;
    uint64_t d = (uint64_t)(s.p[i] - '0');
    if (v > (cutoff - d) / 10) { /* strconv stops at the first overflow */
      *why = "value out of range";
      return -1;
    }
    v = v * 10 + d;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

static int must_parse_int(span_t s, uint64_t *out, errbuf_t *e) {
  int64_t v;
  const char *why;
  if (atoi64(s, &v, &why) != 0)
    return fail(e, "failed to parse int from %.*s: strconv.Atoi: parsing \"%.*s\": %s", (int)s.n,
                s.p, (int)s.n, s.p, why);
  if (v < 0)
    return fail(e, "negative number (%lld) not allowed: %.*s", (long long)v, (int)s.n, s.p);
  *out = (uint64_t)v;
  return 0;
}

static int parse_int_or_name(span_t s, const bounds_t *r, uint64_t *out, errbuf_t *e) {
  for (unsigned i = 0; r->names && i < r->n_names && s.n == 3; i++)
    if (strncasecmp(s.p, r->names[i], 3) == 0) {
      *out = r->names_base + i;
      return 0;
    }
  return must_parse_int(s, out, e);
}

static size_t count_char(span_t s, char c) {
  size_t n = 0;
  for (size_t i = 0; i < s.n; i++)
    n += s.p[i] == c;
  return n;
}

/* The first part of s up to c (or all of s); *rest is what follows c, if anything. */
static span_t cut(span_t s, char c, span_t *rest) {
  const char *q = memchr(s.p, c, s.n);
  size_t n = q ? (size_t)(q - s.p) : s.n;
  if (rest)
    *rest = q ? (span_t){q + 1, s.n - n - 1} : (span_t){s.p + s.n, 0};
  return (span_t){s.p, n};
}

static uint64_t get_bits(uint64_t min, uint64_t max, uint64_t step) {
  uint64_t bits = 0;
  for (uint64_t i = min; i <= max; i += step)
    bits |= (uint64_t)1 << i;
  return bits;
}

/* getRange: number | number "-" number [ "/" number ], or '*' / '?' with an optional step. */
static int get_range(span_t expr, const bounds_t *r, uint64_t *bits, errbuf_t *e) {
  span_t after_slash, after_hyphen;
  span_t range = cut(expr, '/', &after_slash);
  span_t low = cut(range, '-', &after_hyphen);
  size_t hyphens = count_char(range, '-'), slashes = count_char(expr, '/');
  uint64_t start = 0, end = 0, step = 1, extra = 0;
  int rc;
  if ((low.n == 1 && (low.p[0] == '*' || low.p[0] == '?'))) {
    start = r->min, end = r->max, extra = EVS_CRONEXPR_STAR;
  } else {
    if ((rc = parse_int_or_name(low, r, &start, e)) != 0)
      return rc;
    if (hyphens == 0)
      end = start;
    else if (hyphens == 1 && (rc = parse_int_or_name(after_hyphen, r, &end, e)) != 0)
      return rc;
    else if (hyphens > 1)
      return fail(e, "too many hyphens: %.*s", (int)expr.n, expr.p);
  }
  if (slashes == 1) {
    if ((rc = must_parse_int(after_slash, &step, e)) != 0)
      return rc;
    if (hyphens == 0) /* "N/step" means "N-max/step" */
      end = r->max;
    if (step > 1)
      extra = 0;
  } else if (slashes > 1) {
    return fail(e, "too many slashes: %.*s", (int)expr.n, expr.p);
  }
  if (start < r->min)
    return fail(e, "beginning of range (%llu) below minimum (%u): %.*s", (unsigned long long)start,
                r->min, (int)expr.n, expr.p);
  if (end > r->max)
    return fail(e, "end of range (%llu) above maximum (%u): %.*s", (unsigned long long)end, r->max,
                (int)expr.n, expr.p);
  if (start > end)
    return fail(e, "beginning of range (%llu) beyond end of range (%llu): %.*s",
                (unsigned long long)start, (unsigned long long)end, (int)expr.n, expr.p);
  if (step == 0)
    return fail(e, "step of range should be a positive number: %.*s", (int)expr.n, expr.p);
  *bits = get_bits(start, end, step) | extra;
  return 0;
}

/* getField: a comma-separated list of ranges; empty items are skipped. */
static int get_field(span_t f, const bounds_t *r, uint64_t *out, errbuf_t *e) {
  uint64_t bits = 0;
  while (f.n > 0) {
    span_t rest, item = cut(f, ',', &rest);
    if (item.n > 0) {
      uint64_t b = 0;
      int rc = get_range(item, r, &b, e);
      if (rc != 0)
        return rc;
      bits |= b;
    }
    f = rest;
  }
  *out = bits;
  return 0;
}

/* strings.Fields: up to `max` fields split on Unicode white space; returns the total count. */
static size_t split_fields(const char *s, span_t *f, size_t max) {
  size_t n = 0;
  while (*s) {
    size_t sp;
    while ((sp = evs_param_space_len(s)) > 0)
      s += sp;
    if (*s == 0)
      break;
    const char *b = s;
    while (*s && evs_param_space_len(s) == 0)
      s++;
    if (n < max)
      f[n] = (span_t){b, (size_t)(s - b)};
    n++;
  }
  return n;
}

static int field_count_error(const char *spec, size_t n, errbuf_t *e) {
  /* robfig prints the fields as a Go slice: "[0 8 * *]". */
  char list[256];
  size_t o = 0;
  span_t f[64];
  size_t k = split_fields(spec, f, 64);
  for (size_t i = 0; i < k && i < 64 && o < sizeof list; i++)
    o += (size_t)snprintf(list + o, sizeof list - o, "%s%.*s", i ? " " : "", (int)f[i].n, f[i].p);
  return fail(e, "expected exactly 5 fields, found %zu: [%s]", n, list);
}

/* robfig's "TZ=<zone> " / "CRON_TZ=<zone> " prefix: the zone up to the first space (plain
 * space, strings.Index(spec, " ")), then the rest with white space trimmed. The name is only
 * checked here; the zone file is read by whoever evaluates the schedule. */
static int parse_zone_prefix(const char **spec, evs_cronexpr_t *x, errbuf_t *e) {
  const char *s = *spec;
  if (strncmp(s, "TZ=", 3) != 0 && strncmp(s, "CRON_TZ=", 8) != 0)
    return 0;
  const char *eq = strchr(s, '='), *sp = strchr(s, ' ');
  if (sp == NULL) /* robfig slices spec[eq+1:-1] here and panics; we refuse */
    return fail(e, "provided bad location: no space after the zone in %s", s);
  size_t n = (size_t)(sp - (eq + 1));
  if (n >= sizeof x->zone)
    return fail(e, "provided bad location %.*s: time: invalid location name", (int)n, eq + 1);
  memcpy(x->zone, eq + 1, n);
  x->zone[n] = 0;
  if (evs_tz_name_check(x->zone) != 0)
    return fail(e, "provided bad location %s: time: invalid location name", x->zone);
  x->has_zone = 1;
  for (size_t l; (l = evs_param_space_len(sp)) > 0;)
    sp += l;
  *spec = sp;
  return 0;
}

int evs_cronexpr_parse(const char *spec, evs_cronexpr_t *out, char *err, size_t errcap) {
  errbuf_t e = {err, errcap};
  if (errcap > 0)
    err[0] = 0;
  memset(out, 0, sizeof *out);
  if (spec == NULL || spec[0] == 0)
    return fail(&e, "empty spec string");
  evs_cronexpr_t x = {0};
  int rc = parse_zone_prefix(&spec, &x, &e);
  if (rc != 0)
    return rc;
  if (spec[0] == '@')
    return fail(&e, "parser does not accept descriptors: %s", spec);
  span_t f[5];
  size_t n = split_fields(spec, f, 5);
  if (n != 5)
    return field_count_error(spec, n, &e);
  if ((rc = get_field(f[0], &b_minute, &x.minute, &e)) != 0 ||
      (rc = get_field(f[1], &b_hour, &x.hour, &e)) != 0 ||
      (rc = get_field(f[2], &b_dom, &x.dom, &e)) != 0 ||
      (rc = get_field(f[3], &b_month, &x.month, &e)) != 0 ||
      (rc = get_field(f[4], &b_dow, &x.dow, &e)) != 0)
    return rc;
  *out = x;
  return 0;
}

/* ---- Next (robfig spec.go), on Go time semantics from tz.c ---- */

static int day_matches(const evs_cronexpr_t *s, const evs_tm_t *tm) {
  int dom = (s->dom >> tm->day & 1) != 0;
  int dow = (s->dow >> tm->wday & 1) != 0;
  if ((s->dom & EVS_CRONEXPR_STAR) || (s->dow & EVS_CRONEXPR_STAR))
    return dom && dow;
  return dom || dow;
}

/* A field with no value at all can never match: robfig would then spin until its five-year
 * limit and return the zero time; answering at once is the same result, faster. */
static int never_matches(const evs_cronexpr_t *s) {
  uint64_t m = ~EVS_CRONEXPR_STAR;
  int star = (s->dom & EVS_CRONEXPR_STAR) || (s->dow & EVS_CRONEXPR_STAR);
  int days = star ? (s->dom & m) && (s->dow & m) : (s->dom & m) || (s->dow & m);
  return !(s->minute & m) || !(s->hour & m) || !(s->month & m) || !days;
}

typedef struct {
  const evs_tz_t *tz;
  int64_t t;
  evs_tm_t tm;
} gtime_t;

static void g_set(gtime_t *g, int64_t t) {
  g->t = t;
  evs_tz_civil(g->tz, t, &g->tm);
}

static void g_date(gtime_t *g, int64_t y, int64_t mo, int64_t d, int64_t h) {
  g_set(g, evs_tz_date(g->tz, y, mo, d, h, 0, 0));
}

/* Go's AddDate: the wall clock moved by calendar units, then resolved like time.Date. */
static void g_add_date(gtime_t *g, int months, int days) {
  const evs_tm_t *m = &g->tm;
  g_set(g, evs_tz_date(g->tz, m->year, m->month + months, m->day + days, m->hour, m->min, m->sec));
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* A safety net for hostile zone data only: with real zones Next takes at most a few thousand
 * steps (five years of months and days, then 24 hours and 60 minutes). */
#define NEXT_MAX_STEPS 200000

int evs_cronexpr_next(const evs_cronexpr_t *s, const evs_tz_t *tz, int64_t t_ms, int64_t *out) {
  if (never_matches(s))
    return EVS_ENOTFOUND;
  gtime_t g = {.tz = tz};
  /* Start at the earliest possible time: the upcoming whole second. */
  g_set(&g, floor_div(t_ms, 1000) + 1);
  int added = 0;
  long steps = 0;
  int64_t year_limit = g.tm.year + 5;
wrap:
  if (g.tm.year > year_limit || ++steps > NEXT_MAX_STEPS)
    return EVS_ENOTFOUND;
  while (!(s->month >> g.tm.month & 1)) {
    if (!added) {
      added = 1;
      g_date(&g, g.tm.year, g.tm.month, 1, 0);
    }
    g_add_date(&g, 1, 0);
    if (g.tm.month == 1)
      goto wrap;
    if (++steps > NEXT_MAX_STEPS)
      return EVS_ENOTFOUND;
  }
  /* robfig: where DST makes midnight not exist (or repeat), the day step lands at 23:00 or
   * 01:00; it moves to the nearest midnight-ish hour and carries on. */
  while (!day_matches(s, &g.tm)) {
    if (!added) {
      added = 1;
      g_date(&g, g.tm.year, g.tm.month, g.tm.day, 0);
    }
    g_add_date(&g, 0, 1);
    if (g.tm.hour != 0)
      g_set(&g, g.t + (g.tm.hour > 12 ? 24 - g.tm.hour : -g.tm.hour) * (int64_t)3600);
    if (g.tm.day == 1)
      goto wrap;
    if (++steps > NEXT_MAX_STEPS)
      return EVS_ENOTFOUND;
  }
  while (!(s->hour >> g.tm.hour & 1)) {
    if (!added) {
      added = 1;
      g_date(&g, g.tm.year, g.tm.month, g.tm.day, g.tm.hour);
    }
    g_set(&g, g.t + 3600);
    if (g.tm.hour == 0)
      goto wrap;
    if (++steps > NEXT_MAX_STEPS)
      return EVS_ENOTFOUND;
  }
  while (!(s->minute >> g.tm.min & 1)) {
    if (!added) {
      added = 1;
      g_set(&g, floor_div(g.t, 60) * 60); /* Truncate(Minute) works on absolute time */
    }
    g_set(&g, g.t + 60);
    if (g.tm.min == 0)
      goto wrap;
    if (++steps > NEXT_MAX_STEPS)
      return EVS_ENOTFOUND;
  }
  /* The seconds field is always "0" for a 5-field spec. */
  while (g.tm.sec != 0) {
    added = 1;
    g_set(&g, g.t + 1);
    if (g.tm.sec == 0)
      goto wrap;
    if (++steps > NEXT_MAX_STEPS)
      return EVS_ENOTFOUND;
  }
  *out = g.t;
  return 0;
}
