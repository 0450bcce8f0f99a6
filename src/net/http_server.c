/* HTTP/1.1 server on libuv + llhttp. See include/evscale/http_server.h.
 *
 * One conn_t per TCP connection (or per socketless vconn): an llhttp parser, an arena holding
 * the request line and headers of the request being parsed, its body, and a count of response
 * bytes not yet written. Handlers answer synchronously from on_message_complete, so pipelined
 * requests are answered in order simply by being parsed in order. Two things pause llhttp
 * (HPE_PAUSED from on_message_complete), keep the unparsed bytes and stop reading:
 * - backpressure: more than write_high_water bytes of responses wait; resumed as they drain;
 * - fairness: a connection answers at most TURN_REQUESTS pipelined requests per loop turn
 *   (TURN_REQUESTS_LOADED once the server has answered TURN_BUDGET in this turn), then yields
 *   and is resumed by an idle handle on a later turn, at most RESUMES_PER_TURN connections a
 *   turn, round robin. So a flood of pipelined /metrics requests from many clients costs each
 *   loop turn a bounded amount of work and a probe on another connection is answered within a
 *   turn or two (issue 9).
 *
 * Connections are kept in least-recently-active order. At max_connections a new connection
 * takes the place of the least recently active idle one (nothing parsed, nothing to write), as
 * nginx reuses connections (ngx_drain_connections): otherwise a crowd of idle keep-alive
 * connections would lock the kubelet's probes out.
 *
 * Closing after an error or "Connection: close" is a lingering close, as nginx does
 * (ngx_http_set_lingering_close): flush the responses, shut down our side, then read and discard
 * until the client closes or a short timer fires. Closing at once would make the kernel answer
 * any unread request bytes with a RST that can destroy the 400 we just wrote. */
#include "evscale/http_server.h"

#include <llhttp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "evscale/buf.h"
#include "evscale/error.h"
#include "evscale/list.h"

#define LINGER_MS 2000
/* See the top of the file: per connection per turn, per server per turn, resumes per turn. */
#define TURN_REQUESTS 4
#define TURN_REQUESTS_LOADED 1
#define TURN_BUDGET 64
#define RESUMES_PER_TURN 16
/* Memory is given back once the connections fall to a quarter of a peak at least this high. */
#define TRIM_AFTER_CONNS 64

typedef struct {
  char *path;
  unsigned methods;
  evs_http_handler_cb cb;
  void *data;
} route_t;

typedef struct conn_s conn_t;

struct evs_http_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  /* Closed by evs_http_server_close: its close callback guarantees the server's callback runs
   * from the loop even when the listener and every connection were already gone. */
  uv_timer_t closer;
  int listener_closing;
  int listener_closed;
  int closer_closed;
  int port;
  evs_http_server_options_t opts;
  route_t *routes;
  size_t n_routes;
  evs_http_observer_cb observer;
  void *observer_data;
  evs_list_t conns;   /* open (not yet closing) TCP connections, most recently active first */
  size_t n_open;      /* connections in that list */
  size_t n_conns;     /* TCP connections not yet freed */
  size_t peak_conns;  /* the most since memory was last given back */
  uv_timer_t trimmer; /* gives memory back after a crowd has gone (unref'd) */
  int trimmer_closed;
  /* Connections that used up their turn, resumed by `idle` on the next turns, in order. */
  evs_list_t yield;
  uv_idle_t idle;
  int idle_closed;
  uint64_t turn_stamp; /* uv_now of the turn turn_served counts */
  size_t turn_served;
  /* A connection we could not allocate for is still accepted (into this) and closed: libuv stops
   * watching a listener whose connection callback did not accept until uv_accept is called. */
  uv_tcp_t reject;
  int reject_busy, reject_wanted;
  int closing;
  evs_http_server_close_cb close_cb;
  void *close_data;
  char rbuf[65536]; /* shared read buffer: on_read consumes or copies it before returning */
};

struct evs_http_request_s {
  conn_t *conn;
  const route_t *route;
  const char *method;
  const char *path;
  const char *query;
  int head;
  int answered;
};

enum { ST_OPEN, ST_DRAINING, ST_LINGER, ST_CLOSING, ST_CLOSED };
enum { PAUSE_WRITE = 1, PAUSE_YIELD = 2, PAUSE_STREAM = 4 };

typedef struct {
  uint32_t name;
  uint32_t value;
} hdr_t;

struct conn_s {
  evs_http_server_t *srv;
  evs_list_t link; /* in srv->conns while linked */
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  int handles_open;
  int is_virtual;
  evs_http_sink_cb sink;
  void *sink_data;
  int state;
  int in_execute;
  int got_eof;
  unsigned paused; /* PAUSE_* bits: parsing stops while any is set */
  int yield_queued;
  int linked;       /* in the server's connection list */
  evs_list_t ylink; /* in srv->yield while yield_queued */
  size_t served;    /* requests answered in the turn of served_stamp */
  uint64_t served_stamp;
  int in_request;
  int field_open;
  int err_status;
  int keep_alive;
  llhttp_t parser;
  char *hbuf; /* url NUL name NUL value NUL ... */
  size_t hlen, hcap, hbytes;
  hdr_t *hdrs;
  size_t nhdrs, hdrs_cap;
  char *body;
  size_t body_len, body_cap;
  char *stash; /* input left unparsed while paused: stash[stash_off, stash_len) */
  size_t stash_off, stash_len;
  size_t write_pending;
  evs_http_request_t req;
  /* A streamed answer in progress (evs_http_respond_stream): pulled a slice per write. */
  evs_http_pull_cb stream_pull;
  evs_http_stream_done_cb stream_done;
  void *stream_data;
  int stream_chunked; /* HTTP/1.1: chunked; HTTP/1.0: the body ends with the connection */
  int stream_started; /* a chunk went out (the next size line starts with CRLF) */
  int stream_pumping;
};

struct evs_http_vconn_s {
  conn_t conn;
};

typedef struct {
  uv_write_t req;
  conn_t *conn;
  size_t bytes;
  char *head;
  char *body;
} wreq_t;

