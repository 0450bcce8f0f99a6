/* Exponential backoff with jitter for reconnects to any backend (config backoff.initial/.max).
 *
 * Pure: no clock, no global random state. The caller passes a uniform random number u in [0, 1)
 * and gets the next delay; it adds the delay to its own `now`.
 *
 * Jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015):
 * - EVS_BACKOFF_FULL: delay = u * min(max, initial * factor^attempt). Spreads a crowd of clients
 *   evenly over the window, so a restarted API server is not hit by all of them at once. The
 *   price is that a delay may be very short.
 * - EVS_BACKOFF_DECORRELATED: delay = min(max, initial + u * (prev * 3 - initial)), prev starting
 *   at initial. Grows like the exponential but each delay depends on the previous one, so delays
 *   rarely collapse to near zero; used where a short delay would just fail again.
 * - EVS_BACKOFF_NONE: delay = min(max, initial * factor^attempt), for tests and for a single
 *   client where herds are impossible.
 * Success resets the sequence (evs_backoff_reset). */
#ifndef EVSCALE_BACKOFF_H
#define EVSCALE_BACKOFF_H

#include <stdint.h>

typedef enum {
  EVS_BACKOFF_FULL = 0,
  EVS_BACKOFF_DECORRELATED = 1,
  EVS_BACKOFF_NONE = 2
} evs_backoff_jitter_t;

typedef struct {
  uint64_t initial_ms; /* default 500 */
  uint64_t max_ms;     /* default 60000 */
  double factor;       /* default 2 */
  evs_backoff_jitter_t jitter;
  uint32_t attempt; /* failures since the last reset */
  uint64_t prev_ms; /* the previous delay (decorrelated jitter) */
} evs_backoff_t;

/* initial_ms/max_ms 0 take the defaults (500 ms, 60 s); max below initial is raised to it. */
void evs_backoff_init(evs_backoff_t *b, uint64_t initial_ms, uint64_t max_ms,
                      evs_backoff_jitter_t jitter);
/* The delay before the next attempt; u is uniform in [0, 1) (clamped). Counts one failure. */
uint64_t evs_backoff_next(evs_backoff_t *b, double u);
/* The ceiling of the next delay without jitter (for logs and tests); does not count a failure. */
uint64_t evs_backoff_ceiling(const evs_backoff_t *b);
/* After a success: the next failure starts from initial again. */
void evs_backoff_reset(evs_backoff_t *b);

#endif
