/* The ScaledObject model: a compact, validated copy of a keda.sh/v1alpha1 ScaledObject.
 *
 * One validator serves both inputs: a YAML document (config file `scaled_objects`, `evscale
 * simulate`) and a JSON object from the Kubernetes API (evs_doc_from_jansson), both as evs_node_t
 * trees. Every problem is reported into an evs_diag_t at once, with "file:line:col" when the tree
 * has positions or "namespace/name: spec.triggers[1].metadata.listLength: ..." when it does not.
 *
 * Fields, defaults and checks come from kedacore/keda at commit
 * 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a: apis/keda/v1alpha1/scaledobject_types.go (fields,
 * kubebuilder defaults and Minimum markers, CheckReplicaCountBoundsAreValid, CheckFallbackValid,
 * annotation helpers), scaletriggers_types.go (ValidateTriggers), scaledobject_webhook.go
 * (verifyName, ValidateAndCompileScalingModifiers), withtriggers_types.go (pollingInterval 30),
 * pkg/scaling/executor/scale_executor.go (cooldown 300, initialCooldown 0) and, per trigger type,
 * pkg/scalers/{redis,prometheus,cron}_scaler.go parsed as pkg/scalers/scalersconfig/typed_config.go
 * does (trimmed; empty counts as absent; numbers decoded as JSON numbers into int64/float64).
 *
 * Memory: an object is one allocation (the struct, its triggers and strings: ~290 B with one
 * redis trigger) and references to the strings it shares with other objects; see evs_so_t.
 * Nothing here does I/O. */
#ifndef EVSCALE_SCALEDOBJECT_H
#define EVSCALE_SCALEDOBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "evscale/diag.h"
#include "evscale/node.h"
#include "evscale/scaler.h"

/* Trigger types evscale implements; anything else is a validation error naming `type`. */
typedef enum { EVS_TRIG_REDIS = 1, EVS_TRIG_PROMETHEUS, EVS_TRIG_CRON } evs_trigger_kind_t;

/* autoscaling/v2 MetricTargetType; Utilization is rejected for external metrics (KEDA's
 * GetMetricTargetType). */
typedef enum { EVS_METRIC_AVERAGE_VALUE = 0, EVS_METRIC_VALUE = 1 } evs_so_metric_type_t;

typedef enum {
  EVS_FALLBACK_STATIC = 0, /* kubebuilder default */
  EVS_FALLBACK_CURRENT_REPLICAS,
  EVS_FALLBACK_CURRENT_REPLICAS_IF_HIGHER,
  EVS_FALLBACK_CURRENT_REPLICAS_IF_LOWER,
  EVS_FALLBACK_SCALING_MODIFIERS
} evs_fallback_behavior_t;

/* HPA behavior (autoscaling/v2 HPAScalingRules). */
typedef enum { EVS_SELECT_MAX = 0, EVS_SELECT_MIN, EVS_SELECT_DISABLED } evs_select_policy_t;
typedef enum { EVS_POLICY_PODS = 0, EVS_POLICY_PERCENT } evs_policy_type_t;

/* The HPA API allows any number of policies; real objects use one to three. More than this is
 * a validation error rather than a silent cut. */
#define EVS_BEHAVIOR_MAX_POLICIES 4

typedef struct {
  int32_t value;    /* > 0 */
  int32_t period_s; /* 1..1800 */
  uint8_t type;     /* evs_policy_type_t */
} evs_hpa_policy_t;

typedef struct {
  int32_t window_s;   /* stabilizationWindowSeconds 0..3600; -1 = unset (up: 0, down: 300) */
  uint8_t select;     /* evs_select_policy_t */
  uint8_t n_policies; /* 0 = unset: the HPA's defaults apply (see behavior.h) */
  evs_hpa_policy_t policies[EVS_BEHAVIOR_MAX_POLICIES];
  /* tolerance (KEP-4951, per direction; a Quantity such as "0.05" or "50m"); < 0 = unset, the
   * engine then uses engine.tolerance. Only parsed specs set it to -1: zero-initialised rules
   * mean 0. */
  double tolerance;
} evs_scaling_rules_t;

/* advanced.horizontalPodAutoscalerConfig.behavior. When absent (present == 0) the engine uses the
 * HPA's documented defaults for a behavior with empty rules (pkg/apis/autoscaling/v2/defaults.go):
 * scale-up window 0, max(4 pods, 100 %) per 15 s; scale-down window 300 s, 100 % per 15 s. */
typedef struct {
  uint8_t present;
  evs_scaling_rules_t up, down;
} evs_behavior_t;

