/* The configuration: one YAML file, overridden by EVSCALE_* environment variables, overridden by
 * command-line flags (defaults < file < env < flags).
 *
 *   evs_diag_t d;  evs_diag_init(&d);
 *   evs_config_t *cfg;
 *   if (evs_config_load_file(path, environ, &cfg, &d) != 0) { print every entry of d; exit }
 *   evs_config_set(cfg, "log.level", "debug", "flag --log-level", &d);
 *
 * Every key of the schema is a row of one table (src/core/config_schema.c) that gives its type,
 * default, range, reload class and help text; the loader, env overrides, evs_config_set, the dump,
 * the reload diff and the README table are all driven by it.
 *
 * Errors: every problem of a file is collected into an evs_diag_t, each with its position and
 * key path ("config.yaml:12:5: circuit_breaker.cooldown_period: ..."); env problems read
 * "env EVSCALE_X: key.path: ...". Unknown keys (and unknown EVSCALE_* variables) are errors with
 * a did-you-mean, because a misspelt key silently ignored is the classic operations bug.
 * Environment variables that Kubernetes injects for a Service named "evscale"
 * (EVSCALE_SERVICE_*, EVSCALE_PORT, EVSCALE_PORT_<n>_*) and EVSCALE_CONFIG (the file path, read by
 * the command line) are not keys and are ignored. */
#ifndef EVSCALE_CONFIG_H
#define EVSCALE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "evscale/diag.h"
#include "evscale/node.h"

typedef enum {
  EVS_KEYSPACE_AUTO = 0, /* use keyspace notifications when the server already emits them */
  EVS_KEYSPACE_ON = 1,
  EVS_KEYSPACE_OFF = 2
} evs_keyspace_mode_t;

typedef enum { EVS_FALLBACK_CPU = 0, EVS_FALLBACK_MEMORY = 1 } evs_fallback_resource_t;

typedef struct {
  char **items; /* owned, each owned */
  size_t n;
} evs_strlist_t;

/* Every duration is in milliseconds (suffix _ms). Strings are never NULL ("" = unset). */
typedef struct evs_config_s {
  struct {
    char *address; /* "[host]:port" as written */
    char *host;    /* "" = every interface; IPv6 without brackets */
    int port;      /* 0..65535 (0 = any free port, for tests) */
    uint64_t shutdown_grace_ms;
  } server;
  struct {
    int level;  /* evs_log_level_t (debug=0 … error=3) */
    int format; /* evs_log_format_t (logfmt=0, json=1) */
  } log;
  struct {
    char *kubeconfig; /* "" = in-cluster (or $KUBECONFIG, resolved by kube/) */
    char *context;    /* "" = the kubeconfig's current-context */
    char *service_account_dir;
    evs_strlist_t namespaces;       /* empty = all namespaces */
    char *cluster_object_namespace; /* "" = evscale's own namespace */
    double qps;
    int64_t burst;
    int adopt_keda_hpas;
    uint64_t adopt_window_ms;
  } kubernetes;
  struct {
    int enabled;
    char *lease_name;
    char *lease_namespace; /* "" = own namespace ("default" outside a cluster) */
    uint64_t lease_duration_ms, renew_deadline_ms, retry_period_ms;
  } leader_election;
  struct {
    uint64_t polling_interval_ms, cooldown_period_ms, active_read_interval_ms;
  } defaults;
  struct {
    double tolerance;
  } engine;
  struct {
    int64_t max_replicas; /* 0 = no cap */
    uint64_t max_response_bytes;
    uint64_t request_timeout_ms;
  } limits;
  struct {
    int enabled;
    int64_t max_scale_events_per_minute;
    uint64_t cooldown_period_ms;
    int64_t fallback_replicas;
    uint64_t max_cooldown_period_ms;
    char *fallback_metric;        /* "cpu:50" as written */
    int fallback_resource;        /* evs_fallback_resource_t, parsed from fallback_metric */
    int64_t fallback_utilization; /* percent, parsed from fallback_metric */
  } circuit_breaker;
  struct {
    uint64_t initial_ms, max_ms;
  } backoff;
  struct {
    int keyspace_events; /* evs_keyspace_mode_t */
    int configure_keyspace_events;
  } redis;
  struct {
    int keda_compat; /* evs_keda_compat_t: 0 = none, 1 = KEDA 2.13's names too */
  } metrics;
  /* ScaledObjects defined in the file, structure-checked only (a mapping with apiVersion
   * keda.sh/v1alpha1, kind ScaledObject, metadata.name, spec). Borrowed from `doc`, which the
   * config owns, so their positions survive for the ScaledObject validator. */
  const evs_node_t **scaled_objects;
  size_t n_scaled_objects;

  /* Private to config.c. */
  evs_doc_t *doc;
  uint64_t source_hash; /* evs_config_hash of the file bytes */
  void *origins;
} evs_config_t;

