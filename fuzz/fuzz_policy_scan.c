/* fuzz_policy_scan.c -- libFuzzer driver for the policy: any bytes, read as an OpenAI and as
 * an Anthropic body, must be decided or refused cleanly; findings must be in bounds, sorted
 * and disjoint; a redacted body must round-trip through the restorer in arbitrary pieces. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char YAML[] =
    "providers:\n"
    "  p: {type: openai, zone: external, base_url: \"https://a.example/v1\"}\n"
    "models:\n"
    "  - {name: m, provider: p, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    "detectors:\n"
    "  - {name: codename, keywords: [bluebird, \"x.y\"]}\n"
    "  - {name: ticket, regex: \"TCK-[0-9]+\"}\n"
    "  - {name: staff, regex: \"[a-z]+@acme[.]example\"}\n"
    "exempt:\n"
    "  - {detector: email, values: [\"noreply@*.com\", \"*@users.example\"]}\n"
    "  - {detector: ticket, values: [\"TCK-1[0-9]\"]}\n"
    "rules:\n"
    "  - name: mask\n"
    "    if: {detected: [pii, secrets, ipv4, codename, ticket, staff]}\n"
    "    then: {action: redact, detectors: [pii, secrets, ipv4, codename, ticket, staff]}\n"
    "  - name: rest\n"
    "    then: {action: allow}\n";

static struct policy *pol;

static void check(int ok)
{
    if (!ok)
        abort();
}

static void one(enum policy_api api, const uint8_t *data, size_t size)
{
    struct policy_input in = {.api = api, .body = (const char *)data, .len = size, .model = "m"};
    struct policy_decision d;
    int rc = policy_decide(pol, &in, &d);
    if (rc < 0) {
        check(d.error[0] != 0 && d.verdict == POLICY_BLOCK && d.body == NULL);
        policy_decision_deinit(&d);
        return;
    }
    for (size_t i = 0; i < d.n_findings; i++) {
        check(d.findings[i].start < d.findings[i].end && d.findings[i].end <= size);
        if (i)
            check(d.findings[i - 1].end <= d.findings[i].start);
    }
    if (d.verdict == POLICY_REDACT) {
        check(d.body != NULL && d.restorer != NULL);
        /* restore the redacted body fed in uneven pieces */
        char *out = NULL;
        size_t ol = 0, pos = 0, step = 1;
        while (pos < d.body_len) {
            size_t n = d.body_len - pos < step ? d.body_len - pos : step;
            check(policy_restore_feed(d.restorer, (int)(step & 1), d.body + pos, n, &out, &ol) ==
                  0);
            pos += n;
            step = step * 3 % 17 + 1;
        }
        check(policy_restore_flush(d.restorer, 0, &out, &ol) == 0);
        check(policy_restore_flush(d.restorer, 1, &out, &ol) == 0);
        free(out);
    }
    policy_decision_deinit(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pol) {
        struct config *cfg = NULL;
        struct config_errors errs = {0};
        if (config_load_text("fuzz.yaml", YAML, sizeof(YAML) - 1, NULL, &cfg, &errs) < 0 ||
            policy_new(cfg, &pol, &errs) < 0)
            abort();
        /* cfg and pol live for the whole run */
    }
    one(POLICY_API_OPENAI, data, size);
    one(POLICY_API_ANTHROPIC, data, size);
    return 0;
}
