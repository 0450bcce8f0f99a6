/* spec.triggers of a ScaledObject: common fields (apis/keda/v1alpha1/scaletriggers_types.go
 * ValidateTriggers) and each supported type's target, activation target and required parameters,
 * read as kedacore/keda 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a reads them:
 *  - pkg/scalers/redis_scaler.go: listName (required), listLength (int64, default 5),
 *    activationListLength (int64, default 0), databaseIndex (int), enableTLS / unsafeSsl (bool);
 *  - pkg/scalers/prometheus_scaler.go: serverAddress, query (required), threshold (float64,
 *    required), activationThreshold (float64, default 0), ignoreNullValues / unsafeSsl (bool);
 *  - pkg/scalers/cron_scaler.go: timezone, start, end (required), desiredReplicas (int64,
 *    required, != 0), start != end; target 1 (GetMetricSpecForScaling specReplicas), activation 0.
 * Parameter values go through pkg/scalers/scalersconfig/typed_config.go: trimmed, an empty value
 * counts as absent, numbers decoded by json.Unmarshal, bools by strconv.ParseBool. Cron
 * expressions and zones are checked here with the cron scaler's own parser and zone check, so
 * check-config refuses what creation would; things only the scaler can check (addresses that may
 * come from a TriggerAuthentication) are left to the scaler's create. */
#include <stdio.h>
#include <string.h>

#include "evscale/cron.h"
#include "evscale/cronexpr.h"
#include "evscale/error.h"
#include "evscale/metricname.h"
#include "evscale/param.h"
#include "so_check.h"

/* A trimmed metadata value, or NULL when absent or empty (KEDA's configParamValue). */
static const char *param(const evs_trigger_t *t, const char *key, char *buf, size_t cap) {
  const char *v = evs_kvs_get(&t->metadata, key);
  if (v == NULL)
    return NULL;
  if (evs_param_trim(v, buf, cap) != 0)
    return v; /* too long for buf: certainly not a number, reported as such */
  return buf[0] ? buf : NULL;
}

static const evs_node_t *meta_node(const evs_node_t *tn, const char *key) {
  const evs_node_t *m = evs_node_get(tn, "metadata");
  const evs_node_t *v = evs_node_get(m, key);
  return v ? v : m;
}

static void require(evs_so__ctx_t *c, const evs_node_t *tn, const evs_trigger_t *t,
                    const char *key) {
  char buf[8];
  const char *v = evs_kvs_get(&t->metadata, key);
  if (v == NULL || (evs_param_trim(v, buf, sizeof buf) == 0 && buf[0] == '\0'))
    evs_so__err(c, meta_node(tn, key), key,
                "missing required parameter \"%s\" in [triggerMetadata]", key);
}

/* p_int, p_float: 0 when the parameter was read into *out, 1 when absent, -1 when refused
 * (reported). */
static int p_int(evs_so__ctx_t *c, const evs_node_t *tn, const evs_trigger_t *t, const char *key,
                 double *out) {
  char buf[64];
  int64_t v;
  const char *s = param(t, key, buf, sizeof buf);
  if (s == NULL)
    return 1;
  int rc = evs_param_json_int64(s, &v);
  if (rc == EVS_ERANGE)
    evs_so__err(c, meta_node(tn, key), key,
                "unable to set param \"%s\" value \"%.40s\": out of range for an int64", key, s);
  else if (rc != 0)
    evs_so__err(c, meta_node(tn, key), key,
                "unable to set param \"%s\" value \"%.40s\": must be an integer (int64)", key, s);
  else if (out)
    *out = (double)v;
  return rc == 0 ? 0 : -1;
}

static int p_float(evs_so__ctx_t *c, const evs_node_t *tn, const evs_trigger_t *t, const char *key,
                   double *out) {
  char buf[64];
  double v;
  const char *s = param(t, key, buf, sizeof buf);
  if (s == NULL)
    return 1;
  int rc = evs_param_json_float(s, &v);
  if (rc == EVS_ERANGE)
    evs_so__err(c, meta_node(tn, key), key,
                "unable to set param \"%s\" value \"%.40s\": out of range for a float64", key, s);
  else if (rc != 0)
    evs_so__err(c, meta_node(tn, key), key,
                "unable to set param \"%s\" value \"%.40s\": must be a number (float64)", key, s);
  else
    *out = v;
  return rc == 0 ? 0 : -1;
}

