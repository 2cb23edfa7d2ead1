# The Google side of rds2bq: identities, IAM, the notification topic, secrets (containers only),
# the run ledger database, the destination dataset and the two Cloud Scheduler jobs.
#
# Who creates what:
# - Terraform (this file): everything that holds permissions or state.
# - Cloud Build (cloudbuild.yaml): the five functions themselves, from this repository's source,
#   running as the service accounts created here. Terraform never deploys code.
# - infra/aws (its own root module): the AWS half; it pins the numeric ids output here.
#
# How Terraform learns the function URLs: from the deployed functions, through the
# google_cloudfunctions2_function data source (service_config.uri is the Cloud Run URL, also the
# OIDC audience; service_config.service the Cloud Run service to grant run.invoker on). A data
# source fails when the function does not exist yet, and the functions can only be deployed
# once their service accounts exist, so the first deployment applies this file twice:
#   1. functions_deployed = false: APIs, service accounts, IAM, topic, secrets, Firestore, dataset;
#   2. cloudbuild.yaml deploys the functions;
#   3. functions_deployed = true: run.invoker bindings and the scheduler jobs, on the real URLs.
# No URL is ever typed or guessed (docs/deploy.md walks through it).

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.40, < 7.0"
    }
    # For google_project_service_identity only (the service agents, created up front).
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

provider "google-beta" {
  project = var.project
  region  = var.region
}

# --- Variables --------------------------------------------------------------------------------

variable "project" {
  description = "Google Cloud project id that hosts the functions, ledger, topic and dataset (RDS2BQ_GCP_PROJECT)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a project id: 6-30 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "region" {
  description = "Region of the functions, the scheduler jobs and the secrets' replicas (cloudbuild.yaml _REGION)."
  type        = string
  default     = "asia-northeast1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as asia-northeast1."
  }
}

variable "name_prefix" {
  description = "Prefix of every name created here: service accounts, functions (cloudbuild.yaml _NAME_PREFIX), jobs."
  type        = string
  default     = "rds2bq"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,9}$", var.name_prefix))
    error_message = "name_prefix must be 2-10 lowercase letters, digits or '-', starting with a letter (service account ids are at most 30 characters)."
  }
}

variable "time_zone" {
  description = "IANA time zone in which daily_schedule is read (RDS2BQ_TIMEZONE shows dates in the same zone)."
  type        = string
  default     = "Asia/Tokyo"

  validation {
    condition     = can(regex("^(UTC|Etc/UTC|[A-Z][A-Za-z_]+(/[A-Z][A-Za-z0-9_+-]+){1,2})$", var.time_zone))
    error_message = "time_zone must be an IANA time zone name such as Asia/Tokyo or UTC."
  }
}

variable "daily_schedule" {
  description = "Cron schedule (in time_zone) of the daily export; its slot becomes the run time."
  type        = string
  default     = "0 1 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.daily_schedule))) == 5
    error_message = "daily_schedule must be a five-field cron expression such as \"0 1 * * *\"."
  }
}

variable "poll_schedule" {
  description = "Cron schedule of the poll function. Exports take hours: every few minutes is enough, and the poll never waits inside one invocation."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.poll_schedule))) == 5
    error_message = "poll_schedule must be a five-field cron expression such as \"*/5 * * * *\"."
  }
}

variable "dataset" {
  description = "Destination BigQuery dataset id, created here (RDS2BQ_BQ_DATASET)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.dataset))
    error_message = "dataset must be letters, digits or '_'."
  }
}

variable "location" {
  description = "BigQuery location of the dataset and of the transfer configs (RDS2BQ_BQ_LOCATION)."
  type        = string
  default     = "asia-northeast1"

  validation {
    condition     = can(regex("^(US|EU|[a-z]+-[a-z]+[0-9])$", var.location))
    error_message = "location must be US, EU or a region such as asia-northeast1."
  }
}

variable "firestore_location" {
  description = "Location of the run ledger's Firestore database (a region or a multi-region such as nam5)."
  type        = string
  default     = "asia-northeast1"

  validation {
    condition     = can(regex("^([a-z]+-[a-z]+[0-9]|nam5|eur3)$", var.firestore_location))
    error_message = "firestore_location must be a region such as asia-northeast1, or nam5 / eur3."
  }
}

