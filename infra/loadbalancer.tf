# The front door: a Network Load Balancer in the public subnets passing TCP 443 (HTTPS) and
# 11112 (DICOM TLS) through to the servers, which terminate TLS themselves. Client addresses are
# preserved (the servers' DICOM peer rules and audit trail see them). Its security group is the
# only place the outside world is let in, each port from its own address list.

resource "aws_lb" "main" {
  #checkov:skip=CKV_AWS_91: NLB access logs exist only for TLS listeners; ours pass TCP through (TLS ends on the servers, which log every request and association).
  name                             = var.name
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = aws_subnet.public[*].id
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.deletion_protection

  tags = { Name = var.name }
}

resource "aws_lb_target_group" "https" {
  name                 = "${var.name}-https"
  port                 = 443
  protocol             = "TCP"
  vpc_id               = aws_vpc.main.id
  target_type          = "instance"
  deregistration_delay = 30

  health_check {
    protocol            = "HTTPS"
    port                = "443"
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_target_group" "dicom" {
  name                 = "${var.name}-dicom"
  port                 = 11112
  protocol             = "TCP"
  vpc_id               = aws_vpc.main.id
  target_type          = "instance"
  deregistration_delay = 60

  # A server is ready for DICOM when it is ready at all: the same /readyz on its HTTPS port.
  health_check {
    protocol            = "HTTPS"
    port                = "443"
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.https.arn
  }
}

resource "aws_lb_listener" "dicom" {
  load_balancer_arn = aws_lb.main.arn
  port              = 11112
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.dicom.arn
  }
}

resource "aws_security_group" "nlb" {
  name        = "${var.name}-nlb"
  description = "Load balancer: HTTPS and DICOM TLS from the allowed client ranges"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-nlb" }
}

resource "aws_vpc_security_group_ingress_rule" "nlb_https" {
  for_each = toset(var.https_allowed_cidrs)

  security_group_id = aws_security_group.nlb.id
  description       = "HTTPS (web UI, REST API) from ${each.key}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_vpc_security_group_ingress_rule" "nlb_dicom" {
  for_each = toset(var.dicom_allowed_cidrs)

  security_group_id = aws_security_group.nlb.id
  description       = "DICOM TLS from ${each.key}"
  ip_protocol       = "tcp"
  from_port         = 11112
  to_port           = 11112
  cidr_ipv4         = each.key
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_servers" {
  for_each = toset(["443", "11112"])

  security_group_id            = aws_security_group.nlb.id
  description                  = "To the servers on ${each.key} (traffic and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = aws_security_group.server.id
}
