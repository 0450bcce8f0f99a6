/* Exec credential plugins (client.authentication.k8s.io v1 and v1beta1), as EKS, GKE and AKS
 * kubeconfigs use: run the kubeconfig's `exec` command with uv_spawn (never blocking the loop),
 * hand it KUBERNETES_EXEC_INFO, read an ExecCredential from its stdout.
 *
 * Protocol as client-go implements it (kubernetes/kubernetes
 * staging/src/k8s.io/client-go/plugin/pkg/client/auth/exec/exec.go, refreshCredsLocked):
 *  - the child's environment is evscale's own, then the kubeconfig's `env` entries, then
 *    KUBERNETES_EXEC_INFO = an ExecCredential of the configured apiVersion whose spec has
 *    `interactive` (always false here: no terminal, stdin is /dev/null) and, with
 *    `provideClusterInfo: true`, `cluster` (server, tls-server-name, insecure-skip-tls-verify,
 *    certificate-authority-data);
 *  - stdout must decode as an ExecCredential of the same group and version, with a `status`
 *    holding a token or a client certificate and key pair (both or neither), and optionally
 *    `expirationTimestamp` (RFC 3339);
 *  - stderr is the plugin's message to the user: evscale keeps its last 2 KiB for the error.
 */
#ifndef EVSCALE_EXECCRED_H
#define EVSCALE_EXECCRED_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "evscale/kubeconfig.h"

/* A decoded credential. Strings owned (free with evs_execcred_clear). */
typedef struct {
  char *token;
  char *cert_pem;     /* clientCertificateData: PEM text */
  char *key_pem;      /* clientKeyData: PEM text */
  int64_t expires_ms; /* Unix ms; 0 when the credential does not expire */
} evs_execcred_t;

void evs_execcred_clear(evs_execcred_t *c);

/* Builds KUBERNETES_EXEC_INFO for `kc` (its exec and, when provideClusterInfo, its cluster).
 * *out is a NUL-terminated JSON text (free()). Returns 0 or UV_ENOMEM. */
int evs_execcred_info(const evs_kubeconfig_t *kc, char **out);

/* Decodes a plugin's stdout for the configured version. Returns 0, or EVS_EPARSE with a reason
 * in why (NUL-terminated, never containing the credential). */
int evs_execcred_decode(const char *text, size_t len, evs_exec_version_t version,
                        evs_execcred_t *out, char *why, size_t whycap);

/* When a credential issued at issued_ms should be refreshed: one minute before it expires, or
 * at the middle of its life when it lives less than two minutes; INT64_MAX when it never
 * expires (then only a 401 refreshes it). Pure. */
int64_t evs_execcred_refresh_at(int64_t issued_ms, int64_t expires_ms);

/* Runs the plugin once. The callback is called exactly once, from the loop: status 0 with a
 * decoded credential (the callback may take *cred's strings, setting the pointers to NULL), or
 * a negative code and a message naming the command (never the credential): EVS_ETIMEDOUT
 * (killed after timeout_ms), EVS_ECANCELED,
 * EVS_EPARSE (unexpected output), EVS_ESTATUS (non-zero exit; the message has its stderr's
 * tail). */
typedef void (*evs_execcred_cb)(void *arg, int status, evs_execcred_t *cred, const char *msg);

typedef struct evs_execcred_run_s evs_execcred_run_t;

/* Starts the plugin for kc (which must have exec; borrowed only during this call). *out (may be
 * NULL) receives a handle for evs_execcred_cancel. Returns 0, or a negative code when nothing
 * was started (then cb is not called). */
int evs_execcred_start(uv_loop_t *loop, const evs_kubeconfig_t *kc, uint64_t timeout_ms,
                       evs_execcred_cb cb, void *arg, evs_execcred_run_t **out);

/* Formats the error for a plugin evs_execcred_start could not start (UV_ENOENT: command not
 * found, UV_EACCES), with the kubeconfig's installHint, as client-go adds it. Returns the
 * would-be length, as snprintf. */
int evs_execcred_start_error(const evs_kubeconfig_t *kc, int rc, char *msg, size_t cap);

/* Kills the plugin if it still runs; the callback is still called once, with EVS_ECANCELED.
 * The run frees itself after its last handle closes. */
void evs_execcred_cancel(evs_execcred_run_t *run);

#endif
