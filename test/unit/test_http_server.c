/* HTTP server over real loopback sockets: the server runs on a uv loop in the test's thread, a
 * client thread speaks with plain blocking sockets and records what it saw; the assertions run
 * in the main thread after the loop has ended (cmocka's asserts must not run in other threads).
 * Every test ends with uv_loop_close() == 0: all handles closed, nothing leaked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evscale/error.h"
#include "evscale/http_server.h"

#define MAXR 8

typedef struct ctx_s ctx_t;
typedef void (*scenario_fn)(ctx_t *);

struct ctx_s {
  int port;
  scenario_fn fn;
  uv_async_t done;
  uv_async_t close_now;
  evs_http_server_t *srv;
  int closed_cb_ran;
  /* results */
  char resp[MAXR][4096];
  int nresp;
  int eof;        /* the server closed the connection when expected */
  double elapsed; /* seconds, scenario-specific */
  int count;      /* scenario-specific */
  int flags[64];
  char seen[2048]; /* what a handler saw */
  size_t big_ok;
  int stop_only;   /* close_now only stops accepting */
  int force_close; /* close_now closes the server twice (second signal) */
  int close_calls;
};

/* ---- client helpers (blocking sockets, 20 s receive timeout) ----------------------------- */

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

static int cli_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int cli_send(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w <= 0)
      return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int cli_sends(int fd, const char *s) { return cli_send(fd, s, strlen(s)); }

/* Reads one response: head up to CRLFCRLF, then Content-Length bytes unless head_only.
 * Keeps at most cap-1 bytes in out (the rest is read and dropped). Returns the total length or
 * -1 on EOF/error before a full response. Reads byte by byte for the head, so nothing of the
 * next pipelined response is consumed. */
