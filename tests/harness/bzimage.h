/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_BZIMAGE_H
#define VMM_TESTS_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

/*
 * A Linux bzImage around @elf (@n bytes), laid out as the kernel's build
 * lays one out: a one-sector setup with a boot protocol 2.15 header
 * (64-bit entry, loaded at 16 MiB), then the protected-mode part holding
 * the ELF compressed as @fmt ("xz", "zstd" or "lz4", the legacy frame) with its size appended.
 * Returns a malloc()ed image of *@len bytes, or NULL; *@payload_off and
 * *@payload_len (may be NULL) say where the compressed stream lies.
 */
uint8_t *bzimage_wrap(const void *elf, size_t n, const char *fmt, size_t *len,
		      size_t *payload_off, size_t *payload_len);

#endif /* VMM_TESTS_BZIMAGE_H */
