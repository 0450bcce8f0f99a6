/* The configuration reload watcher (see reload.h for what triggers it and why). */
#include "evscale/reload.h"
#include "evscale/error.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#define EVS__CHUNK 65536
/* Same bound as evs_config_load_file: a configuration is a few KiB. */
#define EVS__MAX_FILE (4u << 20)

struct evs_reload_s {
  uv_loop_t *loop;
  uv_timer_t debounce;
  uv_fs_event_t watch;
  uv_signal_t hup;
  uv_fs_t req; /* one file operation at a time: open, read..., close */
  int handles; /* open handles; freed when 0 and no file operation runs */
  int watching, hup_on;
  int reading; /* a file operation is in flight */
  int pending; /* a trigger arrived while reading: read again after */
  int closing;
  int status; /* error of the attempt being read */
  uv_file fd;
  char *buf;
  size_t len, cap;
  char *path, *base;
  char **envp;
  uint64_t last_hash;
  int have_hash;
  uint64_t debounce_ms;
  evs_reload_cb cb;
  void *data;
};

static void evs__read_start(evs_reload_t *r);

static void evs__maybe_free(evs_reload_t *r) {
  if (!r->closing || r->handles > 0 || r->reading)
    return;
  free(r->buf);
  free(r->path);
  free(r->base);
  free(r);
}

static void evs__on_handle_closed(uv_handle_t *h) {
  evs_reload_t *r = h->data;
  r->handles--;
  evs__maybe_free(r);
}

/* ---- triggers ---- */

static void evs__on_debounce(uv_timer_t *t) {
  evs_reload_t *r = t->data;
  if (r->reading)
    r->pending = 1;
  else
    evs__read_start(r);
}

static void evs__arm(evs_reload_t *r) {
  if (!r->closing)
    uv_timer_start(&r->debounce, evs__on_debounce, r->debounce_ms, 0);
}

/* Only the file's own name and the kubelet's "..data"/"..data_tmp"/"..<timestamp>" entries
 * matter; other files in the directory are not ours. A NULL name (overflow) could be anything. */
static void evs__on_fs_event(uv_fs_event_t *h, const char *name, int events, int status) {
  evs_reload_t *r = h->data;
  (void)events;
  if (status < 0 || name == NULL || strcmp(name, r->base) == 0 || strncmp(name, "..", 2) == 0)
    evs__arm(r);
}

static void evs__on_hup(uv_signal_t *h, int signum) {
  (void)signum;
  evs__arm(h->data);
}

int evs_reload_trigger(evs_reload_t *r) {
  if (r->closing)
    return EVS_ESTATE;
  evs__arm(r);
  return 0;
}

/* ---- one attempt: open, read, close off the loop, then parse here ---- */

static void evs__deliver(evs_reload_t *r) {
  evs_diag_t diag;
  evs_diag_init(&diag);
  if (r->closing) {
    r->cb(r, EVS_ECANCELED, NULL, &diag, r->data);
  } else if (r->status != 0) {
    evs_diag_add(&diag, r->path, 0, 0, NULL, "cannot read: %s", evs_strerror(r->status));
    r->cb(r, r->status, NULL, &diag, r->data);
  } else {
    uint64_t h = evs_config_hash(r->buf, r->len);
    if (!r->have_hash || h != r->last_hash) {
      /* Bad bytes are remembered too: the same broken file is reported once, not per event. */
      r->last_hash = h;
      r->have_hash = 1;
      evs_config_t *cfg = NULL;
      int rc = evs_config_load_buffer(r->buf, r->len, r->path, r->envp, &cfg, &diag);
      r->cb(r, rc, cfg, &diag, r->data);
    }
  }
  evs_diag_free(&diag);
}

static void evs__finish(evs_reload_t *r) {
  r->reading = 0;
  evs__deliver(r);
  if (r->pending && !r->closing) {
    r->pending = 0;
    evs__arm(r);
  }
  evs__maybe_free(r);
}

static void evs__on_close_file(uv_fs_t *req) {
  uv_fs_req_cleanup(req);
  evs__finish(req->data);
}

static void evs__close_file(evs_reload_t *r, int status) {
  if (r->status == 0)
    r->status = status;
  if (uv_fs_close(r->loop, &r->req, r->fd, evs__on_close_file) != 0)
    evs__finish(r);
}

static void evs__on_read(uv_fs_t *req);

