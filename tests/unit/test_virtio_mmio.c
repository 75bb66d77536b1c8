/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio_mmio.h"

#include <errno.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "kernel/dev/virtio.h"
#include "kernel/util/log.h"
#include "tests/unit/unit_tests.h"
#include "tests/unit/virtio_drv.h"

/*
 * The transport is driven through virtio-rng, the simplest device: one
 * queue, no config space.
 */

#define ALL_FEATURES (~0ULL)
#define ST_UP                                                   \
	(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | \
	 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK)

struct mfix {
	struct drv_mem m;
	struct drv_irq irq;
	struct drv_queue q;
	struct dev *dev;
	struct virtio_mmio *t;
	enum log_level lvl;
};

static struct mfix *mfix_new(void)
{
	struct mfix *f = calloc(1, sizeof(*f));
	struct virtio_mmio_conf mc;
	int ret;

	drv_mem_init(&f->m);
	drv_mmio_conf(&mc, &f->m, &f->irq);
	ret = virtio_rng_create_mmio(&mc, &f->dev);
	TEST_ASSERT(ret == 0, "create: %d", ret);
	f->t = virtio_mmio_from_dev(f->dev);
	drv_queue_init(&f->q, &f->m, 16);
	f->lvl = log_get_level();
	log_set_level(LOG_ERR);
	return f;
}

static void mfix_free(struct mfix *f)
{
	log_set_level(f->lvl);
	f->dev->ops->fini(f->dev);
	drv_mem_fini(&f->m);
	free(f);
}

static void test_virtio_mmio_identity(void)
{
	struct mfix *f = mfix_new();
	uint8_t b = 0x55;
	uint16_t h = 0x5555;

	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976,
		    "magic %#x", drv_read32(f->t, VIRTIO_MMIO_MAGIC_VALUE));
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_VERSION) == 2, "version %u",
		    drv_read32(f->t, VIRTIO_MMIO_VERSION));
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_RNG,
		    "device id %u", drv_read32(f->t, VIRTIO_MMIO_DEVICE_ID));
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_VENDOR_ID) ==
			    VIRTIO_MMIO_VENDOR,
		    "vendor %#x", drv_read32(f->t, VIRTIO_MMIO_VENDOR_ID));
	drv_write32(f->t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_DEVICE_FEATURES) & 1,
		    "VERSION_1 not offered: %#x",
		    drv_read32(f->t, VIRTIO_MMIO_DEVICE_FEATURES));
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_SEL, 0);
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_QUEUE_NUM_MAX) == 64,
		    "queue max %u",
		    drv_read32(f->t, VIRTIO_MMIO_QUEUE_NUM_MAX));
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_SEL, 1);
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_QUEUE_NUM_MAX) == 0,
		    "queue 1 exists");
	/* Narrow register access and config beyond its end read as 0. */
	virtio_mmio_access(f->t, VIRTIO_MMIO_MAGIC_VALUE, &b, 1, false);
	TEST_ASSERT(b == 0, "byte read of a register: %#x", b);
	virtio_mmio_access(f->t, VIRTIO_MMIO_CONFIG + 6, &h, 2, false);
	TEST_ASSERT(h == 0, "config read past its end: %#x", h);
	virtio_mmio_access(f->t, 0x1ff, &h, 2, false);
	mfix_free(f);
}

