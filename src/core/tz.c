/* TZif reader and Go-compatible zone arithmetic (see include/evscale/tz.h for the sources).
 *
 * Everything here is pure: no I/O, no global state besides the static UTC zone. Arithmetic that
 * could overflow on hostile files (transition times near INT64_MIN/MAX, offsets of ±2^31) is
 * saturated, so a fuzzed zone yields nonsense times but never undefined behaviour. */
#include "evscale/tz.h"
#include "evscale/error.h"
#include "tz_int.h"

#include <stdlib.h>
#include <string.h>

#define TZ_ALPHA INT64_MIN
#define TZ_OMEGA INT64_MAX
#define SECS_PER_DAY 86400
/* Go's readFile refuses zone files over 10 MiB (golang/go: src/time/zoneinfo_read.go). */
#define TZ_MAX_FILE (10u << 20)

enum { RULE_JULIAN, RULE_DOY, RULE_MWD };

typedef struct {
  int kind, day, week, mon;
  int32_t time;
} tz_rule_t;

typedef struct {
  int32_t off;
  uint8_t isdst;
  uint32_t abbr; /* index into abbrs */
} tz_zone_t;

struct evs_tz_s {
  unsigned refs; /* 0 = static, never freed */
  char *name;
  tz_zone_t *zones;
  size_t nzone;
  int64_t *tx_when;
  uint8_t *tx_idx;
  size_t ntx;
  char *abbrs; /* NUL-terminated copy of the abbreviation block */
  char *footer;
  int first_zone;
  /* The footer, parsed once (Go parses it on every lookup, with the same result). */
  int has_extend, extend_dst;
  char *std_name, *dst_name;
  int32_t std_off, dst_off;
  tz_rule_t r_start, r_end;
  void *cache;
};

static evs_tz_t evs__tz_utc = {.name = "UTC", .footer = ""};

const evs_tz_t *evs_tz_utc(void) { return &evs__tz_utc; }

static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

