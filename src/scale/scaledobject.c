/* The ScaledObject model and its validator (see include/evscale/scaledobject.h for the sources:
 * kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a). Triggers are in so_triggers.c. */
#include "evscale/scaledobject.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/formula.h"
#include "evscale/intern.h"
#include "evscale/param.h"
#include "so_check.h"

#include <uv.h>

const evs_behavior_t EVS_SO_NO_BEHAVIOR = {
    .present = 0, .up = {.window_s = -1}, .down = {.window_s = -1}};
const evs_so_modifiers_t EVS_SO_NO_MODIFIERS = {0};

/* ---- scratch arena: the parse's allocations, packed into the object at the end ---- */

/* A first block on the parser's stack holds an ordinary object (one trigger uses ~600 B), so
 * only large ones touch the heap before the object's own allocation. */
#define SCRATCH_FIRST 2048
#define SCRATCH_SPILL 4096

void *evs_so__alloc(evs_so__ctx_t *c, size_t n) {
  n = (n + 7) & ~(size_t)7;
  if (c->left < n) {
    size_t cap = n > SCRATCH_SPILL ? n : SCRATCH_SPILL;
    evs_so__block_t *b = malloc(sizeof *b + cap);
    if (b == NULL) {
      c->errors++;
      evs_diag_add(c->diag, c->source, 0, 0, NULL, "out of memory");
      return NULL;
    }
    b->next = c->spill;
    c->spill = b;
    c->cur = b->data;
    c->left = cap;
  }
  void *p = c->cur;
  c->cur += n;
  c->left -= n;
  memset(p, 0, n);
  return p;
}

