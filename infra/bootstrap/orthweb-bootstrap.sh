#!/bin/bash
# Orthweb server bootstrap: turns a fresh Amazon Linux 2023 instance into an Orthweb server.
#
#   orthweb-bootstrap INPUTS_FILE
#
# INPUTS_FILE holds KEY='value' lines (the user data writes it from Terraform; see "Inputs"
# below). The script installs the orthweb binary, a service user, the configuration, the RDS CA
# bundle, the site certificate, a hardened systemd unit, log shipping to CloudWatch, creates the
# first admin (with a password nobody knows: set one with `orthweb-admin user passwd admin`),
# then starts the server and waits until it is ready. It is safe to run again.
#
# Testing outside EC2: every file goes under $ROOT (default /), and the outside world is reached
# only through commands found on PATH (aws, curl, dnf, systemctl, useradd, chown, runuser,
# amazon-cloudwatch-agent-ctl), so a test sets ROOT to a temporary folder and puts stand-ins
# first on PATH. The configuration refers to its files under $ROOT too; the systemd unit and the
# CloudWatch agent configuration name the real paths, as they would be read on the instance.
set -euo pipefail
umask 022

ROOT=${ROOT:-}
ROOT=${ROOT%/}
inputs=${1:-$ROOT/etc/orthweb/bootstrap.env}

