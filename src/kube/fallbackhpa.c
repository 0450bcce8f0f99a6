/* The circuit breaker's fallback HPA and annotations. See include/evscale/fallbackhpa.h. */
#include "evscale/fallbackhpa.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"

/* At most this many POST/GET/PUT (or GET/DELETE) rounds: each further round follows a race with
 * another writer (the object replaced or deleted between two requests), which does not repeat. */
#define MAX_ROUNDS 5

/* ---- the builder ---- */

static int path_safe(const char *s) {
  return s != NULL && s[0] != '\0' && strlen(s) < 254 && strpbrk(s, "/?#% ") == NULL;
}

static int spec_valid(const evs_fallbackhpa_spec_t *s) {
  return s != NULL && s->version != NULL &&
         (strcmp(s->version, "v2") == 0 || strcmp(s->version, "v2beta2") == 0) &&
         path_safe(s->ns) && path_safe(s->name) && path_safe(s->so_name) && s->so_uid != NULL &&
         s->so_uid[0] != '\0' && s->target_api_version != NULL && s->target_kind != NULL &&
         s->target_kind[0] != '\0' && s->target_name != NULL && s->target_name[0] != '\0' &&
         s->min_replicas >= 1 && s->max_replicas >= s->min_replicas && s->utilization >= 1 &&
         s->resource != NULL &&
         (strcmp(s->resource, "cpu") == 0 || strcmp(s->resource, "memory") == 0);
}

/* A label value: at most 63 characters, ending in a letter or digit (KEDA's hpa.go cuts its name
 * label the same way; a ScaledObject's name may be 253 long, and a longer value is refused). */
static json_t *label_value(const char *s) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.63s", s);
  size_t n = strlen(buf);
  while (n > 0 && !isalnum((unsigned char)buf[n - 1]))
    buf[--n] = '\0';
  return json_string(buf);
}

/* The HPA defaults written out (see the header for the sources). */
static json_t *behavior(void) {
  return json_pack("{s:{s:i, s:s, s:[{s:s, s:i, s:i}, {s:s, s:i, s:i}]},"
                   " s:{s:i, s:s, s:[{s:s, s:i, s:i}]}}",
                   "scaleUp", "stabilizationWindowSeconds", 0, "selectPolicy", "Max", "policies",
                   "type", "Pods", "value", 4, "periodSeconds", 15, "type", "Percent", "value", 100,
                   "periodSeconds", 15, "scaleDown", "stabilizationWindowSeconds", 300,
                   "selectPolicy", "Max", "policies", "type", "Percent", "value", 100,
                   "periodSeconds", 15);
}

json_t *evs_fallbackhpa_build(const evs_fallbackhpa_spec_t *s) {
  if (!spec_valid(s))
    return NULL;
  char api_version[32];
  snprintf(api_version, sizeof api_version, "autoscaling/%s", s->version);
  json_t *labels = json_pack("{s:o, s:o, s:s}", "app.kubernetes.io/name", label_value(s->name),
                             "app.kubernetes.io/part-of", label_value(s->so_name),
                             "app.kubernetes.io/managed-by", EVS_FALLBACKHPA_MANAGED_BY);
  json_t *owner = json_pack("[{s:s, s:s, s:s, s:s, s:b, s:b}]", "apiVersion", "keda.sh/v1alpha1",
                            "kind", "ScaledObject", "name", s->so_name, "uid", s->so_uid,
                            "controller", 1, "blockOwnerDeletion", 1);
  json_t *metric = json_pack("[{s:s, s:{s:s, s:{s:s, s:i}}}]", "type", "Resource", "resource",
                             "name", s->resource, "target", "type", "Utilization",
                             "averageUtilization", (int)s->utilization);
  json_t *ref = json_pack("{s:s, s:s, s:s}", "apiVersion", s->target_api_version, "kind",
                          s->target_kind, "name", s->target_name);
  /* json_pack's "o" steals even on failure, and a NULL argument fails the whole pack. */
  return json_pack("{s:s, s:s, s:{s:s, s:s, s:o, s:o}, s:{s:o, s:i, s:i, s:o, s:o}}", "apiVersion",
                   api_version, "kind", "HorizontalPodAutoscaler", "metadata", "name", s->name,
                   "namespace", s->ns, "labels", labels, "ownerReferences", owner, "spec",
                   "scaleTargetRef", ref, "minReplicas", (int)s->min_replicas, "maxReplicas",
                   (int)s->max_replicas, "metrics", metric, "behavior", behavior());
}

