/* The ScaledObject model and validator: defaults, every validation error with its position or
 * path, YAML and JSON input, KEDA's metric names.
 *
 * Expected messages and defaults come from kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a:
 * apis/keda/v1alpha1/scaledobject_types.go (CheckReplicaCountBoundsAreValid, CRD CEL rule,
 * getBoolAnnotation), scaletriggers_types.go (ValidateTriggers), scaledobject_webhook.go
 * (ValidateAndCompileScalingModifiers, verifyName), pkg/scalers/{redis,prometheus,cron}_scaler.go
 * and their _test.go metric-name tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evscale/app.h"
#include "evscale/config.h"
#include "evscale/error.h"
#include "evscale/metricname.h"
#include "evscale/scaledobject.h"
#include "evscale/tz.h"
#include "evscale/param.h"
#include "scale/so_check.h"
#include "test_data.h"

static void dump(const evs_diag_t *d) {
  char buf[512];
  for (size_t i = 0; i < d->n; i++) {
    evs_diag_format(d, i, buf, sizeof buf);
    print_message("  diag: %s\n", buf);
  }
}

static evs_so_t *parse_ok(const char *src) {
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  int rc = evs_so_parse_yaml(src, strlen(src), "so.yaml", &so, &d);
  if (rc != 0)
    dump(&d);
  assert_int_equal(rc, 0);
  assert_int_equal(d.n, 0);
  assert_non_null(so);
  evs_diag_free(&d);
  return so;
}

/* Parses src expecting failure; returns the diagnostics (caller frees). */
static void parse_bad(const char *src, evs_diag_t *d) {
  evs_so_t *so = NULL;
  evs_diag_init(d);
  int rc = evs_so_parse_yaml(src, strlen(src), "so.yaml", &so, d);
  assert_int_equal(rc, EVS_EINVALCFG);
  assert_null(so);
  assert_true(d->n > 0);
}

/* Asserts that one entry has this path, position and message part. */
static void expect(const evs_diag_t *d, const char *path, uint32_t line, uint32_t col,
                   const char *msg_part) {
  for (size_t i = 0; i < d->n; i++) {
    const evs_diag_entry_t *e = &d->items[i];
    if (e->path && strcmp(e->path, path) == 0 && strstr(e->msg, msg_part) && e->line == line &&
        e->col == col)
      return;
  }
  print_error("no diag %u:%u %s: ...%s...\n", line, col, path, msg_part);
  dump(d);
  fail();
}

#define HEAD                                                                                       \
  "apiVersion: keda.sh/v1alpha1\n"                                                                 \
  "kind: ScaledObject\n"                                                                           \
  "metadata:\n"                                                                                    \
  "  name: worker\n"                                                                               \
  "  namespace: jobs\n"

static void defaults_minimal_redis(void **state) {
  (void)state;
  evs_so_t *so = parse_ok(HEAD "spec:\n"
                               "  scaleTargetRef:\n"
                               "    name: worker\n"
                               "  triggers:\n"
                               "  - type: redis\n"
                               "    metadata:\n"
                               "      address: redis:6379\n"
                               "      listName: jobs\n");
  char source[EVS_SO_SOURCE_MAX];
  assert_string_equal(evs_so_source(so, source, sizeof source), "jobs/worker");
  assert_string_equal(so->target_kind, "Deployment");
  assert_string_equal(so->target_api_version, "apps/v1");
  assert_string_equal(so->hpa_name, "keda-hpa-worker");
  assert_int_equal(evs_so_polling_interval_s(so, 0), 30);
  assert_int_equal(evs_so_polling_interval_s(so, 5), 5); /* config default, object silent */
  assert_int_equal(evs_so_cooldown_s(so, 0), 300);
  assert_int_equal(evs_so_initial_cooldown_s(so), 0);
  assert_int_equal(evs_so_min(so), 0);
  assert_int_equal(evs_so_max(so), 100);
  assert_int_equal(so->idle_replicas, -1);
  assert_int_equal(so->has_fallback, 0);
  assert_int_equal(so->behavior->present, 0);
  assert_int_equal(so->paused_replicas, -1);
  assert_int_equal(so->n_triggers, 1);
  assert_int_equal(so->triggers[0].kind, EVS_TRIG_REDIS);
  assert_int_equal(so->triggers[0].metric_type, EVS_METRIC_AVERAGE_VALUE);
  assert_true(so->triggers[0].target == 5);            /* listLength default=5 */
  assert_true(so->triggers[0].activation_target == 0); /* activationListLength optional */
  assert_string_equal(so->triggers[0].metric_name, "s0-redis-jobs");
  assert_null(so->triggers[0].name);
  assert_string_equal(evs_kvs_get(&so->triggers[0].metadata, "listName"), "jobs");
  evs_so_free(so);
}

static void full_object(void **state) {
  (void)state;
  evs_so_t *so = parse_ok(
      HEAD "  annotations:\n"
           "    autoscaling.keda.sh/paused-replicas: \"3\"\n"
           "    autoscaling.keda.sh/paused-scale-in: \"yes\"\n"
           "    autoscaling.keda.sh/force-activation: \"false\"\n"
           "spec:\n"
           "  scaleTargetRef: {name: api, kind: StatefulSet, apiVersion: apps/v1,\n"
           "                   envSourceContainerName: main}\n"
           "  pollingInterval: 5\n"
           "  cooldownPeriod: 60\n"
           "  initialCooldownPeriod: 120\n"
           "  idleReplicaCount: 0\n"
           "  minReplicaCount: 2\n"
           "  maxReplicaCount: 15\n"
           "  fallback: {failureThreshold: 3, replicas: 10, behavior: currentReplicasIfHigher}\n"
           "  advanced:\n"
           "    restoreToOriginalReplicaCount: true\n"
           "    horizontalPodAutoscalerConfig:\n"
           "      name: my-hpa\n"
           "      behavior:\n"
           "        scaleDown:\n"
           "          stabilizationWindowSeconds: 30\n"
           "          policies: [{type: Percent, value: 20, periodSeconds: 60}]\n"
           "        scaleUp:\n"
           "          selectPolicy: Min\n"
           "    scalingModifiers:\n"
           "      formula: \"q + p\"\n"
           "      target: \"4\"\n"
           "      activationTarget: \"1.5\"\n"
           "      metricType: Value\n"
           "  triggers:\n"
           "  - type: redis\n"
           "    name: q\n"
           "    useCachedMetrics: true\n"
           "    authenticationRef: {name: redis-auth, kind: ClusterTriggerAuthentication}\n"
           "    metadata: {listName: a/b.c, listLength: \" 20 \", activationListLength: \"2\"}\n"
           "  - type: prometheus\n"
           "    name: p\n"
           "    metricType: Value\n"
           "    metadata: {serverAddress: \"http://prom:9090\", query: up, threshold: \"2.5\",\n"
           "               activationThreshold: \"-1e1\"}\n"
           "  - type: cron\n"
           "    metadata: {timezone: Etc/UTC, start: \"0 */2 * * *\", end: \"0 1-23/2 * * *\",\n"
           "               desiredReplicas: \"10\"}\n");
  assert_string_equal(so->target_kind, "StatefulSet");
  assert_string_equal(so->env_source_container, "main");
  assert_int_equal(so->polling_interval_s, 5);
  assert_int_equal(evs_so_cooldown_s(so, 300), 60); /* the object's own value wins */
  assert_int_equal(evs_so_initial_cooldown_s(so), 120);
  assert_int_equal(so->idle_replicas, 0);
  assert_int_equal(evs_so_min(so), 2);
  assert_int_equal(evs_so_max(so), 15);
  assert_int_equal(so->fallback_failure_threshold, 3);
  assert_int_equal(so->fallback_replicas, 10);
  assert_int_equal(so->fallback_behavior, EVS_FALLBACK_CURRENT_REPLICAS_IF_HIGHER);
  assert_int_equal(so->restore_to_original, 1);
  assert_string_equal(so->hpa_name, "my-hpa");
  assert_int_equal(so->behavior->present, 1);
  assert_int_equal(so->behavior->down.window_s, 30);
  assert_int_equal(so->behavior->down.n_policies, 1);
  assert_int_equal(so->behavior->down.policies[0].type, EVS_POLICY_PERCENT);
  assert_int_equal(so->behavior->down.policies[0].value, 20);
  assert_int_equal(so->behavior->down.policies[0].period_s, 60);
  assert_int_equal(so->behavior->up.select, EVS_SELECT_MIN);
  assert_int_equal(so->behavior->up.window_s, -1);
  assert_int_equal(so->behavior->up.n_policies, 0);
  assert_int_equal(so->has_modifiers, 1);
  assert_non_null(so->modifiers->formula_compiled);
  assert_true(so->modifiers->target == 4);
  assert_true(so->modifiers->activation_target == 1.5);
  assert_int_equal(so->modifiers_metric_type, EVS_METRIC_VALUE);
  /* Annotations: paused-replicas ParseInt; an unparsable bool annotation counts as true. */
  assert_int_equal(so->paused_replicas, 3);
  assert_int_equal(so->paused_scale_in, 1);
  assert_int_equal(so->force_activation, 0);
  assert_true(evs_so_is_paused(so));
  assert_int_equal(so->triggers[0].use_cached_metrics, 1);
  assert_int_equal(so->triggers[0].auth_cluster, 1);
  assert_string_equal(so->triggers[0].auth_name, "redis-auth");
  assert_true(so->triggers[0].target == 20); /* values are trimmed */
  assert_true(so->triggers[0].activation_target == 2);
  assert_string_equal(so->triggers[0].metric_name, "s0-redis-a-b-c"); /* NormalizeString */
  assert_int_equal(so->triggers[1].metric_type, EVS_METRIC_VALUE);
  assert_true(so->triggers[1].target == 2.5);
  assert_true(so->triggers[1].activation_target == -10);
  assert_string_equal(so->triggers[1].metric_name, "s1-prometheus");
  assert_true(so->triggers[2].target == 1);
  assert_string_equal(so->triggers[2].metric_name, "s2-cron-Etc-UTC-0xSl2xxx-01-23Sl2xxx");
  assert_int_equal(evs_so_trigger_index(so, "p"), 1);
  assert_int_equal(evs_so_trigger_index(so, "nope"), -1);
  /* restoreToOriginalReplicaCount: the finalizer writes the original count back. */
  assert_int_equal(evs_so_deletion_replicas(so, 7), 7);
  assert_int_equal(evs_so_deletion_replicas(so, -1), -1);
  evs_scaler_config_t cfg;
  char source[EVS_SO_SOURCE_MAX];
  evs_so_scaler_config(so, 1, &cfg, source);
  assert_string_equal(cfg.type, "prometheus");
  assert_int_equal(cfg.index, 1);
  assert_int_equal(cfg.metric_type_value, 1);
  assert_string_equal(cfg.object, "jobs/worker");
  evs_so_free(so);
}

