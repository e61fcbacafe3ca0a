/* egress.c -- the `egress` section (SPEC §8): the egress proxy's host policy and its CA.
 *
 *   egress:
 *     ca: {cert: ./airlock-ca.crt, key: ./airlock-ca.key}
 *     intercept: [{host: api.openai.com, provider: openai}]      # "host" or "host:port"
 *     tunnel: ["*.github.com", "pypi.org:443", "10.0.0.5:22", "[fd00::1]:8443"]
 *     default: deny            # or tunnel
 *     max_tunnels: 1024
 *     tunnel_idle_ms: 300000
 *
 * Required when a listener has `mode: forward`. The CA is loaded and checked here, so
 * check-config reports a CA that is not one, a key that does not match it or that others
 * may read, at the `ca` entry. proxy/egress.c applies the policy; it relies on what is
 * checked here: hosts and globs lower-case, '*' only as whole leftmost labels, IP
 * literals in their canonical spelling and flagged `literal`, ports 1-65535. */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

_Static_assert(sizeof(enum config_egress_default) == sizeof(int), "default is not int-sized");

/* ---- the CA ---- */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* an encrypted key is refused, never prompted for */
}

int config_egress_ca_load(const char *cert_path, const char *key_path, struct x509_st **cert_out,
                          struct evp_pkey_st **key_out, char *why, size_t whylen)
{
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    BIO *b = NULL;
    struct stat st;
    char eb[128];
    int rc = -1;

