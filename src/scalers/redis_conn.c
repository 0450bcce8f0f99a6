/* Redis connections: hiredis's reader and formatter over evs_stream. See evscale/redis_conn.h.
 *
 * A connection object outlives its TCP connections: `stream` is the current one (NULL while idle
 * or backing off), and `gen` changes whenever the current connection fails or the object
 * closes, so a loop delivering replies stops as soon as a callback changed the world.
 * Requests wait in one FIFO: those written to the stream come first, in the order their replies
 * will arrive, then those waiting for the connection. Internal requests (AUTH, SELECT,
 * SUBSCRIBE, UNSUBSCRIBE, PING) travel in the same FIFO, so every reply has one owner.
 *
 * Callers waiting for the connection (evs_redis_conn_wait) are an intrusive list of their own
 * (`waiters`), not requests: a trigger waiting for a server that is down costs the connection
 * nothing (issue 13); their commands are formatted and queued when the connection is up, with
 * the deadline the first waiter started (so the request timeout still covers the connect).
 *
 * Handles: `deadline` (the oldest request's or waiter's deadline; also runs deferred failures),
 * `aux` (subscriber: PING interval while connected, reconnect after backoff) and `flush` (sends the
 * commands of one loop iteration in one write). The object is freed once all three are closed
 * and no stream it started is still closing (`streams`). */
#include "evscale/redis_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/backoff.h"
#include "evscale/error.h"
#include "evscale/list.h"
#include "evscale/log.h"
#include "evscale/stream.h"

/* A multi-bulk header may declare up to INT_MAX elements and hiredis 0.14 allocates the element
 * vector before any element arrives (16 GiB for one hostile header); replies evscale asks for
 * are a handful of elements, so anything above this is refused as out of memory. */
#define EVS__MAX_ELEMENTS (1 << 20)

enum { K_USER, K_AUTH, K_SELECT, K_SUB, K_UNSUB, K_PING };
enum { S_IDLE, S_CONNECTING, S_READY, S_BACKOFF };
enum { KS_NONE, KS_ASKING, KS_KNOWN };

struct evs_redis_flags_req_s {
  evs_list_t link; /* in c->ks_waiters, or in the list being answered */
  evs_redis_flags_cb cb;
  void *arg;
};

typedef struct chan_s chan_t;

typedef struct req_s {
  struct req_s *next;
  int kind;
  int written;
  uint64_t deadline;
  evs_redis_reply_cb cb;
  void *arg;
  chan_t *ch;
  char *cmd; /* formatted by hiredis (free()), until written */
  size_t len;
} req_t;

struct evs_redis_sub_s {
  evs_redis_sub_t *next;
  evs_redis_conn_t *c;
  chan_t *ch;
  evs_redis_sub_handlers_t h;
  void *arg;
  int dead, active;
};

struct chan_s {
  chan_t *hnext;
  evs_redis_sub_t *listeners; /* live and dead (dead ones are swept outside dispatch) */
  size_t live;
  int reqs; /* SUBSCRIBE/UNSUBSCRIBE requests referring to it */
  uint64_t hash;
  size_t len;
  char name[];
};

struct evs_redis_conn_s {
  uv_loop_t *loop;
  evs_redis_mode_t mode;
  char *host, *user, *pass;
  int port, db;
  evs_tls_config_t *tls;
  uint64_t connect_timeout, request_timeout, ping_interval;
  size_t max_requests, max_reply_bytes;
  char desc[320];

  int state, closing, connected, setup_left;
  uint64_t gen;
  evs_stream_t *stream;
  int streams; /* streams started and not yet freed */
  redisReader *reader;

  req_t *head, *tail;
  size_t nreqs;
  evs_list_t waiters; /* evs_redis_waiter_t, while connecting */
  size_t nwaiters;
  uint64_t wait_deadline; /* of the first waiter: now + request_timeout when it joined */
  uint64_t append_cap;    /* while waiters are told: their requests keep wait_deadline */
  char *obuf; /* commands written in this loop iteration, sent by `flush` before the poll */
  size_t olen, ocap;
  uv_timer_t deadline, aux;
  uv_prepare_t flush;
  int handles;
  int deferred_err;

  evs_backoff_t backoff;
  uint64_t retry_at, rng;
  int last_err;
  char last_msg[512];

  chan_t **buckets;
  size_t nbuckets, nchans, live_chans;
  int dispatching, sweep;

  uint64_t n_connects, n_failures, n_replies, n_messages;
  void (*close_cb)(void *arg);
  void *close_arg;

  /* The server's notify-keyspace-events (evs_redis_keyspace_flags): asked once per connection.
   * ks_gen is the `gen` of the connection that answered; waiters wait for the one question. */
  int ks_state; /* KS_NONE, KS_ASKING, KS_KNOWN */
  uint64_t ks_gen;
  int ks_err;
  char *ks_flags;
  evs_list_t ks_waiters;
  uint64_t n_ks_asked;

  /* Registry membership. */
  evs_redis_registry_t *reg;
  evs_redis_conn_t *rnext;
  char *key;
  size_t refs;
};

static void conn_fail(evs_redis_conn_t *c, int err, const char *why);
static void start_aux(evs_redis_conn_t *c, uint64_t ms);
static void maybe_free(evs_redis_conn_t *c);
static void on_deadline(uv_timer_t *t);

/* --- hiredis reader ------------------------------------------------------------------------ */

static redisReplyObjectFunctions reader_fns;
static void *(*default_create_array)(const redisReadTask *, int);

static void *create_array(const redisReadTask *t, int elements) {
  if (elements > EVS__MAX_ELEMENTS)
    return NULL; /* the reader reports it as REDIS_ERR_OOM */
  return default_create_array(t, elements);
}

static redisReader *reader_new(void) {
  redisReader *r = redisReaderCreate();
  if (r == NULL)
    return NULL;
  if (default_create_array == NULL) {
    reader_fns = *r->fn;
    default_create_array = reader_fns.createArray;
    reader_fns.createArray = create_array;
  }
  r->fn = &reader_fns;
  return r;
}

/* --- small helpers ------------------------------------------------------------------------- */

