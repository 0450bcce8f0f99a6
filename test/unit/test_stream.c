/* evs_stream over plain TCP against test/net_server.py (echo and http modes) and raw sockets:
 * connect by address and by name, IPv6, refused, DNS failure, connect timeout, cancel while
 * connecting, echo, backpressure with the drain callback, idle timeout, peer close. Every test
 * ends with the loop closing cleanly (no handle left, ASan checks the frees). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evscale/error.h"
#include "evscale/stream.h"
#include "net_helpers.h"

static evs_test_server_t echo_srv;

typedef struct {
  int connected, status, closed, eof, read_err, drained, writes_done, write_status;
  char buf[1 << 16];
  size_t len;
  size_t want; /* stop waiting once this many bytes arrived */
  size_t total;
} ctx_t;

static void on_connect(evs_stream_t *s, int status) {
  ctx_t *c = evs_stream_data(s);
  c->connected = 1;
  c->status = status;
}

static void on_close(evs_stream_t *s) {
  ctx_t *c = evs_stream_data(s);
  c->closed = 1;
}

static void on_read(evs_stream_t *s, ssize_t n, const char *buf) {
  ctx_t *c = evs_stream_data(s);
  if (n < 0) {
    c->read_err = (int)n;
    c->eof = 1;
    return;
  }
  size_t room = sizeof c->buf - c->len;
  size_t k = (size_t)n < room ? (size_t)n : room;
  memcpy(c->buf + c->len, buf, k);
  c->len += k;
  c->total += (size_t)n;
}

static void on_write(evs_stream_t *s, int status, void *arg) {
  (void)arg;
  ctx_t *c = evs_stream_data(s);
  c->writes_done++;
  if (status != 0)
    c->write_status = status;
}

static int group_setup(void **state) {
  (void)state;
  const char *args[] = {"--mode", "echo", NULL};
  return evs_test_server_start(&echo_srv, args);
}

static int group_teardown(void **state) {
  (void)state;
  evs_test_server_stop(&echo_srv);
  return 0;
}

static evs_stream_t *connect_to(uv_loop_t *loop, ctx_t *c, const char *host, int port,
                                uint64_t timeout) {
  evs_stream_t *s = NULL;
  evs_stream_options_t o = {.host = host, .port = port, .connect_timeout_ms = timeout, .data = c};
  assert_int_equal(evs_stream_connect(loop, &o, on_connect, &s), 0);
  assert_true(evs_test_run_until(loop, &c->connected, 20000));
  return s;
}

static void close_and_check(uv_loop_t *loop, evs_stream_t *s, ctx_t *c) {
  evs_stream_close(s, on_close);
  assert_true(evs_test_run_until(loop, &c->closed, 5000));
  assert_int_equal(evs_test_loop_close(loop), 0);
}

static void echo_roundtrip(const char *host) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  static ctx_t c;
  memset(&c, 0, sizeof c);
  evs_stream_t *s = connect_to(&loop, &c, host, echo_srv.port, 10000);
  assert_int_equal(c.status, 0);
  assert_false(evs_stream_is_tls(s));
  assert_int_equal(evs_stream_read_start(s, on_read), 0);
  assert_int_equal(evs_stream_write(s, "hello ", 6, on_write, NULL), 0);
  assert_int_equal(evs_stream_write(s, "world", 5, on_write, NULL), 0);
  while (c.len < 11 && !c.eof)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(c.len, 11);
  assert_memory_equal(c.buf, "hello world", 11);
  assert_int_equal(c.writes_done, 2);
  assert_int_equal(c.write_status, 0);
  close_and_check(&loop, s, &c);
}

static void test_echo_ipv4(void **state) {
  (void)state;
  echo_roundtrip("127.0.0.1");
}

/* "localhost" goes through uv_getaddrinfo; the echo server listens on 127.0.0.1 only, so if the
 * resolver returns ::1 first that attempt is refused and the next address is tried. */
static void test_echo_by_name(void **state) {
  (void)state;
  echo_roundtrip("localhost");
}

static void test_echo_ipv6(void **state) {
  (void)state;
  evs_test_server_t v6;
  const char *args[] = {"--mode", "echo", "--listen", "::1", NULL};
  if (evs_test_server_start(&v6, args) != 0) {
    evs_test_server_stop(&v6);
    skip(); /* no IPv6 loopback on this machine */
  }
  int saved = echo_srv.port;
  echo_srv.port = v6.port;
  echo_roundtrip("::1");
  echo_srv.port = saved;
  evs_test_server_stop(&v6);
}