log() { printf 'orthweb-bootstrap: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ -r "$inputs" ] || die "cannot read the inputs file $inputs"
# shellcheck source=/dev/null
. "$inputs"

# --- Inputs -----------------------------------------------------------------------------------
: "${ORTHWEB_REGION:?AWS region}"
: "${ORTHWEB_BUCKET:?bucket of the DICOM files and the binary}"
: "${ORTHWEB_PREFIX:?folder of the DICOM files in the bucket}"
: "${ORTHWEB_KMS_KEY_ARN:?KMS key for the DICOM files}"
: "${ORTHWEB_DB_HOST:?database host}"
: "${ORTHWEB_DB_PORT:=5432}"
: "${ORTHWEB_DB_NAME:?database name}"
: "${ORTHWEB_DB_USER:?database user}"
: "${ORTHWEB_DB_SECRET_ARN:?Secrets Manager secret of the database credentials}"
: "${ORTHWEB_SITE_NAME:?DNS name of the site}"
: "${ORTHWEB_BINARY_SHA256:?SHA-256 of the orthweb binary}"
: "${ORTHWEB_BINARY_S3_KEY:=}"       # the binary in the bucket, or
: "${ORTHWEB_BINARY_URL:=}"          # an HTTPS URL to download it from
: "${ORTHWEB_TLS_SOURCE:=shared-self-signed}" # or "provided" (tls/provided/site.{crt,key})
: "${ORTHWEB_TLS_CERT_SHA256:=}"     # with "provided": the SHA-256 of site.crt
: "${ORTHWEB_LOG_GROUP:=}"           # CloudWatch log group; empty: logs stay on the instance
: "${ORTHWEB_RDS_CA_URL:=https://truststore.pki.rds.amazonaws.com/$ORTHWEB_REGION/$ORTHWEB_REGION-bundle.pem}"
: "${ORTHWEB_READY_TIMEOUT:=300}"    # seconds to wait for /readyz; 0: do not wait
: "${ORTHWEB_USER:=orthweb}"

# Real paths on the instance, and where this run writes them.
bin_path=/usr/local/bin/orthweb
etc_dir=/etc/orthweb
config_path=$etc_dir/orthweb.toml
data_dir=/var/lib/orthweb
log_dir=/var/log/orthweb
unit_path=/etc/systemd/system/orthweb.service
cw_config=/opt/aws/amazon-cloudwatch-agent/etc/orthweb.json

export AWS_REGION=$ORTHWEB_REGION AWS_DEFAULT_REGION=$ORTHWEB_REGION
PATH=$PATH:/opt/aws/amazon-cloudwatch-agent/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

install -d -m 0755 "$ROOT$etc_dir" "$ROOT/usr/local/bin" "$ROOT/usr/local/sbin" \
  "$ROOT/etc/systemd/system" "$ROOT/etc/logrotate.d"

# --- Service user and folders -----------------------------------------------------------------
if ! getent passwd "$ORTHWEB_USER" >/dev/null; then
  log "creating the service user $ORTHWEB_USER"
  useradd --system --user-group --home-dir "$data_dir" --no-create-home \
    --shell /sbin/nologin "$ORTHWEB_USER"
fi
install -d -m 0750 "$ROOT$data_dir" "$ROOT$log_dir"
chown "$ORTHWEB_USER:$ORTHWEB_USER" "$ROOT$data_dir" "$ROOT$log_dir"
install -d -m 0750 "$ROOT$etc_dir/tls"
chown "root:$ORTHWEB_USER" "$ROOT$etc_dir" "$ROOT$etc_dir/tls"
chmod 0750 "$ROOT$etc_dir"

# --- Packages ---------------------------------------------------------------------------------
if [ -n "$ORTHWEB_LOG_GROUP" ]; then
  log "installing the CloudWatch agent"
  dnf install -y -q amazon-cloudwatch-agent logrotate
fi

# --- The binary -------------------------------------------------------------------------------
if [ -n "$ORTHWEB_BINARY_S3_KEY" ]; then
  log "fetching s3://$ORTHWEB_BUCKET/$ORTHWEB_BINARY_S3_KEY"
  aws s3 cp --only-show-errors "s3://$ORTHWEB_BUCKET/$ORTHWEB_BINARY_S3_KEY" "$work/orthweb"
elif [ -n "$ORTHWEB_BINARY_URL" ]; then
  log "downloading $ORTHWEB_BINARY_URL"
  curl -fsSL --proto '=https' --retry 5 --retry-connrefused -o "$work/orthweb" "$ORTHWEB_BINARY_URL"
else
  die "neither ORTHWEB_BINARY_S3_KEY nor ORTHWEB_BINARY_URL is set"
fi
actual=$(sha256sum "$work/orthweb" | cut -d' ' -f1)
[ "$actual" = "$ORTHWEB_BINARY_SHA256" ] ||
  die "the binary's SHA-256 is $actual, expected $ORTHWEB_BINARY_SHA256"
install -m 0755 "$work/orthweb" "$ROOT$bin_path"
version=$("$ROOT$bin_path" --version) || die "the binary does not run here (built for a newer glibc?)"
log "installed $version"

# --- The RDS certificate authorities ----------------------------------------------------------
log "fetching the RDS CA bundle from $ORTHWEB_RDS_CA_URL"
curl -fsSL --proto '=https' --retry 5 --retry-connrefused -o "$work/rds-ca.pem" "$ORTHWEB_RDS_CA_URL"
grep -q 'BEGIN CERTIFICATE' "$work/rds-ca.pem" || die "the RDS CA bundle holds no certificate"
install -m 0644 "$work/rds-ca.pem" "$ROOT$etc_dir/rds-ca.pem"

# --- The site certificate ---------------------------------------------------------------------
# Every server must present the same certificate (clients trust one file). A provided one comes
# from the bucket; otherwise the first server to boot makes a self-signed one and publishes it
# with a conditional write, and every other server takes the published one.
tls_dir=$ROOT$etc_dir/tls
case "$ORTHWEB_TLS_SOURCE" in
provided)
  aws s3 cp --only-show-errors "s3://$ORTHWEB_BUCKET/tls/provided/site.crt" "$work/site.crt"
  aws s3 cp --only-show-errors "s3://$ORTHWEB_BUCKET/tls/provided/site.key" "$work/site.key"
  if [ -n "$ORTHWEB_TLS_CERT_SHA256" ]; then
    actual=$(sha256sum "$work/site.crt" | cut -d' ' -f1)
    [ "$actual" = "$ORTHWEB_TLS_CERT_SHA256" ] ||
      die "the certificate in the bucket is not the one Terraform uploaded (SHA-256 $actual)"
  fi
  ;;
