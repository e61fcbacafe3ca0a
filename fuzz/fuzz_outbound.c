/* fuzz_outbound.c -- libFuzzer driver for building the outbound body
 * (proxy/outbound.c, proxy/translate.c) from arbitrary request bytes, in both
 * APIs, to the same-format and the other-format provider. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "proxy/outbound.h"

static struct config *cfg;

static const char *yaml = "providers:\n"
                          "  o: {type: openai, base_url: \"http://127.0.0.1:1/v1\"}\n"
                          "  a: {type: anthropic, base_url: \"http://127.0.0.1:2\"}\n"
                          "models:\n"
                          "  - {name: om, provider: o, upstream_model: up-o}\n"
                          "  - {name: am, provider: a}\n"
                          "rules: [{name: all, then: {action: allow}}]\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_decision d;
    char err[256];
    int api, m;

    if (!cfg) {
        struct config_errors errs;
        memset(&errs, 0, sizeof(errs));
        if (config_load_text("fuzz", yaml, strlen(yaml), NULL, &cfg, &errs) != 0)
            abort();
    }
    struct json_doc doc = {0};
    if (json_parse(&doc, (const char *)data, size, err, sizeof(err)) < 0) {
        json_doc_deinit(&doc);
        return 0;
    }
    for (api = 0; api < 2; api++)
        for (m = 0; m < 2; m++) {
            char *out = NULL;
            size_t n = 0;
            memset(&d, 0, sizeof(d));
            d.verdict = POLICY_ALLOW;
            d.model = m ? "am" : "om";
            if (proxy_outbound_build(cfg, api ? POLICY_API_ANTHROPIC : POLICY_API_OPENAI,
                                     &doc, &d, &out, &n, NULL, err, sizeof(err)) == 0 &&
                out && out[n] != '\0') /* the body is NUL-terminated past its length */
                abort();
            /* what leaves parses under the same strict rules */
            if (out && (m == 0) == (api == 0)) {
                struct json_doc od = {0};
                if (json_parse(&od, out, n, err, sizeof(err)) < 0)
                    abort();
                json_doc_deinit(&od);
            }
            free(out);
        }
    json_doc_deinit(&doc);
    return 0;
}
