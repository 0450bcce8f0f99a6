/* HTTP/1.1 response parsing (llhttp), URLs and error classification. The pool, connections and
 * requests are in http_pool.c. Everything here is socket-free so fuzz_http_response can feed it. */
#include "evscale/http_client.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "evscale/error.h"

int evs_http__llhttp_error(llhttp_errno_t e) {
  switch (e) {
  case HPE_OK:
  case HPE_PAUSED:
    return 0;
  case HPE_INVALID_EOF_STATE:
    return EVS_ECLOSED;
  default:
    return EVS_EHTTP;
  }
}

static evs_http__parser_t *P(llhttp_t *h) { return h->data; }

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 16;
  while (n < need)
    n *= 2;
  void *b = realloc(*buf, n * elem);
  if (b == NULL)
    return UV_ENOMEM;
  *buf = b;
  *cap = n;
  return 0;
}

/* Every byte of the head and of a buffered body counts towards the limit; a stream's body not. */
static int count(evs_http__parser_t *p, size_t n) {
  p->seen_bytes += n;
  if (p->max_bytes > 0 && p->seen_bytes > p->max_bytes) {
    p->error = EVS_ETOOBIG;
    return HPE_USER;
  }
  return 0;
}

static int hbuf_add(evs_http__parser_t *p, const char *at, size_t n) {
  if (count(p, n) != 0)
    return HPE_USER;
  if (grow((void **)&p->hbuf, &p->hbuf_cap, p->hbuf_len + n + 1, 1) != 0) {
    p->error = UV_ENOMEM;
    return HPE_USER;
  }
  memcpy(p->hbuf + p->hbuf_len, at, n);
  p->hbuf_len += n;
  return 0;
}

/* Trailers of a chunked body arrive after the head was built: they are counted but not kept,
 * since growing hbuf then would move the strings resp.headers points to. */
static int on_field_or_value(llhttp_t *h, const char *at, size_t n) {
  evs_http__parser_t *p = P(h);
  if (p->head_done)
    return count(p, n);
  return hbuf_add(p, at, n);
}

/* Ends a name or a value: a NUL, and the offset just past it, so piece i spans
 * [hoff[i-1], hoff[i]) and names and values alternate. */
static int on_piece_complete(llhttp_t *h) {
  evs_http__parser_t *p = P(h);
  if (p->head_done)
    return 0;
  if (hbuf_add(p, "", 0) != 0)
    return HPE_USER;
  p->hbuf[p->hbuf_len++] = '\0';
  if (grow((void **)&p->hoff, &p->hoff_cap, p->hoff_len + 1, sizeof(size_t)) != 0) {
    p->error = UV_ENOMEM;
    return HPE_USER;
  }
  p->hoff[p->hoff_len++] = p->hbuf_len;
  return 0;
}

static int64_t parse_retry_after(const char *v) {
  if (v == NULL)
    return -1;
  while (*v == ' ' || *v == '\t')
    v++;
  if (!isdigit((unsigned char)*v))
    return -1; /* the HTTP-date form: callers fall back to their backoff */
  errno = 0;
  char *end;
  long long n = strtoll(v, &end, 10);
  while (*end == ' ' || *end == '\t')
    end++;
  if (errno != 0 || *end != '\0' || n < 0)
    return -1;
  return n;
}

/* Pieces are stored back to back; hoff[i] is the end of piece i, so piece i starts at
 * hoff[i-1] (or 0). Name/value pairs are (0,1), (2,3) ... */
static int build_headers(evs_http__parser_t *p) {
  size_t n = p->hoff_len / 2;
  p->hdrs = calloc(n ? n : 1, sizeof *p->hdrs);
  if (p->hdrs == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    size_t ns = i == 0 ? 0 : p->hoff[2 * i - 1];
    p->hdrs[i].name = p->hbuf + ns;
    p->hdrs[i].value = p->hbuf + p->hoff[2 * i];
  }
  p->resp.headers = p->hdrs;
  p->resp.nheaders = n;
  p->resp.retry_after_s = parse_retry_after(evs_http_response_header(&p->resp, "Retry-After"));
  return 0;
}

