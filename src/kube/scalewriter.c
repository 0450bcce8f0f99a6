/* See include/evscale/scalewriter.h. Only targets with a write in flight (or waiting) have a
 * record, so the list stays as short as the number of concurrent writes. */
#include "evscale/scalewriter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "evscale/error.h"
#include "evscale/list.h"

typedef struct {
  evs_list_t link;
  int32_t replicas;
  evs_scalewriter_cb cb;
  void *arg;
} waiter_t;

typedef struct {
  evs_list_t link; /* in w->targets */
  evs_scalewriter_t *w;
  evs_kube_req_t *req; /* the write in flight, NULL when none */
  int32_t written;     /* the count the write in flight carries */
  evs_list_t inflight; /* waiters the write in flight completes */
  evs_list_t pending;  /* waiters for the next write (the last one's count wins) */
  char path[512];
} target_t;

struct evs_scalewriter_s {
  evs_kube_t *kube;
  int dry_run;
  int closing;
  int in_cb; /* callbacks running: a close inside one defers the free */
  evs_list_t targets;
  unsigned busy;
  uint64_t sent;
};

int evs_scalewriter_new(evs_kube_t *kube, const evs_scalewriter_options_t *opts,
                        evs_scalewriter_t **out) {
  if (kube == NULL || out == NULL)
    return UV_EINVAL;
  evs_scalewriter_t *w = calloc(1, sizeof *w);
  if (w == NULL)
    return UV_ENOMEM;
  w->kube = kube;
  w->dry_run = opts != NULL && opts->dry_run;
  evs_list_init(&w->targets);
  *out = w;
  return 0;
}

static int valid_part(const char *s) {
  return s != NULL && s[0] != '\0' && strpbrk(s, "/?#% ") == NULL;
}

int evs_scalewriter_path(const evs_scale_target_t *t, char *buf, size_t cap) {
  if (t == NULL || !valid_part(t->version) || !valid_part(t->resource) || !valid_part(t->ns) ||
      !valid_part(t->name) || (t->group != NULL && t->group[0] != '\0' && !valid_part(t->group)))
    return UV_EINVAL;
  int n;
  if (t->group == NULL || t->group[0] == '\0')
    n = snprintf(buf, cap, "/api/%s/namespaces/%s/%s/%s/scale", t->version, t->ns, t->resource,
                 t->name);
  else
    n = snprintf(buf, cap, "/apis/%s/%s/namespaces/%s/%s/%s/scale", t->group, t->version, t->ns,
                 t->resource, t->name);
  return n < 0 || (size_t)n >= cap ? UV_EINVAL : 0;
}

static target_t *find_target(evs_scalewriter_t *w, const char *path) {
  evs_list_foreach(it, &w->targets) {
    target_t *t = evs_container_of(it, target_t, link);
    if (strcmp(t->path, path) == 0)
      return t;
  }
  return NULL;
}

static void maybe_free_writer(evs_scalewriter_t *w) {
  if (w->closing && w->in_cb == 0 && evs_list_empty(&w->targets))
    free(w);
}

/* Runs the callbacks of every waiter on `list` with r (replicas_requested per waiter). */
static void complete_list(evs_scalewriter_t *w, evs_list_t *list, evs_scale_result_t *r) {
  w->in_cb++;
  while (!evs_list_empty(list)) {
    waiter_t *wt = evs_container_of(evs_list_first(list), waiter_t, link);
    evs_list_remove(&wt->link);
    r->replicas_requested = wt->replicas;
    r->coalesced = !evs_list_empty(list);
    wt->cb(w, r, wt->arg);
    free(wt);
  }
  w->in_cb--;
}

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *msg,
                    void *arg);

/* Starts the write of the pending waiters (the last one's count). */
static int start_write(target_t *t) {
  evs_scalewriter_t *w = t->w;
  waiter_t *last = evs_container_of(t->pending.prev, waiter_t, link);
  char body[64];
  snprintf(body, sizeof body, "{\"spec\":{\"replicas\":%ld}}", (long)last->replicas);
  evs_kube_request_opts_t o = {
      .verb = "GET", .path = t->path, .priority = EVS_PRIO_LOW, .on_done = on_done, .arg = t};
  if (!w->dry_run) {
    o.verb = "PATCH";
    o.content_type = EVS_KUBE_MERGE_PATCH;
    o.body = body;
    o.body_len = strlen(body);
    o.priority = EVS_PRIO_HIGH;
  }
  int rc = evs_kube_request(w->kube, &o, &t->req);
  if (rc != 0) {
    t->req = NULL;
    return rc;
  }
  t->written = last->replicas;
  /* The pending waiters now ride on this write. */
  while (!evs_list_empty(&t->pending)) {
    evs_list_t *l = evs_list_first(&t->pending);
    evs_list_remove(l);
    evs_list_push_back(&t->inflight, l);
  }
  w->sent++;
  w->busy++;
  return 0;
}

