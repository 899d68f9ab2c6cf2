# Inputs that must be refused before anything is planned (terraform test, mocked provider).

mock_provider "aws" {
  source = "./tests"
}

variables {
  https_allowed_cidrs = ["203.0.113.0/24"]
  dicom_allowed_cidrs = ["198.51.100.0/24"]
  # Any file stands in for the binary: only its existence and hash matter to a plan.
  orthweb_binary_path = "bootstrap/orthweb-bootstrap.sh"
}

run "defaults_plan" {
  command = plan

  assert {
    condition     = length(aws_subnet.private) == 2 && length(aws_subnet.public) == 2
    error_message = "Two zones by default."
  }
  assert {
    condition     = aws_autoscaling_group.server.desired_capacity == 2
    error_message = "Two servers by default."
  }
  assert {
    condition     = aws_db_instance.main.deletion_protection && !var.force_destroy
    error_message = "The database and the buckets are protected from destroy by default."
  }
}

run "three_zones" {
  command = plan

  variables {
    az_count           = 3
    nat_gateway_per_az = true
  }

  assert {
    condition     = length(aws_subnet.private) == 3 && length(aws_nat_gateway.main) == 3 && length(aws_route_table.private) == 3
    error_message = "Subnets, NAT gateways and private route tables follow az_count."
  }
  assert {
    condition     = length(distinct([for s in aws_subnet.private : s.cidr_block])) == 3
    error_message = "Private subnets must not overlap."
  }
}

run "without_interface_endpoints" {
  command = plan

  variables {
    interface_endpoints = false
  }

  assert {
    condition     = length(aws_vpc_endpoint.interface) == 0 && length(aws_security_group.endpoints) == 0
    error_message = "interface_endpoints = false leaves out the endpoints and their security group."
  }
}

run "one_zone_refused" {
  command = plan
  variables {
    az_count = 1
  }
  expect_failures = [var.az_count]
}

run "ipv6_or_garbage_cidr_refused" {
  command = plan
  variables {
    https_allowed_cidrs = ["::/0"]
    dicom_allowed_cidrs = ["10.0.0.0/33"]
  }
  expect_failures = [var.https_allowed_cidrs, var.dicom_allowed_cidrs]
}

run "binary_path_and_url_refused" {
  command = plan
  variables {
    orthweb_binary_url    = "https://example.org/orthweb"
    orthweb_binary_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
  }
  expect_failures = [var.orthweb_binary_url]
}

run "binary_url_needs_checksum" {
  command = plan
  variables {
    orthweb_binary_path = ""
    orthweb_binary_url  = "https://example.org/orthweb"
  }
  expect_failures = [var.orthweb_binary_sha256]
}

run "binary_url_plain_http_refused" {
  command = plan
  variables {
    orthweb_binary_path   = ""
    orthweb_binary_url    = "http://example.org/orthweb"
    orthweb_binary_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
  }
  expect_failures = [var.orthweb_binary_url]
}

run "missing_binary_refused" {
  command = plan
  variables {
    orthweb_binary_path = "no/such/orthweb"
  }
  expect_failures = [var.orthweb_binary_path]
}

run "certificate_without_key_refused" {
  command = plan
  variables {
    tls_cert_path = "bootstrap/orthweb-bootstrap.sh"
  }
  expect_failures = [var.tls_key_path]
}

run "bad_names_refused" {
  command = plan
  variables {
    name      = "Orthweb_Prod"
    s3_prefix = "tls"
    db_name   = "postgres"
    site_name = "not a name"
  }
  expect_failures = [var.name, var.s3_prefix, var.db_name, var.site_name]
}

run "bad_sizes_refused" {
  command = plan
  variables {
    vpc_cidr                 = "10.0.0.0/8"
    log_retention_days       = 10
    kms_deletion_window_days = 3
    db_backup_retention_days = 0
    instance_count           = 0
  }
  expect_failures = [var.vpc_cidr, var.log_retention_days, var.kms_deletion_window_days, var.db_backup_retention_days, var.instance_count]
}