static void p_bool(evs_so__ctx_t *c, const evs_node_t *tn, const evs_trigger_t *t,
                   const char *key) {
  char buf[16];
  int b;
  const char *s = param(t, key, buf, sizeof buf);
  if (s && evs_param_go_bool(s, &b) != 0)
    evs_so__err(c, meta_node(tn, key), key, "unable to parse boolean value \"%.40s\"", s);
}

/* The target becomes the HPA's AverageValue/Value, which the HPA API requires to be positive
 * (KEDA parses "0" but its HPA is then refused). */
static void positive(evs_so__ctx_t *c, const evs_node_t *tn, const evs_trigger_t *t,
                     const char *key) {
  char buf[8];
  /* Milli precision: 0.0004 would become a zero target. */
  if (!(t->target >= 0.0005) && param(t, key, buf, sizeof buf) != NULL)
    evs_so__err(c, meta_node(tn, key), key,
                "must be at least 0.001 (it is the HPA's target, in milli-units)");
}

static void check_redis(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t) {
  t->target = 5;
  t->activation_target = 0;
  require(c, tn, t, "listName");
  /* A refused value is reported once, not again as a zero target. */
  if (p_int(c, tn, t, "listLength", &t->target) == 0)
    positive(c, tn, t, "listLength");
  p_int(c, tn, t, "activationListLength", &t->activation_target);
  p_int(c, tn, t, "databaseIndex", NULL);
  p_bool(c, tn, t, "enableTLS");
  p_bool(c, tn, t, "unsafeSsl");
}

static void check_prometheus(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t) {
  t->activation_target = 0;
  require(c, tn, t, "serverAddress");
  require(c, tn, t, "query");
  require(c, tn, t, "threshold");
  if (p_float(c, tn, t, "threshold", &t->target) == 0)
    positive(c, tn, t, "threshold");
  p_float(c, tn, t, "activationThreshold", &t->activation_target);
  p_bool(c, tn, t, "ignoreNullValues");
  p_bool(c, tn, t, "unsafeSsl");
}

/* A start or end schedule, parsed as the scaler parses it, with the zone of a TZ= prefix. */
static void cron_schedule(evs_so__ctx_t *c, const evs_node_t *tn, const char *key,
                          const char *spec) {
  evs_cronexpr_t e;
  char err[200];
  if (spec == NULL)
    return;
  if (evs_cronexpr_parse(spec, &e, err, sizeof err) != 0)
    evs_so__err(c, meta_node(tn, key), key, "error parsing %s schedule '%.60s': %s", key, spec,
                err);
  else if (e.has_zone && evs_cron_check_zone(e.zone, err, sizeof err) != 0)
    evs_so__err(c, meta_node(tn, key), key, "%s", err);
}

static void check_cron(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t) {
  char a[256], b[256];
  double desired = -1;
  t->target = 1;
  t->activation_target = 0;
  require(c, tn, t, "timezone");
  require(c, tn, t, "start");
  require(c, tn, t, "end");
  require(c, tn, t, "desiredReplicas");
  p_int(c, tn, t, "desiredReplicas", &desired);
  if (desired == 0)
    evs_so__err(c, meta_node(tn, "desiredReplicas"), "desiredReplicas",
                "no desiredReplicas specified");
  const char *s = param(t, "start", a, sizeof a);
  const char *e = param(t, "end", b, sizeof b);
  if (s && e && strcmp(s, e) == 0)
    evs_so__err(c, meta_node(tn, "end"), "end",
                "start and end can not have exactly same time input");
  cron_schedule(c, tn, "start", s);
  cron_schedule(c, tn, "end", e);
  char z[160], err[200];
  const char *zone = param(t, "timezone", z, sizeof z);
  if (zone && evs_cron_check_zone(zone, err, sizeof err) != 0)
    evs_so__err(c, meta_node(tn, "timezone"), "timezone", "%s", err);
}

