/* The fields a ScaledObject may have, and the check that refuses any other.
 *
 * A misspelt field (`maxReplicaCont: 20`) that is silently ignored is the classic operations
 * bug: the object validates, and runs with the default. `kubectl apply` against a current API
 * server refuses it (strict field validation), so a file given to evscale is refused too, with
 * its position and a did-you-mean. On the API path the server has already pruned or accepted the
 * object under the CRD installed in the cluster, which may be newer than the one below: there an
 * unknown field is only a warning (evs_so_mode_t).
 *
 * The tree is KEDA's CRD, kedacore/keda tag v2.20.2 (commit
 * 68a5b5028f35b22d50597c69819ab32c4e92f21a), config/crd/bases/keda.sh_scaledobjects.yaml,
 * openAPIV3Schema, including the autoscaling/v2 HPA behavior embedded there. The CRD gives
 * `metadata` only as `type: object`: the API server validates it as an ObjectMeta, whose fields
 * are those of kubernetes/apimachinery pkg/apis/meta/v1/types.go (commit
 * 048d783371697f65e816d3d923481c476cc85e06) `ObjectMeta`. Free-form maps are not descended:
 * `triggers[].metadata` (additionalProperties: string; each scaler checks its own parameters),
 * labels and annotations, and ObjectMeta's system-written lists (ownerReferences,
 * managedFields). `status` is written by KEDA, allowed and ignored. */
#include <stdio.h>
#include <string.h>

#include "evscale/config.h"
#include "so_check.h"

typedef struct evs_so__shape_s evs_so__shape_t;

typedef struct {
  const char *name;
  const evs_so__shape_t *sub; /* NULL: a scalar, or a map/list not checked further */
  int seq;                    /* the value is a list of `sub` mappings */
} evs_so__field_t;

struct evs_so__shape_s {
  const evs_so__field_t *fields;
  size_t n;
};

#define SHAPE(arr)                                                                                 \
  { arr, sizeof arr / sizeof arr[0] }

/* autoscaling/v2 HPAScalingPolicy and HPAScalingRules, as embedded in the CRD. */
static const evs_so__field_t policy_f[] = {
    {"periodSeconds", NULL, 0}, {"type", NULL, 0}, {"value", NULL, 0}};
static const evs_so__shape_t policy_s = SHAPE(policy_f);
static const evs_so__field_t rules_f[] = {{"policies", &policy_s, 1},
                                          {"selectPolicy", NULL, 0},
                                          {"stabilizationWindowSeconds", NULL, 0},
                                          {"tolerance", NULL, 0}};
static const evs_so__shape_t rules_s = SHAPE(rules_f);
static const evs_so__field_t behavior_f[] = {{"scaleDown", &rules_s, 0}, {"scaleUp", &rules_s, 0}};
static const evs_so__shape_t behavior_s = SHAPE(behavior_f);
static const evs_so__field_t hpa_f[] = {{"behavior", &behavior_s, 0}, {"name", NULL, 0}};
static const evs_so__shape_t hpa_s = SHAPE(hpa_f);
static const evs_so__field_t modifiers_f[] = {{"activationTarget", NULL, 0},
                                              {"formula", NULL, 0},
                                              {"metricType", NULL, 0},
                                              {"target", NULL, 0}};
static const evs_so__shape_t modifiers_s = SHAPE(modifiers_f);
static const evs_so__field_t advanced_f[] = {{"horizontalPodAutoscalerConfig", &hpa_s, 0},
                                             {"restoreToOriginalReplicaCount", NULL, 0},
                                             {"scalingModifiers", &modifiers_s, 0}};
static const evs_so__shape_t advanced_s = SHAPE(advanced_f);
static const evs_so__field_t fallback_f[] = {
    {"behavior", NULL, 0}, {"failureThreshold", NULL, 0}, {"replicas", NULL, 0}};
static const evs_so__shape_t fallback_s = SHAPE(fallback_f);
static const evs_so__field_t target_f[] = {{"apiVersion", NULL, 0},
                                           {"envSourceContainerName", NULL, 0},
                                           {"kind", NULL, 0},
                                           {"name", NULL, 0}};
static const evs_so__shape_t target_s = SHAPE(target_f);
static const evs_so__field_t auth_f[] = {{"kind", NULL, 0}, {"name", NULL, 0}};
static const evs_so__shape_t auth_s = SHAPE(auth_f);
static const evs_so__field_t trigger_f[] = {{"authenticationRef", &auth_s, 0},
                                            {"metadata", NULL, 0},
                                            {"metricType", NULL, 0},
                                            {"name", NULL, 0},
                                            {"type", NULL, 0},
                                            {"useCachedMetrics", NULL, 0}};
static const evs_so__shape_t trigger_s = SHAPE(trigger_f);
static const evs_so__field_t spec_f[] = {
    {"advanced", &advanced_s, 0},       {"cooldownPeriod", NULL, 0},
    {"fallback", &fallback_s, 0},       {"idleReplicaCount", NULL, 0},
    {"initialCooldownPeriod", NULL, 0}, {"maxReplicaCount", NULL, 0},
    {"minReplicaCount", NULL, 0},       {"pollingInterval", NULL, 0},
    {"scaleTargetRef", &target_s, 0},   {"triggers", &trigger_s, 1}};
