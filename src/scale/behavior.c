/* HPA behavior on real time (see include/evscale/behavior.h). Derived from kubernetes/kubernetes
 * pkg/controller/podautoscaler/horizontal.go (stabilizeRecommendationWithBehaviors,
 * convertDesiredReplicasWithBehaviorRate, calculateScaleUpLimitWithScalingRules,
 * calculateScaleDownLimitWithBehaviors, getReplicasChangePerPeriod, storeScaleEvent) and
 * pkg/apis/autoscaling/v2/defaults.go at a689afaaa0a02dbec78f0cdfe758ed057c8a2b98. */
#include "evscale/behavior.h"

#include <math.h>
#include <string.h>

/* ---- a small ring deque ---- */

static evs_behavior_entry_t *dq_at(evs_behavior_deque_t *d, unsigned i) {
  return &d->e[(d->head + i) % EVS_BEHAVIOR_DEQUE_CAP];
}

static const evs_behavior_entry_t *dq_cat(const evs_behavior_deque_t *d, unsigned i) {
  return &d->e[(d->head + i) % EVS_BEHAVIOR_DEQUE_CAP];
}

static void dq_pop_front(evs_behavior_deque_t *d) {
  d->head = (uint8_t)((d->head + 1) % EVS_BEHAVIOR_DEQUE_CAP);
  d->len--;
}

static void dq_push_back(evs_behavior_deque_t *d, int64_t t, int32_t v) {
  evs_behavior_entry_t *e = dq_at(d, d->len);
  e->t_ms = t;
  e->v = v;
  d->len++;
}

/* Removes entry i by shifting the later ones down one place. */
static void dq_remove(evs_behavior_deque_t *d, unsigned i) {
  for (unsigned j = i; j + 1 < d->len; j++)
    *dq_at(d, j) = *dq_at(d, j + 1);
  d->len--;
}

/* Drops entries that are no longer inside (now - window, now]: the HPA's
 * rec.timestamp.After(cutoff) keeps an entry only while t > now - window. */
static void dq_evict(evs_behavior_deque_t *d, int64_t window_ms, int64_t now_ms) {
  while (d->len && dq_at(d, 0)->t_ms <= now_ms - window_ms)
    dq_pop_front(d);
}

/* Merges the neighbouring pair whose values are closest, keeping `keep_first` side's value (the
 * one that slows scaling) and the later time, so the merged entry stays in its window longer. */
static void dq_merge_closest(evs_behavior_deque_t *d) {
  unsigned best = 0;
  int64_t gap = INT64_MAX;
  for (unsigned i = 0; i + 1 < d->len; i++) {
    int64_t g = (int64_t)dq_at(d, i)->v - dq_at(d, i + 1)->v;
    if (g < 0)
      g = -g;
    if (g < gap)
      gap = g, best = i;
  }
  dq_at(d, best)->t_ms = dq_at(d, best + 1)->t_ms;
  dq_remove(d, best + 1);
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

/* ---- recommendations ---- */

/* Windows in ms as dq_evict reads them: an entry stays while t > now - window. */
static void add_rec(evs_behavior_state_t *s, int64_t up_ms, int64_t down_ms, int32_t v,
                    int64_t t_ms) {
  evs_behavior_deque_t *mx = &s->down_max, *mn = &s->up_min;
  dq_evict(mx, down_ms, t_ms);
  dq_evict(mn, up_ms, t_ms);
  /* An older entry dominated by a newer one can never be the window's answer again. */
  while (mx->len && dq_at(mx, mx->len - 1)->v <= v)
    mx->len--;
  while (mn->len && dq_at(mn, mn->len - 1)->v >= v)
    mn->len--;
  if (mx->len == EVS_BEHAVIOR_DEQUE_CAP)
    dq_merge_closest(mx);
  if (mn->len == EVS_BEHAVIOR_DEQUE_CAP)
    dq_merge_closest(mn);
  dq_push_back(mx, t_ms, v);
  dq_push_back(mn, t_ms, v);
}

void evs_behavior_add_recommendation(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                                     const evs_scaling_rules_t *down, int32_t v, int64_t t_ms) {
  add_rec(s, (int64_t)up->window_s * 1000, (int64_t)down->window_s * 1000, v, t_ms);
}

/* ---- scale events ---- */

static int32_t longest_period(const evs_scaling_rules_t *r) {
  int32_t p = 0;
  for (unsigned i = 0; i < r->n_policies; i++)
    if (r->policies[i].period_s > p)
      p = r->policies[i].period_s;
  return p;
}

void evs_behavior_add_event(evs_behavior_state_t *s, int up, int32_t change, int64_t t_ms) {
  evs_behavior_deque_t *d = up ? &s->up_events : &s->down_events;
  if (d->len == EVS_BEHAVIOR_DEQUE_CAP) {
    /* Full: fold the oldest event into the next one (sum at the later time), which only makes
     * the policies count it longer. */
    dq_at(d, 1)->v += dq_at(d, 0)->v;
    dq_pop_front(d);
  }
  dq_push_back(d, t_ms, change);
}

void evs_behavior_record_scale(evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                               const evs_scaling_rules_t *down, int32_t from, int32_t to,
                               int64_t now_ms) {
  if (to == from)
    return;
  int is_up = to > from;
  evs_behavior_deque_t *d = is_up ? &s->up_events : &s->down_events;
  /* markScaleEventsOutdated: events older than the longest policy period are never read again. */
  dq_evict(d, (int64_t)longest_period(is_up ? up : down) * 1000, now_ms);
  evs_behavior_add_event(s, is_up, is_up ? to - from : from - to, now_ms);
}

int32_t evs_behavior_change_in_period(const evs_behavior_deque_t *events, int32_t period_s,
                                      int64_t now_ms) {
  int64_t cutoff = now_ms - (int64_t)period_s * 1000;
  int32_t sum = 0;
  for (unsigned i = 0; i < events->len; i++)
    if (dq_cat(events, i)->t_ms > cutoff)
      sum += dq_cat(events, i)->v;
  return sum;
}

static int32_t period_start(const evs_behavior_state_t *s, int32_t current, int32_t period_s,
                            int64_t now_ms) {
  return current - evs_behavior_change_in_period(&s->up_events, period_s, now_ms) +
         evs_behavior_change_in_period(&s->down_events, period_s, now_ms);
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
    for (unsigned i = 0; i < s->up_events.len; i++)
      earliest(best, dq_cat(&s->up_events, i)->t_ms + period, now_ms);
    for (unsigned i = 0; i < s->down_events.len; i++)
      earliest(best, dq_cat(&s->down_events, i)->t_ms + period, now_ms);
  }
}

