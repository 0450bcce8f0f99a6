/* The configuration schema (one row per key, ARCHITECTURE.md "Configuration keys") and the
 * value handlers shared by the file, the environment, flags and defaults. */
#include "config_int.h"
#include "evscale/duration.h"
#include "evscale/error.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const evs__levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const evs__formats[] = {"logfmt", "json", NULL};
static const char *const evs__keyspace[] = {"auto", "on", "off", NULL};
/* metrics.keda_compat: "" = KEDA's current families only; "2.13" = also KEDA 2.13's names. */
static const char *const evs__keda_compat[] = {"", "2.13", NULL};

#define OFF(f) offsetof(evs_config_t, f)
#define MS_DAY 86400000.0
#define MS_YEAR (365 * MS_DAY)

/* clang-format off */
const evs_config__key_t evs_config__keys[] = {
  {"server.address", EVS_CONFIG__ADDR, OFF(server.address), 0, ":8080", 0, 0, 0, NULL,
   "listen address of /metrics, /healthz and /readyz, [host]:port (empty host = all interfaces)"},
  {"server.shutdown_grace", EVS_CONFIG__DUR, OFF(server.shutdown_grace_ms), 1, "10s", 0, MS_DAY, 0, NULL,
   "how long a shutdown waits for in-flight writes before closing"},
  {"log.level", EVS_CONFIG__ENUM, OFF(log.level), 1, "info", 0, 0, 0, evs__levels,
   "least severe level logged: debug, info, warn or error"},
  {"log.format", EVS_CONFIG__ENUM, OFF(log.format), 1, "logfmt", 0, 0, 0, evs__formats,
   "log line format: logfmt or json"},
  {"kubernetes.kubeconfig", EVS_CONFIG__STR, OFF(kubernetes.kubeconfig), 0, "", 0, 0, 0, NULL,
   "kubeconfig file; empty = in-cluster service account (KUBECONFIG is honoured)"},
  {"kubernetes.context", EVS_CONFIG__STR, OFF(kubernetes.context), 0, "", 0, 0, 0, NULL,
   "kubeconfig context; empty = its current-context"},
  {"kubernetes.service_account_dir", EVS_CONFIG__STR, OFF(kubernetes.service_account_dir), 0,
   "/var/run/secrets/kubernetes.io/serviceaccount", 0, 0, 0, NULL,
   "directory with the in-cluster token, ca.crt and namespace"},
  {"kubernetes.namespaces", EVS_CONFIG__LIST, OFF(kubernetes.namespaces), 0, "", 0, 0, EVS_CONFIG__DNS_LABEL, NULL,
   "namespaces whose ScaledObjects are watched; empty = all"},
  {"kubernetes.cluster_object_namespace", EVS_CONFIG__STR, OFF(kubernetes.cluster_object_namespace), 0, "", 0, 0, EVS_CONFIG__DNS_LABEL, NULL,
   "where ClusterTriggerAuthentication secrets live (KEDA_CLUSTER_OBJECT_NAMESPACE); empty = own namespace"},
  {"kubernetes.qps", EVS_CONFIG__REAL, OFF(kubernetes.qps), 1, "50", 0, 1e6, EVS_CONFIG__MIN_EXCL, NULL,
   "API requests per second, sustained (scale writes go first)"},
  {"kubernetes.burst", EVS_CONFIG__INT, OFF(kubernetes.burst), 1, "100", 1, 1e6, 0, NULL,
   "API requests allowed in a burst above qps"},
  {"kubernetes.adopt_keda_hpas", EVS_CONFIG__BOOL, OFF(kubernetes.adopt_keda_hpas), 1, "false", 0, 0, 0, NULL,
   "delete the HPA KEDA's operator created for a ScaledObject evscale holds, then drive its target (moving from KEDA: stop KEDA's operator first)"},
  {"kubernetes.adopt_window", EVS_CONFIG__DUR, OFF(kubernetes.adopt_window_ms), 1, "5m", 1000, MS_DAY, 0, NULL,
   "KEDA's HPA re-created this soon after evscale deleted one means KEDA's operator still runs: left alone until the window has passed"},
  {"leader_election.enabled", EVS_CONFIG__BOOL, OFF(leader_election.enabled), 0, "true", 0, 0, 0, NULL,
   "only the holder of the Lease writes; false = this replica always writes"},
  {"leader_election.lease_name", EVS_CONFIG__STR, OFF(leader_election.lease_name), 0, "evscale", 0, 0, EVS_CONFIG__DNS_SUBDOMAIN, NULL,
   "name of the coordination.k8s.io Lease"},
  {"leader_election.lease_namespace", EVS_CONFIG__STR, OFF(leader_election.lease_namespace), 0, "", 0, 0, EVS_CONFIG__DNS_LABEL, NULL,
   "namespace of the Lease; empty = own namespace (default outside a cluster)"},
  {"leader_election.lease_duration", EVS_CONFIG__DUR, OFF(leader_election.lease_duration_ms), 0, "15s", 1000, MS_DAY, 0, NULL,
   "how long a Lease is valid without renewal"},
  {"leader_election.renew_deadline", EVS_CONFIG__DUR, OFF(leader_election.renew_deadline_ms), 0, "10s", 1, MS_DAY, 0, NULL,
   "the leader steps down if it cannot renew within this (< lease_duration)"},
  {"leader_election.retry_period", EVS_CONFIG__DUR, OFF(leader_election.retry_period_ms), 0, "2s", 1, MS_DAY, 0, NULL,
   "interval between acquire/renew attempts (< renew_deadline)"},
  {"defaults.polling_interval", EVS_CONFIG__DUR, OFF(defaults.polling_interval_ms), 1, "30s", 100, MS_DAY, 0, NULL,
   "trigger read interval of a ScaledObject without pollingInterval"},
  {"defaults.cooldown_period", EVS_CONFIG__DUR, OFF(defaults.cooldown_period_ms), 1, "300s", 0, MS_YEAR, 0, NULL,
   "wait after the last active trigger before scaling to zero, without cooldownPeriod"},
  {"defaults.active_read_interval", EVS_CONFIG__DUR, OFF(defaults.active_read_interval_ms), 1, "15s", 100, MS_DAY, 0, NULL,
   "a target with replicas has its triggers read at least this often (as KEDA's HPA does)"},
  {"engine.tolerance", EVS_CONFIG__REAL, OFF(engine.tolerance), 1, "0.1", 0, 1, EVS_CONFIG__MAX_EXCL, NULL,
   "HPA tolerance: no change while |usage ratio - 1| <= tolerance; in [0, 1)"},
  {"limits.max_replicas", EVS_CONFIG__OPTINT, OFF(limits.max_replicas), 1, "", 1, 2147483647.0, 0, NULL,
   "cap on every ScaledObject's maxReplicaCount; null = no cap"},
  {"limits.max_response_bytes", EVS_CONFIG__SIZE, OFF(limits.max_response_bytes), 1, "16Mi", 1024, 1073741824.0, 0, NULL,
   "largest HTTP response body read from any backend (bytes, or Ki/Mi/Gi)"},
  {"limits.request_timeout", EVS_CONFIG__DUR, OFF(limits.request_timeout_ms), 1, "10s", 1, MS_DAY, 0, NULL,
   "timeout of one request to any backend"},
  {"circuit_breaker.enabled", EVS_CONFIG__BOOL, OFF(circuit_breaker.enabled), 1, "true", 0, 0, 0, NULL,
   "hand a target to a fallback HPA when it scales too often"},
  {"circuit_breaker.max_scale_events_per_minute", EVS_CONFIG__INT, OFF(circuit_breaker.max_scale_events_per_minute), 1, "3", 1, 1000, 0, NULL,
   "scale events in the last 60 s that trip the breaker (above 28: never trips, the breaker keeps 28 events)"},
  {"circuit_breaker.cooldown_period", EVS_CONFIG__DUR, OFF(circuit_breaker.cooldown_period_ms), 1, "60s", 1000, MS_DAY, 0, NULL,
   "how long a tripped breaker holds before trying again (doubles up to max_cooldown_period)"},
  {"circuit_breaker.fallback_replicas", EVS_CONFIG__INT, OFF(circuit_breaker.fallback_replicas), 1, "10", 1, 2147483647.0, 0, NULL,
   "minReplicas of the fallback HPA"},
  {"circuit_breaker.max_cooldown_period", EVS_CONFIG__DUR, OFF(circuit_breaker.max_cooldown_period_ms), 1, "15m", 1000, MS_DAY, 0, NULL,
   "upper bound of the growing breaker cooldown (>= cooldown_period)"},
  {"circuit_breaker.fallback_metric", EVS_CONFIG__METRIC, OFF(circuit_breaker.fallback_metric), 1, "cpu:50", 0, 0, 0, NULL,
   "fallback HPA metric: cpu:N or memory:N = average utilisation N% (1-1000)"},
  {"backoff.initial", EVS_CONFIG__DUR, OFF(backoff.initial_ms), 1, "500ms", 1, MS_DAY, 0, NULL,
   "first reconnect delay to any backend (with jitter)"},
  {"backoff.max", EVS_CONFIG__DUR, OFF(backoff.max_ms), 1, "60s", 1, MS_DAY, 0, NULL,
   "largest reconnect delay (>= initial)"},
  {"redis.keyspace_events", EVS_CONFIG__ENUM, OFF(redis.keyspace_events), 1, "auto", 0, 0, 0, evs__keyspace,
   "use Redis keyspace notifications: auto (if the server emits them), on, off"},
  {"redis.configure_keyspace_events", EVS_CONFIG__BOOL, OFF(redis.configure_keyspace_events), 1, "false", 0, 0, 0, NULL,
   "allow CONFIG SET notify-keyspace-events on servers (never changed unless true)"},
  {"metrics.keda_compat", EVS_CONFIG__ENUM, OFF(metrics.keda_compat), 0, "", 0, 0, 0, evs__keda_compat,
   "also export KEDA 2.13's metric names (keda_scaler_errors, ...): \"\" (none) or \"2.13\""},
};
/* clang-format on */
const size_t evs_config__nkeys = sizeof evs_config__keys / sizeof evs_config__keys[0];