static void test_refused(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ctx_t c = {0};
  connect_to(&loop, &c, "127.0.0.1", evs_test_closed_port(), 10000);
  assert_int_equal(c.status, UV_ECONNREFUSED);
  /* The stream freed itself after the failed connect. */
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_dns_failure(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ctx_t c = {0};
  connect_to(&loop, &c, "no-such-host.invalid", 80, 20000);
  assert_true(c.status == UV_EAI_NONAME || c.status == UV_EAI_AGAIN || c.status == UV_EAI_FAIL);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_bad_options(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ctx_t c = {0};
  evs_stream_t *s = NULL;
  evs_stream_options_t o = {.host = "127.0.0.1", .port = 0, .data = &c};
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), UV_EINVAL);
  o.port = 70000;
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), UV_EINVAL);
  o.port = 80;
  o.host = "";
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), UV_EINVAL);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  assert_int_equal(c.connected, 0);
}

/* A listening socket that never accepts: TCP connects (the kernel's backlog), the TLS handshake
 * then waits for a ServerHello that never comes, and the connect timeout fires. */
static int silent_listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 16), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static void test_connect_timeout_in_handshake(void **state) {
  (void)state;
  int port, fd = silent_listener(&port);
  evs_tls_options_t to = {.ca_file = evs_test_cert("ca.crt")};
  evs_tls_config_t *cfg;
  assert_int_equal(evs_tls_config_new(&to, &cfg, NULL), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  ctx_t c = {0};
  evs_stream_t *s;
  evs_stream_options_t o = {
      .host = "127.0.0.1", .port = port, .tls = cfg, .connect_timeout_ms = 300, .data = &c};
  uint64_t t0 = uv_hrtime();
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), 0);
  assert_true(evs_test_run_until(&loop, &c.connected, 20000));
  assert_int_equal(c.status, EVS_ETIMEDOUT);
  assert_true((uv_hrtime() - t0) / 1000000 >= 250);
  evs_tls_config_unref(cfg);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  close(fd);
}

/* Closing before the connect completes, while resolving a name and before an IP literal's
 * first attempt: connect_cb runs once with EVS_ECANCELED, then close_cb. */
static void test_close_while_connecting(void **state) {
  (void)state;
  const char *hosts[] = {"localhost", "127.0.0.1"};
  for (int i = 0; i < 2; i++) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx_t c = {0};
    evs_stream_t *s;
    evs_stream_options_t o = {.host = hosts[i], .port = echo_srv.port, .data = &c};
    assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), 0);
    evs_stream_close(s, on_close);
    assert_true(evs_test_run_until(&loop, &c.closed, 10000));
    assert_int_equal(c.connected, 1);
    assert_int_equal(c.status, EVS_ECANCELED);
    assert_int_equal(evs_test_loop_close(&loop), 0);
  }
}

static void on_drain(evs_stream_t *s) {
  ctx_t *c = evs_stream_data(s);
  c->drained++;
}

/* 32 MiB written while not reading: the echo server blocks once our receive window is full, so
 * our queue passes the 256 KiB high-water mark; reading again lets everything through and the
 * drain callback fires. */
static void test_backpressure(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static ctx_t c;
  memset(&c, 0, sizeof c);
  evs_stream_t *s;
  evs_stream_options_t o = {
      .host = "127.0.0.1", .port = echo_srv.port, .write_high_water = 256 * 1024, .data = &c};
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), 0);
  assert_true(evs_test_run_until(&loop, &c.connected, 10000));
  assert_int_equal(c.status, 0);
  evs_stream_set_drain_cb(s, on_drain);
  static char chunk[65536];
  memset(chunk, 'x', sizeof chunk);
  for (int i = 0; i < 512; i++)
    assert_int_equal(evs_stream_write(s, chunk, sizeof chunk, on_write, NULL), 0);
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  assert_false(evs_stream_writable(s));
  assert_true(evs_stream_write_queue_size(s) > 256 * 1024);
  assert_int_equal(evs_stream_read_start(s, on_read), 0);
  uint64_t t0 = uv_hrtime();
  while (c.total < sizeof chunk * 512 && !c.eof && (uv_hrtime() - t0) / 1000000 < 60000)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(c.total, sizeof chunk * 512);
  assert_int_equal(c.writes_done, 512);
  assert_true(c.drained >= 1);
  assert_true(evs_stream_writable(s));
  assert_int_equal(evs_stream_write_queue_size(s), 0);
  close_and_check(&loop, s, &c);
}

/* Closing with writes still queued: every write callback runs once (0 for the bytes the kernel
 * took, EVS_ECANCELED for the rest), before the close callback. */