static void test_virtio_mmio_feature_negotiation(void)
{
	struct mfix *f = mfix_new();
	uint32_t st;

	/* A legacy driver (no VERSION_1) is refused FEATURES_OK. */
	st = drv_mmio_setup(f->t, &f->q, 1, ~(1ULL << VIRTIO_F_VERSION_1));
	TEST_ASSERT(!(st & VIRTIO_CONFIG_S_FEATURES_OK), "status %#x", st);
	/* Bits not offered are refused too. */
	drv_write32(f->t, VIRTIO_MMIO_STATUS, 0);
	drv_write32(f->t, VIRTIO_MMIO_STATUS, 3);
	drv_write32(f->t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	drv_write32(f->t, VIRTIO_MMIO_DRIVER_FEATURES, 1 | 0x80);
	drv_write32(f->t, VIRTIO_MMIO_STATUS, 3 | VIRTIO_CONFIG_S_FEATURES_OK);
	st = drv_read32(f->t, VIRTIO_MMIO_STATUS);
	TEST_ASSERT(!(st & VIRTIO_CONFIG_S_FEATURES_OK), "status %#x", st);
	/* A proper driver gets everything it asked for. */
	st = drv_mmio_setup(f->t, &f->q, 1, ALL_FEATURES);
	TEST_ASSERT(st == ST_UP, "status %#x", st);
	TEST_ASSERT(virtio_mmio_features(f->t) ==
			    ((1ULL << VIRTIO_F_VERSION_1) |
			     (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
			     (1ULL << VIRTIO_RING_F_EVENT_IDX)),
		    "features %#llx",
		    (unsigned long long)virtio_mmio_features(f->t));
	/* Features are frozen after FEATURES_OK. */
	drv_write32(f->t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_write32(f->t, VIRTIO_MMIO_DRIVER_FEATURES, 0);
	TEST_ASSERT(virtio_mmio_features(f->t) >> 28 == 0x13,
		    "features changed: %#llx",
		    (unsigned long long)virtio_mmio_features(f->t));
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_SEL, 0);
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_QUEUE_READY) == 1,
		    "queue not ready");
	mfix_free(f);
}

static void test_virtio_mmio_bad_queue_needs_reset(void)
{
	struct mfix *f = mfix_new();
	uint32_t st;

	f->q.size = 128; /* above QueueNumMax (64) */
	st = drv_mmio_setup(f->t, &f->q, 1, ALL_FEATURES);
	TEST_ASSERT(st & VIRTIO_CONFIG_S_NEEDS_RESET, "status %#x", st);
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_QUEUE_READY) == 0,
		    "bad queue became ready");
	/* The driver cannot clear it by writing status; only reset does. */
	drv_write32(f->t, VIRTIO_MMIO_STATUS, ST_UP);
	st = drv_read32(f->t, VIRTIO_MMIO_STATUS);
	TEST_ASSERT(st & VIRTIO_CONFIG_S_NEEDS_RESET, "status %#x", st);
	f->q.size = 16;
	st = drv_mmio_setup(f->t, &f->q, 1, ALL_FEATURES);
	TEST_ASSERT(st == ST_UP, "status after reset %#x", st);
	mfix_free(f);
}