static uint64_t fnv(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static double rand_unit(evs_redis_conn_t *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return (double)(c->rng >> 11) / (double)(1ull << 53);
}

/* Replaces every occurrence of the password in buf by "***": a hostile or odd server must not
 * be able to make us log it by echoing it in an error. */
static void scrub(const evs_redis_conn_t *c, char *buf) {
  size_t pl = c->pass != NULL ? strlen(c->pass) : 0;
  if (pl == 0)
    return;
  for (char *p = strstr(buf, c->pass); p != NULL; p = strstr(p, c->pass)) {
    size_t k = pl < 3 ? pl : 3;
    memcpy(p, "***", k);
    memmove(p + k, p + pl, strlen(p + pl) + 1);
    p += k;
  }
}

/* "redis <desc>: <what>", scrubbed, into buf. */
static const char *fmt_msg(const evs_redis_conn_t *c, char *buf, size_t cap, const char *what,
                           size_t what_len) {
  int n = snprintf(buf, cap, "redis %s: %.*s", c->desc, (int)what_len, what);
  if (n < 0)
    buf[0] = '\0';
  for (char *p = buf; *p != '\0'; p++)
    if (*p == '\r' || *p == '\n')
      *p = ' ';
  scrub(c, buf);
  return buf;
}

int evs_redis_error_code(const char *str, size_t len) {
  if (len >= 6 && memcmp(str, "NOPERM", 6) == 0)
    return UV_EPERM;
  if ((len >= 6 && memcmp(str, "NOAUTH", 6) == 0) || (len >= 9 && memcmp(str, "WRONGPASS", 9) == 0))
    return UV_EACCES;
  return EVS_EREDIS;
}

static int is_str(const redisReply *r) {
  return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int str_eq(const redisReply *r, const char *s, size_t n) {
  return is_str(r) && (size_t)r->len == n && memcmp(r->str, s, n) == 0;
}

/* --- channels ------------------------------------------------------------------------------ */

static chan_t *chan_find(evs_redis_conn_t *c, const char *name, size_t len, uint64_t h) {
  if (c->nbuckets == 0)
    return NULL;
  for (chan_t *ch = c->buckets[h & (c->nbuckets - 1)]; ch != NULL; ch = ch->hnext)
    if (ch->hash == h && ch->len == len && memcmp(ch->name, name, len) == 0)
      return ch;
  return NULL;
}

/* Grows the table; never while listeners are being notified (they iterate it). */
static void chan_grow(evs_redis_conn_t *c) {
  if ((c->dispatching > 0 && c->nbuckets > 0) || c->nchans < c->nbuckets)
    return;
  size_t nb = c->nbuckets ? c->nbuckets * 2 : 16;
  chan_t **b = calloc(nb, sizeof *b);
  if (b == NULL)
    return; /* a longer chain is still correct */
  for (size_t i = 0; i < c->nbuckets; i++)
    for (chan_t *ch = c->buckets[i], *next; ch != NULL; ch = next) {
      next = ch->hnext;
      ch->hnext = b[ch->hash & (nb - 1)];
      b[ch->hash & (nb - 1)] = ch;
    }
  free(c->buckets);
  c->buckets = b;
  c->nbuckets = nb;
}

static chan_t *chan_get(evs_redis_conn_t *c, const char *name, size_t len) {
  uint64_t h = fnv(name, len);
  chan_t *ch = chan_find(c, name, len, h);
  if (ch != NULL)
    return ch;
  chan_grow(c);
  if (c->nbuckets == 0 || (ch = calloc(1, sizeof *ch + len + 1)) == NULL)
    return NULL;
  ch->hash = h;
  ch->len = len;
  memcpy(ch->name, name, len);
  ch->hnext = c->buckets[h & (c->nbuckets - 1)];
  c->buckets[h & (c->nbuckets - 1)] = ch;
  c->nchans++;
  return ch;
}

/* Frees a channel nobody refers to any more. */
static void chan_release(evs_redis_conn_t *c, chan_t *ch) {
  if (ch->listeners != NULL || ch->reqs > 0)
    return;
  if (c->dispatching > 0) {
    c->sweep = 1; /* a dispatch may be iterating this channel: sweep() frees it later */
    return;
  }
  chan_t **pp = &c->buckets[ch->hash & (c->nbuckets - 1)];
  while (*pp != ch)
    pp = &(*pp)->hnext;
  *pp = ch->hnext;
  c->nchans--;
  free(ch);
}

/* Unlinks dead listeners and frees unused channels, once no dispatch is iterating. */
static void sweep(evs_redis_conn_t *c) {
  if (!c->sweep || c->dispatching > 0)
    return;
  c->sweep = 0;
  for (size_t i = 0; i < c->nbuckets; i++)
    for (chan_t *ch = c->buckets[i], *next; ch != NULL; ch = next) {
      next = ch->hnext;
      for (evs_redis_sub_t **pp = &ch->listeners; *pp != NULL;) {
        evs_redis_sub_t *l = *pp;
        if (l->dead) {
          *pp = l->next;
          free(l);
        } else {
          pp = &l->next;
        }
      }
      chan_release(c, ch);
    }
}

/* --- requests ------------------------------------------------------------------------------ */

/* The oldest request's deadline, or the first waiter's if earlier; 0: none. */
static uint64_t earliest_deadline(const evs_redis_conn_t *c) {
  uint64_t dl = c->head != NULL ? c->head->deadline : 0;
  if (c->nwaiters > 0 && c->mode == EVS_REDIS_COMMANDS && (dl == 0 || c->wait_deadline < dl))
    dl = c->wait_deadline;
  return dl;
}

static void arm_deadline(evs_redis_conn_t *c) {
  if (c->closing)
    return;
  if (c->deferred_err != 0) {
    uv_timer_start(&c->deadline, on_deadline, 0, 0);
    return;
  }
  uint64_t dl = earliest_deadline(c);
  if (dl == 0) {
    uv_timer_stop(&c->deadline);
    return;
  }
  uint64_t now = uv_now(c->loop);
  uint64_t due = dl > now ? dl - now : 0;
  uv_timer_start(&c->deadline, on_deadline, due, 0);
}

/* A write that fails is turned into a connection failure on the next loop iteration: failing
 * now would run callbacks inside the caller's evs_redis_command. */
static void defer_fail(evs_redis_conn_t *c, int err) {
  if (c->deferred_err == 0) {
    c->deferred_err = err;
    uv_timer_start(&c->deadline, on_deadline, 0, 0);
  }
}

static void flush_out(evs_redis_conn_t *c) {
  uv_prepare_stop(&c->flush);
  if (c->olen == 0 || c->stream == NULL) {
    c->olen = 0;
    return;
  }
  int rc = evs_stream_write(c->stream, c->obuf, c->olen, NULL, NULL);
  c->olen = 0;
  if (rc != 0)
    defer_fail(c, rc);
}

static void on_flush(uv_prepare_t *p) { flush_out(p->data); }

/* Commands issued during one loop iteration leave in one write, just before the loop polls
 * (uv_prepare): one system call (and one TLS record) for a burst instead of one per command,
 * at no added latency. A large burst is flushed as it grows. */
static void write_bytes(evs_redis_conn_t *c, const char *buf, size_t len) {
  if (c->stream == NULL)
    return; /* evs_redis__test_attach: nothing to write to */
  if (c->olen + len > c->ocap) {
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + len)
      cap *= 2;
    char *nb = realloc(c->obuf, cap);
    if (nb == NULL) {
      defer_fail(c, UV_ENOMEM);
      return;
    }
    c->obuf = nb;
    c->ocap = cap;
  }
  memcpy(c->obuf + c->olen, buf, len);
  c->olen += len;
  if (c->olen >= 256 * 1024)
    flush_out(c);
  else
    uv_prepare_start(&c->flush, on_flush);
}

static void req_write(evs_redis_conn_t *c, req_t *q) {
  write_bytes(c, q->cmd, q->len);
  free(q->cmd);
  q->cmd = NULL;
  q->written = 1;
}

static void req_append(evs_redis_conn_t *c, req_t *q) {
  q->deadline = uv_now(c->loop) + c->request_timeout;
  if (c->append_cap != 0 && c->append_cap < q->deadline)
    q->deadline = c->append_cap;
  int was_empty = c->head == NULL;
  if (c->tail != NULL)
    c->tail->next = q;
  else
    c->head = q;
  c->tail = q;
  c->nreqs++;
  if (q->ch != NULL)
    q->ch->reqs++;
  if (c->state == S_READY)
    req_write(c, q);
  if (was_empty)
    arm_deadline(c);
}

static req_t *req_new(int kind, char *cmd, int len) {
  req_t *q = calloc(1, sizeof *q);
  if (q == NULL) {
    free(cmd);
    return NULL;
  }
  q->kind = kind;
  q->cmd = cmd;
  q->len = (size_t)len;
  return q;
}

/* Sends an internal command of kind; ch may be NULL. 0 or UV_ENOMEM. */
static int send_internal(evs_redis_conn_t *c, int kind, chan_t *ch, int argc, const char **argv,
                         const size_t *argvlen) {
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  if (len < 0)
    return UV_ENOMEM;
  req_t *q = req_new(kind, cmd, len);
  if (q == NULL)
    return UV_ENOMEM;
  q->ch = ch;
  req_append(c, q);
  return 0;
}

static int send_sub(evs_redis_conn_t *c, chan_t *ch, int kind) {
  const char *argv[2] = {kind == K_SUB ? "SUBSCRIBE" : "UNSUBSCRIBE", ch->name};
  size_t argvlen[2] = {strlen(argv[0]), ch->len};
  return send_internal(c, kind, ch, 2, argv, argvlen);
}

/* Runs the callback of a request taken off the FIFO and frees it. */
static void req_finish(evs_redis_conn_t *c, req_t *q, int err, const char *msg,
                       const redisReply *reply) {
  if (q->ch != NULL)
    q->ch->reqs--;
  if (q->kind == K_USER && q->cb != NULL)
    q->cb(c, err, msg, reply, q->arg);
  if (q->ch != NULL)
    chan_release(c, q->ch);
  free(q->cmd);
  free(q);
}

static req_t *detach_all(evs_redis_conn_t *c) {
  req_t *list = c->head;
  c->head = c->tail = NULL;
  c->nreqs = 0;
  return list;
}

static void fail_list(evs_redis_conn_t *c, req_t *list, int err, const char *msg) {
  c->dispatching++;
  while (list != NULL) {
    req_t *q = list;
    list = q->next;
    req_finish(c, q, err, msg, NULL);
  }
  c->dispatching--;
}

/* --- listeners ----------------------------------------------------------------------------- */

/* Calls on_state for the listeners of ch (all of them, or only the not yet active ones). */
static void notify_chan(evs_redis_conn_t *c, chan_t *ch, evs_redis_sub_state_t st, int err,
                        const char *msg, int only_inactive) {
  uint64_t gen = c->gen;
  c->dispatching++;
  for (evs_redis_sub_t *l = ch->listeners; l != NULL && !c->closing && c->gen == gen; l = l->next) {
    if (l->dead || (only_inactive && l->active))
      continue;
    l->active = st == EVS_REDIS_SUB_ACTIVE;
    if (l->h.on_state != NULL)
      l->h.on_state(l, st, err, msg, l->arg);
  }
  c->dispatching--;
}

static void notify_down(evs_redis_conn_t *c, int err, const char *msg) {
  c->dispatching++;
  for (size_t i = 0; i < c->nbuckets && !c->closing; i++)
    for (chan_t *ch = c->buckets[i]; ch != NULL && !c->closing; ch = ch->hnext)
      for (evs_redis_sub_t *l = ch->listeners; l != NULL && !c->closing; l = l->next) {
        if (l->dead)
          continue;
        l->active = 0;
        if (l->h.on_state != NULL)
          l->h.on_state(l, EVS_REDIS_SUB_DOWN, err, msg, l->arg);
      }
  c->dispatching--;
}

static void deliver_message(evs_redis_conn_t *c, const redisReply *r) {
  c->n_messages++;
  const redisReply *chr = r->element[1], *pay = r->element[2];
  chan_t *ch = chan_find(c, chr->str, (size_t)chr->len, fnv(chr->str, (size_t)chr->len));
  if (ch == NULL)
    return; /* a late message for a channel already given up */
  uint64_t gen = c->gen;
  c->dispatching++;
  for (evs_redis_sub_t *l = ch->listeners; l != NULL && !c->closing && c->gen == gen; l = l->next)
    if (!l->dead && l->h.on_message != NULL)
      l->h.on_message(l, pay->str, (size_t)pay->len, l->arg);
  c->dispatching--;
}

/* --- waiters -------------------------------------------------------------------------------- */

/* Tells the waiters the outcome, one at a time (a callback may cancel another waiter, or close
 * the connection). err 0: the connection is up; a waiter joining meanwhile is told at once by
 * evs_redis_conn_wait itself, so the list only shrinks while the state holds. */
static void tell_waiters(evs_redis_conn_t *c, int err, const char *msg) {
  if (err == 0)
    c->append_cap = c->wait_deadline;
  while (c->nwaiters > 0 && (err != 0 || (c->state == S_READY && !c->closing))) {
    evs_redis_waiter_t *w = evs_container_of(c->waiters.next, evs_redis_waiter_t, link);
    evs_list_remove(&w->link);
    evs_list_init(&w->link);
    c->nwaiters--;
    w->cb(c, err, msg, w);
  }
  c->append_cap = 0;
}

/* --- connection lifecycle ------------------------------------------------------------------ */

static void on_stream_closed(evs_stream_t *s) {
  evs_redis_conn_t *c = evs_stream_data(s);
  c->streams--;
  maybe_free(c);
}

static void drop_stream(evs_redis_conn_t *c) {
  c->olen = 0;
  uv_prepare_stop(&c->flush);
  if (c->ocap > 64 * 1024) {
    free(c->obuf); /* do not keep a burst's buffer for an idle connection */
    c->obuf = NULL;
    c->ocap = 0;
  }
  if (c->stream != NULL) {
    evs_stream_t *s = c->stream;
    c->stream = NULL;
    evs_stream_close(s, on_stream_closed);
  }
}

static void set_last(evs_redis_conn_t *c, int err, const char *msg) {
  c->last_err = err;
  snprintf(c->last_msg, sizeof c->last_msg, "%s", msg);
}

/* The current connection is gone: every request fails with err, the subscriber's listeners
 * learn it, and the next attempt waits for the backoff delay. An idle connection closed by the
 * server (Redis's `timeout` setting) is not a failure: the next need reconnects at once. */
static void conn_fail(evs_redis_conn_t *c, int err, const char *why) {
  char msg[512];
  fmt_msg(c, msg, sizeof msg, why != NULL ? why : evs_strerror(err),
          strlen(why != NULL ? why : evs_strerror(err)));
  int idle_close =
      err == EVS_ECLOSED && c->connected && c->head == NULL && c->mode == EVS_REDIS_COMMANDS;
  c->gen++;
  c->deferred_err = 0;
  drop_stream(c);
  c->connected = 0;
  c->setup_left = 0;
  c->n_failures++;
  if (idle_close) {
    c->state = S_IDLE;
  } else {
    c->state = S_BACKOFF;
    c->retry_at = uv_now(c->loop) + evs_backoff_next(&c->backoff, rand_unit(c));
    set_last(c, err, msg);
    EVS_LOG_DEBUG("redis connection failed", EVS_KV_STR("server", c->desc), EVS_KV_ERR("err", err),
                  EVS_KV_STR("reason", msg),
                  EVS_KV_UINT("retry_in_ms", c->retry_at - uv_now(c->loop)));
  }
  req_t *list = detach_all(c);
  uv_timer_stop(&c->deadline);
  fail_list(c, list, err, msg);
  if (c->mode == EVS_REDIS_COMMANDS)
    tell_waiters(c, err, msg); /* a subscriber's waiters wait on, across reconnects */
  if (c->mode == EVS_REDIS_SUBSCRIBER && !c->closing) {
    notify_down(c, err, msg);
    if (!c->closing && (c->live_chans > 0 || c->nwaiters > 0) && c->state == S_BACKOFF)
      start_aux(c, c->retry_at - uv_now(c->loop));
  }
  sweep(c);
}

static void setup_done(evs_redis_conn_t *c) {
  c->connected = 1;
  c->last_err = 0;
  c->last_msg[0] = '\0';
  evs_backoff_reset(&c->backoff);
}

static void on_read(evs_stream_t *s, ssize_t n, const char *buf);

/* AUTH only when a password is set, `AUTH user pass` when a user name is given too: the legacy
 * path of go-redis (KEDA's client; redis/go-redis: redis.go, baseClient.initConn). A user name
 * without a password does not authenticate: the connection runs as the default user. */
static int write_setup(evs_redis_conn_t *c) {
  int rc = 0;
  if (c->pass != NULL && c->pass[0] != '\0') {
    const char *argv[3] = {"AUTH", c->user, c->pass};
    int has_user = c->user != NULL && c->user[0] != '\0';
    if (!has_user)
      argv[1] = c->pass;
    rc = send_internal(c, K_AUTH, NULL, has_user ? 3 : 2, argv, NULL);
    c->setup_left += rc == 0;
  }
  if (rc == 0 && c->db != 0) {
    char db[16];
    snprintf(db, sizeof db, "%d", c->db);
    const char *argv[2] = {"SELECT", db};
    rc = send_internal(c, K_SELECT, NULL, 2, argv, NULL);
    c->setup_left += rc == 0;
  }
  return rc;
}

/* The stream is open: the setup commands go first, then everything queued meanwhile (moved
 * behind them so replies stay in order), then the subscriber's channels. */
static void on_ready(evs_redis_conn_t *c) {
  req_t *queued = detach_all(c);
  c->state = S_READY;
  int rc = write_setup(c);
  /* The setup commands must not extend the deadline of what waited for the connection: the
   * timer only looks at the oldest request. */
  if (queued != NULL)
    for (req_t *q = c->head; q != NULL; q = q->next)
      if (q->deadline > queued->deadline)
        q->deadline = queued->deadline;
  while (queued != NULL) {
    req_t *q = queued;
    queued = q->next;
    q->next = NULL;
    uint64_t deadline = q->deadline;
    if (q->ch != NULL)
      q->ch->reqs--; /* req_append counts it again */
    req_append(c, q);
    q->deadline = deadline;
  }
  arm_deadline(c);
  if (c->setup_left == 0)
    setup_done(c);
  if (c->mode == EVS_REDIS_SUBSCRIBER) {
    for (size_t i = 0; i < c->nbuckets && rc == 0; i++)
      for (chan_t *ch = c->buckets[i]; ch != NULL && rc == 0; ch = ch->hnext)
        if (ch->live > 0)
          rc = send_sub(c, ch, K_SUB);
    if (c->ping_interval != UINT64_MAX)
      start_aux(c, c->ping_interval);
  }
  if (rc != 0) {
    conn_fail(c, rc, NULL);
    return;
  }
  tell_waiters(c, 0, NULL); /* their commands follow what was queued, as if queued with it */
  arm_deadline(c);
}

static void on_connect(evs_stream_t *s, int status) {
  evs_redis_conn_t *c = evs_stream_data(s);
  if (s != c->stream)
    return; /* abandoned (closed by us): on_stream_closed follows */
  if (status != 0) {
    c->stream = NULL; /* the stream frees itself */
    c->streams--;
    conn_fail(c, status, NULL);
    maybe_free(c);
    return;
  }
  int rc = evs_stream_read_start(s, on_read);
  if (rc != 0) {
    conn_fail(c, rc, NULL);
    return;
  }
  on_ready(c);
}

static int start_connect(evs_redis_conn_t *c) {
  if (c->reader != NULL)
    redisReaderFree(c->reader);
  if ((c->reader = reader_new()) == NULL)
    return UV_ENOMEM;
  evs_stream_options_t o = {.host = c->host,
                            .port = c->port,
                            .tls = c->tls,
                            .connect_timeout_ms = c->connect_timeout,
                            .data = c};
  evs_stream_t *s = NULL;
  int rc = evs_stream_connect(c->loop, &o, on_connect, &s);
  if (rc != 0)
    return rc;
  c->n_connects++;
  c->streams++;
  c->stream = s;
  c->state = S_CONNECTING;
  c->gen++;
  return 0;
}

/* Whether a request may be queued now, connecting first if needed. */
static int ensure_connection(evs_redis_conn_t *c) {
  if (c->closing)
    return EVS_ESTATE;
  if (c->state == S_BACKOFF && uv_now(c->loop) < c->retry_at)
    return c->last_err != 0 ? c->last_err : UV_ECONNREFUSED;
  if (c->state == S_IDLE || c->state == S_BACKOFF) {
    int rc = start_connect(c);
    if (rc != 0) {
      char msg[512];
      c->state = S_BACKOFF;
      c->retry_at = uv_now(c->loop) + evs_backoff_next(&c->backoff, rand_unit(c));
      set_last(c, rc, fmt_msg(c, msg, sizeof msg, evs_strerror(rc), strlen(evs_strerror(rc))));
      return rc;
    }
  }
  return 0;
}

static void on_deadline(uv_timer_t *t) {
  evs_redis_conn_t *c = t->data;
  if (c->deferred_err != 0) {
    conn_fail(c, c->deferred_err, NULL);
    return;
  }
  uint64_t dl = earliest_deadline(c);
  if (dl == 0)
    return;
  if (uv_now(c->loop) < dl) {
    arm_deadline(c);
    return;
  }
  char why[96];
  snprintf(why, sizeof why, "request timed out after %llu ms",
           (unsigned long long)c->request_timeout);
  conn_fail(c, EVS_ETIMEDOUT, why);
}

static void on_aux(uv_timer_t *t) {
  evs_redis_conn_t *c = t->data;
  if (c->closing)
    return;
  if (c->state == S_READY) {
    const char *argv[1] = {"PING"};
    if (send_internal(c, K_PING, NULL, 1, argv, NULL) == 0 && c->ping_interval != UINT64_MAX)
      start_aux(c, c->ping_interval);
    return;
  }
  if ((c->live_chans == 0 && c->nwaiters == 0) || (c->state != S_BACKOFF && c->state != S_IDLE))
    return;
  if (ensure_connection(c) != 0 && c->state == S_BACKOFF)
    start_aux(c, c->retry_at > uv_now(c->loop) ? c->retry_at - uv_now(c->loop) : 0);
}

static void start_aux(evs_redis_conn_t *c, uint64_t ms) {
  if (!c->closing)
    uv_timer_start(&c->aux, on_aux, ms, 0);
}

/* --- replies ------------------------------------------------------------------------------- */

static int is_push(const redisReply *r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
    return 0;
  return str_eq(r->element[0], "message", 7) || str_eq(r->element[0], "pmessage", 8);
}

static void on_sub_reply(evs_redis_conn_t *c, chan_t *ch, const redisReply *r) {
  if (r->type == REDIS_REPLY_ERROR) {
    char msg[512];
    char what[300];
    snprintf(what, sizeof what, "SUBSCRIBE %.*s refused: %.*s",
             (int)(ch->len > 120 ? 120 : ch->len), ch->name, (int)r->len, r->str);
    fmt_msg(c, msg, sizeof msg, what, strlen(what));
    notify_chan(c, ch, EVS_REDIS_SUB_REFUSED, evs_redis_error_code(r->str, (size_t)r->len), msg, 1);
    return;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !str_eq(r->element[0], "subscribe", 9) ||
      !str_eq(r->element[1], ch->name, ch->len)) {
    conn_fail(c, EVS_EPARSE, "unexpected reply to SUBSCRIBE");
    return;
  }
  if (ch->live > 0)
    notify_chan(c, ch, EVS_REDIS_SUB_ACTIVE, 0, NULL, 1);
}

static void on_setup_reply(evs_redis_conn_t *c, int kind, const redisReply *r) {
  if (r->type == REDIS_REPLY_ERROR) {
    char what[300];
    snprintf(what, sizeof what, "%s failed: %.*s", kind == K_AUTH ? "authentication" : "SELECT",
             (int)r->len, r->str);
    conn_fail(c, kind == K_AUTH ? UV_EACCES : evs_redis_error_code(r->str, (size_t)r->len), what);
    return;
  }
  if (--c->setup_left == 0)
    setup_done(c);
}

static void on_user_reply(evs_redis_conn_t *c, req_t *q, const redisReply *r) {
  if (r->type != REDIS_REPLY_ERROR) {
    req_finish(c, q, 0, NULL, r);
    return;
  }
  char msg[512];
  fmt_msg(c, msg, sizeof msg, r->str, (size_t)r->len);
  req_finish(c, q, evs_redis_error_code(r->str, (size_t)r->len), msg, r);
}

static void dispatch(evs_redis_conn_t *c, const redisReply *r) {
  if (c->mode == EVS_REDIS_SUBSCRIBER && is_push(r)) {
    int ok = r->elements == 3 && is_str(r->element[1]) && is_str(r->element[2]);
    if (str_eq(r->element[0], "pmessage", 8))
      return; /* never PSUBSCRIBEd: ignore */
    if (!ok) {
      conn_fail(c, EVS_EPARSE, "malformed pub/sub message");
      return;
    }
    deliver_message(c, r);
    return;
  }
  req_t *q = c->head;
  if (q == NULL || !q->written) {
    conn_fail(c, EVS_EPARSE, "reply without a request");
    return;
  }
  c->head = q->next;
  if (c->head == NULL)
    c->tail = NULL;
  c->nreqs--;
  c->n_replies++;
  arm_deadline(c);
  chan_t *ch = q->ch;
  switch (q->kind) {
  case K_USER:
    on_user_reply(c, q, r);
    return;
  case K_AUTH:
  case K_SELECT:
    on_setup_reply(c, q->kind, r);
    break;
  case K_SUB:
    ch->reqs--;
    q->ch = NULL;
    on_sub_reply(c, ch, r);
    chan_release(c, ch);
    break;
  default:
    break;
  }
  req_finish(c, q, 0, NULL, NULL);
}

static int feed(evs_redis_conn_t *c, const char *buf, size_t len) {
  uint64_t gen = c->gen;
  if (redisReaderFeed(c->reader, buf, len) != REDIS_OK) {
    conn_fail(c, UV_ENOMEM, NULL);
    return UV_ENOMEM;
  }
  for (;;) {
    void *reply = NULL;
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
      char why[200];
      int oom = c->reader->err == REDIS_ERR_OOM;
      snprintf(why, sizeof why, "%s: %s", oom ? "reply too large" : "protocol error",
               c->reader->errstr);
      conn_fail(c, oom ? EVS_ETOOBIG : EVS_EPARSE, why);
      return oom ? EVS_ETOOBIG : EVS_EPARSE;
    }
    if (reply == NULL)
      break;
    c->dispatching++;
    dispatch(c, reply);
    c->dispatching--;
    freeReplyObject(reply);
    sweep(c);
    if (c->gen != gen || c->closing)
      return c->closing ? 0 : c->last_err;
  }
  if (c->reader->len - c->reader->pos > c->max_reply_bytes) {
    conn_fail(c, EVS_ETOOBIG, "reply larger than max_reply_bytes");
    return EVS_ETOOBIG;
  }
  return 0;
}