static void deletion_without_restore(void **state) {
  (void)state;
  evs_so_t *so = parse_ok(HEAD "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n"
                               "  - {type: redis, metadata: {listName: l}}\n");
  assert_int_equal(evs_so_deletion_replicas(so, 7), -1);
  evs_so_free(so);
}

/* Each error names its field and position (line:col of the offending node, 1-based). */
static void error_positions(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad(HEAD "spec:\n"                                        /* 6 */
                 "  scaleTargetRef: {name: w}\n"                  /* 7 */
                 "  minReplicaCount: 5\n"                         /* 8 */
                 "  maxReplicaCount: 3\n"                         /* 9 */
                 "  triggers:\n"                                  /* 10 */
                 "  - type: kafka\n"                              /* 11 */
                 "    metadata: {topic: t}\n"                     /* 12 */
                 "  - type: redis\n"                              /* 13 */
                 "    name: a\n"                                  /* 14 */
                 "    metadata: {listName: l, listLength: abc}\n" /* 15 */
                 "  - type: cron\n"                               /* 16 */
                 "    name: a\n"                                  /* 17 */
                 "    useCachedMetrics: true\n"                   /* 18 */
                 "    metadata:\n"                                /* 19 */
                 "      timezone: UTC\n"                          /* 20 */
                 "      start: \"0 8 * * *\"\n"                   /* 21 */
                 "      end: \" 0 8 * * * \"\n"                   /* 22 */
                 "      desiredReplicas: \"0\"\n",                /* 23 */
            &d);
  expect(&d, "spec.minReplicaCount", 8, 20,
         "minReplicaCount must be less than or equal to maxReplicaCount");
  expect(&d, "spec.triggers[0].type", 11, 11, "unsupported trigger type \"kafka\"");
  expect(&d, "spec.triggers[1].metadata.listLength", 15, 41,
         "unable to set param \"listLength\" value \"abc\"");
  expect(&d, "spec.triggers[2].name", 17, 11, "triggerName \"a\" is defined multiple times");
  expect(&d, "spec.triggers[2].useCachedMetrics", 18, 23,
         "property \"useCachedMetrics\" is not supported for \"cron\" scaler");
  expect(&d, "spec.triggers[2].metadata.end", 22, 12,
         "start and end can not have exactly same time input");
  expect(&d, "spec.triggers[2].metadata.desiredReplicas", 23, 24, "no desiredReplicas specified");
  assert_int_equal(d.n, 7); /* every error at once, nothing else */
  evs_diag_free(&d);
}

/* Cron schedules go through the scaler's own parser and zone check (the zone index is loaded from
 * the test copies of the tz database), so check-config refuses what creation would. */
static void error_cron_schedules_and_zones(void **state) {
  (void)state;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/zoneinfo", evs_test_data());
  assert_int_equal(evs_tz_index_load(dir), 0);
  evs_diag_t d;
  parse_bad(HEAD "spec:\n"                                         /* 6 */
                 "  scaleTargetRef: {name: w}\n"                   /* 7 */
                 "  triggers:\n"                                   /* 8 */
                 "  - type: cron\n"                                /* 9 */
                 "    metadata:\n"                                 /* 10 */
                 "      timezone: Mars/Olympus_Mons\n"             /* 11 */
                 "      start: \"0 8 * *\"\n"                      /* 12 */
                 "      end: \"TZ=Atlantis/Capital 0 18 * * *\"\n" /* 13 */
                 "      desiredReplicas: \"3\"\n",                 /* 14 */
            &d);
  expect(&d, "spec.triggers[0].metadata.start", 12, 14,
         "error parsing start schedule '0 8 * *': expected exactly 5 fields, found 4");
  expect(&d, "spec.triggers[0].metadata.end", 13, 12, "unknown time zone 'Atlantis/Capital'");
  expect(&d, "spec.triggers[0].metadata.timezone", 11, 17, "unknown time zone 'Mars/Olympus_Mons'");
  assert_int_equal(d.n, 3);
  evs_diag_free(&d);
  /* A known zone and good schedules pass. */
  evs_so_t *so = NULL;
  const char *ok = HEAD "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n  - type: cron\n"
                        "    metadata: {timezone: Europe/Berlin, start: \"0 8 * * mon-fri\", "
                        "end: \"0 18 * * mon-fri\", desiredReplicas: \"3\"}\n";
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse_yaml(ok, strlen(ok), "ok.yaml", &so, &d), 0);
  evs_so_free(so);
  evs_diag_free(&d);
  evs_tz_index_free();
}

static void error_replica_bounds(void **state) {
  (void)state;
  evs_diag_t d;
  /* minReplicaCount unset -> CheckReplicaCountBoundsAreValid compares idle with 0. */
  parse_bad(HEAD "spec:\n  scaleTargetRef: {name: w}\n  idleReplicaCount: 0\n  triggers:\n"
                 "  - {type: redis, metadata: {listName: l}}\n",
            &d);
  expect(&d, "spec.idleReplicaCount", 8, 21,
         "IdleReplicaCount=0 must be less than MinReplicaCount=0");
  evs_diag_free(&d);
  /* idle 3 with min 3: not less. */
  parse_bad(HEAD "spec:\n  scaleTargetRef: {name: w}\n  idleReplicaCount: 3\n"
                 "  minReplicaCount: 3\n  triggers:\n"
                 "  - {type: redis, metadata: {listName: l}}\n",
            &d);
  expect(&d, "spec.idleReplicaCount", 8, 21,
         "IdleReplicaCount=3 must be less than MinReplicaCount=3");
  evs_diag_free(&d);
  /* CRD minimums: pollingInterval >= 1, maxReplicaCount >= 1, cooldownPeriod >= 0. */
  parse_bad(HEAD "spec:\n  scaleTargetRef: {name: w}\n  pollingInterval: 0\n"
                 "  maxReplicaCount: 0\n  cooldownPeriod: -1\n  triggers:\n"
                 "  - {type: redis, metadata: {listName: l}}\n",
            &d);
  expect(&d, "spec.pollingInterval", 8, 20, "out of range");
  expect(&d, "spec.maxReplicaCount", 9, 20, "out of range");
  expect(&d, "spec.cooldownPeriod", 10, 19, "out of range");
  evs_diag_free(&d);
}

