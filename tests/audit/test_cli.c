/* test_cli.c -- `airlock audit verify|show|cost` and `airlock keygen` as a user runs
 * them: the real binary ($AIRLOCK_BUILD/airlock) on logs written by the library. */
#include <sys/wait.h>

#include "audit/audit_int.h"
#include "audit_test_util.h"
#include "common/log.h"
#include "harness.h"
#include "proxy/egress.h"

static char g_bin[1024];
static char g_out[4096], g_errfile[4096];

/* run -- exec argv[] with stdout/stderr into files; returns the exit status and the
 * outputs (malloc'd, NUL-terminated) in *out / *err. */
static int run_prog(const char *prog, const char *const *argv, char **out, char **err);

static int run(const char *const *argv, char **out, char **err)
{
    return run_prog(g_bin, argv, out, err);
}

static int run_prog(const char *prog, const char *const *argv, char **out, char **err)
{
    pid_t pid = fork();
    int status;
    size_t n;

    if (pid == 0) {
        int fo = open(g_out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(g_errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0)
            _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        execvp(prog, (char *const *)argv);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    *out = (char *)read_file(g_out, &n);
    *out = realloc(*out, n + 1);
    (*out)[n] = '\0';
    *err = (char *)read_file(g_errfile, &n);
    *err = realloc(*err, n + 1);
    (*err)[n] = '\0';
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static char *make_log(int n)
{
    char *dir = tmp_dir("cli");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    char err[256];

    if (!dir || audit_open(&cfg, &a, err, sizeof(err)) != 0)
        return NULL;
    if (append_n(a, n, 0, 50) != 0)
        return NULL;
    audit_close(a);
    return dir;
}

static void test_verify_cli(void)
{
    char *dir = make_log(10);
    char *out, *err, seg[1024];
    size_t len;
    uint8_t *buf;

    REQUIRE(dir);
    {
        const char *argv[] = {"airlock", "audit", "verify", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_STR(out, "ok: 12 records in 1 segments, 1 checkpoints, last checkpoint seq 11\n");
        free(out);
        free(err);
    }
    {
        char pub[1024];
        const char *argv[] = {"airlock", "audit", "verify", "--pubkey", pub, dir, NULL};
        snprintf(pub, sizeof(pub), "%s/audit.sign.pub", dir);
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        free(out);
        free(err);
    }
    /* tampered: one byte in the 4th record */
    snprintf(seg, sizeof(seg), "%s/00000001.alog", dir);
    buf = read_file(seg, &len);
    REQUIRE(buf && len > 600);
    buf[600] ^= 1;
    REQUIRE(write_file(seg, buf, len) == 0);
    {
        const char *argv[] = {"airlock", "audit", "verify", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 1);
        CHECK(strncmp(out, "TAMPERED: 00000001.alog offset ", 31) == 0);
        CHECK_EQ_INT(count_lines(out), 1);
        free(out);
        free(err);
    }
    /* show reports the damage too (exit 1) after the records before it */
    {
        const char *argv[] = {"airlock", "audit", "show", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 1);
        CHECK(count_lines(out) >= 2);
        CHECK(strstr(err, "TAMPERED") != NULL);
        free(out);
        free(err);
    }
    buf[600] ^= 1;
    /* cut tail: the shutdown checkpoint removed */
    REQUIRE(write_file(seg, buf, len - (AUDIT_REC_OVERHEAD + AUDIT_CKPT_LEN)) == 0);
    {
        const char *argv[] = {"airlock", "audit", "verify", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 1);
        CHECK(strncmp(out, "TRUNCATED: ", 11) == 0);
        free(out);
        free(err);
    }
    free(buf);
    /* unusable arguments */
    {
        const char *argv[] = {"airlock", "audit", "verify", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        CHECK(strstr(err, "usage: airlock audit verify") != NULL);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "verify", "/nonexistent/dir", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        CHECK_EQ_INT(count_lines(err), 1);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "verify", dir, "--pubkey", "/nonexistent", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "verify", dir, "--bogus", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        free(out);
        free(err);
    }
    rm_rf(dir);
    free(dir);
}

static void test_show_cost_cli(void)
{
    char *dir = make_log(6);
    char *out, *err;

    REQUIRE(dir);
    {
        const char *argv[] = {"airlock", "audit", "show", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_INT(count_lines(out), 8);
        CHECK(strncmp(out, "{\"seq\":1,\"type\":\"segment-start\"", 31) == 0);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {
            "airlock", "audit", "show", dir, "--id", "00000000000000000000000000000001", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_INT(count_lines(out), 2);
        free(out);
        free(err);
    }
    {
        /* append_n: responses carry 10/5/2 tokens and $0.25; 3 responses, keys k0 k1 k2 */
        const char *argv[] = {"airlock", "audit", "cost", dir, "--by", "key", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK(strstr(out, "requests") != NULL);
        CHECK(strstr(out, "TOTAL") != NULL && strstr(out, "0.75000000") != NULL);
        CHECK_EQ_INT(count_lines(out), 5);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "cost", dir, "--by", "team", "--json", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_INT(count_lines(out), 2);
        CHECK(strstr(out, "{\"team\":\"t0\",\"requests\":2,\"input_tokens\":20,") != NULL);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit",      "cost",   dir,
                              "--since", "2999-01-01", "--json", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_INT(count_lines(out), 0);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "cost", dir, "--by", "colour", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "cost", dir, "--since", "yesterday", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        free(out);
        free(err);
    }
    rm_rf(dir);
    free(dir);
}

/* --diff through the binary: append_n's requests have inbound 'a'x50 and outbound
 * "hello \u2713", their responses upstream 'b'x50 and client "hello \u2713" */
static void test_show_diff_cli(void)
{
    char *dir = make_log(6);
    char *out, *err, want[80];

    REQUIRE(dir);
    {
        const char *argv[] = {"airlock", "audit", "show", dir, "--diff", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK(strstr(out, "=== request 00000000000000000000000000000000") == out);
        CHECK(strstr(out, "=== request 00000000000000000000000000000002") != NULL);
        snprintf(want, sizeof(want), "\n-%.50s\n+hello \xe2\x9c\x93\n",
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        CHECK(strstr(out, "--- inbound (received, 50 bytes)\n+++ outbound (sent upstream, 9 "
                          "bytes)\n@@ -1,1 +1,1 @@") != NULL);
        CHECK(strstr(out, want) != NULL);
        CHECK(strstr(out, "--- upstream (received, 50 bytes)\n+++ client (sent to the client, 9 "
                          "bytes)\n") != NULL);
        CHECK(strstr(out, "modified: nothing\n") != NULL);
        CHECK(strchr(out, '{') == NULL); /* text for a person, not the JSON lines */
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "show",
                              dir,       "--id",  "00000000000000000000000000000001",
                              "--diff",  NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK(strstr(out, "=== request 00000000000000000000000000000001") == out);
        CHECK(strstr(out + 1, "=== request") == NULL);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "show", dir, "--diff", "yes", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        CHECK(strstr(err, "--diff") != NULL);
        free(out);
        free(err);
    }
    rm_rf(dir);
    free(dir);
}

/* make_connect_log -- make_log(6) (3 priced responses, keys k0 k1 k2) and then four
 * connect records from the egress proxy: k0 intercept, k0 tunnel, k1 refuse, no key
 * refuse. */
static char *make_connect_log(void)
{
    char *dir = tmp_dir("cliconn");
    struct config_audit cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    struct audit *a = NULL;
    char err[256];
    static const struct {
        const char *id, *key, *team, *host, *address;
        enum egress_verdict d;
        int status;
    } cs[] = {
        {"c-1", "k0", "t0", "api.openai.com", NULL, EGRESS_INTERCEPT, 200},
        {"c-2", "k0", "t0", "api.github.com", "140.82.112.3", EGRESS_TUNNEL, 200},
        {"c-3", "k1", "t1", "evil.example", NULL, EGRESS_REFUSE, 403},
        {"c-4", NULL, NULL, "other.example", NULL, EGRESS_REFUSE, 403},
    };

    if (!dir || audit_open(&cfg, &a, err, sizeof(err)) != 0)
        return NULL;
    if (append_n(a, 6, 0, 50) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        struct egress_connect_info ci = {.id = cs[i].id,
                                         .client = "127.0.0.1:40000",
                                         .key = cs[i].key,
                                         .team = cs[i].team,
                                         .host = cs[i].host,
                                         .port = 443,
                                         .decision = cs[i].d,
                                         .reason = "test",
                                         .address = cs[i].address,
                                         .bytes_up = 100 * i,
                                         .bytes_down = 1000 * i,
                                         .started_ms = 1765000000000ll,
                                         .ended_ms = 1765000001000ll,
                                         .status = cs[i].status};
        size_t len;
        char *meta = egress_connect_meta(&ci, &len);
        int r =
            meta ? audit_append_ex(a, AUDIT_REC_CONNECT, meta, len, NULL, 0, 0, NULL, NULL) : -1;
        free(meta);
        if (r < 0)
            return NULL;
    }
    audit_close(a);
    return dir;
}

static void test_connect_cli(void)
{
    char *dir = make_connect_log();
    char *out, *err;

    REQUIRE(dir);
    {
        const char *argv[] = {"airlock", "audit", "verify", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK(strncmp(out, "ok: 12 records", 14) == 0);
        free(out);
        free(err);
    }
    long conn_off = -1;
    {
        const char *argv[] = {"airlock", "audit", "show", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_INT(count_lines(out), 12);
        const char *c = strstr(out, "\"type\":\"connect\"");
        CHECK(c != NULL);
        const char *o = c ? strstr(c, "\"offset\":") : NULL;
        if (o)
            conn_off = strtol(o + 9, NULL, 10);
        CHECK(strstr(out, "\"host\":\"api.github.com\"") != NULL);
        CHECK(strstr(out, "\"decision\":\"tunnel\"") != NULL);
        CHECK(strstr(out, "\"address\":\"140.82.112.3\"") != NULL);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "show", dir, "--id", "c-3", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_INT(count_lines(out), 1);
        CHECK(strstr(out, "\"type\":\"connect\"") != NULL);
        CHECK(strstr(out, "\"decision\":\"refuse\"") && strstr(out, "\"status\":403"));
        CHECK(strstr(out, "\"blobs\"") == NULL || strstr(out, "\"blobs\":[]") != NULL);
        free(out);
        free(err);
    }
    {
        /* the cost is the responses' alone; connects counted per key */
        const char *argv[] = {"airlock", "audit", "cost", dir, "--by", "key", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK(strstr(out, "intercepts") && strstr(out, "tunnels") && strstr(out, "refused"));
        CHECK(strstr(out, "TOTAL") != NULL && strstr(out, "0.75000000") != NULL);
        /* header, k0 k1 k2, '-' (the keyless refusal), TOTAL */
        CHECK_EQ_INT(count_lines(out), 6);
        free(out);
        free(err);
    }
    {
        const char *argv[] = {"airlock", "audit", "cost", dir, "--by", "key", "--json", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK(strstr(out, "{\"key\":\"k0\",\"requests\":1,") != NULL);
        CHECK(strstr(out, "\"intercepts\":1,\"tunnels\":1,\"refused\":0}") != NULL);
        CHECK(strstr(out, "{\"key\":\"-\",\"requests\":0,\"input_tokens\":0,") != NULL);
        free(out);
        free(err);
    }
    {
        /* by provider: connects name none, so no row and no columns for them */
        const char *argv[] = {"airlock", "audit", "cost", dir, "--by", "provider", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        CHECK_EQ_INT(count_lines(out), 3);
        CHECK(strstr(out, "tunnels") == NULL);
        free(out);
        free(err);
    }
    /* the independent verifier (docs/audit.md) takes connect records too */
    char pub[1024];
    snprintf(pub, sizeof(pub), "%s/audit.sign.pub", dir);
    {
        const char *argv[] = {"python3", "tests/audit/pyverify.py", dir, pub, NULL};
        CHECK_EQ_INT(run_prog("python3", argv, &out, &err), 0);
        CHECK(strncmp(out, "ok 12 ", 6) == 0);
        free(out);
        free(err);
    }
    /* a changed byte in a connect record is tampering, to both */
    CHECK(conn_off > 0);
    if (conn_off > 0) {
        char seg[1024];
        size_t len;
        snprintf(seg, sizeof(seg), "%s/00000001.alog", dir);
        uint8_t *buf = read_file(seg, &len);
        REQUIRE(buf && (size_t)conn_off + 60 < len);
        buf[conn_off + 60] ^= 1;
        REQUIRE(write_file(seg, buf, len) == 0);
        free(buf);
        const char *argv[] = {"airlock", "audit", "verify", dir, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 1);
        free(out);
        free(err);
        const char *pargv[] = {"python3", "tests/audit/pyverify.py", dir, pub, NULL};
        CHECK(run_prog("python3", pargv, &out, &err) != 0);
        free(out);
        free(err);
    }
    rm_rf(dir);
    free(dir);
}

static void test_keygen_cli(void)
{
    char *dir = tmp_dir("keygen");
    char prefix[512], path[1024];
    char *out, *err;
    struct stat st;

    REQUIRE(dir);
    snprintf(prefix, sizeof(prefix), "%s/ops", dir);
    {
        const char *argv[] = {"airlock", "keygen", "--out", prefix, NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 0);
        free(out);
        free(err);
        CHECK_EQ_INT(run(argv, &out, &err), 1); /* never overwrite */
        CHECK(strstr(err, "refusing") != NULL);
        free(out);
        free(err);
    }
    snprintf(path, sizeof(path), "%s.sign.key", prefix);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof(path), "%s.seal.key", prefix);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof(path), "%s.sign.pub", prefix);
    CHECK(stat(path, &st) == 0);
    snprintf(path, sizeof(path), "%s.seal.pub", prefix);
    CHECK(stat(path, &st) == 0);
    {
        const char *argv[] = {"airlock", "keygen", NULL};
        CHECK_EQ_INT(run(argv, &out, &err), 2);
        free(out);
        free(err);
    }
    rm_rf(dir);
    free(dir);
}

static void test_show_sealed_cli(void)
{
    char *dir = tmp_dir("clisealed");
    char logdir[1024], a_pre[1024], b_pre[1024], pub[1100], key[1100], bkey[1100], err[256];
    struct config_audit cfg;
    struct audit *a = NULL;
    char *out, *errs;

    REQUIRE(dir);
    snprintf(logdir, sizeof(logdir), "%s/log", dir);
    snprintf(a_pre, sizeof(a_pre), "%s/auditor", dir);
    snprintf(b_pre, sizeof(b_pre), "%s/other", dir);
    REQUIRE(audit_keygen(a_pre, err, sizeof(err)) == 0);
    REQUIRE(audit_keygen(b_pre, err, sizeof(err)) == 0);
    snprintf(pub, sizeof(pub), "%s.seal.pub", a_pre);
    snprintf(key, sizeof(key), "%s.seal.key", a_pre);
    snprintf(bkey, sizeof(bkey), "%s.seal.key", b_pre);
    cfg = audit_cfg(logdir, CONFIG_SYNC_NONE);
    cfg.seal_to = pub;
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    REQUIRE(append_n(a, 2, 0, 12) == 0);
    audit_close(a);
    {
        const char *argv[] = {"airlock", "audit", "show", logdir, NULL};
        CHECK_EQ_INT(run(argv, &out, &errs), 0);
        CHECK(strstr(out, "{\"name\":\"inbound\",\"sealed\":true,\"bytes\":12}") != NULL);
        CHECK(strstr(out, "aaaaaaaaaaaa") == NULL);
        free(out);
        free(errs);
    }
    {
        const char *argv[] = {"airlock", "audit", "show", logdir, "--key", key, NULL};
        CHECK_EQ_INT(run(argv, &out, &errs), 0);
        CHECK(strstr(out, "\"text\":\"aaaaaaaaaaaa\"") != NULL);
        free(out);
        free(errs);
    }
    {
        const char *argv[] = {"airlock", "audit", "show", logdir, "--key", bkey, NULL};
        CHECK_EQ_INT(run(argv, &out, &errs), 1);
        CHECK(strstr(out, "aaaaaaaaaaaa") == NULL);
        CHECK(strstr(errs, "could not be opened") != NULL);
        free(out);
        free(errs);
    }
    {
        const char *argv[] = {"airlock", "audit", "verify", logdir, NULL};
        CHECK_EQ_INT(run(argv, &out, &errs), 0);
        free(out);
        free(errs);
    }
    rm_rf(logdir);
    rm_rf(dir);
    free(dir);
}

/* tests/audit/pyverify.py implements docs/audit.md independently (Python hashlib,
 * openssl for Ed25519). On the same logs it must agree with audit_verify: the same
 * counts when intact, the same first bad record when not. */
static void test_independent_verifier(void)
{
    char *dir = tmp_dir("pyverify");
    char *kdir = tmp_dir("pyverifykeys");
    char pub[1024], prefix[512], seal[1100], seg[1024], expect[128], err[256];
    struct config_audit cfg;
    struct audit *a = NULL;
    struct audit_report rep;
    char *out, *errs;
    uint8_t *buf;
    size_t len, off;
    int disagree = 0, tried = 0;

    REQUIRE(dir && kdir);
    snprintf(prefix, sizeof(prefix), "%s/aud", kdir);
    REQUIRE(audit_keygen(prefix, err, sizeof(err)) == 0);
    snprintf(seal, sizeof(seal), "%s.seal.pub", prefix);
    cfg = audit_cfg(dir, CONFIG_SYNC_NONE);
    setenv("AIRLOCK_AUDIT_SEGMENT_BYTES", "4096", 1);
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    REQUIRE(append_n(a, 12, 0, 200) == 0);
    audit_close(a);
    cfg.seal_to = seal; /* and sealed segments after a restart */
    REQUIRE(audit_open(&cfg, &a, err, sizeof(err)) == 0);
    REQUIRE(append_n(a, 6, 50, 100) == 0);
    audit_close(a);
    unsetenv("AIRLOCK_AUDIT_SEGMENT_BYTES");
    snprintf(pub, sizeof(pub), "%s/audit.sign.pub", dir);
    REQUIRE(audit_verify(dir, NULL, &rep, err, sizeof(err)) == 0);
    REQUIRE(rep.verdict == AUDIT_INTACT && rep.segments >= 3);
    snprintf(expect, sizeof(expect), "ok %llu %llu %llu\n", (unsigned long long)rep.records,
             (unsigned long long)rep.checkpoints, (unsigned long long)rep.last_checkpoint_seq);
    {
        const char *argv[] = {"python3", "tests/audit/pyverify.py", dir, pub, NULL};
        CHECK_EQ_INT(run_prog("python3", argv, &out, &errs), 0);
        CHECK_EQ_STR(out, expect);
        if (errs[0])
            fprintf(stderr, "  pyverify: %s", errs);
        free(out);
        free(errs);
    }
    /* flip bytes across segment 2 and the sealed last segment */
    for (int s = 2; s <= (int)rep.segments; s += (int)rep.segments - 2) {
        snprintf(seg, sizeof(seg), "%s/%08d.alog", dir, s);
        buf = read_file(seg, &len);
        REQUIRE(buf);
        for (off = 3; off < len; off += len / 9) {
            struct audit_report r2;
            const char *argv[] = {"python3", "tests/audit/pyverify.py", dir, pub, NULL};
            char want[128];
            buf[off] ^= 0x20;
            REQUIRE(write_file(seg, buf, len) == 0);
            REQUIRE(audit_verify(dir, NULL, &r2, err, sizeof(err)) == 0);
            snprintf(want, sizeof(want), " %s %llu ", r2.where_segment,
                     (unsigned long long)r2.where_offset);
            CHECK(r2.verdict != AUDIT_INTACT);
            CHECK_EQ_INT(run_prog("python3", argv, &out, &errs), 1);
            if (!strstr(out, want)) {
                if (disagree++ < 3)
                    fprintf(stderr, "  flip %s+%zu: airlock%s(%s) vs pyverify %s", seg, off, want,
                            r2.message, out);
            }
            tried++;
            free(out);
            free(errs);
            buf[off] ^= 0x20;
        }
        REQUIRE(write_file(seg, buf, len) == 0);
        free(buf);
    }
    CHECK(tried >= 16);
    CHECK_EQ_INT(disagree, 0);

    /* the zeros a writer keeps ahead of its records: after the last record of a crashed
     * writer they are the end (an unsigned tail); after a closing checkpoint they are not
     * the writer's. Both verifiers say the same, at the same place. */
    snprintf(seg, sizeof(seg), "%s/%08d.alog", dir, (int)rep.segments);
    buf = read_file(seg, &len);
    REQUIRE(buf && len > 113 + 92);
    for (int k = 0; k < 2; k++) {
        const char *argv[] = {"python3", "tests/audit/pyverify.py", dir, pub, NULL};
        size_t keep = k == 0 ? len : len - (113 + 92); /* k 1: without the shutdown checkpoint */
        uint8_t *z = calloc(1, keep + 8192);
        struct audit_report r2;
        char want[160];
        REQUIRE(z);
        memcpy(z, buf, keep);
        REQUIRE(write_file(seg, z, keep + 8192) == 0);
        REQUIRE(audit_verify(dir, NULL, &r2, err, sizeof(err)) == 0);
        CHECK_EQ_INT(r2.verdict, k == 0 ? AUDIT_TAMPERED : AUDIT_TRUNCATED);
        CHECK_EQ_INT(r2.where_offset, keep);
        snprintf(want, sizeof(want), "%s %s %llu ", k == 0 ? "BAD" : "TRUNCATED", r2.where_segment,
                 (unsigned long long)r2.where_offset);
        CHECK_EQ_INT(run_prog("python3", argv, &out, &errs), 1);
        if (!strstr(out, want))
            fprintf(stderr, "  zeros case %d: airlock '%s' (%s) vs pyverify %s", k, want,
                    r2.message, out);
        CHECK(strstr(out, want) != NULL);
        free(out);
        free(errs);
        free(z);
    }
    REQUIRE(write_file(seg, buf, len) == 0);
    free(buf);
    rm_rf(dir);
    rm_rf(kdir);
    free(dir);
    free(kdir);
}

int main(void)
{
    const char *b = getenv("AIRLOCK_BUILD");
    char *tmp = tmp_dir("cliout");

    log_set_level(LOG_WARN);
    snprintf(g_bin, sizeof(g_bin), "%s/airlock", b && *b ? b : "build");
    if (!tmp)
        return 1;
    snprintf(g_out, sizeof(g_out), "%s/out", tmp);
    snprintf(g_errfile, sizeof(g_errfile), "%s/err", tmp);
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "test_cli: %s not built\n", g_bin);
        RUN(test_verify_cli); /* fails visibly rather than skipping */
    } else {
        RUN(test_verify_cli);
        RUN(test_show_cost_cli);
        RUN(test_connect_cli);
        RUN(test_keygen_cli);
        RUN(test_show_sealed_cli);
        RUN(test_show_diff_cli);
        RUN(test_independent_verifier);
    }
    rm_rf(tmp);
    free(tmp);
    return harness_done();
}
