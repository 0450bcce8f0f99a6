/* Leader election with a coordination.k8s.io/v1 Lease, as client-go's LeaderElector does it
 * (kubernetes/client-go 32ce75a7d6bc6960fd048d3d1e3b34185418d8c8,
 * tools/leaderelection/leaderelection.go: acquire, renew, tryAcquireOrRenew, tryRelease,
 * isLeaseValid), on the loop:
 *
 *   evs_lease_options_t o = {.name = "evscale", .ns = "default", .lease_duration_ms = 15000,
 *                            .renew_deadline_ms = 10000, .retry_period_ms = 2000,
 *                            .on_started_leading = go, .on_stopped_leading = halt, .arg = me};
 *   evs_lease_new(loop, kube, &o, &l); evs_lease_start(l);
 *   ...  evs_lease_is_leader(l) gates every write ...
 *   evs_lease_stop(l, done, me);   // releases the Lease when leading: hand-over is immediate
 *
 * Rules (client-go's):
 *  - Every retry_period an attempt: the leader first renews optimistically (PUT of the Lease it
 *    last wrote, its resourceVersion: a 409 Conflict means someone else wrote); otherwise GET,
 *    POST when absent, and PUT only when the holder is empty, is us, or its lease has expired.
 *  - Expiry is judged by OUR clock, not the holder's timestamps: a record is valid for
 *    leaseDurationSeconds after the moment we last saw it change (observedTime), so clock skew
 *    between replicas does not matter (isLeaseValid).
 *  - The leader steps down (on_stopped_leading) when it has not renewed for renew_deadline; its
 *    in-flight attempt is canceled. With renew_deadline + retry_period < lease_duration the old
 *    leader has stopped before anyone may take over.
 *  - Stop while leading: on_stopped_leading first (writes stop), then the release: PUT with
 *    holderIdentity empty and leaseDurationSeconds 1 (ReleaseOnCancel), retried on 409; a
 *    follower sees the empty holder and takes over at its next attempt.
 *  - observe_only (--dry-run): reads the Lease every retry_period, never writes, never leads.
 *  - holderIdentity: options.identity, or "<hostname>_<uuid4>".
 *
 * Metrics (when options.metrics is set): evscale_leader (gauge, 1 while leading) and
 * evscale_leader_handovers_total (counter: the Lease's holder became another identity than the
 * last non-empty one this replica saw, ours included; a release in between does not count).
 * evs_lease_is_leader also checks the renew deadline on the loop's clock, so after a stall a
 * writer that asks before the elector's timer has run already hears "no".
 *
 * Callbacks run from the loop, never inside evs_lease_* calls (on_stopped_leading inside
 * evs_lease_stop excepted: it runs before the release is sent). */
#ifndef EVSCALE_LEASE_H
#define EVSCALE_LEASE_H

#include <stdint.h>
#include <uv.h>

#include "evscale/kube.h"
#include "evscale/metrics.h"

typedef struct evs_lease_s evs_lease_t;

typedef void (*evs_lease_cb)(evs_lease_t *l, void *arg);

typedef struct {
  const char *name;     /* leader_election.lease_name; copied */
  const char *ns;       /* leader_election.lease_namespace; copied */
  const char *identity; /* NULL = "<hostname>_<uuid4>"; copied */
  uint64_t lease_duration_ms, renew_deadline_ms, retry_period_ms;
  int observe_only; /* --dry-run: never takes the lease */
  evs_lease_cb on_started_leading;
  evs_lease_cb on_stopped_leading;
  void *arg;
  evs_metrics_t *metrics; /* borrowed; NULL = no metrics */
} evs_lease_options_t;

/* kube is borrowed and must outlive the elector; every request goes through evs_kube_request at
 * EVS_PRIO_HIGH (a renewal that waits behind status updates may lose leadership). A read_only
 * client refuses writes: use observe_only with it. UV_EINVAL when a name is missing, or unless
 * 0 < retry_period < renew_deadline < lease_duration and lease_duration >= 1 s (the Lease counts
 * whole seconds); UV_EEXIST when options.metrics already has the families. */
int evs_lease_new(uv_loop_t *loop, evs_kube_t *kube, const evs_lease_options_t *o,
                  evs_lease_t **out);
/* Starts the attempts (the first at once). 0 or EVS_ESTATE. */
int evs_lease_start(evs_lease_t *l);
int evs_lease_is_leader(const evs_lease_t *l);
/* Our holderIdentity; borrowed. */
const char *evs_lease_identity(const evs_lease_t *l);
/* The holder last observed ("" = none or not yet read); borrowed, valid until the next attempt. */
const char *evs_lease_holder(const evs_lease_t *l);
/* Stops: steps down and releases when leading, then closes its timer, calls cb(arg) (may be
 * NULL) and frees. */
void evs_lease_stop(evs_lease_t *l, void (*cb)(void *arg), void *arg);

/* Tests only: 1 = every attempt fails without a request (the API server unreachable for this
 * replica); 0 = normal. */
void evs_lease__set_blocked(evs_lease_t *l, int blocked);
/* Tests only: stall (stop the timer; nothing runs, as in a frozen process) / resume. */
void evs_lease__stall(evs_lease_t *l, int stalled);

#endif
