/* evs_redis connections against a real redis-server started here on a free loopback port:
 * key-type round trips, pipelining, AUTH (requirepass, ACL users), SELECT, keyspace events over
 * pub/sub, SUBSCRIBE refused by ACL, a server killed and restarted, a slow server, close with
 * requests in flight, TLS, the registry. Every test ends with the loop closing cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "evscale/error.h"
#include "evscale/redis_conn.h"
#include "net_helpers.h"

#include "redis_helpers.h"

/* --- reply collection ---------------------------------------------------------------------- */

#define MAXR 2048

typedef struct {
  int n;
  int err[MAXR];
  int type[MAXR];
  long long integer[MAXR];
  char str[MAXR][64];
  char msg[MAXR][256];
  int close_at; /* close the connection from inside the reply with this index (1-based) */
} replies_t;

static void on_reply(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r,
                     void *arg) {
  replies_t *rs = arg;
  int i = rs->n++;
  assert_true(i < MAXR);
  rs->err[i] = err;
  rs->type[i] = r != NULL ? r->type : -1;
  rs->integer[i] = r != NULL ? r->integer : 0;
  snprintf(rs->str[i], sizeof rs->str[i], "%s", r != NULL && r->str != NULL ? r->str : "");
  snprintf(rs->msg[i], sizeof rs->msg[i], "%s", msg != NULL ? msg : "");
  assert_true(err == 0 ? msg == NULL : msg != NULL);
  if (rs->close_at == rs->n)
    evs_redis_conn_close(c, NULL, NULL);
}

static int wait_n(uv_loop_t *loop, replies_t *rs, int n, uint64_t ms) {
  uint64_t t0 = uv_hrtime();
  while (rs->n < n && (uv_hrtime() - t0) / 1000000 < ms) {
    int dummy = 0;
    evs_test_run_until(loop, &dummy, 20);
  }
  return rs->n >= n;
}

static void sleep_loop(uv_loop_t *loop, uint64_t ms) {
  int never = 0;
  evs_test_run_until(loop, &never, ms);
}

/* Runs the loop until *v reaches at least want (or ms pass); returns whether it did. */
static int wait_ge(uv_loop_t *loop, const int *v, int want, uint64_t ms) {
  uint64_t t0 = uv_hrtime();
  while (*v < want && (uv_hrtime() - t0) / 1000000 < ms)
    sleep_loop(loop, 20);
  return *v >= want;
}

static evs_redis_options_t opts_for(const rsrv_t *r) {
  return (evs_redis_options_t){.host = "127.0.0.1",
                               .port = r->port,
                               .connect_timeout_ms = 10000,
                               .request_timeout_ms = 10000,
                               .backoff_initial_ms = 50,
                               .backoff_max_ms = 300};
}

static void on_closed_flag(void *arg) { *(int *)arg = 1; }

static void close_conn(uv_loop_t *loop, evs_redis_conn_t *c) {
  int closed = 0;
  evs_redis_conn_close(c, on_closed_flag, &closed);
  assert_true(evs_test_run_until(loop, &closed, 5000));
}

/* Sends one command and waits for its reply; returns the reply's index in rs. */
static int call(uv_loop_t *loop, evs_redis_conn_t *c, replies_t *rs, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int want = rs->n + 1;
  assert_int_equal(evs_redis_vcommand(c, on_reply, rs, fmt, ap), 0);
  va_end(ap);
  assert_true(wait_n(loop, rs, want, 20000));
  return want - 1;
}

/* --- tests --------------------------------------------------------------------------------- */

