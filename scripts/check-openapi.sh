#!/usr/bin/env bash
# Validates the OpenAPI document the binary prints with a standard validator (openapi-spec-validator,
# which checks OpenAPI 3.1 against its JSON Schema), from the CI tools venv (scripts/ci-tools.sh).
# Usage: scripts/check-openapi.sh [path/to/billing-api]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/billing-api}
venv=target/tools/py
[ -x "$venv/bin/openapi-spec-validator" ] || scripts/ci-tools.sh
out=target/openapi.json
"$bin" openapi >"$out"
"$venv/bin/openapi-spec-validator" "$out"
echo "openapi: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["openapi"], len(d["paths"]), "paths")' "$out")"
