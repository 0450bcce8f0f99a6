/* HPA behavior on real time (see include/evscale/behavior.h). Derived from kubernetes/kubernetes
 * pkg/controller/podautoscaler/horizontal.go (stabilizeRecommendationWithBehaviors,
 * convertDesiredReplicasWithBehaviorRate, calculateScaleUpLimitWithScalingRules,
 * calculateScaleDownLimitWithBehaviors, getReplicasChangePerPeriod, storeScaleEvent) and
 * pkg/apis/autoscaling/v2/defaults.go at a689afaaa0a02dbec78f0cdfe758ed057c8a2b98. */
#include "evscale/behavior.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"

/* ---- the lists: back to back in one block (see evs_behavior_state_t) ---- */

#define GROW_MAX EVS_BEHAVIOR_DEQUE_CAP
_Static_assert(EVS_BEHAVIOR_EVENTS_CAP == EVS_BEHAVIOR_DEQUE_CAP, "one growth rule for all lists");

static size_t offset_of(const evs_behavior_state_t *s, int k) {
  size_t off = 0;
  for (int i = 0; i < k; i++)
    off += s->cap[i];
  return off;
}

static evs_behavior_entry_t *dq_at(evs_behavior_state_t *s, int k, unsigned i) {
  return &s->e[offset_of(s, k) + i];
}

static const evs_behavior_entry_t *dq_cat(const evs_behavior_state_t *s, int k, unsigned i) {
  return &s->e[offset_of(s, k) + i];
}

/* Gives list k room for `cap` entries (at least its length), moving the lists after it. */
static int dq_resize(evs_behavior_state_t *s, int k, unsigned cap) {
  size_t off = offset_of(s, k), total = offset_of(s, EVS_BEHAVIOR__LISTS);
  size_t tail = total - off - s->cap[k], now_total = total - s->cap[k] + cap;
  if (cap > s->cap[k]) {
    evs_behavior_entry_t *e = realloc(s->e, now_total * sizeof *e);
    if (e == NULL)
      return UV_ENOMEM;
    s->e = e;
    memmove(e + off + cap, e + off + s->cap[k], tail * sizeof *e);
  } else if (now_total == 0) {
    free(s->e);
    s->e = NULL;
  } else {
    memmove(s->e + off + cap, s->e + off + s->cap[k], tail * sizeof *s->e);
    evs_behavior_entry_t *e = realloc(s->e, now_total * sizeof *e);
    if (e != NULL) /* a smaller block that cannot be had: keep the larger one */
      s->e = e;
  }
  s->cap[k] = (uint8_t)cap;
  return 0;
}

/* Room for one more entry in list k, below the fixed capacity: 0, or UV_ENOMEM. */
static int dq_reserve(evs_behavior_state_t *s, int k) {
  if (s->len[k] < s->cap[k])
    return 0;
  unsigned cap = s->cap[k] ? 2u * s->cap[k] : 1;
  return dq_resize(s, k, cap > GROW_MAX ? GROW_MAX : cap);
}

/* Hands back the room of lists down to a quarter of it (after the entry points, so that a list
 * emptied and refilled within one call keeps its room). */
static void settle(evs_behavior_state_t *s) {
  for (int k = 0; k < EVS_BEHAVIOR__LISTS; k++)
    if (s->cap[k] && 4u * s->len[k] <= s->cap[k])
      (void)dq_resize(s, k, 2u * s->len[k]);
}

static void dq_pop_front(evs_behavior_state_t *s, int k) {
  evs_behavior_entry_t *e = dq_at(s, k, 0);
  memmove(e, e + 1, (size_t)(s->len[k] - 1) * sizeof *e);
  s->len[k]--;
}

/* Appends; the caller made room (dq_reserve) or found the list full and merged. */
static void dq_push_back(evs_behavior_state_t *s, int k, int64_t t, int32_t v) {
  evs_behavior_entry_t *e = dq_at(s, k, s->len[k]);
  e->t_ms = t;
  e->v = v;
  s->len[k]++;
}

/* Removes entry i by shifting the later ones down one place. */
static void dq_remove(evs_behavior_state_t *s, int k, unsigned i) {
  for (unsigned j = i; j + 1 < s->len[k]; j++)
    *dq_at(s, k, j) = *dq_at(s, k, j + 1);
  s->len[k]--;
}