static void conn_close(conn_t *c);
static void conn_drain(conn_t *c);
static void conn_feed(conn_t *c, const char *data, size_t len);
static void conn_read_start(conn_t *c);
static void conn_touch(conn_t *c);
static void conn_unpause(conn_t *c, unsigned why);
static int turn_used_up(conn_t *c);
static void on_idle(uv_idle_t *h);
static int queue_response(conn_t *c, int status, const char *ctype, char *body, size_t len,
                          const char *extra);
static void queue_raw(conn_t *c, const char *text);
static void stream_pump(conn_t *c);
static void stream_end(conn_t *c, int status);

void evs_http_server_options_init(evs_http_server_options_t *o) {
  o->max_header_bytes = 16 * 1024;
  o->max_headers = 100;
  o->max_body_bytes = 1024 * 1024;
  o->request_timeout_ms = 10000;
  o->idle_timeout_ms = 60000;
  o->max_connections = 1024;
  o->write_high_water = 64 * 1024;
}

static const char *reason_phrase(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 413:
    return "Payload Too Large";
  case 414:
    return "URI Too Long";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

/* ---- timers ------------------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t) {
  /* Every deadline a connection has (request arrival, idle keep-alive, unread responses,
   * lingering close) ends the same way: the connection goes. */
  conn_close(evs_container_of(t, conn_t, timer));
}

