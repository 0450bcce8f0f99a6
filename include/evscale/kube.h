/* The Kubernetes API client: where the credentials come from, and every request to the API
 * server going through one HTTP client with the Authorization header, the priority rate limiter,
 * Retry-After, a 401 refresh, and metrics.
 *
 *   evs_kube_new(loop, &opts, &kube);
 *   evs_kube_open(kube, opened, me);         // reads files, runs an exec plugin: async
 *   ... opened(kube, 0, NULL, me) ...
 *   evs_kube_request_opts_t r = {.verb = "GET", .path = "/api", .on_done = done, .arg = me};
 *   evs_kube_request(kube, &r, NULL);
 *
 * Where the credentials come from, in controller-runtime's order (sigs.k8s.io/controller-runtime
 * pkg/client/config/config.go loadConfig: --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config):
 *  1. `kubernetes.kubeconfig` (a missing file is an error);
 *  2. $KUBECONFIG, its files merged as kubectl merges them (missing files skipped, as client-go
 *     skips them);
 *  3. in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, with `token`, `ca.crt`
 *     and `namespace` under `kubernetes.service_account_dir`;
 *  4. ~/.kube/config when it exists.
 * `kubernetes.context` picks a kubeconfig context (else its current-context). Every file is read
 * through the shared async reader (evscale/file.h): a FIFO or device is refused, never blocks.
 *
 * Credentials and their refresh:
 *  - a token file (the service account's `token`, a kubeconfig `tokenFile`) is re-read when its
 *    directory changes (projected tokens rotate by swapping the `..data` symlink; a uv_fs_event
 *    on the directory sees it) and after a 401. Requests already sent keep the header they were
 *    sent with: an open watch is never dropped for a new token;
 *  - an exec plugin's credential (evscale/execcred.h) is cached until evs_execcred_refresh_at,
 *    refreshed then (a timer) and after a 401; requests made while it runs wait for it; when
 *    the plugin fails they fail with its message (EVS_ESTATUS/EVS_EPARSE/EVS_ETIMEDOUT);
 *  - a client certificate (file or data, or from an exec plugin) is in the TLS config.
 * A request answered 401 is sent once more with the refreshed credential; its second 401 is
 * the caller's.
 *
 * Retry-After: a 429 or 503 with Retry-After to an idempotent verb (GET, HEAD, PUT, DELETE,
 * OPTIONS) is sent again after that many seconds (capped at 60 s, at most 5 times), as client-go's
 * request.go does for every response carrying Retry-After; other verbs get the response.
 *
 * Metrics (when opts.metrics is set):
 *   evscale_kube_requests_total{verb,resource,code}   code "<error>" for a transport failure
 *   evscale_kube_request_duration_seconds{verb}       histogram, first send to last answer
 *   evscale_kube_ratelimiter_wait_seconds{priority}   histogram, time spent waiting for a token
 *   evscale_kube_ratelimiter_waiting{priority}        gauge, requests waiting for a token now
 *   evscale_kube_connections                          gauge, connections open to the server
 *   evscale_kube_credential_refreshes_total{source,result}
 *
 * Ownership: the options are copied; evs_kube_close frees the client after every request has
 * had its on_done (EVS_ECANCELED) and every handle has closed. */
#ifndef EVSCALE_KUBE_H
#define EVSCALE_KUBE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "evscale/http_client.h"
#include "evscale/metrics.h"
#include "evscale/ratelimit.h"

/* Content types of the writes (scale writer, status patcher, lease elector). */
#define EVS_KUBE_MERGE_PATCH "application/merge-patch+json"
#define EVS_KUBE_JSON "application/json"

typedef struct evs_kube_s evs_kube_t;
typedef struct evs_kube_req_s evs_kube_req_t;

typedef struct {
  const char *kubeconfig;          /* "" or NULL: see the order above */
  const char *context;             /* "" or NULL: current-context */
  const char *service_account_dir; /* NULL: /var/run/secrets/kubernetes.io/serviceaccount */
  char **envp;                     /* KUBECONFIG, KUBERNETES_SERVICE_*, HOME; NULL: environ */
  double qps;                      /* <= 0: unlimited */
  unsigned burst;
  uint64_t request_timeout_ms; /* 0: 30 s */
  size_t max_response_bytes;   /* 0: the HTTP client's default */
  uint64_t exec_timeout_ms;    /* 0: 60 s */
  /* A scheduled plugin run that fails (the credential still in force) is tried again after
   * this long, so an expiring credential is not left to a 401. 0: 10 s. */
  uint64_t exec_retry_ms;
  evs_metrics_t *metrics; /* borrowed, may be NULL */
  /* --dry-run: every verb but GET and HEAD is refused by evs_kube_request (EVS_EUNSUPPORTED),
   * so a dry run cannot write whatever code asks it to. */
  int read_only;
} evs_kube_options_t;

