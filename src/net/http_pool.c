/* HTTP/1.1 client: pools, connections and requests. See evscale/http_client.h.
 *
 * Lifetimes: a request embeds its timer and is freed from that timer's close callback, after
 * on_done; a connection owns its stream and is freed from the stream's close callback; a pool
 * owns its expiry timer and, once expired, is freed from that timer's close callback (the pools
 * still listed when the client closes are freed with it). The client counts all three (`live`)
 * plus its own `closer` handle, and finishes closing when the count reaches zero, so
 * evs_http_client_close's callback always runs from the loop.
 *
 * Two kinds of connection per pool: ordinary ones (at most max_conns_per_host) and stream ones,
 * each carrying one long-lived streaming request (at most max_streams_per_host). A connection
 * changes kind only while it carries no request: an idle one taken by a stream, a stream's one
 * parked after the stream ended cleanly. Each kind has its own queue, in priority order. */
#include "evscale/http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "evscale/buf.h"
#include "evscale/error.h"
#include "evscale/list.h"
#include "evscale/stream.h"

enum { C_CONNECTING, C_IDLE, C_BUSY, C_CLOSING };

typedef struct evs__pool_s evs__pool_t;

typedef struct {
  evs_list_t link;
  evs__pool_t *pool;
  evs_http_client_t *client;
  evs_stream_t *stream;
  int state;
  int reused;
  int kind; /* K_ORDINARY or K_STREAM: which of the pool's counts it is in */
  evs_http_req_t *req;
} evs__conn_t;

enum { K_ORDINARY = 0, K_STREAM = 1 };

struct evs__pool_s {
  evs_list_t link;
  evs_http_client_t *client;
  char *key;
  char host[256];
  int port;
  evs_tls_config_t *tls; /* a reference, or NULL for http */
  evs_list_t conns;
  evs_list_t queue[2]; /* by kind: requests waiting for a connection, in priority order */
  unsigned nconns[2];  /* by kind: connecting, idle and busy connections */
  unsigned nreqs;      /* requests of this pool not finished yet (waiting for a token too) */
  int expired;         /* unlinked from the client; freed when its timer has closed */
  uv_timer_t expiry;   /* runs while the pool has neither request nor connection */
};

struct evs_http_client_s {
  uv_loop_t *loop;
  evs_http_client_options_t o;
  char *user_agent;
  evs_list_t pools;
  evs_list_t reqs;
  unsigned nconns;
  uint64_t connects;
  unsigned live;
  int closing;
  void (*close_cb)(void *);
  void *close_arg;
  uv_timer_t closer;
};

struct evs_http_req_s {
  evs_list_t link;  /* client->reqs */
  evs_list_t qlink; /* pool->queue while waiting */
  evs_http_client_t *client;
  evs__pool_t *pool;
  evs__conn_t *conn;
  char *wire;
  size_t wire_len;
  int idempotent, head, streaming;
  int started, done, in_cb, cancel_pending, retried, got_bytes;
  uint64_t timeout_ms, stream_idle_ms;
  evs_ratelimit_t *limiter;
  evs_prio_t priority;
  evs_ratelimit_req_t *token_req; /* while waiting for a token */
  evs_http__parser_t parser;
  evs_http_head_cb on_head;
  evs_http_body_cb on_body;
  evs_http_done_cb on_done;
  void *arg;
  uv_timer_t timer;
};

static void dispatch(evs__pool_t *pool);
static void conn_close(evs__conn_t *conn);
static void pool_connect_failed(evs__pool_t *pool, int err);

static void pool_free(evs__pool_t *p) {
  evs_list_remove(&p->link);
  evs_tls_config_unref(p->tls);
  free(p->key);
  free(p);
}

static void maybe_finish_close(evs_http_client_t *c) {
  if (!c->closing || c->live > 0)
    return;
  while (!evs_list_empty(&c->pools))
    pool_free(evs_container_of(c->pools.next, evs__pool_t, link));
  void (*cb)(void *) = c->close_cb;
  void *arg = c->close_arg;
  free(c->user_agent);
  free(c);
  if (cb != NULL)
    cb(arg);
}