static void conn_arm(conn_t *c, uint64_t ms) {
  if (!c->is_virtual && c->state < ST_CLOSING)
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- request arena ----------------------------------------------------------------------- */

static void req_reset(conn_t *c) {
  c->hlen = c->hbytes = 0;
  c->nhdrs = 0;
  c->body_len = 0;
  c->field_open = 0;
  c->err_status = 0;
  memset(&c->req, 0, sizeof c->req);
}

/* Appends to the arena; header-section bytes count against max_header_bytes. */
static int arena_put(conn_t *c, const char *at, size_t len, int counted) {
  if (counted) {
    c->hbytes += len;
    if (c->hbytes > c->srv->opts.max_header_bytes)
      return -1;
  }
  if (c->hlen + len + 1 > c->hcap) {
    size_t cap = c->hcap ? c->hcap : 512;
    while (cap < c->hlen + len + 1)
      cap *= 2;
    char *p = realloc(c->hbuf, cap);
    if (p == NULL)
      return -1;
    c->hbuf = p;
    c->hcap = cap;
  }
  memcpy(c->hbuf + c->hlen, at, len);
  c->hlen += len;
  c->hbuf[c->hlen] = '\0'; /* strings in the arena are terminated even mid-parse */
  return 0;
}

static int fail(conn_t *c, int status, const char *why) {
  if (c->err_status == 0)
    c->err_status = status;
  llhttp_set_error_reason(&c->parser, why);
  return HPE_USER;
}

static conn_t *pconn(llhttp_t *p) { return p->data; }

static int on_message_begin(llhttp_t *p) {
  conn_t *c = pconn(p);
  req_reset(c);
  c->in_request = 1;
  /* llhttp sets the version only once it reads one; cleared here, 0.9 at the end of the request
   * line can only mean that llhttp took a line without a version for HTTP/0.9. */
  p->http_major = 0;
  p->http_minor = 0;
  conn_arm(c, c->srv->opts.request_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  return arena_put(pconn(p), at, len, 1) ? fail(pconn(p), 414, "URI too long") : 0;
}

static int on_nul(llhttp_t *p) {
  return arena_put(pconn(p), "", 1, 0) ? fail(pconn(p), 500, "out of memory") : 0;
}

/* "GET /healthz" alone on the request line is HTTP/0.9 to llhttp, which then waits for headers
 * HTTP/0.9 never had; we speak 1.x only, so it is a 400 at once (RFC 9112 section 3: the
 * request line ends with the version). */
static int on_url_complete(llhttp_t *p) {
  if (p->http_major == 0 && p->http_minor == 9)
    return fail(pconn(p), 400, "no HTTP version");
  return on_nul(p);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = pconn(p);
  if (!c->field_open) {
    if (c->nhdrs >= c->srv->opts.max_headers)
      return fail(c, 431, "too many headers");
    if (evs_buf_reserve((void **)&c->hdrs, &c->hdrs_cap, c->nhdrs + 1, sizeof *c->hdrs, 16) != 0)
      return fail(c, 500, "out of memory");
    c->hdrs[c->nhdrs++].name = (uint32_t)c->hlen;
    c->field_open = 1;
  }
  return arena_put(c, at, len, 1) ? fail(c, 431, "header section too large") : 0;
}

static int on_header_field_complete(llhttp_t *p) {
  conn_t *c = pconn(p);
  if (on_nul(p) != 0)
    return HPE_USER;
  c->field_open = 0;
  c->hdrs[c->nhdrs - 1].value = (uint32_t)c->hlen;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  return arena_put(pconn(p), at, len, 1) ? fail(pconn(p), 431, "header section too large") : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = pconn(p);
  if (len > c->srv->opts.max_body_bytes - c->body_len)
    return fail(c, 413, "body too large");
  if (c->body_len + len + 1 > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap : 1024;
    while (cap < c->body_len + len + 1)
      cap *= 2;
    char *b = realloc(c->body, cap);
    if (b == NULL)
      return fail(c, 500, "out of memory");
    c->body = b;
    c->body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

/* A plain-text answer of the status's reason phrase ("Not Found\n"). */
static void queue_error(conn_t *c, int status, const char *extra) {
  char text[64];
  int n = snprintf(text, sizeof text, "%s\n", reason_phrase(status));
  queue_response(c, status, NULL, strdup(text), (size_t)n, extra);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static unsigned method_bit(uint8_t m) {
  switch (m) {
  case HTTP_GET:
    return EVS_HTTP_GET;
  case HTTP_HEAD:
    return EVS_HTTP_HEAD;
  case HTTP_POST:
    return EVS_HTTP_POST;
  case HTTP_PUT:
    return EVS_HTTP_PUT;
  default:
    return 0;
  }
}

static const route_t *find_route(const evs_http_server_t *s, const char *path) {
  for (size_t i = 0; i < s->n_routes; i++)
    if (strcmp(s->routes[i].path, path) == 0)
      return &s->routes[i];
  return NULL;
}

static int route_allows(const route_t *r, unsigned bit) {
  unsigned m = r->methods;
  if (m & EVS_HTTP_GET)
    m |= EVS_HTTP_HEAD;
  return bit != 0 && (m & bit) != 0;
}

static void allow_header(const route_t *r, char *buf, size_t cap) {
  unsigned m = r->methods | ((r->methods & EVS_HTTP_GET) ? EVS_HTTP_HEAD : 0);
  static const char *names[] = {"GET", "HEAD", "POST", "PUT"};
  size_t n = (size_t)snprintf(buf, cap, "Allow: ");
  const char *sep = "";
  for (unsigned i = 0; i < 4; i++) {
    if (m & (1u << i)) {
      n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep, names[i]);
      sep = ", ";
    }
  }
  snprintf(buf + n, cap - n, "\r\n");
}

/* The path part of a request target. Absolute form ("GET http://host:8080/metrics"), which
 * RFC 9112 3.2.2 says a server must accept: the path starts at the first '/' after the
 * authority. */
static char *target_path(char *url) {
  if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
    char *slash = strchr(strstr(url, "//") + 2, '/');
    return slash ? slash : (char *)"/";
  }
  return url;
}

static void fill_request(conn_t *c) {
  evs_http_request_t *r = &c->req;
  r->conn = c;
  r->method = llhttp_method_name((llhttp_method_t)c->parser.method);
  r->head = c->parser.method == HTTP_HEAD;
  if (c->hlen == 0)
    arena_put(c, "", 1, 0); /* no URL callback ran: an empty path */
  char *url = target_path(c->hbuf ? c->hbuf : (char *)"");
  char *q = strchr(url, '?');
  if (q)
    *q++ = '\0';
  r->path = url;
  r->query = q ? q : "";
  if (c->body)
    c->body[c->body_len] = '\0';
}

/* Answers 404 for an unknown path, 405 with Allow for a known path and another method; 0 when
 * the request may go to its route. */
static int refuse(conn_t *c, const route_t *route) {
  c->req.route = route;
  if (route == NULL) {
    queue_error(c, 404, NULL);
    return 1;
  }
  if (!route_allows(route, method_bit(c->parser.method))) {
    char allow[64];
    allow_header(route, allow, sizeof allow);
    queue_error(c, 405, allow);
    return 1;
  }
  return 0;
}

static void dispatch(conn_t *c) {
  fill_request(c);
  evs_http_request_t *r = &c->req;
  const route_t *route = find_route(c->srv, r->path);
  if (refuse(c, route))
    return;
  route->cb(r, route->data);
  if (!r->answered)
    queue_error(c, 500, NULL);
}

static const char *header_value(const conn_t *c, const char *name) {
  for (size_t i = 0; i < c->nhdrs; i++)
    if (strcasecmp(c->hbuf + c->hdrs[i].name, name) == 0)
      return c->hbuf + c->hdrs[i].value;
  return NULL;
}

/* The route of the request whose headers were just parsed (the URL is the arena's first
 * string), without touching the arena: trailers may still be appended to it. */
static const route_t *route_at_headers(const conn_t *c) {
  char *url = target_path(c->hlen ? c->hbuf : (char *)"");
  size_t n = strcspn(url, "?");
  for (size_t i = 0; i < c->srv->n_routes; i++)
    if (strlen(c->srv->routes[i].path) == n && memcmp(c->srv->routes[i].path, url, n) == 0)
      return &c->srv->routes[i];
  return NULL;
}

/* RFC 9110 section 10.1.1: a client that sends "Expect: 100-continue" waits for an interim 100
 * before it sends the body. A request that will be refused gets its final answer instead,
 * without its body being read, and the connection then closes (the body may follow anyway). A
 * request without a body, or an HTTP/1.0 one, needs no 100: it is simply answered. */
static int expect_continue(conn_t *c) {
  llhttp_t *p = &c->parser;
  int body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  if (!body || p->http_major != 1 || p->http_minor == 0)
    return 0;
  const route_t *route = route_at_headers(c);
  if (route != NULL && route_allows(route, method_bit(p->method))) {
    queue_raw(c, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
  }
  c->err_status = route ? 405 : 404; /* marks the answer Connection: close */
  refuse(c, route);
  return -1;
}

static int on_headers_complete(llhttp_t *p) {
  conn_t *c = pconn(p);
  /* A declared body over the limit is refused before a byte of it is read. */
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->opts.max_body_bytes) {
    c->err_status = 413;
    return -1;
  }
  const char *expect = header_value(c, "expect");
  if (expect != NULL && strcasecmp(expect, "100-continue") == 0)
    return expect_continue(c);
  return 0;
}

/* ---- fairness and connection order ------------------------------------------------------ */

/* Counts an answered request against its connection's and the server's share of this loop
 * turn (uv_now stands for the turn: turns shorter than a millisecond share one); 1 when the
 * connection has used its share. Socketless connections have no turns. */
static int turn_used_up(conn_t *c) {
  evs_http_server_t *s = c->srv;
  if (c->is_virtual)
    return 0;
  uint64_t now = uv_now(s->loop);
  if (s->turn_stamp != now) {
    s->turn_stamp = now;
    s->turn_served = 0;
  }
  if (c->served_stamp != now) {
    c->served_stamp = now;
    c->served = 0;
  }
  s->turn_served++;
  c->served++;
  return c->served >= (s->turn_served > TURN_BUDGET ? TURN_REQUESTS_LOADED : TURN_REQUESTS);
}

static void yield_push(conn_t *c) {
  evs_http_server_t *s = c->srv;
  if (c->yield_queued)
    return;
  c->yield_queued = 1;
  evs_list_push_back(&s->yield, &c->ylink);
  uv_idle_start(&s->idle, on_idle);
}

static void yield_remove(conn_t *c) {
  if (!c->yield_queued)
    return;
  evs_list_remove(&c->ylink);
  c->yield_queued = 0;
}

/* Resumes the connections that yielded, oldest first, a bounded number per turn. An idle handle
 * runs before the loop polls and keeps the poll from blocking while it is active, so sockets
 * (a probe's connection) are served between two rounds. */
static void on_idle(uv_idle_t *h) {
  evs_http_server_t *s = evs_container_of(h, evs_http_server_t, idle);
  /* Connections yielding again go after the last one queued now: they wait for the next turn. */
  conn_t *stop = evs_container_of(s->yield.prev, conn_t, ylink);
  for (int i = 0; i < RESUMES_PER_TURN && !evs_list_empty(&s->yield); i++) {
    conn_t *c = evs_container_of(s->yield.next, conn_t, ylink);
    yield_remove(c);
    c->served = 0;
    c->served_stamp = uv_now(s->loop);
    conn_unpause(c, PAUSE_YIELD);
    if (c == stop)
      break;
  }
  if (evs_list_empty(&s->yield))
    uv_idle_stop(h);
}

static void conn_link(conn_t *c) {
  evs_http_server_t *s = c->srv;
  evs_list_push_front(&s->conns, &c->link);
  c->linked = 1;
  s->n_open++;
}

static void conn_unlink(conn_t *c) {
  evs_http_server_t *s = c->srv;
  if (!c->linked)
    return;
  evs_list_remove(&c->link);
  c->linked = 0;
  s->n_open--;
}

/* Marks the connection most recently active. */
static void conn_touch(conn_t *c) {
  if (c->linked && c->srv->conns.next != &c->link) {
    conn_unlink(c);
    conn_link(c);
  }
}

/* At max_connections: closes the least recently active connection that costs its client
 * nothing to lose (lingering after its last answer, or idle between requests), else the least
 * recently active one stuck in a partial request; 1 when one was closed. A connection with
 * answers still to write is never taken. */
static int make_room(evs_http_server_t *s) {
  conn_t *partial = NULL;
  for (evs_list_t *l = s->conns.prev; l != &s->conns; l = l->prev) {
    conn_t *c = evs_container_of(l, conn_t, link);
    if (c->write_pending > 0 || c->paused || c->in_execute)
      continue;
    if (c->state == ST_LINGER || (c->state == ST_OPEN && !c->in_request)) {
      conn_close(c);
      return 1;
    }
    if (c->state == ST_OPEN && partial == NULL)
      partial = c;
  }
  if (partial)
    conn_close(partial);
  return partial != NULL;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = pconn(p);
  c->keep_alive = llhttp_should_keep_alive(p);
  dispatch(c);
  c->in_request = 0;
  if (c->state == ST_OPEN && !c->keep_alive)
    conn_drain(c);
  if (c->state != ST_OPEN)
    return HPE_PAUSED; /* nothing after this request is looked at */
  conn_arm(c, c->srv->opts.idle_timeout_ms);
  conn_touch(c);
  if (c->write_pending > c->srv->opts.write_high_water)
    c->paused |= PAUSE_WRITE;
  if (turn_used_up(c))
    c->paused |= PAUSE_YIELD;
  return c->paused ? HPE_PAUSED : 0;
}

static const llhttp_settings_t *settings(void) {
  static llhttp_settings_t s;
  static int init;
  if (!init) {
    llhttp_settings_init(&s);
    s.on_message_begin = on_message_begin;
    s.on_url = on_url;
    s.on_url_complete = on_url_complete;
    s.on_header_field = on_header_field;
    s.on_header_field_complete = on_header_field_complete;
    s.on_header_value = on_header_value;
    s.on_header_value_complete = on_nul;
    s.on_headers_complete = on_headers_complete;
    s.on_body = on_body;
    s.on_message_complete = on_message_complete;
    init = 1;
  }
  return &s;
}

/* ---- responses --------------------------------------------------------------------------- */

static void write_done(conn_t *c, size_t bytes) {
  c->write_pending -= bytes;
  if (c->stream_pull && c->state <= ST_DRAINING)
    stream_pump(c);
  if (c->state == ST_DRAINING) {
    if (c->write_pending == 0)
      conn_drain(c);
    else
      conn_arm(c, c->srv->opts.idle_timeout_ms);
    return;
  }
  if (c->state != ST_OPEN)
    return;
  if (!c->in_request)
    conn_arm(c, c->srv->opts.idle_timeout_ms); /* the client is reading: progress */
  if (c->write_pending <= c->srv->opts.write_high_water / 2)
    conn_unpause(c, PAUSE_WRITE);
}

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = evs_container_of(req, wreq_t, req);
  conn_t *c = w->conn;
  size_t bytes = w->bytes;
  free(w->head);
  free(w->body);
  free(w);
  if (status < 0 && c->state < ST_CLOSING) {
    c->write_pending -= bytes;
    conn_close(c);
    return;
  }
  write_done(c, bytes);
}

static int send_buffers(conn_t *c, wreq_t *w, size_t head_len, size_t body_len) {
  c->write_pending += w->bytes;
  if (c->is_virtual) {
    c->sink(w->head, head_len, c->sink_data);
    if (body_len)
      c->sink(w->body, body_len, c->sink_data);
    free(w->head);
    free(w->body);
    free(w);
    write_done(c, head_len + body_len);
    return 0;
  }
  uv_buf_t bufs[2] = {uv_buf_init(w->head, (unsigned)head_len),
                      uv_buf_init(w->body, (unsigned)body_len)};
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, body_len ? 2 : 1, on_write);
  if (rc < 0) {
    c->write_pending -= w->bytes;
    free(w->head);
    free(w->body);
    free(w);
    conn_close(c);
  }
  return rc;
}

/* Queues bytes that are not a response (an interim 100 Continue): no observer, no keep-alive
 * decision. */
static void queue_raw(conn_t *c, const char *text) {
  wreq_t *w = calloc(1, sizeof(*w));
  char *head = strdup(text);
  if (w == NULL || head == NULL) {
    free(w), free(head);
    conn_close(c);
    return;
  }
  w->conn = c;
  w->head = head;
  w->bytes = strlen(text);
  send_buffers(c, w, w->bytes, 0);
}

/* Queues one response (steals body) and tells the observer. A response that ends the
 * connection (error statuses from the parser, Connection: close) says so in its headers. */
static int queue_response(conn_t *c, int status, const char *ctype, char *body, size_t len,
                          const char *extra) {
  evs_http_request_t *r = &c->req;
  r->answered = 1;
  if (c->state >= ST_CLOSING) {
    free(body);
    return EVS_ECLOSED;
  }
  int http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
  int stream = c->stream_pull != NULL;
  /* A streamed body has no length: chunked in HTTP/1.1, delimited by the close in HTTP/1.0. */
  int keep = c->err_status == 0 && llhttp_should_keep_alive(&c->parser) && c->state == ST_OPEN &&
             !c->srv->closing && !(stream && http10);
  char length[48];
  if (!stream)
    snprintf(length, sizeof length, "Content-Length: %zu\r\n", len);
  else
    snprintf(length, sizeof length, "%s", http10 ? "" : "Transfer-Encoding: chunked\r\n");
  c->stream_chunked = stream && !http10;
  if (ctype == NULL)
    ctype = "text/plain; charset=utf-8";
  size_t cap = 160 + strlen(ctype) + (extra ? strlen(extra) : 0);
  wreq_t *w = calloc(1, sizeof(*w));
  char *head = malloc(cap);
  if (w == NULL || head == NULL || (body == NULL && len > 0)) {
    free(w), free(head), free(body);
    conn_close(c);
    return UV_ENOMEM;
  }
  int hl = snprintf(head, cap, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s%s%s\r\n", status,
                    reason_phrase(status), ctype, length,
                    !keep    ? "Connection: close\r\n"
                    : http10 ? "Connection: keep-alive\r\n"
                             : "",
                    extra ? extra : "");
  size_t head_len = hl > 0 && (size_t)hl < cap ? (size_t)hl : 0;
  if (r->head) {
    free(body);
    body = NULL;
    len = 0;
  }
  w->conn = c;
  w->head = head;
  w->body = body;
  w->bytes = head_len + len;
  if (!keep)
    c->keep_alive = 0;
  if (c->srv->observer)
    c->srv->observer(r->route ? r->route->path : NULL, status, c->srv->observer_data);
  return send_buffers(c, w, head_len, len);
}

int evs_http_respond_owned(evs_http_request_t *r, int status, const char *content_type, char *body,
                           size_t len) {
  if (r->answered) {
    free(body);
    return EVS_ESTATE;
  }
  if (status < 100 || status > 999)
    status = 500;
  return queue_response(r->conn, status, content_type, body, len, NULL);
}

int evs_http_respond(evs_http_request_t *r, int status, const char *content_type, const void *body,
                     size_t len) {
  char *copy = malloc(len ? len : 1);
  if (copy && len)
    memcpy(copy, body, len);
  if (copy == NULL && !r->answered) {
    r->answered = 1;
    conn_close(r->conn);
    return UV_ENOMEM;
  }
  return evs_http_respond_owned(r, status, content_type, copy, len);
}

/* ---- streamed answers -------------------------------------------------------------------- */

/* Ends the stream: the producer hears once (status 0 when the whole body was queued), and
 * requests that waited behind the answer are parsed again. */
static void stream_end(conn_t *c, int status) {
  evs_http_stream_done_cb done = c->stream_done;
  void *data = c->stream_data;
  c->stream_pull = NULL;
  c->stream_done = NULL;
  c->stream_data = NULL;
  if (done)
    done(data, status);
  if (status != 0 || c->state >= ST_CLOSING)
    return;
  if (c->state == ST_DRAINING && c->write_pending == 0)
    conn_drain(c);
  else if (c->state == ST_OPEN && c->in_execute)
    c->paused &= ~PAUSE_STREAM; /* ended within its handler: the parser just goes on */
  else if (c->state == ST_OPEN)
    conn_unpause(c, PAUSE_STREAM);
}

/* Queues a chunk (steals data; len 0 is the last chunk) with its framing. The size line of a
 * chunk carries the CRLF that closes the previous one, so a chunk is one buffer of the
 * producer's plus a small head. */
static void stream_send(conn_t *c, char *data, size_t len) {
  char line[40];
  int n = 0;
  if (c->stream_chunked)
    n = snprintf(line, sizeof line, "%s%zx\r\n%s", c->stream_started ? "\r\n" : "", len,
                 len ? "" : "\r\n");
  c->stream_started = 1;
  wreq_t *w = calloc(1, sizeof(*w));
  char *head = malloc((size_t)n + 1);
  if (w == NULL || head == NULL) {
    free(w), free(head), free(data);
    conn_close(c);
    return;
  }
  memcpy(head, line, (size_t)n + 1);
  w->conn = c;
  w->head = head;
  w->body = data;
  w->bytes = (size_t)n + len;
  send_buffers(c, w, (size_t)n, len);
}

/* Pulls the next slice once the connection's queued output has drained below half the high
 * water mark. Over TCP one slice per call: the next pull comes from the write's completion, in
 * a later loop turn, so a long body is spread over turns with everything else served between.
 * Socketless connections write at once and loop here. */
static void stream_pump(conn_t *c) {
  if (c->stream_pumping)
    return;
  c->stream_pumping = 1;
  while (c->stream_pull && c->state <= ST_DRAINING &&
         c->write_pending <= c->srv->opts.write_high_water / 2) {
    char *chunk = NULL;
    size_t len = 0;
    int rc = c->stream_pull(c->stream_data, &chunk, &len);
    if (rc < 0 || (len == 0 && !c->stream_chunked)) {
      free(chunk);
      stream_end(c, rc < 0 ? rc : 0);
      if (rc < 0)
        conn_close(c); /* the client sees a truncated body, not a complete wrong one */
      break;
    }
    if (len == 0) {
      free(chunk);
      chunk = NULL;
    }
    stream_send(c, chunk, len);
    if (len == 0) {
      stream_end(c, 0);
      break;
    }
    if (!c->is_virtual)
      break;
  }
  c->stream_pumping = 0;
}

int evs_http_respond_stream(evs_http_request_t *r, int status, const char *content_type,
                            evs_http_pull_cb pull, evs_http_stream_done_cb done, void *data) {
  if (r->answered || pull == NULL || done == NULL)
    return r->answered ? EVS_ESTATE : UV_EINVAL;
  conn_t *c = r->conn;
  if (status < 100 || status > 999)
    status = 500;
  c->stream_pull = pull;
  c->stream_done = done;
  c->stream_data = data;
  c->stream_started = 0;
  /* No pull while the head is queued (a socketless write completes at once): a HEAD request
   * ends here without a body. */
  c->stream_pumping = 1;
  int rc = queue_response(c, status, content_type, NULL, 0, NULL);
  c->stream_pumping = 0;
  if (rc != 0 || r->head || c->state >= ST_CLOSING) {
    stream_end(c, rc != 0 || c->state >= ST_CLOSING ? EVS_ECLOSED : 0);
    return 0;
  }
  /* Requests pipelined behind this one wait for the whole body (answers leave in order). */
  c->paused |= PAUSE_STREAM;
  stream_pump(c);
  return 0;
}

/* ---- feeding and closing ----------------------------------------------------------------- */

static void stash_rest(conn_t *c, const char *pos, size_t n) {
  if (n == 0)
    return;
  if (c->stash_off > 0 && c->stash_off == c->stash_len)
    c->stash_off = c->stash_len = 0;
  char *s = realloc(c->stash, c->stash_len + n);
  if (s == NULL) {
    conn_close(c);
    return;
  }
  memcpy(s + c->stash_len, pos, n);
  c->stash = s;
  c->stash_len += n;
}

/* Parses data; returns how many bytes the parser consumed: all of them unless a pause stopped
 * it (the rest is then the caller's to keep). Errors are answered here. */
static size_t conn_parse(conn_t *c, const char *data, size_t len) {
  c->in_execute = 1;
  llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
  c->in_execute = 0;
  if (e == HPE_OK || c->state != ST_OPEN)
    return len;
  if (e == HPE_PAUSED) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    return c->paused && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
  }
  if (e == HPE_PAUSED_UPGRADE) {
    conn_drain(c); /* the request was answered; we speak no other protocol */
    return len;
  }
  /* Refusals made before the body (Expect: 100-continue) are already answered. */
  if (!c->req.answered) {
    int status = c->err_status ? c->err_status : 400;
    c->err_status = status;
    c->req.route = NULL;
    c->req.head = 0;
    queue_error(c, status, NULL);
  }
  conn_drain(c);
  return len;
}

