/* The HTTP/1.1 client against test/net_server.py (a real socket server that scripts each
 * behaviour and counts connections and requests server-side): keep-alive reuse, queueing under
 * the per-host maximum, Content-Length, chunked, until-close and HEAD bodies, streaming, the size
 * limit, timeouts, the connection closed at every stage of a response, redirects returned as
 * they are, cancellation, closing the client with requests in flight, TLS; and the pool under a
 * controller's traffic: streams outside the connection cap, the queue in priority order, a failed
 * connect failing its queue at once, idle pools freed, TCP keepalive. Every test closes the
 * client and checks the loop closes; ASan checks nothing leaks on any of these paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/tcp.h>

#include "evscale/error.h"
#include "evscale/http_client.h"
#include "net_helpers.h"

static evs_test_server_t srv;

typedef struct {
  int done, err, status, heads, chunks, abort_after;
  int64_t retry_after;
  char *body;
  size_t body_len;
  char location[64], xmethod[16], xhost[64];
  char stream[4096];
  size_t stream_len;
} res_t;

static void on_done(evs_http_req_t *req, int err, const evs_http_response_t *resp, void *arg) {
  (void)req;
  res_t *r = arg;
  r->done++;
  r->err = err;
  if (resp == NULL)
    return;
  r->status = resp->status;
  r->retry_after = resp->retry_after_s;
  if (resp->body != NULL) {
    r->body = malloc(resp->body_len + 1);
    memcpy(r->body, resp->body, resp->body_len + 1);
    r->body_len = resp->body_len;
  }
  const char *v;
  if ((v = evs_http_response_header(resp, "location")) != NULL)
    snprintf(r->location, sizeof r->location, "%s", v);
  if ((v = evs_http_response_header(resp, "X-Method")) != NULL)
    snprintf(r->xmethod, sizeof r->xmethod, "%s", v);
  if ((v = evs_http_response_header(resp, "X-Host")) != NULL)
    snprintf(r->xhost, sizeof r->xhost, "%s", v);
}

static void on_head(evs_http_req_t *req, const evs_http_response_t *resp, void *arg) {
  (void)req;
  res_t *r = arg;
  r->heads++;
  r->status = resp->status;
}

static int on_body(evs_http_req_t *req, const char *buf, size_t n, void *arg) {
  (void)req;
  res_t *r = arg;
  r->chunks++;
  if (r->stream_len + n < sizeof r->stream) {
    memcpy(r->stream + r->stream_len, buf, n);
    r->stream_len += n;
  }
  return r->abort_after > 0 && r->chunks >= r->abort_after;
}

static void res_free(res_t *r) {
  free(r->body);
  memset(r, 0, sizeof *r);
}

static int group_setup(void **state) {
  (void)state;
  const char *args[] = {"--mode", "http", NULL};
  return evs_test_server_start(&srv, args);
}

static int group_teardown(void **state) {
  (void)state;
  evs_test_server_stop(&srv);
  return 0;
}

typedef struct {
  uv_loop_t loop;
  evs_http_client_t *client;
} env_t;

static void env_init(env_t *e, const evs_http_client_options_t *o) {
  uv_loop_init(&e->loop);
  assert_int_equal(evs_http_client_new(&e->loop, o, &e->client), 0);
}

static void set_flag(void *arg) { *(int *)arg = 1; }

static void env_close(env_t *e) {
  int closed = 0;
  evs_http_client_close(e->client, set_flag, &closed);
  assert_true(evs_test_run_until(&e->loop, &closed, 10000));
  assert_int_equal(evs_test_loop_close(&e->loop), 0);
}

static void url(char *buf, size_t cap, const char *path) {
  snprintf(buf, cap, "http://127.0.0.1:%d%s", srv.port, path);
}

static void start(env_t *e, const char *method, const char *path, res_t *r,
                  evs_http_request_opts_t *extra) {
  char u[256];
  url(u, sizeof u, path);
  evs_http_request_opts_t o = {0};
  if (extra != NULL)
    o = *extra;
  o.method = method;
  o.url = u;
  o.on_done = on_done;
  o.arg = r;
  assert_int_equal(evs_http_request(e->client, &o, NULL), 0);
  assert_int_equal(r->done, 0); /* never inside evs_http_request */
}

static void run(env_t *e, res_t *r) { assert_true(evs_test_run_until(&e->loop, &r->done, 30000)); }

static void get(env_t *e, const char *path, res_t *r) {
  start(e, "GET", path, r, NULL);
  run(e, r);
  assert_int_equal(r->done, 1);
}

/* Server-side counters, read over a fresh client so the numbers are not our own pool's. */
static void server_stats(int *conns, int *reqs) {
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  get(&e, "/stats", &r);
  assert_int_equal(r.err, 0);
  assert_non_null(r.body);
  assert_int_equal(sscanf(r.body, "{\"connections\": %d, \"requests\": %d}", conns, reqs), 2);
  res_free(&r);
  env_close(&e);
}

