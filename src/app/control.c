/* See include/evscale/control.h. */
#include "evscale/control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/events.h"
#include "evscale/informer.h"
#include "evscale/intern.h"
#include "evscale/keda_metrics.h"
#include "evscale/lease.h"
#include "evscale/log.h"
#include "evscale/registry.h"
#include "evscale/scaler_services.h"
#include "evscale/scalewriter.h"
#include "evscale/status.h"
#include "evscale/triggerauth.h"
#include "evscale/version.h"
#include "evscale/workload.h"

/* What each informer feeds. */
typedef enum {
  EVS__INF_SO = 0,
  EVS__INF_DEPLOY,
  EVS__INF_STS,
  EVS__INF_HPA,
  EVS__INF_TA,
  EVS__INF_CTA
} evs__inf_kind_t;

typedef struct evs__inf_s {
  struct evs_control_s *c;
  evs__inf_kind_t kind;
  evs_informer_t *inf;
} evs__inf_t;

typedef struct {
  char *ns, *name;
} evs__file_key_t;

struct evs_control_s {
  uv_loop_t *loop;
  evs_kube_t *kube;
  evs_health_t *health;
  int dry_run;
  evs_intern_t *intern;
  evs_scaler_services_t *services;
  evs_scalewriter_t *writer;
  evs_status_patcher_t *status;
  evs_registry_t *registry;
  evs_keda_metrics_t *keda_metrics;
  evs_events_t *events;
  evs_lease_t *lease;
  evs__inf_t *infs;
  size_t n_infs;
  size_t so_unsynced; /* ScaledObject informers that have not listed yet */
  size_t unsynced;    /* informers of any kind that have not listed yet */
  int want_lead;      /* the lease (or no election) says lead */
  evs__file_key_t *file_keys;
  size_t n_file_keys;
  unsigned pending; /* parts still closing */
  int stopping;
  void (*stop_cb)(void *);
  void *stop_arg;
};

/* --- cache events --- */

/* The workload a ScaledObject targets, when one of the caches holds its kind. */
typedef struct {
  evs__inf_kind_t kind; /* EVS__INF_DEPLOY or EVS__INF_STS; EVS__INF_SO: no cache holds it */
  char ns[256], name[256];
} evs__cached_target_t;

static void evs__target_obs(evs_control_t *c, evs__inf_kind_t kind, const evs_informer_obj_t *obj,
                            int deleted);

/* Taken before the ScaledObject is handed to the registry (which owns it from then on). The
 * registry keys targets by API group, so any apps/ version names the cached apps/v1 object. */
static void evs__cached_target_of(const evs_so_t *so, const char *ns, evs__cached_target_t *out) {
  out->kind = EVS__INF_SO;
  if (so == NULL || so->target_name == NULL || ns == NULL || so->target_api_version == NULL ||
      so->target_kind == NULL || strncmp(so->target_api_version, "apps/", 5) != 0)
    return;
  if (strcmp(so->target_kind, "Deployment") == 0)
    out->kind = EVS__INF_DEPLOY;
  else if (strcmp(so->target_kind, "StatefulSet") == 0)
    out->kind = EVS__INF_STS;
  snprintf(out->ns, sizeof out->ns, "%s", ns);
  snprintf(out->name, sizeof out->name, "%s", so->target_name);
}

/* A cache reports a workload when it changes, and the registry keeps only the ones some
 * ScaledObject names: a workload listed before the ScaledObject naming it (the two lists race
 * at start; a ScaledObject created for a steady Deployment) would otherwise be known only from
 * /scale reads, with ready = status.replicas, until it next changes. So the ScaledObject brings
 * the cached counts along; an unchanged observation is a no-op in the registry. */
static void evs__target_from_cache(evs_control_t *c, const evs__cached_target_t *t) {
  for (size_t i = 0; t->kind != EVS__INF_SO && i < c->n_infs; i++) {
    if (c->infs[i].kind != t->kind)
      continue;
    const evs_informer_obj_t *o = evs_informer_get(c->infs[i].inf, t->ns, t->name);
    if (o != NULL) {
      evs__target_obs(c, t->kind, o, 0);
      return;
    }
  }
}

