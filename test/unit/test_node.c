/* Document trees with positions (YAML and JSON), diagnostics and field paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "evscale/diag.h"
#include "evscale/error.h"
#include "evscale/node.h"

static evs_doc_t *parse_yaml_ok(const char *src) {
  evs_doc_t *doc = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  int rc = evs_doc_parse_yaml(src, strlen(src), "t.yaml", &doc, &d);
  if (rc != 0 && d.n > 0) {
    char buf[256];
    evs_diag_format(&d, 0, buf, sizeof buf);
    print_error("unexpected: %s\n", buf);
  }
  assert_int_equal(rc, 0);
  assert_int_equal(d.n, 0);
  evs_diag_free(&d);
  return doc;
}

static void yaml_positions_and_kinds(void **state) {
  (void)state;
  const char *src = "a: 1\n"
                    "b:\n"
                    "  c: \"5\"\n"
                    "  d: [x, 2.5, true, ~]\n"
                    "e: 0x1f\n";
  evs_doc_t *doc = parse_yaml_ok(src);
  const evs_node_t *root = evs_doc_root(doc);
  assert_int_equal(root->kind, EVS_NODE_MAP);
  assert_int_equal(root->len, 3);
  const evs_node_t *a = evs_node_get(root, "a");
  assert_int_equal(a->kind, EVS_NODE_INT);
  assert_int_equal(a->num.i, 1);
  assert_int_equal(a->line, 1);
  assert_int_equal(a->col, 4);
  const evs_node_t *c = evs_node_get(evs_node_get(root, "b"), "c");
  /* Quoted scalars stay strings: "5" is not the integer 5. */
  assert_int_equal(c->kind, EVS_NODE_STR);
  assert_string_equal(evs_node_text(c), "5");
  assert_int_equal(c->line, 3);
  assert_int_equal(c->col, 6);
  const evs_node_t *d = evs_node_get(evs_node_get(root, "b"), "d");
  assert_int_equal(d->kind, EVS_NODE_SEQ);
  assert_int_equal(d->len, 4);
  assert_int_equal(evs_node_item(d, 0)->kind, EVS_NODE_STR);
  assert_int_equal(evs_node_item(d, 1)->kind, EVS_NODE_REAL);
  assert_true(evs_node_item(d, 1)->num.d == 2.5);
  assert_int_equal(evs_node_item(d, 2)->kind, EVS_NODE_BOOL);
  assert_int_equal(evs_node_item(d, 3)->kind, EVS_NODE_NULL);
  assert_null(evs_node_item(d, 4));
  assert_int_equal(evs_node_get(root, "e")->num.i, 31);
  assert_null(evs_node_get(root, "zz"));
  assert_string_equal(evs_doc_file(doc), "t.yaml");
  evs_doc_free(doc);
}

static void yaml_aliases_share_nodes(void **state) {
  (void)state;
  evs_doc_t *doc = parse_yaml_ok("base: &b {x: 1}\nother: *b\n");
  const evs_node_t *root = evs_doc_root(doc);
  assert_ptr_equal(evs_node_get(root, "base"), evs_node_get(root, "other"));
  evs_doc_free(doc);
}

static void expect_yaml_error(const char *src, uint32_t line, uint32_t col, const char *needle) {
  evs_doc_t *doc = (evs_doc_t *)1;
  evs_diag_t d;
  evs_diag_init(&d);
  int rc = evs_doc_parse_yaml(src, strlen(src), "bad.yaml", &doc, &d);
  assert_int_equal(rc, EVS_EYAML);
  assert_null(doc);
  assert_true(d.n >= 1);
  char buf[512];
  evs_diag_format(&d, 0, buf, sizeof buf);
  if (strstr(buf, needle) == NULL || d.items[0].line != line || d.items[0].col != col)
    fail_msg("got '%s' (%u:%u), want %u:%u containing '%s'", buf, d.items[0].line, d.items[0].col,
             line, col, needle);
  evs_diag_free(&d);
}

static void yaml_errors(void **state) {
  (void)state;
  expect_yaml_error("a: 1\na: 2\n", 2, 1, "duplicate key 'a'");
  expect_yaml_error("a: [1, 2\n", 2, 1, "bad.yaml:2:1:");
  expect_yaml_error("a: *nope\n", 1, 4, "unknown alias 'nope'");
  expect_yaml_error("a: 1\n---\nb: 2\n", 2, 1, "only one YAML document");
  expect_yaml_error("? [x]\n: 1\n", 1, 3, "mapping keys must be scalars");
  expect_yaml_error("a: \"x\\0y\"\n", 1, 4, "NUL byte");
}

static void yaml_deep_nesting_refused(void **state) {
  (void)state;
  char src[400];
  memset(src, '[', 200);
  src[200] = '\0';
  evs_doc_t *doc = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_not_equal(evs_doc_parse_yaml(src, strlen(src), "deep.yaml", &doc, &d), 0);
  assert_null(doc);
  assert_true(d.n >= 1);
  evs_diag_free(&d);
}