/* Loads a configuration from a buffer (the bytes of `file`, which is only used in messages) and
 * the environment `envp` (NULL-terminated "NAME=value" array, borrowed; NULL = none). On success
 * *out is new (free with evs_config_free). On failure returns EVS_EINVALCFG (every problem is in
 * diag, which may be NULL) or UV_ENOMEM, and *out is NULL. An empty buffer is all defaults. */
int evs_config_load_buffer(const char *buf, size_t len, const char *file, char **envp,
                           evs_config_t **out, evs_diag_t *diag);
/* Reads `path` synchronously, then evs_config_load_buffer. For start-up only, before the loop
 * runs; at run time the reload watcher (reload.h) reads through the thread pool. A file that
 * cannot be read is one diag entry and the libuv error is returned. */
int evs_config_load_file(const char *path, char **envp, evs_config_t **out, evs_diag_t *diag);
void evs_config_free(evs_config_t *cfg);

/* Sets one key ("log.level") from text through the same validation as an env value; `source`
 * names the origin in messages ("flag --log-level"). The cross-key checks (renew_deadline <
 * lease_duration, ...) are run again afterwards. Returns 0; EVS_ENOTFOUND for an unknown key
 * (with a did-you-mean in diag); EVS_EINVALCFG for an invalid value (the key keeps its old value)
 * or a failed cross-key check (the value is set: treat the config as invalid). */
int evs_config_set(evs_config_t *cfg, const char *key, const char *value, const char *source,
                   evs_diag_t *diag);

/* Runs the cross-key checks; 0 or EVS_EINVALCFG with entries in diag. */
int evs_config_check(const evs_config_t *cfg, evs_diag_t *diag);

/* Prints the effective configuration as YAML that evs_config_load_buffer reads back: every key,
 * durations in canonical form, strings quoted. Secrets are masked: in scaled_objects, values of
 * keys named like a credential (password, token, secret, ...), and the password of any URL with
 * userinfo (redis://:pw@host → redis://:<redacted>@host) anywhere. Returns 0 or an I/O error. */
int evs_config_dump(const evs_config_t *cfg, FILE *out);

/* Reload: `next` was loaded from the changed file, `old` is the running configuration. Every key
 * that cannot change without a restart and differs is reported in warn ("server.address: changed
 * to ... needs a restart; keeping ...") and reset in `next` to its old value; reloadable keys keep
 * their new values. Returns how many keys were kept, or UV_ENOMEM. */
int evs_config_diff_reload(const evs_config_t *old, evs_config_t *next, evs_diag_t *warn);

/* 1 if key ("kubernetes.qps") has different values in a and b, 0 if equal, EVS_ENOTFOUND for an
 * unknown key. */
int evs_config_changed(const evs_config_t *a, const evs_config_t *b, const char *key);
/* 1 if the key can change at reload, 0 if it needs a restart, EVS_ENOTFOUND if unknown. */
int evs_config_reloadable(const char *key);

/* The environment variable name of a key: "EVSCALE_" + path upper-cased, dots to underscores.
 * Returns the would-be length like snprintf. */
int evs_config_env_name(const char *key, char *buf, size_t cap);

/* Number of keys in the schema and their paths in table order (static strings), for tools and
 * tests that must cover every key. */
size_t evs_config_key_count(void);
const char *evs_config_key_path(size_t i);

/* Prints the README table (key, env, default, reload, meaning) as Markdown. */
void evs_config_print_markdown(FILE *out);

/* FNV-1a 64 of a byte buffer: how the reload watcher tells a changed file from an identical one. */
uint64_t evs_config_hash(const void *buf, size_t len);

/* Levenshtein distance, and the closest candidate within a typo's reach (NULL if none): the
 * did-you-mean of unknown keys. Exposed for tests and other validators. */
size_t evs_edit_distance(const char *a, const char *b);
const char *evs_did_you_mean(const char *word, const char *const *candidates, size_t n);

#endif