/* After a pause stopped the parser with `left` bytes unparsed: a connection that only yielded
 * its turn with nothing left to parse just goes on (the next read starts a new turn's share);
 * otherwise it stops reading, and a yield queues it for a later turn. */
static void conn_paused(conn_t *c, size_t left) {
  if (c->paused == PAUSE_YIELD && left == 0) {
    c->paused = 0;
    llhttp_resume(&c->parser);
    return;
  }
  if (!c->is_virtual)
    uv_read_stop((uv_stream_t *)&c->tcp);
  if (c->paused & PAUSE_YIELD)
    yield_push(c);
}

static void conn_feed(conn_t *c, const char *data, size_t len) {
  if (c->state != ST_OPEN)
    return; /* the connection's last request has been answered: ignore the rest */
  if (c->paused) {
    stash_rest(c, data, len);
    return;
  }
  size_t used = conn_parse(c, data, len);
  if (c->state != ST_OPEN || !c->paused)
    return;
  stash_rest(c, data + used, len - used);
  if (c->state == ST_OPEN)
    conn_paused(c, len - used);
}

/* Parses the stash kept while paused, from where the parser stopped. */
static void feed_stash(conn_t *c) {
  size_t left = c->stash_len - c->stash_off;
  if (left > 0)
    c->stash_off += conn_parse(c, c->stash + c->stash_off, left);
  left = c->stash_len - c->stash_off;
  if (left == 0) {
    /* Consumed: a stash is up to a read's worth (64 KiB) per connection, released at once. */
    free(c->stash);
    c->stash = NULL;
    c->stash_off = c->stash_len = 0;
  }
  if (c->state == ST_OPEN && c->paused)
    conn_paused(c, left);
}