static long cli_response(int fd, char *out, size_t cap, int head_only) {
  size_t n = 0, total = 0;
  char c;
  char head[8192];
  size_t hn = 0;
  while (hn < sizeof head - 1) {
    if (recv(fd, &c, 1, 0) != 1)
      return -1;
    head[hn++] = c;
    if (hn >= 4 && memcmp(head + hn - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  head[hn] = '\0';
  const char *cl = strcasestr(head, "Content-Length:");
  size_t body = cl && !head_only ? strtoul(cl + 15, NULL, 10) : 0;
  n = hn < cap - 1 ? hn : cap - 1;
  memcpy(out, head, n);
  total = hn;
  char buf[65536];
  while (body > 0) {
    ssize_t r = recv(fd, buf, body < sizeof buf ? body : sizeof buf, 0);
    if (r <= 0)
      return -1;
    size_t k = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
    memcpy(out + n, buf, k);
    n += k;
    total += (size_t)r;
    body -= (size_t)r;
  }
  out[n] = '\0';
  return (long)total;
}

/* 1 when the server has closed (EOF or reset) within the receive timeout, draining data. */
static int cli_eof(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r == 0 || (r < 0 && errno == ECONNRESET))
      return 1;
    if (r < 0)
      return 0;
  }
}

/* Waits (up to the socket's 20 s receive timeout) until the server has begun answering on fd,
 * without consuming anything: the event a scenario needs before it acts on a busy connection.
 * A fixed sleep instead lets a slow server (ASan, a loaded CI machine) still be idle when the
 * scenario goes on. Returns whether an answer began. */
static int cli_answering(int fd) {
  char c;
  return recv(fd, &c, 1, MSG_PEEK) == 1;
}

/* ---- server side ------------------------------------------------------------------------- */

static void h_hello(evs_http_request_t *r, void *data) {
  (void)data;
  evs_http_respond(r, 200, NULL, "hello\n", 6);
}

static void h_echo(evs_http_request_t *r, void *data) {
  ctx_t *c = data;
  size_t blen;
  const char *body = evs_http_request_body(r, &blen);
  const char *ua = evs_http_request_header(r, "x-test");
  char out[2048];
  int n =
      snprintf(out, sizeof out, "%s %s ?%s x-test=%s body=%.*s", evs_http_request_method(r),
               evs_http_request_path(r), evs_http_request_query(r), ua ? ua : "-", (int)blen, body);
  snprintf(c->seen, sizeof c->seen, "%s", out);
  evs_http_respond(r, 200, "text/plain", out, (size_t)n);
}

#define BIG (3 * 1024 * 1024)
static void h_big(evs_http_request_t *r, void *data) {
  (void)data;
  char *b = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    b[i] = (char)('a' + i % 26);
  evs_http_respond_owned(r, 200, NULL, b, BIG);
}

#define HUGE (16 * 1024 * 1024)
static void h_huge(evs_http_request_t *r, void *data) {
  (void)data;
  char *b = calloc(1, HUGE);
  evs_http_respond_owned(r, 200, NULL, b, HUGE);
}

/* A handler that takes SLOW_MS of loop time, like a /metrics render on a busy process. */
#define SLOW_MS 2
static void h_slow(evs_http_request_t *r, void *data) {
  (void)data;
  uint64_t end = uv_hrtime() + SLOW_MS * 1000000u;
  while (uv_hrtime() < end) {
  }
  evs_http_respond(r, 200, NULL, "slow\n", 5);
}

static void h_noanswer(evs_http_request_t *r, void *data) {
  (void)r;
  (void)data;
}

static void on_closed(evs_http_server_t *s, void *data) {
  (void)s;
  ((ctx_t *)data)->closed_cb_ran++;
}

static void on_done(uv_async_t *a) {
  ctx_t *c = a->data;
  if (c->srv)
    evs_http_server_close(c->srv, on_closed, c);
  c->srv = NULL;
  uv_close((uv_handle_t *)&c->done, NULL);
  uv_close((uv_handle_t *)&c->close_now, NULL);
}

static void on_close_now(uv_async_t *a) {
  ctx_t *c = a->data;
  if (c->stop_only && c->srv) {
    evs_http_server_stop_accepting(c->srv);
    return;
  }
  if (c->srv)
    evs_http_server_close(c->srv, on_closed, c);
  if (!c->force_close || c->close_calls++ > 0)
    c->srv = NULL; /* with force_close, the second signal closes again */
}

static void client_thread(void *arg) {
  ctx_t *c = arg;
  c->fn(c);
  uv_async_send(&c->done);
}

static void run(ctx_t *c, const evs_http_server_options_t *opts, scenario_fn fn) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(evs_http_server_new(&loop, opts, &c->srv), 0);
  assert_int_equal(evs_http_server_route(c->srv, "/hello", EVS_HTTP_GET, h_hello, c), 0);
  assert_int_equal(evs_http_server_route(c->srv, "/echo", EVS_HTTP_GET | EVS_HTTP_POST, h_echo, c),
                   0);
  assert_int_equal(evs_http_server_route(c->srv, "/big", EVS_HTTP_GET, h_big, c), 0);
  assert_int_equal(evs_http_server_route(c->srv, "/none", EVS_HTTP_GET, h_noanswer, c), 0);
  assert_int_equal(evs_http_server_route(c->srv, "/huge", EVS_HTTP_GET, h_huge, c), 0);
  assert_int_equal(evs_http_server_route(c->srv, "/slow", EVS_HTTP_GET, h_slow, c), 0);
  assert_int_equal(evs_http_server_route(c->srv, "/hello", EVS_HTTP_GET, h_hello, c), UV_EEXIST);
  assert_int_equal(evs_http_server_listen(c->srv, "127.0.0.1:0"), 0);
  c->port = evs_http_server_port(c->srv);
  assert_true(c->port > 0);
  c->fn = fn;
  uv_async_init(&loop, &c->done, on_done);
  uv_async_init(&loop, &c->close_now, on_close_now);
  c->done.data = c->close_now.data = c;
  uv_thread_t t;
  assert_int_equal(uv_thread_create(&t, client_thread, c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_thread_join(&t);
  assert_int_equal(c->closed_cb_ran, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static int status_of(const char *resp) {
  int st = 0;
  return sscanf(resp, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

static const char *body_of(const char *resp) {
  const char *p = strstr(resp, "\r\n\r\n");
  return p ? p + 4 : "";
}

/* ---- scenarios --------------------------------------------------------------------------- */

static void sc_keepalive(ctx_t *c) {
  int fd = cli_connect(c->port);
  for (int i = 0; i < 3 && fd >= 0; i++) {
    cli_sends(fd, "GET /echo?i=1 HTTP/1.1\r\nHost: x\r\nX-Test: abc\r\n\r\n");
    if (cli_response(fd, c->resp[c->nresp], sizeof c->resp[0], 0) > 0)
      c->nresp++;
  }
  close(fd);
}

static void test_keepalive(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_keepalive);
  assert_int_equal(c.nresp, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(status_of(c.resp[i]), 200);
    assert_string_equal(body_of(c.resp[i]), "GET /echo ?i=1 x-test=abc body=");
    assert_null(strcasestr(c.resp[i], "Connection: close"));
  }
}

static void sc_pipelined(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
                "GET /echo?n=3 HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 3; i++)
    if (cli_response(fd, c->resp[c->nresp], sizeof c->resp[0], 0) > 0)
      c->nresp++;
  close(fd);
}

static void test_pipelined(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_pipelined);
  assert_int_equal(c.nresp, 3);
  assert_string_equal(body_of(c.resp[0]), "GET /echo ?n=1 x-test=- body=");
  assert_string_equal(body_of(c.resp[1]), "POST /echo ?n=2 x-test=- body=abcde");
  assert_string_equal(body_of(c.resp[2]), "GET /echo ?n=3 x-test=- body=");
}

static void sc_chunked(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  close(fd);
}

static void test_chunked_body(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_chunked);
  assert_int_equal(c.nresp, 1);
  assert_string_equal(body_of(c.resp[0]), "POST /echo ? x-test=- body=abcde");
}

/* Sends req, reads one response into resp[0], then expects the server to close. */
static void one_then_eof(ctx_t *c, const char *req, size_t len) {
  int fd = cli_connect(c->port);
  cli_send(fd, req, len);
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  c->eof = cli_eof(fd);
  close(fd);
}

static void sc_malformed(ctx_t *c) {
  const char req[] = "GET /hello HTTP/1.1\r\nHost x\r\n\r\nGET /hello HTTP/1.1\r\n\r\n";
  one_then_eof(c, req, sizeof req - 1);
}

static void sc_badline(ctx_t *c) {
  const char req[] = "\x01\x02 garbage \xff\r\n\r\n";
  one_then_eof(c, req, sizeof req - 1);
}

static void test_malformed_400(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_malformed);
  assert_int_equal(c.nresp, 1);
  assert_int_equal(status_of(c.resp[0]), 400);
  assert_non_null(strcasestr(c.resp[0], "Connection: close"));
  assert_true(c.eof);
  ctx_t d = {0};
  run(&d, NULL, sc_badline);
  assert_int_equal(d.nresp, 1);
  assert_int_equal(status_of(d.resp[0]), 400);
  assert_true(d.eof);
}

static void sc_big_header(ctx_t *c) {
  size_t n = 20000;
  char *req = malloc(n + 100);
  size_t k = (size_t)sprintf(req, "GET /hello HTTP/1.1\r\nX-Pad: ");
  memset(req + k, 'a', n);
  k += n;
  k += (size_t)sprintf(req + k, "\r\n\r\n");
  one_then_eof(c, req, k);
  free(req);
}

static void sc_many_headers(ctx_t *c) {
  char req[8192];
  size_t k = (size_t)sprintf(req, "GET /hello HTTP/1.1\r\n");
  for (int i = 0; i < 120; i++)
    k += (size_t)sprintf(req + k, "X-H%d: v\r\n", i);
  k += (size_t)sprintf(req + k, "\r\n");
  one_then_eof(c, req, k);
}

static void test_oversize_headers_431(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_big_header);
  assert_int_equal(c.nresp, 1);
  assert_int_equal(status_of(c.resp[0]), 431);
  assert_true(c.eof);
  ctx_t d = {0};
  run(&d, NULL, sc_many_headers);
  assert_int_equal(status_of(d.resp[0]), 431);
  assert_true(d.eof);
}

static void sc_big_body_cl(ctx_t *c) {
  const char req[] = "POST /echo HTTP/1.1\r\nContent-Length: 2000000\r\n\r\nabc";
  one_then_eof(c, req, sizeof req - 1);
}

static void sc_big_body_chunked(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  char chunk[1100];
  memset(chunk, 'z', sizeof chunk);
  for (int i = 0; i < 3; i++) {
    cli_sends(fd, "44c\r\n"); /* 0x44c = 1100 */
    if (cli_send(fd, chunk, sizeof chunk) != 0 || cli_sends(fd, "\r\n") != 0)
      break;
  }
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  c->eof = cli_eof(fd);
  close(fd);
}

static void test_oversize_body_413(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_big_body_cl);
  assert_int_equal(status_of(c.resp[0]), 413);
  assert_true(c.eof);
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.max_body_bytes = 2000;
  ctx_t d = {0};
  run(&d, &o, sc_big_body_chunked);
  assert_int_equal(status_of(d.resp[0]), 413);
  assert_true(d.eof);
}

