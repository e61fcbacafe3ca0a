/* config.h -- the configuration: YAML (libyaml) into one immutable snapshot.
 *
 * config_load() parses and validates a file (or an in-memory text) into a
 * `struct config`. Every problem is reported with the file, line and column where
 * it was found; loading collects all problems it can rather than stopping at the
 * first. A loaded snapshot is never modified: it is shared, reference-counted,
 * between the event loop and worker threads (config_ref/config_unref), and SIGHUP
 * builds a new one and swaps it in (proxy owns the swap).
 *
 * Threading: config_load is reentrant. A snapshot is read-only after load; the
 * reference count is atomic.
 * Errors: 0 on success, -1 on failure with the problems in a `struct config_errors`.
 * Secrets (provider api keys) are kept in sodium_malloc'd memory and wiped on free. */
#ifndef AIRLOCK_CONFIG_H
#define AIRLOCK_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum config_provider_type {
    CONFIG_PROVIDER_OPENAI,
    CONFIG_PROVIDER_ANTHROPIC,
    CONFIG_PROVIDER_OPENAI_COMPAT,
    CONFIG_PROVIDER_BUILTIN,
};

enum config_zone { CONFIG_ZONE_ANY = -1, CONFIG_ZONE_EXTERNAL = 0, CONFIG_ZONE_INTERNAL = 1 };

enum config_action {
    CONFIG_ACTION_BLOCK,
    CONFIG_ACTION_ROUTE,
    CONFIG_ACTION_REDACT,
    CONFIG_ACTION_ALLOW,
};

enum config_sync { CONFIG_SYNC_BATCH, CONFIG_SYNC_ALWAYS, CONFIG_SYNC_NONE };
enum config_on_failure { CONFIG_ON_FAILURE_REFUSE, CONFIG_ON_FAILURE_ALLOW };

/* A position in the source file, for error messages about a valid-looking value
 * that later turns out wrong (a detector regex that does not compile, say). */
struct config_pos {
    int line, col; /* 1-based; 0 when unknown */
};

enum config_listen_mode { CONFIG_LISTEN_GATEWAY, CONFIG_LISTEN_FORWARD };

struct config_listen {
    char *address;   /* as written, "HOST:PORT" */
    char *host;      /* "127.0.0.1", "::1", "0.0.0.0", "localhost" */
    int port;
    int loopback;    /* host is a loopback address */
    char *tls_cert;  /* NULL: plain HTTP (loopback only) */
    char *tls_key;
    enum config_listen_mode mode; /* gateway (default) or forward (the egress proxy, SPEC §8) */
    struct config_pos pos;
};

struct config_key {
    char *name;
    char *team;                 /* may be NULL */
    uint8_t key_sha256[32];     /* from `key_sha256` (hex) or the hash of `key` */
    double budget_usd_per_day;  /* < 0: no budget */
    struct config_pos pos;
};

/* A team's shared daily budget (keys name their team). */
struct config_team {
    char *name;
    double budget_usd_per_day;  /* < 0: no budget */
    struct config_pos pos;
};

struct config_provider {
    char *name;
    enum config_provider_type type;
    enum config_zone zone;      /* builtin is always internal */
    char *base_url;             /* NULL for builtin; e.g. "https://api.openai.com/v1" */
    int tls;                    /* base_url scheme is https */
    char *host;                 /* from base_url */
    int port;                   /* from base_url (443/80 default) */
    char *path_prefix;          /* path of base_url without trailing '/', "" if none */
    char *api_key;              /* sodium_malloc'd; NULL if none; never logged */
    char *ca_file;              /* NULL: system trust store */
    int timeout_ms;             /* upstream timeout; 0: limits.upstream_timeout_ms */
    /* builtin only */
    char *model_path;
    int threads;                /* 0: default */
    int context;                /* 0: model's own (capped) */
    int max_tokens;             /* most tokens a local answer may have; 0: the context's rest */
    struct config_pos pos;
};

struct config_model {
    char *name;                 /* what clients ask for */
    char *provider;             /* provider name */
    size_t provider_index;      /* index into config.providers */
    char *upstream_model;       /* name sent upstream; defaults to name */
    double input_per_mtok;      /* USD per million tokens */
    double output_per_mtok;
    double cached_input_per_mtok; /* < 0: same as input */
    struct config_pos pos;
};

struct config_detector {
    char *name;
    char *regex;                /* exactly one of regex / keywords is set */
    char **keywords;            /* keywords or the lines of keywords_file */
    size_t n_keywords;
    char *keywords_file;        /* as written, for messages */
    struct config_pos pos;
};

/* An `exempt` entry: values of one detector that are no findings (config/exempt.c). */
struct config_exempt {
    char *detector; /* a built-in or custom detector's name */
    char **values;  /* globs, matched case-insensitively against a whole value */
    size_t n_values;
    struct config_pos pos;
};