static void test_keepalive_reuse(void **state) {
  (void)state;
  int c0, r0, c1, r1;
  server_stats(&c0, &r0);
  env_t e;
  env_init(&e, NULL);
  for (int i = 0; i < 20; i++) {
    res_t r = {0};
    get(&e, "/hello", &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    res_free(&r);
  }
  assert_int_equal(evs_http_client_connects(&*e.client), 1);
  assert_int_equal(evs_http_client_connections(e.client), 1);
  env_close(&e);
  server_stats(&c1, &r1);
  /* Ours: one connection and 20 requests; the first stats call adds one of each. */
  assert_int_equal(c1 - c0, 2);
  assert_int_equal(r1 - r0, 21);
}

static void test_queueing_under_max(void **state) {
  (void)state;
  evs_http_client_options_t o = {.max_conns_per_host = 2};
  env_t e;
  env_init(&e, &o);
  res_t r[10] = {0};
  for (int i = 0; i < 10; i++)
    start(&e, "GET", "/slow/50", &r[i], NULL);
  for (int i = 0; i < 10; i++) {
    run(&e, &r[i]);
    assert_int_equal(r[i].err, 0);
    assert_string_equal(r[i].body, "slow");
    res_free(&r[i]);
  }
  assert_int_equal(evs_http_client_connects(e.client), 2);
  env_close(&e);
}

static void test_bodies(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  get(&e, "/cl/1000000", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.body_len, 1000000);
  assert_int_equal(r.body[999999], 'a');
  res_free(&r);
  get(&e, "/chunked/100000/7", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.body_len, 100000);
  for (size_t i = 0; i < r.body_len; i++)
    if (r.body[i] != (char)('a' + i % 26))
      fail_msg("chunked body differs at %zu", i);
  res_free(&r);
  get(&e, "/cl/0", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.body_len, 0);
  res_free(&r);
  /* After all that the connection is still the first one: every body ended where it should. */
  assert_int_equal(evs_http_client_connects(e.client), 1);
  env_close(&e);
}

static void test_until_close_and_connection_close(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  get(&e, "/http10", &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.body, "until-close body");
  res_free(&r);
  get(&e, "/connclose", &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.body, "bye");
  res_free(&r);
  get(&e, "/hello", &r);
  assert_int_equal(r.err, 0);
  res_free(&r);
  assert_int_equal(evs_http_client_connects(e.client), 3);
  env_close(&e);
}

static void test_head_redirect_status(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  start(&e, "HEAD", "/head", &r, NULL);
  run(&e, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  res_free(&r);
  get(&e, "/redirect", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "/hello");
  res_free(&r);
  get(&e, "/status/429", &r);
  assert_int_equal(r.status, 429);
  assert_int_equal(r.retry_after, 3);
  res_free(&r);
  get(&e, "/status/500", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 500);
  assert_int_equal(r.retry_after, -1);
  res_free(&r);
  /* HEAD did not leave the parser waiting for 1000 body bytes: still one connection. */
  assert_int_equal(evs_http_client_connects(e.client), 1);
  env_close(&e);
}

static void test_post_and_patch(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  evs_http_header_t h[] = {{"Content-Type", "application/merge-patch+json"}};
  const char body[] = "{\"spec\":{\"replicas\":3}}";
  evs_http_request_opts_t o = {
      .headers = h, .nheaders = 1, .body = body, .body_len = sizeof body - 1};
  start(&e, "PATCH", "/echo", &r, &o);
  run(&e, &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.body, body);
  assert_string_equal(r.xmethod, "PATCH");
  char host[64];
  snprintf(host, sizeof host, "127.0.0.1:%d", srv.port);
  assert_string_equal(r.xhost, host);
  res_free(&r);
  start(&e, "POST", "/echo", &r, NULL); /* empty POST: Content-Length: 0 */
  run(&e, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.body_len, 0);
  assert_string_equal(r.xmethod, "POST");
  res_free(&r);
  env_close(&e);
}

static void test_streaming(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  evs_http_request_opts_t o = {.on_head = on_head, .on_body = on_body, .timeout_ms = 2000};
  start(&e, "GET", "/stream/5/60", &r, &o);
  run(&e, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.heads, 1);
  assert_int_equal(r.status, 200);
  assert_true(r.chunks >= 5);
  r.stream[r.stream_len] = '\0';
  assert_string_equal(r.stream, "event-0\nevent-1\nevent-2\nevent-3\nevent-4\n");
  res_free(&r);
  env_close(&e);
}

/* A stream that never ends outlives the request timeout (it stops at the head) and is ended by
 * the caller; the connection cannot be reused after an abort. */
static void test_streaming_forever_abort(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {.abort_after = 5};
  evs_http_request_opts_t o = {.on_head = on_head, .on_body = on_body, .timeout_ms = 200};
  start(&e, "GET", "/forever", &r, &o);
  run(&e, &r);
  assert_int_equal(r.err, EVS_ECANCELED);
  assert_int_equal(r.chunks, 5); /* 5 ticks at 100 ms: past the 200 ms request timeout */
  assert_non_null(strstr(r.stream, "tick-4"));
  res_free(&r);
  assert_int_equal(evs_http_client_connections(e.client), 0);
  env_close(&e);
}

static void test_stream_idle_timeout(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  evs_http_request_opts_t o = {
      .on_head = on_head, .on_body = on_body, .stream_idle_timeout_ms = 300};
  start(&e, "GET", "/stream/3/1000", &r, &o); /* one event a second: silence > 300 ms */
  run(&e, &r);
  assert_int_equal(r.heads, 1);
  assert_int_equal(r.err, EVS_ETIMEDOUT);
  res_free(&r);
  env_close(&e);
}

static void test_size_limit(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.max_response_bytes = 1000};
  env_t e;
  env_init(&e, &opt);
  res_t r = {0};
  get(&e, "/cl/900", &r);
  assert_int_equal(r.err, 0); /* 900 bytes of body + a short head fit in 1000 */
  res_free(&r);
  get(&e, "/cl/5000", &r);
  assert_int_equal(r.err, EVS_ETOOBIG);
  res_free(&r);
  get(&e, "/chunked/5000/10", &r);
  assert_int_equal(r.err, EVS_ETOOBIG);
  res_free(&r);
  get(&e, "/bigheaders/5000", &r);
  assert_int_equal(r.err, EVS_ETOOBIG);
  res_free(&r);
  /* A streamed body is not limited (a watch would hit any limit eventually). */
  evs_http_request_opts_t o = {.on_head = on_head, .on_body = on_body};
  start(&e, "GET", "/cl/5000", &r, &o);
  run(&e, &r);
  assert_int_equal(r.err, 0);
  res_free(&r);
  /* But a streamed response's head is: a server cannot make a watch buffer endless headers. */
  start(&e, "GET", "/bigheaders/5000", &r, &o);
  run(&e, &r);
  assert_int_equal(r.err, EVS_ETOOBIG);
  assert_int_equal(r.heads, 0);
  res_free(&r);
  env_close(&e);
}

static void test_timeout(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  evs_http_request_opts_t o = {.timeout_ms = 300};
  uint64_t t0 = uv_hrtime();
  start(&e, "GET", "/hang", &r, &o);
  run(&e, &r);
  assert_int_equal(r.err, EVS_ETIMEDOUT);
  assert_true((uv_hrtime() - t0) / 1000000 >= 250);
  assert_int_equal(evs_http_client_connections(e.client), 0); /* the busy one was closed */
  res_free(&r);
  env_close(&e);
}

static void test_closed_at_every_stage(void **state) {
  (void)state;
  const char *stages[] = {"before_status", "mid_status", "mid_headers",   "after_headers",
                          "mid_body",      "mid_chunk",  "mid_chunk_size"};
  env_t e;
  env_init(&e, NULL);
  for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
    char path[64];
    snprintf(path, sizeof path, "/close/%s", stages[i]);
    res_t r = {0};
    get(&e, path, &r);
    if (r.err != EVS_ECLOSED)
      fail_msg("%s: %s", stages[i], evs_strerror(r.err));
    res_free(&r);
    /* And the client is still fine for the next request. */
    get(&e, "/hello", &r);
    assert_int_equal(r.err, 0);
    res_free(&r);
  }
  env_close(&e);
}