/* Drops entries that are no longer inside (now - window, now]: the HPA's
 * rec.timestamp.After(cutoff) keeps an entry only while t > now - window. */
static void dq_evict(evs_behavior_state_t *s, int k, int64_t window_ms, int64_t now_ms) {
  while (s->len[k] && dq_at(s, k, 0)->t_ms <= now_ms - window_ms)
    dq_pop_front(s, k);
}

/* Merges the neighbouring pair whose values are closest, keeping `keep_first` side's value (the
 * one that slows scaling) and the later time, so the merged entry stays in its window longer. */
static void dq_merge_closest(evs_behavior_state_t *s, int k) {
  unsigned best = 0;
  int64_t gap = INT64_MAX;
  for (unsigned i = 0; i + 1 < s->len[k]; i++) {
    int64_t g = (int64_t)dq_at(s, k, i)->v - dq_at(s, k, i + 1)->v;
    if (g < 0)
      g = -g;
    if (g < gap)
      gap = g, best = i;
  }
  dq_at(s, k, best)->t_ms = dq_at(s, k, best + 1)->t_ms;
  dq_remove(s, k, best + 1);
}

const evs_behavior_entry_t *evs_behavior_list(const evs_behavior_state_t *s, int list) {
  return s->len[list] ? dq_cat(s, list, 0) : NULL;
}

/* ---- defaults ---- */

void evs_behavior_effective(const evs_behavior_t *b, evs_scaling_rules_t *up,
                            evs_scaling_rules_t *down) {
  /* defaultHPAScaleUpRules: window 0, Max of {Pods 4 / 15 s, Percent 100 / 15 s}. */
  static const evs_scaling_rules_t up_default = {
      0, EVS_SELECT_MAX, 2, {{4, 15, EVS_POLICY_PODS}, {100, 15, EVS_POLICY_PERCENT}}, -1};
  /* defaultHPAScaleDownRules: window nil -> the controller's 300 s, Max of {Percent 100 / 15 s}. */
  static const evs_scaling_rules_t down_default = {
      300, EVS_SELECT_MAX, 1, {{100, 15, EVS_POLICY_PERCENT}}, -1};
  *up = up_default;
  *down = down_default;
  if (b == NULL || !b->present)
    return;
  /* copyHPAScalingRules: only the fields that were set replace the defaults. */
  if (b->up.window_s >= 0)
    up->window_s = b->up.window_s;
  up->select = b->up.select;
  if (b->up.tolerance >= 0)
    up->tolerance = b->up.tolerance;
  if (b->up.n_policies) {
    up->n_policies = b->up.n_policies;
    memcpy(up->policies, b->up.policies, sizeof up->policies);
  }
  if (b->down.window_s >= 0)
    down->window_s = b->down.window_s;
  down->select = b->down.select;
  if (b->down.tolerance >= 0)
    down->tolerance = b->down.tolerance;
  if (b->down.n_policies) {
    down->n_policies = b->down.n_policies;
    memcpy(down->policies, b->down.policies, sizeof down->policies);
  }
}

void evs_behavior_init(evs_behavior_state_t *s) { memset(s, 0, sizeof *s); }

void evs_behavior_free(evs_behavior_state_t *s) {
  free(s->e);
  evs_behavior_init(s);
}

int evs_behavior_copy(evs_behavior_state_t *dst, const evs_behavior_state_t *src) {
  size_t n = offset_of(src, EVS_BEHAVIOR__LISTS);
  *dst = *src;
  dst->e = NULL;
  if (n == 0)
    return 0;
  if ((dst->e = malloc(n * sizeof *dst->e)) == NULL) {
    evs_behavior_init(dst);
    return UV_ENOMEM;
  }
  memcpy(dst->e, src->e, n * sizeof *dst->e);
  return 0;
}

/* ---- recommendations ---- */

/* Appends a recommendation to a monotonic list: merged when the list is full (the HPA-sized
 * bound), or into the newest entry when the block cannot grow. The newest entry's value is the
 * one that slows scaling (the dominated ones are gone), so keeping it at the later time only
 * delays a change, as a full list does. Only an empty list that cannot get room loses it. */