static void on_read(evs_stream_t *s, ssize_t n, const char *buf) {
  evs_redis_conn_t *c = evs_stream_data(s);
  if (s != c->stream)
    return;
  if (n < 0) {
    conn_fail(c, (int)n, NULL);
    return;
  }
  feed(c, buf, (size_t)n);
}

/* --- public: connection -------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  evs_redis_conn_t *c = h->data;
  c->handles--;
  maybe_free(c);
}

static void free_chans(evs_redis_conn_t *c) {
  for (size_t i = 0; i < c->nbuckets; i++)
    for (chan_t *ch = c->buckets[i], *next; ch != NULL; ch = next) {
      next = ch->hnext;
      for (evs_redis_sub_t *l = ch->listeners, *ln; l != NULL; l = ln) {
        ln = l->next;
        free(l);
      }
      free(ch);
    }
  free(c->buckets);
}

static void maybe_free(evs_redis_conn_t *c) {
  if (!c->closing || c->handles > 0 || c->streams > 0)
    return;
  void (*cb)(void *) = c->close_cb;
  void *arg = c->close_arg;
  free_chans(c);
  if (c->reader != NULL)
    redisReaderFree(c->reader);
  evs_tls_config_unref(c->tls);
  free(c->host);
  free(c->user);
  if (c->pass != NULL) {
    memset(c->pass, 0, strlen(c->pass));
    free(c->pass);
  }
  free(c->key);
  free(c->obuf);
  free(c->ks_flags);
  free(c);
  if (cb != NULL)
    cb(arg);
}

static char *dup_or_null(const char *s, int *oom) {
  if (s == NULL || s[0] == '\0')
    return NULL;
  char *d = strdup(s);
  if (d == NULL)
    *oom = 1;
  return d;
}

static void describe(evs_redis_conn_t *c) {
  int v6 = strchr(c->host, ':') != NULL;
  snprintf(c->desc, sizeof c->desc, "%s%s%s:%d user=%s db=%d%s", v6 ? "[" : "", c->host,
           v6 ? "]" : "", c->port, c->user != NULL ? c->user : "default", c->db,
           c->tls != NULL ? " tls" : "");
}

int evs_redis_conn_new(uv_loop_t *loop, const evs_redis_options_t *o, evs_redis_mode_t mode,
                       evs_redis_conn_t **out) {
  if (loop == NULL || o == NULL || o->host == NULL || o->host[0] == '\0' || o->port <= 0 ||
      o->port > 65535 || o->db < 0 || (mode != EVS_REDIS_COMMANDS && mode != EVS_REDIS_SUBSCRIBER))
    return UV_EINVAL;
  evs_redis_conn_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  int oom = 0;
  c->host = dup_or_null(o->host, &oom);
  c->user = dup_or_null(o->username, &oom);
  c->pass = dup_or_null(o->password, &oom);
  if (oom) {
    free(c->host);
    free(c->user);
    free(c->pass);
    free(c);
    return UV_ENOMEM;
  }
  c->loop = loop;
  c->mode = mode;
  c->port = o->port;
  c->db = o->db;
  c->tls = o->tls != NULL ? evs_tls_config_ref(o->tls) : NULL;
  c->connect_timeout = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
  c->request_timeout = o->request_timeout_ms ? o->request_timeout_ms : 5000;
  c->ping_interval = o->ping_interval_ms ? o->ping_interval_ms : 15000;
  c->max_requests = o->max_requests ? o->max_requests : 1000000;
  c->max_reply_bytes = o->max_reply_bytes ? o->max_reply_bytes : (size_t)64 << 20;
  evs_backoff_init(&c->backoff, o->backoff_initial_ms ? o->backoff_initial_ms : 500,
                   o->backoff_max_ms ? o->backoff_max_ms : 30000, EVS_BACKOFF_DECORRELATED);
  c->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)c) | 1;
  describe(c);
  uv_timer_init(loop, &c->deadline);
  uv_timer_init(loop, &c->aux);
  uv_prepare_init(loop, &c->flush);
  c->deadline.data = c->aux.data = c->flush.data = c;
  c->handles = 3;
  c->state = S_IDLE;
  evs_list_init(&c->ks_waiters);
  evs_list_init(&c->waiters);
  *out = c;
  return 0;
}

void evs_redis_conn_close(evs_redis_conn_t *c, void (*cb)(void *arg), void *arg) {
  if (c->closing) {
    if (c->close_cb == NULL) {
      c->close_cb = cb;
      c->close_arg = arg;
    }
    return;
  }
  c->closing = 1;
  c->close_cb = cb;
  c->close_arg = arg;
  c->gen++;
  drop_stream(c);
  c->state = S_IDLE;
  char msg[512];
  fmt_msg(c, msg, sizeof msg, "connection closed", 17);
  fail_list(c, detach_all(c), EVS_ECANCELED, msg);
  tell_waiters(c, EVS_ECANCELED, msg);
  uv_close((uv_handle_t *)&c->deadline, on_handle_closed);
  uv_close((uv_handle_t *)&c->aux, on_handle_closed);
  uv_close((uv_handle_t *)&c->flush, on_handle_closed);
}

static int queue_user(evs_redis_conn_t *c, char *cmd, int len, evs_redis_reply_cb cb, void *arg) {
  if (len < 0)
    return UV_EINVAL; /* hiredis: a bad format string or out of memory */
  int rc = 0;
  if (cb == NULL)
    rc = UV_EINVAL;
  else if (c->closing || c->mode != EVS_REDIS_COMMANDS)
    rc = EVS_ESTATE;
  else if (c->nreqs >= c->max_requests)
    rc = UV_ENOBUFS;
  else
    rc = ensure_connection(c);
  if (rc != 0) {
    free(cmd);
    return rc;
  }
  req_t *q = req_new(K_USER, cmd, len);
  if (q == NULL)
    return UV_ENOMEM;
  q->cb = cb;
  q->arg = arg;
  req_append(c, q);
  return 0;
}

