"""The client of bench/dicomweb: times what a DICOMweb viewer asks, on one keep-alive HTTP
connection, and prints the figures as JSON.

Usage: dicomweb_client.py BASE_URL STUDY_UID SERIES_UID QIDO_PATIENT_ID [REQUESTS]
  BASE_URL          http://127.0.0.1:PORT/dicom-web
  STUDY_UID, SERIES_UID   the big series whose metadata and frames are read
  QIDO_PATIENT_ID   a PatientID of the corpus, for the QIDO searches
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse

base, study, series, patient_id = sys.argv[1:5]
requests = int(sys.argv[5]) if len(sys.argv) > 5 else 20
url = urllib.parse.urlparse(base)
root = url.path.rstrip("/")
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)


def get(path, accept="application/dicom+json"):
    """One GET on the kept-alive connection: seconds to the last byte, and the body."""
    started = time.perf_counter()
    conn.request("GET", root + path, headers={"Accept": accept})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed, body


def timed(path, n, warmup=3):
    for _ in range(warmup):
        get(path)
    times = sorted(get(path)[0] for _ in range(n))
    return {
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": times[min(len(times) - 1, int(len(times) * 0.95))] * 1000,
    }


out = {}
metadata = f"/studies/{study}/series/{series}/metadata"
first, body = get(metadata)
out["metadata_first_ms"] = first * 1000
out["metadata_bytes"] = len(body)
instances = json.loads(body)
out["metadata_instances"] = len(instances)
out["metadata"] = timed(metadata, requests)

out["qido_patient_id"] = timed(f"/studies?PatientID={patient_id}", requests * 5)
out["qido_name_prefix"] = timed("/studies?PatientName=SMI*&limit=100", requests * 5)
out["qido_date_range"] = timed("/studies?StudyDate=20200101-20201231&limit=100", requests * 5)

# Frame 1 of every instance of the series, as stored, one request each.
uids = [i["00080018"]["Value"][0] for i in instances]
accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
started = time.perf_counter()
total = 0
for uid in uids:
    _, body = get(f"/studies/{study}/series/{series}/instances/{uid}/frames/1", accept)
    total += len(body)
elapsed = time.perf_counter() - started
out["frames_per_s"] = len(uids) / elapsed
out["frames_mb_s"] = total / elapsed / 1e6
print(json.dumps(out))