/* ---- operations ---- */

typedef enum { OP_ENSURE, OP_DELETE, OP_ANNOTATE } op_kind_t;
typedef enum { ST_POST, ST_GET, ST_PUT, ST_DELETE, ST_PATCH } op_stage_t;

struct evs_fallbackhpa_op_s {
  evs_kube_t *k;
  evs_kube_req_t *req;
  op_kind_t kind;
  op_stage_t stage;
  int rounds, canceled;
  json_t *want;   /* ensure: the object */
  char *body;     /* annotate: the patch */
  char *so_uid;   /* ensure, delete (may be NULL for delete) */
  char coll[600]; /* .../horizontalpodautoscalers */
  char path[900]; /* the object */
  evs_fallbackhpa_cb cb;
  void *arg;
};

static void op_free(evs_fallbackhpa_op_t *op) {
  json_decref(op->want);
  free(op->body);
  free(op->so_uid);
  free(op);
}

/* Frees the op, then calls back: the op is gone inside cb, so cb may start another. */
static void finish(evs_fallbackhpa_op_t *op, int err, int status, const char *msg) {
  evs_fallbackhpa_cb cb = op->cb;
  void *arg = op->arg;
  op_free(op);
  cb(err, status, msg, arg);
}

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                    void *arg);

static int op_send(evs_fallbackhpa_op_t *op, op_stage_t stage, const char *verb, const char *path,
                   const char *ctype, const char *body) {
  evs_kube_request_opts_t o = {.verb = verb,
                               .path = path,
                               .content_type = ctype,
                               .body = body,
                               .body_len = body ? strlen(body) : 0,
                               .priority = EVS_PRIO_HIGH,
                               .on_done = on_done,
                               .arg = op};
  op->stage = stage;
  return evs_kube_request(op->k, &o, &op->req);
}

static int send_json(evs_fallbackhpa_op_t *op, op_stage_t stage, const char *verb, const char *path,
                     json_t *j) {
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  if (body == NULL)
    return UV_ENOMEM;
  int rc = op_send(op, stage, verb, path, EVS_KUBE_JSON, body);
  free(body);
  return rc;
}

static int start_round(evs_fallbackhpa_op_t *op) {
  if (++op->rounds > MAX_ROUNDS)
    return EVS_ESTATE;
  if (op->kind == OP_ENSURE)
    return send_json(op, ST_POST, "POST", op->coll, op->want);
  return op_send(op, ST_GET, "GET", op->path, NULL, NULL);
}

/* Is the object (a GET's body) this ScaledObject's HPA? 1 yes; 0 no, with why in `why`. */
static int ours(evs_fallbackhpa_op_t *op, json_t *obj, char *why, size_t cap) {
  json_t *meta = json_object_get(obj, "metadata");
  const char *by = json_string_value(
      json_object_get(json_object_get(meta, "labels"), "app.kubernetes.io/managed-by"));
  if (by == NULL || strcmp(by, EVS_FALLBACKHPA_MANAGED_BY) != 0) {
    snprintf(why, cap, "app.kubernetes.io/managed-by is %s%s%s, not " EVS_FALLBACKHPA_MANAGED_BY,
             by ? "\"" : "", by ? by : "unset", by ? "\"" : "");
    return 0;
  }
  if (op->so_uid == NULL)
    return 1;
  size_t i;
  json_t *ref;
  json_array_foreach(json_object_get(meta, "ownerReferences"), i, ref) {
    const char *uid = json_string_value(json_object_get(ref, "uid"));
    if (uid != NULL && strcmp(uid, op->so_uid) == 0)
      return 1;
  }
  snprintf(why, cap, "it has no owner reference to ScaledObject uid %s", op->so_uid);
  return 0;
}

/* Ends the op with the API server's answer: EVS_ESTATUS, its status and its Status message. */
static void fail_status(evs_fallbackhpa_op_t *op, const evs_http_response_t *resp) {
  char msg[512];
  evs_kube_status_message(resp, msg, sizeof msg);
  finish(op, EVS_ESTATUS, resp->status, msg);
}