static int32_t json_int(json_t *obj, const char *a, const char *b) {
  json_t *v = json_object_get(json_object_get(obj, a), b);
  return json_is_integer(v) ? (int32_t)json_integer_value(v) : -1;
}

static void fill_result(evs_scale_result_t *r, int err, const evs_http_response_t *resp,
                        const char *why, char *msg, size_t cap) {
  r->err = err;
  r->replicas = r->status_replicas = -1;
  msg[0] = '\0';
  r->message = msg;
  if (resp == NULL) {
    snprintf(msg, cap, "%s", why != NULL ? why : evs_strerror(err));
    return;
  }
  r->status = resp->status;
  if (resp->status < 200 || resp->status > 299) {
    evs_kube_status_message(resp, msg, cap);
    return;
  }
  json_t *j = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
  r->replicas = json_int(j, "spec", "replicas");
  r->status_replicas = json_int(j, "status", "replicas");
  json_decref(j);
}

static void on_done(evs_kube_req_t *req, int err, const evs_http_response_t *resp, const char *why,
                    void *arg) {
  (void)req;
  target_t *t = arg;
  evs_scalewriter_t *w = t->w;
  t->req = NULL;
  w->busy--;
  char msg[256];
  evs_scale_result_t r = {.written = t->written, .dry_run = (uint8_t)w->dry_run, .path = t->path};
  fill_result(&r, err, resp, why, msg, sizeof msg);
  w->in_cb++; /* the target stays ours until its callbacks are done */
  complete_list(w, &t->inflight, &r);
  if (!evs_list_empty(&t->pending)) {
    int rc = w->closing ? EVS_ECANCELED : start_write(t);
    if (rc != 0) {
      evs_scale_result_t f = {.written = -1, .dry_run = (uint8_t)w->dry_run, .path = t->path};
      fill_result(&f, rc, NULL, NULL, msg, sizeof msg);
      complete_list(w, &t->pending, &f);
    }
  }
  if (t->req == NULL && evs_list_empty(&t->pending)) {
    evs_list_remove(&t->link);
    free(t);
  }
  w->in_cb--;
  maybe_free_writer(w);
}

int evs_scalewriter_write(evs_scalewriter_t *w, const evs_scale_target_t *tg, int32_t replicas,
                          evs_scalewriter_cb cb, void *arg) {
  if (w == NULL || cb == NULL || replicas < 0)
    return UV_EINVAL;
  if (w->closing)
    return EVS_ESTATE;
  char path[512];
  int rc = evs_scalewriter_path(tg, path, sizeof path);
  if (rc != 0)
    return rc;
  waiter_t *wt = calloc(1, sizeof *wt);
  if (wt == NULL)
    return UV_ENOMEM;
  *wt = (waiter_t){.replicas = replicas, .cb = cb, .arg = arg};
  target_t *t = find_target(w, path);
  if (t != NULL) {
    /* A write is in flight (a record exists only then): ride on the next one. */
    evs_list_push_back(&t->pending, &wt->link);
    return 0;
  }
  t = calloc(1, sizeof *t);
  if (t == NULL) {
    free(wt);
    return UV_ENOMEM;
  }
  t->w = w;
  memcpy(t->path, path, sizeof path);
  evs_list_init(&t->inflight);
  evs_list_init(&t->pending);
  evs_list_push_back(&t->pending, &wt->link);
  rc = start_write(t);
  if (rc != 0) {
    free(wt);
    free(t);
    return rc;
  }
  evs_list_push_back(&w->targets, &t->link);
  return 0;
}

uint64_t evs_scalewriter_sent(const evs_scalewriter_t *w) { return w->sent; }

unsigned evs_scalewriter_busy(const evs_scalewriter_t *w) { return w->busy; }

void evs_scalewriter_close(evs_scalewriter_t *w) {
  if (w == NULL || w->closing)
    return;
  w->closing = 1;
  w->in_cb++;
  /* Canceling runs on_done at once, which completes the target's waiters and frees it. */
  evs_list_foreach_safe(it, &w->targets) {
    target_t *t = evs_container_of(it, target_t, link);
    if (t->req != NULL)
      evs_kube_cancel(t->req);
  }
  w->in_cb--;
  maybe_free_writer(w);
}
