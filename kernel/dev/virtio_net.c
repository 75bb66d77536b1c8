/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "kernel/dev/dev.h"
#include "kernel/dev/virtio_mmio.h"
#include "kernel/kvm_ioctl.h"
#include "kernel/util/log.h"

/*
 * virtio-net with one receive queue (0) and one transmit queue (1), no
 * offloads and no mergeable receive buffers: every frame travels with a
 * 12-byte struct virtio_net_hdr_v1 that is all zeros apart from
 * num_buffers = 1 on receive.
 *
 * There is no I/O thread yet. Transmit runs in the vCPU thread that kicks
 * the transmit queue. Receive runs when the VMM's event loop sees the
 * back-end fd readable (virtio_net_rx_poll()) and when the guest kicks
 * the receive queue after posting buffers. A frame read while the guest
 * has no buffer waits in rxbuf; a frame larger than the chain offered
 * for it is dropped.
 */

#define NET_RX 0
#define NET_TX 1
#define NET_QUEUE_MAX 256
#define NET_HDR_LEN 12
#define NET_MAX_FRAME 65536
#define NET_CONFIG_LEN 10

_Static_assert(sizeof(struct virtio_net_hdr_v1) == NET_HDR_LEN,
	       "virtio_net_hdr_v1 layout");

struct virtio_net {
	struct virtio_mmio t;			     /* first: struct dev */
	const struct virtio_net_backend_ops *be_ops; /* [I] */
	void *be;				     /* [I] */
	uint8_t config[NET_CONFIG_LEN];		     /* [I] little endian */
	uint8_t *rxbuf;	     /* [t] header + frame waiting for a buffer */
	size_t rx_pending;   /* [t] bytes in rxbuf, 0 if none */
	uint8_t *txbuf;	     /* [t] header room + frame */
	uint64_t rx_dropped; /* [t] */
	uint64_t tx_dropped; /* [t] */
	bool rx_starved;     /* [t] the last receive ran out of buffers */
	void (*rx_wakeup)(void *opaque); /* [t] see virtio.h */
	void *rx_wakeup_opaque;		 /* [t] */
	struct virtq_chain chain;	 /* [t] scratch */
	Vmrun__VirtioNetRx saved;	 /* [t] save_state()'s message */
};

static struct virtio_net *to_net(struct virtio_mmio *t)
{
	return container_of(t, struct virtio_net, t);
}

/* Socket back end: one datagram per frame, no header. */

struct fd_be {
	int fd;
};

static int sock_send(void *be, const struct iovec *iov, int iovcnt)
{
	struct fd_be *s = be;
	struct iovec v[4];
	struct msghdr m = { .msg_iov = v };

	if (iovcnt < 0 || iovcnt > (int)ARRAY_SIZE(v))
		return -EINVAL;
	memcpy(v, iov, iovcnt * sizeof(*v));
	m.msg_iovlen = iovcnt;
	if (sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return -errno;
	return 0;
}

static ssize_t sock_recv(void *be, void *buf, size_t len)
{
	struct fd_be *s = be;
	ssize_t r;

	do {
		r = recv(s->fd, buf, len, MSG_DONTWAIT | MSG_TRUNC);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return r;
}

static int sock_fd(void *be)
{
	return ((struct fd_be *)be)->fd;
}

static void sock_close(void *be)
{
	struct fd_be *s = be;

	close(s->fd);
	free(s);
}

static const struct virtio_net_backend_ops sock_be_ops = {
	.name = "socket",
	.hdr_len = 0,
	.send = sock_send,
	.recv = sock_recv,
	.fd = sock_fd,
	.close = sock_close,
};

static int sock_open(int fd, void **out)
{
	struct fd_be *s = malloc(sizeof(*s));
	int type;
	socklen_t tl = sizeof(type);

	if (!s)
		return -ENOMEM;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) ||
	    (type != SOCK_SEQPACKET && type != SOCK_DGRAM)) {
		pr_err("virtio-net: fd %d is not a datagram socket", fd);
		free(s);
		return -EINVAL;
	}
	s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (s->fd < 0) {
		free(s);
		return -errno;
	}
	*out = s;
	return 0;
}

