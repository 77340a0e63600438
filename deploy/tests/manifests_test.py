"""Renders deploy/base and every deploy/overlays/* with `kubectl kustomize`
and validates the objects:
  - required fields, labels, namespaces, pinned image tags in overlays;
  - workloads: selectors match pod labels, ports unique, resources set,
    nvidia.com/gpu requests == limits and enough GPUs for the engines;
  - probes: gRPC probes on a declared containerPort of the same container,
    liveness on the process service "", engine readiness on colo.generate,
    and no liveness probe on colo.generate (offloading must never restart);
  - ConfigMap / Secret / volume references exist, with the keys used;
  - flags: every flag in a container's args and in the flagfiles it loads
    from ConfigMaps is one the binary accepts (its --helpfull), $(VARS) are
    defined, file paths lie on mounted volumes, --port/--metrics_port are
    declared containerPorts, --engines point at engine ports of the node;
  - the rendered flagfiles start the real binaries (paths rewritten to a
    temporary directory), which serve and exit 0 on SIGTERM;
  - Services: selectors match a workload's pods, target ports exist there.
"""

import system_python  # noqa: F401  (first: re-exec under /usr/bin/python3)

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

ROOT = os.path.join(os.environ.get("TEST_SRCDIR", ""), "colo")
if not os.path.isdir(os.path.join(ROOT, "deploy")):
    ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")

BINARIES = {
    "colo-engine": "engine/server/colo-engine",
    "colo-controller": "controller/colo-controller",
    "colo-tiny-model": "engine/model/colo-tiny-model",
}
# The binary an image runs when the container gives no command.
IMAGE_ENTRYPOINT = {"colo/engine": "colo-engine", "colo/controller": "colo-controller"}
IMAGES = ("colo/engine", "colo/controller", "colo/trainer")
WORKLOADS = ("StatefulSet", "DaemonSet", "Deployment")
PART_OF = ("app.kubernetes.io/part-of", "colo")
GENERATE_SERVICE = "colo.generate"


def kubectl():
    exe = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not exe:
        raise AssertionError("kubectl not found: apt-get install kubernetes-client "
                             "(bazel/setup.sh does), or set KUBECTL")
    return exe