static void evs__so_apply(evs_control_t *c, const evs_informer_obj_t *obj) {
  evs_registry_decoded_t *d = obj->data;
  if (d == NULL)
    return;
  evs__cached_target_t target;
  char uid[EVS_INFORMER_UID_BUF], rv[EVS_INFORMER_RV_BUF];
  evs__cached_target_of(d->so, obj->ns, &target);
  /* Every update reaches the registry, status-only ones included: a follower learns the
   * leader's status.lastActiveTime from them and counts the cooldown from it once it leads
   * (issue 17, failover). The leader writes that time on transitions and at most once a minute
   * otherwise (issue 14), so after a fail-over the cooldown may start from a time up to a minute
   * old: a target may go to zero up to a minute early, never late. */
  evs_registry_object_t o = {.origin = EVS_REGISTRY_API,
                             .breaker_triggered = d->breaker_triggered,
                             .breaker_state = d->breaker_state,
                             .deleting = d->deleting,
                             .finalizers = (const char *const *)d->finalizers,
                             .n_finalizers = d->n_finalizers,
                             .resource_version = evs_informer_obj_rv(obj, rv),
                             .ns = obj->ns,
                             .name = obj->name,
                             .uid = evs_informer_obj_uid(obj, uid),
                             .so = d->so,
                             .check_error = d->check_error,
                             .created_ms = d->created_ms,
                             .last_active_ms = d->last_active_ms,
                             .original_replicas = d->original_replicas,
                             .was_paused = d->was_paused,
                             .status = d->status};
  d->so = NULL; /* the registry owns it now */
  (void)evs_registry_apply(c->registry, &o);
  evs__target_from_cache(c, &target);
}

static void evs__target_obs(evs_control_t *c, evs__inf_kind_t kind, const evs_informer_obj_t *obj,
                            int deleted) {
  const evs_workload_t *w = obj->data;
  evs_registry_target_obs_t o = {.api_version = "apps/v1",
                                 .kind = kind == EVS__INF_DEPLOY ? "Deployment" : "StatefulSet",
                                 .ns = obj->ns,
                                 .name = obj->name,
                                 .spec_replicas = -1,
                                 .status_replicas = -1,
                                 .ready_replicas = -1};
  if (w != NULL && !deleted) {
    /* The API server defaults spec.replicas to 1 for both kinds. */
    o.spec_replicas = w->spec_replicas >= 0 ? w->spec_replicas : 1;
    o.status_replicas = w->status_replicas;
    o.ready_replicas = w->ready_replicas;
    o.manager = w->replicas_manager;
  }
  evs_registry_target_seen(c->registry, &o);
}

static void evs__hpa_obs(evs_control_t *c, const evs_informer_obj_t *obj, int deleted) {
  const evs_hpa_info_t *h = obj->data;
  if (h == NULL)
    return;
  char uid[EVS_INFORMER_UID_BUF];
  /* The uid and the controller owner: what adoption of KEDA's HPAs checks and deletes by. */
  evs_registry_hpa_obs_t o = {.ns = obj->ns,
                              .name = obj->name,
                              .uid = evs_informer_obj_uid(obj, uid),
                              .target_api_version = h->target_api_version,
                              .target_kind = h->target_kind,
                              .target_name = h->target_name,
                              .owner_api_version = h->owner_api_version,
                              .owner_kind = h->owner_kind,
                              .owner_name = h->owner_name,
                              .owner_uid = h->owner_uid,
                              .evscale_owned = h->evscale,
                              .deleted = deleted};
  evs_registry_hpa_seen(c->registry, &o);
}

/* Whether an HPA's update moved it to another target (then the old target is free of it). */
static int evs__hpa_moved(const evs_informer_obj_t *old, const evs_informer_obj_t *obj) {
  const evs_hpa_info_t *a = old->data, *b = obj->data;
  if (a == NULL || b == NULL)
    return a != NULL;
  return strcmp(a->target_api_version, b->target_api_version) != 0 ||
         strcmp(a->target_kind, b->target_kind) != 0 || strcmp(a->target_name, b->target_name) != 0;
}

/* One cache event: added or updated (deleted 0), or deleted (`obj` is the last version). */
static void evs__seen(evs__inf_t *i, const evs_informer_obj_t *obj, int deleted) {
  switch (i->kind) {
  case EVS__INF_SO:
    if (deleted)
      evs_registry_remove(i->c->registry, obj->ns, obj->name);
    else
      evs__so_apply(i->c, obj);
    break;
  case EVS__INF_DEPLOY:
  case EVS__INF_STS:
    evs__target_obs(i->c, i->kind, obj, deleted);
    break;
  case EVS__INF_HPA:
    evs__hpa_obs(i->c, obj, deleted);
    break;
  case EVS__INF_TA:
  case EVS__INF_CTA:
    /* On a delete the cache no longer holds it (`obj` is freed after this returns): the
     * triggers that name it restart and fail with "not found". */
    evs_registry_auth_changed(i->c->registry,
                              i->kind == EVS__INF_CTA ? EVS_TRIGGERAUTH_CLUSTER
                                                      : EVS_TRIGGERAUTH_NAMESPACED,
                              obj->ns, obj->name);
    break;
  }
}

