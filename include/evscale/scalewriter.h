/* Writes spec.replicas of scale targets through their /scale subresource, one write in flight
 * per target.
 *
 *   evs_scalewriter_new(kube, &(evs_scalewriter_options_t){0}, &w);
 *   evs_scale_target_t t = {.group = "apps", .version = "v1", .resource = "deployments",
 *                           .ns = "default", .name = "web"};
 *   evs_scalewriter_write(w, &t, 5, done, me);   // done(w, &result, me) later
 *
 * The write is a JSON merge patch {"spec":{"replicas":N}} (Content-Type
 * application/merge-patch+json) on /apis/<group>/<version>/namespaces/<ns>/<resource>/<name>/scale
 * (/api/v1/... for the core group), which every kind with a scale subresource accepts
 * (kubernetes v1.20.2 staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go; the Scale
 * object is autoscaling/v1). It goes through the Kubernetes client (evscale/kube.h: credentials,
 * 401 refresh, metrics) at EVS_PRIO_HIGH in its rate limiter, so a scale write never waits
 * behind status updates or lists.
 *
 * Coalescing: while a write to a target is in flight, further requests for it wait; when it
 * ends, ONE write carries the newest requested count, and every waiting request completes with
 * that write's result (result->replicas_requested says what it asked for, result->written what
 * was sent). So N requests fired at once make at most 2 writes, and the last count wins.
 *
 * Dry run (options.dry_run): nothing is written; each write is replaced by a GET of the same
 * /scale (at EVS_PRIO_LOW), and the result reports the target's current replicas with
 * dry_run = 1, so `evscale --dry-run` shows what it would change. (A read_only client refuses
 * the PATCH anyway: the write then fails synchronously with EVS_EUNSUPPORTED.)
 *
 * Callbacks run exactly once per accepted request, from the loop (never inside
 * evs_scalewriter_write); the result is borrowed for the call. Closing completes every pending
 * request with EVS_ECANCELED. */
#ifndef EVSCALE_SCALEWRITER_H
#define EVSCALE_SCALEWRITER_H

#include <stdint.h>

#include "evscale/kube.h"

typedef struct evs_scalewriter_s evs_scalewriter_t;

typedef struct {
  const char *group;    /* "" or NULL = core ("/api/v1") */
  const char *version;  /* "v1" */
  const char *resource; /* plural: "deployments", "statefulsets", ... */
  const char *ns;
  const char *name;
} evs_scale_target_t;

typedef struct {
  int err;                    /* 0: the server answered (see status); else a transport error */
  int status;                 /* HTTP status, 0 when err != 0 */
  int32_t replicas_requested; /* what this request asked for */
  int32_t written;            /* the count sent (the newest at the time of the write) */
  int32_t replicas;           /* spec.replicas of the server's answer; -1 when none */
  int32_t status_replicas;    /* status.replicas of the answer; -1 when none */
  uint8_t dry_run;            /* 1: nothing was written (a GET) */
  uint8_t coalesced;          /* 1: another request's newer count was written instead */
  const char *path;           /* the /scale path */
  const char *message;        /* the server's Status message on non-2xx, else "" */
} evs_scale_result_t;

typedef void (*evs_scalewriter_cb)(evs_scalewriter_t *w, const evs_scale_result_t *r, void *arg);

typedef struct {
  int dry_run;
} evs_scalewriter_options_t;

/* kube is borrowed and must outlive the writer (close the writer first: closing the client
 * cancels its requests, and the writer's callbacks then get EVS_ECANCELED). opts may be NULL. */
int evs_scalewriter_new(evs_kube_t *kube, const evs_scalewriter_options_t *opts,
                        evs_scalewriter_t **out);
/* Builds the /scale path of t into buf. 0, or UV_EINVAL (a missing part, too long). */
int evs_scalewriter_path(const evs_scale_target_t *t, char *buf, size_t cap);
/* Requests replicas for t (copied). 0 (cb will run) or UV_EINVAL (replicas < 0, bad target),
 * UV_ENOMEM, EVS_ESTATE (closing, or the client not open), EVS_EUNSUPPORTED (a PATCH on a
 * read_only client), or another synchronous error of evs_kube_request; cb then never runs. */
int evs_scalewriter_write(evs_scalewriter_t *w, const evs_scale_target_t *t, int32_t replicas,
                          evs_scalewriter_cb cb, void *arg);
/* Writes (PATCH or dry-run GET) sent since creation; for tests and metrics. */
uint64_t evs_scalewriter_sent(const evs_scalewriter_t *w);
/* Targets with a write in flight. */
unsigned evs_scalewriter_busy(const evs_scalewriter_t *w);
/* Completes every request with EVS_ECANCELED, then frees (may be called from a callback; the
 * free is then deferred until it returns). */
void evs_scalewriter_close(evs_scalewriter_t *w);

#endif