def render(tree, kustomization_dir):
    """Objects of `kubectl kustomize` on a kustomization directory."""
    run = subprocess.run([kubectl(), "kustomize", os.path.join(tree, kustomization_dir)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if run.returncode != 0:
        raise AssertionError(f"kubectl kustomize {kustomization_dir} failed:\n"
                             f"{run.stderr.decode()}")
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def accepted_flags(binary):
    """Flag names from an absl binary's --helpfull."""
    run = subprocess.run([os.path.join(ROOT, BINARIES[binary]), "--helpfull"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    flags = set(re.findall(r"^ {4}--([A-Za-z_][A-Za-z0-9_]*) ", run.stdout.decode(), re.M))
    assert "port" in flags or "out" in flags, f"{binary} --helpfull: {run.stdout[:500]}"
    return flags


def trainer_flags(script):
    """Option names of the example trainer's argparse (--help)."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.returncode == 0, run.stdout.decode()
    return set(re.findall(r"--([A-Za-z_][A-Za-z0-9_]*)", run.stdout.decode()))


def parse_flags(lines):
    """{name: value} of --name=value / --name items (value None)."""
    out = {}
    for item in lines:
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        assert item.startswith("--"), f"not a --flag: {item!r}"
        name, eq, value = item[2:].partition("=")
        out[name] = value if eq else None
    return out


def image_repo(image):
    return image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


def pod_templates(objs):
    """(workload, pod spec, pod labels, [pod-name labels]) per workload."""
    out = []
    for o in objs:
        if o["kind"] not in WORKLOADS:
            continue
        t = o["spec"]["template"]
        names = []
        if o["kind"] == "StatefulSet":
            names = [f"{o['metadata']['name']}-{i}" for i in range(o["spec"].get("replicas", 1))]
        out.append((o, t["spec"], t["metadata"].get("labels", {}), names))
    return out


def container_ports(container):
    return {p["containerPort"]: p for p in container.get("ports", [])}


def port_names(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


class Rendered:
    """One rendered kustomization, indexed."""

    def __init__(self, name, objs):
        self.name = name
        self.objs = objs
        self.by_kind = {}
        for o in objs:
            self.by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o


class ManifestsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        # kustomize refuses files that resolve outside the kustomization root
        # (Bazel runfiles are symlinks): work on a dereferenced copy.
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.tree = os.path.join(cls.tmp, "deploy")
        shutil.copytree(DEPLOY, cls.tree, symlinks=False)
        dirs = ["base"] + [os.path.join("overlays", d)
                           for d in sorted(os.listdir(os.path.join(cls.tree, "overlays")))]
        cls.rendered = [Rendered(d, render(cls.tree, d)) for d in dirs
                        if os.path.exists(os.path.join(cls.tree, d, "kustomization.yaml"))]
        cls.flags = {b: accepted_flags(b) for b in BINARIES}
        cls.flags["example_trainer.py"] = trainer_flags(
            "clients/python/examples/example_trainer.py")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # --- structure ---------------------------------------------------------------

    def test_every_overlay_renders(self):
        names = [r.name for r in self.rendered]
        for want in ("base", "overlays/single-node", "overlays/multi-engine",
                     "overlays/multi-node"):
            self.assertIn(want, names)
        for r in self.rendered:
            self.assertTrue(r.objs, r.name)

    def test_required_fields_labels_and_namespace(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                seen = set()
                for o in r.objs:
                    for key in ("apiVersion", "kind", "metadata"):
                        self.assertIn(key, o)
                    name = o["metadata"].get("name")
                    self.assertTrue(name, o)
                    self.assertNotIn((o["kind"], name), seen, "duplicate object")
                    seen.add((o["kind"], name))
                    self.assertEqual(o["metadata"].get("labels", {}).get(PART_OF[0]), PART_OF[1],
                                     f"{o['kind']}/{name} lacks {PART_OF[0]}")
                    if r.name.startswith("overlays/"):
                        self.assertEqual(o["metadata"].get("namespace"), "colo", f"{o['kind']}/{name}")
                    if o["kind"] in WORKLOADS or o["kind"] == "Service":
                        self.assertIn("spec", o)

    def test_images_are_colo_images_pinned_in_overlays(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                for w, pod, _, _ in pod_templates(r.objs):
                    for c in pod["containers"] + pod.get("initContainers", []):
                        self.assertIn(image_repo(c["image"]), IMAGES, c["image"])
                        if r.name.startswith("overlays/"):
                            self.assertNotRegex(c["image"], r":latest$|^[^:]*$",
                                                f"{c['name']}: pin a tag in overlays")

    # --- workloads ---------------------------------------------------------------

    def test_workload_selectors_match_pod_labels(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                for w, pod, labels, _ in pod_templates(r.objs):
                    match = w["spec"]["selector"]["matchLabels"]
                    self.assertTrue(match)
                    for k, v in match.items():
                        self.assertEqual(labels.get(k), v, f"{w['metadata']['name']}: {k}")

    def test_ports_unique_named_and_resources_set(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                for w, pod, _, _ in pod_templates(r.objs):
                    ports, names, host_ports = set(), set(), set()
                    gpus = 0
                    engines = 0
                    for c in pod["containers"]:
                        for p in c.get("ports", []):
                            # One network namespace per pod: ports must not clash.
                            self.assertNotIn(p["containerPort"], ports, f"{c['name']}: {p}")
                            ports.add(p["containerPort"])
                            self.assertIn("name", p, f"{c['name']}: unnamed port")
                            self.assertLessEqual(len(p["name"]), 15, p["name"])
                            self.assertNotIn(p["name"], names)
                            names.add(p["name"])
                            if "hostPort" in p:
                                self.assertEqual(p["hostPort"], p["containerPort"])
                                self.assertNotIn(p["hostPort"], host_ports)
                                host_ports.add(p["hostPort"])
                        res = c.get("resources", {})
                        self.assertIn("requests", res, f"{c['name']}: no resource requests")
                        self.assertIn("memory", res.get("limits", {}), f"{c['name']}: no memory limit")
                        req_gpu = res["requests"].get("nvidia.com/gpu")
                        lim_gpu = res.get("limits", {}).get("nvidia.com/gpu")
                        self.assertEqual(req_gpu, lim_gpu,
                                         f"{c['name']}: nvidia.com/gpu requests must equal limits")
                        gpus += int(lim_gpu or 0)
                        if image_repo(c["image"]) == "colo/engine":
                            engines += 1
                            env = {e["name"]: e.get("value") for e in c.get("env", [])}
                            self.assertIn("CUDA_VISIBLE_DEVICES", env, c["name"])
                            self.assertEqual(env.get("NVIDIA_VISIBLE_DEVICES"), "all", c["name"])
                    self.assertGreaterEqual(gpus, engines,
                                            f"{w['metadata']['name']}: {engines} engines, {gpus} GPUs")
                    devices = [next(e["value"] for e in c["env"] if e["name"] == "CUDA_VISIBLE_DEVICES")
                               for c in pod["containers"] if image_repo(c["image"]) == "colo/engine"]
                    self.assertEqual(len(devices), len(set(devices)), "two engines on one GPU")
                    for c in pod.get("initContainers", []):
                        self.assertIn("requests", c.get("resources", {}), c["name"])

    def test_probes(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                found_engine = False
                for w, pod, _, _ in pod_templates(r.objs):
                    for c in pod["containers"]:
                        ports = container_ports(c)
                        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                            probe = c.get(kind)
                            if not probe:
                                continue
                            self.assertIn("grpc", probe, f"{c['name']} {kind}: use a gRPC probe")
                            self.assertIn(probe["grpc"]["port"], ports,
                                          f"{c['name']} {kind} port is not a containerPort")
                            service = probe["grpc"].get("service", "")
                            if kind != "readinessProbe":
                                # Offloading (TRAINING) must never restart a container.
                                self.assertEqual(service, "", f"{c['name']} {kind}")
                        repo = image_repo(c["image"])
                        if repo in ("colo/engine", "colo/controller"):
                            self.assertIn("livenessProbe", c, c["name"])
                            self.assertIn("readinessProbe", c, c["name"])
                        if repo == "colo/engine":
                            found_engine = True
                            self.assertEqual(c["readinessProbe"]["grpc"].get("service"),
                                             GENERATE_SERVICE, c["name"])
                            self.assertIn("startupProbe", c, c["name"])
                self.assertTrue(found_engine)

    def test_volume_configmap_and_secret_references_exist(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                cms = r.by_kind.get("ConfigMap", {})
                secrets = r.by_kind.get("Secret", {})
                for w, pod, _, _ in pod_templates(r.objs):
                    volumes = {v["name"]: v for v in pod.get("volumes", [])}
                    for v in volumes.values():
                        if "configMap" in v:
                            self.assertIn(v["configMap"]["name"], cms, v)
                        if "secret" in v:
                            self.assertIn(v["secret"]["secretName"], secrets, v)
                    for c in pod["containers"] + pod.get("initContainers", []):
                        for m in c.get("volumeMounts", []):
                            self.assertIn(m["name"], volumes, f"{c['name']} mounts {m['name']}")
                        for e in c.get("env", []):
                            ref = e.get("valueFrom", {})
                            if "configMapKeyRef" in ref:
                                cm = cms.get(ref["configMapKeyRef"]["name"])
                                self.assertIsNotNone(cm, e)
                                self.assertIn(ref["configMapKeyRef"]["key"], cm.get("data", {}))
                            if "secretKeyRef" in ref:
                                s = secrets.get(ref["secretKeyRef"]["name"])
                                self.assertIsNotNone(s, e)

    # --- flags -------------------------------------------------------------------

    def container_flags(self, r, pod, c):
        """(binary, {flag: value}) of a container: args plus the flagfiles it
        loads from mounted ConfigMaps (empty for programs that are not colo's)."""
        command = c.get("command")
        if command:
            exe = os.path.basename(command[-1] if command[0].startswith("python") else command[0])
        else:
            exe = IMAGE_ENTRYPOINT.get(image_repo(c["image"]))
        self.assertIsNotNone(exe, f"{c['name']}: unknown entrypoint")
        if exe not in self.flags:
            return exe, {}  # not a colo program (e.g. chown in an init container)
        flags = parse_flags(c.get("args", []))
        if "flagfile" in flags:
            path = flags.pop("flagfile")
            content = self.mounted_file(r, pod, c, path)
            from_file = parse_flags(content.splitlines())
            for k in from_file:
                self.assertNotIn(k, flags, f"{c['name']}: --{k} both in args and {path}")
            flags.update(from_file)
        return exe, flags

    def mounted_file(self, r, pod, c, path):
        """Content of `path` when it lies on a ConfigMap or Secret volume."""
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for m in c.get("volumeMounts", []):
            prefix = m["mountPath"].rstrip("/") + "/"
            if path.startswith(prefix):
                key = path[len(prefix):]
                v = volumes[m["name"]]
                if "configMap" in v:
                    data = r.by_kind["ConfigMap"][v["configMap"]["name"]].get("data", {})
                elif "secret" in v:
                    s = r.by_kind["Secret"][v["secret"]["secretName"]]
                    data = dict(s.get("stringData", {}), **s.get("data", {}))
                else:
                    self.fail(f"{c['name']}: {path} is on a {sorted(v)} volume")
                self.assertIn(key, data, f"{c['name']}: {path}: no key {key}")
                return data[key]
        self.fail(f"{c['name']}: {path} is not on a mounted volume")

    def test_flags_are_accepted_by_the_binaries(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                for w, pod, _, _ in pod_templates(r.objs):
                    for c in pod["containers"] + pod.get("initContainers", []):
                        exe, flags = self.container_flags(r, pod, c)
                        if exe not in self.flags:
                            continue
                        accepted = self.flags[exe]
                        for name in flags:
                            self.assertIn(name, accepted, f"{c['name']}: {exe} has no --{name}")
                        env = {e["name"] for e in c.get("env", [])}
                        for value in flags.values():
                            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value or ""):
                                self.assertIn(var, env, f"{c['name']}: $({var}) is not in env")

    def test_flag_paths_lie_on_volumes(self):
        path_flags = {"auth_token_file", "engine_auth_token_file", "model", "model_dir",
                      "token_file", "journal", "tls_cert", "tls_key", "engine_tls_ca", "out"}
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                for w, pod, _, _ in pod_templates(r.objs):
                    for c in pod["containers"] + pod.get("initContainers", []):
                        _, flags = self.container_flags(r, pod, c)
                        mounts = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])]
                        for name in path_flags & set(flags):
                            path = flags[name]
                            self.assertTrue(any(path.startswith(m) for m in mounts),
                                            f"{c['name']}: --{name}={path} is not on a volume")
                            if name in ("auth_token_file", "engine_auth_token_file", "token_file"):
                                self.assertTrue(self.mounted_file(r, pod, c, path).strip())

    def test_ports_in_flags_are_declared_and_engines_reachable(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                engine_host_ports = set()
                for w, pod, _, _ in pod_templates(r.objs):
                    for c in pod["containers"]:
                        if image_repo(c["image"]) == "colo/engine":
                            engine_host_ports |= {p.get("hostPort") for p in c.get("ports", [])}
                for w, pod, _, _ in pod_templates(r.objs):
                    engine_ports = set()
                    for c in pod["containers"]:
                        if image_repo(c["image"]) == "colo/engine":
                            engine_ports |= set(container_ports(c))
                    for c in pod["containers"]:
                        exe, flags = self.container_flags(r, pod, c)
                        if exe not in ("colo-engine", "colo-controller"):
                            continue
                        ports = container_ports(c)
                        self.assertIn(int(flags["port"]), ports, f"{c['name']}: --port")
                        self.assertNotEqual(flags.get("host", "127.0.0.1"), "127.0.0.1",
                                            f"{c['name']}: probes and Services need a pod-IP bind")
                        self.assertIn("auth_token_file", flags, f"{c['name']}: off-loopback needs a token")
                        if int(flags.get("metrics_port", "-1")) > 0:
                            self.assertIn(int(flags["metrics_port"]), ports, f"{c['name']}: metrics")
                        if exe == "colo-controller":
                            for address in flags["engines"].split(","):
                                host, _, port = address.rpartition(":")
                                if host == "127.0.0.1":
                                    self.assertIn(int(port), engine_ports, address)
                                else:
                                    self.assertEqual(host, "$(HOST_IP)", address)
                                    self.assertIn(int(port), engine_host_ports, address)

    def test_rendered_flagfiles_start_the_real_binaries(self):
        """Each distinct engine/controller flag set, with its paths moved to
        a temporary directory and --port=0, starts, serves and drains."""
        seen = set()
        for r in self.rendered:
            for w, pod, _, _ in pod_templates(r.objs):
                for c in pod["containers"]:
                    exe, flags = self.container_flags(r, pod, c)
                    if exe not in ("colo-engine", "colo-controller"):
                        continue
                    key = (exe, tuple(sorted((k, v) for k, v in flags.items() if k != "engines")))
                    if key in seen:
                        continue
                    seen.add(key)
                    with self.subTest(kustomization=r.name, container=c["name"]):
                        self.start_and_stop(exe, flags)
        self.assertGreaterEqual(len({k[0] for k in seen}), 2)

    def start_and_stop(self, exe, flags):
        work = tempfile.mkdtemp(dir=self.tmp)
        flags = dict(flags)
        token = os.path.join(work, "token")
        with open(token, "w") as f:
            f.write("test-token\n")
        for name in ("auth_token_file", "engine_auth_token_file"):
            if name in flags:
                flags[name] = token
        if "journal" in flags:
            flags["journal"] = os.path.join(work, "journal")
        if "model" in flags:
            model = os.path.join(work, "model")
            subprocess.run([os.path.join(ROOT, BINARIES["colo-tiny-model"]), f"--out={model}",
                            "--layers=1", "--hidden=32", "--heads=2", "--kv_heads=1",
                            "--vocab=64"], check=True, stdout=subprocess.DEVNULL)
            flags["model"] = model
            # The flag set is for a GPU; here it runs on the test machine's
            # CPU with a small KV cache instead of a fraction of its memory.
            flags["device"] = "cpu"
            flags.pop("mem_fraction", None)
            flags["kv_cache_bytes"] = str(16 << 20)
        if "engines" in flags:
            flags["engines"] = "127.0.0.1:1"  # unreachable: the node reports FAILED, still serves
        flags["port"] = "0"
        if int(flags.get("metrics_port", "-1")) > 0:
            flags["metrics_port"] = "0"
        flags["port_file"] = os.path.join(work, "port")
        argv = [os.path.join(ROOT, BINARIES[exe])] + [
            f"--{k}" if v is None else f"--{k}={v}" for k, v in flags.items()]
        with open(os.path.join(work, "log"), "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(flags["port_file"]):
                self.assertIsNone(proc.poll(), f"{exe} exited: {open(log.name).read()}")
                self.assertLess(time.monotonic(), deadline, f"{exe}: no port file")
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(30), 0, open(log.name).read())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # --- services ----------------------------------------------------------------

    def test_services_select_pods_and_target_declared_ports(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                pods = pod_templates(r.objs)
                for svc in r.by_kind.get("Service", {}).values():
                    selector = svc["spec"].get("selector")
                    self.assertTrue(selector, f"Service {svc['metadata']['name']}: no selector")
                    matched = []
                    for w, pod, labels, names in pods:
                        candidates = [dict(labels, **{"statefulset.kubernetes.io/pod-name": n})
                                      for n in names] or [labels]
                        if any(all(l.get(k) == v for k, v in selector.items()) for l in candidates):
                            matched.append(pod)
                    self.assertTrue(matched, f"Service {svc['metadata']['name']} selects no pod")
                    for port in svc["spec"]["ports"]:
                        target = port.get("targetPort", port["port"])
                        for pod in matched:
                            named = {}
                            numbers = set()
                            for c in pod["containers"]:
                                named.update(port_names(c))
                                numbers |= set(container_ports(c))
                            if isinstance(target, str):
                                self.assertIn(target, named,
                                              f"Service {svc['metadata']['name']}: {target}")
                            else:
                                self.assertIn(target, numbers,
                                              f"Service {svc['metadata']['name']}: {target}")

    def test_engine_services_cover_every_engine(self):
        for r in self.rendered:
            with self.subTest(kustomization=r.name):
                targets = {p.get("targetPort") for s in r.by_kind.get("Service", {}).values()
                           for p in s["spec"]["ports"]}
                for w, pod, _, _ in pod_templates(r.objs):
                    for c in pod["containers"]:
                        if image_repo(c["image"]) == "colo/engine":
                            grpc = [n for n in port_names(c) if n.startswith("grpc")]
                            self.assertTrue(set(grpc) & targets, f"{c['name']}: no Service")

    # --- container files ---------------------------------------------------------

    def test_dockerfiles_install_what_the_manifests_run(self):
        docker = os.path.join(DEPLOY, "docker")
        engine = open(os.path.join(docker, "Dockerfile.engine")).read()
        controller = open(os.path.join(docker, "Dockerfile.controller")).read()
        trainer = open(os.path.join(docker, "Dockerfile.trainer")).read()
        self.assertIn("/usr/local/bin/colo-engine", engine)
        self.assertIn("/usr/local/bin/colo-tiny-model", engine)
        self.assertRegex(engine, r'ENTRYPOINT \["/usr/local/bin/colo-engine"\]')
        self.assertRegex(controller, r'ENTRYPOINT \["/usr/local/bin/colo-controller"\]')
        self.assertIn("/opt/colo/examples/example_trainer.py", trainer)
        for text in (engine, controller, trainer):
            self.assertIn("AS build", text)  # multi-stage
            for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
                self.assertTrue(os.path.exists(os.path.join(ROOT, src)) or src == ".", src)


if __name__ == "__main__":
    unittest.main()