static void error_required_fields(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad("apiVersion: keda.sh/v1\nkind: ScaledObject\nmetadata: {namespace: x}\nspec: {}\n", &d);
  expect(&d, "apiVersion", 1, 13, "must be \"keda.sh/v1alpha1\"");
  expect(&d, "metadata.name", 3, 11, "required field is missing");
  expect(&d, "spec.scaleTargetRef", 4, 7, "required field is missing");
  expect(&d, "spec.triggers", 4, 7, "no triggers defined in the ScaledObject/ScaledJob");
  evs_diag_free(&d);
  parse_bad(HEAD "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n"
                 "  - type: prometheus\n"
                 "    metadata:\n"
                 "      serverAddress: http://p\n"
                 "      query: up\n"
                 "      threshold: \"  \"\n"
                 "      unsafeSsl: maybe\n"
                 "  - type: redis\n"
                 "    metadata: {listLength: 5}\n",
            &d);
  /* An empty (after trimming) value counts as absent (typed_config.go configParamValue). */
  expect(&d, "spec.triggers[0].metadata.threshold", 13, 18,
         "missing required parameter \"threshold\" in [triggerMetadata]");
  expect(&d, "spec.triggers[0].metadata.unsafeSsl", 14, 18, "unable to parse boolean value");
  expect(&d, "spec.triggers[1].metadata.listLength", 16, 28, "must be a string, not integer");
  expect(&d, "spec.triggers[1].metadata.listName", 16, 15,
         "missing required parameter \"listName\" in [triggerMetadata]");
  evs_diag_free(&d);
}

/* KEDA parses listLength "0", but the HPA it then creates rejects a zero target; evscale has no
 * HPA to refuse it, so the validator does (milli precision: 0.0004 is zero too). */
static void error_zero_target(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad(HEAD "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n"
                 "  - {type: redis, metadata: {listName: l, listLength: \"0\"}}\n"
                 "  - {type: prometheus, metadata: {serverAddress: s, query: q, threshold: "
                 "\"0.0004\"}}\n",
            &d);
  expect(&d, "spec.triggers[0].metadata.listLength", 9, 55, "must be at least 0.001");
  expect(&d, "spec.triggers[1].metadata.threshold", 10, 74, "must be at least 0.001");
  evs_diag_free(&d);
}

static void error_fallback_and_modifiers(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad(HEAD "spec:\n"
                 "  scaleTargetRef: {name: w}\n"
                 "  fallback: {replicas: 2, behavior: sometimes}\n"
                 "  advanced:\n"
                 "    scalingModifiers: {formula: \"a + zz\"}\n"
                 "  triggers:\n"
                 "  - {type: redis, name: a, metadata: {listName: l}}\n",
            &d);
  expect(&d, "spec.fallback.failureThreshold", 8, 13, "required field is missing");
  expect(&d, "spec.fallback.behavior", 8, 37, "unsupported value \"sometimes\"");
  expect(&d, "spec.advanced.scalingModifiers.target", 10, 23,
         "formula is given but target is empty");
  expect(&d, "spec.advanced.scalingModifiers.formula", 10, 33, "unknown name zz");
  evs_diag_free(&d);
  parse_bad(HEAD "spec:\n"
                 "  scaleTargetRef: {name: w}\n"
                 "  fallback: {failureThreshold: 1, replicas: 2, behavior: scalingModifiers}\n"
                 "  advanced:\n"
                 "    scalingModifiers: {target: \"0\", metricType: Utilization}\n"
                 "  triggers:\n"
                 "  - {type: redis, name: a, metadata: {listName: l}}\n",
            &d);
  expect(&d, "spec.advanced.scalingModifiers.formula", 10, 23,
         "error ScalingModifiers.Formula is mandatory");
  expect(&d, "spec.advanced.scalingModifiers.target", 10, 32,
         "error converting target for scalingModifiers");
  expect(&d, "spec.advanced.scalingModifiers.metricType", 10, 49,
         "error trigger type is Utilization");
  expect(&d, "spec.fallback.behavior", 8, 58,
         "scalingModifiers fallback behavior requires scalingModifiers.formula to be defined");
  evs_diag_free(&d);
  parse_bad(HEAD "spec:\n  scaleTargetRef: {name: w}\n"
                 "  advanced:\n    scalingModifiers: {formula: \"a +\", target: \"2\"}\n"
                 "  triggers:\n  - {type: redis, name: a, metadata: {listName: l}}\n",
            &d);
  expect(&d, "spec.advanced.scalingModifiers.formula", 9, 33,
         "error validating formula in ScalingModifiers: column");
  evs_diag_free(&d);
}

static void error_behavior(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad(HEAD "spec:\n"
                 "  scaleTargetRef: {name: w}\n"
                 "  advanced:\n"
                 "    horizontalPodAutoscalerConfig:\n"
                 "      behavior:\n"
                 "        scaleUp:\n"
                 "          stabilizationWindowSeconds: 3601\n"
                 "          selectPolicy: Fastest\n"
                 "          policies:\n"
                 "          - {type: Pods, value: 0, periodSeconds: 1801}\n"
                 "          - {type: Replicas, value: 1, periodSeconds: 15}\n"
                 "        scaleDown:\n"
                 "          policies: []\n"
                 "  triggers:\n  - {type: redis, metadata: {listName: l}}\n",
            &d);
  const char *up = "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp";
  char p[160];
  snprintf(p, sizeof p, "%s.stabilizationWindowSeconds", up);
  expect(&d, p, 12, 39, "must be less than or equal to 3600");
  snprintf(p, sizeof p, "%s.selectPolicy", up);
  expect(&d, p, 13, 25, "unsupported value \"Fastest\"");
  snprintf(p, sizeof p, "%s.policies[0].value", up);
  expect(&d, p, 15, 33, "out of range");
  snprintf(p, sizeof p, "%s.policies[0].periodSeconds", up);
  expect(&d, p, 15, 51, "must be less than or equal to 1800");
  snprintf(p, sizeof p, "%s.policies[1].type", up);
  expect(&d, p, 16, 20, "unsupported value \"Replicas\"");
  expect(&d, "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies", 18, 21,
         "must specify at least one Policy");
  evs_diag_free(&d);
}

static void error_annotations_and_names(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n"
            "  name: a234567890123456789012345678901234567890123456789012345678901234\n"
            "  annotations:\n"
            "    autoscaling.keda.sh/paused-replicas: \"two\"\n"
            "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n"
            "  - {type: redis, metricType: Utilization, metadata: {listName: l}}\n",
            &d);
  expect(&d, "metadata.name", 4, 9, "is 64 characters long; must be no more than 63");
  expect(&d, "metadata.annotations.autoscaling.keda.sh/paused-replicas", 6, 42,
         "\"two\" is not a replica count");
  expect(&d, "spec.triggers[0].metricType", 10, 31,
         "'Utilization' metric type is unsupported for external metrics");
  evs_diag_free(&d);
}

/* The same validator fed by JSON from the API: no positions, "namespace/name" as the source. */
static void json_input(void **state) {
  (void)state;
  const char *txt = "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\","
                    "\"metadata\":{\"name\":\"w\",\"namespace\":\"prod\"},"
                    "\"spec\":{\"scaleTargetRef\":{\"name\":\"w\"},\"maxReplicaCount\":10,"
                    "\"triggers\":[{\"type\":\"prometheus\",\"metadata\":{\"serverAddress\":"
                    "\"http://p\",\"query\":\"q\",\"threshold\":\"1e400\"}}]}}";
  json_error_t jerr;
  json_t *j = json_loads(txt, 0, &jerr);
  assert_non_null(j);
  evs_doc_t *doc = NULL;
  assert_int_equal(evs_doc_from_jansson(j, NULL, &doc), 0);
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse(evs_doc_root(doc), NULL, &so, &d), EVS_EINVALCFG);
  /* 1e400 overflows float64: Go's json decoder refuses it. */
  expect(&d, "spec.triggers[0].metadata.threshold", 0, 0, "out of range for a float64");
  char buf[256];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_non_null(strstr(buf, "prod/w: spec.triggers[0].metadata.threshold: "));
  evs_diag_free(&d);
  evs_doc_free(doc);
  json_decref(j);
  /* And a valid one. */
  j = json_loads("{\"metadata\":{\"name\":\"w\",\"namespace\":\"prod\"},\"spec\":"
                 "{\"scaleTargetRef\":{\"name\":\"w\"},\"triggers\":[{\"type\":\"cron\","
                 "\"metadata\":{\"timezone\":\"Etc/UTC\",\"start\":\"0 0 * * Thu\","
                 "\"end\":\"59 23 * * Thu\",\"desiredReplicas\":\"10\"}}]}}",
                 0, &jerr);
  assert_int_equal(evs_doc_from_jansson(j, NULL, &doc), 0);
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse(evs_doc_root(doc), NULL, &so, &d), 0);
  char source[EVS_SO_SOURCE_MAX];
  assert_string_equal(evs_so_source(so, source, sizeof source), "prod/w");
  assert_string_equal(so->triggers[0].metric_name, "s0-cron-Etc-UTC-00xxThu-5923xxThu");
  evs_so_free(so);
  evs_diag_free(&d);
  evs_doc_free(doc);
  json_decref(j);
}

