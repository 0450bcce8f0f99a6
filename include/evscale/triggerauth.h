/* room: kube
 * Trigger authentication and the scale target's environment, resolved as KEDA v2.20.2 does
 * (kedacore/keda, tag v2.20.2, commit 68a5b5028f35b22d50597c69819ab32c4e92f21a:
 * pkg/scaling/resolver/scale_resolvers.go resolveAuthRef, ResolveContainerEnv, resolveEnv,
 * resolveEnvValue; apis/keda/v1alpha1/triggerauthentication_types.go), into the maps a scaler
 * takes (evscale/scaler.h: auth_params and resolved_env).
 *
 *   informer decode = evs_triggerauth_decode, free_data = evs_triggerauth_free
 *   ...
 *   if (evs_triggerauth_check(ta, kind, ns, name, msg, sizeof msg) != 0) refuse(msg);
 *   evs_triggerauth_opts_t o = {.auth = ta, .kind = kind, .name = name, .ns = so_ns, ...};
 *   evs_triggerauth_resolve(loop, kube, &o, &req);          // later: cb(req, 0, NULL, &params)
 *
 *   evs_triggerauth_env_opts_t e = {.target_path = "/apis/apps/v1/namespaces/ns/deployments/web",
 *       .ns = "ns", .container = envSourceContainerName, ...};
 *   evs_triggerauth_env_resolve(loop, kube, &e, &req);
 *
 * Sources: `secretTargetRef`, `configMapTargetRef`, `env` and `podIdentity` with provider none
 * (or absent). Every other source (filePath, hashiCorpVault, azureKeyVault, gcpSecretManager,
 * awsSecretManager, boundServiceAccountToken, oauth2, another podIdentity provider) is refused
 * by evs_triggerauth_check with a message naming the object and the field.
 *
 * What KEDA does and evscale does too:
 *  - Parameters are filled in KEDA's order, a later source replacing an earlier one with the
 *    same parameter: env, then configMapTargetRef, then secretTargetRef.
 *  - A ClusterTriggerAuthentication reads its Secrets and ConfigMaps in the cluster-object
 *    namespace (KEDA: KEDA_CLUSTER_OBJECT_NAMESPACE, else its own namespace; evscale:
 *    `kubernetes.cluster_object_namespace`, else the client's namespace), a
 *    TriggerAuthentication in the ScaledObject's namespace.
 *  - `env[i]` takes variable `name` of the target's container `containerName` (the first when
 *    empty); when that container's environment cannot be resolved, or there is no scale target,
 *    the parameter is "" (KEDA ignores that error).
 *  - The environment: envFrom first (configMapRef then secretRef data, `prefix`ed; a missing
 *    source marked optional is skipped), then env in order: `value` with $(VAR) expanded against
 *    what is resolved so far (resolveEnvValue, byte for byte, quirks included: "$$" escapes,
 *    an unknown or unterminated reference stays as written, nothing is expanded in the last 3
 *    bytes), `valueFrom.secretKeyRef` / `configMapKeyRef` (a missing object marked optional
 *    skips the variable; a missing key gives ""), fieldRef and resourceFieldRef skipped.
 * Documented deviations (clearer failures instead of an empty parameter a scaler would use):
 *  - a Secret or ConfigMap of secretTargetRef/configMapTargetRef that is missing, or lacks the
 *    key, fails the resolution (KEDA logs and sets the parameter to "");
 *  - an empty parameter, name or key, or a name that is no Kubernetes object name, is refused by
 *    evs_triggerauth_check (KEDA sets "").
 * Not supported: KEDA_RESTRICT_SECRET_ACCESS.
 *
 * Secrets: values are never logged or put in a message; every buffer holding a decoded value
 * (and the base64 text of a fetched Secret) is wiped (explicit_bzero) before it is freed. The
 * maps handed to callbacks are borrowed for the call only. Requests go through the Kubernetes
 * client at EVS_PRIO_LOW, each Secret or ConfigMap fetched once per resolution. Loop thread
 * only. */
