/* libFuzzer target: the TZif reader and the zone arithmetic on whatever it accepts. Seeds are real
 * zone files from Debian's tzdata (public domain). Lookups at extreme instants, local→UTC
 * conversion and one cron Next must neither crash nor trip the sanitizers. */
#include <stdint.h>
#include <stdlib.h>

#include "evscale/cronexpr.h"
#include "evscale/error.h"
#include "evscale/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs_tz_t *tz = NULL;
  if (evs_tz_parse(data, size, "fuzz", &tz) != 0) {
    if (tz != NULL)
      abort();
    return 0;
  }
  static const int64_t at[] = {INT64_MIN,    -62135596800LL,   -1,       0, 1795478400LL,
                               2240000000LL, (int64_t)1 << 40, INT64_MAX};
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
    evs_tz_period_t p;
    evs_tz_lookup(tz, at[i], &p);
    /* Go's [start, end) is only exact near transitions (tzset), so only the name is checked. */
    if (p.abbr == NULL)
      abort();
    evs_tm_t tm;
    evs_tz_civil(tz, at[i], &tm);
    if (tm.month < 1 || tm.month > 12 || tm.day < 1 || tm.day > 31 || tm.hour > 23)
      abort();
  }
  (void)evs_tz_date(tz, 2026, 3, 8, 2, 30, 0);
  (void)evs_tz_date(tz, 2040, 11, 4, 1, 30, 0);
  (void)evs_tz_date(tz, INT64_MAX, INT64_MIN, 40, -3, 99, 61);
  evs_cronexpr_t e;
  char err[64];
  if (evs_cronexpr_parse("30 2 * * *", &e, err, sizeof err) == 0) {
    int64_t next;
    (void)evs_cronexpr_next(&e, tz, 1795478400000LL, &next);
  }
  evs_tz_unref(tz);
  return 0;
}
