#!/usr/bin/env python3
"""The client side of bench/serve: times what viewers and scripts ask of a server's REST API,
the same way for orthweb and Orthanc (both speak Orthanc's REST), and prints one JSON object.

    serve_client.py BASE_URL [--download-only]

- keep-alive download: GET /instances/{id}/file for 100 instances, one after another on one
  HTTP/1.1 connection (what HTTP libraries and viewers do), the median of 15 such passes;
- study ZIP: GET /studies/{id}/archive of the largest study, to the last byte;
- listings: GET /instances (every ID) and GET /studies?expand, median of 30;
- rendered: GET /instances/{id}/frames/0/rendered (PNG) for 30 instances not rendered before.

With --download-only, the keep-alive download alone (against examples/http_ceiling.rs, the
client's own limit).
"""
import http.client
import json
import statistics
import sys
import time
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1])
conn = http.client.HTTPConnection(base.hostname, base.port, timeout=300)


def get(path, headers=None):
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return body


def timed(path, headers=None):
    start = time.perf_counter()
    body = get(path, headers)
    return time.perf_counter() - start, len(body)


def median_ms(path, n=30):
    timed(path)  # warm-up
    return statistics.median(timed(path)[0] for _ in range(n)) * 1000


instances = json.loads(get("/instances"))
result = {"instances": len(instances)}

# Every file once beforehand, so both servers read from the page cache (or their own caches)
# alike. One pass of 100 takes some 25 ms, which a noisy VM moves by ±15 %: the median of
# PASSES passes is reported.
PASSES = 15
for i in instances[:100]:
    get(f"/instances/{i}/file")
passes = []
for _ in range(PASSES):
    start = time.perf_counter()
    size = sum(len(get(f"/instances/{i}/file")) for i in instances[:100])
    passes.append(time.perf_counter() - start)
seconds = statistics.median(passes)
result["download_inst_s"] = 100 / seconds
result["download_mb_s"] = size / seconds / 1048576
if sys.argv[2:] == ["--download-only"]:
    print(json.dumps(result))
    sys.exit(0)

studies = json.loads(get("/studies"))
largest = max(studies, key=lambda s: len(json.loads(get(f"/studies/{s}/instances"))))
seconds, size = timed(f"/studies/{largest}/archive")
result["zip_s"] = seconds
result["zip_mb_s"] = size / seconds / 1048576

result["list_instances_ms"] = median_ms("/instances")
result["studies_expand_ms"] = median_ms("/studies?expand")

renders = [timed(f"/instances/{i}/frames/0/rendered", {"Accept": "image/png"})[0]
           for i in instances[-30:]]
result["rendered_ms"] = statistics.median(renders) * 1000
print(json.dumps(result))
