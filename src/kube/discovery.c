/* API discovery: scalable kinds and served versions. See evscale/discovery.h. */
#include "evscale/discovery.h"
#include "evscale/buf.h"
#include "evscale/error.h"
#include "evscale/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct evs_kube_discovery_run_s {
  evs_kube_t *k;
  evs_kube_discovery_t *d;
  evs_kube_discovery_cb cb;
  void *arg;
  evs_kube_req_t **reqs; /* in flight (NULL when done) */
  char **gvs;            /* group versions whose lists are fetched; reqs[i] for gvs[i] */
  size_t n_gvs, ngv_cap, failed_cap, scal_cap;
  size_t pending;
  size_t nreqs; /* entries of reqs */
  int stage;    /* 0: /version, /api and /apis; 1: resource lists */
  int error, done;
  char msg[1024];
};

void evs_kube_discovery_free(evs_kube_discovery_t *d) {
  if (d == NULL)
    return;
  for (size_t i = 0; i < d->n_scalable; i++) {
    evs_kube_scalable_t *s = &d->scalable[i];
    free(s->group), free(s->version), free(s->kind), free(s->resource);
  }
  for (size_t i = 0; i < d->n_failed; i++)
    free(d->failed[i]);
  free(d->scalable), free(d->failed), free(d);
}

const evs_kube_scalable_t *evs_kube_discovery_find(const evs_kube_discovery_t *d, const char *group,
                                                   const char *kind) {
  for (size_t i = 0; i < d->n_scalable; i++)
    if (strcmp(d->scalable[i].group, group) == 0 && strcmp(d->scalable[i].kind, kind) == 0)
      return &d->scalable[i];
  return NULL;
}

static int evs__served(json_t *versions, const char *v) {
  size_t i;
  json_t *gv;
  json_array_foreach(versions, i, gv) {
    const char *s = json_string_value(json_object_get(gv, "version"));
    if (s && strcmp(s, v) == 0)
      return 1;
  }
  return 0;
}

static void evs__group_flags(evs_kube_discovery_t *d, const char *name, json_t *versions) {
  if (strcmp(name, "autoscaling") == 0) {
    /* autoscaling/v2 is GA from 1.23; 1.20 serves v2beta2 (and v2beta1, v1). */
    const char *pick = evs__served(versions, "v2")        ? "v2"
                       : evs__served(versions, "v2beta2") ? "v2beta2"
                       : evs__served(versions, "v1")      ? "v1"
                                                          : "";
    snprintf(d->hpa_version, sizeof d->hpa_version, "%s", pick);
  } else if (strcmp(name, "events.k8s.io") == 0 && evs__served(versions, "v1")) {
    snprintf(d->events_group_version, sizeof d->events_group_version, "events.k8s.io/v1");
  } else if (strcmp(name, "coordination.k8s.io") == 0) {
    d->coordination_v1 = evs__served(versions, "v1");
  } else if (strcmp(name, "keda.sh") == 0) {
    d->keda_v1alpha1 = evs__served(versions, "v1alpha1");
  }
}

int evs_kube_discovery_groups(evs_kube_discovery_t *d, const char *json, size_t len, char ***gvs,
                              size_t *n) {
  json_t *root = json_loadb(json, len, 0, NULL);
  json_t *groups = json_object_get(root, "groups");
  if (!json_is_array(groups)) {
    json_decref(root);
    return EVS_EJSON;
  }
  if (d->events_group_version[0] == '\0')
    snprintf(d->events_group_version, sizeof d->events_group_version, "v1");
  size_t i, cap = *n;
  json_t *g;
  int rc = 0;
  json_array_foreach(groups, i, g) {
    const char *name = json_string_value(json_object_get(g, "name"));
    json_t *versions = json_object_get(g, "versions");
    const char *pref =
        json_string_value(json_object_get(json_object_get(g, "preferredVersion"), "groupVersion"));
    if (name == NULL || !json_is_array(versions))
      continue;
    d->n_groups++;
    evs__group_flags(d, name, versions);
    if (pref == NULL) /* the first listed version is the preferred one (types.go) */
      pref = json_string_value(json_object_get(json_array_get(versions, 0), "groupVersion"));
    if (pref == NULL)
      continue;
    char *copy = strdup(pref);
    if (copy == NULL || evs_buf_reserve((void **)gvs, &cap, *n + 1, sizeof **gvs, 32) != 0) {
      free(copy);
      rc = UV_ENOMEM;
      break;
    }
    (*gvs)[(*n)++] = copy;
  }
  json_decref(root);
  return rc;
}

