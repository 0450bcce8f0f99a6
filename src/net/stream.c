/* TCP/TLS client stream on libuv. See evscale/stream.h for the contract.
 *
 * Handles: tcp (re-initialised for every address tried), timer (connect timeout, then idle
 * timeout) and pump (a 0 ms timer that delivers bytes or an error held back while the caller was
 * not reading, so read_start never calls read_cb re-entrantly). `pending` counts open handles and
 * the outstanding getaddrinfo request; the stream is freed when it reaches 0 after close. */
#include "evscale/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/log.h"

enum { ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING };

#define EVS__READ_BUF 16384

struct evs_stream_s {
  uv_loop_t *loop;
  int state;
  int pending;
  int tcp_inited, tcp_closing;
  int connect_cb_done;
  int reading;
  int error; /* a read-side error not yet delivered */
  int drain_wanted;
  char *host;
  int port;
  uint64_t connect_timeout_ms, idle_timeout_ms, last_activity;
  size_t high_water, queued;
  void *data;
  evs_tls_config_t *tls_cfg;
  evs_tls__session_t tls;
  int tls_on;
  struct addrinfo *ai, *ai_cur; /* ai: getaddrinfo's list (freed at the end) */
  struct addrinfo lit_ai;       /* an IP literal's one address */
  struct sockaddr_storage lit_addr;
  int last_err;
  evs_stream_connect_cb connect_cb;
  evs_stream_read_cb read_cb;
  evs_stream_drain_cb drain_cb;
  evs_stream_close_cb close_cb;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_timer_t pump;
  uv_connect_t conn_req;
  uv_getaddrinfo_t gai;
  char rbuf[EVS__READ_BUF];
  char pbuf[EVS__READ_BUF];
};

typedef struct {
  uv_write_t req;
  evs_stream_t *s;
  evs_stream_write_cb cb;
  void *arg;
  size_t plain_len;
  unsigned char *cipher; /* TLS: the encrypted bytes (malloc); plain TCP: NULL, bytes follow */
  unsigned char bytes[];
} evs__write_t;

static void try_next_addr(evs_stream_t *s);
static void begin_close(evs_stream_t *s);
static void drain_tls(evs_stream_t *s);
static int flush_tls(evs_stream_t *s, evs_stream_write_cb cb, void *arg, size_t plain_len);

static int conv_uv(int err) {
  if (err == UV_EOF)
    return EVS_ECLOSED;
  if (err == UV_ECANCELED)
    return EVS_ECANCELED;
  return err;
}

static void finish(evs_stream_t *s) {
  if (!s->connect_cb_done) {
    s->connect_cb_done = 1;
    s->connect_cb(s, EVS_ECANCELED);
  }
  if (s->close_cb != NULL)
    s->close_cb(s);
  if (s->tls_on)
    evs_tls__session_free(&s->tls);
  if (s->ai != NULL)
    uv_freeaddrinfo(s->ai);
  evs_tls_config_unref(s->tls_cfg);
  free(s->host);
  free(s);
}

static void on_handle_closed(uv_handle_t *h) {
  evs_stream_t *s = h->data;
  if (h == (uv_handle_t *)&s->tcp)
    s->tcp_inited = s->tcp_closing = 0;
  if (--s->pending == 0)
    finish(s);
}

static void close_tcp(evs_stream_t *s, uv_close_cb cb) {
  if (s->tcp_inited && !s->tcp_closing) {
    s->tcp_closing = 1;
    uv_close((uv_handle_t *)&s->tcp, cb);
  }
}

