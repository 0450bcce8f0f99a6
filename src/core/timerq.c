/* The timer queue (see include/evscale/timerq.h): a binary min-heap of entry pointers, ordered by
 * (due, seq), each entry knowing its slot so that stop and restart are O(log n) without a
 * search. The one uv_timer_t is armed for the top entry whenever the top may have changed. */
#include "evscale/timerq.h"

#include <stdlib.h>

#include "evscale/buf.h"
#include "evscale/error.h"

struct evs_timerq_s {
  uv_loop_t *loop;
  uv_timer_t timer;
  evs_timerq_entry_t **heap;
  size_t n, cap;
  uint64_t seq; /* the next start's order */
  int closing;
  void (*close_cb)(void *arg);
  void *close_arg;
};

static int before(const evs_timerq_entry_t *a, const evs_timerq_entry_t *b) {
  return a->due != b->due ? a->due < b->due : a->seq < b->seq;
}

static void put(evs_timerq_t *q, size_t i, evs_timerq_entry_t *e) {
  q->heap[i] = e;
  e->slot = (uint32_t)(i + 1);
}

static void sift_up(evs_timerq_t *q, size_t i) {
  evs_timerq_entry_t *e = q->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(e, q->heap[parent]))
      break;
    put(q, i, q->heap[parent]);
    i = parent;
  }
  put(q, i, e);
}

static void sift_down(evs_timerq_t *q, size_t i) {
  evs_timerq_entry_t *e = q->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= q->n)
      break;
    if (child + 1 < q->n && before(q->heap[child + 1], q->heap[child]))
      child++;
    if (!before(q->heap[child], e))
      break;
    put(q, i, q->heap[child]);
    i = child;
  }
  put(q, i, e);
}

/* Takes the entry at slot i out, keeping the heap ordered. */
static void remove_at(evs_timerq_t *q, size_t i) {
  evs_timerq_entry_t *e = q->heap[i];
  e->slot = 0;
  evs_timerq_entry_t *last = q->heap[--q->n];
  q->heap[q->n] = NULL;
  if (i == q->n)
    return;
  put(q, i, last);
  if (i > 0 && before(last, q->heap[(i - 1) / 2]))
    sift_up(q, i);
  else
    sift_down(q, i);
}

static void on_timer(uv_timer_t *t);

/* Arms the timer for the top entry (or stops it: an empty queue keeps no loop alive). */
static void rearm(evs_timerq_t *q) {
  if (q->closing)
    return;
  if (q->n == 0) {
    uv_timer_stop(&q->timer);
    return;
  }
  uint64_t now = uv_now(q->loop), due = q->heap[0]->due;
  uv_timer_start(&q->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  evs_timerq_t *q = t->data;
  uint64_t now = uv_now(q->loop);
  /* Entries started during this pass have seq >= pass: they wait for the next pass. They sort
   * after every older entry already due (their due is >= now), so the first one ends the pass. */
  uint64_t pass = q->seq;
  while (q->n > 0 && !q->closing) {
    evs_timerq_entry_t *e = q->heap[0];
    if (e->due > now || e->seq >= pass)
      break;
    remove_at(q, 0);
    e->cb(e);
  }
  rearm(q);
}

void evs_timerq_entry_init(evs_timerq_entry_t *e) { *e = (evs_timerq_entry_t){0}; }

int evs_timerq_new(uv_loop_t *loop, evs_timerq_t **out) {
  if (loop == NULL || out == NULL)
    return UV_EINVAL;
  evs_timerq_t *q = calloc(1, sizeof *q);
  if (q == NULL)
    return UV_ENOMEM;
  q->loop = loop;
  int rc = uv_timer_init(loop, &q->timer);
  if (rc != 0) {
    free(q);
    return rc;
  }
  q->timer.data = q;
  *out = q;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  evs_timerq_t *q = h->data;
  void (*cb)(void *) = q->close_cb;
  void *arg = q->close_arg;
  free(q->heap);
  free(q);
  if (cb != NULL)
    cb(arg);
}

void evs_timerq_close(evs_timerq_t *q, void (*cb)(void *arg), void *arg) {
  if (q == NULL || q->closing)
    return;
  q->closing = 1;
  q->close_cb = cb;
  q->close_arg = arg;
  /* Forget the entries: their owners may free them before the close callback runs. */
  for (size_t i = 0; i < q->n; i++)
    q->heap[i]->slot = 0;
  q->n = 0;
  uv_close((uv_handle_t *)&q->timer, on_closed);
}

int evs_timerq_start(evs_timerq_t *q, evs_timerq_entry_t *e, evs_timerq_cb cb,
                     uint64_t timeout_ms) {
  if (q == NULL || e == NULL || cb == NULL)
    return UV_EINVAL;
  if (q->closing)
    return EVS_ESTATE;
  if (e->slot == 0 && q->n >= UINT32_MAX - 1)
    return UV_ENOMEM;
  if (e->slot == 0 &&
      evs_buf_reserve((void **)&q->heap, &q->cap, q->n + 1, sizeof *q->heap, 64) != 0)
    return UV_ENOMEM;
  uint64_t now = uv_now(q->loop);
  uint64_t due = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
  evs_timerq_entry_t *top = q->n > 0 ? q->heap[0] : NULL;
  uint64_t old_top_due = top != NULL ? top->due : 0;
  if (e->slot != 0)
    remove_at(q, e->slot - 1);
  e->due = due;
  e->seq = q->seq++;
  e->cb = cb;
  put(q, q->n++, e);
  sift_up(q, q->n - 1);
  /* The timer follows the top: re-arm only when the top or its due time changed. */
  if (q->heap[0] != top || q->heap[0]->due != old_top_due)
    rearm(q);
  return 0;
}

void evs_timerq_stop(evs_timerq_t *q, evs_timerq_entry_t *e) {
  if (q == NULL || e == NULL || e->slot == 0 || q->closing)
    return;
  int was_top = e->slot == 1;
  remove_at(q, e->slot - 1);
  if (was_top)
    rearm(q);
}

int evs_timerq_active(const evs_timerq_entry_t *e) { return e != NULL && e->slot != 0; }

uint64_t evs_timerq_due(const evs_timerq_entry_t *e) { return e != NULL && e->slot ? e->due : 0; }

size_t evs_timerq_size(const evs_timerq_t *q) { return q->n; }

uv_loop_t *evs_timerq_loop(const evs_timerq_t *q) { return q->loop; }
