/* The trigger type "prometheus": the scaler interface (scaler.h) over the Prometheus hub
 * (prometheus.h). Everything KEDA-specific lives in the module: evs_prom_config_parse validates
 * the trigger, the hub asks each distinct query once per cadence and turns the answer into KEDA's
 * value, activity and error through evs_reading_prometheus (ignoreNullValues, NaN/±Inf,
 * activationThreshold per subscriber). This file only maps one onto the other.
 *
 * The hub comes from the environment (env->prom_hub) rather than being created by the first
 * prometheus scaler: sharing a request needs one hub per process, the environment is borrowed
 * and const, and a hub created on demand would need an owner to close it after the last scaler.
 * The app creates it next to the HTTP client and closes it after every scaler is closed.
 *
 * Cadence: the subscription is made at start with the scaler's cadence (pollingInterval;
 * KEDA's default 30 s when none is set), so triggers with the same query and interval share one
 * group, and the group's timer is the trigger's cadence: the type has a `cadence` hook, so the
 * generic cadence timer does not poll it too (that gave a trigger two readings per period, issue
 * 16). A cadence change (evs_scaler_set_cadence) moves the subscription to the new cadence's
 * group, whose answer is the next reading. An explicit poll answers from the group's last response
 * while it is younger than the cadence, so that costs no request. */
#include "evscale/error.h"
#include "evscale/prometheus.h"

#include <stdlib.h>
#include <string.h>

#define PROM_DEFAULT_CADENCE_MS 30000 /* KEDA's pollingInterval default */

typedef struct {
  evs_scaler_t base; /* first: evs_scaler_t * and prom_t * are interchangeable */
  evs_prom_hub_t *hub;
  evs_prom_config_t cfg;
  evs_prom_sub_t *sub; /* NULL before start and once closing */
  uint64_t sub_cadence_ms;
  uv_timer_t closer; /* closed by prom_close: the scaler is freed from a later loop iteration */
} prom_t;

static uint64_t wanted_cadence(const prom_t *p) {
  uint64_t c = evs_scaler_cadence(&p->base);
  return c ? c : PROM_DEFAULT_CADENCE_MS;
}

static void on_prom_reading(evs_prom_sub_t *sub, const evs_prom_reading_t *pr, void *arg) {
  (void)sub;
  prom_t *p = arg;
  /* The hub already applied evs_reading_prometheus for this subscriber's ignoreNullValues and
   * activationThreshold; value and active are KEDA's. */
  evs_reading_t r = {.value = pr->value,
                     .active = pr->active,
                     .error = pr->error,
                     .time_ms = pr->time_ms,
                     .error_msg = pr->error ? pr->error_msg : NULL,
                     .empty_upstream = pr->empty_upstream ? 1 : 0};
  evs_scaler__emit_timed(&p->base, &r, pr->latency_us);
}

static int prom_subscribe(prom_t *p, uint64_t cadence_ms) {
  evs_prom_sub_t *sub;
  int rc = evs_prom_subscribe(p->hub, &p->cfg, cadence_ms, on_prom_reading, p, &sub);
  if (rc != 0)
    return rc;
  if (p->sub) /* the new group is in before the old one may close: no gap in sharing */
    evs_prom_unsubscribe(p->sub);
  p->sub = sub;
  p->sub_cadence_ms = cadence_ms;
  return 0;
}

static int prom_start(evs_scaler_t *s) {
  prom_t *p = (prom_t *)s;
  if (p->sub)
    return EVS_ESTATE;
  return prom_subscribe(p, wanted_cadence(p));
}

static int prom_poll(evs_scaler_t *s) {
  prom_t *p = (prom_t *)s;
  if (p->sub == NULL)
    return EVS_ESTATE;
  uint64_t want = wanted_cadence(p);
  /* A new subscription delivers its group's answer by itself (never inside this call). */
  if (want != p->sub_cadence_ms && prom_subscribe(p, want) == 0)
    return 0;
  return evs_prom_poll(p->sub);
}

static int prom_cadence(evs_scaler_t *s, uint64_t every_ms) {
  prom_t *p = (prom_t *)s;
  if (p->sub == NULL)
    return EVS_ESTATE;
  uint64_t want = every_ms ? every_ms : PROM_DEFAULT_CADENCE_MS;
  return want == p->sub_cadence_ms ? 0 : prom_subscribe(p, want);
}

static void prom_free(evs_scaler_t *s) {
  prom_t *p = (prom_t *)s;
  evs_prom_config_free(&p->cfg);
  free(p);
}

static void on_closer_closed(uv_handle_t *h) { evs_scaler__closed(h->data, prom_free); }

static void prom_close(evs_scaler_t *s) {
  prom_t *p = (prom_t *)s;
  if (p->sub) /* no hub callback runs for it after this */
    evs_prom_unsubscribe(p->sub);
  p->sub = NULL;
  uv_close((uv_handle_t *)&p->closer, on_closer_closed);
}

static int prom_create(uv_loop_t *loop, const evs_scaler_env_t *env, const evs_scaler_config_t *cfg,
                       evs_scaler_t **out, evs_diag_t *diag) {
  prom_t *p = calloc(1, sizeof *p);
  if (p == NULL)
    return UV_ENOMEM;
  evs_prom_input_t in = {.object = cfg->object,
                         .trigger = cfg->name,
                         .index = cfg->index,
                         .metadata = cfg->metadata,
                         .auth_params = cfg->auth_params,
                         .resolved_env = cfg->resolved_env};
  int rc = evs_prom_config_parse(&in, env->request_timeout_ms, &p->cfg, diag);
  if (env->prom_hub == NULL) {
    evs_diag_add(diag, cfg->object, 0, 0, "type", "no Prometheus hub in this process");
    if (rc == 0)
      evs_prom_config_free(&p->cfg);
    rc = UV_EINVAL;
  }
  if (rc != 0) {
    free(p);
    return rc;
  }
  p->hub = env->prom_hub;
  p->base.loop = loop;
  uv_timer_init(loop, &p->closer);
  p->closer.data = p;
  *out = &p->base;
  return 0;
}

const evs_scaler_type_t evs_scaler_prometheus_type = {"prometheus", prom_create, prom_start,
                                                      prom_poll,    prom_close,  prom_cadence};