const evs_config__key_t *evs_config__find(const char *path) {
  for (size_t i = 0; i < evs_config__nkeys; i++)
    if (strcmp(evs_config__keys[i].path, path) == 0)
      return &evs_config__keys[i];
  return NULL;
}

#define FIELD(cfg, k, T) ((T *)(void *)((char *)(cfg) + (k)->off))
#define CFIELD(cfg, k, T) ((const T *)(const void *)((const char *)(cfg) + (k)->off))

/* ---- type checks of YAML nodes ---- */

static int evs__kind_err(const evs_config__in_t *in, const char *want, char *err, size_t cap) {
  snprintf(err, cap, "expected %s, got %s", want, evs_node_kind_name(in->node->kind));
  return UV_EINVAL;
}

/* Text of a scalar value for handlers that read text; NULL (with err) for maps and sequences. */
static const char *evs__scalar_text(const evs_config__in_t *in, const char *want, char *err,
                                    size_t cap) {
  if (in->node == NULL)
    return in->text;
  if (!evs_node_is_scalar(in->node)) {
    evs__kind_err(in, want, err, cap);
    return NULL;
  }
  return evs_node_text(in->node);
}

/* ---- numbers ---- */

static int evs__range(const evs_config__key_t *k, double v, const char *shown, char *err,
                      size_t cap) {
  int lo_bad = (k->flags & EVS_CONFIG__MIN_EXCL) ? v <= k->min : v < k->min;
  int hi_bad = (k->flags & EVS_CONFIG__MAX_EXCL) ? v >= k->max : v > k->max;
  if (!lo_bad && !hi_bad && !isnan(v))
    return 0;
  snprintf(err, cap, "%s is out of range: must be %s %.15g and %s %.15g", shown,
           (k->flags & EVS_CONFIG__MIN_EXCL) ? ">" : ">=", k->min,
           (k->flags & EVS_CONFIG__MAX_EXCL) ? "<" : "<=", k->max);
  return EVS_ERANGE;
}

