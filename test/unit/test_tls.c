/* TLS on evs_stream against test/net_server.py with the certificates of tools/testcerts.sh:
 * the right CA, a wrong CA, an IP-only certificate reached by IP (v4 and v6), a DNS-only one
 * reached by IP (refused) and by name (accepted), a mismatching one, client-certificate auth,
 * insecure mode (accepted, with a warning logged on every connect), and the iPAddress SAN parser
 * on the certificates themselves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>

#include "evscale/error.h"
#include "evscale/log.h"
#include "evscale/stream.h"
#include "evscale/tls.h"
#include "net_helpers.h"

typedef struct {
  int connected, status, closed, eof, read_err;
  char buf[4096];
  size_t len;
} ctx_t;

static void on_connect(evs_stream_t *s, int status) {
  ctx_t *c = evs_stream_data(s);
  c->connected = 1;
  c->status = status;
}
static void on_close(evs_stream_t *s) { ((ctx_t *)evs_stream_data(s))->closed = 1; }
static void on_read(evs_stream_t *s, ssize_t n, const char *buf) {
  ctx_t *c = evs_stream_data(s);
  if (n < 0) {
    c->eof = 1;
    c->read_err = (int)n;
    return;
  }
  size_t k = (size_t)n < sizeof c->buf - c->len ? (size_t)n : sizeof c->buf - c->len;
  memcpy(c->buf + c->len, buf, k);
  c->len += k;
}

/* Starts a TLS echo server presenting `cert` (and requiring a client cert signed by the test CA
 * when client_auth). */
static void start_server(evs_test_server_t *srv, const char *cert, int client_auth,
                         const char *listen) {
  char crt[64], key[64];
  snprintf(crt, sizeof crt, "%s.crt", cert);
  snprintf(key, sizeof key, "%s.key", cert);
  const char *args[16] = {"--mode",           "echo",      "--tls-cert",
                          evs_test_cert(crt), "--tls-key", evs_test_cert(key),
                          "--listen",         listen};
  int n = 8;
  if (client_auth) {
    args[n++] = "--client-ca";
    args[n++] = evs_test_cert("ca.crt");
  }
  args[n] = NULL;
  assert_int_equal(evs_test_server_start(srv, args), 0);
}

static evs_tls_config_t *config(const char *ca, int with_client_cert, int insecure) {
  evs_tls_options_t o = {.ca_file = ca ? evs_test_cert(ca) : NULL, .insecure = insecure};
  if (with_client_cert) {
    o.cert_file = evs_test_cert("client.crt");
    o.key_file = evs_test_cert("client.key");
  }
  evs_tls_config_t *cfg = NULL;
  const char *why = NULL;
  int rc = evs_tls_config_new(&o, &cfg, &why);
  if (rc != 0)
    fail_msg("evs_tls_config_new: %s (%s)", evs_strerror(rc), why ? why : "");
  return cfg;
}

/* Connects, and on success does an encrypted echo round trip; returns the connect status. */
static int try_connect(const char *server_cert, int client_auth, const char *listen,
                       const char *host, evs_tls_config_t *cfg) {
  evs_test_server_t srv;
  start_server(&srv, server_cert, client_auth, listen);
  uv_loop_t loop;
  uv_loop_init(&loop);
  ctx_t c = {0};
  evs_stream_t *s;
  evs_stream_options_t o = {
      .host = host, .port = srv.port, .tls = cfg, .connect_timeout_ms = 20000, .data = &c};
  assert_int_equal(evs_stream_connect(&loop, &o, on_connect, &s), 0);
  assert_true(evs_test_run_until(&loop, &c.connected, 30000));
  int status = c.status;
  if (status == 0) {
    assert_true(evs_stream_is_tls(s));
    assert_int_equal(evs_stream_read_start(s, on_read), 0);
    assert_int_equal(evs_stream_write(s, "ping over tls", 13, NULL, NULL), 0);
    while (c.len < 13 && !c.eof)
      uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(c.len, 13);
    assert_memory_equal(c.buf, "ping over tls", 13);
    evs_stream_close(s, on_close);
    assert_true(evs_test_run_until(&loop, &c.closed, 5000));
  }
  assert_int_equal(evs_test_loop_close(&loop), 0);
  evs_test_server_stop(&srv);
  return status;
}