static void push_rec(evs_behavior_state_t *s, int k, int32_t v, int64_t t_ms) {
  if (s->len[k] == EVS_BEHAVIOR_DEQUE_CAP) {
    dq_merge_closest(s, k);
  } else if (dq_reserve(s, k) != 0) {
    if (s->len[k])
      dq_at(s, k, s->len[k] - 1u)->t_ms = t_ms;
    return;
  }
  dq_push_back(s, k, t_ms, v);
}

/* Windows in ms as dq_evict reads them: an entry stays while t > now - window. */
static void add_rec(evs_behavior_state_t *s, int64_t up_ms, int64_t down_ms, int32_t v,
                    int64_t t_ms) {
  const int mx = EVS_BEHAVIOR_DOWN_MAX, mn = EVS_BEHAVIOR_UP_MIN;
  dq_evict(s, mx, down_ms, t_ms);
  dq_evict(s, mn, up_ms, t_ms);
  /* An older entry dominated by a newer one can never be the window's answer again. */
  while (s->len[mx] && dq_at(s, mx, s->len[mx] - 1u)->v <= v)
    s->len[mx]--;
  while (s->len[mn] && dq_at(s, mn, s->len[mn] - 1u)->v >= v)
    s->len[mn]--;
  push_rec(s, mx, v, t_ms);
  push_rec(s, mn, v, t_ms);
}

static void add_rec_rules(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                          const evs_scaling_rules_t *down, int32_t v, int64_t t_ms) {
  add_rec(s, (int64_t)up->window_s * 1000, (int64_t)down->window_s * 1000, v, t_ms);
}

void evs_behavior_add_recommendation(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                                     const evs_scaling_rules_t *down, int32_t v, int64_t t_ms) {
  add_rec_rules(s, up, down, v, t_ms);
  settle(s);
}

/* ---- scale events ---- */

static int32_t longest_period(const evs_scaling_rules_t *r) {
  int32_t p = 0;
  for (unsigned i = 0; i < r->n_policies; i++)
    if (r->policies[i].period_s > p)
      p = r->policies[i].period_s;
  return p;
}

static void push_event(evs_behavior_state_t *s, int up, int32_t change, int64_t t_ms) {
  int k = up ? EVS_BEHAVIOR_UP_EVENTS : EVS_BEHAVIOR_DOWN_EVENTS;
  if (s->len[k] == EVS_BEHAVIOR_EVENTS_CAP) {
    /* Full: fold the oldest event into the next one (sum at the later time), which only makes
     * the policies count it longer. */
    dq_at(s, k, 1)->v += dq_at(s, k, 0)->v;
    dq_pop_front(s, k);
  } else if (dq_reserve(s, k) != 0) {
    /* No room to be had: the same fold, of the newest event into this one. */
    if (s->len[k]) {
      evs_behavior_entry_t *last = dq_at(s, k, s->len[k] - 1u);
      last->v += change;
      if (t_ms > last->t_ms)
        last->t_ms = t_ms;
    }
    return;
  }
  dq_push_back(s, k, t_ms, change);
}

void evs_behavior_add_event(evs_behavior_state_t *s, int up, int32_t change, int64_t t_ms) {
  push_event(s, up, change, t_ms);
  settle(s);
}

void evs_behavior_record_scale(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                               const evs_scaling_rules_t *down, int32_t from, int32_t to,
                               int64_t now_ms) {
  if (to == from)
    return;
  int is_up = to > from;
  /* markScaleEventsOutdated: events older than the longest policy period are never read again. */
  dq_evict(s, is_up ? EVS_BEHAVIOR_UP_EVENTS : EVS_BEHAVIOR_DOWN_EVENTS,
           (int64_t)longest_period(is_up ? up : down) * 1000, now_ms);
  push_event(s, is_up, is_up ? to - from : from - to, now_ms);
  settle(s);
}

int32_t evs_behavior_change_in_period(const evs_behavior_state_t *s, int up, int32_t period_s,
                                      int64_t now_ms) {
  int k = up ? EVS_BEHAVIOR_UP_EVENTS : EVS_BEHAVIOR_DOWN_EVENTS;
  int64_t cutoff = now_ms - (int64_t)period_s * 1000;
  int32_t sum = 0;
  for (unsigned i = 0; i < s->len[k]; i++)
    if (dq_cat(s, k, i)->t_ms > cutoff)
      sum += dq_cat(s, k, i)->v;
  return sum;
}

