/* libFuzzer target: arbitrary bytes into the HTTP server's request parsing, limits, routing and
 * response path through a socketless connection (evs_http_vconn_*), fed in chunks whose sizes
 * come from the first input byte so split points are fuzzed too. Small limits make the
 * 413/414/431 paths reachable. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/http_server.h"

static uv_loop_t g_loop;
static evs_http_server_t *g_srv;
static size_t g_out;

static void h_echo(evs_http_request_t *r, void *data) {
  (void)data;
  size_t len;
  const char *body = evs_http_request_body(r, &len);
  const char *name, *value;
  size_t n = evs_http_request_header_count(r);
  for (size_t i = 0; i < n; i++)
    if (evs_http_request_header_at(r, i, &name, &value) != 0 || !name || !value)
      abort();
  (void)evs_http_request_header(r, "content-type");
  (void)evs_http_request_query(r);
  evs_http_respond(r, 200, NULL, body, len);
  if (evs_http_respond(r, 200, NULL, "x", 1) == 0)
    abort(); /* a second answer must be refused */
}

static void h_silent(evs_http_request_t *r, void *data) {
  (void)r;
  (void)data;
}

static void sink(const char *d, size_t n, void *data) {
  (void)d;
  (void)data;
  g_out += n;
}

static void setup(void) {
  evs_http_server_options_t o;
  evs_http_server_options_init(&o);
  o.max_header_bytes = 1024;
  o.max_headers = 16;
  o.max_body_bytes = 4096;
  uv_loop_init(&g_loop);
  evs_http_server_new(&g_loop, &o, &g_srv);
  evs_http_server_route(g_srv, "/echo", EVS_HTTP_GET | EVS_HTTP_POST | EVS_HTTP_PUT, h_echo, NULL);
  evs_http_server_route(g_srv, "/metrics", EVS_HTTP_GET, h_echo, NULL);
  evs_http_server_route(g_srv, "/silent", EVS_HTTP_GET, h_silent, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (g_srv == NULL)
    setup();
  if (size == 0)
    return 0;
  size_t chunk = (size_t)(data[0] % 64) + 1;
  data++;
  size--;
  evs_http_vconn_t *v;
  if (evs_http_vconn_new(g_srv, sink, NULL, &v) != 0)
    return 0;
  int rc = 0;
  for (size_t off = 0; off < size && rc == 0; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    rc = evs_http_vconn_feed(v, (const char *)data + off, n);
  }
  evs_http_vconn_eof(v);
  evs_http_vconn_free(v);
  return 0;
}
