/* evs_list (intrusive lists) and evs_buf_reserve (growable arrays): order, removal during
 * iteration, double removal, doubling, overflow refusal and failure leaving the array intact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#include "evscale/buf.h"
#include "evscale/list.h"

typedef struct {
  int v;
  evs_list_t link;
} item_t;

static void test_list_order_and_remove(void **state) {
  (void)state;
  evs_list_t head;
  evs_list_init(&head);
  assert_true(evs_list_empty(&head));
  assert_null(evs_list_first(&head));
  item_t it[5];
  for (int i = 0; i < 5; i++) {
    it[i].v = i;
    evs_list_push_back(&head, &it[i].link);
  }
  item_t front = {.v = -1};
  evs_list_push_front(&head, &front.link);
  int want[] = {-1, 0, 1, 2, 3, 4}, n = 0;
  evs_list_foreach(l, &head) assert_int_equal(evs_container_of(l, item_t, link)->v, want[n++]);
  assert_int_equal(n, 6);
  /* Removing the odd ones while iterating, and one of them twice. */
  evs_list_foreach_safe(l, &head) {
    item_t *x = evs_container_of(l, item_t, link);
    if (x->v % 2 != 0)
      evs_list_remove(l);
  }
  evs_list_remove(&it[1].link);
  int want2[] = {0, 2, 4};
  n = 0;
  evs_list_foreach(l, &head) assert_int_equal(evs_container_of(l, item_t, link)->v, want2[n++]);
  assert_int_equal(n, 3);
  assert_ptr_equal(evs_list_first(&head), &it[0].link);
}

static void test_buf_doubling(void **state) {
  (void)state;
  int *v = NULL;
  size_t cap = 0;
  assert_int_equal(evs_buf_reserve((void **)&v, &cap, 1, sizeof *v, 8), 0);
  assert_int_equal(cap, 8);
  assert_int_equal(evs_buf_reserve((void **)&v, &cap, 8, sizeof *v, 8), 0);
  assert_int_equal(cap, 8); /* enough already: no realloc */
  assert_int_equal(evs_buf_reserve((void **)&v, &cap, 9, sizeof *v, 8), 0);
  assert_int_equal(cap, 16);
  assert_int_equal(evs_buf_reserve((void **)&v, &cap, 100, sizeof *v, 8), 0);
  assert_int_equal(cap, 128);
  for (int i = 0; i < 100; i++)
    v[i] = i; /* ASan proves the room is real */
  free(v);
}

static void test_buf_overflow_refused(void **state) {
  (void)state;
  char *v = NULL;
  size_t cap = 0;
  assert_int_equal(evs_buf_reserve((void **)&v, &cap, 4, 1, 0), 0);
  char *before = v;
  assert_int_equal(evs_buf_reserve((void **)&v, &cap, SIZE_MAX / 2 + 2, 1, 0), UV_E2BIG);
  assert_int_equal(evs_buf_reserve((void **)&v, &cap, SIZE_MAX / 8, 16, 0), UV_E2BIG);
  assert_ptr_equal(v, before);
  assert_int_equal(cap, 4);
  free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_list_order_and_remove),
      cmocka_unit_test(test_buf_doubling),
      cmocka_unit_test(test_buf_overflow_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
