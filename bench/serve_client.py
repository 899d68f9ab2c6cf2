#!/usr/bin/env python3
"""The client side of bench/serve: times what viewers and scripts ask of a server's REST API,
the same way for orthweb and Orthanc (both speak Orthanc's REST), and prints one JSON object.

    serve_client.py BASE_URL
        study ZIP: GET /studies/{id}/archive of the largest study, to the last byte;
        rendered: GET /instances/{id}/frames/0/rendered (PNG) for 30 instances not rendered
        before.

    serve_client.py --downloads NAME=BASE_URL=PID ...
        keep-alive download: GET /instances/{id}/file for 100 instances, one after another on
        one HTTP/1.1 connection per server (what HTTP libraries and viewers do). The servers
        take turns, three passes of 100 each per turn, 20 turns, so that whatever the VM does
        meanwhile falls on all of them alike; per server: the median pass (instances/s, MB/s),
        and the server's CPU time (user + system, /proc/PID/stat) and the client's per
        download, over all its passes. In the same turns, after the passes: GET /instances
        (every ID) and GET /studies?expand, 5 of each per turn, the median of all 100.
"""
import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse

TICK = 1 / os.sysconf("SC_CLK_TCK")


def connect(url):
    base = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(base.hostname, base.port, timeout=300)


def get(conn, path, headers=None):
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return body


def timed(conn, path, headers=None):
    start = time.perf_counter()
    body = get(conn, path, headers)
    return time.perf_counter() - start, len(body)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK  # utime, stime


def downloads(servers, turns=20, passes_per_turn=3):
    state = {}
    for spec in servers:
        name, url, pid = spec.split("=")
        conn = connect(url)
        ids = json.loads(get(conn, "/instances"))[:100]
        for i in ids:  # every file once beforehand: all serve from the page cache or their own
            get(conn, f"/instances/{i}/file")
        state[name] = {"conn": conn, "ids": ids, "pid": int(pid), "passes": [], "server": 0.0,
                       "client": 0.0, "size": 0, "/instances": [], "/studies?expand": []}
    for _ in range(turns):
        for s in state.values():
            server0, client0 = cpu_seconds(s["pid"]), time.process_time()
            for _ in range(passes_per_turn):
                start = time.perf_counter()
                s["size"] = sum(len(get(s["conn"], f"/instances/{i}/file")) for i in s["ids"])
                s["passes"].append(time.perf_counter() - start)
            s["server"] += cpu_seconds(s["pid"]) - server0
            s["client"] += time.process_time() - client0
            for listing in ("/instances", "/studies?expand"):
                s[listing] += [timed(s["conn"], listing)[0] for _ in range(5)]
    result = {}
    for name, s in state.items():
        seconds, count = statistics.median(s["passes"]), len(s["passes"]) * len(s["ids"])
        result[name] = {"download_inst_s": len(s["ids"]) / seconds,
                        "download_mb_s": s["size"] / seconds / 1048576,
                        "server_cpu_us": s["server"] / count * 1e6,
                        "client_cpu_us": s["client"] / count * 1e6,
                        "list_instances_ms": statistics.median(s["/instances"]) * 1000,
                        "studies_expand_ms": statistics.median(s["/studies?expand"]) * 1000}
    return result


def rest(url):
    conn = connect(url)
    instances = json.loads(get(conn, "/instances"))
    result = {"instances": len(instances)}
    studies = json.loads(get(conn, "/studies"))
    largest = max(studies, key=lambda s: len(json.loads(get(conn, f"/studies/{s}/instances"))))
    seconds, size = timed(conn, f"/studies/{largest}/archive")
    result["zip_s"] = seconds
    result["zip_mb_s"] = size / seconds / 1048576

    renders = [timed(conn, f"/instances/{i}/frames/0/rendered", {"Accept": "image/png"})[0]
               for i in instances[-30:]]
    result["rendered_ms"] = statistics.median(renders) * 1000
    return result


if sys.argv[1] == "--downloads":
    print(json.dumps(downloads(sys.argv[2:])))
else:
    print(json.dumps(rest(sys.argv[1])))
