/* The configuration: durations, the loader and every error class with its position, env
 * overrides, flags, the dump with masked secrets, the reload diff and the shipped files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config_int.h"
#include "core/node_int.h"
#include "evscale/config.h"
#include "evscale/duration.h"
#include "evscale/error.h"
#include "test_data.h"

/* ---- helpers ---- */

static int load(const char *src, char **envp, evs_config_t **cfg, evs_diag_t *d) {
  evs_diag_init(d);
  return evs_config_load_buffer(src, strlen(src), "t.yaml", envp, cfg, d);
}

static void print_diag(const evs_diag_t *d) {
  char buf[512];
  for (size_t i = 0; i < d->n; i++) {
    evs_diag_format(d, i, buf, sizeof buf);
    print_message("  diag[%zu] %s\n", i, buf);
  }
}

static evs_config_t *load_ok(const char *src, char **envp) {
  evs_config_t *cfg = NULL;
  evs_diag_t d;
  int rc = load(src, envp, &cfg, &d);
  if (rc != 0)
    print_diag(&d);
  assert_int_equal(rc, 0);
  assert_int_equal(d.n, 0);
  assert_non_null(cfg);
  evs_diag_free(&d);
  return cfg;
}

/* Loads src expecting failure and compares every formatted entry with want (NULL-terminated),
 * in order. */
static void load_errors(const char *src, char **envp, const char *const *want) {
  evs_config_t *cfg = NULL;
  evs_diag_t d;
  int rc = load(src, envp, &cfg, &d);
  assert_int_equal(rc, EVS_EINVALCFG);
  assert_null(cfg);
  size_t n = 0;
  while (want[n])
    n++;
  if (d.n != n)
    print_diag(&d);
  assert_int_equal(d.n, n);
  char buf[512];
  for (size_t i = 0; i < n; i++) {
    evs_diag_format(&d, i, buf, sizeof buf);
    assert_string_equal(buf, want[i]);
  }
  evs_diag_free(&d);
}

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = malloc(1 << 20);
  assert_non_null(buf);
  *len = fread(buf, 1, (1 << 20) - 1, f);
  buf[*len] = '\0';
  fclose(f);
  return buf;
}

static char *source_path(const char *rel) {
  const char *root = getenv("EVS_SOURCE_DIR");
  static char buf[1024];
  snprintf(buf, sizeof buf, "%s/%s", root ? root : EVS_SOURCE_DIR, rel);
  return buf;
}

/* ---- durations ---- */

static void durations_table(void **state) {
  (void)state;
  static const struct {
    const char *in;
    int rc;
    uint64_t ms;
    const char *canon;
  } t[] = {
      {"0", 0, 0, "0s"},
      {"0s", 0, 0, "0s"},
      {"500ms", 0, 500, "500ms"},
      {"15s", 0, 15000, "15s"},
      {"1m", 0, 60000, "1m"},
      {"1h", 0, 3600000, "1h"},
      {"1m30s", 0, 90000, "1m30s"},
      {"1h0m5s", 0, 3605000, "1h5s"},
      {"1.5s", 0, 1500, "1.5s"},
      {".5s", 0, 500, "500ms"},
      {"1.5h", 0, 5400000, "1h30m"},
      {"2m0.250s", 0, 120250, "2m0.25s"},
      {"300s", 0, 300000, "5m"},
      {"+10s", 0, 10000, "10s"},
      {"1s500ms", 0, 1500, "1.5s"},
      {"1.0000000000s", 0, 1000, "1s"},
      {"", UV_EINVAL, 0, NULL},
      {"30", UV_EINVAL, 0, NULL},
      {"-5s", UV_EINVAL, 0, NULL},
      {"5", UV_EINVAL, 0, NULL},
      {"5d", UV_EINVAL, 0, NULL},
      {"10us", UV_EINVAL, 0, NULL},
      {"1.5ms", UV_EINVAL, 0, NULL},
      {"0.0001s", UV_EINVAL, 0, NULL},
      {"s", UV_EINVAL, 0, NULL},
      {"1s ", UV_EINVAL, 0, NULL},
      {" 1s", UV_EINVAL, 0, NULL},
      {"1..5s", UV_EINVAL, 0, NULL},
      {"18446744073709551615ms", 0, UINT64_MAX, NULL},
      {"18446744073709551616ms", EVS_ERANGE, 0, NULL},
      {"18446744073709552h", EVS_ERANGE, 0, NULL},
      {"18446744073709551615ms1ms", EVS_ERANGE, 0, NULL},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    uint64_t ms = 12345;
    int rc = evs_duration_parse(t[i].in, &ms);
    if (rc != t[i].rc)
      print_message("input '%s'\n", t[i].in);
    assert_int_equal(rc, t[i].rc);
    if (rc != 0) {
      assert_int_equal(ms, 12345); /* untouched on error */
      continue;
    }
    assert_int_equal(ms, t[i].ms);
    char buf[64];
    evs_duration_format(ms, buf, sizeof buf);
    if (t[i].canon)
      assert_string_equal(buf, t[i].canon);
    uint64_t back = 0;
    assert_int_equal(evs_duration_parse(buf, &back), 0);
    assert_int_equal(back, ms);
  }
}

static void duration_format_round_trips(void **state) {
  (void)state;
  /* Every canonical form reads back: a sweep over awkward values. */
  uint64_t v[] = {1,     999,     1000,    1001,     59999,      60000,
                  61001, 3599999, 3600001, 86400000, UINT64_MAX, UINT64_MAX - 1};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char buf[64];
    evs_duration_format(v[i], buf, sizeof buf);
    uint64_t back = 0;
    assert_int_equal(evs_duration_parse(buf, &back), 0);
    assert_int_equal(back, v[i]);
  }
}

/* ---- defaults and shipped files ---- */

static void empty_file_is_all_defaults(void **state) {
  (void)state;
  const char *srcs[] = {"", "# only a comment\n", "---\n", "~\n"};
  for (size_t s = 0; s < sizeof srcs / sizeof srcs[0]; s++) {
    evs_config_t *c = load_ok(srcs[s], NULL);
    assert_string_equal(c->server.address, ":8080");
    assert_string_equal(c->server.host, "");
    assert_int_equal(c->server.port, 8080);
    assert_int_equal(c->server.shutdown_grace_ms, 10000);
    assert_int_equal(c->log.level, 1);
    assert_int_equal(c->log.format, 0);
    assert_string_equal(c->kubernetes.kubeconfig, "");
    assert_string_equal(c->kubernetes.service_account_dir,
                        "/var/run/secrets/kubernetes.io/serviceaccount");
    assert_int_equal(c->kubernetes.namespaces.n, 0);
    assert_true(c->kubernetes.qps == 50.0);
    assert_int_equal(c->kubernetes.burst, 100);
    assert_int_equal(c->kubernetes.adopt_keda_hpas, 0);
    assert_int_equal(c->leader_election.enabled, 1);
    assert_string_equal(c->leader_election.lease_name, "evscale");
    assert_string_equal(c->leader_election.lease_namespace, "");
    assert_int_equal(c->leader_election.lease_duration_ms, 15000);
    assert_int_equal(c->leader_election.renew_deadline_ms, 10000);
    assert_int_equal(c->leader_election.retry_period_ms, 2000);
    assert_int_equal(c->defaults.polling_interval_ms, 30000);
    assert_int_equal(c->defaults.cooldown_period_ms, 300000);
    assert_int_equal(c->defaults.active_read_interval_ms, 15000);
    assert_true(c->engine.tolerance == 0.1);
    assert_int_equal(c->limits.max_replicas, 0);
    assert_int_equal(c->limits.max_response_bytes, 16u << 20);
    assert_int_equal(c->limits.request_timeout_ms, 10000);
    assert_int_equal(c->circuit_breaker.enabled, 1);
    assert_int_equal(c->circuit_breaker.max_scale_events_per_minute, 3);
    assert_int_equal(c->circuit_breaker.cooldown_period_ms, 60000);
    assert_int_equal(c->circuit_breaker.fallback_replicas, 10);
    assert_int_equal(c->circuit_breaker.max_cooldown_period_ms, 900000);
    assert_string_equal(c->circuit_breaker.fallback_metric, "cpu:50");
    assert_int_equal(c->circuit_breaker.fallback_resource, EVS_FALLBACK_CPU);
    assert_int_equal(c->circuit_breaker.fallback_utilization, 50);
    assert_int_equal(c->backoff.initial_ms, 500);
    assert_int_equal(c->backoff.max_ms, 60000);
    assert_int_equal(c->redis.keyspace_events, EVS_KEYSPACE_AUTO);
    assert_int_equal(c->redis.configure_keyspace_events, 0);
    assert_int_equal(c->n_scaled_objects, 0);
    evs_config_free(c);
  }
}