static int32_t period_start(const evs_behavior_state_t *s, int32_t current, int32_t period_s,
                            int64_t now_ms) {
  return current - evs_behavior_change_in_period(s, 1, period_s, now_ms) +
         evs_behavior_change_in_period(s, 0, period_s, now_ms);
}

int32_t evs_behavior_scale_up_limit(const evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                                    int32_t current, int64_t now_ms) {
  if (up->select == EVS_SELECT_DISABLED)
    return current;
  int is_min = up->select == EVS_SELECT_MIN;
  int64_t result = is_min ? INT32_MAX : INT32_MIN;
  for (unsigned i = 0; i < up->n_policies; i++) {
    const evs_hpa_policy_t *p = &up->policies[i];
    int64_t start = period_start(s, current, p->period_s, now_ms), prop;
    if (p->type == EVS_POLICY_PODS)
      prop = start + p->value;
    else /* rounded up so that a small target can still grow (horizontal.go) */
      prop = (int64_t)ceil((double)start * (1 + (double)p->value / 100));
    result = is_min ? (prop < result ? prop : result) : (prop > result ? prop : result);
  }
  return result > INT32_MAX ? INT32_MAX : (int32_t)result;
}

int32_t evs_behavior_scale_down_limit(const evs_behavior_state_t *s,
                                      const evs_scaling_rules_t *down, int32_t current,
                                      int64_t now_ms) {
  if (down->select == EVS_SELECT_DISABLED)
    return current;
  int is_min = down->select == EVS_SELECT_MIN;
  int64_t result = is_min ? INT32_MIN : INT32_MAX;
  for (unsigned i = 0; i < down->n_policies; i++) {
    const evs_hpa_policy_t *p = &down->policies[i];
    int64_t start = period_start(s, current, p->period_s, now_ms), prop;
    if (p->type == EVS_POLICY_PODS)
      prop = start - p->value;
    else /* int32(float64(start) * (1 - value/100)): truncation */
      prop = (int64_t)((double)start * (1 - (double)p->value / 100));
    result = is_min ? (prop > result ? prop : result) : (prop < result ? prop : result);
  }
  return result < INT32_MIN ? INT32_MIN : (int32_t)result;
}

/* ---- the next instant anything in the history expires ---- */

static void earliest(int64_t *best, int64_t t, int64_t now_ms) {
  if (t > now_ms && t < *best)
    *best = t;
}

/* Event expiries for one direction's policies: both event lists shift its period start. */
static void events_expiry(const evs_behavior_state_t *s, const evs_scaling_rules_t *r,
                          int64_t now_ms, int64_t *best) {
  for (unsigned p = 0; p < r->n_policies; p++) {
    int64_t period = (int64_t)r->policies[p].period_s * 1000;
    for (int k = EVS_BEHAVIOR_UP_EVENTS; k <= EVS_BEHAVIOR_DOWN_EVENTS; k++)
      for (unsigned i = 0; i < s->len[k]; i++)
        earliest(best, dq_cat(s, k, i)->t_ms + period, now_ms);
  }
}

/* The next instant the held answer can change: a recommendation leaving its window when the
 * windows held it, an event leaving a policy period when a rate limit held it. */
static int64_t next_expiry(const evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                           const evs_scaling_rules_t *down, const evs_behavior_result_t *r,
                           int64_t now_ms) {
  int64_t best = INT64_MAX;
  if (r->stabilized_changed) {
    for (unsigned i = 0; i < s->len[EVS_BEHAVIOR_DOWN_MAX]; i++)
      earliest(&best, dq_cat(s, EVS_BEHAVIOR_DOWN_MAX, i)->t_ms + (int64_t)down->window_s * 1000,
               now_ms);
    for (unsigned i = 0; i < s->len[EVS_BEHAVIOR_UP_MIN]; i++)
      earliest(&best, dq_cat(s, EVS_BEHAVIOR_UP_MIN, i)->t_ms + (int64_t)up->window_s * 1000,
               now_ms);
  }
  if (r->limit == EVS_LIMIT_SCALE_UP)
    events_expiry(s, up, now_ms, &best);
  if (r->limit == EVS_LIMIT_SCALE_DOWN)
    events_expiry(s, down, now_ms, &best);
  return best;
}

/* ---- normalize ---- */

