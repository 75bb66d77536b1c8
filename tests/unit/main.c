/* SPDX-License-Identifier: MIT */
/* Unit tests: no /dev/kvm needed. One suite per module. */
#include "kernel/util/compiler.h"
#include "tests/unit/unit_tests.h"

static const struct test_suite suites[] = {
	{ "bitmap", bitmap_tests, NULL, NULL },
	{ "iotrap", iotrap_tests, NULL, NULL },
	{ "virtq", virtq_tests, NULL, NULL },
	{ "virtio_mmio", virtio_mmio_tests, NULL, NULL },
	{ "virtio_blk", virtio_blk_tests, NULL, NULL },
	{ "virtio_rng", virtio_rng_tests, NULL, NULL },
	{ "virtio_net", virtio_net_tests, NULL, NULL },
	{ "loader", loader_tests, NULL, NULL },
	{ "acpi", acpi_tests, NULL, NULL },
	{ "stream", stream_tests, NULL, NULL },
	{ "stripe", stripe_tests, NULL, NULL },
	{ "image", image_tests, NULL, NULL },
	{ "vmsnap_info", vmsnap_info_tests, NULL, NULL },
};

int main(int argc, char **argv)
{
	return test_main(suites, ARRAY_SIZE(suites), argc, argv);
}