static void test_key_types(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_redis_options_t o = opts_for(&shared);
  evs_redis_conn_t *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  call(&loop, c, &rs, "DEL kt:l kt:z kt:s kt:h");
  call(&loop, c, &rs, "RPUSH kt:l a b c");
  call(&loop, c, &rs, "ZADD kt:z 1 a 2 b");
  call(&loop, c, &rs, "SADD kt:s x");
  call(&loop, c, &rs, "HSET kt:h f v g w h x i y");
  struct {
    const char *cmd;
    int type;
    long long n;
    const char *s;
  } cases[] = {
      {"LLEN kt:l", REDIS_REPLY_INTEGER, 3, ""},       {"ZCARD kt:z", REDIS_REPLY_INTEGER, 2, ""},
      {"SCARD kt:s", REDIS_REPLY_INTEGER, 1, ""},      {"HLEN kt:h", REDIS_REPLY_INTEGER, 4, ""},
      {"LLEN kt:none", REDIS_REPLY_INTEGER, 0, ""},    {"TYPE kt:l", REDIS_REPLY_STATUS, 0, "list"},
      {"TYPE kt:z", REDIS_REPLY_STATUS, 0, "zset"},    {"TYPE kt:h", REDIS_REPLY_STATUS, 0, "hash"},
      {"TYPE kt:none", REDIS_REPLY_STATUS, 0, "none"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int k = call(&loop, c, &rs, cases[i].cmd);
    assert_int_equal(rs.err[k], 0);
    assert_int_equal(rs.type[k], cases[i].type);
    assert_int_equal(rs.integer[k], cases[i].n);
    assert_string_equal(rs.str[k], cases[i].s);
  }
  /* A command error is a reply with EVS_EREDIS; the connection stays usable. */
  int k = call(&loop, c, &rs, "LLEN kt:z");
  assert_int_equal(rs.err[k], EVS_EREDIS);
  assert_int_equal(rs.type[k], REDIS_REPLY_ERROR);
  assert_non_null(strstr(rs.msg[k], "WRONGTYPE"));
  char hp[64];
  snprintf(hp, sizeof hp, "127.0.0.1:%d", shared.port);
  assert_non_null(strstr(rs.msg[k], hp));
  /* Binary-safe argv form. */
  const char *argv[2] = {"LLEN", "kt:l"};
  assert_int_equal(evs_redis_command_argv(c, on_reply, &rs, 2, argv, NULL), 0);
  assert_true(wait_n(&loop, &rs, k + 2, 10000));
  assert_int_equal(rs.integer[k + 1], 3);
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(c, &st);
  assert_int_equal(st.connects, 1);
  assert_int_equal(st.failures, 0);
  assert_true(st.connected);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_pipeline_1000(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_redis_options_t o = opts_for(&shared);
  evs_redis_conn_t *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  call(&loop, c, &rs, "DEL pl:ctr");
  rs.n = 0;
  /* All 1000 are queued before the loop runs: they are in flight together, and INCR's
   * results show the replies were matched in order. */
  for (int i = 0; i < 1000; i++)
    assert_int_equal(evs_redis_command(c, on_reply, &rs, "INCR pl:ctr"), 0);
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(c, &st);
  assert_int_equal(st.outstanding, 1000);
  assert_true(wait_n(&loop, &rs, 1000, 30000));
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(rs.err[i], 0);
    assert_int_equal(rs.integer[i], i + 1);
  }
  evs_redis_conn_stats(c, &st);
  assert_int_equal(st.connects, 1);
  assert_int_equal(st.outstanding, 0);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

/* Commands queued before the connection exists wait for it and go after AUTH and SELECT. */
static void test_requirepass(void **state) {
  (void)state;
  rsrv_t r = {.extra = {"--requirepass", "s3cret-pw", NULL}};
  rsrv_start(&r, 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  char hp[64];
  snprintf(hp, sizeof hp, "127.0.0.1:%d", r.port);

  evs_redis_options_t o = opts_for(&r);
  o.password = "s3cret-pw";
  o.db = 2;
  evs_redis_conn_t *good, *bad, *none;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &good), 0);
  int k = call(&loop, good, &rs, "PING");
  assert_int_equal(rs.err[k], 0);
  assert_string_equal(rs.str[k], "PONG");

  o.password = "wrong-pw-value";
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &bad), 0);
  assert_int_equal(evs_redis_command(bad, on_reply, &rs, "LLEN x"), 0);
  assert_int_equal(evs_redis_command(bad, on_reply, &rs, "LLEN y"), 0);
  assert_true(wait_n(&loop, &rs, k + 3, 10000));
  for (int i = k + 1; i <= k + 2; i++) {
    assert_int_equal(rs.err[i], UV_EACCES);
    assert_int_equal(rs.type[i], -1);
    assert_non_null(strstr(rs.msg[i], hp));
    assert_non_null(strstr(rs.msg[i], "authentication failed"));
    assert_null(strstr(rs.msg[i], "wrong-pw"));
  }
  const char *msg;
  assert_int_equal(evs_redis_conn_last_error(bad, &msg), UV_EACCES);
  assert_null(strstr(msg, "wrong-pw"));
  /* During backoff a command fails at once, without a callback. */
  assert_int_equal(evs_redis_command(bad, on_reply, &rs, "LLEN x"), UV_EACCES);
  assert_null(strstr(evs_redis_conn_describe(bad), "wrong-pw"));

  /* No password at all: the server's NOAUTH reply maps to UV_EACCES too. */
  o.password = NULL;
  o.db = 0;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &none), 0);
  k = call(&loop, none, &rs, "LLEN x");
  assert_int_equal(rs.err[k], UV_EACCES);
  assert_int_equal(rs.type[k], REDIS_REPLY_ERROR);
  assert_non_null(strstr(rs.msg[k], "NOAUTH"));

  close_conn(&loop, good);
  close_conn(&loop, bad);
  close_conn(&loop, none);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  rsrv_stop(&r);
}

typedef struct {
  int active, down, refused, refused_err, messages;
  char last_payload[64];
  char refused_msg[256];
} sub_ctx_t;

static void on_msg(evs_redis_sub_t *s, const char *payload, size_t len, void *arg) {
  (void)s;
  sub_ctx_t *x = arg;
  x->messages++;
  snprintf(x->last_payload, sizeof x->last_payload, "%.*s", (int)len, payload);
}

static void on_state(evs_redis_sub_t *s, evs_redis_sub_state_t st, int err, const char *msg,
                     void *arg) {
  sub_ctx_t *x = arg;
  if (st == EVS_REDIS_SUB_ACTIVE) {
    assert_int_equal(err, 0);
    assert_true(evs_redis_sub_active(s));
    x->active++;
  } else if (st == EVS_REDIS_SUB_DOWN) {
    assert_true(err != 0);
    x->down++;
  } else {
    x->refused++;
    x->refused_err = err;
    snprintf(x->refused_msg, sizeof x->refused_msg, "%s", msg);
  }
}

static const evs_redis_sub_handlers_t handlers = {.on_message = on_msg, .on_state = on_state};

