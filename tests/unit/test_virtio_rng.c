/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio.h"

#include <linux/virtio_mmio.h>

#include "kernel/dev/virtio_mmio.h"
#include "tests/unit/unit_tests.h"
#include "tests/unit/virtio_drv.h"

static unsigned int zero_bytes(const uint8_t *p, size_t len)
{
	unsigned int n = 0;
	size_t i;

	for (i = 0; i < len; i++)
		n += !p[i];
	return n;
}

static void test_virtio_rng_fills_buffers(void)
{
	struct virtio_mmio_conf mc;
	struct drv_mem m;
	struct drv_irq irq;
	struct drv_queue q;
	struct dev *dev;
	struct virtio_mmio *t;
	uint64_t small, big, ro;
	uint32_t id, len;
	uint16_t h1, h2, h3;
	int ret;

	drv_mem_init(&m);
	drv_mmio_conf(&mc, &m, &irq);
	ret = virtio_rng_create_mmio(&mc, &dev);
	TEST_ASSERT(ret == 0, "create %d", ret);
	t = virtio_mmio_from_dev(dev);
	drv_queue_init(&q, &m, 8);
	TEST_ASSERT(drv_mmio_setup(t, &q, 1, ~0ULL) & VIRTIO_CONFIG_S_DRIVER_OK,
		    "setup");

	small = drv_alloc(&m, 256, 8);
	big = drv_alloc(&m, 80 * 1024, PAGE_SIZE);
	ro = drv_alloc(&m, 16, 8);
	{
		struct drv_buf a[] = { { small, 100, true },
				       { small + 100, 156, true } };
		struct drv_buf b = { big, 80 * 1024, true };
		struct drv_buf c = { ro, 16, false };

		h1 = drv_add(&q, a, 2);
		h2 = drv_add(&q, &b, 1);
		h3 = drv_add(&q, &c, 1);
	}
	drv_clear_dirty(&m);
	drv_write32(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);

	TEST_ASSERT(drv_get_used(&q, &id, &len) && id == h1 && len == 256,
		    "first: id %u len %u", id, len);
	TEST_ASSERT(zero_bytes(drv_ptr(&m, small), 256) < 16,
		    "%u zero bytes of 256",
		    zero_bytes(drv_ptr(&m, small), 256));
	TEST_ASSERT(drv_get_used(&q, &id, &len) && id == h2 && len == 64 * 1024,
		    "big: id %u len %u (capped at 64 KiB)", id, len);
	TEST_ASSERT(zero_bytes(drv_ptr(&m, big + 64 * 1024), 16 * 1024) ==
			    16 * 1024,
		    "wrote past the 64 KiB cap");
	TEST_ASSERT(drv_dirty(&m, big) && drv_dirty(&m, big + 60 * 1024) &&
			    !drv_dirty(&m, big + 72 * 1024),
		    "dirty pages wrong");
	TEST_ASSERT(drv_get_used(&q, &id, &len) && id == h3 && len == 0,
		    "read-only buffer: id %u len %u", id, len);
	TEST_ASSERT(irq.level && irq.raises == 1, "irq level %d raises %u",
		    irq.level, irq.raises);
	dev->ops->fini(dev);
	drv_mem_fini(&m);
}

const struct test_case virtio_rng_tests[] = {
	{ "fills_buffers", test_virtio_rng_fills_buffers },
	{ NULL, NULL },
};