/* Tap back end: the fd of an existing tap interface, with vnet headers. */

static int tap_send(void *be, const struct iovec *iov, int iovcnt)
{
	struct fd_be *s = be;
	ssize_t r;

	do {
		r = writev(s->fd, iov, iovcnt);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static ssize_t tap_recv(void *be, void *buf, size_t len)
{
	struct fd_be *s = be;
	ssize_t r;

	do {
		r = read(s->fd, buf, len);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return r;
}

static const struct virtio_net_backend_ops tap_be_ops = {
	.name = "tap",
	.hdr_len = NET_HDR_LEN,
	.send = tap_send,
	.recv = tap_recv,
	.fd = sock_fd,
	.close = sock_close,
};

static int tap_open(const char *name, void **out)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int hdr = NET_HDR_LEN, ret;
	struct fd_be *s;

	if (!name[0] || strlen(name) >= IFNAMSIZ)
		return -EINVAL;
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (s->fd < 0) {
		ret = -errno;
		pr_err("virtio-net: /dev/net/tun: %s", strerror(-ret));
		goto err_free;
	}
	memcpy(ifr.ifr_name, name, strlen(name) + 1);
	ret = kvm_ioctl(s->fd, TUNSETIFF, &ifr);
	if (ret < 0) {
		pr_err("virtio-net: tap %s: %s", name, strerror(-ret));
		goto err_close;
	}
	ret = kvm_ioctl(s->fd, TUNSETVNETHDRSZ, &hdr);
	if (ret < 0)
		goto err_close;
	/* No offloads: the host stack checksums and segments for us. */
	ret = kvm_ioctl_val(s->fd, TUNSETOFFLOAD, 0);
	if (ret < 0)
		goto err_close;
	*out = s;
	return 0;

err_close:
	close(s->fd);
err_free:
	free(s);
	return ret;
}

/* Receive. */

/*
 * Reads one frame from the back end into rxbuf behind a fresh header.
 * Returns 0 (rx_pending set, or 0 if the frame was dropped), -EAGAIN if
 * none is waiting, or another -errno from the back end.
 */
static int net_recv(struct virtio_net *n)
{
	uint32_t hl = n->be_ops->hdr_len;
	struct virtio_net_hdr_v1 hdr = { .num_buffers = htole16(1) };
	ssize_t r;

	r = n->be_ops->recv(n->be, n->rxbuf + NET_HDR_LEN - hl,
			    hl + NET_MAX_FRAME);
	if (r < 0)
		return r;
	if (r == 0 && !hl)
		return -ENOTCONN; /* peer closed a SOCK_SEQPACKET */
	if ((size_t)r < hl || (size_t)r - hl > NET_MAX_FRAME) {
		n->rx_dropped++;
		return 0;
	}
	/* The back end's header (if any) is replaced: no offloads. */
	memcpy(n->rxbuf, &hdr, sizeof(hdr));
	n->rx_pending = NET_HDR_LEN + (r - hl);
	return 0;
}

/*
 * Delivers frames until the back end runs dry, the guest runs out of
 * receive buffers or VIRTIO_NET_RX_BUDGET frames were taken (so a flood
 * cannot hold the lock, and with it the vCPUs, for long). Returns the
 * number of frames taken from the back end (delivered or dropped),
 * -ENOBUFS, or -errno. Locked.
 */
static int net_rx(struct virtio_net *n)
{
	struct virtq *vq = &n->t.vq[NET_RX];
	struct virtq_chain *c = &n->chain;
	int taken = 0, ret = 0;
	uint32_t len;

	if (n->t.paused || !virtio_mmio_running(&n->t) || !virtq_usable(vq))
		return 0;
	while (taken < VIRTIO_NET_RX_BUDGET) {
		if (!n->rx_pending) {
			ret = net_recv(n);
			if (ret == -EAGAIN) {
				ret = 0;
				break;
			}
			if (ret < 0)
				break;
			if (!n->rx_pending) {
				taken++; /* dropped: too large */
				continue;
			}
		}
		ret = virtq_pop(vq, c);
		if (ret == -EAGAIN) {
			if (virtq_rearm(vq))
				continue;
			n->rx_starved = true;
			ret = -ENOBUFS;
			break;
		}
		if (ret)
			break;
		len = n->rx_pending;
		if (c->wr_len < len) {
			n->rx_dropped++;
			len = 0;
		} else if (virtq_chain_write(vq, c, 0, n->rxbuf, len)) {
			ret = -EIO;
			break;
		}
		n->rx_pending = 0;
		ret = virtq_push(vq, c->head, len);
		if (ret)
			break;
		taken++;
	}
	virtio_mmio_signal(&n->t, vq);
	return ret ? ret : taken;
}

void virtio_net_set_rx_wakeup(struct dev *dev, void (*fn)(void *opaque),
			      void *opaque)
{
	struct virtio_net *n = to_net(virtio_mmio_from_dev(dev));

	assert(dev->ops == &virtio_net_dev_ops);
	virtio_mmio_lock(&n->t);
	n->rx_wakeup = fn;
	n->rx_wakeup_opaque = opaque;
	virtio_mmio_unlock(&n->t);
}

int virtio_net_rx_poll(struct dev *dev)
{
	struct virtio_net *n = to_net(virtio_mmio_from_dev(dev));
	int ret;

	assert(dev->ops == &virtio_net_dev_ops);
	virtio_mmio_lock(&n->t);
	ret = net_rx(n);
	virtio_mmio_unlock(&n->t);
	return ret;
}

/*
 * A RARP request (ethertype 0x8035, as QEMU's announce-self sends) from
 * the guest's MAC to everyone: switches and bridges learn where that
 * address lives now, without waiting for the guest to send something.
 */
int virtio_net_announce(struct dev *dev)
{
	struct virtio_net *n = to_net(virtio_mmio_from_dev(dev));
	uint8_t f[NET_HDR_LEN + 60] = { 0 }, *e = f + NET_HDR_LEN;
	uint32_t hl = n->be_ops->hdr_len;
	struct iovec iov = { .iov_base = e - hl, .iov_len = hl + 60 };
	static const uint8_t rarp[] = { 0x80, 0x35, 0x00, 0x01, 0x08,
					0x00, 6,    4,	  0x00, 0x03 };

	assert(dev->ops == &virtio_net_dev_ops);
	memset(e, 0xff, 6);
	memcpy(e + 6, n->config, 6);
	memcpy(e + 12, rarp, sizeof(rarp));
	memcpy(e + 22, n->config, 6); /* sender: the guest, address unknown */
	memcpy(e + 32, n->config, 6); /* target: the same */
	return n->be_ops->send(n->be, &iov, 1);
}

int virtio_net_fd(struct dev *dev)
{
	struct virtio_net *n = to_net(virtio_mmio_from_dev(dev));

	assert(dev->ops == &virtio_net_dev_ops);
	return n->be_ops->fd ? n->be_ops->fd(n->be) : -1;
}

/* Transmit. */

/* Sends one chain's frame; malformed or undeliverable frames are dropped. */
static int net_tx_one(struct virtio_net *n, struct virtq *vq,
		      const struct virtq_chain *c)
{
	uint32_t hl = n->be_ops->hdr_len, flen;
	struct iovec iov;
	int ret;

	if (c->ro_len < NET_HDR_LEN ||
	    c->ro_len - NET_HDR_LEN > NET_MAX_FRAME) {
		n->tx_dropped++;
		return 0;
	}
	flen = c->ro_len - NET_HDR_LEN;
	ret = virtq_chain_read(vq, c, NET_HDR_LEN, n->txbuf + NET_HDR_LEN,
			       flen);
	if (ret)
		return ret;
	/* The guest's header is not passed on: no offloads negotiated. */
	memset(n->txbuf, 0, NET_HDR_LEN);
	iov.iov_base = n->txbuf + NET_HDR_LEN - hl;
	iov.iov_len = hl + flen;
	ret = n->be_ops->send(n->be, &iov, 1);
	if (ret) {
		n->tx_dropped++;
		pr_debug("virtio-net: %s send: %s", n->be_ops->name,
			 strerror(-ret));
	}
	return 0;
}

static void net_tx(struct virtio_net *n)
{
	struct virtq *vq = &n->t.vq[NET_TX];
	int ret;

	do {
		while (!(ret = virtq_pop(vq, &n->chain))) {
			if (net_tx_one(n, vq, &n->chain))
				return;
			if (virtq_push(vq, n->chain.head, 0))
				return;
		}
		if (ret != -EAGAIN)
			return;
	} while (virtq_rearm(vq));
	virtio_mmio_signal(&n->t, vq);
}

static void net_notify(struct virtio_mmio *t, unsigned int q)
{
	struct virtio_net *n = to_net(t);

	bool starved = n->rx_starved;

	if (q == NET_TX) {
		net_tx(n);
		return;
	}
	/* Receive buffers were posted: deliver what waits, wake the loop. */
	n->rx_starved = false;
	net_rx(n);
	if (starved && n->rx_wakeup)
		n->rx_wakeup(n->rx_wakeup_opaque);
}

static void net_reset(struct virtio_mmio *t)
{
	to_net(t)->rx_pending = 0;
	to_net(t)->rx_starved = false;
}

static void net_config_read(struct virtio_mmio *t, uint32_t off, void *data,
			    uint32_t len)
{
	memcpy(data, to_net(t)->config + off, len);
}

/* The frame waiting for a guest buffer is state: it is not lost. */
static void net_save_state(struct virtio_mmio *t, Vmrun__VirtioMmioState *m)
{
	struct virtio_net *n = to_net(t);

	vmrun__virtio_net_rx__init(&n->saved);
	n->saved.frame.data = n->rxbuf;
	n->saved.frame.len = n->rx_pending;
	n->saved.dropped = n->rx_dropped;
	m->net = &n->saved;
}

static int net_check_state(struct virtio_mmio *t __unused,
			   const Vmrun__VirtioMmioState *m)
{
	if (m->net && m->net->frame.len &&
	    (m->net->frame.len < NET_HDR_LEN ||
	     m->net->frame.len > NET_HDR_LEN + NET_MAX_FRAME))
		return -EINVAL;
	return 0;
}

static void net_load_state(struct virtio_mmio *t,
			   const Vmrun__VirtioMmioState *m)
{
	struct virtio_net *n = to_net(t);

	n->rx_pending = m->net ? m->net->frame.len : 0;
	if (n->rx_pending)
		memcpy(n->rxbuf, m->net->frame.data, n->rx_pending);
	n->rx_dropped = m->net ? m->net->dropped : 0;
	/* A frame waits only for want of buffers: the next kick takes it. */
	n->rx_starved = n->rx_pending != 0;
}

static const struct virtio_mmio_ops net_mmio_ops = {
	.device_id = VIRTIO_ID_NET,
	.features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS),
	.nr_queues = 2,
	.queue_max = NET_QUEUE_MAX,
	.config_len = NET_CONFIG_LEN,
	.config_read = net_config_read,
	.notify = net_notify,
	.reset = net_reset,
	.save_state = net_save_state,
	.check_state = net_check_state,
	.load_state = net_load_state,
};

static int backend_open(const struct virtio_net_conf *nc,
			const struct virtio_net_backend_ops **ops, void **be)
{
	int ret;

	if (!!nc->tap + (nc->fd >= 0) + !!nc->be_ops != 1) {
		pr_err("virtio-net: need exactly one of tap, fd, backend");
		return -EINVAL;
	}
	if (nc->be_ops) {
		if (!nc->be_ops->send || !nc->be_ops->recv ||
		    nc->be_ops->hdr_len > NET_HDR_LEN ||
		    (nc->be_ops->hdr_len && nc->be_ops->hdr_len != NET_HDR_LEN))
			return -EINVAL;
		*ops = nc->be_ops;
		*be = nc->be;
		return 0;
	}
	if (nc->tap) {
		*ops = &tap_be_ops;
		ret = tap_open(nc->tap, be);
	} else {
		*ops = &sock_be_ops;
		ret = sock_open(nc->fd, be);
	}
	return ret;
}

int virtio_net_create_mmio(const struct virtio_mmio_conf *mc,
			   const struct virtio_net_conf *nc, struct dev **out)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	int ret;

	if (!n)
		return -ENOMEM;
	n->rxbuf = malloc(NET_HDR_LEN + NET_MAX_FRAME);
	n->txbuf = malloc(NET_HDR_LEN + NET_MAX_FRAME);
	if (!n->rxbuf || !n->txbuf) {
		ret = -ENOMEM;
		goto err_free;
	}
	memcpy(n->config, nc->mac, 6);
	n->config[6] = VIRTIO_NET_S_LINK_UP; /* status, le16 */
	n->config[8] = 1;		     /* max_virtqueue_pairs */
	ret = backend_open(nc, &n->be_ops, &n->be);
	if (ret)
		goto err_free;
	ret = virtio_mmio_init(&n->t, mc, &net_mmio_ops);
	if (ret)
		goto err_backend;
	n->t.dev.ops = &virtio_net_dev_ops;
	n->t.dev.vm = mc->vm;
	*out = &n->t.dev;
	return 0;

err_backend:
	/* A caller-supplied back end stays the caller's on failure. */
	if (!nc->be_ops && n->be_ops->close)
		n->be_ops->close(n->be);
err_free:
	free(n->rxbuf);
	free(n->txbuf);
	free(n);
	return ret;
}