static void begin_close(evs_stream_t *s) {
  if (s->state == ST_CLOSING)
    return;
  if (s->state == ST_RESOLVING)
    uv_cancel((uv_req_t *)&s->gai);
  /* A TLS close_notify tells the server this was an orderly end, not a truncation attack
   * (RFC 5246 section 7.2.1); uv_write sends it at once if the socket takes it. */
  if (s->state == ST_OPEN && s->tls_on && s->error == 0 &&
      evs_tls__session_close_notify(&s->tls) == 0)
    flush_tls(s, NULL, NULL, 0);
  s->state = ST_CLOSING;
  s->reading = 0;
  close_tcp(s, on_handle_closed);
  uv_close((uv_handle_t *)&s->timer, on_handle_closed);
  uv_close((uv_handle_t *)&s->pump, on_handle_closed);
}

static void fail_connect(evs_stream_t *s, int err) {
  if (s->state == ST_CLOSING)
    return;
  s->connect_cb_done = 1;
  begin_close(s);
  s->connect_cb(s, err);
}

static void touch(evs_stream_t *s) { s->last_activity = uv_now(s->loop); }

static void on_timer(uv_timer_t *t);

static void start_idle_timer(evs_stream_t *s) {
  uv_timer_stop(&s->timer);
  if (s->idle_timeout_ms > 0)
    uv_timer_start(&s->timer, on_timer, s->idle_timeout_ms, 0);
}

/* Hands a read-side error to the caller now if reading, else keeps it for read_start. */
static void read_error(evs_stream_t *s, int err) {
  if (s->error == 0)
    s->error = err;
  uv_read_stop((uv_stream_t *)&s->tcp);
  if (s->reading) {
    s->reading = 0;
    s->read_cb(s, s->error, NULL);
  }
}

static void on_timer(uv_timer_t *t) {
  evs_stream_t *s = t->data;
  if (s->state != ST_OPEN) {
    fail_connect(s, EVS_ETIMEDOUT);
    return;
  }
  uint64_t idle = uv_now(s->loop) - s->last_activity;
  if (idle < s->idle_timeout_ms) {
    uv_timer_start(&s->timer, on_timer, s->idle_timeout_ms - idle, 0);
    return;
  }
  read_error(s, EVS_ETIMEDOUT);
}

static void on_write_done(uv_write_t *req, int status) {
  evs__write_t *w = (evs__write_t *)req;
  evs_stream_t *s = w->s;
  s->queued -= w->plain_len;
  if (status == 0)
    touch(s);
  if (w->cb != NULL)
    w->cb(s, conv_uv(status), w->arg);
  free(w->cipher);
  free(w);
  /* A peer that reset the connection (SIGPIPE is ignored by main) is a closed connection: the
   * reader hears it once, and later writes fail at once instead of each going to the socket. */
  if ((status == UV_EPIPE || status == UV_ECONNRESET) && s->state == ST_OPEN) {
    if (s->error == EVS_ECLOSED)
      s->error = 0; /* its FIN came first: writing is over now too */
    read_error(s, status);
  }
  if (s->drain_wanted && s->queued <= s->high_water / 2 && s->state == ST_OPEN) {
    s->drain_wanted = 0;
    if (s->drain_cb != NULL)
      s->drain_cb(s);
  }
}

/* Sends whatever ciphertext the TLS session produced (handshake records, alerts, app data). */
static int flush_tls(evs_stream_t *s, evs_stream_write_cb cb, void *arg, size_t plain_len) {
  unsigned char *buf;
  size_t len;
  evs_tls__session_take_out(&s->tls, &buf, &len);
  if (buf == NULL && cb == NULL)
    return 0;
  evs__write_t *w = calloc(1, sizeof *w);
  if (w == NULL) {
    free(buf);
    return UV_ENOMEM;
  }
  *w = (evs__write_t){.s = s, .cb = cb, .arg = arg, .plain_len = plain_len, .cipher = buf};
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_write_done);
  if (rc != 0) {
    free(buf);
    free(w);
    return rc;
  }
  s->queued += plain_len;
  return 0;
}

static void connected(evs_stream_t *s) {
  s->state = ST_OPEN;
  uv_read_stop((uv_stream_t *)&s->tcp);
  touch(s);
  start_idle_timer(s);
  s->connect_cb_done = 1;
  s->connect_cb(s, 0);
}

