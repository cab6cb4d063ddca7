//! The image property names Nova's `ImageMetaProps` knows (its fields and their legacy names), which decide what 2.98 embeds in a server's `image`.
//!
//! A server keeps every property of its boot image in its system metadata (`image_<name>`, the
//! value cut to 255 bytes); from 2.98 the server view shows those whose name is a standard one, so
//! a custom property (`isoharness_os`, say) stays out of the server view while `os_type` and the
//! legacy `architecture` are in. The names are Nova 34's.

/// `ImageMetaProps.fields`.
const FIELDS: [&str; 86] = [
    "hw_architecture",
    "hw_auto_disk_config",
    "hw_boot_menu",
    "hw_cdrom_bus",
    "hw_cpu_cores",
    "hw_cpu_max_cores",
    "hw_cpu_max_sockets",
    "hw_cpu_max_threads",
    "hw_cpu_policy",
    "hw_cpu_realtime_mask",
    "hw_cpu_sockets",
    "hw_cpu_thread_policy",
    "hw_cpu_threads",
    "hw_device_id",
    "hw_disk_bus",
    "hw_disk_type",
    "hw_emulation_architecture",
    "hw_ephemeral_encryption",
    "hw_ephemeral_encryption_format",
    "hw_ephemeral_encryption_secret_uuid",
    "hw_firmware_stateless",
    "hw_firmware_type",
    "hw_floppy_bus",
    "hw_input_bus",
    "hw_ipxe_boot",
    "hw_locked_memory",
    "hw_machine_type",
    "hw_maxphysaddr_bits",
    "hw_maxphysaddr_mode",
    "hw_mem_encryption",
    "hw_mem_encryption_model",
    "hw_mem_page_size",
    "hw_numa_cpus",
    "hw_numa_mem",
    "hw_numa_nodes",
    "hw_pci_numa_affinity_policy",
    "hw_pmu",
    "hw_pointer_model",
    "hw_qemu_guest_agent",
    "hw_redirected_usb_ports",
    "hw_rescue_bus",
    "hw_rescue_device",
    "hw_rng_model",
    "hw_scsi_model",
    "hw_serial_port_count",
    "hw_sound_model",
    "hw_time_hpet",
    "hw_tpm_model",
    "hw_tpm_version",
    "hw_usb_model",
    "hw_video_model",
    "hw_video_ram",
    "hw_vif_model",
    "hw_vif_multiqueue_enabled",
    "hw_viommu_model",
    "hw_virtio_packed_ring",
    "hw_vm_mode",
    "hw_watchdog_action",
    "img_bdm_v2",
    "img_bittorrent",
    "img_block_device_mapping",
    "img_cache_in_nova",
    "img_compression_level",
    "img_config_drive",
    "img_hide_hypervisor_id",
    "img_hv_requested_version",
    "img_hv_type",
    "img_linked_clone",
    "img_mappings",
    "img_owner_id",
    "img_root_device_name",
    "img_signature",
    "img_signature_certificate_uuid",
    "img_signature_hash_method",
    "img_signature_key_type",
    "img_use_agent",
    "img_version",
    "os_admin_user",
    "os_command_line",
    "os_distro",
    "os_require_quiesce",
    "os_secure_boot",
    "os_skip_agent_inject_files_at_boot",
    "os_skip_agent_inject_ssh",
    "os_type",
    "traits_required",
];

/// The keys of `ImageMetaProps._legacy_property_map` (older names Nova still reads).
const LEGACY_NAMES: [&str; 22] = [
    "architecture",
    "auto_disk_config",
    "bdm_v2",
    "bittorrent",
    "block_device_mapping",
    "cache_in_nova",
    "hypervisor_type",
    "hypervisor_version_requires",
    "ipxe_boot",
    "mappings",
    "owner_id",
    "root_device_name",
    "vm_mode",
    "vmware_disktype",
    "vmware_image_version",
    "vmware_linked_clone",
    "vmware_ostype",
    "xenapi_device_id",
    "xenapi_image_compression_level",
    "xenapi_skip_agent_inject_files_at_boot",
    "xenapi_skip_agent_inject_ssh",
    "xenapi_use_agent",
];

/// Whether `name` is a standard image property (a field of `ImageMetaProps` or a legacy name of one).
pub fn is_standard_property(name: &str) -> bool {
    FIELDS.binary_search(&name).is_ok() || LEGACY_NAMES.binary_search(&name).is_ok()
}

/// The system metadata key prefix of a boot image's properties.
pub const SYSTEM_METADATA_PREFIX: &str = "image_";

/// Properties never kept in system metadata (`utils.SM_SKIP_KEYS`): block device mappings.
pub const NOT_KEPT: [&str; 4] = ["mappings", "block_device_mapping", "img_mappings", "img_block_device_mapping"];

/// How a property value is kept in system metadata (`utils.safe_truncate(value, 255)`): at most
/// 255 bytes of UTF-8, never cutting a character in two.
pub fn system_metadata_value(value: &str) -> String {
    let mut end = value.len().min(255);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_lists_are_sorted_for_binary_search() {
        assert!(FIELDS.is_sorted() && LEGACY_NAMES.is_sorted());
        for name in ["os_type", "hw_firmware_type", "architecture", "traits_required", "xenapi_use_agent"] {
            assert!(is_standard_property(name), "{name}");
        }
        for name in ["os_hash_value", "isoharness_os", "min_ram", "disk_format", "base_image_ref", "trait:X"] {
            assert!(!is_standard_property(name), "{name}");
        }
    }

    #[test]
    fn kept_values_are_cut_at_255_bytes_on_a_character_boundary() {
        assert_eq!(system_metadata_value("linux"), "linux");
        assert_eq!(system_metadata_value(&"a".repeat(300)).len(), 255);
        // 127 two-byte characters are 254 bytes; the 128th would end at byte 256.
        let cut = system_metadata_value(&format!("{}é", "é".repeat(127)));
        assert_eq!((cut.len(), cut.chars().count()), (254, 127));
    }
}