/* Clears a pause reason; with none left, parses what was kept, then reads again (or, after
 * the client's EOF, finishes). */
static void conn_unpause(conn_t *c, unsigned why) {
  if (!(c->paused & why) || c->in_execute)
    return;
  c->paused &= ~why;
  if (c->paused || c->state != ST_OPEN)
    return;
  llhttp_resume(&c->parser);
  feed_stash(c);
  if (c->state == ST_OPEN && !c->paused)
    c->got_eof ? conn_drain(c) : conn_read_start(c);
}

/* The server goes once it is closing, its listener is closed and its last connection freed. */
static void server_maybe_free(evs_http_server_t *s) {
  if (!s->closing || !s->listener_closed || !s->closer_closed || !s->idle_closed ||
      !s->trimmer_closed || s->reject_busy || s->n_conns > 0)
    return;
  if (s->close_cb)
    s->close_cb(s, s->close_data);
  for (size_t i = 0; i < s->n_routes; i++)
    free(s->routes[i].path);
  free(s->routes);
  free(s);
}

static void on_trim(uv_timer_t *t) {
  evs_http_server_t *s = evs_container_of(t, evs_http_server_t, trimmer);
  s->peak_conns = s->n_conns;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

/* After a crowd of connections has gone (a flood, issue 9), hands the memory their buffers and
 * queued answers used back to the system: glibc keeps freed small blocks in the heap, where a
 * few live ones in between pin whole pages, and RSS would stay at the flood's peak for good.
 * Once the connections fall to a quarter of a peak, a second later (the crowd's stragglers go
 * too). */
static void release_memory(evs_http_server_t *s) {
  if (s->peak_conns < TRIM_AFTER_CONNS || s->n_conns > s->peak_conns / 4 || s->closing ||
      uv_is_active((uv_handle_t *)&s->trimmer))
    return;
  uv_timer_start(&s->trimmer, on_trim, 1000, 0);
}

static void on_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->handles_open > 0)
    return;
  evs_http_server_t *s = c->srv;
  free(c->hbuf);
  free(c->hdrs);
  free(c->body);
  free(c->stash);
  free(c);
  s->n_conns--;
  release_memory(s);
  server_maybe_free(s);
}