/* Slowloris: one byte every 100 ms; the server must cut the connection about request_timeout
 * (500 ms) after the first byte, long before the request would be complete. */
static void sc_slow(ctx_t *c) {
  int fd = cli_connect(c->port);
  const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
  double t0 = now_s();
  size_t i = 0;
  for (; req[i]; i++) {
    if (cli_send(fd, req + i, 1) != 0)
      break;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0)
      break; /* the server closed (or answered) */
  }
  c->count = (int)i;
  c->eof = cli_eof(fd);
  c->elapsed = now_s() - t0;
  close(fd);
}

static void test_slow_client_cut_off(void **state) {
  (void)state;
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.request_timeout_ms = 500;
  ctx_t c = {0};
  run(&c, &o, sc_slow);
  assert_true(c.eof);
  assert_true(c.count < 90); /* cut before the whole request went out */
  assert_true(c.elapsed >= 0.45);
  assert_true(c.elapsed < 10.0);
}

/* Each wait is timed from before the event that starts the server's timer (the request sent,
 * the connection made): timed from after it, a client thread preempted in between (a loaded
 * machine) saw the server's timeout come early by that much, 50 ms of it failing the bounds. */
static void sc_idle(ctx_t *c) {
  int fd = cli_connect(c->port);
  double t0 = now_s();
  cli_sends(fd, "GET /hello HTTP/1.1\r\n\r\n");
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  c->eof = cli_eof(fd);
  c->elapsed = now_s() - t0;
  close(fd);
  /* A connection that never sends a byte is held for request_timeout only. */
  t0 = now_s();
  fd = cli_connect(c->port);
  c->flags[0] = cli_eof(fd);
  c->flags[1] = (int)((now_s() - t0) * 1000);
  close(fd);
}