static void test_protocol_errors(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  get(&e, "/continue", &r); /* 100 and 103 interim responses are skipped */
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "final");
  res_free(&r);
  get(&e, "/garbage", &r);
  assert_int_equal(r.err, EVS_EHTTP);
  res_free(&r);
  unsigned before = (unsigned)evs_http_client_connects(e.client);
  get(&e, "/extra", &r); /* a valid response followed by stray bytes */
  assert_int_equal(r.err, 0);
  assert_string_equal(r.body, "ok");
  res_free(&r);
  get(&e, "/hello", &r);
  assert_int_equal(r.err, 0);
  res_free(&r);
  assert_int_equal(evs_http_client_connects(e.client), before + 2);
  assert_int_equal(before, 1); /* /continue and /garbage shared one connection */
  env_close(&e);
}

/* The server closes a kept-alive connection as our next request arrives, before answering: an
 * idempotent request is sent again on a new connection and succeeds; a POST is not (it may have
 * been acted on) and fails with EVS_ECLOSED. */
static void test_retry_on_stale_connection(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  get(&e, "/arm_drop", &r);
  assert_string_equal(r.body, "armed");
  res_free(&r);
  get(&e, "/hello", &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.body, "hello");
  res_free(&r);
  assert_int_equal(evs_http_client_connects(e.client), 2);
  /* A streamed request (a watch) is retried as a stream. */
  get(&e, "/arm_drop", &r);
  res_free(&r);
  evs_http_request_opts_t so = {.on_head = on_head, .on_body = on_body};
  start(&e, "GET", "/stream/3/10", &r, &so);
  run(&e, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.heads, 1);
  assert_string_equal(r.stream, "event-0\nevent-1\nevent-2\n");
  assert_null(r.body);
  res_free(&r);
  assert_int_equal(evs_http_client_connects(e.client), 3);
  get(&e, "/arm_drop", &r);
  res_free(&r);
  start(&e, "POST", "/echo", &r, NULL);
  run(&e, &r);
  assert_int_equal(r.err, EVS_ECLOSED);
  res_free(&r);
  env_close(&e);
}