static void test_acl_users(void **state) {
  (void)state;
  rsrv_t r = {.extra = {NULL}};
  rsrv_start(&r, 0);
  cli(&r, "ACL SETUSER u on '>pw-u' '~*' '+@all' allchannels");
  cli(&r, "ACL SETUSER nochan on '>pw-n' '~*' '+@all' resetchannels");
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&r);
  o.username = "u";
  o.password = "pw-u";
  evs_redis_conn_t *c, *bad, *sub_ok, *sub_no;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  int k = call(&loop, c, &rs, "ACL WHOAMI");
  assert_int_equal(rs.err[k], 0);
  assert_string_equal(rs.str[k], "u");

  o.password = "pw-wrong";
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &bad), 0);
  k = call(&loop, bad, &rs, "LLEN x");
  assert_int_equal(rs.err[k], UV_EACCES);
  assert_non_null(strstr(rs.msg[k], "user=u"));
  assert_non_null(strstr(rs.msg[k], "WRONGPASS"));
  assert_null(strstr(rs.msg[k], "pw-wrong"));

  /* The user with channels subscribes; the one without gets NOPERM → REFUSED, UV_EPERM. */
  o.password = "pw-u";
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sub_ok), 0);
  o.username = "nochan";
  o.password = "pw-n";
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sub_no), 0);
  sub_ctx_t xo = {0}, xn = {0};
  evs_redis_sub_t *so, *sn;
  const char *chan = "__keyspace@0__:acl:list";
  assert_int_equal(evs_redis_subscribe(sub_ok, chan, strlen(chan), &handlers, &xo, &so), 0);
  assert_int_equal(evs_redis_subscribe(sub_no, chan, strlen(chan), &handlers, &xn, &sn), 0);
  assert_true(evs_test_run_until(&loop, &xo.active, 10000));
  assert_true(evs_test_run_until(&loop, &xn.refused, 10000));
  assert_int_equal(xn.refused_err, UV_EPERM);
  assert_non_null(strstr(xn.refused_msg, "NOPERM"));
  assert_non_null(strstr(xn.refused_msg, "user=nochan"));
  assert_int_equal(xn.active, 0);
  assert_false(evs_redis_sub_active(sn));
  evs_redis_unsubscribe(so);
  evs_redis_unsubscribe(sn);
  close_conn(&loop, c);
  close_conn(&loop, bad);
  close_conn(&loop, sub_ok);
  close_conn(&loop, sub_no);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  rsrv_stop(&r);
}

static void test_select_db(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&shared);
  evs_redis_conn_t *d0, *d3;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &d0), 0);
  o.db = 3;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &d3), 0);
  call(&loop, d0, &rs, "DEL sel:l");
  call(&loop, d3, &rs, "DEL sel:l");
  call(&loop, d3, &rs, "RPUSH sel:l a b");
  int k = call(&loop, d3, &rs, "LLEN sel:l");
  assert_int_equal(rs.integer[k], 2);
  k = call(&loop, d0, &rs, "LLEN sel:l");
  assert_int_equal(rs.integer[k], 0);
  /* A database the server does not have fails the connection (EVS_EREDIS, named). */
  o.db = 99;
  evs_redis_conn_t *bad;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &bad), 0);
  k = call(&loop, bad, &rs, "PING");
  assert_int_equal(rs.err[k], EVS_EREDIS);
  assert_non_null(strstr(rs.msg[k], "SELECT failed"));
  assert_non_null(strstr(rs.msg[k], "db=99"));
  close_conn(&loop, d0);
  close_conn(&loop, d3);
  close_conn(&loop, bad);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_keyspace_events(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&shared);
  evs_redis_conn_t *c, *sc;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sc), 0);
  int k = call(&loop, c, &rs, "CONFIG SET notify-keyspace-events Kl");
  assert_int_equal(rs.err[k], 0);
  sub_ctx_t a = {0}, b = {0};
  evs_redis_sub_t *sa, *sb;
  const char *chan = "__keyspace@0__:ks:mylist";
  assert_int_equal(evs_redis_subscribe(sc, chan, strlen(chan), &handlers, &a, &sa), 0);
  assert_false(evs_redis_sub_active(sa));
  assert_true(evs_test_run_until(&loop, &a.active, 10000));
  /* A second listener on the same channel gets its own ACTIVE. */
  assert_int_equal(evs_redis_subscribe(sc, chan, strlen(chan), &handlers, &b, &sb), 0);
  assert_true(evs_test_run_until(&loop, &b.active, 10000));
  assert_int_equal(a.active, 1);
  call(&loop, c, &rs, "LPUSH ks:mylist x");
  assert_true(evs_test_run_until(&loop, &a.messages, 10000));
  assert_true(evs_test_run_until(&loop, &b.messages, 10000));
  assert_string_equal(a.last_payload, "lpush");
  /* Without the first listener the second still hears. */
  evs_redis_unsubscribe(sa);
  call(&loop, c, &rs, "RPOP ks:mylist");
  assert_true(wait_ge(&loop, &b.messages, 2, 10000));
  assert_string_equal(b.last_payload, "rpop");
  assert_int_equal(a.messages, 1);
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(sc, &st);
  assert_int_equal(st.messages, 2);
  assert_int_equal(st.channels, 1);
  /* The last listener gone: UNSUBSCRIBE, then no more messages. */
  evs_redis_unsubscribe(sb);
  call(&loop, c, &rs, "LPUSH ks:mylist y");
  sleep_loop(&loop, 300);
  assert_int_equal(b.messages, 2);
  evs_redis_conn_stats(sc, &st);
  assert_int_equal(st.channels, 0);
  call(&loop, c, &rs, "CONFIG SET notify-keyspace-events \"\"");
  close_conn(&loop, c);
  close_conn(&loop, sc);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

/* The server dies with requests in flight: they fail at once, the subscriber goes DOWN; the
 * server comes back on the same port: commands recover and the subscriber resubscribes by
 * itself (ACTIVE again, events flow). */
