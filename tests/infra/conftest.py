"""Fixtures for the infrastructure tests: Terraform with no network, the infra tool venvs, HCL.

Terraform never downloads anything here: a generated CLI config installs hashicorp/aws from the
local filesystem mirror only. init, validate, plan and apply run in a temporary copy of the module
with its own TF_DATA_DIR (only `fmt -check` reads the repository), so the repository never gets a
.terraform/ directory, a lock file or a state file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AWS_MODULE = ROOT / "infra" / "aws"
GOOGLE_ROOT_FILES = ("scheduler.tf",)
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
HCL_PYTHON = ROOT / ".venv-hcl" / "bin" / "python"
INFRA_TOOLS_HINT = "run `make infra-tools` (or `make -f mk/infra.mk infra-tools`) first"

# Where a hashicorp/aws provider mirror is looked for, first match wins.
MIRROR_CANDIDATES = (
    os.environ.get("RDS2BQ_TF_PROVIDER_MIRROR", ""),
    "/opt/tf-plugins",
    str(Path.home() / ".terraform.d" / "plugins"),
    str(Path.home() / ".local" / "share" / "terraform" / "plugins"),
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)

# The first `terraform init` on a cold machine may take a while (unpacking, checksums).
INIT_TIMEOUT = 600
APPLY_TIMEOUT = 600


def _find_mirror() -> Path | None:
    for candidate in MIRROR_CANDIDATES:
        if not candidate:
            continue
        base = Path(candidate)
        if any(base.glob("registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*")):
            return base
        if any(base.glob("registry.terraform.io/hashicorp/aws/terraform-provider-aws_*.zip")):
            return base
    return None


@dataclass
class Terraform:
    """The terraform CLI with an isolated, offline configuration."""

    binary: str
    env: dict[str, str]

    def run(
        self,
        workdir: Path,
        *args: str,
        timeout: float = 300,
        check: bool = True,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        # The data dir (providers, modules) lives in the working copy, never in the repo.
        env = {**self.env, "TF_DATA_DIR": str(workdir / ".terraform")}
        result = subprocess.run(
            [self.binary, f"-chdir={workdir}", *args, "-no-color"],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"terraform {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail(
            "terraform is not on PATH: install Terraform 1.5+ "
            "(https://developer.hashicorp.com/terraform/install)"
        )
    mirror = _find_mirror()
    if mirror is None:
        pytest.fail(
            "no hashicorp/aws provider mirror found (looked in: "
            + ", ".join(c for c in MIRROR_CANDIDATES if c)
            + "); set RDS2BQ_TF_PROVIDER_MIRROR to a directory holding "
            "registry.terraform.io/hashicorp/aws/..."
        )
    home = tmp_path_factory.mktemp("terraform-home")
    cli_config = home / "cli.tfrc"
    # filesystem_mirror only, no direct block: a provider missing from the mirror fails at once
    # instead of reaching for the network.
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
    env.update(
        {
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",  # no version check call-home
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return Terraform(binary, env)


@pytest.fixture(scope="session")
def aws_workdir(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of infra/aws, initialised from the mirror (its own TF_DATA_DIR)."""
    workdir = tmp_path_factory.mktemp("infra-aws")
    for tf in AWS_MODULE.glob("*.tf"):
        shutil.copy(tf, workdir / tf.name)
    terraform.run(workdir, "init", "-input=false", "-backend=false", timeout=INIT_TIMEOUT)
    return workdir


def moto_override(endpoint: str) -> str:
    """Provider settings that point every AWS service the module uses at moto's server."""
    services = ("iam", "sts", "s3", "kms", "rds")
    endpoints = "\n".join(f'    {s} = "{endpoint}"' for s in services)
    return (
        'provider "aws" {\n'
        '  access_key                  = "testing"\n'
        '  secret_key                  = "testing"\n'
        "  skip_credentials_validation = true\n"
        "  skip_metadata_api_check     = true\n"
        "  skip_region_validation      = true\n"
        "  s3_use_path_style           = true\n"
        f"  endpoints {{\n{endpoints}\n  }}\n"
        "}\n"
    )


@pytest.fixture(scope="session")
def checkov() -> Path:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV.relative_to(ROOT)}: {INFRA_TOOLS_HINT}")
    return CHECKOV


_HCL_DUMP = """
import json, sys
import hcl2
options = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False,
                                    strip_string_quotes=True)
out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as fh:
        out[path] = hcl2.loads(fh.read(), serialization_options=options)
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="session")
def hcl() -> dict[str, dict[str, Any]]:
    """Every Terraform file of the repository parsed by python-hcl2, keyed by repo-relative path.

    Parsed in the tool venv (python-hcl2 shares its import name with checkov's fork)."""
    if not HCL_PYTHON.exists():
        pytest.fail(
            f"python-hcl2 is not installed at {HCL_PYTHON.parent.parent.name}: {INFRA_TOOLS_HINT}"
        )
    files = [ROOT / f for f in GOOGLE_ROOT_FILES] + sorted(AWS_MODULE.glob("*.tf"))
    result = subprocess.run(
        [str(HCL_PYTHON), "-c", _HCL_DUMP, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"python-hcl2 could not parse the Terraform files:\n{result.stderr[-3000:]}")
    parsed = json.loads(result.stdout)
    return {str(Path(p).relative_to(ROOT)): tree for p, tree in parsed.items()}


def blocks(tree: dict[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every resource/data block, or (name, "", body) for variables."""
    for entry in tree.get(kind, []):
        for label, body in entry.items():
            if kind in ("resource", "data"):
                for name, inner in body.items():
                    yield label, name, inner
            else:
                yield label, "", body