variable "firestore_database" {
  description = "Firestore database id of the run ledger (RDS2BQ_FIRESTORE_DATABASE)."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be (default) or 4-63 lowercase letters, digits or '-'."
  }
}

variable "topic" {
  description = "Pub/Sub topic id for DTS run notifications and rds2bq's own events (RDS2BQ_TOPIC)."
  type        = string
  default     = "rds2bq-events"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", var.topic)) && !startswith(var.topic, "goog")
    error_message = "topic must be a valid Pub/Sub topic id (3-255 characters, a letter first, not starting with goog)."
  }
}

variable "dts_keys_secret_id" {
  description = "Secret Manager secret id holding the DTS reader's AWS keys as JSON (RDS2BQ_DTS_KEYS_SECRET). Only the sync step reads it."
  type        = string
  default     = "rds2bq-dts-reader-keys"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.dts_keys_secret_id))
    error_message = "dts_keys_secret_id must be 1-255 letters, digits, '_' or '-'."
  }
}

variable "slack_webhook_secret_id" {
  description = "Secret Manager secret id holding the Slack incoming webhook URL (RDS2BQ_SLACK_WEBHOOK_SECRET). Only notify reads it."
  type        = string
  default     = "rds2bq-slack-webhook"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.slack_webhook_secret_id))
    error_message = "slack_webhook_secret_id must be 1-255 letters, digits, '_' or '-'."
  }
}

variable "operators" {
  description = "IAM members allowed to call rerun and status, e.g. [\"group:rds2bq-operators@example.com\"]."
  type        = list(string)

  validation {
    condition     = length(var.operators) > 0 && alltrue([for m in var.operators : can(regex("^(group|user|serviceAccount):[^@\\s]+@[^@\\s]+$", m))])
    error_message = "operators must list group:, user: or serviceAccount: members (never allUsers or allAuthenticatedUsers)."
  }
}

variable "impersonators" {
  description = "IAM members allowed to mint ID tokens as the functions that call AWS (start_export, poll, rerun), for `doctor --impersonate`, e.g. [\"group:rds2bq-operators@example.com\"]. Empty: nobody."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.impersonators : can(regex("^(group|user|serviceAccount):[^@\\s]+@[^@\\s]+$", m))])
    error_message = "impersonators must list group:, user: or serviceAccount: members (never allUsers or allAuthenticatedUsers)."
  }
}

variable "alert_email" {
  description = "E-mail address that Cloud Monitoring alerts when rds2bq itself is failing or silent (its Slack messages come from the same functions, so they cannot say that)."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an e-mail address."
  }
}

variable "alert_notification_channels" {
  description = "More Cloud Monitoring notification channels for the same alerts (ids such as projects/P/notificationChannels/123: a pager, or a chat channel that rds2bq does not post to)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "alert_notification_channels must be notification channel ids: projects/PROJECT/notificationChannels/NUMBER."
  }
}

variable "run_closed_window_hours" {
  description = "The dead-man's switch: alert when no run has closed for this many hours. More than a day, since daily runs close about 24 h apart and a slow export moves the closing later."
  type        = number
  default     = 26

  validation {
    condition     = var.run_closed_window_hours >= 2 && var.run_closed_window_hours <= 168 && floor(var.run_closed_window_hours) == var.run_closed_window_hours
    error_message = "run_closed_window_hours must be a whole number of hours between 2 and 168."
  }
}

variable "poll_silence_minutes" {
  description = "Alert when the poll job has not run for this many minutes (paused, deleted, or Cloud Scheduler not running it). Keep it a few poll_schedule intervals."
  type        = number
  default     = 30

  validation {
    condition     = var.poll_silence_minutes >= 10 && var.poll_silence_minutes <= 1410 && floor(var.poll_silence_minutes) == var.poll_silence_minutes
    error_message = "poll_silence_minutes must be a whole number of minutes between 10 and 1410 (a metric-absence condition allows at most 23.5 hours)."
  }
}

variable "functions_deployed" {
  description = "false for the first apply (before cloudbuild.yaml has deployed the functions); true afterwards, to read the function URLs and create the invoker bindings and scheduler jobs."
  type        = bool
  default     = false
}

# --- Names and who needs what -------------------------------------------------------------------

