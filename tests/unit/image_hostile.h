/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_UNIT_IMAGE_HOSTILE_H
#define VMM_TESTS_UNIT_IMAGE_HOSTILE_H

/* The image reader against corrupt and hostile input (test_image_hostile.c). */
void test_image_truncated_everywhere(void);
void test_image_bit_flip_everywhere(void);
void test_image_wrong_version(void);
void test_image_hostile_sections(void);
void test_image_payload_checksum_mismatch(void);
void test_image_index_bit_flip_everywhere(void);

#endif /* VMM_TESTS_UNIT_IMAGE_HOSTILE_H */
