/* room: kube
 * Informer: a list+watch cache of one Kubernetes collection, as client-go's reflector and
 * informer, on the loop.
 *
 *   evs_informer_options_t o = {.kube = kube,
 *       .path = "/apis/keda.sh/v1alpha1/namespaces/prod/scaledobjects",
 *       .decode = so_decode, .free_data = so_free, .on_add = added, .on_synced = synced,
 *       .arg = me};
 *   evs_informer_start(loop, &o, &inf);
 *   ...
 *   evs_informer_close(inf, closed_cb, me);
 *
 * Transport: with options.kube set (the process's way), every list and watch goes through the
 * Kubernetes client (evscale/kube.h: its credentials and their refresh, a 401 retried with a
 * reloaded credential, Retry-After, the rate limiter at EVS_PRIO_LOW, the API-client metrics); a
 * read_only (--dry-run) client allows them, they are GETs. Without it the informer talks to an
 * HTTP client directly (http, base_url, tls, decorate): tests and benchmarks against scripted
 * servers use that.
 *
 * Protocol (Kubernetes v1.20.2, kubernetes/kubernetes commit
 * faecb196815e248d3ecfb03c680a4507229c2a56; client-go tools/cache/reflector.go does the same):
 * - LIST `path?limit=N[&continue=C]` page by page (metadata.continue), a consistent snapshot at
 *   the list's metadata.resourceVersion;
 * - then WATCH `path?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=T`: a
 *   stream of one JSON WatchEvent {"type","object"} per line (ADDED, MODIFIED, DELETED,
 *   BOOKMARK, ERROR). Every event advances the cache's resourceVersion; a BOOKMARK only does that.
 * - The server ends a watch after T seconds: it is restarted at once from the last
 *   resourceVersion. A watch silent for idle_timeout_ms (T + 30 s) is presumed dead (a peer gone
 *   without a FIN, a stuck proxy) and restarted the same way.
 * - Transport errors and 429/5xx are retried with exponential backoff and full jitter
 *   (Retry-After honoured as a floor); the watch resumes from the last resourceVersion, so
 *   nothing is missed or delivered twice.
 * - 410 Gone (a 410 response, or an ERROR event whose Status has code 410: the resourceVersion
 *   left the server's window) relists, and the difference between the cache and the new list
 *   is delivered as on_add / on_update / on_delete. An update is delivered only when the
 *   object's resourceVersion changed; an object whose uid changed under the same name is
 *   delivered as a delete then an add.
 *
 * The cache keeps, per object, what the decode callback extracts (a compact struct of the
 * caller's) plus namespace (interned), name, uid and resourceVersion (packed when they have the
 * usual form), in an open-addressing hash table keyed by namespace/name. A list page is parsed
 * one item at a time (evs_informer_list_parse) and each item's JSON tree is freed right after
 * decode.
 *
 * Callbacks run on the loop. Objects passed to handlers are borrowed: `old` is freed right after
 * on_update/on_delete returns, `obj` of on_add stays valid while it is in the cache. Handlers may
 * call evs_informer_close (the informer then stops delivering). */
#ifndef EVSCALE_INFORMER_H
#define EVSCALE_INFORMER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "evscale/http_client.h"
#include "evscale/intern.h"
#include "evscale/kube.h"

typedef struct evs_informer_s evs_informer_t;

/* One cached object: a single allocation, the fixed part then the name and the uid and
 * resourceVersion that are not packed. At 50,000 ScaledObjects (issue 13) every byte here is
 * 50 KB: a canonical uid (36 lowercase hex-and-dash characters, what the API server generates)
 * is kept as its 16 bytes and a resourceVersion that is a decimal without leading zeros fitting
 * in 64 bits as the number; any other form (the API says both are opaque strings) is kept as
 * the string. Both read back byte-exactly through evs_informer_obj_uid / _rv. The cache never
 * compares two resourceVersions for order, only for equality. */
typedef struct evs_informer_obj_s {
  const char *ns;   /* interned; "" for cluster-scoped objects */
  void *data;       /* what decode returned (owned by the cache; freed with free_data); with
                       options.drop_data, only while on_add/on_update runs, NULL in the cache */
  uint64_t rv_;     /* internal: the resourceVersion when numeric */
  uint8_t uid_[16]; /* internal: the uid when canonical */
  uint32_t hash_;   /* internal */
  uint8_t flags_;   /* internal */
  char name[];      /* NUL-terminated */
} evs_informer_obj_t;