static void evs__read_next(evs_reload_t *r) {
  if (r->len > EVS__MAX_FILE) {
    evs__close_file(r, EVS_ETOOBIG);
    return;
  }
  if (r->cap - r->len < EVS__CHUNK) {
    char *nb = realloc(r->buf, r->cap + EVS__CHUNK);
    if (nb == NULL) {
      evs__close_file(r, UV_ENOMEM);
      return;
    }
    r->buf = nb;
    r->cap += EVS__CHUNK;
  }
  uv_buf_t b = uv_buf_init(r->buf + r->len, EVS__CHUNK);
  int rc = uv_fs_read(r->loop, &r->req, r->fd, &b, 1, (int64_t)r->len, evs__on_read);
  if (rc != 0)
    evs__close_file(r, rc);
}

static void evs__on_read(uv_fs_t *req) {
  evs_reload_t *r = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  if (r->closing || n <= 0)
    evs__close_file(r, r->closing ? EVS_ECANCELED : (int)n);
  else {
    r->len += (size_t)n;
    evs__read_next(r);
  }
}

static void evs__on_open(uv_fs_t *req) {
  evs_reload_t *r = req->data;
  ssize_t fd = req->result;
  uv_fs_req_cleanup(req);
  if (fd < 0) {
    r->status = (int)fd;
    evs__finish(r);
  } else {
    r->fd = (uv_file)fd;
    if (r->closing)
      evs__close_file(r, EVS_ECANCELED);
    else
      evs__read_next(r);
  }
}

static void evs__read_start(evs_reload_t *r) {
  r->reading = 1;
  r->status = 0;
  r->len = 0;
  r->req.data = r;
  int rc = uv_fs_open(r->loop, &r->req, r->path, O_RDONLY | O_CLOEXEC, 0, evs__on_open);
  if (rc != 0) {
    r->status = rc;
    evs__finish(r);
  }
}

/* ---- life cycle ---- */

static int evs__init_paths(evs_reload_t *r, const char *path, char **dir) {
  r->path = strdup(path);
  const char *slash = strrchr(path, '/');
  r->base = strdup(slash ? slash + 1 : path);
  *dir = slash == path ? strdup("/") : slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
  return r->path && r->base && *dir ? 0 : UV_ENOMEM;
}

static int evs__start_handles(evs_reload_t *r, const evs_reload_opts_t *opts, const char *dir) {
  int rc = 0;
  if (!opts->no_watch) {
    rc = uv_fs_event_init(r->loop, &r->watch);
    if (rc != 0)
      return rc;
    r->watch.data = r;
    r->watching = 1;
    r->handles++;
    rc = uv_fs_event_start(&r->watch, evs__on_fs_event, dir, 0);
  }
  if (rc == 0 && opts->sighup) {
    rc = uv_signal_init(r->loop, &r->hup);
    if (rc != 0)
      return rc;
    r->hup.data = r;
    r->hup_on = 1;
    r->handles++;
    rc = uv_signal_start(&r->hup, evs__on_hup, SIGHUP);
  }
  return rc;
}

int evs_reload_start(uv_loop_t *loop, const evs_reload_opts_t *opts, evs_reload_cb cb, void *data,
                     evs_reload_t **out) {
  *out = NULL;
  if (opts == NULL || opts->path == NULL || cb == NULL)
    return UV_EINVAL;
  evs_reload_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return UV_ENOMEM;
  r->loop = loop;
  r->envp = opts->envp;
  r->last_hash = opts->last_hash;
  r->have_hash = opts->have_hash;
  r->debounce_ms = opts->debounce_ms ? opts->debounce_ms : 150;
  r->cb = cb;
  r->data = data;
  char *dir = NULL;
  int rc = evs__init_paths(r, opts->path, &dir);
  if (rc == 0)
    rc = uv_timer_init(loop, &r->debounce);
  if (rc != 0) {
    free(dir);
    r->closing = 1;
    evs__maybe_free(r);
    return rc;
  }
  r->debounce.data = r;
  r->handles++;
  rc = evs__start_handles(r, opts, dir);
  free(dir);
  if (rc != 0) {
    evs_reload_close(r); /* freed from the close callbacks; cb never runs */
    return rc;
  }
  *out = r;
  return 0;
}

void evs_reload_close(evs_reload_t *r) {
  if (r == NULL || r->closing)
    return;
  r->closing = 1;
  r->pending = 0;
  uv_close((uv_handle_t *)&r->debounce, evs__on_handle_closed);
  if (r->watching)
    uv_close((uv_handle_t *)&r->watch, evs__on_handle_closed);
  if (r->hup_on)
    uv_close((uv_handle_t *)&r->hup, evs__on_handle_closed);
}
