/* The configuration reload watcher (see reload.h for what triggers it and why). */
#include "evscale/reload.h"
#include "evscale/error.h"
#include "evscale/file.h"

#include <stdlib.h>
#include <string.h>

struct evs_reload_s {
  uv_loop_t *loop;
  uv_timer_t debounce;
  uv_fs_event_t watch;
  uv_signal_t hup;
  evs_file_read_t *file; /* the read in flight, or NULL */
  int handles;           /* open handles; freed when 0 and no file read runs */
  int watching, hup_on;
  int reading; /* a file read is in flight */
  int pending; /* a trigger arrived while reading: read again after */
  int closing;
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

/* ---- one attempt: read off the loop (file.h), then parse here ---- */

static void evs__deliver(evs_reload_t *r, int status, const char *buf, size_t len) {
  evs_diag_t diag;
  evs_diag_init(&diag);
  if (r->closing) {
    r->cb(r, EVS_ECANCELED, NULL, &diag, r->data);
  } else if (status != 0) {
    /* A FIFO or a device swapped in through "..data" is refused here, with its reason. */
    evs_diag_add(&diag, r->path, 0, 0, NULL, "cannot read: %s", evs_file_strerror(status));
    r->cb(r, status, NULL, &diag, r->data);
  } else {
    uint64_t h = evs_config_hash(buf, len);
    if (!r->have_hash || h != r->last_hash) {
      /* Bad bytes are remembered too: the same broken file is reported once, not per event. */
      r->last_hash = h;
      r->have_hash = 1;
      evs_config_t *cfg = NULL;
      int rc = evs_config_load_buffer(buf, len, r->path, r->envp, &cfg, &diag);
      r->cb(r, rc, cfg, &diag, r->data);
    }
  }
  evs_diag_free(&diag);
}

static void evs__on_file(evs_file_read_t *req, int status, const char *buf, size_t len,
                         void *data) {
  (void)req;
  evs_reload_t *r = data;
  r->file = NULL;
  r->reading = 0;
  evs__deliver(r, status, buf, len);
  if (r->pending && !r->closing) {
    r->pending = 0;
    evs__arm(r);
  }
  evs__maybe_free(r);
}

static void evs__read_start(evs_reload_t *r) {
  r->reading = 1;
  int rc = evs_file_read(r->loop, r->path, EVS_FILE_CONFIG_MAX, evs__on_file, r, &r->file);
  if (rc != 0)
    evs__on_file(NULL, rc, NULL, 0, r);
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
  /* A read in flight stops at its next step and reports EVS_ECANCELED; the watcher is freed
   * after it. */
  evs_file_read_cancel(r->file);
  uv_close((uv_handle_t *)&r->debounce, evs__on_handle_closed);
  if (r->watching)
    uv_close((uv_handle_t *)&r->watch, evs__on_handle_closed);
  if (r->hup_on)
    uv_close((uv_handle_t *)&r->hup, evs__on_handle_closed);
}