typedef struct {
  res_t res;
  char tag;
  char *order;
} tagged_t;

static void on_done_tagged(evs_http_req_t *req, int err, const evs_http_response_t *resp,
                           void *arg) {
  tagged_t *t = arg;
  on_done(req, err, resp, &t->res);
  size_t n = strlen(t->order);
  t->order[n] = err == 0 ? t->tag : '!';
  t->order[n + 1] = '\0';
}

/* With a limiter of 4 qps and burst 1, a HIGH request sent after three LOW ones goes first: all
 * four wait for the limiter's next grant (grants are never made inside a call), and a waiting
 * HIGH request always precedes waiting lower ones; the LOW ones then go in arrival order. */
static void test_rate_limited_priorities(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  evs_ratelimit_t *rl;
  assert_int_equal(evs_ratelimit_new(&e.loop, 4, 1, &rl), 0);
  char order[16] = "", u[128];
  url(u, sizeof u, "/hello");
  tagged_t t[4] = {{.tag = 'a'}, {.tag = 'b'}, {.tag = 'c'}, {.tag = 'H'}};
  for (int i = 0; i < 4; i++) {
    t[i].order = order;
    evs_http_request_opts_t o = {.method = "GET",
                                 .url = u,
                                 .limiter = rl,
                                 .priority = i == 3 ? EVS_PRIO_HIGH : EVS_PRIO_LOW,
                                 .on_done = on_done_tagged,
                                 .arg = &t[i]};
    assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
  }
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < 4; i++)
    run(&e, &t[i].res);
  assert_string_equal(order, "Habc");
  assert_true((uv_hrtime() - t0) / 1000000 >= 600); /* three tokens at 4 qps: >= 750 ms */
  for (int i = 0; i < 4; i++)
    res_free(&t[i].res);
  /* A request waiting for a token can be canceled; so can all of them by closing the client. */
  res_t w = {0};
  evs_http_req_t *req;
  evs_http_request_opts_t o = {
      .method = "GET", .url = u, .limiter = rl, .on_done = on_done, .arg = &w};
  assert_int_equal(evs_http_request(e.client, &o, &req), 0);
  res_t w2 = {0};
  o.arg = &w2;
  assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
  uv_run(&e.loop, UV_RUN_NOWAIT);                                  /* both now wait for tokens */
  assert_int_equal(evs_ratelimit_waiting(rl, EVS_PRIO_NORMAL), 2); /* the default priority */
  evs_http_cancel(req);
  assert_int_equal(w.err, EVS_ECANCELED);
  int closed = 0, rl_closed = 0;
  evs_http_client_close(e.client, set_flag, &closed);
  assert_int_equal(w2.done, 1);
  assert_int_equal(w2.err, EVS_ECANCELED);
  evs_ratelimit_close(rl, set_flag, &rl_closed);
  assert_true(evs_test_run_until(&e.loop, &closed, 10000));
  assert_true(evs_test_run_until(&e.loop, &rl_closed, 10000));
  assert_int_equal(evs_test_loop_close(&e.loop), 0);
}

static uint64_t ms_since(uint64_t t0) { return (uv_hrtime() - t0) / 1000000; }

/* Runs the loop until every one of n results has seen its head (or is done), or ms pass. */
static int run_until_heads(env_t *e, res_t *r, int n, uint64_t ms) {
  uint64_t t0 = uv_hrtime();
  for (;;) {
    int ok = 1;
    for (int i = 0; i < n; i++)
      ok &= r[i].heads > 0 || r[i].done > 0;
    if (ok)
      return 1;
    if (ms_since(t0) >= ms)
      return 0;
    int never = 0;
    evs_test_run_until(&e->loop, &never, 20);
  }
}

/* Watches are long-lived: six endless streams on one host (more than max_conns_per_host, 4)
 * all start, and a PATCH sent while they run is answered at once instead of queueing behind
 * them until its timeout. */