static void on_pool_timer_closed(uv_handle_t *h) {
  evs__pool_t *p = h->data;
  evs_http_client_t *c = p->client;
  if (p->expired)
    pool_free(p);
  c->live--;
  maybe_finish_close(c);
}

/* Nothing refers to the pool any more (no request, no connection): it goes, taking its TLS
 * reference with it, so a client that talked to many hosts (or rotated credentials, which makes
 * a new TLS identity and so a new pool) does not keep every pool it ever made. */
static void on_pool_expiry(uv_timer_t *t) {
  evs__pool_t *p = t->data;
  if (p->nreqs > 0 || !evs_list_empty(&p->conns))
    return; /* cannot happen: pool_check stops the timer whenever either appears */
  p->expired = 1;
  evs_list_remove(&p->link); /* leaves it linked to itself: pool_free's removal is harmless */
  uv_close((uv_handle_t *)&p->expiry, on_pool_timer_closed);
}

/* Called whenever a request or connection leaves the pool: starts the expiry once it is unused.
 * Freeing only from the timer keeps the pool valid on every call stack that still holds it. */
static void pool_check(evs__pool_t *p) {
  if (p->client->closing || p->expired)
    return;
  if (p->nreqs == 0 && evs_list_empty(&p->conns))
    uv_timer_start(&p->expiry, on_pool_expiry, p->client->o.idle_pool_timeout_ms, 0);
  else
    uv_timer_stop(&p->expiry);
}

static void on_req_timer_closed(uv_handle_t *h) {
  evs_http_req_t *r = h->data;
  evs_http_client_t *c = r->client;
  free(r);
  c->live--;
  maybe_finish_close(c);
}

/* Runs on_done exactly once and detaches the request from its queue and connection. A request
 * that fails while its bytes are on a connection takes the connection down with it: the rest of
 * its response would otherwise be read as the next request's. */
static void req_finish(evs_http_req_t *r, int err) {
  if (r->done)
    return;
  r->done = 1;
  evs_list_remove(&r->qlink);
  evs_list_remove(&r->link);
  if (r->token_req != NULL) {
    evs_ratelimit_req_t *t = r->token_req;
    r->token_req = NULL;
    evs_ratelimit_cancel(t); /* runs on_token with ECANCELED, which sees r->done */
  }
  evs__conn_t *conn = r->conn;
  evs__pool_t *pool = r->pool;
  if (conn != NULL) {
    conn->req = NULL;
    r->conn = NULL;
    if (conn->state == C_BUSY)
      conn_close(conn);
  }
  uv_timer_stop(&r->timer);
  r->on_done(r, err, err == 0 ? &r->parser.resp : NULL, r->arg);
  evs_http__parser_free(&r->parser);
  free(r->wire);
  pool->nreqs--;
  /* The connection it held (closed, or still connecting for nobody) is room for the queue. */
  if (conn != NULL)
    dispatch(pool);
  pool_check(pool);
  uv_close((uv_handle_t *)&r->timer, on_req_timer_closed);
}

static void on_stream_closed(evs_stream_t *s) {
  evs__conn_t *conn = evs_stream_data(s);
  evs_http_client_t *c = conn->client;
  free(conn);
  c->live--;
  maybe_finish_close(c);
}

static void conn_unlink(evs__conn_t *conn) {
  evs_list_remove(&conn->link);
  conn->pool->nconns[conn->kind]--;
  conn->client->nconns--;
  conn->state = C_CLOSING;
  if (conn->req != NULL) {
    conn->req->conn = NULL;
    conn->req = NULL;
  }
  pool_check(conn->pool);
}

static void conn_set_kind(evs__conn_t *conn, int kind) {
  conn->pool->nconns[conn->kind]--;
  conn->pool->nconns[kind]++;
  conn->kind = kind;
}

