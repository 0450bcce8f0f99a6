/* The redis scaler's costs against a real redis-server it starts on a free loopback port
 * (notify-keyspace-events KA):
 *
 *   bench_redis_scaler [-n LATENCY_ROUNDS] [-r HOT_RATE] [-d HOT_SECONDS] [-t TRIGGERS]
 *                      [-w WINDOW_SECONDS] [-c CADENCE_MS]
 *
 * 1. latency: LPUSH on a command connection → the scaler's reading with the new length (push:
 *    keyspace event, then the length script), one at a time, the poll a minute away; beside a
 *    bare LLEN round trip on the same server in the same run; the keyspace-event counter before
 *    and after;
 * 2. hot list: a child process pushes RATE LPUSHes a second for HOT_SECONDS (pipelined in 10 ms
 *    batches); this process's CPU (the child's is not counted) and the scaler's read rate;
 * 3. many triggers: TRIGGERS redis scalers on one server at a CADENCE_MS poll, push mode auto;
 *    after all first readings, WINDOW_SECONDS of steady state: CPU, RSS, commands a second,
 *    and the age of each trigger's latest reading at the end.
 * Latencies are p50/p99/max in microseconds. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bench_util.h"
#include "evscale/config.h"
#include "evscale/redis_conn.h"
#include "evscale/redis_scaler.h"
#include "evscale/scaler.h"

static int port;
static pid_t server;
static char dir[64];

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int p = 0;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    p = ntohs(a.sin_port);
  close(fd);
  return p;
}

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void start_server(void) {
  snprintf(dir, sizeof dir, "/tmp/evs-bench-redis-XXXXXX");
  if (mkdtemp(dir) == NULL)
    exit(1);
  port = free_port();
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  server = fork();
  if (server == 0) {
    execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", dir, "--logfile", "/dev/null", "--notify-keyspace-events",
           "KA", (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    int fd = dial();
    if (fd >= 0) {
      close(fd);
      return;
    }
    usleep(50000);
  }
  fprintf(stderr, "redis-server did not start\n");
  exit(1);
}

static void stop_server(void) {
  kill(server, SIGKILL);
  waitpid(server, NULL, 0);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
}

static void report(const char *what, uint32_t *lat, int n) {
  qsort(lat, (size_t)n, sizeof *lat, cmp_u32);
  double sum = 0;
  for (int i = 0; i < n; i++)
    sum += lat[i];
  printf("| %s | %.1f | %.1f | %.1f | %.1f | %d |\n", what, lat[n / 2] / 1e3,
         lat[(int)(n * 0.99)] / 1e3, lat[n - 1] / 1e3, sum / n / 1e3, n);
}

static uv_loop_t loop;
static evs_redis_registry_t *reg;
static evs_tls_cache_t *tlsc;
static evs_scaler_env_t env;

static void run_until(const int *flag) {
  while (!*flag)
    uv_run(&loop, UV_RUN_ONCE);
}

static void on_stop(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop for ms on a timer: no busy polling, so the CPU measured is the scalers'. */
static void run_for_ms(uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, on_stop, ms, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static evs_scaler_t *make_scaler(const char *key, uint64_t cadence, evs_scaler_reading_cb cb,
                                 void *data) {
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  evs_kv_t meta[] = {{"address", addr}, {"listName", key}};
  evs_scaler_config_t cfg = {.type = "redis", .object = "bench/so", .metadata = {meta, 2}};
  evs_scaler_t *s;
  if (evs_scaler_create(&loop, &env, &cfg, &s, NULL) != 0 ||
      evs_scaler_set_cadence(s, cadence) != 0 || evs_scaler_start(s, cb, data) != 0) {
    fprintf(stderr, "cannot make a scaler\n");
    exit(1);
  }
  return s;
}

/* ---- 1. latency ---- */

typedef struct {
  double want;
  int got;
  int64_t at;
} lat_t;

static void lat_reading(evs_scaler_t *s, const evs_reading_t *r, void *data) {
  (void)s;
  lat_t *l = data;
  if (r->error == 0 && r->value == l->want && !l->got) {
    l->got = 1;
    l->at = now_ns();
  }
}

static void on_cmd(evs_redis_conn_t *c, int err, const char *msg, const redisReply *r, void *arg) {
  (void)c;
  (void)msg;
  (void)r;
  if (err != 0) {
    fprintf(stderr, "command failed: %s\n", msg);
    exit(1);
  }
  (*(int *)arg)++;
}

static void latency(int n) {
  evs_redis_options_t o = {.host = "127.0.0.1", .port = port};
  evs_redis_conn_t *c;
  evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c);
  int done = 0;
  evs_redis_command(c, on_cmd, &done, "DEL lat:q");
  run_until(&done);
  lat_t l = {.want = 0};
  evs_scaler_t *s = make_scaler("lat:q", 60000, lat_reading, &l);
  run_until(&l.got);
  evs_redis_scaler_stats_t st0, st1;
  for (int i = 0; i < 200; i++) { /* until the subscription is confirmed */
    evs_redis_scaler_stats(s, &st0);
    if (st0.push == EVS_REDIS_PUSH_ACTIVE)
      break;
    run_for_ms(10);
  }
  uint32_t *push = malloc(sizeof *push * (size_t)n), *llen = malloc(sizeof *llen * (size_t)n);
  for (int i = 0; i < n; i++) {
    l = (lat_t){.want = i + 1};
    done = 0;
    int64_t t0 = now_ns();
    evs_redis_command(c, on_cmd, &done, "LPUSH lat:q x");
    run_until(&l.got);
    push[i] = (uint32_t)(l.at - t0);
    run_until(&done);
  }
  evs_redis_scaler_stats(s, &st1);
  for (int i = 0; i < n; i++) {
    done = 0;
    int64_t t0 = now_ns();
    evs_redis_command(c, on_cmd, &done, "LLEN lat:q");
    run_until(&done);
    llen[i] = since(t0);
  }
  printf("| what | p50 us | p99 us | max us | mean us | n |\n|---|---|---|---|---|---|\n");
  report("LPUSH -> scaler reading (push, poll at 60 s)", push, n);
  report("bare LLEN round trip (evs_redis)", llen, n);
  printf("keyspace events received by the server's subscriber: %llu before, %llu after; "
         "trigger events %llu, reads %llu, polls 0\n",
         (unsigned long long)st0.server_events, (unsigned long long)st1.server_events,
         (unsigned long long)st1.events, (unsigned long long)st1.reads);
  free(push);
  free(llen);
  evs_scaler_close(s, NULL, NULL);
  evs_redis_conn_close(c, NULL, NULL);
  run_for_ms(100);
}

