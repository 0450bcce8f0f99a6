/* kubeconfig: parsing, kubectl's merge rule (first file to set a key wins), context choice,
 * relative paths, *-data decoding, exec plugin rules and the fields evscale refuses. Expected
 * behaviour is client-go's tools/clientcmd (loader.go, validation.go, api/v1/defaults.go at
 * kubernetes/kubernetes 03ced770639fac6c1ab10764dfe290c13ebe5517). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/error.h"
#include "evscale/kubeconfig.h"

static evs_kubeconfig_file_t *parse_ok(const char *text, const char *file) {
  evs_diag_t d;
  evs_diag_init(&d);
  evs_kubeconfig_file_t *f = NULL;
  int rc = evs_kubeconfig_parse(text, strlen(text), file, &f, &d);
  if (rc != 0) {
    char buf[512];
    for (size_t i = 0; i < d.n; i++) {
      evs_diag_format(&d, i, buf, sizeof buf);
      fprintf(stderr, "%s\n", buf);
    }
  }
  assert_int_equal(rc, 0);
  evs_diag_free(&d);
  return f;
}

/* Resolves and expects failure; returns all messages joined by '\n' (caller frees). */
static char *resolve_fail(evs_kubeconfig_file_t **files, size_t n, const char *ctx) {
  evs_diag_t d;
  evs_diag_init(&d);
  evs_kubeconfig_t *kc = NULL;
  assert_int_equal(evs_kubeconfig_resolve(files, n, ctx, &kc, &d), EVS_EINVALCFG);
  assert_null(kc);
  assert_true(d.n > 0);
  size_t cap = 4096, len = 0;
  char *all = calloc(1, cap);
  for (size_t i = 0; i < d.n; i++)
    len += (size_t)evs_diag_format(&d, i, all + len, cap - len) + 0;
  /* evs_diag_format writes each entry; separate them for readability. */
  evs_diag_free(&d);
  return all;
}

static const char *CA_B64 =
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="; /* "-----BEGIN CERTIFICATE-----\n" */

static void test_single_file_token_and_inline_ca(void **state) {
  (void)state;
  char text[1024];
  snprintf(text, sizeof text,
           "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
           "clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443\n"
           "    certificate-authority-data: %s\n"
           "users:\n- name: u1\n  user:\n    token: abc\n"
           "contexts:\n- name: dev\n  context: {cluster: c1, user: u1, namespace: team-a}\n",
           CA_B64);
  evs_kubeconfig_file_t *f = parse_ok(text, "/etc/kube/config");
  evs_kubeconfig_t *kc = NULL;
  assert_int_equal(evs_kubeconfig_resolve(&f, 1, NULL, &kc, NULL), 0);
  assert_string_equal(kc->context, "dev");
  assert_string_equal(kc->server, "https://10.0.0.1:6443");
  assert_string_equal(kc->token, "abc");
  assert_string_equal(kc->namespace, "team-a");
  assert_string_equal(kc->ca_pem, "-----BEGIN CERTIFICATE-----\n");
  assert_int_equal(kc->ca_pem_len, 28);
  assert_null(kc->ca_file);
  assert_null(kc->exec);
  assert_int_equal(kc->insecure, 0);
  evs_kubeconfig_free(kc);
  evs_kubeconfig_file_free(f);
}

/* loader.go: "if two files specify a "red-user", only values from the first file's red-user are
 * used. Even non-conflicting entries from the second file's "red-user" are discarded." */
static void test_merge_first_file_wins(void **state) {
  (void)state;
  evs_kubeconfig_file_t *f[2];
  f[0] = parse_ok("users:\n- name: red-user\n  user:\n    token: first\n"
                  "contexts:\n- name: ctx\n  context: {cluster: blue, user: red-user}\n",
                  "/a/one");
  f[1] = parse_ok("current-context: ctx\n"
                  "clusters:\n- name: blue\n  cluster:\n    server: https://b:443\n"
                  "    certificate-authority: ca.crt\n"
                  "users:\n- name: red-user\n  user:\n    token: second\n"
                  "    client-certificate: c.crt\n    client-key: c.key\n"
                  "contexts:\n- name: ctx\n  context: {cluster: nowhere, user: nobody}\n",
                  "/b/two");
  evs_kubeconfig_t *kc = NULL;
  assert_int_equal(evs_kubeconfig_resolve(f, 2, NULL, &kc, NULL), 0);
  assert_string_equal(kc->context, "ctx");       /* current-context only in the second file */
  assert_string_equal(kc->cluster, "blue");      /* the first file's context wins */
  assert_string_equal(kc->token, "first");       /* the first file's red-user, whole */
  assert_null(kc->cert_file);                    /* the second's extra fields are discarded */
  assert_string_equal(kc->ca_file, "/b/ca.crt"); /* relative to the file that named it */
  evs_kubeconfig_free(kc);
  /* Swapped order: the other definitions win. */
  evs_kubeconfig_file_t *g[2] = {f[1], f[0]};
  char *msg = resolve_fail(g, 2, NULL);
  assert_non_null(strstr(msg, "cluster \"nowhere\" was not found"));
  assert_non_null(strstr(msg, "user \"nobody\" was not found"));
  free(msg);
  evs_kubeconfig_file_free(f[0]);
  evs_kubeconfig_file_free(f[1]);
}

