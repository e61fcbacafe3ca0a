/* cmd_audit.c -- `airlock audit ...` and `airlock keygen`. (placeholder) */
#include <stdio.h>

#include "cli/cli.h"

int cmd_audit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "airlock audit: not built yet\n");
    return 2;
}

int cmd_keygen(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "airlock keygen: not built yet\n");
    return 2;
}
