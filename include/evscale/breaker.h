/* The circuit breaker, per scale target: pure code over a small state that the caller keeps (in
 * memory and in an annotation of the ScaledObject, so a restart resumes it).
 *
 * Rules (issue "Decision engine", section "Circuit breaker"; the operators' figures from
 * shared/seeds: 3 scale events a minute, 60 s cooldown, 10 fallback replicas):
 * - A scale event is a run of writes in one direction. A write after a write in the opposite
 *   direction, or after no write for EVS_BREAKER_WINDOW_MS (60 s), starts a new event.
 * - A write that would start one more event than max_events_per_minute within the rolling 60 s
 *   trips the breaker instead of being written. An event is in the window while its latest
 *   write is less than 60 s old (a long steady ramp is one event, in the window as long as it
 *   goes on).
 * - Open: the caller hands the target to a fallback HPA with minReplicas = fallback_replicas
 *   (never below 1) and writes nothing itself (HOLD). Because an HPA whose target has 0 replicas
 *   does nothing, a trip at 0 replicas asks for one write of 1 first (TRIP_SCALE_TO_ONE).
 * - Closed again after the current cooldown (CLOSE), or at once when the operator removes the
 *   annotation EVS_BREAKER_TRIGGERED_ANNOTATION (the seeds' runbook: `kubectl annotate
 *   scaledobject … keda.sh/circuit-breaker-triggered-`): the caller then calls evs_breaker_reset.
 * - A trip less than one cooldown after the last close doubles the cooldown, up to
 *   max_cooldown_ms; otherwise the cooldown starts again at cooldown_ms.
 *
 * Why the breaker only trips on flapping with short stabilization windows: a trip needs four
 * events in 60 s, and events only start on a reversal of direction or after 60 s of silence.
 * Four events inside one minute therefore need at least three reversals (up, down, up, down)
 * within that minute. Under the HPA's default behavior a scale-down is the highest recommendation
 * of the last 300 s (scaleDown.stabilizationWindowSeconds), so after any scale-up the count
 * cannot go down for 300 s: a reversal up→down within a minute is impossible, and with the
 * defaults the breaker never trips. Steady ramps (the burst and gradual profiles: up in many
 * steps, then down in many steps) are one event per direction. Only a target whose scale-down
 * window is shorter than the period of its oscillation can flap, and that is what the breaker
 * is for.
 *
 * Time: now_ms is wall-clock milliseconds since the epoch, > 0 (the state is persisted and must
 * mean the same after a restart or on another replica; 0 stands for "never" in the state). */
#ifndef EVSCALE_BREAKER_H
#define EVSCALE_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#define EVS_BREAKER_WINDOW_MS 60000
/* max_events_per_minute is at most this (evs_breaker_config_check), and the state keeps at most
 * this many events. 28 is what fits the 96 bytes the state may take in every registry record
 * (issue 13: 50,000 objects in 100 MB); a trip then needs up to 29 events, at least 28 reversals
 * of direction, in one minute, far beyond any flapping worth stopping (the default is 3). With a
 * larger max_events_per_minute the breaker never trips (it was 32 until issue 13). */
#define EVS_BREAKER_MAX_EVENTS 28

/* The operators' annotation: present (with the encoded state as its value) while the breaker is
 * open; removing it resets the breaker. */
#define EVS_BREAKER_TRIGGERED_ANNOTATION "keda.sh/circuit-breaker-triggered"
/* The whole state, open or closed, so a restart resumes counting events and doubling. */
#define EVS_BREAKER_STATE_ANNOTATION "evscale.io/circuit-breaker-state"

typedef struct {
  int enabled;               /* circuit_breaker.enabled (true) */
  int max_events_per_minute; /* circuit_breaker.max_scale_events_per_minute (3), 1..32 */
  int64_t cooldown_ms;       /* circuit_breaker.cooldown_period (60 s), > 0 */
  int64_t max_cooldown_ms;   /* circuit_breaker.max_cooldown_period (15 m), >= cooldown_ms */
  int fallback_replicas;     /* circuit_breaker.fallback_replicas (10); the HPA gets max(this, 1) */
} evs_breaker_config_t;

/* 96 bytes, embedded in every registry record. The events (each one's latest write, oldest
 * first) are kept as 16-bit ages behind the newest: every event the breaker keeps lies within the
 * 60 s window of the newest (older ones are pruned before each write), and decode refuses an
 * event list spanning more than 65.535 s. Read an event's time with evs_breaker_event_ms. */
