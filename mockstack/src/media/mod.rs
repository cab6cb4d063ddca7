//! Installation media: an ISO 9660 writer and reader, FAT driver floppies, and the OS and VirtIO-win media mockstack generates (placeholder until the media module lands).