static void test_idle_timeout(void **state) {
  (void)state;
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.idle_timeout_ms = 300;
  o.request_timeout_ms = 400;
  ctx_t c = {0};
  run(&c, &o, sc_idle);
  assert_int_equal(status_of(c.resp[0]), 200);
  assert_true(c.eof);
  assert_true(c.elapsed >= 0.25 && c.elapsed < 10.0);
  assert_true(c.flags[0]);
  assert_true(c.flags[1] >= 350 && c.flags[1] < 10000);
}

static void sc_routes(ctx_t *c) {
  int fd = cli_connect(c->port);
  const char *reqs[] = {"GET /nope HTTP/1.1\r\n\r\n",
                        "DELETE /hello HTTP/1.1\r\n\r\n",
                        "POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                        "HEAD /hello HTTP/1.1\r\n\r\n",
                        "GET /hello HTTP/1.1\r\n\r\n",
                        "GET /none HTTP/1.1\r\n\r\n"};
  for (int i = 0; i < 6; i++) {
    cli_sends(fd, reqs[i]);
    if (cli_response(fd, c->resp[c->nresp], sizeof c->resp[0], i == 3) > 0)
      c->nresp++;
  }
  close(fd);
}

static void test_404_405_head_500(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_routes);
  assert_int_equal(c.nresp, 6);
  assert_int_equal(status_of(c.resp[0]), 404);
  assert_int_equal(status_of(c.resp[1]), 405);
  assert_non_null(strstr(c.resp[1], "Allow: GET, HEAD\r\n"));
  assert_int_equal(status_of(c.resp[2]), 405);
  /* HEAD: the GET's Content-Length, no body; the GET right after parses cleanly, which it would
   * not if body bytes had followed the HEAD response. */
  assert_int_equal(status_of(c.resp[3]), 200);
  assert_non_null(strstr(c.resp[3], "Content-Length: 6\r\n"));
  assert_string_equal(body_of(c.resp[3]), "");
  assert_int_equal(status_of(c.resp[4]), 200);
  assert_string_equal(body_of(c.resp[4]), "hello\n");
  assert_int_equal(status_of(c.resp[5]), 500);
}

static void sc_conn_close(ctx_t *c) {
  const char req[] = "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\n\r\n";
  one_then_eof(c, req, sizeof req - 1);
  /* HTTP/1.0 without keep-alive closes too; with keep-alive it stays open. */
  int fd = cli_connect(c->port);
  cli_sends(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  cli_response(fd, c->resp[1], sizeof c->resp[1], 0);
  cli_sends(fd, "GET /hello HTTP/1.0\r\n\r\n");
  cli_response(fd, c->resp[2], sizeof c->resp[2], 0);
  c->flags[0] = cli_eof(fd);
  close(fd);
}

static void test_connection_close(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_conn_close);
  assert_int_equal(status_of(c.resp[0]), 200);
  assert_non_null(strstr(c.resp[0], "Connection: close\r\n"));
  assert_true(c.eof);
  assert_non_null(strstr(c.resp[1], "Connection: keep-alive\r\n"));
  assert_int_equal(status_of(c.resp[2]), 200);
  assert_non_null(strstr(c.resp[2], "Connection: close\r\n"));
  assert_true(c.flags[0]);
}

#define NCONN 40
static void sc_many(ctx_t *c) {
  int fds[NCONN];
  for (int i = 0; i < NCONN; i++)
    fds[i] = cli_connect(c->port);
  for (int i = 0; i < NCONN; i++)
    cli_sends(fds[i], "GET /hello HTTP/1.1\r\n\r\n");
  char r[512];
  for (int i = 0; i < NCONN; i++)
    if (cli_response(fds[i], r, sizeof r, 0) > 0 && status_of(r) == 200)
      c->count++;
  for (int i = 0; i < NCONN; i++)
    close(fds[i]);
}

static void test_many_connections(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_many);
  assert_int_equal(c.count, NCONN);
}

/* At the cap, a new connection takes the place of the least recently active idle one: three
 * idle keep-alive connections (the first one used again last), then a fourth: it is answered,
 * the second (least recently active) is closed, the others still answer (issue 9: idle
 * connections must not lock the probes out). */
