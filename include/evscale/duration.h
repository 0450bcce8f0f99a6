/* Durations as Go's time.ParseDuration writes them, for the units a configuration needs:
 * "500ms", "15s", "1m", "1h", combinations such as "1m30s" or "1h0m5s", and decimals such as
 * "1.5s". The value is in milliseconds.
 *
 * A bare number is refused (except "0"), as Go refuses it: "30" could mean seconds (KEDA's
 * pollingInterval) or milliseconds, and guessing wrong is a silent factor of 1000. Negative
 * values, unknown units ("us", "d"), a fraction finer than a millisecond and values that do not
 * fit in 64 bits are errors. */
#ifndef EVSCALE_DURATION_H
#define EVSCALE_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parses s (NUL-terminated) into *ms. Returns 0, UV_EINVAL (syntax, unknown unit, missing unit,
 * negative, sub-millisecond fraction) or EVS_ERANGE (overflow). *ms is untouched on error. */
int evs_duration_parse(const char *s, uint64_t *ms);

/* Writes the canonical form into buf (NUL-terminated, truncated) and returns the would-be length
 * like snprintf: zero components are left out ("1h", "1h30m", "1m30s", "1.5s", "500ms", "0s").
 * evs_duration_parse of the output gives ms back. */
int evs_duration_format(uint64_t ms, char *buf, size_t cap);

#endif