shared-self-signed)
  shared="tls/self-signed/$ORTHWEB_SITE_NAME.pem"
  if ! aws s3 cp --only-show-errors "s3://$ORTHWEB_BUCKET/$shared" "$work/shared.pem" 2>/dev/null; then
    log "making a self-signed certificate for $ORTHWEB_SITE_NAME"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$ORTHWEB_SITE_NAME" \
      -addext "subjectAltName=DNS:$ORTHWEB_SITE_NAME" \
      -keyout "$work/new.key" -out "$work/new.crt" 2>/dev/null
    cat "$work/new.crt" "$work/new.key" >"$work/new.pem"
    if aws s3api put-object --bucket "$ORTHWEB_BUCKET" --key "$shared" --body "$work/new.pem" \
      --if-none-match '*' >/dev/null 2>"$work/put.err"; then
      log "published it as s3://$ORTHWEB_BUCKET/$shared"
    elif grep -qi 'unknown options' "$work/put.err"; then
      # An AWS CLI without conditional writes: publish unless another server just did.
      log "this AWS CLI has no conditional writes; publishing without one"
      aws s3api head-object --bucket "$ORTHWEB_BUCKET" --key "$shared" >/dev/null 2>&1 ||
        aws s3 cp --only-show-errors "$work/new.pem" "s3://$ORTHWEB_BUCKET/$shared"
    else
      log "another server published one first: $(tr '\n' ' ' <"$work/put.err")"
    fi
    aws s3 cp --only-show-errors "s3://$ORTHWEB_BUCKET/$shared" "$work/shared.pem"
  fi
  openssl x509 -in "$work/shared.pem" -out "$work/site.crt"
  openssl pkey -in "$work/shared.pem" -out "$work/site.key"
  ;;
*) die "ORTHWEB_TLS_SOURCE must be provided or shared-self-signed, not $ORTHWEB_TLS_SOURCE" ;;
esac
install -m 0644 "$work/site.crt" "$tls_dir/site.crt"
install -m 0640 "$work/site.key" "$tls_dir/site.key"
chown "root:$ORTHWEB_USER" "$tls_dir/site.key"

# --- Configuration ----------------------------------------------------------------------------
# No password anywhere: the server reads the credentials from the RDS-managed secret
# (index_secret) with the instance role, and again after a rotation.
cat >"$work/orthweb.toml" <<EOF
# Written by orthweb-bootstrap; every key is described in orthweb.sample.toml.
data_dir = "$ROOT$data_dir"
index_url = "postgres://$ORTHWEB_DB_USER@$ORTHWEB_DB_HOST:$ORTHWEB_DB_PORT/$ORTHWEB_DB_NAME?sslmode=verify-full&sslrootcert=$ROOT$etc_dir/rds-ca.pem"
index_secret = "$ORTHWEB_DB_SECRET_ARN"
storage_url = "s3://$ORTHWEB_BUCKET/$ORTHWEB_PREFIX"
s3_sse = "aws:kms"
s3_kms_key_id = "$ORTHWEB_KMS_KEY_ARN"
https = true
http_listen = "0.0.0.0:443"
site_name = "$ORTHWEB_SITE_NAME"
tls_cert_file = "$tls_dir/site.crt"
tls_key_file = "$tls_dir/site.key"
dicom_plain = false
dicom_tls = true
dicom_tls_listen = "0.0.0.0:11112"
log_format = "json"
EOF
install -m 0640 "$work/orthweb.toml" "$ROOT$config_path"
chown "root:$ORTHWEB_USER" "$ROOT$config_path"