int evs_redis_vcommand(evs_redis_conn_t *c, evs_redis_reply_cb cb, void *arg, const char *fmt,
                       va_list ap) {
  if (fmt == NULL)
    return UV_EINVAL;
  char *cmd = NULL;
  int len = redisvFormatCommand(&cmd, fmt, ap);
  return queue_user(c, cmd, len, cb, arg);
}

int evs_redis_command(evs_redis_conn_t *c, evs_redis_reply_cb cb, void *arg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = evs_redis_vcommand(c, cb, arg, fmt, ap);
  va_end(ap);
  return rc;
}

int evs_redis_command_argv(evs_redis_conn_t *c, evs_redis_reply_cb cb, void *arg, int argc,
                           const char **argv, const size_t *argvlen) {
  if (argc <= 0 || argv == NULL)
    return UV_EINVAL;
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  return queue_user(c, cmd, len, cb, arg);
}

/* Someone wants the connection up (a subscriber's waiter, a listener): connect now when idle,
 * or make sure the retry after the current backoff is scheduled. Nothing when connecting or up. */
static void want_connection(evs_redis_conn_t *c) {
  if (c->state == S_IDLE) {
    if (ensure_connection(c) != 0)
      start_aux(c, c->retry_at - uv_now(c->loop));
  } else if (c->state == S_BACKOFF) {
    uint64_t now = uv_now(c->loop);
    start_aux(c, c->retry_at > now ? c->retry_at - now : 0);
  }
}

