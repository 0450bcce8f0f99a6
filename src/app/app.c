/* The process: config + reload, HTTP endpoints, signals, graceful shutdown. */
#include "evscale/app.h"
#include "evscale/backoff.h"
#include "evscale/cli.h"
#include "evscale/control.h"
#include "evscale/discovery.h"
#include "evscale/error.h"
#include "evscale/health.h"
#include "evscale/http_server.h"
#include "evscale/kube.h"
#include "evscale/log.h"
#include "evscale/metrics.h"
#include "evscale/reload.h"
#include "evscale/scaledobject.h"
#include "evscale/version.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const int evs__signums[3] = {SIGTERM, SIGINT, SIGHUP};

typedef struct {
  uv_loop_t *loop;
  const evs_app_options_t *opts;
  evs_config_t *cfg; /* in force; owned */
  evs_metrics_t *metrics;
  evs_health_t *health;
  evs_http_server_t *server;
  evs_reload_t *reload;
  uv_signal_t sigs[3]; /* SIGTERM, SIGINT, SIGHUP: open until the end of shutdown */
  int n_sigs;          /* how many of sigs are initialised */
  uv_timer_t grace;
  int grace_open;
  int stopping;
  int exit_code;
  /* Kubernetes: connected and discovered at start; retried with backoff until it is. */
  evs_kube_t *kube;
  int kube_open; /* evs_kube_open succeeded */
  evs_kube_discovery_run_t *disc;
  evs_kube_discovery_t *discovery;
  uv_timer_t kube_retry;
  int kube_retry_open;
  evs_backoff_t kube_backoff;
  /* The controller (caches, registry, writers, lease), once discovery has succeeded. */
  evs_control_t *control;
} evs__app_t;

static double evs__now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void evs__log_diag(evs_log_level_t level, const char *msg, const evs_diag_t *d) {
  char buf[1024];
  for (size_t i = 0; i < d->n; i++) {
    evs_diag_format(d, i, buf, sizeof buf);
    EVS_LOG(level, msg, EVS_KV_STR("error", buf));
  }
  if (d->dropped)
    EVS_LOG(level, msg, EVS_KV_UINT("more_errors", d->dropped));
}

int evs_app_apply_flags(const evs_app_options_t *opts, evs_config_t *cfg, evs_diag_t *diag) {
  int rc = 0;
  if (opts->log_level &&
      evs_config_set(cfg, "log.level", opts->log_level, "flag --log-level", diag) != 0)
    rc = EVS_EINVALCFG;
  if (opts->log_format &&
      evs_config_set(cfg, "log.format", opts->log_format, "flag --log-format", diag) != 0)
    rc = EVS_EINVALCFG;
  return rc;
}

int evs_app_check_scaled_objects(const evs_config_t *cfg, evs_diag_t *diag) {
  int rc = 0;
  const char *file = evs_doc_file(cfg->doc);
  for (size_t i = 0; i < cfg->n_scaled_objects; i++) {
    evs_so_t *so = NULL;
    if (evs_so_parse(cfg->scaled_objects[i], file, &so, diag) != 0)
      rc = EVS_EINVALCFG;
    evs_so_free(so);
  }
  return rc;
}

/* Applies what the loop itself uses from a configuration; later stages are handed theirs. */
static void evs__apply(evs__app_t *app) {
  evs_log_set_level((evs_log_level_t)app->cfg->log.level);
  evs_log_set_format((evs_log_format_t)app->cfg->log.format);
}

