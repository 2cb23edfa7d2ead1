data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  rds_arn    = "arn:${local.partition}:rds:${var.region}:${local.account_id}"

  bucket_arn = "arn:${local.partition}:s3:::${var.bucket_name}"
  # Everything rds2bq writes or reads lives under this prefix; the '/' keeps a sibling prefix
  # such as "rds2bq-old/" out of every grant.
  prefix_objects_arn = "${local.bucket_arn}/${var.s3_prefix}/*"
  # Export metadata at each export's root: export_info_ID.json, export_tables_info_ID_from_N_to_M.json.
  metadata_objects_arn = "${local.bucket_arn}/${var.s3_prefix}/*/export_*info_*.json"
  # The exported tables' data files, in every batch folder (part-*.parquet, part-*.gz.parquet).
  parquet_objects_arn = "${local.bucket_arn}/${var.s3_prefix}/*.parquet"

  # What the orchestrator may export and look up, per source kind: only the named source and its
  # own automated snapshots (named rds:<source id>-<date>, hence "rds:<id>-*"). The Service
  # Authorization Reference gives StartExportTask and these Describe actions resource types
  # (cluster, cluster-snapshot, snapshot, db), so none of them needs "*". With a live cluster, a
  # rerun of a past day exports that day's automated cluster snapshot: hence the snapshots too.
  cluster_snapshots = "${local.rds_arn}:cluster-snapshot:rds:${var.source_id}-*"
  source = {
    cluster = {
      export    = ["${local.rds_arn}:cluster:${var.source_id}", local.cluster_snapshots]
      describe  = ["rds:DescribeDBClusters", "rds:DescribeDBClusterSnapshots"]
      described = ["${local.rds_arn}:cluster:${var.source_id}", local.cluster_snapshots]
    }
    cluster-snapshot = {
      export    = [local.cluster_snapshots]
      describe  = ["rds:DescribeDBClusters", "rds:DescribeDBClusterSnapshots"]
      described = ["${local.rds_arn}:cluster:${var.source_id}", local.cluster_snapshots]
    }
    db-snapshot = {
      export    = ["${local.rds_arn}:snapshot:rds:${var.source_id}-*"]
      describe  = ["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"]
      described = ["${local.rds_arn}:db:${var.source_id}", "${local.rds_arn}:snapshot:rds:${var.source_id}-*"]
    }
  }[var.source_kind]

  # KMS requests that S3 makes on behalf of a principal reading or writing the bucket.
  via_s3  = "s3.${var.region}.amazonaws.com"
  via_rds = "rds.${var.region}.amazonaws.com"

  kms_admins = length(var.kms_admin_arns) > 0 ? var.kms_admin_arns : ["arn:${local.partition}:iam::${local.account_id}:root"]
}
