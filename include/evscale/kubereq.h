/* The few things a writer needs to talk to the API server, until the Kubernetes client object
 * (kube.h: credentials, discovery) is merged: the HTTP client, the rate limiter, the TLS
 * configuration, the server's base URL and a request decorator that adds the credentials
 * (Authorization) to each request. The scale writer, the status patcher and the lease elector
 * borrow one of these; kube.c can fill it from its own state (its token rotation lives behind
 * the decorator).
 *
 *   evs_kubereq_conn_t c = {.http = http, .limiter = rl, .tls = tls, .decorate = add_bearer};
 *   snprintf(c.base_url, sizeof c.base_url, "%s", "https://127.0.0.1:6443");
 *   evs_kubereq_send(&c, "PATCH", "/apis/apps/v1/namespaces/ns/deployments/web/scale",
 *                    EVS_KUBEREQ_MERGE_PATCH, body, EVS_PRIO_HIGH, done, me, &req);
 */
#ifndef EVSCALE_KUBEREQ_H
#define EVSCALE_KUBEREQ_H

#include <stddef.h>
#include <stdint.h>

#include "evscale/http_client.h"
#include "evscale/ratelimit.h"
#include "evscale/tls.h"

#define EVS_KUBEREQ_MERGE_PATCH "application/merge-patch+json"
#define EVS_KUBEREQ_JSON "application/json"
#define EVS_KUBEREQ_MAX_DECORATION 4

/* Writes up to `cap` headers into hs (name and value borrowed: they must stay valid until the
 * call to evs_http_request returns, which copies them) and returns how many, or a negative code
 * (the request then fails with it, synchronously). */
typedef int (*evs_kubereq_decorate_cb)(void *arg, evs_http_header_t *hs, size_t cap);

typedef struct {
  evs_http_client_t *http;          /* borrowed; required */
  evs_ratelimit_t *limiter;         /* borrowed; NULL = no client-side limit */
  evs_tls_config_t *tls;            /* borrowed; required for https */
  char base_url[256];               /* scheme://host:port, no trailing slash */
  evs_kubereq_decorate_cb decorate; /* NULL = no credentials added */
  void *decorate_arg;
  uint64_t timeout_ms; /* 0 = the HTTP client's default */
} evs_kubereq_conn_t;

/* Sends method path (with the Accept: application/json header and, when body != NULL, the
 * Content-Type) through conn at priority prio. Returns 0 (cb runs exactly once, as for
 * evs_http_request) or a negative code without running cb. */
int evs_kubereq_send(const evs_kubereq_conn_t *conn, const char *method, const char *path,
                     const char *content_type, const char *body, evs_prio_t prio,
                     evs_http_done_cb cb, void *arg, evs_http_req_t **out);

/* Copies the message of a Kubernetes Status body ({"kind":"Status","message":...}) into buf, or
 * "HTTP <status>" when the body has none. Returns buf. */
const char *evs_kubereq_status_message(const evs_http_response_t *resp, char *buf, size_t cap);

#endif
