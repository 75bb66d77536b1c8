/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>

#include "kernel/dev/virtio_mmio.h"
#include "kernel/kvm_ioctl.h"
#include "kernel/util/log.h"
#include "tests/unit/unit_tests.h"
#include "tests/unit/virtio_drv.h"

#define RXQ 0
#define TXQ 1
#define HDR 12

struct nfix {
	int peer; /* the VMM/test side of the socketpair */
	struct drv_mem m;
	struct drv_irq irq;
	struct drv_queue q[2];
	struct dev *dev;
	struct virtio_mmio *t;
	enum log_level lvl;
};

static const uint8_t test_mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };

/*
 * A device with back end @nc (its mac is set here), or, with @nc NULL,
 * on a SOCK_SEQPACKET socketpair whose other end is f->peer; its receive
 * queue has @rx_size entries.
 */
static struct nfix *nfix_new(struct virtio_net_conf *nc, uint16_t rx_size)
{
	struct nfix *f = calloc(1, sizeof(*f));
	struct virtio_net_conf sp = { .fd = -1 };
	struct virtio_mmio_conf mc;
	int sv[2] = { -1, -1 }, ret;

	f->peer = -1;
	if (!nc) {
		TEST_ASSERT(!socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC,
					0, sv),
			    "socketpair: %s", strerror(errno));
		f->peer = sv[0];
		sp.fd = sv[1];
		nc = &sp;
	}
	memcpy(nc->mac, test_mac, 6);
	drv_mem_init(&f->m);
	drv_mmio_conf(&mc, &f->m, &f->irq);
	ret = virtio_net_create_mmio(&mc, nc, &f->dev);
	if (sv[1] >= 0)
		close(sv[1]); /* the device holds its own copy */
	TEST_ASSERT(ret == 0, "create %d", ret);
	f->t = virtio_mmio_from_dev(f->dev);
	drv_queue_init(&f->q[RXQ], &f->m, rx_size);
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
	if (f->peer >= 0)
		close(f->peer);
	drv_mem_fini(&f->m);
	free(f);
}