static void test_server_killed_and_restarted(void **state) {
  (void)state;
  rsrv_t r = {.extra = {NULL}};
  rsrv_start(&r, 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&r);
  evs_redis_conn_t *c, *sc;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sc), 0);
  call(&loop, c, &rs, "CONFIG SET notify-keyspace-events Kl");
  sub_ctx_t x = {0};
  evs_redis_sub_t *s;
  const char *chan = "__keyspace@0__:kill:l";
  assert_int_equal(evs_redis_subscribe(sc, chan, strlen(chan), &handlers, &x, &s), 0);
  assert_true(evs_test_run_until(&loop, &x.active, 10000));

  rs.n = 0;
  /* BLPOP blocks server-side: these are surely in flight when the server dies. */
  for (int i = 0; i < 5; i++)
    assert_int_equal(evs_redis_command(c, on_reply, &rs, "BLPOP kill:never 0"), 0);
  sleep_loop(&loop, 200);
  assert_int_equal(rs.n, 0);
  uint64_t t0 = uv_hrtime();
  rsrv_kill(&r);
  assert_true(wait_n(&loop, &rs, 5, 10000));
  assert_true((uv_hrtime() - t0) / 1000000 < 5000);
  for (int i = 0; i < 5; i++) {
    assert_true(rs.err[i] == EVS_ECLOSED || rs.err[i] == UV_ECONNRESET);
    assert_int_equal(rs.type[i], -1);
  }
  assert_true(evs_test_run_until(&loop, &x.down, 10000));
  assert_false(evs_redis_sub_active(s));

  /* While down: every attempt fails (refused, or synchronously during backoff). */
  sleep_loop(&loop, 400);
  int n0 = rs.n;
  int rc = evs_redis_command(c, on_reply, &rs, "LLEN kill:l");
  if (rc == 0) {
    assert_true(wait_n(&loop, &rs, n0 + 1, 10000));
    assert_int_equal(rs.err[n0], UV_ECONNREFUSED);
  } else {
    assert_true(rc == UV_ECONNREFUSED || rc == EVS_ECLOSED || rc == UV_ECONNRESET);
  }

  rsrv_start(&r, 0);
  /* Commands: the first one after the backoff delay reconnects. */
  int ok = 0;
  for (int tries = 0; tries < 100 && !ok; tries++) {
    n0 = rs.n;
    if (evs_redis_command(c, on_reply, &rs, "CONFIG SET notify-keyspace-events Kl") == 0) {
      assert_true(wait_n(&loop, &rs, n0 + 1, 10000));
      ok = rs.err[n0] == 0;
    }
    if (!ok)
      sleep_loop(&loop, 100);
  }
  assert_true(ok);
  /* Subscriber: resubscribed on its own. */
  assert_true(wait_ge(&loop, &x.active, 2, 10000));
  assert_true(evs_redis_sub_active(s));
  call(&loop, c, &rs, "LPUSH kill:l v");
  assert_true(evs_test_run_until(&loop, &x.messages, 10000));
  assert_string_equal(x.last_payload, "lpush");
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(sc, &st);
  assert_true(st.connects >= 2);
  assert_true(st.failures >= 1);
  evs_redis_unsubscribe(s);
  close_conn(&loop, c);
  close_conn(&loop, sc);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  rsrv_stop(&r);
}

/* DEBUG SLEEP holds the server: a request with a 300 ms timeout fails with EVS_ETIMEDOUT (and
 * its pipelined neighbour with it); once the server is back the connection recovers. */
static void test_slow_server(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs, slow;
  memset(&rs, 0, sizeof rs);
  memset(&slow, 0, sizeof slow);
  evs_redis_options_t o = opts_for(&shared);
  evs_redis_conn_t *sleeper, *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &sleeper), 0);
  o.request_timeout_ms = 300;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  call(&loop, c, &rs, "PING");
  rs.n = 0;
  /* The sleeper connects before it is timed: connected lazily by DEBUG SLEEP itself, its
   * resolve, connect and write had to fit in the 100 ms below, and on a slow machine the LLENs
   * reached the server first and were answered at once. */
  call(&loop, sleeper, &slow, "PING");
  slow.n = 0;
  assert_int_equal(evs_redis_command(sleeper, on_reply, &slow, "DEBUG SLEEP 2"), 0);
  sleep_loop(&loop, 100);
  uint64_t t0 = uv_hrtime();
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "LLEN slow:l"), 0);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "LLEN slow:m"), 0);
  assert_true(wait_n(&loop, &rs, 2, 10000));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_true(ms >= 250 && ms < 1800);
  assert_int_equal(rs.err[0], EVS_ETIMEDOUT);
  assert_int_equal(rs.err[1], EVS_ETIMEDOUT);
  assert_non_null(strstr(rs.msg[0], "timed out after 300 ms"));
  assert_true(wait_n(&loop, &slow, 1, 10000));
  assert_int_equal(slow.err[0], 0);
  /* Recovered: a new connection after the backoff delay. A PING that times out (300 ms is short
   * for a loaded machine under ASan: it happened once) fails its connection, and the next try
   * connects again: one connection more per PING that failed, no other. */
  int ok = 0, failed = 0;
  for (int tries = 0; tries < 50 && !ok; tries++) {
    int n0 = rs.n;
    if (evs_redis_command(c, on_reply, &rs, "PING") == 0) {
      assert_true(wait_n(&loop, &rs, n0 + 1, 10000));
      ok = rs.err[n0] == 0;
      failed += !ok;
    } else {
      sleep_loop(&loop, 50);
    }
  }
  assert_true(ok);
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(c, &st);
  assert_true(st.connects >= 2 && st.connects <= 2 + (uint64_t)failed);
  close_conn(&loop, sleeper);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

