output "site_address" {
  description = "The web UI and REST API (HTTPS); DICOM TLS is on port 11112 of the same name (see dicom_address)."
  value       = "https://${local.site_name}/"
}

output "dicom_address" {
  description = "Where modalities send studies over DICOM TLS (AE title ORTHWEB)."
  value       = "${local.site_name}:11112"
}

output "host_info" {
  description = "The servers and how to reach a shell on one (Session Manager; there is no SSH)."
  value       = "${var.instance_count} server(s) in Auto Scaling group ${aws_autoscaling_group.server.name} (${local.region}). List them: aws autoscaling describe-auto-scaling-groups --region ${local.region} --auto-scaling-group-names ${aws_autoscaling_group.server.name} --query 'AutoScalingGroups[0].Instances[].InstanceId'. Shell on one: aws ssm start-session --region ${local.region} --target INSTANCE_ID. Logs: CloudWatch group ${aws_cloudwatch_log_group.server.name}."
}

output "s3_bucket" {
  description = "The bucket holding the DICOM files (under s3_prefix) and the deployed binary."
  value       = aws_s3_bucket.data.bucket
}

output "db_endpoint" {
  description = "The index database, host:port (private: reachable from the servers only)."
  value       = "${aws_db_instance.main.address}:${aws_db_instance.main.port}"
}

output "db_secret_arn" {
  description = "The Secrets Manager secret RDS keeps the database credentials in (rotated by RDS)."
  value       = aws_db_instance.main.master_user_secret[0].secret_arn
}
