/* Redis client connections on the loop: hiredis's RESP reader and command formatter over
 * evs_stream (TCP/TLS), pipelined commands, pub/sub for keyspace events, and a registry that
 * shares connections between triggers with the same identity.
 *
 *   evs_redis_options_t o = {.host = "127.0.0.1", .port = 6379, .password = pw, .db = 2};
 *   evs_redis_conn_new(loop, &o, EVS_REDIS_COMMANDS, &c);
 *   evs_redis_command(c, on_reply, me, "LLEN %s", key);
 *   // on_reply(c, 0, NULL, reply, me): reply->type == REDIS_REPLY_INTEGER ...
 *   evs_redis_conn_close(c, NULL, NULL);
 *
 * Why not hiredis's own async client and libuv adapter: Debian's hiredis 0.14 adapter has no
 * TLS, no connect or request timeouts, resolves names with a blocking getaddrinfo on the loop
 * thread, and ignores poll errors (upstream fixed that only in hiredis >= 1.1). So only two pure
 * pieces of hiredis are used: redisReader (RESP parsing) and redisFormatCommand* (RESP encoding);
 * the socket, TLS, DNS and every timeout are evs_stream's.
 *
 * Identity: a connection belongs to one (host, port, TLS config, username, password, database).
 * Once the stream is open it pipelines, before any user command, `AUTH [user] pass` when a
 * password is set and `SELECT db` when db != 0. A refused AUTH fails the connection with
 * UV_EACCES (WRONGPASS, NOAUTH, "AUTH called without any password configured", ...), distinct
 * from network errors, so the caller can re-resolve its credentials. Error messages name
 * host:port, the user and the database, never the password (a server message that would echo
 * it is scrubbed).
 *
 * Commands (EVS_REDIS_COMMANDS mode) are pipelined: any number in flight, replies matched in
 * order. Each request has a deadline (request_timeout_ms from the call, covering any connect);
 * when the oldest one passes it, that request fails with EVS_ETIMEDOUT and the connection is
 * reset, failing every other request of that connection with EVS_ETIMEDOUT too: a pipelined
 * connection cannot skip one reply, so the later ones would be misattributed.
 *
 * Failures and reconnects: when the connection fails (refused, reset, closed, TLS, protocol
 * error, timeout, refused AUTH), every request in flight or waiting for the connection fails at
 * once with that error, and the connection enters backoff (evscale/backoff.h, full jitter).
 * - Command connections reconnect lazily: a command issued during backoff fails synchronously
 *   with the last error (no callback; evs_redis_conn_last_error gives the message), and the
 *   first command after the backoff delay opens a new connection. An idle trigger thus never
 *   loads a dead server, and a failing one never waits in a queue.
 * - Subscriber connections reconnect automatically after the delay while any channel is
 *   wanted, then resubscribe every channel.
 * A connection that worked (setup replies received) resets the backoff.
 *
 * Pub/sub (EVS_REDIS_SUBSCRIBER mode): evs_redis_subscribe adds a listener for a channel
 * (listeners are counted per channel; the first sends one `SUBSCRIBE channel`, the last one's
 * removal sends `UNSUBSCRIBE channel`). A listener's on_state gets:
 * - EVS_REDIS_SUB_ACTIVE once the server confirmed the channel, first and after every
 *   resubscribe: events may have been missed before it, so re-read the watched key then;
 * - EVS_REDIS_SUB_DOWN with the error when the connection fails (messages will be missed until
 *   the next ACTIVE);
 * - EVS_REDIS_SUB_REFUSED when the server refuses SUBSCRIBE: UV_EPERM for NOPERM (a Redis 7 ACL
 *   user without the channel rule `&__keyspace@*`), EVS_EREDIS for any other error reply. The
 *   channel is retried only after a reconnect.
 * A new listener starts as not active: until ACTIVE it must assume nothing is pushed. Messages
 * (`message` pushes) go to every listener of their channel. A PING every ping_interval_ms
 * detects a dead peer on an otherwise silent subscriber connection.
 *
 * Callbacks and lifetime: every callback of a request runs exactly once unless the call failed
 * synchronously; never from inside the call that started it. Closing a connection fails its
 * requests with EVS_ECANCELED (once each), runs no listener callback any more, and frees the
 * connection (and any listener still attached) after the last libuv close callback, then calls
 * close_cb. Any function may be called from any callback of this module, close included.
 * Not thread-safe: the loop thread only. */