static int evs__add_scalable(evs_kube_discovery_t *d, const char *gv, json_t *parent,
                             const char *resource) {
  const char *kind = json_string_value(json_object_get(parent, "kind"));
  if (kind == NULL)
    return 0;
  const char *slash = strchr(gv, '/');
  size_t cap = d->n_scalable;
  if (evs_buf_reserve((void **)&d->scalable, &cap, d->n_scalable + 1, sizeof *d->scalable, 16) != 0)
    return UV_ENOMEM;
  evs_kube_scalable_t *s = &d->scalable[d->n_scalable];
  s->group = slash ? strndup(gv, (size_t)(slash - gv)) : strdup("");
  s->version = strdup(slash ? slash + 1 : gv);
  s->kind = strdup(kind);
  s->resource = strdup(resource);
  s->namespaced = json_is_true(json_object_get(parent, "namespaced"));
  d->n_scalable++;
  if (!s->group || !s->version || !s->kind || !s->resource)
    return UV_ENOMEM;
  return 0;
}

int evs_kube_discovery_resources(evs_kube_discovery_t *d, const char *json, size_t len) {
  json_t *root = json_loadb(json, len, 0, NULL);
  json_t *res = json_object_get(root, "resources");
  const char *gv = json_string_value(json_object_get(root, "groupVersion"));
  if (!json_is_array(res) || gv == NULL) {
    json_decref(root);
    return EVS_EJSON;
  }
  size_t i;
  json_t *r;
  int rc = 0;
  json_array_foreach(res, i, r) {
    const char *name = json_string_value(json_object_get(r, "name"));
    size_t nl = name ? strlen(name) : 0;
    if (nl <= 6 || strcmp(name + nl - 6, "/scale") != 0 || memchr(name, '/', nl - 6))
      continue;
    size_t j;
    json_t *p;
    json_array_foreach(res, j, p) {
      const char *pn = json_string_value(json_object_get(p, "name"));
      if (pn && strlen(pn) == nl - 6 && strncmp(pn, name, nl - 6) == 0) {
        rc = evs__add_scalable(d, gv, p, pn);
        break;
      }
    }
    if (rc != 0)
      break;
  }
  json_decref(root);
  return rc;
}

/* --- the run --- */

static void evs__run_end(evs_kube_discovery_run_t *run) {
  if (run->done)
    return;
  run->done = 1;
  evs_kube_discovery_t *d = run->error ? NULL : run->d;
  if (run->error)
    evs_kube_discovery_free(run->d);
  run->d = NULL;
  run->cb(run->error, d, run->error ? run->msg : NULL, run->arg);
  for (size_t i = 0; i < run->n_gvs; i++)
    free(run->gvs[i]);
  free(run->gvs), free(run->reqs), free(run);
}

static void evs__add_failed(evs_kube_discovery_run_t *run, const char *gv, const char *why) {
  evs_kube_discovery_t *d = run->d;
  char buf[300];
  snprintf(buf, sizeof buf, "%s: %s", gv, why);
  EVS_LOG_WARN("kubernetes API group unavailable; continuing without it",
               EVS_KV_STR("group_version", gv), EVS_KV_STR("error", why));
  char *c = strdup(buf);
  if (c && evs_buf_reserve((void **)&d->failed, &run->failed_cap, d->n_failed + 1,
                           sizeof *d->failed, 4) == 0)
    d->failed[d->n_failed++] = c;
  else
    free(c);
}

static void evs__fail(evs_kube_discovery_run_t *run, int err, const char *fmt, const char *a,
                      const char *b) {
  if (run->error)
    return;
  run->error = err;
  snprintf(run->msg, sizeof run->msg, fmt, a, b);
  /* The other requests of this stage are canceled; their callbacks see run->error. */
  for (size_t i = 0; i < run->nreqs; i++)
    if (run->reqs[i])
      evs_kube_cancel(run->reqs[i]);
}

static int evs__get(evs_kube_discovery_run_t *run, size_t slot, const char *path);

static void evs__start_lists(evs_kube_discovery_run_t *run) {
  run->stage = 1;
  evs_kube_req_t **reqs = realloc(run->reqs, (run->n_gvs + 3) * sizeof *reqs);
  if (reqs == NULL) {
    run->error = UV_ENOMEM;
    evs__run_end(run);
    return;
  }
  run->reqs = reqs;
  run->nreqs = run->n_gvs + 3;
  memset(reqs, 0, (run->n_gvs + 3) * sizeof *reqs);
  run->pending = 1; /* held while starting */
  char path[300];
  for (size_t i = 0; i < run->n_gvs && !run->error; i++) {
    snprintf(path, sizeof path, "/apis/%s", run->gvs[i]);
    if (evs__get(run, i + 3, path) != 0)
      evs__fail(run, UV_ENOMEM, "%s%s", "cannot start discovery requests", "");
  }
  if (evs__get(run, 2, "/api/v1") != 0)
    evs__fail(run, UV_ENOMEM, "%s%s", "cannot start discovery requests", "");
  if (--run->pending == 0)
    evs__run_end(run);
}

static const char *evs__slot_gv(evs_kube_discovery_run_t *run, size_t slot) {
  return slot == 2 ? "v1" : run->gvs[slot - 3];
}

