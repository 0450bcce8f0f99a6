/* HPA behavior on real time: stabilization windows and Pods/Percent rate policies, as the HPA
 * controller computes them (kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go:
 * stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate,
 * calculateScaleUpLimitWithScalingRules, calculateScaleDownLimitWithBehaviors,
 * getReplicasChangePerPeriod, storeScaleEvent), but evaluated at any instant instead of on 15 s
 * ticks.
 *
 * History is kept as changes only, in bounded structures:
 *  - recommendations: a monotonic max-deque over the scale-down window and a monotonic min-deque
 *    over the scale-up window (the HPA's linear scan over every stored recommendation gives the
 *    same min/max). An equal or dominated entry is dropped on push.
 *  - scale events: one small ring per direction, trimmed to the longest policy period.
 * When a structure is full, two neighbouring entries are merged CONSERVATIVELY: the merged entry
 * keeps the value that slows scaling (larger for the scale-down max, smaller for the scale-up
 * min) and the later timestamp; merged scale events sum their changes at the later time. So a
 * full history can only delay a scale change, never allow one the HPA would refuse. The lists
 * take heap room only for what they hold (evs_behavior_state_t); when that room cannot grow (out
 * of memory), the new entry is merged the same way into the newest one of its list.
 *
 * Absent behavior: KEDA leaves the HPA's behavior nil (controllers/keda/hpa.go
 * newHPAForScaledObject) and the API server fills defaults only into a behavior that exists, so
 * the HPA runs its legacy path (horizontal.go normalizeDesiredReplicas): the highest
 * recommendation of the 300 s downscale window, then convertDesiredReplicasWithRules: at most
 * max(2 x current, 4), at least minReplicas, no rate limit on scale-down
 * (evs_behavior_normalize_legacy). evscale has no 15 s sync: "current" there is the count in
 * force 15 s earlier (EVS_BEHAVIOR_LEGACY_PERIOD_S), so the count may double once per 15 s, never
 * once per reading. A behavior that sets only one direction gets the other's defaults
 * (evs_behavior_effective), and paused-scale-in/-out make KEDA write a behavior.
 *
 * A recommendation stays in force until the next one replaces it: the HPA records it again at
 * every sync, evscale records the previous one again, at now, before each new one.
 *
 * Pure code: `now_ms` is an argument everywhere. */
#ifndef EVSCALE_BEHAVIOR_H
#define EVSCALE_BEHAVIOR_H

#include <stdint.h>

#include "evscale/scaledobject.h"

/* At most this many entries per list; a full list merges (see above). */
#define EVS_BEHAVIOR_DEQUE_CAP 12
#define EVS_BEHAVIOR_EVENTS_CAP 12

/* Packed: 12 bytes instead of 16 (memory is a goal: about 2 KB per object in all). Entries are
 * only reached through pointers to the whole struct, so the compiler emits the unaligned loads
 * itself. */
typedef struct __attribute__((packed)) {
  int64_t t_ms;
  int32_t v;
} evs_behavior_entry_t;

/* The four lists of the history, oldest entry first. */
enum {
  EVS_BEHAVIOR_DOWN_MAX = 0, /* recommendations, decreasing values: max over the down window */
  EVS_BEHAVIOR_UP_MIN,       /* recommendations, increasing values: min over the up window */
  EVS_BEHAVIOR_UP_EVENTS,    /* scale-up events: v = replicas added */
  EVS_BEHAVIOR_DOWN_EVENTS,  /* scale-down events: v = replicas removed */
  EVS_BEHAVIOR__LISTS
};

/* The history costs what it holds (issue 13: 50,000 objects in 100 MB): most objects hold
 * nothing (a target at 0, triggers in error, paused) and an active one a few entries, so the
 * lists live back to back in ONE heap block, list k taking cap[k] entries, grown on demand
 * (1, 2, 4, 8, 12) and shrunk when a list is down to a quarter of its room. An empty history
 * has no block. Growth only changes where the entries are, never which: the results are those of
 * fixed lists of EVS_BEHAVIOR_DEQUE_CAP entries. Copy with evs_behavior_copy, never with `=`. */
typedef struct {
  evs_behavior_entry_t *e; /* the block (owned), NULL when every cap is 0 */
  uint8_t len[EVS_BEHAVIOR__LISTS];
  uint8_t cap[EVS_BEHAVIOR__LISTS];
  /* The HPA seeds its history with (current, now) on its first reconcile
   * (recordInitialRecommendation), so a new autoscaler does not scale below the count it found for
   * one scale-down window. Set once that is done. */
  uint8_t seeded;
  /* The recommendation of the last decision, in force until the next one (see stabilize). */
  uint8_t has_last_rec;
  int32_t last_rec;
} evs_behavior_state_t;

/* The legacy path's "sync": the count the cap doubles is the one in force this long ago (the
 * HPA's default --horizontal-pod-autoscaler-sync-period). */
