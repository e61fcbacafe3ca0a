/* fuzz_connect.c -- libFuzzer driver for the egress proxy's CONNECT target parser and
 * host policy (proxy/egress.c): the bytes are a request-target as a client sent it.
 *
 * Invariants (abort on violation):
 *  - a refused target leaves host empty, port 0 and a reason;
 *  - an accepted one is 1..253 bytes of [a-z0-9.-:], a port 1..65535, and parses again
 *    ("host:port", "[v6]:port") to the same host and port;
 *  - a decision always has a NUL-terminated one-line reason; a literal target is never
 *    decided by a name entry, nor intercepted;
 *  - egress_address_allowed with a literal entry allows exactly that address;
 *  - the connect record's meta is valid JSON whatever bytes the host holds. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "proxy/egress.h"

static struct config_intercept icp[] = {
    {.host = "api.openai.com", .port = 443, .provider = "openai"},
};
static struct config_tunnel tun[] = {
    {.glob = "*.github.com", .port = 443},
    {.glob = "10.0.0.5", .port = 22, .literal = 1},
    {.glob = "[fd00::1]", .port = 443, .literal = 1},
    {.glob = "*", .port = 8080},
};
static struct config_egress eg = {
    .present = 1, .intercept = icp, .n_intercept = 1, .tunnel = tun, .n_tunnel = 4};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[256], host2[256], why[160], again[300];
    int port = -1, port2;
    struct egress_decision d;

    if (size > 4096)
        return 0;
    why[0] = '\0';
    if (egress_target_parse((const char *)data, size, host, sizeof host, &port, why, sizeof why) !=
        0) {
        if (host[0] || port != 0 || !why[0])
            abort();
    } else {
        size_t hl = strlen(host);
        if (hl == 0 || hl > 253 || port < 1 || port > 65535 ||
            strspn(host, "abcdefghijklmnopqrstuvwxyz0123456789.-:") != hl)
            abort();
        snprintf(again, sizeof again, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
        if (egress_target_parse(again, strlen(again), host2, sizeof host2, &port2, why,
                                sizeof why) != 0 ||
            strcmp(host, host2) != 0 || port != port2)
            abort();
        egress_decide(&eg, host, port, &d);
        if (!memchr(d.reason, '\0', sizeof d.reason) || !d.reason[0] || strchr(d.reason, '\n'))
            abort();
        unsigned char a[16];
        int lit = inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
        if (lit && (d.verdict == EGRESS_INTERCEPT || (d.tunnel && !d.tunnel->literal)))
            abort();
    }

    /* the first 16 bytes as an IPv6 address (and 4 as IPv4) against a literal entry */
    if (size >= 16) {
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
        struct sockaddr_in s4 = {.sin_family = AF_INET};
        static const unsigned char ten5[4] = {10, 0, 0, 5};
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(&s6.sin6_addr, data, 16);
        memcpy(&s4.sin_addr, data, 4);
        int want6 = memcmp(data, mapped, 12) == 0 && memcmp(data + 12, ten5, 4) == 0;
        if (egress_address_allowed(&tun[1], (struct sockaddr *)&s6) != want6)
            abort();
        if (egress_address_allowed(&tun[1], (struct sockaddr *)&s4) != (memcmp(data, ten5, 4) == 0))
            abort();
        (void)egress_address_allowed(NULL, (struct sockaddr *)&s6);
    }

    /* the raw bytes as the record's host: always valid JSON */
    char *raw = malloc(size + 1);
    if (!raw)
        return 0;
    memcpy(raw, data, size);
    raw[size] = '\0';
    struct egress_connect_info ci = {.id = "f", .host = raw, .reason = raw, .status = 403};
    size_t len;
    char *meta = egress_connect_meta(&ci, &len);
    if (meta) {
        cJSON *j = cJSON_ParseWithLength(meta, len);
        if (!j)
            abort();
        cJSON_Delete(j);
        free(meta);
    }
    free(raw);
    return 0;
}