/* ---- 2. hot list ---- */

static uint64_t hot_readings;
static void hot_reading(evs_scaler_t *s, const evs_reading_t *r, void *data) {
  (void)s;
  (void)r;
  (void)data;
  hot_readings++;
}

/* The load: its own process, so its CPU is not ours. */
static pid_t pusher(int rate, int seconds) {
  pid_t p = fork();
  if (p != 0)
    return p;
  int fd = dial();
  static const char cmd[] = "*3\r\n$5\r\nLPUSH\r\n$5\r\nhot:q\r\n$1\r\nx\r\n";
  int batch = rate / 100;
  char *buf = malloc(sizeof cmd * (size_t)batch);
  for (int i = 0; i < batch; i++)
    memcpy(buf + i * (sizeof cmd - 1), cmd, sizeof cmd - 1);
  int64_t next = now_ns();
  char rbuf[65536];
  for (int t = 0; t < seconds * 100; t++) {
    size_t len = (sizeof cmd - 1) * (size_t)batch;
    if (write(fd, buf, len) != (ssize_t)len)
      _exit(1);
    int lines = 0;
    while (lines < batch) {
      ssize_t k = read(fd, rbuf, sizeof rbuf);
      if (k <= 0)
        _exit(1);
      for (ssize_t j = 0; j < k; j++)
        lines += rbuf[j] == '\n';
    }
    next += 10000000;
    int64_t d = next - now_ns();
    if (d > 0)
      usleep((useconds_t)(d / 1000));
  }
  _exit(0);
}

static void hot(int rate, int seconds) {
  int got = 0;
  evs_redis_options_t o = {.host = "127.0.0.1", .port = port};
  evs_redis_conn_t *c;
  evs_redis_conn_new(&loop, &o, EVS_REDIS_COMMANDS, &c);
  evs_redis_command(c, on_cmd, &got, "DEL hot:q");
  run_until(&got);
  evs_scaler_t *s = make_scaler("hot:q", 30000, hot_reading, NULL);
  run_for_ms(500);
  evs_redis_scaler_stats_t a, b;
  evs_redis_scaler_stats(s, &a);
  uint64_t r0 = hot_readings;
  double cpu0 = cpu_seconds();
  int64_t t0 = now_ns();
  pid_t p = pusher(rate, seconds);
  int status = -1;
  while (waitpid(p, &status, WNOHANG) == 0)
    run_for_ms(50);
  double wall = (double)(now_ns() - t0) / 1e9;
  double cpu = cpu_seconds() - cpu0;
  evs_redis_scaler_stats(s, &b);
  printf("hot list: %d LPUSH/s for %d s (pusher exit %d): evscale CPU %.2f s in %.2f s = %.1f %% "
         "of a core; reads %.0f/s, readings %.0f/s, events %.0f/s, coalesced %.0f/s\n",
         rate, seconds, WEXITSTATUS(status), cpu, wall, 100 * cpu / wall,
         (double)(b.reads - a.reads) / wall, (double)(hot_readings - r0) / wall,
         (double)(b.events - a.events) / wall, (double)(b.coalesced - a.coalesced) / wall);
  evs_scaler_close(s, NULL, NULL);
  evs_redis_conn_close(c, NULL, NULL);
  run_for_ms(100);
}