static void test_streams_outside_conn_cap(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t w[6] = {0};
  evs_http_request_opts_t so = {.on_head = on_head, .on_body = on_body};
  for (int i = 0; i < 6; i++)
    start(&e, "GET", "/forever", &w[i], &so);
  run_until_heads(&e, w, 6, 3000);
  res_t p = {0};
  const char body[] = "{\"spec\":{\"replicas\":5}}";
  evs_http_request_opts_t po = {
      .body = body, .body_len = sizeof body - 1, .timeout_ms = 5000, .priority = EVS_PRIO_HIGH};
  uint64_t t0 = uv_hrtime();
  start(&e, "PATCH", "/echo", &p, &po);
  run(&e, &p);
  uint64_t took = ms_since(t0);
  assert_int_equal(p.err, 0);
  assert_string_equal(p.body, body);
  if (took > 2000)
    fail_msg("the PATCH waited %llu ms behind the streams", (unsigned long long)took);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(w[i].heads, 1);
    assert_int_equal(w[i].done, 0);
  }
  res_free(&p);
  env_close(&e);
  for (int i = 0; i < 6; i++)
    assert_int_equal(w[i].err, EVS_ECANCELED);
}

/* Streams have a bound of their own (max_streams_per_host): the third of a limit of two waits
 * for one of the first two to end, and ordinary requests are not affected by the wait. */
static void test_stream_limit(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.max_conns_per_host = 1, .max_streams_per_host = 2};
  env_t e;
  env_init(&e, &opt);
  res_t w[3] = {0};
  evs_http_req_t *first;
  char u[128];
  url(u, sizeof u, "/forever");
  evs_http_request_opts_t so = {.method = "GET",
                                .url = u,
                                .on_head = on_head,
                                .on_body = on_body,
                                .timeout_ms = 20000,
                                .on_done = on_done,
                                .arg = &w[0]};
  assert_int_equal(evs_http_request(e.client, &so, &first), 0);
  so.arg = &w[1];
  assert_int_equal(evs_http_request(e.client, &so, NULL), 0);
  run_until_heads(&e, w, 2, 5000);
  assert_int_equal(w[0].heads + w[1].heads, 2);
  so.arg = &w[2];
  assert_int_equal(evs_http_request(e.client, &so, NULL), 0);
  res_t r = {0};
  get(&e, "/hello", &r); /* the one ordinary connection is free */
  assert_int_equal(r.err, 0);
  res_free(&r);
  int never = 0;
  evs_test_run_until(&e.loop, &never, 500);
  assert_int_equal(w[2].heads, 0); /* still waiting for a stream slot */
  assert_int_equal(evs_http_client_connections(e.client), 3);
  evs_http_cancel(first);
  assert_true(run_until_heads(&e, &w[2], 1, 5000));
  assert_int_equal(w[2].heads, 1);
  assert_int_equal(w[2].done, 0);
  env_close(&e);
}

/* A stream that ends cleanly leaves its connection to ordinary requests while they have room
 * (it is reused), and closes it when they do not (the cap holds). */
static void test_stream_conn_parked(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.max_conns_per_host = 1};
  env_t e;
  env_init(&e, &opt);
  res_t w = {0}, r = {0};
  evs_http_request_opts_t so = {.on_head = on_head, .on_body = on_body};
  start(&e, "GET", "/stream/3/10", &w, &so);
  run(&e, &w);
  assert_int_equal(w.err, 0);
  assert_int_equal(evs_http_client_connections(e.client), 1);
  get(&e, "/hello", &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(evs_http_client_connects(e.client), 1); /* the stream's connection */
  res_free(&r);
  res_free(&w);
  /* Now the one ordinary connection is busy when the stream ends: the stream's one closes. */
  start(&e, "GET", "/slow/1500", &r, NULL);
  start(&e, "GET", "/stream/3/10", &w, &so);
  run(&e, &w);
  assert_int_equal(w.err, 0);
  assert_int_equal(r.done, 0);
  int never = 0;
  evs_test_run_until(&e.loop, &never, 100);
  assert_int_equal(evs_http_client_connections(e.client), 1);
  run(&e, &r);
  assert_int_equal(r.err, 0);
  res_free(&r);
  res_free(&w);
  env_close(&e);
}

/* A connect that fails fails the requests queued behind it at once (the host refuses; each
 * would otherwise sit in the queue until its own timeout). */
static void test_connect_failure_fails_queue(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.max_conns_per_host = 1};
  env_t e;
  env_init(&e, &opt);
  int port = evs_test_closed_port();
  assert_true(port > 0);
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/", port);
  res_t r[5] = {0};
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < 5; i++) {
    evs_http_request_opts_t o = {
        .method = "GET", .url = u, .timeout_ms = 8000, .on_done = on_done, .arg = &r[i]};
    assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
  }
  for (int i = 0; i < 5; i++) {
    run(&e, &r[i]);
    if (r[i].err != UV_ECONNREFUSED)
      fail_msg("request %d: %s", i, evs_strerror(r[i].err));
  }
  uint64_t took = ms_since(t0);
  if (took > 3000)
    fail_msg("the queued requests failed after %llu ms", (unsigned long long)took);
  env_close(&e);
}