/* 1xx responses other than 101 are interim (RFC 9110 section 15.2): the final response
 * follows on the same connection, so they are skipped, headers and all. */
static int is_interim(int status) { return status >= 100 && status < 200 && status != 101; }

static int on_headers_complete(llhttp_t *h) {
  evs_http__parser_t *p = P(h);
  p->resp.status = h->status_code;
  p->resp.http_minor = h->http_minor;
  if (is_interim(h->status_code)) {
    p->interim = 1;
    return 0; /* llhttp knows a 1xx has no body */
  }
  if (build_headers(p) != 0) {
    p->error = UV_ENOMEM;
    return -1;
  }
  p->head_done = 1;
  if (p->streaming && p->on_head != NULL && p->on_head(p->ctx) != 0) {
    p->error = EVS_ECANCELED;
    return -1;
  }
  /* A HEAD response announces a length but carries no body (RFC 9110 section 9.3.2). */
  return p->head_request ? 1 : 0;
}

static int on_body(llhttp_t *h, const char *at, size_t n) {
  evs_http__parser_t *p = P(h);
  if (p->streaming) {
    if (p->on_body != NULL && p->on_body(p->ctx, at, n) != 0) {
      p->error = EVS_ECANCELED;
      return HPE_USER;
    }
    return 0;
  }
  if (count(p, n) != 0)
    return HPE_USER;
  if (grow((void **)&p->body, &p->body_cap, p->body_len + n + 1, 1) != 0) {
    p->error = UV_ENOMEM;
    return HPE_USER;
  }
  memcpy(p->body + p->body_len, at, n);
  p->body_len += n;
  p->body[p->body_len] = '\0';
  return 0;
}

static int on_message_complete(llhttp_t *h) {
  evs_http__parser_t *p = P(h);
  if (p->interim) {
    p->interim = 0;
    p->hbuf_len = p->hoff_len = 0;
    p->resp.status = 0;
    return 0; /* go on parsing the final response */
  }
  p->complete = 1;
  p->resp.body = p->body;
  p->resp.body_len = p->body_len;
  /* Pause so bytes after the response are not parsed as another one: we never pipeline. */
  return HPE_PAUSED;
}

static int on_status(llhttp_t *h, const char *at, size_t n) {
  (void)at;
  return count(P(h), n);
}

void evs_http__parser_init(evs_http__parser_t *p, int head_request, size_t max_bytes) {
  memset(p, 0, sizeof *p);
  llhttp_settings_init(&p->settings);
  p->settings.on_status = on_status;
  p->settings.on_header_field = on_field_or_value;
  p->settings.on_header_value = on_field_or_value;
  p->settings.on_header_field_complete = on_piece_complete;
  p->settings.on_header_value_complete = on_piece_complete;
  p->settings.on_headers_complete = on_headers_complete;
  p->settings.on_body = on_body;
  p->settings.on_message_complete = on_message_complete;
  llhttp_init(&p->llhttp, HTTP_RESPONSE, &p->settings);
  p->llhttp.data = p;
  p->head_request = head_request;
  p->max_bytes = max_bytes;
  p->resp.retry_after_s = -1;
}

void evs_http__parser_free(evs_http__parser_t *p) {
  free(p->hbuf);
  free(p->hoff);
  free(p->hdrs);
  free(p->body);
  p->hbuf = p->body = NULL;
  p->hoff = NULL;
  p->hdrs = NULL;
}

int evs_http__parser_feed(evs_http__parser_t *p, const char *buf, size_t len, size_t *used) {
  *used = 0;
  if (p->error != 0)
    return p->error;
  if (p->complete)
    return 1;
  llhttp_errno_t e = llhttp_execute(&p->llhttp, buf, len);
  if (e == HPE_PAUSED && p->complete) {
    *used = (size_t)(llhttp_get_error_pos(&p->llhttp) - buf);
    return 1;
  }
  if (e != HPE_OK) {
    if (p->error == 0)
      p->error = evs_http__llhttp_error(e);
    if (p->error == 0) /* paused without completing: cannot happen, but never loop */
      p->error = EVS_EHTTP;
    return p->error;
  }
  *used = len;
  return 0;
}

