/* The circuit breaker: pure decisions over a state the caller keeps. The rules and the reason
 * the default HPA behaviour never trips it are in include/evscale/breaker.h. */
#include "evscale/breaker.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "evscale/error.h"

/* Times in the persisted state are ms since the epoch; 2^53 keeps them exact in any JSON tool
 * that reads the annotation and far beyond any real clock. */
#define TIME_MAX ((int64_t)1 << 53)
/* A week: longer cooldowns are a configuration mistake, and the bound keeps doubling safe. */
#define COOLDOWN_LIMIT_MS ((int64_t)7 * 24 * 3600 * 1000)

void evs_breaker_config_default(evs_breaker_config_t *cfg) {
  *cfg = (evs_breaker_config_t){.enabled = 1,
                                .max_events_per_minute = 3,
                                .cooldown_ms = 60000,
                                .max_cooldown_ms = 15 * 60000,
                                .fallback_replicas = 10};
}

int evs_breaker_config_check(const evs_breaker_config_t *cfg) {
  if (cfg->max_events_per_minute < 1 || cfg->max_events_per_minute > EVS_BREAKER_MAX_EVENTS)
    return UV_EINVAL;
  if (cfg->cooldown_ms <= 0 || cfg->cooldown_ms > COOLDOWN_LIMIT_MS)
    return UV_EINVAL;
  if (cfg->max_cooldown_ms < cfg->cooldown_ms || cfg->max_cooldown_ms > COOLDOWN_LIMIT_MS)
    return UV_EINVAL;
  if (cfg->fallback_replicas < 0)
    return UV_EINVAL;
  return 0;
}

void evs_breaker_init(evs_breaker_t *st) { memset(st, 0, sizeof *st); }

int evs_breaker_fallback_min(const evs_breaker_config_t *cfg) {
  return cfg->fallback_replicas < 1 ? 1 : cfg->fallback_replicas;
}

const char *evs_breaker_verdict_name(evs_breaker_verdict_t v) {
  switch (v) {
  case EVS_BREAKER_WRITE:
    return "write";
  case EVS_BREAKER_TRIP:
    return "trip";
  case EVS_BREAKER_TRIP_SCALE_TO_ONE:
    return "trip-scale-to-one";
  case EVS_BREAKER_HOLD:
    return "hold";
  case EVS_BREAKER_CLOSE:
    return "close";
  }
  return "unknown";
}

/* ---- the event list: ages behind the newest event (see evs_breaker_t) ---- */

int64_t evs_breaker_event_ms(const evs_breaker_t *st, int i) {
  return st->newest_ms - st->age_ms[i];
}

/* Drops the `n` oldest events; the slots past the end stay zero so that equal states compare
 * equal byte for byte (the encoding tests and the fuzz target rely on it). */
static void drop_oldest(evs_breaker_t *st, int n) {
  memmove(st->age_ms, st->age_ms + n, (size_t)(st->n_events - n) * sizeof st->age_ms[0]);
  memset(st->age_ms + st->n_events - n, 0, (size_t)n * sizeof st->age_ms[0]);
  st->n_events = (uint8_t)(st->n_events - n);
  if (st->n_events == 0)
    st->newest_ms = 0;
}

static void forget_events(evs_breaker_t *st) { drop_oldest(st, st->n_events); }

/* Moves the reference of the ages to t (>= newest_ms), the events keeping their times. They stay
 * within 60 s of t: the caller pruned (prune keeps only events less than 60 s before now, and t
 * is now, or the newest event itself when the clock stepped back), so an age never passes
 * UINT16_MAX; an event that would is past every window and goes. */
static void rebase(evs_breaker_t *st, int64_t t) {
  int64_t shift = st->n_events ? t - st->newest_ms : 0;
  int drop = 0;
  while (drop < st->n_events && st->age_ms[drop] + shift > UINT16_MAX)
    drop++;
  drop_oldest(st, drop);
  for (int i = 0; i < st->n_events; i++)
    st->age_ms[i] = (uint16_t)(st->age_ms[i] + shift);
  st->newest_ms = t;
}

/* Forgets events whose latest write is 60 s old or more: they left the rolling window. An event
 * still going on (its writes less than 60 s apart) stays in the window however long ago it
 * began: its writes are happening inside the window. */
static void prune(evs_breaker_t *st, int64_t now_ms) {
  int keep = 0;
  while (keep < st->n_events && now_ms - evs_breaker_event_ms(st, keep) >= EVS_BREAKER_WINDOW_MS)
    keep++;
  if (keep > 0)
    drop_oldest(st, keep);
}

static int starts_event(const evs_breaker_t *st, int dir, int64_t now_ms) {
  return st->last_dir != dir || st->last_write_ms == 0 ||
         now_ms - st->last_write_ms >= EVS_BREAKER_WINDOW_MS;
}

