/* Exec credential plugins: the decoder's rules and KUBERNETES_EXEC_INFO (client-go's
 * plugin/pkg/client/auth/exec/exec.go), and real child processes on a real loop: a script
 * plugin's token, client certificate, environment, failure, missing command, hang and cancel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "evscale/error.h"
#include "evscale/execcred.h"

#define V1B "client.authentication.k8s.io/v1beta1"
#define V1 "client.authentication.k8s.io/v1"

static int decode(const char *json, evs_exec_version_t v, evs_execcred_t *c, char *why) {
  return evs_execcred_decode(json, strlen(json), v, c, why, 256);
}

static void test_decode_rules(void **state) {
  (void)state;
  evs_execcred_t c;
  char why[256];
  assert_int_equal(decode("{\"apiVersion\":\"" V1B "\",\"kind\":\"ExecCredential\","
                          "\"status\":{\"token\":\"t0k\",\"expirationTimestamp\":"
                          "\"2026-11-30T08:00:00Z\"}}",
                          EVS_EXEC_V1BETA1, &c, why),
                   0);
  assert_string_equal(c.token, "t0k");
  assert_int_equal(c.expires_ms, 1796025600000LL); /* date -d 2026-11-30T08:00:00Z +%s */
  evs_execcred_clear(&c);
  /* Offsets and fractions (metav1.Time is RFC 3339). */
  assert_int_equal(decode("{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":"
                          "{\"clientCertificateData\":\"C\",\"clientKeyData\":\"K\","
                          "\"expirationTimestamp\":\"2026-11-30T09:00:00.250+01:00\"}}",
                          EVS_EXEC_V1, &c, why),
                   0);
  assert_null(c.token);
  assert_string_equal(c.cert_pem, "C");
  assert_string_equal(c.key_pem, "K");
  assert_int_equal(c.expires_ms, 1796025600250LL);
  evs_execcred_clear(&c);
  struct {
    const char *json, *needle;
  } bad[] = {
      {"not json", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {"{\"apiVersion\":\"" V1B "\",\"kind\":\"Other\"}", "kind is not ExecCredential"},
      {"{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"x\"}}",
       "plugin returned version " V1},
      {"{\"apiVersion\":\"" V1B "\",\"kind\":\"ExecCredential\"}", "didn't return a status"},
      {"{\"apiVersion\":\"" V1B "\",\"kind\":\"ExecCredential\",\"status\":{}}",
       "didn't return a token or cert/key pair"},
      {"{\"apiVersion\":\"" V1B "\",\"kind\":\"ExecCredential\",\"status\":"
       "{\"clientCertificateData\":\"C\"}}",
       "only certificate or key"},
      {"{\"apiVersion\":\"" V1B "\",\"kind\":\"ExecCredential\",\"status\":"
       "{\"token\":\"secret-value\",\"expirationTimestamp\":\"tomorrow\"}}",
       "unparsable expirationTimestamp"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(decode(bad[i].json, EVS_EXEC_V1BETA1, &c, why), EVS_EPARSE);
    if (strstr(why, bad[i].needle) == NULL)
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, why, bad[i].needle);
    assert_null(strstr(why, "secret-value")); /* a credential never reaches a message */
    assert_null(c.token);
  }
}

static void test_refresh_at(void **state) {
  (void)state;
  assert_int_equal(evs_execcred_refresh_at(1000, 0), INT64_MAX);
  assert_int_equal(evs_execcred_refresh_at(0, 900000), 840000); /* 15 min token: 1 min early */
  assert_int_equal(evs_execcred_refresh_at(0, 60000), 30000);   /* short-lived: half-life */
  assert_int_equal(evs_execcred_refresh_at(5000, 4000), 5000);  /* already expired: now */
}

