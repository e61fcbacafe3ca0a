/* test_egress.c -- the egress proxy's host policy (proxy/egress.c): CONNECT targets
 * parsed or refused (hostile ones included), the intercept/tunnel/default decision, what
 * a tunnel's TLS ClientHello may name, the addresses a tunnel may reach, and the connect
 * record's meta JSON. */
#include "proxy/egress.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tests/harness.h"

static int parse(const char *t, char *host, int *port, char *why)
{
    return egress_target_parse(t, strlen(t), host, 256, port, why, 160);
}

/* refused -- target t is refused, with a reason containing sub */
static int refused(const char *t, size_t len, const char *sub)
{
    char host[256], why[160] = "";
    int port = 7;
    int r = egress_target_parse(t, len, host, sizeof host, &port, why, sizeof why);
    if (r != -1 || port != 0 || host[0] != '\0' || !strstr(why, sub)) {
        fprintf(stderr, "  target '%.*s': r=%d port=%d why='%s' (want '%s')\n", (int)len, t, r,
                port, why, sub);
        return 0;
    }
    return 1;
}

static void test_target_ok(void)
{
    char host[256], why[160];
    int port;
    CHECK(parse("api.openai.com:443", host, &port, why) == 0);
    CHECK_EQ_STR(host, "api.openai.com");
    CHECK_EQ_INT(port, 443);
    CHECK(parse("API.OpenAI.COM:8443", host, &port, why) == 0);
    CHECK_EQ_STR(host, "api.openai.com");
    CHECK_EQ_INT(port, 8443);
    CHECK(parse("10.0.0.5:22", host, &port, why) == 0);
    CHECK_EQ_STR(host, "10.0.0.5");
    CHECK_EQ_INT(port, 22);
    CHECK(parse("[::1]:443", host, &port, why) == 0);
    CHECK_EQ_STR(host, "::1");
    CHECK(parse("[FD00::AB]:65535", host, &port, why) == 0);
    CHECK_EQ_STR(host, "fd00::ab");
    CHECK_EQ_INT(port, 65535);
    CHECK(parse("localhost:1", host, &port, why) == 0);
    CHECK_EQ_STR(host, "localhost");
    CHECK_EQ_INT(port, 1);
    /* a 253-byte name of 63-byte labels */
    char big[300];
    memset(big, 'a', 253);
    big[63] = big[127] = big[191] = '.';
    memcpy(big + 253, ":443", 5);
    CHECK(parse(big, host, &port, why) == 0);
    CHECK_EQ_INT(strlen(host), 253);
}