locals {
  # One entry per function in main.py. The function (and Cloud Run service) name is hyphenated
  # because Cloud Run service names cannot hold '_'; the entry point keeps the Python name.
  functions = {
    start_export = { name = "${var.name_prefix}-start-export", sa = "${var.name_prefix}-start-export" }
    poll         = { name = "${var.name_prefix}-poll", sa = "${var.name_prefix}-poll" }
    notify       = { name = "${var.name_prefix}-notify", sa = "${var.name_prefix}-notify" }
    rerun        = { name = "${var.name_prefix}-rerun", sa = "${var.name_prefix}-rerun" }
    status       = { name = "${var.name_prefix}-status", sa = "${var.name_prefix}-status" }
  }

  # The functions that call AWS with a Google ID token (their numeric ids go to infra/aws).
  aws_callers = ["start_export", "poll", "rerun"]

  # Firestore: the ledger is read and written by all but status, which only reads.
  ledger_writers = ["start_export", "poll", "notify", "rerun"]
  ledger_readers = ["status"]

  # Publish rds2bq's own events to the topic: export started, hand-off done, and (notify, when a
  # run's last table finishes) run closed.
  publishers = ["start_export", "poll", "notify", "rerun"]

  # Start manual DTS runs on the transfer configs.
  transfer_runners = ["poll", "rerun"]

  # The destination tables: the poll's preflight reads their schemas and rows (tables.get) and
  # adds new columns (tables.update); notify and the poll compare a load's rows (tables.get).
  table_schema_followers = ["poll"]
  table_row_counters     = ["notify"]

  # Who may invoke each HTTP function through its Cloud Run service. notify is invoked by its
  # Eventarc trigger's push identity only.
  invokers = merge(
    { for f in ["start_export", "poll"] : "${f}/scheduler" => { function = f, member = "serviceAccount:${google_service_account.scheduler.email}" } },
    { for pair in setproduct(["rerun", "status"], var.operators) : "${pair[0]}/${pair[1]}" => { function = pair[0], member = pair[1] } },
    { "notify/push" = { function = "notify", member = "serviceAccount:${google_service_account.notify_push.email}" } },
  )

  deployed     = var.functions_deployed ? local.functions : {}
  function_url = { for k, f in data.google_cloudfunctions2_function.deployed : k => f.service_config[0].uri }

  dts_service_agent    = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-bigquerydatatransfer.iam.gserviceaccount.com"
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-pubsub.iam.gserviceaccount.com"
}

data "google_project" "this" {
  project_id = var.project
}

# --- APIs -------------------------------------------------------------------------------------------

resource "google_project_service" "enabled" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerydatatransfer.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ])

  project = var.project
  service = each.value
  # Other workloads in the project may use the same APIs: never switch them off on destroy.
  disable_on_destroy = false
}

# --- Service agents ---------------------------------------------------------------------------------
# Google creates a service's agent lazily (at its first use, sometimes minutes after the API is
# enabled), and IAM refuses a grant to an agent that does not exist yet. These two are granted
# below (the DTS agent publishes to the topic and acts as the transfers account; the Pub/Sub agent
# mints notify's push tokens), so they are created here first, deterministically, instead of
# hoping they exist by the first apply. (By hand: gcloud beta services identity create
# --service=bigquerydatatransfer.googleapis.com.) The grants keep using the documented email
# form, which is what these resources create.

resource "google_project_service_identity" "agent" {
  provider = google-beta
  for_each = toset(["bigquerydatatransfer.googleapis.com", "pubsub.googleapis.com"])

  project    = var.project
  service    = each.value
  depends_on = [google_project_service.enabled]
}