static void test_close_with_queued_writes(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static ctx_t c;
  memset(&c, 0, sizeof c);
  evs_stream_t *s = connect_to(&loop, &c, "127.0.0.1", echo_srv.port, 10000);
  assert_int_equal(c.status, 0);
  static char chunk[65536];
  memset(chunk, 'y', sizeof chunk);
  for (int i = 0; i < 512; i++)
    assert_int_equal(evs_stream_write(s, chunk, sizeof chunk, on_write, NULL), 0);
  assert_true(evs_stream_write_queue_size(s) > 0);
  evs_stream_close(s, on_close);
  evs_stream_close(s, NULL); /* idempotent */
  assert_int_equal(c.closed, 0);
  assert_true(evs_test_run_until(&loop, &c.closed, 10000));
  assert_int_equal(c.writes_done, 512);
  assert_int_equal(c.write_status, EVS_ECANCELED);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_idle_timeout(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static ctx_t c;
  memset(&c, 0, sizeof c);
  evs_stream_t *s;
  evs_stream_options_t o = {
      .host = "127.0.0.1", .port = echo_srv.port, .idle_timeout_ms = 200, .data = &c};
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), 0);
  assert_true(evs_test_run_until(&loop, &c.connected, 10000));
  assert_int_equal(evs_stream_read_start(s, on_read), 0);
  uint64_t t0 = uv_hrtime();
  assert_true(evs_test_run_until(&loop, &c.eof, 10000));
  assert_int_equal(c.read_err, EVS_ETIMEDOUT);
  assert_true((uv_hrtime() - t0) / 1000000 >= 150);
  close_and_check(&loop, s, &c);
}

/* The peer closing is EVS_ECLOSED, and it is kept for a caller that was not reading. */
static void test_peer_close_delivered_at_read_start(void **state) {
  (void)state;
  evs_test_server_t http;
  const char *args[] = {"--mode", "http", NULL};
  assert_int_equal(evs_test_server_start(&http, args), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  static ctx_t c;
  memset(&c, 0, sizeof c);
  evs_stream_t *s = connect_to(&loop, &c, "127.0.0.1", http.port, 10000);
  assert_int_equal(c.status, 0);
  const char req[] = "GET /close/mid_body HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(evs_stream_write(s, req, sizeof req - 1, on_write, NULL), 0);
  usleep(300000); /* the server answers and closes while we are not reading */
  for (int i = 0; i < 10; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(c.len, 0);
  assert_int_equal(evs_stream_read_start(s, on_read), 0);
  assert_true(evs_test_run_until(&loop, &c.eof, 10000));
  assert_int_equal(c.read_err, EVS_ECLOSED);
  assert_non_null(memmem(c.buf, c.len, "0123456789", 10));
  close_and_check(&loop, s, &c);
  evs_test_server_stop(&http);
}

/* A peer that resets the connection (RST, SO_LINGER 0) is a closed connection: the write that
 * finds it out fails with ECONNRESET or EPIPE, later writes fail at once (no error per write),
 * and a reader hears it once. SIGPIPE is ignored, as evscale's main() does. */
static void test_peer_reset(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(lfd, 1), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  static ctx_t c;
  memset(&c, 0, sizeof c);
  evs_stream_t *s = connect_to(&loop, &c, "127.0.0.1", ntohs(a.sin_port), 10000);
  assert_int_equal(c.status, 0);
  int afd = accept(lfd, NULL, NULL);
  struct linger lg = {1, 0};
  setsockopt(afd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(afd);
  close(lfd);
  usleep(100000);
  assert_int_equal(evs_stream_write(s, "x", 1, on_write, NULL), 0);
  assert_true(evs_test_run_until(&loop, &c.writes_done, 10000));
  assert_true(c.write_status == UV_ECONNRESET || c.write_status == UV_EPIPE);
  int rc = evs_stream_write(s, "y", 1, on_write, NULL);
  assert_true(rc == UV_ECONNRESET || rc == UV_EPIPE);
  assert_int_equal(evs_stream_read_start(s, on_read), 0);
  assert_true(evs_test_run_until(&loop, &c.eof, 10000));
  assert_true(c.read_err == UV_ECONNRESET || c.read_err == UV_EPIPE);
  assert_int_equal(c.writes_done, 1);
  close_and_check(&loop, s, &c);
}

static void test_state_errors(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ctx_t c = {0};
  evs_stream_t *s;
  evs_stream_options_t o = {.host = "127.0.0.1", .port = echo_srv.port, .data = &c};
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), 0);
  /* Not open yet. */
  assert_int_equal(evs_stream_write(s, "x", 1, NULL, NULL), EVS_ESTATE);
  assert_int_equal(evs_stream_read_start(s, on_read), EVS_ESTATE);
  assert_true(evs_test_run_until(&loop, &c.connected, 10000));
  assert_int_equal(c.status, 0);
  close_and_check(&loop, s, &c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_ipv4),
      cmocka_unit_test(test_echo_by_name),
      cmocka_unit_test(test_echo_ipv6),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_dns_failure),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_connect_timeout_in_handshake),
      cmocka_unit_test(test_close_while_connecting),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_close_with_queued_writes),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_peer_close_delivered_at_read_start),
      cmocka_unit_test(test_peer_reset),
      cmocka_unit_test(test_state_errors),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