/* The next instant the held answer can change: a recommendation leaving its window when the
 * windows held it, an event leaving a policy period when a rate limit held it. */
static int64_t next_expiry(const evs_behavior_state_t *s, const evs_scaling_rules_t *up,
                           const evs_scaling_rules_t *down, const evs_behavior_result_t *r,
                           int64_t now_ms) {
  int64_t best = INT64_MAX;
  if (r->stabilized_changed) {
    for (unsigned i = 0; i < s->down_max.len; i++)
      earliest(&best, dq_cat(&s->down_max, i)->t_ms + (int64_t)down->window_s * 1000, now_ms);
    for (unsigned i = 0; i < s->up_min.len; i++)
      earliest(&best, dq_cat(&s->up_min, i)->t_ms + (int64_t)up->window_s * 1000, now_ms);
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
  dq_evict(&s->up_min, (int64_t)up->window_s * 1000, now_ms);
  dq_evict(&s->down_max, (int64_t)down->window_s * 1000, now_ms);
  if (s->up_min.len && dq_at(&s->up_min, 0)->v < up_rec)
    up_rec = dq_at(&s->up_min, 0)->v;
  if (s->down_max.len && dq_at(&s->down_max, 0)->v > down_rec)
    down_rec = dq_at(&s->down_max, 0)->v;
  /* Scale up only to the lowest recent recommendation, down only to the highest. */
  if (rec < up_rec)
    rec = up_rec;
  if (rec > down_rec)
    rec = down_rec;
  evs_behavior_add_recommendation(s, up, down, desired, now_ms);
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
    evs_behavior_add_recommendation(s, up, down, current, now_ms);
    s->seeded = 1;
  }
  out->stabilized = stabilize(s, up, down, current, desired, now_ms);
  out->stabilized_changed = out->stabilized != desired;
  out->desired =
      rate_limit(s, up, down, current, out->stabilized, min_r, max_r, now_ms, &out->limit);
  out->next_change_ms = next_expiry(s, up, down, out, now_ms);
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
  dq_evict(&s->down_max, win, now_ms);
  int32_t rec = desired;
  if (s->down_max.len && dq_at(&s->down_max, 0)->v > rec)
    rec = dq_at(&s->down_max, 0)->v;
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
    for (unsigned i = 0; i < s->down_max.len; i++)
      earliest(&best, dq_cat(&s->down_max, i)->t_ms + win, now_ms);
  if (out->limit == EVS_LIMIT_SCALE_UP) {
    evs_scaling_rules_t period = {
        0, EVS_SELECT_MAX, 1, {{1, EVS_BEHAVIOR_LEGACY_PERIOD_S, EVS_POLICY_PODS}}, -1};
    events_expiry(s, &period, now_ms, &best);
  }
  out->next_change_ms = best;
}

void evs_behavior_record_legacy_write(evs_behavior_state_t *s, int32_t from, int32_t to,
                                      int64_t now_ms) {
  if (to == from)
    return;
  int is_up = to > from;
  evs_behavior_deque_t *d = is_up ? &s->up_events : &s->down_events;
  dq_evict(d, (int64_t)EVS_BEHAVIOR_LEGACY_PERIOD_S * 1000, now_ms);
  evs_behavior_add_event(s, is_up, is_up ? to - from : from - to, now_ms);
}