/* Table from kedacore/keda 8b4f083c pkg/scalers/{cron,redis,prometheus}_scaler_test.go
 * (cronMetricIdentifiers, redisMetricIdentifiers, prometheusMetricIdentifiers). */
static void metric_names(void **state) {
  (void)state;
  static const evs_kv_t cron1[] = {
      {"timezone", "Etc/UTC"}, {"start", "0 0 * * Thu"}, {"end", "59 23 * * Thu"}};
  static const evs_kv_t cron2[] = {
      {"timezone", "Etc/UTC"}, {"start", "0 */2 * * *"}, {"end", "0 1-23/2 * * *"}};
  static const evs_kv_t cron3[] = {
      {"timezone", "Etc/UTC"}, {"start", "0,30 * * * *"}, {"end", "15,45 * * * *"}};
  static const evs_kv_t redis[] = {{"listName", "mylist"}, {"listLength", "10"}};
  static const evs_kv_t odd[] = {{"listName", " a:b%c(d)e.f/g "}};
  struct {
    const char *type;
    size_t index;
    const evs_kv_t *kv;
    size_t n;
    const char *want;
  } cases[] = {
      {"cron", 0, cron1, 3, "s0-cron-Etc-UTC-00xxThu-5923xxThu"},
      {"cron", 1, cron2, 3, "s1-cron-Etc-UTC-0xSl2xxx-01-23Sl2xxx"},
      {"cron", 2, cron3, 3, "s2-cron-Etc-UTC-0Cm30xxxx-15Cm45xxxx"},
      {"redis", 0, redis, 2, "s0-redis-mylist"},
      {"redis", 1, redis, 2, "s1-redis-mylist"},
      {"prometheus", 0, NULL, 0, "s0-prometheus"},
      {"prometheus", 1, NULL, 0, "s1-prometheus"},
      /* NormalizeString: / . : % ( ) -> - (hand-worked). */
      {"redis", 12, odd, 1, "s12-redis-a-b-c-d-e-f-g"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[128];
    evs_kvs_t kvs = {cases[i].kv, cases[i].n};
    int n = evs_metricname_build(cases[i].type, cases[i].index, &kvs, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(cases[i].want));
    assert_string_equal(buf, cases[i].want);
  }
  char small[8];
  evs_kvs_t kvs = {redis, 2};
  assert_int_equal(evs_metricname_build("redis", 0, &kvs, small, sizeof small), UV_ENOBUFS);
  assert_int_equal(evs_metricname_build("kafka", 0, &kvs, small, sizeof small), UV_EINVAL);
}

/* Number decoding as KEDA's typed_config does it: json.Unmarshal into int64 / float64. */
static void keda_number_parsing(void **state) {
  (void)state;
  int64_t i;
  double f;
  int b;
  assert_int_equal(evs_param_json_int64("10", &i), 0);
  assert_int_equal(i, 10);
  assert_int_equal(evs_param_json_int64("-3", &i), 0);
  assert_int_equal(i, -3);
  assert_int_equal(evs_param_json_int64("5.0", &i), UV_EINVAL); /* a float into int64 */
  assert_int_equal(evs_param_json_int64("1e3", &i), UV_EINVAL);
  assert_int_equal(evs_param_json_int64("05", &i), UV_EINVAL); /* leading zero: not JSON */
  assert_int_equal(evs_param_json_int64("+5", &i), UV_EINVAL);
  assert_int_equal(evs_param_json_int64("0x10", &i), UV_EINVAL);
  assert_int_equal(evs_param_json_int64("9223372036854775808", &i), EVS_ERANGE); /* overflow */
  assert_int_equal(evs_param_json_float("2.5", &f), 0);
  assert_true(f == 2.5);
  assert_int_equal(evs_param_json_float("1e3", &f), 0);
  assert_true(f == 1000);
  assert_int_equal(evs_param_json_float(".5", &f), UV_EINVAL);
  assert_int_equal(evs_param_json_float("5.", &f), UV_EINVAL);
  assert_int_equal(evs_param_json_float("NaN", &f), UV_EINVAL);
  assert_int_equal(evs_param_json_float("1e400", &f), EVS_ERANGE);
  /* strconv.ParseFloat (scalingModifiers.target) is more lenient than JSON. */
  assert_int_equal(evs_param_go_float("+.5", &f), 0);
  assert_true(f == 0.5);
  assert_int_equal(evs_param_go_float(" 1", &f), UV_EINVAL);
  assert_int_equal(evs_param_go_float("", &f), UV_EINVAL);
  /* strconv.ParseBool. */
  assert_int_equal(evs_param_go_bool("T", &b), 0);
  assert_int_equal(b, 1);
  assert_int_equal(evs_param_go_bool("False", &b), 0);
  assert_int_equal(b, 0);
  assert_int_equal(evs_param_go_bool("yes", &b), UV_EINVAL);
  assert_int_equal(evs_param_go_bool("fALSE", &b), UV_EINVAL);
}

/* getBoolAnnotation: "false" is false, unparsable is true, absent is false. */
static void annotation_bools(void **state) {
  (void)state;
  evs_so_t *so = parse_ok(HEAD "  annotations:\n"
                               "    autoscaling.keda.sh/paused: \"false\"\n"
                               "    autoscaling.keda.sh/paused-scale-out: \"on\"\n"
                               "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n"
                               "  - {type: redis, metadata: {listName: l}}\n");
  assert_int_equal(so->paused, 0);
  assert_int_equal(so->paused_scale_out, 1);
  assert_int_equal(so->paused_scale_in, 0);
  assert_false(evs_so_is_paused(so));
  evs_so_free(so);
}

/* ---- unknown fields (src/scale/so_fields.c; KEDA v2.20.2 CRD + ObjectMeta) ---- */

/* Every level of the schema, each with a "#@TAG" comment where a case puts its line. As it is,
 * the template is valid: it also carries what a file may hold beyond the fields evscale uses
 * (ObjectMeta's system fields, free-form labels and trigger metadata, a status). */
static const char so_template[] = "apiVersion: keda.sh/v1alpha1\n"                  /* 1 */
                                  "kind: ScaledObject\n"                            /* 2 */
                                  "#@ROOT\n"                                        /* 3 */
                                  "metadata:\n"                                     /* 4 */
                                  "  name: worker\n"                                /* 5 */
                                  "  namespace: jobs\n"                             /* 6 */
                                  "  labels: {app: w, anyLabelKey: x}\n"            /* 7 */
                                  "  uid: 2b6a4c0e-1f6c-4f0e-9c55-7f0d1e0e0e0e\n"   /* 8 */
                                  "  resourceVersion: \"42\"\n"                     /* 9 */
                                  "  generation: 3\n"                               /* 10 */
                                  "  creationTimestamp: \"2026-01-01T00:00:00Z\"\n" /* 11 */
                                  "  finalizers: [finalizer.keda.sh]\n"             /* 12 */
                                  "  ownerReferences: []\n"                         /* 13 */
                                  "  managedFields: []\n"                           /* 14 */
                                  "  #@META\n"                                      /* 15 */
                                  "spec:\n"                                         /* 16 */
                                  "  #@SPEC\n"                                      /* 17 */
                                  "  scaleTargetRef:\n"                             /* 18 */
                                  "    name: worker\n"                              /* 19 */
                                  "    #@TARGET\n"                                  /* 20 */
                                  "  advanced:\n"                                   /* 21 */
                                  "    #@ADV\n"                                     /* 22 */
                                  "    horizontalPodAutoscalerConfig:\n"            /* 23 */
                                  "      #@HPA\n"                                   /* 24 */
                                  "      behavior:\n"                               /* 25 */
                                  "        #@BEH\n"                                 /* 26 */
                                  "        scaleUp:\n"                              /* 27 */
                                  "          #@RULES\n"                             /* 28 */
                                  "          policies:\n"                           /* 29 */
                                  "          - type: Pods\n"                        /* 30 */
                                  "            value: 4\n"                          /* 31 */
                                  "            periodSeconds: 15\n"                 /* 32 */
                                  "            #@POLICY\n"                          /* 33 */
                                  "    scalingModifiers:\n"                         /* 34 */
                                  "      formula: q\n"                              /* 35 */
                                  "      target: \"5\"\n"                           /* 36 */
                                  "      #@MOD\n"                                   /* 37 */
                                  "  fallback:\n"                                   /* 38 */
                                  "    failureThreshold: 3\n"                       /* 39 */
                                  "    replicas: 2\n"                               /* 40 */
                                  "    #@FALLBACK\n"                                /* 41 */
                                  "  triggers:\n"                                   /* 42 */
                                  "  - type: redis\n"                               /* 43 */
                                  "    name: q\n"                                   /* 44 */
                                  "    #@TRIGGER\n"                                 /* 45 */
                                  "    authenticationRef:\n"                        /* 46 */
                                  "      name: redis-auth\n"                        /* 47 */
                                  "      #@AUTH\n"                                  /* 48 */
                                  "    metadata:\n"                                 /* 49 */
                                  "      listName: jobs\n"                          /* 50 */
                                  "      aParameterNoScalerKnows: \"free-form\"\n"  /* 51 */
                                  "status:\n"                                       /* 52 */
                                  "  hpaName: keda-hpa-worker\n"                    /* 53 */
                                  "  anythingKedaWrites: {x: 1}\n";                 /* 54 */

/* The template with "#@tag" replaced by `line` (the other tags stay comments). */
static void so_with(const char *tag, const char *line, char *out, size_t cap) {
  char mark[32];
  snprintf(mark, sizeof mark, "#@%s\n", tag);
  const char *at = strstr(so_template, mark);
  assert_non_null(at);
  int n = snprintf(out, cap, "%.*s%s\n%s", (int)(at - so_template), so_template, line,
                   at + strlen(mark));
  assert_true(n > 0 && (size_t)n < cap);
}

static void unknown_field_template_is_valid(void **state) {
  (void)state;
  evs_so_t *so = parse_ok(so_template);
  assert_int_equal(so->max_replicas, -1);
  assert_int_equal(so->behavior->up.policies[0].value, 4);
  evs_so_free(so);
}

/* A misspelt field at each level of the schema is refused at its key's position, with the
 * nearest field of that level, and is the only error. */
static void unknown_field_every_level(void **state) {
  (void)state;
  static const struct {
    const char *tag, *line, *path;
    uint32_t line_no, col;
    const char *msg;
  } t[] = {
      {"ROOT", "kindd: ScaledObject", "kindd", 3, 1, "unknown field (did you mean 'kind'?)"},
      {"META", "namespce: jobs", "metadata.namespce", 15, 3,
       "unknown field (did you mean 'namespace'?)"},
      {"META", "annotation: {a: b}", "metadata.annotation", 15, 3,
       "unknown field (did you mean 'annotations'?)"},
      {"SPEC", "maxReplicaCont: 20", "spec.maxReplicaCont", 17, 3,
       "unknown field (did you mean 'maxReplicaCount'?)"},
      {"SPEC", "pollingInterva: 5", "spec.pollingInterva", 17, 3,
       "unknown field (did you mean 'pollingInterval'?)"},
      {"TARGET", "kinds: Deployment", "spec.scaleTargetRef.kinds", 20, 5,
       "unknown field (did you mean 'kind'?)"},
      {"ADV", "restoreToOrignalReplicaCount: true", "spec.advanced.restoreToOrignalReplicaCount",
       22, 5, "unknown field (did you mean 'restoreToOriginalReplicaCount'?)"},
      {"HPA", "nmae: my-hpa", "spec.advanced.horizontalPodAutoscalerConfig.nmae", 24, 7,
       "unknown field (did you mean 'name'?)"},
      {"BEH", "scaledown: {selectPolicy: Max}",
       "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaledown", 26, 9,
       "unknown field (did you mean 'scaleDown'?)"},
      {"RULES", "stabilisationWindowSeconds: 60",
       "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.stabilisationWindowSeconds",
       28, 11, "unknown field (did you mean 'stabilizationWindowSeconds'?)"},
      {"POLICY", "periodSecond: 15",
       "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.policies[0].periodSecond", 33,
       13, "unknown field (did you mean 'periodSeconds'?)"},
      {"MOD", "activationTargt: \"1\"", "spec.advanced.scalingModifiers.activationTargt", 37, 7,
       "unknown field (did you mean 'activationTarget'?)"},
      {"FALLBACK", "behaviour: static", "spec.fallback.behaviour", 41, 5,
       "unknown field (did you mean 'behavior'?)"},
      {"TRIGGER", "metricTyp: Value", "spec.triggers[0].metricTyp", 45, 5,
       "unknown field (did you mean 'metricType'?)"},
      {"TRIGGER", "useCachedMetric: true", "spec.triggers[0].useCachedMetric", 45, 5,
       "unknown field (did you mean 'useCachedMetrics'?)"},
      {"AUTH", "knd: ClusterTriggerAuthentication", "spec.triggers[0].authenticationRef.knd", 48, 7,
       "unknown field (did you mean 'kind'?)"},
      /* No near name at this level, but the exact name of another level. */
      {"ROOT", "maxReplicaCount: 20", "maxReplicaCount", 3, 1,
       "unknown field (it belongs at 'spec.maxReplicaCount')"},
      {"SPEC", "stabilizationWindowSeconds: 60", "spec.stabilizationWindowSeconds", 17, 3,
       "unknown field (it belongs at "
       "'spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown."
       "stabilizationWindowSeconds')"},
      /* Nothing like it anywhere. */
      {"SPEC", "replicasPerPod: 2", "spec.replicasPerPod", 17, 3, "unknown field"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char src[sizeof so_template + 128];
    evs_diag_t d;
    so_with(t[i].tag, t[i].line, src, sizeof src);
    parse_bad(src, &d);
    expect(&d, t[i].path, t[i].line_no, t[i].col, t[i].msg);
    if (d.n != 1) {
      print_error("case %zu (%s): %zu errors, want 1\n", i, t[i].line, d.n);
      dump(&d);
      fail();
    }
    evs_diag_free(&d);
  }
}

/* Several unknown fields: each reported, with the object's other errors, all in file order. */
static void unknown_fields_all_reported_in_file_order(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad(HEAD "  labelz: {a: b}\n"                           /* 6 */
                 "spec:\n"                                      /* 7 */
                 "  triggers:\n"                                /* 8 */
                 "  - type: redis\n"                            /* 9 */
                 "    metadata: {listName: l, listLength: x}\n" /* 10 */
                 "    typo: 1\n"                                /* 11 */
                 "  maxReplicaCount: 0\n"                       /* 12 */
                 "  scaleTargetRef: {name: w, nam: v}\n"        /* 13 */
                 "  minReplicaCont: 1\n",                       /* 14 */
            &d);
  expect(&d, "metadata.labelz", 6, 3, "unknown field (did you mean 'labels'?)");
  expect(&d, "spec.triggers[0].metadata.listLength", 10, 41, "must be an integer (int64)");
  expect(&d, "spec.triggers[0].typo", 11, 5, "unknown field (did you mean 'type'?)");
  expect(&d, "spec.maxReplicaCount", 12, 20, "out of range");
  expect(&d, "spec.scaleTargetRef.nam", 13, 29, "unknown field (did you mean 'name'?)");
  expect(&d, "spec.minReplicaCont", 14, 3, "unknown field (did you mean 'minReplicaCount'?)");
  assert_int_equal(d.n, 6);
  /* The validator checks maxReplicaCount before the triggers and the unknown fields before
   * both; the user reads the file from the top. */
  for (size_t i = 1; i < d.n; i++)
    if (d.items[i].line < d.items[i - 1].line ||
        (d.items[i].line == d.items[i - 1].line && d.items[i].col < d.items[i - 1].col)) {
      dump(&d);
      fail_msg("entry %zu (line %u) printed after line %u", i, d.items[i].line,
               d.items[i - 1].line);
    }
  evs_diag_free(&d);
}

/* The YAML reader reports a complex key when its mapping closes, after what it found inside it;
 * the file's errors still print top to bottom (input found by fuzz_scaledobject). */
static void yaml_errors_in_file_order(void **state) {
  (void)state;
  const char *src = "*ef:\n  ? na*e: b\n";
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_not_equal(evs_so_parse_yaml(src, strlen(src), "so.yaml", &so, &d), 0);
  assert_null(so);
  assert_int_equal(d.n, 3);
  static const uint32_t want[3][2] = {{1, 1}, {2, 3}, {2, 5}};
  for (size_t i = 0; i < 3; i++)
    if (d.items[i].line != want[i][0] || d.items[i].col != want[i][1]) {
      dump(&d);
      fail_msg("entry %zu at %u:%u, want %u:%u", i, d.items[i].line, d.items[i].col, want[i][0],
               want[i][1]);
    }
  evs_diag_free(&d);
}

/* The sort keeps entries of equal position in the order they were found, puts those without a
 * position last, and leaves entries before `from` (another object's) alone. */
static void diag_sort_is_stable(void **state) {
  (void)state;
  evs_diag_t d;
  evs_diag_init(&d);
  evs_diag_add(&d, "f", 9, 1, NULL, "earlier object");
  evs_diag_add(&d, "f", 0, 0, NULL, "no position");
  evs_diag_add(&d, "f", 20, 5, NULL, "b1");
  evs_diag_add(&d, "f", 12, 3, NULL, "a");
  evs_diag_add(&d, "f", 20, 5, NULL, "b2");
  evs_diag_add(&d, "f", 20, 2, NULL, "b0");
  evs_diag_sort(&d, 1);
  static const char *const want[] = {"earlier object", "a", "b0", "b1", "b2", "no position"};
  for (size_t i = 0; i < 6; i++)
    assert_string_equal(d.items[i].msg, want[i]);
  evs_diag_free(&d);
}

/* An object from the API with fields of a newer CRD: used, with a warning per field; the same
 * object in a file is refused. */
static void unknown_field_api_path_warns(void **state) {
  (void)state;
  const char *txt = "{\"apiVersion\":\"keda.sh/v1alpha1\",\"kind\":\"ScaledObject\","
                    "\"metadata\":{\"name\":\"w\",\"namespace\":\"prod\",\"uid\":\"u\"},"
                    "\"spec\":{\"scaleTargetRef\":{\"name\":\"w\"},\"maxReplicaCount\":10,"
                    "\"maxReplicaCont\":20,\"someFutureField\":{\"x\":1},"
                    "\"triggers\":[{\"type\":\"redis\",\"futureTriggerField\":true,"
                    "\"metadata\":{\"listName\":\"l\"}}]},"
                    "\"status\":{\"hpaName\":\"keda-hpa-w\"}}";
  json_error_t jerr;
  json_t *j = json_loads(txt, 0, &jerr);
  assert_non_null(j);
  evs_doc_t *doc = NULL;
  assert_int_equal(evs_doc_from_jansson(j, NULL, &doc), 0);
  evs_so_t *so = NULL;
  evs_diag_t d, w;
  evs_diag_init(&d);
  evs_diag_init(&w);
  int rc = evs_so_parse_mode(evs_doc_root(doc), NULL, EVS_SO_API, &so, &d, &w);
  if (rc != 0)
    dump(&d);
  assert_int_equal(rc, 0);
  assert_non_null(so);
  assert_int_equal(d.n, 0);
  assert_int_equal(so->max_replicas, 10); /* the known fields are used */
  assert_int_equal(w.n, 3);
  expect(&w, "spec.maxReplicaCont", 0, 0, "unknown field (did you mean 'maxReplicaCount'?)");
  expect(&w, "spec.someFutureField", 0, 0, "ignored");
  expect(&w, "spec.triggers[0].futureTriggerField", 0, 0, "ignored");
  char buf[256];
  evs_diag_format(&w, 0, buf, sizeof buf);
  assert_non_null(strstr(buf, "prod/w: spec."));
  evs_so_free(so);
  evs_diag_free(&w);
  /* Warnings may be discarded. */
  so = NULL;
  assert_int_equal(evs_so_parse_mode(evs_doc_root(doc), NULL, EVS_SO_API, &so, &d, NULL), 0);
  assert_non_null(so);
  evs_so_free(so);
  /* A file (FILE mode) refuses the same object, each field an error. */
  so = NULL;
  assert_int_equal(evs_so_parse(evs_doc_root(doc), NULL, &so, &d), EVS_EINVALCFG);
  assert_null(so);
  assert_int_equal(d.n, 3);
  expect(&d, "spec.maxReplicaCont", 0, 0, "unknown field (did you mean 'maxReplicaCount'?)");
  evs_diag_free(&d);
  evs_doc_free(doc);
  json_decref(j);
}

/* Numbers too large for their type are "out of range" (Go's ErrRange, json's range error), not
 * "not a number", and never ±Inf. */
static void out_of_range_numbers(void **state) {
  (void)state;
  evs_diag_t d;
  parse_bad(HEAD "spec:\n"                                                 /* 6 */
                 "  scaleTargetRef: {name: w}\n"                           /* 7 */
                 "  advanced:\n"                                           /* 8 */
                 "    scalingModifiers: {formula: q, target: \"1e400\",\n" /* 9 */
                 "                       activationTarget: \"-1e999\"}\n"  /* 10 */
                 "  triggers:\n"                                           /* 11 */
                 "  - name: q\n"                                           /* 12 */
                 "    type: redis\n"                                       /* 13 */
                 "    metadata:\n"                                         /* 14 */
                 "      listName: l\n"                                     /* 15 */
                 "      listLength: \"99999999999999999999\"\n",           /* 16 */
            &d);
  expect(&d, "spec.advanced.scalingModifiers.target", 9, 44, "\"1e400\" is out of range");
  expect(&d, "spec.advanced.scalingModifiers.activationTarget", 10, 42,
         "\"-1e999\" is out of range for a float64");
  expect(&d, "spec.triggers[0].metadata.listLength", 16, 19, "out of range for an int64");
  assert_int_equal(d.n, 3); /* not again as "must be at least 0.001" */
  evs_diag_free(&d);
  parse_bad(HEAD "spec:\n"                                                             /* 6 */
                 "  scaleTargetRef: {name: w}\n"                                       /* 7 */
                 "  maxReplicaCount: 99999999999999999999\n"                           /* 8 */
                 "  triggers:\n"                                                       /* 9 */
                 "  - type: prometheus\n"                                              /* 10 */
                 "    metadata: {serverAddress: h, query: q, threshold: \"1e400\"}\n", /* 11 */
            &d);
  expect(&d, "spec.maxReplicaCount", 8, 20, "99999999999999999999 is out of range: must be 1..");
  expect(&d, "spec.triggers[0].metadata.threshold", 11, 55, "out of range for a float64");
  assert_int_equal(d.n, 2);
  evs_diag_free(&d);
}

/* ---- files of thousands of objects: checked in linear time ---- */

/* A config file of n ScaledObjects (namespace ns-<i % 7>, name worker-<i>); `dup_of` >= 0 makes
 * the last object's name that of object dup_of (same namespace). Caller frees. */
static char *many_objects(size_t n, long dup_of, size_t *len) {
  size_t cap = 64 + n * 256, at = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  at += (size_t)snprintf(buf, cap, "scaled_objects:\n");
  for (size_t i = 0; i < n; i++) {
    size_t id = dup_of >= 0 && i == n - 1 ? (size_t)dup_of : i;
    at += (size_t)snprintf(buf + at, cap - at,
                           "- apiVersion: keda.sh/v1alpha1\n"
                           "  kind: ScaledObject\n"
                           "  metadata: {name: worker-%zu, namespace: ns-%zu}\n"
                           "  spec:\n"
                           "    scaleTargetRef: {name: w}\n"
                           "    triggers: [{type: redis, name: q, metadata: {listName: l%zu}}]\n",
                           id, id % 7, i);
    assert_true(at < cap);
  }
  *len = at;
  return buf;
}

/* One object with n named triggers. Caller frees. */
static char *many_triggers(size_t n, size_t *len) {
  size_t cap = 256 + n * 64, at = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  at += (size_t)snprintf(buf, cap, HEAD "spec:\n  scaleTargetRef: {name: w}\n  triggers:\n");
  for (size_t i = 0; i < n; i++)
    at += (size_t)snprintf(buf + at, cap - at,
                           "  - {type: redis, name: t%zu, metadata: {listName: l}}\n", i);
  assert_true(at < cap);
  *len = at;
  return buf;
}

/* Loads a config file and validates its ScaledObjects, as check-config does; returns the CPU
 * seconds it took (process CPU time: another process on the machine does not count). */
static double check_file_cpu(const char *buf, size_t len, int want_rc, evs_diag_t *d) {
  char *envp[] = {NULL};
  evs_config_t *cfg = NULL;
  clock_t t0 = clock();
  int rc = evs_config_load_buffer(buf, len, "big.yaml", envp, &cfg, d);
  if (rc == 0)
    rc = evs_app_check_scaled_objects(cfg, d);
  clock_t t1 = clock();
  if (rc != want_rc)
    dump(d);
  assert_int_equal(rc, want_rc);
  evs_config_free(cfg);
  return (double)(t1 - t0) / CLOCKS_PER_SEC;
}

static double parse_so_cpu(const char *buf, size_t len) {
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  clock_t t0 = clock();
  int rc = evs_so_parse_yaml(buf, len, "so.yaml", &so, &d);
  clock_t t1 = clock();
  if (rc)
    dump(&d);
  assert_int_equal(rc, 0);
  evs_so_free(so);
  evs_diag_free(&d);
  return (double)(t1 - t0) / CLOCKS_PER_SEC;
}

static double check_ok_cpu(const char *buf, size_t len) {
  evs_diag_t d;
  evs_diag_init(&d);
  double t = check_file_cpu(buf, len, 0, &d);
  evs_diag_free(&d);
  return t;
}

/* The best of five: the least disturbed run. */
static double best_of_5(double (*run)(const char *, size_t), const char *buf, size_t len) {
  double best = 1e9;
  for (int r = 0; r < 5; r++) {
    double t = run(buf, len);
    if (t < best)
      best = t;
  }
  return best;
}

/* A duplicate namespace/name among 8,000 objects is found, with the first one's line; the same
 * name in another namespace is not a duplicate. */
static void many_objects_duplicate(void **state) {
  (void)state;
  size_t len;
  char *buf = many_objects(8000, 0, &len);
  evs_diag_t d;
  evs_diag_init(&d);
  check_file_cpu(buf, len, EVS_EINVALCFG, &d);
  assert_int_equal(d.n, 1);
  expect(&d, "scaled_objects[7999].metadata.name", 7999 * 6 + 4, 20,
         "duplicate ScaledObject 'worker-0' (first defined at line 4)");
  evs_diag_free(&d);
  free(buf);
  buf = many_objects(8000, 7, &len); /* worker-7 in ns-0 vs worker-7 in ns-0: a duplicate */
  evs_diag_init(&d);
  check_file_cpu(buf, len, EVS_EINVALCFG, &d);
  expect(&d, "scaled_objects[7999].metadata.name", 7999 * 6 + 4, 20,
         "duplicate ScaledObject 'worker-7' (first defined at line 46)");
  evs_diag_free(&d);
  free(buf);
}

/* The ratio of the best-of-5 CPU times of a run four times as large to a base run. */
static double ratio_4x(double (*run)(const char *, size_t), const char *b1, size_t l1,
                       const char *b4, size_t l4, double *t1, double *t4) {
  *t1 = best_of_5(run, b1, l1);
  *t4 = best_of_5(run, b4, l4);
  return *t4 / *t1;
}

/* Structure, not speed: four times the objects (or triggers) must cost about four times the
 * CPU, not sixteen. A duplicate check scanning every earlier object (or trigger) is quadratic
 * and fails this by far at these sizes (x16 measured with every name in one hash slot); a bound
 * of 8 leaves room for cache effects. CI once measured a linear x9.0: the larger runs paid page
 * faults for memory glibc had given back, which the smaller ones found warm (x6 to x7.5 every
 * time). With freed memory kept, linear code measures x3.4 to x5.4; on a shared virtual machine a
 * pair over the bound is measured again, up to three times: quadratic code fails every time, a
 * disturbance does not repeat. */
static void many_objects_linear(void **state) {
  (void)state;
  size_t l1, l4;
  double t1 = 0, t4 = 0, r = 0;
  /* Freed memory stays in the heap, so the repeated runs reuse pages already touched: the larger
   * run would otherwise pay page faults the smaller one does not (a linear x7.5 measured). */
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  char *b1 = many_objects(2000, -1, &l1), *b4 = many_objects(8000, -1, &l4);
  for (int attempt = 0; attempt < 3 && (r = ratio_4x(check_ok_cpu, b1, l1, b4, l4, &t1, &t4)) >= 8;
       attempt++)
    print_message("  objects: x%.1f, measuring again\n", r);
  print_message("  objects: 2000 in %.3f s CPU, 8000 in %.3f s (x%.1f)\n", t1, t4, r);
  assert_true(r < 8);
  free(b1);
  free(b4);
  b1 = many_triggers(4000, &l1);
  b4 = many_triggers(16000, &l4);
  for (int attempt = 0; attempt < 3 && (r = ratio_4x(parse_so_cpu, b1, l1, b4, l4, &t1, &t4)) >= 8;
       attempt++)
    print_message("  triggers: x%.1f, measuring again\n", r);
  print_message("  triggers: 4000 in %.3f s CPU, 16000 in %.3f s (x%.1f)\n", t1, t4, r);
  assert_true(r < 8);
  free(b1);
  free(b4);
}

/* Trigger names are found through the object's index, and only names that exist are. */
static void trigger_index_lookup(void **state) {
  (void)state;
  size_t len;
  char *buf = many_triggers(300, &len);
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_so_parse_yaml(buf, len, "so.yaml", &so, &d), 0);
  char name[16];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "t%d", i);
    assert_int_equal(evs_so_trigger_index(so, name), i);
  }
  assert_int_equal(evs_so_trigger_index(so, "t300"), -1);
  assert_int_equal(evs_so_trigger_index(so, ""), -1);
  evs_so_free(so);
  evs_diag_free(&d);
  free(buf);
}