#define EVS_BEHAVIOR_LEGACY_PERIOD_S 15

/* Effective rules with the HPA's defaults filled in (pkg/apis/autoscaling/v2/defaults.go and the
 * controller's 300 s downscale window): what the engine actually applies. */
void evs_behavior_effective(const evs_behavior_t *b, evs_scaling_rules_t *up,
                            evs_scaling_rules_t *down);

/* An empty history (no block). */
void evs_behavior_init(evs_behavior_state_t *s);
/* Frees the block; s is then empty as after evs_behavior_init. */
void evs_behavior_free(evs_behavior_state_t *s);
/* Makes *dst an independent copy of *src (dst holds no block: initialised or freed). Returns 0,
 * or UV_ENOMEM leaving dst empty. */
int evs_behavior_copy(evs_behavior_state_t *dst, const evs_behavior_state_t *src);
/* List `list` (EVS_BEHAVIOR_DOWN_MAX, ...), s->len[list] entries oldest first; borrowed until
 * the next change of s. */
const evs_behavior_entry_t *evs_behavior_list(const evs_behavior_state_t *s, int list);

typedef enum {
  EVS_LIMIT_NONE = 0,   /* DesiredWithinRange */
  EVS_LIMIT_SCALE_UP,   /* ScaleUpLimit */
  EVS_LIMIT_TOO_MANY,   /* TooManyReplicas */
  EVS_LIMIT_SCALE_DOWN, /* ScaleDownLimit */
  EVS_LIMIT_TOO_FEW     /* TooFewReplicas */
} evs_limit_t;

typedef struct {
  int32_t stabilized;         /* after the windows */
  int32_t desired;            /* after the rate limits and [min, max] */
  uint8_t stabilized_changed; /* ScaleUpStabilized / ScaleDownStabilized when set */
  uint8_t limit;              /* evs_limit_t */
  /* Earliest time at which the same input could give another answer (a recommendation leaves a
   * window, an event leaves a policy period); INT64_MAX when never. */
  int64_t next_change_ms;
} evs_behavior_result_t;

/* normalizeDesiredReplicasWithBehaviors: stabilizes `desired` against the windows, records it as
 * a recommendation (mutates s), then applies the rate policies and [min_r, max_r]. */
void evs_behavior_normalize(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                            const evs_scaling_rules_t *down, int32_t current, int32_t desired,
                            int32_t min_r, int32_t max_r, int64_t now_ms,
                            evs_behavior_result_t *out);

/* normalizeDesiredReplicas (no behavior): stabilizes `desired` against the downscale window
 * (window_s, the controller's 300 s), records it, then convertDesiredReplicasWithRules with the
 * cap max(2 x R, 4), R = the count in force EVS_BEHAVIOR_LEGACY_PERIOD_S ago (from the events of
 * evs_behavior_record_legacy_write; current when none). Mutates s. */
void evs_behavior_normalize_legacy(evs_behavior_state_t *s, int32_t current, int32_t desired,
                                   int32_t min_r, int32_t max_r, int32_t window_s, int64_t now_ms,
                                   evs_behavior_result_t *out);
/* calculateScaleUpLimit: int32(max(2 x r, 4)). */
int32_t evs_behavior_legacy_up_limit(int32_t r);
/* On the legacy path every write of the target (whoever made it) changes the count in force:
 * call after each successful write. */
void evs_behavior_record_legacy_write(evs_behavior_state_t *s, int32_t from, int32_t to,
                                      int64_t now_ms);
/* The decision made no recommendation (the HPA did not run): the last one is no longer in force. */
void evs_behavior_no_recommendation(evs_behavior_state_t *s);

/* storeScaleEvent: records a write from `from` to `to` (call after a successful write). */
void evs_behavior_record_scale(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                               const evs_scaling_rules_t *down, int32_t from, int32_t to,
                               int64_t now_ms);

/* The pieces, exposed for the HPA-ported tests. */
/* The replicas added (up != 0) or removed by the events of the last period_s seconds. */
int32_t evs_behavior_change_in_period(const evs_behavior_state_t *s, int up, int32_t period_s,
                                      int64_t now_ms);
int32_t evs_behavior_scale_up_limit(const evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                                    int32_t current, int64_t now_ms);
int32_t evs_behavior_scale_down_limit(const evs_behavior_state_t *s,
                                      const evs_scaling_rules_t *down, int32_t current,
                                      int64_t now_ms);
/* Records a (value, time) recommendation without computing anything (tests, state restore). */
void evs_behavior_add_recommendation(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                                     const evs_scaling_rules_t *down, int32_t v, int64_t t_ms);
/* Adds a raw event (tests, state restore): up != 0 for a scale-up of `change` replicas. */
void evs_behavior_add_event(evs_behavior_state_t *s, int up, int32_t change, int64_t t_ms);

#endif
