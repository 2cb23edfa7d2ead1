# The AWS half of rds2bq: its own root module, applied on its own.
#
# Why a separate root module and not part of ../../scheduler.tf:
# - different provider and credentials: whoever applies this holds AWS admin rights in the
#   account of the database; whoever applies scheduler.tf holds Google rights. Neither needs the
#   other's, and neither state file holds the other's resources;
# - its inputs flow one way: it needs the numeric ids of the Google service accounts (an output of
#   scheduler.tf) and gives back ARNs that become RDS2BQ_* settings in cloudbuild.yaml;
# - it can be applied for real against moto's server (tests/infra), which no Google resource can.
#
# Nothing in this module creates a secret: the DTS reader's access key is created out of band and
# piped straight into Google Secret Manager (docs/deploy.md), so it is never in a state file.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "rds2bq", ManagedBy = "terraform" }, var.tags)
  }
}
