/* Token bucket with priorities. See evscale/ratelimit.h. */
#include "evscale/ratelimit.h"

#include <math.h>
#include <stdlib.h>

#include "evscale/error.h"
#include "evscale/list.h"

static void refill(evs_ratelimit_bucket_t *b, uint64_t now_ms) {
  if (now_ms > b->last_ms && b->qps > 0) {
    b->tokens += (double)(now_ms - b->last_ms) * b->qps / 1000.0;
    if (b->tokens > b->burst)
      b->tokens = b->burst;
  }
  if (now_ms > b->last_ms)
    b->last_ms = now_ms;
}

void evs_ratelimit_bucket_init(evs_ratelimit_bucket_t *b, double qps, unsigned burst,
                               uint64_t now_ms) {
  b->qps = qps;
  b->burst = burst > 0 ? burst : 1;
  b->tokens = b->burst;
  b->last_ms = now_ms;
}

void evs_ratelimit_bucket_set(evs_ratelimit_bucket_t *b, double qps, unsigned burst,
                              uint64_t now_ms) {
  refill(b, now_ms);
  b->qps = qps;
  b->burst = burst > 0 ? burst : 1;
  if (b->tokens > b->burst)
    b->tokens = b->burst;
}

int evs_ratelimit_bucket_take(evs_ratelimit_bucket_t *b, uint64_t now_ms) {
  if (b->qps <= 0)
    return 1;
  refill(b, now_ms);
  if (b->tokens < 1.0)
    return 0;
  b->tokens -= 1.0;
  return 1;
}

uint64_t evs_ratelimit_bucket_wait(evs_ratelimit_bucket_t *b, uint64_t now_ms) {
  if (b->qps <= 0)
    return 0;
  refill(b, now_ms);
  if (b->tokens >= 1.0)
    return 0;
  return (uint64_t)ceil((1.0 - b->tokens) * 1000.0 / b->qps);
}

struct evs_ratelimit_req_s {
  evs_list_t link; /* in its priority's queue */
  evs_ratelimit_t *rl;
  evs_prio_t prio;
  evs_ratelimit_cb cb;
  void *arg;
};

typedef struct {
  evs_list_t head;
  unsigned n;
} evs__queue_t;

struct evs_ratelimit_s {
  uv_loop_t *loop;
  uv_timer_t timer;
  evs_ratelimit_bucket_t bucket;
  evs__queue_t q[EVS_PRIO_COUNT];
  int closing;
  void (*close_cb)(void *);
  void *close_arg;
};

static void q_remove(evs__queue_t *q, evs_ratelimit_req_t *r) {
  evs_list_remove(&r->link);
  q->n--;
}

static void q_push(evs__queue_t *q, evs_ratelimit_req_t *r) {
  evs_list_push_back(&q->head, &r->link);
  q->n++;
}

static evs_ratelimit_req_t *first_waiter(evs_ratelimit_t *rl) {
  static const evs_prio_t order[EVS_PRIO_COUNT] = {EVS_PRIO_HIGH, EVS_PRIO_NORMAL, EVS_PRIO_LOW};
  for (int i = 0; i < EVS_PRIO_COUNT; i++)
    if (!evs_list_empty(&rl->q[order[i]].head))
      return evs_container_of(rl->q[order[i]].head.next, evs_ratelimit_req_t, link);
  return NULL;
}

static void on_timer(uv_timer_t *t);

static void schedule(evs_ratelimit_t *rl) {
  if (rl->closing || first_waiter(rl) == NULL) {
    uv_timer_stop(&rl->timer);
    return;
  }
  uint64_t wait = evs_ratelimit_bucket_wait(&rl->bucket, uv_now(rl->loop));
  uv_timer_start(&rl->timer, on_timer, wait, 0);
}

/* Grants tokens to waiters in priority order. The next waiter is taken off its queue before its
 * callback runs, so the callback may acquire, cancel or close freely. */
static void on_timer(uv_timer_t *t) {
  evs_ratelimit_t *rl = t->data;
  evs_ratelimit_req_t *r;
  while (!rl->closing && (r = first_waiter(rl)) != NULL) {
    if (!evs_ratelimit_bucket_take(&rl->bucket, uv_now(rl->loop)))
      break;
    q_remove(&rl->q[r->prio], r);
    r->cb(r, 0, r->arg);
    free(r);
  }
  schedule(rl);
}

int evs_ratelimit_new(uv_loop_t *loop, double qps, unsigned burst, evs_ratelimit_t **out) {
  evs_ratelimit_t *rl = calloc(1, sizeof *rl);
  if (rl == NULL)
    return UV_ENOMEM;
  rl->loop = loop;
  uv_timer_init(loop, &rl->timer);
  rl->timer.data = rl;
  for (int i = 0; i < EVS_PRIO_COUNT; i++)
    evs_list_init(&rl->q[i].head);
  evs_ratelimit_bucket_init(&rl->bucket, qps, burst, uv_now(loop));
  *out = rl;
  return 0;
}

void evs_ratelimit_set(evs_ratelimit_t *rl, double qps, unsigned burst) {
  evs_ratelimit_bucket_set(&rl->bucket, qps, burst, uv_now(rl->loop));
  schedule(rl);
}

int evs_ratelimit_acquire(evs_ratelimit_t *rl, evs_prio_t prio, evs_ratelimit_cb cb, void *arg,
                          evs_ratelimit_req_t **out) {
  if (cb == NULL || (unsigned)prio >= EVS_PRIO_COUNT || rl->closing)
    return UV_EINVAL;
  evs_ratelimit_req_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return UV_ENOMEM;
  *r = (evs_ratelimit_req_t){.rl = rl, .prio = prio, .cb = cb, .arg = arg};
  q_push(&rl->q[prio], r);
  if (out != NULL)
    *out = r;
  schedule(rl);
  return 0;
}

void evs_ratelimit_cancel(evs_ratelimit_req_t *r) {
  evs_ratelimit_t *rl = r->rl;
  q_remove(&rl->q[r->prio], r);
  r->cb(r, EVS_ECANCELED, r->arg);
  free(r);
  schedule(rl);
}

unsigned evs_ratelimit_waiting(const evs_ratelimit_t *rl, evs_prio_t prio) {
  return (unsigned)prio < EVS_PRIO_COUNT ? rl->q[prio].n : 0;
}

static void on_closed(uv_handle_t *h) {
  evs_ratelimit_t *rl = h->data;
  if (rl->close_cb != NULL)
    rl->close_cb(rl->close_arg);
  free(rl);
}

void evs_ratelimit_close(evs_ratelimit_t *rl, void (*cb)(void *), void *arg) {
  if (rl->closing)
    return;
  rl->closing = 1;
  rl->close_cb = cb;
  rl->close_arg = arg;
  evs_ratelimit_req_t *r;
  while ((r = first_waiter(rl)) != NULL) {
    q_remove(&rl->q[r->prio], r);
    r->cb(r, EVS_ECANCELED, r->arg);
    free(r);
  }
  uv_close((uv_handle_t *)&rl->timer, on_closed);
}