/* metadata: a map of strings, copied into the scratch arena. */
static void parse_meta(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t) {
  const evs_node_t *m = evs_node_get(tn, "metadata");
  if (m == NULL || m->kind == EVS_NODE_NULL) {
    evs_so__err(c, tn, "metadata", "required field is missing");
    return;
  }
  if (m->kind != EVS_NODE_MAP) {
    evs_so__err(c, m, "metadata", "must be a mapping, not %s", evs_node_kind_name(m->kind));
    return;
  }
  evs_kv_t *kv = evs_so__alloc(c, (m->len ? m->len : 1) * sizeof *kv);
  if (kv == NULL)
    return;
  size_t saved = evs_path_push_key(&c->path, "metadata");
  size_t n = 0;
  for (size_t i = 0; i < m->len; i++) {
    const evs_node_t *k = evs_node_key(m, i), *v = evs_node_value(m, i);
    if (v->kind != EVS_NODE_STR) {
      evs_so__err(c, v, evs_node_text(k), "must be a string, not %s (quote the value)",
                  evs_node_kind_name(v->kind));
      continue;
    }
    kv[n].key = evs_so__strdup(c, evs_node_text(k));
    kv[n].value = evs_so__strdup(c, v->u.text);
    n++;
  }
  t->metadata.items = kv;
  t->metadata.n = n;
  evs_path_pop(&c->path, saved);
}

static void parse_auth_ref(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t) {
  const evs_node_t *a = evs_node_get(tn, "authenticationRef");
  if (a == NULL || a->kind == EVS_NODE_NULL)
    return;
  if (a->kind != EVS_NODE_MAP) {
    evs_so__err(c, a, "authenticationRef", "must be a mapping");
    return;
  }
  size_t saved = evs_path_push_key(&c->path, "authenticationRef");
  const evs_node_t *name = evs_node_get(a, "name"), *kind = evs_node_get(a, "kind");
  if (name == NULL || name->kind != EVS_NODE_STR || name->u.text[0] == '\0')
    evs_so__err(c, name ? name : a, "name", "required: the name of a TriggerAuthentication");
  else
    t->auth_name = evs_so__strdup(c, name->u.text);
  if (kind && kind->kind != EVS_NODE_NULL) {
    const char *k = evs_node_text(kind);
    if (kind->kind == EVS_NODE_STR && strcmp(k, "ClusterTriggerAuthentication") == 0)
      t->auth_cluster = 1;
    else if (!(kind->kind == EVS_NODE_STR && (strcmp(k, "TriggerAuthentication") == 0 || !*k)))
      evs_so__err(c, kind, "kind",
                  "unsupported value \"%s\": supported values: \"TriggerAuthentication\", "
                  "\"ClusterTriggerAuthentication\"",
                  k ? k : "");
  }
  evs_path_pop(&c->path, saved);
}

static void parse_common(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t) {
  const evs_node_t *mt = evs_node_get(tn, "metricType");
  const char *m = evs_node_text(mt);
  if (mt && mt->kind != EVS_NODE_NULL) {
    if (mt->kind == EVS_NODE_STR && strcmp(m, "Value") == 0)
      t->metric_type = EVS_METRIC_VALUE;
    else if (mt->kind == EVS_NODE_STR && strcmp(m, "Utilization") == 0)
      evs_so__err(c, mt, "metricType",
                  "'Utilization' metric type is unsupported for external metrics, allowed values "
                  "are 'Value' or 'AverageValue'");
    else if (!(mt->kind == EVS_NODE_STR && (strcmp(m, "AverageValue") == 0 || !*m)))
      evs_so__err(c, mt, "metricType",
                  "unsupported value \"%s\": supported values: \"AverageValue\", \"Value\"",
                  m ? m : "");
  }
  const evs_node_t *uc = evs_node_get(tn, "useCachedMetrics");
  if (uc && uc->kind != EVS_NODE_NULL) {
    if (uc->kind != EVS_NODE_BOOL)
      evs_so__err(c, uc, "useCachedMetrics", "must be a boolean, not %s",
                  evs_node_kind_name(uc->kind));
    else
      t->use_cached_metrics = (uint8_t)(uc->num.b != 0);
  }
  parse_auth_ref(c, tn, t);
  parse_meta(c, tn, t);
}

static int parse_type(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t) {
  static const char *const names[] = {"redis", "prometheus", "cron"};
  const evs_node_t *tv = evs_node_get(tn, "type");
  if (tv == NULL || tv->kind == EVS_NODE_NULL || (tv->kind == EVS_NODE_STR && !tv->u.text[0])) {
    evs_so__err(c, tv ? tv : tn, "type", "required field is missing");
    return -1;
  }
  for (int i = 0; i < 3; i++)
    if (tv->kind == EVS_NODE_STR && strcmp(tv->u.text, names[i]) == 0) {
      t->kind = (uint8_t)(EVS_TRIG_REDIS + i);
      return 0;
    }
  evs_so__err(c, tv, "type",
              "unsupported trigger type \"%s\": evscale supports \"redis\", \"prometheus\" and "
              "\"cron\"",
              evs_node_text(tv) ? evs_node_text(tv) : "");
  return -1;
}