static void scratch_free(evs_so__ctx_t *c) {
  for (evs_so__block_t *b = c->spill, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  c->spill = NULL;
}

const char *evs_so__strdup(evs_so__ctx_t *c, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = evs_so__alloc(c, n);
  if (p)
    memcpy(p, s, n);
  return p;
}

void evs_so__err(evs_so__ctx_t *c, const evs_node_t *n, const char *field, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  size_t saved = c->path.len;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (field)
    evs_path_push_key(&c->path, field);
  evs_diag_add(c->diag, c->source, n ? n->line : 0, n ? n->col : 0,
               c->path.len ? c->path.buf : NULL, "%s", msg);
  evs_path_pop(&c->path, saved);
  c->errors++;
}

/* ---- Go-compatible scalar parsing ---- */

/* ---- typed field readers ---- */

static const evs_node_t *get_map(evs_so__ctx_t *c, const evs_node_t *m, const char *key,
                                 int required) {
  const evs_node_t *v = evs_node_get(m, key);
  if (v == NULL || (v->kind == EVS_NODE_NULL && !required)) {
    if (required)
      evs_so__err(c, m, key, "required field is missing");
    return NULL;
  }
  if (v->kind != EVS_NODE_MAP) {
    evs_so__err(c, v, key, "must be a mapping, not %s", evs_node_kind_name(v->kind));
    return NULL;
  }
  return v;
}

/* A string field: NULL when absent (or null); errors when present with another kind. */
static const char *get_str(evs_so__ctx_t *c, const evs_node_t *m, const char *key, int required) {
  const evs_node_t *v = evs_node_get(m, key);
  if (v == NULL || v->kind == EVS_NODE_NULL) {
    if (required)
      evs_so__err(c, v ? v : m, key, "required field is missing");
    return NULL;
  }
  if (v->kind != EVS_NODE_STR) {
    evs_so__err(c, v, key, "must be a string, not %s (quote the value)",
                evs_node_kind_name(v->kind));
    return NULL;
  }
  if (required && v->u.text[0] == '\0') {
    evs_so__err(c, v, key, "must not be empty");
    return NULL;
  }
  return v->u.text;
}

/* [+-]?[0-9]+ */
static int is_integer_text(const char *s) {
  if (*s == '-' || *s == '+')
    s++;
  if (*s == '\0')
    return 0;
  while (*s >= '0' && *s <= '9')
    s++;
  return *s == '\0';
}

/* An int32 field with a kubebuilder Minimum; *out keeps its value (-1) when absent. */
static void get_i32(evs_so__ctx_t *c, const evs_node_t *m, const char *key, int32_t minimum,
                    int32_t *out) {
  const evs_node_t *v = evs_node_get(m, key);
  if (v == NULL || v->kind == EVS_NODE_NULL)
    return;
  if (v->kind == EVS_NODE_REAL && is_integer_text(v->u.text)) {
    /* Digits only, but beyond int64: the reader made it a float. Say what is wrong with it. */
    evs_so__err(c, v, key, "%.40s is out of range: must be %d..%d", v->u.text, (int)minimum,
                (int)INT32_MAX);
    return;
  }
  if (v->kind != EVS_NODE_INT) {
    evs_so__err(c, v, key, "must be an integer, not %s", evs_node_kind_name(v->kind));
    return;
  }
  if (v->num.i < minimum || v->num.i > INT32_MAX) {
    evs_so__err(c, v, key, "%lld is out of range: must be %d..%d", (long long)v->num.i,
                (int)minimum, (int)INT32_MAX);
    return;
  }
  *out = (int32_t)v->num.i;
}

static void get_bool(evs_so__ctx_t *c, const evs_node_t *m, const char *key, uint8_t *out) {
  const evs_node_t *v = evs_node_get(m, key);
  if (v == NULL || v->kind == EVS_NODE_NULL)
    return;
  if (v->kind != EVS_NODE_BOOL) {
    evs_so__err(c, v, key, "must be a boolean, not %s", evs_node_kind_name(v->kind));
    return;
  }
  *out = (uint8_t)(v->num.b != 0);
}

/* ---- metadata ---- */

#define ANN_PREFIX "autoscaling.keda.sh/"

/* getBoolAnnotation: absent -> false; strconv.ParseBool error -> true. */
static uint8_t bool_annotation(const evs_node_t *ann, const char *key) {
  const char *v = evs_node_text(evs_node_get(ann, key));
  int b;
  if (evs_node_get(ann, key) == NULL)
    return 0;
  if (v == NULL || evs_param_go_bool(v, &b) != 0)
    return 1;
  return (uint8_t)b;
}

static void parse_annotations(evs_so__ctx_t *c, const evs_node_t *ann) {
  evs_so_t *so = c->so;
  size_t saved = evs_path_push_key(&c->path, "annotations");
  for (size_t i = 0; i < ann->len; i++) {
    const evs_node_t *v = evs_node_value(ann, i);
    if (v->kind != EVS_NODE_STR)
      evs_so__err(c, v, evs_node_text(evs_node_key(ann, i)), "must be a string, not %s",
                  evs_node_kind_name(v->kind));
  }
  so->paused = bool_annotation(ann, ANN_PREFIX "paused");
  so->paused_scale_in = bool_annotation(ann, ANN_PREFIX "paused-scale-in");
  so->paused_scale_out = bool_annotation(ann, ANN_PREFIX "paused-scale-out");
  so->force_activation = bool_annotation(ann, ANN_PREFIX "force-activation");
  const evs_node_t *pr = evs_node_get(ann, ANN_PREFIX "paused-replicas");
  if (pr) {
    /* GetPausedReplicaCount: strconv.ParseInt(val, 10, 32). */
    const char *t = evs_node_text(pr);
    char *end;
    errno = 0;
    long long n = t ? strtoll(t, &end, 10) : 0;
    if (t == NULL || *t == '\0' || evs_param_space_len(t) > 0 || *end || errno || n < INT32_MIN ||
        n > INT32_MAX || n < 0)
      evs_so__err(c, pr, ANN_PREFIX "paused-replicas",
                  "\"%s\" is not a replica count (a non-negative 32-bit integer)", t ? t : "");
    else
      so->paused_replicas = (int32_t)n;
  }
  evs_path_pop(&c->path, saved);
}

static void parse_metadata(evs_so__ctx_t *c, const evs_node_t *root) {
  evs_so_t *so = c->so;
  const evs_node_t *md = get_map(c, root, "metadata", 1);
  if (md == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "metadata");
  const char *name = get_str(c, md, "name", 1);
  const char *ns = get_str(c, md, "namespace", 0);
  if (name && strlen(name) > 63)
    /* webhook verifyName: the name is the value of the scaledobject.keda.sh/name label. */
    evs_so__err(c, evs_node_get(md, "name"), "name",
                "scaledobject name %.80s is %zu characters long; must be no more than 63 "
                "characters because it is used as the \"scaledobject.keda.sh/name\" label value",
                name, strlen(name));
  if (name)
    so->name = evs_so__strdup(c, name);
  if (ns)
    so->namespace_ = evs_so__strdup(c, ns);
  const evs_node_t *ann = get_map(c, md, "annotations", 0);
  if (ann)
    parse_annotations(c, ann);
  evs_path_pop(&c->path, saved);
}

/* ---- spec.advanced ---- */

static void parse_policies(evs_so__ctx_t *c, const evs_node_t *seq, evs_scaling_rules_t *r) {
  size_t saved = evs_path_push_key(&c->path, "policies");
  if (seq->kind != EVS_NODE_SEQ) {
    evs_so__err(c, seq, NULL, "must be a list, not %s", evs_node_kind_name(seq->kind));
  } else if (seq->len == 0) {
    evs_so__err(c, seq, NULL, "must specify at least one Policy");
  } else if (seq->len > EVS_BEHAVIOR_MAX_POLICIES) {
    evs_so__err(c, seq, NULL, "at most %d policies are supported", EVS_BEHAVIOR_MAX_POLICIES);
  } else {
    for (size_t i = 0; i < seq->len; i++) {
      const evs_node_t *p = evs_node_item(seq, i);
      size_t s2 = evs_path_push_index(&c->path, i);
      evs_hpa_policy_t *pol = &r->policies[i];
      pol->value = pol->period_s = -1;
      if (p->kind != EVS_NODE_MAP) {
        evs_so__err(c, p, NULL, "must be a mapping");
        evs_path_pop(&c->path, s2);
        continue;
      }
      const char *type = get_str(c, p, "type", 1);
      if (type && strcmp(type, "Pods") == 0)
        pol->type = EVS_POLICY_PODS;
      else if (type && strcmp(type, "Percent") == 0)
        pol->type = EVS_POLICY_PERCENT;
      else if (type)
        evs_so__err(c, evs_node_get(p, "type"), "type",
                    "unsupported value \"%s\": supported values: \"Pods\", \"Percent\"", type);
      /* pkg/apis/autoscaling/validation: value > 0, periodSeconds in 1..1800. */
      get_i32(c, p, "value", 1, &pol->value);
      get_i32(c, p, "periodSeconds", 1, &pol->period_s);
      if (pol->value < 0 && evs_node_get(p, "value") == NULL)
        evs_so__err(c, p, "value", "required field is missing");
      if (pol->period_s < 0 && evs_node_get(p, "periodSeconds") == NULL)
        evs_so__err(c, p, "periodSeconds", "required field is missing");
      if (pol->period_s > 1800)
        evs_so__err(c, evs_node_get(p, "periodSeconds"), "periodSeconds",
                    "must be less than or equal to 1800");
      evs_path_pop(&c->path, s2);
    }
    r->n_policies = (uint8_t)seq->len;
  }
  evs_path_pop(&c->path, saved);
}

/* tolerance: a resource.Quantity, written as a number or a string ("0.05", "50m"). */
static void parse_tolerance(evs_so__ctx_t *c, const evs_node_t *m, evs_scaling_rules_t *r) {
  const evs_node_t *v = evs_node_get(m, "tolerance");
  const char *t = evs_node_text(v);
  char *end;
  if (v == NULL || v->kind == EVS_NODE_NULL)
    return;
  double x =
      t && *t && (v->kind == EVS_NODE_STR || v->kind == EVS_NODE_INT || v->kind == EVS_NODE_REAL)
          ? strtod(t, &end)
          : -1;
  if (x >= 0 && t && *t && end != t && end[0] == 'm' && end[1] == '\0')
    x /= 1000, end++;
  if (!(x >= 0) || x > 1e6 || *end != '\0')
    evs_so__err(c, v, "tolerance", "must be a non-negative quantity such as 0.05 or 50m");
  else
    r->tolerance = x;
}

static void parse_rules(evs_so__ctx_t *c, const evs_node_t *b, const char *key,
                        evs_scaling_rules_t *r) {
  r->window_s = -1;
  r->select = EVS_SELECT_MAX;
  r->tolerance = -1;
  const evs_node_t *m = get_map(c, b, key, 0);
  if (m == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, key);
  get_i32(c, m, "stabilizationWindowSeconds", 0, &r->window_s);
  if (r->window_s > 3600)
    evs_so__err(c, evs_node_get(m, "stabilizationWindowSeconds"), "stabilizationWindowSeconds",
                "must be less than or equal to 3600");
  const char *sel = get_str(c, m, "selectPolicy", 0);
  if (sel && strcmp(sel, "Max") == 0)
    r->select = EVS_SELECT_MAX;
  else if (sel && strcmp(sel, "Min") == 0)
    r->select = EVS_SELECT_MIN;
  else if (sel && strcmp(sel, "Disabled") == 0)
    r->select = EVS_SELECT_DISABLED;
  else if (sel)
    evs_so__err(c, evs_node_get(m, "selectPolicy"), "selectPolicy",
                "unsupported value \"%s\": supported values: \"Disabled\", \"Max\", \"Min\"", sel);
  parse_tolerance(c, m, r);
  const evs_node_t *pol = evs_node_get(m, "policies");
  if (pol && pol->kind != EVS_NODE_NULL)
    parse_policies(c, pol, r);
  evs_path_pop(&c->path, saved);
}

static void parse_hpa_config(evs_so__ctx_t *c, const evs_node_t *adv) {
  evs_so_t *so = c->so;
  const evs_node_t *h = get_map(c, adv, "horizontalPodAutoscalerConfig", 0);
  if (h == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "horizontalPodAutoscalerConfig");
  const char *name = get_str(c, h, "name", 0);
  if (name && *name)
    so->hpa_name = evs_so__strdup(c, name);
  const evs_node_t *b = get_map(c, h, "behavior", 0);
  if (b) {
    size_t s2 = evs_path_push_key(&c->path, "behavior");
    evs_behavior_t *bh = evs_so__alloc(c, sizeof *bh);
    if (bh != NULL) {
      *bh = EVS_SO_NO_BEHAVIOR;
      bh->present = 1;
      parse_rules(c, b, "scaleUp", &bh->up);
      parse_rules(c, b, "scaleDown", &bh->down);
      so->behavior = bh;
    }
    evs_path_pop(&c->path, s2);
  }
  evs_path_pop(&c->path, saved);
}

static void parse_modifiers(evs_so__ctx_t *c, const evs_node_t *adv) {
  evs_so_t *so = c->so;
  const evs_node_t *m = get_map(c, adv, "scalingModifiers", 0);
  if (m == NULL)
    return;
  evs_so_modifiers_t *mod = evs_so__alloc(c, sizeof *mod);
  if (mod == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "scalingModifiers");
  const char *formula = get_str(c, m, "formula", 0);
  const char *target = get_str(c, m, "target", 0);
  const char *act = get_str(c, m, "activationTarget", 0);
  const char *mt = get_str(c, m, "metricType", 0);
  /* IsUsingModifiers: any field different from its zero value. */
  so->has_modifiers = (formula && *formula) || (target && *target) || (act && *act) || (mt && *mt);
  if (mt && strcmp(mt, "Value") == 0)
    so->modifiers_metric_type = EVS_METRIC_VALUE;
  else if (mt && strcmp(mt, "Utilization") == 0)
    evs_so__err(c, evs_node_get(m, "metricType"), "metricType",
                "error trigger type is Utilization, but it needs to be AverageValue or Value for "
                "external metrics");
  else if (mt && *mt && strcmp(mt, "AverageValue") != 0)
    evs_so__err(c, evs_node_get(m, "metricType"), "metricType",
                "unsupported value \"%s\": supported values: \"AverageValue\", \"Value\"", mt);
  if (so->has_modifiers && !(formula && *formula))
    evs_so__err(c, m, "formula", "error ScalingModifiers.Formula is mandatory");
  if (formula && *formula && !(target && *target))
    evs_so__err(c, m, "target", "formula is given but target is empty");
  int trc = target && *target ? evs_param_go_float(target, &mod->target) : 0;
  if (trc == EVS_ERANGE)
    evs_so__err(c, evs_node_get(m, "target"), "target",
                "error converting target for scalingModifiers (string->float) to valid target: "
                "\"%s\" is out of range for a float64",
                target);
  else if (target && *target && (trc != 0 || !(mod->target > 0)))
    evs_so__err(c, evs_node_get(m, "target"), "target",
                "error converting target for scalingModifiers (string->float) to valid target: "
                "\"%s\" is not a number greater than 0",
                target);
  int arc = act && *act ? evs_param_go_float(act, &mod->activation_target) : 0;
  if (arc != 0)
    evs_so__err(c, evs_node_get(m, "activationTarget"), "activationTarget",
                "scalingModifiers.ActivationTarget parsing error: \"%s\" %s", act,
                arc == EVS_ERANGE ? "is out of range for a float64" : "is not a number");
  if (formula && *formula)
    mod->formula = evs_so__strdup(c, formula);
  if (so->has_modifiers) /* else every field is empty: the same as EVS_SO_NO_MODIFIERS */
    so->modifiers = mod;
  evs_path_pop(&c->path, saved);
}

static void parse_advanced(evs_so__ctx_t *c, const evs_node_t *spec) {
  evs_so_t *so = c->so;
  const evs_node_t *adv = get_map(c, spec, "advanced", 0);
  if (adv == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "advanced");
  get_bool(c, adv, "restoreToOriginalReplicaCount", &so->restore_to_original);
  parse_hpa_config(c, adv);
  parse_modifiers(c, adv);
  evs_path_pop(&c->path, saved);
}

/* ---- spec.fallback ---- */

static void parse_fallback(evs_so__ctx_t *c, const evs_node_t *spec) {
  static const char *const names[] = {"static", "currentReplicas", "currentReplicasIfHigher",
                                      "currentReplicasIfLower", "scalingModifiers"};
  evs_so_t *so = c->so;
  const evs_node_t *f = get_map(c, spec, "fallback", 0);
  if (f == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "fallback");
  so->has_fallback = 1;
  so->fallback_failure_threshold = so->fallback_replicas = -1;
  if (evs_node_get(f, "failureThreshold") == NULL)
    evs_so__err(c, f, "failureThreshold", "required field is missing");
  if (evs_node_get(f, "replicas") == NULL)
    evs_so__err(c, f, "replicas", "required field is missing");
  get_i32(c, f, "failureThreshold", 0, &so->fallback_failure_threshold);
  get_i32(c, f, "replicas", 0, &so->fallback_replicas);
  const char *b = get_str(c, f, "behavior", 0);
  if (b) {
    size_t i;
    for (i = 0; i < 5 && strcmp(b, names[i]) != 0; i++)
      ;
    if (i == 5)
      evs_so__err(c, evs_node_get(f, "behavior"), "behavior",
                  "unsupported value \"%s\": supported values: \"static\", \"currentReplicas\", "
                  "\"currentReplicasIfHigher\", \"currentReplicasIfLower\", \"scalingModifiers\"",
                  b);
    else
      so->fallback_behavior = (uint8_t)i;
  }
  evs_path_pop(&c->path, saved);
}

/* ---- spec ---- */

static void parse_target_ref(evs_so__ctx_t *c, const evs_node_t *spec) {
  evs_so_t *so = c->so;
  const evs_node_t *t = get_map(c, spec, "scaleTargetRef", 1);
  so->target_api_version = "apps/v1";
  so->target_kind = "Deployment";
  if (t == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "scaleTargetRef");
  const char *name = get_str(c, t, "name", 1);
  const char *av = get_str(c, t, "apiVersion", 0);
  const char *kind = get_str(c, t, "kind", 0);
  const char *env = get_str(c, t, "envSourceContainerName", 0);
  if (name)
    so->target_name = evs_so__strdup(c, name);
  if (av && *av)
    so->target_api_version = evs_so__strdup(c, av);
  if (kind && *kind)
    so->target_kind = evs_so__strdup(c, kind);
  if (env && *env)
    so->env_source_container = evs_so__strdup(c, env);
  evs_path_pop(&c->path, saved);
}

/* CheckReplicaCountBoundsAreValid and the CRD's CEL rule, with KEDA's messages. */
static void check_replica_bounds(evs_so__ctx_t *c, const evs_node_t *spec) {
  evs_so_t *so = c->so;
  int32_t max = evs_so_max(so);
  int32_t min = 0;
  if (so->min_replicas >= 0)
    min = so->min_replicas > 0 ? so->min_replicas : 1; /* GetHPAMinReplicas */
  if (so->min_replicas >= 0 && so->min_replicas > max)
    evs_so__err(c, evs_node_get(spec, "minReplicaCount"), "minReplicaCount",
                "minReplicaCount must be less than or equal to maxReplicaCount");
  else if (min > max)
    evs_so__err(c, evs_node_get(spec, "minReplicaCount"), "minReplicaCount",
                "MinReplicaCount=%d must be less than MaxReplicaCount=%d", (int)min, (int)max);
  if (so->idle_replicas >= 0 && so->idle_replicas >= min)
    evs_so__err(c, evs_node_get(spec, "idleReplicaCount"), "idleReplicaCount",
                "IdleReplicaCount=%d must be less than MinReplicaCount=%d", (int)so->idle_replicas,
                (int)min);
}

static int index_lookup(const evs_so_t *so, const uint32_t *index, size_t mask, const char *name);

/* The formula compiles and names only triggers that exist (KEDA test-runs it with -1 for every
 * named trigger: validateScalingModifiersFormula). */
static void compile_formula(evs_so__ctx_t *c, const evs_node_t *spec) {
  evs_so_t *so = c->so;
  char err[160];
  size_t col = 0;
  evs_formula_t *f = NULL;
  const evs_node_t *fn =
      evs_node_get(evs_node_get(evs_node_get(spec, "advanced"), "scalingModifiers"), "formula");
  size_t saved = evs_path_push_key(&c->path, "advanced");
  evs_path_push_key(&c->path, "scalingModifiers");
  int rc = evs_formula_parse(so->modifiers->formula, &f, &col, err, sizeof err);
  if (rc != 0) {
    evs_so__err(c, fn, "formula", "error validating formula in ScalingModifiers: column %zu: %s",
                col, rc == EVS_EFORMULA ? err : evs_strerror(rc));
  } else {
    for (size_t i = 0; i < evs_formula_var_count(f); i++)
      if (c->name_index == NULL ||
          index_lookup(so, c->name_index, c->name_mask, evs_formula_var_name(f, i)) < 0)
        evs_so__err(c, fn, "formula",
                    "error validating formula in ScalingModifiers: unknown name %s (formulas "
                    "refer to triggers by their `name`)",
                    evs_formula_var_name(f, i));
    /* The scratch copy, allocated by parse_modifiers. */
    ((evs_so_modifiers_t *)so->modifiers)->formula_compiled = f;
  }
  evs_path_pop(&c->path, saved);
}

static void parse_spec(evs_so__ctx_t *c, const evs_node_t *root) {
  evs_so_t *so = c->so;
  const evs_node_t *spec = get_map(c, root, "spec", 1);
  if (spec == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "spec");
  parse_target_ref(c, spec);
  get_i32(c, spec, "pollingInterval", 1, &so->polling_interval_s);
  get_i32(c, spec, "initialCooldownPeriod", 0, &so->initial_cooldown_period_s);
  get_i32(c, spec, "cooldownPeriod", 0, &so->cooldown_period_s);
  get_i32(c, spec, "idleReplicaCount", 0, &so->idle_replicas);
  get_i32(c, spec, "minReplicaCount", 0, &so->min_replicas);
  get_i32(c, spec, "maxReplicaCount", 1, &so->max_replicas);
  check_replica_bounds(c, spec);
  parse_advanced(c, spec);
  parse_fallback(c, spec);
  evs_so__parse_triggers(c, spec);
  if (so->modifiers->formula)
    compile_formula(c, spec);
  if (so->has_fallback && so->fallback_behavior == EVS_FALLBACK_SCALING_MODIFIERS &&
      so->modifiers->formula == NULL)
    evs_so__err(c, evs_node_get(evs_node_get(spec, "fallback"), "behavior"), "fallback.behavior",
                "scalingModifiers fallback behavior requires scalingModifiers.formula to be "
                "defined");
  evs_path_pop(&c->path, saved);
}

static void init_so(evs_so_t *so) {
  memset(so, 0, sizeof *so);
  so->namespace_ = "";
  so->name = "";
  so->polling_interval_s = so->cooldown_period_s = so->initial_cooldown_period_s = -1;
  so->idle_replicas = so->min_replicas = so->max_replicas = -1;
  so->paused_replicas = -1;
  so->behavior = &EVS_SO_NO_BEHAVIOR;
  so->modifiers = &EVS_SO_NO_MODIFIERS;
}

static void finish_names(evs_so__ctx_t *c, const evs_node_t *root) {
  evs_so_t *so = c->so;
  char buf[300];
  if (so->hpa_name == NULL) {
    snprintf(buf, sizeof buf, "keda-hpa-%s", so->name);
    so->hpa_name = evs_so__strdup(c, buf);
    /* verifyName: the derived HPA name must fit in 63 characters too. */
    if (strlen(buf) > 63 && strlen(so->name) <= 63)
      evs_so__err(c, evs_node_get(evs_node_get(root, "metadata"), "name"), "metadata.name",
                  "HPA name %s derived from scaledobject is %zu characters long; must be no more "
                  "than 63 characters; set spec.advanced.horizontalPodAutoscalerConfig.name to a "
                  "shorter name or shorten the scaledobject name",
                  buf, strlen(buf));
  }
}

/* The name for diagnostics of an API object: "namespace/name" from the tree itself. */
static void source_name(const evs_node_t *root, char *buf, size_t cap) {
  const evs_node_t *md = evs_node_get(root, "metadata");
  const char *ns = evs_node_text(evs_node_get(md, "namespace"));
  const char *name = evs_node_text(evs_node_get(md, "name"));
  snprintf(buf, cap, "%s/%s", ns ? ns : "", name ? name : "");
}

/* ---- the packed object: one allocation of the size it uses ---- */

/* Strings the model knows, kept once for every object: the empty string, the usual targets and
 * the metadata keys evscale's scalers read (src/scalers/redis_scaler.c, prometheus_config.c,
 * cron.c). A 2-D array, so that "is this one of them" is a range check. */
static const char words[][24] = {
    "", "apps/v1", "Deployment", "StatefulSet",
    /* redis */
    "address", "addresses", "host", "hosts", "port", "ports", "username", "password", "listName",
    "listLength", "activationListLength", "databaseIndex", "enableTLS", "unsafeSsl",
    "addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv", "passwordFromEnv",
    /* prometheus */
    "serverAddress", "query", "threshold", "activationThreshold", "ignoreNullValues", "namespace",
    "customHeaders", "queryParameters", "authModes", "timeout",
    /* cron */
    "timezone", "start", "end", "desiredReplicas"};
#define N_WORDS (sizeof words / sizeof words[0])

const char *evs_so__word(const char *s) {
  for (size_t i = 0; i < N_WORDS; i++)
    if (s[0] == words[i][0] && strcmp(s, words[i]) == 0)
      return words[i];
  return NULL;
}

static int is_word(const char *s) {
  uintptr_t u = (uintptr_t)s;
  return u >= (uintptr_t)words[0] && u < (uintptr_t)words[N_WORDS];
}

/* ---- strings shared by the process's objects ---- */

/* Issue 13 (50,000 objects in a few namespaces, every trigger on the same server): the
 * namespace, a target's apiVersion and kind, and an address are the same in thousands of
 * objects, so each object holds a reference to one copy rather than a copy (~55 B an object in
 * the whole process). The table is the process's, not a parameter: objects are parsed by the
 * registry's decode, the configuration and `simulate` alike, and freed by evs_so_free with no
 * context. Parsing and freeing happen on the loop thread, but the mutex keeps the table right
 * should a caller ever parse elsewhere (uncontended, it costs nanoseconds a parse). */
enum { SHARED_NS = 1, SHARED_API_VERSION = 2, SHARED_KIND = 4 };

static uv_once_t shared_once = UV_ONCE_INIT;
static uv_mutex_t shared_mu;
static int shared_ok;         /* the mutex exists */
static evs_intern_t *shared_; /* made at the first parse that shares; never freed */

static void shared_init(void) { shared_ok = uv_mutex_init(&shared_mu) == 0; }

/* The metadata keys whose values are shared: the scalers' server addresses. */
static int shares_value(const char *key) {
  static const char *const keys[] = {"address", "addresses", "host", "hosts", "serverAddress"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (strcmp(key, keys[i]) == 0)
      return 1;
  return 0;
}

/* Locks the table (made at first need): 1, or 0 when there is none (the object then copies). */
static int shared_lock(void) {
  uv_once(&shared_once, shared_init);
  if (!shared_ok)
    return 0;
  uv_mutex_lock(&shared_mu);
  if (shared_ == NULL && evs_intern_new(&shared_) != 0) {
    uv_mutex_unlock(&shared_mu);
    return 0;
  }
  return 1;
}

size_t evs_so__shared_count(void) {
  if (!shared_lock())
    return 0;
  size_t n = evs_intern_count(shared_);
  uv_mutex_unlock(&shared_mu);
  return n;
}

/* Drops so's references to the shared strings. */
static void shared_release(const evs_so_t *so) {
  int any = so->shared != 0;
  for (size_t i = 0; i < so->n_triggers && !any; i++)
    any = so->triggers[i].shared_kv != 0;
  if (!any)
    return;
  uv_mutex_lock(&shared_mu); /* set bits mean the table exists */
  if (so->shared & SHARED_NS)
    evs_intern_release(shared_, so->namespace_);
  if (so->shared & SHARED_API_VERSION)
    evs_intern_release(shared_, so->target_api_version);
  if (so->shared & SHARED_KIND)
    evs_intern_release(shared_, so->target_kind);
  for (size_t i = 0; i < so->n_triggers; i++) {
    const evs_trigger_t *t = &so->triggers[i];
    for (size_t k = 0; k < t->metadata.n && k < 16; k++)
      if (t->shared_kv & (1u << k))
        evs_intern_release(shared_, t->metadata.items[k].value);
  }
  uv_mutex_unlock(&shared_mu);
}

/* so_pack's writer. It runs twice over the same parsed object: to measure (base NULL), then to
 * write into the block of the measured size; both runs make the same choices, so the offsets
 * agree. A string that ends one of the last few written (its NUL included) points into it:
 * "keda-hpa-worker" holds "worker", "s0-redis-jobs" holds "jobs"; a fixed window keeps this
 * linear for objects with thousands of triggers. */
#define PACK_SEEN 16

typedef struct {
  char *base; /* NULL while measuring */
  size_t at;  /* offset of the next free byte */
  struct {
    const char *s; /* the parsed string (same bytes as its copy) */
    size_t len, off;
  } seen[PACK_SEEN];
  size_t n_seen;
  int share; /* the shared table is locked: shared strings are references, not copies */
  int oom;   /* a shared string could not be made: the object is not usable */
} pack_t;

static size_t pack_take(pack_t *p, size_t n, size_t align) {
  p->at = (p->at + align - 1) & ~(align - 1);
  size_t off = p->at;
  p->at += n;
  return off;
}

static void *pack_at(const pack_t *p, size_t off) { return p->base ? p->base + off : NULL; }

static const char *pack_str(pack_t *p, const char *s) {
  if (s == NULL || is_word(s))
    return s;
  if (s[0] == '\0')
    return words[0];
  size_t len = strlen(s);
  for (size_t i = 0; i < PACK_SEEN && i < p->n_seen; i++) {
    size_t l = p->seen[i].len;
    if (len <= l && memcmp(p->seen[i].s + l - len, s, len) == 0)
      return pack_at(p, p->seen[i].off + l - len);
  }
  size_t off = pack_take(p, len + 1, 1);
  if (p->base)
    memcpy(p->base + off, s, len + 1);
  p->seen[p->n_seen % PACK_SEEN].s = s;
  p->seen[p->n_seen % PACK_SEEN].len = len;
  p->seen[p->n_seen % PACK_SEEN].off = off;
  p->n_seen++;
  return pack_at(p, off);
}

/* A string that is one of the words points to it, else as pack_str. */
static const char *pack_word(pack_t *p, const char *s) {
  const char *w = s ? evs_so__word(s) : NULL;
  return w ? w : pack_str(p, s);
}

/* A string the same in many objects: a word if it is one, else (sharing) a reference to the
 * process's copy that takes no room in the block, setting `bit` in *bits; else as pack_str. */
static const char *pack_shared(pack_t *p, const char *s, uint16_t *bits, unsigned bit) {
  const char *w = s ? evs_so__word(s) : NULL;
  if (w != NULL || s == NULL || !p->share)
    return w ? w : pack_str(p, s);
  if (p->base == NULL)
    return s; /* measuring: nothing in the block */
  const char *r = evs_intern_str(shared_, s);
  if (r == NULL) {
    p->oom = 1;
    return words[0];
  }
  *bits |= (uint16_t)bit;
  return r;
}

/* Lays src out as one block: the struct, its behavior, triggers, name index (more than
 * INDEX_MIN triggers), metadata arrays, then the strings unaligned. Returns the size; when
 * p->base is set, writes the object there. A pointer field added to evs_so_t or evs_trigger_t
 * must be added here: the unit tests run under ASan, where a missed one is a use after the
 * scratch arena is gone. */
#define INDEX_MIN 8

static size_t so_pack(pack_t *p, const evs_so_t *src, const uint32_t *index) {
  evs_so_t *so = pack_at(p, pack_take(p, sizeof *so, 8));
  evs_so_t tmp;
  if (so == NULL)
    so = &tmp; /* measuring: the choices are made the same way, the results dropped */
  *so = *src;
  so->shared = 0;
  if (src->behavior != &EVS_SO_NO_BEHAVIOR) {
    evs_behavior_t *b = pack_at(p, pack_take(p, sizeof *b, 8));
    if (b)
      *b = *src->behavior;
    so->behavior = b;
  }
  evs_so_modifiers_t *mod = NULL;
  if (src->modifiers != &EVS_SO_NO_MODIFIERS) {
    mod = pack_at(p, pack_take(p, sizeof *mod, 8));
    if (mod)
      *mod = *src->modifiers;
    so->modifiers = mod;
  }
  size_t n = src->n_triggers;
  so->triggers = pack_at(p, pack_take(p, n * sizeof *so->triggers, 8));
  so->name_indexed = n > INDEX_MIN && index != NULL;
  if (so->name_indexed) {
    size_t bytes = evs_so__index_slots(n) * sizeof *index;
    void *dst = pack_at(p, pack_take(p, bytes, 8));
    if (dst)
      memcpy(dst, index, bytes);
  }
  size_t n_kv = 0, used = 0;
  for (size_t i = 0; i < n; i++)
    n_kv += src->triggers[i].metadata.n;
  evs_kv_t *kv = pack_at(p, pack_take(p, n_kv * sizeof *kv, 8));
  /* Strings, the longer ones that may hold others first. */
  so->hpa_name = pack_str(p, src->hpa_name);
  so->name = pack_str(p, src->name);
  uint16_t shared = 0;
  so->namespace_ = pack_shared(p, src->namespace_, &shared, SHARED_NS);
  so->target_name = pack_str(p, src->target_name);
  so->target_api_version = pack_shared(p, src->target_api_version, &shared, SHARED_API_VERSION);
  so->target_kind = pack_shared(p, src->target_kind, &shared, SHARED_KIND);
  so->shared = (uint8_t)shared;
  so->env_source_container = pack_str(p, src->env_source_container);
  const char *formula = pack_str(p, src->modifiers->formula);
  if (mod)
    mod->formula = formula;
  for (size_t i = 0; i < n; i++) {
    const evs_trigger_t *st = &src->triggers[i];
    evs_trigger_t tt, *t = so->triggers ? &so->triggers[i] : &tt;
    *t = *st;
    t->shared_kv = 0;
    t->metric_name = pack_str(p, st->metric_name);
    for (size_t k = 0; k < st->metadata.n; k++) {
      const char *key = pack_word(p, st->metadata.items[k].key);
      const char *v = st->metadata.items[k].value;
      const char *value = k < 16 && key != NULL && shares_value(key)
                              ? pack_shared(p, v, &t->shared_kv, 1u << k)
                              : pack_str(p, v);
      if (kv)
        kv[used + k] = (evs_kv_t){key, value};
    }
    t->metadata.items = kv ? kv + used : NULL;
    used += st->metadata.n;
    t->name = pack_str(p, st->name);
    t->auth_name = pack_str(p, st->auth_name);
  }
  return p->at;
}

/* Measures so's own layout again: the choices are the same as when it was packed (the same
 * strings in the same order; shared ones take no room either way), and measuring reads neither
 * the name index nor the shared table. */
size_t evs_so__packed_size(const evs_so_t *so) {
  static const uint32_t any_index[1];
  pack_t p = {0};
  p.share = so->shared != 0;
  for (size_t i = 0; i < so->n_triggers && !p.share; i++)
    p.share = so->triggers[i].shared_kv != 0;
  return so_pack(&p, so, so->name_indexed ? any_index : NULL);
}

int evs_so_parse_mode(const evs_node_t *root, const char *source, evs_so_mode_t mode,
                      evs_so_t **out, evs_diag_t *diag, evs_diag_t *warnings) {
  char srcbuf[300];
  _Alignas(8) char first[SCRATCH_FIRST];
  evs_so__ctx_t c;
  evs_so_t so;
  size_t start = diag ? diag->n : 0;
  *out = NULL;
  init_so(&so);
  memset(&c, 0, sizeof c);
  c.diag = diag;
  c.so = &so;
  c.mode = mode;
  c.warn = warnings;
  c.cur = first;
  c.left = sizeof first;
  evs_path_init(&c.path);
  if (source == NULL) {
    source_name(root, srcbuf, sizeof srcbuf);
    source = srcbuf;
  }
  c.source = source;
  if (root == NULL || root->kind != EVS_NODE_MAP) {
    evs_so__err(&c, root, NULL, "a ScaledObject must be a mapping");
  } else {
    const char *av = get_str(&c, root, "apiVersion", 0);
    const char *kind = get_str(&c, root, "kind", 0);
    if (av && strcmp(av, "keda.sh/v1alpha1") != 0)
      evs_so__err(&c, evs_node_get(root, "apiVersion"), "apiVersion",
                  "must be \"keda.sh/v1alpha1\", not \"%s\"", av);
    if (kind && strcmp(kind, "ScaledObject") != 0)
      evs_so__err(&c, evs_node_get(root, "kind"), "kind", "must be \"ScaledObject\", not \"%s\"",
                  kind);
    evs_so__check_fields(&c, root);
    parse_metadata(&c, root);
    parse_spec(&c, root);
    finish_names(&c, root);
  }
  /* The checks run field by field in schema order; the user reads the file top to bottom. */
  if (diag)
    evs_diag_sort(diag, start);
  int rc = c.errors ? EVS_EINVALCFG : 0;
  if (rc == 0) {
    /* Measure, then write the object into one block of exactly its size; both passes under
     * the shared table's lock, so that they make the same choices. */
    pack_t p = {0};
    int share = shared_lock();
    p.share = share;
    size_t size = so_pack(&p, &so, c.name_index);
    memset(&p, 0, sizeof p);
    p.share = share;
    p.base = malloc(size);
    if (p.base != NULL)
      so_pack(&p, &so, c.name_index);
    if (share)
      uv_mutex_unlock(&shared_mu);
    if (p.base == NULL || p.oom) {
      if (p.base != NULL)
        shared_release((evs_so_t *)p.base);
      free(p.base);
      rc = UV_ENOMEM;
    } else {
      *out = (evs_so_t *)p.base;
      if (so.modifiers != &EVS_SO_NO_MODIFIERS) /* moved to *out */
        ((evs_so_modifiers_t *)so.modifiers)->formula_compiled = NULL;
    }
  }
  if (so.modifiers->formula_compiled)
    evs_formula_free(so.modifiers->formula_compiled);
  scratch_free(&c);
  return rc;
}

int evs_so_parse(const evs_node_t *root, const char *source, evs_so_t **out, evs_diag_t *diag) {
  return evs_so_parse_mode(root, source, EVS_SO_FILE, out, diag, NULL);
}

int evs_so_parse_yaml(const char *buf, size_t len, const char *file, evs_so_t **out,
                      evs_diag_t *diag) {
  evs_doc_t *doc = NULL;
  size_t first = diag ? diag->n : 0;
  *out = NULL;
  int rc = evs_doc_parse_yaml(buf, len, file, &doc, diag);
  if (rc != 0) {
    /* The YAML reader reports a key's problems when its mapping closes: file order too. */
    if (diag)
      evs_diag_sort(diag, first);
    return rc;
  }
  rc = evs_so_parse(evs_doc_root(doc), file ? file : "<input>", out, diag);
  evs_doc_free(doc);
  return rc;
}

void evs_so_free(evs_so_t *so) {
  if (so == NULL)
    return;
  if (so->modifiers->formula_compiled)
    evs_formula_free(so->modifiers->formula_compiled);
  shared_release(so);
  free(so); /* everything else is in the same block */
}

/* ---- accessors ---- */

int32_t evs_so_polling_interval_s(const evs_so_t *so, int32_t dflt) {
  if (so->polling_interval_s >= 0)
    return so->polling_interval_s;
  return dflt > 0 ? dflt : 30; /* withtriggers_types.go defaultPollingInterval */
}

int32_t evs_so_cooldown_s(const evs_so_t *so, int32_t dflt) {
  if (so->cooldown_period_s >= 0)
    return so->cooldown_period_s;
  return dflt > 0 ? dflt : 300; /* scale_executor.go defaultCooldownPeriod */
}

int32_t evs_so_initial_cooldown_s(const evs_so_t *so) {
  return so->initial_cooldown_period_s >= 0 ? so->initial_cooldown_period_s : 0;
}

int32_t evs_so_min(const evs_so_t *so) { return so->min_replicas >= 0 ? so->min_replicas : 0; }

int32_t evs_so_max(const evs_so_t *so) {
  return so->max_replicas >= 0 ? so->max_replicas : 100; /* defaultHPAMaxReplicas */
}

int evs_so_is_paused(const evs_so_t *so) { return so->paused_replicas >= 0 || so->paused; }

size_t evs_so__name_hash(const char *name) {
  uint64_t h = 14695981039346656037ull;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * 1099511628211ull;
  return (size_t)h;
}

size_t evs_so__index_slots(size_t n) {
  size_t slots = 8;
  while (slots < 2 * n)
    slots *= 2;
  return slots;
}

static int index_lookup(const evs_so_t *so, const uint32_t *index, size_t mask, const char *name) {
  for (size_t slot = evs_so__name_hash(name) & mask; index[slot]; slot = (slot + 1) & mask) {
    uint32_t i = index[slot] - 1;
    if (strcmp(so->triggers[i].name, name) == 0)
      return (int)i;
  }
  return -1;
}

int evs_so_trigger_index(const evs_so_t *so, const char *name) {
  if (so->name_indexed)
    return index_lookup(so, (const uint32_t *)(so->triggers + so->n_triggers),
                        evs_so__index_slots(so->n_triggers) - 1, name);
  for (size_t i = 0; i < so->n_triggers; i++)
    if (so->triggers[i].name && strcmp(so->triggers[i].name, name) == 0)
      return (int)i;
  return -1;
}

const char *evs_trigger_type(const evs_trigger_t *t) {
  switch (t->kind) {
  case EVS_TRIG_REDIS:
    return "redis";
  case EVS_TRIG_PROMETHEUS:
    return "prometheus";
  case EVS_TRIG_CRON:
    return "cron";
  }
  return "";
}

const char *evs_so_source(const evs_so_t *so, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s", so->namespace_, so->name);
  return buf;
}

void evs_so_scaler_config(const evs_so_t *so, size_t i, evs_scaler_config_t *cfg,
                          char source_buf[EVS_SO_SOURCE_MAX]) {
  const evs_trigger_t *t = &so->triggers[i];
  memset(cfg, 0, sizeof *cfg);
  cfg->type = evs_trigger_type(t);
  cfg->name = t->name;
  cfg->index = i;
  cfg->object = evs_so_source(so, source_buf, EVS_SO_SOURCE_MAX);
  cfg->metric_type_value = t->metric_type == EVS_METRIC_VALUE;
  cfg->metadata = t->metadata;
}

int32_t evs_so_deletion_replicas(const evs_so_t *so, int32_t original_replicas) {
  if (so->restore_to_original && original_replicas >= 0)
    return original_replicas;
  return -1;
}