static void conn_close(evs__conn_t *conn) {
  if (conn->state == C_CLOSING)
    return;
  conn_unlink(conn);
  evs_stream_close(conn->stream, on_stream_closed);
}

static int glue_head(void *ctx);
static int glue_body(void *ctx, const char *buf, size_t n);

/* A fresh parser for the request: at creation and again before a retry. */
static void req_parser_init(evs_http_req_t *r) {
  /* A stream's body is not counted (see count() in http_client.c); its head is. */
  evs_http__parser_init(&r->parser, r->head, r->client->o.max_response_bytes);
  r->parser.streaming = r->streaming;
  r->parser.ctx = r;
  if (r->streaming) {
    r->parser.on_head = glue_head;
    r->parser.on_body = glue_body;
  }
}

static int retry_worthy(int err) {
  return err == EVS_ECLOSED || err == UV_ECONNRESET || err == UV_EPIPE;
}

/* A failure of the connection: the request on it fails, unless it can be sent again (see the
 * header: a reused connection closed before any response byte, idempotent method, once). */
static void conn_fail(evs__conn_t *conn, int err) {
  evs_http_req_t *r = conn->req;
  evs__pool_t *pool = conn->pool;
  int reused = conn->reused;
  conn_close(conn);
  if (r == NULL)
    return;
  if (reused && !r->got_bytes && r->idempotent && !r->retried && retry_worthy(err) &&
      !r->client->closing) {
    r->retried = 1;
    evs_http__parser_free(&r->parser);
    req_parser_init(r);
    evs_list_insert_after(&pool->queue[r->streaming], &r->qlink); /* first: it was sent already */
    dispatch(pool);
    return;
  }
  req_finish(r, err);
  dispatch(pool);
}

/* A connection without a request joins the ordinary idle ones; one that carried a stream does
 * so only while the ordinary kind has room, else it is closed (the cap would be exceeded). */
static void conn_idle(evs__conn_t *conn) {
  conn->req = NULL;
  if (conn->kind == K_STREAM) {
    if (conn->pool->nconns[K_ORDINARY] >= conn->client->o.max_conns_per_host) {
      conn_close(conn);
      return;
    }
    conn_set_kind(conn, K_ORDINARY);
  }
  conn->state = C_IDLE;
  evs_stream_set_idle_timeout(conn->stream, conn->client->o.idle_conn_timeout_ms);
}

static void on_write(evs_stream_t *s, int status, void *arg) {
  (void)s;
  evs__conn_t *conn = arg;
  if (status != 0 && status != EVS_ECANCELED && conn->state == C_BUSY)
    conn_fail(conn, status);
}

static void conn_send(evs__conn_t *conn, evs_http_req_t *r) {
  conn->state = C_BUSY;
  conn->req = r;
  r->conn = conn;
  evs_stream_set_idle_timeout(conn->stream, 0);
  int rc = evs_stream_write(conn->stream, r->wire, r->wire_len, on_write, conn);
  if (rc != 0)
    conn_fail(conn, rc);
}

/* A connection goes back to the pool only after a complete keep-alive response with nothing
 * after it (we never pipeline, so extra bytes mean a confused server). */
static int reusable(const evs_http__parser_t *p, int extra, int closing) {
  return !extra && !closing && evs_http__parser_keep_alive(p);
}

/* Streaming glue: the request timeout covers the wait for the head only; a watch then lives as
 * long as the server keeps it (or until stream_idle_timeout_ms of silence). */
static int glue_head(void *ctx) {
  evs_http_req_t *r = ctx;
  uv_timer_stop(&r->timer);
  if (r->conn != NULL && r->stream_idle_ms > 0)
    evs_stream_set_idle_timeout(r->conn->stream, r->stream_idle_ms);
  r->on_head(r, &r->parser.resp, r->arg);
  return r->cancel_pending;
}

static int glue_body(void *ctx, const char *buf, size_t n) {
  evs_http_req_t *r = ctx;
  int rc = r->on_body(r, buf, n, r->arg);
  return rc != 0 || r->cancel_pending;
}