/* Room for a uid or resourceVersion the object packs, with its NUL. */
#define EVS_INFORMER_UID_BUF 37
#define EVS_INFORMER_RV_BUF 21
/* metadata.uid ("" when the object had none) and metadata.resourceVersion, byte-exactly as
 * received: either written into buf or a pointer into the object; valid while both live. */
const char *evs_informer_obj_uid(const evs_informer_obj_t *o, char buf[EVS_INFORMER_UID_BUF]);
const char *evs_informer_obj_rv(const evs_informer_obj_t *o, char buf[EVS_INFORMER_RV_BUF]);

/* Before every request: add headers (Authorization ...) into hdrs[*n .. cap) and advance *n;
 * may also replace req->tls. The strings must stay valid until the callback's caller has started
 * the request (evs_http_request copies them). Return 0, or a negative code: the attempt then
 * fails and is retried with backoff. */
typedef int (*evs_informer_decorate_cb)(evs_http_request_opts_t *req, evs_http_header_t *hdrs,
                                        size_t *n, size_t cap, void *arg);

/* Extracts what the cache keeps from one object (borrowed JSON, freed after the call) into
 * *out (may stay NULL). A negative return skips the object (it is logged and not cached; an
 * update that fails to decode removes the previous version, delivered as a delete). */
typedef int (*evs_informer_decode_cb)(const json_t *obj, void **out, void *arg);

typedef struct {
  /* When set, every request goes through evs_kube_request (credentials, limiter at EVS_PRIO_LOW
   * for lists/watches, metrics); http/base_url/tls/decorate are then ignored. Borrowed: must
   * outlive the informer. */
  evs_kube_t *kube;
  evs_http_client_t *http;    /* borrowed: must outlive the informer */
  const char *base_url;       /* "https://host:port" (copied) */
  evs_tls_config_t *tls;      /* borrowed; may be NULL for http:// */
  const char *path;           /* collection, e.g. "/api/v1/namespaces/ns/configmaps" (copied); all
                                 namespaces: "/apis/keda.sh/v1alpha1/scaledobjects" */
  const char *label_selector; /* optional (copied) */
  unsigned page_size;         /* 500 */
  unsigned watch_timeout_s;   /* server-side timeoutSeconds; 300 */
  uint64_t list_timeout_ms;   /* one page; 60000 (a filtered page may scan the whole kind) */
  uint64_t idle_timeout_ms;   /* client-side: a watch silent this long is restarted;
                                 0: watch_timeout_s * 1000 + 30000 */
  size_t max_line_bytes;      /* one watch event; 16 MiB (larger: relist after backoff) */
  uint64_t backoff_initial_ms, backoff_max_ms; /* 500, 30000 */
  evs_intern_t *intern; /* borrowed, shared between informers; NULL: the informer's own */

  evs_informer_decorate_cb decorate; /* optional */
  void *decorate_arg;
  evs_informer_decode_cb decode; /* optional: NULL keeps metadata only */
  void (*free_data)(void *data, void *arg);
  /* 1: data is for on_add/on_update only, freed (free_data) once the handler returns; cached
   * objects then carry data NULL (evs_informer_get, foreach, the `old` of on_update and
   * on_delete). For an owner that moves what it needs elsewhere, as the ScaledObject
   * informer's handler hands the parsed object to the registry: the cache then keeps only the
   * metadata that relists are compared on. */
  int drop_data;

  void (*on_add)(evs_informer_t *inf, const evs_informer_obj_t *obj, void *arg);
  void (*on_update)(evs_informer_t *inf, const evs_informer_obj_t *old,
                    const evs_informer_obj_t *obj, void *arg);
  void (*on_delete)(evs_informer_t *inf, const evs_informer_obj_t *old, void *arg);
  void (*on_synced)(evs_informer_t *inf, void *arg); /* once, after the first full list */
  void *arg;
} evs_informer_options_t;

typedef struct {
  uint64_t lists;         /* full lists completed */
  uint64_t list_pages;    /* pages received */
  uint64_t relists;       /* lists after the first (410, oversize line) */
  uint64_t watches;       /* watch requests started */
  uint64_t events;        /* watch events applied (bookmarks excluded) */
  uint64_t bookmarks;     /* BOOKMARK events */
  uint64_t gone;          /* 410s seen (response or ERROR event) */
  uint64_t failures;      /* failed attempts (transport, status, decode) */
  uint64_t idle_restarts; /* watches restarted for silence */
  uint64_t duplicates;    /* ADDED/MODIFIED with the cached resourceVersion, not delivered */
} evs_informer_stats_t;