/* Closing with requests in flight (and queued while connecting) fails each once with
 * EVS_ECANCELED; closing from inside a reply callback cancels the rest once. */
static void test_close_in_flight(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&shared);
  evs_redis_conn_t *c;
  /* Queued while connecting. */
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), 0);
  close_conn(&loop, c);
  assert_int_equal(rs.n, 10);
  for (int i = 0; i < 10; i++)
    assert_int_equal(rs.err[i], EVS_ECANCELED);
  /* In flight on an open connection. */
  memset(&rs, 0, sizeof rs);
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  call(&loop, c, &rs, "PING");
  for (int i = 0; i < 20; i++)
    assert_int_equal(evs_redis_command(c, on_reply, &rs, "BLPOP close:never 0"), 0);
  sleep_loop(&loop, 100);
  assert_int_equal(rs.n, 1);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), 0);
  close_conn(&loop, c);
  assert_int_equal(rs.n, 22);
  for (int i = 1; i < 22; i++)
    assert_int_equal(rs.err[i], EVS_ECANCELED);
  /* From inside the 3rd reply of 10 pipelined ones. */
  memset(&rs, 0, sizeof rs);
  rs.close_at = 3;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), 0);
  assert_true(wait_n(&loop, &rs, 10, 10000));
  sleep_loop(&loop, 100);
  assert_int_equal(rs.n, 10);
  for (int i = 0; i < 3; i++)
    assert_int_equal(rs.err[i], 0);
  for (int i = 3; i < 10; i++)
    assert_int_equal(rs.err[i], EVS_ECANCELED);
  /* A subscriber closed with listeners attached frees them; no callback after close. */
  evs_redis_conn_t *sc;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sc), 0);
  sub_ctx_t x = {0};
  evs_redis_sub_t *s;
  assert_int_equal(evs_redis_subscribe(sc, "close:ch", 8, &handlers, &x, &s), 0);
  assert_true(evs_test_run_until(&loop, &x.active, 10000));
  close_conn(&loop, sc);
  assert_int_equal(x.down, 0);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_refused_and_backoff(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  rsrv_t none = {.port = free_port()};
  evs_redis_options_t o = opts_for(&none);
  o.backoff_initial_ms = 400;
  o.backoff_max_ms = 400;
  evs_redis_conn_t *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  int k = call(&loop, c, &rs, "PING");
  assert_int_equal(rs.err[k], UV_ECONNREFUSED);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), UV_ECONNREFUSED);
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(c, &st);
  assert_true(st.backoff_left_ms > 0);
  assert_int_equal(st.connects, 1);
  sleep_loop(&loop, 500);
  k = call(&loop, c, &rs, "PING");
  assert_int_equal(rs.err[k], UV_ECONNREFUSED);
  evs_redis_conn_stats(c, &st);
  assert_int_equal(st.connects, 2);
  /* A subscriber keeps retrying by itself while a channel is wanted. */
  evs_redis_conn_t *sc;
  o.backoff_initial_ms = 50;
  o.backoff_max_ms = 100;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sc), 0);
  sub_ctx_t x = {0};
  evs_redis_sub_t *s;
  assert_int_equal(evs_redis_subscribe(sc, "ch", 2, &handlers, &x, &s), 0);
  sleep_loop(&loop, 1000);
  evs_redis_conn_stats(sc, &st);
  assert_true(st.connects >= 3);
  assert_true(x.down >= 3);
  assert_int_equal(x.active, 0);
  close_conn(&loop, c);
  close_conn(&loop, sc);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_tls(void **state) {
  (void)state;
  rsrv_t r = {.extra = {NULL}};
  rsrv_start(&r, 1);
  evs_tls_options_t to = {.ca_file = evs_test_cert("ca.crt")};
  evs_tls_options_t wo = {.ca_file = evs_test_cert("wrong-ca.crt")};
  evs_tls_config_t *cfg, *wrong;
  assert_int_equal(evs_tls_config_new(&to, &cfg, NULL), 0);
  assert_int_equal(evs_tls_config_new(&wo, &wrong, NULL), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&r);
  o.tls = cfg;
  evs_redis_conn_t *c, *bad;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  call(&loop, c, &rs, "DEL tls:l");
  call(&loop, c, &rs, "RPUSH tls:l a b c d");
  int k = call(&loop, c, &rs, "LLEN tls:l");
  assert_int_equal(rs.err[k], 0);
  assert_int_equal(rs.integer[k], 4);
  assert_non_null(strstr(evs_redis_conn_describe(c), " tls"));
  o.tls = wrong;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &bad), 0);
  k = call(&loop, bad, &rs, "PING");
  assert_int_equal(rs.err[k], EVS_ECERT);
  close_conn(&loop, c);
  close_conn(&loop, bad);
  evs_tls_config_unref(cfg);
  evs_tls_config_unref(wrong);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  rsrv_stop(&r);
}