/* The response ended (rc 1) or failed (rc < 0); `extra` says bytes followed it. */
static void conn_response_end(evs__conn_t *conn, evs_http_req_t *r, int rc, int extra) {
  evs__pool_t *pool = conn->pool;
  if (r->cancel_pending || conn->state == C_CLOSING)
    rc = EVS_ECANCELED;
  if (rc < 0) {
    conn_close(conn);
    req_finish(r, rc);
    dispatch(pool);
    return;
  }
  if (reusable(&r->parser, extra, conn->client->closing)) {
    conn->req = NULL;
    r->conn = NULL;
    conn_idle(conn);
  } else {
    conn_close(conn);
  }
  req_finish(r, 0);
  dispatch(pool);
}

static void conn_on_read(evs_stream_t *s, ssize_t nread, const char *buf) {
  evs__conn_t *conn = evs_stream_data(s);
  evs_http_req_t *r = conn->req;
  if (conn->state == C_CLOSING)
    return;
  if (r == NULL) {
    /* An idle connection: the server closed it, it timed out, or it sent bytes nobody asked
     * for. None of these leaves it usable. */
    conn_close(conn);
    return;
  }
  if (nread < 0) {
    /* The peer's close may be how the body ends (HTTP/1.0, no length); anything else fails the
     * request, or retries it (conn_fail). */
    int rc = nread == EVS_ECLOSED ? evs_http__parser_eof(&r->parser) : (int)nread;
    if (rc == 1)
      conn_response_end(conn, r, 1, 1);
    else
      conn_fail(conn, rc);
    return;
  }
  r->got_bytes = 1;
  size_t used;
  r->in_cb = 1;
  int rc = evs_http__parser_feed(&r->parser, buf, (size_t)nread, &used);
  r->in_cb = 0;
  if (rc == 0 && !r->cancel_pending && conn->state != C_CLOSING)
    return;
  conn_response_end(conn, r, rc == 0 ? EVS_ECANCELED : rc, rc == 1 && used < (size_t)nread);
}

static void conn_on_connect(evs_stream_t *s, int status) {
  evs__conn_t *conn = evs_stream_data(s);
  evs__pool_t *pool = conn->pool;
  if (conn->state == C_CLOSING)
    return; /* we closed it; on_stream_closed frees it */
  if (status != 0) {
    /* The stream frees itself after a failed connect: the connection goes with it. */
    evs_http_req_t *r = conn->req;
    evs_http_client_t *c = conn->client;
    conn_unlink(conn);
    free(conn);
    c->live--;
    if (r != NULL)
      req_finish(r, status);
    pool_connect_failed(pool, status);
    maybe_finish_close(c);
    return;
  }
  int rc = evs_stream_read_start(s, conn_on_read);
  if (rc != 0) {
    conn_fail(conn, rc);
    return;
  }
  /* Keepalive probes find a peer gone without a FIN (a node lost, a NAT entry dropped), which
   * would otherwise leave a watch silent forever. Best effort: a failure changes nothing else. */
  (void)evs_stream_set_keepalive(s, conn->client->o.tcp_keepalive_s);
  if (conn->req != NULL)
    conn_send(conn, conn->req);
  else
    conn_idle(conn);
  dispatch(pool);
}

static evs__conn_t *conn_new(evs__pool_t *pool, int kind) {
  evs_http_client_t *c = pool->client;
  evs__conn_t *conn = calloc(1, sizeof *conn);
  if (conn == NULL)
    return NULL;
  conn->pool = pool;
  conn->client = c;
  conn->state = C_CONNECTING;
  conn->kind = kind;
  evs_stream_options_t so = {.host = pool->host,
                             .port = pool->port,
                             .tls = pool->tls,
                             .connect_timeout_ms = c->o.connect_timeout_ms,
                             .data = conn};
  if (evs_stream_connect(c->loop, &so, conn_on_connect, &conn->stream) != 0) {
    free(conn);
    return NULL;
  }
  evs_list_push_back(&pool->conns, &conn->link);
  pool->nconns[kind]++;
  c->nconns++;
  c->connects++;
  c->live++;
  return conn;
}

