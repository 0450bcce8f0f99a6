/* A TCP or TLS client stream on the libuv loop: what HTTP and Redis both run over.
 *
 *   evs_stream_options_t o = {.host = "127.0.0.1", .port = 6443, .tls = cfg,
 *                             .connect_timeout_ms = 5000, .data = me};
 *   evs_stream_connect(loop, &o, on_connect, &s);
 *   // on_connect(s, 0): evs_stream_read_start(s, on_read); evs_stream_write(s, ...)
 *   // ... evs_stream_close(s, on_closed)
 *
 * Connecting: an IP literal is used as is; a name is resolved with uv_getaddrinfo (thread pool,
 * never blocking the loop) and its addresses, IPv4 and IPv6, are tried in the resolver's order
 * (no happy eyeballs). The connect timeout covers resolution, TCP connect and the TLS handshake.
 * TLS: see evscale/tls.h (SNI and name check for host names, iPAddress SAN check for IP literals,
 * verification on unless the config is insecure, which logs a warning on every connect).
 *
 * Callbacks and lifetime (the libuv rules):
 * - connect_cb runs exactly once. With an error the stream has already begun closing itself and
 *   is freed after the callback returns: do not touch it or close it. With 0 the stream is open
 *   and the caller must eventually call evs_stream_close.
 * - evs_stream_close on a stream still connecting makes connect_cb run with EVS_ECANCELED.
 * - Every write callback runs exactly once: 0 when the bytes are handed to the kernel, an error
 *   (EVS_ECANCELED on close) otherwise.
 * - close_cb runs once, last, after every other callback of the stream; then it is freed.
 * - read_cb receives data (nread > 0, buf borrowed for the call) or one error (nread < 0:
 *   EVS_ECLOSED on orderly end, EVS_ETIMEDOUT on idle timeout, a libuv or TLS code); after an
 *   error nothing more is read and the caller should close. An error that happens while not
 *   reading is delivered at the next evs_stream_read_start.
 * Any function may be called from inside any of the stream's callbacks, close included. */
#ifndef EVSCALE_STREAM_H
#define EVSCALE_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "evscale/tls.h"

typedef struct evs_stream_s evs_stream_t;

typedef void (*evs_stream_connect_cb)(evs_stream_t *s, int status);
typedef void (*evs_stream_read_cb)(evs_stream_t *s, ssize_t nread, const char *buf);
typedef void (*evs_stream_write_cb)(evs_stream_t *s, int status, void *arg);
typedef void (*evs_stream_drain_cb)(evs_stream_t *s);
typedef void (*evs_stream_close_cb)(evs_stream_t *s);

typedef struct {
  const char *host;            /* a DNS name or an IP literal without brackets (copied) */
  int port;                    /* 1..65535 */
  evs_tls_config_t *tls;       /* NULL: plain TCP; otherwise the stream takes a reference */
  uint64_t connect_timeout_ms; /* 0: none */
  uint64_t idle_timeout_ms;    /* no byte in either direction for this long, once open; 0: none */
  size_t write_high_water;     /* bytes queued above which evs_stream_writable says 0 (1 MiB) */
  void *data;                  /* the caller's, see evs_stream_data */
} evs_stream_options_t;

/* Starts connecting. On a synchronous failure (UV_EINVAL for bad options, UV_ENOMEM, a libuv
 * code) connect_cb never runs and *out is not set (anything already set up is released by the
 * loop's next iteration). *out is the stream (owned by the caller
 * from connect_cb(0) until evs_stream_close). */
int evs_stream_connect(uv_loop_t *loop, const evs_stream_options_t *o, evs_stream_connect_cb cb,
                       evs_stream_t **out);

void *evs_stream_data(const evs_stream_t *s);
void evs_stream_set_data(evs_stream_t *s, void *data);
uv_loop_t *evs_stream_loop(const evs_stream_t *s);
int evs_stream_is_tls(const evs_stream_t *s);
/* Changes the idle timeout of an open stream (a pool lengthens it for parked connections). */
void evs_stream_set_idle_timeout(evs_stream_t *s, uint64_t ms);
/* TCP keepalive on an open stream (uv_tcp_keepalive): the first probe after delay_s idle
 * seconds (probe interval and count are the kernel's); 0 turns it off. EVS_ESTATE unless open. */
int evs_stream_set_keepalive(evs_stream_t *s, unsigned delay_s);

/* Starts or stops delivering bytes (backpressure: while stopped the socket is not read, so the
 * kernel's window fills and the peer slows down). EVS_ESTATE unless open. */
int evs_stream_read_start(evs_stream_t *s, evs_stream_read_cb cb);
int evs_stream_read_stop(evs_stream_t *s);

/* Queues len bytes (copied; encrypted at once under TLS). cb may be NULL. EVS_ESTATE unless open,
 * or the stored error of a stream that failed while not reading. */
int evs_stream_write(evs_stream_t *s, const void *buf, size_t len, evs_stream_write_cb cb,
                     void *arg);
/* Bytes written but not yet handed to the kernel. */
size_t evs_stream_write_queue_size(const evs_stream_t *s);
/* 1 while the queue is below the high-water mark. */
int evs_stream_writable(const evs_stream_t *s);
/* Called once each time the queue falls to half the high-water mark after exceeding it. */
void evs_stream_set_drain_cb(evs_stream_t *s, evs_stream_drain_cb cb);

/* Closes (idempotent: a second call only sets close_cb if none was given). cb may be NULL. */
void evs_stream_close(evs_stream_t *s, evs_stream_close_cb cb);

#endif