static void evs__on_add(evs_informer_t *inf, const evs_informer_obj_t *obj, void *arg) {
  (void)inf;
  evs__seen(arg, obj, 0);
}

static void evs__on_update(evs_informer_t *inf, const evs_informer_obj_t *old,
                           const evs_informer_obj_t *obj, void *arg) {
  (void)inf;
  evs__inf_t *i = arg;
  /* Only when its target changed: reported gone and back on every status update, the HPA let
   * its target go for a moment (the ScaledObject drove it, and could write, in between). */
  if (i->kind == EVS__INF_HPA && evs__hpa_moved(old, obj))
    evs__hpa_obs(i->c, old, 1);
  evs__seen(i, obj, 0);
}

static void evs__on_delete(evs_informer_t *inf, const evs_informer_obj_t *old, void *arg) {
  (void)inf;
  evs__seen(arg, old, 1);
}

/* The registry leads once the lease says so AND every cache has listed: deciding before the
 * HPAs are known could write to a target another HPA drives; before the workloads are known,
 * from replicas read one by one. */
static void evs__update_leading(evs_control_t *c) {
  if (c->registry)
    evs_registry_set_leader(c->registry, !c->stopping && c->want_lead && c->unsynced == 0);
}

static void evs__on_synced(evs_informer_t *inf, void *arg) {
  (void)inf;
  evs__inf_t *i = arg;
  if (i->c->unsynced > 0 && --i->c->unsynced == 0)
    evs__update_leading(i->c);
  if (i->kind != EVS__INF_SO || i->c->so_unsynced == 0)
    return;
  if (--i->c->so_unsynced == 0) {
    evs_health_set_ready(i->c->health, "scaledobjects", 1);
    EVS_LOG_INFO("ScaledObjects listed; following changes");
  }
}

/* The workload decoders share the controller's intern table (field manager names). */
static int evs__workload_decode(const json_t *obj, void **out, void *arg) {
  return evs_workload_decode(obj, out, ((evs__inf_t *)arg)->c->intern);
}

static void evs__workload_free(void *data, void *arg) {
  evs_workload_free(data, ((evs__inf_t *)arg)->c->intern);
}

static int evs__start_informer(evs_control_t *c, evs__inf_kind_t kind, const char *ns) {
  static const struct {
    const char *prefix, *resource;
  } where[] = {{"/apis/keda.sh/v1alpha1", "scaledobjects"},
               {"/apis/apps/v1", "deployments"},
               {"/apis/apps/v1", "statefulsets"},
               /* autoscaling/v1 is served by every server from 1.20 to today, and carries the
                * scale target, owner and labels: all the registry needs of an HPA. */
               {"/apis/autoscaling/v1", "horizontalpodautoscalers"},
               {"/apis/keda.sh/v1alpha1", "triggerauthentications"},
               {"/apis/keda.sh/v1alpha1", "clustertriggerauthentications"}};
  char path[512];
  if (ns && ns[0] && kind != EVS__INF_CTA)
    snprintf(path, sizeof path, "%s/namespaces/%s/%s", where[kind].prefix, ns,
             where[kind].resource);
  else
    snprintf(path, sizeof path, "%s/%s", where[kind].prefix, where[kind].resource);
  evs__inf_t *i = &c->infs[c->n_infs];
  *i = (evs__inf_t){.c = c, .kind = kind};
  evs_informer_options_t o = {.kube = c->kube,
                              .path = path,
                              .intern = c->intern,
                              .on_add = evs__on_add,
                              .on_update = evs__on_update,
                              .on_delete = evs__on_delete,
                              .on_synced = evs__on_synced,
                              .arg = i};
  switch (kind) {
  case EVS__INF_SO:
    o.decode = evs_registry_decode;
    o.free_data = evs_registry_decoded_free;
    /* evs__so_apply hands everything to the registry, which keeps it: the cache keeps only
     * the metadata relists compare (issue 13: the decoded struct was ~150 B per object). */
    o.drop_data = 1;
    break;
  case EVS__INF_DEPLOY:
  case EVS__INF_STS:
    o.decode = evs__workload_decode;
    o.free_data = evs__workload_free;
    break;
  case EVS__INF_HPA:
    o.decode = evs_hpa_info_decode;
    o.free_data = evs_hpa_info_free_data;
    break;
  case EVS__INF_TA:
  case EVS__INF_CTA:
    o.decode = evs_triggerauth_decode;
    o.free_data = evs_triggerauth_free;
    break;
  }
  c->unsynced++;
  int rc = evs_informer_start(c->loop, &o, &i->inf);
  if (rc == 0)
    c->n_infs++;
  else
    c->unsynced--;
  return rc;
}