static void sc_limit(ctx_t *c) {
  int fds[4];
  char r[512];
  for (int i = 0; i < 3; i++) {
    fds[i] = cli_connect(c->port);
    cli_sends(fds[i], "GET /hello HTTP/1.1\r\n\r\n");
    c->flags[i] = cli_response(fds[i], r, sizeof r, 0) > 0;
  }
  cli_sends(fds[0], "GET /hello HTTP/1.1\r\n\r\n");
  c->flags[3] = cli_response(fds[0], r, sizeof r, 0) > 0;
  fds[3] = cli_connect(c->port); /* one over max_connections */
  cli_sends(fds[3], "GET /hello HTTP/1.1\r\n\r\n");
  c->flags[4] = cli_response(fds[3], r, sizeof r, 0) > 0 && status_of(r) == 200;
  c->flags[5] = cli_eof(fds[1]);
  cli_sends(fds[0], "GET /hello HTTP/1.1\r\n\r\n");
  c->flags[6] = cli_response(fds[0], r, sizeof r, 0) > 0;
  cli_sends(fds[2], "GET /hello HTTP/1.1\r\n\r\n");
  c->flags[7] = cli_response(fds[2], r, sizeof r, 0) > 0;
  for (int i = 0; i < 4; i++)
    close(fds[i]);
}

static void test_max_connections(void **state) {
  (void)state;
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.max_connections = 3;
  ctx_t c = {0};
  run(&c, &o, sc_limit);
  for (int i = 0; i < 8; i++)
    if (!c.flags[i])
      fail_msg("step %d failed", i);
}

/* At the cap with every connection still owed answers (pipelined /big, unread), none is taken
 * away: the newcomer is the one closed. */
static void sc_limit_busy(ctx_t *c) {
  int fds[3];
  for (int i = 0; i < 2; i++) {
    fds[i] = cli_connect(c->port);
    cli_sends(fds[i], "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n");
  }
  /* Both connections must be owing answers when the newcomer arrives: wait until the server
   * answers each (a 300 ms sleep here let a slow server accept all three in one turn, with the
   * first two still idle, and evict one of them instead of the newcomer). Each still owes the
   * rest of a 3 MiB answer and a second one, unread. */
  for (int i = 0; i < 2; i++)
    c->flags[1 + i] = cli_answering(fds[i]);
  fds[2] = cli_connect(c->port);
  c->flags[0] = cli_eof(fds[2]);
  char r[256];
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 2; k++)
      c->count += cli_response(fds[i], r, sizeof r, 0) > BIG;
  for (int i = 0; i < 3; i++)
    close(fds[i]);
}

static void test_max_connections_busy(void **state) {
  (void)state;
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.max_connections = 2;
  ctx_t c = {0};
  run(&c, &o, sc_limit_busy);
  assert_true(c.flags[1] && c.flags[2]);
  assert_true(c.flags[0]);
  assert_int_equal(c.count, 4);
}

/* Fairness: one client pipelines PIPELINED requests of SLOW_MS each (seconds of loop time in
 * all) and reads nothing yet; a second connection's request is still answered within a few
 * loop turns, not after the whole pipeline. Then every pipelined answer arrives, in order. */
#define PIPELINED 1000
static void sc_fair(ctx_t *c) {
  int a = cli_connect(c->port);
  static char req[PIPELINED * 32];
  size_t k = 0;
  for (int i = 0; i < PIPELINED; i++)
    k += (size_t)sprintf(req + k, "GET /slow HTTP/1.1\r\n\r\n");
  cli_send(a, req, k);
  usleep(100 * 1000); /* the server is busy with the pipeline now */
  double t0 = now_s();
  int b = cli_connect(c->port);
  cli_sends(b, "GET /hello HTTP/1.1\r\n\r\n");
  if (cli_response(b, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  c->elapsed = now_s() - t0;
  char r[256];
  for (int i = 0; i < PIPELINED; i++)
    if (cli_response(a, r, sizeof r, 0) > 0 && strcmp(body_of(r), "slow\n") == 0)
      c->count++;
  close(a);
  close(b);
}

static void test_fair_turns(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_fair);
  assert_int_equal(c.nresp, 1);
  assert_string_equal(body_of(c.resp[0]), "hello\n");
  /* The whole pipeline is PIPELINED * SLOW_MS = 2 s of loop time. */
  if (c.elapsed > 0.5)
    fail_msg("the other connection waited %.3f s", c.elapsed);
  assert_int_equal(c.count, PIPELINED);
}

/* "Expect: 100-continue" (RFC 9110 10.1.1): a body the route accepts is invited with an
 * interim 100; a request that will be refused is answered before its body, and the connection
 * closes; a request without a body just gets its answer. */
static void sc_expect(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 1) > 0)
    c->nresp++;
  cli_sends(fd, "hello");
  if (cli_response(fd, c->resp[1], sizeof c->resp[1], 0) > 0)
    c->nresp++;
  cli_sends(fd, "GET /echo HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
  if (cli_response(fd, c->resp[2], sizeof c->resp[2], 0) > 0)
    c->nresp++;
  /* Refused: the body is never sent; the answer must come anyway. */
  cli_sends(fd, "POST /hello HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n");
  if (cli_response(fd, c->resp[3], sizeof c->resp[3], 0) > 0)
    c->nresp++;
  c->flags[0] = cli_eof(fd);
  close(fd);
  fd = cli_connect(c->port);
  cli_sends(fd, "PUT /nowhere HTTP/1.1\r\nExpect: 100-continue\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
  if (cli_response(fd, c->resp[4], sizeof c->resp[4], 0) > 0)
    c->nresp++;
  c->flags[1] = cli_eof(fd);
  close(fd);
}

static void test_expect_continue(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_expect);
  assert_int_equal(c.nresp, 5);
  assert_string_equal(c.resp[0], "HTTP/1.1 100 Continue\r\n\r\n");
  assert_string_equal(body_of(c.resp[1]), "POST /echo ? x-test=- body=hello");
  assert_int_equal(status_of(c.resp[2]), 200);
  assert_null(strstr(c.resp[2], "100 Continue"));
  assert_int_equal(status_of(c.resp[3]), 405);
  assert_non_null(strcasestr(c.resp[3], "Connection: close"));
  assert_true(c.flags[0]);
  assert_int_equal(status_of(c.resp[4]), 404);
  assert_true(c.flags[1]);
}

