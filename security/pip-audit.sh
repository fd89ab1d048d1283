#!/usr/bin/env bash
# pip-audit over exactly what uv.lock installs, twice: the project with the dev extra, and with the federated
# extra (the Flower environment hospitals run, with its own older fastapi/starlette/protobuf pins), against PyPI's
# vulnerability data. Fails on any known vulnerability not in security/pip-audit-allowlist.txt.
# When the vulnerability database cannot be reached it says so loudly and exits 0: an audit that
# did not run is reported as not run, never as passed.
set -uo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}"
mkdir -p build
extra="${AUDIT_EXTRA:-dev}"
if [[ -z "${AUDIT_EXTRA:-}" ]]; then  # both environments, one after the other; fails if either fails
  AUDIT_EXTRA=dev bash "$0" && AUDIT_EXTRA=federated bash "$0"
  exit $?
fi
echo "== environment with the $extra extra"
reqs=build/audit-requirements-$extra.txt
"$UV" export --frozen --extra "$extra" --no-emit-project --no-hashes --format requirements-txt -o "$reqs" >/dev/null || exit 1
ignores=()
while read -r id _; do
  [[ -z "$id" || "$id" == \#* ]] && continue
  ignores+=(--ignore-vuln "$id")
done < security/pip-audit-allowlist.txt
out=$("$UV" tool run --from 'pip-audit==2.10.1' pip-audit -r "$reqs" --no-deps --disable-pip \
      --progress-spinner off --desc off "${ignores[@]}" 2>&1)
rc=$?
skipped=$(echo "$out" | grep -c "could not be audited")
total=$(grep -c '==' "$reqs")
if [[ $rc -eq 0 && $skipped -eq 0 ]]; then
  echo "$out" | tail -5
  echo "pip-audit: no known vulnerabilities in $total pinned packages (allowlist: $(( ${#ignores[@]} / 2 )) IDs)"
  exit 0
fi
unreachable=0
echo "$out" | grep -qiE "connection|resolve|timed out|network|unreachable|max retries|failed to fetch|temporary failure" \
  && unreachable=1
if [[ $skipped -gt 0 || $unreachable -eq 1 ]] && ! echo "$out" | grep -qE "(PYSEC|GHSA|CVE)-"; then
  echo "$out" | grep -v "could not be audited" | tail -15
  echo "################################################################################"
  echo "# WARNING: pip-audit could not reach the vulnerability database: NOT AUDITED"
  echo "#   $skipped of $total packages could not be looked up (PyPI's JSON API or OSV unreachable)"
  echo "################################################################################"
  exit 0
fi
echo "$out" | grep -v "could not be audited" | tail -40
echo "pip-audit: known vulnerabilities above (fix the pin, or add the ID with a reason to security/pip-audit-allowlist.txt)"
exit 1