# --- Service accounts: one per function, one for the scheduler, one for the notify trigger, one
# --- the transfers run as, one for Cloud Build (deploy + sync). None has a key: they are only
# --- ever attached to, or impersonated by, Google services.

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = each.value.sa
  display_name = "rds2bq ${each.key}"
  description  = "Runtime identity of the ${each.key} function (${each.value.name})."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "rds2bq Cloud Scheduler"
  description  = "OIDC identity of the daily export and poll jobs; may invoke start_export and poll only."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "notify_push" {
  account_id   = "${var.name_prefix}-notify-push"
  display_name = "rds2bq notify trigger"
  description  = "Push identity of notify's Eventarc (Pub/Sub) trigger; may invoke notify only."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "transfers" {
  account_id   = "${var.name_prefix}-transfers"
  display_name = "rds2bq transfers"
  description  = "The BigQuery DTS transfer configs run as this account (RDS2BQ_DTS_SERVICE_ACCOUNT): loads into the destination dataset only."
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "deployer" {
  account_id   = "${var.name_prefix}-deployer"
  display_name = "rds2bq Cloud Build"
  description  = "Runs cloudbuild.yaml: deploys the functions, creates the destination tables and syncs the transfer configs."
  depends_on   = [google_project_service.enabled]
}

# --- Run ledger: Firestore in Native mode ------------------------------------------------------

resource "google_firestore_database" "ledger" {
  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"
  depends_on                        = [google_project_service.enabled]
}

# notify and rerun remember message and request keys in RDS2BQ_LEDGER_COLLECTION + "_dedupe"
# (default rds2bq_runs_dedupe) with an `expire_at` 8 days ahead, past Pub/Sub's 7-day retry
# window. This TTL policy deletes them after that, so the collection does not grow forever.
resource "google_firestore_field" "dedupe_ttl" {
  project    = var.project
  database   = google_firestore_database.ledger.name
  collection = "rds2bq_runs_dedupe"
  field      = "expire_at"

  ttl_config {}

  # No single-field index: the field is only read by the TTL sweeper.
  index_config {}
}

# Firestore roles are project-wide: rds2bq belongs in a project of its own.
resource "google_project_iam_member" "ledger_user" {
  for_each = toset(local.ledger_writers)

  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.value].member
}

resource "google_project_iam_member" "ledger_viewer" {
  for_each = toset(local.ledger_readers)

  project = var.project
  role    = "roles/datastore.viewer"
  member  = google_service_account.function[each.value].member
}

# --- Events topic --------------------------------------------------------------------------------

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Messages are run metadata (ids, states, error text; DTS may echo the reader key id, never its secret), no table data; Google-managed encryption suffices and a CMEK adds a key to operate for no gain.
  name                       = var.topic
  message_retention_duration = "86400s"
  # No schema: DTS publishes its own JSON and refuses topics with a schema.
  depends_on = [google_project_service.enabled]
}

# DTS publishes run-finished notifications through its service agent.
resource "google_pubsub_topic_iam_member" "dts_publisher" {
  topic      = google_pubsub_topic.events.id
  role       = "roles/pubsub.publisher"
  member     = local.dts_service_agent
  depends_on = [google_project_service_identity.agent]
}

resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = toset(local.publishers)

  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.function[each.value].member
}

# Creating a transfer config with notification_pubsub_topic requires
# pubsub.topics.getIamPolicy and setIamPolicy on that topic: on this topic only.
resource "google_pubsub_topic_iam_member" "deployer_topic_admin" {
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.admin"
  member = google_service_account.deployer.member
}

# Pub/Sub mints the push tokens of the notify trigger. Automatic for projects created after
# April 2021; stated here so older projects work too.
resource "google_service_account_iam_member" "pubsub_mints_push_tokens" {
  service_account_id = google_service_account.notify_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
  depends_on         = [google_project_service_identity.agent]
}

# --- Secrets: containers only. Values are added out of band (docs/deploy.md), so no secret
# --- ever passes through Terraform state; the code reads the latest version at run time, so a
# --- rotation needs no redeploy.