/* Requests waiting for a connection leave in priority order (HIGH, NORMAL, LOW), first come
 * first served within one: a scale write queued after status updates goes first. */
static void test_queue_priority_order(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.max_conns_per_host = 1};
  env_t e;
  env_init(&e, &opt);
  char order[16] = "", slow[128], hello[128];
  url(slow, sizeof slow, "/slow/300");
  url(hello, sizeof hello, "/hello");
  struct {
    char tag;
    evs_prio_t prio;
  } plan[] = {{'S', EVS_PRIO_NORMAL}, {'a', EVS_PRIO_LOW},  {'b', EVS_PRIO_LOW},
              {'n', EVS_PRIO_NORMAL}, {'H', EVS_PRIO_HIGH}, {'c', EVS_PRIO_LOW},
              {'I', EVS_PRIO_HIGH}};
  enum { N = sizeof plan / sizeof plan[0] };
  tagged_t t[N] = {0};
  for (int i = 0; i < N; i++) {
    t[i].tag = plan[i].tag;
    t[i].order = order;
    evs_http_request_opts_t o = {.method = "GET",
                                 .url = i == 0 ? slow : hello,
                                 .priority = plan[i].prio,
                                 .on_done = on_done_tagged,
                                 .arg = &t[i]};
    assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
  }
  for (int i = 0; i < N; i++)
    run(&e, &t[i].res);
  assert_string_equal(order, "SHInabc");
  for (int i = 0; i < N; i++)
    res_free(&t[i].res);
  /* The same through a limiter with tokens to spare: each request gets its token as it comes,
   * so the limiter's own order is arrival order, and the pool's queue must still sort them. */
  evs_ratelimit_t *rl;
  assert_int_equal(evs_ratelimit_new(&e.loop, 1000, 100, &rl), 0);
  order[0] = '\0';
  for (int i = 0; i < N; i++) {
    memset(&t[i].res, 0, sizeof t[i].res);
    evs_http_request_opts_t o = {.method = "GET",
                                 .url = i == 0 ? slow : hello,
                                 .limiter = rl,
                                 .priority = plan[i].prio,
                                 .on_done = on_done_tagged,
                                 .arg = &t[i]};
    assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
    for (int k = 0; k < 5; k++)
      uv_run(&e.loop, UV_RUN_NOWAIT); /* its token, then the pool's queue */
    assert_int_equal(evs_ratelimit_waiting(rl, plan[i].prio), 0);
  }
  for (int i = 0; i < N; i++)
    run(&e, &t[i].res);
  assert_string_equal(order, "SHInabc");
  for (int i = 0; i < N; i++)
    res_free(&t[i].res);
  int rl_closed = 0;
  evs_ratelimit_close(rl, set_flag, &rl_closed);
  assert_true(evs_test_run_until(&e.loop, &rl_closed, 5000));
  env_close(&e);
}

/* A pool whose host has had no request for idle_pool_timeout_ms (after its last connection went)
 * is freed with its TLS reference; a later request to the host makes a new one and works. */
static void test_idle_pool_expiry(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.idle_conn_timeout_ms = 200, .idle_pool_timeout_ms = 200};
  env_t e;
  env_init(&e, &opt);
  res_t r = {0};
  get(&e, "/hello", &r);
  assert_int_equal(r.err, 0);
  res_free(&r);
  assert_int_equal(evs_http_client_pools(e.client), 1);
  int never = 0;
  evs_test_run_until(&e.loop, &never, 1000);
  assert_int_equal(evs_http_client_connections(e.client), 0);
  assert_int_equal(evs_http_client_pools(e.client), 0);
  get(&e, "/hello", &r);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.body, "hello");
  res_free(&r);
  assert_int_equal(evs_http_client_pools(e.client), 1);
  assert_int_equal(evs_http_client_connects(e.client), 2);
  env_close(&e);
}

/* The socket of a connection to srv (found among this process's descriptors by its peer). */
static int find_client_socket(int port) {
  for (int fd = 3; fd < 1024; fd++) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &len) == 0 && a.sin_family == AF_INET &&
        ntohs(a.sin_port) == port)
      return fd;
  }
  return -1;
}

/* Long-lived connections have TCP keepalive on, so a peer that vanished without a FIN (a node
 * gone, a NAT entry dropped) is noticed by the kernel instead of leaving a watch silent forever. */
static void test_tcp_keepalive(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.tcp_keepalive_s = 17};
  env_t e;
  env_init(&e, &opt);
  res_t w = {0};
  evs_http_request_opts_t so = {.on_head = on_head, .on_body = on_body};
  start(&e, "GET", "/forever", &w, &so);
  assert_true(run_until_heads(&e, &w, 1, 5000));
  int fd = find_client_socket(srv.port);
  assert_true(fd >= 0);
  int on = 0, idle = 0;
  socklen_t len = sizeof on;
  assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len), 0);
  assert_int_equal(on, 1);
  len = sizeof idle;
  assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len), 0);
  assert_int_equal(idle, 17);
  env_close(&e);
}