static void conn_close(conn_t *c) {
  if (c->state >= ST_CLOSING)
    return;
  if (c->is_virtual) {
    c->state = ST_CLOSED;
    stream_end(c, EVS_ECLOSED);
    return;
  }
  c->state = ST_CLOSING;
  stream_end(c, EVS_ECLOSED);
  conn_unlink(c);
  yield_remove(c);
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = evs_container_of(req, conn_t, shutdown_req);
  if (status < 0 || c->got_eof)
    conn_close(c);
}

/* Called when the connection must end: once the queued responses are written, shut down our
 * side and linger. */
static void conn_drain(conn_t *c) {
  if (c->state >= ST_LINGER)
    return;
  c->state = ST_DRAINING;
  if (c->write_pending > 0 || c->stream_pull) {
    conn_arm(c, c->srv->opts.idle_timeout_ms);
    return;
  }
  if (c->is_virtual) {
    c->state = ST_CLOSED;
    return;
  }
  if (c->got_eof || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  c->state = ST_LINGER;
  conn_arm(c, c->srv->opts.idle_timeout_ms < LINGER_MS ? c->srv->opts.idle_timeout_ms : LINGER_MS);
  conn_read_start(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn_t *c = h->data;
  *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  if (nread > 0) {
    conn_feed(c, buf->base, (size_t)nread);
    return;
  }
  if (nread == 0)
    return;
  /* EOF: the client sent all it will. Answered requests still get their responses. */
  if (nread == UV_EOF && (c->state == ST_OPEN || c->state == ST_DRAINING)) {
    c->got_eof = 1;
    uv_read_stop(st);
    /* Requests stashed by backpressure are still answered: drain once they are parsed. */
    if (!(c->state == ST_OPEN && c->paused))
      conn_drain(c);
    return;
  }
  conn_close(c);
}

static void conn_read_start(conn_t *c) {
  /* Already reading is fine (UV_EALREADY); any other failure ends the connection. */
  if (c->is_virtual || c->state >= ST_CLOSING)
    return;
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc != 0 && rc != UV_EALREADY)
    conn_close(c);
}

static void conn_init(conn_t *c, evs_http_server_t *s) {
  c->srv = s;
  c->state = ST_OPEN;
  llhttp_init(&c->parser, HTTP_REQUEST, settings());
  c->parser.data = c;
}

/* ---- server ------------------------------------------------------------------------------ */

static void reject_pending(evs_http_server_t *s);

static void on_reject_closed(uv_handle_t *h) {
  evs_http_server_t *s = evs_container_of(h, evs_http_server_t, reject);
  s->reject_busy = 0;
  if (s->reject_wanted && !s->listener_closing)
    reject_pending(s);
  server_maybe_free(s);
}

/* Accepts the pending connection into the spare handle and closes it. While the spare is
 * closing, a second failure waits for it (the listener is paused until then, not for good). */
static void reject_pending(evs_http_server_t *s) {
  s->reject_wanted = 0;
  if (s->reject_busy) {
    s->reject_wanted = 1;
    return;
  }
  uv_tcp_init(s->loop, &s->reject);
  s->reject_busy = 1;
  (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&s->reject); /* UV_EAGAIN: none */
  uv_close((uv_handle_t *)&s->reject, on_reject_closed);
}

static void on_connection(uv_stream_t *listener, int status) {
  evs_http_server_t *s = evs_container_of(listener, evs_http_server_t, listener);
  if (status < 0 || s->closing)
    return;
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    reject_pending(s);
    return;
  }
  conn_init(c, s);
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles_open = 2;
  s->n_conns++;
  if (s->n_conns > s->peak_conns)
    s->peak_conns = s->n_conns;
  if (s->n_open >= s->opts.max_connections)
    make_room(s);
  int full = s->n_open >= s->opts.max_connections;
  conn_link(c);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || full) {
    conn_close(c); /* nothing to give up for it: accepted and closed at once, not queued */
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  conn_arm(c, s->opts.request_timeout_ms);
  conn_read_start(c);
}