static void test_ip_only_by_ipv4(void **state) {
  (void)state;
  evs_tls_config_t *cfg = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("ip-only", 0, "127.0.0.1", "127.0.0.1", cfg), 0);
  evs_tls_config_unref(cfg);
}

static void test_ip_only_by_ipv6(void **state) {
  (void)state;
  evs_tls_config_t *cfg = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("ip-only", 0, "::1", "::1", cfg), 0);
  evs_tls_config_unref(cfg);
}

static void test_wrong_ca_refused(void **state) {
  (void)state;
  evs_tls_config_t *cfg = config("wrong-ca.crt", 0, 0);
  assert_int_equal(try_connect("ip-only", 0, "127.0.0.1", "127.0.0.1", cfg), EVS_ECERT);
  evs_tls_config_unref(cfg);
  /* And a server certificate from the wrong CA, with every name right, is refused too. */
  cfg = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("wrong-ca-server", 0, "127.0.0.1", "127.0.0.1", cfg), EVS_ECERT);
  assert_int_equal(try_connect("wrong-ca-server", 0, "127.0.0.1", "localhost", cfg), EVS_ECERT);
  evs_tls_config_unref(cfg);
}

/* The CN is not a host name and must not be used as a fallback; without an IP SAN, refused. */
static void test_dns_only_by_ip_refused(void **state) {
  (void)state;
  evs_tls_config_t *cfg = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("dns-only", 0, "127.0.0.1", "127.0.0.1", cfg), EVS_ECERT);
  evs_tls_config_unref(cfg);
}

static void test_dns_only_by_name(void **state) {
  (void)state;
  evs_tls_config_t *cfg = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("dns-only", 0, "127.0.0.1", "localhost", cfg), 0);
  evs_tls_config_unref(cfg);
}

/* ip-only reached by the name "localhost": mbedTLS checks dNSName SANs only, none match. */
static void test_ip_only_by_name_refused(void **state) {
  (void)state;
  evs_tls_config_t *cfg = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("ip-only", 0, "127.0.0.1", "localhost", cfg), EVS_ECERT);
  evs_tls_config_unref(cfg);
}

static void test_mismatch_refused(void **state) {
  (void)state;
  evs_tls_config_t *cfg = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("mismatch", 0, "127.0.0.1", "127.0.0.1", cfg), EVS_ECERT);
  assert_int_equal(try_connect("mismatch", 0, "127.0.0.1", "localhost", cfg), EVS_ECERT);
  evs_tls_config_unref(cfg);
}

static void test_client_cert(void **state) {
  (void)state;
  evs_tls_config_t *with = config("ca.crt", 1, 0), *without = config("ca.crt", 0, 0);
  assert_int_equal(try_connect("ip-only", 1, "127.0.0.1", "127.0.0.1", with), 0);
  /* Without one the server aborts the handshake (an alert, or a reset/close). */
  int rc = try_connect("ip-only", 1, "127.0.0.1", "127.0.0.1", without);
  assert_true(rc == EVS_ETLS || rc == EVS_ECLOSED || rc == UV_ECONNRESET);
  assert_string_not_equal(evs_tls_config_identity(with), evs_tls_config_identity(without));
  evs_tls_config_unref(with);
  evs_tls_config_unref(without);
}

static void test_insecure_warns(void **state) {
  (void)state;
  char path[] = "/tmp/evs-tls-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  evs_log_set_fd(fd);
  evs_tls_config_t *cfg = config("wrong-ca.crt", 0, 1);
  assert_true(evs_tls_config_insecure(cfg));
  assert_int_equal(try_connect("mismatch", 0, "127.0.0.1", "127.0.0.1", cfg), 0);
  assert_int_equal(try_connect("dns-only", 0, "127.0.0.1", "127.0.0.1", cfg), 0);
  evs_tls_config_unref(cfg);
  evs_log_set_fd(2);
  char log[8192] = {0};
  assert_true(pread(fd, log, sizeof log - 1, 0) > 0);
  close(fd);
  unlink(path);
  /* One warning per connect. */
  const char *p = strstr(log, "verification is disabled");
  assert_non_null(p);
  assert_non_null(strstr(p + 1, "verification is disabled"));
}

static void load_crt(mbedtls_x509_crt *crt, const char *name) {
  mbedtls_x509_crt_init(crt);
  assert_int_equal(mbedtls_x509_crt_parse_file(crt, evs_test_cert(name)), 0);
}

