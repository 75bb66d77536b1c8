/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_UNIT_TESTS_H
#define VMM_TESTS_UNIT_TESTS_H

#include "kernel/util/compiler.h"
#include "tests/harness/test_util.h"

extern const struct test_case bitmap_tests[];
extern const struct test_case iotrap_tests[];
extern const struct test_case virtq_tests[];
extern const struct test_case virtio_mmio_tests[];
extern const struct test_case virtio_blk_tests[];
extern const struct test_case virtio_rng_tests[];
extern const struct test_case virtio_net_tests[];
extern const struct test_case loader_tests[];
extern const struct test_case acpi_tests[];
extern const struct test_case stream_tests[];
extern const struct test_case stripe_tests[];
extern const struct test_case image_tests[];
extern const struct test_case vmsnap_info_tests[];

#endif /* VMM_TESTS_UNIT_TESTS_H */
