/* Exponential backoff with jitter. See evscale/backoff.h for the formulas and why. */
#include "evscale/backoff.h"

void evs_backoff_init(evs_backoff_t *b, uint64_t initial_ms, uint64_t max_ms,
                      evs_backoff_jitter_t jitter) {
  b->initial_ms = initial_ms > 0 ? initial_ms : 500;
  b->max_ms = max_ms > 0 ? max_ms : 60000;
  if (b->max_ms < b->initial_ms)
    b->max_ms = b->initial_ms;
  b->factor = 2.0;
  b->jitter = jitter;
  evs_backoff_reset(b);
}

void evs_backoff_reset(evs_backoff_t *b) {
  b->attempt = 0;
  b->prev_ms = b->initial_ms;
}

/* Computed in double and capped before converting, so a long outage never overflows. */
uint64_t evs_backoff_ceiling(const evs_backoff_t *b) {
  double d = (double)b->initial_ms;
  for (uint32_t i = 0; i < b->attempt && d < (double)b->max_ms; i++)
    d *= b->factor;
  return d >= (double)b->max_ms ? b->max_ms : (uint64_t)d;
}

static double clamp_unit(double u) {
  if (!(u >= 0.0)) /* also catches NaN */
    return 0.0;
  return u >= 1.0 ? 0.999999999 : u;
}

uint64_t evs_backoff_next(evs_backoff_t *b, double u) {
  u = clamp_unit(u);
  uint64_t cap = evs_backoff_ceiling(b), d;
  switch (b->jitter) {
  case EVS_BACKOFF_FULL:
    d = (uint64_t)(u * (double)cap);
    break;
  case EVS_BACKOFF_DECORRELATED: {
    double hi = (double)b->prev_ms * 3.0 - (double)b->initial_ms;
    double v = (double)b->initial_ms + u * hi;
    d = v >= (double)b->max_ms ? b->max_ms : (uint64_t)v;
    break;
  }
  default:
    d = cap;
    break;
  }
  if (b->attempt < UINT32_MAX)
    b->attempt++;
  b->prev_ms = d;
  return d;
}