static evs_config_t *load_shipped(const char *name) {
  evs_config_t *cfg = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  char rel[64];
  snprintf(rel, sizeof rel, "config/%s", name);
  int rc = evs_config_load_file(source_path(rel), NULL, &cfg, &d);
  if (rc != 0)
    print_diag(&d);
  assert_int_equal(rc, 0);
  assert_int_equal(d.n, 0);
  evs_diag_free(&d);
  return cfg;
}

static void shipped_files_load(void **state) {
  (void)state;
  evs_config_t *ex = load_shipped("example.yaml");
  assert_int_equal(ex->n_scaled_objects, 1);
  assert_int_equal(ex->scaled_objects[0]->kind, EVS_NODE_MAP);
  evs_config_free(ex);

  evs_config_t *dev = load_shipped("dev.yaml");
  assert_int_equal(dev->circuit_breaker.enabled, 0);
  assert_int_equal(dev->limits.max_replicas, 15);
  evs_config_free(dev);

  evs_config_t *stg = load_shipped("staging.yaml");
  assert_int_equal(stg->circuit_breaker.enabled, 1);
  assert_int_equal(stg->circuit_breaker.max_scale_events_per_minute, 5);
  assert_int_equal(stg->limits.max_replicas, 50);
  assert_int_equal(stg->circuit_breaker.cooldown_period_ms, 60000);
  assert_int_equal(stg->circuit_breaker.fallback_replicas, 10);
  evs_config_free(stg);

  evs_config_t *prod = load_shipped("prod.yaml");
  assert_int_equal(prod->circuit_breaker.enabled, 1);
  assert_int_equal(prod->circuit_breaker.max_scale_events_per_minute, 3);
  assert_int_equal(prod->limits.max_replicas, 100);
  assert_int_equal(prod->circuit_breaker.cooldown_period_ms, 60000);
  assert_int_equal(prod->circuit_breaker.fallback_replicas, 10);
  evs_config_free(prod);
}

/* example.yaml documents every key: each path of the schema is present in it. */
static void example_has_every_key(void **state) {
  (void)state;
  size_t len;
  char *buf = read_all(source_path("config/example.yaml"), &len);
  evs_doc_t *doc = NULL;
  assert_int_equal(evs_doc_parse_yaml(buf, len, "example.yaml", &doc, NULL), 0);
  const evs_node_t *root = evs_doc_root(doc);
  for (size_t i = 0; i < evs_config_key_count(); i++) {
    char sec[64];
    const char *path = evs_config_key_path(i);
    const char *dot = strchr(path, '.');
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - path), path);
    if (evs_node_get(evs_node_get(root, sec), dot + 1) == NULL)
      print_message("missing in example.yaml: %s\n", path);
    assert_non_null(evs_node_get(evs_node_get(root, sec), dot + 1));
  }
  assert_non_null(evs_node_get(root, "scaled_objects"));
  evs_doc_free(doc);
  free(buf);
}

/* The README table between the config-keys markers is what the schema prints. */
static void readme_table_matches_schema(void **state) {
  (void)state;
  size_t len;
  char *readme = read_all(source_path("README.md"), &len);
  char *begin = strstr(readme, "<!-- config-keys:begin -->");
  char *end = strstr(readme, "<!-- config-keys:end -->");
  assert_non_null(begin);
  assert_non_null(end);
  *end = '\0';
  char *table = NULL;
  size_t tlen = 0;
  FILE *f = open_memstream(&table, &tlen);
  evs_config_print_markdown(f);
  fclose(f);
  if (strstr(begin, table) == NULL)
    print_message("README.md is out of date; its table must be:\n%s", table);
  assert_non_null(strstr(begin, table));
  free(table);
  free(readme);
}

/* ---- every error class, with its exact position ---- */

static void error_type_mismatch(void **state) {
  (void)state;
  load_errors("kubernetes:\n  qps: fast\n  burst: 1.5\n  adopt_keda_hpas: \"true\"\n"
              "  namespaces: default\n",
              NULL,
              (const char *const[]){
                  "t.yaml:2:8: kubernetes.qps: expected a number, got string",
                  "t.yaml:3:10: kubernetes.burst: expected an integer, got number",
                  "t.yaml:4:20: kubernetes.adopt_keda_hpas: expected a boolean (true or false), "
                  "got string",
                  "t.yaml:5:15: kubernetes.namespaces: expected a list of strings, got string",
                  NULL});
  load_errors("server: 5\nlog: [a]\n", NULL,
              (const char *const[]){"t.yaml:1:9: server: expected a mapping, got integer",
                                    "t.yaml:2:6: log: expected a mapping, got sequence", NULL});
  load_errors(
      "- a\n", NULL,
      (const char *const[]){
          "t.yaml:1:1: the configuration must be a mapping of sections, got sequence", NULL});
}

static void error_out_of_range(void **state) {
  (void)state;
  load_errors("engine:\n  tolerance: 1\nkubernetes:\n  qps: 0\n  burst: 0\n"
              "circuit_breaker:\n  fallback_replicas: 0\n  fallback_metric: cpu:0\n"
              "limits:\n  max_replicas: -3\n  max_response_bytes: 512\n",
              NULL,
              (const char *const[]){
                  "t.yaml:2:14: engine.tolerance: 1 is out of range: must be >= 0 and < 1",
                  "t.yaml:4:8: kubernetes.qps: 0 is out of range: must be > 0 and <= 1000000",
                  "t.yaml:5:10: kubernetes.burst: 0 is out of range: must be >= 1 and <= 1000000",
                  "t.yaml:7:22: circuit_breaker.fallback_replicas: 0 is out of range: must be >= "
                  "1 and <= 2147483647",
                  "t.yaml:8:20: circuit_breaker.fallback_metric: invalid fallback metric "
                  "'cpu:0': expected cpu:N or memory:N, N in 1..1000",
                  "t.yaml:10:17: limits.max_replicas: -3 is out of range: must be >= 1 and <= "
                  "2147483647",
                  "t.yaml:11:23: limits.max_response_bytes: 512 is out of range: must be >= "
                  "1024 and <= 1073741824",
                  NULL});
}