/* A subscriber's waiter wants the connection as a channel does: it connects, and reconnects
 * after every failure's backoff, until the waiter is told (up) or cancelled. */
static int sub_wait(evs_redis_conn_t *c, evs_redis_waiter_t *w, evs_redis_wait_cb cb) {
  w->cb = cb;
  evs_list_push_back(&c->waiters, &w->link);
  c->nwaiters++;
  want_connection(c);
  return 0;
}

int evs_redis_conn_wait(evs_redis_conn_t *c, evs_redis_waiter_t *w, evs_redis_wait_cb cb) {
  if (w == NULL || cb == NULL)
    return UV_EINVAL;
  if (c->closing)
    return EVS_ESTATE;
  if (c->state == S_READY)
    return 1;
  if (c->mode == EVS_REDIS_SUBSCRIBER)
    return sub_wait(c, w, cb);
  int rc = ensure_connection(c);
  if (rc != 0)
    return rc;
  if (c->state == S_READY)
    return 1;
  w->cb = cb;
  evs_list_push_back(&c->waiters, &w->link);
  if (c->nwaiters++ == 0) {
    c->wait_deadline = uv_now(c->loop) + c->request_timeout;
    arm_deadline(c);
  }
  return 0;
}

void evs_redis_conn_wait_cancel(evs_redis_conn_t *c, evs_redis_waiter_t *w) {
  if (c == NULL || w == NULL || w->link.next == NULL || evs_list_empty(&w->link))
    return;
  evs_list_remove(&w->link);
  evs_list_init(&w->link);
  c->nwaiters--;
}

