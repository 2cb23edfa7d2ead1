"""The deployment pieces agree with each other and with the code.

cloudbuild.yaml deploys what main.py defines, with the trigger its decorator expects; every
required setting is given at deploy time and passes the code's own validation; secret settings
name the secrets scheduler.tf creates; the scheduler jobs call the deployed functions with OIDC;
nothing is public. What gcloud uploads is held by test_uploads.py.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import FIELDS, load_settings
from tests.infra.conftest import ROOT, blocks

# The deployment contract: entry point -> how it is triggered (the brief of the five functions).
CONTRACT = {
    "start_export": "http",
    "poll": "http",
    "notify": "cloud_event",
    "rerun": "http",
    "status": "http",
}
# Functions that may hold the hand-off lease, so their timeout must stay below it.
LEASE_HOLDERS = ("poll", "rerun")
SETTINGS_FILE = "build/settings.env"
ENV_VARS_FILE = "build/env.yaml"
FIELD_BY_ENV = {f.env: f for f in FIELDS}


# --- cloudbuild.yaml ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))


def _flags(args: list[str]) -> dict[str, str | bool]:
    flags: dict[str, str | bool] = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            flags[name] = value if value else True
    return flags


@pytest.fixture(scope="module")
def deploys(cloudbuild: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """entry point -> {name, flags, step} for every `gcloud functions deploy` step."""
    found: dict[str, dict[str, Any]] = {}
    for step in cloudbuild["steps"]:
        args = [str(a) for a in step.get("args", [])]
        if args[:2] != ["functions", "deploy"]:
            code = "\n".join(
                line for line in " ".join(args).splitlines() if not line.lstrip().startswith("#")
            )
            assert not re.search(r"functions\s+deploy", code), f"deploy in a script: {step['id']}"
            continue
        assert step.get("entrypoint") == "gcloud", step["id"]
        flags = _flags(args[3:])
        entry_point = flags["--entry-point"]
        assert isinstance(entry_point, str) and entry_point not in found, step["id"]
        found[entry_point] = {"name": args[2], "flags": flags, "step": step}
    return found


@pytest.fixture(scope="module")
def settings_lines(cloudbuild: dict[str, Any]) -> dict[str, str]:
    """RDS2BQ_* name -> value template, as the settings step writes them."""
    (step,) = [s for s in cloudbuild["steps"] if s["id"] == "settings"]
    script = step["args"][-1]
    assert f"cat > {SETTINGS_FILE} <<'EOF'" in script
    body = script.split(f"cat > {SETTINGS_FILE} <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    values: dict[str, str] = {}
    for line in body.splitlines():
        match = re.fullmatch(r"(RDS2BQ_[A-Z0-9_]+)='([^']*)'", line)
        assert match, f"unexpected settings line: {line!r}"
        assert match[1] not in values, f"{match[1]} given twice"
        values[match[1]] = match[2]
    return values


def substitute(text: str, substitutions: dict[str, str]) -> str:
    """Cloud Build's substitution: ${_X} and $_X replaced, $$ becomes $."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return substitutions[match[1] or match[2]]

    return re.sub(r"\$\$|\$\{(_[A-Z0-9_]+)\}|\$(_[A-Z0-9_]+)", one, text)


def test_cloudbuild_deploys_exactly_the_contract(deploys: dict[str, dict[str, Any]]) -> None:
    assert set(deploys) == set(CONTRACT)
    for entry_point, kind in CONTRACT.items():
        flags = deploys[entry_point]["flags"]
        if kind == "http":
            assert flags.get("--trigger-http") is True, entry_point
            assert "--trigger-topic" not in flags and "--retry" not in flags, entry_point
        else:
            assert flags.get("--trigger-topic") == "${_TOPIC}", entry_point
            assert "--trigger-http" not in flags, entry_point
            # Event-function retries are off by default; notify is written for at-least-once.
            assert flags.get("--retry") is True, entry_point


