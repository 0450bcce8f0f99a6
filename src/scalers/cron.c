/* The cron scaler (see include/evscale/cron.h for the behaviour and its sources).
 *
 * Three timers, all owned here and closed by cron_close: `boundary` fires at the next window
 * boundary, `check` watches for wall-clock jumps (unref'd, so it never keeps a loop alive on its
 * own), `deliver` answers evs_scaler_poll on the next loop iteration so that reading callbacks
 * never run inside poll. Zone loads (tzcache.c; the trigger's zone and any TZ= zone of the
 * schedules) may be outstanding too: `pending` counts timers and loads, and the scaler is freed
 * when the last of them has finished. */
#include "evscale/cron.h"
#include "evscale/error.h"
#include "evscale/param.h"
#include "evscale/reading.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CRON_CHECK_MS 2000
#define CRON_JUMP_MS 1000     /* a wall-clock step larger than this gets a fresh reading */
#define CRON_DRIFT_MS 20      /* a smaller divergence only re-arms the boundary timer */
#define CRON_IDLE_MS 86400000 /* re-check daily when no boundary lies within five years */

typedef struct cron_s cron_t;

/* One zone the scaler needs: the trigger's `timezone`, and the zone of a start or end schedule
 * that carries a TZ= prefix (robfig lets it win over the trigger's). */
enum { Z_TRIGGER, Z_START, Z_END, Z_COUNT };

typedef struct {
  cron_t *c;
  const char *field;  /* "metadata.timezone", "metadata.start", "metadata.end" */
  const char *name;   /* NULL: this slot is not used */
  const evs_tz_t *tz; /* a reference once loaded */
  evs_tz_load_t *load;
  int err;
} zslot_t;

struct cron_s {
  evs_scaler_t base; /* first: evs_scaler_t * and cron_t * are interchangeable */
  evs_cronexpr_t start, end;
  int64_t desired;
  char *tzname;
  zslot_t z[Z_COUNT];
  uv_timer_t boundary, check, deliver;
  evs_cron_clock_fn clock;
  void *clock_data;
  uint64_t check_ms;
  int64_t armed_off; /* wall minus monotonic (ms) when the boundary timer was armed */
  int64_t target_ms; /* the boundary the timer waits for */
  int started, closing, pending;
  char msg[320];
};

