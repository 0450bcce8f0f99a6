/* room: core
 * A timer queue: many timers on one loop for the cost of one uv_timer_t. Issue 13 (memory per
 * ScaledObject): a uv_timer_t is ~150 B and must be closed through the loop before the memory
 * holding it may be freed; 50,000 objects with two or three timers each spent ~20 MB on them.
 * Here one uv_timer_t drives a binary min-heap of small intrusive entries (32 B, embedded in the
 * object that owns them), ordered by due time, then by start order.
 *
 *   struct thing { ...; evs_timerq_entry_t tick; };        // zeroed (calloc) = not queued
 *   static void on_tick(evs_timerq_entry_t *e) {
 *     struct thing *t = evs_container_of(e, struct thing, tick);
 *     ...                                                  // one-shot: start it again to repeat
 *   }
 *   evs_timerq_start(q, &t->tick, on_tick, 1000);          // in 1 s (again: moves it)
 *   evs_timerq_stop(q, &t->tick);                          // then free(t) at once: no close
 *   ...
 *   evs_timerq_close(q, on_closed, arg);                   // asynchronous (uv_close)
 *
 * Semantics (those of uv_timer_t where they overlap):
 * - Times are the loop's (uv_now, milliseconds). An entry fires once, from the loop, never from
 *   inside the call that started it. Entries due at the same time fire in the order they were
 *   started (libuv's start_id rule).
 * - One pass of the queue runs only the entries that were due and already queued when the pass
 *   began: an entry started (even with timeout 0) from inside a callback fires on a later pass,
 *   behind every entry already due. (With Debian's libuv 1.44 that pass may come in the same
 *   loop iteration, as a uv_timer_t restarted with 0 from its callback does.)
 * - start on a queued entry moves it (libuv's uv_timer_again); start, stop and the callback's
 *   removal are O(log n); stop on an entry that is not queued does nothing.
 * - An entry may be stopped or started from any callback, its own included, and freed as soon
 *   as it is stopped (or has fired and was not started again). Nothing of the queue points to
 *   an entry that is not queued.
 * - While entries are queued the queue's timer keeps the loop alive (as a uv_timer_t would);
 *   an empty queue does not.
 *
 * Ownership: the queue is new from evs_timerq_new and released with evs_timerq_close, which
 * closes its uv_timer_t (so it completes from the loop: cb runs from the uv_close callback, the
 * queue is freed just before). Entries still queued then are forgotten, never touched again, and
 * no callback of an entry runs after evs_timerq_close. Entries are the caller's memory.
 *
 * Loop thread only (one queue per loop; the scalers share theirs through evs_scaler_env_t). */
#ifndef EVSCALE_TIMERQ_H
#define EVSCALE_TIMERQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct evs_timerq_s evs_timerq_t;
typedef struct evs_timerq_entry_s evs_timerq_entry_t;

/* e is the entry that fired (no longer queued): get back to its owner with evs_container_of. */
typedef void (*evs_timerq_cb)(evs_timerq_entry_t *e);

/* Embed one in the owner. All zero (calloc, or evs_timerq_entry_init) is "not queued". The
 * fields are the queue's: read them through the functions below. */
struct evs_timerq_entry_s {
  uint64_t due;     /* loop time (ms) at which it fires */
  uint64_t seq;     /* start order: ties fire first started, first */
  evs_timerq_cb cb; /* what runs */
  uint32_t slot;    /* heap position + 1; 0: not queued */
};

/* Marks e not queued (the same as zeroing it). */
void evs_timerq_entry_init(evs_timerq_entry_t *e);

/* A new queue on loop (its uv_timer_t is initialised now). UV_EINVAL, UV_ENOMEM. */
int evs_timerq_new(uv_loop_t *loop, evs_timerq_t **out);
/* Stops every entry (they are forgotten: not touched again) and closes the queue's timer; the
 * queue is freed from its close callback, then cb(arg) runs (cb may be NULL). May be called from
 * an entry's callback: no other entry fires after it. NULL is a no-op; a second call too. */
void evs_timerq_close(evs_timerq_t *q, void (*cb)(void *arg), void *arg);

/* Queues e to fire cb(e) timeout_ms from the loop's now (uv_now); a queued e is moved instead.
 * 0, UV_EINVAL (NULL q, e or cb), UV_ENOMEM (the heap could not grow; e is left as it was),
 * EVS_ESTATE (the queue is closing). */
int evs_timerq_start(evs_timerq_t *q, evs_timerq_entry_t *e, evs_timerq_cb cb, uint64_t timeout_ms);
/* Takes e off the queue if it is queued; then its memory may be freed at once. */
void evs_timerq_stop(evs_timerq_t *q, evs_timerq_entry_t *e);
/* 1 while e is queued. */
int evs_timerq_active(const evs_timerq_entry_t *e);
/* The loop time (ms) at which a queued e fires; 0 when not queued. */
uint64_t evs_timerq_due(const evs_timerq_entry_t *e);
/* Entries queued (tests, metrics). */
size_t evs_timerq_size(const evs_timerq_t *q);
/* The loop the queue runs on. */
uv_loop_t *evs_timerq_loop(const evs_timerq_t *q);

#endif