static void test_target_hostile(void)
{
    char big[400];
    CHECK(refused("api.openai.com", 14, "no port"));
    CHECK(refused("api.openai.com:", 15, "no port"));
    CHECK(refused("api.openai.com:0", 16, "1-65535"));
    CHECK(refused("api.openai.com:65536", 20, "1-65535"));
    CHECK(refused("api.openai.com:99999999999", 26, "1-65535"));
    CHECK(refused("api.openai.com:44a", 18, "1-65535"));
    CHECK(refused("api.openai.com:+443", 19, "1-65535"));
    CHECK(refused("api.openai.com:-1", 17, "1-65535"));
    CHECK(refused(":443", 4, "empty host"));
    CHECK(refused("", 0, "empty"));
    CHECK(refused("api.openai.com\0.evil:443", 24, "NUL"));
    CHECK(refused("api.openai.com :443", 19, "space"));
    CHECK(refused("api.openai.com: 443", 19, "space"));
    CHECK(refused("api.openai.com:443\r\n", 20, "control"));
    CHECK(refused("api\topenai.com:443", 18, "control"));
    CHECK(refused("\xc3\xa9vil.com:443", 12, "non-ASCII"));
    CHECK(refused("user:pw@api.openai.com:443", 26, "userinfo"));
    CHECK(refused("api.openai.com:443/v1", 21, "path"));
    CHECK(refused("http://api.openai.com:443", 25, "path"));
    CHECK(refused("::1:443", 7, "brackets"));
    CHECK(refused("fd00::1:443", 11, "brackets"));
    CHECK(refused("[::1]", 5, "no port"));
    CHECK(refused("[::1:443", 8, "closing"));
    CHECK(refused("[::1]443", 8, "[IPv6]:port"));
    CHECK(refused("[not::an::address]:443", 22, "IPv6 literal"));
    CHECK(refused("[1.2.3.4]:443", 13, "IPv6 literal"));
    CHECK(refused("[fe80::1%eth0]:443", 18, "IPv6 literal"));
    CHECK(refused("a..b:443", 8, "empty label"));
    CHECK(refused(".a.b:443", 8, "empty label"));
    CHECK(refused("a.b.:443", 8, "empty label"));
    CHECK(refused("a_b.com:443", 11, "letters, digits"));
    CHECK(refused("*.github.com:443", 16, "letters, digits"));
    CHECK(refused("127.1:443", 9, "dotted quad"));
    CHECK(refused("999.0.0.1:443", 13, "dotted quad"));
    CHECK(refused("2130706433:443", 14, "dotted quad"));
    CHECK(refused("0x7f.0.0.1:443", 14, "dotted quad"));
    CHECK(refused("01.2.3.4:443", 12, "dotted quad"));
    memset(big, 'a', 254);
    for (int i = 50; i < 254; i += 50)
        big[i] = '.';
    memcpy(big + 254, ":443", 4);
    CHECK(refused(big, 258, "longer than 253"));
    memset(big, 'a', 64);
    memcpy(big + 64, ".com:443", 8);
    CHECK(refused(big, 72, "label longer than 63"));
    /* the host buffer too small is a refusal, not an overflow */
    char small[8], why[160];
    int port;
    CHECK(egress_target_parse("api.openai.com:443", 18, small, sizeof small, &port, why,
                              sizeof why) == -1);
}

/* a policy like SPEC §8's */
static struct config_intercept icp[2];
static struct config_tunnel tun[6];
static struct config_egress eg;

static void policy_init(void)
{
    memset(&eg, 0, sizeof eg);
    eg.present = 1;
    icp[0] = (struct config_intercept){.host = "api.openai.com", .port = 443, .provider = "openai"};
    icp[1] = (struct config_intercept){
        .host = "api.anthropic.com", .port = 443, .provider = "anthropic", .prov_index = 1};
    tun[0] = (struct config_tunnel){.glob = "*.github.com", .port = 443, .pos = {12, 5}};
    tun[1] = (struct config_tunnel){.glob = "pypi.org", .port = 443};
    tun[2] = (struct config_tunnel){.glob = "10.0.0.5", .port = 22, .literal = 1};
    tun[3] = (struct config_tunnel){.glob = "[fd00::1]", .port = 8443, .literal = 1};
    tun[4] = (struct config_tunnel){.glob = "*.*.deep.example", .port = 443};
    tun[5] = (struct config_tunnel){.glob = "localhost", .port = 443};
    eg.intercept = icp;
    eg.n_intercept = 2;
    eg.tunnel = tun;
    eg.n_tunnel = 6;
    eg.dflt = CONFIG_EGRESS_DENY;
}

static enum egress_verdict decide(const char *host, int port, struct egress_decision *d)
{
    egress_decide(&eg, host, port, d);
    return d->verdict;
}