static int evs__text_int(const char *s, int64_t *out) {
  if (*s == '\0')
    return UV_EINVAL;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return UV_EINVAL;
  *out = v;
  return 0;
}

static int evs__get_int(const evs_config__in_t *in, int64_t *v, char *err, size_t cap) {
  if (in->node) {
    if (in->node->kind != EVS_NODE_INT)
      return evs__kind_err(in, "an integer", err, cap);
    *v = in->node->num.i;
    return 0;
  }
  if (evs__text_int(in->text, v) != 0) {
    snprintf(err, cap, "expected an integer, got '%s'", in->text);
    return UV_EINVAL;
  }
  return 0;
}

static int evs__p_int(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                      char *err, size_t cap) {
  int64_t v;
  char shown[32];
  if (evs__get_int(in, &v, err, cap) != 0)
    return UV_EINVAL;
  snprintf(shown, sizeof shown, "%lld", (long long)v);
  if (evs__range(k, (double)v, shown, err, cap) != 0)
    return UV_EINVAL;
  *FIELD(cfg, k, int64_t) = v;
  return 0;
}

static int evs__p_optint(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                         char *err, size_t cap) {
  int none = in->node ? in->node->kind == EVS_NODE_NULL
                      : (*in->text == '\0' || strcasecmp(in->text, "none") == 0 ||
                         strcmp(in->text, "null") == 0);
  if (none) {
    *FIELD(cfg, k, int64_t) = 0;
    return 0;
  }
  return evs__p_int(k, cfg, in, err, cap);
}

