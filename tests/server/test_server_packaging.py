"""Dockerfile, docker-compose, Prometheus/Grafana and Kubernetes files, read and checked against each other
and against what the server really serves (Docker itself cannot run on the test machine)."""

from __future__ import annotations

import functools
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
PROBES = {"/health/live", "/health/ready"}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins, args in dockerfile():
        if ins == "FROM":
            result.append([])
        result[-1].append((ins, args))
    return result


def exec_form(args: str) -> list[str]:
    return json.loads(args)


@functools.lru_cache(maxsize=None)
def served_routes() -> frozenset[str]:
    from engine.api import Engine
    from engine.server.app import create_app

    engine = Engine(load_default_voice=False, autosave=False)
    try:
        return frozenset(r.path for r in create_app(engine).routes)
    finally:
        engine.close()


# ---------------------------------------------------------------------- Dockerfile
def test_cuda_base_matches_the_torch_wheel_and_torch_matches_setup_sh():
    bases = [args.split()[0] for ins, args in dockerfile() if ins == "FROM"]
    assert len(bases) >= 2, "a multi-stage build"
    tags = {re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(?:cudnn-)?runtime-ubuntu\d+\.\d+", b) for b in bases}
    assert None not in tags and len({m.group(0) for m in tags}) == 1, bases  # every stage: one official runtime tag
    major, minor = next(iter(tags)).group(1, 2)
    installs = [args for ins, args in dockerfile() if ins == "RUN" and re.search(r"\btorch==", args)]
    assert len(installs) == 1, installs
    wheel = re.search(r"torch==([\w.]+)\"?\s+--index-url\s+https://download\.pytorch\.org/whl/cu(\d+)\b", installs[0])
    assert wheel, installs[0]
    assert wheel.group(2) == f"{major}{minor}", f"torch built for cu{wheel.group(2)} on a CUDA {major}.{minor} base"
    pinned = re.search(r"torch==([\w.]+)", (ROOT / "scripts" / "setup.sh").read_text())
    assert pinned and wheel.group(1) == pinned.group(1), (wheel.group(1), pinned and pinned.group(1))
    torchfcpe = re.search(r"torchfcpe==([\w.]+)", (ROOT / "scripts" / "setup.sh").read_text()).group(1)
    assert f"torchfcpe=={torchfcpe}" in (ROOT / "Dockerfile").read_text()


def test_runtime_stage_runs_the_server_unprivileged_with_a_liveness_healthcheck():
    final = stages()[-1]
    ins = [i for i, _ in final]
    assert "USER" in ins and ins.index("USER") < ins.index("CMD")
    user = dict(final)["USER"]
    assert user not in ("root", "0") and not user.startswith("0:")
    created = " ".join(a for i, a in final if i == "RUN")
    assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", created), "the USER is created in this stage"
    cmd = exec_form(dict(final)["CMD"])
    assert cmd[:2] == ["autovoice", "serve"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert dict(final)["EXPOSE"] == port
    health = dict(final)["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/health/live" in health and "/health/live" in served_routes()
    # No token is baked into the image: it comes from the environment at run time.
    for i, args in dockerfile():
        assert not (i in ("ENV", "ARG") and "AUTOVOICE_TOKEN" in args), args
    env = " ".join(a for i, a in final if i == "ENV")
    volumes = set(exec_form(dict(final)["VOLUME"]))
    data = re.search(r"AUTOVOICE_DATA_DIR=(\S+)", env).group(1)
    config = re.search(r"AUTOVOICE_CONFIG_DIR=(\S+)", env).group(1)
    assert {data, config} == volumes, (data, config, volumes)


def test_the_build_context_has_what_the_dockerfile_copies():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", "tests"} <= set(ignored)
    for ins, args in dockerfile():
        if ins == "COPY" and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (ROOT / src).exists(), src
                assert src.rstrip("/") not in ignored, f"{src} is excluded by .dockerignore"


def test_the_image_copies_everything_the_package_installs():
    """`pip install .` in the image builds from the copied files: every module and package that
    pyproject.toml installs (the launcher autovoice.py included) must be copied in."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    wanted = {f"{m}.py" for m in project.get("py-modules", [])}
    wanted |= {pattern.rstrip("*") for pattern in project["packages"]["find"]["include"]}
    wanted.add("setup.py")  # it builds the native audio callback
    copied = set()
    for ins, args in dockerfile():
        if ins == "COPY" and "--from=" not in args:
            copied |= {src.rstrip("/") for src in shlex.split(args)[:-1]}
    assert wanted <= copied, f"the Dockerfile does not copy {sorted(wanted - copied)}"
    assert "onnxruntime-gpu" in (ROOT / "Dockerfile").read_text()  # ONNX voices on the GPU in the image
    assert "engine.io._native_callback" in (ROOT / "Dockerfile").read_text()  # built, or the build fails


# ---------------------------------------------------------------------- compose, Prometheus, Grafana
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_app_on_a_gpu_with_its_healthcheck(compose):
    app = compose["services"]["autovoice"]
    assert app["build"] == "." and "profiles" not in app
    devices = app["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "/health/live" in " ".join(app["healthcheck"]["test"])
    assert app["environment"]["AUTOVOICE_TOKEN"].startswith("${AUTOVOICE_TOKEN:?")  # no default token
    assert all(p.startswith("127.0.0.1:") for p in app["ports"])
    mounts = {v.split(":")[1] for v in app["volumes"]}
    assert mounts == {"/data", "/config"}


def test_monitoring_profile_scrapes_metrics_and_provisions_grafana(compose):
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            src = volume.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), src
    prom = yaml.safe_load((PACKAGING / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "autovoice")
    assert job["metrics_path"] == "/metrics" and "/metrics" in served_routes()
    app_port = services["autovoice"]["ports"][0].split(":")[-1]
    assert job["static_configs"][0]["targets"] == [f"autovoice:{app_port}"]
    ds = yaml.safe_load((PACKAGING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    source = ds["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((PACKAGING / "grafana" / "provisioning" / "dashboards" / "autovoice.yml").read_text())
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"] if v.startswith("./packaging/grafana/dashboards")}
    assert providers["providers"][0]["options"]["path"] in mounted
    dashboard = json.loads((PACKAGING / "grafana" / "dashboards" / "autovoice.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_dashboard_queries_only_metrics_the_server_exposes(server):
    from prometheus_client.parser import text_string_to_metric_families

    from engine.server.metrics import ENGINE_METRICS

    exposed = {f.name for f in text_string_to_metric_families(server.get("/metrics").text)}
    exposed |= {name for name, _, _ in ENGINE_METRICS}  # GPU families are empty without a GPU
    dashboard = json.loads((PACKAGING / "grafana" / "dashboards" / "autovoice.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set()
    for expr in exprs:
        for name in re.findall(r"\b((?:autovoice|process)_[a-z0-9_]+)", expr):
            used.add(re.sub(r"_(bucket|count|sum|total|created)$", "", name))
    missing = used - exposed
    assert not missing, f"the dashboard queries metrics the server does not have: {sorted(missing)}"
    for family in ("autovoice_http_requests", "autovoice_block_compute_seconds", "autovoice_live_output_underflows",
                   "autovoice_gpu_memory_used_bytes", "autovoice_conversions"):
        assert family in used, family


# ---------------------------------------------------------------------- Kubernetes
@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    kustomize = yaml.safe_load((PACKAGING / "k8s" / "kustomization.yaml").read_text())
    docs = {}
    for name in kustomize["resources"]:
        for doc in yaml.safe_load_all((PACKAGING / "k8s" / name).read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_k8s_deployment_probes_gpu_and_secret(k8s):
    assert {"Deployment", "Service", "PersistentVolumeClaim"} <= set(k8s)
    spec = k8s["Deployment"]["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    routes = served_routes()
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"),
                        ("startupProbe", "/health/live")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and path in routes and get["port"] in ports, probe
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["command"] + c["args"] == ["autovoice", "serve", "--host", "0.0.0.0", "--port", str(ports["http"])]
    token = next(e for e in c["env"] if e["name"] == "AUTOVOICE_TOKEN")
    assert set(token["valueFrom"]["secretKeyRef"]) == {"name", "key"} and "value" not in token
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/data", "/config", "/tmp"} <= mounts  # read-only root: state and uploads on volumes
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {k8s["PersistentVolumeClaim"]["metadata"]["name"]}
    # The image's user is the pod's user (the Dockerfile creates uid 10001).
    assert f"--uid {spec['securityContext']['runAsUser']}" in (ROOT / "Dockerfile").read_text()


def test_k8s_service_selects_the_pods_and_targets_the_named_port(k8s):
    dep, svc = k8s["Deployment"], k8s["Service"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    names = {p["name"] for p in c["ports"]}
    assert all(p["targetPort"] in names for p in svc["spec"]["ports"])


# ---------------------------------------------------------------------- CI
def test_ci_workflow_tests_builds_and_scans_the_image():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = wf["jobs"]
    test_steps = " ".join(str(s.get("run", "")) for s in jobs["test"]["steps"])
    assert "make test" in test_steps
    ci_run = (ROOT / ".ci" / "run").read_text()
    wanted = set(re.search(r"for pkg in ([^;]+);", ci_run).group(1).split())
    assert wanted <= set(test_steps.split()), "the workflow installs what .ci/run installs"
    steps = jobs["image"]["steps"]
    build = next(s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action"))
    trivy = next(s for s in steps if str(s.get("uses", "")).startswith("aquasecurity/trivy-action"))
    assert build["with"]["tags"] == trivy["with"]["image-ref"] and build["with"]["push"] is False
    assert trivy["with"]["exit-code"] == "1"
    assert steps.index(build) < steps.index(trivy)