/* The built-in detectors, in the policy's tie-break priority order: of two overlapping
 * findings, the one whose detector comes first is kept (secrets first, then the PII
 * whose shapes contain others: an IBAN holds a card-like run of digits). This one table
 * names them for config validation and for policy (policy_int.h's DET_* are these
 * values), with their group; rules may name a group ("pii", "secrets") for all its
 * members. */
enum config_builtin_detector {
    CONFIG_DET_PRIVATE_KEY,
    CONFIG_DET_ANTHROPIC_KEY,
    CONFIG_DET_OPENAI_KEY,
    CONFIG_DET_GITHUB_TOKEN,
    CONFIG_DET_AWS_ACCESS_KEY,
    CONFIG_DET_JWT,
    CONFIG_DET_CREDENTIAL_URI, /* before generic_secret: `;Password=...;` is both */
    CONFIG_DET_GENERIC_SECRET,
    CONFIG_DET_IBAN, /* before credit_card: a card-like run inside a valid IBAN is the IBAN */
    CONFIG_DET_CREDIT_CARD,
    CONFIG_DET_US_SSN,
    CONFIG_DET_EMAIL,
    CONFIG_DET_PHONE,
    CONFIG_DET_IPV4,
    CONFIG_DET_N_BUILTIN
};

enum config_detector_group { CONFIG_GROUP_NONE, CONFIG_GROUP_PII, CONFIG_GROUP_SECRETS };

struct config_builtin {
    const char *name;
    enum config_detector_group group; /* CONFIG_GROUP_NONE: in no group (ipv4) */
};

/* Indexed by enum config_builtin_detector. */
extern const struct config_builtin config_detectors_builtin[CONFIG_DET_N_BUILTIN];

struct config_rule {
    char *name;
    /* conditions; an empty list means "not a condition" */
    char **detected;  size_t n_detected;   /* detector names or groups "pii", "secrets" */
    char **keys;      size_t n_keys;       /* virtual key names */
    char **teams;     size_t n_teams;
    char **models;    size_t n_models;     /* globs (fnmatch) over requested model name */
    enum config_zone zone;                 /* CONFIG_ZONE_ANY: not a condition */
    char **unscanned; size_t n_unscanned;  /* kinds of content not scanned: "image" */
    /* action */
    enum config_action action;
    char *provider;                        /* route / redact: NULL = as requested */
    char *model;                           /* route / redact: model name from `models` */
    char **redact_detectors; size_t n_redact_detectors; /* redact: names or groups */
    struct config_pos pos;
};

struct config_audit {
    char *dir;                  /* NULL: audit disabled */
    char *signing_key;          /* path of PREFIX.sign.key; NULL: created in dir */
    char *seal_to;              /* path of PREFIX.seal.pub; NULL: payloads in clear */
    enum config_sync sync;
    enum config_on_failure on_failure;
    struct config_pos pos;
};

struct config_limits {
    size_t max_body_bytes;      /* default 4 MiB */
    int max_body_values;        /* JSON values in one body (every string, member name,
                                   number, literal, object, array); default 100000 */
    size_t max_header_bytes;    /* default 32 KiB */
    int max_connections;        /* default 4096 */
    int header_timeout_ms;      /* default 10000 */
    int body_timeout_ms;        /* the whole body, from the end of the headers; default 30000 */
    int idle_timeout_ms;        /* default 60000 */
    int upstream_timeout_ms;    /* default 120000 */
    int engine_queue;           /* builtin requests waiting, default 64 */
};

/* The egress proxy's host policy (SPEC §8), config/egress.c. */
enum config_egress_default { CONFIG_EGRESS_DENY, CONFIG_EGRESS_TUNNEL };

struct config_intercept {
    char *host;          /* exact host name, lower-cased: "api.openai.com" */
    int port;            /* 443 unless written "host:port" */
    char *provider;      /* a name in `providers` */
    size_t prov_index;   /* resolved at load */
    struct config_pos pos;
};

struct config_tunnel {
    char *glob;          /* lower-cased host glob: "*.github.com" ('*' = one or more labels),
                            an exact name, or an IP literal ("10.0.0.5", "[fd00::1]") */
    int port;            /* 443 unless written "glob:port" */
    int literal;         /* glob is an IP literal: private/loopback addresses allowed */
    struct config_pos pos;
};

struct config_egress {
    int present;                       /* an `egress` section was given */
    char *ca_cert, *ca_key;            /* PEM paths from `airlock ca init` */
    struct config_intercept *intercept; size_t n_intercept;
    struct config_tunnel *tunnel;       size_t n_tunnel;
    enum config_egress_default dflt;   /* default: deny */
    int max_tunnels;                   /* concurrent tunnels; default 1024 */
    int tunnel_idle_ms;                /* a tunnel with no bytes either way closes; default 300000 */
    struct config_pos pos;
};