int evs_redis_conn_ready(const evs_redis_conn_t *c) { return c->state == S_READY && !c->closing; }

/* --- public: pub/sub ----------------------------------------------------------------------- */

int evs_redis_subscribe(evs_redis_conn_t *c, const char *channel, size_t len,
                        const evs_redis_sub_handlers_t *h, void *arg, evs_redis_sub_t **out) {
  if (channel == NULL || len == 0 || h == NULL || out == NULL)
    return UV_EINVAL;
  if (c->closing || c->mode != EVS_REDIS_SUBSCRIBER)
    return EVS_ESTATE;
  evs_redis_sub_t *l = calloc(1, sizeof *l);
  chan_t *ch = l != NULL ? chan_get(c, channel, len) : NULL;
  if (ch == NULL) {
    free(l);
    return UV_ENOMEM;
  }
  l->ch = ch;
  l->c = c;
  l->h = *h;
  l->arg = arg;
  l->next = ch->listeners;
  ch->listeners = l;
  if (ch->live++ == 0)
    c->live_chans++;
  /* Every listener gets its own SUBSCRIBE while connected: the server confirms an already
   * subscribed channel again, and that confirmation is this listener's ACTIVE. */
  if (c->state == S_READY) {
    if (send_sub(c, ch, K_SUB) != 0)
      defer_fail(c, UV_ENOMEM);
  } else {
    want_connection(c);
  }
  *out = l;
  return 0;
}