static void test_virtio_net_config(void)
{
	struct nfix *f = nfix_new(NULL, 16);
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
	struct nfix *f = nfix_new(NULL, 16);
	uint64_t hdr = drv_alloc(&f->m, HDR, 8);
	uint64_t frame = drv_alloc(&f->m, 100, 8);
	uint8_t *p = drv_ptr(&f->m, frame), got[200];
	/* Header split from the frame, frame in two pieces. */
	struct drv_buf b[] = {
		{ hdr, HDR, false },
		{ frame, 40, false },
		{ frame + 40, 60, false },
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

static void count_wakeup(void *opaque)
{
	(*(unsigned int *)opaque)++;
}

static void test_virtio_net_rx(void)
{
	struct nfix *f = nfix_new(NULL, 16);
	uint64_t buf = drv_alloc(&f->m, 1526, 8),
		 small = drv_alloc(&f->m, 64, 8);
	struct drv_buf b = { buf, 1526, true }, s = { small, 64, true };
	struct virtio_net_hdr_v1 h;
	uint8_t frame[300];
	unsigned int wakeups = 0;
	uint32_t id, len;
	int ret;

	virtio_net_set_rx_wakeup(f->dev, count_wakeup, &wakeups);
	memset(frame, 0xc3, sizeof(frame));
	frame[0] = 0x01;
	TEST_ASSERT(virtio_net_rx_poll(f->dev) == 0, "poll with nothing");
	TEST_ASSERT(send(f->peer, frame, sizeof(frame), 0) == sizeof(frame),
		    "send");
	/* No receive buffers yet: the frame waits. */
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == -ENOBUFS, "poll without buffers: %d", ret);
	TEST_ASSERT(drv_avail_event(&f->q[RXQ]) == 0, "avail_event %u",
		    drv_avail_event(&f->q[RXQ]));
	/* Posting a buffer and kicking delivers it and wakes the loop. */
	TEST_ASSERT(wakeups == 0, "early wakeup");
	drv_add(&f->q[RXQ], &b, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, RXQ);
	TEST_ASSERT(wakeups == 1, "wakeups %u", wakeups);
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
	TEST_ASSERT(ret == 1, "poll %d", ret);
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

/* A frame waiting for a guest buffer is device state: a save keeps it. */
static void test_virtio_net_pending_frame_saved(void)
{
	struct nfix *f = nfix_new(NULL, 16);
	uint64_t buf = drv_alloc(&f->m, 1526, 8);
	struct drv_buf b = { buf, 1526, true };
	uint8_t frame[200], state[1024];
	uint32_t id, len;
	int n, ret;

	memset(frame, 0x5a, sizeof(frame));
	frame[0] = 0x77;
	TEST_ASSERT(send(f->peer, frame, sizeof(frame), 0) == sizeof(frame),
		    "send");
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == -ENOBUFS, "poll without buffers: %d", ret);
	n = f->dev->ops->save(f->dev, state, sizeof(state));
	TEST_ASSERT(n > (int)sizeof(frame), "save: %d", n);
	/* A reset forgets the frame; loading the state brings it back. */
	drv_write32(f->t, VIRTIO_MMIO_STATUS, 0);
	ret = f->dev->ops->load(f->dev, state, (size_t)n);
	TEST_ASSERT(ret == 0, "load: %d", ret);
	drv_add(&f->q[RXQ], &b, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, RXQ);
	TEST_ASSERT(drv_get_used(&f->q[RXQ], &id, &len) &&
			    len == HDR + sizeof(frame),
		    "used id %u len %u", id, len);
	TEST_ASSERT(!memcmp(drv_ptr(&f->m, buf + HDR), frame, sizeof(frame)),
		    "the restored frame differs");
	nfix_free(f);
}

/* One call takes at most VIRTIO_NET_RX_BUDGET frames. */
static void test_virtio_net_rx_budget(void)
{
	struct nfix *f = nfix_new(NULL, 128);
	uint8_t frame[60] = { 0x01 };
	unsigned int i, total = VIRTIO_NET_RX_BUDGET + 6;
	int ret;

	for (i = 0; i < total + 4; i++) {
		struct drv_buf b = { drv_alloc(&f->m, 1526, 8), 1526, true };

		drv_add(&f->q[RXQ], &b, 1);
	}
	for (i = 0; i < total; i++)
		TEST_ASSERT(send(f->peer, frame, sizeof(frame), 0) ==
				    sizeof(frame),
			    "send %u: %s", i, strerror(errno));
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == VIRTIO_NET_RX_BUDGET, "first poll %d", ret);
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == 6, "second poll %d", ret);
	ret = virtio_net_rx_poll(f->dev);
	TEST_ASSERT(ret == 0, "third poll %d", ret);
	TEST_ASSERT(drv_used_idx(&f->q[RXQ]) == total, "used idx %u",
		    drv_used_idx(&f->q[RXQ]));
	nfix_free(f);
}

static void set_link_up(const char *name)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	TEST_ASSERT(s >= 0, "socket: %s", strerror(errno));
	memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
	TEST_ASSERT(kvm_ioctl(s, SIOCGIFFLAGS, &ifr) == 0, "SIOCGIFFLAGS");
	ifr.ifr_flags |= IFF_UP;
	TEST_ASSERT(kvm_ioctl(s, SIOCSIFFLAGS, &ifr) == 0, "SIOCSIFFLAGS");
	close(s);
}

/* Waits up to 1 s for @fd to become readable. */
static bool wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 1000) == 1;
}

/*
 * Through a real tap (VMRUN_TEST_TAP names an existing one, made with
 * "ip tuntap add NAME mode tap"; needs CAP_NET_ADMIN and CAP_NET_RAW):
 * a guest frame comes out of the interface and a frame sent into the
 * interface reaches the guest, vnet header and all.
 */