static int evs__p_real(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                       char *err, size_t cap) {
  double v;
  if (in->node) {
    if (in->node->kind == EVS_NODE_INT)
      v = (double)in->node->num.i;
    else if (in->node->kind == EVS_NODE_REAL)
      v = in->node->num.d;
    else
      return evs__kind_err(in, "a number", err, cap);
  } else {
    char *end;
    errno = 0;
    v = strtod(in->text, &end);
    if (*in->text == '\0' || *end != '\0' || errno != 0 || !isfinite(v)) {
      snprintf(err, cap, "expected a number, got '%s'", in->text);
      return UV_EINVAL;
    }
  }
  const char *shown = in->node ? evs_node_text(in->node) : in->text;
  if (evs__range(k, v, shown, err, cap) != 0)
    return UV_EINVAL;
  *FIELD(cfg, k, double) = v;
  return 0;
}

static int evs__p_bool(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                       char *err, size_t cap) {
  int v;
  if (in->node) {
    if (in->node->kind != EVS_NODE_BOOL)
      return evs__kind_err(in, "a boolean (true or false)", err, cap);
    v = in->node->num.b;
  } else if (strcasecmp(in->text, "true") == 0) {
    v = 1;
  } else if (strcasecmp(in->text, "false") == 0) {
    v = 0;
  } else {
    snprintf(err, cap, "expected true or false, got '%s'", in->text);
    return UV_EINVAL;
  }
  *FIELD(cfg, k, int) = v;
  return 0;
}

/* ---- durations and sizes ---- */

static int evs__p_dur(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                      char *err, size_t cap) {
  const char *s = evs__scalar_text(in, "a duration (500ms, 15s, 1m, 1h)", err, cap);
  if (s == NULL)
    return UV_EINVAL;
  if (in->node && in->node->kind != EVS_NODE_STR && in->node->kind != EVS_NODE_INT)
    return evs__kind_err(in, "a duration (500ms, 15s, 1m, 1h)", err, cap);
  uint64_t ms;
  int rc = evs_duration_parse(s, &ms);
  if (rc == EVS_ERANGE) {
    snprintf(err, cap, "duration '%s' is too large", s);
    return UV_EINVAL;
  }
  if (rc != 0) {
    int64_t bare;
    if (evs__text_int(s, &bare) == 0)
      snprintf(err, cap, "duration '%s' has no unit (write e.g. %ss or %sms)", s, s, s);
    else
      snprintf(err, cap, "invalid duration '%s' (units: ms, s, m, h; e.g. 500ms, 1m30s)", s);
    return UV_EINVAL;
  }
  if ((double)ms < k->min || (double)ms > k->max) {
    char lo[32], hi[32];
    evs_duration_format((uint64_t)k->min, lo, sizeof lo);
    evs_duration_format((uint64_t)k->max, hi, sizeof hi);
    snprintf(err, cap, "%s is out of range: must be between %s and %s", s, lo, hi);
    return UV_EINVAL;
  }
  *FIELD(cfg, k, uint64_t) = ms;
  return 0;
}