/* A parsed object is moved into one allocation (scaledobject.c so_compact): every string and
 * array must come along, across the many arena blocks of a large object. Under ASan a pointer
 * left in a freed block is a use after free here. */
static void compacted_object_keeps_every_field(void **state) {
  (void)state;
  size_t cap = 4096 + 40 * 160, at = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  at += (size_t)snprintf(buf, cap,
                         HEAD
                         "spec:\n"
                         "  scaleTargetRef: {name: api, kind: StatefulSet, apiVersion: apps/v1,\n"
                         "                   envSourceContainerName: main}\n"
                         "  advanced:\n"
                         "    horizontalPodAutoscalerConfig: {name: my-hpa}\n"
                         "    scalingModifiers: {formula: \"t0 + t39\", target: \"2\"}\n"
                         "  triggers:\n");
  for (int i = 0; i < 40; i++)
    at += (size_t)snprintf(buf + at, cap - at,
                           "  - {type: redis, name: t%d, authenticationRef: {name: auth-%d},\n"
                           "     metadata: {listName: list-%d, address: \"redis-%d:6379\"}}\n",
                           i, i, i, i);
  assert_true(at < cap);
  evs_so_t *so = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  if (evs_so_parse_yaml(buf, at, "so.yaml", &so, &d) != 0)
    dump(&d);
  assert_non_null(so);
  char source[EVS_SO_SOURCE_MAX];
  assert_string_equal(so->name, "worker");
  assert_string_equal(so->namespace_, "jobs");
  assert_string_equal(evs_so_source(so, source, sizeof source), "jobs/worker");
  assert_string_equal(so->target_name, "api");
  assert_string_equal(so->target_kind, "StatefulSet");
  assert_string_equal(so->target_api_version, "apps/v1");
  assert_string_equal(so->env_source_container, "main");
  assert_string_equal(so->hpa_name, "my-hpa");
  assert_string_equal(so->modifiers->formula, "t0 + t39");
  assert_non_null(so->modifiers->formula_compiled);
  assert_int_equal(so->n_triggers, 40);
  char want[64];
  for (int i = 0; i < 40; i++) {
    const evs_trigger_t *t = &so->triggers[i];
    snprintf(want, sizeof want, "t%d", i);
    assert_string_equal(t->name, want);
    assert_int_equal(evs_so_trigger_index(so, want), i);
    assert_string_equal(evs_trigger_type(t), "redis");
    snprintf(want, sizeof want, "auth-%d", i);
    assert_string_equal(t->auth_name, want);
    snprintf(want, sizeof want, "s%d-redis-list-%d", i, i);
    assert_string_equal(t->metric_name, want);
    assert_int_equal(t->metadata.n, 2);
    snprintf(want, sizeof want, "list-%d", i);
    assert_string_equal(t->metadata.items[0].key, "listName");
    assert_string_equal(t->metadata.items[0].value, want);
    snprintf(want, sizeof want, "redis-%d:6379", i);
    assert_string_equal(t->metadata.items[1].key, "address");
    assert_string_equal(t->metadata.items[1].value, want);
  }
  evs_so_free(so);
  evs_diag_free(&d);
  free(buf);
}

