# The index: RDS PostgreSQL in the private subnets, encrypted with the deployment's key, TLS
# required (rds.force_ssl), reachable only from the servers. Its master password is generated,
# kept and rotated by RDS in Secrets Manager (manage_master_user_password): Terraform never sees
# it, so it is in no state file; the servers read the secret with their instance role.

resource "aws_db_subnet_group" "main" {
  name       = var.name
  subnet_ids = aws_subnet.private[*].id

  tags = { Name = var.name }
}

resource "aws_db_parameter_group" "main" {
  name_prefix = "${var.name}-pg${var.db_engine_version}-"
  family      = "postgres${var.db_engine_version}"
  description = "${var.name}: TLS required, slow statements and connections logged"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "2000"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "main" {
  #checkov:skip=CKV_AWS_157: Multi-AZ is the db_multi_az switch, off by default to halve the cost and creation time of a first deployment; infra/README.md asks production sites to turn it on.
  #checkov:skip=CKV_AWS_161: The servers authenticate with the RDS-managed, rotated secret from Secrets Manager rather than IAM tokens (see infra/README.md, "Why Secrets Manager").
  #checkov:skip=CKV_AWS_118: Enhanced monitoring needs one more role and costs extra; CloudWatch's standard RDS metrics and the exported PostgreSQL log cover a first deployment.
  #checkov:skip=CKV_AWS_353: Performance Insights is a switch (db_performance_insights), off by default: not every small instance class offers it.
  #checkov:skip=CKV_AWS_354: Performance Insights, when switched on, is encrypted with the deployment's key (performance_insights_kms_key_id).
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  db_name                       = var.db_name
  username                      = var.db_username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.main.key_id

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.main.arn

  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az
  parameter_group_name   = aws_db_parameter_group.main.name
  # The server certificate comes from RDS's default CA (rds-ca-rsa2048-g1 for new instances);
  # the servers trust the region's whole RDS bundle, so a CA rotation needs nothing here.

  backup_retention_period         = var.db_backup_retention_days
  backup_window                   = "03:00-04:00"
  maintenance_window              = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot           = true
  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  performance_insights_enabled    = var.db_performance_insights
  performance_insights_kms_key_id = var.db_performance_insights ? aws_kms_key.main.arn : null

  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
  final_snapshot_identifier = var.db_skip_final_snapshot ? null : "${var.name}-final"

  apply_immediately = false

  tags = { Name = var.name }

  depends_on = [aws_cloudwatch_log_group.db]
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "PostgreSQL: only from the Orthweb servers"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-db" }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_servers" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the Orthweb servers"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.server.id
}

# The PostgreSQL logs RDS exports, in groups made here so that they are encrypted and expire.
resource "aws_cloudwatch_log_group" "db" {
  for_each = toset(["postgresql", "upgrade"])

  name              = "/aws/rds/instance/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}