/* Records a write of current → proposed at now: a new event, or the latest write of the
 * current one. */
static void record_write(evs_breaker_t *st, int current, int proposed, int64_t now_ms) {
  if (proposed == current)
    return;
  int dir = proposed > current ? 1 : -1;
  /* Keep the list ascending even if the clock stepped back, so it always encodes. */
  int64_t t = st->n_events > 0 && st->newest_ms > now_ms ? st->newest_ms : now_ms;
  int new_event = starts_event(st, dir, now_ms) || st->n_events == 0;
  /* Full only with max_events_per_minute above the bound: such a breaker never trips. */
  if (new_event && st->n_events == EVS_BREAKER_MAX_EVENTS)
    drop_oldest(st, 1);
  rebase(st, t);
  if (new_event || st->n_events == 0)
    st->n_events++;
  st->age_ms[st->n_events - 1] = 0; /* the new event, or the newest going on, at t */
  st->last_dir = (int8_t)dir;
  st->last_write_ms = now_ms;
}

static void close_breaker(evs_breaker_t *st, int64_t now_ms) {
  st->open = 0;
  st->closed_ms = now_ms;
  /* The fallback HPA wrote meanwhile: what we wrote before says nothing about the next minute. */
  forget_events(st);
  st->last_dir = 0;
  st->last_write_ms = 0;
}

/* A trip within one cooldown of the last close doubles that cooldown (capped); any other trip
 * starts from the configured one. */
static int64_t next_cooldown(const evs_breaker_t *st, const evs_breaker_config_t *cfg,
                             int64_t now_ms) {
  int64_t prev = st->cooldown_ms > 0 ? st->cooldown_ms : cfg->cooldown_ms;
  if (prev > cfg->max_cooldown_ms)
    prev = cfg->max_cooldown_ms;
  if (st->closed_ms > 0 && now_ms - st->closed_ms < prev) {
    int64_t doubled = prev * 2;
    if (doubled < cfg->cooldown_ms)
      doubled = cfg->cooldown_ms;
    return doubled > cfg->max_cooldown_ms ? cfg->max_cooldown_ms : doubled;
  }
  return cfg->cooldown_ms;
}

static int clamp_delay(int64_t ms) {
  if (ms < 0)
    return 0;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

static evs_breaker_verdict_t decide_open(evs_breaker_t *st, const evs_breaker_config_t *cfg,
                                         int current, int proposed, int64_t now_ms,
                                         int *next_eval_ms) {
  int64_t cooldown =
      st->cooldown_ms > cfg->max_cooldown_ms ? cfg->max_cooldown_ms : st->cooldown_ms;
  int64_t end = st->opened_ms + cooldown;
  if (now_ms < end) {
    /* A clock that went backwards must not hold the target for longer than one cooldown. */
    *next_eval_ms = clamp_delay(end - now_ms > cooldown ? cooldown : end - now_ms);
    return EVS_BREAKER_HOLD;
  }
  close_breaker(st, now_ms);
  record_write(st, current, proposed, now_ms);
  return EVS_BREAKER_CLOSE;
}

evs_breaker_verdict_t evs_breaker_decide(evs_breaker_t *st, const evs_breaker_config_t *cfg,
                                         int current_replicas, int proposed_replicas,
                                         int64_t now_ms, int *next_eval_ms) {
  int dummy;
  if (!next_eval_ms)
    next_eval_ms = &dummy;
  *next_eval_ms = -1;
  if (!cfg->enabled) {
    if (!st->open)
      return EVS_BREAKER_WRITE;
    close_breaker(st, now_ms);
    return EVS_BREAKER_CLOSE;
  }
  if (st->open)
    return decide_open(st, cfg, current_replicas, proposed_replicas, now_ms, next_eval_ms);
  prune(st, now_ms);
  if (proposed_replicas == current_replicas)
    return EVS_BREAKER_WRITE;
  int dir = proposed_replicas > current_replicas ? 1 : -1;
  if (!starts_event(st, dir, now_ms) || st->n_events + 1 <= cfg->max_events_per_minute) {
    record_write(st, current_replicas, proposed_replicas, now_ms);
    return EVS_BREAKER_WRITE;
  }
  int64_t cooldown = next_cooldown(st, cfg, now_ms);
  /* A checked config keeps it within a week (COOLDOWN_LIMIT_MS), which the state's 32 bits hold. */
  st->cooldown_ms = (int32_t)(cooldown > COOLDOWN_LIMIT_MS ? COOLDOWN_LIMIT_MS : cooldown);
  st->open = 1;
  st->opened_ms = now_ms;
  forget_events(st);
  st->last_dir = 0;
  st->last_write_ms = 0;
  *next_eval_ms = clamp_delay(st->cooldown_ms);
  return current_replicas < 1 ? EVS_BREAKER_TRIP_SCALE_TO_ONE : EVS_BREAKER_TRIP;
}

int evs_breaker_reset(evs_breaker_t *st, int64_t now_ms) {
  if (!st->open)
    return 0;
  close_breaker(st, now_ms);
  return 1;
}

/* ---- annotation encoding ----------------------------------------------------------------------
 */

int evs_breaker_encode(const evs_breaker_t *st, char *buf, size_t cap) {
  char tmp[EVS_BREAKER_ENCODED_MAX];
  int n = snprintf(tmp, sizeof tmp, "v1 %c d%c w%lld o%lld x%lld k%lld e", st->open ? 'o' : 'c',
                   st->last_dir > 0   ? '+'
                   : st->last_dir < 0 ? '-'
                                      : '0',
                   (long long)st->last_write_ms, (long long)st->opened_ms, (long long)st->closed_ms,
                   (long long)st->cooldown_ms);
  for (int i = 0; i < st->n_events && i < EVS_BREAKER_MAX_EVENTS && n > 0 && (size_t)n < sizeof tmp;
       i++) {
    long long v =
        i == 0 ? evs_breaker_event_ms(st, 0) : (long long)st->age_ms[i - 1] - st->age_ms[i];
    n += snprintf(tmp + n, sizeof tmp - (size_t)n, "%s%lld", i ? "," : "", v);
  }
  if (cap > 0)
    snprintf(buf, cap, "%s", tmp);
  return n;
}

typedef struct {
  const char *s, *end;
} cursor_t;

static int expect_str(cursor_t *c, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(c->end - c->s) < n || memcmp(c->s, lit, n) != 0)
    return -1;
  c->s += n;
  return 0;
}

