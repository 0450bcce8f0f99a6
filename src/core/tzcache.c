/* Asynchronous zone loading with a per-(loop, name) cache.
 *
 * One entry per zone being read or in use: the first request reads the file with file.h's reader
 * (libuv's thread pool, so the loop never blocks on a slow mount; a FIFO or device under TZDIR is
 * refused, not waited on), later
 * requests for the same zone wait on the same read or, once it is parsed, share the zone by
 * reference. The entry dies with its zone's last reference (evs_tz__cache_forget), so nothing
 * outlives its users and uv_loop_close sees no leftovers. A failed read is not cached: the next
 * request tries again (a zone file may be installed later).
 *
 * Every request owns a uv_timer_t used only to deliver its callback from a later loop
 * iteration, which keeps callbacks out of evs_tz_load's caller's stack, and is freed from that
 * timer's close callback. Loop thread only. */
#include "evscale/tz.h"
#include "evscale/error.h"
#include "evscale/file.h"
#include "tz_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_MAX_FILE (10u << 20)

typedef struct tz_entry_s tz_entry_t;

struct evs_tz_load_s {
  uv_timer_t timer;
  evs_tz_load_cb cb;
  void *data;
  int status;
  int canceled;
  const evs_tz_t *tz;  /* a reference, held from delivery until the callback returned */
  evs_tz_load_t *next; /* waiting on an entry */
};

struct tz_entry_s {
  tz_entry_t *next;
  uv_loop_t *loop;
  char *name;
  evs_tz_t *tz; /* NULL while reading; then weak: the zone's refs keep the entry */
  int reading;
  evs_tz_load_t *waiters;
};

static tz_entry_t *evs__tz_entries;

static void req_on_close(uv_handle_t *h) { free(h->data); }

static void req_on_timer(uv_timer_t *t) {
  evs_tz_load_t *req = t->data;
  int status = req->canceled ? UV_ECANCELED : req->status;
  req->cb(req, status, status == 0 ? req->tz : NULL, req->data);
  evs_tz_unref(req->tz);
  req->tz = NULL;
  req->timer.data = req;
  uv_close((uv_handle_t *)&req->timer, req_on_close);
}

/* Hands the result to the request; its callback runs on the next loop iteration. */
static void req_deliver(evs_tz_load_t *req, int status, const evs_tz_t *tz) {
  req->status = status;
  req->tz = status == 0 ? evs_tz_ref(tz) : NULL;
  uv_timer_start(&req->timer, req_on_timer, 0, 0);
}

static void entry_unlink(tz_entry_t *e) {
  for (tz_entry_t **pp = &evs__tz_entries; *pp; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      return;
    }
}

static void entry_free(tz_entry_t *e) {
  entry_unlink(e);
  free(e->name);
  free(e);
}

void evs_tz__cache_forget(void *entry) { entry_free(entry); }

static void entry_finish(tz_entry_t *e, int status, const uint8_t *buf, size_t len) {
  evs_tz_t *tz = NULL;
  if (status == 0)
    status = evs_tz_parse(buf, len, e->name, &tz);
  else if (status == UV_ENOENT || status == UV_ENOTDIR || status == UV_EISDIR)
    status = EVS_ETZ; /* "unknown time zone": no such zone file */
  const evs_tz_t *give = tz;
  if (status != 0 && strcmp(e->name, "Local") == 0) {
    status = 0; /* Go falls back to UTC when the local zone cannot be read */
    give = evs_tz_utc();
  }
  e->reading = 0;
  evs_tz_load_t *w = e->waiters;
  e->waiters = NULL;
  for (evs_tz_load_t *next; w; w = next) {
    next = w->next;
    req_deliver(w, status, give);
  }
  if (tz == NULL) {
    entry_free(e);
    return;
  }
  e->tz = tz;
  evs_tz__set_cache(tz, e);
  evs_tz_unref(tz); /* the requests' references keep it now; none left frees it at once */
}

static void on_file(evs_file_read_t *req, int status, const char *buf, size_t len, void *data) {
  (void)req;
  tz_entry_t *e = data;
  entry_finish(e, status, (const uint8_t *)buf, len);
}

/* "Local" is the process's zone file, as Go reads it when TZ is unset. */
static int zone_path(const char *name, char *out, size_t cap) {
  if (strcmp(name, "Local") == 0)
    return snprintf(out, cap, "/etc/localtime") < (int)cap ? 0 : UV_ENAMETOOLONG;
  const char *dir = getenv("TZDIR");
  if (dir == NULL || dir[0] == 0)
    dir = "/usr/share/zoneinfo";
  return snprintf(out, cap, "%s/%s", dir, name) < (int)cap ? 0 : UV_ENAMETOOLONG;
}

static int entry_start(uv_loop_t *loop, const char *name, tz_entry_t **out) {
  char path[4096];
  int rc = zone_path(name, path, sizeof path);
  if (rc != 0)
    return rc;
  tz_entry_t *e = calloc(1, sizeof *e);
  if (e == NULL || (e->name = strdup(name)) == NULL) {
    free(e);
    return UV_ENOMEM;
  }
  e->loop = loop;
  e->reading = 1;
  rc = evs_file_read(loop, path, TZ_MAX_FILE, on_file, e, NULL);
  if (rc != 0) {
    free(e->name);
    free(e);
    return rc;
  }
  e->next = evs__tz_entries;
  evs__tz_entries = e;
  *out = e;
  return 0;
}

static tz_entry_t *entry_find(uv_loop_t *loop, const char *name) {
  for (tz_entry_t *e = evs__tz_entries; e; e = e->next)
    if (e->loop == loop && strcmp(e->name, name) == 0)
      return e;
  return NULL;
}

int evs_tz_load(uv_loop_t *loop, const char *name, evs_tz_load_cb cb, void *data,
                evs_tz_load_t **out) {
  if (evs_tz_name_check(name) != 0)
    return EVS_ETZ;
  evs_tz_load_t *req = calloc(1, sizeof *req);
  if (req == NULL)
    return UV_ENOMEM;
  req->cb = cb;
  req->data = data;
  uv_timer_init(loop, &req->timer);
  req->timer.data = req;
  *out = req;
  /* Go's LoadLocation: "" and "UTC" are built in. */
  if (name[0] == 0 || strcmp(name, "UTC") == 0) {
    req_deliver(req, 0, evs_tz_utc());
    return 0;
  }
  tz_entry_t *e = entry_find(loop, name);
  if (e && !e->reading) {
    req_deliver(req, 0, e->tz);
    return 0;
  }
  int rc = e ? 0 : entry_start(loop, name, &e);
  if (rc != 0) {
    uv_close((uv_handle_t *)&req->timer, req_on_close);
    *out = NULL;
    return rc;
  }
  req->next = e->waiters;
  e->waiters = req;
  return 0;
}

void evs_tz_load_cancel(evs_tz_load_t *req) {
  if (req)
    req->canceled = 1;
}