static int evs__size_text(const char *s, uint64_t *out) {
  static const struct {
    const char *sfx;
    uint64_t mul;
  } sfx[] = {{"", 1}, {"Ki", 1024}, {"Mi", 1048576}, {"Gi", 1073741824}};
  char *end;
  if (!(*s >= '0' && *s <= '9'))
    return UV_EINVAL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0)
    return EVS_ERANGE;
  for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
    if (strcmp(end, sfx[i].sfx) == 0) {
      if (v > UINT64_MAX / sfx[i].mul)
        return EVS_ERANGE;
      *out = v * sfx[i].mul;
      return 0;
    }
  }
  return UV_EINVAL;
}

static int evs__p_size(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                       char *err, size_t cap) {
  const char *s = evs__scalar_text(in, "a size (bytes, or 512Ki, 16Mi, 1Gi)", err, cap);
  if (s == NULL)
    return UV_EINVAL;
  if (in->node && in->node->kind != EVS_NODE_STR && in->node->kind != EVS_NODE_INT)
    return evs__kind_err(in, "a size (bytes, or 512Ki, 16Mi, 1Gi)", err, cap);
  uint64_t v;
  int rc = evs__size_text(s, &v);
  if (rc == UV_EINVAL) {
    snprintf(err, cap, "invalid size '%s' (bytes, or a number with Ki, Mi or Gi)", s);
    return UV_EINVAL;
  }
  if (rc != 0 || evs__range(k, (double)v, s, err, cap) != 0) {
    if (rc != 0)
      snprintf(err, cap, "size '%s' is too large", s);
    return UV_EINVAL;
  }
  *FIELD(cfg, k, uint64_t) = v;
  return 0;
}

/* ---- strings ---- */

/* Kubernetes names, as apimachinery checks them (kubernetes/kubernetes
 * staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go, commit
 * 03014f486c86dbe8a7fbe275fe14250854aab219): a DNS-1123 label is [a-z0-9]([-a-z0-9]*[a-z0-9])?
 * of at most 63 characters (namespaces); a subdomain is labels joined by '.', at most 253
 * (object names such as the Lease). Caught here, a typo fails at start-up, not at the first
 * API call. */
static int evs__dns_label(const char *s, size_t n) {
  if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return 0;
  return 1;
}

static int evs__dns_subdomain(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253)
    return 0;
  for (const char *p = s;;) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (!evs__dns_label(p, len))
      return 0;
    if (dot == NULL)
      return 1;
    p = dot + 1;
  }
}

/* 0 when s is acceptable for k; otherwise UV_EINVAL with the reason in err. */
static int evs__check_name(const evs_config__key_t *k, const char *s, char *err, size_t cap) {
  if ((k->flags & EVS_CONFIG__DNS_LABEL) && !evs__dns_label(s, strlen(s))) {
    snprintf(err, cap,
             "'%s' is not a valid namespace name (lower case letters, digits and '-', "
             "starting and ending with a letter or digit, at most 63)",
             s);
    return UV_EINVAL;
  }
  if ((k->flags & EVS_CONFIG__DNS_SUBDOMAIN) && !evs__dns_subdomain(s)) {
    snprintf(err, cap,
             "'%s' is not a valid object name (DNS-1123 subdomain: lower case letters, "
             "digits, '-' and '.', at most 253)",
             s);
    return UV_EINVAL;
  }
  return 0;
}

static int evs__set_str(char **field, const char *s) {
  char *dup = strdup(s);
  if (dup == NULL)
    return UV_ENOMEM;
  free(*field);
  *field = dup;
  return 0;
}