int virtio_net_create(struct vm *vm, uint64_t mmio_base, uint32_t gsi,
		      const struct virtio_net_conf *nc, struct dev **out)
{
	struct virtio_mmio_conf mc = {
		.vm = vm,
		.base = mmio_base,
		.gsi = gsi,
	};

	return virtio_net_create_mmio(&mc, nc, out);
}

static int net_init(struct vm *vm, const char *conf, struct dev **out)
{
	struct virtio_net_conf nc = {
		.fd = -1,
		.mac = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 },
	};
	char tap[IFNAMSIZ], val[32], *end;
	struct virtio_mmio_conf mc;
	int ret;

	ret = virtio_conf_mmio(vm, conf, &mc);
	if (ret)
		return ret;
	if (!virtio_conf_str(conf, "tap", tap, sizeof(tap))) {
		nc.tap = tap;
	} else if (!virtio_conf_str(conf, "fd", val, sizeof(val))) {
		nc.fd = strtol(val, &end, 10);
		if (!val[0] || *end || nc.fd < 0)
			return -EINVAL;
	}
	if (!virtio_conf_str(conf, "mac", val, sizeof(val)) &&
	    sscanf(val, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &nc.mac[0], &nc.mac[1],
		   &nc.mac[2], &nc.mac[3], &nc.mac[4], &nc.mac[5]) != 6) {
		pr_err("virtio-net: bad mac '%s'", val);
		return -EINVAL;
	}
	return virtio_net_create_mmio(&mc, &nc, out);
}

static void net_fini(struct dev *dev)
{
	struct virtio_net *n = to_net(virtio_mmio_from_dev(dev));

	virtio_mmio_fini(&n->t);
	if (n->be_ops->close)
		n->be_ops->close(n->be);
	free(n->rxbuf);
	free(n->txbuf);
	free(n);
}

const struct dev_ops virtio_net_dev_ops = {
	.name = "virtio-net",
	.state_type = "vmrun.VirtioMmioState",
	.init = net_init,
	.fini = net_fini,
	.reset = virtio_mmio_dev_reset,
	.pause = virtio_mmio_dev_pause,
	.resume = virtio_mmio_dev_resume,
	.save = virtio_mmio_dev_save,
	.load = virtio_mmio_dev_load,
};
