"""Text of the generated node files (pure functions, no I/O).

These depend on build-time facts (the pause tag kubeadm reports, the pod
subnet), so they are rendered rather than kept as static files under
``files/rootfs``.
"""

from __future__ import annotations

import ipaddress
import json

__all__ = [
    "CNI_CONFLIST_PATH",
    "CONTAINERD_CONFIG_PATH",
    "CONTAINERD_UNIT_PATH",
    "DEFAULT_CNI_MANIFEST_PATH",
    "KIND_VERSION_PATH",
    "KUBELET_CGROUP_V1_DROPIN_PATH",
    "KUBELET_CONFIG_DIR",
    "KUBELET_CONFIG_DIR_DROPIN_PATH",
    "cgroupfs_driver_patches",
    "cni_conflist",
    "containerd2_config",
    "containerd_config",
    "containerd_unit",
    "default_cni_manifest",
    "kind_version_file",
    "kubelet_cgroup_v1_dropin",
    "kubelet_config_dir_unit_dropin",
    "netd_manifest",
    "node_pod_cidr",
]

CONTAINERD_CONFIG_PATH = "/etc/containerd/config.toml"
CNI_CONFLIST_PATH = "/etc/cni/net.d/10-offline-ptp.conflist"
DEFAULT_CNI_MANIFEST_PATH = "/kind/manifests/default-cni.yaml"
KIND_VERSION_PATH = "/kind/version"
CONTAINERD_UNIT_PATH = "/etc/systemd/system/containerd.service"
KUBELET_CONFIG_DIR = "/etc/kubernetes/kubelet.conf.d"
KUBELET_CONFIG_DIR_DROPIN_PATH = "/etc/systemd/system/kubelet.service.d/30-offline-config-dir.conf"
KUBELET_CGROUP_V1_DROPIN_PATH = f"{KUBELET_CONFIG_DIR}/50-offline-cgroup-v1.conf"

#: Where Debian's containernetworking-plugins package installs the plugins.
CNI_BIN_DIR = "/usr/lib/cni"


def containerd_config(sandbox_image: str) -> str:
    """containerd 1.6 ``config.toml`` (version 2 syntax) for a kind node.

    * ``restrict_oom_score_adj``: nested containers may not lower their OOM
      score below the node's; without it every sandbox fails to start on
      hosts whose Docker cannot grant CAP_SYS_RESOURCE.
    * ``tolerate_missing_hugepages_controller``: Docker may hide hugetlb.
    * ``SystemdCgroup``: kind configures the kubelet's systemd cgroup driver,
      and both must agree.
    * ``sandbox_image``: the exact pause tag kubeadm expects, preloaded.
    * ``snapshotter`` is explicit because ``kind load`` reads it from the
      config dump.
    """
    if '"' in sandbox_image or not sandbox_image:
        raise ValueError(f"bad sandbox image: {sandbox_image!r}")
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# containerd config of the offline kind node (harness.nodeimage)
version = 2