static void error_bad_duration(void **state) {
  (void)state;
  load_errors("server:\n  shutdown_grace: 10\nbackoff:\n  initial: 10x\n  max: -1s\n"
              "defaults:\n  polling_interval: 10ms\n  cooldown_period: true\n",
              NULL,
              (const char *const[]){
                  "t.yaml:2:19: server.shutdown_grace: duration '10' has no unit (write e.g. "
                  "10s or 10ms)",
                  "t.yaml:4:12: backoff.initial: invalid duration '10x' (units: ms, s, m, h; "
                  "e.g. 500ms, 1m30s)",
                  "t.yaml:5:8: backoff.max: invalid duration '-1s' (units: ms, s, m, h; e.g. "
                  "500ms, 1m30s)",
                  "t.yaml:7:21: defaults.polling_interval: 10ms is out of range: must be "
                  "between 100ms and 24h",
                  "t.yaml:8:20: defaults.cooldown_period: expected a duration (500ms, 15s, 1m, "
                  "1h), got boolean",
                  NULL});
}

static void error_bad_enum(void **state) {
  (void)state;
  load_errors("log:\n  level: verbose\n  format: jsn\nredis:\n  keyspace_events: yes\n", NULL,
              (const char *const[]){
                  "t.yaml:2:10: log.level: invalid value 'verbose': must be one of debug, info, "
                  "warn, error",
                  "t.yaml:3:11: log.format: invalid value 'jsn': must be one of logfmt, json "
                  "(did you mean 'json'?)",
                  "t.yaml:5:20: redis.keyspace_events: invalid value 'yes': must be one of "
                  "auto, on, off",
                  NULL});
}

static void error_unknown_keys_did_you_mean(void **state) {
  (void)state;
  load_errors("circuit_breakr:\n  enabled: true\nserver:\n  adress: \":1\"\n"
              "limits:\n  tolerance: 0.2\nlog:\n  colour: red\nfoo: 1\n"
              "circuit_breaker.enabled: false\n",
              NULL,
              (const char *const[]){
                  "t.yaml:1:1: circuit_breakr: unknown key (did you mean 'circuit_breaker'?)",
                  "t.yaml:4:3: server.adress: unknown key (did you mean 'address'?)",
                  "t.yaml:6:3: limits.tolerance: unknown key (did you mean 'engine.tolerance'?)",
                  "t.yaml:8:3: log.colour: unknown key", "t.yaml:9:1: foo: unknown key",
                  "t.yaml:10:1: circuit_breaker.enabled: unknown key: write it nested "
                  "(circuit_breaker: then enabled: on the next line, indented)",
                  NULL});
}

static void error_duplicate_key(void **state) {
  (void)state;
  load_errors("log:\n  level: info\n  level: debug\n", NULL,
              (const char *const[]){"t.yaml:3:3: duplicate key 'level'", NULL});
}

static void error_yaml_syntax(void **state) {
  (void)state;
  /* An unclosed flow sequence: libyaml reports where it gave up. The env is still checked. */
  load_errors("log:\n  level: [info\n  format: json\n", (char *[]){"EVSCALE_LOG_LEVEL=loud", NULL},
              (const char *const[]){
                  "t.yaml:3:9: did not find expected ',' or ']' while parsing a flow sequence",
                  "env EVSCALE_LOG_LEVEL: log.level: invalid value 'loud': must be one of debug, "
                  "info, warn, error",
                  NULL});
  load_errors("server:\n\taddress: x\n", NULL,
              (const char *const[]){
                  "t.yaml:2:1: found character that cannot start any token while scanning for "
                  "the next token",
                  NULL});
}

/* One file with many mistakes: every one is reported, in file order, each at its own place. */
static void error_many_in_one_file(void **state) {
  (void)state;
  load_errors("server:\n"
              "  address: localhost\n"
              "  shutdown_grace: 5\n"
              "kubernetes:\n"
              "  qpss: 10\n"
              "  burst: -1\n"
              "engine:\n"
              "  tolerance: 2.5\n"
              "circuit_breaker:\n"
              "  enabled: maybe\n",
              (char *[]){"EVSCALE_BACKOFF_MAX=forever", NULL},
              (const char *const[]){
                  "t.yaml:2:12: server.address: invalid address 'localhost': expected "
                  "[host]:port, e.g. :8080 or [::1]:8080",
                  "t.yaml:3:19: server.shutdown_grace: duration '5' has no unit (write e.g. 5s "
                  "or 5ms)",
                  "t.yaml:5:3: kubernetes.qpss: unknown key (did you mean 'qps'?)",
                  "t.yaml:6:10: kubernetes.burst: -1 is out of range: must be >= 1 and <= "
                  "1000000",
                  "t.yaml:8:14: engine.tolerance: 2.5 is out of range: must be >= 0 and < 1",
                  "t.yaml:10:12: circuit_breaker.enabled: expected a boolean (true or false), "
                  "got string",
                  "env EVSCALE_BACKOFF_MAX: backoff.max: invalid duration 'forever' (units: ms, "
                  "s, m, h; e.g. 500ms, 1m30s)",
                  NULL});
}

static void error_cross_keys(void **state) {
  (void)state;
  load_errors("leader_election:\n  lease_duration: 15s\n  renew_deadline: 15s\n"
              "  retry_period: 20s\nbackoff:\n  initial: 2m\n",
              NULL,
              (const char *const[]){
                  "t.yaml:3:19: leader_election.renew_deadline: leader_election.renew_deadline "
                  "(15s) must be less than leader_election.lease_duration (15s)",
                  "t.yaml:4:17: leader_election.retry_period: leader_election.retry_period (20s) "
                  "must be less than leader_election.renew_deadline (15s)",
                  "t.yaml:6:12: backoff.initial: backoff.initial (2m) must be at most "
                  "backoff.max (1m)",
                  NULL});
  /* Only the other side set: the message points at the line that was written. */
  load_errors("circuit_breaker:\n  max_cooldown_period: 30s\n", NULL,
              (const char *const[]){"t.yaml:2:24: circuit_breaker.max_cooldown_period: "
                                    "circuit_breaker.cooldown_period (1m) must be at most "
                                    "circuit_breaker.max_cooldown_period (30s)",
                                    NULL});
}

/* Issue 14: renew_deadline + retry_period < lease_duration, so that the leader has stopped
 * writing before a follower may take the lease. */
static void error_lease_timings_sum(void **state) {
  (void)state;
  load_errors("leader_election:\n  lease_duration: 4s\n  renew_deadline: 3s\n"
              "  retry_period: 1s\n",
              NULL,
              (const char *const[]){
                  "t.yaml:3:19: leader_election.renew_deadline: leader_election.renew_deadline "
                  "(3s) + leader_election.retry_period (1s) must be less than "
                  "leader_election.lease_duration (4s)",
                  NULL});
  /* Only retry_period written (the defaults: 15s and 10s): the message points at it. */
  load_errors("leader_election:\n  retry_period: 5s\n", NULL,
              (const char *const[]){
                  "t.yaml:2:17: leader_election.retry_period: leader_election.renew_deadline "
                  "(10s) + leader_election.retry_period (5s) must be less than "
                  "leader_election.lease_duration (15s)",
                  NULL});
  /* The environment names itself. */
  load_errors("", (char *[]){"EVSCALE_LEADER_ELECTION_LEASE_DURATION=12s", NULL},
              (const char *const[]){
                  "env EVSCALE_LEADER_ELECTION_LEASE_DURATION: leader_election.lease_duration: "
                  "leader_election.renew_deadline (10s) + leader_election.retry_period (2s) must "
                  "be less than leader_election.lease_duration (12s)",
                  NULL});
  /* Just under: accepted (the e2e tests' timings). */
  evs_config_t *c = load_ok("leader_election:\n  lease_duration: 4s\n  renew_deadline: 3s\n"
                            "  retry_period: 500ms\n",
                            NULL);
  evs_config_free(c);
}