static void test_cancel(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0}, q = {0};
  char u[128];
  url(u, sizeof u, "/hang");
  evs_http_req_t *req;
  evs_http_request_opts_t o = {.method = "GET", .url = u, .on_done = on_done, .arg = &r};
  assert_int_equal(evs_http_request(e.client, &o, &req), 0);
  evs_http_cancel(req); /* before it even started */
  assert_int_equal(r.done, 1);
  assert_int_equal(r.err, EVS_ECANCELED);
  res_free(&r);
  o.arg = &q;
  assert_int_equal(evs_http_request(e.client, &o, &req), 0);
  for (int i = 0; i < 50 && evs_http_client_connections(e.client) == 0; i++)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  usleep(100000);
  uv_run(&e.loop, UV_RUN_NOWAIT);
  evs_http_cancel(req); /* in flight */
  assert_int_equal(q.done, 1);
  assert_int_equal(q.err, EVS_ECANCELED);
  res_free(&q);
  env_close(&e);
}

static void test_close_client_with_requests(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r[4] = {0};
  start(&e, "GET", "/hang", &r[0], NULL);
  start(&e, "GET", "/hang", &r[1], NULL);
  for (int i = 0; i < 20; i++)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  start(&e, "GET", "/hello", &r[2], NULL);
  evs_http_request_opts_t o = {.on_head = on_head, .on_body = on_body};
  start(&e, "GET", "/forever", &r[3], &o);
  env_close(&e);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(r[i].done, 1);
    assert_int_equal(r[i].err, EVS_ECANCELED);
  }
}

static void test_invalid_requests(void **state) {
  (void)state;
  env_t e;
  env_init(&e, NULL);
  res_t r = {0};
  evs_http_request_opts_t o = {.method = "GET", .on_done = on_done, .arg = &r};
  const char *bad_urls[] = {"ftp://x/",
                            "http://",
                            "http://h:99999/",
                            "http://a b/",
                            "http://u@h/",
                            "http://[::1/",
                            "https://127.0.0.1/" /* no tls config */,
                            NULL};
  for (int i = 0; bad_urls[i] != NULL; i++) {
    o.url = bad_urls[i];
    assert_int_equal(evs_http_request(e.client, &o, NULL), UV_EINVAL);
  }
  char u[128];
  url(u, sizeof u, "/hello");
  o.url = u;
  evs_http_header_t inj[] = {{"X-A", "1\r\nX-Injected: 1"}};
  o.headers = inj;
  o.nheaders = 1;
  assert_int_equal(evs_http_request(e.client, &o, NULL), UV_EINVAL);
  evs_http_header_t cl[] = {{"Content-Length", "5"}};
  o.headers = cl;
  assert_int_equal(evs_http_request(e.client, &o, NULL), UV_EINVAL);
  o.headers = NULL;
  o.nheaders = 0;
  o.method = "GE T";
  assert_int_equal(evs_http_request(e.client, &o, NULL), UV_EINVAL);
  assert_int_equal(r.done, 0);
  env_close(&e);
}

static void test_refused_and_idle_expiry(void **state) {
  (void)state;
  evs_http_client_options_t opt = {.idle_conn_timeout_ms = 200};
  env_t e;
  env_init(&e, &opt);
  res_t r = {0};
  get(&e, "/hello", &r);
  assert_int_equal(r.err, 0);
  res_free(&r);
  assert_int_equal(evs_http_client_connections(e.client), 1);
  int never = 0;
  evs_test_run_until(&e.loop, &never, 600);
  assert_int_equal(evs_http_client_connections(e.client), 0);
  /* Connection refused on a port nobody listens on. */
  char refused[64];
  int port = evs_test_closed_port();
  assert_true(port > 0);
  snprintf(refused, sizeof refused, "http://127.0.0.1:%d/", port);
  evs_http_request_opts_t o = {.method = "GET", .url = refused, .on_done = on_done, .arg = &r};
  assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
  run(&e, &r);
  assert_int_equal(r.err, UV_ECONNREFUSED);
  assert_true(evs_http_error_retryable(r.err));
  res_free(&r);
  env_close(&e);
}

