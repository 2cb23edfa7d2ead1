"""What gcloud uploads, by gcloud's own rules: the build gets what its steps need, each function
gets the runtime only.

Two uploads happen on a deploy (docs/deploy.md, step 6):

1. ``gcloud builds submit --ignore-file=.gcloudignore-build`` uploads the checkout as the build's
   workspace. ``--ignore-file`` replaces ``.gcloudignore`` for that one upload.
2. Inside the build, each ``gcloud functions deploy --source=.`` uploads the workspace through the
   workspace's own ``.gcloudignore``, after the build's first steps have added a virtualenv and
   caches to it.

``gcloud meta list-files-for-upload DIR`` applies DIR's ``.gcloudignore`` exactly as both commands
do, but takes no ``--ignore-file``; so each upload is reproduced on a copy laid out as that upload
sees it, and the build's first steps (lint, type check, unit tests) then run inside exactly the
tree the build receives.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import ROOT

BUILD_IGNORE = ".gcloudignore-build"
FUNCTION_IGNORE = ".gcloudignore"
# The functions' runtime: the entry points, their one package, the manifest the buildpack installs
# from, and the tables file the code reads. Nothing here names a Python package on purpose: the
# runtime's dependencies are requirements.txt's business.
RUNTIME_FILES = {"main.py", "requirements.txt", "tables.txt"}
RUNTIME_PACKAGES = {"orchestrator"}
# What a developer's checkout holds besides the repository's files, none of which may be uploaded
# anywhere: virtualenvs, caches, build output, Terraform state, variables and plans (which name
# the project and, for state, every resource), and the deploy guide's settings file.
LOCAL_STATE = (
    ".git/HEAD",
    ".venv/bin/python",
    ".venv/.installed",
    ".venv-checkov/bin/checkov",
    ".venv-hcl/bin/python",
    ".mypy_cache/3.11/x.json",
    ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/x",
    "orchestrator/__pycache__/config.cpython-311.pyc",
    "tests/unit/__pycache__/test_x.cpython-311.pyc",
    "build/env.yaml",
    "build/settings.env",
    "terraform.tfvars",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    ".terraform.tfstate.lock.info",
    ".terraform/providers/x",
    ".terraform.lock.hcl",
    "plan.tfplan",
    "infra/aws/terraform.tfvars",
    "infra/aws/terraform.tfstate",
    "infra/aws/.terraform/providers/x",
    "deploy.env",
)
# What the build's first steps leave in the workspace before the deploy steps upload it.
BUILD_LEFTOVERS = (
    ".mypy_cache/3.12/x.json",
    ".pytest_cache/v/cache/nodeids",
    ".ruff_cache/0.1/x",
    "orchestrator/__pycache__/config.cpython-312.pyc",
    "tests/unit/__pycache__/test_x.cpython-312-pytest.pyc",
    "build/env.yaml",
    "build/settings.env",
)
# The build's steps that check the source before anything is deployed.
CHECK_STEPS = ("lint", "typecheck", "unit-tests")

pytestmark = pytest.mark.timeout(600)


def list_for_upload(directory: Path) -> set[str]:
    """The files gcloud would upload from ``directory``, by its ``.gcloudignore``."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.fail("gcloud is not on PATH (see scripts/check-prereqs.sh)")
    result = subprocess.run(
        [gcloud, "meta", "list-files-for-upload", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def repository_files() -> list[str]:
    """Every file of the repository as a checkout has it (tracked, or new and not ignored)."""
    result = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return sorted(name for name in result.stdout.splitlines() if name and (ROOT / name).is_file())


def _write(path: Path, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A developer's checkout: the repository's files plus the local state a deploy leaves."""
    root = tmp_path_factory.mktemp("checkout")
    for name in repository_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    for name in LOCAL_STATE:
        _write(root / name)
    return root


@pytest.fixture(scope="module")
def build_upload(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """What `gcloud builds submit --ignore-file=.gcloudignore-build` uploads from the checkout.

    The same checkout, with the build's ignore file in the place where list-files-for-upload
    looks (which is what --ignore-file does for builds submit)."""
    as_build_sees_it = tmp_path_factory.mktemp("build-submit-view")
    shutil.copytree(checkout, as_build_sees_it, dirs_exist_ok=True, symlinks=True)
    shutil.copy2(checkout / BUILD_IGNORE, as_build_sees_it / FUNCTION_IGNORE)
    return list_for_upload(as_build_sees_it)


@pytest.fixture(scope="module")
def workspace(
    checkout: Path, build_upload: set[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The build's /workspace: exactly the files of the build's upload, with their contents."""
    root = tmp_path_factory.mktemp("workspace")
    for name in build_upload:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout / name, root / name)
    return root


@pytest.fixture(scope="module")
def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))


def _is_runtime(name: str) -> bool:
    top = name.split("/", 1)[0]
    return name in RUNTIME_FILES or (
        top in RUNTIME_PACKAGES and "__pycache__" not in name and not name.endswith(".pyc")
    )