static const evs_triggerauth_t *evs__find_auth(void *arg, evs_triggerauth_kind_t kind,
                                               const char *ns, const char *name) {
  evs_control_t *c = arg;
  evs__inf_kind_t want = kind == EVS_TRIGGERAUTH_CLUSTER ? EVS__INF_CTA : EVS__INF_TA;
  for (size_t i = 0; i < c->n_infs; i++) {
    if (c->infs[i].kind != want)
      continue;
    const evs_informer_obj_t *o = evs_informer_get(c->infs[i].inf, ns ? ns : "", name);
    if (o && o->data)
      return o->data;
  }
  return NULL;
}

/* --- leadership --- */

static void evs__started_leading(evs_lease_t *l, void *arg) {
  (void)l;
  evs_control_t *c = arg;
  c->want_lead = 1;
  evs__update_leading(c);
}

static void evs__stopped_leading(evs_lease_t *l, void *arg) {
  (void)l;
  evs_control_t *c = arg;
  c->want_lead = 0;
  evs__update_leading(c);
}

/* --- file objects --- */

void evs_control_apply_file(evs_control_t *c, const evs_config_t *cfg) {
  if (c == NULL || c->stopping)
    return;
  /* kubernetes.adopt_keda_hpas is reloadable: the registry adopts (or stops) at once. */
  evs_registry_set_adopt(c->registry, cfg->kubernetes.adopt_keda_hpas,
                         cfg->kubernetes.adopt_window_ms);
  const char *file = evs_doc_file(cfg->doc);
  evs__file_key_t *keys = calloc(cfg->n_scaled_objects + 1, sizeof *keys);
  size_t n = 0;
  for (size_t i = 0; keys && i < cfg->n_scaled_objects; i++) {
    evs_so_t *so = NULL;
    evs_diag_t diag;
    evs_diag_init(&diag);
    /* Checked at load (a file with a broken ScaledObject is refused), so this succeeds. */
    if (evs_so_parse(cfg->scaled_objects[i], file, &so, &diag) == 0) {
      keys[n].ns = strdup(so->namespace_);
      keys[n].name = strdup(so->name);
      evs_registry_object_t o = {.origin = EVS_REGISTRY_FILE,
                                 .ns = so->namespace_,
                                 .name = so->name,
                                 .so = so,
                                 .original_replicas = -1};
      if (keys[n].ns && keys[n].name)
        n++;
      evs__cached_target_t target;
      evs__cached_target_of(so, so->namespace_, &target);
      (void)evs_registry_apply(c->registry, &o);
      evs__target_from_cache(c, &target);
    }
    evs_diag_free(&diag);
  }
  /* Objects that left the file go away. */
  for (size_t i = 0; i < c->n_file_keys; i++) {
    int kept = 0;
    for (size_t j = 0; j < n && !kept; j++)
      kept = strcmp(c->file_keys[i].ns, keys[j].ns) == 0 &&
             strcmp(c->file_keys[i].name, keys[j].name) == 0;
    if (!kept)
      evs_registry_remove(c->registry, c->file_keys[i].ns, c->file_keys[i].name);
    free(c->file_keys[i].ns);
    free(c->file_keys[i].name);
  }
  free(c->file_keys);
  c->file_keys = keys;
  c->n_file_keys = keys ? n : 0;
}

/* --- start / stop --- */

static void evs__part_closed(void *arg) {
  evs_control_t *c = arg;
  if (--c->pending > 0)
    return;
  if (c->writer)
    evs_scalewriter_close(c->writer);
  if (c->status)
    evs_status_patcher_close(c->status);
  for (size_t i = 0; i < c->n_file_keys; i++) {
    free(c->file_keys[i].ns);
    free(c->file_keys[i].name);
  }
  free(c->file_keys);
  free(c->infs);
  if (c->intern)
    evs_intern_free(c->intern);
  evs_keda_metrics_free(c->keda_metrics); /* its objects went with the registry */
  void (*cb)(void *) = c->stop_cb;
  void *a = c->stop_arg;
  free(c);
  if (cb)
    cb(a);
}