static void test_virtio_net_tap(void)
{
	const char *tap = getenv("VMRUN_TEST_TAP");
	struct virtio_net_conf nc = { .fd = -1 };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	uint8_t frame[60], got[1600];
	uint64_t txb, rxb[8], by_desc[16];
	struct drv_buf b[2];
	struct nfix *f;
	bool found = false;
	uint32_t id, len;
	unsigned int i;
	ssize_t n;
	int ps;

	TEST_REQUIRE(tap && tap[0], "VMRUN_TEST_TAP (an existing tap name)");
	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	TEST_REQUIRE(ps >= 0, "CAP_NET_RAW (packet socket)");
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = if_nametoindex(tap);
	TEST_ASSERT(sll.sll_ifindex > 0, "no interface %s", tap);
	TEST_ASSERT(!bind(ps, (struct sockaddr *)&sll, sizeof(sll)), "bind");
	set_link_up(tap);
	nc.tap = tap;
	f = nfix_new(&nc, 16);

	/* Guest to host: broadcast, local experimental ethertype 0x88b5. */
	memset(frame, 0xff, 6);
	memcpy(frame + 6, nc.mac, 6);
	frame[12] = 0x88;
	frame[13] = 0xb5;
	for (i = 14; i < sizeof(frame); i++)
		frame[i] = i;
	txb = drv_alloc(&f->m, HDR + sizeof(frame), 8);
	memcpy(drv_ptr(&f->m, txb + HDR), frame, sizeof(frame));
	b[0] = (struct drv_buf){ txb, HDR + sizeof(frame), false };
	drv_add(&f->q[TXQ], b, 1);
	drv_write32(f->t, VIRTIO_MMIO_QUEUE_NOTIFY, TXQ);
	for (i = 0; i < 50 && !found && wait_readable(ps); i++) {
		n = recv(ps, got, sizeof(got), 0);
		found = n >= (ssize_t)sizeof(frame) &&
			!memcmp(got, frame, sizeof(frame));
	}
	TEST_ASSERT(found, "guest frame never came out of %s", tap);

	/* Host to guest: ethertype 0x88b6 sent into the interface. */
	for (i = 0; i < ARRAY_SIZE(rxb); i++) {
		rxb[i] = drv_alloc(&f->m, 1526, 8);
		b[0] = (struct drv_buf){ rxb[i], 1526, true };
		by_desc[drv_add(&f->q[RXQ], b, 1) % 16] = rxb[i];
	}
	frame[13] = 0xb6;
	found = false;
	for (i = 0; i < 50 && !found; i++) {
		/*
		 * A tap that just got its carrier drops what is sent until the
		 * kernel's link watch activates its queue (up to a second):
		 * send again each round until the frame arrives.
		 */
		TEST_ASSERT(sendto(ps, frame, sizeof(frame), 0,
				   (struct sockaddr *)&sll,
				   sizeof(sll)) == sizeof(frame),
			    "sendto: %s", strerror(errno));
		if (!wait_readable(virtio_net_fd(f->dev)))
			continue;
		TEST_ASSERT(virtio_net_rx_poll(f->dev) >= 0, "rx poll");
		while (!found && drv_get_used(&f->q[RXQ], &id, &len)) {
			uint64_t gpa = by_desc[id % 16];
			uint8_t *p = drv_ptr(&f->m, gpa);

			found = len == HDR + sizeof(frame) &&
				!memcmp(p + HDR, frame, sizeof(frame));
			TEST_ASSERT(!found || (p[0] == 0 && p[10] == 1),
				    "header flags %u num_buffers %u", p[0],
				    p[10]);
			if (!found) {
				/* Host traffic (IPv6 neighbour discovery,
				 * say): give the buffer back and go on. */
				b[0] = (struct drv_buf){ gpa, 1526, true };
				by_desc[drv_add(&f->q[RXQ], b, 1) % 16] = gpa;
			}
		}
	}
	TEST_ASSERT(found, "frame sent into %s never reached the guest", tap);
	nfix_free(f);
	close(ps);
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
	{ "pending_frame_saved", test_virtio_net_pending_frame_saved },
	{ "config", test_virtio_net_config },
	{ "tx", test_virtio_net_tx },
	{ "rx", test_virtio_net_rx },
	{ "rx_budget", test_virtio_net_rx_budget },
	{ "tap", test_virtio_net_tap },
	{ "bad_backend_conf", test_virtio_net_bad_backend_conf },
	{ NULL, NULL },
};
