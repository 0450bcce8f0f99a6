/* HTTP/1.1 client on the loop: llhttp for responses, evs_stream for TCP/TLS, a keep-alive pool.
 *
 *   evs_http_client_new(loop, &opts, &client);
 *   evs_http_request_opts_t r = {.method = "GET", .url = "https://127.0.0.1:6443/version",
 *                                .tls = cfg, .on_done = done, .arg = me};
 *   evs_http_request(client, &r, &req);
 *   // done(req, 0, resp): resp->status, resp->body ...
 *
 * Pool: connections are kept per (scheme, host, port, TLS identity) and reused (keep-alive);
 * one request at a time per connection, at most max_conns_per_host connections per key, the
 * rest queue in priority order (the request's `priority`: HIGH, NORMAL, LOW; first come first
 * served within one), so a scale write never waits behind status updates. Streaming requests
 * (on_head/on_body: watches) are long-lived and do not count against max_conns_per_host: each
 * has a connection of its own (an idle pooled one, or a new one), at most max_streams_per_host
 * of them per key, the rest queue likewise; so ordinary requests never wait behind open
 * watches. A connection the server marks `Connection: close` (or an HTTP/1.0 one) is closed after
 * its response. An idle pooled connection is closed after idle_conn_timeout_ms or as soon as the
 * server closes it. Every connection has TCP keepalive on (tcp_keepalive_s). A connect that fails
 * while the key has no open connection fails the requests queued for it at once with the same
 * error (the host is down; each would otherwise wait out its timeout). A key with no request and
 * no connection for idle_pool_timeout_ms is forgotten (its TLS reference dropped).
 *
 * Responses: Content-Length, chunked and until-close bodies; redirects are not followed (a 3xx
 * is returned as is); HEAD responses have no body. A buffered response larger than
 * max_response_bytes (headers + body) fails with EVS_ETOOBIG. With on_head/on_body set the body
 * is streamed instead of buffered (a watch never ends): the size limit then applies to the
 * headers only, and the request timeout stops once the head has arrived.
 *
 * Callbacks: on_done runs exactly once per request that evs_http_request accepted: 0 with the
 * response (any status, 5xx included), or an error: EVS_ETIMEDOUT, EVS_ETOOBIG, EVS_EHTTP
 * (malformed response), EVS_ECLOSED (connection closed before the response ended), EVS_ECERT /
 * EVS_ETLS, EVS_ECANCELED, or a libuv code (UV_ECONNREFUSED, UV_EAI_NONAME ...); resp is then
 * NULL. A request sent on a reused connection that the server closes before any byte of the
 * response is retried once on a new connection if the method is idempotent (the server's idle
 * close races our reuse; Go's net/http does the same). evs_http_error_retryable tells the caller
 * which failures are worth retrying later with backoff. */
#ifndef EVSCALE_HTTP_CLIENT_H
#define EVSCALE_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <llhttp.h>

#include "evscale/ratelimit.h"
#include "evscale/tls.h"

typedef struct {
  const char *name;
  const char *value;
} evs_http_header_t;

typedef struct {
  int status;
  int http_minor;                   /* 1 for HTTP/1.1, 0 for 1.0 */
  const evs_http_header_t *headers; /* in arrival order; names as sent */
  size_t nheaders;
  const char *body; /* buffered mode: NUL-terminated body (may contain NULs); NULL if none */
  size_t body_len;
  int64_t retry_after_s; /* Retry-After in seconds (delta form), -1 when absent or a date */
} evs_http_response_t;

/* Case-insensitive lookup; the first match or NULL. Borrowed from resp. */
const char *evs_http_response_header(const evs_http_response_t *resp, const char *name);

typedef struct {
  unsigned max_conns_per_host;   /* 4: ordinary requests */
  unsigned max_streams_per_host; /* 64: streaming requests (watches), a separate bound */
  uint64_t connect_timeout_ms;   /* 10000: DNS + TCP + TLS */
  uint64_t request_timeout_ms;   /* 10000 (limits.request_timeout): queue + connect + response */
  uint64_t idle_conn_timeout_ms; /* 90000 */
  size_t max_response_bytes;     /* 16 MiB (limits.max_response_bytes) */
  uint64_t idle_pool_timeout_ms; /* 60000: a key unused this long (after its last connection) */
  unsigned tcp_keepalive_s;      /* 30: idle seconds before the first keepalive probe */
  const char *user_agent;        /* "evscale/<version>"; copied */
} evs_http_client_options_t;

typedef struct evs_http_client_s evs_http_client_t;
typedef struct evs_http_req_s evs_http_req_t;

/* Streaming: the head (status + headers, no body) once; then body bytes as they come. Return
 * nonzero from on_body to abort (on_done then gets EVS_ECANCELED). resp/buf are borrowed. */
typedef void (*evs_http_head_cb)(evs_http_req_t *req, const evs_http_response_t *resp, void *arg);
typedef int (*evs_http_body_cb)(evs_http_req_t *req, const char *buf, size_t len, void *arg);
/* resp is borrowed for the call (NULL on error). */
typedef void (*evs_http_done_cb)(evs_http_req_t *req, int err, const evs_http_response_t *resp,
                                 void *arg);

