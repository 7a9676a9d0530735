#!/usr/bin/env bash
# Validates the OpenAPI document the binary prints with a standard validator (openapi-spec-validator,
# which checks OpenAPI 3.1 against its JSON Schema), installed into a venv under target/.
# Usage: scripts/check-openapi.sh [path/to/billing-api]
set -euo pipefail
bin=${1:-target/debug/billing-api}
venv=target/tools/openapi-venv
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'openapi-spec-validator==0.9.0'
fi
out=target/openapi.json
"$bin" openapi >"$out"
"$venv/bin/openapi-spec-validator" "$out"
echo "openapi: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["openapi"], len(d["paths"]), "paths")' "$out")"