static void test_ip_san_parser(void **state) {
  (void)state;
  const unsigned char v4[4] = {127, 0, 0, 1}, v4b[4] = {127, 0, 0, 2};
  unsigned char v6[16] = {0};
  v6[15] = 1;
  mbedtls_x509_crt crt;
  load_crt(&crt, "ip-only.crt");
  assert_int_equal(evs_tls_crt_has_ip(&crt, v4, 4), 1);
  assert_int_equal(evs_tls_crt_has_ip(&crt, v6, 16), 1);
  assert_int_equal(evs_tls_crt_has_ip(&crt, v4b, 4), 0);
  assert_int_equal(evs_tls_crt_has_ip(&crt, v4, 3), 0);
  mbedtls_x509_crt_free(&crt);
  load_crt(&crt, "dns-only.crt");
  assert_int_equal(evs_tls_crt_has_ip(&crt, v4, 4), 0);
  mbedtls_x509_crt_free(&crt);
  load_crt(&crt, "mismatch.crt");
  assert_int_equal(evs_tls_crt_has_ip(&crt, v4, 4), 0);
  assert_int_equal(evs_tls_crt_has_ip(&crt, v4b, 4), 1);
  mbedtls_x509_crt_free(&crt);
  load_crt(&crt, "ca.crt"); /* no SAN at all */
  assert_int_equal(evs_tls_crt_has_ip(&crt, v4, 4), 0);
  mbedtls_x509_crt_free(&crt);
  assert_int_equal(evs_tls_crt_has_ip(NULL, v4, 4), 0);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[16384];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static void test_config_errors_and_pem(void **state) {
  (void)state;
  evs_tls_config_t *cfg = NULL;
  const char *why = NULL;
  evs_tls_options_t o = {.ca_file = "/nonexistent/ca.crt"};
  assert_int_equal(evs_tls_config_new(&o, &cfg, &why), EVS_ETLS);
  assert_non_null(why);
  o = (evs_tls_options_t){.cert_file = evs_test_cert("client.crt")};
  assert_int_equal(evs_tls_config_new(&o, &cfg, &why), UV_EINVAL);
  o = (evs_tls_options_t){.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n"};
  assert_int_equal(evs_tls_config_new(&o, &cfg, &why), EVS_ETLS);
  /* The client key of another pair does not match the certificate. */
  o = (evs_tls_options_t){.cert_file = evs_test_cert("client.crt"),
                          .key_file = evs_test_cert("ip-only.key")};
  assert_int_equal(evs_tls_config_new(&o, &cfg, &why), EVS_ETLS);
  /* In-memory PEM works like the file, and gives the same identity. */
  o = (evs_tls_options_t){.ca_pem = slurp(evs_test_cert("ca.crt"))};
  assert_int_equal(evs_tls_config_new(&o, &cfg, &why), 0);
  evs_tls_config_t *file_cfg = config("ca.crt", 0, 0);
  assert_string_equal(evs_tls_config_identity(cfg), evs_tls_config_identity(file_cfg));
  assert_int_equal(try_connect("ip-only", 0, "127.0.0.1", "127.0.0.1", cfg), 0);
  evs_tls_config_unref(file_cfg);
  evs_tls_config_unref(cfg);
}

static void test_error_conversion(void **state) {
  (void)state;
  assert_int_equal(evs_tls_error(0), 0);
  assert_int_equal(evs_tls_error(MBEDTLS_ERR_X509_CERT_VERIFY_FAILED), EVS_ECERT);
  assert_int_equal(evs_tls_error(MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY), EVS_ECLOSED);
  assert_int_equal(evs_tls_error(MBEDTLS_ERR_SSL_ALLOC_FAILED), UV_ENOMEM);
  assert_int_equal(evs_tls_error(MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE), EVS_ETLS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ip_san_parser),    cmocka_unit_test(test_error_conversion),
      cmocka_unit_test(test_ip_only_by_ipv4),  cmocka_unit_test(test_ip_only_by_ipv6),
      cmocka_unit_test(test_wrong_ca_refused), cmocka_unit_test(test_dns_only_by_ip_refused),
      cmocka_unit_test(test_dns_only_by_name), cmocka_unit_test(test_ip_only_by_name_refused),
      cmocka_unit_test(test_mismatch_refused), cmocka_unit_test(test_client_cert),
      cmocka_unit_test(test_insecure_warns),   cmocka_unit_test(test_config_errors_and_pem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