/* Idle connections are all of the ordinary kind (conn_idle); connecting ones of either. */
static evs__conn_t *find_conn(evs__pool_t *pool, int state, int kind) {
  for (evs_list_t *l = pool->conns.next; l != &pool->conns; l = l->next) {
    evs__conn_t *conn = evs_container_of(l, evs__conn_t, link);
    if (conn->state == state && conn->req == NULL && conn->kind == kind)
      return conn;
  }
  return NULL;
}

static unsigned kind_max(const evs_http_client_t *c, int kind) {
  return kind == K_STREAM ? c->o.max_streams_per_host : c->o.max_conns_per_host;
}

/* A connection for the head request of a queue, or NULL when it must wait (its kind is at its
 * maximum). An idle connection first (a stream takes it over while streams have room), then a
 * connecting one nobody waits for, then a new one. *failed: a new connection could not even be
 * started and none of the kind exists to wait for. */
static evs__conn_t *pick_conn(evs__pool_t *pool, int kind, int *failed) {
  int room = pool->nconns[kind] < kind_max(pool->client, kind);
  *failed = 0;
  evs__conn_t *conn = find_conn(pool, C_IDLE, K_ORDINARY);
  if (conn != NULL && (kind == K_ORDINARY || room)) {
    conn_set_kind(conn, kind);
    conn->reused = 1;
    return conn;
  }
  if ((conn = find_conn(pool, C_CONNECTING, kind)) != NULL)
    return conn;
  if (!room)
    return NULL;
  conn = conn_new(pool, kind);
  *failed = conn == NULL && pool->nconns[kind] == 0;
  return conn;
}

/* Serves one queue in its order; a request that must wait stops the queue, so that within a
 * kind nothing overtakes a request of higher (or equal, earlier) priority. */
static void dispatch_kind(evs__pool_t *pool, int kind) {
  evs_http_client_t *c = pool->client;
  evs_list_t *q = &pool->queue[kind];
  while (!evs_list_empty(q) && !c->closing) {
    evs_http_req_t *r = evs_container_of(q->next, evs_http_req_t, qlink);
    int failed;
    evs__conn_t *conn = pick_conn(pool, kind, &failed);
    if (failed) {
      evs_list_remove(&r->qlink);
      req_finish(r, UV_ENOMEM);
      continue;
    }
    if (conn == NULL)
      return;
    evs_list_remove(&r->qlink);
    if (conn->state == C_IDLE) {
      conn_send(conn, r);
      continue;
    }
    conn->req = r;
    r->conn = conn;
  }
}

/* Ordinary requests first: a scale write must not wait for streams to be set up. */
static void dispatch(evs__pool_t *pool) {
  dispatch_kind(pool, K_ORDINARY);
  dispatch_kind(pool, K_STREAM);
}

/* A connect failed (refused, unreachable, DNS, TLS). With no connection of the pool open the
 * host is taken to be down: every queued request fails now with the same error, which the
 * caller retries with its backoff, instead of each waiting out its timeout. With one open, the
 * queue goes on (dispatch opens another connection if there is room). */
static void pool_connect_failed(evs__pool_t *pool, int err) {
  if (pool->client->closing)
    return;
  for (evs_list_t *l = pool->conns.next; l != &pool->conns; l = l->next) {
    int state = evs_container_of(l, evs__conn_t, link)->state;
    if (state == C_IDLE || state == C_BUSY) {
      dispatch(pool);
      return;
    }
  }
  for (int kind = K_ORDINARY; kind <= K_STREAM; kind++)
    while (!evs_list_empty(&pool->queue[kind]) && !pool->client->closing)
      req_finish(evs_container_of(pool->queue[kind].next, evs_http_req_t, qlink), err);
}

/* HIGH before NORMAL before LOW: the limiter's order (evscale/ratelimit.h). */
static int prio_rank(evs_prio_t p) { return p == EVS_PRIO_HIGH ? 0 : p == EVS_PRIO_LOW ? 2 : 1; }