static void test_registry(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t defaults = {.request_timeout_ms = 7000};
  evs_redis_registry_t *reg;
  assert_int_equal(evs_redis_registry_new(&loop, &defaults, &reg), 0);
  evs_redis_options_t o = {.host = "127.0.0.1", .port = shared.port, .password = "pw-a"};
  evs_redis_conn_t *a1, *a2, *b, *d, *s1, *u;
  assert_int_equal(evs_redis_registry_acquire(reg, &o, EVS_REDIS_COMMANDS, &a1), 0);
  assert_int_equal(evs_redis_registry_acquire(reg, &o, EVS_REDIS_COMMANDS, &a2), 0);
  assert_ptr_equal(a1, a2);
  o.password = "pw-b";
  assert_int_equal(evs_redis_registry_acquire(reg, &o, EVS_REDIS_COMMANDS, &b), 0);
  assert_ptr_not_equal(a1, b);
  o.db = 1;
  assert_int_equal(evs_redis_registry_acquire(reg, &o, EVS_REDIS_COMMANDS, &d), 0);
  assert_ptr_not_equal(b, d);
  assert_int_equal(evs_redis_registry_acquire(reg, &o, EVS_REDIS_SUBSCRIBER, &s1), 0);
  assert_ptr_not_equal(d, s1);
  /* A user name that imitates a field boundary is still another identity. */
  o.username = "x|0|";
  assert_int_equal(evs_redis_registry_acquire(reg, &o, EVS_REDIS_COMMANDS, &u), 0);
  assert_ptr_not_equal(d, u);
  assert_int_equal(evs_redis_registry_size(reg), 5);
  assert_int_equal(evs_redis_conn_mode(s1), EVS_REDIS_SUBSCRIBER);
  /* The last reference closes: its requests are canceled. */
  o.password = NULL;
  o.username = NULL;
  o.db = 0;
  evs_redis_conn_t *p;
  assert_int_equal(evs_redis_registry_acquire(reg, &o, EVS_REDIS_COMMANDS, &p), 0);
  call(&loop, p, &rs, "PING");
  assert_int_equal(evs_redis_command(p, on_reply, &rs, "BLPOP reg:never 0"), 0);
  evs_redis_registry_release(reg, a1);
  assert_int_equal(evs_redis_registry_size(reg), 6);
  evs_redis_registry_release(reg, a2);
  assert_int_equal(evs_redis_registry_size(reg), 5);
  evs_redis_registry_release(reg, p);
  assert_int_equal(rs.n, 2);
  assert_int_equal(rs.err[1], EVS_ECANCELED);
  int closed = 0;
  evs_redis_registry_close(reg, on_closed_flag, &closed);
  assert_true(evs_test_run_until(&loop, &closed, 5000));
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

static void test_bad_args(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_redis_conn_t *c;
  evs_redis_options_t o = {.host = "127.0.0.1", .port = 0};
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), UV_EINVAL);
  o.port = 6379;
  o.db = -1;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), UV_EINVAL);
  o.db = 0;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &c), 0);
  static replies_t rs;
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), EVS_ESTATE);
  evs_redis_sub_t *s;
  assert_int_equal(evs_redis_subscribe(c, "", 0, &handlers, NULL, &s), UV_EINVAL);
  close_conn(&loop, c);
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  assert_int_equal(evs_redis_command(c, NULL, NULL, "PING"), UV_EINVAL);
  assert_int_equal(evs_redis_subscribe(c, "a", 1, &handlers, NULL, &s), EVS_ESTATE);
  /* max_requests outstanding: the next one is refused at once (and the others still run). */
  close_conn(&loop, c);
  o.port = shared.port;
  o.max_requests = 2;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  memset(&rs, 0, sizeof rs);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), 0);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), 0);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), UV_ENOBUFS);
  assert_true(wait_n(&loop, &rs, 2, 10000));
  assert_int_equal(rs.err[0], 0);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), 0);
  assert_true(wait_n(&loop, &rs, 3, 10000));
  assert_int_equal(evs_redis_error_code("NOPERM x", 8), UV_EPERM);
  assert_int_equal(evs_redis_error_code("WRONGPASS x", 11), UV_EACCES);
  assert_int_equal(evs_redis_error_code("NOAUTH x", 8), UV_EACCES);
  assert_int_equal(evs_redis_error_code("ERR x", 5), EVS_EREDIS);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

/* Hostile replies through the reply path (no socket): protocol errors and an oversized
 * multi-bulk header fail the connection instead of crashing or allocating gigabytes. */
static void test_hostile_replies(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = {.host = "127.0.0.1", .port = 6379, .max_reply_bytes = 1024};
  struct {
    const char *bytes;
    int err;
  } cases[] = {
      {":1\r\n:2\r\n", EVS_EPARSE},     /* a reply nobody asked for */
      {"*2147483647\r\n", EVS_ETOOBIG}, /* would be a 16 GiB vector */
      {"?what\r\n", EVS_EPARSE},        /* unknown type byte */
      {"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", EVS_EPARSE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    evs_redis_conn_t *c;
    assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
    evs_redis__test_attach(c);
    memset(&rs, 0, sizeof rs);
    assert_int_equal(evs_redis_command(c, on_reply, &rs, "PING"), 0);
    int rc = evs_redis__test_feed(c, cases[i].bytes, strlen(cases[i].bytes));
    assert_int_equal(rc, cases[i].err);
    if (cases[i].err == EVS_EPARSE && i == 0) {
      assert_int_equal(rs.n, 1); /* the first reply was PING's */
      assert_int_equal(rs.err[0], 0);
    } else {
      assert_int_equal(rs.n, 1);
      assert_int_equal(rs.err[0], cases[i].err);
    }
    close_conn(&loop, c);
  }
  /* A server that echoes the password in an error does not get it into our messages. */
  {
    evs_redis_options_t po = o;
    po.password = "hunter2";
    evs_redis_conn_t *pc;
    assert_int_equal(evs_redis_conn_new(&loop, &po, EVS_REDIS_COMMANDS, &pc), 0);
    evs_redis__test_attach(pc);
    memset(&rs, 0, sizeof rs);
    assert_int_equal(evs_redis_command(pc, on_reply, &rs, "PING"), 0);
    const char *echo = "-ERR hunter2 is wrong, hunter2hunter2\r\n";
    assert_int_equal(evs_redis__test_feed(pc, echo, strlen(echo)), 0);
    assert_int_equal(rs.err[0], EVS_EREDIS);
    assert_null(strstr(rs.msg[0], "hunter"));
    assert_non_null(strstr(rs.msg[0], "ERR *** is wrong, ******"));
    close_conn(&loop, pc);
  }
  /* A bulk string longer than max_reply_bytes stops buffering. */
  evs_redis_conn_t *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  evs_redis__test_attach(c);
  memset(&rs, 0, sizeof rs);
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "GET x"), 0);
  char big[2048];
  memset(big, 'a', sizeof big);
  memcpy(big, "$100000\r\n", 9);
  assert_int_equal(evs_redis__test_feed(c, big, sizeof big), EVS_ETOOBIG);
  assert_int_equal(rs.err[0], EVS_ETOOBIG);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

