/* main.c -- the airlock command line: dispatch to the sub-commands of SPEC §1. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define AIRLOCK_VERSION "0.1.0"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
    const char *help;
};

static const struct command commands[] = {
    {"serve", cmd_serve, "serve [-c FILE]",
     "Run the gateway. Without -c, serve the embedded default (127.0.0.1:8080, built-in\n"
     "engine, secrets blocked, audit in ./airlock-data). SIGHUP reloads, SIGTERM drains."},
    {"check-config", cmd_check_config, "check-config -c FILE",
     "Validate a config file; print FILE:LINE:COL: message per problem. Exit 0 valid, 2 invalid."},
    {"policy", cmd_policy,
     "policy test -c FILE [--api openai|anthropic] [--key NAME] [REQUEST.json|-]",
     "Evaluate the policy on one request body without sending it; print one JSON decision."},
    {"audit", cmd_audit,
     "audit verify DIR [--pubkey FILE] | show DIR [--id ID] [--key FILE] [--diff] | "
     "cost DIR [--by key|team|provider|model] [--since DATE]",
     "Verify, show or cost the audit log in DIR."},
    {"keygen", cmd_keygen, "keygen --out PREFIX",
     "Write PREFIX.sign.{key,pub} (Ed25519) and PREFIX.seal.{key,pub} (X25519)."},
    {"engine", cmd_engine,
     "engine run -m MODEL.gguf [-p PROMPT] [-n N] [--temp T] [--seed S] [--threads N]",
     "Run the built-in engine once: tokens to stdout, speed to stderr."},
    {"ca", cmd_ca, "ca init --out PREFIX | ca bundle --ca FILE",
     "init: write an organisation CA for the egress proxy (SPEC section 8): PREFIX.crt (PEM,\n"
     "ECDSA P-256, CA:TRUE, 10 years) and PREFIX.key (PEM, mode 0600); refuses to overwrite.\n"
     "Name them in egress.ca and give PREFIX.crt to the clients.\n"
     "bundle: print the system's trusted roots followed by the CA (PEM): the file for clients\n"
     "that replace rather than extend their trust store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE)."},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

int cli_usage(const char *line)
{
    fprintf(stderr, "usage: airlock %s\n", line);
    return 2;
}

static void print_overview(FILE *f)
{
    size_t i;

    fprintf(f, "airlock %s -- a privacy-enforcing LLM gateway\n\ncommands:\n", AIRLOCK_VERSION);
    for (i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  airlock %s\n", commands[i].usage);
    fprintf(f, "  airlock --version\n  airlock help [COMMAND]\n");
}

static const struct command *find(const char *name)
{
    size_t i;

    for (i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    const struct command *c;

    if (argc < 2) {
        print_overview(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("airlock %s\n", AIRLOCK_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        if (argc > 2) {
            c = find(argv[2]);
            if (!c) {
                fprintf(stderr, "airlock: unknown command '%s'\n", argv[2]);
                return 2;
            }
            printf("usage: airlock %s\n\n%s\n", c->usage, c->help);
            return 0;
        }
        print_overview(stdout);
        return 0;
    }
    c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "airlock: unknown command '%s' (try: airlock help)\n", argv[1]);
        return 2;
    }
    return c->fn(argc - 1, argv + 1);
}
