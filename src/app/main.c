/* evscale: the command-line entry point. Parses the command, loads the configuration (before
 * the loop runs, so a synchronous read is fine here) and hands over to the command. */
#include "evscale/app.h"
#include "evscale/cli.h"
#include "evscale/config.h"
#include "evscale/error.h"
#include "evscale/log.h"
#include "evscale/simulate.h"
#include "evscale/tz.h"
#include "evscale/version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mbedtls/version.h>
#include <signal.h>
#include <uv.h>

extern char **environ;

static void print_diag(FILE *out, const evs_diag_t *d) {
  char buf[1024];
  for (size_t i = 0; i < d->n; i++) {
    evs_diag_format(d, i, buf, sizeof buf);
    fprintf(out, "%s\n", buf);
  }
  if (d->dropped)
    fprintf(out, "... and %zu more errors\n", d->dropped);
}

/* defaults < file < EVSCALE_* environment < command-line flags. Prints every error. */
static int load_config(const evs_cli_t *cli, const evs_app_options_t *opts, evs_config_t **out) {
  evs_diag_t d;
  evs_diag_init(&d);
  int rc = opts->config_path ? evs_config_load_file(opts->config_path, environ, out, &d)
                             : evs_config_load_buffer("", 0, "(defaults)", environ, out, &d);
  if (rc == 0 && evs_app_apply_flags(opts, *out, &d) != 0)
    rc = EVS_EINVALCFG;
  if (rc == 0 && evs_app_check_scaled_objects(*out, &d) != 0)
    rc = EVS_EINVALCFG;
  if (rc != 0) {
    print_diag(stderr, &d);
    fprintf(stderr, "evscale: %s: configuration is invalid (%zu error%s)\n",
            opts->config_path ? opts->config_path : "(defaults)", d.n + d.dropped,
            d.n + d.dropped == 1 ? "" : "s");
    evs_config_free(*out);
    *out = NULL;
  }
  (void)cli;
  evs_diag_free(&d);
  return rc;
}

static int cmd_version(void) {
  printf("evscale %s (revision %s, libuv %s, %s)\n", EVS_VERSION, evs_git_revision,
         uv_version_string(), MBEDTLS_VERSION_STRING_FULL);
  return EVS_EXIT_OK;
}

static int cmd_help(const evs_cli_t *cli) {
  int c = cli->help_topic ? evs_cli_command(cli->help_topic) : EVS_CMD_HELP;
  fputs(evs_cli_usage(c < 0 ? EVS_CMD_HELP : (evs_cmd_t)c), stdout);
  return EVS_EXIT_OK;
}

static int cmd_check_config(const evs_cli_t *cli, const evs_app_options_t *opts) {
  evs_config_t *cfg = NULL;
  if (load_config(cli, opts, &cfg) != 0)
    return EVS_EXIT_CONFIG;
  int rc = evs_config_dump(cfg, stdout);
  evs_config_free(cfg);
  return rc == 0 ? EVS_EXIT_OK : EVS_EXIT_RUNTIME;
}

static int cmd_run(const evs_cli_t *cli, const evs_app_options_t *opts) {
  evs_config_t *cfg = NULL;
  if (load_config(cli, opts, &cfg) != 0)
    return EVS_EXIT_CONFIG;
  uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc != 0) {
    fprintf(stderr, "evscale: cannot create the event loop: %s\n", evs_strerror(rc));
    evs_config_free(cfg);
    return EVS_EXIT_RUNTIME;
  }
  int code = evs_app_run(&loop, cfg, opts);
  rc = uv_loop_close(&loop);
  if (rc != 0) {
    /* A handle left open is a bug: report it rather than exit quietly. */
    EVS_LOG_ERROR("event loop closed with handles still open", EVS_KV_ERR("err", rc));
    return EVS_EXIT_RUNTIME;
  }
  return code;
}

int main(int argc, char **argv) {
  evs_cli_t cli;
  char err[256];
  /* libuv writes to sockets with write(2), not send(MSG_NOSIGNAL): without this a peer that
   * resets a connection we are writing to (a client pipelining and resetting, a backend going
   * away) kills the process with SIGPIPE. Ignored, the write fails with EPIPE and only that
   * connection closes. Set before anything can open a socket; inherited ignores are kept by
   * exec'd children, and evscale runs none. */
  signal(SIGPIPE, SIG_IGN);
  if (evs_cli_parse(argc, argv, &cli, err, sizeof err) != 0) {
    fprintf(stderr, "evscale: %s\n\n%s", err, evs_cli_usage(EVS_CMD_HELP));
    return EVS_EXIT_USAGE;
  }
  evs_app_options_t opts = {.config_path =
                                cli.config_path ? cli.config_path : getenv("EVSCALE_CONFIG"),
                            .envp = environ,
                            .log_level = cli.log_level,
                            .log_format = cli.log_format,
                            .dry_run = cli.dry_run};
  if (opts.config_path && *opts.config_path == '\0')
    opts.config_path = NULL;
  if (cli.cmd == EVS_CMD_VERSION)
    return cmd_version();
  if (cli.cmd == EVS_CMD_HELP)
    return cmd_help(&cli);
  /* The zone names, read once before the loop runs, let a cron trigger naming an unknown zone be
   * refused when it is created. Without a tz database the scalers report it through readings. */
  (void)evs_tz_index_load(NULL);
  int code;
  if (cli.cmd == EVS_CMD_CHECK_CONFIG)
    code = cmd_check_config(&cli, &opts);
  else if (cli.cmd == EVS_CMD_SIMULATE)
    code = evs_simulate_main(cli.sub_argc, cli.sub_argv);
  else
    code = cmd_run(&cli, &opts);
  evs_tz_index_free();
  return code;
}
