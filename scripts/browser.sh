# Install the browser the console's tests drive, when it is missing:
# Debian's Chromium and its WebDriver server (packages chromium and
# chromium-driver: /usr/bin/chromium, /usr/bin/chromedriver). Sourced (by
# tests/run.sh); sets CHROMIUM and CHROMEDRIVER for tests/tests/suite/browser.rs.

step "setup: headless Chromium and ChromeDriver (Debian packages chromium, chromium-driver)"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver >/dev/null
fi
CHROMIUM=$(command -v chromium)
CHROMEDRIVER=$(command -v chromedriver)
export CHROMIUM CHROMEDRIVER
"$CHROMIUM" --version