#ifndef EVSCALE_REDIS_CONN_H
#define EVSCALE_REDIS_CONN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "evscale/list.h"
#include "evscale/tls.h"

typedef enum { EVS_REDIS_COMMANDS = 0, EVS_REDIS_SUBSCRIBER = 1 } evs_redis_mode_t;

typedef struct {
  const char *host;            /* DNS name or IP literal (copied) */
  int port;                    /* 1..65535 */
  evs_tls_config_t *tls;       /* NULL: plain TCP; otherwise the connection takes a reference */
  const char *username;        /* NULL or "": `AUTH password` (the default user / requirepass) */
  const char *password;        /* NULL or "": no AUTH (copied; never logged) */
  int db;                      /* 0..; SELECT when not 0 */
  uint64_t connect_timeout_ms; /* DNS + TCP + TLS; 0: 5000 */
  uint64_t request_timeout_ms; /* per request, from the call; 0: 5000 */
  uint64_t backoff_initial_ms; /* 0: 500 */
  uint64_t backoff_max_ms;     /* 0: 30000 */
  uint64_t ping_interval_ms;   /* subscriber health check; 0: 15000; UINT64_MAX: none */
  size_t max_requests;         /* requests outstanding at once; 0: 1000000 */
  size_t max_reply_bytes;      /* unparsed bytes buffered (one reply's size); 0: 64 MiB */
} evs_redis_options_t;

typedef struct evs_redis_conn_s evs_redis_conn_t;
typedef struct evs_redis_sub_s evs_redis_sub_t;

/* The outcome of one command:
 * - err 0: reply is the server's answer (never an error reply);
 * - reply != NULL and err != 0: the server answered with an error reply (reply->str, also in
 *   msg): UV_EPERM for NOPERM (ACL), UV_EACCES for NOAUTH/WRONGPASS, EVS_EREDIS otherwise
 *   (WRONGTYPE, ERR ...). The connection stays usable;
 * - reply NULL: the request failed: EVS_ETIMEDOUT, EVS_ECLOSED, EVS_ECANCELED (closed),
 *   UV_EACCES (AUTH refused), EVS_EPARSE (protocol error), EVS_ETOOBIG, EVS_ECERT/EVS_ETLS,
 *   or a libuv code (UV_ECONNREFUSED, UV_ECONNRESET, UV_EAI_NONAME ...).
 * msg (NULL when err is 0) names host:port and user; reply and msg are borrowed for the call
 * (the reply is freed after the callback returns). */
typedef void (*evs_redis_reply_cb)(evs_redis_conn_t *c, int err, const char *msg,
                                   const redisReply *reply, void *arg);

typedef enum {
  EVS_REDIS_SUB_ACTIVE = 0,
  EVS_REDIS_SUB_DOWN = 1,
  EVS_REDIS_SUB_REFUSED = 2
} evs_redis_sub_state_t;

typedef struct {
  /* A `message` push on the listener's channel; payload borrowed for the call. */
  void (*on_message)(evs_redis_sub_t *s, const char *payload, size_t len, void *arg);
  /* See the header comment; err/msg are 0/NULL for ACTIVE. May be NULL. */
  void (*on_state)(evs_redis_sub_t *s, evs_redis_sub_state_t state, int err, const char *msg,
                   void *arg);
} evs_redis_sub_handlers_t;

/* Creates a connection object; nothing is connected until the first command (COMMANDS) or
 * subscription (SUBSCRIBER). *out is new, released with evs_redis_conn_close.
 * UV_EINVAL (bad options), UV_ENOMEM. */
int evs_redis_conn_new(uv_loop_t *loop, const evs_redis_options_t *o, evs_redis_mode_t mode,
                       evs_redis_conn_t **out);
/* Fails every request with EVS_ECANCELED, closes, frees, then cb(arg) (may be NULL).
 * Idempotent: a second call (before the connection is freed) only sets cb if none was given. */
void evs_redis_conn_close(evs_redis_conn_t *c, void (*cb)(void *arg), void *arg);

/* Sends a command (formatted by hiredis: "%s" a C string, "%b" ptr+len, "%d" ...).
 * Returns 0 (cb runs exactly once, later) or, without any callback: UV_EINVAL (format),
 * UV_ENOMEM, UV_ENOBUFS (max_requests outstanding), EVS_ESTATE (closing, or a SUBSCRIBER
 * connection), or during backoff the error that caused it (see evs_redis_conn_last_error). */
