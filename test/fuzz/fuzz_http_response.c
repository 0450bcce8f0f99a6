/* libFuzzer target: arbitrary bytes as an HTTP response to the client's parser (no sockets).
 *
 * Byte 0 picks the mode: bit 0 HEAD request, bit 1 streaming (body to a callback, which aborts
 * after a few chunks when bit 2 is set), bits 3-4 the size limit (none, 64 B, 1 KiB, 16 MiB).
 * Byte 1 is the feed step, so the parser also sees the response cut at every boundary, as the
 * socket would deliver it. At the end the peer "closes" (evs_http__parser_eof). Then the same
 * bytes go through the URL parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/http_client.h"

typedef struct {
  int chunks, abort_after;
  size_t bytes;
} sink_t;

static int on_head(void *ctx) {
  (void)ctx;
  return 0;
}

static int on_body(void *ctx, const char *buf, size_t n) {
  sink_t *s = ctx;
  s->bytes += n;
  if (n > 0 && buf[0] == '\x7f')
    s->bytes++;
  return s->abort_after > 0 && ++s->chunks >= s->abort_after;
}

static void check_response(const evs_http__parser_t *p) {
  const evs_http_response_t *r = &p->resp;
  for (size_t i = 0; i < r->nheaders; i++)
    if (strlen(r->headers[i].name) + strlen(r->headers[i].value) > p->hbuf_len)
      abort();
  if (r->body != NULL && r->body[r->body_len] != '\0')
    abort();
  (void)evs_http_response_header(r, "Retry-After");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  static const size_t limits[] = {0, 64, 1024, 16u << 20};
  uint8_t mode = data[0];
  size_t step = data[1] ? data[1] : size;
  data += 2;
  size -= 2;
  evs_http__parser_t p;
  sink_t sink = {.abort_after = (mode & 4) ? 3 : 0};
  evs_http__parser_init(&p, mode & 1, limits[(mode >> 3) & 3]);
  if (mode & 2) {
    p.streaming = 1;
    p.on_head = on_head;
    p.on_body = on_body;
    p.ctx = &sink;
  }
  int rc = 0;
  for (size_t off = 0; off < size && rc == 0;) {
    size_t n = size - off < step ? size - off : step, used;
    rc = evs_http__parser_feed(&p, (const char *)data + off, n, &used);
    if (rc == 1 && used > n)
      abort();
    off += n;
  }
  if (rc == 0)
    rc = evs_http__parser_eof(&p);
  if (rc == 1)
    check_response(&p);
  (void)evs_http__parser_keep_alive(&p);
  evs_http__parser_free(&p);

  char *url = malloc(size + 1);
  if (url != NULL) {
    memcpy(url, data, size);
    url[size] = '\0';
    evs_http_url_t u;
    if (evs_http_url_parse(url, &u) == 0 && (u.path == NULL || u.host[0] == '\0'))
      abort();
    free(url);
  }
  return 0;
}
