/* Document trees with positions (YAML and JSON), diagnostics and field paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/node_int.h"
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

/* ---- large inputs stay linear (issue 9) ----
 * These count key and anchor-name comparisons (evs_node__compares) instead of timing: a scan per
 * key costs n^2/2 of them (1.25e9 for 50,000 keys), a hash about one per key. The bound, 4 per
 * key, leaves room for probing and fails by orders of magnitude if the scans come back. */

#define BIG 50000

/* "k0000000: 0\n" ... with `dup` appended as a last key when not NULL. */
static char *big_map_yaml(size_t n, const char *dup, size_t *len) {
  char *src = malloc(n * 24 + 64);
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += (size_t)sprintf(src + off, "k%07zu: %zu\n", i, i);
  if (dup)
    off += (size_t)sprintf(src + off, "%s: last\n", dup);
  *len = off;
  return src;
}

static void yaml_big_map_linear_and_hashed(void **state) {
  (void)state;
  size_t len;
  char *src = big_map_yaml(BIG, NULL, &len);
  evs_doc_t *doc = NULL;
  evs_node__compares = 0;
  assert_int_equal(evs_doc_parse_yaml(src, len, "big.yaml", &doc, NULL), 0);
  assert_true(evs_node__compares <= 4 * BIG);
  const evs_node_t *root = evs_doc_root(doc);
  assert_int_equal(root->len, BIG);
  assert_non_null(root->num.index);
  /* Every key is found, at its own value, in O(1) each. */
  evs_node__compares = 0;
  char key[32];
  for (size_t i = 0; i < BIG; i++) {
    snprintf(key, sizeof key, "k%07zu", i);
    const evs_node_t *v = evs_node_get(root, key);
    assert_non_null(v);
    assert_int_equal(v->num.i, (int64_t)i);
    assert_int_equal(v->line, i + 1);
  }
  assert_null(evs_node_get(root, "k"));
  assert_null(evs_node_get(root, "k00000000"));
  assert_true(evs_node__compares <= 4 * BIG);
  evs_doc_free(doc);
  free(src);
}

static void yaml_big_map_duplicate_at_the_end(void **state) {
  (void)state;
  size_t len;
  char *src = big_map_yaml(BIG, "k0000000", &len);
  evs_doc_t *doc = (evs_doc_t *)1;
  evs_diag_t d;
  evs_diag_init(&d);
  evs_node__compares = 0;
  assert_int_equal(evs_doc_parse_yaml(src, len, "big.yaml", &doc, &d), EVS_EYAML);
  assert_true(evs_node__compares <= 4 * BIG);
  assert_null(doc);
  assert_int_equal(d.n, 1);
  char buf[256];
  evs_diag_format(&d, 0, buf, sizeof buf);
  assert_string_equal(buf, "big.yaml:50001:1: duplicate key 'k0000000'");
  evs_diag_free(&d);
  free(src);
}

/* Around the size where maps start being hashed: duplicates are found, lookups answer, in maps
 * of every size and with the duplicate in every position. */
static void yaml_maps_around_the_index_threshold(void **state) {
  (void)state;
  for (size_t n = 1; n <= 2 * EVS_NODE__INDEX_MIN + 2; n++) {
    char src[1024], key[16];
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
      off += (size_t)snprintf(src + off, sizeof src - off, "key%zu: %zu\n", i, i);
    evs_doc_t *doc = parse_yaml_ok(src);
    const evs_node_t *root = evs_doc_root(doc);
    assert_int_equal(root->num.index != NULL, n >= EVS_NODE__INDEX_MIN);
    for (size_t i = 0; i < n; i++) {
      snprintf(key, sizeof key, "key%zu", i);
      assert_int_equal(evs_node_get(root, key)->num.i, (int64_t)i);
    }
    assert_null(evs_node_get(root, "key"));
    evs_doc_free(doc);
    for (size_t dup = 0; dup < n; dup++) {
      char bad[1100];
      snprintf(bad, sizeof bad, "%skey%zu: again\n", src, dup);
      snprintf(key, sizeof key, "'key%zu'", dup);
      expect_yaml_error(bad, (uint32_t)n + 1, 1, key);
    }
  }
}

static void json_big_object_hashed(void **state) {
  (void)state;
  char *src = malloc(BIG * 24 + 8);
  size_t off = 0;
  src[off++] = '{';
  for (size_t i = 0; i < BIG; i++)
    off += (size_t)sprintf(src + off, "%s\"k%07zu\":%zu", i ? "," : "", i, i);
  src[off++] = '}';
  evs_doc_t *doc = NULL;
  assert_int_equal(evs_doc_parse_json(src, off, "big.json", &doc, NULL), 0);
  const evs_node_t *root = evs_doc_root(doc);
  assert_non_null(root->num.index);
  evs_node__compares = 0;
  char key[32];
  for (size_t i = 0; i < BIG; i++) {
    snprintf(key, sizeof key, "k%07zu", i);
    assert_int_equal(evs_node_get(root, key)->num.i, (int64_t)i);
  }
  assert_null(evs_node_get(root, "nope"));
  assert_true(evs_node__compares <= 4 * BIG);
  evs_doc_free(doc);
  free(src);
}

/* Many anchors, then an alias to each, oldest first: the old lookup scanned back from the
 * newest anchor, n^2/2 name comparisons. */
