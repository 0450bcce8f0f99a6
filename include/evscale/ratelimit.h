/* Client-side rate limiter: a token bucket (qps, burst) with priorities, on the loop.
 *
 * Why priorities: the API server limits each client (kubernetes.qps/burst, like client-go's), and
 * a scale write that waits behind a burst of status updates or Events makes scaling late. So a
 * waiting HIGH request is always served before any waiting NORMAL or LOW one; within a priority,
 * first come first served. A waiter sleeps on a uv_timer until the bucket holds a token; nothing
 * polls.
 *
 * The bucket itself is pure (evs_ratelimit_bucket_*) and takes `now` in milliseconds, so tests
 * replay time without sleeping. */
#ifndef EVSCALE_RATELIMIT_H
#define EVSCALE_RATELIMIT_H

#include <stdint.h>
#include <uv.h>

/* NORMAL is 0 so that a zero-initialised options struct asks for the ordinary priority. */
typedef enum {
  EVS_PRIO_NORMAL = 0, /* lists, watches, HPA writes */
  EVS_PRIO_HIGH = 1,   /* scale writes, lease renewals */
  EVS_PRIO_LOW = 2     /* status updates, Events */
} evs_prio_t;
#define EVS_PRIO_COUNT 3

/* --- pure core --- */
typedef struct {
  double qps;    /* tokens per second; <= 0: unlimited */
  double burst;  /* bucket size, at least 1 */
  double tokens; /* current content */
  uint64_t last_ms;
} evs_ratelimit_bucket_t;

/* The bucket starts full, as client-go's does (a fresh process may burst at once). */
void evs_ratelimit_bucket_init(evs_ratelimit_bucket_t *b, double qps, unsigned burst,
                               uint64_t now_ms);
/* Changes qps/burst keeping the tokens already earned (capped at the new burst). */
void evs_ratelimit_bucket_set(evs_ratelimit_bucket_t *b, double qps, unsigned burst,
                              uint64_t now_ms);
/* Takes one token: 1 taken, 0 none available. */
int evs_ratelimit_bucket_take(evs_ratelimit_bucket_t *b, uint64_t now_ms);
/* Milliseconds until a token is available (0: now). */
uint64_t evs_ratelimit_bucket_wait(evs_ratelimit_bucket_t *b, uint64_t now_ms);

/* --- on the loop --- */
typedef struct evs_ratelimit_s evs_ratelimit_t;
typedef struct evs_ratelimit_req_s evs_ratelimit_req_t;
/* status 0: go ahead (one token was taken); EVS_ECANCELED: canceled or limiter closed. */
typedef void (*evs_ratelimit_cb)(evs_ratelimit_req_t *req, int status, void *arg);

int evs_ratelimit_new(uv_loop_t *loop, double qps, unsigned burst, evs_ratelimit_t **out);
void evs_ratelimit_set(evs_ratelimit_t *rl, double qps, unsigned burst);
/* Queues a request for a token. cb always runs later from the loop (never inside this call),
 * exactly once. *out (may be NULL) is borrowed and valid until cb runs. UV_EINVAL, UV_ENOMEM. */
int evs_ratelimit_acquire(evs_ratelimit_t *rl, evs_prio_t prio, evs_ratelimit_cb cb, void *arg,
                          evs_ratelimit_req_t **out);
/* Withdraws a waiting request: its cb runs with EVS_ECANCELED before this returns. */
void evs_ratelimit_cancel(evs_ratelimit_req_t *req);
/* Number of waiting requests of a priority. */
unsigned evs_ratelimit_waiting(const evs_ratelimit_t *rl, evs_prio_t prio);
/* Cancels every waiter (their cb runs with EVS_ECANCELED), then frees the limiter after its
 * timer closes and calls cb(arg) (cb may be NULL). */
void evs_ratelimit_close(evs_ratelimit_t *rl, void (*cb)(void *arg), void *arg);

#endif