static void evs__on_list(evs_kube_discovery_run_t *run, size_t slot, int err,
                         const evs_http_response_t *resp, const char *msg) {
  char why[200];
  if (run->error)
    return;
  if (err != 0 || resp->status != 200) {
    if (err != 0)
      snprintf(why, sizeof why, "%s", msg ? msg : evs_strerror(err));
    else
      snprintf(why, sizeof why, "HTTP %d", resp->status);
    if (slot == 2) /* the core group is not optional */
      evs__fail(run, err ? err : EVS_ESTATUS, "GET /api/v1: %s%s", why, "");
    else
      evs__add_failed(run, evs__slot_gv(run, slot), why);
    return;
  }
  int rc = evs_kube_discovery_resources(run->d, resp->body, resp->body_len);
  if (rc == UV_ENOMEM)
    evs__fail(run, rc, "%s%s", "out of memory", "");
  else if (rc != 0)
    evs__add_failed(run, evs__slot_gv(run, slot), "malformed resource list");
}

static void evs__on_top(evs_kube_discovery_run_t *run, size_t slot, int err,
                        const evs_http_response_t *resp, const char *msg) {
  static const char *const paths[] = {"/version", "/api", "/apis"};
  char why[400];
  if (run->error)
    return;
  if (err != 0 || resp->status != 200) {
    if (err != 0)
      snprintf(why, sizeof why, "%s", msg ? msg : evs_strerror(err));
    else
      snprintf(why, sizeof why, "HTTP %d%s%.200s", resp->status, resp->body ? ": " : "",
               resp->body ? resp->body : "");
    if (slot == 0) { /* /version is informative only */
      EVS_LOG_WARN("kubernetes /version unavailable", EVS_KV_STR("error", why));
      return;
    }
    evs__fail(run, err ? err : EVS_ESTATUS, "GET %s: %s", paths[slot], why);
    return;
  }
  if (slot == 0) {
    json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *v = json_string_value(json_object_get(root, "gitVersion"));
    snprintf(run->d->git_version, sizeof run->d->git_version, "%s", v ? v : "");
    json_decref(root);
  } else if (slot == 2) {
    int rc = evs_kube_discovery_groups(run->d, resp->body, resp->body_len, &run->gvs, &run->n_gvs);
    if (rc != 0)
      evs__fail(run, rc, "GET /apis: %s%s", evs_strerror(rc), "");
  }
  /* /api (slot 1) only proves the core group is there: its one version is v1. */
}

typedef struct {
  evs_kube_discovery_run_t *run;
  size_t slot;
} evs__slot_t;

static void evs__on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                         const char *msg, void *arg) {
  (void)req;
  evs__slot_t *s = arg;
  evs_kube_discovery_run_t *run = s->run;
  size_t slot = s->slot;
  free(s);
  run->reqs[slot] = NULL;
  if (run->stage == 0)
    evs__on_top(run, slot, err, resp, msg);
  else
    evs__on_list(run, slot, err, resp, msg);
  if (--run->pending > 0)
    return;
  if (run->stage == 0 && !run->error)
    evs__start_lists(run);
  else
    evs__run_end(run);
}

static int evs__get(evs_kube_discovery_run_t *run, size_t slot, const char *path) {
  evs__slot_t *s = malloc(sizeof *s);
  if (s == NULL)
    return UV_ENOMEM;
  *s = (evs__slot_t){run, slot};
  evs_kube_request_opts_t o = {
      .verb = "GET", .path = path, .resource = "discovery", .on_done = evs__on_done, .arg = s};
  int rc = evs_kube_request(run->k, &o, &run->reqs[slot]);
  if (rc != 0) {
    free(s);
    return rc;
  }
  run->pending++;
  return 0;
}

int evs_kube_discover(evs_kube_t *k, evs_kube_discovery_cb cb, void *arg,
                      evs_kube_discovery_run_t **out) {
  evs_kube_discovery_run_t *run = calloc(1, sizeof *run);
  if (run == NULL || (run->d = calloc(1, sizeof *run->d)) == NULL ||
      (run->reqs = calloc(3, sizeof *run->reqs)) == NULL) {
    if (run)
      free(run->d);
    free(run);
    return UV_ENOMEM;
  }
  run->k = k;
  run->nreqs = 3;
  run->cb = cb;
  run->arg = arg;
  static const char *const paths[] = {"/version", "/api", "/apis"};
  int rc = 0;
  run->pending = 1;
  for (size_t i = 0; i < 3 && rc == 0; i++)
    rc = evs__get(run, i, paths[i]);
  if (rc != 0 && run->pending == 1) {
    evs_kube_discovery_free(run->d);
    free(run->reqs), free(run);
    return rc;
  }
  if (rc != 0)
    evs__fail(run, rc, "%s%s", "cannot start discovery requests", "");
  if (out)
    *out = run;
  if (--run->pending == 0) {
    evs__run_end(run);
    if (out)
      *out = NULL;
  }
  return 0;
}

void evs_kube_discovery_cancel(evs_kube_discovery_run_t *run) {
  run->pending++;
  evs__fail(run, EVS_ECANCELED, "%s%s", "canceled", "");
  if (--run->pending == 0)
    evs__run_end(run);
}