static void parse_name(evs_so__ctx_t *c, const evs_node_t *tn, evs_trigger_t *t, size_t idx) {
  const evs_node_t *nv = evs_node_get(tn, "name");
  if (nv == NULL || nv->kind == EVS_NODE_NULL)
    return;
  if (nv->kind != EVS_NODE_STR) {
    evs_so__err(c, nv, "name", "must be a string, not %s", evs_node_kind_name(nv->kind));
    return;
  }
  if (nv->u.text[0] == '\0')
    return;
  evs_so_t *so = c->so;
  if (c->name_index == NULL)
    return; /* out of memory, reported */
  /* One hash probe per name rather than a scan of the earlier triggers: an object may list
   * thousands of triggers (a hostile or generated file), and this must stay linear. */
  size_t slot = evs_so__name_hash(nv->u.text) & c->name_mask;
  for (; c->name_index[slot]; slot = (slot + 1) & c->name_mask)
    if (strcmp(so->triggers[c->name_index[slot] - 1].name, nv->u.text) == 0) {
      evs_so__err(c, nv, "name",
                  "triggerName \"%s\" is defined multiple times in the ScaledObject/ScaledJob, "
                  "but it must be unique",
                  nv->u.text);
      return;
    }
  t->name = evs_so__strdup(c, nv->u.text);
  if (t->name)
    c->name_index[slot] = (uint32_t)idx + 1;
}

static void parse_trigger(evs_so__ctx_t *c, const evs_node_t *tn, size_t idx) {
  evs_trigger_t *t = &c->so->triggers[idx];
  char mn[512];
  if (tn->kind != EVS_NODE_MAP) {
    evs_so__err(c, tn, NULL, "must be a mapping, not %s", evs_node_kind_name(tn->kind));
    return;
  }
  int typed = parse_type(c, tn, t) == 0;
  parse_name(c, tn, t, idx);
  parse_common(c, tn, t);
  if (!typed)
    return;
  if (t->use_cached_metrics && t->kind == EVS_TRIG_CRON)
    evs_so__err(c, evs_node_get(tn, "useCachedMetrics"), "useCachedMetrics",
                "property \"useCachedMetrics\" is not supported for \"cron\" scaler");
  size_t saved = evs_path_push_key(&c->path, "metadata");
  if (t->kind == EVS_TRIG_REDIS)
    check_redis(c, tn, t);
  else if (t->kind == EVS_TRIG_PROMETHEUS)
    check_prometheus(c, tn, t);
  else
    check_cron(c, tn, t);
  evs_path_pop(&c->path, saved);
  int n = evs_metricname_build(evs_trigger_type(t), idx, &t->metadata, mn, sizeof mn);
  if (n < 0)
    evs_so__err(c, tn, NULL, "metric name too long");
  else
    t->metric_name = evs_so__strdup(c, mn);
}

void evs_so__parse_triggers(evs_so__ctx_t *c, const evs_node_t *spec) {
  const evs_node_t *seq = evs_node_get(spec, "triggers");
  if (seq == NULL || seq->kind == EVS_NODE_NULL || (seq->kind == EVS_NODE_SEQ && seq->len == 0)) {
    evs_so__err(c, seq ? seq : spec, "triggers",
                "no triggers defined in the ScaledObject/ScaledJob");
    return;
  }
  if (seq->kind != EVS_NODE_SEQ) {
    evs_so__err(c, seq, "triggers", "must be a list, not %s", evs_node_kind_name(seq->kind));
    return;
  }
  c->so->triggers = evs_so__alloc(c, seq->len * sizeof *c->so->triggers);
  if (c->so->triggers == NULL)
    return;
  c->so->n_triggers = seq->len;
  size_t slots = evs_so__index_slots(seq->len);
  c->name_index = evs_so__alloc(c, slots * sizeof *c->name_index);
  c->name_mask = slots - 1;
  size_t saved = evs_path_push_key(&c->path, "triggers");
  for (size_t i = 0; i < seq->len; i++) {
    size_t s2 = evs_path_push_index(&c->path, i);
    parse_trigger(c, evs_node_item(seq, i), i);
    evs_path_pop(&c->path, s2);
  }
  evs_path_pop(&c->path, saved);
}
