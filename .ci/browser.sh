#!/usr/bin/env bash
# Debian's chromium and its chromedriver for the report's browser test (no browser download),
# and the environment that points the test at them. Usage: eval "$(.ci/browser.sh)"
# Installs the `chromium` and `chromium-driver` packages when missing (needs root, as CI has).
set -euo pipefail
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing chromium and chromium-driver from Debian's packages" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
fi
echo "export AUTOMIXER_CHROMIUM=$(command -v chromium)"
echo "export AUTOMIXER_CHROMEDRIVER=$(command -v chromedriver)"
echo "export AUTOMIXER_REQUIRE_BROWSER=1"
