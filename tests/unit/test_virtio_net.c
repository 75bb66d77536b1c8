/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>

#include "kernel/dev/virtio_mmio.h"
#include "kernel/util/log.h"
#include "tests/unit/unit_tests.h"
#include "tests/unit/virtio_drv.h"

#define RXQ 0
#define TXQ 1
#define HDR 12

struct nfix {
	int peer;               /* the VMM/test side of the socketpair */
	struct drv_mem m;
	struct drv_irq irq;
	struct drv_queue q[2];
	struct dev *dev;
	struct virtio_mmio *t;
	enum log_level lvl;
};

static struct nfix *nfix_new(void)
{
	struct nfix *f = calloc(1, sizeof(*f));
	struct virtio_net_conf nc = {
		.mac = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef },
	};
	struct virtio_mmio_conf mc;
	int sv[2], ret;

	TEST_ASSERT(!socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv),
		    "socketpair: %s", strerror(errno));
	f->peer = sv[0];
	nc.fd = sv[1];
	drv_mem_init(&f->m);
	drv_mmio_conf(&mc, &f->m, &f->irq);
	ret = virtio_net_create_mmio(&mc, &nc, &f->dev);
	close(sv[1]); /* the device holds its own copy */
	TEST_ASSERT(ret == 0, "create %d", ret);
	f->t = virtio_mmio_from_dev(f->dev);
	drv_queue_init(&f->q[RXQ], &f->m, 16);
	drv_queue_init(&f->q[TXQ], &f->m, 16);
	TEST_ASSERT(drv_mmio_setup(f->t, f->q, 2, ~0ULL) &
			    VIRTIO_CONFIG_S_DRIVER_OK,
		    "setup");
	f->lvl = log_get_level();
	log_set_level(LOG_ERR);
	return f;
}

static void nfix_free(struct nfix *f)
{
	log_set_level(f->lvl);
	f->dev->ops->fini(f->dev);
	close(f->peer);
	drv_mem_fini(&f->m);
	free(f);
}

static void test_virtio_net_config(void)
{
	struct nfix *f = nfix_new();
	uint8_t mac[6];
	uint16_t status;
	unsigned int i;

	TEST_ASSERT(drv_read32(f->t, VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_NET,
		    "device id");
	for (i = 0; i < 6; i++)
		virtio_mmio_access(f->t, VIRTIO_MMIO_CONFIG + i, &mac[i], 1,
				   false);
	virtio_mmio_access(f->t, VIRTIO_MMIO_CONFIG + 6, &status, 2, false);
	TEST_ASSERT(mac[0] == 0x52 && mac[5] == 0xef, "mac %02x..%02x", mac[0],
		    mac[5]);
	TEST_ASSERT(le16toh(status) == VIRTIO_NET_S_LINK_UP, "status %#x",
		    status);
	TEST_ASSERT(virtio_net_fd(f->dev) >= 0, "no fd");
	TEST_ASSERT(virtio_mmio_features(f->t) & (1ULL << VIRTIO_NET_F_MAC),
		    "MAC not negotiated");
	nfix_free(f);
}

static void test_virtio_net_tx(void)
{
	struct nfix *f = nfix_new();
	uint64_t hdr = drv_alloc(&f->m, HDR, 8);
	uint64_t frame = drv_alloc(&f->m, 100, 8);
	uint8_t *p = drv_ptr(&f->m, frame), got[200];
	/* Header split from the frame, frame in two pieces. */
	struct drv_buf b[] = {
		{ hdr, HDR, false }, { frame, 40, false }, { frame + 40, 60, false },
	};
	struct drv_buf bad = { frame, 8, false }; /* shorter than a header */
	uint32_t id, len;
	unsigned int i;
	ssize_t n;

	for (i = 0; i < 100; i++)
		p[i] = i ^ 0x5a;
	drv_add(&f->q[TXQ], b, 3);
	drv_add(&f->q[TXQ], &bad, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, TXQ);
	n = recv(f->peer, got, sizeof(got), MSG_DONTWAIT);
	TEST_ASSERT(n == 100 && !memcmp(got, p, 100), "peer got %zd bytes", n);
	n = recv(f->peer, got, sizeof(got), MSG_DONTWAIT);
	TEST_ASSERT(n < 0 && errno == EAGAIN, "runt frame sent: %zd", n);
	TEST_ASSERT(drv_get_used(&f->q[TXQ], &id, &len) && id == 0 && len == 0,
		    "used id %u len %u", id, len);
	TEST_ASSERT(drv_get_used(&f->q[TXQ], &id, &len) && id == 3 && len == 0,
		    "runt not completed: id %u len %u", id, len);
	TEST_ASSERT(f->irq.level, "no tx interrupt");
	nfix_free(f);
}

static void test_virtio_net_rx(void)
{
	struct nfix *f = nfix_new();
	uint64_t buf = drv_alloc(&f->m, 1526, 8), small = drv_alloc(&f->m, 64, 8);
	struct drv_buf b = { buf, 1526, true }, s = { small, 64, true };
	struct virtio_net_hdr_v1 h;
	uint8_t frame[300];
	uint32_t id, len;
	int ret;

	memset(frame, 0xc3, sizeof(frame));
	frame[0] = 0x01;
	TEST_ASSERT(virtio_net_rx_poll(f->dev) == 0, "poll with nothing");
	TEST_ASSERT(send(f->peer, frame, sizeof(frame), 0) == sizeof(frame),
		    "send");
	/* No receive buffers yet: the frame waits. */
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == -ENOBUFS, "poll without buffers: %d", ret);
	TEST_ASSERT(drv_avail_event(&f->q[RXQ]) == 0,
		    "avail_event %u", drv_avail_event(&f->q[RXQ]));
	/* Posting a buffer and kicking delivers it. */
	drv_add(&f->q[RXQ], &b, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, RXQ);
	TEST_ASSERT(drv_get_used(&f->q[RXQ], &id, &len) && id == 0 &&
			    len == HDR + sizeof(frame),
		    "used id %u len %u", id, len);
	memcpy(&h, drv_ptr(&f->m, buf), sizeof(h));
	TEST_ASSERT(h.flags == 0 && h.gso_type == 0 &&
			    le16toh(h.num_buffers) == 1,
		    "header flags %u gso %u num_buffers %u", h.flags,
		    h.gso_type, le16toh(h.num_buffers));
	TEST_ASSERT(!memcmp(drv_ptr(&f->m, buf + HDR), frame, sizeof(frame)),
		    "frame differs");
	TEST_ASSERT(f->irq.level, "no rx interrupt");

	/* Buffer first, frame second: rx_poll delivers. */
	drv_add(&f->q[RXQ], &b, 1);
	frame[0] = 0x02;
	TEST_ASSERT(send(f->peer, frame, 60, 0) == 60, "send");
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == 1, "poll delivered %d", ret);
	TEST_ASSERT(drv_get_used(&f->q[RXQ], &id, &len) && len == HDR + 60 &&
			    *(uint8_t *)drv_ptr(&f->m, buf + HDR) == 0x02,
		    "second frame: id %u len %u", id, len);

	/* A buffer too small for the frame: dropped, buffer returned. */
	drv_add(&f->q[RXQ], &s, 1);
	TEST_ASSERT(send(f->peer, frame, sizeof(frame), 0) == sizeof(frame),
		    "send");
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == 0, "poll %d", ret);
	TEST_ASSERT(drv_get_used(&f->q[RXQ], &id, &len) && len == 0,
		    "small buffer: id %u len %u", id, len);

	/* Paused devices leave frames alone. */
	TEST_ASSERT(f->dev->ops->pause(f->dev) == 0, "pause");
	drv_add(&f->q[RXQ], &b, 1);
	TEST_ASSERT(send(f->peer, frame, 60, 0) == 60, "send");
	TEST_ASSERT(virtio_net_rx_poll(f->dev) == 0, "paused poll delivered");
	TEST_ASSERT(f->dev->ops->resume(f->dev) == 0, "resume");
	TEST_ASSERT(virtio_net_rx_poll(f->dev) == 1, "resumed poll");
	nfix_free(f);
}

