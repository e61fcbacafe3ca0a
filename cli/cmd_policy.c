/* cmd_policy.c -- `airlock policy test`. (placeholder until the policy issue lands) */
#include <stdio.h>

#include "cli/cli.h"

int cmd_policy(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "airlock policy: not built yet\n");
    return 2;
}