/* Issue 13: an object with one redis trigger, shaped as perf/bench_registry's, is one block of
 * ~310 B (544 B before the packing: 8-byte aligned copies of every string, the struct's padding,
 * the source string, a name index for one trigger). Strings that end others point into them,
 * the keys the scalers read and the defaults are shared static strings, and an object without
 * scalingModifiers or behavior points to the shared empty ones. */
static void packed_object_is_one_small_block(void **state) {
  (void)state;
  const char *src = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\n"
                    "metadata: {name: worker-1234, namespace: team-12}\n"
                    "spec:\n  scaleTargetRef: {name: worker-1234}\n"
                    "  minReplicaCount: 0\n  maxReplicaCount: 20\n  pollingInterval: 30\n"
                    "  triggers:\n  - type: redis\n"
                    "    metadata: {address: \"127.0.0.1:1\", listName: jobs-1234, "
                    "listLength: \"5\"}\n";
  evs_so_t *a = parse_ok(src), *b = parse_ok(src);
  size_t size = evs_so__packed_size(a);
  assert_true(size <= 296); /* 312 with the namespace and the address copied */
  assert_true(malloc_usable_size(a) >= size);
  const char *lo = (const char *)a, *hi = lo + size;
  const evs_trigger_t *t = &a->triggers[0];
#define IN_BLOCK(p) ((const char *)(p) >= lo && (const char *)(p) < hi)
  assert_true(IN_BLOCK(a->triggers) && IN_BLOCK(t->metadata.items));
  assert_true(IN_BLOCK(a->name) && IN_BLOCK(a->hpa_name));
  assert_true(IN_BLOCK(t->metric_name) && IN_BLOCK(t->metadata.items[1].value));
  /* The namespace and the address are the process's shared copies. */
  assert_false(IN_BLOCK(a->namespace_) || IN_BLOCK(t->metadata.items[0].value));
#undef IN_BLOCK
  assert_ptr_equal(a->namespace_, b->namespace_);
  assert_ptr_equal(t->metadata.items[0].value, b->triggers[0].metadata.items[0].value);
  assert_string_equal(t->metadata.items[0].value, "127.0.0.1:1");
  assert_string_equal(a->hpa_name, "keda-hpa-worker-1234");
  assert_ptr_equal(a->name, a->hpa_name + 9);
  assert_ptr_equal(a->target_name, a->name);
  assert_string_equal(t->metric_name, "s0-redis-jobs-1234");
  assert_string_equal(t->metadata.items[1].value, "jobs-1234");
  assert_ptr_equal(t->metadata.items[1].value, t->metric_name + 9);
  /* Known keys and the default target are the same static strings in every object. */
  for (size_t k = 0; k < 3; k++)
    assert_ptr_equal(t->metadata.items[k].key, b->triggers[0].metadata.items[k].key);
  assert_string_equal(t->metadata.items[0].key, "address");
  assert_string_equal(t->metadata.items[2].key, "listLength");
  assert_string_equal(t->metadata.items[2].value, "5");
  assert_ptr_equal(a->target_api_version, b->target_api_version);
  assert_ptr_equal(a->target_kind, b->target_kind);
  assert_ptr_equal(a->behavior, &EVS_SO_NO_BEHAVIOR);
  assert_ptr_equal(a->modifiers, &EVS_SO_NO_MODIFIERS);
  assert_string_equal(evs_trigger_type(t), "redis");
  assert_int_equal(evs_so_max(a), 20);
  evs_so_free(a);
  evs_so_free(b);
}