/* A frozen server (SIGSTOP: a partition as the client sees it) is noticed on a silent
 * subscriber by its PING; after SIGCONT it resubscribes. */
static void test_subscriber_ping_detects_frozen_server(void **state) {
  (void)state;
  rsrv_t r = {.extra = {NULL}};
  rsrv_start(&r, 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  evs_redis_options_t o = opts_for(&r);
  o.ping_interval_ms = 200;
  o.request_timeout_ms = 400;
  evs_redis_conn_t *sc;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &sc), 0);
  sub_ctx_t x = {0};
  evs_redis_sub_t *s;
  assert_int_equal(evs_redis_subscribe(sc, "frozen", 6, &handlers, &x, &s), 0);
  assert_true(evs_test_run_until(&loop, &x.active, 10000));
  sleep_loop(&loop, 500); /* PINGs answered: still active, no DOWN */
  assert_int_equal(x.down, 0);
  kill(r.pid, SIGSTOP);
  assert_true(evs_test_run_until(&loop, &x.down, 5000));
  assert_false(evs_redis_sub_active(s));
  kill(r.pid, SIGCONT);
  assert_true(wait_ge(&loop, &x.active, 2, 10000));
  assert_true(evs_redis_sub_active(s));
  evs_redis_unsubscribe(s);
  close_conn(&loop, sc);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  rsrv_stop(&r);
}

/* The server closing an idle connection (its `timeout` setting) is no failure: the next
 * command reconnects at once instead of failing during a backoff. */
static void test_idle_close_is_not_a_failure(void **state) {
  (void)state;
  rsrv_t r = {.extra = {"--timeout", "1", NULL}};
  rsrv_start(&r, 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&r);
  o.backoff_initial_ms = 5000;
  o.backoff_max_ms = 5000;
  evs_redis_conn_t *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  int k = call(&loop, c, &rs, "PING");
  assert_int_equal(rs.err[k], 0);
  evs_redis_conn_stats_t st;
  uint64_t t0 = uv_hrtime();
  do {
    sleep_loop(&loop, 100);
    evs_redis_conn_stats(c, &st);
  } while (st.connected && (uv_hrtime() - t0) / 1000000 < 10000);
  assert_false(st.connected);
  k = call(&loop, c, &rs, "PING");
  assert_int_equal(rs.err[k], 0);
  evs_redis_conn_stats(c, &st);
  assert_int_equal(st.connects, 2);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
  rsrv_stop(&r);
}

/* --- waiting for the connection without a request ----------------------------------------- */

typedef struct {
  evs_redis_waiter_t w;
  int told, err;
  char msg[256];
  replies_t *rs; /* when set: sends GET wq:k from the callback */
} waiter_t;

static void on_waited(evs_redis_conn_t *c, int err, const char *msg, evs_redis_waiter_t *w) {
  waiter_t *x = evs_container_of(w, waiter_t, w);
  x->told++;
  x->err = err;
  snprintf(x->msg, sizeof x->msg, "%s", msg ? msg : "");
  assert_true(err == 0 ? msg == NULL : msg != NULL);
  if (err == 0 && x->rs != NULL)
    assert_int_equal(evs_redis_command(c, on_reply, x->rs, "GET wq:k"), 0);
}

/* Waiters cost no request while the connection comes up; when it is up each is told once, in
 * order, after what was queued before them (a SET queued first is seen by the GET a waiter
 * sends); a cancelled waiter is never told; once up, wait answers 1 at once. */