resource "google_secret_manager_secret" "dts_keys" {
  secret_id = var.dts_keys_secret_id
  labels    = { app = "rds2bq" }

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "slack_webhook" {
  secret_id = var.slack_webhook_secret_id
  labels    = { app = "rds2bq" }

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

# Each secret is readable by the one identity that needs it.
resource "google_secret_manager_secret_iam_member" "notify_reads_slack_webhook" {
  secret_id = google_secret_manager_secret.slack_webhook.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["notify"].member
}

resource "google_secret_manager_secret_iam_member" "sync_reads_dts_keys" {
  secret_id = google_secret_manager_secret.dts_keys.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.deployer.member
}

# --- BigQuery: the destination dataset and DTS ---------------------------------------------------

resource "google_bigquery_dataset" "destination" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption; a CMEK for the dataset is a per-organisation decision (set default_encryption_configuration here if yours requires one).
  dataset_id                 = var.dataset
  location                   = var.location
  description                = "rds2bq: daily copies of RDS / Aurora tables, loaded by BigQuery DTS."
  delete_contents_on_destroy = false
  labels                     = { app = "rds2bq" }
  depends_on                 = [google_project_service.enabled]
}

# DTS has exactly two permissions: bigquery.transfers.get and bigquery.transfers.update (which
# creates, updates, deletes and starts runs; there is no finer one). The only predefined role
# holding update is roles/bigquery.admin, which also reads and deletes every table in the
# project; roles/bigquery.user has transfers.get only. Hence this custom role, with just the two.
resource "google_project_iam_custom_role" "transfers" {
  role_id     = replace("${var.name_prefix}Transfers", "-", "")
  title       = "rds2bq transfer configs and runs"
  description = "Read transfer configs and runs, start manual runs, create and update configs. Nothing on tables."
  permissions = ["bigquery.transfers.get", "bigquery.transfers.update"]
  depends_on  = [google_project_service.enabled]
}

resource "google_project_iam_member" "transfer_runner" {
  for_each = toset(local.transfer_runners)

  project = var.project
  role    = google_project_iam_custom_role.transfers.name
  member  = google_service_account.function[each.value].member
}

resource "google_project_iam_member" "sync_transfer_admin" {
  project = var.project
  role    = google_project_iam_custom_role.transfers.name
  member  = google_service_account.deployer.member
}

# The preflight adds columns to the destination tables (tables.update, with tables.get): on this
# dataset only, dataEditor is the smallest predefined role with bigquery.tables.update (it can also
# write and delete this dataset's tables, never another dataset's, and runs no jobs).
resource "google_bigquery_dataset_iam_member" "schema_follower_edits_tables" {
  for_each = toset(local.table_schema_followers)

  dataset_id = google_bigquery_dataset.destination.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.function[each.value].member
}

# notify reads a loaded table's row count (tables.get): metadata only, never the rows.
resource "google_bigquery_dataset_iam_member" "row_counter_reads_metadata" {
  for_each = toset(local.table_row_counters)

  dataset_id = google_bigquery_dataset.destination.dataset_id
  role       = "roles/bigquery.metadataViewer"
  member     = google_service_account.function[each.value].member
}

# The transfer configs run as their own service account (RDS2BQ_DTS_SERVICE_ACCOUNT, set by
# sync), not as whoever ran sync: DTS requires the run identity to hold bigquery.datasets.get and
# bigquery.datasets.update on the destination dataset, and to run load jobs. dataOwner on this one
# dataset is the smallest predefined role with datasets.update.
resource "google_bigquery_dataset_iam_member" "transfers_load_dataset" {
  dataset_id = google_bigquery_dataset.destination.dataset_id
  role       = "roles/bigquery.dataOwner"
  member     = google_service_account.transfers.member
}

resource "google_project_iam_member" "transfers_run_load_jobs" {
  project = var.project
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.transfers.member
}

# DTS starts each run as that service account.
resource "google_service_account_iam_member" "dts_acts_as_transfers" {
  service_account_id = google_service_account.transfers.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.dts_service_agent
  depends_on         = [google_project_service_identity.agent]
}

# sync creates the destination tables (before the first run, as DTS requires) and the transfer
# configs. DTS's Amazon S3 guide requires whoever creates a transfer to hold bigquery.datasets.get
# and bigquery.datasets.update on the target dataset; dataEditor has no datasets.update, and
# dataOwner on this one dataset is the smallest predefined role that has it (it also lets the
# deployer change this dataset's access list, and nothing outside it).
resource "google_bigquery_dataset_iam_member" "sync_owns_dataset" {
  dataset_id = google_bigquery_dataset.destination.dataset_id
  role       = "roles/bigquery.dataOwner"
  member     = google_service_account.deployer.member
}

# --- Cloud Build's identity: runs cloudbuild.yaml, deploys the functions as their service
# --- accounts, builds their source, syncs the transfer configs -----------------------------------

resource "google_project_iam_member" "deployer" {
  for_each = toset([
    # gcloud functions deploy (gen2).
    "roles/cloudfunctions.developer",
    # The build's own logs (cloudbuild.yaml sets logging: CLOUD_LOGGING_ONLY) and those of the
    # functions' source builds, which run as this account too (--build-service-account).
    "roles/logging.logWriter",
    # The functions' source builds push their images to the gcf-artifacts repository...
    "roles/artifactregistry.writer",
    # ...and read the uploaded sources (this build's own too, from gs://PROJECT_cloudbuild).
    # These three are the narrow alternative to roles/cloudbuild.builds.builder, which can also
    # write to any bucket and is listed among the roles that can act as other identities.
    "roles/storage.objectViewer",
  ])

  project = var.project
  role    = each.key
  member  = google_service_account.deployer.member
}

# doctor --impersonate: the listed operators may mint ID tokens as the three functions that reach
# AWS (to try the web-identity trust as production runs it), on those accounts only.
resource "google_service_account_iam_member" "impersonators_mint_aws_callers_tokens" {
  for_each = {
    for pair in setproduct(["start_export", "poll", "rerun"], var.impersonators) :
    "${pair[0]} ${pair[1]}" => { function = pair[0], member = pair[1] }
  }

  service_account_id = google_service_account.function[each.value.function].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value.member
}

# actAs: only on the identities it deploys with, never project-wide.
resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = merge(
    { for k, sa in google_service_account.function : k => sa.name },
    {
      notify_push = google_service_account.notify_push.name
      deployer    = google_service_account.deployer.name
      transfers   = google_service_account.transfers.name
    },
  )

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}