static int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* ---- civil calendar (proleptic Gregorian; H. Hinnant's days_from_civil) ---- */

int64_t evs_tz_days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void evs_tz_civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

static int days_in(int m, int64_t y) {
  static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static const int days_before[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365};

/* Instants are clamped to ±2^52 s (±142 million years) before calendar math so that day
 * counts stay far from overflow whatever a file or caller supplies. */
static int64_t clamp_t(int64_t t) {
  const int64_t lim = (int64_t)1 << 52;
  return t > lim ? lim : t < -lim ? -lim : t;
}

/* ---- TZif parsing (RFC 8536; Go's LoadLocationFromTZData) ---- */

typedef struct {
  const uint8_t *p;
  size_t n;
  int err;
} rd_t;

static const uint8_t *rd_take(rd_t *r, uint64_t n) {
  if (r->err || n > r->n) {
    r->err = 1;
    return NULL;
  }
  const uint8_t *p = r->p;
  r->p += n;
  r->n -= n;
  return p;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

enum { N_UTLOCAL, N_STDWALL, N_LEAP, N_TIME, N_ZONE, N_CHAR };

static int rd_counts(rd_t *r, uint64_t n[6]) {
  const uint8_t *p = rd_take(r, 24);
  if (p == NULL)
    return EVS_ETZ;
  for (int i = 0; i < 6; i++)
    n[i] = be32(p + 4 * i);
  return 0;
}

/* Bytes of one data block, as Go skips the v1 block of a v2+ file. */
static uint64_t block_size(const uint64_t n[6], uint64_t tsize) {
  return n[N_TIME] * tsize + n[N_TIME] + n[N_ZONE] * 6 + n[N_CHAR] + n[N_LEAP] * (tsize + 4) +
         n[N_STDWALL] + n[N_UTLOCAL];
}

static int tz_read_zones(evs_tz_t *tz, const uint8_t *zd, uint64_t nzone, uint64_t nchar) {
  /* Go rejects files without local time types: nothing useful in them (golang.org/issue/29437). */
  if (nzone == 0)
    return EVS_ETZ;
  tz->zones = calloc(nzone, sizeof *tz->zones);
  if (tz->zones == NULL)
    return UV_ENOMEM;
  tz->nzone = nzone;
  for (uint64_t i = 0; i < nzone; i++) {
    const uint8_t *z = zd + 6 * i;
    tz->zones[i].off = (int32_t)be32(z);
    tz->zones[i].isdst = z[4] != 0;
    if (z[5] >= nchar)
      return EVS_ETZ;
    tz->zones[i].abbr = z[5];
  }
  return 0;
}

static int tz_read_tx(evs_tz_t *tz, const uint8_t *times, const uint8_t *idx, uint64_t ntime,
                      int is64) {
  /* Go adds one fake transition at the beginning of time when a file has none (fixed zones
   * such as Etc/UTC), so that the footer applies to every instant. */
  uint64_t n = ntime ? ntime : 1;
  tz->tx_when = malloc(n * sizeof *tz->tx_when);
  tz->tx_idx = malloc(n);
  if (tz->tx_when == NULL || tz->tx_idx == NULL)
    return UV_ENOMEM;
  tz->ntx = n;
  if (ntime == 0) {
    tz->tx_when[0] = TZ_ALPHA;
    tz->tx_idx[0] = 0;
    return 0;
  }
  for (uint64_t i = 0; i < ntime; i++) {
    tz->tx_when[i] = is64 ? (int64_t)be64(times + 8 * i) : (int32_t)be32(times + 4 * i);
    if (idx[i] >= tz->nzone)
      return EVS_ETZ;
    tz->tx_idx[i] = idx[i];
  }
  return 0;
}

/* lookupFirstZone (tzcode 2013g's rule): the zone for instants before the first transition. */
static int tz_first_zone(const evs_tz_t *tz, size_t real_ntx) {
  int used = 0;
  for (size_t i = 0; i < real_ntx; i++)
    used |= tz->tx_idx[i] == 0;
  if (!used)
    return 0;
  if (real_ntx > 0 && tz->zones[tz->tx_idx[0]].isdst)
    for (int zi = (int)tz->tx_idx[0] - 1; zi >= 0; zi--)
      if (!tz->zones[zi].isdst)
        return zi;
  for (size_t zi = 0; zi < tz->nzone; zi++)
    if (!tz->zones[zi].isdst)
      return (int)zi;
  return 0;
}

static int tz_parse_extend(evs_tz_t *tz);

static int tz_parse_body(evs_tz_t *tz, rd_t *r) {
  const uint8_t *hdr = rd_take(r, 20);
  if (hdr == NULL || memcmp(hdr, "TZif", 4) != 0)
    return EVS_ETZ;
  /* Go knows versions 0 (v1), '2' and '3'; '4' (RFC 9636) only adds leap-second rules we skip. */
  int version = hdr[4] == 0 ? 1 : (hdr[4] >= '2' && hdr[4] <= '4') ? 2 : 0;
  if (version == 0)
    return EVS_ETZ;
  uint64_t n[6];
  if (rd_counts(r, n) != 0)
    return EVS_ETZ;
  uint64_t tsize = 4;
  if (version > 1) {
    /* Skip the 32-bit block and the second header; read the 64-bit counts. */
    rd_take(r, block_size(n, 4) + 20);
    if (rd_counts(r, n) != 0)
      return EVS_ETZ;
    tsize = 8;
  }
  const uint8_t *times = rd_take(r, n[N_TIME] * tsize);
  const uint8_t *idx = rd_take(r, n[N_TIME]);
  const uint8_t *zd = rd_take(r, n[N_ZONE] * 6);
  const uint8_t *abbr = rd_take(r, n[N_CHAR]);
  rd_take(r, n[N_LEAP] * (tsize + 4) + n[N_STDWALL] + n[N_UTLOCAL]);
  if (r->err)
    return EVS_ETZ;
  tz->abbrs = malloc(n[N_CHAR] + 1);
  if (tz->abbrs == NULL)
    return UV_ENOMEM;
  if (n[N_CHAR])
    memcpy(tz->abbrs, abbr, n[N_CHAR]);
  tz->abbrs[n[N_CHAR]] = 0;
  int rc = tz_read_zones(tz, zd, n[N_ZONE], n[N_CHAR]);
  if (rc == 0)
    rc = tz_read_tx(tz, times, idx, n[N_TIME], tsize == 8);
  if (rc != 0)
    return rc;
  tz->first_zone = tz_first_zone(tz, n[N_TIME]);
  /* The footer: "\n<TZ string>\n" after the data, as Go reads it (rest[0] and rest[last] are
   * newlines and there is something between them). */
  if (r->n > 2 && r->p[0] == '\n' && r->p[r->n - 1] == '\n') {
    tz->footer = malloc(r->n - 1);
    if (tz->footer == NULL)
      return UV_ENOMEM;
    memcpy(tz->footer, r->p + 1, r->n - 2);
    tz->footer[r->n - 2] = 0;
    tz_parse_extend(tz);
  }
  return 0;
}

int evs_tz_parse(const uint8_t *data, size_t len, const char *name, evs_tz_t **out) {
  *out = NULL;
  if (data == NULL || len > TZ_MAX_FILE)
    return EVS_ETZ;
  evs_tz_t *tz = calloc(1, sizeof *tz);
  if (tz == NULL)
    return UV_ENOMEM;
  tz->refs = 1;
  tz->name = strdup(name ? name : "");
  rd_t r = {data, len, 0};
  int rc = tz->name ? tz_parse_body(tz, &r) : UV_ENOMEM;
  if (rc == 0 && tz->footer == NULL)
    tz->footer = strdup("");
  if (rc == 0 && tz->footer == NULL)
    rc = UV_ENOMEM;
  if (rc != 0) {
    tz->cache = NULL;
    evs_tz_unref(tz);
    return rc;
  }
  *out = tz;
  return 0;
}

evs_tz_t *evs_tz_ref(const evs_tz_t *ctz) {
  evs_tz_t *tz = (evs_tz_t *)ctz;
  if (tz && tz->refs)
    tz->refs++;
  return tz;
}

void evs_tz_unref(const evs_tz_t *ctz) {
  evs_tz_t *tz = (evs_tz_t *)ctz;
  if (tz == NULL || tz->refs == 0 || --tz->refs > 0)
    return;
  if (tz->cache)
    evs_tz__cache_forget(tz->cache);
  free(tz->name);
  free(tz->zones);
  free(tz->tx_when);
  free(tz->tx_idx);
  free(tz->abbrs);
  free(tz->footer);
  free(tz->std_name);
  free(tz->dst_name);
  free(tz);
}

void evs_tz__set_cache(evs_tz_t *tz, void *entry) {
  if (tz->refs)
    tz->cache = entry;
}

const char *evs_tz_name(const evs_tz_t *tz) { return tz->name; }
const char *evs_tz_footer(const evs_tz_t *tz) { return tz->footer; }
size_t evs_tz_transition_count(const evs_tz_t *tz) { return tz->ntx; }

/* ---- the footer TZ string (Go's tzsetName / tzsetOffset / tzsetRule / tzsetNum) ---- */

static const char *tzs_name(const char *s, char **out) {
  const char *b = s, *e;
  if (*s == 0)
    return NULL;
  if (*s == '<') {
    e = strchr(s, '>');
    if (e == NULL)
      return NULL;
    b = s + 1;
    s = e + 1;
  } else {
    e = s + strcspn(s, "0123456789,-+");
    if (e - s < 3)
      return NULL;
    s = e;
  }
  *out = strndup(b, (size_t)(e - b));
  return *out ? s : NULL;
}

static const char *tzs_num(const char *s, int min, int max, int *out) {
  int num = 0, i = 0;
  for (; s[i] >= '0' && s[i] <= '9'; i++) {
    num = num * 10 + (s[i] - '0');
    if (num > max)
      return NULL;
  }
  if (i == 0 || num < min)
    return NULL;
  *out = num;
  return s + i;
}

static const char *tzs_offset(const char *s, int32_t *out) {
  int neg = *s == '-', h, m = 0, sec = 0;
  if (*s == '+' || *s == '-')
    s++;
  /* tzcode permits hours up to 24 * 7 here, although POSIX does not. */
  if ((s = tzs_num(s, 0, 24 * 7, &h)) == NULL)
    return NULL;
  if (*s == ':' && (s = tzs_num(s + 1, 0, 59, &m)) == NULL)
    return NULL;
  if (*s == ':' && (s = tzs_num(s + 1, 0, 59, &sec)) == NULL)
    return NULL;
  int32_t off = h * 3600 + m * 60 + sec;
  *out = neg ? -off : off;
  return s;
}

static const char *tzs_rule(const char *s, tz_rule_t *r) {
  memset(r, 0, sizeof *r);
  if (*s == 'J') {
    r->kind = RULE_JULIAN;
    s = tzs_num(s + 1, 1, 365, &r->day);
  } else if (*s == 'M') {
    r->kind = RULE_MWD;
    s = tzs_num(s + 1, 1, 12, &r->mon);
    s = s && *s == '.' ? tzs_num(s + 1, 1, 5, &r->week) : NULL;
    s = s && *s == '.' ? tzs_num(s + 1, 0, 6, &r->day) : NULL;
  } else {
    r->kind = RULE_DOY;
    s = tzs_num(s, 0, 365, &r->day);
  }
  if (s == NULL)
    return NULL;
  r->time = 2 * 3600; /* 2am is the default */
  if (*s == '/')
    s = tzs_offset(s + 1, &r->time);
  return s;
}

/* On failure the zone simply has no extension, as when Go's tzset reports !ok. */
static int tz_parse_extend(evs_tz_t *tz) {
  const char *s = tzs_name(tz->footer, &tz->std_name);
  if (s == NULL || (s = tzs_offset(s, &tz->std_off)) == NULL)
    return EVS_ETZ;
  /* TZ strings count offsets west of UTC; ours count east. */
  tz->std_off = -tz->std_off;
  if (*s == 0 || *s == ',') {
    tz->has_extend = 1;
    return 0;
  }
  if ((s = tzs_name(s, &tz->dst_name)) == NULL)
    return EVS_ETZ;
  if (*s == 0 || *s == ',') {
    tz->dst_off = tz->std_off + 3600;
  } else {
    if ((s = tzs_offset(s, &tz->dst_off)) == NULL)
      return EVS_ETZ;
    tz->dst_off = -tz->dst_off;
  }
  if (*s == 0)
    s = ",M3.2.0,M11.1.0"; /* default DST rules per tzcode */
  if (*s != ',' && *s != ';')
    return EVS_ETZ;
  s = tzs_rule(s + 1, &tz->r_start);
  if (s == NULL || *s != ',')
    return EVS_ETZ;
  s = tzs_rule(s + 1, &tz->r_end);
  if (s == NULL || *s != 0)
    return EVS_ETZ;
  tz->has_extend = tz->extend_dst = 1;
  return 0;
}

/* Go's tzruleTime: seconds since the start of `year` (UTC) at which rule r takes effect. */
static int64_t tz_rule_time(int64_t year, const tz_rule_t *r, int32_t off) {
  int64_t s = 0;
  if (r->kind == RULE_JULIAN) {
    s = (int64_t)(r->day - 1) * SECS_PER_DAY;
    if (is_leap(year) && r->day >= 60)
      s += SECS_PER_DAY;
  } else if (r->kind == RULE_DOY) {
    s = (int64_t)r->day * SECS_PER_DAY;
  } else {
    /* Weekday of the first of the month, then the week-th such weekday (5 = last). */
    int64_t first = evs_tz_days_from_civil(year, r->mon, 1);
    int dow = (int)(((first + 4) % 7 + 7) % 7);
    int d = r->day - dow;
    if (d < 0)
      d += 7;
    for (int i = 1; i < r->week; i++) {
      if (d + 7 >= days_in(r->mon, year))
        break;
      d += 7;
    }
    d += days_before[r->mon - 1];
    if (is_leap(year) && r->mon > 2)
      d++;
    s = (int64_t)d * SECS_PER_DAY;
  }
  return s + r->time - off;
}

/* Go's tzset for an instant past the last transition; last_tx is that transition. */
static void tz_extend(const evs_tz_t *tz, int64_t last_tx, int64_t sec, evs_tz_period_t *p) {
  if (!tz->extend_dst) {
    *p = (evs_tz_period_t){tz->std_off, 0, last_tx, TZ_OMEGA, tz->std_name};
    return;
  }
  int64_t csec = clamp_t(sec), year;
  int m, d;
  evs_tz_civil_from_days(floordiv(csec, SECS_PER_DAY), &year, &m, &d);
  int64_t ystart = evs_tz_days_from_civil(year, 1, 1) * SECS_PER_DAY;
  int64_t ysec = csec - ystart;
  int64_t st = tz_rule_time(year, &tz->r_start, tz->std_off);
  int64_t en = tz_rule_time(year, &tz->r_end, tz->dst_off);
  evs_tz_period_t std = {tz->std_off, 0, 0, 0, tz->std_name};
  evs_tz_period_t dst = {tz->dst_off, 1, 0, 0, tz->dst_name};
  if (en < st) { /* southern hemisphere: the "DST" rule bounds standard time */
    int64_t t = st;
    st = en;
    en = t;
    evs_tz_period_t x = std;
    std = dst;
    dst = x;
  }
  if (ysec < st) {
    *p = std;
    p->start = ystart;
    p->end = st + ystart;
  } else if (ysec >= en) {
    *p = std;
    p->start = en + ystart;
    p->end = ystart + 365 * SECS_PER_DAY; /* sic: Go uses 365 even in leap years */
  } else {
    *p = dst;
    p->start = st + ystart;
    p->end = en + ystart;
  }
}

static void tz_zone_period(const evs_tz_t *tz, int zi, int64_t start, int64_t end,
                           evs_tz_period_t *p) {
  const tz_zone_t *z = &tz->zones[zi];
  *p = (evs_tz_period_t){z->off, z->isdst, start, end, tz->abbrs + z->abbr};
}

void evs_tz_lookup(const evs_tz_t *tz, int64_t sec, evs_tz_period_t *p) {
  if (tz->nzone == 0) {
    *p = (evs_tz_period_t){0, 0, TZ_ALPHA, TZ_OMEGA, "UTC"};
    return;
  }
  if (sec < tz->tx_when[0]) {
    tz_zone_period(tz, tz->first_zone, TZ_ALPHA, tz->tx_when[0], p);
    return;
  }
  /* Binary search for the last transition <= sec; end is the next one. */
  size_t lo = 0, hi = tz->ntx;
  int64_t end = TZ_OMEGA;
  while (hi - lo > 1) {
    size_t m = lo + (hi - lo) / 2;
    if (sec < tz->tx_when[m]) {
      end = tz->tx_when[m];
      hi = m;
    } else {
      lo = m;
    }
  }
  tz_zone_period(tz, tz->tx_idx[lo], tz->tx_when[lo], end, p);
  if (lo == tz->ntx - 1 && tz->has_extend)
    tz_extend(tz, tz->tx_when[lo], sec, p);
}

int32_t evs_tz_offset(const evs_tz_t *tz, int64_t t) {
  evs_tz_period_t p;
  evs_tz_lookup(tz, t, &p);
  return p.offset;
}

void evs_tz_civil(const evs_tz_t *tz, int64_t t, evs_tm_t *tm) {
  int64_t local = clamp_t(sat_add(clamp_t(t), evs_tz_offset(tz, t)));
  int64_t days = floordiv(local, SECS_PER_DAY);
  int64_t rem = local - days * SECS_PER_DAY;
  evs_tz_civil_from_days(days, &tm->year, &tm->month, &tm->day);
  tm->hour = (int)(rem / 3600);
  tm->min = (int)(rem / 60 % 60);
  tm->sec = (int)(rem % 60);
  tm->wday = (int)(((days + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
  tm->yday = days_before[tm->month - 1] + tm->day + (is_leap(tm->year) && tm->month > 2);
}

/* Go's norm: hi*base + lo == nhi*base + nlo with 0 <= nlo < base. */
static void norm(int64_t *hi, int64_t *lo, int64_t base) {
  int64_t n = floordiv(*lo, base);
  *hi += n;
  *lo -= n * base;
}

static int64_t clamp_field(int64_t v) {
  const int64_t lim = 1000000000; /* keeps every product below far from overflow */
  return v > lim ? lim : v < -lim ? -lim : v;
}

int64_t evs_tz_date(const evs_tz_t *tz, int64_t year, int64_t month, int64_t day, int64_t hour,
                    int64_t min, int64_t sec) {
  year = clamp_field(year);
  int64_t m = clamp_field(month) - 1;
  day = clamp_field(day), hour = clamp_field(hour), min = clamp_field(min), sec = clamp_field(sec);
  norm(&year, &m, 12);
  norm(&min, &sec, 60);
  norm(&hour, &min, 60);
  norm(&day, &hour, 24);
  int64_t days = evs_tz_days_from_civil(year, (int)m + 1, 1) + day - 1;
  int64_t unix = days * SECS_PER_DAY + hour * 3600 + min * 60 + sec;
  /* Look the zone up at the wall time read as UTC; if the instant that offset gives falls
   * outside that zone period, the wall time is near a transition: use the offset in force at
   * the adjusted instant (golang/go time.go Date). Which side a gap or an overlap resolves to
   * depends on where the first lookup lands: New York 02:30 on a spring-forward day becomes
   * 01:30 EST, Berlin's becomes 03:30 CEST; New York's repeated 01:30 is EDT, Berlin's
   * repeated 02:30 is CET. The tests pin these down. */
  evs_tz_period_t p;
  evs_tz_lookup(tz, unix, &p);
  if (p.offset != 0) {
    int64_t utc = unix - p.offset;
    int32_t off = p.offset;
    if (utc < p.start || utc >= p.end)
      off = evs_tz_offset(tz, utc);
    unix -= off;
  }
  return unix;
}

int evs_tz_name_check(const char *name) {
  if (name == NULL)
    return EVS_ETZ;
  size_t n = strlen(name);
  if (n > 255 || strstr(name, "..") || name[0] == '/' || name[0] == '\\')
    return EVS_ETZ;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
      return EVS_ETZ;
  return 0;
}