static void do_handshake(evs_stream_t *s) {
  int rc = evs_tls__session_handshake(&s->tls);
  int frc = flush_tls(s, NULL, NULL, 0);
  if (rc == 0 && frc != 0)
    rc = frc;
  if (rc < 0) {
    if (rc == EVS_ECERT && s->tls.verify_ip_failed)
      EVS_LOG_DEBUG("TLS: server certificate lacks the IP SAN", EVS_KV_STR("host", s->host));
    fail_connect(s, rc);
  } else if (rc == 0) {
    connected(s);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  evs_stream_t *s = h->data;
  (void)hint;
  *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void on_read(uv_stream_t *tcp, ssize_t nread, const uv_buf_t *buf) {
  evs_stream_t *s = tcp->data;
  if (nread == 0 || s->state == ST_CLOSING)
    return;
  if (nread < 0) {
    if (s->state == ST_HANDSHAKE)
      fail_connect(s, conv_uv((int)nread));
    else
      read_error(s, conv_uv((int)nread));
    return;
  }
  touch(s);
  if (!s->tls_on) {
    s->read_cb(s, nread, buf->base);
    return;
  }
  int rc = evs_tls__session_feed(&s->tls, buf->base, (size_t)nread);
  if (rc != 0) {
    if (s->state == ST_HANDSHAKE)
      fail_connect(s, rc);
    else
      read_error(s, rc);
  } else if (s->state == ST_HANDSHAKE) {
    do_handshake(s);
  } else {
    drain_tls(s);
  }
}

/* Decrypts and delivers buffered records while the caller keeps reading. */
static void drain_tls(evs_stream_t *s) {
  while (s->reading && s->state == ST_OPEN) {
    int n = evs_tls__session_read(&s->tls, s->pbuf, sizeof s->pbuf);
    int frc = flush_tls(s, NULL, NULL, 0);
    if (n == 0 && frc == 0)
      return;
    if (n < 0 || frc != 0) {
      read_error(s, n < 0 ? n : frc);
      return;
    }
    s->read_cb(s, n, s->pbuf);
  }
}

static void on_pump(uv_timer_t *t) {
  evs_stream_t *s = t->data;
  if (!s->reading || s->state != ST_OPEN)
    return;
  if (s->tls_on)
    drain_tls(s);
  if (s->reading && s->error != 0)
    read_error(s, s->error);
}

/* A failed attempt's handle is closed before the next address gets a fresh one. */
static void on_attempt_closed(uv_handle_t *h) {
  evs_stream_t *s = h->data;
  s->tcp_inited = s->tcp_closing = 0;
  if (--s->pending == 0)
    finish(s);
  else if (s->state != ST_CLOSING)
    try_next_addr(s);
}

static void on_connect(uv_connect_t *req, int status) {
  evs_stream_t *s = req->data;
  if (s->state == ST_CLOSING || status == UV_ECANCELED)
    return;
  if (status < 0) {
    s->last_err = status;
    s->ai_cur = s->ai_cur != NULL ? s->ai_cur->ai_next : NULL;
    close_tcp(s, on_attempt_closed);
    return;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  if (!s->tls_on) {
    connected(s);
    return;
  }
  s->state = ST_HANDSHAKE;
  int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  if (rc != 0)
    fail_connect(s, rc);
  else
    do_handshake(s);
}

static void try_next_addr(evs_stream_t *s) {
  if (s->ai_cur == NULL) {
    fail_connect(s, s->last_err != 0 ? s->last_err : UV_ECONNREFUSED);
    return;
  }
  int rc = uv_tcp_init(s->loop, &s->tcp);
  if (rc != 0) {
    fail_connect(s, rc);
    return;
  }
  s->tcp.data = s;
  s->tcp_inited = 1;
  s->pending++;
  s->conn_req.data = s;
  rc = uv_tcp_connect(&s->conn_req, &s->tcp, s->ai_cur->ai_addr, on_connect);
  if (rc != 0) {
    s->last_err = rc;
    s->ai_cur = s->ai_cur->ai_next;
    close_tcp(s, on_attempt_closed);
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  evs_stream_t *s = req->data;
  s->ai = res;
  if (s->state == ST_CLOSING) {
    if (--s->pending == 0)
      finish(s);
    return;
  }
  s->pending--;
  if (status < 0) {
    fail_connect(s, status);
    return;
  }
  s->state = ST_CONNECTING;
  s->ai_cur = res;
  try_next_addr(s);
}

static void on_literal_start(uv_timer_t *t) {
  evs_stream_t *s = t->data;
  if (s->state == ST_CONNECTING && !s->tcp_inited)
    try_next_addr(s);
}

/* An IP literal skips the resolver and so never waits behind slow DNS lookups in libuv's small
 * thread pool (the API server is usually reached by IP). The first attempt still starts from the
 * loop (a 0 ms timer), so a synchronous connect error cannot run connect_cb inside
 * evs_stream_connect. */
static int start_literal(evs_stream_t *s) {
  int rc = uv_ip4_addr(s->host, s->port, (struct sockaddr_in *)&s->lit_addr);
  if (rc != 0)
    rc = uv_ip6_addr(s->host, s->port, (struct sockaddr_in6 *)&s->lit_addr);
  if (rc != 0)
    return rc;
  s->lit_ai.ai_addr = (struct sockaddr *)&s->lit_addr;
  s->lit_ai.ai_next = NULL;
  s->ai_cur = &s->lit_ai;
  s->state = ST_CONNECTING;
  return uv_timer_start(&s->pump, on_literal_start, 0, 0);
}

static int start_resolve(evs_stream_t *s) {
  unsigned char ip[16];
  if (uv_inet_pton(AF_INET, s->host, ip) == 0 || uv_inet_pton(AF_INET6, s->host, ip) == 0)
    return start_literal(s);
  char port[8];
  snprintf(port, sizeof port, "%d", s->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  s->gai.data = s;
  int rc = uv_getaddrinfo(s->loop, &s->gai, on_resolved, s->host, port, &hints);
  if (rc == 0)
    s->pending++;
  return rc;
}

static int check_options(const evs_stream_options_t *o) {
  if (o == NULL || o->host == NULL || o->host[0] == '\0' || o->port <= 0 || o->port > 65535)
    return UV_EINVAL;
  return 0;
}

int evs_stream_connect(uv_loop_t *loop, const evs_stream_options_t *o, evs_stream_connect_cb cb,
                       evs_stream_t **out) {
  int rc = check_options(o);
  if (rc != 0 || cb == NULL)
    return UV_EINVAL;
  evs_stream_t *s = calloc(1, sizeof *s);
  if (s == NULL || (s->host = strdup(o->host)) == NULL) {
    free(s);
    return UV_ENOMEM;
  }
  s->loop = loop;
  s->port = o->port;
  s->connect_cb = cb;
  s->data = o->data;
  s->connect_timeout_ms = o->connect_timeout_ms;
  s->idle_timeout_ms = o->idle_timeout_ms;
  s->high_water = o->write_high_water > 0 ? o->write_high_water : (size_t)1 << 20;
  if (o->tls != NULL && (rc = evs_tls__session_init(&s->tls, o->tls, o->host)) != 0) {
    free(s->host);
    free(s);
    return rc;
  }
  if (o->tls != NULL) {
    s->tls_on = 1;
    s->tls_cfg = evs_tls_config_ref(o->tls);
    if (evs_tls_config_insecure(o->tls))
      EVS_LOG_WARN("TLS certificate verification is disabled (insecure)",
                   EVS_KV_STR("host", o->host), EVS_KV_INT("port", o->port));
  }
  uv_timer_init(loop, &s->timer);
  uv_timer_init(loop, &s->pump);
  s->timer.data = s->pump.data = s;
  s->pending = 2;
  s->state = ST_RESOLVING;
  if ((rc = start_resolve(s)) != 0) {
    /* Nothing asynchronous started: undo without any callback. */
    s->connect_cb_done = 1;
    s->connect_cb = NULL;
    begin_close(s);
    return rc;
  }
  if (s->connect_timeout_ms > 0)
    uv_timer_start(&s->timer, on_timer, s->connect_timeout_ms, 0);
  *out = s;
  return 0;
}

void *evs_stream_data(const evs_stream_t *s) { return s->data; }
void evs_stream_set_data(evs_stream_t *s, void *data) { s->data = data; }
uv_loop_t *evs_stream_loop(const evs_stream_t *s) { return s->loop; }
int evs_stream_is_tls(const evs_stream_t *s) { return s->tls_on; }

void evs_stream_set_idle_timeout(evs_stream_t *s, uint64_t ms) {
  s->idle_timeout_ms = ms;
  if (s->state == ST_OPEN) {
    touch(s);
    start_idle_timer(s);
  }
}

int evs_stream_set_keepalive(evs_stream_t *s, unsigned delay_s) {
  if (s->state != ST_OPEN)
    return EVS_ESTATE;
  return uv_tcp_keepalive(&s->tcp, delay_s > 0, delay_s);
}

int evs_stream_read_start(evs_stream_t *s, evs_stream_read_cb cb) {
  if (s->state != ST_OPEN || cb == NULL)
    return EVS_ESTATE;
  s->read_cb = cb;
  if (s->reading)
    return 0;
  s->reading = 1;
  if (s->error == 0) {
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc != 0)
      s->error = rc;
  }
  if (s->error != 0 || (s->tls_on && evs_tls__session_pending(&s->tls)))
    uv_timer_start(&s->pump, on_pump, 0, 0);
  return 0;
}

int evs_stream_read_stop(evs_stream_t *s) {
  if (s->state != ST_OPEN)
    return EVS_ESTATE;
  s->reading = 0;
  uv_read_stop((uv_stream_t *)&s->tcp);
  uv_timer_stop(&s->pump);
  return 0;
}

static int write_plain(evs_stream_t *s, const void *buf, size_t len, evs_stream_write_cb cb,
                       void *arg) {
  evs__write_t *w = malloc(sizeof *w + len);
  if (w == NULL)
    return UV_ENOMEM;
  *w = (evs__write_t){.s = s, .cb = cb, .arg = arg, .plain_len = len};
  memcpy(w->bytes, buf, len);
  uv_buf_t b = uv_buf_init((char *)w->bytes, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_write_done);
  if (rc != 0) {
    free(w);
    return rc;
  }
  s->queued += len;
  return 0;
}

int evs_stream_write(evs_stream_t *s, const void *buf, size_t len, evs_stream_write_cb cb,
                     void *arg) {
  if (s->state != ST_OPEN)
    return EVS_ESTATE;
  if (s->error != 0 && s->error != EVS_ECLOSED && s->error != EVS_ETIMEDOUT)
    return s->error;
  int rc;
  if (s->tls_on) {
    rc = evs_tls__session_write(&s->tls, buf, len);
    if (rc == 0)
      rc = flush_tls(s, cb, arg, len);
  } else {
    rc = write_plain(s, buf, len, cb, arg);
  }
  if (rc == 0 && s->queued > s->high_water)
    s->drain_wanted = 1;
  return rc;
}

size_t evs_stream_write_queue_size(const evs_stream_t *s) { return s->queued; }
int evs_stream_writable(const evs_stream_t *s) { return s->queued < s->high_water; }
void evs_stream_set_drain_cb(evs_stream_t *s, evs_stream_drain_cb cb) { s->drain_cb = cb; }

void evs_stream_close(evs_stream_t *s, evs_stream_close_cb cb) {
  if (s->state == ST_CLOSING) {
    if (s->close_cb == NULL)
      s->close_cb = cb;
    return;
  }
  s->close_cb = cb;
  begin_close(s);
}