static void test_decide(void)
{
    struct egress_decision d;
    policy_init();

    CHECK(decide("api.openai.com", 443, &d) == EGRESS_INTERCEPT);
    CHECK(d.intercept == &icp[0] && d.tunnel == NULL);
    CHECK(strstr(d.reason, "openai") != NULL);
    CHECK(decide("api.anthropic.com", 443, &d) == EGRESS_INTERCEPT);
    CHECK(d.intercept == &icp[1]);
    CHECK(decide("api.openai.com", 8443, &d) == EGRESS_REFUSE); /* port is part of it */
    CHECK(strstr(d.reason, "api.openai.com:8443") && strstr(d.reason, "deny"));
    CHECK(decide("xapi.openai.com", 443, &d) == EGRESS_REFUSE);

    CHECK(decide("api.github.com", 443, &d) == EGRESS_TUNNEL);
    CHECK(d.tunnel == &tun[0] && d.intercept == NULL);
    CHECK(strstr(d.reason, "*.github.com") && strstr(d.reason, "line 12"));
    CHECK(decide("a.b.github.com", 443, &d) == EGRESS_TUNNEL);
    CHECK(decide("github.com", 443, &d) == EGRESS_REFUSE);
    CHECK(decide("evilgithub.com", 443, &d) == EGRESS_REFUSE);
    CHECK(decide("api.github.com.evil.com", 443, &d) == EGRESS_REFUSE);
    CHECK(decide("api.github.com", 22, &d) == EGRESS_REFUSE);
    CHECK(decide("pypi.org", 443, &d) == EGRESS_TUNNEL);
    CHECK(d.tunnel == &tun[1]);
    CHECK(decide("www.pypi.org", 443, &d) == EGRESS_REFUSE);
    /* k '*' labels need k or more labels */
    CHECK(decide("a.b.deep.example", 443, &d) == EGRESS_TUNNEL);
    CHECK(decide("x.a.b.deep.example", 443, &d) == EGRESS_TUNNEL);
    CHECK(decide("a.deep.example", 443, &d) == EGRESS_REFUSE);

    /* literals match only literal entries, by address */
    CHECK(decide("10.0.0.5", 22, &d) == EGRESS_TUNNEL);
    CHECK(d.tunnel == &tun[2]);
    CHECK(decide("10.0.0.5", 443, &d) == EGRESS_REFUSE);
    CHECK(decide("10.0.0.6", 22, &d) == EGRESS_REFUSE);
    CHECK(decide("fd00::1", 8443, &d) == EGRESS_TUNNEL);
    CHECK(d.tunnel == &tun[3]);
    CHECK(decide("fd00:0:0::1", 8443, &d) == EGRESS_TUNNEL);
    CHECK(decide("fd00::2", 8443, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "[fd00::2]:8443") != NULL);
    /* an IPv6 literal target never matches a name glob, even '*' or 'localhost' */
    CHECK(decide("::1", 443, &d) == EGRESS_REFUSE);
    CHECK(decide("::ffff:10.0.0.5", 22, &d) == EGRESS_TUNNEL); /* the same address */
    CHECK(decide("127.0.0.1", 443, &d) == EGRESS_REFUSE);
    CHECK(decide("localhost", 443, &d) == EGRESS_TUNNEL); /* by name; addresses checked later */

    /* a bare '*' matches any name, never a literal */
    struct config_tunnel star = {.glob = "*", .port = 443};
    struct config_egress e2 = {.present = 1, .tunnel = &star, .n_tunnel = 1};
    egress_decide(&e2, "example.org", 443, &d);
    CHECK(d.verdict == EGRESS_TUNNEL);
    egress_decide(&e2, "localhost", 443, &d);
    CHECK(d.verdict == EGRESS_TUNNEL);
    egress_decide(&e2, "93.184.216.34", 443, &d);
    CHECK(d.verdict == EGRESS_REFUSE);
    egress_decide(&e2, "2001:db8::1", 443, &d);
    CHECK(d.verdict == EGRESS_REFUSE);
}

static void test_decide_default(void)
{
    struct egress_decision d;
    policy_init();
    eg.dflt = CONFIG_EGRESS_TUNNEL;
    CHECK(decide("example.org", 443, &d) == EGRESS_TUNNEL);
    CHECK(d.tunnel == NULL && d.intercept == NULL);
    CHECK(strstr(d.reason, "default: tunnel") != NULL);
    CHECK(decide("192.168.1.1", 80, &d) == EGRESS_TUNNEL); /* the address check refuses it */
    /* intercept still comes first */
    CHECK(decide("api.openai.com", 443, &d) == EGRESS_INTERCEPT);
    eg.dflt = CONFIG_EGRESS_DENY;
    CHECK(decide("example.org", 443, &d) == EGRESS_REFUSE);
    CHECK(strchr(d.reason, '\n') == NULL);
    /* no policy at all refuses */
    egress_decide(NULL, "example.org", 443, &d);
    CHECK(d.verdict == EGRESS_REFUSE);
    struct config_egress none = {0};
    egress_decide(&none, "api.openai.com", 443, &d);
    CHECK(d.verdict == EGRESS_REFUSE);
    /* an over-long host still gives a one-line reason that fits */
    char big[254];
    memset(big, 'a', 253);
    big[253] = '\0';
    CHECK(decide(big, 443, &d) == EGRESS_REFUSE);
    CHECK(strlen(d.reason) < sizeof d.reason);
}