def _runtime_of_repository() -> set[str]:
    return {name for name in repository_files() if _is_runtime(name)}


# --- 1. gcloud builds submit ---------------------------------------------------------------


def test_build_upload_holds_what_the_build_steps_need(build_upload: set[str]) -> None:
    # The build's steps run make (Makefile, mk/), ruff and mypy (pyproject.toml), pip
    # (requirements*.txt) and pytest (tests/, and devstack/ which tests/conftest.py imports); each
    # deploy step needs .gcloudignore to leave everything but the runtime out.
    for needed in (
        "Makefile",
        "mk/infra.mk",
        "pyproject.toml",
        "requirements.txt",
        "requirements-dev.txt",
        "cloudbuild.yaml",
        FUNCTION_IGNORE,
        "tests/conftest.py",
        "tests/unit/test_config.py",
        "devstack/__init__.py",
        "main.py",
        "tables.txt",
    ):
        assert needed in build_upload, f"the build's upload lacks {needed}"
    # The whole repository goes, so that lint and tests see what CI sees.
    missing = set(repository_files()) - build_upload
    assert not missing, f"repository files the build would not get: {sorted(missing)}"


def test_build_upload_leaves_local_state_behind(build_upload: set[str]) -> None:
    leaked = set(LOCAL_STATE) & build_upload
    assert not leaked, f"the build's upload would ship local state: {sorted(leaked)}"


def test_every_build_submit_in_the_docs_uses_the_build_ignore_file() -> None:
    # A `gcloud builds submit` without --ignore-file uploads through .gcloudignore, i.e. the
    # runtime only, and the build's first step (make lint) fails for want of a Makefile.
    commands = 0
    for doc in ("README.md", "docs/deploy.md", "cloudbuild.yaml"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        # A command (the name, then flags) with its continuation lines; prose mentions of the
        # command's name are not commands.
        for match in re.finditer(r"gcloud builds submit(?= +--)(?:[^\n]*\\\n)*[^\n]*", text):
            commands += 1
            assert f"--ignore-file={BUILD_IGNORE}" in match[0], f"{doc}: {match[0]}"
    assert commands >= 3


@pytest.mark.parametrize("step_id", CHECK_STEPS)
def test_build_check_steps_pass_inside_the_build_upload(
    cloudbuild: dict[str, Any], workspace: Path, step_id: str
) -> None:
    # GIVEN the workspace exactly as uploaded, with the virtualenv the first step would create
    # (this checkout's; -o keeps make from reinstalling it)
    (step,) = [s for s in cloudbuild["steps"] if s["id"] == step_id]
    assert step["entrypoint"] == "make", step
    venv = workspace / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")
    # WHEN the step's own command runs there
    result = subprocess.run(
        ["make", "-o", ".venv/.installed", *map(str, step["args"])],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("RDS2BQ_", "PYTEST_"))},
    )
    # THEN it passes
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])


# --- 2. gcloud functions deploy --source=. ---------------------------------------------------


def test_function_upload_from_the_build_workspace_is_the_runtime_only(
    workspace: Path, tmp_path: Path
) -> None:
    # GIVEN the workspace after the build's first steps: a virtualenv, caches, build/
    deployed_from = tmp_path / "workspace"
    shutil.copytree(workspace, deployed_from, symlinks=True)
    if not (deployed_from / ".venv").exists():
        (deployed_from / ".venv").symlink_to(ROOT / ".venv")
    for name in BUILD_LEFTOVERS:
        _write(deployed_from / name)
    # WHEN a deploy step lists what it uploads THEN it is the runtime, all of it, and nothing else
    uploaded = list_for_upload(deployed_from)
    assert uploaded == _runtime_of_repository(), sorted(uploaded ^ _runtime_of_repository())


def test_function_upload_from_a_checkout_is_the_runtime_only(checkout: Path) -> None:
    # `gcloud functions deploy --source=.` by hand, from a developer's checkout: the same.
    uploaded = list_for_upload(checkout)
    assert uploaded == _runtime_of_repository(), sorted(uploaded ^ _runtime_of_repository())


def test_runtime_set_is_what_the_functions_need() -> None:
    runtime = _runtime_of_repository()
    assert runtime >= RUNTIME_FILES
    assert "orchestrator/__init__.py" in runtime
    # Nothing for development: no test, stand-in, benchmark or tool.
    assert not {n for n in runtime if n.split("/", 1)[0] in ("tests", "devstack", "bench")}


def test_uploaded_code_imports_only_uploaded_code() -> None:
    uploaded = list_for_upload(ROOT)
    assert {"main.py", "requirements.txt"} <= uploaded
    local_packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    for name in sorted(n for n in uploaded if n.endswith(".py")):
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for module in modules:
                top = module.split(".")[0]
                if top in local_packages:
                    assert top in RUNTIME_PACKAGES, f"{name} imports {module}, not deployed"