/* The GET answered 200: decide what to send next. 0 sent or finished, else an error to end with. */
static int on_found(evs_fallbackhpa_op_t *op, const evs_http_response_t *resp) {
  json_t *obj = json_loadb(resp->body ? resp->body : "", resp->body_len, 0, NULL);
  json_t *meta = json_object_get(obj, "metadata");
  const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
  const char *uid = json_string_value(json_object_get(meta, "uid"));
  if (rv == NULL || uid == NULL) {
    json_decref(obj);
    return EVS_EJSON;
  }
  char why[300], msg[1400];
  if (!ours(op, obj, why, sizeof why)) {
    snprintf(msg, sizeof msg,
             "HorizontalPodAutoscaler %s exists and is not evscale's for this "
             "ScaledObject: %s",
             op->path, why);
    json_decref(obj);
    finish(op, UV_EEXIST, resp->status, msg);
    return 0;
  }
  int rc;
  if (op->kind == OP_ENSURE) {
    json_object_set_new(json_object_get(op->want, "metadata"), "resourceVersion", json_string(rv));
    rc = send_json(op, ST_PUT, "PUT", op->path, op->want);
    json_object_del(json_object_get(op->want, "metadata"), "resourceVersion");
  } else {
    /* The uid precondition: a different object of the same name (deleted and created again since
     * the GET) answers 409 and is read again rather than deleted unseen. */
    char *d = evs_kube_delete_options(uid);
    rc = d ? op_send(op, ST_DELETE, "DELETE", op->path, EVS_KUBE_JSON, d) : UV_ENOMEM;
    free(d);
  }
  json_decref(obj);
  return rc;
}

/* The next step after an answer. 0 when a request was sent or the op finished. */
static int step(evs_fallbackhpa_op_t *op, const evs_http_response_t *resp) {
  int st = resp->status;
  int ok = st >= 200 && st <= 299;
  switch (op->stage) {
  case ST_POST:
    if (ok)
      break;
    if (st == 409) /* AlreadyExists: whose is it? */
      return op_send(op, ST_GET, "GET", op->path, NULL, NULL);
    fail_status(op, resp);
    return 0;
  case ST_GET:
    if (st == 404 && op->kind == OP_DELETE)
      break;
    if (st == 404) /* deleted since the POST: create it */
      return start_round(op);
    if (st == 200)
      return on_found(op, resp);
    fail_status(op, resp);
    return 0;
  case ST_PUT:
  case ST_DELETE:
    if (ok || (st == 404 && op->stage == ST_DELETE))
      break;
    /* 409 Conflict (a newer resourceVersion) or a failed uid precondition, or 404: the object
     * changed or went away since the GET; another round sees it as it is now. */
    if (st == 409 || st == 404)
      return start_round(op);
    fail_status(op, resp);
    return 0;
  case ST_PATCH:
    if (ok)
      break;
    fail_status(op, resp);
    return 0;
  }
  finish(op, 0, st, NULL);
  return 0;
}

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                    void *arg) {
  (void)req;
  evs_fallbackhpa_op_t *op = arg;
  op->req = NULL;
  if (op->canceled) {
    op_free(op);
    return;
  }
  if (err != 0) {
    finish(op, err, resp ? resp->status : 0, msg ? msg : evs_strerror(err));
    return;
  }
  int rc = step(op, resp);
  if (rc != 0) {
    char buf[1100];
    snprintf(buf, sizeof buf, "%s %s: %s", op->stage == ST_GET ? "reading" : "writing", op->path,
             op->rounds > MAX_ROUNDS ? "the object kept changing under evscale" : evs_strerror(rc));
    finish(op, rc, resp->status, buf);
  }
}

static int op_new(evs_kube_t *k, op_kind_t kind, evs_fallbackhpa_cb cb, void *arg,
                  evs_fallbackhpa_op_t **out) {
  if (k == NULL || cb == NULL)
    return UV_EINVAL;
  evs_fallbackhpa_op_t *op = calloc(1, sizeof *op);
  if (op == NULL)
    return UV_ENOMEM;
  op->k = k;
  op->kind = kind;
  op->cb = cb;
  op->arg = arg;
  *out = op;
  return 0;
}