/* A request line without an HTTP version: 400 at once, then the connection closes (llhttp would
 * take it for HTTP/0.9 and wait for headers). */
static void sc_no_version(ctx_t *c) {
  const char req[] = "GET /hello\r\n";
  one_then_eof(c, req, sizeof req - 1);
}

static void test_no_version_400(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_no_version);
  assert_int_equal(c.nresp, 1);
  assert_int_equal(status_of(c.resp[0]), 400);
  assert_non_null(strcasestr(c.resp[0], "Connection: close"));
  assert_true(c.eof);
}

/* Backpressure: pipeline 4 requests for 3 MiB each without reading, wait, then read them all
 * in order: the server paused parsing while its queue was full and resumed as it drained. */
static void sc_backpressure(ctx_t *c) {
  int fd = cli_connect(c->port);
  for (int i = 0; i < 4; i++)
    cli_sends(fd, "GET /big HTTP/1.1\r\n\r\n");
  cli_sends(fd, "GET /echo?last=1 HTTP/1.1\r\n\r\n");
  usleep(300 * 1000);
  char r[256];
  for (int i = 0; i < 4; i++)
    if (cli_response(fd, r, sizeof r, 0) > BIG && status_of(r) == 200 &&
        strncmp(body_of(r), "abcdefgh", 8) == 0)
      c->big_ok++;
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  close(fd);
}

static void test_backpressure(void **state) {
  (void)state;
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.write_high_water = 64 * 1024;
  ctx_t c = {0};
  run(&c, &o, sc_backpressure);
  assert_int_equal(c.big_ok, 4);
  assert_string_equal(body_of(c.resp[0]), "GET /echo ?last=1 x-test=- body=");
}

/* The client pipelines requests behind large answers and then shuts down its sending side:
 * every request is still answered before the server closes. */
static void sc_halfclose(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd,
            "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\nGET /echo?tail=1 HTTP/1.1\r\n\r\n");
  shutdown(fd, SHUT_WR);
  usleep(300 * 1000);
  char r[256];
  for (int i = 0; i < 2; i++)
    if (cli_response(fd, r, sizeof r, 0) > BIG && status_of(r) == 200)
      c->big_ok++;
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  c->eof = cli_eof(fd);
  close(fd);
}

static void test_half_close_after_pipeline(void **state) {
  (void)state;
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.write_high_water = 64 * 1024;
  ctx_t c = {0};
  run(&c, &o, sc_halfclose);
  assert_int_equal(c.big_ok, 2);
  assert_int_equal(c.nresp, 1);
  assert_string_equal(body_of(c.resp[0]), "GET /echo ?tail=1 x-test=- body=");
  assert_true(c.eof);
}

/* Server close with an idle connection, a half-sent request and a busy reader: every
 * connection ends, the close callback runs once and the loop closes (checked in run()). */
static void sc_close_with_clients(ctx_t *c) {
  int idle = cli_connect(c->port);
  int partial = cli_connect(c->port);
  int done = cli_connect(c->port);
  cli_sends(done, "GET /hello HTTP/1.1\r\n\r\n");
  char r[512];
  c->flags[0] = cli_response(done, r, sizeof r, 0) > 0;
  cli_sends(partial, "GET /hel");
  usleep(100 * 1000);
  uv_async_send(&c->close_now);
  c->flags[1] = cli_eof(idle);
  c->flags[2] = cli_eof(partial);
  c->flags[3] = cli_eof(done);
  c->flags[4] = cli_connect(c->port) < 0; /* no longer accepting */
  close(idle);
  close(partial);
  close(done);
}

static void test_server_close_with_clients(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_close_with_clients);
  for (int i = 0; i < 5; i++)
    assert_true(c.flags[i]);
}

