/* The HTTP server's accept path when a connection cannot be allocated (issue 9): libuv stops
 * watching a listener whose connection callback did not call uv_accept, so a failed allocation
 * that simply returned would stop the server accepting for good. The file includes the server's
 * .c with calloc failing on demand; a client thread on real loopback sockets checks that the
 * refused connection is closed and the next one is served. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail_callocs; /* the next n calls fail */

static void *failing_calloc(size_t n, size_t size) {
  if (fail_callocs > 0) {
    fail_callocs--;
    return NULL;
  }
  return calloc(n, size);
}

/* Before cmocka.h, whose fail() macro would clash with the server's own fail(). */
#define calloc failing_calloc
#include "net/http_server.c"
#undef calloc

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef struct {
  int port;
  uv_async_t done;
  evs_http_server_t *srv;
  int refused_closed; /* the first connection saw EOF or a reset */
  int second_status;
} ctx_t;

static int cli_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {5, 0}; /* without the fix the connection is never accepted */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void client(void *arg) {
  ctx_t *c = arg;
  char buf[512];
  int a = cli_connect(c->port);
  ssize_t r = recv(a, buf, sizeof buf, 0);
  c->refused_closed = r == 0 || (r < 0 && errno == ECONNRESET);
  close(a);
  int b = cli_connect(c->port);
  const char req[] = "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n";
  send(b, req, sizeof req - 1, MSG_NOSIGNAL);
  r = recv(b, buf, sizeof buf - 1, 0);
  if (r > 0) {
    buf[r] = '\0';
    sscanf(buf, "HTTP/1.1 %d", &c->second_status);
  }
  close(b);
  uv_async_send(&c->done);
}

static void h_hello(evs_http_request_t *r, void *data) {
  (void)data;
  evs_http_respond(r, 200, NULL, "hello\n", 6);
}

static void on_done(uv_async_t *a) {
  ctx_t *c = a->data;
  evs_http_server_close(c->srv, NULL, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void test_accept_survives_allocation_failure(void **state) {
  (void)state;
  uv_loop_t loop;
  ctx_t c = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(evs_http_server_new(&loop, NULL, &c.srv), 0);
  assert_int_equal(evs_http_server_route(c.srv, "/hello", EVS_HTTP_GET, h_hello, NULL), 0);
  assert_int_equal(evs_http_server_listen(c.srv, "127.0.0.1:0"), 0);
  c.port = evs_http_server_port(c.srv);
  uv_async_init(&loop, &c.done, on_done);
  c.done.data = &c;
  fail_callocs = 1; /* the first connection's conn_t */
  uv_thread_t t;
  assert_int_equal(uv_thread_create(&t, client, &c), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_thread_join(&t);
  assert_int_equal(fail_callocs, 0);
  assert_true(c.refused_closed);
  assert_int_equal(c.second_status, 200);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_survives_allocation_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
