/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio.h"

#include <endian.h>
#include <errno.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "kernel/dev/virtio_mmio.h"
#include "kernel/util/log.h"
#include "tests/unit/unit_tests.h"
#include "tests/unit/virtio_drv.h"

#define IMG_SECTORS 2048

struct bfix {
	char path[64];
	int fd;
	struct drv_mem m;
	struct drv_irq irq;
	struct drv_queue q;
	struct dev *dev;
	struct virtio_mmio *t;
	uint64_t hdr, status;
	enum log_level lvl;
};

static struct bfix *bfix_new(void)
{
	struct bfix *f = calloc(1, sizeof(*f));
	struct virtio_mmio_conf mc;
	uint8_t sec[512];
	unsigned int i;
	int ret;

	snprintf(f->path, sizeof(f->path), "/tmp/vmrun-blk-XXXXXX");
	f->fd = mkstemp(f->path);
	TEST_ASSERT(f->fd >= 0, "mkstemp: %s", strerror(errno));
	/* Sector n is filled with the byte n & 0xff. */
	for (i = 0; i < IMG_SECTORS; i++) {
		memset(sec, i & 0xff, sizeof(sec));
		TEST_ASSERT(pwrite(f->fd, sec, 512, i * 512ULL) == 512,
			    "image write");
	}
	drv_mem_init(&f->m);
	drv_mmio_conf(&mc, &f->m, &f->irq);
	ret = virtio_blk_create_mmio(&mc, f->path, &f->dev);
	TEST_ASSERT(ret == 0, "create %d", ret);
	f->t = virtio_mmio_from_dev(f->dev);
	drv_queue_init(&f->q, &f->m, 64);
	TEST_ASSERT(drv_mmio_setup(f->t, &f->q, 1, ~0ULL) &
			    VIRTIO_CONFIG_S_DRIVER_OK,
		    "setup");
	f->hdr = drv_alloc(&f->m, 16, 16);
	f->status = drv_alloc(&f->m, 1, 1);
	f->lvl = log_get_level();
	log_set_level(LOG_ERR);
	return f;
}

static void bfix_free(struct bfix *f)
{
	log_set_level(f->lvl);
	f->dev->ops->fini(f->dev);
	drv_mem_fini(&f->m);
	close(f->fd);
	unlink(f->path);
	free(f);
}

static void set_hdr(struct bfix *f, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr h = {
		.type = htole32(type),
		.sector = htole64(sector),
	};

	memcpy(drv_ptr(&f->m, f->hdr), &h, sizeof(h));
	*(uint8_t *)drv_ptr(&f->m, f->status) = 0xee;
}

/*
 * Sends header, optional data (@len bytes at @data, device-writable if
 * @in) and status; kicks; returns the status byte and the used length.
 */
static uint8_t blk_req(struct bfix *f, uint32_t type, uint64_t sector,
		       uint64_t data, uint32_t len, bool in, uint32_t *used)
{
	struct drv_buf b[3] = {
		{ f->hdr, 16, false },
		{ data, len, in },
		{ f->status, 1, true },
	};
	uint32_t id;

	set_hdr(f, type, sector);
	if (len) {
		drv_add(&f->q, b, 3);
	} else {
		b[1] = b[2];
		drv_add(&f->q, b, 2);
	}
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	TEST_ASSERT(drv_get_used(&f->q, &id, used), "request not completed");
	return *(uint8_t *)drv_ptr(&f->m, f->status);
}

static void test_virtio_blk_config(void)
{
	struct bfix *f = bfix_new();
	uint32_t lo, hi, seg_max, blk_size;

	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_BLOCK,
		    "device id");
	lo = drv_read32(f->t, VIRTIO_MMIO_CONFIG);
	hi = drv_read32(f->t, VIRTIO_MMIO_CONFIG + 4);
	seg_max = drv_read32(f->t, VIRTIO_MMIO_CONFIG + 12);
	blk_size = drv_read32(f->t, VIRTIO_MMIO_CONFIG + 20);
	TEST_ASSERT(lo == IMG_SECTORS && hi == 0, "capacity %#x:%#x", hi, lo);
	TEST_ASSERT(seg_max == 254 && blk_size == 512, "seg_max %u blk_size %u",
		    seg_max, blk_size);
	bfix_free(f);
}

static void test_virtio_blk_read_write_flush(void)
{
	struct bfix *f = bfix_new();
	uint64_t wbuf = drv_alloc(&f->m, 1024, PAGE_SIZE);
	uint64_t rbuf = drv_alloc(&f->m, 1024, PAGE_SIZE);
	uint8_t disk[1024], *w = drv_ptr(&f->m, wbuf), *r;
	uint32_t used;
	unsigned int i;
	uint8_t st;

	/* Read sector 5..6: the image pattern. */
	drv_clear_dirty(&f->m);
	st = blk_req(f, VIRTIO_BLK_T_IN, 5, rbuf, 1024, true, &used);
	r = drv_ptr(&f->m, rbuf);
	TEST_ASSERT(st == VIRTIO_BLK_S_OK && used == 1025, "status %u used %u",
		    st, used);
	TEST_ASSERT(r[0] == 5 && r[511] == 5 && r[512] == 6 && r[1023] == 6,
		    "read %u %u %u %u", r[0], r[511], r[512], r[1023]);
	TEST_ASSERT(drv_dirty(&f->m, rbuf), "read buffer page not dirty");

	/* Write sectors 3..4 with a pattern, check the file. */
	for (i = 0; i < 1024; i++)
		w[i] = i * 7;
	st = blk_req(f, VIRTIO_BLK_T_OUT, 3, wbuf, 1024, false, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_OK && used == 1, "status %u used %u", st,
		    used);
	TEST_ASSERT(pread(f->fd, disk, 1024, 3 * 512) == 1024, "pread");
	TEST_ASSERT(!memcmp(disk, w, 1024), "image differs after write");

	/* And back through the device. */
	memset(r, 0, 1024);
	st = blk_req(f, VIRTIO_BLK_T_IN, 3, rbuf, 1024, true, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_OK && !memcmp(r, w, 1024),
		    "read back status %u", st);

	st = blk_req(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_OK && used == 1,
		    "flush status %u used %u", st, used);
	TEST_ASSERT(f->irq.level, "no interrupt");
	bfix_free(f);
}

