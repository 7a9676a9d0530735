#!/usr/bin/env bash
# Validates the serverless deployment example (deploy/serverless/cloudrun.yaml): every document
# against tools/schemas/cloudrun.json (a strict subset of Cloud Run's resources), and every
# container's settings with `billing-api config check` exactly as the container would run it
# (its secret files replaced by throwaway ones).
# Usage: scripts/check-serverless.sh [path/to/billing-api]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/billing-api}")
scripts/ci-tools.sh
target/tools/py/bin/python - "$bin" <<'PY'
import json, os, pathlib, subprocess, sys, tempfile
import jsonschema, yaml

binary = sys.argv[1]
schema = json.loads(pathlib.Path("tools/schemas/cloudrun.json").read_text())
docs = list(yaml.safe_load_all(pathlib.Path("deploy/serverless/cloudrun.yaml").read_text()))
# Each document against the schema of its kind, so that an error names the field.
kinds = {"Service": "service", "Job": "job"}
failed = False
secrets = tempfile.mkdtemp()
fake = {"DATABASE__URL_FILE": "postgres://billing:x@db.internal/billing",
        "WEBHOOKS__ENCRYPTION_KEY_FILE": "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="}
for doc in docs:
    name = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    kind = kinds.get(doc.get("kind"))
    if kind is None:
        print(f"{name}: not a Service or a Job")
        failed = True
        continue
    validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": schema["$defs"]})
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        print(f"{name}: {'/'.join(map(str, e.path))}: {e.message}")
        failed = True
    pod = doc["spec"]["template"]["spec"]
    pod = pod.get("template", {}).get("spec", pod)
    for c in pod["containers"]:
        env = {"PATH": os.environ["PATH"], "PORT": "8080"}
        for var in c.get("env", []):
            value = var["value"]
            suffix = var["name"].removeprefix("BILLING_")
            if suffix in fake:
                path = pathlib.Path(secrets) / suffix
                path.write_text(fake[suffix])
                value = str(path)
            env[var["name"]] = value
        check = subprocess.run([binary, "config", "check"], env=env, capture_output=True, text=True)
        print(f"{name}: config check: {(check.stdout or check.stderr).strip()}")
        failed |= check.returncode != 0
    print(f"{name}: schema {'ok' if not errors else 'FAILED'}")
sys.exit(1 if failed else 0)
PY
