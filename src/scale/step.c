/* One pure decision step: engine, then breaker (include/evscale/step.h). */
#include "evscale/step.h"

#include <string.h>

#include "evscale/error.h"

static void earlier(int64_t *t, int64_t cand) {
  if (cand < *t)
    *t = cand;
}

int evs_step(const evs_so_t *so, const evs_engine_config_t *ecfg, const evs_breaker_config_t *bcfg,
             evs_engine_state_t *est, evs_breaker_t *br, const evs_engine_input_t *in,
             evs_step_t *out) {
  memset(out, 0, sizeof *out);
  out->next_eval_ms = INT64_MAX;
  if (bcfg == NULL || br == NULL || in == NULL)
    return UV_EINVAL;
  out->current = out->replicas = out->proposed = in->current_replicas;
  int rc = evs_engine_decide(so, ecfg, est, in, &out->decision);
  if (rc != 0)
    return rc;
  int32_t cur = in->current_replicas;
  int32_t proposed = out->decision.write ? out->decision.desired : cur;
  int bnext = -1;
  evs_breaker_verdict_t v = evs_breaker_decide(br, bcfg, cur, proposed, in->now_ms, &bnext);
  out->verdict = (uint8_t)v;
  out->proposed = proposed;
  out->fallback_min = evs_breaker_fallback_min(bcfg);
  switch (v) {
  case EVS_BREAKER_WRITE:
  case EVS_BREAKER_CLOSE:
    out->take_back = v == EVS_BREAKER_CLOSE;
    out->write = out->engine_write = proposed != cur;
    out->replicas = proposed;
    break;
  case EVS_BREAKER_TRIP_SCALE_TO_ONE:
    /* An HPA cannot act on a target at 0: the one write the invariant allows, then hand over. */
    out->write = 1;
    out->replicas = 1;
    out->hand_over = 1;
    break;
  case EVS_BREAKER_TRIP:
    out->hand_over = 1;
    break;
  case EVS_BREAKER_HOLD:
    break;
  }
  /* One absolute time: the engine's own, the breaker's (a delay), and the one the write adds. */
  earlier(&out->next_eval_ms, out->decision.next_eval_ms);
  if (bnext >= 0)
    earlier(&out->next_eval_ms, in->now_ms + bnext);
  if (out->engine_write)
    earlier(&out->next_eval_ms,
            evs_engine_next_after_write(so, est, cur, out->replicas, in->now_ms));
  return 0;
}

void evs_step_written(const evs_so_t *so, evs_engine_state_t *est, const evs_step_t *step,
                      int64_t now_ms) {
  if (step->engine_write)
    (void)evs_engine_record_scale(so, est, step->current, step->replicas, now_ms);
}