#ifndef EVSCALE_TRIGGERAUTH_H
#define EVSCALE_TRIGGERAUTH_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "evscale/kube.h"
#include "evscale/scaler.h"

/* Sources evscale refuses, as bits of evs_triggerauth_t.unsupported. */
#define EVS_TRIGGERAUTH_SOURCES(XX)                                                                \
  XX(FILE_PATH, 0, "filePath")                                                                     \
  XX(HASHICORP_VAULT, 1, "hashiCorpVault")                                                         \
  XX(AZURE_KEY_VAULT, 2, "azureKeyVault")                                                          \
  XX(GCP_SECRET_MANAGER, 3, "gcpSecretManager")                                                    \
  XX(AWS_SECRET_MANAGER, 4, "awsSecretManager")                                                    \
  XX(BOUND_SA_TOKEN, 5, "boundServiceAccountToken")                                                \
  XX(OAUTH2, 6, "oauth2")                                                                          \
  XX(POD_IDENTITY, 7, "podIdentity.provider")

typedef enum {
#define EVS_TRIGGERAUTH__BIT(name, bit, field) EVS_TRIGGERAUTH_##name = 1u << (bit),
  EVS_TRIGGERAUTH_SOURCES(EVS_TRIGGERAUTH__BIT)
#undef EVS_TRIGGERAUTH__BIT
} evs_triggerauth_source_t;

typedef struct {
  const char *parameter, *name, *key; /* "" when absent */
} evs_triggerauth_ref_t;

typedef struct {
  const char *parameter, *name, *container; /* "" when absent */
} evs_triggerauth_env_t;

/* The spec of a TriggerAuthentication or ClusterTriggerAuthentication: one allocation (arrays
 * and strings follow the struct), reference counted so a resolution in flight keeps the version
 * it started with when the informer replaces it. Read-only once decoded. */
typedef struct {
  unsigned refs;            /* internal */
  unsigned unsupported;     /* evs_triggerauth_source_t bits */
  const char *pod_identity; /* spec.podIdentity.provider; NULL when podIdentity is absent */
  const evs_triggerauth_ref_t *secrets; /* spec.secretTargetRef[] */
  size_t n_secrets;
  const evs_triggerauth_ref_t *configmaps; /* spec.configMapTargetRef[] */
  size_t n_configmaps;
  const evs_triggerauth_env_t *env; /* spec.env[] */
  size_t n_env;
} evs_triggerauth_t;

typedef enum { EVS_TRIGGERAUTH_NAMESPACED = 0, EVS_TRIGGERAUTH_CLUSTER = 1 } evs_triggerauth_kind_t;

/* An evs_informer_decode_cb: obj (borrowed) → *out (new, refs 1; free with
 * evs_triggerauth_free). arg unused. 0, EVS_EPARSE (obj, spec, a list or one of their fields has
 * the wrong JSON type), UV_ENOMEM. Linear in the size of obj. */
int evs_triggerauth_decode(const json_t *obj, void **out, void *arg);
/* Drops a reference (the informer's free_data: arg unused); frees at zero. NULL is a no-op. */
void evs_triggerauth_free(void *ta, void *arg);
/* A new reference. */
const evs_triggerauth_t *evs_triggerauth_ref(const evs_triggerauth_t *ta);

/* "TriggerAuthentication" or "ClusterTriggerAuthentication". */
const char *evs_triggerauth_kind_name(evs_triggerauth_kind_t kind);

/* Whether evscale can resolve ta. 0, EVS_EUNSUPPORTED (a refused source) or EVS_EINVALCFG (an
 * empty parameter/name/key, a bad object name); msg gets e.g. "TriggerAuthentication
 * prod/vault-auth: spec.hashiCorpVault is not supported (evscale reads secretTargetRef,
 * configMapTargetRef, env and podIdentity provider none)". ns: the object's namespace (ignored
 * for the cluster kind). msg may be NULL. */
