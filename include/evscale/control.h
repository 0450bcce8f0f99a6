/* The controller's wiring, started once Kubernetes is connected and discovered: the scalers'
 * shared services, the caches (ScaledObjects, Deployments, StatefulSets, HPAs: one informer per
 * watched namespace, or one for all), the registry, the scale writer and the status patcher, and
 * leader election. app.c owns it; it owns everything it creates.
 *
 *   cache events ──► registry ──► scale writer / status patcher
 *   lease ─────────► registry (leading: scalers run and writes go out)
 *
 * Without leader election (leader_election.enabled false) the process leads at once. With
 * --dry-run it never takes the lease (the elector only observes), yet decides: every decision
 * is logged and nothing is written (the Kubernetes client refuses writes as well).
 *
 * Readiness: "scaledobjects" is not ready until the ScaledObject cache has listed once.
 * Stop: the lease is released first (a follower takes over at once), then the registry stops
 * every scaler, then the caches, writers and services close, then cb. */
#ifndef EVSCALE_CONTROL_H
#define EVSCALE_CONTROL_H

#include <uv.h>

#include "evscale/config.h"
#include "evscale/discovery.h"
#include "evscale/health.h"
#include "evscale/kube.h"
#include "evscale/metrics.h"

typedef struct evs_control_s evs_control_t;

typedef struct {
  uv_loop_t *loop;
  const evs_config_t *cfg;               /* borrowed for the call: what is kept is copied */
  evs_kube_t *kube;                      /* borrowed, open; must outlive the controller */
  const evs_kube_discovery_t *discovery; /* borrowed; must outlive the controller */
  evs_metrics_t *metrics;                /* borrowed */
  evs_health_t *health;                  /* borrowed */
  int dry_run;
} evs_control_options_t;

/* 0 or a negative code (nothing is left running then). */
int evs_control_start(const evs_control_options_t *o, evs_control_t **out);
/* The configuration's scaled_objects, applied again after a reload (file objects that left
 * the file are removed). */
void evs_control_apply_file(evs_control_t *c, const evs_config_t *cfg);
/* Releases the lease, stops everything, calls cb(arg) once every handle is closed, frees. */
void evs_control_stop(evs_control_t *c, void (*cb)(void *arg), void *arg);

#endif
