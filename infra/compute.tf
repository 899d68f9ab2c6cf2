# The servers: an Auto Scaling group of var.instance_count Amazon Linux 2023 instances over the
# private subnets, each running the orthweb binary under systemd, set up at first boot by
# bootstrap/orthweb-bootstrap.sh (the user data). No SSH: administration goes through Session
# Manager. The instance role may read and write its own bucket prefix, read its own secret, use
# its own key and write its own log group, and nothing else.

data "aws_ssm_parameter" "ami" {
  name = var.ami_ssm_parameter
}

resource "aws_cloudwatch_log_group" "server" {
  name              = "/${var.name}/server"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

locals {
  # The bootstrap's inputs, written as a shell-quoted KEY='value' file by the user data. Every
  # value is an AWS-made name or a validated variable: none holds a quote.
  bootstrap_inputs = {
    ORTHWEB_REGION        = local.region
    ORTHWEB_BUCKET        = aws_s3_bucket.data.bucket
    ORTHWEB_PREFIX        = var.s3_prefix
    ORTHWEB_KMS_KEY_ARN   = aws_kms_key.main.arn
    ORTHWEB_DB_HOST       = aws_db_instance.main.address
    ORTHWEB_DB_PORT       = tostring(aws_db_instance.main.port)
    ORTHWEB_DB_NAME       = var.db_name
    ORTHWEB_DB_USER       = var.db_username
    ORTHWEB_DB_SECRET_ARN = aws_db_instance.main.master_user_secret[0].secret_arn
    ORTHWEB_SITE_NAME     = local.site_name
    ORTHWEB_BINARY_S3_KEY = local.binary_s3_key
    ORTHWEB_BINARY_URL    = var.orthweb_binary_url
    ORTHWEB_BINARY_SHA256 = local.binary_sha256
    ORTHWEB_TLS_SOURCE    = local.tls_provided ? "provided" : "shared-self-signed"
    # A new certificate is new user data too: the servers are replaced and pick it up.
    ORTHWEB_TLS_CERT_SHA256 = local.tls_provided ? filesha256(var.tls_cert_path) : ""
    ORTHWEB_LOG_GROUP       = aws_cloudwatch_log_group.server.name
    ORTHWEB_RDS_CA_URL      = "https://truststore.pki.rds.amazonaws.com/${local.region}/${local.region}-bundle.pem"
  }

  user_data = templatefile("${path.module}/bootstrap/user-data.sh.tftpl", {
    inputs    = local.bootstrap_inputs
    bootstrap = file("${path.module}/bootstrap/orthweb-bootstrap.sh")
  })
}

resource "aws_launch_template" "server" {
  name_prefix            = "${var.name}-"
  description            = "Orthweb server: Amazon Linux 2023, bootstrap in user data"
  image_id               = nonsensitive(data.aws_ssm_parameter.ami.value)
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.server.id]
  user_data              = base64encode(local.user_data)
  update_default_version = true
  ebs_optimized          = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.server.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  # The root volume holds the spool of instances being received: encrypted (with the account's
  # EBS key, which the Auto Scaling service may use without a key-policy grant).
  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-server" }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = { Name = "${var.name}-server" }
  }
}

resource "aws_autoscaling_group" "server" {
  name                      = "${var.name}-servers"
  min_size                  = var.instance_count
  max_size                  = var.instance_count
  desired_capacity          = var.instance_count
  vpc_zone_identifier       = aws_subnet.private[*].id
  target_group_arns         = [aws_lb_target_group.https.arn, aws_lb_target_group.dicom.arn]
  health_check_type         = "ELB"
  health_check_grace_period = 600
  wait_for_capacity_timeout = "15m"

  launch_template {
    id      = aws_launch_template.server.id
    version = aws_launch_template.server.latest_version
  }

  # A new binary or configuration is a new template version: servers are replaced one at a
  # time, each new one healthy on /readyz before the next old one goes.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
      instance_warmup        = 300
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-server"
    propagate_at_launch = true
  }

  # Secrets Manager must be reachable before the first server asks it for the credentials.
  depends_on = [aws_vpc_endpoint.interface, aws_route_table_association.private, aws_s3_object.binary]
}

# --- Security group ---------------------------------------------------------------------------

resource "aws_security_group" "server" {
  name        = "${var.name}-server"
  description = "Orthweb servers: HTTPS and DICOM TLS from the load balancer only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-server" }
}

resource "aws_vpc_security_group_ingress_rule" "server_from_nlb" {
  for_each = toset(["443", "11112"])

  security_group_id            = aws_security_group.server.id
  description                  = "Port ${each.key} from the load balancer (clients and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = aws_security_group.nlb.id
}

resource "aws_vpc_security_group_egress_rule" "server_https" {
  security_group_id = aws_security_group.server.id
  description       = "HTTPS: AWS APIs (endpoints, S3), packages and the RDS CA bundle at boot"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "server_db" {
  security_group_id            = aws_security_group.server.id
  description                  = "PostgreSQL (the index)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

# --- Instance role ----------------------------------------------------------------------------

resource "aws_iam_role" "server" {
  name = "${var.name}-server"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_instance_profile" "server" {
  name = "${var.name}-server"
  role = aws_iam_role.server.name
}

# Session Manager (the shell without SSH) needs the agent's managed policy.
resource "aws_iam_role_policy_attachment" "server_ssm" {
  role       = aws_iam_role.server.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "server" {
  name = "orthweb-server"
  role = aws_iam_role.server.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "DicomFiles"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
        Resource = "${aws_s3_bucket.data.arn}/${var.s3_prefix}/*"
      },
      {
        # HeadBucket (the readiness check) carries no prefix; listings must stay in ours.
        Sid       = "ListOwnPrefix"
        Effect    = "Allow"
        Action    = "s3:ListBucket"
        Resource  = aws_s3_bucket.data.arn
        Condition = { StringLikeIfExists = { "s3:prefix" = ["${var.s3_prefix}/*"] } }
      },
      {
        Sid      = "ReleaseAndCertificate"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = ["${aws_s3_bucket.data.arn}/release/*", "${aws_s3_bucket.data.arn}/tls/*"]
      },
      {
        # The first server to boot publishes the shared self-signed certificate.
        Sid      = "SharedSelfSignedCertificate"
        Effect   = "Allow"
        Action   = "s3:PutObject"
        Resource = "${aws_s3_bucket.data.arn}/tls/self-signed/*"
      },
      {
        Sid      = "DatabaseCredentials"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
        Resource = aws_db_instance.main.master_user_secret[0].secret_arn
      },
      {
        Sid      = "DeploymentKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.main.arn
      },
      {
        Sid      = "ServerLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = ["${aws_cloudwatch_log_group.server.arn}:*"]
      },
    ]
  })
}