typedef struct {
  int64_t opened_ms;     /* when it last opened (0 = never) */
  int64_t closed_ms;     /* when it last closed (0 = never) */
  int64_t last_write_ms; /* time of the last write (0 = none) */
  int64_t newest_ms;     /* the newest event's latest write (0 when n_events is 0) */
  int32_t cooldown_ms;   /* the cooldown of the current (or last) open period; 0 = none yet;
                          * at most a week (evs_breaker_config_check, decode) */
  uint8_t open;          /* 1 while the fallback HPA holds the target */
  int8_t last_dir;       /* direction of the last write: +1 up, -1 down, 0 none yet */
  uint8_t n_events;      /* the events of the last 60 s */
  uint16_t age_ms[EVS_BREAKER_MAX_EVENTS]; /* event i is at newest_ms - age_ms[i] */
} evs_breaker_t;

/* The time of event i (0 <= i < st->n_events): its latest write, ms since the epoch. */
int64_t evs_breaker_event_ms(const evs_breaker_t *st, int i);

typedef enum {
  /* Closed: write the proposed count (recorded as a write when it differs from current). */
  EVS_BREAKER_WRITE = 0,
  /* Just opened: write nothing of the engine's; create the fallback HPA. */
  EVS_BREAKER_TRIP,
  /* Just opened at 0 replicas: write 1 (the "at least 1" write the invariant allows), then create
   * the fallback HPA, which cannot act on a target at 0. */
  EVS_BREAKER_TRIP_SCALE_TO_ONE,
  /* Open: write nothing. */
  EVS_BREAKER_HOLD,
  /* The cooldown is over: delete the fallback HPA and write the proposed count (which counts as
   * the first write of a new event). */
  EVS_BREAKER_CLOSE,
} evs_breaker_verdict_t;

/* Defaults: enabled, 3 events a minute, 60 s, 15 m, 10 replicas. */
void evs_breaker_config_default(evs_breaker_config_t *cfg);
/* 0, or UV_EINVAL when a field is out of its range (see the struct). */
int evs_breaker_config_check(const evs_breaker_config_t *cfg);

/* A closed breaker that has never seen a write. */
void evs_breaker_init(evs_breaker_t *st);

/* Decides what to do with the engine's proposal (current → proposed replicas) at now_ms and
 * updates st. *next_eval_ms (may be NULL) receives the delay in ms after which the caller must
 * call again even without a new reading (the end of the cooldown while open), or -1 if none.
 * A disabled breaker always says WRITE and leaves st untouched (but an open state closes: a
 * breaker switched off in the config must not hold a target forever → CLOSE). */
evs_breaker_verdict_t evs_breaker_decide(evs_breaker_t *st, const evs_breaker_config_t *cfg,
                                         int current_replicas, int proposed_replicas,
                                         int64_t now_ms, int *next_eval_ms);

/* The operator removed EVS_BREAKER_TRIGGERED_ANNOTATION: close now. Returns 1 if the breaker was
 * open (the caller deletes the fallback HPA), else 0. A later trip within one cooldown of this
 * still doubles the cooldown. */
int evs_breaker_reset(evs_breaker_t *st, int64_t now_ms);

/* The fallback HPA's minReplicas: max(fallback_replicas, 1). */
int evs_breaker_fallback_min(const evs_breaker_config_t *cfg);

/* Encodes st as a compact ASCII string, e.g. "v1 c d- w1700000012500 o0 x0 k0
 * e1700000000000,12500": c/o (closed/open), d direction (+, -, 0), w last write, o opened at, x
 * closed at, k cooldown (all ms), then the events' latest-write times as e<ms>,<delta>,… (deltas
 * from the previous). Returns the length (snprintf-style: buf is truncated when cap is too small;
 * EVS_BREAKER_ENCODED_MAX always suffices). */
int evs_breaker_encode(const evs_breaker_t *st, char *buf, size_t cap);
#define EVS_BREAKER_ENCODED_MAX 800

/* Strict inverse of evs_breaker_encode (the value comes from the API: outside input): every
 * field in order, decimal digits only, times within [0, 2^53], events ascending, at most
 * EVS_BREAKER_MAX_EVENTS and within 65.535 s of each other (what the breaker itself writes: at
 * most max_events_per_minute events, all within 60 s). Returns 0, or EVS_EPARSE leaving *st
 * untouched. */
int evs_breaker_decode(const char *s, size_t len, evs_breaker_t *st);

const char *evs_breaker_verdict_name(evs_breaker_verdict_t v); /* "write", "trip", … */

#endif