static void yaml_many_anchors_linear(void **state) {
  (void)state;
  char *src = malloc(BIG * 32 + 32);
  size_t off = (size_t)sprintf(src, "defs:\n");
  for (size_t i = 0; i < BIG; i++)
    off += (size_t)sprintf(src + off, "- &a%zu v%zu\n", i, i);
  off += (size_t)sprintf(src + off, "uses:\n");
  for (size_t i = 0; i < BIG; i++)
    off += (size_t)sprintf(src + off, "- *a%zu\n", i);
  evs_doc_t *doc = NULL;
  evs_node__compares = 0;
  assert_int_equal(evs_doc_parse_yaml(src, off, "anchors.yaml", &doc, NULL), 0);
  assert_true(evs_node__compares <= 4 * BIG);
  const evs_node_t *defs = evs_node_get(evs_doc_root(doc), "defs");
  const evs_node_t *uses = evs_node_get(evs_doc_root(doc), "uses");
  for (size_t i = 0; i < BIG; i++)
    assert_ptr_equal(evs_node_item(uses, i), evs_node_item(defs, i));
  evs_doc_free(doc);
  free(src);
}

/* YAML lets an anchor be defined again; an alias refers to the most recent definition before it
 * (YAML 1.2.2, 3.2.2.2 "Anchors and Aliases"). */
static void yaml_anchor_redefinition(void **state) {
  (void)state;
  evs_doc_t *doc = parse_yaml_ok("a: &x 1\nb: *x\nc: &x {k: 2}\nd: *x\ne: &x [3]\nf: *x\n");
  const evs_node_t *root = evs_doc_root(doc);
  assert_ptr_equal(evs_node_get(root, "b"), evs_node_get(root, "a"));
  assert_ptr_equal(evs_node_get(root, "d"), evs_node_get(root, "c"));
  assert_ptr_equal(evs_node_get(root, "f"), evs_node_get(root, "e"));
  evs_doc_free(doc);
  /* Redefined inside the collection that first bore the name: the inner definition comes later
   * in the text, so it is the one aliases after it see; the outer one stays an error to alias
   * from inside itself. */
  doc = parse_yaml_ok("a: &x [&x 1, *x]\nb: *x\n");
  root = evs_doc_root(doc);
  const evs_node_t *a = evs_node_get(root, "a");
  assert_int_equal(a->kind, EVS_NODE_SEQ);
  assert_ptr_equal(evs_node_item(a, 1), evs_node_item(a, 0));
  assert_ptr_equal(evs_node_get(root, "b"), evs_node_item(a, 0));
  evs_doc_free(doc);
  expect_yaml_error("a: &x [1, *x]\n", 1, 11, "alias refers to a node that contains it");
  /* Many redefinitions of one name: the table keeps one entry, the latest. */
  char src[8192];
  size_t off = 0;
  for (int i = 0; i < 300; i++)
    off += (size_t)snprintf(src + off, sizeof src - off, "k%d: &x %d\n", i, i);
  snprintf(src + off, sizeof src - off, "last: *x\n");
  doc = parse_yaml_ok(src);
  assert_int_equal(evs_node_get(evs_doc_root(doc), "last")->num.i, 299);
  evs_doc_free(doc);
}

/* A 1 MiB file of "[[[[..." (the ConfigMap limit) is refused at the depth limit, quickly and
 * without deep recursion, on both paths. */
static void huge_nesting_refused(void **state) {
  (void)state;
  size_t n = 1u << 20;
  char *src = malloc(n);
  memset(src, '[', n);
  evs_doc_t *doc = NULL;
  evs_diag_t d;
  evs_diag_init(&d);
  assert_int_equal(evs_doc_parse_yaml(src, n, "deep.yaml", &doc, &d), EVS_EYAML);
  assert_int_equal(d.n, 1);
  assert_non_null(strstr(d.items[0].msg, "nesting too deep"));
  assert_int_equal(d.items[0].col, 65);
  assert_int_equal(evs_doc_parse_json(src, n, "deep.json", &doc, &d), EVS_EJSON);
  assert_null(doc);
  evs_diag_free(&d);
  /* Block nesting too: "- - - - ...". */
  for (size_t i = 0; i + 1 < n; i += 2) {
    src[i] = '-';
    src[i + 1] = ' ';
  }
  evs_diag_init(&d);
  assert_int_equal(evs_doc_parse_yaml(src, n, "deep.yaml", &doc, &d), EVS_EYAML);
  assert_non_null(strstr(d.items[0].msg, "nesting too deep"));
  evs_diag_free(&d);
  free(src);
}

/* A UTF-8 byte-order mark before the first line is accepted and invisible in positions (issue
 * 10, input edges): editors on Windows write one. */
static void yaml_byte_order_mark(void **state) {
  (void)state;
  evs_doc_t *doc = parse_yaml_ok("\xEF\xBB\xBF"
                                 "a: 1\nb: x\n");
  const evs_node_t *root = evs_doc_root(doc);
  assert_int_equal(evs_node_get(root, "a")->num.i, 1);
  assert_int_equal(evs_node_key(root, 0)->line, 1);
  assert_int_equal(evs_node_key(root, 0)->col, 1);
  assert_int_equal(evs_node_get(root, "a")->col, 4);
  assert_string_equal(evs_node_text(evs_node_key(root, 0)), "a");
  evs_doc_free(doc);
  doc = parse_yaml_ok("\xEF\xBB\xBF");
  assert_null(evs_doc_root(doc));
  evs_doc_free(doc);
  /* Errors keep their columns. */
  expect_yaml_error("\xEF\xBB\xBF"
                    "a: 1\na: 2\n",
                    2, 1, "duplicate key 'a'");
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
      cmocka_unit_test(yaml_big_map_linear_and_hashed),
      cmocka_unit_test(yaml_big_map_duplicate_at_the_end),
      cmocka_unit_test(yaml_maps_around_the_index_threshold),
      cmocka_unit_test(json_big_object_hashed),
      cmocka_unit_test(yaml_many_anchors_linear),
      cmocka_unit_test(yaml_anchor_redefinition),
      cmocka_unit_test(huge_nesting_refused),
      cmocka_unit_test(yaml_byte_order_mark),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