/* Starts listing at once. 0, UV_EINVAL (missing path, or neither kube nor http and base_url),
 * UV_ENOMEM. *out is freed by evs_informer_close. */
int evs_informer_start(uv_loop_t *loop, const evs_informer_options_t *opts, evs_informer_t **out);
/* Stops (cancels the request in flight; no handler runs after this returns), frees every cached
 * object (free_data, no on_delete), then calls cb(arg) from a later loop iteration. */
void evs_informer_close(evs_informer_t *inf, void (*cb)(void *arg), void *arg);

/* Borrowed; NULL when absent. ns "" for cluster-scoped objects. */
const evs_informer_obj_t *evs_informer_get(const evs_informer_t *inf, const char *ns,
                                           const char *name);
size_t evs_informer_count(const evs_informer_t *inf);
int evs_informer_synced(const evs_informer_t *inf);
/* The last resourceVersion seen (list, event or bookmark); "" before the first list. */
const char *evs_informer_resource_version(const evs_informer_t *inf);
/* Calls fn for every cached object (order unspecified); fn must not close the informer. */
void evs_informer_foreach(const evs_informer_t *inf,
                          void (*fn)(const evs_informer_obj_t *obj, void *arg), void *arg);
void evs_informer_get_stats(const evs_informer_t *inf, evs_informer_stats_t *out);

/* --- Internal, exposed for the fuzzer and unit tests: the watch stream decoder. --- */
typedef enum {
  EVS_INFORMER_EV_ADDED = 1,
  EVS_INFORMER_EV_MODIFIED,
  EVS_INFORMER_EV_DELETED,
  EVS_INFORMER_EV_BOOKMARK,
  EVS_INFORMER_EV_ERROR
} evs_informer_event_type_t;

typedef struct {
  evs_informer_event_type_t type;
  json_t *root;         /* new reference: the whole event (json_decref it) */
  const json_t *object; /* borrowed from root */
  int code;             /* ERROR: the Status's code (0 if absent) */
} evs_informer_event_t;

/* Splits a byte stream into lines ('\n'; a trailing '\r' is dropped) no longer than max. */
typedef struct {
  char *buf;
  size_t len, cap, max;
} evs_informer_lines_t;

/* Calls line(ctx, text, len) per complete non-empty line; stops when it returns nonzero (and
 * returns that). EVS_ETOOBIG when a line exceeds max (the buffer is then reset). */
int evs_informer_lines_feed(evs_informer_lines_t *l, const char *buf, size_t n,
                            int (*line)(void *ctx, const char *text, size_t len), void *ctx);
void evs_informer_lines_free(evs_informer_lines_t *l);
/* One line → event. 0, EVS_EJSON (not JSON), EVS_EPARSE (not a WatchEvent: unknown type, object
 * missing or not an object). */
int evs_informer_event_parse(const char *line, size_t len, evs_informer_event_t *ev);

/* One LIST response body, a Kubernetes List ({"items": [...], "metadata": {"continue",
 * "resourceVersion"}, ...}, members in any order), parsed item by item: item(ctx, obj) runs for
 * every element of items in order, obj borrowed and freed when it returns, so one item's tree is
 * alive at a time, never the page's. Returns 0 (meta->cont and meta->rv: new strings, or NULL
 * when absent; free them), item's first nonzero return (parsing stops there), EVS_EJSON
 * (malformed, items missing or not an array, a second items or metadata, bytes after the List)
 * or UV_ENOMEM; on any nonzero return meta holds NULLs, and the items before the fault have been
 * delivered. */
typedef struct {
  char *cont, *rv;
} evs_informer_list_meta_t;
int evs_informer_list_parse(const char *body, size_t len, int (*item)(void *ctx, const json_t *obj),
                            void *ctx, evs_informer_list_meta_t *meta);

/* metadata of an object, borrowed from it. 0 or EVS_EPARSE when name or resourceVersion is
 * missing (namespace and uid may be absent: cluster-scoped, bookmarks). */
typedef struct {
  const char *ns, *name, *uid, *rv;
  size_t ns_len;
} evs_informer_meta_t;
int evs_informer_meta_get(const json_t *obj, evs_informer_meta_t *m);

/* The cache entry for m as the informer builds it, with data NULL and ns (NUL-terminated, not
 * copied: it must outlive the entry) as its namespace. One allocation of *size bytes (may be
 * NULL): free() it. NULL when out of memory. */
evs_informer_obj_t *evs_informer__entry_new(const evs_informer_meta_t *m, const char *ns,
                                            size_t *size);

#endif
