"""A Nova compute driver for the local real cloud (`cargo xtask realstack up`).

Installed as `nova/virt/realstack.py` (Nova loads drivers only from its own `nova.virt`
package) and selected with `compute_driver = realstack.RealstackDriver`.

It keeps the fake driver's bookkeeping but handles image data the way stock Nova's libvirt
driver does for an ISO boot, so the isoharness workflow sees what it would see there:

* `spawn` downloads the boot image from Glance into `<instances_path>/<uuid>/disk` (libvirt
  would put the ISO behind a qcow2 overlay as the root cdrom device `hda`).
* Booted from an ISO (`disk_format` iso) the guest plays an unattended installer: it writes
  a console log, and after `[realstack] install_seconds` it powers itself off. The driver then
  reports power state SHUTDOWN from `get_info` and emits a STOPPED lifecycle event, exactly as
  the libvirt driver does when a guest shuts down; the compute manager's
  `handle_lifecycle_event` -> `_sync_instance_power_state` sees an ACTIVE instance whose guest
  is off and calls the stop API, so the server becomes SHUTOFF. (The periodic
  `_sync_power_states` task notices it too, as a fallback.)
* Booted from a disk image, the "BIOS" looks at the first sector of the guest-visible data:
  without the 0x55AA boot signature it prints SeaBIOS's "No bootable device." and halts, as a
  server booted from a snapshot of an ISO does under stock Nova. With a boot signature it
  prints "Booting from Hard Disk..." and nothing more: this driver runs no guest code.
* `snapshot` captures the first disk, which for an ISO boot is the ISO itself: it converts
  `disk` to qcow2 (libvirt's snapshot format for a qcow2-backed root) and uploads it through
  `nova.image.glance.API().update`, with the metadata the libvirt driver sends.
"""

import os
import shutil
import subprocess
import threading
import time

from oslo_config import cfg
from oslo_log import log as logging

from nova.compute import power_state
from nova.compute import task_states
from nova import exception
from nova.image import glance
from nova.virt import event as virtevent
from nova.virt import fake

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

CONF.register_opts(
    [
        cfg.FloatOpt(
            "install_seconds",
            default=12.0,
            help="How long the simulated installer runs before the guest powers itself off.",
        ),
    ],
    group="realstack",
)

BOOT_SIGNATURE = b"\x55\xaa"