int evs_http_server_new(uv_loop_t *loop, const evs_http_server_options_t *opts,
                        evs_http_server_t **out) {
  if (loop == NULL || out == NULL)
    return UV_EINVAL;
  evs_http_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return UV_ENOMEM;
  s->loop = loop;
  evs_list_init(&s->conns);
  evs_list_init(&s->yield);
  evs_http_server_options_init(&s->opts);
  if (opts)
    s->opts = *opts;
  if (s->opts.max_header_bytes == 0 || s->opts.max_header_bytes > UINT32_MAX / 2 ||
      s->opts.max_connections == 0 || s->opts.request_timeout_ms == 0 ||
      s->opts.idle_timeout_ms == 0) {
    free(s);
    return UV_EINVAL;
  }
  /* The listener handle exists from the start so close always has a handle to wait for and
   * its callback is never called synchronously. */
  uv_tcp_init(loop, &s->listener);
  uv_timer_init(loop, &s->closer);
  uv_idle_init(loop, &s->idle);
  uv_timer_init(loop, &s->trimmer);
  uv_unref((uv_handle_t *)&s->trimmer);
  *out = s;
  return 0;
}

int evs_http_server_route(evs_http_server_t *s, const char *path, unsigned methods,
                          evs_http_handler_cb cb, void *data) {
  if (path == NULL || path[0] != '/' || cb == NULL || methods == 0)
    return UV_EINVAL;
  if (find_route(s, path))
    return UV_EEXIST;
  route_t *r = realloc(s->routes, (s->n_routes + 1) * sizeof(*r));
  if (r == NULL)
    return UV_ENOMEM;
  s->routes = r;
  char *p = strdup(path);
  if (p == NULL)
    return UV_ENOMEM;
  r[s->n_routes++] = (route_t){p, methods, cb, data};
  return 0;
}

void evs_http_server_set_observer(evs_http_server_t *s, evs_http_observer_cb cb, void *data) {
  s->observer = cb;
  s->observer_data = data;
}

