"""docs/deploy.md works as written: every block, in order, each in a fresh shell.

The blocks run in a copy of the repository, each in a new ``bash -euo pipefail`` with a clean
environment (so a variable or helper defined by an earlier block is not there, as after closing
the terminal). ``gcloud``, ``terraform``, ``aws``, ``bq``, ``git``, ``make`` and ``curl`` are
stand-ins on PATH that record their arguments and answer what the real tools would print for the
few outputs the guide reads (Terraform outputs, an access key, an identity token); the CLI
(``.venv/bin/python -m orchestrator``) is a stand-in that first validates the settings it was
given with the code's own loader. Then the recorded calls are checked: the tfvars files set every
required variable and only declared ones, the build gets substitutions its settings step accepts,
the secrets are piped as the code reads them, and no secret is printed.

What the real clouds answer is not shown here; the guide marks those claims "(real account)".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import load_settings
from tests.infra.conftest import ROOT, blocks
from tests.infra.test_deploy_consistency import SETTINGS_FILE, substitute
from tests.infra.test_uploads import repository_files

GUIDE = ROOT / "docs" / "deploy.md"
README = ROOT / "README.md"
SLACK_URL = "https://hooks.slack.com/services/TCANARY/BCANARY/canaryWebhookSecret42"
ACCESS_KEY_ID = "AKIACANARYGUIDE00001"
SECRET_ACCESS_KEY = "canaryGuideSecretAccessKey/0123456789abcdef"
SA_IDS = ["112233445566778899001", "112233445566778899002", "112233445566778899003"]
AWS_OUTPUTS = {
    "region": "ap-northeast-1",
    "bucket": "acme-rds2bq-exports",
    "s3_prefix": "rds2bq",
    "kms_key_arn": "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-12ab-34cd-56ef-12345678",
    "export_role_arn": "arn:aws:iam::123456789012:role/rds2bq-export",
    "orchestrator_role_arn": "arn:aws:iam::123456789012:role/rds2bq-orchestrator",
    "dts_reader_user": "rds2bq-dts-reader",
}
FUNCTION_URLS = {
    name: f"https://rds2bq-{name.replace('_', '-')}-abc123-an.a.run.app"
    for name in ("start_export", "poll", "notify", "rerun", "status")
}

# Each call is one JSON line: [tool, arg, ...] (arguments may hold newlines).
_RECORD = (
    "python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "
    '"$(basename "$0")" "$@" >> "$STUB_CALLS"'
)

STUBS = {
    "terraform": r"""
chdir=.
args=()
for a in "$@"; do case "$a" in -chdir=*) chdir=${a#-chdir=} ;; *) args+=("$a") ;; esac; done
aws=no; case "$(cd "$chdir" && pwd)" in */infra/aws) aws=yes ;; esac
case "${args[0]:-}" in
  init|apply|import|destroy|plan|fmt|validate) exit 0 ;;
  output)
    if [ "${args[1]:-}" = -raw ]; then
      [ "$aws" = yes ] || { echo "output ${args[2]}: not an AWS output" >&2; exit 1; }
      value=$(python3 -c 'import json, os, sys
print(json.loads(os.environ["STUB_AWS_OUTPUTS"])[sys.argv[1]], end="")' "${args[2]}") || exit 1
      printf '%s' "$value"
    elif [ "${args[1]:-}" = -json ] && [ "$aws" = no ]; then
      case "${args[2]:-}" in
        aws_web_identity_service_account_ids) printf '%s\n' "$STUB_SA_IDS" ;;
        function_urls) printf '%s\n' "$STUB_FUNCTION_URLS" ;;
        *) echo "no output ${args[2]:-}" >&2; exit 1 ;;
      esac
    elif [ "${args[1]:-}" = function_urls ] && [ "$aws" = no ]; then
      printf '%s\n' "$STUB_FUNCTION_URLS"
    else
      echo "unexpected: terraform $*" >&2; exit 1
    fi ;;
  *) echo "unexpected: terraform $*" >&2; exit 1 ;;
esac
""",
    "gcloud": r"""
case "$*" in
  "auth print-identity-token"*) echo "stub-identity-token" ;;
  "secrets versions add "*)
    name=$4
    case "$*" in
      *--data-file=-*) cat > "$STUB_STATE/secret-$name" ;;
      *) echo "read from stdin" >&2; exit 1 ;;
    esac ;;
esac
exit 0
""",
    "aws": r"""
case "$*" in
  "iam create-access-key"*)
    printf '{"AccessKey": {"AccessKeyId": "%s",' "$STUB_ACCESS_KEY_ID"
    printf ' "SecretAccessKey": "%s", "Status": "Active"}}\n' "$STUB_SECRET_ACCESS_KEY" ;;
  "iam list-access-keys"*) printf '%s\n' "$STUB_ACCESS_KEY_ID" ;;
  "rds describe-db-clusters"*|"rds describe-db-instances"*)
    printf 'aurora-mysql\t8.0.mysql_aurora.3.08.0\t7\n' ;;
