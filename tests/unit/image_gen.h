/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_UNIT_IMAGE_GEN_H
#define VMM_TESTS_UNIT_IMAGE_GEN_H

/*
 * Small real images for the image tests, the fuzz harness and the
 * benchmark: guest-like pages (zero, random, text, nearly zero) and an
 * image of them with two state messages and a layout section.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/image.h"

#define GEN_SEG 7u
#define GEN_STATE_A 0x101u
#define GEN_STATE_B 0x102u
#define GEN_LAYOUT 0x201u

enum gen_kind {
	GEN_MIXED,
	GEN_ZERO,
	GEN_RANDOM,
	GEN_TEXT,
};

/* Fills @nr_pages pages at @mem with pages of @kind. */
void gen_pages(uint8_t *mem, uint64_t nr_pages, enum gen_kind kind,
	       uint32_t seed);

/* Codec workers gen_image() writes with (image_set_threads(); 0: none). */
extern unsigned int gen_image_threads;

/*
 * Writes an image of segment GEN_SEG (@nr_pages pages at @mem, the pages
 * whose bits are set in @bitmap or all) into a fresh buffer, returned in
 * @out (free() it) and @len. Returns 0 or -errno.
 */
int gen_image(enum image_codec codec, bool aligned, const uint8_t *mem,
	      uint64_t nr_pages, const uint64_t *bitmap, void **out,
	      size_t *len);

#endif /* VMM_TESTS_UNIT_IMAGE_GEN_H */
