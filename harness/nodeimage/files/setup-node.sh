#!/bin/sh
# Runs once inside `docker build` of the node base image (harness.nodeimage).
# Turns the debootstrapped tree into something that boots as a kind node:
# services that fight the host (udev, gettys, timers, automounts) are masked,
# containerd and the kubelet are enabled, and the directories kind and
# kubeadm write into exist.
set -eu

# Units that either need real hardware or would act on the *host* through
# the privileged node's writable /sys and /proc/sys: udev would re-trigger
# host devices, systemd-sysctl would rewrite global kernel settings and
# modprobe@ would load host kernel modules.
for unit in \
  systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
  systemd-udevd-control.socket systemd-udevd-kernel.socket \
  getty@tty1.service console-getty.service serial-getty@.service getty.target \
  systemd-modules-load.service systemd-hwdb-update.service systemd-firstboot.service \
  systemd-pstore.service systemd-journald-audit.socket systemd-remount-fs.service \
  systemd-sysctl.service modprobe@.service \
  proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
  sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
  sys-fs-fuse-connections.mount dev-hugepages.mount \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  fstrim.timer e2scrub_reap.service
do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done

systemctl enable containerd.service kubelet.service >/dev/null
systemctl set-default multi-user.target >/dev/null

# Debian installs the CNI plugins in /usr/lib/cni; kubelet docs and tools look
# in /opt/cni/bin.
mkdir -p /opt/cni
[ -e /opt/cni/bin ] || ln -s /usr/lib/cni /opt/cni/bin

mkdir -p /etc/kubernetes/manifests /var/lib/kubelet /kind/manifests /etc/cni/net.d
rm -f /etc/containerd/config.toml
chmod 0755 /usr/local/bin/entrypoint /usr/local/bin/kubelet-cgroups