static void test_virtio_mmio_violation_raises_config_irq(void)
{
	struct mfix *f = mfix_new();
	uint32_t st, isr;

	TEST_ASSERT(drv_mmio_setup(f->t, &f->q, 1, ALL_FEATURES) == ST_UP,
		    "setup");
	drv_set_desc(&f->q, 0, DRV_MEM_BASE + DRV_MEM_SIZE, 64,
		     VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f->q, 0);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	st = drv_read32(f->t, VIRTIO_MMIO_STATUS);
	isr = drv_read32(f->t, VIRTIO_MMIO_INTERRUPT_STATUS);
	TEST_ASSERT(st == (ST_UP | VIRTIO_CONFIG_S_NEEDS_RESET), "status %#x",
		    st);
	TEST_ASSERT(isr == VIRTIO_MMIO_INT_CONFIG, "isr %#x", isr);
	TEST_ASSERT(f->irq.level && f->irq.raises == 1,
		    "irq level %d raises %u", f->irq.level, f->irq.raises);
	TEST_ASSERT(drv_used_idx(&f->q) == 0, "used ring touched");
	/* Further kicks do nothing. */
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	drv_write32(f->t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	TEST_ASSERT(!f->irq.level, "line still up after ack");
	drv_write32(f->t, VIRTIO_MMIO_STATUS, 0);
	st = drv_read32(f->t, VIRTIO_MMIO_STATUS);
	TEST_ASSERT(st == 0, "status after reset %#x", st);
	mfix_free(f);
}

static void test_virtio_mmio_used_irq_level(void)
{
	struct mfix *f = mfix_new();
	uint64_t buf = drv_alloc(&f->m, 32, 8);
	struct drv_buf b = { buf, 32, true };
	uint32_t id, len;

	TEST_ASSERT(drv_mmio_setup(f->t, &f->q, 1, ALL_FEATURES) == ST_UP,
		    "setup");
	drv_add(&f->q, &b, 1);
	TEST_ASSERT(!f->irq.level, "line up before any work");
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	TEST_ASSERT(drv_get_used(&f->q, &id, &len) && id == 0 && len == 32,
		    "used id %u len %u", id, len);
	TEST_ASSERT(f->irq.level && f->irq.raises == 1, "level %d raises %u",
		    f->irq.level, f->irq.raises);
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_INTERRUPT_STATUS) ==
			    VIRTIO_MMIO_INT_VRING,
		    "isr %#x", drv_read32(f->t, VIRTIO_MMIO_INTERRUPT_STATUS));
	drv_write32(f->t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	TEST_ASSERT(!f->irq.level, "line up after ack");
	/* Kicks before DRIVER_OK are ignored. */
	drv_write32(f->t, VIRTIO_MMIO_STATUS, 0);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	TEST_ASSERT(!drv_get_used(&f->q, &id, &len), "used after reset");
	mfix_free(f);
}