typedef struct {
  const char *method; /* "GET", "POST", "PATCH", ... */
  const char *url;    /* http://host[:port]/path?query or https://...; [v6] literals allowed */
  const evs_http_header_t *headers; /* extra headers (copied); Host, Content-Length added */
  size_t nheaders;
  const void *body; /* copied */
  size_t body_len;
  evs_tls_config_t *tls;           /* required for https (borrowed; connections take references) */
  uint64_t timeout_ms;             /* 0: the client's request_timeout_ms; UINT64_MAX: none */
  uint64_t stream_idle_timeout_ms; /* streaming: fail if no byte for this long; 0: none */
  /* Optional client-side rate limiting: a token of `priority` is taken before the request is
   * queued for a connection (the request timeout covers the wait; a retry takes no second
   * token). Borrowed: the limiter must outlive the request. */
  evs_ratelimit_t *limiter;
  evs_prio_t priority;      /* also orders the queue for a connection, limiter or not */
  evs_http_head_cb on_head; /* both set: streaming mode */
  evs_http_body_cb on_body;
  evs_http_done_cb on_done; /* required */
  void *arg;
} evs_http_request_opts_t;

/* opts NULL: the defaults above. *out new, freed by evs_http_client_close. */
int evs_http_client_new(uv_loop_t *loop, const evs_http_client_options_t *opts,
                        evs_http_client_t **out);
/* Starts a request. Returns 0 (on_done will run) or, without running any callback: UV_EINVAL
 * (bad URL, method, header with CR/LF, https without tls), UV_ENOMEM, EVS_ESTATE (closing).
 * *out (may be NULL) is borrowed and valid until on_done runs. */
int evs_http_request(evs_http_client_t *c, const evs_http_request_opts_t *opts,
                     evs_http_req_t **out);
/* Cancels: on_done(EVS_ECANCELED) runs before this returns, or, when called from the request's
 * own on_head/on_body, right after that callback returns. */
void evs_http_cancel(evs_http_req_t *req);
/* Cancels every request (ECANCELED), closes every connection, then calls cb(arg) and frees. */
void evs_http_client_close(evs_http_client_t *c, void (*cb)(void *arg), void *arg);
/* Connections open (idle + busy + connecting) towards all hosts; for tests and metrics. */
unsigned evs_http_client_connections(const evs_http_client_t *c);
/* Connections opened since the client was created. */
uint64_t evs_http_client_connects(const evs_http_client_t *c);
/* Pools (keys) the client holds now; for tests and metrics. */
unsigned evs_http_client_pools(const evs_http_client_t *c);

/* 1 when an on_done error is transient and worth retrying later with backoff: connection
 * refused/reset/closed, timeouts, unreachable networks, DNS failures (a Service's name appears
 * once it exists). 0 for certificate/TLS, protocol, size and cancel errors, which a retry does
 * not fix. HTTP statuses are not errors: see evs_http_status_retryable. */
int evs_http_error_retryable(int err);
/* 1 for 429, 502, 503, 504 (and 500 when idempotent is set). */
int evs_http_status_retryable(int status, int idempotent);

typedef struct {
  int tls;
  char host[256]; /* without brackets */
  int port;
  const char *path; /* borrowed from the url; "/" when the url has none */
} evs_http_url_t;
/* Parses scheme://host[:port][/path]; no userinfo, no fragment. 0 or UV_EINVAL. */
int evs_http_url_parse(const char *url, evs_http_url_t *out);

/* --- Internal: the response parser, separate from sockets so the fuzzer can feed it. --- */
typedef struct {
  llhttp_t llhttp;
  llhttp_settings_t settings;
  evs_http_response_t resp;
  int head_request, streaming, complete, head_done, interim, error;
  size_t max_bytes, seen_bytes;
  char *hbuf; /* header names and values, NUL-separated */
  size_t hbuf_len, hbuf_cap;
  size_t *hoff; /* offsets of name/value pairs in hbuf */
  size_t hoff_len, hoff_cap;
  evs_http_header_t *hdrs;
  char *body;
  size_t body_len, body_cap;
  int (*on_head)(void *ctx);                            /* streaming: nonzero aborts */
  int (*on_body)(void *ctx, const char *buf, size_t n); /* streaming: nonzero aborts */
  void *ctx;
} evs_http__parser_t;

void evs_http__parser_init(evs_http__parser_t *p, int head_request, size_t max_bytes);
void evs_http__parser_free(evs_http__parser_t *p);
/* Feeds bytes. Returns 0 (needs more), 1 (response complete: *used says how many bytes it
 * took), or a negative error (EVS_EHTTP, EVS_ETOOBIG, EVS_ECANCELED from an aborting callback). */
int evs_http__parser_feed(evs_http__parser_t *p, const char *buf, size_t len, size_t *used);
/* The peer closed: 1 if that completed the response (a body delimited by close), else
 * EVS_ECLOSED. */
int evs_http__parser_eof(evs_http__parser_t *p);
/* 1 when the connection may carry another request after this response. */
int evs_http__parser_keep_alive(const evs_http__parser_t *p);
/* llhttp's error codes → evscale codes: the one conversion for this library. */
int evs_http__llhttp_error(llhttp_errno_t e);

#endif