typedef struct {
  const char *name;           /* triggers[].name, or NULL */
  const char *auth_name;      /* authenticationRef.name, or NULL */
  const char *metric_name;    /* KEDA's external metric name, "s0-redis-jobs" (metricname.h) */
  evs_kvs_t metadata;         /* triggers[].metadata as written (values untrimmed) */
  double target;              /* listLength / threshold / 1 (cron) */
  double activation_target;   /* activationListLength / activationThreshold / 0 */
  uint8_t kind;               /* evs_trigger_kind_t */
  uint8_t metric_type;        /* evs_so_metric_type_t (default AverageValue) */
  uint8_t use_cached_metrics; /* accepted for redis/prometheus; rejected for cron (as KEDA) */
  uint8_t auth_cluster;       /* authenticationRef.kind == ClusterTriggerAuthentication */
  /* Private to the model: bit k set when metadata value k (k < 16) is a reference to the
   * process's shared copy (an address, the same in thousands of objects) rather than in the
   * object's block. In the struct's tail padding. */
  uint16_t shared_kv;
} evs_trigger_t;

/* "redis", "prometheus" or "cron" (static): the trigger's type (not stored, 8 B an object). */
const char *evs_trigger_type(const evs_trigger_t *t);

/* What an object without advanced.horizontalPodAutoscalerConfig.behavior points to: present 0,
 * both windows unset (-1). */
extern const evs_behavior_t EVS_SO_NO_BEHAVIOR;

/* advanced.scalingModifiers, out of line as few objects have them (issue 13). */
typedef struct {
  const char *formula;    /* as written */
  void *formula_compiled; /* evs_formula_t *, owned by the object; NULL when no formula */
  double target;
  double activation_target;
} evs_so_modifiers_t;

/* What an object without scalingModifiers points to: no formula, targets 0. */
extern const evs_so_modifiers_t EVS_SO_NO_MODIFIERS;

/* One parsed object is one allocation (issue 13: ~2 KB per ScaledObject at 50,000): the struct,
 * its behavior, triggers, metadata arrays and strings, packed. Strings are shared where they can
 * be: a string that ends another one points into it (the name into "keda-hpa-<name>", a
 * listName into "s0-redis-<listName>"), and the defaults, trigger types and the metadata keys
 * the scalers read point to static strings. The strings that are the same in thousands of
 * objects (the namespace, a target's apiVersion and kind other than the usual ones, a
 * trigger's address, addresses, host, hosts and serverAddress) are one refcounted copy for the
 * process, held by every object that has them and released by evs_so_free. Readers compare strings
 * with strcmp, never by address. Fields are ordered by size so that the struct has no padding to
 * speak of. */
typedef struct {
  const char *namespace_; /* "" when the input had none */
  const char *name;

  /* scaleTargetRef */
  const char *target_api_version; /* default "apps/v1" */
  const char *target_kind;        /* default "Deployment" */
  const char *target_name;
  const char *env_source_container; /* NULL = containers[0] */

  const char *hpa_name; /* advanced.horizontalPodAutoscalerConfig.name or "keda-hpa-<name>" */
  /* Never NULL: the object's behavior, or EVS_SO_NO_BEHAVIOR (present 0) when it has none, as
   * most have; kept out of line since it is ~130 B (issue 13: ~2 KB per ScaledObject). */
  const evs_behavior_t *behavior;

  /* Never NULL: advanced.scalingModifiers, or EVS_SO_NO_MODIFIERS (has_modifiers below). */
  const evs_so_modifiers_t *modifiers;

  evs_trigger_t *triggers;
  size_t n_triggers;

  /* -1 means "not set in the object": use the accessors below, which apply the defaults. */
  int32_t polling_interval_s;
  int32_t cooldown_period_s;
  int32_t initial_cooldown_period_s;
  int32_t idle_replicas;
  int32_t min_replicas;
  int32_t max_replicas;

  int32_t fallback_failure_threshold;
  int32_t fallback_replicas;
  /* Annotations, decoded as KEDA's helpers do (scaledobject_types.go getBoolAnnotation: absent =
   * false, unparsable = true). paused_replicas is -1 when the annotation is absent. */
  int32_t paused_replicas;
  uint8_t paused;
  uint8_t paused_scale_in;
  uint8_t paused_scale_out;
  uint8_t force_activation;

  uint8_t has_fallback;
  uint8_t fallback_behavior; /* evs_fallback_behavior_t */
  uint8_t restore_to_original;
  /* advanced.scalingModifiers; has_modifiers when any of its fields is set (KEDA's
   * IsUsingModifiers). */
  uint8_t has_modifiers;
  uint8_t modifiers_metric_type; /* evs_so_metric_type_t */
  /* Private to the model: 1 when an open-addressing index of the triggers' names follows the
   * triggers array (objects with more than a few triggers; below that a scan is as fast), so
   * that the duplicate-name check and evs_so_trigger_index stay constant-time however many
   * triggers an object has. */
  uint8_t name_indexed;
  /* Private to the model: which of namespace_, target_api_version and target_kind are
   * references to the process's shared copies (bits 1, 2, 4; see the memory note above). */
  uint8_t shared;
} evs_so_t;

