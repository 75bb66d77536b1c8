/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_FORMAT_H
#define VMM_SNAPSHOT_FORMAT_H

/*
 * The fixed-width parts of the image/stream format (docs/snapshot-format.md
 * is the full description). All integers are little-endian.
 *
 *   preamble  16 bytes: magic "VMRUNIMG", le32 version, le32 zero
 *   section   32-byte frame, then `length` bytes of payload
 *   ...       the first section is HEADER, the last is END
 *
 * Frame:
 *    0 le32 type      IMAGE_SEC_*
 *    4 le32 arg       STATE, LAYOUT: the caller's type id; else 0
 *    8 le64 length    payload bytes
 *   16 le64 hash      XXH3-64 (seed 0) of the payload
 *   24 le32 flags     IMAGE_SECF_*
 *   28 le32 check     low 32 bits of XXH3-64 of bytes 0..27 of the frame
 */

#include <stdint.h>

#define IMAGE_MAGIC "VMRUNIMG"
#define IMAGE_MAGIC_LEN 8
#define IMAGE_PREAMBLE_LEN 16
#define IMAGE_FRAME_LEN 32

/* The only version this code writes and reads. */
#define IMAGE_FORMAT_VERSION 1

enum image_section_type {
	IMAGE_SEC_HEADER = 1, /* vmrun.ImageHeader */
	IMAGE_SEC_STATE = 2,  /* a state message, opaque; arg = type id */
	IMAGE_SEC_LAYOUT = 3, /* the memory layout, opaque; arg = type id */
	IMAGE_SEC_PAGES = 4,  /* le32 n, n bytes of vmrun.PageBatch, data */
	IMAGE_SEC_END = 5,    /* vmrun.ImageTrailer */
};

/* A reader that does not know the section's type may skip it. */
#define IMAGE_SECF_SKIPPABLE 0x1u
#define IMAGE_SECF_KNOWN IMAGE_SECF_SKIPPABLE

#define IMAGE_PAGE_SIZE 4096u

/* Writers' default and readers' ceiling for pages in one data batch. */
#define IMAGE_BATCH_PAGES 256u
#define IMAGE_MAX_BATCH_PAGES 4096u

/* Most (first, count) pairs in one PAGES section. */
#define IMAGE_MAX_RUNS 8192u

/* Readers refuse longer payloads. */
#define IMAGE_MAX_HEADER_LEN (1u << 20)
#define IMAGE_MAX_STATE_LEN (64u << 20)
#define IMAGE_MAX_DESC_LEN (1u << 20)
#define IMAGE_MAX_END_LEN 4096u

#endif /* VMM_SNAPSHOT_FORMAT_H */