static void kubernetes_names(void **state) {
  (void)state;
  evs_config_t *c = load_ok("kubernetes:\n  namespaces: [team-a, \"0x\"]\n"
                            "  cluster_object_namespace: keda\n"
                            "leader_election:\n  lease_name: evscale.leader-1\n",
                            NULL);
  assert_string_equal(c->kubernetes.namespaces.items[1], "0x");
  evs_config_free(c);
  load_errors("kubernetes:\n  namespaces: [ok, Team_A]\n  cluster_object_namespace: -x\n"
              "leader_election:\n  lease_name: \"\"\n  lease_namespace: a.b\n",
              (char *[]){"EVSCALE_KUBERNETES_NAMESPACES=a,b c", NULL},
              (const char *const[]){
                  "t.yaml:2:15: kubernetes.namespaces: 'Team_A' is not a valid namespace name "
                  "(lower case letters, digits and '-', starting and ending with a letter or "
                  "digit, at most 63)",
                  "t.yaml:3:29: kubernetes.cluster_object_namespace: '-x' is not a valid "
                  "namespace name (lower case letters, digits and '-', starting and ending with "
                  "a letter or digit, at most 63)",
                  "t.yaml:5:15: leader_election.lease_name: '' is not a valid object name "
                  "(DNS-1123 subdomain: lower case letters, digits, '-' and '.', at most 253)",
                  "t.yaml:6:20: leader_election.lease_namespace: 'a.b' is not a valid namespace "
                  "name (lower case letters, digits and '-', starting and ending with a letter "
                  "or digit, at most 63)",
                  "env EVSCALE_KUBERNETES_NAMESPACES: kubernetes.namespaces: 'b c' is not a "
                  "valid namespace name (lower case letters, digits and '-', starting and ending "
                  "with a letter or digit, at most 63)",
                  NULL});
}

static void values_of_every_type(void **state) {
  (void)state;
  evs_config_t *c = load_ok("server:\n  address: \"[::1]:9090\"\n"
                            "kubernetes:\n  namespaces: [a, b]\n  qps: 7.5\n"
                            "limits:\n  max_response_bytes: 2048\n  max_replicas: 40\n"
                            "circuit_breaker:\n  fallback_metric: memory:80\n"
                            "redis:\n  keyspace_events: off\n",
                            NULL);
  assert_string_equal(c->server.host, "::1");
  assert_int_equal(c->server.port, 9090);
  assert_int_equal(c->kubernetes.namespaces.n, 2);
  assert_string_equal(c->kubernetes.namespaces.items[1], "b");
  assert_true(c->kubernetes.qps == 7.5);
  assert_int_equal(c->limits.max_response_bytes, 2048);
  assert_int_equal(c->limits.max_replicas, 40);
  assert_int_equal(c->circuit_breaker.fallback_resource, EVS_FALLBACK_MEMORY);
  assert_int_equal(c->circuit_breaker.fallback_utilization, 80);
  assert_int_equal(c->redis.keyspace_events, EVS_KEYSPACE_OFF);
  evs_config_free(c);
  /* Address forms. */
  static const struct {
    const char *addr, *host;
    int port;
  } ok[] = {{":0", "", 0},
            {"0.0.0.0:80", "0.0.0.0", 80},
            {"localhost:8080", "localhost", 8080},
            {"[::]:65535", "::", 65535}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char src[128];
    snprintf(src, sizeof src, "server:\n  address: \"%s\"\n", ok[i].addr);
    c = load_ok(src, NULL);
    assert_string_equal(c->server.host, ok[i].host);
    assert_int_equal(c->server.port, ok[i].port);
    evs_config_free(c);
  }
  const char *bad[] = {"8080", "::1:80", ":65536", ":", "[::1]80", "a b:1", ":+80", ":-1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char src[128];
    evs_diag_t d;
    snprintf(src, sizeof src, "server:\n  address: \"%s\"\n", bad[i]);
    assert_int_equal(load(src, NULL, &c, &d), EVS_EINVALCFG);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.items[0].path, "server.address");
    evs_diag_free(&d);
  }
}

/* ---- environment and flags ---- */

static void env_overrides(void **state) {
  (void)state;
  char *env[] = {"PATH=/bin", "EVSCALE_KUBERNETES_QPS=20.5",
                 "EVSCALE_CIRCUIT_BREAKER_ENABLED=false", "EVSCALE_DEFAULTS_POLLING_INTERVAL=1m30s",
                 "EVSCALE_KUBERNETES_NAMESPACES= team-a, team-b,,team-c ",
                 "EVSCALE_LIMITS_MAX_REPLICAS=15", "EVSCALE_SERVER_ADDRESS=127.0.0.1:9000",
                 /* What the kubelet injects for a Service named evscale: not keys. */
                 "EVSCALE_SERVICE_HOST=10.0.0.1", "EVSCALE_SERVICE_PORT=8080",
                 "EVSCALE_SERVICE_PORT_METRICS=8080", "EVSCALE_PORT=tcp://10.0.0.1:8080",
                 "EVSCALE_PORT_8080_TCP_ADDR=10.0.0.1", "EVSCALE_CONFIG=/etc/evscale/config.yaml",
                 NULL};
  /* The file says qps 10 and enabled true: env wins over the file. */
  evs_config_t *c = load_ok("kubernetes:\n  qps: 10\ncircuit_breaker:\n  enabled: true\n", env);
  assert_true(c->kubernetes.qps == 20.5);
  assert_int_equal(c->circuit_breaker.enabled, 0);
  assert_int_equal(c->defaults.polling_interval_ms, 90000);
  assert_int_equal(c->kubernetes.namespaces.n, 3);
  assert_string_equal(c->kubernetes.namespaces.items[0], "team-a");
  assert_string_equal(c->kubernetes.namespaces.items[1], "team-b");
  assert_string_equal(c->kubernetes.namespaces.items[2], "team-c");
  assert_int_equal(c->limits.max_replicas, 15);
  assert_string_equal(c->server.host, "127.0.0.1");
  assert_int_equal(c->server.port, 9000);
  evs_config_free(c);

  /* An empty value: an empty list, and "no cap". */
  c = load_ok(
      "kubernetes:\n  namespaces: [a]\nlimits:\n  max_replicas: 4\n",
      (char *[]){"EVSCALE_KUBERNETES_NAMESPACES=", "EVSCALE_LIMITS_MAX_REPLICAS=none", NULL});
  assert_int_equal(c->kubernetes.namespaces.n, 0);
  assert_int_equal(c->limits.max_replicas, 0);
  evs_config_free(c);
}