/* The HPA recomputes its recommendation every sync (15 s) from the metric it reads, so a
 * recommendation stays in force, and is recorded again and again, until a new one replaces it.
 * evscale decides only when a reading (or a timer) comes, so before recording a new
 * recommendation it records the previous one once more, at now: it was in force until now. The
 * windows then count from when a recommendation was last in force, not from when it was first
 * recorded (a reading held 85 s keeps its recommendation for those 85 s). Only a recommendation
 * from the decision just before counts: a decision where the HPA made none (target at 0, no
 * valid metric) breaks the chain (evs_behavior_no_recommendation). */
static void keep_in_force(evs_behavior_state_t *s, int64_t up_ms, int64_t down_ms, int64_t now_ms) {
  if (s->has_last_rec)
    add_rec(s, up_ms, down_ms, s->last_rec, now_ms);
}

void evs_behavior_no_recommendation(evs_behavior_state_t *s) { s->has_last_rec = 0; }

static int32_t stabilize(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                         const evs_scaling_rules_t *down, int32_t current, int32_t desired,
                         int64_t now_ms) {
  int32_t up_rec = desired, down_rec = desired, rec = current;
  keep_in_force(s, (int64_t)up->window_s * 1000, (int64_t)down->window_s * 1000, now_ms);
  dq_evict(s, EVS_BEHAVIOR_UP_MIN, (int64_t)up->window_s * 1000, now_ms);
  dq_evict(s, EVS_BEHAVIOR_DOWN_MAX, (int64_t)down->window_s * 1000, now_ms);
  if (s->len[EVS_BEHAVIOR_UP_MIN] && dq_at(s, EVS_BEHAVIOR_UP_MIN, 0)->v < up_rec)
    up_rec = dq_at(s, EVS_BEHAVIOR_UP_MIN, 0)->v;
  if (s->len[EVS_BEHAVIOR_DOWN_MAX] && dq_at(s, EVS_BEHAVIOR_DOWN_MAX, 0)->v > down_rec)
    down_rec = dq_at(s, EVS_BEHAVIOR_DOWN_MAX, 0)->v;
  /* Scale up only to the lowest recent recommendation, down only to the highest. */
  if (rec < up_rec)
    rec = up_rec;
  if (rec > down_rec)
    rec = down_rec;
  add_rec_rules(s, up, down, desired, now_ms);
  s->last_rec = desired;
  s->has_last_rec = 1;
  return rec;
}

static int32_t rate_limit(const evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                          const evs_scaling_rules_t *down, int32_t current, int32_t d,
                          int32_t min_r, int32_t max_r, int64_t now_ms, uint8_t *limit) {
  *limit = EVS_LIMIT_NONE;
  if (d > current) {
    int32_t lim = evs_behavior_scale_up_limit(s, up, current, now_ms);
    if (lim < current)
      lim = current;
    int32_t max_allowed = max_r;
    uint8_t why = EVS_LIMIT_TOO_MANY;
    if (max_allowed > lim)
      max_allowed = lim, why = EVS_LIMIT_SCALE_UP;
    if (d > max_allowed)
      return *limit = why, max_allowed;
  } else if (d < current) {
    int32_t lim = evs_behavior_scale_down_limit(s, down, current, now_ms);
    if (lim > current)
      lim = current;
    int32_t min_allowed = min_r;
    uint8_t why = EVS_LIMIT_TOO_FEW;
    if (min_allowed < lim)
      min_allowed = lim, why = EVS_LIMIT_SCALE_DOWN;
    if (d < min_allowed)
      return *limit = why, min_allowed;
  }
  return d;
}

void evs_behavior_normalize(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                            const evs_scaling_rules_t *down, int32_t current, int32_t desired,
                            int32_t min_r, int32_t max_r, int64_t now_ms,
                            evs_behavior_result_t *out) {
  memset(out, 0, sizeof *out);
  if (!s->seeded) {
    add_rec_rules(s, up, down, current, now_ms);
    s->seeded = 1;
  }
  out->stabilized = stabilize(s, up, down, current, desired, now_ms);
  out->stabilized_changed = out->stabilized != desired;
  out->desired =
      rate_limit(s, up, down, current, out->stabilized, min_r, max_r, now_ms, &out->limit);
  out->next_change_ms = next_expiry(s, up, down, out, now_ms);
  settle(s);
}