int evs_triggerauth_check(const evs_triggerauth_t *ta, evs_triggerauth_kind_t kind, const char *ns,
                          const char *name, char *msg, size_t cap);

typedef struct evs_triggerauth_req_s evs_triggerauth_req_t;

/* Exactly once per accepted resolution, unless cancelled first. err 0: params (borrowed for the
 * call, its strings too; wiped after) is the map; msg NULL. Else params NULL and msg (borrowed)
 * names the object, the field and what is missing, e.g. "TriggerAuthentication
 * prod/redis-auth: spec.secretTargetRef[0]: secret prod/redis-secret has no key \"password\"":
 * EVS_ENOTFOUND (an object or key is missing), EVS_ESTATUS (another HTTP status), EVS_EPARSE
 * (an answer that is not the object expected), or the transport's error. req is freed after
 * the callback returns. */
typedef void (*evs_triggerauth_cb)(evs_triggerauth_req_t *req, int err, const char *msg,
                                   const evs_kvs_t *params, void *arg);

typedef struct {
  const evs_triggerauth_t *auth; /* a reference is taken for the resolution */
  evs_triggerauth_kind_t kind;
  const char *name;              /* the (Cluster)TriggerAuthentication's name, for messages */
  const char *ns;                /* the ScaledObject's namespace */
  const char *cluster_namespace; /* for the cluster kind; NULL or "": evs_kube_namespace() */
  /* For spec.env: the scale target (as evs_triggerauth_env_opts_t.target_path; NULL: none, the
   * env parameters are ""), and optionally the environment already resolved for the container
   * named env_container ("" for envSourceContainerName unset): env entries naming that same
   * container read it instead of fetching the target again. */
  const char *target_path;
  const evs_kvs_t *env;
  const char *env_container;
  evs_triggerauth_cb cb;
  void *arg;
} evs_triggerauth_opts_t;

/* Starts resolving (strings copied). 0 (cb will run, never from inside this call), UV_EINVAL
 * (missing loop/kube/auth/name/ns/cb), EVS_EUNSUPPORTED or EVS_EINVALCFG (evs_triggerauth_check
 * would refuse it: call that for the message), UV_ENOMEM, or evs_kube_request's error. *out (may
 * be NULL) is valid until the callback returns or evs_triggerauth_cancel. */
int evs_triggerauth_resolve(uv_loop_t *loop, evs_kube_t *kube, const evs_triggerauth_opts_t *opts,
                            evs_triggerauth_req_t **out);

typedef struct {
  const char *target_path; /* GET path of the target, e.g.
                              "/apis/apps/v1/namespaces/ns/deployments/web" */
  const char *target;      /* for messages, e.g. "Deployment ns/web"; NULL: target_path */
  const char *ns;          /* the namespace of its Secrets and ConfigMaps */
  const char *container;   /* envSourceContainerName; NULL or "": the first container */
  evs_triggerauth_cb cb;
  void *arg;
} evs_triggerauth_env_opts_t;

/* KEDA's ResolveContainerEnv on the target's spec.template.spec. Same contract as
 * evs_triggerauth_resolve; messages name the target and the field, e.g. "Deployment ns/web:
 * spec.template.spec.containers[0].env[2].valueFrom.secretKeyRef: secret ns/db not found". */
int evs_triggerauth_env_resolve(uv_loop_t *loop, evs_kube_t *kube,
                                const evs_triggerauth_env_opts_t *opts,
                                evs_triggerauth_req_t **out);

/* No callback runs after this; everything is freed once the last handle has closed. Not from
 * inside the request's own callback (it is freed after that anyway). */
void evs_triggerauth_cancel(evs_triggerauth_req_t *req);

/* --- Internal, exposed for unit tests: KEDA's resolveEnvValue. env: what is resolved so far.
 * Returns a new string (free it) or NULL (UV_ENOMEM). */
char *evs_triggerauth_expand(const char *value, const evs_kvs_t *env);

#endif
