/* The evscale process on one loop: configuration (with reload), the HTTP server with /healthz,
 * /readyz and /metrics, signals and graceful shutdown. Later stages (Kubernetes informers,
 * scalers, the registry) hang off this object.
 *
 * Shutdown (SIGTERM or SIGINT): readiness goes false, the server stops accepting, in-flight
 * responses finish, and every handle is closed; if that takes longer than
 * server.shutdown_grace, the remaining connections are dropped. A second SIGTERM or SIGINT during
 * the grace ends it at once (remaining connections dropped); SIGHUP while stopping is logged and
 * ignored. Either way the exit is the clean one (code 0, "evscale stopped"): the signal handles
 * stay open until the last step of shutdown, and the three signals are ignored from then to exit.
 * evs_app_run returns once the loop has no handle left, so the caller's uv_loop_close returns 0.
 *
 * Kubernetes: when a source is configured or found (evscale/kube.h: kubernetes.kubeconfig,
 * KUBECONFIG, the in-cluster service account, ~/.kube/config), the process connects and runs
 * discovery at start, logs "connected to Kubernetes" with the server, the credential form, the
 * HPA version and the number of scalable kinds, and /readyz answers 503 ("not ready:
 * kubernetes") until that succeeded. A failure is logged and retried with backoff
 * (backoff.initial/max), never fatal. With --dry-run the client refuses every verb but GET and
 * HEAD. Without any source the process runs without Kubernetes (simulate-style use). */
#ifndef EVSCALE_APP_H
#define EVSCALE_APP_H

#include <uv.h>

#include "evscale/config.h"

typedef struct {
  const char *config_path; /* NULL = no file (defaults and environment only) */
  char **envp;             /* borrowed, must outlive the run (usually `environ`) */
  const char *log_level;   /* command-line overrides, re-applied after every reload; NULL = none */
  const char *log_format;
  int dry_run;
} evs_app_options_t;

/* Applies the command-line overrides to cfg through the configuration's own validation. */
int evs_app_apply_flags(const evs_app_options_t *opts, evs_config_t *cfg, evs_diag_t *diag);

/* Validates the configuration's scaled_objects with the ScaledObject model (the one the API
 * objects go through), adding every error with its file position to diag. A file whose
 * ScaledObjects are invalid is an invalid configuration: refused at start and on reload. */
int evs_app_check_scaled_objects(const evs_config_t *cfg, evs_diag_t *diag);

/* Runs the process on loop with cfg (steals it) until a stop signal, and returns an exit code
 * (EVS_EXIT_OK, or EVS_EXIT_RUNTIME when start-up failed, e.g. the address is in use). */
int evs_app_run(uv_loop_t *loop, evs_config_t *cfg, const evs_app_options_t *opts);

#endif