/* ---- no behavior: the HPA's legacy path ---- */

/* kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go at
 * 00067268967ec95a40035bd666374a1caf48dd1a: `var scaleUpLimitFactor = 2.0, scaleUpLimitMinimum =
 * 4.0` and calculateScaleUpLimit: int32(math.Max(2 * current, 4)). */
#define LEGACY_UP_FACTOR 2.0
#define LEGACY_UP_MINIMUM 4.0

int32_t evs_behavior_legacy_up_limit(int32_t r) {
  double v = LEGACY_UP_FACTOR * (double)r;
  if (v < LEGACY_UP_MINIMUM)
    v = LEGACY_UP_MINIMUM;
  return v >= (double)INT32_MAX ? INT32_MAX : (int32_t)v;
}

void evs_behavior_normalize_legacy(evs_behavior_state_t *s, int32_t current, int32_t desired,
                                   int32_t min_r, int32_t max_r, int32_t window_s, int64_t now_ms,
                                   evs_behavior_result_t *out) {
  /* stabilizeRecommendation keeps an entry unless rec.timestamp.Before(cutoff): the cutoff itself
   * is inside, one millisecond more than the behavior path's After(cutoff). */
  int64_t win = (int64_t)window_s * 1000 + 1;
  memset(out, 0, sizeof *out);
  if (!s->seeded) { /* recordInitialRecommendation runs on both paths */
    add_rec(s, 0, win, current, now_ms);
    s->seeded = 1;
  }
  keep_in_force(s, 0, win, now_ms);
  dq_evict(s, EVS_BEHAVIOR_DOWN_MAX, win, now_ms);
  int32_t rec = desired;
  if (s->len[EVS_BEHAVIOR_DOWN_MAX] && dq_at(s, EVS_BEHAVIOR_DOWN_MAX, 0)->v > rec)
    rec = dq_at(s, EVS_BEHAVIOR_DOWN_MAX, 0)->v;
  add_rec(s, 0, win, desired, now_ms);
  s->last_rec = desired;
  s->has_last_rec = 1;
  out->stabilized = rec;
  out->stabilized_changed = rec != desired;
  /* convertDesiredReplicasWithRules, with the count the HPA would have read at its sync: the count
   * in force 15 s ago (the engine records every write as an event on this path). */
  int32_t r = period_start(s, current, EVS_BEHAVIOR_LEGACY_PERIOD_S, now_ms);
  int32_t limit = evs_behavior_legacy_up_limit(r < 0 ? 0 : r);
  if (limit < current) /* never a scale-down because of the scale-up cap */
    limit = current;
  int32_t max_allowed = max_r;
  uint8_t why = EVS_LIMIT_TOO_MANY;
  if (max_r > limit)
    max_allowed = limit, why = EVS_LIMIT_SCALE_UP;
  out->desired = rec;
  if (rec < min_r) {
    out->desired = min_r;
    out->limit = EVS_LIMIT_TOO_FEW;
  } else if (rec > max_allowed) {
    out->desired = max_allowed;
    out->limit = why;
  }
  int64_t best = INT64_MAX;
  if (out->stabilized_changed)
    for (unsigned i = 0; i < s->len[EVS_BEHAVIOR_DOWN_MAX]; i++)
      earliest(&best, dq_cat(s, EVS_BEHAVIOR_DOWN_MAX, i)->t_ms + win, now_ms);
  if (out->limit == EVS_LIMIT_SCALE_UP) {
    evs_scaling_rules_t period = {
        0, EVS_SELECT_MAX, 1, {{1, EVS_BEHAVIOR_LEGACY_PERIOD_S, EVS_POLICY_PODS}}, -1};
    events_expiry(s, &period, now_ms, &best);
  }
  out->next_change_ms = best;
  settle(s);
}

void evs_behavior_record_legacy_write(evs_behavior_state_t *s, int32_t from, int32_t to,
                                      int64_t now_ms) {
  if (to == from)
    return;
  int is_up = to > from;
  dq_evict(s, is_up ? EVS_BEHAVIOR_UP_EVENTS : EVS_BEHAVIOR_DOWN_EVENTS,
           (int64_t)EVS_BEHAVIOR_LEGACY_PERIOD_S * 1000, now_ms);
  push_event(s, is_up, is_up ? to - from : from - to, now_ms);
  settle(s);
}