static void env_errors(void **state) {
  (void)state;
  load_errors("",
              (char *[]){"EVSCALE_CIRCUIT_BREAKER_ENABLED=yes", "EVSCALE_KUBERNETES_BURST=lots",
                         "EVSCALE_CIRCUIT_BREAKR_ENABLED=true", "EVSCALE_LOGLEVEL=debug",
                         "EVSCALE_SCALED_OBJECTS=[]", "EVSCALE_NOTHING_LIKE_IT=1", NULL},
              (const char *const[]){
                  "env EVSCALE_CIRCUIT_BREAKER_ENABLED: circuit_breaker.enabled: expected true "
                  "or false, got 'yes'",
                  "env EVSCALE_KUBERNETES_BURST: kubernetes.burst: expected an integer, got "
                  "'lots'",
                  "env EVSCALE_CIRCUIT_BREAKR_ENABLED: unknown variable (did you mean "
                  "EVSCALE_CIRCUIT_BREAKER_ENABLED?)",
                  "env EVSCALE_LOGLEVEL: unknown variable (did you mean EVSCALE_LOG_LEVEL?)",
                  "env EVSCALE_SCALED_OBJECTS: scaled_objects: has no environment form",
                  "env EVSCALE_NOTHING_LIKE_IT: unknown variable: no configuration key", NULL});
  /* A cross-key problem caused by the environment names the variable. */
  load_errors("", (char *[]){"EVSCALE_BACKOFF_INITIAL=2m", NULL},
              (const char *const[]){"env EVSCALE_BACKOFF_INITIAL: backoff.initial: "
                                    "backoff.initial (2m) must be at most backoff.max (1m)",
                                    NULL});
}

static void env_names(void **state) {
  (void)state;
  char buf[96];
  evs_config_env_name("circuit_breaker.enabled", buf, sizeof buf);
  assert_string_equal(buf, "EVSCALE_CIRCUIT_BREAKER_ENABLED");
  evs_config_env_name("kubernetes.namespaces", buf, sizeof buf);
  assert_string_equal(buf, "EVSCALE_KUBERNETES_NAMESPACES");
  /* Every key has a distinct env name (no two paths collapse to one variable). */
  size_t n = evs_config_key_count();
  for (size_t i = 0; i < n; i++) {
    for (size_t j = i + 1; j < n; j++) {
      char a[96], b[96];
      evs_config_env_name(evs_config_key_path(i), a, sizeof a);
      evs_config_env_name(evs_config_key_path(j), b, sizeof b);
      assert_string_not_equal(a, b);
    }
  }
}

static void set_like_flags(void **state) {
  (void)state;
  evs_config_t *c = load_ok("log:\n  level: warn\n", (char *[]){"EVSCALE_LOG_FORMAT=json", NULL});
  evs_diag_t d;
  evs_diag_init(&d);
  /* Flags win over env and file. */
  assert_int_equal(evs_config_set(c, "log.level", "debug", "flag --log-level", &d), 0);
  assert_int_equal(evs_config_set(c, "log.format", "logfmt", "flag --log-format", &d), 0);
  assert_int_equal(c->log.level, 0);
  assert_int_equal(c->log.format, 0);
  assert_int_equal(d.n, 0);
  /* A bad value leaves the old one. */
  assert_int_equal(evs_config_set(c, "log.level", "chatty", "flag --log-level", &d), EVS_EINVALCFG);
  assert_int_equal(c->log.level, 0);
  assert_int_equal(evs_config_set(c, "log.levle", "info", "flag --set", &d), EVS_ENOTFOUND);
  assert_int_equal(d.n, 2);
  char buf[256];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_string_equal(buf, "flag --log-level: log.level: invalid value 'chatty': must be one of "
                           "debug, info, warn, error");
  evs_diag_format(&d, 1, buf, sizeof buf);
  assert_string_equal(buf, "flag --set: log.levle: unknown key (did you mean 'log.level'?)");
  evs_diag_free(&d);
  /* The cross-key checks run again. */
  assert_int_equal(evs_config_set(c, "backoff.initial", "5m", "flag --set", &d), EVS_EINVALCFG);
  assert_int_equal(d.n, 1);
  evs_diag_free(&d);
  evs_config_free(c);
}

static void did_you_mean_and_distance(void **state) {
  (void)state;
  assert_int_equal(evs_edit_distance("circuit_breakr", "circuit_breaker"), 1);
  assert_int_equal(evs_edit_distance("qsp", "qps"), 1); /* transposition */
  assert_int_equal(evs_edit_distance("", "abc"), 3);
  assert_int_equal(evs_edit_distance("kitten", "sitting"), 3);
  const char *c[] = {"server", "log", "kubernetes", "circuit_breaker"};
  assert_string_equal(evs_did_you_mean("servr", c, 4), "server");
  assert_string_equal(evs_did_you_mean("lg", c, 4), "log");
  assert_null(evs_did_you_mean("zzz", c, 4));
  assert_null(evs_did_you_mean("completely_different", c, 4));
}

/* ---- scaled_objects ---- */

static const char so_good[] = "scaled_objects:\n"
                              "  - apiVersion: keda.sh/v1alpha1\n"
                              "    kind: ScaledObject\n"
                              "    metadata:\n"
                              "      name: worker\n"
                              "    spec:\n"
                              "      scaleTargetRef: {name: worker}\n"
                              "      triggers:\n"
                              "        - type: redis\n"
                              "          metadata:\n"
                              "            address: \"redis://:s3cretpw@redis:6379\"\n"
                              "            password: hunter2\n"
                              "            passwordFromEnv: REDIS_PASSWORD\n"
                              "            listName: jobs\n"
                              "  - apiVersion: keda.sh/v1alpha1\n"
                              "    kind: ScaledObject\n"
                              "    metadata: {name: worker, namespace: other}\n"
                              "    spec: {}\n";

static void scaled_objects_kept_as_nodes(void **state) {
  (void)state;
  evs_config_t *c = load_ok(so_good, NULL);
  assert_int_equal(c->n_scaled_objects, 2);
  const evs_node_t *so = c->scaled_objects[0];
  assert_int_equal(so->line, 2);
  assert_int_equal(so->col, 5);
  const evs_node_t *spec = evs_node_get(so, "spec");
  assert_int_equal(spec->kind, EVS_NODE_MAP);
  /* Positions survive: the document lives inside the config. */
  const evs_node_t *trig = evs_node_item(evs_node_get(spec, "triggers"), 0);
  assert_int_equal(trig->line, 9);
  evs_config_free(c);
}

static void scaled_objects_structure_errors(void **state) {
  (void)state;
  load_errors(
      "scaled_objects:\n"
      "  - apiVersion: keda.sh/v1alpha2\n"
      "    kind: ScaledObject\n"
      "    metadata: {name: a}\n"
      "    spec: {}\n"
      "  - kind: ScaledJob\n"
      "    apiVersion: keda.sh/v1alpha1\n"
      "    metadata: {}\n"
      "    spec: []\n"
      "  - 5\n"
      "  - apiVersion: keda.sh/v1alpha1\n"
      "    kind: ScaledObject\n"
      "    metadata: {name: dup}\n"
      "    spec: {}\n"
      "  - apiVersion: keda.sh/v1alpha1\n"
      "    kind: ScaledObject\n"
      "    metadata: {name: dup}\n",
      NULL,
      (const char *const[]){
          "t.yaml:2:17: scaled_objects[0].apiVersion: must be 'keda.sh/v1alpha1', got "
          "'keda.sh/v1alpha2'",
          "t.yaml:6:11: scaled_objects[1].kind: must be 'ScaledObject', got 'ScaledJob'",
          "t.yaml:8:15: scaled_objects[1].metadata.name: missing (required)",
          "t.yaml:9:11: scaled_objects[1].spec: expected a mapping, got sequence",
          "t.yaml:10:5: scaled_objects[2]: expected a mapping (a ScaledObject), got integer",
          "t.yaml:15:5: scaled_objects[4].spec: missing (required)", NULL});
  load_errors("scaled_objects:\n"
              "  - apiVersion: keda.sh/v1alpha1\n"
              "    kind: ScaledObject\n"
              "    metadata: {name: dup}\n"
              "    spec: {}\n"
              "  - apiVersion: keda.sh/v1alpha1\n"
              "    kind: ScaledObject\n"
              "    metadata: {name: dup}\n"
              "    spec: {}\n",
              NULL,
              (const char *const[]){"t.yaml:8:22: scaled_objects[1].metadata.name: duplicate "
                                    "ScaledObject 'dup' (first defined at line 4)",
                                    NULL});
  load_errors("scaled_objects: {a: 1}\n", NULL,
              (const char *const[]){"t.yaml:1:17: scaled_objects: expected a list of "
                                    "ScaledObjects, got mapping",
                                    NULL});
}

