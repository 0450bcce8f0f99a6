/* HTTP/1.1 server on libuv + llhttp, for evscale's own small endpoints (/metrics, /healthz,
 * /readyz).
 *
 * Keep-alive and pipelining (responses leave in request order), HEAD, "Connection: close",
 * HTTP/1.0. Limits: header section (request line + headers) > max_header_bytes -> 431 (414 when
 * the URL alone overflows), body > max_body_bytes -> 413, malformed -> 400; each of these is
 * answered and the connection then closes. A request must arrive whole within request_timeout_ms
 * of its first byte (a fresh connection counts from accept): slow clients (slowloris) are cut
 * off. An idle keep-alive connection closes after idle_timeout_ms, and so does one whose
 * responses the client does not read for that long. At max_connections a new connection takes
 * the place of the least recently active idle one (or else of one stuck in a partial request);
 * only when every connection has answers still to write is the new one accepted and closed at
 * once, so probes keep being answered whatever number of idle connections clients hold open.
 * Backpressure: while more than write_high_water bytes of responses wait to be written, no
 * further request is parsed or read. Fairness: a connection gets a few pipelined requests
 * answered per loop turn, then waits for a later turn, so many clients pipelining requests
 * cannot starve the loop. A request line without an HTTP version is a 400. "Expect:
 * 100-continue" on a request with a body gets "100 Continue" when its route accepts the method,
 * else its final 404/405/413 at once (the body is not read, the connection closes).
 * Accepting never stops for good: a connection that cannot be allocated is accepted and closed.
 *
 * Handlers run on the loop and answer with evs_http_respond*() before they return (all our
 * endpoints are cheap). The request object stays valid until answered, which is where an async
 * answer could hook in later; today a handler that returns without answering gets a 500.
 *
 * Lifetime: evs_http_server_close() stops accepting, lets written responses drain, closes
 * connections, calls its callback once every handle is closed, and then frees the server. */
#ifndef EVSCALE_HTTP_SERVER_H
#define EVSCALE_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct evs_http_server_s evs_http_server_t;
typedef struct evs_http_request_s evs_http_request_t;
typedef struct evs_http_vconn_s evs_http_vconn_t;

typedef struct {
  size_t max_header_bytes;     /* default 16 KiB */
  size_t max_headers;          /* header lines; default 100 (more -> 431) */
  size_t max_body_bytes;       /* default 1 MiB */
  uint64_t request_timeout_ms; /* default 10000 */
  uint64_t idle_timeout_ms;    /* default 60000 */
  size_t max_connections;      /* default 1024 */
  size_t write_high_water;     /* default 64 KiB */
} evs_http_server_options_t;

/* Methods a route accepts (a bit set). GET implies HEAD. */
enum { EVS_HTTP_GET = 1, EVS_HTTP_HEAD = 2, EVS_HTTP_POST = 4, EVS_HTTP_PUT = 8 };

typedef void (*evs_http_handler_cb)(evs_http_request_t *req, void *data);
/* Called after every response is queued: route is the matched route's path (static, borrowed)
 * or NULL when no route matched; lets obs count evscale_http_requests_total{path,code}. */
typedef void (*evs_http_observer_cb)(const char *route, int status, void *data);
typedef void (*evs_http_server_close_cb)(evs_http_server_t *server, void *data);

/* Fills opts with the defaults above. */
void evs_http_server_options_init(evs_http_server_options_t *opts);

/* Creates a server on loop (not listening yet). opts may be NULL (defaults). *out is new;
 * release it with evs_http_server_close(). 0 or UV_ENOMEM / UV_EINVAL. */
int evs_http_server_new(uv_loop_t *loop, const evs_http_server_options_t *opts,
                        evs_http_server_t **out);

/* Adds a route for an exact path (copied). methods: EVS_HTTP_* bits. A known path with another
 * method gets 405 with an Allow header. 0, UV_EEXIST, UV_EINVAL or UV_ENOMEM. */
int evs_http_server_route(evs_http_server_t *s, const char *path, unsigned methods,
                          evs_http_handler_cb cb, void *data);
void evs_http_server_set_observer(evs_http_server_t *s, evs_http_observer_cb cb, void *data);

/* Binds and listens. address: ":8080" (all interfaces, IPv4), "0.0.0.0:8080", "127.0.0.1:0",
 * "[::1]:9090", "[::]:8080". Port 0 picks a free port (see evs_http_server_port). The address
 * must be numeric: no DNS on this path. UV_EINVAL for a bad address, else libuv's bind/listen
 * error (UV_EADDRINUSE, ...). */