/* Into its kind's queue after every request of the same or a higher priority. */
static void enqueue(evs_http_req_t *r) {
  evs_list_t *q = &r->pool->queue[r->streaming], *at = q->prev;
  while (at != q &&
         prio_rank(evs_container_of(at, evs_http_req_t, qlink)->priority) > prio_rank(r->priority))
    at = at->prev;
  evs_list_insert_after(at, &r->qlink);
  dispatch(r->pool);
}

static void on_token(evs_ratelimit_req_t *t, int status, void *arg) {
  (void)t;
  evs_http_req_t *r = arg;
  r->token_req = NULL;
  if (r->done)
    return;
  if (status != 0)
    req_finish(r, status);
  else
    enqueue(r);
}

static void on_req_timer(uv_timer_t *t) {
  evs_http_req_t *r = t->data;
  if (r->started) {
    req_finish(r, EVS_ETIMEDOUT);
    return;
  }
  /* The first tick only starts the request (token, then queue), so that no callback can run
   * inside evs_http_request. */
  r->started = 1;
  if (r->timeout_ms != UINT64_MAX)
    uv_timer_start(&r->timer, on_req_timer, r->timeout_ms, 0);
  if (r->limiter == NULL) {
    enqueue(r);
    return;
  }
  int rc = evs_ratelimit_acquire(r->limiter, r->priority, on_token, r, &r->token_req);
  if (rc != 0)
    req_finish(r, rc);
}

static evs__pool_t *pool_get(evs_http_client_t *c, const evs_http_url_t *u, evs_tls_config_t *tls) {
  char key[512];
  snprintf(key, sizeof key, "%s|%s|%d|%s", u->tls ? "https" : "http", u->host, u->port,
           u->tls ? evs_tls_config_identity(tls) : "");
  for (evs_list_t *l = c->pools.next; l != &c->pools; l = l->next) {
    evs__pool_t *p = evs_container_of(l, evs__pool_t, link);
    if (strcmp(p->key, key) == 0)
      return p;
  }
  evs__pool_t *p = calloc(1, sizeof *p);
  if (p == NULL || (p->key = strdup(key)) == NULL) {
    free(p);
    return NULL;
  }
  p->client = c;
  snprintf(p->host, sizeof p->host, "%s", u->host);
  p->port = u->port;
  p->tls = u->tls ? evs_tls_config_ref(tls) : NULL;
  evs_list_init(&p->conns);
  evs_list_init(&p->queue[K_ORDINARY]);
  evs_list_init(&p->queue[K_STREAM]);
  uv_timer_init(c->loop, &p->expiry);
  p->expiry.data = p;
  c->live++; /* the expiry timer */
  evs_list_push_back(&c->pools, &p->link);
  return p;
}

typedef struct {
  char *p;
  size_t len, cap;
  int err;
} evs__buf_t;