# --- Once deployed: who may invoke what, and the two scheduler jobs ----------------------------

data "google_cloudfunctions2_function" "deployed" {
  for_each = local.deployed

  name     = each.value.name
  location = var.region
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = var.functions_deployed ? local.invokers : {}

  name     = data.google_cloudfunctions2_function.deployed[each.value.function].service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value.member
}

resource "google_cloud_scheduler_job" "daily_export" {
  count = var.functions_deployed ? 1 : 0

  name        = "${var.name_prefix}-daily-export"
  description = "Starts the day's RDS export. The run time is this job's scheduled slot (X-CloudScheduler-ScheduleTime), so a retry resumes the same run."
  region      = var.region
  schedule    = var.daily_schedule
  time_zone   = var.time_zone
  # start_export answers within seconds (its function timeout is 120s); a longer deadline than
  # the function's timeout keeps a slow attempt from being retried while it still runs.
  attempt_deadline = "180s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = local.function_url["start_export"]
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.function_url["start_export"]
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}

resource "google_cloud_scheduler_job" "poll" {
  count = var.functions_deployed ? 1 : 0

  name        = "${var.name_prefix}-poll"
  description = "Advances every open run: export status, hand-off to DTS, deadlines. Never waits."
  region      = var.region
  schedule    = var.poll_schedule
  time_zone   = "Etc/UTC"
  # poll's function timeout is 540s, below the 600s hand-off lease (RDS2BQ_LEASE_SECONDS).
  attempt_deadline = "600s"

  # No retry: the next tick is a few minutes away and does the same work.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = local.function_url["poll"]
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.function_url["poll"]
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}

# --- Watching the watcher: alerts that do not depend on rds2bq being up ------------------------
# Slack hears from the same functions it would be warned about, so these go through Cloud
# Monitoring to an e-mail address (and any other channel given): a function logging an error or
# failing, no run closing for a day and more (the dead-man's switch), the poll job not running.
# docs/deploy.md ("Watching the watcher") says what each means and what to do.

locals {
  # Cloud Functions gen2 log as their Cloud Run service, which has the function's name.
  function_services = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${join(" OR ", [for f in local.functions : "\"${f.name}\""])})"
  alert_channels    = concat([google_monitoring_notification_channel.email.id], var.alert_notification_channels)
  # Underscores: the name becomes part of a PromQL metric name below.
  run_closed_metric    = "${replace(var.name_prefix, "-", "_")}_run_closed"
  poll_attempts_metric = "${replace(var.name_prefix, "-", "_")}_poll_attempts"
}

resource "google_monitoring_notification_channel" "email" {
  display_name = "rds2bq alerts"
  description  = "Where rds2bq's own failures are reported (alert_email)."
  type         = "email"
  labels       = { email_address = var.alert_email }
  depends_on   = [google_project_service.enabled]
}

