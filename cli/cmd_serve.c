/* cmd_serve.c -- `airlock serve` and `airlock check-config`. (being written) */
#include <stdio.h>

#include "cli/cli.h"

int cmd_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "airlock serve: not built yet\n");
    return 2;
}

int cmd_check_config(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "airlock check-config: not built yet\n");
    return 2;
}
