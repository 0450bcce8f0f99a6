/* Where the tests' Kubernetes control plane is: KUBE_* from the environment (tools/test.sh
 * exports the one it started), else the shared one of test/e2e/evstest.py controlplane(), started
 * or reused under its lock. One copy for every test that talks to the API server. */
#ifndef EVSCALE_TEST_KUBE_ENV_H
#define EVSCALE_TEST_KUBE_ENV_H

#include "net_helpers.h"

typedef struct {
  char url[256], ca[512], token[512], cert[512], key[512], kubeconfig[512], audit[512];
} evs_test_kube_env_t;

/* Copies src into the array dst, cut to fit (the precision keeps the compiler's truncation
 * analysis quiet). */
#define EVS_TEST_COPY(dst, src) snprintf((dst), sizeof(dst), "%.*s", (int)sizeof(dst) - 1, (src))

static inline void evs_test_kube__line(evs_test_kube_env_t *e, const char *line) {
  struct {
    const char *name;
    char *dst;
    size_t cap;
  } map[] = {{"KUBE_API_URL=", e->url, sizeof e->url},
             {"KUBE_CA=", e->ca, sizeof e->ca},
             {"KUBE_TOKEN=", e->token, sizeof e->token},
             {"KUBE_CLIENT_CERT=", e->cert, sizeof e->cert},
             {"KUBE_CLIENT_KEY=", e->key, sizeof e->key},
             {"KUBECONFIG=", e->kubeconfig, sizeof e->kubeconfig},
             {"KUBE_AUDIT_LOG=", e->audit, sizeof e->audit}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    size_t n = strlen(map[i].name);
    if (strncmp(line, map[i].name, n) == 0)
      snprintf(map[i].dst, map[i].cap, "%.*s", (int)strcspn(line + n, "\r\n"), line + n);
  }
}

/* 0 when a control plane was found (URL, CA and token known), -1 otherwise. */
static inline int evs_test_kube_env(evs_test_kube_env_t *e) {
  memset(e, 0, sizeof *e);
  if (getenv("KUBE_API_URL") && getenv("KUBE_CA") && getenv("KUBE_TOKEN")) {
    const char *names[] = {"KUBE_API_URL",    "KUBE_CA",    "KUBE_TOKEN",    "KUBE_CLIENT_CERT",
                           "KUBE_CLIENT_KEY", "KUBECONFIG", "KUBE_AUDIT_LOG"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      char line[700];
      const char *v = getenv(names[i]);
      snprintf(line, sizeof line, "%s=%s", names[i], v ? v : "");
      evs_test_kube__line(e, line);
    }
  } else {
    char cmd[1200], tmp[] = "/tmp/evs-kenv-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
      return -1;
    close(fd);
    snprintf(cmd, sizeof cmd,
             "cd %s && python3 -c \"import sys; sys.path.insert(0, 'test/e2e'); import evstest; "
             "e = evstest.controlplane(); open('%s', 'w').write(''.join(k + '=' + v + '\\n' "
             "for k, v in e.items()))\" >&2",
             evs_test_src(), tmp);
    int rc = system(cmd);
    FILE *f = fopen(tmp, "r");
    char line[1024];
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
      evs_test_kube__line(e, line);
    if (f != NULL)
      fclose(f);
    unlink(tmp);
    if (rc != 0)
      return -1;
  }
  return e->url[0] && e->ca[0] && e->token[0] ? 0 : -1;
}

#endif
