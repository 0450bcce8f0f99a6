/* kubeconfig files, read as kubectl reads them: several files merged (KUBECONFIG), a context
 * chosen, relative paths resolved against the file that named them, `*-data` fields decoded.
 *
 * Pure: the caller reads the files (off the loop, through the shared async file reader) and
 * hands their text here; nothing in this module touches the file system or the loop.
 *
 * Semantics follow kubernetes/kubernetes staging/src/k8s.io/client-go/tools/clientcmd
 * (loader.go, validation.go, api/v1/types.go, api/v1/defaults.go at commit
 * 03ced770639fac6c1ab10764dfe290c13ebe5517):
 *  - merge: "the first file to set a particular map key wins and map key's value is never
 *    changed" — a cluster, user or context named in an earlier file hides a same-named one in a
 *    later file entirely; `current-context` is taken from the first file that sets it;
 *  - relative `certificate-authority`, `client-certificate`, `client-key`, `tokenFile` and an
 *    exec `command` containing '/' are resolved against the directory of the file they came from;
 *  - exec: `command` and `apiVersion` are required; `interactiveMode` defaults to IfAvailable for
 *    v1beta1 and must be given for v1; `Always` is refused (evscale has no terminal).
 * evscale refuses, with a message naming the file, the entry and the field, what it cannot honour
 * rather than ignoring it: `proxy-url`, `auth-provider` (removed from kubectl: use the exec
 * plugin), impersonation (`as*`), basic auth (`username`/`password`: removed from
 * kube-apiserver in 1.19), and exec `apiVersion` v1alpha1 (removed in Kubernetes 1.24). */
#ifndef EVSCALE_KUBECONFIG_H
#define EVSCALE_KUBECONFIG_H

#include <stddef.h>

#include "evscale/diag.h"

/* One parsed file (all of its clusters, users and contexts), opaque. */
typedef struct evs_kubeconfig_file_s evs_kubeconfig_file_t;

typedef struct {
  char *name;
  char *value;
} evs_kubeconfig_env_t;

typedef enum {
  EVS_EXEC_V1BETA1 = 1, /* client.authentication.k8s.io/v1beta1 */
  EVS_EXEC_V1           /* client.authentication.k8s.io/v1 */
} evs_exec_version_t;

typedef struct {
  char *command; /* absolute when the file gave a relative path with a '/' */
  char **args;
  size_t nargs;
  evs_kubeconfig_env_t *env;
  size_t nenv;
  evs_exec_version_t version;
  char *api_version; /* as written */
  char *install_hint;
  int provide_cluster_info;
} evs_kubeconfig_exec_t;

/* The resolved connection of one context. Every string is owned (NULL when absent); `*_pem`
 * hold the decoded `*-data` fields, NUL-terminated, with their length. */
typedef struct {
  char *context;   /* the context's name */
  char *cluster;   /* the cluster's name */
  char *user;      /* the user's name */
  char *namespace; /* the context's namespace, NULL when unset */
  char *server;    /* https://host:port[/path] */
  char *tls_server_name;
  int insecure; /* insecure-skip-tls-verify */
  char *ca_file;
  char *ca_pem;
  size_t ca_pem_len;
  char *cert_file;
  char *key_file;
  char *cert_pem;
  size_t cert_pem_len;
  char *key_pem;
  size_t key_pem_len;
  char *token;
  char *token_file;
  evs_kubeconfig_exec_t *exec; /* NULL without an exec plugin */
} evs_kubeconfig_t;

/* Parses one file's text. `file` names it in errors and anchors its relative paths. An empty
 * text is an empty config (kubectl accepts it). Returns 0, EVS_EYAML or EVS_EINVALCFG with entries
 * in diag (may be NULL), or UV_ENOMEM. */
int evs_kubeconfig_parse(const char *text, size_t len, const char *file,
                         evs_kubeconfig_file_t **out, evs_diag_t *diag);
void evs_kubeconfig_file_free(evs_kubeconfig_file_t *f);

/* Merges files[0..n) in KUBECONFIG order and resolves `context` (NULL or "" for the merged
 * current-context) into *out (free with evs_kubeconfig_free). Returns 0; EVS_EINVALCFG with every
 * problem of the chosen context in diag (no context, unknown context/cluster/user, no server,
 * cert without key, a field evscale refuses, ...); UV_ENOMEM. */
int evs_kubeconfig_resolve(evs_kubeconfig_file_t *const *files, size_t n, const char *context,
                           evs_kubeconfig_t **out, evs_diag_t *diag);
void evs_kubeconfig_free(evs_kubeconfig_t *kc);

/* Splits a KUBECONFIG value into paths as client-go does (':' separated, empty entries skipped,
 * duplicates dropped keeping the first). Returns the count; *out is an array of owned strings
 * (free each, then the array). A negative code on allocation failure. */
int evs_kubeconfig_split_env(const char *value, char ***out);

#endif