/* Thousands of ScaledObjects in the file: the name-clash check finds the one duplicate at the
 * end without comparing each object with every earlier one (issue 9: 8,000 objects took 2 s).
 * Counted through evs_node__compares (every key comparison of evs_node_get): the old check made
 * n^2/2 lookups, ~60 million comparisons for 5,000 objects. */
static void scaled_objects_many_names_checked_linearly(void **state) {
  (void)state;
  enum { N = 5000 };
  char *src = malloc((size_t)N * 160 + 512);
  size_t off = (size_t)sprintf(src, "scaled_objects:\n");
  for (int i = 0; i < N; i++)
    off += (size_t)sprintf(src + off,
                           "- apiVersion: keda.sh/v1alpha1\n  kind: ScaledObject\n"
                           "  metadata: {name: so-%d, namespace: ns-%d}\n  spec: {}\n",
                           i, i % 7);
  /* The same name in another namespace is another object; the same in ns-0 is a clash. */
  off += (size_t)sprintf(src + off, "- apiVersion: keda.sh/v1alpha1\n  kind: ScaledObject\n"
                                    "  metadata: {name: so-1, namespace: other}\n  spec: {}\n"
                                    "- apiVersion: keda.sh/v1alpha1\n  kind: ScaledObject\n"
                                    "  metadata: {name: so-0, namespace: ns-0}\n  spec: {}\n");
  evs_config_t *cfg = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  evs_node__compares = 0;
  assert_int_equal(evs_config_load_buffer(src, off, "t.yaml", NULL, &cfg, &d), EVS_EINVALCFG);
  assert_true(evs_node__compares <= 100 * N);
  assert_int_equal(d.n, 1);
  char buf[512];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_string_equal(buf, "t.yaml:20008:20: scaled_objects[5001].metadata.name: duplicate "
                           "ScaledObject 'so-0' (first defined at line 4)");
  evs_diag_free(&d);
  free(src);
}

/* A file of 20,000 unknown keys: the first 1,000 are reported, the rest counted. */
static void many_unknown_keys_counted(void **state) {
  (void)state;
  enum { N = 20000 };
  char *src = malloc((size_t)N * 32);
  size_t off = 0;
  for (int i = 0; i < N; i++)
    off += (size_t)sprintf(src + off, "%s%d: 1\n", i % 2 ? "sever" : "x", i);
  off += (size_t)sprintf(src + off, "server:\n");
  for (int i = 0; i < N; i++)
    off += (size_t)sprintf(src + off, "  adress%d: 1\n", i);
  evs_config_t *cfg = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_config_load_buffer(src, off, "t.yaml", NULL, &cfg, &d), EVS_EINVALCFG);
  assert_int_equal(d.n, 1000);
  assert_int_equal(d.dropped, 2 * N - 1000);
  char buf[512];
  evs_diag_format(&d, 1, buf, sizeof buf);
  assert_string_equal(buf, "t.yaml:2:1: sever1: unknown key (did you mean 'server'?)");
  evs_diag_free(&d);
  free(src);
}

/* A UTF-8 byte-order mark before the first line (editors on Windows write one) is accepted, and
 * positions after it are the ones the user sees (issue 10, input edges). */
static void byte_order_mark_accepted(void **state) {
  (void)state;
  evs_config_t *c = load_ok("\xEF\xBB\xBF"
                            "server:\n  address: \":9090\"\n",
                            NULL);
  assert_int_equal(c->server.port, 9090);
  evs_config_free(c);
  load_errors("\xEF\xBB\xBF"
              "server:\n  adress: \":9090\"\n",
              NULL,
              (const char *const[]){"t.yaml:2:3: server.adress: unknown key (did you mean "
                                    "'address'?)",
                                    NULL});
}

/* ---- dump ---- */

static char *dump(const evs_config_t *c) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  assert_int_equal(evs_config_dump(c, f), 0);
  fclose(f);
  return out;
}

static void dump_round_trips(void **state) {
  (void)state;
  evs_config_t *a = load_ok("server:\n  address: \"[::1]:9090\"\n"
                            "kubernetes:\n  namespaces: [a, b-2]\n  qps: 0.3\n"
                            "  context: \"tab\\there \\\"q\\\" \\\\ done\"\n"
                            "limits:\n  max_response_bytes: 1536\n  max_replicas: 7\n"
                            "defaults:\n  polling_interval: 1m30.5s\n",
                            NULL);
  char *text = dump(a);
  evs_config_t *b = load_ok(text, NULL);
  for (size_t i = 0; i < evs_config_key_count(); i++) {
    if (evs_config_changed(a, b, evs_config_key_path(i)) != 0)
      print_message("differs after dump: %s\n%s", evs_config_key_path(i), text);
    assert_int_equal(evs_config_changed(a, b, evs_config_key_path(i)), 0);
  }
  assert_non_null(strstr(text, "  polling_interval: 1m30.5s\n"));
  assert_non_null(strstr(text, "  cooldown_period: 5m\n"));
  assert_non_null(strstr(text, "  max_response_bytes: 1536\n"));
  assert_non_null(strstr(text, "scaled_objects: []\n"));
  free(text);
  evs_config_free(a);
  evs_config_free(b);
  /* Defaults print every key. */
  a = load_ok("", NULL);
  text = dump(a);
  for (size_t i = 0; i < evs_config_key_count(); i++) {
    const char *leaf = strchr(evs_config_key_path(i), '.') + 1;
    char line[96];
    snprintf(line, sizeof line, "\n  %s: ", leaf);
    assert_non_null(strstr(text, line));
  }
  assert_non_null(strstr(text, "  max_response_bytes: 16Mi\n"));
  assert_non_null(strstr(text, "  max_replicas: null\n"));
  free(text);
  evs_config_free(a);
}

static void dump_masks_secrets(void **state) {
  (void)state;
  evs_config_t *c =
      load_ok(so_good, (char *[]){"EVSCALE_KUBERNETES_KUBECONFIG=https://u:pw@x/k", NULL});
  char *text = dump(c);
  assert_null(strstr(text, "s3cretpw"));
  assert_null(strstr(text, "hunter2"));
  assert_null(strstr(text, "u:pw@"));
  assert_non_null(strstr(text, "address: \"redis://:<redacted>@redis:6379\""));
  assert_non_null(strstr(text, "password: \"<redacted>\""));
  assert_non_null(strstr(text, "kubeconfig: \"https://u:<redacted>@x/k\""));
  /* A variable's name is not a secret. */
  assert_non_null(strstr(text, "passwordFromEnv: \"REDIS_PASSWORD\""));
  assert_non_null(strstr(text, "listName: \"jobs\""));
  /* The dump of the objects is YAML again, with the same structure. */
  evs_config_t *back = load_ok(text, NULL);
  assert_int_equal(back->n_scaled_objects, 2);
  const evs_node_t *md = evs_node_get(
      evs_node_item(evs_node_get(evs_node_get(back->scaled_objects[0], "spec"), "triggers"), 0),
      "metadata");
  assert_string_equal(evs_node_text(evs_node_get(md, "listName")), "jobs");
  evs_config_free(back);
  free(text);
  evs_config_free(c);
}

