#!/usr/bin/env python3
"""The `first-view` workload of scripts/bench (issue 16): every request is the first view of
a different original, asking for one of its presets. imgorigin gets the originals through
its real ingest path: moto in server mode is the S3 bucket and the SQS queue, the bucket
sends its ObjectCreated notifications to the queue (moto's S3 notifications), and the
server's ingest records each object and renders its eager presets into the shared variant
store before the run. The peers (sharp) get the same files on disk and render on request
(their cold path). Same request count, order and concurrency for every server; results in
load.py's JSON-lines shape, so scripts/bench-table.py reads them.

    bench-first-view.py prepare --moto URL --dir DIR --copies N   # bucket + queue + files
    bench-first-view.py wait --metrics URL --count N              # until ingest recorded N
    bench-first-view.py load BASE --label L --pid P --out F --dir DIR --style preset|params

Loopback only; every loop is bounded in time and count.
"""
import argparse
import json
import os
import sys
import time
import urllib.request

BENCH = os.environ.get("BENCH_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
sys.path.insert(0, BENCH)
import load  # noqa: E402  (the shared harness: engines, CPU/RSS sampler)

BUCKET = "bench"
PREFIX = "originals/"
QUEUE = "imgorigin-ingest"
# The large camera JPEGs of the corpus: the decode-bound case issue 16 is about.
SOURCES = [
    "camera-12mp-iphone7-orient6.jpg", "camera-12mp-olympus-ep3.jpg", "camera-16mp-motog9.jpg",
    "camera-8mp-iphone6.jpg", "camera-9mp-nokia83.jpg", "photo-17mp-progressive.jpg",
    "photo-24mp-progressive.jpg",
]
# Name -> parameters; the server's [presets] and the peers' explicit query are the same.
PRESETS = {
    "card": "w=400&h=300&fit=cover&fm=webp&q=80",
    "thumb": "w=200&h=200&fit=cover&fm=webp&q=80",
}
LIMIT_S = 30


def keys(n_copies):
    """public/<copy>-<file>: distinct originals (distinct keys, so distinct variants)."""
    return [f"public/{c:03d}-{f}" for c in range(n_copies) for f in SOURCES]


def prepare(a):
    import boto3  # from the test venv (moto depends on it)

    kw = dict(endpoint_url=a.moto, region_name="us-east-1", aws_access_key_id="bench",
              aws_secret_access_key="bench")
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    s3.create_bucket(Bucket=BUCKET)
    q = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": PREFIX + "public/"}]}}}]})
    # The peers read the same originals from a folder.
    os.makedirs(os.path.join(a.dir, "public"), exist_ok=True)
    for k in keys(a.copies):
        src = os.path.join(a.corpus, k.split("-", 1)[1])
        dst = os.path.join(a.dir, k)
        if not os.path.exists(dst):
            os.symlink(os.path.abspath(src), dst)
        with open(src, "rb") as fh:
            s3.put_object(Bucket=BUCKET, Key=PREFIX + k, Body=fh.read(), ContentType="image/jpeg")
    print(q)


def metric(url, series):
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def wait(a):
    """Until ingest recorded every original and stored its presets (bounded by --timeout)."""
    deadline = time.monotonic() + a.timeout
    want = len(PRESETS) * a.count
    while True:
        done = metric(a.metrics, 'imgorigin_ingested_total{outcome="recorded"}')
        stored = metric(a.metrics, 'imgorigin_shared_variant_writes_total{outcome="stored"}')
        if done >= a.count and stored >= want:
            print(f"ingest recorded {int(done)} originals, stored {int(stored)} variants", file=sys.stderr)
            return
        if time.monotonic() > deadline:
            sys.exit(f"ingest recorded {int(done)} of {a.count}, stored {int(stored)} of {want} variants within {a.timeout} s")
        time.sleep(1)


def run_load(a):
    from urllib.parse import urlsplit

    u = urlsplit(a.base)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("refusing: the base URL must be on loopback (127.0.0.1)")
    names = sorted(PRESETS)
    paths = []
    for i, k in enumerate(keys(a.copies)):
        name = names[i % len(names)]
        q = f"p={name}" if a.style == "preset" else PRESETS[name]
        paths.append(f"/{k}?{q}")
    time.sleep(2)
    # Ours only: how many variants the server rendered itself (0 when all came from the
    # shared store).
    renders_before = metric(a.metrics, "imgorigin_renders_total") if a.metrics else None
    with load.Sampler(a.pid) as srv:
        # py engine: stops at the end of the list (a second pass would be warm for us).
        r = load.run_py(u.hostname, u.port, paths, a.concurrency, LIMIT_S, 60)
    rec = {"label": a.label, "workload": "first-view",
           "desc": "each request the first view of another ingested original (one preset each)",
           "engine": "py", "style": "native", "concurrency": a.concurrency, "duration_limit_s": LIMIT_S,
           **r, "rps": r["requests"] / r["elapsed_s"] if r["elapsed_s"] else 0.0,
           "server_cpu_s": srv.cpu,
           "server_cpu_ms_per_req": srv.cpu * 1000 / r["requests"] if r["requests"] else None,
           "server_peak_rss_mib": srv.peak, "client_cpu_s": srv.client,
           "machine_busy_cores": srv.machine_cores, "other_cpu_cores": srv.other_cores,
           "renders": (metric(a.metrics, "imgorigin_renders_total") - renders_before) if a.metrics else None,
           "example_url": paths[0], "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    line = json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rec.items()})
    print(line, flush=True)
    with open(a.out, "a") as fh:
        fh.write(line + "\n")
    print(f"{a.label:10} first-view {rec['rps']:7.1f} req/s  p50 {r['p50_ms']} ms  errors {r['errors']}  "
          f"n={r['requests']}" + (f"  renders {rec['renders']:.0f}" if a.metrics else ""), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--moto", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--copies", type=int, default=30)
    w = sub.add_parser("wait")
    w.add_argument("--metrics", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--timeout", type=int, default=900)
    l = sub.add_parser("load")
    l.add_argument("base")
    l.add_argument("--label", required=True)
    l.add_argument("--pid", type=int)
    l.add_argument("--out", required=True)
    l.add_argument("--copies", type=int, default=30)
    l.add_argument("--concurrency", type=int, default=8)
    l.add_argument("--style", choices=["preset", "params"], required=True)
    l.add_argument("--metrics", help="our /metrics URL: report the renders the run caused")
    a = ap.parse_args()
    {"prepare": prepare, "wait": wait, "load": run_load}[a.cmd](a)


if __name__ == "__main__":
    main()
