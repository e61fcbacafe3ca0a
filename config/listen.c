/* listen.c -- the `listen` section: the addresses airlock serves on, each plain HTTP
 * (loopback only) or TLS, each the gateway (`mode: gateway`, the default) or the egress
 * proxy (`mode: forward`). Absent, it is one gateway listener on 127.0.0.1:8080. */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static int host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* split_hostport -- "HOST:PORT" or "[V6]:PORT" into a new host and a port. 0; -1 when
 * not that shape, -2 for a bad port, -3 out of memory. */
static int split_hostport(const char *a, char **host, int *port)
{
    const char *h, *colon;
    size_t hlen;
    if (a[0] == '[') {
        const char *rb = strchr(a, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = a + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon)
            return -1;
        h = a;
        hlen = (size_t)(colon - a);
        if (memchr(h, ':', hlen))
            return -1; /* an IPv6 address must be bracketed */
    }
    if (hlen == 0)
        return -1;
    int p = config_read_port(colon + 1, strlen(colon + 1));
    if (p < 0)
        return -2;
    *host = strndup(h, hlen);
    if (!*host)
        return -3;
    *port = p;
    return 0;
}

static int check_address(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config_listen *ls = entry;
    int r = split_hostport(ls->address, &ls->host, &ls->port);
    if (r == -1)
        config_err(l, v, "listen address '%.60s' must be HOST:PORT (IPv6 as [::1]:PORT)",
                   ls->address);
    else if (r == -2)
        config_err(l, v, "invalid port in listen address '%.60s' (1-65535)", ls->address);
    else if (r == -3)
        config_err(l, v, "out of memory");
    else
        ls->loopback = host_is_loopback(ls->host);
    return r == 0 ? 0 : -1;
}

static void finish_listen(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config_listen *ls = entry;
    (void)got;
    if (!config_read_map_get(l, m, "tls") && ls->host && !ls->loopback)
        config_err(l, m,
                   "listen address '%.60s' is not loopback: plain HTTP is only allowed on "
                   "loopback; add tls: {cert, key}",
                   ls->address);
}

static const struct config_field tls_fields[] = {
    {"cert", FIELD_FILE, .off = offsetof(struct config_listen, tls_cert), .required = 1,
     .hint = "tls cert"},
    {"key", FIELD_FILE, .off = offsetof(struct config_listen, tls_key), .required = 1,
     .hint = "tls key"},
    {.key = NULL},
};

static const struct config_table tls_table = {.what = "tls", .fields = tls_fields};

/* enum config_listen_mode's names; forward is the egress proxy (SPEC §8, config/egress.c) */
static const char *const modes[] = {"gateway", "forward", NULL};
_Static_assert(sizeof(enum config_listen_mode) == sizeof(int), "mode is not int-sized");

static const struct config_field listen_fields[] = {
    {"address", FIELD_NAME, .off = offsetof(struct config_listen, address), .required = 1,
     .check = check_address},
    {"tls", FIELD_MAP, .sub = &tls_table, .hint = "{cert: FILE, key: FILE}"},
    {"mode", FIELD_ENUM, .off = offsetof(struct config_listen, mode), .names = modes,
     .dflt = CONFIG_LISTEN_GATEWAY},
    {.key = NULL},
};

static const struct config_table listen_table = {
    .what = "listen entry", .fields = listen_fields, .finish = finish_listen};

static const struct config_list listen_list = {
    .name = "listen",
    .not_a_map = "each listen entry must be a mapping like {address: 127.0.0.1:8080}",
    .size = sizeof(struct config_listen),
    .pos_off = offsetof(struct config_listen, pos),
    .table = &listen_table,
};

/* listen_default -- the one listener of a file without `listen`. */
static void listen_default(struct config_loader *l)
{
    struct config *cfg = l->cfg;
    cfg->listens = calloc(1, sizeof *cfg->listens);
    if (!cfg->listens) {
        config_err(l, NULL, "out of memory");
        return;
    }
    struct config_listen *ls = &cfg->listens[0];
    ls->address = strdup("127.0.0.1:8080");
    ls->host = strdup("127.0.0.1");
    ls->port = 8080;
    ls->loopback = 1;
    cfg->n_listens = 1;
    if (!ls->address || !ls->host)
        config_err(l, NULL, "out of memory");
}

void config_listen_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    if (!sec) {
        listen_default(l);
        return;
    }
    if (config_is_seq(sec) && config_seq_len(sec) == 0) {
        config_err(l, sec, "listen must have at least one address");
        return;
    }
    cfg->listens = config_fields_alloc(l, sec, listen_list.name, listen_list.size);
    if (cfg->listens)
        config_fields_list(l, sec, &listen_list, cfg->listens, &cfg->n_listens);
}