/* Userinfo in every address form is masked (issue 9: "default:S3CRET@host:6379" was printed in
 * clear); the user stays, a lone user (often a token) goes. */
static void address_userinfo_masked(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"default:S3CRET@host:6379", "default:<redacted>@host:6379"},
      {":S3CRET@host:6379", ":<redacted>@host:6379"},
      {"S3CRET@host:6379", "<redacted>@host:6379"},
      {"user@host", "<redacted>@host"},
      {"u:S3CRET@[::1]:6379", "u:<redacted>@[::1]:6379"},
      {"S3CRET@[::1]:6379", "<redacted>@[::1]:6379"},
      {"[::1]:6379", "[::1]:6379"},
      {"host:6379", "host:6379"},
      {"redis://u:S3CRET@host:6379/0", "redis://u:<redacted>@host:6379/0"},
      {"rediss://:S3CRET@[::1]:6379", "rediss://:<redacted>@[::1]:6379"},
      {"u:p@ss/w@host:1", "u:<redacted>@host:1"}, /* '@' and '/' inside the password */
      {"a:S1@h1:1,b:S2@h2:2, h3:3", "a:<redacted>@h1:1,b:<redacted>@h2:2, h3:3"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[256];
    evs_config__mask_address(cases[i].in, buf, sizeof buf);
    if (strcmp(buf, cases[i].out) != 0)
      print_message("case %zu: %s\n", i, cases[i].in);
    assert_string_equal(buf, cases[i].out);
  }
}

/* Every credential field of KEDA's redis and prometheus scalers (the table in config_dump.c),
 * and addresses without a scheme, are masked in the dump; names and non-secret fields stay. */
static void dump_masks_keda_secret_fields(void **state) {
  (void)state;
  evs_config_t *c = load_ok("scaled_objects:\n"
                            "  - apiVersion: keda.sh/v1alpha1\n"
                            "    kind: ScaledObject\n"
                            "    metadata: {name: w}\n"
                            "    spec:\n"
                            "      scaleTargetRef: {name: w}\n"
                            "      triggers:\n"
                            "        - type: redis\n"
                            "          metadata:\n"
                            "            address: \"default:S3CRET1@redis:6379\"\n"
                            "            addresses: \"S3CRET2@[::1]:6379, u:S3CRET3@h2:6380\"\n"
                            "            hosts: \"S3CRET4@h1\"\n"
                            "            username: alice\n"
                            "            password: S3CRET5\n"
                            "            sentinelPassword: S3CRET6\n"
                            "            keyPassword: S3CRET7\n"
                            "            key: S3CRET8\n"
                            "            cert: S3CRET9\n"
                            "            ca: S3CRET10\n"
                            "            listName: jobs\n"
                            "        - type: prometheus\n"
                            "          metadata:\n"
                            "            serverAddress: \"http://u:S3CRET11@prom:9090\"\n"
                            "            query: \"sum(rate(x[5m] @ end()))\"\n"
                            "            bearerToken: S3CRET12\n"
                            "            token: S3CRET13\n"
                            "            customAuthHeader: X-Api-Key\n"
                            "            customAuthValue: S3CRET14\n"
                            "            apiKey: S3CRET15\n"
                            "            clientSecret: S3CRET16\n"
                            "            threshold: \"5\"\n",
                            NULL);
  char *text = dump(c);
  if (strstr(text, "S3CRET"))
    print_message("%s", text);
  assert_null(strstr(text, "S3CRET"));
  assert_non_null(strstr(text, "address: \"default:<redacted>@redis:6379\""));
  assert_non_null(strstr(text, "addresses: \"<redacted>@[::1]:6379, u:<redacted>@h2:6380\""));
  assert_non_null(strstr(text, "serverAddress: \"http://u:<redacted>@prom:9090\""));
  assert_non_null(strstr(text, "username: \"alice\""));
  assert_non_null(strstr(text, "customAuthHeader: \"X-Api-Key\""));
  assert_non_null(strstr(text, "listName: \"jobs\""));
  /* An '@' outside an address field is not userinfo: PromQL's @ modifier stays. */
  assert_non_null(strstr(text, "query: \"sum(rate(x[5m] @ end()))\""));
  free(text);
  evs_config_free(c);
}

/* Control bytes from the file never reach the terminal raw: not in the dump (keys and values)
 * and not in diagnostics (an unknown key holding ESC [2J or a CR). */
static void control_bytes_escaped(void **state) {
  (void)state;
  evs_config_t *c = load_ok("scaled_objects:\n"
                            "  - apiVersion: keda.sh/v1alpha1\n"
                            "    kind: ScaledObject\n"
                            "    metadata: {name: w}\n"
                            "    spec:\n"
                            "      scaleTargetRef: {name: w}\n"
                            "      triggers:\n"
                            "        - type: redis\n"
                            "          metadata:\n"
                            "            \"k\\e[2J\": \"v\\rX\\e[31m\"\n"
                            "            listName: jobs\n",
                            NULL);
  char *text = dump(c);
  assert_null(strchr(text, '\x1b'));
  assert_null(strchr(text, '\r'));
  assert_non_null(strstr(text, "\"k\\x1b[2J\": \"v\\x0dX\\x1b[31m\""));
  free(text);
  evs_config_free(c);

  evs_diag_t d;
  evs_config_t *bad = NULL;
  const char src[] = "log:\n  \"lev\\e[2Jel\": info\n  level: \"lo\\rud\"\n";
  assert_int_equal(load(src, NULL, &bad, &d), EVS_EINVALCFG);
  assert_true(d.n >= 2);
  for (size_t i = 0; i < d.n; i++) {
    char buf[512];
    evs_diag_format(&d, i, buf, sizeof buf);
    assert_null(strchr(buf, '\x1b'));
    assert_null(strchr(buf, '\r'));
    for (const char *p = buf; *p; p++)
      assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
  }
  char buf[512];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_non_null(strstr(buf, "lev\\x1b[2Jel"));
  /* Cut output stays terminated and the would-be length is the escaped one. */
  char small[8];
  int n = evs_diag_format(&d, 0, small, sizeof small);
  assert_int_equal((size_t)n, strlen(buf));
  assert_int_equal(strlen(small), 7);
  evs_diag_free(&d);
}

/* ---- reload diff ---- */