# --- The systemd unit -------------------------------------------------------------------------
cat >"$ROOT$unit_path" <<EOF
# Written by orthweb-bootstrap.
[Unit]
Description=Orthweb DICOM archive
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=$ORTHWEB_USER
Group=$ORTHWEB_USER
Environment=AWS_REGION=$ORTHWEB_REGION
ExecStart=$bin_path serve --config $config_path
ExecReload=/bin/kill -HUP \$MAINPID
Restart=on-failure
RestartSec=5
TimeoutStopSec=60
LimitNOFILE=65536
UMask=0027
StandardOutput=append:$log_dir/orthweb.log
StandardError=append:$log_dir/orthweb.log

# Ports 443 and 11112 without root; nothing else is granted.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$data_dir
StateDirectory=orthweb
StateDirectoryMode=0750
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
EOF
chmod 0644 "$ROOT$unit_path"

# The administrator's entry point: orthweb's commands as the service user, with its settings.
cat >"$ROOT/usr/local/sbin/orthweb-admin" <<EOF
#!/bin/sh
# Written by orthweb-bootstrap. Example: sudo orthweb-admin user add alice --role admin
exec runuser -u $ORTHWEB_USER -- env AWS_REGION=$ORTHWEB_REGION ORTHWEB_CONFIG=$config_path $bin_path "\$@"
EOF
chmod 0755 "$ROOT/usr/local/sbin/orthweb-admin"

# --- Logs -------------------------------------------------------------------------------------
cat >"$ROOT/etc/logrotate.d/orthweb" <<EOF
$log_dir/orthweb.log {
    daily
    rotate 7
    compress
    missingok
    notifempty
    copytruncate
}
EOF
if [ -n "$ORTHWEB_LOG_GROUP" ]; then
  install -d -m 0755 "$ROOT$(dirname "$cw_config")"
  # The server never logs a password; the exclusion keeps out the one line that would carry
  # one (a first admin made by the server itself, printed on standard error).
  cat >"$ROOT$cw_config" <<EOF
{
  "logs": {
    "logs_collected": {
      "files": {
        "collect_list": [
          {
            "file_path": "$log_dir/orthweb.log",
            "log_group_name": "$ORTHWEB_LOG_GROUP",
            "log_stream_name": "{instance_id}",
            "filters": [{ "type": "exclude", "expression": "with password: " }]
          },
          {
            "file_path": "/var/log/orthweb-bootstrap.log",
            "log_group_name": "$ORTHWEB_LOG_GROUP",
            "log_stream_name": "{instance_id}-bootstrap"
          }
        ]
      }
    }
  }
}
EOF
  amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c "file:$cw_config"
fi

# --- First admin ------------------------------------------------------------------------------
# With no user in the index, the server would make user admin itself and print its password on
# standard error, which here goes to a log file. Made here instead, its password is random and
# shown to nobody: an administrator sets one through Session Manager.
admin() { runuser -u "$ORTHWEB_USER" -- env AWS_REGION="$ORTHWEB_REGION" "$bin_path" --config "$config_path" "$@"; }
if users=$(admin user list); then
  if [ "$(printf '%s\n' "$users" | awk 'NR > 1 && NF > 0' | wc -l)" -eq 0 ]; then
    log "creating user admin (password unknown; set it with: sudo orthweb-admin user passwd admin)"
    openssl rand -base64 32 | admin user add admin --role admin --password-file /dev/stdin ||
      log "user admin was not created (another server may have just made it)"
  fi
else
  log "warning: could not list the users; the server will create admin itself and log its password"
fi

# --- Start ------------------------------------------------------------------------------------
systemctl daemon-reload
systemctl enable orthweb.service
systemctl restart orthweb.service
if [ "$ORTHWEB_READY_TIMEOUT" -gt 0 ]; then
  deadline=$((SECONDS + ORTHWEB_READY_TIMEOUT))
  until curl -fsk --max-time 5 -o /dev/null https://127.0.0.1/readyz; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$ROOT$log_dir/orthweb.log" >&2 || true
      die "the server is not ready after ${ORTHWEB_READY_TIMEOUT}s"
    fi
    sleep 3
  done
fi
log "done: $version serving https://$ORTHWEB_SITE_NAME/ and DICOM TLS on port 11112"