# (a) Any function logging at ERROR or worse, or failing: an uncaught exception, a timeout or a
# crash shows as a 5xx in the function's request log, which Cloud Run writes at ERROR.
resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "rds2bq: a function logged an error or failed"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "ERROR or worse in an rds2bq function's logs"

    condition_matched_log {
      filter = "${local.function_services} AND severity>=ERROR"
    }
  }

  # Log-match conditions require a rate limit: one message per 5 minutes at most.
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "An rds2bq function logged an error or failed a request. Open the incident's log entry, then follow docs/deploy.md, \"Watching the watcher\"."
  }

  depends_on = [google_project_service.enabled]
}

# (b) The dead-man's switch: one point per closed run, from the line orchestrator/outbox.py logs
# (RUN_CLOSED_LOG) when a run reaches SUCCEEDED, PARTIAL, FAILED or CANCELED.
resource "google_logging_metric" "run_closed" {
  name        = local.run_closed_metric
  description = "Runs closed (SUCCEEDED, PARTIAL, FAILED or CANCELED): the \"run closed: RUN_ID STATE\" line of orchestrator/outbox.py."
  filter      = "${local.function_services} AND labels.component=\"rds2bq\" AND jsonPayload.message=~\"^run closed: \""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.enabled]
}

# A metric-absence condition allows at most 23.5 hours, less than a day between daily runs; PromQL's
# absent_over_time takes any window. It also fires while no run has ever closed, so the policy
# exists only from the second apply on (step 7), right before the first run (step 9).
resource "google_monitoring_alert_policy" "no_run_closed" {
  count = var.functions_deployed ? 1 : 0

  display_name          = "rds2bq: no run closed in ${var.run_closed_window_hours} h"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "No run closed in ${var.run_closed_window_hours} h"

    condition_prometheus_query_language {
      query               = "absent_over_time(logging_googleapis_com:user_${google_logging_metric.run_closed.name}{monitored_resource=\"cloud_run_revision\"}[${var.run_closed_window_hours}h])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "No rds2bq run has closed in ${var.run_closed_window_hours} hours: the daily export did not start, is stuck, or nothing records its end. See docs/deploy.md, \"Watching the watcher\"."
  }
}

# (c) The poll job not running: one point per finished attempt of the poll job (whatever its
# outcome: a failing poll is (a)'s business), and an alert when none came for a while.
resource "google_logging_metric" "poll_attempts" {
  name        = local.poll_attempts_metric
  description = "Finished attempts of the poll Cloud Scheduler job."
  filter      = "resource.type=\"cloud_scheduler_job\" AND resource.labels.job_id=\"${var.name_prefix}-poll\" AND jsonPayload.\"@type\"=\"type.googleapis.com/google.cloud.scheduler.logging.AttemptFinished\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "poll_not_running" {
  display_name          = "rds2bq: the poll job has not run for ${var.poll_silence_minutes} min"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "No poll attempt in ${var.poll_silence_minutes} min"

    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.poll_attempts.name}\" AND resource.type=\"cloud_scheduler_job\""
      duration = "${var.poll_silence_minutes * 60}s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The rds2bq poll job has not run for ${var.poll_silence_minutes} minutes, so no export is followed and no transfer is started. See docs/deploy.md, \"Watching the watcher\"."
  }
}

# --- Outputs ------------------------------------------------------------------------------------

output "function_urls" {
  description = "URL of each deployed function (empty until functions_deployed = true)."
  value       = local.function_url
}

output "function_names" {
  description = "Function name per entry point, as cloudbuild.yaml deploys them."
  value       = { for k, f in local.functions : k => f.name }
}

output "service_accounts" {
  description = "Runtime service account email per function (cloudbuild.yaml --service-account)."
  value       = { for k, sa in google_service_account.function : k => sa.email }
}

output "aws_web_identity_service_account_ids" {
  description = "Numeric unique ids of the functions that assume the AWS orchestrator role: infra/aws google_service_account_ids (pinned as accounts.google.com:aud and :sub)."
  value       = [for f in local.aws_callers : google_service_account.function[f].unique_id]
}

output "deployer_service_account" {
  description = "Service account cloudbuild.yaml runs as (gcloud builds submit --service-account)."
  value       = google_service_account.deployer.email
}

output "transfer_service_account" {
  description = "Service account the DTS transfer configs run as (RDS2BQ_DTS_SERVICE_ACCOUNT)."
  value       = google_service_account.transfers.email
}

output "topic" {
  description = "Full topic path for DTS run notifications (RDS2BQ_TOPIC is its id)."
  value       = google_pubsub_topic.events.id
}