static void yaml_alias_bomb_refused(void **state) {
  (void)state;
  /* Each level doubles the expanded size: 2^30 nodes from a 300-byte file. */
  char src[2048];
  size_t off = (size_t)snprintf(src, sizeof src, "l0: &l0 [x, x]\n");
  for (int i = 1; i <= 30; i++)
    off += (size_t)snprintf(src + off, sizeof src - off, "l%d: &l%d [*l%d, *l%d]\n", i, i, i - 1,
                            i - 1);
  evs_doc_t *doc = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_doc_parse_yaml(src, off, "bomb.yaml", &doc, &d), EVS_EYAML);
  assert_null(doc);
  assert_int_equal(d.n, 1);
  assert_non_null(strstr(d.items[0].msg, "too large with its aliases expanded"));
  evs_diag_free(&d);
  /* A few aliases well under the bound are fine. */
  doc = parse_yaml_ok("a: &a [1, 2]\nb: [*a, *a, *a]\n");
  evs_doc_free(doc);
}

static void yaml_empty_document(void **state) {
  (void)state;
  evs_doc_t *doc = parse_yaml_ok("");
  assert_null(evs_doc_root(doc));
  evs_doc_free(doc);
  doc = parse_yaml_ok("# only a comment\n");
  assert_null(evs_doc_root(doc));
  evs_doc_free(doc);
}

static void json_tree(void **state) {
  (void)state;
  const char *src = "{\"spec\":{\"minReplicaCount\":2,\"x\":1.5,\"t\":[{\"type\":\"redis\"}],"
                    "\"b\":false,\"n\":null}}";
  evs_doc_t *doc = NULL;
  assert_int_equal(evs_doc_parse_json(src, strlen(src), "ns/name", &doc, NULL), 0);
  const evs_node_t *spec = evs_node_get(evs_doc_root(doc), "spec");
  assert_int_equal(evs_node_get(spec, "minReplicaCount")->kind, EVS_NODE_INT);
  assert_int_equal(evs_node_get(spec, "minReplicaCount")->num.i, 2);
  assert_string_equal(evs_node_text(evs_node_get(spec, "minReplicaCount")), "2");
  assert_int_equal(evs_node_get(spec, "x")->kind, EVS_NODE_REAL);
  assert_int_equal(evs_node_get(spec, "b")->kind, EVS_NODE_BOOL);
  assert_int_equal(evs_node_get(spec, "b")->num.b, 0);
  assert_int_equal(evs_node_get(spec, "n")->kind, EVS_NODE_NULL);
  const evs_node_t *t0 = evs_node_item(evs_node_get(spec, "t"), 0);
  assert_string_equal(evs_node_text(evs_node_get(t0, "type")), "redis");
  assert_int_equal(t0->line, 0);
  assert_string_equal(evs_node_text(evs_node_key(spec, 0)), "minReplicaCount");
  evs_doc_free(doc);
}

static void json_errors(void **state) {
  (void)state;
  evs_doc_t *doc = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_doc_parse_json("{\"a\":", 5, "x.json", &doc, &d), EVS_EJSON);
  assert_null(doc);
  assert_int_equal(d.n, 1);
  assert_int_equal(evs_doc_parse_json("{\"a\":1,\"a\":2}", 13, "x.json", &doc, &d), EVS_EJSON);
  assert_int_equal(d.n, 2);
  evs_diag_free(&d);
}

static void diag_format_and_paths(void **state) {
  (void)state;
  evs_diag_t d;
  evs_diag_init(&d);
  evs_path_t p;
  evs_path_init(&p);
  size_t m0 = evs_path_push_key(&p, "spec");
  size_t m1 = evs_path_push_key(&p, "triggers");
  size_t m2 = evs_path_push_index(&p, 1);
  evs_path_push_key(&p, "metadata");
  assert_string_equal(p.buf, "spec.triggers[1].metadata");
  evs_diag_add(&d, "ns/so", 0, 0, p.buf, "bad %s", "value");
  evs_path_pop(&p, m2);
  assert_string_equal(p.buf, "spec.triggers");
  evs_path_pop(&p, m1);
  evs_path_pop(&p, m0);
  assert_string_equal(p.buf, "");
  evs_diag_add(&d, "f.yaml", 3, 7, "server.address", "invalid");
  evs_diag_add(&d, "f.yaml", 1, 1, NULL, "plain");
  char buf[256];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_string_equal(buf, "ns/so: spec.triggers[1].metadata: bad value");
  evs_diag_format(&d, 1, buf, sizeof buf);
  assert_string_equal(buf, "f.yaml:3:7: server.address: invalid");
  evs_diag_format(&d, 2, buf, sizeof buf);
  assert_string_equal(buf, "f.yaml:1:1: plain");
  evs_diag_t d2;
  evs_diag_init(&d2);
  evs_diag_merge(&d2, &d);
  assert_int_equal(d2.n, 3);
  evs_diag_free(&d2);
  /* The list is bounded: past max, entries are counted, not stored. */
  d.max = 4;
  for (int i = 0; i < 10; i++)
    evs_diag_add(&d, "f", 1, 1, NULL, "x%d", i);
  assert_int_equal(d.n, 4);
  assert_int_equal(d.dropped, 9);
  evs_diag_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(yaml_positions_and_kinds),
      cmocka_unit_test(yaml_aliases_share_nodes),
      cmocka_unit_test(yaml_errors),
      cmocka_unit_test(yaml_deep_nesting_refused),
      cmocka_unit_test(yaml_empty_document),
      cmocka_unit_test(json_tree),
      cmocka_unit_test(yaml_alias_bomb_refused),
      cmocka_unit_test(json_errors),
      cmocka_unit_test(diag_format_and_paths),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