/* Header, data and status split over descriptors at odd places. */
static void test_virtio_blk_split_segments(void)
{
	struct bfix *f = bfix_new();
	uint64_t buf = drv_alloc(&f->m, 1024 + 1, 8);
	uint8_t *p = drv_ptr(&f->m, buf);
	struct drv_buf b[] = {
		{ f->hdr, 10, false },
		{ f->hdr + 10, 6, false },
		{ buf, 700, true },
		{ buf + 700, 325, true },
	};
	uint32_t id, used;

	set_hdr(f, VIRTIO_BLK_T_IN, 100);
	drv_add(&f->q, b, ARRAY_SIZE(b));
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	TEST_ASSERT(drv_get_used(&f->q, &id, &used) && used == 1025, "used %u",
		    used);
	TEST_ASSERT(p[0] == 100 && p[511] == 100 && p[512] == 101 &&
			    p[699] == 101 && p[700] == 101 && p[1023] == 101 &&
			    p[1024] == VIRTIO_BLK_S_OK,
		    "bytes %u %u %u %u %u status %u", p[0], p[511], p[512],
		    p[700], p[1023], p[1024]);
	bfix_free(f);
}

static void test_virtio_blk_get_id_and_errors(void)
{
	struct bfix *f = bfix_new();
	uint64_t buf = drv_alloc(&f->m, 4096, 8);
	const char *base = strrchr(f->path, '/') + 1;
	uint32_t used;
	uint8_t st;

	st = blk_req(f, VIRTIO_BLK_T_GET_ID, 0, buf, 20, true, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_OK && used == 21 &&
			    !strncmp(drv_ptr(&f->m, buf), base, 20),
		    "id '%.20s' status %u used %u", (char *)drv_ptr(&f->m, buf),
		    st, used);

	st = blk_req(f, VIRTIO_BLK_T_IN, IMG_SECTORS - 1, buf, 1024, true,
		     &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_IOERR, "read past the end: %u", st);
	st = blk_req(f, VIRTIO_BLK_T_OUT, IMG_SECTORS, buf, 512, false, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_IOERR, "write past the end: %u", st);
	st = blk_req(f, VIRTIO_BLK_T_IN, ~0ULL, buf, 512, true, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_IOERR, "sector overflow: %u", st);
	st = blk_req(f, VIRTIO_BLK_T_IN, 1ULL << 55, buf, 512, true, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_IOERR, "sector << 9 overflow: %u", st);
	st = blk_req(f, VIRTIO_BLK_T_IN, 0, buf, 100, true, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_IOERR, "partial sector: %u", st);
	st = blk_req(f, 99, 0, buf, 512, true, &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_UNSUPP, "unknown type: %u", st);
	/* The last sector is still reachable. */
	st = blk_req(f, VIRTIO_BLK_T_IN, IMG_SECTORS - 1, buf, 512, true,
		     &used);
	TEST_ASSERT(st == VIRTIO_BLK_S_OK &&
			    ((uint8_t *)drv_ptr(&f->m, buf))[0] == 0xff,
		    "last sector: %u", st);
	TEST_ASSERT(!(drv_read32(f->t, VIRTIO_MMIO_STATUS) &
		      VIRTIO_CONFIG_S_NEEDS_RESET),
		    "I/O errors broke the device");
	bfix_free(f);
}

static void test_virtio_blk_malformed_needs_reset(void)
{
	struct bfix *f = bfix_new();
	struct drv_buf b = { f->hdr, 16, false }; /* no status byte */

	set_hdr(f, VIRTIO_BLK_T_IN, 0);
	drv_add(&f->q, &b, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_STATUS) &
			    VIRTIO_CONFIG_S_NEEDS_RESET,
		    "status %#x", drv_read32(f->t, VIRTIO_MMIO_STATUS));
	TEST_ASSERT(drv_used_idx(&f->q) == 0, "malformed request completed");
	bfix_free(f);
}

static void test_virtio_blk_missing_image(void)
{
	struct virtio_mmio_conf mc;
	struct drv_mem m;
	struct drv_irq irq;
	struct dev *dev;
	enum log_level lvl = log_get_level();
	int ret;

	drv_mem_init(&m);
	drv_mmio_conf(&mc, &m, &irq);
	log_set_level(LOG_ERR);
	ret = virtio_blk_create_mmio(&mc, "/nonexistent/vmrun.img", &dev);
	log_set_level(lvl);
	TEST_ASSERT(ret == -ENOENT, "create returned %d", ret);
	drv_mem_fini(&m);
}

const struct test_case virtio_blk_tests[] = {
	{ "config", test_virtio_blk_config },
	{ "read_write_flush", test_virtio_blk_read_write_flush },
	{ "split_segments", test_virtio_blk_split_segments },
	{ "get_id_and_errors", test_virtio_blk_get_id_and_errors },
	{ "malformed_needs_reset", test_virtio_blk_malformed_needs_reset },
	{ "missing_image", test_virtio_blk_missing_image },
	{ NULL, NULL },
};