static const evs_so__shape_t spec_s = SHAPE(spec_f);
static const evs_so__field_t meta_f[] = {{"annotations", NULL, 0},
                                         {"creationTimestamp", NULL, 0},
                                         {"deletionGracePeriodSeconds", NULL, 0},
                                         {"deletionTimestamp", NULL, 0},
                                         {"finalizers", NULL, 0},
                                         {"generateName", NULL, 0},
                                         {"generation", NULL, 0},
                                         {"labels", NULL, 0},
                                         {"managedFields", NULL, 0},
                                         {"name", NULL, 0},
                                         {"namespace", NULL, 0},
                                         {"ownerReferences", NULL, 0},
                                         {"resourceVersion", NULL, 0},
                                         {"selfLink", NULL, 0},
                                         {"uid", NULL, 0}};
static const evs_so__shape_t meta_s = SHAPE(meta_f);
static const evs_so__field_t root_f[] = {{"apiVersion", NULL, 0},
                                         {"kind", NULL, 0},
                                         {"metadata", &meta_s, 0},
                                         {"spec", &spec_s, 0},
                                         {"status", NULL, 0}};
static const evs_so__shape_t root_s = SHAPE(root_f);

/* The longest field list above; did-you-mean candidates are gathered on the stack. */
#define MAX_FIELDS 16

static const evs_so__field_t *find(const evs_so__shape_t *s, const char *name) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->fields[i].name, name) == 0)
      return &s->fields[i];
  return NULL;
}

/* Where else in the schema a field of this exact name lives ("spec.maxReplicaCount" for a
 * maxReplicaCount written at the top level): the right field at the wrong level. Writes the
 * dotted path into buf and returns 1 when found. */
static int elsewhere(const evs_so__shape_t *s, const char *name, char *buf, size_t cap,
                     size_t len) {
  for (size_t i = 0; i < s->n; i++) {
    const evs_so__field_t *f = &s->fields[i];
    size_t l = strlen(f->name);
    if (len + l + 2 + (f->seq ? 3 : 0) >= cap)
      continue;
    size_t at = len;
    if (at)
      buf[at++] = '.';
    memcpy(buf + at, f->name, l);
    at += l;
    buf[at] = '\0';
    if (strcmp(f->name, name) == 0)
      return 1;
    if (f->sub) {
      if (f->seq)
        memcpy(buf + at, "[]", 3), at += 2;
      if (elsewhere(f->sub, name, buf, cap, at))
        return 1;
    }
  }
  buf[len] = '\0';
  return 0;
}

static void unknown(evs_so__ctx_t *c, const evs_so__shape_t *s, const evs_node_t *key) {
  const char *cands[MAX_FIELDS];
  const char *name = key->u.text;
  char where[256];
  for (size_t i = 0; i < s->n; i++)
    cands[i] = s->fields[i].name;
  const char *near = evs_did_you_mean(name, cands, s->n);
  char hint[300] = "";
  if (near)
    snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
  else if (elsewhere(&root_s, name, where, sizeof where, 0))
    snprintf(hint, sizeof hint, " (it belongs at '%s')", where);
  if (c->mode == EVS_SO_FILE) {
    evs_so__err(c, key, name, "unknown field%s", hint);
    return;
  }
  /* API path: a field of a newer CRD than evscale knows. Warn, and parse the rest. */
  size_t saved = evs_path_push_key(&c->path, name);
  evs_diag_add(c->warn, c->source, key->line, key->col, c->path.buf,
               "unknown field%s; ignored (not in KEDA v2.20's ScaledObject schema)", hint);
  evs_path_pop(&c->path, saved);
}

static void walk(evs_so__ctx_t *c, const evs_node_t *m, const evs_so__shape_t *s);

static void walk_field(evs_so__ctx_t *c, const evs_so__field_t *f, const evs_node_t *v) {
  if (f->sub == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, f->name);
  if (!f->seq) {
    walk(c, v, f->sub);
  } else if (v->kind == EVS_NODE_SEQ) {
    for (size_t i = 0; i < v->len; i++) {
      size_t s2 = evs_path_push_index(&c->path, i);
      walk(c, evs_node_item(v, i), f->sub);
      evs_path_pop(&c->path, s2);
    }
  }
  evs_path_pop(&c->path, saved);
}

/* A value of another kind than expected is not this check's business: the typed readers report
 * it. */
static void walk(evs_so__ctx_t *c, const evs_node_t *m, const evs_so__shape_t *s) {
  if (m == NULL || m->kind != EVS_NODE_MAP)
    return;
  for (size_t i = 0; i < m->len; i++) {
    const evs_node_t *k = evs_node_key(m, i);
    const evs_so__field_t *f = k->kind == EVS_NODE_STR ? find(s, k->u.text) : NULL;
    if (f == NULL)
      unknown(c, s, k);
    else
      walk_field(c, f, evs_node_value(m, i));
  }
}

void evs_so__check_fields(evs_so__ctx_t *c, const evs_node_t *root) { walk(c, root, &root_s); }
