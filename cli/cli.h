/* cli.h -- the sub-commands of build/airlock (SPEC §1). Each takes argv after the
 * sub-command name (argv[0] is the sub-command), prints its own output, and
 * returns the process exit status. Only main.c and cli/ print to stdout. */
#ifndef AIRLOCK_CLI_H
#define AIRLOCK_CLI_H

int cmd_serve(int argc, char **argv);        /* cli/cmd_serve.c  (proxy)  */
int cmd_check_config(int argc, char **argv); /* cli/cmd_serve.c          */
int cmd_policy(int argc, char **argv);       /* cli/cmd_policy.c (policy) */
int cmd_audit(int argc, char **argv);        /* cli/cmd_audit.c  (audit)  */
int cmd_keygen(int argc, char **argv);       /* cli/cmd_audit.c          */
int cmd_engine(int argc, char **argv);       /* cli/cmd_engine.c (engine) */
int cmd_ca(int argc, char **argv);           /* cli/cmd_ca.c (the egress CA) */

/* cli_usage -- print "usage: airlock LINE" to stderr and return 2. */
int cli_usage(const char *line);

#endif