/* Where an object comes from decides what an unknown field is (src/scale/so_fields.c has the
 * schema: KEDA v2.20.2's CRD plus ObjectMeta).
 *  - EVS_SO_FILE: a file (config `scaled_objects`, `simulate`, `check-config`). An unknown
 *    field anywhere in the schema is an error with its position and a did-you-mean, as
 *    `kubectl apply` with strict field validation refuses it: a misspelt field silently ignored
 *    would run the object with a default.
 *  - EVS_SO_API: an object read from the Kubernetes API. The server has already accepted it
 *    under the CRD installed there, which may be newer than evscale's, so an unknown field is a
 *    warning (never a refusal, never Ready=False) and the rest of the object is used. */
typedef enum { EVS_SO_FILE = 0, EVS_SO_API = 1 } evs_so_mode_t;

/* Parses and validates one ScaledObject from a document node (a map with apiVersion, kind,
 * metadata {name, namespace, annotations}, spec, and an ignored status). `source` names the
 * input for diagnostics: the file name for YAML (entries then carry line:col) or NULL, in which
 * case "namespace/name" is used (API objects, positions 0). On success *out is new (free with
 * evs_so_free). On any error returns EVS_EINVALCFG, *out is NULL, and every problem found is
 * added to diag, in the order of the input (line, then column). Warnings (EVS_SO_API's unknown
 * fields) go to `warnings`, which may be NULL, whether or not the object is valid. */
int evs_so_parse_mode(const evs_node_t *root, const char *source, evs_so_mode_t mode,
                      evs_so_t **out, evs_diag_t *diag, evs_diag_t *warnings);

/* evs_so_parse_mode in EVS_SO_FILE mode. */
int evs_so_parse(const evs_node_t *root, const char *source, evs_so_t **out, evs_diag_t *diag);

/* Convenience: parses YAML text (one document) and then evs_so_parse. */
int evs_so_parse_yaml(const char *buf, size_t len, const char *file, evs_so_t **out,
                      evs_diag_t *diag);

void evs_so_free(evs_so_t *so);

/* Effective values with KEDA's defaults. `dflt_*` are the config-level defaults
 * (defaults.polling_interval / defaults.cooldown_period; pass <= 0 for KEDA's 30 / 300). */
int32_t evs_so_polling_interval_s(const evs_so_t *so, int32_t dflt_polling_s);
int32_t evs_so_cooldown_s(const evs_so_t *so, int32_t dflt_cooldown_s);
int32_t evs_so_initial_cooldown_s(const evs_so_t *so);
int32_t evs_so_min(const evs_so_t *so); /* minReplicaCount, default 0 */
int32_t evs_so_max(const evs_so_t *so); /* maxReplicaCount, default 100 */
/* Paused as KEDA's NeedToBePausedByAnnotation: paused-replicas present, or paused true. */
int evs_so_is_paused(const evs_so_t *so);

/* Index of the trigger named `name`, or -1. A scan up to 8 triggers, a hash lookup above. */
int evs_so_trigger_index(const evs_so_t *so, const char *name);

/* "namespace/name" (for diagnostics and logs) into buf, cut to cap - 1 bytes; returns buf. Not
 * stored: the object is kept for its lifetime, the name is wanted when a scaler starts. */
#define EVS_SO_SOURCE_MAX 300
const char *evs_so_source(const evs_so_t *so, char *buf, size_t cap);

/* The scaler configuration for trigger i (everything borrowed from so, `object` from
 * source_buf, which the caller keeps as long as cfg: EVS_SO_SOURCE_MAX bytes); auth_params and
 * resolved_env are left empty for the caller to fill. */
void evs_so_scaler_config(const evs_so_t *so, size_t i, evs_scaler_config_t *cfg,
                          char source_buf[EVS_SO_SOURCE_MAX]);

/* Replica count to write when the ScaledObject is deleted (KEDA's finalizer,
 * controllers/keda/scaledobject_finalizer.go): with advanced.restoreToOriginalReplicaCount and a
 * known original count (status.originalReplicaCount, >= 0), that count; otherwise -1, meaning
 * "leave the target as it is". */
int32_t evs_so_deletion_replicas(const evs_so_t *so, int32_t original_replicas);

#endif