static void evs__services_closed(void *arg) { evs__part_closed(arg); }

static void evs__registry_closed(void *arg) {
  evs_control_t *c = arg;
  c->registry = NULL;
  if (c->events) {
    c->pending++;
    evs_events_close(c->events, evs__part_closed, c);
    c->events = NULL;
  }
  /* Scalers are gone: their shared services may close now. */
  if (c->services) {
    evs_scaler_services_close(c->services, evs__services_closed, c);
    c->services = NULL;
  } else {
    c->pending++;
    evs__part_closed(c);
  }
  evs__part_closed(c);
}

static void evs__lease_stopped(void *arg) {
  evs_control_t *c = arg;
  c->lease = NULL;
  /* Leadership is released; now the rest. */
  for (size_t i = 0; i < c->n_infs; i++) {
    c->pending++;
    evs_informer_close(c->infs[i].inf, evs__part_closed, c);
  }
  if (c->registry) {
    c->pending += 2; /* the registry, then the services */
    evs_registry_close(c->registry, evs__registry_closed, c);
  }
  evs__part_closed(c);
}

void evs_control_stop(evs_control_t *c, void (*cb)(void *arg), void *arg) {
  if (c == NULL || c->stopping)
    return;
  c->stopping = 1;
  c->stop_cb = cb;
  c->stop_arg = arg;
  c->pending = 1;
  if (c->lease) {
    evs_lease_stop(c->lease, evs__lease_stopped, c);
  } else {
    if (c->registry)
      evs_registry_set_leader(c->registry, 0);
    evs__lease_stopped(c);
  }
}