void evs_redis_unsubscribe(evs_redis_sub_t *l) {
  if (l == NULL || l->dead)
    return;
  chan_t *ch = l->ch;
  evs_redis_conn_t *c = l->c;
  l->dead = 1;
  l->active = 0;
  if (--ch->live == 0) {
    c->live_chans--;
    if (c->state == S_READY && !c->closing && send_sub(c, ch, K_UNSUB) != 0)
      defer_fail(c, UV_ENOMEM);
  }
  c->sweep = 1;
  sweep(c);
}

int evs_redis_sub_active(const evs_redis_sub_t *s) { return s->active && !s->dead; }
evs_redis_conn_t *evs_redis_sub_conn(const evs_redis_sub_t *s) { return s->c; }

/* --- public: introspection ----------------------------------------------------------------- */

/* --- keyspace flags, once per connection ---------------------------------------------------- */

static void on_ks_reply(evs_redis_conn_t *c, int err, const char *msg, const redisReply *reply,
                        void *arg) {
  (void)msg, (void)arg;
  const char *flags = NULL;
  if (err == 0 && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
                   reply->element[1]->type != REDIS_REPLY_STRING))
    err = EVS_EPARSE;
  else if (err == 0)
    flags = reply->element[1]->str;
  free(c->ks_flags);
  c->ks_flags = NULL;
  if (reply != NULL && (err == 0 || err == UV_EPERM || err == EVS_EREDIS)) {
    /* An answer of this server (the flags, or a refusal: ACL, a renamed CONFIG) holds for the
     * connection; a failed request is nobody's answer and is asked again next time. */
    c->ks_state = KS_KNOWN;
    c->ks_gen = c->gen;
    c->ks_err = err;
    if (flags != NULL && (c->ks_flags = strdup(flags)) == NULL)
      c->ks_state = KS_NONE, err = UV_ENOMEM, flags = NULL;
  } else {
    c->ks_state = KS_NONE;
  }
  evs_list_t answering;
  evs_list_init(&answering);
  while (!evs_list_empty(&c->ks_waiters)) {
    evs_list_t *l = c->ks_waiters.next;
    evs_list_remove(l);
    evs_list_push_back(&answering, l);
  }
  /* One at a time: a callback may cancel another waiter (it leaves `answering`). */
  while (!evs_list_empty(&answering)) {
    evs_redis_flags_req_t *q = evs_container_of(answering.next, evs_redis_flags_req_t, link);
    evs_list_remove(&q->link);
    evs_redis_flags_cb cb = q->cb;
    void *qa = q->arg;
    free(q);
    cb(c, err, c->ks_state == KS_KNOWN ? c->ks_flags : NULL, qa);
  }
}

int evs_redis_keyspace_flags(evs_redis_conn_t *c, evs_redis_flags_cb cb, void *arg,
                             evs_redis_flags_req_t **req, const char **flags, int *err) {
  *req = NULL;
  if (c->ks_state == KS_KNOWN && c->ks_gen == c->gen) {
    *flags = c->ks_flags;
    *err = c->ks_err;
    return 1;
  }
  evs_redis_flags_req_t *q = calloc(1, sizeof *q);
  if (q == NULL)
    return UV_ENOMEM;
  if (c->ks_state != KS_ASKING) {
    const char *argv[] = {"CONFIG", "GET", "notify-keyspace-events"};
    int rc = evs_redis_command_argv(c, on_ks_reply, NULL, 3, argv, NULL);
    if (rc != 0) {
      free(q);
      return rc;
    }
    c->ks_state = KS_ASKING;
    c->n_ks_asked++;
  }
  q->cb = cb;
  q->arg = arg;
  evs_list_push_back(&c->ks_waiters, &q->link);
  *req = q;
  return 0;
}

