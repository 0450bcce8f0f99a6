/* room: core
 * Intrusive circular doubly-linked lists, as libuv's queue.h and nginx's ngx_queue_t: the link
 * lives inside the element, so linking allocates nothing and unlinking is O(1) given only the
 * element. A list head is a link whose next/prev point to itself when empty.
 * Header-only: every function is a few pointer moves.
 */
#ifndef EVSCALE_LIST_H
#define EVSCALE_LIST_H

#include <stddef.h>

/* The element of type `type` whose member `member` is at `ptr`. */
#define evs_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct evs_list_s {
  struct evs_list_s *prev, *next;
} evs_list_t;

static inline void evs_list_init(evs_list_t *l) { l->prev = l->next = l; }

static inline int evs_list_empty(const evs_list_t *head) { return head->next == head; }

/* Unlinks `l` and re-initialises it, so unlinking twice is harmless. */
static inline void evs_list_remove(evs_list_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  evs_list_init(l);
}

static inline void evs_list_insert_after(evs_list_t *at, evs_list_t *l) {
  l->prev = at;
  l->next = at->next;
  at->next->prev = l;
  at->next = l;
}

static inline void evs_list_push_back(evs_list_t *head, evs_list_t *l) {
  evs_list_insert_after(head->prev, l);
}

static inline void evs_list_push_front(evs_list_t *head, evs_list_t *l) {
  evs_list_insert_after(head, l);
}

/* The first element's link, or NULL when empty. */
static inline evs_list_t *evs_list_first(const evs_list_t *head) {
  return head->next == head ? NULL : head->next;
}

/* Iterates links; the body must not unlink `it` (use evs_list_foreach_safe for that). */
#define evs_list_foreach(it, head) for (evs_list_t *it = (head)->next; it != (head); it = it->next)

/* Iterates links; the body may unlink (or free the element of) `it`. */
#define evs_list_foreach_safe(it, head)                                                            \
  for (evs_list_t *it = (head)->next, *it##_next = it->next; it != (head);                         \
       it = it##_next, it##_next = it->next)

#endif