static void test_named_context_paths_and_exec(void **state) {
  (void)state;
  evs_kubeconfig_file_t *f = parse_ok(
      "current-context: other\n"
      "clusters:\n- name: c\n  cluster: {server: 'https://[::1]:6443', insecure-skip-tls-verify: "
      "true}\n"
      "users:\n"
      "- name: e\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n"
      "      command: ./bin/plugin\n      args: [token, --cluster, x]\n"
      "      env: [{name: A, value: '1'}, {name: B, value: ''}]\n      provideClusterInfo: true\n"
      "- name: p\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: aws,"
      " interactiveMode: Never}\n"
      "- name: t\n  user: {tokenFile: tok, client-certificate: /abs/c, client-key: k}\n"
      "contexts:\n- name: other\n  context: {cluster: c, user: t}\n"
      "- name: ex\n  context: {cluster: c, user: e}\n- name: path\n  context: {cluster: c, user: "
      "p}\n",
      "conf/kc.yaml");
  evs_kubeconfig_t *kc = NULL;
  assert_int_equal(evs_kubeconfig_resolve(&f, 1, "ex", &kc, NULL), 0);
  assert_int_equal(kc->insecure, 1);
  assert_non_null(kc->exec);
  assert_int_equal(kc->exec->version, EVS_EXEC_V1BETA1); /* interactiveMode defaults */
  assert_string_equal(kc->exec->command, "conf/./bin/plugin");
  assert_int_equal(kc->exec->nargs, 3);
  assert_string_equal(kc->exec->args[1], "--cluster");
  assert_int_equal(kc->exec->nenv, 2);
  assert_string_equal(kc->exec->env[0].name, "A");
  assert_string_equal(kc->exec->env[0].value, "1");
  assert_string_equal(kc->exec->env[1].value, "");
  assert_int_equal(kc->exec->provide_cluster_info, 1);
  evs_kubeconfig_free(kc);
  assert_int_equal(evs_kubeconfig_resolve(&f, 1, "path", &kc, NULL), 0);
  assert_string_equal(kc->exec->command, "aws"); /* a PATH command is not a file reference */
  assert_int_equal(kc->exec->version, EVS_EXEC_V1);
  evs_kubeconfig_free(kc);
  assert_int_equal(evs_kubeconfig_resolve(&f, 1, "", &kc, NULL), 0); /* current-context */
  assert_string_equal(kc->token_file, "conf/tok");
  assert_string_equal(kc->cert_file, "/abs/c");
  assert_string_equal(kc->key_file, "conf/k");
  evs_kubeconfig_free(kc);
  evs_kubeconfig_file_free(f);
}

static void expect_refused(const char *user_yaml, const char *needle, const char *at) {
  char text[2048];
  snprintf(text, sizeof text,
           "current-context: x\nclusters:\n- name: c\n  cluster:\n    server: https://h:1\n"
           "users:\n- name: u\n  user:\n%s"
           "contexts:\n- name: x\n  context: {cluster: c, user: u}\n",
           user_yaml);
  evs_kubeconfig_file_t *f = parse_ok(text, "kc");
  char *msg = resolve_fail(&f, 1, NULL);
  if (strstr(msg, needle) == NULL || (at && strstr(msg, at) == NULL))
    fail_msg("wanted \"%s\" at \"%s\" in: %s", needle, at ? at : "", msg);
  free(msg);
  evs_kubeconfig_file_free(f);
}