/* Server close while a large response is still being written: that response completes, the
 * request queued behind it is never answered, then the connection ends. */
static void sc_close_inflight(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "GET /big HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n\r\n");
  /* The close must find the response in flight: wait until it begins (a 200 ms sleep let a
   * slow server get the close first, with the connection idle: no answer at all). */
  c->flags[2] = cli_answering(fd);
  uv_async_send(&c->close_now);
  usleep(200 * 1000);
  char r[256];
  c->flags[0] = cli_response(fd, r, sizeof r, 0) > BIG && status_of(r) == 200;
  c->flags[1] = cli_eof(fd);
  close(fd);
}

static void test_server_close_finishes_inflight(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_close_inflight);
  assert_true(c.flags[2]);
  assert_true(c.flags[0]);
  assert_true(c.flags[1]);
}

/* A client that sends requests but never reads the answers is dropped after idle_timeout_ms
 * without progress; what the kernel already had is delivered, then EOF. 4 x 3 MiB is more
 * than loopback socket buffers hold. */
static void sc_never_reads(ctx_t *c) {
  int fd = cli_connect(c->port);
  for (int i = 0; i < 4; i++)
    cli_sends(fd, "GET /big HTTP/1.1\r\n\r\n");
  usleep(2000 * 1000);
  char buf[65536];
  size_t total = 0;
  ssize_t r;
  while ((r = recv(fd, buf, sizeof buf, 0)) > 0)
    total += (size_t)r;
  c->eof = r == 0 || (r < 0 && errno == ECONNRESET);
  c->big_ok = total;
  close(fd);
}

static void test_write_stall_timeout(void **state) {
  (void)state;
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.idle_timeout_ms = 500;
  ctx_t c = {0};
  run(&c, &o, sc_never_reads);
  assert_true(c.eof);
  assert_true(c.big_ok < 4 * (size_t)BIG);
}

/* A second close drops a connection still writing to a client that does not read, at once:
 * 16 MiB is more than loopback socket buffers hold, so the answer arrives cut short. After
 * the first close alone the server would finish writing it. */
static void sc_close_twice(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "GET /huge HTTP/1.1\r\n\r\n");
  /* The first close must find the answer being written (after a fixed sleep a slow server could
   * still be idle: closed at once, the test passed without testing the second close). */
  c->flags[0] = cli_answering(fd);
  usleep(300 * 1000);
  uv_async_send(&c->close_now);
  usleep(300 * 1000);
  uv_async_send(&c->close_now);
  usleep(300 * 1000);
  double t0 = now_s();
  char buf[65536];
  size_t total = 0;
  ssize_t r;
  while ((r = recv(fd, buf, sizeof buf, 0)) > 0)
    total += (size_t)r;
  c->eof = r == 0 || (r < 0 && errno == ECONNRESET);
  c->elapsed = now_s() - t0;
  c->big_ok = total;
  close(fd);
}

static void test_second_close_drops(void **state) {
  (void)state;
  ctx_t c = {0};
  c.force_close = 1;
  run(&c, NULL, sc_close_twice);
  assert_true(c.flags[0]);
  assert_true(c.eof);
  assert_true(c.elapsed < 15.0);
  assert_true(c.big_ok < (size_t)HUGE);
}

static void sc_absolute_form(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "GET http://example:8080/echo?x=1 HTTP/1.1\r\nHost: example\r\n\r\n");
  if (cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0)
    c->nresp++;
  close(fd);
}

static void test_absolute_form(void **state) {
  (void)state;
  ctx_t c = {0};
  run(&c, NULL, sc_absolute_form);
  assert_int_equal(c.nresp, 1);
  assert_string_equal(body_of(c.resp[0]), "GET /echo ?x=1 x-test=- body=");
}

/* Shutdown grace: after stop_accepting, new connections are refused while an open keep-alive
 * connection is still served. */
static void sc_stop_accepting(ctx_t *c) {
  int fd = cli_connect(c->port);
  cli_sends(fd, "GET /hello HTTP/1.1\r\n\r\n");
  c->flags[0] = cli_response(fd, c->resp[0], sizeof c->resp[0], 0) > 0;
  uv_async_send(&c->close_now);
  int fresh = -1;
  for (int i = 0; i < 100; i++) { /* the loop applies it asynchronously */
    fresh = cli_connect(c->port);
    if (fresh < 0)
      break;
    close(fresh);
    usleep(50 * 1000);
  }
  c->flags[1] = fresh < 0;
  cli_sends(fd, "GET /hello HTTP/1.1\r\n\r\n");
  c->flags[2] = cli_response(fd, c->resp[1], sizeof c->resp[1], 0) > 0;
  close(fd);
}

static void test_stop_accepting(void **state) {
  (void)state;
  ctx_t c = {0};
  c.stop_only = 1;
  run(&c, NULL, sc_stop_accepting);
  assert_true(c.flags[0]);
  assert_true(c.flags[1]);
  assert_true(c.flags[2]);
  assert_string_equal(body_of(c.resp[1]), "hello\n");
}