int evs_control_start(const evs_control_options_t *o, evs_control_t **out) {
  const evs_config_t *cfg = o->cfg;
  evs_control_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  c->loop = o->loop;
  c->kube = o->kube;
  c->health = o->health;
  c->dry_run = o->dry_run;
  size_t nns = cfg->kubernetes.namespaces.n ? cfg->kubernetes.namespaces.n : 1;
  c->infs = calloc(nns * 5 + 1, sizeof *c->infs);
  int rc = c->infs ? evs_intern_new(&c->intern) : UV_ENOMEM;
  if (rc == 0)
    rc = evs_scaler_services_new(o->loop, cfg, o->metrics, &c->services);
  if (rc == 0 && o->metrics) {
    evs_keda_build_t build = {EVS_VERSION, evs_git_revision};
    rc = evs_keda_metrics_new(o->metrics, (evs_keda_compat_t)cfg->metrics.keda_compat, &build,
                              &c->keda_metrics);
  }
  evs_scalewriter_options_t wo = {.dry_run = o->dry_run};
  evs_status_patcher_options_t so = {.dry_run = o->dry_run, .loop = o->loop};
  if (rc == 0)
    rc = evs_scalewriter_new(o->kube, &wo, &c->writer);
  if (rc == 0)
    rc = evs_status_patcher_new(o->kube, &so, &c->status);
  if (rc == 0) {
    /* reportingInstance: this replica (the host name; the Lease's identity adds a uuid). */
    char host[128] = "evscale";
    size_t hl = sizeof host;
    if (uv_os_gethostname(host, &hl) != 0)
      snprintf(host, sizeof host, "%s", "evscale");
    evs_events_options_t eo = {.group_version =
                                   o->discovery ? o->discovery->events_group_version : NULL,
                               .instance = host};
    rc = evs_events_new(o->loop, o->kube, &eo, &c->events);
  }
  if (rc == 0) {
    evs_registry_options_t ro = {
        .loop = o->loop,
        .env = evs_scaler_services_env(c->services),
        .active_read_interval_ms = cfg->defaults.active_read_interval_ms,
        .writer = o->dry_run ? NULL : c->writer,
        .status = c->status,
        .kube = o->kube,
        .discovery = o->discovery,
        .default_namespace = evs_kube_namespace(o->kube),
        .dry_run = o->dry_run,
        .find_auth = evs__find_auth,
        .find_auth_arg = c,
        .cluster_namespace = cfg->kubernetes.cluster_object_namespace,
        .keda_metrics = c->keda_metrics,
        .events = c->events,
        .hpa_version = o->discovery ? o->discovery->hpa_version : NULL,
        .fallback_resource =
            cfg->circuit_breaker.fallback_resource == EVS_FALLBACK_MEMORY ? "memory" : "cpu",
        .fallback_utilization = (int32_t)cfg->circuit_breaker.fallback_utilization,
        .adopt_keda_hpas = cfg->kubernetes.adopt_keda_hpas,
        .adopt_window_ms = (int64_t)cfg->kubernetes.adopt_window_ms,
        .metrics = o->metrics};
    evs_engine_config_default(&ro.engine);
    ro.engine.tolerance = cfg->engine.tolerance;
    ro.engine.max_replicas_cap = (int32_t)cfg->limits.max_replicas;
    ro.engine.default_polling_interval_s = (int32_t)(cfg->defaults.polling_interval_ms / 1000);
    ro.engine.default_cooldown_s = (int32_t)(cfg->defaults.cooldown_period_ms / 1000);
    evs_breaker_config_default(&ro.breaker);
    ro.breaker.enabled = cfg->circuit_breaker.enabled;
    ro.breaker.max_events_per_minute = (int)cfg->circuit_breaker.max_scale_events_per_minute;
    ro.breaker.cooldown_ms = (int64_t)cfg->circuit_breaker.cooldown_period_ms;
    ro.breaker.max_cooldown_ms = (int64_t)cfg->circuit_breaker.max_cooldown_period_ms;
    ro.breaker.fallback_replicas = (int)cfg->circuit_breaker.fallback_replicas;
    rc = evs_registry_new(&ro, &c->registry);
  }
  if (rc != 0) {
    /* Nothing runs yet: free what exists. */
    if (c->registry)
      evs_registry_close(c->registry, NULL, NULL);
    if (c->writer)
      evs_scalewriter_close(c->writer);
    if (c->status)
      evs_status_patcher_close(c->status);
    if (c->events)
      evs_events_close(c->events, NULL, NULL);
    if (c->services)
      evs_scaler_services_close(c->services, NULL, NULL);
    if (c->intern)
      evs_intern_free(c->intern);
    evs_keda_metrics_free(c->keda_metrics);
    free(c->infs);
    free(c);
    return rc;
  }
  evs_health_set_ready(c->health, "scaledobjects", 0);
  for (size_t i = 0; i < nns && rc == 0; i++) {
    const char *ns = cfg->kubernetes.namespaces.n ? cfg->kubernetes.namespaces.items[i] : NULL;
    c->so_unsynced++;
    if ((rc = evs__start_informer(c, EVS__INF_SO, ns)) == 0 &&
        (rc = evs__start_informer(c, EVS__INF_DEPLOY, ns)) == 0 &&
        (rc = evs__start_informer(c, EVS__INF_STS, ns)) == 0 &&
        (rc = evs__start_informer(c, EVS__INF_HPA, ns)) == 0)
      rc = evs__start_informer(c, EVS__INF_TA, ns);
  }
  if (rc == 0)
    rc = evs__start_informer(c, EVS__INF_CTA, NULL);
  evs_control_apply_file(c, cfg);
  if (rc == 0 && cfg->leader_election.enabled) {
    const char *lns = cfg->leader_election.lease_namespace[0] ? cfg->leader_election.lease_namespace
                                                              : evs_kube_namespace(o->kube);
    evs_lease_options_t lo = {.name = cfg->leader_election.lease_name,
                              .ns = lns,
                              .lease_duration_ms = cfg->leader_election.lease_duration_ms,
                              .renew_deadline_ms = cfg->leader_election.renew_deadline_ms,
                              .retry_period_ms = cfg->leader_election.retry_period_ms,
                              .observe_only = o->dry_run,
                              .on_started_leading = evs__started_leading,
                              .on_stopped_leading = evs__stopped_leading,
                              .arg = c,
                              .metrics = o->metrics};
    if ((rc = evs_lease_new(o->loop, o->kube, &lo, &c->lease)) == 0)
      rc = evs_lease_start(c->lease);
  }
  if (rc == 0 && (!cfg->leader_election.enabled || o->dry_run)) {
    c->want_lead = 1;
    evs__update_leading(c);
  }
  *out = c;
  if (rc != 0)
    EVS_LOG_ERROR("cannot start the controller", EVS_KV_ERR("err", rc));
  /* A partial start is stopped by the caller through evs_control_stop. */
  return rc;
}
