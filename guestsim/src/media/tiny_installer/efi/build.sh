#!/bin/sh
# Builds the UEFI tiny installer: installer.efi (unsigned) and bootx64.efi (the same, signed with Debian's published
# OVMF test key, which OVMF_VARS_4M.snakeoil.fd enrols in db, so that it also runs under Secure Boot).
#
# Needs gcc, binutils, gnu-efi (3.0.15: crt0, linker script, libgnuefi for the self-relocation), openssl and
# sbsigntool. Reproducible: the same inputs give the same bytes (no paths, build ids or clock times in the output);
# run it twice and compare. Both binaries are committed, so building media needs nothing beyond the Rust toolchain.
#
# Usage: build.sh [OUT_DIR]   (default: beside this script)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

EFI_INC=/usr/include/efi
EFI_LIB=/usr/lib
KEY=/usr/share/ovmf/PkKek-1-snakeoil.key
CERT=/usr/share/ovmf/PkKek-1-snakeoil.pem

# One fixed time for anything that would write the clock's (objcopy 2.40 writes a TimeDateStamp of 0 from an ELF
# input, and would read SOURCE_DATE_EPOCH otherwise; sbsign's signingTime comes from time(), see the shim below).
# 2024-01-01T00:00:00Z: after the test certificate's notBefore.
export SOURCE_DATE_EPOCH=1704067200
export LC_ALL=C

gcc -c -Os -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
    -ffreestanding -fno-builtin -fpic -fshort-wchar -fno-stack-protector -fno-stack-check \
    -fno-strict-aliasing -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-ident \
    -mno-red-zone -mno-sse -mno-mmx -maccumulate-outgoing-args -DGNU_EFI_USE_MS_ABI \
    -ffile-prefix-map="$here"=. -ffile-prefix-map="$work"=. \
    -I"$EFI_INC" -I"$EFI_INC/x86_64" -I"$EFI_INC/protocol" \
    -o "$work/installer.o" "$here/installer.c"

ld -nostdlib -znocombreloc -shared -Bsymbolic --build-id=none --no-undefined \
    -T "$EFI_LIB/elf_x86_64_efi.lds" \
    "$EFI_LIB/crt0-efi-x86_64.o" "$work/installer.o" \
    -L"$EFI_LIB" -lgnuefi \
    -o "$work/installer.so"

objcopy -j .text -j .sdata -j .data -j .rodata -j .dynamic -j .dynsym -j .rel -j .rela -j '.rel.*' -j '.rela.*' \
    -j .reloc --strip-all --target efi-app-x86_64 --subsystem=10 \
    "$work/installer.so" "$work/installer.efi"

# OpenSSL puts the signing time into the signature's authenticated attributes, from time(): a preloaded time()
# answering SOURCE_DATE_EPOCH makes the signature (RSA PKCS#1 v1.5, deterministic) the same on every build. The
# firmware does not look at that time.
printf '#include <time.h>\ntime_t time(time_t *t) { if (t) *t = %s; return %s; }\n' \
    "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH" >"$work/fixed_time.c"
gcc -shared -fpic -O2 -o "$work/fixed_time.so" "$work/fixed_time.c"

# The key is encrypted with the passphrase Debian publishes for it (README.Debian of ovmf: 'snakeoil'); sbsign
# would ask for it on the terminal.
openssl pkey -in "$KEY" -passin pass:snakeoil -out "$work/key.pem"
LD_PRELOAD="$work/fixed_time.so" sbsign --key "$work/key.pem" --cert "$CERT" \
    --output "$work/bootx64.efi" "$work/installer.efi" 2>"$work/sbsign.log" || {
    cat "$work/sbsign.log" >&2
    exit 1
}

cp "$work/installer.efi" "$out/installer.efi"
cp "$work/bootx64.efi" "$out/bootx64.efi"
chmod 644 "$out/installer.efi" "$out/bootx64.efi"