static void test_https_keepalive(void **state) {
  (void)state;
  evs_test_server_t tsrv;
  const char *args[] = {"--mode",     "http",
                        "--tls-cert", evs_test_cert("ip-only.crt"),
                        "--tls-key",  evs_test_cert("ip-only.key"),
                        NULL};
  assert_int_equal(evs_test_server_start(&tsrv, args), 0);
  evs_tls_options_t to = {.ca_file = evs_test_cert("ca.crt")};
  evs_tls_config_t *cfg;
  assert_int_equal(evs_tls_config_new(&to, &cfg, NULL), 0);
  env_t e;
  env_init(&e, NULL);
  char u[128];
  snprintf(u, sizeof u, "https://127.0.0.1:%d/chunked/50000/5", tsrv.port);
  for (int i = 0; i < 5; i++) {
    res_t r = {0};
    evs_http_request_opts_t o = {
        .method = "GET", .url = u, .tls = cfg, .on_done = on_done, .arg = &r};
    assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
    run(&e, &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.body_len, 50000);
    res_free(&r);
  }
  assert_int_equal(evs_http_client_connects(e.client), 1);
  /* Over TLS the connection closed at every stage (no close_notify) is EVS_ECLOSED as well. */
  const char *stages[] = {"before_status", "mid_headers", "mid_body", "mid_chunk"};
  for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
    res_t r = {0};
    snprintf(u, sizeof u, "https://127.0.0.1:%d/close/%s", tsrv.port, stages[i]);
    evs_http_request_opts_t o = {
        .method = "GET", .url = u, .tls = cfg, .on_done = on_done, .arg = &r};
    assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
    run(&e, &r);
    if (r.err != EVS_ECLOSED)
      fail_msg("tls %s: %s", stages[i], evs_strerror(r.err));
    res_free(&r);
  }
  /* A wrong CA: ECERT through the client too. */
  evs_tls_options_t wo = {.ca_file = evs_test_cert("wrong-ca.crt")};
  evs_tls_config_t *wrong;
  assert_int_equal(evs_tls_config_new(&wo, &wrong, NULL), 0);
  res_t r = {0};
  evs_http_request_opts_t o = {
      .method = "GET", .url = u, .tls = wrong, .on_done = on_done, .arg = &r};
  assert_int_equal(evs_http_request(e.client, &o, NULL), 0);
  run(&e, &r);
  assert_int_equal(r.err, EVS_ECERT);
  assert_false(evs_http_error_retryable(r.err));
  res_free(&r);
  env_close(&e);
  evs_tls_config_unref(cfg);
  evs_tls_config_unref(wrong);
  evs_test_server_stop(&tsrv);
}

static void test_url_parse(void **state) {
  (void)state;
  evs_http_url_t u;
  assert_int_equal(evs_http_url_parse("https://[::1]:6443/api?x=1", &u), 0);
  assert_true(u.tls);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 6443);
  assert_string_equal(u.path, "/api?x=1");
  assert_int_equal(evs_http_url_parse("http://example.com", &u), 0);
  assert_int_equal(u.port, 80);
  assert_string_equal(u.path, "/");
  assert_int_equal(evs_http_url_parse("HTTPS://k8s:443?watch=1", &u), 0);
  assert_int_equal(u.port, 443);
  assert_string_equal(u.path, "?watch=1");
  assert_int_equal(evs_http_url_parse("http://h:0/", &u), UV_EINVAL);
  assert_int_equal(evs_http_url_parse("http://h:/", &u), UV_EINVAL);
  assert_int_equal(evs_http_url_parse("http://h/#frag", &u), UV_EINVAL);
  assert_int_equal(evs_http_status_retryable(429, 0), 1);
  assert_int_equal(evs_http_status_retryable(500, 0), 0);
  assert_int_equal(evs_http_status_retryable(500, 1), 1);
  assert_int_equal(evs_http_status_retryable(404, 1), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_parse),
      cmocka_unit_test(test_keepalive_reuse),
      cmocka_unit_test(test_queueing_under_max),
      cmocka_unit_test(test_bodies),
      cmocka_unit_test(test_until_close_and_connection_close),
      cmocka_unit_test(test_head_redirect_status),
      cmocka_unit_test(test_post_and_patch),
      cmocka_unit_test(test_streaming),
      cmocka_unit_test(test_streaming_forever_abort),
      cmocka_unit_test(test_stream_idle_timeout),
      cmocka_unit_test(test_size_limit),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_closed_at_every_stage),
      cmocka_unit_test(test_protocol_errors),
      cmocka_unit_test(test_retry_on_stale_connection),
      cmocka_unit_test(test_rate_limited_priorities),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_close_client_with_requests),
      cmocka_unit_test(test_invalid_requests),
      cmocka_unit_test(test_refused_and_idle_expiry),
      cmocka_unit_test(test_https_keepalive),
      cmocka_unit_test(test_streams_outside_conn_cap),
      cmocka_unit_test(test_stream_limit),
      cmocka_unit_test(test_stream_conn_parked),
      cmocka_unit_test(test_connect_failure_fails_queue),
      cmocka_unit_test(test_queue_priority_order),
      cmocka_unit_test(test_idle_pool_expiry),
      cmocka_unit_test(test_tcp_keepalive),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