[{cri}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  tolerate_missing_hugepages_controller = true
  enable_unprivileged_ports = false

[{cri}.containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = true

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "/etc/cni/net.d"
"""


def containerd2_config(sandbox_image: str) -> str:
    """containerd 2.x ``config.toml`` (``version = 3``) for a kind node; same choices as :func:`containerd_config`.

    The CRI plugin is split in 2.x: images (snapshotter, pinned sandbox image)
    and runtime (runc, OOM score, CNI). kind >= v0.31 reads the snapshotter
    from ``io.containerd.cri.v1.images`` of ``containerd config dump`` for
    ``kind load``. ``tolerate_missing_hugepages_controller`` is now spelt
    ``..._hugetlb_...``.
    """
    if '"' in sandbox_image or not sandbox_image:
        raise ValueError(f"bad sandbox image: {sandbox_image!r}")
    images = "plugins.'io.containerd.cri.v1.images'"
    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""# containerd 2.x config of the offline kind node (harness.nodeimage)
version = 3

[{images}]
  snapshotter = "overlayfs"
  discard_unpacked_layers = false

[{images}.pinned_images]
  sandbox = "{sandbox_image}"

[{images}.registry]
  config_path = "/etc/containerd/certs.d"

[{runtime}]
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false

[{runtime}.containerd]
  default_runtime_name = "runc"

[{runtime}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{runtime}.containerd.runtimes.runc.options]
  SystemdCgroup = true

[{runtime}.cni]
  bin_dirs = ["{CNI_BIN_DIR}"]
  conf_dir = "/etc/cni/net.d"
"""


def containerd_unit(containerd: str = "/usr/local/bin/containerd") -> str:
    """systemd unit for the containerd we compile (Debian's package, and so its unit, is absent)."""
    return f"""# containerd compiled from Go modules (harness.nodeimage)
[Unit]
Description=containerd container runtime
After=network.target local-fs.target

[Service]
ExecStart={containerd}
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=1
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
"""


def kubelet_config_dir_unit_dropin() -> str:
    """Unit drop-in adding ``--config-dir``: kubeadm writes config.yaml, our drop-ins override it.

    The later drop-in's ``Environment=`` replaces ``KUBELET_CONFIG_ARGS`` of
    10-kubeadm.conf, so ``ExecStart`` stays as it is.
    """
    args = f"--config=/var/lib/kubelet/config.yaml --config-dir={KUBELET_CONFIG_DIR}"
    return ("# Kubelet config drop-ins of the offline node (harness.nodeimage)\n"
            f'[Service]\nEnvironment="KUBELET_CONFIG_ARGS={args}"\n')


def kubelet_cgroup_v1_dropin() -> str:
    """``failCgroupV1: false``: from 1.35 the kubelet exits on cgroup v1 hosts unless told otherwise.

    A kubelet config drop-in (not a kind kubeadmConfigPatch) so that a plain
    ``kind create cluster --image <this>`` works too; it is a no-op on cgroup v2.
    """
    return ("# harness.nodeimage: keep running on cgroup v1 hosts (the kubelet's default is to exit, k/k#134298)\n"
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailCgroupV1: false\n")


def cgroupfs_driver_patches() -> tuple[str, str]:
    """kind config patches (containerd, kubeadm) that move a node's runc and kubelet to the cgroupfs driver.

    For our containerd 2.x / runc 1.5 nodes on a cgroup v1 host. With the
    systemd driver, runc freezes a new container's cgroup v1 freezer before
    systemd re-applies its device rules, and since runc 1.2 a freeze that
    does not settle in time fails the start: ``error setting cgroup config
    for procHooks process: unable to freeze``, a StartError that fails a
    ``restartPolicy: Never`` Job outright. It was seen on this 2-core CI
    host under load. The cgroupfs driver sets the cgroup files directly and
    never freezes; kind itself runs its nodes this way for Kubernetes < 1.24
    (``cgroupRoot: /kubelet`` under the node's private cgroup namespace).
    Both sides must agree, hence the pair. Applied at ``kind create``, so the
    node image stays as built and a plain ``kind create --image`` is unchanged.
    """
    runc = "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options"
    return (f"[{runc}]\n  SystemdCgroup = false\n",
            "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n")


def node_pod_cidr(pod_subnet: str, index: int = 0) -> str:
    """The ``index``-th /24 of ``pod_subnet``: what the controller-manager gives node ``index``."""
    net = ipaddress.ip_network(pod_subnet)
    if net.version != 4 or net.prefixlen > 24:
        raise ValueError(f"need an IPv4 pod subnet of /24 or larger, got {pod_subnet}")
    subnets = net.subnets(new_prefix=24)
    for i, sub in enumerate(subnets):
        if i == index:
            return str(sub)
    raise ValueError(f"{pod_subnet} has no /24 number {index}")


def cni_conflist(pod_cidr: str) -> str:
    """Static single-node CNI: ptp veths, host-local IPAM, portmap for hostPorts.

    Chosen over kindnetd because every plugin ships in Debian and was proven
    on this host class; it is enough for one node (no cross-node routes).
    """
    net = ipaddress.ip_network(pod_cidr)
    conf = {
        "cniVersion": "0.4.0",
        "name": "offline-ptp",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": True,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(net)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": "/run/cni-ipam-state",
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def default_cni_manifest(pod_cidr: str) -> str:
    """What kind applies as "the CNI": a ConfigMap recording the static setup.

    kind insists on applying ``/kind/manifests/default-cni.yaml``; the network
    itself is the conflist baked into the node, so the manifest only
    documents it (and makes ``kubectl -n kube-system get cm offline-cni`` a
    cheap way to tell which node image a cluster runs).
    """
    return f"""# Applied by kind at cluster creation. The pod network of this node image is a
# static CNI conflist baked into the node (ptp + host-local + portmap); this
# ConfigMap only records that fact.
apiVersion: v1
kind: ConfigMap
metadata:
  name: offline-cni
  namespace: kube-system
  labels:
    app.kubernetes.io/managed-by: harness-nodeimage
data:
  plugin-chain: ptp,host-local,portmap
  pod-cidr: "{pod_cidr}"
  conflist-path: "{CNI_CONFLIST_PATH}"
"""


def kind_version_file(kubernetes_version: str) -> str:
    """``/kind/version``: kind reads it as exactly one line."""
    if "\n" in kubernetes_version.strip() or not kubernetes_version.startswith("v"):
        raise ValueError(f"bad version: {kubernetes_version!r}")
    return kubernetes_version.strip() + "\n"


def netd_manifest(image: str) -> str:
    """``default-cni.yaml`` for multi-node clusters: our ``harness-netd`` DaemonSet.

    kind fills ``{{ .PodSubnet }}`` (the "template" marker) and appends
    ``CONTROL_PLANE_ENDPOINT`` to the first container's env (the "patch"
    marker), so the daemon reaches the API server before kube-proxy runs.
    The daemon writes each node's bridge conflist and routes the other nodes'
    pod CIDRs via their InternalIPs.
    """
    if not image or any(c in image for c in '"{} '):
        raise ValueError(f"bad image reference: {image!r}")
    return f"""# would you kindly template this file
# would you kindly patch this file
# Pod network of the registry-less node image (harness.nodeimage): harness-netd.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: harness-netd
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: harness-netd
rules:
  - apiGroups: [""]
    resources: ["nodes"]
    verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: harness-netd
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: harness-netd
subjects:
  - kind: ServiceAccount
    name: harness-netd
    namespace: kube-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: harness-netd
  namespace: kube-system
  labels:
    app: harness-netd
    app.kubernetes.io/managed-by: harness-nodeimage
spec:
  selector:
    matchLabels:
      app: harness-netd
  template:
    metadata:
      labels:
        app: harness-netd
    spec:
      hostNetwork: true
      serviceAccountName: harness-netd
      priorityClassName: system-node-critical
      tolerations:
        - operator: Exists
      containers:
        - name: harness-netd
          image: {image}
          imagePullPolicy: Never
          env:
            - name: NODE_NAME
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
            - name: POD_SUBNET
              value: "{{{{ .PodSubnet }}}}"
          securityContext:
            privileged: true
          resources:
            requests:
              cpu: 10m
              memory: 20Mi
          volumeMounts:
            - name: cni-cfg
              mountPath: /etc/cni/net.d
            - name: xtables-lock
              mountPath: /run/xtables.lock
      volumes:
        - name: cni-cfg
          hostPath:
            path: /etc/cni/net.d
            type: DirectoryOrCreate
        - name: xtables-lock
          hostPath:
            path: /run/xtables.lock
            type: FileOrCreate
"""