void evs_redis_keyspace_flags_cancel(evs_redis_flags_req_t *q) {
  if (q == NULL)
    return;
  evs_list_remove(&q->link);
  free(q);
}

void evs_redis_keyspace_flags_forget(evs_redis_conn_t *c) {
  if (c->ks_state == KS_KNOWN)
    c->ks_state = KS_NONE;
}

void evs_redis_conn_stats(const evs_redis_conn_t *c, evs_redis_conn_stats_t *out) {
  uint64_t now = uv_now(c->loop);
  *out = (evs_redis_conn_stats_t){
      .connects = c->n_connects,
      .failures = c->n_failures,
      .replies = c->n_replies,
      .messages = c->n_messages,
      .outstanding = c->nreqs + c->nwaiters,
      .waiters = c->nwaiters,
      .channels = c->live_chans,
      .connected = c->state == S_READY && c->connected,
      .backoff_left_ms = c->state == S_BACKOFF && c->retry_at > now ? c->retry_at - now : 0,
      .keyspace_asks = c->n_ks_asked,
  };
}

int evs_redis_conn_last_error(const evs_redis_conn_t *c, const char **msg) {
  if (msg != NULL)
    *msg = c->last_err != 0 ? c->last_msg : NULL;
  return c->last_err;
}

const char *evs_redis_conn_describe(const evs_redis_conn_t *c) { return c->desc; }
evs_redis_mode_t evs_redis_conn_mode(const evs_redis_conn_t *c) { return c->mode; }

/* --- internal: tests and fuzzing ----------------------------------------------------------- */

void evs_redis__test_attach(evs_redis_conn_t *c) {
  if (c->reader == NULL)
    c->reader = reader_new();
  c->state = S_READY;
  setup_done(c);
}

int evs_redis__test_feed(evs_redis_conn_t *c, const char *buf, size_t len) {
  if (c->state != S_READY || c->reader == NULL)
    return EVS_ESTATE;
  return feed(c, buf, len);
}

/* --- registry ------------------------------------------------------------------------------ */

struct evs_redis_registry_s {
  uv_loop_t *loop;
  evs_redis_options_t defaults; /* timeouts and limits only: host/user/password are not kept */
  evs_redis_conn_t *conns;
  size_t n;
  int closing;
  size_t closing_conns;
  void (*close_cb)(void *arg);
  void *close_arg;
};

int evs_redis_registry_new(uv_loop_t *loop, const evs_redis_options_t *defaults,
                           evs_redis_registry_t **out) {
  evs_redis_registry_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return UV_ENOMEM;
  r->loop = loop;
  if (defaults != NULL) {
    r->defaults = *defaults;
    r->defaults.host = r->defaults.username = r->defaults.password = NULL;
    r->defaults.tls = NULL;
  }
  *out = r;
  return 0;
}

/* The identity as one string, each field length-prefixed so no two identities collide ("a|b"
 * as a user name cannot imitate a field boundary). It holds the password: it is compared, never
 * printed. */
static char *identity_key(const evs_redis_options_t *o, evs_redis_mode_t mode) {
  const char *user = o->username != NULL ? o->username : "";
  const char *pass = o->password != NULL ? o->password : "";
  const char *tls = o->tls != NULL ? evs_tls_config_identity(o->tls) : "";
  size_t cap = strlen(o->host) + strlen(user) + strlen(pass) + strlen(tls) + 128;
  char *k = malloc(cap);
  if (k != NULL)
    snprintf(k, cap, "%d|%zu:%s|%d|%d|%zu:%s|%zu:%s|%d:%s", (int)mode, strlen(o->host), o->host,
             o->port, o->db, strlen(user), user, strlen(pass), pass, o->tls != NULL, tls);
  return k;
}

#define EVS__DEFAULT(field)                                                                        \
  if (m.field == 0)                                                                                \
  m.field = r->defaults.field

int evs_redis_registry_acquire(evs_redis_registry_t *r, const evs_redis_options_t *o,
                               evs_redis_mode_t mode, evs_redis_conn_t **out) {
  if (r->closing)
    return EVS_ESTATE;
  if (o == NULL || o->host == NULL)
    return UV_EINVAL;
  char *key = identity_key(o, mode);
  if (key == NULL)
    return UV_ENOMEM;
  for (evs_redis_conn_t *c = r->conns; c != NULL; c = c->rnext)
    if (strcmp(c->key, key) == 0) {
      free(key);
      c->refs++;
      *out = c;
      return 0;
    }
  evs_redis_options_t m = *o;
  EVS__DEFAULT(connect_timeout_ms);
  EVS__DEFAULT(request_timeout_ms);
  EVS__DEFAULT(backoff_initial_ms);
  EVS__DEFAULT(backoff_max_ms);
  EVS__DEFAULT(ping_interval_ms);
  EVS__DEFAULT(max_requests);
  EVS__DEFAULT(max_reply_bytes);
  evs_redis_conn_t *c;
  int rc = evs_redis_conn_new(r->loop, &m, mode, &c);
  if (rc != 0) {
    free(key);
    return rc;
  }
  c->reg = r;
  c->key = key;
  c->refs = 1;
  c->rnext = r->conns;
  r->conns = c;
  r->n++;
  *out = c;
  return 0;
}

static void registry_maybe_free(evs_redis_registry_t *r) {
  if (!r->closing || r->closing_conns > 0)
    return;
  void (*cb)(void *) = r->close_cb;
  void *arg = r->close_arg;
  free(r);
  if (cb != NULL)
    cb(arg);
}

static void on_reg_conn_closed(void *arg) {
  evs_redis_registry_t *r = arg;
  r->closing_conns--;
  registry_maybe_free(r);
}

static void registry_drop(evs_redis_registry_t *r, evs_redis_conn_t *c) {
  evs_redis_conn_t **pp = &r->conns;
  while (*pp != NULL && *pp != c)
    pp = &(*pp)->rnext;
  if (*pp == NULL)
    return;
  *pp = c->rnext;
  r->n--;
  r->closing_conns++;
  evs_redis_conn_close(c, on_reg_conn_closed, r);
}

void evs_redis_registry_release(evs_redis_registry_t *r, evs_redis_conn_t *c) {
  if (c == NULL || c->reg != r || c->refs == 0)
    return;
  if (--c->refs == 0)
    registry_drop(r, c);
}

size_t evs_redis_registry_size(const evs_redis_registry_t *r) { return r->n; }

void evs_redis_registry_close(evs_redis_registry_t *r, void (*cb)(void *arg), void *arg) {
  if (r->closing)
    return;
  r->closing = 1;
  r->close_cb = cb;
  r->close_arg = arg;
  /* Counted before any close so a close callback cannot free the registry mid-loop. */
  r->closing_conns++;
  while (r->conns != NULL)
    registry_drop(r, r->conns);
  r->closing_conns--;
  registry_maybe_free(r);
}
