/* The `cron` trigger: KEDA's cron scaler (kedacore/keda @ 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a,
 * pkg/scalers/cron_scaler.go), event-driven.
 *
 * Metadata (each value trimmed of white space, as KEDA's typed config does; empty = missing):
 *   timezone         IANA name, required ("UTC" and "Local" are built in, as in Go)
 *   start, end       5-field cron expressions (cronexpr.h), required, must differ
 *   desiredReplicas  a JSON integer (KEDA decodes it into an int64), required, not 0
 *
 * Readings: with nextStart = Next(start, now) and nextEnd = Next(end, now) in the zone, the trigger
 * is active exactly when KEDA's GetMetricsAndActivity says so, which amounts to "the next end
 * comes no later than the next start"; the value is desiredReplicas when active, else 0 (the HPA
 * target is 1, so the HPA asks for desiredReplicas). next_change_ms is the earlier of the two
 * boundaries.
 *
 * Creation errors name the field ("metadata.start: …"). A malformed zone name ("..", a leading
 * '/') fails creation, and so does an unknown zone when the zone index (evs_tz_index_load, done
 * at start-up) is loaded: the index answers without I/O. The zone file itself is read
 * asynchronously after start (tz.h); a zone that is listed but unreadable, or any unknown zone
 * when no index could be loaded, is reported as readings with error EVS_ETZ and error_msg
 * "metadata.timezone: unknown time zone 'X'" ("metadata.start: …" for the zone of a TZ= prefix);
 * every later poll retries the load.
 *
 * Timing: a uv timer is armed for the next boundary computed from the wall clock; it fires within
 * the boundary's millisecond and the reading follows at once. libuv timers run on the monotonic
 * clock, so a second timer (unref'd, every 2 s) compares the wall clock with the monotonic clock
 * and re-arms when they drifted apart by more than 20 ms since the last arming (NTP slew), and
 * also delivers a fresh reading when they jumped by more than a second (NTP step, suspend). */
#ifndef EVSCALE_CRON_H
#define EVSCALE_CRON_H

#include <stdint.h>

#include "evscale/cronexpr.h"
#include "evscale/scaler.h"
#include "evscale/tz.h"

extern const evs_scaler_type_t evs_scaler_cron_type;

/* Go's zero time (0001-01-01T00:00:00Z) in Unix seconds: robfig's "no next time". */
#define EVS_CRON_ZERO_TIME INT64_C(-62135596800)

typedef struct {
  int active;
  int64_t next_start; /* Unix seconds, or EVS_CRON_ZERO_TIME */
  int64_t next_end;
} evs_cron_window_t;

/* The pure decision: KEDA's GetMetricsAndActivity at now_ms (wall clock, ms since the epoch).
 * Each schedule is evaluated in its zone: its TZ= zone if it has one, else the trigger's. */
void evs_cron_window(const evs_cronexpr_t *start, const evs_tz_t *start_tz,
                     const evs_cronexpr_t *end, const evs_tz_t *end_tz, int64_t now_ms,
                     evs_cron_window_t *out);

/* Checks a zone name as creation does: its syntax, and that the tz database has it when the zone
 * index is loaded. Returns 0, or EVS_ETZ with a message in err. Shared with the ScaledObject
 * validator so that check-config and the API path refuse what creation would refuse. */
int evs_cron_check_zone(const char *name, char *err, size_t errcap);
/* Wall clock in ms since the epoch. */
typedef int64_t (*evs_cron_clock_fn)(void *data);

/* For tests: replaces the wall clock of a cron scaler (default: CLOCK_REALTIME) and the period of
 * its clock-jump check (default 2000 ms; 0 keeps the default). Call before evs_scaler_start.
 * Returns UV_EINVAL when `scaler` is not a cron scaler. */
int evs_cron_set_clock(evs_scaler_t *scaler, evs_cron_clock_fn fn, void *data, uint64_t check_ms);

#endif