static void test_exec_info(void **state) {
  (void)state;
  evs_kubeconfig_exec_t x = {.command = "p", .version = EVS_EXEC_V1, .provide_cluster_info = 1};
  evs_kubeconfig_t kc = {.server = "https://127.0.0.1:6443",
                         .ca_pem = "PEM",
                         .ca_pem_len = 3,
                         .insecure = 0,
                         .exec = &x};
  char *info = NULL;
  assert_int_equal(evs_execcred_info(&kc, &info), 0);
  json_t *j = json_loads(info, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "apiVersion")), V1);
  assert_string_equal(json_string_value(json_object_get(j, "kind")), "ExecCredential");
  json_t *spec = json_object_get(j, "spec");
  assert_true(json_is_false(json_object_get(spec, "interactive")));
  json_t *cl = json_object_get(spec, "cluster");
  assert_string_equal(json_string_value(json_object_get(cl, "server")), "https://127.0.0.1:6443");
  assert_string_equal(json_string_value(json_object_get(cl, "certificate-authority-data")), "UEVN");
  json_decref(j);
  free(info);
  x.provide_cluster_info = 0; /* then no cluster at all */
  assert_int_equal(evs_execcred_info(&kc, &info), 0);
  assert_null(strstr(info, "cluster"));
  free(info);
}

/* --- real plugins ---------------------------------------------------------------------- */

typedef struct {
  int calls, status;
  evs_execcred_t cred;
  char msg[4096];
} got_t;

static void on_cred(void *arg, int status, evs_execcred_t *cred, const char *msg) {
  got_t *g = arg;
  g->calls++;
  g->status = status;
  snprintf(g->msg, sizeof g->msg, "%s", msg);
  if (cred) { /* take the strings */
    g->cred = *cred;
    memset(cred, 0, sizeof *cred);
  }
}

static char dir[64];

static char *script(const char *name, const char *body) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "#!/bin/sh\n%s\n", body);
  fclose(f);
  chmod(path, 0755);
  return path;
}

static int run(const char *cmd, char **args, size_t nargs, evs_kubeconfig_exec_t *xo,
               uint64_t timeout_ms, got_t *g, int cancel) {
  evs_kubeconfig_exec_t x = {
      .command = (char *)cmd, .args = args, .nargs = nargs, .version = EVS_EXEC_V1BETA1};
  if (xo) {
    xo->command = (char *)cmd;
    x = *xo;
  }
  evs_kubeconfig_t kc = {.server = "https://127.0.0.1:1", .exec = &x};
  uv_loop_t loop;
  uv_loop_init(&loop);
  memset(g, 0, sizeof *g);
  evs_execcred_run_t *r = NULL;
  int rc = evs_execcred_start(&loop, &kc, timeout_ms, on_cred, g, &r);
  if (rc == 0 && cancel)
    evs_execcred_cancel(r);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0); /* every handle closed */
  if (rc == 0)
    assert_int_equal(g->calls, 1); /* exactly once */
  return rc;
}

static void test_plugin_token_and_env(void **state) {
  (void)state;
  char info_path[128];
  snprintf(info_path, sizeof info_path, "%s/info.json", dir);
  char body[1024];
  snprintf(body, sizeof body,
           "printf '%%s' \"$KUBERNETES_EXEC_INFO\" > %s\n"
           "echo \"some progress on stderr\" >&2\n"
           "printf '{\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\",\"status\":"
           "{\"token\":\"%%s-%%s\"}}' \"$EVS_A\" \"$1\"",
           info_path, V1B);
  char *cmd = script("tok.sh", body);
  evs_kubeconfig_env_t env[] = {{"EVS_A", "fromkubeconfig"}};
  char *args[] = {"arg1"};
  evs_kubeconfig_exec_t x = {.args = args,
                             .nargs = 1,
                             .env = env,
                             .nenv = 1,
                             .version = EVS_EXEC_V1BETA1,
                             .provide_cluster_info = 1};
  setenv("EVS_A", "inherited", 1); /* the kubeconfig's env wins over evscale's own */
  got_t g;
  assert_int_equal(run(cmd, NULL, 0, &x, 10000, &g, 0), 0);
  unsetenv("EVS_A");
  assert_int_equal(g.status, 0);
  assert_string_equal(g.cred.token, "fromkubeconfig-arg1");
  assert_int_equal(g.cred.expires_ms, 0);
  evs_execcred_clear(&g.cred);
  FILE *f = fopen(info_path, "r");
  assert_non_null(f);
  char buf[1024] = {0};
  assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
  fclose(f);
  json_t *j = json_loads(buf, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "apiVersion")), V1B);
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(json_object_get(j, "spec"), "cluster"), "server")),
                      "https://127.0.0.1:1");
  json_decref(j);
}