def test_main_defines_the_contract_functions() -> None:
    # main.py is parsed, not imported: no SDK, no settings needed. Written against CONTRACT.
    main = ROOT / "main.py"
    assert main.exists(), "main.py is missing"
    tree = ast.parse(main.read_text(encoding="utf-8"))
    decorated: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "functions_framework"
                ):
                    decorated[node.name] = target.attr
    missing = {name: kind for name, kind in CONTRACT.items() if decorated.get(name) != kind}
    assert not missing, (
        f"main.py must define {missing} with @functions_framework.<kind> (found {decorated})"
    )
    extra = set(decorated) - set(CONTRACT)
    assert not extra, f"main.py defines entry points that cloudbuild.yaml does not deploy: {extra}"


def test_every_function_deploys_the_same_way(
    deploys: dict[str, dict[str, Any]], hcl: dict[str, Any]
) -> None:
    functions = _tf_locals(hcl)["functions"]
    sa_ids = set()
    for entry_point, deploy in deploys.items():
        flags = deploy["flags"]
        tf = functions[entry_point]
        # Same function and service-account names as scheduler.tf, prefix for prefix.
        assert deploy["name"] == tf["name"].replace("${var.name_prefix}", "${_NAME_PREFIX}")
        sa_id = tf["sa"].replace("${var.name_prefix}", "${_NAME_PREFIX}")
        assert flags["--service-account"] == f"{sa_id}@${{_PROJECT}}.iam.gserviceaccount.com"
        sa_ids.add(sa_id)
        assert flags["--gen2"] is True
        assert flags["--runtime"] == "python312"
        assert flags["--region"] == "${_REGION}"
        assert flags["--project"] == "${_PROJECT}"
        assert flags["--source"] == "."
        # No --[no-]allow-unauthenticated: either makes gcloud read and set the Cloud Run
        # service's IAM policy on every deploy (run.services.setIamPolicy, which the deployer
        # lacks), so every build after the first would fail. Without it a new function is
        # private, --quiet answers gcloud's "allow unauthenticated?" prompt with no, and an
        # existing function keeps its policy (docs/deploy.md, "Why no allow-unauthenticated flag").
        assert not {"--allow-unauthenticated", "--no-allow-unauthenticated"} & set(flags)
        assert flags["--quiet"] is True
        assert flags["--env-vars-file"] == ENV_VARS_FILE
        assert flags["--build-service-account"] == (
            "projects/${_PROJECT}/serviceAccounts/"
            "${_NAME_PREFIX}-deployer@${_PROJECT}"
            ".iam.gserviceaccount.com"
        )
        assert re.fullmatch(r"\d+s", str(flags["--timeout"])), entry_point
        # Deploys wait for the checks and the validated settings.
        assert {"settings", "unit-tests", "typecheck"} <= set(deploy["step"]["waitFor"])
    assert len(sa_ids) == len(deploys), "each function runs as its own service account"
    notify = deploys["notify"]["flags"]
    assert (
        notify["--trigger-service-account"]
        == "${_NAME_PREFIX}-notify-push@${_PROJECT}.iam.gserviceaccount.com"
    )


def test_lease_outlasts_every_lease_holder(
    deploys: dict[str, dict[str, Any]], settings_lines: dict[str, str]
) -> None:
    lease = int(
        settings_lines.get(
            "RDS2BQ_LEASE_SECONDS", FIELD_BY_ENV["RDS2BQ_LEASE_SECONDS"].default or "0"
        )
    )
    for entry_point in LEASE_HOLDERS:
        timeout = _seconds(deploys[entry_point]["flags"]["--timeout"])
        assert timeout < lease, f"{entry_point} timeout {timeout}s must stay below the lease"


def test_every_required_setting_is_given_at_deploy(
    cloudbuild: dict[str, Any], settings_lines: dict[str, str]
) -> None:
    unknown = set(settings_lines) - set(FIELD_BY_ENV)
    assert not unknown, f"settings that orchestrator/config.py does not know: {unknown}"
    required = {f.env for f in FIELDS if f.default is None}
    # web-identity (the production mode) also requires the role to assume.
    assert settings_lines["RDS2BQ_AWS_AUTH"] == "web-identity"
    required.add("RDS2BQ_AWS_ROLE_ARN")
    missing = {env for env in required if not settings_lines.get(env)}
    assert not missing, f"required settings not given at deploy time: {sorted(missing)}"
    # Local-only settings must not leak into the deployment.
    for local_only in ("RDS2BQ_AWS_ENDPOINT_URL", "RDS2BQ_DTS_ENDPOINT", "RDS2BQ_BQ_ENDPOINT"):
        assert local_only not in settings_lines
    assert settings_lines["RDS2BQ_SECRETS_BACKEND"] == "secret-manager"

    substitutions = cloudbuild["substitutions"]
    text = (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(_[A-Z0-9_]+)\}", text))
    assert used == set(substitutions), (
        f"undeclared: {used - set(substitutions)}, unused: {set(substitutions) - used}"
    )