/* hello_of -- what sni_parse would give for a whole ClientHello naming name (NULL: none) */
static struct sni_hello hello_of(const char *name)
{
    struct sni_hello h;
    memset(&h, 0, sizeof h);
    h.kind = SNI_HELLO;
    if (name) {
        h.has_name = 1;
        snprintf(h.name, sizeof h.name, "%s", name);
        h.ip = strspn(name, "0123456789.") == strlen(name);
    }
    return h;
}

static enum egress_verdict check(const char *host, int port, const struct config_tunnel *entry,
                                 const struct sni_hello *h, struct egress_decision *d)
{
    egress_check_hello(&eg, host, port, entry, h, d);
    CHECK(d->reason[0] && strchr(d->reason, '\n') == NULL);
    return d->verdict;
}

/* test_check_hello -- F7: what a tunnel's ClientHello may name (egress_check_hello) */
static void test_check_hello(void)
{
    struct egress_decision d;
    struct sni_hello h;
    struct config_tunnel lit = {.glob = "127.0.0.1", .port = 8443, .literal = 1};

    policy_init();
    eg.dflt = CONFIG_EGRESS_TUNNEL;
    /* an IP target under default: tunnel, naming an intercepted API: refused, whatever
     * the port (the API is reached only through interception) */
    h = hello_of("api.openai.com");
    CHECK(check("104.18.7.192", 443, NULL, &h, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "'api.openai.com' is an intercepted host") != NULL);
    CHECK(check("127.0.0.1", 8443, &lit, &h, &d) == EGRESS_REFUSE);
    CHECK(check("example.org", 8443, NULL, &h, &d) == EGRESS_REFUSE);
    h = hello_of("api.anthropic.com");
    CHECK(check("github.com", 443, NULL, &h, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "anthropic") != NULL);
    /* another name: allowed when the policy itself tunnels it */
    h = hello_of("harmless.example");
    CHECK(check("127.0.0.1", 8443, &lit, &h, &d) == EGRESS_TUNNEL);
    CHECK(strstr(d.reason, "'harmless.example'") != NULL);
    h = hello_of("api.github.com");
    CHECK(check("example.org", 443, NULL, &h, &d) == EGRESS_TUNNEL);
    CHECK(d.tunnel == &tun[0]);
    /* ECH: the outer name is checked, and the reason says so */
    h = hello_of("public.example");
    h.ech = 1;
    CHECK(check("example.org", 443, NULL, &h, &d) == EGRESS_TUNNEL);
    CHECK(strstr(d.reason, "ECH") != NULL);
    /* no name to an address: only when an entry names the address */
    h = hello_of(NULL);
    CHECK(check("104.18.7.192", 443, NULL, &h, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "without a server name") != NULL);
    CHECK(check("127.0.0.1", 8443, &lit, &h, &d) == EGRESS_TUNNEL);
    CHECK(check("fd00::9", 443, NULL, &h, &d) == EGRESS_REFUSE);
    h.sslv2 = 1;
    CHECK(check("104.18.7.192", 443, NULL, &h, &d) == EGRESS_REFUSE);
    /* an IP literal as the name counts as none */
    h = hello_of("104.18.7.192");
    CHECK(h.ip);
    CHECK(check("104.18.7.192", 443, NULL, &h, &d) == EGRESS_REFUSE);
    CHECK(check("example.org", 443, NULL, &h, &d) == EGRESS_TUNNEL);
    /* no name to a host name: the name was checked */
    h = hello_of(NULL);
    CHECK(check("example.org", 443, NULL, &h, &d) == EGRESS_TUNNEL);
    /* not TLS: passes; TLS that is not a hello we accept, or cut off: refused */
    memset(&h, 0, sizeof h);
    h.kind = SNI_NOT_TLS;
    CHECK(check("104.18.7.192", 443, NULL, &h, &d) == EGRESS_TUNNEL);
    CHECK(strstr(d.reason, "not TLS") != NULL);
    h.kind = SNI_BAD;
    snprintf(h.why, sizeof h.why, "two server_name extensions");
    h.at = 77;
    CHECK(check("example.org", 443, NULL, &h, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "two server_name extensions (byte 77)") != NULL);
    h.kind = SNI_MORE;
    CHECK(check("example.org", 443, NULL, &h, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "cut off") != NULL);

    /* default: deny: the name must be tunnelled by an entry, at the CONNECT's port */
    eg.dflt = CONFIG_EGRESS_DENY;
    h = hello_of("pypi.org");
    CHECK(check("api.github.com", 443, &tun[0], &h, &d) == EGRESS_TUNNEL);
    CHECK(d.tunnel == &tun[1]);
    h = hello_of("evil.example");
    CHECK(check("api.github.com", 443, &tun[0], &h, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "may not be tunnelled") && strstr(d.reason, "deny"));
    h = hello_of("pypi.org");
    CHECK(check("10.0.0.5", 22, &tun[2], &h, &d) == EGRESS_REFUSE); /* pypi.org:22: no entry */
    h = hello_of(NULL);
    CHECK(check("10.0.0.5", 22, &tun[2], &h, &d) == EGRESS_TUNNEL);
    /* nothing to check with */
    CHECK(check("example.org", 443, NULL, NULL, &d) == EGRESS_REFUSE);
    /* a long name still gives a reason that fits */
    char big[254];
    memset(big, 'a', 253);
    big[253] = '\0';
    h = hello_of(big);
    CHECK(check("example.org", 443, NULL, &h, &d) == EGRESS_REFUSE);
    CHECK(strlen(d.reason) < sizeof d.reason);
}

