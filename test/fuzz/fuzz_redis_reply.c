/* libFuzzer target: arbitrary bytes as what a Redis server sends, through the connection's real
 * reply path (hiredis reader, FIFO matching, pub/sub dispatch, connection failure), without a
 * socket (evs_redis__test_attach / evs_redis__test_feed).
 *
 * Byte 0: bit 0 subscriber mode; bits 1-5 how many requests are in flight (commands: PINGs;
 * subscriber: listeners on a few channels, each sending its SUBSCRIBE); bit 6 a listener
 * unsubscribes itself when it becomes active (an UNSUBSCRIBE joins the FIFO); bit 7 the second
 * callback closes the connection from inside. In command mode every third request asks for the
 * server's keyspace flags (evs_redis_keyspace_flags: one CONFIG GET, the later askers wait for
 * it) instead of a PING. Byte 1 is the feed step, so replies are also seen
 * cut at every boundary. Invariants: every command's callback runs exactly once, none after
 * close; the connection frees itself (ASan/LSan check the rest). Seeds: real replies captured
 * with tools/redis_corpus.py. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/redis_conn.h"

#define MAXREQ 32

typedef struct {
  evs_redis_conn_t *c;
  int calls[MAXREQ];
  int ncb, close_at, unsub_on_active, closed;
  evs_redis_sub_t *subs[MAXREQ];
} run_t;

static void on_reply(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r,
                     void *arg) {
  run_t *run = (run_t *)((char **)arg)[0];
  int *slot = (int *)((char **)arg)[1];
  (*slot)++;
  if ((err == 0) != (msg == NULL) || (err == 0 && r == NULL))
    abort();
  if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0] == NULL)
    abort();
  if (++run->ncb == run->close_at)
    evs_redis_conn_close(c, NULL, NULL);
}

static void on_flags(evs_redis_conn_t *c, int err, const char *flags, void *arg) {
  run_t *run = (run_t *)((char **)arg)[0];
  int *slot = (int *)((char **)arg)[1];
  (*slot)++;
  if ((err == 0) != (flags != NULL))
    abort();
  if (++run->ncb == run->close_at)
    evs_redis_conn_close(c, NULL, NULL);
}

static void on_msg(evs_redis_sub_t *s, const char *payload, size_t len, void *arg) {
  run_t *run = arg;
  (void)s;
  if (len > 0 && payload == NULL)
    abort();
  if (++run->ncb == run->close_at)
    evs_redis_conn_close(run->c, NULL, NULL);
}

static void on_state(evs_redis_sub_t *s, evs_redis_sub_state_t st, int err, const char *msg,
                     void *arg) {
  run_t *run = arg;
  if ((st == EVS_REDIS_SUB_ACTIVE) != (err == 0) || (err != 0 && msg == NULL))
    abort();
  if (st == EVS_REDIS_SUB_ACTIVE && run->unsub_on_active) {
    for (int i = 0; i < MAXREQ; i++)
      if (run->subs[i] == s) {
        evs_redis_unsubscribe(s);
        run->subs[i] = NULL;
      }
  }
  if (++run->ncb == run->close_at)
    evs_redis_conn_close(run->c, NULL, NULL);
}

static void on_closed(void *arg) { ((run_t *)arg)->closed = 1; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uv_loop_t loop;
  static int inited;
  if (!inited) {
    uv_loop_init(&loop);
    inited = 1;
  }
  if (size < 2)
    return 0;
  static const char *chans[] = {"a", "__keyspace@0__:l", "__keyspace@0__:z", "__keyspace@0__:s"};
  int sub = data[0] & 1, n = (data[0] >> 1) & 31;
  size_t step = data[1] ? data[1] : size;
  run_t run = {.close_at = (data[0] & 0x80) ? 2 : -1, .unsub_on_active = (data[0] >> 6) & 1};
  char *args[MAXREQ][2];
  evs_redis_options_t o = {.host = "127.0.0.1", .port = 6379, .max_reply_bytes = 4096};
  if (evs_redis_conn_new(&loop, &o, sub ? EVS_REDIS_SUBSCRIBER : EVS_REDIS_COMMANDS, &run.c) != 0)
    abort();
  evs_redis__test_attach(run.c);
  static const evs_redis_sub_handlers_t h = {.on_message = on_msg, .on_state = on_state};
  for (int i = 0; i < n; i++) {
    args[i][0] = (char *)&run;
    args[i][1] = (char *)&run.calls[i];
    int rc;
    if (sub) {
      rc = evs_redis_subscribe(run.c, chans[i % 4], strlen(chans[i % 4]), &h, &run, &run.subs[i]);
    } else if (i % 3 == 2) {
      evs_redis_flags_req_t *q;
      const char *flags;
      int ferr;
      rc = evs_redis_keyspace_flags(run.c, on_flags, args[i], &q, &flags, &ferr);
    } else {
      rc = evs_redis_command(run.c, on_reply, args[i], "PING");
    }
    if (rc != 0)
      abort();
  }
  data += 2;
  size -= 2;
  for (size_t off = 0; off < size; off += step) {
    size_t k = size - off < step ? size - off : step;
    if (evs_redis__test_feed(run.c, (const char *)data + off, k) != 0)
      break; /* failed or closed: the connection is no longer attached */
  }
  evs_redis_conn_close(run.c, on_closed, &run);
  for (int i = 0; i < 1000 && !run.closed; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  if (!run.closed)
    abort();
  if (!sub)
    for (int i = 0; i < n; i++)
      if (run.calls[i] != 1)
        abort();
  return 0;
}