static int64_t cron_realtime(void *data) {
  (void)data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void evs_cron_window(const evs_cronexpr_t *start, const evs_tz_t *start_tz,
                     const evs_cronexpr_t *end, const evs_tz_t *end_tz, int64_t now_ms,
                     evs_cron_window_t *out) {
  int64_t ns, ne;
  if (evs_cronexpr_next(start, start_tz, now_ms, &ns) != 0)
    ns = EVS_CRON_ZERO_TIME;
  if (evs_cronexpr_next(end, end_tz, now_ms, &ne) != 0)
    ne = EVS_CRON_ZERO_TIME;
  /* KEDA's two branches, kept literally: with real (future) boundaries they reduce to "active
   * iff nextEnd <= nextStart", but robfig's zero time for an unsatisfiable schedule lies in the
   * past and then the literal comparisons decide. */
  if (ns < ne)
    out->active = now_ms > ns * 1000 && now_ms < ne * 1000;
  else
    out->active = now_ms > ns * 1000 || now_ms < ne * 1000;
  out->next_start = ns;
  out->next_end = ne;
}

/* ---- metadata ---- */

/* KEDA trims every parameter with strings.TrimSpace; an empty value counts as missing. */
static char *meta_get(const evs_scaler_config_t *cfg, const char *key) {
  const char *v = evs_kvs_get(&cfg->metadata, key);
  return v ? evs_param_trim_dup(v) : NULL;
}

static int need(const evs_scaler_config_t *cfg, evs_diag_t *diag, const char *key, char **out) {
  *out = meta_get(cfg, key);
  if (*out == NULL) {
    char path[64];
    snprintf(path, sizeof path, "metadata.%s", key);
    evs_diag_add(diag, cfg->object, 0, 0, path, "missing required parameter \"%s\"", key);
    return -1;
  }
  return 0;
}

static int parse_schedule(const evs_scaler_config_t *cfg, evs_diag_t *diag, const char *key,
                          const char *spec, evs_cronexpr_t *out) {
  char err[256];
  if (spec == NULL)
    return -1;
  if (evs_cronexpr_parse(spec, out, err, sizeof err) == 0)
    return 0;
  char path[64];
  snprintf(path, sizeof path, "metadata.%s", key);
  evs_diag_add(diag, cfg->object, 0, 0, path, "error parsing %s schedule '%s': %s", key, spec, err);
  return -1;
}

int evs_cron_check_zone(const char *name, char *err, size_t errcap) {
  if (evs_tz_name_check(name) != 0) {
    snprintf(err, errcap, "invalid time zone name '%s' (time: invalid location name)", name);
    return EVS_ETZ;
  }
  if (evs_tz_index_has(name) == 0) {
    snprintf(err, errcap, "unknown time zone '%s'", name);
    return EVS_ETZ;
  }
  return 0;
}

/* The zone of a TZ= / CRON_TZ= prefix must exist too. */
static int check_prefix_zone(const evs_scaler_config_t *cfg, evs_diag_t *diag, const char *key,
                             const evs_cronexpr_t *e) {
  char err[200], path[32];
  if (!e->has_zone || evs_cron_check_zone(e->zone, err, sizeof err) == 0)
    return 0;
  snprintf(path, sizeof path, "metadata.%s", key);
  evs_diag_add(diag, cfg->object, 0, 0, path, "%s", err);
  return -1;
}

static int cron_parse_meta(cron_t *c, const evs_scaler_config_t *cfg, evs_diag_t *diag) {
  char *tzn, *start, *end, *desired;
  int bad = need(cfg, diag, "timezone", &tzn);
  bad |= need(cfg, diag, "start", &start);
  bad |= need(cfg, diag, "end", &end);
  bad |= need(cfg, diag, "desiredReplicas", &desired);
  char err[200];
  if (tzn && evs_cron_check_zone(tzn, err, sizeof err) != 0) {
    evs_diag_add(diag, cfg->object, 0, 0, "metadata.timezone", "%s", err);
    bad = -1;
  }
  if (parse_schedule(cfg, diag, "start", start, &c->start) == 0)
    bad |= check_prefix_zone(cfg, diag, "start", &c->start);
  else
    bad = -1;
  if (parse_schedule(cfg, diag, "end", end, &c->end) == 0)
    bad |= check_prefix_zone(cfg, diag, "end", &c->end);
  else
    bad = -1;
  if (start && end && strcmp(start, end) == 0) {
    evs_diag_add(diag, cfg->object, 0, 0, "metadata.end",
                 "start and end can not have exactly same time input");
    bad = -1;
  }
  if (desired && evs_param_json_int64(desired, &c->desired) != 0) {
    evs_diag_add(diag, cfg->object, 0, 0, "metadata.desiredReplicas",
                 "'%s' is not an integer (int64)", desired);
    bad = -1;
  } else if (desired && c->desired == 0) {
    evs_diag_add(diag, cfg->object, 0, 0, "metadata.desiredReplicas",
                 "no desiredReplicas specified: must not be 0");
    bad = -1;
  }
  c->tzname = tzn;
  free(start);
  free(end);
  free(desired);
  return bad ? UV_EINVAL : 0;
}

/* ---- readings and timers ---- */

static uint64_t mono_ms(cron_t *c) {
  uv_update_time(c->base.loop);
  return uv_now(c->base.loop);
}

static void cron_emit(cron_t *c, const evs_reading_t *r) {
  if (!c->closing)
    evs_scaler__emit(&c->base, r);
}

static void cron_emit_error(cron_t *c, const zslot_t *z) {
  if (z->err == EVS_ETZ)
    snprintf(c->msg, sizeof c->msg, "%s: unknown time zone '%s'", z->field, z->name);
  else
    snprintf(c->msg, sizeof c->msg, "%s: cannot load time zone '%s': %s", z->field, z->name,
             evs_strerror(z->err));
  evs_reading_t r = {.error = z->err, .time_ms = c->clock(c->clock_data), .error_msg = c->msg};
  cron_emit(c, &r);
}

/* The zones' state: 1 all loaded, 0 some still loading, -1 one failed (*bad names it). */
static int cron_zones(cron_t *c, const zslot_t **bad) {
  int loading = 0;
  *bad = NULL;
  for (int i = 0; i < Z_COUNT; i++) {
    const zslot_t *z = &c->z[i];
    if (z->name == NULL)
      continue;
    if (z->load)
      loading = 1;
    else if (z->tz == NULL && *bad == NULL)
      *bad = z;
  }
  return loading ? 0 : *bad ? -1 : 1;
}

/* A schedule's zone: its own TZ= zone if it has one, else the trigger's. */
static const evs_tz_t *zone_of(const cron_t *c, int slot) {
  return c->z[slot].name ? c->z[slot].tz : c->z[Z_TRIGGER].tz;
}

static void on_boundary(uv_timer_t *t);

/* Arms the boundary timer for the earliest next start/end after now; returns that boundary in
 * ms, or 0 when neither schedule fires within robfig's five-year horizon. */
static int64_t cron_arm(cron_t *c, int64_t now, const evs_cron_window_t *w) {
  int64_t next = INT64_MAX;
  if (w->next_start != EVS_CRON_ZERO_TIME)
    next = w->next_start * 1000;
  if (w->next_end != EVS_CRON_ZERO_TIME && w->next_end * 1000 < next)
    next = w->next_end * 1000;
  int64_t boundary = next == INT64_MAX ? 0 : next;
  c->target_ms = boundary ? boundary : now + CRON_IDLE_MS;
  int64_t delay = c->target_ms > now ? c->target_ms - now : 0;
  c->armed_off = now - (int64_t)mono_ms(c);
  if (!c->closing)
    uv_timer_start(&c->boundary, on_boundary, (uint64_t)delay, 0);
  return boundary;
}

/* Computes the window at the wall clock's now, re-arms, then delivers (the callback may close
 * the scaler: nothing touches the timers after it). */
static void cron_evaluate(cron_t *c) {
  int64_t now = c->clock(c->clock_data);
  evs_cron_window_t w;
  evs_cron_window(&c->start, zone_of(c, Z_START), &c->end, zone_of(c, Z_END), now, &w);
  int64_t boundary = cron_arm(c, now, &w);
  evs_conv_t v; /* the engine's per-type conversion: KEDA's GetMetricsAndActivity */
  evs_reading_cron(w.active, c->desired, &v);
  evs_reading_t r = {.value = v.value,
                     .active = v.active,
                     .error = v.error,
                     .time_ms = now,
                     .next_change_ms = boundary,
                     .error_msg = v.error_msg};
  cron_emit(c, &r);
}

static void on_boundary(uv_timer_t *t) {
  cron_t *c = t->data;
  int64_t now = c->clock(c->clock_data);
  if (now < c->target_ms) { /* the monotonic clock ran ahead of the wall clock: wait on */
    uv_timer_start(&c->boundary, on_boundary, (uint64_t)(c->target_ms - now), 0);
    return;
  }
  cron_evaluate(c);
}

static void on_check(uv_timer_t *t) {
  cron_t *c = t->data;
  int64_t off = c->clock(c->clock_data) - (int64_t)mono_ms(c);
  int64_t d = off - c->armed_off;
  if (d > CRON_JUMP_MS || d < -CRON_JUMP_MS) {
    cron_evaluate(c);
  } else if (d > CRON_DRIFT_MS || d < -CRON_DRIFT_MS) {
    int64_t now = c->clock(c->clock_data);
    uv_timer_start(&c->boundary, on_boundary,
                   (uint64_t)(c->target_ms > now ? c->target_ms - now : 0), 0);
    c->armed_off = off;
  }
}

static void on_deliver(uv_timer_t *t) {
  cron_t *c = t->data;
  const zslot_t *bad;
  if (cron_zones(c, &bad) > 0)
    cron_evaluate(c);
  else if (bad)
    cron_emit_error(c, bad);
}

static void cron_free(evs_scaler_t *s) {
  cron_t *c = (cron_t *)s;
  for (int i = 0; i < Z_COUNT; i++)
    evs_tz_unref(c->z[i].tz);
  free(c->tzname);
  free(c);
}

static void cron_release(cron_t *c) {
  if (--c->pending > 0)
    return;
  evs_scaler__closed(&c->base, cron_free);
}

/* Once every zone is in, the first reading goes out and the jump check starts; a failed zone
 * gives an error reading instead. */
static void on_tz_loaded(evs_tz_load_t *req, int status, const evs_tz_t *tz, void *data) {
  (void)req;
  zslot_t *z = data;
  cron_t *c = z->c;
  z->load = NULL;
  if (c->closing) {
    cron_release(c);
    return;
  }
  c->pending--;               /* the load is over; the timers still hold the scaler */
  if (status == UV_ECANCELED) /* a failed start withdrew it */
    return;
  z->err = status;
  if (status == 0)
    z->tz = evs_tz_ref(tz);
  const zslot_t *bad;
  int st = cron_zones(c, &bad);
  if (st < 0) /* all loads are over and one failed */
    cron_emit_error(c, bad);
  if (st <= 0)
    return;
  uv_timer_start(&c->check, on_check, c->check_ms, c->check_ms);
  uv_unref((uv_handle_t *)&c->check);
  cron_evaluate(c);
}

/* Starts loading every zone that is neither loaded nor loading. */
static int cron_load(cron_t *c) {
  for (int i = 0; i < Z_COUNT; i++) {
    zslot_t *z = &c->z[i];
    if (z->name == NULL || z->tz || z->load)
      continue;
    int rc = evs_tz_load(c->base.loop, z->name, on_tz_loaded, z, &z->load);
    if (rc != 0)
      return rc;
    c->pending++;
  }
  return 0;
}

/* ---- the scaler interface ---- */

static int cron_create(uv_loop_t *loop, const evs_scaler_env_t *env, const evs_scaler_config_t *cfg,
                       evs_scaler_t **out, evs_diag_t *diag) {
  (void)env; /* the clock needs no shared service */
  cron_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  int rc = cron_parse_meta(c, cfg, diag);
  if (rc != 0) {
    free(c->tzname);
    free(c);
    return rc;
  }
  uv_timer_t *timers[] = {&c->boundary, &c->check, &c->deliver};
  for (int i = 0; i < 3; i++) {
    uv_timer_init(loop, timers[i]);
    timers[i]->data = c;
  }
  static const char *const fields[] = {"metadata.timezone", "metadata.start", "metadata.end"};
  for (int i = 0; i < Z_COUNT; i++)
    c->z[i] = (zslot_t){.c = c, .field = fields[i]};
  c->z[Z_TRIGGER].name = c->tzname;
  c->z[Z_START].name = c->start.has_zone ? c->start.zone : NULL;
  c->z[Z_END].name = c->end.has_zone ? c->end.zone : NULL;
  c->base.loop = loop;
  c->clock = cron_realtime;
  c->check_ms = CRON_CHECK_MS;
  c->pending = 3;
  *out = &c->base;
  return 0;
}

static int cron_start(evs_scaler_t *s) {
  cron_t *c = (cron_t *)s;
  if (c->started || c->closing)
    return EVS_ESTATE;
  int rc = cron_load(c);
  if (rc == 0) {
    c->started = 1;
    return 0;
  }
  for (int i = 0; i < Z_COUNT; i++) /* no reading may follow a failed start */
    if (c->z[i].load)
      evs_tz_load_cancel(c->z[i].load);
  return rc;
}

static int cron_poll(evs_scaler_t *s) {
  cron_t *c = (cron_t *)s;
  if (!c->started || c->closing)
    return EVS_ESTATE;
  const zslot_t *bad;
  int st = cron_zones(c, &bad);
  if (st == 0) /* the loads' completion delivers a reading anyway */
    return 0;
  if (st < 0) /* a zone failed to load: try again, the answer is the reading */
    return cron_load(c);
  return uv_timer_start(&c->deliver, on_deliver, 0, 0);
}

static void on_timer_close(uv_handle_t *h) { cron_release(h->data); }

static void cron_close(evs_scaler_t *s) {
  cron_t *c = (cron_t *)s;
  c->closing = 1;
  for (int i = 0; i < Z_COUNT; i++)
    if (c->z[i].load)
      evs_tz_load_cancel(c->z[i].load);
  uv_close((uv_handle_t *)&c->boundary, on_timer_close);
  uv_close((uv_handle_t *)&c->check, on_timer_close);
  uv_close((uv_handle_t *)&c->deliver, on_timer_close);
}

int evs_cron_set_clock(evs_scaler_t *s, evs_cron_clock_fn fn, void *data, uint64_t check_ms) {
  if (s == NULL || s->type != &evs_scaler_cron_type)
    return UV_EINVAL;
  if (s->state == EVS_SCALER_CLOSING)
    return EVS_ESTATE;
  cron_t *c = (cron_t *)s;
  c->clock = fn ? fn : cron_realtime;
  c->clock_data = data;
  c->check_ms = check_ms ? check_ms : CRON_CHECK_MS;
  return 0;
}

const evs_scaler_type_t evs_scaler_cron_type = {"cron",    cron_create, cron_start,
                                                cron_poll, cron_close,  NULL};
