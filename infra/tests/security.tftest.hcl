# Security properties that need no AWS API (terraform test, mocked provider): what is open to
# whom, IMDSv2, encryption, no password anywhere, least privilege.

mock_provider "aws" {
  source = "./tests"
}

variables {
  https_allowed_cidrs = ["0.0.0.0/0"]
  dicom_allowed_cidrs = ["198.51.100.0/24", "203.0.113.7/32"]
  orthweb_binary_path = "bootstrap/orthweb-bootstrap.sh"
}

run "only_443_and_11112_reach_the_servers" {
  command = plan

  assert {
    condition     = alltrue([for r in aws_vpc_security_group_ingress_rule.nlb_https : r.from_port == 443 && r.to_port == 443 && r.ip_protocol == "tcp"])
    error_message = "The load balancer's HTTPS rules open port 443 only."
  }
  assert {
    condition     = alltrue([for r in aws_vpc_security_group_ingress_rule.nlb_dicom : r.from_port == 11112 && r.to_port == 11112 && r.ip_protocol == "tcp"])
    error_message = "The load balancer's DICOM rules open port 11112 only."
  }
  assert {
    condition     = toset([for r in aws_vpc_security_group_ingress_rule.nlb_https : r.cidr_ipv4]) == toset(var.https_allowed_cidrs)
    error_message = "HTTPS is open to https_allowed_cidrs, and to nothing else."
  }
  assert {
    condition     = toset([for r in aws_vpc_security_group_ingress_rule.nlb_dicom : r.cidr_ipv4]) == toset(var.dicom_allowed_cidrs)
    error_message = "DICOM is open to dicom_allowed_cidrs, and to nothing else."
  }
  assert {
    condition     = toset([for r in aws_vpc_security_group_ingress_rule.server_from_nlb : r.from_port]) == toset([443, 11112]) && alltrue([for r in aws_vpc_security_group_ingress_rule.server_from_nlb : r.cidr_ipv4 == null && r.from_port == r.to_port])
    error_message = "The servers take 443 and 11112 from the load balancer's group only."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.db_from_servers.from_port == 5432 && aws_vpc_security_group_ingress_rule.db_from_servers.cidr_ipv4 == null
    error_message = "The database takes 5432 from the servers' group only."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.endpoints_https[0].from_port == 443 && aws_vpc_security_group_ingress_rule.endpoints_https[0].cidr_ipv4 == var.vpc_cidr
    error_message = "The interface endpoints take HTTPS from the VPC only."
  }
  assert {
    condition     = length(aws_default_security_group.default.ingress) == 0 && length(aws_default_security_group.default.egress) == 0
    error_message = "The default security group allows nothing."
  }
}

run "servers_are_locked_down" {
  command = plan

  assert {
    condition     = aws_launch_template.server.metadata_options[0].http_tokens == "required" && aws_launch_template.server.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "IMDSv2 only, one hop."
  }
  assert {
    condition     = alltrue([for b in aws_launch_template.server.block_device_mappings : b.ebs[0].encrypted == "true"])
    error_message = "Every volume is encrypted."
  }
  assert {
    condition     = length(aws_launch_template.server.network_interfaces) == 0 && aws_launch_template.server.key_name == null
    error_message = "No SSH key, no public address: administration goes through Session Manager."
  }
  assert {
    condition     = alltrue([for s in aws_subnet.public : !s.map_public_ip_on_launch])
    error_message = "Nothing gets a public address by accident."
  }
  assert {
    condition     = aws_lb_target_group.https.health_check[0].path == "/readyz" && aws_lb_target_group.dicom.health_check[0].path == "/readyz" && aws_lb_target_group.dicom.health_check[0].port == "443"
    error_message = "Both target groups check /readyz over HTTPS."
  }
}