static void test_plugin_client_certificate(void **state) {
  (void)state;
  char body[512];
  snprintf(body, sizeof body,
           "printf '{\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\",\"status\":"
           "{\"clientCertificateData\":\"CERT\",\"clientKeyData\":\"KEY\","
           "\"expirationTimestamp\":\"2030-01-01T00:00:00Z\"}}'",
           V1);
  evs_kubeconfig_exec_t x = {.version = EVS_EXEC_V1};
  got_t g;
  assert_int_equal(run(script("cert.sh", body), NULL, 0, &x, 10000, &g, 0), 0);
  assert_int_equal(g.status, 0);
  assert_string_equal(g.cred.cert_pem, "CERT");
  assert_string_equal(g.cred.key_pem, "KEY");
  assert_int_equal(g.cred.expires_ms, 1893456000000LL);
  evs_execcred_clear(&g.cred);
}

static void test_plugin_failures(void **state) {
  (void)state;
  got_t g;
  /* Non-zero exit: the stderr tail, on one line, is the message. */
  assert_int_equal(run(script("fail.sh", "echo 'no credentials:' >&2; echo 'run aws sso login' >&2;"
                                         " exit 3"),
                       NULL, 0, NULL, 10000, &g, 0),
                   0);
  assert_int_equal(g.status, EVS_ESTATUS);
  assert_non_null(strstr(g.msg, "exit status 3: no credentials: run aws sso login"));
  /* Something else on stdout. */
  assert_int_equal(run(script("junk.sh", "echo hello"), NULL, 0, NULL, 10000, &g, 0), 0);
  assert_int_equal(g.status, EVS_EPARSE);
  assert_non_null(strstr(g.msg, "decoding stdout"));
  /* A missing command: nothing starts; the message carries the install hint. */
  evs_kubeconfig_exec_t x = {.version = EVS_EXEC_V1BETA1,
                             .install_hint = "install aws-cli: https://aws.amazon.com/cli/"};
  int rc = run("/nonexistent/aws", NULL, 0, &x, 10000, &g, 0);
  assert_int_equal(rc, UV_ENOENT);
  assert_int_equal(g.calls, 0);
  evs_kubeconfig_t kc = {.exec = &x};
  char msg[256];
  evs_execcred_start_error(&kc, rc, msg, sizeof msg);
  assert_non_null(strstr(msg, "/nonexistent/aws could not be started"));
  assert_non_null(strstr(msg, "install aws-cli"));
}

static void test_plugin_hang_and_cancel(void **state) {
  (void)state;
  got_t g;
  uint64_t t0 = uv_hrtime();
  assert_int_equal(run(script("hang.sh", "exec sleep 60"), NULL, 0, NULL, 300, &g, 0), 0);
  assert_int_equal(g.status, EVS_ETIMEDOUT);
  assert_true((uv_hrtime() - t0) / 1000000 < 30000); /* killed, not waited for */
  t0 = uv_hrtime();
  assert_int_equal(run(script("hang2.sh", "exec sleep 60"), NULL, 0, NULL, 60000, &g, 1), 0);
  assert_int_equal(g.status, EVS_ECANCELED);
  assert_true((uv_hrtime() - t0) / 1000000 < 30000);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/evs-execcred-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_rules),
      cmocka_unit_test(test_refresh_at),
      cmocka_unit_test(test_exec_info),
      cmocka_unit_test(test_plugin_token_and_env),
      cmocka_unit_test(test_plugin_client_certificate),
      cmocka_unit_test(test_plugin_failures),
      cmocka_unit_test(test_plugin_hang_and_cancel),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