/* Strings the same in many objects (namespace, a target's apiVersion and kind, addresses) are
 * one copy for the process, held while any object holds it: freeing one object leaves the
 * others' strings whole (ASan), and the last one frees it. */
static void shared_strings_refcounted(void **state) {
  (void)state;
  static const char fmt[] =
      "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\n"
      "metadata: {name: w%d, namespace: %s}\n"
      "spec:\n  scaleTargetRef: {apiVersion: perf.evscale.io/v1, kind: BenchTarget, name: t}\n"
      "  triggers:\n  - type: redis\n"
      "    metadata: {address: \"%s\", listName: jobs, host: \"\"}\n"
      "  - type: prometheus\n"
      "    metadata: {serverAddress: \"http://prom:9090\", query: up, threshold: \"1\"}\n";
  size_t before = evs_so__shared_count();
  char src[1024];
  evs_so_t *so[4];
  for (int i = 0; i < 4; i++) {
    snprintf(src, sizeof src, fmt, i, i < 3 ? "shared-ns-a" : "shared-ns-b",
             i < 2 ? "10.9.8.7:6379" : "10.9.8.6:6379");
    so[i] = parse_ok(src);
  }
  /* 2 namespaces, apiVersion, kind, 2 redis addresses, 1 Prometheus address */
  assert_int_equal(evs_so__shared_count(), before + 7);
  assert_ptr_equal(so[0]->namespace_, so[2]->namespace_);
  assert_ptr_not_equal(so[0]->namespace_, so[3]->namespace_);
  assert_ptr_equal(so[0]->target_api_version, so[3]->target_api_version);
  assert_ptr_equal(so[0]->target_kind, so[3]->target_kind);
  assert_ptr_equal(so[0]->triggers[0].metadata.items[0].value,
                   so[1]->triggers[0].metadata.items[0].value);
  assert_ptr_equal(so[0]->triggers[1].metadata.items[0].value,
                   so[3]->triggers[1].metadata.items[0].value);
  evs_so_free(so[0]);
  evs_so_free(so[2]);
  /* Still held by so[1] and so[3]: read them whole. */
  assert_string_equal(so[1]->namespace_, "shared-ns-a");
  assert_string_equal(so[1]->triggers[0].metadata.items[0].value, "10.9.8.7:6379");
  assert_string_equal(so[1]->triggers[0].metadata.items[2].value, "");
  assert_string_equal(so[3]->target_api_version, "perf.evscale.io/v1");
  assert_string_equal(so[3]->target_kind, "BenchTarget");
  assert_string_equal(so[3]->triggers[1].metadata.items[0].value, "http://prom:9090");
  assert_string_equal(so[3]->triggers[0].metadata.items[0].value, "10.9.8.6:6379");
  assert_int_equal(evs_so__shared_count(), before + 7);
  evs_so_free(so[1]);
  assert_int_equal(evs_so__shared_count(), before + 5); /* shared-ns-a, 10.9.8.7:6379 */
  evs_so_free(so[3]);
  assert_int_equal(evs_so__shared_count(), before);
}