run "data_is_encrypted_and_private" {
  command = apply

  assert {
    condition     = aws_db_instance.main.storage_encrypted && aws_db_instance.main.manage_master_user_password && !aws_db_instance.main.publicly_accessible
    error_message = "The database is encrypted, private, and its password is managed by RDS."
  }
  assert {
    condition     = aws_db_instance.main.password == null
    error_message = "Terraform never sets the database password."
  }
  assert {
    condition     = contains([for p in aws_db_parameter_group.main.parameter : "${p.name}=${p.value}"], "rds.force_ssl=1")
    error_message = "The database refuses connections without TLS."
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.data.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms" && one(one(aws_s3_bucket_server_side_encryption_configuration.data.rule).apply_server_side_encryption_by_default).kms_master_key_id == aws_kms_key.main.arn
    error_message = "DICOM files are encrypted with the deployment's key."
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.logs.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
    error_message = "The access-log bucket uses SSE-S3, the only encryption S3 access logging delivers to."
  }
  assert {
    condition     = aws_kms_key.main.enable_key_rotation
    error_message = "The key rotates."
  }
  assert {
    condition     = alltrue([for b in [aws_s3_bucket_public_access_block.data, aws_s3_bucket_public_access_block.logs] : b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets])
    error_message = "Both buckets block every form of public access."
  }
  assert {
    condition     = aws_s3_bucket_versioning.data.versioning_configuration[0].status == "Enabled"
    error_message = "The DICOM bucket is versioned."
  }
  assert {
    condition     = alltrue([for p in [aws_s3_bucket_policy.data.policy, aws_s3_bucket_policy.logs.policy] : anytrue([for s in jsondecode(p).Statement : s.Effect == "Deny" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"])])
    error_message = "Both buckets refuse requests without TLS."
  }
  assert {
    condition     = alltrue([for c in [aws_cloudwatch_log_group.server, aws_cloudwatch_log_group.flow_logs] : c.kms_key_id == aws_kms_key.main.arn])
    error_message = "Logs are encrypted with the deployment's key."
  }
}

run "no_password_in_user_data" {
  command = apply

  assert {
    condition     = strcontains(base64decode(aws_launch_template.server.user_data), "ORTHWEB_DB_SECRET_ARN='${aws_db_instance.main.master_user_secret[0].secret_arn}'")
    error_message = "The servers are told the secret's ARN."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.server.user_data), "index_secret = \"$ORTHWEB_DB_SECRET_ARN\"")
    error_message = "The bootstrap hands the secret to the server as index_secret."
  }
  assert {
    condition     = !can(regex("(?i)(index_password|PGPASSWORD|ORTHWEB_INDEX_PASSWORD)", base64decode(aws_launch_template.server.user_data)))
    error_message = "No password setting in the user data."
  }
  assert {
    condition     = length(base64decode(aws_launch_template.server.user_data)) < 16384
    error_message = "User data must stay under EC2's 16 KiB."
  }
}

run "instance_role_is_scoped" {
  command = apply

  assert {
    condition     = alltrue([for s in jsondecode(aws_iam_role_policy.server.policy).Statement : alltrue([for r in flatten([s.Resource]) : r != "*" && !endswith(r, ":::*")])])
    error_message = "Every permission of the servers names its resources."
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.server.policy).Statement : s.Resource if s.Sid == "DatabaseCredentials"]) == aws_db_instance.main.master_user_secret[0].secret_arn
    error_message = "The servers may read their database secret and no other."
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.server.policy).Statement : s.Resource if s.Sid == "DicomFiles"]) == "${aws_s3_bucket.data.arn}/${var.s3_prefix}/*"
    error_message = "The servers write DICOM files under their prefix only."
  }
  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["secretsmanager", "ssm", "ssmmessages", "ec2messages", "logs"])
    error_message = "Secrets Manager, Session Manager and CloudWatch Logs are reached through interface endpoints."
  }
}

run "outputs_are_set" {
  command = apply

  assert {
    condition     = startswith(output.site_address, "https://") && output.s3_bucket != "" && output.db_endpoint != "" && output.host_info != ""
    error_message = "The four outputs are set."
  }
}