int evs_redis_command(evs_redis_conn_t *c, evs_redis_reply_cb cb, void *arg, const char *fmt, ...);
int evs_redis_vcommand(evs_redis_conn_t *c, evs_redis_reply_cb cb, void *arg, const char *fmt,
                       va_list ap);
/* The same with arguments given as an array (binary safe; argvlen NULL means strlen). */
int evs_redis_command_argv(evs_redis_conn_t *c, evs_redis_reply_cb cb, void *arg, int argc,
                           const char **argv, const size_t *argvlen);

/* --- Waiting for the connection without queuing a command. ---
 * A caller with a command to send while the connection is not up (connecting) waits with an
 * entry embedded in itself instead of queuing the formatted command: 50,000 triggers waiting for
 * a server that is down then cost the connection nothing each (issue 13). When the connection
 * is up, each waiter's cb(c, 0, NULL, w) runs in the order they joined, right after what was
 * queued before, so the commands it sends from cb are written as if queued at the call (their
 * deadline is the first waiter's: request_timeout from when it joined, covering the connect).
 * When the connection fails (or closes: EVS_ECANCELED), every waiter's cb(c, err, msg, w) runs
 * with the error and message its queued requests would have had. */
typedef struct evs_redis_waiter_s evs_redis_waiter_t;
typedef void (*evs_redis_wait_cb)(evs_redis_conn_t *c, int err, const char *msg,
                                  evs_redis_waiter_t *w);
/* Embed one in the caller, zeroed; its fields are the connection's while it waits. */
struct evs_redis_waiter_s {
  evs_list_t link;
  evs_redis_wait_cb cb;
};
/* 1: the connection is up, send now (cb will not run); 0: w waits, cb runs once, later, unless
 * cancelled; < 0, no callback: EVS_ESTATE (closing), UV_EINVAL, or (COMMANDS) during backoff
 * the error that caused it (as evs_redis_command). Connects when idle.
 * SUBSCRIBER mode: a waiter (a listener to be, issue 13: no channel kept for a trigger while
 * the server is down) keeps the connection retrying after each failure's backoff as a channel
 * does, and is told only when it is up (cb err 0: subscribe then) or closed (EVS_ECANCELED). */
int evs_redis_conn_wait(evs_redis_conn_t *c, evs_redis_waiter_t *w, evs_redis_wait_cb cb);
/* w's callback will not run (a w not waiting: nothing). */
void evs_redis_conn_wait_cancel(evs_redis_conn_t *c, evs_redis_waiter_t *w);
/* 1 while commands are written at once (connected or setting up), 0 otherwise. */
int evs_redis_conn_ready(const evs_redis_conn_t *c);

/* Adds a listener for channel (binary safe, copied) on a SUBSCRIBER connection. *out is valid
 * until evs_redis_unsubscribe or the connection's close. UV_EINVAL, UV_ENOMEM, EVS_ESTATE. */
int evs_redis_subscribe(evs_redis_conn_t *c, const char *channel, size_t len,
                        const evs_redis_sub_handlers_t *h, void *arg, evs_redis_sub_t **out);
/* Removes a listener: none of its callbacks runs after this returns. */
void evs_redis_unsubscribe(evs_redis_sub_t *s);
evs_redis_conn_t *evs_redis_sub_conn(const evs_redis_sub_t *s);
/* 1 while the listener's channel is confirmed on the current connection. */
int evs_redis_sub_active(const evs_redis_sub_t *s);

/* Introspection (tests, metrics, health). */
typedef struct {
  uint64_t connects;        /* connection attempts started */
  uint64_t failures;        /* connections failed (any cause) */
  uint64_t replies;         /* replies matched to requests */
  uint64_t messages;        /* pub/sub messages received */
  size_t outstanding;       /* requests waiting for a reply or for the connection, and waiters */
  size_t waiters;           /* of which evs_redis_conn_wait waiters (no request queued for them) */
  size_t channels;          /* channels wanted (subscriber) */
  int connected;            /* stream open and setup (AUTH/SELECT) answered */
  uint64_t backoff_left_ms; /* time until the next attempt is allowed, 0 if none */
  uint64_t keyspace_asks;   /* CONFIG GET notify-keyspace-events sent (evs_redis_keyspace_flags) */
} evs_redis_conn_stats_t;
void evs_redis_conn_stats(const evs_redis_conn_t *c, evs_redis_conn_stats_t *out);
/* The last connection-level error (0 if none since the last success) and its message (borrowed,
 * valid until the next call into the connection). */
