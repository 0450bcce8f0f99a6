/* Process metrics from /proc/self. See include/evscale/procstat.h (why reading procfs on the
 * loop is fine). Field positions follow proc(5): /proc/self/stat fields 14 utime, 15 stime,
 * 22 starttime (clock ticks since boot), 23 vsize (bytes), 24 rss (pages); "btime" in /proc/stat
 * is the boot time in seconds since the epoch. */
#include "evscale/procstat.h"
#include "evscale/error.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

static int read_small_file(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -errno;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  return 0;
}

static int boot_time(double *out) {
  char buf[16384];
  int rc = read_small_file("/proc/stat", buf, sizeof buf);
  if (rc != 0)
    return rc;
  const char *p = strstr(buf, "\nbtime ");
  if (p == NULL)
    return EVS_EPARSE;
  *out = strtod(p + 7, NULL);
  return 0;
}

/* The fields after "(comm)": comm may contain spaces and parentheses, so parse from the last
 * ')'. Field 3 (state) is the first after it. */
static int parse_stat(const char *buf, evs_procstat_t *out, double *start_ticks) {
  const char *p = strrchr(buf, ')');
  if (p == NULL)
    return EVS_EPARSE;
  unsigned long utime, stime, vsize;
  unsigned long long starttime;
  long rss;
  int n = sscanf(p + 2,
                 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                 "%llu %lu %ld",
                 &utime, &stime, &starttime, &vsize, &rss);
  if (n != 5)
    return EVS_EPARSE;
  double tck = (double)sysconf(_SC_CLK_TCK);
  out->cpu_seconds = (double)(utime + stime) / tck;
  out->virtual_bytes = (double)vsize;
  out->resident_bytes = (double)rss * (double)sysconf(_SC_PAGESIZE);
  *start_ticks = (double)starttime / tck;
  return 0;
}

static int count_fds(double *out) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return -errno;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  *out = (double)(n > 0 ? n - 1 : 0); /* the directory stream's own descriptor */
  return 0;
}

int evs_procstat_read(evs_procstat_t *out) {
  char buf[1024];
  double start = 0, btime = 0;
  memset(out, 0, sizeof *out);
  int rc = read_small_file("/proc/self/stat", buf, sizeof buf);
  if (rc == 0)
    rc = parse_stat(buf, out, &start);
  if (rc == 0)
    rc = boot_time(&btime);
  if (rc == 0)
    rc = count_fds(&out->open_fds);
  if (rc != 0)
    return rc;
  out->start_time_seconds = btime + start;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    out->max_fds = rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
  return 0;
}

int evs_procstat_read_cached(evs_procstat_cache_t *cache, uint64_t now_ms, evs_procstat_t *out) {
  if (cache->valid && now_ms >= cache->read_ms && now_ms - cache->read_ms < cache->max_age_ms) {
    *out = cache->value;
    return 0;
  }
  int rc = evs_procstat_read(out);
  if (rc != 0)
    return rc;
  cache->value = *out;
  cache->read_ms = now_ms;
  cache->valid = 1;
  return 0;
}

/* The one cache of the registered collector: there is one /proc/self per process. */
static evs_procstat_cache_t scrape_cache = {.max_age_ms = EVS_PROCSTAT_MAX_AGE_MS};

/* One collect callback fills all six families; it hangs on the first family registered and
 * reads /proc at most once per EVS_PROCSTAT_MAX_AGE_MS (collect callbacks all run before
 * anything is printed). Scrapes pipelined by the thousand (issue 9) then cost no /proc reads:
 * counting /proc/self/fd alone is a directory walk as long as the connections are many. */
static void collect(evs_metric_family_t *first, void *data) {
  (void)first;
  evs_metrics_t *reg = data;
  evs_procstat_t ps;
  if (evs_procstat_read_cached(&scrape_cache, uv_hrtime() / 1000000u, &ps) != 0)
    return; /* keep the previous values: a scrape must not fail for this */
  static const char *names[] = {"process_cpu_seconds_total",  "process_max_fds",
                                "process_open_fds",           "process_resident_memory_bytes",
                                "process_start_time_seconds", "process_virtual_memory_bytes"};
  const double vals[] = {ps.cpu_seconds,        ps.max_fds,      ps.open_fds, ps.resident_bytes,
                         ps.start_time_seconds, ps.virtual_bytes};
  for (size_t i = 0; i < 6; i++)
    evs_metric_set(evs_metric_family_child(evs_metrics_find(reg, names[i]), NULL), vals[i]);
}

int evs_procstat_register(evs_metrics_t *reg) {
  /* HELP texts as client_golang's process collector words them. */
  static const evs_metric_desc_t descs[] = {
      {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
       EVS_METRIC_COUNTER, NULL, 0, NULL, 0},
      {"process_max_fds", "Maximum number of open file descriptors.", EVS_METRIC_GAUGE, NULL, 0,
       NULL, 0},
      {"process_open_fds", "Number of open file descriptors.", EVS_METRIC_GAUGE, NULL, 0, NULL, 0},
      {"process_resident_memory_bytes", "Resident memory size in bytes.", EVS_METRIC_GAUGE, NULL, 0,
       NULL, 0},
      {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
       EVS_METRIC_GAUGE, NULL, 0, NULL, 0},
      {"process_virtual_memory_bytes", "Virtual memory size in bytes.", EVS_METRIC_GAUGE, NULL, 0,
       NULL, 0},
  };
  evs_metric_family_t *first = NULL;
  for (size_t i = 0; i < 6; i++) {
    evs_metric_family_t *f;
    int rc = evs_metrics_register(reg, &descs[i], &f);
    if (rc != 0)
      return rc;
    if (i == 0)
      first = f;
  }
  evs_metric_family_set_collect(first, collect, reg);
  return 0;
}