esac
exit 0
""",
    "bq": "exit 0\n",
    "git": "exit 0\n",
    "make": "exit 0\n",
    "curl": "exit 0\n",
}

# The CLI stand-in: validates the settings it was started with (as the real CLI would, first
# thing), records the command, and answers `status --limit 1 --json` with one run.
CLI_STUB = """
import json, os, sys
from orchestrator.config import load_settings
from orchestrator.core.errors import ConfigError
try:
    load_settings()
except ConfigError as exc:
    print(f"settings: {exc}", file=sys.stderr)
    sys.exit(2)
"""


@dataclass
class Block:
    heading: str
    script: str


@dataclass
class GuideRun:
    workdir: Path
    results: list[tuple[Block, subprocess.CompletedProcess[str]]]
    calls: list[list[str]]

    def called(self, tool: str, *prefix: str) -> list[list[str]]:
        return [c[1:] for c in self.calls if c[0] == tool and c[1 : 1 + len(prefix)] == [*prefix]]


def guide_blocks() -> list[Block]:
    return bash_blocks(GUIDE.read_text(encoding="utf-8"))


def readme_deployment_blocks() -> list[Block]:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n## Deployment\n", 1)[1].split("\n## ", 1)[0]
    return [Block(f"README: {b.heading}", b.script) for b in bash_blocks(section)]


def bash_blocks(text: str) -> list[Block]:
    found: list[Block] = []
    heading = ""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            heading = line.strip("# \n")
        fence = re.fullmatch(r"( *)```bash\n", line)
        if fence:
            indent = fence[1]
            body = []
            i += 1
            while lines[i].rstrip("\n") != f"{indent}```":
                body.append(lines[i])
                i += 1
            found.append(Block(heading, textwrap.dedent("".join(body))))
        i += 1
    return found


def _write_stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/usr/bin/env bash\n{_RECORD}\n{body}", encoding="utf-8")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory: pytest.TempPathFactory) -> GuideRun:
    base = tmp_path_factory.mktemp("guide")
    workdir, stubs, state = base / "checkout", base / "bin", base / "state"
    for directory in (workdir, stubs, state, base / "home"):
        directory.mkdir()
    for name in repository_files():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, workdir / name)
    for name, body in STUBS.items():
        _write_stub(stubs, name, body)
    # .venv/bin/python: the CLI stand-in for `-m orchestrator`, the real interpreter otherwise.
    (workdir / ".venv" / "bin").mkdir(parents=True)
    (base / "cli_stub.py").write_text(CLI_STUB, encoding="utf-8")
    _write_stub(
        workdir / ".venv" / "bin",
        "python",
        'if [ "${1:-}" = -m ] && [ "${2:-}" = orchestrator ]; then\n'
        f'  exec "{sys.executable}" "{base / "cli_stub.py"}" "${{@:3}}"\n'
        "fi\n"
        f'exec "{sys.executable}" "$@"\n',
    )
    calls_file = state / "calls"
    calls_file.touch()
    env = {
        "PATH": f"{stubs}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(base / "home"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(workdir),
        "STUB_CALLS": str(calls_file),
        "STUB_STATE": str(state),
        "STUB_AWS_OUTPUTS": json.dumps(AWS_OUTPUTS),
        "STUB_SA_IDS": json.dumps(SA_IDS),
        "STUB_FUNCTION_URLS": json.dumps(FUNCTION_URLS),
        "STUB_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "STUB_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }
    results = []
    # The guide from step 0 to the teardown, then the README's short form of it.
    for block in guide_blocks() + readme_deployment_blocks():
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.script],
            cwd=workdir,
            env=env,
            input=SLACK_URL + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        results.append((block, result))
    calls = [json.loads(line) for line in calls_file.read_text(encoding="utf-8").splitlines()]
    return GuideRun(workdir, results, calls)


def test_the_guide_has_a_block_for_every_step() -> None:
    headings = {b.heading.split(".")[0] for b in guide_blocks()}
    assert {str(n) for n in range(10)} | {"Teardown"} <= headings, headings
    assert len(readme_deployment_blocks()) == 3


def test_every_block_runs_as_written_in_a_fresh_shell(guide_run: GuideRun) -> None:
    failed = [
        f"--- {block.heading}\n{block.script}\n=> {result.returncode}: {result.stderr[-1500:]}"
        for block, result in guide_run.results
        if result.returncode != 0
    ]
    assert not failed, "\n".join(failed)


def test_no_secret_is_printed_by_any_step(guide_run: GuideRun) -> None:
    for block, result in guide_run.results:
        for secret in (SLACK_URL, SECRET_ACCESS_KEY):
            assert secret not in result.stdout + result.stderr, block.heading


def _tfvars(path: Path) -> dict[str, str]:
    return dict(
        re.findall(r"^([a-z_]+)\s*=\s*(.+?)\s*(?:#.*)?$", path.read_text(encoding="utf-8"), re.M)
    )


@pytest.mark.parametrize(
    ("tfvars", "module_file"),
    [("terraform.tfvars", "scheduler.tf"), ("infra/aws/terraform.tfvars", "infra/aws/")],
)
def test_tfvars_set_every_required_variable_and_only_declared_ones(
    guide_run: GuideRun, hcl: dict[str, Any], tfvars: str, module_file: str
) -> None:
    written = _tfvars(guide_run.workdir / tfvars)
    variables = {
        name: body
        for path, tree in hcl.items()
        if path.startswith(module_file)
        for name, _, body in blocks(tree, "variable")
    }
    assert set(written) <= set(variables), set(written) - set(variables)
    required = {name for name, body in variables.items() if "default" not in body}
    assert required <= set(written), required - set(written)
    if tfvars == "terraform.tfvars":
        # Step 7 turned the second apply on.
        assert written["functions_deployed"] == "true"
    else:
        assert json.loads(written["google_service_account_ids"]) == SA_IDS


def test_the_build_gets_substitutions_its_settings_step_accepts(
    guide_run: GuideRun, tmp_path: Path
) -> None:
    guide, readme = guide_run.called("gcloud", "builds", "submit")
    assert guide == readme, "the README's build command is the guide's"
    flags = dict(a.split("=", 1) for a in guide if a.startswith("--") and "=" in a)
    assert flags["--config"] == "cloudbuild.yaml"
    assert flags["--ignore-file"] == ".gcloudignore-build"
    given = dict(pair.split("=", 1) for pair in flags["--substitutions"].split(","))
    cloudbuild = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))
    defaults = dict(cloudbuild["substitutions"])
    assert set(given) <= set(defaults), set(given) - set(defaults)  # MUST_MATCH
    # WHEN the build's settings step runs with them THEN the code's own loader accepts them
    (step,) = [s for s in cloudbuild["steps"] if s["id"] == "settings"]
    script = substitute(str(step["args"][-1]), {**defaults, **given})
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "orchestrator").symlink_to(ROOT / "orchestrator")
    shutil.copy(guide_run.workdir / "tables.txt", tmp_path / "tables.txt")
    result = subprocess.run(
        ["bash", "-ceu", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "settings OK: 2 tables" in result.stdout
    assert (tmp_path / SETTINGS_FILE).exists()
    assert given["_S3_BUCKET"] == AWS_OUTPUTS["bucket"]
    assert given["_AWS_ROLE_ARN"] == AWS_OUTPUTS["orchestrator_role_arn"]


def test_the_cli_steps_run_with_valid_settings_and_follow_the_latest_run(
    guide_run: GuideRun,
) -> None:
    # The stand-in refuses to run with settings the loader rejects, so a recorded call is a call
    # that got valid settings (every block ran: test_every_block_runs_...).
    commands = [c[2:] for c in guide_run.called("python", "-m", "orchestrator")]
    assert ["doctor", "--send-test"] in commands
    assert ["status", "--watch"] in commands  # with no run id: the latest run


def test_settings_for_the_cli_are_the_ones_the_build_gets(guide_run: GuideRun) -> None:
    env_lines = subprocess.run(
        ["bash", str(guide_run.workdir / "scripts" / "deploy-settings.sh"), "env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={
            "PATH": f"{guide_run.workdir.parent / 'bin'}:/usr/bin:/bin",
            "STUB_CALLS": os.devnull,
            "STUB_AWS_OUTPUTS": json.dumps(AWS_OUTPUTS),
        },
    ).stdout
    exported = dict(re.findall(r"^export (RDS2BQ_[A-Z0-9_]+)=(.*)$", env_lines, re.M))
    settings = load_settings(exported, read_text=lambda _: "shop.orders\n")
    assert settings.s3_bucket == AWS_OUTPUTS["bucket"]
    assert settings.aws_role_arn == AWS_OUTPUTS["orchestrator_role_arn"]
    assert exported["RDS2BQ_AWS_AUTH"] == "default"


def test_secrets_are_piped_in_the_form_the_code_reads(guide_run: GuideRun) -> None:
    state = guide_run.workdir.parent / "state"
    keys = json.loads((state / "secret-rds2bq-dts-reader-keys").read_text(encoding="utf-8"))
    assert keys == {"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}
    webhook = (state / "secret-rds2bq-slack-webhook").read_text(encoding="utf-8")
    assert webhook == SLACK_URL  # no trailing newline: printf '%s'