static void evs__on_reload(evs_reload_t *r, int status, evs_config_t *next, const evs_diag_t *diag,
                           void *data) {
  (void)r;
  evs__app_t *app = data;
  if (status == EVS_ECANCELED)
    return;
  evs_diag_t d;
  evs_diag_init(&d);
  if (status == 0 && evs_app_apply_flags(app->opts, next, &d) != 0)
    status = EVS_EINVALCFG;
  if (status == 0 && evs_app_check_scaled_objects(next, &d) != 0)
    status = EVS_EINVALCFG;
  if (status != 0) {
    /* A bad file changes nothing: the configuration in force stays. */
    evs__log_diag(EVS_LOG_ERROR, "configuration rejected; keeping the one in force",
                  status == 0 ? &d : (d.n ? &d : diag));
    EVS_LOG_ERROR("configuration reload failed", EVS_KV_STR("file", app->opts->config_path),
                  EVS_KV_ERR("err", status));
    evs_health_config_reload(app->health, 0, evs__now_unix());
    evs_config_free(next);
    evs_diag_free(&d);
    return;
  }
  /* Keys that need a restart keep their old values; say which. */
  evs_config_diff_reload(app->cfg, next, &d);
  evs__log_diag(EVS_LOG_WARN, "configuration key needs a restart", &d);
  evs_diag_free(&d);
  evs_config_free(app->cfg);
  app->cfg = next;
  evs__apply(app);
  evs_control_apply_file(app->control, app->cfg);
  evs_health_config_reload(app->health, 1, evs__now_unix());
  EVS_LOG_INFO("configuration reloaded", EVS_KV_STR("file", app->opts->config_path),
               EVS_KV_UINT("scaled_objects", next->n_scaled_objects));
}

static void evs__on_closed(uv_handle_t *h) { (void)h; }

/* The last step of shutdown. The signal handles stay open until here, because closing the last
 * handle of a signal makes libuv restore its default action: a second SIGTERM (the kubelet, then
 * an impatient operator) or a SIGHUP during the grace would then kill the process instead of it
 * exiting 0 (issue 9). From here to exit, moments away, those signals are ignored for the same
 * reason. */
static void evs__close_final(evs__app_t *app) {
  if (app->grace_open && !uv_is_closing((uv_handle_t *)&app->grace))
    uv_close((uv_handle_t *)&app->grace, evs__on_closed);
  for (int i = 0; i < app->n_sigs; i++) {
    if (!uv_is_closing((uv_handle_t *)&app->sigs[i]))
      uv_close((uv_handle_t *)&app->sigs[i], evs__on_closed);
    signal(evs__signums[i], SIG_IGN);
  }
}

static void evs__server_closed(evs_http_server_t *s, void *data) {
  (void)s;
  evs__app_t *app = data;
  app->server = NULL;
  /* The grace timer has nothing left to guard. */
  evs__close_final(app);
}

static void evs__health_closed(void *data) { ((evs__app_t *)data)->health = NULL; }

static void evs__kube_closed(void *data) { ((evs__app_t *)data)->kube = NULL; }

static void evs__control_stopped(void *data) {
  evs__app_t *app = data;
  app->control = NULL;
  /* The controller's last request has ended: the client may close. */
  if (app->kube)
    evs_kube_close(app->kube, evs__kube_closed, app);
}

static void evs__close_kube(evs__app_t *app) {
  if (app->kube_retry_open && !uv_is_closing((uv_handle_t *)&app->kube_retry))
    uv_close((uv_handle_t *)&app->kube_retry, evs__on_closed);
  if (app->disc)
    evs_kube_discovery_cancel(app->disc); /* its callback clears app->disc */
  if (app->control)
    evs_control_stop(app->control, evs__control_stopped, app); /* releases the lease first */
  else if (app->kube)
    evs_kube_close(app->kube, evs__kube_closed, app);
}

static void evs__close_rest(evs__app_t *app) {
  evs__close_kube(app);
  if (app->reload) {
    evs_reload_close(app->reload);
    app->reload = NULL;
  }
  if (app->health)
    evs_health_close(app->health, evs__health_closed, app);
}

static void evs__on_grace(uv_timer_t *t) {
  evs__app_t *app = t->data;
  EVS_LOG_WARN(
      "shutdown grace period over; dropping remaining connections",
      EVS_KV_UINT("connections", app->server ? evs_http_server_connections(app->server) : 0));
  /* Closing the server drops what is left; its callback closes this timer and the signals. */
  if (app->server)
    evs_http_server_close(app->server, evs__server_closed, app);
  else
    evs__close_final(app);
}

