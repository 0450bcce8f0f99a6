/* Time zones read from the system's tz database (TZif files, RFC 8536), converted in pure code.
 *
 * libc only offers the process-wide TZ, and evscale needs many zones at once (one per cron
 * trigger), so this module parses TZif v1/v2/v3/v4 data itself, including the v2+ footer (a POSIX
 * TZ string such as "EST5EDT,M3.2.0,M11.1.0" that rules instants past the last transition).
 *
 * The semantics follow Go's time package, because KEDA's cron scaler computes its windows with
 * Go's time.Location (golang/go: src/time/zoneinfo.go `lookup`, `lookupFirstZone`, `tzset`,
 * `tzruleTime`; src/time/zoneinfo_read.go `LoadLocationFromTZData`; src/time/time.go `Date`,
 * read at commits 3dac2043 / 78e000ae / 62e6931c and the newer footer handling that passes the
 * last transition as tzset's start). In particular evs_tz_date converts a local wall time to UTC
 * exactly as time.Date does for skipped (gap) and repeated (overlap) local times.
 *
 * Loading (tzcache.c) reads /usr/share/zoneinfo/<name> (or $TZDIR/<name>) with uv_fs_* so the
 * loop never blocks, and shares one parsed zone per name among all users (reference counted).
 *
 * Times are int64 seconds since the Unix epoch unless named _ms. */
#ifndef EVSCALE_TZ_H
#define EVSCALE_TZ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct evs_tz_s evs_tz_t;

/* The period an instant falls in, as Go's Location.lookup reports it: the offset east of UTC and
 * a [start, end) range of instants known to share it (start/end are exact near transitions and
 * otherwise conservative, which is all time.Date needs). */
typedef struct {
  int32_t offset;
  int is_dst;
  int64_t start;
  int64_t end;
  const char *abbr; /* "EST"; borrowed from the zone */
} evs_tz_period_t;

/* A broken-down local time. month 1-12, day 1-31, wday 0 = Sunday, yday 1-366. */
typedef struct {
  int64_t year;
  int month, day, hour, min, sec, wday, yday;
} evs_tm_t;

/* Parses TZif data (borrowed). On success *out is new (evs_tz_unref frees it) with refcount 1;
 * EVS_ETZ on malformed or truncated data (never crashes). `name` is copied. */
int evs_tz_parse(const uint8_t *data, size_t len, const char *name, evs_tz_t **out);
/* Go's time.UTC: offset 0 at every instant. Static; ref/unref are no-ops on it. */
const evs_tz_t *evs_tz_utc(void);
/* Reference counting (loop thread only). unref frees at zero. Both accept NULL. */
evs_tz_t *evs_tz_ref(const evs_tz_t *tz);
void evs_tz_unref(const evs_tz_t *tz);
const char *evs_tz_name(const evs_tz_t *tz);
/* The footer TZ string ("" when absent); borrowed. */
const char *evs_tz_footer(const evs_tz_t *tz);
size_t evs_tz_transition_count(const evs_tz_t *tz);

/* Go's Location.lookup. */
void evs_tz_lookup(const evs_tz_t *tz, int64_t t, evs_tz_period_t *out);
int32_t evs_tz_offset(const evs_tz_t *tz, int64_t t);
/* Local fields of instant t in tz. */
void evs_tz_civil(const evs_tz_t *tz, int64_t t, evs_tm_t *out);
/* Go's time.Date(year, month, day, hour, min, sec, 0, tz): fields may be out of range and are
 * normalised (month 13 = January next year, day 0 = last day of the previous month); a local
 * time in a gap or overlap resolves as Go resolves it. Years beyond ±1e9 are clamped. */
int64_t evs_tz_date(const evs_tz_t *tz, int64_t year, int64_t month, int64_t day, int64_t hour,
                    int64_t min, int64_t sec);

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12), and back. Pure helpers. */
int64_t evs_tz_days_from_civil(int64_t y, int m, int d);
void evs_tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* Whether `name` may name a zone file: Go's LoadLocation rule (no "..", not starting with '/'
 * or '\\') plus a length limit and no control characters. "" and "UTC" are valid (built-in UTC),
 * as is "Local" (/etc/localtime). Returns 0 or EVS_ETZ. */
int evs_tz_name_check(const char *name);

/* The names the system's tz database offers, so that a trigger naming an unknown zone is refused
 * when it is created (as KEDA refuses it) rather than failing at its first reading. Loading walks
 * the directory ($TZDIR, else /usr/share/zoneinfo, or `tzdir`) synchronously: call it at
 * start-up, before the loop runs. The index is process-wide and read-only afterwards.
 * Returns 0, UV_ENOENT (no such directory, or no zone in it) or UV_ENOMEM; on failure no index
 * is in force and creation falls back to reporting unknown zones through readings. */
int evs_tz_index_load(const char *tzdir);
/* 1 when the zone is known (or built in: "", "UTC", "Local"), 0 when the index is loaded and does
 * not have it, EVS_ESTATE when no index is loaded. */
int evs_tz_index_has(const char *name);
void evs_tz_index_free(void);

/* Asynchronous loading, shared per (loop, name). cb runs exactly once, from the loop, never from
 * inside evs_tz_load: status 0 with tz borrowed for the callback (take evs_tz_ref to keep it), or
 * a negative code (EVS_ETZ: unknown or malformed zone; UV_E*: I/O) with tz NULL. "", "UTC" need no
 * file. Files come from $TZDIR (default /usr/share/zoneinfo); at most 10 MiB, as Go reads. */
typedef struct evs_tz_load_s evs_tz_load_t;
typedef void (*evs_tz_load_cb)(evs_tz_load_t *req, int status, const evs_tz_t *tz, void *data);
/* On success *out identifies the request for evs_tz_load_cancel until cb runs. A synchronous
 * failure (bad name, no memory) returns a negative code and cb never runs. */
int evs_tz_load(uv_loop_t *loop, const char *name, evs_tz_load_cb cb, void *data,
                evs_tz_load_t **out);
/* cb will then run with UV_ECANCELED (still asynchronously, still exactly once); the shared file
 * read finishes in the background and is freed when nobody waits for it. */
void evs_tz_load_cancel(evs_tz_load_t *req);

#endif