static void test_waiters_up(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static replies_t rs;
  memset(&rs, 0, sizeof rs);
  evs_redis_options_t o = opts_for(&shared);
  evs_redis_conn_t *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  static waiter_t a, b, x;
  memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&x, 0, sizeof x);
  a.rs = &rs;
  assert_int_equal(evs_redis_conn_wait(c, &a.w, on_waited), 0); /* connects */
  assert_int_equal(evs_redis_command(c, on_reply, &rs, "SET wq:k v1"), 0);
  assert_int_equal(evs_redis_conn_wait(c, &x.w, on_waited), 0);
  assert_int_equal(evs_redis_conn_wait(c, &b.w, on_waited), 0);
  evs_redis_conn_wait_cancel(c, &x.w);
  evs_redis_conn_wait_cancel(c, &x.w); /* twice: nothing */
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(c, &st);
  assert_int_equal(st.waiters, 2);
  assert_int_equal(st.outstanding, 3); /* the SET and two waiters */
  assert_int_equal(st.connects, 1);
  assert_int_equal(a.told + b.told, 0); /* never from inside the call */
  assert_true(wait_n(&loop, &rs, 2, 20000));
  assert_int_equal(a.told, 1);
  assert_int_equal(a.err, 0);
  assert_int_equal(b.told, 1);
  assert_int_equal(x.told, 0);
  assert_int_equal(rs.err[0], 0); /* SET */
  assert_int_equal(rs.err[1], 0);
  assert_string_equal(rs.str[1], "v1"); /* the waiter's GET came after it */
  evs_redis_conn_stats(c, &st);
  assert_int_equal(st.waiters, 0);
  assert_int_equal(evs_redis_conn_wait(c, &x.w, on_waited), 1); /* up: send now */
  assert_int_equal(evs_redis_conn_ready(c), 1);
  sleep_loop(&loop, 50);
  assert_int_equal(x.told, 0);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

/* A command connection that fails tells its waiters the error its requests get (message naming
 * the server), then answers synchronously during backoff; closing tells them EVS_ECANCELED. A
 * subscriber's waiters wait on across failures. */
static void test_waiters_fail_and_close(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  rsrv_t none = {.port = free_port()};
  evs_redis_options_t o = opts_for(&none);
  o.backoff_initial_ms = 400;
  o.backoff_max_ms = 400;
  evs_redis_conn_t *c;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c), 0);
  static waiter_t a, b;
  memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
  assert_int_equal(evs_redis_conn_wait(c, &a.w, on_waited), 0);
  assert_int_equal(evs_redis_conn_wait(c, &b.w, on_waited), 0);
  assert_true(wait_ge(&loop, &b.told, 1, 10000));
  assert_int_equal(a.told, 1);
  assert_int_equal(a.err, UV_ECONNREFUSED);
  assert_int_equal(b.err, UV_ECONNREFUSED);
  char hp[64];
  snprintf(hp, sizeof hp, "127.0.0.1:%d", none.port);
  assert_non_null(strstr(a.msg, hp));
  assert_int_equal(evs_redis_conn_wait(c, &a.w, on_waited), UV_ECONNREFUSED); /* backoff */
  assert_int_equal(evs_redis_conn_ready(c), 0);
  sleep_loop(&loop, 500);
  assert_int_equal(evs_redis_conn_wait(c, &a.w, on_waited), 0); /* connecting again */
  int closed = 0;
  evs_redis_conn_close(c, on_closed_flag, &closed);
  assert_int_equal(a.told, 2);
  assert_int_equal(a.err, EVS_ECANCELED);
  assert_true(evs_test_run_until(&loop, &closed, 5000));
  assert_int_equal(evs_test_loop_close(&loop), 0);
  /* A subscriber's waiter waits across failures (the connection retries for it, as for a
   * channel) and is told only when it is up, or closed. */
  uv_loop_init(&loop);
  o.backoff_initial_ms = 50;
  o.backoff_max_ms = 100;
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &c), 0);
  assert_int_equal(evs_redis_conn_wait(c, &a.w, NULL), UV_EINVAL);
  a.told = 0;
  assert_int_equal(evs_redis_conn_wait(c, &a.w, on_waited), 0);
  sleep_loop(&loop, 800);
  evs_redis_conn_stats_t st;
  evs_redis_conn_stats(c, &st);
  assert_true(st.connects >= 3);
  assert_int_equal(st.waiters, 1);
  assert_int_equal(a.told, 0);
  closed = 0;
  evs_redis_conn_close(c, on_closed_flag, &closed);
  assert_int_equal(a.told, 1);
  assert_int_equal(a.err, EVS_ECANCELED);
  assert_true(evs_test_run_until(&loop, &closed, 5000));
  assert_int_equal(evs_test_loop_close(&loop), 0);
  /* ... and on a live server it is told once it is up, then a subscription becomes active. */
  uv_loop_init(&loop);
  o = opts_for(&shared);
  assert_int_equal(evs_redis_conn_new(&loop, &o, EVS_REDIS_SUBSCRIBER, &c), 0);
  memset(&a, 0, sizeof a);
  assert_int_equal(evs_redis_conn_wait(c, &a.w, on_waited), 0);
  assert_true(wait_ge(&loop, &a.told, 1, 10000));
  assert_int_equal(a.err, 0);
  assert_int_equal(evs_redis_conn_ready(c), 1);
  assert_int_equal(evs_redis_conn_wait(c, &b.w, on_waited), 1);
  close_conn(&loop, c);
  assert_int_equal(evs_test_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_args),
      cmocka_unit_test(test_hostile_replies),
      cmocka_unit_test(test_key_types),
      cmocka_unit_test(test_pipeline_1000),
      cmocka_unit_test(test_select_db),
      cmocka_unit_test(test_keyspace_events),
      cmocka_unit_test(test_slow_server),
      cmocka_unit_test(test_close_in_flight),
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_requirepass),
      cmocka_unit_test(test_acl_users),
      cmocka_unit_test(test_server_killed_and_restarted),
      cmocka_unit_test(test_refused_and_backoff),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_subscriber_ping_detects_frozen_server),
      cmocka_unit_test(test_idle_close_is_not_a_failure),
      cmocka_unit_test(test_waiters_up),
      cmocka_unit_test(test_waiters_fail_and_close),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
