#!/usr/bin/env bash
# The deployment's settings in one place: your choices (deploy.env, written in docs/deploy.md
# step 0) and what the AWS side's Terraform created (its outputs, step 3), printed in the form a
# step of the guide needs:
#
#   scripts/deploy-settings.sh substitutions   _PROJECT=...,_REGION=...   for gcloud builds submit
#   scripts/deploy-settings.sh env             export RDS2BQ_...='...'    for eval, before the CLI
#
# The build (step 6) and the CLI on your machine (steps 8 and 9) read the same values from here,
# so they cannot be given different ones. With `env`, AWS calls use your own AWS credentials
# (RDS2BQ_AWS_AUTH=default): only the functions' service accounts may assume the orchestrator role.
# Run it from anywhere; it reads deploy.env and infra/aws from the repository root.
set -euo pipefail

usage() {
  echo "usage: $0 substitutions|env" >&2
  exit 2
}
[ $# -eq 1 ] || usage
mode=$1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -f "$root/deploy.env" ]; then
  echo "$root/deploy.env is missing: write it as docs/deploy.md, step 0, shows" >&2
  exit 1
fi
# shellcheck source=/dev/null
. "$root/deploy.env"
for name in PROJECT REGION BQ_LOCATION DATASET SOURCE_KIND SOURCE_ID; do
  if [ -z "${!name:-}" ]; then
    echo "deploy.env does not set $name (docs/deploy.md, step 0)" >&2
    exit 1
  fi
done

aws_output() {
  local value
  if ! value=$(terraform -chdir="$root/infra/aws" output -raw "$1"); then
    echo "no AWS Terraform output $1: apply infra/aws first (docs/deploy.md, step 3)" >&2
    exit 1
  fi
  printf '%s' "$value"
}

# substitution  setting  value
settings=(
  "_PROJECT RDS2BQ_GCP_PROJECT $PROJECT"
  "_REGION - $REGION"
  "_BQ_LOCATION RDS2BQ_BQ_LOCATION $BQ_LOCATION"
  "_BQ_DATASET RDS2BQ_BQ_DATASET $DATASET"
  "_AWS_REGION RDS2BQ_AWS_REGION $(aws_output region)"
  "_SOURCE_KIND RDS2BQ_SOURCE_KIND $SOURCE_KIND"
  "_SOURCE_ID RDS2BQ_SOURCE_ID $SOURCE_ID"
  "_S3_BUCKET RDS2BQ_S3_BUCKET $(aws_output bucket)"
  "_S3_PREFIX RDS2BQ_S3_PREFIX $(aws_output s3_prefix)"
  "_KMS_KEY_ID RDS2BQ_KMS_KEY_ID $(aws_output kms_key_arn)"
  "_EXPORT_ROLE_ARN RDS2BQ_EXPORT_ROLE_ARN $(aws_output export_role_arn)"
  "_AWS_ROLE_ARN RDS2BQ_AWS_ROLE_ARN $(aws_output orchestrator_role_arn)"
)

case "$mode" in
  substitutions)
    out=""
    for line in "${settings[@]}"; do
      read -r sub _ value <<<"$line"
      case "$value" in
        *,* | *\'*)
          echo "$sub: a value with ',' or a quote cannot be a substitution: $value" >&2
          exit 1
          ;;
      esac
      out+="${out:+,}$sub=$value"
    done
    printf '%s\n' "$out"
    ;;
  env)
    for line in "${settings[@]}"; do
      read -r _ env value <<<"$line"
      [ "$env" = "-" ] || printf 'export %s=%q\n' "$env" "$value"
    done
    printf 'export RDS2BQ_DTS_SERVICE_ACCOUNT=%q\n' "rds2bq-transfers@$PROJECT.iam.gserviceaccount.com"
    printf 'export RDS2BQ_AWS_AUTH=default\n'
    ;;
  *) usage ;;
esac