def test_settings_step_output_passes_the_code_validation(
    cloudbuild: dict[str, Any],
    tmp_path: Path,
) -> None:
    # GIVEN the settings step with realistic substitutions, in a copy of the workspace
    (step,) = [s for s in cloudbuild["steps"] if s["id"] == "settings"]
    values = dict(
        cloudbuild["substitutions"],
        _PROJECT="acme-analytics",
        _AWS_REGION="ap-northeast-1",
        _SOURCE_ID="shop-aurora",
        _S3_BUCKET="acme-rds-exports",
        _KMS_KEY_ID="arn:aws:kms:ap-northeast-1:123456789012:key/abcd",
        _EXPORT_ROLE_ARN="arn:aws:iam::123456789012:role/rds2bq-export",
        _AWS_ROLE_ARN="arn:aws:iam::123456789012:role/rds2bq-orchestrator",
        _BQ_DATASET="rds_shop",
    )
    script = substitute(str(step["args"][-1]), values)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "orchestrator").symlink_to(ROOT / "orchestrator")
    (tmp_path / "tables.txt").write_text("shop.orders\nshop.customers\n", encoding="utf-8")
    # WHEN it runs
    result = subprocess.run(
        ["bash", "-ceu", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    # THEN the code's own loader accepts the result, and the YAML handed to gcloud says the same
    assert result.returncode == 0, result.stdout + result.stderr
    assert "settings OK: 2 tables" in result.stdout
    env_yaml = yaml.safe_load((tmp_path / ENV_VARS_FILE).read_text(encoding="utf-8"))
    assert all(isinstance(v, str) for v in env_yaml.values()), env_yaml
    assert env_yaml["RDS2BQ_FIRESTORE_DATABASE"] == "(default)"
    assert env_yaml["RDS2BQ_GCP_PROJECT"] == "acme-analytics"
    settings = load_settings(env_yaml, read_text=lambda _: "shop.orders\n")
    assert settings.aws_role_arn.endswith(":role/rds2bq-orchestrator")


def test_settings_step_refuses_missing_substitutions(
    cloudbuild: dict[str, Any], tmp_path: Path
) -> None:
    # With the defaults only (no bucket, no source...), the build stops before any deploy and
    # names every missing setting.
    (step,) = [s for s in cloudbuild["steps"] if s["id"] == "settings"]
    script = substitute(str(step["args"][-1]), dict(cloudbuild["substitutions"]))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "orchestrator").symlink_to(ROOT / "orchestrator")
    (tmp_path / "tables.txt").write_text("shop.orders\n", encoding="utf-8")
    result = subprocess.run(
        ["bash", "-ceu", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    for env in (
        "RDS2BQ_SOURCE_ID",
        "RDS2BQ_S3_BUCKET",
        "RDS2BQ_GCP_PROJECT",
        "RDS2BQ_AWS_ROLE_ARN",
    ):
        assert env in result.stderr


# --- scheduler.tf ----------------------------------------------------------------------------


def _tf(hcl: dict[str, Any]) -> dict[str, Any]:
    return hcl["scheduler.tf"]


def _tf_locals(hcl: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for entry in _tf(hcl).get("locals", []):
        merged.update(entry)
    return merged


def _tf_variables(hcl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body for name, _, body in blocks(_tf(hcl), "variable")}


def _tf_resources(hcl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for rtype, name, body in blocks(_tf(hcl), "resource") if rtype == kind}


def _resolve(expression: str, variables: dict[str, dict[str, Any]]) -> str:
    match = re.fullmatch(r"\$\{var\.([a-z_]+)\}", expression)
    return str(variables[match[1]]["default"]) if match else expression


def _seconds(duration: object) -> int:
    match = re.fullmatch(r"(\d+)s", str(duration))
    assert match, duration
    return int(match[1])


def test_secret_settings_name_the_secrets_terraform_creates(
    cloudbuild: dict[str, Any],
    settings_lines: dict[str, str],
    hcl: dict[str, Any],
) -> None:
    variables = _tf_variables(hcl)
    secrets = _tf_resources(hcl, "google_secret_manager_secret")
    created = {_resolve(body["secret_id"], variables) for body in secrets.values()}
    named = set()
    for field in FIELDS:
        if not field.name.endswith("_SECRET"):
            continue
        template = settings_lines.get(field.env, field.default or "")
        value = substitute(template, cloudbuild["substitutions"])
        if value:  # AWS_KEYS_SECRET stays empty: web-identity needs no keys
            assert value in created, f"{field.env}={value!r} is not a secret scheduler.tf creates"
            named.add(value)
    assert named == created, f"secrets nobody reads: {created - named}"
    for body in secrets.values():
        # Containers only: values are added out of band and never pass through state.
        assert "secret_data" not in body
    assert not _tf_resources(hcl, "google_secret_manager_secret_version")


def test_identities_named_at_deploy_are_the_ones_terraform_creates(
    deploys: dict[str, dict[str, Any]], settings_lines: dict[str, str], hcl: dict[str, Any]
) -> None:
    accounts = {
        name: body["account_id"].replace("${var.name_prefix}", "${_NAME_PREFIX}")
        for name, body in _tf_resources(hcl, "google_service_account").items()
    }
    email = "{}@${{_PROJECT}}.iam.gserviceaccount.com".format
    assert settings_lines["RDS2BQ_DTS_SERVICE_ACCOUNT"] == email(accounts["transfers"])
    assert deploys["notify"]["flags"]["--trigger-service-account"] == email(accounts["notify_push"])
    for deploy in deploys.values():
        assert deploy["flags"]["--build-service-account"].endswith(email(accounts["deployer"]))


def test_deploy_defaults_match_terraform_defaults(
    cloudbuild: dict[str, Any], settings_lines: dict[str, str], hcl: dict[str, Any]
) -> None:
    variables = _tf_variables(hcl)
    subs = cloudbuild["substitutions"]
    assert subs["_REGION"] == variables["region"]["default"]
    assert subs["_NAME_PREFIX"] == variables["name_prefix"]["default"]
    assert subs["_TOPIC"] == variables["topic"]["default"]
    assert subs["_BQ_LOCATION"] == variables["location"]["default"]
    assert subs["_TIMEZONE"] == variables["time_zone"]["default"]
    # the poll's missed-day check reads the same schedule Cloud Scheduler fires on
    assert subs["_DAILY_SCHEDULE"] == variables["daily_schedule"]["default"]
    assert settings_lines["RDS2BQ_DAILY_SCHEDULE"] == "${_DAILY_SCHEDULE}"
    assert (
        substitute(settings_lines["RDS2BQ_FIRESTORE_DATABASE"], subs)
        == variables["firestore_database"]["default"]
    )
    assert variables["daily_schedule"]["default"] == "0 1 * * *"
    assert variables["poll_schedule"]["default"] == "*/5 * * * *"
    assert variables["time_zone"]["default"] == "Asia/Tokyo"
    for name, body in variables.items():
        assert body.get("description"), f"variable {name} has no description"
    for name in (
        "project",
        "region",
        "time_zone",
        "daily_schedule",
        "poll_schedule",
        "dataset",
        "location",
        "operators",
        "topic",
    ):
        assert variables[name].get("validation"), f"variable {name} has no validation"


def test_scheduler_jobs_call_the_deployed_functions_with_oidc(
    deploys: dict[str, dict[str, Any]],
    hcl: dict[str, Any],
) -> None:
    jobs = _tf_resources(hcl, "google_cloud_scheduler_job")
    targets = {}
    for name, job in jobs.items():
        (target,) = job["http_target"]
        match = re.fullmatch(r'\$\{local\.function_url\["([a-z_]+)"\]\}', target["uri"])
        assert match, f"{name} must call a deployed function's URL, got {target['uri']}"
        function = match[1]
        targets[function] = name
        (oidc,) = target["oidc_token"]
        assert oidc["service_account_email"] == "${google_service_account.scheduler.email}"
        assert oidc["audience"] == target["uri"]
        assert "oauth_token" not in target
        assert target["http_method"] == "POST"
        # A job must not give up on (and so retry) an attempt that is still running.
        assert _seconds(job["attempt_deadline"]) >= _seconds(
            deploys[function]["flags"]["--timeout"]
        ), name
        assert 15 <= _seconds(job["attempt_deadline"]) <= 1800, name
        (retry,) = job["retry_config"]
        assert 0 <= int(retry["retry_count"]) <= 5
        assert job["count"] == "${var.functions_deployed ? 1 : 0}"
    assert targets == {"start_export": "daily_export", "poll": "poll"}
    assert jobs["daily_export"]["time_zone"] == "${var.time_zone}"
    assert jobs["daily_export"]["schedule"] == "${var.daily_schedule}"
    assert jobs["poll"]["schedule"] == "${var.poll_schedule}"
    # URLs come from the deployed functions (data source), never typed in.
    url = _tf_locals(hcl)["function_url"]
    assert "data.google_cloudfunctions2_function.deployed" in url
    assert "service_config[0].uri" in url


def test_invokers_are_exactly_the_intended_callers(hcl: dict[str, Any]) -> None:
    (invoker,) = _tf_resources(hcl, "google_cloud_run_v2_service_iam_member").values()
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["for_each"] == "${var.functions_deployed ? local.invokers : {}}"
    expression = " ".join(_tf_locals(hcl)["invokers"].split())
    assert re.search(
        r'for f in \["start_export", "poll"\] : .*google_service_account\.scheduler', expression
    ), expression
    assert 'setproduct(["rerun", "status"], var.operators)' in expression
    assert (
        '"notify/push" = {function = "notify", member = '
        '"serviceAccount:${google_service_account.notify_push.email}"}' in expression
    )


def test_google_grants_are_the_least_each_identity_needs(hcl: dict[str, Any]) -> None:
    project_roles = {
        body["role"] for body in _tf_resources(hcl, "google_project_iam_member").values()
    }
    for body in _tf_resources(hcl, "google_project_iam_member").values():
        if "for_each" in body and body["role"] == "${each.key}":
            project_roles |= set(re.findall(r'"(roles/[A-Za-z.]+)"', body["for_each"]))
    project_roles.discard("${each.key}")
    # No broad role anywhere: no owner/editor, no BigQuery admin (a custom role holds just the
    # two DTS permissions), no project-wide actAs or secret access.
    assert project_roles == {
        "roles/datastore.user",
        "roles/datastore.viewer",
        "${google_project_iam_custom_role.transfers.name}",
        "roles/bigquery.jobUser",
        "roles/cloudfunctions.developer",
        "roles/logging.logWriter",
        "roles/artifactregistry.writer",
        "roles/storage.objectViewer",
    }
    (custom,) = _tf_resources(hcl, "google_project_iam_custom_role").values()
    assert sorted(custom["permissions"]) == ["bigquery.transfers.get", "bigquery.transfers.update"]

    # Each secret is readable by the one identity that reads it.
    readers = {
        (body["secret_id"], body["member"])
        for body in _tf_resources(hcl, "google_secret_manager_secret_iam_member").values()
    }
    assert readers == {
        (
            "${google_secret_manager_secret.slack_webhook.id}",
            '${google_service_account.function["notify"].member}',
        ),
        (
            "${google_secret_manager_secret.dts_keys.id}",
            "${google_service_account.deployer.member}",
        ),
    }
    grants = _tf_locals(hcl)
    assert grants["aws_callers"] == ["start_export", "poll", "rerun"]
    assert grants["ledger_readers"] == ["status"]
    for grant in ("aws_callers", "ledger_writers", "publishers", "transfer_runners"):
        assert "status" not in grants[grant], f"status is read-only, not in {grant}"
    assert grants["transfer_runners"] == ["poll", "rerun"]


def test_nothing_is_public(hcl: dict[str, Any]) -> None:
    text = (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")
    assert "--allow-unauthenticated" not in text
    for path, tree in hcl.items():
        # Every value of every resource, data source and local (variables may name them in
        # their error messages).
        for kind in ("resource", "data", "locals"):
            for value in _strings(tree.get(kind, [])):
                assert "allUsers" not in value and "allAuthenticatedUsers" not in value, path
    # The operators variable refuses public members.
    condition = _tf_variables(hcl)["operators"]["validation"][0]["condition"]
    assert "^(group|user|serviceAccount):" in condition
    # On AWS, the only "*" principal is the bucket policy's Deny of plain HTTP.
    for path, tree in hcl.items():
        for _, name, body in blocks(tree, "data"):
            for statement in body.get("statement", []):
                for principal in statement.get("principals", []):
                    if "*" in principal["identifiers"]:
                        assert statement["effect"] == "Deny", f"{path} {name}"


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_service_agents_exist_before_anything_is_granted_to_them(hcl: dict[str, Any]) -> None:
    # Google creates a service agent lazily; IAM refuses a grant to one that does not exist yet.
    # The agents rds2bq grants to are created up front, and every such grant waits for them.
    (identity,) = _tf_resources(hcl, "google_project_service_identity").values()
    assert identity["provider"] == "google-beta"
    services = set(re.findall(r'"([a-z.]+\.googleapis\.com)"', identity["for_each"]))
    assert services == {"bigquerydatatransfer.googleapis.com", "pubsub.googleapis.com"}
    assert identity["depends_on"] == ["${google_project_service.enabled}"]
    agents = {"${local.dts_service_agent}", "${local.pubsub_service_agent}"}
    granted = 0
    for kind in (
        "google_pubsub_topic_iam_member",
        "google_service_account_iam_member",
        "google_project_iam_member",
        "google_bigquery_dataset_iam_member",
    ):
        for name, body in _tf_resources(hcl, kind).items():
            if body["member"] in agents:
                granted += 1
                assert "${google_project_service_identity.agent}" in body.get("depends_on", []), (
                    f"{kind}.{name} is granted to a service agent without waiting for it"
                )
    assert granted == 3
    required = _tf(hcl)["terraform"][0]["required_providers"][0]
    assert required["google-beta"]["source"] == "hashicorp/google-beta"


def test_the_dataset_is_granted_to_sync_the_transfers_the_poll_and_notify_only(
    hcl: dict[str, Any],
) -> None:
    # DTS's Amazon S3 guide: whoever creates a transfer needs bigquery.datasets.get and
    # bigquery.datasets.update on the target dataset. dataEditor lacks update; dataOwner on the
    # one dataset is the smallest predefined role with both.
    grants = {
        (body["role"], body["member"], body.get("for_each", ""))
        for body in _tf_resources(hcl, "google_bigquery_dataset_iam_member").values()
    }
    function = "${google_service_account.function[each.value].member}"
    assert grants == {
        ("roles/bigquery.dataOwner", "${google_service_account.deployer.member}", ""),
        ("roles/bigquery.dataOwner", "${google_service_account.transfers.member}", ""),
        # the preflight's tables.get and tables.update (new columns); notify's tables.get (rows)
        ("roles/bigquery.dataEditor", function, "${toset(local.table_schema_followers)}"),
        ("roles/bigquery.metadataViewer", function, "${toset(local.table_row_counters)}"),
    }
    for body in _tf_resources(hcl, "google_bigquery_dataset_iam_member").values():
        assert body["dataset_id"] == "${google_bigquery_dataset.destination.dataset_id}"
    grants_of = _tf_locals(hcl)
    assert grants_of["table_schema_followers"] == ["poll"]
    assert grants_of["table_row_counters"] == ["notify"]


def test_impersonators_may_mint_tokens_only_as_the_functions_that_reach_aws(
    hcl: dict[str, Any],
) -> None:
    # doctor --impersonate: token creation on start_export, poll and rerun only, never on the
    # project, and nobody by default
    variables = _tf_variables(hcl)
    assert variables["impersonators"]["default"] == []
    grant = _tf_resources(hcl, "google_service_account_iam_member")[
        "impersonators_mint_aws_callers_tokens"
    ]
    assert grant["role"] == "roles/iam.serviceAccountTokenCreator"
    assert '["start_export", "poll", "rerun"]' in grant["for_each"]
    assert "var.impersonators" in grant["for_each"]
    assert grant["service_account_id"] == (
        "${google_service_account.function[each.value.function].name}"
    )
    project_roles = {b["role"] for b in _tf_resources(hcl, "google_project_iam_member").values()}
    assert "roles/iam.serviceAccountTokenCreator" not in project_roles