static void reload_diff(void **state) {
  (void)state;
  evs_config_t *old = load_ok("server:\n  address: \":8080\"\nlog:\n  level: info\n", NULL);
  evs_config_t *next = load_ok("server:\n  address: \":9999\"\nlog:\n  level: debug\n"
                               "kubernetes:\n  namespaces: [x]\n  qps: 5\n",
                               NULL);
  evs_diag_t w;
  evs_diag_init(&w);
  assert_int_equal(evs_config_diff_reload(old, next, &w), 2);
  assert_int_equal(w.n, 2);
  char buf[256];
  evs_diag_format(&w, 0, buf, sizeof buf);
  assert_string_equal(buf, "t.yaml:2:12: server.address: changed from \":8080\" to \":9999\": "
                           "needs a restart; keeping \":8080\" until then");
  evs_diag_format(&w, 1, buf, sizeof buf);
  assert_string_equal(buf, "t.yaml:6:15: kubernetes.namespaces: changed from [] to [\"x\"]: "
                           "needs a restart; keeping [] until then");
  /* Non-reloadable keys keep their old values, reloadable ones take the new ones. */
  assert_string_equal(next->server.address, ":8080");
  assert_int_equal(next->server.port, 8080);
  assert_int_equal(next->kubernetes.namespaces.n, 0);
  assert_int_equal(next->log.level, 0);
  assert_true(next->kubernetes.qps == 5.0);
  assert_int_equal(evs_config_changed(old, next, "server.address"), 0);
  assert_int_equal(evs_config_changed(old, next, "log.level"), 1);
  evs_diag_free(&w);
  /* Nothing else differs now. */
  assert_int_equal(evs_config_diff_reload(old, next, &w), 0);
  assert_int_equal(w.n, 0);
  assert_int_equal(evs_config_reloadable("server.address"), 0);
  assert_int_equal(evs_config_reloadable("log.level"), 1);
  assert_int_equal(evs_config_reloadable("scaled_objects"), 1);
  assert_int_equal(evs_config_reloadable("nope"), EVS_ENOTFOUND);
  evs_config_free(old);
  evs_config_free(next);
}

/* A real file on disk (test/data/config/broken.yaml): every error, in order, with its place. */
static void data_file_errors(void **state) {
  (void)state;
  const char *dir = evs_test_data();
  char path[1024];
  snprintf(path, sizeof path, "%s/config/broken.yaml", dir);
  evs_config_t *c = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_config_load_file(path, (char *[]){"EVSCALE_LOG_FORMAT=xml", NULL}, &c, &d),
                   EVS_EINVALCFG);
  assert_null(c);
  const char *want[] = {
      ":3:12: server.address: invalid address '8080': expected [host]:port, e.g. :8080 or "
      "[::1]:8080",
      ":4:1: circuit_breakr: unknown key (did you mean 'circuit_breaker'?)",
      ":7:8: kubernetes.qps: expected a number, got string",
      ":8:15: kubernetes.namespaces: 'Prod' is not a valid namespace name (lower case letters, "
      "digits and '-', starting and ending with a letter or digit, at most 63)",
      ":10:14: engine.tolerance: 1.5 is out of range: must be >= 0 and < 1",
      ":15:8: backoff.max: invalid duration '1 minute' (units: ms, s, m, h; e.g. 500ms, 1m30s)",
      ":17:10: log.level: invalid value 'trace': must be one of debug, info, warn, error",
  };
  size_t n = sizeof want / sizeof want[0];
  if (d.n != n + 2)
    print_diag(&d);
  assert_int_equal(d.n, n + 2);
  char buf[512], exp[1200];
  for (size_t i = 0; i < n; i++) {
    evs_diag_format(&d, i, buf, sizeof buf);
    snprintf(exp, sizeof exp, "%s%s", path, want[i]);
    assert_string_equal(buf, exp);
  }
  evs_diag_format(&d, n, buf, sizeof buf);
  assert_string_equal(buf, "env EVSCALE_LOG_FORMAT: log.format: invalid value 'xml': must be one "
                           "of logfmt, json");
  /* Cross-key rules run last, on the values that were accepted. */
  evs_diag_format(&d, n + 1, buf, sizeof buf);
  snprintf(exp, sizeof exp,
           "%s:13:19: leader_election.renew_deadline: leader_election.renew_deadline (10s) must "
           "be less than leader_election.lease_duration (10s)",
           path);
  assert_string_equal(buf, exp);
  evs_diag_free(&d);
}

static void load_file_errors(void **state) {
  (void)state;
  evs_config_t *c = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_config_load_file("/nonexistent/evscale.yaml", NULL, &c, &d), UV_ENOENT);
  assert_null(c);
  assert_int_equal(d.n, 1);
  char buf[256];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_string_equal(buf, "/nonexistent/evscale.yaml: cannot read: no such file or directory");
  evs_diag_free(&d);

  /* Odd files are refused at once, each with a message naming the file (issue 9: a FIFO used to
   * block start-up and check-config for good; the alarm fails the test instead of hanging). */
  char dir[] = "/tmp/evs_cfg_XXXXXX", fifo[64];
  assert_non_null(mkdtemp(dir));
  snprintf(fifo, sizeof fifo, "%s/fifo.yaml", dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  const struct {
    const char *path;
    int rc;
    const char *why;
  } odd[] = {
      {fifo, UV_EFTYPE, "not a regular file (a FIFO, socket or device)"},
      {dir, UV_EISDIR, "is a directory, not a file"},
      {"/dev/zero", UV_EFTYPE, "not a regular file (a FIFO, socket or device)"},
  };
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    evs_diag_init(&d);
    alarm(20);
    assert_int_equal(evs_config_load_file(odd[i].path, NULL, &c, &d), odd[i].rc);
    alarm(0);
    assert_null(c);
    assert_int_equal(d.n, 1);
    char want[256];
    snprintf(want, sizeof want, "%s: cannot read: %s", odd[i].path, odd[i].why);
    evs_diag_format(&d, 0, buf, sizeof buf);
    assert_string_equal(buf, want);
    evs_diag_free(&d);
  }
  unlink(fifo);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(durations_table),
      cmocka_unit_test(duration_format_round_trips),
      cmocka_unit_test(empty_file_is_all_defaults),
      cmocka_unit_test(shipped_files_load),
      cmocka_unit_test(example_has_every_key),
      cmocka_unit_test(readme_table_matches_schema),
      cmocka_unit_test(error_type_mismatch),
      cmocka_unit_test(error_out_of_range),
      cmocka_unit_test(error_bad_duration),
      cmocka_unit_test(error_bad_enum),
      cmocka_unit_test(error_unknown_keys_did_you_mean),
      cmocka_unit_test(error_duplicate_key),
      cmocka_unit_test(error_yaml_syntax),
      cmocka_unit_test(error_many_in_one_file),
      cmocka_unit_test(error_cross_keys),
      cmocka_unit_test(error_lease_timings_sum),
      cmocka_unit_test(kubernetes_names),
      cmocka_unit_test(values_of_every_type),
      cmocka_unit_test(env_overrides),
      cmocka_unit_test(env_errors),
      cmocka_unit_test(env_names),
      cmocka_unit_test(set_like_flags),
      cmocka_unit_test(did_you_mean_and_distance),
      cmocka_unit_test(scaled_objects_kept_as_nodes),
      cmocka_unit_test(scaled_objects_structure_errors),
      cmocka_unit_test(scaled_objects_many_names_checked_linearly),
      cmocka_unit_test(many_unknown_keys_counted),
      cmocka_unit_test(byte_order_mark_accepted),
      cmocka_unit_test(dump_round_trips),
      cmocka_unit_test(dump_masks_secrets),
      cmocka_unit_test(address_userinfo_masked),
      cmocka_unit_test(dump_masks_keda_secret_fields),
      cmocka_unit_test(control_bytes_escaped),
      cmocka_unit_test(reload_diff),
      cmocka_unit_test(data_file_errors),
      cmocka_unit_test(load_file_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
