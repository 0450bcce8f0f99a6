/* 5-field cron expressions ("minute hour day-of-month month day-of-week"), parsed and evaluated
 * exactly as KEDA's cron scaler does: with robfig/cron v3.0.1's
 * NewParser(Minute | Hour | Dom | Month | Dow) and SpecSchedule.Next
 * (robfig/cron @ ccba498c397bb90a9c84945bbb0f7af2d72b6309: parser.go, spec.go; used by
 * kedacore/keda @ 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a: pkg/scalers/cron_scaler.go).
 *
 * Accepted: numbers, '*' and '?', ranges "a-b", steps ('*' or "a-b" or "a" followed by "/n";
 * "a/n" means a-max/n),
 * comma lists (empty items are skipped, as strings.FieldsFunc does), case-insensitive
 * three-letter month (jan..dec) and weekday (sun..sat) names. Weekdays are 0-6 (7 is an error,
 * as in robfig). When both day fields are restricted (neither starts with '*' or '?' without a
 * step > 1), a day matches if either matches (the crontab OR rule); otherwise both must.
 * Not accepted, as in KEDA: descriptors (@daily) and a sixth (seconds) field. A "TZ=<zone> " or
 * "CRON_TZ=<zone> " prefix gives the schedule its own zone, which then wins over the trigger's
 * `timezone` (robfig's SpecSchedule.Location); the parser only records and checks the name.
 *
 * Pure: no allocation, no I/O. */
#ifndef EVSCALE_CRONEXPR_H
#define EVSCALE_CRONEXPR_H

#include <stddef.h>
#include <stdint.h>

#include "evscale/tz.h"

/* robfig's bit sets: bit n set = value n allowed; bit 63 = the field was '*' or '?'. */
typedef struct {
  uint64_t minute, hour, dom, month, dow;
  int has_zone;   /* a TZ= / CRON_TZ= prefix was given */
  char zone[128]; /* its zone name ("" = UTC, as Go's LoadLocation("")) */
} evs_cronexpr_t;

#define EVS_CRONEXPR_STAR ((uint64_t)1 << 63)

/* Parses spec (NUL-terminated). On failure returns EVS_ECRON and writes robfig's message
 * ("expected exactly 5 fields, found 4: [0 8 * *]", "end of range (60) above maximum (59): 60")
 * into err (always NUL-terminated when errcap > 0). */
int evs_cronexpr_parse(const char *spec, evs_cronexpr_t *out, char *err, size_t errcap);

/* robfig's SpecSchedule.Next: the first whole second strictly after t_ms at which the schedule
 * fires, evaluated in tz (the zone named by e->zone when e->has_zone, else the trigger's); *out in
 * seconds since the epoch. EVS_ENOTFOUND when nothing matches within five years (robfig then
 * returns Go's zero time). */
int evs_cronexpr_next(const evs_cronexpr_t *e, const evs_tz_t *tz, int64_t t_ms, int64_t *out);

#endif