typedef enum {
  EVS_KUBE_SRC_NONE = 0,
  EVS_KUBE_SRC_KUBECONFIG, /* kubernetes.kubeconfig */
  EVS_KUBE_SRC_KUBECONFIG_ENV,
  EVS_KUBE_SRC_IN_CLUSTER,
  EVS_KUBE_SRC_HOME /* ~/.kube/config */
} evs_kube_source_t;

/* Which source the options and environment select (a pure look, besides one access(2) for
 * ~/.kube/config): EVS_KUBE_SRC_NONE when there is none, so evscale runs without Kubernetes. */
evs_kube_source_t evs_kube_source_of(const evs_kube_options_t *opts);

/* *out new (close with evs_kube_close). 0, UV_EINVAL (no source), UV_ENOMEM. */
int evs_kube_new(uv_loop_t *loop, const evs_kube_options_t *opts, evs_kube_t **out);

/* msg: NULL on success, else why (borrowed for the call; names the file, context or plugin). */
typedef void (*evs_kube_open_cb)(evs_kube_t *k, int status, const char *msg, void *arg);
/* Loads the credentials (files, kubeconfig, exec plugin) and builds the TLS config. cb runs
 * exactly once from the loop. May be called again after a failure (a retry re-reads
 * everything). 0 or EVS_ESTATE (already open or opening). */
int evs_kube_open(evs_kube_t *k, evs_kube_open_cb cb, void *arg);

/* After a successful open: "https://127.0.0.1:6443" (borrowed). */
const char *evs_kube_server(const evs_kube_t *k);
/* How evscale authenticates, for the log: "in-cluster service account (/var/run/...)",
 * "kubeconfig /x (context c, user u, token)", "... exec plugin aws", ... (borrowed). */
const char *evs_kube_describe(const evs_kube_t *k);
/* The namespace of the context or service account; "default" when none. Borrowed. */
const char *evs_kube_namespace(const evs_kube_t *k);
/* How many times the credential has been (re)loaded: the token re-read or the plugin run. */
unsigned evs_kube_credential_generation(const evs_kube_t *k);

/* resp as the HTTP client's (NULL with err != 0); msg: for an error, what happened in words
 * (a plugin's failure), else NULL. Borrowed for the call. */
typedef void (*evs_kube_done_cb)(evs_kube_req_t *req, int err, const evs_http_response_t *resp,
                                 const char *msg, void *arg);

typedef struct {
  const char *verb;     /* "GET", "PATCH", ... */
  const char *path;     /* "/apis/apps/v1/namespaces/x/deployments/y/scale?..." (copied) */
  const char *resource; /* metrics label ("deployments/scale"); NULL: derived from path */
  const char *content_type;
  const void *body; /* copied */
  size_t body_len;
  evs_prio_t priority;
  uint64_t timeout_ms; /* 0: request_timeout_ms; UINT64_MAX: none (watches) */
  uint64_t stream_idle_timeout_ms;
  evs_http_head_cb on_head; /* both set: streaming (no 401 or Retry-After retry once streaming) */
  evs_http_body_cb on_body;
  evs_kube_done_cb on_done; /* required; exactly once for an accepted request */
  void *arg;
} evs_kube_request_opts_t;

/* 0 (on_done will run, never from inside this call), UV_EINVAL, UV_ENOMEM, EVS_ESTATE (not
 * open, or closing), EVS_EUNSUPPORTED (a write on a read_only client). *out (may be NULL) borrowed
 * until on_done. */
int evs_kube_request(evs_kube_t *k, const evs_kube_request_opts_t *opts, evs_kube_req_t **out);
/* on_done(EVS_ECANCELED) runs before this returns (or after the streaming callback returns). */
void evs_kube_cancel(evs_kube_req_t *req);

/* The HTTP client (borrowed), for tests and metrics. */
evs_http_client_t *evs_kube_http(const evs_kube_t *k);

/* Cancels every request, stops watching files and plugins, then calls cb(arg) and frees. */
void evs_kube_close(evs_kube_t *k, void (*cb)(void *arg), void *arg);

/* The resource label of a path: "/apis/apps/v1/namespaces/n/deployments/x/scale" ->
 * "deployments/scale", "/api/v1/pods" -> "pods", "/apis" -> "apis". Pure. */
void evs_kube_path_resource(const char *path, char *buf, size_t cap);

/* Copies the message of a Kubernetes Status body ({"kind":"Status","message":...}) into buf, or
 * "HTTP <status>" when the body has none. Returns buf. Pure. */
const char *evs_kube_status_message(const evs_http_response_t *resp, char *buf, size_t cap);

/* The body of a DELETE that removes exactly the object of `uid` (meta/v1 DeleteOptions,
 * preconditions.uid; a replacement of the same name answers 409) and lets the garbage collector
 * remove its dependents in the background. Returns a string the caller frees, or NULL (out of
 * memory, uid not UTF-8). Pure. */
char *evs_kube_delete_options(const char *uid);

#endif