static void evs__stop(evs__app_t *app, const char *why) {
  if (app->stopping) {
    /* A second stop signal means "now": the grace ends early, remaining connections are
     * dropped, and the exit is still the clean one (code 0, "evscale stopped"). */
    if (app->grace_open && uv_is_active((uv_handle_t *)&app->grace)) {
      EVS_LOG_WARN("second stop signal: ending the shutdown grace now", EVS_KV_STR("signal", why));
      uv_timer_stop(&app->grace);
      evs__on_grace(&app->grace);
    } else {
      EVS_LOG_INFO("already shutting down", EVS_KV_STR("signal", why));
    }
    return;
  }
  app->stopping = 1;
  EVS_LOG_INFO("shutting down", EVS_KV_STR("signal", why),
               EVS_KV_UINT("grace_ms", app->cfg->server.shutdown_grace_ms));
  evs_health_set_ready(app->health, "shutdown", 0);
  uv_timer_start(&app->grace, evs__on_grace, app->cfg->server.shutdown_grace_ms, 0);
  /* The server finishes queued responses and closes its connections; until every handle is
   * closed the grace timer bounds how long that may take. */
  evs_http_server_close(app->server, evs__server_closed, app);
  evs__close_rest(app);
}

static void evs__on_signal(uv_signal_t *s, int signum) {
  evs__app_t *app = s->data;
  if (signum == SIGHUP) {
    if (app->stopping)
      EVS_LOG_INFO("SIGHUP ignored: shutting down");
    else if (app->reload)
      evs_reload_trigger(app->reload);
    else
      EVS_LOG_INFO("SIGHUP ignored: no configuration file");
    return;
  }
  evs__stop(app, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int evs__start_signals(evs__app_t *app) {
  for (int i = 0; i < app->n_sigs; i++) {
    int rc = uv_signal_start(&app->sigs[i], evs__on_signal, evs__signums[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Every handle the app embeds is initialised first, so any failure later can close them all;
 * the counts say which ones exist (uv_signal_init can fail: it opens the loop's signal pipe). */
static int evs__init_handles(evs__app_t *app) {
  int rc = uv_timer_init(app->loop, &app->grace);
  if (rc != 0)
    return rc;
  app->grace_open = 1;
  app->grace.data = app;
  for (; app->n_sigs < 3; app->n_sigs++) {
    if ((rc = uv_signal_init(app->loop, &app->sigs[app->n_sigs])) != 0)
      return rc;
    app->sigs[app->n_sigs].data = app;
  }
  return 0;
}

static int evs__start_reload(evs__app_t *app) {
  if (app->opts->config_path == NULL)
    return 0;
  evs_reload_opts_t ro = {.path = app->opts->config_path,
                          .envp = app->opts->envp,
                          .last_hash = app->cfg->source_hash,
                          .have_hash = 1};
  return evs_reload_start(app->loop, &ro, evs__on_reload, app, &app->reload);
}

/* --- Kubernetes --- */

static void evs__kube_connect(evs__app_t *app);

static void evs__on_kube_retry(uv_timer_t *t) {
  evs__app_t *app = t->data;
  if (!app->stopping)
    evs__kube_connect(app);
}

/* A failure is never fatal: the cluster may come up after evscale (a control plane restart, a
 * kind cluster being created), and /readyz says "not ready: kubernetes" meanwhile. */
static void evs__kube_retry_later(evs__app_t *app, const char *what, int err, const char *msg) {
  uint64_t delay = evs_backoff_next(&app->kube_backoff, (double)rand() / ((double)RAND_MAX + 1));
  EVS_LOG_ERROR(what, EVS_KV_STR("error", msg ? msg : evs_strerror(err)), EVS_KV_ERR("err", err),
                EVS_KV_STR("as", evs_kube_describe(app->kube)), EVS_KV_UINT("retry_in_ms", delay));
  uv_timer_start(&app->kube_retry, evs__on_kube_retry, delay, 0);
}

static void evs__on_discovered(int status, evs_kube_discovery_t *d, const char *msg, void *arg) {
  evs__app_t *app = arg;
  app->disc = NULL;
  if (status == EVS_ECANCELED || app->stopping) {
    evs_kube_discovery_free(d);
    return;
  }
  if (status != 0) {
    evs__kube_retry_later(app, "Kubernetes API discovery failed", status, msg);
    return;
  }
  evs_backoff_reset(&app->kube_backoff);
  evs_kube_discovery_free(app->discovery);
  app->discovery = d;
  char hpa[32];
  snprintf(hpa, sizeof hpa, "%s%s", d->hpa_version[0] ? "autoscaling/" : "",
           d->hpa_version[0] ? d->hpa_version : "none");
  EVS_LOG_INFO(
      "connected to Kubernetes", EVS_KV_STR("server", evs_kube_server(app->kube)),
      EVS_KV_STR("as", evs_kube_describe(app->kube)), EVS_KV_STR("version", d->git_version),
      EVS_KV_STR("hpa", hpa), EVS_KV_UINT("scalable_kinds", d->n_scalable),
      EVS_KV_STR("events", d->events_group_version), EVS_KV_BOOL("leases", d->coordination_v1),
      EVS_KV_BOOL("keda_crds", d->keda_v1alpha1), EVS_KV_UINT("unavailable_groups", d->n_failed),
      EVS_KV_BOOL("dry_run", app->opts->dry_run));
  evs_health_set_ready(app->health, "kubernetes", 1);
  if (app->control == NULL) {
    if (!d->keda_v1alpha1)
      EVS_LOG_ERROR("the API server does not serve keda.sh/v1alpha1: install the ScaledObject "
                    "CRD (deploy/crds); watching for it");
    evs_control_options_t co = {.loop = app->loop,
                                .cfg = app->cfg,
                                .kube = app->kube,
                                .discovery = app->discovery,
                                .metrics = app->metrics,
                                .health = app->health,
                                .dry_run = app->opts->dry_run};
    int rc = evs_control_start(&co, &app->control);
    if (rc != 0 && app->control == NULL)
      EVS_LOG_ERROR("cannot start the controller", EVS_KV_ERR("err", rc));
  }
}

static void evs__discover(evs__app_t *app) {
  int rc = evs_kube_discover(app->kube, evs__on_discovered, app, &app->disc);
  if (rc != 0)
    evs__kube_retry_later(app, "Kubernetes API discovery failed", rc, NULL);
}

static void evs__on_kube_open(evs_kube_t *k, int status, const char *msg, void *arg) {
  (void)k;
  evs__app_t *app = arg;
  if (status == EVS_ECANCELED || app->stopping)
    return;
  if (status != 0) {
    evs__kube_retry_later(app, "cannot connect to Kubernetes", status, msg);
    return;
  }
  app->kube_open = 1;
  evs__discover(app);
}

static void evs__kube_connect(evs__app_t *app) {
  if (app->kube_open) {
    evs__discover(app);
    return;
  }
  int rc = evs_kube_open(app->kube, evs__on_kube_open, app);
  if (rc != 0)
    evs__kube_retry_later(app, "cannot connect to Kubernetes", rc, NULL);
}

static int evs__start_kube(evs__app_t *app) {
  const evs_config_t *cfg = app->cfg;
  evs_kube_options_t ko = {.kubeconfig = cfg->kubernetes.kubeconfig,
                           .context = cfg->kubernetes.context,
                           .service_account_dir = cfg->kubernetes.service_account_dir,
                           .envp = app->opts->envp,
                           .qps = cfg->kubernetes.qps,
                           .burst = (unsigned)cfg->kubernetes.burst,
                           .request_timeout_ms = cfg->limits.request_timeout_ms,
                           .max_response_bytes = (size_t)cfg->limits.max_response_bytes,
                           .metrics = app->metrics,
                           .read_only = app->opts->dry_run};
  if (evs_kube_source_of(&ko) == EVS_KUBE_SRC_NONE) {
    EVS_LOG_INFO("no Kubernetes credentials (kubernetes.kubeconfig, KUBECONFIG, in-cluster "
                 "service account, ~/.kube/config); running without Kubernetes");
    return 0;
  }
  int rc = uv_timer_init(app->loop, &app->kube_retry);
  if (rc != 0)
    return rc;
  app->kube_retry_open = 1;
  app->kube_retry.data = app;
  evs_backoff_init(&app->kube_backoff, cfg->backoff.initial_ms, cfg->backoff.max_ms,
                   EVS_BACKOFF_DECORRELATED);
  if ((rc = evs_kube_new(app->loop, &ko, &app->kube)) != 0)
    return rc;
  evs_health_set_ready(app->health, "kubernetes", 0);
  evs__kube_connect(app);
  return 0;
}

static int evs__start(evs__app_t *app) {
  int rc;
  if ((rc = evs__init_handles(app)) != 0 || (rc = evs__start_signals(app)) != 0) {
    EVS_LOG_ERROR("cannot watch signals", EVS_KV_ERR("err", rc));
    return rc;
  }
  app->metrics = evs_metrics_new();
  if (app->metrics == NULL)
    return UV_ENOMEM;
  if ((rc = evs_health_new(app->loop, app->metrics, NULL, &app->health)) != 0)
    return rc;
  if ((rc = evs_http_server_new(app->loop, NULL, &app->server)) != 0)
    return rc;
  if ((rc = evs_health_attach(app->health, app->server)) != 0)
    return rc;
  if ((rc = evs_http_server_listen(app->server, app->cfg->server.address)) != 0) {
    EVS_LOG_ERROR("cannot listen", EVS_KV_STR("address", app->cfg->server.address),
                  EVS_KV_ERR("err", rc));
    return rc;
  }
  if ((rc = evs__start_reload(app)) != 0) {
    EVS_LOG_ERROR("cannot watch the configuration file", EVS_KV_STR("file", app->opts->config_path),
                  EVS_KV_ERR("err", rc));
    return rc;
  }
  if ((rc = evs__start_kube(app)) != 0) {
    EVS_LOG_ERROR("cannot start the Kubernetes client", EVS_KV_ERR("err", rc));
    return rc;
  }
  evs_health_set_ready(app->health, "config", 1);
  /* The start-up load counts as the first successful load: last_reload_successful reads 1. */
  evs_health_config_reload(app->health, 1, evs__now_unix());
  return 0;
}

int evs_app_run(uv_loop_t *loop, evs_config_t *cfg, const evs_app_options_t *opts) {
  evs__app_t app;
  memset(&app, 0, sizeof app);
  app.loop = loop;
  app.opts = opts;
  app.cfg = cfg;
  app.exit_code = EVS_EXIT_OK;
  evs__apply(&app);
  int rc = evs__start(&app);
  if (rc == 0) {
    EVS_LOG_INFO("evscale started", EVS_KV_STR("version", EVS_VERSION),
                 EVS_KV_STR("revision", evs_git_revision),
                 EVS_KV_STR("address", cfg->server.address),
                 EVS_KV_INT("port", evs_http_server_port(app.server)),
                 EVS_KV_STR("config", opts->config_path ? opts->config_path : "(none)"),
                 EVS_KV_BOOL("dry_run", opts->dry_run),
                 EVS_KV_UINT("scaled_objects", cfg->n_scaled_objects));
  } else {
    app.exit_code = EVS_EXIT_RUNTIME;
    app.stopping = 1;
    if (app.server)
      evs_http_server_close(app.server, evs__server_closed, &app);
    else
      evs__close_final(&app);
    evs__close_rest(&app);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  evs_kube_discovery_free(app.discovery);
  if (app.metrics)
    evs_metrics_free(app.metrics);
  evs_config_free(app.cfg);
  if (rc == 0)
    EVS_LOG_INFO("evscale stopped");
  return app.exit_code;
}