    if (cert_out)
        *cert_out = NULL;
    if (key_out)
        *key_out = NULL;
    if (!(b = BIO_new_file(cert_path, "r"))) {
        snprintf(why, whylen, "egress ca cert '%.100s' cannot be read: %s", cert_path,
                 strerror_r(errno ? errno : EIO, eb, sizeof eb));
        goto out;
    }
    x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    b = NULL;
    if (!x) {
        snprintf(why, whylen, "egress ca cert '%.100s' is not a PEM certificate", cert_path);
        goto out;
    }
    /* EXFLAG_CA: basicConstraints CA:TRUE; keyUsage, when present, must allow signing
     * certificates, or every client refuses the leaves */
    uint32_t xf = X509_get_extension_flags(x);
    if (xf & EXFLAG_INVALID) {
        snprintf(why, whylen, "egress ca cert '%.100s' has extensions that cannot be parsed",
                 cert_path);
        goto out;
    }
    if (!(xf & EXFLAG_CA)) {
        snprintf(why, whylen,
                 "egress ca cert '%.100s' is not a CA certificate (no basicConstraints CA:TRUE); "
                 "make one with `airlock ca init`",
                 cert_path);
        goto out;
    }
    if ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN)) {
        snprintf(why, whylen,
                 "egress ca cert '%.100s' may not sign certificates (its keyUsage lacks "
                 "keyCertSign)",
                 cert_path);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        snprintf(why, whylen, "egress ca cert '%.100s' has expired", cert_path);
        goto out;
    }
    if (stat(key_path, &st) != 0) {
        snprintf(why, whylen, "egress ca key '%.100s' cannot be read: %s", key_path,
                 strerror_r(errno, eb, sizeof eb));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "egress ca key '%.100s' is not a regular file", key_path);
        goto out;
    }
    if (st.st_mode & 077) {
        snprintf(why, whylen,
                 "egress ca key '%.100s' is readable by others (mode %04o): it must be mode 0600",
                 key_path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (!(b = BIO_new_file(key_path, "r"))) {
        snprintf(why, whylen, "egress ca key '%.100s' cannot be read: %s", key_path,
                 strerror_r(errno ? errno : EIO, eb, sizeof eb));
        goto out;
    }
    pk = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    b = NULL;
    if (!pk) {
        snprintf(why, whylen, "egress ca key '%.100s' is not an unencrypted PEM private key",
                 key_path);
        goto out;
    }
    if (X509_check_private_key(x, pk) != 1) {
        snprintf(why, whylen, "egress ca key '%.100s' does not match the certificate '%.100s'",
                 key_path, cert_path);
        goto out;
    }
    rc = 0;
    if (cert_out) {
        *cert_out = x;
        x = NULL;
    }
    if (key_out) {
        *key_out = pk;
        pk = NULL;
    }
out:
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

static void finish_ca(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config_egress *eg = entry;
    char why[300];
    /* an unreadable file was reported at its value already */
    if (got != 3 || access(eg->ca_cert, R_OK) != 0 || access(eg->ca_key, R_OK) != 0)
        return;
    if (config_egress_ca_load(eg->ca_cert, eg->ca_key, NULL, NULL, why, sizeof why) != 0)
        config_err(l, m, "%s", why);
}

static const struct config_field ca_fields[] = {
    {"cert", FIELD_FILE, .off = offsetof(struct config_egress, ca_cert), .required = 1,
     .hint = "egress ca cert"},
    {"key", FIELD_FILE, .off = offsetof(struct config_egress, ca_key), .required = 1,
     .hint = "egress ca key"},
    {.key = NULL},
};

static const struct config_table ca_table = {
    .what = "egress ca", .fields = ca_fields, .finish = finish_ca};

/* ---- host names, globs, literals ---- */

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* check_host -- a lower-case host name or glob: labels of [a-z0-9-], 1-63 bytes, at most
 * 253 in all; with `glob`, whole '*' labels allowed leftmost only. Returns NULL, or what
 * is wrong. */
static const char *check_host(const char *h, int glob)
{
    size_t n = strlen(h), lab = 0;
    int seen_name = 0;
    if (n == 0)
        return "is empty";
    if (n > 253)
        return "is longer than 253 bytes";
    for (const char *p = h;; p++) {
        if (*p == '.' || *p == '\0') {
            if (lab == 0)
                return "has an empty label";
            if (lab > 63)
                return "has a label longer than 63 bytes";
            lab = 0;
            if (!*p)
                break;
            continue;
        }
        if (*p == '*') {
            if (!glob)
                return "may not hold '*'";
            if (seen_name || lab != 0 || (p[1] != '.' && p[1] != '\0'))
                return "may only hold '*' as whole leftmost labels ('*.example.com')";
            lab++;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return "may only hold letters, digits, '-' and '.'";
        seen_name = 1;
        lab++;
    }
    return NULL;
}

/* split_port -- s "HOST" or "HOST:PORT" (HOST "[v6]" or a name) into *port, cutting s at
 * the port. 0, -1 bad port, -2 an unbracketed IPv6 literal, -3 a bracket without its
 * closing half or with text after it. */
static int split_port(char *s, int *port)
{
    char *colon;
    *port = 443;
    if (s[0] == '[') {
        char *rb = strchr(s, ']');
        if (!rb)
            return -3;
        if (rb[1] == '\0')
            return 0;
        if (rb[1] != ':')
            return -3;
        colon = rb + 1;
    } else {
        colon = strchr(s, ':');
        if (!colon)
            return 0;
        if (strchr(colon + 1, ':'))
            return -2;
    }
    int p = config_read_port(colon + 1, strlen(colon + 1));
    if (p < 0)
        return -1;
    *port = p;
    *colon = '\0';
    return 0;
}

/* classify -- what host (after split_port) is: 0 a name or glob (checked), 1 an IPv4 or
 * bracketed IPv6 literal (valid, rewritten canonical in place: "[FD00:0::1]" ->
 * "[fd00::1]"), -1 with *bad set. */
static int classify(char *h, int glob, const char **bad)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(h);
    if (h[0] == '[') {
        struct in6_addr a6;
        if (n < 3 || n - 2 >= sizeof buf) {
            *bad = "is not a valid IPv6 literal";
            return -1;
        }
        memcpy(buf, h + 1, n - 2);
        buf[n - 2] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1 || !inet_ntop(AF_INET6, &a6, buf, sizeof buf)) {
            *bad = "is not a valid IPv6 literal";
            return -1;
        }
        snprintf(h, n + 1, "[%s]", buf); /* canonical is never longer than valid input */
        return 1;
    }
    if ((*bad = check_host(h, glob)) != NULL)
        return -1;
    const char *last = strrchr(h, '.');
    last = last ? last + 1 : h;
    if (all_digits(last)) {
        struct in_addr a4;
        if (strchr(h, '*') || inet_pton(AF_INET, h, &a4) != 1) {
            *bad = "ends in a number but is not an IPv4 address a.b.c.d";
            return -1;
        }
        return 1;
    }
    return 0;
}

/* ---- intercept ---- */

static int check_intercept_host(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config_intercept *ic = entry;
    const char *bad = NULL;
    lower(ic->host);
    int r = split_port(ic->host, &ic->port);
    if (r == -1) {
        config_err(l, v, "egress intercept host '%.80s': invalid port (1-65535)", ic->host);
        return -1;
    }
    if (r < 0 || ic->host[0] == '[') {
        config_err(l, v, "egress intercept host '%.80s' must be a host name (host or host:port)",
                   ic->host);
        return -1;
    }
    r = classify(ic->host, 0, &bad);
    if (r < 0) {
        config_err(l, v, "egress intercept host '%.80s' %s", ic->host, bad);
        return -1;
    }
    if (r == 1) {
        config_err(l, v, "egress intercept host '%.80s' must be a host name, not an address",
                   ic->host);
        return -1;
    }
    return 0;
}

static int check_intercept_provider(struct config_loader *l, yaml_node_t *v, void *entry)
{
    struct config_intercept *ic = entry;
    const struct config_provider *p = config_provider_find(l->cfg, ic->provider);
    if (!p) {
        config_err(l, v, "egress intercept: unknown provider '%.60s' (not in providers)",
                   ic->provider);
        return -1;
    }
    if (p->type == CONFIG_PROVIDER_BUILTIN) {
        config_err(l, v,
                   "egress intercept: provider '%.60s' is builtin; an intercepted host needs an "
                   "openai, anthropic or openai-compatible provider",
                   ic->provider);
        return -1;
    }
    ic->prov_index = (size_t)(p - l->cfg->providers);
    return 0;
}

static void finish_intercept(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    const struct config_egress *eg = &l->cfg->egress;
    const struct config_intercept *ic = entry;
    if (!(got & 1))
        return;
    for (size_t j = 0; j < eg->n_intercept; j++) {
        const struct config_intercept *o = &eg->intercept[j];
        if (o != ic && o->host && o->port == ic->port && strcmp(o->host, ic->host) == 0) {
            config_err(l, m, "duplicate egress intercept host '%.80s:%d' (first at line %d)",
                       ic->host, ic->port, o->pos.line);
            break;
        }
    }
}

static const struct config_field intercept_fields[] = {
    {"host", FIELD_NAME, .off = offsetof(struct config_intercept, host), .required = 1,
     .check = check_intercept_host},
    {"provider", FIELD_NAME, .off = offsetof(struct config_intercept, provider), .required = 1,
     .check = check_intercept_provider},
    {.key = NULL},
};

static const struct config_table intercept_table = {
    .what = "egress intercept entry", .fields = intercept_fields, .finish = finish_intercept};

static const struct config_list intercept_list = {
    .name = "egress intercept",
    .not_a_map = "each egress intercept entry must be a mapping {host, provider}",
    .size = sizeof(struct config_intercept),
    .pos_off = offsetof(struct config_intercept, pos),
    .table = &intercept_table,
};

/* ---- tunnel ---- */

static void read_tunnels(struct config_loader *l, yaml_node_t *sec, struct config_egress *eg)
{
    if (!config_is_seq(sec)) {
        config_err(l, sec, "egress tunnel must be a list of host globs like [\"*.github.com\"]");
        return;
    }
    size_t n = config_seq_len(sec);
    eg->tunnel = calloc(n ? n : 1, sizeof *eg->tunnel);
    if (!eg->tunnel) {
        config_err(l, sec, "out of memory");
        return;
    }
    for (yaml_node_item_t *it = sec->data.sequence.items.start; it < sec->data.sequence.items.top;
         it++) {
        yaml_node_t *v = config_node(l, *it);
        const char *bad = NULL;
        char *s;
        int port, r;
        if (!config_is_scalar(v)) {
            config_err(l, v, "each egress tunnel entry must be a string: \"HOST[:PORT]\"");
            continue;
        }
        if (!(s = config_read_name(l, v, "egress tunnel entry")))
            continue;
        lower(s);
        r = split_port(s, &port);
        if (r == -1)
            config_err(l, v, "egress tunnel entry '%.80s': invalid port (1-65535)", s);
        else if (r == -2)
            config_err(l, v, "egress tunnel entry '%.80s': an IPv6 literal must be in brackets", s);
        else if (r == -3)
            config_err(l, v, "egress tunnel entry '%.80s' must be HOST, HOST:PORT or [V6]:PORT", s);
        else if ((r = classify(s, 1, &bad)) < 0)
            config_err(l, v, "egress tunnel entry '%.80s' %s", s, bad);
        if (r < 0) {
            free(s);
            continue;
        }
        struct config_tunnel *t = &eg->tunnel[eg->n_tunnel++];
        t->glob = s;
        t->port = port;
        t->literal = r == 1;
        t->pos = config_pos_of(v);
    }
}

/* ---- the section ---- */

static const char *const defaults[] = {"deny", "tunnel", NULL}; /* enum config_egress_default */

static void finish_egress(struct config_loader *l, yaml_node_t *m, void *entry, uint32_t got)
{
    struct config_egress *eg = entry;
    yaml_node_t *ic = config_read_map_get(l, m, "intercept");
    yaml_node_t *tn = config_read_map_get(l, m, "tunnel");
    (void)got;
    if (ic) {
        eg->intercept = config_fields_alloc(l, ic, intercept_list.name, intercept_list.size);
        if (eg->intercept)
            config_fields_list(l, ic, &intercept_list, eg->intercept, &eg->n_intercept);
        if (eg->n_intercept > 0 && !config_read_map_get(l, m, "ca"))
            config_err(l, ic,
                       "egress intercept needs a CA to mint host certificates: add ca: {cert, "
                       "key} (from `airlock ca init`)");
    }
    if (tn)
        read_tunnels(l, tn, eg);
}

static const struct config_field egress_fields[] = {
    {"ca", FIELD_MAP, .sub = &ca_table, .hint = "{cert: FILE, key: FILE}"},
    {.key = "intercept", .type = FIELD_NODE},
    {.key = "tunnel", .type = FIELD_NODE},
    {"default", FIELD_ENUM, .off = offsetof(struct config_egress, dflt), .names = defaults,
     .dflt = CONFIG_EGRESS_DENY},
    {"max_tunnels", FIELD_INT, .off = offsetof(struct config_egress, max_tunnels), .min = 1,
     .max = 1000000, .dflt = 1024},
    {"tunnel_idle_ms", FIELD_INT, .off = offsetof(struct config_egress, tunnel_idle_ms), .min = 1,
     .max = 86400000, .dflt = 300000},
    {.key = NULL},
};

static const struct config_table egress_table = {
    .what = "egress", .fields = egress_fields, .finish = finish_egress};

void config_egress_load(struct config_loader *l, yaml_node_t *sec)
{
    struct config *cfg = l->cfg;
    struct config_egress *eg = &cfg->egress;
    config_fields_defaults(&egress_table, eg);
    if (sec) {
        eg->pos = config_pos_of(sec);
        if (!config_is_map(sec)) {
            config_err(l, sec, "egress must be a mapping {ca, intercept, tunnel, default}");
            return;
        }
        eg->present = 1;
        config_fields_read(l, sec, &egress_table, eg);
        return;
    }
    for (size_t i = 0; i < cfg->n_listens; i++) {
        const struct config_listen *ls = &cfg->listens[i];
        if (ls->mode == CONFIG_LISTEN_FORWARD)
            config_err_pos(l, ls->pos,
                           "listen address '%.60s' has mode: forward, which needs an egress "
                           "section (SPEC §8)",
                           ls->address ? ls->address : "?");
    }
}

void config_egress_free(struct config_egress *eg)
{
    free(eg->ca_cert);
    free(eg->ca_key);
    for (size_t i = 0; i < eg->n_intercept; i++) {
        free(eg->intercept[i].host);
        free(eg->intercept[i].provider);
    }
    free(eg->intercept);
    for (size_t i = 0; i < eg->n_tunnel; i++)
        free(eg->tunnel[i].glob);
    free(eg->tunnel);
    memset(eg, 0, sizeof *eg);
}