/* ---- 3. many triggers ---- */

typedef struct {
  int64_t last_ns;
  int n, errors;
} trig_t;

static void many_reading(evs_scaler_t *s, const evs_reading_t *r, void *data) {
  (void)s;
  trig_t *t = data;
  t->last_ns = now_ns();
  t->n++;
  t->errors += r->error != 0;
}

static void many(int n, uint64_t cadence, int window) {
  trig_t *t = calloc((size_t)n, sizeof *t);
  evs_scaler_t **s = calloc((size_t)n, sizeof *s);
  long rss0 = rss_bytes();
  int64_t t0 = now_ns();
  for (int i = 0; i < n; i++) {
    char key[32];
    snprintf(key, sizeof key, "m:%d", i);
    s[i] = make_scaler(key, cadence, many_reading, &t[i]);
  }
  int first = 0;
  while (first < n) {
    run_for_ms(20);
    first = 0;
    for (int i = 0; i < n; i++)
      first += t[i].n > 0;
  }
  double startup = (double)(now_ns() - t0) / 1e9;
  run_for_ms(2000); /* subscriptions confirmed, their re-reads done */
  uint64_t reads0 = 0, reads1 = 0;
  evs_redis_scaler_stats_t st;
  for (int i = 0; i < n; i++) {
    evs_redis_scaler_stats(s[i], &st);
    reads0 += st.reads;
  }
  double cpu0 = cpu_seconds();
  int64_t w0 = now_ns();
  run_for_ms((uint64_t)window * 1000);
  double wall = (double)(now_ns() - w0) / 1e9;
  double cpu = cpu_seconds() - cpu0;
  int errors = 0;
  uint32_t *age = malloc(sizeof *age * (size_t)n);
  int64_t now = now_ns();
  for (int i = 0; i < n; i++) {
    evs_redis_scaler_stats(s[i], &st);
    reads1 += st.reads;
    errors += t[i].errors;
    age[i] = (uint32_t)((now - t[i].last_ns) / 1000000);
  }
  qsort(age, (size_t)n, sizeof *age, cmp_u32);
  long rss = rss_bytes();
  printf("%d triggers, cadence %llu ms, startup (all first readings) %.2f s; steady window %.1f s: "
         "CPU %.2f s = %.2f %% of a core; reads %.1f/s (expected %.1f/s); RSS %.1f MiB "
         "(+%.1f MiB for the triggers); connections %zu; error readings %d\n",
         n, (unsigned long long)cadence, startup, wall, cpu, 100 * cpu / wall,
         (double)(reads1 - reads0) / wall, n * 1000.0 / (double)cadence, rss / 1048576.0,
         (rss - rss0) / 1048576.0, evs_redis_registry_size(reg), errors);
  printf("reading age at the end (ms): p50 %u, p90 %u, p99 %u, max %u (cadence %llu)\n", age[n / 2],
         age[(int)(n * 0.9)], age[(int)(n * 0.99)], age[n - 1], (unsigned long long)cadence);
  for (int i = 0; i < n; i++)
    evs_scaler_close(s[i], NULL, NULL);
  run_for_ms(200);
  free(age);
  free(t);
  free(s);
}

int main(int argc, char **argv) {
  int n = 2000, rate = 10000, secs = 10, trig = 10000, window = 75;
  uint64_t cadence = 30000;
  int opt;
  while ((opt = getopt(argc, argv, "n:r:d:t:w:c:")) != -1) {
    switch (opt) {
    case 'n':
      n = atoi(optarg);
      break;
    case 'r':
      rate = atoi(optarg);
      break;
    case 'd':
      secs = atoi(optarg);
      break;
    case 't':
      trig = atoi(optarg);
      break;
    case 'w':
      window = atoi(optarg);
      break;
    case 'c':
      cadence = (uint64_t)atoll(optarg);
      break;
    default:
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  start_server();
  uv_loop_init(&loop);
  evs_redis_options_t d = {.connect_timeout_ms = 5000};
  evs_redis_registry_new(&loop, &d, &reg);
  evs_tls_cache_new(&loop, "", &tlsc);
  env = (evs_scaler_env_t){.redis = reg,
                           .tls = tlsc,
                           .request_timeout_ms = 10000,
                           .redis_keyspace_events = EVS_KEYSPACE_AUTO};
  if (n > 0)
    latency(n);
  if (secs > 0)
    hot(rate, secs);
  if (trig > 0)
    many(trig, cadence, window);
  evs_redis_registry_close(reg, NULL, NULL);
  evs_tls_cache_close(tlsc, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop);
  stop_server();
  return rc == 0 ? 0 : 1;
}
