# Install the Python and JavaScript plugin toolchains at the versions the
# project tests with, inside the checkout (nothing global):
#   .toolchains/python    a virtualenv with componentize-py (sdk/python/requirements-build.txt)
#   sdk/js/node_modules   componentize-js and jco (sdk/js/package-lock.json)
# Sourced (by scripts/setup.sh); sets COMPONENTIZE_PY and COMPONENTIZE_JS.

toolchains_root=$(pwd)

step "setup: Python plugin toolchain (.toolchains/python: $(grep -v '^#' sdk/python/requirements-build.txt | tr '\n' ' '))"
if [ ! -x .toolchains/python/bin/python ]; then
    python3 -m venv .toolchains/python
fi
if ! cmp -s sdk/python/requirements-build.txt .toolchains/python/installed.txt; then
    .toolchains/python/bin/pip install --quiet --disable-pip-version-check -r sdk/python/requirements-build.txt
    cp sdk/python/requirements-build.txt .toolchains/python/installed.txt
fi
COMPONENTIZE_PY="$toolchains_root/.toolchains/python/bin/componentize-py"

step "setup: JavaScript plugin toolchain (sdk/js/node_modules: componentize-js, jco)"
if ! cmp -s sdk/js/package-lock.json sdk/js/node_modules/.installed-lock.json 2>/dev/null; then
    (cd sdk/js && npm ci --silent --no-audit --no-fund)
    cp sdk/js/package-lock.json sdk/js/node_modules/.installed-lock.json
fi
COMPONENTIZE_JS="$toolchains_root/sdk/js/node_modules/.bin/componentize-js"
export COMPONENTIZE_PY COMPONENTIZE_JS