static int evs__p_str(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                      char *err, size_t cap) {
  const char *s = in->text;
  if (in->node) {
    if (in->node->kind == EVS_NODE_NULL)
      s = "";
    else if (in->node->kind != EVS_NODE_STR)
      return evs__kind_err(in, "a string", err, cap);
    else
      s = evs_node_text(in->node);
  }
  /* A namespace "" keeps its meaning ("own namespace"); an object name is required. */
  if ((*s != '\0' || (k->flags & EVS_CONFIG__DNS_SUBDOMAIN)) &&
      evs__check_name(k, s, err, cap) != 0)
    return UV_EINVAL;
  return evs__set_str(FIELD(cfg, k, char *), s);
}

static int evs__p_enum(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                       char *err, size_t cap) {
  /* A bare number is its text: `keda_compat: 2.13` means "2.13". */
  if (in->node && in->node->kind != EVS_NODE_STR && in->node->kind != EVS_NODE_INT &&
      in->node->kind != EVS_NODE_REAL)
    return evs__kind_err(in, "a string", err, cap);
  const char *s = in->node ? evs_node_text(in->node) : in->text;
  size_t n = 0;
  for (; k->names[n]; n++) {
    if (strcmp(k->names[n], s) == 0) {
      *FIELD(cfg, k, int) = (int)n;
      return 0;
    }
  }
  size_t len = (size_t)snprintf(err, cap, "invalid value '%s': must be one of", s);
  for (size_t i = 0; i < n && len < cap; i++)
    len += (size_t)snprintf(err + len, cap - len, "%s %s", i ? "," : "",
                            k->names[i][0] ? k->names[i] : "\"\"");
  const char *near = evs_did_you_mean(s, k->names, n);
  if (near && len < cap)
    snprintf(err + len, cap - len, " (did you mean '%s'?)", near);
  return UV_EINVAL;
}

/* ---- lists ---- */