/* Parses ":port", "ipv4:port", "localhost:port", "[ipv6]:port" without DNS. */
static int parse_address(const char *address, struct sockaddr_storage *ss) {
  char host[64];
  const char *colon;
  if (address == NULL)
    return UV_EINVAL;
  if (address[0] == '[') {
    const char *end = strchr(address, ']');
    if (end == NULL || end[1] != ':' || (size_t)(end - address - 1) >= sizeof host)
      return UV_EINVAL;
    memcpy(host, address + 1, (size_t)(end - address - 1));
    host[end - address - 1] = '\0';
    colon = end + 1;
  } else {
    colon = strrchr(address, ':');
    if (colon == NULL || (size_t)(colon - address) >= sizeof host)
      return UV_EINVAL;
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
    return UV_EINVAL;
  if (host[0] == '\0')
    strcpy(host, "0.0.0.0");
  else if (strcmp(host, "localhost") == 0)
    strcpy(host, "127.0.0.1");
  if (address[0] == '[')
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

int evs_http_server_listen(evs_http_server_t *s, const char *address) {
  struct sockaddr_storage ss;
  if (s->closing || s->listener_closing)
    return EVS_ESTATE;
  int rc = parse_address(address, &ss);
  if (rc != 0)
    return UV_EINVAL;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  if (rc != 0)
    return rc;
  int len = sizeof ss;
  rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
  if (rc != 0)
    return rc;
  s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

int evs_http_server_port(const evs_http_server_t *s) { return s->port; }

size_t evs_http_server_connections(const evs_http_server_t *s) { return s->n_conns; }

static void on_listener_closed(uv_handle_t *h) {
  evs_http_server_t *s = evs_container_of(h, evs_http_server_t, listener);
  s->listener_closed = 1;
  server_maybe_free(s);
}

void evs_http_server_stop_accepting(evs_http_server_t *s) {
  if (s->listener_closing)
    return;
  s->listener_closing = 1;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

static void on_closer_closed(uv_handle_t *h) {
  evs_http_server_t *s = evs_container_of(h, evs_http_server_t, closer);
  s->closer_closed = 1;
  server_maybe_free(s);
}

static void on_trimmer_closed(uv_handle_t *h) {
  evs_http_server_t *s = evs_container_of(h, evs_http_server_t, trimmer);
  s->trimmer_closed = 1;
  server_maybe_free(s);
}

static void on_idle_closed(uv_handle_t *h) {
  evs_http_server_t *s = evs_container_of(h, evs_http_server_t, idle);
  s->idle_closed = 1;
  server_maybe_free(s);
}

void evs_http_server_close(evs_http_server_t *s, evs_http_server_close_cb cb, void *data) {
  if (s->closing) {
    /* Second call (end of the shutdown grace): drop whatever is still finishing. */
    while (!evs_list_empty(&s->conns))
      conn_close(evs_container_of(s->conns.next, conn_t, link));
    return;
  }
  s->closing = 1;
  s->close_cb = cb;
  s->close_data = data;
  evs_http_server_stop_accepting(s);
  uv_close((uv_handle_t *)&s->closer, on_closer_closed);
  uv_close((uv_handle_t *)&s->idle, on_idle_closed);
  uv_close((uv_handle_t *)&s->trimmer, on_trimmer_closed);
  /* Connections with queued responses finish writing them (then close); the others go now. A
   * connection running a handler (close called from that handler) answers with
   * Connection: close. Either way no further request is parsed, so no handler runs again. */
  evs_list_foreach_safe(l, &s->conns) {
    conn_t *c = evs_container_of(l, conn_t, link);
    if (c->state == ST_OPEN && c->write_pending > 0)
      conn_drain(c);
    else if (c->state == ST_OPEN && !c->in_execute)
      conn_close(c);
  }
}

/* ---- request accessors ------------------------------------------------------------------- */

const char *evs_http_request_method(const evs_http_request_t *r) { return r->method; }
const char *evs_http_request_path(const evs_http_request_t *r) { return r->path; }
const char *evs_http_request_query(const evs_http_request_t *r) { return r->query; }
int evs_http_request_is_head(const evs_http_request_t *r) { return r->head; }
size_t evs_http_request_header_count(const evs_http_request_t *r) { return r->conn->nhdrs; }

int evs_http_request_header_at(const evs_http_request_t *r, size_t i, const char **name,
                               const char **value) {
  const conn_t *c = r->conn;
  if (i >= c->nhdrs)
    return UV_EINVAL;
  *name = c->hbuf + c->hdrs[i].name;
  *value = c->hbuf + c->hdrs[i].value;
  return 0;
}

const char *evs_http_request_header(const evs_http_request_t *r, const char *name) {
  return header_value(r->conn, name);
}

const char *evs_http_request_body(const evs_http_request_t *r, size_t *len) {
  if (len)
    *len = r->conn->body_len;
  return r->conn->body_len ? r->conn->body : "";
}

/* ---- socketless connections -------------------------------------------------------------- */

int evs_http_vconn_new(evs_http_server_t *s, evs_http_sink_cb sink, void *sink_data,
                       evs_http_vconn_t **out) {
  if (s == NULL || sink == NULL || out == NULL)
    return UV_EINVAL;
  evs_http_vconn_t *v = calloc(1, sizeof(*v));
  if (v == NULL)
    return UV_ENOMEM;
  conn_init(&v->conn, s);
  v->conn.is_virtual = 1;
  v->conn.sink = sink;
  v->conn.sink_data = sink_data;
  *out = v;
  return 0;
}

int evs_http_vconn_feed(evs_http_vconn_t *v, const char *data, size_t len) {
  conn_feed(&v->conn, data, len);
  return v->conn.state == ST_OPEN ? 0 : EVS_ECLOSED;
}

int evs_http_vconn_eof(evs_http_vconn_t *v) {
  conn_t *c = &v->conn;
  if (c->state == ST_OPEN && !c->paused)
    llhttp_finish(&c->parser);
  c->got_eof = 1;
  conn_drain(c);
  return c->state == ST_OPEN ? 0 : EVS_ECLOSED;
}

void evs_http_vconn_free(evs_http_vconn_t *v) {
  if (v == NULL)
    return;
  v->conn.state = ST_CLOSED;
  stream_end(&v->conn, EVS_ECLOSED);
  free(v->conn.hbuf);
  free(v->conn.hdrs);
  free(v->conn.body);
  free(v->conn.stash);
  free(v);
}