class RealstackDriver(fake.FakeDriverWithoutFakeNodes):
    """The fake driver with real image data: downloads on spawn, uploads on snapshot."""

    capabilities = dict(
        fake.FakeDriverWithoutFakeNodes.capabilities,
        supports_image_type_iso=True,
        supports_image_type_qcow2=True,
    )

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self._image_api = glance.API()
        self._timers = {}
        self._lock = threading.Lock()

    # Files of one instance -------------------------------------------------------------

    def _instance_dir(self, instance):
        return os.path.join(CONF.instances_path, instance.uuid)

    def _console_path(self, instance):
        return os.path.join(self._instance_dir(instance), "console.log")

    def _console(self, instance, line):
        with open(self._console_path(instance), "a", encoding="utf-8") as console:
            console.write(f"[{time.monotonic():12.6f}] {line}\n")

    # Lifecycle ---------------------------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        directory = self._instance_dir(instance)
        os.makedirs(directory, exist_ok=True)
        disk = os.path.join(directory, "disk")
        image_id = image_meta.id if image_meta.obj_attr_is_set("id") else None
        if image_id:
            self._image_api.download(context, image_id, dest_path=disk)
        else:
            open(disk, "wb").close()
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info, block_device_info, power_on, accel_info)
        disk_format = image_meta.disk_format if image_meta.obj_attr_is_set("disk_format") else None
        self._console(instance, "SeaBIOS (version realstack)")
        if disk_format == "iso":
            self._console(instance, "Booting from DVD/CD...")
            self._console(instance, "Starting the unattended installer (realstack fake driver)")
            timer = threading.Timer(CONF.realstack.install_seconds, self._installer_done, (instance.uuid, directory))
            timer.daemon = True
            with self._lock:
                self._timers[instance.uuid] = timer
            timer.start()
        else:
            self._console(instance, "Booting from Hard Disk...")
            if not self._has_boot_signature(disk, disk_format):
                self._console(instance, "Boot failed: not a bootable disk")
                self._console(instance, "No bootable device.")

    def _installer_done(self, uuid, directory):
        with self._lock:
            self._timers.pop(uuid, None)
            guest = self.instances.get(uuid)
            if guest is None or guest.state != power_state.RUNNING:
                return
            guest.state = power_state.SHUTDOWN
        with open(os.path.join(directory, "console.log"), "a", encoding="utf-8") as console:
            console.write(f"[{time.monotonic():12.6f}] The installation is complete: powering off\n")
            console.write(f"[{time.monotonic():12.6f}] reboot: Power down\n")
        LOG.info("The guest of instance %s powered itself off", uuid)
        self.emit_event(virtevent.LifecycleEvent(uuid, virtevent.EVENT_LIFECYCLE_STOPPED))

    @staticmethod
    def _has_boot_signature(disk, disk_format):
        """Whether the guest sees a boot signature at the end of its first sector."""
        try:
            if disk_format == "qcow2":
                sector = subprocess.run(
                    ["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"if={disk}", "of=/dev/stdout",
                     "bs=512", "count=1"],
                    check=True, capture_output=True).stdout
            else:
                with open(disk, "rb") as data:
                    sector = data.read(512)
        except (OSError, subprocess.CalledProcessError) as error:
            LOG.warning("cannot read the first sector of %s: %s", disk, error)
            return False
        return len(sector) == 512 and sector[510:512] == BOOT_SIGNATURE

    def destroy(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                destroy_secrets=True):
        with self._lock:
            timer = self._timers.pop(instance.uuid, None)
        if timer is not None:
            timer.cancel()
        super().destroy(context, instance, network_info, block_device_info, destroy_disks, destroy_secrets)
        if destroy_disks:
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def power_off(self, instance, timeout=0, retry_interval=0):
        with self._lock:
            timer = self._timers.pop(instance.uuid, None)
        if timer is not None:
            timer.cancel()
        super().power_off(instance, timeout, retry_interval)

    def get_console_output(self, context, instance):
        try:
            with open(self._console_path(instance), "rb") as console:
                return console.read()[-100 * 1024:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # Snapshots ---------------------------------------------------------------------------

    def snapshot(self, context, instance, image_id, update_task_state):
        if instance.uuid not in self.instances:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        snapshot = self._image_api.get(context, image_id)
        disk = os.path.join(self._instance_dir(instance), "disk")
        image_format = "qcow2" if shutil.which("qemu-img") else "raw"
        meta = instance.image_meta
        source_format = "qcow2" if meta.obj_attr_is_set("disk_format") and meta.disk_format == "qcow2" else "raw"
        metadata = {
            "status": "active",
            "name": snapshot["name"],
            "properties": {
                "kernel_id": instance.kernel_id,
                "image_location": "snapshot",
                "image_state": "available",
                "owner_id": instance.project_id,
                "ramdisk_id": instance.ramdisk_id,
            },
            "disk_format": image_format,
            "container_format": meta.container_format if meta.obj_attr_is_set("container_format") else "bare",
        }
        if instance.os_type:
            metadata["properties"]["os_type"] = instance.os_type
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        extracted = os.path.join(self._instance_dir(instance), f"snapshot-{image_id}")
        try:
            if image_format == "qcow2" or source_format == "qcow2":
                subprocess.run(["qemu-img", "convert", "-f", source_format, "-O", image_format, disk, extracted],
                               check=True, capture_output=True)
            else:
                shutil.copyfile(disk, extracted)
            LOG.info("Snapshot extracted, beginning image upload", instance=instance)
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            with open(extracted, "rb") as image_file:
                self._image_api.update(context, image_id, metadata, image_file)
        finally:
            if os.path.exists(extracted):
                os.unlink(extracted)
        LOG.info("Snapshot image upload complete", instance=instance)
