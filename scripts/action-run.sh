#!/usr/bin/env bash
# The shell part of the GitHub Action (action.yml): ONE audit writes the SARIF file, the JSON report and the
# Markdown step summary; the exit code, the verdict and the file names go to $GITHUB_OUTPUT.
#
# Inputs come only through environment variables (never pasted into this script by the workflow):
#   WA_PATHS       release folders or files, one per line (spaces inside a path are kept)   required
#   WA_ARGS        extra arguments for `weightaudit audit`, split on whitespace, never evaluated
#   WA_FAIL_ON     --fail-on value (empty: the policy's, else high)
#   WA_SARIF_FILE  where the SARIF goes (default weightaudit.sarif)
#   WA_JSON_FILE   where the JSON report goes (default weightaudit.json)
#   WEIGHTAUDIT_BIN  the command to run (default weightaudit)
# The script itself exits 0 after recording the audit's exit code, so that the SARIF upload still runs; the
# action's last step exits with that code.
set -uo pipefail

paths=()
while IFS= read -r line; do
    [[ -n "${line//[[:space:]]/}" ]] && paths+=("$line")
done <<< "${WA_PATHS:-}"
if [[ ${#paths[@]} -eq 0 ]]; then
    echo "weightaudit action: the 'path' input is empty" >&2
    exit 2
fi
read -r -a extra <<< "${WA_ARGS:-}"
sarif="${WA_SARIF_FILE:-weightaudit.sarif}"
json="${WA_JSON_FILE:-weightaudit.json}"
summary_dir="$(mktemp -d)"
markdown="$summary_dir/summary.md"
trap 'rm -rf "$summary_dir"' EXIT

fail_on=()
[[ -n "${WA_FAIL_ON:-}" ]] && fail_on=(--fail-on "$WA_FAIL_ON")

# shellcheck disable=SC2086  # WEIGHTAUDIT_BIN may be "python -m weightaudit"
${WEIGHTAUDIT_BIN:-weightaudit} audit "${paths[@]}" "${extra[@]}" "${fail_on[@]}" \
    --format sarif --output "$sarif" --also-write "$json" --also-write "$markdown"
code=$?

if [[ -s "$markdown" && -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    cat "$markdown" >> "$GITHUB_STEP_SUMMARY"
fi
verdict="error"
if [[ -s "$json" ]]; then
    verdict="$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
print(d.get("verdict") or d["summary"]["verdict"])' "$json" 2>/dev/null || echo error)"
fi
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    {
        echo "exit-code=$code"
        echo "verdict=$verdict"
        echo "sarif-file=$sarif"
        echo "json-file=$json"
        if [[ -s "$sarif" ]]; then echo "sarif-written=true"; else echo "sarif-written=false"; fi
    } >> "$GITHUB_OUTPUT"
fi
echo "weightaudit: verdict $verdict (exit $code)" >&2
exit 0