static void test_refusals_name_file_position_and_field(void **state) {
  (void)state;
  expect_refused("    exec: {apiVersion: client.authentication.k8s.io/v1, command: x}\n",
                 "interactiveMode must be specified", "users.u.user.exec.interactiveMode");
  expect_refused("    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: x,"
                 " interactiveMode: Always}\n",
                 "without a terminal", NULL);
  expect_refused("    exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: x}\n",
                 "removed in Kubernetes 1.24", NULL);
  expect_refused("    exec: {command: x}\n", "apiVersion must be specified", NULL);
  expect_refused(
      "    exec: {apiVersion: client.authentication.k8s.io/v1beta1, env: [{value: 1}]}\n",
      "command must be specified", NULL);
  expect_refused("    auth-provider: {name: gcp}\n", "gke-gcloud-auth-plugin", "kc:9:20");
  expect_refused("    username: admin\n    password: secret\n", "basic authentication", NULL);
  expect_refused("    as: someone\n", "impersonation", NULL);
  expect_refused("    client-certificate: c.crt\n", "client-key-data or client-key", NULL);
  expect_refused("    client-key-data: '!!!notbase64'\n", "not valid base64", NULL);
  /* proxy-url on the cluster. */
  evs_kubeconfig_file_t *f =
      parse_ok("current-context: x\nclusters:\n- name: c\n  cluster:\n    server: https://h:1\n"
               "    proxy-url: http://proxy:3128\nusers:\n- name: u\n  user: {}\n"
               "contexts:\n- name: x\n  context: {cluster: c, user: u}\n",
               "kc");
  char *msg = resolve_fail(&f, 1, NULL);
  assert_non_null(strstr(msg, "kc:6:16: clusters.c.cluster.proxy-url"));
  assert_non_null(strstr(msg, "does not connect through a proxy"));
  free(msg);
  evs_kubeconfig_file_free(f);
}

static void test_missing_pieces(void **state) {
  (void)state;
  evs_kubeconfig_file_t *f = parse_ok("", "empty");
  char *msg = resolve_fail(&f, 1, NULL);
  assert_non_null(strstr(msg, "no context chosen"));
  free(msg);
  msg = resolve_fail(&f, 1, "prod");
  assert_non_null(strstr(msg, "context \"prod\" was not found"));
  free(msg);
  evs_kubeconfig_file_free(f);
  f = parse_ok("clusters:\n- name: c\n  cluster: {insecure-skip-tls-verify: true}\n"
               "contexts:\n- name: x\n  context: {cluster: c}\n",
               "k");
  msg = resolve_fail(&f, 1, "x");
  assert_non_null(strstr(msg, "no server found for cluster \"c\""));
  assert_non_null(strstr(msg, "user was not specified for context \"x\""));
  free(msg);
  evs_kubeconfig_file_free(f);
}

static void test_parse_errors(void **state) {
  (void)state;
  evs_diag_t d;
  evs_diag_init(&d);
  evs_kubeconfig_file_t *f = NULL;
  const char *dup = "clusters:\n- name: a\n  cluster: {server: https://x}\n"
                    "- name: a\n  cluster: {server: https://y}\n";
  assert_int_equal(evs_kubeconfig_parse(dup, strlen(dup), "k", &f, &d), EVS_EINVALCFG);
  assert_null(f);
  char buf[512];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_non_null(strstr(buf, "k:4:9: clusters[1]: cluster name \"a\" appears twice"));
  evs_diag_free(&d);
  evs_diag_init(&d);
  const char *notmap = "- a\n- b\n";
  assert_int_equal(evs_kubeconfig_parse(notmap, strlen(notmap), "k", &f, &d), EVS_EINVALCFG);
  evs_diag_free(&d);
  evs_diag_init(&d);
  const char *bad = "clusters: [\n";
  assert_int_equal(evs_kubeconfig_parse(bad, strlen(bad), "k", &f, &d), EVS_EYAML);
  evs_diag_free(&d);
}

static void test_split_env(void **state) {
  (void)state;
  char **v = NULL;
  int n = evs_kubeconfig_split_env("/a::/b:/a:", &v);
  assert_int_equal(n, 2);
  assert_string_equal(v[0], "/a");
  assert_string_equal(v[1], "/b");
  for (int i = 0; i < n; i++)
    free(v[i]);
  free(v);
  assert_int_equal(evs_kubeconfig_split_env("", &v), 0);
  free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_file_token_and_inline_ca),
      cmocka_unit_test(test_merge_first_file_wins),
      cmocka_unit_test(test_named_context_paths_and_exec),
      cmocka_unit_test(test_refusals_name_file_position_and_field),
      cmocka_unit_test(test_missing_pieces),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_split_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