static void buf_add(evs__buf_t *b, const void *s, size_t n) {
  if (b->err)
    return;
  int rc = evs_buf_reserve((void **)&b->p, &b->cap, b->len + n + 1, 1, 512);
  if (rc != 0) {
    b->err = rc;
    return;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_str(evs__buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

/* Header injection guard: a name is an RFC 9110 token; a value has no CR, LF or NUL. */
static int valid_token(const char *s) {
  if (s == NULL || *s == '\0')
    return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *s))
      return 0;
  return 1;
}

static int check_headers(const evs_http_request_opts_t *o, int *has_host) {
  *has_host = 0;
  for (size_t i = 0; i < o->nheaders; i++) {
    const char *n = o->headers[i].name, *v = o->headers[i].value;
    if (!valid_token(n) || v == NULL || strpbrk(v, "\r\n") != NULL)
      return UV_EINVAL;
    if (strcasecmp(n, "Content-Length") == 0 || strcasecmp(n, "Transfer-Encoding") == 0)
      return UV_EINVAL;
    if (strcasecmp(n, "Host") == 0)
      *has_host = 1;
  }
  return 0;
}

static int build_wire(evs_http_client_t *c, const evs_http_request_opts_t *o,
                      const evs_http_url_t *u, evs_http_req_t *r) {
  int has_host, rc = check_headers(o, &has_host);
  if (rc != 0)
    return rc;
  evs__buf_t b = {0};
  char tmp[320];
  buf_str(&b, o->method);
  buf_str(&b, u->path[0] == '?' ? " /" : " ");
  buf_str(&b, u->path);
  buf_str(&b, " HTTP/1.1\r\n");
  if (!has_host) {
    int v6 = strchr(u->host, ':') != NULL, dflt = u->port == (u->tls ? 443 : 80);
    snprintf(tmp, sizeof tmp, "Host: %s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "");
    buf_str(&b, tmp);
    if (!dflt)
      snprintf(tmp, sizeof tmp, ":%d", u->port), buf_str(&b, tmp);
    buf_str(&b, "\r\n");
  }
  buf_str(&b, "User-Agent: "), buf_str(&b, c->user_agent), buf_str(&b, "\r\n");
  for (size_t i = 0; i < o->nheaders; i++) {
    buf_str(&b, o->headers[i].name), buf_str(&b, ": ");
    buf_str(&b, o->headers[i].value), buf_str(&b, "\r\n");
  }
  if (o->body_len > 0 || !r->idempotent || strcmp(o->method, "PUT") == 0) {
    snprintf(tmp, sizeof tmp, "Content-Length: %zu\r\n", o->body_len);
    buf_str(&b, tmp);
  }
  buf_str(&b, "\r\n");
  if (o->body_len > 0)
    buf_add(&b, o->body, o->body_len);
  if (b.err) {
    free(b.p);
    return b.err;
  }
  r->wire = b.p;
  r->wire_len = b.len;
  return 0;
}

static int is_idempotent(const char *m) {
  static const char *const ok[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (strcmp(m, ok[i]) == 0)
      return 1;
  return 0;
}

static int check_request(evs_http_client_t *c, const evs_http_request_opts_t *o,
                         evs_http_url_t *u) {
  if (c->closing)
    return EVS_ESTATE;
  if (o == NULL || o->on_done == NULL || !valid_token(o->method) ||
      (o->on_head == NULL) != (o->on_body == NULL) || (o->body_len > 0 && o->body == NULL))
    return UV_EINVAL;
  if (evs_http_url_parse(o->url, u) != 0 || (u->tls && o->tls == NULL))
    return UV_EINVAL;
  return 0;
}

static void req_setup(evs_http_req_t *r, evs_http_client_t *c, const evs_http_request_opts_t *o) {
  r->client = c;
  r->streaming = o->on_head != NULL;
  r->on_head = o->on_head;
  r->on_body = o->on_body;
  r->on_done = o->on_done;
  r->arg = o->arg;
  r->timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : c->o.request_timeout_ms;
  r->stream_idle_ms = o->stream_idle_timeout_ms;
  r->limiter = o->limiter;
  r->priority = o->priority;
  evs_list_init(&r->qlink);
  req_parser_init(r);
}

int evs_http_request(evs_http_client_t *c, const evs_http_request_opts_t *o, evs_http_req_t **out) {
  evs_http_url_t u;
  int rc = check_request(c, o, &u);
  if (rc != 0)
    return rc;
  evs_http_req_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return UV_ENOMEM;
  r->idempotent = is_idempotent(o->method);
  r->head = strcmp(o->method, "HEAD") == 0;
  if ((rc = build_wire(c, o, &u, r)) != 0 || (r->pool = pool_get(c, &u, o->tls)) == NULL) {
    free(r->wire);
    free(r);
    return rc != 0 ? rc : UV_ENOMEM;
  }
  req_setup(r, c, o);
  r->pool->nreqs++;
  pool_check(r->pool);
  uv_timer_init(c->loop, &r->timer);
  r->timer.data = r;
  uv_timer_start(&r->timer, on_req_timer, 0, 0);
  evs_list_push_back(&c->reqs, &r->link);
  c->live++;
  if (out != NULL)
    *out = r;
  return 0;
}

void evs_http_cancel(evs_http_req_t *r) {
  if (r->done)
    return;
  if (r->in_cb) {
    r->cancel_pending = 1;
    return;
  }
  req_finish(r, EVS_ECANCELED);
}

int evs_http_client_new(uv_loop_t *loop, const evs_http_client_options_t *opts,
                        evs_http_client_t **out) {
  evs_http_client_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  if (opts != NULL)
    c->o = *opts;
  if (c->o.max_conns_per_host == 0)
    c->o.max_conns_per_host = 4;
  if (c->o.connect_timeout_ms == 0)
    c->o.connect_timeout_ms = 10000;
  if (c->o.request_timeout_ms == 0)
    c->o.request_timeout_ms = 10000;
  if (c->o.idle_conn_timeout_ms == 0)
    c->o.idle_conn_timeout_ms = 90000;
  if (c->o.max_response_bytes == 0)
    c->o.max_response_bytes = (size_t)16 << 20;
  if (c->o.max_streams_per_host == 0)
    c->o.max_streams_per_host = 64;
  if (c->o.idle_pool_timeout_ms == 0)
    c->o.idle_pool_timeout_ms = 60000;
  if (c->o.tcp_keepalive_s == 0)
    c->o.tcp_keepalive_s = 30;
  c->user_agent = strdup(c->o.user_agent != NULL ? c->o.user_agent : "evscale/" EVS_VERSION);
  if (c->user_agent == NULL || strpbrk(c->user_agent, "\r\n") != NULL) {
    int rc = c->user_agent == NULL ? UV_ENOMEM : UV_EINVAL;
    free(c->user_agent);
    free(c);
    return rc;
  }
  c->o.user_agent = NULL;
  c->loop = loop;
  evs_list_init(&c->pools);
  evs_list_init(&c->reqs);
  uv_timer_init(loop, &c->closer);
  c->closer.data = c;
  *out = c;
  return 0;
}

static void on_closer_closed(uv_handle_t *h) {
  evs_http_client_t *c = h->data;
  c->live--;
  maybe_finish_close(c);
}

/* Requests are canceled one at a time from the head, since an on_done may itself cancel or
 * finish others; one inside its own on_body is left to finish after that callback returns. */
void evs_http_client_close(evs_http_client_t *c, void (*cb)(void *), void *arg) {
  if (c->closing)
    return;
  c->closing = 1;
  c->close_cb = cb;
  c->close_arg = arg;
  c->live++; /* the closer handle: keeps the free off this call stack */
  uv_close((uv_handle_t *)&c->closer, on_closer_closed);
  for (;;) {
    evs_http_req_t *victim = NULL;
    for (evs_list_t *l = c->reqs.next; l != &c->reqs && victim == NULL; l = l->next) {
      evs_http_req_t *r = evs_container_of(l, evs_http_req_t, link);
      if (!r->in_cb)
        victim = r;
      else
        r->cancel_pending = 1;
    }
    if (victim == NULL)
      break;
    req_finish(victim, EVS_ECANCELED);
  }
  for (evs_list_t *pl = c->pools.next; pl != &c->pools; pl = pl->next) {
    evs__pool_t *p = evs_container_of(pl, evs__pool_t, link);
    while (!evs_list_empty(&p->conns))
      conn_close(evs_container_of(p->conns.next, evs__conn_t, link));
    uv_close((uv_handle_t *)&p->expiry, on_pool_timer_closed); /* freed in maybe_finish_close */
  }
}

unsigned evs_http_client_connections(const evs_http_client_t *c) { return c->nconns; }

unsigned evs_http_client_pools(const evs_http_client_t *c) {
  unsigned n = 0;
  for (const evs_list_t *l = c->pools.next; l != &c->pools; l = l->next)
    n++;
  return n;
}
uint64_t evs_http_client_connects(const evs_http_client_t *c) { return c->connects; }