/* The tap back end needs a tap interface made elsewhere. */
static void test_virtio_net_tap(void)
{
	const char *tap = getenv("VMRUN_TEST_TAP");
	struct virtio_net_conf nc = { .fd = -1 };
	struct virtio_mmio_conf mc;
	struct drv_mem m;
	struct drv_irq irq;
	struct dev *dev;
	int ret;

	TEST_REQUIRE(tap && tap[0], "VMRUN_TEST_TAP (an existing tap name)");
	nc.tap = tap;
	drv_mem_init(&m);
	drv_mmio_conf(&mc, &m, &irq);
	ret = virtio_net_create_mmio(&mc, &nc, &dev);
	TEST_ASSERT(ret == 0, "tap %s: %d", tap, ret);
	TEST_ASSERT(virtio_net_fd(dev) >= 0, "tap fd");
	dev->ops->fini(dev);
	drv_mem_fini(&m);
}

static void test_virtio_net_bad_backend_conf(void)
{
	struct virtio_net_conf nc = { .fd = -1 };
	struct virtio_mmio_conf mc;
	enum log_level lvl = log_get_level();
	struct drv_mem m;
	struct drv_irq irq;
	struct dev *dev;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC), ret;

	drv_mem_init(&m);
	drv_mmio_conf(&mc, &m, &irq);
	log_set_level(LOG_ERR);
	ret = virtio_net_create_mmio(&mc, &nc, &dev);
	TEST_CHECK(ret == -EINVAL, "no back end: %d", ret);
	nc.fd = fd;
	ret = virtio_net_create_mmio(&mc, &nc, &dev);
	TEST_CHECK(ret == -EINVAL, "not a socket: %d", ret);
	log_set_level(lvl);
	close(fd);
	drv_mem_fini(&m);
}

const struct test_case virtio_net_tests[] = {
	{ "config", test_virtio_net_config },
	{ "tx", test_virtio_net_tx },
	{ "rx", test_virtio_net_rx },
	{ "tap", test_virtio_net_tap },
	{ "bad_backend_conf", test_virtio_net_bad_backend_conf },
	{ NULL, NULL },
};