static void evs__list_free(evs_strlist_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

static int evs__list_push(evs_strlist_t *l, const char *s, size_t len) {
  /* The capacity is the next power of two (implicit: evs_strlist_t has no field for it), so a
   * list of n items costs O(n) copies, not the n^2/2 of growing by one (issue 9). */
  if ((l->n & (l->n - 1)) == 0) {
    char **items = realloc(l->items, (l->n ? 2 * l->n : 1) * sizeof *items);
    if (items == NULL)
      return UV_ENOMEM;
    l->items = items;
  }
  char **items = l->items;
  if ((items[l->n] = strndup(s, len)) == NULL)
    return UV_ENOMEM;
  l->n++;
  return 0;
}

/* Env form: comma-separated, blanks around items ignored, empty items skipped ("" = empty). */
static int evs__list_from_text(evs_strlist_t *l, const char *s) {
  while (*s) {
    const char *comma = strchr(s, ',');
    const char *end = comma ? comma : s + strlen(s);
    const char *a = s, *b = end;
    while (a < b && (*a == ' ' || *a == '\t'))
      a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
      b--;
    if (b > a && evs__list_push(l, a, (size_t)(b - a)) != 0)
      return UV_ENOMEM;
    s = comma ? comma + 1 : end;
  }
  return 0;
}

static int evs__list_from_node(evs_strlist_t *l, const evs_config__in_t *in, char *err,
                               size_t cap) {
  const evs_node_t *n = in->node;
  if (n->kind == EVS_NODE_NULL)
    return 0;
  if (n->kind != EVS_NODE_SEQ)
    return evs__kind_err(in, "a list of strings", err, cap);
  for (size_t i = 0; i < n->len; i++) {
    const evs_node_t *it = evs_node_item(n, i);
    if (it->kind != EVS_NODE_STR || it->len == 0) {
      snprintf(err, cap, "item %zu (line %u): expected a non-empty string, got %s", i, it->line,
               it->kind == EVS_NODE_STR ? "an empty string" : evs_node_kind_name(it->kind));
      return UV_EINVAL;
    }
    if (evs__list_push(l, it->u.text, it->len) != 0)
      return UV_ENOMEM;
  }
  return 0;
}

static int evs__p_list(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                       char *err, size_t cap) {
  evs_strlist_t l = {0};
  int rc = in->node ? evs__list_from_node(&l, in, err, cap) : evs__list_from_text(&l, in->text);
  for (size_t i = 0; rc == 0 && i < l.n; i++)
    rc = evs__check_name(k, l.items[i], err, cap);
  if (rc != 0) {
    evs__list_free(&l);
    if (rc == UV_ENOMEM)
      snprintf(err, cap, "out of memory");
    return rc;
  }
  evs__list_free(FIELD(cfg, k, evs_strlist_t));
  *FIELD(cfg, k, evs_strlist_t) = l;
  return 0;
}

/* ---- composite strings ---- */

/* "[host]:port", "host:port" or ":port"; an IPv6 host needs brackets. */
static int evs__split_addr(const char *s, char *host, size_t hcap, int *port) {
  const char *colon;
  size_t hlen;
  const char *h = s;
  if (*s == '[') {
    const char *rb = strchr(s, ']');
    if (rb == NULL || rb[1] != ':')
      return UV_EINVAL;
    h = s + 1;
    hlen = (size_t)(rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
      return UV_EINVAL;
    hlen = (size_t)(colon - s);
  }
  if (hlen >= hcap)
    return UV_EINVAL;
  for (size_t i = 0; i < hlen; i++)
    if (h[i] == ' ' || h[i] == '/' || h[i] == '[' || h[i] == ']')
      return UV_EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  int64_t p;
  if (evs__text_int(colon + 1, &p) != 0 || p < 0 || p > 65535 || colon[1] == '+' || colon[1] == '-')
    return UV_EINVAL;
  *port = (int)p;
  return 0;
}

static int evs__p_addr(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                       char *err, size_t cap) {
  if (in->node && in->node->kind != EVS_NODE_STR)
    return evs__kind_err(in, "an address string ([host]:port)", err, cap);
  const char *s = in->node ? evs_node_text(in->node) : in->text;
  char host[256];
  int port;
  if (evs__split_addr(s, host, sizeof host, &port) != 0) {
    snprintf(err, cap, "invalid address '%s': expected [host]:port, e.g. :8080 or [::1]:8080", s);
    return UV_EINVAL;
  }
  if (evs__set_str(&cfg->server.host, host) != 0 || evs__set_str(FIELD(cfg, k, char *), s) != 0)
    return UV_ENOMEM;
  cfg->server.port = port;
  return 0;
}

static int evs__p_metric(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                         char *err, size_t cap) {
  if (in->node && in->node->kind != EVS_NODE_STR)
    return evs__kind_err(in, "cpu:N or memory:N", err, cap);
  const char *s = in->node ? evs_node_text(in->node) : in->text;
  int res = strncmp(s, "cpu:", 4) == 0      ? EVS_FALLBACK_CPU
            : strncmp(s, "memory:", 7) == 0 ? EVS_FALLBACK_MEMORY
                                            : -1;
  int64_t pct = 0;
  const char *num = res < 0 ? "" : strchr(s, ':') + 1;
  if (res < 0 || !(*num >= '0' && *num <= '9') || evs__text_int(num, &pct) != 0 || pct < 1 ||
      pct > 1000) {
    snprintf(err, cap, "invalid fallback metric '%s': expected cpu:N or memory:N, N in 1..1000", s);
    return UV_EINVAL;
  }
  if (evs__set_str(FIELD(cfg, k, char *), s) != 0)
    return UV_ENOMEM;
  cfg->circuit_breaker.fallback_resource = res;
  cfg->circuit_breaker.fallback_utilization = pct;
  return 0;
}

/* ---- dispatch ---- */

typedef int (*evs__parse_fn)(const evs_config__key_t *, evs_config_t *, const evs_config__in_t *,
                             char *, size_t);

static const evs__parse_fn evs__parsers[] = {
    [EVS_CONFIG__BOOL] = evs__p_bool,     [EVS_CONFIG__INT] = evs__p_int,
    [EVS_CONFIG__OPTINT] = evs__p_optint, [EVS_CONFIG__REAL] = evs__p_real,
    [EVS_CONFIG__DUR] = evs__p_dur,       [EVS_CONFIG__STR] = evs__p_str,
    [EVS_CONFIG__ENUM] = evs__p_enum,     [EVS_CONFIG__LIST] = evs__p_list,
    [EVS_CONFIG__SIZE] = evs__p_size,     [EVS_CONFIG__ADDR] = evs__p_addr,
    [EVS_CONFIG__METRIC] = evs__p_metric,
};

int evs_config__parse(const evs_config__key_t *k, evs_config_t *cfg, const evs_config__in_t *in,
                      char *err, size_t cap) {
  err[0] = '\0';
  int rc = evs__parsers[k->type](k, cfg, in, err, cap);
  if (rc == UV_ENOMEM)
    snprintf(err, cap, "out of memory");
  return rc;
}

void evs_config__free_value(const evs_config__key_t *k, evs_config_t *cfg) {
  switch (k->type) {
  case EVS_CONFIG__STR:
  case EVS_CONFIG__ADDR:
  case EVS_CONFIG__METRIC:
    free(*FIELD(cfg, k, char *));
    *FIELD(cfg, k, char *) = NULL;
    if (k->type == EVS_CONFIG__ADDR) {
      free(cfg->server.host);
      cfg->server.host = NULL;
    }
    break;
  case EVS_CONFIG__LIST:
    evs__list_free(FIELD(cfg, k, evs_strlist_t));
    break;
  default:
    break;
  }
}

int evs_config__equal(const evs_config__key_t *k, const evs_config_t *a, const evs_config_t *b) {
  switch (k->type) {
  case EVS_CONFIG__BOOL:
  case EVS_CONFIG__ENUM:
    return *CFIELD(a, k, int) == *CFIELD(b, k, int);
  case EVS_CONFIG__INT:
  case EVS_CONFIG__OPTINT:
    return *CFIELD(a, k, int64_t) == *CFIELD(b, k, int64_t);
  case EVS_CONFIG__REAL:
    return *CFIELD(a, k, double) == *CFIELD(b, k, double);
  case EVS_CONFIG__DUR:
  case EVS_CONFIG__SIZE:
    return *CFIELD(a, k, uint64_t) == *CFIELD(b, k, uint64_t);
  case EVS_CONFIG__LIST: {
    const evs_strlist_t *x = CFIELD(a, k, evs_strlist_t), *y = CFIELD(b, k, evs_strlist_t);
    if (x->n != y->n)
      return 0;
    for (size_t i = 0; i < x->n; i++)
      if (strcmp(x->items[i], y->items[i]) != 0)
        return 0;
    return 1;
  }
  default:
    return strcmp(*CFIELD(a, k, char *const), *CFIELD(b, k, char *const)) == 0;
  }
}

int evs_config__copy(const evs_config__key_t *k, evs_config_t *dst, const evs_config_t *src) {
  char err[256];
  if (k->type == EVS_CONFIG__LIST) {
    evs_strlist_t l = {0};
    const evs_strlist_t *from = CFIELD(src, k, evs_strlist_t);
    for (size_t i = 0; i < from->n; i++) {
      if (evs__list_push(&l, from->items[i], strlen(from->items[i])) != 0) {
        evs__list_free(&l);
        return UV_ENOMEM;
      }
    }
    evs__list_free(FIELD(dst, k, evs_strlist_t));
    *FIELD(dst, k, evs_strlist_t) = l;
    return 0;
  }
  if (k->type == EVS_CONFIG__STR || k->type == EVS_CONFIG__ADDR || k->type == EVS_CONFIG__METRIC) {
    /* Re-parsing the text also restores the fields derived from it (host/port, resource). */
    evs_config__in_t in = {NULL, *CFIELD(src, k, char *const)};
    return evs_config__parse(k, dst, &in, err, sizeof err) == UV_ENOMEM ? UV_ENOMEM : 0;
  }
  memcpy((char *)dst + k->off, (const char *)src + k->off,
         k->type == EVS_CONFIG__BOOL || k->type == EVS_CONFIG__ENUM ? sizeof(int) : 8);
  return 0;
}