static void hpa_paths(evs_fallbackhpa_op_t *op, const char *version, const char *ns,
                      const char *name) {
  snprintf(op->coll, sizeof op->coll, "/apis/autoscaling/%s/namespaces/%s/horizontalpodautoscalers",
           version, ns);
  snprintf(op->path, sizeof op->path, "%s/%s", op->coll, name);
}

/* Sends the first request, or frees the op when that fails (the callback then never runs). */
static int launch(evs_fallbackhpa_op_t *op, int rc, evs_fallbackhpa_op_t **out) {
  if (rc == 0)
    rc = start_round(op);
  if (rc != 0) {
    op_free(op);
    return rc;
  }
  if (out != NULL)
    *out = op;
  return 0;
}

int evs_fallbackhpa_ensure(evs_kube_t *k, const evs_fallbackhpa_spec_t *s, evs_fallbackhpa_cb cb,
                           void *arg, evs_fallbackhpa_op_t **out) {
  if (!spec_valid(s))
    return UV_EINVAL;
  evs_fallbackhpa_op_t *op;
  int rc = op_new(k, OP_ENSURE, cb, arg, &op);
  if (rc != 0)
    return rc;
  hpa_paths(op, s->version, s->ns, s->name);
  op->want = evs_fallbackhpa_build(s);
  op->so_uid = strdup(s->so_uid);
  return launch(op, op->want && op->so_uid ? 0 : UV_ENOMEM, out);
}

int evs_fallbackhpa_delete(evs_kube_t *k, const char *version, const char *ns, const char *name,
                           const char *so_uid, evs_fallbackhpa_cb cb, void *arg,
                           evs_fallbackhpa_op_t **out) {
  if (!path_safe(version) || !path_safe(ns) || !path_safe(name))
    return UV_EINVAL;
  evs_fallbackhpa_op_t *op;
  int rc = op_new(k, OP_DELETE, cb, arg, &op);
  if (rc != 0)
    return rc;
  hpa_paths(op, version, ns, name);
  if (so_uid != NULL && (op->so_uid = strdup(so_uid)) == NULL)
    rc = UV_ENOMEM;
  return launch(op, rc, out);
}

/* An annotation's value: NULL -> null (removes the key); a string that is not UTF-8 -> NULL. */
static json_t *annotation_value(const char *v) { return v == NULL ? json_null() : json_string(v); }

int evs_fallbackhpa_annotate(evs_kube_t *k, const char *ns, const char *so_name,
                             const char *triggered, const char *state, evs_fallbackhpa_cb cb,
                             void *arg, evs_fallbackhpa_op_t **out) {
  if (!path_safe(ns) || !path_safe(so_name))
    return UV_EINVAL;
  json_t *t = annotation_value(triggered), *st = annotation_value(state);
  if (t == NULL || st == NULL) {
    json_decref(t), json_decref(st);
    return UV_EINVAL;
  }
  evs_fallbackhpa_op_t *op;
  int rc = op_new(k, OP_ANNOTATE, cb, arg, &op);
  if (rc != 0) {
    json_decref(t), json_decref(st);
    return rc;
  }
  snprintf(op->path, sizeof op->path, "/apis/keda.sh/v1alpha1/namespaces/%s/scaledobjects/%s", ns,
           so_name);
  json_t *patch =
      json_pack("{s:{s:{s:o, s:o}}}", "metadata", "annotations",
                EVS_FALLBACKHPA_TRIGGERED_ANNOTATION, t, EVS_FALLBACKHPA_STATE_ANNOTATION, st);
  op->body = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
  json_decref(patch);
  if (op->body == NULL) {
    op_free(op);
    return UV_ENOMEM;
  }
  /* One request: a merge patch needs no resourceVersion and cannot conflict. */
  rc = op_send(op, ST_PATCH, "PATCH", op->path, EVS_KUBE_MERGE_PATCH, op->body);
  if (rc != 0) {
    op_free(op);
    return rc;
  }
  if (out != NULL)
    *out = op;
  return 0;
}

void evs_fallbackhpa_cancel(evs_fallbackhpa_op_t *op) {
  if (op == NULL)
    return;
  op->canceled = 1;
  if (op->req != NULL)
    evs_kube_cancel(op->req); /* on_done runs now and frees the op */
  else
    op_free(op);
}
