"""rds2bq: land Amazon RDS / Aurora exports in BigQuery every day, with one orchestrator."""