/* config_egress_ca_load -- the egress CA's certificate and key (PEM), checked as the
 * config's `egress.ca` is: the certificate is a CA (basicConstraints CA:TRUE; keyUsage, if
 * present, has keyCertSign) and not expired, the key file is a regular file no one but
 * its owner may read (mode 0600 or stricter), unencrypted, and matches the certificate.
 * 0 with *cert / *key (X509 *, EVP_PKEY *; owned by the caller; either out may be NULL:
 * checked only), or -1 with one sentence in why. config/egress.c. */
struct x509_st;
struct evp_pkey_st;
int config_egress_ca_load(const char *cert_path, const char *key_path, struct x509_st **cert,
                          struct evp_pkey_st **key, char *why, size_t whylen);

struct config {
    char *path;                 /* file loaded, or "<embedded>" */
    struct config_listen *listens;     size_t n_listens;
    struct config_key *keys;           size_t n_keys;
    int auth;                          /* a keys section was given */
    struct config_team *teams;         size_t n_teams;
    struct config_provider *providers; size_t n_providers;
    struct config_model *models;       size_t n_models;
    struct config_detector *detectors; size_t n_detectors;
    struct config_exempt *exempt;
    size_t n_exempt;
    struct config_rule *rules;         size_t n_rules;
    struct config_audit audit;
    struct config_limits limits;
    struct config_egress egress;
    int refs;                          /* atomic; see config_ref */
};

#define CONFIG_MAX_ERRORS 64

struct config_error {
    int line, col;              /* 0 when the problem has no position */
    char message[256];
};

struct config_errors {
    const char *file;           /* borrowed */
    struct config_error items[CONFIG_MAX_ERRORS];
    size_t n;
    size_t dropped;             /* errors past CONFIG_MAX_ERRORS */
};

/* config_load -- read and validate the YAML file at `path`. On success *out is a
 * new snapshot with one reference, owned by the caller. On failure returns -1 and
 * fills errs (never NULL). Relative paths inside the file (tls, ca_file, model,
 * keywords_file, audit) are resolved against the file's directory. */
int config_load(const char *path, struct config **out, struct config_errors *errs)
    __attribute__((warn_unused_result));

/* config_load_text -- the same for YAML text in memory; `name` is used in messages
 * and relative paths resolve against `basedir` (NULL: current directory). */
int config_load_text(const char *name, const char *text, size_t len, const char *basedir,
                     struct config **out, struct config_errors *errs)
    __attribute__((warn_unused_result));

/* config_errors_format -- "FILE:LINE:COL: message\n" for each problem, into buf.
 * Returns the length written (truncated to cap-1). */
size_t config_errors_format(const struct config_errors *errs, char *buf, size_t cap);

/* config_lint -- things that are valid but probably not what was meant, one call of
 * fn per warning (pos: where, as in errors): a key whose team is not in `teams` while
 * `teams` is used (that team has no budget: a typo goes unnoticed otherwise), and a
 * rule's `team` condition naming a team no key belongs to (it can never match), an
 * `egress` section without a forward listener, and a tunnel entry an intercept entry
 * shadows. Returns the number of warnings. */
size_t config_lint(const struct config *cfg,
                   void (*fn)(void *ud, struct config_pos pos, const char *msg), void *ud);

/* Detector names (config/detectors.c). config_detectors_builtin_find: the index of a
 * built-in detector, -1 if `name` is none. config_detectors_group: the group `name`
 * names ("pii", "secrets"), CONFIG_GROUP_NONE if none. config_detectors_known: a
 * built-in, a group or one of cfg's detectors (cfg may be NULL; name NULL: 0). */
int config_detectors_builtin_find(const char *name);
enum config_detector_group config_detectors_group(const char *name);
int config_detectors_known(const struct config *cfg, const char *name);

struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Look-ups; NULL / -1 when absent. Borrowed pointers into the snapshot. */
const struct config_provider *config_provider_find(const struct config *cfg, const char *name);
const struct config_model *config_model_find(const struct config *cfg, const char *name);
const struct config_key *config_key_find_sha256(const struct config *cfg, const uint8_t sha[32]);
const struct config_team *config_team_find(const struct config *cfg, const char *name);

/* config_embedded_default -- the YAML of SPEC §6 (builtin model from `model_path`,
 * audit in ./airlock-data). model_path may be NULL: no builtin provider. The
 * returned text is static or malloc'd into *buf (caller frees *buf). */
const char *config_embedded_default(const char *model_path, char **buf);

#endif
