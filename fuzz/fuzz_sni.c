/* fuzz_sni.c -- libFuzzer driver for the tunnel's ClientHello reader (proxy/sni.c) and what
 * the host policy makes of it (egress_check_hello): the bytes are a tunnel client's first
 * bytes, as they arrived.
 *
 * Invariants (abort on violation):
 *  - SNI_MORE asks for more than it was given, never more than SNI_BUF_MAX;
 *  - SNI_HELLO: used is within the input; a name is 1..253 bytes of [a-z0-9-_.], no empty
 *    label, no trailing dot; ip only with a name; every prefix shorter than used is
 *    SNI_MORE (what a slower client would have sent first), and the first used bytes
 *    alone give the same name;
 *  - SNI_BAD has a one-line reason; SNI_BAD and SNI_MORE have no name;
 *  - the check's reason is one line; a hello naming an intercepted host never passes, nor
 *    does a hello without a name to an address no entry names;
 *  - sni_http_next, fed prefixes of the bytes, ends with sni_http_parse's answer
 *  - sni_http_parse (the same bytes as a plain HTTP request): SNI_MORE asks for more than
 *    it was given; names are valid and at most two; a head naming the intercepted host
 *    never passes egress_check_http, nor does a cut-off or refused one;
 *  - sni_server_hrr (the same bytes as a server's first ones): SNI_SRV_MORE only under
 *    SNI_SRV_HRR_LEN bytes, and a longer input says the same as its first
 *    SNI_SRV_HRR_LEN bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/egress.h"
#include "proxy/sni.h"

static struct config_intercept icp[] = {
    {.host = "api.openai.com", .port = 443, .provider = "openai"},
};
static struct config_tunnel tun[] = {
    {.glob = "*.github.com", .port = 443},
    {.glob = "10.0.0.5", .port = 443, .literal = 1},
};
static struct config_egress eg = {.present = 1,
                                  .intercept = icp,
                                  .n_intercept = 1,
                                  .tunnel = tun,
                                  .n_tunnel = 2,
                                  .dflt = CONFIG_EGRESS_TUNNEL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void name_ok(const struct sni_hello *h)
{
    size_t l = strlen(h->name);

    if (l < 1 || l > 253 || strspn(h->name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != l ||
        h->name[0] == '.' || h->name[l - 1] == '.' || strstr(h->name, ".."))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sni_hello h, p;
    struct egress_decision d;

    if (size > 2 * SNI_BUF_MAX)
        return 0;
    if (sni_parse(data, size, &h) != 0)
        abort();
    switch (h.kind) {
    case SNI_MORE:
        if (h.need <= size || h.need > SNI_BUF_MAX || h.has_name || h.name[0])
            abort();
        break;
    case SNI_NOT_TLS:
        break;
    case SNI_BAD:
        if (!h.why[0] || strchr(h.why, '\n') || h.has_name || h.name[0])
            abort();
        break;
    case SNI_HELLO:
        if (h.used > size || h.used == 0 || (h.ip && !h.has_name))
            abort();
        if (h.has_name)
            name_ok(&h);
        else if (h.name[0])
            abort();
        if (sni_parse(data, h.used, &p) != 0 || p.kind != SNI_HELLO ||
            strcmp(p.name, h.name) != 0 || p.used != h.used)
            abort();
        for (size_t k = h.used > 64 ? h.used - 64 : 0; k < h.used; k++)
            if (sni_parse(data, k, &p) != 0 || p.kind != SNI_MORE || p.need > h.used)
                abort();
        break;
    default:
        abort();
    }

    egress_check_hello(&eg, "104.18.7.192", 443, NULL, &h, &d);
    if (!d.reason[0] || strchr(d.reason, '\n') || !memchr(d.reason, '\0', sizeof d.reason))
        abort();
    if (d.verdict == EGRESS_TUNNEL && h.kind == SNI_HELLO &&
        (!h.has_name || h.ip || strcmp(h.name, "api.openai.com") == 0))
        abort();
    if (d.verdict == EGRESS_TUNNEL && (h.kind == SNI_BAD || h.kind == SNI_MORE))
        abort();
    egress_check_hello(&eg, "10.0.0.5", 443, &tun[1], &h, &d);
    if (d.verdict == EGRESS_TUNNEL && h.has_name && strcmp(h.name, "api.openai.com") == 0)
        abort();

    struct sni_http r;
    if (sni_http_parse(data, size, &r) != 0)
        abort();
    if (r.kind == SNI_MORE && (r.need <= size || r.need > SNI_BUF_MAX))
        abort();
    if (r.n < 0 || r.n > 2 || (r.kind != SNI_HELLO && r.kind != SNI_BAD && r.n))
        abort();
    { /* read in pieces (as a tunnel reads a head that trickles in): the same answer */
        struct sni_http q;
        memset(&q, 0, sizeof q);
        for (size_t k = size / 3; k < size; k += 1 + k / 2)
            if (sni_http_next(data, k, &q) != 0)
                abort();
        if (sni_http_next(data, size, &q) != 0 || q.kind != r.kind || q.n != r.n ||
            (r.kind == SNI_MORE && q.need != r.need) ||
            (r.kind == SNI_BAD && (q.at != r.at || strcmp(q.why, r.why) != 0)))
            abort();
        for (int i = 0; i < r.n; i++)
            if (strcmp(q.names[i].name, r.names[i].name) != 0 || q.names[i].port != r.names[i].port)
                abort();
    }
    for (int i = 0; r.kind == SNI_HELLO && i < r.n; i++)
        if (!r.names[i].ip) {
            struct sni_hello t;
            memcpy(t.name, r.names[i].name, sizeof t.name);
            name_ok(&t);
        }
    egress_check_http(&eg, 443, &r, &d);
    if (!d.reason[0] || strchr(d.reason, '\n') || !memchr(d.reason, '\0', sizeof d.reason))
        abort();
    if (d.verdict == EGRESS_TUNNEL && (r.kind == SNI_MORE || r.kind == SNI_BAD))
        abort();
    for (int i = 0; d.verdict == EGRESS_TUNNEL && r.kind == SNI_HELLO && i < r.n; i++)
        if (strcmp(r.names[i].name, "api.openai.com") == 0)
            abort();

    enum sni_server v = sni_server_hrr(data, size);
    if (v == SNI_SRV_MORE && size >= SNI_SRV_HRR_LEN)
        abort();
    if (size > SNI_SRV_HRR_LEN && v != sni_server_hrr(data, SNI_SRV_HRR_LEN))
        abort();
    return 0;
}