static int allowed4(const struct config_tunnel *t, const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, a, &s.sin_addr) != 1)
        return -1;
    return egress_address_allowed(t, (struct sockaddr *)&s);
}

static int allowed6(const struct config_tunnel *t, const char *a)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET6, a, &s.sin6_addr) != 1)
        return -1;
    return egress_address_allowed(t, (struct sockaddr *)&s);
}

/* test_target_random -- 300,000 random targets (from fragments that reach every branch):
 * a parse either fails with a reason and empty outputs, or gives a lower-case host of
 * the allowed bytes and a valid port that parse again to the same; a decision on it
 * always has a one-line reason. */
static void test_target_random(void)
{
    static const char *const frag[] = {
        "a",     "Z",    "0",       "9",   ".",     "-", ":",       "[",
        "]",     "@",    "/",       " ",   "*",     "%", "_",       "\x7f",
        "\xff",  "::",   "1.2.3.4", "443", "65536", "0", "fd00::1", "api.openai.com",
        "[::1]", ":443", "127.1",   "\t",
    };
    uint32_t seed = 0x9e3779b9u;
    int ok = 0, bad_shape = 0;
    policy_init();
    for (int i = 0; i < 300000; i++) {
        char t[200], host[256], why[160], again[300], host2[256];
        size_t n = 0;
        int parts, port = -1, port2;
        seed = seed * 1664525u + 1013904223u;
        parts = (int)(seed >> 28) + 1;
        for (int k = 0; k < parts; k++) {
            seed = seed * 1664525u + 1013904223u;
            const char *f = frag[(seed >> 8) % (sizeof frag / sizeof *frag)];
            size_t fl = strlen(f);
            if (n + fl >= sizeof t)
                break;
            memcpy(t + n, f, fl);
            n += fl;
        }
        if ((seed >> 4) % 2 == 0 && n + 5 < sizeof t) { /* half end in a plausible port */
            memcpy(t + n, (seed >> 6) % 2 ? ":443" : ":8080", (seed >> 6) % 2 ? 4 : 5);
            n += (seed >> 6) % 2 ? 4 : 5;
        }
        if ((seed & 0xff) == 7 && n > 2)
            t[n / 2] = '\0'; /* a NUL inside */
        why[0] = '\0';
        if (egress_target_parse(t, n, host, sizeof host, &port, why, sizeof why) != 0) {
            if (host[0] != '\0' || port != 0 || why[0] == '\0')
                bad_shape++;
            continue;
        }
        ok++;
        size_t hl = strlen(host);
        if (hl == 0 || hl > 253 || port < 1 || port > 65535 ||
            strspn(host, "abcdefghijklmnopqrstuvwxyz0123456789.-:") != hl) {
            bad_shape++;
            continue;
        }
        snprintf(again, sizeof again, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
        if (egress_target_parse(again, strlen(again), host2, sizeof host2, &port2, why,
                                sizeof why) != 0 ||
            strcmp(host, host2) != 0 || port != port2)
            bad_shape++;
        struct egress_decision d;
        egress_decide(&eg, host, port, &d);
        if (!d.reason[0] || strchr(d.reason, '\n'))
            bad_shape++;
    }
    CHECK_EQ_INT(bad_shape, 0);
    fprintf(stderr, "  %d of 300000 parsed\n", ok);
    CHECK(ok > 1000); /* the generator reaches the accepting paths too */
}

/* http_check -- a plain HTTP head through a tunnel at port (egress_check_http) */
static enum egress_verdict http_check(const char *head, int port, struct egress_decision *d)
{
    struct sni_http r;

    CHECK(sni_http_parse((const unsigned char *)head, strlen(head), &r) == 0);
    egress_check_http(&eg, port, &r, d);
    CHECK(d->reason[0] && strchr(d->reason, '\n') == NULL);
    return d->verdict;
}

/* test_check_http -- F13: what a tunnel's first plain HTTP request may name */
static void test_check_http(void)
{
    struct egress_decision d;

    policy_init();
    /* an intercepted Host or proxy target: refused at any port, under either default */
    for (int dflt = 0; dflt < 2; dflt++) {
        eg.dflt = dflt ? CONFIG_EGRESS_TUNNEL : CONFIG_EGRESS_DENY;
        CHECK(http_check("GET / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n", 80, &d) ==
              EGRESS_REFUSE);
        CHECK(strstr(d.reason, "Host 'api.openai.com' is an intercepted host") != NULL);
        CHECK(http_check("CONNECT api.anthropic.com:8443 HTTP/1.1\r\n\r\n", 3128, &d) ==
              EGRESS_REFUSE);
        CHECK(strstr(d.reason, "request target 'api.anthropic.com'") != NULL);
        CHECK(http_check("GET http://API.OPENAI.COM./ HTTP/1.1\r\nHost: pypi.org\r\n\r\n", 443,
                         &d) == EGRESS_REFUSE);
        /* no name, an IP literal, not HTTP: as before */
        CHECK(http_check("GET / HTTP/1.0\r\n\r\n", 80, &d) == EGRESS_TUNNEL);
        CHECK(http_check("GET / HTTP/1.1\r\nHost: 104.18.7.192\r\n\r\n", 80, &d) == EGRESS_TUNNEL);
        CHECK(http_check("SSH-2.0-x\r\n", 22, &d) == EGRESS_TUNNEL);
        CHECK(strstr(d.reason, "not TLS or an HTTP request") != NULL);
        /* cut off, or a head not accepted: refused */
        CHECK(http_check("GET / HTTP/1.1\r\nHost: a", 80, &d) == EGRESS_REFUSE);
        CHECK(strstr(d.reason, "cut off") != NULL);
        CHECK(http_check("GET / HTTP/1.1\r\nHost: pypi.org\r\nHost: x.example\r\n\r\n", 443, &d) ==
              EGRESS_REFUSE);
        CHECK(strstr(d.reason, "two Host headers") != NULL);
    }
    /* default: deny: the Host must be tunnelled at the tunnel's port, a proxy's target at its
     * own */
    eg.dflt = CONFIG_EGRESS_DENY;
    CHECK(http_check("GET / HTTP/1.1\r\nHost: pypi.org\r\n\r\n", 443, &d) == EGRESS_TUNNEL);
    CHECK(strstr(d.reason, "plain HTTP to 'pypi.org'") != NULL);
    CHECK(http_check("GET / HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n", 80, &d) == EGRESS_REFUSE);
    CHECK(strstr(d.reason, "may not be tunnelled") != NULL);
    CHECK(http_check("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", 443, &d) == EGRESS_REFUSE);
    CHECK(http_check("CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n",
                     3128, &d) == EGRESS_TUNNEL); /* a CONNECT's Host at its target's port */
    CHECK(http_check("CONNECT api.github.com:443 HTTP/1.1\r\nHost: evil.example\r\n\r\n", 3128,
                     &d) == EGRESS_REFUSE);
    CHECK(http_check("CONNECT api.github.com:443 HTTP/1.1\r\n\r\n", 3128, &d) == EGRESS_TUNNEL);
    CHECK(http_check("CONNECT evil.example:443 HTTP/1.1\r\n\r\n", 3128, &d) == EGRESS_REFUSE);
    eg.dflt = CONFIG_EGRESS_TUNNEL;
    CHECK(http_check("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", 443, &d) == EGRESS_TUNNEL);
    egress_check_http(&eg, 80, NULL, &d);
    CHECK(d.verdict == EGRESS_REFUSE);
}

static void test_address(void)
{
    static const char *const bad4[] = {
        "127.0.0.1",   "127.255.255.254", "10.1.2.3",        "172.16.0.1",      "172.31.255.255",
        "192.168.0.1", "100.64.0.1",      "100.127.255.255", "169.254.169.254", "0.0.0.0",
        "0.1.2.3",     "224.0.0.1",       "239.255.255.250", "255.255.255.255", "240.0.0.1",
        "192.0.0.1",   "198.18.0.1",      "198.19.255.255",
    };
    static const char *const good4[] = {"8.8.8.8",     "1.1.1.1",        "172.15.255.255",
                                        "172.32.0.1",  "100.63.255.255", "100.128.0.1",
                                        "198.17.0.1",  "198.20.0.1",     "192.0.1.1",
                                        "169.253.0.1", "93.184.216.34"};
    static const char *const bad6[] = {
        "::1",
        "::",
        "fe80::1",
        "febf::1",
        "fc00::1",
        "fd12::34",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:192.168.1.1",
        "::127.0.0.1",
        "::10.0.0.1",
        "64:ff9b::127.0.0.1",
        "2002:7f00:1::1",
        "2002:c0a8:101::",
        "fec0::1",
    };
    static const char *const good6[] = {"2606:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8",
                                        "64:ff9b::808:808", "2002:808:808::1"};
    for (size_t i = 0; i < sizeof bad4 / sizeof *bad4; i++)
        if (allowed4(NULL, bad4[i]) != 0) {
            fprintf(stderr, "  %s allowed\n", bad4[i]);
            CHECK(0);
        }
    for (size_t i = 0; i < sizeof good4 / sizeof *good4; i++)
        if (allowed4(NULL, good4[i]) != 1) {
            fprintf(stderr, "  %s refused\n", good4[i]);
            CHECK(0);
        }
    for (size_t i = 0; i < sizeof bad6 / sizeof *bad6; i++)
        if (allowed6(NULL, bad6[i]) != 0) {
            fprintf(stderr, "  %s allowed\n", bad6[i]);
            CHECK(0);
        }
    for (size_t i = 0; i < sizeof good6 / sizeof *good6; i++)
        if (allowed6(NULL, good6[i]) != 1) {
            fprintf(stderr, "  %s refused\n", good6[i]);
            CHECK(0);
        }

    /* a name entry checks like the default; a literal entry allows exactly its address */
    policy_init();
    CHECK(allowed4(&tun[0], "127.0.0.1") == 0);
    CHECK(allowed4(&tun[0], "140.82.112.3") == 1);
    CHECK(allowed4(&tun[5], "127.0.0.1") == 0); /* "localhost" by name: refused */
    CHECK(allowed4(&tun[2], "10.0.0.5") == 1);
    CHECK(allowed6(&tun[2], "::ffff:10.0.0.5") == 1);
    CHECK(allowed4(&tun[2], "10.0.0.6") == 0);
    CHECK(allowed4(&tun[2], "8.8.8.8") == 0); /* not even a public one */
    CHECK(allowed6(&tun[3], "fd00::1") == 1);
    CHECK(allowed6(&tun[3], "fd00::2") == 0);
    CHECK(allowed4(&tun[3], "10.0.0.5") == 0);
    struct sockaddr un = {.sa_family = AF_UNIX};
    CHECK(egress_address_allowed(NULL, &un) == 0);
    CHECK(egress_address_allowed(NULL, NULL) == 0);
}

static void test_connect_meta(void)
{
    struct egress_connect_info ci = {
        .id = "c-1",
        .client = "127.0.0.1:5555",
        .key = "alice",
        .team = NULL,
        .host = "api.github.com",
        .port = 443,
        .decision = EGRESS_TUNNEL,
        .reason = "api.github.com:443 is tunnelled by entry '*.github.com:443' (line 3)",
        .address = "140.82.112.3",
        .bytes_up = 1234,
        .bytes_down = 5678901234ull,
        .started_ms = 1765000000123ll,
        .ended_ms = 1765000002623ll,
        .status = 200,
    };
    size_t len = 0;
    char *m = egress_connect_meta(&ci, &len);
    REQUIRE(m != NULL);
    CHECK_EQ_INT(len, strlen(m));
    cJSON *j = cJSON_Parse(m);
    REQUIRE(j != NULL);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "id")->valuestring, "c-1");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "client")->valuestring, "127.0.0.1:5555");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "key")->valuestring, "alice");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "team")));
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "host")->valuestring, "api.github.com");
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "port")->valuedouble, 443);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "decision")->valuestring, "tunnel");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "address")->valuestring, "140.82.112.3");
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "bytes_up")->valuedouble, 1234);
    CHECK(cJSON_GetObjectItem(j, "bytes_down")->valuedouble == 5678901234.0);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "started")->valuestring, "2025-12-06T05:46:40.123Z");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "ended")->valuestring, "2025-12-06T05:46:42.623Z");
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "time")->valuestring, "2025-12-06T05:46:42.623Z");
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "duration_ms")->valuedouble, 2500);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "status")->valuedouble, 200);
    CHECK(strstr(cJSON_GetObjectItem(j, "reason")->valuestring, "*.github.com") != NULL);
    cJSON_Delete(j);
    free(m);

    /* a refused, unparseable target: raw bytes escaped, nulls, no address */
    struct egress_connect_info r = {.id = "c-2",
                                    .host = "evil\"\x01\xff:443",
                                    .decision = EGRESS_REFUSE,
                                    .reason = "bad",
                                    .started_ms = 5,
                                    .ended_ms = 4,
                                    .status = 403};
    m = egress_connect_meta(&r, NULL);
    REQUIRE(m != NULL);
    j = cJSON_Parse(m);
    REQUIRE(j != NULL);
    CHECK_EQ_STR(cJSON_GetObjectItem(j, "decision")->valuestring, "refuse");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "address")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "key")));
    CHECK(strncmp(cJSON_GetObjectItem(j, "host")->valuestring, "evil\"\x01", 6) == 0);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "duration_ms")->valuedouble, 0);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "status")->valuedouble, 403);
    cJSON_Delete(j);
    free(m);
    CHECK_EQ_STR(egress_verdict_name(EGRESS_INTERCEPT), "intercept");
}

int main(void)
{
    RUN(test_target_ok);
    RUN(test_target_hostile);
    RUN(test_target_random);
    RUN(test_decide);
    RUN(test_decide_default);
    RUN(test_check_hello);
    RUN(test_check_http);
    RUN(test_address);
    RUN(test_connect_meta);
    return harness_done();
}