/* ---- socketless connection --------------------------------------------------------------- */

typedef struct {
  char out[8192];
  size_t n;
} sink_t;

static void sink(const char *d, size_t n, void *data) {
  sink_t *s = data;
  size_t k = n < sizeof s->out - 1 - s->n ? n : sizeof s->out - 1 - s->n;
  memcpy(s->out + s->n, d, k);
  s->n += k;
  s->out[s->n] = '\0';
}

static void test_vconn_bytewise(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_http_server_t *s;
  ctx_t c = {0};
  assert_int_equal(evs_http_server_new(&loop, NULL, &s), 0);
  evs_http_server_route(s, "/echo", EVS_HTTP_GET | EVS_HTTP_POST, h_echo, &c);
  const char in[] = "GET /echo?a=1 HTTP/1.1\r\nX-Test: q\r\n\r\n"
                    "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                    "GET /x HTTP/1.1\r\nConnection: close\r\n\r\nGET /echo HTTP/1.1\r\n\r\n";
  sink_t out = {0};
  evs_http_vconn_t *v;
  assert_int_equal(evs_http_vconn_new(s, sink, &out, &v), 0);
  int rc = 0;
  for (size_t i = 0; i < sizeof in - 1 && rc == 0; i++)
    rc = evs_http_vconn_feed(v, in + i, 1);
  assert_int_equal(rc, EVS_ECLOSED);
  evs_http_vconn_free(v);
  const char *p1 = strstr(out.out, "GET /echo ?a=1 x-test=q body=");
  const char *p2 = strstr(out.out, "POST /echo ? x-test=- body=hi");
  const char *p3 = strstr(out.out, "HTTP/1.1 404 Not Found\r\n");
  assert_non_null(p1);
  assert_non_null(p2);
  assert_non_null(p3);
  assert_true(p1 < p2 && p2 < p3);
  assert_null(strstr(p3, "GET /echo ? x-test")); /* nothing after Connection: close */
  evs_http_server_close(s, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_listen_addresses(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_http_server_t *s;
  assert_int_equal(evs_http_server_new(&loop, NULL, &s), 0);
  assert_int_equal(evs_http_server_listen(s, "nohost:80"), UV_EINVAL);
  assert_int_equal(evs_http_server_listen(s, "127.0.0.1:99999"), UV_EINVAL);
  assert_int_equal(evs_http_server_listen(s, "127.0.0.1"), UV_EINVAL);
  assert_int_equal(evs_http_server_listen(s, "[::1:80"), UV_EINVAL);
  assert_int_equal(evs_http_server_port(s), 0);
  int rc = evs_http_server_listen(s, "[::1]:0");
  if (rc == 0)
    assert_true(evs_http_server_port(s) > 0);
  else
    assert_int_equal(rc, UV_EADDRNOTAVAIL); /* a machine without IPv6 loopback */
  evs_http_server_close(s, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Close after the listener is already closed and no connection is left: the callback still
 * runs, from the loop (never from inside evs_http_server_close). */
static void count_close(evs_http_server_t *s, void *data) {
  (void)s;
  (*(int *)data)++;
}

static void test_close_after_stop_accepting(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_http_server_t *s;
  assert_int_equal(evs_http_server_new(&loop, NULL, &s), 0);
  assert_int_equal(evs_http_server_listen(s, "127.0.0.1:0"), 0);
  evs_http_server_stop_accepting(s);
  evs_http_server_stop_accepting(s); /* twice is harmless */
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(evs_http_server_listen(s, "127.0.0.1:0"), EVS_ESTATE);
  int n = 0;
  evs_http_server_close(s, count_close, &n);
  assert_int_equal(n, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(n, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keepalive),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_chunked_body),
      cmocka_unit_test(test_malformed_400),
      cmocka_unit_test(test_oversize_headers_431),
      cmocka_unit_test(test_oversize_body_413),
      cmocka_unit_test(test_slow_client_cut_off),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_404_405_head_500),
      cmocka_unit_test(test_connection_close),
      cmocka_unit_test(test_many_connections),
      cmocka_unit_test(test_max_connections),
      cmocka_unit_test(test_max_connections_busy),
      cmocka_unit_test(test_fair_turns),
      cmocka_unit_test(test_expect_continue),
      cmocka_unit_test(test_no_version_400),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_half_close_after_pipeline),
      cmocka_unit_test(test_server_close_with_clients),
      cmocka_unit_test(test_server_close_finishes_inflight),
      cmocka_unit_test(test_write_stall_timeout),
      cmocka_unit_test(test_second_close_drops),
      cmocka_unit_test(test_absolute_form),
      cmocka_unit_test(test_stop_accepting),
      cmocka_unit_test(test_vconn_bytewise),
      cmocka_unit_test(test_listen_addresses),
      cmocka_unit_test(test_close_after_stop_accepting),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