/* A decimal number in [0, TIME_MAX]: digits only, no sign, no leading zero. */
static int parse_num(cursor_t *c, int64_t *out) {
  const char *start = c->s;
  int64_t v = 0;
  while (c->s < c->end && *c->s >= '0' && *c->s <= '9') {
    v = v * 10 + (*c->s - '0');
    c->s++;
    if (v > TIME_MAX)
      return -1;
  }
  if (c->s == start || (*start == '0' && c->s - start > 1))
    return -1;
  *out = v;
  return 0;
}

static int parse_field(cursor_t *c, const char *prefix, int64_t *out) {
  return expect_str(c, prefix) == 0 && parse_num(c, out) == 0 ? 0 : -1;
}

/* The first event's time, then each one's distance from the one before. */
static int parse_events(cursor_t *c, evs_breaker_t *st) {
  int64_t t[EVS_BREAKER_MAX_EVENTS];
  int n = 0;
  while (c->s < c->end) {
    int64_t v;
    if (n == EVS_BREAKER_MAX_EVENTS || (n > 0 && expect_str(c, ",") != 0) || parse_num(c, &v) != 0)
      return -1;
    if (n > 0) {
      v += t[n - 1];
      if (v > TIME_MAX)
        return -1;
    }
    t[n++] = v;
  }
  if (n > 0 && t[n - 1] - t[0] > UINT16_MAX)
    return -1; /* wider than any list the breaker keeps (and than its ages can say) */
  st->n_events = (uint8_t)n;
  st->newest_ms = n ? t[n - 1] : 0;
  for (int i = 0; i < n; i++)
    st->age_ms[i] = (uint16_t)(t[n - 1] - t[i]);
  return 0;
}

int evs_breaker_decode(const char *s, size_t len, evs_breaker_t *out) {
  cursor_t c = {s, s + len};
  evs_breaker_t st;
  evs_breaker_init(&st);
  if (!s || expect_str(&c, "v1 ") != 0 || c.s >= c.end || (*c.s != 'o' && *c.s != 'c'))
    return EVS_EPARSE;
  st.open = (uint8_t)(*c.s++ == 'o');
  if (expect_str(&c, " d") != 0 || c.s >= c.end || !strchr("+-0", *c.s) || *c.s == '\0')
    return EVS_EPARSE;
  st.last_dir = (int8_t)(*c.s == '+' ? 1 : *c.s == '-' ? -1 : 0);
  c.s++;
  int64_t cooldown;
  if (parse_field(&c, " w", &st.last_write_ms) != 0 || parse_field(&c, " o", &st.opened_ms) != 0 ||
      parse_field(&c, " x", &st.closed_ms) != 0 || parse_field(&c, " k", &cooldown) != 0 ||
      expect_str(&c, " e") != 0 || parse_events(&c, &st) != 0)
    return EVS_EPARSE;
  /* An open breaker must say since when and for how long, or it could never close. */
  if (st.open && (st.opened_ms == 0 || cooldown == 0))
    return EVS_EPARSE;
  if (cooldown > COOLDOWN_LIMIT_MS)
    return EVS_EPARSE;
  st.cooldown_ms = (int32_t)cooldown;
  *out = st;
  return 0;
}
