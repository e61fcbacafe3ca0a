/* cmd_engine.c -- `airlock engine run`. (placeholder) */
#include <stdio.h>

#include "cli/cli.h"

int cmd_engine(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "airlock engine: not built yet\n");
    return 2;
}