/* Up to 8 triggers are looked up by a scan (no index stored), more through the index; both find
 * every named trigger and skip the unnamed ones. */
static void trigger_index_scan_and_hash(void **state) {
  (void)state;
  for (int n = 3; n <= 12; n += 9) {
    char buf[4096];
    size_t at = (size_t)snprintf(buf, sizeof buf,
                                 HEAD "spec:\n  scaleTargetRef: {name: w}\n"
                                      "  triggers:\n");
    for (int i = 0; i < n; i++)
      at += (size_t)snprintf(buf + at, sizeof buf - at,
                             i % 3 == 1 ? "  - {type: redis, metadata: {listName: l%d}}\n"
                                        : "  - {type: redis, name: n%d, metadata: {listName: "
                                          "l}}\n",
                             i);
    evs_so_t *so = parse_ok(buf);
    assert_int_equal(so->name_indexed, n > 8);
    char name[16];
    for (int i = 0; i < n; i++) {
      snprintf(name, sizeof name, "n%d", i);
      assert_int_equal(evs_so_trigger_index(so, name), i % 3 == 1 ? -1 : i);
    }
    assert_int_equal(evs_so_trigger_index(so, "l"), -1);
    evs_so_free(so);
  }
}

/* Every file in test/data/so/ that starts with "valid-" parses; "invalid-" ones do not. */
static void data_files(void **state) {
  (void)state;
  static const char *const valid[] = {"valid-redis.yaml", "valid-prometheus.yaml",
                                      "valid-cron.yaml", "valid-full.yaml", "valid-modifiers.yaml"};
  const char *dir = evs_test_data();
  assert_non_null(dir);
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    char path[1024], buf[16384];
    snprintf(path, sizeof path, "%s/so/%s", dir, valid[i]);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    evs_so_t *so = NULL;
    evs_diag_t d;
    evs_diag_init(&d);
    int rc = evs_so_parse_yaml(buf, n, path, &so, &d);
    if (rc)
      dump(&d);
    assert_int_equal(rc, 0);
    evs_so_free(so);
    evs_diag_free(&d);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_minimal_redis),
      cmocka_unit_test(full_object),
      cmocka_unit_test(deletion_without_restore),
      cmocka_unit_test(error_positions),
      cmocka_unit_test(error_cron_schedules_and_zones),
      cmocka_unit_test(error_replica_bounds),
      cmocka_unit_test(error_required_fields),
      cmocka_unit_test(error_zero_target),
      cmocka_unit_test(error_fallback_and_modifiers),
      cmocka_unit_test(error_behavior),
      cmocka_unit_test(error_annotations_and_names),
      cmocka_unit_test(json_input),
      cmocka_unit_test(metric_names),
      cmocka_unit_test(keda_number_parsing),
      cmocka_unit_test(annotation_bools),
      cmocka_unit_test(data_files),
      cmocka_unit_test(unknown_field_template_is_valid),
      cmocka_unit_test(unknown_field_every_level),
      cmocka_unit_test(unknown_fields_all_reported_in_file_order),
      cmocka_unit_test(diag_sort_is_stable),
      cmocka_unit_test(yaml_errors_in_file_order),
      cmocka_unit_test(unknown_field_api_path_warns),
      cmocka_unit_test(out_of_range_numbers),
      cmocka_unit_test(many_objects_duplicate),
      cmocka_unit_test(many_objects_linear),
      cmocka_unit_test(trigger_index_lookup),
      cmocka_unit_test(compacted_object_keeps_every_field),
      cmocka_unit_test(packed_object_is_one_small_block),
      cmocka_unit_test(shared_strings_refcounted),
      cmocka_unit_test(trigger_index_scan_and_hash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
