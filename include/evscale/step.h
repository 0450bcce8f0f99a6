/* One pure decision step: the decision engine, then the circuit breaker, for one ScaledObject.
 * The registry (the controller) and `evscale simulate` call this same function, so what simulate
 * prints is what the controller does.
 *
 *   spec + config + readings + replicas + engine state + breaker state + now
 *       -> the write (or none), the breaker's verdict (and the hand-over to / take-back from the
 *          fallback HPA), KEDA's conditions (in the engine's decision) and ONE absolute time to
 *          evaluate again without a new reading.
 *
 * The step mutates only the two states it is given. The caller performs the write; after a
 * successful one it calls evs_step_written, which records it in the engine's history (the HPA's
 * storeScaleEvent). A failed write is simply not recorded; the next step decides again.
 *
 * Time: now_ms is wall-clock ms since the epoch (the breaker's state is persisted). */
#ifndef EVSCALE_STEP_H
#define EVSCALE_STEP_H

#include <stdint.h>

#include "evscale/breaker.h"
#include "evscale/engine.h"
#include "evscale/scaledobject.h"

typedef struct {
  evs_decision_t decision; /* the engine's: reason, conditions, health, last active time */
  uint8_t verdict;         /* evs_breaker_verdict_t */
  uint8_t write;           /* 1: write `replicas` to scale.spec.replicas */
  /* The engine's proposal reached the target (WRITE or CLOSE with a change): evs_step_written
   * records it. The breaker's own "at least 1" write (TRIP_SCALE_TO_ONE) is not the engine's. */
  uint8_t engine_write;
  uint8_t hand_over; /* TRIP / TRIP_SCALE_TO_ONE: create the fallback HPA (fallback_min) */
  uint8_t take_back; /* CLOSE: delete the fallback HPA */
  int32_t current;   /* replicas seen */
  int32_t replicas;  /* what to write when write != 0 (else == current) */
  int32_t proposed;  /* the engine's proposal (the breaker may refuse it) */
  int32_t fallback_min;
  /* When to run the step again without a new reading (ms since the epoch): the earliest of the
   * engine's timers (cooldown, window, policy period), the end of the breaker's cooldown and, for
   * a write the policies limited, when that write leaves its policy period. INT64_MAX = none. */
  int64_t next_eval_ms;
} evs_step_t;

/* Runs the engine and the breaker. Returns 0, or the engine's UV_EINVAL for bad arguments (out
 * then says write = 0, next_eval_ms = INT64_MAX; the states are untouched). */
int evs_step(const evs_so_t *so, const evs_engine_config_t *ecfg, const evs_breaker_config_t *bcfg,
             evs_engine_state_t *est, evs_breaker_t *br, const evs_engine_input_t *in,
             evs_step_t *out);

/* The write of `step` succeeded at now_ms: records it where it counts (the engine's rate
 * policies and legacy cap). */
void evs_step_written(const evs_so_t *so, evs_engine_state_t *est, const evs_step_t *step,
                      int64_t now_ms);

#endif