int evs_http__parser_eof(evs_http__parser_t *p) {
  if (p->complete)
    return 1;
  if (p->error != 0)
    return p->error;
  /* Our on_message_complete pauses, and llhttp_finish passes that on. */
  llhttp_errno_t e = llhttp_finish(&p->llhttp);
  if ((e == HPE_OK || e == HPE_PAUSED) && p->complete)
    return 1;
  p->error = EVS_ECLOSED;
  return p->error;
}

int evs_http__parser_keep_alive(const evs_http__parser_t *p) {
  return p->complete && llhttp_should_keep_alive(&p->llhttp);
}

const char *evs_http_response_header(const evs_http_response_t *r, const char *name) {
  for (size_t i = 0; r != NULL && i < r->nheaders; i++)
    if (strcasecmp(r->headers[i].name, name) == 0)
      return r->headers[i].value;
  return NULL;
}

int evs_http_error_retryable(int err) {
  switch (err) {
  case EVS_ETIMEDOUT:
  case EVS_ECLOSED:
  case UV_ECONNREFUSED:
  case UV_ECONNRESET:
  case UV_ECONNABORTED:
  case UV_EPIPE:
  case UV_ETIMEDOUT:
  case UV_EHOSTUNREACH:
  case UV_ENETUNREACH:
  case UV_EAI_AGAIN:
  case UV_EAI_NONAME: /* a Service name appears once its Endpoints exist */
    return 1;
  default:
    return 0;
  }
}

int evs_http_status_retryable(int status, int idempotent) {
  return status == 429 || status == 502 || status == 503 || status == 504 ||
         (status == 500 && idempotent);
}

static int parse_port(const char *s, size_t n, int *port) {
  if (n == 0 || n > 5)
    return UV_EINVAL;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isdigit((unsigned char)s[i]))
      return UV_EINVAL;
    v = v * 10 + (s[i] - '0');
  }
  if (v < 1 || v > 65535)
    return UV_EINVAL;
  *port = v;
  return 0;
}

static int split_authority(const char *a, size_t n, evs_http_url_t *u) {
  const char *host = a, *colon = NULL;
  size_t hlen;
  if (n > 0 && a[0] == '[') {
    const char *rb = memchr(a, ']', n);
    if (rb == NULL)
      return UV_EINVAL;
    host = a + 1;
    hlen = (size_t)(rb - host);
    if (rb + 1 < a + n && rb[1] != ':')
      return UV_EINVAL;
    colon = rb + 1 < a + n ? rb + 1 : NULL;
  } else {
    colon = memchr(a, ':', n);
    hlen = colon ? (size_t)(colon - a) : n;
  }
  if (hlen == 0 || hlen >= sizeof u->host || memchr(a, '@', n) != NULL)
    return UV_EINVAL;
  memcpy(u->host, host, hlen);
  u->host[hlen] = '\0';
  if (colon != NULL)
    return parse_port(colon + 1, (size_t)(a + n - colon - 1), &u->port);
  return 0;
}

int evs_http_url_parse(const char *url, evs_http_url_t *u) {
  memset(u, 0, sizeof *u);
  const char *rest;
  if (url == NULL)
    return UV_EINVAL;
  if (strncasecmp(url, "https://", 8) == 0) {
    u->tls = 1, u->port = 443, rest = url + 8;
  } else if (strncasecmp(url, "http://", 7) == 0) {
    u->port = 80, rest = url + 7;
  } else {
    return UV_EINVAL;
  }
  size_t alen = strcspn(rest, "/?#");
  if (rest[alen] == '#' || strchr(rest, '#') != NULL)
    return UV_EINVAL;
  for (const char *c = rest; *c; c++)
    if ((unsigned char)*c <= ' ' || *c == 0x7f)
      return UV_EINVAL;
  if (split_authority(rest, alen, u) != 0)
    return UV_EINVAL;
  u->path = rest[alen] == '/' ? rest + alen : (rest[alen] == '?' ? rest + alen : "/");
  return 0;
}
