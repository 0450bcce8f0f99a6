/* A real redis-server for the tests, started as a child process on a free loopback port (plain,
 * TLS with the test CA, requirepass, ACL users), stopped, restarted and paused at will, and
 * driven with redis-cli. Shared by test_redis_conn.c and test_redis_scaler.c. */
#ifndef EVSCALE_TEST_REDIS_HELPERS_H
#define EVSCALE_TEST_REDIS_HELPERS_H

#include "net_helpers.h"

typedef struct {
  pid_t pid;
  int port; /* the port clients use (the TLS port for a TLS server) */
  char dir[64];
  const char *extra[24];
} rsrv_t;

static int free_port(void) { return evs_test_closed_port(); }

/* Blocks until something accepts on the port (test setup, not the loop). */
static int wait_listening(int port) {
  for (int i = 0; i < 200; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    if (ok)
      return 0;
    usleep(50000);
  }
  return -1;
}

/* Starts redis-server on r->port (chosen if 0); tls: the port is a --tls-port with the test
 * CA's ip-only certificate and no plain port. */
static void rsrv_start(rsrv_t *r, int tls) {
  if (r->dir[0] == '\0') {
    snprintf(r->dir, sizeof r->dir, "/tmp/evs-redis-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
  }
  if (r->port == 0)
    r->port = free_port();
  char port[16], logf[128];
  snprintf(port, sizeof port, "%d", r->port);
  snprintf(logf, sizeof logf, "%s/redis.log", r->dir);
  const char *argv[64] = {"redis-server",
                          "--bind",
                          "127.0.0.1",
                          "--save",
                          "",
                          "--appendonly",
                          "no",
                          "--dir",
                          r->dir,
                          "--logfile",
                          logf,
                          "--daemonize",
                          "no",
                          "--enable-debug-command",
                          "yes"};
  int n = 15;
  if (tls) {
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--tls-port";
    argv[n++] = port;
    argv[n++] = "--tls-cert-file";
    argv[n++] = evs_test_cert("ip-only.crt");
    argv[n++] = "--tls-key-file";
    argv[n++] = evs_test_cert("ip-only.key");
    argv[n++] = "--tls-ca-cert-file";
    argv[n++] = evs_test_cert("ca.crt");
    argv[n++] = "--tls-auth-clients";
    argv[n++] = "no";
  } else {
    argv[n++] = "--port";
    argv[n++] = port;
  }
  for (int i = 0; r->extra[i] != NULL; i++)
    argv[n++] = r->extra[i];
  argv[n] = NULL;
  r->pid = fork();
  if (r->pid == 0) {
    execvp("redis-server", (char *const *)argv);
    _exit(127);
  }
  assert_int_equal(wait_listening(r->port), 0);
}

static void rsrv_kill(rsrv_t *r) {
  if (r->pid > 0) {
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
  }
}

static void rsrv_stop(rsrv_t *r) {
  rsrv_kill(r);
  if (r->dir[0] != '\0') {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
    if (system(cmd) != 0)
      fprintf(stderr, "cannot remove %s\n", r->dir);
    r->dir[0] = '\0';
  }
}

/* Freezes the server (SIGSTOP) and returns once the kernel shows it stopped, so that nothing
 * sent from now on is answered until rsrv_thaw: a frozen server on cue, where `DEBUG SLEEP` from
 * a background client is frozen only once that client has started, connected and been read. */
static inline int rsrv_freeze(const rsrv_t *r) {
  if (kill(r->pid, SIGSTOP) != 0)
    return -1;
  char path[64], st[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)r->pid);
  for (int i = 0; i < 2000; i++) { /* up to 10 s */
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(st, 1, sizeof st - 1, f) : 0;
    if (f)
      fclose(f);
    st[n] = '\0';
    const char *p = strrchr(st, ')'); /* "pid (comm) S ...": comm may hold spaces */
    if (p != NULL && p[1] == ' ' && (p[2] == 'T' || p[2] == 't'))
      return 0;
    usleep(5000);
  }
  return -1;
}

static inline void rsrv_thaw(const rsrv_t *r) { kill(r->pid, SIGCONT); }

/* redis-cli for test setup (ACL, CONFIG). */
static void cli(const rsrv_t *r, const char *args) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "redis-cli -p %d %s >/dev/null", r->port, args);
  assert_int_equal(system(cmd), 0);
}

static rsrv_t shared;

static int group_setup(void **state) {
  (void)state;
  rsrv_start(&shared, 0);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  rsrv_stop(&shared);
  return 0;
}

#endif