static void test_virtio_mmio_save_load(void)
{
	struct mfix *f = mfix_new();
	uint64_t buf = drv_alloc(&f->m, 32, 8);
	struct drv_buf b = { buf, 32, true };
	uint8_t img[256], bad[256];
	struct virtio_mmio_state s;
	struct virtq_state q;
	int n, ret;

	TEST_ASSERT(drv_mmio_setup(f->t, &f->q, 1, ALL_FEATURES) == ST_UP,
		    "setup");
	drv_add(&f->q, &b, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	n = f->dev->ops->save(f->dev, NULL, 0);
	TEST_ASSERT(n > 0 && n <= (int)sizeof(img), "save size %d", n);
	TEST_ASSERT(f->dev->ops->save(f->dev, img, n - 1) == -ENOSPC,
		    "short buffer accepted");
	TEST_ASSERT(f->dev->ops->save(f->dev, img, sizeof(img)) == n, "save");
	s = f->t->s;
	q = f->t->vq[0].s;

	drv_write32(f->t, VIRTIO_MMIO_STATUS, 0);
	TEST_ASSERT(f->t->s.status == 0 && !f->irq.level, "reset");

	/* Corrupt or lying states are refused and change nothing. */
	TEST_ASSERT(strcmp(f->dev->ops->state_type, "vmrun.VirtioMmioState") ==
			    0,
		    "state type %s", f->dev->ops->state_type);
	{
		static const char *const what[] = {
			"another device",      "queue size not a power of two",
			"unknown status bit",  "a queue missing",
			"a 17-bit used index", "net state on a non-net device",
		};
		Vmrun__VirtioNetRx net = VMRUN__VIRTIO_NET_RX__INIT;
		unsigned int k;

		for (k = 0; k < ARRAY_SIZE(what); k++) {
			Vmrun__VirtioMmioState *m =
				vmrun__virtio_mmio_state__unpack(
					NULL, (size_t)n, img);
			size_t bn;

			TEST_ASSERT(m && m->n_queues == 1, "unpack");
			if (k == 0)
				m->device_id ^= 1;
			else if (k == 1)
				m->queues[0]->size = 48;
			else if (k == 2)
				m->status |= 0x20;
			else if (k == 3)
				m->n_queues = 0;
			else if (k == 4)
				m->queues[0]->used_idx = 0x10000;
			else
				m->net = &net;
			bn = vmrun__virtio_mmio_state__pack(m, bad);
			if (k == 5)
				m->net = NULL;
			if (k == 3)
				m->n_queues = 1;
			vmrun__virtio_mmio_state__free_unpacked(m, NULL);
			TEST_ASSERT(f->dev->ops->load(f->dev, bad, bn) ==
					    -EINVAL,
				    "%s: accepted", what[k]);
		}
	}
	memcpy(bad, img, n);
	bad[0] ^= 0xff; /* no longer a message */
	TEST_ASSERT(f->dev->ops->load(f->dev, bad, n) == -EINVAL, "garbage");
	TEST_ASSERT(f->dev->ops->load(f->dev, img, n - 1) == -EINVAL,
		    "short image");
	TEST_ASSERT(f->t->s.status == 0 && !f->t->vq[0].s.ready,
		    "failed load changed state");

	ret = f->dev->ops->load(f->dev, img, n);
	TEST_ASSERT(ret == 0, "load %d", ret);
	TEST_ASSERT(!memcmp(&f->t->s, &s, sizeof(s)),
		    "transport state differs");
	TEST_ASSERT(!memcmp(&f->t->vq[0].s, &q, sizeof(q)),
		    "queue state differs: last_avail %u used %u ready %u",
		    f->t->vq[0].s.last_avail, f->t->vq[0].s.used_idx,
		    f->t->vq[0].s.ready);
	TEST_ASSERT(f->irq.level, "line not restored from isr %#x", s.isr);
	/* The restored queue keeps working. */
	drv_add(&f->q, &b, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	TEST_ASSERT(drv_used_idx(&f->q) == 2, "used idx %u",
		    drv_used_idx(&f->q));
	mfix_free(f);
}

static void test_virtio_mmio_conf_string(void)
{
	enum log_level lvl = log_get_level();
	struct virtio_mmio_conf mc;
	char v[8];

	TEST_ASSERT(virtio_conf_str("base=0x1000,gsi=5,ro,path=a", "path", v,
				    sizeof(v)) == 0 &&
			    !strcmp(v, "a"),
		    "path '%s'", v);
	TEST_ASSERT(virtio_conf_str("base=1,ro", "ro", v, sizeof(v)) == 0 &&
			    !v[0],
		    "bare key '%s'", v);
	TEST_ASSERT(virtio_conf_str("robin=1", "ro", v, sizeof(v)) == -ENOENT,
		    "prefix matched");
	TEST_ASSERT(virtio_conf_str("p=123456789", "p", v, sizeof(v)) ==
			    -ENAMETOOLONG,
		    "overflow");
	TEST_ASSERT(virtio_conf_mmio(NULL, "base=0xd0000000,gsi=7", &mc) == 0 &&
			    mc.base == 0xd0000000 && mc.gsi == 7,
		    "base %#llx gsi %u", (unsigned long long)mc.base, mc.gsi);
	log_set_level(LOG_ERR);
	TEST_CHECK(virtio_conf_mmio(NULL, "base=zz,gsi=7", &mc) == -EINVAL,
		   "bad base accepted");
	TEST_CHECK(virtio_conf_mmio(NULL, "gsi=7", &mc) == -EINVAL,
		   "missing base accepted");
	log_set_level(lvl);
}

const struct test_case virtio_mmio_tests[] = {
	{ "identity", test_virtio_mmio_identity },
	{ "feature_negotiation", test_virtio_mmio_feature_negotiation },
	{ "bad_queue_needs_reset", test_virtio_mmio_bad_queue_needs_reset },
	{ "violation_raises_config_irq",
	  test_virtio_mmio_violation_raises_config_irq },
	{ "used_irq_level", test_virtio_mmio_used_irq_level },
	{ "save_load", test_virtio_mmio_save_load },
	{ "conf_string", test_virtio_mmio_conf_string },
	{ NULL, NULL },
};