int evs_redis_conn_last_error(const evs_redis_conn_t *c, const char **msg);
/* "host:port user=U db=N tls" (no password); borrowed, lives as long as c. */
const char *evs_redis_conn_describe(const evs_redis_conn_t *c);
evs_redis_mode_t evs_redis_conn_mode(const evs_redis_conn_t *c);

/* --- The server's notify-keyspace-events, asked once per connection. ---
 * Every trigger on a server needs the server's keyspace-event flags (issue 15), and they are the
 * server's, not the trigger's: one `CONFIG GET notify-keyspace-events` per connection (COMMANDS
 * mode) answers every user. The answer holds until the connection fails or is re-established
 * (a restarted server may have other flags) or evs_redis_keyspace_flags_forget.
 * Returns:
 *  1: known now, no callback: *flags (borrowed until the next call into c; NULL when the server
 *     refused: *err UV_EPERM for an ACL user without +config|get, EVS_EREDIS otherwise);
 *  0: being asked: cb(c, err, flags, arg) runs once, later, unless
 *     evs_redis_keyspace_flags_cancel(*req); err is the refusal as above, or the request's
 *     failure (EVS_ETIMEDOUT, EVS_ECANCELED when c closes, ...) with flags NULL;
 *  < 0: evs_redis_command's synchronous errors (backoff, EVS_ESTATE, UV_ENOMEM), no callback. */
typedef struct evs_redis_flags_req_s evs_redis_flags_req_t;
typedef void (*evs_redis_flags_cb)(evs_redis_conn_t *c, int err, const char *flags, void *arg);
int evs_redis_keyspace_flags(evs_redis_conn_t *c, evs_redis_flags_cb cb, void *arg,
                             evs_redis_flags_req_t **req, const char **flags, int *err);
/* The callback of req will not run (NULL: nothing). */
void evs_redis_keyspace_flags_cancel(evs_redis_flags_req_t *req);
/* Forgets a known answer (after CONFIG SET changed the flags): the next call asks again. */
void evs_redis_keyspace_flags_forget(evs_redis_conn_t *c);

/* An error reply's text → UV_EPERM (NOPERM), UV_EACCES (NOAUTH, WRONGPASS), EVS_EREDIS. */
int evs_redis_error_code(const char *str, size_t len);

/* --- Registry: connections shared by identity, counted. --- */
typedef struct evs_redis_registry_s evs_redis_registry_t;

/* defaults: timeouts/backoff/limits applied where an acquire's options leave them 0 (may be
 * NULL). Copies what it keeps. *out new, released with evs_redis_registry_close. */
int evs_redis_registry_new(uv_loop_t *loop, const evs_redis_options_t *defaults,
                           evs_redis_registry_t **out);
/* The connection for (mode, host, port, TLS identity, username, password, db): an existing one
 * with one more reference, or a new one. Never shared across identities (a different password
 * is a different connection). Timeouts and limits are the first acquire's (or the defaults). *out
 * is a reference: give it back with release, never close it. UV_EINVAL, UV_ENOMEM, EVS_ESTATE
 * (registry closing). */
int evs_redis_registry_acquire(evs_redis_registry_t *r, const evs_redis_options_t *o,
                               evs_redis_mode_t mode, evs_redis_conn_t **out);
/* Drops a reference; the last one closes the connection (its requests fail with ECANCELED). */
void evs_redis_registry_release(evs_redis_registry_t *r, evs_redis_conn_t *c);
/* Number of distinct connections held. */
size_t evs_redis_registry_size(const evs_redis_registry_t *r);
/* Closes every connection still held (outstanding references become invalid), frees the
 * registry after the last one is freed, then cb(arg) (before returning when it holds none). */
void evs_redis_registry_close(evs_redis_registry_t *r, void (*cb)(void *arg), void *arg);

/* --- Internal, for the fuzzer and unit tests: the reply path without a socket. --- */
/* Marks c connected on no stream (bytes it would write are dropped) with setup done. */
void evs_redis__test_attach(evs_redis_conn_t *c);
/* Feeds bytes as if read from the socket (reader + dispatch). 0, or the error that failed the
 * connection. */
int evs_redis__test_feed(evs_redis_conn_t *c, const char *buf, size_t len);

#endif