int evs_http_server_listen(evs_http_server_t *s, const char *address);
/* The bound port, 0 before listen. */
int evs_http_server_port(const evs_http_server_t *s);
/* Stops accepting new connections (shutdown grace); existing ones keep being served. */
void evs_http_server_stop_accepting(evs_http_server_t *s);
/* Open connections right now. */
size_t evs_http_server_connections(const evs_http_server_t *s);

/* Stops accepting, finishes queued responses, closes every connection; cb (may be NULL) runs
 * once every handle is closed, then the server is freed. After this returns no handler or
 * observer is called again (except the handler running now, if called from one), so route data
 * may be released then. A second call drops the connections still finishing at once (end of a
 * shutdown grace); its cb and data are ignored. */
void evs_http_server_close(evs_http_server_t *s, evs_http_server_close_cb cb, void *data);

/* Request accessors: everything borrowed, valid until the handler answers. */
const char *evs_http_request_method(const evs_http_request_t *r); /* "GET" */
const char *evs_http_request_path(const evs_http_request_t *r);   /* "/metrics", no query */
const char *evs_http_request_query(const evs_http_request_t *r);  /* after '?', "" if none */
/* The first header with this name (case-insensitive), or NULL. */
const char *evs_http_request_header(const evs_http_request_t *r, const char *name);
size_t evs_http_request_header_count(const evs_http_request_t *r);
/* Header i (0-based) as name/value; 0 or UV_EINVAL when out of range. */
int evs_http_request_header_at(const evs_http_request_t *r, size_t i, const char **name,
                               const char **value);
const char *evs_http_request_body(const evs_http_request_t *r, size_t *len);
int evs_http_request_is_head(const evs_http_request_t *r);

/* Answers a request once: body is copied (len bytes); content_type NULL = "text/plain;
 * charset=utf-8". For HEAD the body is not sent but its Content-Length is. 0, UV_ENOMEM (the
 * connection then closes) or EVS_ESTATE when already answered. */
int evs_http_respond(evs_http_request_t *r, int status, const char *content_type, const void *body,
                     size_t len);
/* As evs_http_respond but steals body (malloc'd; freed by the server, even on error). */
int evs_http_respond_owned(evs_http_request_t *r, int status, const char *content_type, char *body,
                           size_t len);

/* A streamed answer, for bodies too large to render in one loop turn (/metrics at 50,000
 * ScaledObjects). pull(data, &chunk, &len) gives the next part of the body: a malloc'd buffer the
 * server then owns, len > 0; len 0 (chunk NULL or freed by the server) at the end; a negative
 * code to give up (the connection closes, so the client sees a truncated body). The server
 * calls it once the connection's queued output has drained below write_high_water / 2, at most
 * once per write completion, i.e. one slice per loop turn, so keep slices to a fraction of a
 * millisecond of work. HTTP/1.1 gets "Transfer-Encoding: chunked"; HTTP/1.0 a body ended by the
 * close. Requests pipelined behind wait for the end. done(data, status) runs exactly once, maybe
 * before this returns: 0 once the whole body is queued (or at once for HEAD), EVS_ECLOSED when
 * the connection went first (including evs_http_vconn_free and a second server close); free
 * data there. 0, or EVS_ESTATE / UV_EINVAL (then done never runs). */
typedef int (*evs_http_pull_cb)(void *data, char **chunk, size_t *len);
typedef void (*evs_http_stream_done_cb)(void *data, int status);
int evs_http_respond_stream(evs_http_request_t *r, int status, const char *content_type,
                            evs_http_pull_cb pull, evs_http_stream_done_cb done, void *data);

/* Socketless connections: the same request parsing, limits, routing and response path as a
 * TCP connection, fed from memory (fuzzing, tests). Output bytes go to sink; timers do not run.
 * vconn_feed returns 0 while the connection would stay open, EVS_ECLOSED once it would be
 * closed (further input is ignored). Free every vconn before closing its server. */
typedef void (*evs_http_sink_cb)(const char *data, size_t len, void *sink_data);
int evs_http_vconn_new(evs_http_server_t *s, evs_http_sink_cb sink, void *sink_data,
                       evs_http_vconn_t **out);
int evs_http_vconn_feed(evs_http_vconn_t *v, const char *data, size_t len);
/* Signals EOF from the client (llhttp_finish). */
int evs_http_vconn_eof(evs_http_vconn_t *v);
void evs_http_vconn_free(evs_http_vconn_t *v);

#endif
