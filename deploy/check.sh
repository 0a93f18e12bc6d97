#!/usr/bin/env bash
# `make deploy-check`: validates deploy/ without Docker or Kubernetes — YAML parses, promtool
# accepts the Prometheus config and rules and the rule unit tests pass, and the dashboard, alerts,
# compose file, Dockerfile and k8s manifests agree with the code (metric and label names, binary
# names, DROPLINE_* variables, ports, probe paths, grace periods, replicas vs partitions).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m[deploy-check]\033[0m %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# --- tools -------------------------------------------------------------------------------------
if ! python3 -c 'import yaml' 2>/dev/null; then
  say "PyYAML missing: pip install --quiet pyyaml"
  pip install --quiet pyyaml || python3 -m pip install --quiet pyyaml
fi
# promtool comes from Debian's `prometheus` package (make stack-up installs it); wait for an
# install that may be running right now rather than fail at once (up to 20 minutes).
if ! command -v promtool >/dev/null; then
  say "promtool not found yet (Debian package prometheus); waiting up to 20 min"
  for _ in $(seq 40); do
    sleep 30
    command -v promtool >/dev/null && break
  done
  command -v promtool >/dev/null || fail "promtool is missing: apt-get install prometheus (or make stack-up)"
fi

# --- 1. every YAML file parses ----------------------------------------------------------------
say "1. YAML: every *.yml / *.yaml under deploy/ parses"
python3 - <<'PY'
import pathlib, sys, yaml
bad = 0
files = sorted(p for p in pathlib.Path("deploy").rglob("*") if p.suffix in (".yml", ".yaml"))
for path in files:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        if not docs:
            raise ValueError("no document")
        print(f"   ok  {path} ({len(docs)} document{'s' if len(docs) > 1 else ''})")
    except Exception as e:  # noqa: BLE001 - report every broken file
        bad += 1
        print(f"   BAD {path}: {e}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# --- 2. promtool --------------------------------------------------------------------------------
say "2. promtool: config, rules, rule unit tests ($(promtool --version 2>&1 | head -1))"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
# Debian's promtool is built without Kubernetes service discovery: check the k8s scrape config
# where it can be, and say so where it cannot.
if out=$(promtool check config deploy/prometheus/prometheus-k8s.yml 2>&1); then
  echo "$out"
elif grep -q 'field kubernetes_sd_configs not found' <<<"$out"; then
  say "   prometheus-k8s.yml: NOT checked by promtool (this promtool has no kubernetes_sd); YAML parse only"
else
  echo "$out" >&2
  fail "promtool check config deploy/prometheus/prometheus-k8s.yml"
fi

# --- 3. consistency with the code ---------------------------------------------------------------
say "3. metrics, labels, binaries, variables, ports and probes agree with services/"
python3 - <<'PY'
import json, pathlib, re, sys, tomllib, yaml

errors = []
def err(msg):
    errors.append(msg)

root = pathlib.Path(".")
src_files = sorted(root.glob("services/*/src/**/*.rs"))

# Metrics registered in the code: constructor calls with a literal dropline_* name, their type
# (histograms also expose _bucket/_sum/_count) and their label names.
CTOR = re.compile(r'\b(Opts|HistogramOpts|IntCounter|IntGauge|Counter|Gauge|Histogram)::(?:new|with_opts)\(\s*"(dropline_[a-z0-9_]+)"')
LABELS = re.compile(r'&\[\s*((?:"[a-z_][a-z0-9_]*"\s*,?\s*)+)\]')
metrics = {}  # name -> {"histogram": bool, "labels": set, "where": path}
for path in src_files:
    text = path.read_text()
    for m in CTOR.finditer(text):
        kind, name = m.group(1), m.group(2)
        end = text.find(";", m.end())
        stmt = text[m.start(): end if end >= 0 else len(text)]
        labels = set()
        lm = LABELS.search(stmt)
        if lm:
            labels = set(re.findall(r'"([a-z_][a-z0-9_]*)"', lm.group(1)))
        else:
            # `let opts = Opts::new("name", ...); ... XxxVec::new(opts, &["a", "b"])`
            head = text[max(0, m.start() - 80): m.start()]
            var = re.search(r'let\s+(\w+)\s*=\s*$', head)
            if var:
                vm = re.search(r'Vec::new\(\s*' + re.escape(var.group(1)) + r'\s*,\s*' + LABELS.pattern, text[m.end(): m.end() + 400])
                if vm:
                    labels = set(re.findall(r'"([a-z_][a-z0-9_]*)"', vm.group(1)))
        metrics[name] = {"histogram": kind == "HistogramOpts" or kind == "Histogram", "labels": labels, "where": str(path)}
if len(metrics) < 10:
    err(f"only {len(metrics)} metrics found in services/*/src: the extraction is broken")
series = {}  # exposed series name -> labels
for name, m in metrics.items():
    if m["histogram"]:
        series[name + "_bucket"] = m["labels"] | {"le"}
        series[name + "_sum"] = set(m["labels"])
        series[name + "_count"] = set(m["labels"])
    else:
        series[name] = set(m["labels"])
# Series Prometheus adds itself, and the labels every scraped series carries.
series["up"] = set()
TARGET_LABELS = {"job", "instance", "pod", "namespace", "deployment"}

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan"}
def check_expr(expr, where):
    """Every dropline_* name must be a registered series; labels in {...} and by/on clauses must exist."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop string literals (label values)
    names = set(re.findall(r'\b(dropline_[a-zA-Z0-9_]+)\b', text))
    used = set()
    for name in names:
        if name not in series:
            err(f"{where}: unknown metric {name} (not registered in services/*/src)")
        else:
            used.add(name)
    allowed = set(TARGET_LABELS) | {"le"}
    for name in used:
        allowed |= series[name]
    # matchers right after a metric name
    for m in re.finditer(r'\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}', text):
        name, body = m.group(1), m.group(2)
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)', body))
        known = series.get(name)
        if known is None:
            continue
        for label in labels - known - TARGET_LABELS - {"__name__"}:
            err(f"{where}: {name} has no label {label!r} (its labels: {sorted(known) or 'none'})")
    # grouping / matching clauses
    for m in re.finditer(r'\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)', text):
        for label in re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*', m.group(2)):
            if label not in allowed:
                err(f"{where}: label {label!r} in {m.group(1)}(...) is not a label of {sorted(used) or 'its metrics'}")
    return used

# 3a. the Grafana dashboard
dash_path = root / "deploy/grafana/dashboards/dropline.json"
dash = json.loads(dash_path.read_text())
def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))
n_targets = 0
dash_used = set()
for panel in walk_panels(dash.get("panels", [])):
    for t in panel.get("targets", []):
        if "expr" in t:
            n_targets += 1
            dash_used |= check_expr(t["expr"], f"dashboard panel {panel.get('title')!r}")
        if t.get("datasource", {}).get("uid") not in (None, "prometheus"):
            err(f"dashboard panel {panel.get('title')!r}: datasource uid must be 'prometheus' (provisioned)")
for var in dash.get("templating", {}).get("list", []):
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    if isinstance(q, str):
        check_expr(q, f"dashboard variable {var.get('name')!r}")
if n_targets == 0:
    err("dashboard has no panel targets")
for wanted in ["dropline_orders_total", "dropline_decision_latency_seconds_bucket", "dropline_consumer_lag",
               "dropline_holds_active", "dropline_waitlist_length", "dropline_dead_letters_total",
               "dropline_clips_total", "dropline_clip_cut_seconds_bucket", "dropline_ingest_lines_total",
               "dropline_console_requests_total"]:
    if wanted not in dash_used:
        err(f"dashboard shows no panel for {wanted}")
print(f"   dashboard: {n_targets} queries over {len(dash_used)} metrics, all registered in the code")

# 3b. alert rules and their unit tests
rules = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
n_rules = 0
for group in rules["groups"]:
    for rule in group["rules"]:
        n_rules += 1
        name = rule.get("alert") or rule.get("record")
        check_expr(rule["expr"], f"alerts.yml {name}")
        if "alert" in rule:
            if "for" not in rule:
                err(f"alerts.yml {name}: no `for:`")
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                err(f"alerts.yml {name}: severity label missing")
            ann = rule.get("annotations", {})
            if not ann.get("summary") or not ann.get("description"):
                err(f"alerts.yml {name}: summary/description annotations missing")
tests = yaml.safe_load((root / "deploy/prometheus/alerts_test.yml").read_text())
for i, test in enumerate(tests["tests"]):
    for s in test.get("input_series", []):
        check_expr(s["series"], f"alerts_test.yml test {i + 1} input series")
print(f"   alerts.yml: {n_rules} rules use registered metrics and labels; alerts_test.yml input series too")

# 3c. binaries: [[bin]] names of the crates
bins = set()
for cargo in root.glob("services/*/Cargo.toml"):
    manifest = tomllib.loads(cargo.read_text())
    for b in manifest.get("bin", []):
        bins.add(b["name"])
for b in ["dropline-matcher", "dropline-clipper", "dropline-ingest", "dropline-console", "dropline"]:
    if b not in bins:
        err(f"binary {b} is not a [[bin]] of services/*/Cargo.toml (have {sorted(bins)})")
dockerfile = (root / "deploy/Dockerfile").read_text()
for b in ["dropline-matcher", "dropline-clipper", "dropline-ingest", "dropline-console"]:
    if f"target/release/{b}" not in dockerfile:
        err(f"deploy/Dockerfile does not copy {b}")
# crate directory of a binary, and which paths it serves (every service: /metrics, /healthz and
# /livez from dropline_core::admin; /readyz only where the crate routes it)
def crate_of(binary):
    for cargo in root.glob("services/*/Cargo.toml"):
        manifest = tomllib.loads(cargo.read_text())
        if any(b["name"] == binary for b in manifest.get("bin", [])):
            return cargo.parent
    return None
def served_paths(binary):
    crate = crate_of(binary)
    paths = {"/metrics", "/healthz", "/livez"}
    if crate and any('"/readyz"' in p.read_text() for p in crate.glob("src/**/*.rs")):
        paths.add("/readyz")
    return paths

# 3d. DROPLINE_* variables: every one deploy/ sets is read by the code
known_vars = set()
for path in src_files:
    known_vars |= set(re.findall(r'"(DROPLINE_[A-Z0-9_]*[A-Z0-9])"', path.read_text()))
topics_rs = (root / "services/core/src/topics.rs").read_text()
contract_topics = re.findall(r'Self::\w+ => "([a-z-]+)",', topics_rs.split("fn default_name")[1].split("fn message_name")[0])
known_vars |= {"DROPLINE_TOPIC_" + t.replace("-", "_").upper() for t in contract_topics}
deploy_texts = {p: p.read_text() for p in list(root.glob("deploy/compose/*")) + list(root.glob("deploy/k8s/*.yaml"))}
for path, text in deploy_texts.items():
    for var in sorted(set(re.findall(r'\b(DROPLINE_[A-Z0-9_]*[A-Z0-9])\b', text))):
        if var not in known_vars and not var.startswith("DROPLINE_TOPIC_") and var != "DROPLINE_TOPIC":
            err(f"{path}: {var} is not read anywhere in services/*/src")
# the topic init script creates exactly the contract's topics
script = (root / "deploy/compose/create-topics.sh").read_text()
listed = re.search(r'contract=\(([^)]*)\)', script)
if not listed or listed.group(1).split() != contract_topics:
    err(f"deploy/compose/create-topics.sh topics differ from services/core/src/topics.rs: {contract_topics}")
# ... each with the retention TopicKind::retention_ms gives it
variants = re.findall(r'Self::(\w+) => "[a-z-]+",', topics_rs.split("fn default_name")[1].split("fn message_name")[0])
retention_block = topics_rs.split("fn retention_ms")[1].split("fn env_var")[0]
day = 86_400_000
retention_of = {}
for arms, value in re.findall(r'((?:Self::\w+\s*\|?\s*)+)=>\s*\{?\s*(FOREVER|\d+ \* DAY)', retention_block):
    ms = -1 if value == "FOREVER" else int(value.split()[0]) * day
    for variant in re.findall(r'Self::(\w+)', arms):
        retention_of[variant] = ms
wanted = [str(retention_of.get(v, "?")) for v in variants]
given = re.search(r'retention=\(([^)]*)\)', script)
if not given or given.group(1).split() != wanted:
    err(f"deploy/compose/create-topics.sh retention differs from TopicKind::retention_ms: {wanted}")
print(f"   variables: every DROPLINE_* set in deploy/ is read by the code; topics = {contract_topics}")

def port_of(addr):
    return int(addr.rsplit(":", 1)[1]) if addr and ":" in addr else None
def grace_seconds(v):
    m = re.fullmatch(r'(\d+)(ms|s|m)?', v.strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n
# the listener a binary's /metrics etc. live on
def listener_var(binary):
    return "DROPLINE_HTTP" if binary == "dropline-console" else "DROPLINE_ADMIN"

# 3e. Kubernetes manifests
configmap = {}
k8s_docs = []
for path in sorted(root.glob("deploy/k8s/*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            k8s_docs.append((path, doc))
            if doc.get("kind") == "ConfigMap":
                configmap.update(doc.get("data", {}))
kustomization = yaml.safe_load((root / "deploy/k8s/kustomization.yaml").read_text())
for path in root.glob("deploy/k8s/*.yaml"):
    # The example Secret is documentation: applying it would put public values in the cluster.
    if path.name == "secret.example.yaml":
        if path.name in kustomization.get("resources", []):
            err("deploy/k8s/kustomization.yaml applies secret.example.yaml (public example values)")
        continue
    if path.name != "kustomization.yaml" and path.name not in kustomization.get("resources", []):
        err(f"deploy/k8s/kustomization.yaml does not list {path.name}")
partitions = int(configmap.get("DROPLINE_PARTITIONS", "4"))
n_containers = 0
for path, doc in k8s_docs:
    if doc.get("kind") not in ("Deployment", "Job"):
        continue
    pod = doc["spec"]["template"]["spec"]
    annotations = doc["spec"]["template"].get("metadata", {}).get("annotations", {})
    for c in pod["containers"]:
        where = f"{path.name} {doc['kind']}/{doc['metadata']['name']} container {c['name']}"
        binary = c.get("command", [""])[0]
        if binary not in bins:
            err(f"{where}: command {binary!r} is not a Dropline binary")
        env = dict(configmap)
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
        req = c.get("resources", {}).get("requests", {})
        if not req.get("cpu") or not req.get("memory"):
            err(f"{where}: resources.requests.cpu and .memory are required")
        if doc["kind"] != "Deployment":
            continue
        n_containers += 1
        named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        listen = port_of(env.get(listener_var(binary)))
        if listen is None:
            err(f"{where}: {listener_var(binary)} is not set to a host:port")
        for probe in ("readinessProbe", "livenessProbe"):
            p = c.get(probe)
            if not p:
                err(f"{where}: no {probe}")
                continue
            http = p.get("httpGet")
            if not http:
                err(f"{where}: {probe} is not an httpGet probe")
                continue
            port = named.get(http["port"], http["port"])
            if port != listen:
                err(f"{where}: {probe} port {port} is not {listener_var(binary)}'s port {listen}")
            if probe == "livenessProbe" and http["path"] != "/livez":
                err(f"{where}: livenessProbe must ask /livez (the process alone), not {http['path']}: a dependency outage would restart every pod")
            if http["path"] not in served_paths(binary):
                err(f"{where}: {probe} path {http['path']} is not served by {binary} (serves {sorted(served_paths(binary))})")
        if binary == "dropline-ingest" and named.get("webhook") != port_of(env.get("DROPLINE_INGEST_HTTP")):
            err(f"{where}: containerPort 'webhook' is not DROPLINE_INGEST_HTTP's port")
        if annotations.get("prometheus.io/scrape") == "true" and int(annotations.get("prometheus.io/port", 0)) != listen:
            err(f"{where}: prometheus.io/port {annotations.get('prometheus.io/port')} is not the metrics port {listen}")
        grace = grace_seconds(env.get("DROPLINE_SHUTDOWN_GRACE", "10s"))
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        if grace is None or tgp <= grace:
            err(f"{where}: terminationGracePeriodSeconds {tgp} must exceed DROPLINE_SHUTDOWN_GRACE {env.get('DROPLINE_SHUTDOWN_GRACE')}")
        if binary in ("dropline-matcher", "dropline-clipper") and doc["spec"].get("replicas", 1) > partitions:
            err(f"{where}: {doc['spec']['replicas']} replicas > DROPLINE_PARTITIONS {partitions}: some would get no partition")
if not any(d.get("kind") == "PodDisruptionBudget" and d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "matcher" for _, d in k8s_docs):
    err("deploy/k8s: no PodDisruptionBudget for the matcher")
print(f"   k8s: {n_containers} Deployment containers with readiness/liveness probes on served paths and ports, requests, grace periods")

# 3f. compose: commands, listener ports, healthchecks, Prometheus targets, replicas vs partitions
compose = yaml.safe_load((root / "deploy/compose/docker-compose.yml").read_text())
prom = yaml.safe_load((root / "deploy/prometheus/prometheus.yml").read_text())
scraped = {}  # job -> set of (host, port)
for job in prom["scrape_configs"]:
    hosts = set()
    for sc in job.get("static_configs", []):
        for t in sc["targets"]:
            h, p = t.rsplit(":", 1)
            hosts.add((h, int(p)))
    for sd in job.get("dns_sd_configs", []):
        for n in sd["names"]:
            hosts.add((n, int(sd["port"])))
    scraped[job["job_name"]] = hosts
services = compose["services"]
topic_partitions = int(services["topics"]["environment"]["DROPLINE_PARTITIONS"])
for name, svc in services.items():
    cmd = svc.get("command") or []
    binary = cmd[0] if cmd else ""
    if not binary.startswith("dropline"):
        continue
    where = f"docker-compose.yml service {name}"
    if binary not in bins:
        err(f"{where}: command {binary!r} is not a Dropline binary")
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    if env.get("DROPLINE_PARTITIONS") and int(env["DROPLINE_PARTITIONS"]) != topic_partitions:
        err(f"{where}: DROPLINE_PARTITIONS differs from the topics init container's")
    listen = port_of(env.get(listener_var(binary)))
    if listen is None:
        err(f"{where}: {listener_var(binary)} is not set")
        continue
    if not env[listener_var(binary)].startswith("0.0.0.0:"):
        err(f"{where}: {listener_var(binary)} must listen on 0.0.0.0 inside a container")
    if (name, listen) not in scraped.get(name, set()):
        err(f"{where}: prometheus.yml job {name!r} does not scrape {name}:{listen}")
    test = " ".join(svc.get("healthcheck", {}).get("test", []))
    hm = re.search(r'http://127\.0\.0\.1:(\d+)(/\w+)', test)
    if not hm or int(hm.group(1)) != listen or hm.group(2) not in served_paths(binary):
        err(f"{where}: healthcheck must GET a path {binary} serves on port {listen}: {test!r}")
    grace = grace_seconds(env.get("DROPLINE_SHUTDOWN_GRACE", "10s"))
    stop = grace_seconds(svc.get("stop_grace_period", "10s"))
    if grace is None or stop is None or stop <= grace:
        err(f"{where}: stop_grace_period must exceed DROPLINE_SHUTDOWN_GRACE")
    if binary in ("dropline-matcher", "dropline-clipper"):
        replicas = svc.get("deploy", {}).get("replicas", 1)
        if replicas > topic_partitions:
            err(f"{where}: {replicas} replicas > {topic_partitions} partitions")
clips_mounts = {n: [v for v in s.get("volumes", []) if ":/var/lib/dropline/clips" in v] for n, s in services.items()}
if not clips_mounts.get("clipper") or not clips_mounts.get("console") or not all(v.endswith(":ro") for v in clips_mounts["console"]):
    err("docker-compose.yml: clipper and console must share the clips volume at /var/lib/dropline/clips (console read-only)")
print(f"   compose: services, healthchecks, scrape targets and grace periods agree; {topic_partitions} partitions")

if errors:
    for e in errors:
        print(f"   ERROR {e}", file=sys.stderr)
    sys.exit(1)
PY

say "deploy/ checks passed (not checked here: building the image, running compose, applying to a cluster)"
